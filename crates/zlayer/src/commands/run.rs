use std::path::Path;

use anyhow::{Context, Result};
use zlayer_agent::launch::Overrides;
use zlayer_runtime::Limits;

pub fn run(
    data: &Path,
    image: &str,
    env: Vec<String>,
    memory: Option<String>,
    cpus: Option<f64>,
    user: Option<String>,
    command: Vec<String>,
) -> Result<i32> {
    let memory_bytes = memory
        .map(|m| zlayer_spec::Size::parse(&m).map_err(anyhow::Error::msg))
        .transpose()?
        .map(|s| s.0);
    let env = env
        .into_iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .context("--env takes KEY=VALUE")
        })
        .collect::<Result<Vec<_>>>()?;
    let overrides = Overrides {
        args: (!command.is_empty()).then(|| command.clone()),
        entrypoint: (!command.is_empty()).then(Vec::new),
        env,
        user,
        limits: Limits {
            cpu: cpus,
            memory_bytes,
            pids: None,
        },
        ..Default::default()
    };
    let exit = zlayer_agent::oneoff::run_oneoff(data, image, &overrides, false)?;
    if exit.oom_killed {
        eprintln!("zlayer: container was OOM killed (memory limit reached)");
    }
    Ok(exit.status())
}
