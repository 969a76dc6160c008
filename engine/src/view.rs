//! One node snapshot as the request path uses it: split into the configured scope's tiers,
//! with scratch buffers so that a plan allocates nothing.
//!
//! Every routing rule is the routing core's (`alternator-routing`); this file picks which
//! rule applies (round robin, random, key affinity, a key's replicas first), applies passive
//! health on top of the agent's, and writes the routing header through the core's one
//! formatter.

use std::cell::{OnceCell, Ref, RefCell};
use std::collections::BTreeMap;

use alternator_routing::affinity::{self, AffinityScratch, AffinityTarget};
use alternator_routing::dynamodb::{self, KeySchemas, NoAffinity, Operation, PartitionKey};
use alternator_routing::plan::RoutingTable;
use alternator_routing::replicas::{self, KeyReplicas, Lead};
use alternator_routing::ring::Ring;
use alternator_routing::snapshot::{HealthState, NodeSnapshot};
use alternator_routing::token;

use crate::config::{FilterConfig, Policy};
use crate::host::Host;
use crate::metrics::{AffinityMiss, RoutedBy, TokenMiss};
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

/// Whether token-aware routing may route this operation by its key(s): the single-item
/// operations, `Query` (when its key condition fixes the partition) and the two batches (by
/// vote).
pub fn token_eligible(op: Operation) -> bool {
    matches!(
        op,
        Operation::GetItem
            | Operation::PutItem
            | Operation::UpdateItem
            | Operation::DeleteItem
            | Operation::Query
            | Operation::BatchGetItem
            | Operation::BatchWriteItem
    )
}

/// Where a request's key(s) sit on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTarget {
    /// One key: the index of its table in the ring's (sorted) table list, its token, and
    /// which replica leads.
    Key {
        table: usize,
        token: i64,
        lead: Lead,
    },
    /// A batch: its keys' (table index, token) pairs are in the view's batch scratch.
    Batch,
}

/// Hash-key names as the ring publishes them.
struct RingSchemas<'a>(&'a Ring);

impl KeySchemas for RingSchemas<'_> {
    fn hash_key(&self, table: &str) -> Option<&str> {
        self.0.table(table).map(|t| t.hash_key())
    }
}

