//! Polling the discovery agent: when to ask, what to ask, and what the answer means.
//!
//! Every worker ticks. On each tick it hands its traffic flag to shared state and tries to
//! hold the poll lease (`lease`); only the holder polls the agent's `/v1/nodes` (ETag plus
//! long-poll) and stores the snapshot and its version key in shared state, where every
//! worker's requests find it. When the agent cannot be reached the stored snapshot stays in
//! use.
//!
//! [`PollSchedule`] is the timing as a pure state machine (time passed in, nothing read);
//! [`Poller`] carries its decisions out through the [`Host`].

use std::time::Duration;

use alternator_routing::snapshot::NodeSnapshot;
use alternator_routing::{Scope, ScopeMode};

use crate::config::AgentConfig;
use crate::host::{log_debug, log_error, log_info, log_warn, Host};
use crate::lease;
use crate::metrics::{Metric, PollOutcome};
use crate::shared;
use crate::view::RoutingView;
use crate::worker::Worker;

/// A poll sent and not answered yet; `Id` is the host's call id ([`Host::CallId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPoll<Id> {
    pub token: Id,
    pub sent_at_ms: u64,
    pub deadline_ms: u64,
    /// Sent with `?traffic=1`.
    pub traffic: bool,
    /// A long-poll (`?wait=N`): may stay open for the whole wait.
    pub long_poll: bool,
}

/// Which of the two polls a worker may have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    /// The regular poll (a long-poll once a snapshot is known).
    Main,
    /// A short extra poll that only tells the agent traffic started during a long-poll.
    Notify,
}

/// What one poll asks the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRequest {
    /// Path and query: `agent.path[?wait=N][&traffic=1]`.
    pub path: String,
    /// The long-poll wait plus the request timeout.
    pub timeout: Duration,
    pub long_poll: bool,
}

impl PollRequest {
    /// A long-poll only for the main poll and only when the agent can answer 304 (an ETag is
    /// known): without a snapshot the filter wants one at once.
    pub fn new(agent: &AgentConfig, kind: PollKind, etag_known: bool, traffic: bool) -> Self {
        let wait = if kind == PollKind::Main && etag_known {
            agent.long_poll.as_secs()
        } else {
            0
        };
        let mut path = agent.path.clone();
        let mut sep = '?';
        if wait > 0 {
            path.push_str(&format!("{sep}wait={wait}"));
            sep = '&';
        }
        if traffic {
            path.push_str(&format!("{sep}traffic=1"));
        }
        PollRequest {
            path,
            timeout: Duration::from_secs(wait) + agent.request_timeout,
            long_poll: wait > 0,
        }
    }
}

/// The agent's answer, classified: 200 still has to be validated ([`PollOutcome::Updated`]
/// or [`PollOutcome::Invalid`]).
pub fn answer_outcome(status: Option<&str>) -> Option<PollOutcome> {
    match status {
        Some("200") => None,
        Some("304") => Some(PollOutcome::NotModified),
        _ => Some(PollOutcome::Failed),
    }
}

/// A non-zero lease owner id from a worker's random seed (the SplitMix64 finaliser, so that
/// nearby seeds give unrelated ids).
fn worker_id(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When the lease holder polls: at most one main poll and one traffic notification in
/// flight, the next main poll after the answer (at once for a long-poll, a tick after the
/// previous one otherwise, `error_backoff` after a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSchedule<Id> {
    main: Option<PendingPoll<Id>>,
    notify: Option<PendingPoll<Id>>,
    next_poll_at_ms: u64,
}

// Not derived: that would ask the host's call id for a default it does not need.
impl<Id> Default for PollSchedule<Id> {
    fn default() -> Self {
        PollSchedule {
            main: None,
            notify: None,
            next_poll_at_ms: 0,
        }
    }
}

impl<Id: Copy + Eq> PollSchedule<Id> {
    /// Forgets polls whose answer is more than `grace` overdue. The host answers every call
    /// (timeouts included), but a lost callback must not stop discovery for good.
    pub fn expire(&mut self, now: u64, grace: Duration) {
        let grace = millis(grace);
        for pending in [&mut self.main, &mut self.notify] {
            if pending.is_some_and(|p| now > p.deadline_ms.saturating_add(grace)) {
                *pending = None;
            }
        }
    }

    /// The poll to send on this tick, if any. `traffic_pending` is asked only when a traffic
    /// notification could be due (a long-poll without traffic in flight, no notification yet).
    pub fn due(&self, now: u64, traffic_pending: impl FnOnce() -> bool) -> Option<PollKind> {
        match self.main {
            None if now >= self.next_poll_at_ms => Some(PollKind::Main),
            Some(p) if p.long_poll && !p.traffic && self.notify.is_none() && traffic_pending() => {
                Some(PollKind::Notify)
            }
            _ => None,
        }
    }

