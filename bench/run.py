#!/usr/bin/env python3
"""`make bench`: what the alternator-mesh filter costs over a plain proxy, side by side.

One run, one machine, one alternator-sim process (built-in engine) hosting every node, one load
generator (wrk: fixed connections, a warm-up per configuration, repetitions interleaved across
configurations in a shuffled order, medians reported):

  1   direct to one sim node (no proxy: what a client-side library gets)
  2   Envoy, built-in round robin over a static 3-node cluster, no wasm (the floor for a proxy)
  2w  configuration 2 with the PutItem workload of configuration 4 (the like-for-like base of 4)
  2e  the shipped envoy/envoy.yaml without the filter (EDS + override_host falling back to round
      robin): 3 against 2e isolates the wasm filter from the cluster machinery
  2m  the shipped envoy/envoy.yaml with the smallest proxy-wasm module (bench/minimal-filter: raw
      ABI exports, only context create and request headers): 2m against 2e is the floor of any
      V8 filter
  2n  the shipped envoy/envoy.yaml with a do-nothing proxy-wasm filter (bench/noop-filter, the
      Rust SDK, which exports every callback): 2n against 2m is what the SDK's callbacks cost,
      3 against 2n alternator-filter's own work
  3   Envoy + filter, round robin, the shipped envoy/envoy.yaml (the headers-only path)
  3b  with --ab OTHER.wasm: configuration 3 running that build, interleaved with 3
  4   Envoy + filter, key affinity ANY_WRITE, 1 KB PutItem bodies (the body path)
  3n  configuration 3 with the native dynamic-module build (envoy/envoy-native.yaml)
  4n  configuration 4 with the native dynamic-module build
  5   configuration 3 with 100 nodes in the snapshot (and in EDS)
  6   nginx (Debian) round robin over the same 3 nodes, when it is installed

Each configuration is measured twice per repetition: saturated (wrk's closed loop, for
throughput and CPU per request) and paced (h2load at a fixed rate well below saturation, for the
latency a proxy adds to one request; see paced.py). Every Envoy runs with `-l warn`.

It also records Envoy's RSS with and without the filter, the proxies' CPU time per request, the
.wasm size, an application-level comparison (boto3 through Envoy + filter versus ScyllaDB's
`alternator-client` going direct, 32 threads, a fixed number of requests) and the routing
crate's criterion numbers. Output: a table on stdout, `target/bench/report.json`,
`target/bench/report.svg`. A report only: nothing here passes or fails on a timing.

Every address this script sends load to is in 127.0.0.0/8.
"""

import argparse
import ipaddress
import json
import os
import pathlib
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

# bench/'s own modules are siblings of this script; `harness` is installed into the venv.
import chart
import criterion
import paced
import profile_filter
import sdk_requests
from harness.agent import Agent
from harness.envoy import (
    NATIVE_MODULE_NAME,
    Envoy,
    envoy_binary,
    native_module_dir,
    render_template,
    unique_base_id,
    wasm_path,
)
from harness.sim import SimProcess
from harness.stack import Stack, metric, wait_routing
from harness.util import OwnedProcess, eventually, free_port, target_dir

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent

TABLE = "bench"
KEYS = 64
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def require_loopback(url: str) -> str:
    """Refuse to send load anywhere but this machine's loopback range."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise SystemExit(f"refusing to benchmark {url}: only 127.0.0.0/8 is a permitted target")
    return url


# --- processes --------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its direct children (nginx's workers)."""
    pids = [pid]
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    ticks = 0
    for p in pids:
        try:
            fields = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class LocalProxy:
    """A reference proxy this run started on a free loopback port (stopped by PID)."""

    name = "proxy"

    def __init__(self):
        self.listen_port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def answers(self) -> bool:
        raise NotImplementedError

    def wait_ready(self):
        def ready():
            if not self.process.alive():
                raise AssertionError(f"{self.name} exited:\n{self.process.log_tail()}")
            return self.answers()

        eventually(ready, timeout=30, message=f"{self.name} ready")
        return self

    def stop(self):
        self.process.stop()


class PlainEnvoy(LocalProxy):
    """Configuration 2: Envoy from bench/configs/envoy-plain.yaml, no wasm."""

    name = "envoy-plain"

    def __init__(self, workdir: pathlib.Path, endpoints, concurrency: int):
        super().__init__()
        workdir.mkdir(parents=True, exist_ok=True)
        lines = "\n".join(
            f"        - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}"
            for host, port in endpoints
        )
        config = render_template(
            (BENCH / "configs" / "envoy-plain.yaml").read_text(),
            {
                "LISTEN_PORT": self.listen_port,
                "ACCESS_LOG_PATH": os.devnull,
                "ENDPOINTS": lines,
            },
        )
        self.config_path = workdir / "envoy-plain.yaml"
        self.config_path.write_text(config)
        self.admin_path = workdir / "admin-address"
        self.process = OwnedProcess(
            [
                envoy_binary(),
                "-c",
                self.config_path,
                "--base-id",
                unique_base_id(),
                "--concurrency",
                concurrency,
                "--admin-address-path",
                self.admin_path,
                "-l",
                "warn",
            ],
            self.name,
            workdir / "envoy.log",
        )

    def answers(self) -> bool:
        text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
        if not text:
            return False
        with urllib.request.urlopen(f"http://{text}/ready", timeout=5) as r:
            return r.read().decode().strip() == "LIVE"


