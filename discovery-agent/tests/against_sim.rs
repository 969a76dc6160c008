//! The agent against the in-process `alternator-sim` cluster: discovery, scopes, membership
//! changes, admission quarantine, outages, long-poll and ETags — as a filter would see them
//! through the API.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use alternator_discovery_agent::Config;
use alternator_routing::scope::ScopeMode;
use alternator_sim::{NodeSpec, Sim, SimConfig};
use common::{eventually, fast_config, ip, AgentUnderTest};

const WITHIN: Duration = Duration::from_secs(15);

type View = HashMap<String, (String, String, String)>;

async fn sim(specs: &[(IpAddr, &str, &str)]) -> Sim {
    let nodes = specs
        .iter()
        .map(|(address, dc, rack)| NodeSpec::new(*address, *dc, *rack))
        .collect();
    Sim::start(SimConfig::new(nodes)).await.unwrap()
}

fn config(sim: &Sim, seeds: &[IpAddr]) -> Config {
    fast_config(seeds, sim.port())
}

fn located(view: &View) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = view
        .iter()
        .map(|(a, (_, dc, rack))| (a.clone(), dc.clone(), rack.clone()))
        .collect();
    v.sort();
    v
}

fn row(address: IpAddr, dc: &str, rack: &str) -> (String, String, String) {
    (address.to_string(), dc.to_owned(), rack.to_owned())
}

async fn all_active(agent: &AgentUnderTest, want: &[IpAddr]) {
    let mut want: Vec<String> = want.iter().map(IpAddr::to_string).collect();
    want.sort();
    eventually(WITHIN, &format!("exactly {want:?} active"), || async {
        let view = agent.nodes().await;
        let mut active: Vec<String> = view
            .iter()
            .filter(|(_, (h, _, _))| h == "active")
            .map(|(a, _)| a.clone())
            .collect();
        active.sort();
        active == want && view.len() == want.len()
    })
    .await;
}

#[tokio::test]
async fn one_seed_discovers_every_node() {
    let n = |i| ip(21, i);
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r2"),
        (n(3), "dc1", "r3"),
    ])
    .await;
    let agent = AgentUnderTest::start(config(&sim, &[n(1)])).await;
    all_active(&agent, &[n(1), n(2), n(3)]).await;
    let snapshot = agent.snapshot().await.unwrap();
    assert_eq!(snapshot["format"], 1);
    assert_eq!(snapshot["port"], sim.port());
    assert_eq!(snapshot["scheme"], "http");
    // No datacenter configured: `/localnodes` does not say where nodes are.
    assert!(located(&agent.nodes().await)
        .iter()
        .all(|(_, dc, rack)| dc.is_empty() && rack.is_empty()));
    assert_eq!(agent.get("/readyz").await.status, 200);
    agent.stop().await;
    sim.shutdown().await;
}

fn two_dc_cluster(net: u8) -> Vec<(IpAddr, &'static str, &'static str)> {
    vec![
        (ip(net, 1), "dc1", "r1"),
        (ip(net, 2), "dc1", "r1"),
        (ip(net, 3), "dc1", "r2"),
        (ip(net, 4), "dc1", "r2"),
        (ip(net, 5), "dc2", "r1"),
        (ip(net, 6), "dc2", "r1"),
    ]
}

