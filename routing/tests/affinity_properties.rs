//! Property tests for the affinity half of the routing core: parsers never panic on arbitrary
//! input, seeded and voted orders are permutations, and health never moves the base order.

use std::collections::HashMap;

use alternator_routing::affinity::{affinity_order, plan, AffinityScratch, AffinityTarget};
use alternator_routing::dynamodb::{
    affinity_keys, batch_write_keys, create_table_key_schema, item_key, reads_before_write,
    table_description_key_schema, AffinityKeys, AffinityMode, Operation,
};
use alternator_routing::endpoint::Scheme;
use alternator_routing::gorand::{seeded_first, seeded_order, GoRand};
use alternator_routing::hash::{affinity_hash, KeyType};
use alternator_routing::plan::{select, RoutingTable};
use alternator_routing::scope::ScopePolicy;
use alternator_routing::snapshot::{HealthState, Node, NodeSnapshot};
use proptest::prelude::*;

fn schemas() -> HashMap<String, String> {
    HashMap::from([("t".to_owned(), "pk".to_owned())])
}

const MODES: [AffinityMode; 3] = [
    AffinityMode::None,
    AffinityMode::Rmw,
    AffinityMode::AnyWrite,
];
const OPS: [Operation; 6] = [
    Operation::PutItem,
    Operation::UpdateItem,
    Operation::DeleteItem,
    Operation::GetItem,
    Operation::BatchWriteItem,
    Operation::Query,
];

/// Runs every body reader on `body`; they must return, never panic.
fn read_everything(body: &[u8]) {
    let s = schemas();
    for mode in MODES {
        for op in OPS {
            let _ = affinity_keys(mode, op, body, &s);
        }
    }
    for op in OPS {
        let _ = item_key(op, body, &s);
        let _ = reads_before_write(op, body);
    }
    let _ = batch_write_keys(body, &s);
    let _ = create_table_key_schema(body);
    let _ = table_description_key_schema(body);
}

/// JSON-ish text built from the tokens the scanner cares about, so that the generated inputs
/// reach deep into the readers instead of failing on the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"TableName\":\"t\"".to_owned()),
        Just("\"Item\":".to_owned()),
        Just("\"Key\":".to_owned()),
        Just("\"RequestItems\":".to_owned()),
        Just("\"PutRequest\":".to_owned()),
        Just("\"DeleteRequest\":".to_owned()),
        Just("\"pk\":".to_owned()),
        Just("{\"S\":\"a\"}".to_owned()),
        Just("{\"B\":\"AQ==\"}".to_owned()),
        Just("\"\\u00e9\\ud83d\"".to_owned()),
        Just("\"t\":".to_owned()),
        Just("\"KeySchema\":".to_owned()),
        Just("\"Table\":".to_owned()),
        Just("null".to_owned()),
        Just("-1.5e3".to_owned()),
        "[ -~]{0,4}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn cluster(n: usize) -> RoutingTable {
    let nodes = (0..n)
        .map(|i| Node {
            address: std::net::Ipv4Addr::new(10, 1, (i / 200) as u8, (i % 200 + 1) as u8).into(),
            datacenter: "dc1".into(),
            rack: "r1".into(),
            health: HealthState::Active,
        })
        .collect();
    RoutingTable::new(
        NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes),
        ScopePolicy::default(),
    )
}

