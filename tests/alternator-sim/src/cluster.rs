//! Nodes, their fault states and listeners, and the state every node shares.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::backend::Backend;
use crate::dynamo::Store;
use crate::observe::{Counters, KeyLog, NodeCounters};
use crate::ring::{self, RingState, TableRing};
use crate::tls::TestCa;
use crate::{Credentials, NodeSpec, SimConfig, SimError};

/// Injected failure: answer `fraction` of DynamoDB requests with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FailureSpec {
    pub fraction: f64,
    pub status: u16,
}

/// Faults of one node. Copied on every request, so it stays small and `Copy`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    pub hung: bool,
    pub latency: Duration,
    pub fail: Option<FailureSpec>,
    pub decommissioned: bool,
    pub listed_not_ready: bool,
}

/// The state a node is in, as `GET /nodes` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Running,
    Stopped,
    Hung,
    NotReady,
    Decommissioned,
}

/// A node and its fault state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub address: IpAddr,
    pub datacenter: String,
    pub rack: String,
    pub state: NodeState,
    /// The port accepts connections.
    pub listening: bool,
    /// The node appears in `/localnodes`.
    pub listed: bool,
    pub latency_ms: u64,
    pub fail: Option<FailureSpec>,
    /// The address announced to other nodes (`system.peers`' `peer`, `system.token_ring`'s
    /// `endpoint`); `address` is the rpc address.
    #[serde(default)]
    pub broadcast_address: Option<IpAddr>,
    #[serde(default)]
    pub host_id: String,
    /// The node owns tokens (it has not been decommissioned or removed).
    #[serde(default)]
    pub in_ring: bool,
}

