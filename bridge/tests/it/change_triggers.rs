//! The change feed's triggers on a real Foreman database: only changes of
//! columns the bridge reads are logged; Foreman's own role keeps writing
//! (without any right on `pvc`) through an upgrade that adds, renames and
//! drops columns; `migrate` is idempotent and reports renamed columns;
//! pruning; and `migrate --uninstall` (library and CLI) removes everything.

use std::time::{Duration, Instant};

use pvc_bridge::changes::tables::{affects, Affects, Dep};
use pvc_bridge::store::pvc::{changes, migrate_with};
use pvc_testkit::cluster::{self, TestDb};
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::support::{config_for, migrated_db, TestBridge};

/// One row of `pvc.changes`.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    id: i64,
    tbl: String,
    op: String,
    keys: Value,
    drift: bool,
}

/// The rows logged after id `after`, in id order.
async fn changes_after(client: &Client, after: i64) -> Vec<Change> {
    client
        .query(
            "SELECT id, tbl, op::text, keys::text, drift FROM pvc.changes \
             WHERE id > $1 ORDER BY id",
            &[&after],
        )
        .await
        .expect("reading pvc.changes")
        .iter()
        .map(|row| {
            let keys: String = row.get(3);
            Change {
                id: row.get(0),
                tbl: row.get(1),
                op: row.get(2),
                keys: serde_json::from_str(&keys).expect("keys are JSON"),
                drift: row.get(4),
            }
        })
        .collect()
}

/// The highest id logged so far (0: none).
async fn newest(client: &Client) -> i64 {
    client
        .query_one("SELECT coalesce(max(id), 0) FROM pvc.changes", &[])
        .await
        .expect("max id")
        .get(0)
}

/// Runs `sql` on `client` and returns what was logged by it.
async fn logged_by(watcher: &Client, writer: &Client, sql: &str) -> Vec<Change> {
    let mark = newest(watcher).await;
    writer
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    changes_after(watcher, mark).await
}

/// Names of the tables carrying the feed's trigger.
async fn triggered_tables(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE t.tgname = $1 ORDER BY 1",
            &[&changes::TRIGGER],
        )
        .await
        .expect("pg_trigger")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn exists(client: &Client, sql: &str) -> bool {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

async fn role_exists(client: &Client, role: &str) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .expect("pg_roles")
        .get(0)
}

async fn epoch(client: &Client) -> i64 {
    client
        .query_one("SELECT epoch FROM pvc.changes_meta", &[])
        .await
        .expect("changes_meta")
        .get(0)
}

