//! `alternator-sim` binary: parse flags, log to stderr, print the startup JSON line on stdout,
//! run until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use alternator_sim::{Credentials, Layout, NodeSpec, RingConfig, Sim, SimConfig, TabletSplit};
use clap::Parser;
use serde::Deserialize;

/// A stand-in ScyllaDB Alternator cluster for tests and the demo. Not a database.
#[derive(Debug, Parser)]
#[command(name = "alternator-sim", version)]
struct Args {
    /// A node as ADDRESS/DATACENTER/RACK[/BROADCAST] (repeat for every node), e.g.
    /// 127.0.0.2/dc1/rack2; BROADCAST is the address it announces to other nodes
    /// (system.peers, system.token_ring), default ADDRESS.
    #[arg(long = "node", value_name = "ADDRESS/DC/RACK[/BROADCAST]")]
    nodes: Vec<NodeSpec>,

    /// JSON file with {"nodes": [{"address", "datacenter", "rack", "broadcast_address"?}],
    /// "port": P}; --node adds to its nodes, other flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Port shared by every node; 0 picks one free on every node address.
    #[arg(long)]
    port: Option<u16>,

    /// Address of the control API.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,

    /// Verify SigV4 on DynamoDB requests with these credentials (ACCESS_KEY_ID:SECRET).
    #[arg(long, value_name = "AKID:SECRET", env = "ALTERNATOR_SIM_ENFORCE_AUTH")]
    enforce_auth: Option<Credentials>,

    /// Relay DynamoDB requests, byte for byte, to this DynamoDB implementation, e.g.
    /// http://127.0.0.1:8000.
    #[arg(long, value_name = "URL")]
    backend: Option<String>,

    /// Entries kept in the key log.
    #[arg(long, default_value_t = 100_000)]
    keylog_capacity: usize,

    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    worker_threads: Option<usize>,

    /// Token layout of new tables: tablets or vnodes (a CreateTable tag
    /// system:initial_tablets overrides it per table: a number asks for tablets, other text for
    /// vnodes).
    #[arg(long, value_name = "vnodes|tablets", default_value = "tablets")]
    ring_layout: Layout,

    /// Tokens each node owns in the vnodes layout.
    #[arg(long, default_value_t = 16)]
    vnodes_per_node: u32,

    /// Tablets of a new tablets table.
    #[arg(long, default_value_t = 8)]
    tablets: u32,

    /// Tablet boundaries: even (ScyllaDB's even split) or uneven (deterministic, seeded).
    #[arg(long, value_name = "even|uneven", default_value = "even")]
    tablet_split: TabletSplit,

    /// Replicas per datacenter (capped by the datacenter's node count).
    #[arg(long, default_value_t = 3)]
    replication_factor: u32,

    /// Seed of vnode tokens, host ids, table ids and uneven tablet boundaries.
    #[arg(long, default_value_t = 0)]
    ring_seed: u64,

    /// A coordinator that is not a replica of a single-key request's key waits this long before
    /// answering (e.g. 300us, 2ms; a model of the extra hop for benchmarks only).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    forward_delay: Duration,

    /// At most N rows per page of a Scan/Query of an internal table (default: only the ~1 MB
    /// cap), to test readers' pagination.
    #[arg(long, value_name = "N")]
    internal_page_rows: Option<usize>,

    /// Serve HTTPS instead of HTTP on the nodes' port, like Alternator's alternator_https_port:
    /// a test CA is made at start and signs a certificate for every node (its address as IP
    /// SAN); the CA certificate (PEM) is written to FILE before the startup line is printed.
    #[arg(long, value_name = "FILE")]
    tls_ca_out: Option<PathBuf>,
}

/// `0`, or a number with a unit: `ns`, `us`, `ms`, `s` (e.g. `300us`, `2ms`, `1.5s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} needs a unit: ns, us, ms or s (e.g. 300us)"))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 300us, 2ms)"))?;
    let seconds = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}: use ns, us, ms or s"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    nodes: Vec<NodeSpec>,
    #[serde(default)]
    port: Option<u16>,
}

fn config(args: &Args) -> Result<SimConfig, String> {
    let mut nodes = Vec::new();
    let mut port = None;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: ConfigFile = serde_json::from_str(&text)
            .map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
        nodes = file.nodes;
        port = file.port;
    }
    nodes.extend(args.nodes.iter().cloned());
    if nodes.is_empty() {
        return Err("no nodes: give --node ADDRESS/DC/RACK (or --config FILE)".into());
    }
    Ok(SimConfig {
        nodes,
        port: args.port.or(port).unwrap_or(0),
        control: args.control,
        enforce_auth: args.enforce_auth.clone(),
        backend: args.backend.clone(),
        keylog_capacity: args.keylog_capacity,
        ring: RingConfig {
            layout: args.ring_layout,
            vnodes_per_node: args.vnodes_per_node,
            tablets: args.tablets,
            tablet_split: args.tablet_split,
            replication_factor: args.replication_factor,
            seed: args.ring_seed,
        },
        forward_delay: args.forward_delay,
        internal_page_rows: args.internal_page_rows,
        tls: args.tls_ca_out.is_some(),
    })
}

async fn run(config: SimConfig, ca_out: Option<PathBuf>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a harness may send SIGTERM as soon as it has read the startup line.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let sim = Sim::start(config).await.map_err(|e| e.to_string())?;
    if let (Some(path), Some(pem)) = (&ca_out, sim.ca_pem()) {
        std::fs::write(path, pem)
            .map_err(|e| format!("cannot write the CA certificate to {}: {e}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", sim.startup_line()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("alternator-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("alternator-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.tls_ca_out.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alternator-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
