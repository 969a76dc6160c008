//! Polling the discovery agent: what each poll asks, when the next one goes out, and what
//! each kind of answer does to the stored snapshot, the schedule and the counters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use alternator_engine::metrics::PollOutcome;
use alternator_engine::poll::{answer_outcome, PendingPoll, PollKind, PollRequest, PollSchedule};
use alternator_engine::shared;
use alternator_engine::{FilterConfig, LogLevel, Root};
use support::*;

const UPDATED: &str = "alternator_agent_polls_total;outcome=updated";
const NOT_MODIFIED: &str = "alternator_agent_polls_total;outcome=not_modified";
const FAILED: &str = "alternator_agent_polls_total;outcome=failed";
const INVALID: &str = "alternator_agent_polls_total;outcome=invalid";

/// A worker holding snapshot v1 (answered at START_MS + 10), its long-poll not sent yet.
fn polled_once(config: &str) -> (MockHost, Root<MockHost>) {
    let host = MockHost::new();
    let mut root = configured(&host, config);
    root.on_tick();
    let call = host.take_one_call();
    host.advance(10);
    host.answer(
        &mut root,
        call.token,
        Answer::ok(Some("\"v1\""), three_nodes(1)),
    );
    (host, root)
}

#[test]
fn the_first_poll_without_an_etag_is_a_plain_poll_to_the_configured_agent() {
    let host = MockHost::new();
    let mut root = configured(&host, "{}");
    root.on_tick();
    let call = host.take_one_call();
    assert_eq!(call.cluster, "alternator_agent");
    assert_eq!(call.path(), "/v1/nodes");
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(
        call.header(":authority"),
        Some("alternator-discovery-agent")
    );
    assert_eq!(call.header("accept"), Some("application/json"));
    assert_eq!(call.header("if-none-match"), None);
    assert_eq!(call.timeout, Duration::from_millis(5_000));

    let host = MockHost::new();
    let mut root = configured(
        &host,
        r#"{"agent":{"cluster":"agent_x","authority":"agent.internal","path":"/nodes",
            "request_timeout_ms":1500}}"#,
    );
    root.on_tick();
    let call = host.take_one_call();
    assert_eq!(call.cluster, "agent_x");
    assert_eq!(call.path(), "/nodes");
    assert_eq!(call.header(":authority"), Some("agent.internal"));
    assert_eq!(call.timeout, Duration::from_millis(1_500));
}

#[test]
fn a_200_stores_the_snapshot_and_the_next_poll_is_a_long_poll_sent_at_once() {
    let (host, mut root) = polled_once("{}");
    let answered_at = START_MS + 10;
    assert_eq!(host.shared_str(shared::SNAPSHOT), Some(three_nodes(1)));
    assert_eq!(host.shared_str(shared::ETAG).as_deref(), Some("\"v1\""));
    assert_eq!(
        host.shared_str(shared::SNAPSHOT_VERSION),
        Some(format!("1@{answered_at}"))
    );
    assert_eq!(
        host.shared_str(shared::CONFIRMED_AT_MS),
        Some(answered_at.to_string())
    );
    let view = root.worker().unwrap().current_view().unwrap();
    assert_eq!((view.version(), view.node_count()), (1, 3));

    // The very next tick, at the same instant: no waiting for the tick period.
    root.on_tick();
    let call = host.take_one_call();
    assert_eq!(call.path(), "/v1/nodes?wait=20");
    assert_eq!(call.header("if-none-match"), Some("\"v1\""));
    assert_eq!(call.timeout, Duration::from_secs(25));
    assert_eq!(host.metric(UPDATED), Some(1));

    // While the long-poll is open nothing else is sent.
    for _ in 0..20 {
        host.advance(500);
        root.on_tick();
    }
    assert_eq!(host.calls(), []);
}

#[test]
fn a_200_without_an_etag_header_is_stored_under_the_snapshot_version() {
    let host = MockHost::new();
    let mut root = configured(&host, "{}");
    root.on_tick();
    let call = host.take_one_call();
    host.answer(&mut root, call.token, Answer::ok(None, three_nodes(7)));
    assert_eq!(host.shared_str(shared::ETAG).as_deref(), Some("\"7\""));
    root.on_tick();
    assert_eq!(host.take_one_call().header("if-none-match"), Some("\"7\""));
}