/// (id, name, certname) of the first fixture host.
async fn first_host(client: &Client) -> (i32, String, Option<String>) {
    let row = client
        .query_one(
            "SELECT id, name, certname FROM hosts ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("a fixture host");
    (row.get(0), row.get(1), row.get(2))
}

/// A login role like Foreman's on `db`: it owns Foreman's tables (Foreman
/// runs its own schema migrations) and has every right on them and their
/// sequences, and nothing in `pvc`. Returns a client connected as it.
async fn foreman_role(db: &TestDb, admin: &Client) -> (String, Client) {
    let role = format!("foreman_{}", db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; \
             DO $$ DECLARE t text; BEGIN \
               FOR t IN SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' LOOP \
                 EXECUTE 'ALTER TABLE public.' || t || ' OWNER TO {role}'; \
               END LOOP; \
             END $$; \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .await
        .expect("creating Foreman's role");
    let url = db.primary_url.replacen("postgres@", &format!("{role}@"), 1);
    let client = cluster::connect(&url).await.expect("connecting as Foreman");
    (role, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_changes_of_watched_columns_are_logged() {
    let db = migrated_db("chg_watched").await;
    let client = db.connect_primary().await.expect("primary");
    let (id, name, certname) = first_host(&client).await;
    let host_keys = |name: &str| json!({"id": id, "name": name, "certname": certname});

    // What Foreman writes on every report and check-in.
    for sql in [
        format!("UPDATE hosts SET last_report = now() WHERE id = {id}"),
        format!(
            "UPDATE hosts SET last_report = now(), updated_at = now(), last_compile = now(), \
             global_status = global_status + 1 WHERE id = {id}"
        ),
        // Watched columns set to the values they have.
        format!(
            "UPDATE hosts SET hostgroup_id = hostgroup_id, name = name, comment = comment \
             WHERE id = {id}"
        ),
    ] {
        assert_eq!(logged_by(&client, &client, &sql).await, vec![], "{sql}");
    }

    // A watched column: one row naming the host, old and new.
    let rows = logged_by(
        &client,
        &client,
        &format!("UPDATE hosts SET comment = 'moved by a test' WHERE id = {id}"),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].tbl.as_str(), rows[0].op.as_str()), ("hosts", "U"));
    assert_eq!(
        rows[0].keys,
        json!({"new": host_keys(&name), "old": host_keys(&name)})
    );
    assert!(!rows[0].drift);

    let rows = logged_by(
        &client,
        &client,
        &format!(
            "UPDATE hosts SET hostgroup_id = (SELECT min(id) FROM hostgroups \
             WHERE id IS DISTINCT FROM hosts.hostgroup_id) WHERE id = {id}"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].op, "U");

    // A rename: both names are logged, so both cached names are dropped.
    let rows = logged_by(
        &client,
        &client,
        &format!("UPDATE hosts SET name = 'renamed.example.com' WHERE id = {id}"),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].keys,
        json!({"new": host_keys("renamed.example.com"), "old": host_keys(&name)})
    );
    match affects(&rows[0].tbl, &rows[0].keys) {
        Affects::Some(deps) => {
            assert!(deps.contains(&Dep::Host(i64::from(id))), "{deps:?}");
            assert!(deps.contains(&Dep::host_name(&name)), "{deps:?}");
            assert!(deps.contains(&Dep::host_name("renamed.example.com")));
        }
        Affects::All => panic!("a host change must be targeted"),
    }

    // One row per row changed, in the statement's transaction.
    let rows = logged_by(
        &client,
        &client,
        "UPDATE hosts SET comment = comment || ' (bulk)' WHERE id IN \
         (SELECT id FROM hosts ORDER BY id LIMIT 3)",
    )
    .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let meta = client
        .query_one(
            "SELECT count(DISTINCT xid), bool_and(lsn > '0/0' AND lsn <= pg_current_wal_insert_lsn()) \
             FROM pvc.changes WHERE id >= $1",
            &[&rows[0].id],
        )
        .await
        .expect("xid and lsn");
    assert_eq!(meta.get::<_, i64>(0), 1, "one transaction");
    assert!(meta.get::<_, bool>(1), "rows carry a WAL position");

    // A host parameter: inserted, changed, touched, deleted.
    let mark = newest(&client).await;
    let parameter: i32 = client
        .query_one(
            "INSERT INTO parameters (name, value, reference_id, type, created_at, updated_at) \
             VALUES ('pvc_test', 'one', $1, 'HostParameter', now(), now()) RETURNING id",
            &[&id],
        )
        .await
        .expect("insert a parameter")
        .get(0);
    let param_keys = json!({"type": "HostParameter", "reference_id": id});
    let rows = changes_after(&client, mark).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].tbl.as_str(), rows[0].op.as_str()),
        ("parameters", "I")
    );
    assert_eq!(rows[0].keys, json!({"new": param_keys, "old": {}}));
    assert_eq!(
        affects(&rows[0].tbl, &rows[0].keys),
        Affects::Some(vec![Dep::Host(i64::from(id))])
    );
    let touch = format!("UPDATE parameters SET updated_at = now() WHERE id = {parameter}");
    assert_eq!(logged_by(&client, &client, &touch).await, vec![]);
    let change = format!("UPDATE parameters SET value = 'two' WHERE id = {parameter}");
    let rows = logged_by(&client, &client, &change).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].op, "U");
    let delete = format!("DELETE FROM parameters WHERE id = {parameter}");
    let rows = logged_by(&client, &client, &delete).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].tbl.as_str(), rows[0].op.as_str()),
        ("parameters", "D")
    );
    assert_eq!(rows[0].keys, json!({"new": {}, "old": param_keys}));

    // A rolled-back change leaves no row.
    let rolled_back =
        format!("BEGIN; UPDATE hosts SET comment = 'never' WHERE id = {id}; ROLLBACK");
    assert_eq!(logged_by(&client, &client, &rolled_back).await, vec![]);

    // TRUNCATE (no row trigger fires): one row without keys, which the
    // bridge reads as "everything".
    let rows = logged_by(&client, &client, "TRUNCATE config_group_classes").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].tbl.as_str(), rows[0].op.as_str()),
        ("config_group_classes", "T")
    );
    assert_eq!(
        pvc_bridge::changes::tables::affects(&rows[0].tbl, &rows[0].keys),
        pvc_bridge::changes::tables::Affects::All
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreman_keeps_writing_through_an_upgrade_that_renames_columns() {
    let db = migrated_db("chg_foreman").await;
    let admin = db.connect_primary().await.expect("primary");
    let (role, foreman) = foreman_role(&db, &admin).await;

    // The role has no right on the feed: the trigger writes as its owner.
    let rights = admin
        .query_one(
            "SELECT has_schema_privilege($1, 'pvc', 'USAGE'), \
                    has_table_privilege($1, 'pvc.changes', 'INSERT'), \
                    has_function_privilege($1, 'pvc.log_change()', 'EXECUTE'), \
                    (SELECT rolsuper FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .expect("privileges");
    for i in 0..4 {
        assert!(!rights.get::<_, bool>(i), "{role} must have no right {i}");
    }
    let direct = foreman
        .batch_execute("INSERT INTO pvc.changes (tbl, op, keys) VALUES ('hosts', 'U', '{}')")
        .await
        .expect_err("Foreman's role cannot write the feed itself");
    assert_eq!(
        direct.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    // Foreman-style writes before the upgrade.
    let host: i32 = foreman
        .query_one(
            "INSERT INTO hosts (name, certname, type, created_at, updated_at) \
             VALUES ('new1.example.com', 'new1.example.com', 'Host::Managed', now(), now()) \
             RETURNING id",
            &[],
        )
        .await
        .expect("Foreman inserts a host")
        .get(0);
    let rows = changes_after(&admin, 0).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].tbl.as_str(), rows[0].op.as_str()), ("hosts", "I"));
    assert_eq!(rows[0].keys["new"]["id"], json!(host));
    let report = format!("UPDATE hosts SET last_report = now() WHERE id = {host}");
    assert_eq!(logged_by(&admin, &foreman, &report).await, vec![]);

    // The upgrade, run by Foreman's role as Foreman's migrations run.
    foreman
        .batch_execute(
            "ALTER TABLE hosts ADD COLUMN some_new_col text; \
             ALTER TABLE domains RENAME COLUMN fullname TO full_name",
        )
        .await
        .expect("Foreman's upgrade DDL");

    // hosts: a new unwatched column changes nothing.
    let rows = logged_by(
        &admin,
        &foreman,
        "INSERT INTO hosts (name, type, some_new_col, created_at, updated_at) \
         VALUES ('new2.example.com', 'Host::Managed', 'a', now(), now())",
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].op.as_str(), rows[0].drift), ("I", false));
    for sql in [
        format!("UPDATE hosts SET some_new_col = 'b' WHERE id = {host}"),
        format!("UPDATE hosts SET last_report = now(), updated_at = now() WHERE id = {host}"),
    ] {
        assert_eq!(logged_by(&admin, &foreman, &sql).await, vec![], "{sql}");
    }
    let rows = logged_by(
        &admin,
        &foreman,
        &format!("UPDATE hosts SET comment = 'upgraded' WHERE id = {host}"),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].op.as_str(), rows[0].drift), ("U", false));

    // domains: a watched column renamed. Foreman's writes still work, and
    // every update is logged as drift (the bridge cannot tell what changed).
    let domain: i32 = foreman
        .query_one(
            "INSERT INTO domains (name, full_name, created_at, updated_at) \
             VALUES ('new.example.org', 'New', now(), now()) RETURNING id",
            &[],
        )
        .await
        .expect("Foreman inserts a domain after the rename")
        .get(0);
    for sql in [
        format!("UPDATE domains SET full_name = 'Newer' WHERE id = {domain}"),
        format!("UPDATE domains SET updated_at = now() WHERE id = {domain}"),
    ] {
        let rows = logged_by(&admin, &foreman, &sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        assert_eq!(rows[0].tbl, "domains");
        assert_eq!((rows[0].op.as_str(), rows[0].drift), ("U", true), "{sql}");
        assert_eq!(
            rows[0].keys,
            json!({"new": {"id": domain}, "old": {"id": domain}})
        );
    }
    let rows = logged_by(
        &admin,
        &foreman,
        &format!("DELETE FROM domains WHERE id = {domain}"),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].op, "D");

    // A key column renamed: the row cannot be attributed, so it affects
    // everything rather than nothing.
    foreman
        .batch_execute("ALTER TABLE parameters RENAME COLUMN reference_id TO owner_ref")
        .await
        .expect("renaming a key column");
    let rows = logged_by(
        &admin,
        &foreman,
        &format!(
            "INSERT INTO parameters (name, value, owner_ref, type, created_at, updated_at) \
             VALUES ('p', 'v', {host}, 'HostParameter', now(), now())"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].keys["new"],
        json!({"type": "HostParameter", "reference_id": null})
    );
    assert_eq!(affects(&rows[0].tbl, &rows[0].keys), Affects::All);

    // Watched columns dropped: the trigger depends on none of them.
    foreman
        .batch_execute(
            "ALTER TABLE domains DROP COLUMN full_name; \
             ALTER TABLE hosts DROP COLUMN comment",
        )
        .await
        .expect("dropping watched columns");
    let rows = logged_by(
        &admin,
        &foreman,
        &format!("UPDATE hosts SET last_report = now() WHERE id = {host}"),
    )
    .await;
    assert_eq!(
        rows.len(),
        1,
        "a missing watched column logs every update: {rows:?}"
    );
    assert!(rows[0].drift);
    let rows = logged_by(
        &admin,
        &foreman,
        &format!(
            "INSERT INTO domains (name, created_at, updated_at) VALUES ('x.example.org', now(), now()); \
             UPDATE domains SET name = 'y.example.org' WHERE name = 'x.example.org'; \
             DELETE FROM hosts WHERE id = {host}"
        ),
    )
    .await;
    let ops: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.tbl.as_str(), r.op.as_str()))
        .collect();
    assert_eq!(ops, [("domains", "I"), ("domains", "U"), ("hosts", "D")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_reports_renamed_columns() {
    let db = migrated_db("chg_migrate").await;
    let client = db.connect_primary().await.expect("primary");
    let before = triggered_tables(&client).await;
    assert!(before.contains(&"hosts".to_owned()), "{before:?}");
    assert!(before.contains(&"parameters".to_owned()), "{before:?}");
    let epoch_before = epoch(&client).await;

    let again = pvc_bridge::store::pvc::migrate(&client)
        .await
        .expect("migrate again");
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.current, pvc_bridge::store::pvc::SCHEMA_VERSION);
    let mut installed = again.changes.tables.clone();
    installed.sort();
    assert_eq!(installed, before);
    assert!(again.changes.removed.is_empty(), "{again:?}");
    // Every watched table and column exists in Foreman 3.13 + foreman_puppet.
    assert!(again.changes.missing_columns.is_empty(), "{again:?}");
    assert!(again.changes.missing_tables.is_empty(), "{again:?}");
    assert_eq!(triggered_tables(&client).await, before);
    assert_eq!(epoch(&client).await, epoch_before, "the feed was not reset");
    // The function runs as the owner role, with its own search path.
    let function = client
        .query_one(
            "SELECT proowner::regrole::text, prosecdef, proconfig::text \
             FROM pg_proc WHERE oid = 'pvc.log_change()'::regprocedure",
            &[],
        )
        .await
        .expect("pvc.log_change");
    assert_eq!(function.get::<_, String>(0), "pvc_changes");
    assert!(function.get::<_, bool>(1), "SECURITY DEFINER");

    // A Foreman upgrade renamed a watched column; a trigger left on a table
    // no longer watched.
    client
        .batch_execute(
            "ALTER TABLE domains RENAME COLUMN fullname TO full_name; \
             CREATE TRIGGER pvc_changes AFTER UPDATE ON media \
             FOR EACH ROW EXECUTE FUNCTION pvc.log_change('name', '|', 'id')",
        )
        .await
        .expect("upgrade");
    let after = pvc_bridge::store::pvc::migrate(&client)
        .await
        .expect("migrate after the rename");
    assert!(after.applied.is_empty());
    assert!(
        after
            .changes
            .missing_columns
            .contains(&"domains.fullname".to_owned()),
        "{after:?}"
    );
    assert_eq!(after.changes.removed, vec!["media".to_owned()]);
    assert_eq!(triggered_tables(&client).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_removes_everything_and_migrate_reinstalls() {
    // The owner role is cluster-wide: one of this test's own, so no other
    // test's database keeps it alive.
    let role = "pvc_changes_t_uninstall";
    let db = migrated_db("chg_uninstall").await;
    let client = db.connect_primary().await.expect("primary");
    let installed = migrate_with(&client, role)
        .await
        .expect("migrate with a role");
    assert!(role_exists(&client, role).await);
    let tables = triggered_tables(&client).await;
    assert_eq!(tables.len(), installed.changes.tables.len());
    let epoch_before = epoch(&client).await;
    let hosts_before: i64 = client
        .query_one("SELECT count(*) FROM hosts", &[])
        .await
        .expect("hosts")
        .get(0);

    let removed = changes::uninstall(&client, role).await.expect("uninstall");
    assert_eq!(removed.triggers.len(), tables.len(), "{removed:?}");
    assert!(removed.schema);
    assert_eq!(removed.role, Some(Ok(())));
    assert_eq!(triggered_tables(&client).await, Vec::<String>::new());
    assert!(!exists(&client, "SELECT to_regnamespace('pvc') IS NOT NULL").await);
    assert!(
        !exists(
            &client,
            "SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'log_change')"
        )
        .await
    );
    assert!(!role_exists(&client, role).await);
    // Foreman's rows are untouched and its writes work.
    let hosts_after: i64 = client
        .query_one("SELECT count(*) FROM hosts", &[])
        .await
        .expect("hosts")
        .get(0);
    assert_eq!(hosts_after, hosts_before);
    client
        .batch_execute(
            "UPDATE hosts SET comment = 'after uninstall'; \
             INSERT INTO parameters (name, value, reference_id, type, created_at, updated_at) \
             VALUES ('p', 'v', 1, 'HostParameter', now(), now()); \
             DELETE FROM parameters WHERE name = 'p'",
        )
        .await
        .expect("Foreman's writes without the bridge");

    // Twice is harmless.
    let nothing = changes::uninstall(&client, role).await.expect("again");
    assert_eq!(nothing, changes::Uninstalled::default());

    let reinstalled = migrate_with(&client, role).await.expect("migrate again");
    assert_eq!(
        reinstalled.applied,
        (1..=pvc_bridge::store::pvc::SCHEMA_VERSION).collect::<Vec<_>>()
    );
    assert_eq!(triggered_tables(&client).await, tables);
    assert!(role_exists(&client, role).await);
    assert_ne!(
        epoch(&client).await,
        epoch_before,
        "readers must see a reset"
    );
    let rows = logged_by(
        &client,
        &client,
        "UPDATE hosts SET comment = 'reinstalled' WHERE id = 1",
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");

    // Leave no role behind in the shared cluster.
    let removed = changes::uninstall(&client, role).await.expect("cleanup");
    assert_eq!(removed.role, Some(Ok(())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_removes_old_rows_and_records_how_far() {
    let db = migrated_db("chg_prune").await;
    let client = db.connect_primary().await.expect("primary");
    client
        .batch_execute("UPDATE hosts SET comment = 'pruned' WHERE id IN (SELECT id FROM hosts ORDER BY id LIMIT 3)")
        .await
        .expect("changes");
    let upto = newest(&client).await;
    assert!(upto >= 3);
    let pruned_before: i64 = client
        .query_one("SELECT pruned_upto FROM pvc.changes_meta", &[])
        .await
        .expect("meta")
        .get(0);
    assert_eq!(pruned_before, 0);

    // Rows younger than the kept interval stay.
    let kept: i64 = client
        .query_one("SELECT pvc.prune_changes('1 hour')", &[])
        .await
        .expect("prune")
        .get(0);
    assert_eq!(kept, 0);
    assert_eq!(changes_after(&client, 0).await.len(), 3);

    let removed: i64 = client
        .query_one("SELECT pvc.prune_changes('0 seconds')", &[])
        .await
        .expect("prune")
        .get(0);
    assert_eq!(removed, 3);
    assert_eq!(changes_after(&client, 0).await, vec![]);
    let pruned_upto: i64 = client
        .query_one("SELECT pruned_upto FROM pvc.changes_meta", &[])
        .await
        .expect("meta")
        .get(0);
    assert_eq!(pruned_upto, upto);

    // Through the bridge's own call, on its primary pool.
    let bridge = pvc_bridge::Bridge::new(&config_for(&db, &[])).expect("bridge");
    client
        .batch_execute("UPDATE hosts SET comment = 'pruned again' WHERE id = 1")
        .await
        .expect("change");
    let last = newest(&client).await;
    let pooled = bridge.db.write().await.expect("primary pool");
    let n = changes::prune(&pooled, Duration::ZERO)
        .await
        .expect("prune");
    assert_eq!(n, 1);
    let pruned_upto: i64 = client
        .query_one("SELECT pruned_upto FROM pvc.changes_meta", &[])
        .await
        .expect("meta")
        .get(0);
    assert_eq!(pruned_upto, last);
}

/// Runs the built `pvc-bridge` with `args` against `db`, the change feed
/// owned by `role`: (exit code, stdout, stderr).
async fn run_cli(db: &TestDb, role: &str, args: &[&str]) -> (i32, String, String) {
    crate::support::run_bridge_cli(
        args,
        &[
            ("PVC_DATABASE__PRIMARY", &db.primary_url),
            ("PVC_DATABASE__REPLICAS", &db.replica_url),
            ("PVC_CHANGES__OWNER_ROLE", role),
            ("RUST_LOG", "warn"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uninstall_command_refuses_while_the_outbox_holds_items() {
    let role = "pvc_changes_t_cli";
    let db = migrated_db("chg_cli").await;
    let client = db.connect_primary().await.expect("primary");

    let (code, out, err) = run_cli(&db, role, &["migrate"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pvc schema is current"), "{out}");
    assert!(
        out.contains(&format!("function owned by role {role}")),
        "{out}"
    );
    let owner: String = client
        .query_one(
            "SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'pvc.log_change()'::regprocedure",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, role);
    let tables = triggered_tables(&client).await;
    assert!(!tables.is_empty());

    client
        .batch_execute(
            "INSERT INTO pvc.outbox (kind, certname, first_enqueued, enqueued, next_attempt) \
             VALUES ('facts', 'waiting.example.com', now(), now(), now())",
        )
        .await
        .expect("an outbox item");
    let (code, out, err) = run_cli(&db, role, &["migrate", "--uninstall"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the outbox holds 1 items"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(exists(&client, "SELECT to_regnamespace('pvc') IS NOT NULL").await);
    assert_eq!(triggered_tables(&client).await, tables);

    // --force only goes with --uninstall.
    let (code, _, err) = run_cli(&db, role, &["migrate", "--force"]).await;
    assert_eq!(code, 2, "{err}");

    let (code, out, err) = run_cli(&db, role, &["migrate", "--uninstall", "--force"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("change feed triggers removed: {}", tables.len())),
        "{out}"
    );
    assert!(out.contains("schema pvc: dropped"), "{out}");
    assert!(out.contains(&format!("role {role}: dropped")), "{out}");
    assert_eq!(triggered_tables(&client).await, Vec::<String>::new());
    assert!(!exists(&client, "SELECT to_regnamespace('pvc') IS NOT NULL").await);
    assert!(!role_exists(&client, role).await);

    let (code, out, err) = run_cli(&db, role, &["migrate", "--uninstall"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("schema pvc: was not there"), "{out}");
}

/// The value of the sample `series` (name with labels) in `/metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a number"))
    })
}

/// Waits (bounded) until `ready` holds.
async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_what_the_feed_did() {
    use std::sync::atomic::Ordering;

    let db = migrated_db("chg_metrics").await;
    let bridge = TestBridge::start(config_for(&db, &[("PVC_CHANGES__POLL_MS", "20")])).await;
    let feed = std::sync::Arc::clone(&bridge.bridge.feed);
    let (_, _, metrics) = bridge.get("/metrics").await;
    assert!(
        metrics.contains("# TYPE pvc_bridge_changes_last_read_age_seconds gauge"),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "pvc_bridge_changes_last_read_age_seconds"),
        None,
        "no age before the first read"
    );
    assert_eq!(sample(&metrics, "pvc_bridge_changes_rows_total"), Some(0.0));

    feed.spawn();
    wait_until("the first read", || {
        feed.stats.last_read_ms.load(Ordering::Relaxed) > 0
    })
    .await;
    crate::support::write_and_replicate(&db, "UPDATE hosts SET comment = 'metrics' WHERE id = 1")
        .await;
    wait_until("the host change", || {
        feed.stats.rows.load(Ordering::Relaxed) >= 1
    })
    .await;
    crate::support::write_and_replicate(
        &db,
        "UPDATE settings SET value = '--- 10' WHERE name = 'bcrypt_cost'",
    )
    .await;
    wait_until("the setting change", || {
        feed.stats.flushes_global.load(Ordering::Relaxed) >= 1
    })
    .await;

    let (status, _, metrics) = bridge.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "pvc_bridge_changes_rows_total"), Some(2.0));
    assert_eq!(
        sample(
            &metrics,
            "pvc_bridge_changes_flushes_total{cause=\"global\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "pvc_bridge_changes_flushes_total{cause=\"reset\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "pvc_bridge_changes_drift_rows_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "pvc_bridge_enc_invalidations_total{scope=\"targeted\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "pvc_bridge_enc_invalidations_total{scope=\"everything\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "pvc_bridge_changes_position"),
        Some(feed.stats.position.load(Ordering::Relaxed) as f64)
    );
    let age = sample(&metrics, "pvc_bridge_changes_last_read_age_seconds")
        .expect("an age after the first read");
    assert!(age >= 0.0, "{age}");
    for series in [
        "pvc_bridge_changes_read_errors_total",
        "pvc_bridge_changes_open_gaps",
        "pvc_bridge_changes_pruned_rows_total",
        "pvc_bridge_enc_superseded_loads_total",
    ] {
        assert!(sample(&metrics, series).is_some(), "{series}: {metrics}");
        assert!(metrics.contains(&format!("# HELP {series} ")), "{series}");
    }
    bridge.stop().await;
}
