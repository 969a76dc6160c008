//! Token ownership, modelled the way ScyllaDB assigns it (data storage stays shared: only *who
//! owns what* is simulated).
//!
//! * The token of an item is Scylla's `Murmur3Partitioner` over the bytes Alternator stores in
//!   the hash-key column: UTF-8 for `S`, the decoded bytes for `B`, and the CQL `decimal`
//!   serialization of the number *as written* for `N` ([`decimal_bytes`]).
//! * A table uses either **vnodes** (every node owns `vnodes_per_node` tokens; the range
//!   `(previous token, token]` belongs to the token's node and the first range wraps around) or
//!   **tablets** (the table's own list of last tokens; tablet `i` covers
//!   `(last(i-1), last(i)]`, tablet 0 starts after `i64::MIN`).
//! * Replicas: per datacenter `min(rf, nodes in that dc)`, on distinct racks while there are
//!   racks left (NetworkTopologyStrategy-like for vnodes; a load-balanced choice for tablets).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::str::FromStr;

use alternator_routing::hash::{murmur3_cassandra_token, murmur3_x64_128};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SimError;

/// How a table's token ownership is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Vnodes,
    Tablets,
}

impl FromStr for Layout {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "vnodes" => Ok(Layout::Vnodes),
            "tablets" => Ok(Layout::Tablets),
            _ => Err(SimError::InvalidArgument(format!(
                "ring layout must be vnodes or tablets, got {s:?}"
            ))),
        }
    }
}

/// Where a new table's tablet boundaries fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TabletSplit {
    /// ScyllaDB's even split: tablet `i` of `n` ends at `i64::MIN + (i+1)·2⁶⁴/n − 1`.
    Even,
    /// Deterministic uneven boundaries (each inner boundary moved by up to a third of a
    /// tablet's width), as newer ScyllaDB versions produce after splits and merges.
    Uneven,
}

impl FromStr for TabletSplit {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "even" => Ok(TabletSplit::Even),
            "uneven" => Ok(TabletSplit::Uneven),
            _ => Err(SimError::InvalidArgument(format!(
                "tablet split must be even or uneven, got {s:?}"
            ))),
        }
    }
}

/// The ownership model of a sim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingConfig {
    /// Layout of tables created without a `system:initial_tablets` tag.
    pub layout: Layout,
    /// Tokens each node owns in the vnodes layout.
    pub vnodes_per_node: u32,
    /// Tablets of a new tablets table.
    pub tablets: u32,
    pub tablet_split: TabletSplit,
    /// Replicas per datacenter (capped by the datacenter's node count).
    pub replication_factor: u32,
    /// Seeds vnode tokens, host ids, table ids and uneven boundaries.
    pub seed: u64,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            layout: Layout::Tablets,
            vnodes_per_node: 16,
            tablets: 8,
            tablet_split: TabletSplit::Even,
            replication_factor: 3,
            seed: 0,
        }
    }
}

impl RingConfig {
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        if self.vnodes_per_node == 0 || self.vnodes_per_node > 4096 {
            return Err(SimError::InvalidArgument(format!(
                "vnodes per node must be between 1 and 4096, got {}",
                self.vnodes_per_node
            )));
        }
        if self.tablets == 0 || self.tablets > 65536 {
            return Err(SimError::InvalidArgument(format!(
                "tablets per table must be between 1 and 65536, got {}",
                self.tablets
            )));
        }
        if self.replication_factor == 0 || self.replication_factor > 16 {
            return Err(SimError::InvalidArgument(format!(
                "replication factor must be between 1 and 16, got {}",
                self.replication_factor
            )));
        }
        Ok(())
    }
}

// ---- tokens of keys ----

