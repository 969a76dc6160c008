//! Token ownership: key tokens and tablet vectors, replica placement, the internal tables read
//! through Alternator (`system.token_ring`, `system.tablets`, `system.peers`, `system.local`),
//! replica/non-replica counters, and ring changes (migration, split, nodes joining and leaving).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use alternator_sim::ring::{
    decimal_bytes, even_last_tokens, key_token, partition_key_bytes, tablet_index,
    uneven_last_tokens,
};
use alternator_sim::{Credentials, Layout, NodeSpec, RingConfig, Sim, SimConfig, TableRing};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn vectors(name: &str) -> Vec<Vec<String>> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert!(!rows.is_empty(), "{name} has no rows");
    rows
}

fn int(s: &str) -> i64 {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

// ---- vectors ----

#[test]
fn alternator_token_vectors() {
    for row in vectors("alternator-tokens.tsv") {
        let [ty, value, hex_bytes, token] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        let text: String = serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}"));
        let av = json!({ ty.as_str(): text });
        let bytes = partition_key_bytes(&av).unwrap_or_else(|| panic!("no bytes for {av}"));
        assert_eq!(hex::encode(&bytes), *hex_bytes, "bytes of {av}");
        assert_eq!(key_token(&av), Some(int(token)), "token of {av}");
    }
}

#[test]
fn decimal_serialization_edges() {
    let hex = |s: &str| decimal_bytes(s).map(hex::encode);
    assert_eq!(hex("128").as_deref(), Some("000000000080"));
    assert_eq!(hex("127").as_deref(), Some("000000007f"));
    assert_eq!(hex("-128").as_deref(), Some("0000000080"));
    assert_eq!(hex("-256").as_deref(), Some("00000000ff00"));
    assert_eq!(hex("-0").as_deref(), Some("0000000000"));
    assert_eq!(hex("0.00").as_deref(), Some("0000000200"));
    assert_eq!(hex("1.5E+2").as_deref(), Some("ffffffff0f"));
    assert_eq!(hex(".5").as_deref(), Some("0000000105"));
    assert_eq!(hex("2e-3").as_deref(), Some("0000000302"));
    // 2^64: unscaled needs a leading zero byte to stay positive.
    assert_eq!(
        hex("18446744073709551616").as_deref(),
        Some("00000000010000000000000000")
    );
    for bad in ["", "-", "abc", "1e", "1.2.3", "1e+", "--1", "1x"] {
        assert_eq!(decimal_bytes(bad), None, "{bad:?}");
    }
    assert_eq!(key_token(&json!({"BOOL": true})), None);
    assert_eq!(key_token(&json!({"B": "not base64!"})), None);
}

#[test]
fn tablet_boundary_vectors() {
    let mut by_count: BTreeMap<u32, Vec<(usize, i64)>> = BTreeMap::new();
    for row in vectors("tablet-boundaries.tsv") {
        by_count
            .entry(int(&row[0]) as u32)
            .or_default()
            .push((int(&row[1]) as usize, int(&row[2])));
    }
    for (n, rows) in by_count {
        let lasts = even_last_tokens(n);
        assert_eq!(lasts.len(), rows.len());
        for (i, last) in rows {
            assert_eq!(lasts[i], last, "tablet {i} of {n}");
        }
    }
}

#[test]
fn token_to_tablet_vectors() {
    for row in vectors("token-to-tablet.tsv") {
        let (token, n, index) = (int(&row[0]), int(&row[1]) as u32, int(&row[2]) as usize);
        assert_eq!(tablet_index(&even_last_tokens(n), token), index, "{row:?}");
    }
}

#[test]
fn uneven_boundaries_are_sorted_deterministic_and_end_at_max() {
    for n in [1, 2, 3, 8, 64] {
        let a = uneven_last_tokens(n, 7);
        assert_eq!(a, uneven_last_tokens(n, 7));
        assert_eq!(a.len(), n as usize);
        assert_eq!(a.last(), Some(&i64::MAX));
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
        if n > 1 {
            assert_ne!(a, even_last_tokens(n));
        }
    }
}

// ---- a sim and a client ----

struct Answer {
    status: StatusCode,
    json: Value,
}

