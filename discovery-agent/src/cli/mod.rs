//! Command-line flags, each with an `ALTERNATOR_AGENT_*` environment variable, and their
//! conversion into a [`ValidatedConfig`].
//!
//! Parsing lives here, not in `main`, so tests can check every rule; `main` only turns a
//! [`ConfigError`] into one line on stderr and exit status 64 (`EX_USAGE`). clap-only types
//! (`*Arg`) convert into the configuration's own.

mod duration;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alternator_routing::endpoint::Scheme;
use alternator_routing::health::DEFAULT_PROBE_CONCURRENCY;
use alternator_routing::scope::ScopeMode;
use clap::{Parser, ValueEnum};

use crate::config::{
    Config, ConfigError, RingConfig, RingTables, TlsTrust, ValidatedConfig, DEFAULT_RING_REGION,
};
use crate::dns::config::{parse_zone, DnsConfig, DEFAULT_ZONE};
use crate::sigv4::credentials::read_credentials_file;
use crate::sigv4::{Credentials, Secret};
pub use duration::parse_duration;

/// Exit status for a bad flag or environment value (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: i32 = 64;

/// `--scope-mode` and `--dns-scope-mode` as clap parses them; converts into the routing
/// core's [`ScopeMode`], which the configuration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeModeArg {
    /// Walk rack → datacenter (→ extra datacenters): the filter may fall back to wider scopes.
    Fallback,
    /// Learn only the narrowest configured scope (plus explicitly named extra datacenters).
    Strict,
}

