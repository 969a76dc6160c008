//! The root context: configuration, and discovery of the node snapshot.
//!
//! Every worker VM's root context ticks. On each tick it hands its traffic flag to shared data
//! and tries to hold the poll lease; only the holder polls the agent's `/v1/nodes` (ETag plus
//! long-poll) and stores the snapshot and its version key in shared data, where every worker's
//! HTTP contexts find it. When the agent cannot be reached the stored snapshot stays in use.

use std::rc::Rc;
use std::time::Duration;

use alternator_routing::snapshot::NodeSnapshot;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config::{FilterConfig, ScopeMode};
use crate::host::{self, log_debug, log_error, log_info, log_warn};
use crate::http::RequestContext;
use crate::lease;
use crate::metrics::PollOutcome;
use crate::shared;
use crate::view::RoutingView;
use crate::worker::Worker;

/// Polls started but not answered yet.
#[derive(Debug, Clone, Copy)]
struct PendingPoll {
    token: u32,
    sent_at_ms: u64,
    deadline_ms: u64,
    /// Sent with `?traffic=1`.
    traffic: bool,
    /// A long-poll (`?wait=N`): may stay open for the whole wait.
    long_poll: bool,
}

#[derive(Debug, Default)]
pub struct Root {
    worker: Option<Rc<Worker>>,
    worker_id: u64,
    holds_lease: bool,
    /// The regular poll (a long-poll when the snapshot is known).
    main: Option<PendingPoll>,
    /// A short extra poll that only tells the agent traffic started during a long-poll.
    notify: Option<PendingPoll>,
    next_poll_at_ms: u64,
}

impl Root {
    pub fn new() -> Self {
        Root::default()
    }

    fn tick(&mut self, worker: &Rc<Worker>) {
        let now = host::now_ms();
        worker.publish_traffic();
        worker.metrics.flush();
        worker.refresh();
        if !self.hold_lease(worker, now) {
            return;
        }
        self.report_snapshot(worker, now);
        let agent = &worker.config.agent;
        // The host answers every dispatched call (timeouts included), but never trust that
        // blindly: a lost callback must not stop discovery for good.
        let grace = agent.request_timeout.as_millis() as u64;
        for pending in [&mut self.main, &mut self.notify] {
            if pending.is_some_and(|p| now > p.deadline_ms.saturating_add(grace)) {
                *pending = None;
            }
        }
        match self.main {
            None if now >= self.next_poll_at_ms => {
                let traffic = take_traffic();
                self.main = self.dispatch(worker, now, traffic, true);
                if self.main.is_none() {
                    self.next_poll_at_ms = now + agent.error_backoff.as_millis() as u64;
                    restore_traffic(traffic);
                }
            }
            Some(p) if p.long_poll && !p.traffic && self.notify.is_none() && traffic_pending() => {
                // The agent may be on its idle cadence; tell it now rather than after the wait.
                let traffic = take_traffic();
                self.notify = self.dispatch(worker, now, traffic, false);
                if self.notify.is_none() {
                    restore_traffic(traffic);
                }
            }
            _ => {}
        }
    }

    /// Renews or takes the lease; false when another worker of this Envoy holds it.
    fn hold_lease(&mut self, worker: &Worker, now: u64) -> bool {
        let ttl = worker.config.agent.lease.as_millis() as u64;
        let (current, cas) = host::shared_get(shared::POLL_LEASE);
        let held = match lease::claim(current.as_deref(), self.worker_id, now, ttl) {
            Some(next) => host::shared_set(
                shared::POLL_LEASE,
                next.encode().as_bytes(),
                cas.or(Some(0)),
            )
            .is_ok(),
            None => false,
        };
        if held != self.holds_lease {
            log_debug!(
                "alternator-filter: worker {} {} the agent poll lease",
                self.worker_id,
                if held { "holds" } else { "released" }
            );
            self.holds_lease = held;
        }
        held
    }

    fn release_lease(&self) {
        let (current, cas) = host::shared_get(shared::POLL_LEASE);
        // Not ours any more, or a failed CAS (another worker wrote meanwhile): nothing to hand over.
        let Some(expired) = lease::release(current.as_deref(), self.worker_id) else {
            return;
        };
        if host::shared_set(shared::POLL_LEASE, expired.encode().as_bytes(), cas).is_ok() {
            log_debug!(
                "alternator-filter: worker {} released the agent poll lease (shutting down)",
                self.worker_id
            );
        }
    }

