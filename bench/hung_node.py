#!/usr/bin/env python3
"""The lab workload with one Alternator node hung: what the application sees. A report, never a
pass/fail gate.

Runs `harness.lab` twice, each on a fresh stand-in cluster (3 nodes), discovery agent and Envoy
(2 workers) with the shipped `envoy/envoy.yaml`: once hanging a node a quarter into the write
phase (32 boto3 writer threads, PutItem), once a quarter into the read phase (16 reader threads,
GetItem, one request in ten a conditional UpdateItem). The SDK's retries are off. Printed per
run, for the stretch after the hang: p50, p99, p99.9 and max of successful reads and writes as
the application timed them, the longest request Envoy held, failed requests by error, requests
the hung node held until they timed out, and reads hedged to the next node.

Run: `.venv/bin/python bench/hung_node.py [--phase writes|reads|both] [--agent-interval 1s]
[--items 1000] [--read-seconds 8] [--json out.json] [--set ITEM_TIMEOUT=2s ...]`. The agent runs at
the product's cadence by default (1 s while traffic flows), so it also drops the hung node once
another node's `/localnodes` stops listing it; `--agent-interval 120s` leaves it to the filter's
passive health alone.
"""

import argparse
import json
import pathlib
import sys
import tempfile

from harness import lab, workload
from harness.stack import Stack


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f} ms"  # NaN: no sample


def report(figures: dict) -> str:
    lines = [f"hang during {figures['phase']}:"]
    for name in ("reads", "writes"):
        f = figures[name]
        lines.append(
            f"  {name:<6} ok {f['ok']:>6}  failed {f['failed']:>3}  p50 {ms(f['p50_s']):>7}  "
            f"p99 {ms(f['p99_s']):>7}  p99.9 {ms(f['p999_s']):>7}  max {ms(f['max_s']):>7}  "
            f"(longest in Envoy {ms(f['envoy_max_s'])})"
        )
    lines.append(
        f"  held by the hung node until timeout: {figures['held_by_hung_node']}, "
        f"reads hedged to the next node: {figures['hedged_reads']}, errors: {figures['errors'] or 'none'}"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["writes", "reads", "both"], default="both")
    parser.add_argument("--agent-interval", default="1s", help="the agent's refresh interval (default: 1s)")
    parser.add_argument("--items", type=int, default=workload.Shape().items)
    parser.add_argument("--read-seconds", type=float, default=8.0)
    parser.add_argument("--no-hang", action="store_true", help="the same runs without the fault (a baseline)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an envoy.yaml value")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)

    values = dict(v.split("=", 1) for v in args.set)
    agent = {"active_interval": args.agent_interval, "idle_interval": args.agent_interval}
    shape = workload.Shape(items=args.items)
    phases = ["writes", "reads"] if args.phase == "both" else [args.phase]
    results = []
    for phase in phases:
        with tempfile.TemporaryDirectory(prefix="hung-node-bench-") as tmp:
            stack = Stack(pathlib.Path(tmp))
            try:
                run = lab.run(
                    stack,
                    phase,
                    shape=shape,
                    read_seconds=args.read_seconds,
                    hang=not args.no_hang,
                    agent_kwargs=agent,
                    envoy_values=values,
                )
            finally:
                stack.teardown()
        figures = run.figures()
        print(report(figures), flush=True)
        results.append(figures)
    if args.json:
        args.json.write_text(json.dumps({"agent_interval": args.agent_interval, "values": values, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
