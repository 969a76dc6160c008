//! Command-line flags (each with an `ALTERNATOR_AGENT_*` environment variable) and the validated
//! [`Config`] the agent runs with.
//!
//! Parsing and validation live here, not in `main`, so tests can check every rule; `main` only
//! turns a [`ConfigError`] into one line on stderr and exit status 64 (`EX_USAGE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alternator_routing::endpoint::Scheme;
use alternator_routing::health::{
    DEFAULT_BACKGROUND_PROBE_PERIOD_MS, DEFAULT_PROBE_CONCURRENCY, DEFAULT_PROBE_TIMEOUT_MS,
    PROBE_CONCURRENCY_RANGE,
};
use alternator_routing::scope::{Scope, ScopePolicy};
use clap::{Parser, ValueEnum};
use hickory_proto::rr::Name;

use crate::dns::{DnsConfig, DEFAULT_ZONE, MAX_RECORDS_LIMIT};
use crate::sigv4::{Credentials, Secret};

/// Exit status for a bad flag or environment value (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: i32 = 64;

/// The longest `?wait=` a long-poll may ask for, in seconds (docs/architecture.md §2).
pub const MAX_LONG_POLL_SECS: u64 = 60;

/// Whether a node outside the configured rack/datacenter is still worth learning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeMode {
    /// Walk rack → datacenter (→ extra datacenters): the filter may fall back to wider scopes.
    Fallback,
    /// Learn only the narrowest configured scope (plus explicitly named extra datacenters).
    Strict,
}

impl From<ScopeMode> for alternator_routing::scope::ScopeMode {
    fn from(mode: ScopeMode) -> Self {
        match mode {
            ScopeMode::Fallback => alternator_routing::scope::ScopeMode::Fallback,
            ScopeMode::Strict => alternator_routing::scope::ScopeMode::Strict,
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
    #[arg(long, env = "ALTERNATOR_AGENT_SCOPE_MODE", value_enum, default_value_t = ScopeMode::Fallback)]
    pub scope_mode: ScopeMode,

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
    #[arg(long, env = "ALTERNATOR_AGENT_DNS_SCOPE_MODE", value_enum, default_value_t = ScopeMode::Fallback)]
    pub dns_scope_mode: ScopeMode,

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

/// Default `--ring-region`.
pub const DEFAULT_RING_REGION: &str = "us-east-1";

/// Which tables ring discovery reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingTables {
    /// Every table ListTables names, as they come and go.
    All,
    /// These tables (each is read when it exists).
    Named(Vec<String>),
}

/// Ring discovery settings (`--ring-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Which tables.
    pub tables: RingTables,
    /// Refresh interval while filters report traffic.
    pub refresh_active: Duration,
    /// Refresh interval otherwise.
    pub refresh_idle: Duration,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// SigV4 key; `None`: unsigned requests.
    pub credentials: Option<Credentials>,
    /// Region of the signatures' scope.
    pub region: String,
}

impl RingConfig {
    /// Defaults for these tables, unsigned.
    pub fn new(tables: RingTables) -> Self {
        RingConfig {
            tables,
            refresh_active: Duration::from_secs(10),
            refresh_idle: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            credentials: None,
            region: DEFAULT_RING_REGION.to_owned(),
        }
    }
}

/// A flag or environment value the agent cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {flag}: {reason}")]
pub struct ConfigError {
    /// The flag, as typed on the command line (`--rack`).
    pub flag: &'static str,
    /// What is wrong, as a sentence fragment.
    pub reason: String,
}

impl ConfigError {
    fn new(flag: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            flag,
            reason: reason.into(),
        }
    }
}

