//! A scripted proxy for the engine's tests: [`MockHost`] (one worker VM's view of the proxy)
//! and [`MockStream`] (one HTTP stream), plus builders for snapshots and requests.
//!
//! Several worker VMs of one proxy are several `MockHost`s made with [`MockHost::sibling`]:
//! they share the proxy's shared data (with Envoy's CAS tokens), its metrics (Envoy shares a
//! metric between every worker that defines the same name), its log and its clock, and each
//! has its own HTTP calls. A `MockHost` is `Clone`, every clone sharing its state, so a test
//! keeps a handle while the engine owns a clone. Time only moves when a test moves it.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use alternator_engine::host::{Host, LogLevel, MetricKind, SharedError, Stream};
use alternator_engine::metrics::flat_name;
use alternator_engine::{Action, RequestFlow, Root};

/// Where every test clock starts (ms since the epoch): far from 0, so that "expired at 0"
/// and "never set" cannot be confused with a real time.
pub const START_MS: u64 = 1_763_735_000_000;

/// One metric as the proxy's stats system holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricEntry {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

/// A closure run once, just before the next write of a key is applied (to interleave another
/// worker's work between a read and the write that depends on it, as two worker threads of
/// Envoy can).
struct WriteHook {
    key: String,
    run: Box<dyn FnOnce()>,
}

impl fmt::Debug for WriteHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHook").field("key", &self.key).finish()
    }
}

/// What every worker VM of one proxy shares.
#[derive(Debug)]
struct ProxyState {
    /// key → (value, CAS token).
    shared: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Keys in the order they were written (successful writes only).
    writes: Vec<String>,
    write_hooks: Vec<WriteHook>,
    /// Metric id `i + 1` is `metrics[i]`.
    metrics: Vec<MetricEntry>,
    logs: Vec<(LogLevel, String)>,
    min_log_level: LogLevel,
    /// Workers of this proxy so far (the next sibling's index).
    workers: u64,
}

impl ProxyState {
    fn next_cas(&mut self) -> u32 {
        // As proxy-wasm-cpp-host: tokens start at 1 and skip 0 when they wrap.
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }
}

/// An HTTP call the engine dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or("")
    }
}

/// The answer to an HTTP call, delivered with [`MockHost::answer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Headers, `:status` included (absent: the call failed without a response).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// 200 with a body and, if given, an ETag.
    pub fn ok(etag: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        let mut headers = vec![(":status".to_string(), "200".to_string())];
        if let Some(etag) = etag {
            headers.push(("etag".to_string(), etag.to_string()));
        }
        Answer {
            headers,
            body: body.into(),
        }
    }

    /// Any status, no body.
    pub fn status(status: u16) -> Self {
        Answer {
            headers: vec![(":status".to_string(), status.to_string())],
            body: Vec::new(),
        }
    }

    /// What the host delivers when the call failed or timed out: no headers at all.
    pub fn no_response() -> Self {
        Answer::default()
    }
}

/// One worker VM's own state.
#[derive(Debug, Default)]
struct WorkerState {
    calls: Vec<Call>,
    next_token: u32,
    dispatch_error: Option<String>,
}

/// One worker VM's view of a scripted proxy.
#[derive(Debug, Clone)]
pub struct MockHost {
    proxy: Rc<RefCell<ProxyState>>,
    worker: Rc<RefCell<WorkerState>>,
    clock: Rc<Cell<u64>>,
    /// Which worker of the proxy this is (0 for [`MockHost::new`], then 1, 2, ...): the
    /// randomness a real host gives each worker, as far as tests need it.
    index: u64,
}

impl Default for MockHost {
    fn default() -> Self {
        MockHost::new()
    }
}

impl MockHost {
    /// The first worker VM of a new proxy, its clock at [`START_MS`].
    pub fn new() -> Self {
        MockHost {
            proxy: Rc::new(RefCell::new(ProxyState {
                shared: HashMap::new(),
                next_cas: 1,
                writes: Vec::new(),
                write_hooks: Vec::new(),
                metrics: Vec::new(),
                logs: Vec::new(),
                min_log_level: LogLevel::Trace,
                workers: 1,
            })),
            worker: Rc::new(RefCell::new(WorkerState::default())),
            clock: Rc::new(Cell::new(START_MS)),
            index: 0,
        }
    }

    /// This worker's seed for [`alternator_engine::Root::configure`]: distinct per worker
    /// (a distinct poll-lease owner), and below 2048 so round robin still starts at the
    /// snapshot's first node.
    pub fn seed(&self) -> u64 {
        self.index
    }