/// The CQL `decimal` serialization of a DynamoDB number exactly as written: 4-byte big-endian
/// signed scale, then the unscaled value as minimal two's-complement big-endian bytes. Not
/// normalised (`1e3`, `1000` and `1000.0` differ). `None` if the text is not a number.
pub fn decimal_bytes(text: &str) -> Option<Vec<u8>> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 12 || !all_digits(digits) {
                return None;
            }
            e.parse().ok()?
        }
    };
    let scale = i32::try_from(frac_part.len() as i64 - exponent).ok()?;
    // Unscaled magnitude, little-endian base 256 while it is being built.
    let mut magnitude: Vec<u8> = Vec::new();
    for d in int_part.bytes().chain(frac_part.bytes()) {
        let mut carry = u32::from(d - b'0');
        for byte in magnitude.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            magnitude.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    magnitude.reverse();
    let unscaled = if magnitude.is_empty() {
        vec![0]
    } else if !negative {
        if magnitude[0] & 0x80 != 0 {
            magnitude.insert(0, 0);
        }
        magnitude
    } else {
        // Two's complement: invert every bit, add one.
        let mut v: Vec<u8> = magnitude.iter().map(|b| !b).collect();
        for byte in v.iter_mut().rev() {
            let (sum, overflow) = byte.overflowing_add(1);
            *byte = sum;
            if !overflow {
                break;
            }
        }
        if v[0] & 0x80 == 0 {
            v.insert(0, 0xff);
        }
        v
    };
    let mut out = scale.to_be_bytes().to_vec();
    out.extend(unscaled);
    Some(out)
}

/// The bytes Alternator hashes for a hash-key AttributeValue (`{"S": ..}`, `{"N": ..}`,
/// `{"B": base64}`); `None` for other types or malformed values.
pub fn partition_key_bytes(av: &Value) -> Option<Vec<u8>> {
    let obj = av.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    let (ty, v) = obj.iter().next()?;
    let text = v.as_str()?;
    match ty.as_str() {
        "S" => Some(text.as_bytes().to_vec()),
        "B" => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        "N" => decimal_bytes(text),
        _ => None,
    }
}

/// The token of a hash-key AttributeValue.
pub fn key_token(av: &Value) -> Option<i64> {
    partition_key_bytes(av).map(|b| murmur3_cassandra_token(&b))
}

// ---- tablet boundaries ----

/// Last tokens of `n` evenly split tablets (ScyllaDB's layout for a power of two).
pub fn even_last_tokens(n: u32) -> Vec<i64> {
    let n = i128::from(n.max(1));
    let span: i128 = 1 << 64;
    (1..=n)
        .map(|i| (i128::from(i64::MIN) + i * span / n - 1) as i64)
        .collect()
}

/// Last tokens of `n` deterministically uneven tablets: every inner boundary of the even split
/// moved by a seeded amount of up to a third of a tablet's width.
pub fn uneven_last_tokens(n: u32, seed: u64) -> Vec<i64> {
    let even = even_last_tokens(n);
    let width = (1i128 << 64) / i128::from(n.max(1));
    even.iter()
        .enumerate()
        .map(|(i, &last)| {
            if i + 1 == even.len() {
                return last;
            }
            let h = hash_parts(seed, &[b"uneven", &(i as u64).to_le_bytes()]).0;
            let offset = (i128::from(h % 2001) - 1000) * (width / 3) / 1000;
            (i128::from(last) + offset) as i64
        })
        .collect()
}

/// Index of the tablet owning `token`: the first whose last token is `>= token`.
pub fn tablet_index(last_tokens: &[i64], token: i64) -> usize {
    last_tokens
        .partition_point(|&l| l < token)
        .min(last_tokens.len().saturating_sub(1))
}

// ---- identities ----

fn hash_parts(seed: u64, parts: &[&[u8]]) -> (u64, u64) {
    let mut data = seed.to_le_bytes().to_vec();
    for p in parts {
        data.extend_from_slice(&(p.len() as u32).to_le_bytes());
        data.extend_from_slice(p);
    }
    murmur3_x64_128(&data)
}

fn ip_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A version-4-looking UUID made from 128 hash bits, in lowercase text form.
fn uuid_text(h: (u64, u64)) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&h.0.to_be_bytes());
    b[8..].copy_from_slice(&h.1.to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A node's host id, stable for its address and the ring seed.
pub fn host_id(seed: u64, address: IpAddr) -> String {
    uuid_text(hash_parts(seed, &[b"host-id", &ip_bytes(address)]))
}

/// The id of the `n`-th table created in a sim (DescribeTable's `TableId`).
pub fn table_id(seed: u64, name: &str, n: u64) -> String {
    uuid_text(hash_parts(
        seed,
        &[b"table-id", name.as_bytes(), &n.to_le_bytes()],
    ))
}

/// The vnode tokens of a node: `count` distinct tokens drawn from its address and the seed.
pub fn vnode_tokens(seed: u64, address: IpAddr, count: u32) -> Vec<i64> {
    let mut out = BTreeSet::new();
    let mut k: u64 = 0;
    while out.len() < count as usize {
        let t = hash_parts(seed, &[b"vnode", &ip_bytes(address), &k.to_le_bytes()]).0 as i64;
        if t != i64::MIN {
            out.insert(t);
        }
        k += 1;
    }
    out.into_iter().collect()
}

/// The token of a UUID's 16 bytes (for the partition order of `system.tablets`).
pub(crate) fn uuid_token(text: &str) -> Option<i64> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(hex).ok().filter(|b| b.len() == 16)?;
    Some(murmur3_cassandra_token(&bytes))
}

