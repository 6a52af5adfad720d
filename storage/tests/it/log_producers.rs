//! The idempotent producer's state behind the partition log, on real
//! files: retries are answered with the original offsets and never
//! written twice, gaps and fenced epochs are refused, and the state
//! survives restarts and crashes and follows every removal of a log
//! suffix (truncation, the rollback after a full disk, recovery's cut of a
//! torn tail), so a retry is never answered with an offset that now holds
//! another batch.

use std::sync::Arc;

use bytes::BytesMut;
use proptest::prelude::*;
use rill_protocol::batch::{BatchBuilder, Compression};
use rill_storage::io::{CrashBackend, IoBackend};
use rill_storage::{
    Durability, LogConfig, PartitionLog, ProducerError, ProducerStateMap, StorageError,
};

use crate::log_full_disk::Tmpfs;
use crate::log_support::{
    backends, now_ms, read_all, runtime, segment_files, small_config, std_backend, tempdir,
};

const PID: i64 = 4_000;

/// An idempotent batch of `records` records from producer `pid` at `epoch`
/// whose first record has sequence `seq`, values derived from `seed`.
fn idem(pid: i64, epoch: i16, seq: i32, records: usize, seed: u64) -> BytesMut {
    idem_at(pid, epoch, seq, records, seed, now_ms())
}

fn idem_at(pid: i64, epoch: i16, seq: i32, records: usize, seed: u64, ts: i64) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, epoch, seq);
    for i in 0..records {
        let value = format!("p{pid}-e{epoch}-s{seq}-{i}-{seed}");
        b.push(ts, Some(b"key"), value.as_bytes(), &[]);
    }
    b.finish_into_mut().expect("valid batch")
}

fn producer_error(e: StorageError) -> ProducerError {
    match e {
        StorageError::Producer(p) => p,
        other => panic!("expected a producer error, got {other}"),
    }
}

/// Every batch the log holds as (producer id, base sequence, base offset).
fn held(log: &PartitionLog) -> Vec<(i64, i32, u64)> {
    read_all(log, 1 << 20)
        .iter()
        .map(|(h, _)| (h.producer_id, h.base_sequence, h.base_offset))
        .collect()
}

#[test]
fn producers_retry_is_answered_with_the_original_offsets_once() {
    for (name, backend) in backends() {
        let dir = tempdir();
        runtime().block_on(async {
            let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
            let a = log
                .append(idem(PID, 0, 0, 3, 1), Durability::Written)
                .await
                .unwrap();
            let b = log
                .append(idem(PID, 0, 3, 2, 2), Durability::Synced)
                .await
                .unwrap();
            assert!(!a.duplicate && !b.duplicate, "{name}");
            assert_eq!((a.base_offset, b.base_offset), (0, 3), "{name}");
            // Both retried (a lost answer), in order and out of order.
            for (batch, original) in [(idem(PID, 0, 3, 2, 2), b), (idem(PID, 0, 0, 3, 1), a)] {
                for durability in [Durability::Written, Durability::Synced] {
                    let again = log.append(batch.clone(), durability).await.unwrap();
                    assert!(again.duplicate, "{name}: recognised as a retry");
                    assert_eq!(again.base_offset, original.base_offset, "{name}");
                    assert_eq!(again.last_offset, original.last_offset, "{name}");
                    assert_eq!(again.position, None, "{name}: not written again");
                }
            }
            assert_eq!(log.log_end_offset(), 5, "{name}: nothing written twice");
            assert_eq!(held(&log), vec![(PID, 0, 0), (PID, 3, 3)], "{name}");
            assert_eq!(log.stats().duplicates, 4, "{name}");
            // A non-idempotent batch beside it is never checked.
            let plain = crate::log_support::batch(1, 10, now_ms(), Compression::None, 9);
            assert_eq!(
                log.append(plain.clone(), Durability::Written)
                    .await
                    .unwrap()
                    .base_offset,
                5
            );
            assert_eq!(
                log.append(plain, Durability::Written)
                    .await
                    .unwrap()
                    .base_offset,
                6
            );
        });
    }
}

