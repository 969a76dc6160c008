//! The only place that calls proxy-wasm host functions.
//!
//! The SDK's trait helpers `unwrap()` every host status, which would abort the VM on any
//! unexpected answer from Envoy. These wrappers return `Option`/`Result` instead, so every
//! caller decides how to degrade (in practice: let the request continue with ordinary routing).

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

pub use proxy_wasm::types::{BufferType as Buffer, MapType as Map};

pub fn log(level: LogLevel, message: &str) {
    // Nothing sensible to do if logging itself fails.
    let _ = hostcalls::log(level, message);
}

macro_rules! log_info { ($($arg:tt)*) => { $crate::host::log(proxy_wasm::types::LogLevel::Info, &format!($($arg)*)) } }
macro_rules! log_warn { ($($arg:tt)*) => { $crate::host::log(proxy_wasm::types::LogLevel::Warn, &format!($($arg)*)) } }
macro_rules! log_error { ($($arg:tt)*) => { $crate::host::log(proxy_wasm::types::LogLevel::Error, &format!($($arg)*)) } }
macro_rules! log_debug {
    ($($arg:tt)*) => {
        if $crate::host::debug_enabled() {
            $crate::host::log(proxy_wasm::types::LogLevel::Debug, &format!($($arg)*))
        }
    }
}
pub(crate) use {log_debug, log_error, log_info, log_warn};

/// Whether Envoy's log level for wasm admits debug lines (checked before formatting).
pub fn debug_enabled() -> bool {
    matches!(
        hostcalls::get_log_level(),
        Ok(LogLevel::Trace | LogLevel::Debug)
    )
}

/// Milliseconds since the Unix epoch by Envoy's clock; 0 if the host cannot tell.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn set_tick_period(period: Duration) -> bool {
    hostcalls::set_tick_period(period).is_ok()
}

pub fn buffer(kind: BufferType, start: usize, max_size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(kind, start, max_size).ok().flatten()
}

pub fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(map, name).ok().flatten()
}

pub fn set_header(map: MapType, name: &str, value: &[u8]) -> bool {
    hostcalls::set_map_value_bytes(map, name, Some(value)).is_ok()
}

pub fn remove_header(map: MapType, name: &str) -> bool {
    hostcalls::remove_map_value(map, name).is_ok()
}

pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    hostcalls::send_http_response(status, headers.to_vec(), Some(body)).is_ok()
}

/// A shared-data value and its CAS token (`None` value: the key does not exist).
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes a shared-data value; with `cas`, only if nobody wrote since that token was read.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

/// A filter-state or request property (`["upstream", "address"]`, ...).
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// An integer property (Envoy encodes them as 8 little-endian bytes).
pub fn property_u64(path: &[&str]) -> Option<u64> {
    property(path)
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_le_bytes)
}

pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
}

pub fn http_call_response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

pub fn http_call_response_body(size: usize) -> Option<Vec<u8>> {
    buffer(BufferType::HttpCallResponseBody, 0, size)
}

pub fn define_counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

pub fn define_gauge(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Gauge, name).ok()
}

pub fn increment(metric: u32, by: i64) {
    let _ = hostcalls::increment_metric(metric, by);
}

pub fn record(metric: u32, value: u64) {
    let _ = hostcalls::record_metric(metric, value);
}