/// How to reach Alternator over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Trust the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Verify nothing (development only).
    InsecureSkipVerify,
}

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bootstrap contacts, host names or IP literals, without port.
    pub seeds: Vec<String>,
    /// Alternator port.
    pub port: u16,
    /// Alternator scheme.
    pub scheme: Scheme,
    /// TLS trust for `https`; `None` for `http`.
    pub tls: Option<TlsTrust>,
    /// Local datacenter, if configured.
    pub datacenter: Option<String>,
    /// Local rack, if configured (only with a datacenter).
    pub rack: Option<String>,
    /// Scope walking mode.
    pub scope_mode: ScopeMode,
    /// Further datacenters to publish.
    pub extra_datacenters: Vec<String>,
    /// Refresh cadence while traffic is reported.
    pub active_interval: Duration,
    /// Refresh cadence otherwise.
    pub idle_interval: Duration,
    /// Traffic older than this no longer keeps the active cadence.
    pub idle_after: Duration,
    /// Cap of the failure backoff.
    pub max_backoff: Duration,
    /// Deadline of one discovery request.
    pub request_timeout: Duration,
    /// Deadline of one connect.
    pub connect_timeout: Duration,
    /// Cap of the probe retry delay.
    pub probe_period: Duration,
    /// Deadline of one probe.
    pub probe_timeout: Duration,
    /// Probes in flight at most.
    pub probe_concurrency: usize,
    /// EDS cluster name.
    pub cluster_name: String,
    /// The DNS listener; `None`: off.
    pub dns: Option<DnsConfig>,
    /// Ring discovery; `None`: off.
    pub ring: Option<RingConfig>,
}

