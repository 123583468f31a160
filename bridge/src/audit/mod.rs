//! The git audit trail: one parentless branch per host,
//! `refs/heads/hosts/<certname>`, a commit per real change (stable facts
//! that changed, a run that changed resources), written by one leader from
//! what the primary stores, so any number of bridge processes can run and a
//! lost repository is rebuilt from the database. See `docs/audit.md`.
//!
//! - `layout` (pure): `facts.yaml`, `last_run.yaml`, commit messages.
//! - `stream` (pure): a round of events → one `git fast-import` stream.
//! - `git`: the bare repository through the `git` binary.
//! - `queue`: the queue on the primary, leader-only writes fenced.
//! - `writer`: the rounds, the rebuild, the leadership loop.
//! - `history`: `pvc-bridge audit <certname>`.

mod git;
mod history;
mod layout;
mod metrics;
mod stream;
mod writer;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;

pub use crate::store::pvc::audit::QueueError;
pub use history::{print_history, History};
pub use layout::{FACTS_FILE, RUN_FILE};
pub use metrics::{AuditMetrics, AuditSnapshot};
pub use stream::IDENTITY;
pub use writer::AuditWriter;

use crate::config::Config;
use crate::leader::{Leadership, Role};
use crate::store::Db;

/// The metrics of the writer [`start`] started.
static STARTED: OnceLock<Arc<AuditMetrics>> = OnceLock::new();

/// The counters of this process's audit writer; `None` when `audit.repo`
/// is unset (no writer).
pub fn metrics() -> Option<Arc<AuditMetrics>> {
    STARTED.get().cloned()
}

/// Starts the audit writer when `audit.repo` is set (competes for the
/// leadership; only the leader writes). Returns at once; fails only when
/// no `git` binary runs or the election cannot start.
pub fn start(config: &Config, db: Arc<Db>) -> anyhow::Result<()> {
    let Some(repo) = config.audit.repo.clone() else {
        return Ok(());
    };
    let version = git::check_git().context("audit.repo is set")?;
    let leadership = Leadership::spawn(
        &config.database_primary,
        Role::Audit,
        config.connect_timeout,
    )?;
    tracing::info!(repo = %repo.display(), git = version, "audit trail enabled");
    let writer = AuditWriter::new(repo, db, config.audit.batch);
    let _ = STARTED.set(Arc::clone(writer.metrics()));
    let every = Duration::from_secs_f64(config.audit.every_secs);
    tokio::spawn(writer.run(leadership, every));
    Ok(())
}
