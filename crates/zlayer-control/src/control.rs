//! Starting a node's membership: founding, joining, restarting.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use zlayer_model::{NodeHealth, NodeState, ReplicaReport, Resources, RolloutReport};
use zlayer_scheduler::Strategy;
use zlayer_state::join::{self, JoinError, NodeFacts};
use zlayer_state::{pki, Command, Member, MemberConfig, NodeRecord, Response, Timing};

use crate::files::{ClusterFiles, NodeFile};

/// How often a node says it is alive, and how long the cluster waits
/// before it treats a silent node as lost.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    pub heartbeat: Duration,
    pub down_after: Duration,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness {
            heartbeat: Duration::from_millis(500),
            down_after: Duration::from_secs(3),
        }
    }
}

pub struct ControlConfig {
    /// `<data>/cluster`.
    pub dir: PathBuf,
    /// The address other nodes reach this one at; the endpoint listens there.
    pub advertise: IpAddr,
    pub port: u16,
    pub name: String,
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
    pub liveness: Liveness,
    pub timing: Timing,
    pub strategy: Strategy,
    /// Renew the node certificate once it has less than this left.
    pub renew_before: Duration,
    /// How often this node probes one other node's link (latency and
    /// bandwidth), in turn.
    pub probe_every: Duration,
    /// The container address space a cluster founded here gets; `None`
    /// leaves each node on its own `--cidr` (no overlay).
    pub network: Option<zlayer_model::ClusterNetwork>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cluster files: {0}")]
    Files(String),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Member(#[from] zlayer_state::MemberError),
    #[error(transparent)]
    Write(#[from] zlayer_state::WriteError),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NoSuchNode(String),
    #[error("this data dir already belongs to a cluster (node {name}, {dir}); use another --data-dir, or remove that node first")]
    AlreadyMember { name: String, dir: String },
}

/// What this node's agent observes, for the other members to show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub replicas: Vec<ReplicaReport>,
    pub rollouts: Vec<RolloutReport>,
    /// The named volumes this node holds.
    pub volumes: Vec<zlayer_model::VolumeUsage>,
}

pub struct Control {
    pub member: Member,
    pub node: NodeFile,
    pub(crate) liveness: Liveness,
    pub(crate) strategy: Strategy,
    /// When a heartbeat last committed.
    pub(crate) last_ack: Mutex<Instant>,
    /// The agent's latest report, sent with the next heartbeat.
    pub(crate) report: watch::Sender<Report>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    specs: crate::specs::SpecCache,
    pub(crate) files: ClusterFiles,
    /// The key and certificate this node presents now.
    pub(crate) identity: Mutex<pki::NodeIdentity>,
    pub(crate) renew_before: Duration,
    /// How often one peer's link is probed.
    pub(crate) probe_every: Duration,
    /// The links to the other nodes, as last probed.
    pub links: crate::links::Links,
}

impl Control {
    /// Starts this node's member: founds a one-voter cluster when the data
    /// dir has none, otherwise resumes the one it belongs to.
    pub async fn start(cfg: ControlConfig) -> Result<Arc<Control>, ControlError> {
        let files = ClusterFiles::new(&cfg.dir);
        if !files.exists() {
            return Control::found(cfg, files).await;
        }
        let (node, identity) = files.load()?;
        let listen: SocketAddr = node
            .addr
            .parse()
            .map_err(|e| ControlError::Files(format!("node.json: address {}: {e}", node.addr)))?;
        if listen.ip() != cfg.advertise {
            tracing::warn!(
                "this node is recorded at {}; --advertise {} is ignored (addresses are fixed at join)",
                node.addr,
                cfg.advertise
            );
        }
        let member =
            Member::start(member_config(&cfg, &files, &node, listen, identity.clone())).await?;
        Ok(Control::assemble(cfg, member, node, files, identity))
    }

    async fn found(cfg: ControlConfig, files: ClusterFiles) -> Result<Arc<Control>, ControlError> {
        files.refuse_orphaned_store()?;
        let _ = std::fs::remove_file(files.ca_key_file());
        let listen = bindable(cfg.advertise, cfg.port);
        let ca = pki::create_ca(&zlayer_state::token::random_hex(8))?;
        let identity = pki::bootstrap_identity(&ca, &cfg.name, &[cfg.advertise])?;
        let fingerprint = pki::fingerprint_pem(&identity.cert_pem)?;
        let node = NodeFile {
            id: join::member_id(&fingerprint),
            name: cfg.name.clone(),
            addr: listen.to_string(),
            seed: Vec::new(),
            nat: None,
        };
        let member =
            Member::start(member_config(&cfg, &files, &node, listen, identity.clone())).await?;
        let now = zlayer_state::now_ms();
        let me = NodeRecord {
            id: node.id,
            name: node.name.clone(),
            addr: node.addr.clone(),
            capacity: cfg.capacity,
            labels: cfg.labels.clone(),
            state: NodeState::Ready,
            health: NodeHealth::default(),
            cert_fingerprint: fingerprint,
            joined_ms: now,
            state_since_ms: now,
            ..NodeRecord::default()
        };
        member.found_cluster(ca, cfg.network.clone(), me).await?;
        files.save(&node, &identity)?;
        tracing::info!(node = %node.name, addr = %node.addr, "founded a new cluster");
        Ok(Control::assemble(cfg, member, node, files, identity))
    }

