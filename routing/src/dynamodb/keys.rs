//! What key extraction hands to affinity: the partition key(s) a request routes by, or the
//! reason it does not.
//!
//! [`affinity_keys`] is the entry point the filter calls once the body has arrived. It applies
//! the mode's classification and then extracts, so that a request the mode does not route can
//! never yield a key. Every way of not routing by key is a [`NoAffinity`] value with a stable
//! metric label, never a failed request.

use std::borrow::Cow;

use super::batch::batch_write_keys;
use super::item::RequestFields;
use super::{needs_body, AffinityMode, KeySchemas, Operation};
use crate::hash::{affinity_hash, KeyType};

/// Why a request is routed without affinity. Not an error: the request proceeds normally.
/// [`NoAffinity::as_str`] is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoAffinity {
    /// The mode, the operation or the request's conditions do not qualify.
    NotEligible,
    /// The body is not a JSON object (or is truncated, or nests too deeply).
    MalformedBody,
    /// No string `TableName`.
    MissingTableName,
    /// The table's HASH-key attribute name is not known (not configured, not learned yet).
    UnknownTable,
    /// The item or key has no value for the HASH-key attribute.
    MissingKey,
    /// The HASH-key value is of a type affinity does not hash (BOOL, NULL, sets, L, M).
    UnsupportedKeyType,
    /// The HASH-key value is not a well-formed `S`, `N` or `B` attribute value (for example
    /// invalid base64, a non-string payload or several type tags).
    MalformedKeyValue,
    /// A `BatchWriteItem` with no usable put or delete.
    NoUsableTarget,
    /// There is no candidate node to route to.
    NoCandidates,
}

impl NoAffinity {
    /// A stable `snake_case` label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoAffinity::NotEligible => "not_eligible",
            NoAffinity::MalformedBody => "malformed_body",
            NoAffinity::MissingTableName => "missing_table_name",
            NoAffinity::UnknownTable => "unknown_table",
            NoAffinity::MissingKey => "missing_key",
            NoAffinity::UnsupportedKeyType => "unsupported_key_type",
            NoAffinity::MalformedKeyValue => "malformed_key_value",
            NoAffinity::NoUsableTarget => "no_usable_target",
            NoAffinity::NoCandidates => "no_candidates",
        }
    }
}

impl std::fmt::Display for NoAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A partition-key value found in a request, borrowed from the body where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey<'a> {
    /// The table the item belongs to.
    pub table: Cow<'a, str>,
    /// The value's DynamoDB type.
    pub key_type: KeyType,
    /// The bytes affinity hashes: UTF-8 text for `S`, the exact number text for `N`, the
    /// decoded bytes for `B`.
    pub value: Cow<'a, [u8]>,
}

impl PartitionKey<'_> {
    /// The key's affinity hash, the seed of its seeded plan.
    pub fn affinity_hash(&self) -> i64 {
        affinity_hash(self.key_type, &self.value)
    }
}

/// The partition keys an affinity-eligible request routes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AffinityKeys<'a> {
    /// A qualifying `PutItem`, `UpdateItem` or `DeleteItem`.
    Single(PartitionKey<'a>),
    /// A `BatchWriteItem`: one key per usable put or delete (at least one), in body order.
    Batch {
        /// The usable targets' keys.
        keys: Vec<PartitionKey<'a>>,
        /// Write requests that were skipped (unknown table, missing or unsupported key, ...).
        skipped: usize,
    },
}

/// Decides whether a request is routed by key and, if so, extracts the key(s): the mode's
/// classification (`key-route-affinity.md`, AFF-REQ-001) followed by key extraction.
///
/// `body` is the complete request body. Never fails the request: every reason not to use
/// affinity is a [`NoAffinity`].
pub fn affinity_keys<'a>(
    mode: AffinityMode,
    op: Operation,
    body: &'a [u8],
    schemas: &impl KeySchemas,
) -> Result<AffinityKeys<'a>, NoAffinity> {
    if !needs_body(mode, op) {
        return Err(NoAffinity::NotEligible);
    }
    if op == Operation::BatchWriteItem {
        // needs_body admitted BatchWriteItem only under ANY_WRITE.
        return batch_write_keys(body, schemas)
            .map(|(keys, skipped)| AffinityKeys::Batch { keys, skipped });
    }
    let fields = RequestFields::scan(body)?;
    if mode == AffinityMode::Rmw && !fields.reads_before_write(op) {
        return Err(NoAffinity::NotEligible);
    }
    fields.item_key(op, schemas).map(AffinityKeys::Single)
}
