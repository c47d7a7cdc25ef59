//! The layer a `RUN` made: the overlay upper directory, turned into a layer
//! archive. Overlay whiteouts (0:0 character devices) become `.wh.` files,
//! opaque directories get a `.wh..wh..opq` marker, and files hardlinked to
//! each other stay hardlinked. Mount points the runtime created in a rootfs
//! that lacked them (`/proc`, `/dev`, `/sys`, a bound `/etc/resolv.conf`)
//! are not part of what the command did and are left out.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::layer::LayerWriter;
use crate::rootfs::{is_whiteout, LayerView};

/// Removes from `upper` the mount points the runtime made that the image
/// below does not have, then any parent directory that only held them.
pub fn drop_runtime_mountpoints(upper: &Path, lower: &LayerView, targets: &[&str]) {
    for t in targets {
        if lower.exists(t) {
            continue;
        }
        let p = upper.join(t);
        let _ = fs::remove_dir(&p).or_else(|_| match fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() && md.len() == 0 => fs::remove_file(&p),
            _ => Ok(()),
        });
        for parent in Path::new(t).ancestors().skip(1) {
            if parent.as_os_str().is_empty() || lower.exists(&parent.to_string_lossy()) {
                break;
            }
            if fs::remove_dir(upper.join(parent)).is_err() {
                break;
            }
        }
    }
}

/// Writes every change recorded in `upper` into `out`.
pub fn write_upper(upper: &Path, out: &mut LayerWriter) -> io::Result<()> {
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in WalkDir::new(upper).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(io::Error::from)?;
        let rel = entry.path().strip_prefix(upper).unwrap_or(entry.path());
        let md = entry.path().symlink_metadata()?;
        if is_whiteout(&md) {
            out.whiteout(rel)?;
            continue;
        }
        if md.is_file() && md.nlink() > 1 {
            if let Some(first) = linked.get(&(md.dev(), md.ino())) {
                let a = crate::layer::Attrs {
                    uid: md.uid(),
                    gid: md.gid(),
                    mode: md.mode(),
                    mtime: md.mtime().max(0) as u64,
                };
                out.hardlink(rel, a, first)?;
                continue;
            }
            linked.insert((md.dev(), md.ino()), rel.to_path_buf());
        }
        out.copy_from_fs(rel, entry.path())?;
        if md.is_dir() && is_opaque(entry.path()) {
            out.opaque(rel)?;
        }
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    xattr::get(dir, "trusted.overlay.opaque")
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{mknod, Mode, SFlag};

    /// The upper dir of an overlay, made by hand the way the kernel makes it.
    #[test]
    fn upper_dir_to_layer() {
        let d = tempfile::tempdir().unwrap();
        let upper = d.path().join("upper");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/new"), "x").unwrap();
        fs::hard_link(upper.join("etc/new"), upper.join("etc/same")).unwrap();
        mknod(&upper.join("etc/gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        fs::create_dir(upper.join("opq")).unwrap();
        xattr::set(upper.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
        let mut w = LayerWriter::create(d.path().join("layer")).unwrap();
        write_upper(&upper, &mut w).unwrap();
        let archive = w.finish().unwrap();
        let gz = flate2::read::GzDecoder::new(fs::File::open(&archive.path).unwrap());
        let mut tar = tar::Archive::new(gz);
        let listed: Vec<(String, tar::EntryType)> = tar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        use tar::EntryType::*;
        let want = [
            ("etc", Directory),
            ("etc/.wh.gone", Regular),
            ("etc/new", Regular),
            ("etc/same", Link),
            ("opq", Directory),
            ("opq/.wh..wh..opq", Regular),
        ];
        let got: Vec<(&str, tar::EntryType)> = listed
            .iter()
            .map(|(p, t)| (p.trim_end_matches('/'), *t))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn runtime_mountpoints_left_out() {
        let d = tempfile::tempdir().unwrap();
        let (upper, lower) = (d.path().join("upper"), d.path().join("lower"));
        for p in ["proc", "dev", "etc"] {
            fs::create_dir_all(upper.join(p)).unwrap();
        }
        fs::write(upper.join("etc/resolv.conf"), "").unwrap();
        fs::create_dir_all(lower.join("dev")).unwrap();
        fs::create_dir_all(upper.join("sys/kept")).unwrap();
        let dirs = [lower];
        let view = LayerView { dirs: &dirs };
        drop_runtime_mountpoints(&upper, &view, &["proc", "dev", "sys", "etc/resolv.conf"]);
        assert!(!upper.join("proc").exists());
        assert!(
            upper.join("dev").exists(),
            "the image had /dev; the upper dir's copy is real"
        );
        assert!(!upper.join("etc").exists());
        assert!(
            upper.join("sys/kept").exists(),
            "not empty: the command wrote there"
        );
    }
}
