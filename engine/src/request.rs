//! The request flow (DESIGN §5): what happens to one DynamoDB request, callback by callback.
//!
//! 1. Drop any client-sent routing header: only this filter writes it.
//! 2. Refuse a declared body over DynamoDB's request limit with a local 413.
//! 3. Classify the request by `X-Amz-Target` (read only when key affinity or token-aware
//!    routing is configured); anything unknown is routed like ordinary traffic.
//! 4. Hold the request for its body only when key affinity may apply, or token-aware routing
//!    may (a single-item request while the snapshot carries a ring). Token-aware routing goes
//!    first: a key's replica leads; when it cannot, key affinity or the ordinary policy
//!    decides.
//! 5. Write `ip:port` of the first choice and the fallbacks into the routing header, which
//!    Envoy's `override_host` policy walks on retries; no candidate → a DynamoDB-style 503.
//! 6. Learn partition-key names from CreateTable/DescribeTable answers.
//! 7. At stream end, count who served and feed passive health.
//!
//! Host and body are never modified: Alternator verifies the SigV4 signature over both.

use std::rc::Rc;

use alternator_routing::affinity::AffinityTarget;
use alternator_routing::dynamodb::{self, AffinityMode, Operation};
use alternator_routing::passive::{self, envoy_flags};

use crate::host::{log_debug, Action, Host, Stream};
use crate::metrics::{AffinityMiss, Metric, RoutedBy, TokenMiss};
use crate::shared::parse_u64;
use crate::view::{self, Decision, RoutingView, TokenTarget};
use crate::worker::Worker;

/// The local reply when no node may serve: SDKs retry 503 `ServiceUnavailable` with backoff.
pub const NO_ROUTE_BODY: &[u8] = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailableException","message":"alternator-mesh: no Alternator node is available in the configured scope"}"#;

/// The local reply to a request whose declared length is over `limit`: no node would accept
/// it, and buffering it first would only cost memory. The answer Alternator itself gives
/// (413 `PayloadTooLarge`, the same message), so the application sees the same error with or
/// without the proxy; not retryable, so the SDK reports it at once.
pub fn too_large_body(limit: u64) -> Vec<u8> {
    format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#PayloadTooLarge","message":"Request content length limit of {limit} bytes exceeded"}}"#
    )
    .into_bytes()
}

const JSON_CONTENT_TYPE: (&str, &str) = ("content-type", "application/x-amz-json-1.0");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Headers not seen yet, or seen and routing decided.
    Headers,
    /// Waiting for the end of the request body to route by its key.
    BufferingRequest,
    /// Routed; nothing left to do on the request path.
    Done,
}

/// One request's progress through the filter.
#[derive(Debug)]
pub struct RequestFlow<H: Host> {
    worker: Rc<Worker<H>>,
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
    /// Token-aware routing may route this request by its key (decided with the headers).
    token_candidate: bool,
    /// Key affinity may route this request by its key (decided with the headers).
    affinity_candidate: bool,
}

/// How a request is to be routed, once what can be known is known.
enum Choice {
    Ordinary,
    Affinity(AffinityTarget),
    AffinityMissed(AffinityMiss),
    Token(TokenTarget),
}

impl From<Result<Option<AffinityTarget>, AffinityMiss>> for Choice {
    fn from(affinity: Result<Option<AffinityTarget>, AffinityMiss>) -> Self {
        match affinity {
            Ok(Some(target)) => Choice::Affinity(target),
            Ok(None) => Choice::Ordinary,
            Err(miss) => Choice::AffinityMissed(miss),
        }
    }
}

impl<H: Host> RequestFlow<H> {
    pub fn new(worker: Rc<Worker<H>>) -> Self {
        RequestFlow {
            candidates: worker.take_buffer(),
            worker,
            view: None,
            op: Operation::Other,
            phase: Phase::Headers,
            learn_from_response: false,
            first_choice: None,
            token_candidate: false,
            affinity_candidate: false,
        }
    }

    /// The routing header value this request carries (empty until routed, or when Envoy's
    /// fallback policy routes it).
    pub fn candidates(&self) -> &str {
        &self.candidates
    }

