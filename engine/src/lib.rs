//! The filter's decisions, independent of the proxy that runs them.
//!
//! `alternator-routing` holds the pure rules (scopes, health, plans, key extraction); this
//! crate decides when and how they apply: the plugin configuration ([`config`]), polling the
//! discovery agent and who holds the poll lease ([`poll`], [`lease`]), the request flow from
//! headers to routing header, local replies and stream end ([`request`]), passive health and
//! learned key names ([`worker`]), and what is counted ([`metrics`]).
//!
//! It reaches its proxy only through the traits in [`host`]: the proxy-wasm build (`filter/`)
//! and the native Envoy dynamic module (`dynamic-module/`) implement them; tests implement
//! them with a scripted mock. No decision is taken in a host adapter.
//!
//! ```text
//! routing (pure rules) ← engine (decisions, host traits) ← filter (proxy-wasm host, wasm32)
//!                                                        ← dynamic-module (Envoy's C ABI, native)
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod host;
pub mod lease;
pub mod metrics;
pub mod poll;
pub mod request;
pub mod root;
pub mod shared;
pub mod view;
pub mod worker;

pub use config::{ConfigError, FilterConfig};
pub use host::{Action, Host, LogLevel, MetricKind, SharedError, Stream};
pub use request::RequestFlow;
pub use root::Root;
pub use worker::Worker;
