//! The module's behaviour through a mock Envoy (`abi::mock`): configuration, the agent poll
//! over configuration callouts, routing headers and local replies, counters handed to Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex, MutexGuard};

use alternator_engine::request::NO_ROUTE_BODY;

use super::*;
use crate::abi::mock::{MockConfig, MockFilter};

/// The store and the poll lease are process-wide: these tests run one at a time, and each
/// destroys its configuration (which hands the lease back) before it ends.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn snapshot(version: u64, health: &str) -> String {
    let nodes: Vec<String> = (1..=3)
        .map(|i| {
            format!(
                r#"{{"address":"127.0.0.{i}","datacenter":"dc1","rack":"r1","health":"{health}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"format":1,"version":{version},"generated_at_ms":1763735000000,"scheme":"http","port":8000,"nodes":[{}]}}"#,
        nodes.join(",")
    )
}

fn configured(config: &str, first_callout: u64) -> (Arc<MockConfig>, ModuleConfig) {
    let envoy = MockConfig::new(first_callout);
    let module = ModuleConfig::new(envoy.clone(), b"alternator", config.as_bytes())
        .expect("the configuration is accepted");
    (envoy, module)
}

/// Ticks the module and answers the agent poll it sends.
fn answer_poll(envoy: &MockConfig, module: &ModuleConfig, answer: CalloutAnswer) -> u64 {
    module.on_scheduled(0);
    let callouts = envoy.take_callouts();
    assert_eq!(callouts.len(), 1, "one agent poll per tick: {callouts:?}");
    let poll = &callouts[0];
    assert_eq!(poll.cluster, "alternator_agent");
    assert!(poll.header(":path").unwrap().starts_with("/v1/nodes"));
    module.on_callout_done(poll.id, answer);
    poll.id
}

fn ok(version: u64, body: String) -> CalloutAnswer {
    CalloutAnswer {
        headers: vec![
            (":status".to_string(), "200".to_string()),
            ("etag".to_string(), format!("\"v{version}\"")),
        ],
        body: body.into_bytes(),
    }
}

/// A configuration (callout ids from `first_callout`) holding snapshot `version`, whose nodes
/// are all `health`; and the guard that keeps other tests out meanwhile.
fn holding(
    version: u64,
    health: &str,
    first_callout: u64,
) -> (MutexGuard<'static, ()>, Arc<MockConfig>, ModuleConfig) {
    let serial = serial();
    let (envoy, module) = configured("{}", first_callout);
    let id = answer_poll(&envoy, &module, ok(version, snapshot(version, health)));
    assert_eq!(id, first_callout);
    (serial, envoy, module)
}

/// A GetItem without a body through a new stream's request-headers hook: Envoy's side of the
/// stream, the module's, and what the hook answered.
fn get_item(module: &ModuleConfig) -> (MockFilter, FilterState, HookStatus) {
    let stream = MockFilter::request(&[
        (":method", "POST"),
        ("x-amz-target", "DynamoDB_20120810.GetItem"),
        // A client's own routing header is never obeyed.
        ("x-alternator-endpoints", "10.9.9.9:8000"),
    ]);
    let mut filter = module.new_filter();
    let status = filter.on_request_headers(&stream, true);
    (stream, filter, status)
}

#[test]
fn every_family_is_defined_with_its_labels_and_the_panic_counter() {
    let _serial = serial();
    let (envoy, module) = configured("{}", 1);
    let families = envoy.families();
    assert!(families.contains(&(
        false,
        "alternator_requests_total".to_string(),
        vec!["node".to_string(), "choice".to_string()]
    )));
    assert!(families.contains(&(true, "alternator_snapshot_version".to_string(), vec![])));
    assert!(families.contains(&(false, PANICS_METRIC.to_string(), vec![])));
    assert_eq!(families.len(), FAMILIES.len() + 1);
    assert!(envoy.logged(Level::Info, "native module configured"));
    module.destroy();
}

#[test]
fn an_invalid_configuration_is_refused_with_the_field_it_names() {
    let _serial = serial();
    let envoy = MockConfig::new(1);
    let module = ModuleConfig::new(
        envoy.clone(),
        b"alternator",
        br#"{"agent": {"cluster": ""}}"#,
    );
    assert!(module.is_none());
    assert!(envoy.logged(Level::Error, "agent.cluster"));
}

#[test]
fn a_request_gets_the_routing_header_and_is_counted() {
    let (_serial, envoy, module) = holding(41, "active", 1);

    let (stream, mut filter, status) = get_item(&module);
    assert_eq!(status, HookStatus::Continue);
    assert_eq!(stream.request_header_count("x-alternator-endpoints"), 1);
    let header = stream.request_header("x-alternator-endpoints").unwrap();
    let candidates: Vec<&str> = header.split(',').collect();
    assert_eq!(candidates.len(), 3, "{header}");
    for candidate in &candidates {
        assert!(
            candidate.starts_with("127.0.0.") && candidate.ends_with(":8000"),
            "{header}"
        );
    }
    assert!(stream.replies().is_empty());

    stream.served(candidates[0], 200);
    filter.on_response_headers(&stream, false);
    filter.on_stream_complete(&stream);
    // Workers count into atomics; the main thread hands the sums to Envoy on its tick.
    assert_eq!(
        envoy.metric("alternator_routed_total", &["round_robin"]),
        None
    );
    module.on_scheduled(0);
    assert_eq!(
        envoy.metric("alternator_routed_total", &["round_robin"]),
        Some(1)
    );
    assert_eq!(
        envoy.metric("alternator_requests_total", &[candidates[0], "first"]),
        Some(1)
    );
    assert_eq!(
        envoy.metric("alternator_agent_polls_total", &["updated"]),
        Some(1)
    );
    assert_eq!(envoy.metric("alternator_snapshot_nodes", &[]), Some(3));
    module.destroy();
}

#[test]
fn no_node_to_serve_is_a_503_the_sdk_retries() {
    let (_serial, envoy, module) = holding(42, "down", 1);

    let (stream, mut filter, status) = get_item(&module);
    assert_eq!(status, HookStatus::Stop);
    let replies = stream.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 503);
    assert_eq!(replies[0].body, NO_ROUTE_BODY);
    assert_eq!(replies[0].details, "alternator_mesh_local_reply");
    assert_eq!(stream.request_header("x-alternator-endpoints"), None);
    filter.on_stream_complete(&stream);
    module.on_scheduled(0);
    assert_eq!(envoy.metric("alternator_no_route_total", &[]), Some(1));
    module.destroy();
}

