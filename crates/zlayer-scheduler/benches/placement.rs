//! Placements per second on a simulated cluster: 10,000 nodes and 1,000,000
//! replicas over a mix of services (shared web tiers, dedicated databases,
//! GPU services on labelled nodes, exclusive trainers). No I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zlayer_model::*;
use zlayer_scheduler::*;

const NODES: usize = 10_000;

fn nodes() -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            let gpu = i % 10 == 0;
            Node {
                id: format!("node-{i:05}"),
                capacity: Resources {
                    cpu_milli: 64_000,
                    memory_bytes: 256 << 30,
                    gpus: if gpu { 8 } else { 0 },
                },
                labels: BTreeMap::from([
                    ("zone".to_string(), format!("z{}", i % 4)),
                    ("gpu".to_string(), gpu.to_string()),
                ]),
                state: NodeState::Ready,
                health: NodeHealth {
                    reputation: 0.5 + (i % 50) as f64 / 100.0,
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// 1,000,000 replicas: 395 web services of 2,000 (0.25 CPU), 100 APIs of
/// 1,500 preferring a zone (0.5 CPU), 50 dedicated stores of 1,000 (1 CPU),
/// 50 GPU services of 80 (1 GPU, label gpu=true), 50 batch services of 100
/// (1 CPU) and 10 exclusive trainers of 100.
fn workloads() -> Vec<Workload> {
    let mk = |id: String, replicas, cpu_milli, gpus, mode| Workload {
        id,
        replicas,
        request: Resources {
            cpu_milli,
            memory_bytes: 256 << 20,
            gpus,
        },
        mode,
        labels: BTreeMap::new(),
        prefer_labels: BTreeMap::new(),
        pinned_node: None,
        retries: BTreeMap::new(),
        max_running: None,
        finished: Default::default(),
    };
    let mut ws = Vec::new();
    for i in 0..395 {
        ws.push(mk(format!("web/w{i}"), 2_000, 250, 0, NodeMode::Shared));
    }
    for i in 0..100 {
        let mut w = mk(format!("api/a{i}"), 1_500, 500, 0, NodeMode::Shared);
        w.prefer_labels.insert("zone".into(), format!("z{}", i % 4));
        ws.push(w);
    }
    for i in 0..50 {
        ws.push(mk(format!("db/s{i}"), 1_000, 1000, 0, NodeMode::Dedicated));
    }
    for i in 0..50 {
        let mut w = mk(format!("asr/g{i}"), 80, 2000, 1, NodeMode::Shared);
        w.labels.insert("gpu".into(), "true".into());
        ws.push(w);
    }
    for i in 0..50 {
        ws.push(mk(format!("batch/b{i}"), 100, 1000, 0, NodeMode::Shared));
    }
    for i in 0..10 {
        ws.push(mk(format!("train/t{i}"), 100, 8000, 0, NodeMode::Exclusive));
    }
    ws
}

fn bench(c: &mut Criterion) {
    let (nodes, ws) = (nodes(), workloads());
    let total: u64 = ws.iter().map(|w| w.replicas as u64).sum();
    assert_eq!(total, 1_000_000);
    let check = plan(&nodes, &ws, &[], 1, Strategy::BinPack, Weights::default());
    assert!(
        check.pending.is_empty(),
        "the simulated cluster holds every replica"
    );
    let mut g = c.benchmark_group("scheduler");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(total));
    g.bench_function("place 1M replicas on 10k nodes", |b| {
        b.iter(|| plan(&nodes, &ws, &[], 1, Strategy::BinPack, Weights::default()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
