"""Fixtures shared by every Python test under tests/ (helpers live in `harness`).

Every process is started on free ports, owned by the test that started it and stopped by PID in
a finalizer, also when the test fails. Conditions are polled with `eventually`, never slept on.
"""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness.stack import Stack  # noqa: E402


@pytest.fixture
def stack(tmp_path):
    """A sim + discovery agent + Envoy stack the test builds; torn down in reverse order."""
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.teardown()
