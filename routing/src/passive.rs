//! Passive health: turning what a proxy saw of one request into node-health observations, and
//! the shared table of nodes that are not plainly healthy.
//!
//! A proxy learns about a node's health from the requests it forwards, before the discovery
//! agent's next probe. The rules, from the official clients' "Node health" spec:
//!
//! - a transport failure (connect failure, reset, per-try timeout) is a traffic failure of the
//!   node the attempt went to;
//! - a timeout weighs more than other transport failures (a proxy's addition, see
//!   [`Rules`]): a node that holds requests without answering costs every request it gets a
//!   whole per-try timeout, so it leaves the plans after a few timeouts rather than the spec's
//!   ten consecutive failures;
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

/// What one attempt says about the node it went to, as passive health weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A final HTTP answer other than 500, 502, 503 and 504.
    Success,
    /// A transport failure: the connection failed or was reset.
    Failure,
    /// The node held the attempt past its timeout without answering.
    Timeout,
}

/// The outcome for the node that served the final attempt of a request: `status` is the HTTP
/// status sent downstream (if any), `flags` Envoy's response-flag bits. `None`: health-neutral.
pub fn final_attempt(status: Option<u16>, flags: u64) -> Option<Outcome> {
    if flags & envoy_flags::UPSTREAM_REQUEST_TIMEOUT != 0 {
        return Some(Outcome::Timeout);
    }
    if flags & envoy_flags::TRANSPORT_FAILURE != 0 {
        return Some(Outcome::Failure);
    }
    match status {
        Some(500 | 502 | 503 | 504) | None => None,
        Some(_) => Some(Outcome::Success),
    }
}

/// The outcome for the candidates that failed before a later one served the request
/// ([`failed_before`]). Envoy flags neither a per-try timeout that a retry recovered nor a
/// hedged attempt that lost, so it is inferred from time: a request that lasted
/// `min_per_try_timeout_ms` or longer (the shortest per-try timeout of the routes) spent it
/// waiting on an earlier candidate, since a connect failure or a reset costs a retry
/// milliseconds. `duration_ms` unknown or `min_per_try_timeout_ms` 0: an ordinary failure.
pub fn earlier_attempt(duration_ms: Option<u64>, min_per_try_timeout_ms: u64) -> Outcome {
    match duration_ms {
        Some(d) if min_per_try_timeout_ms > 0 && d >= min_per_try_timeout_ms => Outcome::Timeout,
        _ => Outcome::Failure,
    }
}

/// How traffic outcomes move a node: the spec's thresholds, plus how many consecutive
/// failures one timeout counts for.
///
/// The weight is the proxy's own trade-off. A hung node accepts connections and answers
/// nothing, so every request routed to it waits a whole per-try timeout (a write then fails),
/// while the spec's `active_failure_threshold` (10) consecutive failures accumulate. With
/// `timeouts_to_down` = 2, two timeouts in a row take it `DOWN`. A healthy node that answers
/// one request late is not taken out: any success in between ends the streak, and under load
/// a node that still answers produces successes continuously. What is taken out is a node that
/// answered nothing in time to `timeouts_to_down` requests in a row, however briefly it
/// stalled. A `QUARANTINED` node (on probation after a cooldown) goes back `DOWN` at its first
/// timeout whenever the weight reaches `quarantine_failure_threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub thresholds: HealthThresholds,
    /// Consecutive traffic failures one timeout counts for (at least 1).
    pub timeout_weight: u32,
}

