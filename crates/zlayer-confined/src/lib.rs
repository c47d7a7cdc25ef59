//! File operations confined to one directory tree (a layer being unpacked or
//! a rootfs being read). Every lookup goes through `openat2` with
//! `RESOLVE_IN_ROOT`, so `..` and symlinks, absolute or relative, resolve as
//! if the tree were `/`: a path can never reach the host, even when the tree
//! changes under us. Entries are then created by name in the resolved parent
//! directory, and none of those calls follows a symlink at the last component.
//!
//! It owns no policy: what to create, and what to refuse, is its callers'.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

/// A directory all of whose lookups stay inside it.
pub struct Confined {
    root: OwnedFd,
}

fn open_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Confined {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Confined { root: owned(fd) })
    }

    pub fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// Opens `rel` (relative to the tree's root) with `flags`.
    pub fn open_at(&self, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(owned(openat2(
            self.root.as_raw_fd(),
            path,
            open_how(flags),
        )?))
    }

    /// The directory `rel`, created (0755, root-owned) where it is missing.
    pub fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        match self.open_at(rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        let dir_flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY;
        let mut current = self.open_at(Path::new(""), dir_flags)?;
        let mut so_far = std::path::PathBuf::new();
        for part in rel.components() {
            let Component::Normal(name) = part else {
                continue;
            };
            so_far.push(name);
            match nix::sys::stat::mkdirat(
                Some(current.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            // Resolved from the root again: a symlink already there is
            // followed, but only inside the tree.
            current = self.open_at(&so_far, dir_flags)?;
        }
        Ok(current)
    }

    /// The host path `rel` resolves to inside the tree.
    pub fn real_path(&self, rel: &Path) -> io::Result<std::path::PathBuf> {
        let fd = self.open_at(rel, OFlag::O_PATH)?;
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    /// Reads the regular file `rel` if it exists and is at most `cap` bytes.
    pub fn read_capped(&self, rel: &Path, cap: u64) -> io::Result<Option<Vec<u8>>> {
        let fd = match self.open_at(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let file = std::fs::File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                rel.display()
            )));
        }
        let mut out = Vec::new();
        file.take(cap + 1).read_to_end(&mut out)?;
        if out.len() as u64 > cap {
            return Err(io::Error::other(format!(
                "{} is larger than {cap} bytes",
                rel.display()
            )));
        }
        Ok(Some(out))
    }
}

/// Removes `name` from `dir` whatever it is; a directory goes with its contents.
pub fn remove_entry(dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    let fd = dir.as_fd().as_raw_fd();
    match nix::unistd::unlinkat(Some(fd), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = owned(openat2(
        fd,
        name,
        OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH),
    )?);
    let children: Vec<std::ffi::OsString> = {
        let listing = nix::dir::Dir::openat(
            Some(sub.as_raw_fd()),
            ".",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in listing.into_iter() {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                use std::os::unix::ffi::OsStrExt;
                names.push(OsStr::from_bytes(n).to_owned());
            }
        }
        names
    };
    for child in &children {
        remove_entry(&sub, child)?;
    }
    nix::unistd::unlinkat(Some(fd), name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}
