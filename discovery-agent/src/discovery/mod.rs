//! One discovery refresh: which `/localnodes` queries to send, whom to ask, and how the answers
//! become the member list.
//!
//! The plan is the routing core's scope chain ([`ScopePolicy::chain`]) plus the configured extra
//! datacenters, with one query per scope and refresh — never one request per node. Each query
//! goes to the first candidate that answers: known active nodes (rotating, so a fleet of agents
//! spreads its load), then the seeds, then quarantined and down nodes. A candidate that failed
//! once in a refresh is not asked again in that refresh.
//!
//! `/localnodes` without parameters names the *answering* node's datacenter, so when a
//! datacenter is configured the cluster scope adds nothing and is only asked when every
//! narrower scope answered `[]` (a misspelt datacenter, say) — the spec's "continue until a
//! non-empty result".

pub mod task;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use alternator_routing::localnodes::{parse_localnodes, LocalNodesError};
use alternator_routing::scope::{Scope, ScopePolicy};

use crate::topology::{ContactsByHealth, Member};
use crate::transport::{FetchError, Transport};

/// The scopes one refresh asks, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryPlan {
    scopes: Vec<Scope>,
}

impl DiscoveryPlan {
    /// The policy's chain, then each extra datacenter not already in it; a trailing cluster
    /// scope stays last.
    pub fn new(policy: &ScopePolicy, extra_datacenters: &[String]) -> Self {
        let chain = policy.chain();
        let (mut scopes, cluster): (Vec<Scope>, Vec<Scope>) =
            chain.into_iter().partition(|s| *s != Scope::Cluster);
        for dc in extra_datacenters {
            let scope = Scope::Datacenter {
                datacenter: dc.clone(),
            };
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.extend(cluster);
        DiscoveryPlan { scopes }
    }

    /// The scopes in asking order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }
}

/// Whom to ask, in order: active nodes starting at `rotation` (mod their count), then seeds,
/// then quarantined and down nodes. Duplicates (a seed that is also a known node) are asked
/// once, at their first position.
pub fn ask_order(contacts: &ContactsByHealth, seeds: &[String], rotation: usize) -> Vec<String> {
    let mut order =
        Vec::with_capacity(contacts.active.len() + seeds.len() + contacts.quarantined.len());
    let active = &contacts.active;
    if !active.is_empty() {
        let start = rotation % active.len();
        order.extend(
            active[start..]
                .iter()
                .chain(&active[..start])
                .map(IpAddr::to_string),
        );
    }
    order.extend(seeds.iter().cloned());
    order.extend(contacts.quarantined.iter().map(IpAddr::to_string));
    order.extend(contacts.down.iter().map(IpAddr::to_string));
    let mut seen = HashSet::with_capacity(order.len());
    order.retain(|host| seen.insert(normalize_host(host)));
    order
}

// A seed written as "127.0.0.01"-style text or in upper case names the same host as the
// node's canonical address; compare parsed addresses where possible.
fn normalize_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// Delay before the next attempt after `failures` consecutive failed refreshes: exponential
/// from `base`, capped at `max`, with "equal jitter" (half fixed, half random) so a fleet of
/// agents that lost the cluster together does not retry in lockstep. `jitter` is a random
/// number in `[0, 1)`.
pub fn backoff_delay(failures: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let half = ceiling / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// What one scope query produced this refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeOutcome {
    /// A node answered with a valid list (possibly empty).
    Answered {
        /// Addresses in the answer.
        addresses: Vec<IpAddr>,
        /// Entries that were not addresses (host-id UUIDs).
        skipped: usize,
        /// Who answered.
        answered_by: String,
    },
    /// Every candidate failed; the last answer for this scope (if any) stays in force.
    Failed,
    /// Not asked: a narrower scope already found nodes.
    NotNeeded,
}

/// One failed attempt, for logs and metrics.
#[derive(Debug)]
pub enum AttemptError {
    /// No final answer.
    Fetch(FetchError),
    /// A final answer other than 200.
    Status(u16),
    /// 200 with a body that is not a `/localnodes` list.
    Body(LocalNodesError),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Fetch(e) => write!(f, "{e}"),
            AttemptError::Status(s) => write!(f, "answered HTTP {s}"),
            AttemptError::Body(e) => write!(f, "{e}"),
        }
    }
}

