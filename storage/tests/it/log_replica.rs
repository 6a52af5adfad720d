//! A replica's log, fed its leader's batches through `append_replica`, on
//! real files and every backend: it ends byte-identical to the leader's
//! (segment files, offsets), refuses a batch that does not continue it
//! without writing anything, holds the same idempotent-producer state as
//! the leader (so it answers a producer's retry as the leader would), and
//! can be truncated and fed again from the cut, as a follower does after a
//! leader change.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rill_protocol::batch::{stamp_base_offset, BatchBuilder, BatchError, Compression};
use rill_storage::io::IoBackend;
use rill_storage::{Durability, PartitionLog, ProducerError, StorageError};

use crate::log_support::{
    backends, batch, now_ms, read_all, runtime, segment_files, small_config, split_batches,
    std_backend, tempdir,
};

/// A leader's and a replica's log in fresh directories (kept alive by the
/// returned guards), both with 4 KiB segments on `backend`.
fn leader_and_replica(
    backend: Arc<dyn IoBackend>,
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    PartitionLog,
    PartitionLog,
) {
    let (leader_dir, replica_dir) = (tempdir(), tempdir());
    let leader =
        PartitionLog::open(leader_dir.path(), small_config(4096), backend.clone()).unwrap();
    let replica = PartitionLog::open(replica_dir.path(), small_config(4096), backend).unwrap();
    (leader_dir, replica_dir, leader, replica)
}

const PID: i64 = 7_000;
const OTHER_PID: i64 = 7_001;

/// An idempotent batch of `records` records from `pid` at `epoch` whose
/// first sequence is `seq`, values derived from `seed`.
fn idem(pid: i64, epoch: i16, seq: i32, records: usize, seed: u64) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, epoch, seq);
    for i in 0..records {
        let value = format!("p{pid}-e{epoch}-s{seq}-{i}-{seed}-{}", "x".repeat(40));
        b.push(now_ms(), Some(b"key"), value.as_bytes(), &[]);
    }
    b.finish_into_mut().expect("valid batch")
}

/// What a producer sent the leader, in order: plain batches of both codecs
/// and two idempotent producers (one bumping its epoch), enough to roll
/// small segments several times.
fn producer_batches() -> Vec<BytesMut> {
    let mut out = Vec::new();
    let (mut seq, mut other_seq, mut other_epoch) = (0, 0, 0);
    for i in 0..24u64 {
        let records = 1 + (i % 3) as usize;
        out.push(match i % 4 {
            0 => batch(records, 300, now_ms(), Compression::None, i),
            1 => batch(records, 900, now_ms(), Compression::Zstd, i),
            2 => {
                let b = idem(PID, 0, seq, records, i);
                seq += records as i32;
                b
            }
            _ => {
                if i == 15 {
                    other_epoch += 1;
                    other_seq = 0;
                }
                let b = idem(OTHER_PID, other_epoch, other_seq, records, i);
                other_seq += records as i32;
                b
            }
        });
    }
    out
}

/// Appends `sent` to the leader as a producer would; returns where each
/// landed.
fn lead(
    leader: &PartitionLog,
    rt: &tokio::runtime::Runtime,
    sent: &[BytesMut],
) -> Vec<rill_storage::AppendInfo> {
    sent.iter()
        .map(|b| {
            rt.block_on(leader.append(b.clone(), Durability::Written))
                .unwrap()
        })
        .collect()
}

/// The leader's batches from `from` on, as a follower fetches them: read
/// back with `read` (a few at a time) and split into batches.
fn fetch(leader: &PartitionLog, from: u64) -> Vec<BytesMut> {
    let mut offset = from;
    let mut out = Vec::new();
    while offset < leader.log_end_offset() {
        let bytes = leader.read(offset, 4096).unwrap();
        for (h, b) in split_batches(&bytes) {
            offset = h.next_offset();
            out.push(BytesMut::from(&b[..]));
        }
    }
    out
}

