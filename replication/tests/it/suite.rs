//! openraft's own storage test suite, run in full against the log store
//! over a real partition log (std backend, fresh temp dir per test), in
//! each flush mode.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use rill_replication::{DataStateMachine, FlushMode, LogStore, TypeConfig};
use tempfile::TempDir;

use crate::support::{open_store, tempdir};

struct Builder(FlushMode);

impl StoreBuilder<TypeConfig, LogStore, DataStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, DataStateMachine), StorageError<TypeConfig>> {
        let tmp = tempdir();
        let store = open_store(tmp.path()).map_err(|e| {
            StorageError::from_io_error(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Read,
                e.into(),
            )
        })?;
        Ok((tmp, store.with_flush_mode(self.0), DataStateMachine::new()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_in_full() {
    Suite::test_all(Builder(FlushMode::Synced))
        .await
        .expect("openraft storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_in_full_in_written_mode() {
    Suite::test_all(Builder(FlushMode::Written))
        .await
        .expect("openraft storage suite, written mode");
}
