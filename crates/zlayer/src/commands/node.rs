use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::NodeCommand;

pub fn node(
    data: &Path,
    gpu_root: &Path,
    registries: &zlayer_image::RegistryOptions,
    cmd: NodeCommand,
) -> Result<i32> {
    match cmd {
        NodeCommand::Start {
            metrics_addr,
            cidr,
            bridge,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let cfg = zlayer_agent::node::NodeConfig {
                data_dir: data.to_path_buf(),
                exe: std::env::current_exe().context("locating the zlayer binary")?,
                bridge,
                cidr: cidr.parse()?,
                metrics_addr: Some(metrics_addr.parse().context("--metrics-addr")?),
                registries: registries.clone(),
                gpu_root: gpu_root.to_path_buf(),
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let node = zlayer_agent::node::Node::open(&cfg).map_err(anyhow::Error::msg)?;
                node.run(cfg.metrics_addr).await.map_err(anyhow::Error::msg)
            })?;
            Ok(0)
        }
        NodeCommand::Stop => {
            super::block_on(super::client(data).shutdown())?;
            println!("node stopped (containers keep running)");
            Ok(0)
        }
    }
}

/// Starts `zlayer node start` in the background when no node answers.
pub fn ensure_node(data: &Path, registries: &zlayer_image::RegistryOptions) -> Result<()> {
    let client = super::client(data);
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
    for _ in 0..200 {
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
        "the node did not answer within 10s; see {}",
        data.join("node.log").display()
    )
}
