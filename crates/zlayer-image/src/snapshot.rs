//! Per-container overlayfs snapshots: `snapshots/<id>/{upper,work,rootfs}`
//! over the image's shared, read-only layer directories. The image digest is
//! recorded so that `image rm` can refuse to delete what a container uses.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ImageError, IoContext};
use crate::store::{ImageStore, ResolvedImage};

pub struct Snapshot {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
}

impl Snapshot {
    /// Creates and mounts the snapshot for container `id`; idempotent.
    pub fn prepare(
        store: &ImageStore,
        id: &str,
        image: &ResolvedImage,
    ) -> Result<Snapshot, ImageError> {
        Self::mount_with(store, id, image, &[""])
    }

    /// A snapshot whose upper directory will be read back as a layer (a
    /// build's `RUN`): redirected directories and metadata-only copy-ups are
    /// turned off, so every change is a plain file in `upper`. Kernels that
    /// predate those options get the default mount.
    pub fn prepare_for_diff(
        store: &ImageStore,
        id: &str,
        image: &ResolvedImage,
    ) -> Result<Snapshot, ImageError> {
        Self::mount_with(store, id, image, &[",redirect_dir=off,metacopy=off", ""])
    }

    /// Upper directory: what the container changed.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    fn mount_with(
        store: &ImageStore,
        id: &str,
        image: &ResolvedImage,
        option_sets: &[&str],
    ) -> Result<Snapshot, ImageError> {
        let dir = store.root().join("snapshots").join(id);
        let rootfs = dir.join("rootfs");
        if is_mounted(&rootfs) {
            return Ok(Snapshot { dir, rootfs });
        }
        for sub in ["upper", "work", "rootfs"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).at(&d)?;
        }
        fs::write(dir.join("image"), &image.manifest_digest).at(dir.join("image"))?;
        let lower: Vec<String> = image
            .layer_dirs
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let lower = if lower.is_empty() {
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).at(&empty)?;
            empty.display().to_string()
        } else {
            lower.join(":")
        };
        let base = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let mut result = Ok(());
        for extra in option_sets {
            let opts = format!("{base}{extra}");
            result = mount(
                Some("overlay"),
                &rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(opts.as_str()),
            );
            if result != Err(nix::errno::Errno::EINVAL) {
                break;
            }
        }
        result.map_err(|source| ImageError::Mount {
            path: rootfs.clone(),
            source,
        })?;
        Ok(Snapshot { dir, rootfs })
    }

    /// Unmounts and deletes the snapshot of container `id`, if any.
    pub fn remove(store: &ImageStore, id: &str) -> Result<(), ImageError> {
        // An empty or path-like id would name every container's snapshot.
        if id.is_empty() || id == "." || id == ".." || id.contains('/') {
            return Err(ImageError::Io {
                path: store.root().join("snapshots"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("refusing to remove snapshot {id:?}: not a container id"),
                ),
            });
        }
        let dir = store.root().join("snapshots").join(id);
        let rootfs = dir.join("rootfs");
        if is_mounted(&rootfs) {
            umount2(&rootfs, MntFlags::MNT_DETACH).map_err(|source| ImageError::Mount {
                path: rootfs.clone(),
                source,
            })?;
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Ids of all snapshots on disk (for leak checks and garbage collection).
    pub fn list(store: &ImageStore) -> Result<Vec<String>, ImageError> {
        let dir = store.root().join("snapshots");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            out.push(e.at(&dir)?.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }
}

pub(crate) fn users_of(
    store: &ImageStore,
    manifest_digest: &str,
) -> Result<Vec<String>, ImageError> {
    let mut users = Vec::new();
    for id in Snapshot::list(store)? {
        let f = store.root().join("snapshots").join(&id).join("image");
        if fs::read_to_string(&f).is_ok_and(|d| d == manifest_digest) {
            users.push(id);
        }
    }
    Ok(users)
}

fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}
