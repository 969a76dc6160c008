//! Prometheus text exposition, written by hand: a handful of counters and gauges do not justify
//! a metrics framework in a sidecar that should stay small.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use alternator_routing::scope::Scope;
use alternator_routing::snapshot::{HealthState, NodeSnapshot};

use crate::discovery::scope_kind;
use crate::dns::responder::{rcode_label, Dropped, Reply};
use crate::ring::client::Call;
use crate::ring::rows::Skipped;
use crate::ring::RoundOutcome;

/// Outcome label of one scope query in a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefreshOutcome {
    /// A node answered with at least one address.
    Success,
    /// A node answered `[]`.
    Empty,
    /// Every candidate failed.
    Failure,
    /// Skipped because a narrower scope had nodes.
    Skipped,
}

impl RefreshOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Success => "success",
            RefreshOutcome::Empty => "empty",
            RefreshOutcome::Failure => "failure",
            RefreshOutcome::Skipped => "skipped",
        }
    }
}

/// The agent's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    refreshes: Mutex<BTreeMap<(String, RefreshOutcome), u64>>,
    refresh_rounds: AtomicU64,
    refresh_rounds_failed: AtomicU64,
    consecutive_failures: AtomicU64,
    last_success_unix_ms: AtomicU64,
    discovery_requests_ok: AtomicU64,
    discovery_requests_failed: AtomicU64,
    probes_ok: AtomicU64,
    probes_failed: AtomicU64,
    served: Mutex<BTreeMap<(&'static str, u16), u64>>,
    active_cadence: AtomicBool,
    dns_queries: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    dns_answers: Mutex<BTreeMap<usize, u64>>,
    dns_truncated: AtomicU64,
    dns_dropped: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    ring_rounds: Mutex<BTreeMap<RoundOutcome, u64>>,
    ring_requests: Mutex<BTreeMap<(Call, bool), u64>>,
    ring_skipped: Mutex<BTreeMap<&'static str, u64>>,
    ring_rejected: Mutex<BTreeMap<&'static str, u64>>,
    ring_tables: AtomicU64,
    ring_version: AtomicU64,
    ring_last_success_unix_ms: AtomicU64,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn scope_labels(scope: &Scope) -> String {
    match scope {
        Scope::Cluster => format!("scope=\"{}\"", scope_kind(scope)),
        Scope::Datacenter { datacenter } => {
            format!(
                "scope=\"{}\",datacenter=\"{}\"",
                scope_kind(scope),
                escape(datacenter)
            )
        }
        Scope::Rack { datacenter, rack } => format!(
            "scope=\"{}\",datacenter=\"{}\",rack=\"{}\"",
            scope_kind(scope),
            escape(datacenter),
            escape(rack)
        ),
    }
}

impl Metrics {
    /// Counts one scope query outcome.
    pub fn count_scope(&self, scope: &Scope, outcome: RefreshOutcome) {
        if let Ok(mut map) = self.refreshes.lock() {
            *map.entry((scope_labels(scope), outcome)).or_default() += 1;
        }
    }

    /// Counts a finished refresh round; `ok` when at least one scope got an answer.
    pub fn count_round(&self, ok: bool, now_unix_ms: u64) {
        self.refresh_rounds.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.last_success_unix_ms
                .store(now_unix_ms, Ordering::Relaxed);
        } else {
            self.refresh_rounds_failed.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts requests sent to Alternator nodes for discovery.
    pub fn count_discovery_requests(&self, ok: u64, failed: u64) {
        self.discovery_requests_ok.fetch_add(ok, Ordering::Relaxed);
        self.discovery_requests_failed
            .fetch_add(failed, Ordering::Relaxed);
    }

    /// Counts one health probe.
    pub fn count_probe(&self, ok: bool) {
        let counter = if ok {
            &self.probes_ok
        } else {
            &self.probes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answered API request.
    pub fn count_served(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut map) = self.served.lock() {
            *map.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// Counts one DNS response: by transport, kind of name and response code; by number of
    /// answer records (bounded by `--dns-max-records`); and whether it was truncated.
    pub fn count_dns_reply(&self, transport: &'static str, reply: &Reply) {
        if let Ok(mut map) = self.dns_queries.lock() {
            *map.entry((transport, reply.kind.as_str(), rcode_label(reply.rcode)))
                .or_default() += 1;
        }
        if let Ok(mut map) = self.dns_answers.lock() {
            *map.entry(reply.answers).or_default() += 1;
        }
        if reply.truncated {
            self.dns_truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one DNS packet that got no response.
    pub fn count_dns_dropped(&self, transport: &'static str, reason: Dropped) {
        if let Ok(mut map) = self.dns_dropped.lock() {
            *map.entry((transport, reason.as_str())).or_default() += 1;
        }
    }

    /// Counts one ring discovery round.
    pub fn count_ring_round(&self, outcome: RoundOutcome, now_unix_ms: u64) {
        if let Ok(mut map) = self.ring_rounds.lock() {
            *map.entry(outcome).or_default() += 1;
        }
        if outcome == RoundOutcome::Ok {
            self.ring_last_success_unix_ms
                .store(now_unix_ms, Ordering::Relaxed);
        }
    }

    /// Counts DynamoDB requests of ring discovery (pages included).
    pub fn count_ring_requests(&self, call: Call, ok: bool, requests: u64) {
        if let Ok(mut map) = self.ring_requests.lock() {
            *map.entry((call, ok)).or_default() += requests;
        }
    }

    /// Counts rows (or replicas of rows) left out of a ring.
    pub fn count_ring_skipped(&self, skipped: &Skipped) {
        if skipped.total() == 0 {
            return;
        }
        if let Ok(mut map) = self.ring_skipped.lock() {
            for (reason, n) in &skipped.0 {
                *map.entry(reason.as_str()).or_default() += n;
            }
        }
    }

    /// Counts a table ring refused for a hole or an overlap (or no ranges at all).
    pub fn count_ring_rejected(&self, reason: &'static str) {
        if let Ok(mut map) = self.ring_rejected.lock() {
            *map.entry(reason).or_default() += 1;
        }
    }

    /// Records how many tables the published ring holds.
    pub fn set_ring_tables(&self, tables: usize) {
        self.ring_tables
            .store(u64::try_from(tables).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Records the ring version.
    pub fn set_ring_version(&self, version: u64) {
        self.ring_version.store(version, Ordering::Relaxed);
    }

    /// Records the current cadence.
    pub fn set_active_cadence(&self, active: bool) {
        self.active_cadence.store(active, Ordering::Relaxed);
    }

    /// Consecutive refresh rounds in which no scope got an answer.
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Renders the exposition. `snapshot` is the published one, if any.
    pub fn render(&self, snapshot: Option<&NodeSnapshot>, ready: bool, now_unix_ms: u64) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_owned()
        };
        let _ = metric(
            "alternator_agent_refreshes_total",
            "counter",
            "Discovery queries per scope and outcome (success, empty, failure, skipped).",
        );
        if let Ok(map) = self.refreshes.lock() {
            for ((labels, outcome), value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_refreshes_total{{{labels},outcome=\"{}\"}} {value}",
                    outcome.as_str()
                );
            }
        }
        let mut simple = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        simple(
            "alternator_agent_refresh_rounds_total",
            "counter",
            "Refresh rounds (one query per scope each).",
            self.refresh_rounds.load(Ordering::Relaxed).to_string(),
        );
        simple(
            "alternator_agent_refresh_rounds_failed_total",
            "counter",
            "Refresh rounds in which no scope got an answer; the last snapshot was kept.",
            self.refresh_rounds_failed
                .load(Ordering::Relaxed)
                .to_string(),
        );
        simple(
            "alternator_agent_refresh_consecutive_failures",
            "gauge",
            "Refresh rounds failed in a row (0 when the last one reached a node).",
            self.consecutive_failures
                .load(Ordering::Relaxed)
                .to_string(),
        );
        let last_ms = self.last_success_unix_ms.load(Ordering::Relaxed);
        simple(
            "alternator_agent_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last refresh that reached a node (0: never).",
            format_seconds(last_ms),
        );
        simple(
            "alternator_agent_discovery_requests_total",
            "counter",
            "Requests sent to Alternator nodes for discovery (/localnodes), answered with a valid list.",
            self.discovery_requests_ok.load(Ordering::Relaxed).to_string(),
        );
        simple(
            "alternator_agent_discovery_request_failures_total",
            "counter",
            "Discovery requests that failed (no answer, non-200, or a malformed body).",
            self.discovery_requests_failed
                .load(Ordering::Relaxed)
                .to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP alternator_agent_probes_total Health probes (GET /) by result.\n\
             # TYPE alternator_agent_probes_total counter\n\
             alternator_agent_probes_total{{result=\"success\"}} {}\n\
             alternator_agent_probes_total{{result=\"failure\"}} {}",
            self.probes_ok.load(Ordering::Relaxed),
            self.probes_failed.load(Ordering::Relaxed)
        );
        let (mut active, mut quarantined, mut down) = (0, 0, 0);
        if let Some(s) = snapshot {
            for node in s.nodes() {
                match node.health {
                    HealthState::Active => active += 1,
                    HealthState::Quarantined => quarantined += 1,
                    HealthState::Down => down += 1,
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_nodes Published nodes by health state.\n\
             # TYPE alternator_agent_nodes gauge\n\
             alternator_agent_nodes{{state=\"active\"}} {active}\n\
             alternator_agent_nodes{{state=\"quarantined\"}} {quarantined}\n\
             alternator_agent_nodes{{state=\"down\"}} {down}"
        );
        let (version, age) = match snapshot {
            Some(s) => (
                s.version().to_string(),
                format_seconds(now_unix_ms.saturating_sub(s.generated_at_ms())),
            ),
            None => ("0".to_owned(), "0".to_owned()),
        };
        let _ = writeln!(
            out,
            "# HELP alternator_agent_snapshot_version Version of the published snapshot (0: none yet).\n\
             # TYPE alternator_agent_snapshot_version gauge\n\
             alternator_agent_snapshot_version {version}\n\
             # HELP alternator_agent_snapshot_age_seconds Time since the published content last changed.\n\
             # TYPE alternator_agent_snapshot_age_seconds gauge\n\
             alternator_agent_snapshot_age_seconds {age}\n\
             # HELP alternator_agent_ready 1 after the first successful discovery.\n\
             # TYPE alternator_agent_ready gauge\n\
             alternator_agent_ready {}\n\
             # HELP alternator_agent_active_cadence 1 while filters report traffic (active refresh interval).\n\
             # TYPE alternator_agent_active_cadence gauge\n\
             alternator_agent_active_cadence {}",
            u8::from(ready),
            u8::from(self.active_cadence.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP alternator_agent_requests_total API requests served, by endpoint and status.\n\
             # TYPE alternator_agent_requests_total counter"
        );
        if let Ok(map) = self.served.lock() {
            for ((endpoint, status), value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_requests_total{{endpoint=\"{endpoint}\",code=\"{status}\"}} {value}"
                );
            }
        }
        self.render_dns(&mut out);
        self.render_ring(&mut out);
        out
    }

    fn render_ring(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP alternator_agent_ring_refreshes_total Ring discovery rounds by outcome (ok, refused, error).\n\
             # TYPE alternator_agent_ring_refreshes_total counter"
        );
        if let Ok(map) = self.ring_rounds.lock() {
            for (outcome, value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_ring_refreshes_total{{outcome=\"{}\"}} {value}",
                    outcome.as_str()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_ring_requests_total DynamoDB requests of ring discovery, by request and result (pages count one each).\n\
             # TYPE alternator_agent_ring_requests_total counter"
        );
        if let Ok(map) = self.ring_requests.lock() {
            for ((call, ok), value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_ring_requests_total{{request=\"{}\",result=\"{}\"}} {value}",
                    call.as_str(),
                    if *ok { "success" } else { "failure" }
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_ring_rows_skipped_total Ring rows (or replicas of a row) left out, by reason.\n\
             # TYPE alternator_agent_ring_rows_skipped_total counter"
        );
        if let Ok(map) = self.ring_skipped.lock() {
            for (reason, value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_ring_rows_skipped_total{{reason=\"{reason}\"}} {value}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_ring_rejected_total Table rings refused whole (previous ring kept), by reason.\n\
             # TYPE alternator_agent_ring_rejected_total counter"
        );
        if let Ok(map) = self.ring_rejected.lock() {
            for (reason, value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_ring_rejected_total{{reason=\"{reason}\"}} {value}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_ring_tables Tables in the published ring.\n\
             # TYPE alternator_agent_ring_tables gauge\n\
             alternator_agent_ring_tables {}\n\
             # HELP alternator_agent_ring_version Version of the published ring (0: none yet).\n\
             # TYPE alternator_agent_ring_version gauge\n\
             alternator_agent_ring_version {}\n\
             # HELP alternator_agent_ring_last_success_timestamp_seconds Unix time of the last ring round that read every table (0: never).\n\
             # TYPE alternator_agent_ring_last_success_timestamp_seconds gauge\n\
             alternator_agent_ring_last_success_timestamp_seconds {}",
            self.ring_tables.load(Ordering::Relaxed),
            self.ring_version.load(Ordering::Relaxed),
            format_seconds(self.ring_last_success_unix_ms.load(Ordering::Relaxed))
        );
    }

    fn render_dns(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP alternator_agent_dns_queries_total DNS queries answered, by transport, kind of name (apex, datacenter, rack, other) and response code.\n\
             # TYPE alternator_agent_dns_queries_total counter"
        );
        if let Ok(map) = self.dns_queries.lock() {
            for ((transport, name, rcode), value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_dns_queries_total{{transport=\"{transport}\",name=\"{name}\",rcode=\"{rcode}\"}} {value}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_dns_responses_total DNS responses by number of address records in the answer.\n\
             # TYPE alternator_agent_dns_responses_total counter"
        );
        if let Ok(map) = self.dns_answers.lock() {
            for (answers, value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_dns_responses_total{{answers=\"{answers}\"}} {value}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP alternator_agent_dns_truncated_total UDP responses cut to the client's size, with TC set.\n\
             # TYPE alternator_agent_dns_truncated_total counter\n\
             alternator_agent_dns_truncated_total {}",
            self.dns_truncated.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP alternator_agent_dns_dropped_total DNS packets dropped without a response, by transport and reason.\n\
             # TYPE alternator_agent_dns_dropped_total counter"
        );
        if let Ok(map) = self.dns_dropped.lock() {
            for ((transport, reason), value) in map.iter() {
                let _ = writeln!(
                    out,
                    "alternator_agent_dns_dropped_total{{transport=\"{transport}\",reason=\"{reason}\"}} {value}"
                );
            }
        }
    }
}

fn format_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_values() {
        let m = Metrics::default();
        let rack = Scope::Rack {
            datacenter: "dc\"1".into(),
            rack: "r1".into(),
        };
        m.count_scope(&rack, RefreshOutcome::Success);
        m.count_scope(&rack, RefreshOutcome::Success);
        m.count_scope(&Scope::Cluster, RefreshOutcome::Failure);
        m.count_round(false, 0);
        m.count_round(false, 0);
        m.count_served("nodes", 304);
        let text = m.render(None, false, 5_000);
        assert!(
            text.contains(r#"alternator_agent_refreshes_total{scope="rack",datacenter="dc\"1",rack="r1",outcome="success"} 2"#),
            "{text}"
        );
        assert!(text
            .contains(r#"alternator_agent_refreshes_total{scope="cluster",outcome="failure"} 1"#));
        assert!(text.contains("alternator_agent_refresh_consecutive_failures 2"));
        assert!(text.contains("alternator_agent_last_success_timestamp_seconds 0.000"));
        assert!(text.contains(r#"alternator_agent_requests_total{endpoint="nodes",code="304"} 1"#));
        m.count_round(true, 1_763_735_000_250);
        let text = m.render(None, true, 0);
        assert!(text.contains("alternator_agent_last_success_timestamp_seconds 1763735000.250"));
        assert!(text.contains("alternator_agent_refresh_consecutive_failures 0"));
        assert!(text.contains("alternator_agent_ready 1"));
    }
}
