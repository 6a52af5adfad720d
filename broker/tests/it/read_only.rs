//! A read-only data directory below the broker: the consumer offsets store
//! and the topic registry opened read-only load what is on disk, refuse
//! every write with an error naming the read-only directory, and change no
//! file (compared byte for byte before and after).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rill_broker::coordinator::{CommittedOffset, OffsetStore, OffsetStoreError};
use rill_broker::topics::{TopicError, TopicRegistry};
use rill_storage::io::{open_backend, IoBackend, IoBackendChoice};
use rill_storage::StorageError;

const GROUP: &str = "g";
const TOPIC: &str = "t";
const COMMITS: u32 = 5;

fn backend() -> Arc<dyn IoBackend> {
    open_backend(IoBackendChoice::Std).expect("std backend")
}

/// Every file under `dir`, recursively, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.insert(path, bytes);
            }
        }
    }
    out
}

fn committed(offset: u64) -> CommittedOffset {
    CommittedOffset {
        offset,
        metadata: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_offsets_store_serves_fetches_and_refuses_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = OffsetStore::open(dir.path(), backend()).expect("open");
    for p in 0..COMMITS {
        let entry = (TOPIC.to_owned(), p, committed(u64::from(p) * 10));
        store.commit(GROUP, &[entry]).await.expect("commit");
    }
    // Not closed: the read-only open must replay an unclean log.
    drop(store);
    let before = snapshot(dir.path());

    let ro = OffsetStore::open_read_only(dir.path(), backend()).expect("open read-only");
    for p in 0..COMMITS {
        assert_eq!(
            ro.fetch(GROUP, TOPIC, p),
            Some(committed(u64::from(p) * 10))
        );
    }
    let err = ro
        .commit(GROUP, &[(TOPIC.to_owned(), 0, committed(99))])
        .await
        .expect_err("a read-only store refuses commits");
    assert!(
        matches!(
            err,
            OffsetStoreError::Storage(StorageError::ReadOnly { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(ro.fetch(GROUP, TOPIC, 0), Some(committed(0)));
    ro.close().await.expect("close");
    assert_eq!(snapshot(dir.path()), before, "files changed");

    let rw = OffsetStore::open(dir.path(), backend()).expect("reopen writable");
    rw.commit(GROUP, &[(TOPIC.to_owned(), 0, committed(99))])
        .await
        .expect("commits resume");
    assert_eq!(rw.fetch(GROUP, TOPIC, 0), Some(committed(99)));
    rw.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_registry_opens_topics_and_refuses_create_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let defaults = rill_broker::BrokerConfig::default()
        .topic_defaults()
        .expect("defaults");
    let registry =
        Arc::new(TopicRegistry::open(dir.path(), defaults.clone(), 1, backend()).expect("open"));
    registry.create(TOPIC, 2, &[], false).await.expect("create");
    registry.close_all().await;
    drop(registry);
    let before = snapshot(dir.path());

    let ro = Arc::new(
        TopicRegistry::open_read_only(dir.path(), defaults, 1, backend()).expect("open ro"),
    );
    assert!(ro.is_read_only());
    let log = ro.partition(TOPIC, 1).expect("partition opened");
    assert!(log.is_read_only());
    let create = ro.create("other", 1, &[], false).await;
    assert!(
        matches!(create, Err(TopicError::ReadOnly { .. })),
        "{create:?}"
    );
    let delete = ro.delete(TOPIC).await;
    assert!(
        matches!(delete, Err(TopicError::ReadOnly { .. })),
        "{delete:?}"
    );
    assert!(ro.get(TOPIC).is_some(), "the topic is still there");
    drop(log);
    ro.close_all().await;
    assert_eq!(snapshot(dir.path()), before, "files changed");
}
