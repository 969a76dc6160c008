//! Refresh cadence under paused time, with an in-memory cluster behind the `Transport` seam:
//! idle cadence without traffic, active cadence while a filter reports traffic, one request
//! per scope per refresh whatever the node count, and jittered exponential backoff when
//! nothing answers.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alternator_discovery_agent::transport::{Answer, FetchError, Transport};
use alternator_discovery_agent::Config;
use alternator_routing::scope::ScopeMode;
use bytes::Bytes;
use common::{http, AgentUnderTest};
use tokio::time::Instant;

#[derive(Default)]
struct State {
    nodes: Vec<IpAddr>,
    unreachable: bool,
    log: Vec<(Instant, String, String)>,
}

/// Every node answers `/localnodes` (any scope) with all nodes and `GET /` with 200, unless the
/// whole cluster is unreachable.
#[derive(Clone, Default)]
struct MemoryCluster(Arc<Mutex<State>>);

impl MemoryCluster {
    fn with_nodes(count: u8) -> Self {
        let cluster = MemoryCluster::default();
        cluster.0.lock().unwrap().nodes =
            (1..=count).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        cluster
    }

    fn discovery_times(&self) -> Vec<Instant> {
        let state = self.0.lock().unwrap();
        state
            .log
            .iter()
            .filter(|(_, _, path)| path.starts_with("/localnodes"))
            .map(|(t, _, _)| *t)
            .collect()
    }

    fn discovery_count(&self) -> usize {
        self.discovery_times().len()
    }
}

impl Transport for MemoryCluster {
    async fn get(&self, host: &str, path: &str, timeout: Duration) -> Result<Answer, FetchError> {
        let mut state = self.0.lock().unwrap();
        state
            .log
            .push((Instant::now(), host.to_owned(), path.to_owned()));
        if state.unreachable {
            return Err(FetchError::TimedOut {
                target: format!("{host}{path}"),
                after: timeout,
            });
        }
        let body = if path.starts_with("/localnodes") {
            serde_json::to_string(
                &state
                    .nodes
                    .iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        } else {
            "healthy".to_owned()
        };
        Ok(Answer {
            status: 200,
            body: Bytes::from(body),
        })
    }
}

fn config() -> Config {
    let mut config = Config::with_seeds(["10.0.0.1"]);
    config.idle_after = Duration::from_secs(10);
    config
}

#[tokio::test(start_paused = true)]
async fn idle_cadence_then_active_while_traffic_is_reported() {
    let cluster = MemoryCluster::with_nodes(3);
    let agent = AgentUnderTest::start_with(config(), cluster.clone()).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let first_version = agent.snapshot().await.unwrap()["version"].clone();
    // To t = 330 s: mid-way between two idle refreshes (0, 60, ..., 300, then 360).
    tokio::time::sleep(Duration::from_secs(329)).await;
    let idle = cluster.discovery_count();
    assert_eq!(
        agent.snapshot().await.unwrap()["version"],
        first_version,
        "refreshes that change nothing do not bump the version"
    );
    assert!(
        (5..=6).contains(&idle),
        "one refresh per 60 s idle interval, got {idle}"
    );

    // A filter reports traffic: the next refresh comes at once, then every second.
    let before = cluster.discovery_count();
    http(agent.addr, "GET", "/v1/nodes?traffic=1", &[], "").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        cluster.discovery_count(),
        before + 1,
        "traffic after idle refreshes at once"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let active = cluster.discovery_count() - before;
    assert!(
        (5..=7).contains(&active),
        "about one refresh per second while active, got {active}"
    );
    assert_eq!(
        agent.metric("alternator_agent_active_cadence").await,
        Some(1.0)
    );

    // No more traffic: after the 10 s idle window the cadence drops back to 60 s.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let settled = cluster.discovery_count();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let late = cluster.discovery_count() - settled;
    assert!(
        late <= 3,
        "idle again: at most 3 refreshes in 120 s, got {late}"
    );
    assert_eq!(
        agent.metric("alternator_agent_active_cadence").await,
        Some(0.0)
    );
    agent.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_request_per_scope_per_refresh_whatever_the_node_count() {
    let cluster = MemoryCluster::with_nodes(100);
    let mut config = config();
    config.datacenter = Some("dc1".into());
    config.rack = Some("r1".into());
    config.scope_mode = ScopeMode::Fallback;
    config.idle_interval = Duration::from_secs(1);
    let agent = AgentUnderTest::start_with(config, cluster.clone()).await;
    tokio::time::sleep(Duration::from_millis(9_500)).await;
    let rounds = agent
        .metric("alternator_agent_refresh_rounds_total")
        .await
        .unwrap();
    let requests = cluster.discovery_count() as f64;
    assert_eq!(rounds, 10.0);
    // Rack and datacenter queries; the cluster query is skipped because they found nodes.
    assert_eq!(
        requests / rounds,
        2.0,
        "{requests} /localnodes requests in {rounds} rounds"
    );
    agent.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_with_jitter_while_nothing_answers() {
    let cluster = MemoryCluster::with_nodes(3);
    cluster.0.lock().unwrap().unreachable = true;
    let mut config = config();
    config.max_backoff = Duration::from_secs(8);
    let agent = AgentUnderTest::start_with(config, cluster.clone()).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let times = cluster.discovery_times();
    assert!(times.len() >= 6, "{} attempts", times.len());
    for (n, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        // After failure n+1 the ceiling is 1 s * 2^n capped at 8 s; equal jitter keeps the
        // delay within [ceiling/2, ceiling].
        let ceiling = Duration::from_secs(1u64 << n.min(3));
        assert!(
            gap >= ceiling / 2 && gap <= ceiling,
            "gap {n} was {gap:?}, expected within [{:?}, {ceiling:?}]",
            ceiling / 2
        );
    }
    assert_eq!(agent.get("/readyz").await.status, 503);
    agent.stop().await;
}

#[tokio::test(start_paused = true)]
async fn known_nodes_share_the_discovery_load_and_seeds_are_spared() {
    let cluster = MemoryCluster::with_nodes(3);
    let mut config = config();
    config.idle_interval = Duration::from_secs(1);
    let agent = AgentUnderTest::start_with(config, cluster.clone()).await;
    tokio::time::sleep(Duration::from_millis(29_500)).await;
    let mut asked: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, host, path) in cluster.0.lock().unwrap().log.iter() {
        if path.starts_with("/localnodes") {
            *asked.entry(host.clone()).or_default() += 1;
        }
    }
    // 30 refreshes: the first goes to the seed (nothing else is known yet), then the three
    // active nodes take turns.
    assert_eq!(asked.values().sum::<usize>(), 30, "{asked:?}");
    for node in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        let n = asked.get(node).copied().unwrap_or(0);
        assert!((9..=11).contains(&n), "{node} asked {n} times: {asked:?}");
    }
    agent.stop().await;
}
