"""Fixtures for alternator-sim's own tests: the release binary as a process, boto3 clients."""

import uuid

import pytest

from harness.sim import SimProcess
from simtest import NODES, client


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
