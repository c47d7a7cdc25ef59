//! Turns a [`ContainerConfig`] into an OCI runtime config with zlayer's
//! hardening defaults: Docker's default capability set, no-new-privileges,
//! the default seccomp profile, masked /proc paths, and a device allowlist.

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

/// The pids limit of a container whose spec sets none (Podman's default).
pub const DEFAULT_PIDS_LIMIT: i64 = 2048;

use crate::config::{ContainerConfig, DeviceNode, MountSpec};
use crate::error::RuntimeError;

/// Docker's default capabilities (so a root process can bind port 101).
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub(crate) fn build_spec(c: &ContainerConfig) -> Result<Spec, RuntimeError> {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    namespaces.push(match &c.netns {
        Some(p) => json!({"type": "network", "path": p}),
        None => json!({"type": "network"}),
    });
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for m in &c.mounts {
        mounts.push(match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => {
                let mut opts = vec!["rbind", "rprivate"];
                if *readonly {
                    opts.push("ro");
                }
                json!({"destination": target, "type": "bind", "source": source, "options": opts})
            }
            MountSpec::Tmpfs { target, size_bytes } => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "mode=1777".to_string(),
                ];
                if let Some(s) = size_bytes {
                    opts.push(format!("size={s}"));
                }
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
        });
    }
    let mut resources = json!({ "devices": device_rules(&c.devices) });
    if let Some(mem) = c.limits.memory_bytes {
        resources["memory"] = json!({ "limit": mem });
    }
    if let Some(cpu) = c.limits.cpu {
        let period: u64 = 100_000;
        resources["cpu"] =
            json!({ "quota": (cpu * period as f64).round() as i64, "period": period });
    }
    // A fork bomb in one container must not exhaust the host's pids.
    let pids = c.limits.pids.unwrap_or(DEFAULT_PIDS_LIMIT);
    resources["pids"] = json!({ "limit": pids });
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let spec = json!({
        "ociVersion": "1.0.2",
        "root": { "path": c.rootfs, "readonly": false },
        "hostname": c.hostname,
        "process": {
            "terminal": false,
            "user": { "uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids },
            "args": c.args,
            "env": c.env,
            "cwd": if c.cwd.is_empty() { "/" } else { c.cwd.as_str() },
            "noNewPrivileges": true,
            // Explicit, so a container never inherits the node's protection.
            "oomScoreAdj": 0,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
        },
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "devices": c.devices.iter().map(|d| json!({
                "type": "c", "path": d.path, "major": d.major, "minor": d.minor,
                "fileMode": d.file_mode, "uid": 0, "gid": 0,
            })).collect::<Vec<_>>(),
            "cgroupsPath": c.cgroup_path,
            "resources": resources,
            "sysctl": network_sysctls(c),
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            "seccomp": crate::seccomp::default_profile(),
        }
    });
    serde_json::from_value(spec).map_err(|e| RuntimeError::Spec(e.to_string()))
}

/// Deny every device, then allow the default set (null, zero, full, random,
/// urandom, tty, console, ptmx, pts) and the container's own extra devices.
fn device_rules(extra: &[DeviceNode]) -> Value {
    let allow = |t: &str, major: i64, minor: Option<i64>| json!({"allow": true, "type": t, "major": major, "minor": minor, "access": "rwm"});
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        allow("c", 1, Some(3)),
        allow("c", 1, Some(5)),
        allow("c", 1, Some(7)),
        allow("c", 1, Some(8)),
        allow("c", 1, Some(9)),
        allow("c", 5, Some(0)),
        allow("c", 5, Some(1)),
        allow("c", 5, Some(2)),
        allow("c", 136, None),
    ];
    rules.extend(extra.iter().map(|d| allow("c", d.major, Some(d.minor))));
    Value::Array(rules)
}

/// Docker's defaults for a container's own network namespace: any user may
/// bind low ports and ping. In the host's namespace (a build's `RUN` with
/// host networking) they would change the host, and the runtime refuses them.
fn network_sysctls(c: &ContainerConfig) -> serde_json::Value {
    if c.netns.as_deref().is_some_and(is_own_netns) {
        return json!({});
    }
    json!({ "net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647" })
}

fn is_own_netns(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
