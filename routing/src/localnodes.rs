//! Parsing Alternator's `/localnodes` answer.
//!
//! Alternator answers `GET /localnodes[?dc=D[&rack=R]]` with a JSON array of strings: the
//! addresses of the live nodes in the asked scope. Two details matter to a parser:
//!
//! - Scylla writes a node's host-id UUID instead of an address when it does not know the address
//!   yet. Such an entry is useless for routing but says nothing bad about the answer, so it is
//!   skipped and counted, never fatal.
//! - `[]` is a valid answer: the asked datacenter or rack is unknown (or empty) and the caller
//!   should fall back to a wider scope.
//!
//! Anything that is not a JSON array of strings — an HTML error page from a load balancer, a
//! truncated body, numbers, an object — is an error that says what was received.

use std::collections::HashSet;
use std::net::IpAddr;

/// The usable content of one `/localnodes` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalNodes {
    /// Node addresses in answer order, without duplicates.
    pub addresses: Vec<IpAddr>,
    /// How many entries were not IP literals (typically host-id UUIDs) and were skipped.
    pub skipped: usize,
}

/// Why a `/localnodes` body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalNodesError {
    /// The body is not complete, valid JSON.
    #[error("/localnodes answer is not valid JSON ({reason}); body starts with {preview:?}")]
    NotJson {
        /// What the JSON parser reported.
        reason: String,
        /// The first bytes of the body, lossily decoded.
        preview: String,
    },
    /// Valid JSON, but not an array of strings.
    #[error("/localnodes answer is JSON but not an array of strings ({reason}); body starts with {preview:?}")]
    NotArrayOfStrings {
        /// What the JSON parser reported.
        reason: String,
        /// The first bytes of the body, lossily decoded.
        preview: String,
    },
}

const PREVIEW_BYTES: usize = 64;

/// Parses a `/localnodes` body. Never panics, whatever the bytes.
pub fn parse_localnodes(body: &[u8]) -> Result<LocalNodes, LocalNodesError> {
    let entries: Vec<String> = serde_json::from_slice(body).map_err(|e| {
        let preview = preview(body);
        let reason = e.to_string();
        match e.classify() {
            serde_json::error::Category::Data => {
                LocalNodesError::NotArrayOfStrings { reason, preview }
            }
            _ => LocalNodesError::NotJson { reason, preview },
        }
    })?;
    let mut seen = HashSet::with_capacity(entries.len());
    let mut nodes = LocalNodes {
        addresses: Vec::with_capacity(entries.len()),
        skipped: 0,
    };
    for entry in &entries {
        match entry.parse::<IpAddr>() {
            Ok(address) => {
                if seen.insert(address) {
                    nodes.addresses.push(address);
                }
            }
            Err(_) => nodes.skipped += 1,
        }
    }
    Ok(nodes)
}

fn preview(body: &[u8]) -> String {
    let head = &body[..body.len().min(PREVIEW_BYTES)];
    String::from_utf8_lossy(head).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_uuids_and_duplicates() {
        let body = br#"["127.0.0.2","5f1b8e2a-6c3d-4c59-9a1e-2b9f6d0c7e11","::1","127.0.0.2"," 10.0.0.1"]"#;
        let got = parse_localnodes(body).unwrap();
        assert_eq!(
            got.addresses,
            [
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(got.skipped, 2, "UUID and the padded address are skipped");
    }

    #[test]
    fn empty_array_is_valid() {
        assert_eq!(parse_localnodes(b" [ ] \n").unwrap(), LocalNodes::default());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        for (body, json_ok) in [
            (&b"<html><body>502 Bad Gateway</body></html>"[..], false),
            (b"[\"127.0.0.1\"", false),
            (b"", false),
            (b"\xff\xfe", false),
            (b"[1,2]", true),
            (b"{\"nodes\":[]}", true),
            (b"\"127.0.0.1\"", true),
            (b"[null]", true),
            (b"[[\"127.0.0.1\"]]", true),
        ] {
            let err = parse_localnodes(body).unwrap_err();
            assert_eq!(
                matches!(err, LocalNodesError::NotArrayOfStrings { .. }),
                json_ok,
                "{err}"
            );
        }
    }

    #[test]
    fn error_names_what_arrived() {
        let err = parse_localnodes(b"<html>oops</html>")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid JSON") && err.contains("<html>oops"),
            "{err}"
        );
    }
}
