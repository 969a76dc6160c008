//! The few DynamoDB calls ring discovery makes (ListTables, DescribeTable, Query, Scan), over
//! the agent's [`Transport`], signed when credentials are configured, with pagination and the
//! classification of failures: worth asking another node, refused, or the table's own answer.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::ring_discovery::rows::Item;
use crate::sigv4::{Request, Signer};
use crate::transport::{authority, Answer, FetchError, Transport};

/// One page of a Query or Scan answer.
#[derive(serde::Deserialize)]
struct Page {
    #[serde(rename = "Items")]
    items: Option<Vec<Item>>,
    #[serde(rename = "LastEvaluatedKey")]
    last_evaluated_key: Option<Value>,
}

/// Rows asked per page; keeps every answer far below the transport's body limit.
pub const PAGE_LIMIT: u32 = 1000;

/// Pages one read follows at most, so a node that keeps answering the same continuation cannot
/// hold a refresh forever (10 million rows).
pub const MAX_PAGES: usize = 10_000;

/// Which request, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// `ListTables`.
    ListTables,
    /// `DescribeTable`.
    DescribeTable,
    /// `Query` of `system.token_ring`.
    TokenRing,
    /// `Query` of `system.tablets`.
    Tablets,
    /// `Scan` of `system.peers`.
    Peers,
    /// `Scan` of `system.local`.
    Local,
}

impl Call {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::ListTables => "list_tables",
            Call::DescribeTable => "describe_table",
            Call::TokenRing => "token_ring",
            Call::Tablets => "tablets",
            Call::Peers => "peers",
            Call::Local => "local",
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer, a 5xx, or an answer that is not a DynamoDB JSON document: another node may
    /// do better.
    #[error("{0}")]
    Unavailable(String),
    /// The node refused the request for want of (valid) credentials: every node will.
    #[error("refused (HTTP {status} {kind}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error type (`__type` without its namespace).
        kind: String,
        /// The node's message.
        message: String,
    },
    /// The table does not exist (`ResourceNotFoundException`).
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other client error (the same on every node).
    #[error("HTTP {status} {kind}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The error type.
        kind: String,
        /// The node's message.
        message: String,
    },
}

impl CallError {
    /// Whether another node might answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CallError::Unavailable(_))
    }
}

/// Error types that mean "who are you?" rather than "what is this?".
const AUTH_ERRORS: [&str; 5] = [
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
    "AccessDeniedException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
];

/// Sorts an answer into a value or a [`CallError`].
pub fn classify(status: u16, body: &[u8]) -> Result<Value, CallError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status == 200 {
        return match parsed {
            Some(value @ Value::Object(_)) => Ok(value),
            _ => Err(CallError::Unavailable(
                "answered 200 with a body that is not a JSON object".to_owned(),
            )),
        };
    }
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let raw_kind = field("__type");
    // `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException` → the part after `#`.
    let kind = raw_kind.rsplit('#').next().unwrap_or_default().to_owned();
    let message = {
        let m = field("message");
        if m.is_empty() {
            field("Message")
        } else {
            m
        }
    };
    if status >= 500 || kind.is_empty() && status != 403 {
        return Err(CallError::Unavailable(format!("answered HTTP {status}")));
    }
    if status == 403 || AUTH_ERRORS.contains(&kind.as_str()) {
        return Err(CallError::Refused {
            status,
            kind,
            message,
        });
    }
    if kind == "ResourceNotFoundException" {
        return Err(CallError::NotFound(message));
    }
    Err(CallError::Rejected {
        status,
        kind,
        message,
    })
}

/// Calls toward Alternator for one refresh.
#[derive(Debug)]
pub struct Client<'a, T> {
    /// The transport.
    pub transport: &'a T,
    /// Alternator's port (for the signed `host` header).
    pub port: u16,
    /// Signs requests when set.
    pub signer: Option<&'a Signer>,
    /// Deadline of one request.
    pub timeout: Duration,
}

