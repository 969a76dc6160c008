//! Which attribute is each table's HASH key.
//!
//! Affinity hashes only the HASH-key value, and a request does not say which attribute that
//! is: the name comes from configuration or is learned from `CreateTable` and `DescribeTable`
//! answers. Those are rare and feed a cache, so they are read with the validating scanner.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::json;

#[cfg(test)]
mod tests;

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
