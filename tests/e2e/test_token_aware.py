"""Token-aware routing end to end: the agent reads the sim's ring through Alternator, the
filter sends single-key requests to a replica of their key, and the sim's coordination
counters say how many requests a replica coordinated."""

import base64
import concurrent.futures
import math
import random

import pytest

from harness.envoy import write_eds
from harness.stack import RawDynamo, metric, settle, wait_metric, wait_synced
from harness.util import eventually

# Six nodes on three racks: with RF 3 every key has one replica per rack, and round robin hits
# a replica about half of the time.
NODES = [(f"127.0.0.{20 + i}", "dc1", f"rack{i % 3 + 1}") for i in range(6)]
RACK = {address: rack for address, _, rack in NODES}
TABLES = {"tok_s": "S", "tok_n": "N", "tok_b": "B"}
REQUESTS = 10_000
RING_FLAGS = ["--ring-tables", "all", "--ring-refresh-active", "1s", "--ring-refresh-idle", "2s"]
LAYOUTS = {
    "tablets": ["--ring-layout", "tablets", "--tablets", "32"],
    "vnodes": ["--ring-layout", "vnodes", "--vnodes-per-node", "16"],
}


def key_value(key_type: str, i: int) -> dict:
    if key_type == "S":
        return {"S": f"user#{i}"}
    if key_type == "N":
        return {"N": str(i * 7 - 3000)}
    return {"B": base64.b64encode(f"bin-{i}".encode()).decode()}


def create_tables(url: str):
    client = RawDynamo(url)
    try:
        for table, key_type in TABLES.items():
            status, answer = client.call(
                "CreateTable",
                {
                    "TableName": table,
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": key_type}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "BillingMode": "PAY_PER_REQUEST",
                },
            )
            assert status == 200, answer
    finally:
        client.close()


def wait_ring(agent, envoy, tables):
    """Until the agent publishes a ring for `tables` and the filter routes on that snapshot."""

    def published():
        ring = agent.snapshot().get("ring") or {}
        return {t["table"] for t in ring.get("tables", [])} >= set(tables)

    eventually(published, timeout=30, message=f"the agent publishes the ring of {tables}")
    wait_synced(envoy, agent)


# The operations `requests` sends.
DATA_OPERATIONS = ("GetItem", "PutItem", "UpdateItem", "DeleteItem")


