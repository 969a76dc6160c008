//! Passive health: what each way a request ends says about the nodes it went to, when a
//! node is taken out of the plans and when it comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use alternator_engine::shared;
use alternator_engine::{LogLevel, Root};
use alternator_routing::passive::envoy_flags::{
    UPSTREAM_CONNECTION_FAILURE, UPSTREAM_CONNECTION_TERMINATION, UPSTREAM_REMOTE_RESET,
    UPSTREAM_REQUEST_TIMEOUT, UPSTREAM_RETRY_LIMIT_EXCEEDED,
};
use support::*;

const DOWN: &str = "alternator_node_health_changes_total;outcome=down";
const ACTIVE: &str = "alternator_node_health_changes_total;outcome=active";
/// `UO`: upstream overflow, a proxy-side condition that says nothing about the node.
const UPSTREAM_OVERFLOW: u64 = 1 << 7;

fn first(header: &str) -> &str {
    header.split(',').next().unwrap()
}

/// Sends requests answered by their first choice until `A` has been the first choice `n`
/// times (round robin over three nodes: every third request): each time it answers `code`
/// with `flags`; the other nodes answer 200.
fn a_answers(root: &Root<MockHost>, n: usize, code: u64, flags: u64) {
    let mut done = 0;
    for _ in 0..n * 3 + 3 {
        if done == n {
            return;
        }
        let mut stream = MockStream::dynamodb("GetItem", "{}");
        let (mut flow, _) = send(root, &mut stream);
        let header = stream.request_header_str("x-alternator-endpoints").unwrap();
        if first(&header) == A {
            stream.served(A, code, flags, Some(1));
            done += 1;
        } else {
            stream.served(first(&header), 200, 0, Some(1));
        }
        flow.on_stream_end(&stream);
    }
    assert_eq!(done, n, "127.0.0.1 was not the first choice often enough");
}

fn tracked(entries: &[(&str, &str, u64)]) -> BTreeMap<String, (String, u64)> {
    entries
        .iter()
        .map(|(ip, state, failures)| (ip.to_string(), (state.to_string(), *failures)))
        .collect()
}

/// The routing headers of the next `n` requests.
fn next_headers(root: &Root<MockHost>, n: usize) -> Vec<String> {
    (0..n).map(|_| route_one(root).unwrap()).collect()
}

#[test]
fn every_transport_failure_flag_counts_and_ten_in_a_row_take_the_node_down() {
    for (name, flags, code) in [
        ("UF", UPSTREAM_CONNECTION_FAILURE, 503),
        ("UR", UPSTREAM_REMOTE_RESET, 503),
        ("UC", UPSTREAM_CONNECTION_TERMINATION, 503),
        ("URX", UPSTREAM_RETRY_LIMIT_EXCEEDED, 503),
        ("UF with a 200", UPSTREAM_CONNECTION_FAILURE, 200),
    ] {
        let (host, mut root) = worker_with("{}", &three_nodes(1));
        a_answers(&root, 9, code, flags);
        assert_eq!(
            passive_table(&host),
            tracked(&[("127.0.0.1", "active", 9)]),
            "{name}"
        );
        root.on_tick();
        assert_eq!(host.metric(DOWN), None, "{name}");

        a_answers(&root, 1, code, flags);
        assert_eq!(
            passive_table(&host),
            tracked(&[("127.0.0.1", "down", 10)]),
            "{name}"
        );
        root.on_tick();
        assert_eq!(host.metric(DOWN), Some(1), "{name}");
        assert_eq!(
            host.logged(
                LogLevel::Warn,
                "node 127.0.0.1:8000 is DOWN after consecutive transport failures; skipped for 10000 ms"
            ),
            1,
            "{name}"
        );
        let headers = next_headers(&root, 6);
        for header in &headers {
            assert!(
                header == "127.0.0.2:8000,127.0.0.3:8000"
                    || header == "127.0.0.3:8000,127.0.0.2:8000",
                "{name}: {header}"
            );
        }
    }
}

#[test]
fn a_timeout_counts_for_half_the_threshold_so_two_in_a_row_take_the_node_down() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    a_answers(&root, 1, 504, UPSTREAM_REQUEST_TIMEOUT);
    assert_eq!(passive_table(&host), tracked(&[("127.0.0.1", "active", 5)]));
    assert_eq!(
        next_headers(&root, 3)
            .iter()
            .filter(|h| first(h) == A)
            .count(),
        1
    );

    a_answers(
        &root,
        1,
        504,
        UPSTREAM_REQUEST_TIMEOUT | UPSTREAM_RETRY_LIMIT_EXCEEDED,
    );
    assert_eq!(passive_table(&host), tracked(&[("127.0.0.1", "down", 10)]));
    root.on_tick();
    assert_eq!(host.metric(DOWN), Some(1));
    assert_eq!(
        host.logged(
            LogLevel::Warn,
            "node 127.0.0.1:8000 is DOWN after consecutive timeouts; skipped for 10000 ms"
        ),
        1
    );
    assert!(next_headers(&root, 6).iter().all(|h| !h.contains(A)));
}

