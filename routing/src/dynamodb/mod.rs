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
//!
//! The pieces, in the order a request meets them: the operation named by the target header
//! (`operation`); whether the mode may route it by key, asked before any body is read
//! (`mode`); the outcome of reading the body (`keys`), for single-item requests (`item`) and
//! batches (`batch`), queries (`query`), each key value read as the bytes the hash takes (`attribute`); the
//! table key schemas that say which attribute is the key (`schema`); and the scanner under all
//! of them (`json`).

mod attribute;
mod batch;
mod item;
mod json;
mod keys;
mod mode;
mod operation;
mod query;
mod schema;

#[cfg(test)]
mod tests;

pub use batch::{batch_get_keys, batch_write_keys};
pub use item::{item_key, reads_before_write};
pub use keys::{affinity_keys, AffinityKeys, NoAffinity, PartitionKey};
pub use mode::{learns_key_schema, needs_body, AffinityMode, UnknownAffinityMode};
pub use operation::{Operation, TARGET_PREFIX};
pub use query::query_key;
pub use schema::{create_table_key_schema, table_description_key_schema, KeySchemas, TableHashKey};
