#!/usr/bin/env python3
"""DynamoDB workload for the docker-compose demo: every request goes to one endpoint (Envoy).

Shaped like ScyllaDB's load-balancing lab application: create a table, write items from many
threads, then read random items. A tenth of the read phase is conditional updates
(read-modify-write), the requests that the filter's `rmw` key affinity pins to one node.

It knows nothing of ScyllaDB's nodes: how the load spreads is Envoy's business and shows in
Grafana. It prints a progress line every few seconds and a summary at the end; it exits 1 if
the endpoint never became usable, 0 otherwise (errors are counted, not fatal).

Configuration (environment):
  ALTERNATOR_ENDPOINT     http://envoy:8000
  WORKLOAD_TABLE          alternator_mesh_demo (hash key `pk`, a string)
  WORKLOAD_ITEMS          1000     items written, then read at random
  WORKLOAD_THREADS        32
  WORKLOAD_READ_SECONDS   600      length of the read phase; 0 reads until stopped
  WORKLOAD_REPORT_SECONDS 5
  WORKLOAD_SDK_ATTEMPTS   3        boto3's attempts per request (1: no SDK retries, so every
                                   failure Envoy does not absorb is counted)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION   default: alternator, us-east-1
"""
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ENDPOINT = os.environ.get("ALTERNATOR_ENDPOINT", "http://envoy:8000")
TABLE = os.environ.get("WORKLOAD_TABLE", "alternator_mesh_demo")
ITEMS = int(os.environ.get("WORKLOAD_ITEMS", "1000"))
THREADS = int(os.environ.get("WORKLOAD_THREADS", "32"))
READ_SECONDS = float(os.environ.get("WORKLOAD_READ_SECONDS", "600"))
REPORT_SECONDS = float(os.environ.get("WORKLOAD_REPORT_SECONDS", "5"))
SDK_ATTEMPTS = int(os.environ.get("WORKLOAD_SDK_ATTEMPTS", "3"))
STARTUP_TIMEOUT_S = 300

stopping = threading.Event()


class Stats:
    """Latencies and errors of one phase, shared by the worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.latencies_ms = []
        self.errors = {}

    def ok(self, started):
        elapsed = (time.monotonic() - started) * 1000.0
        with self._lock:
            self.latencies_ms.append(elapsed)

    def failed(self, error):
        name = type(error).__name__
        if isinstance(error, ClientError):
            name = error.response.get("Error", {}).get("Code", name)
        with self._lock:
            self.errors[name] = self.errors.get(name, 0) + 1

    def snapshot(self):
        with self._lock:
            return list(self.latencies_ms), dict(self.errors)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def describe(stats, seconds):
    latencies, errors = stats.snapshot()
    latencies.sort()
    rate = len(latencies) / seconds if seconds > 0 else 0.0
    failed = sum(errors.values())
    detail = ", ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none"
    return (
        f"{len(latencies)} ok ({rate:.0f}/s), {failed} failed ({detail}), "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )


def client():
    # Alternator without enforced authorization accepts any credentials and region; the SDK
    # still insists on having some.
    return boto3.client(
        "dynamodb",
        endpoint_url=ENDPOINT,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "alternator"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "alternator"),
        config=Config(
            retries={"mode": "standard", "max_attempts": SDK_ATTEMPTS},
            connect_timeout=2,
            read_timeout=10,
            max_pool_connections=max(THREADS, 10),
        ),
    )


def wait_for_endpoint(dynamodb):
    """Envoy answers before the agent has found the nodes: poll until a request succeeds."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = None
    while time.monotonic() < deadline and not stopping.is_set():
        try:
            dynamodb.list_tables(Limit=1)
            return True
        except (BotoCoreError, ClientError) as error:
            if last_error is None or str(error) != str(last_error):
                print(f"waiting for {ENDPOINT}: {error}", flush=True)
            last_error = error
            stopping.wait(2)
    return False


def create_table(dynamodb):
    try:
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        print(f"created table {TABLE}", flush=True)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        print(f"table {TABLE} already exists", flush=True)
    dynamodb.get_waiter("table_exists").wait(TableName=TABLE)


def key(i):
    return f"item-{i:06d}"


def write_phase(dynamodb):
    stats = Stats()

    def put(i):
        if stopping.is_set():
            return
        started = time.monotonic()
        try:
            dynamodb.put_item(
                TableName=TABLE,
                Item={"pk": {"S": key(i)}, "payload": {"S": f"value {i}"}, "n": {"N": str(i)}},
            )
            stats.ok(started)
        except (BotoCoreError, ClientError) as error:
            stats.failed(error)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(put, range(ITEMS)))
    print(f"write phase: {describe(stats, time.monotonic() - started)}", flush=True)


def read_phase(dynamodb):
    stats = Stats()
    deadline = None if READ_SECONDS <= 0 else time.monotonic() + READ_SECONDS

    def worker(seed):
        rng = random.Random(seed)
        while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            item = {"pk": {"S": key(rng.randrange(ITEMS))}}
            started = time.monotonic()
            try:
                if rng.random() < 0.1:
                    dynamodb.update_item(
                        TableName=TABLE,
                        Key=item,
                        UpdateExpression="SET visits = if_not_exists(visits, :zero) + :one",
                        ConditionExpression="attribute_exists(pk)",
                        ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
                    )
                else:
                    dynamodb.get_item(TableName=TABLE, Key=item)
                stats.ok(started)
            except (BotoCoreError, ClientError) as error:
                stats.failed(error)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    next_report = started + REPORT_SECONDS
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=max(0.0, next_report - time.monotonic()))
        if time.monotonic() >= next_report:
            print(f"read phase, {time.monotonic() - started:.0f} s: "
                  f"{describe(stats, time.monotonic() - started)}", flush=True)
            next_report += REPORT_SECONDS
    print(f"read phase done: {describe(stats, time.monotonic() - started)}", flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    dynamodb = client()
    if not wait_for_endpoint(dynamodb):
        if stopping.is_set():
            return 0
        print(f"{ENDPOINT} did not answer within {STARTUP_TIMEOUT_S} s", file=sys.stderr)
        return 1
    create_table(dynamodb)
    write_phase(dynamodb)
    if not stopping.is_set():
        read_phase(dynamodb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