    /// Another worker VM of the same proxy: same shared data, metrics, log and clock; its
    /// own HTTP calls.
    pub fn sibling(&self) -> Self {
        let index = {
            let mut p = self.proxy.borrow_mut();
            p.workers += 1;
            p.workers - 1
        };
        MockHost {
            proxy: Rc::clone(&self.proxy),
            worker: Rc::new(RefCell::new(WorkerState::default())),
            clock: Rc::clone(&self.clock),
            index,
        }
    }

    /// [`MockHost::sibling`] with a clock of its own, starting where this one is.
    pub fn sibling_with_own_clock(&self) -> Self {
        MockHost {
            clock: Rc::new(Cell::new(self.clock.get())),
            ..self.sibling()
        }
    }

    // --- clock ---

    pub fn now(&self) -> u64 {
        self.clock.get()
    }

    pub fn set_now(&self, ms: u64) {
        self.clock.set(ms);
    }

    pub fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
    }

    // --- shared data ---

    pub fn shared(&self, key: &str) -> Option<Vec<u8>> {
        self.proxy.borrow().shared.get(key).map(|(v, _)| v.clone())
    }

    pub fn shared_str(&self, key: &str) -> Option<String> {
        self.shared(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Writes a key unconditionally, as another worker VM would.
    pub fn put_shared(&self, key: &str, value: &[u8]) {
        let mut p = self.proxy.borrow_mut();
        let cas = p.next_cas();
        p.shared.insert(key.to_string(), (value.to_vec(), cas));
        p.writes.push(key.to_string());
    }

    /// How many successful writes `key` received.
    pub fn writes_to(&self, key: &str) -> usize {
        self.proxy
            .borrow()
            .writes
            .iter()
            .filter(|k| *k == key)
            .count()
    }

    /// Runs `run` once, inside the next write of `key`, before the write is applied.
    pub fn before_next_shared_set(&self, key: &str, run: impl FnOnce() + 'static) {
        self.proxy.borrow_mut().write_hooks.push(WriteHook {
            key: key.to_string(),
            run: Box::new(run),
        });
    }

    // --- metrics ---

    pub fn metric(&self, name: &str) -> Option<i64> {
        self.proxy
            .borrow()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    pub fn metric_kind(&self, name: &str) -> Option<MetricKind> {
        self.proxy
            .borrow()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.kind)
    }

    /// Every defined metric, by name.
    pub fn metrics(&self) -> BTreeMap<String, (MetricKind, i64)> {
        self.proxy
            .borrow()
            .metrics
            .iter()
            .map(|m| (m.name.clone(), (m.kind, m.value)))
            .collect()
    }

    // --- logs ---

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.proxy.borrow().logs.clone()
    }

    /// Lines at `level` containing `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> usize {
        self.proxy
            .borrow()
            .logs
            .iter()
            .filter(|(l, m)| *l == level && m.contains(needle))
            .count()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        self.proxy.borrow_mut().min_log_level = level;
    }

    // --- HTTP calls ---

    /// Calls this worker dispatched, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.worker.borrow().calls.clone()
    }

    /// Calls dispatched since the last take.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.worker.borrow_mut().calls)
    }

    /// The one call dispatched since the last take (panics otherwise).
    pub fn take_one_call(&self) -> Call {
        let mut calls = self.take_calls();
        assert_eq!(calls.len(), 1, "expected exactly one call, got {calls:#?}");
        calls.remove(0)
    }

    /// From now on `dispatch_http_call` fails with `error` (`None`: succeeds again).
    pub fn fail_dispatch(&self, error: Option<&str>) {
        self.worker.borrow_mut().dispatch_error = error.map(str::to_string);
    }

    /// Delivers `answer` to call `token` of `root`, as the proxy would.
    pub fn answer(&self, root: &mut Root<MockHost>, token: u32, answer: Answer) {
        root.on_agent_answer(token, &answer.headers, &answer.body);
    }
}

impl Host for MockHost {
    type CallId = u32;

    fn now_ms(&self) -> u64 {
        self.clock.get()
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.proxy
            .borrow_mut()
            .logs
            .push((level, message.to_string()));
    }

