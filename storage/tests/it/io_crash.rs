//! CrashBackend: after a simulated crash at the n-th sync, the materialized
//! durable state holds exactly what was synced (data and directory entries),
//! and a torn image is the durable one plus an in-order prefix of the rest.
//! Checked on real files, reopened with the std backend.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use rill_storage::io::{open_backend, CrashBackend, IoBackend, IoBackendChoice};

const CHUNK_BYTES: usize = 100;

fn chunk(k: usize) -> Vec<u8> {
    (0..CHUNK_BYTES)
        .map(|i| (k * 37 + i) as u8 ^ 0x5A)
        .collect()
}

/// Reads a materialized file back through the std backend, as a restarted
/// broker would.
fn read_with_std(path: &Path) -> Vec<u8> {
    let b = open_backend(IoBackendChoice::Std).unwrap();
    let f = b.open(path).unwrap();
    let mut buf = vec![0u8; f.len().unwrap() as usize];
    f.read_at(0, &mut buf).unwrap();
    buf
}

/// Appends chunk k and syncs, for k in 0..rounds, stopping at the first
/// failed sync; returns how many syncs succeeded.
fn append_and_sync(b: &CrashBackend, path: &Path, rounds: usize) -> usize {
    let f = b.open(path).unwrap();
    b.sync_dir(path.parent().unwrap()).unwrap();
    for k in 0..rounds {
        f.write_at((k * CHUNK_BYTES) as u64, Bytes::from(chunk(k)))
            .wait()
            .unwrap();
        if let Err(e) = f.sync_data().wait() {
            assert!(CrashBackend::is_crash_error(&e), "unexpected error: {e}");
            return k;
        }
    }
    rounds
}

#[test]
fn durable_image_holds_exactly_the_synced_prefix_at_every_crash_point() {
    const ROUNDS: usize = 6;
    for crash_at in 1..=ROUNDS as u64 {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = src.path().join("topic-0").join("00000000000000000000.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let b = CrashBackend::new(Some(crash_at)).unwrap();
        let synced = append_and_sync(&b, &path, ROUNDS);
        assert_eq!(synced as u64, crash_at - 1);
        assert!(b.crashed());
        assert_eq!(b.syncs(), crash_at);
        // The unsynced chunk reached the real file (the process saw it) ...
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (synced + 1) as u64 * CHUNK_BYTES as u64
        );
        assert_eq!(
            b.written_image(&path).unwrap().len(),
            (synced + 1) * CHUNK_BYTES
        );
        // ... but not the durable state.
        b.materialize_durable(out.path(), src.path()).unwrap();
        let recovered = read_with_std(&out.path().join("topic-0").join("00000000000000000000.log"));
        let expected: Vec<u8> = (0..synced).flat_map(chunk).collect();
        assert_eq!(recovered, expected, "crash at sync {crash_at}");
    }
}

#[test]
fn every_operation_after_the_crash_fails_and_changes_nothing() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("a.log");
    let b = CrashBackend::new(Some(2)).unwrap();
    let f = b.open(&path).unwrap();
    b.sync_dir(src.path()).unwrap();
    f.write_at(0, Bytes::from(chunk(0))).wait().unwrap();
    f.sync_data().wait().unwrap();
    assert!(!b.crashed());
    let err = f.sync_data().wait().unwrap_err();
    assert!(CrashBackend::is_crash_error(&err));
    assert!(b.crashed());

    let is_crash = |r: std::io::Result<()>| matches!(r, Err(e) if CrashBackend::is_crash_error(&e));
    assert!(is_crash(
        f.write_at(CHUNK_BYTES as u64, Bytes::from(chunk(1))).wait()
    ));
    assert!(is_crash(f.sync_data().wait()));
    assert!(is_crash(f.set_len(0)));
    assert!(is_crash(b.open(&src.path().join("b.log")).map(|_| ())));
    assert!(is_crash(b.remove(&path)));
    assert!(is_crash(b.sync_dir(src.path())));
    // Refused calls count as neither syncs nor changes, and touched no file.
    assert_eq!(b.syncs(), 2);
    assert_eq!(b.written_image(&path).unwrap(), chunk(0));
    assert_eq!(std::fs::read(&path).unwrap(), chunk(0));
    assert!(!src.path().join("b.log").exists());
    // Reads still work: the process is "dead", the page cache is not.
    let mut buf = vec![0u8; CHUNK_BYTES];
    f.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, chunk(0));
}

