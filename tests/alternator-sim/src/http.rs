//! What one node answers over HTTP/1.1: Scylla's `GET /localnodes` and `GET /` health check,
//! and the DynamoDB JSON protocol on `POST /` (with `--backend`: every other request, relayed).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, SERVER,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::backend::{Backend, Relayed};
use crate::body::{self, BodyError, REQUEST_CONTENT_LENGTH_LIMIT};
use crate::cluster::{Cluster, Faults, Node};
use crate::dynamo::{self, DynamoError, ErrorKind, Operation};

pub(crate) type Body = Full<Bytes>;

const AMZ_JSON: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.0");
/// The `Server` header Alternator's HTTP server (Seastar's) sends with every answer.
const SEASTAR: HeaderValue = HeaderValue::from_static("Seastar httpd");

/// The byte stream of one node connection: plain TCP, or TLS over TCP.
pub(crate) trait NodeStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
    /// The TCP connection underneath.
    fn tcp(&self) -> &TcpStream;
}

impl NodeStream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl NodeStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Serve one accepted connection, over TLS when the node has a certificate, until the client
/// closes it or the node's listener stops (`kill`), in which case the connection is reset like
/// a dying process's would be. A client that refuses the node's certificate ends the handshake:
/// nothing is served, nothing counted.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    cluster: Arc<Cluster>,
    node: Arc<Node>,
    mut kill: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(config) = tls else {
        return serve_http(stream, cluster, node, kill).await;
    };
    let acceptor = TlsAcceptor::from(config);
    let address = node.spec.address;
    let accepted = tokio::select! {
        accepted = acceptor.accept(stream) => accepted,
        _ = kill.wait_for(|k| *k) => return,
    };
    match accepted {
        Ok(stream) => serve_http(stream, cluster, node, kill).await,
        Err(e) => tracing::debug!(%address, error = %e, "TLS handshake failed"),
    }
}

async fn serve_http<S: NodeStream + 'static>(
    stream: S,
    cluster: Arc<Cluster>,
    node: Arc<Node>,
    mut kill: watch::Receiver<bool>,
) {
    let relays = cluster.backend.is_some();
    let service = service_fn(move |req| {
        let cluster = cluster.clone();
        let node = node.clone();
        async move {
            let mut response = handle(req, &cluster, &node).await;
            // A backend's answers are returned as they came; the sim's own carry Seastar's name
            // (and, where hyper adds no date to every answer, their date).
            if response.extensions().get::<Relayed>().is_none() {
                let headers = response.headers_mut();
                headers.entry(SERVER).or_insert(SEASTAR);
                if relays {
                    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
                    if let Ok(now) = HeaderValue::from_str(&now) {
                        headers.entry(DATE).or_insert(now);
                    }
                }
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut conn = http1::Builder::new()
        .keep_alive(true)
        .auto_date_header(!relays)
        .preserve_header_case(relays)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = &mut conn => {}
        _ = kill.wait_for(|k| *k) => {
            let stream = conn.into_parts().io.into_inner();
            let _ = stream.tcp().set_zero_linger();
            drop(stream);
        }
    }
}

async fn handle(req: Request<Incoming>, cluster: &Cluster, node: &Node) -> Response<Body> {
    let mut faults = node.faults();
    if faults.hung {
        node.wait_unhung().await;
        faults = node.faults();
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/") => dynamodb(req, cluster, node, faults).await,
        (&Method::GET, "/localnodes") => {
            node.counters.count_localnodes();
            localnodes(&req, cluster, node)
        }
        (&Method::GET, "/") => {
            node.counters.count_health();
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            text(StatusCode::OK, format!("healthy: {host}"))
        }
        // With a backend, whatever the node does not serve itself is the backend's to answer.
        _ if cluster.backend.is_some() => dynamodb(req, cluster, node, faults).await,
        _ => text(StatusCode::NOT_FOUND, "not found".to_owned()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Scylla's `/localnodes`: live, normal nodes of `?dc=` (default: this node's datacenter),
/// filtered by `?rack=`; unknown datacenter or rack gives `[]`.
fn localnodes(req: &Request<Incoming>, cluster: &Cluster, node: &Node) -> Response<Body> {
    let mut dc = None;
    let mut rack = None;
    for pair in req.uri().query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "dc" => dc = Some(crate::sigv4::percent_decode(v, true)),
            "rack" => rack = Some(crate::sigv4::percent_decode(v, true)),
            _ => {}
        }
    }
    let dc = dc.unwrap_or_else(|| node.spec.datacenter.clone());
    let list: Vec<String> = cluster
        .localnodes(&dc, rack.as_deref())
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&list).unwrap_or_default(),
    )));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn dynamo_response(cluster: &Cluster, status: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, AMZ_JSON);
    h.insert(
        "x-amzn-requestid",
        HeaderValue::from(cluster.next_request_id()),
    );
    r
}

