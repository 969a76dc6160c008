//! Token-aware plans: a key's replicas first, in scope order, then the ordinary plan.
//!
//! A request coordinated by a node that holds no replica of its key costs the cluster an extra
//! hop: the coordinator forwards it to a replica. When the snapshot carries the table's ring
//! ([`crate::ring`]), the plan starts with the key's replicas that are `ACTIVE` and inside the
//! configured scope, innermost tier first (the client's rack, then its datacenter, ...), and
//! continues with the ordinary plan the caller made, without repeats. Replicas that are
//! `QUARANTINED` do not lead; they appear only where the ordinary plan puts them, and `DOWN`
//! nodes never appear. Nodes outside the scope are never planned, replica or not.
//!
//! Which replica leads is the caller's choice through [`Lead`]: writes and read-modify-writes
//! keep one coordinator per key (`Lead::Key`, so lightweight transactions on a key meet at one
//! node, as key affinity does), plain reads spread over the local replicas (`Lead::Rotate`).

use crate::plan::{reduce, RoutingTable};
use crate::ring::TableRing;
use crate::snapshot::HealthState;

/// In scope and not `DOWN`: what any plan entry must be, even one the caller's fallback
/// brings.
fn usable(table: &RoutingTable, health: &[HealthState], i: usize) -> bool {
    table.tier_of(i).is_some() && health.get(i).is_some_and(|h| h.is_eligible())
}

/// Which of a tier's eligible replicas leads the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// The same replica for the same key while the replica set and health stay the same: pass
    /// the key's token.
    Key(i64),
    /// Successive values walk the replicas in turn: pass a per-worker counter.
    Rotate(u64),
}

/// A key's place on a table's ring, and how to pick the replica that leads.
#[derive(Debug, Clone, Copy)]
pub struct KeyReplicas<'a> {
    /// The table's ring.
    pub ring: &'a TableRing,
    /// The key's token.
    pub token: i64,
    /// Which eligible replica leads.
    pub lead: Lead,
}

/// Writes into `out` (after clearing it) at most `k` node indices: the replicas of `token`
/// on `key.ring` that are `ACTIVE` and in scope, tier by tier (each tier starting at the replica
/// [`Lead`] picks and continuing in ring order), then `fallback` (the caller's ordinary plan,
/// already health-selected), skipping repeats and anything out of scope or `DOWN`.
///
/// Returns whether a replica leads the plan. `scratch` is reused between calls; nothing
/// allocates once `out` and `scratch` have grown to `k` and the replica count.
pub fn replica_plan(
    table: &RoutingTable,
    key: KeyReplicas<'_>,
    health: &[HealthState],
    fallback: &[usize],
    k: usize,
    out: &mut Vec<usize>,
    scratch: &mut Vec<usize>,
) -> bool {
    out.clear();
    let KeyReplicas { ring, token, lead } = key;
    let range = ring.range_of(token);
    let start = match lead {
        // Reinterpreting the token's bits is the point: any fixed map from key to start works.
        Lead::Key(token) => token as u64,
        Lead::Rotate(counter) => counter,
    };
    'tiers: for tier in 0..table.tiers().len() {
        if out.len() >= k {
            break;
        }
        scratch.clear();
        scratch.extend(ring.replicas(range).filter(|&i| {
            table.tier_of(i) == Some(tier) && health.get(i) == Some(&HealthState::Active)
        }));
        if scratch.is_empty() {
            continue;
        }
        let first = reduce(start, scratch.len());
        for &i in scratch[first..].iter().chain(&scratch[..first]) {
            if out.len() >= k {
                break 'tiers;
            }
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    let led_by_replica = !out.is_empty();
    for &i in fallback {
        if out.len() >= k {
            break;
        }
        if usable(table, health, i) && !out.contains(&i) {
            out.push(i);
        }
    }
    led_by_replica
}

/// A batch's plan: every key votes for each of its replicas that is `ACTIVE` and in scope;
/// voted nodes lead, innermost tier first and the most votes first within a tier (ties by
/// node order), then `fallback` without repeats. `out` is cleared first; `votes` is scratch.
/// Returns whether any node got a vote (a replica leads the plan).
pub fn vote_plan<'r>(
    table: &RoutingTable,
    keys: impl IntoIterator<Item = (&'r TableRing, i64)>,
    health: &[HealthState],
    fallback: &[usize],
    k: usize,
    out: &mut Vec<usize>,
    votes: &mut Vec<u32>,
) -> bool {
    out.clear();
    votes.clear();
    votes.resize(health.len(), 0);
    for (ring, token) in keys {
        for i in ring.replicas_of(token) {
            if table.tier_of(i).is_some() && health.get(i) == Some(&HealthState::Active) {
                if let Some(v) = votes.get_mut(i) {
                    *v = v.saturating_add(1);
                }
            }
        }
    }
    out.extend((0..votes.len()).filter(|&i| votes.get(i).is_some_and(|&v| v > 0)));
    let voted = !out.is_empty();
    out.sort_unstable_by_key(|&i| {
        (
            table.tier_of(i),
            std::cmp::Reverse(votes.get(i).copied()),
            i,
        )
    });
    out.truncate(k);
    for &i in fallback {
        if out.len() >= k {
            break;
        }
        if usable(table, health, i) && !out.contains(&i) {
            out.push(i);
        }
    }
    voted && k > 0
}

#[cfg(test)]
#[path = "replicas/tests.rs"]
mod tests;
