//! `--backend URL`: forward DynamoDB requests to a real DynamoDB implementation (AWS's
//! DynamoDB Local in the tests) while `/localnodes`, health, faults and counters stay local.
//!
//! The request goes out as the client sent it — method, path and query, every end-to-end
//! header (`Host` and header-name case included) and the body bytes, compressed or not — and
//! the backend's answer comes back as it was sent: status and reason phrase, headers (the sim
//! adds neither a content type nor `Server` nor `Date`) and body bytes. Only what describes one
//! hop is not relayed: `Connection` and the headers it names, `Keep-Alive`,
//! `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade` (RFC 9110 §7.6.1);
//! a chunked body goes on with a `Content-Length` of the same bytes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_ENCODING, TRANSFER_ENCODING,
};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::dynamo::store::KeyAttr;
use crate::dynamo::{DynamoError, ErrorKind, KeySchema, Operation};
use crate::http::{dynamo_response, Body};
use crate::SimError;

/// Marks an answer relayed from the backend, which the node serves without adding headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relayed;

/// Client for the backend plus the key schemas learnt from it (the key log needs to know which
/// key attribute is the hash key).
#[derive(Debug)]
pub(crate) struct Backend {
    authority: hyper::http::uri::Authority,
    client: Client<HttpConnector, Full<Bytes>>,
    schemas: RwLock<HashMap<String, TableSchemas>>,
}

/// A table's key schema and its indexes' key schemas.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableSchemas {
    table: Option<Arc<KeySchema>>,
    indexes: HashMap<String, Arc<KeySchema>>,
}

/// Schemas of the tables one request touches.
#[derive(Debug, Default)]
pub(crate) struct SchemaSet(HashMap<String, TableSchemas>);

impl SchemaSet {
    pub fn lookup(&self, table: &str, index: Option<&str>) -> Option<Arc<KeySchema>> {
        let t = self.0.get(table)?;
        match index {
            None => t.table.clone(),
            Some(i) => t.indexes.get(i).cloned(),
        }
    }
}

fn key_schema(ks: &Value, defs: &Value) -> Option<KeySchema> {
    let ty_of = |name: &str| -> Option<String> {
        defs.as_array()?
            .iter()
            .find(|d| d.get("AttributeName").and_then(Value::as_str) == Some(name))?
            .get("AttributeType")?
            .as_str()
            .map(str::to_owned)
    };
    let mut hash = None;
    let mut range = None;
    for e in ks.as_array()? {
        let name = e.get("AttributeName")?.as_str()?.to_owned();
        let attr = KeyAttr {
            ty: ty_of(&name)?,
            name,
        };
        match e.get("KeyType")?.as_str()? {
            "HASH" => hash = Some(attr),
            _ => range = Some(attr),
        }
    }
    Some(KeySchema { hash: hash?, range })
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), and the ones a
/// `Connection` header names.
fn hop_headers(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut hop = vec![
        CONNECTION,
        TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("te"),
        HeaderName::from_static("trailer"),
        HeaderName::from_static("upgrade"),
    ];
    for value in headers.get_all(CONNECTION) {
        let names = value.to_str().unwrap_or("").split(',');
        hop.extend(names.filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()));
    }
    hop
}

/// `headers` without the hop-by-hop ones, every value kept in order.
fn end_to_end(headers: HeaderMap) -> HeaderMap {
    let hop = hop_headers(&headers);
    let mut kept = HeaderMap::with_capacity(headers.len());
    let mut name = None;
    for (k, v) in headers {
        if let Some(k) = k {
            name = Some(k);
        }
        if let Some(k) = &name {
            if !hop.contains(k) {
                kept.append(k.clone(), v);
            }
        }
    }
    kept
}

