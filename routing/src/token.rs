//! Partition-key bytes and tokens of DynamoDB hash-key values, as Alternator computes them, and
//! the tablet that owns a token.
//!
//! Alternator stores a table's hash key in a CQL column whose type follows the key's DynamoDB
//! type: `S` is `text`, `B` is `blob` and `N` is `decimal`. The token that places a partition on
//! the ring (and in a tablet) is the `Murmur3Partitioner` hash
//! ([`murmur3_cassandra_token`]) of that column's serialized value, so:
//!
//! - `S`: the UTF-8 bytes, as they are;
//! - `B`: the base64-decoded bytes;
//! - `N`: the CQL `decimal` serialization of the number as written: a 4-byte big-endian signed
//!   scale, then the unscaled value as minimal big-endian two's complement. Nothing is
//!   normalised: `1000` (scale 0, unscaled 1000), `1e3` (scale -3, unscaled 1) and `1000.0`
//!   (scale 1, unscaled 10000) are three different partitions, while `+1000` and `001000` are
//!   the same one as `1000`.
//!
//! Values come in the form a DynamoDB request carries them: the content of the JSON string with
//! its escapes decoded, so base64 text for `B` ([`partition_key_bytes`], [`token`]). The
//! request scanner of [`crate::dynamodb`] already decodes `B` values; [`key_token`] takes its
//! [`PartitionKey`] as it is.
//!
//! Every value Alternator refuses as a key is an error here too, so a caller only routes by
//! token the requests that can succeed; an error is never a reason to fail a request, only not
//! to route it by token. The one deliberate difference is a cost bound on numbers, see
//! [`MAX_NUMBER_DIGITS`].
//!
//! Tablets: a table's tablet map is a sorted list of last tokens (tablet `i` owns the tokens
//! after tablet `i - 1`'s last token up to its own, inclusive); the routing core reads it from
//! the snapshot's ring ([`crate::ring`]). The even split ScyllaDB gives a new table and a
//! token's tablet by binary search, which the token vectors check, are test support
//! (`tests/tablets/mod.rs`).
//!
//! # Numbers
//!
//! An `N` key is accepted exactly when Alternator accepts it, which is ScyllaDB's `big_decimal`
//! text constructor (`utils/big_decimal.cc`) followed by Alternator's range checks
//! (`parse_and_validate_number` in `alternator/serialization.cc`). `big_decimal` reads:
//!
//! 1. The first `e` or `E` splits the text into a base and an exponent. An exponent marker
//!    with nothing after it is an error (`1e`). The exponent must be what
//!    `boost::lexical_cast<int64_t>` accepts: an optional `+` or `-` and at least one ASCII
//!    digit, nothing else (no spaces), within the `i64` range; leading zeros are fine (`1e+03`).
//! 2. The first `.` splits the base into integer and fraction digits, which are joined. Either
//!    side may be empty (`.5`, `5.`) but not both; `5.` is the same number as `5`, scale 0.
//! 3. An optional `+` or `-` may start the joined digits, then only ASCII digits are allowed
//!    (leading zeros are dropped before the digits are converted). Because the sign is looked
//!    for after joining, `.-5` reads as -0.05 (scale 2): odd, and DynamoDB would refuse it, but
//!    Alternator accepts it, so it is accepted here with the same bytes. `--1`, `+-1`, `1-`,
//!    `1.2.3`, `..5`, ` 1`, `1 `, `0x1f`, `1_000`, `NaN`, `Infinity` are errors.
//! 4. The scale is the number of characters after the dot minus the exponent; it must fit in
//!    an `i32` (`1e-2147483648` does not, `1e2147483648` does). `-0` is zero, serialized as
//!    `0` is.
//!
//! Alternator then refuses a number whose DynamoDB "magnitude" (the power of ten of its first
//! significant digit) is above 125 or below -130, or whose "precision" (count of significant
//! digits) is above 38. It computes both from the text, and so does this module, quirks
//! included: zero passes whatever its exponent (`0e1000000` is a key, scale -1000000), and an
//! exponent written with more than 4 characters (`1e+0001`, `1e00001`) makes any other number
//! out of range.
//!
//! Where this module differs, it refuses something ScyllaDB accepts, which only costs token
//! routing for that request: a NUL byte (JSON `\u0000`) among the digits is an error here,
//! while ScyllaDB's big-integer conversion reads the digits as a C string and stops at it; and
//! more than [`MAX_NUMBER_DIGITS`] digits after the leading zeros are refused.