async fn http(addr: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .to_bytes();
    Answer {
        status,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

async fn dynamo(sim: &Sim, node: IpAddr, op: &str, body: Value) -> Answer {
    let addr = sim.endpoint(node);
    let req = Request::post("/")
        .header("host", addr.to_string())
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|e| panic!("{e}"));
    http(addr, req).await
}

async fn ok(sim: &Sim, node: IpAddr, op: &str, body: Value) -> Value {
    let a = dynamo(sim, node, op, body).await;
    assert_eq!(a.status, StatusCode::OK, "{op}: {}", a.json);
    a.json
}

async fn control(sim: &Sim, method: &str, path: &str, body: Option<Value>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", sim.control_addr().to_string())
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap_or_else(|e| panic!("{e}"));
    http(sim.control_addr(), req).await
}

/// `POST /settings` of the control API with `body`.
async fn settings(sim: &Sim, body: Value) -> Answer {
    control(sim, "POST", "/settings", Some(body)).await
}

/// The error kind of an answer: its `__type` after the `#`.
fn error_kind(a: &Answer) -> &str {
    a.json["__type"]
        .as_str()
        .unwrap_or("")
        .rsplit('#')
        .next()
        .unwrap_or("")
}

async fn start(config: SimConfig) -> Sim {
    Sim::start(config)
        .await
        .unwrap_or_else(|e| panic!("sim did not start: {e}"))
}

/// dc1: 4 nodes on racks r1, r2, r3, r1; dc2: 2 nodes on rack a. Node 2 broadcasts 10.0.0.2.
fn six_nodes(ring: RingConfig) -> SimConfig {
    SimConfig {
        ring,
        ..SimConfig::new(vec![
            NodeSpec::new(ip(1), "dc1", "r1"),
            NodeSpec::new(ip(2), "dc1", "r2").with_broadcast_address([10, 0, 0, 2]),
            NodeSpec::new(ip(3), "dc1", "r3"),
            NodeSpec::new(ip(4), "dc1", "r1"),
            NodeSpec::new(ip(5), "dc2", "a"),
            NodeSpec::new(ip(6), "dc2", "a"),
        ])
    }
}

/// A vnodes ring with `per_node` tokens per node, the rest as by default.
fn vnode_ring(per_node: u32) -> RingConfig {
    RingConfig {
        layout: Layout::Vnodes,
        vnodes_per_node: per_node,
        ..RingConfig::default()
    }
}

/// A tablets ring whose tables start with `count` tablets, the rest as by default.
fn tablet_ring(count: u32) -> RingConfig {
    RingConfig {
        tablets: count,
        ..RingConfig::default()
    }
}

/// Create a table with hash key `pk` (S); `initial_tablets` becomes the
/// `system:initial_tablets` tag. Returns DescribeTable's TableId.
async fn create_table(sim: &Sim, name: &str, initial_tablets: Option<&str>) -> String {
    let mut req = json!({
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    });
    if let Some(t) = initial_tablets {
        req["Tags"] = json!([{"Key": "system:initial_tablets", "Value": t}]);
    }
    let a = ok(sim, ip(1), "CreateTable", req).await;
    let id = a["TableDescription"]["TableId"]
        .as_str()
        .unwrap_or_else(|| panic!("no TableId: {a}"))
        .to_owned();
    let d = ok(sim, ip(1), "DescribeTable", json!({"TableName": name})).await;
    assert_eq!(d["Table"]["TableId"], id.as_str());
    id
}

fn ring_of(sim: &Sim, table: &str) -> TableRing {
    sim.table_ring(table).unwrap_or_else(|e| panic!("{e}"))
}

fn location(addr: IpAddr) -> (&'static str, &'static str) {
    match addr {
        IpAddr::V4(a) => match a.octets()[3] {
            1 | 4 => ("dc1", "r1"),
            2 => ("dc1", "r2"),
            3 => ("dc1", "r3"),
            5 | 6 => ("dc2", "a"),
            7 => ("dc1", "r2"),
            _ => ("?", "?"),
        },
        IpAddr::V6(_) => ("?", "?"),
    }
}

/// Per dc: replica count and distinct racks.
fn per_dc(replicas: &[IpAddr]) -> BTreeMap<&'static str, (usize, BTreeSet<&'static str>)> {
    let mut out: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
    for r in replicas {
        let (dc, rack) = location(*r);
        let e = out.entry(dc).or_default();
        e.0 += 1;
        e.1.insert(rack);
    }
    out
}

