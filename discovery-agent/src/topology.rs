//! The agent's view of the cluster: which nodes are members, where they are, how healthy they
//! are, and when each unvetted node is probed next.
//!
//! Pure state: time comes in as an argument (tokio's `Instant`, so paused-time tests drive it)
//! and nothing here performs I/O. Health transitions are the routing core's
//! [`NodeHealth`] state machine ("Node health" spec); this module only decides which
//! observations the agent feeds it and when.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use alternator_routing::health::{HealthThresholds, NodeHealth, Observation};
use alternator_routing::snapshot::{HealthState, Node};
use tokio::time::Instant;

/// First retry delay after a failed probe; doubles per consecutive failure up to the probe
/// period. Scylla lists a starting node seconds before its Alternator port accepts connections,
/// so the first retries come quickly and a node is vetted soon after it is ready.
pub const FIRST_PROBE_RETRY: Duration = Duration::from_millis(500);

/// A node as discovery found it: address and location (empty = unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node address from `/localnodes`.
    pub address: IpAddr,
    /// Datacenter, empty when the answer did not say.
    pub datacenter: String,
    /// Rack, empty when the answer did not say.
    pub rack: String,
}

#[derive(Debug, Clone)]
struct Entry {
    datacenter: String,
    rack: String,
    health: NodeHealth,
    /// When the next probe is due; `None` while active (probes cannot demote an active node,
    /// so probing one would be wasted work).
    probe_due: Option<Instant>,
    probe_failures: u32,
    probing: bool,
}

/// What a membership update changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Nodes that joined (admitted in quarantine).
    pub added: Vec<IpAddr>,
    /// Nodes that left.
    pub removed: Vec<IpAddr>,
    /// Nodes whose datacenter or rack changed.
    pub moved: Vec<IpAddr>,
}

/// Candidates for discovery requests, by health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactsByHealth {
    /// Active nodes, in address order.
    pub active: Vec<IpAddr>,
    /// Quarantined nodes, in address order.
    pub quarantined: Vec<IpAddr>,
    /// Down nodes, in address order.
    pub down: Vec<IpAddr>,
}

/// Member nodes with health and probe schedule.
#[derive(Debug, Clone)]
pub struct Topology {
    entries: BTreeMap<IpAddr, Entry>,
    thresholds: HealthThresholds,
    probe_period: Duration,
}

impl Topology {
    /// An empty topology.
    pub fn new(thresholds: HealthThresholds, probe_period: Duration) -> Self {
        Topology {
            entries: BTreeMap::new(),
            thresholds,
            probe_period,
        }
    }

    /// Replaces the member set with the result of a successful discovery.
    ///
    /// New nodes enter quarantine with a probe due now. Nodes missing from `members` leave and
    /// their health is forgotten: a node that comes back (a restart, a re-added node) is vetted
    /// again, because Scylla lists it before its Alternator port is ready.
    pub fn apply_members(&mut self, members: &[Member], now: Instant) -> MembershipChange {
        let mut change = MembershipChange::default();
        let incoming: BTreeMap<IpAddr, &Member> = members.iter().map(|m| (m.address, m)).collect();
        self.entries.retain(|address, _| {
            let keep = incoming.contains_key(address);
            if !keep {
                change.removed.push(*address);
            }
            keep
        });
        for (address, member) in incoming {
            match self.entries.get_mut(&address) {
                Some(entry) => {
                    if entry.datacenter != member.datacenter || entry.rack != member.rack {
                        entry.datacenter.clone_from(&member.datacenter);
                        entry.rack.clone_from(&member.rack);
                        change.moved.push(address);
                    }
                }
                None => {
                    self.entries.insert(
                        address,
                        Entry {
                            datacenter: member.datacenter.clone(),
                            rack: member.rack.clone(),
                            health: NodeHealth::quarantined(),
                            probe_due: Some(now),
                            probe_failures: 0,
                            probing: false,
                        },
                    );
                    change.added.push(address);
                }
            }
        }
        change
    }

    /// A node answered a `/localnodes` request with 200 and a valid body. Per the "Node health"
    /// spec a direct successful contact vets the node exactly like a successful probe.
    /// Returns whether the node's health changed.
    pub fn record_contact_success(&mut self, address: IpAddr, now: Instant) -> bool {
        self.observe(address, Observation::ProbeSuccess, now)
    }

    /// Result of a `GET /` probe. Returns whether the node's health changed.
    pub fn record_probe(&mut self, address: IpAddr, ok: bool, now: Instant) -> bool {
        if let Some(entry) = self.entries.get_mut(&address) {
            entry.probing = false;
        }
        let observation = if ok {
            Observation::ProbeSuccess
        } else {
            Observation::ProbeFailure
        };
        self.observe(address, observation, now)
    }

    fn observe(&mut self, address: IpAddr, observation: Observation, now: Instant) -> bool {
        // A result for a node that left meanwhile is dropped: it must not resurrect it.
        let Some(entry) = self.entries.get_mut(&address) else {
            return false;
        };
        let changed = entry.health.observe(observation, &self.thresholds);
        match entry.health.state {
            HealthState::Active => {
                entry.probe_due = None;
                entry.probe_failures = 0;
            }
            HealthState::Quarantined | HealthState::Down => {
                if observation == Observation::ProbeFailure {
                    entry.probe_failures = entry.probe_failures.saturating_add(1);
                } else {
                    entry.probe_failures = 0;
                }
                entry.probe_due =
                    Some(now + probe_retry_delay(entry.probe_failures, self.probe_period));
            }
        }
        changed
    }

