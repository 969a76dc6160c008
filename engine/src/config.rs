//! Plugin configuration: the JSON document Envoy passes as the filter's `configuration`
//! (Istio: `pluginConfig`). Parsed once per configuration into an immutable [`FilterConfig`]
//! that every request shares, straight into the routing core's types (scope policy, affinity
//! mode), so nothing is validated again per snapshot or per request. Every field is
//! documented, with its default, in the README's configuration table (a test holds the two
//! together).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Why a plugin configuration was refused. The message always names the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not JSON, an unknown field, or a value of the wrong type.
    #[error("invalid plugin configuration at `{path}`: {message}")]
    Syntax { path: String, message: String },
    /// Well-formed JSON with a value outside what the filter accepts.
    #[error("invalid plugin configuration: `{field}` {problem}")]
    Value {
        field: &'static str,
        problem: String,
    },
}

/// How ordinary (non key-affine) requests spread over the nodes in scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Per-worker counter with a random start: the most even spread.
    #[default]
    RoundRobin,
    /// A fresh random first choice for every request.
    Random,
}

/// Which DynamoDB requests are routed by their partition key (`none`, `rmw`, `any_write`).
pub use alternator_routing::dynamodb::AffinityMode;
/// What happens when no node of the configured scope is usable (`fallback`: widen rack →
/// datacenter → cluster; `strict`: never leave the scope, answer 503).
pub use alternator_routing::scope::ScopeMode;
use alternator_routing::scope::{Scope, ScopePolicy};
use alternator_routing::snapshot::MAX_LONG_POLL_SECS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    agent: RawAgent,
    routing_header: String,
    fallbacks: u32,
    policy: Policy,
    scope: RawScope,
    affinity: RawAffinity,
    token_aware: RawTokenAware,
    max_body_bytes: u64,
    max_request_bytes: u64,
    passive_health: RawPassiveHealth,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            agent: RawAgent::default(),
            routing_header: DEFAULT_ROUTING_HEADER.to_string(),
            fallbacks: 2,
            policy: Policy::RoundRobin,
            scope: RawScope::default(),
            affinity: RawAffinity::default(),
            token_aware: RawTokenAware::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            passive_health: RawPassiveHealth::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAgent {
    cluster: String,
    authority: String,
    path: String,
    tick_ms: u64,
    long_poll_s: u64,
    request_timeout_ms: u64,
    error_backoff_ms: u64,
    lease_ms: u64,
}

