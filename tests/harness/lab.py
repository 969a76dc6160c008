"""The lab workload (`harness.workload`: boto3, 32 writer and 16 reader threads) with one
Alternator node hung part-way through, for the fault test (tests/faults/test_hung_node.py) and
the report (bench/hung_node.py).

A hung node accepts connections and never answers (the sim's `hang` control). The SDK's own
retries are off, so every failure recorded is one an application would see. Besides what the
application saw, a run keeps Envoy's access log: which node each request went to, its attempts,
response flags and how long Envoy held it.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time

from . import workload
from .latency import percentile
from .stack import Stack, wait_routing
from .util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack1")]
ADDRESSES = [n[0] for n in NODES]
VICTIM = "127.0.0.4"
READS = ("GetItem",)
WRITES = ("PutItem", "UpdateItem")

# envoy/envoy.yaml's placeholders for the single-item class and their defaults.
ITEM_TIMEOUT = "ITEM_TIMEOUT"
DEFAULT_ITEM_TIMEOUT_S = 1.0

_ACCESS = re.compile(
    r'^\[(?P<start>[^\]]+)\] "(?P<target>[^"]*)" (?P<status>\d+) (?P<flags>\S+) upstream=(?P<upstream>\S*) '
    r"candidates=(?P<candidates>\S*) attempts=(?P<attempts>\S*) bytes=\S+ (?P<duration>\d+)ms$"
)


@dataclasses.dataclass(frozen=True)
class Access:
    """One line of the shipped configuration's access log."""

    operation: str
    status: int
    flags: str
    upstream: str
    candidates: list[str]
    attempts: int | None
    duration_ms: int


def access_entries(text: str) -> list[Access]:
    out = []
    for line in text.splitlines():
        m = _ACCESS.match(line)
        if not m:
            continue
        attempts = m["attempts"]
        out.append(
            Access(
                operation=m["target"].rpartition(".")[2],
                status=int(m["status"]),
                flags=m["flags"],
                upstream=m["upstream"],
                candidates=[c for c in m["candidates"].split(",") if c and c != "-"],
                attempts=int(attempts) if attempts.isdigit() else None,
                duration_ms=int(m["duration"]),
            )
        )
    return out


def seconds(value: str) -> float:
    """An Envoy duration of the template ("1s", "0.25s") in seconds."""
    return float(value.removesuffix("s"))


@dataclasses.dataclass
class LabRun:
    """What one run saw: the application's outcomes (`recorder`, phases "before" and "hung")
    and Envoy's access log of the DynamoDB requests."""

    phase: str
    victim: str
    threads: int
    recorder: workload.Recorder
    access: list[Access]
    item_timeout_s: float

    def failed(self, operations, phases=("before", "hung")) -> int:
        errors = self.recorder.errors("operation", phases)
        return sum(errors.get(op, 0) for op in operations)

    def held_by_victim(self, operations) -> list[Access]:
        """Requests whose final attempt went to the hung node and timed out (`UT`)."""
        return [a for a in self.access if a.operation in operations and a.upstream == self.victim and "UT" in a.flags]

    def hedged_from_victim(self) -> list[Access]:
        """Requests that listed the hung node first and were answered by a later candidate."""
        return [
            a
            for a in self.access
            if a.candidates and a.candidates[0] == self.victim and a.upstream != self.victim and a.status == 200
        ]

    def longest_ms(self, operations) -> int:
        return max((a.duration_ms for a in self.access if a.operation in operations), default=0)

    def figures(self) -> dict:
        """Client-side latency of successful reads and writes while the node was hung, Envoy's
        own durations, and the failure counts."""
        by_op = self.recorder.by_operation(("hung",))
        out = {"phase": self.phase}
        for name, ops in (("reads", READS), ("writes", WRITES)):
            values = sorted(v for op in ops for v in by_op.get(op, []))
            envoy = sorted(a.duration_ms / 1000 for a in self.access if a.operation in ops)
            out[name] = {
                "ok": len(values),
                "failed": self.failed(ops, ("hung",)),
                "p50_s": percentile(values, 0.5),
                "p99_s": percentile(values, 0.99),
                "p999_s": percentile(values, 0.999),
                "max_s": values[-1] if values else float("nan"),
                "envoy_max_s": envoy[-1] if envoy else float("nan"),
            }
        out["held_by_hung_node"] = len(self.held_by_victim(WRITES + READS))
        out["hedged_reads"] = len(self.hedged_from_victim())
        out["errors"] = self.recorder.errors("kind", ("hung",))
        return out


