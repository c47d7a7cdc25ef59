//! Adding locally made content to the store: a layer archive written by a
//! builder, then an image config and manifest over a list of layers, tagged.
//! A builder holds [`ImageStore::pin`] while it works, so no prune or
//! `image rm` collects its layers before the image that uses them is tagged.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifestBuilder, MediaType};

use crate::error::ImageError;
use crate::store::ImageStore;

/// Held while a build adds content; collection waits for it.
pub struct StorePin {
    _lock: Flock<File>,
}

/// A layer in the store: its archive (as in the manifest) and its unpacked form.
#[derive(Clone, Debug)]
pub struct StoredLayer {
    pub descriptor: Descriptor,
    pub diff_id: String,
    pub dir: PathBuf,
}

impl ImageStore {
    /// Keeps collection (prune, `image rm`) out until dropped.
    pub fn pin(&self) -> Result<StorePin, ImageError> {
        Ok(StorePin {
            _lock: self.lock_shared()?,
        })
    }

    /// A fresh path under the store's own temporary directory (same
    /// filesystem, so a commit is a rename). Cleared by `image prune`.
    pub fn temp_path(&self) -> Result<PathBuf, ImageError> {
        crate::store::tempfile_in(&self.tmp_dir())
    }

    /// Moves a finished layer archive into the store and unpacks it. The
    /// caller computed both digests while writing; unpacking checks `diff_id`.
    pub fn commit_layer(
        &self,
        archive: &Path,
        media_type: MediaType,
        blob_digest: &str,
        size: u64,
        diff_id: &str,
    ) -> Result<StoredLayer, ImageError> {
        if self.has_blob(blob_digest) {
            let _ = std::fs::remove_file(archive);
        } else {
            self.commit_blob(archive, blob_digest)?;
        }
        let dir = self.ensure_unpacked(blob_digest, diff_id)?;
        Ok(StoredLayer {
            descriptor: crate::import::descriptor(media_type, blob_digest, size)?,
            diff_id: diff_id.to_string(),
            dir,
        })
    }

    /// The unpacked directory of a layer already in the store, if it is whole.
    pub fn stored_layer(&self, descriptor: &Descriptor, diff_id: &str) -> Option<StoredLayer> {
        let blob = descriptor.digest().to_string();
        if !self.has_blob(&blob) {
            return None;
        }
        let dir = self.ensure_unpacked(&blob, diff_id).ok()?;
        Some(StoredLayer {
            descriptor: descriptor.clone(),
            diff_id: diff_id.to_string(),
            dir,
        })
    }

    /// Writes `config_bytes` (an OCI image config, checked) and a manifest over `layers`, and tags it as each of
    /// `names`; returns the manifest digest.
    pub fn commit_image(
        &self,
        config_bytes: &[u8],
        layers: &[Descriptor],
        names: &[String],
    ) -> Result<String, ImageError> {
        ImageConfiguration::from_reader(config_bytes)
            .map_err(|e| ImageError::Metadata(format!("the image config is not valid: {e}")))?;
        let (config_digest, config_size) = self.put_blob(&mut &config_bytes[..], None)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(crate::import::descriptor(
                MediaType::ImageConfig,
                &config_digest,
                config_size,
            )?)
            .layers(layers.to_vec())
            .build()
            .map_err(|e| ImageError::Metadata(e.to_string()))?;
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::Metadata(e.to_string()))?;
        let (digest, _) = self.put_blob(&mut &bytes[..], None)?;
        for name in names {
            self.tag_locked(name, &digest)?;
        }
        Ok(digest)
    }
}

/// A layer descriptor from its parts (as a build cache records them).
pub fn layer_descriptor(
    media_type: &str,
    digest: &str,
    size: u64,
) -> Result<Descriptor, ImageError> {
    crate::import::descriptor(MediaType::from(media_type), digest, size)
}

/// What `zlayer image inspect` shows.
#[derive(Debug, serde::Serialize)]
pub struct Inspected {
    pub name: String,
    pub digest: String,
    pub layers: Vec<Descriptor>,
    pub config: serde_json::Value,
}

impl ImageStore {
    pub fn inspect(&self, name: &str) -> Result<Inspected, ImageError> {
        let (name, digest) = self.lookup(name)?;
        let manifest = self.manifest(&digest)?;
        let config = serde_json::from_slice(&self.read_blob(manifest.config().digest().as_ref())?)
            .map_err(|e| ImageError::Metadata(format!("config of {name}: {e}")))?;
        Ok(Inspected {
            name,
            digest,
            layers: manifest.layers().clone(),
            config,
        })
    }
}
