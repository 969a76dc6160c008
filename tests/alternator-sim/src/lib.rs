//! alternator-sim: a stand-in ScyllaDB Alternator cluster for tests, benchmarks and the local
//! demo. **It is a test fixture, not a database.**
//!
//! One process hosts several "nodes", each bound to its own loopback address (`127.0.0.x`) on
//! one shared port, as real Alternator nodes are. Every node answers Scylla's `GET /localnodes`
//! and `GET /` health check and the DynamoDB JSON protocol on `POST /`; all nodes serve the
//! same in-memory tables (or forward to a real DynamoDB implementation with `backend`). A
//! separate control API (and the methods on [`Sim`]) stops, hangs, slows, fails, adds and
//! decommissions nodes and reads per-node counters and the key log that tests use to check
//! request affinity. The interface is specified in `docs/architecture.md` §3.
//!
//! ```no_run
//! # async fn demo() -> Result<(), alternator_sim::SimError> {
//! use alternator_sim::{NodeSpec, Sim, SimConfig};
//! let sim = Sim::start(SimConfig::new(vec![
//!     NodeSpec::new([127, 0, 0, 1], "dc1", "rack1"),
//!     NodeSpec::new([127, 0, 0, 2], "dc1", "rack2"),
//! ]))
//! .await?;
//! let first = sim.node_addresses()[0];
//! sim.stop_node(first).await?; // connections to 127.0.0.1:<port> are now refused
//! sim.start_node(first).await?;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod backend;
mod body;
mod cluster;
mod control;
mod dynamo;
mod http;
mod internal;
mod observe;
pub mod ring;
pub mod sigv4;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cluster::{FailureSpec, NodeState, NodeStatus};
pub use observe::{Counters, KeyLogEntry, NodeCounterSnapshot};
pub use ring::{Layout, RangeOwnership, RingConfig, TableRing, TabletSplit};

/// One node of the simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node's own address; every node of a sim needs a distinct one (`127.0.0.x`).
    pub address: IpAddr,
    pub datacenter: String,
    pub rack: String,
    /// The address the node announces to other nodes (`system.token_ring`'s `endpoint`,
    /// `system.peers`' `peer`), when it differs from `address` (the `rpc_address` clients
    /// connect to and `/localnodes` lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_address: Option<IpAddr>,
    /// Start (or join, for [`Sim::add_node`]) listed in `/localnodes` while the port still
    /// refuses connections, as Scylla does for ~13 s after a node joins.
    #[serde(default)]
    pub listed_not_ready: bool,
    /// With `listed_not_ready`: open the port by itself after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_after_ms: Option<u64>,
}

impl NodeSpec {
    pub fn new(
        address: impl Into<IpAddr>,
        datacenter: impl Into<String>,
        rack: impl Into<String>,
    ) -> Self {
        NodeSpec {
            address: address.into(),
            datacenter: datacenter.into(),
            rack: rack.into(),
            broadcast_address: None,
            listed_not_ready: false,
            ready_after_ms: None,
        }
    }

    /// Announce `broadcast` instead of `address` to other nodes.
    pub fn with_broadcast_address(mut self, broadcast: impl Into<IpAddr>) -> Self {
        self.broadcast_address = Some(broadcast.into());
        self
    }

    /// The address announced to other nodes (`broadcast_address`, default `address`).
    pub fn broadcast(&self) -> IpAddr {
        self.broadcast_address.unwrap_or(self.address)
    }

    /// Join listed-but-not-ready (see [`NodeSpec::listed_not_ready`]).
    pub fn listed_not_ready(mut self, ready_after: Option<Duration>) -> Self {
        self.listed_not_ready = true;
        self.ready_after_ms = ready_after.map(|d| d.as_millis() as u64);
        self
    }
}

impl FromStr for NodeSpec {
    type Err = SimError;

    /// `ADDRESS/DATACENTER/RACK[/BROADCAST]`, e.g. `127.0.0.2/dc1/rack2` or
    /// `127.0.0.2/dc1/rack2/10.0.0.2`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SimError::InvalidNode(s.to_owned());
        let mut parts = s.split('/');
        let address = parts
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .ok_or_else(bad)?;
        let datacenter = parts.next().filter(|d| !d.is_empty()).ok_or_else(bad)?;
        let rack = parts.next().filter(|r| !r.is_empty()).ok_or_else(bad)?;
        let broadcast = parts
            .next()
            .map(|b| b.parse::<IpAddr>().map_err(|_| bad()))
            .transpose()?;
        if parts.next().is_some() {
            return Err(bad());
        }
        let mut spec = NodeSpec::new(address, datacenter, rack);
        spec.broadcast_address = broadcast;
        Ok(spec)
    }
}

/// Access key and secret for SigV4 enforcement.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl FromStr for Credentials {
    type Err = SimError;

    /// `ACCESS_KEY_ID:SECRET`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(Credentials {
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
            }),
            _ => Err(SimError::InvalidArgument(
                "credentials must be ACCESS_KEY_ID:SECRET".into(),
            )),
        }
    }
}