#[test]
fn producers_gaps_old_epochs_and_unknown_ids_are_refused() {
    let dir = tempdir();
    runtime().block_on(async {
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), std_backend()).unwrap();
        log.append(idem(PID, 0, 0, 2, 0), Durability::Written)
            .await
            .unwrap();
        // A gap: sequence 5 where 2 is next.
        let gap = log
            .append(idem(PID, 0, 5, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(gap),
            ProducerError::OutOfOrderSequence {
                expected: 2,
                got: 5,
                ..
            }
        ),);
        // An overlap of the kept batch that is not the same batch.
        let overlap = log
            .append(idem(PID, 0, 1, 2, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(overlap),
            ProducerError::OutOfOrderSequence { .. }
        ));
        // A new epoch must start at sequence 0 ...
        let bad_start = log
            .append(idem(PID, 1, 2, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(bad_start),
            ProducerError::OutOfOrderSequence {
                expected: 0,
                got: 2,
                ..
            }
        ));
        // ... and, once it did, fences the old one.
        log.append(idem(PID, 1, 0, 1, 0), Durability::Written)
            .await
            .unwrap();
        let fenced = log
            .append(idem(PID, 0, 2, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(fenced),
            ProducerError::InvalidProducerEpoch {
                epoch: 0,
                current: 1,
                ..
            }
        ));
        // An id never seen, not starting a sequence.
        let unknown = log
            .append(idem(PID + 1, 0, 7, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(unknown),
            ProducerError::UnknownProducerId { sequence: 7, .. }
        ));
        // Older than the five batches kept: written before, offsets forgotten.
        for seq in 1..=6 {
            log.append(idem(PID, 1, seq, 1, 0), Durability::Written)
                .await
                .unwrap();
        }
        let ancient = log
            .append(idem(PID, 1, 0, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(ancient),
            ProducerError::DuplicateSequence {
                first: 0,
                last: 0,
                ..
            }
        ));
        // Refusals wrote nothing.
        assert_eq!(log.log_end_offset(), 2 + 1 + 6);
    });
}

#[test]
fn producers_duplicate_with_acks_all_waits_for_the_originals_fsync() {
    let dir = tempdir();
    let crash = Arc::new(CrashBackend::new(None).expect("crash backend"));
    let backend: Arc<dyn IoBackend> = crash.clone();
    runtime().block_on(async {
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        let batch = idem(PID, 0, 0, 4, 0);
        let original = log
            .append(batch.clone(), Durability::Written)
            .await
            .unwrap();
        let segment = segment_files(dir.path()).pop().expect("a segment");
        let durable_len = |c: &CrashBackend| c.durable_image(&segment).map_or(0, |i| i.len());
        assert_eq!(durable_len(&crash), 0, "written, not yet synced");
        let dup = log.append(batch.clone(), Durability::Synced).await.unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, original.base_offset);
        assert_eq!(
            durable_len(&crash),
            batch.len(),
            "the duplicate's ack waited for the fsync"
        );
    });
}

/// The state a fresh map has after replaying what `log` holds: the truth
/// the live state must equal (epochs and kept batches).
fn replayed(log: &PartitionLog, pids: &[i64]) -> Vec<Option<ProducerView>> {
    let mut map = ProducerStateMap::new(1_000, u64::MAX);
    for (h, _) in read_all(log, 1 << 20) {
        map.record(&h, h.base_offset, h.max_timestamp);
    }
    state_of(pids, |pid| map.producer(pid))
}

fn live(log: &PartitionLog, pids: &[i64]) -> Vec<Option<ProducerView>> {
    state_of(pids, |pid| log.producer_state(pid))
}

type Kept = Option<(i16, Vec<rill_storage::producer_state::BatchMeta>)>;

/// A producer's epoch and kept batches as (first seq, last seq, base offset).
type ProducerView = (i16, Vec<(i32, i32, u64)>);

fn state_of(pids: &[i64], get: impl Fn(i64) -> Kept) -> Vec<Option<ProducerView>> {
    pids.iter()
        .map(|&pid| {
            get(pid).map(|(epoch, batches)| {
                (
                    epoch,
                    batches
                        .iter()
                        .map(|b| (b.first_seq, b.last_seq, b.base_offset))
                        .collect(),
                )
            })
        })
        .collect()
}

