"""Fixtures for the fault tests: a real sim + discovery agent + Envoy with the filter per test.

Processes are started on free ports, owned by the test that started them and stopped by PID in
a finalizer, also when the test fails. Conditions are polled with `eventually`, never slept on.
"""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from harness.stack import Stack  # noqa: E402


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.teardown()
