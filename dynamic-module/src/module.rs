//! The module's lifecycle over the engine: one [`ModuleConfig`] per Envoy filter
//! configuration, one engine `Worker` per configuration and worker thread, one
//! [`FilterState`] per HTTP stream.
//!
//! - **Main thread.** Each configuration owns the engine's `Root` (kept in a main-thread
//!   table, since it is not `Send`): the poller of the discovery agent, driven by a small
//!   ticker thread that posts an event to the main thread every `agent.tick_ms` through
//!   Envoy's configuration scheduler, and by Envoy's configuration-level HTTP callouts to
//!   the agent's cluster. It stores the snapshot in the process-wide store (`store`). One
//!   poller per process: every worker reads what it stores, so no poll lease is contended.
//! - **Worker threads.** Each thread builds its own engine `Worker` for a configuration on
//!   its first stream and routes every request with it, reading the store without locking.
//!   A request first checks the store's generation (one atomic load) and refreshes the
//!   worker's view when anything was written, or when a second has passed (the ring-age
//!   check is time-based).
//! - **Counters**: each worker adds to per-series atomics as each stream completes; the main
//!   thread hands the sums to Envoy every tick (`host::flush_counters`), so they trail the
//!   traffic by at most one tick, as in the proxy-wasm build. The traffic flag the agent reads
//!   goes to the store at most once a second.
//!
//! No decision is taken here: this is the host side of `alternator-engine`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alternator_engine::metrics::FAMILIES;
use alternator_engine::{Action, FilterConfig, MetricKind, RequestFlow, Root, Worker};

use crate::abi::{
    CalloutAnswer, ConfigHandle, FilterHandle, HookStatus, HttpFilter, HttpFilterConfig, Level,
    SchedulerHandle,
};
use crate::host::{flush_counters, EnvoyHost, EnvoyStream};
use crate::store::STORE;

/// Panics caught at the FFI boundary (see `abi::hooks`) since the last report.
static PANICS: AtomicU64 = AtomicU64::new(0);
static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

/// Counted whenever a hook panicked: its stream's state was dropped and the stream failed.
pub const PANICS_METRIC: &str = "alternator_module_panics_total";

/// How often a worker refreshes its view when nothing was written to the store.
const REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// How often a busy worker tells the poller (through the store) that it routes traffic.
const TRAFFIC_PERIOD: Duration = Duration::from_secs(1);

