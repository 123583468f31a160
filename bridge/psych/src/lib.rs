//! Ruby-shaped values and Psych-compatible YAML.
//!
//! Foreman builds the ENC out of Ruby objects and dumps it with Psych
//! (`to_yaml(line_width: -1)`); its serialized columns hold what Psych wrote.
//! `dump` reproduces Psych's bytes, `load` reads such columns the way
//! `YAML.safe_load` does (YAML 1.1 scalar resolution, Ruby tags).
//!
//! Reference: Ruby 3.1.2, Psych 4.0.x, libyaml 0.2.5 (Debian bookworm).
//!
//! * `emit` — Psych's `YAMLTree` visitor plus libyaml's emitter.
//! * `load` — libyaml's parser (via `libyaml-safer`) into a node tree.
//! * `to_ruby` — Psych's `ToRuby` visitor with Foreman's permitted classes.
//! * `ruby` — the Ruby objects loading builds, and `deep_stringify_keys`.
//! * `scanner` — Psych's `ScalarScanner#tokenize`, shared by both ways.
//! * `float` — Ruby's `Float#to_s`.
#![forbid(unsafe_code)]

mod emit;
mod float;
mod load;
mod ruby;
mod scanner;
mod to_ruby;
mod value;

pub use emit::dump;
pub use float::float_to_s;
pub use load::{load, LoadError};
pub use value::{Map, Value};
