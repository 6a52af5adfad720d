//! Which partition a record goes to.
//!
//! Keyed records use Kafka's default partitioner exactly, so a key lands on
//! the same partition number as it would in Kafka (given the same partition
//! count): `(murmur2(key) & 0x7fffffff) % partitions`, where `murmur2` is
//! Kafka's 32-bit MurmurHash2 variant (seed `0x9747b28c`, little-endian
//! 4-byte blocks, signed result). Masking rather than `abs` keeps
//! `i32::MIN` from mapping to a negative number, as Kafka does.
//!
//! Keyless records are "sticky": the producer keeps sending them to one
//! partition until a batch's worth of bytes (`batch_size`) went there, then
//! moves to the next one round robin (Kafka's KIP-794 "uniform sticky"
//! partitioner). That fills whole batches instead of spreading single
//! records over every partition, and at light load lets records gather
//! while the partition's request is in flight. The sticky state lives with
//! the producer's buffers; this module only hashes.

/// Kafka's murmur2 seed.
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// MurmurHash2's mixing constant.
const MURMUR2_M: u32 = 0x5bd1_e995;
/// MurmurHash2's shift.
const MURMUR2_R: u32 = 24;
/// Clears the sign bit: Kafka's `toPositive`.
const POSITIVE_MASK: u32 = 0x7fff_ffff;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 of `data`, returned as the
/// signed value Java computes.
pub fn murmur2(data: &[u8]) -> i32 {
    let len = data.len();
    // Java hashes `length` as an int; truncation of lengths over 4 GiB
    // matches what Java would do with its own int arithmetic.
    let mut h: u32 = MURMUR2_SEED ^ (len as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> MURMUR2_R;
        k = k.wrapping_mul(MURMUR2_M);
        h = h.wrapping_mul(MURMUR2_M);
        h ^= k;
    }
    let tail = blocks.remainder();
    // Fall-through switch over the 1..=3 trailing bytes.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(MURMUR2_M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(MURMUR2_M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among
/// `partitions` partitions. `partitions` must be non-zero.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) as u32) & POSITIVE_MASK) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own test vectors (clients/.../utils/UtilsTest.java,
    /// `testMurmur2`) and Akka's, both checked against Kafka's Java code.
    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partition_masks_sign_bit_like_kafka() {
        // murmur2("foobar") = -790332482; Kafka's toPositive masks the sign
        // bit: 0x7fffffff & -790332482 = 1357151166, and 1357151166 % 8 = 6.
        // Taking abs instead would give 790332482 % 8 = 2.
        assert_eq!(partition_for_key(b"foobar", 8), 6);
        assert_eq!(partition_for_key(b"foobar", 1), 0);
    }

    #[test]
    fn partitions_are_in_range() {
        for n in 1..=16u32 {
            for i in 0..200u32 {
                assert!(partition_for_key(&i.to_le_bytes(), n) < n);
            }
        }
    }
}
