//! `COPY`, `ADD` and the directory `WORKDIR` creates: the files to put in
//! the image are planned first (so their content can key the cache), and
//! written as a layer only on a cache miss. `ADD` also extracts a local tar
//! archive (plain, gzip or zstd) into the destination.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::builder::{absolute, Builder, ImageState, Outcome};
use crate::dockerfile::{CopyOp, Step};
use crate::error::{BuildError, IoAt};
use crate::layer::{Attrs, LayerWriter};
use crate::rootfs::LayerView;
use crate::words::{self, Vars};

#[derive(Debug, Clone)]
enum Planned {
    Dir(Attrs),
    File(Attrs, PathBuf),
    Symlink(Attrs, PathBuf),
}

/// Entries by path (so parents sort before children), then the tar
/// archives `ADD` extracts: (archive, destination directory).
#[derive(Default)]
struct Plan {
    entries: BTreeMap<PathBuf, Planned>,
    archives: Vec<(PathBuf, PathBuf)>,
}

pub(crate) fn copy(
    b: &Builder,
    state: &mut ImageState,
    step: &Step,
    op: &CopyOp,
    vars: &Vars,
) -> Result<Outcome, BuildError> {
    let err = |e: &dyn std::fmt::Display| b.step_error(step, e);
    let expand = |s: &str| words::expand(s, vars).map_err(|e| err(&e));
    let dest_raw = expand(&op.dest)?;
    let mut sources = Vec::new();
    for s in &op.sources {
        sources.extend(b.context.sources(&expand(s)?).map_err(|e| err(&e))?);
    }
    let dest = absolute(&state.workdir(), &dest_raw);
    let dest_rel = PathBuf::from(dest.trim_start_matches('/'));
    let dirs = state.layer_dirs();
    let view = LayerView { dirs: &dirs };
    let into_dir = dest_raw.ends_with('/')
        || dest_rel.as_os_str().is_empty()
        || view.is_dir(&dest_rel.to_string_lossy());
    if sources.len() > 1 && !into_dir {
        return Err(err(
            &"with more than one source the destination must be a directory ending in `/`",
        ));
    }
    let (uid, gid) = match &op.chown {
        Some(c) => zlayer_runtime::resolve_user_in(
            &view.read_to_string("etc/passwd"),
            &view.read_to_string("etc/group"),
            &expand(c)?,
        )
        .map_err(|e| err(&format!("--chown: {e}")))?,
        None => (0, 0),
    };
    let chmod = op
        .chmod
        .as_deref()
        .map(|m| {
            u32::from_str_radix(m, 8)
                .map_err(|_| err(&format!("--chmod={m}: expected an octal mode such as 755")))
        })
        .transpose()?;
    let attrs = |md: &fs::Metadata| Attrs {
        uid,
        gid,
        mode: chmod.unwrap_or(md.mode()),
        mtime: md.mtime().max(0) as u64,
    };

    let mut plan = Plan::default();
    for src in &sources {
        let md = fs::symlink_metadata(&src.path).at(&src.path)?;
        if md.file_type().is_symlink() {
            let target = if into_dir {
                dest_rel.join(src.path.file_name().unwrap_or_default())
            } else {
                dest_rel.clone()
            };
            let link = fs::read_link(&src.path).at(&src.path)?;
            plan.entries
                .insert(target, Planned::Symlink(attrs(&md), link));
        } else if src.is_dir {
            // An existing destination keeps its owner and mode; a new one takes the source's.
            if !dest_rel.as_os_str().is_empty() && !view.is_dir(&dest_rel.to_string_lossy()) {
                plan.entries
                    .insert(dest_rel.clone(), Planned::Dir(attrs(&md)));
            }
            for e in b.context.walk(&src.path).map_err(|e| err(&e))? {
                let emd = fs::symlink_metadata(&e.path).at(&e.path)?;
                let target = dest_rel.join(&e.rel);
                let entry = if emd.is_dir() {
                    Planned::Dir(attrs(&emd))
                } else if emd.file_type().is_symlink() {
                    Planned::Symlink(attrs(&emd), fs::read_link(&e.path).at(&e.path)?)
                } else if emd.is_file() {
                    Planned::File(attrs(&emd), e.path.clone())
                } else {
                    continue;
                };
                plan.entries.insert(target, entry);
            }
        } else if op.add && is_tar(&src.path) {
            if !dest_rel.as_os_str().is_empty() && !view.is_dir(&dest_rel.to_string_lossy()) {
                let a = Attrs {
                    mode: chmod.unwrap_or(0o755),
                    ..attrs(&md)
                };
                plan.entries.insert(dest_rel.clone(), Planned::Dir(a));
            }
            plan.archives.push((src.path.clone(), dest_rel.clone()));
        } else {
            let target = if into_dir {
                dest_rel.join(src.path.file_name().unwrap_or_default())
            } else {
                dest_rel.clone()
            };
            plan.entries
                .insert(target, Planned::File(attrs(&md), src.path.clone()));
        }
    }
    add_parents(
        &mut plan,
        &view,
        Attrs {
            uid,
            gid,
            mode: 0o755,
            mtime: crate::clock::now_secs(),
        },
    );

    let what = describe(op, uid, gid, chmod, &plan).at(&b.context.root)?;
    b.layer_step(
        state,
        step,
        &what,
        Box::new(move |_, b| {
            let mut w = LayerWriter::create(b.store.temp_path()?).at(b.store.root())?;
            write_plan(&mut w, &plan, op.chown.is_some().then_some((uid, gid)))
                .map_err(|e| b.step_error(step, e))?;
            w.finish().at(b.store.root())
        }),
    )
}

