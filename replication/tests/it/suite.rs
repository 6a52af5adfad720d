//! openraft's own storage test suite, run in full against the log store
//! over a real partition log (std backend, fresh temp dir per test).

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use rill_replication::{DataStateMachine, LogStore, TypeConfig};
use tempfile::TempDir;

use crate::support::{open_store, tempdir};

struct Builder;

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
        Ok((tmp, store, DataStateMachine::new()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_in_full() {
    Suite::test_all(Builder)
        .await
        .expect("openraft storage suite");
}
