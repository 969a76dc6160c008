//! A DynamoDB `AttributeValue` read as the bytes the affinity hash takes.
//!
//! These bytes are part of the compatibility contract with the official clients: the same key
//! must hash the same behind Envoy as in a client, so `S` and `N` are hashed as written
//! (numbers are not normalized), `B` after base64 decoding, and JSON escapes are decoded first.
//! Only `S`, `N` and `B` qualify; every other shape says why not.

use std::borrow::Cow;

use super::json;
use super::NoAffinity;
use crate::hash::KeyType;

/// Finds attribute `key_name` in an attribute map (`Item` or `Key`) and reads its value.
pub(super) fn key_value_in<'a>(
    attributes: &'a [u8],
    key_name: &str,
) -> Result<TypedKey<'a>, NoAffinity> {
    // Stop at the key: what follows in the map does not matter for routing.
    let value = json::Scanner::lenient(attributes)
        .find_member(key_name)
        .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
    attribute_value(value.ok_or(NoAffinity::MissingKey)?)
}

/// A key value's type and hashed bytes.
pub(super) type TypedKey<'a> = (KeyType, Cow<'a, [u8]>);

/// Reads a DynamoDB `AttributeValue` (`{"S": "..."}`) usable as an affinity key.
pub(super) fn attribute_value(span: &[u8]) -> Result<TypedKey<'_>, NoAffinity> {
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