impl<T: Transport> Client<'_, T> {
    /// One `DynamoDB_20120810.<operation>` request to `host`: its JSON answer.
    pub async fn call(
        &self,
        host: &str,
        operation: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let answer = self.send(host, operation, body).await?;
        classify(answer.status, &answer.body)
    }

    async fn send(&self, host: &str, operation: &str, body: &Value) -> Result<Answer, CallError> {
        let body = Bytes::from(body.to_string());
        let host_header = authority(host, self.port);
        let target = format!("DynamoDB_20120810.{operation}");
        let content_type = "application/x-amz-json-1.0";
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", &host_header),
            ("content-type", content_type),
            ("x-amz-target", &target),
        ];
        let signature = self.signer.map(|signer| {
            signer.sign(
                &Request {
                    method: "POST",
                    path: "/",
                    query: "",
                    headers: &headers,
                    body: &body,
                },
                SystemTime::now(),
            )
        });
        if let Some(signature) = &signature {
            headers.push(("x-amz-date", &signature.amz_date));
            headers.push(("authorization", &signature.authorization));
        }
        self.transport
            .post(host, "/", &headers, body.clone(), self.timeout)
            .await
            .map_err(|e: FetchError| CallError::Unavailable(e.to_string()))
    }

    /// Every item of a Query or Scan, following `LastEvaluatedKey` on the same node. Pages are
    /// parsed straight into [`Item`]s.
    pub async fn items(
        &self,
        host: &str,
        operation: &str,
        mut request: Value,
    ) -> Result<(Vec<Item>, u32), CallError> {
        let mut items = Vec::new();
        let mut pages = 0u32;
        let mut previous_key: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let answer = self.send(host, operation, &request).await?;
            if answer.status != 200 {
                return Err(match classify(answer.status, &answer.body) {
                    Err(error) => error,
                    Ok(_) => CallError::Unavailable(format!("answered HTTP {}", answer.status)),
                });
            }
            let page: Page = serde_json::from_slice(&answer.body).map_err(|e| {
                CallError::Unavailable(format!("{operation} answer is not a page of items: {e}"))
            })?;
            pages += 1;
            match page.items {
                Some(page_items) => items.extend(page_items),
                None => {
                    return Err(CallError::Unavailable(format!(
                        "{operation} answer has no Items list"
                    )))
                }
            }
            match page.last_evaluated_key {
                Some(key @ Value::Object(_)) => {
                    if previous_key.as_ref() == Some(&key) {
                        return Err(CallError::Unavailable(
                            "the same LastEvaluatedKey twice in a row".to_owned(),
                        ));
                    }
                    if let Some(object) = request.as_object_mut() {
                        object.insert("ExclusiveStartKey".to_owned(), key.clone());
                    }
                    previous_key = Some(key);
                }
                _ => return Ok((items, pages)),
            }
        }
        Err(CallError::Unavailable(format!(
            "more than {MAX_PAGES} pages"
        )))
    }

    /// Every table name, following `LastEvaluatedTableName`.
    pub async fn list_tables(&self, host: &str) -> Result<(Vec<String>, u32), CallError> {
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        let mut pages = 0u32;
        for _ in 0..MAX_PAGES {
            let request = match &start {
                Some(name) => json!({"ExclusiveStartTableName": name}),
                None => json!({}),
            };
            let answer = self.call(host, "ListTables", &request).await?;
            pages += 1;
            let Some(Value::Array(page)) = answer.get("TableNames") else {
                return Err(CallError::Unavailable(
                    "ListTables answer has no TableNames list".to_owned(),
                ));
            };
            names.extend(page.iter().filter_map(Value::as_str).map(str::to_owned));
            match answer.get("LastEvaluatedTableName").and_then(Value::as_str) {
                Some(last) if start.as_deref() != Some(last) => start = Some(last.to_owned()),
                Some(_) => {
                    return Err(CallError::Unavailable(
                        "the same LastEvaluatedTableName twice in a row".to_owned(),
                    ))
                }
                None => return Ok((names, pages)),
            }
        }
        Err(CallError::Unavailable(format!(
            "more than {MAX_PAGES} pages"
        )))
    }
}

/// The DynamoDB name of Alternator's view of a CQL system table.
pub fn system_table(table: &str) -> String {
    format!(".scylla.alternator.system.{table}")
}

/// Query of `system.token_ring` for one Alternator table's keyspace.
pub fn token_ring_query(table: &str) -> Value {
    json!({
        "TableName": system_table("token_ring"),
        "KeyConditionExpression": "keyspace_name = :k",
        "ExpressionAttributeValues": {":k": {"S": format!("alternator_{table}")}},
        "Limit": PAGE_LIMIT,
    })
}

/// Query of `system.tablets` for one table id.
pub fn tablets_query(table_id: &str) -> Value {
    json!({
        "TableName": system_table("tablets"),
        "KeyConditionExpression": "table_id = :id",
        "ExpressionAttributeValues": {":id": {"S": table_id}},
        "Limit": PAGE_LIMIT,
    })
}

/// Scan of a whole (small) system table.
pub fn scan(table: &str) -> Value {
    json!({"TableName": system_table(table), "Limit": PAGE_LIMIT})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert!(classify(200, br#"{"Items":[]}"#).is_ok());
        assert!(classify(200, b"<html>").is_err_and(|e| e.is_unavailable()));
        assert!(classify(200, b"[]").is_err_and(|e| e.is_unavailable()));
        assert!(classify(503, b"busy").is_err_and(|e| e.is_unavailable()));
        assert!(classify(500, br#"{"__type":"x#InternalServerError"}"#)
            .is_err_and(|e| e.is_unavailable()));
        for (status, kind) in [
            (400, "MissingAuthenticationTokenException"),
            (400, "UnrecognizedClientException"),
            (400, "InvalidSignatureException"),
            (403, "AccessDeniedException"),
        ] {
            let body =
                format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"no"}}"#);
            assert!(
                matches!(
                    classify(status, body.as_bytes()),
                    Err(CallError::Refused { .. })
                ),
                "{kind}"
            );
        }
        assert!(matches!(classify(403, b""), Err(CallError::Refused { .. })));
        assert!(matches!(
            classify(
                400,
                br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"gone"}"#
            ),
            Err(CallError::NotFound(m)) if m == "gone"
        ));
        assert!(matches!(
            classify(400, br#"{"__type":"x#ValidationException","Message":"bad"}"#),
            Err(CallError::Rejected { kind, message, .. }) if kind == "ValidationException" && message == "bad"
        ));
        // A 400 that is not DynamoDB's JSON: some proxy in between; ask elsewhere.
        assert!(classify(400, b"Bad Request").is_err_and(|e| e.is_unavailable()));
    }

    #[test]
    fn queries_name_the_system_tables() {
        let q = token_ring_query("users");
        assert_eq!(q["TableName"], ".scylla.alternator.system.token_ring");
        assert_eq!(
            q["ExpressionAttributeValues"][":k"]["S"],
            "alternator_users"
        );
        let q = tablets_query("aaaaaaaa-0000-4000-8000-000000000001");
        assert_eq!(q["TableName"], ".scylla.alternator.system.tablets");
        assert_eq!(q["KeyConditionExpression"], "table_id = :id");
        assert_eq!(
            scan("peers")["TableName"],
            ".scylla.alternator.system.peers"
        );
    }
}
