//! Producer state: what a partition remembers of each idempotent producer,
//! so that a batch sent twice (a retry after a lost answer) is written once
//! and a batch sent out of order is refused.
//!
//! For every producer id the map keeps its epoch and its last
//! [`PRODUCER_BATCHES_KEPT`] batches (first and last sequence, offsets), as
//! Kafka's `ProducerStateManager` does: a producer keeps at most that many
//! requests in flight per partition, so any batch it may retry is among
//! them. [`ProducerStateMap::check`] decides what an arriving batch is:
//!
//! | batch | answer |
//! |---|---|
//! | not idempotent (`producer_id < 0`) | append |
//! | unknown id, sequence 0 | append (a new producer) |
//! | unknown id, other sequence | [`ProducerError::UnknownProducerId`] (the id expired or was evicted) |
//! | epoch older than the id's | [`ProducerError::InvalidProducerEpoch`] (fenced) |
//! | epoch newer, sequence 0 | append (a new epoch starts its sequences afresh) |
//! | epoch newer, other sequence | [`ProducerError::OutOfOrderSequence`] |
//! | same first and last sequence as a kept batch | duplicate: answered with that batch's offsets |
//! | next sequence after the last kept batch | append |
//! | wholly before the kept batches | [`ProducerError::DuplicateSequence`] (written long ago; offsets forgotten) |
//! | anything else (a gap, an overlap) | [`ProducerError::OutOfOrderSequence`] |
//!
//! The state is derived from the log alone — batch headers, never payloads —
//! so every copy of a log rebuilds the same state: [`ProducerStateMap::record`]
//! is both what an append does and what replay does. A snapshot of the map
//! (format below) lets an open replay only the batches after it.
//!
//! # Bounds
//! An id is forgotten once `expiration_ms` passed since its last batch
//! (Kafka's `producer.id.expiration.ms`): [`ProducerStateMap::check`]
//! treats such an id as unknown at once, and
//! [`ProducerStateMap::remove_expired`] frees it. "Since" is measured on
//! the broker's clock, never the producer's (whose clock may be off by
//! more than the expiration): live appends count at their append, a batch
//! replayed from the log at the replay (a restart may so extend an idle
//! producer's life by up to one expiration; it never shortens it). At most
//! `max_producers` ids are kept: recording
//! a new one beyond that evicts the least recently used. A forgotten
//! producer's next batch gets `UnknownProducerId` (unless it starts a
//! sequence), and its producer starts a new epoch.
//!
//! # Snapshot file
//! `<offset:020>.snapshot` in the partition directory holds the map as it
//! was with every batch below `offset` applied and none at or after it.
//! All integers little-endian:
//!
//! ```text
//! 0..4    magic             b"RPSN"
//! 4..8    crc               CRC32C of bytes 8..end
//! 8..10   version           u16 = 1
//! 10..12  reserved          u16 = 0
//! 12..20  offset            u64: the snapshot covers every batch below it
//! 20..24  producer_count    u32
//! 24..    producers, each:
//!           producer_id     i64 (>= 0)
//!           epoch           i16 (>= 0)
//!           batch_count     u8 (1..=5), oldest first
//!           reserved        u8 = 0
//!           last_timestamp  i64: ms when its newest batch was appended (expiry)
//!           batch_count x:
//!             first_seq          i32 (>= 0)
//!             last_seq           i32 (>= 0)
//!             base_offset        u64
//!             last_offset_delta  u32
//! ```
//! Producers are listed in ascending id order. The file must be exactly as
//! long as its counts say; anything else, or a CRC mismatch, rejects the
//! whole file.

use std::collections::{HashMap, VecDeque};

use rill_protocol::batch::{sequence_add, BatchHeader};

/// Batches remembered per producer: Kafka's `NUM_BATCHES_TO_RETAIN`, and
/// the most requests an idempotent producer keeps in flight per partition.
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// Default age after which an idle producer id is forgotten: 1 day, as
/// Kafka's `producer.id.expiration.ms`.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// Default most producer ids one partition remembers. At the cap a new id
/// evicts the least recently used one. An entry costs about 200 bytes, so
/// this bounds a partition's state near 2 MiB.
pub const PRODUCER_IDS_MAX_DEFAULT: usize = 10_000;

const SNAPSHOT_MAGIC: [u8; 4] = *b"RPSN";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_LEN: usize = 24;
const SNAPSHOT_PRODUCER_LEN: usize = 20;
const SNAPSHOT_BATCH_LEN: usize = 20;
/// Suffix of snapshot files: `<offset:020>.snapshot`.
pub const SNAPSHOT_SUFFIX: &str = "snapshot";