/// Everything one refresh did.
#[derive(Debug, Default)]
pub struct RefreshReport {
    /// One outcome per plan scope, in plan order.
    pub outcomes: Vec<(Scope, ScopeOutcome)>,
    /// Hosts that answered at least one query with a valid list.
    pub answered: Vec<String>,
    /// Failed attempts: host, scope query, error.
    pub failures: Vec<(String, String, AttemptError)>,
    /// Requests sent to Alternator nodes.
    pub requests: u32,
}

impl RefreshReport {
    /// Whether at least one scope got an answer.
    pub fn any_answer(&self) -> bool {
        self.outcomes
            .iter()
            .any(|(_, o)| matches!(o, ScopeOutcome::Answered { .. }))
    }
}

/// Last good answer per scope, so a scope that fails this refresh keeps its nodes.
#[derive(Debug, Clone, Default)]
pub struct ScopeMemory {
    answers: Vec<(Scope, Vec<IpAddr>)>,
}

impl ScopeMemory {
    fn get(&self, scope: &Scope) -> Option<&Vec<IpAddr>> {
        self.answers
            .iter()
            .find(|(s, _)| s == scope)
            .map(|(_, a)| a)
    }

    fn set(&mut self, scope: &Scope, addresses: Vec<IpAddr>) {
        match self.answers.iter_mut().find(|(s, _)| s == scope) {
            Some(slot) => slot.1 = addresses,
            None => self.answers.push((scope.clone(), addresses)),
        }
    }

    fn forget(&mut self, scope: &Scope) {
        self.answers.retain(|(s, _)| s != scope);
    }

    /// Whether any scope has ever answered.
    pub fn has_answers(&self) -> bool {
        !self.answers.is_empty()
    }

    /// The members implied by the remembered answers: each node gets the location of the most
    /// specific scope that listed it (rack beats datacenter beats the unlabelled cluster query).
    pub fn members(&self, plan: &DiscoveryPlan) -> Vec<Member> {
        let mut members: Vec<Member> = Vec::new();
        // Most specific first, so the first scope to claim an address sets its location.
        let mut scopes: Vec<&Scope> = plan.scopes().iter().collect();
        scopes.sort_by_key(|s| match s {
            Scope::Rack { .. } => 0,
            Scope::Datacenter { .. } => 1,
            Scope::Cluster => 2,
        });
        let mut seen = HashSet::new();
        for scope in scopes {
            let Some(addresses) = self.get(scope) else {
                continue;
            };
            let (datacenter, rack) = match scope {
                Scope::Rack { datacenter, rack } => (datacenter.as_str(), rack.as_str()),
                Scope::Datacenter { datacenter } => (datacenter.as_str(), ""),
                Scope::Cluster => ("", ""),
            };
            for address in addresses {
                if seen.insert(*address) {
                    members.push(Member {
                        address: *address,
                        datacenter: datacenter.to_owned(),
                        rack: rack.to_owned(),
                    });
                }
            }
        }
        members
    }
}

/// Runs one refresh: one query per needed scope, each to the first candidate of `order` that
/// answers. Updates `memory` with every answer and returns what happened.
pub async fn refresh<T: Transport>(
    transport: &T,
    plan: &DiscoveryPlan,
    order: &[String],
    timeout: Duration,
    memory: &mut ScopeMemory,
) -> RefreshReport {
    let mut report = RefreshReport::default();
    let mut failed_hosts: HashSet<&str> = HashSet::new();
    for scope in plan.scopes() {
        if *scope == Scope::Cluster && plan.scopes().len() > 1 {
            let narrower_found = plan
                .scopes()
                .iter()
                .filter(|s| **s != Scope::Cluster)
                .any(|s| memory.get(s).is_some_and(|a| !a.is_empty()));
            if narrower_found {
                memory.forget(scope);
                report
                    .outcomes
                    .push((scope.clone(), ScopeOutcome::NotNeeded));
                continue;
            }
        }
        let query = scope.localnodes_query();
        let mut outcome = ScopeOutcome::Failed;
        for host in order {
            if failed_hosts.contains(host.as_str()) {
                continue;
            }
            report.requests += 1;
            match ask(transport, host, &query, timeout).await {
                Ok(list) => {
                    memory.set(scope, list.addresses.clone());
                    if !report.answered.contains(host) {
                        report.answered.push(host.clone());
                    }
                    outcome = ScopeOutcome::Answered {
                        addresses: list.addresses,
                        skipped: list.skipped,
                        answered_by: host.clone(),
                    };
                    break;
                }
                Err(error) => {
                    failed_hosts.insert(host);
                    report.failures.push((host.clone(), query.clone(), error));
                }
            }
        }
        report.outcomes.push((scope.clone(), outcome));
    }
    report
}

