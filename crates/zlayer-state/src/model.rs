//! The replicated data model and the one function that changes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use zlayer_model::{
    Assignment, ClusterNetwork, ClusterRole, NodeHealth, NodeNetwork, NodeState, ReplicaReport,
    Resources, RolloutReport, StockPeer,
};

/// How many earlier revisions of a deployment are kept for rollback.
pub const KEPT_REVISIONS: usize = 10;

/// The cluster CA. In the replicated state `key_pem` is always empty: the
/// key stays with the voters (see `ca_key`); `pki` fills it in to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    pub cluster_id: String,
    pub cert_pem: String,
    #[serde(default)]
    pub key_pem: String,
    /// SHA-256 of the certificate's DER, hex; join tokens carry it.
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The Raft member id.
    pub id: u64,
    /// The name the scheduler and `zlayer node ls` use.
    pub name: String,
    /// `ip:port` of the node's mTLS API.
    pub addr: String,
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    pub health: NodeHealth,
    /// SHA-256 of the node's certificate, hex.
    pub cert_fingerprint: String,
    /// The certificate it renewed from, still accepted (a node that dies
    /// between the leader's commit and saving its new certificate comes back
    /// with the old one); a second renewal retires it.
    #[serde(default)]
    pub previous_cert_fingerprint: String,
    /// Manager or worker, from the token it joined with.
    #[serde(default)]
    pub role: ClusterRole,
    /// The node's container subnet and WireGuard identity, once the overlay
    /// assigns them.
    #[serde(default)]
    pub network: NodeNetwork,
    pub joined_ms: u64,
    /// When the node last changed state (leader's clock).
    pub state_since_ms: u64,
    /// How many heartbeats the node has sent; the leader watches it move.
    #[serde(default)]
    pub heartbeats: u64,
    /// The node's clock at its last heartbeat.
    #[serde(default)]
    pub last_heartbeat_ms: u64,
    /// The replicas the node runs, as it last reported them.
    #[serde(default)]
    pub replica_reports: Vec<ReplicaReport>,
    /// Its rolling updates, one per service, as it last reported them.
    #[serde(default)]
    pub rollout_reports: Vec<RolloutReport>,
    /// The volumes the node holds, as it last reported them.
    #[serde(default)]
    pub volume_reports: Vec<crate::volumes::VolumeUsage>,
}

/// What every heartbeat changes, stored apart from the node's record so a
/// heartbeat rewrites a few bytes, not the node's reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    pub heartbeats: u64,
    pub last_heartbeat_ms: u64,
    pub health: NodeHealth,
}

impl NodeRecord {
    /// Whether `fingerprint` is one of the node's certificates.
    pub fn holds_certificate(&self, fingerprint: &str) -> bool {
        !fingerprint.is_empty()
            && (self.cert_fingerprint == fingerprint
                || self.previous_cert_fingerprint == fingerprint)
    }

    pub fn liveness(&self) -> Liveness {
        Liveness {
            heartbeats: self.heartbeats,
            last_heartbeat_ms: self.last_heartbeat_ms,
            health: self.health,
        }
    }

    pub fn set_liveness(&mut self, l: Liveness) {
        self.heartbeats = l.heartbeats;
        self.last_heartbeat_ms = l.last_heartbeat_ms;
        self.health = l.health;
    }
}

/// A replica the scheduler could not place, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// `deployment/service`.
    pub workload: String,
    pub replica: u32,
    /// The last replica of a run, from `replica`, pending for the same
    /// reason: a job's thousands of waiting tasks are one record, so each
    /// task placed rewrites a few bytes, not the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<u32>,
    pub reason: String,
}

impl PendingRecord {
    pub fn replicas(&self) -> std::ops::RangeInclusive<u32> {
        self.replica..=self.through.unwrap_or(self.replica).max(self.replica)
    }