use crate::dynamodb::PartitionKey;
use crate::hash::{murmur3_cassandra_token, KeyType};

/// Why a value has no partition-key bytes (Alternator would refuse it as a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyBytesError {
    /// An empty `S`, `B` or `N` value: DynamoDB and Alternator refuse empty key values.
    #[error("a key attribute value cannot be empty")]
    Empty,
    /// A `B` value that is not padded standard-alphabet base64.
    #[error("binary key value is not padded standard base64")]
    InvalidBase64,
    /// An `N` value whose digits are missing or contain something other than ASCII digits (a
    /// misplaced sign, a second dot, a space, hexadecimal, `NaN`, ...).
    #[error("number key value is not a decimal number")]
    NumberSyntax,
    /// An `N` value with an exponent marker but an empty exponent (`1e`).
    #[error("number key value has an empty exponent")]
    NumberEmptyExponent,
    /// An `N` value whose exponent is not a signed 64-bit decimal integer.
    #[error("number key value has an exponent that is not a 64-bit integer")]
    NumberExponent,
    /// An `N` value whose scale (fraction digits minus exponent) does not fit in 32 bits.
    #[error("number key value has a scale outside the 32-bit range")]
    NumberScale,
    /// An `N` value of magnitude above 10^125.
    #[error("number key value overflows: magnitude above 125")]
    NumberOverflow,
    /// An `N` value of magnitude below 10^-130.
    #[error("number key value underflows: magnitude below -130")]
    NumberUnderflow,
    /// An `N` value with more than 38 significant digits.
    #[error("number key value has more than 38 significant digits")]
    NumberTooPrecise,
    /// An `N` value with more than [`MAX_NUMBER_DIGITS`] digits after its leading zeros.
    #[error("number key value has more than {MAX_NUMBER_DIGITS} digits after its leading zeros")]
    NumberTooLong,
}

/// The most digits, after the leading zeros, of an `N` value this module serializes.
///
/// Alternator limits a number to 38 significant digits, but not the zeros that follow them in
/// the fraction: `1.000…0` with ten thousand zeros is a valid key there, whose unscaled value
/// has ten thousand digits. Turning digits into binary costs time quadratic in their count,
/// which a proxy cannot spend per request, so longer values are refused
/// ([`KeyBytesError::NumberTooLong`]) and such a request is simply not routed by token. Every
/// number written without padding zeros (at most 126 integer digits for magnitude 125, at most
/// 168 fraction digits for magnitude -130 with 38 significant digits) is far below the bound.
pub const MAX_NUMBER_DIGITS: usize = 1024;

/// Alternator's limits on numbers (DynamoDB's): magnitude in `[-130, 125]`, at most 38
/// significant digits.
const MAX_MAGNITUDE: i64 = 125;
const MIN_MAGNITUDE: i64 = -130;
const MAX_PRECISION: i64 = 38;

/// Writes into `out` (cleared first) the bytes Alternator hashes for a hash-key value, the
/// serialized partition key.
///
/// `value` is the content of the value's JSON string with escapes decoded: the text for `S`
/// (taken as bytes, as Alternator does, without checking UTF-8), the number text for `N`, the
/// base64 text for `B`. On error `out` holds no meaningful bytes.
///
/// `B` is decoded as Alternator decodes it: standard alphabet, length a multiple of 4, at most
/// two `=` of padding at the end, no whitespace; bits left over in the last character are
/// ignored. Unpadded base64 is refused, as Alternator refuses it.
///
/// `N` is accepted and serialized as described under "Numbers" in the module documentation
/// (ScyllaDB's `big_decimal` text constructor followed by Alternator's range and precision
/// checks).
pub fn partition_key_bytes(
    key_type: KeyType,
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), KeyBytesError> {
    out.clear();
    if value.is_empty() {
        return Err(KeyBytesError::Empty);
    }
    match key_type {
        KeyType::S => {
            out.extend_from_slice(value);
            Ok(())
        }
        KeyType::B => {
            use base64::Engine as _;
            BASE64
                .decode_vec(value, out)
                .map_err(|_| KeyBytesError::InvalidBase64)
        }
        KeyType::N => {
            let number = parse_number(value)?;
            number.serialize(out);
            Ok(())
        }
    }
}