/// Half the sequence space: a batch whose sequences lie within this many
/// before the next expected one is taken as older (serial number
/// arithmetic, RFC 1982), anything further as a gap.
const SEQUENCE_HALF_SPACE: i64 = 1 << 30;

/// One batch a producer appended, as the map keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
    pub last_offset_delta: u32,
}

impl BatchMeta {
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first; never empty, at most [`PRODUCER_BATCHES_KEPT`].
    batches: VecDeque<BatchMeta>,
    /// When its newest batch was recorded, ms since the Unix epoch.
    last_timestamp: i64,
    /// Order of last use, for eviction at the cap (not persisted: a
    /// rebuilt map orders by replay, which is the same order).
    last_used: u64,
}

impl ProducerEntry {
    fn next_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| sequence_add(b.last_seq, 1))
    }
}

/// What to do with an arriving batch that passed the producer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Write it (not idempotent, or the next in its producer's sequence).
    Append,
    /// Already in the log: answer with these offsets, do not write it again.
    Duplicate(BatchMeta),
}

/// Why an idempotent batch is refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    #[error("out of order sequence from producer {producer_id} (epoch {epoch}): expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: sequences {first}..={last} were written long ago (older than its last {PRODUCER_BATCHES_KEPT} batches); not written again")]
    DuplicateSequence {
        producer_id: i64,
        first: i32,
        last: i32,
    },
    #[error(
        "producer {producer_id} epoch {epoch} is fenced: this partition has seen epoch {current}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("unknown producer id {producer_id} (expired or evicted) with sequence {sequence}: start a new epoch")]
    UnknownProducerId { producer_id: i64, sequence: i32 },
    #[error("idempotent batch of producer {producer_id} has a negative epoch ({epoch}) or sequence ({sequence})")]
    Malformed {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
    },
}

/// Why a snapshot file was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("too short ({0} bytes)")]
    Short(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("CRC mismatch")]
    Crc,
    #[error("unsupported version {0}")]
    Version(u16),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// The producer state of one partition. See the module docs.
#[derive(Debug, Clone)]
pub struct ProducerStateMap {
    entries: HashMap<i64, ProducerEntry>,
    max_producers: usize,
    expiration_ms: u64,
    use_counter: u64,
    evictions: u64,
    expirations: u64,
}

impl PartialEq for ProducerStateMap {
    /// Equal state: same producers, epochs, batches and timestamps (the
    /// recency order and the counters are bookkeeping, not state).
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().all(|(id, e)| {
                other.entries.get(id).is_some_and(|o| {
                    o.epoch == e.epoch
                        && o.batches == e.batches
                        && o.last_timestamp == e.last_timestamp
                })
            })
    }
}

impl ProducerStateMap {
    pub fn new(max_producers: usize, expiration_ms: u64) -> Self {
        ProducerStateMap {
            entries: HashMap::new(),
            max_producers: max_producers.max(1),
            expiration_ms,
            use_counter: 0,
            evictions: 0,
            expirations: 0,
        }
    }

    /// Producers remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ids evicted at the cap since this map was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Ids forgotten by expiry since this map was made.
    pub fn expirations(&self) -> u64 {
        self.expirations
    }

    /// Continues `previous`'s eviction and expiry counts (a rebuilt map
    /// replaces it; its own replay's evictions are not new ones).
    pub fn carry_counters(&mut self, previous: &ProducerStateMap) {
        self.evictions = previous.evictions;
        self.expirations = previous.expirations;
    }

    /// The epoch and kept batches of `producer_id`, oldest first.
    pub fn producer(&self, producer_id: i64) -> Option<(i16, Vec<BatchMeta>)> {
        self.entries
            .get(&producer_id)
            .map(|e| (e.epoch, e.batches.iter().copied().collect()))
    }

    fn is_expired(&self, entry: &ProducerEntry, now_ms: i64) -> bool {
        let limit = i64::try_from(self.expiration_ms).unwrap_or(i64::MAX);
        now_ms.saturating_sub(entry.last_timestamp) >= limit
    }

