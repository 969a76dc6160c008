"""Issue test 4: ScyllaDB's official Python client and our filter send each key to the same node."""

import collections
import json

import alternator
from alternator.config import KeyRouteAffinityConfig, KeyRouteAffinityMode

from harness.stack import RawDynamo, create_table

NODES = [
    ("127.0.0.2", "dc1", "rack1"),
    ("127.0.0.3", "dc1", "rack1"),
    ("127.0.0.4", "dc1", "rack2"),
    ("127.0.0.5", "dc1", "rack2"),
]
KEYS = 400


def key_nodes(sim) -> dict:
    by_key = collections.defaultdict(set)
    for entry in sim.keylog():
        if entry["operation"] in ("PutItem", "UpdateItem"):
            by_key[json.dumps(entry["key"], sort_keys=True)].add(entry["node"])
    return by_key


def test_official_client_and_filter_agree_on_every_key(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(
        agent, {"affinity": {"mode": "any_write", "tables": {"interop": "pk"}}}, expect_nodes=len(NODES)
    )
    create_table(envoy.url, "interop")
    items = [{"pk": {"S": f"user-{i}"}} for i in range(KEYS)]
    items += [{"pk": {"S": f"ключ-{i}"}} for i in range(20)]  # non-ASCII keys hash their UTF-8 bytes

    # The official client, talking to the nodes directly with the same mode. Its seeds are all
    # the nodes, so its node list matches the agent's from the first request on.
    sim.reset()
    config = alternator.Config(
        seed_hosts=[n[0] for n in NODES],
        port=sim.port,
        key_affinity=KeyRouteAffinityConfig(mode=KeyRouteAffinityMode.ANY_WRITE, table_pk_attributes={"interop": "pk"}),
    )
    with alternator.client(config) as official:
        sim.reset()
        for item in items:
            official.put_item(TableName="interop", Item=dict(item, v={"S": "official"}))
    by_official = key_nodes(sim)

    # Our filter through Envoy.
    sim.reset()
    client = RawDynamo(envoy.url)
    try:
        for item in items:
            status, body = client.call("PutItem", {"TableName": "interop", "Item": dict(item, v={"S": "envoy"})})
            assert status == 200, body
    finally:
        client.close()
    by_filter = key_nodes(sim)

    assert set(by_official) == set(by_filter) and len(by_filter) == len(items)
    assert all(len(n) == 1 for n in by_official.values()), "the official client moved a key"
    differ = {k: (by_official[k], by_filter[k]) for k in by_filter if by_official[k] != by_filter[k]}
    assert not differ, f"{len(differ)} of {len(items)} keys differ, e.g. {list(differ.items())[:5]}"
    assert len({next(iter(n)) for n in by_filter.values()}) == len(NODES)
