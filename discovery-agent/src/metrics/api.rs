//! The HTTP API's metrics: requests served by endpoint and status, long polls held open.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Exposition, Family, API_REQUESTS, LONG_POLLS_WAITING};

/// The API's counters and gauges.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    served: Mutex<BTreeMap<(&'static str, u16), u64>>,
    waiting: AtomicU64,
}

impl ApiMetrics {
    /// Counts one answered request.
    pub fn count_served(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut map) = self.served.lock() {
            *map.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// Counts a long poll as held open until the returned guard is dropped.
    pub fn long_poll(&self) -> LongPoll<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        LongPoll(&self.waiting)
    }

    /// Writes the series of `family` if it is one of the API's.
    pub(super) fn write(&self, family: &Family, out: &mut Exposition) {
        if *family == LONG_POLLS_WAITING {
            out.sample(family, &[], self.waiting.load(Ordering::Relaxed));
        }
        if *family != API_REQUESTS {
            return;
        }
        if let Ok(map) = self.served.lock() {
            for ((endpoint, status), value) in map.iter() {
                let code = status.to_string();
                out.sample(family, &[("endpoint", endpoint), ("code", &code)], value);
            }
        }
    }
}

/// One long poll held open ([`ApiMetrics::long_poll`]); dropping it (answered, or the
/// connection gone) takes it off the gauge.
#[derive(Debug)]
pub struct LongPoll<'a>(&'a AtomicU64);

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
