"""Node faults under load: stop, hang, restart, listed-but-not-ready, whole cluster down.

Real alternator-sim + discovery agent + Envoy with the filter. The load sends each request once
(no client retries), so every failure counted here is one a user with SDK retries off would see.
"""

import threading

from harness.load import MixedLoad, unreadable
from harness.stack import RawDynamo, create_table, wait_routing, wait_synced
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
TABLE = "faults"


def start(stack, plugin=None, agent_kwargs=None, **envoy_kwargs):
    sim = stack.sim(NODES)
    agent = stack.agent(sim, **(agent_kwargs or {}))
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(agent, plugin or {"fallbacks": 2}, expect_nodes=3, **envoy_kwargs)
    create_table(envoy.url, TABLE)
    return sim, agent, envoy


def access_lines(envoy, operation=None):
    lines = envoy.access_log().splitlines()
    return [line for line in lines if operation is None or f'.{operation}"' in line]


def test_stopping_a_node_under_load_loses_no_request_and_no_write(stack):
    sim, agent, envoy = start(stack)
    # The load's writes are unconditional puts of fresh keys, so it declares them idempotent:
    # a write the stopped node was holding is then retried like a read.
    load = MixedLoad(envoy.url, TABLE, total=3000, workers=4, write_headers={"x-alternator-idempotent": "true"}).start()
    eventually(lambda: load.done >= 600, timeout=120, message="load under way")
    sim.stop_node("127.0.0.3")
    load.join()

    assert len(load.outcomes) == 3000
    assert load.failures() == []
    written = load.acknowledged_writes()
    assert len(written) >= 1500
    assert unreadable(envoy.url, TABLE, written) == []
    # The agent dropped the node and the filter followed: nothing is routed to it any more.
    agent.wait_active(["127.0.0.2", "127.0.0.4"])
    wait_synced(envoy, agent)
    sim.reset()
    tail = MixedLoad(envoy.url, TABLE, total=200, workers=2, prefix="after").start().join()
    assert tail.failures() == []
    assert sim.totals().get("127.0.0.3", 0) == 0


def test_a_write_a_dying_node_held_is_not_replayed_unless_declared_idempotent(stack):
    # Single-item timeouts, and the node's delay, longer than the test: the held write ends by
    # the node's reset, not by a hedge, a timeout or a late answer. The agent looks once, at
    # its start: were it to probe the slow node (its probes are delayed too) and drop it before
    # the three writes are routed, round robin would give the node none of them.
    sim, agent, envoy = start(
        stack,
        agent_kwargs={"active_interval": "24h", "idle_interval": "24h", "probe_period": "24h"},
        extra_values={"ITEM_TIMEOUT": "86400s", "ITEM_HEDGE_AFTER": "86400s"},
    )
    item = {"TableName": TABLE, "Item": {"pk": {"S": "k"}}}
    for headers, expected in [
        ({}, [200, 200, 503]),
        # A client cannot widen Envoy's retries with Envoy's own headers.
        ({"x-envoy-retry-on": "reset", "x-envoy-max-retries": "5"}, [200, 200, 503]),
        ({"x-alternator-idempotent": "true"}, [200, 200, 200]),
    ]:
        # The node takes its time; round robin gives it one of three requests, and it is
        # stopped (connections reset) while it holds that write.
        sim.slow_node("127.0.0.3", 86_400_000)
        results = []

        # Bound per iteration: a thread that outlived its join must not write into the next one's list.
        def one(results=results, headers=headers):
            client = RawDynamo(envoy.url)
            try:
                results.append(client.call("PutItem", item, headers=headers)[0])
            finally:
                client.close()

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        eventually(
            lambda r=results: len(r) == 2 and envoy.stats().get("cluster.alternator.upstream_rq_active", 0) == 1,
            message="one write held by the slow node",
        )
        sim.stop_node("127.0.0.3")
        for t in threads:
            t.join(timeout=30)
        # Without the declaration Envoy answers 503 (the write may have been applied; a
        # conditional write or LWT must not run twice); with it, the next node serves it.
        assert sorted(results) == expected, (headers, results)
        sim.start_node("127.0.0.3")
        agent.wait_active(ADDRESSES)
        wait_synced(envoy, agent)
        wait_routing(envoy, 3)  # back in Envoy's EDS too, or its entry would be skipped


