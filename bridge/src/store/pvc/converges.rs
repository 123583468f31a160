//! Converge requests: "these hosts must all run within T". The request is a
//! row; its progress is read from the leases and reports that followed it.

use deadpool_postgres::ClientWrapper as Client;
use tokio_postgres::Row;

use super::{finite, query, query_one, query_opt, PvcError};
use crate::schedule::Ts;

/// A converge request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvergeRow {
    pub id: i64,
    pub created: Ts,
    pub deadline: Ts,
    pub hosts: Vec<String>,
}

impl ConvergeRow {
    fn from_row(row: &Row) -> ConvergeRow {
        ConvergeRow {
            id: row.get("id"),
            created: Ts(row.get("created")),
            deadline: Ts(row.get("deadline")),
            hosts: row.get("hosts"),
        }
    }
}

/// How far a converge request got. A host has *started* once a lease was
/// granted to it at or after the request, *finished* once a report of such
/// a run arrived; it counts as *failed* when its latest such report exited
/// 1, 4 or 6 (`--detailed-exitcodes`: failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergeProgress {
    /// Distinct hosts named.
    pub hosts: usize,
    pub started: usize,
    pub finished: usize,
    pub failed: usize,
    /// When the last host finished, once all have.
    pub done_at: Option<Ts>,
}

/// Records a converge request over `hosts` due within `within_secs` of now
/// (database clock); `spec` is how it was asked (search, hostgroup, …).
pub async fn create_converge(
    client: &Client,
    hosts: &[String],
    within_secs: f64,
    spec: &serde_json::Value,
) -> Result<ConvergeRow, PvcError> {
    if hosts.is_empty() {
        return Err(PvcError::Invalid(
            "a converge request needs at least one host".to_owned(),
        ));
    }
    if finite("within_secs", within_secs)? <= 0.0 {
        return Err(PvcError::Invalid(format!(
            "within_secs must be positive, not {within_secs}"
        )));
    }
    let spec = spec.to_string();
    let row = query_one(
        client,
        "creating a converge request",
        "INSERT INTO pvc.converges (created, deadline, hosts, spec) \
         SELECT t, date_trunc('milliseconds', t + $2::float8 * interval '1 second'), $1, \
                $3::text::jsonb \
         FROM (SELECT date_trunc('milliseconds', clock_timestamp()) AS t) AS now \
         RETURNING id, pvc.to_ms(created) AS created, pvc.to_ms(deadline) AS deadline, hosts",
        &[&hosts, &within_secs, &spec],
    )
    .await?;
    Ok(ConvergeRow::from_row(&row))
}

/// Converge requests whose deadline passed less than an hour ago (or not
/// yet), oldest first.
pub async fn active_converges(client: &Client) -> Result<Vec<ConvergeRow>, PvcError> {
    let rows = query(
        client,
        "reading converge requests",
        "SELECT id, pvc.to_ms(created) AS created, pvc.to_ms(deadline) AS deadline, hosts \
         FROM pvc.converges WHERE deadline > clock_timestamp() - interval '1 hour' \
         ORDER BY id",
        &[],
    )
    .await?;
    Ok(rows.iter().map(ConvergeRow::from_row).collect())
}

/// Progress of converge request `id`; `None` if there is no such request.
pub async fn converge_progress(
    client: &Client,
    id: i64,
) -> Result<Option<ConvergeProgress>, PvcError> {
    // One row per request (none when there is no such request), the
    // aggregate over its hosts beside it.
    let row = query_opt(
        client,
        "reading a converge request's progress",
        "SELECT p.* FROM pvc.converges c CROSS JOIN LATERAL ( \
             SELECT count(*) AS hosts, \
                    count(*) FILTER (WHERE started) AS started, \
                    count(finished_at) AS finished, \
                    count(*) FILTER (WHERE last_exit IN (1, 4, 6)) AS failed, \
                    CASE WHEN count(finished_at) = count(*) \
                         THEN pvc.to_ms(max(finished_at)) END AS done_at \
             FROM ( \
                 SELECT \
                     EXISTS (SELECT 1 FROM pvc.leases l \
                             WHERE l.certname = n.certname AND l.granted >= c.created) \
                         AS started, \
                     (SELECT min(r.received) \
                      FROM pvc.leases l JOIN pvc.reports r ON r.run_id = l.run_id \
                      WHERE l.certname = n.certname AND l.granted >= c.created) \
                         AS finished_at, \
                     (SELECT r.exit_code \
                      FROM pvc.leases l JOIN pvc.reports r ON r.run_id = l.run_id \
                      WHERE l.certname = n.certname AND l.granted >= c.created \
                      ORDER BY r.received DESC, r.id DESC LIMIT 1) AS last_exit \
                 FROM (SELECT DISTINCT unnest(c.hosts) AS certname) AS n \
             ) AS per_host \
         ) AS p \
         WHERE c.id = $1",
        &[&id],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let count = |name: &str| row.get::<_, i64>(name) as usize;
    Ok(Some(ConvergeProgress {
        hosts: count("hosts"),
        started: count("started"),
        finished: count("finished"),
        failed: count("failed"),
        done_at: row.get::<_, Option<i64>>("done_at").map(Ts),
    }))
}
