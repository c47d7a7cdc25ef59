//! Errors of the image store.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image `{name}` is not in the local store; pull it with `zlayer image pull {name}` or import it with `zlayer image import FILE` (the test images: `scripts/build-images`)")]
    NotFound { name: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0}: not an OCI image layout or `docker save` archive (no index.json or manifest.json)"
    )]
    UnknownArchive(String),
    #[error("archive entry `{0}` escapes the layer (path traversal); refusing to unpack")]
    PathTraversal(String),
    #[error("archive entry `{0}` is a whiteout with no name (or `.`/`..`) after `.wh.`; refusing to unpack")]
    BadWhiteout(String),
    #[error("archive entry `{entry}` is under `{parent}`, which leads to no directory inside the layer (a symlink resolves inside the layer, never to the host); refusing to unpack")]
    DanglingParent { entry: String, parent: String },
    #[error("layer exceeds its limit of {limit} {what}; refusing it (nothing of it was kept)")]
    LayerTooLarge { what: &'static str, limit: u64 },
    #[error("blob {0}: its descriptor declares no size, so nothing bounds the download; refusing it (the registry or image must give each descriptor its size)")]
    UndeclaredSize(String),
    #[error("{what} is {size} bytes, over the limit of {limit}; refusing it")]
    DocumentTooLarge { what: String, size: u64, limit: u64 },
    #[error("link `{entry}` -> `{target}` escapes the layer; refusing to unpack")]
    LinkEscape { entry: String, target: String },
    #[error("blob {expected}: the content hashes to {actual}, so it was rejected and nothing of it was kept")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {0} is referenced but missing from the archive or store")]
    MissingBlob(String),
    #[error("invalid image metadata: {0}")]
    Metadata(String),
    #[error("image `{name}` is used by container(s) {users}; stop them first")]
    InUse { name: String, users: String },
    #[error("`{image}` has no manifest for this node's platform {wanted} (the registry offers: {available}); pull an image built for {wanted}")]
    WrongPlatform {
        image: String,
        wanted: String,
        available: String,
    },
    #[error("`{reference}`: {what}")]
    BadReference { reference: String, what: String },
    #[error("`{reference}` was not found in registry {registry}: check the repository name and tag (`zlayer image ls` lists local images)")]
    RemoteNotFound { reference: String, registry: String },
    #[error("registry {registry} refused access to `{reference}` (HTTP 401/403): {hint}")]
    Unauthorized {
        reference: String,
        registry: String,
        hint: String,
    },
    #[error("registry {registry} is unreachable: {reason}{hint}")]
    Unreachable {
        registry: String,
        reason: String,
        hint: &'static str,
    },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("credentials file {path}: {message}")]
    Credentials { path: PathBuf, message: String },
    #[error("mounting snapshot {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::Io {
            path: path.into(),
            source,
        })
    }
}
