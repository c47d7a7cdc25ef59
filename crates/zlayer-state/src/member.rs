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

use crate::alive::{AliveAsk, AliveReply, Heard, ALIVE};
use crate::endpoints::Endpoints;
use crate::ingress_tls::{IngressTlsReply, IngressTlsRequest, INGRESS_TLS};
use crate::pki::NodeIdentity;
use crate::renew::{RenewReply, RenewRequest, RENEW};
use crate::secrets::{SecretsReply, SecretsRequest, SECRETS};
use crate::token::{self, JoinToken};
use crate::transport::raft_net::Network;
use crate::transport::{tls, CallError, PeerClient};
use crate::{CaRecord, Command, NodeRecord, Raft, Response, StateMachine, TokenRecord};

pub const WRITE: &str = "/cluster/write";

/// How long a leader waits for a majority to commit one write.
const COMMIT_PATIENCE: Duration = Duration::from_secs(10);

/// Raft's clocks. The defaults elect a new leader well inside 2 s.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// A snapshot is taken after this many entries; half as many stay in
    /// the log behind it (for followers catching up), the rest is purged.
    pub snapshot_every: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
            snapshot_every: 1_000,
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
    /// Run the membership keeper (see `keeper`) while this member leads.
    pub keep_membership: bool,
    /// Where this member keeps the CA key once it holds it (voters only).
    pub ca_key_file: Option<PathBuf>,
    /// The managers this node joined through, trusted for Raft RPCs only
    /// until its state knows any node (see `authz`).
    pub seed: Vec<crate::authz::SeedMember>,
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
    #[error("the leader refused this write: {0}")]
    Forbidden(String),
    #[error("this node's Raft has stopped ({0}); after a storage error it restarts itself once its data dir has room again")]
    Stopped(String),
    #[error("this member no longer leads; a decision it made as leader is not handed on")]
    NotLeader,
}

/// A forwarded write's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum WriteReply {
    Done(Response),
    NotLeader,
    Failed(String),
}

const NOT_A_VOTER: &str =
    "only voters hold the CA key: run this on a manager (`zlayer node ls` shows the roles)";

pub struct Member {
    pub id: u64,
    pub raft: Raft,
    pub machine: StateMachine,
    pub advertise: String,
    client: PeerClient,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    api: crate::endpoints::RemoteApiSlot,
    ca_key: crate::ca_key::CaKey,
    /// On the leader: when each node last said it is alive.
    pub heard: Heard,
    /// What this member presents; a renewal swaps it.
    identity: Arc<tls::LiveIdentity>,
}

