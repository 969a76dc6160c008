//! Byte searches over JSON text, eight bytes at a time.
//!
//! The request path steps over string contents looking for the few bytes that end or
//! complicate a string. Reading the input as little-endian `u64` words and testing all eight
//! bytes with a handful of integer operations ("SIMD within a register") is several times
//! cheaper than a byte loop, natively and in wasm32 (which has 64-bit integer arithmetic but no
//! SIMD unless enabled). Whatever the input, the answers are exactly those of the obvious byte
//! loops (see the tests).

/// `0x01` in every byte.
const LO: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x80` in every byte.
const HI: u64 = u64::from_le_bytes([0x80; 8]);
const QUOTES: u64 = LO * b'"' as u64;
const BACKSLASHES: u64 = LO * b'\\' as u64;
const SPACES: u64 = LO * b' ' as u64;

/// High bit set in the lowest byte of `w` that is zero (and possibly in some higher bytes,
/// which the borrow can make wrong); zero if no byte is zero. Only the lowest set bit is used.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// Like [`zero_bytes`], for the bytes of `w` equal to the byte repeated in `pattern`.
#[inline(always)]
fn bytes_equal(w: u64, pattern: u64) -> u64 {
    zero_bytes(w ^ pattern)
}

/// Like [`zero_bytes`], for the bytes of `w` below `0x20` (JSON control characters).
#[inline(always)]
fn control_bytes(w: u64) -> u64 {
    w.wrapping_sub(SPACES) & !w & HI
}

/// The index of the first byte of `bytes[from..]` that `word_mask` flags (its lowest flagged
/// byte must be exact) and `is_match` accepts, the two agreeing on every byte; `None` if there
/// is none or `from` is past the end.
#[inline(always)]
fn find(
    bytes: &[u8],
    from: usize,
    word_mask: impl Fn(u64) -> u64,
    is_match: impl Fn(u8) -> bool,
) -> Option<usize> {
    let first_byte = |m: u64| (m.trailing_zeros() / 8) as usize;
    let rest = bytes.get(from..)?;
    // Most strings in a request are short: the first word usually decides.
    let Some((word, rest)) = rest.split_first_chunk::<8>() else {
        return rest.iter().position(|&b| is_match(b)).map(|p| from + p);
    };
    let m = word_mask(u64::from_le_bytes(*word));
    if m != 0 {
        return Some(from + first_byte(m));
    }
    // Long strings: thirty-two bytes per round, one branch.
    let mut i = from + 8;
    let (blocks, rest) = rest.as_chunks::<32>();
    for block in blocks {
        let (words, _) = block.as_chunks::<8>();
        if let [a, b, c, d] = words {
            let [a, b, c, d] = [a, b, c, d].map(|w| word_mask(u64::from_le_bytes(*w)));
            if a | b | c | d != 0 {
                let (m, at) = if a | b != 0 {
                    if a != 0 {
                        (a, i)
                    } else {
                        (b, i + 8)
                    }
                } else if c != 0 {
                    (c, i + 16)
                } else {
                    (d, i + 24)
                };
                return Some(at + first_byte(m));
            }
        }
        i += 32;
    }
    let (words, rest) = rest.as_chunks::<8>();
    for word in words {
        let m = word_mask(u64::from_le_bytes(*word));
        if m != 0 {
            return Some(i + first_byte(m));
        }
        i += 8;
    }
    rest.iter().position(|&b| is_match(b)).map(|p| i + p)
}

/// The index of the first `"` in `bytes[from..]`.
#[inline]
pub(crate) fn find_quote(bytes: &[u8], from: usize) -> Option<usize> {
    find(bytes, from, |w| bytes_equal(w, QUOTES), |b| b == b'"')
}

/// The index of the first `"`, `\` or control character (below `0x20`) in `bytes[from..]`:
/// the bytes a validating string reader must look at.
#[inline]
pub(crate) fn find_string_special(bytes: &[u8], from: usize) -> Option<usize> {
    find(
        bytes,
        from,
        |w| bytes_equal(w, QUOTES) | bytes_equal(w, BACKSLASHES) | control_bytes(w),
        |b| b == b'"' || b == b'\\' || b < 0x20,
    )
}

/// The index just past the closing quote of a JSON string whose contents start at `from`,
/// honouring backslash escapes (a backslash hides the byte after it, whatever it is) and
/// checking nothing else; `None` if the input ends first.
///
/// The first word is searched for quotes and backslashes together; past it (long strings, or
/// after an escape) only quotes are: a quote is escaped exactly when an odd number of
/// backslashes precede it (counting back no further than the last position known not to be
/// escaped), because the byte before such a run is never a backslash and so the run's first
/// backslash always starts an escape.
#[inline]
pub(crate) fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut from = from;
    // Most strings in a request (names, type tags, small values) end within their first word
    // with no backslash before the quote: one word read answers them.
    let rest = bytes.get(from..)?;
    let Some(word) = rest.first_chunk::<8>() else {
        return short_string_end(rest).map(|end| from + end);
    };
    let w = u64::from_le_bytes(*word);
    let m = bytes_equal(w, QUOTES) | bytes_equal(w, BACKSLASHES);
    if m != 0 {
        let at = from + (m.trailing_zeros() / 8) as usize;
        if bytes.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        // Step over the escape; the byte after it is not escaped.
        from = at + 2;
    } else {
        from += 8;
    }
    // Longer strings: only quotes are searched for, eight bytes at a time.
    loop {
        let quote = find_quote(bytes, from)?;
        let before = bytes.get(from..quote).unwrap_or_default();
        if before.last() != Some(&b'\\') {
            return Some(quote + 1);
        }
        let backslashes = before.iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(quote + 1);
        }
        from = quote + 1;
    }
}

