//! Per-worker state shared by the poller and every request of one proxy worker.
//!
//! A worker is single-threaded (a proxy-wasm VM, or one thread of a native build), so plain
//! `Rc`/`Cell`/`RefCell` suffice. The configuration inside is immutable for the life of this
//! value: a new plugin configuration builds a new `Worker`.

use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use alternator_routing::health::HealthThresholds;
use alternator_routing::passive::{Outcome, PassiveHealth, Rules};
use alternator_routing::snapshot::HealthState;

use crate::config::FilterConfig;
use crate::host::{log_info, log_warn, Host};
use crate::metrics::{Metric, Metrics};
use crate::shared;
use crate::view::RoutingView;

#[derive(Debug)]
pub struct Worker<H> {
    pub host: H,
    pub config: FilterConfig,
    pub metrics: Metrics,
    /// The routing view and the version-key bytes it was built from.
    view: RefCell<(Vec<u8>, Option<Rc<RoutingView>>)>,
    /// Round-robin position; starts at a random value so workers do not move in lockstep.
    round_robin: Cell<u64>,
    /// xorshift64* state for the `random` policy.
    rng: Cell<u64>,
    /// Whether this VM routed a request since its root context last told the poller.
    traffic: Cell<bool>,
    /// Learned table → partition-key names, refreshed from shared data on a miss.
    learned: RefCell<BTreeMap<String, String>>,
    /// The learned-keys version the map above was read at.
    learned_version: RefCell<Vec<u8>>,
    /// Passive health shared by every worker, refreshed when its version key changes.
    passive: RefCell<PassiveHealth>,
    passive_version: RefCell<Vec<u8>>,
    /// Requests since the shared version keys were last read (see [`Worker::view`]).
    since_refresh: Cell<u32>,
    /// Whether the ring was too old to route by at the last refresh (see
    /// [`Worker::ring_too_old`]); decided there, so requests make no clock call for it.
    ring_too_old: Cell<bool>,
    /// Routing-header buffers of finished requests, lent to new ones.
    buffers: RefCell<Vec<String>>,
}

/// Routing-header buffers kept for reuse: more than the requests a worker has in flight at
/// once only under unusual load, when the rest are simply freed.
const SPARE_BUFFERS: usize = 256;

/// Requests between two reads of the shared version keys on the request path; the root
/// context's tick reads them too, so an idle worker is never more than a tick behind.
const REFRESH_EVERY: u32 = 32;

impl<H: Host> Worker<H> {
    /// A worker routing by `config`; `seed` starts its round robin and random policy, and
    /// should differ between workers (the host's randomness) so they do not move in lockstep.
    pub fn new(host: H, config: FilterConfig, seed: u64) -> Self {
        Worker {
            host,
            config,
            metrics: Metrics::default(),
            view: RefCell::new((Vec::new(), None)),
            round_robin: Cell::new(seed >> 11),
            rng: Cell::new(seed | 1),
            traffic: Cell::new(false),
            learned: RefCell::new(BTreeMap::new()),
            learned_version: RefCell::new(Vec::new()),
            passive: RefCell::new(PassiveHealth::default()),
            passive_version: RefCell::new(Vec::new()),
            since_refresh: Cell::new(0),
            ring_too_old: Cell::new(false),
            buffers: RefCell::new(Vec::new()),
        }
    }

