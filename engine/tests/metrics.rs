//! What the proxy's stats show: names (labels encoded in the name), kinds, and the values
//! after a flush.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use alternator_engine::metrics::{self, Metric, FAMILIES, REQUESTS, SERIES};
use alternator_engine::MetricKind;
use support::*;

fn served(node: &str, choice: &str) -> String {
    format!("alternator_requests_total;node={node};choice={choice}")
}

#[test]
fn requests_are_counted_per_serving_node_and_choice_at_the_flush() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    round_trip(&root, None, 200, 0, Some(1)); // A first
    round_trip(&root, None, 200, 0, Some(1)); // B first
    round_trip(&root, None, 200, 0, Some(1)); // C first
    round_trip(&root, Some(C), 200, 0, Some(3)); // plan A,B,C: C as a fallback
    assert_eq!(
        host.metric(&served(A, "first")),
        None,
        "not before the flush"
    );

    root.on_tick();
    assert_eq!(host.metric(&served(A, "first")), Some(1));
    assert_eq!(host.metric(&served(B, "first")), Some(1));
    assert_eq!(host.metric(&served(C, "first")), Some(1));
    assert_eq!(host.metric(&served(C, "fallback")), Some(1));
    // A node's two series are defined together.
    assert_eq!(host.metric(&served(A, "fallback")), Some(0));
    assert_eq!(
        host.metric_kind(&served(C, "fallback")),
        Some(MetricKind::Counter)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(4)
    );

    // The next flush adds what was counted since.
    round_trip(&root, None, 200, 0, Some(1)); // B first
    root.on_tick();
    assert_eq!(host.metric(&served(B, "first")), Some(2));
    assert_eq!(host.metric(&served(A, "first")), Some(1));
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(5)
    );
}

