//! Partition-key hashing: the typed affinity hash of the official clients and the
//! Cassandra/Scylla token.
//!
//! Both are MurmurHash3 x64_128 with seed 0 keeping the first 64 bits, but they differ in one
//! detail that matters: the reference algorithm reads the 1–15 trailing bytes as unsigned,
//! while Cassandra's Java port (and therefore Scylla's partitioner) sign-extends them. The
//! affinity hash (`key-route-affinity.md`, vector `affinity-hash.tsv`) uses the reference
//! algorithm; the token (`murmur3-cassandra-tokens.tsv`) uses the Cassandra flavour. They
//! agree whenever no trailing byte has its high bit set, which is why mixing them up passes
//! ASCII-only tests and breaks on the first non-ASCII key.

/// The type of a DynamoDB partition-key value that affinity supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// String (`S`): hashed as its UTF-8 bytes.
    S,
    /// Number (`N`): hashed as the exact number text, never normalised (`42` ≠ `42.0`).
    N,
    /// Binary (`B`): hashed as the raw (base64-decoded) bytes.
    B,
}

impl KeyType {
    /// The prefix byte that makes values of different types hash differently.
    pub const fn prefix(self) -> u8 {
        match self {
            KeyType::S => 0x01,
            KeyType::N => 0x02,
            KeyType::B => 0x03,
        }
    }
}

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Incremental MurmurHash3 x64_128 (seed 0) over a sequence of byte slices, so the affinity
/// hash can prepend its type byte without copying the key into a new buffer.
struct Murmur3 {
    h1: u64,
    h2: u64,
    block: [u8; 16],
    filled: usize,
    len: u64,
    signed_tail: bool,
}

impl Murmur3 {
    fn new(signed_tail: bool) -> Self {
        Murmur3 {
            h1: 0,
            h2: 0,
            block: [0; 16],
            filled: 0,
            len: 0,
            signed_tail,
        }
    }