/// How to start a [`Sim`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: Vec<NodeSpec>,
    /// The port every node listens on; 0 picks one that is free on every node address.
    pub port: u16,
    /// Where the control API listens (port 0 picks a free one).
    pub control: SocketAddr,
    /// Verify AWS SigV4 on DynamoDB requests, like Scylla's `alternator_enforce_authorization`.
    pub enforce_auth: Option<Credentials>,
    /// Relay DynamoDB requests, exactly as sent, to this DynamoDB implementation
    /// (`http://127.0.0.1:8000`, no path) instead of the built-in engine, and its answers
    /// exactly as it sent them.
    pub backend: Option<String>,
    /// Entries kept in the key log (oldest dropped first).
    pub keylog_capacity: usize,
    /// Token ownership: layout, tablets, vnodes, replication factor, seed.
    pub ring: RingConfig,
    /// A coordinator that is not a replica of a single-key request's key waits this long
    /// before answering (a stand-in for the extra hop; for benchmarks only).
    pub forward_delay: Duration,
    /// At most this many rows per page of an internal-table Scan or Query (default: only the
    /// ~1 MB page cap), so that readers' pagination can be tested.
    pub internal_page_rows: Option<usize>,
    /// Serve HTTPS instead of HTTP on the nodes' port (Alternator's `alternator_https_port`),
    /// with a certificate per node from a test CA made at start ([`Sim::ca_pem`]).
    pub tls: bool,
}

impl SimConfig {
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        SimConfig {
            nodes,
            ..SimConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: Vec::new(),
            port: 0,
            control: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            enforce_auth: None,
            backend: None,
            keylog_capacity: 100_000,
            ring: RingConfig::default(),
            forward_delay: Duration::ZERO,
            internal_page_rows: None,
            tls: false,
        }
    }
}

/// Why the sim could not start or carry out a control action.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("a sim needs at least one node")]
    NoNodes,
    #[error("invalid node {0:?}: expected ADDRESS/DATACENTER/RACK[/BROADCAST], e.g. 127.0.0.2/dc1/rack2")]
    InvalidNode(String),
    #[error("node {0} is defined twice")]
    DuplicateNode(IpAddr),
    #[error("no node with address {0}")]
    UnknownNode(IpAddr),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("found no port free on every node address after {0} attempts")]
    NoCommonPort(u32),
    #[error("invalid backend URL {0:?}: expected http://HOST:PORT")]
    InvalidBackend(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("no table named {0:?}")]
    UnknownTable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

impl From<ring::RingError> for SimError {
    fn from(e: ring::RingError) -> Self {
        match e {
            ring::RingError::UnknownTable(t) => SimError::UnknownTable(t),
            ring::RingError::Invalid(m) => SimError::InvalidArgument(m),
            ring::RingError::Conflict(m) => SimError::Conflict(m),
        }
    }
}

/// A running simulated cluster. Dropping it stops every listener; [`Sim::shutdown`] also waits
/// until they are closed.
#[derive(Debug)]
pub struct Sim {
    cluster: Arc<cluster::Cluster>,
    control: control::ControlServer,
}

