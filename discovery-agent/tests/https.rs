//! HTTPS toward Alternator: a node with a certificate from a test CA is trusted through
//! `--ca-file`, refused with another CA, and accepted with `--insecure-skip-verify`.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alternator_discovery_agent::config::TlsTrust;
use alternator_routing::endpoint::Scheme;
use bytes::Bytes;
use common::{eventually, fast_config, ip, AgentUnderTest};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

const WITHIN: Duration = Duration::from_secs(15);

fn test_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// One Alternator stand-in over TLS: `/localnodes` lists itself, `GET /` is healthy.
async fn tls_node(
    address: IpAddr,
    ca: &CertifiedIssuer<'static, KeyPair>,
) -> (u16, JoinHandle<()>) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![address.to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((address, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let list = Bytes::from(format!("[\"{address}\"]"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let list = list.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let body = if request.uri().path() == "/localnodes" {
                        list.clone()
                    } else {
                        Bytes::from_static(b"healthy")
                    };
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, task)
}

fn write_pem(name: &str, pem: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.pem", std::process::id()));
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test]
async fn ca_file_trusts_the_node() {
    let node = ip(61, 1);
    let ca = test_ca("alternator test CA");
    let (port, server) = tls_node(node, &ca).await;
    let mut config = fast_config(&[node], port);
    config.scheme = Scheme::Https;
    config.tls = Some(TlsTrust::CaFile(write_pem("trusted-ca", &ca.pem())));
    let agent = AgentUnderTest::start(config).await;
    eventually(WITHIN, "node active over https", || async {
        agent
            .nodes()
            .await
            .get(&node.to_string())
            .is_some_and(|(h, _, _)| h == "active")
    })
    .await;
    assert_eq!(agent.snapshot().await.unwrap()["scheme"], "https");
    agent.stop().await;
    server.abort();
}

#[tokio::test]
async fn another_ca_is_refused_unless_verification_is_skipped() {
    let node = ip(62, 1);
    let ca = test_ca("the node's CA");
    let other = test_ca("some other CA");
    let (port, server) = tls_node(node, &ca).await;

    let mut refused = fast_config(&[node], port);
    refused.scheme = Scheme::Https;
    refused.tls = Some(TlsTrust::CaFile(write_pem("other-ca", &other.pem())));
    let agent = AgentUnderTest::start(refused).await;
    eventually(
        WITHIN,
        "failed rounds against an untrusted node",
        || async {
            agent
                .metric("alternator_agent_refresh_consecutive_failures")
                .await
                .is_some_and(|v| v >= 2.0)
        },
    )
    .await;
    assert_eq!(agent.get("/readyz").await.status, 503);
    agent.stop().await;

    let mut insecure = fast_config(&[node], port);
    insecure.scheme = Scheme::Https;
    insecure.tls = Some(TlsTrust::InsecureSkipVerify);
    let agent = AgentUnderTest::start(insecure).await;
    eventually(WITHIN, "ready without verification", || async {
        agent.get("/readyz").await.status == 200
    })
    .await;
    agent.stop().await;
    server.abort();
}
