//! AWS Signature Version 4 for the agent's few DynamoDB requests (ring discovery only).
//!
//! Follows AWS's "Signature Version 4 signing process" (canonical request → string to sign →
//! HMAC chain of date, region, service, `aws4_request`), for requests with an already
//! canonical path and query, which is all the agent sends (`POST /`). Alternator checks it
//! when `alternator_enforce_authorization` is on.
//!
//! The key comes from flags, the AWS variables or a shared-credentials file ([`credentials`]).
//! The secret lives in a [`Secret`], whose `Debug` and `Display` print `<redacted>`, so it
//! cannot reach a log line, a `{:?}` of the configuration or an error message by accident.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub mod credentials;

pub use credentials::{Credentials, Secret};

type HmacSha256 = Hmac<Sha256>;

/// What a signature is for: the key, the region and the service (`dynamodb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The access key.
    pub credentials: Credentials,
    /// Region in the credential scope (Alternator accepts any).
    pub region: String,
    /// Service in the credential scope.
    pub service: String,
}

/// A request to sign. Header names may use any case; values are trimmed and inner runs of
/// spaces collapsed, as the canonical form wants. `path` and `query` are sent as given and
/// must already be URI-encoded; the query's parameters are sorted here.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The absolute path, e.g. `/`.
    pub path: &'a str,
    /// The query string without `?`, possibly empty.
    pub query: &'a str,
    /// The headers to sign (must include `host`); `x-amz-date` is added by the signer.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// The two headers a signed request adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `x-amz-date`: `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// `authorization`: `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
    pub authorization: String,
}

impl Signer {
    /// Signs `request` as of `now`.
    pub fn sign(&self, request: &Request<'_>, now: SystemTime) -> Signature {
        let amz_date = amz_date(now);
        let date = amz_date.get(..8).unwrap_or_default();
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), canonical_value(value)))
            .filter(|(name, _)| name != "x-amz-date")
            .collect();
        headers.push(("x-amz-date".to_owned(), amz_date.clone()));
        headers.sort();
        // Repeated headers are one canonical line with comma-separated values, in order.
        let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            match merged.last_mut() {
                Some((last, values)) if *last == name => {
                    values.push(',');
                    values.push_str(&value);
                }
                _ => merged.push((name, value)),
            }
        }
        let signed_headers = merged
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let mut canonical = String::with_capacity(256);
        canonical.push_str(request.method);
        canonical.push('\n');
        canonical.push_str(if request.path.is_empty() {
            "/"
        } else {
            request.path
        });
        canonical.push('\n');
        canonical.push_str(&canonical_query(request.query));
        canonical.push('\n');
        for (name, value) in &merged {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value);
            canonical.push('\n');
        }
        canonical.push('\n');
        canonical.push_str(&signed_headers);
        canonical.push('\n');
        canonical.push_str(&hex::encode(Sha256::digest(request.body)));

        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = self.signing_key(date);
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        Signature {
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
                 Signature={signature}",
                self.credentials.access_key_id
            ),
            amz_date,
        }
    }

    /// The derived key for one day: HMAC of `aws4_request` keyed by the chain from
    /// `"AWS4" + secret` through date, region and service.
    fn signing_key(&self, date: &str) -> Vec<u8> {
        let mut secret = Vec::with_capacity(4 + self.credentials.secret_access_key.expose().len());
        secret.extend_from_slice(b"AWS4");
        secret.extend_from_slice(self.credentials.secret_access_key.expose().as_bytes());
        let k_date = hmac(&secret, date.as_bytes());
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, self.service.as_bytes());
        hmac(&k_service, b"aws4_request")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail; an empty result would
    // only make the node refuse the signature.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parameters sorted by name, then value; a parameter without `=` gets an empty value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
pub fn amz_date(now: SystemTime) -> String {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the well-known era-based
/// conversion: 400-year eras of 146,097 days, years starting in March).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The credentials of AWS's published SigV4 examples and test suite.
    fn example_signer(service: &str) -> Signer {
        Signer {
            credentials: Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            },
            region: "us-east-1".into(),
            service: service.into(),
        }
    }

    /// 2015-08-30T12:36:00Z, the time of every AWS example.
    fn example_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn dates_are_utc_basic_format() {
        assert_eq!(amz_date(example_time()), "20150830T123600Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        // A leap day and the last second of a year.
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(1_709_164_800)),
            "20240229T000000Z"
        );
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "20241231T235959Z"
        );
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let signed = example_signer("service").sign(
            &Request {
                method: "GET",
                path: "/",
                query: "",
                headers: &[("Host", "example.amazonaws.com")],
                body: b"",
            },
            example_time(),
        );
        assert_eq!(signed.amz_date, "20150830T123600Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn aws_test_suite_post_vanilla() {
        let signed = example_signer("service").sign(
            &Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &[("Host", "example.amazonaws.com")],
                body: b"",
            },
            example_time(),
        );
        assert!(
            signed.authorization.ends_with(
                "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            ),
            "{}",
            signed.authorization
        );
    }

    #[test]
    fn aws_documentation_get_with_query() {
        // The IAM ListUsers example of AWS's "Create a signed AWS API request" guide.
        let signed = example_signer("iam").sign(
            &Request {
                method: "GET",
                path: "/",
                query: "Version=2010-05-08&Action=ListUsers",
                headers: &[
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    ),
                    ("Host", "iam.amazonaws.com"),
                ],
                body: b"",
            },
            example_time(),
        );
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn header_names_sort_and_values_collapse() {
        let signer = example_signer("dynamodb");
        let request = |headers: &'static [(&'static str, &'static str)]| Request {
            method: "POST",
            path: "/",
            query: "",
            headers,
            body: b"{}",
        };
        let a = signer.sign(
            &request(&[
                ("X-Amz-Target", "DynamoDB_20120810.Query"),
                ("host", "10.0.0.1:8000"),
            ]),
            example_time(),
        );
        let b = signer.sign(
            &request(&[
                ("Host", "  10.0.0.1:8000 "),
                ("x-amz-target", "DynamoDB_20120810.Query"),
            ]),
            example_time(),
        );
        assert_eq!(a, b);
        assert!(a
            .authorization
            .contains("SignedHeaders=host;x-amz-date;x-amz-target"));
    }

    #[test]
    fn secrets_never_print() {
        let signer = example_signer("dynamodb");
        let debug = format!("{signer:?} {:?}", signer.credentials);
        assert!(!debug.contains("EXAMPLEKEY"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(debug.contains("AKIDEXAMPLE"));
        assert_eq!(
            signer.credentials.secret_access_key.to_string(),
            "<redacted>"
        );
    }
}
