//! The engine's host traits over the dynamic-module ABI's safe handles (`abi`).
//!
//! [`EnvoyHost`] is one thread's view of Envoy for one filter configuration: clock, log,
//! the process-wide store (`store`), metrics through the configuration's counter and gauge
//! families, and, on the main thread only, HTTP calls to a cluster.
//!
//! Counting costs a worker one atomic add: Envoy's labelled counters build their stat name on
//! every update, so the sums go to Envoy from the main thread once per tick instead
//! ([`flush_counters`]), as the proxy-wasm build hands them over on its tick. [`EnvoyStream`] is the
//! HTTP stream whose hook is running.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alternator_engine::host::{Host, LogLevel, MetricKind, SharedError, Stream};

use crate::abi::{Attribute, ConfigHandle, FilterHandle, HeaderMap, Level};
use crate::module::ConfigShared;
use crate::store::STORE;

/// A counter series the engine defined: its family's Envoy id, its label values, and what
/// workers counted since the main thread last handed it to Envoy.
#[derive(Debug)]
pub struct CounterSeries {
    config: u64,
    envoy: Arc<dyn ConfigHandle>,
    family_id: usize,
    labels: Vec<String>,
    pending: AtomicU64,
}

/// Every counter series of every configuration, swept by the main thread each tick
/// ([`flush_counters`]). Locked only when a thread defines a series (once per series and
/// thread) and by the sweep; counting itself is an atomic add on the series.
static COUNTERS: Mutex<Vec<Arc<CounterSeries>>> = Mutex::new(Vec::new());

fn counters() -> std::sync::MutexGuard<'static, Vec<Arc<CounterSeries>>> {
    COUNTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hands what workers counted for configuration `config` to Envoy (main thread, every tick,
/// and once more when the configuration goes). With `forget`, drops its series afterwards.
pub fn flush_counters(config: u64, forget: bool) {
    let mut all = counters();
    for series in all.iter().filter(|s| s.config == config) {
        let count = series.pending.swap(0, Ordering::Relaxed);
        if count > 0 {
            let labels: Vec<&str> = series.labels.iter().map(String::as_str).collect();
            // A refused update loses these counts; nothing else to do about it.
            let _ = series
                .envoy
                .record_metric(false, series.family_id, &labels, count);
        }
    }
    if forget {
        all.retain(|s| s.config != config);
    }
}

/// A metric the engine defined on this thread: a counter series, or a gauge (recorded at once;
/// only the poller on the main thread records gauges).
#[derive(Debug)]
enum Series {
    Counter(Arc<CounterSeries>),
    Gauge {
        family_id: usize,
        labels: Vec<String>,
    },
}

/// One thread's host for one filter configuration (see the module docs).
#[derive(Debug, Clone)]
pub struct EnvoyHost {
    shared: Arc<ConfigShared>,
    /// The series the engine defined on this thread; its metric ids index this list.
    series: Rc<RefCell<Vec<Series>>>,
}

impl EnvoyHost {
    pub fn new(shared: Arc<ConfigShared>) -> Self {
        EnvoyHost {
            shared,
            series: Rc::default(),
        }
    }
}

fn level(level: LogLevel) -> Level {
    match level {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    }
}

impl Host for EnvoyHost {
    /// Envoy's id of a configuration-level callout.
    type CallId = u64;

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn log(&self, lvl: LogLevel, message: &str) {
        self.shared.config.log(level(lvl), message);
    }

    fn log_enabled(&self, lvl: LogLevel) -> bool {
        self.shared.config.log_enabled(level(lvl))
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        STORE.get(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        STORE.set(key, value, cas)
    }

    /// Envoy's labelled metrics: the family was defined with its label names when the
    /// configuration was created; a series is its label values.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let family_id = self.shared.metric_family(name)?;
        let labels = labels.iter().map(|(_, value)| value.to_string()).collect();
        let mut series = self.series.borrow_mut();
        let id = u32::try_from(series.len()).ok()?;
        series.push(match kind {
            MetricKind::Gauge => Series::Gauge { family_id, labels },
            MetricKind::Counter => {
                let counter = Arc::new(CounterSeries {
                    config: self.shared.id,
                    envoy: Arc::clone(&self.shared.config),
                    family_id,
                    labels,
                    pending: AtomicU64::new(0),
                });
                counters().push(Arc::clone(&counter));
                Series::Counter(counter)
            }
        });
        Some(id)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        if let Some(Series::Counter(counter)) = self.series.borrow().get(id as usize) {
            counter
                .pending
                .fetch_add(u64::try_from(by).unwrap_or(0), Ordering::Relaxed);
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some(Series::Gauge { family_id, labels }) = self.series.borrow().get(id as usize) {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let _ = self
                .shared
                .config
                .record_metric(true, *family_id, &labels, value);
        }
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, String> {
        self.shared.config.http_callout(cluster, headers, timeout)
    }
}

/// The response-code details of the module's local replies (413, 503).
const LOCAL_REPLY_DETAILS: &str = "alternator_mesh_local_reply";

/// The HTTP stream whose hook is running.
#[derive(Debug)]
pub struct EnvoyStream<'a, E> {
    pub envoy: &'a E,
    /// When the stream began: the request's duration at stream end is measured from it.
    pub started: Instant,
}

impl<E: FilterHandle> Stream for EnvoyStream<'_, E> {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.envoy.header(HeaderMap::Request, name)
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.envoy.set_header(HeaderMap::Request, name, Some(value))
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        self.envoy.set_header(HeaderMap::Request, name, None)
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        Some(self.envoy.body(true, size))
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.envoy.header(HeaderMap::Response, name)
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        Some(self.envoy.body(false, size))
    }

    fn upstream_address(&self) -> Option<Vec<u8>> {
        self.envoy.attribute_string(Attribute::UpstreamAddress)
    }

    fn response_flags(&self) -> Option<u64> {
        self.envoy.attribute_int(Attribute::ResponseFlags)
    }

    fn response_code(&self) -> Option<u64> {
        self.envoy.attribute_int(Attribute::ResponseCode)
    }

    fn upstream_request_attempts(&self) -> Option<u64> {
        self.envoy
            .attribute_int(Attribute::UpstreamRequestAttemptCount)
    }

    fn request_duration_ms(&self) -> Option<u64> {
        // Envoy 1.40 does not give `request.duration` to an HTTP filter module (the attribute
        // call reports it missing), so the module times the stream itself.
        Some(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
        self.envoy
            .send_response(status, headers, body, LOCAL_REPLY_DETAILS);
        true
    }
}
