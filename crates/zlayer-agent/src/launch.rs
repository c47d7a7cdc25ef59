//! Turning an image config plus spec overrides into a runtime request:
//! entrypoint/cmd, env, user, workdir and limits, the way Docker combines them.

use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;
use zlayer_runtime::{ContainerConfig, GpuInventory, Limits, MountSpec};

/// What the caller overrides on top of the image (from a spec or `zlayer run`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub entrypoint: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub limits: Limits,
    pub mounts: Vec<MountSpec>,
    /// Indexes of the node's GPUs the container gets.
    pub gpus: Vec<u32>,
}

pub struct LaunchPaths<'a> {
    pub id: String,
    pub rootfs: PathBuf,
    pub log_path: PathBuf,
    pub log_limit: zlayer_runtime::LogLimit,
    pub netns: Option<PathBuf>,
    pub hostname: String,
    pub gpus: &'a GpuInventory,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the image has no entrypoint or cmd and none was given; pass a command")]
    NoCommand,
    #[error(transparent)]
    UnknownUser(#[from] zlayer_runtime::UnknownUser),
    #[error(transparent)]
    Gpu(#[from] zlayer_runtime::GpuError),
}

pub fn container_config(
    image: &ImageConfiguration,
    o: &Overrides,
    p: LaunchPaths<'_>,
) -> Result<ContainerConfig, LaunchError> {
    let cfg = image.config().clone().unwrap_or_default();
    let entrypoint = o
        .entrypoint
        .clone()
        .or_else(|| cfg.entrypoint().clone())
        .unwrap_or_default();
    // Docker: a new entrypoint resets the image's cmd.
    let args = match (&o.args, &o.entrypoint) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.cmd().clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(args).collect();
    if argv.is_empty() {
        return Err(LaunchError::NoCommand);
    }
    let mut env: Vec<(String, String)> = cfg
        .env()
        .clone()
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    for (k, v) in &o.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env.push(("HOSTNAME".into(), p.hostname.clone()));
    let user = o
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let (uid, gid) = zlayer_runtime::resolve_user(&p.rootfs, &user)?;
    let mut c = ContainerConfig {
        id: p.id.clone(),
        rootfs: p.rootfs,
        args: argv,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: o
            .workdir
            .clone()
            .or_else(|| cfg.working_dir().clone())
            .unwrap_or_else(|| "/".into()),
        uid,
        gid,
        additional_gids: Vec::new(),
        hostname: p.hostname,
        limits: o.limits.clone(),
        netns: p.netns.clone(),
        mounts: o.mounts.clone(),
        devices: Vec::new(),
        log_path: p.log_path,
        log_limit: p.log_limit,
        cgroup_path: format!("/zlayer/{}", p.id),
        secret_env: o
            .env
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.strip_prefix("$S:")?.to_string())))
            .collect(),
        secrets_dir: None,
        net_counters: p.netns.as_ref().map(|_| {
            std::path::PathBuf::from(format!(
                "/sys/class/net/{}/statistics",
                zlayer_net::host_ifname(&p.id)
            ))
        }),
    };
    p.gpus.attach(&o.gpus, &mut c)?;
    Ok(c)
}
