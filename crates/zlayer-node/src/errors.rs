//! The parts' errors as API errors.

use zlayer_api::ApiError;
use zlayer_control::ControlError;
use zlayer_state::WriteError;

pub(crate) fn control(e: ControlError) -> ApiError {
    let msg = e.to_string();
    match e {
        ControlError::Write(
            WriteError::NoLeader(_)
            | WriteError::NotLeader
            | WriteError::Unknown { .. }
            | WriteError::Stopped(_),
        ) => ApiError::Unavailable(msg),
        ControlError::Refused(_) | ControlError::Join(_) | ControlError::AlreadyMember { .. } => {
            ApiError::Invalid(msg)
        }
        ControlError::NoSuchNode(_) => ApiError::NotFound(msg),
        ControlError::Write(WriteError::Forbidden(_)) => ApiError::Invalid(msg),
        ControlError::Write(WriteError::Raft(_))
        | ControlError::Files(_)
        | ControlError::Pki(_)
        | ControlError::Member(_) => ApiError::Internal(msg),
    }
}
