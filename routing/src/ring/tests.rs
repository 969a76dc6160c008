use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::endpoint::Scheme;
use crate::snapshot::{HealthState, Node, NodeSnapshot};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn range(start: i64, end: i64, replicas: &[u8]) -> RangeOwners {
    RangeOwners {
        start,
        end,
        replicas: replicas.iter().map(|&r| ip(r)).collect(),
    }
}

fn vnodes(ranges: Vec<RangeOwners>) -> Result<TableOwnership, RingError> {
    TableOwnership::from_ranges("t", "pk", KeyType::S, Layout::Vnodes, ranges)
}

fn snapshot(addresses: &[u8]) -> NodeSnapshot {
    let nodes = addresses
        .iter()
        .map(|&a| Node {
            address: ip(a),
            datacenter: "dc1".into(),
            rack: format!("r{}", a % 3),
            health: HealthState::Active,
        })
        .collect();
    NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes)
}

#[test]
fn tablets_cover_the_span_and_look_up_by_end_token() {
    let last = [-4611686018427387905, -1, 4611686018427387903, i64::MAX];
    let t = TableOwnership::from_tablets(
        "t",
        "pk",
        KeyType::S,
        last.iter()
            .enumerate()
            .map(|(i, &e)| (e, vec![ip(i as u8 + 1)])),
    )
    .unwrap();
    assert_eq!(t.ends(), &last);
    // Rows of token-to-tablet.tsv for four tablets.
    for (token, tablet) in [
        (-6017608668500074083, 0u8),
        (-9223372036854775807, 0),
        (i64::MAX, 3),
        (0, 2),
        (-1, 1),
    ] {
        assert_eq!(t.replicas_of(token), &[ip(tablet + 1)], "token {token}");
    }
}

#[test]
fn vnode_rows_merge_per_range_and_the_ring_wraps() {
    // One row per (range, replica), as system.token_ring lists them, in text order.
    let rows = vec![
        range(100, -50, &[1, 2]),
        range(-50, 0, &[2]),
        range(-50, 0, &[3]),
        range(0, 100, &[3, 1]),
        range(100, -50, &[2, 3]),
    ];
    let t = vnodes(rows).unwrap();
    assert_eq!(t.ends(), &[-50, 0, 100]);
    assert_eq!(t.replicas_of(-50), &[ip(1), ip(2), ip(3)]);
    assert_eq!(t.replicas_of(-49), &[ip(2), ip(3)]);
    assert_eq!(t.replicas_of(100), &[ip(3), ip(1)]);
    // Above the last end and below the first: the wrapping range.
    assert_eq!(t.replicas_of(101), &[ip(1), ip(2), ip(3)]);
    assert_eq!(t.replicas_of(i64::MIN), &[ip(1), ip(2), ip(3)]);
}

#[test]
fn a_single_vnode_owns_everything() {
    let t = vnodes(vec![range(7, 7, &[1])]).unwrap();
    for token in [i64::MIN, -1, 7, 8, i64::MAX] {
        assert_eq!(t.replicas_of(token), &[ip(1)]);
    }
}

#[test]
fn holes_and_overlaps_are_refused_whole() {
    assert!(matches!(vnodes(vec![]), Err(RingError::Empty { .. })));
    // (0, 10] then (20, 30]: nothing owns (10, 20].
    assert_eq!(
        vnodes(vec![
            range(30, 0, &[1]),
            range(0, 10, &[1]),
            range(20, 30, &[1])
        ]),
        Err(RingError::Gap {
            table: "t".into(),
            after: 10,
            until: 20
        })
    );
    // (0, 10] and (5, 20] overlap.
    assert!(matches!(
        vnodes(vec![
            range(20, 0, &[1]),
            range(0, 10, &[1]),
            range(5, 20, &[1])
        ]),
        Err(RingError::Overlap { .. })
    ));
    // The same end token with two different starts.
    assert!(matches!(
        vnodes(vec![range(0, 10, &[1]), range(5, 10, &[1])]),
        Err(RingError::Overlap { .. })
    ));
    // Tablets that stop short of the largest token leave the top uncovered.
    assert!(matches!(
        TableOwnership::from_tablets("t", "pk", KeyType::S, vec![(-1, vec![]), (5, vec![])]),
        Err(RingError::Gap { after: 5, .. })
    ));
    // A wrapping first range that starts before the last range ends.
    assert!(matches!(
        vnodes(vec![range(50, -10, &[1]), range(-10, 100, &[1])]),
        Err(RingError::Overlap { .. })
    ));
    // A wrapping first range that starts after the last one ends.
    assert!(matches!(
        vnodes(vec![range(150, -10, &[1]), range(-10, 100, &[1])]),
        Err(RingError::Gap {
            after: 100,
            until: 150,
            ..
        })
    ));
}

