//! The testkit cluster is a real primary + streaming hot standby, and the
//! Foreman fixture lands on the replica in a C-collation database.

use std::path::PathBuf;
use std::process::Command;

use pvc_testkit::cluster::{self, shared, Server};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn replica_is_a_streaming_hot_standby() -> anyhow::Result<()> {
    let cluster = shared();
    let db = cluster.empty_db("streaming").await?;
    let primary = db.connect_primary().await?;
    let replica = db.connect_replica().await?;

    let in_recovery = |row: tokio_postgres::Row| row.get::<_, bool>(0);
    assert!(!in_recovery(
        primary.query_one("SELECT pg_is_in_recovery()", &[]).await?
    ));
    assert!(in_recovery(
        replica.query_one("SELECT pg_is_in_recovery()", &[]).await?
    ));
    let receiver = replica
        .query_one("SELECT status FROM pg_stat_wal_receiver", &[])
        .await?;
    assert_eq!(receiver.get::<_, &str>(0), "streaming");

    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await?;
    for i in 0..20 {
        primary
            .execute("INSERT INTO t VALUES ($1, $2)", &[&i, &format!("row {i}")])
            .await?;
        cluster.wait_replica_caught_up().await?;
        // visible on the replica right after the wait, every time
        let row = replica
            .query_one("SELECT v FROM t WHERE id = $1", &[&i])
            .await?;
        assert_eq!(row.get::<_, String>(0), format!("row {i}"));
    }

    let err = replica
        .batch_execute("INSERT INTO t VALUES (100, 'no')")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn foreman_db_has_the_40_hosts_on_the_replica() -> anyhow::Result<()> {
    let db = shared().foreman_db("foreman hosts").await?;
    assert!(db.name.starts_with("t_foreman_hosts_"), "{}", db.name);
    let replica = db.connect_replica().await?;
    let hosts = replica
        .query("SELECT name FROM hosts ORDER BY name", &[])
        .await?;
    let names: Vec<String> = hosts.iter().map(|r| r.get(0)).collect();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/foreman/hosts.txt");
    let expected: Vec<String> = std::fs::read_to_string(fixture)?
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), 40);
    assert_eq!(names, expected);
    Ok(())
}

#[tokio::test]
async fn databases_are_c_collated() -> anyhow::Result<()> {
    for db in [
        shared().foreman_db("collation").await?,
        shared().empty_db("collation").await?,
    ] {
        let replica = db.connect_replica().await?;
        let row = replica
            .query_one(
                "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        assert_eq!(
            (row.get::<_, &str>(0), row.get::<_, &str>(1)),
            ("C.UTF-8", "C.UTF-8")
        );
        // byte order: upper case before lower case, '_' between them
        let row = replica
            .query_one("SELECT string_agg(x, ' ' ORDER BY x) FROM unnest(ARRAY['b', '_a', 'B', 'a', 'A']) x", &[])
            .await?;
        assert_eq!(row.get::<_, &str>(0), "A B _a a b");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_foreman_db_is_its_own_copy_and_is_dropped_after_a_passing_test() -> anyhow::Result<()>
{
    let cluster = shared();
    let (a, b) = tokio::try_join!(cluster.foreman_db("copy"), cluster.foreman_db("copy"))?;
    assert_ne!(a.name, b.name);
    let primary_a = a.connect_primary().await?;
    primary_a
        .batch_execute("ALTER TABLE hosts RENAME TO hosts_gone")
        .await?;
    cluster.wait_replica_caught_up().await?;
    let count = b
        .connect_replica()
        .await?
        .query_one("SELECT count(*) FROM hosts", &[])
        .await?;
    assert_eq!(count.get::<_, i64>(0), 40);

    let name = a.name.clone();
    drop(primary_a);
    drop(a);
    let left = cluster.psql(
        Server::Primary,
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    )?;
    assert_eq!(left, "0");
    Ok(())
}

/// `shared()` and the blocking API work without a runtime too.
#[test]
fn shared_works_outside_a_runtime() -> anyhow::Result<()> {
    let cluster = shared();
    cluster.wait_replica_caught_up_blocking()?;
    assert_eq!(
        cluster.psql(Server::Replica, "postgres", "SELECT pg_is_in_recovery()")?,
        "t"
    );
    assert!(cluster
        .primary_url("x")
        .starts_with("postgres://postgres@127.0.0.1:"));
    assert_ne!(cluster.primary_port(), cluster.replica_port());
    Ok(())
}

/// `pvc-pg up / status / load / down`, end to end, on a second cluster.
#[test]
fn pvc_pg_binary_up_load_status_down() -> anyhow::Result<()> {
    struct Down(PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = cluster::down_dir(&self.0);
        }
    }
    let root = if PathBuf::from("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // named like a throwaway dir, so a later run sweeps it if this one dies
    let dir = root.join(format!("pvc-pg-{}-bin", std::process::id()));
    let _down = Down(dir.clone());
    let pvc_pg = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pvc-pg"))
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    };

    let (ok, stdout, stderr) = pvc_pg(&["up", "--foreman-db", "foreman"]);
    assert!(ok, "{stderr}");
    let env = std::fs::read_to_string(dir.join("env"))?;
    assert_eq!(stdout, env);
    let lines: Vec<&str> = env.lines().collect();
    assert!(
        lines[0].starts_with("PVC_DATABASE__PRIMARY=postgres://postgres@127.0.0.1:")
            && lines[0].ends_with("/foreman"),
        "{env}"
    );
    assert!(
        lines[1].starts_with("PVC_DATABASE__REPLICAS=postgres://postgres@127.0.0.1:")
            && lines[1].ends_with("/foreman"),
        "{env}"
    );

    let (ok, stdout, stderr) = pvc_pg(&["status"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("read-write")
            && stdout.contains("in recovery")
            && stdout.contains("streaming"),
        "{stdout}"
    );

    let sql = dir.join("fleet.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE fleet AS SELECT g AS id FROM generate_series(1, 500) g;",
    )?;
    let (ok, _, stderr) = pvc_pg(&["load", "--db", "foreman", "--sql", sql.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    // `load` waited for the replica
    let cluster = pvc_testkit::cluster::Cluster::open(&dir)?;
    assert_eq!(
        cluster.psql(Server::Replica, "foreman", "SELECT count(*) FROM fleet")?,
        "500"
    );
    assert_eq!(
        cluster.psql(Server::Replica, "foreman", "SELECT count(*) FROM hosts")?,
        "40"
    );

    let (ok, _, stderr) = pvc_pg(&["load", "--db", "foreman", "--sql", "/nonexistent.sql"]);
    assert!(!ok && stderr.contains("/nonexistent.sql"), "{stderr}");

    let (ok, _, stderr) = pvc_pg(&["down"]);
    assert!(ok, "{stderr}");
    assert!(!dir.exists());
    let (ok, _, _) = pvc_pg(&["status"]);
    assert!(!ok);
    Ok(())
}