    pub fn sent(&mut self, kind: PollKind, poll: PendingPoll<Id>) {
        match kind {
            PollKind::Main => self.main = Some(poll),
            PollKind::Notify => self.notify = Some(poll),
        }
    }

    /// A poll the host would not send: the main poll is tried again after `error_backoff`.
    pub fn send_failed(&mut self, kind: PollKind, now: u64, agent: &AgentConfig) {
        if kind == PollKind::Main {
            self.next_poll_at_ms = now.saturating_add(millis(agent.error_backoff));
        }
    }

    /// The poll `token` answers, taken out of flight (`None`: not ours, or given up on).
    pub fn take(&mut self, token: Id) -> Option<(PollKind, PendingPoll<Id>)> {
        if let Some(p) = self.main.filter(|p| p.token == token) {
            self.main = None;
            return Some((PollKind::Main, p));
        }
        if let Some(p) = self.notify.filter(|p| p.token == token) {
            self.notify = None;
            return Some((PollKind::Notify, p));
        }
        None
    }

    /// Schedules the next main poll after an answer to `poll`.
    pub fn answered(
        &mut self,
        kind: PollKind,
        poll: PendingPoll<Id>,
        outcome: PollOutcome,
        now: u64,
        agent: &AgentConfig,
    ) {
        if kind != PollKind::Main {
            return;
        }
        self.next_poll_at_ms = match outcome {
            PollOutcome::Failed | PollOutcome::Invalid => {
                now.saturating_add(millis(agent.error_backoff))
            }
            // Long-poll: ask again at once, the agent holds the request until something changes.
            _ if !agent.long_poll.is_zero() => now,
            _ => poll.sent_at_ms.saturating_add(millis(agent.tick)),
        };
    }

    /// When the next main poll may be sent.
    pub fn next_poll_at_ms(&self) -> u64 {
        self.next_poll_at_ms
    }

    pub fn in_flight(&self, kind: PollKind) -> Option<PendingPoll<Id>> {
        match kind {
            PollKind::Main => self.main,
            PollKind::Notify => self.notify,
        }
    }
}

/// One worker's side of discovery: the lease and the schedule, carried out through the host.
#[derive(Debug)]
pub struct Poller<Id> {
    worker_id: u64,
    holds_lease: bool,
    schedule: PollSchedule<Id>,
}

impl<Id: Copy + Eq> Default for Poller<Id> {
    fn default() -> Self {
        Poller::new()
    }
}

impl<Id: Copy + Eq> Poller<Id> {
    pub fn new() -> Self {
        Poller {
            worker_id: 0,
            holds_lease: false,
            schedule: PollSchedule::default(),
        }
    }

    /// A (re)configured worker: takes its lease owner id once, and starts polling afresh.
    ///
    /// The id comes from the host's randomness (`seed`), not from a counter in shared state:
    /// proxy-wasm's compare-and-swap cannot guard the first write of a key (a token of 0 means
    /// "no check"), so two workers configured at once could both count to 1 and both hold
    /// the lease.
    pub fn configure(&mut self, seed: u64) {
        if self.worker_id == 0 {
            self.worker_id = worker_id(seed);
        }
        self.schedule = PollSchedule::default();
    }

    pub fn worker_id(&self) -> u64 {
        self.worker_id
    }

    pub fn holds_lease(&self) -> bool {
        self.holds_lease
    }

    pub fn schedule(&self) -> &PollSchedule<Id> {
        &self.schedule
    }

    pub fn on_tick<H: Host<CallId = Id>>(&mut self, worker: &Worker<H>) {
        let host = &worker.host;
        let now = host.now_ms();
        worker.publish_traffic();
        worker.metrics.flush(host);
        worker.refresh();
        if !self.hold_lease(worker, now) {
            return;
        }
        report_snapshot(worker, now);
        let agent = &worker.config.agent;
        self.schedule.expire(now, agent.request_timeout);
        let Some(kind) = self.schedule.due(now, || traffic_pending(host)) else {
            return;
        };
        let traffic = take_traffic(host);
        match self.dispatch(worker, now, kind, traffic) {
            Some(poll) => self.schedule.sent(kind, poll),
            None => {
                self.schedule.send_failed(kind, now, agent);
                restore_traffic(host, traffic);
            }
        }
    }

    /// Renews or takes the lease; false when another worker of this proxy holds it.
    fn hold_lease<H: Host>(&mut self, worker: &Worker<H>, now: u64) -> bool {
        let host = &worker.host;
        let ttl = millis(worker.config.agent.lease);
        let (current, cas) = host.shared_get(shared::POLL_LEASE);
        let held = match lease::claim(current.as_deref(), self.worker_id, now, ttl) {
            Some(next) => host
                .shared_set(shared::POLL_LEASE, next.encode().as_bytes(), cas)
                .is_ok(),
            None => false,
        };
        if held != self.holds_lease {
            log_debug!(
                host,
                "alternator-filter: worker {} {} the agent poll lease",
                self.worker_id,
                if held { "holds" } else { "released" }
            );
            self.holds_lease = held;
        }
        held
    }

