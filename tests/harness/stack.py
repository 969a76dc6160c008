"""An end-to-end stack for tests, the demo and the benchmark: alternator-sim + discovery agent +
Envoy with the filter.

Every process is started on free ports and owned by the `Stack` that started (or adopted) it;
`teardown()` stops them by PID, newest first. Also small DynamoDB and metrics helpers the tests
share.
"""

import collections
import http.client
import json
import pathlib
import time

from . import prometheus
from .agent import Agent
from .envoy import Envoy
from .sim import SimProcess
from .util import eventually

TARGET_PREFIX = "DynamoDB_20120810."


class Stack:
    """The processes one test (or one demo or benchmark run) started, newest last."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.owned = []

    def sim(self, nodes, enforce_auth=None, tls: bool = False, **kwargs) -> SimProcess:
        """An alternator-sim; with `tls`, its nodes serve HTTPS (its CA at `sim.ca_path`)."""
        self.base.mkdir(parents=True, exist_ok=True)
        n = len(self.owned)
        if tls:
            kwargs["tls_ca_path"] = self.base / f"sim{n}-ca.pem"
        s = SimProcess(nodes, enforce_auth=enforce_auth, log_path=self.base / f"sim{n}.log", **kwargs)
        self.owned.append(s)
        return s

    def agent(self, sim: SimProcess | None = None, *, seeds=None, port: int | None = None, **kwargs) -> Agent:
        """A discovery agent watching `sim`'s nodes, or the `seeds` of a cluster at `port`; over
        HTTPS, trusting the sim's CA, when the sim serves TLS."""
        seeds = seeds if seeds is not None else [n["address"] for n in sim.info["nodes"]]
        port = port if port is not None else sim.port
        if getattr(sim, "ca_path", None) is not None:
            kwargs.setdefault("ca_file", sim.ca_path)
        a = Agent(self.base / f"agent{len(self.owned)}", seeds, port, **kwargs)
        self.owned.append(a)
        return a.wait_ready()

    def envoy(
        self,
        agent: Agent,
        plugin_config: dict,
        concurrency: int = 1,
        expect_nodes=None,
        ready_timeout: float = 30.0,
        **kwargs,
    ) -> Envoy:
        e = Envoy(self.base / f"envoy{len(self.owned)}", agent.port, plugin_config, concurrency=concurrency, **kwargs)
        self.owned.append(e)
        e.wait_ready(timeout=ready_timeout)
        if expect_nodes is not None:
            wait_routing(e, expect_nodes)
        return e

    def adopt(self, thing):
        """Owns a process started elsewhere (a restarted agent, a hot-restarted Envoy)."""
        self.owned.append(thing)
        return thing

    def stop_all(self) -> list:
        """Stops everything, newest first, also after a failure; `(thing, exception or None)` each."""
        results = []
        while self.owned:
            thing = self.owned.pop()
            try:
                thing.stop()
                results.append((thing, None))
            except Exception as exc:  # noqa: BLE001 - stop everything, report after
                results.append((thing, exc))
        return results

    def teardown(self):
        failures = [exc for _, exc in self.stop_all() if exc is not None]
        if failures:
            raise failures[0]


def wait_routing(envoy: Envoy, nodes: int, timeout: float = 30.0, at_least: bool = False):
    """Until Envoy's EDS has `nodes` healthy members and the filter's snapshot has `nodes` nodes
    (with `at_least`, `nodes` or more of each: a real cluster may grow meanwhile)."""

    def ready():
        members = len(envoy.healthy_members())
        snapshot = envoy.filter_stat("alternator_snapshot_nodes")
        if at_least:
            return members >= nodes and (snapshot or 0) >= nodes
        return members == nodes and snapshot == nodes

    eventually(ready, timeout=timeout, message=f"envoy routes over {nodes} nodes")


# Longer than the filter's tick (`agent.tick_ms`, 500 ms by default, with margin): the filter
# hands its counters to Envoy, and a worker takes a new snapshot, on that tick.
SETTLE_QUIET_S = 1.2


