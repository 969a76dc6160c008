//! AWS Signature Version 4 verification, as Scylla's `alternator_enforce_authorization` does:
//! the canonical request covers the method, path, query, every signed header (Host included)
//! and the SHA-256 of the body, so a proxy that rewrites Host or the body breaks the signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use hyper::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::dynamo::{DynamoError, ErrorKind};
use crate::Credentials;

type HmacSha256 = Hmac<Sha256>;

const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error arm cannot happen.
    match HmacSha256::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn invalid_signature(message: impl Into<String>) -> DynamoError {
    DynamoError::new(ErrorKind::InvalidSignature, message)
}

/// Percent-encode as SigV4 wants: unreserved characters stay, everything else is `%XX`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes; with `plus_is_space`, also `+` as a space (HTML form encoding, as
/// `/localnodes?dc=` uses). SigV4's canonical query decodes without it. Malformed escapes are
/// kept as they are.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k, false), false),
                uri_encode(&percent_decode(v, false), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, DynamoError> {
    let malformed = || {
        DynamoError::new(
            ErrorKind::InvalidSignature,
            format!("Authorization header is malformed: {header}"),
        )
    };
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| {
            DynamoError::new(
                ErrorKind::InvalidSignature,
                "Only AWS4-HMAC-SHA256 signatures are supported",
            )
        })?
        .trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(malformed)?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(malformed)?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(malformed());
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed_headers.ok_or_else(malformed)?,
        signature: signature.ok_or_else(malformed)?,
    })
}

/// Parse `YYYYMMDDTHHMMSSZ` into a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Verify the request's SigV4 signature against `creds`.
pub(crate) fn verify(
    parts: &Parts,
    body: &[u8],
    creds: &Credentials,
    now: SystemTime,
) -> Result<(), DynamoError> {
    let Some(auth) = parts.headers.get("authorization") else {
        return Err(DynamoError::new(
            ErrorKind::MissingAuthenticationToken,
            "Request is missing Authentication Token",
        ));
    };
    let auth = auth
        .to_str()
        .map_err(|_| invalid_signature("Authorization header is not ASCII"))?;
    let auth = parse_authorization(auth)?;
    if auth.access_key_id != creds.access_key_id {
        return Err(DynamoError::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ));
    }
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid_signature("X-Amz-Date header is missing"))?;
    let signed_at =
        parse_amz_date(amz_date).ok_or_else(|| invalid_signature("X-Amz-Date is malformed"))?;
    let skew = now
        .duration_since(signed_at)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(invalid_signature(format!(
            "Signature expired: {amz_date} is not within 15 minutes of the server time"
        )));
    }
    if !amz_date.starts_with(auth.date) {
        return Err(invalid_signature(
            "Date in Credential scope does not match YYYYMMDD from X-Amz-Date",
        ));
    }
    let signed: Vec<&str> = auth.signed_headers.split(';').collect();
    if !signed.contains(&"host") {
        return Err(invalid_signature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = parts
            .headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(collapse_spaces)
            .collect();
        if values.is_empty() {
            return Err(invalid_signature(format!(
                "Signed header {name} is missing from the request"
            )));
        }
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method.as_str(),
        uri_encode(parts.uri.path(), true),
        canonical_query(parts.uri.query().unwrap_or("")),
        canonical_headers,
        auth.signed_headers,
        hex::encode(Sha256::digest(body)),
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        auth.date.as_bytes(),
    );
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    let given = auth.signature.as_bytes();
    let same = expected.len() == given.len()
        && expected
            .bytes()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

/// Sign a request the way AWS SDKs do (service `dynamodb`), returning the `x-amz-date` and
/// `authorization` headers to add. For tests that exercise `enforce_auth` without an SDK.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    creds: &Credentials,
    region: &str,
    now: SystemTime,
) -> Vec<(String, String)> {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let amz_date = format_amz_date(secs);
    let date = &amz_date[..8];
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    all.push(("host".into(), host.into()));
    all.push(("x-amz-date".into(), amz_date.clone()));
    all.sort();
    let signed_headers = all
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{method}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
        uri_encode(path, true),
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/{region}/dynamodb/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_signing = hmac(
        &hmac(&hmac(&k_date, region.as_bytes()), b"dynamodb"),
        b"aws4_request",
    );
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    vec![
        ("x-amz-date".into(), amz_date),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key_id
            ),
        ),
    ]
}

fn format_amz_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    fn request(host: &str, signed_host: &str, body: &[u8], now: SystemTime) -> Parts {
        let headers = sign(
            "POST",
            signed_host,
            "/",
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "DynamoDB_20120810.ListTables"),
            ],
            body,
            &creds(),
            "us-east-1",
            now,
        );
        let mut b = Request::builder()
            .method("POST")
            .uri("/")
            .header("host", host)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", "DynamoDB_20120810.ListTables");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let (parts, ()) = b
            .body(())
            .map(|r| r.into_parts())
            .unwrap_or_else(|e| panic!("{e}"));
        parts
    }

    #[test]
    fn amz_dates_round_trip() {
        for secs in [0i64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            let s = format_amz_date(secs);
            let t = parse_amz_date(&s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(t, UNIX_EPOCH + Duration::from_secs(secs as u64), "{s}");
        }
        assert_eq!(format_amz_date(1_700_000_000), "20231114T221320Z");
    }

    #[test]
    fn valid_signature_passes_and_tampering_fails() {
        let now = SystemTime::now();
        let ok = request("127.0.0.1:8000", "127.0.0.1:8000", b"{}", now);
        assert!(verify(&ok, b"{}", &creds(), now).is_ok());
        let kind = |r: Result<(), DynamoError>| r.err().map(|e| e.kind);
        // Host rewritten after signing.
        let moved = request("127.0.0.2:8000", "127.0.0.1:8000", b"{}", now);
        assert_eq!(
            kind(verify(&moved, b"{}", &creds(), now)),
            Some(ErrorKind::InvalidSignature)
        );
        // Body changed after signing.
        assert_eq!(
            kind(verify(&ok, b"{ }", &creds(), now)),
            Some(ErrorKind::InvalidSignature)
        );
        // Wrong secret.
        let other = Credentials {
            secret_access_key: "x".into(),
            ..creds()
        };
        assert_eq!(
            kind(verify(&ok, b"{}", &other, now)),
            Some(ErrorKind::InvalidSignature)
        );
        // Unknown key id.
        let stranger = Credentials {
            access_key_id: "OTHER".into(),
            ..creds()
        };
        assert_eq!(
            kind(verify(&ok, b"{}", &stranger, now)),
            Some(ErrorKind::UnrecognizedClient)
        );
        // Too old.
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            kind(verify(&ok, b"{}", &creds(), later)),
            Some(ErrorKind::InvalidSignature)
        );
    }
}