fn health_state() -> impl Strategy<Value = HealthState> {
    prop_oneof![
        Just(HealthState::Active),
        Just(HealthState::Quarantined),
        Just(HealthState::Down)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn readers_never_panic_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        read_everything(&body);
    }

    #[test]
    fn readers_never_panic_on_json_like_text(body in jsonish()) {
        read_everything(body.as_bytes());
    }

    #[test]
    fn operation_parsing_is_total(target in ".*") {
        let op = Operation::from_target(&target);
        if !target.starts_with("DynamoDB_20120810.") {
            prop_assert_eq!(op, Operation::Other);
        }
        prop_assert_eq!(Operation::from_name(op.as_str()), op);
    }

    #[test]
    fn string_keys_round_trip_through_json(value in "\\PC{0,40}") {
        // Whatever the text, a serde_json-encoded PutItem yields exactly its bytes.
        let body = serde_json::json!({
            "TableName": "t",
            "Item": {"other": {"M": {"pk": {"S": "decoy"}}}, "pk": {"S": value.clone()}},
        })
        .to_string();
        let key = item_key(Operation::PutItem, body.as_bytes(), &schemas());
        prop_assert_eq!(key.map(|k| k.value.into_owned()), Ok(value.clone().into_bytes()));
        let ascii_escaped = body
            .chars()
            .map(|c| if c.is_ascii() { c.to_string() } else {
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units).iter().map(|u| format!("\\u{u:04x}")).collect()
            })
            .collect::<String>();
        let key = item_key(Operation::PutItem, ascii_escaped.as_bytes(), &schemas());
        prop_assert_eq!(
            key.map(|k| k.affinity_hash()),
            Ok(affinity_hash(KeyType::S, value.as_bytes()))
        );
    }

    #[test]
    fn batch_keys_follow_the_body(values in prop::collection::vec("[a-z0-9]{0,8}", 1..30)) {
        let writes: Vec<serde_json::Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 0 {
                serde_json::json!({"PutRequest": {"Item": {"x": {"N": "1"}, "pk": {"S": v}}}})
            } else {
                serde_json::json!({"DeleteRequest": {"Key": {"pk": {"S": v}}}})
            })
            .collect();
        let body = serde_json::json!({"RequestItems": {"t": writes}}).to_string();
        match affinity_keys(AffinityMode::AnyWrite, Operation::BatchWriteItem, body.as_bytes(), &schemas()) {
            Ok(AffinityKeys::Batch { keys, skipped }) => {
                prop_assert_eq!(skipped, 0);
                let got: Vec<Vec<u8>> = keys.into_iter().map(|k| k.value.into_owned()).collect();
                let want: Vec<Vec<u8>> = values.iter().map(|v| v.clone().into_bytes()).collect();
                prop_assert_eq!(got, want);
            }
            other => prop_assert!(false, "expected a batch, got {:?}", other),
        }
    }

    #[test]
    fn seeded_order_is_a_permutation(seed in any::<i64>(), n in 0usize..300) {
        let mut out = Vec::new();
        seeded_order(seed, n, &mut out);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        prop_assert_eq!(seeded_first(seed, n), out.first().copied());
    }

    #[test]
    fn seeded_order_uses_gos_intn(seed in any::<i64>(), n in 2usize..40) {
        // Pick-and-remove on the plain generator, written the obvious way.
        let mut rng = GoRand::new(seed);
        let mut pool: Vec<usize> = (0..n).collect();
        let mut expected = Vec::new();
        while !pool.is_empty() {
            let i = rng.intn(pool.len() as i64).expect("positive bound") as usize;
            expected.push(pool.swap_remove(i));
        }
        let mut out = Vec::new();
        seeded_order(seed, n, &mut out);
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn vote_order_is_a_permutation_independent_of_write_order(
        hashes in prop::collection::vec(any::<i64>(), 1..30),
        n in 1usize..20,
        rotate in 0usize..30,
    ) {
        let mut scratch = AffinityScratch::default();
        let mut out = Vec::new();
        affinity_order(&AffinityTarget::Batch(hashes.clone()), n, &mut out, &mut scratch);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());

        let mut rotated = hashes.clone();
        let len = rotated.len();
        rotated.rotate_left(rotate % len);
        let mut again = Vec::new();
        affinity_order(&AffinityTarget::Batch(rotated), n, &mut again, &mut scratch);
        prop_assert_eq!(&again, &out);

        // The winner has the most votes.
        let mut votes = vec![0usize; n];
        for &h in &hashes {
            votes[seeded_first(h, n).expect("non-empty ring")] += 1;
        }
        prop_assert_eq!(votes[out[0]], *votes.iter().max().expect("non-empty"));
    }

    #[test]
    fn health_only_filters_the_affinity_order(
        health in prop::collection::vec(health_state(), 1..40),
        hashes in prop::collection::vec(any::<i64>(), 1..5),
        single in any::<bool>(),
    ) {
        let n = health.len();
        let table = cluster(n);
        let target = if single {
            AffinityTarget::Key(hashes[0])
        } else {
            AffinityTarget::Batch(hashes)
        };
        let mut scratch = AffinityScratch::default();
        let mut base = Vec::new();
        plan(&table, &target, &vec![HealthState::Active; n], n, &mut base, &mut scratch);
        let mut out = Vec::new();
        plan(&table, &target, &health, n, &mut out, &mut scratch);
        // Exactly the base order's active nodes, then its quarantined nodes; never a down one.
        let expected: Vec<usize> = [HealthState::Active, HealthState::Quarantined]
            .iter()
            .flat_map(|wanted| base.iter().copied().filter(|&i| health[i] == *wanted).collect::<Vec<_>>())
            .collect();
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn affinity_plans_equal_plan_select_over_the_full_order(
        health in prop::collection::vec(health_state(), 1..60),
        hash in any::<i64>(),
        votes in prop::collection::vec(any::<i64>(), 1..6),
        k in 0usize..8,
    ) {
        // The single-key plan stops drawing early; it must still be exactly what the crate's
        // final selection makes of the complete affinity order.
        let n = health.len();
        let table = cluster(n);
        let ring: Vec<usize> = table.tiers().next().expect("cluster tier").to_vec();
        let mut scratch = AffinityScratch::default();
        for target in [AffinityTarget::Key(hash), AffinityTarget::Batch(votes.clone())] {
            let mut positions = Vec::new();
            affinity_order(&target, n, &mut positions, &mut scratch);
            let order: Vec<usize> = positions.iter().map(|&p| ring[p]).collect();
            let mut expected = Vec::new();
            select(&order, &health, k, &mut expected);
            let mut out = Vec::new();
            plan(&table, &target, &health, k, &mut out, &mut scratch);
            prop_assert_eq!(out, expected);
        }
    }
}
