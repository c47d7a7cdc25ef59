//! The API's errors, typed, and the one place they become HTTP statuses.

use hyper::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is malformed (unknown route, body that does not
    /// parse).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but refused: an invalid spec, a missing `$E:` value, an
    /// image that is not there, a token or node operation the cluster
    /// refuses.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The cluster cannot decide now (no leader, no quorum) or does not know
    /// whether a write took effect; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The node failed (a disk write, a store that cannot be read).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status each error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
