//! Token ownership: which nodes hold a replica of which token range, per table.
//!
//! ScyllaDB places each partition by its token (the Murmur3Partitioner hash of the partition
//! key, see [`crate::token`]) on a ring of ranges, each owned by a few replicas. A table either
//! shares its keyspace's vnode ring, whose ranges wrap around the largest token, or has its own
//! tablets, which split the token space `(i64::MIN, i64::MAX]` into contiguous ranges. The agent
//! learns the ranges through Alternator's internal tables and publishes them in the node
//! snapshot; readers look a token up by binary search over the ranges' end tokens.
//!
//! Two shapes of the same information:
//!
//! - [`TableOwnership`]: what the agent assembles from the rows it read. Replicas are
//!   addresses, and building one checks that the ranges cover the whole token space exactly
//!   once; a ring with a hole or an overlap is refused whole, so a reader never routes by half
//!   a ring.
//! - [`Ring`] / [`TableRing`]: what a snapshot carries. Replicas are indices into the
//!   snapshot's node list, stored flat so a lookup allocates nothing. Only a [`NodeSnapshot`]
//!   builds one, because the indices mean something only against its normalised node order.
//!
//! Stale ownership is never wrong, only slower: any Alternator node coordinates any key, so a
//! reader may use an old ring until a new one arrives.
//!
//! ## Wire form
//!
//! The snapshot's optional `ring` member (older readers ignore it):
//!
//! ```json
//! "ring": {"version": 4, "tables": [{"table": "users", "hash_key": "id", "key_type": "S",
//!   "layout": "tablets", "width": 3, "index_bytes": 1,
//!   "end_tokens": "<base64>", "replicas": "<base64>"}]}
//! ```
//!
//! `end_tokens` is the big-endian `i64` end token of every range, strictly ascending (range
//! `i` covers `(end[i-1], end[i]]`; range 0 also takes every token above the last end, which is
//! how a vnode ring wraps). `replicas` holds `width` node indices per range, each `index_bytes`
//! wide (1 when the node list has fewer than 255 nodes, else 2), big-endian, with the all-ones
//! value (`0xff` / `0xffff`) as padding where a range has fewer replicas than `width`. Binary
//! keeps a 1,024-tablet table under 16 KB of snapshot.
//!
//! [`NodeSnapshot`]: crate::NodeSnapshot

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::hash::KeyType;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Most replicas a range may list (a wider row is refused as malformed).
pub const MAX_WIDTH: usize = 32;

/// How a table's ranges come about in ScyllaDB; informational, lookups treat both alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The keyspace's vnode ring, shared by all its tables; the last range wraps around.
    Vnodes,
    /// Per-table tablets over `(i64::MIN, i64::MAX]`.
    Tablets,
}

/// Why a set of ranges or a published ring was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// No range at all.
    #[error("table {table}: no token ranges")]
    Empty {
        /// The table.
        table: String,
    },
    /// Two ranges claim the same end token with different starts, or overlap otherwise.
    #[error("table {table}: token ranges overlap at end token {end}")]
    Overlap {
        /// The table.
        table: String,
        /// The end token where the overlap shows.
        end: i64,
    },
    /// Some tokens belong to no range.
    #[error("table {table}: no range covers the tokens after {after} up to {until}")]
    Gap {
        /// The table.
        table: String,
        /// The gap starts after this token (exclusive).
        after: i64,
        /// The gap ends at this token (inclusive).
        until: i64,
    },
    /// A range lists more replicas than [`MAX_WIDTH`].
    #[error("table {table}: a range lists {count} replicas; at most {MAX_WIDTH} are accepted")]
    TooManyReplicas {
        /// The table.
        table: String,
        /// How many it listed.
        count: usize,
    },
    /// The published form does not decode.
    #[error("ring in the snapshot is malformed: {0}")]
    Malformed(String),
}

/// One range as read from the cluster: `(start, end]` and its replicas' addresses.
///
/// `start >= end` means the range wraps around the largest token (`(start, i64::MAX]` plus
/// `[i64::MIN, end]`); a ring of one vnode is the single range `(t, t]`, which covers every
/// token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeOwners {
    /// Exclusive start token.
    pub start: i64,
    /// Inclusive end token.
    pub end: i64,
    /// Replica addresses, in the order the cluster listed them.
    pub replicas: Vec<IpAddr>,
}

/// A table's complete, checked ownership with replicas as addresses (the agent's side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOwnership {
    table: String,
    hash_key: String,
    key_type: KeyType,
    layout: Layout,
    ends: Vec<i64>,
    replicas: Vec<Vec<IpAddr>>,
}