/// Feeds `batches` to the replica, checking each lands where its leader
/// put it; every third one is appended `Synced`, so group commit runs too.
fn follow(replica: &PartitionLog, rt: &tokio::runtime::Runtime, batches: &[BytesMut], what: &str) {
    for (i, b) in batches.iter().enumerate() {
        let header = split_batches(b)[0].0;
        let durability = if i % 3 == 2 {
            Durability::Synced
        } else {
            Durability::Written
        };
        let info = rt
            .block_on(replica.append_replica(b.clone(), durability))
            .unwrap();
        assert_eq!(info.base_offset, header.base_offset, "{what}");
        assert_eq!(info.last_offset, header.last_offset(), "{what}");
        assert!(!info.duplicate, "{what}: a replica never deduplicates");
        assert!(info.position.is_some(), "{what}");
    }
}

/// The segment files of `dir` as (file name, bytes), in offset order.
fn segments_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    segment_files(dir)
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect()
}

#[test]
fn replica_fed_the_leaders_batches_ends_byte_identical() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (leader_dir, replica_dir) = (tempdir(), tempdir());
        let config = small_config(4096);
        let leader =
            PartitionLog::open(leader_dir.path(), config.clone(), backend.clone()).unwrap();
        let replica = PartitionLog::open(replica_dir.path(), config.clone(), backend).unwrap();
        lead(&leader, &rt, &producer_batches());
        assert!(leader.segment_count() >= 3, "{name}: the leader rolled");
        follow(&replica, &rt, &fetch(&leader, 0), name);
        assert_eq!(replica.log_end_offset(), leader.log_end_offset(), "{name}");
        assert_eq!(replica.segment_count(), leader.segment_count(), "{name}");
        assert_eq!(
            read_all(&replica, 1 << 20),
            read_all(&leader, 1 << 20),
            "{name}: same batches at the same offsets"
        );
        // Closed, so direct I/O's padding is trimmed from both.
        rt.block_on(leader.close()).unwrap();
        rt.block_on(replica.close()).unwrap();
        let leader_files = segments_of(leader_dir.path());
        assert!(leader_files.len() >= 3, "{name}");
        assert_eq!(
            segments_of(replica_dir.path()),
            leader_files,
            "{name}: segment files byte-identical"
        );
        let reopened = PartitionLog::open(replica_dir.path(), config, std_backend()).unwrap();
        let leader =
            PartitionLog::open(leader_dir.path(), small_config(4096), std_backend()).unwrap();
        assert_eq!(
            read_all(&reopened, 1 << 20),
            read_all(&leader, 1 << 20),
            "{name}: after a reopen"
        );
    }
}

#[test]
fn replica_refuses_a_batch_that_does_not_continue_the_log() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (_leader_dir, replica_dir, leader, replica) = leader_and_replica(backend);
        lead(&leader, &rt, &producer_batches());
        let copies = fetch(&leader, 0);
        follow(&replica, &rt, &copies[..5], name);
        let end = replica.log_end_offset();
        let (stats, files, held) = (
            replica.stats(),
            segments_of(replica_dir.path()),
            read_all(&replica, 1 << 20),
        );
        // One batch skipped (a gap), one already copied (a resend), and
        // one far past the end.
        let mut far = copies[5].clone();
        stamp_base_offset(&mut far, end + 1_000);
        for wrong in [&copies[6], &copies[2], &far] {
            let got = split_batches(wrong)[0].0.base_offset;
            for durability in [Durability::Written, Durability::Synced] {
                let err = rt
                    .block_on(replica.append_replica(wrong.clone(), durability))
                    .unwrap_err();
                match &err {
                    StorageError::OffsetMismatch {
                        expected,
                        got: refused,
                    } => assert_eq!((*expected, *refused), (end, got), "{name}"),
                    other => panic!("{name}: expected OffsetMismatch, got {other:?}"),
                }
                let message = err.to_string();
                assert!(
                    message.contains(&end.to_string()) && message.contains(&got.to_string()),
                    "{name}: {message}"
                );
            }
        }
        assert_eq!(replica.log_end_offset(), end, "{name}: nothing appended");
        assert_eq!(replica.stats().appends, stats.appends, "{name}");
        assert_eq!(
            replica.stats().bytes_appended,
            stats.bytes_appended,
            "{name}"
        );
        assert_eq!(read_all(&replica, 1 << 20), held, "{name}");
        assert_eq!(
            segments_of(replica_dir.path()),
            files,
            "{name}: nothing written"
        );
        // The log is not failed by it: the right batch continues it.
        assert!(!replica.stats().failed, "{name}");
        follow(&replica, &rt, &copies[5..], name);
        assert_eq!(
            read_all(&replica, 1 << 20),
            read_all(&leader, 1 << 20),
            "{name}"
        );
    }
}

