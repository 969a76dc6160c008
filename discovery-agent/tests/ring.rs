//! Ring discovery (`--ring-tables`) end to end: the agent reads token ownership through
//! Alternator's internal tables and publishes it in `/v1/nodes`, as a filter reads it.
//!
//! Most tests run against a scripted Alternator (`ring_fake`) whose model they edit while the
//! agent runs: vnodes with broadcast addresses that differ from the listed ones, tablets and a
//! migration, nodes joining and leaving, tables coming and going, refused and signed requests,
//! malformed rows and rings with holes. SigV4 signatures are checked by alternator-sim's
//! verifier (`--enforce-auth`).

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ring_fake;

use std::net::IpAddr;
use std::time::Duration;

use alternator_discovery_agent::config::RingTables;
use alternator_discovery_agent::ring_discovery::client::CallError;
use alternator_discovery_agent::sigv4::{Credentials, Secret};
use alternator_discovery_agent::Config;
use alternator_routing::ring::Layout;
use alternator_routing::snapshot::NodeSnapshot;
use common::{
    capture_logs, eventually, fast_config, metric, published, ring_refreshes, sim_signer,
    wait_for_refused_ring_rounds, AgentUnderTest, SimDynamo,
};
use ring_fake::{tablets, vnode_ring, FakeAlternator, FakeLayout, FakeNode, Model};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(15);

fn ring_config(fake: &FakeAlternator, tables: RingTables) -> Config {
    common::fast_ring_config(fake.rpc(0), fake.port, tables, Duration::from_millis(800))
}

fn named(tables: &[&str]) -> RingTables {
    RingTables::Named(tables.iter().map(|t| (*t).to_owned()).collect())
}

/// A table's ring as `(end token, replica addresses)` per range, ascending.
type Owners = Vec<(i64, Vec<IpAddr>)>;

/// What the model says the agent should publish for `table`: every range by end token, the
/// replicas that serve reads, by listed (RPC) address.
fn expected(model: &Model, table: &str) -> Owners {
    let address = |i: &usize| model.nodes[*i].rpc;
    let mut owners: Owners = match &model.tables[table].layout {
        FakeLayout::Vnodes(ranges) => ranges
            .iter()
            .map(|(_, end, replicas)| (*end, replicas.iter().map(address).collect()))
            .collect(),
        FakeLayout::Tablets(tablets) => tablets
            .iter()
            .map(|(last, replicas, migration)| {
                let reads = match migration {
                    Some((new, stage))
                        if ["write_both_read_new", "use_new", "cleanup", "end_migration"]
                            .contains(&stage.as_str()) =>
                    {
                        new
                    }
                    _ => replicas,
                };
                (*last, reads.iter().map(address).collect())
            })
            .collect(),
    };
    owners.sort_by_key(|o| o.0);
    owners
}

/// The published ring of `table`, replicas in placement order.
fn actual(snapshot: &NodeSnapshot, table: &str) -> Option<Owners> {
    common::published_owners(snapshot, table)
}

/// Waits until the published ring of `table` is what the model says.
async fn ring_matches(agent: &AgentUnderTest, fake: &FakeAlternator, table: &str) -> NodeSnapshot {
    common::wait_for_ring(agent, table, WITHIN, || fake.edit(|m| expected(m, table))).await
}

async fn total_rounds(agent: &AgentUnderTest) -> f64 {
    let mut sum = 0.0;
    for outcome in ["ok", "refused", "error"] {
        sum += ring_refreshes(agent, outcome).await;
    }
    sum
}