/// Panics caught and not yet reported to Envoy.
pub fn panics_pending() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// What one filter configuration shares with every thread: its Envoy handle, its raw
/// configuration (each worker thread parses its own copy) and its metric families.
#[derive(Debug)]
pub struct ConfigShared {
    pub id: u64,
    pub config: Arc<dyn ConfigHandle>,
    bytes: Vec<u8>,
    families: Vec<(&'static str, usize)>,
    panics: Option<usize>,
    /// False once Envoy destroyed the configuration: workers drop their copy.
    alive: AtomicBool,
}

impl ConfigShared {
    /// Envoy's id of the metric family `name`.
    pub fn metric_family(&self, name: &str) -> Option<usize> {
        self.families
            .iter()
            .find(|(family, _)| *family == name)
            .map(|(_, id)| *id)
    }
}

thread_local! {
    /// Each configuration's engine root, by configuration id (main thread).
    static ROOTS: RefCell<HashMap<u64, Root<EnvoyHost>>> = RefCell::new(HashMap::new());
    /// Answers that arrived while a root was busy (Envoy answering a callout inside the
    /// call that started it): delivered when the root is free again.
    static PENDING: RefCell<Vec<(u64, u64, CalloutAnswer)>> = const { RefCell::new(Vec::new()) };
    /// This worker thread's engine workers, one per live configuration.
    static WORKERS: RefCell<Vec<Rc<WorkerSlot>>> = const { RefCell::new(Vec::new()) };
}

/// Configuration ids Envoy destroyed on a thread other than the main one.
static DEAD_ROOTS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// One Envoy filter configuration (what Envoy's opaque configuration pointer points to).
#[derive(Debug)]
pub struct ModuleConfig {
    shared: Arc<ConfigShared>,
    ticker: Option<Ticker>,
}

/// The thread that wakes the poller on the main thread every tick.
#[derive(Debug)]
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(scheduler: Box<dyn SchedulerHandle>, period: Duration) -> Option<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("alternator-tick".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while !*stopped {
                    scheduler.commit(0);
                    stopped = wake
                        .wait_timeout(stopped, period)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            })
            .ok()?;
        Some(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A seed from std's randomly keyed hasher, the thread and the clock: distinct per worker.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn log(envoy: &dyn ConfigHandle, level: Level, message: &str) {
    if envoy.log_enabled(level) {
        envoy.log(level, message);
    }
}

/// Envoy creates a filter configuration (main thread). `None` rejects it: the error is
/// logged with the field it names, and Envoy refuses the configuration.
fn config_new(config: Arc<dyn ConfigHandle>, name: &[u8], bytes: &[u8]) -> Option<ModuleConfig> {
    prune_dead_roots();
    if let Err(e) = FilterConfig::parse(bytes) {
        log(&*config, Level::Error, &format!("alternator-filter: {e}"));
        return None;
    }
    let mut families = Vec::with_capacity(FAMILIES.len());
    for family in FAMILIES {
        let gauge = family.kind == MetricKind::Gauge;
        match config.define_metric(gauge, family.name, family.labels) {
            Some(id) => families.push((family.name, id)),
            None => log(
                &*config,
                Level::Warn,
                &format!(
                    "alternator-filter: Envoy refused metric {}; it will not be reported",
                    family.name
                ),
            ),
        }
    }
    let panics = config.define_metric(false, PANICS_METRIC, &[]);
    let shared = Arc::new(ConfigShared {
        id: NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed),
        config: Arc::clone(&config),
        bytes: bytes.to_vec(),
        families,
        panics,
        alive: AtomicBool::new(true),
    });
    let mut root = Root::new(EnvoyHost::new(Arc::clone(&shared)));
    let tick = root.configure(bytes, random_seed()).ok()?;
    ROOTS.with_borrow_mut(|roots| roots.insert(shared.id, root));
    let ticker = config.scheduler().and_then(|s| Ticker::start(s, tick));
    if ticker.is_none() {
        log(
            &*config,
            Level::Error,
            "alternator-filter: cannot schedule the agent poll; routing falls back to Envoy's policy",
        );
    }
    log(
        &*config,
        Level::Info,
        &format!(
            "alternator-filter: native module configured ({}), agent poll every {} ms",
            String::from_utf8_lossy(name),
            tick.as_millis()
        ),
    );
    Some(ModuleConfig { shared, ticker })
}

/// Envoy destroys a configuration, after every filter it created.
fn config_destroy(config: ModuleConfig) {
    let ModuleConfig { shared, ticker } = config;
    drop(ticker); // Stops and joins the ticker before the root goes.
    shared.alive.store(false, Ordering::Release);
    let root = ROOTS.with(|roots| {
        roots
            .try_borrow_mut()
            .ok()
            .and_then(|mut r| r.remove(&shared.id))
    });
    match root {
        Some(mut root) => root.on_done(),
        None => DEAD_ROOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(shared.id),
    }
    // Envoy destroys a configuration after its last filter: nothing counts any more.
    flush_counters(shared.id, true);
}