fn token_miss(reason: NoAffinity) -> TokenMiss {
    match reason {
        // The only request the extractors refuse as such is a Query of an index.
        NoAffinity::NotEligible => TokenMiss::IndexQuery,
        NoAffinity::MalformedBody | NoAffinity::MalformedKeyValue => TokenMiss::BadBody,
        NoAffinity::UnknownTable => TokenMiss::UnknownTable,
        NoAffinity::UnsupportedKeyType => TokenMiss::UnsupportedKey,
        _ => TokenMiss::NoKey,
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
    /// Token-aware scratch: the ordinary plan that follows the replicas, the replicas of one
    /// tier, and a key's serialized bytes.
    fallback: RefCell<Vec<usize>>,
    replicas: RefCell<Vec<usize>>,
    key_bytes: RefCell<Vec<u8>>,
    /// A batch's keys as (ring table index, token), and its vote tally.
    batch: RefCell<Vec<(usize, i64)>>,
    votes: RefCell<Vec<u32>>,
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
            fallback: RefCell::new(Vec::with_capacity(config.candidates())),
            replicas: RefCell::new(Vec::new()),
            key_bytes: RefCell::new(Vec::new()),
            batch: RefCell::new(Vec::new()),
            votes: RefCell::new(Vec::new()),
        })
    }

    /// Whether the snapshot carries token ownership.
    pub fn has_ring(&self) -> bool {
        self.table.snapshot().ring().is_some()
    }

    /// Where the request's key(s) sit on the ring, or why they cannot be placed. Writes keep
    /// one lead replica per key; reads (`GetItem`, `Query`) take the key's replicas in turn.
    pub fn token_target<H: Host>(
        &self,
        op: Operation,
        body: &[u8],
        worker: &Worker<H>,
    ) -> Result<TokenTarget, TokenMiss> {
        let ring = self.table.snapshot().ring().ok_or(TokenMiss::NoRing)?;
        if worker.ring_too_old() {
            return Err(TokenMiss::StaleRing);
        }
        let schemas = RingSchemas(ring);
        let keys = match op {
            Operation::BatchGetItem => dynamodb::batch_get_keys(body, &schemas),
            Operation::BatchWriteItem => dynamodb::batch_write_keys(body, &schemas),
            _ => {
                let key = match op {
                    Operation::Query => dynamodb::query_key(body, &schemas),
                    _ => dynamodb::item_key(op, body, &schemas),
                }
                .map_err(token_miss)?;
                let (table, token) = self.place(ring, &key)?;
                let lead = if matches!(op, Operation::GetItem | Operation::Query) {
                    Lead::Rotate(worker.next_round_robin())
                } else {
                    Lead::Key(token)
                };
                return Ok(TokenTarget::Key { table, token, lead });
            }
        };
        let (keys, _skipped) = keys.map_err(token_miss)?;
        let mut batch = self.batch.borrow_mut();
        batch.clear();
        let mut first_miss = None;
        for key in &keys {
            match self.place(ring, key) {
                Ok(placed) => batch.push(placed),
                Err(miss) => {
                    first_miss.get_or_insert(miss);
                }
            }
        }
        if batch.is_empty() {
            return Err(first_miss.unwrap_or(TokenMiss::NoKey));
        }
        Ok(TokenTarget::Batch)
    }

    /// A key's table (index in the ring) and token.
    fn place(&self, ring: &Ring, key: &PartitionKey<'_>) -> Result<(usize, i64), TokenMiss> {
        let table = ring
            .table_index(&key.table)
            .ok_or(TokenMiss::UnknownTable)?;
        let ring_table = ring.tables().get(table).ok_or(TokenMiss::UnknownTable)?;
        if ring_table.key_type() != key.key_type {
            return Err(TokenMiss::UnsupportedKey);
        }
        let token = token::key_token(key, &mut self.key_bytes.borrow_mut())
            .map_err(|_| TokenMiss::UnsupportedKey)?;
        Ok((table, token))
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
        let mut buf = self.health.borrow_mut();
        let health = self.health(worker, &mut buf);
        let mut plan = self.plan.borrow_mut();
        let label = self.ordinary_plan(worker, health, &mut plan);
        self.write(&plan, out, label)
    }

    fn ordinary_plan<H: Host>(
        &self,
        worker: &Worker<H>,
        health: &[HealthState],
        plan: &mut Vec<usize>,
    ) -> RoutedBy {
        let config = &worker.config;
        match config.policy {
            Policy::RoundRobin => {
                let counter = worker.next_round_robin();
                self.table
                    .round_robin(counter, health, config.candidates(), plan);
                RoutedBy::RoundRobin
            }
            Policy::Random => {
                self.table
                    .random(worker.next_random(), health, config.candidates(), plan);
                RoutedBy::Random
            }
        }
    }

    /// The key's replicas in scope first, then the ordinary plan. `Err` carries the decision
    /// when no replica could lead (the ordinary plan alone was written).
    pub fn replica_first<H: Host>(
        &self,
        worker: &Worker<H>,
        target: TokenTarget,
        out: &mut String,
    ) -> Result<Decision, Decision> {
        let mut buf = self.health.borrow_mut();
        let health = self.health(worker, &mut buf);
        let mut fallback = self.fallback.borrow_mut();
        let ordinary = self.ordinary_plan(worker, health, &mut fallback);
        let mut plan = self.plan.borrow_mut();
        let Some(ring) = self.table.snapshot().ring() else {
            return Err(self.write(&fallback, out, ordinary));
        };
        let k = worker.config.candidates();
        let led_by_replica = match target {
            TokenTarget::Key { table, token, lead } => {
                let Some(ring_table) = ring.tables().get(table) else {
                    return Err(self.write(&fallback, out, ordinary));
                };
                let key = KeyReplicas {
                    ring: ring_table,
                    token,
                    lead,
                };
                replicas::replica_plan(
                    &self.table,
                    key,
                    health,
                    &fallback,
                    k,
                    &mut plan,
                    &mut self.replicas.borrow_mut(),
                )
            }
            TokenTarget::Batch => {
                let batch = self.batch.borrow();
                let keys = batch
                    .iter()
                    .filter_map(|&(table, token)| Some((ring.tables().get(table)?, token)));
                replicas::vote_plan(
                    &self.table,
                    keys,
                    health,
                    &fallback,
                    k,
                    &mut plan,
                    &mut self.votes.borrow_mut(),
                )
            }
        };
        let decision = self.write(&plan, out, RoutedBy::Token);
        if led_by_replica {
            Ok(decision)
        } else {
            Err(match decision {
                Decision::Routed(_) => Decision::Routed(ordinary),
                other => other,
            })
        }
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
