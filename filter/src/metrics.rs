//! The filter's Envoy stats.
//!
//! proxy-wasm metrics are flat names, so labels are encoded in the name as `;label=value`
//! segments. The shipped `envoy.yaml` turns each segment back into a tag with a
//! `stats_config.stats_tags` regex, which is what makes `/stats/prometheus` show for example
//! `alternator_requests_total{node="127.0.0.2:8000",choice="first"}`. Envoy shares a metric
//! between every worker VM that defines the same name, so the numbers are per Envoy.
//!
//! Counting costs no host call: each VM adds to its own counters and [`Metrics::flush`] hands
//! the sums to Envoy on the root context's tick (every `agent.tick_ms`, 500 ms by default), and
//! when the VM is reconfigured or shut down. Counters therefore trail the traffic by up to one
//! tick. Gauges are recorded at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use alternator_routing::snapshot::HealthState;

use crate::host;

/// Why a request that could have been key-affine was routed like ordinary traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AffinityMiss {
    /// The table's partition-key name is neither configured nor learned yet.
    UnknownTable,
    /// The body did not name a table or carried no value for the partition key.
    NoKey,
    /// The body was not the JSON DynamoDB expects.
    BadBody,
    /// The partition-key value has a type affinity does not hash.
    UnsupportedKey,
    /// The body is larger than `max_body_bytes`.
    BodyTooLarge,
}

/// Outcome of one poll of the discovery agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PollOutcome {
    Updated,
    NotModified,
    /// Connection failure, timeout or a status other than 200/304.
    Failed,
    /// 200 with a body that is not a snapshot this filter can read.
    Invalid,
}

/// One VM's counters not yet handed to Envoy, and the metric ids defined so far
/// (`define_metric` is a host call, made once per name, at the first flush that needs it).
///
/// The per-request path never hashes a name: every fixed metric has a slot in an array,
/// indexed by its position in [`FIXED`], and the per-node counters are found by a slot number
/// the routing view caches per node index (see `RoutingView::served_slots`), falling back to a
/// lookup by `ip:port`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `None`: not defined yet; `Some(id)`: what `define_metric` answered.
    fixed: [Cell<Option<Option<u32>>>; FIXED.len()],
    /// Counts of the fixed counters since the last flush.
    pending: [Cell<u64>; FIXED.len()],
    /// Upstream `ip:port` → its slot in `served`.
    served_index: RefCell<HashMap<String, usize, Fnv>>,
    /// Per upstream node: its served-by counters.
    served: RefCell<Vec<Served>>,
}

/// The `alternator_requests_total` counters of one node.
#[derive(Debug)]
struct Served {
    node: String,
    /// Ids of (served as first choice, served as fallback), once defined.
    ids: Option<[Option<u32>; 2]>,
    /// Counts of (first choice, fallback) since the last flush.
    pending: [u64; 2],
}

