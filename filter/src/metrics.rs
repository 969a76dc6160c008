//! The filter's Envoy stats.
//!
//! proxy-wasm metrics are flat names, so labels are encoded in the name as `;label=value`
//! segments. The shipped `envoy.yaml` turns each segment back into a tag with a
//! `stats_config.stats_tags` regex, which is what makes `/stats/prometheus` show for example
//! `alternator_requests_total{node="127.0.0.2:8000",choice="first"}`. Envoy shares a metric
//! between every worker VM that defines the same name, so the numbers are per Envoy.

use std::cell::RefCell;
use std::collections::HashMap;

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
    /// The body is larger than `max_body_bytes`.
    BodyTooLarge,
}

impl AffinityMiss {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityMiss::UnknownTable => "unknown_table",
            AffinityMiss::NoKey => "no_key",
            AffinityMiss::BadBody => "bad_body",
            AffinityMiss::BodyTooLarge => "body_too_large",
        }
    }
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

impl PollOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Updated => "updated",
            PollOutcome::NotModified => "not_modified",
            PollOutcome::Failed => "failed",
            PollOutcome::Invalid => "invalid",
        }
    }
}

/// Lazily defined metric ids of one VM (define_metric is a host call; done once per name).
#[derive(Debug, Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, Option<u32>>>,
}

impl Metrics {
    fn counter(&self, name: String) -> Option<u32> {
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(&name) {
            return *id;
        }
        let id = host::define_counter(&name);
        ids.insert(name, id);
        id
    }

    fn gauge(&self, name: String) -> Option<u32> {
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(&name) {
            return *id;
        }
        let id = host::define_gauge(&name);
        ids.insert(name, id);
        id
    }

    fn inc(&self, name: String) {
        if let Some(id) = self.counter(name) {
            host::increment(id, 1);
        }
    }

    /// A request answered by `node`, which was the filter's first choice or a fallback.
    pub fn served(&self, node: &str, first_choice: bool) {
        let choice = if first_choice { "first" } else { "fallback" };
        self.inc(format!(
            "alternator_requests_total;node={node};choice={choice}"
        ));
    }

    /// A routing decision, by the policy that made it (`round_robin`, `random`, `affinity`).
    pub fn routed(&self, policy: &str) {
        self.inc(format!("alternator_routed_total;policy={policy}"));
    }

    pub fn affinity_applied(&self) {
        self.inc("alternator_affinity_total;outcome=applied;reason=hash_key".to_string());
    }

    pub fn affinity_missed(&self, why: AffinityMiss) {
        self.inc(format!(
            "alternator_affinity_total;outcome=fallback;reason={}",
            why.as_str()
        ));
    }

    pub fn no_route(&self) {
        self.inc("alternator_no_route_total".to_string());
    }

    pub fn poll(&self, outcome: PollOutcome) {
        self.inc(format!(
            "alternator_agent_polls_total;outcome={}",
            outcome.as_str()
        ));
    }

    pub fn key_learned(&self) {
        self.inc("alternator_key_names_learned_total".to_string());
    }

    pub fn snapshot(&self, version: u64, age_seconds: u64, nodes: u64) {
        for (name, value) in [
            ("alternator_snapshot_version", version),
            ("alternator_snapshot_age_seconds", age_seconds),
            ("alternator_snapshot_nodes", nodes),
        ] {
            if let Some(id) = self.gauge(name.to_string()) {
                host::record(id, value);
            }
        }
    }
}
