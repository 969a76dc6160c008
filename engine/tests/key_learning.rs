//! Learning a table's partition-key name from DescribeTable and CreateTable answers, for
//! every worker of the proxy, and routing by it afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use alternator_engine::shared;
use alternator_engine::{Action, Root};
use support::*;

const ANY_WRITE: &str = r#"{"affinity":{"mode":"any_write"}}"#;
const LEARNED: &str = "alternator_key_names_learned_total";
const APPLIED: &str = "alternator_affinity_total;outcome=applied;reason=hash_key";
const UNKNOWN: &str = "alternator_affinity_total;outcome=fallback;reason=unknown_table";

/// A DescribeTable answer: the RANGE key listed first, as DynamoDB may.
fn described(table: &str, hash_key: &str) -> String {
    format!(
        r#"{{"Table":{{"AttributeDefinitions":[{{"AttributeName":"{hash_key}","AttributeType":"S"}},{{"AttributeName":"ts","AttributeType":"N"}}],"TableName":"{table}","KeySchema":[{{"AttributeName":"ts","KeyType":"RANGE"}},{{"AttributeName":"{hash_key}","KeyType":"HASH"}}],"TableStatus":"ACTIVE","ItemCount":0,"TableSizeBytes":0}}}}"#
    )
}

/// A CreateTable answer.
fn created(table: &str, hash_key: &str) -> String {
    format!(
        r#"{{"TableDescription":{{"TableName":"{table}","KeySchema":[{{"AttributeName":"{hash_key}","KeyType":"HASH"}}],"AttributeDefinitions":[{{"AttributeName":"{hash_key}","AttributeType":"S"}}],"TableStatus":"CREATING"}}}}"#
    )
}

