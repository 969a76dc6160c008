//! DynamoDB request bodies as Alternator reads them: the 16 MiB request limit and
//! `Content-Encoding: gzip` / `deflate`.
//!
//! Mirrored from ScyllaDB's `alternator/server.cc` (`handle_api_request`, `read_entire_stream`,
//! `ungzip`) and `alternator/server.hh` (`request_content_length_limit`):
//!
//! * a body over 16 MiB (declared by `Content-Length`, or found while reading) is answered 413
//!   `PayloadTooLarge`, "Request content length limit of 16777216 bytes exceeded";
//! * the SigV4 signature is checked over the body **as sent** (compressed), and only then is
//!   the body decompressed (the caller keeps that order);
//! * `Content-Encoding` must be exactly `gzip` (a gzip stream, RFC 1952) or `deflate` (a
//!   zlib-wrapped stream, RFC 1950; raw deflate is rejected), compared case-sensitively; an
//!   empty value counts as none. Concatenated streams are accepted. Any other value is a 500
//!   `InternalServerError` "Unsupported Content-Encoding" (DynamoDB answers so too);
//! * a stream zlib rejects (bad header, corrupt data, wrong checksum, trailing garbage) is a
//!   500 "Error during gzip decompression of request body", an unfinished or empty one a 500
//!   "Truncated gzip in request body" — the same texts for `deflate`;
//! * decompressed content over 16 MiB is a 413 again, so a small body cannot expand into a
//!   huge one.
//!
//! One difference on purpose: Scylla answers an oversized body without reading the rest of
//! it, so its reply may be lost to a connection reset (ScyllaDB issue 12166). The sim reads
//! and discards the rest (up to [`DISCARD_LIMIT`]) before answering, then closes the
//! connection as Scylla does: the status and body are Scylla's, and tests get them reliably.

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use http_body_util::BodyExt;
use hyper::header::HeaderValue;

use crate::dynamo::{DynamoError, ErrorKind};

/// Alternator's `request_content_length_limit` (`16*MB`), for the body as sent and again for
/// the decompressed body.
pub const REQUEST_CONTENT_LENGTH_LIMIT: usize = 16 * 1024 * 1024;

/// How much of an oversized body the sim reads and drops before it answers 413; beyond this it
/// answers at once (and the client may see a reset instead).
pub const DISCARD_LIMIT: u64 = 64 * 1024 * 1024;

/// zlib's largest window (`MAX_WBITS`), which Alternator's `inflateInit2` uses.
const MAX_WBITS: u8 = 15;

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit. `discarded` says whether the whole body was read (so closing the
    /// connection after the answer cannot reset it).
    TooLarge { discarded: bool },
    /// The client's connection failed before the end of the body.
    Unreadable,
}

/// Reads a whole request body; with `limit`, refuses one whose declared or actual length is
/// over it (reading on to [`DISCARD_LIMIT`] without keeping anything).
pub async fn read<B>(
    mut body: B,
    declared: Option<u64>,
    limit: Option<usize>,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let limit = limit.map_or(u64::MAX, |l| l as u64);
    let mut over = declared.is_some_and(|n| n > limit);
    let mut seen: u64 = 0;
    // Usually one frame, kept without a copy.
    let mut kept: Vec<Bytes> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(BodyError::Unreadable);
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len() as u64);
        over |= seen > limit;
        if over {
            kept.clear();
            if seen > DISCARD_LIMIT {
                return Err(BodyError::TooLarge { discarded: false });
            }
        } else {
            kept.push(data);
        }
    }
    if over {
        return Err(BodyError::TooLarge { discarded: true });
    }
    Ok(match kept.len() {
        0 => Bytes::new(),
        1 => kept.swap_remove(0),
        _ => kept.concat().into(),
    })
}

/// Alternator's 413.
pub fn too_large() -> DynamoError {
    DynamoError::new(
        ErrorKind::PayloadTooLarge,
        format!("Request content length limit of {REQUEST_CONTENT_LENGTH_LIMIT} bytes exceeded"),
    )
}

