//! A minimal JSON reader that builds nothing.
//!
//! Two modes. A *validating* scanner checks every byte it passes (used for key-schema
//! documents, which are rare and feed a cache). A *lenient* scanner, used on the request path,
//! checks the structure it walks through and every string it returns, but steps over the
//! values it does not need by counting quotes and brackets: for valid JSON that finds exactly
//! the same value boundaries, and an error hidden inside a skipped value is the service's to
//! report, not routing's. Neither mode recurses more than [`MAX_DEPTH`] levels or panics.
//!
//! Both search string contents eight bytes at a time ([`swar`]): on the request path most of
//! a body is string contents, often one long attribute value.

use std::borrow::Cow;

mod swar;
#[cfg(test)]
mod tests;

/// The input is not the JSON this reader expects (syntax error, truncation, too deep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed;

pub(super) type Result<T> = std::result::Result<T, Malformed>;

/// Deepest nesting accepted. DynamoDB allows 32 levels of attribute values (two JSON
/// levels each) plus a few request levels; the bound keeps recursion safe on any input.
const MAX_DEPTH: u32 = 128;

/// A JSON string as it appears in the input, between the quotes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Str<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Str<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The decoded bytes, borrowed when there is nothing to unescape. A string that cannot
    /// be decoded (lone surrogate) yields a lone `0xff` byte, which is not UTF-8 and so
    /// never equals a member name a caller looks for.
    pub(super) fn bytes(&self) -> Cow<'a, [u8]> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        match unescape(self.raw) {
            Some(s) => Cow::Owned(s.into_bytes()),
            None => Cow::Owned(vec![0xff]),
        }
    }

    /// The decoded text; `None` if it is not valid UTF-8 or has a bad escape.
    pub(super) fn text(&self) -> Option<Cow<'a, str>> {
        if self.escaped {
            unescape(self.raw).map(Cow::Owned)
        } else {
            std::str::from_utf8(self.raw).ok().map(Cow::Borrowed)
        }
    }

    /// The bytes of [`Str::text`]: the same `None` cases, without building a `str`.
    pub(super) fn text_bytes(&self) -> Option<Cow<'a, [u8]>> {
        if self.escaped {
            unescape(self.raw).map(|s| Cow::Owned(s.into_bytes()))
        } else if swar::is_ascii(self.raw) || std::str::from_utf8(self.raw).is_ok() {
            Some(Cow::Borrowed(self.raw))
        } else {
            None
        }
    }

    pub(super) fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            unescape(self.raw).is_some_and(|d| d == s)
        } else {
            self.raw == s.as_bytes()
        }
    }
}

/// Decodes the escapes of a string body that [`Scanner`] already validated
/// syntactically. Returns `None` for invalid UTF-8 or a lone surrogate.
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1)?;
        i += 2;
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                        return None;
                    }
                    let lo = hex4(raw.get(i + 2..i + 6)?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code)?
            }
            _ => return None,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).ok()
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// How [`Scanner::skip_lenient`] treats a byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    Quote,
    Open,
    Close,
    Comma,
}

const LENIENT_CLASS: [Class; 256] = {
    let mut table = [Class::Plain; 256];
    table[b'"' as usize] = Class::Quote;
    table[b'{' as usize] = Class::Open;
    table[b'[' as usize] = Class::Open;
    table[b'}' as usize] = Class::Close;
    table[b']' as usize] = Class::Close;
    table[b',' as usize] = Class::Comma;
    table
};

