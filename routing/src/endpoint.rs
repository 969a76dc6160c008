//! Endpoint identity: the canonical `scheme://host[:port]` form every routing decision uses.
//!
//! The official clients' "Query plans" specification (`query-plan.md`, section "Plan
//! construction") defines one canonical string per endpoint so that two spellings of the same
//! node share one health record and one position in every plan. The rules, pinned by
//! `endpoint-order.tsv`:
//!
//! 1. only scheme, host and explicit port count; user information, path, query and fragment are
//!    ignored;
//! 2. scheme and host are lowercased (ASCII only);
//! 3. the default port (80 for `http`, 443 for `https`) is dropped, every other port is kept;
//! 4. an IPv6 host keeps its square brackets. Its text is otherwise left alone: the spec treats
//!    different IPv6 compressions as different identities.
//!
//! Duplicates keep the first spelling as the representative, and the survivors are sorted by
//! the bytes of their canonical strings ([`canonical_order`]).

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv6Addr};

/// The two schemes Alternator serves DynamoDB on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP, default port 80.
    #[default]
    Http,
    /// HTTP over TLS, default port 443.
    Https,
}

impl Scheme {
    /// The lowercase scheme name as it appears in a canonical endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// Parses a scheme name, ignoring ASCII case.
    pub fn parse(name: &str) -> Option<Scheme> {
        if name.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if name.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a usable endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `scheme://` prefix.
    #[error(
        "endpoint {input:?} has no scheme: expected http://host[:port] or https://host[:port]"
    )]
    MissingScheme {
        /// The rejected input.
        input: String,
    },
    /// A scheme other than http or https.
    #[error("endpoint {input:?} uses an unsupported scheme: only http and https are served by Alternator")]
    UnsupportedScheme {
        /// The rejected input.
        input: String,
    },
    /// Nothing between `://` and the port, path, query or fragment.
    #[error("endpoint {input:?} has no host")]
    MissingHost {
        /// The rejected input.
        input: String,
    },
    /// The host contains characters outside an ASCII DNS name, or a bracketed host is not IPv6.
    #[error("endpoint {input:?} has an invalid host (use an ASCII DNS name, an IPv4 address or a bracketed IPv6 address)")]
    InvalidHost {
        /// The rejected input.
        input: String,
    },
    /// The port is not a number between 1 and 65535.
    #[error("endpoint {input:?} has an invalid port (expected 1-65535)")]
    InvalidPort {
        /// The rejected input.
        input: String,
    },
}

/// One endpoint reduced to the parts that identify it.
///
/// Two endpoints are equal exactly when their canonical strings are equal; ordering follows the
/// canonical strings' bytes, so sorting a slice of `Endpoint`s gives the spec's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `scheme://host[:port]`, lowercase, default port omitted, IPv6 in brackets.
    canonical: String,
    scheme: Scheme,
    /// Byte range of the host inside `canonical` (brackets included for IPv6).
    host_start: usize,
    host_end: usize,
    port: u16,
}

impl Endpoint {
    /// Parses a URL-like endpoint string (`scheme://[user@]host[:port][/path][?query][#fragment]`).
    pub fn parse(input: &str) -> Result<Endpoint, EndpointError> {
        let err_input = || input.to_owned();
        let (scheme_text, rest) = input
            .split_once("://")
            .ok_or_else(|| EndpointError::MissingScheme { input: err_input() })?;
        if scheme_text.is_empty() {
            return Err(EndpointError::MissingScheme { input: err_input() });
        }
        let scheme = Scheme::parse(scheme_text)
            .ok_or_else(|| EndpointError::UnsupportedScheme { input: err_input() })?;
        // The authority ends at the first path, query or fragment delimiter.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        // User information may itself contain ':'; only the last '@' separates it from the host.
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);

