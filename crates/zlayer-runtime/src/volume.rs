//! Named volumes on this node. Each claim has a directory
//! `<data>/named-volumes/<deployment>/<name>/` holding `claim` (the
//! cluster's claim id) and either
//! - `data/`, a plain directory, for a volume with no `size`; or
//! - `disk.ext4`, a sparse filesystem image of exactly `size` bytes made by
//!   `mkfs.ext4`, attached to a loop device (autoclear) and mounted
//!   `nosuid,nodev` on `fs/`; the container gets `fs/data`. The
//!   filesystem is the limit: a write past it fails with ENOSPC inside the
//!   container and fills nothing outside it.
//!
//! The mount outlives the agent (a restarted or killed agent finds it
//! mounted and uses it); after a reboot the next start mounts it again.
//! This module never decides whether data may go: the agent removes a
//! volume only on the cluster's tombstone for its claim.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zlayer_model::VolumeUsage;

/// Creating, mounting and removing happen one at a time per node: two
/// replicas starting with one volume must not both mount it.
static LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume `{0}`: the name must be one plain path component")]
    BadName(String),
    #[error("volume `{volume}` here belongs to claim {here}, the cluster's is {wanted}: the old one is removed first")]
    OtherClaim {
        volume: String,
        here: u64,
        wanted: u64,
    },
    #[error("volume `{volume}`: {what}: {source}")]
    Io {
        volume: String,
        what: String,
        source: std::io::Error,
    },
    #[error("volume `{volume}`: mkfs.ext4 (from e2fsprogs) failed: {why}")]
    Mkfs { volume: String, why: String },
}

/// One claim of a named volume, as the cluster holds it.
#[derive(Clone, Debug)]
pub struct VolumeClaim<'a> {
    pub deployment: &'a str,
    pub name: &'a str,
    pub id: u64,
    pub size_bytes: Option<u64>,
}

/// The named volumes under one data dir.
#[derive(Clone, Debug)]
pub struct Volumes {
    root: PathBuf,
}

