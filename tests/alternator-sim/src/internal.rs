//! Scylla's internal tables read through Alternator: `Scan` and `Query` on
//! `.scylla.alternator.<keyspace>.<table>` for `system.token_ring`, `system.tablets`,
//! `system.peers` and `system.local`.
//!
//! Values are rendered as Alternator renders columns of CQL tables: `text` as `S`; every type
//! without a DynamoDB counterpart (bigint, int, uuid, inet, lists of tuples) as `S` holding the
//! CQL text form (a `list<tuple<uuid, int>>` is `"<uuid>:<int>, <uuid>:<int>"`).

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::cluster::{Cluster, Node};
use crate::dynamo::expr::{self, ExprContext};
use crate::dynamo::store::parse_limit;
use crate::dynamo::value::Item;
use crate::dynamo::{DynamoError, Operation};
use crate::ring::{self, Ownership, RingState};

/// Table names starting with this address Scylla's internal tables.
pub(crate) const PREFIX: &str = ".scylla.alternator.";

/// The value of `system.local`'s `cluster_name`.
pub(crate) const CLUSTER_NAME: &str = "alternator-sim";

/// A page holds at most about this many bytes, like Alternator's Query and Scan.
const PAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TokenRing,
    Tablets,
    Peers,
    Local,
}

impl Kind {
    fn partition_key(self) -> &'static str {
        match self {
            Kind::TokenRing => "keyspace_name",
            Kind::Tablets => "table_id",
            Kind::Peers => "peer",
            Kind::Local => "key",
        }
    }

    /// The first clustering column, usable in a KeyConditionExpression.
    fn sort_key(self) -> Option<&'static str> {
        match self {
            Kind::TokenRing => Some("table_name"),
            _ => None,
        }
    }

    fn key_columns(self) -> &'static [&'static str] {
        match self {
            Kind::TokenRing => &["keyspace_name", "table_name", "start_token", "endpoint"],
            Kind::Tablets => &["table_id", "last_token"],
            Kind::Peers => &["peer"],
            Kind::Local => &["key"],
        }
    }
}

/// Position of a row: Scylla's order (partition token, then clustering columns).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

fn s(text: impl Into<String>) -> Value {
    json!({ "S": text.into() })
}

fn get_s<'i>(item: &'i Item, name: &str) -> Option<&'i str> {
    item.get(name)?.get("S")?.as_str()
}

fn ip_octets(text: &str) -> Option<Vec<u8>> {
    Some(match text.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    })
}

fn order_of(kind: Kind, item: &Item) -> Option<Vec<Part>> {
    Some(match kind {
        Kind::TokenRing => {
            let ks = get_s(item, "keyspace_name")?;
            vec![
                Part::Int(ring::text_token(ks)),
                Part::Text(ks.to_owned()),
                Part::Text(get_s(item, "table_name")?.to_owned()),
                Part::Text(get_s(item, "start_token")?.to_owned()),
                Part::Bytes(ip_octets(get_s(item, "endpoint")?)?),
            ]
        }
        Kind::Tablets => {
            let id = get_s(item, "table_id")?;
            vec![
                Part::Int(ring::uuid_token(id)?),
                Part::Text(id.to_owned()),
                Part::Int(get_s(item, "last_token")?.parse().ok()?),
            ]
        }
        Kind::Peers => {
            let peer = get_s(item, "peer")?;
            let ip: IpAddr = peer.parse().ok()?;
            vec![Part::Int(ring::ip_token(ip)), Part::Bytes(ip_octets(peer)?)]
        }
        Kind::Local => {
            let key = get_s(item, "key")?;
            vec![Part::Int(ring::text_token(key)), Part::Text(key.to_owned())]
        }
    })
}

/// Whether a request names an internal table (it may still not exist).
pub(crate) fn is_internal(table_name: &str) -> bool {
    table_name.starts_with(PREFIX)
}

/// Resolve `.scylla.alternator.<ks>.<table>` like Alternator: a keyspace that is not an
/// internal one falls back to an ordinary (missing) table; an unknown table of an internal
/// keyspace is `ResourceNotFoundException`.
fn resolve(full: &str) -> Result<Kind, DynamoError> {
    let rest = &full[PREFIX.len()..];
    let Some((ks, table)) = rest.split_once('.') else {
        return Err(DynamoError::not_found(full));
    };
    if !ks.starts_with("system") {
        return Err(DynamoError::not_found(full));
    }
    match (ks, table) {
        ("system", "token_ring") => Ok(Kind::TokenRing),
        ("system", "tablets") => Ok(Kind::Tablets),
        ("system", "peers") => Ok(Kind::Peers),
        ("system", "local") => Ok(Kind::Local),
        _ => Err(DynamoError::new(
            crate::dynamo::ErrorKind::ResourceNotFound,
            format!("Requested resource not found: Internal table: {ks}.{table} not found"),
        )),
    }
}