impl Config {
    /// A configuration with the documented defaults and the given seeds; tests and embedders
    /// adjust the fields they care about.
    pub fn with_seeds<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Config {
            seeds: seeds.into_iter().map(Into::into).collect(),
            port: 8000,
            scheme: Scheme::Http,
            tls: None,
            datacenter: None,
            rack: None,
            scope_mode: ScopeMode::Fallback,
            extra_datacenters: Vec::new(),
            active_interval: Duration::from_secs(1),
            idle_interval: Duration::from_secs(60),
            idle_after: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            probe_period: Duration::from_millis(DEFAULT_BACKGROUND_PROBE_PERIOD_MS),
            probe_timeout: Duration::from_millis(DEFAULT_PROBE_TIMEOUT_MS),
            probe_concurrency: DEFAULT_PROBE_CONCURRENCY as usize,
            cluster_name: "alternator".to_owned(),
            dns: None,
            ring: None,
        }
    }

    /// Checks the rules clap cannot express (the first broken rule is reported) and derives
    /// the scope policy: the only way to get a configuration [`crate::run`] accepts.
    pub fn validate(self) -> Result<ValidatedConfig, ConfigError> {
        self.check()?;
        let scope = ScopePolicy {
            scope: Scope::from_names(self.datacenter.as_deref(), self.rack.as_deref())
                .map_err(|error| ConfigError::new("--rack/--datacenter", error.to_string()))?,
            mode: self.scope_mode.into(),
        };
        Ok(ValidatedConfig {
            config: self,
            scope,
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        let seeds: Vec<&String> = self.seeds.iter().filter(|s| !s.trim().is_empty()).collect();
        if seeds.is_empty() {
            return Err(ConfigError::new(
                "--seeds",
                "at least one seed host is required",
            ));
        }
        for seed in &self.seeds {
            validate_host("--seeds", seed)?;
        }
        if self.port == 0 {
            return Err(ConfigError::new("--port", "must be 1-65535"));
        }
        if let Some(dc) = &self.datacenter {
            validate_name("--datacenter", dc)?;
        }
        if let Some(rack) = &self.rack {
            validate_name("--rack", rack)?;
            if self.datacenter.is_none() {
                return Err(ConfigError::new(
                    "--rack",
                    "needs --datacenter (a rack is named within its datacenter)",
                ));
            }
        }
        for dc in &self.extra_datacenters {
            validate_name("--extra-datacenters", dc)?;
        }
        if self.scope_mode == ScopeMode::Strict && self.datacenter.is_none() {
            return Err(ConfigError::new(
                "--scope-mode",
                "strict needs --datacenter (and optionally --rack) to be strict about",
            ));
        }
        positive("--active-interval", self.active_interval)?;
        positive("--idle-interval", self.idle_interval)?;
        positive("--idle-after", self.idle_after)?;
        positive("--max-backoff", self.max_backoff)?;
        positive("--request-timeout", self.request_timeout)?;
        positive("--connect-timeout", self.connect_timeout)?;
        positive("--probe-period", self.probe_period)?;
        positive("--probe-timeout", self.probe_timeout)?;
        if self.idle_interval < self.active_interval {
            return Err(ConfigError::new(
                "--idle-interval",
                "must not be shorter than --active-interval",
            ));
        }
        let range = PROBE_CONCURRENCY_RANGE;
        let concurrency = u32::try_from(self.probe_concurrency).unwrap_or(u32::MAX);
        if !range.contains(&concurrency) {
            return Err(ConfigError::new(
                "--probe-concurrency",
                format!("must be {}-{}", range.start(), range.end()),
            ));
        }
        validate_name("--cluster-name", &self.cluster_name)?;
        if let Some(dns) = &self.dns {
            validate_dns(dns)?;
        }
        if let Some(ring) = &self.ring {
            validate_ring(ring)?;
        }
        match (&self.tls, self.scheme) {
            (Some(_), Scheme::Http) => {
                return Err(ConfigError::new(
                    "--ca-file",
                    "only applies with --scheme https",
                ));
            }
            (None, Scheme::Https) => {
                return Err(ConfigError::new(
                    "--scheme",
                    "https needs --ca-file (or --insecure-skip-verify for development)",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// A [`Config`] that passed [`Config::validate`], with the scope policy it names. Read its
/// fields through `Deref`; change them on a [`Config`] and validate again.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    config: Config,
    scope: ScopePolicy,
}

impl ValidatedConfig {
    /// The routing scope policy of `--datacenter`, `--rack` and `--scope-mode`.
    pub fn scope_policy(&self) -> &ScopePolicy {
        &self.scope
    }
}

impl std::ops::Deref for ValidatedConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
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
            scope_mode: self.scope_mode,
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
            ring,
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

/// Reads an AWS shared-credentials file: `aws_access_key_id` and `aws_secret_access_key` of
/// the `[default]` section, or of the top of a file without sections. `#` and `;` start
/// comments; key names ignore case. Errors never quote the file's content.
pub fn read_credentials_file(path: &std::path::Path) -> Result<Credentials, ConfigError> {
    const FLAG: &str = "--ring-credentials-file";
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(FLAG, format!("cannot read {}: {error}", path.display()))
    })?;
    parse_credentials(&text)
        .map_err(|reason| ConfigError::new(FLAG, format!("{}: {reason}", path.display())))
}

/// The key of a shared-credentials document (see [`read_credentials_file`]).
pub fn parse_credentials(text: &str) -> Result<Credentials, String> {
    let mut section: Option<String> = None;
    let mut saw_sections = false;
    let (mut id, mut secret) = (None, None);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            saw_sections = true;
            section = Some(name.trim().to_owned());
            continue;
        }
        let in_scope = section.as_deref().is_none_or(|s| s == "default");
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not `key = value`", number + 1));
        };
        if !in_scope {
            continue;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(value.trim().to_owned()),
            "aws_secret_access_key" => secret = Some(Secret::new(value.trim())),
            _ => {}
        }
    }
    let missing = |what: &str| {
        if saw_sections {
            format!("no {what} in its [default] section")
        } else {
            format!("no {what}")
        }
    };
    Ok(Credentials {
        access_key_id: id.ok_or_else(|| missing("aws_access_key_id"))?,
        secret_access_key: secret.ok_or_else(|| missing("aws_secret_access_key"))?,
    })
}

fn validate_ring(ring: &RingConfig) -> Result<(), ConfigError> {
    if let RingTables::Named(names) = &ring.tables {
        if names.is_empty() {
            return Err(ConfigError::new("--ring-tables", "names no table"));
        }
        for name in names {
            validate_table_name(name)?;
        }
    }
    positive("--ring-refresh-active", ring.refresh_active)?;
    positive("--ring-refresh-idle", ring.refresh_idle)?;
    positive("--ring-request-timeout", ring.request_timeout)?;
    if ring.refresh_idle < ring.refresh_active {
        return Err(ConfigError::new(
            "--ring-refresh-idle",
            "must not be shorter than --ring-refresh-active",
        ));
    }
    let region_ok = !ring.region.is_empty()
        && ring
            .region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !region_ok {
        return Err(ConfigError::new(
            "--ring-region",
            format!("{:?} is not a region name (e.g. us-east-1)", ring.region),
        ));
    }
    if let Some(credentials) = &ring.credentials {
        let id = &credentials.access_key_id;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::new(
                "--ring-access-key-id",
                "must be a non-empty access key id (letters, digits, _)",
            ));
        }
        let secret = credentials.secret_access_key.expose();
        if secret.is_empty() || secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
            // Never quote the value.
            return Err(ConfigError::new(
                "--ring-secret-access-key",
                "must be non-empty, without spaces or control characters",
            ));
        }
    }
    Ok(())
}

