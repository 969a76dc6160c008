//! Classification and key extraction end to end, through the functions the filter and the
//! fuzz targets call: the RMW table row by row, what each kind of key value hashes as, and why
//! a request is not routed by key.

use std::borrow::Cow;
use std::collections::HashMap;

use super::attribute::attribute_value;
use super::*;
use crate::hash::{affinity_hash, KeyType};

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
    let via_escape = put(r#"{"TableName":"users","Item":{"pk":{"S":"caf\u00E9"}}}"#).expect("key");
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

#[test]
fn batch_get_keys_reads_every_key_of_every_table() {
    let body = r#"{"ReturnConsumedCapacity":"NONE","RequestItems":{
        "users":{"ProjectionExpression":"v","Keys":[{"pk":{"S":"u1"}},{"pk":{"S":"u2"}},{"other":{"S":"x"}},{"pk":{"BOOL":true}}],"ConsistentRead":true},
        "unknown":{"Keys":[{"pk":{"S":"z"}}]},
        "orders":{"Keys":[{"id":{"N":"9"}}]}
    }}"#;
    let (keys, skipped) = batch_get_keys(body.as_bytes(), &schemas()).expect("keys");
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
    assert_eq!(skipped, 3);
    assert_eq!(
        batch_get_keys(
            br#"{"RequestItems":{"unknown":{"Keys":[{"pk":{"S":"z"}}]}}}"#,
            &schemas()
        )
        .map(|_| ()),
        Err(NoAffinity::UnknownTable)
    );
    assert_eq!(
        batch_get_keys(br#"{"RequestItems":{}}"#, &schemas()).map(|_| ()),
        Err(NoAffinity::NoUsableTarget)
    );
    assert_eq!(
        batch_get_keys(br#"{"RequestItems":{"users":{"Keys":[{"pk""#, &schemas()).map(|_| ()),
        Err(NoAffinity::MalformedBody)
    );
}
