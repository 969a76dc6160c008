//! Key-route affinity plans: the same partition key goes to the same coordinator, as the
//! official clients' "Key-route affinity" spec (`key-route-affinity.md`) prescribes.
//!
//! A single-item write's plan is the seeded plan of its key's affinity hash over the ring
//! ([`crate::gorand::seeded_order`]). A `BatchWriteItem` votes: each usable put or delete
//! votes for the first node of its own key's seeded plan; voted nodes come first by descending
//! vote count, ties in canonical endpoint order, then every other node in canonical order.
//!
//! The *ring* is the canonically ordered node list of a scope, down and quarantined nodes
//! included: health never changes hashing, votes or base order (AFF-REQ-006). It is applied
//! afterwards by [`crate::plan::append_selected`], so a down preferred node is skipped, not
//! re-voted, and the key's other candidates keep their places.
//!
//! ```
//! use std::collections::HashMap;
//! use alternator_routing::affinity::{self, AffinityScratch};
//! use alternator_routing::dynamodb::{needs_body, AffinityMode, Operation};
//! use alternator_routing::{NodeSnapshot, RoutingTable, ScopePolicy};
//!
//! let snapshot = NodeSnapshot::from_json(br#"{"format":1,"version":1,"scheme":"http",
//!     "port":8000,"nodes":[
//!       {"address":"10.0.0.1","datacenter":"dc1","rack":"r1","health":"active"},
//!       {"address":"10.0.0.2","datacenter":"dc1","rack":"r1","health":"active"},
//!       {"address":"10.0.0.3","datacenter":"dc1","rack":"r1","health":"active"}]}"#)?;
//! let table = RoutingTable::new(snapshot, ScopePolicy::default());
//! let schemas = HashMap::from([("users".to_owned(), "pk".to_owned())]);
//! let mode = AffinityMode::AnyWrite;
//!
//! // Headers: decide whether the body is needed at all.
//! let op = Operation::from_target("DynamoDB_20120810.PutItem");
//! assert!(needs_body(mode, op));
//!
//! // Body: the key's plan, first choice then two fallbacks.
//! let body = br#"{"TableName":"users","Item":{"pk":{"S":"alice"},"n":{"N":"1"}}}"#;
//! let target = affinity::request_target(mode, op, body, &schemas).expect("routed by key");
//! let (mut plan, mut scratch) = (Vec::new(), AffinityScratch::default());
//! affinity::plan(&table, &target, table.published_health(), 3, &mut plan, &mut scratch);
//! assert_eq!(plan.len(), 3);
//!
//! // The same key always gets the same plan.
//! let again = affinity::request_target(mode, op, body, &schemas).expect("routed by key");
//! let mut plan_again = Vec::new();
//! affinity::plan(&table, &again, table.published_health(), 3, &mut plan_again, &mut scratch);
//! assert_eq!(plan, plan_again);
//! # Ok::<(), alternator_routing::SnapshotError>(())
//! ```

use std::cmp::Reverse;

use crate::dynamodb::{
    affinity_keys, AffinityKeys, AffinityMode, KeySchemas, NoAffinity, Operation,
};
use crate::gorand::{seeded_first, seeded_order, SeededPicks};
use crate::plan::{append_selected, RoutingTable};
use crate::snapshot::HealthState;

/// What an affinity plan is derived from: the affinity hashes of the request's key(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AffinityTarget {
    /// A single-item write: the key's affinity hash, seed of its seeded plan.
    Key(i64),
    /// A `BatchWriteItem`: one affinity hash per usable put or delete, each one vote.
    Batch(Vec<i64>),
}

impl AffinityTarget {
    /// The target of extracted keys (see [`crate::dynamodb::affinity_keys`]).
    pub fn from_keys(keys: &AffinityKeys<'_>) -> Self {
        match keys {
            AffinityKeys::Single(key) => AffinityTarget::Key(key.affinity_hash()),
            AffinityKeys::Batch { keys, .. } => {
                AffinityTarget::Batch(keys.iter().map(|k| k.affinity_hash()).collect())
            }
        }
    }
}

