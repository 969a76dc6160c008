"""Token ownership as an SDK reads it: boto3 Query and Scan of Scylla's internal tables
(`.scylla.alternator.system.*`) with its own paginators, the ring control API and the
replica/non-replica counters, against the release binary."""

import pytest
from botocore.exceptions import ClientError

from harness.sim import ControlError, SimProcess
from simtest import client

# dc1: three racks; dc2: one node. Node 4 broadcasts another address than it listens on.
NODES = [("127.0.0.1", "dc1", "rack1"), ("127.0.0.2", "dc1", "rack2"), ("127.0.0.3", "dc1", "rack3")]
EXTRA = ["--node", "127.0.0.4/dc2/rack1/10.0.0.4", "--tablets", "16", "--internal-page-rows", "7"]
TOKEN_RING = ".scylla.alternator.system.token_ring"


@pytest.fixture
def ring_sim(tmp_path):
    with SimProcess(NODES, log_path=tmp_path / "sim.log", extra_args=EXTRA) as s:
        yield s


def create(ddb, name, tags=None):
    kwargs = {"Tags": tags} if tags else {}
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **kwargs,
    )
    return ddb.describe_table(TableName=name)["Table"]["TableId"]


def query_all(ddb, table, key, value):
    pages = ddb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression=f"{key} = :v",
        ExpressionAttributeValues={":v": {"S": value}},
    )
    return [item for page in pages for item in page["Items"]]


def test_token_ring_and_tablets_through_boto3(ring_sim, table_name):
    ddb = client(ring_sim.endpoint("127.0.0.1"))
    table_id = create(ddb, table_name)
    rows = query_all(ddb, TOKEN_RING, "keyspace_name", f"alternator_{table_name}")
    # 16 tablets, RF 3 in dc1 (three racks) + 1 in dc2, paged 7 rows at a time.
    assert len(rows) == 16 * 4
    assert {r["table_name"]["S"] for r in rows} == {table_name}
    assert {r["endpoint"]["S"] for r in rows} == {"127.0.0.1", "127.0.0.2", "127.0.0.3", "10.0.0.4"}
    ranges = sorted({(int(r["start_token"]["S"]), int(r["end_token"]["S"])) for r in rows})
    assert ranges[0][0] == -(2**63) and ranges[-1][1] == 2**63 - 1
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))

    ring = ring_sim.call("GET", f"/tables/{table_name}/ring")
    assert ring["layout"] == "tablets" and ring["table_id"] == table_id
    tablets = query_all(ddb, ".scylla.alternator.system.tablets", "table_id", table_id)
    assert [int(t["last_token"]["S"]) for t in tablets] == [r["end_token"] for r in ring["ranges"]]
    host_ids = {n["address"]: n["host_id"] for n in ring_sim.nodes()}
    first = ring["ranges"][0]["replicas"]
    assert tablets[0]["replicas"]["S"] == ", ".join(f"{host_ids[a]}:0" for a in first)

    # A fourth dc1 node joins (taking some replicas); move a dc1 replica of tablet 0 to a dc1
    # node that does not hold it, leaving the migration in progress.
    ring_sim.add_node("127.0.0.5", "dc1", "rack1")
    host_ids = {n["address"]: n["host_id"] for n in ring_sim.nodes()}
    first = ring_sim.call("GET", f"/tables/{table_name}/ring")["ranges"][0]["replicas"]
    src = next(a for a in first if a != "127.0.0.4")
    dst = next(a for a in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.5") if a not in first)
    ring_sim.call("POST", f"/tables/{table_name}/tablets/0/move", {"from": src, "to": dst, "finish": False})
    t0 = query_all(ddb, ".scylla.alternator.system.tablets", "table_id", table_id)[0]
    assert t0["stage"]["S"] == "write_both_read_old"
    assert host_ids[dst] in t0["new_replicas"]["S"]
    ring_sim.call("POST", f"/tables/{table_name}/tablets/0/finish")
    t0 = query_all(ddb, ".scylla.alternator.system.tablets", "table_id", table_id)[0]
    assert "stage" not in t0 and host_ids[dst] in t0["replicas"]["S"]
    with pytest.raises(ControlError) as e:
        ring_sim.call("POST", f"/tables/{table_name}/tablets/0/finish")
    assert e.value.status == 409


def test_peers_local_and_errors_through_boto3(ring_sim):
    ddb = client(ring_sim.endpoint("127.0.0.2"))
    peers = [
        i for p in ddb.get_paginator("scan").paginate(TableName=".scylla.alternator.system.peers") for i in p["Items"]
    ]
    assert {(p["peer"]["S"], p["rpc_address"]["S"]) for p in peers} == {
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.3", "127.0.0.3"),
        ("10.0.0.4", "127.0.0.4"),
    }
    local = ddb.scan(TableName=".scylla.alternator.system.local")["Items"]
    assert local[0]["rpc_address"]["S"] == "127.0.0.2"
    assert local[0]["data_center"]["S"] == "dc1"
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.get_item(TableName=".scylla.alternator.system.local", Key={"key": {"S": "local"}})
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.scan(TableName=".scylla.alternator.system.nosuch")
    with pytest.raises(ClientError) as e:
        ddb.query(
            TableName=TOKEN_RING, KeyConditionExpression="rack = :r", ExpressionAttributeValues={":r": {"S": "x"}}
        )
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_replica_counters_and_a_joining_node(ring_sim, table_name):
    ddb = client(ring_sim.endpoint("127.0.0.1"))
    create(ddb, table_name, tags=[{"Key": "system:initial_tablets", "Value": "none"}])
    assert ring_sim.call("GET", f"/tables/{table_name}/ring")["layout"] == "vnodes"
    ring_sim.reset()
    for i in range(20):
        ddb.put_item(TableName=table_name, Item={"pk": {"S": f"k{i}"}})
    c = ring_sim.counters()["127.0.0.1"]
    # RF 3 over dc1's three nodes: node 1 is a replica of every key.
    assert (c["coordinated_as_replica"], c["coordinated_as_non_replica"]) == (20, 0)
    ring_sim.add_node("127.0.0.5", "dc2", "rack2")
    ring = ring_sim.call("GET", f"/tables/{table_name}/ring")
    assert any("127.0.0.5" in r["replicas"] for r in ring["ranges"])
    assert ring_sim.node("127.0.0.5")["in_ring"] is True
