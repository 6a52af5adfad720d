//! Rolling: sealing the active segment and starting a new one at the log
//! end, when the active one is full, would not fit the batch's offsets in
//! its index, or is older than `segment_ms`.
//!
//! A roll does not sync: the next sync covers the old segment too (it
//! syncs every segment with unsynced written bytes, and the directory a
//! roll made dirty). It queues no "best effort" fsync either: an fsync
//! whose result nobody reads could fail unseen, and the next fsync of that
//! file would then report success for lost bytes (see `commit`).
//!
//! Each roll leaves a producer state snapshot at the new segment's base,
//! so an open replays only the batches after it instead of the whole log.

use rill_protocol::batch::BatchHeader;

use super::{ms_i64, Inner, PartitionLog};
use crate::error::Result;
use crate::producers;
use crate::segment::Segment;

impl PartitionLog {
    pub(super) fn maybe_roll(
        &self,
        inner: &mut Inner,
        header: &BatchHeader,
        len: u64,
        now_ms: i64,
    ) -> Result<()> {
        let active = inner.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size + len > self.config.segment_bytes;
        let offsets = !active.fits_offsets(header);
        if full || offsets || self.segment_expired(active, now_ms) {
            self.roll(inner)?;
        }
        Ok(())
    }

    pub(super) fn segment_expired(&self, segment: &Segment, now_ms: i64) -> bool {
        match (self.config.segment_ms, segment.first_append_ms) {
            (Some(ms), Some(first)) => now_ms.saturating_sub(first) > ms_i64(ms),
            _ => false,
        }
    }

    /// Starts a new active segment at the log end. See the module docs for
    /// why nothing here waits for an fsync.
    pub(super) fn roll(&self, inner: &mut Inner) -> Result<()> {
        let base = inner.next_offset;
        let old = inner.active_mut();
        old.seal_time_index();
        let old_base = old.base_offset;
        // Sealed: direct I/O's padding and reserved room can go once its
        // writes land (and its recent-write window with it). Not awaited,
        // and not synced (an fsync whose failure nobody reads must not
        // run): the cut is ordered after those writes on the I/O thread, a
        // crash before it is durable leaves zeros that recovery cuts, and
        // `close` syncs it before the clean-shutdown marker.
        drop(old.log.trim(false));
        // Not fatal: without it the next open replays from an older
        // snapshot (or the log start) instead.
        if let Err(e) = producers::write_snapshot(&self.dir, &inner.producers, base, false) {
            tracing::warn!(dir = %self.dir.display(), offset = base, error = %e, "producer state snapshot failed");
        }
        let segment = Segment::create(&self.dir, base, self.backend.as_ref())?;
        inner.segments.push(segment);
        inner.dir_dirty = true;
        tracing::debug!(dir = %self.dir.display(), old_base, new_base = base, "rolled segment");
        Ok(())
    }
}
