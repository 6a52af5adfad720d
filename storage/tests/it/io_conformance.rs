//! Backend conformance: the same named checks, on real files in a temp dir,
//! run against every I/O backend (std, io_uring, crash simulator), so they
//! all honour the `LogFile` contract the log is written against.
//!
//! Where the kernel refuses io_uring the uring cases print "skipped uring:
//! <error>" and pass; set `RILL_REQUIRE_URING=1` to make that a failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use rill_storage::io::{
    open_backend_with, BackendKind, Completion, CrashBackend, IoBackend, IoBackendChoice,
};
use tempfile::TempDir;

type Backend = Arc<dyn IoBackend>;

/// I/O threads of the multi-lane variants: more lanes than the checks' few
/// directories would leave lanes idle, fewer would not mix them.
const LANES: usize = 3;

/// Longest any single check may wait on a completion: a hang is a failure.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(30);

/// The backend a variant names: kind, lanes and direct I/O from the name
/// (`std`, `uring`, each alone, `_lanes` or `_direct`), or the crash
/// simulator. `None` (with a line on stderr) where io_uring is refused.
fn make_backend(name: &str) -> Option<Backend> {
    if name == "crash" {
        return Some(Arc::new(CrashBackend::new(None).expect("crash backend")));
    }
    let (choice, variant) = match name.split_once('_') {
        Some((kind, variant)) => (kind, variant),
        None => (name, ""),
    };
    let choice = match choice {
        "std" => IoBackendChoice::Std,
        "uring" => IoBackendChoice::Uring,
        other => panic!("unknown backend {other}"),
    };
    let (threads, direct) = match variant {
        "" => (1, false),
        "lanes" => (LANES, false),
        "direct" => (LANES, true),
        other => panic!("unknown variant {other}"),
    };
    match open_backend_with(choice, threads, direct) {
        Ok(b) => Some(b),
        Err(e) if choice == IoBackendChoice::Std => panic!("std backend: {e}"),
        Err(e) if std::env::var_os("RILL_REQUIRE_URING").is_some() => {
            panic!("io_uring required but unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipped uring: {e}");
            None
        }
    }
}

fn run<F, Fut>(name: &str, check: F)
where
    F: FnOnce(Backend, TempDir) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = make_backend(name) else {
        return;
    };
    let expected_kind = match name {
        "std" | "std_lanes" | "std_direct" => BackendKind::Std,
        "uring" | "uring_lanes" | "uring_direct" => BackendKind::Uring,
        _ => BackendKind::Crash,
    };
    assert_eq!(backend.kind(), expected_kind);
    let direct = name.ends_with("_direct");
    // Under target/, on the build's disk: fdatasync there costs what it
    // costs in production, which is what group commit is about.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(check(Arc::clone(&backend), dir));
    // The direct variants must really have written with O_DIRECT (the
    // temp dir is on the build's disk, which takes it), not fallen back.
    assert_eq!(
        backend.stats().direct_files > 0,
        direct,
        "files opened with O_DIRECT: {}",
        backend.stats().direct_files
    );
}

async fn done(c: Completion) -> std::io::Result<()> {
    tokio::time::timeout(COMPLETION_TIMEOUT, c)
        .await
        .expect("completion did not resolve in time")
}

/// Deterministic, position-dependent bytes, so a misplaced write shows.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9E37_79B9)).to_le_bytes()[0] ^ (i >> 8) as u8
        })
        .collect()
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        $(
            mod $check {
                #[test]
                fn std() {
                    super::run("std", super::$check);
                }
                #[test]
                fn uring() {
                    super::run("uring", super::$check);
                }
                #[test]
                fn crash() {
                    super::run("crash", super::$check);
                }
                #[test]
                fn std_lanes() {
                    super::run("std_lanes", super::$check);
                }
                #[test]
                fn uring_lanes() {
                    super::run("uring_lanes", super::$check);
                }
                #[test]
                fn std_direct() {
                    super::run("std_direct", super::$check);
                }
                #[test]
                fn uring_direct() {
                    super::run("uring_direct", super::$check);
                }
            }
        )*
    };
}

conformance!(
    write_then_read_round_trips,
    concurrent_writes_from_many_tasks_all_land,
    completions_of_one_file_arrive_in_submission_order,
    overlapping_queued_writes_apply_in_submission_order,
    sync_after_writes_succeeds_and_is_counted,
    large_write_lands_whole,
    set_len_truncates_and_extends,
    closed_file_refuses_writes_cleanly,
    file_outlives_its_backend,
    group_commit_merges_concurrent_syncs,
    files_of_many_directories_all_land,
);

