//! The outbox on the primary: claiming due items, reading what to send,
//! recording the result; and the numbers `/metrics` shows of it. The rules
//! (coalescing, versions, claims) live in `pvc.outbox_*` (migration 0003).

use deadpool_postgres::ClientWrapper as Client;

use super::{query, query_one, query_opt, PvcError};
use crate::schedule::Ts;

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// The host's latest facts (read when sent).
    Facts,
    /// One config report, by its id in `pvc.config_reports`.
    Report(i64),
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Facts => "facts",
            ItemKind::Report(_) => "report",
        }
    }
}

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: ItemKind,
    pub certname: String,
    /// Re-armed facts have a higher version: a send of an older one does
    /// not delete the row.
    pub version: i32,
    /// Failed attempts so far.
    pub attempts: i32,
    pub first_enqueued: Ts,
}

/// Claims up to `limit` due items for `owner` for `lease_ms`; with
/// `certname`, only that host's facts (due or not).
pub async fn claim(
    client: &Client,
    owner: &str,
    lease_ms: i64,
    limit: i32,
    certname: Option<&str>,
) -> Result<Vec<OutboxItem>, PvcError> {
    let rows = query(
        client,
        "claiming outbox items",
        "SELECT id, kind, certname, report_id, version, attempts, first_enqueued \
         FROM pvc.outbox_claim($1, $2, $3, $4)",
        &[&owner, &lease_ms, &limit, &certname],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let kind: &str = row.get("kind");
            let kind = match (kind, row.get::<_, Option<i64>>("report_id")) {
                ("facts", _) => ItemKind::Facts,
                ("report", Some(id)) => ItemKind::Report(id),
                (other, _) => {
                    return Err(PvcError::Invalid(format!(
                        "pvc.outbox_claim answered kind {other:?}"
                    )))
                }
            };
            Ok(OutboxItem {
                id: row.get("id"),
                kind,
                certname: row.get("certname"),
                version: row.get("version"),
                attempts: row.get("attempts"),
                first_enqueued: Ts(row.get("first_enqueued")),
            })
        })
        .collect()
}

/// The body Foreman's API takes for `item`, as Foreman documents it:
/// `{"facts": …, "name": …, "certname": …}` (what the stock ENC script
/// sends) or `{"config_report": …}` (what the report processor sends).
/// `None`: nothing left to send (the row it names is gone).
pub async fn payload(client: &Client, item: &OutboxItem) -> Result<Option<Vec<u8>>, PvcError> {
    match item.kind {
        ItemKind::Facts => {
            let row = query_opt(
                client,
                "reading facts to forward",
                "SELECT coalesce(host_name, certname) AS name, facts::text AS facts \
                 FROM pvc.facts WHERE certname = $1",
                &[&item.certname],
            )
            .await?;
            Ok(row.map(|row| {
                let name: &str = row.get("name");
                let facts: &str = row.get("facts");
                // The facts are spliced in as stored, not re-parsed: they can
                // be large, and the database already validated them.
                let mut body = Vec::with_capacity(facts.len() + 2 * name.len() + 48);
                body.extend_from_slice(b"{\"facts\":");
                body.extend_from_slice(facts.as_bytes());
                body.extend_from_slice(b",\"name\":");
                body.extend(serde_json::to_vec(name).expect("a string serialises"));
                body.extend_from_slice(b",\"certname\":");
                body.extend(serde_json::to_vec(&item.certname).expect("a string serialises"));
                body.push(b'}');
                body
            }))
        }
        ItemKind::Report(id) => {
            let row = query_opt(
                client,
                "reading a report to forward",
                "SELECT report::text AS report FROM pvc.config_reports WHERE id = $1",
                &[&id],
            )
            .await?;
            Ok(row.map(|row| {
                let report: &str = row.get("report");
                let mut body = Vec::with_capacity(report.len() + 20);
                body.extend_from_slice(b"{\"config_report\":");
                body.extend_from_slice(report.as_bytes());
                body.push(b'}');
                body
            }))
        }
    }
}

/// Whether the host's facts still wait in the outbox (claimed or not).
/// `false` means a sender finished them: the row is deleted only by a send
/// of its latest version.
pub async fn facts_pending(client: &Client, certname: &str) -> Result<bool, PvcError> {
    let row = query_one(
        client,
        "looking for a host's facts in the outbox",
        "SELECT EXISTS (SELECT 1 FROM pvc.outbox WHERE kind = 'facts' AND certname = $1)",
        &[&certname],
    )
    .await?;
    Ok(row.get(0))
}

/// Foreman took `item`: removed unless re-armed meanwhile. True if removed.
pub async fn done(client: &Client, item: &OutboxItem) -> Result<bool, PvcError> {
    let row = query_one(
        client,
        "recording a forwarded item",
        "SELECT pvc.outbox_done($1, $2)",
        &[&item.id, &item.version],
    )
    .await?;
    Ok(row.get(0))
}

/// Sending `item` failed: due again after `delay_ms`; `dead`: set aside.
pub async fn failed(
    client: &Client,
    item: &OutboxItem,
    status: Option<u16>,
    error: &str,
    delay_ms: i64,
    dead: bool,
) -> Result<(), PvcError> {
    let status = status.map(i32::from);
    query(
        client,
        "recording a failed forward",
        "SELECT pvc.outbox_failed($1, $2, $3, $4, $5, $6)",
        &[&item.id, &item.version, &status, &error, &delay_ms, &dead],
    )
    .await?;
    Ok(())
}

/// What the outbox holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxStats {
    /// Items waiting to be sent (not set aside).
    pub pending: i64,
    /// Items Foreman refused `max_attempts` times.
    pub dead: i64,
    /// Age of the oldest pending item, seconds (0 when empty).
    pub oldest_secs: f64,
}

pub async fn stats(client: &Client) -> Result<OutboxStats, PvcError> {
    let row = query_one(
        client,
        "reading outbox numbers",
        "SELECT count(*) FILTER (WHERE NOT dead) AS pending, \
                count(*) FILTER (WHERE dead) AS dead, \
                coalesce(extract(epoch FROM clock_timestamp() - \
                    min(first_enqueued) FILTER (WHERE NOT dead)), 0)::float8 AS oldest \
         FROM pvc.outbox",
        &[],
    )
    .await?;
    Ok(OutboxStats {
        pending: row.get("pending"),
        dead: row.get("dead"),
        oldest_secs: row.get("oldest"),
    })
}

/// Whether Foreman has a host by this certname or name (Foreman's
/// `import_host` looks for both). Read on the primary: a host Foreman has
/// just created must be seen.
pub async fn foreman_knows(client: &Client, certname: &str, name: &str) -> Result<bool, PvcError> {
    let row = query_one(
        client,
        "looking the host up in Foreman",
        "SELECT EXISTS (SELECT 1 FROM hosts WHERE certname = $1 OR name = $2)",
        &[&certname, &name],
    )
    .await?;
    Ok(row.get(0))
}

/// The primary's current WAL position: every transaction committed before
/// this call (Foreman's, after it answered) is at or before it.
pub async fn current_lsn(client: &Client) -> Result<String, PvcError> {
    let row = query_one(
        client,
        "reading the primary's WAL position",
        "SELECT pg_current_wal_lsn()::text",
        &[],
    )
    .await?;
    Ok(row.get(0))
}
