//! Capacity sources that need the network: a background poller of each
//! puppetserver's status API (`/status/v1/services/jruby-metrics?level=debug`)
//! over TLS with the bridge's own Puppet certificate.
//!
//! - `tls`: the HTTP client, from PEM files read once at start.
//! - `poller`: one loop per server; results go to a sink the caller owns.
//!
//! The documents themselves are parsed by `crate::schedule::status`, which
//! does no I/O.

mod poller;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;

pub use poller::spawn;

use crate::schedule::ServerSample;

/// One puppetserver to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    /// The server's name, as the scheduler knows it; the sink gets it back.
    pub name: String,
    /// `https://puppet01.example.com:8140`; the poller asks for
    /// `{base_url}/status/v1/services/jruby-metrics?level=debug`.
    pub base_url: String,
}

/// PEM files: the Puppet CA (the only root trusted when given) and the
/// bridge's own Puppet certificate and key, presented as client identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Where results go, each poll: the target's name and the result. Called
/// from the poll loops; keep it quick (store or send, do not block).
pub type Sink = Arc<dyn Fn(&str, PollResult) + Send + Sync>;

/// The outcome of one poll of one server.
#[derive(Debug, Clone, PartialEq)]
pub enum PollResult {
    Ok(ServerSample),
    /// Why no sample: HTTP status, timeout, connection or parse error. Never
    /// holds secrets (no URL credentials, no body beyond the parse error).
    Failed(String),
}
