"""Hostile clients: forged routing headers, and input meant to break the filter. A request may
be refused, but the filter's VM never fails and a request never goes anywhere but a member."""

import http.client
import json
import socket
import subprocess

import boto3
import botocore.config
import pytest

from harness.stack import RawDynamo, create_table, metric, settle, wait_metric
from harness.util import release_binary

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
AKID, SECRET = "hostile-test-key", "hostile-test-secret"


def filter_state(envoy) -> dict:
    """What changes when the filter fails. proxy-wasm: Envoy's wasm stats, VMs created and
    active (a crashed VM is replaced or lost) and the plugin's reload counters. Native module:
    the hooks that panicked (each caught at the ABI boundary, its stream failed with a 503)."""
    if envoy.build == "native":
        return {"panics": metric(envoy, "alternator_module_panics_total")}
    return {
        k: v
        for k, v in envoy.stats().items()
        if k in ("wasm.envoy.wasm.runtime.v8.created", "wasm.envoy.wasm.runtime.v8.active")
        or k.startswith("wasm.alternator-filter.vm_reload")
    }


def raw(envoy, headers, body: bytes, method="POST"):
    host, port = envoy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, "/", skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.putheader("content-length", str(len(body)))
        conn.endheaders()
        conn.send(body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_forged_routing_headers_never_change_the_destination(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(agent, {"fallbacks": 2}, expect_nodes=3)
    create_table(envoy.url, "sec")
    admin = envoy.admin.removeprefix("http://")
    forged = [
        admin,  # Envoy's admin listener
        f"{agent.url.removeprefix('http://')}",  # the discovery agent
        "10.255.255.1:80",  # another host
        f"127.0.0.9:{sim.port}",  # a non-member on the Alternator port
        f"{admin},{admin},{admin}",
        f"127.0.0.2:{sim.port}",  # a member: still the filter's choice, not the client's
    ]
    sim.reset()
    client = RawDynamo(envoy.url)
    try:
        for value in forged:
            for i in range(30):
                status, body = client.call(
                    "GetItem",
                    {"TableName": "sec", "Key": {"pk": {"S": f"k{i}"}}},
                    headers={"x-alternator-endpoints": value, "x-envoy-retry-on": "5xx", "x-envoy-max-retries": "10"},
                )
                assert status == 200 and body == {}, (value, status, body)
    finally:
        client.close()
    # Every request reached a member, spread by the filter's round robin, not by the header.
    served = sim.totals()
    assert sum(served.values()) == 30 * len(forged)
    assert served == {a: 10 * len(forged) for a in ADDRESSES}, served


def test_signed_sdk_requests_reach_the_node_byte_identical(stack):
    sim = stack.sim(NODES, enforce_auth=f"{AKID}:{SECRET}")
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    # Key affinity makes the filter buffer and re-send the body: the signature still verifies.
    envoy = stack.envoy(
        agent, {"fallbacks": 2, "affinity": {"mode": "any_write", "tables": {"sigv4": "pk"}}}, expect_nodes=3
    )
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=envoy.url,
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    ddb.create_table(
        TableName="sigv4",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    for i in range(30):
        ddb.put_item(
            TableName="sigv4",
            Item={"pk": {"S": f"k{i}"}, "v": {"S": "é☃" * i}},
            ConditionExpression="attribute_not_exists(pk)",
        )
        item = ddb.get_item(TableName="sigv4", Key={"pk": {"S": f"k{i}"}}, ConsistentRead=True)["Item"]
        assert item["v"]["S"] == "é☃" * i
    wait_metric(envoy, "alternator_affinity_total", 30, outcome="applied")
    # A wrong secret is refused by the node, not let in by the proxy.
    bad = boto3.client(
        "dynamodb",
        endpoint_url=envoy.url,
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key="wrong",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(bad.exceptions.ClientError):
        bad.list_tables()


def test_admin_and_agent_listen_on_loopback_only(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    envoy = stack.envoy(agent, {"fallbacks": 2})
    assert envoy.admin.startswith("http://127.0.0.1:")
    import yaml

    from harness.envoy import ENVOY_YAML, render_template, validation_values

    shipped = yaml.safe_load(render_template(ENVOY_YAML.read_text(), validation_values()))
    assert shipped["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    help_text = subprocess.run(
        [str(release_binary("alternator-discovery-agent")), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "127.0.0.1:9181" in help_text


BIG = 16 * 1024 * 1024


def put(item_value: str) -> bytes:
    return json.dumps({"TableName": "hostile", "Item": {"pk": {"S": "k"}, "v": {"S": item_value}}}).encode()


HOSTILE = {
    "malformed_json": ([("x-amz-target", "DynamoDB_20120810.PutItem")], b'{"TableName": "hostile", "Item": {'),
    "truncated": ([("x-amz-target", "DynamoDB_20120810.PutItem")], put("x")[:-7]),
    "key_is_a_list": (
        [("x-amz-target", "DynamoDB_20120810.PutItem")],
        b'{"TableName":"hostile","Item":{"pk":[1,2,{"S":"a"}]}}',
    ),
    "key_wrong_type": (
        [("x-amz-target", "DynamoDB_20120810.UpdateItem")],
        b'{"TableName":"hostile","Key":{"pk":{"S":7}},"UpdateExpression":"SET a = :a"}',
    ),
    "item_is_a_string": ([("x-amz-target", "DynamoDB_20120810.PutItem")], b'{"TableName":"hostile","Item":"pk"}'),
    "deep_nesting": ([("x-amz-target", "DynamoDB_20120810.PutItem")], b'{"Item":' + b"[" * 100_000),
    "batch_garbage": (
        [("x-amz-target", "DynamoDB_20120810.BatchWriteItem")],
        b'{"RequestItems":{"hostile":[{"PutRequest":7},{"DeleteRequest":{"Key":null}}]}}',
    ),
    "missing_target": ([], put("x")),
    "garbage_target": ([("x-amz-target", "DynamoDB_20120810." + "Pu\u00fft~*%" * 700)], put("x")),
    "other_api_target": ([("x-amz-target", "DynamoDBStreams_20120810.GetRecords")], put("x")),
    "binary_body": ([("x-amz-target", "DynamoDB_20120810.PutItem")], bytes(range(256)) * 64),
    "sixteen_mb": ([("x-amz-target", "DynamoDB_20120810.PutItem")], put("v" * (BIG - 200))),
}


@pytest.fixture(scope="module")
def hostile_stack(tmp_path_factory):
    from harness.stack import Stack

    s = Stack(tmp_path_factory.mktemp("hostile"))
    try:
        sim = s.sim(NODES)
        agent = s.agent(sim)
        agent.wait_active(ADDRESSES)
        envoy = s.envoy(
            agent, {"fallbacks": 2, "affinity": {"mode": "any_write", "tables": {"hostile": "pk"}}}, expect_nodes=3
        )
        create_table(envoy.url, "hostile")
        envoy.vm_baseline = filter_state(envoy)
        if envoy.build == "native":
            assert envoy.vm_baseline == {"panics": 0}
        else:
            assert envoy.vm_baseline.get("wasm.envoy.wasm.runtime.v8.active", 0) >= 1, envoy.vm_baseline
        yield sim, envoy
    finally:
        s.teardown()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_input_never_breaks_the_filter(hostile_stack, kind):
    sim, envoy = hostile_stack
    headers, body = HOSTILE[kind]
    sim.reset()
    status, answer = raw(envoy, [("content-type", "application/x-amz-json-1.0")] + headers, body)
    # The node judges the request (DynamoDB validation errors are 400); the proxy only routes it.
    assert status in (200, 400, 413), (status, answer[:300])
    if status != 413:
        assert sum(sim.totals().values()) == 1
    assert_filter_healthy(envoy)


def test_a_body_over_the_buffer_limit_is_a_clear_413(hostile_stack):
    sim, envoy = hostile_stack
    sim.reset()
    # The reply comes as soon as the headers are read: the client need not upload 18 MB first
    # (a client that does may see the connection closed under its upload instead).
    host, port = envoy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nhost: dynamodb\r\ncontent-type: application/x-amz-json-1.0\r\n"
            b"x-amz-target: DynamoDB_20120810.PutItem\r\n"
            + f"content-length: {BIG + 2 * 1024 * 1024}\r\n\r\n".encode()
            + put("v")[:-3]
        )
        response = http.client.HTTPResponse(s)
        response.begin()
        status, answer = response.status, response.read()
    assert status == 413, answer[:300]
    parsed = json.loads(answer)
    # Alternator's own answer to an oversized request.
    assert parsed == {
        "__type": "com.amazonaws.dynamodb.v20120810#PayloadTooLarge",
        "message": "Request content length limit of 16777216 bytes exceeded",
    }, parsed
    assert sum(sim.totals().values()) == 0
    assert_filter_healthy(envoy)


def test_thousands_of_headers_are_refused_by_envoy_not_the_filter(hostile_stack):
    sim, envoy = hostile_stack
    sim.reset()
    headers = [("x-amz-target", "DynamoDB_20120810.GetItem")] + [(f"x-h{i}", "v" * 20) for i in range(5000)]
    try:
        status, _ = raw(envoy, headers, b'{"TableName":"hostile","Key":{"pk":{"S":"k"}}}')
    except (ConnectionError, http.client.HTTPException):
        status = None  # Envoy may reset the connection instead of answering 431
    assert status in (431, None)
    assert sum(sim.totals().values()) == 0
    assert_filter_healthy(envoy)


def assert_filter_healthy(envoy):
    assert envoy.process.alive()
    assert filter_state(envoy) == envoy.vm_baseline
    settle(envoy)
    routed = metric(envoy, "alternator_routed_total", policy="round_robin")
    client = RawDynamo(envoy.url)
    try:
        status, body = client.call("GetItem", {"TableName": "hostile", "Key": {"pk": {"S": "k"}}})
    finally:
        client.close()
    assert status == 200, body
    # The filter itself (not Envoy's fallback after a failed VM) routed the next request.
    wait_metric(envoy, "alternator_routed_total", routed + 1, policy="round_robin")
    assert metric(envoy, "alternator_snapshot_nodes") == 3
