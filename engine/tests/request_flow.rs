//! One request through the filter (DESIGN §5): the routing header it gets, when it is held
//! for its body, and the local replies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use alternator_engine::request::{too_large_body, NO_ROUTE_BODY};
use alternator_engine::Action;
use support::*;

const HEADER: &str = "x-alternator-endpoints";
const AFFINITY: &str = r#"{"affinity":{"mode":"any_write","tables":{"t":"pk"}}}"#;

fn five_nodes() -> String {
    snapshot_json(
        1,
        &[
            node("127.0.0.1", "active"),
            node("127.0.0.2", "active"),
            node("127.0.0.3", "active"),
            node("127.0.0.4", "active"),
            node("127.0.0.5", "active"),
        ],
    )
}

fn put(key: &str) -> String {
    format!(r#"{{"TableName":"t","Item":{{"pk":{{"S":"{key}"}},"v":{{"N":"1"}}}}}}"#)
}

#[test]
fn a_client_sent_routing_header_is_replaced() {
    let (_host, root) = worker_with("{}", &three_nodes(1));
    let mut stream = MockStream::dynamodb("GetItem", "{}");
    stream
        .request_headers
        .insert(HEADER.into(), b"6.6.6.6:80,7.7.7.7:80".to_vec());
    assert_eq!(
        routed(&root, &mut stream).as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
    );
    assert_eq!(stream.removed_headers, [HEADER]);
}

#[test]
fn the_configured_routing_header_is_the_one_removed_and_written() {
    let (_host, root) = worker_with(r#"{"routing_header":"X-Route"}"#, &three_nodes(1));
    let mut stream = MockStream::dynamodb("GetItem", "{}");
    stream
        .request_headers
        .insert("x-route".into(), b"6.6.6.6:80".to_vec());
    let (_flow, action) = send(&root, &mut stream);
    assert_eq!(action, Action::Continue);
    assert_eq!(stream.removed_headers, ["x-route"]);
    assert_eq!(
        stream.request_header_str("x-route").as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
    );
    assert_eq!(stream.request_header_str(HEADER), None);
}

#[test]
fn round_robin_rotates_over_the_scope() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    let headers: Vec<String> = (0..4).map(|_| route_one(&root).unwrap()).collect();
    assert_eq!(
        headers,
        [
            "127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000",
            "127.0.0.2:8000,127.0.0.3:8000,127.0.0.1:8000",
            "127.0.0.3:8000,127.0.0.1:8000,127.0.0.2:8000",
            "127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000",
        ]
    );
    root.on_tick();
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(4)
    );
}

#[test]
fn round_robin_starts_where_the_seed_says() {
    let host = MockHost::new();
    let mut root = configured_seeded(&host, "{}", 2 << 11);
    poll_snapshot(&host, &mut root, &three_nodes(1));
    assert_eq!(
        route_one(&root).as_deref(),
        Some("127.0.0.3:8000,127.0.0.1:8000,127.0.0.2:8000")
    );
}

