"""The processes behind the demo: the stand-in cluster (unless a real one is given), the
discovery agent and Envoy running the shipped configuration with the filter.

Every process is started through the test harness (`tests/harness`), so the demo exercises
exactly what the end-to-end tests exercise. Each one runs in its own session and is stopped by
its PID, in reverse start order, by `Stack.close()`.
"""
from __future__ import annotations

import json
import pathlib
import re
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.agent import Agent  # noqa: E402
from harness.envoy import Envoy  # noqa: E402
from harness.sim import SimProcess  # noqa: E402
from harness.util import eventually  # noqa: E402

# Three nodes across two racks of one datacenter, on distinct loopback addresses and one shared
# port, as real Alternator nodes are laid out.
SIM_NODES = (
    ("127.0.0.2", "dc1", "rack1"),
    ("127.0.0.3", "dc1", "rack1"),
    ("127.0.0.4", "dc1", "rack2"),
)

_PROM_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
_PROM_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    """`(name, labels, value)` for every sample line of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line)
        if not m:
            continue
        labels = dict(_PROM_LABEL.findall(m.group("labels") or ""))
        try:
            samples.append((m.group("name"), labels, float(m.group("value"))))
        except ValueError:
            continue
    return samples


class Stack:
    """What the demo started, newest last; `close()` stops all of it."""

    def __init__(self, workdir: pathlib.Path, log):
        self.workdir = workdir
        self.log = log
        self.sim = None
        self.agent = None
        self.envoy = None
        self.alternator_port = None
        self._owned = []

    # -- start -------------------------------------------------------------------------------

    def start_sim(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sim = SimProcess(list(SIM_NODES), log_path=self.workdir / "sim.log")
        self._owned.append(("alternator-sim", self.sim.pid, self.sim))
        self.alternator_port = self.sim.port
        nodes = ", ".join(f"{n['address']} ({n['datacenter']}/{n['rack']})" for n in self.sim.info["nodes"])
        self.log(f"alternator-sim pid {self.sim.pid}: {nodes}, port {self.sim.port}")
        return list(self.sim.addresses)

    def use_cluster(self, port: int):
        self.alternator_port = port

    def start_agent(self, seeds):
        # The product's default refresh cadence (1 s while traffic flows); probes of a node that
        # comes back are retried quickly so its return is visible within a short demo.
        self.agent = Agent(self.workdir / "agent", seeds, self.alternator_port,
                           active_interval="1s", idle_interval="60s", probe_period="1s")
        self._owned.append(("discovery agent", self.agent.process.pid, self.agent))
        self.agent.wait_ready(timeout=30)
        self.log(f"discovery agent pid {self.agent.process.pid}: {self.agent.url}, "
                 f"{len(self.agent.snapshot()['nodes'])} nodes discovered")

    def start_envoy(self, plugin_config: dict):
        self.envoy = Envoy(self.workdir / "envoy", self.agent.port, plugin_config, concurrency=2)
        self._owned.append(("envoy", self.envoy.process.pid, self.envoy))
        self.envoy.wait_ready(timeout=60)
        self.log(f"envoy pid {self.envoy.process.pid}: the shipped envoy.yaml with alternator-filter, "
                 f"2 worker threads")
        return self

    # -- observe -----------------------------------------------------------------------------

    def wait_agent_active(self, timeout: float):
        """Until the agent has vetted at least one node (a real cluster's probes may take a while)."""
        eventually(lambda: self.agent.active_nodes(), timeout=timeout,
                   message="the agent lists at least one active Alternator node")

    def sim_labels(self) -> dict:
        """`address -> (datacenter, rack)` of the sim's nodes; empty with a real cluster."""
        if self.sim is None:
            return {}
        return {n["address"]: (n["datacenter"], n["rack"]) for n in self.sim.info["nodes"]}

    def wait_routing(self, nodes: int, timeout: float = 30.0):
        """Until the filter's snapshot and Envoy's EDS membership both hold `nodes` nodes."""

        def ready():
            stats = self.envoy.stats()
            return (int(stats.get("wasmcustom.alternator_snapshot_nodes", 0)) >= nodes
                    and len(self.envoy.healthy_members()) >= nodes)

        eventually(ready, timeout=timeout, message=f"Envoy routes over {nodes} nodes")

    def filter_snapshot_version(self):
        """The node snapshot version the filter routes on, or None before the first one."""
        query = urllib.parse.quote("^wasmcustom\\.alternator_snapshot_version$")
        data = json.loads(self.envoy.admin_get(f"/stats?format=json&filter={query}"))
        for s in data.get("stats", []):
            if s.get("name") == "wasmcustom.alternator_snapshot_version":
                return int(s.get("value", 0)) or None
        return None

    def envoy_metrics(self) -> dict:
        """The filter's and Envoy's counters the demo reports, from `/stats/prometheus`."""
        per_node = {}
        policy = {}
        fallback = 0
        for name, labels, value in parse_prometheus(self.envoy.prometheus()):
            if name == "alternator_requests_total":
                address = labels.get("node", "").rsplit(":", 1)[0]
                per_node[address] = per_node.get(address, 0) + int(value)
                if labels.get("choice") == "fallback":
                    fallback += int(value)
            elif name == "alternator_routed_total":
                key = labels.get("policy", "?")
                policy[key] = policy.get(key, 0) + int(value)
        stats = self.envoy.stats()
        return {
            "per_node": per_node,
            "policy": policy,
            "fallback": fallback,
            "envoy_retries": int(stats.get("cluster.alternator.upstream_rq_retry", 0)),
            "retry_overflow": int(stats.get("cluster.alternator.upstream_rq_retry_overflow", 0)),
            "downstream_5xx": int(stats.get("http.dynamodb.downstream_rq_5xx", 0)),
        }

    def sim_counters(self) -> dict:
        """Requests each sim node served (the database's own count)."""
        return self.sim.totals()

    def sim_keylog(self) -> list:
        """The sim's bounded log of (node, operation, table, hash key) per request."""
        return self.sim.keylog()

    def sim_action(self, address: str, action: str):
        self.sim.node_action(address, action)

    # -- stop --------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop everything, newest first; returns one line per process for the user."""
        lines = []
        while self._owned:
            label, pid, thing = self._owned.pop()
            try:
                thing.stop()
                lines.append(f"stopped {label} (pid {pid})")
            except Exception as exc:  # noqa: BLE001 - stop the rest, then report
                lines.append(f"could not stop {label} (pid {pid}): {exc}")
        return lines