#[test]
fn producers_state_survives_clean_restart_and_crash_with_snapshots_and_without() {
    let dir = tempdir();
    let rt = runtime();
    let segment = 600;
    let config = small_config(segment);
    let pids = [PID, PID + 1];
    let mut next = [0i32, 0];
    let mut sent = Vec::new();
    rt.block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
        for i in 0..40u64 {
            let p = (i % 2) as usize;
            let b = idem(pids[p], 0, next[p], 2, i);
            next[p] += 2;
            let info = log.append(b.clone(), Durability::Written).await.unwrap();
            sent.push((b, info.base_offset));
        }
        assert!(log.segment_count() > 3, "rolled: snapshots were written");
        log.close().await.unwrap();
    });
    // Clean restart: the close's snapshot covers everything, nothing replayed.
    let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
    let rebuild = log.stats().producer_rebuild;
    assert_eq!(rebuild.snapshot_offset, Some(log.log_end_offset()));
    assert_eq!(rebuild.batches_replayed, 0);
    assert_eq!(live(&log, &pids), replayed(&log, &pids));
    rt.block_on(async {
        for (b, base) in sent.iter().rev().take(10) {
            let again = log.append(b.clone(), Durability::Written).await.unwrap();
            assert!(again.duplicate);
            assert_eq!(again.base_offset, *base, "original offset after a restart");
        }
        // More appends, then a crash: no snapshot at the end this time.
        for i in 40..47u64 {
            let p = (i % 2) as usize;
            let b = idem(pids[p], 0, next[p], 2, i);
            next[p] += 2;
            let info = log.append(b.clone(), Durability::Written).await.unwrap();
            sent.push((b, info.base_offset));
        }
    });
    drop(log);
    let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
    let rebuild = log.stats().producer_rebuild;
    assert!(!log.stats().recovery.clean_shutdown);
    let snapshot = rebuild.snapshot_offset.expect("the last roll's snapshot");
    assert!(snapshot < log.log_end_offset() && rebuild.batches_replayed > 0);
    assert_eq!(live(&log, &pids), replayed(&log, &pids));
    rt.block_on(async {
        for (b, base) in sent.iter().rev().take(5) {
            let again = log.append(b.clone(), Durability::Synced).await.unwrap();
            assert!(again.duplicate);
            assert_eq!(again.base_offset, *base, "original offset after a crash");
        }
    });
    drop(log);
    // No snapshot at all: the whole log is replayed, to the same state.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
    assert_eq!(log.stats().producer_rebuild.snapshot_offset, None);
    assert_eq!(live(&log, &pids), replayed(&log, &pids));
    let (b, base) = sent.last().unwrap();
    let again = rt
        .block_on(log.append(b.clone(), Durability::Written))
        .unwrap();
    assert!(again.duplicate && again.base_offset == *base);
}

#[test]
fn producers_snapshot_claiming_more_than_the_log_holds_is_ignored() {
    let dir = tempdir();
    let rt = runtime();
    let config = small_config(1 << 20);
    rt.block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
        log.append(idem(PID, 0, 0, 2, 0), Durability::Written)
            .await
            .unwrap();
        log.close().await.unwrap();
    });
    // A snapshot from a longer log (a tail since lost): it says PID is at
    // sequence 100 and names offsets the log does not hold.
    let mut liar = ProducerStateMap::new(10, u64::MAX);
    let h = rill_protocol::BatchHeader::parse(&idem(PID, 0, 98, 3, 0)).unwrap();
    liar.record(&h, 50, now_ms());
    let path = dir.path().join(format!("{:020}.snapshot", 60));
    std::fs::write(&path, liar.encode_snapshot(60)).unwrap();
    // And a damaged one at the log end, which must be skipped too.
    let at_end = dir.path().join(format!("{:020}.snapshot", 2));
    let mut bytes = std::fs::read(&at_end).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&at_end, bytes).unwrap();

    let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
    let rebuild = log.stats().producer_rebuild;
    assert_eq!(rebuild.snapshots_skipped, 2);
    assert!(!path.exists(), "the liar is removed");
    // The damaged one was replaced by the open's own, of the replayed state.
    let fresh = std::fs::read(&at_end).expect("a snapshot at the log end");
    assert!(ProducerStateMap::decode_snapshot(&fresh, 10, u64::MAX).is_ok());
    assert_eq!(live(&log, &[PID]), replayed(&log, &[PID]));
    // The next batch after the log's own is accepted; the liar's is not.
    rt.block_on(async {
        log.append(idem(PID, 0, 2, 1, 0), Durability::Written)
            .await
            .unwrap();
        let err = log
            .append(idem(PID, 0, 101, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(err),
            ProducerError::OutOfOrderSequence { .. }
        ));
    });
}

