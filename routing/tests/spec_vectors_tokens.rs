//! Token vectors asserted row by row: the partition-key bytes and token of DynamoDB hash-key
//! values, the even tablet split and the tablet of a token. Data: `testdata/` (see its README
//! for provenance).

// Helpers outside `#[test]` functions abort the test on bad data, which is what we want.
#![allow(clippy::panic, clippy::expect_used)]

use alternator_routing::hash::KeyType;
use alternator_routing::token::{partition_key_bytes, token};

mod tablets;
mod vectors;
use tablets::{even_tablet_last_tokens, tablet_index};
use vectors::{rows, unhex};

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

mod properties {
    use alternator_routing::hash::{murmur3_cassandra_token, KeyType};
    use alternator_routing::token::{key_token, partition_key_bytes, token, KeyBytesError};

    use crate::tablets::{even_tablet_last_tokens, tablet_index};
    use proptest::prelude::*;

    /// A number as the strategies write it, with what its serialization must say.
    #[derive(Debug, Clone)]
    struct Written {
        text: String,
        negative: bool,
        /// Integer and fraction digits joined, leading zeros dropped ("" for zero).
        digits: String,
        /// Fraction digits minus exponent.
        scale: i64,
    }

    fn written(sign: &str, int: &str, frac: Option<&str>, exp: Option<(&str, i64)>) -> Written {
        let mut text = format!("{sign}{int}");
        if let Some(frac) = frac {
            text.push('.');
            text.push_str(frac);
        }
        let exponent = exp.map_or(0, |(e, value)| {
            text.push_str(e);
            value
        });
        let joined = format!("{int}{}", frac.unwrap_or(""));
        Written {
            text,
            negative: sign == "-",
            digits: joined.trim_start_matches('0').to_owned(),
            scale: frac.map_or(0, str::len) as i64 - exponent,
        }
    }

    /// Exponent text and value: `e`/`E`, optional sign, digits (at most 4 characters in all,
    /// as Alternator only reads exponents that short).
    fn exponent() -> impl Strategy<Value = Option<(String, i64)>> {
        prop::option::of((
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+", "-"]),
            0i64..=99,
            any::<bool>(),
        ))
        .prop_map(|e| {
            e.map(|(marker, sign, value, pad)| {
                let digits = if pad && sign.is_empty() {
                    format!("{value:03}")
                } else {
                    value.to_string()
                };
                let value = if sign == "-" { -value } else { value };
                (format!("{marker}{sign}{digits}"), value)
            })
        })
    }

    /// Numbers Alternator always accepts: at most 20 integer and 18 fraction digits (so at
    /// most 38 significant ones) and an exponent within ±99 (so a magnitude within ±125).
    fn valid_number() -> impl Strategy<Value = Written> {
        (
            prop::sample::select(vec!["", "+", "-"]),
            "[0-9]{0,20}",
            prop::option::of("[0-9]{0,18}"),
            exponent(),
        )
            .prop_filter("at least one digit", |(_, int, frac, _)| {
                !int.is_empty() || frac.as_deref().is_some_and(|f| !f.is_empty())
            })
            .prop_map(|(sign, int, frac, exp)| {
                written(
                    sign,
                    &int,
                    frac.as_deref(),
                    exp.as_ref().map(|(e, v)| (e.as_str(), *v)),
                )
            })
    }

    /// Long digit strings: up to 38 significant digits between many leading zeros and many
    /// trailing fraction zeros, which Alternator accepts and which make the unscaled value
    /// hundreds of digits long.
    fn long_number() -> impl Strategy<Value = Written> {
        (
            prop::sample::select(vec!["", "+", "-"]),
            0usize..2000,
            "[1-9][0-9]{0,18}",
            "[0-9]{0,18}[1-9]",
            0usize..900,
        )
            .prop_map(|(sign, leading, int, frac, trailing)| {
                let int = format!("{}{int}", "0".repeat(leading));
                let frac = format!("{frac}{}", "0".repeat(trailing));
                written(sign, &int, Some(&frac), None)
            })
    }

