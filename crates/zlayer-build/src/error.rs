//! Build errors. Anything tied to an instruction carries the Dockerfile's
//! path, line and column.

use std::path::PathBuf;

use crate::context::ContextError;
use crate::ignore::IgnoreError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}:{line}:{col}: {msg}")]
    At {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error(transparent)]
    Image(#[from] zlayer_image::ImageError),
    #[error(transparent)]
    Runtime(#[from] zlayer_runtime::RuntimeError),
    #[error("{0}")]
    Ignore(#[from] IgnoreError),
    #[error("build context: {0}")]
    Context(ContextError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no Dockerfile at {0}: pass -f FILE, or put a Dockerfile in the build context")]
    NoDockerfile(PathBuf),
    #[error(
        "--build-arg `{0}`: expected NAME=VALUE, or NAME to take the value from the environment"
    )]
    BuildArg(String),
}

impl BuildError {
    pub fn at(file: &str, line: usize, col: usize, msg: String) -> BuildError {
        BuildError::At {
            file: file.to_string(),
            line,
            col,
            msg,
        }
    }
}

impl From<ContextError> for BuildError {
    fn from(e: ContextError) -> Self {
        BuildError::Context(e)
    }
}

pub(crate) trait IoAt<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, BuildError>;
}

impl<T> IoAt<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, BuildError> {
        self.map_err(|source| BuildError::Io {
            path: path.into(),
            source,
        })
    }
}
