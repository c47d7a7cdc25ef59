//! Unpacking one layer archive into a directory that overlayfs can use as a
//! lower layer: whiteouts become 0/0 character devices, opaque markers
//! become the `trusted.overlay.opaque` xattr. Every path an entry touches is
//! resolved inside the layer (see `zlayer_confined`); entries named `..`,
//! hard links leaving the layer and relative symlinks climbing out reject
//! the whole layer, and so does a layer larger than its [`LayerLimits`].

use std::ffi::OsStr;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::error::{ImageError, IoContext};
use zlayer_confined::{remove_entry, Confined};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// How much one layer may hold once unpacked.
#[derive(Clone, Copy, Debug)]
pub struct LayerLimits {
    /// Bytes of the uncompressed tar stream.
    pub max_bytes: u64,
    /// Entries (files, directories, links, whiteouts).
    pub max_entries: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_bytes: 32 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// Unpacks a (gzip, zstd or plain) tar layer into `dst` with the default
/// limits and returns the sha256 diff id of the uncompressed stream.
pub fn unpack_layer(reader: impl BufRead, dst: &Path) -> Result<String, ImageError> {
    unpack_layer_limited(reader, dst, LayerLimits::default())
}

/// [`unpack_layer`] with explicit limits.
pub fn unpack_layer_limited(
    mut reader: impl BufRead,
    dst: &Path,
    limits: LayerLimits,
) -> Result<String, ImageError> {
    let magic = reader
        .fill_buf()
        .at(dst)?
        .get(..4)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let decompressed: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader).at(dst)?)
    } else {
        Box::new(reader)
    };
    let mut hashing = HashingReader {
        inner: decompressed,
        hasher: Sha256::new(),
        read: 0,
        cap: limits.max_bytes,
    };
    let root = Confined::open(dst).at(dst)?;
    let result = unpack_tar(&mut hashing, &root, limits)
        .and_then(|()| io::copy(&mut hashing, &mut io::sink()).map(drop).at(dst));
    if hashing.read > limits.max_bytes {
        return Err(ImageError::LayerTooLarge {
            what: "bytes uncompressed",
            limit: limits.max_bytes,
        });
    }
    result?;
    // The layer is published by a rename; its contents must be on disk first.
    nix::unistd::syncfs(root.root().as_raw_fd()).map_err(|e| ImageError::Io {
        path: dst.into(),
        source: e.into(),
    })?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    cap: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.cap {
            return Err(io::Error::other("layer exceeds its size limit"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn unpack_tar(
    reader: &mut dyn Read,
    root: &Confined,
    limits: LayerLimits,
) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(reader);
    let mut entries_seen = 0u64;
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(ImageError::LayerTooLarge {
                what: "entries",
                limit: limits.max_entries,
            });
        }
        let raw = entry.path().map_err(io_err)?.into_owned();
        let rel = layer_relative(&raw)?;
        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            continue; // the layer root itself
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let parent = root.dir(parent_rel).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => ImageError::DanglingParent {
                entry: raw.display().to_string(),
                parent: parent_rel.display().to_string(),
            },
            _ => in_layer(&raw, e),
        })?;
        let name_str = name.to_str().unwrap_or("");
        if name_str == OPAQUE_MARKER {
            set_xattr(&parent, "trusted.overlay.opaque", b"y").map_err(|e| in_layer(&raw, e))?;
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(ImageError::BadWhiteout(raw.display().to_string()));
            }
            let hidden = OsStr::from_bytes(hidden);
            remove_entry(&parent, hidden).map_err(|e| in_layer(&raw, e))?;
            nix::sys::stat::mknodat(
                Some(parent.as_raw_fd()),
                hidden,
                SFlag::S_IFCHR,
                Mode::empty(),
                0,
            )
            .map_err(|e| in_layer(&raw, e.into()))?;
            continue;
        }
        let written = write_entry(&mut entry, kind, root, &parent, &name, parent_rel, &raw)?;
        if let Some(fd) = written {
            apply_xattrs(&mut entry, &fd).map_err(|e| in_layer(&raw, e))?;
        }
        if kind != EntryType::Link {
            // A hard link shares its target's inode, which is already set.
            apply_owner_mode_time(&entry, kind, &parent, &name).map_err(|e| in_layer(&raw, e))?;
        }
    }
    Ok(())
}

