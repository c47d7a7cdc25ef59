//! Reconcile rounds against a recording launcher and a cluster held in
//! memory: restarts with backoff, rollout turns, `depends` across nodes,
//! fencing, cron and a spec this node cannot parse, all without root. The
//! launcher starts no container; it records what reconcile asked of it and
//! reports the status each test sets. The real path is covered by
//! `tests/e2e*.sh`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use zlayer_model::{Health, ReplicaReport, ReplicaState, RolloutReport};
use zlayer_runtime::{ExitInfo, Status};
use zlayer_spec::DeploymentRevision;

use crate::agent::{Agent, AgentConfig};
use crate::clock::now_ms;
use crate::desired::{Cluster, Slots};
use crate::launcher::{Launcher, StartRequest};
use crate::state::Replica;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Start {
        workload: String,
        index: u32,
        revision: String,
    },
    Stop(String),
    Cleanup(String),
}

/// Records every call; containers "run" until a test makes them exit.
#[derive(Default)]
struct RecordingLauncher {
    calls: Mutex<Vec<Call>>,
    status: Mutex<HashMap<String, Status>>,
    next: Mutex<u32>,
}

impl RecordingLauncher {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn starts(&self) -> Vec<(String, u32, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start {
                    workload,
                    index,
                    revision,
                } => Some((workload, index, revision)),
                _ => None,
            })
            .collect()
    }

    fn stops(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Stop(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    fn exit(&self, container_id: &str, code: i32) {
        self.status.lock().unwrap().insert(
            container_id.to_string(),
            Status::Exited(ExitInfo {
                code: Some(code),
                signal: None,
                oom_killed: false,
                finished_at_ms: now_ms(),
                usage: None,
            }),
        );
    }
}

impl Launcher for RecordingLauncher {
    fn start(&self, req: StartRequest) -> BoxFuture<'_, Result<String, String>> {
        let t = &req.template;
        let mut n = self.next.lock().unwrap();
        *n += 1;
        let id = format!("{}-{}-{}-c{n}", t.deployment, t.service_name, req.index);
        self.calls.lock().unwrap().push(Call::Start {
            workload: format!("{}/{}", t.deployment, t.service_name),
            index: req.index,
            revision: t.revision.clone(),
        });
        self.status
            .lock()
            .unwrap()
            .insert(id.clone(), Status::Running { init_pid: 1 });
        Box::pin(async move { Ok(id) })
    }
    fn stop<'a>(&'a self, id: &'a str, _: i32, _: Duration) -> BoxFuture<'a, ()> {
        self.calls.lock().unwrap().push(Call::Stop(id.to_string()));
        self.exit(id, 143);
        Box::pin(async {})
    }
    fn signal(&self, id: &str, _: i32) {
        self.exit(id, 137);
    }
    fn status(&self, id: &str) -> Status {
        self.status
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or(Status::Lost)
    }
    fn cleanup<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        if !id.is_empty() {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Cleanup(id.to_string()));
        }
        Box::pin(async {})
    }
    fn unrecorded(&self, _: &HashSet<String>) -> Vec<String> {
        Vec::new()
    }
}

/// The committed state, as a test sets it.
#[derive(Default)]
struct MemoryCluster {
    deployments: Mutex<Vec<Arc<DeploymentRevision>>>,
    assigned: Mutex<Slots>,
    fenced: AtomicBool,
    elsewhere: Mutex<Vec<ReplicaReport>>,
}

impl MemoryCluster {
    fn commit(&self, text: &str) {
        let mut d = self.deployments.lock().unwrap();
        let revision = d.len() as u64 + 1;
        let parsed = DeploymentRevision::new("d", revision, "d.yaml", text, &BTreeMap::new());
        d.clear();
        d.push(Arc::new(parsed));
    }

    fn assign(&self, workload: &str, slots: &[u32]) {
        self.assigned
            .lock()
            .unwrap()
            .insert(workload.into(), slots.iter().copied().collect());
    }
}

