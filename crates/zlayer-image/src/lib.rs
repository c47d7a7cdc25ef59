//! zlayer-image owns images on a node: image references, the content-addressed
//! blob store, import of OCI-layout and `docker save` tarballs, layer
//! unpacking (whiteouts, opaque dirs, links, traversal checks) and the
//! overlayfs snapshots that containers run on, and the registry side:
//! pulls and pushes with `oci-client`, credentials, and OCI archives.
//!
//! It must not run containers or know about services. Layers are unpacked
//! once into `layers/<diff-id>/` and shared read-only by every snapshot.

mod auth;
mod commit;
mod error;
mod export;
mod fetch;
mod gc;
mod import;
mod platform;
mod progress;
mod pull;
mod push;
mod reference;
mod registry;
mod snapshot;
mod store;
mod unpack;

pub use auth::{default_auth_file, remove_credentials, store_credentials};
pub use commit::{layer_descriptor, Inspected, StorePin, StoredLayer};
pub use error::ImageError;
pub use gc::PruneReport;
pub use platform::host_platform;
pub use progress::{Progress, Silent, TransferEvent};
pub use pull::Pulled;
pub use push::Pushed;
pub use reference::normalize_name;
pub use registry::{check_login, is_loopback, BasicCredentials, RegistryOptions};
pub use snapshot::Snapshot;
pub use store::{ImageInfo, ImageStore, ResolvedImage};
pub use unpack::{unpack_layer, unpack_layer_limited, LayerLimits};