    /// Decides what to do with `header`'s batch arriving at `now_ms` (module
    /// docs). Changes nothing: [`Self::record`] the batch once it is given
    /// its offsets.
    pub fn check(&self, header: &BatchHeader, now_ms: i64) -> Result<Check, ProducerError> {
        if !header.is_idempotent() {
            return Ok(Check::Append);
        }
        let (producer_id, epoch, first) = (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        );
        if epoch < 0 || first < 0 {
            return Err(ProducerError::Malformed {
                producer_id,
                epoch,
                sequence: first,
            });
        }
        let last = header.last_sequence();
        let live = self
            .entries
            .get(&producer_id)
            .filter(|e| !self.is_expired(e, now_ms));
        let Some(entry) = live else {
            return if first == 0 {
                Ok(Check::Append)
            } else {
                Err(ProducerError::UnknownProducerId {
                    producer_id,
                    sequence: first,
                })
            };
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            return if first == 0 {
                Ok(Check::Append)
            } else {
                Err(ProducerError::OutOfOrderSequence {
                    producer_id,
                    epoch,
                    expected: 0,
                    got: first,
                })
            };
        }
        if let Some(kept) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Check::Duplicate(*kept));
        }
        let expected = entry.next_sequence().unwrap_or(0);
        if first == expected {
            return Ok(Check::Append);
        }
        let oldest = entry.batches.front().map_or(expected, |b| b.first_seq);
        if precedes(last, oldest) && precedes(first, expected) {
            return Err(ProducerError::DuplicateSequence {
                producer_id,
                first,
                last,
            });
        }
        Err(ProducerError::OutOfOrderSequence {
            producer_id,
            epoch,
            expected,
            got: first,
        })
    }

    /// Applies an appended batch whose first offset is `base_offset`,
    /// recorded at `now_ms` (the broker's clock): an append that
    /// [`Self::check`] allowed, or a batch replayed from the log (which is
    /// the truth, so replay does not check). Returns whether recording it
    /// evicted another producer at the cap.
    pub fn record(&mut self, header: &BatchHeader, base_offset: u64, now_ms: i64) -> bool {
        // A malformed one (which `check` refuses, but an old log may hold)
        // is skipped: a snapshot could not encode it.
        if !header.is_idempotent() || header.producer_epoch < 0 || header.base_sequence < 0 {
            return false;
        }
        self.use_counter += 1;
        let stale = self
            .entries
            .get(&header.producer_id)
            .is_some_and(|e| self.is_expired(e, now_ms));
        if stale {
            self.entries.remove(&header.producer_id);
            self.expirations += 1;
        }
        let meta = BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset,
            last_offset_delta: header.last_offset_delta,
        };
        let mut evicted = false;
        if !self.entries.contains_key(&header.producer_id)
            && self.entries.len() >= self.max_producers
        {
            evicted = self.evict_least_recent();
        }
        let entry = self
            .entries
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_KEPT),
                last_timestamp: now_ms,
                last_used: 0,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        entry.last_timestamp = now_ms;
        entry.last_used = self.use_counter;
        evicted
    }

    /// A linear scan: it runs only when a new producer arrives at the cap,
    /// and keeps every append free of any recency structure.
    fn evict_least_recent(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.entries.remove(&id)) {
            Some(_) => {
                self.evictions += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets producers whose last batch is `expiration_ms` old at
    /// `now_ms`; returns how many.
    pub fn remove_expired(&mut self, now_ms: i64) -> usize {
        let limit = i64::try_from(self.expiration_ms).unwrap_or(i64::MAX);
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < limit);
        let removed = before - self.entries.len();
        self.expirations += removed as u64;
        removed
    }

    /// This state as the log's batches below `offset` left it, as far as
    /// it can tell: each producer keeps its batches below `offset`, and a
    /// producer with none there is dropped (its batches from `offset` on
    /// give it back, in order, to whoever replays them). What a replica
    /// that restarts its log at `offset` is to start from.
    pub fn before(&self, offset: u64) -> ProducerStateMap {
        let mut state = self.clone();
        state.entries.retain(|_, e| {
            e.batches.retain(|b| b.base_offset < offset);
            !e.batches.is_empty()
        });
        state
    }

    /// The snapshot file's bytes for this state at `offset` (module docs).
    /// Producers are written in id order, so equal states give equal files.
    pub fn encode_snapshot(&self, offset: u64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.entries.keys().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_LEN
                + self.entries.len()
                    * (SNAPSHOT_PRODUCER_LEN + PRODUCER_BATCHES_KEPT * SNAPSHOT_BATCH_LEN),
        );
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        // The cap keeps the count far below u32::MAX.
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&e.epoch.to_le_bytes());
            // At most PRODUCER_BATCHES_KEPT.
            out.push(e.batches.len() as u8);
            out.push(0);
            out.extend_from_slice(&e.last_timestamp.to_le_bytes());
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_le_bytes());
                out.extend_from_slice(&b.last_seq.to_le_bytes());
                out.extend_from_slice(&b.base_offset.to_le_bytes());
                out.extend_from_slice(&b.last_offset_delta.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(out.get(8..).unwrap_or(&[]));
        if let Some(field) = out.get_mut(4..8) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Reads a snapshot file's bytes: the offset it covers, and the state,
    /// with `max_producers` and `expiration_ms` as given (a snapshot holding
    /// more producers than the cap keeps the most recently used).
    pub fn decode_snapshot(
        bytes: &[u8],
        max_producers: usize,
        expiration_ms: u64,
    ) -> Result<(u64, ProducerStateMap), SnapshotError> {
        let mut r = Reader { bytes, at: 0 };
        if bytes.len() < SNAPSHOT_HEADER_LEN {
            return Err(SnapshotError::Short(bytes.len()));
        }
        if r.take::<4>()? != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let crc = u32::from_le_bytes(r.take::<4>()?);
        if crc32c::crc32c(bytes.get(8..).unwrap_or(&[])) != crc {
            return Err(SnapshotError::Crc);
        }
        let version = u16::from_le_bytes(r.take::<2>()?);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(version));
        }
        let _reserved = r.take::<2>()?;
        let offset = u64::from_le_bytes(r.take::<8>()?);
        let count = u32::from_le_bytes(r.take::<4>()?) as usize;
        // Each producer takes at least one entry and one batch.
        if count
            > (bytes.len() - SNAPSHOT_HEADER_LEN) / (SNAPSHOT_PRODUCER_LEN + SNAPSHOT_BATCH_LEN)
        {
            return Err(SnapshotError::Malformed("producer count exceeds the file"));
        }
        let mut map = ProducerStateMap::new(max_producers, expiration_ms);
        let mut loaded: Vec<(i64, ProducerEntry)> = Vec::with_capacity(count);
        let mut previous = None;
        for _ in 0..count {
            let id = i64::from_le_bytes(r.take::<8>()?);
            // Ascending ids: one encoding per state, and no id twice.
            if previous.is_some_and(|p| id <= p) {
                return Err(SnapshotError::Malformed("producer ids not ascending"));
            }
            previous = Some(id);
            let epoch = i16::from_le_bytes(r.take::<2>()?);
            let [batch_count, _reserved] = r.take::<2>()?;
            let last_timestamp = i64::from_le_bytes(r.take::<8>()?);
            let batch_count = usize::from(batch_count);
            if id < 0 || epoch < 0 {
                return Err(SnapshotError::Malformed("negative producer id or epoch"));
            }
            if !(1..=PRODUCER_BATCHES_KEPT).contains(&batch_count) {
                return Err(SnapshotError::Malformed("batch count out of range"));
            }
            let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_KEPT);
            for _ in 0..batch_count {
                let first_seq = i32::from_le_bytes(r.take::<4>()?);
                let last_seq = i32::from_le_bytes(r.take::<4>()?);
                let base_offset = u64::from_le_bytes(r.take::<8>()?);
                let last_offset_delta = u32::from_le_bytes(r.take::<4>()?);
                if first_seq < 0 || last_seq < 0 {
                    return Err(SnapshotError::Malformed("negative sequence"));
                }
                if base_offset
                    .checked_add(u64::from(last_offset_delta))
                    .is_none()
                    || base_offset + u64::from(last_offset_delta) >= offset
                {
                    return Err(SnapshotError::Malformed(
                        "batch at or past the snapshot offset",
                    ));
                }
                batches.push_back(BatchMeta {
                    first_seq,
                    last_seq,
                    base_offset,
                    last_offset_delta,
                });
            }
            loaded.push((
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                    last_used: 0,
                },
            ));
        }
        if r.at != bytes.len() {
            return Err(SnapshotError::Malformed("bytes after the last producer"));
        }
        // Recency follows the offsets of the newest batches: what a replay
        // of the same log would have given.
        loaded.sort_by_key(|(_, e)| e.batches.back().map_or(0, |b| b.base_offset));
        for (id, mut entry) in loaded {
            if map.entries.len() >= map.max_producers {
                map.evict_least_recent();
            }
            map.use_counter += 1;
            entry.last_used = map.use_counter;
            map.entries.insert(id, entry);
        }
        Ok((offset, map))
    }
}