#[test]
fn routed_requests_are_counted_by_policy() {
    let ordinary = || MockStream::dynamodb("GetItem", "{}");
    let affine = || MockStream::dynamodb("PutItem", r#"{"TableName":"t","Item":{"pk":{"S":"a"}}}"#);
    let affinity = r#"{"affinity":{"mode":"any_write","tables":{"t":"pk"}}}"#;
    for (config, stream, policy) in [
        ("{}", ordinary as fn() -> MockStream, "round_robin"),
        (r#"{"policy":"random"}"#, ordinary, "random"),
        (affinity, affine, "affinity"),
        (affinity, ordinary, "round_robin"),
    ] {
        let (host, mut root) = worker_with(config, &three_nodes(1));
        for _ in 0..3 {
            routed(&root, &mut stream());
        }
        root.on_tick();
        let routed: Vec<(String, i64)> = host
            .metrics()
            .into_iter()
            .filter(|(n, _)| n.starts_with("alternator_routed_total"))
            .map(|(n, (_, v))| (n, v))
            .collect();
        assert_eq!(
            routed,
            [(format!("alternator_routed_total;policy={policy}"), 3)],
            "{config}"
        );
    }
}

#[test]
fn snapshot_gauges_follow_the_stored_snapshot_and_its_confirmation() {
    let (host, mut root) = worker_with("{}", &three_nodes(4));
    assert_eq!(host.metric("alternator_snapshot_version"), Some(4));
    assert_eq!(host.metric("alternator_snapshot_nodes"), Some(3));
    assert_eq!(host.metric("alternator_snapshot_age_seconds"), Some(0));
    for gauge in [
        "alternator_snapshot_version",
        "alternator_snapshot_nodes",
        "alternator_snapshot_age_seconds",
    ] {
        assert_eq!(host.metric_kind(gauge), Some(MetricKind::Gauge), "{gauge}");
    }

    root.on_tick();
    let long_poll = host.take_one_call();
    host.set_now(START_MS + 7_999);
    root.on_tick();
    assert_eq!(host.metric("alternator_snapshot_age_seconds"), Some(7));
    host.answer(&mut root, long_poll.token, Answer::status(304));
    root.on_tick();
    assert_eq!(host.metric("alternator_snapshot_age_seconds"), Some(0));

    let long_poll = host.take_one_call();
    let two = snapshot_json(9, &[node("127.0.0.1", "active"), node("127.0.0.2", "down")]);
    host.answer(&mut root, long_poll.token, Answer::ok(Some("\"v9\""), two));
    assert_eq!(host.metric("alternator_snapshot_version"), Some(9));
    assert_eq!(host.metric("alternator_snapshot_nodes"), Some(2));
}

#[test]
fn only_the_lease_holder_reports_the_snapshot_gauges() {
    let (a_host, mut a) = worker_with("{}", &three_nodes(1));
    let b_host = a_host.sibling();
    let mut b = configured(&b_host, "{}");
    a.on_tick();
    a_host.set_now(START_MS + 3_000);
    b.on_tick();
    assert_eq!(a_host.metric("alternator_snapshot_age_seconds"), Some(0));
    a.on_tick();
    assert_eq!(a_host.metric("alternator_snapshot_age_seconds"), Some(3));
}

#[test]
fn every_defined_metric_has_its_familys_kind_and_labels() {
    // A workload that defines series of most families: polls, policies, affinity, served-by
    // counters and the gauges.
    let affinity = r#"{"affinity":{"mode":"any_write","tables":{"t":"pk"}}}"#;
    let (host, mut root) = worker_with(affinity, &three_nodes(1));
    round_trip(&root, Some(C), 200, 0, Some(3));
    routed(
        &root,
        &mut MockStream::dynamodb("PutItem", r#"{"TableName":"t","Item":{"pk":{"S":"a"}}}"#),
    );
    routed(
        &root,
        &mut MockStream::dynamodb("PutItem", r#"{"TableName":"x","Item":{"pk":{"S":"a"}}}"#),
    );
    root.on_tick();
    let long_poll = host.take_one_call();
    host.answer(&mut root, long_poll.token, Answer::status(503));
    root.on_done();

    let defined = host.metrics();
    assert_eq!(defined.len(), 11, "{defined:#?}");
    for (name, (kind, _)) in &defined {
        let mut parts = name.split(';');
        let family_name = parts.next().unwrap();
        let family = FAMILIES
            .iter()
            .find(|f| f.name == family_name)
            .unwrap_or_else(|| panic!("{name}: not a documented family"));
        assert_eq!(*kind, family.kind, "{name}");
        let labels: Vec<&str> = parts.map(|p| p.split_once('=').unwrap().0).collect();
        assert_eq!(labels, family.labels, "{name}");
        assert_eq!(
            family_name.ends_with("_total"),
            *kind == MetricKind::Counter,
            "{name}: counters and only counters are *_total"
        );
    }
}

#[test]
fn every_series_renders_as_family_and_label_values() {
    let expected = [
        "alternator_routed_total;policy=round_robin",
        "alternator_routed_total;policy=random",
        "alternator_routed_total;policy=affinity",
        "alternator_routed_total;policy=no_snapshot",
        "alternator_affinity_total;outcome=applied;reason=hash_key",
        "alternator_affinity_total;outcome=fallback;reason=unknown_table",
        "alternator_affinity_total;outcome=fallback;reason=no_key",
        "alternator_affinity_total;outcome=fallback;reason=bad_body",
        "alternator_affinity_total;outcome=fallback;reason=unsupported_key",
        "alternator_affinity_total;outcome=fallback;reason=body_too_large",
        "alternator_no_route_total",
        "alternator_routed_total;policy=token",
        "alternator_token_aware_total;outcome=replica;reason=token",
        "alternator_token_aware_total;outcome=fallback;reason=no_ring",
        "alternator_token_aware_total;outcome=fallback;reason=unknown_table",
        "alternator_token_aware_total;outcome=fallback;reason=no_key",
        "alternator_token_aware_total;outcome=fallback;reason=bad_body",
        "alternator_token_aware_total;outcome=fallback;reason=unsupported_key",
        "alternator_token_aware_total;outcome=fallback;reason=body_too_large",
        "alternator_token_aware_total;outcome=fallback;reason=no_replica_in_scope",
        "alternator_token_aware_total;outcome=fallback;reason=index",
        "alternator_token_aware_total;outcome=fallback;reason=stale_ring",
        "alternator_agent_polls_total;outcome=updated",
        "alternator_agent_polls_total;outcome=not_modified",
        "alternator_agent_polls_total;outcome=failed",
        "alternator_agent_polls_total;outcome=invalid",
        "alternator_node_health_changes_total;outcome=down",
        "alternator_node_health_changes_total;outcome=quarantined",
        "alternator_node_health_changes_total;outcome=active",
        "alternator_key_names_learned_total",
        "alternator_snapshot_version",
        "alternator_snapshot_age_seconds",
        "alternator_snapshot_nodes",
    ];
    assert_eq!(SERIES.len(), expected.len());
    let mut names = BTreeSet::new();
    for (slot, ((metric, family, values), name)) in SERIES.iter().zip(expected).enumerate() {
        assert_eq!(metric.slot(), slot, "{name}");
        assert_eq!(metric.family(), *family, "{name}");
        assert_eq!(values.len(), family.labels.len(), "{name}");
        assert_eq!(metric.flat_name(), name);
        let labels: Vec<String> = family
            .labels
            .iter()
            .zip(values.iter())
            .map(|(l, v)| format!(";{l}={v}"))
            .collect();
        assert_eq!(format!("{}{}", family.name, labels.concat()), name);
        assert!(FAMILIES.contains(family), "{name}");
        assert!(names.insert(name), "{name} twice");
    }
    assert_eq!(
        metrics::flat_name(
            REQUESTS.name,
            &metrics::labels(REQUESTS, &["127.0.0.1:8000", "first"])
        ),
        "alternator_requests_total;node=127.0.0.1:8000;choice=first"
    );
    // Every family but the per-node one has its series in the table.
    for family in FAMILIES {
        assert_eq!(
            SERIES.iter().any(|(_, f, _)| *f == family),
            family != REQUESTS,
            "{}",
            family.name
        );
    }
}

#[test]
fn counters_wait_for_the_flush_and_a_root_that_ends_flushes() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    route_one(&root);
    route_one(&root);
    let worker = root.worker().unwrap();
    assert_eq!(
        worker
            .metrics
            .pending(Metric::Routed(metrics::RoutedBy::RoundRobin)),
        2
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        None
    );
    root.on_done();
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(2)
    );
    assert_eq!(
        root.worker()
            .unwrap()
            .metrics
            .pending(Metric::Routed(metrics::RoutedBy::RoundRobin)),
        0
    );
}

#[test]
fn a_new_configuration_flushes_the_previous_workers_counters() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    route_one(&root);
    root.configure(br#"{"fallbacks":1}"#, 0).unwrap();
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(1)
    );
    assert_eq!(
        route_one(&root).as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000"),
        "the new configuration routes"
    );
}

#[test]
fn an_invalid_configuration_keeps_the_previous_one() {
    let (host, mut root) = worker_with(r#"{"fallbacks":1}"#, &three_nodes(1));
    let err = root.configure(br#"{"fallbacks":99}"#, 0).unwrap_err();
    assert!(err.to_string().contains("`fallbacks`"), "{err}");
    assert_eq!(
        host.logged(
            alternator_engine::LogLevel::Error,
            "alternator-filter: invalid plugin configuration: `fallbacks`"
        ),
        1
    );
    assert_eq!(
        route_one(&root).as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000")
    );
}

#[test]
fn workers_of_one_proxy_add_into_the_same_series() {
    let (a_host, mut a) = worker_with("{}", &three_nodes(1));
    let b_host = a_host.sibling();
    let mut b = configured(&b_host, "{}");
    round_trip(&a, None, 200, 0, Some(1));
    round_trip(&b, None, 200, 0, Some(1));
    round_trip(&b, None, 200, 0, Some(1));
    a.on_tick();
    b.on_tick();
    assert_eq!(
        a_host.metric("alternator_routed_total;policy=round_robin"),
        Some(3)
    );
    // Both workers start round robin at A (seed 0).
    assert_eq!(a_host.metric(&served(A, "first")), Some(2));
    assert_eq!(a_host.metric(&served(B, "first")), Some(1));
}
