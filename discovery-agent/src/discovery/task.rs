//! The node discovery task: refreshes on the active/idle cadence (backing off while nothing
//! answers), probes unvetted nodes, and publishes a snapshot whenever the content changes,
//! with the latest ring attached.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use alternator_routing::endpoint::Scheme;
use alternator_routing::health::HealthThresholds;
use alternator_routing::snapshot::{HealthState, NodeSnapshot};
use bytes::Bytes;
use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::{
    ask_order, backoff_delay, refresh, DiscoveryPlan, RefreshReport, ScopeMemory, ScopeOutcome,
};
use crate::config::Config;
use crate::eds;
use crate::metrics::RefreshOutcome;
use crate::state::{stopped, unix_ms, AgentState, PublishedSnapshot};
use crate::topology::Topology;
use crate::transport::Transport;

/// The task that keeps the node list: one per agent.
#[derive(Debug)]
pub struct NodeDiscovery<T> {
    transport: Arc<T>,
    state: Arc<AgentState>,
    plan: DiscoveryPlan,
    seeds: Vec<String>,
    scheme: Scheme,
    port: u16,
    topology: Topology,
    memory: ScopeMemory,
    rotation: usize,
    failures: u32,
    active_interval: Duration,
    idle_interval: Duration,
    max_backoff: Duration,
    request_timeout: Duration,
    probe_timeout: Duration,
    probe_permits: Arc<Semaphore>,
    probes: JoinSet<(IpAddr, bool)>,
    last_refresh: Option<Instant>,
    ring_discovery_on: bool,
}