#[test]
fn the_header_lists_the_first_choice_and_the_configured_fallbacks() {
    for (fallbacks, expected) in [
        (
            0,
            vec!["127.0.0.1:8000", "127.0.0.2:8000", "127.0.0.3:8000"],
        ),
        (
            1,
            vec![
                "127.0.0.1:8000,127.0.0.2:8000",
                "127.0.0.2:8000,127.0.0.3:8000",
                "127.0.0.3:8000,127.0.0.4:8000",
            ],
        ),
        (
            3,
            vec![
                "127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000,127.0.0.4:8000",
                "127.0.0.2:8000,127.0.0.3:8000,127.0.0.4:8000,127.0.0.5:8000",
                "127.0.0.3:8000,127.0.0.4:8000,127.0.0.5:8000,127.0.0.1:8000",
            ],
        ),
        (
            9,
            vec![
                "127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000,127.0.0.4:8000,127.0.0.5:8000",
                "127.0.0.2:8000,127.0.0.3:8000,127.0.0.4:8000,127.0.0.5:8000,127.0.0.1:8000",
                "127.0.0.3:8000,127.0.0.4:8000,127.0.0.5:8000,127.0.0.1:8000,127.0.0.2:8000",
            ],
        ),
    ] {
        let (_host, root) = worker_with(&format!(r#"{{"fallbacks":{fallbacks}}}"#), &five_nodes());
        let headers: Vec<String> = (0..3).map(|_| route_one(&root).unwrap()).collect();
        assert_eq!(headers, expected, "fallbacks {fallbacks}");
    }
}

#[test]
fn random_policy_writes_distinct_nodes_and_counts_as_random() {
    let (host, mut root) = worker_with(r#"{"policy":"random"}"#, &five_nodes());
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let header = route_one(&root).unwrap();
        let entries: Vec<&str> = header.split(',').collect();
        assert_eq!(entries.len(), 3, "{header}");
        let distinct: std::collections::BTreeSet<&str> = entries.iter().copied().collect();
        assert_eq!(distinct.len(), 3, "{header}");
        firsts.insert(entries[0].to_string());
    }
    assert!(firsts.len() >= 3, "first choices {firsts:?}");
    root.on_tick();
    assert_eq!(
        host.metric("alternator_routed_total;policy=random"),
        Some(50)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        None
    );
}

#[test]
fn a_rack_scope_routes_to_its_rack_first_and_strict_never_leaves_it() {
    let snapshot = snapshot_json(
        1,
        &[
            TestNode {
                address: "127.0.0.1",
                datacenter: "dc1",
                rack: "r1",
                health: "active",
            },
            TestNode {
                address: "127.0.0.2",
                datacenter: "dc1",
                rack: "r2",
                health: "active",
            },
            TestNode {
                address: "127.0.0.3",
                datacenter: "dc2",
                rack: "r1",
                health: "active",
            },
        ],
    );
    let (_host, root) = worker_with(
        r#"{"scope":{"datacenter":"dc1","rack":"r1","mode":"fallback"}}"#,
        &snapshot,
    );
    for _ in 0..3 {
        assert_eq!(
            route_one(&root).as_deref(),
            Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
        );
    }
    let (_host, root) = worker_with(
        r#"{"scope":{"datacenter":"dc1","rack":"r1","mode":"strict"}}"#,
        &snapshot,
    );
    assert_eq!(route_one(&root).as_deref(), Some("127.0.0.1:8000"));
}

fn assert_no_route_reply(stream: &MockStream, action: Action) {
    assert_eq!(action, Action::Pause);
    let reply = stream.local_reply.as_ref().expect("a local reply");
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("ServiceUnavailableException")
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert_eq!(reply.body, NO_ROUTE_BODY);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#ServiceUnavailableException"
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("no Alternator node"));
    assert_eq!(stream.request_header_str(HEADER), None);
}

#[test]
fn no_usable_node_is_a_dynamodb_503() {
    let all_down = snapshot_json(1, &[node("127.0.0.1", "down"), node("127.0.0.2", "down")]);
    for (what, config, snapshot) in [
        (
            "strict scope without a node",
            r#"{"scope":{"datacenter":"dc9","mode":"strict"}}"#,
            three_nodes(1),
        ),
        ("every node down", "{}", all_down),
        ("no node at all", "{}", snapshot_json(1, &[])),
    ] {
        let (host, mut root) = worker_with(config, &snapshot);
        let mut stream = MockStream::dynamodb("GetItem", "{}");
        let (mut flow, action) = send(&root, &mut stream);
        assert_no_route_reply(&stream, action);
        assert_eq!(flow.candidates(), "", "{what}");
        stream.served(A, 503, 0, Some(0));
        flow.on_stream_end(&stream);
        root.on_tick();
        assert_eq!(host.metric("alternator_no_route_total"), Some(1), "{what}");
        assert_eq!(
            host.metric("alternator_routed_total;policy=round_robin"),
            None,
            "{what}"
        );
        assert!(
            !host
                .metrics()
                .keys()
                .any(|n| n.starts_with("alternator_requests_total")),
            "{what}"
        );
    }
}

#[test]
fn a_declared_body_over_max_request_bytes_is_a_413() {
    let (host, mut root) = worker_with("{}", &three_nodes(1));
    let mut stream = MockStream::dynamodb("PutItem", "");
    stream
        .request_headers
        .insert("content-length".into(), b"16777217".to_vec());
    let mut flow = root.new_request().unwrap();
    assert_eq!(flow.on_request_headers(&mut stream, false), Action::Pause);
    let reply = stream.local_reply.as_ref().unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("x-amzn-errortype"), None);
    assert_eq!(
        reply.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    assert_eq!(reply.body, too_large_body(16_777_216));
    assert_eq!(
        reply.body,
        br#"{"__type":"com.amazonaws.dynamodb.v20120810#PayloadTooLarge","message":"Request content length limit of 16777216 bytes exceeded"}"#
    );
    assert_eq!(stream.request_header_str(HEADER), None);
    assert_eq!(
        flow.on_request_body(&mut stream, 1024, false),
        Action::Continue
    );
    assert!(!stream.was_read("request_body"));
    root.on_tick();
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        None
    );

    // At the limit: routed.
    let mut stream = MockStream::dynamodb("PutItem", "");
    stream
        .request_headers
        .insert("content-length".into(), b"16777216".to_vec());
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut stream, false),
        Action::Continue
    );
    assert_eq!(stream.local_reply, None);

    // A configured limit.
    let (_host, root) = worker_with(r#"{"max_request_bytes":100}"#, &three_nodes(1));
    let mut stream = MockStream::dynamodb("PutItem", &"x".repeat(101));
    assert_eq!(
        root.new_request()
            .unwrap()
            .on_request_headers(&mut stream, false),
        Action::Pause
    );
    assert_eq!(stream.local_reply.as_ref().map(|r| r.status), Some(413));
}

