//! Reads: by offset, by timestamp, and the watch of the log end that
//! long-poll fetches wait on.
//!
//! A read holds the lock only to find its segment and its bound, the
//! written end (so never a write still in flight), and reads the file
//! without it: reads never wait behind appends.
//!
//! Reads check every batch's CRC before returning it (bit rot or tampering
//! after the write): a bad first batch is [`StorageError::Corrupt`], a bad
//! later one ends the read before it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rill_protocol::batch::{BatchHeader, BatchView, HEADER_LEN};
use tokio::sync::watch;

use super::PartitionLog;
use crate::error::{Result, StorageError};
use crate::io::LogFile;
use crate::segment::read_header;

impl PartitionLog {
    /// Reads whole batches starting with the one holding `offset`, up to
    /// `max_bytes` — but always at least one whole batch. Empty at the log
    /// end; [`StorageError::OffsetOutOfRange`] below the start or past the end.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes> {
        let (file, mut pos, limit) = {
            let inner = self.lock();
            if offset < inner.log_start || offset > inner.written_end {
                return Err(inner.out_of_range(offset));
            }
            if offset == inner.written_end {
                return Ok(Bytes::new());
            }
            let segment = inner
                .segment_index_for(offset)
                .and_then(|i| inner.segments.get(i))
                .ok_or_else(|| inner.out_of_range(offset))?;
            let (pos, _) = segment.scan_start_for(offset);
            (segment.log.clone(), pos, segment.written_size)
        };
        let first = loop {
            let header = read_header(file.as_ref(), pos, limit)?;
            if header.next_offset() > offset {
                break header;
            }
            pos += u64::from(header.batch_length);
        };
        let available = usize::try_from(limit - pos).unwrap_or(usize::MAX);
        let want = max_bytes.min(available).max(first.batch_length as usize);
        let mut buf = vec![0u8; want];
        file.read_at(pos, &mut buf)
            .map_err(|e| StorageError::io(file.path(), e))?;
        let mut end = 0usize;
        let mut bad = None;
        while let Some(rest) = buf.get(end..).filter(|r| r.len() >= HEADER_LEN) {
            match BatchHeader::parse(rest) {
                Ok(h) if h.batch_length as usize <= rest.len() => {
                    let len = h.batch_length as usize;
                    // The CRC was checked on append; checking it again here
                    // (cheap next to the pread) keeps bytes that rotted or
                    // were altered on disk since from ever being served.
                    let checked = BatchView::new(rest).and_then(|v| v.validate());
                    if let Err(e) = checked {
                        bad = Some(e.to_string());
                        break;
                    }
                    end += len;
                }
                _ => break,
            }
        }
        if let Some(reason) = &bad {
            self.corrupt_reads.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                path = %file.path().display(), position = pos + end as u64, %reason,
                "batch on disk fails its check; not serving it"
            );
        }
        if end == 0 {
            return Err(StorageError::Corrupt {
                path: file.path().to_path_buf(),
                position: pos,
                reason: bad.unwrap_or_else(|| "batch changed under a read".into()),
            });
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }

    /// The base offset of the earliest batch whose max timestamp is at least
    /// `ts_ms` (Kafka's ListOffsets answered at batch granularity: the
    /// consumer skips the batch's older records itself). `None` if no
    /// written batch is that new.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<u64>> {
        let candidates: Vec<(Arc<dyn LogFile>, u64, u64)> = {
            let inner = self.lock();
            inner
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= ts_ms && s.written_size > 0)
                .map(|s| {
                    let pos = s
                        .time_index
                        .scan_start(ts_ms)
                        .map_or(0, |rel| s.scan_start_for(s.base_offset + u64::from(rel)).0);
                    (s.log.clone(), pos, s.written_size)
                })
                .collect()
        };
        for (file, mut pos, limit) in candidates {
            while pos < limit {
                let header = read_header(file.as_ref(), pos, limit)?;
                if header.max_timestamp >= ts_ms {
                    return Ok(Some(header.base_offset));
                }
                pos += u64::from(header.batch_length);
            }
        }
        Ok(None)
    }

    /// Watches the log end offset (the written end), for long-poll fetches.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end_tx.subscribe()
    }
}