    /// The (negative, decimal digits without leading zeros) of a big-endian two's-complement
    /// integer, by schoolbook division.
    fn decode_unscaled(bytes: &[u8]) -> (bool, String) {
        let negative = bytes.first().is_some_and(|&b| b & 0x80 != 0);
        let mut magnitude: Vec<u8> = bytes.to_vec();
        if negative {
            // Negate: invert, add one.
            let mut carry = true;
            for b in magnitude.iter_mut().rev() {
                let (v, c) = (!*b).overflowing_add(u8::from(carry));
                *b = v;
                carry = c;
            }
        }
        let mut digits = Vec::new();
        while magnitude.iter().any(|&b| b != 0) {
            let mut rem = 0u32;
            for b in magnitude.iter_mut() {
                let cur = (rem << 8) | u32::from(*b);
                *b = (cur / 10) as u8;
                rem = cur % 10;
            }
            digits.push(b'0' + rem as u8);
        }
        digits.reverse();
        (negative, String::from_utf8(digits).unwrap_or_default())
    }

    fn assert_round_trip(number: &Written) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        prop_assert_eq!(
            partition_key_bytes(KeyType::N, number.text.as_bytes(), &mut out),
            Ok(()),
            "{:?}",
            number
        );
        prop_assert!(out.len() >= 5);
        let scale = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
        let unscaled = &out[4..];
        prop_assert_eq!(i64::from(scale), number.scale, "scale of {}", number.text);
        // Minimal two's complement: no redundant sign byte.
        if let [first, second, ..] = unscaled {
            prop_assert!(
                !matches!((first, second & 0x80), (0x00, 0) | (0xff, 0x80)),
                "not minimal: {:02x?}",
                unscaled
            );
        }
        let (negative, digits) = decode_unscaled(unscaled);
        prop_assert_eq!(&digits, &number.digits, "digits of {}", number.text);
        prop_assert_eq!(
            negative,
            number.negative && !number.digits.is_empty(),
            "sign of {}",
            number.text
        );
        let mut scratch = Vec::new();
        prop_assert_eq!(
            token(KeyType::N, number.text.as_bytes(), &mut scratch),
            Ok(murmur3_cassandra_token(&out))
        );
        Ok(())
    }

    fn bytes_of(key_type: KeyType, text: &str) -> Result<Vec<u8>, KeyBytesError> {
        let mut out = Vec::new();
        partition_key_bytes(key_type, text.as_bytes(), &mut out).map(|()| out)
    }

    /// ScyllaDB's base64 decoder, restated: length a multiple of 4, a trailing `=` and a `=`
    /// before the last character each count as padding and are cut off, every other character
    /// must be in the standard alphabet, leftover bits ignored. Empty input is refused as an
    /// empty key.
    fn reference_base64(text: &[u8]) -> Option<Vec<u8>> {
        if text.is_empty() || !text.len().is_multiple_of(4) {
            return None;
        }
        let mut padding = 0;
        if text.last() == Some(&b'=') {
            padding += 1;
        }
        if text.len() > 1 && text[text.len() - 2] == b'=' {
            padding += 1;
        }
        let text = &text[..text.len() - padding];
        let sextet = |c: u8| -> Option<u32> {
            Some(u32::from(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            }))
        };
        let mut out = Vec::new();
        for group in text.chunks(4) {
            let mut bits = 0u32;
            for (i, &c) in group.iter().enumerate() {
                bits |= sextet(c)? << (18 - 6 * i);
            }
            let bytes = bits.to_be_bytes();
            // 4 characters give 3 bytes, 3 give 2, 2 give 1.
            out.extend_from_slice(&bytes[1..group.len()]);
        }
        Some(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decimal_serialization_round_trips(number in valid_number()) {
            assert_round_trip(&number)?;
        }

        #[test]
        fn long_digit_strings_round_trip(number in long_number()) {
            assert_round_trip(&number)?;
        }

        #[test]
        fn leading_zeros_and_plus_never_change_bytes(
            number in valid_number(), zeros in 1usize..40,
        ) {
            let unsigned = number.text.trim_start_matches(['+', '-']);
            let plain = bytes_of(KeyType::N, unsigned);
            prop_assert!(plain.is_ok());
            prop_assert_eq!(&bytes_of(KeyType::N, &format!("+{unsigned}")), &plain);
            let padded = format!("{}{unsigned}", "0".repeat(zeros));
            prop_assert_eq!(&bytes_of(KeyType::N, &padded), &plain);
            prop_assert_eq!(&bytes_of(KeyType::N, &format!("+{padded}")), &plain);
        }

        #[test]
        fn a_trailing_fraction_zero_changes_bytes(
            sign in prop::sample::select(vec!["", "+", "-"]),
            int in "[0-9]{1,20}",
            exp in exponent(),
        ) {
            let exp = exp.map(|(e, _)| e).unwrap_or_default();
            let whole = bytes_of(KeyType::N, &format!("{sign}{int}{exp}"));
            let with_zero = bytes_of(KeyType::N, &format!("{sign}{int}.0{exp}"));
            prop_assert!(whole.is_ok() && with_zero.is_ok());
            prop_assert_ne!(whole, with_zero);
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(
            value in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut scratch = Vec::new();
            for key_type in [KeyType::S, KeyType::N, KeyType::B] {
                let mut out = Vec::new();
                let bytes = partition_key_bytes(key_type, &value, &mut out);
                let token = token(key_type, &value, &mut scratch);
                prop_assert_eq!(bytes.err(), token.err());
                if let Ok(token) = token {
                    prop_assert_eq!(token, murmur3_cassandra_token(&out));
                }
            }
        }

        #[test]
        fn number_like_text_never_panics(value in "[-+.eE0-9 xna\u{0}]{0,48}") {
            let mut out = Vec::new();
            if partition_key_bytes(KeyType::N, value.as_bytes(), &mut out).is_ok() {
                prop_assert!(out.len() >= 5);
            }
        }

        #[test]
        fn base64_decoding_matches_scylla(value in "[A-Za-z0-9+/=_ -]{0,24}") {
            let expected = match reference_base64(value.as_bytes()) {
                Some(bytes) => Ok(bytes),
                None if value.is_empty() => Err(KeyBytesError::Empty),
                None => Err(KeyBytesError::InvalidBase64),
            };
            prop_assert_eq!(bytes_of(KeyType::B, &value), expected);
        }

        #[test]
        fn base64_of_any_bytes_decodes_back(raw in prop::collection::vec(any::<u8>(), 1..40)) {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(&raw);
            prop_assert_eq!(bytes_of(KeyType::B, &text), Ok(raw.clone()));
            let key = alternator_routing::dynamodb::PartitionKey {
                table: "t".into(),
                key_type: KeyType::B,
                value: raw.into(),
            };
            let mut scratch = Vec::new();
            prop_assert_eq!(
                key_token(&key, &mut scratch),
                token(KeyType::B, text.as_bytes(), &mut scratch)
            );
        }

        #[test]
        fn tablet_index_agrees_with_a_linear_scan(
            mut last in prop::collection::vec(any::<i64>(), 0..64),
            tokens in prop::collection::vec(any::<i64>(), 1..32),
        ) {
            last.sort_unstable();
            last.dedup();
            for token in tokens {
                let linear = last.iter().position(|&l| l >= token).unwrap_or(last.len());
                prop_assert_eq!(tablet_index(&last, token), linear);
            }
        }

        #[test]
        fn every_token_falls_in_exactly_one_tablet(
            mut last in prop::collection::vec(any::<i64>(), 0..64),
            tokens in prop::collection::vec(any::<i64>(), 1..32),
        ) {
            // A tablet map ends at the largest token.
            last.push(i64::MAX);
            last.sort_unstable();
            last.dedup();
            for token in tokens {
                let owners: Vec<usize> = (0..last.len())
                    .filter(|&i| (i == 0 || last[i - 1] < token) && token <= last[i])
                    .collect();
                prop_assert_eq!(owners.len(), 1, "token {}", token);
                prop_assert_eq!(tablet_index(&last, token), owners[0]);
            }
        }

        #[test]
        fn even_power_of_two_tablets_are_the_top_bits(log2 in 0u32..=12, token in any::<i64>()) {
            let last = even_tablet_last_tokens(1 << log2);
            let unsigned = (token as u64) ^ (1 << 63);
            let top_bits = if log2 == 0 { 0 } else { unsigned >> (64 - log2) };
            prop_assert_eq!(tablet_index(&last, token) as u64, top_bits);
        }
    }
}