async fn write_then_read_round_trips(b: Backend, dir: TempDir) {
    let path = dir.path().join("00000000000000000000.log");
    let f = b.open(&path).unwrap();
    assert_eq!(f.len().unwrap(), 0);
    let first = pattern(1, 300);
    let second = pattern(2, 77);
    done(f.write_at(0, Bytes::from(first.clone())))
        .await
        .unwrap();
    // Leaves a hole at 300..1000, which must read as zeros.
    done(f.write_at(1000, Bytes::from(second.clone())))
        .await
        .unwrap();
    assert_eq!(f.len().unwrap(), 1077);
    let mut buf = vec![0xAA; 1077];
    f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..300], &first[..]);
    assert!(buf[300..1000].iter().all(|&x| x == 0));
    assert_eq!(&buf[1000..], &second[..]);
    // Reading past the end is an error, not a short read.
    let mut past = [0u8; 8];
    let err = f.read_at(1075, &mut past).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    // Reopening sees the same bytes and does not truncate.
    drop(f);
    let again = b.open(&path).unwrap();
    assert_eq!(again.len().unwrap(), 1077);
    let mut head = vec![0u8; 300];
    again.read_at(0, &mut head).unwrap();
    assert_eq!(head, first);
}

async fn concurrent_writes_from_many_tasks_all_land(b: Backend, dir: TempDir) {
    const WRITES: usize = 1000;
    const TASKS: usize = 8;
    const RECORD_BYTES: usize = 40;
    let f = b.open(&dir.path().join("concurrent.log")).unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            // Queue all of this task's writes first, then await them, so
            // the tasks' writes interleave in the backend's queue.
            let completions: Vec<Completion> = (t..WRITES)
                .step_by(TASKS)
                .map(|i| {
                    f.write_at(
                        (i * RECORD_BYTES) as u64,
                        Bytes::from(pattern(i as u64, RECORD_BYTES)),
                    )
                })
                .collect();
            for c in completions {
                done(c).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(f.len().unwrap(), (WRITES * RECORD_BYTES) as u64);
    let mut all = vec![0u8; WRITES * RECORD_BYTES];
    f.read_at(0, &mut all).unwrap();
    for (i, record) in all.chunks(RECORD_BYTES).enumerate() {
        assert_eq!(record, &pattern(i as u64, RECORD_BYTES)[..], "record {i}");
    }
}

async fn completions_of_one_file_arrive_in_submission_order(b: Backend, dir: TempDir) {
    // More writes than one drain takes, across two files, so ordering must
    // hold across drains and between files.
    const WRITES: usize = 600;
    const RECORD_BYTES: usize = 1024;
    let a = b.open(&dir.path().join("a.log")).unwrap();
    let c = b.open(&dir.path().join("c.log")).unwrap();
    let mut completions = Vec::new();
    for i in 0..WRITES {
        let f = if i % 3 == 0 { &c } else { &a };
        let data = Bytes::from(pattern(i as u64, RECORD_BYTES));
        completions.push(f.write_at((i * RECORD_BYTES) as u64, data));
    }
    // Await a handful of writes from the back to the front; whenever one has
    // resolved, every write submitted before it must already be resolved.
    let mut waker_cx = Context::from_waker(Waker::noop());
    let probes = [WRITES / 5, WRITES / 2, WRITES - 1];
    let mut slots: Vec<Option<Completion>> = completions.into_iter().map(Some).collect();
    for &probe in &probes {
        let c = slots[probe].take().unwrap();
        done(c).await.unwrap();
        // Unconstrained: tokio's cooperative budget would otherwise turn a
        // ready channel into Pending after ~128 polls in one task.
        tokio::task::unconstrained(async {
            for (i, slot) in slots.iter_mut().enumerate().take(probe) {
                if let Some(mut c) = slot.take() {
                    match Pin::new(&mut c).poll(&mut waker_cx) {
                        Poll::Ready(r) => r.unwrap(),
                        Poll::Pending => {
                            panic!("write {i} unresolved after write {probe} resolved")
                        }
                    }
                }
            }
        })
        .await;
    }
    let mut buf = vec![0u8; RECORD_BYTES];
    for i in [0, 1, WRITES / 2, WRITES - 1] {
        let f = if i % 3 == 0 { &c } else { &a };
        f.read_at((i * RECORD_BYTES) as u64, &mut buf).unwrap();
        assert_eq!(buf, pattern(i as u64, RECORD_BYTES), "write {i}");
    }
}

async fn overlapping_queued_writes_apply_in_submission_order(b: Backend, dir: TempDir) {
    const ROUNDS: u64 = 300;
    const RECORD_BYTES: usize = 512;
    let f = b.open(&dir.path().join("overwrite.log")).unwrap();
    // All queued before any is awaited: the backend may run them together,
    // but the last one must win, and a half-overlapping one must land over
    // its predecessor.
    let mut completions = Vec::new();
    for round in 0..ROUNDS {
        let pos = (round % 3) * (RECORD_BYTES as u64 / 2);
        completions.push(f.write_at(pos, Bytes::from(pattern(round, RECORD_BYTES))));
    }
    for c in completions {
        done(c).await.unwrap();
    }
    let mut expected = vec![0u8; RECORD_BYTES * 2];
    for round in 0..ROUNDS {
        let pos = ((round % 3) * (RECORD_BYTES as u64 / 2)) as usize;
        expected[pos..pos + RECORD_BYTES].copy_from_slice(&pattern(round, RECORD_BYTES));
    }
    let mut got = vec![0u8; expected.len()];
    f.read_at(0, &mut got).unwrap();
    assert!(got == expected, "overlapping writes applied out of order");
}

async fn sync_after_writes_succeeds_and_is_counted(b: Backend, dir: TempDir) {
    let f = b.open(&dir.path().join("sync.log")).unwrap();
    let before = b.stats();
    done(f.write_at(0, Bytes::from(pattern(3, 4096))))
        .await
        .unwrap();
    done(f.sync_data()).await.unwrap();
    let after_one = b.stats();
    assert_eq!(after_one.data_syncs, before.data_syncs + 1);
    done(f.write_at(4096, Bytes::from(pattern(4, 100))))
        .await
        .unwrap();
    done(f.sync_data()).await.unwrap();
    assert_eq!(b.stats().data_syncs, before.data_syncs + 2);
    b.sync_dir(dir.path()).unwrap();
    assert_eq!(b.stats().dir_syncs, before.dir_syncs + 1);
    let mut tail = vec![0u8; 100];
    f.read_at(4096, &mut tail).unwrap();
    assert_eq!(tail, pattern(4, 100));
}

async fn large_write_lands_whole(b: Backend, dir: TempDir) {
    // Bigger than any pipe or socket buffer and split across many pages; at
    // an unaligned position. A backend that dropped a short write's
    // remainder would leave a zero tail.
    const LARGE_BYTES: usize = 8 << 20;
    const POS: u64 = 4096 + 3;
    let f = b.open(&dir.path().join("large.log")).unwrap();
    let data = pattern(5, LARGE_BYTES);
    done(f.write_at(POS, Bytes::from(data.clone())))
        .await
        .unwrap();
    done(f.sync_data()).await.unwrap();
    assert_eq!(f.len().unwrap(), POS + LARGE_BYTES as u64);
    let mut got = vec![0u8; LARGE_BYTES];
    f.read_at(POS, &mut got).unwrap();
    assert!(got == data, "8 MiB write did not read back intact");
}

async fn set_len_truncates_and_extends(b: Backend, dir: TempDir) {
    let f = b.open(&dir.path().join("len.log")).unwrap();
    let data = pattern(6, 1000);
    done(f.write_at(0, Bytes::from(data.clone())))
        .await
        .unwrap();
    f.set_len(400).unwrap();
    assert_eq!(f.len().unwrap(), 400);
    let mut kept = vec![0u8; 400];
    f.read_at(0, &mut kept).unwrap();
    assert_eq!(kept, &data[..400]);
    let mut gone = [0u8; 1];
    assert!(f.read_at(400, &mut gone).is_err());
    f.set_len(2000).unwrap();
    assert_eq!(f.len().unwrap(), 2000);
    let mut extended = vec![0xFFu8; 1600];
    f.read_at(400, &mut extended).unwrap();
    assert!(
        extended.iter().all(|&x| x == 0),
        "extension must read as zeros"
    );
    // Writes after a truncation land where asked.
    done(f.write_at(400, Bytes::from_static(b"after")))
        .await
        .unwrap();
    let mut after = [0u8; 5];
    f.read_at(400, &mut after).unwrap();
    assert_eq!(&after, b"after");
}

async fn closed_file_refuses_writes_cleanly(b: Backend, dir: TempDir) {
    let f = b.open(&dir.path().join("closed.log")).unwrap();
    done(f.write_at(0, Bytes::from_static(b"before close")))
        .await
        .unwrap();
    f.close();
    let err = done(f.write_at(12, Bytes::from_static(b"after")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is closed"),
        "unexpected error: {err}"
    );
    let err = done(f.sync_data()).await.unwrap_err();
    assert!(
        err.to_string().contains("is closed"),
        "unexpected error: {err}"
    );
    assert!(f.set_len(0).is_err());
    // Nothing reached the file; a reader still sees the old bytes.
    assert_eq!(f.len().unwrap(), 12);
    let mut buf = [0u8; 12];
    f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"before close");
    // Another handle on the same path is unaffected.
    let reopened = b.open(&dir.path().join("closed.log")).unwrap();
    done(reopened.write_at(12, Bytes::from_static(b"!")))
        .await
        .unwrap();
    assert_eq!(reopened.len().unwrap(), 13);
}

async fn file_outlives_its_backend(b: Backend, dir: TempDir) {
    let f = b.open(&dir.path().join("orphan.log")).unwrap();
    drop(b);
    done(f.write_at(0, Bytes::from_static(b"still here")))
        .await
        .unwrap();
    done(f.sync_data()).await.unwrap();
    let mut buf = [0u8; 10];
    f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"still here");
}

