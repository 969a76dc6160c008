//! The filter's metrics: one table of every family, its kind and labels, and the counters one
//! worker keeps between two flushes.
//!
//! The engine defines each series by family name and `(label, value)` pairs
//! ([`Host::define_metric`]). A host with flat metric names (proxy-wasm) composes
//! [`flat_name`], labels as `;label=value` segments; the shipped `envoy.yaml` turns each
//! segment back into a tag with a `stats_config.stats_tags` regex, so `/stats/prometheus`
//! shows for example `alternator_requests_total{node="127.0.0.2:8000",choice="first"}`. A host
//! with labelled metrics (Envoy's dynamic modules) defines the families with their labels. Envoy shares a metric
//! between every worker that defines the same name, so the numbers are per proxy.
//!
//! Counting costs no host call: each worker adds to its own counters, and [`Metrics::flush`]
//! hands the sums to the host on the poll tick (every `agent.tick_ms`) and when the worker is
//! reconfigured or shut down. Counters therefore trail the traffic by up to one tick. Gauges
//! are recorded at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use alternator_routing::snapshot::HealthState;

use crate::host::{Host, MetricKind};

/// A metric family: what the README documents and Prometheus shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Label names, in the order they are encoded.
    pub labels: &'static [&'static str],
}

const fn family(name: &'static str, kind: MetricKind, labels: &'static [&'static str]) -> Family {
    Family { name, kind, labels }
}

pub const REQUESTS: Family = family(
    "alternator_requests_total",
    MetricKind::Counter,
    &["node", "choice"],
);
pub const ROUTED: Family = family("alternator_routed_total", MetricKind::Counter, &["policy"]);
pub const AFFINITY: Family = family(
    "alternator_affinity_total",
    MetricKind::Counter,
    &["outcome", "reason"],
);
pub const TOKEN_AWARE: Family = family(
    "alternator_token_aware_total",
    MetricKind::Counter,
    &["outcome", "reason"],
);
pub const NO_ROUTE: Family = family("alternator_no_route_total", MetricKind::Counter, &[]);
pub const AGENT_POLLS: Family = family(
    "alternator_agent_polls_total",
    MetricKind::Counter,
    &["outcome"],
);
pub const NODE_HEALTH_CHANGES: Family = family(
    "alternator_node_health_changes_total",
    MetricKind::Counter,
    &["outcome"],
);
pub const KEY_NAMES_LEARNED: Family = family(
    "alternator_key_names_learned_total",
    MetricKind::Counter,
    &[],
);
pub const SNAPSHOT_VERSION: Family = family("alternator_snapshot_version", MetricKind::Gauge, &[]);
pub const SNAPSHOT_AGE: Family = family("alternator_snapshot_age_seconds", MetricKind::Gauge, &[]);
pub const SNAPSHOT_NODES: Family = family("alternator_snapshot_nodes", MetricKind::Gauge, &[]);

/// Every family the filter reports.
pub const FAMILIES: [Family; 11] = [
    REQUESTS,
    ROUTED,
    AFFINITY,
    TOKEN_AWARE,
    NO_ROUTE,
    AGENT_POLLS,
    NODE_HEALTH_CHANGES,
    KEY_NAMES_LEARNED,
    SNAPSHOT_VERSION,
    SNAPSHOT_AGE,
    SNAPSHOT_NODES,
];

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

/// Why a request that token-aware routing could have sent to a replica was routed otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenMiss {
    /// The snapshot carries no ring (the agent's ring discovery is off or has not read one).
    NoRing,
    /// The ring has no entry for the request's table.
    UnknownTable,
    /// The body did not name a table or carried no value for the partition key.
    NoKey,
    /// The body was not the JSON DynamoDB expects, or the key value was malformed.
    BadBody,
    /// The key's type is not the table's hash-key type, or a number Alternator would refuse.
    UnsupportedKey,
    /// The body is larger than `max_body_bytes`.
    BodyTooLarge,
    /// No replica of the key is `ACTIVE` inside the scope.
    NoReplicaInScope,
    /// A `Query` of an index: the table's ring does not place the index's partitions.
    IndexQuery,
    /// The agent has not confirmed the snapshot for longer than `token_aware.max_ring_age_ms`.
    StaleRing,
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

/// Which policy made a routing decision (the `policy` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutedBy {
    RoundRobin,
    Random,
    Affinity,
    /// A replica of the key leads the plan (token-aware routing).
    Token,
    /// No snapshot yet: Envoy's fallback policy chose.
    NoSnapshot,
}

