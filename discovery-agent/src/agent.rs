//! The agent's one entry point: [`run`] starts node discovery, ring discovery, the API and
//! DNS on sockets the caller bound, and stops them all when `shutdown` completes.

use std::future::Future;
use std::sync::Arc;

use alternator_routing::scope::Scope;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::config::ValidatedConfig;
use crate::discovery::task::NodeDiscovery;
use crate::discovery::DiscoveryPlan;
use crate::dns::{DnsConfig, DnsListenError, DnsSockets, Zone};
use crate::ring_discovery::RingDiscovery;
use crate::state::AgentState;
use crate::transport::Transport;

/// The bound sockets the agent serves on.
#[derive(Debug)]
pub struct Sockets {
    /// The HTTP API (`--listen`).
    pub api: TcpListener,
    /// DNS over UDP and TCP; `None`: no DNS. The settings come from the configuration's
    /// `dns`, or the defaults when it has none (tests bind port 0 and read it back).
    pub dns: Option<DnsSockets>,
}

impl Sockets {
    /// The API on `api`, and DNS on `--dns-listen` when the configuration has DNS.
    pub async fn bind_dns(
        api: TcpListener,
        config: &ValidatedConfig,
    ) -> Result<Self, DnsListenError> {
        let dns = match &config.dns {
            Some(dns) => {
                Some(
                    DnsSockets::bind(dns.listen)
                        .await
                        .map_err(|source| DnsListenError {
                            address: dns.listen,
                            source,
                        })?,
                )
            }
            None => None,
        };
        Ok(Sockets { api, dns })
    }
}

/// Runs the agent until `shutdown` completes: discovery toward Alternator through
/// `transport` ([`crate::transport::HttpTransport`] in production, an in-memory cluster in
/// the cadence tests), the API and, if bound, DNS on `sockets`. Returns once in-flight API
/// requests finished (at most a few seconds after `shutdown`).
pub async fn run<T, F>(config: ValidatedConfig, sockets: Sockets, transport: T, shutdown: F)
where
    T: Transport,
    F: Future<Output = ()> + Send,
{
    let policy = config.scope_policy();
    let plan = DiscoveryPlan::new(policy, &config.extra_datacenters);
    let state = Arc::new(AgentState::new(
        config.cluster_name.clone(),
        config.idle_after,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Ok(address) = sockets.api.local_addr() {
        info!(%address, scopes = ?plan.scopes().iter().map(Scope::localnodes_query).collect::<Vec<_>>(), "agent API listening");
    }
    let dns_server = sockets.dns.map(|sockets| {
        let settings = match &config.dns {
            Some(dns) => dns.clone(),
            None => DnsConfig::new(sockets.local_addr().unwrap_or(([127, 0, 0, 1], 0).into())),
        };
        let zone = Zone::new(&settings, &policy.scope, &config.extra_datacenters);
        tokio::spawn(crate::dns::serve(
            sockets,
            zone,
            state.clone(),
            stop_rx.clone(),
        ))
    });
    let transport = Arc::new(transport);
    let ring_discovery = config.ring_discovery.clone().map(|ring| {
        info!(tables = ?ring.tables, signed = ring.credentials.is_some(), "ring discovery on");
        let task = RingDiscovery::new(ring, config.port, transport.clone(), state.clone());
        tokio::spawn(task.run(stop_rx.clone()))
    });
    let node_discovery = NodeDiscovery::new(&config, plan, transport, state.clone());
    let node_discovery = tokio::spawn(node_discovery.run(stop_rx.clone()));
    let api = tokio::spawn(crate::api::serve(sockets.api, state, stop_rx));
    shutdown.await;
    info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let _ = node_discovery.await;
    if let Some(ring_discovery) = ring_discovery {
        let _ = ring_discovery.await;
    }
    let _ = api.await;
    if let Some(dns_server) = dns_server {
        let _ = dns_server.await;
    }
    info!("stopped");
}