/// [`string_end`] on the last few bytes of the input, one at a time.
fn short_string_end(rest: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        match *rest.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// Whether every byte is below `0x80` (ASCII text is valid UTF-8).
#[inline]
pub(crate) fn is_ascii(bytes: &[u8]) -> bool {
    let (words, tail) = bytes.as_chunks::<8>();
    let high = words.iter().fold(0, |acc, w| acc | u64::from_le_bytes(*w));
    high & HI == 0 && tail.iter().all(|&b| b < 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_find(bytes: &[u8], from: usize, is_match: impl Fn(u8) -> bool) -> Option<usize> {
        bytes
            .get(from..)?
            .iter()
            .position(|&b| is_match(b))
            .map(|p| from + p)
    }

    /// The byte loop the scanner used before.
    fn naive_string_end(input: &[u8], start: usize) -> Option<usize> {
        let mut i = start;
        loop {
            match *input.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
    }

    fn check_all(bytes: &[u8]) {
        assert_eq!(is_ascii(bytes), bytes.is_ascii(), "{bytes:?}");
        for from in 0..=bytes.len() + 2 {
            assert_eq!(
                find_quote(bytes, from),
                naive_find(bytes, from, |b| b == b'"'),
                "{bytes:?} from {from}"
            );
            assert_eq!(
                find_string_special(bytes, from),
                naive_find(bytes, from, |b| b == b'"' || b == b'\\' || b < 0x20),
                "{bytes:?} from {from}"
            );
            assert_eq!(
                string_end(bytes, from),
                naive_string_end(bytes, from),
                "{bytes:?} from {from}"
            );
        }
    }

    /// Bytes that are special, sit next to special values (borrow and carry edge cases) or are
    /// ordinary, so that random strings hit every case often.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => Just(b'a'),
            1 => Just(b'"'),
            1 => Just(b'\\'),
            1 => prop::sample::select(vec![
                0x00u8, 0x01, 0x1f, 0x20, 0x21, 0x22 ^ 0x80, 0x5c ^ 0x80, 0x23, 0x5b, 0x5d,
                0x7f, 0x80, 0x81, 0x9f, 0xa0, 0xc3, 0xe9, 0xff,
            ]),
            1 => any::<u8>(),
        ]
    }

    #[test]
    fn one_special_byte_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
                    for fill in [b'a', 0xff, 0x80, 0x01 + 0x20] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = special;
                        check_all(&bytes);
                    }
                }
            }
        }
    }

    #[test]
    fn every_pair_of_bytes_in_one_word() {
        // Borrows between neighbouring bytes are where SWAR tricks go wrong.
        let values: Vec<u8> = (0..=255).collect();
        for &a in &values {
            for &b in &values {
                for at in [0, 3, 6] {
                    let mut word = [b'x'; 8];
                    word[at] = a;
                    word[at + 1] = b;
                    let expected_q = naive_find(&word, 0, |c| c == b'"');
                    assert_eq!(find_quote(&word, 0), expected_q, "{word:?}");
                    let expected_sp = naive_find(&word, 0, |c| c == b'"' || c == b'\\' || c < 0x20);
                    assert_eq!(find_string_special(&word, 0), expected_sp, "{word:?}");
                }
            }
        }
    }

    #[test]
    fn strings_ending_at_chunk_boundaries() {
        for len in 0..48 {
            // `len` plain bytes then the closing quote, then more text.
            let mut bytes = vec![b'a'; len];
            bytes.push(b'"');
            bytes.extend_from_slice(b"aaaaaaaaaaaaaaaa");
            assert_eq!(string_end(&bytes, 0), Some(len + 1));
            // Escaped quote just before the end of a word, then the real end.
            let mut escaped = vec![b'a'; len];
            escaped.extend_from_slice(b"\\\"b\"");
            assert_eq!(string_end(&escaped, 0), Some(len + 4));
            // Unterminated, or ending in a lone backslash.
            assert_eq!(string_end(&vec![b'a'; len], 0), None);
            let mut trailing = vec![b'a'; len];
            trailing.push(b'\\');
            assert_eq!(string_end(&trailing, 0), None);
            trailing.push(b'"');
            assert_eq!(string_end(&trailing, 0), None);
        }
    }

    proptest! {
        #[test]
        fn searches_match_byte_loops(
            bytes in prop::collection::vec(interesting_byte(), 0..80),
        ) {
            check_all(&bytes);
        }

        #[test]
        fn searches_match_byte_loops_on_any_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            check_all(&bytes);
        }
    }
}
