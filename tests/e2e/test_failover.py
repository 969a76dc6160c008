"""Failure handling a user relies on: retries walk the filter's list, and an agent outage is survived."""

import threading

from harness.stack import RawDynamo, create_table, get_items, metric, wait_metric
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
# An agent that looks again only after the test: discovered once at its start, it does not
# notice what the test does to a node however slowly the test runs.
SLOW_AGENT = {"active_interval": "24h", "idle_interval": "24h", "probe_period": "24h"}


def test_refused_first_choice_is_retried_on_the_next_listed_node(stack):
    sim = stack.sim(NODES)
    # A slow agent: it will not notice the stopped node during the test, so the filter keeps
    # listing it first for a third of the requests and Envoy's retries must walk the list.
    agent = stack.agent(sim, **SLOW_AGENT)
    agent.wait_active([n[0] for n in NODES])
    # Passive health off: it would mark the node DOWN after 10 refusals (tests/faults covers
    # that); here every request that lists it first must walk on to the next node.
    envoy = stack.envoy(agent, {"fallbacks": 2, "passive_health": {"enabled": False}}, expect_nodes=3)
    create_table(envoy.url, "failover")
    version = agent.snapshot()["version"]

    sim.node_action("127.0.0.2", "stop")
    sim.reset()
    assert get_items(envoy.url, "failover", 300) == {200: 300}
    served = sim.totals()
    assert served.get("127.0.0.2", 0) == 0
    assert served["127.0.0.3"] + served["127.0.0.4"] == 300
    assert agent.snapshot()["version"] == version, "the agent noticed too early; the test proves nothing"
    # The 100 requests that listed the stopped node first were served by their first fallback.
    wait_metric(envoy, "alternator_requests_total", 100, choice="fallback")
    log = eventually(
        lambda: envoy.access_log() if envoy.access_log().count("GetItem") == 300 else None, message="access log flushed"
    )
    retried = [line for line in log.splitlines() if "GetItem" in line and "attempts=2" in line]
    assert len(retried) == 100
    assert all(f"candidates=127.0.0.2:{sim.port}," in line for line in retried)


def test_agent_outage_keeps_routing_on_the_last_snapshot(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {"agent": {"error_backoff_ms": 200}}, expect_nodes=3)
    create_table(envoy.url, "failover")

    agent.stop()
    eventually(
        lambda: metric(envoy, "alternator_agent_polls_total", outcome="failed") >= 2,
        message="the filter notices the agent is gone",
    )
    sim.reset()
    assert get_items(envoy.url, "failover", 90) == {200: 90}
    assert sim.totals() == {"127.0.0.2": 30, "127.0.0.3": 30, "127.0.0.4": 30}
    assert metric(envoy, "alternator_snapshot_nodes") == 3
    unreachable = [
        line for line in envoy.process.log_path.read_text().splitlines() if "discovery agent unreachable" in line
    ]
    assert len(unreachable) == 1, unreachable  # logged once per state change, not per poll


HELD = {"ITEM_TIMEOUT": "86400s", "ITEM_HEDGE_AFTER": "86400s"}
# Longer than any test: the slow node answers nothing before the test stops it.
HOLD_MS = 86_400_000


def test_reads_survive_a_node_dying_mid_request_and_writes_are_not_replayed(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim, **SLOW_AGENT)
    agent.wait_active([n[0] for n in NODES])
    # Single-item timeouts longer than the test: the held request ends by the node's reset,
    # not by a hedge or a timeout.
    envoy = stack.envoy(agent, {"fallbacks": 2}, expect_nodes=3, extra_values=HELD)
    create_table(envoy.url, "failover")
    version = agent.snapshot()["version"]

    def in_flight():
        return envoy.stats().get("cluster.alternator.upstream_rq_active", 0)

    for victim, operation, body, expected in [
        ("127.0.0.2", "GetItem", {"TableName": "failover", "Key": {"pk": {"S": "k"}}}, [200, 200, 200]),
        ("127.0.0.3", "PutItem", {"TableName": "failover", "Item": {"pk": {"S": "k"}}}, [200, 200, 503]),
    ]:
        # The node takes its time; round robin gives it exactly one of three requests.
        sim.slow_node(victim, HOLD_MS)
        results = []
        # Bound per iteration: a thread that outlived its join must not write into the next one's list.
        threads = [
            threading.Thread(target=lambda r=results, op=operation, b=body: r.append(one_call(envoy, op, b)))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        eventually(lambda r=results: len(r) == 2 and in_flight() == 1, message="one request held by the slow node")
        sim.stop_node(victim)  # resets the held request's connection
        for t in threads:
            t.join(timeout=30)
        assert sorted(results) == expected, (operation, results)
        sim.start_node(victim)
    assert agent.snapshot()["version"] == version, "the agent noticed; the test proves nothing"


def one_call(envoy, operation, body):
    client = RawDynamo(envoy.url)
    try:
        return client.call(operation, body)[0]
    finally:
        client.close()
