//! Property tests of the plan, scope, health, endpoint and parser invariants.

// Test helpers outside #[test] functions: a panic here is a failed test, which is the point.
#![allow(clippy::panic)]
// Only for the counting allocator that proves plans do not allocate.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use alternator_routing::endpoint::{canonical_order, Endpoint};
use alternator_routing::health::{HealthThresholds, NodeHealth, Observation};
use alternator_routing::plan::{select, RoutingTable};
use alternator_routing::{
    parse_localnodes, HealthState, Node, NodeSnapshot, Scheme, Scope, ScopeMode, ScopePolicy,
};
use proptest::prelude::*;

fn health_strategy() -> impl Strategy<Value = HealthState> {
    prop_oneof![
        Just(HealthState::Active),
        Just(HealthState::Quarantined),
        Just(HealthState::Down),
    ]
}

fn address_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        4 => (0u8..40).prop_map(|o| IpAddr::V4(Ipv4Addr::new(10, 0, o / 10, o))),
        1 => (0u16..20).prop_map(|s| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, s >> 3, s))),
    ]
}

fn node_strategy() -> impl Strategy<Value = Node> {
    (address_strategy(), 0..3usize, 0..3usize, health_strategy()).prop_map(
        |(address, dc, rack, health)| Node {
            address,
            datacenter: format!("dc{dc}"),
            rack: format!("r{rack}"),
            health,
        },
    )
}

fn snapshot_strategy() -> impl Strategy<Value = NodeSnapshot> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![Just(Scheme::Http), Just(Scheme::Https)],
        prop_oneof![Just(80u16), Just(443u16), 1u16..],
        prop::collection::vec(node_strategy(), 0..24),
    )
        .prop_map(|(v, t, scheme, port, nodes)| NodeSnapshot::new(v, t, scheme, port, nodes))
}

fn policy_strategy() -> impl Strategy<Value = ScopePolicy> {
    let scope = prop_oneof![
        Just(Scope::Cluster),
        (0..3usize).prop_map(|d| Scope::Datacenter {
            datacenter: format!("dc{d}")
        }),
        (0..3usize, 0..3usize).prop_map(|(d, r)| Scope::Rack {
            datacenter: format!("dc{d}"),
            rack: format!("r{r}")
        }),
    ];
    let mode = prop_oneof![Just(ScopeMode::Strict), Just(ScopeMode::Fallback)];
    (scope, mode).prop_map(|(scope, mode)| ScopePolicy { scope, mode })
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    RoundRobin,
    Random,
}

fn plan(
    table: &RoutingTable,
    kind: Kind,
    draw: u64,
    health: &[HealthState],
    k: usize,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(k);
    match kind {
        Kind::RoundRobin => table.round_robin(draw, health, k, &mut out),
        Kind::Random => table.random(draw, health, k, &mut out),
    }
    out
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::RoundRobin), Just(Kind::Random)]
}

/// The tier (scope-chain position) of every node index; `None` outside the policy.
fn tier_of(table: &RoutingTable) -> Vec<Option<usize>> {
    let mut tier_of = vec![None; table.snapshot().nodes().len()];
    for (t, tier) in table.tiers().enumerate() {
        for &i in tier {
            tier_of[i] = Some(t);
        }
    }
    tier_of
}

/// Counts allocations per thread, so tests running in parallel do not disturb each other.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call unchanged to the system allocator; the counter is a
// const-initialised thread-local that never allocates itself.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn plans_do_not_allocate_once_the_output_has_capacity() {
    let nodes: Vec<Node> = (0..100u8)
        .map(|i| Node {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
            datacenter: format!("dc{}", i % 2),
            rack: format!("r{}", i % 3),
            health: [
                HealthState::Active,
                HealthState::Quarantined,
                HealthState::Down,
            ][usize::from(i % 3)],
        })
        .collect();
    let policy = ScopePolicy {
        scope: Scope::Rack {
            datacenter: "dc0".into(),
            rack: "r1".into(),
        },
        mode: ScopeMode::Fallback,
    };
    let table = RoutingTable::new(NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes), policy);
    let health = table.published_health().to_vec();
    let base: Vec<usize> = (0..100).rev().collect();
    let mut out = Vec::with_capacity(5);
    let before = allocations();
    let mut planned = 0;
    for draw in 0..1000u64 {
        table.round_robin(draw, &health, 5, &mut out);
        planned += out.len();
        table.random(
            draw.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            &health,
            5,
            &mut out,
        );
        planned += out.len();
        select(&base, &health, 5, &mut out);
        planned += out.len();
    }
    assert_eq!(allocations() - before, 0);
    assert_eq!(
        planned,
        3 * 1000 * 5,
        "every plan was full, so the loop did real work"
    );
}

