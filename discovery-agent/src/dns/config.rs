//! The DNS listener's settings (`--dns-*`) and their rules: the zone, TTL, records per
//! answer and scope mode.

use std::net::SocketAddr;
use std::time::Duration;

use alternator_routing::scope::ScopeMode;
use hickory_proto::rr::Name;

/// Default zone.
pub const DEFAULT_ZONE: &str = "alternator.local.";
/// Default TTL of every record.
pub const DEFAULT_TTL: Duration = Duration::from_secs(4);
/// Default number of address records per answer.
pub const DEFAULT_MAX_RECORDS: usize = 1;
/// Largest accepted `--dns-max-records`.
pub const MAX_RECORDS_LIMIT: usize = 64;

/// The DNS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP address.
    pub listen: SocketAddr,
    /// The zone apex, fully qualified.
    pub zone: Name,
    /// TTL of every record.
    pub ttl: Duration,
    /// Address records per answer, at most.
    pub max_records: usize,
    /// Whether names widen to wider scopes when theirs has no usable node.
    pub scope_mode: ScopeMode,
}

impl DnsConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        DnsConfig {
            listen,
            zone: default_zone(),
            ttl: DEFAULT_TTL,
            max_records: DEFAULT_MAX_RECORDS,
            scope_mode: ScopeMode::Fallback,
        }
    }

    /// Checks the rules a zone, TTL and record count must follow.
    pub fn check(&self) -> Result<(), DnsConfigError> {
        if self.zone.is_root() || !self.zone.is_fqdn() {
            return Err(DnsConfigError::Zone(
                "must be a fully qualified name below the root".to_owned(),
            ));
        }
        if self.ttl.subsec_nanos() != 0 || self.ttl.as_secs() > 86_400 {
            return Err(DnsConfigError::Ttl);
        }
        if !(1..=MAX_RECORDS_LIMIT).contains(&self.max_records) {
            return Err(DnsConfigError::MaxRecords);
        }
        Ok(())
    }
}

/// A DNS setting the agent cannot serve with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsConfigError {
    /// `--dns-zone` is not a zone name below the root.
    #[error("{0}")]
    Zone(String),
    /// `--dns-ttl` is not whole seconds up to a day.
    #[error("must be a whole number of seconds, at most one day")]
    Ttl,
    /// `--dns-max-records` is out of range.
    #[error("must be 1-{MAX_RECORDS_LIMIT}")]
    MaxRecords,
}

impl DnsConfigError {
    /// The flag the setting comes from.
    pub fn flag(&self) -> &'static str {
        match self {
            DnsConfigError::Zone(_) => "--dns-zone",
            DnsConfigError::Ttl => "--dns-ttl",
            DnsConfigError::MaxRecords => "--dns-max-records",
        }
    }
}

/// The default zone as a name.
pub fn default_zone() -> Name {
    Name::from_ascii(DEFAULT_ZONE).unwrap_or_else(|_| Name::root())
}

/// Parses a zone apex: a fully qualified name (a trailing dot is added), not the root.
pub fn parse_zone(text: &str) -> Result<Name, DnsConfigError> {
    let text = text.trim();
    let fqdn = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    let name = Name::from_ascii(&fqdn)
        .map_err(|error| DnsConfigError::Zone(format!("{text:?}: {error}")))?;
    if name.is_root() {
        return Err(DnsConfigError::Zone(
            "must name a zone below the root (e.g. alternator.local.)".to_owned(),
        ));
    }
    Ok(name.to_lowercase())
}
