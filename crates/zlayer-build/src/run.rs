//! `RUN`: the command runs in a container made by zlayer's own runtime, on
//! an overlay snapshot of the layers built so far. What it changed (the
//! snapshot's upper directory) becomes the step's layer.

use std::path::{Path, PathBuf};

use zlayer_image::{ImageStore, ResolvedImage, Snapshot};
use zlayer_runtime::{ContainerConfig, ContainerDir, Limits, MountSpec};

use crate::builder::{Builder, ImageState, Network, Outcome};
use crate::diff::{drop_runtime_mountpoints, write_upper};
use crate::dockerfile::Step;
use crate::error::{BuildError, IoAt};
use crate::layer::{LayerArchive, LayerWriter};
use crate::rootfs::LayerView;

const ID_PREFIX: &str = "build-";

pub(crate) fn run(
    b: &Builder,
    state: &mut ImageState,
    step: &Step,
    argv: Vec<String>,
) -> Result<Outcome, BuildError> {
    let what = format!(
        "RUN {argv:?} env={:?} user={} workdir={} network={:?}",
        state.run_env(),
        state.user(),
        state.workdir(),
        b.options.network
    );
    b.layer_step(
        state,
        step,
        &what,
        Box::new(move |state, b| execute(b, state, step, &argv)),
    )
}

/// Unmounts and removes the snapshot and container directory of one `RUN`,
/// however the step ends.
struct Cleanup<'a> {
    store: &'a ImageStore,
    dir: ContainerDir,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove();
        let _ = Snapshot::remove(self.store, &self.dir.id);
    }
}

fn execute(
    b: &Builder,
    state: &ImageState,
    step: &Step,
    argv: &[String],
) -> Result<LayerArchive, BuildError> {
    let id = format!(
        "{ID_PREFIX}{}-{}",
        std::process::id(),
        zlayer_runtime::random_suffix()
    );
    let layer_dirs = state.layer_dirs();
    let image = ResolvedImage {
        name: "build".into(),
        manifest_digest: "build".into(),
        config: Default::default(),
        layer_dirs: layer_dirs.clone(),
    };
    let snap = Snapshot::prepare_for_diff(&b.store, &id, &image)?;
    let cleanup = Cleanup {
        store: &b.store,
        dir: ContainerDir::new(&b.data_dir, &id),
    };
    let (uid, gid) = zlayer_runtime::resolve_user(&snap.rootfs, &state.user())
        .map_err(|e| b.step_error(step, format!("USER: {e}")))?;
    let mut mounts = Vec::new();
    let mut mountpoints = vec!["proc", "dev", "sys"];
    let mut netns_file = None;
    let netns = match b.options.network {
        Network::Host => {
            if Path::new("/etc/resolv.conf").is_file() {
                mounts.push(MountSpec::Bind {
                    source: PathBuf::from("/etc/resolv.conf"),
                    target: "/etc/resolv.conf".into(),
                    readonly: true,
                });
                mountpoints.push("etc/resolv.conf");
            }
            Some(PathBuf::from(format!(
                "/proc/{}/ns/net",
                std::process::id()
            )))
        }
        Network::None => {
            let path = b.data_dir.join("netns").join(&id);
            zlayer_net::create_loopback_netns(&path)
                .map_err(|e| b.step_error(step, format!("RUN network: {e}")))?;
            netns_file = Some(path.clone());
            Some(path)
        }
    };
    let cfg = ContainerConfig {
        id: id.clone(),
        rootfs: snap.rootfs.clone(),
        args: argv.to_vec(),
        env: state.run_env(),
        cwd: state.workdir(),
        uid,
        gid,
        additional_gids: Vec::new(),
        hostname: "zlayer-build".into(),
        limits: Limits::default(),
        netns,
        mounts,
        devices: Vec::new(),
        log_path: cleanup.dir.log_path(),
        // A quiet build's step output is read back whole (`run_logged` appends).
        log_limit: Default::default(),
        cgroup_path: format!("/zlayer/{id}"),
        secret_env: Vec::new(),
        secrets_dir: None,
        net_counters: None,
    };
    let exit = if b.options.quiet {
        zlayer_runtime::run_logged(&cleanup.dir, &cfg)
    } else {
        zlayer_runtime::run_foreground(&cleanup.dir, &cfg)
    }
    .map_err(|e| b.step_error(step, format!("could not start the command: {e}")));
    if let Some(path) = netns_file {
        let _ = zlayer_net::remove_netns(&path);
    }
    let exit = exit?;
    if exit.status() != 0 {
        let log = std::fs::read_to_string(cleanup.dir.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let output = if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = tail.into_iter().rev().collect();
            format!("; its last output:\n{}", lines.join("\n"))
        };
        return Err(b.step_error(
            step,
            format!("the command {argv:?} failed: {}{output}", exit.describe()),
        ));
    }
    let upper = snap.upper();
    drop_runtime_mountpoints(&upper, &LayerView { dirs: &layer_dirs }, &mountpoints);
    let mut w = LayerWriter::create(b.store.temp_path()?).at(b.store.root())?;
    write_upper(&upper, &mut w).at(&upper)?;
    let archive = w.finish().at(b.store.root())?;
    drop(cleanup);
    Ok(archive)
}

/// Snapshots of `RUN`s whose build process is gone (killed mid-build).
pub(crate) fn remove_stale_snapshots(store: &ImageStore, data_dir: &Path) {
    for id in Snapshot::list(store).unwrap_or_default() {
        let Some(pid) = id
            .strip_prefix(ID_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ContainerDir::new(data_dir, &id).remove();
            let _ = zlayer_net::remove_netns(&data_dir.join("netns").join(&id));
            let _ = Snapshot::remove(store, &id);
        }
    }
}
