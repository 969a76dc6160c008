//! The modes' names as configured, and which operations each mode reads a body for.

use super::*;

#[test]
fn affinity_modes_parse_from_the_spec_names() {
    assert_eq!("NONE".parse(), Ok(AffinityMode::None));
    assert_eq!("rmw".parse(), Ok(AffinityMode::Rmw));
    assert_eq!("ANY_WRITE".parse(), Ok(AffinityMode::AnyWrite));
    assert!("ANYWRITE".parse::<AffinityMode>().is_err());
    assert_eq!(AffinityMode::default(), AffinityMode::None);
    for (name, mode) in [
        ("NONE", AffinityMode::None),
        ("RMW", AffinityMode::Rmw),
        ("ANY_WRITE", AffinityMode::AnyWrite),
    ] {
        assert_eq!(name.parse(), Ok(mode));
    }
}

#[test]
fn body_is_needed_only_for_operations_the_mode_may_route() {
    use AffinityMode::*;
    use Operation::*;
    let table = [
        (None, [false, false, false, false, false]),
        (Rmw, [true, true, true, false, false]),
        (AnyWrite, [true, true, true, true, false]),
    ];
    for (mode, expected) in table {
        let ops = [PutItem, UpdateItem, DeleteItem, BatchWriteItem, GetItem];
        for (op, want) in ops.into_iter().zip(expected) {
            assert_eq!(needs_body(mode, op), want, "{mode:?} {op:?}");
        }
        for op in [
            Query,
            Scan,
            BatchGetItem,
            TransactWriteItems,
            CreateTable,
            Other,
        ] {
            assert!(!needs_body(mode, op), "{mode:?} {op:?}");
        }
    }
    assert!(learns_key_schema(Rmw, DescribeTable));
    assert!(learns_key_schema(AnyWrite, CreateTable));
    assert!(!learns_key_schema(None, DescribeTable));
    assert!(!learns_key_schema(AnyWrite, PutItem));
}

/// A configuration file (serde) and a spec-style setting (`FromStr`) accept the same modes.
#[test]
fn serde_and_from_str_accept_the_same_names() {
    for (name, mode) in [
        ("none", AffinityMode::None),
        ("rmw", AffinityMode::Rmw),
        ("any_write", AffinityMode::AnyWrite),
    ] {
        let configured: AffinityMode =
            serde_json::from_str(&format!("{name:?}")).expect("a mode name deserializes");
        assert_eq!(configured, mode, "{name}");
        assert_eq!(name.parse(), Ok(mode), "{name}");
    }
    for unknown in ["always", "", "anywrite", "any-write"] {
        assert!(
            serde_json::from_str::<AffinityMode>(&format!("{unknown:?}")).is_err(),
            "{unknown:?}"
        );
        assert!(unknown.parse::<AffinityMode>().is_err(), "{unknown:?}");
    }
}