/// Answer a Scan or Query of an internal table, as seen by `node`.
pub(crate) fn handle(
    cluster: &Cluster,
    node: &Node,
    op: Operation,
    req: &Value,
) -> Result<Value, DynamoError> {
    let name = req
        .get("TableName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = resolve(name)?;
    if let Some(index) = req.get("IndexName").and_then(Value::as_str) {
        return Err(DynamoError::validation(format!(
            "The table does not have the specified index: {index}"
        )));
    }
    if req.get("Segment").is_some() || req.get("TotalSegments").is_some() {
        return Err(DynamoError::validation(
            "alternator-sim: parallel Scan (Segment, TotalSegments) of internal tables is not supported",
        ));
    }
    let mut ctx = ExprContext::from_request(req);
    let key_condition = if op == Operation::Query {
        let text = req
            .get("KeyConditionExpression")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                DynamoError::validation(
                    "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
                )
            })?;
        let cond = ctx.parse_condition("KeyConditionExpression", text)?;
        Some(expr::analyze_key_condition(
            cond,
            (kind.partition_key(), "S"),
            kind.sort_key().map(|k| (k, "S")),
        )?)
    } else {
        None
    };
    let filter = req
        .get("FilterExpression")
        .and_then(Value::as_str)
        .map(|f| ctx.parse_condition("FilterExpression", f))
        .transpose()?;
    let projection = req
        .get("ProjectionExpression")
        .and_then(Value::as_str)
        .map(|p| ctx.parse_projection(p))
        .transpose()?;
    ctx.finish()?;
    let limit = parse_limit(req)?;
    let count_only = match req.get("Select").and_then(Value::as_str) {
        None | Some("ALL_ATTRIBUTES" | "SPECIFIC_ATTRIBUTES") => false,
        Some("COUNT") => true,
        Some(other) => {
            return Err(DynamoError::validation(format!(
                "Select {other:?} is not supported on internal tables"
            )))
        }
    };
    let start = match req.get("ExclusiveStartKey") {
        None => None,
        Some(esk) => {
            let invalid = || {
                DynamoError::validation(
                    "The provided starting key is invalid: The provided key element does not match the schema",
                )
            };
            let item = esk.as_object().ok_or_else(invalid)?;
            Some(order_of(kind, item).ok_or_else(invalid)?)
        }
    };
    let partition = match &key_condition {
        Some(kc) => Some(
            kc.hash
                .get("S")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    DynamoError::validation(format!(
                        "One or more parameter values were invalid: Condition parameter type does not match schema type for key {}",
                        kind.partition_key()
                    ))
                })?
                .to_owned(),
        ),
        None => None,
    };
    if kind == Kind::Tablets {
        if let Some(id) = &partition {
            if ring::uuid_token(id).is_none() {
                return Err(DynamoError::validation(format!(
                    "Failed to parse the key value {id:?} of table_id: not a UUID"
                )));
            }
        }
    }
    let mut rows = {
        let ring = cluster.ring.read().unwrap_or_else(|p| p.into_inner());
        build_rows(kind, &ring, node, partition.as_deref())
    };
    if let Some(rc) = key_condition.as_ref().and_then(|kc| kc.range.as_ref()) {
        if let Some(sk) = kind.sort_key() {
            rows.retain(|item| item.get(sk).is_some_and(|v| rc.matches(v)));
        }
    }
    let mut rows: Vec<(Vec<Part>, Item)> = rows
        .into_iter()
        .filter_map(|item| order_of(kind, &item).map(|o| (o, item)))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let page_rows = cluster.internal_page_rows();
    let mut items = Vec::new();
    let mut scanned = 0usize;
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut last: Option<&Item> = None;
    let mut more = false;
    for (order, item) in &rows {
        if start.as_ref().is_some_and(|s| order <= s) {
            continue;
        }
        if limit.is_some_and(|l| scanned >= l)
            || page_rows.is_some_and(|p| scanned >= p)
            || bytes >= PAGE_BYTES
        {
            more = true;
            break;
        }
        scanned += 1;
        bytes += item_bytes(item);
        last = Some(item);
        if filter.as_ref().is_some_and(|f| !f.eval(item)) {
            continue;
        }
        count += 1;
        if !count_only {
            items.push(Value::Object(match &projection {
                Some(p) => expr::project(item, p),
                None => item.clone(),
            }));
        }
    }
    let mut out = Map::new();
    if !count_only {
        out.insert("Items".into(), Value::Array(items));
    }
    out.insert("Count".into(), json!(count));
    out.insert("ScannedCount".into(), json!(scanned));
    if let (true, Some(item)) = (more, last) {
        let key: Item = kind
            .key_columns()
            .iter()
            .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        out.insert("LastEvaluatedKey".into(), Value::Object(key));
    }
    Ok(Value::Object(out))
}

fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(k, v)| k.len() + v.get("S").and_then(Value::as_str).map_or(0, str::len))
        .sum()
}

fn build_rows(kind: Kind, ring: &RingState, node: &Node, partition: Option<&str>) -> Vec<Item> {
    match kind {
        Kind::TokenRing => token_ring_rows(ring, partition),
        Kind::Tablets => tablets_rows(ring, partition),
        Kind::Peers => peers_rows(ring, node, partition),
        Kind::Local => local_rows(ring, node, partition),
    }
}

