"""Answers reach the client as the node sent them: through Envoy and the filter, the status,
every response header (Alternator's `Server` among them) and the body are the node's own, and
Envoy adds no header of its own (`server: envoy`, `x-envoy-*`). Request bodies reach the node
as the client sent them, compressed ones included."""

import gzip
import http.client
import json
import zlib

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
TARGET = "DynamoDB_20120810."
# Headers whose value differs from one answer to the next, even from the same node.
PER_ANSWER = {"date", "x-amzn-requestid"}
# Headers about one connection, not the answer (RFC 9110 §7.6.1): each hop sets its own.
PER_HOP = {"connection", "keep-alive", "transfer-encoding"}
# Alternator's request limit (ScyllaDB alternator/server.hh, request_content_length_limit), and
# its answer to a larger body (alternator/server.cc).
LIMIT = 16 * 1024 * 1024
TOO_LARGE = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#PayloadTooLarge",'
    b'"message":"Request content length limit of 16777216 bytes exceeded"}'
)
TABLE = {
    "TableName": "transparent",
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def exchange(host: str, port, operation: str | None, body, headers: dict | None = None):
    """(status, [(name, value)] lowercased names in wire order, body) of one request. A body
    given as a list of byte strings is sent chunked, with no Content-Length."""
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        sent = {"content-type": "application/x-amz-json-1.0", **(headers or {})}
        if operation is not None:
            sent["x-amz-target"] = TARGET + operation
        conn.request("POST", "/", body=body, headers=sent, encode_chunked=isinstance(body, list))
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def comparable(headers):
    return [(k, "<varies>" if k in PER_ANSWER else v) for k, v in headers if k not in PER_HOP]


def assert_same_answer(what, direct, proxied):
    """The node's answer, byte for byte, and nothing of Envoy's."""
    assert direct[0] == proxied[0], (what, direct, proxied)
    assert comparable(direct[1]) == comparable(proxied[1]), (what, direct[1], proxied[1])
    assert direct[2] == proxied[2], (what, direct[2][:300], proxied[2][:300])
    names = {k for k, _ in proxied[1]}
    assert not any(k.startswith("x-envoy") for k in names), (what, proxied[1])
    assert dict(proxied[1]).get("server") == "Seastar httpd", (what, proxied[1])


def envoy_address(envoy):
    host, port = envoy.url.removeprefix("http://").split(":")
    return host, int(port)


def test_answers_pass_through_unchanged(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    envoy = stack.envoy(agent, {}, expect_nodes=3)
    node = (NODES[0][0], sim.port)

    status, _, answer = exchange(*node, "CreateTable", json.dumps(TABLE).encode())
    assert status == 200, answer
    item = {"TableName": "transparent", "Item": {"pk": {"S": "k"}, "v": {"N": "1"}}}
    exchange(*node, "PutItem", json.dumps(item).encode())
    get = json.dumps({"TableName": "transparent", "Key": {"pk": {"S": "k"}}}).encode()
    gz = {"content-encoding": "gzip"}

    cases = [
        ("GetItem", get, {}),  # success
        ("PutItem", json.dumps(item).encode(), {}),  # success, empty answer
        ("GetItem", json.dumps({"TableName": "missing", "Key": {"pk": {"S": "k"}}}).encode(), {}),  # 400
        ("CreateTable", json.dumps(TABLE).encode(), {}),  # 400 ResourceInUse
        ("NoSuchOperation", b"{}", {}),  # 400 UnknownOperation
        ("GetItem", b'{"TableName": ', {}),  # a body that is not JSON
        # Compressed bodies reach the node as sent, and it inflates them.
        ("GetItem", gzip.compress(get), gz),
        ("PutItem", zlib.compress(json.dumps(item).encode()), {"content-encoding": "deflate"}),
        ("GetItem", gzip.compress(get)[:-6], gz),  # 500 Truncated gzip
        ("GetItem", get, gz),  # 500 Error during gzip decompression
        ("GetItem", get, {"content-encoding": "br"}),  # 500 Unsupported Content-Encoding
    ]
    for operation, raw, headers in cases:
        direct = exchange(*node, operation, raw, headers)
        proxied = exchange(*envoy_address(envoy), operation, raw, headers)
        assert_same_answer((operation, headers), direct, proxied)
    # The node itself answered the compressed GetItem with the item.
    assert exchange(*envoy_address(envoy), "GetItem", gzip.compress(get), gz)[2] == (
        b'{"Item":{"pk":{"S":"k"},"v":{"N":"1"}}}'
    )


def test_the_nodes_413_passes_through(stack):
    """A body over Alternator's 16 MiB limit is answered by the node, and its 413 reaches the
    client unchanged. The filter answers a *declared* oversized body itself (`max_request_bytes`,
    default 16 MiB) before any node sees it, so the declared case runs with that check off; a
    chunked body declares nothing and reaches the node with the default configuration."""
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    default = stack.envoy(agent, {}, expect_nodes=3)
    unchecked = stack.envoy(agent, {"max_request_bytes": 0}, expect_nodes=3)
    node = (NODES[0][0], sim.port)
    status, _, answer = exchange(*node, "CreateTable", json.dumps(TABLE).encode())
    assert status == 200, answer

    # A PutItem one byte over the limit, as JSON; well under Envoy's 17825792-byte buffers.
    item = {"TableName": "transparent", "Item": {"pk": {"S": "k"}, "v": {"S": ""}}}
    padding = LIMIT + 1 - len(json.dumps(item))
    item["Item"]["v"]["S"] = "x" * padding
    body = json.dumps(item).encode()
    assert len(body) == LIMIT + 1
    chunked = [body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)]

    for what, envoy, sent in [("declared", unchecked, body), ("chunked", default, chunked)]:
        direct = exchange(*node, "PutItem", sent)
        assert direct[0] == 413 and direct[2] == TOO_LARGE, (what, direct[:2])
        before = sum(sim.totals().values())
        proxied = exchange(*envoy_address(envoy), "PutItem", sent)
        assert_same_answer(what, direct, proxied)
        # A node answered it, not Envoy or the filter.
        assert sum(sim.totals().values()) == before + 1, what

    # Nothing was stored along the way.
    get = json.dumps({"TableName": "transparent", "Key": {"pk": {"S": "k"}}}).encode()
    assert exchange(*node, "GetItem", get)[2] == b"{}"
