//! zlayer-image owns images on a node: image references, the content-addressed
//! blob store, import of OCI-layout and `docker save` tarballs, layer
//! unpacking (whiteouts, opaque dirs, links, traversal checks) and the
//! overlayfs snapshots that containers run on.
//!
//! It must not run containers or know about services. Layers are unpacked
//! once into `layers/<diff-id>/` and shared read-only by every snapshot.

mod error;
mod import;
mod reference;
mod snapshot;
mod store;
mod unpack;

pub use error::ImageError;
pub use reference::normalize_name;
pub use snapshot::Snapshot;
pub use store::{ImageInfo, ImageStore, ResolvedImage};
pub use unpack::unpack_layer;
