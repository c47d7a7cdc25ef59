//! Unpacking one layer archive into a directory that overlayfs can use as a
//! lower layer: whiteouts become 0/0 character devices, opaque markers
//! become the `trusted.overlay.opaque` xattr. Entries that climb out of the
//! layer (`..`, links resolving outside, writes through symlinks) reject the
//! whole layer.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::error::{ImageError, IoContext};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks a (gzip, zstd or plain) tar layer into `dst` and returns the
/// sha256 diff id of the uncompressed stream.
pub fn unpack_layer(mut reader: impl BufRead, dst: &Path) -> Result<String, ImageError> {
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
    };
    unpack_tar(&mut hashing, dst)?;
    io::copy(&mut hashing, &mut io::sink()).at(dst)?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn unpack_tar(reader: &mut dyn Read, dst: &Path) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries().at(dst)? {
        let mut entry = entry.at(dst)?;
        let raw = entry.path().at(dst)?.into_owned();
        let rel = layer_relative(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel.file_name().and_then(OsStr::to_str).unwrap_or("");
        let parent = rel.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_MARKER {
            let dir = dst.join(parent);
            fs::create_dir_all(&dir).at(&dir)?;
            set_opaque(&dir)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let dir = dst.join(parent);
            fs::create_dir_all(&dir).at(&dir)?;
            make_whiteout(&dir.join(hidden))?;
            continue;
        }
        match entry.header().entry_type() {
            EntryType::Link => {
                let target = entry.link_name().at(dst)?.unwrap_or_default().into_owned();
                layer_relative(&target).map_err(|_| ImageError::LinkEscape {
                    entry: raw.display().to_string(),
                    target: target.display().to_string(),
                })?;
            }
            EntryType::Symlink => {
                let target = entry.link_name().at(dst)?.unwrap_or_default().into_owned();
                if target.is_relative() && climbs_out(parent, &target) {
                    return Err(ImageError::LinkEscape {
                        entry: raw.display().to_string(),
                        target: target.display().to_string(),
                    });
                }
            }
            _ => {}
        }
        // tar refuses to write through a symlink that leads outside `dst`.
        let ok = entry.unpack_in(dst).map_err(|e| {
            if e.to_string().contains("outside of") {
                ImageError::PathTraversal(raw.display().to_string())
            } else {
                ImageError::Io {
                    path: dst.join(&rel),
                    source: e,
                }
            }
        })?;
        if !ok {
            return Err(ImageError::PathTraversal(raw.display().to_string()));
        }
    }
    Ok(())
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

fn make_whiteout(path: &Path) -> Result<(), ImageError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let _ = fs::remove_file(path);
    let _ = fs::remove_dir_all(path);
    mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o000), 0).map_err(|e| ImageError::Io {
        path: path.into(),
        source: e.into(),
    })
}

fn set_opaque(dir: &Path) -> Result<(), ImageError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| ImageError::PathTraversal(dir.display().to_string()))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; the value is a 1-byte buffer.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if rc != 0 {
        return Err(ImageError::Io {
            path: dir.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = unpack_layer(&t[..], &d.path().join("l")).unwrap_err();
        assert!(matches!(err, ImageError::PathTraversal(_)), "{err}");
    }

    #[test]
    fn rejects_write_through_escaping_symlink() {
        let t = tar_with(|b| {
            link(b, EntryType::Symlink, "escape", "/");
            file(b, "escape/tmp/pwned", b"x");
        });
        let d = tempfile::tempdir().unwrap();
        let dst = d.path().join("l");
        fs::create_dir(&dst).unwrap();
        let err = unpack_layer(&t[..], &dst).unwrap_err();
        assert!(
            matches!(err, ImageError::PathTraversal(_) | ImageError::Io { .. }),
            "{err}"
        );
        assert!(!Path::new("/tmp/pwned").exists());
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
}
