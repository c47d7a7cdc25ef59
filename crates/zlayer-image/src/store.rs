//! The content-addressed store under `<data-dir>/images/`:
//! `blobs/sha256/<hex>` (manifests, configs, layer archives as received),
//! `layers/<diff-id hex>/` (each layer unpacked once), `refs.json` (name ->
//! manifest digest) and `snapshots/<container>/` (see [`crate::Snapshot`]).
//! Writers hold an exclusive flock on `lock`; blobs and layers appear by
//! atomic rename, so a crash never leaves a half-written entry visible.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ImageError, IoContext};
use crate::reference::normalize_name;
use crate::unpack::{unpack_layer_limited, LayerLimits};

/// Layer limits, from `ZLAYER_MAX_LAYER_BYTES` and `ZLAYER_MAX_LAYER_ENTRIES`
/// where set (every process that unpacks reads the same variables).
fn limits_from_env() -> Result<LayerLimits, ImageError> {
    let mut limits = LayerLimits::default();
    for (var, field) in [
        ("ZLAYER_MAX_LAYER_BYTES", &mut limits.max_bytes),
        ("ZLAYER_MAX_LAYER_ENTRIES", &mut limits.max_entries),
    ] {
        if let Ok(v) = std::env::var(var) {
            *field = v
                .parse()
                .map_err(|_| ImageError::Metadata(format!("{var}={v}: expected a whole number")))?;
        }
    }
    Ok(limits)
}

#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    limits: LayerLimits,
}

/// One tagged image, as listed by `zlayer image ls`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub digest: String,
    /// Sum of the layer archives' sizes, in bytes.
    pub size: u64,
    pub layers: usize,
    /// Containers whose snapshot uses this image.
    pub containers: usize,
}

/// An image ready to run: its config and its unpacked layers, bottom first.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub name: String,
    pub manifest_digest: String,
    pub config: ImageConfiguration,
    pub layer_dirs: Vec<PathBuf>,
}

