"""The native build (dynamic-module/, envoy/envoy-native.yaml): what only it needs checked.

Its routing, metrics, passive health and failure handling are checked by the end-to-end and
fault suites, which `make e2e` runs against this build as well (ALTERNATOR_FILTER_BUILD=native).
"""

import pathlib
import subprocess

import envoy as envoy_package
import yaml

from harness.envoy import (
    ENVOY_NATIVE_YAML,
    ENVOY_YAML,
    NATIVE_MODULE_NAME,
    native_module_dir,
    render_template,
    validation_values,
    with_upstream_tls,
)
from harness.stack import RawDynamo, create_table, metric, wait_metric

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1")]


def without_filter(path, upstream_tls: bool = False) -> tuple[dict, dict]:
    """The rendered bootstrap (with its upstream TLS block enabled, if asked) minus the
    alternator-filter entry, and that entry."""
    text = path.read_text()
    if upstream_tls:
        text = with_upstream_tls(text)
    doc = yaml.safe_load(render_template(text, validation_values()))
    chain = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (entry,) = [f for f in chain["http_filters"] if f["name"] == "alternator-filter"]
    chain["http_filters"] = [f for f in chain["http_filters"] if f["name"] != "alternator-filter"]
    return doc, entry


def test_native_config_differs_from_the_wasm_config_only_in_the_filter():
    wasm_doc, wasm_filter = without_filter(ENVOY_YAML)
    native_doc, native_filter = without_filter(ENVOY_NATIVE_YAML)
    assert native_doc == wasm_doc
    # The same plugin configuration reaches either build.
    wasm_plugin = wasm_filter["typed_config"]["config"]["configuration"]["value"]
    native_config = native_filter["typed_config"]
    assert native_config["filter_config"]["value"] == wasm_plugin
    assert native_config["dynamic_module_config"]["name"] == NATIVE_MODULE_NAME.removeprefix("lib").removesuffix(".so")


def alternator_cluster(doc: dict) -> dict:
    (cluster,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "alternator"]
    return cluster


def test_native_config_ships_the_same_upstream_tls_block():
    wasm_doc, _ = without_filter(ENVOY_YAML, upstream_tls=True)
    native_doc, _ = without_filter(ENVOY_NATIVE_YAML, upstream_tls=True)
    assert native_doc == wasm_doc
    # Off as shipped; enabled, it is a TLS transport socket on cluster `alternator` only.
    assert "transport_socket" not in alternator_cluster(without_filter(ENVOY_YAML)[0])
    socket = alternator_cluster(wasm_doc)["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    tls_doc = dict(wasm_doc, static_resources=dict(wasm_doc["static_resources"]))
    tls_doc["static_resources"]["clusters"] = [
        {k: v for k, v in c.items() if k != "transport_socket"} for c in wasm_doc["static_resources"]["clusters"]
    ]
    assert tls_doc == without_filter(ENVOY_YAML)[0]


def dynamic_symbols(path, flag: str) -> set:
    out = subprocess.run(["nm", "-D", flag, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_every_callback_the_module_calls_is_exported_by_this_envoy():
    module = native_module_dir() / NATIVE_MODULE_NAME
    called = {s for s in dynamic_symbols(module, "--undefined-only") if s.startswith("envoy_dynamic_module_callback_")}
    assert called, "the module calls no Envoy callback: wrong file?"
    # The executable of the PyPI package (the venv's `envoy` command is a Python wrapper).
    executable = pathlib.Path(envoy_package.__file__).parent / "_bin" / "envoy"
    exported = dynamic_symbols(executable, "--defined-only")
    assert called <= exported, sorted(called - exported)


def test_module_loads_with_its_abi_version_and_reports_the_documented_metrics(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {"fallbacks": 1}, build="native", expect_nodes=2)
    log = envoy.log_path.read_text()
    assert "Dynamic module ABI version v0.2.0 matched." in log
    assert "deprecated" not in log.lower() and "mismatch" not in log.lower()

    create_table(envoy.url, "native_metrics")
    client = RawDynamo(envoy.url)
    for i in range(10):
        status, body = client.call("GetItem", {"TableName": "native_metrics", "Key": {"pk": {"S": f"k{i}"}}})
        assert status == 200, body
    wait_metric(envoy, "alternator_routed_total", 10, at_least=True, policy="round_robin")
    wait_metric(envoy, "alternator_requests_total", 10, at_least=True)
    # Prometheus names: Envoy's prefix for the dynamic-module namespace, then the documented name.
    raw = envoy.prometheus()
    assert 'envoy_dynamicmodulescustom_alternator_routed_total{policy="round_robin"}' in raw
    assert metric(envoy, "alternator_module_panics_total") == 0
    served = sum(metric(envoy, "alternator_requests_total", node=f"{a}:{sim.port}") for a, _, _ in NODES)
    assert served >= 10