    fn log_enabled(&self, level: LogLevel) -> bool {
        level >= self.proxy.borrow().min_log_level
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.proxy.borrow().shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        let hook = {
            let mut p = self.proxy.borrow_mut();
            p.write_hooks
                .iter()
                .position(|h| h.key == key)
                .map(|i| p.write_hooks.remove(i))
        };
        if let Some(hook) = hook {
            (hook.run)();
        }
        let mut p = self.proxy.borrow_mut();
        let token = cas.unwrap_or(0);
        if let Some((_, stored)) = p.shared.get(key) {
            // As proxy-wasm's shared data: a token of 0 skips the check.
            if token != 0 && token != *stored {
                return Err(SharedError::CasMismatch);
            }
        }
        let next = p.next_cas();
        p.shared.insert(key.to_string(), (value.to_vec(), next));
        p.writes.push(key.to_string());
        Ok(())
    }

    /// Metrics are held under their flat name, as the proxy-wasm build defines them.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let name = &flat_name(name, labels);
        let mut p = self.proxy.borrow_mut();
        if let Some(i) = p.metrics.iter().position(|m| m.name == *name) {
            return u32::try_from(i + 1).ok();
        }
        p.metrics.push(MetricEntry {
            name: name.to_string(),
            kind,
            value: 0,
        });
        u32::try_from(p.metrics.len()).ok()
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let mut p = self.proxy.borrow_mut();
        let index = id as usize - 1;
        assert_eq!(
            p.metrics[index].kind,
            MetricKind::Counter,
            "{} incremented",
            p.metrics[index].name
        );
        p.metrics[index].value += by;
    }

    fn record_metric(&self, id: u32, value: u64) {
        let mut p = self.proxy.borrow_mut();
        let index = id as usize - 1;
        assert_eq!(
            p.metrics[index].kind,
            MetricKind::Gauge,
            "{} recorded",
            p.metrics[index].name
        );
        p.metrics[index].value = i64::try_from(value).unwrap();
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, String> {
        let mut w = self.worker.borrow_mut();
        if let Some(error) = &w.dispatch_error {
            return Err(error.clone());
        }
        w.next_token += 1;
        let token = w.next_token;
        w.calls.push(Call {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            timeout,
        });
        Ok(token)
    }
}

/// A local reply the engine sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP stream: what the test sets up, and what the engine did to it.
#[derive(Debug, Default)]
pub struct MockStream {
    pub request_headers: BTreeMap<String, Vec<u8>>,
    pub request_body: Vec<u8>,
    pub response_headers: BTreeMap<String, Vec<u8>>,
    pub response_body: Vec<u8>,
    pub upstream_address: Option<String>,
    pub response_flags: Option<u64>,
    pub response_code: Option<u64>,
    pub attempts: Option<u64>,
    /// `request.duration` in milliseconds when the stream ended.
    pub duration_ms: Option<u64>,
    pub local_reply: Option<LocalReply>,
    /// Request headers the engine removed, in order.
    pub removed_headers: Vec<String>,
    /// Every read the engine made (`request_header:<name>`, `request_body`,
    /// `response_header:<name>`, `response_body`, `upstream_address`, `response_flags`,
    /// `response_code`, `upstream_request_attempts`, `request_duration`), in order.
    reads: RefCell<Vec<String>>,
}

impl MockStream {
    /// The upstream's answer as the response callbacks will see it.
    pub fn answer(&mut self, status: &str, body: &str) {
        self.response_headers
            .insert(":status".into(), status.as_bytes().to_vec());
        self.response_body = body.as_bytes().to_vec();
    }

    /// A request with these headers (names lower case, as Envoy stores them).
    pub fn request(headers: &[(&str, &str)]) -> Self {
        MockStream {
            request_headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..MockStream::default()
        }
    }

    /// A DynamoDB request for `operation` (`PutItem`, ...) with `content-length` of `body`;
    /// the body is buffered for the engine to read.
    pub fn dynamodb(operation: &str, body: &str) -> Self {
        let target = format!("DynamoDB_20120810.{operation}");
        let len = body.len().to_string();
        let mut stream = MockStream::request(&[
            (":method", "POST"),
            (":path", "/"),
            (":authority", "dynamodb.local"),
            ("x-amz-target", target.as_str()),
            ("content-type", "application/x-amz-json-1.0"),
            ("content-length", len.as_str()),
        ]);
        stream.request_body = body.as_bytes().to_vec();
        stream
    }