pub(crate) fn ip_token(address: IpAddr) -> i64 {
    murmur3_cassandra_token(&ip_bytes(address))
}

pub(crate) fn text_token(text: &str) -> i64 {
    murmur3_cassandra_token(text.as_bytes())
}

// ---- ring state ----

/// A node that owns tokens.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub address: IpAddr,
    pub broadcast: IpAddr,
    pub datacenter: String,
    pub rack: String,
    pub host_id: String,
    tokens: Vec<i64>,
}

/// One token range with its replicas, as [`TableRing`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOwnership {
    /// Tablet index (tablets layout only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablet: Option<usize>,
    /// Exclusive start token. For the wrapping vnode range it is the ring's last token (and
    /// `end_token` the first); tablet 0 starts at `i64::MIN`.
    pub start_token: i64,
    /// Inclusive end token.
    pub end_token: i64,
    /// Replica node addresses (listen addresses), in placement order.
    pub replicas: Vec<IpAddr>,
    /// During a tablet migration: the replica set after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_replicas: Option<Vec<IpAddr>>,
    /// During a tablet migration: its stage (`write_both_read_old`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// Who owns what of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRing {
    pub table: String,
    pub table_id: String,
    /// `alternator_<table>`, as Alternator names a table's keyspace.
    pub keyspace: String,
    pub layout: Layout,
    pub replication_factor: u32,
    /// Vnodes: the wrapping range first, then by end token. Tablets: by tablet index.
    pub ranges: Vec<RangeOwnership>,
}

