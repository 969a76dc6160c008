//! One DNS query in, at most one response out: decoding, the zone's rules, the size limit.
//!
//! No sockets and no clock: the listener hands over the packet, the current node list and the
//! size the client can take, so the same function serves UDP, TCP, the tests and the fuzzer.
//! Messages are parsed and written by hickory-proto; this file only decides what they say.

use std::net::IpAddr;

use alternator_routing::scope::{Scope, ScopeMode};
use alternator_routing::snapshot::Node;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rand::Rng;

use super::answers::{pick, select, Family, Location, Selection};

/// The largest query accepted. One question with an EDNS record fits in a few hundred bytes;
/// anything much larger is not a query this server answers.
pub const MAX_QUERY_BYTES: usize = 4096;

/// The UDP payload size this server advertises in its EDNS record (the DNS flag day 2020
/// value, which avoids IP fragmentation on common paths).
pub const ADVERTISED_UDP_PAYLOAD: u16 = 1232;

/// The zone and how it answers.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone apex, a fully qualified name.
    pub apex: Name,
    /// TTL of every record, in seconds.
    pub ttl: u32,
    /// Address records per answer, at most.
    pub max_records: usize,
    /// Whether names widen to wider scopes when theirs has no usable node.
    pub mode: ScopeMode,
    /// The scope the apex stands for (the agent's own).
    pub apex_scope: Scope,
    /// Scopes the configuration names (the apex scope's chain, extra datacenters): in strict
    /// mode they exist even while none of their nodes is listed.
    pub declared: Vec<Scope>,
}

/// The bounded `name` label of the query metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameKind {
    /// The zone apex.
    Apex,
    /// `<datacenter>.<zone>`.
    Datacenter,
    /// `<rack>.<datacenter>.<zone>`.
    Rack,
    /// Anything else: outside the zone, deeper names, no question.
    Other,
}

impl NameKind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Apex => "apex",
            NameKind::Datacenter => "datacenter",
            NameKind::Rack => "rack",
            NameKind::Other => "other",
        }
    }
}

/// Why a packet got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a decodable DNS message, or a response rather than a query.
    Malformed,
    /// Larger than [`MAX_QUERY_BYTES`].
    Oversized,
}

impl Dropped {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Oversized => "oversized",
        }
    }
}

/// A response ready to send.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// What kind of name was asked.
    pub kind: NameKind,
    /// The response code.
    pub rcode: ResponseCode,
    /// Records in the answer section.
    pub answers: usize,
    /// Whether records were left out to fit the client's size (TC set).
    pub truncated: bool,
}

/// The short upper-case name of a response code, as `dig` prints it (metrics label).
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

/// Answers one query. `nodes` is `None` before the agent's first discovery (SERVFAIL, so
/// resolvers retry rather than cache a negative answer). Over UDP (`udp`) the response never
/// exceeds what the client advertised (512 bytes without EDNS); over TCP only the 65535-byte
/// frame limits it.
pub fn respond<R: Rng + ?Sized>(
    zone: &Zone,
    packet: &[u8],
    nodes: Option<&[Node]>,
    udp: bool,
    rng: &mut R,
) -> Result<Reply, Dropped> {
    if packet.len() > MAX_QUERY_BYTES {
        return Err(Dropped::Oversized);
    }
    let request = Message::from_vec(packet).map_err(|_| Dropped::Malformed)?;
    // Answering a response could start a loop between two servers; a query it is not.
    if request.metadata.message_type != MessageType::Query {
        return Err(Dropped::Malformed);
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = false;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(ADVERTISED_UDP_PAYLOAD);
        response.set_edns(edns);
    }
    let limit = if udp {
        usize::from(request.max_payload())
    } else {
        usize::from(u16::MAX)
    };
    response.add_queries(request.queries.iter().cloned());
    let kind = decide(zone, &request, nodes, &mut response, rng);
    encode(response, kind, limit)
}