    pub fn request_header_str(&self, name: &str) -> Option<String> {
        self.request_headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn reads(&self) -> Vec<String> {
        self.reads.borrow().clone()
    }

    /// Whether the engine read this (see [`MockStream::reads`]).
    pub fn was_read(&self, what: &str) -> bool {
        self.reads.borrow().iter().any(|r| r == what)
    }

    /// Sets what Envoy reports when the stream ends.
    pub fn served(&mut self, upstream: &str, code: u64, flags: u64, attempts: Option<u64>) {
        self.upstream_address = Some(upstream.to_string());
        self.response_code = Some(code);
        self.response_flags = Some(flags);
        self.attempts = attempts;
    }

    fn read(&self, what: String) {
        self.reads.borrow_mut().push(what);
    }
}

impl Stream for MockStream {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.read(format!("request_header:{name}"));
        self.request_headers.get(name).cloned()
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.request_headers
            .insert(name.to_string(), value.to_vec());
        true
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        self.removed_headers.push(name.to_string());
        self.request_headers.remove(name);
        true
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.read("request_body".to_string());
        let body = &self.request_body;
        (!body.is_empty()).then(|| body[..size.min(body.len())].to_vec())
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.read(format!("response_header:{name}"));
        self.response_headers.get(name).cloned()
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.read("response_body".to_string());
        let body = &self.response_body;
        (!body.is_empty()).then(|| body[..size.min(body.len())].to_vec())
    }

    fn upstream_address(&self) -> Option<Vec<u8>> {
        self.read("upstream_address".to_string());
        self.upstream_address
            .as_ref()
            .map(|a| a.as_bytes().to_vec())
    }

    fn response_flags(&self) -> Option<u64> {
        self.read("response_flags".to_string());
        self.response_flags
    }

    fn response_code(&self) -> Option<u64> {
        self.read("response_code".to_string());
        self.response_code
    }

    fn upstream_request_attempts(&self) -> Option<u64> {
        self.read("upstream_request_attempts".to_string());
        self.attempts
    }

    fn request_duration_ms(&self) -> Option<u64> {
        self.read("request_duration".to_string());
        self.duration_ms
    }

    fn send_local_reply(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
        assert!(self.local_reply.is_none(), "a second local reply");
        self.local_reply = Some(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
        true
    }
}

// --- snapshots ---

/// One node of a test snapshot.
#[derive(Debug, Clone, Copy)]
pub struct TestNode {
    pub address: &'static str,
    pub datacenter: &'static str,
    pub rack: &'static str,
    pub health: &'static str,
}

pub const fn node(address: &'static str, health: &'static str) -> TestNode {
    TestNode {
        address,
        datacenter: "dc1",
        rack: "r1",
        health,
    }
}

/// A format-1 snapshot document (port 8000, http), as the agent serves it.
pub fn snapshot_json(version: u64, nodes: &[TestNode]) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                r#"{{"address":"{}","datacenter":"{}","rack":"{}","health":"{}"}}"#,
                n.address, n.datacenter, n.rack, n.health
            )
        })
        .collect();
    format!(
        r#"{{"format":1,"version":{version},"generated_at_ms":{START_MS},"scheme":"http","port":8000,"nodes":[{}]}}"#,
        nodes.join(",")
    )
}

/// Three active nodes `127.0.0.1..3` in dc1/r1.
pub fn three_nodes(version: u64) -> String {
    snapshot_json(
        version,
        &[
            node("127.0.0.1", "active"),
            node("127.0.0.2", "active"),
            node("127.0.0.3", "active"),
        ],
    )
}

pub const A: &str = "127.0.0.1:8000";
pub const B: &str = "127.0.0.2:8000";
pub const C: &str = "127.0.0.3:8000";

/// The ETag tests give snapshot `version`.
pub fn etag(version: u64) -> String {
    format!("\"v{version}\"")
}

// --- roots and requests ---

/// Two workers of one proxy (`a` is the first), both configured with `config`.
pub fn two_workers(config: &str) -> (MockHost, Root<MockHost>, MockHost, Root<MockHost>) {
    let a_host = MockHost::new();
    let b_host = a_host.sibling();
    let a = configured(&a_host, config);
    let b = configured(&b_host, config);
    (a_host, a, b_host, b)
}

/// A configured root, seeded by its worker's [`MockHost::seed`] (round robin starts at the
/// snapshot's first node).
pub fn configured(host: &MockHost, config: &str) -> Root<MockHost> {
    configured_seeded(host, config, host.seed())
}

pub fn configured_seeded(host: &MockHost, config: &str, seed: u64) -> Root<MockHost> {
    let mut root = Root::new(host.clone());
    root.configure(config.as_bytes(), seed)
        .unwrap_or_else(|e| panic!("test configuration refused: {e}"));
    root
}

