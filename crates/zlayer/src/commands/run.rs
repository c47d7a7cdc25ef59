//! `zlayer run`: a one-off container in the foreground.

use std::path::Path;

use anyhow::{Context, Result};
use zlayer_agent::launch::Overrides;
use zlayer_runtime::{GpuInventory, Limits};

use crate::cli::RunArgs;

pub fn run(data: &Path, gpu_root: &Path, args: RunArgs) -> Result<i32> {
    let memory_bytes = args
        .memory
        .map(|m| zlayer_spec::Size::parse(&m).map_err(anyhow::Error::msg))
        .transpose()
        .context("--memory")?
        .map(|s| s.0);
    let env = args
        .env
        .into_iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .context("--env takes KEY=VALUE")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut inventory = GpuInventory::default();
    let gpus = match args.gpus.unwrap_or(0) {
        0 => Vec::new(),
        n => {
            inventory = GpuInventory::discover(gpu_root);
            let have: Vec<u32> = inventory.gpus().iter().map(|g| g.index).collect();
            anyhow::ensure!(
                have.len() >= n as usize,
                "--gpus {n}: this host has {} NVIDIA GPU(s) under {}",
                have.len(),
                gpu_root.join("dev").display()
            );
            have.into_iter().take(n as usize).collect()
        }
    };
    let command = args.command;
    let overrides = Overrides {
        args: (!command.is_empty()).then(|| command.clone()),
        entrypoint: (!command.is_empty()).then(Vec::new),
        env,
        user: args.user,
        limits: Limits {
            cpu: args.cpus,
            memory_bytes,
            pids: args.pids,
        },
        gpus,
        ..Default::default()
    };
    let exit = zlayer_agent::oneoff::run_oneoff(data, &inventory, &args.image, &overrides, false)?;
    if exit.oom_killed {
        eprintln!("zlayer: container was OOM killed (memory limit reached)");
    }
    Ok(exit.status())
}
