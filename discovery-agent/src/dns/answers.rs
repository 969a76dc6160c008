//! Which nodes a DNS name answers: pure rules over a published snapshot, no I/O, no clock.
//!
//! Names inside the zone are read as locations, innermost label first:
//! `<rack>.<datacenter>.<zone>`, `<datacenter>.<zone>`, and the zone apex itself, which stands
//! for the agent's own scope. Each name becomes a routing [`ScopePolicy`], so DNS widens rack →
//! datacenter → cluster exactly as the filter does, or stays put when strict.
//!
//! Health decides before location: an active node of any scope the policy allows is preferred
//! to a quarantined node of a narrower one, because a quarantined node has not yet answered
//! `GET /` (its port may still be closed) and a DNS client, unlike the filter, cannot fall back
//! within one request. Down nodes are never answered.

use std::net::IpAddr;

use alternator_routing::scope::{Scope, ScopeMode, ScopePolicy};
use alternator_routing::snapshot::{HealthState, Node};
use rand::seq::SliceRandom;
use rand::Rng;

/// What a name inside the zone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The zone apex: the agent's own scope.
    Apex,
    /// `<datacenter>.<zone>`.
    Datacenter(String),
    /// `<rack>.<datacenter>.<zone>`.
    Rack {
        /// Datacenter label.
        datacenter: String,
        /// Rack label.
        rack: String,
    },
}

impl Location {
    /// Reads the labels left of the zone, leftmost first (as they appear in the name). More than
    /// two labels name nothing the agent knows.
    pub fn from_labels(labels: &[&str]) -> Option<Location> {
        match labels {
            [] => Some(Location::Apex),
            [datacenter] => Some(Location::Datacenter((*datacenter).to_owned())),
            [rack, datacenter] => Some(Location::Rack {
                datacenter: (*datacenter).to_owned(),
                rack: (*rack).to_owned(),
            }),
            _ => None,
        }
    }

    /// The bounded metrics label of this kind of name.
    pub fn kind(&self) -> &'static str {
        match self {
            Location::Apex => "apex",
            Location::Datacenter(_) => "datacenter",
            Location::Rack { .. } => "rack",
        }
    }
}

/// IPv4 for `A`, IPv6 for `AAAA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `A` records.
    V4,
    /// `AAAA` records.
    V6,
}

impl Family {
    fn matches(self, address: IpAddr) -> bool {
        match self {
            Family::V4 => address.is_ipv4(),
            Family::V6 => address.is_ipv6(),
        }
    }
}

/// The answer set for one name, before shuffling and the record limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The name exists; these are its usable addresses (possibly none: NODATA).
    Nodes(Vec<IpAddr>),
    /// Strict mode, and neither the snapshot nor the configuration knows this datacenter or
    /// rack: NXDOMAIN.
    NoSuchName,
}

/// The policy a location stands for. `apex` is the agent's own scope; DNS names match
/// datacenter and rack names without regard to ASCII case, as DNS names compare.
fn policy(location: &Location, apex: &Scope, mode: ScopeMode, nodes: &[Node]) -> ScopePolicy {
    // Use the snapshot's spelling so the routing scope's exact comparison matches.
    let spelled = |dc: &str| {
        nodes
            .iter()
            .find(|n| n.datacenter.eq_ignore_ascii_case(dc))
            .map_or_else(|| dc.to_owned(), |n| n.datacenter.clone())
    };
    let scope = match location {
        Location::Apex => apex.clone(),
        Location::Datacenter(dc) => Scope::Datacenter {
            datacenter: spelled(dc),
        },
        Location::Rack { datacenter, rack } => {
            let datacenter = spelled(datacenter);
            let rack = nodes
                .iter()
                .find(|n| n.datacenter == datacenter && n.rack.eq_ignore_ascii_case(rack))
                .map_or_else(|| rack.clone(), |n| n.rack.clone());
            Scope::Rack { datacenter, rack }
        }
    };
    ScopePolicy { scope, mode }
}

/// Every usable address a name answers, in snapshot order: the active nodes of the innermost
/// scope of the chain that has any; failing that, the quarantined nodes of the innermost scope
/// that has any. Only addresses of `family` count. `declared` are the scopes the agent was
/// configured with (its own rack and datacenter, extra datacenters): they exist even while no
/// node of theirs is listed.
pub fn select(
    nodes: &[Node],
    location: &Location,
    apex: &Scope,
    declared: &[Scope],
    mode: ScopeMode,
    family: Family,
) -> Selection {
    let policy = policy(location, apex, mode, nodes);
    let named_exists = match &policy.scope {
        Scope::Cluster => true,
        scope => nodes.iter().any(|n| scope.contains(n)) || declared.iter().any(|d| same(d, scope)),
    };
    if mode == ScopeMode::Strict && !named_exists && *location != Location::Apex {
        return Selection::NoSuchName;
    }
    let chain = policy.chain();
    for wanted in [HealthState::Active, HealthState::Quarantined] {
        for scope in &chain {
            let found: Vec<IpAddr> = nodes
                .iter()
                .filter(|n| n.health == wanted && scope.contains(n) && family.matches(n.address))
                .map(|n| n.address)
                .collect();
            if !found.is_empty() {
                return Selection::Nodes(found);
            }
        }
    }
    Selection::Nodes(Vec::new())
}

/// Scope equality as DNS names compare: without regard to ASCII case.
fn same(a: &Scope, b: &Scope) -> bool {
    match (a, b) {
        (Scope::Cluster, Scope::Cluster) => true,
        (Scope::Datacenter { datacenter: x }, Scope::Datacenter { datacenter: y }) => {
            x.eq_ignore_ascii_case(y)
        }
        (
            Scope::Rack {
                datacenter: x,
                rack: r,
            },
            Scope::Rack {
                datacenter: y,
                rack: q,
            },
        ) => x.eq_ignore_ascii_case(y) && r.eq_ignore_ascii_case(q),
        _ => false,
    }
}

/// Up to `max` of `addresses`, in random order: a fresh shuffle per answer spreads clients
/// that each take the first record.
pub fn pick<R: Rng + ?Sized>(mut addresses: Vec<IpAddr>, max: usize, rng: &mut R) -> Vec<IpAddr> {
    let keep = max.min(addresses.len());
    let (chosen, _) = addresses.partial_shuffle(rng, keep);
    chosen.to_vec()
}

#[cfg(test)]
mod tests;
