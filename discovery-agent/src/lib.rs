//! alternator-discovery-agent: finds, vets and publishes the live ScyllaDB Alternator nodes.
//!
//! A small native sidecar between a ScyllaDB cluster and the alternator-mesh filters in Envoy.
//! It asks Alternator's `/localnodes` for the nodes of each configured scope (rack, datacenter,
//! extra datacenters) — one request per scope per refresh, to a known live node first and the
//! seeds last — admits new nodes in quarantine until `GET /` answers 200, and publishes the
//! result once for every Envoy on the host:
//!
//! - `GET /v1/nodes`: the routing core's snapshot (ETag, `If-None-Match`, long-poll), read by
//!   the filter;
//! - `POST /v3/discovery:endpoints`: Envoy REST EDS, so the cluster's membership (which
//!   `override_host` requires) matches the snapshot;
//! - `/metrics`, `/healthz`, `/readyz`;
//! - optionally DNS ([`dns`]): A/AAAA answers for a zone, for applications without Envoy;
//! - optionally token ownership ([`ring_discovery`]): per table, read through Alternator's internal
//!   tables (signed with [`sigv4`] when authorization is enforced), carried in the snapshot.
//!
//! The service is [`run`]`(config, sockets, transport, shutdown)`, with a configuration that
//! only [`Config::validate`] produces; `main` only parses flags, binds the sockets, sets up
//! logging and turns SIGTERM/SIGINT into the shutdown future. What the tasks share is in
//! [`state`]. Pure decisions (whom to ask,
//! backoff, membership, EDS documents) are plain functions in [`discovery`], [`topology`] and
//! [`eds`]; the network sits behind [`transport::Transport`] so the loop can be tested with
//! an in-memory cluster under paused time.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod dns;
pub mod eds;
pub mod metrics;
pub mod ring_discovery;
pub mod sigv4;
pub mod state;
pub mod topology;
pub mod transport;

pub use agent::{run, Sockets};
pub use cli::{Cli, EXIT_USAGE};
pub use config::{Config, ConfigError, ValidatedConfig};
