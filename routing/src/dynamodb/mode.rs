//! Key-route affinity modes, and which operations each mode may route by key
//! (`key-route-affinity.md`, AFF-REQ-001).
//!
//! Kept apart from key extraction because these questions need no body: the filter asks them
//! in the headers callback and buffers a body only when the mode may route the request by key,
//! so that every other request is routed at once.

use super::Operation;

#[cfg(test)]
mod tests;

/// Which requests key-route affinity routes by partition key (`key-route-affinity.md`).
///
/// A configuration deserializes straight into it from `"none"`, `"rmw"` or `"any_write"`;
/// [`FromStr`](std::str::FromStr) accepts the same names in any ASCII case, as the spec
/// writes them (`NONE`, `RMW`, `ANY_WRITE`).
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
/// learn from ([`table_description_key_schema`](super::table_description_key_schema)):
/// `CreateTable` and `DescribeTable`, and only while affinity is on (the spec forbids
/// discovering metadata solely for a disabled feature).
pub fn learns_key_schema(mode: AffinityMode, op: Operation) -> bool {
    mode != AffinityMode::None && matches!(op, Operation::CreateTable | Operation::DescribeTable)
}