/// Ticks `root` (which must be able to hold the lease) and answers its poll with `snapshot`
/// (ETag `"v<version>"`).
pub fn poll_snapshot(host: &MockHost, root: &mut Root<MockHost>, snapshot: &str) {
    root.on_tick();
    let call = host.take_one_call();
    let version = alternator_routing::snapshot::NodeSnapshot::from_json(snapshot.as_bytes())
        .map(|s| s.version())
        .unwrap_or(0);
    host.answer(root, call.token, Answer::ok(Some(&etag(version)), snapshot));
}

/// A new proxy with one worker configured by `config` that holds `snapshot`.
pub fn worker_with(config: &str, snapshot: &str) -> (MockHost, Root<MockHost>) {
    let host = MockHost::new();
    let mut root = configured(&host, config);
    poll_snapshot(&host, &mut root, snapshot);
    (host, root)
}

/// Runs the request callbacks of `stream` as Envoy would when the whole body is buffered
/// (headers, then one body callback with end of stream if the headers paused), and returns
/// the flow (for the response side) and the last action.
pub fn send(root: &Root<MockHost>, stream: &mut MockStream) -> (RequestFlow<MockHost>, Action) {
    let mut flow = root.new_request().expect("a configured root");
    let end_of_stream = stream.request_body.is_empty();
    let mut action = flow.on_request_headers(stream, end_of_stream);
    if action == Action::Pause && stream.local_reply.is_none() {
        let size = stream.request_body.len();
        action = flow.on_request_body(stream, size, true);
    }
    (flow, action)
}

/// The routing header a request got (`None`: none written).
pub fn routed(root: &Root<MockHost>, stream: &mut MockStream) -> Option<String> {
    let (_, action) = send(root, stream);
    assert_eq!(action, Action::Continue);
    stream.request_header_str("x-alternator-endpoints")
}

/// An ordinary request (GetItem) and the routing header it got.
pub fn route_one(root: &Root<MockHost>) -> Option<String> {
    routed(
        root,
        &mut MockStream::dynamodb("GetItem", r#"{"TableName":"t","Key":{"pk":{"S":"k"}}}"#),
    )
}

/// A whole ordinary request: routed, then answered by the first candidate, or by
/// `upstream` when given, with `code`, `flags` and `attempts` as Envoy reports them.
/// Returns the routing header.
pub fn round_trip(
    root: &Root<MockHost>,
    upstream: Option<&str>,
    code: u64,
    flags: u64,
    attempts: Option<u64>,
) -> String {
    let mut stream = MockStream::dynamodb("GetItem", r#"{"TableName":"t","Key":{"pk":{"S":"k"}}}"#);
    let (mut flow, action) = send(root, &mut stream);
    assert_eq!(action, Action::Continue);
    let header = stream
        .request_header_str("x-alternator-endpoints")
        .expect("a routing header");
    let first = header.split(',').next().unwrap_or("").to_string();
    stream.served(upstream.unwrap_or(&first), code, flags, attempts);
    flow.on_stream_end(&stream);
    header
}

/// The shared passive-health table as `ip → (state, failures)`.
pub fn passive_table(host: &MockHost) -> BTreeMap<String, (String, u64)> {
    let Some(bytes) = host.shared(alternator_engine::shared::PASSIVE_HEALTH) else {
        return BTreeMap::new();
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(ip, t)| {
            (
                ip.clone(),
                (
                    t["health"]["state"].as_str().unwrap().to_string(),
                    t["health"]["failures"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The routing core's own affinity plan for the `PutItem` `body` over `snapshot` (cluster
/// scope, 3 candidates) with `schema` (table, HASH-key name), as the routing header writes it.
pub fn core_affinity_header(snapshot: &str, schema: (&str, &str), body: &str) -> String {
    use alternator_routing::affinity::{self, AffinityScratch};
    use alternator_routing::dynamodb::{AffinityMode, Operation};
    use alternator_routing::{NodeSnapshot, RoutingTable, ScopePolicy};

    let table = RoutingTable::new(
        NodeSnapshot::from_json(snapshot.as_bytes()).unwrap(),
        ScopePolicy::default(),
    );
    let schemas = BTreeMap::from([(schema.0.to_string(), schema.1.to_string())]);
    let target = affinity::request_target(
        AffinityMode::AnyWrite,
        Operation::PutItem,
        body.as_bytes(),
        &schemas,
    )
    .unwrap();
    let mut plan = Vec::new();
    affinity::plan(
        &table,
        &target,
        table.published_health(),
        3,
        &mut plan,
        &mut AffinityScratch::default(),
    );
    let mut header = String::new();
    table.push_override_hosts(&plan, &mut header);
    header
}
