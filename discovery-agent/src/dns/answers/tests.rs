use std::net::IpAddr;

use alternator_routing::scope::{Scope, ScopeMode};
use alternator_routing::snapshot::{HealthState, Node};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

fn node(address: &str, dc: &str, rack: &str, health: HealthState) -> Node {
    Node {
        address: address.parse().unwrap(),
        datacenter: dc.into(),
        rack: rack.into(),
        health,
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn cluster() -> Vec<Node> {
    use HealthState::*;
    vec![
        node("10.0.0.1", "dc1", "r1", Active),
        node("10.0.0.2", "dc1", "r1", Quarantined),
        node("10.0.0.3", "dc1", "r2", Active),
        node("10.0.0.4", "dc1", "r2", Down),
        node("10.0.1.1", "dc2", "r1", Active),
        node("fd00::1", "dc1", "r1", Active),
    ]
}

fn rack(dc: &str, rack: &str) -> Location {
    Location::Rack {
        datacenter: dc.into(),
        rack: rack.into(),
    }
}

#[test]
fn labels_read_as_locations() {
    assert_eq!(Location::from_labels(&[]), Some(Location::Apex));
    assert_eq!(
        Location::from_labels(&["dc1"]),
        Some(Location::Datacenter("dc1".into()))
    );
    assert_eq!(
        Location::from_labels(&["r1", "dc1"]),
        Some(rack("dc1", "r1"))
    );
    assert_eq!(Location::from_labels(&["x", "r1", "dc1"]), None);
}

#[test]
fn apex_answers_the_agents_scope_active_nodes_only() {
    let apex = Scope::Datacenter {
        datacenter: "dc1".into(),
    };
    let got = select(
        &cluster(),
        &Location::Apex,
        &apex,
        &[],
        ScopeMode::Fallback,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(ips(&["10.0.0.1", "10.0.0.3"])));
    let got = select(
        &cluster(),
        &Location::Apex,
        &Scope::Cluster,
        &[],
        ScopeMode::Strict,
        Family::V4,
    );
    assert_eq!(
        got,
        Selection::Nodes(ips(&["10.0.0.1", "10.0.0.3", "10.0.1.1"]))
    );
}

#[test]
fn families_are_separate() {
    let got = select(
        &cluster(),
        &rack("dc1", "r1"),
        &Scope::Cluster,
        &[],
        ScopeMode::Strict,
        Family::V6,
    );
    assert_eq!(got, Selection::Nodes(ips(&["fd00::1"])));
}

#[test]
fn names_match_without_regard_to_case() {
    let got = select(
        &cluster(),
        &rack("DC1", "R2"),
        &Scope::Cluster,
        &[],
        ScopeMode::Strict,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(ips(&["10.0.0.3"])));
}

#[test]
fn quarantined_only_when_no_active_node_anywhere_allowed() {
    use HealthState::*;
    let nodes = vec![
        node("10.0.0.1", "dc1", "r1", Quarantined),
        node("10.0.0.2", "dc1", "r2", Active),
        node("10.0.0.3", "dc1", "r1", Down),
    ];
    // Fallback: an active node of the datacenter beats the rack's unvetted one.
    let got = select(
        &nodes,
        &rack("dc1", "r1"),
        &Scope::Cluster,
        &[],
        ScopeMode::Fallback,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(ips(&["10.0.0.2"])));
    // Strict: the rack has nothing active, so its quarantined node is the last resort.
    let got = select(
        &nodes,
        &rack("dc1", "r1"),
        &Scope::Cluster,
        &[],
        ScopeMode::Strict,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(ips(&["10.0.0.1"])));
    // Down nodes never answer, even alone.
    let only_down = vec![node("10.0.0.3", "dc1", "r1", Down)];
    let got = select(
        &only_down,
        &rack("dc1", "r1"),
        &Scope::Cluster,
        &[],
        ScopeMode::Fallback,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(vec![]));
}

#[test]
fn unknown_names_widen_in_fallback_and_do_not_exist_when_strict() {
    let got = select(
        &cluster(),
        &rack("dc1", "r9"),
        &Scope::Cluster,
        &[],
        ScopeMode::Fallback,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(ips(&["10.0.0.1", "10.0.0.3"])));
    let got = select(
        &cluster(),
        &Location::Datacenter("dc9".into()),
        &Scope::Cluster,
        &[],
        ScopeMode::Fallback,
        Family::V4,
    );
    assert_eq!(
        got,
        Selection::Nodes(ips(&["10.0.0.1", "10.0.0.3", "10.0.1.1"]))
    );
    // A configured scope exists even while none of its nodes is listed.
    let declared = [Scope::Datacenter {
        datacenter: "dc9".into(),
    }];
    let got = select(
        &cluster(),
        &Location::Datacenter("DC9".into()),
        &Scope::Cluster,
        &declared,
        ScopeMode::Strict,
        Family::V4,
    );
    assert_eq!(got, Selection::Nodes(vec![]));
    for location in [rack("dc1", "r9"), Location::Datacenter("dc9".into())] {
        let got = select(
            &cluster(),
            &location,
            &Scope::Cluster,
            &[],
            ScopeMode::Strict,
            Family::V4,
        );
        assert_eq!(got, Selection::NoSuchName, "{location:?}");
    }
}

#[test]
fn pick_limits_and_shuffles() {
    let all = ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    let mut rng = StdRng::seed_from_u64(7);
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..200 {
        let chosen = pick(all.clone(), 2, &mut rng);
        assert_eq!(chosen.len(), 2);
        assert_ne!(chosen[0], chosen[1]);
        assert!(chosen.iter().all(|a| all.contains(a)));
        firsts.insert(chosen[0]);
    }
    assert_eq!(firsts.len(), all.len(), "every node comes first sometimes");
    assert_eq!(pick(all.clone(), 10, &mut rng).len(), 4);
    assert!(pick(Vec::new(), 1, &mut rng).is_empty());
}
