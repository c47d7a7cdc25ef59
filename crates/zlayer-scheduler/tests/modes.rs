//! Placement outcomes on small clusters: the modes, labels, GPUs, pending
//! reasons, node loss and draining.

use std::collections::{BTreeMap, HashMap, HashSet};

use zlayer_model::*;
use zlayer_scheduler::*;

fn node(id: &str, cpu: u64, gpus: u32, labels: &[(&str, &str)]) -> Node {
    let capacity = Resources {
        cpu_milli: cpu * 1000,
        memory_bytes: 16 << 30,
        gpus,
    };
    Node::ready(id, capacity, labels)
}

fn workload(id: &str, replicas: u32, cpu_milli: u64, mode: NodeMode) -> Workload {
    Workload {
        id: id.into(),
        replicas,
        request: Resources {
            cpu_milli,
            memory_bytes: 256 << 20,
            gpus: 0,
        },
        mode,
        labels: BTreeMap::new(),
        prefer_labels: BTreeMap::new(),
        pinned_node: None,
        retries: BTreeMap::new(),
        max_running: None,
        finished: Default::default(),
    }
}

fn run(nodes: &[Node], workloads: &[Workload], existing: &[Assignment]) -> Plan {
    plan(
        nodes,
        workloads,
        existing,
        1,
        Strategy::BinPack,
        Weights::default(),
    )
}

fn per_node(p: &Plan, workload: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for a in p
        .keep
        .iter()
        .chain(&p.place)
        .filter(|a| a.workload == workload)
    {
        *m.entry(a.node.clone()).or_insert(0) += 1;
    }
    m
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("a", 4, 0, &[]),
        node("b", 4, 0, &[]),
        node("c", 4, 0, &[]),
    ]
}

#[test]
fn shared_replicas_of_one_service_spread_over_nodes_when_they_fit() {
    let p = run(
        &three_nodes(),
        &[workload("d/web", 3, 500, NodeMode::Shared)],
        &[],
    );
    assert_eq!(p.place.len(), 3);
    assert_eq!(
        per_node(&p, "d/web").len(),
        3,
        "anti-affinity spreads one service: {:?}",
        p.place
    );
}

#[test]
fn shared_never_overcommits() {
    let p = run(
        &three_nodes(),
        &[workload("d/big", 7, 2000, NodeMode::Shared)],
        &[],
    );
    assert_eq!(
        p.place.len(),
        6,
        "3 nodes x 4 CPUs hold 6 replicas of 2 CPUs"
    );
    assert_eq!(p.pending.len(), 1);
    assert_eq!(
        p.pending[0].reason.to_string(),
        "no node with 2 free CPUs (3 nodes: 3 short of CPU)"
    );
}

#[test]
fn dedicated_puts_at_most_one_replica_per_node() {
    let p = run(
        &three_nodes(),
        &[workload("d/db", 4, 100, NodeMode::Dedicated)],
        &[],
    );
    assert_eq!(p.place.len(), 3);
    assert!(per_node(&p, "d/db").values().all(|&n| n == 1));
    assert_eq!(
        p.pending[0].reason.to_string(),
        "no node with no replica of this service yet (dedicated) (3 nodes: 3 already running one)"
    );
}

#[test]
fn exclusive_gets_empty_nodes_and_keeps_them() {
    let ws = [
        workload("d/train", 2, 100, NodeMode::Exclusive),
        workload("d/web", 4, 100, NodeMode::Shared),
    ];
    let p = run(&three_nodes(), &ws, &[]);
    let train: HashSet<String> = per_node(&p, "d/train").into_keys().collect();
    let web: HashSet<String> = per_node(&p, "d/web").into_keys().collect();
    assert_eq!(train.len(), 2);
    assert!(
        train.is_disjoint(&web),
        "nothing shares an exclusive node: {:?}",
        p.place
    );
    assert_eq!(p.place.len(), 6);
    // A third exclusive replica finds no empty node and waits; nothing is evicted for it.
    let mut more = ws.to_vec();
    more[0].replicas = 3;
    let p2 = run(&three_nodes(), &more, &p.place);
    assert_eq!(p2.keep.len(), 6);
    assert_eq!(p2.pending.len(), 1);
    assert_eq!(
        p2.pending[0].reason.to_string(),
        "no node with nothing else running (exclusive) (3 nodes: 2 already running one, 1 running other work)"
    );
}

