//! openraft's own storage conformance suite, run against the sled store.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use zlayer_state::{LogStore, StateMachine, TypeConfig};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = zlayer_state::open(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_the_openraft_suite() {
    Suite::test_all(SledBuilder).expect("openraft storage suite");
}
