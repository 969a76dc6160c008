//! `--backend URL`: forward DynamoDB requests to a real DynamoDB implementation (AWS's
//! DynamoDB Local in the tests) while `/localnodes`, health, faults and counters stay local.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use hyper::http::request::Parts;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::dynamo::store::KeyAttr;
use crate::dynamo::{DynamoError, ErrorKind, KeySchema, Operation};
use crate::http::{dynamo_response, Body};
use crate::SimError;

/// Client for the backend plus the key schemas learnt from it (the key log needs to know which
/// key attribute is the hash key).
#[derive(Debug)]
pub(crate) struct Backend {
    uri: Uri,
    authority: HeaderValue,
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

/// Headers that describe the hop, not the request.
fn is_hop_header(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == HOST
        || name == CONTENT_LENGTH
        || name == TRANSFER_ENCODING
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || name.as_str() == "upgrade"
        || name.as_str() == "te"
        || name.as_str() == "trailer"
}

impl Backend {
    pub fn new(url: &str) -> Result<Backend, SimError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| SimError::InvalidBackend(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(SimError::InvalidBackend(url.to_owned()));
        }
        let authority = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| SimError::InvalidBackend(url.to_owned()))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Backend {
            uri,
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

    async fn send(
        &self,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(u16, HeaderMap, Bytes), String> {
        let mut b = Request::builder().method("POST").uri(self.uri.clone());
        if let Some(h) = b.headers_mut() {
            for (k, v) in headers {
                if !is_hop_header(k) {
                    h.append(k.clone(), v.clone());
                }
            }
            h.insert(HOST, self.authority.clone());
        }
        let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status.as_u16(), parts.headers, body))
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
                    let mut h = headers.clone();
                    h.insert(
                        "x-amz-target",
                        HeaderValue::from_static("DynamoDB_20120810.DescribeTable"),
                    );
                    let body = Bytes::from(json!({ "TableName": table }).to_string());
                    let Ok((200, _, body)) = self.send(&h, body).await else {
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

    /// Forward one DynamoDB request and relay the answer.
    pub async fn forward(&self, cluster: &Cluster, parts: &Parts, body: Bytes) -> Response<Body> {
        match self.send(&parts.headers, body).await {
            Ok((status, headers, body)) => {
                let mut r = dynamo_response(cluster, status, body.to_vec());
                for (k, v) in &headers {
                    if !is_hop_header(k) {
                        r.headers_mut().insert(k.clone(), v.clone());
                    }
                }
                r
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
