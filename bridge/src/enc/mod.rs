//! The ENC: Foreman rows in, the exact document Foreman + foreman_puppet
//! would answer out. Pure: no I/O, no clock.
//!
//! - `model`: the decoded Foreman rows (`HostInput`).
//! - `build`: `Host#info` provider by provider.
//! - `classify`, `cast`: smart class parameter resolution and typing.
//! - `erb`: the ERB macros rendered without Foreman.

pub mod build;
pub mod cast;
pub mod classify;
pub mod erb;
pub mod model;

pub use erb::Unsupported;
pub use pvc_psych::{Map, Value};

/// The body Foreman answers for `GET /node/<name>?format=yml`.
pub fn to_yaml(info: Map) -> String {
    pvc_psych::dump(&Value::Map(info))
}