/// Whether sequence `a` comes before `b` within half the sequence space.
fn precedes(a: i32, b: i32) -> bool {
    let space = i64::from(i32::MAX) + 1;
    let distance = (i64::from(b) - i64::from(a)).rem_euclid(space);
    distance > 0 && distance <= SEQUENCE_HALF_SPACE
}

/// Bounds-checked little-endian reads over a snapshot's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let chunk = self
            .bytes
            .get(self.at..self.at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(SnapshotError::Malformed("truncated"))?;
        self.at += N;
        Ok(chunk)
    }
}

/// The name of the snapshot file covering everything below `offset`.
pub fn snapshot_file_name(offset: u64) -> String {
    format!("{offset:020}.{SNAPSHOT_SUFFIX}")
}

/// The offset a snapshot file name stands for, if it is one.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?.strip_suffix('.')?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: u32, ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            leader_epoch: 0,
            magic: rill_protocol::batch::header::MAGIC,
            crc: 0,
            format_version: 1,
            codec: rill_protocol::Compression::None,
            header_length: 72,
            attributes: 0,
            producer_epoch: epoch,
            record_count: records,
            last_offset_delta: records - 1,
            first_timestamp: ts,
            max_timestamp: ts,
            producer_id: pid,
            base_sequence: seq,
            payload_length: 28,
        }
    }

    #[test]
    fn precedes_wraps() {
        assert!(precedes(1, 2));
        assert!(!precedes(2, 2));
        assert!(!precedes(3, 2));
        assert!(precedes(i32::MAX, 0));
        assert!(!precedes(0, i32::MAX));
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let mut map = ProducerStateMap::new(100, 1000);
        map.record(&header(1, 0, 0, 3, 10), 0, 10);
        map.record(&header(1, 0, 3, 2, 11), 3, 11);
        map.record(&header(9, 4, 0, 1, 12), 5, 12);
        let bytes = map.encode_snapshot(6);
        let (offset, back) = ProducerStateMap::decode_snapshot(&bytes, 100, 1000).expect("decodes");
        assert_eq!(offset, 6);
        assert_eq!(back, map);
        for cut in 0..bytes.len() {
            assert!(ProducerStateMap::decode_snapshot(&bytes[..cut], 100, 1000).is_err());
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                ProducerStateMap::decode_snapshot(&bad, 100, 1000).is_err(),
                "flip at {i} accepted"
            );
        }
        // A snapshot whose batches reach its own offset lies about it.
        assert!(ProducerStateMap::decode_snapshot(&map.encode_snapshot(5), 100, 1000).is_err());
    }

    #[test]
    fn before_keeps_what_the_batches_below_the_offset_left() {
        let mut map = ProducerStateMap::new(100, 1000);
        map.record(&header(1, 0, 0, 3, 10), 0, 10);
        map.record(&header(1, 0, 3, 2, 11), 3, 11);
        map.record(&header(9, 4, 0, 1, 12), 5, 12);
        let cut = map.before(3);
        // Producer 1 keeps its first batch only; producer 9 had none below.
        assert_eq!(cut.len(), 1);
        let (epoch, batches) = cut.producer(1).expect("producer 1");
        assert_eq!(epoch, 0);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].base_offset, 0);
        assert!(cut.producer(9).is_none());
        // Replaying the batches from the offset on gives the whole state.
        let mut replayed = cut.clone();
        replayed.record(&header(1, 0, 3, 2, 11), 3, 11);
        replayed.record(&header(9, 4, 0, 1, 12), 5, 12);
        let mut whole = map.clone();
        // Timestamps aside (`before` keeps the newest), the same state.
        whole.record(&header(1, 0, 5, 1, 13), 6, 13);
        replayed.record(&header(1, 0, 5, 1, 13), 6, 13);
        assert_eq!(replayed, whole);
        // Nothing below the first batch: nobody.
        assert!(map.before(0).is_empty());
        assert_eq!(map.before(6), map);
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(snapshot_file_name(42), "00000000000000000042.snapshot");
        assert_eq!(
            parse_snapshot_name("00000000000000000042.snapshot"),
            Some(42)
        );
        assert_eq!(parse_snapshot_name("42.snapshot"), None);
        assert_eq!(
            parse_snapshot_name("00000000000000000042.snapshot.tmp"),
            None
        );
        assert_eq!(parse_snapshot_name("00000000000000000042.log"), None);
    }
}