/// Fills in `response` and returns the kind of name asked.
fn decide<R: Rng + ?Sized>(
    zone: &Zone,
    request: &Message,
    nodes: Option<&[Node]>,
    response: &mut Message,
    rng: &mut R,
) -> NameKind {
    let set = |response: &mut Message, rcode| response.metadata.response_code = rcode;
    if request.metadata.op_code != OpCode::Query {
        set(response, ResponseCode::NotImp);
        return NameKind::Other;
    }
    let [query] = request.queries.as_slice() else {
        set(response, ResponseCode::FormErr);
        return NameKind::Other;
    };
    let name = query.name();
    if query.query_class() != DNSClass::IN || !zone.apex.zone_of(name) {
        // Not ours, and no recursion: a client that wants other names asks another server.
        set(response, ResponseCode::Refused);
        return NameKind::Other;
    }
    let Some(location) = location(&zone.apex, name) else {
        response.metadata.authoritative = true;
        set(response, ResponseCode::NXDomain);
        response.add_authority(soa(zone));
        return NameKind::Other;
    };
    let kind = match location {
        Location::Apex => NameKind::Apex,
        Location::Datacenter(_) => NameKind::Datacenter,
        Location::Rack { .. } => NameKind::Rack,
    };
    let qtype = query.query_type();
    if matches!(qtype, RecordType::ANY | RecordType::AXFR | RecordType::IXFR) {
        // The node list is handed out a few records at a time, never whole.
        set(response, ResponseCode::Refused);
        return kind;
    }
    let Some(nodes) = nodes else {
        set(response, ResponseCode::ServFail);
        return kind;
    };
    response.metadata.authoritative = true;
    let family = match qtype {
        RecordType::A => Some(Family::V4),
        RecordType::AAAA => Some(Family::V6),
        _ => None,
    };
    // Other types still need to know whether the name exists (NODATA vs NXDOMAIN).
    let existence = family.unwrap_or(Family::V4);
    match select(
        nodes,
        &location,
        &zone.apex_scope,
        &zone.declared,
        zone.mode,
        existence,
    ) {
        Selection::NoSuchName => {
            set(response, ResponseCode::NXDomain);
            response.add_authority(soa(zone));
        }
        Selection::Nodes(addresses) => {
            let records = match family {
                Some(_) => pick(addresses, zone.max_records, rng)
                    .into_iter()
                    .map(|address| address_record(name, zone.ttl, address))
                    .collect(),
                None if qtype == RecordType::SOA && location == Location::Apex => vec![soa(zone)],
                None => Vec::new(),
            };
            if records.is_empty() {
                response.add_authority(soa(zone));
            }
            response.add_answers(records);
        }
    }
    kind
}

/// The labels left of the apex, as a location; `None` for deeper names.
fn location(apex: &Name, name: &Name) -> Option<Location> {
    let below = usize::from(name.num_labels().saturating_sub(apex.num_labels()));
    let labels: Vec<String> = name
        .iter()
        .take(below)
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    Location::from_labels(&labels)
}

fn address_record(name: &Name, ttl: u32, address: IpAddr) -> Record {
    let data = match address {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

/// The zone's SOA, sent with negative answers so resolvers cache them no longer than one TTL
/// (RFC 2308).
fn soa(zone: &Zone) -> Record {
    let hostmaster = Name::from_ascii("hostmaster")
        .and_then(|h| h.append_domain(&zone.apex))
        .unwrap_or_else(|_| zone.apex.clone());
    let ttl = i32::try_from(zone.ttl).unwrap_or(i32::MAX);
    let data = SOA::new(zone.apex.clone(), hostmaster, 1, ttl, ttl, ttl, zone.ttl);
    Record::from_rdata(zone.apex.clone(), zone.ttl, RData::SOA(data))
}

/// Encodes `response` within `limit` bytes: address records are left out from the end, then
/// the authority section, with TC set, until it fits (RFC 1035 §4.2.1, RFC 6891 §6.2.5).
fn encode(mut response: Message, kind: NameKind, limit: usize) -> Result<Reply, Dropped> {
    let mut truncated = false;
    loop {
        let bytes = response.to_vec().map_err(|_| Dropped::Malformed)?;
        if bytes.len() <= limit {
            return Ok(Reply {
                bytes,
                kind,
                rcode: response.metadata.response_code,
                answers: response.answers.len(),
                truncated,
            });
        }
        truncated = true;
        response.metadata.truncation = true;
        if response.answers.pop().is_some() {
            continue;
        }
        if response.authorities.pop().is_some() {
            continue;
        }
        // Header, question and OPT alone exceed the limit: a question this long cannot be
        // answered within it at all.
        return Err(Dropped::Oversized);
    }
}

/// A query for `name` and `qtype`, encoded (tests, the fuzzer's seed corpus, health checks).
pub fn query_bytes(id: u16, name: &Name, qtype: RecordType, edns_payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), qtype));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests;
