//! Starting and stopping one replica: image snapshot, network namespace and
//! veth, resolv.conf/hosts, the shim; and tearing all of it down again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zlayer_image::{ImageStore, Snapshot};
use zlayer_runtime::secrets::SecretValues;
use zlayer_runtime::{ContainerDir, Limits, MountSpec, Status};
use zlayer_spec::{Service, StorageType};

use crate::launch::{container_config, LaunchPaths, Overrides};

pub struct NodePaths {
    pub data_dir: PathBuf,
    pub exe: PathBuf,
    pub bridge: String,
    pub cidr: zlayer_net::Cidr,
    pub cluster_cidr: Option<zlayer_net::Cidr>,
    pub host_paths: crate::host_paths::HostPaths,
    /// How much of each replica's output is kept.
    pub log_limit: zlayer_runtime::LogLimit,
    /// Where each container's secrets tmpfs goes (never under `data_dir`).
    pub secrets_root: PathBuf,
}

impl NodePaths {
    pub fn netns(&self, cid: &str) -> PathBuf {
        self.data_dir.join("netns").join(cid)
    }
    pub fn log_path(&self, deployment: &str, service: &str, index: u32) -> PathBuf {
        self.data_dir
            .join("logs")
            .join(deployment)
            .join(format!("{service}-{index}.log"))
    }
}

fn overrides(
    svc: &Service,
    env: &[(String, String)],
    volumes: &BTreeMap<String, PathBuf>,
    host_paths: &crate::host_paths::HostPaths,
) -> Result<Overrides, String> {
    let mut mounts = Vec::new();
    for s in &svc.storage {
        mounts.push(match s.kind {
            StorageType::Tmpfs => MountSpec::Tmpfs {
                target: s.target.clone(),
                size_bytes: s.size.map(|x| x.0),
            },
            // Checked again here: the spec may have been admitted on another node.
            StorageType::Bind => MountSpec::Bind {
                source: host_paths.check(s.source.as_deref().unwrap_or_default())?,
                target: s.target.clone(),
                readonly: s.readonly,
            },
            StorageType::Named => {
                let name = s.name.clone().unwrap_or_default();
                let Some(dir) = volumes.get(&name) else {
                    return Err(format!(
                        "named volume `{name}` has no directory on this node"
                    ));
                };
                MountSpec::Bind {
                    source: dir.clone(),
                    target: s.target.clone(),
                    readonly: s.readonly,
                }
            }
        });
    }
    let cmd = svc.command.clone().unwrap_or_default();
    Ok(Overrides {
        entrypoint: cmd.entrypoint,
        args: cmd.args,
        workdir: cmd.workdir,
        env: env.to_vec(),
        user: svc.user.clone(),
        limits: Limits {
            cpu: svc.resources.cpu,
            memory_bytes: svc.resources.memory.map(|m| m.0),
            pids: svc.resources.pids,
        },
        mounts,
        gpus: Vec::new(),
    })
}

/// Writes each file (mode 0444, root's) under `dir` and returns its
/// read-only bind mount.
fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<MountSpec>, String> {
    use std::os::unix::fs::PermissionsExt;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut mounts = Vec::new();
    for (i, (target, content)) in files.iter().enumerate() {
        let path = dir.join(i.to_string());
        std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        mounts.push(MountSpec::Bind {
            source: path,
            target: target.clone(),
            readonly: true,
        });
    }
    Ok(mounts)
}

/// Everything a started replica holds, for the record.
pub struct Started {
    pub container_id: String,
    pub ip: std::net::Ipv4Addr,
}

/// One replica to start: which slot of which service, with what.
pub struct ReplicaRequest<'a> {
    pub deployment: &'a str,
    pub service: &'a str,
    pub svc: &'a Service,
    pub index: u32,
    pub env: &'a [(String, String)],
    pub ip: std::net::Ipv4Addr,
    pub dns_search: &'a str,
    /// The node's GPUs (by index) this replica holds, and where they are.
    pub gpus: &'a [u32],
    pub inventory: &'a zlayer_runtime::GpuInventory,
    /// The values of the secrets it uses.
    pub secrets: &'a SecretValues,
    /// Read-only files: (path in the container, content).
    pub files: &'a [(String, Vec<u8>)],
    /// The host directory of each named volume, by name.
    pub volumes: &'a BTreeMap<String, PathBuf>,
}

/// Starts a replica; on failure everything it had acquired is released.
pub async fn start(
    p: &NodePaths,
    images: &ImageStore,
    req: &ReplicaRequest<'_>,
) -> Result<Started, String> {
    let cid = format!(
        "{}-{}-{}-{}",
        req.deployment,
        req.service,
        req.index,
        crate::ids::short_random()
    );
    let result = start_inner(p, images, req, &cid).await;
    if result.is_err() {
        cleanup(p, images, &cid).await;
    }
    result.map(|()| Started {
        container_id: cid,
        ip: req.ip,
    })
}

