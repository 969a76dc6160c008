//! A proxy-wasm HTTP filter that lets every request through untouched.
//!
//! `make bench` runs Envoy's shipped configuration with this module in place of
//! alternator-filter: the difference between the two is the filter's own work, and the
//! difference between this one and no filter is the fixed price of any Rust proxy-wasm filter
//! (one V8 entry per callback, context creation and deletion).
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> {
        Box::new(PassThrough)
    });
}}

/// Every callback keeps the SDK's default: continue.
struct PassThrough;

impl Context for PassThrough {}

impl HttpContext for PassThrough {}
