//! Wire types shared by the node and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// File name, for error messages.
    pub file: String,
    /// The spec text as written.
    pub text: String,
    /// Values for `$E:` references, from the caller's environment.
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub deployment: String,
    pub services: Vec<String>,
    pub changed: bool,
    /// Each service's current revision: `up -d` waits for these rollouts.
    #[serde(default)]
    pub revisions: BTreeMap<String, String>,
    /// Services whose count `zlayer scale` set, with that count: `up -d`
    /// waits for it instead of the spec's.
    #[serde(default)]
    pub scaled: BTreeMap<String, u32>,
    /// The deployment's revision this apply made (or found): `up -d` stops
    /// waiting once another one is current (a rollback, another `up`).
    #[serde(default)]
    pub revision: u64,
}

/// A replica's state as `ps` shows it: the node's [`zlayer_model::ReplicaState`],
/// or what another member knows of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicaPhase {
    Pending,
    Running,
    Exited,
    Failed,
    /// Exited, killed by the kernel's OOM killer.
    OomKilled,
    /// Exited soon after each of its last starts (Kubernetes'
    /// CrashLoopBackOff): waiting out a growing backoff.
    CrashLoop,
    /// Placed on a node that has not reported it yet.
    Assigned,
    /// Its node is down: nothing vouches for its last report.
    Unknown,
    /// Its deployment's committed revision does not parse on the node.
    Invalid,
}

/// A replica's health as `ps` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthView {
    None,
    Starting,
    Healthy,
    Unhealthy,
    Unknown,
}

/// A rollout's state as `rollouts` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutPhase {
    Done,
    Rolling,
    Failed,
}

macro_rules! words {
    ($t:ty { $($v:ident => $w:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $w),* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words!(ReplicaPhase {
    Pending => "pending",
    Running => "running",
    Exited => "exited",
    Failed => "failed",
    OomKilled => "oom-killed",
    CrashLoop => "crash-loop",
    Assigned => "assigned",
    Unknown => "unknown",
    Invalid => "invalid",
});
words!(HealthView {
    None => "none",
    Starting => "starting",
    Healthy => "healthy",
    Unhealthy => "unhealthy",
    Unknown => "unknown",
});
words!(RolloutPhase {
    Done => "done",
    Rolling => "rolling",
    Failed => "failed",
});

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaView {
    pub deployment: String,
    pub service: String,
    pub replica: u32,
    pub node: String,
    pub state: ReplicaPhase,
    pub health: HealthView,
    pub restarts: u32,
    pub ip: String,
    pub age_secs: u64,
    pub container_id: String,
    pub message: String,
    /// The revision (template hash) the replica runs.
    #[serde(default)]
    pub revision: String,
    /// A replacement started by a rollout beside the old replica of its slot.
    #[serde(default)]
    pub surge: bool,
    /// `service`, `job` or `cron`, as the committed spec says (empty when
    /// this node cannot tell).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// A job task whose attempt failed, waiting for its next one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retrying: bool,
    /// A job task that succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub succeeded: bool,
}

/// A service's progress towards its current revision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutView {
    pub deployment: String,
    pub service: String,
    /// The node doing it: each node replaces its own replicas.
    #[serde(default)]
    pub node: String,
    pub revision: String,
    pub state: RolloutPhase,
    pub message: String,
    pub age_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub time_ms: u64,
    /// The node whose agent saw it.
    #[serde(default)]
    pub node: String,
    pub deployment: String,
    pub service: String,
    pub replica: u32,
    pub kind: String,
    pub message: String,
}

/// Where a replica lives on disk, for exec and logs done by the CLI itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaLocation {
    pub service: String,
    pub replica: u32,
    pub container_id: String,
    pub runtime_root: String,
    pub log_path: String,
}

/// `zlayer logs`: a replica's output, served by the node that runs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogsRequest {
    /// `SERVICE` (every replica) or `SERVICE/N`.
    pub target: String,
    pub follow: bool,
    pub tail: Option<usize>,
}

/// `zlayer exec` through the node that runs the replica: no TTY and no
/// stdin (like `docker exec` without `-i`); the answer is an exec stream
/// (see [`crate::exec_stream`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    /// `SERVICE/N` (`SERVICE` means replica 1).
    pub target: String,
    pub command: Vec<String>,
}

/// A node as `zlayer node ls` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeView {
    pub id: u64,
    pub name: String,
    pub addr: String,
    /// `leader`, `voter` or `learner`; `-` before Raft has taken it in.
    pub role: String,
    /// `manager` or `worker`: what its join token admitted.
    #[serde(default)]
    pub kind: String,
    /// `ready`, `draining` or `down`.
    pub state: String,
    pub cpu_milli: Amount,
    pub memory_bytes: Amount,
    pub gpus: Amount,
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since it was last heard (see `Control::nodes`).
    pub last_heartbeat_ms: u64,
    /// Replica slots assigned to it.
    pub replicas: usize,
    /// What the node reports for the scheduler's health score, each 0..=1.
    #[serde(default)]
    pub health: BTreeMap<String, f64>,
    /// Its container subnet; empty where the cluster has no overlay.
    #[serde(default)]
    pub subnet: String,
    /// The WireGuard device it runs: `kernel`, `userspace`, or `-`.
    #[serde(default)]
    pub overlay: String,
    /// It joined from behind NAT: reached only through the mesh.
    #[serde(default)]
    pub behind_nat: bool,
}