impl Default for RawAgent {
    fn default() -> Self {
        RawAgent {
            cluster: "alternator_agent".to_string(),
            authority: "alternator-discovery-agent".to_string(),
            path: "/v1/nodes".to_string(),
            tick_ms: 500,
            long_poll_s: 20,
            request_timeout_ms: 5_000,
            error_backoff_ms: 2_000,
            lease_ms: 5_000,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawScope {
    datacenter: Option<String>,
    rack: Option<String>,
    mode: ScopeMode,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAffinity {
    mode: AffinityMode,
    tables: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokenAware {
    enabled: bool,
    max_ring_age_ms: u64,
}

impl Default for RawTokenAware {
    fn default() -> Self {
        RawTokenAware {
            enabled: false,
            max_ring_age_ms: DEFAULT_MAX_RING_AGE_MS,
        }
    }
}

/// How long the filter routes by a ring the agent has not confirmed: ten minutes, far beyond
/// an agent restart and far below how long a tablet layout stays put under rebalancing.
pub const DEFAULT_MAX_RING_AGE_MS: u64 = 600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPassiveHealth {
    enabled: bool,
    cooldown_ms: u64,
    timeouts_to_down: u32,
    min_per_try_timeout_ms: u64,
}

impl Default for RawPassiveHealth {
    fn default() -> Self {
        RawPassiveHealth {
            enabled: alternator_routing::health::DEFAULT_HEALTH_ENABLED,
            cooldown_ms: DEFAULT_PASSIVE_COOLDOWN_MS,
            timeouts_to_down: DEFAULT_TIMEOUTS_TO_DOWN,
            min_per_try_timeout_ms: DEFAULT_MIN_PER_TRY_TIMEOUT_MS,
        }
    }
}

/// How long a node that traffic marked `DOWN` is skipped before it is tried again as
/// `QUARANTINED`: a proxy does not probe, so this stands in for the spec's recovery probes.
pub const DEFAULT_PASSIVE_COOLDOWN_MS: u64 = 10_000;

/// Consecutive timeouts that take a node `DOWN` (`routing::passive::Rules`): two, so one late
/// answer between successes never does.
pub const DEFAULT_TIMEOUTS_TO_DOWN: u32 = 2;
/// Accepted `passive_health.timeouts_to_down`: beyond 5 a timeout would weigh as much as 5 of
/// them would (the spec's threshold of 10 split in whole failures).
const TIMEOUTS_TO_DOWN: std::ops::RangeInclusive<u32> = 1..=5;

/// The shortest `per_try_timeout` of the shipped envoy.yaml's routes (the GetItem hedge,
/// `ITEM_HEDGE_AFTER`): a retried or hedged request that lasted this long is taken as a
/// per-try timeout of the candidates before the one that answered.
pub const DEFAULT_MIN_PER_TRY_TIMEOUT_MS: u64 = 250;
const MAX_MIN_PER_TRY_TIMEOUT_MS: u64 = 600_000;

/// Passive health: node-health observations from the traffic this Envoy forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealthConfig {
    pub enabled: bool,
    pub cooldown_ms: u64,
    /// Consecutive timeouts that take an active node `DOWN` (1–5).
    pub timeouts_to_down: u32,
    /// The shortest per-try timeout of the Envoy routes; 0: retried requests are never taken as
    /// timeouts (only Envoy's `UT` flag is).
    pub min_per_try_timeout_ms: u64,
}

pub const DEFAULT_ROUTING_HEADER: &str = "x-alternator-endpoints";
/// DynamoDB's own request size limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// DynamoDB's (and Alternator's) limit on one HTTP request: a larger declared body can never
/// succeed, so it is refused with 413 before it is buffered or sent to a node.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;
/// Largest `token_aware.max_ring_age_ms`: a day.
const MAX_RING_AGE_MS: u64 = 86_400_000;
/// Envoy retries walk the header's list; more than this is never useful for a cluster.
const MAX_FALLBACKS: u32 = 16;

/// Where and how often the root context asks the discovery agent for the node snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Envoy cluster that reaches the agent (`dispatch_http_call` upstream).
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub tick: Duration,
    /// `?wait=` value of the long-poll; 0 disables long-polling (plain polls every tick).
    pub long_poll: Duration,
    /// Timeout of a poll on top of the long-poll wait.
    pub request_timeout: Duration,
    pub error_backoff: Duration,
    pub lease: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityConfig {
    pub mode: AffinityMode,
    /// Table name → partition (HASH) key attribute name, as configured.
    pub tables: BTreeMap<String, String>,
}

/// Token-aware routing: single-key requests led by a replica of their key, from the ring the
/// agent publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAwareConfig {
    pub enabled: bool,
    /// Older than this since the agent's last confirmation, the ring is not used; 0: no limit.
    pub max_ring_age_ms: u64,
}

/// The validated, immutable plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    pub agent: AgentConfig,
    /// Lower-case name of the header read by Envoy's `override_host` LB policy.
    pub routing_header: String,
    /// Candidates written after the first choice.
    pub fallbacks: usize,
    pub policy: Policy,
    /// The nodes that serve this proxy, and whether routing may widen them.
    pub scope: ScopePolicy,
    pub affinity: AffinityConfig,
    pub token_aware: TokenAwareConfig,
    pub max_body_bytes: usize,
    /// Requests declaring a larger `content-length` get a local 413; 0 turns the check off.
    pub max_request_bytes: u64,
    pub passive_health: PassiveHealthConfig,
}

impl FilterConfig {
    /// Parses and validates the plugin configuration. An empty document means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return validate(RawConfig::default());
        }
        if !trimmed.starts_with(b"{") {
            return Err(ConfigError::Syntax {
                path: "(document)".to_string(),
                message: "expected a JSON object".to_string(),
            });
        }
        let mut de = serde_json::Deserializer::from_slice(trimmed);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Syntax {
                path: if path == "." {
                    "(document)".to_string()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError::Syntax {
            path: "(document)".to_string(),
            message: e.to_string(),
        })?;
        validate(raw)
    }

    /// Total candidates written to the routing header: the first choice plus the fallbacks.
    pub fn candidates(&self) -> usize {
        self.fallbacks + 1
    }
}

fn value_err(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        field,
        problem: problem.into(),
    }
}

