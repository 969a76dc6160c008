//! The flags: defaults, every rule naming its flag, ring credentials from flags, a file or
//! the AWS variables, and secrets that never show.

use std::time::Duration;

use alternator_routing::endpoint::Scheme;
use alternator_routing::health::{
    DEFAULT_BACKGROUND_PROBE_PERIOD_MS, DEFAULT_PROBE_CONCURRENCY, DEFAULT_PROBE_TIMEOUT_MS,
};
use alternator_routing::scope::ScopeMode;
use clap::Parser;

use super::Cli;
use crate::config::{RingConfig, RingTables, ValidatedConfig};

fn cli(args: &[&str]) -> Result<ValidatedConfig, String> {
    let mut argv = vec!["alternator-discovery-agent"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    parsed.into_config().map_err(|e| e.to_string())
}

#[test]
fn defaults_follow_the_documentation() {
    let c = cli(&["--seeds", "10.0.0.1"]).unwrap();
    assert_eq!(c.port, 8000);
    assert_eq!(c.scheme, Scheme::Http);
    assert_eq!(c.active_interval, Duration::from_secs(1));
    assert_eq!(c.idle_interval, Duration::from_secs(60));
    // The flag defaults are literals (clap needs them as text); they must stay equal to the
    // spec defaults the routing core carries.
    assert_eq!(
        c.probe_period,
        Duration::from_millis(DEFAULT_BACKGROUND_PROBE_PERIOD_MS)
    );
    assert_eq!(
        c.probe_timeout,
        Duration::from_millis(DEFAULT_PROBE_TIMEOUT_MS)
    );
    assert_eq!(c.probe_concurrency, DEFAULT_PROBE_CONCURRENCY as usize);
    assert_eq!(c.cluster_name, "alternator");
    assert_eq!(c.scope_mode, ScopeMode::Fallback);
}

#[test]
fn dns_is_off_by_default_and_has_documented_defaults() {
    let c = cli(&["--seeds", "10.0.0.1"]).unwrap();
    assert!(c.dns.is_none());
    let c = cli(&["--seeds", "10.0.0.1", "--dns-listen", "127.0.0.1:5353"]).unwrap();
    let dns = c.dns.clone().unwrap();
    assert_eq!(dns.listen, "127.0.0.1:5353".parse().unwrap());
    assert_eq!(dns.zone.to_ascii(), "alternator.local.");
    assert_eq!(dns.ttl, Duration::from_secs(4));
    assert_eq!(dns.max_records, 1);
    assert_eq!(dns.scope_mode, ScopeMode::Fallback);
    let c = cli(&[
        "--seeds",
        "10.0.0.1",
        "--dns-listen",
        "[::1]:53",
        "--dns-zone",
        "Scylla.Example",
        "--dns-max-records",
        "3",
        "--dns-scope-mode",
        "strict",
    ])
    .unwrap();
    let dns = c.dns.clone().unwrap();
    assert_eq!(dns.zone.to_ascii(), "scylla.example.");
    assert_eq!(dns.max_records, 3);
    assert_eq!(dns.scope_mode, ScopeMode::Strict);
}

#[test]
fn seeds_are_split_and_trimmed() {
    let c = cli(&["--seeds", "10.0.0.1, scylla-2.example", "--seeds", "::1"]).unwrap();
    assert_eq!(c.seeds, ["10.0.0.1", "scylla-2.example", "::1"]);
}

#[test]
fn bad_values_name_their_flag() {
    for (args, flag) in [
        (&["--seeds", "10.0.0.1:8000"][..], "--seeds"),
        (&["--seeds", "a", "--rack", "r1"], "--rack"),
        (&["--seeds", "a", "--datacenter", "dc 1"], "--datacenter"),
        (&["--seeds", "a", "--scope-mode", "strict"], "--scope-mode"),
        (
            &["--seeds", "a", "--active-interval", "0s"],
            "--active-interval",
        ),
        (
            &[
                "--seeds",
                "a",
                "--active-interval",
                "5s",
                "--idle-interval",
                "1s",
            ],
            "--idle-interval",
        ),
        (
            &["--seeds", "a", "--probe-concurrency", "65"],
            "--probe-concurrency",
        ),
        (&["--seeds", "a", "--scheme", "https"], "--scheme"),
        (&["--seeds", "a", "--ca-file", "ca.pem"], "--ca-file"),
        (
            &["--seeds", "a", "--insecure-skip-verify"],
            "--insecure-skip-verify",
        ),
        (&["--seeds", "a", "--port", "0"], "--port"),
        (
            &[
                "--seeds",
                "a",
                "--dns-listen",
                "127.0.0.1:53",
                "--dns-zone",
                ".",
            ],
            "--dns-zone",
        ),
        (
            &[
                "--seeds",
                "a",
                "--dns-listen",
                "127.0.0.1:53",
                "--dns-zone",
                "a..b",
            ],
            "--dns-zone",
        ),
        (
            &[
                "--seeds",
                "a",
                "--dns-listen",
                "127.0.0.1:53",
                "--dns-ttl",
                "1.5s",
            ],
            "--dns-ttl",
        ),
        (
            &[
                "--seeds",
                "a",
                "--dns-listen",
                "127.0.0.1:53",
                "--dns-max-records",
                "0",
            ],
            "--dns-max-records",
        ),
        (
            &[
                "--seeds",
                "a",
                "--dns-listen",
                "127.0.0.1:53",
                "--dns-max-records",
                "65",
            ],
            "--dns-max-records",
        ),
        (
            &["--seeds", "a", "--dns-listen", "localhost"],
            "--dns-listen",
        ),
        (
            &["--seeds", "a", "--dns-scope-mode", "sometimes"],
            "--dns-scope-mode",
        ),
        (&["--seeds", "a", "--port", "80000"], "--port"),
        (
            &["--seeds", "a", "--idle-interval", "soon"],
            "--idle-interval",
        ),
    ] {
        let err = cli(args).unwrap_err();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

fn ring_cli(args: &[&str], env: &[(&str, &str)]) -> Result<ValidatedConfig, String> {
    let mut argv = vec!["alternator-discovery-agent", "--seeds", "10.0.0.1"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    parsed
        .into_config_with_env(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .map_err(|e| e.to_string())
}

#[test]
fn ring_discovery_is_off_by_default_and_has_documented_defaults() {
    let c = ring_cli(&[], &[("AWS_ACCESS_KEY_ID", "AKID")]).unwrap();
    assert!(
        c.ring_discovery.is_none(),
        "AWS variables alone do not turn it on"
    );
    let ring = ring_cli(&["--ring-tables", "all"], &[])
        .unwrap()
        .ring_discovery
        .clone()
        .unwrap();
    assert_eq!(ring, RingConfig::new(RingTables::All));
    assert_eq!(ring.refresh_active, Duration::from_secs(10));
    assert_eq!(ring.refresh_idle, Duration::from_secs(60));
    assert_eq!(ring.request_timeout, Duration::from_secs(5));
    assert_eq!(ring.region, "us-east-1");
    assert!(ring.credentials.is_none());
    let ring = ring_cli(
        &["--ring-tables", "users, orders.v2", "--ring-tables", "x_y"],
        &[],
    )
    .unwrap()
    .ring_discovery
    .clone()
    .unwrap();
    assert_eq!(
        ring.tables,
        RingTables::Named(vec!["users".into(), "orders.v2".into(), "x_y".into()])
    );
}

#[test]
fn ring_credentials_come_from_flags_a_file_or_the_aws_variables() {
    let key = |c: ValidatedConfig| c.ring_discovery.clone().unwrap().credentials.unwrap();
    let aws = [
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ];
    let c = key(ring_cli(&["--ring-tables", "all"], &aws).unwrap());
    assert_eq!(c.access_key_id, "AKIDENV");
    assert_eq!(c.secret_access_key.expose(), "env-secret");
    let c = key(ring_cli(
        &[
            "--ring-tables",
            "all",
            "--ring-access-key-id",
            "AKIDFLAG",
            "--ring-secret-access-key",
            "flag-secret",
        ],
        &aws,
    )
    .unwrap());
    assert_eq!(c.access_key_id, "AKIDFLAG");
    assert_eq!(c.secret_access_key.expose(), "flag-secret");

    let dir = std::env::temp_dir().join(format!("agent-ring-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("credentials");
    std::fs::write(
        &file,
        "# comment\n[other]\naws_access_key_id = AKIDOTHER\n\n[default]\n\
         AWS_ACCESS_KEY_ID = AKIDFILE\naws_secret_access_key=file/secret+key\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let c = key(ring_cli(
        &["--ring-tables", "all", "--ring-credentials-file", path],
        &aws,
    )
    .unwrap());
    assert_eq!(c.access_key_id, "AKIDFILE");
    assert_eq!(c.secret_access_key.expose(), "file/secret+key");
    std::fs::write(
        &file,
        "aws_access_key_id=AKIDBARE\naws_secret_access_key=s3cret\n",
    )
    .unwrap();
    let c = key(ring_cli(
        &["--ring-tables", "all", "--ring-credentials-file", path],
        &[],
    )
    .unwrap());
    assert_eq!(c.access_key_id, "AKIDBARE");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id=AKID\nsecret-in-a-bad-line\n",
    )
    .unwrap();
    let err = ring_cli(
        &["--ring-tables", "all", "--ring-credentials-file", path],
        &[],
    )
    .unwrap_err();
    assert!(
        err.contains("--ring-credentials-file") && err.contains("line 3"),
        "{err}"
    );
    assert!(!err.contains("secret-in-a-bad-line"), "{err}");
    std::fs::write(
        &file,
        "[prod]\naws_access_key_id=AKID\naws_secret_access_key=s\n",
    )
    .unwrap();
    let err = ring_cli(
        &["--ring-tables", "all", "--ring-credentials-file", path],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("[default]"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ring_secrets_never_show_in_debug_output_or_errors() {
    let c = ring_cli(
        &[
            "--ring-tables",
            "all",
            "--ring-access-key-id",
            "AKIDFLAG",
            "--ring-secret-access-key",
            "very-secret-value",
        ],
        &[],
    )
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("very-secret-value"), "{debug}");
    assert!(debug.contains("AKIDFLAG") && debug.contains("<redacted>"));
    let cli = Cli::try_parse_from([
        "alternator-discovery-agent",
        "--seeds",
        "a",
        "--ring-tables",
        "all",
        "--ring-access-key-id",
        "AKID",
        "--ring-secret-access-key",
        "very secret value",
    ])
    .unwrap();
    assert!(!format!("{cli:?}").contains("very"));
    let err = cli.into_config().unwrap_err().to_string();
    assert!(err.contains("--ring-secret-access-key"), "{err}");
    assert!(!err.contains("very"), "{err}");
}

#[test]
fn bad_ring_values_name_their_flag() {
    let aws_half = [("AWS_ACCESS_KEY_ID", "AKID")];
    for (args, env, flag) in [
        (
            &["--ring-tables", "all,users"][..],
            &[][..],
            "--ring-tables",
        ),
        (&["--ring-tables", "a"], &[], "--ring-tables"),
        (&["--ring-tables", "users/1"], &[], "--ring-tables"),
        (
            &["--ring-tables", "all", "--ring-refresh-active", "0s"],
            &[],
            "--ring-refresh-active",
        ),
        (
            &[
                "--ring-tables",
                "all",
                "--ring-refresh-active",
                "2m",
                "--ring-refresh-idle",
                "1m",
            ],
            &[],
            "--ring-refresh-idle",
        ),
        (
            &["--ring-tables", "all", "--ring-request-timeout", "soon"],
            &[],
            "--ring-request-timeout",
        ),
        (
            &["--ring-tables", "all", "--ring-region", "us east"],
            &[],
            "--ring-region",
        ),
        (
            &["--ring-tables", "all", "--ring-access-key-id", "AKID"],
            &[],
            "--ring-access-key-id",
        ),
        (
            &["--ring-tables", "all", "--ring-secret-access-key", "s"],
            &[],
            "--ring-secret-access-key",
        ),
        (
            &[
                "--ring-tables",
                "all",
                "--ring-access-key-id",
                "AKID",
                "--ring-credentials-file",
                "creds",
            ],
            &[],
            "--ring-access-key-id",
        ),
        (
            &[
                "--ring-tables",
                "all",
                "--ring-credentials-file",
                "/nonexistent/creds",
            ],
            &[],
            "--ring-credentials-file",
        ),
        (
            &["--ring-access-key-id", "AKID"],
            &[],
            "--ring-access-key-id",
        ),
        (
            &["--ring-tables", "all"],
            &aws_half[..],
            "AWS_ACCESS_KEY_ID",
        ),
    ] {
        let err = ring_cli(args, env).unwrap_err();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}
