//! The node: API, state, and the reconcile loop that sorts replicas into
//! keep / start / restart / stop and acts, once every 250 ms or on demand.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use zlayer_api::{ApplyRequest, ApplyResponse, Event, ReplicaLocation, ReplicaView, RolloutView};
use zlayer_image::{ImageStore, RegistryOptions};
use zlayer_net::{DnsTable, PortPublisher};
use zlayer_runtime::{ContainerDir, Status};
use zlayer_spec::{OnTimeout, ResourceType, Service, Spec};

use crate::replica::{self, NodePaths};
use crate::state::{Deployment, Health, Replica, ReplicaState, RolloutState, Store};
use crate::template::Template;

pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub exe: PathBuf,
    pub bridge: String,
    pub cidr: zlayer_net::Cidr,
    pub metrics_addr: Option<SocketAddr>,
    /// How to reach registries for `pull_policy` pulls.
    pub registries: RegistryOptions,
    /// Where the NVIDIA driver is found (`/` on a real host).
    pub gpu_root: PathBuf,
    /// What the cluster wants of this node.
    pub cluster: Arc<dyn crate::desired::Cluster>,
    /// The node's name in the cluster.
    pub node_name: String,
}

pub struct Node {
    pub(crate) paths: NodePaths,
    pub(crate) store: Store,
    pub(crate) images: ImageStore,
    /// This node's GPUs, found once at start.
    pub(crate) gpus: zlayer_runtime::GpuInventory,
    registries: RegistryOptions,
    pub(crate) dns: DnsTable,
    events: Mutex<VecDeque<Event>>,
    pub(crate) publishers: tokio::sync::Mutex<HashMap<u16, PortPublisher>>,
    depends_since: Mutex<HashMap<String, u64>>,
    /// Ports whose bind failure was already logged (the loop retries every tick).
    pub(crate) publish_errors: Mutex<HashSet<u16>>,
    /// When each replica was last probed, by replica key.
    pub(crate) last_probe: Mutex<HashMap<String, u64>>,
    /// Templates by `deployment/service/revision`, as stored.
    templates: Mutex<HashMap<String, Arc<Template>>>,
    /// Counts reconcile rounds, so clients can wait for the next one.
    generation: tokio::sync::watch::Sender<u64>,
    pub(crate) wake: Notify,
    pub(crate) quit: Notify,
    pub(crate) node_name: String,
    pub(crate) cluster: Arc<dyn crate::desired::Cluster>,
    /// Whether the last round ran fenced.
    fenced: std::sync::atomic::AtomicBool,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn backoff_ms(restarts: u32) -> u64 {
    (250u64 << restarts.min(7)).min(30_000)
}

impl Node {
    pub fn open(cfg: &NodeConfig) -> Result<Arc<Node>, String> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
        let store = Store::open(&cfg.data_dir.join("state")).map_err(|e| e.to_string())?;
        let images = ImageStore::open(cfg.data_dir.join("images")).map_err(|e| e.to_string())?;
        let node_name = cfg.node_name.clone();
        Ok(Arc::new(Node {
            paths: NodePaths {
                data_dir: cfg.data_dir.clone(),
                exe: cfg.exe.clone(),
                bridge: cfg.bridge.clone(),
                cidr: cfg.cidr,
            },
            gpus: zlayer_runtime::GpuInventory::discover(&cfg.gpu_root),
            store,
            images,
            registries: cfg.registries.clone(),
            dns: DnsTable::default(),
            events: Mutex::new(VecDeque::new()),
            publishers: tokio::sync::Mutex::new(HashMap::new()),
            depends_since: Mutex::new(HashMap::new()),
            publish_errors: Mutex::new(HashSet::new()),
            last_probe: Mutex::new(HashMap::new()),
            templates: Mutex::new(HashMap::new()),
            generation: tokio::sync::watch::Sender::new(0),
            wake: Notify::new(),
            quit: Notify::new(),
            node_name,
            cluster: cfg.cluster.clone(),
            fenced: Default::default(),
        }))
    }