impl TableOwnership {
    /// Assembles a table's ownership from ranges in any order.
    ///
    /// Rows that repeat a range (one row per replica, as `system.token_ring` gives them) are
    /// merged, their replicas kept in first-seen order without repeats. The result must cover
    /// every token exactly once: sorted by end token, each range starts where the previous one
    /// ended, and the first range either starts at `i64::MIN` while the last ends at
    /// `i64::MAX`, or starts where the last one ends (the wrap-around of a vnode ring).
    pub fn from_ranges(
        table: &str,
        hash_key: &str,
        key_type: KeyType,
        layout: Layout,
        ranges: impl IntoIterator<Item = RangeOwners>,
    ) -> Result<Self, RingError> {
        let mut by_end: HashMap<i64, (i64, Vec<IpAddr>)> = HashMap::new();
        for range in ranges {
            let entry = by_end
                .entry(range.end)
                .or_insert_with(|| (range.start, Vec::new()));
            if entry.0 != range.start {
                return Err(RingError::Overlap {
                    table: table.to_owned(),
                    end: range.end,
                });
            }
            for address in range.replicas {
                if !entry.1.contains(&address) {
                    entry.1.push(address);
                }
            }
            if entry.1.len() > MAX_WIDTH {
                return Err(RingError::TooManyReplicas {
                    table: table.to_owned(),
                    count: entry.1.len(),
                });
            }
        }
        let mut sorted: Vec<(i64, i64, Vec<IpAddr>)> = by_end
            .into_iter()
            .map(|(end, (start, replicas))| (start, end, replicas))
            .collect();
        sorted.sort_by_key(|r| r.1);
        check_coverage(table, &sorted)?;
        Ok(TableOwnership {
            table: table.to_owned(),
            hash_key: hash_key.to_owned(),
            key_type,
            layout,
            ends: sorted.iter().map(|r| r.1).collect(),
            replicas: sorted.into_iter().map(|r| r.2).collect(),
        })
    }

    /// Tablets from their last tokens (tablet `i` covers `(last[i-1], last[i]]`, tablet 0
    /// starts after `i64::MIN`), in any order; the last one must end at `i64::MAX`.
    pub fn from_tablets(
        table: &str,
        hash_key: &str,
        key_type: KeyType,
        tablets: impl IntoIterator<Item = (i64, Vec<IpAddr>)>,
    ) -> Result<Self, RingError> {
        let mut tablets: Vec<(i64, Vec<IpAddr>)> = tablets.into_iter().collect();
        tablets.sort_by_key(|t| t.0);
        let mut start = i64::MIN;
        let ranges: Vec<RangeOwners> = tablets
            .into_iter()
            .map(|(end, replicas)| {
                let range = RangeOwners {
                    start,
                    end,
                    replicas,
                };
                start = end;
                range
            })
            .collect();
        Self::from_ranges(table, hash_key, key_type, Layout::Tablets, ranges)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The hash-key attribute's name.
    pub fn hash_key(&self) -> &str {
        &self.hash_key
    }

    /// The hash-key attribute's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Vnodes or tablets.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// How many ranges.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no ranges (never true for a built value).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The end tokens, ascending.
    pub fn ends(&self) -> &[i64] {
        &self.ends
    }

    /// The replicas of the range that holds `token`.
    pub fn replicas_of(&self, token: i64) -> &[IpAddr] {
        self.replicas
            .get(range_index(&self.ends, token))
            .map_or(&[], Vec::as_slice)
    }
}

fn check_coverage(table: &str, sorted: &[(i64, i64, Vec<IpAddr>)]) -> Result<(), RingError> {
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Err(RingError::Empty {
            table: table.to_owned(),
        });
    };
    for pair in sorted.windows(2) {
        if let [prev, next] = pair {
            if next.0 != prev.1 {
                return Err(if next.0 < prev.1 {
                    RingError::Overlap {
                        table: table.to_owned(),
                        end: next.1,
                    }
                } else {
                    RingError::Gap {
                        table: table.to_owned(),
                        after: prev.1,
                        until: next.0,
                    }
                });
            }
        }
    }
    let closed_span = first.0 == i64::MIN && last.1 == i64::MAX;
    let wraps = first.0 == last.1;
    if closed_span || wraps {
        return Ok(());
    }
    // The first range does not start where the ring closes. Only a wrapping first range that
    // starts before the last end overlaps; otherwise some tokens are nobody's.
    if first.0 >= first.1 && first.0 < last.1 {
        Err(RingError::Overlap {
            table: table.to_owned(),
            end: first.1,
        })
    } else {
        Err(RingError::Gap {
            table: table.to_owned(),
            after: last.1,
            until: first.0,
        })
    }
}

