//! Ring discovery against alternator-sim in-process: the ring the agent publishes must be the
//! sim's own ownership (its control API), for vnodes and tablets, through a tablet migration
//! and a split, nodes joining and leaving, tables deleted, and with authorization enforced.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use alternator_discovery_agent::config::RingTables;
use alternator_discovery_agent::sigv4::Signer;
use alternator_discovery_agent::Config;
use alternator_routing::ring::Layout;
use alternator_routing::snapshot::NodeSnapshot;
use alternator_sim::{NodeSpec, Sim, SimConfig};
use common::{
    capture_logs, eventually, ip, metric, published, ring_refreshes, sim_signer,
    wait_for_refused_ring_rounds, AgentUnderTest, SimDynamo,
};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(20);

/// `(end token, replicas)` per range, ascending; replicas as a set, because `system.token_ring`
/// lists a range's replicas by address, not in placement order.
type Owners = Vec<(i64, BTreeSet<IpAddr>)>;

/// Nodes `127.0.<net>.1..=n` over three racks, each announcing broadcast address
/// `127.1.<net>.<i>` (so the agent must map it back through `system.peers`/`local`).
fn nodes(net: u8, n: u8) -> Vec<NodeSpec> {
    (1..=n)
        .map(|i| {
            NodeSpec::new(ip(net, i), "dc1", format!("rack{}", (i - 1) % 3 + 1))
                .with_broadcast_address(IpAddr::from([127, 1, net, i]))
        })
        .collect()
}

async fn sim(net: u8, n: u8, tweak: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig::new(nodes(net, n));
    // Small pages, so the agent follows LastEvaluatedKey.
    config.internal_page_rows = Some(25);
    tweak(&mut config);
    Sim::start(config).await.unwrap()
}

/// Sends DynamoDB `operation` with `body` to the sim's first node, signed by `signer` when
/// given; it must succeed.
async fn call(sim: &Sim, signer: Option<&Signer>, operation: &str, body: &Value) {
    SimDynamo::new(sim)
        .client(signer)
        .call(&sim.node_addresses()[0].to_string(), operation, body)
        .await
        .unwrap();
}

/// Creates `table` (hash key `pk`, type S) with `tablets` tablets, or vnodes for `None`.
async fn create_table(sim: &Sim, table: &str, tablets: Option<u32>, signer: Option<&Signer>) {
    let tag = tablets.map_or_else(|| "none".to_owned(), |n| n.to_string());
    let body = json!({"TableName": table, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "Tags": [{"Key": "system:initial_tablets", "Value": tag}]});
    call(sim, signer, "CreateTable", &body).await;
}

async fn delete_table(sim: &Sim, table: &str) {
    call(sim, None, "DeleteTable", &json!({"TableName": table})).await;
}

fn agent_config(sim: &Sim, tables: RingTables) -> Config {
    common::fast_ring_config(
        sim.node_addresses()[0],
        sim.port(),
        tables,
        Duration::from_secs(2),
    )
}

/// The sim's ownership of `table`, as readers should see it (reads stay on the old replicas
/// until a migration finishes, the only stage the sim leaves a migration in).
fn expected(sim: &Sim, table: &str) -> Owners {
    let ring = sim.table_ring(table).unwrap();
    let mut owners: Owners = ring
        .ranges
        .iter()
        .map(|r| (r.end_token, r.replicas.iter().copied().collect()))
        .collect();
    owners.sort_by_key(|o| o.0);
    owners
}

/// The published ring of `table`, replicas as a set.
fn actual(snapshot: &NodeSnapshot, table: &str) -> Option<Owners> {
    common::published_owners(snapshot, table)
}

/// Waits until the agent publishes the sim's ring of `table`.
async fn ring_matches(agent: &AgentUnderTest, sim: &Sim, table: &str) -> NodeSnapshot {
    common::wait_for_ring(agent, table, WITHIN, || expected(sim, table)).await
}

