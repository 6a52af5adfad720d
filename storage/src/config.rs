//! Per-partition log configuration: segment size and age, index cadence,
//! retention and the fsync policy.
//!
//! Defaults follow Kafka's (`log.segment.bytes`, `log.roll.ms`,
//! `log.index.interval.bytes`, `log.retention.ms`, `max.message.bytes`) so an
//! operator's intuition carries over. Every relation the log relies on (file
//! positions fit in `u32`, a batch fits in a segment's position space) is
//! checked once, in [`LogConfig::validate`].

use std::fmt;
use std::str::FromStr;

use rill_protocol::batch::HEADER_LEN;
use rill_protocol::limits::BATCH_BYTES_MAX;

use crate::error::{Result, StorageError};
pub use crate::producer_state::{PRODUCER_IDS_MAX_DEFAULT, PRODUCER_ID_EXPIRATION_MS_DEFAULT};

/// Default segment size: 1 GiB, as Kafka's `log.segment.bytes`.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Largest segment: index entries store file positions as `u32`, and the
/// last batch may start just below the limit and run `BATCH_BYTES_MAX` past it.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64 - BATCH_BYTES_MAX as u64;
/// Default segment age before a roll: 7 days, as Kafka's `log.roll.ms`.
pub const SEGMENT_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default bytes of log data between two index entries, as Kafka's
/// `log.index.interval.bytes`.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Default retention by time: 7 days, as Kafka's `log.retention.ms`.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default largest batch: 8 MiB. Kafka's `max.message.bytes` is 1 MiB, but
/// Kafka producers cut 16 KiB batches; Rill's producer cuts 1 MiB batches by
/// default (1,000 records of 1 KiB plus keys and archive overhead is just
/// over 1 MiB), so the default leaves room for them.
pub const MAX_BATCH_BYTES_DEFAULT: u32 = 8 * 1024 * 1024;

const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(MAX_BATCH_BYTES_DEFAULT as usize <= BATCH_BYTES_MAX);

/// When appended bytes are fdatasync'd, beyond what `Durability::Synced`
/// appends ask for themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every append waits for its bytes to be synced (group commit).
    Always,
    /// Sync when this many milliseconds have passed since the last sync
    /// (checked on append and on [`crate::PartitionLog::tick`]).
    IntervalMs(u64),
    /// Sync once this many bytes were appended since the last sync.
    IntervalBytes(u64),
    /// Leave it to the OS (Kafka's default); replication is the durability.
    #[default]
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::IntervalMs(ms) => write!(f, "interval_ms:{ms}"),
            FsyncPolicy::IntervalBytes(b) => write!(f, "interval_bytes:{b}"),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            StorageError::Config(format!(
                "unknown fsync policy {s:?}: expected always, never, interval_ms:<ms> or interval_bytes:<bytes>"
            ))
        };
        match s {
            "always" => return Ok(FsyncPolicy::Always),
            "never" => return Ok(FsyncPolicy::Never),
            _ => {}
        }
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        let value: u64 = value.parse().map_err(|_| bad())?;
        match kind {
            "interval_ms" => Ok(FsyncPolicy::IntervalMs(value)),
            "interval_bytes" => Ok(FsyncPolicy::IntervalBytes(value)),
            _ => Err(bad()),
        }
    }
}

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment rolls when the next batch would take it past this size.
    pub segment_bytes: u64,
    /// A segment rolls once its first append is this old (wall clock).
    pub segment_ms: Option<u64>,
    /// Bytes of log data between two offset (and time) index entries.
    pub index_interval_bytes: u32,
    /// Closed segments whose newest timestamp is older than this are deleted.
    pub retention_ms: Option<u64>,
    /// Oldest closed segments are deleted while the log stays at least this big.
    pub retention_bytes: Option<u64>,
    pub fsync: FsyncPolicy,
    /// Largest batch an append accepts (at most `BATCH_BYTES_MAX`).
    pub max_batch_bytes: u32,
    /// An idempotent producer id is forgotten this long after its last
    /// batch (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: u64,
    /// Most producer ids the log remembers; a new one beyond this evicts
    /// the least recently used.
    pub producer_ids_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(SEGMENT_MS_DEFAULT),
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            fsync: FsyncPolicy::Never,
            max_batch_bytes: MAX_BATCH_BYTES_DEFAULT,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            producer_ids_max: PRODUCER_IDS_MAX_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Checks every value and every relation between values the log relies on.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(StorageError::Config(msg));
        if self.segment_bytes == 0 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return fail(format!(
                "segment_bytes {} must be in 1..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            ));
        }
        if self.segment_ms == Some(0) {
            return fail("segment_ms must be positive".into());
        }
        if self.index_interval_bytes == 0 {
            return fail("index_interval_bytes must be positive".into());
        }
        if self.retention_ms == Some(0) {
            return fail("retention_ms must be positive".into());
        }
        let batch = self.max_batch_bytes as usize;
        if !(HEADER_LEN..=BATCH_BYTES_MAX).contains(&batch) {
            return fail(format!(
                "max_batch_bytes {batch} must be in {HEADER_LEN}..={BATCH_BYTES_MAX}"
            ));
        }
        if self.producer_id_expiration_ms == 0 {
            return fail("producer_id_expiration_ms must be positive".into());
        }
        if self.producer_ids_max == 0 {
            return fail("producer_ids_max must be positive".into());
        }
        match self.fsync {
            FsyncPolicy::IntervalMs(0) | FsyncPolicy::IntervalBytes(0) => fail(format!(
                "fsync policy {} needs a positive interval",
                self.fsync
            )),
            _ => Ok(()),
        }
    }
}
