//! The agent: its parts (state store, images, GPUs, DNS, publishers, the
//! launcher) and the loop that runs a reconcile round every 250 ms, sooner
//! when the cluster's state changes or a replica waits for its first probe.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use zlayer_api::Event;
use zlayer_image::{ImageStore, RegistryOptions};
use zlayer_net::{DnsTable, Published, Transport};

use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::clock::now_ms;
use crate::launcher::{ContainerLauncher, Launcher};
use crate::replica::NodePaths;
use crate::state::{Health, Replica, Store};
use crate::template::Template;

pub struct AgentConfig {
    pub data_dir: PathBuf,
    pub exe: PathBuf,
    pub bridge: String,
    pub cidr: zlayer_net::Cidr,
    /// The cluster's container address space: traffic to it crosses the
    /// mesh with its source kept, never masqueraded.
    pub cluster_cidr: Option<zlayer_net::Cidr>,
    /// How to reach registries for `pull_policy` pulls.
    pub registries: RegistryOptions,
    /// Where the NVIDIA driver is found (`/` on a real host).
    pub gpu_root: PathBuf,
    /// What the cluster wants of this node.
    pub cluster: Arc<dyn crate::desired::Cluster>,
    /// The node's name in the cluster.
    pub node_name: String,
    /// Host path prefixes specs may bind-mount (`--allow-host-path`).
    pub allow_host_paths: Vec<PathBuf>,
    /// How much of each replica's output is kept (`--log-max-size`, `--log-max-files`).
    pub log_limit: zlayer_runtime::LogLimit,
    /// Connections each published port forwards at once (`--port-max-connections`).
    pub port_max_connections: usize,
    /// The node's ingress, when it runs one: the agent keeps its routes and
    /// certificates current and drains a replica there before it stops.
    pub ingress: Option<Arc<zlayer_proxy::Proxy>>,
}

pub struct Agent {
    pub(crate) paths: NodePaths,
    pub(crate) store: Store,
    pub(crate) images: ImageStore,
    /// This node's GPUs, found once at start.
    pub(crate) gpus: zlayer_runtime::GpuInventory,
    pub(crate) launcher: Arc<dyn Launcher>,
    pub(crate) registries: RegistryOptions,
    pub(crate) dns: DnsTable,
    pub(crate) events: Mutex<VecDeque<Event>>,
    pub(crate) publishers: tokio::sync::Mutex<HashMap<(Transport, u16), Published>>,
    pub(crate) port_max_connections: usize,
    pub(crate) ingress: Option<Arc<zlayer_proxy::Proxy>>,
    pub(crate) certs: tokio::sync::Mutex<crate::ingress::CertState>,
    /// Replicas being stopped, by key: reported as draining so that every
    /// node's ingress and ports stop sending them requests first.
    pub(crate) draining: Mutex<HashSet<String>>,
    pub(crate) depends_since: Mutex<HashMap<String, u64>>,
    /// Ports whose bind failure was already logged (the loop retries every tick).
    pub(crate) publish_errors: Mutex<HashSet<(Transport, u16)>>,
    /// The network policy rules last applied; `None` until they are.
    pub(crate) applied_policy: Mutex<Option<Vec<zlayer_net::IngressRule>>>,
    /// When each replica was last probed, by replica key.
    pub(crate) last_probe: Mutex<HashMap<String, u64>>,
    /// Templates by `deployment/service/revision`, as stored.
    pub(crate) templates: Mutex<HashMap<String, Arc<Template>>>,
    /// Committed revisions this node's parser refused, by deployment.
    pub(crate) spec_errors: Mutex<HashMap<String, SpecError>>,
    /// Writes to the node's state store that failed (see `persist`).
    pub(crate) store_errors: AtomicU64,
    /// Counts reconcile rounds, so clients can wait for the next one.
    pub(crate) generation: tokio::sync::watch::Sender<u64>,
    pub(crate) wake: Notify,
    pub(crate) quit: Notify,
    pub(crate) node_name: String,
    pub(crate) cluster: Arc<dyn crate::desired::Cluster>,
    pub(crate) volumes: zlayer_runtime::volume::Volumes,
    pub(crate) volumes_tended_ms: AtomicU64,
    /// Whether the last round ran fenced.
    pub(crate) fenced: std::sync::atomic::AtomicBool,
}

/// A committed revision this node cannot run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub deployment: String,
    pub revision: u64,
    pub message: String,
}

impl Agent {
    /// Opens the node's state and image stores; containers start through
    /// the real [`ContainerLauncher`].
    pub fn open(cfg: &AgentConfig) -> Result<Arc<Agent>, String> {
        let images = open_images(cfg)?;
        let launcher = Arc::new(ContainerLauncher {
            paths: paths(cfg),
            images: images.clone(),
            gpus: zlayer_runtime::GpuInventory::discover(&cfg.gpu_root),
        });
        Agent::with_launcher(cfg, launcher)
    }