#[test]
fn gpus_and_labels_filter_and_the_reason_names_both() {
    let nodes = [
        node("cpu1", 8, 0, &[("gpu", "false")]),
        node("cpu2", 8, 0, &[("gpu", "false")]),
        node("gpu1", 8, 1, &[("gpu", "true")]),
    ];
    let mut asr = workload("d/asr", 1, 1000, NodeMode::Shared);
    asr.request.gpus = 2;
    asr.labels.insert("gpu".into(), "true".into());
    let p = run(&nodes, &[asr.clone()], &[]);
    assert!(p.place.is_empty());
    assert_eq!(
        p.pending[0].reason.to_string(),
        "no node with label gpu=true and 2 free GPUs (3 nodes: 2 without label gpu=true, 1 short of GPUs)"
    );
    asr.request.gpus = 1;
    asr.replicas = 2;
    let p = run(&nodes, &[asr], &[]);
    assert_eq!(p.place.len(), 1);
    assert_eq!(p.place[0].node, "gpu1");
    assert_eq!(p.pending.len(), 1, "one GPU is never given twice");
}

#[test]
fn preferred_labels_win_among_feasible_nodes() {
    let nodes = [
        node("a", 4, 0, &[("zone", "a")]),
        node("b", 4, 0, &[("zone", "b")]),
    ];
    let mut w = workload("d/web", 1, 100, NodeMode::Shared);
    w.prefer_labels.insert("zone".into(), "b".into());
    assert_eq!(run(&nodes, &[w], &[]).place[0].node, "b");
}

#[test]
fn a_lost_node_s_replicas_move_with_new_generations_and_healthy_ones_stay() {
    let mut nodes = three_nodes();
    let ws = [workload("d/web", 3, 500, NodeMode::Shared)];
    let first = run(&nodes, &ws, &[]);
    let lost = first.place[0].node.clone();
    nodes.iter_mut().find(|n| n.id == lost).unwrap().state = NodeState::Down;
    let p = plan(
        &nodes,
        &ws,
        &first.place,
        100,
        Strategy::BinPack,
        Weights::default(),
    );
    assert_eq!(p.keep.len(), 2);
    assert_eq!(p.stop.len(), 1);
    assert_eq!(p.stop[0].1, StopReason::NodeLost);
    assert_eq!(p.place.len(), 1);
    assert_ne!(p.place[0].node, lost);
    assert_eq!(p.place[0].replica, first.place[0].replica);
    assert_eq!(p.place[0].generation, 100);
}

#[test]
fn draining_moves_replicas_and_takes_no_new_ones() {
    let mut nodes = three_nodes();
    let ws = [workload("d/web", 3, 500, NodeMode::Dedicated)];
    let first = run(&nodes, &ws, &[]);
    nodes[0].state = NodeState::Draining;
    let p = run(&nodes, &ws, &first.place);
    assert_eq!(
        p.stop
            .iter()
            .filter(|s| s.1 == StopReason::NodeDraining)
            .count(),
        1
    );
    assert_eq!(
        p.pending.len(),
        1,
        "2 ready nodes hold 2 dedicated replicas"
    );
    assert!(p.pending[0]
        .reason
        .to_string()
        .ends_with("(3 nodes: 1 draining, 2 already running one)"));
}

#[test]
fn scale_in_and_removed_services_stop_and_duplicates_keep_the_newest() {
    let nodes = three_nodes();
    let first = run(&nodes, &[workload("d/web", 3, 100, NodeMode::Shared)], &[]);
    let p = run(
        &nodes,
        &[workload("d/web", 1, 100, NodeMode::Shared)],
        &first.place,
    );
    assert_eq!(p.keep.len(), 1);
    assert_eq!(p.stop.len(), 2);
    assert!(p.stop.iter().all(|s| s.1 == StopReason::Unwanted));
    let mut dup = first.place[0].clone();
    dup.generation += 10;
    dup.node = "c".into();
    let existing = vec![first.place[0].clone(), dup.clone()];
    let p = run(
        &nodes,
        &[workload("d/web", 1, 100, NodeMode::Shared)],
        &existing,
    );
    assert_eq!(p.keep, vec![dup]);
    assert_eq!(p.stop[0].1, StopReason::Superseded);
}

