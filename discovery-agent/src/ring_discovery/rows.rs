//! Rows of Alternator's internal tables, as DynamoDB items, turned into ranges and addresses.
//!
//! Pure functions over `serde_json` values: no I/O, so every malformed shape is unit-tested
//! with canned answers. Alternator returns CQL values of types other than text, blob, decimal
//! and boolean as strings (`{"S": "<text form>"}`), so tokens, UUIDs and addresses arrive as
//! `S`; `N` is accepted for tokens too.

use std::collections::HashMap;
use std::net::IpAddr;

use alternator_routing::hash::KeyType;
use alternator_routing::ring::RangeOwners;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One row of an internal table: only the columns ring discovery reads, as the text of their
/// `S` (or `N`) value. Other columns are dropped while a page is parsed, so a page of a large
/// ring costs a few hundred bytes per row, not a JSON tree. A row that is not an object, or a
/// column of another shape, reads as missing (and the row is skipped, counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    table_name: Option<String>,
    start_token: Option<String>,
    end_token: Option<String>,
    endpoint: Option<String>,
    last_token: Option<String>,
    replicas: Option<String>,
    new_replicas: Option<String>,
    stage: Option<String>,
    peer: Option<String>,
    broadcast_address: Option<String>,
    rpc_address: Option<String>,
    host_id: Option<String>,
}

impl Item {
    /// Keeps the columns ring discovery reads from a DynamoDB item.
    pub fn from_value(value: Value) -> Self {
        let Value::Object(mut map) = value else {
            return Item::default();
        };
        let mut take = |name: &str| match map.remove(name) {
            Some(Value::Object(mut attribute)) => {
                match attribute.remove("S").or_else(|| attribute.remove("N")) {
                    Some(Value::String(text)) => Some(text),
                    _ => None,
                }
            }
            _ => None,
        };
        Item {
            table_name: take("table_name"),
            start_token: take("start_token"),
            end_token: take("end_token"),
            endpoint: take("endpoint"),
            last_token: take("last_token"),
            replicas: take("replicas"),
            new_replicas: take("new_replicas"),
            stage: take("stage"),
            peer: take("peer"),
            broadcast_address: take("broadcast_address"),
            rpc_address: take("rpc_address"),
            host_id: take("host_id"),
        }
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // One row's tree at a time, dropped at once.
        Value::deserialize(deserializer).map(Item::from_value)
    }
}

/// `table_name` of `system.token_ring` rows that describe a whole vnode keyspace.
pub const ALL_TABLES: &str = "<ALL>";

/// Why a row (or one replica of it) was left out; the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// A token that is not a 64-bit integer.
    BadToken,
    /// A required column is missing or not a string.
    MissingField,
    /// An endpoint (broadcast address) that neither `system.peers` nor `system.local` names.
    UnknownAddress,
    /// A host id that neither `system.peers` nor `system.local` names.
    UnknownHostId,
    /// A tablet's replica list without a single host id.
    BadReplicas,
}

impl SkipReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::BadToken => "bad_token",
            SkipReason::MissingField => "missing_field",
            SkipReason::UnknownAddress => "unknown_address",
            SkipReason::UnknownHostId => "unknown_host_id",
            SkipReason::BadReplicas => "bad_replicas",
        }
    }
}

/// Skipped rows and replicas by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped(pub Vec<(SkipReason, u64)>);

impl Skipped {
    fn add(&mut self, reason: SkipReason) {
        match self.0.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.0.push((reason, 1)),
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: Skipped) {
        for (reason, n) in other.0 {
            match self.0.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, m)) => *m += n,
                None => self.0.push((reason, n)),
            }
        }
    }

    /// Everything skipped.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// The text of column `name`, when the row has it.
pub fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    let column = match name {
        "table_name" => &item.table_name,
        "start_token" => &item.start_token,
        "end_token" => &item.end_token,
        "endpoint" => &item.endpoint,
        "last_token" => &item.last_token,
        "replicas" => &item.replicas,
        "new_replicas" => &item.new_replicas,
        "stage" => &item.stage,
        "peer" => &item.peer,
        "broadcast_address" => &item.broadcast_address,
        "rpc_address" => &item.rpc_address,
        "host_id" => &item.host_id,
        _ => &None,
    };
    column.as_deref()
}

