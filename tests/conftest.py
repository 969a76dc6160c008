"""Fixtures shared by every Python test under tests/ (helpers live in the `harness` package,
installed into the venv by `make venv`).

Every process is started on free ports, owned by the test that started it and stopped by PID in
a finalizer, also when the test fails. Conditions are polled with `eventually`, never slept on.
"""

import pytest

from harness.stack import Stack


@pytest.fixture
def stack(tmp_path):
    """A sim + discovery agent + Envoy stack the test builds; torn down in reverse order."""
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.teardown()
