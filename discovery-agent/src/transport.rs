//! Requests to Alternator nodes: `GET /localnodes...` for discovery, `GET /` for probes and,
//! with ring discovery on, DynamoDB `POST /` requests.
//!
//! [`Transport`] is the seam between the agent's logic and the network, so the discovery loop
//! can be driven by an in-memory fake under paused time. [`HttpTransport`] is the real one:
//! hyper-util's pooled client (keep-alive saves a TCP/TLS handshake per refresh) over plain
//! TCP or rustls.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alternator_routing::endpoint::Scheme;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{Config, TlsTrust};

/// Largest body the agent reads from a node. A `/localnodes` answer for a few thousand nodes is
/// well under this; anything larger is not an answer.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A final HTTP answer from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

/// Why a request got no final answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be built (a host that is not a valid URI authority).
    #[error("cannot build a request for {target}: {reason}")]
    InvalidTarget {
        /// `host:port/path`.
        target: String,
        /// Why.
        reason: String,
    },
    /// Connect, TLS or HTTP failure before a final answer.
    #[error("request to {target} failed: {reason}")]
    Failed {
        /// `host:port/path`.
        target: String,
        /// The underlying error chain, flattened.
        reason: String,
    },
    /// No final answer within the deadline.
    #[error("request to {target} timed out after {after:?}")]
    TimedOut {
        /// `host:port/path`.
        target: String,
        /// The deadline.
        after: Duration,
    },
    /// The body was longer than [`MAX_BODY_BYTES`] or broke off.
    #[error("reading the answer of {target} failed: {reason}")]
    Body {
        /// `host:port/path`.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Requests to one Alternator node.
pub trait Transport: Send + Sync + 'static {
    /// `GET {scheme}://{host}:{port}{path_and_query}` with a deadline covering connect, headers
    /// and body.
    fn get(
        &self,
        host: &str,
        path_and_query: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Answer, FetchError>> + Send;

    /// `POST {scheme}://{host}:{port}{path}` with these headers (a `host` header, if given,
    /// is sent as is, so a signature over it holds) and body, under one deadline. Only ring
    /// discovery posts; the default refuses, for transports that never need to.
    fn post(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = Result<Answer, FetchError>> + Send {
        let _ = (headers, body, timeout);
        let target = format!("{host}{path}");
        async move {
            Err(FetchError::Failed {
                target,
                reason: "this transport does not send POST requests".to_owned(),
            })
        }
    }
}

/// Could not set up TLS toward Alternator.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read or holds no usable certificate.
    #[error("invalid value for --ca-file: cannot use {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// The real transport: pooled HTTP/1.1 over TCP or TLS.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: Scheme,
    port: u16,
}

impl HttpTransport {
    /// The transport toward the Alternator nodes `config` names (scheme, port, TLS trust,
    /// connect timeout).
    pub fn for_config(config: &Config) -> Result<Self, TlsSetupError> {
        HttpTransport::new(
            config.scheme,
            config.port,
            config.tls.as_ref(),
            config.connect_timeout,
        )
    }

    /// Builds the client. `tls` is required for `https` and ignored for `http`.
    pub fn new(
        scheme: Scheme,
        port: u16,
        tls: Option<&TlsTrust>,
        connect_timeout: Duration,
    ) -> Result<Self, TlsSetupError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let tls_config = match tls {
            Some(TlsTrust::CaFile(path)) => client_config_with_ca(path)?,
            Some(TlsTrust::InsecureSkipVerify) => insecure_client_config()?,
            // Plain http never negotiates TLS; an empty trust store keeps the connector typed
            // the same for both schemes.
            None => rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config);
        let connector = match scheme {
            Scheme::Https => builder.https_only().enable_http1().wrap_connector(http),
            Scheme::Http => builder.https_or_http().enable_http1().wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            // The scopes of one refresh go to the same node over one connection, and a small
            // cluster sees each node again within seconds. Rotating over a large cluster would
            // otherwise leave an idle connection (and its buffers) per node behind.
            .pool_idle_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(HttpTransport {
            client,
            scheme,
            port,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config_with_ca(path: &Path) -> Result<rustls::ClientConfig, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let ca_error = |reason: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ca_error(format!("not PEM: {e}")))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no CERTIFICATE block found".to_owned()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn insecure_client_config() -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `--insecure-skip-verify`: accepts any certificate but still checks handshake signatures,
/// so the session is at least bound to the key the peer presented.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `host:port` with IPv6 literals bracketed.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl HttpTransport {
    async fn exchange(
        &self,
        request: hyper::Request<Full<Bytes>>,
        target: String,
        timeout: Duration,
    ) -> Result<Answer, FetchError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Failed {
                    target: target.clone(),
                    reason: error_chain(&e),
                })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| FetchError::Body {
                    target: target.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::TimedOut {
                target: target.clone(),
                after: timeout,
            }),
        }
    }

    fn uri(&self, target: &str) -> Result<hyper::Uri, FetchError> {
        format!("{}://{target}", self.scheme.as_str())
            .parse()
            .map_err(
                |e: hyper::http::uri::InvalidUri| FetchError::InvalidTarget {
                    target: target.to_owned(),
                    reason: e.to_string(),
                },
            )
    }
}

const USER_AGENT: &str = concat!("alternator-discovery-agent/", env!("CARGO_PKG_VERSION"));

impl Transport for HttpTransport {
    async fn get(
        &self,
        host: &str,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<Answer, FetchError> {
        let target = format!("{}{}", authority(host, self.port), path_and_query);
        let request = hyper::Request::get(self.uri(&target)?)
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::new()))
            .map_err(|e| FetchError::InvalidTarget {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        self.exchange(request, target, timeout).await
    }

    async fn post(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, FetchError> {
        let target = format!("{}{}", authority(host, self.port), path);
        let mut builder =
            hyper::Request::post(self.uri(&target)?).header(hyper::header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| FetchError::InvalidTarget {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        self.exchange(request, target, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_authorities_are_bracketed() {
        assert_eq!(authority("127.0.0.2", 8000), "127.0.0.2:8000");
        assert_eq!(authority("::1", 8000), "[::1]:8000");
        assert_eq!(authority("scylla-1.example", 8043), "scylla-1.example:8043");
    }
}
