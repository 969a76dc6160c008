//! A measurement, not a test of behaviour: the snapshot size and the agent's memory with ring
//! discovery of 10 tables × 1,024 tablets on 6 nodes, RF 3 (alternator-sim in-process, the
//! agent binary as its own process). Prints its figures; asserts only that the ring arrived.
//!
//! ```sh
//! cargo test -p alternator-discovery-agent --test ring_footprint -- --ignored --nocapture
//! # the agent as released:
//! cargo build --release -p alternator-discovery-agent
//! RING_FOOTPRINT_AGENT=target/release/alternator-discovery-agent \
//!     cargo test -p alternator-discovery-agent --test ring_footprint -- --ignored --nocapture
//! ```

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alternator_sim::{NodeSpec, Sim, SimConfig};
use common::{http, ip, SimDynamo};
use serde_json::{json, Value};

const AGENT: &str = env!("CARGO_BIN_EXE_alternator-discovery-agent");
const TABLES: usize = 10;
const TABLETS: u32 = 1024;

struct Agent(Child, std::net::SocketAddr);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(sim: &Sim, ring: bool) -> Agent {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // RING_FOOTPRINT_AGENT names another build of the binary (a release one, say).
    let binary = std::env::var("RING_FOOTPRINT_AGENT").unwrap_or_else(|_| AGENT.to_owned());
    let mut command = Command::new(binary);
    command
        .args(["--seeds", &sim.node_addresses()[0].to_string()])
        .args(["--port", &sim.port().to_string()])
        .args(["--listen", &listen.to_string()])
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("ALTERNATOR_AGENT_") || key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    if ring {
        command.args(["--ring-tables", "all", "--ring-refresh-idle", "10s"]);
    }
    Agent(command.spawn().unwrap(), listen)
}

/// Polls `/v1/nodes` until its document satisfies `done`; returns the body.
async fn wait_for_snapshot(addr: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Until the process listens, connecting is refused.
        let listening = tokio::net::TcpStream::connect(addr).await.is_ok();
        let reply = if listening {
            http(addr, "GET", "/v1/nodes", &[], "").await
        } else {
            common::HttpReply {
                status: 0,
                headers: Vec::new(),
                body: String::new(),
            }
        };
        if reply.status == 200 {
            let value: Value = serde_json::from_str(&reply.body).unwrap();
            if done(&value) {
                return reply.body;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such snapshot from {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn snapshot_bytes_and_rss_with_ten_tables_of_1024_tablets() {
    let nodes = (1..=6)
        .map(|i| NodeSpec::new(ip(61, i), "dc1", format!("rack{}", (i - 1) % 3 + 1)))
        .collect();
    let mut config = SimConfig::new(nodes);
    config.ring.replication_factor = 3;
    let sim = Sim::start(config).await.unwrap();
    let dynamo = SimDynamo::new(&sim);
    let client = dynamo.client(None);
    for t in 0..TABLES {
        client
            .call(
                &ip(61, 1).to_string(),
                "CreateTable",
                &json!({"TableName": format!("table_{t:02}"), "BillingMode": "PAY_PER_REQUEST",
                        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                        "Tags": [{"Key": "system:initial_tablets", "Value": TABLETS.to_string()}]}),
            )
            .await
            .unwrap();
    }

    let plain = start_agent(&sim, false);
    let ringed = start_agent(&sim, true);
    let with_ring = wait_for_snapshot(ringed.1, |value| {
        value["ring"]["tables"].as_array().map(Vec::len) == Some(TABLES)
            && value["nodes"].as_array().map(Vec::len) == Some(6)
    })
    .await;
    let without_ring = wait_for_snapshot(plain.1, |value| {
        value["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 6 && n.iter().all(|n| n["health"] == "active"))
    })
    .await;
    // Let a few ring refreshes run before reading memory.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let per_table = (with_ring.len() - without_ring.len()) / TABLES;
    println!("snapshot without ring: {} bytes", without_ring.len());
    println!(
        "snapshot with ring ({TABLES} tables x {TABLETS} tablets, 6 nodes, RF 3): {} bytes, {} bytes per table",
        with_ring.len(),
        per_table
    );
    for (name, agent) in [("without ring", &plain), ("with ring", &ringed)] {
        println!(
            "agent {name}: VmRSS {} KiB, VmHWM {} KiB",
            rss_kib(agent.0.id(), "VmRSS:"),
            rss_kib(agent.0.id(), "VmHWM:")
        );
    }
    assert!(
        per_table <= 16 * 1024,
        "budget: 16 KB per 1,024-tablet table"
    );
    drop(plain);
    drop(ringed);
    sim.shutdown().await;
}