/// `WORKDIR`: the directory is created (owned by the current USER) when the
/// image does not have it yet.
pub(crate) fn workdir(
    b: &Builder,
    state: &mut ImageState,
    step: &Step,
    dir: &str,
) -> Result<Outcome, BuildError> {
    let dirs = state.layer_dirs();
    let view = LayerView { dirs: &dirs };
    let rel = PathBuf::from(dir.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || view.is_dir(&rel.to_string_lossy()) {
        return Ok(b.config_step(state, step, &format!("WORKDIR {dir}")));
    }
    let (uid, gid) = zlayer_runtime::resolve_user_in(
        &view.read_to_string("etc/passwd"),
        &view.read_to_string("etc/group"),
        &state.user(),
    )
    .unwrap_or((0, 0));
    let mut plan = Plan::default();
    let a = Attrs {
        uid,
        gid,
        mode: 0o755,
        mtime: crate::clock::now_secs(),
    };
    plan.entries.insert(rel, Planned::Dir(a));
    add_parents(
        &mut plan,
        &view,
        Attrs {
            uid: 0,
            gid: 0,
            ..a
        },
    );
    b.layer_step(
        state,
        step,
        &format!("WORKDIR {dir} {uid}:{gid}"),
        Box::new(move |_, b| {
            let mut w = LayerWriter::create(b.store.temp_path()?).at(b.store.root())?;
            write_plan(&mut w, &plan, None).map_err(|e| b.step_error(step, e))?;
            w.finish().at(b.store.root())
        }),
    )
}

/// Every missing ancestor of a planned path becomes a directory entry.
fn add_parents(plan: &mut Plan, view: &LayerView, a: Attrs) {
    let paths: Vec<PathBuf> = plan.entries.keys().cloned().collect();
    for p in paths {
        for parent in p.ancestors().skip(1) {
            if parent.as_os_str().is_empty() || plan.entries.contains_key(parent) {
                continue;
            }
            if !view.is_dir(&parent.to_string_lossy()) {
                plan.entries.insert(parent.to_path_buf(), Planned::Dir(a));
            }
        }
    }
}

/// What the step will write, content included, as the cache sees it.
fn describe(
    op: &CopyOp,
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
    plan: &Plan,
) -> io::Result<String> {
    let mut h = Sha256::new();
    for (path, entry) in &plan.entries {
        h.update(path.to_string_lossy().as_bytes());
        match entry {
            Planned::Dir(a) => h.update(format!(" dir {:o}\n", a.mode)),
            Planned::Symlink(_, t) => h.update(format!(" link {}\n", t.display())),
            Planned::File(a, src) => {
                h.update(format!(" file {:o} {}\n", a.mode, file_sha(src)?));
            }
        }
    }
    for (src, dest) in &plan.archives {
        h.update(format!(
            "archive {} into {}\n",
            file_sha(src)?,
            dest.display()
        ));
    }
    let verb = if op.add { "ADD" } else { "COPY" };
    Ok(format!(
        "{verb} {uid}:{gid} {chmod:?} {}",
        hex::encode(h.finalize())
    ))
}

fn file_sha(path: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    io::copy(&mut BufReader::new(File::open(path)?), &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn write_plan(w: &mut LayerWriter, plan: &Plan, chown: Option<(u32, u32)>) -> Result<(), String> {
    for (path, entry) in &plan.entries {
        match entry {
            Planned::Dir(a) => w.dir(path, *a),
            Planned::File(a, src) => w.file(path, *a, src),
            Planned::Symlink(a, target) => w.symlink(path, *a, target),
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for (src, dest) in &plan.archives {
        extract(w, src, dest, chown).map_err(|e| format!("{}: {e}", src.display()))?;
    }
    Ok(())
}

/// Whether `path` is a tar archive, possibly gzip- or zstd-compressed.
fn is_tar(path: &Path) -> bool {
    let Ok(mut r) = open_archive(path) else {
        return false;
    };
    let mut head = [0u8; 512];
    r.read_exact(&mut head).is_ok() && &head[257..262] == b"ustar"
}

fn open_archive(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 4];
    let n = File::open(path)?.read(&mut magic)?;
    let f = BufReader::new(File::open(path)?);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(f)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::with_buffer(f)?),
        _ => Box::new(f),
    })
}

/// Copies every entry of archive `src` under `dest` in the layer.
fn extract(
    w: &mut LayerWriter,
    src: &Path,
    dest: &Path,
    chown: Option<(u32, u32)>,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(open_archive(src)?);
    for entry in archive.entries()? {
        let entry = entry?;
        let name = inside(&entry.path()?).ok_or_else(|| {
            io::Error::other(format!(
                "{}: an entry climbs out of the archive",
                src.display()
            ))
        })?;
        let mut header = entry.header().clone();
        if let Some((uid, gid)) = chown {
            header.set_uid(uid.into());
            header.set_gid(gid.into());
        }
        let path = dest.join(&name);
        match header.entry_type() {
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                w.append_link(&mut header, &path, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name()?.unwrap_or_default();
                let target = inside(&target).ok_or_else(|| {
                    io::Error::other(format!(
                        "{}: a hardlink climbs out of the archive",
                        src.display()
                    ))
                })?;
                w.append_link(&mut header, &path, &dest.join(target))?;
            }
            _ => w.append(&mut header, &path, entry)?,
        }
    }
    Ok(())
}

/// An archive path made relative, or None when it climbs out.
fn inside(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_stay_inside() {
        assert_eq!(inside(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(inside(Path::new("/etc/x")), Some(PathBuf::from("etc/x")));
        assert_eq!(inside(Path::new("a/../b")), Some(PathBuf::from("b")));
        assert_eq!(inside(Path::new("../x")), None);
    }

    #[test]
    fn detects_archives() {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("a.tar");
        {
            let mut t = tar::Builder::new(File::create(&plain).unwrap());
            let mut h = tar::Header::new_ustar();
            h.set_size(1);
            h.set_mode(0o644);
            t.append_data(&mut h, "x", &b"1"[..]).unwrap();
            t.finish().unwrap();
        }
        let gz = d.path().join("a.tar.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        io::copy(&mut File::open(&plain).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        let text = d.path().join("notes.txt");
        fs::write(&text, "hello").unwrap();
        assert!(is_tar(&plain));
        assert!(is_tar(&gz));
        assert!(!is_tar(&text));
    }
}