    fn dispatch(
        &self,
        worker: &Worker,
        now: u64,
        traffic: bool,
        main: bool,
    ) -> Option<PendingPoll> {
        let agent = &worker.config.agent;
        let etag = host::shared_get(shared::ETAG)
            .0
            .and_then(|v| String::from_utf8(v).ok());
        let wait = if main && etag.is_some() {
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
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", agent.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(tag) = etag.as_deref() {
            headers.push(("if-none-match", tag));
        }
        let timeout = Duration::from_secs(wait) + agent.request_timeout;
        match host::dispatch_http_call(&agent.cluster, &headers, timeout) {
            Ok(token) => Some(PendingPoll {
                token,
                sent_at_ms: now,
                deadline_ms: now + timeout.as_millis() as u64,
                traffic,
                long_poll: wait > 0,
            }),
            Err(status) => {
                worker.metrics.poll(PollOutcome::Failed);
                set_reachable(
                    false,
                    &format!("cannot dispatch to cluster {:?}: {status:?}", agent.cluster),
                );
                None
            }
        }
    }

    fn on_poll_answer(
        &mut self,
        worker: &Worker,
        poll: PendingPoll,
        is_main: bool,
        body_size: usize,
    ) {
        let now = host::now_ms();
        let status = host::http_call_response_header(":status");
        let outcome = match status.as_deref() {
            Some("200") => self.store(worker, now, body_size),
            Some("304") => {
                let _ = host::shared_set(shared::CONFIRMED_AT_MS, now.to_string().as_bytes(), None);
                PollOutcome::NotModified
            }
            _ => PollOutcome::Failed,
        };
        worker.metrics.poll(outcome);
        match outcome {
            PollOutcome::Updated | PollOutcome::NotModified => set_reachable(true, ""),
            PollOutcome::Failed => set_reachable(
                false,
                &match status {
                    Some(s) => format!("status {s}"),
                    None => format!("no answer after {} ms", now.saturating_sub(poll.sent_at_ms)),
                },
            ),
            PollOutcome::Invalid => {}
        }
        if !is_main {
            return;
        }
        let agent = &worker.config.agent;
        self.next_poll_at_ms = match outcome {
            PollOutcome::Failed | PollOutcome::Invalid => {
                now + agent.error_backoff.as_millis() as u64
            }
            // Long-poll: ask again at once, the agent holds the request until something changes.
            _ if !agent.long_poll.is_zero() => now,
            _ => poll.sent_at_ms + agent.tick.as_millis() as u64,
        };
    }

    fn store(&self, worker: &Worker, now: u64, body_size: usize) -> PollOutcome {
        let Some(body) = host::http_call_response_body(body_size) else {
            log_warn!("alternator-filter: the agent answered 200 without a body");
            return PollOutcome::Invalid;
        };
        let snapshot = match NodeSnapshot::from_json(&body) {
            Ok(s) => s,
            Err(e) => {
                log_error!("alternator-filter: ignoring the agent's snapshot, keeping the previous one: {e}");
                return PollOutcome::Invalid;
            }
        };
        let etag = host::http_call_response_header("etag")
            .unwrap_or_else(|| format!("\"{}\"", snapshot.version()));
        let _ = host::shared_set(shared::CONFIRMED_AT_MS, now.to_string().as_bytes(), None);
        let stored_etag = host::shared_get(shared::ETAG).0;
        if stored_etag.as_deref() == Some(etag.as_bytes())
            && host::shared_get(shared::SNAPSHOT).0.as_deref() == Some(&body[..])
        {
            return PollOutcome::NotModified;
        }
        let previous = host::shared_get(shared::SNAPSHOT)
            .0
            .and_then(|b| NodeSnapshot::from_json(&b).ok());
        // Snapshot first, version key last: a reader that sees the new version finds the new bytes.
        if host::shared_set(shared::SNAPSHOT, &body, None).is_err() {
            log_error!("alternator-filter: cannot store the node snapshot in shared data");
            return PollOutcome::Invalid;
        }
        let _ = host::shared_set(shared::ETAG, etag.as_bytes(), None);
        let version_key = format!("{}@{now}", snapshot.version());
        let _ = host::shared_set(shared::SNAPSHOT_VERSION, version_key.as_bytes(), None);
        log_info!(
            "alternator-filter: node snapshot version {} with {} nodes",
            snapshot.version(),
            snapshot.nodes().len()
        );
        if let Some(previous) = previous.filter(|_| worker.config.passive_health.enabled) {
            // The agent's probes readmitted a node: traffic's older verdict no longer applies.
            let _ = shared::update_passive_health(|p| p.forget_readmitted(&previous, &snapshot));
        }
        let config = &worker.config;
        if config.scope.datacenter.is_some()
            && RoutingView::build(&body, config).is_ok_and(|v| !v.scope_has_nodes())
        {
            log_warn!(
                "alternator-filter: no node of the snapshot is in scope datacenter {:?} rack {:?} \
                 ({} mode); does the discovery agent run with the same --datacenter/--rack?",
                config.scope.datacenter.as_deref().unwrap_or_default(),
                config.scope.rack.as_deref().unwrap_or("(any)"),
                if config.scope.mode == ScopeMode::Strict {
                    "strict"
                } else {
                    "fallback"
                },
            );
        }
        // This worker routes on the new snapshot from its next request; the others refresh on
        // their own tick.
        worker.refresh();
        self.report_snapshot(worker, now);
        PollOutcome::Updated
    }

