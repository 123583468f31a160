//! Leases: a granted run of one host on one puppetserver, until its report
//! or its expiry. Granting goes through `pvc.grant` (one round trip, atomic);
//! a full run takes a token from the server's bucket shared by every bridge
//! process, a cached-catalog run takes none.

use deadpool_postgres::ClientWrapper as Client;
use tokio_postgres::Row;

use super::{db_error, finite, parse_run_id, prepare, query, query_one, query_opt, PvcError};
use crate::schedule::Ts;

/// One grant attempt. `rate` (runs/s) and `burst` (runs) describe the
/// server's budget now; the bucket's level lives in the database.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    pub certname: &'a str,
    pub server: &'a str,
    /// `schedule`, `file_change`, `converge`, …; only `schedule` is held to
    /// `min_gap_secs`.
    pub trigger: &'a str,
    /// `full` (takes a token) or `cached_catalog` (takes none).
    pub mode: &'a str,
    pub rate: f64,
    pub burst: f64,
    /// Grant only while the refilled bucket holds at least this many tokens:
    /// 1 normally; forced runs pass less to overdraw.
    pub min_tokens: f64,
    pub lease_secs: f64,
    /// A scheduled grant is refused within this many seconds of the host's
    /// previous scheduled grant.
    pub min_gap_secs: f64,
}

/// What a grant attempt decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    Granted {
        run_id: String,
        granted: Ts,
        expires: Ts,
    },
    /// The server's bucket is below `min_tokens`.
    NoBudget,
    /// The host holds a live lease: this one.
    InProgress { run_id: String, expires: Ts },
    /// A scheduled run within `min_gap_secs` of the last one.
    TooSoon,
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub run_id: String,
    pub certname: String,
    pub server: String,
    pub trigger: String,
    pub mode: String,
    pub granted: Ts,
    pub expires: Ts,
    /// When it stopped holding its server: the report's arrival, or its
    /// expiry time.
    pub ended: Option<Ts>,
    /// `report` or `expired`.
    pub end_reason: Option<String>,
    pub exit_code: Option<i32>,
}

const LEASE_COLUMNS: &str = "run_id::text AS run_id, certname, server, trigger, mode, \
     pvc.to_ms(granted) AS granted, pvc.to_ms(expires) AS expires, pvc.to_ms(ended) AS ended, \
     end_reason, exit_code";

impl LeaseRow {
    fn from_row(row: &Row) -> LeaseRow {
        LeaseRow {
            run_id: row.get("run_id"),
            certname: row.get("certname"),
            server: row.get("server"),
            trigger: row.get("trigger"),
            mode: row.get("mode"),
            granted: Ts(row.get("granted")),
            expires: Ts(row.get("expires")),
            ended: row.get::<_, Option<i64>>("ended").map(Ts),
            end_reason: row.get("end_reason"),
            exit_code: row.get("exit_code"),
        }
    }
}

impl GrantRequest<'_> {
    fn validate(&self) -> Result<(), PvcError> {
        if !matches!(self.mode, "full" | "cached_catalog") {
            return Err(PvcError::Invalid(format!(
                "run mode must be full or cached_catalog, not {:?}",
                self.mode
            )));
        }
        for (name, value) in [
            ("rate", self.rate),
            ("burst", self.burst),
            ("min_tokens", self.min_tokens),
            ("lease_secs", self.lease_secs),
            ("min_gap_secs", self.min_gap_secs),
        ] {
            finite(name, value)?;
        }
        if self.rate < 0.0 || self.burst < 0.0 {
            return Err(PvcError::Invalid(format!(
                "a server's rate and burst cannot be negative (rate {}, burst {})",
                self.rate, self.burst
            )));
        }
        if self.lease_secs <= 0.0 {
            return Err(PvcError::Invalid(format!(
                "lease_secs must be positive, not {}",
                self.lease_secs
            )));
        }
        Ok(())
    }
}