impl Cluster for MemoryCluster {
    fn deployments(&self) -> Vec<Arc<DeploymentRevision>> {
        self.deployments.lock().unwrap().clone()
    }
    fn assigned(&self) -> Slots {
        self.assigned.lock().unwrap().clone()
    }
    fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
    fn report(&self, _: Vec<ReplicaReport>, _: Vec<RolloutReport>) {}
    fn reported_elsewhere(&self) -> Vec<ReplicaReport> {
        self.elsewhere.lock().unwrap().clone()
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    agent: Arc<Agent>,
    launcher: Arc<RecordingLauncher>,
    cluster: Arc<MemoryCluster>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let launcher = Arc::new(RecordingLauncher::default());
        let cluster = Arc::new(MemoryCluster::default());
        let agent = Agent::with_launcher(
            &AgentConfig {
                data_dir: dir.path().to_path_buf(),
                exe: PathBuf::from("/bin/false"),
                bridge: "zltest0".into(),
                cidr: "10.250.0.0/24".parse().expect("cidr"),
                cluster_cidr: None,
                registries: Default::default(),
                gpu_root: dir.path().join("gpu"),
                cluster: cluster.clone(),
                node_name: "n1".into(),
                allow_host_paths: Vec::new(),
                log_limit: zlayer_runtime::LogLimit::default(),
                port_max_connections: zlayer_net::DEFAULT_MAX_CONNECTIONS,
                ingress: None,
            },
            launcher.clone(),
        )
        .expect("agent opens on a fresh dir");
        Rig {
            _dir: dir,
            agent,
            launcher,
            cluster,
        }
    }

    async fn round(&self) {
        self.agent.reconcile().await;
    }

    fn replica(&self, service: &str, index: u32) -> Replica {
        self.agent
            .store
            .replicas()
            .into_iter()
            .find(|r| r.service == service && r.index == index && !r.surge)
            .unwrap_or_else(|| panic!("no record of {service}/{index}"))
    }

    /// Makes a replica's backoff (or a cron run's fire time) due now.
    fn due(&self, service: &str, index: u32) {
        let mut r = self.replica(service, index);
        r.restart_at_ms = now_ms().saturating_sub(1);
        self.agent.store.put_replica(&r).expect("store");
    }
}

