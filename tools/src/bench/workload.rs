//! What the bench writes: record values that carry their own send time and
//! id, keys from a chosen distribution, and the order-independent checksum
//! that proves every acknowledged record was consumed.
//!
//! Value layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | send time, ns since the run's shared base `Instant` |
//! | 8..16 | record id: producer index in the top 24 bits, sequence below |
//! | 16.. | filler: uppercase letters, like kafka-producer-perf-test's payload |
//!
//! The consumer reads the send time back to compute end-to-end latency;
//! producers and consumers run in one process, so one `Instant` base is a
//! clock both sides share exactly.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

use crate::cli::KeyMode;

/// Offset of the send-time stamp in a value.
pub const STAMP_OFFSET: usize = 0;
/// Offset of the record id, right after the stamp.
pub const ID_OFFSET: usize = STAMP_OFFSET + size_of::<u64>();
/// Bytes of the stamp and id: the smallest value the bench can write.
pub const VALUE_HEADER_BYTES: usize = ID_OFFSET + size_of::<u64>();
/// Bits of a record id that hold the per-producer sequence number.
pub const ID_SEQUENCE_BITS: u32 = 40;
/// Extra random bytes in the filler pool, so consecutive values start the
/// filler at different places and do not compress into each other.
const FILLER_POOL_EXTRA_BYTES: usize = 4096;
/// Skew of `--keys zipf` (s = 1: the classic Zipf law).
pub const ZIPF_EXPONENT: f64 = 1.0;

/// Writes the stamp and id into the first [`VALUE_HEADER_BYTES`] of `value`.
pub fn stamp_value(value: &mut [u8], sent_nanos: u64, id: u64) {
    if let Some(stamp) = value.get_mut(STAMP_OFFSET..ID_OFFSET) {
        stamp.copy_from_slice(&sent_nanos.to_le_bytes());
    }
    if let Some(slot) = value.get_mut(ID_OFFSET..VALUE_HEADER_BYTES) {
        slot.copy_from_slice(&id.to_le_bytes());
    }
}

/// The send time a value carries, `None` if it is too short to be a bench
/// record.
pub fn read_stamp(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.get(STAMP_OFFSET..ID_OFFSET)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The id of a record: producer index and sequence number.
pub fn record_id(producer: usize, sequence: u64) -> u64 {
    ((producer as u64) << ID_SEQUENCE_BITS) | (sequence & ((1 << ID_SEQUENCE_BITS) - 1))
}

/// One record's contribution to a [`Checksum`]: its value's CRC32C (which
/// covers the id and stamp) spread over 64 bits with the length.
pub fn record_digest(value: &[u8]) -> u64 {
    splitmix64(u64::from(crc32c::crc32c(value)) ^ ((value.len() as u64) << 32))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Order-independent fingerprint of a set of records: count, wrapping sum
/// and XOR of their digests. A lost, duplicated or altered record changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    pub count: u64,
    pub sum: u64,
    pub xor: u64,
}

impl Checksum {
    pub fn add(&mut self, digest: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(digest);
        self.xor ^= digest;
    }

    pub fn merge(&mut self, other: &Checksum) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.xor ^= other.xor;
    }

    /// `sum:xor` in hex, as reports print it.
    pub fn hex(&self) -> String {
        format!("{:016x}:{:016x}", self.sum, self.xor)
    }
}

impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.hex())
    }
}

/// Builds bench values: a filler pool made once, sliced per record.
#[derive(Debug)]
pub struct Payload {
    pool: Vec<u8>,
    size: usize,
}

impl Payload {
    /// `size` must be at least [`VALUE_HEADER_BYTES`] (checked by the
    /// settings); smaller sizes get the header alone.
    pub fn new(size: usize, seed: u64) -> Payload {
        let mut rng = StdRng::seed_from_u64(seed);
        let filler = size.saturating_sub(VALUE_HEADER_BYTES) + FILLER_POOL_EXTRA_BYTES;
        let pool = (0..filler).map(|_| rng.random_range(b'A'..=b'Z')).collect();
        Payload {
            pool,
            size: size.max(VALUE_HEADER_BYTES),
        }
    }

