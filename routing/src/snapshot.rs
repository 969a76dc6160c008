//! The node model and the snapshot wire format the agent publishes and the filter stores.
//!
//! One snapshot is the complete routing view at one moment: every known Alternator node with
//! its datacenter, rack and health, plus the scheme and port all nodes share (Alternator listens
//! on the same port on every node). The JSON form is "format 1" of `docs/architecture.md` §1:
//!
//! ```json
//! {"format":1,"version":42,"generated_at_ms":1763735000000,"scheme":"http","port":8000,
//!  "nodes":[{"address":"127.0.0.2","datacenter":"dc1","rack":"rack1","health":"active"}]}
//! ```
//!
//! [`NodeSnapshot::new`] and [`NodeSnapshot::from_json`] normalise the node list — unique by
//! address, sorted by canonical endpoint bytes — so every reader derives the same base order
//! from the same content, whatever order the writer used.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, Scheme};
use crate::ring::{Ring, RingError, RingWire, TableOwnership};

/// The wire format this crate writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The longest long-poll of `GET /v1/nodes?wait=N`, in seconds (`docs/architecture.md` §2):
/// the agent treats a longer `wait` as this, and the filter accepts no longer
/// `agent.long_poll_s`.
pub const MAX_LONG_POLL_SECS: u64 = 60;

/// Routing classification of a node (the "Node health" spec's three states).
///
/// Reading is lenient on purpose: a health name this version does not know (a newer agent
/// may add states) reads as `Quarantined` — still routable, but only after every active
/// node — rather than failing the whole snapshot and leaving an older filter without nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Eligible for ordinary traffic.
    Active,
    /// Eligible only after every active candidate; new and recovering nodes start here.
    Quarantined,
    /// Never receives new traffic; only recovery probes.
    Down,
}

impl HealthState {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Active => "active",
            HealthState::Quarantined => "quarantined",
            HealthState::Down => "down",
        }
    }

    /// Whether a plan may contain a node in this state at all.
    pub fn is_eligible(self) -> bool {
        self != HealthState::Down
    }
}

impl<'de> Deserialize<'de> for HealthState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(match name.as_ref() {
            "active" => HealthState::Active,
            "down" => HealthState::Down,
            _ => HealthState::Quarantined,
        })
    }
}

/// One Alternator node as the routing core sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Node {
    /// The node's IP address; the snapshot's scheme and port complete its endpoint.
    pub address: IpAddr,
    /// Datacenter name; empty when unknown.
    #[serde(default)]
    pub datacenter: String,
    /// Rack name; empty when unknown.
    #[serde(default)]
    pub rack: String,
    /// Health as published by the agent.
    pub health: HealthState,
}

/// Why a snapshot document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not JSON, or JSON that does not have the format-1 shape.
    #[error("node snapshot is not a valid format-1 document: {0}")]
    Malformed(#[from] serde_json::Error),
    /// `format` is zero.
    #[error("node snapshot declares format {0}; formats start at 1")]
    InvalidFormat(u32),
    /// `port` is zero.
    #[error("node snapshot declares port 0; expected 1-65535")]
    InvalidPort,
}

/// A normalised, versioned set of nodes.
///
/// Fields are private so the normalisation invariant (unique addresses, canonical order) always
/// holds; build one with [`NodeSnapshot::new`] or [`NodeSnapshot::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    version: u64,
    generated_at_ms: u64,
    scheme: Scheme,
    port: u16,
    nodes: Vec<Node>,
    ring: Option<Ring>,
    ring_rejected: Option<RingError>,
}

#[derive(Serialize)]
struct WireOut<'a> {
    format: u32,
    version: u64,
    generated_at_ms: u64,
    scheme: Scheme,
    port: u16,
    nodes: &'a [Node],
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<RingWire>,
}

// Unknown fields are ignored (serde's default), so an older filter reads a newer agent's
// snapshot as long as the format-1 fields are still there.
#[derive(Deserialize)]
struct WireIn {
    format: u32,
    version: u64,
    #[serde(default)]
    generated_at_ms: u64,
    scheme: Scheme,
    port: u16,
    nodes: Vec<Node>,
    // Kept as a value so a ring this reader cannot decode costs the ring, not the snapshot.
    #[serde(default)]
    ring: Option<serde_json::Value>,
}

