//! Byte searches over JSON text, eight bytes at a time.
//!
//! The request path steps over string contents looking for the few bytes that end or
//! complicate a string. Reading the input as little-endian `u64` words and testing all eight
//! bytes with a handful of integer operations ("SIMD within a register") is several times
//! cheaper than a byte loop, natively and in wasm32 (which has 64-bit integer arithmetic but no
//! SIMD unless enabled). Whatever the input, the answers are exactly those of the obvious byte
//! loops (see the tests).

#[cfg(test)]
mod tests;

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
pub(super) fn find_quote(bytes: &[u8], from: usize) -> Option<usize> {
    find(bytes, from, |w| bytes_equal(w, QUOTES), |b| b == b'"')
}

/// The index of the first `"`, `\` or control character (below `0x20`) in `bytes[from..]`:
/// the bytes a validating string reader must look at.
#[inline]
pub(super) fn find_string_special(bytes: &[u8], from: usize) -> Option<usize> {
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
pub(super) fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
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
pub(super) fn is_ascii(bytes: &[u8]) -> bool {
    let (words, tail) = bytes.as_chunks::<8>();
    let high = words.iter().fold(0, |acc, w| acc | u64::from_le_bytes(*w));
    high & HI == 0 && tail.iter().all(|&b| b < 0x80)
}