/// The token (`Murmur3Partitioner`) of a hash-key value given as in [`partition_key_bytes`].
/// `scratch` holds the serialized key for `B` and `N`; reuse it across calls.
pub fn token(key_type: KeyType, value: &[u8], scratch: &mut Vec<u8>) -> Result<i64, KeyBytesError> {
    if key_type == KeyType::S {
        // The bytes are the value itself: no copy.
        return if value.is_empty() {
            Err(KeyBytesError::Empty)
        } else {
            Ok(murmur3_cassandra_token(value))
        };
    }
    partition_key_bytes(key_type, value, scratch)?;
    Ok(murmur3_cassandra_token(scratch))
}

/// The token of a key found by the request scanner ([`crate::dynamodb`]), whose `B` values are
/// already base64-decoded (`S` and `N` are text, as for [`token`]).
///
/// The scanner decodes base64 more leniently than Alternator (padding optional), so an
/// unpadded `B` key gets a token here although Alternator will refuse the request; routing it
/// anywhere is harmless.
pub fn key_token(key: &PartitionKey<'_>, scratch: &mut Vec<u8>) -> Result<i64, KeyBytesError> {
    match key.key_type {
        KeyType::B if key.value.is_empty() => Err(KeyBytesError::Empty),
        KeyType::B => Ok(murmur3_cassandra_token(&key.value)),
        key_type => token(key_type, &key.value, scratch),
    }
}

/// Base64 as ScyllaDB's decoder reads it: standard alphabet, canonical padding required,
/// trailing bits not checked.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// A number accepted as a key, borrowing its digits from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Number<'a> {
    negative: bool,
    /// The digits of the unscaled value, in two pieces (before and after the dot, sign
    /// removed); both are ASCII digits only, possibly with leading zeros.
    high: &'a [u8],
    low: &'a [u8],
    scale: i32,
}

fn is_exponent_marker(b: &u8) -> bool {
    matches!(b, b'e' | b'E')
}

/// Parses an `N` key value the way Alternator does: see "Numbers" in the module docs.
fn parse_number(text: &[u8]) -> Result<Number<'_>, KeyBytesError> {
    let mut parts = text.splitn(2, is_exponent_marker);
    let base = parts.next().unwrap_or_default();
    let exponent = match parts.next() {
        None => 0,
        Some([]) => return Err(KeyBytesError::NumberEmptyExponent),
        Some(exponent) => parse_exponent(exponent).ok_or(KeyBytesError::NumberExponent)?,
    };

    let mut parts = base.splitn(2, |&b| b == b'.');
    let integer = parts.next().unwrap_or_default();
    let fraction = parts.next().unwrap_or_default();

    // The sign is the first character of integer and fraction joined.
    let (negative, high, low) = match (integer.split_first(), fraction.split_first()) {
        (Some((b'-', rest)), _) => (true, rest, fraction),
        (Some((b'+', rest)), _) => (false, rest, fraction),
        (Some(_), _) => (false, integer, fraction),
        (None, Some((b'-', rest))) => (true, integer, rest),
        (None, Some((b'+', rest))) => (false, integer, rest),
        (None, _) => (false, integer, fraction),
    };
    if high.is_empty() && low.is_empty() {
        return Err(KeyBytesError::NumberSyntax);
    }
    if !high.iter().chain(low).all(u8::is_ascii_digit) {
        return Err(KeyBytesError::NumberSyntax);
    }

    // usize -> i128 and i64 -> i128 never lose anything.
    let scale = fraction.len() as i128 - i128::from(exponent);
    let scale = i32::try_from(scale).map_err(|_| KeyBytesError::NumberScale)?;

    let (magnitude, precision) = magnitude_and_precision(text);
    if magnitude > MAX_MAGNITUDE {
        return Err(KeyBytesError::NumberOverflow);
    }
    if magnitude < MIN_MAGNITUDE {
        return Err(KeyBytesError::NumberUnderflow);
    }
    if precision > MAX_PRECISION {
        return Err(KeyBytesError::NumberTooPrecise);
    }

    let leading_zeros = high.iter().chain(low).take_while(|&&b| b == b'0').count();
    if high.len() + low.len() - leading_zeros > MAX_NUMBER_DIGITS {
        return Err(KeyBytesError::NumberTooLong);
    }
    Ok(Number {
        negative,
        high,
        low,
        scale,
    })
}

