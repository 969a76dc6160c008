//! The agent's DNS listener against the in-process `alternator-sim` cluster, queried over UDP
//! and TCP as a stub resolver would: answers follow the vetted node list, scope names widen
//! as the filter's scopes do, other names are refused, UDP answers fit the client's size, and
//! malformed packets are dropped, counted and survived.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use alternator_discovery_agent::dns::DnsConfig;
use alternator_discovery_agent::Config;
use alternator_routing::scope::ScopeMode;
use alternator_sim::{NodeSpec, Sim, SimConfig};
use common::{eventually, fast_config, ip, AgentUnderTest};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WITHIN: Duration = Duration::from_secs(15);
const ZONE: &str = "alternator.local.";

async fn sim(specs: &[(IpAddr, &str, &str)]) -> Sim {
    let nodes = specs
        .iter()
        .map(|(address, dc, rack)| NodeSpec::new(*address, *dc, *rack))
        .collect();
    Sim::start(SimConfig::new(nodes)).await.unwrap()
}

fn dns_config(sim: &Sim, seeds: &[IpAddr], max_records: usize, mode: ScopeMode) -> Config {
    let mut config = fast_config(seeds, sim.port());
    let mut dns = DnsConfig::new("127.0.0.1:0".parse().unwrap());
    dns.max_records = max_records;
    dns.scope_mode = mode;
    config.dns = Some(dns);
    config
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn query(text: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(0x5eed, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name(text), qtype));
    if let Some(payload) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(payload);
        message.set_edns(opt);
    }
    message.to_vec().unwrap()
}

/// How long a query that must be answered may take: a guard against a hang, not a speed
/// assertion (a loaded machine can take longer than half a second to answer).
const ANSWERED: Duration = Duration::from_secs(30);
/// How long a packet that must not be answered is given to draw one: a correct agent never
/// answers it, so a slow machine cannot make this check fail.
const UNANSWERED: Duration = Duration::from_millis(500);

/// Sends `packet` over UDP; `None` when nothing comes back within `wait`.
async fn udp_raw(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buffer = vec![0u8; 65_535];
    let received = tokio::time::timeout(wait, socket.recv(&mut buffer))
        .await
        .ok()?
        .unwrap();
    buffer.truncate(received);
    Some(buffer)
}

async fn udp(server: SocketAddr, text: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let bytes = udp_raw(server, &query(text, qtype, edns), ANSWERED)
        .await
        .expect("a UDP answer");
    Message::from_vec(&bytes).unwrap()
}

/// One framed query and its answer on an open TCP connection (RFC 1035 §4.2.2).
async fn exchange(stream: &mut TcpStream, packet: &[u8]) -> Message {
    let mut frame = u16::try_from(packet.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(packet);
    stream.write_all(&frame).await.unwrap();
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut body).await.unwrap();
    Message::from_vec(&body).unwrap()
}

async fn tcp(server: SocketAddr, text: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    exchange(&mut stream, &query(text, qtype, None)).await
}

fn addresses(message: &Message) -> BTreeSet<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn set(list: &[IpAddr]) -> BTreeSet<IpAddr> {
    list.iter().copied().collect()
}

/// Waits until `text` answers exactly `want` (every usable node, given enough max records).
async fn answers_become(agent: &AgentUnderTest, text: &str, want: &[IpAddr]) {
    let server = agent.dns.unwrap();
    let want = set(want);
    eventually(WITHIN, &format!("{text} answers {want:?}"), || async {
        let reply = udp(server, text, RecordType::A, None).await;
        reply.metadata.response_code == ResponseCode::NoError && addresses(&reply) == want
    })
    .await;
}

