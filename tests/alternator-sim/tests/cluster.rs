//! The sim as other crates' tests use it: in-process, over real sockets. Covers Scylla's
//! `/localnodes` and health behaviour, every fault action (library methods and the HTTP control
//! API), counters, the key log and SigV4 enforcement.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use alternator_sim::{Credentials, NodeSpec, NodeState, Sim, SimConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn three_nodes() -> SimConfig {
    SimConfig::new(vec![
        NodeSpec::new(ip(1), "dc1", "rack1"),
        NodeSpec::new(ip(2), "dc1", "rack2"),
        NodeSpec::new(ip(3), "dc2", "rack1"),
    ])
}

async fn start(config: SimConfig) -> Sim {
    match Sim::start(config).await {
        Ok(s) => s,
        Err(e) => panic!("sim did not start: {e}"),
    }
}

/// One HTTP/1.1 keep-alive connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(Conn {
        sender,
        host: addr.to_string(),
    })
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, hyper::Error> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Answer { status, body })
    }

    async fn get(&mut self, path: &str) -> Result<Answer, hyper::Error> {
        let req = Request::get(path)
            .header("host", &self.host)
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|e| panic!("{e}"));
        self.send(req).await
    }

    async fn dynamo(&mut self, op: &str, body: Value) -> Result<Answer, hyper::Error> {
        let req = Request::post("/")
            .header("host", &self.host)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_else(|e| panic!("{e}"));
        self.send(req).await
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut c = connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

async fn localnodes(sim: &Sim, node: u8, query: &str) -> Vec<String> {
    let a = get(sim.endpoint(ip(node)), &format!("/localnodes{query}")).await;
    assert_eq!(a.status, StatusCode::OK);
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.text()))
}

