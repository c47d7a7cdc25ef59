//! Timestamps for image configs and history, RFC 3339 in UTC. When
//! `SOURCE_DATE_EPOCH` is set, new layers are dated by it instead of now,
//! for reproducible builds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub fn source_date_epoch() -> Option<String> {
    let secs: u64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string())
}

/// Seconds since the epoch, for tar headers of directories a build creates.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