        let (host, port_text) = if let Some(after_bracket) = host_port.strip_prefix('[') {
            let (inner, tail) = after_bracket
                .split_once(']')
                .ok_or_else(|| EndpointError::InvalidHost { input: err_input() })?;
            if inner.parse::<Ipv6Addr>().is_err() {
                return Err(EndpointError::InvalidHost { input: err_input() });
            }
            let port_text = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| EndpointError::InvalidHost { input: err_input() })?,
                ),
            };
            (&host_port[..inner.len() + 2], port_text)
        } else {
            match host_port.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(EndpointError::MissingHost { input: err_input() });
        }
        if !host.starts_with('[') && !host.bytes().all(is_dns_byte) {
            return Err(EndpointError::InvalidHost { input: err_input() });
        }
        let port = match port_text {
            // "host:" names no port, like a URL with an empty port.
            None | Some("") => scheme.default_port(),
            Some(p) => {
                parse_port(p).ok_or_else(|| EndpointError::InvalidPort { input: err_input() })?
            }
        };
        Ok(Endpoint::build(scheme, host, port))
    }

    /// The endpoint of a node address: `scheme://ip[:port]`, IPv6 in brackets.
    pub fn from_ip(scheme: Scheme, address: IpAddr, port: u16) -> Endpoint {
        let mut host = String::with_capacity(41);
        // Writing to a String cannot fail.
        let _ = match address {
            IpAddr::V4(v4) => write!(host, "{v4}"),
            IpAddr::V6(v6) => write!(host, "[{v6}]"),
        };
        Endpoint::build(scheme, &host, port)
    }

    fn build(scheme: Scheme, host: &str, port: u16) -> Endpoint {
        let mut canonical = String::with_capacity(scheme.as_str().len() + 3 + host.len() + 6);
        canonical.push_str(scheme.as_str());
        canonical.push_str("://");
        let host_start = canonical.len();
        canonical.extend(host.chars().map(|c| c.to_ascii_lowercase()));
        let host_end = canonical.len();
        if port != scheme.default_port() {
            let _ = write!(canonical, ":{port}");
        }
        Endpoint {
            canonical,
            scheme,
            host_start,
            host_end,
            port,
        }
    }

    /// The canonical identity, `scheme://host[:port]`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The lowercase host; an IPv6 host keeps its brackets.
    pub fn host(&self) -> &str {
        &self.canonical[self.host_start..self.host_end]
    }

    /// The effective port: the explicit one, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address, when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        let host = self.host();
        match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            None => host.parse().ok(),
        }
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Endpoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.canonical.as_bytes().cmp(other.canonical.as_bytes())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

/// A deduplicated endpoint with the spelling it was first given in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedEndpoint<'a> {
    /// The canonical identity.
    pub endpoint: Endpoint,
    /// The first input spelling of this identity, unchanged.
    pub representative: &'a str,
}

/// Canonicalises, deduplicates (keeping the first spelling) and sorts endpoints bytewise by
/// canonical string, as the "Query plans" spec requires before any plan is built.
///
/// Fails on the first input that is not an endpoint, naming it.
pub fn canonical_order<'a, I>(inputs: I) -> Result<Vec<OrderedEndpoint<'a>>, EndpointError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out: Vec<OrderedEndpoint<'a>> = Vec::new();
    for input in inputs {
        out.push(OrderedEndpoint {
            endpoint: Endpoint::parse(input)?,
            representative: input,
        });
    }
    // A stable sort keeps equal identities in input order, so dedup keeps the first spelling.
    out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
    out.dedup_by(|later, earlier| later.endpoint == earlier.endpoint);
    Ok(out)
}

/// Appends `ip:port` as Envoy's `override_host` expects it (`[v6]:port` for IPv6) to `out`.
///
/// Appends instead of returning a `String` so the per-request path can reuse one buffer.
pub fn push_host_port(out: &mut String, address: IpAddr, port: u16) {
    // Writing to a String cannot fail.
    let _ = match address {
        IpAddr::V4(v4) => write!(out, "{v4}:{port}"),
        IpAddr::V6(v6) => write!(out, "[{v6}]:{port}"),
    };
}

/// `ip:port` for Envoy's `override_host` (`[v6]:port` for IPv6).
pub fn host_port(address: IpAddr, port: u16) -> String {
    let mut out = String::with_capacity(47);
    push_host_port(&mut out, address, port);
    out
}

