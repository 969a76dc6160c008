"""Fixtures of the end-to-end tests beyond the shared `stack` (tests/conftest.py)."""

import json
import pathlib
import subprocess
import tempfile

import pytest

from harness.util import ROOT, target_dir


@pytest.fixture(scope="session")
def affinity_oracle():
    """The routing core's own prediction (routing/examples/affinity_oracle.rs), built natively."""
    binary = target_dir() / "release" / "examples" / "affinity_oracle"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", "alternator-routing", "--example", "affinity_oracle"],
            cwd=ROOT,
            check=True,
            timeout=900,
        )

    def predict(snapshot: dict, mode: str, tables: dict, requests) -> list:
        """First node (`ip`) of each `(operation, body_text)`'s affinity plan, or None."""
        path = pathlib.Path(tempfile.mkstemp(suffix=".json")[1])
        try:
            path.write_text(json.dumps(snapshot))
            lines = "".join(f"{op} {body}\n" for op, body in requests)
            out = subprocess.run(
                [str(binary), str(path), mode] + [f"{t}={k}" for t, k in tables.items()],
                input=lines,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
        finally:
            path.unlink()
        return [None if line == "-" else line.rsplit(":", 1)[0] for line in out.stdout.splitlines()]

    return predict
