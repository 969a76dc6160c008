//! A scripted Alternator for ring discovery tests: `/localnodes`, `GET /`, and the DynamoDB
//! requests the agent sends for rings (ListTables, DescribeTable, Scan of `system.peers` /
//! `system.local`, Query of `system.token_ring` / `system.tablets`) answered from a model the
//! test edits while the agent runs. Answers are paginated (`page_size`) and can be made
//! unavailable, refused or malformed. Real signature checking is tested against alternator-sim;
//! here "authorization" only checks that a SigV4 header names the expected access key.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One node: the address `/localnodes` lists (RPC), its broadcast address, its host id.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub rpc: IpAddr,
    pub broadcast: IpAddr,
    pub host_id: String,
}

/// One tablet: last token, replicas (node indices), and a migration in progress (new replicas,
/// stage).
pub type Tablet = (i64, Vec<usize>, Option<(Vec<usize>, String)>);

#[derive(Debug, Clone)]
pub enum FakeLayout {
    /// `(start, end, replicas)`, wrapping.
    Vnodes(Vec<(i64, i64, Vec<usize>)>),
    Tablets(Vec<Tablet>),
}

#[derive(Debug, Clone)]
pub struct FakeTable {
    pub id: String,
    pub hash_key: String,
    pub key_type: &'static str,
    pub layout: FakeLayout,
}

#[derive(Debug, Default)]
pub struct Model {
    pub nodes: Vec<FakeNode>,
    pub tables: BTreeMap<String, FakeTable>,
    /// Items (or table names) per page.
    pub page_size: usize,
    /// Required access key id; `None`: no authorization.
    pub auth: Option<String>,
    /// Nodes that answer 503 to every POST.
    pub post_unavailable: HashSet<IpAddr>,
    /// Extra rows appended to every `system.token_ring` answer.
    pub extra_token_ring_rows: Vec<Value>,
    /// Extra rows appended to every `system.tablets` answer.
    pub extra_tablet_rows: Vec<Value>,
    /// Every POST: (asked node, operation, TableName or "").
    pub log: Vec<(IpAddr, String, String)>,
}

pub struct FakeAlternator {
    pub port: u16,
    pub model: Arc<Mutex<Model>>,
    tasks: Vec<JoinHandle<()>>,
}

/// A host id derived from a node number.
pub fn host_id(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i + 1, i + 1)
}

impl FakeAlternator {
    /// Nodes `127.0.<net>.<1..=n>`; node `i`'s broadcast address is `127.1.<net>.<i>` when
    /// `distinct_broadcast`, else its RPC address.
    pub async fn start(net: u8, n: u8, distinct_broadcast: bool) -> Self {
        let nodes: Vec<FakeNode> = (1..=n)
            .map(|i| FakeNode {
                rpc: IpAddr::from([127, 0, net, i]),
                broadcast: if distinct_broadcast {
                    IpAddr::from([127, 1, net, i])
                } else {
                    IpAddr::from([127, 0, net, i])
                },
                host_id: host_id(usize::from(i - 1)),
            })
            .collect();
        // Room for nodes added later: bind every address the test may use.
        let addresses: Vec<IpAddr> = (1..=n + 4)
            .map(|i| IpAddr::from([127, 0, net, i]))
            .collect();
        let model = Arc::new(Mutex::new(Model {
            nodes,
            page_size: 100,
            ..Model::default()
        }));
        'attempt: for _ in 0..50 {
            let first = TcpListener::bind((addresses[0], 0)).await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut listeners = vec![first];
            for address in &addresses[1..] {
                match TcpListener::bind((*address, port)).await {
                    Ok(l) => listeners.push(l),
                    Err(_) => continue 'attempt,
                }
            }
            let tasks = addresses
                .iter()
                .zip(listeners)
                .map(|(address, listener)| tokio::spawn(serve(*address, listener, model.clone())))
                .collect();
            return FakeAlternator { port, model, tasks };
        }
        panic!("no common free port for the fake cluster");
    }

    pub fn edit<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        f(&mut self.model.lock().unwrap())
    }

    pub fn add_table(&self, name: &str, layout: FakeLayout) {
        let id = format!("{:08x}-1111-4111-8111-{:012x}", name.len(), fnv(name));
        self.edit(|m| {
            m.tables.insert(
                name.to_owned(),
                FakeTable {
                    id,
                    hash_key: "pk".to_owned(),
                    key_type: "S",
                    layout,
                },
            )
        });
    }

    /// POSTs logged so far.
    pub fn posts(&self) -> Vec<(IpAddr, String, String)> {
        self.edit(|m| m.log.clone())
    }

    pub fn rpc(&self, i: usize) -> IpAddr {
        self.edit(|m| m.nodes[i].rpc)
    }
}

