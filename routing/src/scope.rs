//! Routing scopes: which nodes a client may use, and where it goes when they are all down.
//!
//! A scope is the whole cluster, one datacenter, or one rack of one datacenter. A
//! [`ScopePolicy`] adds the mode: [`ScopeMode::Strict`] never leaves the scope, while
//! [`ScopeMode::Fallback`] widens it step by step, rack → datacenter → cluster, when the inner
//! scope has no eligible node. The same chain drives discovery: the agent asks `/localnodes`
//! with each scope's query ([`Scope::localnodes_query`]) until one answer is non-empty.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::snapshot::Node;

/// A set of nodes selected by location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Every node of the cluster.
    #[default]
    Cluster,
    /// The nodes of one datacenter.
    Datacenter {
        /// Datacenter name as Scylla reports it.
        datacenter: String,
    },
    /// The nodes of one rack of one datacenter.
    Rack {
        /// Datacenter name as Scylla reports it.
        datacenter: String,
        /// Rack name as Scylla reports it.
        rack: String,
    },
}

/// Why a scope description is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Rack names are only unique within a datacenter.
    #[error("rack {rack:?} needs a datacenter: rack names are only meaningful within one")]
    RackWithoutDatacenter {
        /// The rack that was given alone.
        rack: String,
    },
    /// An empty name would match nodes whose location is unknown.
    #[error("datacenter and rack names must not be empty")]
    EmptyName,
}

impl Scope {
    /// The scope named by an optional datacenter and rack, as configuration gives them.
    pub fn from_names(datacenter: Option<&str>, rack: Option<&str>) -> Result<Scope, ScopeError> {
        match (datacenter, rack) {
            (Some(""), _) | (_, Some("")) => Err(ScopeError::EmptyName),
            (None, None) => Ok(Scope::Cluster),
            (Some(dc), None) => Ok(Scope::Datacenter {
                datacenter: dc.to_owned(),
            }),
            (Some(dc), Some(rack)) => Ok(Scope::Rack {
                datacenter: dc.to_owned(),
                rack: rack.to_owned(),
            }),
            (None, Some(rack)) => Err(ScopeError::RackWithoutDatacenter {
                rack: rack.to_owned(),
            }),
        }
    }

    /// Whether `node` belongs to this scope.
    pub fn contains(&self, node: &Node) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Datacenter { datacenter } => node.datacenter == *datacenter,
            Scope::Rack { datacenter, rack } => {
                node.datacenter == *datacenter && node.rack == *rack
            }
        }
    }

    /// The next wider scope, or `None` for the cluster.
    pub fn parent(&self) -> Option<Scope> {
        match self {
            Scope::Cluster => None,
            Scope::Datacenter { .. } => Some(Scope::Cluster),
            Scope::Rack { datacenter, .. } => Some(Scope::Datacenter {
                datacenter: datacenter.clone(),
            }),
        }
    }

    /// The path and query of Alternator's node-list request for this scope: `/localnodes`,
    /// `/localnodes?dc=D` or `/localnodes?dc=D&rack=R`, names percent-encoded.
    pub fn localnodes_query(&self) -> String {
        let mut q = String::from("/localnodes");
        match self {
            Scope::Cluster => {}
            Scope::Datacenter { datacenter } => {
                q.push_str("?dc=");
                push_percent_encoded(&mut q, datacenter);
            }
            Scope::Rack { datacenter, rack } => {
                q.push_str("?dc=");
                push_percent_encoded(&mut q, datacenter);
                q.push_str("&rack=");
                push_percent_encoded(&mut q, rack);
            }
        }
        q
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => f.write_str("cluster"),
            Scope::Datacenter { datacenter } => write!(f, "datacenter {datacenter:?}"),
            Scope::Rack { datacenter, rack } => {
                write!(f, "rack {rack:?} of datacenter {datacenter:?}")
            }
        }
    }
}

/// Whether routing may leave the configured scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMode {
    /// Only nodes of the scope; no eligible node means no route.
    Strict,
    /// Widen rack → datacenter → cluster when the inner scope has no eligible node, and pad
    /// retry candidates from the wider scopes.
    #[default]
    Fallback,
}

/// A scope and its mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ScopePolicy {
    /// The preferred scope.
    pub scope: Scope,
    /// Whether routing may widen it.
    pub mode: ScopeMode,
}

impl ScopePolicy {
    /// The scopes to try, innermost first: just the scope when strict, otherwise the scope and
    /// every wider one up to the cluster.
    pub fn chain(&self) -> Vec<Scope> {
        let mut chain = vec![self.scope.clone()];
        if self.mode == ScopeMode::Fallback {
            while let Some(parent) = chain.last().and_then(Scope::parent) {
                chain.push(parent);
            }
        }
        chain
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any Scylla datacenter or
/// rack name survives a query string.
fn push_percent_encoded(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rack(dc: &str, rack: &str) -> Scope {
        Scope::Rack {
            datacenter: dc.into(),
            rack: rack.into(),
        }
    }

    #[test]
    fn chains() {
        let dc = Scope::Datacenter {
            datacenter: "dc1".into(),
        };
        let fallback = ScopePolicy {
            scope: rack("dc1", "r1"),
            mode: ScopeMode::Fallback,
        };
        assert_eq!(
            fallback.chain(),
            [rack("dc1", "r1"), dc.clone(), Scope::Cluster]
        );
        let strict = ScopePolicy {
            mode: ScopeMode::Strict,
            ..fallback
        };
        assert_eq!(strict.chain(), [rack("dc1", "r1")]);
        let dc_policy = ScopePolicy {
            scope: dc.clone(),
            mode: ScopeMode::Fallback,
        };
        assert_eq!(dc_policy.chain(), [dc, Scope::Cluster]);
        assert_eq!(ScopePolicy::default().chain(), [Scope::Cluster]);
    }

    #[test]
    fn localnodes_queries() {
        assert_eq!(Scope::Cluster.localnodes_query(), "/localnodes");
        assert_eq!(
            Scope::Datacenter {
                datacenter: "us-east-1".into()
            }
            .localnodes_query(),
            "/localnodes?dc=us-east-1"
        );
        assert_eq!(
            rack("dc 1&x=y", "r/1é").localnodes_query(),
            "/localnodes?dc=dc%201%26x%3Dy&rack=r%2F1%C3%A9"
        );
    }

    #[test]
    fn from_names() {
        assert_eq!(Scope::from_names(None, None), Ok(Scope::Cluster));
        assert_eq!(Scope::from_names(Some("d"), Some("r")), Ok(rack("d", "r")));
        assert!(matches!(
            Scope::from_names(None, Some("r")),
            Err(ScopeError::RackWithoutDatacenter { .. })
        ));
        assert_eq!(
            Scope::from_names(Some(""), None),
            Err(ScopeError::EmptyName)
        );
    }

    #[test]
    fn membership() {
        let node = Node {
            address: "10.0.0.1".parse().unwrap(),
            datacenter: "d".into(),
            rack: "r".into(),
            health: crate::HealthState::Active,
        };
        assert!(Scope::Cluster.contains(&node));
        assert!(rack("d", "r").contains(&node));
        assert!(!rack("d", "x").contains(&node));
        assert!(!rack("x", "r").contains(&node));
        assert!(!Scope::Datacenter {
            datacenter: "x".into()
        }
        .contains(&node));
    }
}
