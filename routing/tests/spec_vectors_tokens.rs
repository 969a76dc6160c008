//! Token vectors asserted row by row: the partition-key bytes and token of DynamoDB hash-key
//! values, the even tablet split and the tablet of a token. Data: `tests/data/` (see its README
//! for provenance).

// Helpers outside `#[test]` functions abort the test on bad data, which is what we want.
#![allow(clippy::panic, clippy::expect_used)]

use alternator_routing::hash::KeyType;
use alternator_routing::token::{
    even_tablet_last_tokens, partition_key_bytes, tablet_index, token,
};

/// Data rows of a vector file: `#` lines skipped, columns split on tabs.
fn rows(name: &str) -> Vec<Vec<String>> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert!(!rows.is_empty(), "{name} has no data rows");
    rows
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{s:?}: {e}")))
        .collect()
}

fn key_type(name: &str) -> KeyType {
    match name {
        "S" => KeyType::S,
        "N" => KeyType::N,
        "B" => KeyType::B,
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn alternator_key_bytes_and_tokens_match_vectors() {
    let rows = rows("alternator-tokens.tsv");
    assert_eq!(rows.len(), 12);
    let mut bytes = Vec::new();
    let mut scratch = Vec::new();
    for row in &rows {
        let key_type = key_type(&row[0]);
        // The value column is the DynamoDB JSON string, quotes and escapes included.
        let value: String = serde_json::from_str(&row[1]).expect("JSON string value");
        let expected_bytes = unhex(&row[2]);
        let expected_token: i64 = row[3].parse().expect("token");

        partition_key_bytes(key_type, value.as_bytes(), &mut bytes)
            .unwrap_or_else(|e| panic!("{} {value:?}: {e}", row[0]));
        assert_eq!(bytes, expected_bytes, "bytes of {} {value:?}", row[0]);
        assert_eq!(
            token(key_type, value.as_bytes(), &mut scratch),
            Ok(expected_token),
            "token of {} {value:?}",
            row[0]
        );
    }
}

#[test]
fn even_tablet_boundaries_match_vectors() {
    let rows = rows("tablet-boundaries.tsv");
    let mut counts: Vec<u32> = rows.iter().map(|r| r[0].parse().expect("count")).collect();
    counts.dedup();
    assert_eq!(counts, [4, 32]);
    for count in counts {
        let expected: Vec<i64> = rows
            .iter()
            .filter(|r| r[0] == count.to_string())
            .enumerate()
            .map(|(i, r)| {
                assert_eq!(r[1], i.to_string(), "rows in tablet order");
                r[2].parse().expect("last token")
            })
            .collect();
        assert_eq!(even_tablet_last_tokens(count), expected, "{count} tablets");
    }
}

#[test]
fn token_to_tablet_matches_vectors() {
    let rows = rows("token-to-tablet.tsv");
    for row in &rows {
        let token: i64 = row[0].parse().expect("token");
        let count: u32 = row[1].parse().expect("tablets");
        let expected: usize = row[2].parse().expect("tablet index");
        let last_tokens = even_tablet_last_tokens(count);
        assert_eq!(
            tablet_index(&last_tokens, token),
            expected,
            "token {token} among {count} tablets"
        );
    }
}

#[test]
fn vector_keys_land_in_the_vector_tablets() {
    // The token-to-tablet rows include the tokens of the S "test" and N "1000" keys: the two
    // files agree end to end.
    let mut scratch = Vec::new();
    let test = token(KeyType::S, b"test", &mut scratch).expect("token");
    let thousand = token(KeyType::N, b"1000", &mut scratch).expect("token");
    let rows = rows("token-to-tablet.tsv");
    for (key_token, name) in [(test, "S test"), (thousand, "N 1000")] {
        let matching: Vec<_> = rows
            .iter()
            .filter(|r| r[0] == key_token.to_string())
            .collect();
        assert_eq!(matching.len(), 2, "{name}: one row per tablet count");
    }
}
