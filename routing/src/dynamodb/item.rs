//! Single-item requests (`PutItem`, `UpdateItem`, `DeleteItem`, `GetItem`): the RMW
//! classification and the item's key.
//!
//! One pass over the top-level members collects both the RMW markers and the span of the key
//! map, so that classifying a request under RMW and finding its key read the body once,
//! whichever order the SDK wrote the members in.

use super::attribute::key_value_in;
use super::json;
use super::{KeySchemas, NoAffinity, Operation, PartitionKey};

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
pub(super) struct RequestFields<'a> {
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
    pub(super) fn scan(body: &'a [u8]) -> Result<Self, NoAffinity> {
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
    pub(super) fn reads_before_write(&self, op: Operation) -> bool {
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

    pub(super) fn item_key(
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