    /// This worker's root is going away (a listener or plugin configuration replaced and
    /// drained, or the proxy shutting down): hand over what is counted, and the poll lease,
    /// so that the next root polls from its next tick rather than after `lease_ms`.
    pub fn on_done<H: Host>(&mut self, worker: Option<&Worker<H>>, host: &H) {
        if let Some(worker) = worker {
            worker.metrics.flush(host);
        }
        if !self.holds_lease {
            return;
        }
        let (current, cas) = host.shared_get(shared::POLL_LEASE);
        // Not ours any more, or a failed CAS (another worker wrote meanwhile): nothing to hand over.
        let Some(expired) = lease::release(current.as_deref(), self.worker_id) else {
            return;
        };
        if host
            .shared_set(shared::POLL_LEASE, expired.encode().as_bytes(), cas)
            .is_ok()
        {
            self.holds_lease = false;
            log_debug!(
                host,
                "alternator-filter: worker {} released the agent poll lease (shutting down)",
                self.worker_id
            );
        }
    }

    fn dispatch<H: Host<CallId = Id>>(
        &self,
        worker: &Worker<H>,
        now: u64,
        kind: PollKind,
        traffic: bool,
    ) -> Option<PendingPoll<Id>> {
        let host = &worker.host;
        let agent = &worker.config.agent;
        let etag = host
            .shared_get(shared::ETAG)
            .0
            .and_then(|v| String::from_utf8(v).ok());
        let request = PollRequest::new(agent, kind, etag.is_some(), traffic);
        let mut headers = vec![
            (":method", "GET"),
            (":path", request.path.as_str()),
            (":authority", agent.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(tag) = etag.as_deref() {
            headers.push(("if-none-match", tag));
        }
        match host.dispatch_http_call(&agent.cluster, &headers, request.timeout) {
            Ok(token) => Some(PendingPoll {
                token,
                sent_at_ms: now,
                deadline_ms: now.saturating_add(millis(request.timeout)),
                traffic,
                long_poll: request.long_poll,
            }),
            Err(status) => {
                worker.metrics.count(Metric::AgentPoll(PollOutcome::Failed));
                set_reachable(
                    host,
                    false,
                    &format!("cannot dispatch to cluster {:?}: {status}", agent.cluster),
                );
                None
            }
        }
    }

    /// The answer to call `token` arrived: its headers (`:status` included; none when the
    /// call failed without a response) and body, as the host received them.
    pub fn on_answer<H: Host<CallId = Id>, K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        worker: &Worker<H>,
        token: Id,
        headers: &[(K, V)],
        body: &[u8],
    ) {
        let Some((kind, poll)) = self.schedule.take(token) else {
            return;
        };
        let host = &worker.host;
        let now = host.now_ms();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_ref())
        };
        let status = header(":status");
        let outcome = match answer_outcome(status) {
            None => store(worker, now, body, header("etag")),
            Some(PollOutcome::NotModified) => {
                let _ = host.shared_set(shared::CONFIRMED_AT_MS, now.to_string().as_bytes(), None);
                PollOutcome::NotModified
            }
            Some(other) => other,
        };
        worker.metrics.count(Metric::AgentPoll(outcome));
        match outcome {
            PollOutcome::Updated | PollOutcome::NotModified => set_reachable(host, true, ""),
            PollOutcome::Failed => set_reachable(
                host,
                false,
                &match status {
                    Some(s) => format!("status {s}"),
                    None => format!("no answer after {} ms", now.saturating_sub(poll.sent_at_ms)),
                },
            ),
            PollOutcome::Invalid => {}
        }
        self.schedule
            .answered(kind, poll, outcome, now, &worker.config.agent);
    }
}

