//! DNS queries come from any process that can reach the agent's DNS port. The responder must
//! never panic, must answer only what hickory-proto itself can read back, and over UDP must
//! never exceed the size the query advertised (512 bytes without EDNS).
#![no_main]

use alternator_discovery_agent::dns::responder::{respond, Zone};
use alternator_routing::scope::{Scope, ScopeMode};
use alternator_routing::snapshot::{HealthState, Node};
use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn node(address: [u8; 4], dc: &str, rack: &str, health: HealthState) -> Node {
    Node {
        address: address.into(),
        datacenter: dc.into(),
        rack: rack.into(),
        health,
    }
}

fuzz_target!(|packet: &[u8]| {
    let Ok(apex) = Name::from_ascii("alternator.local.") else {
        return;
    };
    let nodes: Vec<Node> = (1..=40)
        .map(|i| {
            let health = match i % 5 {
                0 => HealthState::Down,
                1 => HealthState::Quarantined,
                _ => HealthState::Active,
            };
            let rack = if i % 2 == 0 { "r1" } else { "r2" };
            node([10, 0, 0, i], "dc1", rack, health)
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(0);
    for mode in [ScopeMode::Fallback, ScopeMode::Strict] {
        let zone = Zone {
            apex: apex.clone(),
            ttl: 4,
            max_records: 64,
            mode,
            apex_scope: Scope::Cluster,
            declared: vec![Scope::Cluster],
        };
        for (udp, snapshot) in [
            (true, Some(nodes.as_slice())),
            (false, Some(&nodes[..])),
            (true, None),
        ] {
            let Ok(reply) = respond(&zone, packet, snapshot, udp, &mut rng) else {
                continue;
            };
            let decoded = Message::from_vec(&reply.bytes).expect("a response hickory reads back");
            assert_eq!(decoded.answers.len(), reply.answers);
            if udp {
                let request = Message::from_vec(packet).expect("answered, so it decoded");
                assert!(reply.bytes.len() <= usize::from(request.max_payload()));
            }
        }
    }
});
