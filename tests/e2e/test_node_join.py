"""Issue test 6: a node that joins receives traffic once the refreshed snapshot and EDS reach Envoy."""

from harness.stack import create_table, get_items, wait_metric, wait_synced
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
NEW = "127.0.0.5"


def test_new_node_gets_traffic_once_healthy_and_not_before(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {"fallbacks": 2}, expect_nodes=3)
    create_table(envoy.url, "join")

    # Listed by /localnodes before its port accepts connections, as Scylla does while a node
    # boots: the agent keeps it quarantined, the filter never makes it a first choice.
    sim.add_node(NEW, "dc1", "rack1", listed_not_ready=True)
    eventually(lambda: any(n["address"] == NEW for n in agent.snapshot()["nodes"]), message="agent lists the new node")
    assert NEW not in agent.active_nodes()
    wait_synced(envoy, agent)
    sim.reset()
    assert get_items(envoy.url, "join", 60) == {200: 60}
    assert sim.totals().get(NEW, 0) == 0

    # Its port opens: the agent's probe promotes it, the long-poll hands the filter the new
    # snapshot, and from then on round robin includes it.
    sim.node_action(NEW, "start")
    agent.wait_active([n[0] for n in NODES] + [NEW])
    wait_synced(envoy, agent)
    # Envoy's own refresh: REST EDS turns the member healthy (until then override_host skips an
    # entry it does not know, and the request goes to the next listed node).
    eventually(lambda: f"{NEW}:{sim.port}" in envoy.healthy_members(), message="EDS has the node healthy")
    sim.reset()
    assert get_items(envoy.url, "join", 400) == {200: 400}
    served = sim.totals()
    assert served.get(NEW, 0) == 100, served
    wait_metric(envoy, "alternator_requests_total", 100, node=f"{NEW}:{sim.port}")