/// Validates and stores a 200 answer.
fn store<H: Host>(worker: &Worker<H>, now: u64, body: &[u8], etag: Option<&str>) -> PollOutcome {
    let host = &worker.host;
    if body.is_empty() {
        log_warn!(
            host,
            "alternator-filter: the agent answered 200 without a body"
        );
        return PollOutcome::Invalid;
    }
    let snapshot = match NodeSnapshot::from_json(body) {
        Ok(s) => s,
        Err(e) => {
            log_error!(
                host,
                "alternator-filter: ignoring the agent's snapshot, keeping the previous one: {e}"
            );
            return PollOutcome::Invalid;
        }
    };
    let etag = etag.map_or_else(|| format!("\"{}\"", snapshot.version()), str::to_string);
    let _ = host.shared_set(shared::CONFIRMED_AT_MS, now.to_string().as_bytes(), None);
    let stored_etag = host.shared_get(shared::ETAG).0;
    if stored_etag.as_deref() == Some(etag.as_bytes())
        && host.shared_get(shared::SNAPSHOT).0.as_deref() == Some(body)
    {
        return PollOutcome::NotModified;
    }
    let previous = host
        .shared_get(shared::SNAPSHOT)
        .0
        .and_then(|b| NodeSnapshot::from_json(&b).ok());
    // Snapshot first, version key last: a reader that sees the new version finds the new bytes.
    if host.shared_set(shared::SNAPSHOT, body, None).is_err() {
        log_error!(
            host,
            "alternator-filter: cannot store the node snapshot in shared data"
        );
        return PollOutcome::Invalid;
    }
    let _ = host.shared_set(shared::ETAG, etag.as_bytes(), None);
    let version_key = format!("{}@{now}", snapshot.version());
    let _ = host.shared_set(shared::SNAPSHOT_VERSION, version_key.as_bytes(), None);
    log_info!(
        host,
        "alternator-filter: node snapshot version {} with {} nodes",
        snapshot.version(),
        snapshot.nodes().len()
    );
    let config = &worker.config;
    if let Some(previous) = previous.filter(|_| config.passive_health.enabled) {
        // The agent's probes readmitted a node: traffic's older verdict no longer applies.
        let _ = shared::update_passive_health(host, |p| p.forget_readmitted(&previous, &snapshot));
    }
    let (datacenter, rack) = match &config.scope.scope {
        Scope::Cluster => (None, None),
        Scope::Datacenter { datacenter } => (Some(datacenter), None),
        Scope::Rack { datacenter, rack } => (Some(datacenter), Some(rack.as_str())),
    };
    if let Some(datacenter) = datacenter {
        if RoutingView::build(body, config).is_ok_and(|v| !v.scope_has_nodes()) {
            log_warn!(
                host,
                "alternator-filter: no node of the snapshot is in scope datacenter {datacenter:?} \
                 rack {:?} ({} mode); does the discovery agent run with the same \
                 --datacenter/--rack?",
                rack.unwrap_or("(any)"),
                if config.scope.mode == ScopeMode::Strict {
                    "strict"
                } else {
                    "fallback"
                },
            );
        }
    }
    // This worker routes on the new snapshot from its next request; the others refresh on
    // their own tick.
    worker.refresh();
    report_snapshot(worker, now);
    PollOutcome::Updated
}

/// Snapshot gauges; age counts from the agent's last confirmation that it is current.
fn report_snapshot<H: Host>(worker: &Worker<H>, now: u64) {
    let Some(view) = worker.current_view() else {
        return;
    };
    let confirmed = shared::read_u64(&worker.host, shared::CONFIRMED_AT_MS).unwrap_or(now);
    worker.metrics.snapshot(
        &worker.host,
        view.version(),
        now.saturating_sub(confirmed) / 1000,
        view.node_count() as u64,
    );
}

/// Whether some worker saw traffic that no poll has reported yet.
fn traffic_pending(host: &impl Host) -> bool {
    host.shared_get(shared::TRAFFIC).0.as_deref() == Some(b"1")
}

/// Reads and clears the traffic flag.
fn take_traffic(host: &impl Host) -> bool {
    let (value, cas) = host.shared_get(shared::TRAFFIC);
    value.as_deref() == Some(b"1") && host.shared_set(shared::TRAFFIC, b"0", cas).is_ok()
}

/// Puts back a traffic flag that no poll carried to the agent.
fn restore_traffic(host: &impl Host, traffic: bool) {
    if traffic {
        let _ = host.shared_set(shared::TRAFFIC, b"1", None);
    }
}

/// Logs agent reachability once per change for the whole proxy, not once per poll.
fn set_reachable(host: &impl Host, reachable: bool, detail: &str) {
    let flag: &[u8] = if reachable { b"1" } else { b"0" };
    let (current, cas) = host.shared_get(shared::AGENT_REACHABLE);
    if current.as_deref() == Some(flag) {
        return;
    }
    if host.shared_set(shared::AGENT_REACHABLE, flag, cas).is_err() {
        return; // Another worker recorded (and logged) the change.
    }
    if reachable {
        log_info!(host, "alternator-filter: discovery agent reachable");
    } else if current.is_some() {
        log_warn!(
            host,
            "alternator-filter: discovery agent unreachable ({detail}); routing on the last node snapshot"
        );
    } else {
        log_warn!(
            host,
            "alternator-filter: discovery agent unreachable ({detail}); no node snapshot yet, Envoy's fallback policy routes"
        );
    }
}
