//! Query plans: the ordered candidate nodes of one request (first choice, then retry targets).
//!
//! Planning has two layers, as the "Query plans" and "Node health" specs require:
//!
//! 1. a **base order** that never looks at health (a round-robin rotation, a random
//!    permutation, or the seeded key-affinity order of [`crate::affinity`]), so that a node
//!    going down never reshuffles the others;
//! 2. **final selection** ([`select`]) that applies health to the base order: `ACTIVE` nodes in
//!    base order, then `QUARANTINED` nodes in base order, `DOWN` nodes never.
//!
//! Scopes sit between the two. A [`RoutingTable`] splits the snapshot into disjoint *tiers*, one
//! per scope of the policy's chain, innermost first: with `Rack{dc1, r1}` and fallback, tier 0
//! is rack r1, tier 1 the rest of dc1, tier 2 every other node. A plan selects from tier 0
//! first and only then pads from the next tiers, so the first candidate comes from the innermost
//! scope that has an eligible node, and retries still have somewhere to go. A strict policy has
//! a single tier.
//!
//! The table is immutable and built once per snapshot; building a plan performs no allocation
//! when `out` already has capacity for `k` indices. Health is passed in as a slice indexed like
//! [`NodeSnapshot::nodes`], so the filter can overlay the health it observed itself on top of
//! the health the agent published ([`RoutingTable::published_health`]).

use std::net::IpAddr;

use crate::endpoint::host_port;
use crate::scope::ScopePolicy;
use crate::snapshot::{HealthState, NodeSnapshot};

/// Writes into `out` (after clearing it) at most `k` indices taken from `base_order`: first
/// every `ACTIVE` index in base order, then every `QUARANTINED` one in base order; `DOWN`
/// indices never.
///
/// `health` is indexed like the snapshot's nodes. Indices outside `health`, and repeats of an
/// index already written, are skipped, so a sloppy base order cannot produce an invalid plan.
/// This is the single place where health touches a plan: callers build any base order they
/// like (round robin, random, seeded affinity order) and pass it here. Does not allocate when
/// `out.capacity() >= k`.
pub fn select(base_order: &[usize], health: &[HealthState], k: usize, out: &mut Vec<usize>) {
    out.clear();
    append_selected(base_order.iter().copied(), health, k, out);
}

/// Like [`select`], but appends to `out` until it holds `k` indices in total, and takes any
/// re-iterable base order. Use it to chain tiers: earlier tiers fill `out` first.
pub fn append_selected<I>(base_order: I, health: &[HealthState], k: usize, out: &mut Vec<usize>)
where
    I: IntoIterator<Item = usize>,
    I::IntoIter: Clone,
{
    let order = base_order.into_iter();
    for wanted in [HealthState::Active, HealthState::Quarantined] {
        if out.len() >= k {
            return;
        }
        for index in order.clone() {
            if health.get(index) == Some(&wanted) && !out.contains(&index) {
                out.push(index);
                if out.len() >= k {
                    return;
                }
            }
        }
    }
}

const OUTSIDE_SCOPE: u8 = u8::MAX;

/// The routing view of one snapshot under one scope policy. Rebuild it when either changes.
///
/// Every plan method takes `health` indexed like the snapshot's nodes (the published health,
/// or the caller's overlay of it) and `k`, the number of candidates wanted; it clears `out` and
/// writes at most `k` node indices. Nodes beyond the end of `health` are never planned.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    snapshot: NodeSnapshot,
    policy: ScopePolicy,
    /// Disjoint node-index lists, one per scope of the policy's chain, innermost first, each in
    /// snapshot (canonical) order.
    tiers: Vec<Vec<usize>>,
    /// Per node index: the tier that holds it, or [`OUTSIDE_SCOPE`].
    tier_of: Vec<u8>,
    published_health: Vec<HealthState>,
    /// `ip:port` of every node, formatted once per table rather than once per request.
    override_hosts: Vec<String>,
}

impl RoutingTable {
    /// Splits `snapshot` into the tiers of `policy`.
    pub fn new(snapshot: NodeSnapshot, policy: ScopePolicy) -> Self {
        let nodes = snapshot.nodes();
        let mut assigned = vec![false; nodes.len()];
        let mut tiers = Vec::new();
        for scope in policy.chain() {
            let tier: Vec<usize> = (0..nodes.len())
                .filter(|&i| !assigned[i] && scope.contains(&nodes[i]))
                .collect();
            for &i in &tier {
                assigned[i] = true;
            }
            tiers.push(tier);
        }
        let mut tier_of = vec![OUTSIDE_SCOPE; nodes.len()];
        for (t, tier) in tiers.iter().enumerate() {
            let t = u8::try_from(t).unwrap_or(OUTSIDE_SCOPE);
            for &i in tier {
                if let Some(slot) = tier_of.get_mut(i) {
                    *slot = t;
                }
            }
        }
        let published_health = snapshot.health();
        let port = snapshot.port();
        let override_hosts = nodes.iter().map(|n| host_port(n.address, port)).collect();
        RoutingTable {
            snapshot,
            policy,
            tiers,
            tier_of,
            published_health,
            override_hosts,
        }
    }