#[test]
fn timeouts_to_down_sets_how_many_timeouts_take_a_node_down() {
    for (timeouts_to_down, failures_each) in [(1u64, 10u64), (3, 4), (5, 2)] {
        let config = format!(r#"{{"passive_health":{{"timeouts_to_down":{timeouts_to_down}}}}}"#);
        let (host, root) = worker_with(&config, &three_nodes(1));
        for i in 1..timeouts_to_down {
            a_answers(&root, 1, 504, UPSTREAM_REQUEST_TIMEOUT);
            assert_eq!(
                passive_table(&host),
                tracked(&[("127.0.0.1", "active", i * failures_each)]),
                "{timeouts_to_down}"
            );
        }
        a_answers(&root, 1, 504, UPSTREAM_REQUEST_TIMEOUT);
        assert_eq!(
            passive_table(&host)["127.0.0.1"].0,
            "down",
            "{timeouts_to_down}"
        );
    }
}

#[test]
fn a_late_answer_between_successes_takes_no_node_down() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    for _ in 0..20 {
        a_answers(&root, 1, 504, UPSTREAM_REQUEST_TIMEOUT);
        a_answers(&root, 1, 200, 0);
    }
    assert_eq!(passive_table(&host), tracked(&[]));
    root.on_tick();
    assert_eq!(host.metric(DOWN), None);
}

/// A request the plan A,B,C sent first to A, answered by B on the second attempt after
/// `duration_ms` (Envoy hedged the read, or retried it, after A's per-try timeout; or A
/// refused the connection and B answered at once).
fn answered_by_b_after(root: &Root<MockHost>, duration_ms: Option<u64>) -> MockStream {
    let mut stream = MockStream::dynamodb("GetItem", "{}");
    let (mut flow, _) = send(root, &mut stream);
    let header = stream.request_header_str("x-alternator-endpoints").unwrap();
    assert_eq!(header, "127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000");
    stream.served(B, 200, 0, Some(2));
    stream.duration_ms = duration_ms;
    flow.on_stream_end(&stream);
    stream
}

#[test]
fn a_retried_request_that_lasted_a_per_try_timeout_is_a_timeout_of_the_earlier_candidate() {
    for (what, config, duration, failures) in [
        ("hedged after 250 ms", "{}", Some(262), 5),
        ("the longest per-try timeout", "{}", Some(10_400), 5),
        ("refused, then answered", "{}", Some(3), 1),
        ("duration unknown", "{}", None, 1),
        (
            "a longer shortest per-try timeout",
            r#"{"passive_health":{"min_per_try_timeout_ms":1000}}"#,
            Some(262),
            1,
        ),
        (
            "inference off",
            r#"{"passive_health":{"min_per_try_timeout_ms":0}}"#,
            Some(10_400),
            1,
        ),
    ] {
        let (host, root) = worker_with(config, &three_nodes(1));
        let stream = answered_by_b_after(&root, duration);
        assert_eq!(
            passive_table(&host),
            tracked(&[("127.0.0.1", "active", failures)]),
            "{what}"
        );
        assert!(stream.was_read("request_duration"), "{what}");
    }
}

#[test]
fn two_hedged_reads_in_a_row_take_the_first_candidate_down() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    answered_by_b_after(&root, Some(260));
    a_answers(&root, 1, 503, UPSTREAM_CONNECTION_FAILURE); // a refused connection adds one
    assert_eq!(passive_table(&host), tracked(&[("127.0.0.1", "active", 6)]));
    // A is first again in three requests: its hedged read takes it down.
    for _ in 0..2 {
        round_trip(&root, None, 200, 0, Some(1));
    }
    let mut stream = MockStream::dynamodb("GetItem", "{}");
    let (mut flow, _) = send(&root, &mut stream);
    let header = stream.request_header_str("x-alternator-endpoints").unwrap();
    assert_eq!(first(&header), A);
    let second = header.split(',').nth(1).unwrap().to_string();
    stream.served(&second, 200, 0, Some(2));
    stream.duration_ms = Some(300);
    flow.on_stream_end(&stream);
    assert_eq!(passive_table(&host)["127.0.0.1"].0, "down");
    root.on_tick();
    assert_eq!(host.metric(DOWN), Some(1));
}

