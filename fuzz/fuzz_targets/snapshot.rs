//! The filter stores whatever the discovery agent's `/v1/nodes` answered. Parsing must never
//! panic; an accepted snapshot must survive its own serialisation and must yield routing plans
//! that only name its nodes.
#![no_main]

use alternator_routing::{NodeSnapshot, RoutingTable, Scope, ScopeMode, ScopePolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(snapshot) = NodeSnapshot::from_json(body) else {
        return;
    };
    let again = NodeSnapshot::from_json(snapshot.to_json().as_bytes())
        .unwrap_or_else(|e| panic!("an accepted snapshot does not re-read: {e}"));
    assert!(
        again.content_equal(&snapshot),
        "round trip changed the content"
    );

    let nodes = snapshot.nodes().len();
    let scope = match snapshot.nodes().first() {
        Some(n) => Scope::Rack {
            datacenter: n.datacenter.clone(),
            rack: n.rack.clone(),
        },
        None => Scope::Cluster,
    };
    let table = RoutingTable::new(
        snapshot,
        ScopePolicy {
            scope,
            mode: ScopeMode::Fallback,
        },
    );
    let mut plan = Vec::new();
    let mut header = String::new();
    for counter in 0..4u64 {
        plan.clear();
        header.clear();
        table.round_robin(counter, table.published_health(), 3, &mut plan);
        assert!(
            plan.len() <= 3 && plan.iter().all(|&i| i < nodes),
            "plan {plan:?} of {nodes} nodes"
        );
        table.push_override_hosts(&plan, &mut header);
        assert_eq!(
            header.split(',').filter(|s| !s.is_empty()).count(),
            plan.len()
        );
    }
});
