//! `BatchWriteItem`: the key of every usable put and delete, which affinity routes by vote
//! under `ANY_WRITE`.
//!
//! A batch is the largest body affinity reads, so it is read in one pass where it stands: each
//! item only up to its key, the rest stepped over. One unusable write request does not spoil
//! the batch; it is counted and the others still vote.

use super::attribute::{attribute_value, key_value_in};
use super::json;
use super::{KeySchemas, NoAffinity, PartitionKey};

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
    request_items(body, |s| batch.read_request_items(s, schemas))?;
    batch.finish()
}

/// Runs `read` on the first `RequestItems` member of a batch body, stepping over every other
/// member, in one pass over the body.
fn request_items<'a>(
    body: &'a [u8],
    mut read: impl FnMut(&mut json::Scanner<'a>) -> json::Result<()>,
) -> Result<(), NoAffinity> {
    let mut seen = false;
    let mut s = json::Scanner::lenient(body);
    s.object(|s, name| {
        if !seen && *name.bytes() == *b"RequestItems" {
            seen = true;
            read(s)
        } else {
            s.skip_value()
        }
    })
    .and_then(|()| s.finish())
    .map_err(|json::Malformed| NoAffinity::MalformedBody)
}

/// The HASH-key values of every key of a `BatchGetItem` body (`RequestItems`: table →
/// `{"Keys": [key map, ...], ...}`), in body order, and the number of keys skipped (unknown
/// table, missing or unusable key value). No usable key is an error, as for
/// [`batch_write_keys`].
pub fn batch_get_keys<'a>(
    body: &'a [u8],
    schemas: &impl KeySchemas,
) -> Result<(Vec<PartitionKey<'a>>, usize), NoAffinity> {
    let mut batch = BatchKeys::default();
    request_items(body, |s| {
        s.object(|s, table| {
            let table = table.text();
            let key_name = table.as_deref().and_then(|t| schemas.hash_key(t));
            if s.peek() != Some(b'{') {
                batch.skip(NoAffinity::MalformedBody);
                return s.skip_value();
            }
            s.object(|s, member| {
                if *member.bytes() != *b"Keys" || s.peek() != Some(b'[') {
                    return s.skip_value();
                }
                s.array(|s| {
                    let map = s.value_span()?;
                    let (Some(table), Some(key_name)) = (&table, key_name) else {
                        batch.skip(NoAffinity::UnknownTable);
                        return Ok(());
                    };
                    match key_value_in(map, key_name) {
                        Ok((key_type, value)) => batch.keys.push(PartitionKey {
                            table: table.clone(),
                            key_type,
                            value,
                        }),
                        Err(reason) => batch.skip(reason),
                    }
                    Ok(())
                })
            })
        })
    })?;
    batch.finish()
}

/// The keys of a batch, collected while its `RequestItems` are read.
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