fn service(name: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    image: {{ name: demo }}\n    command: {{ entrypoint: [\"/bin/sleep\", \"9\"] }}\n{extra}"
    )
}

fn spec(services: &[String]) -> String {
    format!(
        "version: v1\ndeployment: d\nservices:\n{}",
        services.concat()
    )
}

#[tokio::test]
async fn an_exited_replica_restarts_after_a_doubling_backoff() {
    let rig = Rig::new();
    rig.cluster.commit(&spec(&[service("web", "")]));
    rig.cluster.assign("d/web", &[1]);
    rig.round().await;
    assert_eq!(rig.launcher.starts().len(), 1);
    let first = rig.replica("web", 1);
    assert_eq!(first.state, ReplicaState::Running);

    rig.launcher.exit(&first.container_id, 1);
    rig.round().await;
    let exited = rig.replica("web", 1);
    assert_eq!(exited.state, ReplicaState::Exited);
    assert!(exited.restart_at_ms > now_ms(), "waits out its backoff");
    assert!(rig
        .launcher
        .calls()
        .contains(&Call::Cleanup(first.container_id.clone())));
    rig.round().await;
    assert_eq!(
        rig.launcher.starts().len(),
        1,
        "started again inside its backoff"
    );

    rig.due("web", 1);
    rig.round().await;
    assert_eq!(rig.launcher.starts().len(), 2);
    let second = rig.replica("web", 1);
    assert_eq!((second.state, second.restarts), (ReplicaState::Running, 1));

    rig.launcher.exit(&second.container_id, 1);
    let before = now_ms();
    rig.round().await;
    let backoff = rig.replica("web", 1).restart_at_ms - before;
    assert!(
        backoff >= 500,
        "the second restart waits at least twice the first's 250 ms, got {backoff} ms"
    );
}

#[tokio::test]
async fn a_fenced_node_stops_everything_and_starts_nothing() {
    let rig = Rig::new();
    rig.cluster.commit(&spec(&[service(
        "web",
        "    scale: { mode: fixed, replicas: 2 }\n",
    )]));
    rig.cluster.assign("d/web", &[1, 2]);
    rig.round().await;
    let running: Vec<String> = rig
        .agent
        .store
        .replicas()
        .into_iter()
        .map(|r| r.container_id)
        .collect();
    assert_eq!(running.len(), 2);

    rig.cluster.fenced.store(true, Ordering::Relaxed);
    rig.round().await;
    let mut stopped = rig.launcher.stops();
    stopped.sort();
    let mut expected = running.clone();
    expected.sort();
    assert_eq!(stopped, expected);
    assert!(rig.agent.store.replicas().is_empty());
    assert!(rig.agent.events().iter().any(|e| e.kind == "fenced"));
    rig.round().await;
    assert_eq!(
        rig.launcher.starts().len(),
        2,
        "nothing starts while fenced"
    );

    rig.cluster.fenced.store(false, Ordering::Relaxed);
    rig.round().await;
    assert_eq!(
        rig.launcher.starts().len(),
        4,
        "both slots start again once unfenced"
    );
}

#[tokio::test]
async fn a_dependency_on_another_node_is_waited_for_then_met() {
    let rig = Rig::new();
    rig.cluster.commit(&spec(&[
        service("db", ""),
        service(
            "web",
            "    depends: [{ service: db, condition: started }]\n",
        ),
    ]));
    // db runs on another node; only web is assigned here.
    rig.cluster.assign("d/web", &[1]);
    rig.round().await;
    assert!(rig.launcher.starts().is_empty());
    let waiting = rig.replica("web", 1);
    assert_eq!(waiting.state, ReplicaState::Pending);
    assert_eq!(waiting.message, "waiting for `db` to be started");

    rig.cluster
        .elsewhere
        .lock()
        .unwrap()
        .push(ReplicaReport::new(
            "d/db",
            1,
            ReplicaState::Running,
            Health::None,
            "r",
        ));
    rig.round().await;
    assert_eq!(
        rig.launcher.starts(),
        vec![("d/web".into(), 1, waiting.revision)]
    );
}

/// The chaos run caught slot 1 running on two live nodes: the scheduler
/// moved it while its node was marked down, and the node, back, was still
/// stopping it when the new one started. A slot waits for that stop.
#[tokio::test]
async fn a_slot_moved_here_waits_until_the_live_node_it_left_stops_it() {
    let rig = Rig::new();
    rig.cluster.commit(&spec(&[service("web", "")]));
    let old = ReplicaReport::new("d/web", 1, ReplicaState::Running, Health::None, "r");
    let surge = ReplicaReport {
        replica: 2,
        surge: true,
        ..old.clone()
    };
    rig.cluster.elsewhere.lock().unwrap().extend([old, surge]);
    rig.cluster.assign("d/web", &[1]);
    rig.round().await;
    assert!(
        rig.launcher.starts().is_empty(),
        "started beside the old one"
    );
    let waiting = rig.replica("web", 1);
    assert_eq!(waiting.state, ReplicaState::Pending);
    assert_eq!(
        waiting.message,
        "waiting for replica 1 to stop on the node it ran on before it moved here"
    );

    rig.cluster.elsewhere.lock().unwrap()[0].state = ReplicaState::Exited;
    rig.round().await;
    assert_eq!(rig.launcher.starts().len(), 1);
    assert_eq!(rig.replica("web", 1).state, ReplicaState::Running);
}

#[tokio::test]
async fn a_rollout_replaces_one_slot_at_a_time_and_waits_for_a_turn_elsewhere() {
    let rig = Rig::new();
    let web = |version: &str| {
        spec(&[service(
            "web",
            &format!("    env: {{ V: \"{version}\" }}\n    scale: {{ mode: fixed, replicas: 3 }}\n    update: {{ parallelism: 1 }}\n"),
        )])
    };
    rig.cluster.commit(&web("1"));
    rig.cluster.assign("d/web", &[2, 3]);
    rig.round().await;
    let v1 = rig.replica("web", 2).revision;
    // Slot 1 runs v1 on another node and has not been replaced yet.
    rig.cluster
        .elsewhere
        .lock()
        .unwrap()
        .push(ReplicaReport::new(
            "d/web",
            1,
            ReplicaState::Running,
            Health::None,
            &v1,
        ));

    rig.cluster.commit(&web("2"));
    rig.round().await;
    assert_eq!(
        rig.launcher.starts().len(),
        2,
        "slot 1 elsewhere goes first"
    );

    // Slot 1 was replaced elsewhere: now slot 2 here, alone.
    let committed = rig.cluster.deployments()[0].clone();
    let parsed = committed.parsed.as_ref().expect("parses");
    let v2 = crate::template::Template::new(parsed, "web", &committed.env)
        .expect("service")
        .revision;
    assert_ne!(v2, v1);
    rig.cluster.elsewhere.lock().unwrap()[0].revision = v2.clone();
    rig.round().await;
    let starts = rig.launcher.starts();
    assert_eq!(starts.len(), 3);
    assert_eq!((starts[2].1, starts[2].2.clone()), (2, v2.clone()));

    // The replacement serves: it takes slot 2, the old one stops, and slot
    // 3's replacement starts in the same round.
    rig.round().await;
    assert_eq!(rig.replica("web", 2).revision, v2);
    assert_eq!(rig.launcher.stops().len(), 1);
    let starts = rig.launcher.starts();
    assert_eq!(starts.len(), 4);
    assert_eq!((starts[3].1, starts[3].2.clone()), (3, v2.clone()));
    rig.round().await;
    assert_eq!(rig.replica("web", 3).revision, v2);
    assert_eq!(rig.launcher.stops().len(), 2);
}

#[tokio::test]
async fn a_cron_run_starts_at_its_fire_time_and_never_overlaps() {
    let rig = Rig::new();
    rig.cluster.commit(&spec(&[service(
        "tick",
        "    rtype: cron\n    schedule: \"0 0 0 1 1 * *\"\n",
    )]));
    rig.cluster.assign("d/tick", &[1]);
    rig.round().await;
    assert!(rig.launcher.starts().is_empty(), "not before its fire time");
    assert!(rig.replica("tick", 1).message.starts_with("next run at "));

    rig.due("tick", 1);
    let due = rig.replica("tick", 1).restart_at_ms;
    rig.round().await;
    assert_eq!(rig.launcher.starts().len(), 1);
    let due_at = zlayer_spec::format_utc(due);
    let started = rig.agent.events().into_iter().find(|e| e.kind == "started");
    assert!(
        started.is_some_and(|e| e.message.ends_with(&format!("(the run due at {due_at})"))),
        "the start event names its fire time"
    );
    // A fire time that passes while the run still runs is skipped.
    rig.due("tick", 1);
    rig.round().await;
    assert_eq!(rig.launcher.starts().len(), 1);

    let run = rig.replica("tick", 1);
    rig.launcher.exit(&run.container_id, 0);
    rig.round().await;
    rig.round().await;
    let after = rig.replica("tick", 1);
    assert_eq!(after.state, ReplicaState::Exited);
    assert!(
        after.restart_at_ms > now_ms(),
        "waits for the next fire time"
    );
    assert!(after.message.contains("last run"), "{}", after.message);
    assert_eq!(rig.launcher.starts().len(), 1);
}

#[tokio::test]
async fn a_revision_this_node_cannot_parse_is_reported_and_leaves_replicas_running() {
    let rig = Rig::new();
    rig.cluster.commit(&spec(&[service("web", "")]));
    rig.cluster.assign("d/web", &[1]);
    rig.round().await;
    let running = rig.replica("web", 1);

    rig.cluster
        .commit("version: v1\ndeployment: d\nservices: 3\n");
    rig.round().await;
    rig.round().await;
    assert!(rig.launcher.stops().is_empty(), "its replica was stopped");
    assert_eq!(rig.replica("web", 1).container_id, running.container_id);
    let errors = rig.agent.spec_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].deployment.as_str(), errors[0].revision),
        ("d", 2)
    );
    let reported: Vec<_> = rig
        .agent
        .events()
        .into_iter()
        .filter(|e| e.kind == "spec-invalid")
        .collect();
    assert_eq!(
        reported.len(),
        1,
        "reported once per revision: {reported:?}"
    );
    assert!(
        reported[0].message.contains("d.yaml"),
        "{}",
        reported[0].message
    );
}