#[test]
fn max_request_bytes_0_turns_the_check_off() {
    let (_host, root) = worker_with(r#"{"max_request_bytes":0}"#, &three_nodes(1));
    let mut stream = MockStream::dynamodb("PutItem", "");
    stream
        .request_headers
        .insert("content-length".into(), b"999999999999".to_vec());
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut stream, false),
        Action::Continue
    );
    assert_eq!(stream.local_reply, None);
    assert!(stream.request_header_str(HEADER).is_some());
    assert_eq!(
        stream.reads(),
        Vec::<String>::new(),
        "nothing to read the length for"
    );
}

#[test]
fn without_affinity_the_operation_and_the_body_are_never_read() {
    let (_host, root) = worker_with("{}", &three_nodes(1));
    let mut stream = MockStream::dynamodb("PutItem", &put("k"));
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut stream, false),
        Action::Continue
    );
    assert!(stream.request_header_str(HEADER).is_some());
    let size = stream.request_body.len();
    assert_eq!(
        flow.on_request_body(&mut stream, size, false),
        Action::Continue
    );
    assert_eq!(
        flow.on_request_body(&mut stream, size, true),
        Action::Continue
    );
    assert_eq!(stream.reads(), ["request_header:content-length"]);
}

#[test]
fn an_affine_write_is_held_for_its_body_and_routed_by_its_key() {
    let snapshot = five_nodes();
    let (host, mut root) = worker_with(AFFINITY, &snapshot);
    let body = put("user-1");
    let mut stream = MockStream::dynamodb("PutItem", &body);
    let mut flow = root.new_request().unwrap();
    assert_eq!(flow.on_request_headers(&mut stream, false), Action::Pause);
    assert_eq!(
        stream.request_header_str(HEADER),
        None,
        "not routed before the body"
    );
    assert_eq!(flow.on_request_body(&mut stream, 10, false), Action::Pause);
    assert!(!stream.was_read("request_body"), "read only once complete");
    let size = stream.request_body.len();
    assert_eq!(
        flow.on_request_body(&mut stream, size, true),
        Action::Continue
    );
    let header = stream.request_header_str(HEADER).unwrap();
    assert_eq!(header, core_affinity_header(&snapshot, ("t", "pk"), &body));
    assert_eq!(flow.candidates(), header);

    root.on_tick();
    assert_eq!(
        host.metric("alternator_affinity_total;outcome=applied;reason=hash_key"),
        Some(1)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=affinity"),
        Some(1)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        None
    );
}