    /// Marks up to `limit` due, not yet running probes as running and returns their addresses
    /// (down nodes first: recovery before admission, as the spec orders probe work).
    pub fn take_due_probes(&mut self, now: Instant, limit: usize) -> Vec<IpAddr> {
        let mut due: Vec<(bool, Instant, IpAddr)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.probing)
            .filter_map(|(a, e)| {
                e.probe_due
                    .filter(|d| *d <= now)
                    .map(|d| (e.health.state != HealthState::Down, d, *a))
            })
            .collect();
        due.sort();
        due.truncate(limit);
        due.into_iter()
            .map(|(_, _, address)| {
                if let Some(entry) = self.entries.get_mut(&address) {
                    entry.probing = true;
                }
                address
            })
            .collect()
    }

    /// The earliest pending probe time among nodes not being probed.
    pub fn next_probe_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.probing)
            .filter_map(|e| e.probe_due)
            .min()
    }

    /// Members partitioned by health, in address order.
    pub fn contacts(&self) -> ContactsByHealth {
        let mut contacts = ContactsByHealth::default();
        for (address, entry) in &self.entries {
            match entry.health.state {
                HealthState::Active => contacts.active.push(*address),
                HealthState::Quarantined => contacts.quarantined.push(*address),
                HealthState::Down => contacts.down.push(*address),
            }
        }
        contacts
    }

    /// The nodes as the snapshot publishes them.
    pub fn nodes(&self) -> Vec<Node> {
        self.entries
            .iter()
            .map(|(address, e)| Node {
                address: *address,
                datacenter: e.datacenter.clone(),
                rack: e.rack.clone(),
                health: e.health.state,
            })
            .collect()
    }

    /// Health of one member.
    pub fn health(&self, address: IpAddr) -> Option<HealthState> {
        self.entries.get(&address).map(|e| e.health.state)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Delay before the next probe after `failures` consecutive failed probes: 0.5 s, 1 s, 2 s, ...
/// capped at `period`.
pub fn probe_retry_delay(failures: u32, period: Duration) -> Duration {
    if failures == 0 {
        return FIRST_PROBE_RETRY.min(period);
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    FIRST_PROBE_RETRY.saturating_mul(factor).min(period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn member(last: u8, dc: &str, rack: &str) -> Member {
        Member {
            address: ip(last),
            datacenter: dc.into(),
            rack: rack.into(),
        }
    }

    fn topology() -> Topology {
        Topology::new(HealthThresholds::default(), Duration::from_secs(30))
    }

    #[test]
    fn new_nodes_are_quarantined_and_probed_at_once() {
        let now = Instant::now();
        let mut t = topology();
        let change = t.apply_members(&[member(1, "dc1", "r1"), member(2, "dc1", "")], now);
        assert_eq!(change.added, [ip(1), ip(2)]);
        assert_eq!(t.health(ip(1)), Some(HealthState::Quarantined));
        assert_eq!(t.take_due_probes(now, 1), [ip(1)]);
        assert_eq!(
            t.take_due_probes(now, 8),
            [ip(2)],
            "a running probe is not handed out twice"
        );
        assert!(t.take_due_probes(now, 8).is_empty());
    }

    #[test]
    fn probe_success_activates_and_stops_probing() {
        let now = Instant::now();
        let mut t = topology();
        t.apply_members(&[member(1, "dc1", "r1")], now);
        t.take_due_probes(now, 4);
        assert!(t.record_probe(ip(1), true, now));
        assert_eq!(t.health(ip(1)), Some(HealthState::Active));
        assert_eq!(t.next_probe_due(), None);
    }

    #[test]
    fn failed_probes_back_off_and_keep_quarantine() {
        let start = Instant::now();
        let mut t = topology();
        t.apply_members(&[member(1, "dc1", "r1")], start);
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..9 {
            assert_eq!(t.take_due_probes(now, 4), [ip(1)]);
            t.record_probe(ip(1), false, now);
            let due = t.next_probe_due().unwrap();
            delays.push(due - now);
            now = due;
        }
        assert_eq!(t.health(ip(1)), Some(HealthState::Quarantined));
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn leaving_forgets_health_and_late_results_are_dropped() {
        let now = Instant::now();
        let mut t = topology();
        t.apply_members(&[member(1, "dc1", "r1"), member(2, "dc1", "r1")], now);
        t.record_probe(ip(1), true, now);
        let change = t.apply_members(&[member(2, "dc1", "r1")], now);
        assert_eq!(change.removed, [ip(1)]);
        assert!(
            !t.record_probe(ip(1), true, now),
            "result for a departed node"
        );
        t.apply_members(&[member(1, "dc1", "r1"), member(2, "dc1", "r1")], now);
        assert_eq!(
            t.health(ip(1)),
            Some(HealthState::Quarantined),
            "a returning node is vetted again"
        );
    }

    #[test]
    fn contact_success_vets_a_node_and_moves_are_reported() {
        let now = Instant::now();
        let mut t = topology();
        t.apply_members(&[member(1, "dc1", "")], now);
        t.record_contact_success(ip(1), now);
        assert_eq!(t.contacts().active, [ip(1)]);
        let change = t.apply_members(&[member(1, "dc1", "r1")], now);
        assert_eq!(change.moved, [ip(1)]);
        assert_eq!(t.nodes()[0].rack, "r1");
        assert_eq!(
            t.health(ip(1)),
            Some(HealthState::Active),
            "a move keeps health"
        );
    }

    #[test]
    fn retry_delay_saturates() {
        let period = Duration::from_secs(30);
        assert_eq!(probe_retry_delay(0, period), Duration::from_millis(500));
        assert_eq!(probe_retry_delay(200, period), period);
        assert_eq!(
            probe_retry_delay(3, Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