    /// The scope tier (innermost = 0) that holds node `index`; `None` for a node outside the
    /// policy's scope, which no plan may use.
    pub fn tier_of(&self, index: usize) -> Option<usize> {
        self.tier_of
            .get(index)
            .filter(|&&t| t != OUTSIDE_SCOPE)
            .map(|&t| usize::from(t))
    }

    /// The snapshot plans index into.
    pub fn snapshot(&self) -> &NodeSnapshot {
        &self.snapshot
    }

    /// The scope policy the tiers were built from.
    pub fn policy(&self) -> &ScopePolicy {
        &self.policy
    }

    /// Node indices per scope tier, innermost first; tiers are disjoint and each is in snapshot
    /// order. A custom base order (such as the seeded affinity order) is built per tier and fed
    /// to [`append_selected`] tier by tier.
    pub fn tiers(&self) -> impl ExactSizeIterator<Item = &[usize]> + '_ {
        self.tiers.iter().map(Vec::as_slice)
    }

    /// Number of nodes any plan of this table can draw from (all tiers).
    pub fn routable_nodes(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }

    /// The health the agent published, indexed like the snapshot's nodes.
    pub fn published_health(&self) -> &[HealthState] {
        &self.published_health
    }

    /// A round-robin plan of at most `k` candidates into `out`.
    ///
    /// Each tier is rotated to start at `counter % tier length`, so successive counter values
    /// walk every node of the scope in turn. The caller owns the counter (per worker, random
    /// start) and increments it once per request.
    pub fn round_robin(
        &self,
        counter: u64,
        health: &[HealthState],
        k: usize,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        for tier in &self.tiers {
            if out.len() >= k {
                break;
            }
            if tier.is_empty() {
                continue;
            }
            let start = reduce(counter, tier.len());
            let rotation = tier[start..].iter().chain(&tier[..start]).copied();
            append_selected(rotation, health, k, out);
        }
    }

    /// A random plan of at most `k` candidates into `out`, from one caller-supplied random
    /// `u64`.
    ///
    /// Each tier is walked from a random start with a random stride coprime to its length,
    /// which visits every node exactly once without a scratch buffer; the first candidate is
    /// uniform over the tier.
    pub fn random(&self, random: u64, health: &[HealthState], k: usize, out: &mut Vec<usize>) {
        out.clear();
        let mut seed = random;
        for tier in &self.tiers {
            if out.len() >= k {
                break;
            }
            if tier.is_empty() {
                continue;
            }
            let n = tier.len();
            let a = splitmix64(&mut seed);
            let b = splitmix64(&mut seed);
            let walk = StrideWalk {
                tier,
                position: reduce(a, n),
                stride: coprime_stride(b, n),
                remaining: n,
            };
            append_selected(walk, health, k, out);
        }
    }

    /// Appends `ip:port[,ip:port]*` for `plan` to `out`: the value of the routing header that
    /// Envoy's `override_host` policy reads. Indices outside the snapshot are skipped.
    pub fn push_override_hosts(&self, plan: &[usize], out: &mut String) {
        let mut first = true;
        for host in plan.iter().filter_map(|&i| self.override_hosts.get(i)) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(host);
        }
    }

    /// `ip:port` of node `index`, as [`RoutingTable::push_override_hosts`] writes it and as
    /// Envoy reports the upstream that served a request.
    pub fn override_host(&self, index: usize) -> Option<&str> {
        self.override_hosts.get(index).map(String::as_str)
    }

    /// The address of node `index`.
    pub fn address(&self, index: usize) -> Option<IpAddr> {
        self.snapshot.nodes().get(index).map(|n| n.address)
    }
}

/// `value mod n` for a non-zero `n`, without truncating `value` on 32-bit targets.
pub(crate) fn reduce(value: u64, n: usize) -> usize {
    // n fits in u64 on every supported target, and the result is below n, so it fits back.
    (value % n as u64) as usize
}

/// A stride in `1..n` coprime with `n` (or 1 when `n <= 2`), so `position += stride (mod n)`
/// visits every index once.
fn coprime_stride(random: u64, n: usize) -> usize {
    if n <= 2 {
        return 1;
    }
    let mut stride = 1 + reduce(random, n - 1);
    while gcd(stride, n) != 1 {
        stride = if stride + 1 == n { 1 } else { stride + 1 };
    }
    stride
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// SplitMix64: expands the caller's one random word into independent words per tier. It is a
/// mixing function over caller-supplied entropy, not a randomness source of its own.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Visits `tier` from `position` in steps of `stride` (coprime with its length).
#[derive(Clone)]
struct StrideWalk<'a> {
    tier: &'a [usize],
    position: usize,
    stride: usize,
    remaining: usize,
}