fn token(item: &Item, name: &str) -> Result<i64, SkipReason> {
    let raw = text(item, name).ok_or(SkipReason::MissingField)?;
    raw.trim().parse().map_err(|_| SkipReason::BadToken)
}

/// Who is who: broadcast address and host id → the address `/localnodes` lists (the RPC
/// address, which may differ from the broadcast address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressBook {
    by_broadcast: HashMap<IpAddr, IpAddr>,
    by_host_id: HashMap<String, IpAddr>,
}

impl AddressBook {
    /// From the rows of `system.peers` (every other node) and `system.local` (the answering
    /// node) read from the same node. An RPC address that is missing, unparseable or unspecified
    /// (`0.0.0.0`) falls back to the broadcast address.
    pub fn from_rows(peers: &[Item], local: &[Item]) -> (Self, Skipped) {
        let mut book = AddressBook::default();
        let mut skipped = Skipped::default();
        let rows = peers
            .iter()
            .map(|r| (r, "peer"))
            .chain(local.iter().map(|r| (r, "broadcast_address")));
        for (row, broadcast_column) in rows {
            let broadcast = text(row, broadcast_column).and_then(|a| a.trim().parse().ok());
            let rpc = text(row, "rpc_address")
                .and_then(|a| a.trim().parse::<IpAddr>().ok())
                .filter(|a| !a.is_unspecified());
            let Some(address) = rpc.or(broadcast) else {
                skipped.add(SkipReason::MissingField);
                continue;
            };
            if let Some(broadcast) = broadcast {
                book.by_broadcast.insert(broadcast, address);
            }
            // The RPC address stands for itself too: a ring that names a node by it still maps.
            book.by_broadcast.entry(address).or_insert(address);
            if let Some(id) = text(row, "host_id").and_then(|t| uuids(t).into_iter().next()) {
                book.by_host_id.insert(id, address);
            }
        }
        (book, skipped)
    }

    /// The published address of a broadcast address.
    pub fn address(&self, broadcast: IpAddr) -> Option<IpAddr> {
        self.by_broadcast.get(&broadcast).copied()
    }

    /// The published address of a host id (any case).
    pub fn host(&self, host_id: &str) -> Option<IpAddr> {
        self.by_host_id.get(&host_id.to_ascii_lowercase()).copied()
    }

    /// How many nodes it knows by host id.
    pub fn len(&self) -> usize {
        self.by_host_id.len().max(self.by_broadcast.len())
    }

    /// Whether it knows nobody.
    pub fn is_empty(&self) -> bool {
        self.by_broadcast.is_empty() && self.by_host_id.is_empty()
    }
}

/// Ranges of `table` from its keyspace's `system.token_ring` rows: rows of `table` or of the
/// whole keyspace (`<ALL>`) only (the keyspace also holds index and CDC tables). Each row is one
/// replica of one range; a row with a bad token is skipped, an unknown endpoint only loses its
/// replica (the range still counts toward coverage).
pub fn token_ring_ranges(
    table: &str,
    rows: &[Item],
    book: &AddressBook,
) -> (Vec<RangeOwners>, Skipped) {
    let mut skipped = Skipped::default();
    let mut ranges = Vec::with_capacity(rows.len());
    for row in rows {
        match text(row, "table_name") {
            Some(name) if name == table || name == ALL_TABLES => {}
            Some(_) => continue,
            None => {
                skipped.add(SkipReason::MissingField);
                continue;
            }
        }
        let (start, end) = match (token(row, "start_token"), token(row, "end_token")) {
            (Ok(start), Ok(end)) => (start, end),
            (Err(reason), _) | (_, Err(reason)) => {
                skipped.add(reason);
                continue;
            }
        };
        let endpoint = text(row, "endpoint").and_then(|a| a.trim().parse::<IpAddr>().ok());
        let replicas = match endpoint.and_then(|e| book.address(e)) {
            Some(address) => vec![address],
            None => {
                skipped.add(if endpoint.is_some() {
                    SkipReason::UnknownAddress
                } else {
                    SkipReason::MissingField
                });
                Vec::new()
            }
        };
        ranges.push(RangeOwners {
            start,
            end,
            replicas,
        });
    }
    (ranges, skipped)
}