async fn ask<T: Transport>(
    transport: &T,
    host: &str,
    query: &str,
    timeout: Duration,
) -> Result<alternator_routing::localnodes::LocalNodes, AttemptError> {
    let answer = transport
        .get(host, query, timeout)
        .await
        .map_err(AttemptError::Fetch)?;
    if answer.status != 200 {
        return Err(AttemptError::Status(answer.status));
    }
    parse_localnodes(&answer.body).map_err(AttemptError::Body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alternator_routing::scope::ScopeMode;

    fn rack_policy(mode: ScopeMode) -> ScopePolicy {
        ScopePolicy {
            scope: Scope::Rack {
                datacenter: "dc1".into(),
                rack: "r1".into(),
            },
            mode,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn plans() {
        let queries = |p: &DiscoveryPlan| {
            p.scopes()
                .iter()
                .map(Scope::localnodes_query)
                .collect::<Vec<_>>()
        };
        let fallback = DiscoveryPlan::new(
            &rack_policy(ScopeMode::Fallback),
            &["dc2".into(), "dc1".into()],
        );
        assert_eq!(
            queries(&fallback),
            [
                "/localnodes?dc=dc1&rack=r1",
                "/localnodes?dc=dc1",
                "/localnodes?dc=dc2",
                "/localnodes"
            ]
        );
        let strict = DiscoveryPlan::new(&rack_policy(ScopeMode::Strict), &[]);
        assert_eq!(queries(&strict), ["/localnodes?dc=dc1&rack=r1"]);
        let cluster = DiscoveryPlan::new(&ScopePolicy::default(), &[]);
        assert_eq!(queries(&cluster), ["/localnodes"]);
    }

    #[test]
    fn ask_order_rotates_active_then_seeds_then_the_rest() {
        let contacts = ContactsByHealth {
            active: vec![ip(1), ip(2), ip(3)],
            quarantined: vec![ip(4)],
            down: vec![ip(5)],
        };
        let seeds = vec!["127.0.0.2".to_owned(), "seed.example".to_owned()];
        assert_eq!(
            ask_order(&contacts, &seeds, 4),
            [
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.1",
                "seed.example",
                "127.0.0.4",
                "127.0.0.5"
            ]
        );
        let none = ContactsByHealth::default();
        assert_eq!(ask_order(&none, &seeds, 7), seeds);
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        let top: Vec<u64> = (1..=7)
            .map(|n| backoff_delay(n, base, max, 0.999_999).as_secs())
            .collect();
        assert_eq!(top, [0, 1, 3, 7, 15, 29, 29]);
        assert_eq!(backoff_delay(1, base, max, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(3, base, max, 0.5), Duration::from_secs(3));
        assert_eq!(
            backoff_delay(u32::MAX, base, max, 0.0),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn members_take_the_most_specific_location() {
        let plan = DiscoveryPlan::new(&rack_policy(ScopeMode::Fallback), &["dc2".into()]);
        let mut memory = ScopeMemory::default();
        memory.set(&plan.scopes()[0], vec![ip(1)]);
        memory.set(&plan.scopes()[1], vec![ip(2), ip(1)]);
        memory.set(&plan.scopes()[2], vec![ip(9)]);
        let members = memory.members(&plan);
        let view: Vec<(IpAddr, &str, &str)> = members
            .iter()
            .map(|m| (m.address, m.datacenter.as_str(), m.rack.as_str()))
            .collect();
        assert_eq!(
            view,
            [(ip(1), "dc1", "r1"), (ip(2), "dc1", ""), (ip(9), "dc2", "")]
        );
    }
}