/// The CRC is checked as for a producer's batch: a copy damaged on the way
/// is refused, not written.
#[test]
fn replica_refuses_a_batch_failing_its_crc() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (_leader_dir, _replica_dir, leader, replica) = leader_and_replica(backend);
        lead(&leader, &rt, &producer_batches()[..3]);
        let copies = fetch(&leader, 0);
        let mut damaged = copies[0].clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        let err = rt
            .block_on(replica.append_replica(damaged, Durability::Written))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::InvalidBatch(BatchError::CrcMismatch { .. })
            ),
            "{name}: {err:?}"
        );
        assert_eq!(replica.log_end_offset(), 0, "{name}");
        assert_eq!(replica.stats().appends, 0, "{name}");
        follow(&replica, &rt, &copies, name);
        assert_eq!(replica.log_end_offset(), leader.log_end_offset(), "{name}");
    }
}

#[test]
fn replica_producer_state_equals_the_leaders_and_answers_retries() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (_leader_dir, _replica_dir, leader, replica) = leader_and_replica(backend);
        let sent = producer_batches();
        let infos = lead(&leader, &rt, &sent);
        // A retry on the leader is answered there and never reaches the
        // log, so the replica never sees it.
        let last = sent.len() - 2; // the last batch of PID
        assert!(
            rt.block_on(leader.append(sent[last].clone(), Durability::Written))
                .unwrap()
                .duplicate,
            "{name}"
        );
        follow(&replica, &rt, &fetch(&leader, 0), name);
        for pid in [PID, OTHER_PID] {
            let state = leader.producer_state(pid);
            assert!(state.is_some(), "{name}: the leader remembers {pid}");
            assert_eq!(replica.producer_state(pid), state, "{name}: producer {pid}");
        }
        assert_eq!(
            replica.stats().producers,
            leader.stats().producers,
            "{name}"
        );
        // The producer's retry of its last batch, sent to the replica (now
        // leading): answered as a duplicate with the original offsets.
        let end = replica.log_end_offset();
        for durability in [Durability::Written, Durability::Synced] {
            let again = rt
                .block_on(replica.append(sent[last].clone(), durability))
                .unwrap();
            assert!(again.duplicate, "{name}: recognised as a retry");
            assert_eq!(again.base_offset, infos[last].base_offset, "{name}");
            assert_eq!(again.last_offset, infos[last].last_offset, "{name}");
            assert_eq!(again.position, None, "{name}: not written again");
        }
        assert_eq!(replica.log_end_offset(), end, "{name}");
        // And the producer's next batch continues its sequence there.
        let (_, kept) = replica.producer_state(PID).unwrap();
        let next_seq = kept.last().unwrap().last_seq + 1;
        let next = rt
            .block_on(replica.append(idem(PID, 0, next_seq, 1, 99), Durability::Written))
            .unwrap();
        assert!(!next.duplicate, "{name}");
        assert_eq!(next.base_offset, end, "{name}");
    }
}