/// How many ring rows the agent skipped for `reason`.
async fn rows_skipped(agent: &AgentUnderTest, reason: &str) -> f64 {
    metric(
        agent,
        &format!("alternator_agent_ring_rows_skipped_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// Waits until the agent has skipped at least one ring row for each of `reasons`.
async fn wait_for_skipped_rows(agent: &AgentUnderTest, reasons: &[&str]) {
    eventually(WITHIN, &format!("rows skipped for {reasons:?}"), || async {
        for reason in reasons {
            if rows_skipped(agent, reason).await < 1.0 {
                return false;
            }
        }
        true
    })
    .await;
}

/// Waits for `n` more ring rounds of any outcome.
async fn rounds(agent: &AgentUnderTest, n: f64) {
    let start = total_rounds(agent).await;
    eventually(WITHIN, &format!("{n} more ring rounds"), || async {
        total_rounds(agent).await >= start + n
    })
    .await;
}

#[tokio::test]
async fn vnode_ring_maps_broadcast_addresses_and_follows_pages() {
    let fake = FakeAlternator::start(41, 3, true).await;
    fake.add_table("users", FakeLayout::Vnodes(vnode_ring(3, 8, 2, 7)));
    fake.edit(|m| {
        m.page_size = 7;
        // Node 2 cannot serve DynamoDB requests: the agent asks another one.
        let second = m.nodes[1].rpc;
        m.post_unavailable.insert(second);
    });
    let agent = AgentUnderTest::start(ring_config(&fake, named(&["users", "not_there"]))).await;
    let snapshot = ring_matches(&agent, &fake, "users").await;
    let ring = snapshot.ring().unwrap();
    let table = ring.table("users").unwrap();
    assert_eq!(table.layout(), Layout::Vnodes);
    assert_eq!(table.hash_key(), "pk");
    assert_eq!(table.len(), 24);
    assert!(ring.table("not_there").is_none());
    assert!(ring.version() > 0);
    assert_eq!(metric(&agent, "alternator_agent_ring_tables").await, 1.0);
    assert!(
        metric(
            &agent,
            "alternator_agent_ring_last_success_timestamp_seconds"
        )
        .await
            > 0.0
    );
    assert_eq!(rows_skipped(&agent, "bad_token").await, 0.0);

    // One request per internal table per round for the whole agent: peers and local once,
    // token_ring once per vnode table (its pages aside); system.tablets only while the layout
    // was unknown.
    fake.edit(|m| m.page_size = 10_000);
    rounds(&agent, 1.0).await;
    let before = fake.posts().len();
    rounds(&agent, 3.0).await;
    let posts = fake.posts();
    let unavailable = fake.rpc(1);
    let later: Vec<_> = posts[before..]
        .iter()
        .filter(|(host, _, _)| *host != unavailable)
        .collect();
    let count = |table: &str| later.iter().filter(|(_, _, t)| t.ends_with(table)).count();
    let (peers, local, token_ring) = (
        count("system.peers"),
        count("system.local"),
        count("system.token_ring"),
    );
    assert!(peers >= 2, "{later:?}");
    assert!(
        peers.abs_diff(local) <= 1 && local.abs_diff(token_ring) <= 1,
        "{later:?}"
    );
    assert_eq!(count("system.tablets"), 0, "{later:?}");
    let tablets_queries = posts
        .iter()
        .filter(|(_, _, t)| t.ends_with("system.tablets"))
        .count();
    assert_eq!(
        tablets_queries, 1,
        "only while the layout was unknown: {posts:?}"
    );

    // Rows the agent must skip: a bad token; a replica it cannot map (the range stays).
    fake.edit(|m| {
        let (start, end, _) = match &m.tables["users"].layout {
            FakeLayout::Vnodes(r) => r[0].clone(),
            FakeLayout::Tablets(_) => unreachable!(),
        };
        m.extra_token_ring_rows = vec![
            json!({"table_name": {"S": "<ALL>"}, "start_token": {"S": "12x"},
                   "end_token": {"S": "5"}, "endpoint": {"S": "127.1.41.1"}}),
            json!({"table_name": {"S": "<ALL>"}, "start_token": {"S": start.to_string()},
                   "end_token": {"S": end.to_string()}, "endpoint": {"S": "10.99.0.1"}}),
        ];
    });
    wait_for_skipped_rows(&agent, &["bad_token", "unknown_address"]).await;
    ring_matches(&agent, &fake, "users").await;
    agent.stop().await;
}

#[tokio::test]
async fn tablet_ring_follows_a_migration() {
    let fake = FakeAlternator::start(42, 4, false).await;
    fake.add_table("orders", FakeLayout::Tablets(tablets(16, 4, 3)));
    let agent = AgentUnderTest::start(ring_config(&fake, named(&["orders"]))).await;
    let before = ring_matches(&agent, &fake, "orders").await;
    assert_eq!(
        before.ring().unwrap().table("orders").unwrap().layout(),
        Layout::Tablets
    );
    assert_eq!(before.ring().unwrap().table("orders").unwrap().len(), 16);

    // Tablet 5 moves its third replica from node 4 (index 3) to node 2 (index 1). While the
    // data streams, reads stay on the old replicas.
    let set_stage = |stage: &str| {
        fake.edit(|m| {
            if let FakeLayout::Tablets(t) = &mut m.tables.get_mut("orders").unwrap().layout {
                let (_, replicas, migration) = &mut t[5];
                assert_eq!(replicas, &vec![1, 2, 3]);
                *migration = Some((vec![1, 2, 0], stage.to_owned()));
            }
        })
    };
    set_stage("streaming");
    rounds(&agent, 3.0).await;
    let streaming = published(&agent).await.unwrap();
    assert_eq!(
        streaming.version(),
        before.version(),
        "nothing changed for readers"
    );
    assert_eq!(actual(&streaming, "orders"), actual(&before, "orders"));

    set_stage("write_both_read_new");
    let moved = ring_matches(&agent, &fake, "orders").await;
    assert!(moved.version() > before.version());
    assert!(moved.ring().unwrap().version() > before.ring().unwrap().version());
    assert_ne!(actual(&moved, "orders"), actual(&before, "orders"));

    // The migration ends: replicas = the new ones; readers see no further change.
    fake.edit(|m| {
        if let FakeLayout::Tablets(t) = &mut m.tables.get_mut("orders").unwrap().layout {
            t[5].1 = vec![1, 2, 0];
            t[5].2 = None;
        }
    });
    rounds(&agent, 3.0).await;
    let done = ring_matches(&agent, &fake, "orders").await;
    assert_eq!(done.version(), moved.version());
    agent.stop().await;
}

#[tokio::test]
async fn joining_and_leaving_nodes_reindex_the_ring() {
    let fake = FakeAlternator::start(43, 3, true).await;
    fake.add_table("events", FakeLayout::Vnodes(vnode_ring(3, 4, 2, 11)));
    let agent = AgentUnderTest::start(ring_config(&fake, named(&["events"]))).await;
    ring_matches(&agent, &fake, "events").await;

    // A fourth node joins and takes vnodes.
    fake.edit(|m| {
        m.nodes.push(FakeNode {
            rpc: IpAddr::from([127, 0, 43, 4]),
            broadcast: IpAddr::from([127, 1, 43, 4]),
            host_id: ring_fake::host_id(3),
        });
        m.tables.get_mut("events").unwrap().layout = FakeLayout::Vnodes(vnode_ring(4, 4, 2, 12));
    });
    let grown = ring_matches(&agent, &fake, "events").await;
    assert_eq!(grown.nodes().len(), 4);

    // The first node leaves: its ranges go to the others, and every index moves.
    fake.edit(|m| {
        m.nodes.remove(0);
        m.tables.get_mut("events").unwrap().layout = FakeLayout::Vnodes(vnode_ring(3, 4, 2, 13));
    });
    let shrunk = ring_matches(&agent, &fake, "events").await;
    assert_eq!(shrunk.nodes().len(), 3);
    assert!(shrunk.version() > grown.version());
    agent.stop().await;
}

#[tokio::test]
async fn all_tables_come_and_go_with_the_cluster() {
    let fake = FakeAlternator::start(44, 3, false).await;
    fake.edit(|m| m.page_size = 2);
    fake.add_table("alpha", FakeLayout::Vnodes(vnode_ring(3, 4, 3, 1)));
    fake.add_table("beta", FakeLayout::Tablets(tablets(8, 3, 2)));
    fake.add_table("gamma", FakeLayout::Tablets(tablets(4, 3, 3)));
    let agent = AgentUnderTest::start(ring_config(&fake, RingTables::All)).await;
    for table in ["alpha", "beta", "gamma"] {
        ring_matches(&agent, &fake, table).await;
    }
    assert_eq!(metric(&agent, "alternator_agent_ring_tables").await, 3.0);

    fake.edit(|m| m.tables.remove("beta"));
    fake.add_table("delta", FakeLayout::Tablets(tablets(2, 3, 1)));
    let snapshot = ring_matches(&agent, &fake, "delta").await;
    let names: Vec<&str> = snapshot
        .ring()
        .unwrap()
        .tables()
        .iter()
        .map(|t| t.table())
        .collect();
    assert_eq!(names, ["alpha", "delta", "gamma"]);
    eventually(WITHIN, "three tables counted", || async {
        metric(&agent, "alternator_agent_ring_tables").await == 3.0
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_ring_with_a_hole_is_refused_and_the_previous_one_kept() {
    let fake = FakeAlternator::start(45, 3, false).await;
    fake.add_table("items", FakeLayout::Tablets(tablets(8, 3, 2)));
    let agent = AgentUnderTest::start(ring_config(&fake, named(&["items"]))).await;
    let good = ring_matches(&agent, &fake, "items").await;
    let good_ring = actual(&good, "items");

    // The last tablet vanishes from the answer: the tokens up to the largest are nobody's.
    // (A tablet missing in the middle cannot be told apart from a merged one.)
    fake.edit(|m| {
        if let FakeLayout::Tablets(t) = &mut m.tables.get_mut("items").unwrap().layout {
            t.pop();
        }
    });
    eventually(
        WITHIN,
        "the ring with a hole counted as rejected",
        || async {
            metric(
                &agent,
                "alternator_agent_ring_rejected_total{reason=\"gap\"}",
            )
            .await
                >= 2.0
        },
    )
    .await;
    let kept = published(&agent).await.unwrap();
    assert_eq!(
        actual(&kept, "items"),
        good_ring,
        "the previous ring stays published"
    );
    assert_eq!(kept.version(), good.version());

    // A row without a usable token is skipped, not fatal; an unmappable replica is dropped.
    fake.edit(|m| {
        m.tables.get_mut("items").unwrap().layout = FakeLayout::Tablets(tablets(8, 3, 2));
        m.extra_tablet_rows = vec![
            json!({"last_token": {"S": "not a token"}, "replicas": {"S": "x"}}),
            json!({"last_token": {"N": "17"}, "replicas": {"S": "no replica here"}}),
        ];
    });
    wait_for_skipped_rows(&agent, &["bad_token", "bad_replicas"]).await;
    ring_matches(&agent, &fake, "items").await;
    agent.stop().await;
}

#[tokio::test]
async fn refused_ring_reads_keep_the_node_list_and_log_once() {
    let (logs, _guard) = capture_logs(tracing::Level::INFO);

    let fake = FakeAlternator::start(46, 3, false).await;
    fake.add_table("users", FakeLayout::Tablets(tablets(4, 3, 2)));
    fake.edit(|m| m.auth = Some("AKIDRING".to_owned()));
    let agent = AgentUnderTest::start(ring_config(&fake, named(&["users"]))).await;
    wait_for_refused_ring_rounds(&agent, 3, WITHIN).await;
    let snapshot = agent.snapshot().await.unwrap();
    assert!(snapshot.get("ring").is_none(), "{snapshot}");
    assert_eq!(metric(&agent, "alternator_agent_ring_tables").await, 0.0);
    let text = logs.text();
    assert_eq!(
        text.matches("refused ring discovery").count(),
        1,
        "logged once:\n{text}"
    );
    // A refusal stops the round at its first request.
    let posts = fake.posts();
    assert!(
        posts
            .iter()
            .all(|(_, op, t)| op == "Scan" && t.ends_with("peers")),
        "{posts:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn signed_ring_reads_are_accepted_and_secrets_stay_out_of_logs() {
    let (logs, _guard) = capture_logs(tracing::Level::DEBUG);

    let fake = FakeAlternator::start(47, 3, false).await;
    fake.add_table("users", FakeLayout::Tablets(tablets(4, 3, 2)));
    fake.edit(|m| m.auth = Some("AKIDRING".to_owned()));
    let mut config = ring_config(&fake, named(&["users"]));
    config.ring_discovery.as_mut().unwrap().credentials = Some(Credentials {
        access_key_id: "AKIDRING".into(),
        secret_access_key: Secret::new("ring-secret-never-logged"),
    });
    let agent = AgentUnderTest::start(config).await;
    ring_matches(&agent, &fake, "users").await;
    assert_eq!(ring_refreshes(&agent, "refused").await, 0.0);
    let metrics = agent.get("/metrics").await.body;
    agent.stop().await;
    let text = logs.text();
    assert!(text.contains("ring discovery on"), "{text}");
    assert!(!text.contains("ring-secret-never-logged"));
    assert!(!metrics.contains("ring-secret-never-logged"));
}

#[tokio::test]
async fn with_ring_discovery_off_no_dynamodb_request_is_sent() {
    let fake = FakeAlternator::start(48, 3, false).await;
    fake.add_table("users", FakeLayout::Tablets(tablets(4, 3, 2)));
    let agent = AgentUnderTest::start(fast_config(&[fake.rpc(0)], fake.port)).await;
    eventually(
        WITHIN,
        "three active nodes and five refresh rounds",
        || async {
            let nodes = agent.nodes().await;
            nodes.len() == 3
                && nodes.values().all(|(h, _, _)| h == "active")
                && metric(&agent, "alternator_agent_refresh_rounds_total").await >= 5.0
        },
    )
    .await;
    assert!(fake.posts().is_empty(), "{:?}", fake.posts());
    let reply = agent.get("/v1/nodes").await;
    let document: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let mut keys: Vec<&String> = document.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "format",
            "generated_at_ms",
            "nodes",
            "port",
            "scheme",
            "version"
        ]
    );
    // Byte for byte what the snapshot model writes without a ring.
    let parsed = NodeSnapshot::from_json(reply.body.as_bytes()).unwrap();
    assert_eq!(parsed.to_json(), reply.body);
    assert!(parsed.ring().is_none());
    assert_eq!(metric(&agent, "alternator_agent_ring_tables").await, 0.0);
    agent.stop().await;
}

#[tokio::test]
async fn signatures_pass_the_sim_verifier() {
    use alternator_sim::{NodeSpec, Sim, SimConfig};
    let address = common::ip(49, 1);
    let mut config = SimConfig::new(vec![NodeSpec::new(address, "dc1", "r1")]);
    config.enforce_auth = Some("AKIDSIM:sim-secret".parse().unwrap());
    let sim = Sim::start(config).await.unwrap();
    let dynamo = SimDynamo::new(&sim);
    let good = sim_signer("sim-secret");
    let bad = sim_signer("wrong-secret");
    let client = |signer| dynamo.client(signer);
    let host = address.to_string();
    let (names, pages) = client(Some(&good)).list_tables(&host).await.unwrap();
    assert!(names.is_empty() && pages == 1, "{names:?}");
    let described = client(Some(&good))
        .call(&host, "DescribeTable", &json!({"TableName": "nope"}))
        .await;
    assert!(
        matches!(described, Err(CallError::NotFound(_))),
        "{described:?}"
    );
    for (signer, kind) in [
        (None, "MissingAuthenticationTokenException"),
        (Some(&bad), "InvalidSignatureException"),
    ] {
        match client(signer).list_tables(&host).await {
            Err(CallError::Refused { kind: got, .. }) => assert_eq!(got, kind),
            other => panic!("{other:?}"),
        }
    }
    sim.shutdown().await;
}

#[test]
fn help_lists_the_ring_flags_and_never_a_secret_value() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_alternator-discovery-agent"))
        .arg("--help")
        .env(
            "ALTERNATOR_AGENT_RING_SECRET_ACCESS_KEY",
            "help-must-not-show-this",
        )
        .env("AWS_SECRET_ACCESS_KEY", "nor-this")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--ring-tables",
        "--ring-refresh-active",
        "--ring-refresh-idle",
        "--ring-request-timeout",
        "--ring-access-key-id",
        "--ring-secret-access-key",
        "--ring-credentials-file",
        "--ring-region",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(!help.contains("help-must-not-show-this") && !help.contains("nor-this"));
}

#[test]
fn bad_ring_flags_exit_64_naming_the_flag_without_the_secret() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_alternator-discovery-agent"))
        .args(["--seeds", "127.0.0.1", "--ring-tables", "all"])
        .args(["--ring-access-key-id", "AKID"])
        .args(["--ring-secret-access-key", "bad secret value"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--ring-secret-access-key"), "{stderr}");
    assert!(!stderr.contains("bad secret value"), "{stderr}");
}
