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
