//! `Query`: the partition key a query reads, when its key condition fixes one.
//!
//! A query reads one partition: its key condition must test the table's HASH key for
//! equality, in `KeyConditionExpression` (`#pk = :v AND ...`, with `ExpressionAttributeNames`
//! and `ExpressionAttributeValues`) or in the legacy `KeyConditions` map (`EQ`). A query of an
//! index (`IndexName`) reads the index's partitions, which the table's key does not place, so
//! it does not qualify.

use std::borrow::Cow;

use super::attribute::{attribute_value, key_value_in};
use super::json;
use super::{KeySchemas, NoAffinity, PartitionKey};

/// The HASH-key value a `Query` body's key condition fixes. `body` is the complete body.
pub fn query_key<'a>(
    body: &'a [u8],
    schemas: &impl KeySchemas,
) -> Result<PartitionKey<'a>, NoAffinity> {
    let mut table_name: Option<json::Str<'a>> = None;
    let mut index = false;
    let mut expression: Option<json::Str<'a>> = None;
    let mut names: Option<&'a [u8]> = None;
    let mut values: Option<&'a [u8]> = None;
    let mut legacy: Option<&'a [u8]> = None;
    let mut s = json::Scanner::lenient(body);
    s.object(|s, name| {
        match &*name.bytes() {
            b"TableName" if table_name.is_none() => table_name = s.string_value()?,
            b"IndexName" => {
                index = true;
                s.skip_value()?;
            }
            b"KeyConditionExpression" if expression.is_none() => {
                expression = s.string_value()?;
            }
            b"ExpressionAttributeNames" if names.is_none() => names = Some(s.value_span()?),
            b"ExpressionAttributeValues" if values.is_none() => values = Some(s.value_span()?),
            b"KeyConditions" if legacy.is_none() => legacy = Some(s.value_span()?),
            _ => s.skip_value()?,
        }
        Ok(())
    })
    .and_then(|()| s.finish())
    .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
    if index {
        return Err(NoAffinity::NotEligible);
    }
    let table = table_name
        .and_then(|t| t.text())
        .ok_or(NoAffinity::MissingTableName)?;
    let key_name = schemas.hash_key(&table).ok_or(NoAffinity::UnknownTable)?;
    let (key_type, value) = if let Some(expression) = expression {
        let expression = expression.text().ok_or(NoAffinity::MalformedBody)?;
        let placeholder = equality_value(&expression, key_name, names)?;
        key_value_in(values.ok_or(NoAffinity::MissingKey)?, placeholder)?
    } else {
        legacy_equality(legacy.ok_or(NoAffinity::MissingKey)?, key_name)?
    };
    Ok(PartitionKey {
        table,
        key_type,
        value,
    })
}

/// One token of a key condition expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'e> {
    /// An attribute name, bare or a `#placeholder`.
    Path(&'e str),
    /// A `:placeholder`.
    Value(&'e str),
    Equals,
    /// Any other operator, keyword, parenthesis or comma.
    Other,
}

fn tokens(expression: &str) -> impl Iterator<Item = Token<'_>> + '_ {
    let bytes = expression.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
            pos += 1;
        }
        let start = pos;
        let first = *bytes.get(pos)?;
        let word = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
        pos += 1;
        Some(match first {
            b'=' => Token::Equals,
            b'<' | b'>' => {
                if matches!(bytes.get(pos), Some(b'=' | b'>')) {
                    pos += 1;
                }
                Token::Other
            }
            b'#' | b':' => {
                while bytes.get(pos).is_some_and(word) {
                    pos += 1;
                }
                let text = expression.get(start..pos).unwrap_or("");
                if first == b'#' {
                    Token::Path(text)
                } else {
                    Token::Value(text)
                }
            }
            b if word(&b) => {
                while bytes.get(pos).is_some_and(word) {
                    pos += 1;
                }
                let text = expression.get(start..pos).unwrap_or("");
                let keyword = ["AND", "OR", "NOT", "BETWEEN", "IN"]
                    .iter()
                    .any(|k| text.eq_ignore_ascii_case(k));
                // A name followed by `(` is a function such as begins_with.
                let function = bytes.get(pos) == Some(&b'(');
                if keyword || function {
                    Token::Other
                } else {
                    Token::Path(text)
                }
            }
            _ => {
                // Skip one UTF-8 character of anything else.
                while bytes.get(pos).is_some_and(|b| b & 0xc0 == 0x80) {
                    pos += 1;
                }
                Token::Other
            }
        })
    })
}