#[derive(Debug, Clone)]
pub(crate) struct Tablet {
    pub last_token: i64,
    pub replicas: Vec<IpAddr>,
    pub new_replicas: Option<Vec<IpAddr>>,
    pub stage: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Ownership {
    Vnodes,
    Tablets(Vec<Tablet>),
}

#[derive(Debug, Clone)]
pub(crate) struct TableEntry {
    pub name: String,
    pub table_id: String,
    pub ownership: Ownership,
    /// Global secondary index names (views in the table's keyspace).
    pub views: Vec<String>,
}

/// One vnode range `(start, end]` and its replicas.
#[derive(Debug, Clone)]
pub(crate) struct VnodeRange {
    pub start: i64,
    pub end: i64,
    pub replicas: Vec<IpAddr>,
}

/// Membership, vnode ranges and the ownership of every table.
#[derive(Debug)]
pub(crate) struct RingState {
    pub config: RingConfig,
    members: Vec<Member>,
    pub tables: BTreeMap<String, TableEntry>,
    /// Sorted by end token; element 0 is the wrapping range.
    pub vnode_ranges: Vec<VnodeRange>,
}

/// A ring action that cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("no table named {0:?}")]
    UnknownTable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

impl RingState {
    pub fn new(config: RingConfig) -> Self {
        RingState {
            config,
            members: Vec::new(),
            tables: BTreeMap::new(),
            vnode_ranges: Vec::new(),
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, address: IpAddr) -> Option<&Member> {
        self.members.iter().find(|m| m.address == address)
    }

    pub fn is_member(&self, address: IpAddr) -> bool {
        self.member(address).is_some()
    }

    /// Join a node: it takes its vnode tokens, and every tablets table moves some replicas
    /// onto it.
    pub fn add_member(&mut self, address: IpAddr, broadcast: IpAddr, dc: &str, rack: &str) {
        if self.is_member(address) {
            return;
        }
        let seed = self.config.seed;
        self.members.push(Member {
            address,
            broadcast,
            datacenter: dc.to_owned(),
            rack: rack.to_owned(),
            host_id: host_id(seed, address),
            tokens: vnode_tokens(seed, address, self.config.vnodes_per_node),
        });
        self.recompute_vnodes();
        let members = self.members.clone();
        let rf = self.config.replication_factor;
        for entry in self.tables.values_mut() {
            if let Ownership::Tablets(tablets) = &mut entry.ownership {
                grow_to_rf(tablets, &members, rf, dc);
                balance(tablets, &members, dc);
            }
        }
    }

    /// A node leaves the ring; its tablet replicas move to other nodes of its datacenter.
    pub fn remove_member(&mut self, address: IpAddr) {
        let Some(pos) = self.members.iter().position(|m| m.address == address) else {
            return;
        };
        let gone = self.members.remove(pos);
        self.recompute_vnodes();
        let members = self.members.clone();
        for entry in self.tables.values_mut() {
            if let Ownership::Tablets(tablets) = &mut entry.ownership {
                for t in tablets.iter_mut() {
                    if let Some(new) = t.new_replicas.take() {
                        // A migration in flight: settle on whichever set survives.
                        t.replicas = if new.contains(&address) {
                            std::mem::take(&mut t.replicas)
                        } else {
                            new
                        };
                        t.stage = None;
                    }
                }
                let load = tablet_load(tablets);
                for t in tablets.iter_mut() {
                    let Some(i) = t.replicas.iter().position(|r| *r == address) else {
                        continue;
                    };
                    match pick_replacement(&t.replicas, &members, &load, &gone.datacenter, None) {
                        Some(n) => t.replicas[i] = n,
                        None => {
                            t.replicas.remove(i);
                        }
                    }
                }
                balance(tablets, &members, &gone.datacenter);
            }
        }
    }

    fn recompute_vnodes(&mut self) {
        let mut ring: Vec<(i64, usize)> = self
            .members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.tokens.iter().map(move |t| (*t, i)))
            .collect();
        ring.sort();
        ring.dedup_by_key(|(t, _)| *t);
        let mut ranges = Vec::with_capacity(ring.len());
        for (k, (end, _)) in ring.iter().enumerate() {
            let start = if k == 0 {
                ring[ring.len() - 1].0
            } else {
                ring[k - 1].0
            };
            ranges.push(VnodeRange {
                start,
                end: *end,
                replicas: nts_replicas(&ring, k, &self.members, self.config.replication_factor),
            });
        }
        self.vnode_ranges = ranges;
    }

    /// Register a table created with CreateTable. `initial_tablets` is the
    /// `system:initial_tablets` tag: a number asks for tablets (0 = the default count), any
    /// other text for vnodes; absent follows the configured layout.
    pub fn create_table(
        &mut self,
        name: &str,
        table_id: &str,
        initial_tablets: Option<&str>,
        views: Vec<String>,
    ) {
        let tablets = match initial_tablets {
            None => (self.config.layout == Layout::Tablets).then_some(self.config.tablets),
            Some(tag) => match tag.trim().parse::<i64>() {
                Ok(n) if n <= 0 => Some(self.config.tablets),
                Ok(n) => Some(n.min(65536) as u32),
                Err(_) => None,
            },
        };
        let ownership = match tablets {
            None => Ownership::Vnodes,
            Some(n) => {
                let lasts = match self.config.tablet_split {
                    TabletSplit::Even => even_last_tokens(n),
                    TabletSplit::Uneven => uneven_last_tokens(n, self.config.seed),
                };
                let placement = place_tablets(
                    &self.members,
                    self.config.replication_factor,
                    hash_parts(self.config.seed, &[table_id.as_bytes()]).0,
                    lasts.len(),
                );
                Ownership::Tablets(
                    lasts
                        .into_iter()
                        .zip(placement)
                        .map(|(last_token, replicas)| Tablet {
                            last_token,
                            replicas,
                            new_replicas: None,
                            stage: None,
                        })
                        .collect(),
                )
            }
        };
        self.tables.insert(
            name.to_owned(),
            TableEntry {
                name: name.to_owned(),
                table_id: table_id.to_owned(),
                ownership,
                views,
            },
        );
    }

    pub fn drop_table(&mut self, name: &str) {
        self.tables.remove(name);
    }

