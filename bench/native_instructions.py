#!/usr/bin/env python3
"""Where the native build's per-request cost goes, in instructions rather than time.

Timing differences of a few microseconds drown in the noise of a shared 2-core machine, so
this runs Envoy (one worker) under valgrind's callgrind, which counts the instructions Envoy
executes in user space whatever else the machine does, and sends it the same GetItem requests
one at a time in each of these setups:

  plain     the shipped envoy/envoy.yaml without the filter (EDS + override_host, no header)
  header    the same, the client sending a 3-entry x-alternator-endpoints itself, so Envoy's
            override_host policy parses a routing header with no module involved
  native    envoy/envoy-native.yaml: the native module, round robin

Each setup runs twice, with `--small` and `--large` requests; the difference divided by the
difference in requests is the per-request cost, without Envoy's start-up and the first polls.
EDS refreshes and the filter's ticks are slowed down to once a minute so they do not add
time-proportional work. Needs valgrind (Debian `valgrind`); a run takes a few minutes.

    .venv/bin/python bench/native_instructions.py
"""

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import envoy as envoy_package

from harness.envoy import Envoy, envoy_env, unique_base_id
from harness.stack import RawDynamo, Stack
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
# Ticks and EDS refreshes once a minute: what remains is per-request work.
PLUGIN = {"fallbacks": 2, "agent": {"tick_ms": 60000, "lease_ms": 180000}}
SETUPS = ("plain", "header", "native")


def instructions(setup: str, requests: int, workdir: pathlib.Path) -> int:
    """Instructions Envoy executed in user space from start to exit, serving `requests`."""
    stack = Stack(workdir)
    try:
        sim = stack.sim(NODES)
        agent = stack.agent(sim)
        agent.wait_active([n[0] for n in NODES])
        build = "native" if setup == "native" else "wasm"
        # Rendered by the harness as the tests run it, then started here under callgrind.
        rendered = Envoy(
            workdir / "render",
            agent.port,
            PLUGIN,
            build=build,
            with_filter=setup == "native",
            extra_values={"EDS_REFRESH_DELAY": "60s"},
            log_level="warn",
            component_log_level=None,
        )
        rendered.stop()
        admin = workdir / "admin-address"
        out = workdir / "callgrind.out"
        executable = pathlib.Path(envoy_package.__file__).parent / "_bin" / "envoy"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(executable)]
            + ["-c", str(rendered.config_path), "--concurrency", "1", "--base-id", str(unique_base_id())]
            + ["--admin-address-path", str(admin), "-l", "warn"],
            env=envoy_env(build) or dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "valgrind.log", "w"),
            start_new_session=True,
        )

        def ready():
            text = admin.read_text().strip() if admin.exists() else ""
            if not text:
                return False
            with urllib.request.urlopen(f"http://{text}/ready", timeout=5) as r:
                return r.read().strip() == b"LIVE"

        try:
            eventually(ready, timeout=300, message=f"envoy under callgrind ready ({workdir / 'valgrind.log'})")
            # Membership and the filter's first snapshot arrive at start; both are start-up cost.
            time.sleep(8)
            client = RawDynamo(f"http://127.0.0.1:{rendered.listen_port}")
            header = {"x-alternator-endpoints": ",".join(f"{a}:{sim.port}" for a, _, _ in NODES)}
            for i in range(requests):
                body = {"TableName": "instructions", "Key": {"pk": {"S": f"k{i}"}}}
                status, _ = client.call("GetItem", body, header if setup == "header" else None)
                if status not in (200, 400):  # 400: the table does not exist, the node answered
                    raise SystemExit(f"{setup}: request {i} answered {status}")
            client.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=300)
        for line in out.read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1])
        raise SystemExit(f"{setup}: no totals in {out}")
    finally:
        stack.teardown()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--large", type=int, default=1200)
    args = p.parse_args(argv)
    per_request = {}
    with tempfile.TemporaryDirectory(prefix="native-instructions-") as tmp:
        for setup in SETUPS:
            counts = [instructions(setup, n, pathlib.Path(tmp) / f"{setup}-{n}") for n in (args.small, args.large)]
            per_request[setup] = (counts[1] - counts[0]) / (args.large - args.small)
            print(f"{setup:7} {per_request[setup]:9,.0f} instructions per GetItem", flush=True)
    base = per_request["plain"]
    for setup in SETUPS[1:]:
        print(f"{setup:7} {per_request[setup] - base:+9,.0f} over plain ({per_request[setup] / base - 1:+.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
