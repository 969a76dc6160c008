//! HTTPS nodes (`SimConfig::tls`, the binary's `--tls-ca-out`): every node answers over TLS
//! with a certificate for its own address from the sim's CA, also after a restart and when
//! added at run time; plain HTTP gets no answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use alternator_sim::{NodeSpec, Sim, SimConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.unwrap_or_else(|e| panic!("CA PEM: {e}"));
        roots.add(cert).unwrap_or_else(|e| panic!("CA: {e}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// `GET /` over TLS to `node`, verifying its certificate for its own address; the answer.
async fn health_over_tls(sim: &Sim, node: IpAddr) -> Result<String, String> {
    let ca = sim.ca_pem().ok_or("the sim has no CA")?;
    let tcp = TcpStream::connect((node, sim.port()))
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector(&ca)
        .connect(ServerName::IpAddress(node.into()), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!("GET / HTTP/1.1\r\nHost: {node}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

#[tokio::test]
async fn nodes_serve_https_with_certificates_from_the_sim_ca() {
    let sim = Sim::start(SimConfig {
        tls: true,
        ..SimConfig::new(vec![
            NodeSpec::new(ip(1), "dc1", "rack1"),
            NodeSpec::new(ip(2), "dc1", "rack1"),
        ])
    })
    .await
    .unwrap_or_else(|e| panic!("sim did not start: {e}"));
    assert_eq!(sim.scheme(), "https");
    assert!(sim.startup_line().contains(r#""scheme":"https""#));
    for node in [ip(1), ip(2)] {
        let answer = health_over_tls(&sim, node)
            .await
            .unwrap_or_else(|e| panic!("{node}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(&format!("healthy: {node}")), "{answer}");
    }

    // Plain HTTP on the same port is not answered as HTTP.
    let mut plain = TcpStream::connect((ip(1), sim.port()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply).await;
    assert!(
        !reply.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // A restarted node and a node added at run time serve TLS from the same CA.
    sim.stop_node(ip(1)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(health_over_tls(&sim, ip(1)).await.is_err());
    sim.start_node(ip(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(health_over_tls(&sim, ip(1)).await.is_ok());
    sim.add_node(NodeSpec::new(ip(3), "dc1", "rack2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = health_over_tls(&sim, ip(3))
        .await
        .unwrap_or_else(|e| panic!("added node: {e}"));
    assert!(answer.contains(&format!("healthy: {}", ip(3))), "{answer}");
    sim.shutdown().await;
}

#[tokio::test]
async fn without_tls_the_sim_has_no_ca() {
    let sim = Sim::start(SimConfig::new(vec![NodeSpec::new(ip(4), "dc1", "rack1")]))
        .await
        .unwrap_or_else(|e| panic!("sim did not start: {e}"));
    assert_eq!(sim.scheme(), "http");
    assert!(sim.ca_pem().is_none());
    sim.shutdown().await;
}