/// Every fixed metric's name, by index (the constants below); from [`SNAPSHOT_VERSION`] on
/// they are gauges, before it counters.
const FIXED: [&str; 22] = [
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

const ROUTED_ROUND_ROBIN: usize = 0;
const ROUTED_RANDOM: usize = 1;
const ROUTED_AFFINITY: usize = 2;
const ROUTED_NO_SNAPSHOT: usize = 3;
const AFFINITY_APPLIED: usize = 4;
const AFFINITY_UNKNOWN_TABLE: usize = 5;
const AFFINITY_NO_KEY: usize = 6;
const AFFINITY_BAD_BODY: usize = 7;
const AFFINITY_UNSUPPORTED_KEY: usize = 8;
const AFFINITY_BODY_TOO_LARGE: usize = 9;
const NO_ROUTE: usize = 10;
const POLL_UPDATED: usize = 11;
const POLL_NOT_MODIFIED: usize = 12;
const POLL_FAILED: usize = 13;
const POLL_INVALID: usize = 14;
const HEALTH_DOWN: usize = 15;
const HEALTH_QUARANTINED: usize = 16;
const HEALTH_ACTIVE: usize = 17;
const KEY_LEARNED: usize = 18;
const SNAPSHOT_VERSION: usize = 19;
const SNAPSHOT_AGE: usize = 20;
const SNAPSHOT_NODES: usize = 21;

/// FNV-1a: these maps hold a few dozen short keys the filter itself chose, so the DoS
/// resistance of the default SipHash buys nothing and costs hundreds of instructions a lookup.
type Fnv = BuildHasherDefault<FnvHasher>;

#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Metrics {
    fn fixed(&self, index: usize) -> Option<u32> {
        let slot = &self.fixed[index];
        if let Some(id) = slot.get() {
            return id;
        }
        let name = FIXED[index];
        let id = if index >= SNAPSHOT_VERSION {
            host::define_gauge(name)
        } else {
            host::define_counter(name)
        };
        slot.set(Some(id));
        id
    }

    fn inc(&self, index: usize) {
        let pending = &self.pending[index];
        pending.set(pending.get().wrapping_add(1));
    }

    /// Hands every count since the last flush to Envoy: one host call per counter that moved.
    pub fn flush(&self) {
        for index in 0..SNAPSHOT_VERSION {
            let count = self.pending[index].replace(0);
            if count > 0 {
                if let Some(id) = self.fixed(index) {
                    host::increment(id, i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
        }
        for served in self.served.borrow_mut().iter_mut() {
            if served.pending == [0, 0] {
                continue;
            }
            let node = &served.node;
            let ids = *served.ids.get_or_insert_with(|| {
                [
                    host::define_counter(&format!(
                        "alternator_requests_total;node={node};choice=first"
                    )),
                    host::define_counter(&format!(
                        "alternator_requests_total;node={node};choice=fallback"
                    )),
                ]
            });
            for (id, count) in ids.iter().zip(std::mem::take(&mut served.pending)) {
                if let (Some(id), true) = (id, count > 0) {
                    host::increment(*id, i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
        }
    }

    /// The slot of `node`'s (`ip:port`) served-by counters, created on first use.
    pub fn served_slot(&self, node: &str) -> usize {
        if let Some(&slot) = self.served_index.borrow().get(node) {
            return slot;
        }
        let mut served = self.served.borrow_mut();
        let slot = served.len();
        served.push(Served {
            node: node.to_string(),
            ids: None,
            pending: [0, 0],
        });
        self.served_index
            .borrow_mut()
            .insert(node.to_string(), slot);
        slot
    }

    /// A request answered by `node`, which was the filter's first choice or a fallback.
    pub fn served(&self, node: &str, first_choice: bool) {
        self.served_by(self.served_slot(node), first_choice);
    }

    /// [`Metrics::served`] with the node's slot already at hand.
    pub fn served_by(&self, slot: usize, first_choice: bool) {
        if let Some(served) = self.served.borrow_mut().get_mut(slot) {
            let count = &mut served.pending[usize::from(!first_choice)];
            *count = count.wrapping_add(1);
        }
    }

    /// A routing decision, by the policy that made it.
    pub fn routed(&self, policy: RoutedBy) {
        self.inc(match policy {
            RoutedBy::RoundRobin => ROUTED_ROUND_ROBIN,
            RoutedBy::Random => ROUTED_RANDOM,
            RoutedBy::Affinity => ROUTED_AFFINITY,
            RoutedBy::NoSnapshot => ROUTED_NO_SNAPSHOT,
        });
    }

    pub fn affinity_applied(&self) {
        self.inc(AFFINITY_APPLIED);
    }

    pub fn affinity_missed(&self, why: AffinityMiss) {
        self.inc(match why {
            AffinityMiss::UnknownTable => AFFINITY_UNKNOWN_TABLE,
            AffinityMiss::NoKey => AFFINITY_NO_KEY,
            AffinityMiss::BadBody => AFFINITY_BAD_BODY,
            AffinityMiss::UnsupportedKey => AFFINITY_UNSUPPORTED_KEY,
            AffinityMiss::BodyTooLarge => AFFINITY_BODY_TOO_LARGE,
        });
    }

    pub fn no_route(&self) {
        self.inc(NO_ROUTE);
    }

    pub fn poll(&self, outcome: PollOutcome) {
        self.inc(match outcome {
            PollOutcome::Updated => POLL_UPDATED,
            PollOutcome::NotModified => POLL_NOT_MODIFIED,
            PollOutcome::Failed => POLL_FAILED,
            PollOutcome::Invalid => POLL_INVALID,
        });
    }

    /// Passive health moved a node into `state` (traffic this Envoy forwarded).
    pub fn node_health_changed(&self, state: HealthState) {
        self.inc(match state {
            HealthState::Down => HEALTH_DOWN,
            HealthState::Quarantined => HEALTH_QUARANTINED,
            HealthState::Active => HEALTH_ACTIVE,
        });
    }

    pub fn key_learned(&self) {
        self.inc(KEY_LEARNED);
    }

    pub fn snapshot(&self, version: u64, age_seconds: u64, nodes: u64) {
        for (index, value) in [
            (SNAPSHOT_VERSION, version),
            (SNAPSHOT_AGE, age_seconds),
            (SNAPSHOT_NODES, nodes),
        ] {
            if let Some(id) = self.fixed(index) {
                host::record(id, value);
            }
        }
    }
}

/// Which policy made a routing decision (the `policy` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutedBy {
    RoundRobin,
    Random,
    Affinity,
    /// No snapshot yet: Envoy's fallback policy chose.
    NoSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_indices_name_their_metrics() {
        for (index, name) in [
            (
                ROUTED_ROUND_ROBIN,
                "alternator_routed_total;policy=round_robin",
            ),
            (ROUTED_RANDOM, "alternator_routed_total;policy=random"),
            (ROUTED_AFFINITY, "alternator_routed_total;policy=affinity"),
            (
                ROUTED_NO_SNAPSHOT,
                "alternator_routed_total;policy=no_snapshot",
            ),
            (
                AFFINITY_APPLIED,
                "alternator_affinity_total;outcome=applied;reason=hash_key",
            ),
            (
                AFFINITY_UNKNOWN_TABLE,
                "alternator_affinity_total;outcome=fallback;reason=unknown_table",
            ),
            (
                AFFINITY_NO_KEY,
                "alternator_affinity_total;outcome=fallback;reason=no_key",
            ),
            (
                AFFINITY_BAD_BODY,
                "alternator_affinity_total;outcome=fallback;reason=bad_body",
            ),
            (
                AFFINITY_UNSUPPORTED_KEY,
                "alternator_affinity_total;outcome=fallback;reason=unsupported_key",
            ),
            (
                AFFINITY_BODY_TOO_LARGE,
                "alternator_affinity_total;outcome=fallback;reason=body_too_large",
            ),
            (NO_ROUTE, "alternator_no_route_total"),
            (POLL_UPDATED, "alternator_agent_polls_total;outcome=updated"),
            (
                POLL_NOT_MODIFIED,
                "alternator_agent_polls_total;outcome=not_modified",
            ),
            (POLL_FAILED, "alternator_agent_polls_total;outcome=failed"),
            (POLL_INVALID, "alternator_agent_polls_total;outcome=invalid"),
            (
                HEALTH_DOWN,
                "alternator_node_health_changes_total;outcome=down",
            ),
            (
                HEALTH_QUARANTINED,
                "alternator_node_health_changes_total;outcome=quarantined",
            ),
            (
                HEALTH_ACTIVE,
                "alternator_node_health_changes_total;outcome=active",
            ),
            (KEY_LEARNED, "alternator_key_names_learned_total"),
            (SNAPSHOT_VERSION, "alternator_snapshot_version"),
            (SNAPSHOT_AGE, "alternator_snapshot_age_seconds"),
            (SNAPSHOT_NODES, "alternator_snapshot_nodes"),
        ] {
            assert_eq!(FIXED[index], name);
        }
        // Gauges are exactly the snapshot metrics, at the end.
        assert_eq!(SNAPSHOT_NODES, FIXED.len() - 1);
        assert!(FIXED[..SNAPSHOT_VERSION]
            .iter()
            .all(|n| !n.starts_with("alternator_snapshot_")));
    }
}
