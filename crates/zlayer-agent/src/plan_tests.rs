//! What `plan` decides for one slot when a new revision meets replicas that
//! are not running.

use super::*;
use std::path::PathBuf;
use std::sync::Arc;
use zlayer_runtime::ExitInfo;

/// A cluster that gives this node's job tasks attempt `self.0` and says
/// nothing else: `plan` decides one slot.
struct GivenAttempt(std::sync::atomic::AtomicU32);

impl crate::desired::Cluster for GivenAttempt {
    fn deployments(&self) -> Vec<Arc<zlayer_spec::DeploymentRevision>> {
        Vec::new()
    }
    fn assigned(&self) -> crate::desired::Slots {
        Default::default()
    }
    fn fenced(&self) -> bool {
        false
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
    fn report(&self, _: Vec<zlayer_model::ReplicaReport>, _: Vec<zlayer_model::RolloutReport>) {}
    fn reported_elsewhere(&self) -> Vec<zlayer_model::ReplicaReport> {
        Vec::new()
    }
    fn task_attempt(&self, _: &str, _: u32, _: &str) -> crate::desired::TaskAttempt {
        crate::desired::TaskAttempt {
            number: self.0.load(std::sync::atomic::Ordering::SeqCst),
            used_ms: 0,
        }
    }
}

fn node(dir: &std::path::Path) -> Arc<Agent> {
    node_in(dir, Arc::new(GivenAttempt(1.into())))
}

fn node_in(dir: &std::path::Path, cluster: Arc<dyn crate::desired::Cluster>) -> Arc<Agent> {
    Agent::open(&crate::AgentConfig {
        cluster,
        node_name: "test".into(),
        allow_host_paths: Vec::new(),
        log_limit: zlayer_runtime::LogLimit::default(),
        port_max_connections: zlayer_net::DEFAULT_MAX_CONNECTIONS,
        ingress: None,
        gpu_root: dir.join("gpu"),
        data_dir: dir.to_path_buf(),
        exe: PathBuf::from("/bin/false"),
        bridge: "zltest0".into(),
        cidr: "10.250.0.0/24".parse().expect("cidr"),
        cluster_cidr: None,
        registries: Default::default(),
    })
    .expect("node opens on a fresh dir")
}

fn spec(message: &str) -> Spec {
    let text = format!(
        "version: v1\ndeployment: d\nservices:\n  web:\n    image: {{ name: demo }}\n    env: {{ MESSAGE: \"{message}\" }}\n"
    );
    zlayer_spec::parse("t.yaml", &text).expect("valid spec")
}

fn template(spec: &Spec) -> Template {
    Template::new(spec, "web", &Default::default()).expect("service exists")
}

/// A replica of the `v1` revision in `state`, whose backoff ends an hour from now.
fn old_replica(state: ReplicaState) -> Replica {
    let mut r = Replica::new("d", "web", 1, &template(&spec("v1")).revision);
    r.state = state;
    r.restarts = 6;
    r.restart_at_ms = now_ms() + 3_600_000;
    r.last_exit = Some(ExitInfo {
        code: Some(1),
        signal: None,
        oom_killed: false,
        finished_at_ms: now_ms(),
        usage: None,
    });
    r
}

fn plan_v2(existing: Replica, rollout_failed: bool) -> Plan {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path());
    let s = spec("v2");
    n.plan(
        &s,
        &template(&s),
        1,
        Some(existing),
        &BTreeMap::new(),
        rollout_failed,
    )
}

#[test]
fn a_crash_looping_replica_starts_at_once_on_a_new_revision() {
    match plan_v2(old_replica(ReplicaState::Exited), false) {
        Plan::Start(r) => {
            assert_eq!(r.revision, template(&spec("v2")).revision);
            assert_eq!(r.restarts, 0, "a new revision starts with a clean count");
            assert!(r.ip.is_some());
        }
        _ => panic!("expected a start on the new revision"),
    }
}

#[test]
fn a_replica_that_gave_up_is_replaced_by_a_new_revision() {
    assert!(matches!(
        plan_v2(old_replica(ReplicaState::Failed), false),
        Plan::Start(_)
    ));
}

#[test]
fn after_a_failed_rollout_an_old_replica_waits_out_its_own_backoff() {
    assert!(matches!(
        plan_v2(old_replica(ReplicaState::Exited), true),
        Plan::Keep
    ));
}

#[test]
fn a_running_old_replica_is_left_to_the_rollout() {
    assert!(matches!(
        plan_v2(old_replica(ReplicaState::Running), false),
        Plan::Keep
    ));
}