async fn dynamo(sim: &Sim, node: u8, op: &str, body: Value) -> Answer {
    let mut c = connect(sim.endpoint(ip(node)))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    c.dynamo(op, body)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

async fn create_table(sim: &Sim) {
    let a = dynamo(
        sim,
        1,
        "CreateTable",
        json!({
            "TableName": "items",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        }),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

/// Poll until `f` holds (at most 60 s: a guard against a hang, far longer than any state
/// these tests wait for takes on a loaded machine).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn refused(r: std::io::Result<Conn>) -> bool {
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test(flavor = "multi_thread")]
async fn localnodes_follows_scylla_rules() {
    let sim = start(three_nodes()).await;
    // Default: the asked node's own datacenter.
    assert_eq!(localnodes(&sim, 1, "").await, ["127.0.0.1", "127.0.0.2"]);
    assert_eq!(localnodes(&sim, 3, "").await, ["127.0.0.3"]);
    assert_eq!(localnodes(&sim, 1, "?dc=dc2").await, ["127.0.0.3"]);
    assert_eq!(localnodes(&sim, 1, "?rack=rack2").await, ["127.0.0.2"]);
    assert_eq!(
        localnodes(&sim, 3, "?dc=dc1&rack=rack1").await,
        ["127.0.0.1"]
    );
    // Unknown datacenter or rack: empty list, still 200.
    assert!(localnodes(&sim, 1, "?dc=nowhere").await.is_empty());
    assert!(localnodes(&sim, 1, "?rack=nowhere").await.is_empty());
    // Dead nodes are not listed.
    sim.stop_node(ip(2)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(localnodes(&sim, 1, "").await, ["127.0.0.1"]);
    assert!(localnodes(&sim, 1, "?rack=rack2").await.is_empty());
    sim.start_node(ip(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(localnodes(&sim, 1, "").await, ["127.0.0.1", "127.0.0.2"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_with_the_host_header() {
    let sim = start(three_nodes()).await;
    let addr = sim.endpoint(ip(2));
    let a = get(addr, "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), format!("healthy: {addr}"));
    assert_eq!(sim.counters().node(ip(2)).health, 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_refuses_and_resets_then_start_serves_again() {
    let sim = start(three_nodes()).await;
    let addr = sim.endpoint(ip(2));
    let mut kept = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kept.get("/").await.map(|a| a.status).ok(),
        Some(StatusCode::OK)
    );

    sim.stop_node(ip(2)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(refused(connect(addr).await), "new connections are refused");
    assert!(
        kept.get("/").await.is_err(),
        "the open connection is closed"
    );
    let status = sim.nodes().into_iter().find(|n| n.address == ip(2));
    assert_eq!(status.map(|s| s.state), Some(NodeState::Stopped));
    // Other nodes are unaffected.
    assert_eq!(get(sim.endpoint(ip(1)), "/").await.status, StatusCode::OK);

    sim.start_node(ip(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(addr, "/").await.status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hang_accepts_but_never_answers_until_started() {
    let sim = start(three_nodes()).await;
    let addr = sim.endpoint(ip(1));
    sim.hang_node(ip(1)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut c = connect(addr)
        .await
        .unwrap_or_else(|e| panic!("hung node accepts: {e}"));
    let pending = tokio::spawn(async move { c.get("/").await.map(|a| a.status).ok() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "a hung node does not answer");
    assert_eq!(localnodes(&sim, 2, "").await, ["127.0.0.2"], "not listed");
    sim.start_node(ip(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answered = tokio::time::timeout(Duration::from_secs(60), pending).await;
    assert_eq!(
        answered.ok().and_then(Result::ok).flatten(),
        Some(StatusCode::OK),
        "the held request is answered once the node recovers"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_a_hung_node_resets_the_requests_it_holds() {
    let sim = start(three_nodes()).await;
    sim.hang_node(ip(1)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut c = connect(sim.endpoint(ip(1)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pending = tokio::spawn(async move { c.get("/").await.map(|a| a.status) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.stop_node(ip(1)).await.unwrap_or_else(|e| panic!("{e}"));
    let outcome = tokio::time::timeout(Duration::from_secs(60), pending).await;
    assert!(
        matches!(outcome, Ok(Ok(Err(_)))),
        "the held request fails instead of being answered: {outcome:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_adds_latency() {
    let sim = start(three_nodes()).await;
    sim.set_latency(ip(1), Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    get(sim.endpoint(ip(1)), "/").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Taking the latency off is checked against a delay no test outlives, not against how
    // fast the machine answers: with a day's latency left on, the request would not be
    // answered within the guard.
    sim.set_latency(ip(1), Duration::from_secs(86_400))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.set_latency(ip(1), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answered =
        tokio::time::timeout(Duration::from_secs(60), get(sim.endpoint(ip(1)), "/")).await;
    assert!(answered.is_ok(), "no latency once it is set to zero");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_answers_dynamodb_requests_with_the_status() {
    let sim = start(three_nodes()).await;
    sim.set_failure(ip(1), 1.0, 503)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let a = dynamo(&sim, 1, "ListTables", json!({})).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.json()["__type"],
        "com.amazonaws.dynamodb.v20120810#ServiceUnavailable"
    );
    sim.set_failure(ip(1), 1.0, 500)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let a = dynamo(&sim, 1, "ListTables", json!({})).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    // Health and /localnodes are not DynamoDB requests and keep working.
    assert_eq!(get(sim.endpoint(ip(1)), "/").await.status, StatusCode::OK);
    assert_eq!(sim.counters().node(ip(1)).injected_failures, 2);
    sim.set_failure(ip(1), 0.0, 503)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        dynamo(&sim, 1, "ListTables", json!({})).await.status,
        StatusCode::OK
    );
    assert!(sim.set_failure(ip(1), 1.5, 503).await.is_err());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_not_ready_is_listed_while_refusing() {
    let sim = start(three_nodes()).await;
    let addr = sim.endpoint(ip(2));
    sim.set_listed_not_ready(ip(2), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(localnodes(&sim, 1, "").await, ["127.0.0.1", "127.0.0.2"]);
    assert!(refused(connect(addr).await));
    sim.start_node(ip(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(addr, "/").await.status, StatusCode::OK);

    // With a delay the port opens by itself.
    sim.set_listed_not_ready(ip(2), Some(Duration::from_millis(200)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(refused(connect(addr).await));
    eventually("the node becomes ready", || async {
        connect(addr).await.is_ok()
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn decommission_leaves_localnodes_but_keeps_serving() {
    let sim = start(three_nodes()).await;
    let mut open = connect(sim.endpoint(ip(2)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.decommission(ip(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(localnodes(&sim, 1, "").await, ["127.0.0.1"]);
    assert_eq!(localnodes(&sim, 2, "").await, ["127.0.0.1"]);
    assert_eq!(
        open.get("/").await.map(|a| a.status).ok(),
        Some(StatusCode::OK)
    );
    assert_eq!(get(sim.endpoint(ip(2)), "/").await.status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_can_join_at_runtime() {
    let sim = start(three_nodes()).await;
    sim.add_node(NodeSpec::new(ip(4), "dc1", "rack3"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        localnodes(&sim, 1, "").await,
        ["127.0.0.1", "127.0.0.2", "127.0.0.4"]
    );
    assert_eq!(get(sim.endpoint(ip(4)), "/").await.status, StatusCode::OK);
    assert!(sim
        .add_node(NodeSpec::new(ip(4), "dc1", "rack3"))
        .await
        .is_err());

    // Joining listed-but-not-ready, as Scylla does.
    sim.add_node(NodeSpec::new(ip(5), "dc1", "rack3").listed_not_ready(None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(localnodes(&sim, 1, "")
        .await
        .contains(&"127.0.0.5".to_owned()));
    assert!(refused(connect(sim.endpoint(ip(5))).await));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_and_key_log_record_which_node_served_which_key() {
    let sim = start(three_nodes()).await;
    create_table(&sim).await;
    for (node, key) in [(1, "a"), (2, "b"), (2, "c")] {
        let a = dynamo(
            &sim,
            node,
            "PutItem",
            json!({"TableName": "items", "Item": {"pk": {"S": key}, "v": {"N": "1"}}}),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    let a = dynamo(
        &sim,
        3,
        "GetItem",
        json!({"TableName": "items", "Key": {"pk": {"S": "b"}}}),
    )
    .await;
    assert_eq!(
        a.json()["Item"]["v"],
        json!({"N": "1"}),
        "state is cluster-wide"
    );
    let a = dynamo(
        &sim,
        1,
        "BatchWriteItem",
        json!({"RequestItems": {"items": [
            {"PutRequest": {"Item": {"pk": {"S": "d"}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "a"}}}},
        ]}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    let c = sim.counters();
    assert_eq!(c.node(ip(1)).by_operation.get("PutItem"), Some(&1));
    assert_eq!(c.node(ip(2)).by_operation.get("PutItem"), Some(&2));
    assert_eq!(c.total(ip(3)), 1);
    assert_eq!(c.total(ip(1)), 3, "CreateTable, PutItem, BatchWriteItem");

    let log: Vec<(IpAddr, String, Value)> = sim
        .keylog()
        .into_iter()
        .map(|e| (e.node, e.operation, e.key))
        .collect();
    assert_eq!(
        log,
        vec![
            (ip(1), "PutItem".to_owned(), json!({"S": "a"})),
            (ip(2), "PutItem".to_owned(), json!({"S": "b"})),
            (ip(2), "PutItem".to_owned(), json!({"S": "c"})),
            (ip(3), "GetItem".to_owned(), json!({"S": "b"})),
            (ip(1), "BatchWriteItem".to_owned(), json!({"S": "d"})),
            (ip(1), "BatchWriteItem".to_owned(), json!({"S": "a"})),
        ]
    );
    let next = sim.keylog().last().map_or(0, |e| e.seq + 1);
    sim.reset();
    assert_eq!(sim.counters().total(ip(1)), 0);
    assert!(sim.keylog().is_empty());
    dynamo(
        &sim,
        2,
        "GetItem",
        json!({"TableName": "items", "Key": {"pk": {"S": "z"}}}),
    )
    .await;
    let after = sim.keylog_since(next);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].table, "items");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sims_started_together_get_distinct_ports() {
    let sims = futures_join(5).await;
    let mut ports: Vec<u16> = sims.iter().map(Sim::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5);
    for s in sims {
        assert_eq!(get(s.endpoint(ip(3)), "/").await.status, StatusCode::OK);
        s.shutdown().await;
    }
}

async fn futures_join(n: usize) -> Vec<Sim> {
    let handles: Vec<_> = (0..n)
        .map(|_| tokio::spawn(Sim::start(three_nodes())))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(e)) => panic!("sim did not start: {e}"),
            Err(e) => panic!("{e}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configurations_are_rejected() {
    assert!(Sim::start(SimConfig::new(Vec::new())).await.is_err());
    let twice = SimConfig::new(vec![
        NodeSpec::new(ip(1), "dc1", "rack1"),
        NodeSpec::new(ip(1), "dc1", "rack2"),
    ]);
    assert!(Sim::start(twice).await.is_err());
    assert!("127.0.0.1/dc1".parse::<NodeSpec>().is_err());
    assert_eq!(
        "127.0.0.9/dc2/r3".parse::<NodeSpec>().ok(),
        Some(NodeSpec::new(ip(9), "dc2", "r3"))
    );
}

// ---- control API over HTTP ----

async fn control(sim: &Sim, method: &str, path: &str, body: Option<Value>) -> Answer {
    let mut c = connect(sim.control_addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", sim.control_addr().to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap_or_else(|e| panic!("{e}"));
    c.send(req).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn control_api_drives_every_action() {
    let sim = start(three_nodes()).await;
    let state = |a: &Answer| a.json()["state"].as_str().unwrap_or("").to_owned();

    let nodes = control(&sim, "GET", "/nodes", None).await.json();
    assert_eq!(nodes["port"], json!(sim.port()));
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(nodes["nodes"][2]["datacenter"], "dc2");

    let a = control(&sim, "POST", "/nodes/127.0.0.2/stop", None).await;
    assert_eq!(
        (a.status, state(&a)),
        (StatusCode::OK, "stopped".to_owned())
    );
    assert!(refused(connect(sim.endpoint(ip(2))).await));
    let a = control(&sim, "POST", "/nodes/127.0.0.2/start", None).await;
    assert_eq!(state(&a), "running");
    let a = control(&sim, "POST", "/nodes/127.0.0.2/hang", None).await;
    assert_eq!(state(&a), "hung");
    let a = control(&sim, "POST", "/nodes/127.0.0.2/not-ready", None).await;
    assert_eq!(
        (state(&a), a.json()["listed"].clone()),
        ("not_ready".to_owned(), json!(true))
    );
    let a = control(&sim, "POST", "/nodes/127.0.0.2/start", None).await;
    assert_eq!(state(&a), "running");
    let a = control(
        &sim,
        "POST",
        "/nodes/127.0.0.2/slow",
        Some(json!({"latency_ms": 5})),
    )
    .await;
    assert_eq!(a.json()["latency_ms"], 5);
    let a = control(
        &sim,
        "POST",
        "/nodes/127.0.0.2/fail",
        Some(json!({"fraction": 0.5, "status": 500})),
    )
    .await;
    assert_eq!(a.json()["fail"], json!({"fraction": 0.5, "status": 500}));
    let a = control(&sim, "POST", "/nodes/127.0.0.2/decommission", None).await;
    assert_eq!(
        (state(&a), a.json()["listed"].clone()),
        ("decommissioned".to_owned(), json!(false))
    );
    let a = control(
        &sim,
        "POST",
        "/nodes",
        Some(json!({"address": "127.0.0.4", "datacenter": "dc2", "rack": "rack9", "listed_not_ready": true})),
    )
    .await;
    assert_eq!(
        (a.status, state(&a)),
        (StatusCode::OK, "not_ready".to_owned())
    );
    assert_eq!(localnodes(&sim, 3, "").await, ["127.0.0.3", "127.0.0.4"]);

    dynamo(&sim, 1, "ListTables", json!({})).await;
    let c = control(&sim, "GET", "/counters", None).await.json();
    assert_eq!(c["nodes"]["127.0.0.1"]["by_operation"]["ListTables"], 1);
    assert_eq!(c["nodes"]["127.0.0.1"]["total"], 1);
    create_table(&sim).await;
    dynamo(
        &sim,
        1,
        "GetItem",
        json!({"TableName": "items", "Key": {"pk": {"S": "k"}}}),
    )
    .await;
    let log = control(&sim, "GET", "/keylog", None).await.json();
    assert_eq!(
        log[0],
        json!({"seq": 0, "node": "127.0.0.1", "operation": "GetItem", "table": "items", "key": {"S": "k"}, "replica": true})
    );
    assert_eq!(
        control(&sim, "GET", "/keylog?since=1", None).await.json(),
        json!([])
    );
    assert_eq!(
        control(&sim, "POST", "/reset", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        control(&sim, "GET", "/counters", None).await.json()["nodes"]["127.0.0.1"]["total"],
        0
    );

    // Errors: unknown node, unknown action, bad body, duplicate node.
    assert_eq!(
        control(&sim, "POST", "/nodes/127.0.0.99/stop", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        control(&sim, "POST", "/nodes/127.0.0.1/explode", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        control(
            &sim,
            "POST",
            "/nodes/127.0.0.1/fail",
            Some(json!({"fraction": 2}))
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        control(
            &sim,
            "POST",
            "/nodes",
            Some(json!({"address": "127.0.0.1", "datacenter": "dc1", "rack": "r"}))
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    sim.shutdown().await;
}

// ---- DynamoDB errors and SigV4 ----

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_errors_have_the_wire_shape_sdks_expect() {
    let sim = start(three_nodes()).await;
    let a = dynamo(
        &sim,
        1,
        "GetItem",
        json!({"TableName": "missing", "Key": {"pk": {"S": "k"}}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.json()["__type"],
        "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
    );
    assert!(a.json()["message"].is_string());
    let a = dynamo(&sim, 1, "Frobnicate", json!({})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json()["__type"]
        .as_str()
        .unwrap_or("")
        .ends_with("#UnknownOperationException"));
    let mut c = connect(sim.endpoint(ip(1)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let req = Request::post("/")
        .header("host", "x")
        .header("x-amz-target", "DynamoDB_20120810.ListTables")
        .body(Full::new(Bytes::from_static(b"not json")))
        .unwrap_or_else(|e| panic!("{e}"));
    let a = c.send(req).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(a.json()["__type"]
        .as_str()
        .unwrap_or("")
        .ends_with("#SerializationException"));
    sim.shutdown().await;
}

fn signed_request(
    host: &str,
    signed_host: &str,
    body: &str,
    creds: &Credentials,
) -> Request<Full<Bytes>> {
    let target = "DynamoDB_20120810.ListTables";
    let headers = alternator_sim::sigv4::sign(
        "POST",
        signed_host,
        "/",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", target),
        ],
        body.as_bytes(),
        creds,
        "us-east-1",
        SystemTime::now(),
    );
    let mut b = Request::post("/")
        .header("host", host)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::from(body.to_owned())))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv4_enforcement_rejects_a_rewritten_host() {
    let creds: Credentials = "AKIDSIM:sim-secret"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = start(SimConfig {
        enforce_auth: Some(creds.clone()),
        ..three_nodes()
    })
    .await;
    let addr = sim.endpoint(ip(1));
    let other = sim.endpoint(ip(2)).to_string();
    let mut c = connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
    let host = addr.to_string();

    let a = c
        .send(signed_request(&host, &host, "{}", &creds))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    // Signed for one node, Host rewritten to another (what a careless proxy would do).
    let a = c
        .send(signed_request(&host, &other, "{}", &creds))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.json()["__type"],
        "com.amazonaws.dynamodb.v20120810#InvalidSignatureException"
    );

    let wrong_key = Credentials {
        access_key_id: "NOPE".into(),
        ..creds.clone()
    };
    let a = c
        .send(signed_request(&host, &host, "{}", &wrong_key))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a.json()["__type"],
        "com.amazonaws.dynamodb.v20120810#UnrecognizedClientException"
    );

    let a = c
        .dynamo("ListTables", json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.json()["__type"],
        "com.amazonaws.dynamodb.v20120810#MissingAuthenticationTokenException"
    );

    // Scylla's health and /localnodes need no signature.
    assert_eq!(get(addr, "/").await.status, StatusCode::OK);
    assert_eq!(get(addr, "/localnodes").await.status, StatusCode::OK);
    sim.shutdown().await;
}
