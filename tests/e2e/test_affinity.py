"""Issue test 3: key-route affinity (RMW and ANY_WRITE) lands where the routing core predicts."""

import collections
import json
import random

from harness.stack import RawDynamo, create_table, wait_metric

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
KEYS = 1000


def send(envoy, requests):
    """Sends `(operation, body_text)` in order; every answer must be 200."""
    client = RawDynamo(envoy.url)
    try:
        for op, body in requests:
            status, answer = client.call(op, json.loads(body))
            assert status == 200, (op, body, answer)
    finally:
        client.close()


def nodes_by_key(sim, operations):
    by_key = collections.defaultdict(set)
    for entry in sim.keylog():
        if entry["operation"] in operations:
            by_key[entry["key"]["S"]].add(entry["node"])
    return by_key


def test_any_write_routes_every_key_to_its_predicted_node(stack, affinity_oracle):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    tables = {"affine": "pk"}
    envoy = stack.envoy(agent, {"affinity": {"mode": "any_write", "tables": tables}}, concurrency=2, expect_nodes=3)
    create_table(envoy.url, "affine", range_key="sk")
    snapshot = agent.snapshot()
    sim.reset()

    keys = [f"user-{i}" for i in range(KEYS)]
    writes = []
    for round_ in range(2):
        for k in keys:
            writes.append(
                ("PutItem", json.dumps({"TableName": "affine", "Item": {"pk": {"S": k}, "sk": {"S": str(round_)}}}))
            )
    for k in keys[:100]:
        writes.append(("DeleteItem", json.dumps({"TableName": "affine", "Key": {"pk": {"S": k}, "sk": {"S": "0"}}})))
    send(envoy, writes)

    predicted = dict(
        zip(
            (json.loads(b)["Item"]["pk"]["S"] for _, b in writes[:KEYS]),
            affinity_oracle(snapshot, "ANY_WRITE", tables, writes[:KEYS]),
            strict=True,
        )
    )
    served = nodes_by_key(sim, {"PutItem", "DeleteItem"})
    assert set(served) == set(keys)
    wrong = {k: (served[k], predicted[k]) for k in keys if served[k] != {predicted[k]}}
    assert not wrong, f"{len(wrong)} keys off their predicted node, e.g. {list(wrong.items())[:5]}"

    # 1,000 keys spread over the 3 nodes (expected 333 each; binomial sd ≈ 15).
    load = collections.Counter(predicted.values())
    assert set(load) == {n[0] for n in NODES}
    assert all(250 <= c <= 420 for c in load.values()), load
    wait_metric(envoy, "alternator_affinity_total", len(writes), outcome="applied")

    # BatchWriteItem: every write of a batch goes where the vote says.
    rng = random.Random(7)
    batches = []
    for b in range(60):
        chosen = rng.sample(keys, 5)
        body = {
            "RequestItems": {
                "affine": [{"PutRequest": {"Item": {"pk": {"S": k}, "sk": {"S": f"b{b}"}}}} for k in chosen]
            }
        }
        batches.append(("BatchWriteItem", json.dumps(body)))
    votes = affinity_oracle(snapshot, "ANY_WRITE", tables, batches)
    for (op, body), vote in zip(batches, votes, strict=True):
        sim.reset()
        send(envoy, [(op, body)])
        nodes = {e["node"] for e in sim.keylog() if e["operation"] == "BatchWriteItem"}
        assert nodes == {vote}, (body, nodes, vote)
    assert len(set(votes)) > 1, "votes should not all pick one node"


def test_rmw_routes_only_read_modify_writes_by_key(stack, affinity_oracle):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    # No table configured: the partition-key name is learned from the CreateTable response.
    envoy = stack.envoy(agent, {"affinity": {"mode": "rmw"}}, expect_nodes=3)
    conditional = {
        "TableName": "rmw",
        "Key": {"pk": {"S": "early"}},
        "UpdateExpression": "SET v = :v",
        "ConditionExpression": "attribute_not_exists(v)",
        "ExpressionAttributeValues": {":v": {"N": "1"}},
    }
    client = RawDynamo(envoy.url)
    try:
        status, _ = client.call("UpdateItem", conditional)  # the table does not exist yet
    finally:
        client.close()
    assert status == 400
    wait_metric(envoy, "alternator_affinity_total", 1, outcome="fallback", reason="unknown_table")
    create_table(envoy.url, "rmw")
    wait_metric(envoy, "alternator_key_names_learned_total", 1)

    # Another Envoy learns the same name from a DescribeTable answer passing through it.
    other = stack.envoy(agent, {"affinity": {"mode": "rmw"}}, expect_nodes=3)
    client = RawDynamo(other.url)
    try:
        assert client.call("DescribeTable", {"TableName": "rmw"})[0] == 200
        assert client.call("UpdateItem", conditional)[0] == 200
    finally:
        client.close()
    wait_metric(other, "alternator_key_names_learned_total", 1)
    wait_metric(other, "alternator_affinity_total", 1, outcome="applied")
    snapshot = agent.snapshot()
    sim.reset()

    keys = [f"acct-{i}" for i in range(300)]
    updates = [
        (
            "UpdateItem",
            json.dumps(
                {
                    "TableName": "rmw",
                    "Key": {"pk": {"S": k}},
                    "UpdateExpression": "SET balance = :v",
                    "ConditionExpression": "attribute_not_exists(balance)",
                    "ExpressionAttributeValues": {":v": {"N": "1"}},
                }
            ),
        )
        for k in keys
    ]
    send(envoy, updates)
    predicted = dict(zip(keys, affinity_oracle(snapshot, "RMW", {"rmw": "pk"}, updates), strict=True))
    served = nodes_by_key(sim, {"UpdateItem"})
    wrong = {k: (served[k], predicted[k]) for k in keys if served[k] != {predicted[k]}}
    assert not wrong, f"{len(wrong)} keys off their predicted node, e.g. {list(wrong.items())[:5]}"

    # A plain PutItem is not read-modify-write: round robin, so one key visits every node.
    sim.reset()
    plain = [
        ("PutItem", json.dumps({"TableName": "rmw", "Item": {"pk": {"S": "same-key"}, "n": {"N": str(i)}}}))
        for i in range(3)
    ]
    assert affinity_oracle(snapshot, "RMW", {"rmw": "pk"}, plain) == [None, None, None]
    send(envoy, plain)
    assert nodes_by_key(sim, {"PutItem"})["same-key"] == {n[0] for n in NODES}