#[test]
fn a_node_error_status_is_neutral() {
    for (what, code, flags) in [
        ("500", 500, 0),
        ("502", 502, 0),
        ("503", 503, 0),
        ("504", 504, 0),
        ("503 with UO", 503, UPSTREAM_OVERFLOW),
    ] {
        let (host, mut root) = worker_with("{}", &three_nodes(1));
        a_answers(&root, 9, 503, UPSTREAM_CONNECTION_FAILURE);
        a_answers(&root, 3, code, flags);
        assert_eq!(
            passive_table(&host),
            tracked(&[("127.0.0.1", "active", 9)]),
            "{what}: neither a failure nor a success"
        );
        a_answers(&root, 1, 503, UPSTREAM_CONNECTION_FAILURE);
        root.on_tick();
        assert_eq!(host.metric(DOWN), Some(1), "{what}");
    }
}

#[test]
fn a_success_ends_the_failure_streak() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    a_answers(&root, 9, 503, UPSTREAM_CONNECTION_FAILURE);
    a_answers(&root, 1, 404, 0);
    assert_eq!(
        passive_table(&host),
        tracked(&[]),
        "a healthy node is not tracked"
    );
    a_answers(&root, 9, 503, UPSTREAM_CONNECTION_FAILURE);
    root.on_tick();
    assert_eq!(passive_table(&host), tracked(&[("127.0.0.1", "active", 9)]));
    assert_eq!(host.metric(DOWN), None);
}

#[test]
fn a_success_on_a_healthy_node_writes_nothing_and_reads_no_status() {
    let (host, root) = worker_with("{}", &three_nodes(1));
    let mut stream = MockStream::dynamodb("GetItem", "{}");
    let (mut flow, _) = send(&root, &mut stream);
    stream.served(A, 200, 0, Some(1));
    flow.on_stream_end(&stream);
    assert!(!stream.was_read("response_code"));
    assert!(!stream.was_read("upstream_request_attempts"));
    assert!(!stream.was_read("request_duration"));
    assert_eq!(host.writes_to(shared::PASSIVE_HEALTH), 0);
    assert_eq!(host.shared(shared::PASSIVE_HEALTH), None);
}

#[test]
fn a_fallback_that_served_attributes_a_failure_to_the_candidates_before_it() {
    // attempts: what Envoy reports; the plan is A,B,C (first request of a fresh worker).
    for (what, upstream, attempts, expected) in [
        (
            "C after two failed attempts",
            C,
            Some(3),
            tracked(&[("127.0.0.1", "active", 1), ("127.0.0.2", "active", 1)]),
        ),
        (
            "B after one failed attempt",
            B,
            Some(2),
            tracked(&[("127.0.0.1", "active", 1)]),
        ),
        (
            "attempt count unknown",
            C,
            None,
            tracked(&[("127.0.0.1", "active", 1), ("127.0.0.2", "active", 1)]),
        ),
        ("attempts disagree", C, Some(2), tracked(&[])),
        ("not a candidate", "127.0.0.9:8000", Some(3), tracked(&[])),
    ] {
        let (host, mut root) = worker_with("{}", &three_nodes(1));
        let header = round_trip(&root, Some(upstream), 200, 0, attempts);
        assert_eq!(header, "127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000");
        assert_eq!(passive_table(&host), expected, "{what}");
        root.on_tick();
        assert_eq!(
            host.metric(&format!(
                "alternator_requests_total;node={upstream};choice=fallback"
            )),
            Some(1),
            "{what}"
        );
    }
}

