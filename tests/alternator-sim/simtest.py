"""Shared by alternator-sim's pytest files (a module of its own, not conftest, so that test
modules never pick up another directory's conftest by name)."""

import boto3
from botocore.config import Config

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
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"}, connect_timeout=2, read_timeout=read_timeout
        ),
        **creds,
    )