/// Truncation (the replica's path): the batches cut away are forgotten,
/// those kept still answer as duplicates, including after a truncation
/// below the newest snapshot.
#[test]
fn producers_truncate_to_restores_the_state_of_the_remaining_log() {
    let dir = tempdir();
    let rt = runtime();
    let config = small_config(500);
    rt.block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
        let mut infos = Vec::new();
        for seq in 0..12 {
            let info = log
                .append(idem(PID, 0, seq, 1, 0), Durability::Written)
                .await
                .unwrap();
            infos.push(info);
        }
        assert!(log.segment_count() >= 3);
        for cut in [10u64, 3] {
            log.truncate_to(cut).await.unwrap();
            assert_eq!(log.log_end_offset(), cut);
            assert_eq!(
                live(&log, &[PID]),
                replayed(&log, &[PID]),
                "after truncating to {cut}"
            );
            // The batch at the cut is gone: its retry is written anew, at
            // the same offset (the log is back where it was).
            let seq = cut as i32;
            let again = log
                .append(idem(PID, 0, seq, 1, 7), Durability::Written)
                .await
                .unwrap();
            assert!(!again.duplicate, "a retry of a removed batch is written");
            assert_eq!(again.base_offset, cut);
            // The batch before the cut is still answered with its offset.
            let before = log
                .append(idem(PID, 0, seq - 1, 1, 0), Durability::Written)
                .await
                .unwrap();
            assert!(before.duplicate);
            assert_eq!(before.base_offset, infos[cut as usize - 1].base_offset);
            log.truncate_to(cut).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(live(&log, &[PID]), replayed(&log, &[PID]));
}

/// Recovery's cut of a torn tail: the torn batch is not remembered, so its
/// retry is written, not answered with an offset nothing holds.
#[test]
fn producers_torn_tail_cut_by_recovery_is_forgotten() {
    let dir = tempdir();
    let rt = runtime();
    let config = small_config(1 << 20);
    let last = idem(PID, 0, 2, 3, 0);
    rt.block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
        log.append(idem(PID, 0, 0, 2, 0), Durability::Written)
            .await
            .unwrap();
        log.append(last.clone(), Durability::Written).await.unwrap();
        // A crash: no close.
    });
    let segment = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - (last.len() as u64) / 2).unwrap();
    drop(file);

    let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
    assert!(log.stats().recovery.bytes_truncated > 0);
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(live(&log, &[PID]), replayed(&log, &[PID]));
    rt.block_on(async {
        let again = log.append(last.clone(), Durability::Written).await.unwrap();
        assert!(!again.duplicate, "the torn batch is written again");
        assert_eq!(again.base_offset, 2);
        let first = log
            .append(idem(PID, 0, 0, 2, 0), Durability::Written)
            .await
            .unwrap();
        assert!(first.duplicate && first.base_offset == 0);
    });
}

/// The rollback after a refused write (a full disk): the discarded batches
/// are forgotten with their offsets.
#[test]
fn producers_rollback_after_a_full_disk_restores_the_state() {
    let fs = match Tmpfs::mount("256k") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped full-disk producer test: cannot mount a tmpfs ({e})");
            return;
        }
    };
    let dir = fs.path().join("p0");
    runtime().block_on(async {
        let config = small_config(64 * 1024);
        let log = PartitionLog::open(&dir, config.clone(), std_backend()).unwrap();
        let mut seq = 0;
        let refused = loop {
            assert!(seq < 10_000, "the file system never filled");
            let b = idem_big(seq);
            match log.append(b.clone(), Durability::Written).await {
                Ok(_) => seq += 8,
                Err(_) => break b,
            }
        };
        let end = log.log_end_offset();
        fs.remount("size=4m");
        // The refused batch was rolled back: its retry is written anew at
        // the end, not answered as a duplicate.
        let again = log
            .append(refused.clone(), Durability::Synced)
            .await
            .unwrap();
        assert!(!again.duplicate);
        assert_eq!(again.base_offset, end);
        assert!(log.stats().write_rollbacks >= 1);
        assert_eq!(live(&log, &[PID]), replayed(&log, &[PID]));
        let dup = log.append(refused, Durability::Written).await.unwrap();
        assert!(dup.duplicate && dup.base_offset == end);
        assert_eq!(held(&log).len() as i32, seq / 8 + 1);
    });
}

fn idem_big(seq: i32) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None).with_producer(PID, 0, seq);
    for i in 0..8 {
        b.push(now_ms(), None, &vec![i as u8; 1000], &[]);
    }
    b.finish_into_mut().unwrap()
}

