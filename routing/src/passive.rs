//! Passive health: turning what a proxy saw of one request into node-health observations, and
//! the shared table of nodes that are not plainly healthy.
//!
//! A proxy learns about a node's health from the requests it forwards, before the discovery
//! agent's next probe. The rules, from the official clients' "Node health" spec:
//!
//! - a transport failure (connect failure, reset, per-try timeout) is a traffic failure of the
//!   node the attempt went to;
//! - any final HTTP response other than 500, 502, 503 and 504 is a traffic success; those four
//!   are the node's own answer about its load and stay health-neutral;
//! - retries walk the plan in order, so every candidate listed before the node that finally
//!   answered received an attempt that failed at transport level.
//!
//! [`PassiveHealth`] holds only nodes that are not `ACTIVE` with a clean streak: an absent node
//! is healthy, so the common case (every node fine) costs an empty map. A proxy does not probe;
//! a `DOWN` node re-enters as `QUARANTINED` after a cooldown (standing in for the spec's
//! recovery probes). A passively quarantined node is on probation, not demoted: plans order
//! quarantined nodes after active ones, so demoting it would starve it of the traffic that
//! must promote it. Its first `quarantine_failure_threshold` transport failures send it back
//! `DOWN`, `quarantine_promotion_threshold` successes clear it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::health::{HealthThresholds, NodeHealth, Observation};
use crate::snapshot::{HealthState, NodeSnapshot};

/// Envoy's response-flag bits (the `response.flags` attribute, Envoy's `CoreResponseFlag`
/// order) that mean the upstream attempt failed at transport level.
pub mod envoy_flags {
    /// `UT`: upstream request (or per-try) timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2;
    /// `UR`: the upstream reset the stream.
    pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4;
    /// `UF`: connection to the upstream failed.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5;
    /// `UC`: the upstream connection terminated.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6;
    /// `URX`: the retry limit was reached after transport failures.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 1 << 15;
    /// Any of the above.
    pub const TRANSPORT_FAILURE: u64 = UPSTREAM_REQUEST_TIMEOUT
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_RETRY_LIMIT_EXCEEDED;
}

/// The observation for the node that served the final attempt of a request: `status` is the
/// HTTP status sent downstream (if any), `flags` Envoy's response-flag bits.
pub fn final_attempt(status: Option<u16>, flags: u64) -> Option<Observation> {
    if flags & envoy_flags::TRANSPORT_FAILURE != 0 {
        return Some(Observation::TrafficFailure);
    }
    match status {
        Some(500 | 502 | 503 | 504) | None => None,
        Some(_) => Some(Observation::TrafficSuccess),
    }
}

/// The candidates that received a failed attempt before `served` answered: those listed before
/// it in `plan` (`ip:port,ip:port,...`, as the routing header carries it). `attempts`, when the
/// proxy reports it, must agree (one attempt per earlier candidate plus the final one);
/// otherwise some entry was skipped without an attempt (e.g. not yet a cluster member) and
/// nothing is attributed.
pub fn failed_before<'a>(plan: &'a str, served: &str, attempts: Option<u64>) -> Vec<&'a str> {
    let entries: Vec<&str> = plan.split(',').map(str::trim).collect();
    let Some(position) = entries.iter().position(|e| *e == served) else {
        return Vec::new();
    };
    if attempts.is_some_and(|a| a != position as u64 + 1) {
        return Vec::new();
    }
    entries[..position].to_vec()
}

/// One node's passive health and when it last went `DOWN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// The spec's state machine.
    pub health: NodeHealth,
    /// When the node entered `DOWN` (ms since the epoch; meaningful only while `DOWN`).
    pub down_at_ms: u64,
}

/// The nodes whose passive health is not a clean `ACTIVE`, keyed by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassiveHealth {
    nodes: BTreeMap<IpAddr, Tracked>,
}

