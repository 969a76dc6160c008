//! proxy-wasm filter for Envoy and Istio: chooses the Alternator node for each DynamoDB request.
//!
//! A thin adapter around the pure routing core (`alternator-routing`): this crate is the only
//! caller of proxy-wasm host functions (all of them in [`host`]). The root context parses the
//! plugin configuration once, and the worker holding the poll lease keeps the discovery agent's
//! node snapshot in shared data; each HTTP context writes the chosen `ip:port` list into the
//! header that Envoy's `override_host` load-balancing policy reads. See `README.md` for the
//! configuration and `docs/architecture.md` for how the parts fit.

pub mod config;
mod host;
mod http;
pub mod lease;
mod metrics;
mod root;
mod shared;
mod view;
mod worker;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> { Box::new(root::Root::new()) });
}}
