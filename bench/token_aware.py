#!/usr/bin/env python3
"""Token-aware routing against round robin on six nodes: throughput and latency side by side,
and what the routing costs per request. A report, never a pass/fail gate.

Starts the stand-in cluster (6 nodes on 3 racks, 32 tablets per table, RF 3) with
`--forward-delay` (300 µs by default): a node that coordinates a single-key request it holds
no replica of waits that long before answering, standing in for the extra inter-node hop.
The delay is a model of that hop, not a measurement of ScyllaDB. The agent publishes the ring
(`--ring-tables all`); two Envoys run the shipped configuration, one with
`token_aware.enabled`, one without. wrk sends the same GetItem requests (64 keys, SDK
headers) through each, repetitions interleaved, medians reported, and the sim's counters say
how many requests a replica coordinated. The routing cost per request comes from
`bench/profile_filter.py` (wasm instructions, token-aware against round robin on the same
snapshot). Run: `.venv/bin/python bench/token_aware.py [--seconds 5] [--repetitions 5]`;
`make bench` runs it and writes `target/bench/token_aware.json`.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import tempfile

import profile_filter
import sdk_requests
from harness.stack import RawDynamo, Stack, create_table, wait_routing, wait_synced
from harness.util import eventually, target_dir

BENCH = pathlib.Path(__file__).resolve().parent
NODES = [(f"127.0.4.{i + 1}", "dc1", f"rack{i % 3 + 1}") for i in range(6)]
KEYS = 64


def wrk(url: str, request_file: pathlib.Path, seconds: int, connections: int) -> dict:
    cmd = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s"]
    cmd += ["-s", str(BENCH / "workload.lua"), url + "/", "--", str(request_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line.removeprefix("BENCH-JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def replica_share(sim) -> float:
    counters = sim.counters().values()
    replica = sum(c["coordinated_as_replica"] for c in counters)
    other = sum(c["coordinated_as_non_replica"] for c in counters)
    return replica / max(1, replica + other)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--repetitions", type=int, default=5, help="interleaved runs per configuration")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--forward-delay", default="300us", help="the sim's non-replica delay")
    parser.add_argument("--profile-requests", type=int, default=1000)
    parser.add_argument("--out", type=pathlib.Path, default=target_dir() / "bench" / "token_aware.json")
    args = parser.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="alternator-bench-token-"))
    stack = Stack(workdir)
    report = {
        "command": "bench/token_aware.py",
        "nodes": len(NODES),
        "forward_delay": args.forward_delay,
        "model_note": "a non-replica coordinator waits --forward-delay before answering: a model of the hop",
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        sim = stack.sim(
            NODES,
            extra_args=["--ring-layout", "tablets", "--tablets", "32", "--forward-delay", args.forward_delay],
        )
        agent = stack.agent(sim, extra_args=["--ring-tables", "all", "--ring-refresh-active", "1s"])
        agent.wait_active([n[0] for n in NODES])
        envoys = {
            "round_robin": stack.envoy(
                agent, {}, log_level="warn", component_log_level=None, extra_values={"ACCESS_LOG_PATH": "/dev/null"}
            ),
            "token_aware": stack.envoy(
                agent,
                {"token_aware": {"enabled": True}},
                log_level="warn",
                component_log_level=None,
                extra_values={"ACCESS_LOG_PATH": "/dev/null"},
            ),
        }
        url = next(iter(envoys.values())).url
        create_table(url, "bench")
        client = RawDynamo(url)
        try:
            for i in range(KEYS):
                status, answer = client.call(
                    "PutItem", {"TableName": "bench", "Item": {"pk": {"S": sdk_requests.key(i)}}}
                )
                if status != 200:
                    raise SystemExit(f"PutItem through Envoy: {status} {answer}")
        finally:
            client.close()
        eventually(
            lambda: any(t["table"] == "bench" for t in (agent.snapshot().get("ring") or {}).get("tables", [])),
            timeout=30,
            message="the agent publishes the ring of table bench",
        )
        for envoy in envoys.values():
            wait_routing(envoy, len(NODES))
            wait_synced(envoy, agent)
        request_file = sdk_requests.write_request_file(workdir / "getitem.txt", "GetItem", KEYS, 1024)

        for envoy in envoys.values():  # warm-up
            wrk(envoy.url, request_file, 2, args.connections)
        # Saturated (throughput) and one request at a time (the latency of one request).
        phases = {"saturated": args.connections, "one_at_a_time": 1}
        runs = {phase: {name: [] for name in envoys} for phase in phases}
        for _ in range(args.repetitions):
            for phase, connections in phases.items():
                for name, envoy in envoys.items():
                    sim.reset()
                    result = wrk(envoy.url, request_file, args.seconds, connections)
                    result["replica_share"] = replica_share(sim)
                    runs[phase][name].append(result)
        summary = {}
        for phase in phases:
            summary[phase] = {
                name: {
                    key: statistics.median(r[key] for r in results)
                    for key in ("rps", "p50_us", "p99_us", "mean_us", "replica_share")
                }
                for name, results in runs[phase].items()
            }
            ta, rr = summary[phase]["token_aware"], summary[phase]["round_robin"]
            summary[phase]["token_aware_over_round_robin"] = {
                "throughput": ta["rps"] / rr["rps"],
                "p50": ta["p50_us"] / rr["p50_us"],
                "p99": ta["p99_us"] / rr["p99_us"],
                "mean": ta["mean_us"] / rr["mean_us"],
            }
        report["runs"] = runs
        report["summary"] = summary
    finally:
        stack.stop_all()

    profile = profile_filter.profile(requests=args.profile_requests)
    rr = profile["scenarios"]["round_robin_6_nodes_ring_getitem"]["instructions_per_request"]
    ta = profile["scenarios"]["token_aware_6_nodes_getitem"]["instructions_per_request"]
    report["wasm_instructions_per_getitem"] = {"round_robin": rr, "token_aware": ta, "ratio": ta / rr}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"token-aware GetItem vs round robin, 6 nodes, RF 3, sim forward delay {args.forward_delay} (a model):")
    for phase, s in report["summary"].items():
        print(f"  {phase}:")
        print(f"    {'':14} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8} {'by a replica':>13}")
        for name in ("round_robin", "token_aware"):
            r = s[name]
            print(
                f"    {name:14} {r['rps']:9.0f} {r['p50_us']:8.0f} {r['p99_us']:8.0f} "
                f"{r['mean_us']:8.0f} {r['replica_share']:13.3f}"
            )
        ratio = s["token_aware_over_round_robin"]
        print(
            f"    token-aware / round robin: throughput {ratio['throughput']:.2f}, "
            f"p50 {ratio['p50']:.2f}, p99 {ratio['p99']:.2f}, mean {ratio['mean']:.2f}"
        )
    w = report["wasm_instructions_per_getitem"]
    print(
        f"  wasm instructions per GetItem: round robin {w['round_robin']:.0f}, "
        f"token-aware {w['token_aware']:.0f} ({w['ratio']:.2f}x)"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
