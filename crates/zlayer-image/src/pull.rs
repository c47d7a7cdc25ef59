//! `zlayer image pull REF`: resolve the reference (choosing this node's
//! platform from an index), fetch the config and the layers in parallel,
//! unpack each layer as soon as it is verified, then tag. Blobs already in
//! the store are not fetched again, so layers shared by images are stored
//! once. The store's shared lock is held throughout, so a prune cannot
//! collect a half-pulled image.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use oci_client::manifest::OciDescriptor;
use oci_client::Reference;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Serialize;

use crate::error::ImageError;
use crate::fetch::fetch_blob;
use crate::platform::{host_arch, is_index, pick_manifest};
use crate::progress::{Progress, TransferEvent};
use crate::registry::{RegistryOptions, Remote};
use crate::store::ImageStore;

/// Layers fetched at once; more buys nothing on one link and costs memory.
const PARALLEL_LAYERS: usize = 4;

const ACCEPTED_MANIFESTS: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What a pull did, as `zlayer image pull -o json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Pulled {
    pub name: String,
    pub digest: String,
    /// The index digest when the reference named a multi-platform image.
    pub index_digest: Option<String>,
    pub platform: String,
    pub layers: usize,
    /// Layers that were already in the store.
    pub cached_layers: usize,
}

impl ImageStore {
    pub async fn pull(
        &self,
        reference: &str,
        opts: &RegistryOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Pulled, ImageError> {
        let remote = Arc::new(Remote::connect(reference, opts)?);
        let store = self.clone();
        let _lock = tokio::task::spawn_blocking(move || store.lock_shared())
            .await
            .map_err(|e| ImageError::Metadata(e.to_string()))??;

        let (manifest_bytes, digest, index_digest) = resolve_manifest(&remote).await?;
        let manifest = ImageManifest::from_reader(&manifest_bytes[..])
            .map_err(|e| ImageError::Metadata(format!("manifest {digest}: {e}")))?;
        progress.event(TransferEvent::Resolved {
            reference: remote.reference.whole(),
            digest: digest.clone(),
            platform: index_digest.as_ref().map(|_| crate::host_platform()),
        });

        let config_desc = descriptor(manifest.config());
        fetch_blob(
            self,
            &remote,
            &config_desc,
            crate::store::MAX_DOCUMENT,
            &crate::progress::Silent,
        )
        .await?;
        let config = ImageConfiguration::from_reader(&self.read_blob(&config_desc.digest)?[..])
            .map_err(|e| ImageError::Metadata(format!("config {}: {e}", config_desc.digest)))?;
        check_platform(&config, &remote.reference.whole())?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::Metadata(format!(
                "`{}`: the manifest has {} layers but the config {} diff ids",
                remote.reference.whole(),
                manifest.layers().len(),
                diff_ids.len()
            )));
        }

        let jobs = manifest
            .layers()
            .iter()
            .map(descriptor)
            .zip(diff_ids)
            .map(|(desc, diff_id)| {
                let (store, remote, progress) = (self.clone(), remote.clone(), progress.clone());
                async move {
                    let cached = fetch_blob(
                        &store,
                        &remote,
                        &desc,
                        crate::fetch::MAX_LAYER_BLOB,
                        progress.as_ref(),
                    )
                    .await?;
                    let blob = desc.digest.clone();
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || s.ensure_unpacked(&blob, &diff_id))
                        .await
                        .map_err(|e| ImageError::Metadata(e.to_string()))??;
                    progress.event(TransferEvent::Unpacked {
                        digest: desc.digest.clone(),
                    });
                    Ok::<bool, ImageError>(cached)
                }
            });
        let cached: Vec<bool> = futures::stream::iter(jobs)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect()
            .await?;

        let (stored, _) = self.put_blob(&mut &manifest_bytes[..], Some(&digest))?;
        let name = self.tag_locked(&remote.reference.whole(), &stored)?;
        Ok(Pulled {
            name,
            digest: stored,
            index_digest,
            platform: crate::host_platform(),
            layers: cached.len(),
            cached_layers: cached.iter().filter(|c| **c).count(),
        })
    }
}

fn check_document_size(raw: &[u8], digest: &str) -> Result<(), ImageError> {
    let size = raw.len() as u64;
    if size > crate::store::MAX_DOCUMENT {
        return Err(ImageError::DocumentTooLarge {
            what: format!("manifest {digest}"),
            size,
            limit: crate::store::MAX_DOCUMENT,
        });
    }
    Ok(())
}

/// The manifest for this node, its digest, and the index it came from.
async fn resolve_manifest(
    remote: &Remote,
) -> Result<(Vec<u8>, String, Option<String>), ImageError> {
    let (raw, digest) = remote
        .client
        .pull_manifest_raw(&remote.reference, &remote.auth, ACCEPTED_MANIFESTS)
        .await
        .map_err(|e| remote.error(e))?;
    check_document_size(&raw, &digest)?;
    check_digest(&raw, &digest)?;
    let media_type = media_type_of(&raw, &digest)?;
    if !is_index(&media_type) {
        return Ok((raw.to_vec(), digest, None));
    }
    let index = ImageIndex::from_reader(&raw[..])
        .map_err(|e| ImageError::Metadata(format!("index {digest}: {e}")))?;
    let chosen = pick_manifest(&index, &remote.reference.whole())?;
    let by_digest = Reference::with_digest(
        remote.reference.registry().to_string(),
        remote.reference.repository().to_string(),
        chosen.clone(),
    );
    let (raw, got) = remote
        .client
        .pull_manifest_raw(&by_digest, &remote.auth, ACCEPTED_MANIFESTS)
        .await
        .map_err(|e| remote.error(e))?;
    check_document_size(&raw, &chosen)?;
    check_digest(&raw, &chosen)?;
    if got != chosen {
        return Err(ImageError::DigestMismatch {
            expected: chosen,
            actual: got,
        });
    }
    if is_index(&media_type_of(&raw, &chosen)?) {
        return Err(ImageError::Metadata(format!(
            "{chosen}: an index inside an index is not supported"
        )));
    }
    Ok((raw.to_vec(), chosen, Some(digest)))
}

fn check_digest(raw: &[u8], digest: &str) -> Result<(), ImageError> {
    use sha2::{Digest, Sha256};
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(raw)));
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            expected: digest.into(),
            actual,
        });
    }
    Ok(())
}

fn media_type_of(raw: &[u8], digest: &str) -> Result<String, ImageError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: u32,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(raw)
        .map_err(|e| ImageError::Metadata(format!("manifest {digest}: {e}")))?;
    if head.schema_version != 2 {
        return Err(ImageError::Metadata(format!(
            "manifest {digest}: schema version {} is not supported (Docker schema 1 is deprecated); push the image again with a current client",
            head.schema_version
        )));
    }
    Ok(match head.media_type {
        Some(m) => m,
        None if head.manifests.is_some() => "application/vnd.oci.image.index.v1+json".into(),
        None => "application/vnd.oci.image.manifest.v1+json".into(),
    })
}

/// A single-platform manifest for another architecture is refused before
/// its layers are fetched.
fn check_platform(config: &ImageConfiguration, image: &str) -> Result<(), ImageError> {
    let arch = config.architecture().to_string();
    let os = config.os().to_string();
    if os != "linux" || arch != host_arch() {
        return Err(ImageError::WrongPlatform {
            image: image.into(),
            wanted: crate::host_platform(),
            available: format!("{os}/{arch}"),
        });
    }
    Ok(())
}

fn descriptor(d: &oci_spec::image::Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: i64::try_from(d.size()).unwrap_or(i64::MAX),
        urls: d.urls().clone(),
        annotations: d
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        artifact_type: None,
    }
}
