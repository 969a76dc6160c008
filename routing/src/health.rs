//! The node-health state machine of the official clients' "Node health" spec (`node-health.md`).
//!
//! A node is `ACTIVE`, `QUARANTINED` or `DOWN` ([`HealthState`]). Traffic outcomes move active
//! and quarantined nodes; probe outcomes recover down nodes and validate quarantined ones. The
//! rules that are easy to get wrong, all pinned by `node-health-transitions.tsv`:
//!
//! - probes never demote: both probe outcomes are neutral for an `ACTIVE` node, and a failed
//!   probe leaves a `QUARANTINED` node's traffic counters alone;
//! - a `DOWN` node ignores every traffic outcome (they are stale: scheduled before it went down);
//! - a successful probe validates a `QUARANTINED` node at once, but a `DOWN` node needs
//!   `down_recovery_threshold` consecutive successful probes and then only reaches quarantine;
//! - an `ACTIVE` node reports `successes` equal to the promotion threshold (the spec's
//!   "healthy" value), and zero right after a failure;
//! - entering `DOWN` increments the generation; a traffic outcome that captured an older
//!   generation is rejected ([`NodeHealth::observe_at`]).
//!
//! HTTP 500/502/503/504 are health-neutral in the spec: they produce no observation at all, so
//! there is no variant for them here. Time is not tracked: the caller records "last update"
//! when [`NodeHealth::accepts`] says an observation counts.

use serde::{Deserialize, Serialize};

pub use crate::snapshot::HealthState;

/// Health tracking is on unless the filter or agent configuration turns it off (`defaults.tsv`:
/// `health_disabled = false`). Off means every node counts as active.
pub const DEFAULT_HEALTH_ENABLED: bool = true;
/// Default consecutive traffic failures moving `ACTIVE` to `DOWN` (`defaults.tsv`).
pub const DEFAULT_ACTIVE_FAILURE_THRESHOLD: u32 = 10;
/// Default consecutive successful probes moving `DOWN` to recovery quarantine.
pub const DEFAULT_DOWN_RECOVERY_THRESHOLD: u32 = 3;
/// Default consecutive traffic successes moving `QUARANTINED` to `ACTIVE`.
pub const DEFAULT_QUARANTINE_PROMOTION_THRESHOLD: u32 = 10;
/// Default consecutive traffic failures moving `QUARANTINED` to `DOWN`.
pub const DEFAULT_QUARANTINE_FAILURE_THRESHOLD: u32 = 3;
/// Default period between background probe cycles, in milliseconds.
pub const DEFAULT_BACKGROUND_PROBE_PERIOD_MS: u64 = 30_000;
/// Default maximum of concurrent health probes.
pub const DEFAULT_PROBE_CONCURRENCY: u32 = 4;
/// Allowed range of the probe concurrency setting.
pub const PROBE_CONCURRENCY_RANGE: std::ops::RangeInclusive<u32> = 1..=64;
/// Default deadline of one probe, in milliseconds.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 5_000;

/// One classified outcome that may change a node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observation {
    /// A DynamoDB request got a final HTTP response other than 500, 502, 503 or 504.
    TrafficSuccess,
    /// A DynamoDB request failed before any final HTTP response (connect error, reset, timeout).
    TrafficFailure,
    /// A direct probe got HTTP 200.
    ProbeSuccess,
    /// A direct probe got another status or no final response.
    ProbeFailure,
}

impl Observation {
    /// Whether this is a traffic outcome (subject to generation checks) rather than a probe.
    pub fn is_traffic(self) -> bool {
        matches!(
            self,
            Observation::TrafficSuccess | Observation::TrafficFailure
        )
    }
}

/// The four thresholds of the state machine. Values below one behave as one, as the spec's
/// normalisation rule requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthThresholds {
    /// Consecutive traffic failures moving `ACTIVE` to `DOWN`.
    pub active_failure_threshold: u32,
    /// Consecutive successful probes moving `DOWN` to recovery quarantine.
    pub down_recovery_threshold: u32,
    /// Consecutive traffic successes moving `QUARANTINED` to `ACTIVE`.
    pub quarantine_promotion_threshold: u32,
    /// Consecutive traffic failures moving `QUARANTINED` to `DOWN`.
    pub quarantine_failure_threshold: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            active_failure_threshold: DEFAULT_ACTIVE_FAILURE_THRESHOLD,
            down_recovery_threshold: DEFAULT_DOWN_RECOVERY_THRESHOLD,
            quarantine_promotion_threshold: DEFAULT_QUARANTINE_PROMOTION_THRESHOLD,
            quarantine_failure_threshold: DEFAULT_QUARANTINE_FAILURE_THRESHOLD,
        }
    }
}

impl HealthThresholds {
    /// The same thresholds with every value below one raised to one.
    #[must_use]
    pub fn normalized(self) -> Self {
        HealthThresholds {
            active_failure_threshold: self.active_failure_threshold.max(1),
            down_recovery_threshold: self.down_recovery_threshold.max(1),
            quarantine_promotion_threshold: self.quarantine_promotion_threshold.max(1),
            quarantine_failure_threshold: self.quarantine_failure_threshold.max(1),
        }
    }
}

/// The health status of one node: state, the two state-interpreted counters, and generation.
///
/// | state | `failures` | `successes` |
/// |---|---|---|
/// | `Active` | traffic-failure streak | promotion threshold while healthy, 0 after a failure |
/// | `Quarantined` | traffic-failure streak | traffic-promotion streak |
/// | `Down` | the streak that took it down, kept | recovery-probe streak |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Current state.
    pub state: HealthState,
    /// See the table above.
    pub failures: u32,
    /// See the table above.
    pub successes: u32,
    /// Incremented on every entry to `DOWN`; traffic outcomes carry the value they saw.
    pub generation: u64,
}