impl NodeSnapshot {
    /// Builds a snapshot, keeping the first node of each address and sorting by canonical
    /// endpoint (`scheme://ip[:port]`, compared bytewise).
    pub fn new(
        version: u64,
        generated_at_ms: u64,
        scheme: Scheme,
        port: u16,
        nodes: Vec<Node>,
    ) -> Self {
        let mut seen = HashSet::with_capacity(nodes.len());
        let mut keyed: Vec<(Endpoint, Node)> = nodes
            .into_iter()
            .filter(|n| seen.insert(n.address))
            .map(|n| (Endpoint::from_ip(scheme, n.address, port), n))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        NodeSnapshot {
            version,
            generated_at_ms,
            scheme,
            port,
            nodes: keyed.into_iter().map(|(_, n)| n).collect(),
            ring: None,
            ring_rejected: None,
        }
    }

    /// Parses a format-1 document (a newer format is accepted when it still reads as format 1).
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let wire: WireIn = serde_json::from_slice(bytes)?;
        if wire.format == 0 {
            return Err(SnapshotError::InvalidFormat(wire.format));
        }
        if wire.port == 0 {
            return Err(SnapshotError::InvalidPort);
        }
        let mut snapshot = NodeSnapshot::new(
            wire.version,
            wire.generated_at_ms,
            wire.scheme,
            wire.port,
            wire.nodes,
        );
        if let Some(ring) = wire.ring {
            let decoded = serde_json::from_value::<RingWire>(ring)
                .map_err(|e| RingError::Malformed(e.to_string()))
                .and_then(|w| Ring::from_wire(w, snapshot.nodes.len()));
            match decoded {
                Ok(ring) => snapshot.ring = Some(ring),
                Err(e) => snapshot.ring_rejected = Some(e),
            }
        }
        Ok(snapshot)
    }

    /// The format-1 JSON document, compact, fields in wire order.
    pub fn to_json(&self) -> String {
        let wire = WireOut {
            format: SNAPSHOT_FORMAT,
            version: self.version,
            generated_at_ms: self.generated_at_ms,
            scheme: self.scheme,
            port: self.port,
            nodes: &self.nodes,
            ring: self.ring.as_ref().map(|r| r.to_wire(self.nodes.len())),
        };
        // Serialising plain structs of strings and integers into a String cannot fail; the
        // fallback keeps the no-panic rule without an unreachable branch that lies.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Whether two snapshots route identically: same scheme, port, nodes (with health) and
    /// ring tables. `version`, `generated_at_ms` and the ring's version are ignored, so the
    /// agent can tell if a refresh changed anything before it bumps the version.
    pub fn content_equal(&self, other: &NodeSnapshot) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.nodes == other.nodes
            && self.ring.as_ref().map(Ring::tables) == other.ring.as_ref().map(Ring::tables)
    }

    /// This snapshot carrying token ownership: `tables` translated to indices of this
    /// snapshot's nodes (replicas it does not list are left out), under ring version
    /// `ring_version`. Call it after the node list is final.
    #[must_use]
    pub fn with_ring(mut self, ring_version: u64, tables: &[TableOwnership]) -> Self {
        let addresses: Vec<IpAddr> = self.nodes.iter().map(|n| n.address).collect();
        self.ring = Some(Ring::from_ownership(ring_version, tables, &addresses));
        self.ring_rejected = None;
        self
    }

    /// Token ownership, when the agent published one this reader could decode.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    /// Why the published ring was set aside, when there was one and it did not decode; the
    /// nodes are still used.
    pub fn ring_rejected(&self) -> Option<&RingError> {
        self.ring_rejected.as_ref()
    }

    /// This snapshot with another version number.
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Increases whenever the content changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the agent generated this snapshot (Unix milliseconds, informational).
    pub fn generated_at_ms(&self) -> u64 {
        self.generated_at_ms
    }

    /// The scheme every node serves.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The port every node serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The nodes in canonical order; plans return indices into this slice.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The published health of every node, indexed like [`NodeSnapshot::nodes`]: the health
    /// slice a plan takes when the caller has no health of its own to overlay.
    pub fn health(&self) -> Vec<HealthState> {
        self.nodes.iter().map(|n| n.health).collect()
    }

    /// The canonical endpoint of node `index`.
    pub fn endpoint(&self, index: usize) -> Option<Endpoint> {
        self.nodes
            .get(index)
            .map(|n| Endpoint::from_ip(self.scheme, n.address, self.port))
    }

    /// The index of the node with this address.
    pub fn position(&self, address: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.address == address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(addr: &str, dc: &str, rack: &str, health: HealthState) -> Node {
        Node {
            address: addr.parse().unwrap(),
            datacenter: dc.into(),
            rack: rack.into(),
            health,
        }
    }

    #[test]
    fn wire_format_matches_the_contract() {
        let snap = NodeSnapshot::new(
            42,
            1_763_735_000_000,
            Scheme::Http,
            8000,
            vec![node("127.0.0.2", "dc1", "rack1", HealthState::Active)],
        );
        assert_eq!(
            snap.to_json(),
            r#"{"format":1,"version":42,"generated_at_ms":1763735000000,"scheme":"http","port":8000,"nodes":[{"address":"127.0.0.2","datacenter":"dc1","rack":"rack1","health":"active"}]}"#
        );
    }

    #[test]
    fn normalises_order_and_duplicates() {
        let snap = NodeSnapshot::new(
            1,
            0,
            Scheme::Http,
            8000,
            vec![
                node("10.0.0.1", "dc1", "r1", HealthState::Active),
                node("::1", "dc1", "r1", HealthState::Active),
                node("10.0.0.10", "dc1", "r1", HealthState::Down),
                node("10.0.0.1", "dc2", "r9", HealthState::Down),
            ],
        );
        let order: Vec<String> = snap.nodes().iter().map(|n| n.address.to_string()).collect();
        // http://10.0.0.10:8000 < http://10.0.0.1:8000 < http://[::1]:8000 bytewise.
        assert_eq!(order, ["10.0.0.10", "10.0.0.1", "::1"]);
        assert_eq!(
            snap.nodes()[1].datacenter,
            "dc1",
            "first node of an address wins"
        );
    }

    #[test]
    fn reader_ignores_unknown_fields_and_accepts_newer_formats() {
        let doc = br#"{"format":2,"version":7,"scheme":"https","port":8043,"future":{"x":1},
            "nodes":[{"address":"10.0.0.2","health":"quarantined","zone":"z"},
                     {"address":"10.0.0.1","datacenter":"d","rack":"r","health":"down"}]}"#;
        let snap = NodeSnapshot::from_json(doc).unwrap();
        assert_eq!(snap.version(), 7);
        assert_eq!(snap.scheme(), Scheme::Https);
        assert_eq!(snap.nodes()[0].health, HealthState::Down);
        assert_eq!(snap.nodes()[1].datacenter, "");
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [
            &b""[..],
            b"<html>",
            b"[]",
            br#"{"format":0,"version":1,"scheme":"http","port":1,"nodes":[]}"#,
            br#"{"format":1,"version":1,"scheme":"http","port":0,"nodes":[]}"#,
            br#"{"format":1,"version":1,"scheme":"ftp","port":1,"nodes":[]}"#,
            br#"{"format":1,"version":1,"scheme":"http","port":1,"nodes":[{"address":"x","health":"active"}]}"#,
            br#"{"version":1,"scheme":"http","port":1,"nodes":[]}"#,
        ] {
            assert!(NodeSnapshot::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn content_equal_ignores_version_and_time() {
        let a = NodeSnapshot::new(
            1,
            5,
            Scheme::Http,
            8000,
            vec![node("10.0.0.1", "d", "r", HealthState::Active)],
        );
        let b = a.clone().with_version(9);
        assert!(a.content_equal(&b));
        let c = NodeSnapshot::new(
            1,
            5,
            Scheme::Http,
            8000,
            vec![node("10.0.0.1", "d", "r", HealthState::Down)],
        );
        assert!(!a.content_equal(&c));
    }

    #[test]
    fn unknown_health_names_read_as_quarantined() {
        let snap = NodeSnapshot::from_json(
            br#"{"format":1,"version":1,"scheme":"http","port":8000,"nodes":[
                {"address":"10.0.0.1","health":"draining","future_field":true},
                {"address":"10.0.0.2","health":"active"}]}"#,
        )
        .unwrap();
        assert_eq!(snap.nodes()[0].health, HealthState::Quarantined);
        assert_eq!(snap.nodes()[1].health, HealthState::Active);
    }
}
