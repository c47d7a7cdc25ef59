//! The Raft log and the state machine, in one sled database with a tree
//! each, and the last snapshot in a file beside it. All flush before they
//! acknowledge, so `kill -9` at any moment leaves what was acknowledged on
//! disk.

mod last_snapshot;
mod log;
mod machine;

use std::path::Path;

use openraft::{AnyError, StorageError, StorageIOError};

pub use log::LogStore;
pub use machine::StateMachine;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the Raft store at {path}: {source} (is another zlayer node using this data dir?)")]
    Open { path: String, source: sled::Error },
    #[error("the Raft store at {path} is damaged: {detail}")]
    Damaged { path: String, detail: String },
}

/// Opens (or creates) the store under `dir`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), StoreError> {
    let path = dir.display().to_string();
    let db = open_db(dir).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    let open_tree = |name: &str| {
        db.open_tree(name).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })
    };
    let log = LogStore::new(open_tree("raft-log")?, open_tree("raft-meta")?);
    let last_snapshot = last_snapshot::LastSnapshot::in_dir(dir);
    let machine = StateMachine::load(open_tree("state")?, last_snapshot).map_err(|e| {
        StoreError::Damaged {
            path,
            detail: e.to_string(),
        }
    })?;
    Ok((log, machine))
}

/// Opens the sled database, waiting briefly while its lock is still held by
/// a store of this process that was just dropped: sled's background threads
/// let go of the database (and its file lock) a moment after the last
/// handle. Another process holding the lock is reported after that wait.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    use backon::{BlockingRetryable, ConstantBuilder};
    let open = || {
        // Every write is flushed before it is acknowledged, so sled's
        // periodic flusher would add nothing but another thread holding it.
        sled::Config::new().path(dir).flush_every_ms(None).open()
    };
    open.retry(
        ConstantBuilder::default()
            .with_delay(std::time::Duration::from_millis(20))
            .with_max_times(100),
    )
    .sleep(std::thread::sleep)
    .when(lock_is_busy)
    .call()
}

fn lock_is_busy(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageError::IO {
        source: StorageIOError::read(AnyError::error(e)),
    }
}

fn write_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageError::IO {
        source: StorageIOError::write(AnyError::error(e)),
    }
}
