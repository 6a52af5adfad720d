//! Direct I/O (`O_DIRECT`) on a whole log: the room it reserves past the
//! data never shows to readers, a clean close leaves every segment file
//! exactly its batches, and a crash that leaves the room behind is repaired
//! by recovery with every synced batch kept. Real files on the build's disk.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rill_protocol::batch::{BatchView, Compression};
use rill_storage::io::{open_backend_with, IoBackend, IoBackendChoice, DIRECT_ALIGN};
use rill_storage::{Durability, PartitionLog};

use crate::log_support::{
    assert_holds_exactly, batch, now_ms, runtime, segment_files, small_config, tempdir,
};

/// Several rolls in a test's worth of batches.
const SEGMENT_BYTES: u64 = 64 * 1024;
const BATCHES: u64 = 60;

fn direct_backends() -> Vec<(&'static str, Arc<dyn IoBackend>)> {
    let mut out: Vec<(&'static str, Arc<dyn IoBackend>)> = vec![(
        "std_direct",
        open_backend_with(IoBackendChoice::Std, 2, true).expect("std backend"),
    )];
    match open_backend_with(IoBackendChoice::Uring, 2, true) {
        Ok(b) => out.push(("uring_direct", b)),
        Err(e) => eprintln!("skipped uring: {e}"),
    }
    out
}

/// Batches of uneven sizes (never a multiple of the block size), so every
/// append ends inside a block.
fn uneven_batch(i: u64) -> BytesMut {
    batch(
        1 + (i % 5) as usize,
        300 + 37 * i as usize,
        now_ms(),
        Compression::None,
        i,
    )
}

/// Whether the file holds valid batches end to end, nothing after them.
fn tiles_exactly(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let Ok(view) = BatchView::new(rest) else {
            return false;
        };
        if view.validate().is_err() {
            return false;
        }
        rest = &rest[view.len()..];
    }
    true
}

fn append_all(
    rt: &tokio::runtime::Runtime,
    log: &PartitionLog,
    durability: Durability,
) -> Vec<(u64, BytesMut)> {
    (0..BATCHES)
        .map(|i| {
            let b = uneven_batch(i);
            let info = rt.block_on(log.append(b.clone(), durability)).unwrap();
            (info.base_offset, b)
        })
        .collect()
}

#[test]
fn clean_close_leaves_exact_segment_files_and_reopens_without_a_scan() {
    let rt = runtime();
    for (name, backend) in direct_backends() {
        let dir = tempdir();
        let log =
            PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
        let sent = append_all(&rt, &log, Durability::Written);
        assert!(
            backend.stats().direct_files > 0,
            "{name}: segments were not opened with O_DIRECT"
        );
        assert!(log.segment_count() > 2, "{name}: the log rolled");
        // While open, the active file has room reserved past its data; the
        // reads must not see it.
        let files = segment_files(dir.path());
        let (active, sealed) = files.split_last().unwrap();
        // A roll cuts the sealed segment's room behind its last write,
        // which every later append's completion follows.
        for f in sealed {
            assert!(tiles_exactly(f), "{name}: sealed {} is exact", f.display());
        }
        assert!(
            std::fs::metadata(active)
                .unwrap()
                .len()
                .is_multiple_of(DIRECT_ALIGN as u64)
                && !tiles_exactly(active),
            "{name}: the active file carries reserved room"
        );
        assert_holds_exactly(&log, &sent, name);
        rt.block_on(log.close()).unwrap();
        for f in segment_files(dir.path()) {
            assert!(
                tiles_exactly(&f),
                "{name}: {} has bytes past its batches",
                f.display()
            );
        }
        let again = PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend).unwrap();
        assert!(
            again.stats().recovery.clean_shutdown,
            "{name}: clean reopen"
        );
        assert_holds_exactly(&again, &sent, name);
        // Appends continue at the exact end, not after the cut room.
        let end = again.log_end_offset();
        let next = uneven_batch(BATCHES);
        let info = rt
            .block_on(again.append(next, Durability::Written))
            .unwrap();
        assert_eq!(info.base_offset, end, "{name}: next offset");
        rt.block_on(again.close()).unwrap();
        for f in segment_files(dir.path()) {
            assert!(
                tiles_exactly(&f),
                "{name}: {} after the second run",
                f.display()
            );
        }
    }
}

#[test]
fn crash_leaves_reserved_room_that_recovery_cuts_keeping_every_synced_batch() {
    let rt = runtime();
    for (name, backend) in direct_backends() {
        let dir = tempdir();
        let log = PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend).unwrap();
        let sent = append_all(&rt, &log, Durability::Synced);
        let active = segment_files(dir.path()).pop().unwrap();
        // A crash: no close, no trim, no marker. The files stay as they are.
        std::mem::forget(log);
        assert!(
            !tiles_exactly(&active),
            "{name}: the crash left the reserved room behind"
        );
        let fresh = open_backend_with(IoBackendChoice::Std, 1, true).unwrap();
        let again = PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), fresh).unwrap();
        let recovery = again.stats().recovery;
        assert!(!recovery.clean_shutdown, "{name}: recovery ran");
        assert!(recovery.bytes_truncated > 0, "{name}: the room was cut");
        assert_holds_exactly(&again, &sent, name);
        assert!(
            tiles_exactly(&active),
            "{name}: the active file is exact again"
        );
    }
}
