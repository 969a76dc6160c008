//! The READMEs document what the code accepts and reports: every plugin-configuration field
//! and every metric family, with its labels and fixed label values. The field list is taken
//! from the parser itself (the names serde offers when it refuses an unknown field), so a new
//! field fails this test until a README row describes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

use alternator_engine::metrics::{FAMILIES, SERIES};
use alternator_engine::FilterConfig;

/// The READMEs that carry the configuration and metric tables.
const READMES: [&str; 2] = ["README.md", "filter/README.md"];

fn readme(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The names serde lists in "unknown field `zz`, expected one of `a`, `b`" (or "expected `a`").
fn offered_fields(document: &str) -> Option<Vec<String>> {
    let message = FilterConfig::parse(document.as_bytes()).err()?.to_string();
    let (_, expected) = message.split_once("unknown field `zz_not_a_field`, expected ")?;
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Every leaf field path the parser accepts (`agent.tick_ms`, `fallbacks`, ...), found by
/// offering an unknown field at the top level and inside every field that is an object.
fn accepted_fields() -> BTreeSet<String> {
    let top = offered_fields(r#"{"zz_not_a_field": 1}"#).expect("the parser names its fields");
    assert!(top.len() > 5, "too few top-level fields: {top:?}");
    let mut fields = BTreeSet::new();
    for field in top {
        let nested = format!(r#"{{"{field}": {{"zz_not_a_field": 1}}}}"#);
        match offered_fields(&nested) {
            Some(children) => {
                for child in children {
                    fields.insert(format!("{field}.{child}"));
                }
            }
            None => {
                fields.insert(field);
            }
        }
    }
    fields
}

/// First-column code spans of the table rows in `text` (`| `name` | ...`).
fn table_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (name, row) = rest.split_once('`')?;
            Some((name.to_owned(), row.to_owned()))
        })
        .collect()
}

/// Whether a table row names a filter metric rather than one of the discovery agent's
/// (`alternator_agent_*`, documented in the same README), except the filter's own count of
/// its polls of the agent.
fn is_filter_metric_name(name: &str) -> bool {
    name.starts_with("alternator_")
        && (!name.starts_with("alternator_agent_") || name == "alternator_agent_polls_total")
}

#[test]
fn the_field_discovery_sees_nested_fields() {
    let fields = accepted_fields();
    for known in [
        "fallbacks",
        "agent.tick_ms",
        "scope.rack",
        "affinity.tables",
    ] {
        assert!(fields.contains(known), "{known} not found in {fields:?}");
    }
    // `affinity.tables` is a map, not a struct: its keys are table names, not fields.
    assert!(!fields.iter().any(|f| f.starts_with("affinity.tables.")));
}

#[test]
fn every_configuration_field_is_documented_in_each_readme() {
    let fields = accepted_fields();
    for path in READMES {
        let documented: BTreeSet<String> = table_rows(&readme(path))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let missing: Vec<&String> = fields.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{path}'s configuration table lacks {missing:?}"
        );
    }
}

#[test]
fn every_metric_family_is_documented_with_its_labels_and_values() {
    for path in READMES {
        let rows = table_rows(&readme(path));
        let documented: Vec<&String> = rows
            .iter()
            .map(|(name, _)| name)
            .filter(|name| is_filter_metric_name(name))
            .collect();
        for family in FAMILIES {
            let row = rows
                .iter()
                .find(|(name, _)| name == family.name)
                .map(|(_, row)| row)
                .unwrap_or_else(|| panic!("{path}: no metric row for {}", family.name));
            for label in family.labels {
                assert!(
                    row.contains(&format!("`{label}`")),
                    "{path}: the row of {} does not name its label `{label}`",
                    family.name
                );
            }
            for (_, series_family, values) in SERIES {
                if series_family != family {
                    continue;
                }
                for value in values {
                    assert!(
                        row.contains(&format!("`{value}`")),
                        "{path}: the row of {} does not name the value `{value}`",
                        family.name
                    );
                }
            }
        }
        // And no row documents a family the filter does not report.
        for name in documented {
            // Troubleshooting rows quote a series: `family{label="value"}`.
            let family = name.split('{').next().unwrap_or_default();
            assert!(
                FAMILIES.iter().any(|f| f.name == family),
                "{path} documents {name}, which the filter does not report"
            );
        }
    }
}
