//! The exposition: label escaping, values, and every family of the table written once, in
//! order, with its help and type.

use alternator_routing::scope::Scope;

use super::*;

#[test]
fn renders_labels_and_values() {
    let m = Metrics::default();
    let rack = Scope::Rack {
        datacenter: "dc\"1".into(),
        rack: "r1".into(),
    };
    m.discovery.count_scope(&rack, RefreshOutcome::Success);
    m.discovery.count_scope(&rack, RefreshOutcome::Success);
    m.discovery
        .count_scope(&Scope::Cluster, RefreshOutcome::Failure);
    m.discovery.count_round(false, 0);
    m.discovery.count_round(false, 0);
    m.api.count_served("nodes", 304);
    let text = m.render(None, false, 5_000);
    assert!(
        text.contains(r#"alternator_agent_refreshes_total{scope="rack",datacenter="dc\"1",rack="r1",outcome="success"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alternator_agent_refreshes_total{scope="cluster",outcome="failure"} 1"#)
    );
    assert!(text.contains("alternator_agent_refresh_consecutive_failures 2"));
    assert!(text.contains("alternator_agent_last_success_timestamp_seconds 0.000"));
    assert!(text.contains(r#"alternator_agent_requests_total{endpoint="nodes",code="304"} 1"#));
    m.discovery.count_round(true, 1_763_735_000_250);
    let text = m.render(None, true, 0);
    assert!(text.contains("alternator_agent_last_success_timestamp_seconds 1763735000.250"));
    assert!(text.contains("alternator_agent_refresh_consecutive_failures 0"));
    assert!(text.contains("alternator_agent_ready 1"));
}

#[test]
fn every_family_of_the_table_is_written_once_in_order() {
    let text = Metrics::default().render(None, false, 0);
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let expected: Vec<String> = FAMILIES
        .iter()
        .map(|f| format!("{} {}", f.name, f.kind.as_str()))
        .collect();
    assert_eq!(typed, expected);
    for family in FAMILIES {
        assert!(text.contains(&format!("# HELP {} {}\n", family.name, family.help)));
        // A family without labels always has its one series.
        if family.labels.is_empty() {
            assert!(
                text.lines().any(|l| l
                    .strip_prefix(family.name)
                    .is_some_and(|rest| rest.starts_with(' '))),
                "{} has no series",
                family.name
            );
        }
    }
    let names: std::collections::BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FAMILIES.len(), "a family is listed twice");
}
