"""Control-plane faults: the discovery agent killed and restarted, Envoy hot-restarted, and bad
discovery data. None of them may fail a DynamoDB request."""

import http.server
import json
import os
import signal
import threading
import urllib.request

import pytest

from harness.agent import Agent
from harness.load import MixedLoad, unreadable
from harness.stack import create_table, get_items, metric, settle, wait_metric, wait_synced
from harness.util import eventually, free_port

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
TABLE = "control"


def test_agent_killed_and_restarted_under_load(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(agent, {"fallbacks": 2, "agent": {"error_backoff_ms": 200}}, expect_nodes=3)
    create_table(envoy.url, TABLE)
    old_version = agent.snapshot()["version"]

    load = MixedLoad(envoy.url, TABLE, total=3000, workers=3).start()
    eventually(lambda: load.done >= 300, timeout=120, message="load under way")
    os.kill(agent.process.pid, signal.SIGKILL)  # no graceful shutdown: a crash
    agent.process.proc.wait(timeout=10)
    progress = load.done
    eventually(
        lambda: metric(envoy, "alternator_agent_polls_total", outcome="failed") >= 1,
        message="the filter notices the agent is gone",
    )
    eventually(lambda: load.done >= progress + 300, timeout=120, message="load goes on without the agent")

    restarted = stack.adopt(Agent(stack.base / "agent-restarted", ADDRESSES, sim.port, listen_port=agent.port))
    restarted.wait_ready()
    restarted.wait_active(ADDRESSES)
    load.join()
    assert load.failures() == []
    assert unreadable(envoy.url, TABLE, load.acknowledged_writes()) == []

    # Snapshot updates resume: the new agent's versions start above the old ones, the filter
    # takes them, and a node change made now reaches the filter.
    assert restarted.snapshot()["version"] > old_version
    wait_synced(envoy, restarted)
    sim.stop_node("127.0.0.4")
    restarted.wait_active(["127.0.0.2", "127.0.0.3"])
    wait_synced(envoy, restarted)
    eventually(lambda: metric(envoy, "alternator_snapshot_nodes") == 2, message="filter follows the new agent")


def test_envoy_hot_restart_under_load(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(agent, {"fallbacks": 2}, expect_nodes=3)
    create_table(envoy.url, TABLE)

    load = MixedLoad(envoy.url, TABLE, total=3000, workers=3).start()
    eventually(lambda: load.done >= 300, timeout=120, message="load under way")
    child = stack.adopt(envoy.hot_restart(stack.base / "envoy-epoch1"))
    child.wait_ready(timeout=60)
    # The parent drains (HTTP/1 answers carry "connection: close") and exits by itself.
    eventually(lambda: not envoy.process.alive(), timeout=60, message="the old epoch exits")
    load.join()
    assert load.failures() == []
    assert unreadable(child.url, TABLE, load.acknowledged_writes()) == []
    wait_synced(child, agent)
    sim.reset()
    tail = MixedLoad(child.url, TABLE, total=300, workers=2, prefix="after").start().join()
    assert tail.failures() == []
    eventually(
        lambda: metric(child, "alternator_routed_total", policy="round_robin") >= 300,
        message="the new epoch's filter counted the tail",
    )
    assert sorted(sim.totals().values())[0] >= 50  # every node still in rotation


def test_a_listener_update_swaps_the_filter_configuration_under_load(stack):
    """A control plane (LDS, as istiod sends on every relevant push) replaces the listener with
    a new plugin configuration: Envoy builds a new filter chain, whose filter starts from the
    shared snapshot and takes over the agent polls, while the old chain drains."""
    nodes = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
    rack1 = {"127.0.0.2", "127.0.0.3"}
    sim = stack.sim(nodes)
    agent = stack.agent(sim, datacenter="dc1", rack="rack1")
    agent.wait_active([n[0] for n in nodes])
    # A lease far longer than the test: only the old filter handing it over when its chain is
    # drained lets the new one poll the agent in time.
    polling = {"lease_ms": 600_000}
    envoy = stack.envoy(agent, {"fallbacks": 2, "agent": polling}, expect_nodes=3, lds=True)
    create_table(envoy.url, TABLE)

    load = MixedLoad(envoy.url, TABLE, total=3000, workers=3).start()
    eventually(lambda: load.done >= 300, timeout=120, message="load under way")
    updates = envoy.stats().get("listener_manager.lds.update_success", 0)
    envoy.update_listener({"fallbacks": 2, "agent": polling, "scope": {"datacenter": "dc1", "rack": "rack1"}})
    eventually(
        lambda: envoy.stats().get("listener_manager.lds.update_success", 0) > updates,
        message="Envoy took the new listener",
    )
    eventually(
        lambda: (
            envoy.stats().get("listener_manager.total_filter_chains_draining", 0) == 0
            and envoy.stats().get("listener_manager.total_listeners_draining", 0) == 0
        ),
        timeout=60,
        message="the old filter chain drained",
    )
    load.join()
    assert load.failures() == []
    assert unreadable(envoy.url, TABLE, load.acknowledged_writes()) == []

    # The new configuration is in force...
    sim.reset()
    assert get_items(envoy.url, TABLE, 60) == {200: 60}
    assert {a for a, n in sim.totals().items() if n} == rack1
    # ...and the new filter polls the agent: a node leaving reaches it.
    sim.stop_node("127.0.0.3")
    agent.wait_active(["127.0.0.2", "127.0.0.4"])
    wait_synced(envoy, agent)
    sim.reset()
    assert get_items(envoy.url, TABLE, 60) == {200: 60}
    assert {a for a, n in sim.totals().items() if n} == {"127.0.0.2"}
    crashes = [line for line in envoy.process.log_path.read_text().splitlines() if "panicked" in line]
    assert crashes == []


class FakeAgent:
    """Stands between Envoy and the real agent: forwards everything until told to answer
    `bad` (status, content type, body) to snapshot polls instead."""

    def __init__(self, real_url: str):
        self.real_url = real_url
        self.bad = None
        self.bad_polls = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, method):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                bad = fake.bad
                if bad is not None and self.path.startswith("/v1/nodes"):
                    fake.bad_polls += 1
                    status, ctype, payload = bad
                    self._answer(status, {"content-type": ctype, "etag": '"999999999999999"'}, payload)
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("if-none-match", "content-type", "accept")
                }
                req = urllib.request.Request(fake.real_url + self.path, data=body, method=method, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=90) as r:
                        self._answer(r.status, dict(r.headers), r.read())
                except urllib.error.HTTPError as e:
                    self._answer(e.code, dict(e.headers), e.read())

            def _answer(self, status, headers, payload):
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() in ("content-type", "etag"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def snapshot_with(nodes, version=999_999_999_999_999, port=8000):
    return json.dumps(
        {"format": 1, "version": version, "generated_at_ms": 0, "scheme": "http", "port": port, "nodes": nodes}
    ).encode()


BAD_SNAPSHOTS = {
    "html": (200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "truncated": (200, "application/json", b'{"format":1,"version":9999999999999,"nodes":[{"addr'),
    "wrong_types": (
        200,
        "application/json",
        json.dumps({"format": "one", "version": -1, "port": "x", "nodes": {"a": 1}}).encode(),
    ),
    "port_zero": (
        200,
        "application/json",
        json.dumps({"format": 1, "version": 99999999999999, "scheme": "http", "port": 0, "nodes": []}).encode(),
    ),
    "uuid_address": (
        200,
        "application/json",
        snapshot_with(
            [{"address": "5a1c0d2e-7f3b-4c1e-9a2d-0b8c6e4f1a23", "datacenter": "", "rack": "", "health": "active"}]
        ),
    ),
    "huge_array": (
        200,
        "application/json",
        b'{"format":1,"version":99999999999999,"nodes":[' + b",".join([b'"x"'] * 400_000) + b"]}",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_SNAPSHOTS))
def test_bad_discovery_answers_keep_the_last_good_snapshot(stack, kind):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    fake = stack.adopt(FakeAgent(agent.url))
    envoy = stack.envoy(
        _AgentAt(fake.port),
        {"fallbacks": 2, "agent": {"long_poll_s": 0, "tick_ms": 100, "error_backoff_ms": 100}},
        expect_nodes=3,
    )
    create_table(envoy.url, TABLE)
    good = agent.snapshot()["version"]
    wait_synced(envoy, agent)

    fake.bad = BAD_SNAPSHOTS[kind]
    before = metric(envoy, "alternator_agent_polls_total", outcome="invalid") + metric(
        envoy, "alternator_agent_polls_total", outcome="failed"
    )
    eventually(lambda: fake.bad_polls >= 3, message="the filter polled the bad answer")
    eventually(
        lambda: (
            metric(envoy, "alternator_agent_polls_total", outcome="invalid")
            + metric(envoy, "alternator_agent_polls_total", outcome="failed")
            > before
        ),
        message="the refused answers are counted",
    )
    assert envoy.filter_stat("alternator_snapshot_version") == good
    assert metric(envoy, "alternator_snapshot_nodes") == 3
    sim.reset()
    load = MixedLoad(envoy.url, TABLE, total=300, workers=2).start().join()
    assert load.failures() == []
    assert sorted(sim.totals().values())[0] >= 50  # still spread over the three good nodes
    assert unreadable(envoy.url, TABLE, load.acknowledged_writes()) == []


def test_a_snapshot_listing_nodes_twice_is_normalised(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    fake = stack.adopt(FakeAgent(agent.url))
    envoy = stack.envoy(
        _AgentAt(fake.port), {"fallbacks": 2, "agent": {"long_poll_s": 0, "tick_ms": 100}}, expect_nodes=3
    )
    create_table(envoy.url, TABLE)
    nodes = [{"address": a, "datacenter": "dc1", "rack": "rack1", "health": "active"} for a in ADDRESSES]
    listed_twice = nodes + list(reversed(nodes))
    version = agent.snapshot()["version"] + 1000
    # The nodes' real port: with any other the filter's choices would not be cluster members,
    # and Envoy's own round robin (the override policy's fallback) would spread the load instead.
    fake.bad = (200, "application/json", snapshot_with(listed_twice, version=version, port=sim.port))
    wait_synced(envoy, None, version=version)
    assert metric(envoy, "alternator_snapshot_nodes") == 3
    settle(envoy)
    not_first = metric(envoy, "alternator_requests_total", choice="fallback")
    first = metric(envoy, "alternator_requests_total", choice="first")
    sim.reset()
    load = MixedLoad(envoy.url, TABLE, total=300, workers=1).start().join()
    assert load.failures() == []
    assert sorted(sim.totals().values()) == [100, 100, 100]  # each node once per round
    # ...and it was the filter's rotation: every request went to the filter's first choice.
    wait_metric(envoy, "alternator_requests_total", first + 300, at_least=True, choice="first")
    assert metric(envoy, "alternator_requests_total", choice="fallback") == not_first


class _AgentAt:
    """What `Stack.envoy` needs of an agent: the port Envoy polls."""

    def __init__(self, port):
        self.port = port


class FakeNode:
    """An Alternator node that answers `/localnodes` with whatever the test scripts."""

    def __init__(self, address: str):
        self.localnodes = json.dumps([address]).encode()
        self.localnodes_requests = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/localnodes"):
                    fake.localnodes_requests += 1
                    body, ctype = fake.localnodes, "application/json"
                else:
                    body, ctype = b"healthy: " + self.headers.get("host", "").encode(), "text/plain"
                self.send_response(200)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


UUID = "5a1c0d2e-7f3b-4c1e-9a2d-0b8c6e4f1a23"
BAD_LOCALNODES = {
    "html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "truncated": b'["127.0.0.9", "127.0.0',
    "numbers": b"[1, 2, 3]",
    "huge_garbage": json.dumps([UUID] * 200_000).encode(),
}


def test_bad_localnodes_answers_keep_the_agents_last_good_snapshot(stack):
    node = stack.adopt(FakeNode("127.0.0.9"))
    agent = stack.adopt(Agent(stack.base / "agent", ["127.0.0.9"], node.port, extra_args=["--max-backoff", "300ms"]))
    agent.wait_ready()
    agent.wait_active(["127.0.0.9"])
    good = agent.snapshot()

    for kind, body in BAD_LOCALNODES.items():
        node.localnodes = body
        seen = node.localnodes_requests
        eventually(lambda seen=seen: node.localnodes_requests >= seen + 3, message=f"agent read the {kind} answer")
        assert agent.process.alive(), kind
        assert agent.snapshot()["nodes"] == good["nodes"], kind

    # Duplicates and UUIDs are dropped, an IPv6 literal is a node like any other.
    node.localnodes = json.dumps(["127.0.0.9", UUID, "127.0.0.9", "::1", "0:0:0:0:0:0:0:1"]).encode()
    eventually(
        lambda: sorted(n["address"] for n in agent.snapshot()["nodes"]) == ["127.0.0.9", "::1"],
        message="one node per address, UUIDs skipped",
    )
    assert agent.active_nodes() >= {"127.0.0.9"}