#[test]
fn without_long_polling_the_next_poll_waits_a_tick_after_the_previous_was_sent() {
    let host = MockHost::new();
    let mut root = configured(&host, r#"{"agent":{"long_poll_s":0,"tick_ms":500}}"#);
    root.on_tick();
    let first = host.take_one_call();
    host.advance(100);
    host.answer(
        &mut root,
        first.token,
        Answer::ok(Some("\"v1\""), three_nodes(1)),
    );
    root.on_tick();
    host.set_now(START_MS + 499);
    root.on_tick();
    assert_eq!(
        host.calls(),
        [],
        "a poll before a tick has passed since the last"
    );

    host.set_now(START_MS + 500);
    root.on_tick();
    let second = host.take_one_call();
    assert_eq!(
        second.path(),
        "/v1/nodes",
        "no wait= when long-polling is off"
    );
    assert_eq!(second.header("if-none-match"), Some("\"v1\""));
    assert_eq!(second.timeout, Duration::from_millis(5_000));

    // A 304 schedules the same way.
    host.set_now(START_MS + 700);
    host.answer(&mut root, second.token, Answer::status(304));
    host.set_now(START_MS + 999);
    root.on_tick();
    assert_eq!(host.calls(), []);
    host.set_now(START_MS + 1_000);
    root.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes");
}

#[test]
fn a_failed_answer_backs_off_error_backoff_ms() {
    for (what, answer) in [
        ("503", Answer::status(503)),
        ("no :status", Answer::no_response()),
    ] {
        let host = MockHost::new();
        let mut root = configured(&host, r#"{"agent":{"error_backoff_ms":3000}}"#);
        root.on_tick();
        let call = host.take_one_call();
        host.advance(10);
        host.answer(&mut root, call.token, answer);
        let answered_at = host.now();
        root.on_tick();
        host.set_now(answered_at + 2_999);
        root.on_tick();
        assert_eq!(host.calls(), [], "{what}: polled again during the backoff");
        assert_eq!(host.metric(FAILED), Some(1), "{what}");
        assert_eq!(host.metric(UPDATED), None, "{what}");

        host.set_now(answered_at + 3_000);
        root.on_tick();
        let retry = host.take_one_call();
        assert_eq!(
            retry.path(),
            "/v1/nodes",
            "{what}: still no ETag, still a plain poll"
        );
        assert_eq!(
            root.worker().unwrap().current_view().map(|v| v.version()),
            None
        );
    }
}

#[test]
fn a_dispatch_error_is_a_failed_poll_that_backs_off() {
    let host = MockHost::new();
    let mut root = configured(&host, r#"{"agent":{"error_backoff_ms":3000}}"#);
    host.fail_dispatch(Some("BadArgument"));
    root.on_tick();
    assert_eq!(host.calls(), []);
    assert_eq!(
        host.logged(
            LogLevel::Warn,
            "cannot dispatch to cluster \"alternator_agent\": BadArgument"
        ),
        1
    );
    host.fail_dispatch(None);
    host.set_now(START_MS + 2_999);
    root.on_tick();
    assert_eq!(host.calls(), []);
    assert_eq!(host.metric(FAILED), Some(1));
    host.set_now(START_MS + 3_000);
    root.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes");
}

#[test]
fn an_invalid_200_keeps_the_previous_snapshot_and_backs_off() {
    for (what, body) in [
        ("not JSON", &b"{\"format\":1,"[..]),
        (
            "port 0",
            br#"{"format":1,"version":2,"scheme":"http","port":0,"nodes":[]}"#,
        ),
        ("empty body", b""),
    ] {
        let (host, mut root) = polled_once("{}");
        root.on_tick();
        let long_poll = host.take_one_call();
        host.advance(1_000);
        host.answer(&mut root, long_poll.token, Answer::ok(Some("\"v2\""), body));
        let answered_at = host.now();

        assert_eq!(
            host.shared_str(shared::SNAPSHOT),
            Some(three_nodes(1)),
            "{what}"
        );
        assert_eq!(
            host.shared_str(shared::ETAG).as_deref(),
            Some("\"v1\""),
            "{what}"
        );
        assert_eq!(
            root.worker().unwrap().current_view().map(|v| v.version()),
            Some(1),
            "{what}"
        );
        root.on_tick();
        assert_eq!(host.metric(INVALID), Some(1), "{what}");
        host.set_now(answered_at + 1_999);
        root.on_tick();
        assert_eq!(host.calls(), [], "{what}: polled again during the backoff");
        host.set_now(answered_at + 2_000);
        root.on_tick();
        let retry = host.take_one_call();
        assert_eq!(retry.header("if-none-match"), Some("\"v1\""), "{what}");
        // Requests still route on v1.
        assert_eq!(
            route_one(&root).as_deref(),
            Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
        );
    }
}

#[test]
fn a_304_is_not_modified_and_refreshes_confirmed_at() {
    let (host, mut root) = polled_once("{}");
    root.on_tick();
    let long_poll = host.take_one_call();
    host.set_now(START_MS + 20_000);
    host.answer(&mut root, long_poll.token, Answer::status(304));
    assert_eq!(
        host.shared_str(shared::CONFIRMED_AT_MS),
        Some((START_MS + 20_000).to_string())
    );
    assert_eq!(host.shared_str(shared::SNAPSHOT), Some(three_nodes(1)));
    root.on_tick();
    assert_eq!(host.metric(NOT_MODIFIED), Some(1));
    assert_eq!(host.metric(UPDATED), Some(1));
    // Long-poll again at once.
    assert_eq!(host.take_one_call().path(), "/v1/nodes?wait=20");
}

#[test]
fn the_same_snapshot_answered_with_200_counts_as_not_modified() {
    let (host, mut root) = polled_once("{}");
    root.on_tick();
    let long_poll = host.take_one_call();
    host.answer(
        &mut root,
        long_poll.token,
        Answer::ok(Some("\"v1\""), three_nodes(1)),
    );
    root.on_tick();
    assert_eq!(host.metric(NOT_MODIFIED), Some(1));
    assert_eq!(host.metric(UPDATED), Some(1));
    assert_eq!(host.writes_to(shared::SNAPSHOT), 1);
}

#[test]
fn traffic_seen_by_a_request_is_reported_on_the_next_poll() {
    let host = MockHost::new();
    let mut root = configured(&host, "{}");
    assert_eq!(route_one(&root), None, "no snapshot yet");
    root.on_tick();
    let call = host.take_one_call();
    assert_eq!(call.path(), "/v1/nodes?traffic=1");
    assert_eq!(host.shared_str(shared::TRAFFIC).as_deref(), Some("0"));
    host.answer(
        &mut root,
        call.token,
        Answer::ok(Some("\"v1\""), three_nodes(1)),
    );

    route_one(&root);
    root.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes?wait=20&traffic=1");
}

#[test]
fn a_dispatch_error_keeps_the_traffic_flag_for_the_next_poll() {
    let host = MockHost::new();
    let mut root = configured(&host, r#"{"agent":{"error_backoff_ms":1000}}"#);
    route_one(&root);
    host.fail_dispatch(Some("BadArgument"));
    root.on_tick();
    assert_eq!(host.shared_str(shared::TRAFFIC).as_deref(), Some("1"));
    host.fail_dispatch(None);
    host.advance(1_000);
    root.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes?traffic=1");
}

#[test]
fn traffic_during_a_quiet_long_poll_sends_one_short_notification() {
    let (host, mut root) = polled_once("{}");
    root.on_tick();
    let long_poll = host.take_one_call();
    assert_eq!(long_poll.path(), "/v1/nodes?wait=20");

    host.advance(500);
    root.on_tick();
    assert_eq!(host.calls(), [], "no traffic, no notification");

    route_one(&root);
    host.advance(500);
    root.on_tick();
    let notify = host.take_one_call();
    assert_eq!(notify.path(), "/v1/nodes?traffic=1");
    assert_eq!(notify.header("if-none-match"), Some("\"v1\""));
    assert_eq!(notify.timeout, Duration::from_millis(5_000));

    // More traffic while the notification is in flight: no second one, and the flag waits.
    route_one(&root);
    host.advance(500);
    root.on_tick();
    assert_eq!(host.calls(), []);
    assert_eq!(host.shared_str(shared::TRAFFIC).as_deref(), Some("1"));

    // Its answer does not reschedule the long-poll still in flight...
    host.answer(&mut root, notify.token, Answer::status(304));
    // ...and the pending traffic now gets a notification of its own.
    host.advance(500);
    root.on_tick();
    let second = host.take_one_call();
    assert_eq!(second.path(), "/v1/nodes?traffic=1");

    // The long-poll's answer then leads to a plain long-poll (the flag was taken).
    host.answer(&mut root, second.token, Answer::status(304));
    host.answer(&mut root, long_poll.token, Answer::status(304));
    root.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes?wait=20");
}

#[test]
fn a_long_poll_sent_with_traffic_needs_no_notification() {
    let (host, mut root) = polled_once("{}");
    route_one(&root);
    root.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes?wait=20&traffic=1");
    route_one(&root);
    host.advance(500);
    root.on_tick();
    assert_eq!(host.calls(), []);
}

#[test]
fn traffic_on_another_worker_reaches_the_lease_holder() {
    let (host, mut holder) = polled_once("{}");
    let other_host = host.sibling();
    let mut other = configured(&other_host, "{}");
    holder.on_tick();
    let _long_poll = host.take_one_call();

    route_one(&other);
    host.advance(500);
    holder.on_tick();
    assert_eq!(
        host.calls(),
        [],
        "the other worker has not published its traffic yet"
    );
    other.on_tick();
    assert_eq!(other_host.calls(), [], "only the lease holder polls");
    holder.on_tick();
    assert_eq!(host.take_one_call().path(), "/v1/nodes?traffic=1");
}

#[test]
fn a_poll_never_answered_is_forgotten_after_its_deadline_and_the_request_timeout() {
    let (host, mut root) = polled_once(r#"{"agent":{"request_timeout_ms":4000}}"#);
    root.on_tick();
    let sent_at = host.now();
    let lost = host.take_one_call();
    assert_eq!(lost.timeout, Duration::from_secs(24));

    // Deadline 24 s after sending, plus 4 s of grace.
    host.set_now(sent_at + 28_000);
    root.on_tick();
    assert_eq!(host.calls(), []);
    host.set_now(sent_at + 28_001);
    root.on_tick();
    let next = host.take_one_call();
    assert_eq!(next.path(), "/v1/nodes?wait=20");
    assert_ne!(next.token, lost.token);

    // A late answer to the forgotten poll changes nothing.
    let confirmed = host.shared_str(shared::CONFIRMED_AT_MS);
    host.answer(&mut root, lost.token, Answer::status(304));
    root.on_tick();
    assert_eq!(host.metric(NOT_MODIFIED), None);
    assert_eq!(host.shared_str(shared::CONFIRMED_AT_MS), confirmed);
    assert_eq!(
        root.poller()
            .schedule()
            .in_flight(PollKind::Main)
            .map(|p| p.token),
        Some(next.token)
    );
}

#[test]
fn agent_reachability_is_logged_once_per_change() {
    let host = MockHost::new();
    let mut root = configured(&host, r#"{"agent":{"error_backoff_ms":0}}"#);
    for _ in 0..3 {
        root.on_tick();
        let call = host.take_one_call();
        host.answer(&mut root, call.token, Answer::status(503));
    }
    assert_eq!(
        host.logged(
            LogLevel::Warn,
            "discovery agent unreachable (status 503); no node snapshot yet"
        ),
        1
    );
    root.on_tick();
    let call = host.take_one_call();
    host.answer(
        &mut root,
        call.token,
        Answer::ok(Some("\"v1\""), three_nodes(1)),
    );
    assert_eq!(host.logged(LogLevel::Info, "discovery agent reachable"), 1);
    root.on_tick();
    let call = host.take_one_call();
    host.advance(25_000);
    host.answer(&mut root, call.token, Answer::no_response());
    assert_eq!(
        host.logged(
            LogLevel::Warn,
            "discovery agent unreachable (no answer after 25000 ms); routing on the last node snapshot"
        ),
        1
    );
}

// --- the pure schedule and request ---

fn agent(json: &str) -> alternator_engine::config::AgentConfig {
    FilterConfig::parse(json.as_bytes()).unwrap().agent
}

#[test]
fn poll_request_paths_and_timeouts() {
    let a = agent("{}");
    let cases = [
        (PollKind::Main, false, false, "/v1/nodes", 5, false),
        (PollKind::Main, false, true, "/v1/nodes?traffic=1", 5, false),
        (PollKind::Main, true, false, "/v1/nodes?wait=20", 25, true),
        (
            PollKind::Main,
            true,
            true,
            "/v1/nodes?wait=20&traffic=1",
            25,
            true,
        ),
        (
            PollKind::Notify,
            true,
            true,
            "/v1/nodes?traffic=1",
            5,
            false,
        ),
        (
            PollKind::Notify,
            false,
            true,
            "/v1/nodes?traffic=1",
            5,
            false,
        ),
    ];
    for (kind, etag_known, traffic, path, timeout_s, long_poll) in cases {
        let r = PollRequest::new(&a, kind, etag_known, traffic);
        assert_eq!(
            (r.path.as_str(), r.timeout, r.long_poll),
            (path, Duration::from_secs(timeout_s), long_poll),
            "{kind:?} etag_known={etag_known} traffic={traffic}"
        );
    }
    let no_long_poll = agent(r#"{"agent":{"long_poll_s":0}}"#);
    let r = PollRequest::new(&no_long_poll, PollKind::Main, true, false);
    assert_eq!((r.path.as_str(), r.long_poll), ("/v1/nodes", false));
}

#[test]
fn answer_statuses_are_classified() {
    assert_eq!(answer_outcome(Some("200")), None);
    assert_eq!(answer_outcome(Some("304")), Some(PollOutcome::NotModified));
    for status in [Some("503"), Some("404"), Some("204"), None] {
        assert_eq!(
            answer_outcome(status),
            Some(PollOutcome::Failed),
            "{status:?}"
        );
    }
}

fn pending(token: u32, sent_at_ms: u64, long_poll: bool, traffic: bool) -> PendingPoll<u32> {
    PendingPoll {
        token,
        sent_at_ms,
        deadline_ms: sent_at_ms + if long_poll { 25_000 } else { 5_000 },
        traffic,
        long_poll,
    }
}

#[test]
fn poll_schedule_state_machine() {
    let a = agent("{}");
    let mut s = PollSchedule::default();
    assert_eq!(
        s.due(0, || panic!("not asked without a main poll")),
        Some(PollKind::Main)
    );

    s.sent(PollKind::Main, pending(1, 100, true, false));
    assert_eq!(s.due(100, || false), None);
    assert_eq!(s.due(100, || true), Some(PollKind::Notify));
    s.sent(PollKind::Notify, pending(2, 200, false, true));
    assert_eq!(
        s.due(200, || panic!(
            "not asked while a notification is in flight"
        )),
        None
    );

    assert_eq!(s.take(99), None);
    assert_eq!(
        s.take(2).map(|(k, p)| (k, p.token)),
        Some((PollKind::Notify, 2))
    );
    s.answered(
        PollKind::Notify,
        pending(2, 200, false, true),
        PollOutcome::Updated,
        300,
        &a,
    );
    assert_eq!(s.next_poll_at_ms(), 0, "a notification does not reschedule");

    let (kind, main) = s.take(1).unwrap();
    assert_eq!(s.take(1), None, "taken once");
    s.answered(kind, main, PollOutcome::NotModified, 20_100, &a);
    assert_eq!(s.next_poll_at_ms(), 20_100, "long-poll: at once");
    s.answered(kind, main, PollOutcome::Failed, 20_100, &a);
    assert_eq!(s.next_poll_at_ms(), 22_100);
    s.answered(kind, main, PollOutcome::Invalid, 20_100, &a);
    assert_eq!(s.next_poll_at_ms(), 22_100);
    assert_eq!(s.due(22_099, || false), None);
    assert_eq!(s.due(22_100, || false), Some(PollKind::Main));

    let plain = agent(r#"{"agent":{"long_poll_s":0,"tick_ms":700}}"#);
    s.answered(PollKind::Main, main, PollOutcome::Updated, 20_100, &plain);
    assert_eq!(s.next_poll_at_ms(), 800, "a tick after the poll was sent");

    s.send_failed(PollKind::Main, 5_000, &a);
    assert_eq!(s.next_poll_at_ms(), 7_000);
    s.send_failed(PollKind::Notify, 9_000, &a);
    assert_eq!(
        s.next_poll_at_ms(),
        7_000,
        "a notification that failed changes nothing"
    );
}

#[test]
fn poll_schedule_expires_overdue_polls() {
    let mut s = PollSchedule::default();
    s.sent(PollKind::Main, pending(1, 0, true, false));
    s.sent(PollKind::Notify, pending(2, 10_000, false, true));
    let grace = Duration::from_millis(5_000);
    s.expire(20_000, grace);
    assert!(s.in_flight(PollKind::Notify).is_some());
    s.expire(20_001, grace);
    assert_eq!(s.in_flight(PollKind::Notify), None);
    assert!(s.in_flight(PollKind::Main).is_some());
    s.expire(30_000, grace);
    assert!(s.in_flight(PollKind::Main).is_some());
    s.expire(30_001, grace);
    assert_eq!(s.in_flight(PollKind::Main), None);
}
