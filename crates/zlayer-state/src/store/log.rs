//! The Raft log: entries keyed by big-endian index, and the vote, the
//! committed id and the last purged id beside them.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{read_err, write_err};
use crate::TypeConfig;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

#[derive(Clone)]
pub struct LogStore {
    entries: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    pub(crate) fn new(entries: sled::Tree, meta: sled::Tree) -> LogStore {
        LogStore { entries, meta }
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<u64>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn put_meta<T: Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError<u64>> {
        let bytes = serde_json::to_vec(v).map_err(write_err)?;
        self.meta.insert(key, bytes).map_err(write_err)?;
        self.meta.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    /// Removes the entries in `range` (indexes) in one atomic batch.
    async fn remove_range(&self, range: (Bound<u64>, Bound<u64>)) -> Result<(), StorageError<u64>> {
        let mut batch = sled::Batch::default();
        for kv in self.entries.range(key_range(range)) {
            let (k, _) = kv.map_err(read_err)?;
            batch.remove(k);
        }
        self.entries.apply_batch(batch).map_err(write_err)?;
        self.entries.flush_async().await.map_err(write_err)?;
        Ok(())
    }
}

fn key_range(range: (Bound<u64>, Bound<u64>)) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let map = |b: Bound<u64>| match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (map(range.0), map(range.1))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.entries
            .range(key_range(bounds))
            .map(|kv| {
                let (_, v) = kv.map_err(read_err)?;
                serde_json::from_slice(&v).map_err(read_err)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged_log_id: Option<LogId<u64>> = self.get_meta(PURGED)?;
        let last = match self.entries.last().map_err(read_err)? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> = serde_json::from_slice(&v).map_err(read_err)?;
                Some(e.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.put_meta(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.get_meta::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(write_err)?;
            batch.insert(&e.log_id.index.to_be_bytes(), bytes);
        }
        self.entries.apply_batch(batch).map_err(write_err)?;
        let flushed = self.entries.flush_async().await.map(|_| ());
        callback.log_io_completed(flushed.map_err(std::io::Error::other));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.remove_range((Bound::Included(log_id.index), Bound::Unbounded))
            .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // The purged id goes first: a crash in between leaves entries that
        // are merely below it, never a hole above it.
        self.put_meta(PURGED, &log_id).await?;
        self.remove_range((Bound::Unbounded, Bound::Included(log_id.index)))
            .await
    }
}
