//! Downloading one blob into the store: streamed to a temporary file with
//! bounded memory, hashed as it arrives, retried with exponential backoff
//! and resumed from the last byte written (HTTP Range). Only content that
//! hashes to the descriptor's digest is renamed into `blobs/`; anything else
//! is deleted.

use std::path::PathBuf;
use std::time::Duration;

use backon::BackoffBuilder;
use futures::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::error::ImageError;
use crate::progress::{Progress, TransferEvent};
use crate::registry::{error_chain, Remote};
use crate::store::{tempfile_in, ImageStore};

const RETRIES: usize = 8;
const WRITE_BUFFER: usize = 1 << 20;

/// The largest compressed layer a pull accepts.
pub const MAX_LAYER_BLOB: u64 = 16 << 30;

/// Fetches `desc` unless the store has it; returns whether it was cached.
/// A descriptor with no size, or one over `cap`, is refused before any
/// byte is fetched; the download may never grow past the declared size.
pub(crate) async fn fetch_blob(
    store: &ImageStore,
    remote: &Remote,
    desc: &OciDescriptor,
    cap: u64,
    progress: &dyn Progress,
) -> Result<bool, ImageError> {
    let declared = u64::try_from(desc.size).unwrap_or(0);
    if declared == 0 {
        return Err(ImageError::UndeclaredSize(desc.digest.clone()));
    }
    if declared > cap {
        return Err(ImageError::DocumentTooLarge {
            what: format!("blob {} (as its descriptor declares)", desc.digest),
            size: declared,
            limit: cap,
        });
    }
    let digest = desc.digest.clone();
    if store.has_blob(&digest) {
        progress.event(TransferEvent::Done {
            digest,
            cached: true,
        });
        return Ok(true);
    }
    let size = u64::try_from(desc.size).unwrap_or(0);
    let path = tempfile_in(&store.tmp_dir())?;
    let result = fetch_to(&path, remote, desc, size, progress).await;
    let committed = result.and_then(|()| store.commit_blob(&path, &digest));
    if committed.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    committed?;
    progress.event(TransferEvent::Done {
        digest,
        cached: false,
    });
    Ok(false)
}

/// A download in progress: what is on disk and the hash of exactly that.
struct Partial {
    path: PathBuf,
    file: BufWriter<tokio::fs::File>,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    async fn append(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| io_err(&self.path, e))?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), ImageError> {
        self.file.flush().await.map_err(|e| io_err(&self.path, e))?;
        let f = self.file.get_mut();
        f.set_len(0).await.map_err(|e| io_err(&self.path, e))?;
        f.rewind().await.map_err(|e| io_err(&self.path, e))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }
}

fn io_err(path: &std::path::Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: path.into(),
        source,
    }
}

enum Attempt {
    /// Worth another try: the connection broke or the registry hiccuped.
    Transient(String),
    Fatal(ImageError),
}

async fn fetch_to(
    path: &std::path::Path,
    remote: &Remote,
    desc: &OciDescriptor,
    size: u64,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| io_err(path, e))?;
    let mut part = Partial {
        path: path.into(),
        file: BufWriter::with_capacity(WRITE_BUFFER, file),
        hasher: Sha256::new(),
        len: 0,
    };
    progress.event(TransferEvent::Start {
        digest: desc.digest.clone(),
        size,
        done: 0,
    });
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(RETRIES)
        .with_jitter()
        .build();
    let mut attempt = 0;
    loop {
        match download(&mut part, remote, desc, size, progress).await {
            Ok(()) => break,
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Transient(error)) => {
                let Some(delay) = delays.next() else {
                    return Err(ImageError::Registry {
                        registry: remote.registry.clone(),
                        message: format!(
                            "blob {} failed after {} attempts: {error}",
                            desc.digest,
                            RETRIES + 1
                        ),
                    });
                };
                attempt += 1;
                tracing::info!(blob = %desc.digest, attempt, offset = part.len, %error, "download broke; retrying");
                progress.event(TransferEvent::Retry {
                    digest: desc.digest.clone(),
                    attempt,
                    offset: part.len,
                    error,
                });
                tokio::time::sleep(delay).await;
            }
        }
    }
    part.file.flush().await.map_err(|e| io_err(path, e))?;
    part.file
        .get_ref()
        .sync_all()
        .await
        .map_err(|e| io_err(path, e))?;
    let actual = format!("sha256:{}", hex::encode(part.hasher.finalize()));
    if actual != desc.digest {
        return Err(ImageError::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// One request for the bytes not yet on disk.
async fn download(
    part: &mut Partial,
    remote: &Remote,
    desc: &OciDescriptor,
    size: u64,
    progress: &dyn Progress,
) -> Result<(), Attempt> {
    let client_err = |e: OciDistributionError| classify(remote, e);
    // Always a Range request: a 206 answer comes unverified, so the bytes
    // are hashed once (here) rather than twice. A 200 means start over.
    let response = remote
        .client
        .pull_blob_stream_partial(&remote.reference, desc, part.len, None)
        .await
        .map_err(client_err)?;
    let mut stream = match response {
        BlobResponse::Partial(s) => s,
        BlobResponse::Full(s) => {
            if part.len > 0 {
                part.restart().await.map_err(Attempt::Fatal)?;
            }
            s
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| stream_error(desc, e))?;
        if size > 0 && part.len + chunk.len() as u64 > size {
            return Err(Attempt::Fatal(ImageError::Registry {
                registry: remote.registry.clone(),
                message: format!(
                    "blob {} is larger than its manifest says ({size} bytes)",
                    desc.digest
                ),
            }));
        }
        part.append(&chunk).await.map_err(Attempt::Fatal)?;
        progress.event(TransferEvent::Progress {
            digest: desc.digest.clone(),
            done: part.len,
        });
    }
    if size > 0 && part.len < size {
        return Err(Attempt::Transient(format!(
            "connection closed after {} of {size} bytes",
            part.len
        )));
    }
    Ok(())
}

/// oci-client reports a digest mismatch of a full response as a stream error.
fn stream_error(desc: &OciDescriptor, e: std::io::Error) -> Attempt {
    match e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
        Some(DigestError::VerificationError { actual, .. }) => {
            Attempt::Fatal(ImageError::DigestMismatch {
                expected: desc.digest.clone(),
                actual: actual.clone(),
            })
        }
        _ => Attempt::Transient(e.to_string()),
    }
}

fn classify(remote: &Remote, e: OciDistributionError) -> Attempt {
    match &e {
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            Attempt::Transient(error_chain(&e))
        }
        OciDistributionError::ServerError { code, .. } if *code >= 500 || *code == 429 => {
            Attempt::Transient(error_chain(&e))
        }
        _ => Attempt::Fatal(remote.error(e)),
    }
}
