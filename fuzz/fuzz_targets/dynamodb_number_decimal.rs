//! DynamoDB `N` key values are client controlled. Turning one into its CQL `decimal` bytes must
//! never panic, and an accepted value must serialize to exactly the digits and scale it was
//! written with, in minimal two's complement, whatever its length. The same input read as an
//! `S` or `B` key must not panic either.
#![no_main]

use alternator_routing::hash::{murmur3_cassandra_token, KeyType};
use alternator_routing::token::{partition_key_bytes, token};
use libfuzzer_sys::fuzz_target;

/// The decimal digits (no leading zeros, "" for zero) of a big-endian two's-complement
/// integer, and whether it is negative.
fn decode_unscaled(bytes: &[u8]) -> (bool, Vec<u8>) {
    let negative = bytes.first().is_some_and(|&b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
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
    (negative, digits)
}

fuzz_target!(|text: &[u8]| {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for key_type in [KeyType::S, KeyType::B] {
        let bytes = partition_key_bytes(key_type, text, &mut out).map(|()| out.clone());
        let token = token(key_type, text, &mut scratch);
        assert_eq!(bytes.as_ref().err(), token.as_ref().err());
    }

    if partition_key_bytes(KeyType::N, text, &mut out).is_err() {
        return;
    }
    assert_eq!(
        token(KeyType::N, text, &mut scratch),
        Ok(murmur3_cassandra_token(&out))
    );

    // What the text says: digits joined around the first dot, an optional sign first, the
    // scale = fraction characters - exponent.
    let (base, exponent) = match text.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &b"0"[..]),
    };
    let exponent: i64 = std::str::from_utf8(exponent)
        .ok()
        .and_then(|e| e.parse().ok())
        .expect("an accepted number has a 64-bit exponent");
    let (joined, fraction_len) = match base.iter().position(|&b| b == b'.') {
        Some(dot) => (
            [&base[..dot], &base[dot + 1..]].concat(),
            base.len() - dot - 1,
        ),
        None => (base.to_vec(), 0),
    };
    let (negative, digits) = match joined.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, &joined[..]),
    };
    let first_nonzero = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first_nonzero..];

    assert!(out.len() >= 5, "scale and at least one byte");
    let scale = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(
        i128::from(scale),
        fraction_len as i128 - i128::from(exponent)
    );
    let unscaled = &out[4..];
    if let [first, second, ..] = unscaled {
        assert!(
            !matches!((first, second & 0x80), (0x00, 0) | (0xff, 0x80)),
            "redundant sign byte"
        );
    }
    let (decoded_negative, decoded_digits) = decode_unscaled(unscaled);
    assert_eq!(decoded_digits, digits, "unscaled digits");
    assert_eq!(decoded_negative, negative && !digits.is_empty(), "sign");

    // A leading `+` or zero never changes the bytes of a number written digit first.
    if text.first().is_some_and(u8::is_ascii_digit) {
        for prefix in [&b"+"[..], b"0", b"+00"] {
            let mut prefixed = Vec::new();
            let text = [prefix, text].concat();
            assert_eq!(
                partition_key_bytes(KeyType::N, &text, &mut prefixed),
                Ok(())
            );
            assert_eq!(prefixed, out);
        }
    }
});
