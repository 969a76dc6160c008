"""Filter behaviour a user relies on, beyond the issue's scenarios: forged headers, config errors."""

import subprocess

from harness.envoy import (
    envoy_binary,
    envoy_env,
    plugin_config_value,
    render_template,
    shipped_config,
    unique_base_id,
    validation_values,
)
from harness.stack import RawDynamo, create_table, wait_metric
from harness.util import eventually

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1")]


def test_client_cannot_choose_the_node(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {}, expect_nodes=2)
    create_table(envoy.url, "forged")
    sim.reset()
    client = RawDynamo(envoy.url)
    try:
        for i in range(40):
            forged = {"x-alternator-endpoints": f"127.0.0.2:{sim.port}"}
            status, _ = client.call("GetItem", {"TableName": "forged", "Key": {"pk": {"S": str(i)}}}, forged)
            assert status == 200
    finally:
        client.close()
    assert sim.totals() == {"127.0.0.2": 20, "127.0.0.3": 20}
    # The access log shows the filter's header, not the client's: both nodes appear first.
    log = eventually(
        lambda: envoy.access_log() if envoy.access_log().count("GetItem") == 40 else None, message="access log flushed"
    )
    assert f"candidates=127.0.0.3:{sim.port},127.0.0.2:{sim.port} " in log


def test_unknown_operation_is_routed_not_refused(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim)
    agent.wait_active([n[0] for n in NODES])
    envoy = stack.envoy(agent, {}, expect_nodes=2)
    client = RawDynamo(envoy.url)
    try:
        status, body = client.call("NoSuchOperation", {})
        status2, _ = client.call("ListTables", {}, {"x-amz-target": "\u00ff-not-dynamodb"})
    finally:
        client.close()
    assert status == 400, body  # Alternator's answer, not the filter's
    assert status2 == 400
    wait_metric(envoy, "alternator_routed_total", 2, policy="round_robin")


def validate(tmp_path, plugin_config: str):
    values = validation_values()
    values["PLUGIN_CONFIG"] = plugin_config
    path = tmp_path / "envoy.yaml"
    path.write_text(render_template(shipped_config().read_text(), values))
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--base-id", str(unique_base_id())],
        capture_output=True,
        text=True,
        timeout=120,
        env=envoy_env(),
    )


def test_bad_plugin_config_is_refused_naming_the_field(tmp_path):
    ok = validate(tmp_path, plugin_config_value({"fallbacks": 1, "scope": {"datacenter": "dc1"}}))
    assert ok.returncode == 0, ok.stderr[-2000:]
    for config, field in [
        ({"fallback": 3}, "fallback"),
        ({"scope": {"dc": "x"}}, "dc"),
        ({"policy": "least_request"}, "policy"),
        ({"fallbacks": 99}, "fallbacks"),
    ]:
        bad = validate(tmp_path, plugin_config_value(config))
        assert bad.returncode != 0, config
        line = next(ln for ln in (bad.stdout + bad.stderr).splitlines() if "invalid plugin configuration" in ln)
        assert field in line, line