#[test]
fn a_named_volume_pins_its_service_to_its_node() {
    let mut w = workload("d/ledger", 1, 100, NodeMode::Shared);
    w.pinned_node = Some("c".into());
    assert_eq!(run(&three_nodes(), &[w.clone()], &[]).place[0].node, "c");
    let mut nodes = three_nodes();
    nodes[2].state = NodeState::Down;
    assert_eq!(
        run(&nodes, &[w], &[]).pending[0].reason.to_string(),
        "no node with its volume (node c) (3 nodes: 1 down, 2 not holding its volume)"
    );
}

/// A job task whose attempt failed moves to its next attempt on a node it
/// has not failed on; with no other node that fits, it runs where it was.
#[test]
fn a_failed_job_task_retries_on_another_node_where_one_fits() {
    let nodes = three_nodes();
    let mut w = workload("d/batch", 2, 100, NodeMode::Shared);
    let first = run(&nodes, &[w.clone()], &[]);
    let failed = first.place.iter().find(|a| a.replica == 1).unwrap().clone();
    w.retries.insert(
        1,
        TaskRetry {
            attempt: 2,
            avoid: vec![failed.node.clone()],
            failed_generation: failed.generation,
        },
    );
    let p = plan(
        &nodes,
        &[w.clone()],
        &first.place,
        50,
        Strategy::BinPack,
        Weights::default(),
    );
    assert_eq!(p.stop.len(), 1);
    assert_eq!((p.stop[0].0.replica, p.stop[0].1), (1, StopReason::Retry));
    assert_eq!(p.place.len(), 1, "only the failed task moves");
    let moved = &p.place[0];
    assert_eq!((moved.replica, moved.attempt, moved.generation), (1, 2, 50));
    assert_ne!(
        moved.node, failed.node,
        "bin-packing alone would keep it there"
    );
    // Once moved, the task stays.
    let mut now = first.place.clone();
    now.retain(|a| a.replica != 1);
    now.push(moved.clone());
    assert!(run(&nodes, &[w.clone()], &now).place.is_empty());
    // A single node runs the retry itself.
    let one = [node("a", 4, 0, &[])];
    let first = run(&one, &[w.clone()], &[]);
    let failed = first.place.iter().find(|a| a.replica == 1).unwrap();
    w.retries.get_mut(&1).unwrap().failed_generation = failed.generation;
    w.retries.get_mut(&1).unwrap().avoid = vec!["a".into()];
    let p = plan(
        &one,
        &[w],
        &first.place,
        60,
        Strategy::BinPack,
        Weights::default(),
    );
    assert_eq!(p.place.len(), 1);
    assert_eq!((p.place[0].node.as_str(), p.place[0].attempt), ("a", 2));
}

/// A job's `parallelism` caps its unfinished tasks placed at once; a
/// finished task makes room, and is never placed again, even off a lost node.
#[test]
fn parallelism_caps_a_job_s_unfinished_tasks_and_finished_ones_stay_done() {
    let mut nodes = three_nodes();
    let mut w = workload("d/crunch", 5, 100, NodeMode::Shared);
    w.max_running = Some(2);
    let first = run(&nodes, &[w.clone()], &[]);
    let placed: Vec<u32> = first.place.iter().map(|a| a.replica).collect();
    assert_eq!(placed, [1, 2]);
    let waiting: Vec<u32> = first.waiting.iter().map(|t| t.replica).collect();
    assert_eq!(waiting, [3, 4, 5]);
    assert_eq!(first.waiting[0].parallelism, 2);
    w.finished.insert(1);
    let next = plan(
        &nodes,
        &[w.clone()],
        &first.place,
        10,
        Strategy::BinPack,
        Weights::default(),
    );
    assert_eq!(
        next.place.iter().map(|a| a.replica).collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(next.waiting.len(), 2);
    // Task 1's node goes down: the finished task is not run again.
    let node1 = first.place[0].node.clone();
    nodes.iter_mut().find(|n| n.id == node1).unwrap().state = NodeState::Down;
    let mut existing = first.place.clone();
    existing.extend(next.place.clone());
    let after = plan(
        &nodes,
        &[w],
        &existing,
        20,
        Strategy::BinPack,
        Weights::default(),
    );
    assert!(
        after.place.iter().all(|a| a.replica != 1),
        "{:?}",
        after.place
    );
}
