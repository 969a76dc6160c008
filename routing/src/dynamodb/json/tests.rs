//! The scanner against the byte-at-a-time loops it replaced, on inputs dense in the bytes
//! that matter (quotes, backslashes, brackets, control and non-ASCII bytes, invalid UTF-8).

use super::*;
use proptest::prelude::*;

/// The lenient skip as it was: one byte at a time.
fn reference_skip(input: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(i) {
        i += 1;
    }
    let string_end = |mut i: usize| loop {
        match *input.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    };
    let mut depth = 0usize;
    loop {
        let Some(&b) = input.get(i) else {
            return (depth == 0).then_some(i);
        };
        match b {
            b'"' => {
                i = string_end(i + 1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b',' if depth == 0 => return Some(i),
            _ => i += 1,
        }
    }
}

/// The validating string reader as it was: the body's range, whether it has escapes,
/// and the position after the closing quote.
fn reference_string(input: &[u8], start: usize) -> Option<(usize, usize, bool, usize)> {
    let mut i = start;
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(i) {
        i += 1;
    }
    if input.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    let body = i;
    let mut escaped = false;
    loop {
        match *input.get(i)? {
            b'"' => return Some((body, i, escaped, i + 1)),
            b'\\' => {
                escaped = true;
                match *input.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let digits = input.get(i + 2..i + 6)?;
                        if !digits.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            0x00..=0x1f => return None,
            _ => i += 1,
        }
    }
}

fn check(input: &[u8]) {
    let base = input.as_ptr() as usize;
    for start in 0..=input.len() {
        let mut s = Scanner::lenient(input);
        s.pos = start;
        let skipped = s.skip_value().ok().map(|()| s.pos);
        assert_eq!(
            skipped,
            reference_skip(input, start),
            "skip {input:?} at {start}"
        );

        let mut s = Scanner::new(input);
        s.pos = start;
        let read = s.string().ok().map(|str| {
            let from = str.raw.as_ptr() as usize - base;
            (from, from + str.raw.len(), str.escaped, s.pos)
        });
        assert_eq!(
            read,
            reference_string(input, start),
            "string {input:?} at {start}"
        );
    }
}

fn json_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(b'a'),
        2 => Just(b'"'),
        2 => Just(b'\\'),
        1 => prop::sample::select(b"{}[],: \tnu0fA\x01\x1f\x7f".to_vec()),
        1 => prop::sample::select(vec![0x80u8, 0xa9, 0xc3, 0xe2, 0xf0, 0xff]),
        1 => any::<u8>(),
    ]
}

#[test]
fn quotes_and_escapes_at_every_offset() {
    // A string of `len` bytes with one quote, escape or control byte at each offset,
    // for every length across several words, starting at every alignment.
    for lead in 0..8 {
        for len in 0..40 {
            for at in 0..=len {
                for special in [&b"\\\""[..], b"\\\\", b"\"", b"\x1f", b"\\u00e9", b"\\u0"] {
                    let mut input = vec![b' '; lead];
                    input.push(b'"');
                    input.extend(std::iter::repeat_n(b'x', len));
                    input.splice(lead + 1 + at..lead + 1 + at, special.iter().copied());
                    input.extend_from_slice(b"\"}, \"x\"");
                    check(&input);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn scanner_matches_byte_loops(input in prop::collection::vec(json_byte(), 0..72)) {
        check(&input);
    }
}
