use super::*;

fn err(json: &str) -> String {
    FilterConfig::parse(json.as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn empty_document_gives_documented_defaults() {
    for doc in ["", "  ", "{}"] {
        let c = FilterConfig::parse(doc.as_bytes()).unwrap();
        assert_eq!(c.routing_header, "x-alternator-endpoints");
        assert_eq!(c.fallbacks, 2);
        assert_eq!(c.candidates(), 3);
        assert_eq!(c.policy, Policy::RoundRobin);
        assert_eq!(
            c.scope,
            ScopePolicy {
                scope: Scope::Cluster,
                mode: ScopeMode::Fallback
            }
        );
        assert_eq!(c.affinity.mode, AffinityMode::None);
        assert_eq!(c.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_request_bytes, 16 * 1024 * 1024);
        assert_eq!(c.agent.cluster, "alternator_agent");
        assert_eq!(c.agent.path, "/v1/nodes");
        assert_eq!(c.agent.long_poll, Duration::from_secs(20));
    }
}

#[test]
fn full_document_is_read() {
    let c = FilterConfig::parse(
        br#"{"agent": {"cluster": "agent", "path": "/v1/nodes", "tick_ms": 200, "long_poll_s": 0, "lease_ms": 1000},
             "routing_header": "X-Alt", "fallbacks": 0, "policy": "random",
             "scope": {"datacenter": "dc1", "rack": "r1", "mode": "strict"},
             "affinity": {"mode": "any_write", "tables": {"users": "id"}},
             "max_body_bytes": 1024}"#,
    )
    .unwrap();
    assert_eq!(c.agent.cluster, "agent");
    assert_eq!(c.agent.tick, Duration::from_millis(200));
    assert_eq!(c.agent.long_poll, Duration::ZERO);
    assert_eq!(c.routing_header, "x-alt");
    assert_eq!(c.candidates(), 1);
    assert_eq!(c.policy, Policy::Random);
    assert_eq!(
        c.scope.scope,
        Scope::Rack {
            datacenter: "dc1".into(),
            rack: "r1".into()
        }
    );
    assert_eq!(c.scope.mode, ScopeMode::Strict);
    assert_eq!(c.affinity.mode, AffinityMode::AnyWrite);
    assert_eq!(
        c.affinity.tables.get("users").map(String::as_str),
        Some("id")
    );
    assert_eq!(c.max_body_bytes, 1024);
}

#[test]
fn unknown_fields_are_named() {
    assert!(
        err(r#"{"fallback": 3}"#).contains("fallback"),
        "{}",
        err(r#"{"fallback": 3}"#)
    );
    let e = err(r#"{"scope": {"dc": "x"}}"#);
    assert!(e.contains("scope") && e.contains("dc"), "{e}");
    let e = err(r#"{"agent": {"clustr": "x"}}"#);
    assert!(e.contains("agent") && e.contains("clustr"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = err(r#"{"policy": "least_request"}"#);
    assert!(e.contains("policy") && e.contains("least_request"), "{e}");
    let e = err(r#"{"affinity": {"mode": "always"}}"#);
    assert!(e.contains("affinity.mode"), "{e}");
    assert!(err(r#"{"fallbacks": -1}"#).contains("fallbacks"));
    assert!(err(r#"{"fallbacks": 17}"#).contains("fallbacks"));
    assert!(err(r#"{"scope": {"rack": "r1"}}"#).contains("scope.rack"));
    assert!(err(r#"{"scope": {"datacenter": ""}}"#).contains("scope.datacenter"));
    assert!(err(r#"{"routing_header": "bad header"}"#).contains("routing_header"));
    assert!(err(r#"{"routing_header": "host"}"#).contains("routing_header"));
    assert!(err(r#"{"agent": {"long_poll_s": 61}}"#).contains("agent.long_poll_s"));
    assert!(err(r#"{"agent": {"tick_ms": 1000, "lease_ms": 2000}}"#).contains("agent.lease_ms"));
    assert!(err(r#"{"agent": {"path": "v1/nodes"}}"#).contains("agent.path"));
    assert!(err(r#"{"affinity": {"tables": {"t": ""}}}"#).contains("affinity.tables"));
    assert!(err(r#"{"max_body_bytes": 99999999999}"#).contains("max_body_bytes"));
    assert!(err(r#"{"token_aware": {"max_ring_age_ms": 86400001}}"#)
        .contains("token_aware.max_ring_age_ms"));
    assert!(err(r#"{"token_aware": {"enabled": "yes"}}"#).contains("token_aware.enabled"));
    assert!(err(r#"{"token_aware": {"replicas": 2}}"#).contains("token_aware"));
}

#[test]
fn passive_health_defaults_two_timeouts_and_a_250_ms_per_try_floor() {
    let c = FilterConfig::parse(b"{}").unwrap();
    assert!(c.passive_health.enabled);
    assert_eq!(c.passive_health.cooldown_ms, 10_000);
    assert_eq!(c.passive_health.timeouts_to_down, 2);
    assert_eq!(c.passive_health.min_per_try_timeout_ms, 250);
    let c = FilterConfig::parse(
        br#"{"passive_health": {"timeouts_to_down": 5, "min_per_try_timeout_ms": 0}}"#,
    )
    .unwrap();
    assert_eq!(c.passive_health.timeouts_to_down, 5);
    assert_eq!(c.passive_health.min_per_try_timeout_ms, 0);
    for bad in [
        r#"{"passive_health": {"timeouts_to_down": 0}}"#,
        r#"{"passive_health": {"timeouts_to_down": 6}}"#,
    ] {
        assert!(
            err(bad).contains("passive_health.timeouts_to_down"),
            "{bad}"
        );
    }
    assert!(
        err(r#"{"passive_health": {"min_per_try_timeout_ms": 600001}}"#)
            .contains("passive_health.min_per_try_timeout_ms")
    );
}

#[test]
fn token_aware_defaults_off_with_a_ten_minute_ring_age_limit() {
    let c = FilterConfig::parse(b"{}").unwrap();
    assert!(!c.token_aware.enabled);
    assert_eq!(c.token_aware.max_ring_age_ms, 600_000);
    let c = FilterConfig::parse(br#"{"token_aware": {"enabled": true, "max_ring_age_ms": 0}}"#)
        .unwrap();
    assert!(c.token_aware.enabled);
    assert_eq!(c.token_aware.max_ring_age_ms, 0);
}

#[test]
fn malformed_json_is_refused() {
    assert!(err("{").contains("invalid plugin configuration"));
    assert!(err("[]").contains("invalid plugin configuration"));
    assert!(err("{} {}").contains("invalid plugin configuration"));
}
