"""Small helpers every end-to-end test uses: free ports, polling, processes we own."""

import os
import pathlib
import signal
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def target_dir() -> pathlib.Path:
    """Cargo's target directory: $CARGO_TARGET_DIR if set, else <repo>/target."""
    env = os.environ.get("CARGO_TARGET_DIR")
    return pathlib.Path(env) if env else ROOT / "target"


def release_binary(name: str) -> pathlib.Path:
    path = target_dir() / "release" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make native`")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` right now (bind to 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_on_all(hosts) -> int:
    """A port free on every address in `hosts` (the sim's nodes share one port)."""
    for _ in range(50):
        port = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def eventually(condition, timeout: float = 60.0, interval: float = 0.1, message: str = ""):
    """Poll `condition()` until it returns a truthy value (returned) or `timeout` passes.

    `timeout` bounds a hung test, it is no speed assertion: the default is far longer than any
    state the tests wait for takes on a loaded machine (they come in well under a second).

    Exceptions raised by `condition` count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    last_value = None
    while True:
        try:
            last_value = condition()
            if last_value:
                return last_value
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_error = e
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else f"; last value: {last_value!r}"
            raise AssertionError(f"condition not met within {timeout}s: {message}{detail}")
        time.sleep(interval)


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM a child started with start_new_session=True (its own process group, so by PID),
    SIGKILL after `timeout`; returns its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=timeout)
    return proc.returncode


class OwnedProcess:
    """A child process this test started; stopped by PID (its own process group), never by name."""

    def __init__(self, args, name: str, log_path: pathlib.Path, env=None, stdout=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0):
        stop_process_group(self.proc, timeout)
        self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
