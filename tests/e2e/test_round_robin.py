"""Issue test 1: round robin over 3 nodes with two Envoy workers."""

import threading

from harness.stack import RawDynamo, create_table, metric, wait_metric

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
REQUESTS = 30_000
CONNECTIONS = 6


def test_round_robin_spreads_30000_getitems_evenly(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {"fallbacks": 2}, concurrency=2, expect_nodes=3)
    create_table(envoy.url, "round_robin")
    sim.reset()
    # The CreateTable is counted (routed and served) before the baseline is read.
    wait_metric(envoy, "alternator_routed_total", 1, policy="round_robin")
    wait_metric(envoy, "alternator_requests_total", 1)
    node_label = {address: f"{address}:{sim.port}" for address, _, _ in NODES}
    before = {a: metric(envoy, "alternator_requests_total", node=n) for a, n in node_label.items()}
    routed_before = metric(envoy, "alternator_routed_total", policy="round_robin")

    errors = []

    def drive(count):
        client = RawDynamo(envoy.url)
        try:
            for i in range(count):
                status, body = client.call("GetItem", {"TableName": "round_robin", "Key": {"pk": {"S": f"k{i}"}}})
                if status != 200:
                    errors.append((status, body))
                    return
        finally:
            client.close()

    threads = [threading.Thread(target=drive, args=(REQUESTS // CONNECTIONS,)) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]

    served = sim.totals()
    assert sum(served.values()) == REQUESTS, served
    mean = REQUESTS / len(NODES)
    for address, _, _ in NODES:
        assert abs(served[address] - mean) <= 0.05 * mean, served

    # The filter's own metrics agree, and no request needed a fallback.
    wait_metric(envoy, "alternator_routed_total", routed_before + REQUESTS, policy="round_robin")
    wait_metric(envoy, "alternator_requests_total", sum(before.values()) + REQUESTS)
    assert metric(envoy, "alternator_requests_total", choice="fallback") == 0
    for address, label in node_label.items():
        assert metric(envoy, "alternator_requests_total", node=label) - before[address] == served[address]
