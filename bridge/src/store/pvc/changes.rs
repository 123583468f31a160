//! The change feed's SQL: installing the triggers on Foreman's tables (from
//! `changes::tables::WATCHED`), removing everything the bridge installed,
//! reading the feed on a replica, pruning it on the primary.

use deadpool_postgres::ClientWrapper as PooledClient;
use tokio_postgres::Client;

use super::{db_error, PvcError};
use crate::changes::cursor::Snapshot;
use crate::changes::tables::WATCHED;
use crate::store::health::parse_lsn;

/// The row trigger's name on every watched table.
pub const TRIGGER: &str = "pvc_changes";
/// The statement trigger's name (TRUNCATE).
pub const TRUNCATE_TRIGGER: &str = "pvc_changes_truncate";

/// What [`install`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Tables that have the trigger now.
    pub tables: Vec<String>,
    /// Watched tables this database does not have (a plugin not installed).
    pub missing_tables: Vec<String>,
    /// `table.column` watched but not in the table: the bridge's queries of
    /// that column fail too; a Foreman upgrade renamed it.
    pub missing_columns: Vec<String>,
    /// Tables whose trigger was removed (no longer watched).
    pub removed: Vec<String>,
}

/// A role name `migrate` may put into SQL unquoted.
pub fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 63
        && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Installs (or brings up to date) the feed's triggers, the owner role
/// `owner` of the trigger function, and its rights: it may insert into
/// `pvc.changes` and nothing else. Runs in one transaction on `client`
/// (the primary, as a role that owns Foreman's tables or a superuser); the
/// schema must be migrated to version 4 or later.
pub async fn install(client: &Client, owner: &str) -> Result<Installed, PvcError> {
    if !valid_role(owner) {
        return Err(PvcError::Invalid(format!(
            "changes.owner_role {owner:?}: a lowercase SQL identifier is needed"
        )));
    }
    super::migrate::locked_transaction(client, install_in_transaction(client, owner)).await
}

/// No "does not exist, skipping" notice per table in the operator's
/// terminal.
async fn quiet(client: &Client) -> Result<(), PvcError> {
    client
        .batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(db_error("setting client_min_messages"))
}

async fn install_in_transaction(client: &Client, owner: &str) -> Result<Installed, PvcError> {
    quiet(client).await?;
    // The role is cluster-wide: another database's migrate may create it at
    // the same moment.
    client
        .batch_execute(&format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN \
                 BEGIN CREATE ROLE {owner} NOLOGIN; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
               END IF; \
               IF NOT pg_has_role(current_user, '{owner}', 'MEMBER') THEN \
                 EXECUTE 'GRANT {owner} TO ' || quote_ident(current_user); \
               END IF; \
             END $$; \
             GRANT USAGE ON SCHEMA pvc TO {owner}; \
             GRANT INSERT ON pvc.changes TO {owner}; \
             ALTER FUNCTION pvc.log_change() OWNER TO {owner}; \
             REVOKE ALL ON FUNCTION pvc.log_change() FROM PUBLIC;"
        ))
        .await
        .map_err(db_error("setting up the change feed's owner role"))?;

    let mut installed = Installed::default();
    for watch in WATCHED {
        let found = client
            .query_opt(
                "SELECT c.oid::regclass::text, \
                        array(SELECT attname::text FROM pg_attribute \
                              WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped) \
                 FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                &[&watch.table],
            )
            .await
            .map_err(db_error("looking up a watched table"))?;
        let Some(found) = found else {
            installed.missing_tables.push(watch.table.to_owned());
            continue;
        };
        let relation: String = found.get(0);
        let columns: Vec<String> = found.get(1);
        for column in watch.columns.iter().chain(watch.keys) {
            if !columns.iter().any(|c| c == column) {
                installed
                    .missing_columns
                    .push(format!("{}.{column}", watch.table));
            }
        }
        let args: Vec<String> = watch
            .columns
            .iter()
            .copied()
            .chain(std::iter::once("|"))
            .chain(watch.keys.iter().copied())
            .map(quote_literal)
            .collect();
        client
            .batch_execute(&format!(
                "DROP TRIGGER IF EXISTS {TRIGGER} ON {relation}; \
                 DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {relation}; \
                 CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {relation} \
                 FOR EACH ROW EXECUTE FUNCTION pvc.log_change({}); \
                 CREATE TRIGGER {TRUNCATE_TRIGGER} AFTER TRUNCATE ON {relation} \
                 FOR EACH STATEMENT EXECUTE FUNCTION pvc.log_change()",
                args.join(", ")
            ))
            .await
            .map_err(db_error("creating a change feed trigger"))?;
        installed.tables.push(watch.table.to_owned());
    }
    // Tables a previous release watched and this one does not.
    let rows = client
        .query(
            "SELECT t.tgrelid::regclass::text, c.relname::text FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = $1",
            &[&TRIGGER],
        )
        .await
        .map_err(db_error("listing change feed triggers"))?;
    for row in rows {
        let relation: String = row.get(0);
        let name: String = row.get(1);
        if !WATCHED.iter().any(|w| w.table == name) {
            client
                .batch_execute(&format!(
                    "DROP TRIGGER IF EXISTS {TRIGGER} ON {relation}; \
                     DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {relation}"
                ))
                .await
                .map_err(db_error("removing a change feed trigger"))?;
            installed.removed.push(name);
        }
    }
    Ok(installed)
}

