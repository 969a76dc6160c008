#!/usr/bin/env python3
"""DynamoDB workload for the docker-compose demo: every request goes to one endpoint (Envoy).

The workload of `harness/workload.py` (the demo's too), shaped like ScyllaDB's load-balancing
lab application: create a table, write items from many threads, then read random items. A tenth
of the read phase is conditional updates (read-modify-write), the requests that the filter's
`rmw` key affinity pins to one node.

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
import signal
import sys
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from harness import workload
from harness.latency import percentile

ENDPOINT = os.environ.get("ALTERNATOR_ENDPOINT", "http://envoy:8000")
THREADS = int(os.environ.get("WORKLOAD_THREADS", "32"))
SHAPE = workload.Shape(
    table=os.environ.get("WORKLOAD_TABLE", workload.TABLE),
    items=int(os.environ.get("WORKLOAD_ITEMS", "1000")),
    writers=THREADS,
    readers=THREADS,
)
READ_SECONDS = float(os.environ.get("WORKLOAD_READ_SECONDS", "600"))
REPORT_SECONDS = float(os.environ.get("WORKLOAD_REPORT_SECONDS", "5"))
SDK_ATTEMPTS = int(os.environ.get("WORKLOAD_SDK_ATTEMPTS", "3"))
STARTUP_TIMEOUT_S = 300

stopping = threading.Event()


def describe(recorder, phase, seconds):
    latencies_ms = [s * 1000.0 for s in recorder.latencies({phase})]
    rate = len(latencies_ms) / seconds if seconds > 0 else 0.0
    errors = recorder.errors("kind", {phase})
    detail = ", ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none"
    return (
        f"{len(latencies_ms)} ok ({rate:.0f}/s), {sum(errors.values())} failed ({detail}), "
        f"p50 {percentile(latencies_ms, 0.5):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms"
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


def write_phase(dynamodb, recorder):
    recorder.phase = "write"
    started = time.monotonic()
    workload.write_items(dynamodb, SHAPE, recorder, stopping)
    print(f"write phase: {describe(recorder, 'write', time.monotonic() - started)}", flush=True)


def read_phase(dynamodb, recorder):
    recorder.phase = "read"
    started = time.monotonic()
    deadline = None if READ_SECONDS <= 0 else started + READ_SECONDS
    threads = workload.start_readers(dynamodb, SHAPE, recorder, stopping, deadline)
    next_report = started + REPORT_SECONDS
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=max(0.0, next_report - time.monotonic()))
        if time.monotonic() >= next_report:
            elapsed = time.monotonic() - started
            print(f"read phase, {elapsed:.0f} s: {describe(recorder, 'read', elapsed)}", flush=True)
            next_report += REPORT_SECONDS
    print(f"read phase done: {describe(recorder, 'read', time.monotonic() - started)}", flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    dynamodb = workload.client(ENDPOINT, max(THREADS, 10), sdk_attempts=SDK_ATTEMPTS)
    if not wait_for_endpoint(dynamodb):
        if stopping.is_set():
            return 0
        print(f"{ENDPOINT} did not answer within {STARTUP_TIMEOUT_S} s", file=sys.stderr)
        return 1
    created = workload.create_table(dynamodb, SHAPE.table)
    print(f"created table {SHAPE.table}" if created else f"table {SHAPE.table} already exists", flush=True)
    recorder = workload.Recorder()
    write_phase(dynamodb, recorder)
    if not stopping.is_set():
        read_phase(dynamodb, recorder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
