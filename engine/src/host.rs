//! What the engine needs from the proxy that runs it, and nothing more.
//!
//! Two traits split the host along the lifetimes the proxy itself has. [`Host`] is the
//! worker's view of the proxy: clock, logging, state shared by every worker of one proxy,
//! metrics, and HTTP calls to a cluster. [`Stream`] is one request in flight: its headers,
//! buffered bodies and the stream properties Envoy reports when it ends. The proxy-wasm build
//! (`filter/`) and the native dynamic module (`dynamic-module/`) implement both; the engine's
//! tests implement them with a scripted mock.
//!
//! The seam carries meaning, not a host's encoding: metrics are defined by family name and
//! label pairs (a host with flat stat names composes its own form, one with labelled stats
//! uses them), and the answer to an HTTP call is pushed into the engine
//! ([`crate::Root::on_agent_answer`]) with the host's own call id ([`Host::CallId`]).
//!
//! Every method reports failure as a value (`None`, `false`, `Err`): the engine degrades to
//! ordinary routing, it never aborts a request because the host misbehaved.

use std::fmt;
use std::time::Duration;

/// Severity of a log line, in the proxy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What a metric is to the proxy's stats system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// A compare-and-swap write that lost: someone wrote the key since its token was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SharedError {
    #[error("the value changed since it was read")]
    CasMismatch,
    #[error("the host refused the write")]
    Refused,
}

/// The proxy as one worker sees it.
pub trait Host {
    /// The host's id of an HTTP call it started, handed back with the answer: proxy-wasm's
    /// `u32` token, Envoy's `u64` callout id for a dynamic module.
    type CallId: Copy + Eq + fmt::Debug;

    /// Milliseconds since the Unix epoch by the proxy's clock (0 if it cannot tell).
    fn now_ms(&self) -> u64;

    fn log(&self, level: LogLevel, message: &str);
    /// Whether a line at `level` would be written: checked before formatting one.
    fn log_enabled(&self, level: LogLevel) -> bool;

    /// A value shared by every worker of this proxy, and its compare-and-swap token
    /// (`None` value: the key does not exist).
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared value; with `cas`, only if nobody wrote since that token was read.
    /// `None` or a token of 0 (what reading a missing key gives) writes unconditionally, as
    /// proxy-wasm does: the first write of a key cannot be guarded.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError>;

    /// The id of the series of metric family `name` with these `(label, value)` pairs (in
    /// the family's label order, see `metrics`), defining it on first use.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<u32>;
    fn increment_metric(&self, id: u32, by: i64);
    fn record_metric(&self, id: u32, value: u64);

    /// Starts a GET-like call to an upstream cluster; the host hands the answer to
    /// [`crate::Root::on_agent_answer`] with the id returned here.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Self::CallId, String>;
}

/// One HTTP stream through the proxy, as the engine's request flow sees it.
pub trait Stream {
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool;
    fn remove_request_header(&mut self, name: &str) -> bool;
    /// The request body buffered so far, up to `size` bytes.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// The response body buffered so far, up to `size` bytes.
    fn response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// `ip:port` of the upstream that served the final attempt.
    fn upstream_address(&self) -> Option<Vec<u8>>;
    /// Envoy's response-flag bits (`response.flags`).
    fn response_flags(&self) -> Option<u64>;
    /// The status sent downstream (`response.code`).
    fn response_code(&self) -> Option<u64>;
    /// Attempts made upstream, retries included (`upstream.request_attempt_count`).
    fn upstream_request_attempts(&self) -> Option<u64>;
    /// How long the request took, in milliseconds (`request.duration`), read when it ended.
    /// `None` (the default): unknown, and a retried request's earlier failures then count as
    /// ordinary transport failures rather than timeouts.
    fn request_duration_ms(&self) -> Option<u64> {
        None
    }
    /// Answers the request locally instead of forwarding it.
    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool;
}

/// What the proxy should do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue,
    /// Hold the stream: waiting for more body, or a local reply was sent.
    Pause,
}

macro_rules! log_at {
    ($host:expr, $level:expr, $($arg:tt)*) => {{
        let host = $host;
        if $crate::host::Host::log_enabled(host, $level) {
            $crate::host::Host::log(host, $level, &format!($($arg)*));
        }
    }};
}
macro_rules! log_debug { ($host:expr, $($arg:tt)*) => { $crate::host::log_at!($host, $crate::host::LogLevel::Debug, $($arg)*) } }
macro_rules! log_info { ($host:expr, $($arg:tt)*) => { $crate::host::log_at!($host, $crate::host::LogLevel::Info, $($arg)*) } }
macro_rules! log_warn { ($host:expr, $($arg:tt)*) => { $crate::host::log_at!($host, $crate::host::LogLevel::Warn, $($arg)*) } }
macro_rules! log_error { ($host:expr, $($arg:tt)*) => { $crate::host::log_at!($host, $crate::host::LogLevel::Error, $($arg)*) } }
pub(crate) use {log_at, log_debug, log_error, log_info, log_warn};