impl Iterator for StrideWalk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let item = self.tier.get(self.position).copied();
        // position < n and stride < n, so the sum cannot overflow for any realistic n.
        self.position += self.stride;
        if self.position >= self.tier.len() {
            self.position -= self.tier.len();
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Scheme;
    use crate::scope::{Scope, ScopeMode};
    use crate::snapshot::Node;
    use HealthState::{Active as A, Down as D, Quarantined as Q};

    fn table(nodes: &[(&str, &str, &str, HealthState)], policy: ScopePolicy) -> RoutingTable {
        let nodes = nodes
            .iter()
            .map(|&(addr, dc, rack, health)| Node {
                address: addr.parse().unwrap(),
                datacenter: dc.into(),
                rack: rack.into(),
                health,
            })
            .collect();
        RoutingTable::new(NodeSnapshot::new(1, 0, Scheme::Http, 8000, nodes), policy)
    }

    fn rack_policy(mode: ScopeMode) -> ScopePolicy {
        ScopePolicy {
            scope: Scope::Rack {
                datacenter: "dc1".into(),
                rack: "r1".into(),
            },
            mode,
        }
    }

    #[test]
    fn select_orders_active_then_quarantined_and_drops_down() {
        let health = [Q, A, D, A, Q];
        let mut out = Vec::with_capacity(8);
        select(&[4, 3, 2, 1, 0], &health, 8, &mut out);
        assert_eq!(out, [3, 1, 4, 0]);
        select(&[4, 3, 2, 1, 0], &health, 1, &mut out);
        assert_eq!(out, [3]);
        select(&[7, 3, 3, 2], &health, 8, &mut out);
        assert_eq!(out, [3], "out-of-range and repeated indices are skipped");
        select(&[2], &health, 3, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn tiers_follow_the_scope_chain() {
        let nodes = [
            ("10.0.0.1", "dc1", "r1", A),
            ("10.0.0.2", "dc1", "r2", A),
            ("10.0.0.3", "dc2", "r1", A),
            ("10.0.0.4", "dc1", "r1", A),
        ];
        let t = table(&nodes, rack_policy(ScopeMode::Fallback));
        let tiers: Vec<&[usize]> = t.tiers().collect();
        assert_eq!(tiers, [&[0, 3][..], &[1], &[2]]);
        let strict = table(&nodes, rack_policy(ScopeMode::Strict));
        assert_eq!(strict.tiers().collect::<Vec<_>>(), [&[0, 3][..]]);
        assert_eq!(strict.routable_nodes(), 2);
    }

    #[test]
    fn round_robin_rotates_and_pads_from_wider_scopes() {
        let t = table(
            &[
                ("10.0.0.1", "dc1", "r1", A),
                ("10.0.0.2", "dc1", "r1", A),
                ("10.0.0.3", "dc1", "r2", A),
                ("10.0.0.4", "dc2", "r1", A),
            ],
            rack_policy(ScopeMode::Fallback),
        );
        let h = t.published_health().to_vec();
        let mut out = Vec::with_capacity(4);
        t.round_robin(0, &h, 4, &mut out);
        assert_eq!(out, [0, 1, 2, 3]);
        t.round_robin(1, &h, 4, &mut out);
        assert_eq!(out, [1, 0, 2, 3]);
        t.round_robin(1, &h, 1, &mut out);
        assert_eq!(out, [1]);
    }

    #[test]
    fn fallback_only_when_the_rack_has_no_eligible_node() {
        let t = table(
            &[
                ("10.0.0.1", "dc1", "r1", D),
                ("10.0.0.2", "dc1", "r1", Q),
                ("10.0.0.3", "dc1", "r2", A),
            ],
            rack_policy(ScopeMode::Fallback),
        );
        let mut out = Vec::with_capacity(3);
        t.round_robin(0, &[D, Q, A], 3, &mut out);
        assert_eq!(
            out,
            [1, 2],
            "a quarantined rack node still beats the wider scope"
        );
        t.round_robin(0, &[D, D, A], 3, &mut out);
        assert_eq!(out, [2]);
        t.random(12345, &[D, D, A], 3, &mut out);
        assert_eq!(out, [2]);
        let strict = table(
            &[("10.0.0.1", "dc1", "r1", D), ("10.0.0.3", "dc1", "r2", A)],
            rack_policy(ScopeMode::Strict),
        );
        strict.round_robin(0, strict.published_health(), 3, &mut out);
        assert!(out.is_empty(), "strict never leaves the rack");
    }

    #[test]
    fn stride_walk_is_a_permutation() {
        let tier: Vec<usize> = (100..112).collect();
        for r in 0..50u64 {
            let mut seed = r;
            let walk = StrideWalk {
                tier: &tier,
                position: reduce(splitmix64(&mut seed), tier.len()),
                stride: coprime_stride(splitmix64(&mut seed), tier.len()),
                remaining: tier.len(),
            };
            let mut seen: Vec<usize> = walk.collect();
            seen.sort_unstable();
            assert_eq!(seen, tier);
        }
    }

    #[test]
    fn override_hosts_header() {
        let t = table(
            &[("10.0.0.1", "d", "r", A), ("::1", "d", "r", A)],
            ScopePolicy::default(),
        );
        let mut header = String::new();
        t.push_override_hosts(&[1, 0, 9], &mut header);
        assert_eq!(header, "[::1]:8000,10.0.0.1:8000");
    }
}
