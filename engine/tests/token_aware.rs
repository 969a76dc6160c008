//! Token-aware routing: a single-item request led by a replica of its key, from the ring in
//! the snapshot; every way it cannot be is counted and routed as before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use alternator_engine::{Action, Root};
use alternator_routing::dynamodb::PartitionKey;
use alternator_routing::endpoint::Scheme;
use alternator_routing::hash::KeyType;
use alternator_routing::ring::TableOwnership;
use alternator_routing::snapshot::{HealthState, Node, NodeSnapshot};
use alternator_routing::token;
use support::*;

const ON: &str = r#"{"token_aware":{"enabled":true}}"#;
const APPLIED: &str = "alternator_token_aware_total;outcome=replica;reason=token";
const ROUTED_TOKEN: &str = "alternator_routed_total;policy=token";

fn miss(reason: &str) -> String {
    format!("alternator_token_aware_total;outcome=fallback;reason={reason}")
}

fn address(n: u8) -> IpAddr {
    format!("127.0.0.{n}").parse().unwrap()
}

/// Six nodes 127.0.0.1..6 on racks r1, r2, r3, r1, r2, r3 of dc1, and table `users` (hash key
/// `id` of `key_type`) in 16 even tablets with three replicas on distinct racks.
fn ring_snapshot(version: u64, key_type: KeyType, health: &[HealthState; 6]) -> String {
    let nodes = (1..=6u8)
        .map(|n| Node {
            address: address(n),
            datacenter: "dc1".into(),
            rack: format!("r{}", (n - 1) % 3 + 1),
            health: health[usize::from(n - 1)],
        })
        .collect();
    let step = (u64::MAX / 16) as i128;
    let tablets = (0..16u8).map(|i| {
        let last = if i == 15 {
            i64::MAX
        } else {
            (i128::from(i64::MIN) + i128::from(i + 1) * step) as i64
        };
        // Replicas i, i+1, i+2 (mod 6): three consecutive nodes, so three racks.
        let replicas = (0..3).map(|r| address((i + r) % 6 + 1)).collect();
        (last, replicas)
    });
    let table = TableOwnership::from_tablets("users", "id", key_type, tablets).unwrap();
    NodeSnapshot::new(version, START_MS, Scheme::Http, 8000, nodes)
        .with_ring(1, &[table])
        .to_json()
}

const ACTIVE: [HealthState; 6] = [HealthState::Active; 6];

/// The `ip:port` of the replicas of an `S` key, in ring order.
fn replicas_of(snapshot: &str, key_type: KeyType, value: &str) -> Vec<String> {
    let snapshot = NodeSnapshot::from_json(snapshot.as_bytes()).unwrap();
    let table = snapshot.ring().unwrap().table("users").unwrap();
    let key = PartitionKey {
        table: "users".into(),
        key_type,
        value: value.as_bytes().into(),
    };
    let token = token::key_token(&key, &mut Vec::new()).unwrap();
    table
        .replicas_of(token)
        .map(|i| format!("{}:8000", snapshot.nodes()[i].address))
        .collect()
}