fn error_response(cluster: &Cluster, e: &DynamoError) -> Response<Body> {
    dynamo_response(cluster, e.status(), e.to_body())
}

fn injected_failure(status: u16) -> DynamoError {
    let kind = match status {
        503 => ErrorKind::ServiceUnavailable,
        _ => ErrorKind::InternalServerError,
    };
    DynamoError::new(kind, format!("alternator-sim injected failure ({status})"))
}

/// A DynamoDB request, in Alternator's order: body (size limit), signature over the body as
/// sent, decompression, operation, JSON. With a backend, everything after the signature is
/// the backend's business; the sim only looks.
async fn dynamodb(
    req: Request<Incoming>,
    cluster: &Cluster,
    node: &Node,
    faults: Faults,
) -> Response<Body> {
    let op = req
        .headers()
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .map_or(Operation::Unknown, Operation::from_target);
    node.counters.count_operation(op);
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let limit = cluster
        .backend
        .is_none()
        .then_some(REQUEST_CONTENT_LENGTH_LIMIT);
    let raw = match body::read(body, declared, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { .. }) => {
            // Scylla leaves the rest of such a body unread and so cannot reuse the connection.
            let mut r = error_response(cluster, &body::too_large());
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Err(BodyError::Unreadable) => {
            return error_response(
                cluster,
                &DynamoError::new(ErrorKind::Serialization, "could not read the request body"),
            )
        }
    };
    if let Some(fail) = faults.fail {
        if rand::thread_rng().gen_bool(fail.fraction.clamp(0.0, 1.0)) {
            node.counters.count_injected_failure();
            let e = injected_failure(fail.status);
            return dynamo_response(cluster, fail.status, e.to_body());
        }
    }
    if let Some(creds) = &cluster.auth {
        // Over the body as sent: a compressed body is signed compressed.
        if let Err(e) = crate::sigv4::verify(&parts, &raw, creds, std::time::SystemTime::now()) {
            return error_response(cluster, &e);
        }
    }
    if let Some(backend) = &cluster.backend {
        return relay(backend, cluster, node, op, parts, raw).await;
    }
    let decoded = body::decode(
        parts.headers.get(CONTENT_ENCODING),
        raw,
        REQUEST_CONTENT_LENGTH_LIMIT,
    );
    let body = match decoded {
        Ok(b) => b,
        Err(e) => return error_response(cluster, &e),
    };
    if op == Operation::Unknown {
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .unwrap_or("");
        return error_response(
            cluster,
            &DynamoError::new(
                ErrorKind::UnknownOperation,
                format!("Unknown operation: X-Amz-Target {target:?}"),
            ),
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error_response(
                cluster,
                &DynamoError::new(
                    ErrorKind::Serialization,
                    "Start of structure or map found where not expected",
                ),
            )
        }
    };
    if let Some(answer) = internal_table(cluster, node, op, &request) {
        return answer;
    }
    let table_name = request.get("TableName").and_then(Value::as_str);
    let mut replica = None;
    if op.is_data() {
        let keys = dynamo::request_keys(op, &request, &|t, i| match i {
            None => cluster.store.key_schema(t),
            Some(i) => cluster.store.index_key_schema(t, i),
        });
        replica = coordination(cluster, node, op, &request, &keys);
        cluster.keylog.record(node.spec.address, op, keys, replica);
    }
    if let Some(r) = replica {
        node.counters.count_coordination(r);
        let delay = cluster.forward_delay();
        if !r && !delay.is_zero() {
            forward_wait(delay).await;
        }
    }
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match op {
        Operation::CreateTable | Operation::DeleteTable => {
            let result = cluster.store.handle(op, &request, host);
            if let (Ok(answer), Some(name)) = (&result, table_name) {
                track_table(cluster, op, name, &request, answer);
            }
            match result {
                Ok(v) => dynamo_response(cluster, 200, serde_json::to_vec(&v).unwrap_or_default()),
                Err(e) => error_response(cluster, &e),
            }
        }
        _ => match cluster.store.handle_to_bytes(op, &request, host) {
            Ok(body) => dynamo_response(cluster, 200, body),
            Err(e) => error_response(cluster, &e),
        },
    }
}

