"""Start alternator-sim as a process, read its startup JSON line, drive its control API.

    with SimProcess([("127.0.0.1", "dc1", "rack1"), ("127.0.0.2", "dc1", "rack2")]) as sim:
        sim.endpoint("127.0.0.1")          # "http://127.0.0.1:<port>"
        sim.stop_node("127.0.0.2")
        sim.counters()["127.0.0.1"]["by_operation"]

The sim picks its own port (free on every node address) unless one is given, so there is no
window between choosing a port and binding it. It is stopped by PID (its own process group),
never by name. See docs/architecture.md §3 for the wire contract.
"""

import json
import os
import pathlib
import select
import subprocess
import time
import urllib.error
import urllib.request

from .util import ROOT, stop_process_group, target_dir


def sim_binary(build: bool = True) -> pathlib.Path:
    """The release alternator-sim binary; built with cargo first if it is missing."""
    path = target_dir() / "release" / "alternator-sim"
    if not path.exists() and build:
        subprocess.run(
            [os.environ.get("CARGO", "cargo"), "build", "--release", "-p", "alternator-sim"],
            cwd=ROOT,
            check=True,
        )
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `cargo build --release -p alternator-sim`")
    return path


class ControlError(RuntimeError):
    """The control API refused a request (status and its error message)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"alternator-sim control API answered {status}: {message}")
        self.status = status
        self.message = message


class SimProcess:
    """One alternator-sim process owned by the caller.

    `nodes` are (address, datacenter, rack) tuples; `port` None lets the sim pick one free on
    every node address. `log_path` receives stderr (default: discarded). With `tls_ca_path`, the
    nodes serve HTTPS with certificates from a CA the sim makes, whose certificate it writes
    there. The process starts in the constructor, which returns once the startup line is read;
    use as a context manager or call `stop()`.
    """

    def __init__(
        self,
        nodes,
        port: int | None = None,
        enforce_auth: str | None = None,
        backend: str | None = None,
        log_path=None,
        extra_args=(),
        start_timeout: float = 30.0,
        tls_ca_path=None,
    ):
        self.nodes_spec = list(nodes)
        args = [str(sim_binary()), "--control", "127.0.0.1:0"]
        if port is not None:
            args += ["--port", str(port)]
        for address, dc, rack in self.nodes_spec:
            args += ["--node", f"{address}/{dc}/{rack}"]
        if enforce_auth:
            args += ["--enforce-auth", enforce_auth]
        if backend:
            args += ["--backend", backend]
        self.ca_path = pathlib.Path(tls_ca_path) if tls_ca_path else None
        if self.ca_path:
            args += ["--tls-ca-out", str(self.ca_path)]
        args += [str(a) for a in extra_args]
        self.log_path = pathlib.Path(log_path) if log_path else None
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self.info = self._read_startup_line(start_timeout)
        except BaseException:
            self.stop()
            raise
        self.port = int(self.info["port"])
        self.scheme = self.info.get("scheme", "http")
        self.control = f"http://{self.info['control']}"
        self.addresses = [n["address"] for n in self.info["nodes"]]

    def _read_startup_line(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"alternator-sim printed no startup line within {timeout}s{self._tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"alternator-sim exited with {self.proc.wait()}{self._tail()}")
                buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])

    def _tail(self) -> str:
        if not self.log_path:
            return ""
        try:
            return ":\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    # ---- lifecycle ----

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID (process group), SIGKILL after `timeout`; returns the exit code."""
        stop_process_group(self.proc, timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- addresses ----

    def endpoint(self, address: str | None = None) -> str:
        """`scheme://address:port` of a node (default: the first)."""
        return f"{self.scheme}://{address or self.addresses[0]}:{self.port}"

    # ---- control API ----

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(
            self.control + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except ValueError:
                message = raw.decode(errors="replace")
            raise ControlError(e.code, message) from None
        return json.loads(raw) if raw.strip() else None

    def nodes(self) -> list:
        """Every node with address, datacenter, rack, state, listening, listed, latency_ms, fail."""
        return self.call("GET", "/nodes")["nodes"]

    def node(self, address: str) -> dict:
        return self.call("GET", f"/nodes/{address}")

    def add_node(
        self,
        address: str,
        datacenter: str,
        rack: str,
        listed_not_ready: bool = False,
        ready_after_ms: int | None = None,
    ) -> dict:
        body = {"address": address, "datacenter": datacenter, "rack": rack, "listed_not_ready": listed_not_ready}
        if ready_after_ms is not None:
            body["ready_after_ms"] = ready_after_ms
        return self.call("POST", "/nodes", body)

    def node_action(self, address: str, action: str, body=None) -> dict:
        return self.call("POST", f"/nodes/{address}/{action}", body)

    def stop_node(self, address: str) -> dict:
        return self.node_action(address, "stop")

    def start_node(self, address: str) -> dict:
        return self.node_action(address, "start")

    def hang_node(self, address: str) -> dict:
        return self.node_action(address, "hang")

    def slow_node(self, address: str, latency_ms: int) -> dict:
        return self.node_action(address, "slow", {"latency_ms": latency_ms})

    def fail_node(self, address: str, fraction: float, status: int = 503) -> dict:
        return self.node_action(address, "fail", {"fraction": fraction, "status": status})

    def not_ready(self, address: str, ready_after_ms: int | None = None) -> dict:
        body = {"ready_after_ms": ready_after_ms} if ready_after_ms is not None else None
        return self.node_action(address, "not-ready", body)

    def decommission(self, address: str) -> dict:
        return self.node_action(address, "decommission")

    def counters(self) -> dict:
        """address → {"total", "by_operation", "localnodes", "health", "injected_failures"}."""
        return self.call("GET", "/counters")["nodes"]

    def totals(self) -> dict:
        """address → DynamoDB requests received."""
        return {a: c["total"] for a, c in self.counters().items()}

    def keylog(self, since: int | None = None) -> list:
        """[{"seq", "node", "operation", "table", "key"}], oldest first."""
        return self.call("GET", "/keylog" + (f"?since={since}" if since is not None else ""))

    def reset(self):
        self.call("POST", "/reset")