    /// Whether `node` is a replica of `token` in `table` (`None`: table unknown).
    pub fn is_replica(&self, table: &str, token: i64, node: IpAddr) -> Option<bool> {
        let entry = self.tables.get(table)?;
        Some(match &entry.ownership {
            Ownership::Vnodes => {
                if self.vnode_ranges.is_empty() {
                    return Some(false);
                }
                let i = self.vnode_ranges.partition_point(|r| r.end < token);
                let i = if i == self.vnode_ranges.len() { 0 } else { i };
                self.vnode_ranges[i].replicas.contains(&node)
            }
            Ownership::Tablets(tablets) => {
                let i = tablets.partition_point(|t| t.last_token < token);
                let t = &tablets[i.min(tablets.len().saturating_sub(1))];
                t.replicas.contains(&node) || t.new_replicas.iter().flatten().any(|n| *n == node)
            }
        })
    }

    pub fn table_ring(&self, name: &str) -> Result<TableRing, RingError> {
        let entry = self
            .tables
            .get(name)
            .ok_or_else(|| RingError::UnknownTable(name.to_owned()))?;
        let (layout, ranges) = match &entry.ownership {
            Ownership::Vnodes => (
                Layout::Vnodes,
                self.vnode_ranges
                    .iter()
                    .map(|r| RangeOwnership {
                        tablet: None,
                        start_token: r.start,
                        end_token: r.end,
                        replicas: r.replicas.clone(),
                        new_replicas: None,
                        stage: None,
                    })
                    .collect(),
            ),
            Ownership::Tablets(tablets) => (
                Layout::Tablets,
                tablets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| RangeOwnership {
                        tablet: Some(i),
                        start_token: if i == 0 {
                            i64::MIN
                        } else {
                            tablets[i - 1].last_token
                        },
                        end_token: t.last_token,
                        replicas: t.replicas.clone(),
                        new_replicas: t.new_replicas.clone(),
                        stage: t.stage.clone(),
                    })
                    .collect(),
            ),
        };
        Ok(TableRing {
            table: entry.name.clone(),
            table_id: entry.table_id.clone(),
            keyspace: format!("alternator_{}", entry.name),
            layout,
            replication_factor: self.config.replication_factor,
            ranges,
        })
    }

    fn tablets_mut(&mut self, table: &str) -> Result<&mut Vec<Tablet>, RingError> {
        let entry = self
            .tables
            .get_mut(table)
            .ok_or_else(|| RingError::UnknownTable(table.to_owned()))?;
        match &mut entry.ownership {
            Ownership::Tablets(t) => Ok(t),
            Ownership::Vnodes => Err(RingError::Invalid(format!(
                "table {table:?} uses vnodes, not tablets"
            ))),
        }
    }

    /// Move tablet `index`'s replica from `from` to `to`: at once (`finish`), or left in the
    /// `write_both_read_old` stage with `new_replicas` until [`RingState::finish_migration`].
    pub fn move_tablet(
        &mut self,
        table: &str,
        index: usize,
        from: IpAddr,
        to: IpAddr,
        finish: bool,
    ) -> Result<(), RingError> {
        if !self.is_member(to) {
            return Err(RingError::Invalid(format!(
                "{to} is not a node of the ring"
            )));
        }
        let tablets = self.tablets_mut(table)?;
        let count = tablets.len();
        let t = tablets.get_mut(index).ok_or_else(|| {
            RingError::Invalid(format!(
                "table {table:?} has {count} tablets, no tablet {index}"
            ))
        })?;
        if t.new_replicas.is_some() {
            return Err(RingError::Conflict(format!(
                "tablet {index} of {table:?} is already migrating; finish it first"
            )));
        }
        let pos = t.replicas.iter().position(|r| *r == from).ok_or_else(|| {
            RingError::Invalid(format!("{from} is not a replica of tablet {index}"))
        })?;
        if t.replicas.contains(&to) {
            return Err(RingError::Invalid(format!(
                "{to} is already a replica of tablet {index}"
            )));
        }
        let mut new = t.replicas.clone();
        new[pos] = to;
        if finish {
            t.replicas = new;
        } else {
            t.new_replicas = Some(new);
            t.stage = Some("write_both_read_old".to_owned());
        }
        Ok(())
    }

    /// Complete a migration left in progress by [`RingState::move_tablet`].
    pub fn finish_migration(&mut self, table: &str, index: usize) -> Result<(), RingError> {
        let tablets = self.tablets_mut(table)?;
        let t = tablets
            .get_mut(index)
            .ok_or_else(|| RingError::Invalid(format!("no tablet {index} in {table:?}")))?;
        let new = t.new_replicas.take().ok_or_else(|| {
            RingError::Conflict(format!("tablet {index} of {table:?} is not migrating"))
        })?;
        t.replicas = new;
        t.stage = None;
        Ok(())
    }

