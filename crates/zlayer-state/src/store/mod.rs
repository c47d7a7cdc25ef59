//! The Raft log and the state machine, in one sled database with a tree
//! each. Both flush before they acknowledge, so `kill -9` at any moment
//! leaves what was acknowledged on disk.

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
    let db = sled::Config::new()
        .path(dir)
        .open()
        .map_err(|source| StoreError::Open {
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
    let machine = StateMachine::load(open_tree("state")?).map_err(|e| StoreError::Damaged {
        path,
        detail: e.to_string(),
    })?;
    Ok((log, machine))
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