/// An exponent as `boost::lexical_cast<int64_t>` reads it: `[+-]?[0-9]+` within the `i64`
/// range, nothing else.
fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// DynamoDB's "magnitude" (the power of ten of the first significant digit) and "precision"
/// (the count of significant digits) of a number, computed from its text the way Alternator's
/// `get_magnitude_and_precision` does, on a text `big_decimal` already accepted.
///
/// In outline: the sign is dropped if it is the first character; the magnitude follows from
/// where the first non-`0` character stands relative to the dot, plus the exponent; the
/// precision counts the characters from the first to the last significant one, the dot
/// excluded. Zero has magnitude and precision 0 whatever its exponent. An exponent of more than
/// 4 characters is not read: it makes the magnitude 9999, or -9999 if it starts with `-`.
/// Alternator uses `int` where this uses `i64`; they agree for every text shorter than 2 GiB.
fn magnitude_and_precision(text: &[u8]) -> (i64, i64) {
    let mut parts = text.splitn(2, is_exponent_marker);
    let mut base = parts.next().unwrap_or_default();
    let exponent = parts.next();
    if matches!(text.first(), Some(b'+' | b'-')) {
        base = base.get(1..).unwrap_or_default();
    }
    // Lengths and positions of a slice always fit in i64.
    let len = base.len() as i64;
    let first_nonzero = base.iter().position(|&b| b != b'0');
    let (mut magnitude, precision) = match base.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let (magnitude, precision) = if first_nonzero == Some(dot) {
                // 000.00031: like 3.1e-4, magnitude -4, precision 2 (before trailing zeros).
                let fraction = base.get(dot + 1..).unwrap_or_default();
                match fraction.iter().position(|&b| b != b'0') {
                    Some(at) => (-(at as i64) - 1, fraction.len() as i64 - at as i64),
                    None => (0, 0),
                }
            } else {
                // 00123.450: magnitude 2, precision 6 (before trailing zeros). The dot is
                // itself not a `0`, so the first non-`0` character is before it.
                let first = first_nonzero.unwrap_or(dot) as i64;
                (dot as i64 - first - 1, len - first - 1)
            };
            // Trailing zeros are not significant; neither is the dot when they reach it.
            let precision = match base.iter().rposition(|&b| b != b'.' && b != b'0') {
                None => 0,
                Some(last) if last < dot => precision - (len - last as i64 - 2),
                Some(last) => precision - (len - last as i64 - 1),
            };
            (magnitude, precision)
        }
        None => match first_nonzero {
            None => (0, 0),
            Some(first) => {
                let first = first as i64;
                let last = base.iter().rposition(|&b| b != b'0').unwrap_or_default() as i64;
                (len - 1 - first, len - first - (len - last - 1))
            }
        },
    };
    if precision != 0 {
        if let Some(exponent) = exponent {
            if exponent.len() > 4 {
                magnitude = if exponent.first() == Some(&b'-') {
                    -9999
                } else {
                    9999
                };
            } else {
                match parse_exponent(exponent) {
                    Some(e) => magnitude += e,
                    None => magnitude = 9999,
                }
            }
        }
    }
    (magnitude, precision)
}

