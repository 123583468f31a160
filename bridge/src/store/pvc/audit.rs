//! The audit queue on the primary (`pvc.audit_queue`, `pvc.audit_events`,
//! `pvc.audit_state`, see migration 0003): the rounds' reads, and the
//! writes only the leader makes, each in a transaction that first checks it
//! still leads (the fencing check of `crate::leader`).

use deadpool_postgres::ClientWrapper as Client;

use crate::leader::{self, Role};

/// One queued event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub certname: String,
    /// `facts` or `run`.
    pub kind: String,
    /// `at`, milliseconds since the epoch: the commit time.
    pub at_ms: i64,
    /// The body's JSON text.
    pub body: String,
}

use AuditEvent as Event;

/// Why a leader-only write was not made.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("this bridge no longer leads the audit trail")]
    NotLeader,
    #[error("{context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> QueueError {
    move |source| QueueError::Db { context, source }
}

/// The oldest `limit` queued events, in id order (per host, commit order).
pub async fn fetch(client: &Client, limit: usize) -> Result<Vec<Event>, QueueError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT e.id, e.certname, e.kind, pvc.to_ms(e.at) AS at_ms, e.body::text AS body \
             FROM pvc.audit_queue q JOIN pvc.audit_events e ON e.id = q.event_id \
             ORDER BY q.event_id LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(db("reading the audit queue"))?;
    Ok(rows
        .iter()
        .map(|row| Event {
            id: row.get("id"),
            certname: row.get("certname"),
            kind: row.get("kind"),
            at_ms: row.get("at_ms"),
            body: row.get("body"),
        })
        .collect())
}

/// Queued events and the age of the oldest, in milliseconds (by the
/// database's clock).
pub async fn depth(client: &Client) -> Result<(u64, u64), QueueError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pvc.audit_queue) AS depth, \
                    (SELECT pvc.to_ms(now()) - pvc.to_ms(e.at) \
                     FROM pvc.audit_queue q JOIN pvc.audit_events e ON e.id = q.event_id \
                     ORDER BY q.event_id LIMIT 1) AS lag_ms",
            &[],
        )
        .await
        .map_err(db("measuring the audit queue"))?;
    let depth: i64 = row.get("depth");
    let lag: Option<i64> = row.get("lag_ms");
    Ok((depth.max(0) as u64, lag.unwrap_or(0).max(0) as u64))
}

/// The repository the queue is kept for.
pub async fn state(client: &Client) -> Result<Option<String>, QueueError> {
    let row = client
        .query_opt("SELECT repo_id FROM pvc.audit_state", &[])
        .await
        .map_err(db("reading pvc.audit_state"))?;
    Ok(row.map(|r| r.get(0)))
}

async fn check_leader(tx: &deadpool_postgres::Transaction<'_>, pid: i32) -> Result<(), QueueError> {
    let (class, key) = leader::lock_args(Role::Audit);
    let leads: bool = tx
        .query_one(leader::STILL_LEADER_SQL, &[&class, &key, &pid])
        .await
        .map_err(db("checking the audit leadership"))?
        .get(0);
    if leads {
        Ok(())
    } else {
        Err(QueueError::NotLeader)
    }
}

/// Drops committed events from the queue, if `pid` still leads.
pub async fn remove(client: &mut Client, pid: i32, ids: &[i64]) -> Result<u64, QueueError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    check_leader(&tx, pid).await?;
    let removed = tx
        .execute(
            "DELETE FROM pvc.audit_queue WHERE event_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(db("removing committed events from the audit queue"))?;
    tx.commit()
        .await
        .map_err(db("committing the audit queue"))?;
    Ok(removed)
}

/// Queues every event again and records that the queue is now kept for
/// `repo_id`, if `pid` still leads; how many events were queued anew.
pub async fn requeue_all(client: &mut Client, pid: i32, repo_id: &str) -> Result<u64, QueueError> {
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    check_leader(&tx, pid).await?;
    let queued = tx
        .execute(
            "INSERT INTO pvc.audit_queue (event_id) SELECT id FROM pvc.audit_events \
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .map_err(db("queueing every audit event again"))?;
    tx.execute(
        "INSERT INTO pvc.audit_state (repo_id, updated) VALUES ($1, now()) \
         ON CONFLICT (singleton) DO UPDATE SET repo_id = excluded.repo_id, updated = now()",
        &[&repo_id],
    )
    .await
    .map_err(db("recording the audit repository"))?;
    tx.commit().await.map_err(db("committing the rebuild"))?;
    Ok(queued)
}
