//! One node snapshot as the request path uses it: split into the configured scope's tiers,
//! with scratch buffers so that a plan allocates nothing.
//!
//! Every routing rule is the routing core's (`alternator-routing`); this file picks which
//! rule applies (round robin, random, key affinity), applies passive health on top of the
//! agent's, and writes the routing header through the core's one formatter.

use std::cell::{OnceCell, Ref, RefCell};
use std::collections::BTreeMap;

use alternator_routing::affinity::{self, AffinityScratch, AffinityTarget};
use alternator_routing::dynamodb::{self, KeySchemas, NoAffinity, Operation};
use alternator_routing::plan::RoutingTable;
use alternator_routing::snapshot::{HealthState, NodeSnapshot};

use crate::config::{FilterConfig, Policy};
use crate::host::Host;
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

/// The operation named by `X-Amz-Target` (non-UTF-8 is just "other").
pub fn classify(target: &[u8]) -> Operation {
    std::str::from_utf8(target).map_or(Operation::Other, Operation::from_target)
}

/// Configured names first, then names learned by any worker of this proxy. The learned map
/// (a shared read of its version key, and of the map itself when it changed) is consulted
/// only when the configured map misses, so configured tables cost no host call.
struct Schemas<'a, H: Host> {
    configured: &'a BTreeMap<String, String>,
    worker: &'a Worker<H>,
    learned: OnceCell<Ref<'a, BTreeMap<String, String>>>,
}

impl<H: Host> KeySchemas for Schemas<'_, H> {
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
pub fn affinity_target<H: Host>(
    op: Operation,
    body: &[u8],
    worker: &Worker<H>,
) -> Result<Option<AffinityTarget>, AffinityMiss> {
    let schemas = Schemas {
        configured: &worker.config.affinity.tables,
        worker,
        learned: OnceCell::new(),
    };
    match dynamodb::affinity_keys(worker.config.affinity.mode, op, body, &schemas) {
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

/// One snapshot, split into the configured scope's tiers, plus a scratch plan buffer.
#[derive(Debug)]
pub struct RoutingView {
    table: RoutingTable,
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
        let served_slots = RefCell::new(vec![None; snapshot.nodes().len()]);
        let table = RoutingTable::new(snapshot, config.scope.clone());
        Ok(RoutingView {
            table,
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
    fn health<'a, H: Host>(
        &'a self,
        worker: &Worker<H>,
        buf: &'a mut Vec<HealthState>,
    ) -> &'a [HealthState] {
        let passive = worker.passive_health();
        if passive.is_empty() {
            return self.table.published_health();
        }
        let nodes = self.table.snapshot().nodes();
        passive.overlay(
            nodes.iter().map(|n| n.address),
            self.table.published_health(),
            worker.host.now_ms(),
            worker.config.passive_health.cooldown_ms,
            buf,
        );
        buf
    }

    /// Round robin or random over the scope, by configuration.
    pub fn ordinary<H: Host>(&self, worker: &Worker<H>, out: &mut String) -> Decision {
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
    pub fn affine<H: Host>(
        &self,
        worker: &Worker<H>,
        target: &AffinityTarget,
        out: &mut String,
    ) -> Decision {
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
    pub fn served<H: Host>(
        &self,
        worker: &Worker<H>,
        upstream: &str,
        first: Option<usize>,
    ) -> bool {
        let first = first.filter(|&i| self.table.override_host(i) == Some(upstream));
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

    /// Writes the routing header value for `plan` into `out`.
    fn write(&self, plan: &[usize], out: &mut String, label: RoutedBy) -> Decision {
        out.clear();
        self.table.push_override_hosts(plan, out);
        if out.is_empty() {
            return Decision::NoCandidate;
        }
        Decision::Routed(label)
    }
}
