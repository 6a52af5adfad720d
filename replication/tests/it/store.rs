//! The log store's own guarantees beyond openraft's suite: a reopen gives
//! back the same log, vote, committed and purged ids; a damaged state file
//! refuses to open; a term a batch cannot carry is refused; entries are the
//! batches on disk, stamped; a purge keeps the data readable; in written
//! mode appends are reported before any fsync and the committed id waits
//! for the next state write.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, Membership};
use rill_protocol::batch::header::OFFSET_MAGIC;
use rill_protocol::batch::{BatchBuilder, BatchView};
use rill_replication::{
    default_state_path, BrokerNode, Entry, FlushMode, LogId, LogStore, RaftBatch, ReplicationError,
    Vote,
};
use rill_storage::PartitionLog;

use crate::support::{append, blank, data, normal, open_log, open_store, partition_dir, tempdir};

fn membership(term: u64, index: u64, nodes: &[u64]) -> Entry {
    let members = nodes.iter().copied().collect();
    let nodes: std::collections::BTreeMap<u64, BrokerNode> = nodes
        .iter()
        .map(|&n| {
            let addr = format!("broker-{n}:9093");
            (n, BrokerNode { addr })
        })
        .collect();
    let membership = Membership::new(vec![members], nodes).expect("valid membership");
    Entry {
        log_id: LogId::new_term_index(term, index),
        payload: EntryPayload::Membership(membership),
    }
}