    pub fn on_request_headers(&mut self, stream: &mut impl Stream, end_of_stream: bool) -> Action {
        let worker = Rc::clone(&self.worker);
        let config = &worker.config;
        stream.remove_request_header(&config.routing_header);
        worker.note_traffic();
        self.view = worker.view();

        // Each header read costs the host a copy (in proxy-wasm two crossings into the VM), so
        // without key affinity, where the operation changes nothing, it is not read.
        let uses_operation =
            config.affinity.mode != AffinityMode::None || config.token_aware.enabled;
        let declared_len = if uses_operation || config.max_request_bytes > 0 {
            stream
                .request_header("content-length")
                .as_deref()
                .and_then(parse_u64)
        } else {
            None
        };
        if config.max_request_bytes > 0
            && declared_len.is_some_and(|len| len > config.max_request_bytes)
        {
            self.phase = Phase::Done;
            stream.send_local_reply(
                413,
                &[JSON_CONTENT_TYPE],
                &too_large_body(config.max_request_bytes),
            );
            return Action::Pause;
        }

        let op = if uses_operation {
            stream
                .request_header("x-amz-target")
                .as_deref()
                .map_or(Operation::Other, view::classify)
        } else {
            Operation::Other
        };
        self.op = op;
        self.learn_from_response = dynamodb::learns_key_schema(config.affinity.mode, op);
        if config.token_aware.enabled && view::token_eligible(op) {
            if self.view.as_deref().is_some_and(RoutingView::has_ring) {
                self.token_candidate = true;
            } else {
                worker.metrics.count(Metric::TokenMissed(TokenMiss::NoRing));
            }
        }
        self.affinity_candidate = dynamodb::needs_body(config.affinity.mode, op);
        if !self.affinity_candidate && !self.token_candidate {
            return self.route(stream, Choice::Ordinary);
        }
        if end_of_stream {
            let choice = self.unread_body(TokenMiss::NoKey, AffinityMiss::NoKey);
            return self.route(stream, choice);
        }
        let too_large = declared_len.is_some_and(|len| len > config.max_body_bytes as u64);
        if too_large {
            let choice = self.unread_body(TokenMiss::BodyTooLarge, AffinityMiss::BodyTooLarge);
            return self.route(stream, choice);
        }
        self.phase = Phase::BufferingRequest;
        Action::Pause
    }

    pub fn on_request_body(
        &mut self,
        stream: &mut impl Stream,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.phase != Phase::BufferingRequest {
            return Action::Continue;
        }
        if body_size > self.worker.config.max_body_bytes {
            // Continue releases the paused headers together with what was buffered so far.
            let choice = self.unread_body(TokenMiss::BodyTooLarge, AffinityMiss::BodyTooLarge);
            return self.route(stream, choice);
        }
        if !end_of_stream {
            return Action::Pause; // The proxy buffers until the end of the body.
        }
        let body = stream.request_body(body_size).unwrap_or_default();
        if self.token_candidate {
            if let Some(view) = &self.view {
                match view.token_target(self.op, &body, &self.worker) {
                    Ok(target) => return self.route(stream, Choice::Token(target)),
                    Err(miss) => self.token_missed(miss),
                }
            }
        }
        let choice = if self.affinity_candidate {
            Choice::from(view::affinity_target(self.op, &body, &self.worker))
        } else {
            Choice::Ordinary
        };
        self.route(stream, choice)
    }

    /// How a request is routed when its body will not be read (absent or too large): the
    /// token-aware miss is counted, and key affinity, if it applied, falls back with `miss`.
    fn unread_body(&mut self, token: TokenMiss, affinity: AffinityMiss) -> Choice {
        self.token_missed(token);
        if self.affinity_candidate {
            Choice::AffinityMissed(affinity)
        } else {
            Choice::Ordinary
        }
    }

    /// Counts why token-aware routing did not route this request, if it could have.
    fn token_missed(&mut self, miss: TokenMiss) {
        if std::mem::take(&mut self.token_candidate) {
            self.worker.metrics.count(Metric::TokenMissed(miss));
        }
    }