#[test]
fn too_many_replicas_in_a_range_is_refused() {
    let wide: Vec<u8> = (1..=33).collect();
    assert!(matches!(
        vnodes(vec![range(0, 0, &wide)]),
        Err(RingError::TooManyReplicas { count: 33, .. })
    ));
}

#[test]
fn the_snapshot_carries_replicas_as_indices_of_its_normalised_nodes() {
    let t = vnodes(vec![range(100, 0, &[9, 3]), range(0, 100, &[2, 7, 3])]).unwrap();
    // Given out of order; node 7 is not in the node list (another datacenter, say).
    let s = snapshot(&[9, 3, 2]).with_ring(5, &[t]);
    let ring = s.ring().unwrap();
    assert_eq!(ring.version(), 5);
    let table = ring.table("t").unwrap();
    let addresses = |token| -> Vec<IpAddr> {
        table
            .replicas_of(token)
            .map(|i| s.nodes()[i].address)
            .collect()
    };
    assert_eq!(addresses(0), vec![ip(9), ip(3)]);
    assert_eq!(addresses(50), vec![ip(2), ip(3)]);
    assert!(ring.table("other").is_none());

    let json = s.to_json();
    let back = NodeSnapshot::from_json(json.as_bytes()).unwrap();
    assert!(back.ring_rejected().is_none(), "{:?}", back.ring_rejected());
    assert_eq!(back.ring(), s.ring());
    assert!(back.content_equal(&s));
}

