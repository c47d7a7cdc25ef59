//! The v1 spec types. Every struct denies unknown keys; defaults follow
//! `shared/spec.md`. Extensions beyond the public ZLayer v1 keys are marked.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{Duration, Size};

/// One deployment: a set of services applied together.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Spec format version; only `v1` exists.
    pub version: String,
    /// Deployment name, a DNS label.
    pub deployment: String,
    pub services: BTreeMap<String, Service>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    #[default]
    Service,
    Job,
    Cron,
}

impl ResourceType {
    /// Its name in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Service => "service",
            ResourceType::Job => "job",
            ResourceType::Cron => "cron",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub rtype: ResourceType,
    pub image: Image,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Values may be literals, `$S:secret` or `$E:VAR` (from the caller's environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub scale: Scale,
    #[serde(default)]
    pub node_mode: NodeMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
    /// Both probes at once: readiness (traffic) and liveness (restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Extension (Kubernetes' readinessProbe): failing takes a replica out
    /// of traffic and counts it unhealthy for rollouts and `depends`, and
    /// never restarts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Health>,
    /// Extension (Kubernetes' livenessProbe): `retries` failures in a row
    /// restart the replica; it has no say over traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Health>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends: Vec<Depends>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<Storage>,
    /// Cron schedule (seconds minutes hours day-of-month month day-of-week year); `rtype: cron` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Extension (Kubernetes' `concurrencyPolicy`), `rtype: cron` only:
    /// what a fire time does while the previous run still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Extension (Kubernetes' `completions`), `rtype: job` only: how many
    /// tasks the job runs to success (default: `scale`'s count, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<u32>,
    /// Extension (Kubernetes' `parallelism`), `rtype: job` only: the most
    /// tasks that run at once across the cluster (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Extension (Kubernetes' `backoffLimit`), `rtype: job` only: how many
    /// times a failed task is tried again (default 6), each after a longer
    /// backoff, and each placed by the leader on another node where one fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Extension (Kubernetes' `activeDeadlineSeconds`), `rtype: job` only:
    /// the most a task may run, counted over all its attempts; past it the
    /// task is killed and fails for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    /// Extension: how a replica is stopped.
    #[serde(default)]
    pub stop: Stop,
    /// Extension: user to run as (`uid`, `uid:gid`); overrides the image's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension: how a changed service is rolled out.
    #[serde(default)]
    pub update: Update,
    /// Extension: who may connect to this service's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicy>,
    /// Extension: secrets (by name) the replicas get as files, read-only,
    /// at `/run/secrets/NAME`. `$S:NAME` in `env` gives one as a variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Extension: files the replicas get read-only, each from a config
    /// (`zlayer config create`) or written inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMount>,
}

/// A cron fire time that comes while the previous run still runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Start the new run beside it.
    Allow,
    /// Skip the fire time (the default).
    #[default]
    Forbid,
    /// Stop the running one (its stop sequence), then start the new run.
    Replace,
}

/// Retries of a failed job task when the spec names none (Kubernetes' default).
pub const DEFAULT_JOB_RETRIES: u32 = 6;

