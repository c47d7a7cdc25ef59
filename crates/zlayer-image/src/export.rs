//! `zlayer image save IMG... -o FILE`: one OCI image-layout tarball holding
//! the images' blobs exactly as stored, so digests survive a round trip
//! through `zlayer image import` on a node with no registry.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::json;

use crate::error::{ImageError, IoContext};
use crate::store::{digest_hex, tempfile_in, ImageStore};

impl ImageStore {
    /// Writes `images` to `out` (atomically); returns the names saved.
    pub fn save(&self, images: &[String], out: &Path) -> Result<Vec<String>, ImageError> {
        let mut entries = Vec::new();
        let mut blobs = BTreeSet::new();
        for image in images {
            let (name, digest) = self.lookup(image)?;
            let manifest = self.manifest(&digest)?;
            let raw = self.read_blob(&digest)?;
            let media_type = serde_json::from_slice::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
            let tag = name
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or("latest", |(_, t)| t);
            entries.push(json!({
                "mediaType": media_type,
                "digest": digest,
                "size": raw.len(),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }));
            blobs.insert(digest.clone());
            blobs.insert(manifest.config().digest().to_string());
            for l in manifest.layers() {
                blobs.insert(l.digest().to_string());
            }
        }
        let index = json!({ "schemaVersion": 2, "manifests": entries });

        let tmp = tempfile_in(out.parent().unwrap_or(Path::new(".")))?;
        let result = self.write_archive(&tmp, &index, &blobs);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        std::fs::rename(&tmp, out).at(out)?;
        Ok(images.iter().map(|i| crate::normalize_name(i)).collect())
    }

    fn write_archive(
        &self,
        path: &Path,
        index: &serde_json::Value,
        blobs: &BTreeSet<String>,
    ) -> Result<(), ImageError> {
        let file = File::create(path).at(path)?;
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        for (name, body) in [
            (
                "oci-layout",
                r#"{"imageLayoutVersion":"1.0.0"}"#.to_string(),
            ),
            ("index.json", index.to_string()),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, body.as_bytes()).at(path)?;
        }
        for digest in blobs {
            let src = self.blob_path(digest)?;
            let mut f = File::open(&src).map_err(|_| ImageError::MissingBlob(digest.clone()))?;
            let name = format!("blobs/sha256/{}", digest_hex(digest)?);
            tar.append_file(&name, &mut f).at(path)?;
        }
        let mut w = tar.into_inner().at(path)?;
        w.flush().at(path)?;
        w.get_ref().sync_all().at(path)
    }
}
