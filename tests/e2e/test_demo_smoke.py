"""`make demo` in short: the demo runs end to end, cleans up, and its summary holds up.

Runs `demo/run.py` as a user would (a child process, no terminal) with a short read phase and
checks its machine-readable summary: no failed request, every node served, the stopped node
served nothing while it was down and took traffic again after it came back.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEMO = ROOT / "demo" / "run.py"

# A bound for a hung run, not a speed assertion: the demo normally ends well within it.
HANG_GUARD_S = 300


def test_demo_runs_and_survives_a_node_outage(tmp_path):
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--duration", "12", "--no-color", "--json-summary", str(summary_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ),
        cwd=ROOT,
    )
    try:
        output, _ = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            # The demo stops its own children on SIGTERM; escalate only if it does not exit.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "PASS: every request succeeded" in text, text
    for child in ("envoy", "discovery agent", "alternator-sim"):
        assert f"stopped {child} (pid " in text, text

    summary = json.loads(summary_path.read_text())
    assert summary["errors"] == 0, summary
    ops = summary["operations"]
    assert ops["PutItem"]["ok"] == 1000, ops
    assert ops["GetItem"]["ok"] > 0 and ops["GetItem"]["errors"] == 0, ops

    nodes = summary["nodes"]
    victim = summary["stopped_node"]
    assert set(nodes) == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}, nodes
    assert victim in nodes
    for address, n in nodes.items():
        before, during, after = n["periods"]
        assert n["writes"] > 0 and before > 0 and after > 0, (address, n)
        if address != victim:
            assert during > 0, (address, n)
    # The demo marks the outage once the sim has closed the node: it served nothing while down.
    assert nodes[victim]["periods"][1] == 0, nodes
