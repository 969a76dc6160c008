"""Run the routing core's criterion benchmarks and read their estimates back.

Criterion writes `<target>/criterion/<group>/<bench>/new/estimates.json` (nanoseconds per
iteration) and `benchmark.json` (the full id); reading those is steadier than parsing its
terminal output.
"""

import json
import os
import subprocess
import sys
import time

from harness.util import ROOT, target_dir


def human_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def run(quick: bool = True) -> dict:
    """`cargo bench -p alternator-routing`; quick mode samples for 1 s + 2 s per benchmark."""
    cmd = [os.environ.get("CARGO", "cargo"), "bench", "-p", "alternator-routing", "--bench", "*", "--"]
    if quick:
        cmd += ["--warm-up-time", "1", "--measurement-time", "2"]
    print("routing core: " + " ".join(cmd[:6]) + (" (quick sampling)" if quick else ""), flush=True)
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return {"error": f"cargo bench exited {proc.returncode}"}
    return {"command": " ".join(cmd[:6]), "quick": quick, "benchmarks": read(since=started)}


def read(since: float = 0.0) -> list:
    """Estimates of every benchmark criterion wrote at or after `since` (epoch seconds)."""
    base = target_dir() / "criterion"
    out = []
    if not base.is_dir():
        return out
    for bench_json in sorted(base.glob("**/new/benchmark.json")):
        try:
            meta = json.loads(bench_json.read_text())
            est = json.loads((bench_json.parent / "estimates.json").read_text())
        except (OSError, ValueError):
            continue
        if bench_json.stat().st_mtime < since:
            continue  # left over from an earlier run of a benchmark that no longer exists
        full_id = meta.get("full_id") or meta.get("title") or str(bench_json.parent.parent.name)
        entry = {
            "id": full_id,
            "median_ns": est["median"]["point_estimate"],
            "mean_ns": est["mean"]["point_estimate"],
            "mean_ci_ns": [
                est["mean"]["confidence_interval"]["lower_bound"],
                est["mean"]["confidence_interval"]["upper_bound"],
            ],
        }
        tp = meta.get("throughput")
        if tp:
            entry["throughput"] = tp
        out.append(entry)
    return out
