"""The compiled filter driven through its proxy-wasm ABI, without Envoy.

`harness.proxy_wasm` plays Envoy's side on wasmtime: each test scripts the host calls (plugin
configuration, shared data, headers, bodies, ticks, HTTP call answers) and checks what the
module did with them. This catches what the engine's mock-host tests cannot: the ABI glue in
`filter/` (map and buffer types, return values, property encodings) and the release build.
"""

import json

import pytest

from harness.envoy import wasm_path
from harness.proxy_wasm import CONTINUE, PAUSE, REQUEST_HEADERS, SNAPSHOT_KEY, SNAPSHOT_VERSION_KEY, ProxyWasmHost

ROUTING_HEADER = "x-alternator-endpoints"
NODES = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]


@pytest.fixture(scope="module")
def wasm():
    path = wasm_path()
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make wasm`")
    return path


def snapshot(health=None, version=7, port=8000) -> bytes:
    health = health or {}
    return json.dumps(
        {
            "format": 1,
            "version": version,
            "generated_at_ms": 1763735000000,
            "scheme": "http",
            "port": port,
            "nodes": [
                {"address": a, "datacenter": "dc1", "rack": f"rack{i + 1}", "health": health.get(a, "active")}
                for i, a in enumerate(NODES)
            ],
        }
    ).encode()


def headers(operation="GetItem", body=b"", extra=()):
    return [
        (":authority", "dynamodb.local"),
        (":path", "/"),
        (":method", "POST"),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", f"DynamoDB_20120810.{operation}"),
        ("content-length", str(len(body))),
        *extra,
    ]


DEFAULT_SNAPSHOT = snapshot()


# The host's clock for every test: frozen, so that no timer of the filter (the passive-health
# cooldown, the poll lease, the poll schedule) runs out between two calls however slowly the
# test runs. The snapshots stored here carry the same time.
NOW_NS = 1_763_735_000_000 * 1_000_000


def started(wasm, config=None, snap: bytes | None = DEFAULT_SNAPSHOT) -> ProxyWasmHost:
    """A configured filter; with a snapshot stored as the poller would (None: no snapshot)."""
    host = ProxyWasmHost(wasm, config if config is not None else {})
    host.now_ns = NOW_NS
    assert host.start(), host.logs
    if snap is not None:
        host.store_snapshot(snap, 7)
    return host


def put_item(key: str) -> bytes:
    return json.dumps({"TableName": "users", "Item": {"pk": {"S": key}, "v": {"N": "1"}}}).encode()


def test_a_valid_configuration_is_accepted_and_sets_the_tick(wasm):
    host = started(wasm, {"agent": {"tick_ms": 250, "lease_ms": 1000}})
    assert host.tick_period_ms == 250


def test_an_invalid_configuration_is_refused_with_the_field_named(wasm):
    host = ProxyWasmHost(wasm, {"fallbacks": 17})
    assert not host.start()
    errors = [m for level, m in host.logs if level == "error"]
    assert any("`fallbacks`" in m for m in errors), host.logs


def test_round_robin_writes_every_node_and_rotates_the_first_choice(wasm):
    host = started(wasm)
    firsts = []
    for i in range(6):
        returned, routed = host.request_callbacks(10 + i, headers(), b"")
        assert returned["proxy_on_request_headers"] == CONTINUE
        entries = routed.split(",")
        assert sorted(entries) == sorted(f"{a}:8000" for a in NODES)
        firsts.append(entries[0])
    # Consecutive requests start on consecutive nodes: each node first exactly twice.
    assert sorted(firsts) == sorted([f"{a}:8000" for a in NODES] * 2)
    assert all(len(set(firsts[i : i + 3])) == 3 for i in range(4)), firsts


def test_a_client_sent_routing_header_is_replaced(wasm):
    host = started(wasm)
    forged = (ROUTING_HEADER, "10.9.9.9:8000")
    _, routed = host.request_callbacks(10, headers(extra=[forged]), b"")
    values = [v for k, v in host.maps[REQUEST_HEADERS] if k == ROUTING_HEADER]
    assert values == [routed]
    assert "10.9.9.9" not in routed


def test_without_a_snapshot_the_request_goes_on_without_the_header(wasm):
    host = started(wasm, snap=None)
    returned, routed = host.request_callbacks(10, headers(), b"")
    assert returned["proxy_on_request_headers"] == CONTINUE
    assert routed is None and host.local_reply is None


def test_a_down_node_is_never_listed(wasm):
    host = started(wasm, snap=snapshot({"127.0.1.2": "down"}))
    for i in range(4):
        _, routed = host.request_callbacks(10 + i, headers(), b"")
        assert "127.0.1.2" not in routed
        assert len(routed.split(",")) == 2


def test_no_usable_node_in_a_strict_scope_is_a_local_503(wasm):
    host = started(wasm, {"scope": {"datacenter": "dc9", "mode": "strict"}})
    returned, routed = host.request_callbacks(10, headers(), b"")
    assert host.local_reply == 503
    assert returned["proxy_on_request_headers"] == PAUSE
    assert routed is None


def test_a_body_over_the_request_limit_is_a_local_413(wasm):
    host = started(wasm, {"max_request_bytes": 100})
    body = b"{" + b" " * 200 + b"}"
    returned, _ = host.request_callbacks(10, headers("PutItem", body), body)
    assert host.local_reply == 413
    assert returned["proxy_on_request_headers"] == PAUSE


def test_any_write_affinity_holds_the_request_for_its_body_and_routes_by_key(wasm):
    host = started(wasm, {"affinity": {"mode": "any_write", "tables": {"users": "pk"}}})
    firsts = {}
    for i, key in enumerate(["alice", "bob", "carol", "alice", "bob", "carol"]):
        body = put_item(key)
        returned, routed = host.request_callbacks(10 + i, headers("PutItem", body), body)
        assert returned["proxy_on_request_headers"] == PAUSE
        assert returned["proxy_on_request_body"] == CONTINUE
        firsts.setdefault(key, set()).add(routed.split(",")[0])
    # The same key, the same first choice: affinity, not round robin.
    assert all(len(nodes) == 1 for nodes in firsts.values()), firsts


def test_the_poller_asks_the_agent_and_stores_its_snapshot(wasm):
    host = started(wasm, {"agent": {"cluster": "agent_cluster"}}, snap=None)
    host.tick()
    assert len(host.http_calls) == 1
    call = host.http_calls[0]
    assert call["cluster"] == "agent_cluster"
    assert call["headers"][":path"] == "/v1/nodes"  # no ETag yet: no long-poll
    document = snapshot(version=42)
    host.answer_http_call(call["token"], 200, document, headers=[("etag", '"42"')])
    assert host.shared[SNAPSHOT_KEY][0] == document
    assert host.shared[SNAPSHOT_VERSION_KEY][0].startswith(b"42@")
    # The next poll is a long-poll that sends the ETag back.
    host.tick()
    nxt = host.http_calls[-1]
    assert nxt["headers"][":path"] == "/v1/nodes?wait=20"
    assert nxt["headers"]["if-none-match"] == '"42"'
    _, routed = host.request_callbacks(10, headers(), b"")
    assert routed is not None and len(routed.split(",")) == 3


def test_an_invalid_agent_answer_keeps_the_stored_snapshot(wasm):
    host = started(wasm, snap=None)
    host.tick()
    host.answer_http_call(host.http_calls[0]["token"], 200, b'{"nodes": "nope"}')
    assert SNAPSHOT_KEY not in host.shared
    assert any("ignoring the agent's snapshot" in m for _, m in host.logs), host.logs


def test_counters_reach_the_host_on_the_tick_with_their_labels(wasm):
    host = started(wasm)
    for i in range(5):
        host.request_callbacks(10 + i, headers(), b"")
    host.tick()
    assert host.metric_values["alternator_routed_total;policy=round_robin"] == 5
    served = {n: v for n, v in host.metric_values.items() if n.startswith("alternator_requests_total;")}
    assert sum(served.values()) == 5
    assert all(";choice=first" in n for n in served), served


def test_a_connect_failure_feeds_passive_health(wasm):
    host = started(wasm)
    uf = 1 << 5
    # Every request is answered by 127.0.1.2 with a connect failure: it goes DOWN.
    for i in range(12):
        host.request_callbacks(10 + i, headers(), b"", upstream="127.0.1.2:8000", status=503, flags=uf)
    host.tick()
    assert host.metric_values["alternator_node_health_changes_total;outcome=down"] == 1
    for i in range(3):
        _, routed = host.request_callbacks(100 + i, headers(), b"")
        assert "127.0.1.2" not in routed


def test_hostile_bodies_never_trap_the_vm(wasm):
    host = started(wasm, {"affinity": {"mode": "any_write", "tables": {"users": "pk"}}})
    for i, body in enumerate([b"{", b"\xff\xfe" * 50, b'{"TableName":' * 200, b"[]", b'{"Item":{"pk":{"S":1}}}']):
        returned, routed = host.request_callbacks(10 + i, headers("PutItem", body), body)
        assert returned["proxy_on_request_body"] == CONTINUE
        assert routed is not None
