#!/usr/bin/env python3
"""Per-request cost of the alternator-filter: the same Envoy with and without it (a report, not a test).

Starts alternator-sim (3 nodes), the discovery agent and two Envoys rendered from envoy/envoy.yaml,
one without the filter, then sends the same sequential GetItem (and, with affinity on, PutItem)
requests through each over one keep-alive connection and prints latency percentiles. The
difference of the means is the filter's cost per request (V8 + host calls + routing), measured
from the client, so it includes nothing the baseline does not also pay.

    .venv/bin/python tests/bench/filter_overhead.py [requests]
"""
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "e2e"))

from conftest import RawDynamo, Stack, create_table, wait_routing  # noqa: E402
from harness.envoy import Envoy  # noqa: E402

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]


def measure(url, op, body_for, count):
    client = RawDynamo(url)
    samples = []
    try:
        for i in range(200):  # warm up connections, V8 and caches
            client.call(op, body_for(i))
        for i in range(count):
            t0 = time.perf_counter_ns()
            status, _ = client.call(op, body_for(i))
            samples.append(time.perf_counter_ns() - t0)
            assert status == 200
    finally:
        client.close()
    samples.sort()
    return statistics.fmean(samples) / 1000, samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(pathlib.Path(tmp))
        try:
            sim = stack.sim(NODES)
            agent = stack.agent(sim)
            agent.wait_active([n[0] for n in NODES])
            envoys = {}
            for name, cfg, with_filter in [("no filter", {}, False), ("filter, round robin", {}, True),
                                            ("filter, any_write affinity", {"affinity": {"mode": "any_write", "tables": {"bench": "pk"}}}, True)]:
                e = Envoy(pathlib.Path(tmp) / name.replace(" ", "_").replace(",", ""), agent.port, cfg, with_filter=with_filter)
                stack.owned.append(e)
                e.wait_ready()
                if with_filter:
                    wait_routing(e, len(NODES))
                envoys[name] = e
            create_table(envoys["no filter"].url, "bench")
            get = lambda i: {"TableName": "bench", "Key": {"pk": {"S": f"k{i % 100}"}}}  # noqa: E731
            put = lambda i: {"TableName": "bench", "Item": {"pk": {"S": f"k{i % 100}"}, "v": {"S": "x" * 200}}}  # noqa: E731
            print(f"{count} sequential requests per row, one keep-alive connection, latency in µs")
            print(f"{'envoy':32} {'op':8} {'mean':>8} {'p50':>8} {'p99':>8}")
            results = {}
            for name, e in envoys.items():
                for op, body in (("GetItem", get), ("PutItem", put)):
                    results[(name, op)] = measure(e.url, op, body, count)
                    mean, p50, p99 = results[(name, op)]
                    print(f"{name:32} {op:8} {mean:8.1f} {p50:8.1f} {p99:8.1f}")
            for op in ("GetItem", "PutItem"):
                base = results[("no filter", op)][0]
                for name in list(envoys)[1:]:
                    print(f"filter cost, {name}, {op}: {results[(name, op)][0] - base:+.1f} µs mean")
        finally:
            stack.teardown()


if __name__ == "__main__":
    main()