proptest! {
    #[test]
    fn plans_are_valid_health_ordered_subsets(
        snapshot in snapshot_strategy(),
        policy in policy_strategy(),
        kind in kind_strategy(),
        draw in any::<u64>(),
        k in 0usize..30,
        overlay in prop::collection::vec(health_strategy(), 24),
    ) {
        let table = RoutingTable::new(snapshot, policy.clone());
        let n = table.snapshot().nodes().len();
        let health = &overlay[..n];
        let out = plan(&table, kind, draw, health, k);
        let tiers = tier_of(&table);

        prop_assert!(out.len() <= k);
        let mut seen = vec![false; n];
        for &i in &out {
            prop_assert!(i < n);
            prop_assert!(!seen[i], "index {} repeated in {:?}", i, out);
            seen[i] = true;
            prop_assert!(health[i] != HealthState::Down, "DOWN node {} planned", i);
            let node = &table.snapshot().nodes()[i];
            prop_assert!(tiers[i].is_some(), "node outside the policy planned");
            if policy.mode == ScopeMode::Strict {
                prop_assert!(policy.scope.contains(node));
            }
        }
        // Tiers never go backwards, and within a tier ACTIVE precede QUARANTINED.
        for pair in out.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            prop_assert!(tiers[a] <= tiers[b]);
            if tiers[a] == tiers[b] {
                prop_assert!(!(health[a] == HealthState::Quarantined && health[b] == HealthState::Active));
            }
        }
        // A short plan means every routable eligible node is already in it.
        let eligible = (0..n).filter(|&i| tiers[i].is_some() && health[i] != HealthState::Down).count();
        prop_assert_eq!(out.len(), k.min(eligible));
    }

    #[test]
    fn first_candidate_comes_from_the_innermost_scope_with_an_eligible_node(
        snapshot in snapshot_strategy(),
        policy in policy_strategy(),
        kind in kind_strategy(),
        draw in any::<u64>(),
    ) {
        let table = RoutingTable::new(snapshot, policy);
        let health = table.published_health().to_vec();
        let out = plan(&table, kind, draw, &health, 3);
        let innermost = table
            .tiers()
            .position(|tier| tier.iter().any(|&i| health[i] != HealthState::Down));
        match (out.first(), innermost) {
            (None, None) => {}
            (Some(&first), Some(t)) => {
                let tiers: Vec<&[usize]> = table.tiers().collect();
                prop_assert!(tiers[t].contains(&first), "first {} not in tier {}", first, t);
            }
            (first, t) => prop_assert!(false, "first {:?} but innermost eligible tier {:?}", first, t),
        }
    }

    #[test]
    fn round_robin_covers_the_scope_in_n_requests(
        snapshot in snapshot_strategy(),
        policy in policy_strategy(),
        start in any::<u64>(),
    ) {
        let table = RoutingTable::new(snapshot, policy);
        let all_active = vec![HealthState::Active; table.snapshot().nodes().len()];
        let Some(scope) = table.tiers().next() else { return Ok(()); };
        if scope.is_empty() {
            return Ok(());
        }
        let mut firsts: Vec<usize> = (0..scope.len() as u64)
            .map(|i| plan(&table, Kind::RoundRobin, start.wrapping_add(i), &all_active, 1)[0])
            .collect();
        firsts.sort_unstable();
        prop_assert_eq!(firsts, scope.to_vec());
    }

    #[test]
    fn health_never_changes_the_base_order(
        snapshot in snapshot_strategy(),
        kind in kind_strategy(),
        draw in any::<u64>(),
        overlay in prop::collection::vec(health_strategy(), 24),
    ) {
        // One tier (cluster scope): the plan under any health is the all-active plan with
        // health applied by `select`, i.e. health only filters and partitions.
        let table = RoutingTable::new(snapshot, ScopePolicy::default());
        let n = table.snapshot().nodes().len();
        let base = plan(&table, kind, draw, &vec![HealthState::Active; n], n);
        let mut expected = Vec::new();
        select(&base, &overlay[..n], n, &mut expected);
        prop_assert_eq!(plan(&table, kind, draw, &overlay[..n], n), expected);
    }

    #[test]
    fn select_keeps_base_order_within_each_health_class(
        base in prop::collection::vec(0usize..20, 0..30),
        health in prop::collection::vec(health_strategy(), 16),
        k in 0usize..20,
    ) {
        let mut out = Vec::new();
        select(&base, &health, k, &mut out);
        let mut firsts = Vec::new();
        for &i in &base {
            if i < health.len() && !firsts.contains(&i) {
                firsts.push(i);
            }
        }
        let health = &health;
        let expected: Vec<usize> = [HealthState::Active, HealthState::Quarantined]
            .iter()
            .flat_map(|h| firsts.iter().copied().filter(move |&i| health[i] == *h))
            .take(k)
            .collect();
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn snapshot_json_round_trips(snapshot in snapshot_strategy()) {
        let json = snapshot.to_json();
        let back = NodeSnapshot::from_json(json.as_bytes());
        prop_assert!(back.is_ok(), "{:?} for {}", back.err(), json);
        if let Ok(back) = back {
            prop_assert_eq!(back, snapshot);
        }
    }

    #[test]
    fn parsers_never_panic(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        // JSON-ish text reaches deeper into the parsers than uniform bytes do.
        "[\\[\\]{}\",:0-9a-z.\\\\ -]{0,64}".prop_map(String::into_bytes),
    ]) {
        let _ = parse_localnodes(&bytes);
        let _ = NodeSnapshot::from_json(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Endpoint::parse(&text);
    }

    #[test]
    fn localnodes_keeps_every_ip_once_and_counts_the_rest(
        entries in prop::collection::vec(
            prop_oneof![
                address_strategy().prop_map(|a| a.to_string()),
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                ".{0,12}",
            ],
            0..20,
        ),
    ) {
        let body = serde_json::to_vec(&entries).unwrap_or_default();
        let parsed = parse_localnodes(&body);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        if let Ok(parsed) = parsed {
            let ips: Vec<IpAddr> = entries.iter().filter_map(|e| e.parse().ok()).collect();
            prop_assert_eq!(parsed.skipped, entries.len() - ips.len());
            let mut unique = Vec::new();
            for ip in ips {
                if !unique.contains(&ip) {
                    unique.push(ip);
                }
            }
            prop_assert_eq!(parsed.addresses, unique);
        }
    }

    #[test]
    fn endpoint_canonical_form_is_a_fixed_point(
        scheme in "[hH][tT][tT][pP][sS]?",
        host in prop_oneof!["[a-zA-Z0-9-]{1,10}(\\.[a-zA-Z0-9-]{1,6}){0,2}", address_strategy().prop_map(|a| match a {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        })],
        port in prop::option::of(1u16..),
        suffix in "(/[a-z]{0,4})?(\\?[a-z=]{0,4})?(#[a-z]{0,3})?",
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let input = format!("{scheme}://{host}{port}{suffix}");
        let endpoint = Endpoint::parse(&input);
        prop_assert!(endpoint.is_ok(), "{} rejected: {:?}", input, endpoint);
        if let Ok(endpoint) = endpoint {
            let again = Endpoint::parse(endpoint.canonical());
            prop_assert_eq!(again.as_ref().ok(), Some(&endpoint));
            let ordered = canonical_order([input.as_str(), endpoint.canonical()]);
            prop_assert_eq!(ordered.map(|o| o.len()).ok(), Some(1));
        }
    }

    #[test]
    fn health_generation_counts_entries_to_down(
        start_active in any::<bool>(),
        observations in prop::collection::vec(0u8..4, 0..60),
        thresholds in (0u32..5, 0u32..5, 0u32..5, 0u32..5),
    ) {
        let t = HealthThresholds {
            active_failure_threshold: thresholds.0,
            down_recovery_threshold: thresholds.1,
            quarantine_promotion_threshold: thresholds.2,
            quarantine_failure_threshold: thresholds.3,
        };
        let mut h = if start_active { NodeHealth::active(&t) } else { NodeHealth::quarantined() };
        let mut entries = 0u64;
        for o in observations {
            let obs = match o {
                0 => Observation::TrafficSuccess,
                1 => Observation::TrafficFailure,
                2 => Observation::ProbeSuccess,
                _ => Observation::ProbeFailure,
            };
            let before = h;
            let changed = h.observe(obs, &t);
            prop_assert_eq!(changed, before != h);
            if before.state == HealthState::Active && !obs.is_traffic() {
                prop_assert_eq!(h, before, "a probe changed an active node");
            }
            if before.state == HealthState::Down && obs.is_traffic() {
                prop_assert_eq!(h, before, "traffic changed a down node");
            }
            if before.state == HealthState::Down && h.state != HealthState::Down {
                prop_assert_eq!(h.state, HealthState::Quarantined, "down must recover via quarantine");
            }
            if before.state != HealthState::Down && h.state == HealthState::Down {
                entries += 1;
            }
            prop_assert_eq!(h.generation, entries);
        }
    }
}