/// The range holding `token` among ranges with these ascending end tokens: the first whose
/// end is at least `token`, or range 0 when `token` is above every end (the wrap-around).
pub fn range_index(ends: &[i64], token: i64) -> usize {
    let i = ends.partition_point(|&end| end < token);
    if i == ends.len() {
        0
    } else {
        i
    }
}

/// A table's ownership as a snapshot carries it: replicas are indices into the snapshot's
/// node list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRing {
    table: String,
    hash_key: String,
    key_type: KeyType,
    layout: Layout,
    ends: Vec<i64>,
    width: usize,
    /// `width` entries per range; [`NO_NODE`] pads.
    replicas: Vec<u16>,
}

const NO_NODE: u16 = u16::MAX;

impl TableRing {
    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The hash-key attribute's name.
    pub fn hash_key(&self) -> &str {
        &self.hash_key
    }

    /// The hash-key attribute's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Vnodes or tablets.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// How many ranges.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no ranges (never true for a decoded ring).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The end tokens, ascending.
    pub fn ends(&self) -> &[i64] {
        &self.ends
    }

    /// The range holding `token`.
    pub fn range_of(&self, token: i64) -> usize {
        range_index(&self.ends, token)
    }

    /// The node indices of range `range`'s replicas, in the cluster's order; empty for a range
    /// out of bounds.
    pub fn replicas(&self, range: usize) -> impl Iterator<Item = usize> + '_ {
        let row = range
            .checked_mul(self.width)
            .and_then(|from| self.replicas.get(from..from.checked_add(self.width)?))
            .unwrap_or(&[]);
        row.iter()
            .filter(|&&i| i != NO_NODE)
            .map(|&i| usize::from(i))
    }

    /// The node indices of the replicas of `token`.
    pub fn replicas_of(&self, token: i64) -> impl Iterator<Item = usize> + '_ {
        self.replicas(self.range_of(token))
    }
}

/// Every table's ownership in one snapshot, with the version the agent gave this ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    version: u64,
    /// Sorted by table name.
    tables: Vec<TableRing>,
}

impl Ring {
    /// Translates the agent's ownership to node indices of `nodes` (the snapshot's normalised
    /// address order). Replicas that are not in `nodes` (a node of a datacenter the agent does
    /// not route to, or one it has not listed yet) are left out; a range may end up with none.
    /// For a table named twice, the first wins.
    pub(crate) fn from_ownership(
        version: u64,
        tables: &[TableOwnership],
        nodes: &[IpAddr],
    ) -> Self {
        let position: HashMap<IpAddr, u16> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                u16::try_from(i)
                    .ok()
                    .filter(|&i| i != NO_NODE)
                    .map(|i| (*a, i))
            })
            .collect();
        let mut out: Vec<TableRing> = Vec::with_capacity(tables.len());
        for t in tables {
            if out.iter().any(|o| o.table == t.table) {
                continue;
            }
            let rows: Vec<Vec<u16>> = t
                .replicas
                .iter()
                .map(|r| r.iter().filter_map(|a| position.get(a).copied()).collect())
                .collect();
            let width = rows.iter().map(Vec::len).max().unwrap_or(0);
            let mut replicas = Vec::with_capacity(rows.len() * width);
            for row in &rows {
                replicas.extend_from_slice(row);
                replicas.resize(replicas.len() + width - row.len(), NO_NODE);
            }
            out.push(TableRing {
                table: t.table.clone(),
                hash_key: t.hash_key.clone(),
                key_type: t.key_type,
                layout: t.layout,
                ends: t.ends.clone(),
                width,
                replicas,
            });
        }
        out.sort_by(|a, b| a.table.cmp(&b.table));
        Ring {
            version,
            tables: out,
        }
    }

    /// The agent's ring version: it increases whenever any table's ownership changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every table, sorted by name.
    pub fn tables(&self) -> &[TableRing] {
        &self.tables
    }

    /// The ring of table `name`.
    pub fn table(&self, name: &str) -> Option<&TableRing> {
        self.table_index(name).and_then(|i| self.tables.get(i))
    }

    /// The position of table `name` in [`Ring::tables`].
    pub fn table_index(&self, name: &str) -> Option<usize> {
        self.tables
            .binary_search_by(|t| t.table.as_str().cmp(name))
            .ok()
    }

    pub(crate) fn to_wire(&self, node_count: usize) -> RingWire {
        let index_bytes: u8 = if node_count < 255 { 1 } else { 2 };
        RingWire {
            version: self.version,
            tables: self
                .tables
                .iter()
                .map(|t| {
                    let mut ends = Vec::with_capacity(t.ends.len() * 8);
                    for end in &t.ends {
                        ends.extend_from_slice(&end.to_be_bytes());
                    }
                    let mut replicas = Vec::with_capacity(t.replicas.len() * 2);
                    for &r in &t.replicas {
                        if index_bytes == 1 {
                            replicas.push(if r == NO_NODE { 0xff } else { r as u8 });
                        } else {
                            replicas.extend_from_slice(&r.to_be_bytes());
                        }
                    }
                    TableWire {
                        table: t.table.clone(),
                        hash_key: t.hash_key.clone(),
                        key_type: KeyTypeWire::from(t.key_type),
                        layout: t.layout,
                        width: t.width,
                        index_bytes,
                        end_tokens: B64.encode(ends),
                        replicas: B64.encode(replicas),
                    }
                })
                .collect(),
        }
    }

    pub(crate) fn from_wire(wire: RingWire, node_count: usize) -> Result<Self, RingError> {
        let mut tables = Vec::with_capacity(wire.tables.len());
        for t in wire.tables {
            tables.push(decode_table(t, node_count)?);
        }
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        if tables.windows(2).any(|w| w[0].table == w[1].table) {
            return Err(RingError::Malformed("a table is listed twice".into()));
        }
        Ok(Ring {
            version: wire.version,
            tables,
        })
    }
}

