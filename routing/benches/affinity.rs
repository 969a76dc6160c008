//! Cost of key-route affinity on the per-request path: reading the key from a request body,
//! hashing it, and building the affinity plan (seeded order, batch voting, health selection).
//!
//! Run: `cargo bench -p alternator-routing --bench affinity`. A report, not a pass/fail gate;
//! the expectation is at most 3 µs to extract the key of a 1 KB `PutItem` natively.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use alternator_routing::affinity::{plan, AffinityScratch, AffinityTarget};
use alternator_routing::dynamodb::{affinity_keys, AffinityKeys, AffinityMode, Operation};
use alternator_routing::gorand::{seeded_order, GoRand};
use alternator_routing::hash::{affinity_hash, KeyType};
use alternator_routing::{HealthState, Node, NodeSnapshot, RoutingTable, Scheme, ScopePolicy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CANDIDATES: usize = 3;

fn schemas() -> HashMap<String, String> {
    HashMap::from([("orders".to_owned(), "customer_id".to_owned())])
}

/// A `PutItem` body of about `size` bytes as an SDK writes it: typed attributes, a nested map
/// and a list, with the key somewhere in the middle. `table_last` mimics SDKs that serialize
/// members alphabetically (the key then has to be found after `TableName`).
fn put_item(size: usize, table_last: bool) -> Vec<u8> {
    let mut item = String::from(
        r#"{"order_id":{"S":"o-2024-000042"},"created":{"N":"1732197600"},"customer_id":{"S":"customer-7f3a9c"},"address":{"M":{"city":{"S":"Kraków"},"zip":{"S":"30-001"}}},"tags":{"SS":["new","priority"]}"#,
    );
    let mut line = 0;
    // Pad with order lines until the body reaches the requested size.
    while item.len() + 60 < size {
        item.push_str(&format!(
            r#","line{line}":{{"M":{{"sku":{{"S":"SKU-{line:05}"}},"qty":{{"N":"{}"}}}}}}"#,
            line % 7 + 1
        ));
        line += 1;
    }
    item.push('}');
    let body = if table_last {
        format!(
            r#"{{"ConditionExpression":"attribute_not_exists(order_id)","Item":{item},"TableName":"orders"}}"#
        )
    } else {
        format!(r#"{{"TableName":"orders","Item":{item},"ReturnConsumedCapacity":"NONE"}}"#)
    };
    body.into_bytes()
}

/// A `PutItem` of `size` bytes that is mostly one long string attribute, as the filter's
/// profile (`bench/profile_filter.py`) sends: the scanner's string skipping dominates.
fn put_item_long_string(size: usize) -> Vec<u8> {
    let head = r#"{"TableName":"orders","Item":{"customer_id":{"S":"user-000001"},"visits":{"N":"1"},"active":{"BOOL":true},"payload":{"S":""#;
    let tail = r#""}},"ReturnValues":"NONE"}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "a".repeat(fill)).into_bytes()
}

/// A 25-write `BatchWriteItem` (the DynamoDB maximum), puts and deletes mixed.
fn batch_write(writes: usize) -> Vec<u8> {
    let requests: Vec<String> = (0..writes)
        .map(|i| {
            if i % 5 == 4 {
                format!(r#"{{"DeleteRequest":{{"Key":{{"customer_id":{{"S":"customer-{i:04}"}},"order_id":{{"S":"o-{i}"}}}}}}}}"#)
            } else {
                format!(r#"{{"PutRequest":{{"Item":{{"order_id":{{"S":"o-{i}"}},"customer_id":{{"S":"customer-{:04}"}},"total":{{"N":"{}.99"}}}}}}}}"#, i % 9, i * 3)
            }
        })
        .collect();
    format!(
        r#"{{"RequestItems":{{"orders":[{}]}}}}"#,
        requests.join(",")
    )
    .into_bytes()
}

fn table(n: usize) -> RoutingTable {
    let nodes = (0..n)
        .map(|i| Node {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
            datacenter: "dc1".into(),
            rack: "rack1".into(),
            health: if i % 11 == 10 {
                HealthState::Down
            } else {
                HealthState::Active
            },
        })
        .collect();
    RoutingTable::new(
        NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes),
        ScopePolicy::default(),
    )
}

fn extraction(c: &mut Criterion) {
    let schemas = schemas();
    let mut group = c.benchmark_group("extract");
    let bodies = [
        ("put_item_200B", put_item(200, false)),
        ("put_item_1KB", put_item(1024, false)),
        ("put_item_1KB_table_last", put_item(1024, true)),
        ("put_item_1KB_long_string", put_item_long_string(1024)),
    ];
    for (name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let keys = affinity_keys(
                    AffinityMode::AnyWrite,
                    Operation::PutItem,
                    black_box(body),
                    &schemas,
                );
                black_box(keys.is_ok())
            })
        });
    }
    let batch = batch_write(25);
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("batch_write_25", |b| {
        b.iter(|| {
            let keys = affinity_keys(
                AffinityMode::AnyWrite,
                Operation::BatchWriteItem,
                black_box(&batch),
                &schemas,
            );
            black_box(keys.is_ok())
        })
    });
    group.finish();

    c.bench_function("affinity_hash/16B", |b| {
        b.iter(|| affinity_hash(KeyType::S, black_box(b"customer-7f3a9c!")))
    });
}

fn plans(c: &mut Criterion) {
    let mut group = c.benchmark_group("seeded_order");
    let mut out = Vec::with_capacity(100);
    let mut seed = 0x0123_4567_89ab_cdefi64;
    for n in [3usize, 12, 100] {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                seeded_order(black_box(seed), n, &mut out);
                black_box(out.first().copied())
            })
        });
    }
    group.finish();

    // For scale: what every seeded plan would cost if it materialised Go's full state.
    c.bench_function("go_rand_full_seed", |b| {
        b.iter(|| GoRand::new(black_box(seed)).int63())
    });

    let schemas = schemas();
    let batch = batch_write(25);
    // A fixture that does not extract would make the batch figures meaningless: stop.
    #[allow(clippy::panic)]
    let batch_target = match affinity_keys(
        AffinityMode::AnyWrite,
        Operation::BatchWriteItem,
        &batch,
        &schemas,
    ) {
        Ok(keys @ AffinityKeys::Batch { .. }) => AffinityTarget::from_keys(&keys),
        other => panic!("benchmark batch must be usable: {other:?}"),
    };

    let mut group = c.benchmark_group("affinity_plan");
    let mut scratch = AffinityScratch::default();
    let mut out = Vec::with_capacity(CANDIDATES);
    for n in [3usize, 12, 100] {
        let table = table(n);
        let health = table.published_health().to_vec();
        group.bench_with_input(BenchmarkId::new("single_key", n), &n, |b, _| {
            b.iter(|| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let target = AffinityTarget::Key(black_box(seed));
                plan(&table, &target, &health, CANDIDATES, &mut out, &mut scratch);
                black_box(out.first().copied())
            })
        });
        group.bench_with_input(BenchmarkId::new("batch_25_votes", n), &n, |b, _| {
            b.iter(|| {
                plan(
                    &table,
                    black_box(&batch_target),
                    &health,
                    CANDIDATES,
                    &mut out,
                    &mut scratch,
                );
                black_box(out.first().copied())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, extraction, plans);
criterion_main!(benches);
