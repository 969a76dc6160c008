//! DynamoDB requests as routing sees them: the operation, whether key-route affinity applies,
//! and the partition-key values that affinity hashes.
//!
//! The rules are those of the official clients' "Key-route affinity" spec
//! (`key-route-affinity.md`, requirement AFF-REQ-001 and the RMW table): [`AffinityMode::None`]
//! never routes by key; [`AffinityMode::AnyWrite`] routes every `PutItem`, `UpdateItem` and
//! `DeleteItem` and every `BatchWriteItem` with at least one usable put or delete;
//! [`AffinityMode::Rmw`] routes only the single-item writes that read before writing.
//!
//! Request bodies are read with a small skipping scanner rather than a JSON tree: routing needs
//! `TableName`, the one HASH-key attribute and a handful of RMW markers, while a `PutItem` body
//! is mostly item attributes that only need to be stepped over. Strings are borrowed from the
//! body unless they contain escapes, which are decoded exactly as JSON defines them (a key
//! written `"\u00e9"` hashes the same as one written `"é"`).
//!
//! Nothing here fails a request: a body that cannot be used yields a [`NoAffinity`] reason (a
//! metric label) and the caller routes the request normally.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::hash::{affinity_hash, KeyType};

/// The `X-Amz-Target` prefix of DynamoDB API version 2012-08-10.
pub const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// A DynamoDB operation, named by the `X-Amz-Target` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `PutItem`
    PutItem,
    /// `GetItem`
    GetItem,
    /// `UpdateItem`
    UpdateItem,
    /// `DeleteItem`
    DeleteItem,
    /// `BatchWriteItem`
    BatchWriteItem,
    /// `BatchGetItem`
    BatchGetItem,
    /// `Query`
    Query,
    /// `Scan`
    Scan,
    /// `TransactWriteItems`
    TransactWriteItems,
    /// `TransactGetItems`
    TransactGetItems,
    /// `CreateTable`
    CreateTable,
    /// `DescribeTable`
    DescribeTable,
    /// `UpdateTable`
    UpdateTable,
    /// `DeleteTable`
    DeleteTable,
    /// `ListTables`
    ListTables,
    /// `DescribeEndpoints`
    DescribeEndpoints,
    /// `DescribeTimeToLive`
    DescribeTimeToLive,
    /// `UpdateTimeToLive`
    UpdateTimeToLive,
    /// `TagResource`
    TagResource,
    /// `UntagResource`
    UntagResource,
    /// `ListTagsOfResource`
    ListTagsOfResource,
    /// Any other or unknown operation, or a target that is not DynamoDB 2012-08-10.
    Other,
}

/// Every named operation with its wire name, for parsing and metric labels.
const OPERATIONS: [(Operation, &str); 21] = [
    (Operation::PutItem, "PutItem"),
    (Operation::GetItem, "GetItem"),
    (Operation::UpdateItem, "UpdateItem"),
    (Operation::DeleteItem, "DeleteItem"),
    (Operation::BatchWriteItem, "BatchWriteItem"),
    (Operation::BatchGetItem, "BatchGetItem"),
    (Operation::Query, "Query"),
    (Operation::Scan, "Scan"),
    (Operation::TransactWriteItems, "TransactWriteItems"),
    (Operation::TransactGetItems, "TransactGetItems"),
    (Operation::CreateTable, "CreateTable"),
    (Operation::DescribeTable, "DescribeTable"),
    (Operation::UpdateTable, "UpdateTable"),
    (Operation::DeleteTable, "DeleteTable"),
    (Operation::ListTables, "ListTables"),
    (Operation::DescribeEndpoints, "DescribeEndpoints"),
    (Operation::DescribeTimeToLive, "DescribeTimeToLive"),
    (Operation::UpdateTimeToLive, "UpdateTimeToLive"),
    (Operation::TagResource, "TagResource"),
    (Operation::UntagResource, "UntagResource"),
    (Operation::ListTagsOfResource, "ListTagsOfResource"),
];

impl Operation {
    /// The operation named by an `X-Amz-Target` header value such as
    /// `DynamoDB_20120810.PutItem`. Anything else, including a missing prefix, another API
    /// version or an operation this crate does not name, is [`Operation::Other`]: an unknown
    /// target is ordinary traffic, never an error.
    pub fn from_target(target: &str) -> Operation {
        match target.strip_prefix(TARGET_PREFIX) {
            Some(name) => Operation::from_name(name),
            None => Operation::Other,
        }
    }

    /// The operation with this exact (case-sensitive) name, or [`Operation::Other`].
    pub fn from_name(name: &str) -> Operation {
        OPERATIONS
            .iter()
            .find(|(_, n)| *n == name)
            .map_or(Operation::Other, |(op, _)| *op)
    }