impl From<ScopeModeArg> for ScopeMode {
    fn from(mode: ScopeModeArg) -> Self {
        match mode {
            ScopeModeArg::Fallback => ScopeMode::Fallback,
            ScopeModeArg::Strict => ScopeMode::Strict,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Scheme of the Alternator API, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS (see `--ca-file`).
    Https,
}

/// `alternator-discovery-agent` command line. Every flag also reads `ALTERNATOR_AGENT_<NAME>`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "alternator-discovery-agent",
    version,
    about = "Discovers, vets and publishes the live ScyllaDB Alternator nodes for alternator-mesh \
             filters (GET /v1/nodes) and Envoy (REST EDS)."
)]
pub struct Cli {
    /// Alternator nodes to ask first (host names or IPs, comma-separated or repeated). Only used
    /// to reach the cluster; the published nodes are what `/localnodes` answers.
    #[arg(
        long = "seeds",
        env = "ALTERNATOR_AGENT_SEEDS",
        value_delimiter = ',',
        required = true
    )]
    pub seeds: Vec<String>,

    /// Alternator port, the same on every node.
    #[arg(long, env = "ALTERNATOR_AGENT_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Scheme of the Alternator API.
    #[arg(long, env = "ALTERNATOR_AGENT_SCHEME", value_enum, default_value_t = SchemeArg::Http)]
    pub scheme: SchemeArg,

    /// PEM file with the CA certificate(s) that sign the Alternator nodes' certificates
    /// (https only).
    #[arg(long, env = "ALTERNATOR_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Accept any Alternator certificate without verification. For development only: anyone on
    /// the path can impersonate a node.
    #[arg(
        long,
        env = "ALTERNATOR_AGENT_INSECURE_SKIP_VERIFY",
        default_value_t = false
    )]
    pub insecure_skip_verify: bool,

    /// The local datacenter (as Scylla names it). Unset: whatever the asked node calls its own.
    #[arg(long, env = "ALTERNATOR_AGENT_DATACENTER")]
    pub datacenter: Option<String>,

    /// The local rack within `--datacenter`.
    #[arg(long, env = "ALTERNATOR_AGENT_RACK")]
    pub rack: Option<String>,

    /// `fallback` learns the rack and its whole datacenter; `strict` only the narrowest scope.
    #[arg(long, env = "ALTERNATOR_AGENT_SCOPE_MODE", value_enum, default_value_t = ScopeModeArg::Fallback)]
    pub scope_mode: ScopeModeArg,

    /// Other datacenters whose nodes are published too (comma-separated).
    #[arg(
        long,
        env = "ALTERNATOR_AGENT_EXTRA_DATACENTERS",
        value_delimiter = ','
    )]
    pub extra_datacenters: Vec<String>,

    /// Refresh interval while filters report traffic (e.g. `1s`, `500ms`).
    #[arg(long, env = "ALTERNATOR_AGENT_ACTIVE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub active_interval: Duration,

    /// Refresh interval when no filter reported traffic within `--idle-after`.
    #[arg(long, env = "ALTERNATOR_AGENT_IDLE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub idle_interval: Duration,

    /// How long after the last reported traffic the agent drops to the idle cadence.
    #[arg(long, env = "ALTERNATOR_AGENT_IDLE_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub idle_after: Duration,

    /// Longest delay between retries while every discovery attempt fails (exponential backoff
    /// from `--active-interval`, with jitter).
    #[arg(long, env = "ALTERNATOR_AGENT_MAX_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub max_backoff: Duration,

    /// Deadline of one `/localnodes` request, connect included.
    #[arg(long, env = "ALTERNATOR_AGENT_REQUEST_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Deadline of one TCP (and TLS) connect.
    #[arg(long, env = "ALTERNATOR_AGENT_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Longest wait between health probes of a quarantined or down node (`GET /`). A new node
    /// is probed at once, then after 0.5 s, 1 s, 2 s ... up to this period.
    #[arg(long, env = "ALTERNATOR_AGENT_PROBE_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub probe_period: Duration,

    /// Deadline of one health probe.
    #[arg(long, env = "ALTERNATOR_AGENT_PROBE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub probe_timeout: Duration,

    /// Health probes in flight at most (1-64).
    #[arg(long, env = "ALTERNATOR_AGENT_PROBE_CONCURRENCY", default_value_t = DEFAULT_PROBE_CONCURRENCY)]
    pub probe_concurrency: u32,

    /// Address of the agent's HTTP API. Loopback by default: the API is unauthenticated.
    #[arg(
        long,
        env = "ALTERNATOR_AGENT_LISTEN",
        default_value = "127.0.0.1:9181"
    )]
    pub listen: SocketAddr,

    /// Cluster name served over REST EDS (the Envoy cluster that reads it).
    #[arg(
        long,
        env = "ALTERNATOR_AGENT_CLUSTER_NAME",
        default_value = "alternator"
    )]
    pub cluster_name: String,

    /// Address for DNS answers over UDP and TCP (e.g. `127.0.0.1:5353`). Unset: no DNS.
    #[arg(long, env = "ALTERNATOR_AGENT_DNS_LISTEN")]
    pub dns_listen: Option<SocketAddr>,

    /// The DNS zone answered: the apex names the agent's scope, `<dc>.<zone>` a datacenter,
    /// `<rack>.<dc>.<zone>` a rack.
    #[arg(long, env = "ALTERNATOR_AGENT_DNS_ZONE", default_value = DEFAULT_ZONE)]
    pub dns_zone: String,

    /// TTL of DNS records (whole seconds, e.g. `4s`).
    #[arg(long, env = "ALTERNATOR_AGENT_DNS_TTL", default_value = "4s", value_parser = parse_duration)]
    pub dns_ttl: Duration,

    /// Address records per DNS answer, at most (1-64); more serve clients with their own
    /// failover.
    #[arg(long, env = "ALTERNATOR_AGENT_DNS_MAX_RECORDS", default_value_t = 1)]
    pub dns_max_records: usize,

    /// `fallback`: a rack or datacenter name with no usable node answers its wider scope;
    /// `strict`: it answers nothing.
    #[arg(long, env = "ALTERNATOR_AGENT_DNS_SCOPE_MODE", value_enum, default_value_t = ScopeModeArg::Fallback)]
    pub dns_scope_mode: ScopeModeArg,

    /// Publish token ownership (the snapshot's `ring`) of these tables: `all` (every table
    /// ListTables names) or a comma-separated list. Unset: no ring discovery, no extra requests.
    #[arg(long, env = "ALTERNATOR_AGENT_RING_TABLES", value_delimiter = ',')]
    pub ring_tables: Vec<String>,

    /// Ring refresh interval while filters report traffic (see `--idle-after`).
    #[arg(long, env = "ALTERNATOR_AGENT_RING_REFRESH_ACTIVE", default_value = "10s", value_parser = parse_duration)]
    pub ring_refresh_active: Duration,

    /// Ring refresh interval otherwise.
    #[arg(long, env = "ALTERNATOR_AGENT_RING_REFRESH_IDLE", default_value = "60s", value_parser = parse_duration)]
    pub ring_refresh_idle: Duration,

    /// Deadline of one DynamoDB request of ring discovery (one page), connect included.
    #[arg(long, env = "ALTERNATOR_AGENT_RING_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub ring_request_timeout: Duration,

    /// Access key id that signs ring discovery requests (SigV4), for clusters with
    /// `alternator_enforce_authorization`. Needs `--ring-secret-access-key`.
    #[arg(long, env = "ALTERNATOR_AGENT_RING_ACCESS_KEY_ID")]
    pub ring_access_key_id: Option<String>,

    /// Secret access key for `--ring-access-key-id`. Prefer the environment variable or
    /// `--ring-credentials-file`: a command line is visible to every local user.
    #[arg(
        long,
        env = "ALTERNATOR_AGENT_RING_SECRET_ACCESS_KEY",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub ring_secret_access_key: Option<Secret>,

    /// File with the access key, in the AWS shared-credentials format: the `[default]` section's
    /// `aws_access_key_id` and `aws_secret_access_key` (a file without sections works too).
    #[arg(long, env = "ALTERNATOR_AGENT_RING_CREDENTIALS_FILE")]
    pub ring_credentials_file: Option<PathBuf>,

    /// Region named in the signatures' credential scope.
    #[arg(
        long,
        env = "ALTERNATOR_AGENT_RING_REGION",
        default_value = DEFAULT_RING_REGION
    )]
    pub ring_region: String,

    /// Log format.
    #[arg(long, env = "ALTERNATOR_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter (`info`, `debug`, `alternator_discovery_agent=debug,warn`, ...).
    #[arg(long, env = "ALTERNATOR_AGENT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Cli {
    /// Turns parsed flags into a validated configuration; ring discovery may take its key from
    /// the process's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn into_config(self) -> Result<ValidatedConfig, ConfigError> {
        self.into_config_with_env(|name| std::env::var(name).ok())
    }

    /// [`Cli::into_config`] reading other environment variables than the flags' through `env`
    /// (tests pass their own).
    pub fn into_config_with_env(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ValidatedConfig, ConfigError> {
        let ring = self.ring_config(&env)?;
        let scheme = match self.scheme {
            SchemeArg::Http => Scheme::Http,
            SchemeArg::Https => Scheme::Https,
        };
        let tls = match (self.ca_file, self.insecure_skip_verify) {
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "--insecure-skip-verify",
                    "conflicts with --ca-file; choose one",
                ));
            }
            (Some(path), false) => Some(TlsTrust::CaFile(path)),
            (None, true) if scheme == Scheme::Http => {
                return Err(ConfigError::new(
                    "--insecure-skip-verify",
                    "only applies with --scheme https",
                ));
            }
            (None, true) => Some(TlsTrust::InsecureSkipVerify),
            (None, false) => None,
        };
        let config = Config {
            seeds: self
                .seeds
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            port: self.port,
            scheme,
            tls,
            datacenter: non_empty(self.datacenter),
            rack: non_empty(self.rack),
            scope_mode: self.scope_mode.into(),
            extra_datacenters: self
                .extra_datacenters
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            active_interval: self.active_interval,
            idle_interval: self.idle_interval,
            idle_after: self.idle_after,
            max_backoff: self.max_backoff,
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            probe_period: self.probe_period,
            probe_timeout: self.probe_timeout,
            probe_concurrency: self.probe_concurrency as usize,
            cluster_name: self.cluster_name,
            dns: match self.dns_listen {
                None => None,
                Some(listen) => Some(DnsConfig {
                    listen,
                    zone: parse_zone(&self.dns_zone)?,
                    ttl: self.dns_ttl,
                    max_records: self.dns_max_records,
                    scope_mode: self.dns_scope_mode.into(),
                }),
            },
            ring_discovery: ring,
        };
        config.validate()
    }
}