#[derive(Debug)]
struct Listener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub spec: NodeSpec,
    faults: watch::Sender<Faults>,
    listener: tokio::sync::Mutex<Option<Listener>>,
    listening: AtomicBool,
    pub counters: NodeCounters,
    ready_timer: Mutex<Option<JoinHandle<()>>>,
    /// With TLS: the node's certificate and key, kept across stops and starts.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Node {
    fn new(spec: NodeSpec, ca: Option<&TestCa>) -> Result<Arc<Node>, SimError> {
        let tls = ca.map(|ca| ca.server_config(spec.address)).transpose()?;
        Ok(Arc::new(Node {
            spec,
            tls,
            faults: watch::Sender::new(Faults::default()),
            listener: tokio::sync::Mutex::new(None),
            listening: AtomicBool::new(false),
            counters: NodeCounters::new(),
            ready_timer: Mutex::new(None),
        }))
    }

    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// Wait until the node is no longer hung.
    pub async fn wait_unhung(&self) {
        let mut rx = self.faults.subscribe();
        let _ = rx.wait_for(|f| !f.hung).await;
    }

    fn listed(&self) -> bool {
        let f = self.faults();
        f.listed_not_ready
            || (self.listening.load(Ordering::Acquire) && !f.hung && !f.decommissioned)
    }

    fn status(&self, host_id: String, in_ring: bool) -> NodeStatus {
        let f = self.faults();
        let listening = self.listening.load(Ordering::Acquire);
        let state = if f.listed_not_ready {
            NodeState::NotReady
        } else if !listening {
            NodeState::Stopped
        } else if f.hung {
            NodeState::Hung
        } else if f.decommissioned {
            NodeState::Decommissioned
        } else {
            NodeState::Running
        };
        NodeStatus {
            address: self.spec.address,
            datacenter: self.spec.datacenter.clone(),
            rack: self.spec.rack.clone(),
            state,
            listening,
            listed: self.listed(),
            latency_ms: f.latency.as_millis() as u64,
            fail: f.fail,
            broadcast_address: Some(self.spec.broadcast()),
            host_id,
            in_ring,
        }
    }

    fn cancel_ready_timer(&self) {
        if let Some(t) = self
            .ready_timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Everything the nodes share.
#[derive(Debug)]
pub(crate) struct Cluster {
    port: u16,
    nodes: RwLock<Vec<Arc<Node>>>,
    pub store: Store,
    pub backend: Option<Backend>,
    pub auth: Option<Credentials>,
    pub keylog: KeyLog,
    request_ids: AtomicU64,
    /// Token ownership of every table.
    pub ring: RwLock<RingState>,
    forward_delay_ns: AtomicU64,
    /// Forced page size of internal-table reads; 0 = none.
    internal_page_rows: AtomicUsize,
    /// With TLS: the CA that signs the nodes' certificates.
    pub tls: Option<TestCa>,
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Bind every address on one port: the given one, or a free one found by retrying.
fn bind_all(addresses: &[IpAddr], port: u16) -> Result<(u16, Vec<TcpListener>), SimError> {
    const ATTEMPTS: u32 = 100;
    let Some((first, rest)) = addresses.split_first() else {
        return Err(SimError::NoNodes);
    };
    for _ in 0..ATTEMPTS {
        let first_addr = SocketAddr::new(*first, port);
        let l = bind(first_addr).map_err(|source| SimError::Bind {
            address: first_addr,
            source,
        })?;
        let chosen = l
            .local_addr()
            .map_err(|source| SimError::Bind {
                address: first_addr,
                source,
            })?
            .port();
        let mut listeners = vec![l];
        let mut failed = None;
        for a in rest {
            let addr = SocketAddr::new(*a, chosen);
            match bind(addr) {
                Ok(l) => listeners.push(l),
                Err(source) => {
                    failed = Some(SimError::Bind {
                        address: addr,
                        source,
                    });
                    break;
                }
            }
        }
        match failed {
            None => return Ok((chosen, listeners)),
            // A fixed port that is taken somewhere: nothing to retry.
            Some(e) if port != 0 => return Err(e),
            Some(_) => continue,
        }
    }
    Err(SimError::NoCommonPort(ATTEMPTS))
}

impl Cluster {
    pub async fn start(config: &SimConfig) -> Result<Arc<Cluster>, SimError> {
        if config.nodes.is_empty() {
            return Err(SimError::NoNodes);
        }
        for (i, n) in config.nodes.iter().enumerate() {
            if config.nodes[..i].iter().any(|m| m.address == n.address) {
                return Err(SimError::DuplicateNode(n.address));
            }
            if config.nodes[..i]
                .iter()
                .any(|m| m.broadcast() == n.broadcast())
            {
                return Err(SimError::InvalidArgument(format!(
                    "broadcast address {} is used by two nodes",
                    n.broadcast()
                )));
            }
        }
        config.ring.validate()?;
        if config.internal_page_rows == Some(0) {
            return Err(SimError::InvalidArgument(
                "internal page rows must be at least 1".into(),
            ));
        }
        let backend = config.backend.as_deref().map(Backend::new).transpose()?;
        let tls = config.tls.then(TestCa::generate).transpose()?;
        let nodes = config
            .nodes
            .iter()
            .map(|n| Node::new(n.clone(), tls.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        // Nodes that start listed-but-not-ready do not bind; the rest share one port.
        let ready: Vec<IpAddr> = config
            .nodes
            .iter()
            .filter(|n| !n.listed_not_ready)
            .map(|n| n.address)
            .collect();
        let (port, listeners) = if ready.is_empty() {
            // Pick the port on the first node's address without keeping it.
            let (p, _) = bind_all(
                &config.nodes[..1]
                    .iter()
                    .map(|n| n.address)
                    .collect::<Vec<_>>(),
                config.port,
            )?;
            (p, Vec::new())
        } else {
            bind_all(&ready, config.port)?
        };
        let cluster = Arc::new(Cluster {
            port,
            nodes: RwLock::new(nodes),
            store: Store::with_seed(config.ring.seed),
            backend,
            auth: config.enforce_auth.clone(),
            keylog: KeyLog::new(config.keylog_capacity),
            request_ids: AtomicU64::new(1),
            ring: RwLock::new(RingState::new(config.ring.clone())),
            forward_delay_ns: AtomicU64::new(config.forward_delay.as_nanos() as u64),
            internal_page_rows: AtomicUsize::new(config.internal_page_rows.unwrap_or(0)),
            tls,
        });
        {
            let mut ring = cluster.ring.write().unwrap_or_else(|p| p.into_inner());
            for n in &config.nodes {
                ring.add_member(n.address, n.broadcast(), &n.datacenter, &n.rack);
            }
        }
        let mut listeners = listeners.into_iter();
        for node in cluster.nodes() {
            if node.spec.listed_not_ready {
                let ready_after = node.spec.ready_after_ms.map(Duration::from_millis);
                cluster.mark_not_ready(&node, ready_after);
            } else if let Some(l) = listeners.next() {
                cluster.serve(&node, l).await;
            }
        }
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn node(&self, address: IpAddr) -> Result<Arc<Node>, SimError> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|n| n.spec.address == address)
            .cloned()
            .ok_or(SimError::UnknownNode(address))
    }

    fn ring_read(&self) -> std::sync::RwLockReadGuard<'_, RingState> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    fn ring_write(&self) -> std::sync::RwLockWriteGuard<'_, RingState> {
        self.ring.write().unwrap_or_else(|p| p.into_inner())
    }

    fn status_of(&self, node: &Node) -> NodeStatus {
        let in_ring = self.ring_read().is_member(node.spec.address);
        node.status(self.host_id(node.spec.address), in_ring)
    }

    pub fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes().iter().map(|n| self.status_of(n)).collect()
    }

    pub fn status(&self, address: IpAddr) -> Result<NodeStatus, SimError> {
        let node = self.node(address)?;
        Ok(self.status_of(&node))
    }

    pub fn host_id(&self, address: IpAddr) -> String {
        ring::host_id(self.ring_read().config.seed, address)
    }

    pub fn forward_delay(&self) -> Duration {
        Duration::from_nanos(self.forward_delay_ns.load(Ordering::Relaxed))
    }

    pub fn set_forward_delay(&self, delay: Duration) {
        self.forward_delay_ns
            .store(delay.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn internal_page_rows(&self) -> Option<usize> {
        match self.internal_page_rows.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    pub fn set_internal_page_rows(&self, rows: Option<usize>) -> Result<(), SimError> {
        if rows == Some(0) {
            return Err(SimError::InvalidArgument(
                "internal page rows must be at least 1 (null clears it)".into(),
            ));
        }
        self.internal_page_rows
            .store(rows.unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// Whether `node` is a replica of the hash key `key` of `table` (`None`: unknown table or
    /// a key without a token).
    pub fn is_replica(&self, table: &str, key: &serde_json::Value, node: IpAddr) -> Option<bool> {
        let token = ring::key_token(key)?;
        self.ring_read().is_replica(table, token, node)
    }

    pub fn table_ring(&self, table: &str) -> Result<TableRing, SimError> {
        Ok(self.ring_read().table_ring(table)?)
    }

    pub fn move_tablet(
        &self,
        table: &str,
        index: usize,
        from: IpAddr,
        to: IpAddr,
        finish: bool,
    ) -> Result<TableRing, SimError> {
        let mut ring = self.ring_write();
        ring.move_tablet(table, index, from, to, finish)?;
        tracing::info!(table, index, %from, %to, finish, "tablet replica moved");
        Ok(ring.table_ring(table)?)
    }

    pub fn finish_migration(&self, table: &str, index: usize) -> Result<TableRing, SimError> {
        let mut ring = self.ring_write();
        ring.finish_migration(table, index)?;
        Ok(ring.table_ring(table)?)
    }

    pub fn split_tablets(&self, table: &str) -> Result<TableRing, SimError> {
        let mut ring = self.ring_write();
        ring.split_tablets(table)?;
        tracing::info!(table, "tablets split");
        Ok(ring.table_ring(table)?)
    }

    /// Stop the node and take it out of the token ring (Scylla's `removenode`).
    pub async fn remove_node(&self, address: IpAddr) -> Result<(), SimError> {
        self.stop_node(address).await?;
        self.ring_write().remove_member(address);
        tracing::info!(%address, "node removed from the ring");
        Ok(())
    }

    pub fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Addresses `/localnodes` lists for a datacenter (and rack, if given).
    pub fn localnodes(&self, datacenter: &str, rack: Option<&str>) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|n| n.spec.datacenter == datacenter)
            .filter(|n| rack.is_none_or(|r| n.spec.rack == r))
            .filter(|n| n.listed())
            .map(|n| n.spec.address)
            .collect();
        out.sort();
        out
    }

    async fn serve(self: &Arc<Self>, node: &Arc<Node>, listener: TcpListener) {
        let mut slot = node.listener.lock().await;
        if slot.is_some() {
            return;
        }
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, self.clone(), node.clone(), stop_rx));
        *slot = Some(Listener { stop, task });
        node.listening.store(true, Ordering::Release);
    }

    /// Open the node's port if it is closed.
    async fn open(self: &Arc<Self>, node: &Arc<Node>) -> Result<(), SimError> {
        if node.listener.lock().await.is_some() {
            return Ok(());
        }
        let address = SocketAddr::new(node.spec.address, self.port);
        // The port was ours a moment ago; retry briefly in case something raced us for it.
        let mut attempt = 0;
        let listener = loop {
            match bind(address) {
                Ok(l) => break l,
                Err(e) if attempt < 20 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(source) => return Err(SimError::Bind { address, source }),
            }
        };
        self.serve(node, listener).await;
        Ok(())
    }

    /// Close the node's port and every connection, and wait until they are closed.
    async fn close(&self, node: &Node) {
        let listener = node.listener.lock().await.take();
        node.listening.store(false, Ordering::Release);
        if let Some(l) = listener {
            let _ = l.stop.send(());
            let _ = l.task.await;
        }
    }

    pub async fn stop_node(&self, address: IpAddr) -> Result<(), SimError> {
        let node = self.node(address)?;
        node.cancel_ready_timer();
        // Close before clearing `hung`, so requests a hung node holds are reset, not answered.
        self.close(&node).await;
        node.faults.send_modify(|f| {
            f.hung = false;
            f.listed_not_ready = false;
        });
        tracing::info!(%address, "node stopped");
        Ok(())
    }

    pub async fn start_node(self: &Arc<Self>, address: IpAddr) -> Result<(), SimError> {
        let node = self.node(address)?;
        node.cancel_ready_timer();
        self.open(&node).await?;
        node.faults.send_replace(Faults::default());
        tracing::info!(%address, "node started");
        Ok(())
    }

    pub async fn hang_node(self: &Arc<Self>, address: IpAddr) -> Result<(), SimError> {
        let node = self.node(address)?;
        node.cancel_ready_timer();
        node.faults.send_modify(|f| {
            f.hung = true;
            f.listed_not_ready = false;
        });
        self.open(&node).await?;
        tracing::info!(%address, "node hung");
        Ok(())
    }

    pub fn set_latency(&self, address: IpAddr, latency: Duration) -> Result<(), SimError> {
        let node = self.node(address)?;
        node.faults.send_modify(|f| f.latency = latency);
        Ok(())
    }

    pub fn set_failure(&self, address: IpAddr, fraction: f64, status: u16) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(SimError::InvalidArgument(format!(
                "fraction must be between 0 and 1, got {fraction}"
            )));
        }
        if !(400..=599).contains(&status) {
            return Err(SimError::InvalidArgument(format!(
                "status must be an HTTP error status (400..=599), got {status}"
            )));
        }
        let node = self.node(address)?;
        node.faults.send_modify(|f| {
            f.fail = (fraction > 0.0).then_some(FailureSpec { fraction, status });
        });
        Ok(())
    }

    pub async fn set_listed_not_ready(
        self: &Arc<Self>,
        address: IpAddr,
        ready_after: Option<Duration>,
    ) -> Result<(), SimError> {
        let node = self.node(address)?;
        self.close(&node).await;
        self.mark_not_ready(&node, ready_after);
        tracing::info!(%address, "node listed but not ready");
        Ok(())
    }

    fn mark_not_ready(self: &Arc<Self>, node: &Arc<Node>, ready_after: Option<Duration>) {
        node.cancel_ready_timer();
        node.faults.send_modify(|f| {
            f.hung = false;
            f.listed_not_ready = true;
        });
        if let Some(delay) = ready_after {
            let cluster = Arc::downgrade(self);
            let address = node.spec.address;
            let timer = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(c) = cluster.upgrade() {
                    if let Ok(node) = c.node(address) {
                        // Detach first so start_node does not abort this very task.
                        node.ready_timer
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take();
                    }
                    if let Err(e) = c.start_node(address).await {
                        tracing::warn!(%address, error = %e, "node could not become ready");
                    }
                }
            });
            *node.ready_timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
        }
    }

    pub fn decommission(&self, address: IpAddr) -> Result<(), SimError> {
        let node = self.node(address)?;
        node.faults.send_modify(|f| {
            f.decommissioned = true;
            f.listed_not_ready = false;
        });
        self.ring_write().remove_member(address);
        tracing::info!(%address, "node decommissioned");
        Ok(())
    }

    pub async fn add_node(self: &Arc<Self>, spec: NodeSpec) -> Result<(), SimError> {
        let node = {
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            if nodes.iter().any(|n| n.spec.address == spec.address) {
                return Err(SimError::DuplicateNode(spec.address));
            }
            if nodes.iter().any(|n| n.spec.broadcast() == spec.broadcast()) {
                return Err(SimError::Conflict(format!(
                    "broadcast address {} is already used",
                    spec.broadcast()
                )));
            }
            let node = Node::new(spec, self.tls.as_ref())?;
            nodes.push(node.clone());
            node
        };
        let result = if node.spec.listed_not_ready {
            self.mark_not_ready(&node, node.spec.ready_after_ms.map(Duration::from_millis));
            Ok(())
        } else {
            self.open(&node).await
        };
        if result.is_err() {
            self.nodes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|n| !Arc::ptr_eq(n, &node));
        } else {
            let s = &node.spec;
            self.ring_write()
                .add_member(s.address, s.broadcast(), &s.datacenter, &s.rack);
            tracing::info!(address = %node.spec.address, "node added");
        }
        result
    }

    pub fn counters(&self) -> Counters {
        Counters {
            nodes: self
                .nodes()
                .iter()
                .map(|n| (n.spec.address, n.counters.snapshot()))
                .collect(),
        }
    }

    pub fn reset(&self) {
        for n in self.nodes() {
            n.counters.reset();
        }
        self.keylog.clear();
    }

    pub async fn shutdown(&self) {
        for n in self.nodes() {
            n.cancel_ready_timer();
            self.close(&n).await;
        }
    }

    /// Best-effort stop without waiting (for `Drop`).
    pub fn abort(&self) {
        for n in self.nodes() {
            n.cancel_ready_timer();
            if let Ok(mut slot) = n.listener.try_lock() {
                if let Some(l) = slot.take() {
                    let _ = l.stop.send(());
                }
            }
            n.listening.store(false, Ordering::Release);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    node: Arc<Node>,
    mut stop: oneshot::Receiver<()>,
) {
    let (kill, _) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(crate::http::serve_connection(
                        stream,
                        node.tls.clone(),
                        cluster.clone(),
                        node.clone(),
                        kill.subscribe(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(address = %node.spec.address, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = kill.send(true);
    while connections.join_next().await.is_some() {}
}