    /// Double the table's tablet count: each tablet splits at its midpoint and both halves
    /// keep its replicas.
    pub fn split_tablets(&mut self, table: &str) -> Result<(), RingError> {
        let tablets = self.tablets_mut(table)?;
        if tablets.iter().any(|t| t.new_replicas.is_some()) {
            return Err(RingError::Conflict(format!(
                "table {table:?} has a migration in progress; finish it before splitting"
            )));
        }
        if tablets.len() * 2 > 65536 {
            return Err(RingError::Invalid("at most 65536 tablets per table".into()));
        }
        let mut out = Vec::with_capacity(tablets.len() * 2);
        let mut start = i128::from(i64::MIN);
        for t in tablets.iter() {
            let end = i128::from(t.last_token);
            let mid = (start + (end - start) / 2) as i64;
            if i128::from(mid) > start && mid < t.last_token {
                out.push(Tablet {
                    last_token: mid,
                    ..t.clone()
                });
            }
            out.push(t.clone());
            start = end;
        }
        *tablets = out;
        Ok(())
    }
}

/// Replicas of vnode range `k` (ending at `ring[k]`): walk clockwise, per datacenter take
/// nodes of racks not used yet, then (once every rack is used) the nodes skipped on the way.
fn nts_replicas(ring: &[(i64, usize)], k: usize, members: &[Member], rf: u32) -> Vec<IpAddr> {
    struct DcState {
        wanted: usize,
        racks: usize,
        seen_racks: BTreeSet<String>,
        chosen: Vec<usize>,
        skipped: Vec<usize>,
    }
    let mut dcs: BTreeMap<&str, DcState> = BTreeMap::new();
    for m in members {
        let nodes = members
            .iter()
            .filter(|o| o.datacenter == m.datacenter)
            .count();
        let racks: BTreeSet<&str> = members
            .iter()
            .filter(|o| o.datacenter == m.datacenter)
            .map(|o| o.rack.as_str())
            .collect();
        dcs.entry(m.datacenter.as_str()).or_insert(DcState {
            wanted: nodes.min(rf as usize),
            racks: racks.len(),
            seen_racks: BTreeSet::new(),
            chosen: Vec::new(),
            skipped: Vec::new(),
        });
    }
    let mut order = Vec::new();
    for step in 0..ring.len() {
        if dcs.values().all(|d| d.chosen.len() >= d.wanted) {
            break;
        }
        let node = ring[(k + step) % ring.len()].1;
        let m = &members[node];
        let Some(d) = dcs.get_mut(m.datacenter.as_str()) else {
            continue;
        };
        if d.chosen.len() >= d.wanted || d.chosen.contains(&node) || d.skipped.contains(&node) {
            continue;
        }
        if d.seen_racks.len() >= d.racks {
            d.chosen.push(node);
            order.push(node);
        } else if !d.seen_racks.contains(&m.rack) {
            d.seen_racks.insert(m.rack.clone());
            d.chosen.push(node);
            order.push(node);
            if d.seen_racks.len() >= d.racks {
                while d.chosen.len() < d.wanted && !d.skipped.is_empty() {
                    let s = d.skipped.remove(0);
                    d.chosen.push(s);
                    order.push(s);
                }
            }
        } else {
            d.skipped.push(node);
        }
    }
    order.into_iter().map(|i| members[i].address).collect()
}

fn tablet_load(tablets: &[Tablet]) -> HashMap<IpAddr, usize> {
    let mut load = HashMap::new();
    for t in tablets {
        for r in &t.replicas {
            *load.entry(*r).or_insert(0) += 1;
        }
    }
    load
}