impl Member {
    pub async fn start(cfg: MemberConfig) -> Result<Member, MemberError> {
        let (log, machine) = crate::open(&cfg.dir)?;
        let identity = tls::LiveIdentity::new(&cfg.identity)?;
        let client = PeerClient::new(tls::client_config(&identity)?);
        let config = openraft::Config {
            cluster_name: "zlayer".into(),
            heartbeat_interval: cfg.timing.heartbeat_ms,
            election_timeout_min: cfg.timing.election_min_ms,
            election_timeout_max: cfg.timing.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.timing.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.timing.snapshot_every / 2,
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
        let api = crate::endpoints::RemoteApiSlot::default();
        let ca_key = crate::ca_key::CaKey::load(cfg.ca_key_file.clone());
        let heard = Heard::default();
        let endpoints = Arc::new(Endpoints::new(
            raft.clone(),
            machine.clone(),
            api.clone(),
            ca_key.clone(),
            heard.clone(),
            cfg.seed.clone(),
        ));
        let tls = tls::server_config(&identity)?;
        let mut tasks = vec![crate::transport::serve(listener, tls, endpoints)];
        if cfg.keep_membership {
            tasks.push(crate::keeper::spawn(raft.clone(), machine.clone(), cfg.id));
        }
        tasks.push(crate::ca_key::spawn_fetcher(
            raft.clone(),
            cfg.id,
            ca_key.clone(),
            client.clone(),
        ));
        Ok(Member {
            id: cfg.id,
            raft,
            machine,
            advertise: cfg.advertise,
            client,
            tasks,
            api,
            ca_key,
            heard,
            identity,
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

    /// Appends a decision only a leader makes (node states, placements) to
    /// this member's log, never forwarding it: a member that lost the lead
    /// while the write waited decided from what it saw, cut off, and the new
    /// leader must not commit that (a cut-off leader counts every node down).
    /// An entry it appended while it led commits only if a quorum took it.
    pub async fn write_as_leader(&self, cmd: Command) -> Result<Response, WriteError> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        match tokio::time::timeout(COMMIT_PATIENCE, self.raft.client_write(cmd)).await {
            Ok(Ok(r)) => Ok(r.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(WriteError::NotLeader)
            }
            Ok(Err(e)) => Err(WriteError::Raft(e.to_string())),
            Err(_) => Err(WriteError::Unknown {
                addr: self.advertise.clone(),
                detail: format!("not committed within {COMMIT_PATIENCE:?}"),
            }),
        }
    }

    async fn write_once(&self, cmd: &Command) -> Attempt {
        if let Some(e) = self.stopped() {
            return Attempt::Failed(e);
        }
        // A leader cut off from its voters does not know it yet and would wait
        // for a commit that cannot come; the caller gets an answer instead.
        let local = tokio::time::timeout(COMMIT_PATIENCE, self.raft.client_write(cmd.clone()));
        match local.await {
            Ok(Ok(r)) => return Attempt::Done(r.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
            Ok(Err(e)) => return Attempt::Failed(WriteError::Raft(e.to_string())),
            Err(_) => {
                return Attempt::Failed(WriteError::Unknown {
                    addr: self.advertise.clone(),
                    detail: format!(
                        "not committed within {COMMIT_PATIENCE:?}: this member leads but no \
                         majority of voters answers; it may still commit once they do"
                    ),
                })
            }
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
            Err(CallError::Status { status, body, .. })
                if status == hyper::StatusCode::FORBIDDEN =>
            {
                Attempt::Failed(WriteError::Forbidden(body))
            }
            Err(e) => Attempt::Failed(WriteError::Unknown {
                addr,
                detail: e.to_string(),
            }),
        }
    }

    /// Tells the leader this node is alive (see `alive`). `Ok` means the
    /// leader heard it and a quorum still follows that leader; it holds the
    /// index the leader had applied (0 from a leader too old to say).
    pub async fn alive(&self) -> Result<u64, WriteError> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        let patience = Duration::from_secs(2);
        let ask = AliveAsk {
            applied_index: true,
        };
        let reply = match self.leader() {
            Some((id, _)) if id == self.id => {
                crate::alive::answer(&self.raft, &self.heard, self.id, &ask, patience).await
            }
            Some((_, addr)) => self
                .client
                .call::<_, AliveReply>(&addr, ALIVE, &ask, patience + Duration::from_secs(1))
                .await
                .map_err(|e| WriteError::Unknown {
                    addr,
                    detail: e.to_string(),
                })?,
            None => return Err(WriteError::NoLeader(Duration::ZERO)),
        };
        match reply {
            AliveReply::Heard => Ok(0),
            AliveReply::HeardAt(index) => Ok(index),
            AliveReply::NotLeader | AliveReply::NoQuorum => {
                Err(WriteError::NoLeader(Duration::ZERO))
            }
            AliveReply::UnknownNode => Err(WriteError::Raft(
                "the leader knows no node with this certificate (was it removed with `zlayer node rm`?)"
                    .into(),
            )),
        }
    }

    /// Founds a cluster with this member as its one voter: the CA and this
    /// node's record are its first writes. Safe to repeat on restart.
    /// The CA key stays with this member (and its key file); the log gets
    /// the CA without it. `network` is the container address space; each
    /// node's subnet comes from it.
    pub async fn found_cluster(
        &self,
        ca: CaRecord,
        network: Option<zlayer_model::ClusterNetwork>,
        me: NodeRecord,
    ) -> Result<(), MemberError> {
        self.bootstrap().await?;
        self.ca_key
            .set(ca.key_pem.clone())
            .map_err(|e| MemberError::Raft(format!("keeping the CA key: {e}")))?;
        let has_ca = self.machine.read(|s| s.ca.is_some());
        if !has_ca {
            let ca = CaRecord {
                key_pem: String::new(),
                ..ca
            };
            self.write(Command::Bootstrap { ca, network })
                .await
                .map_err(|e| MemberError::Raft(e.to_string()))?;
        }
        self.write(Command::AddNode(me))
            .await
            .map_err(|e| MemberError::Raft(e.to_string()))?;
        Ok(())
    }

    /// Makes a join token valid for `ttl` and `uses` joins (unlimited when
    /// `None`), naming every member as a place to join.
    pub async fn create_token(
        &self,
        ttl: Duration,
        uses: Option<u32>,
        kind: crate::TokenKind,
    ) -> Result<String, WriteError> {
        let ca = self
            .machine
            .read(|s| s.ca.as_ref().map(|c| c.fingerprint.clone()))
            .ok_or_else(|| WriteError::Raft("this cluster has no CA yet".into()))?;
        let now = crate::now_ms();
        let record = TokenRecord {
            id: token::random_hex(4),
            secret_sha256: String::new(),
            created_ms: now,
            expires_ms: now + ttl.as_millis() as u64,
            uses,
            used: 0,
            revoked: false,
            kind,
        };
        let secret = token::random_hex(16);
        let record = TokenRecord {
            secret_sha256: token::sha256_hex(&secret),
            ..record
        };
        let mut addrs: Vec<String> = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            m.membership()
                .nodes()
                .map(|(_, n)| n.addr.clone())
                .collect()
        };
        if let Some((_, leader)) = self.leader() {
            addrs.retain(|a| *a != leader);
            addrs.insert(0, leader);
        }
        let out = JoinToken {
            ca,
            id: record.id.clone(),
            secret,
            expires_ms: record.expires_ms,
            addrs,
        };
        match self.write(Command::CreateToken(record)).await? {
            Response::Done if kind == crate::TokenKind::Api => Ok(out.encode_api()),
            Response::Done => Ok(out.encode()),
            other => Err(WriteError::Raft(format!("{other:?}"))),
        }
    }

    /// Serves the node API to remote CLIs holding an API token, on this
    /// member's endpoint under `/api/`. Set once; later calls do nothing.
    /// The mTLS client this member calls other members with.
    pub fn peer_client(&self) -> &PeerClient {
        &self.client
    }

    pub fn serve_api(&self, api: Arc<dyn crate::endpoints::RemoteApi>) {
        let _ = self.api.set(api);
    }

    /// Whether this member holds the CA key (the founder, and voters).
    pub fn holds_ca_key(&self) -> bool {
        self.ca_key.get().is_some()
    }

    /// A dev certificate for `hosts` from the ingress CA: (chain, key). The
    /// key is made here; a voter signs the CSR itself, any other node has
    /// the leader sign it over mTLS (see `ingress_tls`).
    pub async fn ingress_certificate(&self, hosts: &[String]) -> Result<(String, String), String> {
        let (key_pem, csr_pem) =
            crate::ingress_ca::key_and_csr(hosts).map_err(|e| e.to_string())?;
        let req = IngressTlsRequest::Sign {
            hosts: hosts.to_vec(),
            csr_pem,
        };
        match self.ingress_tls(req).await? {
            IngressTlsReply::Signed { chain_pem } => Ok((chain_pem, key_pem)),
            IngressTlsReply::Refused(why) => Err(why),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The ACME certificate the state holds for `host`, with its key
    /// opened: (chain, key, issued in Unix ms). Opened here on a voter,
    /// else by the leader over mTLS.
    pub async fn acme_certificate(&self, host: &str) -> Result<(String, String, u64), String> {
        let req = IngressTlsRequest::Acme {
            host: host.to_string(),
        };
        match self.ingress_tls(req).await? {
            IngressTlsReply::Acme {
                cert_pem,
                key_pem,
                not_before_ms,
            } => Ok((cert_pem, key_pem, not_before_ms)),
            IngressTlsReply::Refused(why) => Err(why),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    async fn ingress_tls(&self, req: IngressTlsRequest) -> Result<IngressTlsReply, String> {
        if let Some(key) = self.ca_key.get() {
            return Ok(self
                .machine
                .read(|s| crate::ingress_tls::decide(s, Some(&key), req)));
        }
        let (_, addr) = self
            .leader()
            .ok_or("no leader to ask (only voters hold the CA key)")?;
        self.client
            .call::<_, IngressTlsReply>(&addr, INGRESS_TLS, &req, Duration::from_secs(15))
            .await
            .map_err(|e| format!("asking the leader at {addr}: {e}"))
    }

    /// The values of `req.names` for this node's replicas of the service
    /// `req` names: opened here on a voter, else by the leader over mTLS;
    /// either way only while the cluster places such a replica here.
    pub async fn secret_values(
        &self,
        req: SecretsRequest,
    ) -> Result<BTreeMap<String, (u64, Vec<u8>)>, String> {
        use base64::Engine;
        let reply = match self.ca_key.get() {
            Some(key) => self
                .machine
                .read(|s| crate::secrets::answer(s, Some(&key), self.id, &req)),
            None => {
                let (_, addr) = self
                    .leader()
                    .ok_or("no leader to ask (only voters open secrets)")?;
                self.client
                    .call::<_, SecretsReply>(&addr, SECRETS, &req, Duration::from_secs(15))
                    .await
                    .map_err(|e| format!("asking the leader at {addr}: {e}"))?
            }
        };
        match reply {
            SecretsReply::Values(values) => values
                .into_iter()
                .map(|(name, (version, b64))| {
                    let value = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| format!("secret {name}: {e}"))?;
                    Ok((name, (version, value)))
                })
                .collect(),
            SecretsReply::Refused(why) => Err(why),
        }
    }

    /// The command that gives secret `name` a new value, sealed here.
    pub fn seal_secret(&self, name: &str, value: &[u8]) -> Result<Command, String> {
        let key = self.ca_key.get().ok_or(NOT_A_VOTER)?;
        let put = self
            .machine
            .read(|s| crate::secrets::seal_put(&s.secrets, &key, name, value, crate::now_ms()))
            .map_err(|e| e.to_string())?;
        Ok(Command::PutSecret(put))
    }

    /// The command that replaces the secrets data key, sealed here.
    pub fn seal_secrets_rotation(&self) -> Result<Command, String> {
        let key = self.ca_key.get().ok_or(NOT_A_VOTER)?;
        let rotation = self
            .machine
            .read(|s| crate::secrets::seal_rotation(&s.secrets, &key))
            .map_err(|e| e.to_string())?;
        Ok(Command::RotateSecretsKey(rotation))
    }

    /// The key that seals ACME private keys in the cluster state.
    pub fn acme_seal_key(&self) -> Result<crate::acme::SealKey, String> {
        let key = self.ca_key.get().ok_or(NOT_A_VOTER)?;
        Ok(crate::acme::SealKey::derive(&key, crate::acme::SEAL_LABEL))
    }

    /// The ingress CA's certificate, for clients to trust.
    pub fn ingress_ca_pem(&self) -> Result<String, String> {
        let key = self.ca_key.get().ok_or(NOT_A_VOTER)?;
        let id = self.cluster_id().ok_or("the cluster has no CA yet")?;
        crate::ingress_ca::ca_cert_pem(&key, &id).map_err(|e| e.to_string())
    }

    fn cluster_id(&self) -> Option<String> {
        self.machine
            .read(|s| s.ca.as_ref().map(|c| c.cluster_id.clone()))
    }

    /// Asks the leader for a new certificate for a new key. The leader
    /// commits the new certificate's fingerprint before it answers, and keeps
    /// accepting the one this call was made with; the caller saves the new
    /// identity, then presents it with [`Member::present`].
    pub async fn renew_certificate(
        &self,
        name: &str,
        current: &NodeIdentity,
    ) -> Result<NodeIdentity, WriteError> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        let (key_pem, csr_pem) =
            crate::pki::node_key_and_csr(name).map_err(|e| WriteError::Raft(e.to_string()))?;
        let req = RenewRequest { csr_pem };
        let reply = match self.leader() {
            Some((id, _)) if id == self.id => {
                let fingerprint = crate::pki::fingerprint_pem(&current.cert_pem)
                    .map_err(|e| WriteError::Raft(e.to_string()))?;
                crate::renew::answer(&self.raft, &self.machine, &self.ca_key, &fingerprint, req)
                    .await
            }
            Some((_, addr)) => self
                .client
                .call::<_, RenewReply>(&addr, RENEW, &req, Duration::from_secs(15))
                .await
                .map_err(|e| match e {
                    CallError::Status { status, body, .. }
                        if status == hyper::StatusCode::FORBIDDEN =>
                    {
                        WriteError::Forbidden(body)
                    }
                    e => WriteError::Unknown {
                        addr,
                        detail: e.to_string(),
                    },
                })?,
            None => return Err(WriteError::NoLeader(Duration::ZERO)),
        };
        match reply {
            RenewReply::Signed { cert_pem } => Ok(NodeIdentity {
                ca_pem: current.ca_pem.clone(),
                cert_pem,
                key_pem,
            }),
            RenewReply::NotLeader => Err(WriteError::NoLeader(Duration::ZERO)),
            RenewReply::Refused(why) => Err(WriteError::Forbidden(why)),
        }
    }

    /// Waits until Raft stops while the node runs and says why: a storage
    /// error (a full disk; the store treats a failed write as fatal), or a
    /// core that ended without saying (the error is in the log). `None` for
    /// a shutdown.
    pub async fn storage_failure(&self) -> Option<String> {
        let mut metrics = self.raft.metrics();
        loop {
            match &metrics.borrow_and_update().running_state {
                Ok(()) => {}
                Err(openraft::error::Fatal::Stopped) => return None,
                Err(e) => return Some(e.to_string()),
            }
            if metrics.changed().await.is_err() {
                return Some("Raft's core ended (its error is logged just before)".into());
            }
        }
    }

    /// Why Raft no longer runs, if it does not. openraft panics when asked
    /// anything once its core has ended, so every call checks first.
    fn stopped(&self) -> Option<WriteError> {
        let metrics = self.raft.metrics();
        let state = metrics.borrow().running_state.clone();
        let why = match state {
            Err(e) => e.to_string(),
            Ok(()) if metrics.has_changed().is_err() => "its core ended".to_string(),
            Ok(()) => return None,
        };
        Some(WriteError::Stopped(why))
    }

    /// Presents `identity` on every connection made from now on.
    pub fn present(&self, identity: &NodeIdentity) -> Result<(), tls::TlsError> {
        self.identity.replace(identity)?;
        self.client.reconnect();
        Ok(())
    }

    /// Stops serving and stops Raft, as if the process had died.
    pub async fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
        if self.stopped().is_some() {
            return;
        }
        let _ = self.raft.shutdown().await;
    }
}

enum Attempt {
    Done(Response),
    Retry,
    Failed(WriteError),
}