fn assert_placement(ring: &TableRing) {
    for r in &ring.ranges {
        let distinct: BTreeSet<&IpAddr> = r.replicas.iter().collect();
        assert_eq!(distinct.len(), r.replicas.len(), "duplicate replica {r:?}");
        let dcs = per_dc(&r.replicas);
        // dc1 has 4 nodes on 3 racks: 3 replicas on 3 racks; dc2 has 2 nodes: RF capped at 2.
        assert_eq!(
            dcs.get("dc1").map(|d| (d.0, d.1.len())),
            Some((3, 3)),
            "{r:?}"
        );
        assert_eq!(dcs.get("dc2").map(|d| d.0), Some(2), "{r:?}");
    }
}

// ---- placement ----

#[tokio::test(flavor = "multi_thread")]
async fn tablet_replicas_rf_per_dc_distinct_racks_and_balanced() {
    let sim = start(six_nodes(RingConfig::default())).await;
    create_table(&sim, "tab", None).await;
    let ring = ring_of(&sim, "tab");
    assert_eq!(ring.layout, Layout::Tablets);
    assert_eq!(ring.keyspace, "alternator_tab");
    assert_eq!(ring.ranges.len(), 8);
    assert_placement(&ring);
    let lasts: Vec<i64> = ring.ranges.iter().map(|r| r.end_token).collect();
    assert_eq!(lasts, even_last_tokens(8));
    assert_eq!(ring.ranges[0].start_token, i64::MIN);
    let mut load: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for r in &ring.ranges {
        for n in &r.replicas {
            *load.entry(*n).or_default() += 1;
        }
    }
    // dc2's two nodes hold every tablet; dc1's 24 replicas spread over 4 nodes.
    assert_eq!(load.get(&ip(5)), Some(&8));
    let dc1: Vec<usize> = (1..=4)
        .map(|i| load.get(&ip(i)).copied().unwrap_or(0))
        .collect();
    assert!(dc1.iter().all(|l| (4..=8).contains(l)), "{dc1:?}");

    // RF capped by the node count: a one-node datacenter keeps one replica.
    let sim1 = start(SimConfig {
        ring: RingConfig {
            tablets: 4,
            ..RingConfig::default()
        },
        ..SimConfig::new(vec![
            NodeSpec::new(ip(1), "dc1", "r1"),
            NodeSpec::new(ip(2), "dc1", "r1"),
            NodeSpec::new(ip(3), "dc2", "r1"),
        ])
    })
    .await;
    create_table(&sim1, "small", None).await;
    for r in ring_of(&sim1, "small").ranges {
        assert_eq!(r.replicas.len(), 3, "{r:?}"); // 2 in dc1 (same rack), 1 in dc2
    }
    sim.shutdown().await;
    sim1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vnode_ranges_wrap_and_cover_the_ring_once() {
    let sim = start(six_nodes(vnode_ring(8))).await;
    create_table(&sim, "vnt", None).await;
    // A tag with a number asks for tablets even when the default layout is vnodes.
    create_table(&sim, "tagged", Some("4")).await;
    assert_eq!(ring_of(&sim, "tagged").layout, Layout::Tablets);
    assert_eq!(ring_of(&sim, "tagged").ranges.len(), 4);
    let ring = ring_of(&sim, "vnt");
    assert_eq!(ring.layout, Layout::Vnodes);
    assert_eq!(ring.ranges.len(), 6 * 8);
    assert_placement(&ring);
    let first = &ring.ranges[0];
    let last = &ring.ranges[ring.ranges.len() - 1];
    assert!(first.start_token > first.end_token, "wrapping range first");
    assert_eq!(first.start_token, last.end_token);
    for w in ring.ranges.windows(2) {
        assert_eq!(w[1].start_token, w[0].end_token);
        assert!(w[1].start_token < w[1].end_token);
    }
    // Every token falls in exactly one range.
    let contains = |r: &alternator_sim::RangeOwnership, t: i64| {
        if r.start_token < r.end_token {
            t > r.start_token && t <= r.end_token
        } else {
            t > r.start_token || t <= r.end_token
        }
    };
    for t in [
        i64::MIN + 1,
        -5,
        0,
        1,
        i64::MAX,
        first.end_token,
        first.start_token,
    ] {
        let n = ring.ranges.iter().filter(|r| contains(r, t)).count();
        assert_eq!(n, 1, "token {t}");
    }
    // The range a range's end token belongs to is owned first by that token's node: the
    // replica list starts with a node that has the token; all six nodes own tokens.
    let owners: BTreeSet<IpAddr> = ring.ranges.iter().map(|r| r.replicas[0]).collect();
    assert_eq!(owners.len(), 6);
    sim.shutdown().await;
}

// ---- internal tables ----

fn rows(answer: &Value) -> Vec<Value> {
    answer["Items"].as_array().cloned().unwrap_or_default()
}

fn s<'v>(item: &'v Value, name: &str) -> &'v str {
    item[name]["S"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not S in {item}"))
}

