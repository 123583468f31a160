//! pvc-bridge: a Foreman-compatible ENC and (later) the agents' run
//! decisions, served from a moka cache filled from PostgreSQL read replicas.
//!
//! Layout: `enc` (pure ENC computation and Psych-compatible YAML),
//! `store` (all SQL), `cache` (moka), `http` (actix), `config`.
#![forbid(unsafe_code)]

pub mod enc;