impl NodeHealth {
    /// A healthy active node: no failures, `successes` at the promotion threshold, generation 0.
    pub fn active(thresholds: &HealthThresholds) -> Self {
        NodeHealth {
            state: HealthState::Active,
            failures: 0,
            successes: thresholds.normalized().quarantine_promotion_threshold,
            generation: 0,
        }
    }

    /// A node admitted in quarantine (new seed or newly discovered): counters zero, generation 0.
    pub fn quarantined() -> Self {
        NodeHealth {
            state: HealthState::Quarantined,
            failures: 0,
            successes: 0,
            generation: 0,
        }
    }

    /// Whether `observation` would be accepted, i.e. counts as a health update (the caller's
    /// "last update time" moves) even if no state or counter changes.
    ///
    /// Rejected are traffic outcomes while `DOWN` and, when `generation` is given, traffic
    /// outcomes captured at another generation. Probe outcomes are always accepted.
    pub fn accepts(&self, observation: Observation, generation: Option<u64>) -> bool {
        if !observation.is_traffic() {
            return true;
        }
        self.state != HealthState::Down && generation.is_none_or(|g| g == self.generation)
    }

    /// Applies one observation. Returns whether state, counters or generation changed.
    pub fn observe(&mut self, observation: Observation, thresholds: &HealthThresholds) -> bool {
        let t = thresholds.normalized();
        let before = *self;
        match (self.state, observation) {
            (HealthState::Active, Observation::TrafficSuccess) => self.become_active(&t),
            (HealthState::Active, Observation::TrafficFailure) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= t.active_failure_threshold {
                    self.go_down();
                }
            }
            (HealthState::Active, Observation::ProbeSuccess | Observation::ProbeFailure) => {}

            (HealthState::Quarantined, Observation::TrafficSuccess) => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                if self.successes >= t.quarantine_promotion_threshold {
                    self.become_active(&t);
                }
            }
            (HealthState::Quarantined, Observation::TrafficFailure) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= t.quarantine_failure_threshold {
                    self.go_down();
                }
            }
            (HealthState::Quarantined, Observation::ProbeSuccess) => self.become_active(&t),
            (HealthState::Quarantined, Observation::ProbeFailure) => {}

            (HealthState::Down, Observation::ProbeSuccess) => {
                self.successes = self.successes.saturating_add(1);
                if self.successes >= t.down_recovery_threshold {
                    self.state = HealthState::Quarantined;
                    self.failures = 0;
                    self.successes = 0;
                }
            }
            (HealthState::Down, Observation::ProbeFailure) => self.successes = 0,
            // Traffic outcomes for a down node were scheduled before it went down: stale.
            (HealthState::Down, Observation::TrafficSuccess | Observation::TrafficFailure) => {}
        }
        *self != before
    }

    /// Applies one observation that captured `generation` when its attempt was routed.
    ///
    /// A traffic outcome from another generation is ignored (returns `false`), so a response
    /// from before a node's last trip to `DOWN` cannot resurrect or re-condemn it. Probe
    /// outcomes do not use generations and are applied as by [`NodeHealth::observe`].
    pub fn observe_at(
        &mut self,
        observation: Observation,
        generation: u64,
        thresholds: &HealthThresholds,
    ) -> bool {
        if observation.is_traffic() && generation != self.generation {
            return false;
        }
        self.observe(observation, thresholds)
    }

    fn become_active(&mut self, t: &HealthThresholds) {
        self.state = HealthState::Active;
        self.failures = 0;
        self.successes = t.quarantine_promotion_threshold;
    }

    fn go_down(&mut self) {
        self.state = HealthState::Down;
        self.successes = 0;
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_generation_cannot_resurrect() {
        let t = HealthThresholds {
            active_failure_threshold: 1,
            down_recovery_threshold: 1,
            quarantine_promotion_threshold: 1,
            quarantine_failure_threshold: 1,
        };
        let mut h = NodeHealth::active(&t);
        let old = h.generation;
        assert!(h.observe_at(Observation::TrafficFailure, old, &t));
        assert_eq!(h.state, HealthState::Down);
        assert!(h.observe(Observation::ProbeSuccess, &t));
        assert_eq!(h.state, HealthState::Quarantined);
        // A success from before the node went down must not promote it.
        assert!(!h.accepts(Observation::TrafficSuccess, Some(old)));
        assert!(!h.observe_at(Observation::TrafficSuccess, old, &t));
        assert_eq!(h.state, HealthState::Quarantined);
        assert!(h.observe_at(Observation::TrafficSuccess, h.generation, &t));
        assert_eq!(h.state, HealthState::Active);
    }

    #[test]
    fn thresholds_below_one_act_as_one() {
        let t = HealthThresholds {
            active_failure_threshold: 0,
            ..HealthThresholds::default()
        };
        let mut h = NodeHealth::active(&t);
        h.observe(Observation::TrafficFailure, &t);
        assert_eq!(h.state, HealthState::Down);
        assert_eq!(h.failures, 1);
    }

    #[test]
    fn accepted_but_unchanged_is_reported_as_accepted() {
        let t = HealthThresholds::default();
        let mut h = NodeHealth::active(&t);
        assert!(h.accepts(Observation::TrafficSuccess, None));
        assert!(!h.observe(Observation::TrafficSuccess, &t));
        h.state = HealthState::Down;
        assert!(!h.accepts(Observation::TrafficFailure, None));
        assert!(h.accepts(Observation::ProbeFailure, None));
    }
}
