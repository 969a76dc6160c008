//! Ring discovery's metrics: rounds, DynamoDB requests, skipped rows, refused rings, and the
//! published ring's size, version and freshness.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{
    Exposition, Family, Seconds, RING_LAST_SUCCESS, RING_REFRESHES, RING_REJECTED, RING_REQUESTS,
    RING_ROWS_SKIPPED, RING_TABLES, RING_VERSION,
};
use crate::ring_discovery::client::Call;
use crate::ring_discovery::rows::Skipped;

/// How a ring discovery round ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoundOutcome {
    /// Every table was read (or found gone).
    Ok,
    /// A node refused for want of (valid) credentials.
    Refused,
    /// Some read failed; those tables keep their previous ring.
    Error,
}

impl RoundOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundOutcome::Ok => "ok",
            RoundOutcome::Refused => "refused",
            RoundOutcome::Error => "error",
        }
    }
}

/// Ring discovery's counters and gauges.
#[derive(Debug, Default)]
pub struct RingMetrics {
    rounds: Mutex<BTreeMap<RoundOutcome, u64>>,
    requests: Mutex<BTreeMap<(Call, bool), u64>>,
    skipped: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    tables: AtomicU64,
    version: AtomicU64,
    last_success_unix_ms: AtomicU64,
}

impl RingMetrics {
    /// Counts one round.
    pub fn count_round(&self, outcome: RoundOutcome, now_unix_ms: u64) {
        if let Ok(mut map) = self.rounds.lock() {
            *map.entry(outcome).or_default() += 1;
        }
        if outcome == RoundOutcome::Ok {
            self.last_success_unix_ms
                .store(now_unix_ms, Ordering::Relaxed);
        }
    }

    /// Counts DynamoDB requests (pages included).
    pub fn count_requests(&self, call: Call, ok: bool, requests: u64) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((call, ok)).or_default() += requests;
        }
    }

    /// Counts rows (or replicas of rows) left out of a ring.
    pub fn count_skipped(&self, skipped: &Skipped) {
        if skipped.total() == 0 {
            return;
        }
        if let Ok(mut map) = self.skipped.lock() {
            for (reason, n) in &skipped.0 {
                *map.entry(reason.as_str()).or_default() += n;
            }
        }
    }

    /// Counts a table ring refused for a hole or an overlap (or no ranges at all).
    pub fn count_rejected(&self, reason: &'static str) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry(reason).or_default() += 1;
        }
    }

    /// Records how many tables the published ring holds.
    pub fn set_tables(&self, tables: usize) {
        self.tables
            .store(u64::try_from(tables).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Records the ring version.
    pub fn set_version(&self, version: u64) {
        self.version.store(version, Ordering::Relaxed);
    }

    /// Writes the series of `family` if it is one of ring discovery's.
    pub(super) fn write(&self, family: &Family, out: &mut Exposition) {
        if *family == RING_REFRESHES {
            if let Ok(map) = self.rounds.lock() {
                for (outcome, value) in map.iter() {
                    out.sample(family, &[("outcome", outcome.as_str())], value);
                }
            }
        } else if *family == RING_REQUESTS {
            if let Ok(map) = self.requests.lock() {
                for ((call, ok), value) in map.iter() {
                    let result = if *ok { "success" } else { "failure" };
                    out.sample(
                        family,
                        &[("request", call.as_str()), ("result", result)],
                        value,
                    );
                }
            }
        } else if *family == RING_ROWS_SKIPPED || *family == RING_REJECTED {
            let map = if *family == RING_ROWS_SKIPPED {
                &self.skipped
            } else {
                &self.rejected
            };
            if let Ok(map) = map.lock() {
                for (reason, value) in map.iter() {
                    out.sample(family, &[("reason", reason)], value);
                }
            }
        } else if *family == RING_TABLES {
            out.sample(family, &[], self.tables.load(Ordering::Relaxed));
        } else if *family == RING_VERSION {
            out.sample(family, &[], self.version.load(Ordering::Relaxed));
        } else if *family == RING_LAST_SUCCESS {
            let ms = self.last_success_unix_ms.load(Ordering::Relaxed);
            out.sample(family, &[], Seconds(ms));
        }
    }
}
