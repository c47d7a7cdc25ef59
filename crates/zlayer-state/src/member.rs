//! One node's membership in the cluster: its Raft instance on the sled
//! store, the HTTPS endpoint other members call, and writes that go to the
//! leader wherever they are made.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder};
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::endpoints::Endpoints;
use crate::pki::NodeIdentity;
use crate::transport::raft_net::Network;
use crate::transport::{tls, CallError, PeerClient};
use crate::{Command, Raft, Response, StateMachine};

pub const WRITE: &str = "/cluster/write";

/// Raft's clocks. The defaults elect a new leader well inside 2 s.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
        }
    }
}

pub struct MemberConfig {
    pub id: u64,
    /// The Raft store's directory.
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// `ip:port` other members reach this one at.
    pub advertise: String,
    pub identity: NodeIdentity,
    pub timing: Timing,
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("Raft: {0}")]
    Raft(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader is reachable (tried for {0:?}); is a majority of voters up?")]
    NoLeader(Duration),
    #[error("the write reached the leader at {addr} but its outcome is unknown: {detail}")]
    Unknown { addr: String, detail: String },
    #[error("Raft: {0}")]
    Raft(String),
}

/// A forwarded write's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum WriteReply {
    Done(Response),
    NotLeader,
    Failed(String),
}

pub struct Member {
    pub id: u64,
    pub raft: Raft,
    pub machine: StateMachine,
    pub advertise: String,
    client: PeerClient,
    server: tokio::task::JoinHandle<()>,
}

impl Member {
    pub async fn start(cfg: MemberConfig) -> Result<Member, MemberError> {
        let (log, machine) = crate::open(&cfg.dir)?;
        let client = PeerClient::new(tls::client_config(&cfg.identity)?);
        let config = openraft::Config {
            cluster_name: "zlayer".into(),
            heartbeat_interval: cfg.timing.heartbeat_ms,
            election_timeout_min: cfg.timing.election_min_ms,
            election_timeout_max: cfg.timing.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MemberError::Raft(e.to_string()))?;
        let network = Network {
            client: client.clone(),
        };
        let raft = Raft::new(cfg.id, Arc::new(config), network, log, machine.clone())
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| MemberError::Listen {
                    addr: cfg.listen,
                    source,
                })?;
        let endpoints = Arc::new(Endpoints::new(raft.clone()));
        let server =
            crate::transport::serve(listener, tls::server_config(&cfg.identity)?, endpoints);
        Ok(Member {
            id: cfg.id,
            raft,
            machine,
            advertise: cfg.advertise,
            client,
            server,
        })
    }

    /// Makes this member the one voter of a new cluster, unless the store
    /// already belongs to one.
    pub async fn bootstrap(&self) -> Result<(), MemberError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(&self.advertise))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))
    }

    /// The leader's id and address, as this member last heard.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// Commits `cmd` through the leader, wherever it is. A write that was
    /// not delivered (no leader yet, leader unreachable) is retried for a
    /// few seconds; one whose delivery is uncertain is reported as such,
    /// never silently sent twice.
    pub async fn write(&self, cmd: Command) -> Result<Response, WriteError> {
        const PATIENCE: Duration = Duration::from_secs(6);
        let mut delays = ConstantBuilder::default()
            .with_delay(Duration::from_millis(50))
            .with_max_times((PATIENCE.as_millis() / 50) as usize)
            .build();
        loop {
            match self.write_once(&cmd).await {
                Attempt::Done(r) => return Ok(r),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry => match delays.next() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(WriteError::NoLeader(PATIENCE)),
                },
            }
        }
    }

    async fn write_once(&self, cmd: &Command) -> Attempt {
        match self.raft.client_write(cmd.clone()).await {
            Ok(r) => return Attempt::Done(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
            Err(e) => return Attempt::Failed(WriteError::Raft(e.to_string())),
        }
        let Some((_, addr)) = self.leader().filter(|(id, _)| *id != self.id) else {
            return Attempt::Retry;
        };
        let reply = self
            .client
            .call::<_, WriteReply>(&addr, WRITE, cmd, Duration::from_secs(5))
            .await;
        match reply {
            Ok(WriteReply::Done(r)) => Attempt::Done(r),
            Ok(WriteReply::NotLeader) | Err(CallError::Unreachable { .. }) => Attempt::Retry,
            Ok(WriteReply::Failed(detail)) => Attempt::Failed(WriteError::Raft(detail)),
            Err(e) => Attempt::Failed(WriteError::Unknown {
                addr,
                detail: e.to_string(),
            }),
        }
    }

    /// Stops serving and stops Raft, as if the process had died.
    pub async fn stop(&self) {
        self.server.abort();
        let _ = self.raft.shutdown().await;
    }
}

enum Attempt {
    Done(Response),
    Retry,
    Failed(WriteError),
}