impl Number<'_> {
    /// Appends the CQL `decimal` serialization to `out` (cleared first): the scale as 4 bytes
    /// big-endian, then the unscaled value as minimal big-endian two's complement (zero is one
    /// `00` byte), as Java's `BigInteger.toByteArray` and ScyllaDB's varint writer produce.
    fn serialize(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.scale.to_be_bytes());
        let start = out.len();

        // The magnitude is built in `out[start..]` as little-endian 32-bit limbs, each stored
        // little-endian, so the whole is one little-endian byte string; nine digits at a time
        // are folded in with one multiply-add pass.
        let mut chunk: u32 = 0;
        let mut chunk_digits: u32 = 0;
        for &d in self.high.iter().chain(self.low).skip_while(|&&d| d == b'0') {
            // Digits were checked by `parse_number`; wrapping keeps this panic-free anyway.
            chunk = chunk
                .wrapping_mul(10)
                .wrapping_add(u32::from(d.wrapping_sub(b'0')));
            chunk_digits += 1;
            if chunk_digits == 9 {
                mul_add(out, start, 1_000_000_000, chunk);
                chunk = 0;
                chunk_digits = 0;
            }
        }
        if chunk_digits > 0 {
            mul_add(out, start, 10u32.pow(chunk_digits), chunk);
        }

        // Minimal magnitude: drop high zero bytes (all of them for zero).
        while out.len() > start && out.last() == Some(&0) {
            out.pop();
        }
        if out.len() == start {
            // Zero, negative zero included.
            out.push(0);
            return;
        }
        if self.negative {
            // Two's complement: invert, add one. The magnitude is not zero, so no carry
            // leaves the top byte.
            let mut carry = true;
            for b in out.iter_mut().skip(start) {
                let (v, overflow) = (!*b).overflowing_add(u8::from(carry));
                *b = v;
                carry = overflow;
            }
            // A clear top bit would read as positive: one more 0xff byte.
            if out.last().is_some_and(|&b| b & 0x80 == 0) {
                out.push(0xff);
            }
        } else if out.last().is_some_and(|&b| b & 0x80 != 0) {
            // A set top bit would read as negative: one more 0x00 byte.
            out.push(0);
        }
        if let Some(unscaled) = out.get_mut(start..) {
            unscaled.reverse();
        }
    }
}

