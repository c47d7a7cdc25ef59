//! Runtime errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container runtime: {0}{hint}", hint = hint_for(.0))]
    Libcontainer(#[from] libcontainer::error::LibcontainerError),
    #[error("invalid runtime config: {0}")]
    Spec(String),
    #[error("shim for {id} failed: {reason}")]
    Shim { id: String, reason: String },
    #[error("{0}")]
    Sys(#[from] nix::Error),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("{0}")]
    Cgroups(String),
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, RuntimeError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, RuntimeError> {
        self.map_err(|source| RuntimeError::Io {
            path: path.into(),
            source,
        })
    }
}

/// What to do about the libcontainer failures a user can fix.
fn hint_for(e: &libcontainer::error::LibcontainerError) -> &'static str {
    if e.to_string().contains("Failed to increase rlimit") {
        // cgroup v2 enforces the device allowlist with a BPF program, and
        // libcontainer raises RLIMIT_MEMLOCK to load it.
        "; on cgroup v2 the device allowlist is a BPF program, and loading it needs \
         CAP_SYS_RESOURCE (to raise RLIMIT_MEMLOCK): run zlayer as full root"
    } else {
        ""
    }
}