#[test]
fn with_passive_health_disabled_nothing_is_tracked() {
    let (host, mut root) = worker_with(r#"{"passive_health":{"enabled":false}}"#, &three_nodes(1));
    a_answers(&root, 30, 503, UPSTREAM_CONNECTION_FAILURE);
    round_trip(&root, Some(C), 200, 0, Some(3));
    assert_eq!(host.shared(shared::PASSIVE_HEALTH), None);
    root.on_tick();
    assert_eq!(host.metric(DOWN), None);
    let headers = next_headers(&root, 3);
    assert!(headers.iter().any(|h| first(h) == A), "{headers:?}");

    let mut stream = MockStream::dynamodb("GetItem", "{}");
    let (mut flow, _) = send(&root, &mut stream);
    stream.served(A, 503, UPSTREAM_CONNECTION_FAILURE, Some(1));
    flow.on_stream_end(&stream);
    assert!(!stream.was_read("response_flags"));
}

#[test]
fn after_the_cooldown_a_down_node_is_tried_again_as_quarantined() {
    let (host, mut root) = worker_with(
        r#"{"passive_health":{"cooldown_ms":3000}}"#,
        &three_nodes(1),
    );
    a_answers(&root, 10, 503, UPSTREAM_CONNECTION_FAILURE);
    let down_at = host.now();

    host.set_now(down_at + 2_999);
    assert!(next_headers(&root, 6).iter().all(|h| !h.contains(A)));

    // Back in the plans; passive quarantine does not demote it behind the active nodes (it
    // must get the traffic that promotes it), so it takes its round-robin turn again.
    host.set_now(down_at + 3_000);
    let headers = next_headers(&root, 3);
    assert!(
        headers.iter().all(|h| h.split(',').count() == 3),
        "{headers:?}"
    );
    assert_eq!(
        headers.iter().filter(|h| first(h) == A).count(),
        1,
        "{headers:?}"
    );

    // Ten successes promote it; it is no longer tracked.
    a_answers(&root, 9, 200, 0);
    assert_eq!(
        passive_table(&host),
        tracked(&[("127.0.0.1", "quarantined", 0)])
    );
    a_answers(&root, 1, 200, 0);
    assert_eq!(passive_table(&host), tracked(&[]));
    root.on_tick();
    assert_eq!(host.metric(ACTIVE), Some(1));
    assert_eq!(
        host.logged(LogLevel::Info, "node 127.0.0.1:8000 is active again"),
        1
    );
}

#[test]
fn a_quarantined_node_goes_down_again_after_three_failures() {
    let (host, mut root) = worker_with(
        r#"{"passive_health":{"cooldown_ms":3000}}"#,
        &three_nodes(1),
    );
    a_answers(&root, 10, 503, UPSTREAM_CONNECTION_FAILURE);
    host.advance(3_000);
    a_answers(&root, 2, 503, UPSTREAM_CONNECTION_FAILURE);
    root.on_tick();
    assert_eq!(host.metric(DOWN), Some(1));
    assert_eq!(
        passive_table(&host),
        tracked(&[("127.0.0.1", "quarantined", 2)])
    );
    a_answers(&root, 1, 503, UPSTREAM_CONNECTION_FAILURE);
    root.on_tick();
    assert_eq!(host.metric(DOWN), Some(2));
    assert!(next_headers(&root, 6).iter().all(|h| !h.contains(A)));
}

#[test]
fn a_verdict_reaches_the_other_workers() {
    let (a_host, a) = worker_with("{}", &three_nodes(1));
    let b_host = a_host.sibling();
    let mut b = configured(&b_host, "{}");
    b.on_tick();
    assert!(next_headers(&b, 3).iter().any(|h| first(h) == A));

    a_answers(&a, 10, 503, UPSTREAM_CONNECTION_FAILURE);
    b.on_tick();
    assert!(next_headers(&b, 6).iter().all(|h| !h.contains(A)));
}

#[test]
fn the_agent_readmitting_a_node_clears_the_traffic_verdict() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    a_answers(&root, 10, 503, UPSTREAM_CONNECTION_FAILURE);
    assert_eq!(passive_table(&host), tracked(&[("127.0.0.1", "down", 10)]));

    let agent_down = snapshot_json(
        2,
        &[
            node("127.0.0.1", "down"),
            node("127.0.0.2", "active"),
            node("127.0.0.3", "active"),
        ],
    );
    poll_snapshot(&host, &mut root, &agent_down);
    assert_eq!(passive_table(&host), tracked(&[("127.0.0.1", "down", 10)]));
    poll_snapshot(&host, &mut root, &three_nodes(3));
    assert_eq!(
        passive_table(&host),
        tracked(&[]),
        "readmitted by the agent's probes"
    );
    assert!(next_headers(&root, 3).iter().any(|h| first(h) == A));
}

#[test]
fn passive_health_never_takes_every_node_out() {
    let two = snapshot_json(
        2,
        &[node("127.0.0.1", "active"), node("127.0.0.2", "active")],
    );
    let (host, root) = worker_with("{}", &two);
    for _ in 0..10 {
        for node in [A, B] {
            let mut stream = MockStream::dynamodb("GetItem", "{}");
            let (mut flow, _) = send(&root, &mut stream);
            stream.served(node, 503, UPSTREAM_CONNECTION_FAILURE, None);
            // Served by the node itself as if it were first: attribute only to it.
            let header = stream.request_header_str("x-alternator-endpoints").unwrap();
            if first(&header) != node {
                stream.attempts = Some(1);
            }
            flow.on_stream_end(&stream);
        }
    }
    assert_eq!(
        passive_table(&host),
        tracked(&[("127.0.0.1", "down", 10), ("127.0.0.2", "down", 10)])
    );
    let headers = next_headers(&root, 2);
    assert_eq!(
        headers,
        [
            "127.0.0.1:8000,127.0.0.2:8000",
            "127.0.0.2:8000,127.0.0.1:8000"
        ],
        "the agent's view is kept rather than no node at all"
    );
}