/// Runs `operation` on `table` through `root`, answered with `status` and `body` (the
/// response body in two callbacks, as Envoy delivers a buffered body). Returns the stream.
fn table_call(
    root: &Root<MockHost>,
    operation: &str,
    table: &str,
    status: &str,
    body: &str,
) -> MockStream {
    let request = format!(r#"{{"TableName":"{table}"}}"#);
    let mut stream = MockStream::dynamodb(operation, &request);
    let (mut flow, action) = send(root, &mut stream);
    assert_eq!(action, Action::Continue);
    stream.answer(status, body);
    assert_eq!(flow.on_response_headers(&mut stream), Action::Continue);
    let half = body.len() / 2;
    let first = flow.on_response_body(&mut stream, half, false);
    let last = flow.on_response_body(&mut stream, body.len(), true);
    assert_eq!(last, Action::Continue);
    if status == "200" {
        assert_eq!(first, Action::Pause, "a 200 table description is buffered");
    } else {
        assert_eq!(first, Action::Continue, "status {status} is not buffered");
    }
    stream.served(A, status.parse().unwrap(), 0, Some(1));
    flow.on_stream_end(&stream);
    stream
}

fn put_user(id: &str) -> MockStream {
    MockStream::dynamodb(
        "PutItem",
        &format!(r#"{{"TableName":"users","Item":{{"id":{{"S":"{id}"}},"n":{{"N":"1"}}}}}}"#),
    )
}

#[test]
fn a_describe_table_answer_teaches_every_worker() {
    let snapshot = three_nodes(1);
    let (a_host, mut a) = worker_with(ANY_WRITE, &snapshot);
    let b_host = a_host.sibling();
    let mut b = configured(&b_host, ANY_WRITE);
    b.on_tick();

    routed(&b, &mut put_user("u1"));
    b.on_tick();
    assert_eq!(b_host.metric(UNKNOWN), Some(1));

    table_call(
        &a,
        "DescribeTable",
        "users",
        "200",
        &described("users", "id"),
    );
    assert_eq!(
        a_host.shared_str(shared::LEARNED_KEYS).as_deref(),
        Some(r#"{"users":"id"}"#)
    );
    assert_eq!(
        a_host.shared_str(shared::LEARNED_KEYS_VERSION).as_deref(),
        Some("1")
    );

    let body = r#"{"TableName":"users","Item":{"id":{"S":"u1"},"n":{"N":"1"}}}"#;
    let expected = core_affinity_header(&snapshot, ("users", "id"), body);
    assert_eq!(routed(&b, &mut put_user("u1")), Some(expected.clone()));
    assert_eq!(routed(&a, &mut put_user("u1")), Some(expected));
    a.on_tick();
    b.on_tick();
    assert_eq!(a_host.metric(LEARNED), Some(1));
    assert_eq!(a_host.metric(APPLIED), Some(2));
    assert_eq!(a_host.metric(UNKNOWN), Some(1));
}

#[test]
fn a_create_table_answer_teaches_the_key() {
    let (host, mut root) = worker_with(ANY_WRITE, &three_nodes(1));
    table_call(
        &root,
        "CreateTable",
        "users",
        "200",
        &created("users", "id"),
    );
    assert_eq!(
        host.shared_str(shared::LEARNED_KEYS).as_deref(),
        Some(r#"{"users":"id"}"#)
    );
    routed(&root, &mut put_user("u1"));
    root.on_tick();
    assert_eq!(host.metric(LEARNED), Some(1));
    assert_eq!(host.metric(APPLIED), Some(1));
}

#[test]
fn a_key_learned_again_is_counted_once() {
    let (a_host, mut a) = worker_with(ANY_WRITE, &three_nodes(1));
    let b_host = a_host.sibling();
    let mut b = configured(&b_host, ANY_WRITE);
    table_call(
        &a,
        "DescribeTable",
        "users",
        "200",
        &described("users", "id"),
    );
    table_call(
        &b,
        "DescribeTable",
        "users",
        "200",
        &described("users", "id"),
    );
    table_call(&a, "CreateTable", "users", "200", &created("users", "id"));
    table_call(
        &a,
        "DescribeTable",
        "users",
        "200",
        &described("users", "id"),
    );
    a.on_tick();
    b.on_tick();
    assert_eq!(a_host.metric(LEARNED), Some(1));
    assert_eq!(a_host.writes_to(shared::LEARNED_KEYS), 1);

    // A second table adds to the map.
    table_call(
        &b,
        "DescribeTable",
        "orders",
        "200",
        &described("orders", "oid"),
    );
    b.on_tick();
    assert_eq!(a_host.metric(LEARNED), Some(2));
    assert_eq!(
        a_host.shared_str(shared::LEARNED_KEYS).as_deref(),
        Some(r#"{"orders":"oid","users":"id"}"#)
    );
}

#[test]
fn a_non_200_answer_teaches_nothing_and_is_not_buffered() {
    let (host, mut root) = worker_with(ANY_WRITE, &three_nodes(1));
    for status in ["400", "500", "503"] {
        let stream = table_call(
            &root,
            "DescribeTable",
            "users",
            status,
            &described("users", "id"),
        );
        assert!(!stream.was_read("response_body"), "status {status}");
    }
    assert_eq!(host.shared(shared::LEARNED_KEYS), None);
    routed(&root, &mut put_user("u1"));
    root.on_tick();
    assert_eq!(host.metric(LEARNED), None);
    assert_eq!(host.metric(UNKNOWN), Some(1));
}

#[test]
fn an_answer_without_a_key_schema_teaches_nothing() {
    let (host, root) = worker_with(ANY_WRITE, &three_nodes(1));
    for body in [
        r#"{"Table":{"TableName":"users"}}"#,
        r#"{"Table":{"TableName":"users","KeySchema":[{"AttributeName":"id","KeyType":"RANGE"}]}}"#,
        r#"{"TableNames":["users"]}"#,
        r#"{"Table":{"TableName":"users","KeySchema":["#,
    ] {
        table_call(&root, "DescribeTable", "users", "200", body);
    }
    assert_eq!(host.shared(shared::LEARNED_KEYS), None);
}

#[test]
fn a_description_over_max_body_bytes_is_not_buffered() {
    let config = r#"{"max_body_bytes":64,"affinity":{"mode":"any_write"}}"#;
    let (host, root) = worker_with(config, &three_nodes(1));
    let body = described("users", "id");
    assert!(body.len() > 64);
    let mut stream = MockStream::dynamodb("DescribeTable", r#"{"TableName":"users"}"#);
    let (mut flow, _) = send(&root, &mut stream);
    stream.answer("200", &body);
    flow.on_response_headers(&mut stream);
    assert_eq!(flow.on_response_body(&mut stream, 60, false), Action::Pause);
    assert_eq!(
        flow.on_response_body(&mut stream, 65, false),
        Action::Continue
    );
    assert_eq!(
        flow.on_response_body(&mut stream, body.len(), true),
        Action::Continue
    );
    assert!(!stream.was_read("response_body"));
    assert_eq!(host.shared(shared::LEARNED_KEYS), None);
}

#[test]
fn without_affinity_nothing_is_learned_and_no_answer_is_read() {
    let (host, root) = worker_with("{}", &three_nodes(1));
    let body = described("users", "id");
    let mut stream = MockStream::dynamodb("DescribeTable", r#"{"TableName":"users"}"#);
    let (mut flow, _) = send(&root, &mut stream);
    stream.answer("200", &body);
    assert_eq!(flow.on_response_headers(&mut stream), Action::Continue);
    assert_eq!(
        flow.on_response_body(&mut stream, 10, false),
        Action::Continue
    );
    assert_eq!(
        flow.on_response_body(&mut stream, body.len(), true),
        Action::Continue
    );
    assert!(!stream.was_read("response_header::status"));
    assert!(!stream.was_read("response_body"));
    assert_eq!(host.shared(shared::LEARNED_KEYS), None);
}

#[test]
fn a_configured_table_is_not_learned_over() {
    let config = r#"{"affinity":{"mode":"any_write","tables":{"users":"pk"}}}"#;
    let (host, mut root) = worker_with(config, &three_nodes(1));
    table_call(
        &root,
        "DescribeTable",
        "users",
        "200",
        &described("users", "id"),
    );
    assert_eq!(host.shared(shared::LEARNED_KEYS), None);
    // Still routed by the configured name: an item with only `id` has no key.
    routed(&root, &mut put_user("u1"));
    root.on_tick();
    assert_eq!(host.metric(LEARNED), None);
    assert_eq!(
        host.metric("alternator_affinity_total;outcome=fallback;reason=no_key"),
        Some(1)
    );
}