/// Tablet stages from which reads go to the new replicas (ScyllaDB's tablet transition
/// stages); before them, and when a migration is reverted, reads stay on the old ones.
const READ_NEW_STAGES: [&str; 4] = ["write_both_read_new", "use_new", "cleanup", "end_migration"];

/// Tablets from `system.tablets` rows: `(last_token, replicas)`. During a migration the
/// replicas that serve reads at that stage are published (`new_replicas` from
/// `write_both_read_new` on). A row with a bad token or no host id is skipped; an unknown host
/// id only loses its replica.
pub fn tablets(rows: &[Item], book: &AddressBook) -> (Vec<(i64, Vec<IpAddr>)>, Skipped) {
    let mut skipped = Skipped::default();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let last = match token(row, "last_token") {
            Ok(t) => t,
            Err(reason) => {
                skipped.add(reason);
                continue;
            }
        };
        let reads_new = text(row, "stage").is_some_and(|s| READ_NEW_STAGES.contains(&s.trim()));
        let column = match text(row, "new_replicas") {
            Some(new) if reads_new && !uuids(new).is_empty() => new,
            _ => match text(row, "replicas") {
                Some(current) => current,
                None => {
                    skipped.add(SkipReason::MissingField);
                    continue;
                }
            },
        };
        let ids = uuids(column);
        if ids.is_empty() {
            skipped.add(SkipReason::BadReplicas);
            continue;
        }
        let mut replicas = Vec::with_capacity(ids.len());
        for id in ids {
            match book.host(&id) {
                Some(address) if !replicas.contains(&address) => replicas.push(address),
                Some(_) => {}
                None => skipped.add(SkipReason::UnknownHostId),
            }
        }
        out.push((last, replicas));
    }
    (out, skipped)
}

/// Every UUID (`8-4-4-4-12` hex digits) in `text`, lowercase, in order. Reads
/// `"<uuid>:<shard>, <uuid>:<shard>"`, `[(uuid, 0), (uuid, 1)]` and similar alike.
pub fn uuids(text: &str) -> Vec<String> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    const LEN: usize = 36;
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + LEN <= bytes.len() {
        let candidate = &bytes[i..i + LEN];
        let mut pos = 0;
        let mut ok = true;
        for (g, width) in GROUPS.iter().enumerate() {
            if g > 0 {
                ok &= candidate[pos] == b'-';
                pos += 1;
            }
            ok &= candidate[pos..pos + width]
                .iter()
                .all(u8::is_ascii_hexdigit);
            pos += width;
        }
        // A UUID must not be glued to more hex digits on either side.
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_hexdigit();
        let after_ok = bytes.get(i + LEN).is_none_or(|b| !b.is_ascii_hexdigit());
        if ok && before_ok && after_ok {
            found.push(String::from_utf8_lossy(candidate).to_ascii_lowercase());
            i += LEN;
        } else {
            i += 1;
        }
    }
    found
}

/// A table's hash key from a DescribeTable answer's `Table`: the id, the HASH key's name and
/// its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// `TableId` (a UUID), when the node gave one.
    pub table_id: Option<String>,
    /// The HASH key attribute.
    pub hash_key: String,
    /// Its type.
    pub key_type: KeyType,
}

