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
mod tests;
