//! The engine's host traits over proxy-wasm host calls: the only place this crate calls the
//! proxy.
//!
//! The SDK's trait helpers `unwrap()` every host status, which would abort the VM on any
//! unexpected answer from Envoy. These implementations return `Option`/`Result`/`bool`
//! instead, and the engine decides how to degrade (in practice: let the request continue with
//! ordinary routing).
//!
//! Both types are zero-sized: proxy-wasm host calls act on the current context, which Envoy
//! sets before every callback, so there is nothing to hold.

use std::time::{Duration, UNIX_EPOCH};

use alternator_engine::host::{Host, LogLevel, MetricKind, SharedError, Stream};
use alternator_engine::metrics::flat_name;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel as WasmLogLevel, MapType, MetricType, Status};

/// The worker VM's side of Envoy.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

/// The HTTP stream whose callback is running.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmStream;

fn wasm_level(level: LogLevel) -> WasmLogLevel {
    match level {
        LogLevel::Trace => WasmLogLevel::Trace,
        LogLevel::Debug => WasmLogLevel::Debug,
        LogLevel::Info => WasmLogLevel::Info,
        LogLevel::Warn => WasmLogLevel::Warn,
        LogLevel::Error => WasmLogLevel::Error,
    }
}

pub fn buffer(kind: BufferType, start: usize, max_size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(kind, start, max_size).ok().flatten()
}

fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(map, name).ok().flatten()
}

/// A request property (`["upstream", "address"]`, ...).
fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// An integer property (Envoy encodes them as 8 little-endian bytes).
fn property_u64(path: &[&str]) -> Option<u64> {
    property(path)
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_le_bytes)
}

impl WasmHost {
    pub fn set_tick_period(self, period: Duration) -> bool {
        hostcalls::set_tick_period(period).is_ok()
    }
}

impl Host for WasmHost {
    /// proxy-wasm's token of a dispatched call.
    type CallId = u32;

    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn log(&self, level: LogLevel, message: &str) {
        // Nothing sensible to do if logging itself fails.
        let _ = hostcalls::log(wasm_level(level), message);
    }

    fn log_enabled(&self, level: LogLevel) -> bool {
        // Envoy filters what it writes itself; only debug lines are worth a host call to
        // skip formatting them.
        level >= LogLevel::Info
            || matches!(
                hostcalls::get_log_level(),
                Ok(l) if l as u32 <= wasm_level(level) as u32
            )
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => SharedError::CasMismatch,
            _ => SharedError::Refused,
        })
    }

    /// proxy-wasm metrics have no labels: the series is named `family;label=value;...`,
    /// which the shipped `envoy.yaml` turns back into tags.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, &flat_name(name, labels)).ok()
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let _ = hostcalls::increment_metric(id, by);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, String> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
            .map_err(|status| format!("{status:?}"))
    }
}

/// The answer to the HTTP call being delivered: its headers (`:status` included) and up to
/// `body_size` bytes of its body.
pub fn http_call_answer(body_size: usize) -> (Vec<(String, String)>, Vec<u8>) {
    let headers = hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let body = buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
    (headers, body)
}

impl Stream for WasmStream {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        header(MapType::HttpRequestHeaders, name)
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value)).is_ok()
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_ok()
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        buffer(BufferType::HttpRequestBody, 0, size)
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        header(MapType::HttpResponseHeaders, name)
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        buffer(BufferType::HttpResponseBody, 0, size)
    }

    fn upstream_address(&self) -> Option<Vec<u8>> {
        property(&["upstream", "address"])
    }

    fn response_flags(&self) -> Option<u64> {
        property_u64(&["response", "flags"])
    }

    fn response_code(&self) -> Option<u64> {
        property_u64(&["response", "code"])
    }

    fn upstream_request_attempts(&self) -> Option<u64> {
        property_u64(&["upstream", "request_attempt_count"])
    }

    fn request_duration_ms(&self) -> Option<u64> {
        // A duration property is its nanoseconds as 8 little-endian bytes.
        property_u64(&["request", "duration"]).map(|ns| ns / 1_000_000)
    }

    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body)).is_ok()
    }
}
