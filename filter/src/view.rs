//! Adapter between the filter and the routing core (`alternator-routing`).
//!
//! Everything here is a call into the routing core plus the glue the host needs (scratch
//! buffers, the worker's counters, metric labels). No routing rule is decided in this file.

use std::cell::{OnceCell, Ref, RefCell};
use std::collections::BTreeMap;

use alternator_routing::affinity::{self, AffinityScratch, AffinityTarget};
use alternator_routing::dynamodb::{self, AffinityMode, KeySchemas, NoAffinity, Operation};
use alternator_routing::endpoint::host_port;
use alternator_routing::plan::RoutingTable;
use alternator_routing::scope::{Scope, ScopePolicy};
use alternator_routing::snapshot::{HealthState, NodeSnapshot};

use crate::config::{AffinityModeConfig, FilterConfig, Policy};
use crate::host;
use crate::metrics::{AffinityMiss, RoutedBy};
use crate::worker::Worker;

/// What the filter does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The routing header holds the plan made by this policy.
    Routed(RoutedBy),
    /// No node of the scope may serve: answer 503.
    NoCandidate,
}

/// The routing core's affinity mode for a configured mode.
pub fn affinity_mode(config: &FilterConfig) -> AffinityMode {
    match config.affinity.mode {
        AffinityModeConfig::None => AffinityMode::None,
        AffinityModeConfig::Rmw => AffinityMode::Rmw,
        AffinityModeConfig::AnyWrite => AffinityMode::AnyWrite,
    }
}

/// The operation named by `X-Amz-Target` (non-UTF-8 is just "other").
pub fn classify(target: &[u8]) -> Operation {
    std::str::from_utf8(target).map_or(Operation::Other, Operation::from_target)
}

/// Whether any request may be routed by key (or teach a key schema), so the operation named
/// by `X-Amz-Target` matters at all.
pub fn uses_operation(config: &FilterConfig) -> bool {
    affinity_mode(config) != AffinityMode::None
}

/// Whether this request is routed by key, so its body must be read first.
pub fn needs_body(op: Operation, config: &FilterConfig) -> bool {
    dynamodb::needs_body(affinity_mode(config), op)
}

/// Whether the response of this request teaches a table's partition-key name.
pub fn learns_from_response(op: Operation, config: &FilterConfig) -> bool {
    dynamodb::learns_key_schema(affinity_mode(config), op)
}

/// `(table, partition-key name)` from a CreateTable or DescribeTable response body.
pub fn learned_key(response_body: &[u8]) -> Option<(String, String)> {
    dynamodb::table_description_key_schema(response_body).map(|t| (t.table, t.hash_key))
}

/// Configured names first, then names learned by any worker of this Envoy. The learned map
/// (a shared-data read of its version key, and of the map itself when it changed) is consulted
/// only when the configured map misses, so configured tables cost no host call.
struct Schemas<'a> {
    configured: &'a BTreeMap<String, String>,
    worker: &'a Worker,
    learned: OnceCell<Ref<'a, BTreeMap<String, String>>>,
}

impl KeySchemas for Schemas<'_> {
    fn hash_key(&self, table: &str) -> Option<&str> {
        if let Some(key) = self.configured.get(table) {
            return Some(key);
        }
        self.learned
            .get_or_init(|| self.worker.learned_keys())
            .get(table)
            .map(String::as_str)
    }
}

/// What a request is routed by: `Ok(None)` when it does not qualify for affinity (ordinary
/// traffic), `Err` when it qualifies but cannot be routed by key.
pub fn affinity_target(
    op: Operation,
    body: &[u8],
    worker: &Worker,
) -> Result<Option<AffinityTarget>, AffinityMiss> {
    let schemas = Schemas {
        configured: &worker.config.affinity.tables,
        worker,
        learned: OnceCell::new(),
    };
    match dynamodb::affinity_keys(affinity_mode(&worker.config), op, body, &schemas) {
        Ok(keys) => Ok(Some(AffinityTarget::from_keys(&keys))),
        Err(NoAffinity::NotEligible) => Ok(None),
        Err(e) => Err(miss(e)),
    }
}

fn miss(reason: NoAffinity) -> AffinityMiss {
    match reason {
        NoAffinity::MalformedBody | NoAffinity::MalformedKeyValue => AffinityMiss::BadBody,
        NoAffinity::UnknownTable => AffinityMiss::UnknownTable,
        NoAffinity::UnsupportedKeyType => AffinityMiss::UnsupportedKey,
        _ => AffinityMiss::NoKey,
    }
}

