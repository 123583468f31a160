//! Versioned migrations of the `pvc` schema: each applied once, in its own
//! transaction, recorded in `pvc.schema_migrations`. Concurrent `migrate`s
//! (two bridges deployed at once) queue on an advisory lock, so each
//! migration runs exactly once.

use tokio_postgres::Client;

use super::{db_error, PvcError};

struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// In version order; a released migration is never edited, only followed.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "scheduling",
        sql: include_str!("migrations/0001_scheduling.sql"),
    },
    Migration {
        version: 2,
        name: "writes",
        sql: include_str!("migrations/0002_writes.sql"),
    },
    Migration {
        version: 3,
        name: "forwarding",
        sql: include_str!("migrations/0003_forwarding.sql"),
    },
    Migration {
        version: 4,
        name: "changes",
        sql: include_str!("migrations/0004_changes.sql"),
    },
];

/// The schema version this bridge needs.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Serialises migrations of one database ("pvc_mig" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_7663_5f6d_6967;

const BOOTSTRAP: &str = "CREATE SCHEMA IF NOT EXISTS pvc; \
     CREATE TABLE IF NOT EXISTS pvc.schema_migrations \
     (version int PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())";

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Versions applied by this call, in order (empty when up to date).
    pub applied: Vec<u32>,
    /// The schema's version afterwards.
    pub current: u32,
    /// The change feed's triggers (installed or brought up to date).
    pub changes: super::changes::Installed,
}

/// The change feed's owner role when none is configured.
pub const DEFAULT_OWNER_ROLE: &str = "pvc_changes";

/// [`migrate_with`] the default owner role.
pub async fn migrate(client: &Client) -> Result<Migrated, PvcError> {
    migrate_with(client, DEFAULT_OWNER_ROLE).await
}

/// Brings the `pvc` schema to [`SCHEMA_VERSION`] (a no-op when it is
/// there), then installs or updates the change feed's triggers on Foreman's
/// tables with `owner_role` owning the trigger function. Uses `client` for
/// explicit transactions: nothing else may use it meanwhile.
pub async fn migrate_with(client: &Client, owner_role: &str) -> Result<Migrated, PvcError> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if apply(client, migration).await? {
            tracing::info!(
                migration.version = migration.version,
                migration.name = migration.name,
                "applied pvc schema migration"
            );
            applied.push(migration.version);
        }
    }
    let current = schema_version(client).await?.unwrap_or(0);
    let changes = super::changes::install(client, owner_role).await?;
    Ok(Migrated {
        applied,
        current,
        changes,
    })
}

/// Runs `work` in one transaction on `client` holding the migrations'
/// lock (so concurrent `migrate`s queue), committed if it succeeds.
/// `work` must use `client` and nothing else.
pub(super) async fn locked_transaction<T>(
    client: &Client,
    work: impl std::future::Future<Output = Result<T, PvcError>>,
) -> Result<T, PvcError> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(db_error("starting a migration transaction"))?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db_error("waiting for other migrations"))?;
        work.await
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await;
    let value = result?;
    ended.map_err(db_error("committing a migration transaction"))?;
    Ok(value)
}

/// Applies `migration` unless recorded; `true` if it was applied now.
async fn apply(client: &Client, migration: &Migration) -> Result<bool, PvcError> {
    locked_transaction(client, apply_in_transaction(client, migration)).await
}

async fn apply_in_transaction(client: &Client, migration: &Migration) -> Result<bool, PvcError> {
    if schema_version(client).await?.is_none() {
        client
            .batch_execute(BOOTSTRAP)
            .await
            .map_err(db_error("creating schema pvc"))?;
    }
    let version = migration.version as i32;
    let done = client
        .query_opt(
            "SELECT 1 FROM pvc.schema_migrations WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(db_error("reading pvc.schema_migrations"))?;
    if done.is_some() {
        return Ok(false);
    }
    client
        .batch_execute(migration.sql)
        .await
        .map_err(|source| PvcError::Db {
            context: "applying a pvc migration",
            source,
        })?;
    client
        .execute(
            "INSERT INTO pvc.schema_migrations (version, applied) VALUES ($1, clock_timestamp())",
            &[&version],
        )
        .await
        .map_err(db_error("recording a migration"))?;
    Ok(true)
}

/// The highest applied migration; `None` when the schema was never migrated.
pub async fn schema_version(client: &Client) -> Result<Option<u32>, PvcError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('pvc.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db_error("looking for pvc.schema_migrations"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM pvc.schema_migrations", &[])
        .await
        .map_err(db_error("reading pvc.schema_migrations"))?
        .get(0);
    Ok(Some(version.map_or(0, |v| v as u32)))
}

/// At start: the schema must be at least [`SCHEMA_VERSION`]. A newer schema
/// is accepted (migrations only add), so a rollback of the bridge keeps
/// working. Returns the version found.
pub async fn check_schema(client: &Client) -> Result<u32, PvcError> {
    match schema_version(client).await? {
        Some(version) if version >= SCHEMA_VERSION => Ok(version),
        found => Err(PvcError::SchemaMissing {
            detail: format!(
                "schema version {}, this bridge needs {SCHEMA_VERSION}",
                found.unwrap_or(0)
            ),
        }),
    }
}
