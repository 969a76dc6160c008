"""Fixtures for alternator-sim's own tests: the release binary as a process, boto3 clients."""
import pathlib
import sys
import uuid

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from harness.sim import SimProcess  # noqa: E402

NODES = [("127.0.0.1", "dc1", "rack1"), ("127.0.0.2", "dc1", "rack2"), ("127.0.0.3", "dc2", "rack1")]
# DynamoDB Local (the --backend test) accepts only letters and digits in access key ids.
CREDENTIALS = {"aws_access_key_id": "simtest", "aws_secret_access_key": "simtestsecret"}


def client(endpoint: str, attempts: int = 1, read_timeout: float = 10.0, **credentials):
    """A low-level DynamoDB client pointed at one node (one attempt, no retries, unless asked)."""
    creds = credentials or CREDENTIALS
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"},
                      connect_timeout=2, read_timeout=read_timeout),
        **creds,
    )


@pytest.fixture
def sim(tmp_path):
    """A fresh three-node sim (dc1: rack1, rack2; dc2: rack1) per test."""
    with SimProcess(NODES, log_path=tmp_path / "sim.log") as s:
        yield s


@pytest.fixture
def ddb(sim):
    return client(sim.endpoint("127.0.0.1"))


@pytest.fixture
def table_name():
    return "t_" + uuid.uuid4().hex[:12]