/// Every row of a Query or Scan, following LastEvaluatedKey; also returns the page count.
async fn read_all(sim: &Sim, node: IpAddr, op: &str, mut req: Value) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let a = ok(sim, node, op, req.clone()).await;
        pages += 1;
        out.extend(rows(&a));
        match a.get("LastEvaluatedKey") {
            Some(k) => req["ExclusiveStartKey"] = k.clone(),
            None => return (out, pages),
        }
        assert!(pages < 10_000, "pagination does not end");
    }
}

/// A request naming only the internal table `system.<name>` (all of it for a Scan).
fn system_table(name: &str) -> Value {
    json!({"TableName": format!(".scylla.alternator.system.{name}")})
}

fn token_ring_query(keyspace: &str) -> Value {
    json!({
        "TableName": ".scylla.alternator.system.token_ring",
        "KeyConditionExpression": "keyspace_name = :k",
        "ExpressionAttributeValues": {":k": {"S": keyspace}},
    })
}

fn tablets_query(table_id: &str) -> Value {
    json!({
        "TableName": ".scylla.alternator.system.tablets",
        "KeyConditionExpression": "table_id = :id",
        "ExpressionAttributeValues": {":id": {"S": table_id}},
    })
}

/// token_ring rows of a table → (start, end) → replica endpoints (sorted).
fn ring_rows(rows: &[Value], table_name: &str) -> BTreeMap<(i64, i64), BTreeSet<String>> {
    let mut out: BTreeMap<(i64, i64), BTreeSet<String>> = BTreeMap::new();
    for r in rows.iter().filter(|r| s(r, "table_name") == table_name) {
        out.entry((int(s(r, "start_token")), int(s(r, "end_token"))))
            .or_default()
            .insert(s(r, "endpoint").to_owned());
    }
    out
}

fn broadcast(addr: &IpAddr) -> String {
    if *addr == ip(2) {
        "10.0.0.2".into()
    } else {
        addr.to_string()
    }
}

