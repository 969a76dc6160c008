"""Node faults under load: stop, hang, restart, listed-but-not-ready, whole cluster down.

Real alternator-sim + discovery agent + Envoy with the filter. The load sends each request once
(no client retries), so every failure counted here is one a user with SDK retries off would see.
"""
import re

from harness.load import MixedLoad, unreadable
from harness.stack import RawDynamo, create_table, wait_routing, wait_synced
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
TABLE = "faults"


def start(stack, **envoy_kwargs):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(agent, {"fallbacks": 2}, expect_nodes=3, **envoy_kwargs)
    create_table(envoy.url, TABLE)
    return sim, agent, envoy


def access_lines(envoy, operation=None):
    lines = envoy.access_log().splitlines()
    return [line for line in lines if operation is None or f".{operation}\"" in line]


def test_stopping_a_node_under_load_loses_no_request_and_no_write(stack):
    sim, agent, envoy = start(stack)
    load = MixedLoad(envoy.url, TABLE, total=3000, workers=4).start()
    eventually(lambda: load.done >= 600, timeout=120, message="load under way")
    sim.stop_node("127.0.0.3")
    load.join()

    assert len(load.outcomes) == 3000
    failures = load.failures()
    # Envoy never replays a write that may have reached the node (conditional writes and LWT
    # must not apply twice), so the only write that may fail is one the stopped node was holding
    # when its connections were reset; the access log names it. Reads never fail.
    assert all(f.operation == "PutItem" and f.status in (502, 503) for f in failures), failures
    held = [line for line in access_lines(envoy, "PutItem")
            if f"upstream=127.0.0.3:{sim.port}" in line and re.search(r" 50[23] U[RC]", line)]
    assert len(failures) <= len(held) <= 4, (failures, held)
    written = load.acknowledged_writes()
    assert len(written) >= 1400
    assert unreadable(envoy.url, TABLE, written) == []
    # The agent dropped the node and the filter followed: nothing is routed to it any more.
    agent.wait_active(["127.0.0.2", "127.0.0.4"])
    wait_synced(envoy, agent)
    sim.reset()
    tail = MixedLoad(envoy.url, TABLE, total=200, workers=2, prefix="after").start().join()
    assert tail.failures() == []
    assert sim.totals().get("127.0.0.3", 0) == 0


def test_a_hung_node_costs_one_per_try_timeout_then_is_avoided(stack):
    sim, agent, envoy = start(stack, extra_values={"PER_TRY_TIMEOUT": "2s"})
    load = MixedLoad(envoy.url, TABLE, total=1500, workers=4).start()
    eventually(lambda: load.done >= 300, timeout=120, message="load under way")
    sim.hang_node("127.0.0.3")
    load.join()

    failures = load.failures()
    # A read held by the hung node is retried on the next listed node after the per-try
    # timeout; a write is answered 504 (it may have been applied). Each worker can be caught
    # by the hung node only until the agent's next refresh drops it.
    assert all(f.operation == "PutItem" and f.status == 504 for f in failures), failures
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
