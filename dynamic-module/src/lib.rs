//! The alternator-mesh filter as a native Envoy dynamic module
//! (`envoy.filters.http.dynamic_modules`), for Envoy sidecars and gateways whose operators
//! control the Envoy binary. Istio loads only proxy-wasm, so `filter/` stays the mesh build.
//!
//! The same engine (`alternator-engine`) takes every decision, with the same plugin
//! configuration, routing header, metrics and passive health as the proxy-wasm build; only
//! the host differs:
//!
//! ```text
//! routing (pure rules) ← engine (decisions, host traits) ← dynamic-module (Envoy's C ABI)
//! ```
//!
//! - [`abi`]: Envoy's C ABI — raw declarations (`abi::sys`), safe handles and the traits
//!   they implement (`abi::handles`), exported hooks dispatching to the module's traits
//!   (`abi::hooks`). The only `unsafe` code of the project lives there, each block with its
//!   `SAFETY:` reason, and no panic crosses into Envoy.
//! - [`module`]: configurations, per-thread engine workers, streams: implements the hooks'
//!   traits over the handle traits, so its tests run against a mock Envoy.
//! - [`host`]: the engine's host traits over the handle traits.
//! - [`store`]: the state every worker thread shares, read without locking.
#![deny(unsafe_op_in_unsafe_fn)]

// The workspace denies `unsafe_code`; the ABI module alone may use it.
#[allow(unsafe_code)]
pub mod abi;
pub mod host;
pub mod module;
pub mod store;
