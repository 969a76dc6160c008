"""The demo's DynamoDB workload, an ordinary boto3 application that only knows one endpoint.

Shape: create a table, write 1,000 items from 32 threads, then read random items (one request
in ten bumps a counter on the item, a read-modify-write that key affinity can route). Every
request is timed and its outcome recorded; an error is whatever reaches the application after
the SDK's own retries, which are counted separately.
"""
from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE = "alternator_mesh_demo"
HASH_KEY = "pk"
ITEMS = 1_000
WRITERS = 32
READERS = 16
UPDATE_ONE_IN = 10


def item_key(i: int) -> str:
    return f"user-{i:04d}"


def client(endpoint: str):
    """A stock boto3 DynamoDB client pointed at Envoy; SDK retries left at their defaults."""
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "alternator"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "secret"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )
    config = Config(max_pool_connections=WRITERS + READERS, connect_timeout=2, read_timeout=10)
    return session.client("dynamodb", endpoint_url=endpoint, config=config)


def percentile(sorted_values, fraction: float) -> float:
    """Nearest-rank percentile of an ascending list; 0 for an empty one."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Recorder:
    """Thread-safe outcome of every request: latency by (phase, operation), errors, SDK retries."""

    def __init__(self):
        self._lock = threading.Lock()
        self.phase = "setup"
        self.latencies: dict[tuple[str, str], list[float]] = {}
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.ok = 0
        self.sdk_retries = 0
        self._recent: list[float] = []

    def record(self, operation: str, seconds: float, retries: int, error: str | None):
        with self._lock:
            self.sdk_retries += retries
            if error is None:
                self.ok += 1
                self.latencies.setdefault((self.phase, operation), []).append(seconds)
                self._recent.append(seconds)
            else:
                self.errors[operation] = self.errors.get(operation, 0) + 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{operation}: {error}")

    def take_recent(self) -> list[float]:
        """Latencies recorded since the last call (for the live view)."""
        with self._lock:
            recent, self._recent = self._recent, []
        return recent

    def error_count(self) -> int:
        with self._lock:
            return sum(self.errors.values())

    def by_operation(self, phases=None) -> dict[str, list[float]]:
        """Ascending latencies per operation, over the given phases (all when None)."""
        with self._lock:
            out: dict[str, list[float]] = {}
            for (phase, op), values in self.latencies.items():
                if phases is None or phase in phases:
                    out.setdefault(op, []).extend(values)
        for values in out.values():
            values.sort()
        return out


def _call(recorder: Recorder, operation: str, fn, check=None, **kwargs):
    """Run one SDK call and record it; `check(response)` may turn a 200 into an error."""
    start = time.perf_counter()
    try:
        response = fn(**kwargs)
    except ClientError as e:
        retries = int(e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
        code = e.response.get("Error", {}).get("Code", "?")
        recorder.record(operation, time.perf_counter() - start, retries, f"{code}: {e}")
        return None
    except BotoCoreError as e:
        recorder.record(operation, time.perf_counter() - start, 0, f"{type(e).__name__}: {e}")
        return None
    retries = int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
    recorder.record(operation, time.perf_counter() - start, retries, check(response) if check else None)
    return response


def create_table(dynamodb) -> bool:
    """Create the demo table; returns False when it already existed (a real cluster)."""
    try:
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": HASH_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": HASH_KEY, "AttributeType": "S"}],
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceInUseException":
            return False
        raise
    dynamodb.get_waiter("table_exists").wait(TableName=TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return True


def delete_table(dynamodb):
    dynamodb.delete_table(TableName=TABLE)


def write_items(dynamodb, recorder: Recorder, stop: threading.Event):
    """PutItem for every demo item from a pool of WRITERS threads."""

    def put(i: int):
        if stop.is_set():
            return
        _call(recorder, "PutItem", dynamodb.put_item, TableName=TABLE, Item={
            HASH_KEY: {"S": item_key(i)},
            "name": {"S": f"User {i}"},
            "city": {"S": random.choice(["Haifa", "Lisbon", "Nairobi", "Osaka", "Quito"])},
            "views": {"N": "0"},
        })

    with concurrent.futures.ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="writer") as pool:
        list(pool.map(put, range(ITEMS)))


def read_items(dynamodb, recorder: Recorder, stop: threading.Event, seed: int):
    """One reader thread: random GetItems until `stop`, every tenth an UpdateItem counter bump."""
    rng = random.Random(seed)
    while not stop.is_set():
        key = {HASH_KEY: {"S": item_key(rng.randrange(ITEMS))}}
        if rng.randrange(UPDATE_ONE_IN) == 0:
            _call(recorder, "UpdateItem", dynamodb.update_item, TableName=TABLE, Key=key,
                  UpdateExpression="ADD #v :one", ExpressionAttributeNames={"#v": "views"},
                  ExpressionAttributeValues={":one": {"N": "1"}})
        else:
            _call(recorder, "GetItem", dynamodb.get_item, check=_found, TableName=TABLE, Key=key)


def _found(response) -> str | None:
    return None if "Item" in response else "an item written earlier was not found"


def start_readers(dynamodb, recorder: Recorder, stop: threading.Event) -> list[threading.Thread]:
    threads = [threading.Thread(target=read_items, args=(dynamodb, recorder, stop, n),
                                name=f"reader-{n}", daemon=True) for n in range(READERS)]
    for t in threads:
        t.start()
    return threads
