//! `zlayer run`: a one-off container in the caller's process, with the
//! caller's stdio, a private network namespace holding only loopback (up), and
//! removal afterwards. It must run before any async runtime starts, since
//! libcontainer forks.

use std::path::Path;

use zlayer_image::{ImageStore, Snapshot};
use zlayer_runtime::{run_foreground, ContainerDir, ExitInfo};

use crate::launch::{container_config, LaunchPaths, Overrides};

#[derive(Debug, thiserror::Error)]
pub enum OneOffError {
    #[error(transparent)]
    Image(#[from] zlayer_image::ImageError),
    #[error(transparent)]
    Launch(#[from] crate::launch::LaunchError),
    #[error(transparent)]
    Runtime(#[from] zlayer_runtime::RuntimeError),
    #[error(transparent)]
    Net(#[from] zlayer_net::NetError),
}

pub fn run_oneoff(
    data_dir: &Path,
    gpus: &zlayer_runtime::GpuInventory,
    image: &str,
    overrides: &Overrides,
    keep: bool,
) -> Result<ExitInfo, OneOffError> {
    let store = ImageStore::open(data_dir.join("images"))?;
    let resolved = store.resolve(image)?;
    let id = format!("run-{}-{}", std::process::id(), crate::ids::short_random());
    let snap = Snapshot::prepare(&store, &id, &resolved)?;
    let dir = ContainerDir::new(data_dir, &id);
    let netns = data_dir.join("netns").join(&id);
    let result = (|| {
        zlayer_net::create_loopback_netns(&netns)?;
        let cfg = container_config(
            &resolved.config,
            overrides,
            LaunchPaths {
                id: id.clone(),
                rootfs: snap.rootfs.clone(),
                log_path: dir.log_path(),
                log_limit: zlayer_runtime::LogLimit::default(),
                netns: Some(netns.clone()),
                hostname: id.chars().take(12).collect(),
                gpus,
            },
        )?;
        Ok::<_, OneOffError>(run_foreground(&dir, &cfg)?)
    })();
    let _ = zlayer_net::remove_netns(&netns);
    if !keep {
        let _ = dir.remove();
        let _ = Snapshot::remove(&store, &id);
    }
    result
}