    /// `records` with each run of consecutive replicas of one workload,
    /// pending for one reason, made a single record.
    pub fn runs(records: impl IntoIterator<Item = PendingRecord>) -> Vec<PendingRecord> {
        let mut out: Vec<PendingRecord> = Vec::new();
        for r in records {
            match out.last_mut() {
                Some(last)
                    if last.workload == r.workload
                        && last.reason == r.reason
                        && last.replicas().end().checked_add(1) == Some(r.replica) =>
                {
                    last.through = Some(*r.replicas().end());
                }
                _ => out.push(r),
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecRevision {
    pub revision: u64,
    pub file: String,
    pub text: String,
    pub env: BTreeMap<String, String>,
    pub at_ms: u64,
    /// The replica counts the proposer read from `text`.
    #[serde(default)]
    pub counts: ServiceCounts,
}

/// Each service's fixed replica count (`None` for one that scales itself),
/// as the member that proposed the spec read it. Applying a command only
/// compares these numbers and never parses spec text, so members running
/// different parser versions cannot diverge on the same log.
pub type ServiceCounts = BTreeMap<String, Option<u32>>;

/// The [`ServiceCounts`] of a parsed spec, for the proposer.
pub fn service_counts(spec: &zlayer_spec::Spec) -> ServiceCounts {
    spec.services
        .iter()
        .map(|(name, svc)| {
            let fixed = svc.scale.mode == zlayer_spec::ScaleMode::Fixed;
            (name.clone(), fixed.then(|| svc.replica_count()))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub name: String,
    pub current: SpecRevision,
    /// Earlier revisions, newest last, at most [`KEPT_REVISIONS`].
    pub history: Vec<SpecRevision>,
    /// Replica counts set by `zlayer scale`, by service. Each holds until a
    /// spec changes that service's own count (or drops the service).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scaled: BTreeMap<String, ScaledTo>,
    /// `zlayer restart` count by service: part of its replicas' revision,
    /// so each restart rolls the service out again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restarts: BTreeMap<String, u64>,
}

impl DeploymentRecord {
    /// A test fixture: `name` at revision 1 of `text`, from `NAME.yaml`.
    #[cfg(test)]
    pub(crate) fn fixture(name: &str, text: &str) -> DeploymentRecord {
        let first = SpecRevision {
            revision: 1,
            file: format!("{name}.yaml"),
            text: text.into(),
            env: BTreeMap::new(),
            at_ms: 0,
            counts: BTreeMap::new(),
        };
        DeploymentRecord::first(name, first)
    }

    /// A deployment at its first revision.
    pub fn first(name: &str, current: SpecRevision) -> DeploymentRecord {
        DeploymentRecord {
            name: name.to_string(),
            current,
            history: Vec::new(),
            scaled: BTreeMap::new(),
            restarts: BTreeMap::new(),
        }
    }
}

/// A service's replica count set by hand, and the spec's count then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaledTo {
    pub replicas: u32,
    pub spec_replicas: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 of the token's secret, hex; the secret itself is never stored.
    pub secret_sha256: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// How many joins it allows; `None` is unlimited until it expires.
    pub uses: Option<u32>,
    pub used: u32,
    pub revoked: bool,
    #[serde(default)]
    pub kind: TokenKind,
}

/// What a token is for: admitting a manager or a worker, or a remote
/// CLI's API calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Admits a manager (every join token before roles existed did).
    #[default]
    #[serde(rename = "join")]
    Manager,
    Worker,
    Api,
}

impl TokenKind {
    /// The role a node joining with this token gets; `None` for API tokens.
    pub fn admits(self) -> Option<ClusterRole> {
        match self {
            TokenKind::Manager => Some(ClusterRole::Manager),
            TokenKind::Worker => Some(ClusterRole::Worker),
            TokenKind::Api => None,
        }
    }
}

impl TokenRecord {
    /// Whether a join presenting this token's id with `secret_sha256` at
    /// `now_ms` may proceed.
    pub fn check(&self, secret_sha256: &str, now_ms: u64) -> TokenUse {
        if self.secret_sha256 != secret_sha256 {
            TokenUse::WrongSecret
        } else if self.revoked {
            TokenUse::Revoked
        } else if now_ms >= self.expires_ms {
            TokenUse::Expired
        } else if self.uses.is_some_and(|u| self.used >= u) {
            TokenUse::UsedUp
        } else {
            TokenUse::Accepted
        }
    }
}

/// Identifies one replica slot of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AssignmentKey {
    /// `deployment/service`.
    pub workload: String,
    pub replica: u32,
}

impl AssignmentKey {
    pub fn of(a: &Assignment) -> AssignmentKey {
        AssignmentKey {
            workload: a.workload.clone(),
            replica: a.replica,
        }
    }
}

/// A change to the model. Anything that depends on time carries the
/// leader's clock, so applying is deterministic on every member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// An HTTP-01 answer every ingress gives while an order is validated;
    /// `None` withdraws it.
    AcmeHttp01 {
        token: String,
        key_authorization: Option<String>,
    },
    /// A TLS-ALPN-01 answer for `host`; `None` withdraws it.
    AcmeAlpn01 {
        host: String,
        challenge: Option<crate::acme::AlpnChallenge>,
    },
    /// The cluster's account at an ACME directory, its credentials sealed;
    /// `None` forgets it.
    AcmeAccount {
        directory: String,
        sealed: Option<String>,
    },
    /// The certificate obtained for `host`; `None` forgets it.
    AcmeCertificate {
        host: String,
        cert: Option<crate::acme::AcmeCertificate>,
    },
    /// The first node's first write: the cluster CA and, for clusters
    /// founded since the overlay, the container address space.
    Bootstrap {
        ca: CaRecord,
        #[serde(default)]
        network: Option<ClusterNetwork>,
    },
    /// Records a stock WireGuard peer; the cluster picks its address.
    AddPeer {
        name: String,
        public_key: String,
    },
    RemovePeer {
        name: String,
    },
    /// A node says how the mesh reaches it: its WireGuard key, endpoint
    /// and device. Its subnet is the cluster's to pick, never its own.
    SetNodeNetwork {
        id: u64,
        wg_public_key: String,
        wg_endpoint: String,
        wg_device: String,
    },
    AddNode(NodeRecord),
    SetNodeState {
        id: u64,
        state: NodeState,
        at_ms: u64,
    },
    RemoveNode {
        id: u64,
    },
    /// A node is alive; `replica_reports`, `rollout_reports` and `health`
    /// are `None` when they are as last reported.
    Heartbeat {
        id: u64,
        at_ms: u64,
        #[serde(default)]
        replica_reports: Option<Vec<ReplicaReport>>,
        /// Instead of the whole list: what changed in it since this node's
        /// last committed heartbeat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica_changes: Option<zlayer_model::ReportChanges>,
        #[serde(default)]
        health: Option<NodeHealth>,
        #[serde(default)]
        rollout_reports: Option<Vec<RolloutReport>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_reports: Option<Vec<crate::volumes::VolumeUsage>>,
    },
    /// The replicas the scheduler could not place, replacing the last list.
    SetPending(Vec<PendingRecord>),
    PutDeployment {
        name: String,
        file: String,
        text: String,
        env: BTreeMap<String, String>,
        at_ms: u64,
        #[serde(default)]
        counts: ServiceCounts,
        /// Applied only while the deployment is at this revision (a
        /// rollback decided against it must not undo a newer apply).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_revision: Option<u64>,
    },
    /// Removes the deployment and every assignment of its services.
    RemoveDeployment {
        name: String,
    },
    /// A new value for a secret (sealed by the proposer).
    PutSecret(crate::secrets::PutSecret),
    RemoveSecret {
        name: String,
    },
    PutConfig(crate::configs::PutConfig),
    RemoveConfig {
        name: String,
    },
    /// The leader's volume claims, committed before the placements that
    /// need them.
    ClaimVolumes(Vec<crate::volumes::VolumeClaim>),
    /// The leader records job tasks' failed attempts; its next pass moves
    /// each task to its next attempt.
    RecordTaskFailures(Vec<crate::jobs::TaskFailure>),
    /// A node's metering records of containers that finished there.
    RecordUsage(Vec<zlayer_model::UsageRecord>),
    /// `zlayer volume rm`: refused while a service using it has a replica.
    RemoveVolume {
        volume: String,
        id: u64,
    },
    /// A new secrets data key, every value resealed under it.
    RotateSecretsKey(crate::secrets::RotateKey),
    /// `zlayer restart`: roll the service's replicas out again.
    RestartService {
        deployment: String,
        service: String,
    },
    /// `zlayer scale`: a fixed service's replica count, until its spec's changes.
    ScaleService {
        deployment: String,
        service: String,
        replicas: u32,
    },
    /// A scheduler decision, batched. A stop names the generation it stops,
    /// and a placement only replaces an older generation, so a decision made
    /// on a stale view is dropped instead of undoing a newer one.
    Placements {
        place: Vec<Assignment>,
        stop: Vec<Assignment>,
    },
    CreateToken(TokenRecord),
    RevokeToken {
        id: String,
    },
    /// A join presenting a token: checked and counted in one step.
    UseToken {
        id: String,
        secret_sha256: String,
        now_ms: u64,
    },
    /// A join: the token is checked and counted and the node recorded in
    /// one step, so a refusal changes nothing and an admission is whole.
    Admit {
        token_id: String,
        secret_sha256: String,
        now_ms: u64,
        node: NodeRecord,
    },
    /// The leader signed a new certificate for node `id`, which asked with
    /// the certificate `previous`.
    RenewCertificate {
        id: u64,
        previous: String,
        cert_fingerprint: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenUse {
    Accepted,
    Unknown,
    WrongSecret,
    Expired,
    Revoked,
    UsedUp,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Response {
    #[default]
    Done,
    Revision(u64),
    Placed {
        placed: u32,
        stopped: u32,
        stale: u32,
    },
    Token(TokenUse),
    Refused(String),
}

/// What [`ClusterState::apply`] changed, so the store writes only that.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    Ca,
    Node(u64),
    Deployment(String),
    Assignment(AssignmentKey),
    Token(String),
    NextGeneration,
    Pending,
    /// Only the node's [`Liveness`] changed.
    Liveness(u64),
    /// One of a node's replica reports: (node, workload, replica, surge).
    Report(u64, String, u32, bool),
    Removed,
    Network,
    Peers,
    Acme,
    Secrets,
    Configs,
    Volumes,
    Jobs,
    /// One metering record, by container id.
    Usage(String),
    UsageTotals,
}

/// The [`Touched::Report`] of each of `reports`, node `id`'s.
pub(crate) fn report_slots(
    id: u64,
    reports: &[ReplicaReport],
) -> impl Iterator<Item = Touched> + '_ {
    reports
        .iter()
        .map(move |r| Touched::Report(id, r.workload.clone(), r.replica, r.surge))
}

/// Everything Raft replicates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "Flat", from = "Flat")]
pub struct ClusterState {
    pub ca: Option<CaRecord>,
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub deployments: BTreeMap<String, DeploymentRecord>,
    pub assignments: BTreeMap<AssignmentKey, Assignment>,
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Above every generation ever placed; the leader numbers new
    /// placements from here.
    pub next_generation: u64,
    pub pending: Vec<PendingRecord>,
    /// Ids of removed nodes: their certificates are refused for good.
    pub removed: BTreeSet<u64>,
    /// The container address space; `None` in clusters founded before
    /// the overlay, whose nodes keep their own `--cidr`.
    pub network: Option<ClusterNetwork>,
    /// WireGuard peers outside the cluster, by name.
    pub peers: BTreeMap<String, StockPeer>,
    /// ACME challenge answers and the certificates obtained.
    pub acme: crate::acme::AcmeState,
    /// Secrets, sealed, and the keyring that opens them.
    pub secrets: crate::secrets::SecretsState,
    /// Configs by name.
    pub configs: BTreeMap<String, crate::configs::ConfigRecord>,
    /// Named volumes and where each lives.
    pub volumes: crate::volumes::VolumesState,
    /// Job tasks' failed attempts.
    pub jobs: crate::jobs::JobsState,
    /// Metering records and totals.
    pub usage: crate::usage::UsageState,
}

/// The serialized form: JSON maps need string keys, so maps become lists.
#[derive(Serialize, Deserialize)]
struct Flat {
    ca: Option<CaRecord>,
    nodes: Vec<NodeRecord>,
    deployments: Vec<DeploymentRecord>,
    assignments: Vec<Assignment>,
    tokens: Vec<TokenRecord>,
    next_generation: u64,
    #[serde(default)]
    pending: Vec<PendingRecord>,
    #[serde(default)]
    removed: BTreeSet<u64>,
    #[serde(default)]
    network: Option<ClusterNetwork>,
    #[serde(default)]
    peers: Vec<StockPeer>,
    #[serde(default)]
    acme: crate::acme::AcmeState,
    #[serde(default)]
    secrets: crate::secrets::SecretsState,
    #[serde(default)]
    configs: BTreeMap<String, crate::configs::ConfigRecord>,
    #[serde(default)]
    volumes: crate::volumes::VolumesState,
    #[serde(default)]
    jobs: crate::jobs::JobsState,
    #[serde(default)]
    usage: crate::usage::UsageState,
}

impl From<ClusterState> for Flat {
    fn from(s: ClusterState) -> Flat {
        Flat {
            ca: s.ca,
            nodes: s.nodes.into_values().collect(),
            deployments: s.deployments.into_values().collect(),
            assignments: s.assignments.into_values().collect(),
            tokens: s.tokens.into_values().collect(),
            next_generation: s.next_generation,
            pending: s.pending,
            removed: s.removed,
            network: s.network,
            peers: s.peers.into_values().collect(),
            acme: s.acme,
            secrets: s.secrets,
            configs: s.configs,
            volumes: s.volumes,
            jobs: s.jobs,
            usage: s.usage,
        }
    }
}

impl From<Flat> for ClusterState {
    fn from(f: Flat) -> ClusterState {
        ClusterState {
            ca: f.ca,
            nodes: f.nodes.into_iter().map(|n| (n.id, n)).collect(),
            deployments: f
                .deployments
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
            assignments: f
                .assignments
                .into_iter()
                .map(|a| (AssignmentKey::of(&a), a))
                .collect(),
            tokens: f.tokens.into_iter().map(|t| (t.id.clone(), t)).collect(),
            next_generation: f.next_generation,
            pending: f.pending,
            removed: f.removed,
            network: f.network,
            peers: f.peers.into_iter().map(|p| (p.name.clone(), p)).collect(),
            acme: f.acme,
            secrets: f.secrets,
            configs: f.configs,
            volumes: f.volumes,
            jobs: f.jobs,
            usage: f.usage,
        }
    }
}

impl ClusterState {
    /// Applies one command. Refusals change nothing.
    pub fn apply(&mut self, cmd: Command, touched: &mut Vec<Touched>) -> Response {
        match cmd {
            Command::Bootstrap { ca, network } => {
                if self.ca.is_some() {
                    return Response::Refused("the cluster already has a CA".into());
                }
                if !ca.key_pem.is_empty() {
                    return Response::Refused("the CA key never enters the log".into());
                }
                if let Some(Err(why)) = network.as_ref().map(crate::subnets::check_network) {
                    return Response::Refused(why);
                }
                self.ca = Some(ca);
                touched.push(Touched::Ca);
                if network.is_some() {
                    self.network = network;
                    touched.push(Touched::Network);
                }
                Response::Done
            }
            Command::SetNodeNetwork {
                id,
                wg_public_key,
                wg_endpoint,
                wg_device,
            } => self.set_node_network(id, wg_public_key, wg_endpoint, wg_device, touched),
            Command::AddPeer { name, public_key } => self.add_peer(name, public_key, touched),
            Command::ScaleService {
                deployment,
                service,
                replicas,
            } => self.scale_service(deployment, service, replicas, touched),
            Command::RestartService {
                deployment,
                service,
            } => {
                let Some(d) = self.deployments.get_mut(&deployment) else {
                    return Response::Refused(format!("no deployment `{deployment}`"));
                };
                if !d.current.counts.contains_key(&service) {
                    return Response::Refused(format!(
                        "deployment `{deployment}` has no service `{service}`"
                    ));
                }
                *d.restarts.entry(service).or_default() += 1;
                touched.push(Touched::Deployment(deployment));
                Response::Done
            }
            Command::PutConfig(p) => match crate::configs::put(&mut self.configs, p) {
                Ok(()) => {
                    touched.push(Touched::Configs);
                    Response::Done
                }
                Err(why) => Response::Refused(why),
            },
            Command::ClaimVolumes(claims) => {
                if self.volumes.claim(claims) {
                    touched.push(Touched::Volumes);
                }
                Response::Done
            }
            Command::RecordUsage(records) => {
                let r = self.usage.record(records);
                if !r.added.is_empty() {
                    touched.push(Touched::UsageTotals);
                }
                touched.extend(r.added.into_iter().chain(r.dropped).map(Touched::Usage));
                Response::Done
            }
            Command::RecordTaskFailures(failures) => {
                let mut changed = false;
                for f in failures {
                    changed |= self.jobs.record(f);
                }
                if changed {
                    touched.push(Touched::Jobs);
                }
                Response::Done
            }
            Command::RemoveVolume { volume, id } => {
                let running = self
                    .assignments
                    .values()
                    .map(|a| a.workload.clone())
                    .collect();
                match self.volumes.remove(&volume, id, &running) {
                    Ok(()) => {
                        touched.push(Touched::Volumes);
                        Response::Done
                    }
                    Err(why) => Response::Refused(why),
                }
            }
            Command::RemoveConfig { name } => match self.configs.remove(&name) {
                Some(_) => {
                    touched.push(Touched::Configs);
                    Response::Done
                }
                None => Response::Refused(format!("no config named `{name}`")),
            },
            Command::PutSecret(p) => self.secrets_changed(|s| s.put(p), touched),
            Command::RotateSecretsKey(r) => self.secrets_changed(|s| s.rotate(r), touched),
            Command::RemoveSecret { name } => self.secrets_changed(
                |s| {
                    s.secrets
                        .remove(&name)
                        .map(drop)
                        .ok_or_else(|| format!("no secret named `{name}`"))
                },
                touched,
            ),
            Command::AcmeHttp01 {
                token,
                key_authorization,
            } => {
                set_or_remove(&mut self.acme.http01, token, key_authorization);
                touched.push(Touched::Acme);
                Response::Done
            }
            Command::AcmeAlpn01 { host, challenge } => {
                set_or_remove(&mut self.acme.alpn01, host, challenge);
                touched.push(Touched::Acme);
                Response::Done
            }
            Command::AcmeAccount { directory, sealed } => {
                set_or_remove(&mut self.acme.accounts, directory, sealed);
                touched.push(Touched::Acme);
                Response::Done
            }
            Command::AcmeCertificate { host, cert } => {
                set_or_remove(&mut self.acme.certs, host, cert);
                touched.push(Touched::Acme);
                Response::Done
            }
            Command::RemovePeer { name } => {
                if self.peers.remove(&name).is_none() {
                    return Response::Refused(format!("no peer named {name}"));
                }
                touched.push(Touched::Peers);
                Response::Done
            }
            Command::AddNode(node) => self.add_node(node, touched),
            Command::SetNodeState { id, state, at_ms } => match self.nodes.get_mut(&id) {
                Some(n) if n.state == state => Response::Done,
                Some(n) => {
                    n.state = state;
                    n.state_since_ms = at_ms;
                    touched.push(Touched::Node(id));
                    Response::Done
                }
                None => Response::Refused(format!("no node with id {id}")),
            },
            Command::RenewCertificate {
                id,
                previous,
                cert_fingerprint,
            } => match self.nodes.get_mut(&id) {
                Some(n) if !n.holds_certificate(&previous) => Response::Refused(format!(
                    "node {id} no longer holds the certificate that asked for this renewal"
                )),
                Some(n) => {
                    n.previous_cert_fingerprint = previous;
                    n.cert_fingerprint = cert_fingerprint;
                    touched.push(Touched::Node(id));
                    Response::Done
                }
                None => Response::Refused(format!("no node with id {id}")),
            },
            Command::RemoveNode { id } => {
                let Some(n) = self.nodes.remove(&id) else {
                    return Response::Refused(format!("no node with id {id}"));
                };
                touched.extend(report_slots(id, &n.replica_reports));
                self.removed.insert(id);
                touched.push(Touched::Removed);
                touched.push(Touched::Node(id));
                touched.push(Touched::Liveness(id));
                Response::Done
            }
            Command::Heartbeat {
                id,
                at_ms,
                replica_reports,
                replica_changes,
                health,
                rollout_reports,
                volume_reports,
            } => match self.nodes.get_mut(&id) {
                Some(n) => {
                    n.heartbeats += 1;
                    n.last_heartbeat_ms = at_ms;
                    if let Some(h) = health {
                        n.health = h;
                    }
                    // Replica reports live under keys of their own, so a
                    // node with thousands of finished tasks rewrites only
                    // the reports that moved.
                    if let Some(r) = replica_reports.filter(|r| *r != n.replica_reports) {
                        touched.extend(report_slots(id, &n.replica_reports));
                        touched.extend(report_slots(id, &r));
                        n.replica_reports = r;
                    }
                    if let Some(ch) =
                        replica_changes.filter(|ch| ch.apply_to(&mut n.replica_reports))
                    {
                        touched.extend(
                            ch.slots()
                                .map(|(w, i, s)| Touched::Report(id, w.to_string(), i, s)),
                        );
                    }
                    let mut reports_changed = false;
                    if let Some(r) = rollout_reports.filter(|r| *r != n.rollout_reports) {
                        n.rollout_reports = r;
                        reports_changed = true;
                    }
                    if let Some(r) = volume_reports.filter(|r| *r != n.volume_reports) {
                        n.volume_reports = r;
                        reports_changed = true;
                    }
                    touched.push(if reports_changed {
                        Touched::Node(id)
                    } else {
                        Touched::Liveness(id)
                    });
                    Response::Done
                }
                None => Response::Refused(format!("no node with id {id}")),
            },
            Command::SetPending(pending) => {
                if self.pending != pending {
                    self.pending = pending;
                    touched.push(Touched::Pending);
                }
                Response::Done
            }
            Command::PutDeployment {
                name,
                file,
                text,
                env,
                at_ms,
                counts,
                if_revision,
            } => {
                let current = self.deployments.get(&name).map(|d| d.current.revision);
                if if_revision.is_some() && current != if_revision {
                    return Response::Refused(format!(
                        "deployment `{name}` is at revision {} now, not {}; nothing changed",
                        current.unwrap_or(0),
                        if_revision.unwrap_or(0)
                    ));
                }
                let rev = SpecRevision {
                    revision: 1,
                    file,
                    text,
                    env,
                    at_ms,
                    counts,
                };
                self.put_deployment(name, rev, touched)
            }
            Command::RemoveDeployment { name } => {
                if self.deployments.remove(&name).is_none() {
                    return Response::Refused(format!("no deployment named {name}"));
                }
                touched.push(Touched::Deployment(name.clone()));
                let prefix = format!("{name}/");
                let gone: Vec<AssignmentKey> = self
                    .assignments
                    .keys()
                    .filter(|k| k.workload.starts_with(&prefix))
                    .cloned()
                    .collect();
                for k in gone {
                    self.assignments.remove(&k);
                    touched.push(Touched::Assignment(k));
                }
                if self.jobs.forget_deployment(&name) {
                    touched.push(Touched::Jobs);
                }
                Response::Done
            }
            Command::Placements { place, stop } => self.placements(place, stop, touched),
            Command::CreateToken(t) => {
                if self.tokens.contains_key(&t.id) {
                    return Response::Refused(format!("a token with id {} exists", t.id));
                }
                touched.push(Touched::Token(t.id.clone()));
                self.tokens.insert(t.id.clone(), t);
                Response::Done
            }
            Command::RevokeToken { id } => match self.tokens.get_mut(&id) {
                Some(t) => {
                    t.revoked = true;
                    touched.push(Touched::Token(id));
                    Response::Done
                }
                None => Response::Refused(format!("no token with id {id}")),
            },
            Command::UseToken {
                id,
                secret_sha256,
                now_ms,
            } => Response::Token(self.use_token(&id, &secret_sha256, now_ms, touched)),
            Command::Admit {
                token_id,
                secret_sha256,
                now_ms,
                node,
            } => self.admit(&token_id, &secret_sha256, now_ms, node, touched),
        }
    }

    fn admit(
        &mut self,
        token_id: &str,
        secret_sha256: &str,
        now_ms: u64,
        node: NodeRecord,
        touched: &mut Vec<Touched>,
    ) -> Response {
        let verdict = self
            .tokens
            .get(token_id)
            .filter(|t| t.kind.admits().is_some())
            .map_or(TokenUse::Unknown, |t| t.check(secret_sha256, now_ms));
        if verdict != TokenUse::Accepted {
            return Response::Token(verdict);
        }
        if let Some(why) = self
            .name_taken(&node)
            .or_else(|| self.addr_taken(&node))
            .or_else(|| self.wg_key_unusable(&node))
        {
            return Response::Refused(why);
        }
        if self.removed.contains(&node.id) {
            return Response::Refused(format!(
                "member id {} was removed; join with a new key",
                node.id
            ));
        }
        let mut node = node;
        if let Err(why) = self.assign_subnet(&mut node) {
            return Response::Refused(why);
        }
        node.role = self
            .tokens
            .get(token_id)
            .and_then(|t| t.kind.admits())
            .unwrap_or(ClusterRole::Worker);
        self.use_token(token_id, secret_sha256, now_ms, touched);
        touched.push(Touched::Node(node.id));
        self.nodes.insert(node.id, node);
        Response::Token(TokenUse::Accepted)
    }

    fn name_taken(&self, node: &NodeRecord) -> Option<String> {
        self.nodes
            .values()
            .find(|n| n.name == node.name && n.id != node.id)
            .map(|other| format!("node name {} is taken by member {}", node.name, other.id))
    }

    fn addr_taken(&self, node: &NodeRecord) -> Option<String> {
        self.nodes
            .values()
            .find(|n| n.addr == node.addr && n.id != node.id)
            .map(|other| {
                format!(
                    "address {} is already advertised by node {} (member {}); give this node its own --advertise address, or `zlayer node rm {}` first if it replaces that node",
                    node.addr, other.name, other.id, other.name
                )
            })
    }

    fn wg_key_unusable(&self, node: &NodeRecord) -> Option<String> {
        let key = node.network.wg_public_key.as_deref()?;
        if let Err(why) = crate::mesh_fields::check_public_key(key) {
            return Some(why);
        }
        self.nodes
            .values()
            .find(|n| n.id != node.id && n.network.wg_public_key.as_deref() == Some(key))
            .map(|other| format!("WireGuard key {key} is already node {}'s", other.name))
    }

    fn add_node(&mut self, mut node: NodeRecord, touched: &mut Vec<Touched>) -> Response {
        if let Some(why) = self.name_taken(&node) {
            return Response::Refused(why);
        }
        if let Err(why) = self.assign_subnet(&mut node) {
            return Response::Refused(why);
        }
        touched.push(Touched::Node(node.id));
        self.nodes.insert(node.id, node);
        Response::Done
    }

    /// Gives `node` its container subnet: the one its record already holds,
    /// else, for a node behind NAT, the one the leader picked ahead (its
    /// certificate names an address in it) if that is still a free node
    /// slice, else the lowest free one. The cluster picks, so two nodes
    /// never share one.
    fn assign_subnet(&self, node: &mut NodeRecord) -> Result<(), String> {
        let Some(net) = &self.network else {
            return Ok(());
        };
        if let Some(kept) = self
            .nodes
            .get(&node.id)
            .and_then(|n| n.network.subnet.clone())
        {
            node.network.subnet = Some(kept);
            return Ok(());
        }
        let taken = || {
            self.nodes
                .values()
                .filter(|n| n.id != node.id)
                .filter_map(|n| n.network.subnet.as_deref())
        };
        if node.network.behind_nat {
            return match node.network.subnet.as_deref() {
                Some(s) if crate::subnets::is_free(net, s, taken()) => Ok(()),
                Some(s) => Err(format!(
                    "subnet {s}, picked for this node behind NAT, was taken meanwhile; join again"
                )),
                None => Err(
                    "a node behind NAT is admitted with the subnet its certificate names".into(),
                ),
            };
        }
        node.network.subnet = Some(crate::subnets::free_subnet(net, taken())?);
        Ok(())
    }

    fn add_peer(
        &mut self,
        name: String,
        public_key: String,
        touched: &mut Vec<Touched>,
    ) -> Response {
        let Some(net) = &self.network else {
            return Response::Refused(
                "this cluster was founded without a cluster CIDR, so it has no overlay to add a peer to".into(),
            );
        };
        if let Err(why) = crate::mesh_fields::check_peer_name(&name)
            .and_then(|()| crate::mesh_fields::check_public_key(&public_key))
        {
            return Response::Refused(why);
        }
        if self.peers.contains_key(&name) {
            return Response::Refused(format!(
                "a peer named {name} exists; `zlayer overlay peer rm {name}` first"
            ));
        }
        let key_taken = self.peers.values().any(|p| p.public_key == public_key)
            || self
                .nodes
                .values()
                .any(|n| n.network.wg_public_key.as_deref() == Some(&public_key));
        if key_taken {
            return Response::Refused(format!("WireGuard key {public_key} is already in use"));
        }
        let address = match crate::subnets::free_peer_address(
            net,
            self.peers.values().map(|p| p.address.as_str()),
        ) {
            Ok(a) => a,
            Err(why) => return Response::Refused(why),
        };
        self.peers.insert(
            name.clone(),
            StockPeer {
                name,
                public_key,
                address,
            },
        );
        touched.push(Touched::Peers);
        Response::Done
    }

    fn set_node_network(
        &mut self,
        id: u64,
        wg_public_key: String,
        wg_endpoint: String,
        wg_device: String,
        touched: &mut Vec<Touched>,
    ) -> Response {
        if let Err(why) = crate::mesh_fields::check_public_key(&wg_public_key)
            .and_then(|()| crate::mesh_fields::check_endpoint(&wg_endpoint))
            .and_then(|()| crate::mesh_fields::check_device(&wg_device))
        {
            return Response::Refused(why);
        }
        if let Some(other) = self
            .nodes
            .values()
            .find(|n| n.id != id && n.network.wg_public_key.as_deref() == Some(&wg_public_key))
        {
            return Response::Refused(format!(
                "WireGuard key {wg_public_key} is already node {}'s",
                other.name
            ));
        }
        let Some(n) = self.nodes.get_mut(&id) else {
            return Response::Refused(format!("no node with id {id}"));
        };
        let net = &mut n.network;
        // Behind NAT, the address the node sees is no one else's way in;
        // the mesh learns its real endpoint from its handshakes.
        let endpoint = (!net.behind_nat).then_some(wg_endpoint);
        let new = (Some(wg_public_key), endpoint, Some(wg_device));
        if (
            net.wg_public_key.clone(),
            net.wg_endpoint.clone(),
            net.wg_device.clone(),
        ) != new
        {
            (net.wg_public_key, net.wg_endpoint, net.wg_device) = new;
            touched.push(Touched::Node(id));
        }
        Response::Done
    }

    fn put_deployment(
        &mut self,
        name: String,
        mut rev: SpecRevision,
        touched: &mut Vec<Touched>,
    ) -> Response {
        match self.deployments.get_mut(&name) {
            Some(d) if d.current.text == rev.text && d.current.env == rev.env => {
                return Response::Revision(d.current.revision);
            }
            Some(d) => {
                rev.revision = d.current.revision + 1;
                // A hand-set count holds while the spec keeps the count it
                // was set over; a spec that changes it (or drops the
                // service) takes over.
                d.scaled
                    .retain(|svc, to| rev.counts.get(svc) == Some(&Some(to.spec_replicas)));
                let old = std::mem::replace(&mut d.current, rev);
                d.history.push(old);
                let excess = d.history.len().saturating_sub(KEPT_REVISIONS);
                d.history.drain(..excess);
            }
            None => {
                let record = DeploymentRecord::first(&name, rev);
                self.deployments.insert(name.clone(), record);
            }
        }
        let revision = self.deployments[&name].current.revision;
        touched.push(Touched::Deployment(name));
        Response::Revision(revision)
    }

    fn secrets_changed(
        &mut self,
        change: impl FnOnce(&mut crate::secrets::SecretsState) -> Result<(), String>,
        touched: &mut Vec<Touched>,
    ) -> Response {
        match change(&mut self.secrets) {
            Ok(()) => {
                touched.push(Touched::Secrets);
                Response::Done
            }
            Err(why) => Response::Refused(why),
        }
    }

    fn scale_service(
        &mut self,
        deployment: String,
        service: String,
        replicas: u32,
        touched: &mut Vec<Touched>,
    ) -> Response {
        let Some(d) = self.deployments.get_mut(&deployment) else {
            return Response::Refused(format!("no deployment `{deployment}`"));
        };
        let spec_replicas = match d.current.counts.get(&service) {
            None => {
                return Response::Refused(format!(
                    "deployment `{deployment}` has no service `{service}`"
                ))
            }
            Some(None) => {
                return Response::Refused(format!(
                    "{deployment}/{service} scales itself (`scale.mode: adaptive`); change its `min` and `max` in the spec"
                ))
            }
            Some(Some(n)) => *n,
        };
        d.scaled.insert(
            service,
            ScaledTo {
                replicas,
                spec_replicas,
            },
        );
        touched.push(Touched::Deployment(deployment));
        Response::Done
    }

    fn placements(
        &mut self,
        place: Vec<Assignment>,
        stop: Vec<Assignment>,
        touched: &mut Vec<Touched>,
    ) -> Response {
        let (mut placed, mut stopped, mut stale) = (0, 0, 0);
        for a in stop {
            let key = AssignmentKey::of(&a);
            if self.assignments.get(&key) == Some(&a) {
                self.assignments.remove(&key);
                touched.push(Touched::Assignment(key));
                stopped += 1;
            } else {
                stale += 1;
            }
        }
        for a in place {
            let key = AssignmentKey::of(&a);
            let newer = self
                .assignments
                .get(&key)
                .is_none_or(|old| old.generation < a.generation);
            let known = self.deployments.contains_key(deployment_of(&a.workload));
            if !(newer && known) {
                stale += 1;
                continue;
            }
            if a.generation >= self.next_generation {
                self.next_generation = a.generation + 1;
                touched.push(Touched::NextGeneration);
            }
            self.assignments.insert(key.clone(), a);
            touched.push(Touched::Assignment(key));
            placed += 1;
        }
        Response::Placed {
            placed,
            stopped,
            stale,
        }
    }

    fn use_token(
        &mut self,
        id: &str,
        secret_sha256: &str,
        now_ms: u64,
        touched: &mut Vec<Touched>,
    ) -> TokenUse {
        let Some(t) = self
            .tokens
            .get_mut(id)
            .filter(|t| t.kind.admits().is_some())
        else {
            return TokenUse::Unknown;
        };
        let verdict = t.check(secret_sha256, now_ms);
        if verdict == TokenUse::Accepted {
            t.used += 1;
            touched.push(Touched::Token(id.to_string()));
        }
        verdict
    }

    /// The assignments of one node, by node name.
    /// `deployment/service` of each service of a current spec that `pred` picks.
    pub fn services_where(&self, pred: impl Fn(&zlayer_spec::Service) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for d in self.deployments.values() {
            let Ok(spec) = zlayer_spec::parse(&d.current.file, &d.current.text) else {
                continue;
            };
            for (name, svc) in &spec.services {
                if pred(svc) {
                    out.push(format!("{}/{name}", d.name));
                }
            }
        }
        out
    }

    pub fn assignments_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Assignment> {
        self.assignments.values().filter(move |a| a.node == node)
    }
}

fn deployment_of(workload: &str) -> &str {
    workload.split_once('/').map_or(workload, |(d, _)| d)
}

/// `Some` sets the entry, `None` removes it.
fn set_or_remove<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
