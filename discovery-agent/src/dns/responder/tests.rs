use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use alternator_routing::snapshot::HealthState;

fn zone(max_records: usize) -> Zone {
    Zone {
        apex: Name::from_ascii("alternator.local.").unwrap(),
        ttl: 4,
        max_records,
        mode: ScopeMode::Fallback,
        apex_scope: Scope::Cluster,
        declared: vec![Scope::Cluster],
    }
}

fn nodes(count: u8) -> Vec<Node> {
    (1..=count)
        .map(|i| Node {
            address: IpAddr::from([10, 0, 0, i]),
            datacenter: "dc1".into(),
            rack: "r1".into(),
            health: HealthState::Active,
        })
        .collect()
}

fn ask(zone: &Zone, packet: &[u8], nodes: Option<&[Node]>, udp: bool) -> (Reply, Message) {
    let reply = respond(zone, packet, nodes, udp, &mut StdRng::seed_from_u64(1)).unwrap();
    let message = Message::from_vec(&reply.bytes).unwrap();
    (reply, message)
}

fn apex_query(edns: Option<u16>) -> Vec<u8> {
    query_bytes(
        0x1234,
        &Name::from_ascii("alternator.local.").unwrap(),
        RecordType::A,
        edns,
    )
}

#[test]
fn answers_echo_the_question_and_id_and_offer_no_recursion() {
    let all = nodes(3);
    let (reply, message) = ask(&zone(2), &apex_query(None), Some(&all), true);
    assert_eq!(message.metadata.id, 0x1234);
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert!(message.metadata.authoritative);
    assert!(message.metadata.recursion_desired);
    assert!(!message.metadata.recursion_available);
    assert_eq!(message.queries.len(), 1);
    assert_eq!(message.answers.len(), 2);
    assert_eq!(reply.answers, 2);
    assert_eq!(reply.kind, NameKind::Apex);
    assert!(
        message.edns.is_none(),
        "no EDNS in the query, none in the answer"
    );
    let (_, message) = ask(&zone(2), &apex_query(Some(4096)), Some(&all), true);
    assert_eq!(
        message.edns.map(|e| e.max_payload()),
        Some(ADVERTISED_UDP_PAYLOAD)
    );
}

#[test]
fn udp_size_follows_the_query_and_tcp_is_unlimited() {
    let all = nodes(60);
    let (reply, message) = ask(&zone(64), &apex_query(None), Some(&all), true);
    assert!(reply.bytes.len() <= 512);
    assert!(reply.truncated && message.metadata.truncation);
    assert!(reply.answers < 60);
    // An advertised size below 512 still gets 512 (RFC 6891 §6.2.5).
    let (reply, _) = ask(&zone(64), &apex_query(Some(100)), Some(&all), true);
    assert!(reply.bytes.len() <= 512 && reply.bytes.len() > 100);
    let (reply, message) = ask(&zone(64), &apex_query(Some(4096)), Some(&all), true);
    assert!(!reply.truncated && !message.metadata.truncation);
    assert_eq!(reply.answers, 60);
    let (reply, _) = ask(&zone(64), &apex_query(None), Some(&all), false);
    assert!(!reply.truncated);
    assert_eq!(reply.answers, 60);
}

#[test]
fn no_snapshot_is_servfail_inside_the_zone_only() {
    let (reply, _) = ask(&zone(1), &apex_query(None), None, true);
    assert_eq!(reply.rcode, ResponseCode::ServFail);
    let outside = query_bytes(
        1,
        &Name::from_ascii("example.com.").unwrap(),
        RecordType::A,
        None,
    );
    let (reply, _) = ask(&zone(1), &outside, None, true);
    assert_eq!(reply.rcode, ResponseCode::Refused);
    assert_eq!(reply.kind, NameKind::Other);
}

#[test]
fn unusual_messages() {
    let all = nodes(1);
    let name = Name::from_ascii("alternator.local.").unwrap();
    // Two questions: FORMERR.
    let mut two = Message::new(9, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(name.clone(), RecordType::A));
    two.add_query(Query::query(name.clone(), RecordType::AAAA));
    let (reply, _) = ask(&zone(1), &two.to_vec().unwrap(), Some(&all), true);
    assert_eq!(reply.rcode, ResponseCode::FormErr);
    // An UPDATE: not implemented.
    let mut update = Message::new(9, MessageType::Query, OpCode::Update);
    update.add_query(Query::query(name.clone(), RecordType::SOA));
    let (reply, _) = ask(&zone(1), &update.to_vec().unwrap(), Some(&all), true);
    assert_eq!(reply.rcode, ResponseCode::NotImp);
    // A response is never answered.
    let mut response = Message::new(9, MessageType::Response, OpCode::Query);
    response.add_query(Query::query(name.clone(), RecordType::A));
    let dropped = respond(
        &zone(1),
        &response.to_vec().unwrap(),
        Some(&all),
        true,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(dropped.unwrap_err(), Dropped::Malformed);
    // SOA at the apex answers the zone's SOA.
    let soa = query_bytes(3, &name, RecordType::SOA, None);
    let (reply, message) = ask(&zone(1), &soa, Some(&all), true);
    assert_eq!(reply.rcode, ResponseCode::NoError);
    assert_eq!(message.answers.len(), 1);
    assert_eq!(message.answers[0].record_type(), RecordType::SOA);
    // Oversized before any parsing.
    let huge = vec![0u8; MAX_QUERY_BYTES + 1];
    let dropped = respond(
        &zone(1),
        &huge,
        Some(&all),
        true,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(dropped.unwrap_err(), Dropped::Oversized);
}

/// Mutated and random packets: never a panic, and every answer reads back and fits.
#[test]
fn arbitrary_packets_never_break_the_rules() {
    let all = nodes(40);
    let zone = zone(64);
    let mut rng = StdRng::seed_from_u64(42);
    let seeds = [apex_query(None), apex_query(Some(1232))];
    for round in 0..20_000 {
        let mut packet = if round % 4 == 0 {
            let len = rng.gen_range(0..600);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            seeds[round % 2].clone()
        };
        for _ in 0..rng.gen_range(1..6) {
            if packet.is_empty() {
                break;
            }
            let at = rng.gen_range(0..packet.len());
            match rng.gen_range(0..3) {
                0 => packet[at] = rng.gen(),
                1 => packet.truncate(at),
                _ => packet.insert(at, rng.gen()),
            }
        }
        for udp in [true, false] {
            if let Ok(reply) = respond(&zone, &packet, Some(&all), udp, &mut rng) {
                let message = Message::from_vec(&reply.bytes).unwrap();
                assert_eq!(message.answers.len(), reply.answers);
                if udp {
                    let request = Message::from_vec(&packet).unwrap();
                    assert!(reply.bytes.len() <= usize::from(request.max_payload()));
                }
            }
        }
    }
}
