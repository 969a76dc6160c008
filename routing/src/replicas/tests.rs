use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::endpoint::Scheme;
use crate::hash::KeyType;
use crate::ring::{Layout, RangeOwners, TableOwnership};
use crate::scope::{Scope, ScopeMode, ScopePolicy};
use crate::snapshot::{Node, NodeSnapshot};

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

/// Six nodes 10.0.0.1..6 in dc1 on racks r1, r2, r3, r1, r2, r3 (indices 0..5), and two
/// ranges: (0, 100] on nodes 1, 2, 4 and the wrapping (100, 0] on nodes 3, 5, 6.
fn fixture(mode: ScopeMode) -> RoutingTable {
    let nodes = (1..=6u8)
        .map(|n| Node {
            address: ip(n),
            datacenter: "dc1".into(),
            rack: format!("r{}", (n - 1) % 3 + 1),
            health: HealthState::Active,
        })
        .collect();
    let ring = TableOwnership::from_ranges(
        "t",
        "pk",
        KeyType::S,
        Layout::Vnodes,
        [
            RangeOwners {
                start: 0,
                end: 100,
                replicas: vec![ip(1), ip(2), ip(4)],
            },
            RangeOwners {
                start: 100,
                end: 0,
                replicas: vec![ip(3), ip(5), ip(6)],
            },
        ],
    )
    .unwrap();
    let snapshot = NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes).with_ring(1, &[ring]);
    let policy = ScopePolicy {
        scope: Scope::Rack {
            datacenter: "dc1".into(),
            rack: "r1".into(),
        },
        mode,
    };
    RoutingTable::new(snapshot, policy)
}

fn plan(
    table: &RoutingTable,
    token: i64,
    lead: Lead,
    health: &[HealthState],
    fallback: &[usize],
    k: usize,
) -> Vec<usize> {
    let ring = table.snapshot().ring().unwrap().table("t").unwrap();
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let key = KeyReplicas { ring, token, lead };
    let led = replica_plan(table, key, health, fallback, k, &mut out, &mut scratch);
    // The flag says whether the replica phase led: the first entry is then an active,
    // in-scope replica; otherwise it is not one (a quarantined replica may still come
    // first through the fallback).
    let active_replica = |i: usize| {
        ring.replicas_of(token).any(|r| r == i)
            && health.get(i) == Some(&HealthState::Active)
            && table.tier_of(i).is_some()
    };
    assert_eq!(led, out.first().is_some_and(|&f| active_replica(f)));
    out
}

const ACTIVE: [HealthState; 6] = [HealthState::Active; 6];

#[test]
fn replicas_in_the_clients_rack_lead_then_the_datacenter_then_the_fallback() {
    let table = fixture(ScopeMode::Fallback);
    // Token 50: replicas are nodes 1 (r1), 2 (r2), 4 (r1) = indices 0, 1, 3.
    let out = plan(&table, 50, Lead::Key(50), &ACTIVE, &[5, 1, 2], 5);
    // r1 replicas {0, 3} first (which one leads depends on the key), then the r2 replica 1,
    // then the fallback without the repeat of 1.
    assert!(out[..2] == [0, 3] || out[..2] == [3, 0], "{out:?}");
    assert_eq!(&out[2..], &[1, 5, 2]);
}

#[test]
fn a_key_keeps_its_replica_and_reads_rotate() {
    let table = fixture(ScopeMode::Fallback);
    let first = |lead| plan(&table, 50, lead, &ACTIVE, &[], 1)[0];
    assert_eq!(first(Lead::Key(50)), first(Lead::Key(50)));
    let rotated: Vec<usize> = (0..4).map(|c| first(Lead::Rotate(c))).collect();
    assert_eq!(rotated, vec![0, 3, 0, 3]);
}

#[test]
fn quarantined_replicas_do_not_lead_and_down_ones_never_appear() {
    let table = fixture(ScopeMode::Fallback);
    let mut health = ACTIVE;
    health[0] = HealthState::Quarantined;
    health[3] = HealthState::Down;
    // The fallback plan (health-selected by its maker) ends with the quarantined node 0.
    let out = plan(&table, 50, Lead::Rotate(0), &health, &[2, 5, 0], 6);
    assert_eq!(out, vec![1, 2, 5, 0]);
}

#[test]
fn strict_scope_plans_only_inside_the_rack() {
    let table = fixture(ScopeMode::Strict);
    // Token 500 is in the wrapping range: replicas are nodes 3, 5, 6 (indices 2, 4, 5), none
    // in rack r1. The ordinary plan decides, and index 1 (rack r2) is out of scope.
    let out = plan(&table, 500, Lead::Rotate(0), &ACTIVE, &[3, 1], 3);
    assert_eq!(out, vec![3]);
}