async fn start_inner(
    p: &NodePaths,
    images: &ImageStore,
    req: &ReplicaRequest<'_>,
    cid: &str,
) -> Result<(), String> {
    let ReplicaRequest {
        deployment,
        service,
        svc,
        index,
        env,
        ip,
        dns_search,
        gpus,
        inventory,
        secrets,
        files,
        volumes,
    } = *req;
    let t0 = std::time::Instant::now();
    let stage = |name: &str| {
        tracing::debug!(
            container = cid,
            stage = name,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "start stage done"
        )
    };
    let resolved = images.resolve(&svc.image.name).map_err(|e| e.to_string())?;
    stage("image");
    let netns = p.netns(cid);
    zlayer_net::create_netns(&netns).map_err(|e| e.to_string())?;
    stage("netns");
    zlayer_net::attach(&p.bridge, &p.cidr, &netns, cid, ip)
        .await
        .map_err(|e| e.to_string())?;
    stage("network");
    let snap = Snapshot::prepare(images, cid, &resolved).map_err(|e| e.to_string())?;
    let dir = ContainerDir::new(&p.data_dir, cid);
    let etc = dir.dir().join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
    let hostname = format!("{service}-{index}");
    std::fs::write(
        etc.join("resolv.conf"),
        format!(
            "nameserver {}\nsearch {dns_search}\noptions ndots:1\n",
            p.cidr.gateway()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        etc.join("hosts"),
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{ip}\t{hostname}\n"),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(etc.join("hostname"), format!("{hostname}\n")).map_err(|e| e.to_string())?;
    let mut o = overrides(svc, env, volumes, &p.host_paths)?;
    o.gpus = gpus.to_vec();
    o.mounts
        .extend(write_files(&dir.dir().join("files"), files)?);
    for f in ["resolv.conf", "hosts", "hostname"] {
        o.mounts.push(MountSpec::Bind {
            source: etc.join(f),
            target: format!("/etc/{f}"),
            readonly: false,
        });
    }
    let log = p.log_path(deployment, service, index);
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let mut cfg = container_config(
        &resolved.config,
        &o,
        LaunchPaths {
            id: cid.to_string(),
            rootfs: snap.rootfs,
            log_path: log,
            log_limit: p.log_limit,
            netns: Some(netns),
            hostname,
            gpus: inventory,
        },
    )
    .map_err(|e| e.to_string())?;
    if !secrets.is_empty() {
        let dir = zlayer_runtime::secrets::stage(&p.secrets_root, cid, secrets, cfg.uid, cfg.gid)
            .map_err(|e| format!("staging its secrets: {e}"))?;
        if !secrets.files.is_empty() {
            cfg.mounts.push(MountSpec::Bind {
                source: dir.join("files"),
                target: zlayer_runtime::secrets::SECRETS_TARGET.into(),
                readonly: true,
            });
        }
        cfg.secrets_dir = Some(dir);
    }
    stage("snapshot+files");
    let exe = p.exe.clone();
    tokio::task::spawn_blocking(move || zlayer_runtime::spawn_shim(&exe, &dir, &cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    stage("shim");
    Ok(())
}

/// Signal, wait `grace`, then SIGKILL; returns once the container has exited.
pub async fn stop(p: &NodePaths, cid: &str, signal: i32, grace: Duration) {
    let dir = ContainerDir::new(&p.data_dir, cid);
    if dir.signal(signal).is_ok() {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline
            && matches!(dir.status(), Status::Running { .. })
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if matches!(dir.status(), Status::Running { .. }) {
            let _ = dir.signal(libc::SIGKILL);
        }
    }
    for _ in 0..500 {
        if !matches!(dir.status(), Status::Running { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Releases everything a container held on this node; safe to repeat.
/// A container that is somehow still running is killed first: its files are
/// never removed from under it.
pub async fn cleanup(p: &NodePaths, images: &ImageStore, cid: &str) {
    // A replica that never started has no container (and an empty id).
    if !zlayer_runtime::is_plain_id(cid) {
        return;
    }
    if matches!(
        ContainerDir::new(&p.data_dir, cid).status(),
        Status::Running { .. }
    ) {
        tracing::warn!(container = cid, "still running at cleanup; killing it");
        stop(p, cid, libc::SIGKILL, Duration::ZERO).await;
    }
    let _ = zlayer_net::detach(&zlayer_net::host_ifname(cid)).await;
    let _ = zlayer_net::remove_netns(&p.netns(cid));
    let _ = Snapshot::remove(images, cid);
    zlayer_runtime::secrets::unstage(&p.secrets_root, cid);
    // The shim removes the cgroup as the container exits; one killed on its
    // way out (an agent stopped mid-exit, an OOM-killed shim) leaves it.
    zlayer_runtime::remove_cgroup_leftovers(&format!("/zlayer/{cid}"));
    let _ = ContainerDir::new(&p.data_dir, cid).remove();
}

/// Container directories that no replica record names: left by a node killed
/// between starting a shim and recording it. `run-*` belong to `zlayer run`
/// and `build-*` to `zlayer build` (each cleans up its own).
pub fn unrecorded(p: &NodePaths, recorded: &std::collections::HashSet<String>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(p.data_dir.join("containers")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| !id.starts_with("run-") && !id.starts_with("build-") && !recorded.contains(id))
        .collect()
}
