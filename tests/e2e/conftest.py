"""Fixtures for the end-to-end tests (helpers live in `harness.stack`).

Every process is started on free ports, owned by the test that started it and stopped by PID in
a finalizer, also when the test fails. Conditions are polled with `eventually`, never slept on.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from harness.stack import Stack  # noqa: E402
from harness.util import ROOT, target_dir  # noqa: E402


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.teardown()


@pytest.fixture(scope="session")
def affinity_oracle():
    """The routing core's own prediction (filter/examples/affinity_oracle.rs), built natively."""
    binary = target_dir() / "release" / "examples" / "affinity_oracle"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "alternator-filter", "--example", "affinity_oracle"],
                       cwd=ROOT, check=True, timeout=900)

    def predict(snapshot: dict, mode: str, tables: dict, requests) -> list:
        """First node (`ip`) of each `(operation, body_text)`'s affinity plan, or None."""
        path = pathlib.Path(tempfile.mkstemp(suffix=".json")[1])
        try:
            path.write_text(json.dumps(snapshot))
            lines = "".join(f"{op} {body}\n" for op, body in requests)
            out = subprocess.run([str(binary), str(path), mode] + [f"{t}={k}" for t, k in tables.items()],
                                 input=lines, capture_output=True, text=True, check=True, timeout=60)
        finally:
            path.unlink()
        return [None if line == "-" else line.rsplit(":", 1)[0] for line in out.stdout.splitlines()]

    return predict
