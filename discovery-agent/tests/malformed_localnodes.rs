//! `/localnodes` answers the sim never gives: an HTML error page, truncated JSON, host-id UUID
//! entries, a 503. The agent must skip a bad answer, ask the next candidate, and never publish
//! garbage.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{eventually, fast_config, ip, AgentUnderTest, FakeCluster};

const WITHIN: Duration = Duration::from_secs(10);

/// Seeds `[bad, good]`: the bad seed answers `/localnodes` with `bad_body`/`bad_status`, the good
/// one with the three addresses. Every node answers `GET /` with 200.
async fn bad_seed_then_good(net: u8, bad_status: u16, bad_body: &str) {
    let nodes = [ip(net, 1), ip(net, 2), ip(net, 3)];
    let cluster = FakeCluster::start(&nodes).await;
    let list = format!(r#"["{}","{}","{}"]"#, nodes[0], nodes[1], nodes[2]);
    cluster.answer(nodes[0], "/localnodes", bad_status, bad_body);
    cluster.answer(nodes[1], "/localnodes", 200, &list);
    cluster.answer(nodes[2], "/localnodes", 200, &list);
    for node in nodes {
        cluster.answer(node, "/", 200, "healthy");
    }
    let agent = AgentUnderTest::start(fast_config(&[nodes[0], nodes[1]], cluster.port)).await;
    eventually(WITHIN, "all three nodes active", || async {
        let seen = agent.nodes().await;
        seen.len() == 3 && seen.values().all(|(health, _, _)| health == "active")
    })
    .await;
    let failures = agent
        .metric("alternator_agent_discovery_request_failures_total")
        .await
        .unwrap();
    assert!(
        failures >= 1.0,
        "the bad answer was counted as a failed request"
    );
    agent.stop().await;
}

#[tokio::test]
async fn html_error_page_is_skipped() {
    bad_seed_then_good(
        11,
        200,
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    )
    .await;
}

#[tokio::test]
async fn truncated_json_is_skipped() {
    bad_seed_then_good(12, 200, r#"["127.0.12.1","127.0"#).await;
}

#[tokio::test]
async fn non_200_answer_is_skipped() {
    bad_seed_then_good(13, 503, "[]").await;
}

#[tokio::test]
async fn uuid_entries_are_dropped_and_addresses_kept() {
    let nodes = [ip(14, 1), ip(14, 2)];
    let cluster = FakeCluster::start(&nodes).await;
    let body = format!(
        r#"["{}","5f1b8e2a-6c3d-4c59-9a1e-2b9f6d0c7e11","{}"]"#,
        nodes[0], nodes[1]
    );
    for node in nodes {
        cluster.answer(node, "/localnodes", 200, &body);
        cluster.answer(node, "/", 200, "healthy");
    }
    let agent = AgentUnderTest::start(fast_config(&[nodes[0]], cluster.port)).await;
    eventually(WITHIN, "both addresses published", || async {
        agent.nodes().await.len() == 2
    })
    .await;
    let snapshot = agent.snapshot().await.unwrap();
    assert!(!snapshot.to_string().contains("5f1b8e2a"), "{snapshot}");
    agent.stop().await;
}

#[tokio::test]
async fn only_garbage_means_not_ready_and_metrics_say_so() {
    let nodes = [ip(15, 1)];
    let cluster = FakeCluster::start(&nodes).await;
    cluster.answer(nodes[0], "/localnodes", 200, "<html>maintenance</html>");
    let agent = AgentUnderTest::start(fast_config(&nodes, cluster.port)).await;
    eventually(WITHIN, "several failed rounds", || async {
        agent
            .metric("alternator_agent_refresh_consecutive_failures")
            .await
            .is_some_and(|v| v >= 2.0)
    })
    .await;
    assert_eq!(agent.get("/readyz").await.status, 503);
    assert_eq!(agent.get("/v1/nodes").await.status, 503);
    assert_eq!(agent.get("/healthz").await.status, 200);
    assert_eq!(agent.metric("alternator_agent_ready").await, Some(0.0));
    agent.stop().await;
}