/// Drops the roots of configurations Envoy destroyed on another thread (main thread).
fn prune_dead_roots() {
    let dead = std::mem::take(
        &mut *DEAD_ROOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if dead.is_empty() {
        return;
    }
    ROOTS.with(|roots| {
        if let Ok(mut roots) = roots.try_borrow_mut() {
            for id in dead {
                if let Some(mut root) = roots.remove(&id) {
                    root.on_done();
                }
            }
        }
    });
}

/// Runs `f` on a configuration's root; false when the root is busy (a nested call).
fn with_root(id: u64, f: impl FnOnce(&mut Root<EnvoyHost>)) -> bool {
    ROOTS.with(|roots| match roots.try_borrow_mut() {
        Ok(mut roots) => {
            if let Some(root) = roots.get_mut(&id) {
                f(root);
            }
            true
        }
        Err(_) => false,
    })
}

/// Hands a callout answer to configuration `id`'s root; gives it back when the root is busy.
fn deliver(id: u64, callout_id: u64, answer: CalloutAnswer) -> Option<CalloutAnswer> {
    let delivered = with_root(id, |root| {
        root.on_agent_answer(callout_id, &answer.headers, &answer.body);
    });
    (!delivered).then_some(answer)
}

fn deliver_pending() {
    loop {
        let Some((id, callout_id, answer)) = PENDING.with_borrow_mut(Vec::pop) else {
            return;
        };
        if deliver(id, callout_id, answer).is_some() {
            return; // Still busy: dropped, the poller's deadline expires it.
        }
    }
}

/// The ticker's event (main thread): the poller's tick, and the panic count.
fn config_scheduled(config: &ModuleConfig, _event_id: u64) {
    prune_dead_roots();
    let panics = PANICS.swap(0, Ordering::Relaxed);
    if panics > 0 {
        if let Some(id) = config.shared.panics {
            config.shared.config.record_metric(false, id, &[], panics);
        }
        log(
            &*config.shared.config,
            Level::Error,
            &format!("alternator-filter: {panics} hook call(s) panicked; their streams were failed (503) and their state dropped"),
        );
    }
    with_root(config.shared.id, Root::on_tick);
    deliver_pending();
    flush_counters(config.shared.id, false);
}

/// The agent answered a configuration-level callout (main thread).
fn config_callout_done(config: &ModuleConfig, callout_id: u64, answer: CalloutAnswer) {
    if let Some(answer) = deliver(config.shared.id, callout_id, answer) {
        PENDING.with_borrow_mut(|p| p.push((config.shared.id, callout_id, answer)));
        return;
    }
    deliver_pending();
}

/// One worker thread's engine worker for one configuration.
#[derive(Debug)]
struct WorkerSlot {
    shared: Arc<ConfigShared>,
    host: EnvoyHost,
    worker: Rc<Worker<EnvoyHost>>,
    seen_generation: Cell<u64>,
    refreshed_at: Cell<Instant>,
    published_at: Cell<Option<Instant>>,
}

impl WorkerSlot {
    /// Refreshes the worker's view when the store changed or a period passed (`now`: the
    /// stream's start).
    fn before_request(&self, now: Instant) {
        let generation = STORE.generation();
        if generation != self.seen_generation.get()
            || now.duration_since(self.refreshed_at.get()) >= REFRESH_PERIOD
        {
            self.seen_generation.set(generation);
            self.refreshed_at.set(now);
            self.worker.refresh();
        }
    }

    /// Moves the stream's counts to the shared series, and the traffic flag to the poller now
    /// and then.
    fn after_request(&self) {
        self.worker.metrics.flush(&self.host);
        let now = Instant::now();
        if self
            .published_at
            .get()
            .is_none_or(|at| now.duration_since(at) >= TRAFFIC_PERIOD)
        {
            self.published_at.set(Some(now));
            self.worker.publish_traffic();
        }
    }
}

/// This thread's worker for `shared`, built on first use.
fn worker_for(shared: &Arc<ConfigShared>) -> Option<Rc<WorkerSlot>> {
    WORKERS.with_borrow_mut(|slots| {
        if let Some(slot) = slots.iter().find(|s| s.shared.id == shared.id) {
            return Some(Rc::clone(slot));
        }
        slots.retain(|s| s.shared.alive.load(Ordering::Acquire));
        let config = FilterConfig::parse(&shared.bytes).ok()?;
        let host = EnvoyHost::new(Arc::clone(shared));
        let worker = Rc::new(Worker::new(host.clone(), config, random_seed()));
        let slot = Rc::new(WorkerSlot {
            shared: Arc::clone(shared),
            host,
            worker,
            seen_generation: Cell::new(STORE.generation().wrapping_sub(1)),
            refreshed_at: Cell::new(Instant::now()),
            published_at: Cell::new(None),
        });
        slots.push(Rc::clone(&slot));
        Some(slot)
    })
}

/// One HTTP stream (what Envoy's opaque filter pointer points to).
#[derive(Debug)]
pub struct FilterState {
    slot: Option<Rc<WorkerSlot>>,
    flow: Option<RequestFlow<EnvoyHost>>,
    /// When Envoy created the stream: passive health reads the request's duration from it.
    started: Instant,
}

/// A new stream (worker thread).
fn filter_new(config: &ModuleConfig) -> FilterState {
    let slot = worker_for(&config.shared);
    if slot.is_none() {
        log(
            &*config.shared.config,
            Level::Error,
            "alternator-filter: no worker for this configuration; the request is routed by Envoy's own policy",
        );
    }
    let started = Instant::now();
    let flow = slot.as_ref().map(|slot| {
        slot.before_request(started);
        RequestFlow::new(Rc::clone(&slot.worker))
    });
    FilterState {
        slot,
        flow,
        started,
    }
}

fn status(action: Action) -> HookStatus {
    match action {
        Action::Continue => HookStatus::Continue,
        Action::Pause => HookStatus::Stop,
    }
}

impl FilterState {
    /// Runs the request flow, if this stream has one, over Envoy's side of the stream.
    fn flow<E: FilterHandle>(
        &mut self,
        envoy: &E,
        step: impl FnOnce(&mut RequestFlow<EnvoyHost>, &mut EnvoyStream<'_, E>) -> Action,
    ) -> HookStatus {
        let Some(flow) = self.flow.as_mut() else {
            return HookStatus::Continue;
        };
        status(step(
            flow,
            &mut EnvoyStream {
                envoy,
                started: self.started,
            },
        ))
    }
}

impl HttpFilter for FilterState {
    fn on_request_headers(&mut self, envoy: &impl FilterHandle, end_of_stream: bool) -> HookStatus {
        self.flow(envoy, |flow, stream| {
            flow.on_request_headers(stream, end_of_stream)
        })
    }

    /// Stop: Envoy buffers the request body and holds it.
    fn on_request_body(&mut self, envoy: &impl FilterHandle, end_of_stream: bool) -> HookStatus {
        let size = envoy.body_size(true);
        self.flow(envoy, |flow, stream| {
            flow.on_request_body(stream, size, end_of_stream)
        })
    }

    fn on_response_headers(
        &mut self,
        envoy: &impl FilterHandle,
        _end_of_stream: bool,
    ) -> HookStatus {
        // The response headers are never held.
        self.flow(envoy, |flow, stream| {
            flow.on_response_headers(stream);
            Action::Continue
        })
    }

    /// Stop: Envoy buffers the response body and holds it.
    fn on_response_body(&mut self, envoy: &impl FilterHandle, end_of_stream: bool) -> HookStatus {
        let size = envoy.body_size(false);
        self.flow(envoy, |flow, stream| {
            flow.on_response_body(stream, size, end_of_stream)
        })
    }

    /// The stream is done (Envoy's stream-complete hook, before the access log).
    fn on_stream_complete(&mut self, envoy: &impl FilterHandle) {
        self.flow(envoy, |flow, stream| {
            flow.on_stream_end(stream);
            Action::Continue
        });
        if let Some(slot) = &self.slot {
            slot.after_request();
        }
    }
}

impl HttpFilterConfig for ModuleConfig {
    type Filter = FilterState;

    fn new(envoy: Arc<dyn ConfigHandle>, name: &[u8], config: &[u8]) -> Option<Self> {
        config_new(envoy, name, config)
    }

    fn on_scheduled(&self, event_id: u64) {
        config_scheduled(self, event_id);
    }

    fn on_callout_done(&self, callout_id: u64, answer: CalloutAnswer) {
        config_callout_done(self, callout_id, answer);
    }

    fn new_filter(&self) -> FilterState {
        filter_new(self)
    }

    fn destroy(self) {
        config_destroy(self);
    }

    fn note_panic() {
        PANICS.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