/// The `:placeholder` the expression compares the HASH key `key_name` with for equality.
fn equality_value<'e>(
    expression: &'e str,
    key_name: &str,
    names: Option<&[u8]>,
) -> Result<&'e str, NoAffinity> {
    let resolves = |path: &str| -> Result<bool, NoAffinity> {
        if !path.starts_with('#') {
            return Ok(path == key_name);
        }
        let span = names.ok_or(NoAffinity::MissingKey)?;
        let name = json::Scanner::lenient(span)
            .find_member(path)
            .map_err(|json::Malformed| NoAffinity::MalformedBody)?
            .ok_or(NoAffinity::MissingKey)?;
        let mut s = json::Scanner::lenient(name);
        let name = s
            .string_value()
            .map_err(|json::Malformed| NoAffinity::MalformedBody)?
            .ok_or(NoAffinity::MalformedBody)?;
        Ok(name.eq_str(key_name))
    };
    let mut window: [Option<Token<'e>>; 3] = [None; 3];
    for token in tokens(expression) {
        window = [window[1], window[2], Some(token)];
        let value = match window {
            [Some(Token::Path(p)), Some(Token::Equals), Some(Token::Value(v))]
            | [Some(Token::Value(v)), Some(Token::Equals), Some(Token::Path(p))] => {
                resolves(p)?.then_some(v)
            }
            _ => None,
        };
        if let Some(value) = value {
            return Ok(value);
        }
    }
    Err(NoAffinity::MissingKey)
}