fn plain(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

impl Volumes {
    pub fn new(data_dir: &Path) -> Volumes {
        Volumes {
            root: data_dir.join("named-volumes"),
        }
    }

    fn dir(&self, deployment: &str, name: &str) -> Result<PathBuf, VolumeError> {
        if !plain(deployment) || !plain(name) {
            return Err(VolumeError::BadName(format!("{deployment}/{name}")));
        }
        Ok(self.root.join(deployment).join(name))
    }

    /// The directory to bind into a container for `claim`: made (and its
    /// filesystem made and mounted) if it is not there yet.
    pub fn ensure(&self, claim: &VolumeClaim<'_>) -> Result<PathBuf, VolumeError> {
        let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let volume = format!("{}/{}", claim.deployment, claim.name);
        let dir = self.dir(claim.deployment, claim.name)?;
        let io = |what: &str, path: &Path| {
            let volume = volume.clone();
            let what = format!("{what} {}", path.display());
            move |source| VolumeError::Io {
                volume,
                what,
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let claim_file = dir.join("claim");
        match std::fs::read_to_string(&claim_file) {
            Ok(text) => {
                let here = text.trim().parse().unwrap_or(0);
                if here != claim.id {
                    return Err(VolumeError::OtherClaim {
                        volume,
                        here,
                        wanted: claim.id,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_synced(&claim_file, claim.id.to_string().as_bytes())
                    .map_err(io("writing", &claim_file))?;
            }
            Err(e) => return Err(io("reading", &claim_file)(e)),
        }
        let Some(size) = claim.size_bytes else {
            let data = dir.join("data");
            if !data.exists() {
                self.adopt_legacy(claim.name, &data);
            }
            std::fs::create_dir_all(&data).map_err(io("creating", &data))?;
            return Ok(data);
        };
        let image = dir.join("disk.ext4");
        if !image.exists() {
            make_filesystem(&volume, &dir, &image, size)?;
        }
        let fs = dir.join("fs");
        std::fs::create_dir_all(&fs).map_err(io("creating", &fs))?;
        if !is_mount_point(&fs) {
            crate::loopdev::mount_image(&image, &fs).map_err(io("mounting", &image))?;
        }
        let data = fs.join("data");
        std::fs::create_dir_all(&data).map_err(io("creating", &data))?;
        Ok(data)
    }

    /// Nodes from before volumes were records kept `<data>/volumes/<name>`
    /// for every deployment alike: the first plain volume of that name
    /// made here takes it over, so an upgrade loses no data.
    fn adopt_legacy(&self, name: &str, data: &Path) {
        let Some(legacy) = self.root.parent().map(|d| d.join("volumes").join(name)) else {
            return;
        };
        if legacy.is_dir() {
            match std::fs::rename(&legacy, data) {
                Ok(()) => tracing::info!(
                    "volume data from {} moved to {}",
                    legacy.display(),
                    data.display()
                ),
                Err(e) => tracing::warn!("volume data at {}: {e}", legacy.display()),
            }
        }
    }

    /// The claims this node holds data for: `(deployment/name, id)`.
    pub fn held(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for dep in read_dir_names(&self.root) {
            for name in read_dir_names(&self.root.join(&dep)) {
                let claim = self.root.join(&dep).join(&name).join("claim");
                if let Ok(text) = std::fs::read_to_string(claim) {
                    if let Ok(id) = text.trim().parse() {
                        out.push((format!("{dep}/{name}"), id));
                    }
                }
            }
        }
        out
    }

    /// What volume `deployment/name` (claim `id`) uses now.
    pub fn usage(&self, volume: &str, id: u64) -> Option<VolumeUsage> {
        let (deployment, name) = volume.split_once('/')?;
        let dir = self.dir(deployment, name).ok()?;
        let fs = dir.join("fs");
        let (used_bytes, capacity_bytes) = if dir.join("disk.ext4").exists() {
            if !is_mount_point(&fs) {
                return None;
            }
            let st = nix::sys::statvfs::statvfs(&fs).ok()?;
            let block = st.fragment_size() as u64;
            let total = st.blocks() as u64 * block;
            let free = st.blocks_free() as u64 * block;
            (total.saturating_sub(free), Some(total))
        } else {
            (tree_bytes(&dir.join("data")), None)
        };
        Some(VolumeUsage {
            volume: volume.to_string(),
            id,
            used_bytes,
            capacity_bytes,
        })
    }

    /// Deletes volume `deployment/name` and its data: its filesystem is
    /// unmounted first (refused while a container still has it).
    pub fn remove(&self, deployment: &str, name: &str) -> Result<(), VolumeError> {
        let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let volume = format!("{deployment}/{name}");
        let dir = self.dir(deployment, name)?;
        let fs = dir.join("fs");
        if is_mount_point(&fs) {
            nix::mount::umount(&fs).map_err(|e| VolumeError::Io {
                volume: volume.clone(),
                what: format!("unmounting {}", fs.display()),
                source: e.into(),
            })?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(VolumeError::Io {
                    volume,
                    what: format!("removing {}", dir.display()),
                    source,
                })
            }
        }
        let _ = std::fs::remove_dir(self.root.join(deployment));
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A sparse image of `size` bytes with an ext4 filesystem, made under a
/// temporary name so a crash never leaves a half-made image in place.
fn make_filesystem(volume: &str, dir: &Path, image: &Path, size: u64) -> Result<(), VolumeError> {
    let tmp = dir.join("disk.ext4.tmp");
    let io = |source| VolumeError::Io {
        volume: volume.to_string(),
        what: format!("creating {}", tmp.display()),
        source,
    };
    let f = File::create(&tmp).map_err(io)?;
    f.set_len(size).map_err(io)?;
    drop(f);
    // -m 0: the whole size is the volume's (no blocks kept for root).
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-E", "root_owner=0:0"])
        .arg(&tmp)
        .output()
        .map_err(|e| VolumeError::Mkfs {
            volume: volume.to_string(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(VolumeError::Mkfs {
            volume: volume.to_string(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, image).map_err(io)
}

/// Whether `path` is the root of a mounted filesystem (another device
/// than its parent's).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(m), Some(Ok(parent))) = (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    m.dev() != parent.dev()
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes a directory tree takes on disk, links not followed.
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_climb_are_refused_before_anything_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let v = Volumes::new(tmp.path());
        for (d, n) in [("..", "x"), ("d", ".."), ("d", "a/../../etc"), ("", "x")] {
            let claim = VolumeClaim {
                deployment: d,
                name: n,
                id: 1,
                size_bytes: None,
            };
            assert!(matches!(v.ensure(&claim), Err(VolumeError::BadName(_))));
            assert!(v.remove(d, n).is_err());
        }
        assert!(!tmp.path().join("named-volumes").exists());
    }

    #[test]
    fn a_plain_volume_takes_over_the_data_an_older_node_kept_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("volumes/data")).unwrap();
        std::fs::write(tmp.path().join("volumes/data/ledger"), "entry").unwrap();
        let v = Volumes::new(tmp.path());
        let claim = VolumeClaim {
            deployment: "d",
            name: "data",
            id: 1,
            size_bytes: None,
        };
        let path = v.ensure(&claim).unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join("ledger")).unwrap(),
            "entry"
        );
    }

    #[test]
    fn a_plain_volume_keeps_its_claim_and_refuses_another() {
        let tmp = tempfile::tempdir().unwrap();
        let v = Volumes::new(tmp.path());
        let claim = VolumeClaim {
            deployment: "d",
            name: "data",
            id: 7,
            size_bytes: None,
        };
        let path = v.ensure(&claim).unwrap();
        std::fs::write(path.join("f"), vec![1u8; 10_000]).unwrap();
        assert_eq!(v.ensure(&claim).unwrap(), path);
        assert_eq!(v.held(), vec![("d/data".to_string(), 7)]);
        assert!(v.usage("d/data", 7).unwrap().used_bytes >= 10_000);
        let other = VolumeClaim { id: 8, ..claim };
        assert!(matches!(
            v.ensure(&other),
            Err(VolumeError::OtherClaim { here: 7, .. })
        ));
        v.remove("d", "data").unwrap();
        assert!(v.held().is_empty());
        assert!(v.ensure(&other).is_ok());
    }

    /// Needs root, /dev/loop-control and mkfs.ext4, as the node does.
    #[test]
    fn a_sized_volume_is_a_filesystem_of_that_size_and_fills_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let v = Volumes::new(tmp.path());
        let claim = VolumeClaim {
            deployment: "d",
            name: "ledger",
            id: 3,
            size_bytes: Some(16 << 20),
        };
        let data = v.ensure(&claim).unwrap();
        let fs = data.parent().unwrap().to_path_buf();
        assert!(is_mount_point(&fs));
        let err = std::fs::write(data.join("big"), vec![7u8; 32 << 20]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        let u = v.usage("d/ledger", 3).unwrap();
        let cap = u.capacity_bytes.unwrap();
        assert!(cap <= 16 << 20 && cap > 12 << 20, "capacity {cap}");
        assert!(u.used_bytes > 10 << 20, "used {}", u.used_bytes);
        // Mounted already: a second start uses it as it is.
        assert_eq!(v.ensure(&claim).unwrap(), data);
        v.remove("d", "ledger").unwrap();
        assert!(!fs.exists());
        assert!(v.held().is_empty());
    }
}