#[test]
fn file_created_without_dir_sync_is_absent_after_crash() {
    let src = tempfile::tempdir().unwrap();
    let b = CrashBackend::new(None).unwrap();
    let kept = b.open(&src.path().join("kept.log")).unwrap();
    b.sync_dir(src.path()).unwrap();
    let fresh = b.open(&src.path().join("fresh.log")).unwrap();
    for f in [&kept, &fresh] {
        f.write_at(0, Bytes::from(chunk(1))).wait().unwrap();
        f.sync_data().wait().unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    b.materialize_durable(out.path(), src.path()).unwrap();
    assert_eq!(read_with_std(&out.path().join("kept.log")), chunk(1));
    assert!(
        !out.path().join("fresh.log").exists(),
        "data sync alone must not make a new file's entry durable"
    );
    assert!(b.durable_image(&src.path().join("fresh.log")).is_none());

    b.sync_dir(src.path()).unwrap();
    let out2 = tempfile::tempdir().unwrap();
    b.materialize_durable(out2.path(), src.path()).unwrap();
    assert_eq!(read_with_std(&out2.path().join("fresh.log")), chunk(1));
}

#[test]
fn file_removed_without_dir_sync_is_still_there_after_crash() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("old.log");
    let b = CrashBackend::new(None).unwrap();
    let f = b.open(&path).unwrap();
    b.sync_dir(src.path()).unwrap();
    f.write_at(0, Bytes::from(chunk(2))).wait().unwrap();
    f.sync_data().wait().unwrap();
    drop(f);
    b.remove(&path).unwrap();
    assert!(!path.exists());
    // A new file under the same name, synced but its entry not: the old
    // contents are what a crash leaves.
    let newer = b.open(&path).unwrap();
    newer.write_at(0, Bytes::from(chunk(3))).wait().unwrap();
    newer.sync_data().wait().unwrap();
    let out = tempfile::tempdir().unwrap();
    b.materialize_durable(out.path(), src.path()).unwrap();
    assert_eq!(read_with_std(&out.path().join("old.log")), chunk(2));

    drop(newer);
    b.remove(&path).unwrap();
    b.sync_dir(src.path()).unwrap();
    let out2 = tempfile::tempdir().unwrap();
    b.materialize_durable(out2.path(), src.path()).unwrap();
    assert!(!out2.path().join("old.log").exists());
}

#[test]
fn torn_image_is_durable_image_plus_a_prefix_of_unsynced_writes() {
    const SEEDS: u64 = 32;
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("torn.log");
    let b = CrashBackend::new(None).unwrap();
    let f = b.open(&path).unwrap();
    b.sync_dir(src.path()).unwrap();
    for k in 0..4 {
        f.write_at((k * CHUNK_BYTES) as u64, Bytes::from(chunk(k)))
            .wait()
            .unwrap();
    }
    f.sync_data().wait().unwrap();
    for k in 4..9 {
        f.write_at((k * CHUNK_BYTES) as u64, Bytes::from(chunk(k)))
            .wait()
            .unwrap();
    }
    let durable = b.durable_image(&path).unwrap();
    let written = b.written_image(&path).unwrap();
    assert_eq!(durable.len(), 4 * CHUNK_BYTES);
    assert_eq!(written.len(), 9 * CHUNK_BYTES);

    let mut lengths = BTreeSet::new();
    for seed in 0..SEEDS {
        let out = tempfile::tempdir().unwrap();
        b.materialize_torn(out.path(), src.path(), seed).unwrap();
        let torn = read_with_std(&out.path().join("torn.log"));
        assert!(
            torn.len() >= durable.len() && torn.len() <= written.len(),
            "seed {seed}: {}",
            torn.len()
        );
        assert_eq!(
            torn,
            written[..torn.len()],
            "seed {seed}: torn image is not a prefix of the writes"
        );
        lengths.insert(torn.len());
        // Same seed, same image.
        let again = tempfile::tempdir().unwrap();
        b.materialize_torn(again.path(), src.path(), seed).unwrap();
        assert_eq!(std::fs::read(again.path().join("torn.log")).unwrap(), torn);
    }
    assert!(
        lengths.len() > SEEDS as usize / 4,
        "torn cut points barely vary: {lengths:?}"
    );
    // Cuts fall inside writes, not only on their boundaries.
    assert!(lengths.iter().any(|l| l % CHUNK_BYTES != 0), "{lengths:?}");
}

#[test]
fn set_len_becomes_durable_only_with_a_sync() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("len.log");
    let b = CrashBackend::new(None).unwrap();
    let f = b.open(&path).unwrap();
    b.sync_dir(src.path()).unwrap();
    f.write_at(0, Bytes::from(chunk(0))).wait().unwrap();
    f.sync_data().wait().unwrap();
    f.set_len(40).unwrap();
    assert_eq!(b.written_image(&path).unwrap(), &chunk(0)[..40]);
    assert_eq!(b.durable_image(&path).unwrap(), chunk(0));
    f.sync_data().wait().unwrap();
    assert_eq!(b.durable_image(&path).unwrap(), &chunk(0)[..40]);
    f.set_len(60).unwrap();
    f.sync_data().wait().unwrap();
    let mut expected = chunk(0)[..40].to_vec();
    expected.resize(60, 0);
    assert_eq!(b.durable_image(&path).unwrap(), expected);
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[test]
fn files_present_before_the_backend_are_taken_as_durable() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("segment.log");
    std::fs::write(&path, chunk(7)).unwrap();
    let b = CrashBackend::new(None).unwrap();
    let f = b.open(&path).unwrap();
    assert_eq!(b.durable_image(&path).unwrap(), chunk(7));
    f.write_at(CHUNK_BYTES as u64, Bytes::from(chunk(8)))
        .wait()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    b.materialize_durable(out.path(), src.path()).unwrap();
    assert_eq!(read_with_std(&out.path().join("segment.log")), chunk(7));
}

#[test]
fn only_files_under_the_source_root_are_materialized() {
    let src = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let b = CrashBackend::new(None).unwrap();
    for dir in [src.path(), other.path()] {
        let f = b.open(&dir.join("x.log")).unwrap();
        f.write_at(0, Bytes::from(chunk(9))).wait().unwrap();
        f.sync_data().wait().unwrap();
        b.sync_dir(dir).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    b.materialize_durable(out.path(), src.path()).unwrap();
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["x.log".to_string()]);
}
