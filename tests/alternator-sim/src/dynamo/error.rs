//! DynamoDB error responses: the `__type` / `message` body and the status code SDKs map to
//! exception classes.

use serde_json::{Map, Value};

/// The error classes the sim answers with. The `__type` prefix is the one Alternator uses for
/// all of them; SDKs only look at the part after `#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Validation,
    ResourceNotFound,
    ResourceInUse,
    ConditionalCheckFailed,
    TransactionCanceled,
    Serialization,
    UnknownOperation,
    MissingAuthenticationToken,
    UnrecognizedClient,
    InvalidSignature,
    InternalServerError,
    ServiceUnavailable,
    /// Alternator's answer to a request body over its 16 MiB limit (HTTP 413).
    PayloadTooLarge,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::ConditionalCheckFailed => "ConditionalCheckFailedException",
            ErrorKind::TransactionCanceled => "TransactionCanceledException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::InternalServerError => "InternalServerError",
            ErrorKind::ServiceUnavailable => "ServiceUnavailable",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InternalServerError => 500,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::PayloadTooLarge => 413,
            _ => 400,
        }
    }
}

/// One DynamoDB error answer.
#[derive(Debug, Clone)]
pub struct DynamoError {
    pub kind: ErrorKind,
    pub message: String,
    /// Extra top-level fields (the old `Item` of a failed condition, `CancellationReasons`).
    pub extra: Map<String, Value>,
}

impl DynamoError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DynamoError {
            kind,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    pub fn not_found(table: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!("Requested resource not found: Table: {table} not found"),
        )
    }

    pub fn condition_failed() -> Self {
        Self::new(
            ErrorKind::ConditionalCheckFailed,
            "The conditional request failed",
        )
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn to_body(&self) -> Vec<u8> {
        let mut body = Map::with_capacity(2 + self.extra.len());
        body.insert(
            "__type".into(),
            Value::String(format!(
                "com.amazonaws.dynamodb.v20120810#{}",
                self.kind.name()
            )),
        );
        body.insert("message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }
}

pub type DynamoResult<T> = Result<T, DynamoError>;