    #[inline]
    fn mix_block(&mut self, b: &[u8; 16]) {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        let mut k1 = u64::from_le_bytes(lo);
        let mut k2 = u64::from_le_bytes(hi);

        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        self.h1 ^= k1;
        self.h1 = self
            .h1
            .rotate_left(27)
            .wrapping_add(self.h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);

        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        self.h2 ^= k2;
        self.h2 = self
            .h2
            .rotate_left(31)
            .wrapping_add(self.h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.filled > 0 {
            let take = (16 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < 16 {
                return;
            }
            let block = self.block;
            self.mix_block(&block);
            self.filled = 0;
        }
        let mut chunks = data.chunks_exact(16);
        for chunk in &mut chunks {
            let mut block = [0u8; 16];
            block.copy_from_slice(chunk);
            self.mix_block(&block);
        }
        let rest = chunks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The 128-bit result as `(h1, h2)`.
    fn finish(mut self) -> (u64, u64) {
        let tail = &self.block[..self.filled];
        let signed = self.signed_tail;
        let byte = |i: usize| -> u64 {
            if signed {
                // Cassandra's port reads bytes as Java's signed `byte`.
                i64::from(tail[i] as i8) as u64
            } else {
                u64::from(tail[i])
            }
        };
        let mut k1: u64 = 0;
        let mut k2: u64 = 0;
        for i in (8..tail.len()).rev() {
            k2 ^= byte(i) << ((i - 8) * 8);
        }
        for i in (0..tail.len().min(8)).rev() {
            k1 ^= byte(i) << (i * 8);
        }
        if tail.len() > 8 {
            k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
            self.h2 ^= k2;
        }
        if !tail.is_empty() {
            k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
            self.h1 ^= k1;
        }

        self.h1 ^= self.len;
        self.h2 ^= self.len;
        self.h1 = self.h1.wrapping_add(self.h2);
        self.h2 = self.h2.wrapping_add(self.h1);
        self.h1 = fmix64(self.h1);
        self.h2 = fmix64(self.h2);
        self.h1 = self.h1.wrapping_add(self.h2);
        self.h2 = self.h2.wrapping_add(self.h1);
        (self.h1, self.h2)
    }
}

/// Reference MurmurHash3 x64_128 with seed 0 (trailing bytes read unsigned): the 128-bit
/// result as `(h1, h2)`, i.e. the first and second little-endian 64-bit halves of the digest.
pub fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    let mut m = Murmur3::new(false);
    m.update(data);
    m.finish()
}

/// The Scylla/Cassandra `Murmur3Partitioner` token of a serialized partition key: the
/// Cassandra flavour of MurmurHash3 x64_128 (seed 0, trailing bytes sign-extended), first 64
/// bits as `i64`.
///
/// `i64::MIN` is not a valid token (the partitioner reserves it as the ring's minimum), so it
/// is mapped to `i64::MAX` as Scylla does. Not the affinity hash: see the module docs.
pub fn murmur3_cassandra_token(data: &[u8]) -> i64 {
    let mut m = Murmur3::new(true);
    m.update(data);
    let token = m.finish().0 as i64;
    if token == i64::MIN {
        i64::MAX
    } else {
        token
    }
}

/// The affinity hash of a partition-key value (`key-route-affinity.md`): the type prefix byte
/// followed by the value bytes, reference MurmurHash3 x64_128 with seed 0, first 64 bits as a
/// signed integer. This is the seed of the key's seeded plan.
///
/// `value` is the UTF-8 text for `S`, the exact number text for `N` and the raw decoded bytes
/// for `B`.
pub fn affinity_hash(key_type: KeyType, value: &[u8]) -> i64 {
    let mut m = Murmur3::new(false);
    m.update(&[key_type.prefix()]);
    m.update(value);
    m.finish().0 as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_murmur3_matches_published_digests() {
        // Well-known MurmurHash3_x64_128 (seed 0) digests, as the 16 bytes the reference
        // implementation writes to its output buffer (h1 then h2, little-endian).
        let hex = |(h1, h2): (u64, u64)| {
            let mut s = String::new();
            for b in h1.to_le_bytes().iter().chain(h2.to_le_bytes().iter()) {
                s.push_str(&format!("{b:02x}"));
            }
            s
        };
        assert_eq!(
            hex(murmur3_x64_128(b"")),
            "00000000000000000000000000000000"
        );
        assert_eq!(
            hex(murmur3_x64_128(b"hello")),
            "029bbd41b3a7d8cb191dae486a901e5b"
        );
        assert_eq!(
            hex(murmur3_x64_128(
                b"The quick brown fox jumps over the lazy dog"
            )),
            "6c1b07bc7bbc4be347939ac4a93c437a"
        );
    }

    #[test]
    fn incremental_updates_equal_one_shot_hashing() {
        let data: Vec<u8> = (0u8..=255).cycle().take(300).collect();
        for split in [0, 1, 7, 15, 16, 17, 31, 32, 33, 150, 300] {
            for signed in [false, true] {
                let mut whole = Murmur3::new(signed);
                whole.update(&data);
                let mut parts = Murmur3::new(signed);
                parts.update(&data[..split]);
                parts.update(&data[split..]);
                assert_eq!(whole.finish(), parts.finish(), "split {split}");
            }
        }
    }

    #[test]
    fn flavours_differ_only_on_high_bit_tail_bytes() {
        let ascii = b"seventeen bytes!!";
        assert_eq!(
            murmur3_cassandra_token(ascii),
            murmur3_x64_128(ascii).0 as i64
        );
        let high = [0x80u8; 17];
        assert_ne!(
            murmur3_cassandra_token(&high),
            murmur3_x64_128(&high).0 as i64
        );
    }

    #[test]
    fn type_prefix_separates_equal_bytes_of_different_types() {
        let s = affinity_hash(KeyType::S, b"42");
        let n = affinity_hash(KeyType::N, b"42");
        let b = affinity_hash(KeyType::B, b"42");
        assert!(s != n && n != b && s != b);
        let mut prefixed = vec![KeyType::N.prefix()];
        prefixed.extend_from_slice(b"42");
        assert_eq!(n, murmur3_x64_128(&prefixed).0 as i64);
    }
}
