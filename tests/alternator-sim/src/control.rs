//! The control API: JSON over HTTP on its own loopback port (see `docs/architecture.md` §3).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::cluster::Cluster;
use crate::{NodeSpec, SimError};

type Body = Full<Bytes>;

#[derive(Debug)]
pub(crate) struct ControlServer {
    addr: SocketAddr,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl ControlServer {
    pub async fn start(addr: SocketAddr, cluster: Arc<Cluster>) -> Result<Self, SimError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                address: addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| SimError::Bind {
            address: addr,
            source,
        })?;
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        let cluster = cluster.clone();
                        conns.spawn(async move {
                            let service = service_fn(move |req| {
                                let cluster = cluster.clone();
                                async move { Ok::<_, Infallible>(handle(req, cluster).await) }
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns.shutdown().await;
        });
        Ok(ControlServer {
            addr: local,
            stop: std::sync::Mutex::new(Some(stop)),
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn shutdown(&self) {
        self.abort();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    pub fn abort(&self) {
        if let Some(s) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.send(());
        }
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A control request that could not be carried out.
struct ControlError {
    status: StatusCode,
    message: String,
}

impl ControlError {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> Self {
        ControlError {
            status,
            message: message.to_string(),
        }
    }
}

impl From<SimError> for ControlError {
    fn from(e: SimError) -> Self {
        let status = match e {
            SimError::UnknownNode(_) | SimError::UnknownTable(_) => StatusCode::NOT_FOUND,
            SimError::DuplicateNode(_) | SimError::Conflict(_) => StatusCode::CONFLICT,
            SimError::InvalidArgument(_) | SimError::InvalidNode(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ControlError::new(status, e)
    }
}

#[derive(Deserialize)]
struct SlowBody {
    latency_ms: u64,
}

#[derive(Deserialize)]
struct FailBody {
    fraction: f64,
    #[serde(default = "default_fail_status")]
    status: u16,
}

fn default_fail_status() -> u16 {
    503
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    from: IpAddr,
    to: IpAddr,
    #[serde(default = "default_finish")]
    finish: bool,
}

fn default_finish() -> bool {
    true
}

/// `GET /settings` and the body of `POST /settings` (absent fields stay unchanged;
/// `"internal_page_rows": null` clears the forced page size).
fn settings(cluster: &Cluster) -> Value {
    json!({
        "forward_delay_us": cluster.forward_delay().as_micros() as u64,
        "internal_page_rows": cluster.internal_page_rows(),
    })
}

fn update_settings(cluster: &Cluster, body: &[u8]) -> Result<(), ControlError> {
    let v: Value = parse_body(body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| ControlError::new(StatusCode::BAD_REQUEST, "body must be a JSON object"))?;
    for key in obj.keys() {
        if key != "forward_delay_us" && key != "internal_page_rows" {
            return Err(ControlError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown setting {key:?}: expected forward_delay_us, internal_page_rows"),
            ));
        }
    }
    let delay = match obj.get("forward_delay_us") {
        None => None,
        Some(d) => Some(d.as_u64().ok_or_else(|| {
            ControlError::new(
                StatusCode::BAD_REQUEST,
                "forward_delay_us must be a whole number of microseconds",
            )
        })?),
    };
    let rows = match obj.get("internal_page_rows") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(r) => Some(Some(r.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            ControlError::new(
                StatusCode::BAD_REQUEST,
                "internal_page_rows must be a number >= 1, or null to clear it",
            )
        })? as usize)),
    };
    if let Some(rows) = rows {
        cluster.set_internal_page_rows(rows)?;
    }
    if let Some(us) = delay {
        cluster.set_forward_delay(Duration::from_micros(us));
    }
    Ok(())
}

fn parse_index(s: &str) -> Result<usize, ControlError> {
    s.parse().map_err(|_| {
        ControlError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid tablet index {s:?}"),
        )
    })
}

#[derive(Deserialize, Default)]
struct NotReadyBody {
    #[serde(default)]
    ready_after_ms: Option<u64>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ControlError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ControlError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

async fn handle(req: Request<Incoming>, cluster: Arc<Cluster>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, &json!({ "error": e.to_string() })),
    };
    match route(&method, &path, &query, &body, &cluster).await {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(e) => reply(e.status, &json!({ "error": e.message })),
    }
}

async fn route(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    cluster: &Arc<Cluster>,
) -> Result<Value, ControlError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["nodes"]) => {
            Ok(json!({ "port": cluster.port(), "nodes": cluster.statuses() }))
        }
        (&Method::POST, ["nodes"]) => {
            let spec: NodeSpec = parse_body(body)?;
            let address = spec.address;
            cluster.add_node(spec).await?;
            Ok(json!(cluster.status(address)?))
        }
        (&Method::GET, ["nodes", address]) => {
            let address = parse_address(address)?;
            Ok(json!(cluster.status(address)?))
        }
        (&Method::POST, ["nodes", address, action]) => {
            let address = parse_address(address)?;
            match *action {
                "stop" => cluster.stop_node(address).await,
                "start" => cluster.start_node(address).await,
                "hang" => cluster.hang_node(address).await,
                "slow" => {
                    let b: SlowBody = parse_body(body)?;
                    cluster.set_latency(address, Duration::from_millis(b.latency_ms))
                }
                "fail" => {
                    let b: FailBody = parse_body(body)?;
                    cluster.set_failure(address, b.fraction, b.status)
                }
                "not-ready" => {
                    let b: NotReadyBody = parse_body(body)?;
                    cluster
                        .set_listed_not_ready(address, b.ready_after_ms.map(Duration::from_millis))
                        .await
                }
                "decommission" => cluster.decommission(address),
                "remove" => cluster.remove_node(address).await,
                other => {
                    return Err(ControlError::new(
                        StatusCode::NOT_FOUND,
                        format!("unknown node action {other:?}"),
                    ))
                }
            }?;
            Ok(json!(cluster.status(address)?))
        }
        (&Method::GET, ["counters"]) => Ok(json!(cluster.counters())),
        (&Method::GET, ["keylog"]) => {
            let since = query
                .split('&')
                .find_map(|p| p.strip_prefix("since="))
                .and_then(|s| s.parse::<u64>().ok());
            Ok(json!(cluster.keylog.entries(since)))
        }
        (&Method::GET, ["tables", table, "ring"]) => Ok(json!(cluster.table_ring(table)?)),
        (&Method::POST, ["tables", table, "tablets", index, "move"]) => {
            let index = parse_index(index)?;
            let b: MoveBody = parse_body(body)?;
            Ok(json!(
                cluster.move_tablet(table, index, b.from, b.to, b.finish)?
            ))
        }
        (&Method::POST, ["tables", table, "tablets", index, "finish"]) => {
            let index = parse_index(index)?;
            Ok(json!(cluster.finish_migration(table, index)?))
        }
        (&Method::POST, ["tables", table, "split"]) => Ok(json!(cluster.split_tablets(table)?)),
        (&Method::GET, ["settings"]) => Ok(settings(cluster)),
        (&Method::POST, ["settings"]) => {
            update_settings(cluster, body)?;
            Ok(settings(cluster))
        }
        (&Method::POST, ["reset"]) => {
            cluster.reset();
            Ok(json!({}))
        }
        _ => Err(ControlError::new(
            StatusCode::NOT_FOUND,
            format!("no control endpoint {method} {path}"),
        )),
    }
}

fn parse_address(s: &str) -> Result<IpAddr, ControlError> {
    s.parse().map_err(|_| {
        ControlError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid node address {s:?}"),
        )
    })
}
