//! Helpers shared by the agent's integration tests: start the agent on a free port, talk to its
//! API over plain HTTP/1.1, wait for conditions, and a tiny scripted Alternator stand-in for
//! answers the sim never gives (HTML, truncated JSON, host-id UUIDs). Ring discovery tests
//! also share their ring config, published-ring checks, log capture and a client toward
//! alternator-sim from here.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alternator_discovery_agent::config::{RingConfig, RingTables};
use alternator_discovery_agent::dns::DnsSockets;
use alternator_discovery_agent::ring_discovery::client::Client;
use alternator_discovery_agent::sigv4::{Credentials, Secret, Signer};
use alternator_discovery_agent::transport::{HttpTransport, Transport};
use alternator_discovery_agent::{Config, Sockets, ValidatedConfig};
use alternator_routing::endpoint::Scheme;
use alternator_routing::snapshot::NodeSnapshot;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running agent on 127.0.0.1:<free port>.
pub struct AgentUnderTest {
    pub addr: SocketAddr,
    /// The DNS address (UDP and TCP), when started with DNS.
    pub dns: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl AgentUnderTest {
    /// Starts `run(config, sockets, transport, shutdown)` with the real HTTP transport.
    pub async fn start(config: Config) -> Self {
        let config = config.validate().unwrap();
        let transport = HttpTransport::for_config(&config).unwrap();
        Self::launch(config, None, transport).await
    }

    /// Starts the agent with a custom transport.
    pub async fn start_with<T: Transport>(config: Config, transport: T) -> Self {
        Self::launch(config.validate().unwrap(), None, transport).await
    }

    /// Starts the agent with DNS on 127.0.0.1:<free port>; the settings come from `config.dns`
    /// (defaults when `None`).
    pub async fn start_with_dns(config: Config) -> Self {
        let config = config.validate().unwrap();
        let transport = HttpTransport::for_config(&config).unwrap();
        let sockets = DnsSockets::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self::launch(config, Some(sockets), transport).await
    }

    async fn launch<T: Transport>(
        config: ValidatedConfig,
        dns: Option<DnsSockets>,
        transport: T,
    ) -> Self {
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = api.local_addr().unwrap();
        let dns_addr = dns.as_ref().map(|sockets| sockets.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(alternator_discovery_agent::run(
            config,
            Sockets { api, dns },
            transport,
            async {
                let _ = stopped.await;
            },
        ));
        AgentUnderTest {
            addr,
            dns: dns_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn get(&self, path: &str) -> HttpReply {
        http(self.addr, "GET", path, &[], "").await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> HttpReply {
        http(self.addr, "GET", path, headers, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> HttpReply {
        http(
            self.addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// The published snapshot, parsed.
    pub async fn snapshot(&self) -> Option<serde_json::Value> {
        let reply = self.get("/v1/nodes").await;
        (reply.status == 200).then(|| serde_json::from_str(&reply.body).unwrap())
    }

    /// `{address: (health, datacenter, rack)}` of the published snapshot.
    pub async fn nodes(&self) -> HashMap<String, (String, String, String)> {
        let Some(snapshot) = self.snapshot().await else {
            return HashMap::new();
        };
        snapshot["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["address"].as_str().unwrap().to_owned(),
                    (
                        n["health"].as_str().unwrap().to_owned(),
                        n["datacenter"].as_str().unwrap().to_owned(),
                        n["rack"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect()
    }

    /// One sample of `/metrics` by exact series text (`name{labels}`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").await.body;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().unwrap())
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for AgentUnderTest {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (one request per connection) so the tests see exactly what any
/// client would.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut reply = HttpReply {
        status,
        headers,
        body: body.to_owned(),
    };
    if reply
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(&reply.body);
    }
    reply
}

/// Decodes a complete chunked body (Envoy's admin API streams its answers).
fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        raw = &rest[size + 2..];
    }
    out
}

/// Polls `check` every 20 ms until it returns true or `within` passes; panics with `what`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config suited to tests: fast cadence and probes, short timeouts.
pub fn fast_config(seeds: &[IpAddr], port: u16) -> Config {
    let mut config = Config::with_seeds(seeds.iter().map(IpAddr::to_string));
    config.port = port;
    config.active_interval = Duration::from_millis(100);
    config.idle_interval = Duration::from_millis(100);
    config.max_backoff = Duration::from_millis(400);
    config.request_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(300);
    config.probe_period = Duration::from_millis(200);
    config.probe_timeout = Duration::from_millis(500);
    config
}

/// Scripted answers of one fake Alternator node: path-and-query → (status, body).
pub type Script = Arc<Mutex<HashMap<String, (u16, String)>>>;

/// Fake Alternator nodes on 127.0.0.x sharing one port, answering from scripts.
pub struct FakeCluster {
    pub port: u16,
    pub scripts: HashMap<IpAddr, Script>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeCluster {
    /// Binds every address on one common free port (retrying if another process holds it).
    pub async fn start(addresses: &[IpAddr]) -> Self {
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
            let mut scripts = HashMap::new();
            let mut tasks = Vec::new();
            for (address, listener) in addresses.iter().zip(listeners) {
                let script: Script = Arc::default();
                scripts.insert(*address, script.clone());
                tasks.push(tokio::spawn(serve_script(listener, script)));
            }
            return FakeCluster {
                port,
                scripts,
                tasks,
            };
        }
        panic!("no common free port for the fake cluster");
    }

    pub fn answer(&self, node: IpAddr, path: &str, status: u16, body: &str) {
        self.scripts[&node]
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.to_owned()));
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_script(listener: TcpListener, script: Script) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let script = script.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let key = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let (status, body) = script
                    .lock()
                    .unwrap()
                    .get(&key)
                    .cloned()
                    .unwrap_or((404, "not scripted".to_owned()));
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `127.0.<net>.<last>`: each test uses its own `net` so tests running in parallel never
/// compete for the same address and port.
pub fn ip(net: u8, last: u8) -> IpAddr {
    IpAddr::from([127, 0, net, last])
}

/// [`fast_config`] with ring discovery of `tables` on, refreshing every 150 ms, each ring
/// request under `request_timeout`.
pub fn fast_ring_config(
    seed: IpAddr,
    port: u16,
    tables: RingTables,
    request_timeout: Duration,
) -> Config {
    let mut config = fast_config(&[seed], port);
    let mut ring = RingConfig::new(tables);
    ring.refresh_active = Duration::from_millis(150);
    ring.refresh_idle = Duration::from_millis(150);
    ring.request_timeout = request_timeout;
    config.ring_discovery = Some(ring);
    config
}

/// One sample of the agent's `/metrics`, 0 when the series is absent.
pub async fn metric(agent: &AgentUnderTest, series: &str) -> f64 {
    agent.metric(series).await.unwrap_or(0.0)
}

/// How many ring refresh rounds ended with `outcome` (`ok`, `refused` or `error`).
pub async fn ring_refreshes(agent: &AgentUnderTest, outcome: &str) -> f64 {
    metric(
        agent,
        &format!("alternator_agent_ring_refreshes_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

/// Waits until the agent publishes `nodes` nodes, all active, and has counted at least three
/// refused ring rounds: the node list goes on while ring reads are refused.
pub async fn wait_for_refused_ring_rounds(agent: &AgentUnderTest, nodes: usize, within: Duration) {
    eventually(
        within,
        &format!("{nodes} active nodes and several refused ring rounds"),
        || async {
            let published = agent.nodes().await;
            published.len() == nodes
                && published.values().all(|(h, _, _)| h == "active")
                && ring_refreshes(agent, "refused").await >= 3.0
        },
    )
    .await;
}

/// The snapshot the agent publishes on `/v1/nodes`, parsed by the filters' own model.
pub async fn published(agent: &AgentUnderTest) -> Option<NodeSnapshot> {
    let reply = agent.get("/v1/nodes").await;
    (reply.status == 200).then(|| NodeSnapshot::from_json(reply.body.as_bytes()).unwrap())
}

/// The published ring of `table` as `(end token, replica addresses)` per range, in the
/// snapshot's order; `C` keeps the replicas in placement order (`Vec`) or as a set.
pub fn published_owners<C: FromIterator<IpAddr>>(
    snapshot: &NodeSnapshot,
    table: &str,
) -> Option<Vec<(i64, C)>> {
    let ring = snapshot.ring()?.table(table)?;
    Some(
        ring.ends()
            .iter()
            .enumerate()
            .map(|(i, end)| {
                (
                    *end,
                    ring.replicas(i)
                        .map(|n| snapshot.nodes()[n].address)
                        .collect(),
                )
            })
            .collect(),
    )
}

/// Waits until the published ring of `table` equals `want()`, which is asked again on every
/// poll (the cluster may still be changing); returns the snapshot that matched.
pub async fn wait_for_ring<C: FromIterator<IpAddr> + PartialEq>(
    agent: &AgentUnderTest,
    table: &str,
    within: Duration,
    want: impl Fn() -> Vec<(i64, C)>,
) -> NodeSnapshot {
    let check = || async {
        let want = want();
        let snapshot = published(agent).await?;
        (published_owners(&snapshot, table).as_ref() == Some(&want)).then_some(snapshot)
    };
    eventually(
        within,
        &format!("the published ring of {table} matches the cluster"),
        || async { check().await.is_some() },
    )
    .await;
    check().await.unwrap()
}

/// Log lines written while a [`capture_logs`] guard lives on this thread (the tests' runtime
/// is single-threaded, so the agent's tasks log here too).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures this thread's log lines up to `level`, without colours, until the guard drops.
pub fn capture_logs(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// A SigV4 signer for alternator-sim's `--enforce-auth AKIDSIM:<secret>`.
pub fn sim_signer(secret: &str) -> Signer {
    Signer {
        credentials: Credentials {
            access_key_id: "AKIDSIM".into(),
            secret_access_key: Secret::new(secret),
        },
        region: "us-east-1".into(),
        service: "dynamodb".into(),
    }
}

/// The agent's own DynamoDB client toward an in-process alternator-sim, over plain HTTP: owns
/// the transport and hands out clients that sign as asked.
pub struct SimDynamo {
    transport: HttpTransport,
    port: u16,
}

impl SimDynamo {
    pub fn new(sim: &alternator_sim::Sim) -> Self {
        SimDynamo {
            transport: HttpTransport::new(Scheme::Http, sim.port(), None, Duration::from_secs(1))
                .unwrap(),
            port: sim.port(),
        }
    }

    /// A client signing with `signer` (unsigned for `None`); each request under 5 s.
    pub fn client<'a>(&'a self, signer: Option<&'a Signer>) -> Client<'a, HttpTransport> {
        Client {
            transport: &self.transport,
            port: self.port,
            signer,
            timeout: Duration::from_secs(5),
        }
    }
}