fn validate(raw: RawConfig) -> Result<FilterConfig, ConfigError> {
    let a = raw.agent;
    if a.cluster.is_empty() {
        return Err(value_err(
            "agent.cluster",
            "must name the Envoy cluster of the agent",
        ));
    }
    if a.authority.is_empty() {
        return Err(value_err("agent.authority", "must not be empty"));
    }
    if !a.path.starts_with('/') || a.path.contains('?') {
        return Err(value_err(
            "agent.path",
            format!("must be an absolute path without a query, got {:?}", a.path),
        ));
    }
    if !(10..=60_000).contains(&a.tick_ms) {
        return Err(value_err(
            "agent.tick_ms",
            format!("must be between 10 and 60000, got {}", a.tick_ms),
        ));
    }
    if a.long_poll_s > MAX_LONG_POLL_SECS {
        return Err(value_err(
            "agent.long_poll_s",
            format!(
                "must be at most {MAX_LONG_POLL_SECS}, got {}",
                a.long_poll_s
            ),
        ));
    }
    if !(100..=120_000).contains(&a.request_timeout_ms) {
        return Err(value_err(
            "agent.request_timeout_ms",
            format!(
                "must be between 100 and 120000, got {}",
                a.request_timeout_ms
            ),
        ));
    }
    if a.error_backoff_ms > 600_000 {
        return Err(value_err(
            "agent.error_backoff_ms",
            format!("must be at most 600000, got {}", a.error_backoff_ms),
        ));
    }
    // The holder renews on every tick; a lease shorter than a few ticks would flap.
    if a.lease_ms < a.tick_ms.saturating_mul(3) || a.lease_ms > 600_000 {
        return Err(value_err(
            "agent.lease_ms",
            format!(
                "must be at least 3 × agent.tick_ms ({}) and at most 600000, got {}",
                a.tick_ms * 3,
                a.lease_ms
            ),
        ));
    }
    let header = raw.routing_header.to_ascii_lowercase();
    if header.is_empty() || !header.bytes().all(is_header_name_byte) {
        return Err(value_err(
            "routing_header",
            format!(
                "must be a valid HTTP header name, got {:?}",
                raw.routing_header
            ),
        ));
    }
    if header.starts_with(':') || header == "host" || header == "x-amz-target" {
        return Err(value_err(
            "routing_header",
            format!("must not be a header the request needs, got {header:?}"),
        ));
    }
    if raw.fallbacks > MAX_FALLBACKS {
        return Err(value_err(
            "fallbacks",
            format!("must be at most {MAX_FALLBACKS}, got {}", raw.fallbacks),
        ));
    }
    let s = raw.scope;
    if s.datacenter.as_deref() == Some("") {
        return Err(value_err(
            "scope.datacenter",
            "must not be empty (omit it for the whole cluster)",
        ));
    }
    if s.rack.as_deref() == Some("") {
        return Err(value_err(
            "scope.rack",
            "must not be empty (omit it for the whole datacenter)",
        ));
    }
    if s.rack.is_some() && s.datacenter.is_none() {
        return Err(value_err(
            "scope.rack",
            "needs scope.datacenter: a rack name is only unique within its datacenter",
        ));
    }
    // The checks above name the field; what is left cannot fail, but say so if it ever does.
    let scope = Scope::from_names(s.datacenter.as_deref(), s.rack.as_deref())
        .map_err(|e| value_err("scope", e.to_string()))?;
    for (table, key) in &raw.affinity.tables {
        if table.is_empty() || key.is_empty() {
            return Err(value_err(
                "affinity.tables",
                format!("table and key names must not be empty, got {table:?}: {key:?}"),
            ));
        }
    }
    if raw.token_aware.max_ring_age_ms > MAX_RING_AGE_MS {
        return Err(value_err(
            "token_aware.max_ring_age_ms",
            format!(
                "must be at most {MAX_RING_AGE_MS} (a day; 0 for no limit), got {}",
                raw.token_aware.max_ring_age_ms
            ),
        ));
    }
    let p = &raw.passive_health;
    if !TIMEOUTS_TO_DOWN.contains(&p.timeouts_to_down) {
        return Err(value_err(
            "passive_health.timeouts_to_down",
            format!(
                "must be between {} and {}, got {}",
                TIMEOUTS_TO_DOWN.start(),
                TIMEOUTS_TO_DOWN.end(),
                p.timeouts_to_down
            ),
        ));
    }
    if p.min_per_try_timeout_ms > MAX_MIN_PER_TRY_TIMEOUT_MS {
        return Err(value_err(
            "passive_health.min_per_try_timeout_ms",
            format!(
                "must be at most {MAX_MIN_PER_TRY_TIMEOUT_MS} (0 turns the inference off), got {}",
                p.min_per_try_timeout_ms
            ),
        ));
    }
    if raw.max_body_bytes > u64::from(u32::MAX) {
        return Err(value_err(
            "max_body_bytes",
            format!("must be at most {}, got {}", u32::MAX, raw.max_body_bytes),
        ));
    }
    Ok(FilterConfig {
        agent: AgentConfig {
            cluster: a.cluster,
            authority: a.authority,
            path: a.path,
            tick: Duration::from_millis(a.tick_ms),
            long_poll: Duration::from_secs(a.long_poll_s),
            request_timeout: Duration::from_millis(a.request_timeout_ms),
            error_backoff: Duration::from_millis(a.error_backoff_ms),
            lease: Duration::from_millis(a.lease_ms),
        },
        routing_header: header,
        fallbacks: raw.fallbacks as usize,
        policy: raw.policy,
        scope: ScopePolicy {
            scope,
            mode: s.mode,
        },
        affinity: AffinityConfig {
            mode: raw.affinity.mode,
            tables: raw.affinity.tables,
        },
        token_aware: TokenAwareConfig {
            enabled: raw.token_aware.enabled,
            max_ring_age_ms: raw.token_aware.max_ring_age_ms,
        },
        max_body_bytes: raw.max_body_bytes as usize,
        max_request_bytes: raw.max_request_bytes,
        passive_health: PassiveHealthConfig {
            enabled: raw.passive_health.enabled,
            cooldown_ms: raw.passive_health.cooldown_ms,
            timeouts_to_down: raw.passive_health.timeouts_to_down,
            min_per_try_timeout_ms: raw.passive_health.min_per_try_timeout_ms,
        },
    })
}

/// RFC 9110 token characters (lower case only: Envoy stores header names lower-cased).
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests;
