//! What the agent's tasks share: the published snapshot and ring, the metrics, and the traffic
//! reports that pick the cadence.
//!
//! Node discovery writes the snapshot, ring discovery the ring; the API and DNS read them. No
//! task owns this module and it depends on none of them, so each task depends on it alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alternator_routing::ring::TableOwnership;
use alternator_routing::snapshot::NodeSnapshot;
use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// One published snapshot with its encodings, built once per content change.
#[derive(Debug)]
pub struct PublishedSnapshot {
    /// The snapshot.
    pub snapshot: NodeSnapshot,
    /// Its format-1 JSON.
    pub json: Bytes,
    /// `"<version>"`.
    pub etag: String,
    /// The REST EDS `DiscoveryResponse` for the configured cluster.
    pub eds: Bytes,
}

/// The token ownership ring discovery publishes: every table whose ring was read and accepted.
/// Node discovery attaches it to each snapshot it builds, since the ring's replica indices
/// point into the snapshot's node list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRing {
    /// Increases whenever any table's ownership changes; starts at the wall clock in
    /// milliseconds, so it also increases across restarts.
    pub version: u64,
    /// By table name.
    pub tables: Vec<TableOwnership>,
}

/// State shared by node discovery, ring discovery, the API and DNS.
#[derive(Debug)]
pub struct AgentState {
    /// The current snapshot; `None` until the first successful discovery.
    pub snapshot: watch::Sender<Option<Arc<PublishedSnapshot>>>,
    /// Token ownership from ring discovery; `None` until its first accepted ring (and always
    /// with ring discovery off).
    pub published_ring: watch::Sender<Option<Arc<PublishedRing>>>,
    /// Counters and gauges of every subsystem.
    pub metrics: Metrics,
    /// EDS cluster name.
    pub cluster_name: String,
    idle_after: Duration,
    last_traffic: Mutex<Option<Instant>>,
    traffic_woke: Notify,
}

impl AgentState {
    /// Nothing published yet; traffic older than `idle_after` no longer counts as active.
    pub fn new(cluster_name: String, idle_after: Duration) -> Self {
        AgentState {
            snapshot: watch::channel(None).0,
            published_ring: watch::channel(None).0,
            metrics: Metrics::default(),
            cluster_name,
            idle_after,
            last_traffic: Mutex::new(None),
            traffic_woke: Notify::new(),
        }
    }

    /// A filter saw DynamoDB traffic: keep (or put) the agent on the active cadence.
    pub fn report_traffic(&self, now: Instant) {
        let was_active = self.is_active(now);
        if let Ok(mut last) = self.last_traffic.lock() {
            *last = Some(now);
        }
        if !was_active {
            self.traffic_woke.notify_one();
        }
    }

    /// Whether traffic was reported within the idle window.
    pub fn is_active(&self, now: Instant) -> bool {
        let last = self.last_traffic.lock().ok().and_then(|l| *l);
        last.is_some_and(|t| now.saturating_duration_since(t) < self.idle_after)
    }

    /// Resolves when traffic is reported after an idle spell.
    pub async fn traffic_resumed(&self) {
        self.traffic_woke.notified().await;
    }

    /// The current snapshot, if any.
    pub fn current(&self) -> Option<Arc<PublishedSnapshot>> {
        self.snapshot.borrow().clone()
    }
}

/// Resolves once `stop` turns true (or its sender is gone). Unlike `wait_for`, holds no borrow
/// of the channel afterwards, so it can sit in a `select!` whose handlers await.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Wall-clock Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