/// DynamoDB's rule for table names: 3-255 of `a-z A-Z 0-9 _ - .`.
fn validate_table_name(name: &str) -> Result<(), ConfigError> {
    let ok = (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !ok {
        return Err(ConfigError::new(
            "--ring-tables",
            format!("{name:?} is not a table name (3-255 of a-z, A-Z, 0-9, _, -, .)"),
        ));
    }
    Ok(())
}

/// Parses a zone apex: a fully qualified name (a trailing dot is added), not the root.
pub fn parse_zone(text: &str) -> Result<Name, ConfigError> {
    let text = text.trim();
    let fqdn = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    let name = Name::from_ascii(&fqdn)
        .map_err(|error| ConfigError::new("--dns-zone", format!("{text:?}: {error}")))?;
    if name.is_root() {
        return Err(ConfigError::new(
            "--dns-zone",
            "must name a zone below the root (e.g. alternator.local.)",
        ));
    }
    Ok(name.to_lowercase())
}

fn validate_dns(dns: &DnsConfig) -> Result<(), ConfigError> {
    if dns.zone.is_root() || !dns.zone.is_fqdn() {
        return Err(ConfigError::new(
            "--dns-zone",
            "must be a fully qualified name below the root",
        ));
    }
    if dns.ttl.subsec_nanos() != 0 || dns.ttl.as_secs() > 86_400 {
        return Err(ConfigError::new(
            "--dns-ttl",
            "must be a whole number of seconds, at most one day",
        ));
    }
    if !(1..=MAX_RECORDS_LIMIT).contains(&dns.max_records) {
        return Err(ConfigError::new(
            "--dns-max-records",
            format!("must be 1-{MAX_RECORDS_LIMIT}"),
        ));
    }
    Ok(())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn positive(flag: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(flag, "must be greater than zero"));
    }
    Ok(())
}

// Datacenter and rack names go into a query string and into Envoy locality fields; Scylla
// names are identifiers, so anything with whitespace or URL syntax is a typo worth reporting.
fn validate_name(flag: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(flag, "must not be empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "&?#=/%\"".contains(*c))
    {
        return Err(ConfigError::new(flag, format!("{name:?} contains {c:?}")));
    }
    Ok(())
}

fn validate_host(flag: &'static str, host: &str) -> Result<(), ConfigError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(ConfigError::new(
            flag,
            format!(
                "{host:?} is neither an IP address nor a host name (give the port with --port)"
            ),
        ));
    }
    Ok(())
}

