//! Garbage collection. An image is referenced by its tags and by every
//! container snapshot made from it; blobs and unpacked layers are kept while
//! any kept image needs them. Runs under the store's exclusive lock, so no
//! pull or unpack is half done while it looks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use crate::error::{ImageError, IoContext};
use crate::snapshot::Snapshot;
use crate::store::{digest_hex, ImageStore};

/// What `zlayer image prune` removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Tags removed (only with `--all`).
    pub untagged: Vec<String>,
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

impl ImageStore {
    /// Manifest digest -> number of containers whose snapshot uses it.
    pub fn snapshot_users(&self) -> Result<BTreeMap<String, usize>, ImageError> {
        let mut users = BTreeMap::new();
        for id in Snapshot::list(self)? {
            let f = self.root().join("snapshots").join(&id).join("image");
            if let Ok(d) = fs::read_to_string(&f) {
                *users.entry(d.trim().to_string()).or_insert(0) += 1;
            }
        }
        Ok(users)
    }

    /// Removes what nothing references. With `all`, tags no container uses
    /// go too (like `docker image prune -a`).
    pub fn prune(&self, all: bool) -> Result<PruneReport, ImageError> {
        let _lock = self.lock()?;
        let mut refs = self.refs()?;
        let users = self.snapshot_users()?;
        let mut report = PruneReport::default();
        if all {
            let unused: Vec<String> = refs
                .iter()
                .filter(|(_, d)| !users.contains_key(*d))
                .map(|(n, _)| n.clone())
                .collect();
            for n in &unused {
                refs.remove(n);
            }
            self.write_refs(&refs)?;
            report.untagged = unused;
        }
        let (blobs, layers, bytes) = self.collect(&refs, &users)?;
        report.blobs = blobs;
        report.layers = layers;
        report.bytes = bytes;
        for e in fs::read_dir(self.tmp_dir()).at(self.tmp_dir())?.flatten() {
            let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
        }
        Ok(report)
    }

    /// After a tag is removed: drop what only it used.
    pub(crate) fn collect_garbage(
        &self,
        refs: &BTreeMap<String, String>,
    ) -> Result<(), ImageError> {
        let users = self.snapshot_users()?;
        self.collect(refs, &users).map(|_| ())
    }

    fn collect(
        &self,
        refs: &BTreeMap<String, String>,
        users: &BTreeMap<String, usize>,
    ) -> Result<(usize, usize, u64), ImageError> {
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers = BTreeSet::new();
        let manifests: BTreeSet<&String> = refs.values().chain(users.keys()).collect();
        for digest in manifests {
            let Ok(m) = self.manifest(digest) else {
                continue;
            };
            keep_blobs.insert(digest_hex(digest)?.to_string());
            keep_blobs.insert(digest_hex(m.config().digest().as_ref())?.to_string());
            for l in m.layers() {
                keep_blobs.insert(digest_hex(l.digest().as_ref())?.to_string());
            }
            let cfg = self.read_blob(m.config().digest().as_ref())?;
            if let Ok(c) = ImageConfiguration::from_reader(&cfg[..]) {
                for d in c.rootfs().diff_ids() {
                    keep_layers.insert(digest_hex(d)?.to_string());
                }
            }
        }
        let (blobs, blob_bytes) = remove_unlisted(&self.root().join("blobs/sha256"), &keep_blobs)?;
        let (layers, layer_bytes) = remove_unlisted(&self.root().join("layers"), &keep_layers)?;
        Ok((blobs, layers, blob_bytes + layer_bytes))
    }
}

/// Deletes entries of `dir` not in `keep`; returns how many and their bytes.
fn remove_unlisted(dir: &Path, keep: &BTreeSet<String>) -> Result<(usize, u64), ImageError> {
    let mut count = 0;
    let mut bytes = 0;
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        if keep.contains(e.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            bytes += du(&p);
            fs::remove_dir_all(&p).at(&p)?;
        } else {
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p).at(&p)?;
        }
        count += 1;
    }
    Ok((count, bytes))
}

fn du(p: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}
