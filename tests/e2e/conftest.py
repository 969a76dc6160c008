"""Fixtures for the end-to-end tests: alternator-sim + discovery agent + real Envoy with the filter.

Every process is started on free ports, owned by the test that started it and stopped by PID in
a finalizer, also when the test fails. Conditions are polled with `eventually`, never slept on.
"""
import http.client
import json
import pathlib
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from harness.agent import Agent  # noqa: E402
from harness.envoy import Envoy  # noqa: E402
from harness.util import ROOT, OwnedProcess, eventually, free_port_on_all, release_binary, target_dir  # noqa: E402

TARGET_PREFIX = "DynamoDB_20120810."


class SimCluster:
    """alternator-sim as a process (docs/architecture.md §3), with its control API."""

    def __init__(self, workdir: pathlib.Path, nodes, enforce_auth: str | None = None):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        addresses = [n[0] for n in nodes]
        self.port = free_port_on_all(addresses)
        args = [release_binary("alternator-sim"), "--port", self.port, "--control", "127.0.0.1:0"]
        for address, dc, rack in nodes:
            args += ["--node", f"{address}/{dc}/{rack}"]
        if enforce_auth:
            args += ["--enforce-auth", enforce_auth]
        self.stdout_path = self.workdir / "sim.stdout"
        self._stdout = open(self.stdout_path, "wb")
        self.process = OwnedProcess(args, "sim", self.workdir / "sim.log", stdout=self._stdout)
        self.info = eventually(self._banner, timeout=30, message="alternator-sim prints its banner")
        self.control = f"http://{self.info['control']}"

    def _banner(self):
        if not self.process.alive():
            raise AssertionError(f"alternator-sim exited:\n{self.process.log_tail()}")
        first = self.stdout_path.read_text().split("\n", 1)
        return json.loads(first[0]) if len(first) == 2 else None

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw.strip() else None

    def counters(self) -> dict:
        """`address → total DynamoDB requests` served by each node."""
        nodes = self._call("GET", "/counters")["nodes"]
        return {address: c.get("total", 0) for address, c in nodes.items()}

    def keylog(self) -> list:
        data = self._call("GET", "/keylog")
        return data["entries"] if isinstance(data, dict) else data

    def reset(self):
        self._call("POST", "/reset")

    def add_node(self, address: str, dc: str, rack: str, listed_not_ready: bool = False):
        return self._call("POST", "/nodes", {"address": address, "datacenter": dc, "rack": rack,
                                             "listed_not_ready": listed_not_ready})

    def node_action(self, address: str, action: str, body=None):
        return self._call("POST", f"/nodes/{address}/{action}", body)

    def stop(self):
        self.process.stop()
        self._stdout.close()


class Stack:
    """What a test started; torn down in reverse order by the `stack` fixture."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.owned = []

    def sim(self, nodes, enforce_auth=None) -> SimCluster:
        s = SimCluster(self.base / "sim", nodes, enforce_auth)
        self.owned.append(s)
        return s

    def agent(self, sim: SimCluster, **kwargs) -> Agent:
        seeds = [n["address"] for n in sim.info["nodes"]]
        a = Agent(self.base / f"agent{len(self.owned)}", seeds, sim.port, **kwargs)
        self.owned.append(a)
        return a.wait_ready()

    def envoy(self, agent: Agent, plugin_config: dict, concurrency: int = 1, expect_nodes=None) -> Envoy:
        e = Envoy(self.base / f"envoy{len(self.owned)}", agent.port, plugin_config, concurrency=concurrency)
        self.owned.append(e)
        e.wait_ready()
        if expect_nodes is not None:
            wait_routing(e, expect_nodes)
        return e

    def teardown(self):
        failures = []
        for thing in reversed(self.owned):
            try:
                thing.stop()
            except Exception as exc:  # noqa: BLE001 - stop everything, report after
                failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.teardown()


def wait_routing(envoy: Envoy, nodes: int, timeout: float = 30.0):
    """Until Envoy's EDS has `nodes` healthy members and the filter's snapshot has `nodes` nodes."""
    def ready():
        stats = envoy.stats()
        return (len(envoy.healthy_members()) == nodes
                and stats.get("wasmcustom.alternator_snapshot_nodes") == nodes)

    eventually(ready, timeout=timeout, message=f"envoy routes over {nodes} nodes")


@pytest.fixture(scope="session")
def affinity_oracle():
    """The routing core's own prediction (filter/examples/affinity_oracle.rs), built natively."""
    binary = target_dir() / "release" / "examples" / "affinity_oracle"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "alternator-filter", "--example", "affinity_oracle"],
                       cwd=ROOT, check=True, timeout=900)

    def predict(snapshot: dict, mode: str, tables: dict, requests) -> list:
        """First node (`ip`) of each `(operation, body_text)`'s affinity plan, or None."""
        path = pathlib.Path(tempfile.mkstemp(suffix=".json")[1])
        try:
            path.write_text(json.dumps(snapshot))
            lines = "".join(f"{op} {body}\n" for op, body in requests)
            out = subprocess.run([str(binary), str(path), mode] + [f"{t}={k}" for t, k in tables.items()],
                                 input=lines, capture_output=True, text=True, check=True, timeout=60)
        finally:
            path.unlink()
        return [None if line == "-" else line.rsplit(":", 1)[0] for line in out.stdout.splitlines()]

    return predict


def wait_synced(envoy: Envoy, agent: Agent, timeout: float = 30.0):
    """Until the filter routes on the agent's current snapshot version."""
    def synced():
        want = agent.snapshot()["version"]
        return envoy.stats().get("wasmcustom.alternator_snapshot_version") == want

    eventually(synced, timeout=timeout, message="filter has the agent's snapshot")


def metric(envoy: Envoy, name: str, **labels) -> int:
    """Sum of a filter metric (Prometheus name) whose labels include `labels`."""
    total = 0
    for line in envoy.prometheus().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += int(float(value))
    return total


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
        return r.status, (json.loads(data) if data else None)

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
        status, body = client.call("CreateTable", {
            "TableName": table, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": attrs, "KeySchema": schema,
        })
        assert status == 200, f"CreateTable {table}: {status} {body}"
    finally:
        client.close()
