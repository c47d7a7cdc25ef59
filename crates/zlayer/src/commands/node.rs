//! `zlayer node …`: starting a node in the foreground (`zlayer-node` runs
//! it), listing, draining and removing nodes, and starting one for `up`.

use std::path::Path;

use anyhow::{Context, Result};
use zlayer_api::{ClusterReply, ClusterRequest, NodeView};

use crate::cli::{AgentArgs, Format, MemberArgs, NodeCommand, Placement};
use crate::output::render;

pub fn node(
    data: &Path,
    gpu_root: &Path,
    registries: &zlayer_image::RegistryOptions,
    cmd: NodeCommand,
) -> Result<i32> {
    match cmd {
        NodeCommand::Start { agent, member } => start(data, gpu_root, registries, agent, member),
        NodeCommand::Stop => {
            super::block_on(super::client(data).shutdown())?;
            println!("node stopped (containers keep running)");
            Ok(0)
        }
        NodeCommand::Ls { output } => ls(data, output),
        NodeCommand::Drain { name } => {
            super::cluster(data, ClusterRequest::Drain(name.clone()))?;
            println!("node {name} draining: its replicas move, nothing new is placed on it");
            Ok(0)
        }
        NodeCommand::Uncordon { name } => {
            super::cluster(data, ClusterRequest::Uncordon(name.clone()))?;
            println!("node {name} ready");
            Ok(0)
        }
        NodeCommand::Rm { name } => {
            super::cluster(data, ClusterRequest::Remove(name.clone()))?;
            println!("node {name} removed from the cluster");
            Ok(0)
        }
    }
}

/// The control-plane settings `node start` and `join` share.
pub fn control_config(
    data: &Path,
    gpu_root: &Path,
    m: &MemberArgs,
) -> zlayer_control::ControlConfig {
    let (cpu_milli, memory_bytes, gpus) = zlayer_agent::facts::capacity(gpu_root);
    zlayer_control::ControlConfig {
        dir: data.join("cluster"),
        advertise: m.advertise,
        port: m.port,
        name: m.name.clone().unwrap_or_else(host_name),
        capacity: zlayer_model::Resources {
            cpu_milli,
            memory_bytes,
            gpus,
        },
        labels: m.labels.iter().cloned().collect(),
        liveness: zlayer_control::Liveness {
            down_after: m.down_after,
            ..Default::default()
        },
        timing: zlayer_control::Timing {
            snapshot_every: m.raft_snapshot_every,
            ..Default::default()
        },
        strategy: match m.placement {
            Placement::Spread => zlayer_scheduler::Strategy::Spread,
            Placement::BinPack => zlayer_scheduler::Strategy::BinPack,
        },
        renew_before: m.cert_renew_before,
        probe_every: m.link_probe_every,
        network: Some(m.cluster_cidr.clone()),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}

fn start(
    data: &Path,
    gpu_root: &Path,
    registries: &zlayer_image::RegistryOptions,
    agent: AgentArgs,
    member: MemberArgs,
) -> Result<i32> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let log_limit = agent.log_limit();
    let cfg = zlayer_node::NodeConfig {
        log_limit,
        port_max_connections: agent.port_max_connections,
        control: control_config(data, gpu_root, &member),
        data_dir: data.to_path_buf(),
        exe: std::env::current_exe().context("locating the zlayer binary")?,
        bridge: agent.bridge,
        cidr: agent.cidr.parse()?,
        registries: registries.clone(),
        gpu_root: gpu_root.to_path_buf(),
        metrics_addr: Some(agent.metrics_addr.parse().context("--metrics-addr")?),
        allow_host_paths: agent.allow_host_paths,
        wg_port: member.wg_port,
        wg_device: member.wg_device.only(),
        wg_threads: member.wg_threads.into(),
        ingress: agent.ingress.config(),
        acme: agent.ingress.acme(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(zlayer_node::run(cfg))
        .map_err(anyhow::Error::msg)?;
    Ok(0)
}

fn ls(data: &Path, output: Format) -> Result<i32> {
    let ClusterReply::Nodes(nodes) = super::cluster(data, ClusterRequest::Nodes)? else {
        anyhow::bail!("the node answered `node ls` with something else");
    };
    let gib = |b: u64| format!("{:.1}G", b as f64 / (1u64 << 30) as f64);
    render(
        output,
        &nodes,
        &[
            "ID",
            "NAME",
            "ADDRESS",
            "ROLE",
            "KIND",
            "STATE",
            "CPU FREE/TOTAL",
            "MEM FREE/TOTAL",
            "GPU FREE/TOTAL",
            "REPLICAS",
            "SUBNET",
            "OVERLAY",
            "LABELS",
        ],
        |n: &NodeView| {
            vec![
                format!("{:016x}", n.id),
                n.name.clone(),
                n.addr.clone(),
                n.role.clone(),
                n.kind.clone(),
                n.state.clone(),
                format!(
                    "{:.1}/{:.1}",
                    n.cpu_milli.free as f64 / 1000.0,
                    n.cpu_milli.total as f64 / 1000.0
                ),
                format!("{}/{}", gib(n.memory_bytes.free), gib(n.memory_bytes.total)),
                format!("{}/{}", n.gpus.free, n.gpus.total),
                n.replicas.to_string(),
                if n.subnet.is_empty() {
                    "-".into()
                } else {
                    n.subnet.clone()
                },
                if n.behind_nat {
                    format!("{} (behind NAT)", n.overlay)
                } else {
                    n.overlay.clone()
                },
                n.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        },
    )?;
    Ok(0)
}

/// Starts `zlayer node start` in the background when no node answers.
pub fn ensure_node(data: &Path, registries: &zlayer_image::RegistryOptions) -> Result<()> {
    spawn_node(data, registries, &[])
}

/// Starts the node in the background with `args` after `node start`, and
/// waits until it answers (unless one already does).
pub fn spawn_node(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    args: &[String],
) -> Result<()> {
    let client = super::local_client(data);
    if super::block_on(client.ping()) {
        return Ok(());
    }
    std::fs::create_dir_all(data)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("node.log"))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--data-dir")
        .arg(data)
        .args(["node", "start"])
        .args(args)
        .env("ZLAYER_INSECURE_REGISTRIES", registries.insecure.join(","))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the node must not share our session (Ctrl-C).
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the node")?;
    for _ in 0..400 {
        if super::block_on(client.ping()) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(data.join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            anyhow::bail!(
                "the node exited ({status}); last lines of {}:\n{}",
                data.join("node.log").display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    anyhow::bail!(
        "the node did not answer within 20s; see {}",
        data.join("node.log").display()
    )
}
