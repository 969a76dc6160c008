//! The HTTP API's metrics: requests served by endpoint and status.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Exposition, Family, API_REQUESTS};

/// The API's counters.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    served: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl ApiMetrics {
    /// Counts one answered request.
    pub fn count_served(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut map) = self.served.lock() {
            *map.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// Writes the series of `family` if it is one of the API's.
    pub(super) fn write(&self, family: &Family, out: &mut Exposition) {
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
