//! What tests read back: per-node request counters and the bounded key log that records which
//! node served which (table, hash key).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dynamo::Operation;

/// Request counters of one node. Lock-free so the data path stays cheap.
#[derive(Debug)]
pub(crate) struct NodeCounters {
    by_operation: [AtomicU64; Operation::COUNT],
    localnodes: AtomicU64,
    health: AtomicU64,
    injected_failures: AtomicU64,
    as_replica: AtomicU64,
    as_non_replica: AtomicU64,
}

impl NodeCounters {
    pub(crate) fn new() -> Self {
        NodeCounters {
            by_operation: std::array::from_fn(|_| AtomicU64::new(0)),
            localnodes: AtomicU64::new(0),
            health: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
            as_replica: AtomicU64::new(0),
            as_non_replica: AtomicU64::new(0),
        }
    }

    /// A single-key request this node coordinated, as a replica of the key or not.
    pub(crate) fn count_coordination(&self, replica: bool) {
        let c = if replica {
            &self.as_replica
        } else {
            &self.as_non_replica
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_operation(&self, op: Operation) {
        self.by_operation[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_localnodes(&self) {
        self.localnodes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_health(&self) {
        self.health.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_injected_failure(&self) {
        self.injected_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NodeCounterSnapshot {
        let mut by_operation = BTreeMap::new();
        let mut total = 0;
        for op in Operation::ALL {
            let n = self.by_operation[op as usize].load(Ordering::Relaxed);
            if n > 0 {
                by_operation.insert(op.name().to_owned(), n);
                total += n;
            }
        }
        NodeCounterSnapshot {
            total,
            by_operation,
            localnodes: self.localnodes.load(Ordering::Relaxed),
            health: self.health.load(Ordering::Relaxed),
            injected_failures: self.injected_failures.load(Ordering::Relaxed),
            coordinated_as_replica: self.as_replica.load(Ordering::Relaxed),
            coordinated_as_non_replica: self.as_non_replica.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset(&self) {
        for c in &self.by_operation {
            c.store(0, Ordering::Relaxed);
        }
        self.localnodes.store(0, Ordering::Relaxed);
        self.health.store(0, Ordering::Relaxed);
        self.injected_failures.store(0, Ordering::Relaxed);
        self.as_replica.store(0, Ordering::Relaxed);
        self.as_non_replica.store(0, Ordering::Relaxed);
    }
}

/// Counters of one node at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounterSnapshot {
    /// DynamoDB requests received (every `POST /`, including ones answered with an injected
    /// failure or an error).
    pub total: u64,
    /// DynamoDB requests by operation name (`"GetItem"`); operations never seen are absent.
    pub by_operation: BTreeMap<String, u64>,
    /// `GET /localnodes` requests.
    pub localnodes: u64,
    /// `GET /` health requests.
    pub health: u64,
    /// DynamoDB requests answered with a failure injected by `fail`.
    pub injected_failures: u64,
    /// Single-key requests (GetItem, PutItem, UpdateItem, DeleteItem, Query on the table or an
    /// LSI) this node coordinated while being a replica of the key's range (any datacenter).
    #[serde(default)]
    pub coordinated_as_replica: u64,
    /// The same, while not being a replica: Scylla would forward them
    /// (`coordinator_outside_replica_set`).
    #[serde(default)]
    pub coordinated_as_non_replica: u64,
}

/// Counters of every node, keyed by node address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub nodes: BTreeMap<IpAddr, NodeCounterSnapshot>,
}

impl Counters {
    /// Counters of one node (all zero if the node is unknown).
    pub fn node(&self, address: IpAddr) -> NodeCounterSnapshot {
        self.nodes.get(&address).cloned().unwrap_or_default()
    }

    /// DynamoDB requests of one node.
    pub fn total(&self, address: IpAddr) -> u64 {
        self.nodes.get(&address).map_or(0, |c| c.total)
    }
}

/// One served data operation: which node served which table's hash key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyLogEntry {
    /// Increases by one per entry for the life of the sim (not reset), so a test can read
    /// only what came after a point.
    pub seq: u64,
    pub node: IpAddr,
    pub operation: String,
    pub table: String,
    /// The hash-key AttributeValue exactly as the client sent it (`{"S": "k1"}`); `null` for
    /// a Scan or when the table's key schema is unknown.
    pub key: Value,
    /// For single-key requests: whether the node was a replica of the key (`null` otherwise).
    #[serde(default)]
    pub replica: Option<bool>,
}

/// Bounded ring of the most recent [`KeyLogEntry`]s.
#[derive(Debug)]
pub(crate) struct KeyLog {
    capacity: usize,
    inner: Mutex<KeyLogInner>,
}

#[derive(Debug, Default)]
struct KeyLogInner {
    next_seq: u64,
    entries: VecDeque<Entry>,
}

/// What the ring holds: like [`KeyLogEntry`] without per-entry allocation for the operation.
#[derive(Debug)]
struct Entry {
    seq: u64,
    node: IpAddr,
    operation: Operation,
    table: String,
    key: Value,
    replica: Option<bool>,
}

impl Entry {
    fn public(&self) -> KeyLogEntry {
        KeyLogEntry {
            seq: self.seq,
            node: self.node,
            operation: self.operation.name().to_owned(),
            table: self.table.clone(),
            key: self.key.clone(),
            replica: self.replica,
        }
    }
}

impl KeyLog {
    pub(crate) fn new(capacity: usize) -> Self {
        KeyLog {
            capacity,
            inner: Mutex::new(KeyLogInner::default()),
        }
    }

    pub(crate) fn record(
        &self,
        node: IpAddr,
        operation: Operation,
        keys: impl IntoIterator<Item = (String, Value)>,
        replica: Option<bool>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (table, key) in keys {
            if inner.entries.len() >= self.capacity {
                inner.entries.pop_front();
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.entries.push_back(Entry {
                seq,
                node,
                operation,
                table,
                key,
                replica,
            });
        }
    }

    pub(crate) fn entries(&self, since: Option<u64>) -> Vec<KeyLogEntry> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match since {
            Some(s) => inner
                .entries
                .iter()
                .filter(|e| e.seq >= s)
                .map(Entry::public)
                .collect(),
            None => inner.entries.iter().map(Entry::public).collect(),
        }
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.clear();
    }
}