impl Drop for FakeAlternator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) & 0xffff_ffff_ffff
}

/// A vnode ring: `vnodes` tokens per node from a fixed pseudo-random sequence; each range's
/// replicas are the owner of its end token and the next `rf - 1` distinct nodes clockwise.
pub fn vnode_ring(
    nodes: usize,
    vnodes: usize,
    rf: usize,
    seed: u64,
) -> Vec<(i64, i64, Vec<usize>)> {
    let mut state = seed;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as i64
    };
    let mut tokens: Vec<(i64, usize)> = (0..nodes)
        .flat_map(|n| (0..vnodes).map(move |_| n))
        .map(|n| (next(), n))
        .collect();
    tokens.sort();
    let len = tokens.len();
    (0..len)
        .map(|i| {
            let start = tokens[(i + len - 1) % len].0;
            let (end, _) = tokens[i];
            let mut replicas = Vec::new();
            let mut j = i;
            while replicas.len() < rf.min(nodes) {
                let owner = tokens[j % len].1;
                if !replicas.contains(&owner) {
                    replicas.push(owner);
                }
                j += 1;
            }
            (start, end, replicas)
        })
        .collect()
}

/// `count` tablets of equal width over the whole token space, replicas placed round robin.
pub fn tablets(count: usize, nodes: usize, rf: usize) -> Vec<Tablet> {
    let width = (u64::MAX / count as u64) as i128;
    (0..count)
        .map(|i| {
            let last = if i + 1 == count {
                i64::MAX
            } else {
                (i128::from(i64::MIN) + width * (i as i128 + 1)) as i64
            };
            let replicas = (0..rf.min(nodes)).map(|r| (i + r) % nodes).collect();
            (last, replicas, None)
        })
        .collect()
}

fn s(text: impl ToString) -> Value {
    json!({"S": text.to_string()})
}

fn error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message}),
    )
}

fn page(items: Vec<Value>, request: &Value, page_size: usize) -> Value {
    let from = request["ExclusiveStartKey"]["idx"]["N"]
        .as_str()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let to = (from + page_size).min(items.len());
    let mut answer =
        json!({"Items": items[from.min(items.len())..to].to_vec(), "Count": to - from.min(to)});
    if to < items.len() {
        answer["LastEvaluatedKey"] = json!({"idx": {"N": to.to_string()}});
    }
    answer
}