/// `limbs = limbs * mul + add` over the little-endian 32-bit limbs in `out[start..]`, growing
/// `out` by a limb when the result needs one.
fn mul_add(out: &mut Vec<u8>, start: usize, mul: u32, add: u32) {
    let mut carry = u64::from(add);
    if let Some(limbs) = out.get_mut(start..) {
        for limb in limbs.chunks_exact_mut(4) {
            if let Ok(limb) = <&mut [u8; 4]>::try_from(limb) {
                // < 2^32 * 10^9 + 2^32: fits in u64.
                let v = u64::from(u32::from_le_bytes(*limb)) * u64::from(mul) + carry;
                *limb = (v as u32).to_le_bytes();
                carry = v >> 32;
            }
        }
    }
    if carry != 0 {
        out.extend_from_slice(&(carry as u32).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn number(text: &str) -> Result<String, KeyBytesError> {
        let mut out = Vec::new();
        partition_key_bytes(KeyType::N, text.as_bytes(), &mut out).map(|()| hex(&out))
    }

    fn binary(text: &str) -> Result<Vec<u8>, KeyBytesError> {
        let mut out = Vec::new();
        partition_key_bytes(KeyType::B, text.as_bytes(), &mut out).map(|()| out)
    }

    #[test]
    fn numbers_serialize_as_written() {
        let cases = [
            (
                "1000",
                "00000000" /* scale 0 */
                    .to_owned()
                    + "03e8",
            ),
            ("1e3", "fffffffd01".to_owned()),
            ("1E3", "fffffffd01".to_owned()),
            ("1e+3", "fffffffd01".to_owned()),
            ("1000.0", "000000012710".to_owned()),
            ("0", "0000000000".to_owned()),
            ("-0", "0000000000".to_owned()),
            ("-0.0", "0000000100".to_owned()),
            ("000", "0000000000".to_owned()),
            ("-5", "00000000fb".to_owned()),
            ("-129", "00000000ff7f".to_owned()),
            ("-128", "0000000080".to_owned()),
            ("128", "000000000080".to_owned()),
            ("127", "000000007f".to_owned()),
            ("255", "0000000000ff".to_owned()),
            ("-256", "00000000ff00".to_owned()),
            ("-257", "00000000feff".to_owned()),
            (".5", "0000000105".to_owned()),
            ("-.5", "00000001fb".to_owned()),
            ("5.", "0000000005".to_owned()),
            ("0.05", "0000000205".to_owned()),
            ("12.5e-1", "000000027d".to_owned()),
            ("1e-130", "0000008201".to_owned()),
            ("1e125", "ffffff8301".to_owned()),
            // 2^64 = 18446744073709551616: a carry into a third limb.
            (
                "18446744073709551616",
                "00000000010000000000000000".to_owned(),
            ),
            (
                "-18446744073709551616",
                "00000000ff0000000000000000".to_owned(),
            ),
            // 10^38 - 1, the largest 38-digit integer.
            (
                "99999999999999999999999999999999999999",
                "000000004b3b4ca85a86c47a098a223fffffffff".to_owned(),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(number(text).as_deref(), Ok(expected.as_str()), "{text}");
        }
    }

    #[test]
    fn sign_and_leading_zeros_do_not_change_bytes() {
        let plain = number("1000");
        for text in ["+1000", "001000", "+001000", "1000.", "01000."] {
            assert_eq!(number(text), plain, "{text}");
        }
        assert_ne!(number("1000"), number("1000.0"));
        assert_ne!(number("1000"), number("1e3"));
    }

    #[test]
    fn sign_after_an_empty_integer_part_is_read_as_alternator_does() {
        // big_decimal joins integer and fraction digits before looking for the sign.
        assert_eq!(number(".-5").as_deref(), Ok("00000002fb"));
        assert_eq!(number(".+5").as_deref(), Ok("0000000205"));
        for text in [
            "--1", "+-1", "-+1", ".--5", "1.-5", "-.-5", "+.-5", "1-", "1+",
        ] {
            assert_eq!(number(text), Err(KeyBytesError::NumberSyntax), "{text}");
        }
    }

    #[test]
    fn malformed_numbers_are_errors() {
        use KeyBytesError::*;
        let cases: &[(&str, KeyBytesError)] = &[
            ("", Empty),
            ("-", NumberSyntax),
            ("+", NumberSyntax),
            (".", NumberSyntax),
            ("-.", NumberSyntax),
            ("e5", NumberSyntax),
            ("1e", NumberEmptyExponent),
            ("1E", NumberEmptyExponent),
            ("1e+", NumberExponent),
            ("1e-", NumberExponent),
            ("1e1.5", NumberExponent),
            ("1e5e3", NumberExponent),
            ("1e 5", NumberExponent),
            ("1e9223372036854775808", NumberExponent),
            ("1.2.3", NumberSyntax),
            ("..5", NumberSyntax),
            (" 1", NumberSyntax),
            ("1 ", NumberSyntax),
            ("0x1f", NumberSyntax),
            ("1_000", NumberSyntax),
            ("NaN", NumberSyntax),
            ("nan", NumberSyntax),
            ("Infinity", NumberSyntax),
            ("-Infinity", NumberSyntax),
            ("inf", NumberSyntax),
            ("\u{0661}", NumberSyntax),
            ("1\u{0}", NumberSyntax),
            ("1e2147483649", NumberScale),
            ("1e-2147483648", NumberScale),
            ("1e126", NumberOverflow),
            ("10e125", NumberOverflow),
            ("1e-131", NumberUnderflow),
            ("0.1e-130", NumberUnderflow),
            ("1234567890123456789012345678901234567890", NumberTooPrecise),
            (
                "1.234567890123456789012345678901234567890",
                NumberTooPrecise,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(number(text), Err(*expected), "{text:?}");
        }
    }

    #[test]
    fn exponents_are_read_as_boost_lexical_cast_reads_them() {
        assert_eq!(parse_exponent(b"0"), Some(0));
        assert_eq!(parse_exponent(b"-0"), Some(0));
        assert_eq!(parse_exponent(b"+007"), Some(7));
        assert_eq!(parse_exponent(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_exponent(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_exponent(b"00000000000000000000000009"), Some(9));
        for bad in [
            "",
            "+",
            "-",
            "--1",
            "+-1",
            "1-",
            " 1",
            "1 ",
            "0x1",
            "9223372036854775808",
        ] {
            assert_eq!(parse_exponent(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn zero_ignores_the_range_checks_but_not_the_scale_range() {
        // Alternator computes no magnitude for zero, so any exponent that keeps the scale in
        // 32 bits is accepted.
        assert_eq!(number("0e1000000").as_deref(), Ok("fff0bdc000"));
        assert_eq!(number("0e2147483648").as_deref(), Ok("8000000000"));
        assert_eq!(number("0.0e2147483649").as_deref(), Ok("8000000000"));
        assert_eq!(number("0e-2147483648"), Err(KeyBytesError::NumberScale));
        assert_eq!(number("0e+00001").as_deref(), Ok("ffffffff00"));
    }

    #[test]
    fn long_exponents_are_out_of_range_for_nonzero_numbers() {
        // More than 4 exponent characters: Alternator does not read the value.
        assert_eq!(number("1e+100").as_deref(), Ok("ffffff9c01"));
        assert_eq!(number("1e0100").as_deref(), Ok("ffffff9c01"));
        assert_eq!(number("1e+0001"), Err(KeyBytesError::NumberOverflow));
        assert_eq!(number("1e00001"), Err(KeyBytesError::NumberOverflow));
        assert_eq!(number("1e-0001"), Err(KeyBytesError::NumberUnderflow));
    }

    #[test]
    fn magnitude_and_precision_follow_dynamodb_definitions() {
        let cases: &[(&str, (i64, i64))] = &[
            ("0", (0, 0)),
            ("000", (0, 0)),
            ("0.000", (0, 0)),
            ("1000", (3, 1)),
            ("-1000", (3, 1)),
            ("1000.00", (3, 1)),
            ("100.", (2, 1)),
            ("1235.60", (3, 5)),
            ("000123.45678", (2, 8)),
            ("0.000031", (-5, 2)),
            ("0.000310", (-4, 2)),
            (".5", (-1, 1)),
            ("12.34e56", (57, 4)),
            ("9e123", (123, 1)),
            ("-9e-123", (-123, 1)),
            ("0e99999", (0, 0)),
            ("1e+0001", (9999, 1)),
            ("1e-0001", (-9999, 1)),
            (".-5", (-1, 2)),
        ];
        for (text, expected) in cases {
            assert_eq!(
                magnitude_and_precision(text.as_bytes()),
                *expected,
                "{text}"
            );
        }
    }

    #[test]
    fn range_limits_are_inclusive() {
        assert!(number("9.9999999999999999999999999999999999999e125").is_ok());
        assert!(number("1e-130").is_ok());
        assert!(number(&format!("0.{}1", "0".repeat(129))).is_ok());
        assert_eq!(
            number(&format!("0.{}1", "0".repeat(130))),
            Err(KeyBytesError::NumberUnderflow)
        );
        assert!(number(&format!("1{}", "0".repeat(125))).is_ok());
        assert_eq!(
            number(&format!("1{}", "0".repeat(126))),
            Err(KeyBytesError::NumberOverflow)
        );
        assert!(number("12345678901234567890123456789012345678").is_ok());
        assert!(number("-1234567890123456789012345678901234567.8e-3").is_ok());
    }

    #[test]
    fn digit_count_is_bounded_after_leading_zeros() {
        let zeros = "0".repeat(MAX_NUMBER_DIGITS * 4);
        // Leading zeros cost nothing and are not counted.
        assert_eq!(number(&format!("{zeros}7")).as_deref(), Ok("0000000007"));
        let at_bound = format!("1.{}", "0".repeat(MAX_NUMBER_DIGITS - 1));
        let bytes = number(&at_bound);
        assert!(bytes.is_ok(), "{bytes:?}");
        let over = format!("1.{}", "0".repeat(MAX_NUMBER_DIGITS));
        assert_eq!(number(&over), Err(KeyBytesError::NumberTooLong));
    }

    #[test]
    fn binary_values_are_decoded_as_alternator_decodes_base64() {
        assert_eq!(binary("3q2+7w=="), Ok(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(binary("AAEC"), Ok(vec![0, 1, 2]));
        assert_eq!(binary("AAE="), Ok(vec![0, 1]));
        assert_eq!(binary("+/+/"), Ok(vec![0xfb, 0xff, 0xbf]));
        // Leftover bits in the last character are not checked.
        assert_eq!(binary("QR=="), Ok(vec![0x41]));
        assert_eq!(binary("QUJ="), Ok(vec![0x41, 0x42]));
        for bad in [
            "", "3q2+7w", "3q2+7w=", "AAE", "A", "A===", "====", "AA=A", "AA==AAAA", "-_-_",
            "AA AA", "AAAA\n", "AAA=AAAA",
        ] {
            let expected = if bad.is_empty() {
                KeyBytesError::Empty
            } else {
                KeyBytesError::InvalidBase64
            };
            assert_eq!(binary(bad), Err(expected), "{bad:?}");
        }
    }

    #[test]
    fn strings_are_their_bytes_and_never_empty() {
        let mut out = vec![9, 9];
        assert_eq!(
            partition_key_bytes(KeyType::S, "é#1".as_bytes(), &mut out),
            Ok(())
        );
        assert_eq!(out, "é#1".as_bytes());
        // Not UTF-8: Alternator does not check either.
        assert_eq!(
            partition_key_bytes(KeyType::S, &[0xff, 0x00], &mut out),
            Ok(())
        );
        assert_eq!(out, [0xff, 0x00]);
        assert_eq!(
            partition_key_bytes(KeyType::S, b"", &mut out),
            Err(KeyBytesError::Empty)
        );
        assert_eq!(token(KeyType::S, b"", &mut out), Err(KeyBytesError::Empty));
    }

    #[test]
    fn token_hashes_the_partition_key_bytes() {
        let mut scratch = Vec::new();
        let mut bytes = Vec::new();
        for (key_type, value) in [
            (KeyType::S, "user#1"),
            (KeyType::N, "-1.5e7"),
            (KeyType::B, "3q2+7w=="),
        ] {
            partition_key_bytes(key_type, value.as_bytes(), &mut bytes).unwrap_or_default();
            assert_eq!(
                token(key_type, value.as_bytes(), &mut scratch),
                Ok(murmur3_cassandra_token(&bytes)),
                "{key_type:?} {value}"
            );
        }
        assert_eq!(
            token(KeyType::N, b"1e", &mut scratch),
            Err(KeyBytesError::NumberEmptyExponent)
        );
    }

    #[test]
    fn key_token_takes_scanned_keys_with_decoded_binary() {
        let mut scratch = Vec::new();
        let key = |key_type, value: &'static [u8]| PartitionKey {
            table: Cow::Borrowed("t"),
            key_type,
            value: Cow::Borrowed(value),
        };
        assert_eq!(
            key_token(&key(KeyType::B, &[0xde, 0xad, 0xbe, 0xef]), &mut scratch),
            token(KeyType::B, b"3q2+7w==", &mut scratch)
        );
        assert_eq!(
            key_token(&key(KeyType::N, b"1000.0"), &mut scratch),
            token(KeyType::N, b"1000.0", &mut scratch)
        );
        assert_eq!(
            key_token(&key(KeyType::S, b"a"), &mut scratch),
            Ok(murmur3_cassandra_token(b"a"))
        );
        assert_eq!(
            key_token(&key(KeyType::B, b""), &mut scratch),
            Err(KeyBytesError::Empty)
        );
    }
}