#[test]
fn agent_answers_are_classified_and_bad_ones_keep_the_snapshot() {
    let (_serial, envoy, module) = holding(43, "active", 1);
    // A callout that failed without a response: no headers at all.
    answer_poll(&envoy, &module, CalloutAnswer::default());
    module.on_scheduled(0);
    assert_eq!(
        envoy.metric("alternator_agent_polls_total", &["failed"]),
        Some(1)
    );
    // The error backoff passes before the next poll; the snapshot stays in use meanwhile.
    let (stream, mut filter, status) = get_item(&module);
    assert_eq!(status, HookStatus::Continue);
    assert!(stream.request_header("x-alternator-endpoints").is_some());
    filter.on_stream_complete(&stream);
    // An answer to a callout the poller did not start changes nothing.
    module.on_callout_done(999_999, ok(44, "not a snapshot".to_string()));
    module.on_scheduled(0);
    assert_eq!(
        envoy.metric("alternator_agent_polls_total", &["invalid"]),
        None
    );
    assert_eq!(envoy.metric("alternator_snapshot_version", &[]), Some(43));
    module.destroy();
}

#[test]
fn envoy_callout_ids_beyond_u32_reach_the_engine_whole() {
    // Ids that agree in their low 32 bits: only the whole u64 tells the answers apart.
    let (_serial, envoy, module) = holding(45, "active", (7u64 << 32) | 1);
    module.on_scheduled(0);
    assert_eq!(
        envoy.metric("alternator_agent_polls_total", &["updated"]),
        Some(1)
    );
    assert_eq!(envoy.metric("alternator_snapshot_version", &[]), Some(45));
    // The long-poll now in flight is answered only under its own id.
    let long_poll = envoy.take_callouts().pop().expect("the next poll");
    module.on_callout_done(long_poll.id & u64::from(u32::MAX), CalloutAnswer::default());
    module.on_callout_done(long_poll.id, ok(46, snapshot(46, "active")));
    module.on_scheduled(0);
    assert_eq!(
        envoy.metric("alternator_agent_polls_total", &["failed"]),
        None
    );
    assert_eq!(envoy.metric("alternator_snapshot_version", &[]), Some(46));
    module.destroy();
}
