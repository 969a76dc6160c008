//! The poll lease between the worker VMs of one proxy: one poller at a time, hand-over when
//! the holder's root ends, take-over when it stops ticking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use alternator_engine::shared;
use support::*;

#[test]
fn only_one_worker_of_a_proxy_polls() {
    let (a_host, mut a, b_host, mut b) = two_workers("{}");
    assert_ne!(a.poller().worker_id(), b.poller().worker_id());

    a.on_tick();
    b.on_tick();
    assert!(a.poller().holds_lease());
    assert!(!b.poller().holds_lease());
    assert_eq!(
        a_host.shared_str(shared::POLL_LEASE),
        Some(format!("{}:{}", a.poller().worker_id(), START_MS + 5_000))
    );
    let call = a_host.take_one_call();
    a_host.answer(
        &mut a,
        call.token,
        Answer::ok(Some("\"v1\""), three_nodes(1)),
    );
    for _ in 0..30 {
        a_host.advance(500);
        b.on_tick();
        a.on_tick();
    }
    assert_eq!(a_host.take_calls().len(), 1, "one long-poll");
    assert_eq!(b_host.calls(), []);
    assert_eq!(
        a_host.shared_str(shared::POLL_LEASE),
        Some(format!(
            "{}:{}",
            a.poller().worker_id(),
            a_host.now() + 5_000
        )),
        "renewed on every tick"
    );
}

#[test]
fn when_the_holders_root_ends_another_worker_polls_on_its_very_next_tick() {
    let (a_host, mut a, b_host, mut b) = two_workers("{}");
    poll_snapshot(&a_host, &mut a, &three_nodes(1));
    b.on_tick();
    assert_eq!(b_host.calls(), []);

    route_one(&a);
    a.on_done();
    assert_eq!(
        a_host.shared_str(shared::POLL_LEASE),
        Some(format!("{}:0", a.poller().worker_id()))
    );
    assert!(!a.poller().holds_lease());
    assert_eq!(
        a_host.metric("alternator_routed_total;policy=round_robin"),
        Some(1),
        "on_done flushes the counters"
    );

    a_host.advance(1);
    b.on_tick();
    assert!(b.poller().holds_lease());
    let call = b_host.take_one_call();
    assert_eq!(call.path(), "/v1/nodes?wait=20");
    assert_eq!(call.header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        b_host.shared_str(shared::POLL_LEASE),
        Some(format!(
            "{}:{}",
            b.poller().worker_id(),
            b_host.now() + 5_000
        ))
    );
}

#[test]
fn a_root_that_does_not_hold_the_lease_leaves_it_alone_when_it_ends() {
    let (a_host, mut a, _, mut b) = two_workers("{}");
    a.on_tick();
    b.on_tick();
    let lease = a_host.shared_str(shared::POLL_LEASE);
    b.on_done();
    assert_eq!(a_host.shared_str(shared::POLL_LEASE), lease);
}

#[test]
fn when_the_holder_stops_ticking_another_worker_takes_over_once_the_lease_expires() {
    let (a_host, mut a, b_host, mut b) = two_workers(r#"{"agent":{"lease_ms":4000}}"#);
    a.on_tick();
    let _never_answered = a_host.take_one_call();

    // `a` is stuck: no more ticks from it.
    for at in (500..4_000).step_by(500).chain([3_999]) {
        b_host.set_now(START_MS + at);
        b.on_tick();
        assert!(!b.poller().holds_lease(), "taken over at +{at} ms");
    }
    assert_eq!(b_host.calls(), []);

    b_host.set_now(START_MS + 4_000);
    b.on_tick();
    assert!(b.poller().holds_lease());
    assert_eq!(b_host.take_one_call().path(), "/v1/nodes");
    assert_eq!(
        b_host.shared_str(shared::POLL_LEASE),
        Some(format!("{}:{}", b.poller().worker_id(), START_MS + 8_000))
    );

    // The old holder comes back: it has lost the lease and does not poll.
    a_host.advance(500);
    a.on_tick();
    assert!(!a.poller().holds_lease());
    assert_eq!(a_host.calls(), []);
}

#[test]
fn workers_get_distinct_lease_ids_from_their_seeds_not_from_shared_state() {
    let a_host = MockHost::new();
    let b_host = a_host.sibling();
    let a = configured(&a_host, "{}");
    let b = configured(&b_host, "{}");
    assert_ne!(a.poller().worker_id(), 0);
    assert_ne!(a.poller().worker_id(), b.poller().worker_id());
}

#[test]
fn workers_ticking_in_turn_never_both_poll() {
    let (a_host, mut a, b_host, mut b) = two_workers("{}");
    for _ in 0..4 {
        a.on_tick();
        b.on_tick();
        a_host.advance(500);
    }
    assert_eq!(a_host.calls().len() + b_host.calls().len(), 1);
}

/// Two workers claim a missing lease at once: `b` claims between `a`'s read and `a`'s write,
/// and proxy-wasm cannot guard a key's first write. Both poll on that tick (the overlap the
/// lease tolerates); from the next tick on only the last writer does.
#[test]
fn a_lease_claimed_twice_at_once_overlaps_for_one_tick_only() {
    let a_host = MockHost::new();
    let b_host = a_host.sibling();
    let mut a = configured(&a_host, "{}");
    let b = Rc::new(RefCell::new(configured_seeded(&b_host, "{}", 2)));
    let b_in_hook = Rc::clone(&b);
    a_host.before_next_shared_set(shared::POLL_LEASE, move || b_in_hook.borrow_mut().on_tick());
    a.on_tick();
    assert!(a.poller().holds_lease() && b.borrow().poller().holds_lease());
    assert_eq!(a_host.take_calls().len() + b_host.take_calls().len(), 2);
    for _ in 0..4 {
        a_host.advance(500);
        b.borrow_mut().on_tick();
        a.on_tick();
    }
    assert!(a.poller().holds_lease());
    assert!(!b.borrow().poller().holds_lease());
    assert_eq!(b_host.calls(), []);
}