impl Sim {
    /// Bind every node (and the control API) and start serving.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let cluster = cluster::Cluster::start(&config).await?;
        let control = match control::ControlServer::start(config.control, cluster.clone()).await {
            Ok(c) => c,
            Err(e) => {
                cluster.shutdown().await;
                return Err(e);
            }
        };
        tracing::info!(port = cluster.port(), control = %control.addr(), "alternator-sim started");
        Ok(Sim { cluster, control })
    }

    /// The port all nodes share.
    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// `https` when the nodes serve TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.cluster.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// With TLS: the certificate (PEM) of the CA that signed every node's certificate.
    pub fn ca_pem(&self) -> Option<String> {
        self.cluster.tls.as_ref().map(|ca| ca.pem())
    }

    /// Where the control API listens.
    pub fn control_addr(&self) -> SocketAddr {
        self.control.addr()
    }

    /// Addresses of every node (including stopped ones), in definition order.
    pub fn node_addresses(&self) -> Vec<IpAddr> {
        self.cluster
            .nodes()
            .iter()
            .map(|n| n.spec.address)
            .collect()
    }

    /// `address:port` of a node.
    pub fn endpoint(&self, address: IpAddr) -> SocketAddr {
        SocketAddr::new(address, self.port())
    }

    /// Every node with its fault state.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.cluster.statuses()
    }

    /// The JSON line the binary prints on start.
    pub fn startup_line(&self) -> String {
        serde_json::json!({
            "port": self.port(),
            "scheme": self.scheme(),
            "control": self.control_addr().to_string(),
            "nodes": self.cluster.nodes().iter().map(|n| serde_json::json!({
                "address": n.spec.address.to_string(),
                "datacenter": n.spec.datacenter,
                "rack": n.spec.rack,
                "broadcast_address": n.spec.broadcast().to_string(),
                "host_id": self.cluster.host_id(n.spec.address),
            })).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// Close the node's listener and every open connection (reset): connections are refused
    /// and the node leaves `/localnodes`.
    pub async fn stop_node(&self, address: IpAddr) -> Result<(), SimError> {
        self.cluster.stop_node(address).await
    }

    /// Listen again and clear every fault.
    pub async fn start_node(&self, address: IpAddr) -> Result<(), SimError> {
        self.cluster.start_node(address).await
    }

    /// Accept connections but answer nothing until `start_node`; not listed.
    pub async fn hang_node(&self, address: IpAddr) -> Result<(), SimError> {
        self.cluster.hang_node(address).await
    }

    /// Delay every answer of the node by `latency` (zero clears it).
    pub async fn set_latency(&self, address: IpAddr, latency: Duration) -> Result<(), SimError> {
        self.cluster.set_latency(address, latency)
    }

    /// Answer `fraction` (0..=1) of the node's DynamoDB requests with HTTP `status` (500 →
    /// InternalServerError, 503 → ServiceUnavailable). A fraction of 0 clears it.
    pub async fn set_failure(
        &self,
        address: IpAddr,
        fraction: f64,
        status: u16,
    ) -> Result<(), SimError> {
        self.cluster.set_failure(address, fraction, status)
    }

    /// Close the node's port but keep it listed in `/localnodes`, as Scylla does right after a
    /// node joins. With `ready_after`, the port opens by itself after that delay.
    pub async fn set_listed_not_ready(
        &self,
        address: IpAddr,
        ready_after: Option<Duration>,
    ) -> Result<(), SimError> {
        self.cluster
            .set_listed_not_ready(address, ready_after)
            .await
    }

    /// Leave `/localnodes` but keep serving in-flight and new connections.
    pub async fn decommission(&self, address: IpAddr) -> Result<(), SimError> {
        self.cluster.decommission(address)
    }

    /// Add a node at runtime (on the sim's port).
    pub async fn add_node(&self, spec: NodeSpec) -> Result<(), SimError> {
        self.cluster.add_node(spec).await
    }

    /// Leave `/localnodes` and stop like [`Sim::stop_node`], and leave the token ring
    /// (Scylla's `removenode`): the node's tablet replicas move to other nodes.
    pub async fn remove_node(&self, address: IpAddr) -> Result<(), SimError> {
        self.cluster.remove_node(address).await
    }

    /// Who owns what of a table.
    pub fn table_ring(&self, table: &str) -> Result<TableRing, SimError> {
        self.cluster.table_ring(table)
    }

    /// Move tablet `index` of `table` from node `from` to node `to`: at once (`finish`), or
    /// left in the `write_both_read_old` stage until [`Sim::finish_migration`].
    pub fn move_tablet(
        &self,
        table: &str,
        index: usize,
        from: IpAddr,
        to: IpAddr,
        finish: bool,
    ) -> Result<TableRing, SimError> {
        self.cluster.move_tablet(table, index, from, to, finish)
    }

    /// Complete a migration left in progress by [`Sim::move_tablet`].
    pub fn finish_migration(&self, table: &str, index: usize) -> Result<TableRing, SimError> {
        self.cluster.finish_migration(table, index)
    }

    /// Double a tablets table's tablet count (each half keeps the tablet's replicas).
    pub fn split_tablets(&self, table: &str) -> Result<TableRing, SimError> {
        self.cluster.split_tablets(table)
    }

    /// A node's host id (stable for its address and the ring seed).
    pub fn host_id(&self, address: IpAddr) -> String {
        self.cluster.host_id(address)
    }

    /// Change the forward delay of non-replica coordinators.
    pub fn set_forward_delay(&self, delay: Duration) {
        self.cluster.set_forward_delay(delay);
    }

    /// Change the forced page size of internal-table reads (`None`: only the ~1 MB cap).
    pub fn set_internal_page_rows(&self, rows: Option<usize>) -> Result<(), SimError> {
        self.cluster.set_internal_page_rows(rows)
    }

    /// Request counters of every node.
    pub fn counters(&self) -> Counters {
        self.cluster.counters()
    }

    /// The key log, oldest first.
    pub fn keylog(&self) -> Vec<KeyLogEntry> {
        self.cluster.keylog.entries(None)
    }

    /// Key log entries with `seq >= since`.
    pub fn keylog_since(&self, since: u64) -> Vec<KeyLogEntry> {
        self.cluster.keylog.entries(Some(since))
    }

    /// Zero the counters and clear the key log.
    pub fn reset(&self) {
        self.cluster.reset();
    }

    /// Stop every node and the control API and wait until their sockets are closed.
    pub async fn shutdown(self) {
        self.control.shutdown().await;
        self.cluster.shutdown().await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.control.abort();
        self.cluster.abort();
    }
}