    /// Joins the cluster a token names and records the identity it grants;
    /// [`Control::start`] then runs the node.
    pub async fn join(
        cfg: &ControlConfig,
        token: &str,
        first: Option<String>,
        wg_public_key: Option<String>,
    ) -> Result<NodeFile, ControlError> {
        let files = ClusterFiles::new(&cfg.dir);
        if files.exists() {
            let (node, _) = files.load()?;
            return Err(ControlError::AlreadyMember {
                name: node.name,
                dir: cfg.dir.display().to_string(),
            });
        }
        files.refuse_orphaned_store()?;
        let addr = bindable(cfg.advertise, cfg.port).to_string();
        let facts = NodeFacts {
            name: cfg.name.clone(),
            addr: addr.clone(),
            capacity: cfg.capacity,
            labels: cfg.labels.clone(),
            wg_public_key,
        };
        let token = match first {
            Some(a) => with_first_address(token, &a)?,
            None => token.to_string(),
        };
        let joined = join::join(&token, facts).await?;
        let _ = std::fs::remove_file(files.ca_key_file());
        let node = NodeFile {
            id: joined.id,
            name: cfg.name.clone(),
            addr: joined.nat.as_ref().map_or(addr, |n| n.addr.clone()),
            seed: joined.seed,
            nat: joined.nat,
        };
        files.save(&node, &joined.identity)?;
        Ok(node)
    }

    fn assemble(
        cfg: ControlConfig,
        member: Member,
        node: NodeFile,
        files: ClusterFiles,
        identity: pki::NodeIdentity,
    ) -> Arc<Control> {
        let c = Arc::new(Control {
            member,
            node,
            files,
            identity: Mutex::new(identity),
            renew_before: cfg.renew_before,
            probe_every: cfg.probe_every,
            links: crate::links::Links::default(),
            liveness: cfg.liveness,
            strategy: cfg.strategy,
            last_ack: Mutex::new(Instant::now()),
            report: watch::Sender::new(Report::default()),
            tasks: Mutex::new(Vec::new()),
            specs: Default::default(),
        });
        let tasks = vec![
            tokio::spawn(crate::heartbeat::run(c.clone())),
            tokio::spawn(crate::leader::run(c.clone())),
            tokio::spawn(crate::renewal::run(c.clone())),
            tokio::spawn(crate::links::run(c.clone())),
        ];
        if let Ok(mut t) = c.tasks.lock() {
            t.extend(tasks);
        }
        c
    }

    pub fn id(&self) -> u64 {
        self.node.id
    }

    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Reads the committed state as this member has applied it.
    pub fn read<T>(&self, f: impl FnOnce(&zlayer_state::ClusterState) -> T) -> T {
        self.member.machine.read(f)
    }

    /// Every committed deployment's current revision, validated once.
    pub fn specs(&self) -> Vec<Arc<zlayer_spec::DeploymentRevision>> {
        let committed: Vec<_> = self.read(|s| {
            s.deployments
                .values()
                .map(|d| (d.name.clone(), d.current.clone()))
                .collect()
        });
        self.specs.of(&committed)
    }

    /// This node's record as committed, if this member has applied it.
    pub fn own_record(&self) -> Option<zlayer_state::NodeRecord> {
        self.read(|s| s.nodes.get(&self.node.id).cloned())
    }

