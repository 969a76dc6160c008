//! The per-request HTTP context (DESIGN §5).
//!
//! 1. Drop any client-sent routing header: only this filter writes it.
//! 2. Classify the request by `X-Amz-Target`; anything unknown is routed like ordinary traffic.
//! 3. Pause for the body only when key affinity may apply (or to learn a table's key schema).
//! 4. Write `ip:port` of the first choice and the fallbacks into the routing header, which
//!    Envoy's `override_host` LB policy walks on retries; no candidate → a DynamoDB-style 503.
//!
//! Host and body are never modified: Alternator verifies the SigV4 signature over both.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::{self, log_debug, Buffer, Map};
use crate::metrics::{AffinityMiss, RoutedBy};
use alternator_routing::affinity::AffinityTarget;
use alternator_routing::dynamodb::Operation;
use alternator_routing::health::Observation;
use alternator_routing::passive::{self, envoy_flags};

use crate::view::{self, Decision, RoutingView};
use crate::worker::Worker;

/// The local reply when no node may serve: SDKs retry 503 `ServiceUnavailable` with backoff.
const NO_ROUTE_BODY: &[u8] = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailableException","message":"alternator-mesh: no Alternator node is available in the configured scope"}"#;

/// The local reply to a request over DynamoDB's size limit: no node would accept it, and
/// buffering it first would only cost memory. Not retryable, so the SDK reports it at once.
const TOO_LARGE_BODY: &[u8] = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"alternator-mesh: request body too large: DynamoDB requests are limited to 16 MB"}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Headers not seen yet, or seen and routing decided.
    Headers,
    /// Waiting for the end of the request body to route by its key.
    BufferingRequest,
    /// Routed; nothing left to do on the request path.
    Done,
}

#[derive(Debug)]
pub struct RequestContext {
    worker: Rc<Worker>,
    view: Option<Rc<RoutingView>>,
    op: Operation,
    phase: Phase,
    /// The routing header value written (`first,fallback,...`), for passive health; a buffer
    /// lent by the worker, so a request allocates nothing for it.
    candidates: String,
    /// Buffer the response body to learn a table's key schema (DescribeTable).
    learn_from_response: bool,
    /// The view's node index of the first candidate, for the served-by metric.
    first_choice: Option<usize>,
}

impl RequestContext {
    pub fn new(worker: Rc<Worker>) -> Self {
        RequestContext {
            candidates: worker.take_buffer(),
            worker,
            view: None,
            op: Operation::Other,
            phase: Phase::Headers,
            learn_from_response: false,
            first_choice: None,
        }
    }

    /// Chooses the nodes and writes the header. `Continue` unless a local reply was sent.
    fn route(&mut self, affinity: Result<Option<AffinityTarget>, AffinityMiss>) -> Action {
        self.phase = Phase::Done;
        let Some(view) = self.view.clone() else {
            // No snapshot yet: leave the choice to Envoy's fallback policy over EDS members.
            self.worker.metrics.routed(RoutedBy::NoSnapshot);
            return Action::Continue;
        };
        let worker = &self.worker;
        let decision = match affinity {
            Ok(Some(target)) => {
                worker.metrics.affinity_applied();
                view.affine(worker, &target, &mut self.candidates)
            }
            Ok(None) => view.ordinary(worker, &mut self.candidates),
            Err(miss) => {
                worker.metrics.affinity_missed(miss);
                view.ordinary(worker, &mut self.candidates)
            }
        };
        match decision {
            Decision::Routed(policy) => {
                self.first_choice = view.first_choice();
                worker.metrics.routed(policy);
                if !host::set_header(
                    Map::HttpRequestHeaders,
                    &worker.config.routing_header,
                    self.candidates.as_bytes(),
                ) {
                    // Envoy's fallback policy still routes the request.
                    self.candidates.clear();
                }
                Action::Continue
            }
            Decision::NoCandidate => {
                worker.metrics.no_route();
                self.candidates.clear();
                host::send_response(
                    503,
                    &[
                        ("content-type", "application/x-amz-json-1.0"),
                        ("x-amzn-errortype", "ServiceUnavailableException"),
                    ],
                    NO_ROUTE_BODY,
                );
                Action::Pause
            }
        }
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        self.worker
            .give_back_buffer(std::mem::take(&mut self.candidates));
    }
}

