"""Passive health in the filter: transport failures take a node DOWN for every worker at once,
a node's own 5xx answers do not, and a DOWN node is tried again after the cooldown.

The agent looks at the cluster once, at its start (its cadence is a day), so it does not notice
anything during the test however slowly the test runs: what moves traffic here is the filter's
own inference from the requests it forwarded.
"""

from harness.stack import create_table, get_items, metric, settle, wait_metric
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
# spec default (defaults.tsv): consecutive traffic failures moving ACTIVE to DOWN
ACTIVE_FAILURE_THRESHOLD = 10


def start(stack, cooldown_ms=600_000, concurrency=2):
    sim = stack.sim(NODES)
    agent = stack.agent(sim, active_interval="24h", idle_interval="24h", probe_period="24h")
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(
        agent, {"fallbacks": 2, "passive_health": {"cooldown_ms": cooldown_ms}}, concurrency=concurrency, expect_nodes=3
    )
    create_table(envoy.url, "passive")
    return sim, agent, envoy


def retried_to(envoy, address, port):
    return [
        line
        for line in envoy.access_log().splitlines()
        if f"candidates={address}:{port}," in line and "attempts=1" not in line
    ]


def test_a_refusing_node_goes_down_for_every_worker_after_the_threshold(stack):
    sim, agent, envoy = start(stack)
    version = agent.snapshot()["version"]
    sim.stop_node("127.0.0.2")
    assert get_items(envoy.url, "passive", 600, connections=4) == {200: 600}  # both workers
    wait_metric(envoy, "alternator_node_health_changes_total", 1, outcome="down")
    eventually(lambda: envoy.access_log().count("GetItem") >= 600, message="access log flushed")
    # Each connection refused cost a retry, not a failed request, and only until the shared
    # table said DOWN: without passive health a third of the 600 (200) would have retried.
    retried = retried_to(envoy, "127.0.0.2", sim.port)
    assert ACTIVE_FAILURE_THRESHOLD <= len(retried) <= ACTIVE_FAILURE_THRESHOLD + 4, len(retried)
    assert agent.snapshot()["version"] == version, "the agent noticed; the test proves nothing"


def test_a_nodes_own_503s_are_health_neutral(stack):
    sim, agent, envoy = start(stack)
    sim.fail_node("127.0.0.2", 1.0, 503)
    statuses = get_items(envoy.url, "passive", 300, connections=4)  # both workers
    assert statuses == {200: 200, 503: 100}, statuses  # a node's 503 reaches the client as-is
    settle(envoy)
    assert metric(envoy, "alternator_node_health_changes_total", outcome="down") == 0
    sim.fail_node("127.0.0.2", 0)
    sim.reset()
    assert get_items(envoy.url, "passive", 300, connections=4) == {200: 300}  # both workers
    assert sim.totals()["127.0.0.2"] == 100


def test_a_down_node_is_tried_again_after_the_cooldown(stack):
    sim, agent, envoy = start(stack, cooldown_ms=2_000, concurrency=1)
    sim.stop_node("127.0.0.2")
    # Round robin over three nodes on one worker: these requests list the stopped node first
    # exactly the threshold's number of times, the last of them takes it DOWN, and at most two
    # requests follow. So it goes DOWN once whenever the cooldown ends: a QUARANTINED node
    # needs three failures to go back DOWN, and no more traffic reaches it before it is back.
    # (With more traffic, a machine slower than the cooldown would see it fail again.)
    count = 3 * ACTIVE_FAILURE_THRESHOLD
    assert get_items(envoy.url, "passive", count) == {200: count}
    wait_metric(envoy, "alternator_node_health_changes_total", 1, outcome="down")
    sim.start_node("127.0.0.2")

    def back_in_rotation():
        sim.reset()
        assert get_items(envoy.url, "passive", 30) == {200: 30}
        return sim.totals()["127.0.0.2"] == 10

    eventually(back_in_rotation, timeout=60, interval=0.5, message="node back after the cooldown")
    # On probation (QUARANTINED) it is routed normally; enough successes clear it.
    eventually(
        lambda: metric(envoy, "alternator_node_health_changes_total", outcome="active") == 1,
        message="promoted by traffic successes",
    )