/// One series of a family with fixed label values: everything but the per-node counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Routed(RoutedBy),
    AffinityApplied,
    AffinityMissed(AffinityMiss),
    TokenApplied,
    TokenMissed(TokenMiss),
    NoRoute,
    AgentPoll(PollOutcome),
    NodeHealthChanged(HealthState),
    KeyNameLearned,
    SnapshotVersion,
    SnapshotAge,
    SnapshotNodes,
}

/// The one table of fixed series: each one's family and label values (in the family's
/// label order). A series' position here is its counter slot.
pub const SERIES: [(Metric, Family, &[&str]); 33] = [
    (
        Metric::Routed(RoutedBy::RoundRobin),
        ROUTED,
        &["round_robin"],
    ),
    (Metric::Routed(RoutedBy::Random), ROUTED, &["random"]),
    (Metric::Routed(RoutedBy::Affinity), ROUTED, &["affinity"]),
    (
        Metric::Routed(RoutedBy::NoSnapshot),
        ROUTED,
        &["no_snapshot"],
    ),
    (Metric::AffinityApplied, AFFINITY, &["applied", "hash_key"]),
    (
        Metric::AffinityMissed(AffinityMiss::UnknownTable),
        AFFINITY,
        &["fallback", "unknown_table"],
    ),
    (
        Metric::AffinityMissed(AffinityMiss::NoKey),
        AFFINITY,
        &["fallback", "no_key"],
    ),
    (
        Metric::AffinityMissed(AffinityMiss::BadBody),
        AFFINITY,
        &["fallback", "bad_body"],
    ),
    (
        Metric::AffinityMissed(AffinityMiss::UnsupportedKey),
        AFFINITY,
        &["fallback", "unsupported_key"],
    ),
    (
        Metric::AffinityMissed(AffinityMiss::BodyTooLarge),
        AFFINITY,
        &["fallback", "body_too_large"],
    ),
    (Metric::NoRoute, NO_ROUTE, &[]),
    (Metric::Routed(RoutedBy::Token), ROUTED, &["token"]),
    (Metric::TokenApplied, TOKEN_AWARE, &["replica", "token"]),
    (
        Metric::TokenMissed(TokenMiss::NoRing),
        TOKEN_AWARE,
        &["fallback", "no_ring"],
    ),
    (
        Metric::TokenMissed(TokenMiss::UnknownTable),
        TOKEN_AWARE,
        &["fallback", "unknown_table"],
    ),
    (
        Metric::TokenMissed(TokenMiss::NoKey),
        TOKEN_AWARE,
        &["fallback", "no_key"],
    ),
    (
        Metric::TokenMissed(TokenMiss::BadBody),
        TOKEN_AWARE,
        &["fallback", "bad_body"],
    ),
    (
        Metric::TokenMissed(TokenMiss::UnsupportedKey),
        TOKEN_AWARE,
        &["fallback", "unsupported_key"],
    ),
    (
        Metric::TokenMissed(TokenMiss::BodyTooLarge),
        TOKEN_AWARE,
        &["fallback", "body_too_large"],
    ),
    (
        Metric::TokenMissed(TokenMiss::NoReplicaInScope),
        TOKEN_AWARE,
        &["fallback", "no_replica_in_scope"],
    ),
    (
        Metric::TokenMissed(TokenMiss::IndexQuery),
        TOKEN_AWARE,
        &["fallback", "index"],
    ),
    (
        Metric::TokenMissed(TokenMiss::StaleRing),
        TOKEN_AWARE,
        &["fallback", "stale_ring"],
    ),
    (
        Metric::AgentPoll(PollOutcome::Updated),
        AGENT_POLLS,
        &["updated"],
    ),
    (
        Metric::AgentPoll(PollOutcome::NotModified),
        AGENT_POLLS,
        &["not_modified"],
    ),
    (
        Metric::AgentPoll(PollOutcome::Failed),
        AGENT_POLLS,
        &["failed"],
    ),
    (
        Metric::AgentPoll(PollOutcome::Invalid),
        AGENT_POLLS,
        &["invalid"],
    ),
    (
        Metric::NodeHealthChanged(HealthState::Down),
        NODE_HEALTH_CHANGES,
        &["down"],
    ),
    (
        Metric::NodeHealthChanged(HealthState::Quarantined),
        NODE_HEALTH_CHANGES,
        &["quarantined"],
    ),
    (
        Metric::NodeHealthChanged(HealthState::Active),
        NODE_HEALTH_CHANGES,
        &["active"],
    ),
    (Metric::KeyNameLearned, KEY_NAMES_LEARNED, &[]),
    (Metric::SnapshotVersion, SNAPSHOT_VERSION, &[]),
    (Metric::SnapshotAge, SNAPSHOT_AGE, &[]),
    (Metric::SnapshotNodes, SNAPSHOT_NODES, &[]),
];