impl RequestContext {
    /// Attributes this request's outcome to the nodes its attempts went to (`routing::passive`).
    ///
    /// `served_by_first`: the first candidate answered, so no earlier candidate can have failed.
    fn feed_passive_health(&self, upstream: &str, served_by_first: bool) {
        if !self.worker.config.passive_health.enabled {
            return;
        }
        let flags = host::property_u64(&["response", "flags"]).unwrap_or(0);
        // No candidate precedes the first choice, so when it served there is nothing to
        // attribute (what `failed_before` would answer) and the attempt count is not needed.
        if !served_by_first {
            let attempts = host::property_u64(&["upstream", "request_attempt_count"]);
            for failed in passive::failed_before(&self.candidates, upstream, attempts) {
                self.worker.observe(failed, Observation::TrafficFailure);
            }
        }
        // Without a transport failure the final answer is a success or health-neutral, which
        // changes nothing for a node passive health does not track: the status is read only
        // when it can matter.
        let transport_failure = flags & envoy_flags::TRANSPORT_FAILURE != 0;
        if !transport_failure && !self.worker.tracks(upstream) {
            return;
        }
        let status = if transport_failure {
            None
        } else {
            host::property_u64(&["response", "code"]).and_then(|c| u16::try_from(c).ok())
        };
        if let Some(observation) = passive::final_attempt(status, flags) {
            self.worker.observe(upstream, observation);
        }
    }
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let worker = Rc::clone(&self.worker);
        let config = &worker.config;
        host::remove_header(Map::HttpRequestHeaders, &config.routing_header);
        worker.note_traffic();
        self.view = worker.view();

        // Each header read costs two crossings into V8 (the call and the copy of the value), so
        // without key affinity, where the operation changes nothing, it is not read.
        // (Fetching all headers in one call instead costs more in guest allocations.)
        let uses_operation = view::uses_operation(config);
        let declared_len = if uses_operation || config.max_request_bytes > 0 {
            host::header(Map::HttpRequestHeaders, "content-length")
                .as_deref()
                .and_then(crate::shared::parse_u64)
        } else {
            None
        };
        if config.max_request_bytes > 0
            && declared_len.is_some_and(|len| len > config.max_request_bytes)
        {
            self.phase = Phase::Done;
            host::send_response(
                413,
                &[
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amzn-errortype", "ValidationException"),
                ],
                TOO_LARGE_BODY,
            );
            return Action::Pause;
        }

        let op = if uses_operation {
            host::header(Map::HttpRequestHeaders, "x-amz-target")
                .as_deref()
                .map_or(Operation::Other, view::classify)
        } else {
            Operation::Other
        };
        self.op = op;
        self.learn_from_response = view::learns_from_response(op, config);
        if !view::needs_body(op, config) {
            return self.route(Ok(None));
        }
        if end_of_stream {
            return self.route(Err(AffinityMiss::NoKey));
        }
        let too_large = declared_len.is_some_and(|len| len > config.max_body_bytes as u64);
        if too_large {
            return self.route(Err(AffinityMiss::BodyTooLarge));
        }
        self.phase = Phase::BufferingRequest;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.phase != Phase::BufferingRequest {
            return Action::Continue;
        }
        if body_size > self.worker.config.max_body_bytes {
            // Continue releases the paused headers together with what was buffered so far.
            return self.route(Err(AffinityMiss::BodyTooLarge));
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the end of the body.
        }
        let body = host::buffer(Buffer::HttpRequestBody, 0, body_size).unwrap_or_default();
        let affinity = view::affinity_target(self.op, &body, &self.worker);
        self.route(affinity)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.learn_from_response
            && host::header(Map::HttpResponseHeaders, ":status").as_deref() != Some(b"200")
        {
            self.learn_from_response = false;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.learn_from_response {
            return Action::Continue;
        }
        if body_size > self.worker.config.max_body_bytes {
            self.learn_from_response = false;
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.learn_from_response = false;
        let learned = host::buffer(Buffer::HttpResponseBody, 0, body_size)
            .and_then(|b| view::learned_key(&b));
        if let Some((table, key)) = learned {
            log_debug!("alternator-filter: table {table:?} has partition key {key:?}");
            self.worker.learn_hash_key(&table, &key);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.candidates.is_empty() {
            return;
        }
        let Some(upstream) = host::property(&["upstream", "address"]) else {
            return;
        };
        let Ok(upstream) = std::str::from_utf8(&upstream) else {
            return;
        };
        // Candidates are only ever written from a view.
        let Some(view) = &self.view else {
            return;
        };
        let served_by_first = view.served(&self.worker, upstream, self.first_choice);
        self.feed_passive_health(upstream, served_by_first);
    }
}