    /// The wire name (`"PutItem"`), or `"Other"`; suitable as a metric label.
    pub fn as_str(self) -> &'static str {
        OPERATIONS
            .iter()
            .find(|(op, _)| *op == self)
            .map_or("Other", |(_, n)| n)
    }

    /// `PutItem`, `UpdateItem` or `DeleteItem`: the writes that affinity may route by one key.
    pub fn is_single_item_write(self) -> bool {
        matches!(
            self,
            Operation::PutItem | Operation::UpdateItem | Operation::DeleteItem
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which requests key-route affinity routes by partition key (`key-route-affinity.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinityMode {
    /// Affinity off (the spec's default): every request is routed normally.
    #[default]
    None,
    /// Read-modify-write: only single-item writes that read existing state (conditions,
    /// `ReturnValues` needing the old item, update expressions, legacy `ADD`/`DELETE`).
    Rmw,
    /// Every `PutItem`, `UpdateItem` and `DeleteItem`, and `BatchWriteItem` by vote.
    AnyWrite,
}

/// A configuration value that is not an affinity mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key-route affinity mode {0:?}: expected NONE, RMW or ANY_WRITE")]
pub struct UnknownAffinityMode(pub String);

impl std::str::FromStr for AffinityMode {
    type Err = UnknownAffinityMode;

    /// Accepts the spec's names `NONE`, `RMW` and `ANY_WRITE`, in any ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("NONE") {
            Ok(AffinityMode::None)
        } else if s.eq_ignore_ascii_case("RMW") {
            Ok(AffinityMode::Rmw)
        } else if s.eq_ignore_ascii_case("ANY_WRITE") {
            Ok(AffinityMode::AnyWrite)
        } else {
            Err(UnknownAffinityMode(s.to_owned()))
        }
    }
}

impl AffinityMode {
    /// The spec's name of the mode (`NONE`, `RMW`, `ANY_WRITE`).
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityMode::None => "NONE",
            AffinityMode::Rmw => "RMW",
            AffinityMode::AnyWrite => "ANY_WRITE",
        }
    }
}

/// Whether the request body must be read before this request can be routed: true exactly for
/// the operations that affinity may route in this mode. The filter asks this in the headers
/// callback and buffers the body only when it is true; everything else is routed at once.
///
/// Learning key schemas is separate: see [`learns_key_schema`].
pub fn needs_body(mode: AffinityMode, op: Operation) -> bool {
    match mode {
        AffinityMode::None => false,
        AffinityMode::Rmw => op.is_single_item_write(),
        AffinityMode::AnyWrite => op.is_single_item_write() || op == Operation::BatchWriteItem,
    }
}

/// Whether the *response* of this request describes a table's key schema that affinity can
/// learn from ([`table_description_key_schema`]): `CreateTable` and `DescribeTable`, and only
/// while affinity is on (the spec forbids discovering metadata solely for a disabled feature).
pub fn learns_key_schema(mode: AffinityMode, op: Operation) -> bool {
    mode != AffinityMode::None && matches!(op, Operation::CreateTable | Operation::DescribeTable)
}

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

/// Where the HASH-key attribute name of each table comes from: preconfigured mappings and
/// names learned from `CreateTable`/`DescribeTable`.
pub trait KeySchemas {
    /// The HASH-key attribute name of `table`, if known.
    fn hash_key(&self, table: &str) -> Option<&str>;
}

impl<S: BuildHasher> KeySchemas for HashMap<String, String, S> {
    fn hash_key(&self, table: &str) -> Option<&str> {
        self.get(table).map(String::as_str)
    }
}

impl KeySchemas for BTreeMap<String, String> {
    fn hash_key(&self, table: &str) -> Option<&str> {
        self.get(table).map(String::as_str)
    }
}

impl<T: KeySchemas + ?Sized> KeySchemas for &T {
    fn hash_key(&self, table: &str) -> Option<&str> {
        (**self).hash_key(table)
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

/// Whether a single-item write reads existing state, per the RMW table of
/// `key-route-affinity.md`. `body` is the complete request body; a body that cannot be read
/// does not qualify. Other operations never qualify.
pub fn reads_before_write(op: Operation, body: &[u8]) -> bool {
    RequestFields::scan(body).is_ok_and(|f| f.reads_before_write(op))
}

/// The HASH-key value of a `PutItem` (`Item`) or `GetItem`/`UpdateItem`/`DeleteItem` (`Key`)
/// request, regardless of affinity mode. Other operations are [`NoAffinity::NotEligible`].
pub fn item_key<'a>(
    op: Operation,
    body: &'a [u8],
    schemas: &impl KeySchemas,
) -> Result<PartitionKey<'a>, NoAffinity> {
    RequestFields::scan(body)?.item_key(op, schemas)
}

/// The HASH-key values of every usable `PutRequest`/`DeleteRequest` of a `BatchWriteItem`
/// body, in body order, and the number of write requests skipped. A write request is usable
/// when it has exactly one of the two shapes, its table's key name is known and its key value
/// is a well-formed `S`, `N` or `B`. No usable target is an error: the reason of the first
/// skipped request, or [`NoAffinity::NoUsableTarget`] for an empty batch.
pub fn batch_write_keys<'a>(
    body: &'a [u8],
    schemas: &impl KeySchemas,
) -> Result<(Vec<PartitionKey<'a>>, usize), NoAffinity> {
    // One pass: the writes are read where they stand, each item only up to its key.
    let mut batch = BatchKeys::default();
    let mut seen = false;
    let mut s = json::Scanner::lenient(body);
    s.object(|s, name| {
        if !seen && *name.bytes() == *b"RequestItems" {
            seen = true;
            batch.read_request_items(s, schemas)
        } else {
            s.skip_value()
        }
    })
    .and_then(|()| s.finish())
    .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
    batch.finish()
}

/// A table and the name of its HASH-key attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableHashKey {
    /// Table name.
    pub table: String,
    /// HASH-key (partition-key) attribute name.
    pub hash_key: String,
}

/// The table and HASH-key name declared by a `CreateTable` *request* body (`TableName` and the
/// `KeySchema` element whose `KeyType` is `HASH`). `None` if the body does not declare both.
///
/// Prefer learning from the response ([`table_description_key_schema`]): a request can fail.
pub fn create_table_key_schema(body: &[u8]) -> Option<TableHashKey> {
    key_schema_of_object(body)
}

/// The table and HASH-key name in a `DescribeTable` response (`{"Table": {...}}`) or a
/// `CreateTable` response (`{"TableDescription": {...}}`). `None` if absent or malformed.
pub fn table_description_key_schema(body: &[u8]) -> Option<TableHashKey> {
    let mut s = json::Scanner::new(body);
    let mut description: Option<&[u8]> = None;
    s.object(|s, name| {
        let is_description = matches!(&*name.bytes(), b"Table" | b"TableDescription");
        let span = s.value_span()?;
        if is_description && description.is_none() {
            description = Some(span);
        }
        Ok(())
    })
    .ok()?;
    s.finish().ok()?;
    key_schema_of_object(description?)
}

/// `TableName` and the HASH element of `KeySchema` from one JSON object.
fn key_schema_of_object(object: &[u8]) -> Option<TableHashKey> {
    let mut s = json::Scanner::new(object);
    let mut table: Option<String> = None;
    let mut hash_key: Option<String> = None;
    s.object(|s, name| {
        match &*name.bytes() {
            b"TableName" if table.is_none() => {
                table = s
                    .string_value()?
                    .and_then(|v| v.text().map(Cow::into_owned));
            }
            b"KeySchema" if hash_key.is_none() => {
                s.array(|s| {
                    let mut attribute: Option<String> = None;
                    let mut is_hash = false;
                    s.object(|s, field| {
                        match &*field.bytes() {
                            b"AttributeName" => {
                                attribute = s
                                    .string_value()?
                                    .and_then(|v| v.text().map(Cow::into_owned));
                            }
                            b"KeyType" => {
                                is_hash = s.string_value()?.is_some_and(|v| v.eq_str("HASH"));
                            }
                            _ => s.skip_value()?,
                        }
                        Ok(())
                    })?;
                    if is_hash && hash_key.is_none() {
                        hash_key = attribute;
                    }
                    Ok(())
                })?;
            }
            _ => s.skip_value()?,
        }
        Ok(())
    })
    .ok()?;
    s.finish().ok()?;
    match (table, hash_key) {
        (Some(table), Some(hash_key)) if !table.is_empty() && !hash_key.is_empty() => {
            Some(TableHashKey { table, hash_key })
        }
        _ => None,
    }
}

/// `ReturnValues` as far as classification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReturnValues {
    None,
    /// `ALL_OLD`, `UPDATED_OLD` or `ALL_NEW`: the old item must be read.
    NeedsOldItem,
    UpdatedNew,
    /// Any other string, including the empty string.
    Other,
}

/// The top-level members of a request body that routing reads. Values are kept as spans of
/// the body so that the key can be found once `TableName` is known, wherever it appears (SDKs
/// differ: some write `TableName` first, some last).
#[derive(Debug, Default)]
struct RequestFields<'a> {
    table_name: Option<json::Str<'a>>,
    item: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
    attribute_updates: Option<&'a [u8]>,
    condition_expression: bool,
    expected: bool,
    update_expression: bool,
    return_values: Option<ReturnValues>,
}

impl<'a> RequestFields<'a> {
    /// One pass over the top-level object. Duplicate members: the first wins, as in
    /// Alternator's own request parsing.
    fn scan(body: &'a [u8]) -> Result<Self, NoAffinity> {
        let mut f = RequestFields::default();
        let mut seen_return_values = false;
        let mut s = json::Scanner::lenient(body);
        let result = s.object(|s, name| {
            match &*name.bytes() {
                b"TableName" if f.table_name.is_none() => {
                    f.table_name = s.string_value()?;
                }
                b"Item" if f.item.is_none() => f.item = Some(s.value_span()?),
                b"Key" if f.key.is_none() => f.key = Some(s.value_span()?),
                b"AttributeUpdates" if f.attribute_updates.is_none() => {
                    f.attribute_updates = Some(s.value_span()?);
                }
                b"ConditionExpression" => {
                    f.condition_expression |= s.string_value()?.is_some_and(|v| !v.is_empty());
                }
                b"UpdateExpression" => {
                    f.update_expression |= s.string_value()?.is_some_and(|v| !v.is_empty());
                }
                b"Expected" => f.expected |= s.object_is_non_empty()?,
                b"ReturnValues" if !seen_return_values => {
                    seen_return_values = true;
                    f.return_values = s.string_value()?.map(|v| {
                        if v.eq_str("NONE") {
                            ReturnValues::None
                        } else if v.eq_str("ALL_OLD")
                            || v.eq_str("UPDATED_OLD")
                            || v.eq_str("ALL_NEW")
                        {
                            ReturnValues::NeedsOldItem
                        } else if v.eq_str("UPDATED_NEW") {
                            ReturnValues::UpdatedNew
                        } else {
                            ReturnValues::Other
                        }
                    });
                }
                _ => s.skip_value()?,
            }
            Ok(())
        });
        result
            .and_then(|()| s.finish())
            .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
        Ok(f)
    }

    /// The RMW table of `key-route-affinity.md`.
    fn reads_before_write(&self, op: Operation) -> bool {
        let conditional = self.condition_expression || self.expected;
        match op {
            Operation::PutItem | Operation::DeleteItem => {
                conditional
                    || matches!(
                        self.return_values,
                        Some(
                            ReturnValues::NeedsOldItem
                                | ReturnValues::UpdatedNew
                                | ReturnValues::Other
                        )
                    )
            }
            Operation::UpdateItem => {
                conditional
                    || self.update_expression
                    || self.return_values == Some(ReturnValues::NeedsOldItem)
                    || self.attribute_updates.is_some_and(legacy_update_reads)
            }
            _ => false,
        }
    }

    fn item_key(
        &self,
        op: Operation,
        schemas: &impl KeySchemas,
    ) -> Result<PartitionKey<'a>, NoAffinity> {
        let attributes = match op {
            Operation::PutItem => self.item,
            Operation::GetItem | Operation::UpdateItem | Operation::DeleteItem => self.key,
            _ => return Err(NoAffinity::NotEligible),
        };
        let table = self
            .table_name
            .and_then(|t| t.text())
            .ok_or(NoAffinity::MissingTableName)?;
        let key_name = schemas.hash_key(&table).ok_or(NoAffinity::UnknownTable)?;
        let attributes = attributes.ok_or(NoAffinity::MissingKey)?;
        let (key_type, value) = key_value_in(attributes, key_name)?;
        Ok(PartitionKey {
            table,
            key_type,
            value,
        })
    }
}

/// Legacy `AttributeUpdates` reads before writing when an update is `ADD`, or `DELETE` with a
/// `Value` (removing elements from a set); `PUT` and a bare `DELETE` do not.
fn legacy_update_reads(span: &[u8]) -> bool {
    let mut found = false;
    let mut s = json::Scanner::lenient(span);
    let scanned = s.object(|s, _attribute| {
        if s.peek() != Some(b'{') {
            return s.skip_value();
        }
        let mut add = false;
        let mut delete = false;
        let mut has_value = false;
        s.object(|s, field| {
            match &*field.bytes() {
                b"Action" => {
                    let action = s.string_value()?;
                    add = action.is_some_and(|a| a.eq_str("ADD"));
                    delete = action.is_some_and(|a| a.eq_str("DELETE"));
                }
                b"Value" => {
                    has_value = s.peek() != Some(b'n');
                    s.skip_value()?;
                }
                _ => s.skip_value()?,
            }
            Ok(())
        })?;
        found |= add || (delete && has_value);
        Ok(())
    });
    scanned.is_ok() && found
}

/// Finds attribute `key_name` in an attribute map (`Item` or `Key`) and reads its value.
fn key_value_in<'a>(attributes: &'a [u8], key_name: &str) -> Result<TypedKey<'a>, NoAffinity> {
    // Stop at the key: what follows in the map does not matter for routing.
    let value = json::Scanner::lenient(attributes)
        .find_member(key_name)
        .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
    attribute_value(value.ok_or(NoAffinity::MissingKey)?)
}

/// A key value's type and hashed bytes.
type TypedKey<'a> = (KeyType, Cow<'a, [u8]>);

/// Reads a DynamoDB `AttributeValue` (`{"S": "..."}`) usable as an affinity key.
fn attribute_value(span: &[u8]) -> Result<TypedKey<'_>, NoAffinity> {
    // The shape SDKs write, `{"S":"..."}` with nothing else, read directly; the general
    // reading below gives the same answer for it.
    if let Some((tag, text)) = json::Scanner::compact_tagged_string(span) {
        let key_type = match tag {
            b'S' => Some(KeyType::S),
            b'N' => Some(KeyType::N),
            b'B' => Some(KeyType::B),
            _ => None,
        };
        if let Some(key_type) = key_type {
            return typed_bytes(key_type, text).map(|bytes| (key_type, bytes));
        }
    }
    let mut s = json::Scanner::lenient(span);
    if s.peek() != Some(b'{') {
        return Err(NoAffinity::MalformedKeyValue);
    }
    let mut members = 0usize;
    let mut found: Option<Result<TypedKey<'_>, NoAffinity>> = None;
    s.object(|s, tag| {
        members += 1;
        let tag = tag.bytes();
        let key_type = match &*tag {
            b"S" => Some(KeyType::S),
            b"N" => Some(KeyType::N),
            b"B" => Some(KeyType::B),
            _ => None,
        };
        let outcome = match key_type {
            Some(key_type) => match s.string_value()? {
                Some(text) => typed_bytes(key_type, text).map(|bytes| (key_type, bytes)),
                None => Err(NoAffinity::MalformedKeyValue),
            },
            None => {
                s.skip_value()?;
                match &*tag {
                    b"BOOL" | b"NULL" | b"SS" | b"NS" | b"BS" | b"L" | b"M" => {
                        Err(NoAffinity::UnsupportedKeyType)
                    }
                    _ => Err(NoAffinity::MalformedKeyValue),
                }
            }
        };
        found.get_or_insert(outcome);
        Ok(())
    })
    .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
    match (members, found) {
        (1, Some(outcome)) => outcome,
        _ => Err(NoAffinity::MalformedKeyValue),
    }
}

/// The hashed bytes of an `S`, `N` or `B` payload.
fn typed_bytes(key_type: KeyType, text: json::Str<'_>) -> Result<Cow<'_, [u8]>, NoAffinity> {
    let text = text.text_bytes().ok_or(NoAffinity::MalformedKeyValue)?;
    match key_type {
        KeyType::S | KeyType::N => Ok(text),
        KeyType::B => {
            use base64::Engine as _;
            BASE64
                .decode(&*text)
                .map(Cow::Owned)
                .map_err(|_| NoAffinity::MalformedKeyValue)
        }
    }
}

/// Standard-alphabet base64, padded or not: the bytes are what the service would store, and
/// SDKs differ in padding habits.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The keys of a `BatchWriteItem`, collected while its `RequestItems` are read.
#[derive(Debug, Default)]
struct BatchKeys<'a> {
    keys: Vec<PartitionKey<'a>>,
    skipped: usize,
    first_skip: Option<NoAffinity>,
}

impl<'a> BatchKeys<'a> {
    fn skip(&mut self, reason: NoAffinity) {
        self.skipped += 1;
        self.first_skip.get_or_insert(reason);
    }

    /// Reads `RequestItems` (`{"table": [{"PutRequest": {"Item": {...}}}, ...]}`).
    fn read_request_items(
        &mut self,
        s: &mut json::Scanner<'a>,
        schemas: &impl KeySchemas,
    ) -> json::Result<()> {
        s.object(|s, table| {
            let table = table.text();
            let key_name = table.as_deref().and_then(|t| schemas.hash_key(t));
            if s.peek() != Some(b'[') {
                self.skip(NoAffinity::MalformedBody);
                return s.skip_value();
            }
            s.array(|s| {
                let Some(value) = write_request_key(s, key_name)? else {
                    self.skip(NoAffinity::MalformedBody);
                    return Ok(());
                };
                let Some(table) = &table else {
                    self.skip(NoAffinity::MissingTableName);
                    return Ok(());
                };
                if key_name.is_none() {
                    self.skip(NoAffinity::UnknownTable);
                    return Ok(());
                }
                match value
                    .ok_or(NoAffinity::MissingKey)
                    .and_then(attribute_value)
                {
                    Ok((key_type, value)) => self.keys.push(PartitionKey {
                        table: table.clone(),
                        key_type,
                        value,
                    }),
                    Err(reason) => self.skip(reason),
                }
                Ok(())
            })
        })
    }

    fn finish(self) -> Result<(Vec<PartitionKey<'a>>, usize), NoAffinity> {
        if self.keys.is_empty() {
            return Err(self.first_skip.unwrap_or(NoAffinity::NoUsableTarget));
        }
        Ok((self.keys, self.skipped))
    }
}

/// Reads one `WriteRequest`. `None` when it does not have exactly one of the `PutRequest`
/// and `DeleteRequest` shapes with an attribute map (`Item`, `Key`) inside; otherwise the span
/// of the `key_name` attribute's value, if the map has one (always `None` when the key name
/// is unknown). Attributes other than the key are stepped over, not read.
#[allow(clippy::option_option)]
fn write_request_key<'a>(
    s: &mut json::Scanner<'a>,
    key_name: Option<&str>,
) -> json::Result<Option<Option<&'a [u8]>>> {
    if s.peek() != Some(b'{') {
        s.skip_value()?;
        return Ok(None);
    }
    let mut shapes = 0usize;
    let mut has_map = false;
    let mut value: Option<&'a [u8]> = None;
    s.object(|s, shape| {
        let field: &[u8] = match &*shape.bytes() {
            b"PutRequest" => b"Item",
            b"DeleteRequest" => b"Key",
            _ => return s.skip_value(),
        };
        shapes += 1;
        if s.peek() != Some(b'{') {
            return s.skip_value();
        }
        s.object(|s, name| {
            if has_map || *name.bytes() != *field || s.peek() != Some(b'{') {
                return s.skip_value();
            }
            has_map = true;
            s.object(|s, attribute| {
                if value.is_none() && key_name.is_some_and(|k| attribute.eq_str(k)) {
                    value = Some(s.value_span()?);
                    Ok(())
                } else {
                    s.skip_value()
                }
            })
        })
    })?;
    Ok((shapes == 1 && has_map).then_some(value))
}

/// A minimal JSON reader that builds nothing.
///
/// Two modes. A *validating* scanner checks every byte it passes (used for key-schema
/// documents, which are rare and feed a cache). A *lenient* scanner, used on the request path,
/// checks the structure it walks through and every string it returns, but steps over the
/// values it does not need by counting quotes and brackets: for valid JSON that finds exactly
/// the same value boundaries, and an error hidden inside a skipped value is the service's to
/// report, not routing's. Neither mode recurses more than [`MAX_DEPTH`] levels or panics.
///
/// Both search string contents eight bytes at a time ([`crate::swar`]): on the request path
/// most of a body is string contents, often one long attribute value.
mod json {
    use std::borrow::Cow;

    use crate::swar;

    /// The input is not the JSON this reader expects (syntax error, truncation, too deep).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Malformed;

    pub(super) type Result<T> = std::result::Result<T, Malformed>;

    /// Deepest nesting accepted. DynamoDB allows 32 levels of attribute values (two JSON
    /// levels each) plus a few request levels; the bound keeps recursion safe on any input.
    const MAX_DEPTH: u32 = 128;

    /// A JSON string as it appears in the input, between the quotes.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Str<'a> {
        raw: &'a [u8],
        escaped: bool,
    }

    impl<'a> Str<'a> {
        pub(super) fn is_empty(&self) -> bool {
            self.raw.is_empty()
        }

        /// The decoded bytes, borrowed when there is nothing to unescape. A string that cannot
        /// be decoded (lone surrogate) yields a lone `0xff` byte, which is not UTF-8 and so
        /// never equals a member name a caller looks for.
        pub(super) fn bytes(&self) -> Cow<'a, [u8]> {
            if !self.escaped {
                return Cow::Borrowed(self.raw);
            }
            match unescape(self.raw) {
                Some(s) => Cow::Owned(s.into_bytes()),
                None => Cow::Owned(vec![0xff]),
            }
        }

        /// The decoded text; `None` if it is not valid UTF-8 or has a bad escape.
        pub(super) fn text(&self) -> Option<Cow<'a, str>> {
            if self.escaped {
                unescape(self.raw).map(Cow::Owned)
            } else {
                std::str::from_utf8(self.raw).ok().map(Cow::Borrowed)
            }
        }

        /// The bytes of [`Str::text`]: the same `None` cases, without building a `str`.
        pub(super) fn text_bytes(&self) -> Option<Cow<'a, [u8]>> {
            if self.escaped {
                unescape(self.raw).map(|s| Cow::Owned(s.into_bytes()))
            } else if swar::is_ascii(self.raw) || std::str::from_utf8(self.raw).is_ok() {
                Some(Cow::Borrowed(self.raw))
            } else {
                None
            }
        }

        pub(super) fn eq_str(&self, s: &str) -> bool {
            if self.escaped {
                unescape(self.raw).is_some_and(|d| d == s)
            } else {
                self.raw == s.as_bytes()
            }
        }
    }

    /// Decodes the escapes of a string body that [`Scanner`] already validated
    /// syntactically. Returns `None` for invalid UTF-8 or a lone surrogate.
    fn unescape(raw: &[u8]) -> Option<String> {
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b != b'\\' {
                out.push(b);
                i += 1;
                continue;
            }
            let e = *raw.get(i + 1)?;
            i += 2;
            let c = match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = hex4(raw.get(i..i + 4)?)?;
                    i += 4;
                    let code = if (0xD800..0xDC00).contains(&hi) {
                        if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                            return None;
                        }
                        let lo = hex4(raw.get(i + 2..i + 6)?)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return None;
                        }
                        i += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    char::from_u32(code)?
                }
                _ => return None,
            };
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        String::from_utf8(out).ok()
    }

    fn hex4(digits: &[u8]) -> Option<u32> {
        digits.iter().try_fold(0u32, |acc, &d| {
            let v = (d as char).to_digit(16)?;
            Some(acc * 16 + v)
        })
    }

    /// How [`Scanner::skip_lenient`] treats a byte.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Class {
        Plain,
        Quote,
        Open,
        Close,
        Comma,
    }

    const LENIENT_CLASS: [Class; 256] = {
        let mut table = [Class::Plain; 256];
        table[b'"' as usize] = Class::Quote;
        table[b'{' as usize] = Class::Open;
        table[b'[' as usize] = Class::Open;
        table[b'}' as usize] = Class::Close;
        table[b']' as usize] = Class::Close;
        table[b',' as usize] = Class::Comma;
        table
    };

    pub(super) struct Scanner<'a> {
        input: &'a [u8],
        pos: usize,
        depth: u32,
        lenient: bool,
    }

    impl<'a> Scanner<'a> {
        pub(super) fn new(input: &'a [u8]) -> Self {
            Scanner {
                input,
                pos: 0,
                depth: 0,
                lenient: false,
            }
        }

        /// A lenient scanner: values it skips are stepped over, not validated.
        pub(super) fn lenient(input: &'a [u8]) -> Self {
            Scanner {
                lenient: true,
                ..Scanner::new(input)
            }
        }

        #[inline]
        fn skip_ws(&mut self) {
            // Compact JSON is the common case: one comparison rules out every whitespace byte.
            while let Some(&b) = self.input.get(self.pos) {
                if b > b' ' || !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                self.pos += 1;
            }
        }

        /// The first byte of the next token.
        #[inline]
        pub(super) fn peek(&mut self) -> Option<u8> {
            self.skip_ws();
            self.input.get(self.pos).copied()
        }

        #[inline]
        fn eat(&mut self, byte: u8) -> Result<()> {
            if self.peek() == Some(byte) {
                self.pos += 1;
                Ok(())
            } else {
                Err(Malformed)
            }
        }

        /// Only whitespace may follow the value just read.
        pub(super) fn finish(&mut self) -> Result<()> {
            match self.peek() {
                None => Ok(()),
                Some(_) => Err(Malformed),
            }
        }

        fn enter(&mut self) -> Result<()> {
            if self.depth >= MAX_DEPTH {
                return Err(Malformed);
            }
            self.depth += 1;
            Ok(())
        }

        /// Reads an object, calling `member` with each member name; `member` must consume the
        /// value.
        pub(super) fn object(
            &mut self,
            mut member: impl FnMut(&mut Self, Str<'a>) -> Result<()>,
        ) -> Result<()> {
            self.eat(b'{')?;
            self.enter()?;
            if self.peek() == Some(b'}') {
                self.pos += 1;
                self.depth -= 1;
                return Ok(());
            }
            loop {
                let name = self.string()?;
                self.eat(b':')?;
                member(self, name)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        self.depth -= 1;
                        return Ok(());
                    }
                    _ => return Err(Malformed),
                }
            }
        }

        /// Reads an array, calling `element` once per element; `element` must consume it.
        pub(super) fn array(
            &mut self,
            mut element: impl FnMut(&mut Self) -> Result<()>,
        ) -> Result<()> {
            self.eat(b'[')?;
            self.enter()?;
            if self.peek() == Some(b']') {
                self.pos += 1;
                self.depth -= 1;
                return Ok(());
            }
            loop {
                element(self)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        self.depth -= 1;
                        return Ok(());
                    }
                    _ => return Err(Malformed),
                }
            }
        }

        /// Reads a string token.
        fn string(&mut self) -> Result<Str<'a>> {
            self.eat(b'"')?;
            self.string_body()
        }

        /// Reads the rest of a string token whose opening quote was just consumed.
        #[inline]
        fn string_body(&mut self) -> Result<Str<'a>> {
            let input = self.input;
            let start = self.pos;
            let mut i = start;
            let mut escaped = false;
            loop {
                // Plain bytes are the common case: step over a run of them at once.
                i = swar::find_string_special(input, i).ok_or(Malformed)?;
                match input.get(i) {
                    Some(b'"') => {
                        let raw = input.get(start..i).ok_or(Malformed)?;
                        self.pos = i + 1;
                        return Ok(Str { raw, escaped });
                    }
                    Some(b'\\') => {
                        escaped = true;
                        match input.get(i + 1) {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                            Some(b'u') => {
                                let digits = input.get(i + 2..i + 6).ok_or(Malformed)?;
                                if !digits.iter().all(u8::is_ascii_hexdigit) {
                                    return Err(Malformed);
                                }
                                i += 6;
                            }
                            _ => return Err(Malformed),
                        }
                    }
                    // A control character (find_string_special stops at nothing else).
                    _ => return Err(Malformed),
                }
            }
        }

        /// Reads a value that should be a string: `Some` if it is, `None` (value skipped) if
        /// it is another JSON value.
        pub(super) fn string_value(&mut self) -> Result<Option<Str<'a>>> {
            if self.peek() == Some(b'"') {
                self.pos += 1;
                self.string_body().map(Some)
            } else {
                self.skip_value().map(|()| None)
            }
        }

        /// Reads a value; true if it is an object with at least one member.
        pub(super) fn object_is_non_empty(&mut self) -> Result<bool> {
            if self.peek() != Some(b'{') {
                return self.skip_value().map(|()| false);
            }
            let mut members = 0usize;
            self.object(|s, _| {
                members += 1;
                s.skip_value()
            })?;
            Ok(members > 0)
        }

        /// `{"T":"..."}` with a one-byte tag and no whitespace, exactly filling `input`: the
        /// tag and the (valid) string. `None` for anything else, valid or not.
        pub(super) fn compact_tagged_string(input: &'a [u8]) -> Option<(u8, Str<'a>)> {
            let [b'{', b'"', tag, b'"', b':', b'"', ..] = *input else {
                return None;
            };
            let mut s = Scanner::lenient(input);
            s.pos = 6;
            let text = s.string_body().ok()?;
            (input.get(s.pos..) == Some(b"}")).then_some((tag, text))
        }

        /// Skips a value, returning its bytes.
        pub(super) fn value_span(&mut self) -> Result<&'a [u8]> {
            self.skip_ws();
            let start = self.pos;
            self.skip_value()?;
            Ok(&self.input[start..self.pos])
        }

        /// The span of the first member called `name` of the object that starts here, or
        /// `None` if it has none. Stops reading at that member: the rest of the object is not
        /// looked at.
        pub(super) fn find_member(&mut self, name: &str) -> Result<Option<&'a [u8]>> {
            self.eat(b'{')?;
            if self.peek() == Some(b'}') {
                return Ok(None);
            }
            loop {
                let member = self.string()?;
                self.eat(b':')?;
                if member.eq_str(name) {
                    return self.value_span().map(Some);
                }
                self.skip_value()?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => return Ok(None),
                    _ => return Err(Malformed),
                }
            }
        }

        /// Skips one value of any type, validating its syntax unless the scanner is lenient.
        pub(super) fn skip_value(&mut self) -> Result<()> {
            if self.lenient {
                return self.skip_lenient();
            }
            match self.peek().ok_or(Malformed)? {
                b'{' => self.object(|s, _| s.skip_value()),
                b'[' => self.array(|s| s.skip_value()),
                b'"' => self.string().map(|_| ()),
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                b'-' | b'0'..=b'9' => self.number(),
                _ => Err(Malformed),
            }
        }

        /// Steps over a value without validating it: strings are jumped quote to quote
        /// (honouring backslashes), containers by bracket depth, scalars up to the next
        /// delimiter. Exact on valid JSON; on anything else it stops somewhere harmless.
        fn skip_lenient(&mut self) -> Result<()> {
            self.skip_ws();
            let input = self.input;
            let mut i = self.pos;
            let mut depth = 0usize;
            loop {
                let Some(&b) = input.get(i) else {
                    // A scalar may end the span; a container may not.
                    self.pos = i;
                    return if depth == 0 { Ok(()) } else { Err(Malformed) };
                };
                match LENIENT_CLASS[usize::from(b)] {
                    Class::Plain => i += 1,
                    Class::Quote => {
                        i = swar::string_end(input, i + 1).ok_or(Malformed)?;
                        if depth == 0 {
                            self.pos = i;
                            return Ok(());
                        }
                    }
                    Class::Open => {
                        depth += 1;
                        i += 1;
                    }
                    Class::Close => {
                        if depth == 0 {
                            // The end of the enclosing container: a scalar ended here.
                            self.pos = i;
                            return Ok(());
                        }
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            self.pos = i;
                            return Ok(());
                        }
                    }
                    Class::Comma => {
                        if depth == 0 {
                            self.pos = i;
                            return Ok(());
                        }
                        i += 1;
                    }
                }
            }
        }

        fn literal(&mut self, word: &[u8]) -> Result<()> {
            if self.input[self.pos..].starts_with(word) {
                self.pos += word.len();
                Ok(())
            } else {
                Err(Malformed)
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.pos;
            while self.input.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            self.pos - start
        }

        /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
        fn number(&mut self) -> Result<()> {
            if self.input.get(self.pos) == Some(&b'-') {
                self.pos += 1;
            }
            match self.input.get(self.pos) {
                Some(b'0') => self.pos += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(Malformed),
            }
            if self.input.get(self.pos) == Some(&b'.') {
                self.pos += 1;
                if self.digits() == 0 {
                    return Err(Malformed);
                }
            }
            if let Some(b'e' | b'E') = self.input.get(self.pos) {
                self.pos += 1;
                if let Some(b'+' | b'-') = self.input.get(self.pos) {
                    self.pos += 1;
                }
                if self.digits() == 0 {
                    return Err(Malformed);
                }
            }
            Ok(())
        }
    }

    /// The scanner against the byte-at-a-time loops it replaced, on inputs dense in the bytes
    /// that matter (quotes, backslashes, brackets, control and non-ASCII bytes, invalid UTF-8).
    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        /// The lenient skip as it was: one byte at a time.
        fn reference_skip(input: &[u8], start: usize) -> Option<usize> {
            let mut i = start;
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(i) {
                i += 1;
            }
            let string_end = |mut i: usize| loop {
                match *input.get(i)? {
                    b'"' => return Some(i + 1),
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            };
            let mut depth = 0usize;
            loop {
                let Some(&b) = input.get(i) else {
                    return (depth == 0).then_some(i);
                };
                match b {
                    b'"' => {
                        i = string_end(i + 1)?;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        i += 1;
                    }
                    b'}' | b']' => {
                        if depth == 0 {
                            return Some(i);
                        }
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    b',' if depth == 0 => return Some(i),
                    _ => i += 1,
                }
            }
        }

        /// The validating string reader as it was: the body's range, whether it has escapes,
        /// and the position after the closing quote.
        fn reference_string(input: &[u8], start: usize) -> Option<(usize, usize, bool, usize)> {
            let mut i = start;
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(i) {
                i += 1;
            }
            if input.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            let body = i;
            let mut escaped = false;
            loop {
                match *input.get(i)? {
                    b'"' => return Some((body, i, escaped, i + 1)),
                    b'\\' => {
                        escaped = true;
                        match *input.get(i + 1)? {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                            b'u' => {
                                let digits = input.get(i + 2..i + 6)?;
                                if !digits.iter().all(u8::is_ascii_hexdigit) {
                                    return None;
                                }
                                i += 6;
                            }
                            _ => return None,
                        }
                    }
                    0x00..=0x1f => return None,
                    _ => i += 1,
                }
            }
        }

        fn check(input: &[u8]) {
            let base = input.as_ptr() as usize;
            for start in 0..=input.len() {
                let mut s = Scanner::lenient(input);
                s.pos = start;
                let skipped = s.skip_value().ok().map(|()| s.pos);
                assert_eq!(
                    skipped,
                    reference_skip(input, start),
                    "skip {input:?} at {start}"
                );

                let mut s = Scanner::new(input);
                s.pos = start;
                let read = s.string().ok().map(|str| {
                    let from = str.raw.as_ptr() as usize - base;
                    (from, from + str.raw.len(), str.escaped, s.pos)
                });
                assert_eq!(
                    read,
                    reference_string(input, start),
                    "string {input:?} at {start}"
                );
            }
        }

        fn json_byte() -> impl Strategy<Value = u8> {
            prop_oneof![
                4 => Just(b'a'),
                2 => Just(b'"'),
                2 => Just(b'\\'),
                1 => prop::sample::select(b"{}[],: \tnu0fA\x01\x1f\x7f".to_vec()),
                1 => prop::sample::select(vec![0x80u8, 0xa9, 0xc3, 0xe2, 0xf0, 0xff]),
                1 => any::<u8>(),
            ]
        }

        #[test]
        fn quotes_and_escapes_at_every_offset() {
            // A string of `len` bytes with one quote, escape or control byte at each offset,
            // for every length across several words, starting at every alignment.
            for lead in 0..8 {
                for len in 0..40 {
                    for at in 0..=len {
                        for special in [&b"\\\""[..], b"\\\\", b"\"", b"\x1f", b"\\u00e9", b"\\u0"]
                        {
                            let mut input = vec![b' '; lead];
                            input.push(b'"');
                            input.extend(std::iter::repeat_n(b'x', len));
                            input.splice(lead + 1 + at..lead + 1 + at, special.iter().copied());
                            input.extend_from_slice(b"\"}, \"x\"");
                            check(&input);
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn scanner_matches_byte_loops(input in prop::collection::vec(json_byte(), 0..72)) {
                check(&input);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> HashMap<String, String> {
        [("users", "pk"), ("orders", "id"), ("caf\u{e9}", "k")]
            .into_iter()
            .map(|(t, k)| (t.to_owned(), k.to_owned()))
            .collect()
    }

    fn put(body: &str) -> Result<PartitionKey<'_>, NoAffinity> {
        item_key(Operation::PutItem, body.as_bytes(), &schemas())
    }

    fn key_bytes(body: &str) -> Result<(KeyType, Vec<u8>), NoAffinity> {
        put(body).map(|k| (k.key_type, k.value.into_owned()))
    }

    fn item_with(pk: &str) -> String {
        format!(r#"{{"TableName":"users","Item":{{"pk":{pk},"v":{{"S":"x"}}}}}}"#)
    }

    #[test]
    fn operations_come_from_the_target_header() {
        assert_eq!(
            Operation::from_target("DynamoDB_20120810.PutItem"),
            Operation::PutItem
        );
        assert_eq!(
            Operation::from_target("DynamoDB_20120810.BatchWriteItem"),
            Operation::BatchWriteItem
        );
        for (op, name) in OPERATIONS {
            assert_eq!(
                Operation::from_target(&format!("{TARGET_PREFIX}{name}")),
                op
            );
            assert_eq!(op.as_str(), name);
        }
        for other in [
            "",
            "PutItem",
            "DynamoDB_20120810.",
            "DynamoDB_20120810.putitem",
            "DynamoDB_20120810.PutItem ",
            "DynamoDB_20111205.PutItem",
            "DynamoDBStreams_20120810.GetRecords",
            "DynamoDB_20120810.FrobnicateItem",
        ] {
            assert_eq!(Operation::from_target(other), Operation::Other, "{other:?}");
        }
        assert_eq!(Operation::Other.as_str(), "Other");
    }

    #[test]
    fn affinity_modes_parse_from_the_spec_names() {
        assert_eq!("NONE".parse(), Ok(AffinityMode::None));
        assert_eq!("rmw".parse(), Ok(AffinityMode::Rmw));
        assert_eq!("ANY_WRITE".parse(), Ok(AffinityMode::AnyWrite));
        assert!("ANYWRITE".parse::<AffinityMode>().is_err());
        assert_eq!(AffinityMode::default(), AffinityMode::None);
        for mode in [
            AffinityMode::None,
            AffinityMode::Rmw,
            AffinityMode::AnyWrite,
        ] {
            assert_eq!(mode.as_str().parse(), Ok(mode));
        }
    }

    #[test]
    fn body_is_needed_only_for_operations_the_mode_may_route() {
        use AffinityMode::*;
        use Operation::*;
        let table = [
            (None, [false, false, false, false, false]),
            (Rmw, [true, true, true, false, false]),
            (AnyWrite, [true, true, true, true, false]),
        ];
        for (mode, expected) in table {
            let ops = [PutItem, UpdateItem, DeleteItem, BatchWriteItem, GetItem];
            for (op, want) in ops.into_iter().zip(expected) {
                assert_eq!(needs_body(mode, op), want, "{mode:?} {op:?}");
            }
            for op in [
                Query,
                Scan,
                BatchGetItem,
                TransactWriteItems,
                CreateTable,
                Other,
            ] {
                assert!(!needs_body(mode, op), "{mode:?} {op:?}");
            }
        }
        assert!(learns_key_schema(Rmw, DescribeTable));
        assert!(learns_key_schema(AnyWrite, CreateTable));
        assert!(!learns_key_schema(None, DescribeTable));
        assert!(!learns_key_schema(AnyWrite, PutItem));
    }

    /// The RMW table of key-route-affinity.md, row by row.
    #[test]
    fn rmw_classification_follows_the_spec_table() {
        let key = r#""TableName":"users","Key":{"pk":{"S":"a"}},"Item":{"pk":{"S":"a"}}"#;
        let cases: &[(Operation, &str, bool)] = &[
            (Operation::PutItem, "", false),
            (
                Operation::PutItem,
                r#","ConditionExpression":"attribute_not_exists(pk)""#,
                true,
            ),
            (Operation::PutItem, r#","ConditionExpression":"""#, false),
            (
                Operation::PutItem,
                r#","Expected":{"pk":{"Exists":false}}"#,
                true,
            ),
            (Operation::PutItem, r#","Expected":{}"#, false),
            (Operation::PutItem, r#","ReturnValues":"NONE""#, false),
            (Operation::PutItem, r#","ReturnValues":"ALL_OLD""#, true),
            // "Other than NONE" includes values the service would reject.
            (Operation::PutItem, r#","ReturnValues":"""#, true),
            (Operation::DeleteItem, "", false),
            (
                Operation::DeleteItem,
                r#","ConditionExpression":"attribute_exists(pk)""#,
                true,
            ),
            (
                Operation::DeleteItem,
                r#","Expected":{"v":{"Value":{"S":"1"}}}"#,
                true,
            ),
            (Operation::DeleteItem, r#","ReturnValues":"ALL_OLD""#, true),
            (Operation::DeleteItem, r#","ReturnValues":"NONE""#, false),
            (Operation::UpdateItem, "", false),
            (
                Operation::UpdateItem,
                r#","UpdateExpression":"SET v = :v""#,
                true,
            ),
            (Operation::UpdateItem, r#","UpdateExpression":"""#, false),
            (
                Operation::UpdateItem,
                r#","ConditionExpression":"v = :v""#,
                true,
            ),
            (
                Operation::UpdateItem,
                r#","Expected":{"v":{"Exists":true}}"#,
                true,
            ),
            (Operation::UpdateItem, r#","ReturnValues":"ALL_OLD""#, true),
            (
                Operation::UpdateItem,
                r#","ReturnValues":"UPDATED_OLD""#,
                true,
            ),
            (Operation::UpdateItem, r#","ReturnValues":"ALL_NEW""#, true),
            (
                Operation::UpdateItem,
                r#","ReturnValues":"UPDATED_NEW""#,
                false,
            ),
            (Operation::UpdateItem, r#","ReturnValues":"NONE""#, false),
            (
                Operation::UpdateItem,
                r#","AttributeUpdates":{"n":{"Action":"ADD","Value":{"N":"1"}}}"#,
                true,
            ),
            (
                Operation::UpdateItem,
                r#","AttributeUpdates":{"n":{"Action":"PUT","Value":{"N":"1"}}}"#,
                false,
            ),
            (
                Operation::UpdateItem,
                r#","AttributeUpdates":{"n":{"Action":"DELETE"}}"#,
                false,
            ),
            (
                Operation::UpdateItem,
                r#","AttributeUpdates":{"n":{"Action":"DELETE","Value":null}}"#,
                false,
            ),
            (
                Operation::UpdateItem,
                r#","AttributeUpdates":{"a":{"Value":{"S":"x"}},"s":{"Value":{"SS":["x"]},"Action":"DELETE"}}"#,
                true,
            ),
            (Operation::GetItem, r#","ConditionExpression":"x""#, false),
            (
                Operation::BatchWriteItem,
                r#","ConditionExpression":"x""#,
                false,
            ),
        ];
        for (op, extra, want) in cases {
            let body = format!("{{{key}{extra}}}");
            assert_eq!(
                reads_before_write(*op, body.as_bytes()),
                *want,
                "{op:?} {extra}"
            );
            let routed = affinity_keys(AffinityMode::Rmw, *op, body.as_bytes(), &schemas());
            if *want {
                assert!(
                    matches!(routed, Ok(AffinityKeys::Single(_))),
                    "{op:?} {extra}"
                );
            } else {
                assert_eq!(routed, Err(NoAffinity::NotEligible), "{op:?} {extra}");
            }
            // ANY_WRITE routes every single-item write, conditions or not; NONE routes none.
            let any = affinity_keys(AffinityMode::AnyWrite, *op, body.as_bytes(), &schemas());
            assert_eq!(any.is_ok(), op.is_single_item_write(), "{op:?} {extra}");
            let none = affinity_keys(AffinityMode::None, *op, body.as_bytes(), &schemas());
            assert_eq!(none, Err(NoAffinity::NotEligible));
        }
    }

    #[test]
    fn key_is_found_wherever_table_name_appears() {
        let first = r#"{"TableName":"users","Item":{"a":{"S":"1"},"pk":{"S":"alice"}}}"#;
        let last = r#"{"Item":{"a":{"S":"1"},"pk":{"S":"alice"}},"TableName":"users"}"#;
        for body in [first, last] {
            let key = put(body).expect("key");
            assert_eq!(key.table, "users");
            assert_eq!(key.key_type, KeyType::S);
            assert_eq!(&*key.value, b"alice");
            assert!(
                matches!(key.value, Cow::Borrowed(_)),
                "no copy without escapes"
            );
        }
        let spaced =
            " {\n \"Item\" : { \"pk\" :\t{ \"N\" : \"7\" } } ,\r\n \"TableName\" : \"users\" } ";
        assert_eq!(key_bytes(spaced), Ok((KeyType::N, b"7".to_vec())));
    }

    #[test]
    fn escapes_are_decoded_before_hashing() {
        let escaped = key_bytes(&item_with(r#"{"S":"caf\u00e9 \"q\" \\ \/ \n\t"}"#));
        assert_eq!(
            escaped,
            Ok((KeyType::S, "café \"q\" \\ / \n\t".as_bytes().to_vec()))
        );
        let direct = put(r#"{"TableName":"users","Item":{"pk":{"S":"café"}}}"#).expect("key");
        let via_escape =
            put(r#"{"TableName":"users","Item":{"pk":{"S":"caf\u00E9"}}}"#).expect("key");
        assert_eq!(direct.affinity_hash(), via_escape.affinity_hash());
        assert_eq!(
            direct.affinity_hash(),
            affinity_hash(KeyType::S, "café".as_bytes())
        );
        // A surrogate pair is one character; a lone surrogate is not text.
        assert_eq!(
            key_bytes(&item_with(r#"{"S":"\ud83d\ude00"}"#)),
            Ok((KeyType::S, "😀".as_bytes().to_vec()))
        );
        assert_eq!(
            key_bytes(&item_with(r#"{"S":"\ud83d"}"#)),
            Err(NoAffinity::MalformedKeyValue)
        );
        // Member names and table names may be escaped too.
        let names = r#"{"Table\u004eame":"caf\u00e9","Item":{"\u006b":{"S":"v"}}}"#;
        let key = put(names).expect("key");
        assert_eq!(key.table, "café");
        assert_eq!(&*key.value, b"v");
    }

    #[test]
    fn nested_attributes_named_like_the_key_are_skipped() {
        let body = r#"{"TableName":"users","Item":{
            "doc":{"M":{"pk":{"S":"inner"},"l":{"L":[{"M":{"pk":{"S":"deeper"}}}]}}},
            "pk":{"S":"outer"},
            "tags":{"SS":["pk","{\"pk\":1}"]}}}"#;
        assert_eq!(key_bytes(body), Ok((KeyType::S, b"outer".to_vec())));
    }

    #[test]
    fn numbers_are_hashed_as_their_exact_text() {
        for text in ["42", "42.0", "4.2e1", "-0", "1.23E10", "00042"] {
            let body = item_with(&format!(r#"{{"N":"{text}"}}"#));
            assert_eq!(key_bytes(&body), Ok((KeyType::N, text.as_bytes().to_vec())));
        }
        let a = put(r#"{"TableName":"users","Item":{"pk":{"N":"42"}}}"#).expect("a");
        let b = put(r#"{"TableName":"users","Item":{"pk":{"N":"42.0"}}}"#).expect("b");
        assert_ne!(a.affinity_hash(), b.affinity_hash());
    }

    #[test]
    fn binary_keys_are_base64_decoded() {
        assert_eq!(
            key_bytes(&item_with(r#"{"B":"AQID"}"#)),
            Ok((KeyType::B, vec![1, 2, 3]))
        );
        assert_eq!(
            key_bytes(&item_with(r#"{"B":"/wCA"}"#)),
            Ok((KeyType::B, vec![0xff, 0x00, 0x80]))
        );
        // "\/" is a legal JSON spelling of '/', common in some encoders.
        assert_eq!(
            key_bytes(&item_with(r#"{"B":"\/w=="}"#)),
            Ok((KeyType::B, vec![0xff]))
        );
        assert_eq!(
            key_bytes(&item_with(r#"{"B":"/w"}"#)),
            Ok((KeyType::B, vec![0xff]))
        );
        assert_eq!(
            key_bytes(&item_with(r#"{"B":""}"#)),
            Ok((KeyType::B, vec![]))
        );
        assert_eq!(
            key_bytes(&item_with(r#"{"B":"not base64!"}"#)),
            Err(NoAffinity::MalformedKeyValue)
        );
        let body = item_with(r#"{"B":"AQID"}"#);
        let key = put(&body).expect("key");
        assert_eq!(key.affinity_hash(), 5026299041734804437);
    }

    #[test]
    fn unusable_key_values_say_why() {
        let cases = [
            (r#"{"BOOL":true}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"NULL":true}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"SS":["a"]}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"NS":["1"]}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"BS":["AQ=="]}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"L":[]}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"M":{}}"#, NoAffinity::UnsupportedKeyType),
            (r#"{"S":5}"#, NoAffinity::MalformedKeyValue),
            (r#"{"N":42}"#, NoAffinity::MalformedKeyValue),
            (r#"{"S":"a","N":"1"}"#, NoAffinity::MalformedKeyValue),
            (r#"{}"#, NoAffinity::MalformedKeyValue),
            (r#"{"X":"1"}"#, NoAffinity::MalformedKeyValue),
            (r#""alice""#, NoAffinity::MalformedKeyValue),
            (r#"null"#, NoAffinity::MalformedKeyValue),
        ];
        for (value, reason) in cases {
            assert_eq!(key_bytes(&item_with(value)), Err(reason), "{value}");
        }
    }

    #[test]
    fn missing_pieces_say_why() {
        let s = schemas();
        let cases = [
            (r#"{"Item":{"pk":{"S":"a"}}}"#, NoAffinity::MissingTableName),
            (
                r#"{"TableName":7,"Item":{"pk":{"S":"a"}}}"#,
                NoAffinity::MissingTableName,
            ),
            (
                r#"{"TableName":"nope","Item":{"pk":{"S":"a"}}}"#,
                NoAffinity::UnknownTable,
            ),
            (
                r#"{"TableName":"users","Item":{"sk":{"S":"a"}}}"#,
                NoAffinity::MissingKey,
            ),
            (r#"{"TableName":"users"}"#, NoAffinity::MissingKey),
            // PutItem reads Item, not Key.
            (
                r#"{"TableName":"users","Key":{"pk":{"S":"a"}}}"#,
                NoAffinity::MissingKey,
            ),
            (
                r#"{"TableName":"users","Item":[]}"#,
                NoAffinity::MalformedBody,
            ),
        ];
        for (body, reason) in cases {
            assert_eq!(
                item_key(Operation::PutItem, body.as_bytes(), &s),
                Err(reason),
                "{body}"
            );
        }
        assert_eq!(
            item_key(Operation::Query, br#"{"TableName":"users"}"#, &s),
            Err(NoAffinity::NotEligible)
        );
    }

    #[test]
    fn get_update_and_delete_read_the_key_map() {
        let body = br#"{"TableName":"orders","Key":{"id":{"S":"o-1"},"line":{"N":"3"}},"Item":{"id":{"S":"wrong"}}}"#;
        for op in [
            Operation::GetItem,
            Operation::UpdateItem,
            Operation::DeleteItem,
        ] {
            let key = item_key(op, body, &schemas()).expect("key");
            assert_eq!(
                (&*key.table, &*key.value),
                ("orders", &b"o-1"[..]),
                "{op:?}"
            );
        }
    }

    #[test]
    fn duplicate_members_keep_the_first() {
        let body =
            r#"{"TableName":"users","TableName":"orders","Item":{"pk":{"S":"a"},"pk":{"S":"b"}}}"#;
        let key = put(body).expect("key");
        assert_eq!((&*key.table, &*key.value), ("users", &b"a"[..]));
    }

    #[test]
    fn malformed_bodies_never_route_by_key() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"[]",
            b"null",
            br#"{"TableName":"users","Item":{"pk":{"S":"a"}}"#,
            br#"{"TableName":"users","Item":{"pk":{"S":"a"}}}x"#,
            br#"{"TableName":"users","Item":{"pk":{"S":"a"}},}"#,
            br#"{"TableName":"users" "Item":{"pk":{"S":"a"}}}"#,
            br#"{"TableName":"users","Item":{"pk":{"S":"a"},"x":{"S":"unterminated}}}"#,
            br#"{"TableName":"users","Item":{"pk":{"S":"a\qb"}}}"#,
            b"{\"TableName\":\"users\",\"Item\":{\"pk\":{\"S\":\"a\x01\"}}}",
            br#"{"TableName":"users","Item":{"pk"{"S":"a"}}}"#,
        ];
        for body in bad {
            assert_eq!(
                item_key(Operation::PutItem, body, &schemas()),
                Err(NoAffinity::MalformedBody),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn values_routing_does_not_read_are_skipped_unvalidated() {
        // Errors inside attributes routing steps over are the service's to report; the key
        // is still found, and arbitrarily deep nesting costs no recursion.
        let deep = format!(
            r#"{{"TableName":"users","Item":{{"x":{}{},"pk":{{"S":"a"}}}}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let skipped: &[&[u8]] = &[
            br#"{"TableName":"users","Item":{"n":01,"pk":{"S":"a"}}}"#,
            br#"{"TableName":"users","Item":{"n":{"N":1.},"pk":{"S":"a"}}}"#,
            br#"{"TableName":"users","Item":{"pk":{"S":"a"}},"ReturnValues":tru}"#,
            deep.as_bytes(),
        ];
        for body in skipped {
            assert_eq!(
                key_bytes(std::str::from_utf8(body).expect("utf-8")),
                Ok((KeyType::S, b"a".to_vec())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn batch_writes_yield_every_usable_target() {
        let body = r#"{"RequestItems":{
            "users":[
                {"PutRequest":{"Item":{"pk":{"S":"u1"},"v":{"N":"1"}}}},
                {"DeleteRequest":{"Key":{"pk":{"S":"u2"}}}},
                {"PutRequest":{"Item":{"pk":{"S":"x"}}},"DeleteRequest":{"Key":{"pk":{"S":"y"}}}},
                {},
                {"PutRequest":{"Item":{"pk":{"BOOL":true}}}},
                {"PutRequest":{"Key":{"pk":{"S":"wrong-field"}}}}
            ],
            "unknown":[{"PutRequest":{"Item":{"pk":{"S":"z"}}}}],
            "orders":[{"DeleteRequest":{"Key":{"id":{"N":"9"}}}}]
        },"ReturnConsumedCapacity":"TOTAL"}"#;
        let (keys, skipped) = batch_write_keys(body.as_bytes(), &schemas()).expect("keys");
        let got: Vec<(&str, KeyType, &[u8])> = keys
            .iter()
            .map(|k| (&*k.table, k.key_type, &*k.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("users", KeyType::S, &b"u1"[..]),
                ("users", KeyType::S, &b"u2"[..]),
                ("orders", KeyType::N, &b"9"[..]),
            ]
        );
        assert_eq!(skipped, 5);
        match affinity_keys(
            AffinityMode::AnyWrite,
            Operation::BatchWriteItem,
            body.as_bytes(),
            &schemas(),
        ) {
            Ok(AffinityKeys::Batch { keys, skipped }) => assert_eq!((keys.len(), skipped), (3, 5)),
            other => panic!("expected a batch, got {other:?}"),
        }
        assert_eq!(
            affinity_keys(
                AffinityMode::Rmw,
                Operation::BatchWriteItem,
                body.as_bytes(),
                &schemas()
            ),
            Err(NoAffinity::NotEligible)
        );
    }

    #[test]
    fn batch_without_usable_targets_says_why() {
        let s = schemas();
        let cases: &[(&str, NoAffinity)] = &[
            (r#"{"RequestItems":{}}"#, NoAffinity::NoUsableTarget),
            (r#"{}"#, NoAffinity::NoUsableTarget),
            (
                r#"{"RequestItems":{"users":[]}}"#,
                NoAffinity::NoUsableTarget,
            ),
            (
                r#"{"RequestItems":{"nope":[{"PutRequest":{"Item":{"pk":{"S":"a"}}}}]}}"#,
                NoAffinity::UnknownTable,
            ),
            (
                r#"{"RequestItems":{"users":[{"DeleteRequest":{"Key":{"pk":{"L":[]}}}}]}}"#,
                NoAffinity::UnsupportedKeyType,
            ),
            (
                r#"{"RequestItems":{"users":{}}}"#,
                NoAffinity::MalformedBody,
            ),
            (r#"{"RequestItems":{"users":[}}"#, NoAffinity::MalformedBody),
        ];
        for (body, reason) in cases {
            assert_eq!(
                batch_write_keys(body.as_bytes(), &s).map(|_| ()),
                Err(*reason),
                "{body}"
            );
        }
    }

    #[test]
    fn key_schemas_are_learned_from_create_and_describe() {
        let expected = Some(TableHashKey {
            table: "users".into(),
            hash_key: "pk".into(),
        });
        let create_request = br#"{"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],
            "KeySchema":[{"AttributeName":"sk","KeyType":"RANGE"},{"KeyType":"HASH","AttributeName":"pk"}],
            "BillingMode":"PAY_PER_REQUEST","TableName":"users"}"#;
        assert_eq!(create_table_key_schema(create_request), expected);
        let describe = br#"{"Table":{"TableName":"users","TableStatus":"ACTIVE",
            "KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"ItemCount":0}}"#;
        assert_eq!(table_description_key_schema(describe), expected);
        let create_response = br#"{"TableDescription":{"KeySchema":[{"AttributeName":"p\u006b","KeyType":"HASH"}],"TableName":"users"}}"#;
        assert_eq!(table_description_key_schema(create_response), expected);

        for bad in [
            &br#"{"Table":{"TableName":"users","KeySchema":[{"AttributeName":"sk","KeyType":"RANGE"}]}}"#[..],
            br#"{"Table":{"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}]}}"#,
            br#"{"Table":{"TableName":"users","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}]}"#,
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"}"#,
            b"",
        ] {
            assert_eq!(table_description_key_schema(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// JSON string contents for `text`: quotes and backslashes escaped, other bytes raw
    /// (including invalid UTF-8, which a skipped value may hold).
    fn json_escaped(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 2);
        for &b in text {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x00..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                _ => out.push(b),
            }
        }
        out
    }

    fn tricky_text() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => Just(b'a'),
                1 => Just(b'"'),
                1 => Just(b'\\'),
                1 => prop::sample::select(b"{}[],: /\n".to_vec()),
                1 => prop::sample::select(vec![0xc3u8, 0xa9, 0xe2, 0x82, 0xac, 0xff, 0x80]),
            ],
            0..40,
        )
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the skipped attributes hold (escaped quotes and backslashes at any offset,
        /// brackets, non-ASCII or invalid UTF-8), the key is the one written, in compact or
        /// spaced JSON, in a single write or a batch.
        #[test]
        fn keys_are_found_past_any_skipped_value(
            before in prop::collection::vec(tricky_text(), 0..4),
            after in prop::collection::vec(tricky_text(), 0..3),
            key in "[a-z0-9 \"\\\\é€]{0,24}",
            spaced in any::<bool>(),
        ) {
            let attribute = |name: &str, text: &[u8]| {
                let mut a = format!(r#""{name}":{{"S":""#).into_bytes();
                a.extend(json_escaped(text));
                a.extend_from_slice(b"\"}");
                if spaced {
                    // After the name, which has no colon: `"name" : {"S":...}`.
                    let colon = name.len() + 2;
                    a.splice(colon..=colon, *b" : ");
                }
                a
            };
            let mut attributes: Vec<Vec<u8>> = Vec::new();
            for (n, text) in before.iter().enumerate() {
                attributes.push(attribute(&format!("b{n}"), text));
            }
            attributes.push(attribute("pk", key.as_bytes()));
            for (n, text) in after.iter().enumerate() {
                attributes.push(attribute(&format!("a{n}"), text));
            }
            let item = attributes.join(&b","[..]);
            let mut body = br#"{"TableName":"users","Item":{"#.to_vec();
            body.extend_from_slice(&item);
            body.extend_from_slice(br#"},"ReturnValues":"NONE"}"#);
            let got = item_key(Operation::PutItem, &body, &schemas())
                .map(|k| (k.key_type, k.value.into_owned()));
            prop_assert_eq!(got, Ok((KeyType::S, key.as_bytes().to_vec())));

            let mut batch = br#"{"RequestItems":{"users":[{"PutRequest":{"Item":{"#.to_vec();
            batch.extend_from_slice(&item);
            batch.extend_from_slice(br#"}}}]}}"#);
            let (keys, skipped) = batch_write_keys(&batch, &schemas()).map_err(|e| {
                TestCaseError::fail(format!("{e:?}"))
            })?;
            prop_assert_eq!(skipped, 0);
            prop_assert_eq!(&*keys[0].value, key.as_bytes());
        }

        /// The compact `{"S":"..."}` shortcut answers exactly as the general reading does
        /// (reached here through a space it does not accept).
        #[test]
        fn compact_key_values_read_as_spaced_ones(
            tag in prop::sample::select(vec!["S", "N", "B", "X", "SS", ""]),
            text in prop::collection::vec(
                prop_oneof![
                    4 => prop::sample::select(b"aAz09+/=-.".to_vec()),
                    1 => prop::sample::select(b"\"\\u\x01".to_vec()),
                    1 => prop::sample::select(vec![0xc3u8, 0xa9, 0xff]),
                ],
                0..16,
            ),
            tail in prop::sample::select(vec!["}", "} ", "}}", ",\"N\":\"1\"}", ""]),
        ) {
            let compact = [format!(r#"{{"{tag}":""#).as_bytes(), &text, b"\"", tail.as_bytes()]
                .concat();
            let spaced = [b"{ ".as_slice(), &compact[1..]].concat();
            prop_assert_eq!(attribute_value(&compact), attribute_value(&spaced));
        }
    }

    #[test]
    fn no_affinity_labels_are_distinct() {
        let all = [
            NoAffinity::NotEligible,
            NoAffinity::MalformedBody,
            NoAffinity::MissingTableName,
            NoAffinity::UnknownTable,
            NoAffinity::MissingKey,
            NoAffinity::UnsupportedKeyType,
            NoAffinity::MalformedKeyValue,
            NoAffinity::NoUsableTarget,
            NoAffinity::NoCandidates,
        ];
        let labels: std::collections::HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
