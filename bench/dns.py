#!/usr/bin/env python3
"""The discovery agent's DNS answers under load: queries per second over loopback and the
agent's memory while it serves them. A report, never a pass/fail gate.

Starts the stand-in cluster (6 nodes in one datacenter, on 3 racks) and the agent with its DNS
listener on a free loopback port, then runs `dnsperf` (Debian package `dnsperf`) for a fixed
time against a mix of the zone apex, datacenter and rack names, A records, while sampling the
agent's resident memory from /proc. Run: `.venv/bin/python bench/dns.py [--seconds 10]`;
`make bench` runs it after the proxy benchmark and writes `target/bench/dns.json`.
"""

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading
import time

from harness.stack import Stack
from harness.util import ROOT

ZONE = "alternator.local."
NODES = [(f"127.0.3.{i + 1}", "dc1", f"rack{i % 3 + 1}") for i in range(6)]
# The agent learns the racks of its own datacenter's nodes only for its own rack (`--rack`).
NAMES = [ZONE, f"dc1.{ZONE}", f"rack1.dc1.{ZONE}"]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS), 0 once the process is gone."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(m.group(1)) if m else 0


def dnsperf_summary(text: str) -> dict:
    """The figures of dnsperf's closing statistics block."""
    fields = {
        "queries_sent": r"Queries sent:\s+(\d+)",
        "queries_completed": r"Queries completed:\s+(\d+)",
        "queries_lost": r"Queries lost:\s+(\d+)",
        "queries_per_second": r"Queries per second:\s+([\d.]+)",
        "average_latency_s": r"Average Latency \(s\):\s+([\d.]+)",
    }
    out = {}
    for key, pattern in fields.items():
        m = re.search(pattern, text)
        if m:
            out[key] = float(m.group(1))
    m = re.search(r"Response codes:\s+(.+)", text)
    if m:
        out["response_codes"] = m.group(1).strip()
    return out


def run(seconds: int, clients: int, outstanding: int, max_records: int) -> dict:
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        raise SystemExit("dnsperf is missing: `make bench-tools` installs it (Debian package dnsperf)")
    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp:
        base = pathlib.Path(tmp)
        stack = Stack(base)
        try:
            sim = stack.sim(NODES)
            agent = stack.agent(
                sim,
                datacenter="dc1",
                rack="rack1",
                dns=True,
                dns_zone=ZONE,
                extra_args=["--dns-max-records", str(max_records)],
            )
            agent.wait_active([n[0] for n in NODES])
            queries = base / "queries.txt"
            queries.write_text("".join(f"{name} A\n" for name in NAMES))
            idle = rss_kib(agent.pid)
            peak = [idle]
            done = threading.Event()

            def sample():
                while not done.wait(0.2):
                    peak[0] = max(peak[0], rss_kib(agent.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            result = subprocess.run(
                [
                    dnsperf,
                    "-s",
                    "127.0.0.1",
                    "-p",
                    str(agent.dns_port),
                    "-d",
                    str(queries),
                    "-l",
                    str(seconds),
                    "-c",
                    str(clients),
                    "-q",
                    str(outstanding),
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
            elapsed = time.monotonic() - started
            done.set()
            sampler.join()
            after = rss_kib(agent.pid)
        finally:
            stack.teardown()
    if result.returncode != 0:
        raise SystemExit(f"dnsperf failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return {
        "method": "dnsperf over UDP on loopback against the agent's DNS listener; agent VmRSS sampled every 200 ms",
        "dnsperf": subprocess.run([dnsperf, "-h"], capture_output=True, text=True).stderr.splitlines()[:1],
        "nodes": len(NODES),
        "names": NAMES,
        "max_records": max_records,
        "seconds": seconds,
        "clients": clients,
        "outstanding": outstanding,
        "elapsed_s": round(elapsed, 1),
        "agent_rss_kib": {"idle": idle, "peak": peak[0], "after": after},
        **dnsperf_summary(result.stdout),
    }


def format_report(r: dict) -> str:
    rss = r["agent_rss_kib"]
    return "\n".join(
        [
            f"agent DNS under load ({r['nodes']} nodes, names {', '.join(r['names'])}, "
            f"max {r['max_records']} record(s), dnsperf {r['seconds']} s, {r['clients']} clients, "
            f"{r['outstanding']} outstanding):",
            f"  queries per second   {r.get('queries_per_second', 0):10.0f}",
            f"  completed / lost     {r.get('queries_completed', 0):10.0f} / {r.get('queries_lost', 0):.0f}",
            f"  average latency      {r.get('average_latency_s', 0) * 1e6:10.0f} µs",
            f"  response codes       {r.get('response_codes', '?')}",
            f"  agent RSS (MiB)      idle {rss['idle'] / 1024:.1f}, peak {rss['peak'] / 1024:.1f}, "
            f"after {rss['after'] / 1024:.1f}",
        ]
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--clients", type=int, default=4, help="dnsperf -c: client sockets")
    p.add_argument("--outstanding", type=int, default=64, help="dnsperf -q: queries in flight")
    p.add_argument("--max-records", type=int, default=1, help="the agent's --dns-max-records")
    p.add_argument("--json", type=pathlib.Path, default=ROOT / "target" / "bench" / "dns.json")
    args = p.parse_args()
    report = run(args.seconds, args.clients, args.outstanding, args.max_records)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"(full report: {args.json})")


if __name__ == "__main__":
    main()
