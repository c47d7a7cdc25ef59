//! What the caller asks for: a validated, runtime-neutral description of
//! one container. The shim turns it into an OCI config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Limits {
    /// CPU cores; becomes a CFS quota over a 100 ms period.
    pub cpu: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size_bytes: Option<u64>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub limits: Limits,
    /// Join this network namespace; `None` gives the container a fresh one with only loopback.
    pub netns: Option<PathBuf>,
    pub mounts: Vec<MountSpec>,
    /// Where the container's stdout and stderr go (appended).
    pub log_path: PathBuf,
    /// Cgroup path relative to each hierarchy's root, e.g. `/zlayer/<id>`.
    pub cgroup_path: String,
}
