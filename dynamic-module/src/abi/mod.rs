//! Envoy's dynamic-module C ABI: the only module of this crate with `unsafe` code.
//!
//! Three layers, one file each:
//!
//! - [`sys`]: the raw declarations — ABI types, constants and the `extern "C"` callbacks this
//!   module calls, as in Envoy's `abi.h`.
//! - [`handles`]: safe handles over them ([`Config`], [`Scheduler`], [`Filter`]) and the traits
//!   they implement ([`ConfigHandle`], [`SchedulerHandle`], [`FilterHandle`]); the module's
//!   logic sees only the traits, so its tests drive it with a mock (`mock`).
//! - [`hooks`]: the exported `envoy_dynamic_module_on_*` functions, a thin generic dispatch
//!   onto the traits the module implements ([`HttpFilterConfig`], [`HttpFilter`]); no panic
//!   crosses into Envoy.
//!
//! Every `unsafe` block carries its `SAFETY:` reason.

pub mod handles;
pub mod hooks;
#[cfg(test)]
pub mod mock;
pub mod sys;

pub use handles::{
    CalloutAnswer, Config, ConfigHandle, Filter, FilterHandle, Scheduler, SchedulerHandle,
};
pub use hooks::{HookStatus, HttpFilter, HttpFilterConfig};
pub use sys::{Attribute, HeaderMap, Level};
