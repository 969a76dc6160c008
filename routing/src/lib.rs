//! Pure routing core of alternator-mesh.
//!
//! Every routing decision lives here so that the proxy-wasm filter and the discovery agent
//! agree byte for byte, and so that the official ScyllaDB client specifications can be tested
//! without a proxy. This crate performs no I/O, reads no clock and owns no randomness source:
//! callers pass time, counters and random numbers in. It compiles natively and for
//! `wasm32-wasip1`.
//!
//! How the pieces fit:
//!
//! - [`endpoint`]: canonical `scheme://host[:port]` identity and bytewise order, per the
//!   official "Query plans" spec; the `ip:port` form Envoy's `override_host` reads.
//! - [`snapshot`]: the node model and the versioned JSON snapshot the discovery agent publishes
//!   and the filter stores; [`localnodes`]: parsing Alternator's `/localnodes` answer.
//! - [`health`]: the "Node health" state machine (ACTIVE / QUARANTINED / DOWN, generations).
//! - [`passive`]: health observations from forwarded traffic (transport failures vs a node's
//!   own 5xx), shared by every worker of a proxy.
//! - [`scope`]: cluster / datacenter / rack, strict or falling back outward.
//! - [`plan`]: the per-request candidate list. A [`RoutingTable`] is built once per snapshot;
//!   round-robin and random plans are written into a caller's buffer without allocating, and
//!   health only filters the final choice ([`select`]).
//! - [`ring`]: token ownership per table (vnodes or tablets), checked for full coverage when
//!   the agent assembles it and carried in the snapshot as node indices.
//! - [`gorand`], [`hash`], [`affinity`], [`dynamodb`]: the seeded (Go-compatible) plan order,
//!   the affinity and token hashes, key-route affinity, and DynamoDB request classification and
//!   key extraction.
//!
//! ```
//! use alternator_routing::{NodeSnapshot, RoutingTable, Scope, ScopeMode, ScopePolicy};
//!
//! let snapshot = NodeSnapshot::from_json(br#"{"format":1,"version":3,"scheme":"http",
//!     "port":8000,"nodes":[
//!       {"address":"10.0.0.1","datacenter":"dc1","rack":"r1","health":"active"},
//!       {"address":"10.0.0.2","datacenter":"dc1","rack":"r2","health":"active"},
//!       {"address":"10.0.0.3","datacenter":"dc1","rack":"r1","health":"down"}]}"#)?;
//! let policy = ScopePolicy {
//!     scope: Scope::Rack { datacenter: "dc1".into(), rack: "r1".into() },
//!     mode: ScopeMode::Fallback,
//! };
//! // Once per snapshot:
//! let table = RoutingTable::new(snapshot, policy);
//! let mut plan = Vec::with_capacity(3);
//! let mut header = String::with_capacity(64);
//! // Per request: the worker's counter, the health to apply, first choice + 2 fallbacks.
//! table.round_robin(7, table.published_health(), 3, &mut plan);
//! table.push_override_hosts(&plan, &mut header);
//! // Rack r1's only live node first, then the rest of dc1; the down node never.
//! assert_eq!(header, "10.0.0.1:8000,10.0.0.2:8000");
//! # Ok::<(), alternator_routing::SnapshotError>(())
//! ```
#![forbid(unsafe_code)]

pub mod affinity;
pub mod dynamodb;
pub mod endpoint;
pub mod gorand;
pub mod hash;
pub mod health;
pub mod localnodes;
pub mod passive;
pub mod plan;
pub mod replicas;
pub mod ring;
pub mod scope;
pub mod snapshot;
pub mod token;

pub use endpoint::{Endpoint, EndpointError, Scheme};
pub use health::{HealthThresholds, NodeHealth, Observation};
pub use localnodes::{parse_localnodes, LocalNodes, LocalNodesError};
pub use plan::{select, RoutingTable};
pub use ring::{Layout, RangeOwners, Ring, RingError, TableOwnership, TableRing};
pub use scope::{Scope, ScopeMode, ScopePolicy};
pub use snapshot::{HealthState, Node, NodeSnapshot, SnapshotError};
