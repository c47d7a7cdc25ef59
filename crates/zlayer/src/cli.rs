//! Command-line grammar.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "zlayer",
    version,
    about = "A daemonless, single-binary container orchestrator"
)]
pub struct Cli {
    /// Node data directory (state, images, containers, socket).
    #[arg(
        long,
        global = true,
        env = "ZLAYER_DATA_DIR",
        default_value = "/var/lib/zlayer"
    )]
    pub data_dir: PathBuf,
    /// Registries (HOST:PORT) that may be reached over plain HTTP. Loopback
    /// registries always may; every other one needs HTTPS unless named here.
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "ZLAYER_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Where the NVIDIA driver's device nodes (`dev/nvidia*`), libraries and
    /// tools are found. `/` on a real host; tests point it at a fake driver tree.
    #[arg(long, global = true, env = "ZLAYER_GPU_ROOT", default_value = "/")]
    pub gpu_root: PathBuf,
    /// Talk to a node over HTTPS with this API token (`zlayer token create
    /// --api` on a member) instead of the local unix socket.
    #[arg(long, global = true, env = "ZLAYER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// With --api-token: the node to reach, IP or IP:PORT [default: the
    /// first member the token names].
    #[arg(long, global = true, env = "ZLAYER_REMOTE", requires = "api_token")]
    pub remote: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check a spec file offline.
    Validate { file: PathBuf },
    /// Spec tooling.
    Spec {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Apply a spec and run it (foreground until Ctrl-C, or -d to detach).
    Up {
        file: PathBuf,
        /// Return once every replica is healthy and leave the node running.
        #[arg(short, long)]
        detach: bool,
        /// With -d: give up waiting after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop and remove a deployment.
    Down { deployment: String },
    /// List replicas.
    Ps {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show replica logs: SERVICE or SERVICE/N.
    Logs(LogsArgs),
    /// Run a command in a replica: SERVICE/N -- CMD...
    Exec {
        #[arg(required_unless_present = "id")]
        target: Option<String>,
        /// Internal: address the container by id (used by command health checks).
        #[arg(long, hide = true)]
        id: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a one-off container and propagate its exit status.
    Run(RunArgs),
    /// Set a service's replica count (SERVICE or DEPLOYMENT/SERVICE). It
    /// holds, through later `up`s of the spec, until the spec changes that
    /// service's own count.
    Scale { service: String, replicas: u32 },
    /// Roll a service's replicas out again (SERVICE or DEPLOYMENT/SERVICE),
    /// one at a time as an update does: each new one healthy before an old
    /// one stops.
    Restart { service: String },
    /// Configs: files a spec mounts read-only (`files: [{ target, config }]`).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Jobs (`rtype: job`): `ls` their tasks, `logs`, and `run` one
    /// service of a spec file as a job now.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Named volumes: `ls`, `inspect` and `rm` (see docs/volumes.md).
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Secrets: `create`, `ls`, `rm` and `rotate-key` (see docs/secrets.md).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// A deployment's revisions: `history`, and `undo` to an earlier one.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Each service's rollout: its current revision and whether it is rolling, done or failed.
    Rollouts {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Recent events (starts, exits, OOM kills, health changes).
    Events {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
        /// Keep printing new events as they happen (JSON: one per line).
        #[arg(short, long)]
        follow: bool,
    },
    /// Build an image from a Dockerfile (see docs/build.md for the subset).
    Build(BuildArgs),
    /// Pull an image from a registry (same as `zlayer image pull`).
    Pull(PullArgs),
    /// Push a local image to a registry (same as `zlayer image push`).
    Push(PushArgs),
    /// Store credentials for a registry (checked against it first).
    Login {
        registry: String,
        #[arg(short, long)]
        username: String,
        /// Read the password from stdin (else prompt on a TTY, or -p).
        #[arg(long)]
        password_stdin: bool,
        /// The password on the command line (visible in `ps`; prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
    },
    /// Forget the credentials stored for a registry.
    Logout { registry: String },
    /// Local images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Join tokens for new nodes.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The cluster's ingress CA, which issues dev certificates for https routes.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The WireGuard mesh between nodes.
    Overlay {
        #[command(subcommand)]
        command: OverlayCommand,
    },
    /// Join a cluster: ADDR is a member (IP or IP:PORT), the token comes
    /// from `zlayer token create` there. Then runs this node in the background.
    Join {
        addr: String,
        #[arg(long)]
        token: String,
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        member: MemberArgs,
    },
    /// The node process, and the cluster's nodes.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Internal: the per-container shim.
    #[command(hide = true)]
    Shim {
        dir: PathBuf,
        /// Second stage: wait for this init pid.
        #[arg(long)]
        wait: Option<i32>,
        /// Second stage: the read end of the container's output pipe.
        #[arg(long)]
        log_fd: Option<i32>,
    },
}

#[derive(Subcommand)]
pub enum SpecCommand {
    /// Print the JSON Schema of the spec format.
    Schema,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image-layout or `docker save` tarball.
    Import {
        file: PathBuf,
    },
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    Rm {
        name: String,
    },
    /// An image's manifest digest, layers and config, as JSON (or -o yaml).
    Inspect {
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Pull from a registry: REF is [REGISTRY/]REPO[:TAG|@sha256:DIGEST].
    Pull(PullArgs),
    /// Push a local image: IMAGE to DEST (default: IMAGE's own name).
    Push(PushArgs),
    /// Write images into one OCI archive that `zlayer image import` reads.
    Save {
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Remove unreferenced blobs and layers; with --all also every image no
    /// container uses.
    Prune {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The build context: the directory COPY and ADD read from.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Name the image NAME[:TAG]; may be repeated.
    #[arg(short, long = "tag")]
    pub tags: Vec<String>,
    /// NAME=VALUE for an ARG; NAME alone takes the value from the environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Run every step; do not reuse cached layers.
    #[arg(long)]
    pub no_cache: bool,
    /// Network for RUN: none (default: a private namespace with loopback
    /// only) or the host's, which the build's steps then share.
    #[arg(long, value_enum, default_value_t)]
    pub network: BuildNetwork,
    /// Print only the image digest; RUN output is shown only if it fails.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Default, clap::ValueEnum)]
pub enum BuildNetwork {
    Host,
    #[default]
    None,
}

#[derive(clap::Args)]
pub struct PullArgs {
    pub reference: String,
    /// No progress; print only the result.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(clap::Args)]
pub struct PushArgs {
    pub image: String,
    pub destination: Option<String>,
    #[arg(short, long)]
    pub quiet: bool,
}

// Parsed once per process; boxing the flags would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Run the node in the foreground. The first start founds a one-node
    /// cluster; later starts resume it.
    Start {
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        member: MemberArgs,
    },
    /// Stop the node (containers keep running).
    Stop,
    /// List the cluster's nodes: role, state, free/total CPU, memory, GPUs, labels.
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Move a node's replicas elsewhere and place nothing new on it.
    Drain { name: String },
    /// Let a drained node take replicas again.
    Uncordon { name: String },
    /// Remove a node from the cluster (run it on another member).
    Rm { name: String },
}

/// How this node runs containers.
#[derive(clap::Args, Clone)]
pub struct AgentArgs {
    /// Address for /metrics over TCP.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Container network (this node's pool).
    #[arg(long, default_value = "10.231.0.0/24")]
    pub cidr: String,
    /// Bridge interface name.
    #[arg(long, default_value = "zlayer0")]
    pub bridge: String,
    /// A host path prefix specs may bind-mount (repeatable; none by default).
    /// `/`, `/proc`, `/sys`, `/dev` and the data dir are refused even so.
    #[arg(long = "allow-host-path")]
    pub allow_host_paths: Vec<std::path::PathBuf>,
    /// The most one file of a replica's log holds before it rotates
    /// (`LOG` becomes `LOG.1`); 0 never rotates.
    #[arg(long, default_value = "10Mi", value_parser = parse_size)]
    pub log_max_size: u64,
    /// Log files kept per replica, the current one included.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub log_max_files: u32,
    /// Connections each published port forwards at once; a new one over the
    /// cap closes the connection that has been idle the longest.
    #[arg(long, default_value_t = zlayer_net::DEFAULT_MAX_CONNECTIONS, value_parser = parse_connections)]
    pub port_max_connections: usize,
    #[command(flatten)]
    pub ingress: IngressArgs,
}

/// The node's ingress: HTTP and HTTPS listeners for routed endpoints.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct IngressArgs {
    /// Port of the ingress's HTTP listener; 0 turns it off.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Port of the ingress's HTTPS listener; 0 turns it off.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Address the ingress listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub ingress_addr: std::net::IpAddr,
    /// Log one line per ingress request (target `zlayer::access`).
    #[arg(long)]
    pub access_log: bool,
    /// The largest request body the ingress forwards (413 above it).
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    pub ingress_max_body: u64,
    /// The most bytes of request line and headers (431 above it; at least 8Ki).
    #[arg(long, default_value = "64Ki", value_parser = parse_size)]
    pub ingress_max_header_size: u64,
    /// The most header fields in one request (431 above it).
    #[arg(long, default_value_t = 100)]
    pub ingress_max_headers: usize,
    /// How long a client may take to send a request's headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ingress_header_timeout: std::time::Duration,
    /// How long a replica may take to start answering (504 after).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ingress_upstream_timeout: std::time::Duration,
    /// Connections the ingress holds at once; one more closes the idlest.
    #[arg(long, default_value_t = 16_384, value_parser = parse_connections)]
    pub ingress_max_connections: usize,
    /// Threads that serve the ingress's connections, each from accept to
    /// close (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub ingress_threads: usize,
    /// ACME directory for `tls: { acme: true }` endpoints (the leader orders
    /// and renews their certificates there), e.g.
    /// https://acme-v02.api.letsencrypt.org/directory.
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Contact address for the ACME account.
    #[arg(long, value_name = "EMAIL", requires = "acme_directory")]
    pub acme_email: Option<String>,
    /// A PEM root to trust for the ACME directory's HTTPS (a private CA).
    #[arg(long, value_name = "FILE", requires = "acme_directory")]
    pub acme_ca_cert: Option<std::path::PathBuf>,
    /// How the CA checks control of a host: http-01 (port 80) or tls-alpn-01 (port 443).
    #[arg(long, default_value = "http-01", value_parser = parse_challenge)]
    pub acme_challenge: zlayer_acme::Challenge,
}

fn parse_challenge(s: &str) -> Result<zlayer_acme::Challenge, String> {
    s.parse()
}

impl IngressArgs {
    /// These settings as `node start` flags, for the node `join` starts.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            format!("--http-port={}", self.http_port),
            format!("--https-port={}", self.https_port),
            format!("--ingress-addr={}", self.ingress_addr),
            format!("--ingress-max-body={}", self.ingress_max_body),
            format!("--ingress-max-header-size={}", self.ingress_max_header_size),
            format!("--ingress-max-headers={}", self.ingress_max_headers),
            format!(
                "--ingress-header-timeout={}",
                humantime::format_duration(self.ingress_header_timeout)
            ),
            format!(
                "--ingress-upstream-timeout={}",
                humantime::format_duration(self.ingress_upstream_timeout)
            ),
            format!("--ingress-max-connections={}", self.ingress_max_connections),
            format!("--ingress-threads={}", self.ingress_threads),
            format!("--acme-challenge={}", self.acme_challenge),
        ];
        if self.access_log {
            a.push("--access-log".into());
        }
        if let Some(d) = &self.acme_directory {
            a.push(format!("--acme-directory={d}"));
        }
        if let Some(e) = &self.acme_email {
            a.push(format!("--acme-email={e}"));
        }
        if let Some(c) = &self.acme_ca_cert {
            a.push(format!("--acme-ca-cert={}", c.display()));
        }
        a
    }

    /// The ACME settings, when a directory is named.
    pub fn acme(&self) -> Option<zlayer_acme::AcmeConfig> {
        Some(zlayer_acme::AcmeConfig {
            directory: self.acme_directory.clone()?,
            contact: self.acme_email.as_ref().map(|e| {
                if e.starts_with("mailto:") {
                    e.clone()
                } else {
                    format!("mailto:{e}")
                }
            }),
            ca_cert: self.acme_ca_cert.clone(),
            challenge: self.acme_challenge,
        })
    }

    /// The proxy's settings; `None` when both listeners are off.
    pub fn config(&self) -> Option<zlayer_proxy::ProxyConfig> {
        let at =
            |port: u16| (port != 0).then(|| std::net::SocketAddr::new(self.ingress_addr, port));
        let (http, https) = (at(self.http_port), at(self.https_port));
        if http.is_none() && https.is_none() {
            return None;
        }
        Some(zlayer_proxy::ProxyConfig {
            http,
            https,
            access_log: self.access_log,
            threads: self.ingress_threads,
            limits: zlayer_proxy::Limits {
                max_body_bytes: self.ingress_max_body,
                max_header_bytes: usize::try_from(self.ingress_max_header_size)
                    .unwrap_or(usize::MAX)
                    .max(8192),
                max_headers: self.ingress_max_headers.max(1),
                header_timeout: self.ingress_header_timeout,
                upstream_timeout: self.ingress_upstream_timeout,
                max_connections: self.ingress_max_connections,
                ..Default::default()
            },
        })
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 10s or 1m: {e}"))
}

impl AgentArgs {
    pub fn log_limit(&self) -> zlayer_runtime::LogLimit {
        zlayer_runtime::LogLimit {
            max_bytes: self.log_max_size,
            max_files: self.log_max_files,
        }
    }
}

fn parse_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a connection count from 1 to 1000000")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    zlayer_spec::Size::parse(s).map(|s| s.0)
}

/// How this node takes part in the cluster.
#[derive(clap::Args, Clone)]
pub struct MemberArgs {
    /// The address other nodes reach this one at; its mTLS endpoint listens
    /// there. The default, loopback, keeps a single node to itself.
    #[arg(long, default_value = "127.0.0.1")]
    pub advertise: std::net::IpAddr,
    /// Port of the node's mTLS endpoint.
    #[arg(long, default_value_t = zlayer_control::DEFAULT_PORT)]
    pub port: u16,
    /// The node's name in the cluster [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// A label the scheduler can select on, KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// How long a node may be silent before it counts as down and its
    /// replicas move (it stops them itself after as long without a quorum).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub down_after: std::time::Duration,
    /// How the leader places replicas.
    #[arg(long, value_enum, default_value_t)]
    pub placement: Placement,
    /// Raft log entries between snapshots; half as many stay in the log
    /// after one, the rest is purged, so the store stays bounded.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub raft_snapshot_every: u64,
    /// Renew this node's certificate (365 days) over mTLS once it has less
    /// than this left. Longer than its life renews at every hourly check.
    #[arg(long, default_value = "120days", value_parser = humantime::parse_duration)]
    pub cert_renew_before: std::time::Duration,
    /// The container address space of a cluster founded here: each node
    /// gets a /24 of it, picked by the cluster. Ignored when joining.
    #[arg(long, default_value = "10.240.0.0/16", value_parser = parse_cluster_cidr)]
    pub cluster_cidr: zlayer_model::ClusterNetwork,
    /// UDP port of the node's WireGuard device (the mesh between nodes).
    #[arg(long, default_value_t = zlayer_overlay::DEFAULT_PORT)]
    pub wg_port: u16,
    /// Which WireGuard device runs the mesh.
    #[arg(long, value_enum, default_value_t)]
    pub wg_device: WgDevice,
    /// How often the node probes one other node's link (round trip, and
    /// bandwidth with a 1 MiB call), in turn: the health score's bandwidth.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub link_probe_every: std::time::Duration,
    /// Threads of the userspace (boringtun) WireGuard device. One is the
    /// fastest measured here (docs/benchmarks.md): more contend for the
    /// device's lock. Try more on a host with many idle cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub wg_threads: u16,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum WgDevice {
    /// The kernel's where `ip link add type wireguard` works, else userspace.
    #[default]
    Auto,
    Kernel,
    /// boringtun, in this process.
    Userspace,
}

impl WgDevice {
    pub fn only(self) -> Option<zlayer_overlay::DeviceKind> {
        match self {
            WgDevice::Auto => None,
            WgDevice::Kernel => Some(zlayer_overlay::DeviceKind::Kernel),
            WgDevice::Userspace => Some(zlayer_overlay::DeviceKind::Userspace),
        }
    }
}

fn parse_cluster_cidr(s: &str) -> Result<zlayer_model::ClusterNetwork, String> {
    let net = zlayer_model::ClusterNetwork {
        cidr: s.to_string(),
        node_prefix: 24,
    };
    zlayer_state::subnets::check_network(&net).map(|()| net)
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Placement {
    /// Fewest replicas per node first.
    #[default]
    Spread,
    /// Fill the fullest node that fits first.
    BinPack,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}`: write a label as KEY=VALUE, for example zone=b"
        )),
    }
}

#[derive(Subcommand)]
pub enum OverlayCommand {
    /// This node's WireGuard device and its peers: endpoint, last
    /// handshake, bytes and path, like `wg show`.
    Status {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// WireGuard peers outside the cluster (a laptop, a stock wireguard-go).
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
}

#[derive(Subcommand)]
pub enum PeerCommand {
    /// Record a peer and print its `wg-quick` config: an address in the
    /// cluster CIDR and every node as a `[Peer]`. Without --public-key a
    /// key pair is made here and the private key appears only in the output.
    Add {
        name: String,
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Forget a peer: every node drops it.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// The revisions the cluster keeps of DEPLOYMENT, oldest first.
    History {
        deployment: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Apply an earlier revision again, as a new revision rolled out like
    /// any change: the one before the current one, or --to REVISION.
    Undo {
        deployment: String,
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Give NAME the content of FILE: its first, or a new version (services
    /// that mount it roll out with it).
    Create {
        name: String,
        #[arg(long, value_name = "FILE")]
        from_file: PathBuf,
    },
    /// Names, versions, sizes and the services that mount each.
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Remove a config no spec mounts.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Every job across the cluster: its tasks done, failed, running and waiting.
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// A job's output, from whichever nodes ran its tasks: SERVICE or SERVICE/N.
    Logs(LogsArgs),
    /// Run SERVICE of FILE (a job, a cron or a plain service) once, now, as
    /// a job of its own deployment (`DEPLOYMENT-SERVICE-ID`), and wait for
    /// its tasks: exit 0 when every one succeeded.
    Run {
        file: PathBuf,
        service: String,
        /// Stop waiting after this many seconds (the job goes on).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Every named volume: its node, size, use and users.
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// One volume (DEPLOYMENT/NAME), as JSON: node, size limit, bytes used, users.
    Inspect { volume: String },
    /// Remove a volume no replica uses; its node deletes the data.
    Rm { volume: String },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Give NAME a value: its first, or a new version (services that use
    /// it roll out with it). Exactly one of --from-file, --from-literal or
    /// `-` (read stdin).
    Create {
        name: String,
        #[arg(long, value_name = "FILE", conflicts_with_all = ["from_literal", "stdin"])]
        from_file: Option<PathBuf>,
        /// Visible in `ps` and shell history while it runs; prefer a file or stdin.
        #[arg(long, value_name = "VALUE", conflicts_with = "stdin")]
        from_literal: Option<String>,
        /// `-`: read the value from stdin.
        #[arg(value_name = "-", value_parser = clap::builder::PossibleValuesParser::new(["-"]))]
        stdin: Option<String>,
    },
    /// Names, versions, sizes and consumers; never values.
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Remove a secret no spec uses.
    Rm { name: String },
    /// Seal every secret under a new key (the values stay as they are).
    RotateKey,
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Print the ingress CA certificate (PEM), for `curl --cacert` or a trust store.
    Export,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a join token; prints it.
    Create {
        /// How long it is valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How many nodes may join with it (0: any number until it expires).
        #[arg(long, conflicts_with = "api", default_value_t = 1)]
        uses: u32,
        /// What a node joining with it may do: a worker runs work; a
        /// manager can also become a voter and change the cluster.
        #[arg(long, value_enum, default_value_t, conflicts_with = "api")]
        role: RoleArg,
        /// Make an API token for a remote CLI (`--api-token`) instead.
        #[arg(long)]
        api: bool,
    },
    /// List join tokens (never their secrets).
    Ls {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Revoke a join token by id.
    Revoke { id: String },
}

#[derive(Clone, Copy, Default, clap::ValueEnum)]
pub enum RoleArg {
    Manager,
    #[default]
    Worker,
}

/// Which replica's (or task's) output, and how much of it.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// SERVICE or SERVICE/N.
    pub target: String,
    #[arg(short, long)]
    pub follow: bool,
    #[arg(long)]
    pub tail: Option<usize>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    pub image: String,
    /// Remove the container afterwards (the default; kept for Docker habits).
    #[arg(long)]
    pub rm: bool,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Memory limit, e.g. 256Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 0.5.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes the container may have.
    #[arg(long)]
    pub pids: Option<i64>,
    /// Hand the container this many of the node's NVIDIA GPUs (the first ones).
    #[arg(long)]
    pub gpus: Option<u32>,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress_of_start(flags: &[&str]) -> IngressArgs {
        let argv = ["zlayer", "node", "start"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Node {
                command: NodeCommand::Start { agent, .. },
            } => agent.ingress,
            _ => panic!("not node start"),
        }
    }

    /// `join` starts its node with these flags; one it dropped would leave
    /// a joined node with the default ingress (and no ACME).
    #[test]
    fn ingress_flags_survive_the_round_trip_join_makes() {
        let given = ingress_of_start(&[
            "--http-port=8081",
            "--https-port=0",
            "--ingress-addr=10.0.0.7",
            "--access-log",
            "--ingress-max-body=1Ki",
            "--ingress-max-header-size=9000",
            "--ingress-max-headers=7",
            "--ingress-header-timeout=3s",
            "--ingress-upstream-timeout=1m 5s",
            "--ingress-max-connections=99",
            "--acme-directory=https://ca.test/dir",
            "--acme-email=ops@ca.test",
            "--acme-ca-cert=/etc/ca.pem",
            "--acme-challenge=tls-alpn-01",
        ]);
        for args in [given, ingress_of_start(&[])] {
            let flags = args.to_args();
            let again = ingress_of_start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(args, again);
        }
    }
}
