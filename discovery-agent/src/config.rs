//! The agent's configuration: [`Config`] with the documented defaults, the rules it must
//! follow, and [`ValidatedConfig`], which only [`Config::validate`] produces and [`crate::run`]
//! takes.
//!
//! Flags become a [`Config`] in [`crate::cli`]; the DNS settings and their rules are
//! [`crate::dns::config`]'s, the credentials file [`crate::sigv4::credentials`]'.

use std::path::PathBuf;
use std::time::Duration;

use alternator_routing::endpoint::Scheme;
use alternator_routing::health::{
    DEFAULT_BACKGROUND_PROBE_PERIOD_MS, DEFAULT_PROBE_CONCURRENCY, DEFAULT_PROBE_TIMEOUT_MS,
    PROBE_CONCURRENCY_RANGE,
};
use alternator_routing::scope::{Scope, ScopeMode, ScopePolicy};

use crate::dns::config::{DnsConfig, DnsConfigError};
use crate::sigv4::credentials::CredentialsFileError;
use crate::sigv4::Credentials;

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
    pub(crate) fn new(flag: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            flag,
            reason: reason.into(),
        }
    }
}

impl From<DnsConfigError> for ConfigError {
    fn from(error: DnsConfigError) -> Self {
        ConfigError::new(error.flag(), error.to_string())
    }
}

impl From<CredentialsFileError> for ConfigError {
    fn from(error: CredentialsFileError) -> Self {
        ConfigError::new("--ring-credentials-file", error.to_string())
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

/// The agent's configuration, as flags or an embedder give it; [`Config::validate`] turns it
/// into the [`ValidatedConfig`] the agent runs with.
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
    pub ring_discovery: Option<RingConfig>,
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
            ring_discovery: None,
        }
    }

    /// Checks the rules clap cannot express (the first broken rule is reported) and derives
    /// the scope policy: the only way to get a configuration [`crate::run`] accepts.
    pub fn validate(self) -> Result<ValidatedConfig, ConfigError> {
        self.check()?;
        let scope = ScopePolicy {
            scope: Scope::from_names(self.datacenter.as_deref(), self.rack.as_deref())
                .map_err(|error| ConfigError::new("--rack/--datacenter", error.to_string()))?,
            mode: self.scope_mode,
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
            dns.check()?;
        }
        if let Some(ring) = &self.ring_discovery {
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
