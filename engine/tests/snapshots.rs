//! How a stored snapshot reaches the workers that route on it: before any snapshot, a new
//! version on another worker's tick or within 32 requests, and a stored document a worker
//! cannot read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use alternator_engine::shared;
use alternator_engine::{Action, LogLevel};
use support::*;

fn version_of(root: &alternator_engine::Root<MockHost>) -> Option<u64> {
    root.worker().unwrap().current_view().map(|v| v.version())
}

fn other_nodes(version: u64) -> String {
    snapshot_json(
        version,
        &[
            node("127.0.0.4", "active"),
            node("127.0.0.5", "active"),
            node("127.0.0.6", "active"),
        ],
    )
}

#[test]
fn before_any_snapshot_requests_are_left_to_envoys_fallback_policy() {
    let host = MockHost::new();
    let mut root = configured(&host, "{}");
    let mut stream = MockStream::dynamodb("GetItem", "{}");
    stream
        .request_headers
        .insert("x-alternator-endpoints".into(), b"6.6.6.6:80".to_vec());
    let (mut flow, action) = send(&root, &mut stream);
    assert_eq!(action, Action::Continue);
    assert_eq!(stream.request_header_str("x-alternator-endpoints"), None);
    assert_eq!(stream.removed_headers, ["x-alternator-endpoints"]);
    assert_eq!(flow.candidates(), "");
    assert_eq!(stream.local_reply, None);
    stream.served(A, 200, 0, Some(1));
    flow.on_stream_end(&stream);

    assert_eq!(
        host.metric("alternator_routed_total;policy=no_snapshot"),
        None,
        "counted at the next flush"
    );
    root.on_tick();
    assert_eq!(
        host.metric("alternator_routed_total;policy=no_snapshot"),
        Some(1)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        None
    );
    assert_eq!(
        host.metrics()
            .keys()
            .filter(|n| n.starts_with("alternator_requests_total"))
            .count(),
        0,
        "a request the filter did not route is not counted against a node"
    );
}

#[test]
fn a_new_snapshot_reaches_another_worker_on_its_tick() {
    let (a_host, mut a, _, mut b) = two_workers("{}");
    poll_snapshot(&a_host, &mut a, &three_nodes(1));
    assert_eq!(version_of(&b), None);
    b.on_tick();
    assert_eq!(version_of(&b), Some(1));

    poll_snapshot(&a_host, &mut a, &other_nodes(2));
    assert_eq!(version_of(&a), Some(2), "the poller's worker at once");
    assert_eq!(version_of(&b), Some(1));
    b.on_tick();
    assert_eq!(version_of(&b), Some(2));
}

#[test]
fn a_new_snapshot_reaches_a_busy_worker_within_32_requests() {
    let (a_host, mut a, _, mut b) = two_workers("{}");
    poll_snapshot(&a_host, &mut a, &three_nodes(1));
    b.on_tick();

    poll_snapshot(&a_host, &mut a, &other_nodes(2));
    let mut switched_at = None;
    for n in 1..=40 {
        let header = route_one(&b).unwrap();
        let on_new = header.starts_with("127.0.0.4") || header.contains(",127.0.0.4");
        if on_new && switched_at.is_none() {
            switched_at = Some(n);
        }
        assert_eq!(on_new, switched_at.is_some(), "request {n}: {header}");
    }
    assert_eq!(
        switched_at,
        Some(32),
        "the version key is read on every 32nd request"
    );
}

#[test]
fn a_stored_snapshot_a_worker_cannot_read_keeps_its_previous_view() {
    let (a_host, mut a, b_host, mut b) = two_workers("{}");
    poll_snapshot(&a_host, &mut a, &three_nodes(1));
    b.on_tick();

    // Another filter build wrote a document this one cannot read.
    b_host.put_shared(shared::SNAPSHOT, br#"{"format":1,"version":9,"nodes":"#);
    b_host.put_shared(shared::SNAPSHOT_VERSION, b"9@1");
    b.on_tick();
    assert_eq!(version_of(&b), Some(1));
    assert_eq!(
        b_host.logged(
            LogLevel::Warn,
            "stored node snapshot is unreadable, keeping the previous one"
        ),
        1
    );
    assert_eq!(
        route_one(&b).as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
    );
    // Parsed once per version, not on every refresh.
    b.on_tick();
    b.on_tick();
    assert_eq!(
        b_host.logged(LogLevel::Warn, "stored node snapshot is unreadable"),
        1
    );

    // The next good version is picked up.
    poll_snapshot(&a_host, &mut a, &other_nodes(3));
    b.on_tick();
    assert_eq!(version_of(&b), Some(3));
}

#[test]
fn an_unreadable_snapshot_before_any_view_leaves_requests_to_the_fallback_policy() {
    let host = MockHost::new();
    let mut root = configured(&host, "{}");
    host.put_shared(shared::SNAPSHOT, b"garbage");
    host.put_shared(shared::SNAPSHOT_VERSION, b"1@1");
    root.on_tick();
    let _poll = host.take_calls();
    assert_eq!(version_of(&root), None);
    assert_eq!(route_one(&root), None);
}

#[test]
fn a_snapshot_without_a_node_in_the_configured_scope_is_stored_with_a_warning() {
    let (host, root) = worker_with(
        r#"{"scope":{"datacenter":"dc2","mode":"fallback"}}"#,
        &three_nodes(1),
    );
    assert_eq!(version_of(&root), Some(1));
    assert_eq!(
        host.logged(
            LogLevel::Warn,
            "no node of the snapshot is in scope datacenter \"dc2\" rack \"(any)\" (fallback mode)"
        ),
        1
    );
    // Fallback mode widens to the cluster.
    assert_eq!(
        route_one(&root).as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
    );
}