    /// Chooses the nodes and writes the header. `Continue` unless a local reply was sent.
    fn route(&mut self, stream: &mut impl Stream, choice: Choice) -> Action {
        self.phase = Phase::Done;
        let metrics = &self.worker.metrics;
        let Some(view) = self.view.clone() else {
            // No snapshot yet: leave the choice to Envoy's fallback policy over EDS members.
            metrics.count(Metric::Routed(RoutedBy::NoSnapshot));
            return Action::Continue;
        };
        let worker = &self.worker;
        let decision = match choice {
            Choice::Affinity(target) => {
                metrics.count(Metric::AffinityApplied);
                view.affine(worker, &target, &mut self.candidates)
            }
            Choice::Ordinary => view.ordinary(worker, &mut self.candidates),
            Choice::AffinityMissed(miss) => {
                metrics.count(Metric::AffinityMissed(miss));
                view.ordinary(worker, &mut self.candidates)
            }
            Choice::Token(target) => match view.replica_first(worker, target, &mut self.candidates)
            {
                Ok(decision) => {
                    metrics.count(Metric::TokenApplied);
                    decision
                }
                Err(decision) => {
                    metrics.count(Metric::TokenMissed(TokenMiss::NoReplicaInScope));
                    decision
                }
            },
        };
        match decision {
            Decision::Routed(policy) => {
                self.first_choice = view.first_choice();
                metrics.count(Metric::Routed(policy));
                if !stream
                    .set_request_header(&worker.config.routing_header, self.candidates.as_bytes())
                {
                    // Envoy's fallback policy still routes the request.
                    self.candidates.clear();
                }
                Action::Continue
            }
            Decision::NoCandidate => {
                metrics.count(Metric::NoRoute);
                self.candidates.clear();
                stream.send_local_reply(
                    503,
                    &[
                        JSON_CONTENT_TYPE,
                        ("x-amzn-errortype", "ServiceUnavailableException"),
                    ],
                    NO_ROUTE_BODY,
                );
                Action::Pause
            }
        }
    }

    pub fn on_response_headers(&mut self, stream: &mut impl Stream) -> Action {
        if self.learn_from_response && stream.response_header(":status").as_deref() != Some(b"200")
        {
            self.learn_from_response = false;
        }
        Action::Continue
    }

    pub fn on_response_body(
        &mut self,
        stream: &mut impl Stream,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
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
        let learned = stream
            .response_body(body_size)
            .and_then(|b| dynamodb::table_description_key_schema(&b));
        if let Some(learned) = learned {
            let (table, key) = (learned.table, learned.hash_key);
            log_debug!(
                &self.worker.host,
                "alternator-filter: table {table:?} has partition key {key:?}"
            );
            self.worker.learn_hash_key(&table, &key);
        }
        Action::Continue
    }

    /// The stream has ended (the access-log callback): count who served it and feed passive
    /// health.
    pub fn on_stream_end(&mut self, stream: &impl Stream) {
        if self.candidates.is_empty() {
            return;
        }
        let Some(upstream) = stream.upstream_address() else {
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
        self.feed_passive_health(stream, upstream, served_by_first);
    }

    /// Attributes this request's outcome to the nodes its attempts went to (`routing::passive`).
    ///
    /// `served_by_first`: the first candidate answered, so no earlier candidate can have failed.
    fn feed_passive_health(&self, stream: &impl Stream, upstream: &str, served_by_first: bool) {
        if !self.worker.config.passive_health.enabled {
            return;
        }
        let flags = stream.response_flags().unwrap_or(0);
        // No candidate precedes the first choice, so when it served there is nothing to
        // attribute (what `failed_before` would answer) and the attempt count is not needed.
        if !served_by_first {
            let attempts = stream.upstream_request_attempts();
            let failed = passive::failed_before(&self.candidates, upstream, attempts);
            if !failed.is_empty() {
                // Read only here: a request that needed a retry or a hedge is the rare one.
                let outcome = passive::earlier_attempt(
                    stream.request_duration_ms(),
                    self.worker.config.passive_health.min_per_try_timeout_ms,
                );
                for node in failed {
                    self.worker.observe(node, outcome);
                }
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
            stream.response_code().and_then(|c| u16::try_from(c).ok())
        };
        if let Some(outcome) = passive::final_attempt(status, flags) {
            self.worker.observe(upstream, outcome);
        }
    }
}

impl<H: Host> Drop for RequestFlow<H> {
    fn drop(&mut self) {
        self.worker
            .give_back_buffer(std::mem::take(&mut self.candidates));
    }
}
