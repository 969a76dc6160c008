"""The DynamoDB workload of the demo (demo/run.py) and of the compose deployment
(deploy/workload.py): an ordinary boto3 application that only knows one endpoint.

Shape, after ScyllaDB's load-balancing lab: create a table, write items from many threads, then
read random items until told to stop; one read in ten is a conditional counter bump on the item
(a read-modify-write, which the filter's `rmw` key affinity routes). Every request is timed and
its outcome recorded; an error is whatever reaches the application after the SDK's own retries,
which are counted separately.

Only boto3 and the standard library: deploy/demo.Dockerfile copies this module, with
`harness/__init__.py` and `harness/latency.py`, into the workload image.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import random
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE = "alternator_mesh_demo"
HASH_KEY = "pk"
UPDATE_ONE_IN = 10


@dataclasses.dataclass(frozen=True)
class Shape:
    """How much load: the table, how many items, how many writer and reader threads."""

    table: str = TABLE
    items: int = 1_000
    writers: int = 32
    readers: int = 16


def item_key(i: int) -> str:
    return f"item-{i:06d}"


def client(endpoint: str, max_pool_connections: int, sdk_attempts: int | None = None):
    """A stock boto3 DynamoDB client pointed at `endpoint`; the SDK's retries are its defaults
    unless `sdk_attempts` is given (1: none, so every failure Envoy does not absorb is counted).

    Alternator without enforced authorization accepts any credentials and region; the SDK still
    insists on having some."""
    retries = {"mode": "standard", "total_max_attempts": sdk_attempts} if sdk_attempts is not None else None
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "alternator"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "alternator"),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    config = Config(max_pool_connections=max_pool_connections, connect_timeout=2, read_timeout=10, retries=retries)
    return session.client("dynamodb", endpoint_url=endpoint, config=config)


class Recorder:
    """Thread-safe outcome of every request: latency by (phase, operation), errors by (phase,
    operation, kind), SDK retries. `phase` is whatever the caller names the current stretch."""

    def __init__(self):
        self._lock = threading.Lock()
        self.phase = "setup"
        self._latencies: dict[tuple[str, str], list[float]] = {}
        self._errors: dict[tuple[str, str, str], int] = {}
        self.error_samples: list[str] = []
        self.ok = 0
        self.sdk_retries = 0
        self._recent: list[float] = []

    def record_ok(self, operation: str, seconds: float, retries: int):
        with self._lock:
            self.sdk_retries += retries
            self.ok += 1
            self._latencies.setdefault((self.phase, operation), []).append(seconds)
            self._recent.append(seconds)

    def record_error(self, operation: str, retries: int, kind: str, message: str):
        with self._lock:
            self.sdk_retries += retries
            key = (self.phase, operation, kind)
            self._errors[key] = self._errors.get(key, 0) + 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{operation}: {message}")

    def take_recent(self) -> list[float]:
        """Latencies recorded since the last call (for a live view)."""
        with self._lock:
            recent, self._recent = self._recent, []
        return recent

    def by_operation(self, phases=None) -> dict[str, list[float]]:
        """Ascending latencies in seconds per operation, over the given phases (all when None)."""
        with self._lock:
            out: dict[str, list[float]] = {}
            for (phase, op), values in self._latencies.items():
                if phases is None or phase in phases:
                    out.setdefault(op, []).extend(values)
        for values in out.values():
            values.sort()
        return out

    def latencies(self, phases=None) -> list[float]:
        """Ascending latencies in seconds of every operation, over the given phases."""
        return sorted(v for values in self.by_operation(phases).values() for v in values)

    def errors(self, by: str, phases=None) -> dict[str, int]:
        """Error counts by "operation" or by "kind" (the DynamoDB error code or the exception)."""
        index = {"operation": 1, "kind": 2}[by]
        out: dict[str, int] = {}
        with self._lock:
            for key, count in self._errors.items():
                if phases is None or key[0] in phases:
                    out[key[index]] = out.get(key[index], 0) + count
        return out

    def error_count(self, phases=None) -> int:
        return sum(self.errors("kind", phases).values())


def _call(recorder: Recorder, operation: str, fn, check=None, **kwargs):
    """Run one SDK call and record it; `check(response)` may turn a 200 into an error."""
    start = time.perf_counter()
    try:
        response = fn(**kwargs)
    except ClientError as e:
        retries = int(e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
        code = e.response.get("Error", {}).get("Code", "?")
        recorder.record_error(operation, retries, code, f"{code}: {e}")
        return None
    except BotoCoreError as e:
        recorder.record_error(operation, 0, type(e).__name__, f"{type(e).__name__}: {e}")
        return None
    elapsed = time.perf_counter() - start
    retries = int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
    problem = check(response) if check else None
    if problem is None:
        recorder.record_ok(operation, elapsed, retries)
    else:
        recorder.record_error(operation, retries, problem[0], problem[1])
    return response


def create_table(dynamodb, table: str = TABLE) -> bool:
    """Create the workload's table and wait until it is active; False when it already existed."""
    try:
        dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": HASH_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": HASH_KEY, "AttributeType": "S"}],
        )
        created = True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        created = False
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return created


def delete_table(dynamodb, table: str = TABLE):
    dynamodb.delete_table(TableName=table)


def write_items(dynamodb, shape: Shape, recorder: Recorder, stop: threading.Event):
    """PutItem of every item of `shape`, from `shape.writers` threads; returns when done or stopped."""

    def put(i: int):
        if stop.is_set():
            return
        item = {HASH_KEY: {"S": item_key(i)}, "payload": {"S": f"value {i}"}, "visits": {"N": "0"}}
        _call(recorder, "PutItem", dynamodb.put_item, TableName=shape.table, Item=item)

    with concurrent.futures.ThreadPoolExecutor(max_workers=shape.writers, thread_name_prefix="writer") as pool:
        list(pool.map(put, range(shape.items)))


def read_items(dynamodb, shape: Shape, recorder: Recorder, stop: threading.Event, seed: int, deadline=None):
    """One reader: random GetItems until `stop` (or the monotonic `deadline`), one request in
    ten a conditional counter bump instead."""
    rng = random.Random(seed)
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        key = {HASH_KEY: {"S": item_key(rng.randrange(shape.items))}}
        if rng.randrange(UPDATE_ONE_IN) == 0:
            _call(
                recorder,
                "UpdateItem",
                dynamodb.update_item,
                TableName=shape.table,
                Key=key,
                UpdateExpression="SET visits = if_not_exists(visits, :zero) + :one",
                ConditionExpression=f"attribute_exists({HASH_KEY})",
                ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
            )
        else:
            _call(recorder, "GetItem", dynamodb.get_item, check=_found, TableName=shape.table, Key=key)


def _found(response):
    return None if "Item" in response else ("ItemNotFound", "an item written earlier was not found")


def start_readers(dynamodb, shape: Shape, recorder: Recorder, stop: threading.Event, deadline=None):
    """`shape.readers` reader threads, started; they end on `stop` or at `deadline`."""
    threads = [
        threading.Thread(
            target=read_items,
            args=(dynamodb, shape, recorder, stop, n, deadline),
            name=f"reader-{n}",
            daemon=True,
        )
        for n in range(shape.readers)
    ]
    for t in threads:
        t.start()
    return threads
