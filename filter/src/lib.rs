//! proxy-wasm filter for Envoy and Istio: chooses the Alternator node for each DynamoDB request.
//!
//! A thin host adapter: every decision is the engine's (`alternator-engine`), every rule the
//! routing core's (`alternator-routing`). This crate is the only caller of proxy-wasm: [`host`]
//! implements the engine's host traits with host calls, and the root and HTTP contexts hand
//! each callback to the engine. See `README.md` for the configuration and
//! `docs/architecture.md` for how the parts fit.

mod host;
mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> { Box::new(root::RootAdapter::new()) });
}}