#[test]
fn an_affine_plan_lists_the_first_choice_and_the_configured_fallbacks() {
    let snapshot = five_nodes();
    let config = r#"{"fallbacks":1,"affinity":{"mode":"any_write","tables":{"t":"pk"}}}"#;
    let (_host, root) = worker_with(config, &snapshot);
    for i in 0..5 {
        let body = put(&format!("user-{i}"));
        let full = core_affinity_header(&snapshot, ("t", "pk"), &body);
        let expected: Vec<&str> = full.split(',').take(2).collect();
        let got = routed(&root, &mut MockStream::dynamodb("PutItem", &body));
        assert_eq!(got, Some(expected.join(",")), "key user-{i}");
    }
}

#[test]
fn the_same_key_always_gets_the_same_plan() {
    let snapshot = five_nodes();
    let (_host, root) = worker_with(AFFINITY, &snapshot);
    let mut firsts = std::collections::BTreeSet::new();
    for i in 0..20 {
        let body = put(&format!("user-{i}"));
        let expected = core_affinity_header(&snapshot, ("t", "pk"), &body);
        for _ in 0..3 {
            // Ordinary traffic in between moves round robin, not the key's plan.
            route_one(&root);
            let got = routed(&root, &mut MockStream::dynamodb("PutItem", &body));
            assert_eq!(got.as_deref(), Some(expected.as_str()), "key user-{i}");
        }
        firsts.insert(expected.split(',').next().unwrap().to_string());
    }
    assert!(firsts.len() >= 3, "keys spread over {firsts:?}");
}

#[test]
fn a_body_over_max_body_bytes_is_routed_without_affinity() {
    let config = r#"{"max_body_bytes":64,"affinity":{"mode":"any_write","tables":{"t":"pk"}}}"#;
    let (host, mut root) = worker_with(config, &three_nodes(1));
    let body = put(&"k".repeat(64));

    // Declared: routed at once, the body never buffered.
    let mut declared = MockStream::dynamodb("PutItem", &body);
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut declared, false),
        Action::Continue
    );
    assert_eq!(
        declared.request_header_str(HEADER).as_deref(),
        Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000")
    );

    // Not declared (chunked): routed as soon as the buffered part is too large.
    let mut chunked = MockStream::dynamodb("PutItem", &body);
    chunked.request_headers.remove("content-length");
    let mut flow2 = root.new_request().unwrap();
    assert_eq!(flow2.on_request_headers(&mut chunked, false), Action::Pause);
    assert_eq!(
        flow2.on_request_body(&mut chunked, 64, false),
        Action::Pause
    );
    assert_eq!(
        flow2.on_request_body(&mut chunked, 65, false),
        Action::Continue
    );
    assert_eq!(
        chunked.request_header_str(HEADER).as_deref(),
        Some("127.0.0.2:8000,127.0.0.3:8000,127.0.0.1:8000")
    );
    assert!(!declared.was_read("request_body"));
    assert!(!chunked.was_read("request_body"));
    drop((flow, flow2));

    root.on_tick();
    assert_eq!(
        host.metric("alternator_affinity_total;outcome=fallback;reason=body_too_large"),
        Some(2)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(2)
    );
    assert_eq!(
        host.metric("alternator_affinity_total;outcome=applied;reason=hash_key"),
        None
    );
}