fn decode_table(t: TableWire, node_count: usize) -> Result<TableRing, RingError> {
    let bad = |what: &str| RingError::Malformed(format!("table {}: {what}", t.table));
    let ends_bytes = B64
        .decode(&t.end_tokens)
        .map_err(|_| bad("end_tokens is not base64"))?;
    if ends_bytes.is_empty() || ends_bytes.len() % 8 != 0 {
        return Err(bad("end_tokens is not a non-empty list of 8-byte tokens"));
    }
    let ends: Vec<i64> = ends_bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            i64::from_be_bytes(b)
        })
        .collect();
    if ends.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("end_tokens are not strictly ascending"));
    }
    if t.width > MAX_WIDTH {
        return Err(bad("width is larger than 32"));
    }
    let index_bytes = usize::from(t.index_bytes);
    if index_bytes != 1 && index_bytes != 2 {
        return Err(bad("index_bytes is neither 1 nor 2"));
    }
    let raw = B64
        .decode(&t.replicas)
        .map_err(|_| bad("replicas is not base64"))?;
    if raw.len() != ends.len() * t.width * index_bytes {
        return Err(bad("replicas does not hold width indices per range"));
    }
    let mut replicas = Vec::with_capacity(ends.len() * t.width);
    for c in raw.chunks_exact(index_bytes) {
        let index = match c {
            [0xff] | [0xff, 0xff] => NO_NODE,
            [b] => u16::from(*b),
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            _ => NO_NODE,
        };
        if index != NO_NODE && usize::from(index) >= node_count {
            return Err(bad("a replica index is beyond the node list"));
        }
        replicas.push(index);
    }
    Ok(TableRing {
        key_type: t.key_type.into(),
        table: t.table,
        hash_key: t.hash_key,
        layout: t.layout,
        ends,
        width: t.width,
        replicas,
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RingWire {
    version: u64,
    tables: Vec<TableWire>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableWire {
    table: String,
    hash_key: String,
    key_type: KeyTypeWire,
    layout: Layout,
    width: usize,
    index_bytes: u8,
    end_tokens: String,
    replicas: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum KeyTypeWire {
    S,
    N,
    B,
}

impl From<KeyType> for KeyTypeWire {
    fn from(k: KeyType) -> Self {
        match k {
            KeyType::S => KeyTypeWire::S,
            KeyType::N => KeyTypeWire::N,
            KeyType::B => KeyTypeWire::B,
        }
    }
}

impl From<KeyTypeWire> for KeyType {
    fn from(k: KeyTypeWire) -> Self {
        match k {
            KeyTypeWire::S => KeyType::S,
            KeyTypeWire::N => KeyType::N,
            KeyTypeWire::B => KeyType::B,
        }
    }
}

#[cfg(test)]
#[path = "ring/tests.rs"]
mod tests;