/// The leader decided: a batch the producer checks would refuse or answer
/// as a duplicate on this log is still written and recorded, so the
/// replica holds what its leader holds, and its state is the one a replay
/// of that log gives.
#[test]
fn replica_never_refuses_or_deduplicates_its_leaders_batches() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let replica = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        // An unknown producer not starting at sequence 0 (a leader whose
        // log start moved past its first batches), then the same sequences
        // again (a leader that took them after losing the state), then an
        // older epoch after a newer one.
        let copies = [
            idem(PID, 1, 5, 2, 0),
            idem(PID, 1, 5, 2, 1),
            idem(PID, 0, 7, 1, 2),
        ];
        for (i, copy) in copies.iter().enumerate() {
            let base = replica.log_end_offset();
            // As a leader, this log would not write it.
            let as_leader = rt.block_on(replica.append(copy.clone(), Durability::Written));
            match (i, &as_leader) {
                (0, Err(StorageError::Producer(ProducerError::UnknownProducerId { .. }))) => {}
                (1, Ok(info)) if info.duplicate => {}
                (2, Err(StorageError::Producer(ProducerError::InvalidProducerEpoch { .. }))) => {}
                _ => panic!("{name}: batch {i} appended as a leader: {as_leader:?}"),
            }
            assert_eq!(replica.log_end_offset(), base, "{name}");
            // Stamped as its leader did.
            let mut copy = copy.clone();
            stamp_base_offset(&mut copy, base);
            let info = rt
                .block_on(replica.append_replica(copy, Durability::Written))
                .unwrap();
            assert_eq!(info.base_offset, base, "{name}");
            assert!(!info.duplicate, "{name}: batch {i}");
        }
        assert_eq!(replica.log_end_offset(), 5, "{name}");
        assert_eq!(read_all(&replica, 1 << 20).len(), 3, "{name}");
        let live = replica.producer_state(PID);
        assert_eq!(live.as_ref().map(|(epoch, _)| *epoch), Some(0), "{name}");
        // What a reopen rebuilds from the log (no clean close: a replay).
        drop(replica);
        let reopened =
            PartitionLog::open(dir.path(), small_config(1 << 20), std_backend()).unwrap();
        assert_eq!(reopened.producer_state(PID), live, "{name}");
    }
}

/// A follower whose log diverged truncates to where it agrees with the
/// leader and copies the leader's batches again from the cut.
#[test]
fn replica_truncated_takes_the_leaders_batches_again_from_the_cut() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (leader_dir, replica_dir, leader, replica) = leader_and_replica(backend);
        lead(&leader, &rt, &producer_batches());
        let copies = fetch(&leader, 0);
        follow(&replica, &rt, &copies, name);
        let segments = replica.segment_count();
        for cut_batch in [17usize, 9, 0] {
            let header = split_batches(&copies[cut_batch])[0].0;
            // Inside the batch: the whole batch goes.
            let inside = header.base_offset + u64::from(header.last_offset_delta);
            rt.block_on(replica.truncate_to(inside)).unwrap();
            assert_eq!(replica.log_end_offset(), header.base_offset, "{name}");
            if cut_batch > 0 {
                // A batch the cut kept is no longer next.
                let err = rt
                    .block_on(
                        replica.append_replica(copies[cut_batch - 1].clone(), Durability::Written),
                    )
                    .unwrap_err();
                assert!(
                    matches!(err, StorageError::OffsetMismatch { .. }),
                    "{name}: {err:?}"
                );
            }
            follow(&replica, &rt, &fetch(&leader, header.base_offset), name);
            assert_eq!(
                read_all(&replica, 1 << 20),
                read_all(&leader, 1 << 20),
                "{name}: after truncating to {inside}"
            );
            assert_eq!(replica.segment_count(), segments, "{name}");
            for pid in [PID, OTHER_PID] {
                assert_eq!(
                    replica.producer_state(pid),
                    leader.producer_state(pid),
                    "{name}: producer {pid} after truncating to {inside}"
                );
            }
        }
        rt.block_on(leader.close()).unwrap();
        rt.block_on(replica.close()).unwrap();
        assert_eq!(
            segments_of(replica_dir.path()),
            segments_of(leader_dir.path()),
            "{name}: segment files byte-identical"
        );
    }
}

/// A replicator spawns these on a multi-threaded runtime.
#[test]
fn replica_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let dir = tempdir();
    let log = PartitionLog::open(dir.path(), small_config(4096), std_backend()).unwrap();
    let append = log.append_replica(
        batch(1, 10, now_ms(), Compression::None, 0),
        Durability::Written,
    );
    send(&append);
    let truncate = log.truncate_to(0);
    send(&truncate);
    let rt = runtime();
    rt.block_on(append).unwrap();
    rt.block_on(truncate).unwrap();
    assert_eq!(log.log_end_offset(), 0);
}