impl ImageStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for sub in ["blobs/sha256", "layers", "snapshots", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).at(&d)?;
        }
        Ok(ImageStore {
            root,
            limits: limits_from_env()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Exclusive lock for writes that may delete or retag (import, remove,
    /// prune). Adding content (pulls, unpacking) takes it shared, so those
    /// run side by side but never while something is being collected.
    pub(crate) fn lock(&self) -> Result<Flock<File>, ImageError> {
        self.flock("lock", FlockArg::LockExclusive)
    }

    pub(crate) fn lock_shared(&self) -> Result<Flock<File>, ImageError> {
        self.flock("lock", FlockArg::LockShared)
    }

    fn flock(&self, name: &str, mode: FlockArg) -> Result<Flock<File>, ImageError> {
        let path = self.root.join(name);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        Flock::lock(f, mode).map_err(|(_, e)| ImageError::Io {
            path,
            source: e.into(),
        })
    }

    /// Moves a verified temporary file into place as blob `digest`.
    pub(crate) fn commit_blob(&self, tmp: &Path, digest: &str) -> Result<(), ImageError> {
        let dest = self.blob_path(digest)?;
        File::open(tmp).and_then(|f| f.sync_all()).at(tmp)?;
        fs::rename(tmp, &dest).at(&dest)?;
        sync_parent(&dest)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = digest_hex(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.exists())
    }

    /// Streams `reader` into the store; when `expected` is given the content
    /// must hash to it, else nothing is kept.
    pub fn put_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let tmp = tempfile_in(&self.tmp_dir())?;
        let mut out = File::create(&tmp).at(&tmp)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        let copied = (|| -> io::Result<()> {
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                size += n as u64;
            }
            out.sync_all()
        })();
        if let Err(e) = copied {
            // A full disk or a broken stream leaves nothing behind.
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::Io {
                path: tmp,
                source: e,
            });
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(exp) = expected {
            if exp != digest {
                let _ = fs::remove_file(&tmp);
                return Err(ImageError::DigestMismatch {
                    expected: exp.into(),
                    actual: digest,
                });
            }
        }
        let dest = self.blob_path(&digest)?;
        fs::rename(&tmp, &dest).at(&dest)?;
        sync_parent(&dest)?;
        Ok((digest, size))
    }

    /// Reads a manifest, index or config blob into memory; layers are
    /// streamed instead, so anything over [`MAX_DOCUMENT`] is refused.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        let file = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::MissingBlob(digest.into()),
            _ => ImageError::Io {
                path: p.clone(),
                source: e,
            },
        })?;
        read_document(file, &format!("blob {digest}")).map_err(|e| match e {
            ImageError::Io { source, .. } => ImageError::Io { path: p, source },
            other => other,
        })
    }

    pub(crate) fn refs(&self) -> Result<BTreeMap<String, String>, ImageError> {
        let p = self.root.join("refs.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::Metadata(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::Io { path: p, source: e }),
        }
    }

    pub(crate) fn write_refs(&self, refs: &BTreeMap<String, String>) -> Result<(), ImageError> {
        let p = self.root.join("refs.json");
        let tmp = self.root.join("refs.json.tmp");
        let body =
            serde_json::to_vec_pretty(refs).map_err(|e| ImageError::Metadata(e.to_string()))?;
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(&body).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        fs::rename(&tmp, &p).at(&p)?;
        sync_parent(&p)
    }

    /// Points `name` at a manifest already in the store. Caller holds the
    /// store lock, shared or exclusive.
    pub(crate) fn tag_locked(
        &self,
        name: &str,
        manifest_digest: &str,
    ) -> Result<String, ImageError> {
        self.manifest(manifest_digest)?;
        let name = normalize_name(name);
        let _refs_lock = self.flock("refs.lock", FlockArg::LockExclusive)?;
        let mut refs = self.refs()?;
        refs.insert(name.clone(), manifest_digest.to_string());
        self.write_refs(&refs)?;
        Ok(name)
    }

    pub fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        let b = self.read_blob(digest)?;
        ImageManifest::from_reader(&b[..])
            .map_err(|e| ImageError::Metadata(format!("manifest {digest}: {e}")))
    }

    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let mut out = Vec::new();
        let users = self.snapshot_users()?;
        for (name, digest) in self.refs()? {
            let m = self.manifest(&digest)?;
            out.push(ImageInfo {
                name,
                containers: users.get(&digest).copied().unwrap_or(0),
                size: m.layers().iter().map(|l| l.size()).sum(),
                layers: m.layers().len(),
                digest,
            });
        }
        Ok(out)
    }

    /// The normalized name and manifest digest of a local image (by name or
    /// by manifest digest).
    pub fn lookup(&self, name: &str) -> Result<(String, String), ImageError> {
        if name.starts_with("sha256:") && self.has_blob(name) {
            return Ok((name.to_string(), name.to_string()));
        }
        let n = normalize_name(name);
        let digest = self
            .refs()?
            .get(&n)
            .cloned()
            .ok_or_else(|| ImageError::NotFound { name: name.into() })?;
        Ok((n, digest))
    }

    /// Whether a local image by this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_ok()
    }

    /// Looks up `name` (or a manifest digest) and makes sure its layers are unpacked.
    pub fn resolve(&self, name: &str) -> Result<ResolvedImage, ImageError> {
        let (name, digest) = self.lookup(name)?;
        let manifest = self.manifest(&digest)?;
        let cfg_digest = manifest.config().digest().to_string();
        let cfg_bytes = self.read_blob(&cfg_digest)?;
        let config = ImageConfiguration::from_reader(&cfg_bytes[..])
            .map_err(|e| ImageError::Metadata(format!("config {cfg_digest}: {e}")))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::Metadata(format!(
                "image `{name}`: {} layers but {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layer_dirs = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            layer_dirs.push(self.ensure_unpacked(layer.digest().as_ref(), diff_id)?);
        }
        Ok(ResolvedImage {
            name,
            manifest_digest: digest,
            config,
            layer_dirs,
        })
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    /// Unpacks a layer once; later calls return the existing directory.
    pub(crate) fn ensure_unpacked(
        &self,
        blob_digest: &str,
        diff_id: &str,
    ) -> Result<PathBuf, ImageError> {
        let dir = self.layer_dir(diff_id)?;
        if dir.exists() {
            return Ok(dir);
        }
        let _lock = self.lock_shared()?;
        let staging = tempfile_in(&self.tmp_dir())?;
        fs::create_dir(&staging).at(&staging)?;
        let blob = self.blob_path(blob_digest)?;
        let file = File::open(&blob).map_err(|_| ImageError::MissingBlob(blob_digest.into()))?;
        let result = unpack_layer_limited(io::BufReader::new(file), &staging, self.limits)
            .and_then(|actual| {
                if actual != diff_id {
                    Err(ImageError::DigestMismatch {
                        expected: diff_id.into(),
                        actual,
                    })
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        if let Err(e) = fs::rename(&staging, &dir) {
            let _ = fs::remove_dir_all(&staging);
            // Another process unpacked the same layer first.
            if !dir.exists() {
                return Err(ImageError::Io {
                    path: dir,
                    source: e,
                });
            }
        }
        sync_parent(&dir)?;
        Ok(dir)
    }

    /// Removes a tag; blobs and layers no other image uses are deleted.
    pub fn remove(&self, name: &str) -> Result<String, ImageError> {
        let _lock = self.lock()?;
        let n = normalize_name(name);
        let mut refs = self.refs()?;
        let digest = refs
            .get(&n)
            .cloned()
            .ok_or_else(|| ImageError::NotFound { name: name.into() })?;
        let still_tagged = refs.iter().filter(|(_, d)| **d == digest).count() > 1;
        if !still_tagged {
            let users = crate::snapshot::users_of(self, &digest)?;
            if !users.is_empty() {
                return Err(ImageError::InUse {
                    name: n,
                    users: users.join(", "),
                });
            }
        }
        refs.remove(&n);
        self.write_refs(&refs)?;
        self.collect_garbage(&refs)?;
        Ok(n)
    }
}

/// The largest manifest, index or config accepted (containerd's limit too).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Reads a JSON document of at most [`MAX_DOCUMENT`] bytes.
pub(crate) fn read_document(reader: impl Read, what: &str) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    reader
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut out)
        .at(what)?;
    if out.len() as u64 > MAX_DOCUMENT {
        return Err(ImageError::DocumentTooLarge {
            what: what.into(),
            size: out.len() as u64,
            limit: MAX_DOCUMENT,
        });
    }
    Ok(out)
}

/// Makes a rename into `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

pub(crate) fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        ImageError::Metadata(format!("unsupported digest `{digest}` (only sha256)"))
    })?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::Metadata(format!("malformed digest `{digest}`")));
    }
    Ok(hex)
}

/// A fresh, unused path inside `dir` (not created).
pub(crate) fn tempfile_in(dir: &Path) -> Result<PathBuf, ImageError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(dir.join(format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )))
}
