//! The running agent: shared published state, the discovery/probe loop, and [`run`].

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alternator_routing::endpoint::Scheme;
use alternator_routing::health::HealthThresholds;
use alternator_routing::scope::{Scope, ScopeError, ScopePolicy};
use alternator_routing::snapshot::{HealthState, NodeSnapshot};
use bytes::Bytes;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::config::{AgentConfig, ConfigError};
use crate::discovery::{
    ask_order, backoff_delay, refresh, DiscoveryPlan, RefreshReport, ScopeMemory, ScopeOutcome,
};
use crate::dns::{DnsConfig, DnsSockets, Zone};
use crate::eds;
use crate::metrics::{Metrics, RefreshOutcome};
use crate::ring::{RingDiscovery, RingView};
use crate::topology::Topology;
use crate::transport::{HttpTransport, TlsSetupError, Transport};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS toward Alternator could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The scope configuration is invalid.
    #[error("invalid value for --rack/--datacenter: {0}")]
    Scope(#[from] ScopeError),
    /// The DNS address could not be bound.
    #[error("cannot listen for DNS on {address} (--dns-listen): {source}")]
    DnsListen {
        /// The configured address.
        address: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// One published snapshot with its encodings, built once per content change.
#[derive(Debug)]
pub struct Published {
    /// The snapshot.
    pub snapshot: NodeSnapshot,
    /// Its format-1 JSON.
    pub json: Bytes,
    /// `"<version>"`.
    pub etag: String,
    /// The REST EDS `DiscoveryResponse` for the configured cluster.
    pub eds: Bytes,
}

/// State shared by the discovery loop and the API.
#[derive(Debug)]
pub struct Shared {
    /// The current snapshot; `None` until the first successful discovery.
    pub published: watch::Sender<Option<Arc<Published>>>,
    /// Token ownership from ring discovery; `None` until its first accepted ring (and always
    /// with ring discovery off).
    pub ring: watch::Sender<Option<Arc<RingView>>>,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// EDS cluster name.
    pub cluster_name: String,
    idle_after: Duration,
    last_traffic: Mutex<Option<Instant>>,
    traffic_woke: Notify,
}

impl Shared {
    fn new(config: &AgentConfig) -> Self {
        Shared {
            published: watch::channel(None).0,
            ring: watch::channel(None).0,
            metrics: Metrics::default(),
            cluster_name: config.cluster_name.clone(),
            idle_after: config.idle_after,
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

    /// The current snapshot, if any.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.published.borrow().clone()
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

/// Builds the routing scope policy the configuration names.
pub fn scope_policy(config: &AgentConfig) -> Result<ScopePolicy, ScopeError> {
    Ok(ScopePolicy {
        scope: Scope::from_names(config.datacenter.as_deref(), config.rack.as_deref())?,
        mode: config.scope_mode.into(),
    })
}

/// Runs the agent until `shutdown` completes: discovery toward Alternator with the real HTTP(S)
/// transport, and the API on `listener`. Returns once in-flight API requests finished (at most
/// a few seconds after `shutdown`).
pub async fn run<F>(
    config: AgentConfig,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), AgentError>
where
    F: Future<Output = ()> + Send,
{
    config.validate()?;
    let transport = http_transport(&config)?;
    run_with_transport(config, listener, transport, shutdown).await
}

/// The real HTTP(S) transport toward the Alternator nodes of `config`.
fn http_transport(config: &AgentConfig) -> Result<HttpTransport, AgentError> {
    Ok(HttpTransport::new(
        config.scheme,
        config.port,
        config.tls.as_ref(),
        config.connect_timeout,
    )?)
}

/// [`run`] with any [`Transport`] (tests use an in-memory one). Binds the DNS listener when the
/// configuration has one.
pub async fn run_with_transport<T, F>(
    config: AgentConfig,
    listener: TcpListener,
    transport: T,
    shutdown: F,
) -> Result<(), AgentError>
where
    T: Transport,
    F: Future<Output = ()> + Send,
{
    config.validate()?;
    let dns =
        match &config.dns {
            Some(dns) => Some(DnsSockets::bind(dns.listen).await.map_err(|source| {
                AgentError::DnsListen {
                    address: dns.listen,
                    source,
                }
            })?),
            None => None,
        };
    run_with_sockets(config, listener, dns, transport, shutdown).await
}

/// [`run`] with DNS on sockets the caller bound (tests bind port 0 and read it back). The
/// DNS settings come from `config.dns`, or the defaults when it is `None`.
pub async fn run_with_dns<F>(
    config: AgentConfig,
    listener: TcpListener,
    dns: DnsSockets,
    shutdown: F,
) -> Result<(), AgentError>
where
    F: Future<Output = ()> + Send,
{
    config.validate()?;
    let transport = http_transport(&config)?;
    run_with_sockets(config, listener, Some(dns), transport, shutdown).await
}

/// The agent on already bound sockets: the API on `listener`, DNS on `dns` if given.
pub async fn run_with_sockets<T, F>(
    config: AgentConfig,
    listener: TcpListener,
    dns: Option<DnsSockets>,
    transport: T,
    shutdown: F,
) -> Result<(), AgentError>
where
    T: Transport,
    F: Future<Output = ()> + Send,
{
    config.validate()?;
    let policy = scope_policy(&config)?;
    let plan = DiscoveryPlan::new(&policy, &config.extra_datacenters);
    let shared = Arc::new(Shared::new(&config));
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Ok(address) = listener.local_addr() {
        info!(%address, scopes = ?plan.scopes().iter().map(Scope::localnodes_query).collect::<Vec<_>>(), "agent API listening");
    }
    let dns_server = dns.map(|sockets| {
        let settings = match &config.dns {
            Some(dns) => dns.clone(),
            None => DnsConfig::new(sockets.local_addr().unwrap_or(([127, 0, 0, 1], 0).into())),
        };
        let zone = Zone::new(&settings, &policy.scope, &config.extra_datacenters);
        tokio::spawn(crate::dns::serve(
            sockets,
            zone,
            shared.clone(),
            stop_rx.clone(),
        ))
    });
    let transport = Arc::new(transport);
    let ring = config.ring.clone().map(|ring| {
        info!(tables = ?ring.tables, signed = ring.credentials.is_some(), "ring discovery on");
        let task = RingDiscovery::new(ring, config.port, transport.clone(), shared.clone());
        tokio::spawn(task.run(stop_rx.clone()))
    });
    let discoverer = Discoverer::new(&config, plan, transport, shared.clone());
    let discovery = tokio::spawn(discoverer.run(stop_rx.clone()));
    let server = tokio::spawn(crate::api::serve(listener, shared, stop_rx));
    shutdown.await;
    info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let _ = discovery.await;
    if let Some(ring) = ring {
        let _ = ring.await;
    }
    let _ = server.await;
    if let Some(dns_server) = dns_server {
        let _ = dns_server.await;
    }
    info!("stopped");
    Ok(())
}

struct Discoverer<T> {
    transport: Arc<T>,
    shared: Arc<Shared>,
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
    ring_on: bool,
}

impl<T: Transport> Discoverer<T> {
    fn new(
        config: &AgentConfig,
        plan: DiscoveryPlan,
        transport: Arc<T>,
        shared: Arc<Shared>,
    ) -> Self {
        Discoverer {
            transport,
            shared,
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
            ring_on: config.ring.is_some(),
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut next_refresh = Instant::now();
        let mut stop_during_refresh = stop.clone();
        let shared = self.shared.clone();
        let mut ring_updates = shared.ring.subscribe();
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
                changed = ring_updates.changed(), if self.ring_on => {
                    // Only a snapshot that exists gets the ring; the first one carries it from
                    // its start.
                    if changed.is_ok() && self.shared.current().is_some() {
                        self.publish();
                    }
                }
                _ = shared.traffic_woke.notified() => {
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
        let active = self.shared.is_active(now);
        self.shared.metrics.set_active_cadence(active);
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
        let metrics = &self.shared.metrics;
        for (host, query, error) in &report.failures {
            debug!(%host, %query, %error, "discovery request failed");
        }
        let failed = u64::try_from(report.failures.len()).unwrap_or(u64::MAX);
        metrics.count_discovery_requests(u64::from(report.requests).saturating_sub(failed), failed);
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
        self.shared.metrics.count_probe(ok);
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
        let current = self.shared.current();
        let mut candidate = NodeSnapshot::new(0, now_ms, self.scheme, self.port, nodes);
        // Ring indices point into this node list: attach the ring to every rebuilt snapshot.
        let ring = self.shared.ring.borrow().clone();
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
            Bytes::from(eds::discovery_response(&snapshot, &self.shared.cluster_name).to_string());
        let published = Published {
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
        self.shared
            .published
            .send_replace(Some(Arc::new(published)));
    }
}
