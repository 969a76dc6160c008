//! Node discovery's metrics: scope queries, refresh rounds, `/localnodes` requests, probes
//! and the cadence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use alternator_routing::scope::Scope;

use super::{
    Exposition, Family, Seconds, ACTIVE_CADENCE, CONSECUTIVE_FAILURES, DISCOVERY_REQUESTS,
    DISCOVERY_REQUEST_FAILURES, LAST_SUCCESS, PROBES, REFRESHES, REFRESH_ROUNDS,
    REFRESH_ROUNDS_FAILED,
};

/// Outcome label of one scope query in a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefreshOutcome {
    /// A node answered with at least one address.
    Success,
    /// A node answered `[]`.
    Empty,
    /// Every candidate failed.
    Failure,
    /// Skipped because a narrower scope had nodes.
    Skipped,
}

impl RefreshOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Success => "success",
            RefreshOutcome::Empty => "empty",
            RefreshOutcome::Failure => "failure",
            RefreshOutcome::Skipped => "skipped",
        }
    }
}

/// A scope as its labels: kind, then datacenter and rack where it has them.
type ScopeLabels = (&'static str, Option<String>, Option<String>);

fn scope_labels(scope: &Scope) -> ScopeLabels {
    match scope {
        Scope::Cluster => ("cluster", None, None),
        Scope::Datacenter { datacenter } => ("datacenter", Some(datacenter.clone()), None),
        Scope::Rack { datacenter, rack } => ("rack", Some(datacenter.clone()), Some(rack.clone())),
    }
}

/// Node discovery's counters and gauges.
#[derive(Debug, Default)]
pub struct DiscoveryMetrics {
    refreshes: Mutex<BTreeMap<(ScopeLabels, RefreshOutcome), u64>>,
    rounds: AtomicU64,
    rounds_failed: AtomicU64,
    consecutive_failures: AtomicU64,
    last_success_unix_ms: AtomicU64,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    probes_ok: AtomicU64,
    probes_failed: AtomicU64,
    active_cadence: AtomicBool,
}

impl DiscoveryMetrics {
    /// Counts one scope query outcome.
    pub fn count_scope(&self, scope: &Scope, outcome: RefreshOutcome) {
        if let Ok(mut map) = self.refreshes.lock() {
            *map.entry((scope_labels(scope), outcome)).or_default() += 1;
        }
    }

    /// Counts a finished refresh round; `ok` when at least one scope got an answer.
    pub fn count_round(&self, ok: bool, now_unix_ms: u64) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.last_success_unix_ms
                .store(now_unix_ms, Ordering::Relaxed);
        } else {
            self.rounds_failed.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts requests sent to Alternator nodes for discovery.
    pub fn count_requests(&self, ok: u64, failed: u64) {
        self.requests_ok.fetch_add(ok, Ordering::Relaxed);
        self.requests_failed.fetch_add(failed, Ordering::Relaxed);
    }

    /// Counts one health probe.
    pub fn count_probe(&self, ok: bool) {
        let counter = if ok {
            &self.probes_ok
        } else {
            &self.probes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the current cadence.
    pub fn set_active_cadence(&self, active: bool) {
        self.active_cadence.store(active, Ordering::Relaxed);
    }

    /// Writes the series of `family` if it is one of node discovery's.
    pub(super) fn write(&self, family: &Family, out: &mut Exposition) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        if *family == REFRESHES {
            if let Ok(map) = self.refreshes.lock() {
                for (((kind, datacenter, rack), outcome), value) in map.iter() {
                    let mut labels = vec![("scope", *kind)];
                    labels.extend(datacenter.as_deref().map(|dc| ("datacenter", dc)));
                    labels.extend(rack.as_deref().map(|rack| ("rack", rack)));
                    labels.push(("outcome", outcome.as_str()));
                    out.sample(family, &labels, value);
                }
            }
        } else if *family == REFRESH_ROUNDS {
            out.sample(family, &[], load(&self.rounds));
        } else if *family == REFRESH_ROUNDS_FAILED {
            out.sample(family, &[], load(&self.rounds_failed));
        } else if *family == CONSECUTIVE_FAILURES {
            out.sample(family, &[], load(&self.consecutive_failures));
        } else if *family == LAST_SUCCESS {
            out.sample(family, &[], Seconds(load(&self.last_success_unix_ms)));
        } else if *family == DISCOVERY_REQUESTS {
            out.sample(family, &[], load(&self.requests_ok));
        } else if *family == DISCOVERY_REQUEST_FAILURES {
            out.sample(family, &[], load(&self.requests_failed));
        } else if *family == PROBES {
            out.sample(family, &[("result", "success")], load(&self.probes_ok));
            out.sample(family, &[("result", "failure")], load(&self.probes_failed));
        } else if *family == ACTIVE_CADENCE {
            let active = self.active_cadence.load(Ordering::Relaxed);
            out.sample(family, &[], u8::from(active));
        }
    }
}
