//! Ruby-shaped values and Psych-compatible YAML.
//!
//! Foreman builds the ENC out of Ruby objects and dumps it with Psych
//! (`to_yaml(line_width: -1)`); its serialized columns hold what Psych wrote.
//! `dump` reproduces Psych's bytes, `load` reads such columns the way
//! `YAML.safe_load` does (YAML 1.1 scalar resolution, Ruby tags).
#![forbid(unsafe_code)]

mod value;

pub use value::{Map, Value};

/// Error from `load`.
#[derive(Debug, thiserror::Error)]
#[error("invalid YAML: {0}")]
pub struct LoadError(pub String);

/// Ruby `value.to_yaml(line_width: -1)`: a document starting with `---`.
pub fn dump(_value: &Value) -> String {
    todo!("Psych emitter")
}

/// Ruby `YAML.safe_load(text)` with Foreman's permitted classes.
pub fn load(_text: &str) -> Result<Value, LoadError> {
    todo!("Psych loader")
}