    /// Opens the agent with `launcher` in front of every container.
    pub fn with_launcher(
        cfg: &AgentConfig,
        launcher: Arc<dyn Launcher>,
    ) -> Result<Arc<Agent>, String> {
        let store = Store::open(&cfg.data_dir.join("state")).map_err(|e| e.to_string())?;
        Ok(Arc::new(Agent {
            paths: paths(cfg),
            gpus: zlayer_runtime::GpuInventory::discover(&cfg.gpu_root),
            store,
            images: open_images(cfg)?,
            launcher,
            registries: cfg.registries.clone(),
            dns: DnsTable::default(),
            events: Mutex::new(VecDeque::new()),
            publishers: tokio::sync::Mutex::new(HashMap::new()),
            port_max_connections: cfg.port_max_connections,
            ingress: cfg.ingress.clone(),
            certs: Default::default(),
            draining: Mutex::new(HashSet::new()),
            depends_since: Mutex::new(HashMap::new()),
            publish_errors: Mutex::new(HashSet::new()),
            applied_policy: Mutex::new(None),
            last_probe: Mutex::new(HashMap::new()),
            templates: Mutex::new(HashMap::new()),
            spec_errors: Mutex::new(HashMap::new()),
            store_errors: AtomicU64::new(0),
            generation: tokio::sync::watch::Sender::new(0),
            wake: Notify::new(),
            quit: Notify::new(),
            node_name: cfg.node_name.clone(),
            cluster: cfg.cluster.clone(),
            volumes: zlayer_runtime::volume::Volumes::new(&cfg.data_dir),
            volumes_tended_ms: AtomicU64::new(0),
            fenced: Default::default(),
        }))
    }

    /// Brings up the node bridge, masquerading and DNS, then reconciles
    /// until [`Agent::shutdown`]. Containers keep running afterwards.
    pub async fn run(self: Arc<Self>) -> Result<(), String> {
        let p = &self.paths;
        zlayer_net::ensure_bridge(&zlayer_net::BridgeConfig {
            name: p.bridge.clone(),
            cidr: p.cidr,
        })
        .await
        .map_err(|e| e.to_string())?;
        zlayer_net::ensure_masquerade(
            &format!("zlayer_{}", p.bridge),
            &p.bridge,
            &p.cidr,
            p.cluster_cidr.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        let _dns =
            zlayer_net::DnsServer::bind(SocketAddr::from((p.cidr.gateway(), 53)), self.dns.clone())
                .await
                .map_err(|e| e.to_string())?;
        tracing::info!(data_dir = %p.data_dir.display(), "agent started");
        let mut changes = self.cluster.changes();
        loop {
            self.round().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = changes.changed() => {}
                _ = tokio::time::sleep(self.next_tick()) => {}
                _ = self.quit.notified() => break,
            }
        }
        Ok(())
    }

    /// One reconcile round, then the node's report for the other members.
    pub async fn round(self: &Arc<Self>) {
        self.reconcile().await;
        self.cluster
            .report(self.local_reports(), self.local_rollout_reports());
        self.generation.send_modify(|g| *g += 1);
    }

    /// Ends [`Agent::run`] after its current round.
    pub fn shutdown(&self) {
        self.quit.notify_one();
    }

    /// Runs a round soon instead of at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Logs and counts a failed write to the node's state store, and tells
    /// the replica's events: its record on disk is older than what runs.
    pub(crate) fn persist(&self, written: Result<(), crate::state::StoreError>, r: &Replica) {
        if let Err(e) = written {
            self.store_failed(&format!("replica {}", r.key()), &e);
            self.event(
                r,
                "store-error",
                format!("could not record this replica's state on disk: {e}"),
            );
        }
    }

    /// Logs and counts a failed write of `what` to the node's state store;
    /// `zlayer_node_state_write_errors_total` shows the count.
    pub(crate) fn store_failed(&self, what: &str, e: &crate::state::StoreError) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!("state store: writing {what} failed: {e}");
    }

    pub(crate) fn event(&self, r: &Replica, kind: &str, message: String) {
        self.event_for(&r.deployment, &r.service, r.index, kind, message);
    }

    pub(crate) fn event_for(
        &self,
        deployment: &str,
        service: &str,
        replica: u32,
        kind: &str,
        message: String,
    ) {
        tracing::info!(deployment, service, replica, kind, "{message}");
        if let Ok(mut ev) = self.events.lock() {
            if ev.len() >= 1000 {
                ev.pop_front();
            }
            ev.push_back(Event {
                time_ms: now_ms(),
                node: self.node_name.clone(),
                deployment: deployment.into(),
                service: service.into(),
                replica,
                kind: kind.into(),
                message,
            });
        }
    }

    /// How long the loop may sleep: 250 ms, or less while a replica waits for
    /// its first passing probe, so short health intervals are honoured.
    fn next_tick(&self) -> Duration {
        let idle = Duration::from_millis(250);
        self.store
            .replicas()
            .into_iter()
            .filter(|r| r.health == Health::Starting)
            .filter_map(|r| {
                let t = self.template_of(&r)?;
                let h = t.service.readiness_probe()?;
                Some(h.start_interval.unwrap_or(h.interval).0)
            })
            .min()
            .map_or(idle, |i| i.clamp(Duration::from_millis(5), idle))
    }

    /// The round count once it passes `after`; at most 2 s later, whatever it is.
    pub async fn watch(&self, after: u64) -> u64 {
        let mut rx = self.generation.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|g| *g > after)).await;
        let now = *rx.borrow();
        now
    }
}

fn paths(cfg: &AgentConfig) -> NodePaths {
    NodePaths {
        data_dir: cfg.data_dir.clone(),
        exe: cfg.exe.clone(),
        bridge: cfg.bridge.clone(),
        cidr: cfg.cidr,
        cluster_cidr: cfg.cluster_cidr,
        host_paths: crate::host_paths::HostPaths::new(&cfg.allow_host_paths, &cfg.data_dir),
        log_limit: cfg.log_limit,
        secrets_root: PathBuf::from(zlayer_runtime::secrets::DEFAULT_SECRETS_ROOT),
    }
}

fn open_images(cfg: &AgentConfig) -> Result<ImageStore, String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    ImageStore::open(cfg.data_dir.join("images")).map_err(|e| e.to_string())
}