/// One read-only file in a service's containers.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileMount {
    /// Absolute path in the container.
    pub target: String,
    /// The config (by name) that holds its content; a new version rolls the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Its content, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Service {
    /// The probe that decides whether a replica takes traffic and counts
    /// as healthy (rollouts, `depends`): `readiness`, else `health`.
    pub fn readiness_probe(&self) -> Option<&Health> {
        self.readiness.as_ref().or(self.health.as_ref())
    }

    /// How many replicas it runs: a job's `completions`, else its `scale`.
    pub fn replica_count(&self) -> u32 {
        match (self.rtype, self.completions) {
            (ResourceType::Job, Some(n)) => n,
            _ => self.scale.initial_replicas(),
        }
    }

    /// How many times a failed task of a job is tried again.
    pub fn job_retries(&self) -> u32 {
        self.retries.unwrap_or(DEFAULT_JOB_RETRIES)
    }

    /// The probe whose failures restart a replica: `liveness`, else `health`.
    pub fn liveness_probe(&self) -> Option<&Health> {
        self.liveness.as_ref().or(self.health.as_ref())
    }

    /// The secrets its https routes take their certificates from: every
    /// node's ingress needs them, not only the nodes that run replicas.
    pub fn tls_secret_refs(&self) -> std::collections::BTreeSet<String> {
        self.endpoints
            .iter()
            .filter_map(|ep| ep.tls.as_ref())
            .flat_map(|t| [t.cert_secret.clone(), t.key_secret.clone()])
            .flatten()
            .collect()
    }

    /// Every config its `files` take content from.
    pub fn config_refs(&self) -> std::collections::BTreeSet<String> {
        self.files.iter().filter_map(|f| f.config.clone()).collect()
    }

    /// Every secret the service uses: its `secrets:` files and its `$S:` env.
    /// The secret its image is pulled with, if any.
    pub fn pull_secret_refs(&self) -> std::collections::BTreeSet<String> {
        self.image.pull_secret.iter().cloned().collect()
    }

    pub fn secret_refs(&self) -> std::collections::BTreeSet<String> {
        let from_env = self.env.values().filter_map(|v| v.strip_prefix("$S:"));
        self.secrets
            .iter()
            .map(String::as_str)
            .chain(from_env)
            .map(str::to_string)
            .collect()
    }
}

/// Extension: which callers may open connections to a service's replicas.
/// Without it anyone may; with it only the listed services' replicas (on
/// any node) and the node itself (its published ports and health checks).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Services allowed in: `NAME` in this deployment, or `DEPLOYMENT/NAME`.
    /// Empty admits no other replica at all.
    #[serde(default)]
    pub ingress_from: Vec<String>,
}

/// Extension: the rolling update of a changed service. New replicas start
/// first; an old replica stops only once its replacement is healthy.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// How many replicas are replaced at the same time.
    #[serde(default = "default_parallelism")]
    pub parallelism: i64,
    /// How long a new replica has to become healthy before the rollout stops.
    #[serde(default = "default_update_timeout")]
    pub timeout: Duration,
    /// How long a new replica must run (and be healthy at the end) before
    /// it counts as serving and an old one stops: a crash or a failed check
    /// within it fails the rollout. 0s (default): healthy once is enough.
    #[serde(default)]
    pub monitor: Duration,
    /// What a failed rollout does: `pause` (default; the old replicas keep
    /// running) or `rollback` (the deployment's previous revision is applied
    /// again, as `zlayer rollout undo` would).
    #[serde(default)]
    pub failure_action: FailureAction,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    #[default]
    Pause,
    Rollback,
}

impl Default for Update {
    fn default() -> Self {
        Update {
            parallelism: default_parallelism(),
            timeout: default_update_timeout(),
            monitor: Duration::default(),
            failure_action: FailureAction::default(),
        }
    }
}