impl<T: Transport> NodeDiscovery<T> {
    /// A task for `config` asking the scopes of `plan` through `transport`.
    pub fn new(
        config: &Config,
        plan: DiscoveryPlan,
        transport: Arc<T>,
        state: Arc<AgentState>,
    ) -> Self {
        NodeDiscovery {
            transport,
            state,
            plan,
            seeds: config.seeds.clone(),
            scheme: config.scheme,
            port: config.port,
            topology: Topology::new(HealthThresholds::default(), config.probe_period),
            memory: ScopeMemory::default(),
            // A random start spreads a fleet of agents over the nodes from the first refresh.
            rotation: rand::thread_rng().gen(),
            failures: 0,
            active_interval: config.active_interval,
            idle_interval: config.idle_interval,
            max_backoff: config.max_backoff,
            request_timeout: config.request_timeout,
            probe_timeout: config.probe_timeout,
            probe_permits: Arc::new(Semaphore::new(config.probe_concurrency)),
            probes: JoinSet::new(),
            last_refresh: None,
            ring_discovery_on: config.ring_discovery.is_some(),
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut next_refresh = Instant::now();
        let mut stop_during_refresh = stop.clone();
        let state = self.state.clone();
        let mut ring_updates = state.published_ring.subscribe();
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            let probe_due = self.topology.next_probe_due().unwrap_or(far);
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                Some(joined) = self.probes.join_next(), if !self.probes.is_empty() => {
                    if let Ok((address, ok)) = joined {
                        self.apply_probe(address, ok);
                    }
                }
                _ = sleep_until(next_refresh) => {
                    let started = Instant::now();
                    let report = tokio::select! {
                        report = self.refresh_once() => report,
                        _ = stopped(&mut stop_during_refresh) => break,
                    };
                    self.apply_refresh(report);
                    self.last_refresh = Some(started);
                    next_refresh = Instant::now() + self.next_delay();
                }
                _ = sleep_until(probe_due) => self.launch_probes(),
                changed = ring_updates.changed(), if self.ring_discovery_on => {
                    // Only a snapshot that exists gets the ring; the first one carries it from
                    // its start.
                    if changed.is_ok() && self.state.current().is_some() {
                        self.publish();
                    }
                }
                _ = state.traffic_resumed() => {
                    // Traffic after an idle spell: do not sit out the rest of the idle interval.
                    let due = self.last_refresh.map_or_else(Instant::now, |t| t + self.active_interval);
                    if self.failures == 0 && due < next_refresh {
                        next_refresh = due;
                    }
                }
            }
        }
        self.probes.abort_all();
    }

    fn next_delay(&self) -> Duration {
        let now = Instant::now();
        let active = self.state.is_active(now);
        self.state.metrics.discovery.set_active_cadence(active);
        if self.failures > 0 {
            let jitter: f64 = rand::thread_rng().gen();
            return backoff_delay(
                self.failures,
                self.active_interval,
                self.max_backoff,
                jitter,
            );
        }
        if active {
            self.active_interval
        } else {
            self.idle_interval
        }
    }

    async fn refresh_once(&mut self) -> RefreshReport {
        let contacts = self.topology.contacts();
        let order = ask_order(&contacts, &self.seeds, self.rotation);
        self.rotation = self.rotation.wrapping_add(1);
        refresh(
            &*self.transport,
            &self.plan,
            &order,
            self.request_timeout,
            &mut self.memory,
        )
        .await
    }

    fn apply_refresh(&mut self, report: RefreshReport) {
        let now = Instant::now();
        let metrics = &self.state.metrics.discovery;
        for (host, query, error) in &report.failures {
            debug!(%host, %query, %error, "discovery request failed");
        }
        let failed = u64::try_from(report.failures.len()).unwrap_or(u64::MAX);
        metrics.count_requests(u64::from(report.requests).saturating_sub(failed), failed);
        for (scope, outcome) in &report.outcomes {
            let label = match outcome {
                ScopeOutcome::Answered {
                    addresses,
                    skipped,
                    answered_by,
                } => {
                    if *skipped > 0 {
                        debug!(%scope, %answered_by, skipped, "entries without an address (host ids) skipped");
                    }
                    if addresses.is_empty() {
                        RefreshOutcome::Empty
                    } else {
                        RefreshOutcome::Success
                    }
                }
                ScopeOutcome::Failed => RefreshOutcome::Failure,
                ScopeOutcome::NotNeeded => RefreshOutcome::Skipped,
            };
            metrics.count_scope(scope, label);
        }
        let ok = report.any_answer();
        metrics.count_round(ok, unix_ms());
        if !ok {
            self.failures = self.failures.saturating_add(1);
            let detail = report
                .failures
                .last()
                .map(|(h, q, e)| format!("{h}{q}: {e}"))
                .unwrap_or_default();
            if self.failures.is_power_of_two() {
                warn!(
                    consecutive_failures = self.failures,
                    last_error = %detail,
                    "no node answered any discovery query; keeping the last snapshot"
                );
            }
            return;
        }
        if self.failures > 0 {
            info!(
                after_failures = self.failures,
                "discovery reaches the cluster again"
            );
        }
        self.failures = 0;
        let members = self.memory.members(&self.plan);
        let change = self.topology.apply_members(&members, now);
        for address in &change.added {
            info!(%address, "node joined; quarantined until GET / answers 200");
        }
        for address in &change.removed {
            info!(%address, "node left the /localnodes answers; removed");
        }
        for address in &change.moved {
            debug!(%address, "node location changed");
        }
        for host in &report.answered {
            if let Ok(address) = host.parse::<IpAddr>() {
                if self.topology.record_contact_success(address, now) {
                    info!(%address, "node answered discovery; active");
                }
            }
        }
        self.publish();
        self.launch_probes();
    }

    fn apply_probe(&mut self, address: IpAddr, ok: bool) {
        self.state.metrics.discovery.count_probe(ok);
        let now = Instant::now();
        let name = |h: Option<HealthState>| h.map_or("gone", HealthState::as_str);
        let before = name(self.topology.health(address));
        if self.topology.record_probe(address, ok, now) {
            let after = name(self.topology.health(address));
            info!(%address, from = before, to = after, "node health changed by probe");
            self.publish();
        } else if !ok {
            debug!(%address, "probe failed; node stays unvetted");
        }
    }

    fn launch_probes(&mut self) {
        let now = Instant::now();
        for address in self.topology.take_due_probes(now, usize::MAX) {
            let transport = self.transport.clone();
            let permits = self.probe_permits.clone();
            let timeout = self.probe_timeout;
            self.probes.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return (address, false);
                };
                let result = transport.get(&address.to_string(), "/", timeout).await;
                let ok = match &result {
                    Ok(answer) => answer.status == 200,
                    Err(error) => {
                        debug!(%address, %error, "probe failed");
                        false
                    }
                };
                (address, ok)
            });
        }
    }

    fn publish(&self) {
        let nodes = self.topology.nodes();
        let now_ms = unix_ms();
        let current = self.state.current();
        let mut candidate = NodeSnapshot::new(0, now_ms, self.scheme, self.port, nodes);
        // Ring indices point into this node list: attach the ring to every rebuilt snapshot.
        let ring = self.state.published_ring.borrow().clone();
        if let Some(ring) = ring.filter(|r| !r.tables.is_empty()) {
            candidate = candidate.with_ring(ring.version, &ring.tables);
        }
        let version = match &current {
            Some(published) if published.snapshot.content_equal(&candidate) => return,
            Some(published) => published.snapshot.version().saturating_add(1),
            // Starting from the wall clock keeps versions increasing across agent restarts,
            // so a filter that remembers an old version never mistakes new content for old.
            None => now_ms.max(1),
        };
        let snapshot = candidate.with_version(version);
        let json = Bytes::from(snapshot.to_json());
        let eds =
            Bytes::from(eds::discovery_response(&snapshot, &self.state.cluster_name).to_string());
        let published = PublishedSnapshot {
            etag: format!("\"{version}\""),
            snapshot,
            json,
            eds,
        };
        debug!(
            version,
            nodes = published.snapshot.nodes().len(),
            ring = published.snapshot.ring().map(|r| r.version()),
            "snapshot published"
        );
        self.state.snapshot.send_replace(Some(Arc::new(published)));
    }
}