/// The node of `dc` to add to a replica set: not in it, on a rack the set does not use if
/// possible, least loaded, ties broken by `tiebreak` (or the address).
fn pick_replacement(
    replicas: &[IpAddr],
    members: &[Member],
    load: &HashMap<IpAddr, usize>,
    dc: &str,
    tiebreak: Option<&dyn Fn(IpAddr) -> u64>,
) -> Option<IpAddr> {
    let used_racks: BTreeSet<&str> = members
        .iter()
        .filter(|m| m.datacenter == dc && replicas.contains(&m.address))
        .map(|m| m.rack.as_str())
        .collect();
    members
        .iter()
        .filter(|m| m.datacenter == dc && !replicas.contains(&m.address))
        .min_by_key(|m| {
            (
                used_racks.contains(m.rack.as_str()),
                load.get(&m.address).copied().unwrap_or(0),
                tiebreak.map_or(0, |f| f(m.address)),
                m.address,
            )
        })
        .map(|m| m.address)
}

/// Initial replicas of `count` tablets: per datacenter `min(rf, nodes)` nodes, distinct racks
/// first, spreading the load.
fn place_tablets(members: &[Member], rf: u32, table_seed: u64, count: usize) -> Vec<Vec<IpAddr>> {
    let dcs: BTreeSet<&str> = members.iter().map(|m| m.datacenter.as_str()).collect();
    let mut load: HashMap<IpAddr, usize> = HashMap::new();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut replicas = Vec::new();
        for dc in &dcs {
            let nodes = members.iter().filter(|m| m.datacenter == *dc).count();
            for _ in 0..nodes.min(rf as usize) {
                let tiebreak = |a: IpAddr| {
                    hash_parts(table_seed, &[&(i as u64).to_le_bytes(), &ip_bytes(a)]).0
                };
                if let Some(n) = pick_replacement(&replicas, members, &load, dc, Some(&tiebreak)) {
                    *load.entry(n).or_insert(0) += 1;
                    replicas.push(n);
                }
            }
        }
        out.push(replicas);
    }
    out
}

/// After a node joined `dc`: give tablets with fewer replicas there than `rf` allows more.
fn grow_to_rf(tablets: &mut [Tablet], members: &[Member], rf: u32, dc: &str) {
    let nodes = members.iter().filter(|m| m.datacenter == dc).count();
    let wanted = nodes.min(rf as usize);
    let in_dc: BTreeSet<IpAddr> = members
        .iter()
        .filter(|m| m.datacenter == dc)
        .map(|m| m.address)
        .collect();
    let mut load = tablet_load(tablets);
    for t in tablets.iter_mut() {
        while t.replicas.iter().filter(|r| in_dc.contains(r)).count() < wanted {
            match pick_replacement(&t.replicas, members, &load, dc, None) {
                Some(n) => {
                    *load.entry(n).or_insert(0) += 1;
                    t.replicas.push(n);
                }
                None => break,
            }
        }
    }
}

/// Even out the replica count of `dc`'s nodes: move replicas from the most to the least loaded
/// node while that keeps every tablet's racks distinct (or the racks were not distinct).
fn balance(tablets: &mut [Tablet], members: &[Member], dc: &str) {
    let rack_of: HashMap<IpAddr, &str> = members
        .iter()
        .map(|m| (m.address, m.rack.as_str()))
        .collect();
    let nodes: Vec<IpAddr> = members
        .iter()
        .filter(|m| m.datacenter == dc)
        .map(|m| m.address)
        .collect();
    if nodes.len() < 2 {
        return;
    }
    for _ in 0..tablets.len() * nodes.len() {
        let load = tablet_load(tablets);
        let l = |a: &IpAddr| load.get(a).copied().unwrap_or(0);
        let mut by_load = nodes.clone();
        by_load.sort_by_key(|a| (l(a), *a));
        let mut moved = false;
        'outer: for &to in &by_load {
            for &from in by_load.iter().rev() {
                if l(&from) <= l(&to) + 1 {
                    break;
                }
                for t in tablets.iter_mut() {
                    if t.new_replicas.is_some()
                        || !t.replicas.contains(&from)
                        || t.replicas.contains(&to)
                    {
                        continue;
                    }
                    let others: BTreeSet<&str> = t
                        .replicas
                        .iter()
                        .filter(|r| **r != from && nodes.contains(r))
                        .filter_map(|r| rack_of.get(r).copied())
                        .collect();
                    let to_rack = rack_of.get(&to).copied().unwrap_or("");
                    let from_rack = rack_of.get(&from).copied().unwrap_or("");
                    if others.contains(to_rack) && !others.contains(from_rack) {
                        continue;
                    }
                    if let Some(p) = t.replicas.iter().position(|r| *r == from) {
                        t.replicas[p] = to;
                        moved = true;
                        break 'outer;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
}