impl Rules {
    /// Rules under which `timeouts_to_down` consecutive timeouts (at least 1) take an `ACTIVE`
    /// node `DOWN`: each weighs the active failure threshold divided by it, rounded up (with
    /// the spec's threshold of 10 that is exact for 1 to 5 and 10; 6 to 9 act as 5).
    pub fn new(thresholds: HealthThresholds, timeouts_to_down: u32) -> Self {
        let threshold = thresholds.normalized().active_failure_threshold;
        Rules {
            thresholds,
            timeout_weight: threshold.div_ceil(timeouts_to_down.max(1)),
        }
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

    /// Whether `outcome` about `address` would change the table: false for the common
    /// success on a healthy node, so callers can skip the shared-data write.
    pub fn would_change(&self, address: IpAddr, outcome: Outcome) -> bool {
        self.nodes.contains_key(&address) || outcome != Outcome::Success
    }

    /// Applies one traffic outcome at `now_ms`: a success or failure is one observation of
    /// the spec's state machine, a timeout `rules.timeout_weight` failures. Returns the node's
    /// new state when it changed state (for logs and metrics).
    pub fn observe(
        &mut self,
        address: IpAddr,
        outcome: Outcome,
        now_ms: u64,
        cooldown_ms: u64,
        rules: &Rules,
    ) -> Option<HealthState> {
        let thresholds = &rules.thresholds;
        let mut tracked = self.nodes.get(&address).map_or(
            Tracked {
                health: NodeHealth::active(thresholds),
                down_at_ms: 0,
            },
            |t| effective(t, now_ms, cooldown_ms),
        );
        let before = tracked.health.state;
        let (observation, times) = match outcome {
            Outcome::Success => (Observation::TrafficSuccess, 1),
            Outcome::Failure => (Observation::TrafficFailure, 1),
            Outcome::Timeout => (Observation::TrafficFailure, rules.timeout_weight.max(1)),
        };
        for _ in 0..times {
            tracked.health.observe(observation, thresholds);
            if tracked.health.state == HealthState::Down {
                break; // DOWN ignores traffic: the rest would be stale anyway.
            }
        }
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
        assert_eq!(final_attempt(Some(200), 0), Some(Outcome::Success));
        assert_eq!(final_attempt(Some(400), 0), Some(Outcome::Success));
        assert_eq!(
            final_attempt(Some(503), envoy_flags::UPSTREAM_CONNECTION_FAILURE),
            Some(Outcome::Failure)
        );
        assert_eq!(
            final_attempt(Some(504), envoy_flags::UPSTREAM_REQUEST_TIMEOUT),
            Some(Outcome::Timeout)
        );
        assert_eq!(
            final_attempt(
                Some(504),
                envoy_flags::UPSTREAM_REQUEST_TIMEOUT | envoy_flags::UPSTREAM_RETRY_LIMIT_EXCEEDED
            ),
            Some(Outcome::Timeout)
        );
        // UO (overflow, bit 7) says nothing about the node.
        assert_eq!(final_attempt(Some(503), 1 << 7), None);
    }

    #[test]
    fn an_earlier_candidate_timed_out_when_the_request_lasted_a_per_try_timeout() {
        assert_eq!(earlier_attempt(Some(250), 250), Outcome::Timeout);
        assert_eq!(earlier_attempt(Some(4_000), 250), Outcome::Timeout);
        // A refused connection or a reset, then the next node answered at once.
        assert_eq!(earlier_attempt(Some(249), 250), Outcome::Failure);
        assert_eq!(earlier_attempt(Some(3), 250), Outcome::Failure);
        assert_eq!(earlier_attempt(None, 250), Outcome::Failure);
        assert_eq!(earlier_attempt(Some(4_000), 0), Outcome::Failure, "0: off");
    }

    #[test]
    fn a_timeout_weighs_the_failure_threshold_over_timeouts_to_down() {
        let spec = HealthThresholds::default();
        assert_eq!(Rules::new(spec, 1).timeout_weight, 10);
        assert_eq!(Rules::new(spec, 2).timeout_weight, 5);
        assert_eq!(Rules::new(spec, 3).timeout_weight, 4);
        assert_eq!(Rules::new(spec, 10).timeout_weight, 1);
        assert_eq!(Rules::new(spec, 0).timeout_weight, 10, "0 behaves as 1");
        assert_eq!(Rules::new(spec, 20).timeout_weight, 1);
    }

    #[test]
    fn consecutive_timeouts_take_a_node_down() {
        // Exact for the values where the weight divides the threshold evenly enough; the
        // filter accepts 1 to 5.
        for timeouts_to_down in [1, 2, 3, 4, 5, 10] {
            let t = Rules::new(HealthThresholds::default(), timeouts_to_down);
            let mut p = PassiveHealth::default();
            for i in 1..timeouts_to_down {
                assert_eq!(p.observe(A, Outcome::Timeout, 0, 1000, &t), None, "{i}");
                assert_eq!(p.state(A, 0, 1000), HealthState::Active);
            }
            assert_eq!(
                p.observe(A, Outcome::Timeout, 0, 1000, &t),
                Some(HealthState::Down),
                "{timeouts_to_down}"
            );
        }
        // Timeouts and other failures add up.
        let t = Rules::new(HealthThresholds::default(), 2);
        let mut p = PassiveHealth::default();
        p.observe(A, Outcome::Timeout, 0, 1000, &t);
        for _ in 0..4 {
            p.observe(A, Outcome::Failure, 0, 1000, &t);
        }
        assert_eq!(
            p.observe(A, Outcome::Failure, 0, 1000, &t),
            Some(HealthState::Down)
        );
    }

    #[test]
    fn one_late_answer_between_successes_takes_no_node_down() {
        let t = Rules::new(HealthThresholds::default(), 2);
        let mut p = PassiveHealth::default();
        for _ in 0..100 {
            assert_eq!(p.observe(A, Outcome::Timeout, 0, 1000, &t), None);
            assert_eq!(p.observe(A, Outcome::Success, 0, 1000, &t), None);
        }
        assert!(p.is_empty());
    }

    #[test]
    fn a_quarantined_node_goes_down_again_at_its_first_timeout() {
        let t = Rules::new(HealthThresholds::default(), 2);
        let mut p = PassiveHealth::default();
        p.observe(A, Outcome::Timeout, 0, 1000, &t);
        p.observe(A, Outcome::Timeout, 0, 1000, &t);
        assert_eq!(p.state(A, 1000, 1000), HealthState::Quarantined);
        assert_eq!(
            p.observe(A, Outcome::Timeout, 1000, 1000, &t),
            Some(HealthState::Down)
        );
        assert_eq!(p.state(A, 1999, 1000), HealthState::Down);
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
        let t = Rules::new(HealthThresholds::default(), 2);
        let mut p = PassiveHealth::default();
        for i in 1..t.thresholds.active_failure_threshold {
            assert_eq!(p.observe(A, Outcome::Failure, i.into(), 1000, &t), None);
        }
        assert_eq!(
            p.observe(A, Outcome::Failure, 100, 1000, &t),
            Some(HealthState::Down)
        );
        assert_eq!(p.state(A, 1099, 1000), HealthState::Down);
        // Traffic that was in flight when it went down is stale.
        assert_eq!(p.observe(A, Outcome::Success, 500, 1000, &t), None);
        assert_eq!(p.state(A, 1100, 1000), HealthState::Quarantined);
        for _ in 1..t.thresholds.quarantine_promotion_threshold {
            p.observe(A, Outcome::Success, 1200, 1000, &t);
        }
        assert_eq!(
            p.observe(A, Outcome::Success, 1200, 1000, &t),
            Some(HealthState::Active)
        );
        assert!(p.is_empty(), "a healthy node is not tracked");
    }

    #[test]
    fn a_success_resets_the_streak_and_untracks() {
        let t = Rules::new(HealthThresholds::default(), 2);
        let mut p = PassiveHealth::default();
        p.observe(A, Outcome::Failure, 1, 1000, &t);
        assert!(!p.is_empty());
        assert!(p.would_change(A, Outcome::Success));
        assert!(!p.would_change(B, Outcome::Success));
        p.observe(A, Outcome::Success, 2, 1000, &t);
        assert!(p.is_empty());
    }

    #[test]
    fn overlay_never_removes_the_last_eligible_nodes() {
        let t = Rules::new(
            HealthThresholds {
                active_failure_threshold: 1,
                ..HealthThresholds::default()
            },
            1,
        );
        let mut p = PassiveHealth::default();
        p.observe(A, Outcome::Failure, 0, 10_000, &t);
        let published = [HealthState::Active, HealthState::Quarantined];
        let mut out = Vec::new();
        p.overlay([A, B].into_iter(), &published, 1, 10_000, &mut out);
        assert_eq!(out, [HealthState::Down, HealthState::Quarantined]);
        // After the cooldown: on probation, routed as the agent says.
        p.overlay([A, B].into_iter(), &published, 10_000, 10_000, &mut out);
        assert_eq!(out, published);
        p.observe(B, Outcome::Failure, 0, 10_000, &t);
        p.observe(B, Outcome::Failure, 0, 10_000, &t);
        p.observe(B, Outcome::Failure, 0, 10_000, &t);
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
        let t = Rules::new(
            HealthThresholds {
                active_failure_threshold: 1,
                ..HealthThresholds::default()
            },
            1,
        );
        let mut p = PassiveHealth::default();
        p.observe(A, Outcome::Failure, 0, 10_000, &t);
        p.observe(B, Outcome::Failure, 0, 10_000, &t);
        // Unchanged listing: traffic's verdict stands.
        assert!(!p.forget_readmitted(
            &snapshot(&format!("{a},{b}")),
            &snapshot(&format!("{a},{b}"))
        ));
        // A came back (absent before), B did not.
        assert!(p.forget_readmitted(&snapshot(b), &snapshot(&format!("{a},{b}"))));
        assert_eq!(p.state(A, 1, 10_000), HealthState::Active);
        assert_eq!(p.state(B, 1, 10_000), HealthState::Down);
        p.observe(A, Outcome::Failure, 0, 10_000, &t);
        assert!(p.forget_readmitted(
            &snapshot(&format!("{a_down},{b}")),
            &snapshot(&format!("{a},{b}"))
        ));
        assert_eq!(p.state(A, 1, 10_000), HealthState::Active);
    }

    #[test]
    fn shared_form_round_trips_and_garbage_is_empty() {
        let t = Rules::new(HealthThresholds::default(), 2);
        let mut p = PassiveHealth::default();
        p.observe(A, Outcome::Failure, 7, 1000, &t);
        assert_eq!(PassiveHealth::from_json(&p.to_json()), p);
        assert!(PassiveHealth::from_json(b"<html>").is_empty());
    }
}