/// Creates the entry `name` in `parent`; returns an fd for regular files and
/// directories so their xattrs can be set without resolving the path again.
fn write_entry(
    entry: &mut tar::Entry<'_, &mut dyn Read>,
    kind: EntryType,
    root: &Confined,
    parent: &OwnedFd,
    name: &OsStr,
    parent_rel: &Path,
    raw: &Path,
) -> Result<Option<OwnedFd>, ImageError> {
    let pfd = parent.as_raw_fd();
    let fail = |e: io::Error| in_layer(raw, e);
    let nix_fail = |e: nix::Error| in_layer(raw, e.into());
    if kind != EntryType::Directory {
        remove_entry(parent, name).map_err(fail)?;
    }
    match kind {
        EntryType::Directory => {
            let existing =
                nix::sys::stat::fstatat(Some(pfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
            if let Ok(st) = existing {
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                    remove_entry(parent, name).map_err(fail)?;
                }
            }
            match nix::sys::stat::mkdirat(Some(pfd), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(nix_fail(e)),
            }
            Ok(Some(
                open_no_follow(pfd, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
                    .map_err(nix_fail)?,
            ))
        }
        EntryType::Regular | EntryType::Continuous => {
            let fd = open_no_follow(pfd, name, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY)
                .map_err(nix_fail)?;
            let mut file = std::fs::File::from(fd);
            io::copy(entry, &mut file).map_err(fail)?;
            file.flush().map_err(fail)?;
            Ok(Some(OwnedFd::from(file)))
        }
        EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(io_err)?
                .unwrap_or_default()
                .into_owned();
            if target.is_relative() && climbs_out(parent_rel, &target) {
                return Err(ImageError::LinkEscape {
                    entry: raw.display().to_string(),
                    target: target.display().to_string(),
                });
            }
            nix::unistd::symlinkat(&target, Some(pfd), name).map_err(nix_fail)?;
            Ok(None)
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(io_err)?
                .unwrap_or_default()
                .into_owned();
            let escape = || ImageError::LinkEscape {
                entry: raw.display().to_string(),
                target: target.display().to_string(),
            };
            let target_rel = layer_relative(&target).map_err(|_| escape())?;
            let target_name = target_rel.file_name().ok_or_else(escape)?;
            let target_parent = root
                .open_at(
                    target_rel.parent().unwrap_or(Path::new("")),
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY,
                )
                .map_err(fail)?;
            nix::unistd::linkat(
                Some(target_parent.as_raw_fd()),
                target_name,
                Some(pfd),
                name,
                nix::fcntl::AtFlags::empty(),
            )
            .map_err(nix_fail)?;
            Ok(None)
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let header = entry.header();
            let major = header.device_major().map_err(io_err)?.unwrap_or(0);
            let minor = header.device_minor().map_err(io_err)?.unwrap_or(0);
            let sflag = match kind {
                EntryType::Char => SFlag::S_IFCHR,
                EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            nix::sys::stat::mknodat(
                Some(pfd),
                name,
                sflag,
                Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(major.into(), minor.into()),
            )
            .map_err(nix_fail)?;
            Ok(None)
        }
        // Sparse and vendor entries carry nothing overlayfs needs.
        _ => Ok(None),
    }
}

fn open_no_follow(dir: i32, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    // SAFETY: a fresh fd from a successful openat, owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// xattrs from PAX headers; `trusted.*` (overlayfs' own opaque, redirect and
/// metacopy markers among them) is never taken from an image.
fn apply_xattrs(entry: &mut tar::Entry<'_, &mut dyn Read>, fd: &OwnedFd) -> io::Result<()> {
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext?;
        let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        if key.starts_with(b"trusted.") {
            continue;
        }
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        match set_xattr(fd, key, ext.value_bytes()) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            other => other?,
        }
    }
    Ok(())
}

fn set_xattr(fd: &OwnedFd, key: &str, value: &[u8]) -> io::Result<()> {
    let key = std::ffi::CString::new(key).map_err(io::Error::other)?;
    // SAFETY: a valid fd, a NUL-terminated name and a buffer of the given length.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn apply_owner_mode_time(
    entry: &tar::Entry<'_, &mut dyn Read>,
    kind: EntryType,
    parent: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    let header = entry.header();
    let pfd = Some(parent.as_raw_fd());
    let uid = u32::try_from(header.uid()?).map_err(io::Error::other)?;
    let gid = u32::try_from(header.gid()?).map_err(io::Error::other)?;
    nix::unistd::fchownat(
        pfd,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if kind != EntryType::Symlink {
        // After chown, which clears set-id bits. `name` is the entry just
        // created in a directory only this process writes to.
        nix::sys::stat::fchmodat(
            pfd,
            name,
            Mode::from_bits_truncate(header.mode()? & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    let mtime = nix::sys::time::TimeSpec::new(i64::try_from(header.mtime()?).unwrap_or(0), 0);
    nix::sys::stat::utimensat(
        pfd,
        name,
        &mtime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn io_err(e: io::Error) -> ImageError {
    ImageError::Io {
        path: PathBuf::from("<layer>"),
        source: e,
    }
}

fn in_layer(entry: &Path, source: io::Error) -> ImageError {
    ImageError::Io {
        path: PathBuf::from(format!("layer entry {}", entry.display())),
        source,
    }
}

/// The entry's path inside the layer, without a leading `/` or `./`; `..` is refused.
fn layer_relative(p: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ImageError::PathTraversal(p.display().to_string()))
            }
        }
    }
    Ok(out)
}

/// Whether a relative symlink target, resolved from `dir`, leaves the layer root.
fn climbs_out(dir: &Path, target: &Path) -> bool {
    let mut depth = dir
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(EntryType::Regular);
        // set_path refuses `..`, which is exactly what these tests need to write.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, body).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    #[test]
    fn rejects_dotdot() {
        let t = tar_with(|b| file(b, "../evil", b"x"));
        let d = tempfile::tempdir().unwrap();
        let err = unpack_layer(&t[..], d.path()).unwrap_err();
        assert!(matches!(err, ImageError::PathTraversal(_)), "{err}");
    }

    #[test]
    fn writes_through_an_absolute_symlink_land_in_the_layer() {
        let t = tar_with(|b| {
            link(b, EntryType::Symlink, "escape", "/");
            file(b, "escape/tmp/zlayer-unpack-pwned", b"x");
        });
        let d = tempfile::tempdir().unwrap();
        unpack_layer(&t[..], d.path()).unwrap();
        assert!(!Path::new("/tmp/zlayer-unpack-pwned").exists());
        assert_eq!(
            fs::read(d.path().join("tmp/zlayer-unpack-pwned")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn rejects_relative_symlink_climbing_out() {
        let t = tar_with(|b| link(b, EntryType::Symlink, "a/up", "../../etc"));
        let d = tempfile::tempdir().unwrap();
        let err = unpack_layer(&t[..], d.path()).unwrap_err();
        assert!(matches!(err, ImageError::LinkEscape { .. }), "{err}");
    }

    #[test]
    fn rejects_hardlink_escape() {
        let t = tar_with(|b| link(b, EntryType::Link, "passwd", "../../etc/passwd"));
        let d = tempfile::tempdir().unwrap();
        let err = unpack_layer(&t[..], d.path()).unwrap_err();
        assert!(matches!(err, ImageError::LinkEscape { .. }), "{err}");
    }

    #[test]
    fn whiteouts_opaque_and_links() {
        let t = tar_with(|b| {
            file(b, "etc/a", b"hello");
            link(b, EntryType::Link, "etc/b", "etc/a");
            link(b, EntryType::Symlink, "bin/sh", "/bin/busybox");
            file(b, "etc/.wh.gone", b"");
            file(b, "var/.wh..wh..opq", b"");
        });
        let d = tempfile::tempdir().unwrap();
        let digest = unpack_layer(&t[..], d.path()).unwrap();
        assert!(digest.starts_with("sha256:"));
        assert_eq!(fs::read(d.path().join("etc/b")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(d.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(d.path().join("etc/gone"))
            .unwrap()
            .file_type()
            .is_char_device());
        let mut v = [0u8; 4];
        let c = std::ffi::CString::new(d.path().join("var").to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and a 4-byte buffer.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                v.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!(n, 1);
    }

    /// The reported attack: an absolute symlink to a host directory, then a
    /// whiteout and an opaque marker "inside" it. Both must land in the
    /// layer, never on the host.
    #[test]
    fn whiteouts_through_an_absolute_symlink_stay_in_the_layer() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("victim"), b"keep me").unwrap();
        fs::create_dir(host.path().join("sub")).unwrap();
        fs::write(host.path().join("sub/inner"), b"keep me too").unwrap();
        let target = host.path().to_str().unwrap().to_string();
        let t = tar_with(|b| {
            link(b, EntryType::Symlink, "x", &target);
            file(b, "x/.wh.victim", b"");
            file(b, "x/sub/.wh..wh..opq", b"");
            file(b, "x/sub/planted", b"x");
        });
        let d = tempfile::tempdir().unwrap();
        let err = unpack_layer(&t[..], d.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "archive entry `x/.wh.victim` is under `x`, which leads to no directory inside the layer (a symlink resolves inside the layer, never to the host); refusing to unpack"
        );
        assert_eq!(fs::read(host.path().join("victim")).unwrap(), b"keep me");
        assert_eq!(
            fs::read(host.path().join("sub/inner")).unwrap(),
            b"keep me too"
        );
        assert!(!host.path().join("sub/planted").exists());
        assert_eq!(opaque_marker(&host.path().join("sub")), -1);
    }

    #[test]
    fn a_whiteout_under_a_symlink_to_a_layer_dir_lands_there() {
        let t = tar_with(|b| {
            file(b, "real/victim", b"x");
            link(b, EntryType::Symlink, "x", "/real");
            file(b, "x/.wh.victim", b"");
        });
        let d = tempfile::tempdir().unwrap();
        unpack_layer(&t[..], d.path()).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(d.path().join("real/victim"))
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[test]
    fn refuses_whiteouts_without_a_name() {
        for bad in ["a/.wh.", "a/.wh..", "a/.wh..."] {
            let t = tar_with(|b| file(b, bad, b""));
            let d = tempfile::tempdir().unwrap();
            let err = unpack_layer(&t[..], d.path()).unwrap_err();
            if bad == "a/.wh..." {
                // `..` after the prefix is `.`: `.wh...` hides a file named `.`.
                assert!(matches!(err, ImageError::BadWhiteout(_)), "{bad}: {err}");
            } else {
                assert_eq!(
                    err.to_string(),
                    format!("archive entry `{bad}` is a whiteout with no name (or `.`/`..`) after `.wh.`; refusing to unpack")
                );
            }
        }
    }

    #[test]
    fn trusted_xattrs_are_not_taken_from_the_image() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::Directory);
        h.set_path("d").unwrap();
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        b.append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
            ("SCHILY.xattr.user.note", &b"kept"[..]),
        ])
        .unwrap();
        b.append(&h, &[][..]).unwrap();
        let t = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        unpack_layer(&t[..], d.path()).unwrap();
        assert_eq!(opaque_marker(&d.path().join("d")), -1);
    }

    #[test]
    fn a_compression_bomb_fails_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        {
            let mut b = tar::Builder::new(&mut gz);
            let mut h = tar::Header::new_gnu();
            let size = 64u64 << 20;
            h.set_size(size);
            h.set_mode(0o644);
            h.set_entry_type(EntryType::Regular);
            h.set_path("zeros").unwrap();
            h.set_cksum();
            b.append(&h, io::repeat(0).take(size)).unwrap();
            b.finish().unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
        let d = tempfile::tempdir().unwrap();
        let limits = LayerLimits {
            max_bytes: 8 << 20,
            max_entries: 10,
        };
        let err = unpack_layer_limited(&bomb[..], d.path(), limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer exceeds its limit of 8388608 bytes uncompressed; refusing it (nothing of it was kept)"
        );
    }

    #[test]
    fn too_many_entries_fail() {
        let t = tar_with(|b| {
            for i in 0..5 {
                file(b, &format!("f{i}"), b"");
            }
        });
        let d = tempfile::tempdir().unwrap();
        let limits = LayerLimits {
            max_bytes: 1 << 20,
            max_entries: 3,
        };
        let err = unpack_layer_limited(&t[..], d.path(), limits).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::LayerTooLarge {
                    what: "entries",
                    ..
                }
            ),
            "{err}"
        );
    }

    fn opaque_marker(dir: &Path) -> isize {
        let mut v = [0u8; 4];
        let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and a 4-byte buffer.
        unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                v.as_mut_ptr().cast(),
                4,
            )
        }
    }
}