/// Closes the log cleanly once the store and its flush tasks let go of it.
async fn close(log: Arc<PartitionLog>) {
    let mut log = log;
    for _ in 0..500 {
        match Arc::try_unwrap(log) {
            Ok(l) => return l.close().await.expect("close"),
            Err(still_shared) => log = still_shared,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("log still shared");
}

/// Everything the store reports, for comparing two opens.
async fn snapshot(store: &mut LogStore) -> impl PartialEq + std::fmt::Debug {
    let state = store.get_log_state().await.unwrap();
    let entries = store.try_get_log_entries(..).await.unwrap();
    let vote = store.read_vote().await.unwrap();
    let committed = store.read_committed().await.unwrap();
    (
        state.last_purged_log_id,
        state.last_log_id,
        entries,
        vote,
        committed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_gives_back_the_same_log_vote_committed_and_purged_ids() {
    let tmp = tempdir();
    let state_path = default_state_path(&partition_dir(tmp.path()));
    let log = open_log(tmp.path());
    let mut store = LogStore::open(log.clone(), &state_path).unwrap();
    store.save_vote(&Vote::new(2, 1)).await.unwrap();
    append(
        &mut store,
        vec![
            blank(1, 1),
            membership(1, 2, &[1, 2, 3]),
            normal(1, 3, data(3, 3)),
        ],
    )
    .await
    .unwrap();
    // A leader change: the tail is replaced by the new leader's entries.
    append(
        &mut store,
        vec![normal(1, 4, data(1, 4)), normal(1, 5, data(2, 5))],
    )
    .await
    .unwrap();
    store
        .truncate_after(Some(LogId::new_term_index(1, 3)))
        .await
        .unwrap();
    let vote = Vote::new_committed(2, 2);
    store.save_vote(&vote).await.unwrap();
    append(
        &mut store,
        (4..12)
            .map(|i| normal(2, i, data(1 + i as usize % 3, i)))
            .collect(),
    )
    .await
    .unwrap();
    store
        .save_committed(Some(LogId::new_term_index(2, 9)))
        .await
        .unwrap();
    store.purge(LogId::new_term_index(1, 2)).await.unwrap();
    let before = snapshot(&mut store).await;
    drop(store);
    close(log).await;

    let mut store = open_store(tmp.path()).unwrap();
    let after = snapshot(&mut store).await;
    assert_eq!(before, after);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(LogId::new_term_index(1, 2)));
    assert_eq!(state.last_log_id, Some(LogId::new_term_index(2, 11)));
    let entries = store.try_get_log_entries(..).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (3..12).collect::<Vec<_>>());
    assert_eq!(
        store.read_committed().await.unwrap(),
        Some(LogId::new_term_index(2, 9))
    );
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));

    // It goes on where it stopped, and a purge past the end re-anchors.
    append(&mut store, vec![normal(2, 12, data(1, 12))])
        .await
        .unwrap();
    store.purge(LogId::new_term_index(3, 20)).await.unwrap();
    append(&mut store, vec![blank(4, 21)]).await.unwrap();
    let log = store.log().clone();
    let before = snapshot(&mut store).await;
    drop(store);
    close(log).await;
    let mut store = open_store(tmp.path()).unwrap();
    assert_eq!(before, snapshot(&mut store).await);
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0], blank(4, 21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_refuses_to_open() {
    let tmp = tempdir();
    let state_path = default_state_path(&partition_dir(tmp.path()));
    {
        let mut store = open_store(tmp.path()).unwrap();
        append(&mut store, vec![blank(1, 1), normal(1, 2, data(2, 2))])
            .await
            .unwrap();
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
    }
    let good = std::fs::read(&state_path).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x20;
    for (what, bytes) in [
        ("a flipped bit", flipped),
        ("a torn write", good[..good.len() / 2].to_vec()),
        ("an empty file", Vec::new()),
    ] {
        std::fs::write(&state_path, &bytes).unwrap();
        let err = open_store(tmp.path()).expect_err(what);
        assert!(
            matches!(err, ReplicationError::StateFileCorrupt { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains("is damaged"), "{what}: {err}");
    }
    // Gone altogether while the log holds entries: refused too, not taken
    // for a fresh log.
    std::fs::remove_file(&state_path).unwrap();
    let err = open_store(tmp.path()).expect_err("no state file");
    assert!(matches!(err, ReplicationError::LogMismatch { .. }), "{err}");
    std::fs::write(&state_path, &good).unwrap();
    open_store(tmp.path()).expect("the intact file opens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_a_batch_cannot_carry_is_refused() {
    let tmp = tempdir();
    let mut store = open_store(tmp.path()).unwrap();
    let too_large = u64::from(u32::MAX) + 1;
    let err = append(&mut store, vec![blank(too_large, 1)])
        .await
        .expect_err("term above u32::MAX");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("above the largest"), "{err}");
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
    assert_eq!(store.log().log_end_offset(), 0, "nothing written");

    let largest = u64::from(u32::MAX);
    append(&mut store, vec![blank(largest, 1)]).await.unwrap();
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries[0].log_id, LogId::new_term_index(largest, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_the_batches_on_disk_with_offset_and_epoch_stamped() {
    let tmp = tempdir();
    let mut store = open_store(tmp.path()).unwrap();
    let sent: Vec<RaftBatch> = (0..6).map(|i| data(1 + i % 4, i as u64)).collect();
    let mut entries = vec![blank(3, 10)];
    entries.extend(
        sent.iter()
            .enumerate()
            .map(|(i, b)| normal(3 + i as u64 / 3, 11 + i as u64, b.clone())),
    );
    append(&mut store, entries).await.unwrap();

    let log = store.log().clone();
    let mut offset = 0;
    let mut on_disk = Vec::new();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).unwrap();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let view = BatchView::new(rest).unwrap();
            view.validate().unwrap();
            let h = *view.header();
            on_disk.push((h, rest[..view.len()].to_vec()));
            offset = h.next_offset();
            rest = &rest[view.len()..];
        }
    }
    assert_eq!(on_disk.len(), 7);
    let (h, _) = &on_disk[0];
    assert!(h.is_control());
    assert_eq!((h.base_offset, h.leader_epoch), (0, 3));
    let mut expected_base = 1;
    for (i, ((h, bytes), sent)) in on_disk[1..].iter().zip(&sent).enumerate() {
        assert!(!h.is_control());
        assert_eq!(h.base_offset, expected_base, "base offset = the log end");
        assert_eq!(h.leader_epoch, 3 + i as u32 / 3, "leader epoch = the term");
        // Only the fields outside the CRC were stamped: the rest is the
        // producer's batch byte for byte.
        assert_eq!(bytes.len(), sent.as_bytes().len());
        assert_eq!(bytes[OFFSET_MAGIC..], sent.as_bytes()[OFFSET_MAGIC..]);
        expected_base = h.next_offset();
    }
    // And the entries read back are those batches, stamped.
    let read = store.try_get_log_entries(11..).await.unwrap();
    for (entry, (_, bytes)) in read.iter().zip(&on_disk[1..]) {
        let EntryPayload::Normal(batch) = &entry.payload else {
            panic!("a normal entry");
        };
        assert_eq!(&batch.as_bytes()[..], &bytes[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_keeps_the_partition_data_readable() {
    let tmp = tempdir();
    let mut store = open_store(tmp.path()).unwrap();
    let entries: Vec<Entry> = (1..=8).map(|i| normal(1, i, data(2, i))).collect();
    append(&mut store, entries).await.unwrap();
    let log = store.log().clone();
    let end = log.log_end_offset();
    store.purge(LogId::new_term_index(1, 5)).await.unwrap();

    let left = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(left.first().map(|e| e.log_id.index), Some(6));
    assert_eq!(left.len(), 3);
    // The purged entries' batches are still partition data.
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end));
    let first = log.read(0, 1).unwrap();
    let h = *BatchView::new(&first).unwrap().header();
    assert_eq!((h.base_offset, h.record_count), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_batches_are_never_taken_as_data() {
    let batch = BatchBuilder::control(0, b"{}").unwrap().freeze();
    assert!(matches!(
        RaftBatch::new(batch),
        Err(ReplicationError::ControlBatchAsData)
    ));
    let tmp = tempdir();
    let mut store = open_store(tmp.path()).unwrap();
    let bad = append(&mut store, vec![blank(1, 1), blank(1, 3)])
        .await
        .expect_err("a hole");
    assert!(bad.to_string().contains("does not continue"), "{bad}");
}

// Written mode, through the storage trait on a real log whose fsync policy
// is `never`: the fsync counter shows that no append and no commit waited
// for a sync, and a second open of the state file shows the committed id
// is saved only by the next state write, after the log is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_mode_reports_appends_before_any_fsync_and_saves_committed_with_the_next_state_write(
) {
    let tmp = tempdir();
    let state_path = default_state_path(&partition_dir(tmp.path()));
    let log = open_log(tmp.path());
    let mut store = LogStore::open(log.clone(), &state_path)
        .unwrap()
        .with_flush_mode(FlushMode::Written);
    assert_eq!(store.flush_mode(), FlushMode::Written);
    store.save_vote(&Vote::new(1, 1)).await.unwrap();
    let syncs = log.stats().syncs;
    append(
        &mut store,
        vec![
            blank(1, 1),
            normal(1, 2, data(3, 2)),
            normal(1, 3, data(2, 3)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(log.stats().syncs, syncs, "reported stored before any fsync");
    let committed = Some(LogId::new_term_index(1, 3));
    store.save_committed(committed).await.unwrap();
    assert_eq!(log.stats().syncs, syncs, "a commit waits for no fsync");
    assert_eq!(store.read_committed().await.unwrap(), committed);
    let on_disk = || {
        LogStore::open(log.clone(), &state_path)
            .unwrap()
            .committed()
    };
    assert_eq!(
        on_disk(),
        None,
        "the committed id is not written per commit"
    );

    store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    assert!(
        log.stats().syncs > syncs,
        "a state write flushes the log before it"
    );
    assert_eq!(on_disk(), committed, "saved with the next state write");
    drop(store);
    close(log).await;
}