fn expected_ring(ring: &TableRing) -> BTreeMap<(i64, i64), BTreeSet<String>> {
    ring.ranges
        .iter()
        .map(|r| {
            (
                (r.start_token, r.end_token),
                r.replicas.iter().map(broadcast).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_ring_and_tablets_through_alternator() {
    let sim = start(six_nodes(RingConfig::default())).await;
    let id = create_table(&sim, "tab", None).await;
    create_table(&sim, "vnt", Some("none")).await;
    let ring = ring_of(&sim, "tab");

    // token_ring of a tablets table: one row per (tablet, replica), endpoints are broadcast
    // addresses, rows in Scylla's order (start_token compared as text).
    let a = ok(&sim, ip(3), "Query", token_ring_query("alternator_tab")).await;
    let items = rows(&a);
    assert_eq!(items.len(), 8 * 5);
    let order: Vec<(String, String)> = items
        .iter()
        .map(|r| {
            (
                s(r, "table_name").to_owned(),
                s(r, "start_token").to_owned(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "rows ordered by table_name, start_token text"
    );
    assert_eq!(s(&items[0], "keyspace_name"), "alternator_tab");
    assert_eq!(ring_rows(&items, "tab"), expected_ring(&ring));
    for r in &items {
        let endpoint = s(r, "endpoint");
        assert_ne!(endpoint, "127.0.0.2", "listen address instead of broadcast");
        let (dc, rack) = match endpoint {
            "10.0.0.2" => ("dc1", "r2"),
            e => location(e.parse().unwrap_or_else(|e| panic!("{e}"))),
        };
        assert_eq!((s(r, "dc"), s(r, "rack")), (dc, rack));
    }

    // A vnode keyspace: table_name <ALL>, the wrapping range included once.
    let a = ok(&sim, ip(1), "Query", token_ring_query("alternator_vnt")).await;
    let vn_rows = rows(&a);
    assert!(vn_rows.iter().all(|r| s(r, "table_name") == "<ALL>"));
    let vn = ring_rows(&vn_rows, "<ALL>");
    assert_eq!(vn, expected_ring(&ring_of(&sim, "vnt")));
    assert_eq!(vn.keys().filter(|(st, en)| st > en).count(), 1);

    // system.tablets by TableId.
    let a = ok(&sim, ip(1), "Query", tablets_query(&id)).await;
    let tablets = rows(&a);
    assert_eq!(tablets.len(), 8);
    for (t, expected) in tablets.iter().zip(&ring.ranges) {
        assert_eq!(s(t, "table_id"), id);
        assert_eq!(s(t, "keyspace_name"), "alternator_tab");
        assert_eq!(s(t, "table_name"), "tab");
        assert_eq!(s(t, "tablet_count"), "8");
        assert_eq!(int(s(t, "last_token")), expected.end_token);
        let replicas: Vec<String> = expected
            .replicas
            .iter()
            .map(|r| format!("{}:0", sim.host_id(*r)))
            .collect();
        assert_eq!(s(t, "replicas"), replicas.join(", "));
        assert!(t.get("new_replicas").is_none() && t.get("stage").is_none());
    }
    // A vnode table has no tablets; a malformed id is a ValidationException.
    let vn_id = ring_of(&sim, "vnt").table_id;
    assert!(rows(&ok(&sim, ip(1), "Query", tablets_query(&vn_id)).await).is_empty());
    let a = dynamo(&sim, ip(1), "Query", tablets_query("nope")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // Scans see every partition.
    let (all, _) = read_all(&sim, ip(1), "Scan", system_table("token_ring")).await;
    assert_eq!(all.len(), items.len() + vn_rows.len());
    let (all_tablets, _) = read_all(&sim, ip(1), "Scan", system_table("tablets")).await;
    assert_eq!(all_tablets.len(), 8);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_and_local_depend_on_the_node_asked() {
    let sim = start(six_nodes(RingConfig::default())).await;
    for asked in [ip(1), ip(2)] {
        let a = ok(&sim, asked, "Scan", system_table("peers")).await;
        let peers = rows(&a);
        assert_eq!(peers.len(), 5);
        let mut rpc: Vec<String> = Vec::new();
        for p in &peers {
            let rpc_address: IpAddr = s(p, "rpc_address")
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(rpc_address, asked);
            assert_eq!(s(p, "peer"), broadcast(&rpc_address));
            assert_eq!(s(p, "host_id"), sim.host_id(rpc_address));
            let (dc, rack) = location(rpc_address);
            assert_eq!((s(p, "data_center"), s(p, "rack")), (dc, rack));
            rpc.push(rpc_address.to_string());
        }
        let a = ok(&sim, asked, "Scan", system_table("local")).await;
        let local = rows(&a);
        assert_eq!(local.len(), 1);
        let l = &local[0];
        assert_eq!(s(l, "key"), "local");
        assert_eq!(s(l, "rpc_address"), asked.to_string());
        assert_eq!(s(l, "broadcast_address"), broadcast(&asked));
        assert_eq!(s(l, "host_id"), sim.host_id(asked));
        assert_eq!(s(l, "data_center"), "dc1");
        assert_eq!(s(l, "cluster_name"), "alternator-sim");
    }
    // Host ids are UUIDs, distinct and stable for the address and seed.
    let ids: BTreeSet<String> = (1..=6).map(|i| sim.host_id(ip(i))).collect();
    assert_eq!(ids.len(), 6);
    assert!(ids
        .iter()
        .all(|i| i.len() == 36 && i.matches('-').count() == 4));
    let other = start(six_nodes(RingConfig::default())).await;
    assert_eq!(other.host_id(ip(1)), sim.host_id(ip(1)));
    // Query on peers by its partition key.
    let a = ok(
        &sim,
        ip(1),
        "Query",
        json!({
            "TableName": ".scylla.alternator.system.peers",
            "KeyConditionExpression": "peer = :p",
            "ExpressionAttributeValues": {":p": {"S": "10.0.0.2"}},
        }),
    )
    .await;
    assert_eq!(rows(&a).len(), 1);
    assert_eq!(s(&rows(&a)[0], "rpc_address"), "127.0.0.2");
    sim.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_reads_paginate() {
    let sim = start(six_nodes(tablet_ring(32))).await;
    create_table(&sim, "tab", None).await;
    let (unpaged, pages) = read_all(&sim, ip(1), "Query", token_ring_query("alternator_tab")).await;
    assert_eq!((unpaged.len(), pages), (32 * 5, 1));

    // Limit.
    let mut q = token_ring_query("alternator_tab");
    q["Limit"] = json!(7);
    let (limited, pages) = read_all(&sim, ip(1), "Query", q).await;
    assert_eq!(limited, unpaged);
    assert_eq!(
        pages,
        (32 * 5usize).div_ceil(7) + usize::from((32 * 5) % 7 == 0)
    );

    // The forced page size (library, then the control API).
    sim.set_internal_page_rows(Some(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let (paged, pages) = read_all(&sim, ip(2), "Query", token_ring_query("alternator_tab")).await;
    assert_eq!(paged, unpaged);
    assert!(pages >= 16, "{pages} pages");
    let a = settings(&sim, json!({"internal_page_rows": 3})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["internal_page_rows"], 3);
    let (peers, pages) = read_all(&sim, ip(1), "Scan", system_table("peers")).await;
    assert_eq!((peers.len(), pages), (5, 2));
    let (tablets, _) = read_all(&sim, ip(1), "Scan", system_table("tablets")).await;
    assert_eq!(tablets.len(), 32);
    let a = settings(&sim, json!({"internal_page_rows": null})).await;
    assert_eq!(a.json["internal_page_rows"], Value::Null);
    let a = settings(&sim, json!({"internal_page_rows": 0})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_table_errors() {
    let sim = start(six_nodes(RingConfig::default())).await;
    let a = dynamo(
        &sim,
        ip(1),
        "GetItem",
        json!({"TableName": ".scylla.alternator.system.local", "Key": {"key": {"S": "local"}}}),
    )
    .await;
    assert_eq!(error_kind(&a), "ResourceNotFoundException");
    let a = dynamo(&sim, ip(1), "Scan", system_table("nosuch")).await;
    assert_eq!(error_kind(&a), "ResourceNotFoundException");
    assert!(a.json["message"]
        .as_str()
        .unwrap_or("")
        .contains("Internal table: system.nosuch"));
    let a = dynamo(
        &sim,
        ip(1),
        "Scan",
        json!({"TableName": ".scylla.alternator.alternator_x.x"}),
    )
    .await;
    assert_eq!(error_kind(&a), "ResourceNotFoundException");
    let a = dynamo(
        &sim,
        ip(1),
        "CreateTable",
        json!({
            "TableName": ".scylla.alternator.mine",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        }),
    )
    .await;
    assert_eq!(error_kind(&a), "ValidationException");
    let a = dynamo(&sim, ip(1), "Query", system_table("token_ring")).await;
    assert_eq!(error_kind(&a), "ValidationException");
    // Stopped nodes do not answer.
    sim.stop_node(ip(3)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(TcpStream::connect(sim.endpoint(ip(3))).await.is_err());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_tables_need_a_signature_under_enforce_auth() {
    let creds: Credentials = "AKIDSIM:sim-secret"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = start(SimConfig {
        enforce_auth: Some(creds.clone()),
        ..six_nodes(RingConfig::default())
    })
    .await;
    let body = system_table("peers").to_string();
    let a = dynamo(
        &sim,
        ip(1),
        "Scan",
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_kind(&a), "MissingAuthenticationTokenException");

    let addr = sim.endpoint(ip(1));
    let host = addr.to_string();
    let target = "DynamoDB_20120810.Scan";
    let headers = alternator_sim::sigv4::sign(
        "POST",
        &host,
        "/",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", target),
        ],
        body.as_bytes(),
        &creds,
        "us-east-1",
        SystemTime::now(),
    );
    let mut b = Request::post("/")
        .header("host", &host)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    let req = b
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|e| panic!("{e}"));
    let a = http(addr, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(rows(&a.json).len(), 5);
    sim.shutdown().await;
}

// ---- counters ----

#[tokio::test(flavor = "multi_thread")]
async fn counters_tell_replica_from_non_replica_coordination() {
    let delay = Duration::from_millis(150);
    let sim = start(SimConfig {
        ring: RingConfig {
            replication_factor: 1,
            tablets: 4,
            ..RingConfig::default()
        },
        forward_delay: delay,
        ..SimConfig::new(vec![
            NodeSpec::new(ip(1), "dc1", "r1"),
            NodeSpec::new(ip(2), "dc1", "r2"),
            NodeSpec::new(ip(3), "dc1", "r3"),
        ])
    })
    .await;
    create_table(&sim, "cnt", None).await;
    let ring = ring_of(&sim, "cnt");
    let key = json!({"S": "user#1"});
    let token = key_token(&key).unwrap_or_else(|| panic!("no token"));
    let lasts: Vec<i64> = ring.ranges.iter().map(|r| r.end_token).collect();
    let owner = ring.ranges[tablet_index(&lasts, token)].replicas[0];
    let other = (1..=3)
        .map(ip)
        .find(|a| *a != owner)
        .unwrap_or_else(|| panic!("no other node"));
    sim.reset();

    ok(
        &sim,
        owner,
        "PutItem",
        json!({"TableName": "cnt", "Item": {"pk": key, "v": {"N": "1"}}}),
    )
    .await;
    let get = json!({"TableName": "cnt", "Key": {"pk": key}});
    ok(&sim, owner, "GetItem", get.clone()).await;
    let started = Instant::now();
    ok(&sim, other, "GetItem", get).await;
    assert!(started.elapsed() >= delay, "forward delay not applied");
    ok(
        &sim,
        other,
        "Query",
        json!({"TableName": "cnt", "KeyConditionExpression": "pk = :k",
               "ExpressionAttributeValues": {":k": key}}),
    )
    .await;
    // Scans and internal tables are not single-key requests.
    ok(&sim, other, "Scan", json!({"TableName": "cnt"})).await;

    let c = sim.counters();
    assert_eq!(c.node(owner).coordinated_as_replica, 2);
    assert_eq!(c.node(owner).coordinated_as_non_replica, 0);
    assert_eq!(c.node(other).coordinated_as_replica, 0);
    assert_eq!(c.node(other).coordinated_as_non_replica, 2);
    let log = sim.keylog();
    let flags: Vec<Option<bool>> = log.iter().map(|e| e.replica).collect();
    assert_eq!(
        flags,
        vec![Some(true), Some(true), Some(false), Some(false), None]
    );

    // The control API reports them too; the forward delay can be changed at run time.
    let a = control(&sim, "GET", "/counters", None).await;
    assert_eq!(
        a.json["nodes"][other.to_string()]["coordinated_as_non_replica"],
        2
    );
    let a = settings(&sim, json!({"forward_delay_us": 0})).await;
    assert_eq!(a.json["forward_delay_us"], 0);
    sim.reset();
    assert_eq!(sim.counters().node(other).coordinated_as_non_replica, 0);
    sim.shutdown().await;
}

// ---- ring changes ----

#[tokio::test(flavor = "multi_thread")]
async fn migration_split_and_membership_change_the_tables() {
    let sim = start(six_nodes(tablet_ring(4))).await;
    let id = create_table(&sim, "tab", None).await;
    let before = ring_of(&sim, "tab");
    let t0 = &before.ranges[0];
    let from = *t0
        .replicas
        .iter()
        .find(|r| location(**r).0 == "dc1")
        .unwrap_or_else(|| panic!("no dc1 replica"));
    let to = (1..=4)
        .map(ip)
        .find(|a| !t0.replicas.contains(a))
        .unwrap_or_else(|| panic!("no free dc1 node"));

    // A migration left in progress shows new_replicas and stage in system.tablets.
    let a = control(
        &sim,
        "POST",
        "/tables/tab/tablets/0/move",
        Some(json!({"from": from.to_string(), "to": to.to_string(), "finish": false})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["ranges"][0]["stage"], "write_both_read_old");
    let tablets = rows(&ok(&sim, ip(1), "Query", tablets_query(&id)).await);
    assert_eq!(s(&tablets[0], "stage"), "write_both_read_old");
    assert!(s(&tablets[0], "new_replicas").contains(&sim.host_id(to)));
    assert!(!s(&tablets[0], "replicas").contains(&sim.host_id(to)));
    assert!(tablets[1].get("stage").is_none());
    // A second move of the same tablet waits for the first.
    let a = control(
        &sim,
        "POST",
        "/tables/tab/tablets/0/move",
        Some(json!({"from": from.to_string(), "to": to.to_string()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = control(&sim, "POST", "/tables/tab/tablets/0/finish", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let tablets = rows(&ok(&sim, ip(1), "Query", tablets_query(&id)).await);
    assert!(tablets[0].get("stage").is_none());
    assert!(s(&tablets[0], "replicas").contains(&sim.host_id(to)));
    let now = ring_of(&sim, "tab");
    assert!(now.ranges[0].replicas.contains(&to) && !now.ranges[0].replicas.contains(&from));
    let token_ring = rows(&ok(&sim, ip(1), "Query", token_ring_query("alternator_tab")).await);
    assert_eq!(ring_rows(&token_ring, "tab"), expected_ring(&now));

    // Immediate move through the library; bad moves are refused.
    let back = sim
        .move_tablet("tab", 0, to, from, true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(back.ranges[0].replicas.contains(&from));
    assert!(sim.move_tablet("tab", 0, to, from, true).is_err());
    assert!(sim.move_tablet("tab", 99, from, to, true).is_err());
    let a = control(&sim, "POST", "/tables/nope/split", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // Split: twice the tablets, both halves keep the replicas.
    let a = control(&sim, "POST", "/tables/tab/split", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let split = ring_of(&sim, "tab");
    assert_eq!(split.ranges.len(), 8);
    assert_eq!(
        split.ranges.iter().map(|r| r.end_token).collect::<Vec<_>>(),
        even_last_tokens(8)
    );
    for (i, r) in split.ranges.iter().enumerate() {
        assert_eq!(r.replicas, back.ranges[i / 2].replicas);
    }
    let tablets = rows(&ok(&sim, ip(1), "Query", tablets_query(&id)).await);
    assert_eq!(tablets.len(), 8);
    assert!(tablets.iter().all(|t| s(t, "tablet_count") == "8"));

    // A node joins dc1: it takes replicas, keeping racks distinct, and appears in peers.
    sim.add_node(NodeSpec::new(ip(7), "dc1", "r2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grown = ring_of(&sim, "tab");
    assert_placement(&grown);
    let on_new = grown
        .ranges
        .iter()
        .filter(|r| r.replicas.contains(&ip(7)))
        .count();
    assert!(on_new >= 3, "new node holds {on_new} tablets");
    let token_ring = rows(&ok(&sim, ip(1), "Query", token_ring_query("alternator_tab")).await);
    assert_eq!(ring_rows(&token_ring, "tab"), expected_ring(&grown));
    let peers = rows(&ok(&sim, ip(1), "Scan", system_table("peers")).await);
    assert_eq!(peers.len(), 6);

    // Decommission: the node leaves every replica set and system.peers.
    sim.decommission(ip(7))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shrunk = ring_of(&sim, "tab");
    assert_placement(&shrunk);
    assert!(shrunk.ranges.iter().all(|r| !r.replicas.contains(&ip(7))));
    let peers = rows(&ok(&sim, ip(1), "Scan", system_table("peers")).await);
    assert_eq!(peers.len(), 5);
    // Removing node 4 (stopped, out of the ring) via the control API.
    let a = control(&sim, "POST", "/nodes/127.0.0.4/remove", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["in_ring"], false);
    assert_eq!(a.json["state"], "stopped");
    let removed = ring_of(&sim, "tab");
    assert!(removed.ranges.iter().all(|r| !r.replicas.contains(&ip(4))));
    assert_placement(&removed); // three dc1 nodes on three racks remain
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vnode_ring_follows_membership() {
    let sim = start(six_nodes(vnode_ring(4))).await;
    create_table(&sim, "vnt", None).await;
    assert_eq!(ring_of(&sim, "vnt").ranges.len(), 24);
    let a = control(
        &sim,
        "POST",
        "/nodes",
        Some(json!({"address": "127.0.0.7", "datacenter": "dc1", "rack": "r2"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["in_ring"], true);
    let grown = ring_of(&sim, "vnt");
    assert_eq!(grown.ranges.len(), 28);
    assert!(grown.ranges.iter().any(|r| r.replicas.contains(&ip(7))));
    let token_ring = rows(&ok(&sim, ip(1), "Query", token_ring_query("alternator_vnt")).await);
    assert_eq!(ring_rows(&token_ring, "<ALL>"), expected_ring(&grown));
    let a = control(&sim, "GET", "/tables/vnt/ring", None).await;
    assert_eq!(a.json["layout"], "vnodes");
    assert_eq!(a.json["ranges"].as_array().map(Vec::len), Some(28));
    let a = control(&sim, "POST", "/tables/vnt/split", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    sim.decommission(ip(7))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ring_of(&sim, "vnt").ranges.len(), 24);
    sim.shutdown().await;
}

#[test]
fn node_spec_takes_an_optional_broadcast_address() {
    let n: NodeSpec = "127.0.0.2/dc1/r2/10.0.0.2"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.broadcast(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    let n: NodeSpec = "127.0.0.2/dc1/r2".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.broadcast(), ip(2));
    assert!("127.0.0.2/dc1/r2/nope".parse::<NodeSpec>().is_err());
    assert!("127.0.0.2/dc1/r2/10.0.0.2/x".parse::<NodeSpec>().is_err());
}
