//! Reading a container's cgroup: usage for metrics and the OOM-kill counter
//! that tells an OOM kill from a plain SIGKILL. Handles cgroup v1 (including
//! the hybrid layout) and pure cgroup v2.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// libcontainer manages hybrid hosts with its v1 manager, so hybrid counts as v1.
    pub fn detect() -> CgroupVersion {
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CgroupStats {
    pub cpu_usage_ns: u64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    /// The most it held at once; 0 where the kernel keeps no peak.
    pub memory_peak_bytes: u64,
    pub oom_kills: u64,
    pub pids: u64,
}

fn controller_dir(version: CgroupVersion, controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match version {
        CgroupVersion::V2 => Path::new(ROOT).join(rel),
        CgroupVersion::V1 => Path::new(ROOT).join(controller).join(rel),
    }
}

fn read_u64(p: PathBuf) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn keyed(p: PathBuf, key: &str) -> Option<u64> {
    let text = fs::read_to_string(p).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
}

impl CgroupStats {
    /// Usage of the cgroup at `path` (relative to each hierarchy root).
    pub fn read(path: &str) -> CgroupStats {
        let v = CgroupVersion::detect();
        match v {
            CgroupVersion::V1 => CgroupStats {
                cpu_usage_ns: read_u64(controller_dir(v, "cpuacct", path).join("cpuacct.usage"))
                    .unwrap_or(0),
                memory_bytes: read_u64(
                    controller_dir(v, "memory", path).join("memory.usage_in_bytes"),
                )
                .unwrap_or(0),
                memory_limit_bytes: read_u64(
                    controller_dir(v, "memory", path).join("memory.limit_in_bytes"),
                )
                .filter(|l| *l < (1 << 62)),
                memory_peak_bytes: read_u64(
                    controller_dir(v, "memory", path).join("memory.max_usage_in_bytes"),
                )
                .unwrap_or(0),
                oom_kills: keyed(
                    controller_dir(v, "memory", path).join("memory.oom_control"),
                    "oom_kill ",
                )
                .unwrap_or(0),
                pids: read_u64(controller_dir(v, "pids", path).join("pids.current")).unwrap_or(0),
            },
            CgroupVersion::V2 => {
                let d = controller_dir(v, "", path);
                CgroupStats {
                    cpu_usage_ns: keyed(d.join("cpu.stat"), "usage_usec ").unwrap_or(0) * 1000,
                    memory_bytes: read_u64(d.join("memory.current")).unwrap_or(0),
                    memory_limit_bytes: read_u64(d.join("memory.max")),
                    memory_peak_bytes: read_u64(d.join("memory.peak")).unwrap_or(0),
                    oom_kills: keyed(d.join("memory.events"), "oom_kill ").unwrap_or(0),
                    pids: read_u64(d.join("pids.current")).unwrap_or(0),
                }
            }
        }
    }
}

/// Every cgroup directory zlayer may have created for `path`, deepest first
/// (libcontainer's delete leaves some behind; see shared/peers.md).
pub(crate) fn leftover_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let mut out = vec![
        Path::new(ROOT).join(rel),
        Path::new(ROOT).join("unified").join(rel),
    ];
    if let Ok(entries) = fs::read_dir(ROOT) {
        for e in entries.flatten() {
            out.push(e.path().join(rel));
        }
    }
    out
}

/// Removes empty cgroup directories left for `path`. A directory that
/// still holds a process is not empty, so this never removes a live one.
pub fn remove_leftovers(path: &str) {
    for d in leftover_dirs(path) {
        let _ = fs::remove_dir(&d);
    }
}

impl crate::layout::Usage {
    /// What the container whose cgroup is at `path` used, its network
    /// counted from the host end's `statistics` directory `net`.
    pub fn read(path: &str, net: Option<&Path>) -> crate::layout::Usage {
        let stats = CgroupStats::read(path);
        let counter = |name: &str| net.and_then(|d| read_u64(d.join(name))).unwrap_or(0);
        crate::layout::Usage {
            cpu_ns: stats.cpu_usage_ns,
            memory_peak_bytes: stats.memory_peak_bytes,
            net_rx_bytes: counter("tx_bytes"),
            net_tx_bytes: counter("rx_bytes"),
        }
    }
}