    /// Runs until shutdown is requested. Containers keep running afterwards.
    pub async fn run(self: Arc<Self>, metrics_addr: Option<SocketAddr>) -> Result<(), String> {
        let p = &self.paths;
        zlayer_net::ensure_bridge(&zlayer_net::BridgeConfig {
            name: p.bridge.clone(),
            cidr: p.cidr,
        })
        .await
        .map_err(|e| e.to_string())?;
        zlayer_net::ensure_masquerade(&format!("zlayer_{}", p.bridge), &p.bridge, &p.cidr)
            .map_err(|e| e.to_string())?;
        let _dns =
            zlayer_net::DnsServer::bind(SocketAddr::from((p.cidr.gateway(), 53)), self.dns.clone())
                .await
                .map_err(|e| e.to_string())?;
        let sock = p.data_dir.join("zlayer.sock");
        let (api_sock, me) = (sock.clone(), self.clone());
        let api = tokio::spawn(async move {
            if let Err(e) = zlayer_api::serve(api_sock.clone(), me).await {
                tracing::error!("api on {}: {e}", api_sock.display());
            }
        });
        if let Some(addr) = metrics_addr {
            // Metrics stay available on the unix socket when the TCP port is taken
            // (for example by a second node on the same host).
            if let Err(e) = crate::metrics::serve_tcp(self.clone(), addr).await {
                tracing::warn!("{e}; /metrics is still served on {}", sock.display());
            }
        }
        tracing::info!(data_dir = %p.data_dir.display(), "node started");
        let mut changes = self.cluster.changes();
        loop {
            self.reconcile().await;
            self.cluster
                .report(&self.local_views(), &self.local_rollout_views());
            self.generation.send_modify(|g| *g += 1);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = changes.changed() => {}
                _ = tokio::time::sleep(self.next_tick()) => {}
                _ = self.quit.notified() => break,
            }
        }
        api.abort();
        let _ = std::fs::remove_file(&sock);
        Ok(())
    }

    pub(crate) fn event(&self, r: &Replica, kind: &str, message: String) {
        tracing::info!(deployment = %r.deployment, service = %r.service, replica = r.index, kind, "{message}");
        if let Ok(mut ev) = self.events.lock() {
            if ev.len() >= 1000 {
                ev.pop_front();
            }
            ev.push_back(Event {
                time_ms: now_ms(),
                deployment: r.deployment.clone(),
                service: r.service.clone(),
                replica: r.index,
                kind: kind.into(),
                message,
            });
        }
    }

    fn specs(&self) -> Vec<(Deployment, Spec)> {
        self.cluster
            .deployments()
            .into_iter()
            .filter_map(|d| zlayer_spec::parse(&d.file, &d.text).ok().map(|s| (d, s)))
            .collect()
    }

    async fn reconcile(self: &Arc<Self>) {
        let specs = self.specs();
        let mut replicas: BTreeMap<String, Replica> = self
            .store
            .replicas()
            .into_iter()
            .map(|r| (r.key(), r))
            .collect();
        self.observe_exits(&mut replicas).await;
        let fenced = self.cluster.fenced();
        let was = self
            .fenced
            .swap(fenced, std::sync::atomic::Ordering::Relaxed);
        if fenced && !was {
            self.note_fenced(&replicas);
        }
        let assigned = if fenced {
            Default::default()
        } else {
            self.cluster.assigned()
        };
        // Desired against actual, service by service in dependency order.
        let mut wanted = HashSet::new();
        let mut current = HashSet::new();
        for (d, spec) in &specs {
            for name in zlayer_spec::start_order(spec) {
                let Some(t) = self.current_template(spec, d, &name) else {
                    continue;
                };
                current.insert(t.key());
                let rollout = self.rollout_for(&t);
                let rollout_failed = rollout.state == RolloutState::Failed;
                let svc = &spec.services[&name];
                let slots: Vec<u32> = assigned
                    .get(&format!("{}/{name}", spec.deployment))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                let mut starts = Vec::new();
                for &idx in &slots {
                    let key = crate::state::key(&spec.deployment, &name, idx);
                    wanted.insert(key.clone());
                    let existing = replicas.get(&key).cloned();
                    match self.plan(spec, &t, idx, existing, &replicas, rollout_failed) {
                        Plan::Keep => {}
                        Plan::Record(r) => {
                            // Pending replicas are stored too, so `ps` shows them and why they wait.
                            let known = replicas.get(&key).map(|o| (o.state, o.message.clone()));
                            if known != Some((r.state, r.message.clone())) {
                                let _ = self.store.put_replica(&r);
                            }
                            replicas.insert(key, r);
                        }
                        Plan::Start(r) => {
                            // Inserted now so the next slot's IP allocation sees this one.
                            replicas.insert(key, r.clone());
                            starts.push(r);
                        }
                    }
                }
                starts.extend(
                    self.roll(&t, svc, &slots, rollout, &mut replicas, &mut wanted)
                        .await,
                );
                // Replicas of one service start together; services start in dependency order.
                let launched =
                    futures::future::join_all(starts.into_iter().map(|r| self.launch(r))).await;
                for r in launched {
                    replicas.insert(r.key(), r);
                }
            }
        }
        self.remove_unwanted(&mut replicas, &wanted).await;
        let recorded: HashSet<String> = replicas.values().map(|r| r.container_id.clone()).collect();
        for cid in replica::unrecorded(&self.paths, &recorded) {
            tracing::warn!(container = %cid, "no replica record names this container; removing it");
            replica::cleanup(&self.paths, &self.images, &cid).await;
        }
        self.forget_templates(&specs, &replicas, current);
        self.check_health(&mut replicas).await;
        self.publish(&specs, &replicas).await;
    }

    /// Exits of running replicas, also those that exited while no agent ran.
    async fn observe_exits(&self, replicas: &mut BTreeMap<String, Replica>) {
        for r in replicas.values_mut() {
            if r.state != ReplicaState::Running {
                continue;
            }
            match ContainerDir::new(&self.paths.data_dir, &r.container_id).status() {
                Status::Running { .. } => {}
                Status::Exited(info) => {
                    let kind = if info.oom_killed { "oom" } else { "exit" };
                    self.event(r, kind, format!("{} {}", r.container_id, info.describe()));
                    r.message = if r.health == Health::Unhealthy {
                        format!("{} as unhealthy ({})", info.describe(), r.message)
                    } else {
                        info.describe()
                    };
                    r.last_exit = Some(info);
                    self.finish(r).await;
                }
                Status::Lost => {
                    self.event(
                        r,
                        "lost",
                        format!("{} vanished (no shim, no exit record)", r.container_id),
                    );
                    r.message = "container lost".into();
                    self.finish(r).await;
                }
            }
        }
    }

    /// Stops (all at once) and forgets replicas no spec wants any more.
    async fn remove_unwanted(
        &self,
        replicas: &mut BTreeMap<String, Replica>,
        wanted: &HashSet<String>,
    ) {
        let unwanted: Vec<Replica> = replicas
            .values()
            .filter(|r| !wanted.contains(&r.key()))
            .cloned()
            .collect();
        futures::future::join_all(unwanted.iter().map(|r| self.retire(r))).await;
        for r in unwanted {
            self.event(&r, "removed", format!("replica {} removed", r.index));
            replicas.remove(&r.key());
        }
    }

    /// Stops a replica with its own stop sequence, releases what it held and
    /// drops its record.
    pub(crate) async fn retire(&self, r: &Replica) {
        if r.state == ReplicaState::Running {
            let (sig, grace) = r.stop_params();
            replica::stop(&self.paths, &r.container_id, sig, grace).await;
        }
        replica::cleanup(&self.paths, &self.images, &r.container_id).await;
        let _ = self.store.remove_replica(&r.key());
    }

    /// The service's current template, stored so that replicas started from
    /// it can restart from it after the spec has moved on.
    fn current_template(&self, spec: &Spec, d: &Deployment, name: &str) -> Option<Arc<Template>> {
        let t = Template::new(spec, name, &d.env)?;
        let key = t.key();
        let mut cache = self.templates.lock().ok()?;
        if let Some(t) = cache.get(&key) {
            return Some(t.clone());
        }
        let _ = self.store.put_template(&t);
        let t = Arc::new(t);
        cache.insert(key, t.clone());
        Some(t)
    }

    /// The template a replica was started from.
    pub(crate) fn template_of(&self, r: &Replica) -> Option<Arc<Template>> {
        let key = crate::template::key(&r.deployment, &r.service, &r.revision);
        let mut cache = self.templates.lock().ok()?;
        if let Some(t) = cache.get(&key) {
            return Some(t.clone());
        }
        let t = Arc::new(self.store.template(&key)?);
        cache.insert(key, t.clone());
        Some(t)
    }

    /// Drops templates and rollout records that nothing names any more.
    fn forget_templates(
        &self,
        specs: &[(Deployment, Spec)],
        replicas: &BTreeMap<String, Replica>,
        mut keep: HashSet<String>,
    ) {
        keep.extend(
            replicas
                .values()
                .map(|r| crate::template::key(&r.deployment, &r.service, &r.revision)),
        );
        self.store.retain_templates(&keep);
        if let Ok(mut cache) = self.templates.lock() {
            cache.retain(|k, _| keep.contains(k));
        }
        for r in self.store.rollouts() {
            let live = specs
                .iter()
                .any(|(_, s)| s.deployment == r.deployment && s.services.contains_key(&r.service));
            if !live {
                self.store.remove_rollout(&r.deployment, &r.service);
            }
        }
    }

    /// Cleans up after an exit and schedules the restart (a cron run's next
    /// run is left for `plan_cron` to find).
    async fn finish(&self, r: &mut Replica) {
        replica::cleanup(&self.paths, &self.images, &r.container_id).await;
        r.state = ReplicaState::Exited;
        r.health = Health::None;
        let cron = self
            .template_of(r)
            .is_some_and(|t| t.service.rtype == ResourceType::Cron);
        r.restart_at_ms = if cron {
            0
        } else {
            now_ms() + backoff_ms(r.restarts)
        };
        let _ = self.store.put_replica(r);
    }

    /// Decides what one replica slot needs this round. A slot whose replica
    /// still runs an older revision is left to the rollout (`roll`); one whose
    /// replica is not running simply starts afresh on the current revision,
    /// unless that revision's rollout failed, in which case it restarts on its
    /// own.
    fn plan(
        &self,
        spec: &Spec,
        t: &Template,
        idx: u32,
        existing: Option<Replica>,
        all: &BTreeMap<String, Replica>,
        rollout_failed: bool,
    ) -> Plan {
        let (name, svc) = (t.service_name.as_str(), &spec.services[&t.service_name]);
        if svc.rtype == ResourceType::Cron {
            return self.plan_cron(spec, t, idx, existing, all);
        }
        let now = now_ms();
        let mut r = match existing {
            Some(r) if r.state == ReplicaState::Running => return Plan::Keep,
            // A replica that gave up or waits out a restart backoff is of no
            // use to anyone: a new revision replaces it at once.
            Some(r)
                if r.state != ReplicaState::Pending
                    && r.revision != t.revision
                    && !rollout_failed =>
            {
                if let Ok(mut since) = self.depends_since.lock() {
                    since.remove(&r.key());
                }
                Replica::new(&spec.deployment, name, idx, &t.revision)
            }
            Some(r) if r.state == ReplicaState::Failed => return Plan::Keep,
            Some(r) if r.state == ReplicaState::Exited => {
                let ok = r.last_exit.as_ref().is_some_and(|e| e.status() == 0);
                if svc.rtype == ResourceType::Job && ok {
                    return Plan::Keep;
                }
                if now < r.restart_at_ms {
                    return Plan::Keep;
                }
                let mut r = r;
                r.restarts += 1;
                r
            }
            Some(mut r) => {
                r.revision = t.revision.clone();
                r
            }
            // The slot's replacement is about to take it over (see `roll`).
            None if all.contains_key(&crate::state::surge_key(&spec.deployment, name, idx)) => {
                return Plan::Keep;
            }
            None => Replica::new(&spec.deployment, name, idx, &t.revision),
        };
        if let Err(why) = crate::depends::check(spec, name, all, || self.cluster.elsewhere()) {
            let since = match self.depends_since.lock() {
                Ok(mut m) => *m.entry(r.key()).or_insert(now),
                Err(_) => now,
            };
            let dep = svc.depends.iter().find(|d| why.contains(&d.service));
            match dep {
                Some(d)
                    if now - since > d.timeout.0.as_millis() as u64
                        && d.on_timeout == OnTimeout::Fail =>
                {
                    r.state = ReplicaState::Failed;
                    r.message = format!("gave up: {why}");
                    self.event(&r, "failed", r.message.clone());
                    let _ = self.store.put_replica(&r);
                    return Plan::Record(r);
                }
                Some(d) if now - since > d.timeout.0.as_millis() as u64 => {}
                _ => {
                    r.message = why;
                    return Plan::Record(r);
                }
            }
        }
        self.start_with_ip(r, svc, all)
    }

    /// A cron service has one slot. Its run starts at each fire time of the
    /// schedule; a fire time that passes while the previous run still runs
    /// is skipped (no overlap), and a failed run is not retried before the
    /// next fire time.
    fn plan_cron(
        &self,
        spec: &Spec,
        t: &Template,
        idx: u32,
        existing: Option<Replica>,
        all: &BTreeMap<String, Replica>,
    ) -> Plan {
        let now = now_ms();
        let mut r = match existing {
            Some(r) if r.state == ReplicaState::Running => return Plan::Keep,
            Some(r) => r,
            None => Replica::new(&spec.deployment, &t.service_name, idx, &t.revision),
        };
        r.revision = t.revision.clone();
        if r.restart_at_ms == 0 {
            let schedule = spec.services[&t.service_name]
                .schedule
                .clone()
                .unwrap_or_default();
            let last = r
                .last_exit
                .as_ref()
                .map(|e| format!("last run {}; ", e.describe()))
                .unwrap_or_default();
            match zlayer_spec::next_fire_ms(&schedule, now) {
                Some(next) => {
                    r.restart_at_ms = next;
                    r.message = format!("{last}next run at {}", zlayer_spec::format_utc(next));
                }
                None => r.message = format!("{last}the schedule `{schedule}` has no future run"),
            }
            return Plan::Record(r);
        }
        if now < r.restart_at_ms {
            return Plan::Keep;
        }
        r.restart_at_ms = 0;
        self.start_with_ip(r, &spec.services[&t.service_name], all)
    }

    /// Starts the replica once it has an address and the GPUs it asks for;
    /// without them it waits, saying why.
    fn start_with_ip(
        &self,
        mut r: Replica,
        svc: &Service,
        all: &BTreeMap<String, Replica>,
    ) -> Plan {
        match self.reserve(&mut r, svc, all) {
            Ok(()) => Plan::Start(r),
            Err(e) => {
                r.message = e;
                Plan::Record(r)
            }
        }
    }

    /// Reserves what `r` needs before it starts: an address and its GPUs.
    pub(crate) fn reserve(
        &self,
        r: &mut Replica,
        svc: &Service,
        all: &BTreeMap<String, Replica>,
    ) -> Result<(), String> {
        let gpus = self.reserve_gpus(r, svc, all)?;
        r.ip = Some(self.reserve_ip(r, all)?);
        r.gpus = gpus;
        Ok(())
    }

    /// The GPUs `r`'s service asks for: those it already holds, else free
    /// ones no other replica holds. Never more than the node has.
    pub(crate) fn reserve_gpus(
        &self,
        r: &Replica,
        svc: &Service,
        all: &BTreeMap<String, Replica>,
    ) -> Result<Vec<u32>, String> {
        let want = svc.resources.gpu.as_ref().filter(|g| g.count > 0);
        let Some(want) = want else {
            return Ok(Vec::new());
        };
        if r.gpus.len() == want.count as usize {
            return Ok(r.gpus.clone());
        }
        let held: HashSet<u32> = all
            .values()
            .filter(|x| x.key() != r.key() && self.holds_gpus(x))
            .flat_map(|x| x.gpus.iter().copied())
            .collect();
        let total = self.gpus.gpus().len();
        let free: Vec<u32> = if want.vendor == "nvidia" {
            self.gpus
                .gpus()
                .iter()
                .map(|g| g.index)
                .filter(|i| !held.contains(i))
                .collect()
        } else {
            Vec::new()
        };
        if free.len() < want.count as usize {
            return Err(format!(
                "pending: needs {} {} GPU(s); this node has {} free of {}",
                want.count,
                want.vendor,
                free.len(),
                if want.vendor == "nvidia" { total } else { 0 }
            ));
        }
        Ok(free.into_iter().take(want.count as usize).collect())
    }

    /// A replica keeps its GPUs through restarts; one that gave up, or a job
    /// that completed, needs them no more.
    fn holds_gpus(&self, r: &Replica) -> bool {
        match r.state {
            ReplicaState::Failed => false,
            ReplicaState::Exited => {
                let done = r.last_exit.as_ref().is_some_and(|e| e.status() == 0);
                !(done
                    && self
                        .template_of(r)
                        .is_some_and(|t| t.service.rtype == ResourceType::Job))
            }
            ReplicaState::Pending | ReplicaState::Running => true,
        }
    }

    /// An address no other replica holds.
    pub(crate) fn reserve_ip(
        &self,
        r: &Replica,
        all: &BTreeMap<String, Replica>,
    ) -> Result<Ipv4Addr, String> {
        let used: HashSet<Ipv4Addr> = all
            .values()
            .filter(|x| x.key() != r.key())
            .filter_map(|x| x.ip)
            .collect();
        zlayer_net::allocate(&self.paths.cidr, &used).map_err(|e| e.to_string())
    }

    /// Starts a planned replica (its IP already reserved) from its revision's
    /// template and records the outcome.
    async fn launch(&self, mut r: Replica) -> Replica {
        let Some(t) = self.template_of(&r) else {
            r.state = ReplicaState::Exited;
            r.ip = None;
            r.message = format!("revision {} is no longer known", r.revision);
            r.restart_at_ms = now_ms() + backoff_ms(r.restarts);
            let _ = self.store.put_replica(&r);
            return r;
        };
        let svc = &t.service;
        let (idx, ip) = (r.index, r.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED));
        let search = format!("{}.zlayer", t.deployment);
        match replica::start(
            &self.paths,
            &self.images,
            &replica::ReplicaRequest {
                deployment: &t.deployment,
                service: &t.service_name,
                svc,
                index: idx,
                env: &t.env,
                ip,
                dns_search: &search,
                gpus: &r.gpus,
                inventory: &self.gpus,
            },
        )
        .await
        {
            Ok(s) => {
                r.container_id = s.container_id;
                r.ip = Some(s.ip);
                r.state = ReplicaState::Running;
                r.health = if svc.health.is_some() {
                    Health::Starting
                } else {
                    Health::None
                };
                r.started_ms = now_ms();
                r.failed_checks = 0;
                r.stop_signal = svc
                    .stop
                    .signal
                    .as_deref()
                    .and_then(zlayer_runtime::signal_number);
                r.stop_grace_ms = svc.stop.grace.0.as_millis() as u64;
                r.message.clear();
                self.event(
                    &r,
                    "started",
                    format!("{} started at {}", r.container_id, s.ip),
                );
            }
            Err(e) => {
                r.state = ReplicaState::Exited;
                r.ip = None;
                r.message = format!("start failed: {e}");
                r.restart_at_ms = now_ms() + backoff_ms(r.restarts);
                self.event(&r, "start-failed", e);
            }
        }
        let _ = self.store.put_replica(&r);
        r
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
                let h = self.template_of(&r)?.service.health.clone()?;
                Some(h.start_interval.unwrap_or(h.interval).0)
            })
            .min()
            .map_or(idle, |i| i.clamp(Duration::from_millis(5), idle))
    }

    pub(crate) async fn apply(&self, req: ApplyRequest) -> Result<ApplyResponse, String> {
        let spec = zlayer_spec::parse(&req.file, &req.text).map_err(|e| e.to_string())?;
        let d = Deployment {
            name: spec.deployment.clone(),
            file: req.file.clone(),
            text: req.text.clone(),
            env: req.env.clone(),
        };
        resolve_env_checked(&d, &spec)?;
        for (name, svc) in &spec.services {
            crate::images::ensure_image(&self.images, &self.registries, &svc.image)
                .await
                .map_err(|e| located(&d, &format!("services.{name}.image.name"), e))?;
        }
        // The loop rolls each service whose revision changed; the rest stay as they are.
        let changed = self.cluster.put_deployment(d.clone()).await?;
        let mut revisions = BTreeMap::new();
        for name in spec.services.keys() {
            if let Some(t) = self.current_template(&spec, &d, name) {
                self.rollout_for(&t);
                revisions.insert(name.clone(), t.revision.clone());
            }
        }
        self.wake.notify_one();
        Ok(ApplyResponse {
            deployment: d.name,
            services: spec.services.keys().cloned().collect(),
            changed,
            revisions,
        })
    }

    pub(crate) async fn down(&self, name: &str) -> Result<(), String> {
        if !self.cluster.remove_deployment(name.to_string()).await? {
            return Err(format!("no deployment named `{name}`"));
        }
        self.wake.notify_one();
        for _ in 0..6000 {
            if !self.store.replicas().iter().any(|r| r.deployment == name) {
                let _ = std::fs::remove_dir_all(self.paths.data_dir.join("logs").join(name));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!("deployment `{name}` is still stopping"))
    }

    /// Every replica in the cluster: this node's as it sees them now, the
    /// others' as their nodes last reported them, and pending ones.
    pub(crate) fn views(&self) -> Vec<ReplicaView> {
        let mut all = self.local_views();
        all.extend(self.cluster.elsewhere());
        all
    }

    /// Says why this node stops its replicas, when fencing begins.
    fn note_fenced(&self, replicas: &BTreeMap<String, Replica>) {
        tracing::warn!(
            "fenced: no quorum reached within the down timeout; stopping every replica here"
        );
        for r in replicas.values() {
            self.event(
                r,
                "fenced",
                "this node cannot reach a quorum of the cluster, so the leader runs this replica elsewhere; it stops here".into(),
            );
        }
    }

    pub(crate) fn local_views(&self) -> Vec<ReplicaView> {
        let now = now_ms();
        self.store
            .replicas()
            .into_iter()
            .map(|r| {
                let oom = r.last_exit.as_ref().is_some_and(|e| e.oom_killed)
                    && r.state != ReplicaState::Running;
                ReplicaView {
                    deployment: r.deployment.clone(),
                    service: r.service.clone(),
                    replica: r.index,
                    node: self.node_name.clone(),
                    state: if oom {
                        "oom-killed".into()
                    } else {
                        format!("{:?}", r.state).to_lowercase()
                    },
                    health: format!("{:?}", r.health).to_lowercase(),
                    restarts: r.restarts,
                    ip: r.ip.map(|i| i.to_string()).unwrap_or_default(),
                    age_secs: now.saturating_sub(r.created_ms) / 1000,
                    container_id: r.container_id.clone(),
                    message: r.message.clone(),
                    revision: r.revision.clone(),
                    surge: r.surge,
                }
            })
            .collect()
    }

    /// The round count once it passes `after`; at most 2 s later, whatever it is.
    pub(crate) async fn watch(&self, after: u64) -> u64 {
        let mut rx = self.generation.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|g| *g > after)).await;
        let now = *rx.borrow();
        now
    }

    /// Every node's rollouts: this node's as they are now, the others' as
    /// last reported.
    pub(crate) fn rollout_views(&self) -> Vec<RolloutView> {
        let mut all = self.local_rollout_views();
        all.extend(self.cluster.rollouts_elsewhere());
        all
    }

    fn local_rollout_views(&self) -> Vec<RolloutView> {
        let now = now_ms();
        self.store
            .rollouts()
            .into_iter()
            .map(|r| RolloutView {
                deployment: r.deployment,
                service: r.service,
                node: self.node_name.clone(),
                revision: r.revision,
                state: format!("{:?}", r.state).to_lowercase(),
                message: r.message,
                age_secs: now.saturating_sub(r.started_ms) / 1000,
            })
            .collect()
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn locate(&self, target: &str) -> Result<Vec<ReplicaLocation>, String> {
        let (svc, idx) = match target.split_once('/') {
            Some((s, i)) => (
                s,
                Some(
                    i.parse::<u32>()
                        .map_err(|_| format!("`{target}`: write SERVICE or SERVICE/N"))?,
                ),
            ),
            None => (target, None),
        };
        let out: Vec<ReplicaLocation> = self
            .store
            .replicas()
            .into_iter()
            .filter(|r| r.service == svc && idx.is_none_or(|i| i == r.index))
            .map(|r| ReplicaLocation {
                service: r.service.clone(),
                replica: r.index,
                runtime_root: self.paths.data_dir.join("runtime").display().to_string(),
                log_path: self
                    .paths
                    .log_path(&r.deployment, &r.service, r.index)
                    .display()
                    .to_string(),
                container_id: if r.state == ReplicaState::Running {
                    r.container_id
                } else {
                    String::new()
                },
            })
            .collect();
        if out.is_empty() {
            return Err(format!("no replica matches `{target}` (see `zlayer ps`)"));
        }
        Ok(out)
    }
}

fn resolve_env_checked(d: &Deployment, spec: &Spec) -> Result<(), String> {
    for (name, svc) in &spec.services {
        for (k, v) in &svc.env {
            if let Some(var) = v.strip_prefix("$E:") {
                if !d.env.contains_key(var) {
                    let msg = format!("`${var}` is not set in the environment of `zlayer up`; export {var}=... first");
                    return Err(located(d, &format!("services.{name}.env.{k}"), msg));
                }
            }
            if v.starts_with("$S:") {
                let msg = "secrets (`$S:`) need the secret store, which arrives with the cluster issue; use a literal or `$E:` for now";
                return Err(located(d, &format!("services.{name}.env.{k}"), msg));
            }
        }
    }
    Ok(())
}

/// `FILE:LINE:COL: key.path: message`, like the spec parser's errors.
fn located(d: &Deployment, path: &str, msg: impl std::fmt::Display) -> String {
    let (line, col) = zlayer_spec::position(&d.text, path);
    format!("{}:{line}:{col}: {path}: {msg}", d.file)
}

/// What one replica slot needs this round.
enum Plan {
    Keep,
    Record(Replica),
    Start(Replica),
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