impl Backend {
    pub fn new(url: &str) -> Result<Backend, SimError> {
        let invalid = || SimError::InvalidBackend(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        // Requests keep their own path, so a backend URL names a server, not a path on it.
        let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        if uri.scheme_str() != Some("http") || !bare {
            return Err(invalid());
        }
        let authority = uri.authority().cloned().ok_or_else(invalid)?;
        let client = Client::builder(TokioExecutor::new())
            .http1_preserve_header_case(true)
            .build_http();
        Ok(Backend {
            authority,
            client,
            schemas: RwLock::new(HashMap::new()),
        })
    }

    pub fn forget_schemas(&self) {
        self.schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// One request to the backend, answered with its head and whole body.
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, String> {
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    /// The backend's URI for a request's path and query.
    fn uri(&self, path: Option<&PathAndQuery>) -> Result<Uri, String> {
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path.map_or("/", PathAndQuery::as_str))
            .build()
            .map_err(|e| e.to_string())
    }

    /// Key schemas of the tables a request touches, asking the backend (DescribeTable, with
    /// the client's own credentials headers) for ones not seen yet.
    pub async fn schemas(&self, op: Operation, req: &Value, headers: &HeaderMap) -> SchemaSet {
        let mut set = SchemaSet::default();
        for table in op.tables_of(req) {
            let known = self
                .schemas
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&table)
                .cloned();
            let schemas = match known {
                Some(s) => s,
                None => {
                    let Some(body) = self.describe_table(&table, headers).await else {
                        continue;
                    };
                    let Ok(desc) = serde_json::from_slice::<Value>(&body) else {
                        continue;
                    };
                    let t = &desc["Table"];
                    let defs = &t["AttributeDefinitions"];
                    let mut s = TableSchemas {
                        table: key_schema(&t["KeySchema"], defs).map(Arc::new),
                        indexes: HashMap::new(),
                    };
                    for field in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
                        for idx in t[field].as_array().into_iter().flatten() {
                            if let (Some(name), Some(ks)) = (
                                idx["IndexName"].as_str(),
                                key_schema(&idx["KeySchema"], defs),
                            ) {
                                s.indexes.insert(name.to_owned(), Arc::new(ks));
                            }
                        }
                    }
                    self.schemas
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(table.clone(), s.clone());
                    s
                }
            };
            set.0.insert(table, schemas);
        }
        set
    }

    /// DescribeTable of `table` with the client's headers (its credentials), the body the
    /// sim writes being plain JSON; the answer's body if it is a 200.
    async fn describe_table(&self, table: &str, headers: &HeaderMap) -> Option<Bytes> {
        let mut h = end_to_end(headers.clone());
        h.remove(CONTENT_ENCODING);
        h.remove(hyper::header::CONTENT_LENGTH);
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.DescribeTable"),
        );
        let mut req = Request::new(Full::new(Bytes::from(
            json!({ "TableName": table }).to_string(),
        )));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri(None).ok()?;
        *req.headers_mut() = h;
        let resp = self.send(req).await.ok()?;
        resp.status().is_success().then(|| resp.into_body())
    }

    /// Forwards one request exactly as the client sent it and relays the answer exactly as
    /// the backend sent it; if the backend cannot be reached, the node answers 500 itself.
    pub async fn forward(&self, cluster: &Cluster, parts: Parts, body: Bytes) -> Response<Body> {
        let relayed = async {
            let uri = self.uri(parts.uri.path_and_query())?;
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = parts.method;
            *req.uri_mut() = uri;
            *req.headers_mut() = end_to_end(parts.headers);
            // Carries the header-name case hyper recorded on the way in.
            *req.extensions_mut() = parts.extensions;
            self.send(req).await
        };
        match relayed.await {
            Ok(resp) => {
                let (mut head, body) = resp.into_parts();
                head.headers = end_to_end(std::mem::take(&mut head.headers));
                // Reason phrase and header-name case ride in the extensions.
                head.extensions.insert(Relayed);
                Response::from_parts(head, Full::new(body))
            }
            Err(e) => {
                tracing::warn!(error = %e, "backend request failed");
                let err = DynamoError::new(
                    ErrorKind::InternalServerError,
                    format!("alternator-sim backend request failed: {e}"),
                );
                dynamo_response(cluster, err.status(), err.to_body())
            }
        }
    }
}
