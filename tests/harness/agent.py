"""Run the discovery agent (`alternator-discovery-agent`) for end-to-end tests."""

import json
import pathlib
import socket
import urllib.error
import urllib.request

from .util import OwnedProcess, eventually, free_port, release_binary


def free_dns_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for both UDP and TCP right now (the agent's DNS takes both)."""
    for _ in range(50):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free for UDP and TCP on {host}")


class Agent:
    """A discovery agent process on a free loopback port, watching the given seed nodes."""

    def __init__(
        self,
        workdir: pathlib.Path,
        seeds,
        port: int,
        datacenter: str | None = None,
        rack: str | None = None,
        extra_args=(),
        active_interval: str = "200ms",
        idle_interval: str = "1s",
        probe_period: str = "200ms",
        listen_port: int | None = None,
        dns: bool = False,
        dns_zone: str = "alternator.local.",
        ca_file=None,
    ):
        """With `ca_file`, the agent reaches the nodes over HTTPS and trusts that CA bundle."""
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A restarted agent takes its predecessor's port: Envoy's cluster points at it.
        self.port = listen_port if listen_port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            release_binary("alternator-discovery-agent"),
            "--seeds",
            ",".join(seeds),
            "--port",
            port,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--active-interval",
            active_interval,
            "--idle-interval",
            idle_interval,
            "--probe-period",
            probe_period,
            "--log-level",
            "info",
        ]
        # DNS answers (off unless asked): UDP and TCP on one free loopback port.
        self.dns_port = free_dns_port() if dns else None
        self.dns_zone = dns_zone
        if self.dns_port is not None:
            args += ["--dns-listen", f"127.0.0.1:{self.dns_port}", "--dns-zone", dns_zone]
        if datacenter:
            args += ["--datacenter", datacenter]
        if rack:
            args += ["--rack", rack]
        if ca_file:
            args += ["--scheme", "https", "--ca-file", str(ca_file)]
        args += list(extra_args)
        self.process = OwnedProcess(args, "agent", self.workdir / "agent.log")

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str, headers=None):
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def snapshot(self) -> dict:
        status, body = self.get("/v1/nodes")
        assert status == 200, f"/v1/nodes answered {status}: {body!r}"
        return json.loads(body)

    def eds(self, cluster: str = "alternator") -> dict:
        """The agent's REST EDS answer for `cluster`, as Envoy receives it."""
        body = json.dumps({"resource_names": [cluster]}).encode()
        req = urllib.request.Request(self.url + "/v3/discovery:endpoints", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def active_nodes(self) -> set:
        return {n["address"] for n in self.snapshot()["nodes"] if n["health"] == "active"}

    def wait_ready(self, timeout: float = 30.0):
        def ready():
            if not self.process.alive():
                raise AssertionError(f"agent exited:\n{self.process.log_tail()}")
            return self.get("/readyz")[0] == 200

        eventually(ready, timeout=timeout, message=f"agent ready; log:\n{self.process.log_tail()}")
        return self

    def wait_active(self, addresses, timeout: float = 30.0):
        """Until exactly `addresses` are ACTIVE in the agent's snapshot."""
        want = set(addresses)
        eventually(
            lambda: self.active_nodes() == want, timeout=timeout, message=f"agent lists {sorted(want)} as active"
        )

    def stop(self):
        self.process.stop()
