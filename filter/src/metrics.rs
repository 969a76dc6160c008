//! The filter's Envoy stats.
//!
//! proxy-wasm metrics are flat names, so labels are encoded in the name as `;label=value`
//! segments. The shipped `envoy.yaml` turns each segment back into a tag with a
//! `stats_config.stats_tags` regex, which is what makes `/stats/prometheus` show for example
//! `alternator_requests_total{node="127.0.0.2:8000",choice="first"}`. Envoy shares a metric
//! between every worker VM that defines the same name, so the numbers are per Envoy.

use std::cell::RefCell;
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

/// Lazily defined metric ids of one VM (define_metric is a host call; done once per name).
///
/// The per-request path looks ids up without allocating: fixed names are `&'static str`, and
/// the per-node ids are found by the upstream address as borrowed `&str`.
#[derive(Debug, Default)]
pub struct Metrics {
    fixed: RefCell<HashMap<&'static str, Option<u32>, Fnv>>,
    /// Upstream `ip:port` → ids of (served as first choice, served as fallback).
    served: RefCell<HashMap<String, [Option<u32>; 2], Fnv>>,
}

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
    fn fixed(&self, name: &'static str, gauge: bool) -> Option<u32> {
        *self.fixed.borrow_mut().entry(name).or_insert_with(|| {
            if gauge {
                host::define_gauge(name)
            } else {
                host::define_counter(name)
            }
        })
    }

    fn inc(&self, name: &'static str) {
        if let Some(id) = self.fixed(name, false) {
            host::increment(id, 1);
        }
    }

    /// A request answered by `node`, which was the filter's first choice or a fallback.
    pub fn served(&self, node: &str, first_choice: bool) {
        let slot = usize::from(!first_choice);
        let cached = self.served.borrow().get(node).map(|ids| ids[slot]);
        let id = match cached {
            Some(id) => id,
            None => {
                let ids = [
                    host::define_counter(&format!(
                        "alternator_requests_total;node={node};choice=first"
                    )),
                    host::define_counter(&format!(
                        "alternator_requests_total;node={node};choice=fallback"
                    )),
                ];
                self.served.borrow_mut().insert(node.to_string(), ids);
                ids[slot]
            }
        };
        if let Some(id) = id {
            host::increment(id, 1);
        }
    }

    /// A routing decision, by the policy that made it.
    pub fn routed(&self, policy: RoutedBy) {
        self.inc(match policy {
            RoutedBy::RoundRobin => "alternator_routed_total;policy=round_robin",
            RoutedBy::Random => "alternator_routed_total;policy=random",
            RoutedBy::Affinity => "alternator_routed_total;policy=affinity",
            RoutedBy::NoSnapshot => "alternator_routed_total;policy=no_snapshot",
        });
    }

    pub fn affinity_applied(&self) {
        self.inc("alternator_affinity_total;outcome=applied;reason=hash_key");
    }

    pub fn affinity_missed(&self, why: AffinityMiss) {
        self.inc(match why {
            AffinityMiss::UnknownTable => {
                "alternator_affinity_total;outcome=fallback;reason=unknown_table"
            }
            AffinityMiss::NoKey => "alternator_affinity_total;outcome=fallback;reason=no_key",
            AffinityMiss::BadBody => "alternator_affinity_total;outcome=fallback;reason=bad_body",
            AffinityMiss::UnsupportedKey => {
                "alternator_affinity_total;outcome=fallback;reason=unsupported_key"
            }
            AffinityMiss::BodyTooLarge => {
                "alternator_affinity_total;outcome=fallback;reason=body_too_large"
            }
        });
    }

    pub fn no_route(&self) {
        self.inc("alternator_no_route_total");
    }

    pub fn poll(&self, outcome: PollOutcome) {
        self.inc(match outcome {
            PollOutcome::Updated => "alternator_agent_polls_total;outcome=updated",
            PollOutcome::NotModified => "alternator_agent_polls_total;outcome=not_modified",
            PollOutcome::Failed => "alternator_agent_polls_total;outcome=failed",
            PollOutcome::Invalid => "alternator_agent_polls_total;outcome=invalid",
        });
    }

    /// Passive health moved a node into `state` (traffic this Envoy forwarded).
    pub fn node_health_changed(&self, state: HealthState) {
        self.inc(match state {
            HealthState::Down => "alternator_node_health_changes_total;outcome=down",
            HealthState::Quarantined => "alternator_node_health_changes_total;outcome=quarantined",
            HealthState::Active => "alternator_node_health_changes_total;outcome=active",
        });
    }

    pub fn key_learned(&self) {
        self.inc("alternator_key_names_learned_total");
    }

    pub fn snapshot(&self, version: u64, age_seconds: u64, nodes: u64) {
        for (name, value) in [
            ("alternator_snapshot_version", version),
            ("alternator_snapshot_age_seconds", age_seconds),
            ("alternator_snapshot_nodes", nodes),
        ] {
            if let Some(id) = self.fixed(name, true) {
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