fn answer(model: &mut Model, asked: IpAddr, target: &str, body: &Value) -> (u16, Value) {
    let operation = target.strip_prefix("DynamoDB_20120810.").unwrap_or(target);
    let table_name = body["TableName"].as_str().unwrap_or("").to_owned();
    let page_size = model.page_size.max(1);
    match operation {
        "ListTables" => {
            let names: Vec<&String> = model.tables.keys().collect();
            let from = match body["ExclusiveStartTableName"].as_str() {
                Some(after) => names
                    .iter()
                    .position(|n| n.as_str() > after)
                    .unwrap_or(names.len()),
                None => 0,
            };
            let to = (from + page_size).min(names.len());
            let mut a = json!({"TableNames": names[from..to]});
            if to < names.len() {
                a["LastEvaluatedTableName"] = json!(names[to - 1]);
            }
            (200, a)
        }
        "DescribeTable" => match model.tables.get(&table_name) {
            Some(t) => (
                200,
                json!({"Table": {"TableName": table_name, "TableId": t.id, "TableStatus": "ACTIVE",
                    "KeySchema": [{"AttributeName": t.hash_key, "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": t.hash_key, "AttributeType": t.key_type}]}}),
            ),
            None => error(
                400,
                "ResourceNotFoundException",
                "Requested resource not found",
            ),
        },
        "Scan" if table_name == ".scylla.alternator.system.peers" => {
            let rows = model
                .nodes
                .iter()
                .filter(|n| n.rpc != asked)
                .map(|n| {
                    json!({"peer": s(n.broadcast), "rpc_address": s(n.rpc), "host_id": s(&n.host_id),
                           "data_center": s("dc1"), "rack": s("rack1")})
                })
                .collect();
            (200, page(rows, body, page_size))
        }
        "Scan" if table_name == ".scylla.alternator.system.local" => {
            let rows = model
                .nodes
                .iter()
                .filter(|n| n.rpc == asked)
                .map(|n| {
                    json!({"key": s("local"), "broadcast_address": s(n.broadcast),
                           "rpc_address": s(n.rpc), "host_id": s(&n.host_id)})
                })
                .collect();
            (200, page(rows, body, page_size))
        }
        "Query" if table_name == ".scylla.alternator.system.token_ring" => {
            let keyspace = body["ExpressionAttributeValues"][":k"]["S"]
                .as_str()
                .unwrap_or("");
            let table = keyspace.strip_prefix("alternator_").unwrap_or("");
            let mut rows: Vec<Value> = Vec::new();
            match model.tables.get(table).map(|t| &t.layout) {
                Some(FakeLayout::Vnodes(ranges)) => {
                    for (start, end, replicas) in ranges {
                        for r in replicas {
                            let node = &model.nodes[*r];
                            rows.push(
                                json!({"keyspace_name": s(keyspace), "table_name": s("<ALL>"),
                                "start_token": s(start), "end_token": s(end),
                                "endpoint": s(node.broadcast), "dc": s("dc1"), "rack": s("rack1")}),
                            );
                        }
                    }
                    // A CDC log table of the same keyspace, which must be ignored.
                    rows.push(json!({"keyspace_name": s(keyspace), "table_name": s(format!("{table}_scylla_cdc_log")),
                        "start_token": s(0), "end_token": s(1), "endpoint": s(model.nodes[0].broadcast)}));
                    rows.extend(model.extra_token_ring_rows.iter().cloned());
                }
                Some(FakeLayout::Tablets(_)) | None => {}
            }
            // Scylla sorts by the text form of the start token.
            rows.sort_by(|a, b| {
                a["start_token"]["S"]
                    .as_str()
                    .cmp(&b["start_token"]["S"].as_str())
            });
            (200, page(rows, body, page_size))
        }
        "Query" if table_name == ".scylla.alternator.system.tablets" => {
            let id = body["ExpressionAttributeValues"][":id"]["S"]
                .as_str()
                .unwrap_or("");
            let table = model.tables.values().find(|t| t.id == id);
            let mut rows: Vec<Value> = Vec::new();
            if let Some(FakeTable {
                layout: FakeLayout::Tablets(tablets),
                ..
            }) = table
            {
                let text = |replicas: &[usize]| {
                    replicas
                        .iter()
                        .enumerate()
                        .map(|(shard, r)| format!("{}:{shard}", model.nodes[*r].host_id))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                for (last, replicas, migration) in tablets {
                    let mut row = json!({"table_id": s(id), "last_token": s(last),
                        "replicas": s(text(replicas))});
                    if let Some((new, stage)) = migration {
                        row["new_replicas"] = s(text(new));
                        row["stage"] = s(stage);
                    }
                    rows.push(row);
                }
                rows.extend(model.extra_tablet_rows.iter().cloned());
            }
            (200, page(rows, body, page_size))
        }
        "Query" | "Scan" => error(
            400,
            "ResourceNotFoundException",
            "Requested resource not found",
        ),
        _ => error(400, "UnknownOperationException", "unknown operation"),
    }
}

async fn serve(address: IpAddr, listener: TcpListener, model: Arc<Mutex<Model>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let model = model.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let model = model.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, text) = handle(address, &model, &parts, &body);
                    let mut response = Response::new(Full::new(Bytes::from(text)));
                    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(
    address: IpAddr,
    model: &Mutex<Model>,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> (u16, String) {
    let mut model = model.lock().unwrap();
    let serving = model.nodes.iter().any(|n| n.rpc == address);
    if !serving {
        return (503, "not a member".to_owned());
    }
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/localnodes") => (
            200,
            serde_json::to_string(
                &model
                    .nodes
                    .iter()
                    .map(|n| n.rpc.to_string())
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
        ("GET", "/") => (200, "healthy".to_owned()),
        ("POST", "/") => {
            let target = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let op = target.rsplit('.').next().unwrap_or("").to_owned();
            let table = request["TableName"].as_str().unwrap_or("").to_owned();
            model.log.push((address, op, table));
            if model.post_unavailable.contains(&address) {
                return (503, "<html>overloaded</html>".to_owned());
            }
            if let Some(key) = &model.auth {
                let authorization = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if authorization.is_empty() {
                    let (status, v) = error(
                        400,
                        "MissingAuthenticationTokenException",
                        "Request is missing Authentication Token",
                    );
                    return (status, v.to_string());
                }
                let credential = format!("Credential={key}/");
                if !authorization.starts_with("AWS4-HMAC-SHA256 ")
                    || !authorization.contains(&credential)
                    || !parts.headers.contains_key("x-amz-date")
                {
                    let (status, v) = error(
                        400,
                        "UnrecognizedClientException",
                        "The security token included in the request is invalid.",
                    );
                    return (status, v.to_string());
                }
            }
            let (status, value) = answer(&mut model, address, &target, &request);
            (status, value.to_string())
        }
        _ => (404, "not found".to_owned()),
    }
}