    /// Fills `value` with record `sequence`'s filler (stamp and id are
    /// written separately, at send time).
    pub fn fill(&self, value: &mut Vec<u8>, sequence: u64) {
        let filler = self.size - VALUE_HEADER_BYTES;
        let start = usize::try_from(sequence.wrapping_mul(31) % FILLER_POOL_EXTRA_BYTES as u64)
            .unwrap_or(0);
        value.clear();
        value.resize(VALUE_HEADER_BYTES, 0);
        value.extend_from_slice(self.pool.get(start..start + filler).unwrap_or_default());
    }
}

/// Draws record keys.
#[derive(Debug)]
pub struct KeyGen {
    mode: KeyMode,
    key_count: u64,
    zipf: Option<Zipf<f64>>,
    rng: StdRng,
}

impl KeyGen {
    /// `key_count` ≥ 1 is checked by the settings.
    pub fn new(mode: KeyMode, key_count: u64, seed: u64) -> KeyGen {
        let zipf = match mode {
            KeyMode::Zipf => Zipf::new(key_count.max(1) as f64, ZIPF_EXPONENT).ok(),
            _ => None,
        };
        KeyGen {
            mode,
            key_count: key_count.max(1),
            zipf,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The next key (8 bytes, big-endian key number), `None` for keyless.
    pub fn next_key(&mut self) -> Option<[u8; 8]> {
        let n = match self.mode {
            KeyMode::None => return None,
            KeyMode::Uniform => self.rng.random_range(0..self.key_count),
            // Zipf samples ranks 1..=n as floats.
            KeyMode::Zipf => match &self.zipf {
                Some(z) => (z.sample(&mut self.rng) as u64).saturating_sub(1),
                None => 0,
            },
        };
        Some(n.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_and_id_round_trip_through_a_value() {
        let payload = Payload::new(64, 1);
        let mut value = Vec::new();
        payload.fill(&mut value, 7);
        stamp_value(&mut value, 123_456_789, record_id(3, 7));
        assert_eq!(value.len(), 64);
        assert_eq!(read_stamp(&value), Some(123_456_789));
        assert_eq!(
            value.get(ID_OFFSET..VALUE_HEADER_BYTES),
            Some(&record_id(3, 7).to_le_bytes()[..])
        );
        assert!(value[VALUE_HEADER_BYTES..]
            .iter()
            .all(u8::is_ascii_uppercase));
        assert_eq!(read_stamp(&[1, 2, 3]), None);
    }

    #[test]
    fn checksum_ignores_order_but_sees_loss_and_duplicates() {
        let digests: Vec<u64> = (0..100u64)
            .map(|i| record_digest(&i.to_le_bytes()))
            .collect();
        let mut forward = Checksum::default();
        digests.iter().for_each(|&d| forward.add(d));
        let mut backward = Checksum::default();
        digests.iter().rev().for_each(|&d| backward.add(d));
        assert_eq!(forward, backward);

        let mut missing = Checksum::default();
        digests.iter().skip(1).for_each(|&d| missing.add(d));
        assert_ne!(forward, missing);

        // One lost record replaced by a duplicate: same count, other sums.
        let mut duplicated = missing;
        duplicated.add(digests[5]);
        assert_eq!(duplicated.count, forward.count);
        assert_ne!(duplicated, forward);
    }

    #[test]
    fn zipf_keys_are_skewed_toward_low_ranks_and_in_range() {
        let mut keys = KeyGen::new(KeyMode::Zipf, 100, 9);
        let mut counts = [0u32; 100];
        for _ in 0..5_000 {
            let k = u64::from_be_bytes(keys.next_key().unwrap_or_default());
            assert!(k < 100);
            counts[k as usize] += 1;
        }
        // Zipf(1.0) over 100 keys gives rank 1 about 19% of draws.
        assert!(counts[0] > 600, "rank 1 drew {}", counts[0]);
        assert!(counts[0] > 5 * counts[50]);
        let mut none = KeyGen::new(KeyMode::None, 100, 9);
        assert_eq!(none.next_key(), None);
    }
}
