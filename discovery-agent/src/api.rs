//! The agent's HTTP API (docs/architecture.md §2): `/v1/nodes` with ETag and long-poll, REST
//! EDS, `/metrics`, `/healthz`, `/readyz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use alternator_routing::snapshot::MAX_LONG_POLL_SECS;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::eds;
use crate::state::{stopped, unix_ms, AgentState, PublishedSnapshot};

/// Longest time in-flight requests get to finish after shutdown starts; with process start-up
/// and exit this keeps a SIGTERM-to-exit well under five seconds.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest EDS request body read. Envoy 1.40 sends its whole extension list in `node`: about
/// 80 KB per poll.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

type Reply = Response<Full<Bytes>>;

/// Accepts connections until `stop` turns true, then drains in-flight requests for at most
/// [`DRAIN_TIMEOUT`]. Long-polls answer at once when stopping.
pub async fn serve(listener: TcpListener, state: Arc<AgentState>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let stop_for_requests = stop.clone();
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Typically EMFILE; back off briefly instead of spinning.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let stop = stop_for_requests.clone();
                let service = service_fn(move |request| handle(state.clone(), stop.clone(), request));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(%error, "API connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("some API connections were still busy after the drain timeout; closing them");
    }
}

async fn handle(
    state: Arc<AgentState>,
    stop: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = request.uri().path().to_owned();
    let (endpoint, reply) = match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/v1/nodes") => {
            ("nodes", nodes(&state, stop, &request).await)
        }
        (&Method::POST, "/v3/discovery:endpoints") => ("eds", endpoints(&state, request).await),
        (&Method::GET, "/metrics") => ("metrics", metrics(&state)),
        (&Method::GET, "/healthz") => ("healthz", text(StatusCode::OK, "ok\n")),
        (&Method::GET, "/readyz") => ("readyz", readyz(&state)),
        (_, "/v1/nodes" | "/v3/discovery:endpoints" | "/metrics" | "/healthz" | "/readyz") => (
            "other",
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        ),
        _ => ("other", text(StatusCode::NOT_FOUND, "not found\n")),
    };
    state
        .metrics
        .api
        .count_served(endpoint, reply.status().as_u16());
    Ok(reply)
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

fn json(status: StatusCode, body: Bytes, etag: Option<&str>) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(ETAG, tag);
    }
    reply
}

fn not_modified(etag: &str) -> Reply {
    let mut reply = json(StatusCode::NOT_MODIFIED, Bytes::new(), Some(etag));
    reply.headers_mut().remove(CONTENT_TYPE);
    reply
}

fn not_ready() -> Reply {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(b"{\"error\":\"no successful discovery yet\"}"),
        None,
    )
}

/// Query parameters of `/v1/nodes`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodesQuery {
    /// Long-poll seconds, clamped to [`MAX_LONG_POLL_SECS`].
    pub wait: u64,
    /// The caller saw DynamoDB traffic since its last poll.
    pub traffic: bool,
}

/// Parses `wait=N` and `traffic=1`; other parameters are ignored so newer filters can add some.
pub fn parse_nodes_query(query: Option<&str>) -> Result<NodesQuery, String> {
    let mut parsed = NodesQuery::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "wait" => {
                let secs: u64 = value.parse().map_err(|_| {
                    format!("wait must be a whole number of seconds, got {value:?}")
                })?;
                parsed.wait = secs.min(MAX_LONG_POLL_SECS);
            }
            "traffic" => parsed.traffic = matches!(value, "1" | "true" | ""),
            _ => {}
        }
    }
    Ok(parsed)
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, lists and `*` allowed).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

async fn nodes(
    state: &AgentState,
    mut stop: watch::Receiver<bool>,
    request: &Request<Incoming>,
) -> Reply {
    let query = match parse_nodes_query(request.uri().query()) {
        Ok(q) => q,
        Err(reason) => return client_error(StatusCode::BAD_REQUEST, reason),
    };
    if query.traffic {
        state.report_traffic(Instant::now());
    }
    let if_none_match = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut updates = state.snapshot.subscribe();
    let unchanged = |p: &Option<Arc<PublishedSnapshot>>| match (p, &if_none_match) {
        (None, _) => true,
        (Some(p), Some(inm)) => etag_matches(inm, &p.etag),
        (Some(_), None) => false,
    };
    if query.wait > 0 && unchanged(&updates.borrow_and_update()) {
        let _waiting = state.metrics.api.long_poll();
        let deadline = tokio::time::sleep(Duration::from_secs(query.wait));
        tokio::select! {
            _ = deadline => {}
            _ = stopped(&mut stop) => {}
            _ = async { let _ = updates.wait_for(|p| !unchanged(p)).await; } => {}
        }
    }
    let current = state.current();
    match current {
        None => not_ready(),
        Some(p)
            if if_none_match
                .as_deref()
                .is_some_and(|inm| etag_matches(inm, &p.etag)) =>
        {
            not_modified(&p.etag)
        }
        Some(p) => json(StatusCode::OK, p.json.clone(), Some(&p.etag)),
    }
}

/// A JSON error reply `{"error": message}`, logged: a client that keeps getting these is
/// misconfigured and the operator should see why.
fn client_error(status: StatusCode, message: String) -> Reply {
    warn!(status = status.as_u16(), %message, "API request rejected");
    json(
        status,
        Bytes::from(serde_json::json!({ "error": message }).to_string()),
        None,
    )
}

async fn endpoints(state: &AgentState, request: Request<Incoming>) -> Reply {
    let body = match Limited::new(request.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return client_error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the EDS request body: {error}"),
            )
        }
    };
    let discovery_request: eds::DiscoveryRequest = if body.iter().all(u8::is_ascii_whitespace) {
        eds::DiscoveryRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(error) => {
                return client_error(
                    StatusCode::BAD_REQUEST,
                    format!("the EDS request is not a DiscoveryRequest: {error}"),
                )
            }
        }
    };
    if !eds::requests_cluster(&discovery_request, &state.cluster_name) {
        return client_error(
            StatusCode::NOT_FOUND,
            format!(
                "EDS asked for {:?}; this agent serves cluster {:?} only (--cluster-name)",
                discovery_request.resource_names, state.cluster_name
            ),
        );
    }
    match state.current() {
        None => not_ready(),
        Some(p) => json(StatusCode::OK, p.eds.clone(), Some(&p.etag)),
    }
}

fn metrics(state: &AgentState) -> Reply {
    let current = state.current();
    let body = state.metrics.render(
        current.as_ref().map(|p| &p.snapshot),
        current.is_some(),
        unix_ms(),
    );
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    reply
}

fn readyz(state: &AgentState) -> Reply {
    if state.current().is_some() {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no successful discovery yet\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(parse_nodes_query(None).unwrap(), NodesQuery::default());
        assert_eq!(
            parse_nodes_query(Some("wait=30&traffic=1&future=x")).unwrap(),
            NodesQuery {
                wait: 30,
                traffic: true
            }
        );
        assert_eq!(parse_nodes_query(Some("wait=600")).unwrap().wait, 60);
        assert!(!parse_nodes_query(Some("traffic=0")).unwrap().traffic);
        assert!(parse_nodes_query(Some("wait=soon")).is_err());
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"42\"", "\"42\""));
        assert!(etag_matches("W/\"42\"", "\"42\""));
        assert!(etag_matches("\"1\", \"42\"", "\"42\""));
        assert!(etag_matches("*", "\"42\""));
        assert!(!etag_matches("\"41\"", "\"42\""));
        assert!(!etag_matches("42", "\"42\""));
    }
}