#[tokio::test]
async fn vnode_table_ring_is_the_sims() {
    let sim = sim(51, 5, |c| {
        c.ring.vnodes_per_node = 8;
        c.ring.replication_factor = 3;
    })
    .await;
    create_table(&sim, "users", None, None).await;
    let agent = AgentUnderTest::start(agent_config(&sim, RingTables::All)).await;
    let snapshot = ring_matches(&agent, &sim, "users").await;
    let table = snapshot.ring().unwrap().table("users").unwrap();
    assert_eq!(table.layout(), Layout::Vnodes);
    assert_eq!(table.len(), 40);
    assert_eq!(table.hash_key(), "pk");
    // Every replica is a listed (RPC) address: broadcast addresses were mapped.
    assert!(snapshot
        .nodes()
        .iter()
        .all(|n| n.address.to_string().starts_with("127.0.51.")));
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn tablet_ring_follows_migration_and_split() {
    let sim = sim(52, 4, |c| c.ring.replication_factor = 2).await;
    create_table(&sim, "orders", Some(16), None).await;
    let agent =
        AgentUnderTest::start(agent_config(&sim, RingTables::Named(vec!["orders".into()]))).await;
    let before = ring_matches(&agent, &sim, "orders").await;
    assert_eq!(
        before.ring().unwrap().table("orders").unwrap().layout(),
        Layout::Tablets
    );

    // Move a replica of tablet 3 to a node that does not hold it; while migrating, reads stay
    // on the old replicas, so the published ring does not change.
    let ring = sim.table_ring("orders").unwrap();
    let from = ring.ranges[3].replicas[0];
    let to = *sim
        .node_addresses()
        .iter()
        .find(|a| !ring.ranges[3].replicas.contains(a))
        .unwrap();
    sim.move_tablet("orders", 3, from, to, false).unwrap();
    let migrating = ring_matches(&agent, &sim, "orders").await;
    assert_eq!(actual(&migrating, "orders"), actual(&before, "orders"));

    sim.finish_migration("orders", 3).unwrap();
    let moved = ring_matches(&agent, &sim, "orders").await;
    assert!(moved.version() > before.version());
    assert!(moved.ring().unwrap().version() > before.ring().unwrap().version());
    let owners = actual(&moved, "orders").unwrap();
    assert!(owners[3].1.contains(&to) && !owners[3].1.contains(&from));

    sim.split_tablets("orders").unwrap();
    let split = ring_matches(&agent, &sim, "orders").await;
    assert_eq!(split.ring().unwrap().table("orders").unwrap().len(), 32);
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn joining_and_removed_nodes_change_the_ring() {
    let sim = sim(53, 3, |c| {
        c.ring.vnodes_per_node = 4;
        c.ring.replication_factor = 2;
    })
    .await;
    create_table(&sim, "vnodes_t", None, None).await;
    create_table(&sim, "tablets_t", Some(8), None).await;
    let agent = AgentUnderTest::start(agent_config(&sim, RingTables::All)).await;
    ring_matches(&agent, &sim, "vnodes_t").await;
    ring_matches(&agent, &sim, "tablets_t").await;

    let newcomer = ip(53, 4);
    sim.add_node(
        NodeSpec::new(newcomer, "dc1", "rack1")
            .with_broadcast_address(IpAddr::from([127, 1, 53, 4])),
    )
    .await
    .unwrap();
    let grown = ring_matches(&agent, &sim, "vnodes_t").await;
    ring_matches(&agent, &sim, "tablets_t").await;
    assert!(grown.position(newcomer).is_some());
    assert!(actual(&grown, "vnodes_t")
        .unwrap()
        .iter()
        .any(|(_, replicas)| replicas.contains(&newcomer)));

    let leaving = ip(53, 2);
    sim.remove_node(leaving).await.unwrap();
    let shrunk = ring_matches(&agent, &sim, "vnodes_t").await;
    ring_matches(&agent, &sim, "tablets_t").await;
    assert!(shrunk.position(leaving).is_none());

    // A deleted table leaves the ring.
    delete_table(&sim, "tablets_t").await;
    eventually(WITHIN, "the deleted table's ring is dropped", || async {
        published(&agent)
            .await
            .is_some_and(|s| s.ring().is_some_and(|r| r.table("tablets_t").is_none()))
    })
    .await;
    assert_eq!(metric(&agent, "alternator_agent_ring_tables").await, 1.0);
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn enforced_authorization_with_and_without_credentials() {
    let (logs, _guard) = capture_logs(tracing::Level::INFO);

    let sim = sim(54, 3, |c| {
        c.enforce_auth = Some("AKIDSIM:sim-secret".parse().unwrap());
    })
    .await;
    create_table(&sim, "users", Some(4), Some(&sim_signer("sim-secret"))).await;

    // Without credentials: the node list is published, the ring is not.
    let without = AgentUnderTest::start(agent_config(&sim, RingTables::All)).await;
    wait_for_refused_ring_rounds(&without, 3, WITHIN).await;
    let snapshot = without.snapshot().await.unwrap();
    assert!(snapshot.get("ring").is_none(), "{snapshot}");
    let text = logs.text();
    assert_eq!(text.matches("refused ring discovery").count(), 1, "{text}");
    without.stop().await;

    // With them: the ring.
    let mut config = agent_config(&sim, RingTables::All);
    config.ring_discovery.as_mut().unwrap().credentials =
        Some(sim_signer("sim-secret").credentials);
    let with = AgentUnderTest::start(config).await;
    ring_matches(&with, &sim, "users").await;
    assert_eq!(ring_refreshes(&with, "refused").await, 0.0);
    with.stop().await;
    sim.shutdown().await;
}