fn is_dns_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("http://A", "http://a"),
            ("HTTP://Node.Example:80/x", "http://node.example"),
            ("https://b:443", "https://b"),
            ("https://b:80", "https://b:80"),
            ("http://b:443", "http://b:443"),
            ("http://u:p@h:8000/p?q#f", "http://h:8000"),
            ("http://[::1]:8000", "http://[::1]:8000"),
            ("http://[2001:DB8::1]", "http://[2001:db8::1]"),
            ("http://h:", "http://h"),
            ("http://10.0.0.1?x", "http://10.0.0.1"),
        ];
        for (input, want) in cases {
            assert_eq!(Endpoint::parse(input).unwrap().canonical(), want, "{input}");
        }
    }

    /// The "Query plans" spec orders canonical endpoint strings, port included. When one
    /// address is a prefix of another and a port follows, that is not the order of the bare
    /// addresses (`10.0.0.1` < `10.0.0.10`): `:` sorts after every digit, so
    /// `http://10.0.0.10:8000` comes first. Some client versions sort bare addresses and then
    /// pick other coordinators; this crate keeps the spec's order.
    #[test]
    fn prefix_addresses_sort_by_the_whole_canonical_endpoint() {
        let order = |inputs: &[&'static str]| -> Vec<&'static str> {
            canonical_order(inputs.iter().copied())
                .unwrap()
                .into_iter()
                .map(|o| o.representative)
                .collect()
        };
        assert_eq!(
            order(&[
                "http://10.0.0.1:8000",
                "http://10.0.0.10:8000",
                "http://10.0.0.2:8000"
            ]),
            [
                "http://10.0.0.10:8000",
                "http://10.0.0.1:8000",
                "http://10.0.0.2:8000"
            ]
        );
        // Without a port (the scheme's default is dropped) the shorter address comes first.
        assert_eq!(
            order(&["https://10.0.0.10:443", "https://10.0.0.1:443"]),
            ["https://10.0.0.1:443", "https://10.0.0.10:443"]
        );
    }

    #[test]
    fn rejects_non_endpoints() {
        for bad in [
            "",
            "a",
            "a:80",
            "://a",
            "ftp://a",
            "http://",
            "http://:80",
            "http://a:0",
            "http://a:65536",
            "http://a:8x",
            "http://[::1",
            "http://[nope]",
            "http://[::1]x",
            "http://bücher.example",
            "http://a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ip_hosts_round_trip() {
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let e = Endpoint::from_ip(Scheme::Https, v6, 8043);
        assert_eq!(e.canonical(), "https://[2001:db8::7]:8043");
        assert_eq!(e.ip(), Some(v6));
        assert_eq!(e.port(), 8043);
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(
            Endpoint::from_ip(Scheme::Http, v4, 80).canonical(),
            "http://127.0.0.2"
        );
        assert_eq!(Endpoint::parse("http://a.example").unwrap().ip(), None);
    }

    #[test]
    fn ordering_is_bytewise_on_the_whole_canonical_string() {
        // '0' (0x30) sorts before ':' (0x3a): "10.0.0.10" precedes "10.0.0.1:8000".
        let order = canonical_order(["http://10.0.0.1:8000", "http://10.0.0.10:8000"]).unwrap();
        let got: Vec<&str> = order.iter().map(|o| o.endpoint.canonical()).collect();
        assert_eq!(got, ["http://10.0.0.10:8000", "http://10.0.0.1:8000"]);
    }

    #[test]
    fn override_host_format() {
        assert_eq!(
            host_port("10.1.2.3".parse().unwrap(), 8000),
            "10.1.2.3:8000"
        );
        assert_eq!(host_port("::1".parse().unwrap(), 8000), "[::1]:8000");
        let mut buf = String::from("a,");
        push_host_port(&mut buf, "fe80::1".parse().unwrap(), 1);
        assert_eq!(buf, "a,[fe80::1]:1");
    }
}
