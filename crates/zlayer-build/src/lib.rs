//! zlayer-build owns `zlayer build`: reading a Dockerfile (a documented
//! subset), the build context and `.dockerignore`, the per-instruction
//! cache, and turning each step into an image layer: `COPY`/`ADD` write
//! files from the context, `RUN` runs in a container of zlayer's own runtime
//! and its overlay upper directory becomes the layer.
//!
//! It uses `zlayer-image` to store layers and images and `zlayer-runtime`
//! to run `RUN` steps. It must not know about services, nodes or the agent,
//! and it never talks to a registry: `FROM` names a local image.

mod builder;
mod cache;
mod clock;
mod config;
mod context;
mod copy;
mod diff;
mod dockerfile;
mod error;
mod ignore;
mod layer;
mod rootfs;
mod run;
mod words;

pub use builder::{build, BuildOptions, Built, Network};
pub use error::BuildError;
