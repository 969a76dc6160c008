"""Issue test 2: rack scope, and what happens when the rack empties (fallback vs strict)."""

import collections

from harness.stack import RawDynamo, create_table, get_items, metric, settle, wait_metric, wait_synced
from harness.util import eventually

NODES = [
    ("127.0.0.2", "dc1", "rack1"),
    ("127.0.0.3", "dc1", "rack1"),
    ("127.0.0.4", "dc1", "rack2"),
    ("127.0.0.5", "dc1", "rack2"),
]
RACK1 = {"127.0.0.2", "127.0.0.3"}


def served_by(sim, envoy, count, table="scope"):
    sim.reset()
    statuses = get_items(envoy.url, table, count)
    return {a: n for a, n in sim.totals().items() if n}, statuses


def test_rack_scope_serves_from_local_rack_then_falls_back_or_refuses(stack):
    sim = stack.sim(NODES)
    # Racks are learned by asking /localnodes per scope: the agent is told this Envoy's place.
    agent = stack.agent(sim, datacenter="dc1", rack="rack1")
    agent.wait_active([n[0] for n in NODES])
    scope = {"datacenter": "dc1", "rack": "rack1"}
    fallback = stack.envoy(agent, {"scope": dict(scope, mode="fallback")}, expect_nodes=4)
    strict = stack.envoy(agent, {"scope": dict(scope, mode="strict")}, expect_nodes=4)
    create_table(fallback.url, "scope")

    for envoy in (fallback, strict):
        nodes, statuses = served_by(sim, envoy, 200)
        assert statuses == {200: 200}
        assert set(nodes) == RACK1, nodes
        assert abs(nodes["127.0.0.2"] - nodes["127.0.0.3"]) <= 2, nodes

    # Empty rack1: its nodes stop listening and leave /localnodes.
    for address in sorted(RACK1):
        sim.node_action(address, "stop")
    agent.wait_active(["127.0.0.4", "127.0.0.5"])
    for envoy in (fallback, strict):
        wait_synced(envoy, agent)
        # The operator is told why traffic left the rack (or is refused).
        eventually(
            lambda e=envoy: "no node of the snapshot is in scope" in e.process.log_path.read_text(),
            message="the empty scope is logged",
        )

    nodes, statuses = served_by(sim, fallback, 100)
    assert statuses == {200: 100}
    assert set(nodes) == {"127.0.0.4", "127.0.0.5"}, nodes

    # Every worker of the strict Envoy refuses once it has the new snapshot (a worker takes it
    # within one tick of the filter, filter/README.md); until then it routes on the old one.
    def refused():
        client = RawDynamo(strict.url)
        try:
            answer = client.call("GetItem", {"TableName": "scope", "Key": {"pk": {"S": "k"}}})
        finally:
            client.close()
        # The filter's own refusal, not Envoy's 503 after a stale plan's nodes refused.
        return answer if answer[0] == 503 and "configured scope" in answer[1].get("message", "") else None

    status, body = eventually(refused, message="the strict Envoy refuses")
    statuses = collections.Counter(refused() is not None for _ in range(20))
    assert statuses == {True: 20}, statuses
    assert body["__type"].endswith("#ServiceUnavailableException"), body
    assert "no Alternator node" in body["message"]
    wait_metric(strict, "alternator_no_route_total", 1, at_least=True)
    settle(fallback)
    assert metric(fallback, "alternator_no_route_total") == 0
