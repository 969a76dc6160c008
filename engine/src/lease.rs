//! The poll lease: which worker VM of this Envoy polls the discovery agent.
//!
//! Every worker runs its own copy of the filter, and all of them tick. The lease is a
//! shared-data value `owner:expires_at_ms` written with compare-and-swap: the holder renews it
//! on every tick, anyone may take it once it has expired. A worker that loses a CAS race simply
//! tries again on its next tick, so two polls can overlap for at most one tick after a takeover,
//! which the agent tolerates.

/// A decoded lease value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub expires_at_ms: u64,
}

impl Lease {
    pub fn encode(&self) -> String {
        format!("{}:{}", self.owner, self.expires_at_ms)
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (owner, expires) = text.split_once(':')?;
        Some(Lease {
            owner: owner.parse().ok()?,
            expires_at_ms: expires.parse().ok()?,
        })
    }
}

/// What a worker should write to the lease key on this tick, if anything.
///
/// `current` is the stored value (`None`: missing or unreadable, which counts as free).
/// Returns the lease to write with CAS, or `None` when another live worker holds it.
pub fn claim(current: Option<&[u8]>, me: u64, now_ms: u64, ttl_ms: u64) -> Option<Lease> {
    let next = Lease {
        owner: me,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
    };
    match current.and_then(Lease::decode) {
        Some(held) if held.owner != me && held.expires_at_ms > now_ms => None,
        _ => Some(next),
    }
}

/// What a worker going away should write so that another one takes over at its next tick
/// instead of waiting for the lease to expire: the same owner, already expired. `None` when the
/// stored lease is not this worker's (someone took over meanwhile: leave theirs alone).
pub fn release(current: Option<&[u8]>, me: u64) -> Option<Lease> {
    match current.and_then(Lease::decode) {
        Some(held) if held.owner == me => Some(Lease {
            owner: me,
            expires_at_ms: 0,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let l = Lease {
            owner: 7,
            expires_at_ms: 1_763_735_000_000,
        };
        assert_eq!(Lease::decode(l.encode().as_bytes()), Some(l));
        assert_eq!(Lease::decode(b"garbage"), None);
        assert_eq!(Lease::decode(b"1:x"), None);
    }

    #[test]
    fn free_or_expired_lease_is_taken_and_live_foreign_lease_is_respected() {
        assert_eq!(
            claim(None, 1, 100, 50),
            Some(Lease {
                owner: 1,
                expires_at_ms: 150
            })
        );
        assert_eq!(claim(Some(b"junk"), 1, 100, 50).map(|l| l.owner), Some(1));
        let foreign = Lease {
            owner: 2,
            expires_at_ms: 120,
        }
        .encode();
        assert_eq!(claim(Some(foreign.as_bytes()), 1, 100, 50), None);
        assert_eq!(
            claim(Some(foreign.as_bytes()), 1, 120, 50).map(|l| l.owner),
            Some(1)
        );
    }

    #[test]
    fn holder_renews() {
        let mine = Lease {
            owner: 1,
            expires_at_ms: 120,
        }
        .encode();
        assert_eq!(
            claim(Some(mine.as_bytes()), 1, 110, 50),
            Some(Lease {
                owner: 1,
                expires_at_ms: 160
            })
        );
    }

    #[test]
    fn a_released_lease_is_free_for_the_next_claim() {
        let mine = Lease {
            owner: 1,
            expires_at_ms: 10_000,
        }
        .encode();
        let released = release(Some(mine.as_bytes()), 1).expect("own lease is released");
        assert_eq!(released.expires_at_ms, 0);
        let stored = released.encode();
        assert_eq!(
            claim(Some(stored.as_bytes()), 2, 100, 50).map(|l| l.owner),
            Some(2)
        );
        // Someone else's lease, or none, is left alone.
        assert_eq!(release(Some(mine.as_bytes()), 2), None);
        assert_eq!(release(None, 1), None);
        assert_eq!(release(Some(b"junk"), 1), None);
    }
}
