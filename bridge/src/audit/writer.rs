//! The audit writer: while this process leads `Role::Audit`, each round
//! takes the oldest queued events, commits them with one `git fast-import`,
//! then drops them from the queue (fenced: only if it still leads). A
//! repository that is not the one the queue was kept for is rebuilt first:
//! host branches deleted, every event queued again.
//!
//! A round that fails after writing to git and before dropping its events
//! is simply redone: the commits name their events, and events a branch
//! already holds are skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::git::GitRepo;
use super::metrics::AuditMetrics;
use super::stream::{Added, Event, Outcome, Planner};
use crate::leader::{Leader, Leadership};
use crate::store::pvc::audit as audit_queue;
use crate::store::Db;

/// Writes the audit trail of one database into one repository.
pub struct AuditWriter {
    repo: GitRepo,
    db: Arc<Db>,
    batch: usize,
    metrics: Arc<AuditMetrics>,
}

impl AuditWriter {
    pub fn new(repo: PathBuf, db: Arc<Db>, batch: usize) -> AuditWriter {
        AuditWriter {
            repo: GitRepo::new(repo),
            db,
            batch: batch.max(1),
            metrics: Arc::new(AuditMetrics::default()),
        }
    }

    pub fn metrics(&self) -> &Arc<AuditMetrics> {
        &self.metrics
    }

    /// One round as the leader whose election session is `pid`: rebuilds
    /// when the repository is not the queue's, commits up to `batch`
    /// queued events and drops them from the queue. Returns how many events
    /// left the queue. Fails, writing nothing, when `pid` does not lead.
    pub async fn run_once(&self, pid: i32) -> anyhow::Result<usize> {
        let mut client = self.db.write().await.context("audit: the primary")?;
        if !crate::leader::still_leader(&client, crate::leader::Role::Audit, pid)
            .await
            .context("audit: checking the leadership")?
        {
            return Err(audit_queue::QueueError::NotLeader.into());
        }
        let repo = self.repo.clone();
        let local = blocking(move || repo.open_or_init()).await?;
        let kept_for = audit_queue::state(&client).await?;
        if kept_for.as_deref() != Some(local.as_str()) {
            self.rebuild(&mut client, pid, &local, kept_for.as_deref())
                .await?;
        }
        let events = audit_queue::fetch(&client, self.batch).await?;
        if events.is_empty() {
            self.measure(&client).await?;
            return Ok(0);
        }
        // No connection is held while git works.
        drop(client);
        let repo = self.repo.clone();
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let outcome = blocking(move || import(&repo, &events)).await?;
        let mut client = self.db.write().await.context("audit: the primary")?;
        audit_queue::remove(&mut client, pid, &ids).await?;
        let m = &self.metrics;
        AuditMetrics::add(&m.events_committed, ids.len() as u64);
        AuditMetrics::add(&m.commits, outcome.commits);
        AuditMetrics::add(&m.events_unchanged, outcome.unchanged + outcome.already);
        AuditMetrics::add(&m.events_invalid, outcome.invalid);
        tracing::debug!(
            events = ids.len(),
            commits = outcome.commits,
            unchanged = outcome.unchanged,
            already = outcome.already,
            "audit round committed"
        );
        self.measure(&client).await?;
        Ok(ids.len())
    }

    async fn rebuild(
        &self,
        client: &mut deadpool_postgres::Object,
        pid: i32,
        local: &str,
        kept_for: Option<&str>,
    ) -> anyhow::Result<()> {
        let repo = self.repo.clone();
        let deleted = blocking(move || repo.delete_host_branches()).await?;
        let queued = audit_queue::requeue_all(client, pid, local).await?;
        AuditMetrics::add(&self.metrics.rebuilds, 1);
        tracing::warn!(
            repo = %self.repo.path().display(),
            repo_id = local,
            queue_kept_for = kept_for.unwrap_or("(none)"),
            branches_deleted = deleted,
            events_queued = queued,
            "audit repository is not the one the queue was kept for: rebuilding it from the database"
        );
        Ok(())
    }

    async fn measure(&self, client: &deadpool_postgres::Object) -> anyhow::Result<()> {
        let (depth, lag_ms) = audit_queue::depth(client).await?;
        AuditMetrics::set(&self.metrics.queue_depth, depth);
        AuditMetrics::set(&self.metrics.lag_millis, lag_ms);
        Ok(())
    }

    /// Rounds every `every` while this process leads (at once again after a
    /// full round: a backlog is worked off without waiting); runs for the
    /// life of the runtime.
    pub async fn run(self, mut leadership: Leadership, every: Duration) {
        loop {
            let pid = leadership.until_leader().await;
            tracing::info!(repo = %self.repo.path().display(), "writing the audit trail");
            while leadership.current() == (Leader::Yes { pid }) {
                match self.run_once(pid).await {
                    Ok(n) if n >= self.batch => continue,
                    Ok(_) => {}
                    Err(error) => {
                        AuditMetrics::add(&self.metrics.errors, 1);
                        tracing::warn!(error = %format!("{error:#}"), "audit round failed; retrying");
                    }
                }
                tokio::time::sleep(every).await;
            }
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("audit: the git task panicked")?
}

/// Commits `events` (id order) with one cat-file reader and one
/// fast-import, then repacks if the packs piled up.
fn import(repo: &GitRepo, events: &[Event]) -> anyhow::Result<Outcome> {
    let mut tips = repo.cat_file()?;
    let mut planner = Planner::new();
    for event in events {
        if let Added::Invalid(why) = planner.add(event, &mut tips)? {
            tracing::warn!(
                event = event.id,
                certname = %event.certname,
                kind = %event.kind,
                why,
                "audit event cannot be committed; dropped from the queue"
            );
        }
    }
    drop(tips);
    let (stream, outcome) = planner.finish();
    if outcome.commits > 0 {
        repo.fast_import(&stream)?;
        if repo.maybe_repack()? {
            tracing::debug!("audit repository repacked");
        }
    }
    Ok(outcome)
}
