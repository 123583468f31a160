//! pvc-agent: the node daemon. Asks the bridge before every Puppet run,
//! runs Puppet when granted, forces a run when a monitored file changes,
//! uploads facts and reports, and keeps enforcing when the bridge is gone.
//!
//! - `config`: `/etc/pvc.conf` (the original `key=value` keys and the new
//!   ones), Puppet's own settings as defaults.
//! - `decision` (pure): the bridge's `/host` answer → a typed decision.
//! - `client`: HTTP(S) to the bridge, the node's Puppet certificate as
//!   client certificate, re-read when Puppet renews it.
//! - `puppet`: running `puppet agent` and `facter`, Puppet's locks, its
//!   run summary and what the run wrote.
//! - `watch`: monitored files (inotify through `notify`).
//! - `outbox`: reports and facts the bridge could not take yet, on disk.
//! - `backoff` (pure): retry delays, and when to fall back to running
//!   Puppet alone.
//! - `daemon`: the loop tying them together.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod config;
pub mod daemon;
pub mod decision;
pub mod outbox;
pub mod puppet;
pub mod watch;
