//! Psych-compatible YAML: `dump` writes what Ruby's
//! `to_yaml(line_width: -1)` writes; `load` reads what Psych wrote into
//! Foreman's serialized columns the way `YAML.safe_load` reads it.

use super::value::Value;

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