fn item(pairs: Vec<(&str, Value)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn broadcast_of(ring: &RingState, address: IpAddr) -> IpAddr {
    ring.member(address).map_or(address, |m| m.broadcast)
}

fn location_of(ring: &RingState, address: IpAddr) -> (String, String) {
    ring.member(address).map_or_else(
        || (String::new(), String::new()),
        |m| (m.datacenter.clone(), m.rack.clone()),
    )
}

fn token_ring_rows(ring: &RingState, partition: Option<&str>) -> Vec<Item> {
    let mut out = Vec::new();
    for entry in ring.tables.values() {
        let keyspace = format!("alternator_{}", entry.name);
        if partition.is_some_and(|p| p != keyspace) {
            continue;
        }
        let mut row = |table: &str, start: i64, end: i64, replica: IpAddr| {
            let (dc, rack) = location_of(ring, replica);
            out.push(item(vec![
                ("keyspace_name", s(keyspace.clone())),
                ("table_name", s(table)),
                ("start_token", s(start.to_string())),
                ("end_token", s(end.to_string())),
                ("endpoint", s(broadcast_of(ring, replica).to_string())),
                ("dc", s(dc)),
                ("rack", s(rack)),
            ]));
        };
        match &entry.ownership {
            Ownership::Vnodes => {
                for r in &ring.vnode_ranges {
                    for replica in &r.replicas {
                        row("<ALL>", r.start, r.end, *replica);
                    }
                }
            }
            Ownership::Tablets(tablets) => {
                // The table itself, then its GSI views (same boundaries in the sim).
                let names = std::iter::once(entry.name.clone())
                    .chain(entry.views.iter().map(|v| format!("{}:{v}", entry.name)));
                for table in names {
                    let mut start = i64::MIN;
                    for t in tablets {
                        for replica in &t.replicas {
                            row(&table, start, t.last_token, *replica);
                        }
                        start = t.last_token;
                    }
                }
            }
        }
    }
    out
}

fn replica_list(ring: &RingState, replicas: &[IpAddr]) -> String {
    replicas
        .iter()
        .map(|r| {
            let id = ring.member(*r).map_or_else(
                || ring::host_id(ring.config.seed, *r),
                |m| m.host_id.clone(),
            );
            format!("{id}:0")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn tablets_rows(ring: &RingState, partition: Option<&str>) -> Vec<Item> {
    let mut out = Vec::new();
    for entry in ring.tables.values() {
        let Ownership::Tablets(tablets) = &entry.ownership else {
            continue;
        };
        if partition.is_some_and(|p| !p.eq_ignore_ascii_case(&entry.table_id)) {
            continue;
        }
        for t in tablets {
            let mut row = vec![
                ("table_id", s(entry.table_id.clone())),
                ("last_token", s(t.last_token.to_string())),
                ("keyspace_name", s(format!("alternator_{}", entry.name))),
                ("table_name", s(entry.name.clone())),
                ("tablet_count", s(tablets.len().to_string())),
                ("replicas", s(replica_list(ring, &t.replicas))),
            ];
            if let Some(new) = &t.new_replicas {
                row.push(("new_replicas", s(replica_list(ring, new))));
                row.push(("transition", s("migration")));
            }
            if let Some(stage) = &t.stage {
                row.push(("stage", s(stage.clone())));
            }
            out.push(item(row));
        }
    }
    out
}

fn peers_rows(ring: &RingState, node: &Node, partition: Option<&str>) -> Vec<Item> {
    ring.members()
        .iter()
        .filter(|m| m.address != node.spec.address)
        .filter(|m| partition.is_none_or(|p| p.parse::<IpAddr>().ok() == Some(m.broadcast)))
        .map(|m| {
            item(vec![
                ("peer", s(m.broadcast.to_string())),
                ("rpc_address", s(m.address.to_string())),
                ("host_id", s(m.host_id.clone())),
                ("data_center", s(m.datacenter.clone())),
                ("rack", s(m.rack.clone())),
            ])
        })
        .collect()
}

fn local_rows(ring: &RingState, node: &Node, partition: Option<&str>) -> Vec<Item> {
    if partition.is_some_and(|p| p != "local") {
        return Vec::new();
    }
    let spec = &node.spec;
    let broadcast = spec.broadcast();
    let host_id = ring.member(spec.address).map_or_else(
        || ring::host_id(ring.config.seed, spec.address),
        |m| m.host_id.clone(),
    );
    vec![item(vec![
        ("key", s("local")),
        ("broadcast_address", s(broadcast.to_string())),
        ("listen_address", s(spec.address.to_string())),
        ("rpc_address", s(spec.address.to_string())),
        ("host_id", s(host_id)),
        ("data_center", s(spec.datacenter.clone())),
        ("rack", s(spec.rack.clone())),
        ("cluster_name", s(CLUSTER_NAME)),
    ])]
}