def test_a_hung_node_costs_one_per_try_timeout_then_is_avoided(stack):
    # A cooldown longer than the test: the node passive health takes out stays out until the
    # agent drops it, however long that takes on a loaded machine (after the default 10 s it
    # would be tried again, and cost another round of timeouts).
    sim, agent, envoy = start(stack, plugin={"fallbacks": 2, "passive_health": {"cooldown_ms": 600_000}})
    load = MixedLoad(envoy.url, TABLE, total=1500, workers=4).start()
    eventually(lambda: load.done >= 300, timeout=120, message="load under way")
    sim.hang_node("127.0.0.3")
    load.join()

    failures = load.failures()
    # A read held by the hung node is hedged to the next listed node after its per-try
    # timeout; a write is answered 504 after its route's timeout (it may have been applied).
    # Each worker can be caught by the hung node only until passive health or the agent's
    # next refresh drops it.
    assert all(f.operation == "PutItem" and f.status == 504 for f in failures), failures
    eventually(lambda: len(access_lines(envoy, "PutItem") + access_lines(envoy, "GetItem")) >= 1500, message="logged")
    timed_out = [line for line in access_lines(envoy) if f"upstream=127.0.0.3:{sim.port}" in line and " UT" in line]
    assert len(failures) <= len(timed_out)
    assert len(timed_out) <= 4 * 3, timed_out
    assert unreadable(envoy.url, TABLE, load.acknowledged_writes()) == []

    agent.wait_active(["127.0.0.2", "127.0.0.4"])
    wait_synced(envoy, agent)
    before = len(access_lines(envoy))
    tail = MixedLoad(envoy.url, TABLE, total=300, workers=2, prefix="after").start().join()
    assert tail.failures() == []
    later = access_lines(envoy)[before:]
    assert not [line for line in later if f"upstream=127.0.0.3:{sim.port}" in line]


def test_a_restarted_node_is_back_in_rotation_without_an_envoy_restart(stack):
    sim, agent, envoy = start(stack)
    sim.stop_node("127.0.0.4")
    agent.wait_active(["127.0.0.2", "127.0.0.3"])
    wait_synced(envoy, agent)
    sim.start_node("127.0.0.4")
    agent.wait_active(ADDRESSES)
    wait_synced(envoy, agent)
    wait_routing(envoy, 3)

    sim.reset()
    load = MixedLoad(envoy.url, TABLE, total=300, workers=2).start().join()
    assert load.failures() == []
    served = sim.totals()
    assert served.get("127.0.0.4", 0) >= 50, served  # round robin: about a third
    assert envoy.process.alive()


def test_a_listed_but_not_ready_node_fails_no_request(stack):
    sim, agent, envoy = start(stack)
    load = MixedLoad(envoy.url, TABLE, total=2000, workers=3).start()
    eventually(lambda: load.done >= 200, timeout=120, message="load under way")
    # Scylla lists a joining node in /localnodes before its Alternator port accepts connections.
    sim.add_node("127.0.0.5", "dc1", "rack1", listed_not_ready=True, ready_after_ms=3000)
    load.join()
    assert load.failures() == []

    agent.wait_active(ADDRESSES + ["127.0.0.5"])
    wait_synced(envoy, agent)
    wait_routing(envoy, 4)
    sim.reset()
    tail = MixedLoad(envoy.url, TABLE, total=400, workers=2, prefix="after").start().join()
    assert tail.failures() == []
    assert sim.totals().get("127.0.0.5", 0) >= 50


def test_all_nodes_down_gives_dynamodb_503s_and_traffic_resumes(stack):
    sim, agent, envoy = start(stack)
    for address in ADDRESSES:
        sim.stop_node(address)
    client = RawDynamo(envoy.url)
    try:
        for i in range(30):
            status, body = client.call("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": f"k{i}"}}})
            assert status == 503, (status, body)
            # A body every DynamoDB SDK parses as a retryable ServiceUnavailableException.
            assert isinstance(body, dict) and body.get("__type", "").endswith("#ServiceUnavailableException"), body
            assert body.get("message")
        assert envoy.process.alive()

        for address in ADDRESSES:
            sim.start_node(address)

        def served():
            status, _ = client.call("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "k"}}})
            return status == 200

        eventually(served, timeout=60, interval=0.2, message="traffic resumes once the nodes are back")
    finally:
        client.close()
    agent.wait_active(ADDRESSES)
    wait_synced(envoy, agent)
    load = MixedLoad(envoy.url, TABLE, total=300, workers=2).start().join()
    assert load.failures() == []
