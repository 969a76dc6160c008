//! The README documents what the agent exports: its metrics table has one row per family of
//! `metrics::FAMILIES`, with the family's labels and type, and no row for anything else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

use alternator_discovery_agent::metrics::FAMILIES;

/// `(name, labels, type)` of every row of README.md's metrics table:
/// ``| `name{label, label}` | counter | meaning |``.
fn documented_metrics() -> Vec<(String, BTreeSet<String>, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `alternator_agent_"))
        .map(|row| {
            let (series, rest) = row.split_once('`').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let kind = rest.split('|').nth(1).unwrap().trim().to_owned();
            (format!("alternator_agent_{name}"), labels, kind)
        })
        .collect()
}

#[test]
fn every_metric_family_is_documented_with_its_labels_and_type() {
    let documented = documented_metrics();
    assert!(documented.len() >= 20, "too few rows: {documented:?}");
    for family in FAMILIES {
        let (_, labels, kind) = documented
            .iter()
            .find(|(name, _, _)| name == family.name)
            .unwrap_or_else(|| panic!("README.md has no metrics row for {}", family.name));
        let declared: BTreeSet<String> = family.labels.iter().map(|l| (*l).to_owned()).collect();
        assert_eq!(labels, &declared, "labels of {}", family.name);
        assert_eq!(kind, family.kind.as_str(), "type of {}", family.name);
    }
    for (name, _, _) in &documented {
        assert!(
            FAMILIES.iter().any(|f| f.name == name),
            "README.md documents {name}, which the agent does not export"
        );
    }
}
