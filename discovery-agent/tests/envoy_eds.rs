//! A real Envoy (1.40, from the project's venv) takes the agent's REST EDS: its admin
//! `/clusters` lists every node with its datacenter/rack locality and the mapped health.
//! Skipped, with the reason printed, when `<repo>/.venv/bin/envoy` is missing.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alternator_sim::{NodeSpec, Sim, SimConfig};
use common::{eventually, fast_config, ip, AgentUnderTest};

const WITHIN: Duration = Duration::from_secs(30);

fn envoy_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    path.exists().then_some(path)
}

/// The Envoy child, killed (by its own PID) and reaped when the test ends, pass or fail.
struct EnvoyProcess(Child);

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bootstrap(agent_port: u16, cluster: &str) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
node: {{id: agent-eds-test, cluster: agent-eds-test}}
static_resources:
  clusters:
  - name: discovery_agent
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: discovery_agent
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {agent_port}}}}}}}
  - name: {cluster}
    type: EDS
    connect_timeout: 1s
    eds_cluster_config:
      eds_config:
        resource_api_version: V3
        api_config_source:
          api_type: REST
          transport_api_version: V3
          cluster_names: [discovery_agent]
          refresh_delay: 0.2s
          request_timeout: 1s
"#
    )
}

/// `(address, zone, eds health)` of every host of `cluster` in Envoy's admin `/clusters`.
async fn envoy_hosts(
    admin: std::net::SocketAddr,
    cluster: &str,
) -> Vec<(String, String, String, String)> {
    let reply = common::http(admin, "GET", "/clusters?format=json", &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    let mut hosts: Vec<(String, String, String, String)> = v["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == cluster)
        .flat_map(|c| c["host_statuses"].as_array().cloned().unwrap_or_default())
        .map(|h| {
            (
                h["address"]["socket_address"]["address"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                h["locality"]["region"].as_str().unwrap_or("").to_owned(),
                h["locality"]["zone"].as_str().unwrap_or("").to_owned(),
                h["health_status"]["eds_health_status"]
                    .as_str()
                    .unwrap_or("HEALTHY")
                    .to_owned(),
            )
        })
        .collect();
    hosts.sort();
    hosts
}

#[tokio::test]
async fn envoy_lists_the_nodes_with_their_zones() {
    let Some(envoy) = envoy_binary() else {
        eprintln!("skipping: no Envoy at <repo>/.venv/bin/envoy (run `make venv`)");
        return;
    };
    let n = |i| ip(41, i);
    let sim = Sim::start(SimConfig::new(vec![
        NodeSpec::new(n(1), "dc1", "r1"),
        NodeSpec::new(n(2), "dc1", "r2"),
        NodeSpec::new(n(3), "dc1", "r1"),
    ]))
    .await
    .unwrap();
    let mut config = fast_config(&[n(1)], sim.port());
    config.datacenter = Some("dc1".into());
    config.rack = Some("r1".into());
    config.cluster_name = "alternator".into();
    let agent = AgentUnderTest::start(config).await;
    eventually(WITHIN, "agent lists three active nodes", || async {
        let view = agent.nodes().await;
        view.len() == 3 && view.values().all(|(h, _, _)| h == "active")
    })
    .await;
    // A listed-but-not-ready node stays quarantined and must reach Envoy as DEGRADED.
    sim.add_node(NodeSpec::new(n(4), "dc1", "r1").listed_not_ready(None))
        .await
        .unwrap();

    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("envoy-eds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("envoy.yaml");
    let admin_path = dir.join("admin-address");
    let _ = std::fs::remove_file(&admin_path);
    std::fs::write(&config_path, bootstrap(agent.addr.port(), "alternator")).unwrap();
    // Unique per test process so parallel Envoys never share a shared-memory region.
    let base_id = 20_000 + std::process::id() % 40_000;
    let child = Command::new(&envoy)
        .arg("-c")
        .arg(&config_path)
        .args([
            "--base-id",
            &base_id.to_string(),
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ])
        .arg("--admin-address-path")
        .arg(&admin_path)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("envoy.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let _envoy = EnvoyProcess(child);

    let mut admin = None;
    eventually(WITHIN, "Envoy wrote its admin address", || {
        let read = std::fs::read_to_string(&admin_path).ok();
        admin = read.and_then(|s| s.trim().parse().ok());
        let found = admin.is_some();
        async move { found }
    })
    .await;
    let admin = admin.unwrap();

    let want = |health4: &str| {
        vec![
            (
                n(1).to_string(),
                "dc1".to_owned(),
                "r1".to_owned(),
                "HEALTHY".to_owned(),
            ),
            (
                n(2).to_string(),
                "dc1".to_owned(),
                String::new(),
                "HEALTHY".to_owned(),
            ),
            (
                n(3).to_string(),
                "dc1".to_owned(),
                "r1".to_owned(),
                "HEALTHY".to_owned(),
            ),
            (
                n(4).to_string(),
                "dc1".to_owned(),
                "r1".to_owned(),
                health4.to_owned(),
            ),
        ]
    };
    let mut last = Vec::new();
    let wanted = want("DEGRADED");
    let waited = tokio::time::timeout(WITHIN, async {
        loop {
            last = envoy_hosts(admin, "alternator").await;
            if last == wanted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    let served = agent.get("/metrics").await.body;
    let served: Vec<&str> = served
        .lines()
        .filter(|l| l.starts_with("alternator_agent_requests_total"))
        .collect();
    let raw = common::http(admin, "GET", "/clusters?format=json", &[], "")
        .await
        .body;
    assert!(
        waited.is_ok(),
        "Envoy /clusters shows {last:?}, want {wanted:?}\nagent served: {served:?}\n\
         envoy log:\n{log}\nraw /clusters: {raw}"
    );

    // The node's port opens: the agent vets it and Envoy sees it HEALTHY.
    sim.start_node(n(4)).await.unwrap();
    let wanted = want("HEALTHY");
    let waited = tokio::time::timeout(WITHIN, async {
        loop {
            last = envoy_hosts(admin, "alternator").await;
            if last == wanted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "Envoy /clusters shows {last:?}, want {wanted:?}"
    );
    agent.stop().await;
    sim.shutdown().await;
}