async fn group_commit_merges_concurrent_syncs(b: Backend, dir: TempDir) {
    const TASKS: usize = 64;
    const RECORD_BYTES: usize = 256;
    // Far fewer than one fdatasync per request: each sync in flight covers
    // the requests that queued up behind it.
    const SYNCS_MAX: u64 = (TASKS / 4) as u64;
    let f = b.open(&dir.path().join("group.log")).unwrap();
    let before = b.stats().data_syncs;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let f = f.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let data = Bytes::from(pattern(i as u64, RECORD_BYTES));
            done(f.write_at((i * RECORD_BYTES) as u64, data))
                .await
                .unwrap();
            done(f.sync_data()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let syncs = b.stats().data_syncs - before;
    eprintln!(
        "group commit ({:?}): {TASKS} sync requests, {syncs} fdatasyncs",
        b.kind()
    );
    assert!(syncs >= 1, "no fdatasync was issued");
    assert!(
        syncs <= SYNCS_MAX,
        "{syncs} fdatasyncs for {TASKS} concurrent sync requests"
    );
    let mut all = vec![0u8; TASKS * RECORD_BYTES];
    f.read_at(0, &mut all).unwrap();
    for (i, record) in all.chunks(RECORD_BYTES).enumerate() {
        assert_eq!(record, &pattern(i as u64, RECORD_BYTES)[..], "record {i}");
    }
}

/// Files in many directories (partitions), written and synced at once from
/// many tasks: with several I/O threads the directories are spread over
/// them, and every write still lands and every sync succeeds.
async fn files_of_many_directories_all_land(b: Backend, dir: TempDir) {
    const DIRS: usize = 7;
    const WRITES: usize = 200;
    const RECORD_BYTES: usize = 512;
    let files: Vec<_> = (0..DIRS)
        .map(|d| {
            let sub = dir.path().join(format!("topic-{d}"));
            std::fs::create_dir(&sub).unwrap();
            b.open(&sub.join("00000000000000000000.log")).unwrap()
        })
        .collect();
    let mut tasks = Vec::new();
    for (d, f) in files.iter().enumerate() {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let completions: Vec<Completion> = (0..WRITES)
                .map(|i| {
                    let seed = (d * WRITES + i) as u64;
                    f.write_at(
                        (i * RECORD_BYTES) as u64,
                        Bytes::from(pattern(seed, RECORD_BYTES)),
                    )
                })
                .collect();
            for c in completions {
                done(c).await.unwrap();
            }
            done(f.sync_data()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (d, f) in files.iter().enumerate() {
        assert_eq!(f.len().unwrap(), (WRITES * RECORD_BYTES) as u64, "dir {d}");
        let mut all = vec![0u8; WRITES * RECORD_BYTES];
        f.read_at(0, &mut all).unwrap();
        for (i, record) in all.chunks(RECORD_BYTES).enumerate() {
            let seed = (d * WRITES + i) as u64;
            assert_eq!(
                record,
                &pattern(seed, RECORD_BYTES)[..],
                "dir {d} record {i}"
            );
        }
    }
    assert!(b.stats().data_syncs >= 1, "no fdatasync was issued");
}

/// A backend with no I/O thread, or absurdly many, is refused.
#[test]
fn io_thread_count_out_of_range_is_refused() {
    for threads in [0, rill_storage::io::IO_THREADS_MAX + 1] {
        let err = open_backend_with(IoBackendChoice::Std, threads, false)
            .expect_err("out-of-range thread count accepted");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}