/// The affinity target of a request, or why it is routed normally: classification and key
/// extraction ([`crate::dynamodb::affinity_keys`]) followed by hashing. `body` is the complete
/// request body.
pub fn request_target(
    mode: AffinityMode,
    op: Operation,
    body: &[u8],
    schemas: &impl KeySchemas,
) -> Result<AffinityTarget, NoAffinity> {
    affinity_keys(mode, op, body, schemas).map(|keys| AffinityTarget::from_keys(&keys))
}

/// Reusable buffers for plan construction, so a worker that keeps one allocates nothing per
/// request once the buffers have grown to the ring size.
#[derive(Debug, Default, Clone)]
pub struct AffinityScratch {
    order: Vec<usize>,
    votes: Vec<u32>,
    quarantined: Vec<usize>,
}

/// Writes into `out` the health-agnostic affinity order over a ring of `n` canonically ordered
/// candidates, as positions `0..n` in that ring. Every position appears exactly once.
///
/// A [`AffinityTarget::Batch`] without hashes yields canonical order; callers treat an empty
/// batch as "no affinity" before getting here.
pub fn affinity_order(
    target: &AffinityTarget,
    n: usize,
    out: &mut Vec<usize>,
    scratch: &mut AffinityScratch,
) {
    match target {
        AffinityTarget::Key(hash) => seeded_order(*hash, n, out),
        AffinityTarget::Batch(hashes) => vote_order(hashes, n, out, &mut scratch.votes),
    }
}

/// Batch voting over a ring of `n` candidates (`key-route-affinity.md`, "Batch-write voting").
/// `votes` is scratch space.
fn vote_order(hashes: &[i64], n: usize, out: &mut Vec<usize>, votes: &mut Vec<u32>) {
    votes.clear();
    votes.resize(n, 0);
    for &hash in hashes {
        if let Some(first) = seeded_first(hash, n) {
            votes[first] = votes[first].saturating_add(1);
        }
    }
    out.clear();
    out.extend((0..n).filter(|&i| votes[i] > 0));
    // Ring positions are in canonical endpoint order, so the position is the spec's
    // "lexicographically by complete endpoint string" tie-break.
    out.sort_unstable_by_key(|&i| (Reverse(votes[i]), i));
    out.extend((0..n).filter(|&i| votes[i] == 0));
}

/// The affinity plan of `target` over `table`: at most `k` node indices (into the snapshot's
/// nodes) in `out`, first choice first.
///
/// Each scope tier of the table is a ring of its own: the innermost tier is ordered by
/// affinity and filled first (`ACTIVE` before `QUARANTINED`, `DOWN` never), and outer tiers,
/// each in its own affinity order, only pad the plan. An application using an official client
/// scoped like the innermost tier sends the key to the same first node. `out` is empty when no
/// node is eligible.
pub fn plan(
    table: &RoutingTable,
    target: &AffinityTarget,
    health: &[HealthState],
    k: usize,
    out: &mut Vec<usize>,
    scratch: &mut AffinityScratch,
) {
    out.clear();
    let mut order = std::mem::take(&mut scratch.order);
    for tier in table.tiers() {
        if out.len() >= k {
            break;
        }
        if tier.is_empty() {
            continue;
        }
        match target {
            // A single key needs only as many picks as it takes to find k eligible nodes.
            AffinityTarget::Key(hash) => {
                let picks = SeededPicks::new(*hash, tier.len(), &mut order);
                select_streaming(
                    picks.map(|p| tier[p]),
                    health,
                    k,
                    out,
                    &mut scratch.quarantined,
                );
            }
            AffinityTarget::Batch(_) => {
                affinity_order(target, tier.len(), &mut order, scratch);
                append_selected(order.iter().map(|&p| tier[p]), health, k, out);
            }
        }
    }
    scratch.order = order;
}