/// The body Alternator parses: `body` as sent, or decompressed as its `Content-Encoding`
/// says, at most `limit` bytes.
pub fn decode(
    content_encoding: Option<&HeaderValue>,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, DynamoError> {
    match content_encoding.map(HeaderValue::as_bytes) {
        None | Some(b"") => Ok(body),
        Some(b"gzip") => inflate(&body, Wrapper::Gzip, limit).map(Bytes::from),
        Some(b"deflate") => inflate(&body, Wrapper::Zlib, limit).map(Bytes::from),
        Some(_) => Err(DynamoError::new(
            ErrorKind::InternalServerError,
            "Unsupported Content-Encoding",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrapper {
    /// `Content-Encoding: gzip`: zlib's `inflateInit2(16 + MAX_WBITS)`.
    Gzip,
    /// `Content-Encoding: deflate`: zlib's `inflateInit2(MAX_WBITS)`, a zlib header required.
    Zlib,
}

impl Wrapper {
    fn stream(self) -> Decompress {
        match self {
            Wrapper::Gzip => Decompress::new_gzip(MAX_WBITS),
            Wrapper::Zlib => Decompress::new(true),
        }
    }
}

fn corrupt() -> DynamoError {
    DynamoError::new(
        ErrorKind::InternalServerError,
        "Error during gzip decompression of request body",
    )
}

fn truncated() -> DynamoError {
    DynamoError::new(
        ErrorKind::InternalServerError,
        "Truncated gzip in request body",
    )
}

/// Alternator's `ungzip` loop: inflate, and after each stream's end start a new one on what
/// follows; the body is complete only if its last byte ends a stream (an empty body is not).
fn inflate(input: &[u8], wrapper: Wrapper, limit: usize) -> Result<Vec<u8>, DynamoError> {
    const CHUNK: usize = 64 * 1024;
    if input.is_empty() {
        return Err(truncated());
    }
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut stream = wrapper.stream();
    let mut rest = input;
    loop {
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let status = stream
            .decompress(rest, &mut chunk, FlushDecompress::None)
            .map_err(|_| corrupt())?;
        let consumed = usize::try_from(stream.total_in() - in_before).unwrap_or(rest.len());
        let produced = usize::try_from(stream.total_out() - out_before).unwrap_or(0);
        rest = rest.get(consumed..).unwrap_or_default();
        out.extend_from_slice(chunk.get(..produced).unwrap_or_default());
        if out.len() > limit {
            return Err(too_large());
        }
        if status == Status::StreamEnd {
            if rest.is_empty() {
                return Ok(out);
            }
            stream = wrapper.stream();
            continue;
        }
        // Like Alternator's loop around zlib: go on while input is left or the output was
        // full; stop without progress (never expected from zlib, but no loop may spin).
        if (rest.is_empty() && produced < CHUNK) || (consumed == 0 && produced == 0) {
            return Err(truncated());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use http_body_util::Full;

    use super::*;

    const JSON: &[u8] = br#"{"TableName":"t","Key":{"pk":{"S":"k"}}}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap_or_else(|e| panic!("{e}"));
        e.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap_or_else(|e| panic!("{e}"));
        e.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap_or_else(|e| panic!("{e}"));
        e.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    fn decoded(encoding: Option<&'static str>, body: Vec<u8>) -> Result<Vec<u8>, (u16, String)> {
        let header = encoding.map(HeaderValue::from_static);
        decode(
            header.as_ref(),
            Bytes::from(body),
            REQUEST_CONTENT_LENGTH_LIMIT,
        )
        .map(|b| b.to_vec())
        .map_err(|e| (e.status(), format!("{}: {}", e.kind.name(), e.message)))
    }

    const CORRUPT: (u16, &str) = (
        500,
        "InternalServerError: Error during gzip decompression of request body",
    );
    const TRUNCATED: (u16, &str) = (500, "InternalServerError: Truncated gzip in request body");

    fn err(e: (u16, &str)) -> Result<Vec<u8>, (u16, String)> {
        Err((e.0, e.1.to_owned()))
    }

    #[test]
    fn bodies_without_an_encoding_are_taken_as_they_are() {
        assert_eq!(decoded(None, JSON.to_vec()), Ok(JSON.to_vec()));
        assert_eq!(decoded(Some(""), JSON.to_vec()), Ok(JSON.to_vec()));
    }

    #[test]
    fn gzip_and_zlib_wrapped_deflate_are_inflated() {
        assert_eq!(decoded(Some("gzip"), gzip(JSON)), Ok(JSON.to_vec()));
        assert_eq!(decoded(Some("deflate"), zlib(JSON)), Ok(JSON.to_vec()));
        // Larger than one output chunk, so the loop has to come back for more output.
        let big = vec![b'x'; 1_000_000];
        assert_eq!(decoded(Some("gzip"), gzip(&big)), Ok(big.clone()));
        assert_eq!(decoded(Some("deflate"), zlib(&big)), Ok(big));
    }

    #[test]
    fn concatenated_streams_are_one_body() {
        let mut two = gzip(b"{\"TableName\":");
        two.extend(gzip(b"\"t\"}"));
        assert_eq!(
            decoded(Some("gzip"), two),
            Ok(b"{\"TableName\":\"t\"}".to_vec())
        );
        let mut two = zlib(b"ab");
        two.extend(zlib(b"cd"));
        assert_eq!(decoded(Some("deflate"), two), Ok(b"abcd".to_vec()));
    }

    #[test]
    fn other_encodings_are_unsupported_and_names_are_case_sensitive() {
        let unsupported = (
            500,
            "InternalServerError: Unsupported Content-Encoding".to_owned(),
        );
        for name in [
            "GZIP",
            "Deflate",
            "br",
            "identity",
            "gzip, deflate",
            "x-gzip",
        ] {
            let header = HeaderValue::from_static(name);
            let got = decode(Some(&header), Bytes::from(gzip(JSON)), usize::MAX)
                .map_err(|e| (e.status(), format!("{}: {}", e.kind.name(), e.message)));
            assert_eq!(got, Err(unsupported.clone()), "{name}");
        }
    }

    #[test]
    fn deflate_means_zlib_wrapped_and_gzip_means_gzip() {
        assert_eq!(decoded(Some("deflate"), raw_deflate(JSON)), err(CORRUPT));
        assert_eq!(decoded(Some("deflate"), gzip(JSON)), err(CORRUPT));
        assert_eq!(decoded(Some("gzip"), zlib(JSON)), err(CORRUPT));
        assert_eq!(decoded(Some("gzip"), JSON.to_vec()), err(CORRUPT));
    }

    #[test]
    fn corrupt_bodies_are_500s() {
        // A flipped CRC-32 in the gzip trailer.
        let mut bad_crc = gzip(JSON);
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 0xff;
        assert_eq!(decoded(Some("gzip"), bad_crc), err(CORRUPT));
        // Trailing bytes that do not start another stream.
        let mut trailing = gzip(JSON);
        trailing.extend_from_slice(b"garbage!");
        assert_eq!(decoded(Some("gzip"), trailing), err(CORRUPT));
        // A flipped Adler-32 in the zlib trailer.
        let mut bad_adler = zlib(JSON);
        let n = bad_adler.len();
        bad_adler[n - 1] ^= 0xff;
        assert_eq!(decoded(Some("deflate"), bad_adler), err(CORRUPT));
    }

    #[test]
    fn unfinished_and_empty_bodies_are_truncated() {
        let whole = gzip(JSON);
        assert_eq!(
            decoded(Some("gzip"), whole[..whole.len() - 4].to_vec()),
            err(TRUNCATED)
        );
        assert_eq!(decoded(Some("gzip"), whole[..5].to_vec()), err(TRUNCATED));
        assert_eq!(decoded(Some("gzip"), Vec::new()), err(TRUNCATED));
        let whole = zlib(JSON);
        assert_eq!(
            decoded(Some("deflate"), whole[..whole.len() - 1].to_vec()),
            err(TRUNCATED)
        );
        assert_eq!(decoded(Some("deflate"), Vec::new()), err(TRUNCATED));
        // A complete stream followed by the start of an unfinished one.
        let mut two = gzip(JSON);
        two.extend_from_slice(&gzip(JSON)[..12]);
        assert_eq!(decoded(Some("gzip"), two), err(TRUNCATED));
    }

    #[test]
    fn the_limit_applies_to_the_decompressed_body() {
        let big = vec![b' '; 1000];
        let header = HeaderValue::from_static("gzip");
        assert!(decode(Some(&header), Bytes::from(gzip(&big)), 1000).is_ok());
        let e = decode(Some(&header), Bytes::from(gzip(&big)), 999).err();
        assert_eq!(
            e.map(|e| (e.status(), e.message)),
            Some((413, too_large().message))
        );
        assert_eq!(
            too_large().message,
            "Request content length limit of 16777216 bytes exceeded"
        );
    }

    async fn read_full(
        len: usize,
        declared: Option<u64>,
        limit: Option<usize>,
    ) -> Result<usize, BodyError> {
        read(Full::new(Bytes::from(vec![b'x'; len])), declared, limit)
            .await
            .map(|b| b.len())
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_after_being_read() {
        let limit = Some(REQUEST_CONTENT_LENGTH_LIMIT);
        let at = REQUEST_CONTENT_LENGTH_LIMIT;
        assert_eq!(read_full(at, Some(at as u64), limit).await, Ok(at));
        assert_eq!(read_full(at, None, limit).await, Ok(at));
        let too_large = Err(BodyError::TooLarge { discarded: true });
        assert_eq!(
            read_full(at + 1, Some(at as u64 + 1), limit).await,
            too_large
        );
        assert_eq!(read_full(at + 1, None, limit).await, too_large);
        // A declared length over the limit is refused whatever arrives.
        assert_eq!(read_full(10, Some(at as u64 + 1), limit).await, too_large);
        // Without a limit (relaying to a backend) any body is read.
        assert_eq!(read_full(at + 1, None, None).await, Ok(at + 1));
        // Past the discard limit the sim stops reading.
        let huge = usize::try_from(DISCARD_LIMIT).unwrap_or(usize::MAX) + 1;
        assert_eq!(
            read_full(huge, None, limit).await,
            Err(BodyError::TooLarge { discarded: false })
        );
    }
}