/// Parses `250ms`, `2s`, `1m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 500ms, 2s, 1m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds > 86_400.0 * 365.0 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<ValidatedConfig, String> {
        let mut argv = vec!["alternator-discovery-agent"];
        argv.extend_from_slice(args);
        let parsed = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        parsed.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_documentation() {
        let c = cli(&["--seeds", "10.0.0.1"]).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.scheme, Scheme::Http);
        assert_eq!(c.active_interval, Duration::from_secs(1));
        assert_eq!(c.idle_interval, Duration::from_secs(60));
        // The flag defaults are literals (clap needs them as text); they must stay equal to the
        // spec defaults the routing core carries.
        assert_eq!(
            c.probe_period,
            Duration::from_millis(DEFAULT_BACKGROUND_PROBE_PERIOD_MS)
        );
        assert_eq!(
            c.probe_timeout,
            Duration::from_millis(DEFAULT_PROBE_TIMEOUT_MS)
        );
        assert_eq!(c.probe_concurrency, DEFAULT_PROBE_CONCURRENCY as usize);
        assert_eq!(c.cluster_name, "alternator");
        assert_eq!(c.scope_mode, ScopeMode::Fallback);
    }

    #[test]
    fn dns_is_off_by_default_and_has_documented_defaults() {
        let c = cli(&["--seeds", "10.0.0.1"]).unwrap();
        assert!(c.dns.is_none());
        let c = cli(&["--seeds", "10.0.0.1", "--dns-listen", "127.0.0.1:5353"]).unwrap();
        let dns = c.dns.clone().unwrap();
        assert_eq!(dns.listen, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(dns.zone.to_ascii(), "alternator.local.");
        assert_eq!(dns.ttl, Duration::from_secs(4));
        assert_eq!(dns.max_records, 1);
        assert_eq!(
            dns.scope_mode,
            alternator_routing::scope::ScopeMode::Fallback
        );
        let c = cli(&[
            "--seeds",
            "10.0.0.1",
            "--dns-listen",
            "[::1]:53",
            "--dns-zone",
            "Scylla.Example",
            "--dns-max-records",
            "3",
            "--dns-scope-mode",
            "strict",
        ])
        .unwrap();
        let dns = c.dns.clone().unwrap();
        assert_eq!(dns.zone.to_ascii(), "scylla.example.");
        assert_eq!(dns.max_records, 3);
        assert_eq!(dns.scope_mode, alternator_routing::scope::ScopeMode::Strict);
    }

    #[test]
    fn seeds_are_split_and_trimmed() {
        let c = cli(&["--seeds", "10.0.0.1, scylla-2.example", "--seeds", "::1"]).unwrap();
        assert_eq!(c.seeds, ["10.0.0.1", "scylla-2.example", "::1"]);
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["--seeds", "10.0.0.1:8000"][..], "--seeds"),
            (&["--seeds", "a", "--rack", "r1"], "--rack"),
            (&["--seeds", "a", "--datacenter", "dc 1"], "--datacenter"),
            (&["--seeds", "a", "--scope-mode", "strict"], "--scope-mode"),
            (
                &["--seeds", "a", "--active-interval", "0s"],
                "--active-interval",
            ),
            (
                &[
                    "--seeds",
                    "a",
                    "--active-interval",
                    "5s",
                    "--idle-interval",
                    "1s",
                ],
                "--idle-interval",
            ),
            (
                &["--seeds", "a", "--probe-concurrency", "65"],
                "--probe-concurrency",
            ),
            (&["--seeds", "a", "--scheme", "https"], "--scheme"),
            (&["--seeds", "a", "--ca-file", "ca.pem"], "--ca-file"),
            (
                &["--seeds", "a", "--insecure-skip-verify"],
                "--insecure-skip-verify",
            ),
            (&["--seeds", "a", "--port", "0"], "--port"),
            (
                &[
                    "--seeds",
                    "a",
                    "--dns-listen",
                    "127.0.0.1:53",
                    "--dns-zone",
                    ".",
                ],
                "--dns-zone",
            ),
            (
                &[
                    "--seeds",
                    "a",
                    "--dns-listen",
                    "127.0.0.1:53",
                    "--dns-zone",
                    "a..b",
                ],
                "--dns-zone",
            ),
            (
                &[
                    "--seeds",
                    "a",
                    "--dns-listen",
                    "127.0.0.1:53",
                    "--dns-ttl",
                    "1.5s",
                ],
                "--dns-ttl",
            ),
            (
                &[
                    "--seeds",
                    "a",
                    "--dns-listen",
                    "127.0.0.1:53",
                    "--dns-max-records",
                    "0",
                ],
                "--dns-max-records",
            ),
            (
                &[
                    "--seeds",
                    "a",
                    "--dns-listen",
                    "127.0.0.1:53",
                    "--dns-max-records",
                    "65",
                ],
                "--dns-max-records",
            ),
            (
                &["--seeds", "a", "--dns-listen", "localhost"],
                "--dns-listen",
            ),
            (
                &["--seeds", "a", "--dns-scope-mode", "sometimes"],
                "--dns-scope-mode",
            ),
            (&["--seeds", "a", "--port", "80000"], "--port"),
            (
                &["--seeds", "a", "--idle-interval", "soon"],
                "--idle-interval",
            ),
        ] {
            let err = cli(args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    fn ring_cli(args: &[&str], env: &[(&str, &str)]) -> Result<ValidatedConfig, String> {
        let mut argv = vec!["alternator-discovery-agent", "--seeds", "10.0.0.1"];
        argv.extend_from_slice(args);
        let parsed = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parsed
            .into_config_with_env(|name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ring_discovery_is_off_by_default_and_has_documented_defaults() {
        let c = ring_cli(&[], &[("AWS_ACCESS_KEY_ID", "AKID")]).unwrap();
        assert!(c.ring.is_none(), "AWS variables alone do not turn it on");
        let ring = ring_cli(&["--ring-tables", "all"], &[])
            .unwrap()
            .ring
            .clone()
            .unwrap();
        assert_eq!(ring, RingConfig::new(RingTables::All));
        assert_eq!(ring.refresh_active, Duration::from_secs(10));
        assert_eq!(ring.refresh_idle, Duration::from_secs(60));
        assert_eq!(ring.request_timeout, Duration::from_secs(5));
        assert_eq!(ring.region, "us-east-1");
        assert!(ring.credentials.is_none());
        let ring = ring_cli(
            &["--ring-tables", "users, orders.v2", "--ring-tables", "x_y"],
            &[],
        )
        .unwrap()
        .ring
        .clone()
        .unwrap();
        assert_eq!(
            ring.tables,
            RingTables::Named(vec!["users".into(), "orders.v2".into(), "x_y".into()])
        );
    }

    #[test]
    fn ring_credentials_come_from_flags_a_file_or_the_aws_variables() {
        let key = |c: ValidatedConfig| c.ring.clone().unwrap().credentials.unwrap();
        let aws = [
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ];
        let c = key(ring_cli(&["--ring-tables", "all"], &aws).unwrap());
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.secret_access_key.expose(), "env-secret");
        let c = key(ring_cli(
            &[
                "--ring-tables",
                "all",
                "--ring-access-key-id",
                "AKIDFLAG",
                "--ring-secret-access-key",
                "flag-secret",
            ],
            &aws,
        )
        .unwrap());
        assert_eq!(c.access_key_id, "AKIDFLAG");
        assert_eq!(c.secret_access_key.expose(), "flag-secret");

        let dir = std::env::temp_dir().join(format!("agent-ring-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "# comment\n[other]\naws_access_key_id = AKIDOTHER\n\n[default]\n\
             AWS_ACCESS_KEY_ID = AKIDFILE\naws_secret_access_key=file/secret+key\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = key(ring_cli(
            &["--ring-tables", "all", "--ring-credentials-file", path],
            &aws,
        )
        .unwrap());
        assert_eq!(c.access_key_id, "AKIDFILE");
        assert_eq!(c.secret_access_key.expose(), "file/secret+key");
        std::fs::write(
            &file,
            "aws_access_key_id=AKIDBARE\naws_secret_access_key=s3cret\n",
        )
        .unwrap();
        let c = key(ring_cli(
            &["--ring-tables", "all", "--ring-credentials-file", path],
            &[],
        )
        .unwrap());
        assert_eq!(c.access_key_id, "AKIDBARE");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id=AKID\nsecret-in-a-bad-line\n",
        )
        .unwrap();
        let err = ring_cli(
            &["--ring-tables", "all", "--ring-credentials-file", path],
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("--ring-credentials-file") && err.contains("line 3"),
            "{err}"
        );
        assert!(!err.contains("secret-in-a-bad-line"), "{err}");
        std::fs::write(
            &file,
            "[prod]\naws_access_key_id=AKID\naws_secret_access_key=s\n",
        )
        .unwrap();
        let err = ring_cli(
            &["--ring-tables", "all", "--ring-credentials-file", path],
            &[],
        )
        .unwrap_err();
        assert!(err.contains("[default]"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ring_secrets_never_show_in_debug_output_or_errors() {
        let c = ring_cli(
            &[
                "--ring-tables",
                "all",
                "--ring-access-key-id",
                "AKIDFLAG",
                "--ring-secret-access-key",
                "very-secret-value",
            ],
            &[],
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(debug.contains("AKIDFLAG") && debug.contains("<redacted>"));
        let cli = Cli::try_parse_from([
            "alternator-discovery-agent",
            "--seeds",
            "a",
            "--ring-tables",
            "all",
            "--ring-access-key-id",
            "AKID",
            "--ring-secret-access-key",
            "very secret value",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("very"));
        let err = cli.into_config().unwrap_err().to_string();
        assert!(err.contains("--ring-secret-access-key"), "{err}");
        assert!(!err.contains("very"), "{err}");
    }

    #[test]
    fn bad_ring_values_name_their_flag() {
        let aws_half = [("AWS_ACCESS_KEY_ID", "AKID")];
        for (args, env, flag) in [
            (
                &["--ring-tables", "all,users"][..],
                &[][..],
                "--ring-tables",
            ),
            (&["--ring-tables", "a"], &[], "--ring-tables"),
            (&["--ring-tables", "users/1"], &[], "--ring-tables"),
            (
                &["--ring-tables", "all", "--ring-refresh-active", "0s"],
                &[],
                "--ring-refresh-active",
            ),
            (
                &[
                    "--ring-tables",
                    "all",
                    "--ring-refresh-active",
                    "2m",
                    "--ring-refresh-idle",
                    "1m",
                ],
                &[],
                "--ring-refresh-idle",
            ),
            (
                &["--ring-tables", "all", "--ring-request-timeout", "soon"],
                &[],
                "--ring-request-timeout",
            ),
            (
                &["--ring-tables", "all", "--ring-region", "us east"],
                &[],
                "--ring-region",
            ),
            (
                &["--ring-tables", "all", "--ring-access-key-id", "AKID"],
                &[],
                "--ring-access-key-id",
            ),
            (
                &["--ring-tables", "all", "--ring-secret-access-key", "s"],
                &[],
                "--ring-secret-access-key",
            ),
            (
                &[
                    "--ring-tables",
                    "all",
                    "--ring-access-key-id",
                    "AKID",
                    "--ring-credentials-file",
                    "creds",
                ],
                &[],
                "--ring-access-key-id",
            ),
            (
                &[
                    "--ring-tables",
                    "all",
                    "--ring-credentials-file",
                    "/nonexistent/creds",
                ],
                &[],
                "--ring-credentials-file",
            ),
            (
                &["--ring-access-key-id", "AKID"],
                &[],
                "--ring-access-key-id",
            ),
            (
                &["--ring-tables", "all"],
                &aws_half[..],
                "AWS_ACCESS_KEY_ID",
            ),
        ] {
            let err = ring_cli(args, env).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
