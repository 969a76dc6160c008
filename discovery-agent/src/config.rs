//! Command-line flags (each with an `ALTERNATOR_AGENT_*` environment variable) and the validated
//! [`AgentConfig`] the agent runs with.
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
use clap::{Parser, ValueEnum};
use hickory_proto::rr::Name;

use crate::dns::{DnsConfig, DEFAULT_ZONE, MAX_RECORDS_LIMIT};

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

    /// Log format.
    #[arg(long, env = "ALTERNATOR_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter (`info`, `debug`, `alternator_discovery_agent=debug,warn`, ...).
    #[arg(long, env = "ALTERNATOR_AGENT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
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
pub struct AgentConfig {
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
}

impl AgentConfig {
    /// A configuration with the documented defaults and the given seeds; tests and embedders
    /// adjust the fields they care about.
    pub fn with_seeds<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AgentConfig {
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
        }
    }

    /// Checks the rules clap cannot express. The first broken rule is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
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

impl Cli {
    /// Turns parsed flags into a validated configuration.
    pub fn into_config(self) -> Result<AgentConfig, ConfigError> {
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
        let config = AgentConfig {
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
        };
        config.validate()?;
        Ok(config)
    }
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

    fn cli(args: &[&str]) -> Result<AgentConfig, String> {
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
        let dns = c.dns.unwrap();
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
        let dns = c.dns.unwrap();
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
