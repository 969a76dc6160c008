//! Tablet maps for the token tests: the even split ScyllaDB gives a new table and the tablet of
//! a token. Test support, not routing: the filter reads a table's tablets from the snapshot's
//! ring. Checked here against the power-of-two layout and by `spec_vectors_tokens.rs` against
//! the vectors `tablet-boundaries.tsv` and `token-to-tablet.tsv`.

/// The last tokens of `count` tablets of equal size, the split ScyllaDB gives a table it
/// creates with `count` tablets (empty for 0).
///
/// Tablet `i` (from 1) ends at `⌊i · (2^64 − 1) / count⌋` on the unsigned ring, shifted to
/// signed tokens by subtracting 2^63 (ScyllaDB's `dht::get_uniform_tokens`). For a power of two
/// `2^k` this is exactly the power-of-two layout older versions always used
/// (`dht::last_token_of_compaction_group`: `((i + 1) << (64 − k)) − 1`, the last one `2^64 −
/// 1`), so the tablet of a token is also its top `k` bits after the shift; the last tablet
/// always ends at `i64::MAX`. Allocates `count` tokens: build it once per tablet map, not per
/// request.
pub fn even_tablet_last_tokens(count: u32) -> Vec<i64> {
    let denominator = u128::from(count);
    (1..=count)
        .map(|i| {
            // 1 <= i <= count, so the quotient fits in u64 and denominator is never zero.
            let unsigned = (u128::from(i) * u128::from(u64::MAX)) / denominator;
            unbiased_to_token(unsigned as u64)
        })
        .collect()
}

/// A position on the unsigned ring (0 = the lowest token) as a signed token.
fn unbiased_to_token(n: u64) -> i64 {
    (n ^ (1 << 63)) as i64
}

/// The index of the tablet owning `token`: the first tablet whose last token is `>= token`,
/// found by binary search in `last_tokens`, which must be sorted ascending (even or uneven
/// split alike). A tablet map ends at `i64::MAX`, so every token has a tablet; for a list that
/// does not, a token after its last entry yields `last_tokens.len()`.
pub fn tablet_index(last_tokens: &[i64], token: i64) -> usize {
    last_tokens.partition_point(|&last| last < token)
}

mod tests {
    use super::*;

    /// `dht::last_token_of_compaction_group`, the power-of-two layout.
    fn pow2_last_token(log2: u32, index: u64) -> i64 {
        let n = if index + 1 == 1u64 << log2 {
            u64::MAX
        } else {
            ((index + 1) << (64 - log2)) - 1
        };
        unbiased_to_token(n)
    }

    #[test]
    fn even_split_equals_the_power_of_two_layout() {
        for log2 in 0..=16u32 {
            let count = 1u32 << log2;
            let last = even_tablet_last_tokens(count);
            assert_eq!(last.len(), count as usize);
            for (i, &token) in last.iter().enumerate() {
                assert_eq!(
                    token,
                    pow2_last_token(log2, i as u64),
                    "{count} tablets, #{i}"
                );
            }
        }
        assert_eq!(even_tablet_last_tokens(0), Vec::<i64>::new());
        assert_eq!(even_tablet_last_tokens(1), vec![i64::MAX]);
    }

    #[test]
    fn uneven_counts_split_evenly_and_end_at_the_maximum() {
        for count in [3u32, 5, 7, 12, 100, 1000] {
            let last = even_tablet_last_tokens(count);
            assert_eq!(last.len(), count as usize);
            assert_eq!(last.last(), Some(&i64::MAX));
            assert!(last.windows(2).all(|w| w[0] < w[1]));
            let width = u64::MAX / u64::from(count);
            for w in last.windows(2) {
                let size = w[1].abs_diff(w[0]);
                assert!(size.abs_diff(width) <= 1, "{count}: {size} vs {width}");
            }
        }
    }

    #[test]
    fn tablet_index_finds_the_first_last_token_not_below() {
        let last = [-10, 0, 10, i64::MAX];
        for (token, index) in [
            (i64::MIN, 0),
            (-11, 0),
            (-10, 0),
            (-9, 1),
            (0, 1),
            (1, 2),
            (10, 2),
            (11, 3),
            (i64::MAX, 3),
        ] {
            assert_eq!(tablet_index(&last, token), index, "{token}");
        }
        assert_eq!(tablet_index(&[], 5), 0);
        assert_eq!(tablet_index(&[0], 5), 1);
    }
}
