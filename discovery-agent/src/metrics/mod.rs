//! The agent's metrics: one table of every family ([`FAMILIES`]: name, type, help, labels),
//! one struct of counters per subsystem, and the Prometheus text exposition written from the
//! table. Written by hand: a handful of counters and gauges do not justify a metrics
//! framework in a sidecar that should stay small.
//!
//! The table is the one list of what the agent exports: `/metrics` writes its families in
//! its order with its help texts, `tests/docs.rs` checks it against the README, and
//! `scripts/validate_deploy.py` reads it to check the dashboards and alerts.

pub mod api;
pub mod discovery;
pub mod dns;
pub mod ring;

use std::fmt::{Display, Write as _};

use alternator_routing::snapshot::{HealthState, NodeSnapshot};

pub use api::ApiMetrics;
pub use discovery::{DiscoveryMetrics, RefreshOutcome};
pub use dns::DnsMetrics;
pub use ring::{RingMetrics, RoundOutcome};

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric family: what the README documents and Prometheus shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label names a series may carry, in the order they are written.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
    }
}

// Node discovery.
pub const REFRESHES: Family = family(
    "alternator_agent_refreshes_total",
    Kind::Counter,
    &["scope", "datacenter", "rack", "outcome"],
    "Discovery queries per scope and outcome (success, empty, failure, skipped).",
);
pub const REFRESH_ROUNDS: Family = family(
    "alternator_agent_refresh_rounds_total",
    Kind::Counter,
    &[],
    "Refresh rounds (one query per scope each).",
);
pub const REFRESH_ROUNDS_FAILED: Family = family(
    "alternator_agent_refresh_rounds_failed_total",
    Kind::Counter,
    &[],
    "Refresh rounds in which no scope got an answer; the last snapshot was kept.",
);
pub const CONSECUTIVE_FAILURES: Family = family(
    "alternator_agent_refresh_consecutive_failures",
    Kind::Gauge,
    &[],
    "Refresh rounds failed in a row (0 when the last one reached a node).",
);
pub const LAST_SUCCESS: Family = family(
    "alternator_agent_last_success_timestamp_seconds",
    Kind::Gauge,
    &[],
    "Unix time of the last refresh that reached a node (0: never).",
);
pub const DISCOVERY_REQUESTS: Family = family(
    "alternator_agent_discovery_requests_total",
    Kind::Counter,
    &[],
    "Requests sent to Alternator nodes for discovery (/localnodes), answered with a valid list.",
);
pub const DISCOVERY_REQUEST_FAILURES: Family = family(
    "alternator_agent_discovery_request_failures_total",
    Kind::Counter,
    &[],
    "Discovery requests that failed (no answer, non-200, or a malformed body).",
);
pub const PROBES: Family = family(
    "alternator_agent_probes_total",
    Kind::Counter,
    &["result"],
    "Health probes (GET /) by result.",
);
// The published snapshot, read when scraped.
pub const NODES: Family = family(
    "alternator_agent_nodes",
    Kind::Gauge,
    &["state"],
    "Published nodes by health state.",
);
pub const SNAPSHOT_VERSION: Family = family(
    "alternator_agent_snapshot_version",
    Kind::Gauge,
    &[],
    "Version of the published snapshot (0: none yet).",
);
pub const SNAPSHOT_AGE: Family = family(
    "alternator_agent_snapshot_age_seconds",
    Kind::Gauge,
    &[],
    "Time since the published content last changed.",
);
pub const READY: Family = family(
    "alternator_agent_ready",
    Kind::Gauge,
    &[],
    "1 after the first successful discovery.",
);
pub const ACTIVE_CADENCE: Family = family(
    "alternator_agent_active_cadence",
    Kind::Gauge,
    &[],
    "1 while filters report traffic (active refresh interval).",
);
// The HTTP API.
pub const API_REQUESTS: Family = family(
    "alternator_agent_requests_total",
    Kind::Counter,
    &["endpoint", "code"],
    "API requests served, by endpoint and status.",
);
pub const LONG_POLLS_WAITING: Family = family(
    "alternator_agent_long_polls_waiting",
    Kind::Gauge,
    &[],
    "Long polls of /v1/nodes held open, waiting for a change.",
);
// DNS.
pub const DNS_QUERIES: Family = family(
    "alternator_agent_dns_queries_total",
    Kind::Counter,
    &["transport", "name", "rcode"],
    "DNS queries answered, by transport, kind of name (apex, datacenter, rack, other) and response code.",
);
pub const DNS_RESPONSES: Family = family(
    "alternator_agent_dns_responses_total",
    Kind::Counter,
    &["answers"],
    "DNS responses by number of address records in the answer.",
);
pub const DNS_TRUNCATED: Family = family(
    "alternator_agent_dns_truncated_total",
    Kind::Counter,
    &[],
    "UDP responses cut to the client's size, with TC set.",
);
pub const DNS_DROPPED: Family = family(
    "alternator_agent_dns_dropped_total",
    Kind::Counter,
    &["transport", "reason"],
    "DNS packets dropped without a response, by transport and reason.",
);
// Ring discovery.
pub const RING_REFRESHES: Family = family(
    "alternator_agent_ring_refreshes_total",
    Kind::Counter,
    &["outcome"],
    "Ring discovery rounds by outcome (ok, refused, error).",
);
pub const RING_REQUESTS: Family = family(
    "alternator_agent_ring_requests_total",
    Kind::Counter,
    &["request", "result"],
    "DynamoDB requests of ring discovery, by request and result (pages count one each).",
);
pub const RING_ROWS_SKIPPED: Family = family(
    "alternator_agent_ring_rows_skipped_total",
    Kind::Counter,
    &["reason"],
    "Ring rows (or replicas of a row) left out, by reason.",
);
pub const RING_REJECTED: Family = family(
    "alternator_agent_ring_rejected_total",
    Kind::Counter,
    &["reason"],
    "Table rings refused whole (previous ring kept), by reason.",
);
pub const RING_TABLES: Family = family(
    "alternator_agent_ring_tables",
    Kind::Gauge,
    &[],
    "Tables in the published ring.",
);
pub const RING_VERSION: Family = family(
    "alternator_agent_ring_version",
    Kind::Gauge,
    &[],
    "Version of the published ring (0: none yet).",
);
pub const RING_LAST_SUCCESS: Family = family(
    "alternator_agent_ring_last_success_timestamp_seconds",
    Kind::Gauge,
    &[],
    "Unix time of the last ring round that read every table (0: never).",
);