impl Cli {
    fn ring_config(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<RingConfig>, ConfigError> {
        let names: Vec<String> = self
            .ring_tables
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if names.is_empty() {
            let stray = if self.ring_access_key_id.is_some() {
                Some("--ring-access-key-id")
            } else if self.ring_secret_access_key.is_some() {
                Some("--ring-secret-access-key")
            } else if self.ring_credentials_file.is_some() {
                Some("--ring-credentials-file")
            } else {
                None
            };
            if let Some(flag) = stray {
                return Err(ConfigError::new(flag, "only applies with --ring-tables"));
            }
            return Ok(None);
        }
        let tables = if names.iter().any(|t| t == "all") {
            if names.len() > 1 {
                return Err(ConfigError::new(
                    "--ring-tables",
                    "`all` cannot be combined with table names",
                ));
            }
            RingTables::All
        } else {
            RingTables::Named(names)
        };
        let credentials = match (
            &self.ring_credentials_file,
            &self.ring_access_key_id,
            &self.ring_secret_access_key,
        ) {
            (Some(_), Some(_), _) => {
                return Err(ConfigError::new(
                    "--ring-access-key-id",
                    "conflicts with --ring-credentials-file; choose one",
                ))
            }
            (Some(_), None, Some(_)) => {
                return Err(ConfigError::new(
                    "--ring-secret-access-key",
                    "conflicts with --ring-credentials-file; choose one",
                ))
            }
            (Some(path), None, None) => Some(read_credentials_file(path)?),
            (None, Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id.trim().to_owned(),
                secret_access_key: secret.clone(),
            }),
            (None, Some(_), None) => {
                return Err(ConfigError::new(
                    "--ring-access-key-id",
                    "needs --ring-secret-access-key",
                ))
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::new(
                    "--ring-secret-access-key",
                    "needs --ring-access-key-id",
                ))
            }
            (None, None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Some(Credentials {
                    access_key_id: id.trim().to_owned(),
                    secret_access_key: Secret::new(secret.trim()),
                }),
                (Some(_), None) => {
                    return Err(ConfigError::new(
                        "AWS_ACCESS_KEY_ID",
                        "is set without AWS_SECRET_ACCESS_KEY",
                    ))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        "AWS_SECRET_ACCESS_KEY",
                        "is set without AWS_ACCESS_KEY_ID",
                    ))
                }
                (None, None) => None,
            },
        };
        Ok(Some(RingConfig {
            tables,
            refresh_active: self.ring_refresh_active,
            refresh_idle: self.ring_refresh_idle,
            request_timeout: self.ring_request_timeout,
            credentials,
            region: self.ring_region.trim().to_owned(),
        }))
    }
}

/// clap's value parser for secrets. It never fails: clap would quote the value in its error.
fn parse_secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text.trim()))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