class Nginx(LocalProxy):
    """Configuration 6: nginx from bench/configs/nginx.conf."""

    name = "nginx"

    def __init__(self, workdir: pathlib.Path, endpoints):
        super().__init__()
        workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / sub).mkdir(exist_ok=True)
        servers = "\n".join(f"        server {h}:{p};" for h, p in endpoints)
        conf = render_template(
            (BENCH / "configs" / "nginx.conf").read_text(),
            {
                "WORKDIR": workdir,
                "LISTEN_PORT": self.listen_port,
                "ACCESS_LOG_PATH": os.devnull,
                "SERVERS": servers,
            },
        )
        self.config_path = workdir / "nginx.conf"
        self.config_path.write_text(conf)
        self.process = OwnedProcess(
            [shutil.which("nginx"), "-p", workdir, "-c", self.config_path], self.name, workdir / "nginx.log"
        )

    def answers(self) -> bool:
        return dynamo_call(self.url, "ListTables", {})[0] == 200


# --- DynamoDB over plain HTTP (the sim does not enforce SigV4 here) ---------------------------


def dynamo_call(url: str, operation: str, body: dict):
    req = urllib.request.Request(
        require_loopback(url) + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/x-amz-json-1.0", "x-amz-target": f"DynamoDB_20120810.{operation}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prepare_tables(url: str):
    """The `bench` and `app` tables, and the items GetItem reads."""
    for table in (TABLE, "app"):
        status, body = dynamo_call(
            url,
            "CreateTable",
            {
                "TableName": table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            },
        )
        if status != 200:
            raise SystemExit(f"CreateTable {table} on the sim: {status} {body}")
    for i in range(KEYS):
        status, body = dynamo_call(
            url,
            "PutItem",
            {
                "TableName": TABLE,
                "Item": {"pk": {"S": f"user-{i:06d}"}, "name": {"S": f"user {i}"}, "visits": {"N": str(i)}},
            },
        )
        if status != 200:
            raise SystemExit(f"PutItem on the sim: {status} {body}")


# --- load -------------------------------------------------------------------------------------


class Config:
    """One measured configuration: where its requests go and what it measured."""

    def __init__(self, cid, title, url, operation, proxy_pid=None, envoy=None, expect_policy=None):
        self.id = cid
        self.title = title
        self.url = require_loopback(url)
        self.operation = operation
        self.proxy_pid = proxy_pid
        self.envoy = envoy
        self.expect_policy = expect_policy
        self.request_file = None  # sdk_requests.write_request_file() output, read by workload.lua
        self.runs = []
        self.paced_runs = []


def run_wrk(config: Config, seconds: float, args) -> dict:
    """One saturated closed-loop run: wrk with `args.connections` connections for `seconds`."""
    cmd = [
        "wrk",
        "-t",
        str(args.wrk_threads),
        "-c",
        str(args.connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(BENCH / "workload.lua"),
        config.url + "/",
        "--",
        str(config.request_file),
    ]
    cpu_before = process_cpu_seconds(config.proxy_pid) if config.proxy_pid else None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    cpu_after = process_cpu_seconds(config.proxy_pid) if config.proxy_pid else None
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed for configuration {config.id}:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line.removeprefix("BENCH-JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if cpu_before is not None and result["requests"]:
        result["proxy_cpu_us_per_request"] = (cpu_after - cpu_before) * 1e6 / result["requests"]
    return result


def run_paced(config: Config, repetition: int, workdir: pathlib.Path, args) -> dict:
    """One paced run (h2load at `args.paced_rate` req/s), with the proxy's CPU per request."""
    cpu_before = process_cpu_seconds(config.proxy_pid) if config.proxy_pid else None
    result = paced.run(
        config.url,
        config.operation,
        repetition % KEYS,
        workdir / "paced",
        args.paced_rate,
        args.paced_duration,
        args.paced_warmup,
        args.paced_connections,
        args.put_bytes,
    )
    if cpu_before is not None and result["requests"]:
        cpu = process_cpu_seconds(config.proxy_pid) - cpu_before
        # The CPU time also covers h2load's warm-up requests, which its log leaves out.
        sent = result["requests"] * (1 + args.paced_warmup / args.paced_duration)
        result["proxy_cpu_us_per_request"] = cpu * 1e6 / sent
    return result


def summarize(config: Config) -> dict:
    """Medians over the repetitions (with the spread), for both phases."""
    runs = config.runs
    med = lambda rs, key: statistics.median(r[key] for r in rs if key in r)  # noqa: E731
    out = {
        "id": config.id,
        "title": config.title,
        "operation": config.operation,
        "repetitions": len(runs),
        "rps": med(runs, "rps"),
        "p50_us": med(runs, "p50_us"),
        "p99_us": med(runs, "p99_us"),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "runs": runs,
    }
    if runs and "served_by" in runs[-1]:
        out["served_by"] = runs[-1]["served_by"]
    if any("proxy_cpu_us_per_request" in r for r in runs):
        out["proxy_cpu_us_per_request"] = med(runs, "proxy_cpu_us_per_request")
    prs = config.paced_runs
    if prs:
        out["paced"] = {
            "offered_rps": prs[0]["offered_rps"],
            "repetitions": len(prs),
            "rps": med(prs, "rps"),
            "p50_us": med(prs, "p50_us"),
            "p99_us": med(prs, "p99_us"),
            "p999_us": med(prs, "p999_us"),
            "late_share": med(prs, "late_share"),
            "p99_min_us": min(r["p99_us"] for r in prs),
            "p99_max_us": max(r["p99_us"] for r in prs),
            "errors": sum(r["errors"]["non_2xx"] + r["errors"]["failed"] for r in prs),
            "runs": prs,
        }
        if any("proxy_cpu_us_per_request" in r for r in prs):
            out["paced"]["proxy_cpu_us_per_request"] = med(prs, "proxy_cpu_us_per_request")
    return out


# --- the run ----------------------------------------------------------------------------------


def versions() -> dict:
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            text = (p.stdout + p.stderr).strip().splitlines()
            return text[0] if text else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    out = {"envoy": first_line([envoy_binary(), "--version"]).strip(), "wrk": first_line(["wrk", "--version"])}
    if shutil.which("nginx"):
        out["nginx"] = first_line(["nginx", "-v"])
    return out


def machine() -> dict:
    cpu = ""
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg()[0],
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per saturated repetition")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per configuration")
    p.add_argument(
        "--repetitions",
        type=int,
        default=5,
        help="measured repetitions of each phase, interleaved across configurations",
    )
    p.add_argument("--connections", type=int, default=32, help="wrk connections (fixed)")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads")
    p.add_argument("--sim-threads", type=int, default=1, help="alternator-sim worker threads")
    p.add_argument(
        "--paced-rate",
        type=float,
        default=2000.0,
        help="offered req/s of the paced (latency) phase, well below saturation",
    )
    p.add_argument("--paced-duration", type=float, default=3.0, help="seconds per paced repetition")
    p.add_argument(
        "--paced-warmup",
        type=float,
        default=0.5,
        help="h2load warm-up seconds before each paced repetition (not measured)",
    )
    p.add_argument(
        "--paced-connections",
        type=int,
        default=2,
        help="h2load processes of the paced phase, one connection each, "
        "each at paced-rate / connections (see paced.py)",
    )
    p.add_argument("--no-paced", action="store_true", help="skip the paced (fixed-rate latency) phase")
    p.add_argument("--put-bytes", type=int, default=1024, help="PutItem body size (configuration 4)")
    p.add_argument("--large-cluster", type=int, default=100, help="nodes of configuration 5")
    p.add_argument("--app-requests", type=int, default=3200, help="requests per app-level run")
    p.add_argument("--app-threads", type=int, default=32)
    p.add_argument(
        "--long",
        action="store_true",
        help="longer, steadier run: 15 s per repetition (paced: 10 s), full criterion sampling",
    )
    p.add_argument("--only", default="", help="comma-separated configuration ids (e.g. 2,3)")
    p.add_argument("--no-app", action="store_true", help="skip the application-level comparison")
    p.add_argument("--no-criterion", action="store_true", help="skip `cargo bench -p alternator-routing`")
    p.add_argument("--no-profile", action="store_true", help="skip the wasmtime profile of the filter")
    p.add_argument("--profile-requests", type=int, default=500)
    p.add_argument("--no-nginx", action="store_true", help="skip configuration 6")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "target" / "bench")
    p.add_argument(
        "--wasm", type=pathlib.Path, help="filter .wasm to measure (default: the release build), for A/B runs"
    )
    p.add_argument(
        "--ab",
        type=pathlib.Path,
        help="another filter .wasm: adds configuration 3b (3 with that build), interleaved with 3 in the same run",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep rendered configs and logs")
    p.add_argument("--seed", type=int, default=1, help="seed of the interleaving order")
    args = p.parse_args(argv)
    if args.long:
        args.duration, args.warmup, args.paced_duration = 15.0, 5.0, 10.0
    if args.paced_rate <= 0 or args.paced_connections < 1 or args.paced_duration <= 0:
        p.error("--paced-rate and --paced-duration must be positive, --paced-connections at least 1")
    if not 3 <= args.large_cluster <= 254:
        p.error("--large-cluster must be 3-254 (the nodes are 127.0.1.1-127.0.1.N)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    wanted = lambda cid: not only or cid in only  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    tools = {"wrk": "wrk"} if args.no_paced else {"wrk": "wrk", "h2load": "nghttp2-client"}
    for tool, package in tools.items():
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed: `apt-get install -y {package}` (make bench does)")
    nginx_reason = None
    if args.no_nginx:
        nginx_reason = "skipped (--no-nginx)"
    elif not shutil.which("nginx"):
        nginx_reason = "nginx is not installed (apt-get unavailable or the install failed)"

    wasm = args.wasm.resolve() if args.wasm else wasm_path()
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "versions": versions(),
        "settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
        "wasm_size_bytes": wasm.stat().st_size,
        "wasm_path": str(wasm.relative_to(ROOT)) if wasm.is_relative_to(ROOT) else wasm.name,
    }
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="alternator-bench-"))
    stack = Stack(workdir)
    try:
        report.update(measure(args, wanted, nginx_reason, workdir, stack))
    finally:
        for thing, exc in stack.stop_all():
            if exc is not None:
                print(f"warning: stopping {thing!r}: {exc}", file=sys.stderr)
        if args.keep_workdir:
            print(f"work directory (configs, logs) kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if not args.no_profile:
        print("filter profile: wasmtime host, instructions and host calls per request", flush=True)
        try:
            report["profile"] = profile_filter.profile(requests=args.profile_requests, wasm=wasm, noop=noop_wasm())
        except Exception as exc:  # noqa: BLE001 - a report section, not a reason to lose the rest
            report["profile"] = {"error": repr(exc)}
    if not args.no_criterion:
        report["criterion"] = criterion.run(quick=not args.long)
    report["machine"]["loadavg_at_end"] = os.getloadavg()[0]

    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.svg").write_text(chart.render(report))
    print(format_table(report))
    print(f"\nwrote {args.out / 'report.json'} and {args.out / 'report.svg'}")
    return 0


def measure(args, wanted, nginx_reason, workdir: pathlib.Path, stack: Stack) -> dict:
    total = args.large_cluster
    nodes = [(f"127.0.1.{i + 1}", "dc1" if i < 3 else "dc2", f"rack{i % 3 + 1}") for i in range(total)]
    (workdir / "sim").mkdir(parents=True, exist_ok=True)
    sim = SimProcess(
        nodes, log_path=workdir / "sim" / "sim.log", extra_args=["--worker-threads", str(args.sim_threads)]
    )
    stack.adopt(sim)
    three = [(n[0], sim.port) for n in nodes[:3]]
    direct = f"http://{three[0][0]}:{sim.port}"
    prepare_tables(direct)
    sim_pid = sim.pid

    configs = []
    plain = None
    if wanted("1"):
        configs.append(Config("1", "direct to one sim node", direct, "GetItem"))
    if wanted("2") or wanted("2w"):
        plain = PlainEnvoy(workdir / "envoy-plain", three, args.envoy_concurrency)
        stack.adopt(plain)
        plain.wait_ready()
        if wanted("2"):
            configs.append(Config("2", "Envoy round robin, no wasm", plain.url, "GetItem", proxy_pid=plain.process.pid))
        if wanted("2w"):
            configs.append(
                Config(
                    "2w", "Envoy round robin, no wasm, PutItem 1 KB", plain.url, "PutItem", proxy_pid=plain.process.pid
                )
            )

    agent3 = agent_large = None
    seeds = [n[0] for n in nodes[:3]]
    if any(wanted(cid) for cid in ("2e", "2m", "2n", "3", "3b", "4", "3n", "4n")):
        agent3 = Agent(
            workdir / "agent3",
            seeds,
            sim.port,
            datacenter="dc1",
            active_interval="1s",
            idle_interval="5s",
            probe_period="5s",
        )
        stack.adopt(agent3)
        agent3.wait_ready()
        agent3.wait_active(seeds)
    filter_envoys = {}

    def envoy(
        cid, agent, plugin_config=None, nodes=3, wasm=None, with_filter=True, alternator_filter=True, build="wasm"
    ):
        values = envoy_values(args)
        if wasm is not None:
            values["WASM_PATH"] = str(wasm)
        # The same log level as configuration 2's Envoy: no wasm debug logging in the measurement.
        e = Envoy(
            workdir / f"envoy{cid}",
            agent.port,
            plugin_config or {},
            concurrency=args.envoy_concurrency,
            extra_values=values,
            with_filter=with_filter,
            log_level="warn",
            component_log_level=None,
            build=build,
        )
        stack.adopt(e)
        e.wait_ready()
        if with_filter and alternator_filter:
            wait_routing(e, nodes, timeout=60)
        else:
            eventually(
                lambda: len(e.healthy_members()) == nodes, timeout=60, message=f"EDS gives envoy {cid} {nodes} members"
            )
        return e

    if wanted("2e"):
        e = envoy("2e", agent3, with_filter=False)
        configs.append(
            Config("2e", "shipped config, no filter (EDS + override_host)", e.url, "GetItem", proxy_pid=e.process.pid)
        )
    # The two control modules: the floor of any V8 filter, and the Rust SDK's do-nothing filter.
    for cid, crate, title in (
        ("2m", "minimal-filter", "shipped config, minimal raw-ABI wasm module"),
        ("2n", "noop-filter", "shipped config, a do-nothing SDK wasm filter"),
    ):
        if not wanted(cid):
            continue
        module = bench_wasm("alternator_bench_" + crate.replace("-", "_"))
        if module is None:
            print(f"configuration {cid} skipped: bench/{crate} is not built (make bench builds it)")
            continue
        e = envoy(cid, agent3, wasm=module, alternator_filter=False)
        configs.append(Config(cid, title, e.url, "GetItem", proxy_pid=e.process.pid))
    any_write = {"affinity": {"mode": "any_write", "tables": {TABLE: "pk"}}}

    def filter_config(cid, title, operation, policy, plugin_config=None, build="wasm", wasm=None):
        """A configuration measuring one of the filter's builds (the filter's counters prove the path)."""
        e = filter_envoys[cid] = envoy(cid, agent3, plugin_config, wasm=wasm, build=build)
        configs.append(Config(cid, title, e.url, operation, proxy_pid=e.process.pid, envoy=e, expect_policy=policy))

    if wanted("3"):
        filter_config("3", "Envoy + filter, round robin (shipped config)", "GetItem", "round_robin")
    if args.ab and wanted("3b"):
        filter_config("3b", f"configuration 3 with {args.ab.name}", "GetItem", "round_robin", wasm=args.ab.resolve())
    if wanted("4"):
        filter_config("4", "Envoy + filter, ANY_WRITE affinity, PutItem 1 KB", "PutItem", "affinity", any_write)
    native = native_module_dir() / NATIVE_MODULE_NAME
    if (wanted("3n") or wanted("4n")) and not native.exists():
        print(f"configurations 3n and 4n skipped: {native} is not built (make native builds it)")
    else:
        if wanted("3n"):
            filter_config(
                "3n", "native module, round robin (envoy-native.yaml)", "GetItem", "round_robin", build="native"
            )
        if wanted("4n"):
            filter_config(
                "4n", "native module, ANY_WRITE affinity, PutItem 1 KB", "PutItem", "affinity", any_write, "native"
            )
    if wanted("5"):
        agent_large = Agent(
            workdir / "agent-large",
            seeds,
            sim.port,
            datacenter="dc1",
            extra_args=["--extra-datacenters", "dc2"],
            active_interval="1s",
            idle_interval="5s",
            probe_period="5s",
        )
        stack.adopt(agent_large)
        agent_large.wait_ready()
        agent_large.wait_active([n[0] for n in nodes])
        e = filter_envoys["5"] = envoy("5", agent_large, nodes=total)
        configs.append(
            Config(
                "5",
                f"Envoy + filter, round robin, {total} nodes",
                e.url,
                "GetItem",
                proxy_pid=e.process.pid,
                envoy=e,
                expect_policy="round_robin",
            )
        )
    nginx = None
    if wanted("6") and nginx_reason is None:
        nginx = Nginx(workdir / "nginx", three)
        stack.adopt(nginx)
        nginx.wait_ready()
        configs.append(Config("6", "nginx round robin", nginx.url, "GetItem", proxy_pid=nginx.process.pid))

    # Every endpoint answers both request kinds before anything is timed.
    for c in configs:
        for op, body in (
            ("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "user-000001"}}}),
            ("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "user-000001"}}}),
        ):
            status, answer = dynamo_call(c.url, op, body)
            if status != 200:
                raise SystemExit(f"configuration {c.id}: {op} answered {status}: {answer}")

    rss_idle = {c.id: rss_kib(c.proxy_pid) for c in configs if c.proxy_pid}
    request_files = {
        op: sdk_requests.write_request_file(workdir / f"requests-{op}.txt", op, KEYS, args.put_bytes)
        for op in {c.operation for c in configs}
    }
    for c in configs:
        c.request_file = request_files[c.operation]

    print(f"warm-up: {args.warmup:g} s per configuration", flush=True)
    for c in configs:
        run_wrk(c, args.warmup, args)
    routed_before = {
        c.id: metric(c.envoy, "alternator_routed_total", policy=c.expect_policy)
        for c in configs
        if c.envoy and c.expect_policy
    }
    sim_cpu_before = process_cpu_seconds(sim_pid)
    sim_requests = 0
    order = random.Random(args.seed)
    for rep in range(args.repetitions):
        round_order = list(configs)
        order.shuffle(round_order)
        for c in round_order:
            before = sim.totals()
            r = run_wrk(c, args.duration, args)
            r["served_by"] = spread(before, sim.totals())
            c.runs.append(r)
            sim_requests += r["requests"]
            print(
                f"  rep {rep + 1}/{args.repetitions} config {c.id:>2}: {r['rps']:8.0f} req/s  "
                f"p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms"
                + (f"  errors {sum(r['errors'].values())}" if sum(r["errors"].values()) else ""),
                flush=True,
            )
        if args.no_paced:
            continue
        order.shuffle(round_order)
        for c in round_order:
            r = run_paced(c, rep, workdir, args)
            c.paced_runs.append(r)
            errors = r["errors"]["non_2xx"] + r["errors"]["failed"]
            print(
                f"  rep {rep + 1}/{args.repetitions} config {c.id:>2} at {args.paced_rate:g} req/s: "
                f"{r['rps']:6.0f} req/s  p50 {r['p50_us']:5.0f} µs  p99 {r['p99_us']:6.0f} µs  "
                f"p99.9 {r['p999_us']:6.0f} µs" + (f"  errors {errors}" if errors else ""),
                flush=True,
            )
    sim_cpu = process_cpu_seconds(sim_pid) - sim_cpu_before

    results = [summarize(c) for c in configs]
    # The filter's own counters prove the measured path was the one named.
    for c, s in zip(configs, results, strict=True):
        if c.envoy and c.expect_policy:
            routed = metric(c.envoy, "alternator_routed_total", policy=c.expect_policy)
            s["filter_routed"] = {
                "policy": c.expect_policy,
                "count": routed - routed_before[c.id],
                "requests": sum(r["requests"] for r in c.runs),
            }
            if s["filter_routed"]["count"] < s["filter_routed"]["requests"]:
                print(
                    f"warning: configuration {c.id}: the filter routed only "
                    f"{s['filter_routed']['count']} of {s['filter_routed']['requests']} requests "
                    f"by {c.expect_policy}: the measured path is not the one named",
                    flush=True,
                )
    rss = {c.id: {"idle_kib": rss_idle[c.id], "after_load_kib": rss_kib(c.proxy_pid)} for c in configs if c.proxy_pid}
    out = {
        "configurations": results,
        "skipped": ({"6": nginx_reason} if nginx_reason and wanted("6") else {}),
        "rss": rss,
        "sim_cpu_us_per_request": sim_cpu * 1e6 / sim_requests if sim_requests else None,
        "ratios": ratios(results),
    }
    out["goals"] = goals(out["ratios"])
    if not args.no_app and "3" in filter_envoys:
        out["application"] = application(args, filter_envoys["3"].url, seeds, sim.port, sim)
    return out


def bench_wasm(name: str) -> pathlib.Path | None:
    """A bench-only module (bench/noop-filter, bench/minimal-filter) built by `make bench-noop`
    into the same target directory as everything else."""
    path = target_dir() / "wasm32-wasip1" / "release" / f"{name}.wasm"
    return path if path.exists() else None


def noop_wasm() -> pathlib.Path | None:
    """bench/noop-filter's module (the Rust SDK's do-nothing filter)."""
    return bench_wasm("alternator_bench_noop_filter")


def envoy_values(args) -> dict:
    """Placeholders of envoy/envoy.yaml that the benchmark sets beyond the harness defaults."""
    # The shipped REST EDS refresh (the test harness polls twice as often to keep tests quick).
    values = {"ACCESS_LOG_PATH": os.devnull, "EDS_REFRESH_DELAY": "1s"}
    if args.wasm:
        values["WASM_PATH"] = str(args.wasm.resolve())
    return values


def ratios(results) -> dict:
    """Configuration a over configuration b: throughput ratio and added latency and CPU, from the
    saturated phase and (`paced`) from the fixed-rate phase."""
    by = {r["id"]: r for r in results}
    out = {}

    def pair(name, a, b, note):
        if a in by and b in by:
            out[name] = {
                "throughput": by[a]["rps"] / by[b]["rps"],
                "added_p50_us": by[a]["p50_us"] - by[b]["p50_us"],
                "added_p99_us": by[a]["p99_us"] - by[b]["p99_us"],
                "note": note,
            }
            if "proxy_cpu_us_per_request" in by[a] and "proxy_cpu_us_per_request" in by[b]:
                out[name]["added_proxy_cpu_us_per_request"] = (
                    by[a]["proxy_cpu_us_per_request"] - by[b]["proxy_cpu_us_per_request"]
                )
            pa, pb = by[a].get("paced"), by[b].get("paced")
            if pa and pb:
                out[name]["paced"] = {
                    "offered_rps": pa["offered_rps"],
                    "added_p50_us": pa["p50_us"] - pb["p50_us"],
                    "added_p99_us": pa["p99_us"] - pb["p99_us"],
                    "added_p999_us": pa["p999_us"] - pb["p999_us"],
                    # How far either side's p99 moved between repetitions: a difference
                    # smaller than this is not a measurement.
                    "p99_spread_us": max(pa["p99_max_us"] - pa["p99_min_us"], pb["p99_max_us"] - pb["p99_min_us"]),
                }

    pair("3/2", "3", "2", "filter, headers-only path, over plain Envoy (GetItem)")
    pair("3/2e", "3", "2e", "the wasm filter alone: shipped config with and without it (GetItem)")
    pair("2n/2e", "2n", "2e", "the fixed price of any Rust proxy-wasm filter (GetItem)")
    pair("2m/2e", "2m", "2e", "the floor of any V8 filter: the minimal raw-ABI module (GetItem)")
    pair("2n/2m", "2n", "2m", "the Rust SDK's full set of callbacks over the minimal module (GetItem)")
    pair("3/2n", "3", "2n", "alternator-filter's own work over a do-nothing filter (GetItem)")
    pair("4/2", "4", "2w", "filter, ANY_WRITE body path, over plain Envoy (both PutItem 1 KB)")
    pair("3b/3", "3b", "3", "the --ab filter build over the default one (GetItem)")
    pair("3n/2e", "3n", "2e", "the native module alone: shipped config with and without it (GetItem)")
    pair("3n/3", "3n", "3", "the native build over the proxy-wasm build, round robin (GetItem)")
    pair("4n/2", "4n", "2w", "native module, ANY_WRITE body path, over plain Envoy (both PutItem 1 KB)")
    pair("4n/4", "4n", "4", "the native build over the proxy-wasm build, ANY_WRITE (PutItem 1 KB)")
    pair("5/2", "5", "2", "filter with 100 nodes over plain Envoy with 3 (GetItem)")
    pair("5/3", "5", "3", "100 nodes over 3 nodes, both with the filter (GetItem)")
    pair("6/2", "6", "2", "nginx over plain Envoy (GetItem)")
    pair("2/1", "2", "1", "plain Envoy over going direct (GetItem)")
    return out


# The project's targets (issue "make bench"), shown beside the measurement; never enforced.
# (ratio, phase, field, comparison, target, text); the added p99 is judged at the paced rate,
# where it is the filter's latency rather than queueing (the saturated difference stays in the
# ratio lines). "{rate}" is the paced phase's offered rate.
GOALS = [
    ("3/2", "saturated", "throughput", ">=", 0.95, "configuration 3 at >= 95% of configuration 2"),
    ("3/2", "paced", "added_p99_us", "<=", 50.0, "configuration 3 adds <= 50 µs p99 over 2 at {rate} req/s"),
    ("4/2", "saturated", "throughput", ">=", 0.85, "configuration 4 at >= 85% of its plain-Envoy base"),
    ("5/3", "saturated", "throughput", ">=", 0.98, "100 nodes within 2% of 3 nodes"),
    ("3n/2e", "saturated", "throughput", ">=", 0.95, "native round robin at >= 95% of the shipped config, no filter"),
    ("4n/2", "saturated", "throughput", ">=", 0.90, "native ANY_WRITE at >= 90% of plain Envoy, same PutItem load"),
    ("3n/2e", "paced", "added_p50_us", "<=", 20.0, "native round robin adds <= 20 µs p50 at {rate} req/s"),
]


def goals(ratios_: dict) -> list:
    """Each goal whose ratio was measured, with the measured value and whether it was met."""
    out = []
    for ratio, phase, field, op, target, text in GOALS:
        measured = ratios_.get(ratio, {})
        if phase == "paced":
            measured = measured.get("paced", {})
        if field not in measured:
            continue
        value = measured[field]
        met = value >= target if op == ">=" else value <= target
        goal = {
            "goal": text.format(rate=f"{measured.get('offered_rps', 0):,.0f}"),
            "ratio": ratio,
            "phase": phase,
            "measured": value,
            "target": target,
            "met_on_this_run": met,
        }
        if "p99_spread_us" in measured:
            goal["conclusive"] = measured["p99_spread_us"] <= target
        out.append(goal)
    return out


def spread(before: dict, after: dict) -> dict:
    """How a run's requests landed on the sim's nodes: how many nodes, and the busiest share."""
    counts = {a: after.get(a, 0) - before.get(a, 0) for a in after}
    served = {a: n for a, n in counts.items() if n > 0}
    total = sum(served.values())
    return {
        "nodes": len(served),
        "requests": total,
        "max_share": max(served.values()) / total if total else 0.0,
        "min_share": min(served.values()) / total if total else 0.0,
    }


def application(args, envoy_url: str, seeds, port: int, sim: SimProcess) -> dict:
    """boto3 through Envoy + filter versus alternator-client direct: alternating, medians."""
    runs = {"boto3_via_envoy_filter": [], "alternator_client_direct": []}
    py = sys.executable
    base = [
        py,
        str(BENCH / "app.py"),
        "--table",
        "app",
        "--requests",
        str(args.app_requests),
        "--threads",
        str(args.app_threads),
    ]
    commands = {
        "boto3_via_envoy_filter": base + ["--endpoint", require_loopback(envoy_url)],
        "alternator_client_direct": base
        + ["--alternator-seeds", ",".join(seeds), "--alternator-port", str(port), "--datacenter", "dc1"],
    }
    for seed in seeds:
        require_loopback(f"http://{seed}:{port}")
    print(f"application level: {args.app_threads} threads, {args.app_requests} requests per run", flush=True)
    for rep in range(args.repetitions):
        for name, cmd in commands.items():
            before = sim.totals()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
            if p.returncode != 0 or line is None:
                return {"error": f"{name}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"}
            r = json.loads(line.removeprefix("BENCH-JSON "))
            r["served_by"] = spread(before, sim.totals())
            runs[name].append(r)
            print(
                f"  rep {rep + 1}/{args.repetitions} {name:26}: {r['rps']:7.0f} req/s  errors {r['errors']}", flush=True
            )
    out = {"threads": args.app_threads, "requests_per_run": args.app_requests}
    for name, rs in runs.items():
        out[name] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "runs": rs,
        }
    out["ratio_envoy_over_client"] = out["boto3_via_envoy_filter"]["rps"] / out["alternator_client_direct"]["rps"]
    return out


def format_table(report: dict) -> str:
    lines = []
    m = report["machine"]
    lines.append(
        f"alternator-mesh bench — {report['generated_at']}  {m['cpus']} CPUs ({m['cpu_model']}), "
        f"load {m['loadavg_at_start']:.1f} → {m.get('loadavg_at_end', 0):.1f}"
    )
    s = report["settings"]
    lines.append(
        f"wrk: {s['connections']} connections, {s['wrk_threads']} thread(s), "
        f"{s['repetitions']} x {s['duration']:g} s after {s['warmup']:g} s warm-up; "
        f"medians. Envoy --concurrency {s['envoy_concurrency']}, nginx 1 worker, "
        f"sim {s['sim_threads']} thread(s)."
    )
    if not s.get("no_paced"):
        lines.append(
            f"paced: h2load, {s['paced_connections']} connections (one process each) at "
            f"{s['paced_rate']:,.0f} req/s in total, {s['repetitions']} x {s['paced_duration']:g} s, "
            f"interleaved the same way; medians of exact per-request percentiles."
        )
    configs = report.get("configurations", [])
    cpu_text = lambda cpu: f"{cpu:.1f}" if cpu is not None else "-"  # noqa: E731
    lines.append("")
    lines.append("saturated (wrk closed loop: throughput; its latency is queueing)")
    lines.append(
        f"{'#':>3}  {'configuration':46} {'req/s':>7} {'min–max':>13} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'proxy CPU µs/req':>16} {'errors':>6} {'nodes':>5}"
    )
    for r in configs:
        lines.append(
            f"{r['id']:>3}  {r['title'][:46]:46} {r['rps']:7.0f} "
            f"{r['rps_min']:6.0f}–{r['rps_max']:<6.0f} {r['p50_us'] / 1000:7.2f} "
            f"{r['p99_us'] / 1000:7.2f} {cpu_text(r.get('proxy_cpu_us_per_request')):>16} "
            f"{r['errors']:>6} {r.get('served_by', {}).get('nodes', '-'):>5}"
        )
    for cid, reason in report.get("skipped", {}).items():
        lines.append(f"{cid:>3}  skipped: {reason}")
    if any("paced" in r for r in configs):
        lines.append("")
        lines.append(f"paced at {s['paced_rate']:,.0f} req/s (h2load: the latency a proxy adds to one request)")
        lines.append(
            f"{'#':>3}  {'configuration':46} {'req/s':>7} {'p50 µs':>7} {'p99 µs':>7} "
            f"{'p99.9 µs':>8} {'p99 min–max':>13} {'proxy CPU µs/req':>16} {'late':>5} {'errors':>6}"
        )
        for r in configs:
            q = r.get("paced")
            if q:
                lines.append(
                    f"{r['id']:>3}  {r['title'][:46]:46} {q['rps']:7.0f} {q['p50_us']:7.0f} "
                    f"{q['p99_us']:7.0f} {q['p999_us']:8.0f} "
                    f"{q['p99_min_us']:6.0f}–{q['p99_max_us']:<6.0f} "
                    f"{cpu_text(q.get('proxy_cpu_us_per_request')):>16} "
                    f"{q['late_share'] * 100:4.1f}% {q['errors']:>6}"
                )
    lines.append("")
    for name, q in report.get("ratios", {}).items():
        extra = ""
        if "added_proxy_cpu_us_per_request" in q:
            extra = f", proxy CPU {q['added_proxy_cpu_us_per_request']:+5.1f} µs/req"
        paced_text = ""
        if "paced" in q:
            pq = q["paced"]
            paced_text = (
                f"; added at {pq['offered_rps']:,.0f} req/s: p50 {pq['added_p50_us']:+4.0f} µs, "
                f"p99 {pq['added_p99_us']:+5.0f} µs, p99.9 {pq['added_p999_us']:+5.0f} µs"
            )
        lines.append(
            f"  {name:5} throughput {q['throughput'] * 100:6.1f}%, saturated p99 "
            f"{q['added_p99_us']:+7.0f} µs{extra}{paced_text}"
        )
        lines.append(f"        ({q['note']})")
    for g in report.get("goals", []):
        shown = f"{g['measured'] * 100:.1f}%" if g["target"] < 2 else f"{g['measured']:+.0f} µs"
        verdict = f"{'met' if g['met_on_this_run'] else 'not met'} on this run"
        if not g.get("conclusive", True):
            spread = report["ratios"][g["ratio"]]["paced"]["p99_spread_us"]
            verdict += f" (inconclusive: p99 moved {spread:,.0f} µs between repetitions)"
        lines.append(f"  goal: {g['goal']:62} measured {shown:>9}  {verdict}")
    lines.append("")
    rss = report.get("rss", {})
    if rss:
        parts = [
            f"{cid}: {v['idle_kib'] / 1024:.1f} MiB idle, {v['after_load_kib'] / 1024:.1f} MiB loaded"
            for cid, v in rss.items()
        ]
        lines.append("proxy RSS  " + "; ".join(parts))
    lines.append(f"filter .wasm {report['wasm_size_bytes']:,} bytes ({report['wasm_path']})")
    app = report.get("application")
    if app and "error" not in app:
        a, b = app["boto3_via_envoy_filter"], app["alternator_client_direct"]
        lines.append(
            f"application ({app['threads']} threads, {app['requests_per_run']} requests): "
            f"boto3 via Envoy+filter {a['rps']:.0f} req/s (p99 {a['p99_ms']:.1f} ms), "
            f"alternator-client direct {b['rps']:.0f} req/s (p99 {b['p99_ms']:.1f} ms), "
            f"ratio {app['ratio_envoy_over_client'] * 100:.0f}%; nodes used "
            f"{a['runs'][-1]['served_by']['nodes']} / {b['runs'][-1]['served_by']['nodes']}"
        )
    elif app:
        lines.append(f"application comparison failed: {app['error']}")
    prof = report.get("profile")
    if prof:
        lines.append(prof["error"] if "error" in prof else profile_filter.format_profile(prof))
    crit = report.get("criterion")
    if crit:
        if "error" in crit:
            lines.append(f"criterion: {crit['error']}")
        else:
            lines.append("routing core (criterion, median per iteration):")
            for b in crit["benchmarks"]:
                lines.append(f"  {b['id']:60} {criterion.human_ns(b['median_ns']):>10}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