    /// Every other node's record.
    pub fn other_records(&self) -> Vec<zlayer_state::NodeRecord> {
        self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != self.node.id)
                .cloned()
                .collect()
        })
    }

    /// Records a stock WireGuard peer; returns it with the address the
    /// cluster gave it.
    pub async fn add_peer(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<zlayer_model::StockPeer, ControlError> {
        crate::reserve::ensure_room(self.files.dir()).map_err(ControlError::Refused)?;
        let cmd = Command::AddPeer {
            name: name.to_string(),
            public_key: public_key.to_string(),
        };
        if let zlayer_state::Response::Refused(why) = self.write(cmd).await? {
            return Err(ControlError::Refused(why));
        }
        self.read(|s| s.peers.get(name).cloned())
            .ok_or_else(|| ControlError::Refused(format!("peer {name} was not recorded")))
    }

    pub async fn remove_peer(&self, name: &str) -> Result<(), ControlError> {
        let cmd = Command::RemovePeer {
            name: name.to_string(),
        };
        match self.write(cmd).await? {
            zlayer_state::Response::Refused(why) => Err(ControlError::Refused(why)),
            _ => Ok(()),
        }
    }

    /// Records how the mesh reaches this node, unless it already says so.
    pub async fn publish_network(
        &self,
        wg_public_key: &str,
        wg_endpoint: &str,
        wg_device: &str,
    ) -> Result<(), ControlError> {
        let current = self.own_record().map(|n| n.network);
        let same = current.is_some_and(|n| {
            n.wg_public_key.as_deref() == Some(wg_public_key)
                && n.wg_endpoint.as_deref() == Some(wg_endpoint)
                && n.wg_device.as_deref() == Some(wg_device)
        });
        if same {
            return Ok(());
        }
        match self
            .write(Command::SetNodeNetwork {
                id: self.node.id,
                wg_public_key: wg_public_key.to_string(),
                wg_endpoint: wg_endpoint.to_string(),
                wg_device: wg_device.to_string(),
            })
            .await?
        {
            zlayer_state::Response::Refused(why) => Err(ControlError::Refused(why)),
            _ => Ok(()),
        }
    }

    /// Changes whenever this member applies a log entry.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.member.machine.subscribe()
    }

    pub async fn write(&self, cmd: Command) -> Result<Response, ControlError> {
        Ok(self.member.write(cmd).await?)
    }

    /// See `Member::write_as_leader`.
    pub(crate) async fn write_as_leader(&self, cmd: Command) -> Result<Response, ControlError> {
        Ok(self.member.write_as_leader(cmd).await?)
    }

    /// What the agent reports for the next heartbeat.
    pub fn report(&self, report: Report) {
        self.report.send_if_modified(|cur| {
            let changed = *cur != report;
            *cur = report;
            changed
        });
    }

    /// True when this node has not committed a heartbeat for the down
    /// timeout while other voters exist: the leader has (or will have)
    /// moved its replicas, so it must stop them. A lone voter never fences.
    pub fn fenced(&self) -> bool {
        let others = self.has_other_voters();
        let silent = self
            .last_ack
            .lock()
            .map(|t| t.elapsed() > self.liveness.down_after)
            .unwrap_or(false);
        others && silent
    }

    /// Whether a voter other than this node exists (only then can it fence).
    pub(crate) fn has_other_voters(&self) -> bool {
        let m = self
            .member
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        m.membership().voter_ids().any(|id| id != self.node.id)
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Stops the loops and Raft; containers are the agent's and keep running.
    pub async fn stop(&self) {
        if let Ok(t) = self.tasks.lock() {
            t.iter().for_each(|t| t.abort());
        }
        self.member.stop().await;
    }
}

fn member_config(
    cfg: &ControlConfig,
    files: &ClusterFiles,
    node: &NodeFile,
    listen: SocketAddr,
    identity: pki::NodeIdentity,
) -> MemberConfig {
    MemberConfig {
        id: node.id,
        dir: files.raft_dir(),
        listen,
        advertise: node.addr.clone(),
        identity,
        timing: cfg.timing,
        keep_membership: true,
        ca_key_file: Some(files.ca_key_file()),
        seed: node.seed.clone(),
    }
}

/// `advertise:port`, or on loopback a free port when that one is taken: a
/// loopback-only node is reached by no other node, and a second node on the
/// same host (another data dir) must still start.
fn bindable(advertise: IpAddr, port: u16) -> SocketAddr {
    let want = SocketAddr::new(advertise, port);
    match std::net::TcpListener::bind(want).and_then(|l| l.local_addr()) {
        Ok(bound) => return bound,
        Err(_) if !advertise.is_loopback() => return want,
        Err(_) => {}
    }
    std::net::TcpListener::bind(SocketAddr::new(advertise, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or(want)
}

/// The token with `addr` tried first (the address given on the command line).
fn with_first_address(token: &str, addr: &str) -> Result<String, ControlError> {
    let mut t = zlayer_state::token::JoinToken::decode(token).map_err(JoinError::from)?;
    let addr = if addr.contains(':') && addr.parse::<SocketAddr>().is_ok() {
        addr.to_string()
    } else {
        let port = t
            .addrs
            .first()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map_or(crate::DEFAULT_PORT, |a| a.port());
        format!("{addr}:{port}")
    };
    t.addrs.retain(|a| *a != addr);
    t.addrs.insert(0, addr);
    Ok(t.encode())
}
