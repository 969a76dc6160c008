"""The binary as harnesses use it: startup line, /localnodes and health over HTTP, the control
API and what an SDK client sees under each fault, SIGTERM."""

import json
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from harness.sim import ControlError, SimProcess, sim_binary
from simtest import NODES, client


def http_get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def localnodes(sim, address="127.0.0.1", query=""):
    status, body = http_get(f"{sim.endpoint(address)}/localnodes{query}")
    assert status == 200
    return json.loads(body)


def refuses(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_startup_line_describes_the_cluster(sim):
    assert sim.port > 0
    assert sim.info["control"].startswith("127.0.0.1:")
    described = [{k: n[k] for k in ("address", "datacenter", "rack")} for n in sim.info["nodes"]]
    assert described == [{"address": a, "datacenter": d, "rack": r} for a, d, r in NODES]
    # Without a /BROADCAST field a node broadcasts its own address; host ids are UUIDs.
    assert [n["broadcast_address"] for n in sim.info["nodes"]] == [a for a, _, _ in NODES]
    assert len({n["host_id"] for n in sim.info["nodes"]}) == len(NODES)


def test_localnodes_and_health(sim):
    assert localnodes(sim) == ["127.0.0.1", "127.0.0.2"]
    assert localnodes(sim, "127.0.0.3") == ["127.0.0.3"]
    assert localnodes(sim, query="?dc=dc2") == ["127.0.0.3"]
    assert localnodes(sim, query="?dc=dc1&rack=rack2") == ["127.0.0.2"]
    assert localnodes(sim, query="?dc=unknown") == []
    assert localnodes(sim, query="?rack=unknown") == []
    status, body = http_get(sim.endpoint("127.0.0.2") + "/")
    assert (status, body) == (200, f"healthy: 127.0.0.2:{sim.port}")


def test_stop_and_start(sim):
    ddb = client(sim.endpoint("127.0.0.2"))
    ddb.list_tables()
    assert sim.stop_node("127.0.0.2")["state"] == "stopped"
    assert refuses("127.0.0.2", sim.port)
    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        ddb.list_tables()
    assert localnodes(sim) == ["127.0.0.1"]
    assert sim.start_node("127.0.0.2")["state"] == "running"
    assert ddb.list_tables()["TableNames"] == []
    assert localnodes(sim) == ["127.0.0.1", "127.0.0.2"]


def test_hang_times_out_sdk_calls(sim):
    sim.hang_node("127.0.0.1")
    ddb = client(sim.endpoint("127.0.0.1"), read_timeout=0.5)
    with pytest.raises(ReadTimeoutError):
        ddb.list_tables()
    assert localnodes(sim, "127.0.0.2") == ["127.0.0.2"]
    sim.start_node("127.0.0.1")
    assert client(sim.endpoint("127.0.0.1")).list_tables()["TableNames"] == []


def test_slow_node(sim):
    sim.slow_node("127.0.0.1", 250)
    t = time.monotonic()
    client(sim.endpoint("127.0.0.1")).list_tables()
    assert time.monotonic() - t >= 0.25
    assert sim.node("127.0.0.1")["latency_ms"] == 250


def test_failures_are_dynamodb_errors_sdks_retry(sim):
    sim.fail_node("127.0.0.1", 1.0, 503)
    with pytest.raises(ClientError) as e:
        client(sim.endpoint("127.0.0.1")).list_tables()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    counters = sim.counters()["127.0.0.1"]
    assert counters["injected_failures"] == counters["by_operation"]["ListTables"] == 1
    # The SDK treats it as retryable: with retries it tries again (and still fails here).
    with pytest.raises(ClientError):
        client(sim.endpoint("127.0.0.1"), attempts=3).list_tables()
    counters = sim.counters()["127.0.0.1"]
    assert counters["injected_failures"] == counters["by_operation"]["ListTables"] == 4

    sim.fail_node("127.0.0.1", 1.0, 500)
    with pytest.raises(ClientError) as e:
        client(sim.endpoint("127.0.0.1")).list_tables()
    assert e.value.response["Error"]["Code"] == "InternalServerError"
    sim.fail_node("127.0.0.1", 0.0)
    client(sim.endpoint("127.0.0.1")).list_tables()


def test_not_ready_and_decommission(sim):
    sim.not_ready("127.0.0.2")
    assert localnodes(sim) == ["127.0.0.1", "127.0.0.2"]
    assert refuses("127.0.0.2", sim.port)
    sim.not_ready("127.0.0.2", ready_after_ms=200)
    deadline = time.monotonic() + 10
    while refuses("127.0.0.2", sim.port):
        assert time.monotonic() < deadline, "node never became ready"
        time.sleep(0.05)
    assert sim.node("127.0.0.2")["state"] == "running"

    sim.decommission("127.0.0.2")
    assert localnodes(sim) == ["127.0.0.1"]
    assert client(sim.endpoint("127.0.0.2")).list_tables()["TableNames"] == []


def test_add_node_at_runtime(sim):
    sim.add_node("127.0.0.4", "dc2", "rack2")
    assert localnodes(sim, "127.0.0.3") == ["127.0.0.3", "127.0.0.4"]
    assert client(sim.endpoint("127.0.0.4")).list_tables()["TableNames"] == []
    with pytest.raises(ControlError) as e:
        sim.add_node("127.0.0.4", "dc2", "rack2")
    assert e.value.status == 409
    with pytest.raises(ControlError) as e:
        sim.stop_node("127.0.0.77")
    assert e.value.status == 404


def test_counters_keylog_reset(sim, table_name):
    c1, c2 = client(sim.endpoint("127.0.0.1")), client(sim.endpoint("127.0.0.2"))
    c1.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    c2.put_item(TableName=table_name, Item={"id": {"N": "42"}, "x": {"S": "y"}})
    c1.get_item(TableName=table_name, Key={"id": {"N": "42"}})
    c2.query(TableName=table_name, KeyConditionExpression="id = :v", ExpressionAttributeValues={":v": {"N": "42"}})
    c1.batch_get_item(RequestItems={table_name: {"Keys": [{"id": {"N": "1"}}, {"id": {"N": "2"}}]}})
    log = [(e["node"], e["operation"], e["table"], e["key"]) for e in sim.keylog()]
    assert log == [
        ("127.0.0.2", "PutItem", table_name, {"N": "42"}),
        ("127.0.0.1", "GetItem", table_name, {"N": "42"}),
        ("127.0.0.2", "Query", table_name, {"N": "42"}),
        ("127.0.0.1", "BatchGetItem", table_name, {"N": "1"}),
        ("127.0.0.1", "BatchGetItem", table_name, {"N": "2"}),
    ]
    assert sim.totals() == {"127.0.0.1": 3, "127.0.0.2": 2, "127.0.0.3": 0}
    assert sim.counters()["127.0.0.2"]["by_operation"] == {"PutItem": 1, "Query": 1}
    last = sim.keylog()[-1]["seq"]
    sim.reset()
    assert sim.totals() == {"127.0.0.1": 0, "127.0.0.2": 0, "127.0.0.3": 0}
    assert sim.keylog() == []
    c1.get_item(TableName=table_name, Key={"id": {"N": "7"}})
    assert [e["seq"] for e in sim.keylog(since=last + 1)] == [last + 1]


def test_sigterm_stops_cleanly_and_releases_the_port(tmp_path):
    sim = SimProcess(NODES[:2], log_path=tmp_path / "sim.log")
    port = sim.port
    # An open keep-alive connection must not hold up shutdown.
    conn = socket.create_connection(("127.0.0.1", port))
    assert sim.stop(timeout=5) == 0
    conn.close()
    assert refuses("127.0.0.1", port)


def test_fixed_port_and_config_file(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    cfg = tmp_path / "sim.json"
    cfg.write_text(json.dumps({"nodes": [{"address": "127.0.0.1", "datacenter": "dcA", "rack": "r1"}], "port": port}))
    with SimProcess([], extra_args=["--config", cfg], log_path=tmp_path / "sim.log") as sim:
        assert sim.port == port
        assert localnodes(sim, query="?dc=dcA") == ["127.0.0.1"]


def test_bad_arguments_exit_with_a_message():
    r = subprocess.run([sim_binary(), "--node", "127.0.0.1/dc1"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "ADDRESS/DATACENTER/RACK" in r.stderr
    r = subprocess.run([sim_binary()], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "no nodes" in r.stderr


def test_concurrent_sims_share_addresses(tmp_path):
    sims = []
    errors = []

    def start(i):
        try:
            sims.append(SimProcess(NODES, log_path=tmp_path / f"sim{i}.log"))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert len({s.port for s in sims}) == 4
        for s in sims:
            assert localnodes(s) == ["127.0.0.1", "127.0.0.2"]
    finally:
        for s in sims:
            s.stop()