/// A node whose driver tree has one GPU (a device node with /dev/null's
/// numbers: discovery only reads them) and a service of 2 replicas that each
/// want it.
#[test]
fn a_replica_gets_a_free_gpu_and_one_beyond_the_node_waits_saying_why() {
    if !nix::unistd::geteuid().is_root() {
        return; // mknod needs root
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("gpu/dev")).expect("dev dir");
    nix::sys::stat::mknod(
        &dir.path().join("gpu/dev/nvidia0"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    let n = node(dir.path());
    let text = "version: v1\ndeployment: d\nservices:\n  web:\n    image: { name: demo }\n    resources: { gpu: { count: 1 } }\n    scale: { mode: fixed, replicas: 2 }\n";
    let s = zlayer_spec::parse("t.yaml", text).expect("valid spec");
    let t = template(&s);
    let mut all = BTreeMap::new();
    let first = match n.plan(&s, &t, 1, None, &all, false) {
        Plan::Start(r) => r,
        _ => panic!("the first replica should start"),
    };
    assert_eq!(first.gpus, [0]);
    all.insert(first.key(), first.clone());
    match n.plan(&s, &t, 2, None, &all, false) {
        Plan::Record(r) => {
            assert!(r.gpus.is_empty());
            assert_eq!(
                r.message,
                "pending: needs 1 nvidia GPU(s); this node has 0 free of 1"
            );
        }
        _ => panic!("the second replica must wait"),
    }
    // A replica that gave up holds nothing: its GPU goes to the next one.
    let mut gave_up = first;
    gave_up.state = ReplicaState::Failed;
    all.insert(gave_up.key(), gave_up);
    assert!(matches!(n.plan(&s, &t, 2, None, &all, false), Plan::Start(r) if r.gpus == [0]));
}

/// A failed job task waits for the leader's next attempt instead of
/// restarting by itself; given it, it starts numbered; a fresh record of a
/// retry waits out its backoff; the last attempt allowed gives up.
#[test]
fn a_failed_job_task_waits_for_the_leader_then_runs_its_next_attempt() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let given = Arc::new(GivenAttempt(AtomicU32::new(1)));
    let n = node_in(dir.path(), given.clone());
    let text = "version: v1\ndeployment: d\nservices:\n  web:\n    rtype: job\n    retries: 2\n    image: { name: demo }\n";
    let s = zlayer_spec::parse("t.yaml", text).expect("valid spec");
    let t = template(&s);
    let mut r = Replica::new("d", "web", 1, &t.revision);
    r.attempt = 1;
    r.started_ms = now_ms() - 500;
    r.state = ReplicaState::Exited;
    r.last_exit = Some(ExitInfo {
        code: Some(3),
        signal: None,
        oom_killed: false,
        finished_at_ms: now_ms(),
        usage: None,
    });
    n.job_exited(&mut r, &s.services["web"]);
    assert_eq!(r.state, ReplicaState::Exited);
    assert_eq!(r.failed_attempt.as_ref().map(|f| f.attempt), Some(1));
    assert!(
        r.message
            .starts_with("attempt 1 of 3 failed (exited with code 3)"),
        "{}",
        r.message
    );
    let all = BTreeMap::new();
    assert!(matches!(
        n.plan(&s, &t, 1, Some(r.clone()), &all, false),
        Plan::Keep
    ));
    given.0.store(2, Ordering::SeqCst);
    match n.plan(&s, &t, 1, Some(r.clone()), &all, false) {
        Plan::Start(started) => {
            assert_eq!((started.attempt, started.restarts), (2, 1));
            assert!(started.failed_attempt.is_none());
        }
        _ => panic!("attempt 2 should start here"),
    }
    // On a node that never ran it, attempt 2 first waits out its backoff.
    let fresh = match n.plan(&s, &t, 1, None, &all, false) {
        Plan::Record(w) => w,
        _ => panic!("a retry's fresh record should wait"),
    };
    assert_eq!((fresh.attempt, fresh.restarts), (2, 1));
    assert!(fresh.restart_at_ms > now_ms());
    assert!(matches!(
        n.plan(&s, &t, 1, Some(fresh), &all, false),
        Plan::Keep
    ));
    // The third attempt is the last of `retries: 2`.
    r.attempt = 3;
    n.job_exited(&mut r, &s.services["web"]);
    assert_eq!(r.state, ReplicaState::Failed);
    assert_eq!(r.message, "gave up after 3 attempt(s): exited with code 3");
    assert!(r.failed_attempt.is_none());
}

/// A job task whose start failed ran no attempt: it starts again after its
/// backoff on its own, instead of waiting for a retry the leader never gives.
#[test]
fn a_job_task_whose_start_failed_starts_again_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path());
    let text = "version: v1\ndeployment: d\nservices:\n  web:\n    rtype: job\n    image: { name: demo }\n";
    let s = zlayer_spec::parse("t.yaml", text).expect("valid spec");
    let t = template(&s);
    let mut r = Replica::new("d", "web", 1, &t.revision);
    r.attempt = 1;
    r.state = ReplicaState::Exited;
    r.message = "start failed: image demo is not on this node".into();
    r.restart_at_ms = now_ms().saturating_sub(1);
    assert!(!r.succeeded());
    match n.plan(&s, &t, 1, Some(r), &BTreeMap::new(), false) {
        Plan::Start(again) => assert_eq!(again.attempt, 1, "no attempt was used"),
        _ => panic!("the task should start again"),
    }
}
