#!/usr/bin/env python3
"""A soak: the lab workload for ten minutes (default) while nodes, the agent and Envoy churn.
What the application saw, and whether memory stays flat. A report, never a pass/fail gate; not
part of `make test` or `make bench`.

The stack is `harness.lab`'s: a stand-in cluster of 3 nodes, the discovery agent at the product's
cadence (1 s) and an Envoy with 2 workers on the shipped configuration of the chosen build
(`--build wasm|native`). The load is `harness.workload` with the SDK's retries off
(`sdk_attempts=1`), so every failure an Envoy does not absorb reaches the count: 32 threads write
the items, then, for the whole soak, 16 readers (GetItem, one request in ten a conditional
UpdateItem) and 8 writers (PutItem over the same items, again and again).

Churn, on a fixed timeline of 30 s slots (`--churn-every`):
- every slot, the next node in turn is stopped (its port closed, its open connections reset) and
  started again `--down-seconds` later;
- once (half-way), another node hangs (accepts connections, never answers) for `--hang-seconds`,
  then is started again;
- once (a quarter in), Envoy is hot-restarted: the next restart epoch takes over the listener
  port the application keeps sending to, and the old process drains and exits;
- once (three quarters in), the discovery agent is stopped (SIGTERM) and a new one is started on
  its port.

Printed: the timeline as it ran; requests, failures and p50/p99/p99.9 of reads and writes; every
failure the application saw, by operation, error and the fault under way when it ended; every
non-200 answer in Envoy's access log with the node that held it; the requests Envoy hedged or
retried to the next node; and memory at the start and the end of every Envoy, agent and filter
VM process (see MEMORY below).

Run: `.venv/bin/python bench/soak.py [--duration 600] [--build wasm|native] [--json out.json]
[--workdir DIR]` (with `--workdir` the logs, Envoy's access log among them, are kept there).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import pathlib
import re
import sys
import tempfile
import threading
import time

from harness import lab, workload
from harness.agent import Agent
from harness.latency import percentile
from harness.stack import Stack
from harness.util import eventually
from hung_node import ms

MEMORY = """\
memory: RSS is the process's resident set (VmRSS of /proc/PID/status); Envoy heap is what
tcmalloc has handed out (admin /memory "allocated", the server.memory_allocated stat); filter VMs
are the wasm linear memories of the V8 VMs, found in /proc/PID/smaps (a read-write mapping at
the start of V8's 8 GiB reservation): their size is what the filter's heap grew them to
(memory.grow; it never shrinks), resident is the part touched. The native build has no VM: its
allocations are in Envoy's heap. Start is the first sample after --warmup seconds of traffic on
that process, end its last sample; samples every 10 s."""

SLACK_S = 2.0  # a failure ending this long after a fault's window still counts toward it
WASM_RESERVATION = 8 << 30  # V8's reservation for one 32-bit wasm memory, guard region included
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ")


@dataclasses.dataclass
class Event:
    """One fault of the timeline, in seconds since the soak began."""

    label: str
    begin: float
    end: float | None = None


class TimedRecorder(workload.Recorder):
    """workload.Recorder that also keeps when each failure ended and Envoy's reason for it."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.failures: list[tuple[float, str, str, str]] = []  # (t, phase, operation, kind)

    def record_error(self, operation: str, retries: int, kind: str, message: str):
        # Envoy's own answers (envoy.yaml, local_reply_config) say why in parentheses.
        m = re.search(r"no Alternator node answered \(([^)]*)\)", message)
        if m:
            kind = f"{kind} ({m.group(1)})"
        with self._lock:
            self.failures.append((self.clock(), self.phase, operation, kind))
        super().record_error(operation, retries, kind, message)


def rss_bytes(pid: int) -> int | None:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def wasm_memories(pid: int) -> tuple[int, int, int] | None:
    """(count, size, resident bytes) of the wasm linear memories in a process: V8 reserves
    8 GiB for each and makes the memory's current size read-write at the start of it."""
    try:
        text = pathlib.Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    maps = []  # [start, end, perms, rss bytes]
    for line in text.splitlines():
        m = _MAPPING.match(line)
        if m:
            maps.append([int(m[1], 16), int(m[2], 16), m[3], 0])
        elif line.startswith("Rss:") and maps:
            maps[-1][3] = int(line.split()[1]) * 1024
    count = size = resident = 0
    for a, b in zip(maps, maps[1:], strict=False):
        if a[2] == "rw-p" and b[2] == "---p" and a[1] == b[0] and b[1] - a[0] == WASM_RESERVATION:
            count, size, resident = count + 1, size + a[1] - a[0], resident + a[3]
    return count, size, resident


def sample(t: float, envoy, agent) -> dict:
    out = {"t": round(t, 1), "envoy_pid": envoy.pid, "envoy_rss": rss_bytes(envoy.pid), "agent_pid": agent.pid}
    out["agent_rss"] = rss_bytes(agent.pid)
    try:
        out["envoy_heap"] = envoy.stats(r"^server\.memory_allocated$").get("server.memory_allocated")
        out["vm_count"] = envoy.stats(r"^wasm\.wasm_vm_count$").get("wasm.wasm_vm_count")
    except Exception:  # noqa: BLE001 - an Envoy handing over to its next epoch may not answer
        out["envoy_heap"] = out["vm_count"] = None
    if envoy.build == "wasm":
        vms = wasm_memories(envoy.pid)
        if vms:
            out["vm_memories"], out["vm_size"], out["vm_resident"] = vms
    return out


def mib(value) -> str:
    return "?" if value is None else f"{value / (1 << 20):.1f}"


def memory_lines(samples: list[dict], starts: dict, warmup: float) -> list[str]:
    """Start and end of each process's samples (`starts`: pid → when it began taking traffic)."""
    lines = []
    for kind, name in (("envoy", "Envoy"), ("agent", "agent")):
        pids = list(dict.fromkeys(s[f"{kind}_pid"] for s in samples))
        for n, pid in enumerate(pids):
            mine = [s for s in samples if s[f"{kind}_pid"] == pid and s[f"{kind}_rss"] is not None]
            ready = [s for s in mine if s["t"] >= starts.get(pid, 0.0) + warmup] or mine
            if not ready:
                continue
            first, last = ready[0], ready[-1]
            label = f"{name} {'epoch ' + str(n) if kind == 'envoy' else '#' + str(n + 1)} (pid {pid})"
            peak = max(s[f"{kind}_rss"] for s in ready)
            line = (
                f"  {label:<24} t={first['t']:>5.0f}..{last['t']:<5.0f} RSS {mib(first[f'{kind}_rss'])} -> "
                f"{mib(last[f'{kind}_rss'])} MiB (max {mib(peak)})"
            )
            if kind == "envoy":
                line += f", heap {mib(first['envoy_heap'])} -> {mib(last['envoy_heap'])} MiB"
                if "vm_size" in first and "vm_size" in last:
                    line += (
                        f", filter VMs {first['vm_memories']} (wasm_vm_count {first['vm_count']}) "
                        f"size {mib(first['vm_size'])} -> {mib(last['vm_size'])} MiB, "
                        f"resident {mib(first['vm_resident'])} -> {mib(last['vm_resident'])} MiB"
                    )
            lines.append(line)
    return lines


def access_time(entry_start: str) -> float:
    """Envoy's %START_TIME% (UTC, milliseconds) as a Unix time."""
    stamp = datetime.datetime.strptime(entry_start, "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


def during(t: float, events: list[Event]) -> str:
    """The faults under way at `t` (within SLACK_S after one ended)."""
    names = [e.label for e in events if e.begin <= t <= (e.end if e.end is not None else e.begin) + SLACK_S]
    return " + ".join(names) or "no fault under way"


def timeline(args) -> list[tuple[float, str, str]]:
    """(t, action, node or "") in order."""
    every, addresses = args.churn_every, lab.ADDRESSES
    slots = [k for k in range(1, int(args.duration // every) + 1) if k * every + args.down_seconds < args.duration]
    if len(slots) < 3:
        raise SystemExit(f"--duration {args.duration} leaves fewer than 3 churn slots of {every} s")
    plan = []
    for k in slots:
        node = addresses[k % len(addresses)]
        plan += [(k * every, "stop", node), (k * every + args.down_seconds, "start", node)]
    hot, hang, agent = (slots[len(slots) * q // 4] for q in (1, 2, 3))
    victim = addresses[(hang + 1) % len(addresses)]  # not the node that slot stops
    hang_at = hang * every + args.down_seconds + 3
    plan += [(hang_at, "hang", victim), (hang_at + args.hang_seconds, "unhang", victim)]
    plan += [
        (hot * every + args.down_seconds + 5, "hot-restart", ""),
        (agent * every + args.down_seconds + 5, "agent", ""),
    ]
    return sorted(plan)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of soak (default: 600)")
    parser.add_argument("--build", choices=["wasm", "native"], default="wasm", help="the filter build (default: wasm)")
    parser.add_argument("--churn-every", type=float, default=30.0, help="a node stopped every N s (default: 30)")
    parser.add_argument("--down-seconds", type=float, default=10.0, help="how long it stays down (default: 10)")
    parser.add_argument("--hang-seconds", type=float, default=10.0, help="how long the hung node hangs (default: 10)")
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--writers", type=int, default=8, help="PutItem threads during the soak (default: 8)")
    parser.add_argument("--items", type=int, default=workload.Shape().items)
    parser.add_argument("--warmup", type=float, default=20.0, help="traffic before a process's first sample")
    parser.add_argument("--agent-interval", default="1s", help="the agent's refresh interval (default: 1s)")
    parser.add_argument("--workdir", type=pathlib.Path, help="keep the processes' logs here (default: a temp dir)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures and memory samples here")
    args = parser.parse_args(argv)
    if args.down_seconds + 3 + args.hang_seconds + 3 > args.churn_every:
        raise SystemExit("--down-seconds + --hang-seconds + 6 must fit in --churn-every")
    plan = timeline(args)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        base, cleanup = args.workdir, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="soak-")
        base = pathlib.Path(cleanup.name)
    stack = Stack(base)
    try:
        return soak(args, plan, stack)
    finally:
        stack.teardown()
        if cleanup:
            cleanup.cleanup()


def soak(args, plan, stack: Stack) -> int:
    agent_kwargs = {"active_interval": args.agent_interval, "idle_interval": args.agent_interval}
    sim, agent, envoy = lab.start(stack, agent_kwargs=agent_kwargs, build=args.build)
    access_log = pathlib.Path(envoy.values["ACCESS_LOG_PATH"])  # every epoch appends to it
    zero = {"mono": time.monotonic(), "wall": time.time()}  # reset when the soak begins

    def clock() -> float:
        return time.monotonic() - zero["mono"]

    recorder = TimedRecorder(clock)
    stop = threading.Event()
    write_shape = workload.Shape(items=args.items, writers=32, readers=args.readers)
    ddb = workload.client(envoy.url, 32 + args.readers + args.writers, sdk_attempts=1)
    workload.create_table(ddb, write_shape.table)
    workload.write_items(ddb, write_shape, recorder, stop)
    if recorder.error_count():
        raise SystemExit(f"writing the items failed before any fault: {recorder.error_samples}")

    recorder.phase = "warmup"
    readers = workload.start_readers(ddb, write_shape, recorder, stop)
    soak_shape = dataclasses.replace(write_shape, writers=args.writers)

    def keep_writing():
        while not stop.is_set():
            workload.write_items(ddb, soak_shape, recorder, stop)

    writer = threading.Thread(target=keep_writing, name="soak-writers", daemon=True)
    writer.start()
    time.sleep(args.warmup)  # a fixed pause of the timeline: the warm-up before the first sample

    zero.update(mono=time.monotonic(), wall=time.time())
    recorder.phase = "soak"
    current = {"envoy": envoy, "agent": agent}
    starts = {envoy.pid: -args.warmup, agent.pid: -args.warmup}
    samples: list[dict] = []

    def sampler():
        for n in range(int(args.duration // 10) + 1):
            time.sleep(max(0.0, n * 10 - clock()))  # the sampling schedule
            samples.append(sample(clock(), current["envoy"], current["agent"]))

    sampling = threading.Thread(target=sampler, name="memory-sampler", daemon=True)
    sampling.start()
    load_before = os.getloadavg()[0]
    print(
        f"soak {datetime.date.today()}: {args.build} build, {args.duration:.0f} s, "
        f"{args.readers} readers + {args.writers} writers (boto3, SDK retries off), "
        f"{len(lab.ADDRESSES)} nodes, Envoy 2 workers, agent every {args.agent_interval}",
        flush=True,
    )

    events: list[Event] = []
    open_events: dict[str, Event] = {}
    for at, action, node in plan:
        time.sleep(max(0.0, at - clock()))  # the churn schedule
        t = clock()
        if action == "stop":
            sim.stop_node(node)
            open_events[node] = Event(f"{node} stopped", t)
        elif action == "hang":
            sim.hang_node(node)
            open_events[node] = Event(f"{node} hung", t)
        elif action in ("start", "unhang"):
            sim.start_node(node)
            event = open_events.pop(node)
            event.end = clock()
            events.append(event)
        elif action == "agent":
            old = current["agent"]
            old.stop()
            restarted = stack.adopt(
                Agent(stack.base / "agent-restarted", lab.ADDRESSES, sim.port, listen_port=old.port, **agent_kwargs)
            )
            restarted.wait_ready()
            current["agent"] = restarted
            starts[restarted.pid] = clock()
            events.append(Event("agent restarted", t, clock()))
        elif action == "hot-restart":
            parent = current["envoy"]
            child = stack.adopt(parent.hot_restart(stack.base / "envoy-epoch1"))
            child.wait_ready(timeout=60)
            current["envoy"] = child
            starts[child.pid] = clock()
            eventually(lambda p=parent: not p.process.alive(), timeout=60, message="the old epoch exits")
            events.append(Event("Envoy hot restart", t, clock()))
        print(f"  t={t:6.1f} s  {action} {node}".rstrip(), file=sys.stderr, flush=True)
    sampling.join()
    stop.set()
    for thread in readers:
        thread.join()
    writer.join()
    recorder.phase = "done"
    end_t = clock()
    print(f"machine load average (1 min): {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")

    # Every successful request went through Envoy: wait until the log has them all, then until
    # it stops growing (Envoy flushes access logs every second).
    answered = recorder.ok

    def logged():
        return access_log.read_bytes().count(b"\n") >= answered

    eventually(logged, timeout=60, interval=0.5, message="access log flushed")
    size = {"value": -1, "since": time.monotonic()}

    def quiet():
        now = access_log.stat().st_size
        if now != size["value"]:
            size.update(value=now, since=time.monotonic())
        return time.monotonic() - size["since"] > 1.5

    eventually(quiet, timeout=60, message="access log stops growing")
    entries = []
    for line in access_log.read_text().splitlines():
        parsed = lab.access_entries(line)
        if parsed:
            entries.append((access_time(line[1 : line.index("]")]), parsed[0]))
    figures = report(args, recorder, entries, events, samples, starts, zero["wall"], end_t, sim.totals())
    if args.json:
        args.json.write_text(json.dumps(figures, default=str, indent=1))
    return 0


def report(args, recorder, entries, events, samples, starts, wall0, end_t, node_totals) -> dict:
    by_op = recorder.by_operation(("soak",))
    errors = recorder.errors("operation", ("soak",))
    figures = {"build": args.build, "duration_s": args.duration, "events": [dataclasses.asdict(e) for e in events]}
    total = sum(len(v) for v in by_op.values()) + sum(errors.values())
    stops = [e for e in events if e.label.endswith("stopped")]
    others = [e for e in events if not e.label.endswith("stopped")]
    print(
        f"faults: {len(stops)} node stops of {args.down_seconds:.0f} s, every {args.churn_every:.0f} s in turn "
        f"(t={stops[0].begin:.0f}..{stops[-1].end:.0f}); "
        + "; ".join(f"{e.label} t={e.begin:.0f}..{e.end:.0f}" for e in others)
    )
    print(
        f"requests: {total} in {end_t:.0f} s ({total / end_t:.0f}/s), SDK retries {recorder.sdk_retries}, "
        f"served per node (sim counters, whole run): {node_totals}"
    )
    for name, ops in (("reads", lab.READS), ("writes", lab.WRITES)):
        values = sorted(v for op in ops for v in by_op.get(op, []))
        failed = sum(errors.get(op, 0) for op in ops)
        f = {
            "ok": len(values),
            "failed": failed,
            "p50_s": percentile(values, 0.5),
            "p99_s": percentile(values, 0.99),
            "p999_s": percentile(values, 0.999),
            "max_s": values[-1] if values else float("nan"),
        }
        figures[name] = f
        goal = " (goal 0)" if name == "reads" else ""
        print(
            f"  {name:<6} ok {f['ok']:>7}  failed {failed:>4}{goal}  p50 {ms(f['p50_s'])}  p99 {ms(f['p99_s'])}  "
            f"p99.9 {ms(f['p999_s'])}  max {ms(f['max_s'])}"
        )

    failures = collections.Counter(
        (op, kind, during(t, events)) for t, phase, op, kind in recorder.failures if phase == "soak"
    )
    figures["failures"] = [{"operation": k[0], "error": k[1], "during": k[2], "count": n} for k, n in failures.items()]
    print("failures the application saw (operation, error, fault under way):" + ("" if failures else " none"))
    for (op, kind, when), n in sorted(failures.items()):
        print(f"  {n:>5}  {op:<10} {kind}  [{when}]")

    soak = [(ts - wall0, a) for ts, a in entries if 0 <= ts - wall0 <= end_t]
    refused = collections.Counter(
        (a.operation, a.status, a.flags, a.upstream.rsplit(":", 1)[0] or "-", during(t + a.duration_ms / 1000, events))
        for t, a in soak
        if a.status != 200
    )
    figures["envoy_non_200"] = [
        {"operation": k[0], "status": k[1], "flags": k[2], "node": k[3], "during": k[4], "count": n}
        for k, n in refused.items()
    ]
    print(
        "non-200 answers in Envoy's access log (operation, status, flags, node that held it):"
        + ("" if refused else " none")
    )
    for (op, status, flags, node, when), n in sorted(refused.items()):
        print(f"  {n:>5}  {op:<10} {status} {flags:<4} {node:<10} [{when}]")
    retried = collections.Counter(
        ("reads" if a.operation in lab.READS else "writes")
        for _, a in soak
        if a.status == 200 and (a.attempts or 0) > 1
    )
    figures["envoy_absorbed"] = dict(retried)
    print(
        f"absorbed by Envoy (answered 200 after more than one attempt): reads {retried['reads']} "
        f"(hedged or retried to the next node), writes {retried['writes']} (retried before the request was sent)"
    )

    figures["memory_samples"] = samples
    print(MEMORY)
    for line in memory_lines(samples, starts, args.warmup):
        print(line)
    return figures


if __name__ == "__main__":
    sys.exit(main())
