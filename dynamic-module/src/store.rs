//! State shared by every worker thread of this Envoy: the engine's "shared data".
//!
//! The proxy-wasm build keeps it in Envoy's shared data, one copy per VM id; here it is one
//! map per process. Reads never lock: the map is an immutable value behind an atomic pointer
//! (`arc-swap`), so a worker's read on the request path is an atomic load and a hash lookup.
//! Writes (a new snapshot, a passive-health verdict, a learned key name: rare) take a mutex,
//! copy the map, change the copy and publish it.
//!
//! Every write bumps [`Store::generation`], which workers compare before a request to
//! notice at once that something they cache may have changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use alternator_engine::SharedError;
use arc_swap::ArcSwap;

#[derive(Debug, Clone)]
struct Entry {
    value: Arc<[u8]>,
    /// Compare-and-swap token: 1 on the first write, then one more on every write.
    cas: u32,
}

#[derive(Debug, Default)]
pub struct Store {
    map: ArcSwap<HashMap<String, Entry>>,
    writer: Mutex<()>,
    generation: AtomicU64,
}

/// The store of this process.
pub static STORE: LazyLock<Store> = LazyLock::new(Store::default);

impl Store {
    /// The value of `key` and its compare-and-swap token; `(None, None)` when missing.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.map.load().get(key) {
            Some(entry) => (Some(entry.value.to_vec()), Some(entry.cas)),
            None => (None, None),
        }
    }

    /// Writes `key`. With a token other than 0, only if nobody wrote the key since that
    /// token was read (a missing key has no token, so its first write cannot be guarded:
    /// the proxy-wasm rule the engine is written against).
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        // A poisoned lock only means another writer panicked between two complete maps.
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.map.load();
        let previous = current.get(key).map(|e| e.cas);
        if let Some(expected) = cas.filter(|&c| c != 0) {
            if previous != Some(expected) {
                return Err(SharedError::CasMismatch);
            }
        }
        let mut next = HashMap::clone(&current);
        next.insert(
            key.to_string(),
            Entry {
                value: Arc::from(value),
                cas: previous.unwrap_or(0).wrapping_add(1).max(1),
            },
        );
        self.map.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Changes with every write.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_follows_the_proxy_wasm_rules() {
        let store = Store::default();
        assert_eq!(store.get("k"), (None, None));
        assert!(store.set("k", b"a", None).is_ok());
        let (value, cas) = store.get("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        let cas = cas.unwrap_or_default();
        assert!(store.set("k", b"b", Some(cas)).is_ok());
        // The token read before the last write is stale now.
        assert_eq!(
            store.set("k", b"c", Some(cas)),
            Err(SharedError::CasMismatch)
        );
        assert_eq!(store.get("k").0.as_deref(), Some(&b"b"[..]));
        // 0 and None write unconditionally.
        assert!(store.set("k", b"d", Some(0)).is_ok());
        // A token for a key that does not exist does not match.
        assert_eq!(
            store.set("other", b"x", Some(7)),
            Err(SharedError::CasMismatch)
        );
    }

    #[test]
    fn every_write_moves_the_generation() {
        let store = Store::default();
        let before = store.generation();
        assert!(store.set("k", b"a", None).is_ok());
        assert_ne!(store.generation(), before);
    }
}