    /// Snapshot gauges; age counts from the agent's last confirmation that it is current.
    fn report_snapshot(&self, worker: &Worker, now: u64) {
        let Some(view) = worker.current_view() else {
            return;
        };
        let confirmed = shared::read_u64(shared::CONFIRMED_AT_MS).unwrap_or(now);
        worker.metrics.snapshot(
            view.version(),
            now.saturating_sub(confirmed) / 1000,
            view.node_count() as u64,
        );
    }
}

/// Whether some worker saw traffic that no poll has reported yet.
fn traffic_pending() -> bool {
    host::shared_get(shared::TRAFFIC).0.as_deref() == Some(b"1")
}

/// Reads and clears the traffic flag.
fn take_traffic() -> bool {
    let (value, cas) = host::shared_get(shared::TRAFFIC);
    value.as_deref() == Some(b"1") && host::shared_set(shared::TRAFFIC, b"0", cas).is_ok()
}

/// Puts back a traffic flag that no poll carried to the agent.
fn restore_traffic(traffic: bool) {
    if traffic {
        let _ = host::shared_set(shared::TRAFFIC, b"1", None);
    }
}

/// Logs agent reachability once per change for the whole Envoy, not once per poll.
fn set_reachable(reachable: bool, detail: &str) {
    let flag: &[u8] = if reachable { b"1" } else { b"0" };
    let (current, cas) = host::shared_get(shared::AGENT_REACHABLE);
    if current.as_deref() == Some(flag) {
        return;
    }
    if host::shared_set(shared::AGENT_REACHABLE, flag, cas.or(Some(0))).is_err() {
        return; // Another worker recorded (and logged) the change.
    }
    if reachable {
        log_info!("alternator-filter: discovery agent reachable");
    } else if current.is_some() {
        log_warn!("alternator-filter: discovery agent unreachable ({detail}); routing on the last node snapshot");
    } else {
        log_warn!("alternator-filter: discovery agent unreachable ({detail}); no node snapshot yet, Envoy's fallback policy routes");
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // This root context is going away (a listener or plugin configuration replaced and
        // drained, or the VM shutting down): hand over what is counted, and the poll lease, so
        // that the next root context polls from its next tick rather than after `lease_ms`.
        if let Some(worker) = &self.worker {
            worker.metrics.flush();
        }
        if self.holds_lease {
            self.release_lease();
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        if let Some(p) = self.main.filter(|p| p.token == token) {
            self.main = None;
            self.on_poll_answer(&worker, p, true, body_size);
        } else if let Some(p) = self.notify.filter(|p| p.token == token) {
            self.notify = None;
            self.on_poll_answer(&worker, p, false, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes =
            host::buffer(host::Buffer::PluginConfiguration, 0, usize::MAX).unwrap_or_default();
        let config = match FilterConfig::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log_error!("alternator-filter: {e}");
                return false;
            }
        };
        if self.worker_id == 0 {
            self.worker_id = shared::next_worker_id();
        }
        if !host::set_tick_period(config.agent.tick) {
            log_error!("alternator-filter: cannot set the tick period");
            return false;
        }
        self.main = None;
        self.notify = None;
        self.next_poll_at_ms = 0;
        if let Some(previous) = &self.worker {
            previous.metrics.flush();
        }
        self.worker = Some(Rc::new(Worker::new(config)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = self.worker.clone() {
            self.tick(&worker);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(RequestContext::new(worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