/// Scan and Query of Scylla's internal tables, which the node answers from its own ring (also
/// in front of a backend, which has no such tables).
fn internal_table(
    cluster: &Cluster,
    node: &Node,
    op: Operation,
    request: &Value,
) -> Option<Response<Body>> {
    let table = request.get("TableName").and_then(Value::as_str)?;
    if !matches!(op, Operation::Scan | Operation::Query) || !crate::internal::is_internal(table) {
        return None;
    }
    Some(match crate::internal::handle(cluster, node, op, request) {
        Ok(v) => dynamo_response(cluster, 200, serde_json::to_vec(&v).unwrap_or_default()),
        Err(e) => error_response(cluster, &e),
    })
}

/// With `--backend`: the request goes to the backend byte for byte. The sim decodes a copy of
/// the body only to answer internal tables and to keep its key log; what it cannot decode it
/// just relays.
async fn relay(
    backend: &Backend,
    cluster: &Cluster,
    node: &Node,
    op: Operation,
    parts: hyper::http::request::Parts,
    raw: Bytes,
) -> Response<Body> {
    if matches!(op, Operation::DeleteTable | Operation::CreateTable) {
        backend.forget_schemas();
    }
    if op.is_data() {
        let view = body::decode(
            parts.headers.get(CONTENT_ENCODING),
            raw.clone(),
            REQUEST_CONTENT_LENGTH_LIMIT,
        )
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object);
        if let Some(request) = view {
            if let Some(answer) = internal_table(cluster, node, op, &request) {
                return answer;
            }
            let schemas = backend.schemas(op, &request, &parts.headers).await;
            let keys = dynamo::request_keys(op, &request, &|t, i| schemas.lookup(t, i));
            cluster.keylog.record(node.spec.address, op, keys, None);
        }
    }
    backend.forward(cluster, parts, raw).await
}

/// For a single-key request (GetItem, PutItem, UpdateItem, DeleteItem, or a Query of the table
/// or of an LSI, which shares its partitions): whether this node is a replica of the key.
fn coordination(
    cluster: &Cluster,
    node: &Node,
    op: Operation,
    request: &Value,
    keys: &[(String, Value)],
) -> Option<bool> {
    let [(table, key)] = keys else {
        return None;
    };
    match op {
        Operation::GetItem | Operation::PutItem | Operation::UpdateItem | Operation::DeleteItem => {
        }
        Operation::Query => {
            if let Some(index) = request.get("IndexName").and_then(Value::as_str) {
                let base = cluster.store.key_schema(table)?;
                let idx = cluster.store.index_key_schema(table, index)?;
                if idx.hash != base.hash {
                    return None;
                }
            }
        }
        _ => return None,
    }
    cluster.is_replica(table, key, node.spec.address)
}

/// Keep the ring's tables in step with CreateTable and DeleteTable.
fn track_table(cluster: &Cluster, op: Operation, name: &str, request: &Value, answer: &Value) {
    let mut ring = cluster.ring.write().unwrap_or_else(|p| p.into_inner());
    if op == Operation::DeleteTable {
        ring.drop_table(name);
        return;
    }
    let Some(id) = answer
        .pointer("/TableDescription/TableId")
        .and_then(Value::as_str)
    else {
        return;
    };
    let tag = request
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|t| t.get("Key").and_then(Value::as_str) == Some("system:initial_tablets"))
        .map(|t| t.get("Value").and_then(Value::as_str).unwrap_or(""));
    let views = request
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("IndexName").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    ring.create_table(name, id, tag, views);
}

/// Waits `delay` as a non-replica coordinator's extra hop. Tokio's timer rounds up to whole
/// milliseconds, which would turn a 300 µs hop into more than a millisecond; short delays are
/// slept on the blocking pool instead, where the OS sleeps to within tens of microseconds.
async fn forward_wait(delay: std::time::Duration) {
    if delay >= std::time::Duration::from_millis(5) {
        tokio::time::sleep(delay).await;
    } else if tokio::task::spawn_blocking(move || std::thread::sleep(delay))
        .await
        .is_err()
    {
        // The blocking pool is shutting down with the sim: no one waits for this answer.
    }
}
