"""TLS to the nodes (README "TLS to Alternator"): the shipped upstream TLS block of cluster
`alternator` enabled, against a sim whose nodes serve HTTPS with certificates from its own CA.

boto3 signs its requests (SigV4, enforced by the sim) and talks plain HTTP to Envoy; Envoy
verifies each node's certificate against the configured CA and forwards over TLS. The agent
discovers and probes the nodes over HTTPS too. A CA bundle that did not sign the nodes'
certificates, or a subject-alternative-name requirement they do not meet, makes Envoy refuse
the nodes: the application gets Envoy's DynamoDB-format 503, and no request reaches a node.
"""

import collections

import boto3
import botocore.config
import botocore.exceptions
import certifi
import pytest

from harness.stack import RawDynamo, create_table, metric, wait_metric
from harness.util import eventually

AKID, SECRET = "alternator", "secret_pass"
NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
# Writes key-affine (so the filter also reads signed bodies), reads round robin.
AFFINITY = {"affinity": {"mode": "any_write"}}


def boto3_client(url):
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def tls_stats(envoy) -> collections.Counter:
    """Envoy's TLS and connection counters of cluster `alternator`, without the prefix."""
    prefix = "cluster.alternator."
    stats = envoy.stats(r"^cluster\.alternator\.(ssl\.|upstream_cx_total$|upstream_rq_retry$)")
    return collections.Counter({k.removeprefix(prefix): v for k, v in stats.items()})


def dynamodb_requests(sim) -> int:
    return sum(sim.totals().values())


@pytest.fixture
def https_cluster(stack):
    """Three HTTPS nodes enforcing SigV4, and an agent that found and vetted them over HTTPS."""
    sim = stack.sim(NODES, enforce_auth=f"{AKID}:{SECRET}", tls=True)
    assert sim.scheme == "https"
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    return sim, agent


def test_signed_requests_reach_the_nodes_over_verified_tls(stack, https_cluster):
    sim, agent = https_cluster
    # The agent reached every node over HTTPS (the nodes speak nothing else) and publishes them
    # as https on the nodes' port; EDS carries that port.
    snapshot = agent.snapshot()
    assert (snapshot["scheme"], snapshot["port"]) == ("https", sim.port)
    # Every node was asked `/localnodes` or probed with `GET /` (active means vetted).
    counters = sim.counters()
    assert all(counters[a]["health"] + counters[a]["localnodes"] >= 1 for a in ADDRESSES), counters

    envoy = stack.envoy(agent, AFFINITY, expect_nodes=3, upstream_ca=sim.ca_path)
    assert envoy.healthy_members() == {f"{a}:{sim.port}" for a in ADDRESSES}

    ddb = boto3_client(envoy.url)
    table = "tls_signed"
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    keys = [f"user-{i}" for i in range(12)]
    for round_ in range(3):
        for k in keys:
            ddb.put_item(TableName=table, Item={"pk": {"S": k}, "round": {"N": str(round_)}})
    for k in keys:
        item = ddb.get_item(TableName=table, Key={"pk": {"S": k}}, ConsistentRead=True)["Item"]
        assert item["round"] == {"N": "2"}

    # Routed by the filter as usual: every write of a key to one node (key affinity), the
    # keys over more than one node, and reads round robin over all three.
    nodes_of = collections.defaultdict(set)
    for entry in sim.keylog():
        if entry["table"] == table and entry["operation"] == "PutItem":
            nodes_of[entry["key"]["S"]].add(entry["node"])
    assert len(nodes_of) == len(keys), nodes_of
    assert all(len(nodes) == 1 for nodes in nodes_of.values()), nodes_of
    assert len(set().union(*nodes_of.values())) > 1, nodes_of
    reads = {a: sim.counters()[a]["by_operation"].get("GetItem", 0) for a in ADDRESSES}
    assert all(n >= 1 for n in reads.values()), reads

    wait_metric(envoy, "alternator_requests_total", 1 + 3 * len(keys) + len(keys))
    served = {a: metric(envoy, "alternator_requests_total", node=f"{a}:{sim.port}") for a in ADDRESSES}
    assert all(n >= 1 for n in served.values()), served

    # Every upstream connection of cluster `alternator` was a verified TLS session, on TLS 1.3.
    stats = tls_stats(envoy)
    assert stats["ssl.handshake"] >= 1, stats
    assert stats["ssl.handshake"] == stats["upstream_cx_total"], stats
    assert stats["ssl.versions.TLSv1.3"] == stats["ssl.handshake"], stats
    assert stats["ssl.fail_verify_error"] == 0 and stats["ssl.connection_error"] == 0, stats