#[test]
fn large_node_lists_use_two_byte_indices() {
    let nodes: Vec<Node> = (0..300u32)
        .map(|i| Node {
            address: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            datacenter: String::new(),
            rack: String::new(),
            health: HealthState::Active,
        })
        .collect();
    let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 299));
    let t = vnodes(vec![RangeOwners {
        start: 3,
        end: 3,
        replicas: vec![last],
    }])
    .unwrap();
    let s = NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes).with_ring(1, &[t]);
    assert!(s.to_json().contains(r#""index_bytes":2"#));
    let back = NodeSnapshot::from_json(s.to_json().as_bytes()).unwrap();
    let table = back.ring().unwrap().table("t").unwrap();
    let replicas: Vec<usize> = table.replicas_of(0).collect();
    assert_eq!(replicas.len(), 1);
    assert_eq!(back.nodes()[replicas[0]].address, last);
}

#[test]
fn a_bad_ring_costs_the_ring_not_the_nodes() {
    let base = snapshot(&[1, 2]).to_json();
    let with = |ring: &str| {
        let doc = format!("{},\"ring\":{ring}}}", base.trim_end_matches('}'));
        NodeSnapshot::from_json(doc.as_bytes()).unwrap()
    };
    let table = |ends: &str, width: u8, replicas: &str| {
        format!(
            r#"{{"version":1,"tables":[{{"table":"t","hash_key":"pk","key_type":"S","layout":"vnodes","width":{width},"index_bytes":1,"end_tokens":"{ends}","replicas":"{replicas}"}}]}}"#
        )
    };
    let one_end = B64.encode(5i64.to_be_bytes());
    let descending = B64.encode([9i64.to_be_bytes(), 5i64.to_be_bytes()].concat());
    for (ring, why) in [
        ("5".to_owned(), "expected struct"),
        (table("!!", 1, "AA=="), "end_tokens is not base64"),
        (table("AAAA", 1, "AA=="), "8-byte tokens"),
        (table(&descending, 0, ""), "strictly ascending"),
        (table(&one_end, 1, "AAA="), "width indices"),
        (
            table(&one_end, 1, &B64.encode([2u8])),
            "beyond the node list",
        ),
        (table(&one_end, 40, ""), "larger than 32"),
    ] {
        let s = with(&ring);
        assert_eq!(s.nodes().len(), 2);
        assert!(s.ring().is_none());
        let error = s
            .ring_rejected()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(error.contains(why), "{ring}: {error}");
    }
    let ok = with(&table(&one_end, 1, &B64.encode([1u8])));
    assert!(ok.ring_rejected().is_none());
    assert_eq!(
        ok.ring()
            .unwrap()
            .table("t")
            .unwrap()
            .replicas_of(6)
            .count(),
        1
    );
    // A padded slot is no replica.
    let padded = with(&table(&one_end, 2, &B64.encode([0u8, 0xff])));
    assert_eq!(padded.ring().unwrap().tables()[0].replicas(0).count(), 1);
}

#[test]
fn a_1024_tablet_table_fits_the_budget() {
    let step = i128::from(u64::MAX / 1024);
    let tablets = (0..1024i64).map(|i| {
        let end = if i == 1023 {
            i64::MAX
        } else {
            (i128::from(i64::MIN) + i128::from(i + 1) * step) as i64
        };
        let replicas = (0..3).map(|r| ip(((i + r) % 6) as u8 + 1)).collect();
        (end, replicas)
    });
    let t = TableOwnership::from_tablets("usertable", "pk", KeyType::S, tablets).unwrap();
    let empty = snapshot(&[1, 2, 3, 4, 5, 6]);
    let with = empty.clone().with_ring(1, &[t]);
    let added = with.to_json().len() - empty.to_json().len();
    assert!(added <= 16 * 1024, "{added} bytes for 1,024 tablets");
}

fn sorted_ends() -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::btree_set(any::<i64>(), 1..64).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #[test]
    fn lookup_agrees_with_a_linear_scan(ends in sorted_ends(), token in any::<i64>()) {
        let linear = ends.iter().position(|&e| token <= e).unwrap_or(0);
        prop_assert_eq!(range_index(&ends, token), linear);
    }

    #[test]
    fn every_token_is_in_exactly_one_range(ends in sorted_ends(), token in any::<i64>()) {
        // Vnode reading: range i is (end[i-1], end[i]], range 0 wraps from the last end.
        let n = ends.len();
        let holders = (0..n)
            .filter(|&i| {
                let end = ends[i];
                let start = ends[(i + n - 1) % n];
                if n == 1 {
                    true
                } else if start < end {
                    start < token && token <= end
                } else {
                    token > start || token <= end
                }
            })
            .collect::<Vec<_>>();
        prop_assert_eq!(holders, vec![range_index(&ends, token)]);
    }

    #[test]
    fn ranges_built_from_ends_always_cover(ends in sorted_ends()) {
        let n = ends.len();
        let ranges = (0..n).map(|i| RangeOwners {
            start: ends[(i + n - 1) % n],
            end: ends[i],
            replicas: vec![ip(1)],
        });
        let t = vnodes(ranges.collect()).unwrap();
        prop_assert_eq!(t.ends(), ends.as_slice());
    }

    #[test]
    fn any_published_ring_decodes_or_is_refused(
        ends in proptest::collection::vec(any::<u8>(), 0..40),
        replicas in proptest::collection::vec(any::<u8>(), 0..10),
        width in 0usize..4,
    ) {
        let ring = format!(
            r#"{{"version":1,"tables":[{{"table":"t","hash_key":"k","key_type":"B","layout":"tablets","width":{width},"index_bytes":1,"end_tokens":"{}","replicas":"{}"}}]}}"#,
            B64.encode(&ends), B64.encode(&replicas)
        );
        let base = snapshot(&[1, 2, 3]).to_json();
        let doc = format!("{},\"ring\":{ring}}}", base.trim_end_matches('}'));
        let s = NodeSnapshot::from_json(doc.as_bytes()).unwrap();
        prop_assert_eq!(s.nodes().len(), 3);
        if let Some(r) = s.ring() {
            for t in r.tables() {
                for token in [i64::MIN, 0, i64::MAX] {
                    prop_assert!(t.replicas_of(token).all(|i| i < 3));
                }
            }
        }
    }
}
