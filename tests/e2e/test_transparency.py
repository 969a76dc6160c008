"""Answers reach the client as the node sent them: through Envoy and the filter, the status,
every response header (Alternator's `Server` among them) and the body are the node's own, and
Envoy adds no header of its own (`server: envoy`, `x-envoy-*`)."""

import http.client
import json

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
TARGET = "DynamoDB_20120810."
# Headers whose value differs from one answer to the next, even from the same node.
PER_ANSWER = {"date", "x-amzn-requestid"}


def exchange(host: str, port: int, operation: str | None, body: bytes):
    """(status, [(name, value)] lowercased names in wire order, body) of one request."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        headers = {"content-type": "application/x-amz-json-1.0"}
        if operation is not None:
            headers["x-amz-target"] = TARGET + operation
        conn.request("POST", "/", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def comparable(headers):
    return [(k, "<varies>" if k in PER_ANSWER else v) for k, v in headers]


def test_answers_pass_through_unchanged(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    envoy = stack.envoy(agent, {}, expect_nodes=3)
    envoy_host, envoy_port = envoy.url.removeprefix("http://").split(":")
    node = (NODES[0][0], sim.port)

    table = {
        "TableName": "transparent",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    status, _, answer = exchange(*node, "CreateTable", json.dumps(table).encode())
    assert status == 200, answer
    item = {"TableName": "transparent", "Item": {"pk": {"S": "k"}, "v": {"N": "1"}}}
    exchange(*node, "PutItem", json.dumps(item).encode())

    cases = [
        ("GetItem", {"TableName": "transparent", "Key": {"pk": {"S": "k"}}}),  # success
        ("PutItem", item),  # success, empty answer
        ("GetItem", {"TableName": "missing", "Key": {"pk": {"S": "k"}}}),  # 400 ResourceNotFound
        ("CreateTable", table),  # 400 ResourceInUse
        ("NoSuchOperation", {}),  # 400 UnknownOperation
        ("GetItem", None),  # a body that is not JSON
    ]
    for operation, body in cases:
        raw = b'{"TableName": ' if body is None else json.dumps(body).encode()
        direct = exchange(*node, operation, raw)
        proxied = exchange(envoy_host, int(envoy_port), operation, raw)
        assert direct[0] == proxied[0], (operation, direct, proxied)
        assert comparable(direct[1]) == comparable(proxied[1]), (operation, direct[1], proxied[1])
        assert direct[2] == proxied[2], (operation, direct[2], proxied[2])
        names = {k for k, _ in proxied[1]}
        assert not any(k.startswith("x-envoy") for k in names), proxied[1]
        assert dict(proxied[1]).get("server") == "Seastar httpd", proxied[1]