/// What [`uninstall`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Uninstalled {
    pub triggers: Vec<String>,
    /// The `pvc` schema was there and is gone.
    pub schema: bool,
    /// The owner role was dropped; `Err` with the reason it was kept (it
    /// still owns something in another database of the cluster).
    pub role: Option<Result<(), String>>,
}

/// Outbox items Foreman has not been sent yet (uninstalling drops them).
pub async fn pending_outbox(client: &Client) -> Result<i64, PvcError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('pvc.outbox') IS NOT NULL", &[])
        .await
        .map_err(db_error("looking for pvc.outbox"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT count(*) FROM pvc.outbox", &[])
        .await
        .map_err(db_error("counting outbox items"))?
        .get(0))
}

/// Removes everything the bridge installed in this database: the triggers
/// on Foreman's tables, the `pvc` schema with all its tables and functions,
/// and the owner role when nothing else uses it. Foreman's own tables and
/// rows are untouched.
pub async fn uninstall(client: &Client, owner: &str) -> Result<Uninstalled, PvcError> {
    if !valid_role(owner) {
        return Err(PvcError::Invalid(format!(
            "changes.owner_role {owner:?}: a lowercase SQL identifier is needed"
        )));
    }
    let mut removed = super::migrate::locked_transaction(client, async {
        quiet(client).await?;
        let mut removed = Uninstalled::default();
        let rows = client
            .query(
                "SELECT t.tgrelid::regclass::text, t.tgname::text FROM pg_trigger t \
                 WHERE t.tgname = ANY($1)",
                &[&vec![TRIGGER, TRUNCATE_TRIGGER]],
            )
            .await
            .map_err(db_error("listing change feed triggers"))?;
        for row in rows {
            let relation: String = row.get(0);
            let name: String = row.get(1);
            client
                .batch_execute(&format!("DROP TRIGGER {name} ON {relation}"))
                .await
                .map_err(db_error("removing a change feed trigger"))?;
            if name == TRIGGER {
                removed.triggers.push(relation);
            }
        }
        removed.schema = client
            .query_one("SELECT to_regnamespace('pvc') IS NOT NULL", &[])
            .await
            .map_err(db_error("looking for schema pvc"))?
            .get(0);
        client
            .batch_execute("DROP SCHEMA IF EXISTS pvc CASCADE")
            .await
            .map_err(db_error("dropping schema pvc"))?;
        Ok::<_, PvcError>(removed)
    })
    .await?;
    // Outside the transaction: a role other databases still use stays.
    let role_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
            &[&owner],
        )
        .await
        .map_err(db_error("looking for the owner role"))?
        .get(0);
    if role_exists {
        removed.role = Some(
            client
                .batch_execute(&format!("DROP ROLE {owner}"))
                .await
                .map_err(|e| {
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                }),
        );
    }
    Ok(removed)
}