impl Metric {
    /// This series' position in [`SERIES`]: a match the compiler turns into a constant.
    pub const fn slot(self) -> usize {
        match self {
            Metric::Routed(RoutedBy::RoundRobin) => 0,
            Metric::Routed(RoutedBy::Random) => 1,
            Metric::Routed(RoutedBy::Affinity) => 2,
            Metric::Routed(RoutedBy::NoSnapshot) => 3,
            Metric::AffinityApplied => 4,
            Metric::AffinityMissed(AffinityMiss::UnknownTable) => 5,
            Metric::AffinityMissed(AffinityMiss::NoKey) => 6,
            Metric::AffinityMissed(AffinityMiss::BadBody) => 7,
            Metric::AffinityMissed(AffinityMiss::UnsupportedKey) => 8,
            Metric::AffinityMissed(AffinityMiss::BodyTooLarge) => 9,
            Metric::NoRoute => 10,
            Metric::Routed(RoutedBy::Token) => 11,
            Metric::TokenApplied => 12,
            Metric::TokenMissed(TokenMiss::NoRing) => 13,
            Metric::TokenMissed(TokenMiss::UnknownTable) => 14,
            Metric::TokenMissed(TokenMiss::NoKey) => 15,
            Metric::TokenMissed(TokenMiss::BadBody) => 16,
            Metric::TokenMissed(TokenMiss::UnsupportedKey) => 17,
            Metric::TokenMissed(TokenMiss::BodyTooLarge) => 18,
            Metric::TokenMissed(TokenMiss::NoReplicaInScope) => 19,
            Metric::TokenMissed(TokenMiss::IndexQuery) => 20,
            Metric::TokenMissed(TokenMiss::StaleRing) => 21,
            Metric::AgentPoll(PollOutcome::Updated) => 22,
            Metric::AgentPoll(PollOutcome::NotModified) => 23,
            Metric::AgentPoll(PollOutcome::Failed) => 24,
            Metric::AgentPoll(PollOutcome::Invalid) => 25,
            Metric::NodeHealthChanged(HealthState::Down) => 26,
            Metric::NodeHealthChanged(HealthState::Quarantined) => 27,
            Metric::NodeHealthChanged(HealthState::Active) => 28,
            Metric::KeyNameLearned => 29,
            Metric::SnapshotVersion => 30,
            Metric::SnapshotAge => 31,
            Metric::SnapshotNodes => 32,
        }
    }

    pub fn family(self) -> Family {
        SERIES[self.slot()].1
    }

    /// This series' `(label, value)` pairs, in its family's label order.
    pub fn labels(self) -> Vec<(&'static str, &'static str)> {
        let (_, family, values) = SERIES[self.slot()];
        labels(family, values)
    }

    /// The name a host with flat metric names defines ([`flat_name`]).
    pub fn flat_name(self) -> String {
        flat_name(self.family().name, &self.labels())
    }
}

