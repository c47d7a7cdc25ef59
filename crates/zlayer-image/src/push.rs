//! `zlayer push IMG [DEST]`: sends a local image's blobs (streamed from the
//! store, skipping what the registry already has) and then its manifest,
//! byte for byte, so the pushed digest is the local one.

use std::sync::Arc;

use futures::TryStreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use serde::Serialize;

use crate::error::ImageError;
use crate::progress::{Progress, TransferEvent};
use crate::registry::{RegistryOptions, Remote};
use crate::store::ImageStore;

#[derive(Clone, Debug, Serialize)]
pub struct Pushed {
    pub destination: String,
    pub digest: String,
    pub blobs: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

impl ImageStore {
    pub async fn push(
        &self,
        image: &str,
        destination: Option<&str>,
        opts: &RegistryOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Pushed, ImageError> {
        let (_, digest) = self.lookup(image)?;
        let raw = self.read_blob(&digest)?;
        let manifest = self.manifest(&digest)?;
        let dest = destination.unwrap_or(image);
        let remote = Remote::connect(dest, opts)?;
        if remote.reference.digest().is_some() {
            return Err(ImageError::BadReference {
                reference: dest.into(),
                what: "push to a tag, not a digest".into(),
            });
        }
        remote
            .client
            .auth(&remote.reference, &remote.auth, RegistryOperation::Push)
            .await
            .map_err(|e| remote.error(e))?;

        let blobs: Vec<(String, u64)> = std::iter::once(manifest.config())
            .chain(manifest.layers())
            .map(|d| (d.digest().to_string(), d.size()))
            .collect();
        let mut skipped = 0;
        for (blob, size) in &blobs {
            if push_blob(self, &remote, blob, *size, progress.as_ref()).await? {
                skipped += 1;
            }
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        let content_type = media_type
            .parse()
            .map_err(|_| ImageError::Metadata(format!("manifest media type `{media_type}`")))?;
        remote
            .client
            .push_manifest_raw(&remote.reference, raw, content_type)
            .await
            .map_err(|e| remote.error(e))?;
        Ok(Pushed {
            destination: remote.reference.whole(),
            digest,
            blobs: blobs.len(),
            skipped,
        })
    }
}

/// Streams one blob up unless the registry has it; returns whether skipped.
async fn push_blob(
    store: &ImageStore,
    remote: &Remote,
    digest: &str,
    size: u64,
    progress: &dyn Progress,
) -> Result<bool, ImageError> {
    let exists = remote
        .client
        .blob_exists(&remote.reference, digest)
        .await
        .map_err(|e| remote.error(e))?;
    if exists {
        progress.event(TransferEvent::Done {
            digest: digest.into(),
            cached: true,
        });
        return Ok(true);
    }
    let path = store.blob_path(digest)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ImageError::MissingBlob(digest.into()))?;
    progress.event(TransferEvent::Start {
        digest: digest.into(),
        size,
        done: 0,
    });
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map_err(OciDistributionError::IoError);
    let reference: &Reference = &remote.reference;
    remote
        .client
        .push_blob_stream(reference, stream, digest, Some(size))
        .await
        .map_err(|e| remote.error(e))?;
    progress.event(TransferEvent::Done {
        digest: digest.into(),
        cached: false,
    });
    Ok(false)
}
