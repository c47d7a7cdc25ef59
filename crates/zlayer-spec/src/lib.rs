//! zlayer-spec owns the v1 deployment spec: its types, YAML parsing that keeps
//! line and column, defaults, semantic validation and the JSON Schema.
//!
//! It is pure: no I/O beyond reading the spec file in [`load_file`], no tokio,
//! no knowledge of nodes, containers or Raft. Everything downstream takes a
//! [`Spec`] that has already passed [`parse`], so internal code never re-checks
//! user input.

mod error;
mod load;
mod locate;
mod revision;
mod schedule;
mod types;
mod units;
mod validate;

pub use error::{SpecError, SpecErrors};
pub use load::{load_file, parse};
pub use locate::position;
pub use revision::DeploymentRevision;
pub use schedule::{format_utc, next_fire_ms};
pub use types::*;
pub use units::{Duration, Size};
pub use validate::{claim, claims, is_dns_label, route_key, start_order, warnings, Claim};

/// The JSON Schema of the v1 spec, pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Spec);
    serde_json::to_string_pretty(&schema).expect("schema serializes")
}