/// `family`'s label names paired with `values` (in the family's order).
pub fn labels<'a>(family: Family, values: &[&'a str]) -> Vec<(&'static str, &'a str)> {
    family
        .labels
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect()
}

/// `name;label=value;...`: a series' name for a host whose metrics have no labels (proxy-wasm);
/// the shipped `envoy.yaml` turns each segment back into a tag.
pub fn flat_name(name: &str, labels: &[(&str, &str)]) -> String {
    let mut flat = name.to_string();
    for (label, value) in labels {
        flat.push(';');
        flat.push_str(label);
        flat.push('=');
        flat.push_str(value);
    }
    flat
}

/// The `choice` label of [`REQUESTS`]: served by the plan's first choice or a fallback.
const CHOICES: [&str; 2] = ["first", "fallback"];

/// One worker's counters not yet handed to the host, and the metric ids defined so far
/// (defining is a host call, made once per name, at the first flush that needs it).
///
/// The per-request path never hashes a name: every fixed series has a slot, and the per-node
/// counters are found by a slot number the routing view caches per node index, falling back
/// to a lookup by `ip:port`.
#[derive(Debug)]
pub struct Metrics {
    /// `None`: not defined yet; `Some(id)`: what the host answered.
    ids: [Cell<Option<Option<u32>>>; SERIES.len()],
    /// Counts of the counters since the last flush.
    pending: [Cell<u64>; SERIES.len()],
    /// Upstream `ip:port` → its slot in `served`.
    served_index: RefCell<HashMap<String, usize, Fnv>>,
    /// Per upstream node: its served-by counters.
    served: RefCell<Vec<Served>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ids: std::array::from_fn(|_| Cell::new(None)),
            pending: std::array::from_fn(|_| Cell::new(0)),
            served_index: RefCell::default(),
            served: RefCell::default(),
        }
    }
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
    fn id(&self, host: &impl Host, metric: Metric) -> Option<u32> {
        let slot = &self.ids[metric.slot()];
        if let Some(id) = slot.get() {
            return id;
        }
        let id = host.define_metric(metric.family().kind, metric.family().name, &metric.labels());
        slot.set(Some(id));
        id
    }

    /// Adds one to a counter (handed to the host at the next flush).
    #[inline]
    pub fn count(&self, metric: Metric) {
        let pending = &self.pending[metric.slot()];
        pending.set(pending.get().wrapping_add(1));
    }

    /// What [`Metrics::count`] added since the last flush (for tests and diagnostics).
    pub fn pending(&self, metric: Metric) -> u64 {
        self.pending[metric.slot()].get()
    }

    /// Hands every count since the last flush to the host: one host call per counter that
    /// moved.
    pub fn flush(&self, host: &impl Host) {
        for (metric, family, _) in SERIES {
            if family.kind != MetricKind::Counter {
                continue;
            }
            let count = self.pending[metric.slot()].replace(0);
            if count > 0 {
                if let Some(id) = self.id(host, metric) {
                    host.increment_metric(id, i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
        }
        for served in self.served.borrow_mut().iter_mut() {
            if served.pending == [0, 0] {
                continue;
            }
            let node = served.node.as_str();
            let ids = *served.ids.get_or_insert_with(|| {
                CHOICES.map(|choice| {
                    host.define_metric(
                        REQUESTS.kind,
                        REQUESTS.name,
                        &labels(REQUESTS, &[node, choice]),
                    )
                })
            });
            for (id, count) in ids.iter().zip(std::mem::take(&mut served.pending)) {
                if let (Some(id), true) = (id, count > 0) {
                    host.increment_metric(*id, i64::try_from(count).unwrap_or(i64::MAX));
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

    /// The snapshot gauges, recorded at once.
    pub fn snapshot(&self, host: &impl Host, version: u64, age_seconds: u64, nodes: u64) {
        for (metric, value) in [
            (Metric::SnapshotVersion, version),
            (Metric::SnapshotAge, age_seconds),
            (Metric::SnapshotNodes, nodes),
        ] {
            if let Some(id) = self.id(host, metric) {
                host.record_metric(id, value);
            }
        }
    }
}
