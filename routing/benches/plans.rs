//! Plan construction cost on the per-request path: round robin and random plans of three
//! candidates (first choice + two fallbacks) over 3, 12 and 100 nodes, with the routing-table
//! build (once per snapshot) alongside for scale.
//!
//! Run: `cargo bench -p alternator-routing --bench plans`. A report, not a pass/fail gate; the
//! expectation is at most 200 ns for a 12-node round-robin plan.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use alternator_routing::{
    HealthState, Node, NodeSnapshot, RoutingTable, Scheme, Scope, ScopeMode, ScopePolicy,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const CANDIDATES: usize = 3;

/// `n` nodes over two datacenters of three racks; every seventh node quarantined, every
/// eleventh down, so selection has real work to do.
fn snapshot(n: usize) -> NodeSnapshot {
    let nodes = (0..n)
        .map(|i| Node {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
            datacenter: format!("dc{}", i % 2),
            rack: format!("rack{}", i % 3),
            health: match i {
                _ if i % 11 == 10 => HealthState::Down,
                _ if i % 7 == 6 => HealthState::Quarantined,
                _ => HealthState::Active,
            },
        })
        .collect();
    NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes)
}

fn policies() -> [(&'static str, ScopePolicy); 2] {
    [
        ("cluster", ScopePolicy::default()),
        (
            "rack-fallback",
            ScopePolicy {
                scope: Scope::Rack {
                    datacenter: "dc0".into(),
                    rack: "rack0".into(),
                },
                mode: ScopeMode::Fallback,
            },
        ),
    ]
}

fn plans(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    for n in [3usize, 12, 100] {
        for (name, policy) in policies() {
            let table = RoutingTable::new(snapshot(n), policy);
            let health = table.published_health().to_vec();
            let mut out = Vec::with_capacity(CANDIDATES);

            let mut counter = 0u64;
            group.bench_with_input(
                BenchmarkId::new(format!("round_robin/{name}"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        counter = counter.wrapping_add(1);
                        table.round_robin(black_box(counter), &health, CANDIDATES, &mut out);
                        black_box(out.first().copied())
                    })
                },
            );

            // A cheap caller-side generator stands in for the filter's random source.
            let mut random = 0x2545_f491_4f6c_dd1du64;
            group.bench_with_input(BenchmarkId::new(format!("random/{name}"), n), &n, |b, _| {
                b.iter(|| {
                    random ^= random << 13;
                    random ^= random >> 7;
                    random ^= random << 17;
                    table.random(black_box(random), &health, CANDIDATES, &mut out);
                    black_box(out.first().copied())
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("routing_table_build");
    for n in [3usize, 12, 100] {
        let snap = snapshot(n);
        let (_, policy) = &policies()[1];
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| RoutingTable::new(black_box(snap.clone()), policy.clone()))
        });
    }
    group.finish();
}

criterion_group!(benches, plans);
criterion_main!(benches);
