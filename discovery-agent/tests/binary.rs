//! The built binary: bad flags and environment values exit 64 with one line naming the flag;
//! SIGTERM stops a running agent cleanly, answering an in-flight long-poll first.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use alternator_sim::{NodeSpec, Sim, SimConfig};
use common::{eventually, ip};

const AGENT: &str = env!("CARGO_BIN_EXE_alternator-discovery-agent");

fn run_agent(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(AGENT);
    command.args(args).stdin(Stdio::null());
    // The test process's own environment must not leak agent settings in.
    for (key, _) in std::env::vars() {
        if key.starts_with("ALTERNATOR_AGENT_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Arguments, environment, the flag the error must name.
type BadValue<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_values_exit_64_with_one_line_naming_the_flag() {
    let cases: &[BadValue] = &[
        (&["--seeds", "127.0.0.1", "--port", "eighty"], &[], "--port"),
        (&["--seeds", "127.0.0.1", "--port", "0"], &[], "--port"),
        (&[], &[], "--seeds"),
        (&["--seeds", "127.0.0.1:8000"], &[], "--seeds"),
        (&["--seeds", "127.0.0.1", "--rack", "r1"], &[], "--rack"),
        (
            &["--seeds", "127.0.0.1", "--scope-mode", "sometimes"],
            &[],
            "--scope-mode",
        ),
        (
            &["--seeds", "127.0.0.1", "--active-interval", "fast"],
            &[],
            "--active-interval",
        ),
        (
            &["--seeds", "127.0.0.1", "--listen", "localhost"],
            &[],
            "--listen",
        ),
        (
            &["--seeds", "127.0.0.1", "--scheme", "https"],
            &[],
            "--scheme",
        ),
        (
            &["--seeds", "127.0.0.1", "--no-such-flag"],
            &[],
            "--no-such-flag",
        ),
        (
            &["--seeds", "127.0.0.1", "--log-level", "loud=[["],
            &[],
            "--log-level",
        ),
        (
            &[
                "--seeds",
                "127.0.0.1",
                "--scheme",
                "https",
                "--ca-file",
                "/nonexistent/ca.pem",
            ],
            &[],
            "--ca-file",
        ),
        (
            &["--seeds", "127.0.0.1"],
            &[("ALTERNATOR_AGENT_PORT", "99999")],
            "--port",
        ),
        (&[], &[("ALTERNATOR_AGENT_SEEDS", "a b")], "--seeds"),
        (
            &["--seeds", "127.0.0.1"],
            &[("ALTERNATOR_AGENT_PROBE_CONCURRENCY", "0")],
            "--probe-concurrency",
        ),
        (
            &["--seeds", "127.0.0.1", "--dns-listen", "127.0.0.1"],
            &[],
            "--dns-listen",
        ),
        (
            &["--seeds", "127.0.0.1", "--dns-listen", "127.0.0.1:5353"],
            &[("ALTERNATOR_AGENT_DNS_ZONE", "bad zone")],
            "--dns-zone",
        ),
        (
            &["--seeds", "127.0.0.1", "--dns-listen", "127.0.0.1:5353"],
            &[("ALTERNATOR_AGENT_DNS_MAX_RECORDS", "0")],
            "--dns-max-records",
        ),
        (
            &[
                "--seeds",
                "127.0.0.1",
                "--dns-listen",
                "127.0.0.1:5353",
                "--dns-ttl",
                "500ms",
            ],
            &[],
            "--dns-ttl",
        ),
    ];
    for (args, env, flag) in cases {
        let (code, stderr) = run_agent(args, env);
        assert_eq!(code, Some(64), "{args:?} {env:?}: stderr {stderr:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?} {env:?}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(flag),
            "{args:?} {env:?}: {stderr:?} names {flag}"
        );
    }
}

#[test]
fn help_exits_0() {
    let output = Command::new(AGENT).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("ALTERNATOR_AGENT_SEEDS"), "{text}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_answers_long_polls_and_exits_0() {
    let n = |i| ip(51, i);
    let sim = Sim::start(SimConfig::new(vec![NodeSpec::new(n(1), "dc1", "r1")]))
        .await
        .unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listen.local_addr().unwrap();
    drop(listen);
    let mut child = tokio::process::Command::new(AGENT)
        .args([
            "--seeds",
            &n(1).to_string(),
            "--port",
            &sim.port().to_string(),
        ])
        .args(["--listen", &addr.to_string(), "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(15), "agent ready", || async {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => common::http(addr, "GET", "/readyz", &[], "").await.status == 200,
            Err(_) => false,
        }
    })
    .await;
    let etag = common::http(addr, "GET", "/v1/nodes", &[], "")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let poll = tokio::spawn(async move {
        common::http(
            addr,
            "GET",
            "/v1/nodes?wait=60",
            &[("if-none-match", &etag)],
            "",
        )
        .await
    });
    // SIGTERM only once the agent holds the poll (not while it is still on its way).
    eventually(
        Duration::from_secs(30),
        "the agent holds the long poll",
        || async {
            let metrics = common::http(addr, "GET", "/metrics", &[], "").await;
            metrics
                .body
                .lines()
                .any(|l| l == "alternator_agent_long_polls_waiting 1")
        },
    )
    .await;

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // A guard against a hang, not a timing assertion: the agent has its own 3 s drain limit.
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the agent exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let answered = poll.await.unwrap();
    assert_eq!(answered.status, 304, "the in-flight long-poll was answered");

    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    for line in stderr.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("JSON log line {line:?}: {e}"));
        assert!(event.get("level").is_some(), "{line}");
    }
    assert!(stderr.contains("shutting down"), "{stderr}");
    sim.shutdown().await;
}

#[test]
fn a_dns_address_in_use_is_a_clear_startup_failure() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = held.local_addr().unwrap().to_string();
    let (code, stderr) = run_agent(
        &[
            "--seeds",
            "127.0.0.1",
            "--listen",
            "127.0.0.1:0",
            "--dns-listen",
            &address,
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--dns-listen"), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn dns_answers_and_stops_with_the_agent() {
    use hickory_proto::op::Message;
    use hickory_proto::rr::{Name, RecordType};

    let n = |i| ip(52, i);
    let sim = Sim::start(SimConfig::new(vec![NodeSpec::new(n(1), "dc1", "r1")]))
        .await
        .unwrap();
    let sockets = alternator_discovery_agent::dns::DnsSockets::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dns = sockets.local_addr().unwrap();
    drop(sockets);
    let mut child = tokio::process::Command::new(AGENT)
        .args([
            "--seeds",
            &n(1).to_string(),
            "--port",
            &sim.port().to_string(),
        ])
        .args(["--listen", "127.0.0.1:0", "--dns-listen", &dns.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let query = alternator_discovery_agent::dns::responder::query_bytes(
        7,
        &Name::from_ascii("alternator.local.").unwrap(),
        RecordType::A,
        None,
    );
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    eventually(
        Duration::from_secs(15),
        "the binary answers DNS",
        || async {
            let _ = client.send_to(&query, dns).await;
            let mut buffer = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buffer)).await {
                Ok(Ok(len)) => {
                    Message::from_vec(&buffer[..len]).is_ok_and(|m| m.answers.len() == 1)
                }
                _ => false,
            }
        },
    )
    .await;
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the agent exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // The port is free again: the DNS sockets were closed with the agent.
    alternator_discovery_agent::dns::DnsSockets::bind(dns)
        .await
        .unwrap();
    sim.shutdown().await;
}
