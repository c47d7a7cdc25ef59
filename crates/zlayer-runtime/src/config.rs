//! What the caller asks for: a validated, runtime-neutral description of
//! one container. The shim turns it into an OCI config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::logfile::LogLimit;

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

/// A character device made inside the container and allowed by its device
/// cgroup (GPUs and their control nodes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Path inside the container, e.g. `/dev/nvidia0`.
    pub path: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
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
    /// Character devices beyond the default set (`/dev/null`, `/dev/zero`, ...).
    #[serde(default)]
    pub devices: Vec<DeviceNode>,
    /// Where the container's stdout and stderr go (appended).
    pub log_path: PathBuf,
    /// How much of it is kept (a shim-run container's log rotates).
    #[serde(default)]
    pub log_limit: LogLimit,
    /// Cgroup path relative to each hierarchy's root, e.g. `/zlayer/<id>`.
    pub cgroup_path: String,
    /// `$S:` env entries as (variable, secret): `env` keeps the reference,
    /// the process gets the value staged in `secrets_dir`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<(String, String)>,
    /// The container's secrets tmpfs (see `secrets`), if it has secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_dir: Option<PathBuf>,
    /// The `statistics` directory of the host's end of its network link
    /// (`/sys/class/net/IF/statistics`): metered at exit, seen from the
    /// container (what the host end sent, the container received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_counters: Option<PathBuf>,
}
