//! HTTPS on the nodes' port, as Alternator serves it with `alternator_https_port`: a test CA
//! made when the sim starts, and for every node a certificate that CA signs, naming the node's
//! address as an IP subject alternative name (nodes are reached by IP: `/localnodes` lists
//! addresses only). Only the CA certificate leaves the process ([`TestCa::pem`]); its key is
//! never written anywhere, so a certificate from this CA can only come from this sim.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::SimError;

/// The CA that signs every node certificate of one sim.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> SimError {
    SimError::Tls(format!("{what}: {e}"))
}

impl TestCa {
    pub(crate) fn generate() -> Result<TestCa, SimError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| tls_error("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "alternator-sim test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .map_err(|e| tls_error("CA certificate", e))?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate, PEM: what a client configures as its trusted CA.
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server configuration for the node at `address`: a fresh key and a certificate for
    /// that address (IP SAN and common name), for server authentication, signed by this CA.
    /// HTTP/1.1 only, as Alternator.
    pub(crate) fn server_config(
        &self,
        address: IpAddr,
    ) -> Result<Arc<rustls::ServerConfig>, SimError> {
        let mut params = CertificateParams::new(vec![address.to_string()])
            .map_err(|e| tls_error("node certificate parameters", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, address.to_string());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| tls_error("node key", e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| tls_error("node certificate", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| tls_error("node TLS configuration", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    fn client(ca_pem: &str) -> TlsConnector {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// Handshake with a client that trusts `client_ca` and expects `name`; echoes one byte.
    async fn handshake(
        ca: &TestCa,
        node: IpAddr,
        client_ca: &str,
        name: IpAddr,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(node).unwrap());
        let listener = TcpListener::bind((node, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(stream).await {
                let mut b = [0u8; 1];
                if tls.read_exact(&mut b).await.is_ok() {
                    let _ = tls.write_all(&b).await;
                }
            }
        });
        let stream = TcpStream::connect((node, port)).await.unwrap();
        let result = async {
            let mut tls = client(client_ca)
                .connect(ServerName::IpAddress(name.into()), stream)
                .await?;
            tls.write_all(b"x").await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            Ok(())
        }
        .await;
        server.abort();
        result
    }

    #[tokio::test]
    async fn node_certificate_verifies_against_the_ca_for_its_own_address_only() {
        let ca = TestCa::generate().unwrap();
        let node: IpAddr = "127.0.0.1".parse().unwrap();
        handshake(&ca, node, &ca.pem(), node).await.unwrap();
        // Another address: the certificate does not name it.
        let other: IpAddr = "127.0.0.9".parse().unwrap();
        assert!(handshake(&ca, node, &ca.pem(), other).await.is_err());
        // Another sim's CA did not sign it.
        let stranger = TestCa::generate().unwrap();
        assert!(handshake(&ca, node, &stranger.pem(), node).await.is_err());
    }
}
