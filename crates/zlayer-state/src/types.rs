//! The openraft type configuration: what an entry carries and what applying
//! it returns.

use std::io::Cursor;

use crate::model::{Command, Response};

openraft::declare_raft_types!(
    /// zlayer's Raft: u64 member ids, each member's address in a `BasicNode`,
    /// snapshots as one serialized [`crate::ClusterState`] in memory.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