/// [`append_selected`] over a lazily produced base order, drawing only as much of it as
/// needed: `ACTIVE` nodes are taken as they come and the plan is done at `k` of them;
/// `QUARANTINED` ones wait in `quarantined` (scratch) until the order is exhausted.
fn select_streaming(
    base_order: impl Iterator<Item = usize>,
    health: &[HealthState],
    k: usize,
    out: &mut Vec<usize>,
    quarantined: &mut Vec<usize>,
) {
    quarantined.clear();
    for index in base_order {
        if out.len() >= k {
            return;
        }
        match health.get(index) {
            Some(HealthState::Active) if !out.contains(&index) => out.push(index),
            Some(HealthState::Quarantined) => quarantined.push(index),
            _ => {}
        }
    }
    for &index in quarantined.iter() {
        if out.len() >= k {
            return;
        }
        if !out.contains(&index) {
            out.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Scheme;
    use crate::gorand::seeded_order;
    use crate::scope::{Scope, ScopeMode, ScopePolicy};
    use crate::snapshot::{Node, NodeSnapshot};
    use HealthState::{Active as A, Down as D, Quarantined as Q};

    /// Nodes 10.0.0.1 ..= 10.0.0.n; nodes 1..=half in rack r1, the rest in r2.
    fn table(n: u8, policy: ScopePolicy) -> RoutingTable {
        let nodes = (1..=n)
            .map(|i| Node {
                address: format!("10.0.0.{i}").parse().expect("ip"),
                datacenter: "dc1".into(),
                rack: if i <= n / 2 { "r1" } else { "r2" }.into(),
                health: A,
            })
            .collect();
        RoutingTable::new(NodeSnapshot::new(1, 0, Scheme::Http, 8043, nodes), policy)
    }

    fn endpoints(table: &RoutingTable, plan: &[usize]) -> Vec<String> {
        plan.iter()
            .map(|&i| {
                table
                    .snapshot()
                    .endpoint(i)
                    .expect("index in range")
                    .canonical()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn cluster_plan_is_the_seeded_plan_over_canonical_endpoints() {
        let table = table(12, ScopePolicy::default());
        let health = vec![A; 12];
        let mut scratch = AffinityScratch::default();
        let mut out = Vec::new();
        // The spec's construction, independently: sort the endpoint strings, pick and remove.
        let mut ring: Vec<String> = (1..=12)
            .map(|i| format!("http://10.0.0.{i}:8043"))
            .collect();
        ring.sort();
        let mut order = Vec::new();
        for hash in [0, 7, -8746014667889746860, i64::MIN] {
            plan(
                &table,
                &AffinityTarget::Key(hash),
                &health,
                12,
                &mut out,
                &mut scratch,
            );
            seeded_order(hash, 12, &mut order);
            let expected: Vec<String> = order.iter().map(|&i| ring[i].clone()).collect();
            assert_eq!(endpoints(&table, &out), expected, "hash {hash}");
        }
    }

    #[test]
    fn health_filters_the_plan_without_reordering_it() {
        let table = table(8, ScopePolicy::default());
        let mut scratch = AffinityScratch::default();
        let target = AffinityTarget::Key(-4025731529809423594);
        let mut healthy = Vec::new();
        plan(&table, &target, &[A; 8], 8, &mut healthy, &mut scratch);

        // The preferred node goes down: it is skipped, the rest keep their order.
        let mut health = vec![A; 8];
        health[healthy[0]] = D;
        let mut out = Vec::new();
        plan(&table, &target, &health, 8, &mut out, &mut scratch);
        assert_eq!(out, healthy[1..].to_vec());

        // Quarantined: tried only after every active node.
        health[healthy[0]] = Q;
        plan(&table, &target, &health, 8, &mut out, &mut scratch);
        let mut expected = healthy[1..].to_vec();
        expected.push(healthy[0]);
        assert_eq!(out, expected);

        // k bounds the plan; nothing eligible gives an empty plan.
        plan(&table, &target, &[A; 8], 3, &mut out, &mut scratch);
        assert_eq!(out, healthy[..3].to_vec());
        plan(&table, &target, &[D; 8], 3, &mut out, &mut scratch);
        assert!(out.is_empty());
    }

    #[test]
    fn scoped_plans_prefer_the_inner_ring_in_its_own_affinity_order() {
        let rack = ScopePolicy {
            scope: Scope::Rack {
                datacenter: "dc1".into(),
                rack: "r1".into(),
            },
            mode: ScopeMode::Fallback,
        };
        let table = table(8, rack);
        let tiers: Vec<Vec<usize>> = table.tiers().map(<[usize]>::to_vec).collect();
        let (inner, outer) = (&tiers[0], &tiers[1]);
        assert_eq!(inner.len(), 4);
        let target = AffinityTarget::Key(42);
        let mut scratch = AffinityScratch::default();
        let mut out = Vec::new();
        plan(&table, &target, &[A; 8], 8, &mut out, &mut scratch);
        let mut order = Vec::new();
        seeded_order(42, 4, &mut order);
        let inner_expected: Vec<usize> = order.iter().map(|&p| inner[p]).collect();
        assert_eq!(out[..4], inner_expected[..]);
        let mut rest = out[4..].to_vec();
        rest.sort_unstable();
        assert_eq!(&rest, outer);

        // The whole rack down: the key falls back to the next ring, still by affinity.
        let mut health = vec![A; 8];
        for &i in inner {
            health[i] = D;
        }
        plan(&table, &target, &health, 2, &mut out, &mut scratch);
        seeded_order(42, outer.len(), &mut order);
        assert_eq!(out, vec![outer[order[0]], outer[order[1]]]);
    }

    #[test]
    fn batch_plans_put_the_most_voted_node_first() {
        let table = table(6, ScopePolicy::default());
        let mut scratch = AffinityScratch::default();
        let mut out = Vec::new();
        let hashes = vec![11, 22, 33, 11, 11];
        plan(
            &table,
            &AffinityTarget::Batch(hashes),
            &[A; 6],
            6,
            &mut out,
            &mut scratch,
        );
        let ring: Vec<usize> = table.tiers().next().expect("one tier").to_vec();
        assert_eq!(out[0], ring[seeded_first(11, 6).expect("ring")]);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ring);
    }

    #[test]
    fn single_key_order_is_the_seeded_plan() {
        let mut scratch = AffinityScratch::default();
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for hash in [0, -1, 42, i64::MAX, 8815023923555918238] {
            affinity_order(&AffinityTarget::Key(hash), 10, &mut out, &mut scratch);
            seeded_order(hash, 10, &mut expected);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn votes_order_by_count_then_position_then_the_rest() {
        let n = 5;
        let first = |h: i64| seeded_first(h, n).expect("non-empty ring");
        // Find hashes whose first choices are known positions.
        let hash_for = |pos: usize| {
            (0i64..)
                .find(|&h| first(h) == pos)
                .expect("every position is someone's first choice")
        };
        let (h1, h3, h4) = (hash_for(1), hash_for(3), hash_for(4));
        let mut scratch = AffinityScratch::default();
        let mut out = Vec::new();

        // Position 3 twice, 4 and 1 once each: 3, then the 1–4 tie by position, then 0 and 2.
        let batch = AffinityTarget::Batch(vec![h4, h3, h1, h3]);
        affinity_order(&batch, n, &mut out, &mut scratch);
        assert_eq!(out, vec![3, 1, 4, 0, 2]);

        // The order of the writes in the request does not matter.
        let shuffled = AffinityTarget::Batch(vec![h3, h1, h3, h4]);
        let mut again = Vec::new();
        affinity_order(&shuffled, n, &mut again, &mut scratch);
        assert_eq!(again, out);

        // A batch with one key prefers that key's node, like a single write.
        affinity_order(&AffinityTarget::Batch(vec![h4]), n, &mut out, &mut scratch);
        assert_eq!(out, vec![4, 0, 1, 2, 3]);
    }

    #[test]
    fn empty_inputs_give_empty_or_canonical_orders() {
        let mut scratch = AffinityScratch::default();
        let mut out = vec![9];
        affinity_order(&AffinityTarget::Key(1), 0, &mut out, &mut scratch);
        assert!(out.is_empty());
        affinity_order(
            &AffinityTarget::Batch(vec![1, 2]),
            0,
            &mut out,
            &mut scratch,
        );
        assert!(out.is_empty());
        affinity_order(&AffinityTarget::Batch(vec![]), 3, &mut out, &mut scratch);
        assert_eq!(out, vec![0, 1, 2]);
    }
}