def wait_synced(envoy: Envoy, agent: Agent | None, timeout: float = 30.0, version: int | None = None):
    """Until the filter routes on the agent's current snapshot version (or on `version`, for a
    test that serves its own snapshot): the poller has stored it (the version gauge shows it),
    and every worker has had a tick since, which is when a worker that routed no request
    meanwhile takes it (filter/README.md)."""
    seen = {}

    def synced():
        want = version if version is not None else agent.snapshot()["version"]
        if envoy.filter_stat("alternator_snapshot_version") != want:
            seen.clear()
            return False
        seen.setdefault(want, time.monotonic())
        return time.monotonic() - seen[want] > SETTLE_QUIET_S

    eventually(synced, timeout=timeout, message="filter has the agent's snapshot")


def metric(envoy: Envoy, name: str, **labels) -> int:
    """Sum of a filter metric (Prometheus name) whose labels include `labels`."""
    return int(prometheus.total(envoy.metrics(), name, **labels))


def settle(envoy: Envoy, timeout: float = 30.0):
    """Waits until the filter has handed Envoy everything it counted so far: its traffic
    counters stay unchanged for longer than a tick. The gauges and the agent-poll counter are
    left out: they move on their own (with `long_poll_s: 0`, on every tick). Call after the
    traffic a test wants to count, before comparing counters exactly.

    The quiet time only stands in for "every worker has ticked since": on a loaded machine a
    tick can come later than that. So settle alone backs checks that a late tick cannot fail
    (a count that stays 0, or does not grow); a count the traffic must have raised is polled
    for with `wait_metric`, which settles after it."""

    def counters():
        return sorted(
            (s.name, sorted(s.labels.items()), s.value)
            for s in envoy.metrics()
            if s.name.startswith("alternator_")
            and not s.name.startswith(("alternator_snapshot_", "alternator_agent_polls_total"))
        )

    state = {"value": counters(), "since": time.monotonic()}

    def quiet():
        now = counters()
        if now != state["value"]:
            state["value"], state["since"] = now, time.monotonic()
        return time.monotonic() - state["since"] > SETTLE_QUIET_S

    eventually(quiet, timeout=timeout, interval=0.1, message="the filter's counters settle")


def wait_metric(envoy: Envoy, name: str, expected: int, at_least: bool = False, timeout: float = 60.0, **labels):
    """Until a filter metric reaches `expected` (exactly, or with `at_least` at least), then
    `settle` and check it still does. Counters reach Envoy on a worker's tick, so a count is
    polled for rather than read once after a fixed quiet time: a late tick on a loaded machine
    only makes this wait longer. Returns the value."""

    def reached(value):
        return value >= expected if at_least else value == expected

    eventually(
        lambda: reached(metric(envoy, name, **labels)),
        timeout=timeout,
        message=f"{name}{labels or ''} {'>=' if at_least else '=='} {expected}",
    )
    settle(envoy)
    value = metric(envoy, name, **labels)
    assert reached(value), f"{name}{labels or ''} moved on to {value} (expected {expected})"
    return value


class RawDynamo:
    """Unsigned DynamoDB JSON requests over one keep-alive connection (sim without auth)."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, operation: str, body: dict, headers=None):
        payload = json.dumps(body).encode()
        h = {"x-amz-target": TARGET_PREFIX + operation, "content-type": "application/x-amz-json-1.0"}
        h.update(headers or {})
        self.conn.request("POST", "/", body=payload, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        try:
            return r.status, (json.loads(data) if data else None)
        except ValueError:
            return r.status, data.decode(errors="replace")  # Envoy's own plain-text replies

    def close(self):
        self.conn.close()


def create_table(url: str, table: str, hash_key: str = "pk", range_key: str | None = None):
    client = RawDynamo(url)
    try:
        attrs = [{"AttributeName": hash_key, "AttributeType": "S"}]
        schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            attrs.append({"AttributeName": range_key, "AttributeType": "S"})
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        status, body = client.call(
            "CreateTable",
            {
                "TableName": table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": attrs,
                "KeySchema": schema,
            },
        )
        assert status == 200, f"CreateTable {table}: {status} {body}"
    finally:
        client.close()


def get_items(url: str, table: str, count: int, connections: int = 1) -> collections.Counter:
    """`count` GetItems of keys k0, k1, ... spread round robin over `connections` keep-alive
    connections (more than one reaches more than one Envoy worker); statuses counted."""
    statuses = collections.Counter()
    clients = [RawDynamo(url) for _ in range(connections)]
    try:
        for i in range(count):
            status, _ = clients[i % connections].call("GetItem", {"TableName": table, "Key": {"pk": {"S": f"k{i}"}}})
            statuses[status] += 1
    finally:
        for c in clients:
            c.close()
    return statuses
