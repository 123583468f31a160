//! The git audit trail: one parentless branch per host, a commit per real
//! change, written by one leader from what the primary stores.

use std::sync::Arc;

use crate::config::Config;
use crate::store::Db;

/// Starts the audit writer when `audit.repo` is set (competes for the
/// leadership; only the leader writes).
pub fn start(config: &Config, db: Arc<Db>) -> anyhow::Result<()> {
    let _ = (config, db);
    Ok(())
}