impl PassiveHealth {
    /// Reads the shared-data form; anything unreadable is an empty table (all healthy).
    pub fn from_json(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The shared-data form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether every node is a clean `ACTIVE`.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The state a node is in at `now_ms`: absent is `ACTIVE`; a `DOWN` node whose cooldown
    /// has passed counts as `QUARANTINED`.
    pub fn state(&self, address: IpAddr, now_ms: u64, cooldown_ms: u64) -> HealthState {
        self.nodes.get(&address).map_or(HealthState::Active, |t| {
            effective(t, now_ms, cooldown_ms).health.state
        })
    }

    /// Whether `observation` about `address` would change the table: false for the common
    /// success on a healthy node, so callers can skip the shared-data write.
    pub fn would_change(&self, address: IpAddr, observation: Observation) -> bool {
        self.nodes.contains_key(&address) || observation == Observation::TrafficFailure
    }

    /// Applies one traffic observation at `now_ms`. Returns the node's new state when it
    /// changed state (for logs and metrics).
    pub fn observe(
        &mut self,
        address: IpAddr,
        observation: Observation,
        now_ms: u64,
        cooldown_ms: u64,
        thresholds: &HealthThresholds,
    ) -> Option<HealthState> {
        let mut tracked = self.nodes.get(&address).map_or(
            Tracked {
                health: NodeHealth::active(thresholds),
                down_at_ms: 0,
            },
            |t| effective(t, now_ms, cooldown_ms),
        );
        let before = tracked.health.state;
        tracked.health.observe(observation, thresholds);
        let after = tracked.health.state;
        if after == HealthState::Down && before != HealthState::Down {
            tracked.down_at_ms = now_ms;
        }
        // A clean ACTIVE node is not tracked. Its generation is dropped with it: this table
        // does not capture generations at routing time, a DOWN node ignores traffic anyway.
        if tracked.health.state == HealthState::Active && tracked.health.failures == 0 {
            self.nodes.remove(&address);
        } else {
            self.nodes.insert(address, tracked);
        }
        (after != before).then_some(after)
    }

    /// Forgets nodes the discovery agent (re)admitted: listed as eligible in `next` but absent
    /// from, or `DOWN` in, `previous`. The agent admits a node only after a successful probe,
    /// the spec's recovery signal, so a node restarted within the cooldown is not kept out by
    /// what traffic saw before the restart. Returns whether anything was forgotten.
    pub fn forget_readmitted(&mut self, previous: &NodeSnapshot, next: &NodeSnapshot) -> bool {
        let before = self.nodes.len();
        self.nodes.retain(|address, _| {
            let now_eligible = next
                .position(*address)
                .is_some_and(|i| next.nodes()[i].health.is_eligible());
            let was_out = previous
                .position(*address)
                .is_none_or(|i| previous.nodes()[i].health == HealthState::Down);
            !(now_eligible && was_out)
        });
        self.nodes.len() != before
    }

    /// `published` (the agent's health, in snapshot node order) with every node passive health
    /// holds `DOWN` marked down. If that would leave no eligible node although the agent published
    /// some, the agent's view is kept: a proxy must not black-hole a cluster on its own
    /// inference.
    pub fn overlay(
        &self,
        addresses: impl Iterator<Item = IpAddr>,
        published: &[HealthState],
        now_ms: u64,
        cooldown_ms: u64,
        out: &mut Vec<HealthState>,
    ) {
        out.clear();
        out.extend(published.iter().zip(addresses).map(|(&agent, address)| {
            match self.state(address, now_ms, cooldown_ms) {
                HealthState::Down => HealthState::Down,
                HealthState::Active | HealthState::Quarantined => agent,
            }
        }));
        let any = |h: &[HealthState]| h.iter().any(|s| s.is_eligible());
        if !any(out) && any(published) {
            out.clear();
            out.extend_from_slice(published);
        }
    }
}

fn effective(t: &Tracked, now_ms: u64, cooldown_ms: u64) -> Tracked {
    let mut t = *t;
    if t.health.state == HealthState::Down && now_ms.saturating_sub(t.down_at_ms) >= cooldown_ms {
        t.health = NodeHealth {
            state: HealthState::Quarantined,
            failures: 0,
            successes: 0,
            generation: t.health.generation,
        };
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn node_errors_are_neutral_and_transport_failures_count() {
        for status in [500, 502, 503, 504] {
            assert_eq!(final_attempt(Some(status), 0), None);
        }
        assert_eq!(
            final_attempt(Some(200), 0),
            Some(Observation::TrafficSuccess)
        );
        assert_eq!(
            final_attempt(Some(400), 0),
            Some(Observation::TrafficSuccess)
        );
        assert_eq!(
            final_attempt(Some(503), envoy_flags::UPSTREAM_CONNECTION_FAILURE),
            Some(Observation::TrafficFailure)
        );
        assert_eq!(
            final_attempt(Some(504), envoy_flags::UPSTREAM_REQUEST_TIMEOUT),
            Some(Observation::TrafficFailure)
        );
        // UO (overflow, bit 7) says nothing about the node.
        assert_eq!(final_attempt(Some(503), 1 << 7), None);
    }

    #[test]
    fn earlier_candidates_failed_only_when_attempts_agree() {
        let plan = "10.0.0.1:8000,10.0.0.2:8000,10.0.0.3:8000";
        assert_eq!(
            failed_before(plan, "10.0.0.3:8000", Some(3)),
            ["10.0.0.1:8000", "10.0.0.2:8000"]
        );
        assert_eq!(
            failed_before(plan, "10.0.0.3:8000", None),
            ["10.0.0.1:8000", "10.0.0.2:8000"]
        );
        assert!(failed_before(plan, "10.0.0.3:8000", Some(2)).is_empty());
        assert!(failed_before(plan, "10.0.0.1:8000", Some(1)).is_empty());
        assert!(failed_before(plan, "10.9.9.9:8000", Some(1)).is_empty());
    }

    #[test]
    fn down_after_the_threshold_then_quarantined_after_the_cooldown() {
        let t = HealthThresholds::default();
        let mut p = PassiveHealth::default();
        for i in 1..t.active_failure_threshold {
            assert_eq!(
                p.observe(A, Observation::TrafficFailure, i.into(), 1000, &t),
                None
            );
        }
        assert_eq!(
            p.observe(A, Observation::TrafficFailure, 100, 1000, &t),
            Some(HealthState::Down)
        );
        assert_eq!(p.state(A, 1099, 1000), HealthState::Down);
        // Traffic that was in flight when it went down is stale.
        assert_eq!(
            p.observe(A, Observation::TrafficSuccess, 500, 1000, &t),
            None
        );
        assert_eq!(p.state(A, 1100, 1000), HealthState::Quarantined);
        for _ in 1..t.quarantine_promotion_threshold {
            p.observe(A, Observation::TrafficSuccess, 1200, 1000, &t);
        }
        assert_eq!(
            p.observe(A, Observation::TrafficSuccess, 1200, 1000, &t),
            Some(HealthState::Active)
        );
        assert!(p.is_empty(), "a healthy node is not tracked");
    }

    #[test]
    fn a_success_resets_the_streak_and_untracks() {
        let t = HealthThresholds::default();
        let mut p = PassiveHealth::default();
        p.observe(A, Observation::TrafficFailure, 1, 1000, &t);
        assert!(!p.is_empty());
        assert!(p.would_change(A, Observation::TrafficSuccess));
        assert!(!p.would_change(B, Observation::TrafficSuccess));
        p.observe(A, Observation::TrafficSuccess, 2, 1000, &t);
        assert!(p.is_empty());
    }

    #[test]
    fn overlay_never_removes_the_last_eligible_nodes() {
        let t = HealthThresholds {
            active_failure_threshold: 1,
            ..HealthThresholds::default()
        };
        let mut p = PassiveHealth::default();
        p.observe(A, Observation::TrafficFailure, 0, 10_000, &t);
        let published = [HealthState::Active, HealthState::Quarantined];
        let mut out = Vec::new();
        p.overlay([A, B].into_iter(), &published, 1, 10_000, &mut out);
        assert_eq!(out, [HealthState::Down, HealthState::Quarantined]);
        // After the cooldown: on probation, routed as the agent says.
        p.overlay([A, B].into_iter(), &published, 10_000, 10_000, &mut out);
        assert_eq!(out, published);
        p.observe(B, Observation::TrafficFailure, 0, 10_000, &t);
        p.observe(B, Observation::TrafficFailure, 0, 10_000, &t);
        p.observe(B, Observation::TrafficFailure, 0, 10_000, &t);
        p.overlay([A, B].into_iter(), &published, 1, 10_000, &mut out);
        assert_eq!(
            out, published,
            "all down by inference: the agent's view stands"
        );
    }

    #[test]
    fn a_node_the_agent_readmits_is_forgotten() {
        let snapshot = |nodes: &str| {
            NodeSnapshot::from_json(
                format!(
                    r#"{{"format":1,"version":1,"scheme":"http","port":8000,"nodes":[{nodes}]}}"#
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let a = r#"{"address":"10.0.0.1","datacenter":"","rack":"","health":"active"}"#;
        let a_down = r#"{"address":"10.0.0.1","datacenter":"","rack":"","health":"down"}"#;
        let b = r#"{"address":"10.0.0.2","datacenter":"","rack":"","health":"active"}"#;
        let t = HealthThresholds {
            active_failure_threshold: 1,
            ..HealthThresholds::default()
        };
        let mut p = PassiveHealth::default();
        p.observe(A, Observation::TrafficFailure, 0, 10_000, &t);
        p.observe(B, Observation::TrafficFailure, 0, 10_000, &t);
        // Unchanged listing: traffic's verdict stands.
        assert!(!p.forget_readmitted(
            &snapshot(&format!("{a},{b}")),
            &snapshot(&format!("{a},{b}"))
        ));
        // A came back (absent before), B did not.
        assert!(p.forget_readmitted(&snapshot(b), &snapshot(&format!("{a},{b}"))));
        assert_eq!(p.state(A, 1, 10_000), HealthState::Active);
        assert_eq!(p.state(B, 1, 10_000), HealthState::Down);
        p.observe(A, Observation::TrafficFailure, 0, 10_000, &t);
        assert!(p.forget_readmitted(
            &snapshot(&format!("{a_down},{b}")),
            &snapshot(&format!("{a},{b}"))
        ));
        assert_eq!(p.state(A, 1, 10_000), HealthState::Active);
    }

    #[test]
    fn shared_form_round_trips_and_garbage_is_empty() {
        let t = HealthThresholds::default();
        let mut p = PassiveHealth::default();
        p.observe(A, Observation::TrafficFailure, 7, 1000, &t);
        assert_eq!(PassiveHealth::from_json(&p.to_json()), p);
        assert!(PassiveHealth::from_json(b"<html>").is_empty());
    }
}
