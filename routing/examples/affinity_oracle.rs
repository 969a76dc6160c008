//! What the routing core predicts for key-affine requests, computed natively: the oracle the
//! end-to-end affinity test compares Envoy's actual routing with.
//!
//! ```text
//! affinity_oracle <snapshot.json> <mode: rmw|any_write> <table=hashkey>...
//! ```
//!
//! Reads one request per stdin line, `<Operation> <JSON body>`, and prints one line per
//! request: the `ip:port` of the first candidate of its affinity plan over the whole snapshot
//! (no scope, published health), or `-` when the request is not routed by key.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use alternator_routing::affinity::{plan, AffinityScratch, AffinityTarget};
use alternator_routing::dynamodb::{affinity_keys, AffinityMode, Operation};
use alternator_routing::plan::RoutingTable;
use alternator_routing::scope::ScopePolicy;
use alternator_routing::snapshot::NodeSnapshot;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(mode)) = (args.first(), args.get(1)) else {
        eprintln!("usage: affinity_oracle <snapshot.json> <rmw|any_write> <table=hashkey>...");
        return ExitCode::from(2);
    };
    let mode: AffinityMode = match mode.parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let tables: BTreeMap<String, String> = args[2..]
        .iter()
        .filter_map(|t| {
            t.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let snapshot = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| NodeSnapshot::from_json(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = RoutingTable::new(snapshot, ScopePolicy::default());
    let mut out = Vec::new();
    let mut scratch = AffinityScratch::default();
    let mut hosts = String::new();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, body) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        hosts.clear();
        if let Ok(keys) = affinity_keys(mode, Operation::from_name(op), body.as_bytes(), &tables) {
            plan(
                &table,
                &AffinityTarget::from_keys(&keys),
                table.published_health(),
                1,
                &mut out,
                &mut scratch,
            );
            table.push_override_hosts(&out, &mut hosts);
        }
        let answer = if hosts.is_empty() {
            "-"
        } else {
            hosts.as_str()
        };
        if writeln!(stdout, "{answer}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