#[test]
fn producers_expire_and_are_evicted_at_the_cap() {
    let dir = tempdir();
    runtime().block_on(async {
        let config = LogConfig {
            producer_ids_max: 2,
            ..small_config(1 << 20)
        };
        let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
        for pid in [1, 2, 3] {
            log.append(idem(pid, 0, 0, 1, 0), Durability::Written)
                .await
                .unwrap();
        }
        let stats = log.stats();
        assert_eq!((stats.producers, stats.producer_evictions), (2, 1));
        // The least recently used (1) went: its next batch is unknown.
        let err = log
            .append(idem(1, 0, 1, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(err),
            ProducerError::UnknownProducerId { .. }
        ));
        log.append(idem(3, 0, 1, 1, 0), Durability::Written)
            .await
            .unwrap();
    });

    // Expiry runs on the broker's clock, never the producer's: a batch
    // stamped two days ago is not expired, one idle past the expiration is.
    let dir = tempdir();
    let rt = runtime();
    let expiration_ms = 150;
    let config = LogConfig {
        producer_id_expiration_ms: expiration_ms,
        ..small_config(1 << 20)
    };
    let two_days = 2 * 24 * 60 * 60 * 1000;
    rt.block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
        log.append(
            idem_at(PID, 0, 0, 1, 0, now_ms() - two_days),
            Durability::Written,
        )
        .await
        .unwrap();
        log.append(
            idem_at(PID, 0, 1, 1, 0, now_ms() - two_days),
            Durability::Written,
        )
        .await
        .expect("an old producer clock ages nobody");
        // Time passing is the event here.
        tokio::time::sleep(std::time::Duration::from_millis(expiration_ms + 100)).await;
        let err = log
            .append(idem(PID, 0, 2, 1, 0), Durability::Written)
            .await
            .unwrap_err();
        assert!(matches!(
            producer_error(err),
            ProducerError::UnknownProducerId { .. }
        ));
        log.tick(now_ms());
        assert_eq!(log.stats().producers, 0, "the tick freed it");
        assert_eq!(log.stats().producer_expirations, 1);
        // Replayed batches count at the replay: after a crash the same old
        // stamps do not expire the producer at the open.
        log.append(
            idem_at(PID, 0, 0, 1, 0, now_ms() - two_days),
            Durability::Written,
        )
        .await
        .unwrap();
    });
    let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
    assert_eq!(log.stats().producers, 1, "alive after the restart");
    rt.block_on(async {
        log.append(idem(PID, 0, 1, 1, 0), Durability::Written)
            .await
            .expect("continues its sequence");
    });
}

/// Retention deletes the segments a producer wrote to, not the producer:
/// after a restart its next batch continues its sequence.
#[test]
fn producers_retention_does_not_forget_live_producers() {
    let dir = tempdir();
    let rt = runtime();
    let config = LogConfig {
        retention_bytes: Some(1),
        ..small_config(400)
    };
    rt.block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone(), std_backend()).unwrap();
        log.append(idem(PID, 0, 0, 1, 0), Durability::Written)
            .await
            .unwrap();
        for i in 0..20 {
            let plain = crate::log_support::batch(1, 100, now_ms(), Compression::None, i);
            log.append(plain, Durability::Written).await.unwrap();
        }
        let outcome = log.enforce_retention(now_ms()).unwrap();
        assert!(outcome.segments_deleted > 0 && log.log_start_offset() > 0);
        log.close().await.unwrap();
    });
    let log = PartitionLog::open(dir.path(), config, std_backend()).unwrap();
    assert!(
        log.log_start_offset() > 0,
        "PID's batch is gone from the log"
    );
    rt.block_on(async {
        let next = log.append(idem(PID, 0, 1, 1, 0), Durability::Written).await;
        assert!(next.is_ok(), "PID continues its sequence: {next:?}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any bytes: the snapshot decoder returns, and whatever it accepts
    /// encodes back to exactly those bytes.
    #[test]
    fn producers_snapshot_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok((offset, map)) = ProducerStateMap::decode_snapshot(&bytes, 100, u64::MAX) {
            prop_assert_eq!(map.encode_snapshot(offset), bytes);
        }
    }

    /// Random damage to a real snapshot: rejected, or (a change the CRC
    /// cannot see does not exist) never a different state silently.
    #[test]
    fn producers_snapshot_damage_is_rejected(
        batches in proptest::collection::vec((0i64..4, 1usize..4), 1..30),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
    ) {
        let mut map = ProducerStateMap::new(100, u64::MAX);
        let mut next = [0i32; 4];
        let mut offset = 0u64;
        for (pid, records) in batches {
            let h = rill_protocol::BatchHeader::parse(&idem(pid, 0, next[pid as usize], records, 0)).unwrap();
            map.record(&h, offset, 0);
            next[pid as usize] += records as i32;
            offset += records as u64;
        }
        let good = map.encode_snapshot(offset);
        let mut bad = good.clone();
        for (at, mask) in flips {
            let i = at % bad.len();
            bad[i] ^= mask;
        }
        prop_assume!(bad != good);
        prop_assert!(ProducerStateMap::decode_snapshot(&bad, 100, u64::MAX).is_err());
        let (back_offset, back) = ProducerStateMap::decode_snapshot(&good, 100, u64::MAX).unwrap();
        prop_assert_eq!(back_offset, offset);
        prop_assert!(back == map);
    }
}