/// Reads `{"Table": {...}}`; `None` when the answer has no usable HASH key definition.
pub fn table_schema(answer: &Value) -> Option<TableSchema> {
    let table = answer.get("Table")?;
    let hash_key = table
        .get("KeySchema")?
        .as_array()?
        .iter()
        .find(|k| k.get("KeyType").and_then(Value::as_str) == Some("HASH"))?
        .get("AttributeName")?
        .as_str()?
        .to_owned();
    let key_type = table
        .get("AttributeDefinitions")?
        .as_array()?
        .iter()
        .find(|d| d.get("AttributeName").and_then(Value::as_str) == Some(hash_key.as_str()))?
        .get("AttributeType")?
        .as_str()?;
    let key_type = match key_type {
        "S" => KeyType::S,
        "N" => KeyType::N,
        "B" => KeyType::B,
        _ => return None,
    };
    let table_id = table
        .get("TableId")
        .and_then(Value::as_str)
        .and_then(|id| uuids(id).into_iter().next());
    Some(TableSchema {
        table_id,
        hash_key,
        key_type,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn item(value: Value) -> Item {
        Item::from_value(value)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    const H1: &str = "11111111-1111-4111-8111-111111111111";
    const H2: &str = "22222222-2222-4222-8222-222222222222";
    const H3: &str = "33333333-3333-4333-8333-333333333333";

    fn book() -> AddressBook {
        let peers = [
            item(
                json!({"peer": {"S": "10.1.0.2"}, "rpc_address": {"S": "10.0.0.2"},
                        "host_id": {"S": H2}, "data_center": {"S": "dc1"}}),
            ),
            // No RPC address: the broadcast address is published.
            item(json!({"peer": {"S": "10.0.0.3"}, "host_id": {"S": H3}})),
        ];
        let local = [item(
            json!({"broadcast_address": {"S": "10.1.0.1"}, "rpc_address": {"S": "10.0.0.1"},
                   "host_id": {"S": H1.to_uppercase()}}),
        )];
        AddressBook::from_rows(&peers, &local).0
    }

    #[test]
    fn address_book_maps_broadcast_and_host_ids_to_rpc_addresses() {
        let b = book();
        assert_eq!(b.address(ip("10.1.0.1")), Some(ip("10.0.0.1")));
        assert_eq!(b.address(ip("10.1.0.2")), Some(ip("10.0.0.2")));
        assert_eq!(b.address(ip("10.0.0.3")), Some(ip("10.0.0.3")));
        assert_eq!(b.address(ip("10.0.0.2")), Some(ip("10.0.0.2")));
        assert_eq!(b.address(ip("10.9.9.9")), None);
        assert_eq!(b.host(H1), Some(ip("10.0.0.1")));
        assert_eq!(b.host(&H2.to_uppercase()), Some(ip("10.0.0.2")));
        assert_eq!(b.host(H3), Some(ip("10.0.0.3")));
        let (_, skipped) = AddressBook::from_rows(&[item(json!({"host_id": {"S": H1}}))], &[]);
        assert_eq!(skipped.0, [(SkipReason::MissingField, 1)]);
    }

    #[test]
    fn uuids_are_found_in_any_replica_notation() {
        assert_eq!(uuids(&format!("{H1}:0, {H2}:3")), [H1, H2]);
        assert_eq!(
            uuids(&format!("[({}, 0), ({H2}, 1)]", H1.to_uppercase())),
            [H1, H2]
        );
        assert_eq!(uuids(&format!("{{{H3}:7}}")), [H3]);
        assert!(uuids("").is_empty());
        assert!(uuids("garbage: 1111-2222").is_empty());
        // Glued to more hex digits: not a UUID.
        assert!(uuids(&format!("a{H1}")).is_empty());
        assert!(uuids(&H1[..35]).is_empty());
    }

    #[test]
    fn token_ring_rows_keep_the_table_and_the_keyspace_only() {
        let rows: Vec<Item> = [
            json!({"table_name": {"S": "<ALL>"}, "start_token": {"S": "100"},
                   "end_token": {"S": "-100"}, "endpoint": {"S": "10.1.0.1"}}),
            json!({"table_name": {"S": "<ALL>"}, "start_token": {"N": "-100"},
                   "end_token": {"N": "100"}, "endpoint": {"S": "10.1.0.2"}}),
            json!({"table_name": {"S": "users:cdc"}, "start_token": {"S": "1"},
                   "end_token": {"S": "2"}, "endpoint": {"S": "10.1.0.2"}}),
            json!({"table_name": {"S": "<ALL>"}, "start_token": {"S": "ten"},
                   "end_token": {"S": "2"}, "endpoint": {"S": "10.1.0.2"}}),
            json!({"table_name": {"S": "<ALL>"}, "start_token": {"S": "-100"},
                   "end_token": {"S": "100"}, "endpoint": {"S": "10.9.9.9"}}),
            json!({"start_token": {"S": "-100"}, "end_token": {"S": "100"}}),
        ]
        .into_iter()
        .map(item)
        .collect();
        let (ranges, skipped) = token_ring_ranges("users", &rows, &book());
        assert_eq!(
            ranges,
            [
                RangeOwners {
                    start: 100,
                    end: -100,
                    replicas: vec![ip("10.0.0.1")]
                },
                RangeOwners {
                    start: -100,
                    end: 100,
                    replicas: vec![ip("10.0.0.2")]
                },
                RangeOwners {
                    start: -100,
                    end: 100,
                    replicas: vec![]
                },
            ]
        );
        let mut reasons = skipped.0.clone();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                (SkipReason::BadToken, 1),
                (SkipReason::MissingField, 1),
                (SkipReason::UnknownAddress, 1)
            ]
        );
    }

    #[test]
    fn tablets_follow_the_read_replicas_of_a_migration() {
        let rows: Vec<Item> = [
            json!({"last_token": {"S": "0"}, "replicas": {"S": format!("{H1}:0, {H2}:1")}}),
            json!({"last_token": {"S": "9223372036854775807"},
                   "replicas": {"S": format!("{H1}:0, {H2}:1")},
                   "new_replicas": {"S": format!("{H1}:0, {H3}:1")},
                   "stage": {"S": "streaming"}}),
        ]
        .into_iter()
        .map(item)
        .collect();
        let (t, skipped) = tablets(&rows, &book());
        assert_eq!(skipped.total(), 0);
        assert_eq!(t[0], (0, vec![ip("10.0.0.1"), ip("10.0.0.2")]));
        assert_eq!(t[1], (i64::MAX, vec![ip("10.0.0.1"), ip("10.0.0.2")]));

        let mut moved = rows.clone();
        moved[1].stage = Some("write_both_read_new".into());
        let (t, _) = tablets(&moved, &book());
        assert_eq!(t[1], (i64::MAX, vec![ip("10.0.0.1"), ip("10.0.0.3")]));
    }

    #[test]
    fn bad_tablet_rows_are_skipped_and_counted() {
        let unknown = "44444444-4444-4444-8444-444444444444";
        let rows: Vec<Item> = [
            json!({"last_token": {"S": "x"}, "replicas": {"S": format!("{H1}:0")}}),
            json!({"last_token": {"S": "5"}, "replicas": {"S": "nobody"}}),
            json!({"last_token": {"S": "6"}}),
            json!({"last_token": {"S": "7"}, "replicas": {"S": format!("{H1}:0, {unknown}:2")}}),
        ]
        .into_iter()
        .map(item)
        .collect();
        let (t, skipped) = tablets(&rows, &book());
        assert_eq!(t, [(7, vec![ip("10.0.0.1")])]);
        let mut reasons = skipped.0;
        reasons.sort();
        assert_eq!(
            reasons,
            [
                (SkipReason::BadToken, 1),
                (SkipReason::MissingField, 1),
                (SkipReason::UnknownHostId, 1),
                (SkipReason::BadReplicas, 1)
            ]
        );
    }

    #[test]
    fn rows_keep_only_the_columns_read_and_tolerate_odd_shapes() {
        let page: Vec<Item> = serde_json::from_str(
            r#"[{"last_token": {"N": "5"}, "replicas": {"S": "x"}, "tablet_count": {"S": "8"}},
                {"last_token": 5, "replicas": {"L": []}},
                "not a row", null]"#,
        )
        .unwrap();
        assert_eq!(text(&page[0], "last_token"), Some("5"));
        assert_eq!(text(&page[0], "replicas"), Some("x"));
        assert_eq!(text(&page[0], "tablet_count"), None);
        assert_eq!(page[1], Item::default());
        assert_eq!(page[2], Item::default());
        assert_eq!(page[3], Item::default());
    }

    #[test]
    fn describe_table_gives_id_hash_key_and_type() {
        let answer = json!({"Table": {
            "TableName": "users", "TableId": "AAAAAAAA-0000-4000-8000-000000000001",
            "KeySchema": [{"AttributeName": "sk", "KeyType": "RANGE"},
                          {"AttributeName": "id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "sk", "AttributeType": "S"},
                                     {"AttributeName": "id", "AttributeType": "N"}]}});
        assert_eq!(
            table_schema(&answer),
            Some(TableSchema {
                table_id: Some("aaaaaaaa-0000-4000-8000-000000000001".into()),
                hash_key: "id".into(),
                key_type: KeyType::N
            })
        );
        assert_eq!(table_schema(&json!({"Table": {}})), None);
        assert_eq!(table_schema(&json!([])), None);
    }
}