def start(
    stack: Stack,
    plugin: dict | None = None,
    agent_kwargs: dict | None = None,
    envoy_values: dict | None = None,
    concurrency: int = 2,
    build: str | None = None,
):
    """sim (three nodes) + agent + Envoy with the shipped configuration of the filter `build`
    (`wasm` or `native`; default: harness.envoy.filter_build())."""
    sim = stack.sim(NODES)
    agent = stack.agent(sim, **(agent_kwargs or {}))
    agent.wait_active(ADDRESSES)
    envoy = stack.envoy(
        agent,
        plugin or {"fallbacks": 2},
        concurrency=concurrency,
        expect_nodes=3,
        extra_values=envoy_values,
        build=build,
    )
    wait_routing(envoy, 3)
    return sim, agent, envoy


def run(
    stack: Stack,
    phase: str,
    shape: workload.Shape | None = None,
    read_seconds: float = 8.0,
    hang: bool = True,
    **start_kwargs,
) -> LabRun:
    """The lab workload with the victim hung once a quarter of the phase is done.

    `phase` "writes": `shape.writers` threads PutItem `shape.items` items. `phase` "reads":
    the items are written first (no fault), then `shape.readers` threads read (one request in
    ten a conditional UpdateItem) for `read_seconds`."""
    shape = shape or workload.Shape()
    sim, _agent, envoy = start(stack, **start_kwargs)
    ddb = workload.client(envoy.url, shape.writers + shape.readers, sdk_attempts=1)
    recorder = workload.Recorder()
    stop = threading.Event()
    workload.create_table(ddb, shape.table)
    victim = f"{VICTIM}:{sim.port}"

    def hang_when(condition):
        eventually(condition, timeout=120, message=f"{phase} under way")
        if hang:
            sim.hang_node(VICTIM)
        recorder.phase = "hung"

    if phase == "writes":
        recorder.phase = "before"
        writer = threading.Thread(target=workload.write_items, args=(ddb, shape, recorder, stop), daemon=True)
        writer.start()
        hang_when(lambda: recorder.ok + recorder.error_count() >= shape.items // 4)
        writer.join()
        threads = shape.writers
    elif phase == "reads":
        workload.write_items(ddb, shape, recorder, stop)
        assert recorder.error_count() == 0, recorder.error_samples
        recorder.phase = "before"
        start_ok = recorder.ok
        readers = workload.start_readers(ddb, shape, recorder, stop, deadline=time.monotonic() + read_seconds)
        hang_when(lambda: recorder.ok - start_ok >= 500 or not any(t.is_alive() for t in readers))
        for t in readers:
            t.join()
        threads = shape.readers
    else:
        raise ValueError(f"phase must be writes or reads, got {phase!r}")

    sent = recorder.ok + recorder.error_count()

    def logged():
        return sum(a.operation in READS + WRITES for a in access_entries(envoy.access_log())) >= sent

    eventually(logged, timeout=60, message="access log flushed")
    item_timeout = seconds(str(envoy.values.get(ITEM_TIMEOUT, f"{DEFAULT_ITEM_TIMEOUT_S}s")))
    return LabRun(phase, victim, threads, recorder, access_entries(envoy.access_log()), item_timeout)