pub(super) struct Scanner<'a> {
    input: &'a [u8],
    pos: usize,
    depth: u32,
    lenient: bool,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Scanner {
            input,
            pos: 0,
            depth: 0,
            lenient: false,
        }
    }

    /// A lenient scanner: values it skips are stepped over, not validated.
    pub(super) fn lenient(input: &'a [u8]) -> Self {
        Scanner {
            lenient: true,
            ..Scanner::new(input)
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        // Compact JSON is the common case: one comparison rules out every whitespace byte.
        while let Some(&b) = self.input.get(self.pos) {
            if b > b' ' || !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The first byte of the next token.
    #[inline]
    pub(super) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.input.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Only whitespace may follow the value just read.
    pub(super) fn finish(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Malformed),
        }
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(Malformed);
        }
        self.depth += 1;
        Ok(())
    }

    /// Reads an object, calling `member` with each member name; `member` must consume the
    /// value.
    pub(super) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Str<'a>) -> Result<()>,
    ) -> Result<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let name = self.string()?;
            self.eat(b':')?;
            member(self, name)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// Reads an array, calling `element` once per element; `element` must consume it.
    pub(super) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// Reads a string token.
    fn string(&mut self) -> Result<Str<'a>> {
        self.eat(b'"')?;
        self.string_body()
    }

    /// Reads the rest of a string token whose opening quote was just consumed.
    #[inline]
    fn string_body(&mut self) -> Result<Str<'a>> {
        let input = self.input;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            // Plain bytes are the common case: step over a run of them at once.
            i = swar::find_string_special(input, i).ok_or(Malformed)?;
            match input.get(i) {
                Some(b'"') => {
                    let raw = input.get(start..i).ok_or(Malformed)?;
                    self.pos = i + 1;
                    return Ok(Str { raw, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    match input.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let digits = input.get(i + 2..i + 6).ok_or(Malformed)?;
                            if !digits.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Malformed);
                            }
                            i += 6;
                        }
                        _ => return Err(Malformed),
                    }
                }
                // A control character (find_string_special stops at nothing else).
                _ => return Err(Malformed),
            }
        }
    }

    /// Reads a value that should be a string: `Some` if it is, `None` (value skipped) if
    /// it is another JSON value.
    pub(super) fn string_value(&mut self) -> Result<Option<Str<'a>>> {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            self.string_body().map(Some)
        } else {
            self.skip_value().map(|()| None)
        }
    }

    /// Reads a value; true if it is an object with at least one member.
    pub(super) fn object_is_non_empty(&mut self) -> Result<bool> {
        if self.peek() != Some(b'{') {
            return self.skip_value().map(|()| false);
        }
        let mut members = 0usize;
        self.object(|s, _| {
            members += 1;
            s.skip_value()
        })?;
        Ok(members > 0)
    }

    /// `{"T":"..."}` with a one-byte tag and no whitespace, exactly filling `input`: the
    /// tag and the (valid) string. `None` for anything else, valid or not.
    pub(super) fn compact_tagged_string(input: &'a [u8]) -> Option<(u8, Str<'a>)> {
        let [b'{', b'"', tag, b'"', b':', b'"', ..] = *input else {
            return None;
        };
        let mut s = Scanner::lenient(input);
        s.pos = 6;
        let text = s.string_body().ok()?;
        (input.get(s.pos..) == Some(b"}")).then_some((tag, text))
    }

    /// Skips a value, returning its bytes.
    pub(super) fn value_span(&mut self) -> Result<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        self.skip_value()?;
        Ok(&self.input[start..self.pos])
    }

    /// The span of the first member called `name` of the object that starts here, or
    /// `None` if it has none. Stops reading at that member: the rest of the object is not
    /// looked at.
    pub(super) fn find_member(&mut self, name: &str) -> Result<Option<&'a [u8]>> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            return Ok(None);
        }
        loop {
            let member = self.string()?;
            self.eat(b':')?;
            if member.eq_str(name) {
                return self.value_span().map(Some);
            }
            self.skip_value()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => return Ok(None),
                _ => return Err(Malformed),
            }
        }
    }

    /// Skips one value of any type, validating its syntax unless the scanner is lenient.
    pub(super) fn skip_value(&mut self) -> Result<()> {
        if self.lenient {
            return self.skip_lenient();
        }
        match self.peek().ok_or(Malformed)? {
            b'{' => self.object(|s, _| s.skip_value()),
            b'[' => self.array(|s| s.skip_value()),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    /// Steps over a value without validating it: strings are jumped quote to quote
    /// (honouring backslashes), containers by bracket depth, scalars up to the next
    /// delimiter. Exact on valid JSON; on anything else it stops somewhere harmless.
    fn skip_lenient(&mut self) -> Result<()> {
        self.skip_ws();
        let input = self.input;
        let mut i = self.pos;
        let mut depth = 0usize;
        loop {
            let Some(&b) = input.get(i) else {
                // A scalar may end the span; a container may not.
                self.pos = i;
                return if depth == 0 { Ok(()) } else { Err(Malformed) };
            };
            match LENIENT_CLASS[usize::from(b)] {
                Class::Plain => i += 1,
                Class::Quote => {
                    i = swar::string_end(input, i + 1).ok_or(Malformed)?;
                    if depth == 0 {
                        self.pos = i;
                        return Ok(());
                    }
                }
                Class::Open => {
                    depth += 1;
                    i += 1;
                }
                Class::Close => {
                    if depth == 0 {
                        // The end of the enclosing container: a scalar ended here.
                        self.pos = i;
                        return Ok(());
                    }
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        self.pos = i;
                        return Ok(());
                    }
                }
                Class::Comma => {
                    if depth == 0 {
                        self.pos = i;
                        return Ok(());
                    }
                    i += 1;
                }
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.input.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<()> {
        if self.input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.input.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Malformed),
        }
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        if let Some(b'e' | b'E') = self.input.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.input.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        Ok(())
    }
}
