//! zlayer-runtime owns the life of one container: the OCI runtime config
//! (hardening defaults, cgroup limits, mounts), creation and start through
//! `libcontainer` inside a shim process, exec, stop with grace, exit status
//! (OOM included), cgroup usage, re-adoption after an agent restart,
//! handing a container the host's GPUs, its rotated log files, and named
//! volumes on this node (a directory, or a size-limited ext4 image on a
//! loop device).
//!
//! It must not decide what should run, and it knows nothing of services,
//! images or networks beyond the paths it is handed.
//!
//! The shim is the `zlayer` binary re-executed (`zlayer shim DIR`). It holds
//! the container's init as its child, so containers outlive the agent and
//! their exit status is written to `DIR/exit.json` even when no agent runs.

mod cgroup;
mod cgroup_mount;
mod config;
mod error;
mod exec;
mod gpu;
mod layout;
mod logfile;
mod logread;
mod loopdev;
mod oci;
mod seccomp;
pub mod secrets;
mod shim;
mod trim;
mod user;
pub mod volume;

pub use cgroup::{remove_leftovers as remove_cgroup_leftovers, CgroupStats, CgroupVersion};
pub use config::{ContainerConfig, DeviceNode, Limits, MountSpec};
pub use error::RuntimeError;
pub use exec::{exec_in, run_foreground, run_logged};
pub use gpu::{Gpu, GpuError, GpuInventory};
pub use layout::{is_plain_id, random_suffix, ContainerDir, ExitInfo, Status, Usage};
pub use logfile::{log_files, LogLimit};
pub use logread::{read_log, Follower};
pub use shim::{shim_main, shim_wait, spawn_shim, ShimStarted};
pub use user::{resolve_user, resolve_user_in, UnknownUser};

/// Signal number for a name such as `SIGTERM` (used by stop sequences).
pub fn signal_number(name: &str) -> Option<i32> {
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}