#[tokio::test]
async fn rack_scope_with_fallback_learns_the_datacenter() {
    let n = |i| ip(22, i);
    let sim = sim(&two_dc_cluster(22)).await;
    let mut config = config(&sim, &[n(5)]);
    config.datacenter = Some("dc1".into());
    config.rack = Some("r1".into());
    config.scope_mode = ScopeMode::Fallback;
    let agent = AgentUnderTest::start(config).await;
    all_active(&agent, &[n(1), n(2), n(3), n(4)]).await;
    assert_eq!(
        located(&agent.nodes().await),
        [
            row(n(1), "dc1", "r1"),
            row(n(2), "dc1", "r1"),
            row(n(3), "dc1", ""),
            row(n(4), "dc1", "")
        ]
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn rack_scope_strict_learns_only_the_rack() {
    let n = |i| ip(23, i);
    let sim = sim(&two_dc_cluster(23)).await;
    let mut config = config(&sim, &[n(3)]);
    config.datacenter = Some("dc1".into());
    config.rack = Some("r1".into());
    config.scope_mode = ScopeMode::Strict;
    let agent = AgentUnderTest::start(config).await;
    all_active(&agent, &[n(1), n(2)]).await;
    assert_eq!(
        located(&agent.nodes().await),
        [row(n(1), "dc1", "r1"), row(n(2), "dc1", "r1")]
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn datacenter_scope_with_extra_datacenter() {
    let n = |i| ip(24, i);
    let sim = sim(&two_dc_cluster(24)).await;
    let mut config = config(&sim, &[n(1)]);
    config.datacenter = Some("dc1".into());
    config.extra_datacenters = vec!["dc2".into()];
    let agent = AgentUnderTest::start(config).await;
    all_active(&agent, &[n(1), n(2), n(3), n(4), n(5), n(6)]).await;
    assert_eq!(
        located(&agent.nodes().await),
        [
            row(n(1), "dc1", ""),
            row(n(2), "dc1", ""),
            row(n(3), "dc1", ""),
            row(n(4), "dc1", ""),
            row(n(5), "dc2", ""),
            row(n(6), "dc2", "")
        ]
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_datacenter_falls_back_only_when_allowed() {
    let n = |i| ip(25, i);
    let sim = sim(&two_dc_cluster(25)).await;

    // Fallback: `?dc=nope` answers `[]`, so the plain query (the answering node's datacenter)
    // is asked and its nodes published without a location.
    let mut fallback = config(&sim, &[n(5)]);
    fallback.datacenter = Some("nope".into());
    let agent = AgentUnderTest::start(fallback).await;
    all_active(&agent, &[n(5), n(6)]).await;
    assert!(located(&agent.nodes().await)
        .iter()
        .all(|(_, dc, _)| dc.is_empty()));
    assert!(agent
        .metric(r#"alternator_agent_refreshes_total{scope="datacenter",datacenter="nope",outcome="empty"}"#)
        .await
        .is_some_and(|v| v >= 1.0));
    agent.stop().await;

    // Strict: the answer `[]` stands; the agent is ready with no nodes.
    let mut strict = config(&sim, &[n(5)]);
    strict.datacenter = Some("nope".into());
    strict.scope_mode = ScopeMode::Strict;
    let agent = AgentUnderTest::start(strict).await;
    eventually(WITHIN, "ready", || async {
        agent.get("/readyz").await.status == 200
    })
    .await;
    assert!(agent.nodes().await.is_empty());
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn seed_down_while_other_nodes_live() {
    let n = |i| ip(26, i);
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r1"),
        (n(3), "dc1", "r1"),
    ])
    .await;
    let agent = AgentUnderTest::start(config(&sim, &[n(1)])).await;
    all_active(&agent, &[n(1), n(2), n(3)]).await;

    sim.stop_node(n(1)).await.unwrap();
    all_active(&agent, &[n(2), n(3)]).await;

    // Discovery goes on through the nodes it learned: a new node is still found.
    sim.add_node(NodeSpec::new(n(4), "dc1", "r1"))
        .await
        .unwrap();
    all_active(&agent, &[n(2), n(3), n(4)]).await;
    assert_eq!(
        agent
            .metric("alternator_agent_refresh_consecutive_failures")
            .await,
        Some(0.0)
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn stopped_and_decommissioned_nodes_leave() {
    let n = |i| ip(27, i);
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r1"),
        (n(3), "dc1", "r1"),
    ])
    .await;
    let agent = AgentUnderTest::start(config(&sim, &[n(1)])).await;
    all_active(&agent, &[n(1), n(2), n(3)]).await;
    sim.stop_node(n(2)).await.unwrap();
    all_active(&agent, &[n(1), n(3)]).await;
    sim.decommission(n(3)).await.unwrap();
    all_active(&agent, &[n(1)]).await;

    // A node that comes back is vetted again before it is active.
    sim.start_node(n(2)).await.unwrap();
    all_active(&agent, &[n(1), n(2)]).await;
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn listed_but_not_ready_stays_quarantined_until_its_port_opens() {
    let n = |i| ip(28, i);
    let sim = sim(&[(n(1), "dc1", "r1"), (n(2), "dc1", "r1")]).await;
    let agent = AgentUnderTest::start(config(&sim, &[n(1)])).await;
    all_active(&agent, &[n(1), n(2)]).await;

    sim.add_node(NodeSpec::new(n(3), "dc1", "r1").listed_not_ready(None))
        .await
        .unwrap();
    eventually(WITHIN, "new node listed as quarantined", || async {
        agent
            .nodes()
            .await
            .get(&n(3).to_string())
            .is_some_and(|(h, _, _)| h == "quarantined")
    })
    .await;
    let failed_before = agent
        .metric(r#"alternator_agent_probes_total{result="failure"}"#)
        .await
        .unwrap();
    eventually(WITHIN, "several failed probes", || async {
        agent
            .metric(r#"alternator_agent_probes_total{result="failure"}"#)
            .await
            .is_some_and(|v| v >= failed_before + 3.0)
    })
    .await;
    assert_eq!(agent.nodes().await[&n(3).to_string()].0, "quarantined");
    assert_eq!(
        agent
            .metric(r#"alternator_agent_nodes{state="quarantined"}"#)
            .await,
        Some(1.0)
    );

    sim.start_node(n(3)).await.unwrap();
    all_active(&agent, &[n(1), n(2), n(3)]).await;
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_cluster_keeps_the_last_snapshot_and_metrics_say_so() {
    let n = |i| ip(29, i);
    let nodes = [n(1), n(2), n(3)];
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r1"),
        (n(3), "dc1", "r1"),
    ])
    .await;
    let agent = AgentUnderTest::start(config(&sim, &[n(1)])).await;
    all_active(&agent, &nodes).await;

    for node in nodes {
        sim.hang_node(node).await.unwrap();
    }
    eventually(WITHIN, "a failed refresh round", || async {
        agent
            .metric("alternator_agent_refresh_consecutive_failures")
            .await
            .is_some_and(|v| v >= 1.0)
    })
    .await;
    let kept = agent.get("/v1/nodes").await;
    let last_success = agent
        .metric("alternator_agent_last_success_timestamp_seconds")
        .await
        .unwrap();
    eventually(WITHIN, "three failed rounds in a row", || async {
        agent
            .metric("alternator_agent_refresh_consecutive_failures")
            .await
            .is_some_and(|v| v >= 3.0)
    })
    .await;
    let still = agent.get("/v1/nodes").await;
    assert_eq!(still.status, 200);
    assert_eq!(
        still.body, kept.body,
        "the last good snapshot is still served"
    );
    assert!(!agent.nodes().await.is_empty());
    assert_eq!(
        agent
            .metric("alternator_agent_last_success_timestamp_seconds")
            .await,
        Some(last_success)
    );
    assert!(agent
        .metric(r#"alternator_agent_refreshes_total{scope="cluster",outcome="failure"}"#)
        .await
        .is_some_and(|v| v >= 3.0));
    assert_eq!(
        agent.get("/readyz").await.status,
        200,
        "still ready: it has a snapshot"
    );

    for node in nodes {
        sim.start_node(node).await.unwrap();
    }
    eventually(WITHIN, "discovery recovers", || async {
        agent
            .metric("alternator_agent_refresh_consecutive_failures")
            .await
            == Some(0.0)
    })
    .await;
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn etag_304_and_long_poll_wakes_on_change() {
    let n = |i| ip(30, i);
    let sim = sim(&[(n(1), "dc1", "r1"), (n(2), "dc1", "r1")]).await;
    let agent = AgentUnderTest::start(config(&sim, &[n(1)])).await;
    all_active(&agent, &[n(1), n(2)]).await;

    let first = agent.get("/v1/nodes").await;
    let etag = first.header("etag").unwrap().to_owned();
    let version: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(etag, format!("\"{}\"", version["version"]));
    assert_eq!(first.header("content-type"), Some("application/json"));

    let same = agent
        .get_with("/v1/nodes", &[("if-none-match", &etag)])
        .await;
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    let stale = agent
        .get_with("/v1/nodes", &[("if-none-match", "\"1\"")])
        .await;
    assert_eq!(stale.status, 200);
    let timed_out = agent
        .get_with("/v1/nodes?wait=1", &[("if-none-match", &etag)])
        .await;
    assert_eq!(timed_out.status, 304, "nothing changed within the wait");

    // A long-poll of 30 s answers as soon as a node joins, with the new snapshot.
    let addr = agent.addr;
    let tag = etag.clone();
    let poll = tokio::spawn(async move {
        common::http(
            addr,
            "GET",
            "/v1/nodes?wait=60",
            &[("if-none-match", &tag)],
            "",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.add_node(NodeSpec::new(n(3), "dc1", "r1"))
        .await
        .unwrap();
    // The longest wait the agent grants, so that discovering the node may take a loaded
    // machine most of a minute; a 304 at the end of the wait would fail the status check.
    let woke = tokio::time::timeout(Duration::from_secs(90), poll)
        .await
        .expect("the long-poll answered")
        .unwrap();
    assert_eq!(woke.status, 200);
    assert_ne!(woke.header("etag"), Some(etag.as_str()));
    let body: serde_json::Value = serde_json::from_str(&woke.body).unwrap();
    assert!(body["version"].as_u64().unwrap() > version["version"].as_u64().unwrap());
    assert!(woke.body.contains(&n(3).to_string()));
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_eds_serves_the_cluster_with_localities() {
    let n = |i| ip(31, i);
    let sim = sim(&[(n(1), "dc1", "r1"), (n(2), "dc1", "r2")]).await;
    let mut config = config(&sim, &[n(1)]);
    config.datacenter = Some("dc1".into());
    config.rack = Some("r1".into());
    let agent = AgentUnderTest::start(config).await;
    all_active(&agent, &[n(1), n(2)]).await;
    let reply = agent
        .post(
            "/v3/discovery:endpoints",
            r#"{"node":{"id":"test"},"resource_names":["alternator"],"type_url":"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"}"#,
        )
        .await;
    assert_eq!(reply.status, 200);
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let cla = &v["resources"][0];
    assert_eq!(cla["cluster_name"], "alternator");
    let localities: Vec<(String, String, usize)> = cla["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["locality"]["region"].as_str().unwrap().to_owned(),
                e["locality"]["zone"].as_str().unwrap().to_owned(),
                e["lb_endpoints"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        localities,
        [
            ("dc1".to_owned(), String::new(), 1),
            ("dc1".to_owned(), "r1".to_owned(), 1)
        ]
    );
    let other = agent
        .post(
            "/v3/discovery:endpoints",
            r#"{"resource_names":["payments"]}"#,
        )
        .await;
    assert_eq!(other.status, 404);
    agent.stop().await;
    sim.shutdown().await;
}