/// The value of a legacy `KeyConditions` `EQ` condition on `key_name`.
fn legacy_equality<'a>(
    conditions: &'a [u8],
    key_name: &str,
) -> Result<(crate::hash::KeyType, Cow<'a, [u8]>), NoAffinity> {
    let condition = json::Scanner::lenient(conditions)
        .find_member(key_name)
        .map_err(|json::Malformed| NoAffinity::MalformedBody)?
        .ok_or(NoAffinity::MissingKey)?;
    let mut equals = false;
    let mut first: Option<&'a [u8]> = None;
    let mut s = json::Scanner::lenient(condition);
    s.object(|s, name| {
        match &*name.bytes() {
            b"ComparisonOperator" => {
                equals = s.string_value()?.is_some_and(|op| op.eq_str("EQ"));
            }
            b"AttributeValueList" if s.peek() == Some(b'[') => s.array(|s| {
                let span = s.value_span()?;
                first.get_or_insert(span);
                Ok(())
            })?,
            _ => s.skip_value()?,
        }
        Ok(())
    })
    .map_err(|json::Malformed| NoAffinity::MalformedBody)?;
    if !equals {
        return Err(NoAffinity::MissingKey);
    }
    attribute_value(first.ok_or(NoAffinity::MissingKey)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::KeyType;
    use std::collections::BTreeMap;

    struct Schemas(BTreeMap<&'static str, &'static str>);

    impl KeySchemas for Schemas {
        fn hash_key(&self, table: &str) -> Option<&str> {
            self.0.get(table).copied()
        }
    }

    fn key(body: &str) -> Result<(KeyType, Vec<u8>), NoAffinity> {
        let schemas = Schemas(BTreeMap::from([("t", "pk")]));
        query_key(body.as_bytes(), &schemas).map(|k| (k.key_type, k.value.into_owned()))
    }

    fn s(v: &str) -> Result<(KeyType, Vec<u8>), NoAffinity> {
        Ok((KeyType::S, v.as_bytes().to_vec()))
    }

    #[test]
    fn key_condition_expressions_fix_the_partition() {
        let values =
            r#""ExpressionAttributeValues":{":v":{"S":"a"},":s":{"N":"1"},":e":{"N":"9"}}"#;
        for expression in [
            "pk = :v",
            ":v = pk",
            "pk=:v AND sk > :s",
            "sk BETWEEN :s AND :e AND pk = :v",
            "(pk = :v) and begins_with(sk, :s)",
            "#p = :v",
            "#s < :s AND #p = :v",
        ] {
            let body = format!(
                r##"{{"TableName":"t","KeyConditionExpression":"{expression}",{values},"ExpressionAttributeNames":{{"#p":"pk","#s":"sk"}}}}"##
            );
            assert_eq!(key(&body), s("a"), "{expression}");
        }
        // Members in any order.
        let body = r#"{"ExpressionAttributeValues":{":v":{"S":"b"}},"KeyConditionExpression":"pk = :v","TableName":"t"}"#;
        assert_eq!(key(body), s("b"));
    }

    #[test]
    fn legacy_key_conditions() {
        let body = r#"{"TableName":"t","KeyConditions":{"sk":{"ComparisonOperator":"GT","AttributeValueList":[{"N":"1"}]},"pk":{"ComparisonOperator":"EQ","AttributeValueList":[{"S":"c"}]}}}"#;
        assert_eq!(key(body), s("c"));
        let body = r#"{"TableName":"t","KeyConditions":{"pk":{"ComparisonOperator":"BEGINS_WITH","AttributeValueList":[{"S":"c"}]}}}"#;
        assert_eq!(key(body), Err(NoAffinity::MissingKey));
    }

    #[test]
    fn what_does_not_fix_a_partition() {
        let cases = [
            (
                r#"{"TableName":"t","IndexName":"i","KeyConditionExpression":"pk = :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"#,
                NoAffinity::NotEligible,
            ),
            (
                r#"{"TableName":"u","KeyConditionExpression":"pk = :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"#,
                NoAffinity::UnknownTable,
            ),
            (
                r#"{"KeyConditionExpression":"pk = :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"#,
                NoAffinity::MissingTableName,
            ),
            (
                r#"{"TableName":"t","KeyConditionExpression":"sk = :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"#,
                NoAffinity::MissingKey,
            ),
            (
                r#"{"TableName":"t","KeyConditionExpression":"pk = :w","ExpressionAttributeValues":{":v":{"S":"a"}}}"#,
                NoAffinity::MissingKey,
            ),
            (
                r##"{"TableName":"t","KeyConditionExpression":"#p = :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"##,
                NoAffinity::MissingKey,
            ),
            (
                r#"{"TableName":"t","KeyConditionExpression":"pk = :v","ExpressionAttributeValues":{":v":{"BOOL":true}}}"#,
                NoAffinity::UnsupportedKeyType,
            ),
            (
                r#"{"TableName":"t","KeyConditionExpression":"pk < :v","ExpressionAttributeValues":{":v":{"S":"a"}}}"#,
                NoAffinity::MissingKey,
            ),
            (
                r#"{"TableName":"t","KeyConditionExpression":"pk = :v""#,
                NoAffinity::MalformedBody,
            ),
            (r#"{"TableName":"t"}"#, NoAffinity::MissingKey),
        ];
        for (body, reason) in cases {
            assert_eq!(key(body), Err(reason), "{body}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), expression in ".{0,40}") {
            let _ = key(&String::from_utf8_lossy(&body));
            let wrapped = format!(r#"{{"TableName":"t","KeyConditionExpression":{},"ExpressionAttributeValues":{{":v":{{"S":"a"}}}}}}"#, serde_json::to_string(&expression).unwrap_or_default());
            let _ = key(&wrapped);
        }
    }
}
