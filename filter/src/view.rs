//! Adapter between the filter and the routing core (`alternator-routing`).
//!
//! INTERIM: ordinary routing only, until `plan` and `dynamodb` land in the routing core.

use alternator_routing::endpoint::push_host_port;
use alternator_routing::snapshot::{HealthState, NodeSnapshot};

use crate::config::{AffinityModeConfig, FilterConfig};
use crate::metrics::AffinityMiss;
use crate::worker::Worker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Routed(&'static str),
    NoCandidate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    CreateTableRequest,
    DescribeTableResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation(u8);

impl Operation {
    pub fn describes_table(self) -> bool {
        false
    }
    pub fn creates_table(self) -> bool {
        false
    }
}

pub fn classify(target: &[u8]) -> Option<Operation> {
    target
        .starts_with(b"DynamoDB_20120810.")
        .then_some(Operation(0))
}

pub fn affinity_enabled(config: &FilterConfig) -> bool {
    config.affinity.mode != AffinityModeConfig::None
}

pub fn needs_body(_op: Operation, _config: &FilterConfig) -> bool {
    false
}

pub fn affinity_hash(
    _op: Operation,
    _body: &[u8],
    _config: &FilterConfig,
    _key_name: impl Fn(&str) -> Option<String>,
) -> Result<i64, AffinityMiss> {
    Err(AffinityMiss::UnknownTable)
}

pub fn learn_hash_key(_body: &[u8], _from: Learn) -> Option<(String, String)> {
    None
}

#[derive(Debug)]
pub struct RoutingView {
    snapshot: NodeSnapshot,
    eligible: Vec<usize>,
}

impl RoutingView {
    pub fn build(bytes: &[u8], _config: &FilterConfig) -> Result<Self, String> {
        let snapshot = NodeSnapshot::from_json(bytes).map_err(|e| e.to_string())?;
        let eligible = snapshot
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.health == HealthState::Active)
            .map(|(i, _)| i)
            .collect();
        Ok(RoutingView { snapshot, eligible })
    }

    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    pub fn node_count(&self) -> usize {
        self.snapshot.nodes().len()
    }

    pub fn ordinary(&self, worker: &Worker, out: &mut String) -> Decision {
        out.clear();
        let n = self.eligible.len();
        if n == 0 {
            return Decision::NoCandidate;
        }
        let start = (worker.next_round_robin() % n as u64) as usize;
        for i in 0..worker.config.candidates().min(n) {
            if i > 0 {
                out.push(',');
            }
            let node = &self.snapshot.nodes()[self.eligible[(start + i) % n]];
            push_host_port(out, node.address, self.snapshot.port());
        }
        Decision::Routed("round_robin")
    }

    pub fn affine(&self, _hash: i64, _k: usize, out: &mut String) -> Decision {
        out.clear();
        Decision::NoCandidate
    }
}
