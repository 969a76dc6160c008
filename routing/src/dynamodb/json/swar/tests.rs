//! The word-at-a-time searches against the obvious byte loops, on inputs that put the bytes
//! that matter at every offset of a word.

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
