#!/usr/bin/env python3
"""alternator-mesh demo: an unmodified boto3 application, one Envoy endpoint, every Alternator
node busy, and a node outage the application does not notice.

Started by `make demo` (which builds everything first). By default it runs the stand-in cluster
(alternator-sim, three nodes on two racks), the discovery agent and Envoy with the shipped
configuration; `--alternator HOSTS` points the agent at a real Alternator cluster instead.
Everything it starts is stopped again on exit, on an error and on Ctrl-C.

Every process is started through the test harness (`harness.stack.Stack`), so the demo exercises
exactly what the end-to-end tests exercise; the workload is `harness.workload`, the same one the
compose deployment runs (deploy/workload.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

from harness import prometheus, workload
from harness.agent import Agent
from harness.envoy import Envoy, stat_prefix
from harness.latency import percentile
from harness.sim import SimProcess
from harness.stack import Stack, wait_routing
from harness.util import eventually
from view import Terminal, ms, table, thousands

TICK_S = 0.25
# How much longer than planned a phase of the read demo waits for what it shows to happen.
PHASE_GRACE_S = 60.0
RATE_WINDOW_S = 1.0
# Three nodes across two racks of one datacenter, on distinct loopback addresses and one shared
# port, as real Alternator nodes are laid out.
SIM_NODES = (
    ("127.0.0.2", "dc1", "rack1"),
    ("127.0.0.3", "dc1", "rack1"),
    ("127.0.0.4", "dc1", "rack2"),
)
SHAPE = workload.Shape()
# What `close()` calls each process the demo started.
PROCESS_LABELS = {SimProcess: "alternator-sim", Agent: "discovery agent", Envoy: "envoy"}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: wind down and clean up.

    A BaseException, like KeyboardInterrupt, so that no "retry on any error" loop swallows it.
    """


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="make demo DEMO_ARGS=...",
        description="Spread an unmodified boto3 workload over Alternator nodes through Envoy.",
    )
    p.add_argument(
        "--duration", type=float, default=45.0, help="seconds of random reads after the writes (default 45, at least 6)"
    )
    p.add_argument(
        "--affinity",
        choices=["none", "rmw", "any_write"],
        default="none",
        help="the filter's key-route affinity mode (default none)",
    )
    p.add_argument(
        "--alternator",
        metavar="HOST1,HOST2",
        help="use this real Alternator cluster (seed hosts) instead of the sim; node stop/start is then skipped",
    )
    p.add_argument(
        "--alternator-port",
        type=int,
        default=8000,
        metavar="PORT",
        help="Alternator port of --alternator (default 8000)",
    )
    p.add_argument("--no-color", action="store_true", help="no ANSI colours")
    p.add_argument("--json-summary", metavar="FILE", help="also write the summary as JSON")
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the process logs of a successful run (always kept on failure)"
    )
    args = p.parse_args(argv)
    if args.duration < 6:
        p.error("--duration must be at least 6 seconds (one third each before, during and after the node outage)")
    if args.alternator is not None:
        args.alternator = [h.strip() for h in args.alternator.split(",") if h.strip()]
        if not args.alternator:
            p.error("--alternator needs at least one host")
    return args