/// `zlayer overlay status`: this node's device and its peers, like `wg show`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverlayView {
    /// `kernel` or `userspace`; empty when this node runs no mesh.
    pub device: String,
    pub interface: String,
    pub subnet: String,
    pub public_key: String,
    pub endpoint: String,
    pub peers: Vec<OverlayPeerView>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverlayPeerView {
    /// The node's name, or `?` for a key no node record holds.
    pub name: String,
    pub public_key: String,
    pub endpoint: String,
    /// Seconds since the last handshake; `None` before the first.
    pub handshake_secs_ago: Option<u64>,
    /// Bytes through this device peer; `None` for a node reached through
    /// a relay (the relay's row counts them).
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub allowed_ips: Vec<String>,
    /// How traffic reaches it: `direct`, `direct, relays NAMES` (this peer
    /// forwards to nodes behind NAT for this one) or `relay via NAME`.
    pub path: String,
    /// The link to this node as last probed (none for stock peers).
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    #[serde(default)]
    pub mbit_s: Option<f64>,
}

/// Free and total of one resource.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Amount {
    pub free: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub expires_ms: u64,
    pub uses: Option<u32>,
    pub used: u32,
    /// `join` or `api`.
    pub kind: String,
    /// `valid`, `expired`, `revoked` or `used up`.
    pub status: String,
}

/// The operator's requests about the cluster itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRequest {
    Nodes,
    /// `zlayer scale`: a fixed service's replica count (`DEPLOYMENT/SERVICE`
    /// or a service name one deployment has).
    Scale {
        service: String,
        replicas: u32,
    },
    /// `zlayer restart`: roll a service's replicas out again.
    Restart(String),
    Drain(String),
    /// A deployment's revisions kept in the cluster state, oldest first.
    History(String),
    /// Apply an earlier revision again (the one before the current one,
    /// or `to`) as a new revision, rolled out as any change is.
    Undo {
        deployment: String,
        to: Option<u64>,
    },
    Uncordon(String),
    Remove(String),
    TokenCreate {
        ttl_secs: u64,
        uses: Option<u32>,
        /// An API token for a remote CLI instead of a join token.
        #[serde(default)]
        api: bool,
        /// The role a join token admits; workers when absent.
        #[serde(default)]
        role: Option<zlayer_model::ClusterRole>,
    },
    Tokens,
    TokenRevoke(String),
    /// This node's WireGuard device and peers.
    Overlay,
    /// Record a stock WireGuard peer with this public key.
    PeerAdd {
        name: String,
        public_key: String,
    },
    PeerRemove(String),
    /// The ingress CA certificate (only voters can derive it).
    IngressCa,
    /// `zlayer secret create`: a new value for a secret.
    SecretCreate {
        name: String,
        value: SecretValue,
    },
    Secrets,
    SecretRemove(String),
    /// A new key to seal the secrets with.
    SecretsRotateKey,
    /// `zlayer config create`: a new value (base64) for a config.
    ConfigCreate {
        name: String,
        data: String,
    },
    Configs,
    ConfigRemove(String),
    /// The cluster's named volumes.
    Volumes,
    /// `zlayer volume rm DEPLOYMENT/NAME`.
    VolumeRemove(String),
    /// Metering records kept in the cluster state, oldest first.
    Usage(zlayer_model::UsageQuery),
}

/// A secret's value on its way to the node, base64. Its `Debug` never
/// shows it, so no log line or error that prints a request can.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} base64 chars>)", self.0.len())
    }
}

/// A secret or config as `ls` shows it: never its value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredView {
    pub name: String,
    pub version: u64,
    pub bytes: u64,
    pub updated_ms: u64,
    /// `deployment/service` of each service whose spec uses it.
    pub consumers: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterReply {
    Nodes(Vec<NodeView>),
    Tokens(Vec<TokenView>),
    Token(String),
    Overlay(OverlayView),
    Peer(StockPeerConfig),
    /// A PEM document.
    Pem(String),
    History(Vec<RevisionView>),
    Secrets(Vec<StoredView>),
    Configs(Vec<StoredView>),
    Volumes(Vec<VolumeView>),
    Usage(Vec<zlayer_model::UsageRecord>),
    /// The revision a change made.
    Revision(u64),
    Done,
}

/// A named volume: where it lives, its size and what its node reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeView {
    /// `deployment/name`.
    pub volume: String,
    pub node: String,
    /// The size enforced (`None`: a plain directory, no limit).
    pub size_bytes: Option<u64>,
    pub created_ms: u64,
    /// Bytes used, as its node last reported (`None`: not reported yet).
    pub used_bytes: Option<u64>,
    /// The filesystem's size on the node, for a sized volume.
    pub capacity_bytes: Option<u64>,
    /// `deployment/service` of every service placed with it mounted.
    pub users: Vec<String>,
    /// Those with a replica placed now (`volume rm` waits for none).
    pub in_use_by: Vec<String>,
}

/// One kept revision of a deployment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevisionView {
    pub revision: u64,
    pub current: bool,
    pub file: String,
    pub applied_ms: u64,
    /// `service=image`, per service (empty for a text that does not parse).
    pub images: Vec<String>,
}

/// What a stock peer needs: its address and every node to reach.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StockPeerConfig {
    pub name: String,
    /// `a.b.c.d/32`.
    pub address: String,
    pub cluster_cidr: String,
    pub nodes: Vec<StockPeerNode>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StockPeerNode {
    pub name: String,
    pub public_key: String,
    pub endpoint: String,
    pub subnet: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Every request the node understands, after parsing.
#[derive(Debug)]
pub enum Request {
    Apply(ApplyRequest),
    Down(String),
    Ps,
    Events,
    Rollouts,
    /// Long poll: answers once the node's state generation passes the given one (or after a while).
    Watch(u64),
    Locate(String),
    Logs(LogsRequest),
    Exec(ExecRequest),
    Metrics,
    Cluster(ClusterRequest),
    /// `GET /v1/usage?deployment=&service=&since_ms=&until_ms=`.
    Usage(zlayer_model::UsageQuery),
    Shutdown,
}
