//! Names and encodings of the keys every worker of one proxy shares.
//!
//! In proxy-wasm this is shared data, scoped by `vm_id`, so every worker VM of one Envoy (and
//! only those) sees these keys. The poller is the only writer of the snapshot keys; each worker reads the tiny
//! [`SNAPSHOT_VERSION`] key on its tick and every 32nd request (`Worker::view`), and the large
//! [`SNAPSHOT`] key only when the version changed.

use std::collections::BTreeMap;

use alternator_routing::passive::PassiveHealth;

use crate::host::Host;

/// The agent's snapshot document, byte for byte.
pub const SNAPSHOT: &str = "alternator-mesh.snapshot";
/// `"<snapshot version>@<stored at ms>"`: changes whenever [`SNAPSHOT`] is rewritten.
pub const SNAPSHOT_VERSION: &str = "alternator-mesh.snapshot-version";
/// The agent's ETag for the stored snapshot (sent back as `If-None-Match`).
pub const ETAG: &str = "alternator-mesh.etag";
/// When the agent last confirmed the stored snapshot (200 or 304), in ms since the epoch.
pub const CONFIRMED_AT_MS: &str = "alternator-mesh.confirmed-at-ms";
/// Whether the agent answered the last poll (`1`/`0`): state changes are logged once.
pub const AGENT_REACHABLE: &str = "alternator-mesh.agent-reachable";
/// The poll lease (see `lease.rs`).
pub const POLL_LEASE: &str = "alternator-mesh.poll-lease";
/// `1` when some worker routed DynamoDB traffic since the last poll told the agent so.
pub const TRAFFIC: &str = "alternator-mesh.traffic";
/// JSON object table → partition-key name learned from CreateTable / DescribeTable.
pub const LEARNED_KEYS: &str = "alternator-mesh.learned-hash-keys";
/// Bumped after every change of [`LEARNED_KEYS`], so requests read a few bytes, not the map.
pub const LEARNED_KEYS_VERSION: &str = "alternator-mesh.learned-hash-keys-version";

/// JSON of `alternator_routing::passive::PassiveHealth`: nodes traffic found unhealthy.
pub const PASSIVE_HEALTH: &str = "alternator-mesh.passive-health";
/// Bumped after every change of [`PASSIVE_HEALTH`], so requests read a few bytes, not the map.
pub const PASSIVE_HEALTH_VERSION: &str = "alternator-mesh.passive-health-version";

/// How often a CAS update is retried before giving up (another worker keeps making progress).
///
/// A key's first write cannot be guarded (the host's CAS token 0 means "no check"), so two
/// workers racing to create a key may lose one update: a learned key name is learned again
/// from the next DescribeTable, a passive-health observation is made again by the next
/// request, and a lease claimed twice overlaps for one tick.
const CAS_ATTEMPTS: usize = 8;

pub fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

pub fn read_u64(host: &impl Host, key: &str) -> Option<u64> {
    host.shared_get(key).0.as_deref().and_then(parse_u64)
}

/// Bumps a version key after its value changed (last writer wins: readers only compare).
fn bump(host: &impl Host, key: &str) {
    let version = read_u64(host, key).unwrap_or(0).wrapping_add(1);
    let _ = host.shared_set(key, version.to_string().as_bytes(), None);
}

/// Reads the learned table → key-name map (empty when missing or unreadable).
pub fn learned_keys(host: &impl Host) -> (BTreeMap<String, String>, Option<u32>) {
    let (value, cas) = host.shared_get(LEARNED_KEYS);
    let map = value
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    (map, cas)
}

/// Records `table → key` in the shared learned map; returns whether it was new.
pub fn learn_key(host: &impl Host, table: &str, key: &str) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (mut map, cas) = learned_keys(host);
        if map.get(table).map(String::as_str) == Some(key) {
            return false;
        }
        map.insert(table.to_string(), key.to_string());
        let Ok(bytes) = serde_json::to_vec(&map) else {
            return false;
        };
        if host.shared_set(LEARNED_KEYS, &bytes, cas).is_ok() {
            bump(host, LEARNED_KEYS_VERSION);
            return true;
        }
    }
    false
}

/// Applies `change` to the shared passive-health table with compare-and-swap; `change` returns
/// whether it changed anything. Returns the table as stored, or `None` if contention won.
pub fn update_passive_health(
    host: &impl Host,
    mut change: impl FnMut(&mut PassiveHealth) -> bool,
) -> Option<PassiveHealth> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = host.shared_get(PASSIVE_HEALTH);
        let mut table = value
            .as_deref()
            .map(PassiveHealth::from_json)
            .unwrap_or_default();
        if !change(&mut table) {
            return Some(table);
        }
        if host
            .shared_set(PASSIVE_HEALTH, &table.to_json(), cas)
            .is_ok()
        {
            bump(host, PASSIVE_HEALTH_VERSION);
            return Some(table);
        }
    }
    None
}
