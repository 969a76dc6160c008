//! The DNS listener's metrics: answered queries, answer sizes, truncation, dropped packets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Exposition, Family, DNS_DROPPED, DNS_QUERIES, DNS_RESPONSES, DNS_TRUNCATED};
use crate::dns::responder::{rcode_label, Dropped, Reply};

/// The DNS listener's counters.
#[derive(Debug, Default)]
pub struct DnsMetrics {
    queries: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    answers: Mutex<BTreeMap<usize, u64>>,
    truncated: AtomicU64,
    dropped: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl DnsMetrics {
    /// Counts one response: by transport, kind of name and response code; by number of
    /// answer records (bounded by `--dns-max-records`); and whether it was truncated.
    pub fn count_reply(&self, transport: &'static str, reply: &Reply) {
        if let Ok(mut map) = self.queries.lock() {
            *map.entry((transport, reply.kind.as_str(), rcode_label(reply.rcode)))
                .or_default() += 1;
        }
        if let Ok(mut map) = self.answers.lock() {
            *map.entry(reply.answers).or_default() += 1;
        }
        if reply.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one packet that got no response.
    pub fn count_dropped(&self, transport: &'static str, reason: Dropped) {
        if let Ok(mut map) = self.dropped.lock() {
            *map.entry((transport, reason.as_str())).or_default() += 1;
        }
    }

    /// Writes the series of `family` if it is one of the DNS listener's.
    pub(super) fn write(&self, family: &Family, out: &mut Exposition) {
        if *family == DNS_QUERIES {
            if let Ok(map) = self.queries.lock() {
                for ((transport, name, rcode), value) in map.iter() {
                    let labels = [("transport", *transport), ("name", name), ("rcode", rcode)];
                    out.sample(family, &labels, value);
                }
            }
        } else if *family == DNS_RESPONSES {
            if let Ok(map) = self.answers.lock() {
                for (answers, value) in map.iter() {
                    out.sample(family, &[("answers", &answers.to_string())], value);
                }
            }
        } else if *family == DNS_TRUNCATED {
            out.sample(family, &[], self.truncated.load(Ordering::Relaxed));
        } else if *family == DNS_DROPPED {
            if let Ok(map) = self.dropped.lock() {
                for ((transport, reason), value) in map.iter() {
                    out.sample(
                        family,
                        &[("transport", transport), ("reason", reason)],
                        value,
                    );
                }
            }
        }
    }
}