/// The scope policy the configuration asks for.
pub fn scope_policy(config: &FilterConfig) -> Result<ScopePolicy, String> {
    let scope = Scope::from_names(
        config.scope.datacenter.as_deref(),
        config.scope.rack.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    Ok(ScopePolicy {
        scope,
        mode: config.scope.mode,
    })
}

/// One snapshot, split into the configured scope's tiers, plus a scratch plan buffer.
#[derive(Debug)]
pub struct RoutingView {
    table: RoutingTable,
    /// `ip:port` of every node, formatted once per snapshot rather than once per request.
    endpoints: Vec<String>,
    plan: RefCell<Vec<usize>>,
    scratch: RefCell<AffinityScratch>,
    /// The agent's health made worse by passive health, rebuilt per request while any node is
    /// tracked (the cooldown depends on the clock).
    health: RefCell<Vec<HealthState>>,
    /// Per node index: the slot of its served-by counters, once a request was served by it.
    served_slots: RefCell<Vec<Option<usize>>>,
}

impl RoutingView {
    pub fn build(bytes: &[u8], config: &FilterConfig) -> Result<Self, String> {
        let snapshot = NodeSnapshot::from_json(bytes).map_err(|e| e.to_string())?;
        let port = snapshot.port();
        let endpoints: Vec<String> = snapshot
            .nodes()
            .iter()
            .map(|n| host_port(n.address, port))
            .collect();
        let served_slots = RefCell::new(vec![None; endpoints.len()]);
        let table = RoutingTable::new(snapshot, scope_policy(config)?);
        Ok(RoutingView {
            table,
            endpoints,
            plan: RefCell::new(Vec::with_capacity(config.candidates())),
            scratch: RefCell::new(AffinityScratch::default()),
            health: RefCell::new(Vec::new()),
            served_slots,
        })
    }

    pub fn version(&self) -> u64 {
        self.table.snapshot().version()
    }

    pub fn node_count(&self) -> usize {
        self.table.snapshot().nodes().len()
    }

    /// Whether some node of the snapshot lies in the configured (innermost) scope.
    pub fn scope_has_nodes(&self) -> bool {
        self.table
            .tiers()
            .next()
            .is_some_and(|tier| !tier.is_empty())
    }

    /// The health plans use: the agent's, unless passive health tracks some node.
    fn health<'a>(&'a self, worker: &Worker, buf: &'a mut Vec<HealthState>) -> &'a [HealthState] {
        let passive = worker.passive_health();
        if passive.is_empty() {
            return self.table.published_health();
        }
        let nodes = self.table.snapshot().nodes();
        passive.overlay(
            nodes.iter().map(|n| n.address),
            self.table.published_health(),
            host::now_ms(),
            worker.config.passive_health.cooldown_ms,
            buf,
        );
        buf
    }

    /// Round robin or random over the scope, by configuration.
    pub fn ordinary(&self, worker: &Worker, out: &mut String) -> Decision {
        let config = &worker.config;
        let mut buf = self.health.borrow_mut();
        let health = self.health(worker, &mut buf);
        let mut plan = self.plan.borrow_mut();
        let label = match config.policy {
            Policy::RoundRobin => {
                self.table.round_robin(
                    worker.next_round_robin(),
                    health,
                    config.candidates(),
                    &mut plan,
                );
                RoutedBy::RoundRobin
            }
            Policy::Random => {
                self.table
                    .random(worker.next_random(), health, config.candidates(), &mut plan);
                RoutedBy::Random
            }
        };
        self.write(&plan, out, label)
    }

    /// The key's (or the batch vote's) affinity plan over the scope.
    pub fn affine(&self, worker: &Worker, target: &AffinityTarget, out: &mut String) -> Decision {
        let mut buf = self.health.borrow_mut();
        let health = self.health(worker, &mut buf);
        let k = worker.config.candidates();
        let mut plan = self.plan.borrow_mut();
        let mut scratch = self.scratch.borrow_mut();
        affinity::plan(&self.table, target, health, k, &mut plan, &mut scratch);
        self.write(&plan, out, RoutedBy::Affinity)
    }

    /// Counts a request answered by `upstream` (`ip:port`, as Envoy reports it) against its
    /// node; `first` is the index of the plan's first choice. Returns whether `upstream` is that
    /// first choice (found by index; any other node, a fallback after a retry, by `ip:port`).
    pub fn served(&self, worker: &Worker, upstream: &str, first: Option<usize>) -> bool {
        let first = first.filter(|&i| self.endpoints.get(i).is_some_and(|e| e == upstream));
        let Some(index) = first else {
            worker.metrics.served(upstream, false);
            return false;
        };
        let cached = self.served_slots.borrow().get(index).copied().flatten();
        let slot = cached.unwrap_or_else(|| {
            let slot = worker.metrics.served_slot(upstream);
            if let Some(cache) = self.served_slots.borrow_mut().get_mut(index) {
                *cache = Some(slot);
            }
            slot
        });
        worker.metrics.served_by(slot, true);
        true
    }

    /// The node index of the plan's first choice (what [`RoutingView::served`] takes).
    pub fn first_choice(&self) -> Option<usize> {
        self.plan.borrow().first().copied()
    }

    /// The routing header value for `plan`: what `RoutingTable::push_override_hosts` writes,
    /// from the preformatted endpoints.
    fn write(&self, plan: &[usize], out: &mut String, label: RoutedBy) -> Decision {
        out.clear();
        for endpoint in plan.iter().filter_map(|&i| self.endpoints.get(i)) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(endpoint);
        }
        if out.is_empty() {
            return Decision::NoCandidate;
        }
        Decision::Routed(label)
    }
}