#[test]
fn affinity_misses_are_routed_normally_and_counted_by_reason() {
    for (what, body, reason) in [
        (
            "unknown table",
            r#"{"TableName":"other","Item":{"pk":{"S":"a"}}}"#,
            "unknown_table",
        ),
        (
            "malformed JSON",
            r#"{"TableName":"t","Item":{"pk":"#,
            "bad_body",
        ),
        (
            "no key attribute",
            r#"{"TableName":"t","Item":{"other":{"S":"a"}}}"#,
            "no_key",
        ),
        (
            "unsupported key type",
            r#"{"TableName":"t","Item":{"pk":{"BOOL":true}}}"#,
            "unsupported_key",
        ),
    ] {
        let (host, mut root) = worker_with(AFFINITY, &three_nodes(1));
        let mut stream = MockStream::dynamodb("PutItem", body);
        let (_flow, action) = send(&root, &mut stream);
        assert_eq!(action, Action::Continue, "{what}");
        assert_eq!(
            stream.request_header_str(HEADER).as_deref(),
            Some("127.0.0.1:8000,127.0.0.2:8000,127.0.0.3:8000"),
            "{what}"
        );
        root.on_tick();
        assert_eq!(
            host.metric(&format!(
                "alternator_affinity_total;outcome=fallback;reason={reason}"
            )),
            Some(1),
            "{what}"
        );
        assert_eq!(
            host.metric("alternator_routed_total;policy=round_robin"),
            Some(1),
            "{what}"
        );
        assert_eq!(
            host.metric("alternator_affinity_total;outcome=applied;reason=hash_key"),
            None,
            "{what}"
        );
    }
}

#[test]
fn an_affine_write_without_a_body_has_no_key() {
    let (host, mut root) = worker_with(AFFINITY, &three_nodes(1));
    let mut stream = MockStream::dynamodb("PutItem", "");
    let mut flow = root.new_request().unwrap();
    assert_eq!(flow.on_request_headers(&mut stream, true), Action::Continue);
    assert!(stream.request_header_str(HEADER).is_some());
    assert!(!stream.was_read("request_body"));
    root.on_tick();
    assert_eq!(
        host.metric("alternator_affinity_total;outcome=fallback;reason=no_key"),
        Some(1)
    );
}

#[test]
fn with_affinity_an_operation_it_does_not_route_is_decided_on_its_headers() {
    let (host, mut root) = worker_with(AFFINITY, &three_nodes(1));
    let mut stream = MockStream::dynamodb("GetItem", r#"{"TableName":"t","Key":{"pk":{"S":"a"}}}"#);
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut stream, false),
        Action::Continue
    );
    assert!(stream.request_header_str(HEADER).is_some());
    assert!(stream.was_read("request_header:x-amz-target"));
    assert_eq!(
        flow.on_request_body(&mut stream, 40, true),
        Action::Continue
    );
    assert!(!stream.was_read("request_body"));
    root.on_tick();
    assert!(
        !host
            .metrics()
            .keys()
            .any(|n| n.starts_with("alternator_affinity_total")),
        "{:?}",
        host.metrics()
    );
}

#[test]
fn rmw_mode_routes_only_writes_that_read_first() {
    let config = r#"{"affinity":{"mode":"rmw","tables":{"t":"pk"}}}"#;
    let (host, mut root) = worker_with(config, &five_nodes());
    let plain = put("user-1");
    let conditional = r#"{"TableName":"t","Item":{"pk":{"S":"user-1"}},"ConditionExpression":"attribute_not_exists(pk)"}"#;
    routed(&root, &mut MockStream::dynamodb("PutItem", &plain));
    routed(&root, &mut MockStream::dynamodb("PutItem", conditional));
    root.on_tick();
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(1)
    );
    assert_eq!(
        host.metric("alternator_routed_total;policy=affinity"),
        Some(1)
    );
}
