#!/usr/bin/env python3
"""Per-request cost of the alternator-filter: the same Envoy with and without it (a report, not a test).

Starts alternator-sim (3 nodes), the discovery agent and two Envoys rendered from envoy/envoy.yaml,
one without the filter, then sends the same sequential GetItem (and, with affinity on, PutItem)
requests through each over one keep-alive connection and prints latency percentiles. The
difference of the means is the filter's cost per request (V8 + host calls + routing), measured
from the client, so it includes nothing the baseline does not also pay.

    .venv/bin/python tests/bench/filter_overhead.py [requests]
"""
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from harness.stack import RawDynamo, Stack, create_table, wait_routing  # noqa: E402
from harness.envoy import Envoy  # noqa: E402

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]


def measure(client, op, body_for, count):
    samples = []
    for i in range(count):
        t0 = time.perf_counter_ns()
        status, _ = client.call(op, body_for(i))
        samples.append(time.perf_counter_ns() - t0)
        assert status == 200
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (immune to other load on the machine)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(samples):
    samples = sorted(samples)
    return (statistics.fmean(samples) / 1000, samples[len(samples) // 2] / 1000,
            samples[int(len(samples) * 0.99)] / 1000)


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
            # Rounds alternate between the Envoys so that load from elsewhere on the machine
            # hits all of them alike; the medians are what to compare.
            rounds = 10
            clients = {name: RawDynamo(e.url) for name, e in envoys.items()}
            samples = {(name, op): [] for name in envoys for op in ("GetItem", "PutItem")}
            cpu = {key: 0.0 for key in samples}
            for name, c in clients.items():
                measure(c, "GetItem", get, 200)  # warm up connections and V8
            for _ in range(rounds):
                for op, body in (("GetItem", get), ("PutItem", put)):
                    for name, c in clients.items():
                        pid = envoys[name].process.pid
                        start = cpu_seconds(pid)
                        samples[(name, op)] += measure(c, op, body, count // rounds)
                        cpu[(name, op)] += cpu_seconds(pid) - start
            for c in clients.values():
                c.close()
            print(f"{count} sequential requests per row in {rounds} interleaved rounds, one keep-alive "
                  "connection per Envoy, latency in µs")
            print(f"{'envoy':32} {'op':8} {'mean':>8} {'p50':>8} {'p99':>8} {'envoy CPU/req':>14}")
            for (name, op), values in samples.items():
                mean, p50, p99 = summary(values)
                per_request = cpu[(name, op)] / len(values) * 1e6
                print(f"{name:32} {op:8} {mean:8.1f} {p50:8.1f} {p99:8.1f} {per_request:14.1f}")
            for op in ("GetItem", "PutItem"):
                base = summary(samples[("no filter", op)])[1]
                base_cpu = cpu[("no filter", op)] / len(samples[("no filter", op)]) * 1e6
                for name in list(envoys)[1:]:
                    extra_cpu = cpu[(name, op)] / len(samples[(name, op)]) * 1e6 - base_cpu
                    print(f"filter cost, {name}, {op}: {extra_cpu:+.1f} µs Envoy CPU per request, "
                          f"{summary(samples[(name, op)])[1] - base:+.1f} µs median latency")
        finally:
            stack.teardown()


if __name__ == "__main__":
    main()
