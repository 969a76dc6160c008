"""The paced phase of `make bench`: each configuration at a fixed offered rate, well below
saturation, so latency shows what a proxy adds to one request rather than how long requests
queue behind each other.

The saturated phase (wrk, 32 connections, the proxy at 100% of a core) measures throughput; its
p99 is queueing time, roughly inversely proportional to throughput, and cannot show a filter's
few tens of microseconds. Here `connections` h2load processes, each with one keep-alive
HTTP/1.1 connection and one request in flight, send `rate / connections` requests per second
each, so the proxy is mostly idle between requests and a request's latency is the
client → proxy → sim → proxy → client path itself.

Why h2load, and why one connection per process: h2load schedules requests on a timer
(`--rps`, fractional rates allowed) and writes every request's own duration to `--log-file`,
from which the percentiles here are exact (no histogram buckets); wrk's Lua `delay()` has
millisecond granularity and delays after each response instead of keeping a schedule. But the
connections of one h2load process share one timer phase: with 8 of them, requests leave in
bursts of 8 and the last of each burst queues behind the others (a p50 of ~370 µs against
~35 µs for the same rate on one connection, measured direct to the sim). Separate processes
start a few milliseconds apart, so their schedules have unrelated phases and requests meet only
by chance, as independent clients' requests do.

Limitations, reported rather than hidden: h2load measures from the moment it writes a request,
so if a response takes longer than the stream's period the next request waits and that wait is
not in its duration (coordinated omission); `late_share` is the share of responses that took
longer than their stream's period, each of which delayed the next request. h2load sends one
body per run, so a repetition sends a single key (`sdk_requests.body(operation, repetition)`),
with the saturated phase's headers and body shape.
"""

import pathlib
import re
import subprocess

import sdk_requests
from harness.latency import percentile

TOTALS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)


def run(
    url: str,
    operation: str,
    repetition: int,
    workdir: pathlib.Path,
    rate: float,
    seconds: float,
    warmup: float,
    connections: int,
    put_bytes: int,
) -> dict:
    """One paced run at `rate` requests/s in total; latencies in µs from h2load's request logs."""
    workdir.mkdir(parents=True, exist_ok=True)
    body_path = workdir / f"{operation}-{repetition}.json"
    body_path.write_text(sdk_requests.body(operation, repetition, put_bytes))
    header_args = []
    for name, value in sdk_requests.headers(operation).items():
        header_args += ["-H", f"{name}: {value}"]
    per_stream = rate / connections
    processes = []
    for i in range(connections):
        log_path = workdir / f"h2load-{i}.log"
        log_path.unlink(missing_ok=True)  # h2load appends
        cmd = [
            "h2load",
            "--h1",
            "-t",
            "1",
            "-c",
            "1",
            "--rps",
            f"{per_stream:g}",
            "-D",
            f"{round(seconds * 1000)}ms",
            "--warm-up-time",
            f"{round(warmup * 1000)}ms",
            "-d",
            str(body_path),
            "--log-file",
            str(log_path),
            *header_args,
            url + "/",
        ]
        processes.append((log_path, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    durations, non_2xx, failed = [], 0, 0
    for log_path, proc in processes:
        output, _ = proc.communicate(timeout=seconds + warmup + 60)
        totals = TOTALS.search(output)
        if proc.returncode != 0 or totals is None or not log_path.exists():
            raise SystemExit(f"h2load failed against {url} ({operation}):\n{output}")
        failed += int(totals.group(5))
        rows = [tuple(map(int, line.split("\t")[:3])) for line in log_path.read_text().splitlines()]
        log_path.unlink()
        for _start, status, duration in rows:
            if 200 <= status < 300:
                durations.append(duration)
            else:
                non_2xx += 1
    durations.sort()
    return {
        "offered_rps": rate,
        "connections": connections,
        "duration_s": seconds,
        "requests": len(durations),
        "rps": len(durations) / seconds,
        "p50_us": percentile(durations, 0.50),
        "p90_us": percentile(durations, 0.90),
        "p99_us": percentile(durations, 0.99),
        "p999_us": percentile(durations, 0.999),
        "max_us": float(durations[-1]) if durations else float("nan"),
        "mean_us": sum(durations) / len(durations) if durations else float("nan"),
        "late_share": (sum(d > 1e6 / per_stream for d in durations) / len(durations)) if durations else 0.0,
        "errors": {"non_2xx": non_2xx, "failed": failed},
    }
