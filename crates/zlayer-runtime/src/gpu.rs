//! NVIDIA GPUs on this host, and what a container needs to use some of them:
//! the GPUs' device nodes and the driver's control nodes, the driver's
//! user-space compute libraries and tools (bind-mounted read-only under
//! `/usr/local/nvidia`, the layout GKE and the CUDA images expect), and the
//! environment that points the image at them.
//!
//! Everything is found under a root directory, `/` on a real host. Tests on a
//! machine without a GPU point it at a fake driver tree instead.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::{ContainerConfig, DeviceNode, MountSpec};

/// Where the driver's files appear inside a container.
pub const CONTAINER_LIB_DIR: &str = "/usr/local/nvidia/lib64";
pub const CONTAINER_BIN_DIR: &str = "/usr/local/nvidia/bin";

/// The driver's libraries a compute (CUDA, NVML, OpenCL) workload loads.
const COMPUTE_LIBS: &[&str] = &[
    "libcuda",
    "libcudadebugger",
    "libnvidia-ml",
    "libnvidia-ptxjitcompiler",
    "libnvidia-nvvm",
    "libnvidia-cfg",
    "libnvidia-gpucomp",
    "libnvidia-allocator",
    "libnvidia-opencl",
];
const TOOLS: &[&str] = &["nvidia-smi", "nvidia-debugdump"];
const CONTROL_NODES: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];
const LIB_DIRS: &[&str] = &[
    "usr/local/nvidia/lib64",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/lib",
    "lib",
];
const BIN_DIRS: &[&str] = &["usr/local/nvidia/bin", "usr/bin", "bin"];

/// One GPU: its index (`/dev/nvidiaN`) and device node.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub index: u32,
    node: DeviceNode,
}

#[derive(Clone, Debug)]
struct DriverFile {
    host: PathBuf,
    target: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("GPU {0} does not exist on this node (it has {1})")]
    NoSuchGpu(u32, usize),
    #[error("the NVIDIA driver's control node {0} is missing; is the driver loaded?")]
    NoControlNode(String),
}

/// The GPUs and driver files found on this host.
#[derive(Clone, Debug, Default)]
pub struct GpuInventory {
    gpus: Vec<Gpu>,
    control: Vec<DeviceNode>,
    files: Vec<DriverFile>,
}

impl GpuInventory {
    /// Looks under `root` (normally `/`) for `/dev/nvidiaN` and the driver.
    pub fn discover(root: &Path) -> GpuInventory {
        let dev = root.join("dev");
        let mut gpus: Vec<Gpu> = fs::read_dir(&dev)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let index = name.strip_prefix("nvidia")?.parse().ok()?;
                Some(Gpu {
                    index,
                    node: device_node(&e.path(), &format!("/dev/{name}"))?,
                })
            })
            .collect();
        gpus.sort_by_key(|g| g.index);
        let control = CONTROL_NODES
            .iter()
            .filter_map(|n| device_node(&dev.join(n), &format!("/dev/{n}")))
            .collect();
        let mut files = Vec::new();
        for lib in COMPUTE_LIBS {
            files.extend(library_files(root, lib));
        }
        for tool in TOOLS {
            if let Some(host) = BIN_DIRS
                .iter()
                .map(|d| root.join(d).join(tool))
                .find(|p| p.is_file())
            {
                files.push(DriverFile {
                    host,
                    target: format!("{CONTAINER_BIN_DIR}/{tool}"),
                });
            }
        }
        GpuInventory {
            gpus,
            control,
            files,
        }
    }

    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// Gives `cfg` the GPUs `indices`: their device nodes and the control
    /// nodes (each allowed in the device cgroup), the driver's libraries and
    /// tools read-only, and `NVIDIA_VISIBLE_DEVICES`, `LD_LIBRARY_PATH` and
    /// `PATH` extended to find them.
    pub fn attach(&self, indices: &[u32], cfg: &mut ContainerConfig) -> Result<(), GpuError> {
        if indices.is_empty() {
            return Ok(());
        }
        if !self.control.iter().any(|d| d.path == "/dev/nvidiactl") {
            return Err(GpuError::NoControlNode("/dev/nvidiactl".into()));
        }
        for i in indices {
            let gpu = self
                .gpus
                .iter()
                .find(|g| g.index == *i)
                .ok_or(GpuError::NoSuchGpu(*i, self.gpus.len()))?;
            cfg.devices.push(gpu.node.clone());
        }
        cfg.devices.extend(self.control.iter().cloned());
        for f in &self.files {
            cfg.mounts.push(MountSpec::Bind {
                source: f.host.clone(),
                target: f.target.clone(),
                readonly: true,
            });
        }
        let visible: Vec<String> = indices.iter().map(u32::to_string).collect();
        set_env(&mut cfg.env, "NVIDIA_VISIBLE_DEVICES", &visible.join(","));
        append_path_env(&mut cfg.env, "LD_LIBRARY_PATH", CONTAINER_LIB_DIR);
        append_path_env(&mut cfg.env, "PATH", CONTAINER_BIN_DIR);
        Ok(())
    }
}