#[tokio::test]
async fn answers_follow_the_vetted_node_list() {
    let n = |i| ip(71, i);
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r1"),
        (n(3), "dc1", "r1"),
    ])
    .await;
    let agent =
        AgentUnderTest::start_with_dns(dns_config(&sim, &[n(1)], 8, ScopeMode::Fallback)).await;
    let server = agent.dns.unwrap();
    answers_become(&agent, ZONE, &[n(1), n(2), n(3)]).await;

    let reply = udp(server, ZONE, RecordType::A, None).await;
    assert!(reply.metadata.authoritative);
    assert!(!reply.metadata.recursion_available);
    assert!(reply.answers.iter().all(|r| r.ttl == 4));

    // A stopped node leaves the answers within a refresh.
    sim.stop_node(n(2)).await.unwrap();
    answers_become(&agent, ZONE, &[n(1), n(3)]).await;

    // A node listed before its port is ready is quarantined, and never answered while
    // active nodes exist.
    sim.add_node(NodeSpec::new(n(4), "dc1", "r1").listed_not_ready(None))
        .await
        .unwrap();
    eventually(WITHIN, "new node quarantined", || async {
        agent
            .nodes()
            .await
            .get(&n(4).to_string())
            .is_some_and(|(h, _, _)| h == "quarantined")
    })
    .await;
    for _ in 0..20 {
        let reply = udp(server, ZONE, RecordType::A, None).await;
        assert_eq!(addresses(&reply), set(&[n(1), n(3)]));
    }
    sim.start_node(n(4)).await.unwrap();
    answers_become(&agent, ZONE, &[n(1), n(3), n(4)]).await;

    // No IPv6 node: AAAA is an empty NOERROR with the zone's SOA for negative caching.
    let reply = udp(server, ZONE, RecordType::AAAA, None).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(matches!(
        reply.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn default_answers_one_shuffled_record() {
    let n = |i| ip(72, i);
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r1"),
        (n(3), "dc1", "r1"),
    ])
    .await;
    let agent =
        AgentUnderTest::start_with_dns(dns_config(&sim, &[n(1)], 1, ScopeMode::Fallback)).await;
    let server = agent.dns.unwrap();
    let seen = std::sync::Mutex::new(BTreeSet::new());
    eventually(WITHIN, "every node answered in turn", || async {
        let reply = udp(server, ZONE, RecordType::A, None).await;
        assert!(reply.answers.len() <= 1);
        let mut seen = seen.lock().unwrap();
        seen.extend(addresses(&reply));
        seen.len() == 3
    })
    .await;
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn scope_names_widen_in_fallback_and_not_when_strict() {
    let n = |i| ip(73, i);
    let sim = sim(&[
        (n(1), "dc1", "r1"),
        (n(2), "dc1", "r2"),
        (n(3), "dc2", "r1"),
    ])
    .await;
    let mut fallback = dns_config(&sim, &[n(1)], 8, ScopeMode::Fallback);
    fallback.datacenter = Some("dc1".into());
    fallback.rack = Some("r1".into());
    fallback.extra_datacenters = vec!["dc2".into()];
    let mut strict = fallback.clone();
    if let Some(dns) = strict.dns.as_mut() {
        dns.scope_mode = ScopeMode::Strict;
    }
    let fallback = AgentUnderTest::start_with_dns(fallback).await;
    let strict = AgentUnderTest::start_with_dns(strict).await;
    for agent in [&fallback, &strict] {
        answers_become(agent, ZONE, &[n(1)]).await;
        answers_become(agent, "r1.dc1.alternator.local.", &[n(1)]).await;
        answers_become(agent, "R1.DC1.Alternator.Local.", &[n(1)]).await;
        answers_become(agent, "dc1.alternator.local.", &[n(1), n(2)]).await;
        answers_become(agent, "dc2.alternator.local.", &[n(3)]).await;
    }
    // A name nothing carries: the wider scope in fallback, NXDOMAIN when strict.
    answers_become(&fallback, "dc9.alternator.local.", &[n(1), n(2), n(3)]).await;
    answers_become(&fallback, "r9.dc2.alternator.local.", &[n(3)]).await;
    for text in ["dc9.alternator.local.", "r9.dc2.alternator.local."] {
        let reply = udp(strict.dns.unwrap(), text, RecordType::A, None).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{text}"
        );
    }

    // The local rack loses its node: fallback answers the datacenter, strict nothing.
    sim.stop_node(n(1)).await.unwrap();
    answers_become(&fallback, ZONE, &[n(2)]).await;
    answers_become(&fallback, "r1.dc1.alternator.local.", &[n(2)]).await;
    eventually(WITHIN, "strict rack answers nothing", || async {
        let reply = udp(
            strict.dns.unwrap(),
            "r1.dc1.alternator.local.",
            RecordType::A,
            None,
        )
        .await;
        reply.metadata.response_code == ResponseCode::NoError && reply.answers.is_empty()
    })
    .await;
    fallback.stop().await;
    strict.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn other_names_and_bulk_queries_are_refused() {
    let n = |i| ip(74, i);
    let sim = sim(&[(n(1), "dc1", "r1")]).await;
    let agent =
        AgentUnderTest::start_with_dns(dns_config(&sim, &[n(1)], 1, ScopeMode::Fallback)).await;
    let server = agent.dns.unwrap();
    answers_become(&agent, ZONE, &[n(1)]).await;

    for text in ["example.com.", "local.", "alternator.localx."] {
        let reply = udp(server, text, RecordType::A, None).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{text}"
        );
        assert!(reply.answers.is_empty());
        assert!(!reply.metadata.recursion_available);
    }
    let reply = udp(server, ZONE, RecordType::ANY, None).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let reply = tcp(server, ZONE, RecordType::AXFR).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());

    // Deeper than a rack: no such name.
    let reply = udp(server, "x.r1.dc1.alternator.local.", RecordType::A, None).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    // Other types: the name exists, with no data of that type.
    let reply = udp(server, ZONE, RecordType::MX, None).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());

    assert_eq!(
        agent
            .metric(r#"alternator_agent_dns_queries_total{transport="udp",name="other",rcode="REFUSED"}"#)
            .await,
        Some(3.0)
    );
    assert_eq!(
        agent
            .metric(
                r#"alternator_agent_dns_queries_total{transport="tcp",name="apex",rcode="REFUSED"}"#
            )
            .await,
        Some(1.0)
    );
    assert!(agent
        .metric(r#"alternator_agent_dns_responses_total{answers="1"}"#)
        .await
        .is_some_and(|v| v >= 1.0));
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn udp_answers_fit_the_clients_size_and_tcp_carries_all() {
    let nodes: Vec<IpAddr> = (1..=40).map(|i| ip(75, i)).collect();
    let specs: Vec<(IpAddr, &str, &str)> = nodes.iter().map(|a| (*a, "dc1", "r1")).collect();
    let sim = sim(&specs).await;
    let agent =
        AgentUnderTest::start_with_dns(dns_config(&sim, &[nodes[0]], 64, ScopeMode::Fallback))
            .await;
    let server = agent.dns.unwrap();
    // Over TCP: a UDP answer without EDNS cannot hold 40 records.
    eventually(WITHIN, "all 40 nodes answered over TCP", || async {
        addresses(&tcp(server, ZONE, RecordType::A).await) == set(&nodes)
    })
    .await;

    // Without EDNS a UDP answer is at most 512 bytes: cut short, with TC.
    let bytes = udp_raw(server, &query(ZONE, RecordType::A, None), ANSWERED)
        .await
        .unwrap();
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let reply = Message::from_vec(&bytes).unwrap();
    assert!(reply.metadata.truncation);
    assert!(!reply.answers.is_empty() && reply.answers.len() < 40);

    // A client advertising 1232 bytes over EDNS gets all 40 without TC.
    let bytes = udp_raw(server, &query(ZONE, RecordType::A, Some(1232)), ANSWERED)
        .await
        .unwrap();
    assert!(bytes.len() <= 1232);
    let reply = Message::from_vec(&bytes).unwrap();
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 40);
    assert!(reply.edns.is_some());

    // TCP is not limited to 512.
    let reply = tcp(server, ZONE, RecordType::A).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(addresses(&reply), set(&nodes));
    assert!(agent
        .metric("alternator_agent_dns_truncated_total")
        .await
        .is_some_and(|v| v >= 1.0));
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_packets_are_dropped_counted_and_survived() {
    let n = |i| ip(76, i);
    let sim = sim(&[(n(1), "dc1", "r1")]).await;
    let agent =
        AgentUnderTest::start_with_dns(dns_config(&sim, &[n(1)], 1, ScopeMode::Fallback)).await;
    let server = agent.dns.unwrap();
    answers_become(&agent, ZONE, &[n(1)]).await;

    let good = query(ZONE, RecordType::A, None);
    let mut response = Message::from_vec(&good).unwrap();
    response.metadata.message_type = MessageType::Response;
    let malformed: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        vec![0u8; 11],
        good[..good.len() - 3].to_vec(),
        vec![0xff; 300],
        response.to_vec().unwrap(),
    ];
    for packet in &malformed {
        assert_eq!(
            udp_raw(server, packet, UNANSWERED).await,
            None,
            "{packet:?}"
        );
    }
    assert_eq!(udp_raw(server, &vec![0u8; 5000], UNANSWERED).await, None);
    let dropped = |reason: &'static str, transport: &'static str| {
        let agent = &agent;
        async move {
            agent
                .metric(&format!(
                    r#"alternator_agent_dns_dropped_total{{transport="{transport}",reason="{reason}"}}"#
                ))
                .await
                .unwrap_or(0.0)
        }
    };
    assert_eq!(dropped("malformed", "udp").await, 5.0);
    assert_eq!(dropped("oversized", "udp").await, 1.0);

    // TCP: a frame longer than any query, a frame of garbage, and a frame cut short by the
    // client each close their connection without an answer (EOF, or a reset when the server
    // left bytes unread).
    for bytes in [
        &[0xff, 0xff, 0, 0][..],
        &[0, 5, b'h', b'e', b'l', b'l', b'o'],
        &[0, 40, 1, 2, 3],
    ] {
        let mut stream = TcpStream::connect(server).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let _ = stream.shutdown().await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "{bytes:?}");
    }
    eventually(WITHIN, "TCP drops counted", || async {
        dropped("oversized", "tcp").await == 1.0 && dropped("malformed", "tcp").await == 2.0
    })
    .await;

    // Still serving, on both transports, several queries on one TCP connection.
    let reply = udp(server, ZONE, RecordType::A, None).await;
    assert_eq!(addresses(&reply), set(&[n(1)]));
    let mut stream = TcpStream::connect(server).await.unwrap();
    for id in 0..3u8 {
        let mut packet = query(ZONE, RecordType::A, None);
        packet[1] = id;
        let reply = exchange(&mut stream, &packet).await;
        assert_eq!(reply.metadata.id & 0xff, u16::from(id));
        assert_eq!(addresses(&reply), set(&[n(1)]));
    }
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn before_the_first_discovery_answers_servfail() {
    // Nothing listens on this seed: discovery never succeeds.
    let mut config = Config::with_seeds(["127.0.77.1"]);
    config.port = 9;
    config.connect_timeout = Duration::from_millis(100);
    config.request_timeout = Duration::from_millis(200);
    config.dns = Some(DnsConfig::new("127.0.0.1:0".parse().unwrap()));
    let agent = AgentUnderTest::start_with_dns(config).await;
    let reply = udp(agent.dns.unwrap(), ZONE, RecordType::A, None).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    // Names outside the zone are refused whatever the agent knows.
    let reply = udp(agent.dns.unwrap(), "example.com.", RecordType::A, None).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    agent.stop().await;
}