class Demo:
    """One run: start the stack, drive the workload through phases, sample and draw, summarise."""

    def __init__(self, args, term: Terminal, workdir: pathlib.Path):
        self.args = args
        self.term = term
        self.p = term.palette
        self.workdir = workdir
        self.stack = Stack(workdir)
        self.sim: SimProcess | None = None
        self.agent: Agent | None = None
        self.envoy: Envoy | None = None
        self.alternator_port = None
        self.sim_mode = args.alternator is None
        self.stop_workers = threading.Event()
        self.threads: list[threading.Thread] = []
        self.recorder = workload.Recorder()
        self.dynamodb = None
        self.created_table = False
        self.nodes: dict[str, dict] = {}  # address -> {"dc", "rack", "health"}
        self.history = collections.deque()  # (monotonic, {address: count})
        self.marks: dict[str, dict] = {}  # phase boundary -> {address: count}
        self.victim = None
        self.victim_state = "up"
        self.filter_version = None
        self.phase_label = "starting"

    # -- setup -------------------------------------------------------------------------------

    def start(self):
        p = self.p
        where = (
            "alternator-sim, a stand-in 3-node cluster on 2 racks"
            if self.sim_mode
            else f"Alternator cluster {','.join(self.args.alternator)}:{self.args.alternator_port}"
        )
        self.term.say(p.bold("alternator-mesh demo") + f" · backend: {where} · affinity: {self.args.affinity}")
        if self.sim_mode:
            self.sim = self.stack.sim(list(SIM_NODES))
            self.alternator_port = self.sim.port
            nodes = ", ".join(f"{n['address']} ({n['datacenter']}/{n['rack']})" for n in self.sim.info["nodes"])
            self.term.say(f"alternator-sim pid {self.sim.pid}: {nodes}, port {self.sim.port}")
            seeds = list(self.sim.addresses)
        else:
            seeds = self.args.alternator
            self.alternator_port = self.args.alternator_port
        # The product's default refresh cadence (1 s while traffic flows); probes of a node that
        # comes back are retried quickly so its return is visible within a short demo.
        self.agent = self.stack.agent(
            seeds=seeds, port=self.alternator_port, active_interval="1s", idle_interval="60s", probe_period="1s"
        )
        self.term.say(
            f"discovery agent pid {self.agent.pid}: {self.agent.url}, "
            f"{len(self.agent.snapshot()['nodes'])} nodes discovered"
        )
        if self.sim_mode:
            self.agent.wait_active([n[0] for n in SIM_NODES], timeout=30)
        else:
            # A real cluster's probes may take a while.
            eventually(
                self.agent.active_nodes, timeout=60, message="the agent lists at least one active Alternator node"
            )
        self.refresh_nodes()
        plugin = {"fallbacks": 2, "affinity": {"mode": self.args.affinity, "tables": {SHAPE.table: workload.HASH_KEY}}}
        self.term.say(f"plugin configuration: {json.dumps(plugin, separators=(',', ':'))}")
        self.envoy = self.stack.envoy(self.agent, plugin, concurrency=2, ready_timeout=60)
        self.term.say(f"envoy pid {self.envoy.pid}: the shipped envoy.yaml with alternator-filter, 2 worker threads")
        want = len([n for n in self.nodes.values() if n["health"] == "active"])
        wait_routing(self.envoy, want, at_least=True)
        self.dynamodb = workload.client(self.envoy.url, SHAPE.writers + SHAPE.readers)
        self.term.say(f"the application's only endpoint: {p.cyan(self.envoy.url)}")

    def refresh_nodes(self):
        """Node health from the agent (labels from the sim, else the agent); events on change."""
        snapshot = self.agent.snapshot()
        # The sim's own labels; a real cluster's come from the agent.
        labels = {n["address"]: (n["datacenter"], n["rack"]) for n in self.sim.info["nodes"]} if self.sim else {}
        seen = set()
        for n in snapshot["nodes"]:
            address = n["address"]
            seen.add(address)
            dc, rack = labels.get(address, (n.get("datacenter") or "-", n.get("rack") or "-"))
            old = self.nodes.get(address)
            self.nodes[address] = {"dc": dc, "rack": rack, "health": n["health"]}
            if old is not None and old["health"] != n["health"]:
                if old["health"] == "not listed":
                    self.term.event(f"agent: {address} is listed again, {n['health']}")
                else:
                    self.term.event(f"agent: {address} is now {n['health']}")
        for address, n in self.nodes.items():
            if address not in seen and n["health"] != "not listed":
                n["health"] = "not listed"
                self.term.event(f"agent: {address} left the node list")

    # -- sampling ----------------------------------------------------------------------------

    def counts(self) -> dict:
        """Requests each node served so far: the sim's own counters, else the filter's view."""
        if self.sim_mode:
            return self.sim.totals()
        return self.envoy_metrics()["per_node"]

    def sample(self):
        now = time.monotonic()
        counts = self.counts()
        for address in counts:
            self.nodes.setdefault(address, {"dc": "-", "rack": "-", "health": "unknown"})
        self.history.append((now, counts))
        while len(self.history) > 2 and now - self.history[1][0] >= RATE_WINDOW_S:
            self.history.popleft()
        try:
            self.refresh_nodes()
        except Exception:  # noqa: BLE001 - a slow agent answer must not stop the demo
            pass
        version = self.filter_snapshot_version()
        if version is not None and version != self.filter_version:
            if self.filter_version is not None:
                self.term.event("filter: routing on the agent's new node list")
            self.filter_version = version
        return counts

    def filter_snapshot_version(self):
        """The node snapshot version the filter routes on, or None before the first one."""
        name = stat_prefix(self.envoy.build) + "alternator_snapshot_version"
        return int(self.envoy.stats(pattern=f"^{re.escape(name)}$").get(name, 0)) or None

    def envoy_metrics(self) -> dict:
        """The filter's and Envoy's counters the demo reports, from `/stats/prometheus`."""
        samples = self.envoy.metrics()
        per_node, policy = {}, {}
        for s in samples:
            if s.name == "alternator_requests_total":
                address = s.labels.get("node", "").rsplit(":", 1)[0]
                per_node[address] = per_node.get(address, 0) + int(s.value)
            elif s.name == "alternator_routed_total":
                key = s.labels.get("policy", "?")
                policy[key] = policy.get(key, 0) + int(s.value)
        stats = self.envoy.stats()
        return {
            "per_node": per_node,
            "policy": policy,
            "fallback": int(prometheus.total(samples, "alternator_requests_total", choice="fallback")),
            "envoy_retries": int(stats.get("cluster.alternator.upstream_rq_retry", 0)),
            "retry_overflow": int(stats.get("cluster.alternator.upstream_rq_retry_overflow", 0)),
            "downstream_5xx": int(stats.get("http.dynamodb.downstream_rq_5xx", 0)),
        }

    def rates(self) -> dict:
        if len(self.history) < 2:
            return {}
        (t0, c0), (t1, c1) = self.history[0], self.history[-1]
        span = max(t1 - t0, 1e-6)
        return {a: max(0, c1.get(a, 0) - c0.get(a, 0)) / span for a in self.nodes}

    def mark(self, name: str):
        self.marks[name] = self.counts()

    # -- live view ---------------------------------------------------------------------------

    def render(self, elapsed: float, total: float):
        p = self.p
        rates = self.rates()
        rate_sum = sum(rates.values()) or 1.0
        width = self.term.bar_width()
        latest = self.history[-1][1] if self.history else {}
        port = self.alternator_port
        clock = f"{elapsed:5.1f} s / {total:.0f} s" if total else f"{elapsed:5.1f} s"
        lines = [p.bold(self.phase_label) + p.dim(f"  {clock}"), ""]
        share_label = "share of the last second" if width >= 24 else "share"
        lines.append(
            p.dim(f"  {'node':<21} {'rack':<10} {'health':<11} {share_label:<{width}} {'req/s':>7} {'total':>8}")
        )
        plain = []
        for address in sorted(self.nodes):
            n = self.nodes[address]
            share = rates.get(address, 0.0) / rate_sum
            health = n["health"]
            if address == self.victim and self.victim_state == "stopped":
                health = "STOPPED"
            paint = p.green if health == "active" else (p.yellow if health == "quarantined" else p.red)
            lines.append(
                f"  {address + ':' + str(port):<21} {n['dc'] + '/' + n['rack']:<10} "
                f"{paint(f'{health:<11}')} {self.term.bar(share, width, paint)} "
                f"{rates.get(address, 0.0):7.0f} {thousands(latest.get(address, 0)):>8}"
            )
            plain.append(f"{address} {rates.get(address, 0.0):.0f}/s")
        recent = sorted(self.recorder.take_recent())
        errors = self.recorder.error_count()
        err = p.green("0 errors") if errors == 0 else p.red(f"{errors} errors")
        lines.append("")
        lines.append(
            f"  application: {thousands(self.recorder.ok)} ok · {err} · "
            f"SDK retries {self.recorder.sdk_retries} · "
            f"p50 {ms(percentile(recent, 0.50))} · p99 {ms(percentile(recent, 0.99))}"
        )
        summary = f"{self.phase_label}: " + " | ".join(plain) + f" | errors {errors}"
        self.term.frame(lines, summary if len(self.history) >= 2 else None)

    def tick_until(self, done, started: float, total: float):
        """Sample and redraw until `done(seconds since started)`."""
        while True:
            elapsed = time.monotonic() - started
            self.sample()
            self.render(elapsed, total)
            if done(elapsed):
                return
            time.sleep(TICK_S)

    # -- phases ------------------------------------------------------------------------------

    def run_workload(self):
        self.recorder.phase = "setup"
        self.created_table = workload.create_table(self.dynamodb, SHAPE.table)
        self.term.event(f"table {SHAPE.table} " + ("created" if self.created_table else "already exists"))

        self.recorder.phase = "writes"
        self.phase_label = f"writing {SHAPE.items:,} items from {SHAPE.writers} threads"
        self.mark("writes")
        writer = threading.Thread(
            target=workload.write_items,
            name="writers",
            daemon=True,
            args=(self.dynamodb, SHAPE, self.recorder, self.stop_workers),
        )
        self.threads.append(writer)
        started = time.monotonic()
        writer.start()
        self.tick_until(lambda _: not writer.is_alive(), started, 0)
        self.term.event(f"{SHAPE.items:,} PutItems done in {time.monotonic() - started:.1f} s")

        duration = self.args.duration
        self.recorder.phase = "before"
        self.phase_label = f"reading random items from {SHAPE.readers} threads"
        self.mark("reads")
        self.history.clear()
        self.threads += workload.start_readers(self.dynamodb, SHAPE, self.recorder, self.stop_workers)
        started = time.monotonic()
        if self.sim_mode:
            # Each third lasts its share of --duration and, beyond that, until what it shows
            # has happened (every node served reads; the others carried the outage; the node
            # that came back took reads again), so a slow machine lengthens the demo instead
            # of cutting a phase short.
            self.victim = SIM_NODES[-1][0]
            everyone = {address for address, _, _ in SIM_NODES}
            self.read_phase(started, duration, "reads", everyone)
            self.stop_victim()
            self.read_phase(started, duration, "stop", everyone - {self.victim})
            self.start_victim()
            self.read_phase(started, duration, "restart", {self.victim})
        else:
            self.tick_until(lambda t: t >= duration, started, duration)
        self.stop_workers.set()
        for t in self.threads:
            t.join(timeout=15)
        self.mark("end")
        self.phase_label = "finished"
        self.sample()
        self.render(duration, duration)

    def read_phase(self, started: float, duration: float, since: str, must_serve: set):
        """Reads for a third of `duration` and until every node in `must_serve` has served a
        request since mark `since`; PHASE_GRACE_S longer at most (the summary then shows the
        node that did not)."""
        planned = time.monotonic() - started + duration / 3

        def done(elapsed):
            if elapsed < planned:
                return False
            counts, before = self.history[-1][1], self.marks[since]
            served = all(counts.get(a, 0) > before.get(a, 0) for a in must_serve)
            return served or elapsed >= planned + PHASE_GRACE_S

        self.tick_until(done, started, duration)

    def stop_victim(self):
        self.recorder.phase = "outage"
        self.sim.stop_node(self.victim)
        # Marked once the sim has closed the node's port and connections: from here on it
        # cannot count a single request, so its "while down" column is exactly zero.
        self.mark("stop")
        self.victim_state = "stopped"
        self.term.event(self.p.red(f"stopped node {self.victim}") + " (port closed, open connections reset)")

    def start_victim(self):
        self.mark("restart")
        self.recorder.phase = "after"
        self.sim.start_node(self.victim)
        self.victim_state = "up"
        self.term.event(self.p.green(f"started node {self.victim} again"))

    # -- summary -----------------------------------------------------------------------------

    def summary(self) -> dict:
        p = self.p
        m = self.marks
        end = m.get("end", {})
        port = self.alternator_port

        def delta(a, b, address):
            return m.get(b, {}).get(address, 0) - m.get(a, {}).get(address, 0)

        periods = [("reads", "end")]
        headers = ["node", "rack", "writes", "reads total"]
        if self.victim:
            periods = [("reads", "stop"), ("stop", "restart"), ("restart", "end")]
            headers = ["node", "rack", "writes", "reads before", f"while {self.victim} down", "after", "reads total"]
        rows, per_node = [], {}
        for address in sorted(set(self.nodes) | set(end)):
            n = self.nodes.get(address, {"dc": "-", "rack": "-"})
            writes = delta("writes", "reads", address)
            parts = [delta(a, b, address) for a, b in periods]
            total = delta("reads", "end", address)
            per_node[address] = {
                "datacenter": n["dc"],
                "rack": n["rack"],
                "writes": writes,
                "periods": parts,
                "reads": total,
            }
            row = [f"{address}:{port}", f"{n['dc']}/{n['rack']}", thousands(writes)]
            row += [thousands(x) for x in parts] if self.victim else []
            row.append(thousands(total))
            rows.append(row)
        source = "the sim's counters" if self.sim_mode else "the filter's alternator_requests_total"
        self.term.say("")
        self.term.say(p.bold("Requests per Alternator node") + p.dim(f" ({source})"))
        for line in table(headers, rows, "ll" + "r" * (len(headers) - 2)):
            self.term.say(line)

        ops = self.recorder.by_operation()
        op_errors = self.recorder.errors("operation")
        op_rows, per_op = [], {}
        for op in ("PutItem", "GetItem", "UpdateItem"):
            values = ops.get(op, [])
            errors = op_errors.get(op, 0)
            p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
            per_op[op] = {"ok": len(values), "errors": errors, "p50_ms": json_ms(p50), "p99_ms": json_ms(p99)}
            op_rows.append([op, thousands(len(values)), str(errors), ms(p50), ms(p99)])
        if self.victim:
            outage = self.recorder.by_operation(phases={"outage"}).get("GetItem", [])
            op_rows.append(
                [
                    f"GetItem while {self.victim} down",
                    thousands(len(outage)),
                    "",
                    ms(percentile(outage, 0.5)),
                    ms(percentile(outage, 0.99)),
                ]
            )
        self.term.say("")
        self.term.say(p.bold("What the application saw") + p.dim(" (boto3, after its own retries)"))
        for line in table(["operation", "ok", "errors", "p50", "p99"], op_rows, "lrrrr"):
            self.term.say(line)

        metrics = self.envoy_metrics()
        errors = self.recorder.error_count()
        policy = ", ".join(f"{k} {thousands(v)}" for k, v in sorted(metrics["policy"].items())) or "none"
        self.term.say("")
        self.term.say(
            f"  retries: {self.recorder.sdk_retries} by the SDK (after {metrics['downstream_5xx']} "
            f"5xx answers from Envoy), {metrics['envoy_retries']} by Envoy to the next listed node"
        )
        if metrics["retry_overflow"]:
            self.term.say(
                f"  Envoy's circuit breaker refused {metrics['retry_overflow']} retries "
                f"(cluster.alternator.upstream_rq_retry_overflow)"
            )
        self.term.say(
            f"  filter: {policy} routing decisions; {thousands(metrics['fallback'])} requests served by a fallback node"
        )
        for sample in self.recorder.error_samples:
            self.term.say(p.red(f"  error: {sample}"))
        stickiness = self.update_stickiness()
        if stickiness is not None:
            why = (
                "round robin spreads an item's updates; try --affinity rmw"
                if self.args.affinity == "none"
                else "the others moved when the node list changed during the outage"
            )
            self.term.say(
                f"  key affinity (sim key log): of {stickiness['keys']} items updated at least "
                f"twice, {stickiness['single_node']} had every UpdateItem on one node ({why})"
            )
        verdict = p.green("PASS: every request succeeded") if errors == 0 else p.red(f"FAIL: {errors} requests failed")
        if self.victim and errors == 0:
            verdict += p.green(f", also while {self.victim} was down")
        self.term.say(p.bold(verdict))
        return {
            "backend": "sim" if self.sim_mode else "alternator",
            "affinity": self.args.affinity,
            "stopped_node": self.victim,
            "errors": errors,
            "sdk_retries": self.recorder.sdk_retries,
            "envoy_retries": metrics["envoy_retries"],
            "envoy_retry_overflow": metrics["retry_overflow"],
            "fallback_served": metrics["fallback"],
            "routing_policies": metrics["policy"],
            "nodes": per_node,
            "operations": per_op,
            "update_stickiness": stickiness,
        }

    def update_stickiness(self):
        """How many items had all their UpdateItems coordinated by one node (sim only).

        With key affinity (`rmw`, `any_write`) every counter bump of an item goes to the node its
        partition key hashes to, so nearly all items stay on one node; without it, an item
        updated twice lands on the same node only by chance (one time in three here).
        """
        if not self.sim_mode:
            return None
        nodes_by_key = collections.defaultdict(list)
        for entry in self.sim.keylog():
            if entry.get("operation") == "UpdateItem" and entry.get("table") == SHAPE.table:
                nodes_by_key[json.dumps(entry.get("key"), sort_keys=True)].append(entry.get("node"))
        repeated = [set(v) for v in nodes_by_key.values() if len(v) >= 2]
        return {"keys": len(repeated), "single_node": sum(1 for v in repeated if len(v) == 1)}

    # -- teardown ----------------------------------------------------------------------------

    def close(self, keep_table: bool):
        self.stop_workers.set()
        for t in self.threads:
            t.join(timeout=15)
        self.term.close_frame()
        if self.created_table and not self.sim_mode and not keep_table and self.dynamodb is not None:
            try:
                workload.delete_table(self.dynamodb, SHAPE.table)
                self.term.say(f"deleted table {SHAPE.table}")
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning up
                self.term.say(f"could not delete table {SHAPE.table}: {exc}")
        for thing, exc in self.stack.stop_all():
            label = PROCESS_LABELS.get(type(thing), type(thing).__name__)
            if exc is None:
                self.term.say(self.p.dim(f"stopped {label} (pid {thing.pid})"))
            else:
                self.term.say(self.p.dim(f"could not stop {label} (pid {thing.pid}): {exc}"))


def json_ms(seconds: float):
    """Milliseconds for the JSON summary; null when there was nothing to measure."""
    return None if math.isnan(seconds) else seconds * 1000


def install_signal_handlers():
    def handler(signum, _frame):
        # Ignore a second Ctrl-C while cleaning up; the first one already started it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    term = Terminal(sys.stdout, color=not args.no_color)
    install_signal_handlers()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="alternator-mesh-demo-"))
    demo = Demo(args, term, workdir)
    status = 1
    try:
        demo.start()
        demo.run_workload()
        result = demo.summary()
        if args.json_summary:
            pathlib.Path(args.json_summary).write_text(json.dumps(result, indent=2) + "\n")
        status = 0 if result["errors"] == 0 else 1
    except Interrupted as exc:
        term.close_frame()
        term.say(f"\n{exc}: stopping the workload and every process the demo started")
        status = 130
    except Exception as exc:  # noqa: BLE001 - one clear line, then clean up
        term.close_frame()
        term.say(term.palette.red(f"demo failed: {type(exc).__name__}: {exc}"))
        status = 1
    finally:
        try:
            demo.close(keep_table=False)
        finally:
            if status == 0 and not args.keep_logs:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                term.say(f"process logs: {workdir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