/// Grants `req.certname` a run on `req.server`, or says why not. Atomic and
/// one round trip; on the primary.
pub async fn grant(client: &Client, req: &GrantRequest<'_>) -> Result<GrantOutcome, PvcError> {
    req.validate()?;
    let row = query_one(
        client,
        "granting a run",
        "SELECT outcome, lease::text AS run_id, pvc.to_ms(lease_granted) AS granted, \
                pvc.to_ms(lease_expires) AS expires \
         FROM pvc.grant($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &req.certname,
            &req.server,
            &req.trigger,
            &req.mode,
            &req.rate,
            &req.burst,
            &req.min_tokens,
            &req.lease_secs,
            &req.min_gap_secs,
        ],
    )
    .await?;
    let outcome: &str = row.get("outcome");
    let lease = || -> Result<(String, Ts, Ts), PvcError> {
        match (
            row.get::<_, Option<String>>("run_id"),
            row.get::<_, Option<i64>>("granted"),
            row.get::<_, Option<i64>>("expires"),
        ) {
            (Some(run_id), Some(granted), Some(expires)) => Ok((run_id, Ts(granted), Ts(expires))),
            _ => Err(PvcError::Invalid(format!(
                "pvc.grant answered {outcome} without its lease"
            ))),
        }
    };
    Ok(match outcome {
        "granted" => {
            let (run_id, granted, expires) = lease()?;
            GrantOutcome::Granted {
                run_id,
                granted,
                expires,
            }
        }
        "in_progress" => {
            let (run_id, _, expires) = lease()?;
            GrantOutcome::InProgress { run_id, expires }
        }
        "too_soon" => GrantOutcome::TooSoon,
        "no_budget" => GrantOutcome::NoBudget,
        other => {
            return Err(PvcError::Invalid(format!(
                "pvc.grant answered an unknown outcome {other:?}"
            )))
        }
    })
}

/// Closes every lease past its expiry (`end_reason = 'expired'`) and frees
/// its host; returns how many. Host rows another transaction holds are left
/// for the next call, so concurrent callers never wait on each other.
pub async fn expire_leases(client: &Client) -> Result<u64, PvcError> {
    let context = "expiring leases";
    let statement = prepare(
        client,
        context,
        "WITH due AS ( \
                 SELECT h.certname, h.run_id FROM pvc.host_runs h \
                 WHERE h.run_id IS NOT NULL AND h.expires <= clock_timestamp() \
                 ORDER BY h.certname \
                 FOR UPDATE SKIP LOCKED), \
             freed AS ( \
                 UPDATE pvc.host_runs h SET run_id = NULL FROM due \
                 WHERE h.certname = due.certname) \
             UPDATE pvc.leases l SET ended = l.expires, end_reason = 'expired' \
             FROM due WHERE l.run_id = due.run_id AND l.ended IS NULL",
    )
    .await?;
    let closed = client
        .execute(&statement, &[])
        .await
        .map_err(db_error(context))?;
    if closed > 0 {
        tracing::info!(leases.expired = closed, "closed expired leases");
    }
    Ok(closed)
}

/// Leases granted after `after`, oldest first: how a bridge process learns
/// of the others' grants (on a replica). Returns about `limit` rows but never
/// splits one millisecond across two pages, so `after = last.granted` is a
/// safe cursor. A grant commits a moment after its `granted` time: a
/// follower re-reads a short overlap and skips run ids it has seen.
pub async fn leases_since(
    client: &Client,
    after: Ts,
    limit: i64,
) -> Result<Vec<LeaseRow>, PvcError> {
    let limit = limit.max(1);
    let rows = query(
        client,
        "reading recent leases",
        &format!(
            "WITH cut AS ( \
                 SELECT granted FROM pvc.leases WHERE granted > pvc.from_ms($1) \
                 ORDER BY granted OFFSET $2::int8 - 1 LIMIT 1) \
             SELECT {LEASE_COLUMNS} FROM pvc.leases \
             WHERE granted > pvc.from_ms($1) \
               AND granted <= coalesce((SELECT granted FROM cut), 'infinity') \
             ORDER BY granted, run_id"
        ),
        &[&after.0, &limit],
    )
    .await?;
    Ok(rows.iter().map(LeaseRow::from_row).collect())
}

/// One lease by run id; `None` for an unknown or malformed id.
pub async fn lease(client: &Client, run_id: &str) -> Result<Option<LeaseRow>, PvcError> {
    let Some(run_id) = parse_run_id(run_id) else {
        return Ok(None);
    };
    let row = query_opt(
        client,
        "reading a lease",
        &format!("SELECT {LEASE_COLUMNS} FROM pvc.leases WHERE run_id = $1::text::uuid"),
        &[&run_id],
    )
    .await?;
    Ok(row.as_ref().map(LeaseRow::from_row))
}