/// The character device at `host`, to be made at `path` in the container.
fn device_node(host: &Path, path: &str) -> Option<DeviceNode> {
    let meta = fs::metadata(host).ok()?;
    if !meta.file_type().is_char_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(DeviceNode {
        path: path.to_string(),
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        file_mode: meta.mode() & 0o777,
    })
}

/// Every name of `lib` (`libcuda.so`, `libcuda.so.1`, `libcuda.so.580.1`) in
/// the first library directory that has it, each mounted from the real file
/// it resolves to, so the container sees the same names as the host.
fn library_files(root: &Path, lib: &str) -> Vec<DriverFile> {
    let prefix = format!("{lib}.so");
    for dir in LIB_DIRS {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut found: Vec<DriverFile> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let versioned = name == prefix || name.starts_with(&format!("{prefix}."));
                let host = fs::canonicalize(e.path()).ok()?;
                (versioned && host.is_file()).then(|| DriverFile {
                    host,
                    target: format!("{CONTAINER_LIB_DIR}/{name}"),
                })
            })
            .collect();
        if !found.is_empty() {
            found.sort_by(|a, b| a.target.cmp(&b.target));
            return found;
        }
    }
    Vec::new()
}

fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    env.retain(|kv| kv.split_once('=').map(|(k, _)| k) != Some(key));
    env.push(format!("{key}={value}"));
}

fn append_path_env(env: &mut Vec<String>, key: &str, dir: &str) {
    let current = env
        .iter()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
        .to_string();
    if current.split(':').any(|d| d == dir) {
        return;
    }
    let joined = if current.is_empty() {
        dir.to_string()
    } else {
        format!("{current}:{dir}")
    };
    set_env(env, key, &joined);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            id: "t".into(),
            rootfs: "/r".into(),
            args: vec!["/bin/true".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: "t".into(),
            limits: Default::default(),
            netns: None,
            mounts: Vec::new(),
            devices: Vec::new(),
            log_path: "/l".into(),
            log_limit: Default::default(),
            cgroup_path: "/zlayer/t".into(),
            secret_env: Vec::new(),
            secrets_dir: None,
            net_counters: None,
        }
    }

    /// A driver tree with no real GPU behind it: the devices are /dev/null's
    /// numbers, which is all discovery reads.
    fn fake_driver() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("dev");
        fs::create_dir_all(&dev).unwrap();
        for n in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"] {
            nix::sys::stat::mknod(
                &dev.join(n),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap();
        }
        let lib = t.path().join("usr/lib/x86_64-linux-gnu");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("libcuda.so.580.1"), b"elf").unwrap();
        std::os::unix::fs::symlink("libcuda.so.580.1", lib.join("libcuda.so.1")).unwrap();
        std::os::unix::fs::symlink("libcuda.so.1", lib.join("libcuda.so")).unwrap();
        fs::write(lib.join("libcudart.so.13"), b"not the driver's").unwrap();
        let bin = t.path().join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("nvidia-smi"), b"#!/bin/sh\n").unwrap();
        t
    }

    #[test]
    fn discovers_gpus_control_nodes_and_driver_files() {
        if !nix::unistd::geteuid().is_root() {
            return; // mknod needs root
        }
        let t = fake_driver();
        let inv = GpuInventory::discover(t.path());
        let idx: Vec<u32> = inv.gpus().iter().map(|g| g.index).collect();
        assert_eq!(idx, [0, 1]);
        let mut c = cfg();
        inv.attach(&[1], &mut c).unwrap();
        let paths: Vec<&str> = c.devices.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"]);
        let targets: Vec<String> = c
            .mounts
            .iter()
            .map(|m| match m {
                MountSpec::Bind {
                    target, readonly, ..
                } if *readonly => target.clone(),
                other => panic!("unexpected mount {other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "/usr/local/nvidia/lib64/libcuda.so",
                "/usr/local/nvidia/lib64/libcuda.so.1",
                "/usr/local/nvidia/lib64/libcuda.so.580.1",
                "/usr/local/nvidia/bin/nvidia-smi",
            ]
        );
        assert!(c.env.contains(&"NVIDIA_VISIBLE_DEVICES=1".to_string()));
        assert!(c
            .env
            .contains(&"PATH=/usr/bin:/bin:/usr/local/nvidia/bin".to_string()));
        assert!(c
            .env
            .contains(&"LD_LIBRARY_PATH=/usr/local/nvidia/lib64".to_string()));
        assert!(matches!(
            inv.attach(&[2], &mut cfg()),
            Err(GpuError::NoSuchGpu(2, 2))
        ));
    }

    #[test]
    fn no_gpus_means_nothing_to_attach() {
        let t = tempfile::tempdir().unwrap();
        let inv = GpuInventory::discover(t.path());
        assert!(inv.gpus().is_empty());
        let mut c = cfg();
        inv.attach(&[], &mut c).unwrap();
        assert!(c.devices.is_empty() && c.mounts.is_empty());
        assert!(matches!(
            inv.attach(&[0], &mut c),
            Err(GpuError::NoControlNode(_))
        ));
    }
}