    /// An empty buffer for a request's routing header (a spare one when there is one).
    pub fn take_buffer(&self) -> String {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| String::with_capacity(64))
    }

    /// Takes back a request's buffer for the next request.
    pub fn give_back_buffer(&self, mut buffer: String) {
        let mut spare = self.buffers.borrow_mut();
        if spare.len() < SPARE_BUFFERS && buffer.capacity() > 0 {
            buffer.clear();
            spare.push(buffer);
        }
    }

    /// The routing view for a request. The shared version keys (snapshot and passive health)
    /// cost two host calls, so a request reads them only while this VM has no view yet and
    /// otherwise every [`REFRESH_EVERY`]th request; the root context's tick refreshes as
    /// well ([`Worker::refresh`]). A new snapshot or another worker's passive-health verdict
    /// therefore reaches this VM within one tick or 32 requests, whichever comes first; its
    /// own verdicts apply at once.
    pub fn view(&self) -> Option<Rc<RoutingView>> {
        let n = self.since_refresh.get().wrapping_add(1);
        if n < REFRESH_EVERY {
            if let Some(view) = self.view.borrow().1.as_ref() {
                self.since_refresh.set(n);
                return Some(Rc::clone(view));
            }
        }
        self.refresh()
    }

    /// The view as of the last refresh, without any host call.
    pub fn current_view(&self) -> Option<Rc<RoutingView>> {
        self.view.borrow().1.clone()
    }

    /// Re-reads the shared version keys and rebuilds what changed; returns the current view.
    pub fn refresh(&self) -> Option<Rc<RoutingView>> {
        self.since_refresh.set(0);
        self.refresh_passive();
        let limit = self.config.token_aware.max_ring_age_ms;
        if self.config.token_aware.enabled && limit > 0 {
            let confirmed = crate::shared::read_u64(&self.host, crate::shared::CONFIRMED_AT_MS);
            let now = self.host.now_ms();
            self.ring_too_old
                .set(confirmed.is_some_and(|at| now.saturating_sub(at) > limit));
        }
        self.refresh_view()
    }

    /// Whether the ring is too old to route by: the agent has not confirmed the snapshot for
    /// longer than `token_aware.max_ring_age_ms` (0: no limit). A stale ring is never wrong,
    /// only slower; the limit bounds how long a filter cut off from its agent keeps trusting
    /// ownership that tablet migrations may have moved.
    ///
    /// Decided when the worker refreshes (each tick and every 32nd request), so it lags the
    /// clock by at most that much.
    pub fn ring_too_old(&self) -> bool {
        self.ring_too_old.get()
    }

    /// The current routing view, re-parsed only when the poller stored a new snapshot.
    fn refresh_view(&self) -> Option<Rc<RoutingView>> {
        let (version, _) = self.host.shared_get(shared::SNAPSHOT_VERSION);
        let version = version.unwrap_or_default();
        {
            let cached = self.view.borrow();
            if cached.0 == version {
                return cached.1.clone();
            }
        }
        let bytes = self.host.shared_get(shared::SNAPSHOT).0;
        let view = match bytes.map(|b| RoutingView::build(&b, &self.config)) {
            Some(Ok(v)) => Some(Rc::new(v)),
            Some(Err(e)) => {
                // The poller validates before storing, so this means a different filter build
                // wrote the key; keep routing on what this VM had.
                log_warn!(
                    &self.host,
                    "alternator-filter: stored node snapshot is unreadable, keeping the previous one: {e}"
                );
                self.view.borrow().1.clone()
            }
            None => None,
        };
        *self.view.borrow_mut() = (version, view.clone());
        view
    }

    pub fn next_round_robin(&self) -> u64 {
        let n = self.round_robin.get();
        self.round_robin.set(n.wrapping_add(1));
        n
    }

    pub fn next_random(&self) -> u64 {
        // xorshift64*: quality is ample for picking among a handful of nodes.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn note_traffic(&self) {
        self.traffic.set(true);
    }

    /// Hands this VM's traffic flag to the poller through shared data (once per tick at most).
    pub fn publish_traffic(&self) {
        if self.traffic.replace(false) {
            let _ = self.host.shared_set(shared::TRAFFIC, b"1", None);
        }
    }

    /// Partition-key names learned by any worker of this Envoy, refreshed when they changed.
    pub fn learned_keys(&self) -> Ref<'_, BTreeMap<String, String>> {
        let version = self
            .host
            .shared_get(shared::LEARNED_KEYS_VERSION)
            .0
            .unwrap_or_default();
        if *self.learned_version.borrow() != version {
            *self.learned.borrow_mut() = shared::learned_keys(&self.host).0;
            *self.learned_version.borrow_mut() = version;
        }
        self.learned.borrow()
    }

    /// This VM's copy of the passive-health table every worker of this Envoy shares (empty
    /// when disabled), as of the last [`Worker::refresh`] or this VM's own last verdict.
    pub fn passive_health(&self) -> Ref<'_, PassiveHealth> {
        self.passive.borrow()
    }

    /// Whether passive health tracks the node at `endpoint` (`ip:port`): only then can a
    /// successful or health-neutral answer from it change anything.
    pub fn tracks(&self, endpoint: &str) -> bool {
        let passive = self.passive.borrow();
        // Checked first: parsing the address costs more than everything else here.
        !passive.is_empty()
            && endpoint
                .parse::<SocketAddr>()
                .is_ok_and(|a| passive.would_change(a.ip(), Outcome::Success))
    }

    /// Re-reads the shared passive-health table when its version key changed.
    fn refresh_passive(&self) {
        if !self.config.passive_health.enabled {
            return;
        }
        let version = self
            .host
            .shared_get(shared::PASSIVE_HEALTH_VERSION)
            .0
            .unwrap_or_default();
        if *self.passive_version.borrow() != version {
            let stored = self.host.shared_get(shared::PASSIVE_HEALTH).0;
            *self.passive.borrow_mut() = stored
                .as_deref()
                .map(PassiveHealth::from_json)
                .unwrap_or_default();
            *self.passive_version.borrow_mut() = version;
        }
    }

    /// Feeds one traffic outcome of the node at `endpoint` (`ip:port`) into the shared
    /// passive-health table. The common case, a success on a healthy node, writes nothing.
    pub fn observe(&self, endpoint: &str, outcome: Outcome) {
        if !self.config.passive_health.enabled {
            return;
        }
        let Ok(address) = endpoint.parse::<SocketAddr>().map(|a| a.ip()) else {
            return;
        };
        if !self.passive_health().would_change(address, outcome) {
            return;
        }
        let now = self.host.now_ms();
        let cooldown = self.config.passive_health.cooldown_ms;
        let rules = Rules::new(
            HealthThresholds::default(),
            self.config.passive_health.timeouts_to_down,
        );
        let mut transition = None;
        let stored = shared::update_passive_health(&self.host, |table| {
            let before = table.clone();
            transition = table.observe(address, outcome, now, cooldown, &rules);
            *table != before
        });
        // This VM's own verdict applies to its next request, not a refresh later.
        self.refresh_passive();
        if let Some(state) = transition.filter(|_| stored.is_some()) {
            self.metrics.count(Metric::NodeHealthChanged(state));
            match state {
                HealthState::Down => log_warn!(
                    &self.host,
                    "alternator-filter: node {endpoint} is DOWN after consecutive {}; skipped for {cooldown} ms, then tried again as QUARANTINED",
                    if outcome == Outcome::Timeout { "timeouts" } else { "transport failures" }
                ),
                _ => log_info!(
                    &self.host,
                    "alternator-filter: node {endpoint} is {} again",
                    state.as_str()
                ),
            }
        }
    }

    /// Records a partition-key name seen in a CreateTable request or DescribeTable response.
    pub fn learn_hash_key(&self, table: &str, key: &str) {
        if self.config.affinity.tables.contains_key(table) {
            return; // Configuration wins; nothing to learn.
        }
        if self.learned.borrow().get(table).map(String::as_str) == Some(key) {
            return;
        }
        self.learned
            .borrow_mut()
            .insert(table.to_string(), key.to_string());
        if shared::learn_key(&self.host, table, key) {
            self.metrics.count(Metric::KeyNameLearned);
        }
    }
}