fn default_parallelism() -> i64 {
    1
}
fn default_update_timeout() -> Duration {
    Duration::from_secs(300)
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// A local image name (`busybox`, `demo:latest`) or a registry reference.
    pub name: String,
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Extension (Kubernetes' imagePullSecrets): a secret holding
    /// `USER:PASSWORD` for the image's registry. Each node that runs the
    /// service pulls the image with it when the node lacks the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Command {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (for example 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    /// What the scheduler reserves on a node, when less than the limits
    /// above (which the cgroup enforces). Each one left out is its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Requests>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// CPU cores reserved (for example 0.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
}

impl Resources {
    /// The CPU the scheduler reserves: the request, else the limit.
    pub fn requested_cpu(&self) -> Option<f64> {
        self.requests.as_ref().and_then(|r| r.cpu).or(self.cpu)
    }

    /// The memory the scheduler reserves: the request, else the limit.
    pub fn requested_memory(&self) -> Option<Size> {
        self.requests
            .as_ref()
            .and_then(|r| r.memory)
            .or(self.memory)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub count: u32,
    #[serde(default = "default_gpu_vendor")]
    pub vendor: String,
}

fn default_gpu_vendor() -> String {
    "nvidia".into()
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Expose {
    Public,
    #[default]
    Internal,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    pub protocol: Protocol,
    /// Port the container listens on.
    pub port: i64,
    /// Extension: host port for `expose: public` (defaults to `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub expose: Expose,
    /// Extension: how the ingress spreads this endpoint's requests.
    #[serde(default, skip_serializing_if = "is_default")]
    pub balance: Balance,
    /// Extension: the protocol the ingress speaks to the replicas.
    #[serde(default, skip_serializing_if = "is_default")]
    pub upstream: Upstream,
    /// Extension: the certificate of an `https` endpoint; without it the
    /// ingress serves one issued by the cluster's ingress CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EndpointTls>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Ingress balancing of one endpoint.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The less busy of two replicas picked at random (least outstanding requests).
    #[default]
    PowerOfTwo,
    RoundRobin,
}

/// What the ingress speaks to an endpoint's replicas.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge), for gRPC and other h2 servers.
    H2c,
}

/// Where an `https` endpoint's certificate comes from: files present on
/// every node (`cert` and `key`), or an ACME CA (`acme: true`, with the
/// node's `--acme-directory`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointTls {
    /// PEM certificate chain, leaf first (an absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key (an absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Obtain and renew the certificate from the cluster's ACME CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acme: bool,
    /// The PEM certificate chain from a secret (`zlayer secret create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret: Option<String>,
    /// The PEM private key from a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
}

impl Endpoint {
    /// Whether the ingress routes this endpoint by host and path (an
    /// `http`/`https` endpoint with `expose: public` and a `host` or
    /// `path`); any other public endpoint is published as a port.
    pub fn is_ingress_route(&self) -> bool {
        self.expose == Expose::Public
            && matches!(self.protocol, Protocol::Http | Protocol::Https)
            && (self.host.is_some() || self.path.is_some())
    }

    /// The port published on the host when `expose: public`.
    pub fn published_port(&self) -> u16 {
        u16::try_from(self.host_port.unwrap_or(self.port)).unwrap_or(0)
    }
    pub fn container_port(&self) -> u16 {
        u16::try_from(self.port).unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    #[default]
    Fixed,
    Adaptive,
}

/// `{mode: fixed, replicas}` or `{mode: adaptive, min, max, cooldown, targets}`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    #[serde(default)]
    pub mode: ScaleMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<ScaleTargets>,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            mode: ScaleMode::Fixed,
            replicas: Some(1),
            min: None,
            max: None,
            cooldown: None,
            targets: None,
        }
    }
}

impl Scale {
    /// Replicas to run now: `replicas` for fixed, `min` for adaptive (until the autoscaler lands).
    pub fn initial_replicas(&self) -> u32 {
        let n = match self.mode {
            ScaleMode::Fixed => self.replicas.unwrap_or(1),
            ScaleMode::Adaptive => self.min.unwrap_or(1),
        };
        u32::try_from(n).unwrap_or(0)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScaleTargets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeMode {
    #[default]
    Shared,
    Dedicated,
    Exclusive,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub prefer_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default = "default_start_grace")]
    pub start_grace: Duration,
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Extension (Docker's `start_interval`): the time between probes until
    /// the first one passes; defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: i64,
    pub check: HealthCheck,
}

fn default_start_grace() -> Duration {
    Duration::from_secs(0)
}
fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_retries() -> i64 {
    3
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckType {
    Http,
    Tcp,
    Command,
}

/// `{type: http, url, expect_status}`, `{type: tcp, port}` or `{type: command, command}`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    pub kind: CheckType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    /// The dependency's replicas have started.
    #[default]
    Started,
    /// The dependency's replicas pass their health check.
    Healthy,
    /// Every replica of the dependency is healthy (the service is fully ready).
    Ready,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    #[default]
    Fail,
    Warn,
    Continue,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Depends {
    pub service: String,
    #[serde(default)]
    pub condition: DependsCondition,
    #[serde(default = "default_depends_timeout")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

fn default_depends_timeout() -> Duration {
    Duration::from_secs(300)
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StorageType {
    Named,
    Bind,
    Tmpfs,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(rename = "type")]
    pub kind: StorageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    #[serde(default)]
    pub readonly: bool,
}

/// Extension: the stop sequence. The signal goes to the container's init; after
/// `grace` the whole container gets SIGKILL.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// Signal name such as SIGTERM or SIGINT; defaults to the image's StopSignal, else SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default = "default_grace")]
    pub grace: Duration,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: None,
            grace: default_grace(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}