fn request(op: &str, key: &str) -> MockStream {
    let member = if op == "PutItem" { "Item" } else { "Key" };
    MockStream::dynamodb(
        op,
        &format!(r#"{{"TableName":"users","{member}":{{"id":{key},"v":{{"N":"1"}}}}}}"#),
    )
}

fn first(root: &Root<MockHost>, op: &str, key: &str) -> String {
    let header = routed(root, &mut request(op, key)).expect("a routing header");
    header.split(',').next().unwrap().to_owned()
}

#[test]
fn every_single_item_operation_is_led_by_a_replica_of_its_key() {
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with(ON, &snapshot);
    let ops = ["GetItem", "PutItem", "UpdateItem", "DeleteItem"];
    for i in 0..200 {
        let value = format!("user#{i}");
        let op = ops[i % ops.len()];
        let stream = &mut request(op, &format!(r#"{{"S":"{value}"}}"#));
        let header = routed(&root, stream).unwrap();
        let plan: Vec<&str> = header.split(',').collect();
        let replicas = replicas_of(&snapshot, KeyType::S, &value);
        assert!(
            replicas.contains(&plan[0].to_owned()),
            "{op} {value}: {header}"
        );
        assert_eq!(plan.len(), 3, "{header}");
        assert_eq!(plan.iter().collect::<HashSet<_>>().len(), 3, "{header}");
    }
    root.on_tick();
    assert_eq!(host.metric(APPLIED), Some(200));
    assert_eq!(host.metric(ROUTED_TOKEN), Some(200));
}

#[test]
fn writes_keep_one_replica_per_key_and_reads_rotate_over_its_replicas() {
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (_host, root) = worker_with(ON, &snapshot);
    let key = r#"{"S":"user#7"}"#;
    let writes: BTreeSet<String> = (0..30)
        .flat_map(|_| ["PutItem", "UpdateItem", "DeleteItem"].map(|op| first(&root, op, key)))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let reads: BTreeSet<String> = (0..30).map(|_| first(&root, "GetItem", key)).collect();
    let replicas: BTreeSet<String> = replicas_of(&snapshot, KeyType::S, "user#7")
        .into_iter()
        .collect();
    assert_eq!(reads, replicas);
}

#[test]
fn the_replica_in_the_clients_rack_leads_while_it_is_usable() {
    let config = r#"{"token_aware":{"enabled":true},"scope":{"datacenter":"dc1","rack":"r2"}}"#;
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (_host, root) = worker_with(config, &snapshot);
    let rack_r2 = ["127.0.0.2:8000", "127.0.0.5:8000"];
    for i in 0..50 {
        let value = format!("k{i}");
        let replicas = replicas_of(&snapshot, KeyType::S, &value);
        let in_rack: Vec<&String> = replicas
            .iter()
            .filter(|r| rack_r2.contains(&r.as_str()))
            .collect();
        assert_eq!(in_rack.len(), 1, "one replica per rack");
        for op in ["GetItem", "PutItem"] {
            assert_eq!(
                &first(&root, op, &format!(r#"{{"S":"{value}"}}"#)),
                in_rack[0]
            );
        }
    }
    // That replica down: another replica (in another rack) leads, never the down node.
    let mut health = ACTIVE;
    health[1] = HealthState::Down; // 127.0.0.2, rack r2
    let snapshot = ring_snapshot(2, KeyType::S, &health);
    let (_host, root) = worker_with(config, &snapshot);
    for i in 0..50 {
        let value = format!("k{i}");
        let header = routed(
            &root,
            &mut request("GetItem", &format!(r#"{{"S":"{value}"}}"#)),
        )
        .unwrap();
        assert!(!header.contains("127.0.0.2:"), "{header}");
        let lead = header.split(',').next().unwrap().to_owned();
        // 127.0.0.5 is rack r2's live node: it leads when it is a replica; otherwise a
        // replica of another rack of the datacenter does.
        assert!(
            replicas_of(&snapshot, KeyType::S, &value).contains(&lead),
            "{header}"
        );
    }
}

#[test]
fn numbers_route_by_the_number_as_written() {
    let snapshot = ring_snapshot(1, KeyType::N, &ACTIVE);
    let (_host, root) = worker_with(ON, &snapshot);
    let mut leads = Vec::new();
    for n in ["1000", "1e3", "1000.0"] {
        let lead = first(&root, "PutItem", &format!(r#"{{"N":"{n}"}}"#));
        assert!(
            replicas_of(&snapshot, KeyType::N, n).contains(&lead),
            "{n}: {lead}"
        );
        leads.push(replicas_of(&snapshot, KeyType::N, n));
    }
    // The three spellings are three partitions: their tokens (and here replica sets) differ.
    assert_ne!(leads[0], leads[1]);
    assert_ne!(leads[0], leads[2]);
}

#[test]
fn every_miss_is_counted_and_routed_as_before() {
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with(ON, &snapshot);
    // (body, reason, how many times that reason has been counted after this body)
    let cases = [
        (
            r#"{"TableName":"other","Key":{"id":{"S":"a"}}}"#,
            "unknown_table",
            1,
        ),
        (
            r#"{"TableName":"users","Key":{"id":{"N":"5"}}}"#,
            "unsupported_key",
            1,
        ),
        (
            r#"{"TableName":"users","Key":{"id":{"S":""}}}"#,
            "unsupported_key",
            2,
        ),
        (
            r#"{"TableName":"users","Key":{"other":{"S":"a"}}}"#,
            "no_key",
            1,
        ),
        (r#"{"TableName":"users","Key":"#, "bad_body", 1),
    ];
    for (body, reason, count) in cases {
        let header = routed(&root, &mut MockStream::dynamodb("GetItem", body));
        assert!(header.is_some(), "{body}: still routed");
        root.on_tick();
        assert_eq!(host.metric(&miss(reason)), Some(count), "{body}");
    }
    assert_eq!(host.metric(APPLIED).unwrap_or(0), 0);
    assert_eq!(
        host.metric("alternator_routed_total;policy=round_robin"),
        Some(5)
    );

    // All replicas of a key down: the ordinary plan, counted.
    let mut health = ACTIVE;
    for n in replicas_of(&snapshot, KeyType::S, "a") {
        let last: usize = n
            .split(':')
            .next()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        health[last - 1] = HealthState::Down;
    }
    let (host, mut root) = worker_with(ON, &ring_snapshot(1, KeyType::S, &health));
    let header = routed(&root, &mut request("GetItem", r#"{"S":"a"}"#)).unwrap();
    assert_eq!(header.split(',').count(), 3, "{header}");
    root.on_tick();
    assert_eq!(host.metric(&miss("no_replica_in_scope")), Some(1));
}

#[test]
fn without_a_ring_nothing_is_buffered_and_the_miss_is_counted() {
    let (host, mut root) = worker_with(ON, &three_nodes(1));
    let mut stream = request("GetItem", r#"{"S":"a"}"#);
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut stream, false),
        Action::Continue
    );
    assert!(stream
        .request_header_str("x-alternator-endpoints")
        .is_some());
    root.on_tick();
    assert_eq!(host.metric(&miss("no_ring")), Some(1));
}

#[test]
fn off_by_default_no_body_is_read_and_nothing_is_counted() {
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with("{}", &snapshot);
    let mut stream = request("PutItem", r#"{"S":"a"}"#);
    let mut flow = root.new_request().unwrap();
    assert_eq!(
        flow.on_request_headers(&mut stream, false),
        Action::Continue
    );
    root.on_tick();
    assert!(host
        .metrics()
        .keys()
        .all(|name| !name.starts_with("alternator_token_aware_total")
            || host.metric(name) == Some(0)));
}

#[test]
fn a_body_over_the_limit_is_not_buffered_for_the_token() {
    let config = r#"{"token_aware":{"enabled":true},"max_body_bytes":10}"#;
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with(config, &snapshot);
    assert!(routed(&root, &mut request("GetItem", r#"{"S":"a"}"#)).is_some());
    root.on_tick();
    assert_eq!(host.metric(&miss("body_too_large")), Some(1));
}

#[test]
fn a_single_partition_query_is_led_by_a_replica_and_an_index_query_is_not() {
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with(ON, &snapshot);
    for i in 0..40 {
        let value = format!("q{i}");
        let body = format!(
            r##"{{"TableName":"users","KeyConditionExpression":"#k = :v AND ts > :t","ExpressionAttributeNames":{{"#k":"id"}},"ExpressionAttributeValues":{{":v":{{"S":"{value}"}},":t":{{"N":"0"}}}}}}"##
        );
        let header = routed(&root, &mut MockStream::dynamodb("Query", &body)).unwrap();
        let lead = header.split(',').next().unwrap().to_owned();
        assert!(
            replicas_of(&snapshot, KeyType::S, &value).contains(&lead),
            "{header}"
        );
    }
    let index = r#"{"TableName":"users","IndexName":"by_v","KeyConditionExpression":"v = :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"#;
    assert!(routed(&root, &mut MockStream::dynamodb("Query", index)).is_some());
    root.on_tick();
    assert_eq!(host.metric(APPLIED), Some(40));
    assert_eq!(host.metric(&miss("index")), Some(1));
}

/// The node a batch of these keys should go to: the most replica votes, ties to the lowest
/// address (the snapshot's order), every node in one scope tier.
fn winner(snapshot: &str, keys: &[&str]) -> String {
    let mut votes = std::collections::BTreeMap::<String, usize>::new();
    for k in keys {
        for r in replicas_of(snapshot, KeyType::S, k) {
            *votes.entry(r).or_default() += 1;
        }
    }
    let best = votes.values().copied().max().unwrap();
    votes.into_iter().find(|(_, v)| *v == best).unwrap().0
}

#[test]
fn batches_go_to_the_replica_most_of_their_keys_share() {
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with(ON, &snapshot);
    let mut applied = 0;
    for batch in 0..30 {
        let keys: Vec<String> = (0..1 + batch % 5)
            .map(|i| format!("b{batch}-{i}"))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let expected = winner(&snapshot, &keys);
        let get_keys: Vec<String> = keys
            .iter()
            .map(|k| format!(r#"{{"id":{{"S":"{k}"}}}}"#))
            .collect();
        let get = format!(
            r#"{{"RequestItems":{{"users":{{"Keys":[{}]}}}}}}"#,
            get_keys.join(",")
        );
        let header = routed(&root, &mut MockStream::dynamodb("BatchGetItem", &get)).unwrap();
        assert!(
            header.starts_with(&expected),
            "{keys:?}: {header}, expected {expected}"
        );
        let puts: Vec<String> = keys
            .iter()
            .map(|k| format!(r#"{{"PutRequest":{{"Item":{{"id":{{"S":"{k}"}}}}}}}}"#))
            .collect();
        let write = format!(r#"{{"RequestItems":{{"users":[{}]}}}}"#, puts.join(","));
        let header = routed(&root, &mut MockStream::dynamodb("BatchWriteItem", &write)).unwrap();
        assert!(
            header.starts_with(&expected),
            "{keys:?}: {header}, expected {expected}"
        );
        applied += 2;
    }
    // A batch of tables the ring does not list.
    let other = r#"{"RequestItems":{"other":{"Keys":[{"id":{"S":"a"}}]}}}"#;
    assert!(routed(&root, &mut MockStream::dynamodb("BatchGetItem", other)).is_some());
    root.on_tick();
    assert_eq!(host.metric(APPLIED), Some(applied));
    assert_eq!(host.metric(&miss("unknown_table")), Some(1));
}

#[test]
fn a_ring_the_agent_stopped_confirming_is_set_aside_until_it_confirms_again() {
    let config = r#"{"token_aware":{"enabled":true,"max_ring_age_ms":60000}}"#;
    let snapshot = ring_snapshot(1, KeyType::S, &ACTIVE);
    let (host, mut root) = worker_with(config, &snapshot);
    let key = r#"{"S":"user#7"}"#;
    first(&root, "PutItem", key);
    root.on_tick();
    assert_eq!(host.metric(APPLIED), Some(1));

    // The agent stops answering: past the limit, the ring is not used.
    host.take_calls();
    host.advance(60_001);
    root.on_tick();
    first(&root, "PutItem", key);
    root.on_tick();
    assert_eq!(host.metric(&miss("stale_ring")), Some(1));
    assert_eq!(host.metric(APPLIED), Some(1));

    // The agent answers the poll in flight: "not modified" confirms the snapshot, and the
    // ring is used again.
    let poll = host.take_calls().pop().expect("a poll in flight");
    host.answer(&mut root, poll.token, Answer::status(304));
    root.on_tick();
    first(&root, "PutItem", key);
    root.on_tick();
    assert_eq!(host.metric(APPLIED), Some(2));
}
