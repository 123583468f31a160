//! The bridge's own schema (`pvc`) on the primary: migrations, leases (run
//! grants shared by every bridge process), reports and converge requests.
//!
//! - `migrate`: versioned, idempotent schema migrations (`pvc-bridge migrate`).
//! - `leases`: granting a run against a server's shared token bucket, lease
//!   expiry, the lease feed other bridge processes follow.
//! - `reports`: storing an agent's report and releasing its lease.
//! - `converges`: "these hosts must run within T" requests and their progress.
//! - `facts`: fact and config report uploads, and check-ins.
//! - `outbox`: what Foreman has still to be sent.
//! - `audit`: the audit trail's queue, read and emptied by its leader.
//! - `changes`: the change feed's triggers on Foreman's tables, reading and
//!   pruning the feed, and removing everything the bridge installed.
//!
//! Grants and reports are each one call of a PL/pgSQL function: one round
//! trip, atomic, and decided on the database clock so that several bridge
//! processes on one database never together admit beyond a server's budget.
//! Times cross this boundary as [`Ts`] (whole milliseconds); the times that
//! decide leases are stored at millisecond precision so they round-trip
//! exactly.

pub mod audit;
pub mod changes;
mod converges;
mod facts;
mod leases;
mod migrate;
pub mod outbox;
mod reports;

use deadpool_postgres::ClientWrapper as Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::schedule::Ts;

pub use converges::{
    active_converges, converge_progress, create_converge, ConvergeProgress, ConvergeRow,
};
pub use facts::{
    store_config_report, store_facts, ConfigReportStored, FactsOutcome, FactsStored, NewFacts,
};
pub use leases::{expire_leases, grant, lease, leases_since, GrantOutcome, GrantRequest, LeaseRow};
pub use migrate::{
    check_schema, migrate, migrate_with, schema_version, Migrated, DEFAULT_OWNER_ROLE,
    SCHEMA_VERSION,
};
pub use reports::{store_report, LeaseState, NewReport, ReportStored};

/// A failure in the `pvc` schema.
#[derive(Debug, thiserror::Error)]
pub enum PvcError {
    /// The schema, or an object of it this bridge needs, does not exist.
    #[error("the pvc schema is missing or out of date ({detail}); run `pvc-bridge migrate`")]
    SchemaMissing { detail: String },
    #[error("{context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// An argument the database would refuse or misread.
    #[error("{0}")]
    Invalid(String),
}

/// Maps a database error to [`PvcError`], recognising a missing schema,
/// table or function (a bridge started before `pvc-bridge migrate`).
fn db_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PvcError {
    move |source| {
        let missing = [
            SqlState::UNDEFINED_TABLE,
            SqlState::INVALID_SCHEMA_NAME,
            SqlState::UNDEFINED_FUNCTION,
        ];
        match source.code() {
            Some(code) if missing.contains(code) => PvcError::SchemaMissing {
                detail: source
                    .as_db_error()
                    .map(|e| e.message().to_owned())
                    .unwrap_or_else(|| source.to_string()),
            },
            _ => PvcError::Db { context, source },
        }
    }
}

/// `sql` prepared once per connection.
async fn prepare(client: &Client, context: &'static str, sql: &str) -> Result<Statement, PvcError> {
    client.prepare_cached(sql).await.map_err(db_error(context))
}

/// Runs `sql` as a statement prepared once per connection.
async fn query(
    client: &Client,
    context: &'static str,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, PvcError> {
    let statement = prepare(client, context, sql).await?;
    client
        .query(&statement, args)
        .await
        .map_err(db_error(context))
}

async fn query_one(
    client: &Client,
    context: &'static str,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Row, PvcError> {
    let statement = prepare(client, context, sql).await?;
    client
        .query_one(&statement, args)
        .await
        .map_err(db_error(context))
}

async fn query_opt(
    client: &Client,
    context: &'static str,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, PvcError> {
    let statement = prepare(client, context, sql).await?;
    client
        .query_opt(&statement, args)
        .await
        .map_err(db_error(context))
}

/// The database clock now. Needs no schema.
pub async fn db_now(client: &Client) -> Result<Ts, PvcError> {
    let row = query_one(
        client,
        "reading the database clock",
        "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::int8",
        &[],
    )
    .await?;
    Ok(Ts(row.get(0)))
}

/// A run id as the bridge issues them: a UUID in its canonical hyphenated
/// form, returned lowercased; `None` for anything else, which therefore
/// names no lease.
pub fn parse_run_id(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    well_formed.then(|| text.to_ascii_lowercase())
}

/// Refuses a non-finite number before it reaches an interval or a bucket.
fn finite(name: &str, value: f64) -> Result<f64, PvcError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(PvcError::Invalid(format!(
            "{name} must be a finite number, not {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_run_id;

    #[test]
    fn run_ids_are_canonical_uuids() {
        assert_eq!(
            parse_run_id("0E6B1A36-1C4C-4F2B-9A57-3F0C1D2E3F40").as_deref(),
            Some("0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f40")
        );
        for bad in [
            "",
            "not-a-uuid",
            "0e6b1a361c4c4f2b9a573f0c1d2e3f40",
            "{0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f40}",
            "0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f4g",
            "0e6b1a36-1c4c-4f2b-9a57+3f0c1d2e3f40",
            "0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f401",
        ] {
            assert_eq!(parse_run_id(bad), None, "{bad:?}");
        }
    }
}
