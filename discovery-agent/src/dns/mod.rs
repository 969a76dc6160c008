//! The optional DNS listener: answers A/AAAA queries for a zone with vetted Alternator nodes,
//! for applications that cannot run Envoy.
//!
//! [`answers`] holds the pure rules (which nodes a name stands for), [`responder`] turns one
//! query into one response with hickory-proto, [`config`] holds the settings and their rules
//! (`--dns-*`), and this module does the I/O: one UDP socket
//! and one TCP listener on the same address, reading the agent's published snapshot.

pub mod answers;
pub mod config;
pub mod responder;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alternator_routing::scope::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::state::{stopped, AgentState};
pub use config::{DnsConfig, DnsConfigError, DEFAULT_ZONE, MAX_RECORDS_LIMIT};
pub use responder::Zone;
use responder::{respond, Dropped, Reply};

/// TCP connections served at once; more wait in the kernel's backlog.
const TCP_CONNECTIONS: usize = 64;
/// A TCP client that sends nothing for this long is disconnected (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

impl Zone {
    /// The zone `settings` describe, for an agent whose own scope is `agent_scope`.
    pub fn new(settings: &DnsConfig, agent_scope: &Scope, extra_datacenters: &[String]) -> Zone {
        // The agent's scope, its wider scopes and the extra datacenters exist by configuration,
        // even while none of their nodes is listed.
        let declared = std::iter::successors(Some(agent_scope.clone()), Scope::parent)
            .chain(extra_datacenters.iter().map(|dc| Scope::Datacenter {
                datacenter: dc.clone(),
            }))
            .collect();
        Zone {
            apex: settings.zone.clone(),
            ttl: u32::try_from(settings.ttl.as_secs()).unwrap_or(u32::MAX),
            max_records: settings.max_records,
            mode: settings.scope_mode,
            apex_scope: agent_scope.clone(),
            declared,
        }
    }
}

/// The DNS address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for DNS on {address} (--dns-listen): {source}")]
pub struct DnsListenError {
    /// The configured address.
    pub address: SocketAddr,
    /// Why binding failed.
    pub source: std::io::Error,
}

/// The bound UDP socket and TCP listener, on one address.
#[derive(Debug)]
pub struct DnsSockets {
    /// UDP socket.
    pub udp: UdpSocket,
    /// TCP listener.
    pub tcp: TcpListener,
}

impl DnsSockets {
    /// Binds UDP and TCP on `address`. With port 0, TCP takes the port the system gave UDP
    /// (retrying a few times should another process hold it for TCP).
    pub async fn bind(address: SocketAddr) -> std::io::Result<DnsSockets> {
        let mut last_error = None;
        for _ in 0..8 {
            let udp = UdpSocket::bind(address).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => return Ok(DnsSockets { udp, tcp }),
                Err(error) if address.port() == 0 => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Serves DNS on `sockets` until `stop` turns true.
pub async fn serve(
    sockets: DnsSockets,
    zone: Zone,
    state: Arc<AgentState>,
    mut stop: watch::Receiver<bool>,
) {
    if let Ok(address) = sockets.local_addr() {
        info!(%address, zone = %zone.apex, "DNS listening (UDP and TCP)");
    }
    let zone = Arc::new(zone);
    let udp = tokio::spawn(serve_udp(
        sockets.udp,
        zone.clone(),
        state.clone(),
        stop.clone(),
    ));
    let tcp = tokio::spawn(serve_tcp(sockets.tcp, zone, state, stop.clone()));
    stopped(&mut stop).await;
    let _ = udp.await;
    let _ = tcp.await;
}

/// Answers one packet and counts the outcome.
fn answer(
    zone: &Zone,
    state: &AgentState,
    packet: &[u8],
    transport: &'static str,
) -> Option<Reply> {
    let current = state.current();
    let nodes = current.as_ref().map(|p| p.snapshot.nodes());
    match respond(
        zone,
        packet,
        nodes,
        transport == "udp",
        &mut rand::thread_rng(),
    ) {
        Ok(reply) => {
            state.metrics.dns.count_reply(transport, &reply);
            Some(reply)
        }
        Err(reason) => {
            debug!(
                transport,
                reason = reason.as_str(),
                bytes = packet.len(),
                "DNS packet dropped"
            );
            state.metrics.dns.count_dropped(transport, reason);
            None
        }
    }
}

async fn serve_udp(
    socket: UdpSocket,
    zone: Arc<Zone>,
    state: Arc<AgentState>,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the largest accepted query, so an oversized datagram is recognised
    // rather than silently cut to size.
    let mut buffer = vec![0u8; responder::MAX_QUERY_BYTES + 1];
    loop {
        let received = tokio::select! {
            _ = stopped(&mut stop) => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                // ICMP port unreachable from an earlier reply shows up here on some systems;
                // it concerns that client only.
                debug!(%error, "DNS UDP receive failed");
                continue;
            }
        };
        let packet = buffer.get(..len).unwrap_or_default();
        if let Some(reply) = answer(&zone, &state, packet, "udp") {
            if let Err(error) = socket.send_to(&reply.bytes, peer).await {
                debug!(%peer, %error, "DNS UDP send failed");
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: Arc<Zone>,
    state: Arc<AgentState>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stopped(&mut stop) => break,
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                let zone = zone.clone();
                let state = state.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    if let Err(error) = serve_connection(stream, &zone, &state, stop).await {
                        debug!(%peer, %error, "DNS TCP connection ended");
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                warn!(%error, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    connections.abort_all();
}

/// RFC 1035 §4.2.2 framing: a two-byte length before each message; several queries may
/// follow on one connection (RFC 7766). A malformed or oversized message closes it, since
/// the stream cannot be trusted to be in step any more.
async fn serve_connection(
    mut stream: TcpStream,
    zone: &Zone,
    state: &AgentState,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(512);
    loop {
        let mut length = [0u8; 2];
        let read = tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            read = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut length)) => read,
        };
        match read {
            Err(_) => return Ok(()),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Ok(Ok(_)) => {}
        }
        let length = usize::from(u16::from_be_bytes(length));
        if length > responder::MAX_QUERY_BYTES {
            state.metrics.dns.count_dropped("tcp", Dropped::Oversized);
            return Ok(());
        }
        buffer.resize(length, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buffer)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                state.metrics.dns.count_dropped("tcp", Dropped::Malformed);
                return Ok(());
            }
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                state.metrics.dns.count_dropped("tcp", Dropped::Malformed);
                return Ok(());
            }
        }
        let Some(reply) = answer(zone, state, &buffer, "tcp") else {
            return Ok(());
        };
        let Ok(frame_length) = u16::try_from(reply.bytes.len()) else {
            return Ok(());
        };
        let mut frame = Vec::with_capacity(reply.bytes.len() + 2);
        frame.extend_from_slice(&frame_length.to_be_bytes());
        frame.extend_from_slice(&reply.bytes);
        stream.write_all(&frame).await?;
    }
}
