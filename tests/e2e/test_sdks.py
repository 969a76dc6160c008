"""Issue test 5: real SDKs through Envoy with SigV4 enforced by the sim.

boto3, the AWS SDK for Rust (tests/rust-sdk-client) and the AWS SDK for JavaScript v3
(tests/js) each run create, put, get, conditional update, query, batch write/get and delete.
The sim verifies every signature, so a filter that touched Host or the body would fail them.
"""

import os
import pathlib
import shutil
import subprocess

import boto3
import botocore.config
import botocore.exceptions
import pytest

from harness.stack import wait_metric
from harness.util import ROOT, target_dir

AKID, SECRET = "alternator", "secret_pass"
NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
AFFINITY = {"affinity": {"mode": "any_write"}}


@pytest.fixture
def signed_stack(stack):
    sim = stack.sim(NODES, enforce_auth=f"{AKID}:{SECRET}")
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    # Key affinity on, so the filter also buffers and reads bodies of signed writes.
    envoy = stack.envoy(agent, AFFINITY, expect_nodes=3)
    return sim, envoy


def client_env():
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"})
    return env


def boto3_client(url, secret=SECRET):
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def boto3_workload(ddb, table):
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    key = lambda pk, sk: {"pk": {"S": pk}, "sk": {"S": sk}}  # noqa: E731
    for i in range(3):
        ddb.put_item(TableName=table, Item={**key("user-1", f"item-{i}"), "n": {"N": str(i)}})
    assert ddb.get_item(TableName=table, Key=key("user-1", "item-1"), ConsistentRead=True)["Item"]["n"] == {"N": "1"}
    ddb.update_item(
        TableName=table,
        Key=key("user-1", "item-1"),
        UpdateExpression="SET n = :new",
        ConditionExpression="n = :old",
        ExpressionAttributeValues={":new": {"N": "10"}, ":old": {"N": "1"}},
    )
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=table,
            Key=key("user-1", "item-1"),
            UpdateExpression="SET n = :new",
            ConditionExpression="n = :old",
            ExpressionAttributeValues={":new": {"N": "20"}, ":old": {"N": "1"}},
        )
    q = ddb.query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "user-1"}}
    )
    assert q["Count"] == 3
    bw = ddb.batch_write_item(
        RequestItems={table: [{"PutRequest": {"Item": key(f"batch-{i}", "x")}} for i in range(4)]}
    )
    assert not bw.get("UnprocessedItems")
    bg = ddb.batch_get_item(
        RequestItems={table: {"Keys": [key("batch-0", "x"), key("batch-3", "x")], "ConsistentRead": True}}
    )
    assert len(bg["Responses"][table]) == 2
    ddb.delete_item(TableName=table, Key=key("user-1", "item-0"))
    assert "Item" not in ddb.get_item(TableName=table, Key=key("user-1", "item-0"), ConsistentRead=True)
    ddb.delete_table(TableName=table)


def test_boto3(signed_stack):
    sim, envoy = signed_stack
    boto3_workload(boto3_client(envoy.url), "boto3_table")
    wait_metric(envoy, "alternator_routed_total", 13)  # every call of the workload went through the filter
    wait_metric(envoy, "alternator_affinity_total", 5, at_least=True, outcome="applied")


def test_signature_is_really_enforced(signed_stack):
    _, envoy = signed_stack
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        boto3_client(envoy.url, secret="wrong").list_tables()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)


def rust_client_binary() -> pathlib.Path | None:
    name = "alternator-rust-sdk-client"
    for path in (target_dir() / "release" / name, ROOT / "tests" / "rust-sdk-client" / "target" / "release" / name):
        if path.exists():
            return path
    return None


def test_rust_sdk(signed_stack):
    sim, envoy = signed_stack
    binary = rust_client_binary()
    if binary is None:
        pytest.skip("AWS SDK for Rust client not built: run `make rust-sdk-client`")
    proc = subprocess.run(
        [str(binary), envoy.url, "rust_table"], env=client_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert '"ok":true' in proc.stdout
    wait_metric(envoy, "alternator_routed_total", 13)  # every call of the workload went through the filter


def test_js_sdk_v3(signed_stack):
    sim, envoy = signed_stack
    js = ROOT / "tests" / "js"
    node = shutil.which("node")
    assert node, "node is required for the JavaScript SDK test"
    assert (js / "node_modules" / "@aws-sdk" / "client-dynamodb").exists(), "run `make npm`"
    proc = subprocess.run(
        [node, str(js / "workload.mjs"), envoy.url, "js_table"],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=js,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"ok":true' in proc.stdout
    wait_metric(envoy, "alternator_routed_total", 13)  # every call of the workload went through the filter