/// Every family the agent exports, in the order `/metrics` writes them.
pub const FAMILIES: [Family; 26] = [
    REFRESHES,
    REFRESH_ROUNDS,
    REFRESH_ROUNDS_FAILED,
    CONSECUTIVE_FAILURES,
    LAST_SUCCESS,
    DISCOVERY_REQUESTS,
    DISCOVERY_REQUEST_FAILURES,
    PROBES,
    NODES,
    SNAPSHOT_VERSION,
    SNAPSHOT_AGE,
    READY,
    ACTIVE_CADENCE,
    API_REQUESTS,
    LONG_POLLS_WAITING,
    DNS_QUERIES,
    DNS_RESPONSES,
    DNS_TRUNCATED,
    DNS_DROPPED,
    RING_REFRESHES,
    RING_REQUESTS,
    RING_ROWS_SKIPPED,
    RING_REJECTED,
    RING_TABLES,
    RING_VERSION,
    RING_LAST_SUCCESS,
];

/// Every subsystem's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Node discovery: refreshes, `/localnodes` requests, probes, cadence.
    pub discovery: DiscoveryMetrics,
    /// The HTTP API.
    pub api: ApiMetrics,
    /// The DNS listener.
    pub dns: DnsMetrics,
    /// Ring discovery.
    pub ring: RingMetrics,
}

impl Metrics {
    /// Renders the exposition: every family of [`FAMILIES`] in order, its help and type, then
    /// its series. `snapshot` is the published one, if any.
    pub fn render(&self, snapshot: Option<&NodeSnapshot>, ready: bool, now_unix_ms: u64) -> String {
        let mut out = Exposition(String::with_capacity(8192));
        for family in &FAMILIES {
            let _ = writeln!(
                out.0,
                "# HELP {} {}\n# TYPE {} {}",
                family.name,
                family.help,
                family.name,
                family.kind.as_str()
            );
            self.discovery.write(family, &mut out);
            write_snapshot(family, snapshot, ready, now_unix_ms, &mut out);
            self.api.write(family, &mut out);
            self.dns.write(family, &mut out);
            self.ring.write(family, &mut out);
        }
        out.0
    }
}

/// The gauges read from the published snapshot when scraped.
fn write_snapshot(
    family: &Family,
    snapshot: Option<&NodeSnapshot>,
    ready: bool,
    now_unix_ms: u64,
    out: &mut Exposition,
) {
    if *family == NODES {
        let mut counts = [0u64; 3];
        for node in snapshot.map(NodeSnapshot::nodes).unwrap_or_default() {
            let slot = match node.health {
                HealthState::Active => 0,
                HealthState::Quarantined => 1,
                HealthState::Down => 2,
            };
            counts[slot] += 1;
        }
        for (state, count) in ["active", "quarantined", "down"].into_iter().zip(counts) {
            out.sample(family, &[("state", state)], count);
        }
    } else if *family == SNAPSHOT_VERSION {
        out.sample(family, &[], snapshot.map_or(0, NodeSnapshot::version));
    } else if *family == SNAPSHOT_AGE {
        match snapshot {
            Some(s) => out.sample(
                family,
                &[],
                Seconds(now_unix_ms.saturating_sub(s.generated_at_ms())),
            ),
            None => out.sample(family, &[], 0),
        }
    } else if *family == READY {
        out.sample(family, &[], u8::from(ready));
    }
}

/// The text being written.
#[derive(Debug)]
pub struct Exposition(String);

impl Exposition {
    /// One series of `family` with these labels (names from the family's table entry;
    /// a series may leave some out: the cluster scope has no datacenter).
    pub fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: impl Display) {
        debug_assert!(
            labels.iter().all(|(name, _)| family.labels.contains(name)),
            "{}: {labels:?}",
            family.name
        );
        self.0.push_str(family.name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{name}=\"{}\"", escape(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Milliseconds written as seconds with three decimals.
#[derive(Debug, Clone, Copy)]
pub struct Seconds(pub u64);

impl Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests;