def requests(count: int, seed: int):
    """(operation, body) pairs: every single-key operation over the three key types."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        table = rng.choice(list(TABLES))
        key = {"pk": key_value(TABLES[table], rng.randrange(500))}
        op = rng.choice(DATA_OPERATIONS)
        if op == "PutItem":
            body = {"TableName": table, "Item": {**key, "v": {"N": str(i)}}}
        elif op == "UpdateItem":
            body = {
                "TableName": table,
                "Key": key,
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": {"N": str(i)}},
            }
        else:
            body = {"TableName": table, "Key": key}
        out.append((op, body))
    return out


def send_all(url: str, work, connections: int = 4):
    def run(part):
        client = RawDynamo(url)
        try:
            for op, body in part:
                status, answer = client.call(op, body)
                assert status == 200, (op, body, answer)
        finally:
            client.close()

    parts = [work[i::connections] for i in range(connections)]
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        for f in [pool.submit(run, p) for p in parts]:
            f.result()


def replica_share(sim) -> tuple[float, int]:
    counters = sim.counters().values()
    replica = sum(c["coordinated_as_replica"] for c in counters)
    other = sum(c["coordinated_as_non_replica"] for c in counters)
    return replica / max(1, replica + other), replica + other


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_replica_coordinates_single_key_requests(stack, layout):
    sim = stack.sim(NODES, extra_args=LAYOUTS[layout] + ["--replication-factor", "3"])
    agent = stack.agent(sim, extra_args=RING_FLAGS)
    agent.wait_active([n[0] for n in NODES])
    token = stack.envoy(agent, {"token_aware": {"enabled": True}}, expect_nodes=6)
    plain = stack.envoy(agent, {}, expect_nodes=6)
    create_tables(token.url)
    wait_ring(agent, token, TABLES)
    wait_synced(plain, agent)

    work = requests(REQUESTS, seed=1)
    sim.reset()
    send_all(token.url, work)
    share, counted = replica_share(sim)
    assert counted == REQUESTS
    assert share >= 0.99, f"{layout}: {share:.4f} of requests coordinated by a replica"
    wait_metric(token, "alternator_token_aware_total", math.ceil(0.99 * REQUESTS), at_least=True, outcome="replica")

    # The same requests through round robin, in the same test: about RF / nodes = one half.
    sim.reset()
    send_all(plain.url, work)
    rr_share, counted = replica_share(sim)
    assert counted == REQUESTS
    assert 0.35 <= rr_share <= 0.65, f"{layout}: round robin {rr_share:.4f}"
    print(f"{layout}: token-aware {share:.4f}, round robin {rr_share:.4f} replica-coordinated")


def test_numbers_as_written_reach_their_own_replicas(stack):
    sim = stack.sim(NODES, extra_args=LAYOUTS["tablets"])
    agent = stack.agent(sim, extra_args=RING_FLAGS)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {"token_aware": {"enabled": True}}, expect_nodes=6)
    create_tables(envoy.url)
    wait_ring(agent, envoy, ["tok_n"])
    sim.reset()
    client = RawDynamo(envoy.url)
    try:
        for n in ["1000", "1e3", "1000.0", "+1000", "001000", "-129", "0"]:
            for op in ["PutItem", "GetItem"]:
                member = "Item" if op == "PutItem" else "Key"
                status, answer = client.call(op, {"TableName": "tok_n", member: {"pk": {"N": n}}})
                assert status == 200, (n, answer)
    finally:
        client.close()
    entries = [e for e in sim.keylog() if e["table"] == "tok_n"]
    assert len(entries) == 14
    assert all(e["replica"] for e in entries), [e for e in entries if not e["replica"]]


def test_the_replica_in_the_clients_rack_leads(stack):
    sim = stack.sim(NODES, extra_args=LAYOUTS["tablets"])
    # The agent learns rack names for the rack it is told it serves.
    agent = stack.agent(sim, extra_args=RING_FLAGS + ["--datacenter", "dc1", "--rack", "rack2"])
    agent.wait_active([n[0] for n in NODES])
    config = {"token_aware": {"enabled": True}, "scope": {"datacenter": "dc1", "rack": "rack2"}}
    envoy = stack.envoy(agent, config, expect_nodes=6)
    create_tables(envoy.url)
    wait_ring(agent, envoy, TABLES)
    sim.reset()
    send_all(envoy.url, requests(600, seed=2), connections=2)
    entries = sim.keylog()
    assert len(entries) == 600
    # One replica of every key is in rack2, and it served every request.
    assert {RACK[e["node"]] for e in entries} == {"rack2"}
    assert all(e["replica"] for e in entries)


def published_ring(agent, table: str) -> list:
    """The agent's ring of `table` as [(end token, sorted replica addresses)]."""
    snapshot = agent.snapshot()
    nodes = [n["address"] for n in snapshot["nodes"]]
    entry = next(t for t in (snapshot.get("ring") or {}).get("tables", []) if t["table"] == table)
    ends = base64.b64decode(entry["end_tokens"])
    raw = base64.b64decode(entry["replicas"])
    width, size = entry["width"], entry["index_bytes"]
    none = (1 << (8 * size)) - 1
    out = []
    for i in range(len(ends) // 8):
        end = int.from_bytes(ends[8 * i : 8 * i + 8], "big", signed=True)
        row = raw[i * width * size : (i + 1) * width * size]
        indices = [int.from_bytes(row[j : j + size], "big") for j in range(0, len(row), size)]
        out.append((end, sorted(nodes[x] for x in indices if x != none)))
    return out


def sim_ring(sim, table: str) -> list:
    ranges = sim.call("GET", f"/tables/{table}/ring")["ranges"]
    return sorted((r["end_token"], sorted(r["replicas"])) for r in ranges)


def test_ring_changes_under_load_fail_nothing_and_routing_recovers(stack):
    sim = stack.sim(NODES[:5], extra_args=LAYOUTS["tablets"])
    agent = stack.agent(sim, extra_args=RING_FLAGS)
    agent.wait_active([n[0] for n in NODES[:5]])
    envoy = stack.envoy(agent, {"token_aware": {"enabled": True}}, expect_nodes=5)
    create_tables(envoy.url)
    wait_ring(agent, envoy, TABLES)
    assert published_ring(agent, "tok_s") == sim_ring(sim, "tok_s")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        load = pool.submit(send_all, envoy.url, requests(6000, seed=3), 3)
        # A tablet moves to another node, then a sixth node joins (the ring rebalances).
        tablet = sim.call("GET", "/tables/tok_s/ring")["ranges"][0]
        source = tablet["replicas"][0]
        target = next(a for a, _, _ in NODES[:5] if a not in tablet["replicas"])
        sim.call("POST", f"/tables/tok_s/tablets/{tablet['tablet']}/move", {"from": source, "to": target})
        address, dc, rack = NODES[5]
        sim.add_node(address, dc, rack)
        load.result()  # every request was answered 200

    agent.wait_active([n[0] for n in NODES])
    # Ring refreshes every second while traffic flows: the agent catches up with the sim.
    eventually(
        lambda: published_ring(agent, "tok_s") == sim_ring(sim, "tok_s"),
        timeout=60,
        message="the agent publishes the changed ring",
    )
    wait_synced(envoy, agent)
    sim.reset()
    send_all(envoy.url, requests(2000, seed=4))
    share, counted = replica_share(sim)
    assert counted == 2000
    assert share >= 0.99, f"{share:.4f} after the ring changed"


def test_a_replica_envoy_does_not_know_yet_costs_no_attempt(stack):
    """The agent can publish a joining node (and a ring that names it) before Envoy's EDS has
    it. Envoy's override_host skips an address that is not a cluster member within the same
    attempt, so such a plan costs no retry and no passive-health failure."""
    sim = stack.sim(NODES[:5], extra_args=LAYOUTS["tablets"])
    agent = stack.agent(sim, extra_args=RING_FLAGS)
    agent.wait_active([n[0] for n in NODES[:5]])
    # Envoy's membership comes from a file holding the agent's EDS answer for these five nodes,
    # so the node that joins below stays unknown to Envoy until the test says otherwise, however
    # long the steps between take.
    eds_dir = stack.base / "eds"
    write_eds(eds_dir, agent.eds())
    envoy = stack.envoy(agent, {"token_aware": {"enabled": True}}, expect_nodes=5, eds_dir=eds_dir)
    create_tables(envoy.url)
    wait_ring(agent, envoy, TABLES)

    newcomer = NODES[5][0]
    sim.add_node(*NODES[5])
    agent.wait_active([n[0] for n in NODES])
    eventually(
        lambda: published_ring(agent, "tok_s") == sim_ring(sim, "tok_s"),
        timeout=20,
        message="the agent publishes the ring with the new node",
    )
    assert any(newcomer in replicas for _, replicas in published_ring(agent, "tok_s"))
    wait_synced(envoy, agent)
    assert f"{newcomer}:{sim.port}" not in envoy.healthy_members(), "EDS already has the new node"

    before = envoy.stats(r"^cluster\.alternator\.upstream_rq_retry$").get("cluster.alternator.upstream_rq_retry", 0)
    sim.reset()
    send_all(envoy.url, requests(2000, seed=5))
    after = envoy.stats(r"^cluster\.alternator\.upstream_rq_retry$").get("cluster.alternator.upstream_rq_retry", 0)
    assert after == before, f"{after - before} retries"
    # The agent's own ring reads (ListTables, Scan, Query of system tables) may reach the new
    # node at any time; what must not reach it is the data requests sent through Envoy.
    through_envoy = {op: n for op, n in sim.counters()[newcomer]["by_operation"].items() if op in DATA_OPERATIONS}
    assert through_envoy == {}, f"the new node received {through_envoy}"
    settle(envoy)
    assert metric(envoy, "alternator_node_health_changes_total") == 0
    # Plans did lead with the node Envoy does not know: the access log shows the header.
    eventually(
        lambda: any(f"candidates={newcomer}:" in ln for ln in envoy.access_log().splitlines()),
        timeout=10,
        message="a plan led with the new node",
    )
    assert f"{newcomer}:{sim.port}" not in envoy.healthy_members()
