#!/usr/bin/env python3
"""Measure the discovery agent's footprint against alternator-sim (a report, not a test).

For each cluster size: start `alternator-sim` with N nodes on 127.0.8.x, start the release agent
with one seed, wait until every node is active, then measure over a window
  - RSS (VmRSS and peak VmHWM from /proc),
  - /localnodes requests per refresh (sim counters / agent refresh rounds),
  - GET / probes sent,
  - CPU time used per second of wall time,
once on the active cadence (a poller reports traffic every 0.5 s) and once idle.

Usage: python3 discovery-agent/bench/footprint.py [--nodes 3,100] [--window 30] [--idle-window 120]
Binaries: $CARGO_TARGET_DIR/release or <repo>/target/release (`make native`).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
TICKS = os.sysconf("SC_CLK_TCK")


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def status_kb(pid, field):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metric(agent, name):
    _, body = get(agent + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def sim_counts(control):
    _, body = get(f"http://{control}/counters")
    nodes = json.loads(body)["nodes"].values()
    return sum(n.get("localnodes", 0) for n in nodes), sum(n.get("health", 0) for n in nodes)


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - not yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out: {what}")


def measure(n, window, idle_window):
    nodes = [f"127.0.8.{i}" for i in range(1, n + 1)]
    sim_args = [str(TARGET / "alternator-sim")]
    for i, address in enumerate(nodes):
        sim_args += ["--node", f"{address}/dc1/rack{i % 3 + 1}"]
    sim = subprocess.Popen(sim_args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    agent_proc = None
    try:
        started = json.loads(sim.stdout.readline())
        port, control = started["port"], started["control"]
        listen = f"127.0.0.1:{free_port()}"
        agent_proc = subprocess.Popen(
            [str(TARGET / "alternator-discovery-agent"), "--seeds", nodes[0], "--port", str(port),
             "--listen", listen, "--datacenter", "dc1", "--rack", "rack1", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        agent = f"http://{listen}"
        wait(lambda: metric(agent, 'alternator_agent_nodes{state="active"}') == n, 60,
             f"{n} nodes active")
        rows = {}
        for cadence in ("active", "idle"):
            stop = threading.Event()
            poller = None
            if cadence == "active":
                def poll():
                    while not stop.is_set():
                        get(agent + "/v1/nodes?traffic=1")
                        stop.wait(0.5)
                poller = threading.Thread(target=poll, daemon=True)
                poller.start()
                time.sleep(2)
            else:
                # Let the idle window (60 s by default) pass since the last reported traffic.
                time.sleep(62)
            rounds0 = metric(agent, "alternator_agent_refresh_rounds_total")
            ln0, health0 = sim_counts(control)
            cpu0, t0 = cpu_seconds(agent_proc.pid), time.monotonic()
            time.sleep(window if cadence == "active" else idle_window)
            cpu1, t1 = cpu_seconds(agent_proc.pid), time.monotonic()
            ln1, health1 = sim_counts(control)
            rounds1 = metric(agent, "alternator_agent_refresh_rounds_total")
            stop.set()
            if poller:
                poller.join()
            rounds = rounds1 - rounds0
            rows[cadence] = {
                "refresh_rounds": rounds,
                "localnodes_requests": ln1 - ln0,
                "requests_per_refresh": round((ln1 - ln0) / rounds, 2) if rounds else None,
                "probes": health1 - health0,
                "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
            }
        rows["rss_kb"] = status_kb(agent_proc.pid, "VmRSS")
        rows["peak_rss_kb"] = status_kb(agent_proc.pid, "VmHWM")
        return rows
    finally:
        for proc in (agent_proc, sim):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,100")
    parser.add_argument("--window", type=float, default=30.0, help="active-cadence window, s")
    parser.add_argument("--idle-window", type=float, default=120.0,
                        help="idle-cadence window, s (the default idle interval is 60 s)")
    args = parser.parse_args()
    for n in (int(x) for x in args.nodes.split(",")):
        print(json.dumps({"nodes": n, **measure(n, args.window, args.idle_window)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
