//! Pure routing core of alternator-mesh.
//!
//! Every routing decision lives here so that the proxy-wasm filter and the discovery agent
//! agree byte for byte, and so that the official ScyllaDB client specifications can be tested
//! without a proxy. This crate performs no I/O, reads no clock and owns no randomness source:
//! callers pass time, counters and random numbers in. It compiles natively and for
//! `wasm32-wasip1`.
#![forbid(unsafe_code)]

pub mod affinity;
pub mod dynamodb;
pub mod endpoint;
pub mod gorand;
pub mod hash;
pub mod health;
pub mod localnodes;
pub mod plan;
pub mod scope;
pub mod snapshot;

pub use endpoint::{Endpoint, EndpointError, Scheme};
pub use health::{HealthThresholds, NodeHealth, Observation};
pub use localnodes::{parse_localnodes, LocalNodes, LocalNodesError};
pub use plan::{select, RoutingTable};
pub use scope::{Scope, ScopeMode, ScopePolicy};
pub use snapshot::{HealthState, Node, NodeSnapshot, SnapshotError};
