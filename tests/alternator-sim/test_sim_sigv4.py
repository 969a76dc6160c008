"""`--enforce-auth`: SigV4 is verified like Scylla's alternator_enforce_authorization, so a proxy
that rewrites Host or the body (or a client with the wrong secret) is rejected."""

import http.client
import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness.sim import SimProcess
from simtest import NODES, client

AKID, SECRET = "AKIDSIMTEST", "sim/secret+key"


@pytest.fixture
def auth_sim(tmp_path):
    with SimProcess(NODES, enforce_auth=f"{AKID}:{SECRET}", log_path=tmp_path / "sim.log") as s:
        yield s


def signed(host: str, body: bytes, target="DynamoDB_20120810.ListTables"):
    """Headers of a request to `host` signed the way boto3 signs it."""
    req = AWSRequest(
        method="POST",
        url=f"http://{host}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(AKID, SECRET), "dynamodb", "us-east-1").add_auth(req)
    # botocore signs the host of the URL; the HTTP layer adds the header when sending.
    return {"Host": host, **dict(req.headers.items())}


def post(address: str, port: int, headers: dict, body: bytes):
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def test_boto3_with_the_right_credentials_works(auth_sim):
    ddb = client(auth_sim.endpoint(), aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    assert ddb.list_tables()["TableNames"] == []


def test_wrong_secret_and_unknown_key_are_rejected(auth_sim):
    with pytest.raises(ClientError) as e:
        client(auth_sim.endpoint(), aws_access_key_id=AKID, aws_secret_access_key="wrong").list_tables()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        client(auth_sim.endpoint(), aws_access_key_id="SOMEONE", aws_secret_access_key=SECRET).list_tables()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_host_rewritten_after_signing_is_rejected(auth_sim):
    port = auth_sim.port
    body = b"{}"
    headers = signed(f"127.0.0.1:{port}", body)
    status, _ = post("127.0.0.1", port, headers, body)
    assert status == 200

    # Same signed request, delivered to another node with Host rewritten to it.
    moved = dict(headers, Host=f"127.0.0.2:{port}")
    status, answer = post("127.0.0.2", port, moved, body)
    assert status == 400
    assert answer["__type"].endswith("#InvalidSignatureException")

    # Host left alone (what alternator-mesh's proxy does): any node accepts it.
    status, _ = post("127.0.0.2", port, headers, body)
    assert status == 200


def test_body_changed_after_signing_is_rejected(auth_sim):
    port = auth_sim.port
    headers = signed(f"127.0.0.1:{port}", b"{}")
    status, answer = post("127.0.0.1", port, headers, b'{"Limit": 5}')
    assert status == 400
    assert answer["__type"].endswith("#InvalidSignatureException")


def test_unsigned_request_is_rejected_but_scylla_endpoints_are_open(auth_sim):
    status, answer = post(
        "127.0.0.1",
        auth_sim.port,
        {
            "Host": f"127.0.0.1:{auth_sim.port}",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
        },
        b"{}",
    )
    assert status == 400
    assert answer["__type"].endswith("#MissingAuthenticationTokenException")
    conn = http.client.HTTPConnection("127.0.0.1", auth_sim.port, timeout=10)
    conn.request("GET", "/localnodes")
    assert conn.getresponse().status == 200
    conn.close()