/// One row of the feed.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub id: i64,
    pub table: String,
    /// `{"new": {..}, "old": {..}}`: the watched table's key columns.
    pub keys: serde_json::Value,
    pub drift: bool,
}

/// One read of the feed.
#[derive(Debug, Clone)]
pub struct FeedRead {
    pub snapshot: Snapshot,
    /// The server's WAL position when it took the snapshot (replay position
    /// on a replica): every row read was committed at or before it.
    pub position: u64,
    pub epoch: i64,
    pub pruned_upto: i64,
    /// The highest id in the table (committed, visible).
    pub newest: i64,
    /// Rows with ids above the asked one, ascending, at most `limit`.
    pub rows: Vec<ChangeRow>,
}

const READ_FEED: &str = "\
    WITH s AS (SELECT pg_current_snapshot() AS snap, \
                      CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                           ELSE pg_current_wal_insert_lsn() END AS position) \
    SELECT pg_snapshot_xmin(s.snap)::text AS xmin, pg_snapshot_xmax(s.snap)::text AS xmax, \
           s.position::text AS position, m.epoch, m.pruned_upto, \
           (SELECT coalesce(max(id), 0) FROM pvc.changes) AS newest, \
           c.id, c.tbl, c.keys::text AS keys, c.drift \
    FROM s CROSS JOIN pvc.changes_meta m \
    LEFT JOIN LATERAL (SELECT id, tbl, keys, drift FROM pvc.changes \
                       WHERE id > $1 ORDER BY id LIMIT $2) c ON true \
    ORDER BY c.id";

/// Reads the rows after `after` (at most `limit`) and the snapshot they
/// were read under, in one statement.
pub async fn read_feed(
    client: &PooledClient,
    after: i64,
    limit: i64,
) -> Result<FeedRead, PvcError> {
    let statement = client
        .prepare_cached(READ_FEED)
        .await
        .map_err(db_error("preparing the change feed read"))?;
    let rows = client
        .query(&statement, &[&after, &limit])
        .await
        .map_err(db_error("reading the change feed"))?;
    let first = rows.first().ok_or_else(|| PvcError::SchemaMissing {
        detail: "pvc.changes_meta has no row".into(),
    })?;
    let xid = |column: &str| -> Result<u64, PvcError> {
        let text: String = first.get(column);
        text.parse()
            .map_err(|_| PvcError::Invalid(format!("snapshot {column} {text:?}")))
    };
    let position: Option<String> = first.get("position");
    let mut read = FeedRead {
        snapshot: Snapshot {
            xmin: xid("xmin")?,
            xmax: xid("xmax")?,
        },
        position: position.as_deref().and_then(parse_lsn).unwrap_or(0),
        epoch: first.get("epoch"),
        pruned_upto: first.get("pruned_upto"),
        newest: first.get("newest"),
        rows: Vec::with_capacity(rows.len()),
    };
    for row in &rows {
        let Some(id) = row.get::<_, Option<i64>>("id") else {
            continue;
        };
        let keys: String = row.get("keys");
        read.rows.push(ChangeRow {
            id,
            table: row.get("tbl"),
            // The trigger writes `jsonb_build_object`: always JSON.
            keys: serde_json::from_str(&keys).unwrap_or(serde_json::Value::Null),
            drift: row.get("drift"),
        });
    }
    Ok(read)
}

/// Deletes rows older than `keep`; returns how many.
pub async fn prune(client: &PooledClient, keep: std::time::Duration) -> Result<i64, PvcError> {
    let keep = format!("{} milliseconds", keep.as_millis());
    Ok(client
        .query_one("SELECT pvc.prune_changes($1::text::interval)", &[&keep])
        .await
        .map_err(db_error("pruning the change feed"))?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_plain_identifiers() {
        assert!(valid_role("pvc_changes"));
        assert!(valid_role("_x1"));
        assert!(!valid_role(""));
        assert!(!valid_role("Pvc"));
        assert!(!valid_role("a;drop table hosts"));
        assert!(!valid_role("1abc"));
        assert!(!valid_role(&"a".repeat(64)));
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