#[test]
fn no_more_than_k() {
    let table = fixture(ScopeMode::Fallback);
    assert_eq!(
        plan(&table, 50, Lead::Rotate(1), &ACTIVE, &[1, 2], 1),
        vec![3]
    );
    assert!(plan(&table, 50, Lead::Rotate(1), &ACTIVE, &[1, 2], 0).is_empty());
}

fn health_strategy() -> impl Strategy<Value = Vec<HealthState>> {
    proptest::collection::vec(
        prop_oneof![
            Just(HealthState::Active),
            Just(HealthState::Quarantined),
            Just(HealthState::Down)
        ],
        6,
    )
}

proptest! {
    #[test]
    fn plans_are_valid(
        health in health_strategy(),
        token in any::<i64>(),
        counter in any::<u64>(),
        fallback in proptest::collection::vec(0usize..8, 0..8),
        k in 0usize..8,
        strict in any::<bool>(),
    ) {
        let table = fixture(if strict { ScopeMode::Strict } else { ScopeMode::Fallback });
        let ring = table.snapshot().ring().unwrap().table("t").unwrap();
        let out = plan(&table, token, Lead::Rotate(counter), &health, &fallback, k);
        prop_assert!(out.len() <= k);
        let mut seen = std::collections::HashSet::new();
        for &i in &out {
            prop_assert!(seen.insert(i), "repeat in {:?}", out);
            prop_assert!(table.tier_of(i).is_some());
        }
        // A replica leads whenever an active replica is in scope.
        let eligible: Vec<usize> = ring
            .replicas_of(token)
            .filter(|&i| health[i] == HealthState::Active && table.tier_of(i).is_some())
            .collect();
        if k > 0 && !eligible.is_empty() {
            prop_assert!(eligible.contains(&out[0]));
            prop_assert!(out[0] < 6 && health[out[0]] != HealthState::Down);
        }
        // Only fallback entries follow the replicas, in the fallback's order.
        let tail: Vec<usize> = out.iter().copied().filter(|i| !eligible.contains(i)).collect();
        let expected: Vec<usize> = fallback
            .iter()
            .copied()
            .filter(|&i| {
                table.tier_of(i).is_some()
                    && health.get(i).is_some_and(|h| *h != HealthState::Down)
                    && !eligible.contains(&i)
            })
            .fold(Vec::new(), |mut v, i| {
                if !v.contains(&i) {
                    v.push(i);
                }
                v
            });
        prop_assert!(expected.starts_with(&tail), "{:?} vs {:?}", tail, expected);
    }
}

fn votes(
    table: &RoutingTable,
    tokens: &[i64],
    health: &[HealthState],
    k: usize,
) -> (bool, Vec<usize>) {
    let ring = table.snapshot().ring().unwrap().table("t").unwrap();
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let keys = tokens.iter().map(|&t| (ring, t));
    let voted = vote_plan(
        table,
        keys,
        health,
        &[3, 5, 4, 2],
        k,
        &mut out,
        &mut scratch,
    );
    (voted, out)
}

#[test]
fn a_batch_goes_where_most_of_its_keys_have_replicas_in_the_nearest_tier() {
    let table = fixture(ScopeMode::Fallback);
    // Two keys in (0, 100] (nodes 1, 2, 4) and one in the wrapping range (nodes 3, 5, 6).
    // Rack r1 holds nodes 1 and 4 (indices 0, 3), two votes each: node 1 wins the tie. Then
    // the rest of the datacenter: node 2 (two votes), then nodes 3, 5, 6 (one each).
    let all = votes(&table, &[10, 20, 500], &ACTIVE, 6);
    assert_eq!(all, (true, vec![0, 3, 1, 2, 4, 5]));
    // Node 1 down: node 4 leads; nothing down is planned.
    let mut health = ACTIVE;
    health[0] = HealthState::Down;
    assert_eq!(
        votes(&table, &[10, 20, 500], &health, 3),
        (true, vec![3, 1, 2])
    );
    // Every replica of the key down: the fallback alone, and no vote.
    let mut health = ACTIVE;
    for i in [0, 1, 3] {
        health[i] = HealthState::Down;
    }
    assert_eq!(votes(&table, &[10], &health, 3), (false, vec![5, 4, 2]));
}

#[test]
fn strict_scope_votes_only_inside_it() {
    let table = fixture(ScopeMode::Strict);
    // The wrapping range has no replica in rack r1; the fallback's r1 node (index 3) follows.
    assert_eq!(votes(&table, &[500], &ACTIVE, 3), (false, vec![3]));
    assert_eq!(votes(&table, &[500, 10], &ACTIVE, 3), (true, vec![0, 3]));
}