def assert_refused(envoy, sim, reason: str):
    """A signed request through `envoy` fails with Envoy's DynamoDB-format 503 naming `reason`
    after trying every listed node, and reaches no node."""
    before = dynamodb_requests(sim)
    ddb = boto3_client(envoy.url)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        ddb.get_item(TableName="anything", Key={"pk": {"S": "k"}})
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503, error
    assert error["Error"]["Code"] == "ServiceUnavailableException", error
    assert error["Error"]["Message"].startswith("alternator-mesh: no Alternator node answered"), error
    assert reason in error["Error"]["Message"], error
    assert dynamodb_requests(sim) == before
    # The first choice and both fallbacks were tried (each a failed handshake). Envoy writes
    # its access log out on a timer: wait for the request's line.
    line = eventually(
        lambda: next((ln for ln in envoy.access_log().splitlines() if "GetItem" in ln), None),
        message="the refused request's access-log line",
    )
    assert " attempts=3 " in line, envoy.access_log()


def test_a_node_certificate_not_signed_by_the_configured_ca_is_refused(stack, https_cluster):
    sim, agent = https_cluster
    # A real CA bundle (the public web CAs) that did not sign the nodes' certificates.
    envoy = stack.envoy(agent, AFFINITY, expect_nodes=3, upstream_ca=certifi.where())
    assert_refused(envoy, sim, "CERTIFICATE_VERIFY_FAILED")
    stats = tls_stats(envoy)
    assert stats["ssl.fail_verify_error"] >= 3, stats
    assert stats["ssl.handshake"] == 0, stats


def test_subject_alt_name_matching_accepts_node_addresses_and_refuses_others(stack):
    sim = stack.sim(NODES, tls=True)
    agent = stack.agent(sim)
    agent.wait_active(ADDRESSES)
    # The sim's node certificates carry the node's address as an IP SAN.
    loopback = [{"san_type": "IP_ADDRESS", "matcher": {"safe_regex": {"regex": r"127\.0\.0\.[0-9]{1,3}"}}}]
    elsewhere = [{"san_type": "IP_ADDRESS", "matcher": {"safe_regex": {"regex": r"10\.0\.1\.[0-9]{1,3}"}}}]
    matching = stack.envoy(agent, {}, expect_nodes=3, upstream_ca=sim.ca_path, upstream_san_matchers=loopback)
    other = stack.envoy(agent, {}, expect_nodes=3, upstream_ca=sim.ca_path, upstream_san_matchers=elsewhere)

    create_table(matching.url, "tls_san")
    client = RawDynamo(matching.url)
    try:
        for i in range(6):
            status, body = client.call("GetItem", {"TableName": "tls_san", "Key": {"pk": {"S": f"k{i}"}}})
            assert status == 200, body
    finally:
        client.close()
    stats = tls_stats(matching)
    assert stats["ssl.handshake"] >= 1 and stats["ssl.fail_verify_san"] == 0, stats

    before = dynamodb_requests(sim)
    client = RawDynamo(other.url)
    try:
        status, body = client.call("GetItem", {"TableName": "tls_san", "Key": {"pk": {"S": "k0"}}})
    finally:
        client.close()
    assert status == 503, body
    assert body["__type"].endswith("#ServiceUnavailableException"), body
    assert "CERTIFICATE_VERIFY_FAILED" in body["message"], body
    assert dynamodb_requests(sim) == before
    stats = tls_stats(other)
    assert stats["ssl.fail_verify_san"] >= 1 and stats["ssl.handshake"] == 0, stats
