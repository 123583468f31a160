//! Leases and reports in the `pvc` schema on a real primary (and its
//! replica for the lease feed): migrations, shared server budgets across
//! bridge processes, expiry, release by report, converge progress.

use std::sync::Arc;
use std::time::Duration;

use pvc_bridge::schedule::Ts;
use pvc_bridge::store::pvc::{
    self, GrantOutcome, GrantRequest, LeaseRow, LeaseState, NewReport, PvcError, SCHEMA_VERSION,
};
use pvc_bridge::store::{Db, PoolOptions, PoolRole};
use pvc_testkit::cluster::{self, TestDb};

use crate::support::foreman_db;

/// One bridge process's pools on `db`.
fn pools(db: &TestDb, max_size: usize) -> Db {
    Db::new(
        &db.primary_url,
        std::slice::from_ref(&db.replica_url),
        &PoolOptions {
            max_size,
            connect_timeout: Duration::from_secs(10),
        },
    )
    .expect("pools")
}

/// A fresh Foreman database with the `pvc` schema, and pools on it.
async fn migrated(hint: &str) -> (TestDb, Db) {
    let db = foreman_db(hint).await;
    let pools = pools(&db, 4);
    pvc::migrate(&pools.write().await.expect("primary"))
        .await
        .expect("migrate");
    (db, pools)
}

/// A full scheduled run with a generous budget; tests change what they test.
fn request<'a>(certname: &'a str, server: &'a str) -> GrantRequest<'a> {
    GrantRequest {
        certname,
        server,
        trigger: "schedule",
        mode: "full",
        rate: 0.0,
        burst: 100.0,
        min_tokens: 1.0,
        lease_secs: 600.0,
        min_gap_secs: 0.0,
    }
}

async fn grant(pools: &Db, req: &GrantRequest<'_>) -> GrantOutcome {
    let client = pools.write().await.expect("primary");
    pvc::grant(&client, req).await.expect("grant")
}

async fn granted(pools: &Db, req: &GrantRequest<'_>) -> (String, Ts, Ts) {
    match grant(pools, req).await {
        GrantOutcome::Granted {
            run_id,
            granted,
            expires,
        } => (run_id, granted, expires),
        other => panic!("{} not granted: {other:?}", req.certname),
    }
}

async fn report(pools: &Db, report: &NewReport<'_>) -> pvc::ReportStored {
    let client = pools.write().await.expect("primary");
    pvc::store_report(&client, report)
        .await
        .expect("store report")
}

/// The report of a run that ended with `exit_code`, and nothing more.
async fn finish(pools: &Db, certname: &str, run_id: &str, exit_code: i32) -> pvc::ReportStored {
    report(
        pools,
        &NewReport {
            certname,
            run_id: Some(run_id),
            exit_code: Some(exit_code),
            ..NewReport::default()
        },
    )
    .await
}

/// The lease `run_id` names; it must exist.
async fn stored_lease(client: &deadpool_postgres::ClientWrapper, run_id: &str) -> LeaseRow {
    pvc::lease(client, run_id)
        .await
        .expect("lease")
        .unwrap_or_else(|| panic!("no lease {run_id}"))
}

/// The run `certname`'s host row holds (`None`: the host is free).
async fn host_run(sql: &tokio_postgres::Client, certname: &str) -> Option<String> {
    sql.query_one(
        "SELECT run_id::text FROM pvc.host_runs WHERE certname = $1",
        &[&certname],
    )
    .await
    .expect("host row")
    .get(0)
}

/// Sleeps until the database clock is past `ts`.
async fn wait_db_clock_past(pools: &Db, ts: Ts) {
    let client = pools.write().await.expect("primary");
    for _ in 0..300 {
        if pvc::db_now(&client).await.expect("db clock") > ts {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the database clock never passed {ts:?}");
}

/// Every column of every schema but `pvc`: what Foreman owns.
async fn foreman_columns(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT format('%s.%s.%s %s %s', table_schema, table_name, column_name, data_type, \
                           coalesce(column_default, '')) \
             FROM information_schema.columns \
             WHERE table_schema NOT IN ('pvc', 'pg_catalog', 'information_schema') \
             ORDER BY table_schema, table_name, ordinal_position",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn scalar_i64(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_versioned_idempotent_and_leaves_foreman_alone() {
    let db = foreman_db("pvc_migrate").await;
    let pools = pools(&db, 2);
    let sql = db.connect_primary().await.expect("primary");
    let before = foreman_columns(&sql).await;
    let hosts_before = scalar_i64(&sql, "SELECT count(*) FROM hosts").await;

    // Before `migrate`: a clear error, not a bare SQL one.
    {
        let client = pools.write().await.expect("primary");
        let error = pvc::grant(&client, &request("a.example.com", "ps1"))
            .await
            .expect_err("no schema yet");
        assert!(matches!(error, PvcError::SchemaMissing { .. }), "{error:?}");
        assert!(error.to_string().contains("pvc-bridge migrate"), "{error}");
        let error = pvc::check_schema(&client).await.expect_err("no schema yet");
        assert!(matches!(error, PvcError::SchemaMissing { .. }));
        assert_eq!(pvc::schema_version(&client).await.expect("version"), None);
    }

    // Two bridges deployed at once: each migration is applied exactly once.
    let (first, second) = (
        db.connect_primary().await.expect("primary"),
        db.connect_primary().await.expect("primary"),
    );
    let (a, b) = tokio::join!(pvc::migrate(&first), pvc::migrate(&second));
    let (a, b) = (a.expect("migrate"), b.expect("migrate"));
    let mut applied: Vec<u32> = a.applied.iter().chain(&b.applied).copied().collect();
    applied.sort();
    assert_eq!(applied, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!((a.current, b.current), (SCHEMA_VERSION, SCHEMA_VERSION));

    let again = pvc::migrate(&sql).await.expect("migrate again");
    assert_eq!(again.applied, Vec::<u32>::new());
    assert_eq!(again.current, SCHEMA_VERSION);
    assert_eq!(
        scalar_i64(&sql, "SELECT count(*) FROM pvc.schema_migrations").await,
        i64::from(SCHEMA_VERSION)
    );

    for table in [
        "pvc.schema_migrations",
        "pvc.servers",
        "pvc.host_runs",
        "pvc.leases",
        "pvc.reports",
        "pvc.converges",
    ] {
        let exists: bool = sql
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .expect("to_regclass")
            .get(0);
        assert!(exists, "{table} missing");
    }
    let client = pools.write().await.expect("primary");
    assert_eq!(
        pvc::check_schema(&client).await.expect("schema"),
        SCHEMA_VERSION
    );

    assert_eq!(foreman_columns(&sql).await, before);
    assert_eq!(
        scalar_i64(&sql, "SELECT count(*) FROM hosts").await,
        hosts_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_a_lease_and_a_live_lease_is_in_progress() {
    let (db, pools) = migrated("pvc_grant").await;
    let req = GrantRequest {
        lease_secs: 300.0,
        ..request("web01.example.com", "ps1.example.com")
    };
    let (run_id, granted_at, expires) = granted(&pools, &req).await;
    assert_eq!(expires, granted_at.plus(300.0));

    let client = pools.write().await.expect("primary");
    let lease = stored_lease(&client, &run_id).await;
    assert_eq!(
        (
            lease.certname.as_str(),
            lease.server.as_str(),
            lease.trigger.as_str(),
            lease.mode.as_str()
        ),
        ("web01.example.com", "ps1.example.com", "schedule", "full")
    );
    assert_eq!(
        (lease.granted, lease.expires, lease.ended),
        (granted_at, expires, None)
    );
    assert_eq!(
        pvc::lease(&client, &run_id.to_uppercase())
            .await
            .expect("lease")
            .map(|l| l.run_id),
        Some(run_id.clone())
    );
    assert_eq!(
        pvc::lease(&client, "not-a-run-id").await.expect("lease"),
        None
    );

    let sql = db.connect_primary().await.expect("primary");
    let host = sql
        .query_one(
            "SELECT run_id::text, server, mode, pvc.to_ms(expires), pvc.to_ms(last_scheduled) \
             FROM pvc.host_runs WHERE certname = 'web01.example.com'",
            &[],
        )
        .await
        .expect("host row");
    assert_eq!(host.get::<_, String>(0), run_id);
    assert_eq!(host.get::<_, String>(1), "ps1.example.com");
    assert_eq!(host.get::<_, String>(2), "full");
    assert_eq!(host.get::<_, i64>(3), expires.0);
    assert_eq!(host.get::<_, i64>(4), granted_at.0);
    // The bucket was created full and gave one token.
    let tokens: f64 = sql
        .query_one(
            "SELECT tokens FROM pvc.servers WHERE name = 'ps1.example.com'",
            &[],
        )
        .await
        .expect("server row")
        .get(0);
    assert_eq!(tokens, 99.0);

    // A second grant, even in another mode, answers the live lease.
    let again = GrantRequest {
        mode: "cached_catalog",
        trigger: "file_change",
        ..req
    };
    assert_eq!(
        grant(&pools, &again).await,
        GrantOutcome::InProgress {
            run_id: run_id.clone(),
            expires
        }
    );
    assert_eq!(scalar_i64(&sql, "SELECT count(*) FROM pvc.leases").await, 1);

    // Other bridge processes follow grants on a replica, page by page.
    let mut run_ids = vec![run_id];
    for host in [
        "web02.example.com",
        "web03.example.com",
        "web04.example.com",
    ] {
        run_ids.push(granted(&pools, &request(host, "ps1.example.com")).await.0);
    }
    cluster::shared()
        .wait_replica_caught_up()
        .await
        .expect("replica caught up");
    let (replica, role) = pools.read().await.expect("replica");
    assert_eq!(role, PoolRole::Replica);
    let all = pvc::leases_since(&replica, Ts(0), 100).await.expect("feed");
    // Grants within one millisecond come in run-id order, not grant order:
    // compare the sets, and the order by grant time below.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    run_ids = sorted(run_ids);
    assert_eq!(
        sorted(all.iter().map(|l| l.run_id.clone()).collect::<Vec<_>>()),
        run_ids
    );
    assert!(all.windows(2).all(|w| w[0].granted <= w[1].granted));
    let mut followed = Vec::new();
    let mut cursor = Ts(0);
    loop {
        let page = pvc::leases_since(&replica, cursor, 1).await.expect("page");
        let Some(last) = page.last() else { break };
        cursor = last.granted;
        followed.extend(page.iter().map(|l| l.run_id.clone()));
    }
    assert_eq!(
        followed.len(),
        run_ids.len(),
        "each lease once: {followed:?}"
    );
    assert_eq!(sorted(followed), run_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridge_processes_never_admit_beyond_a_servers_budget() {
    let (db, _) = migrated("pvc_budget").await;
    let processes = [Arc::new(pools(&db, 8)), Arc::new(pools(&db, 8))];

    // No refill: exactly `burst` grants among all concurrent attempts.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let pools = Arc::clone(&processes[i % 2]);
        tasks.push(tokio::spawn(async move {
            let certname = format!("node{i:03}.example.com");
            let req = GrantRequest {
                rate: 0.0,
                burst: 5.0,
                ..request(&certname, "ps-fixed")
            };
            grant(&pools, &req).await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    let granted_count = outcomes
        .iter()
        .filter(|o| matches!(o, GrantOutcome::Granted { .. }))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == GrantOutcome::NoBudget)
        .count();
    assert_eq!((granted_count, refused), (5, 55));
    let sql = db.connect_primary().await.expect("primary");
    assert_eq!(
        scalar_i64(
            &sql,
            "SELECT count(*) FROM pvc.leases WHERE server = 'ps-fixed'"
        )
        .await,
        5
    );
    // Refused hosts left no trace.
    assert_eq!(
        scalar_i64(&sql, "SELECT count(*) FROM pvc.host_runs").await,
        5
    );

    // With a refill: never more than the bucket plus what the rate refilled
    // over the span of the grants, on the database's own timestamps.
    let (rate, burst) = (5.0, 3.0);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let pools = Arc::clone(&processes[worker % 2]);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..40 {
                let certname = format!("rate{worker}-{i:02}.example.com");
                let req = GrantRequest {
                    rate,
                    burst,
                    ..request(&certname, "ps-rate")
                };
                outcomes.push(grant(&pools, &req).await);
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("task"));
    }
    let granted_count = outcomes
        .iter()
        .filter(|o| matches!(o, GrantOutcome::Granted { .. }))
        .count() as i64;
    // 320 attempts: all granted only if they took over a minute.
    assert!(
        outcomes.contains(&GrantOutcome::NoBudget),
        "the bucket never ran dry"
    );
    let span = sql
        .query_one(
            "SELECT count(*), pvc.to_ms(min(granted)), pvc.to_ms(max(granted)) \
             FROM pvc.leases WHERE server = 'ps-rate'",
            &[],
        )
        .await
        .expect("span");
    let (stored, first, last): (i64, i64, i64) = (span.get(0), span.get(1), span.get(2));
    assert_eq!(stored, granted_count);
    let allowed = burst + rate * Ts(last).since(Ts(first)) + 1.0;
    assert!(
        (granted_count as f64) <= allowed,
        "{granted_count} grants over {} s exceed {allowed}",
        Ts(last).since(Ts(first))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreported_lease_expires() {
    let (db, pools) = migrated("pvc_expiry").await;
    let short = GrantRequest {
        lease_secs: 1.0,
        ..request("db01.example.com", "ps1")
    };
    let (old_run, _, old_expires) = granted(&pools, &short).await;
    assert!(matches!(
        grant(&pools, &short).await,
        GrantOutcome::InProgress { .. }
    ));
    wait_db_clock_past(&pools, old_expires).await;

    // Past its expiry the lease counts as none: the host is granted again.
    let (new_run, _, _) = granted(&pools, &request("db01.example.com", "ps1")).await;
    assert_ne!(new_run, old_run);
    let client = pools.write().await.expect("primary");
    let old = stored_lease(&client, &old_run).await;
    assert_eq!(old.ended, Some(old_expires));
    assert_eq!(old.end_reason.as_deref(), Some("expired"));

    // Its late report is answered Expired and kept.
    let late = finish(&pools, "db01.example.com", &old_run, 2).await;
    assert_eq!(late.lease, LeaseState::Expired);
    let sql = db.connect_primary().await.expect("primary");
    let stored = sql
        .query_one(
            "SELECT run_id::text, lease_state FROM pvc.reports WHERE id = $1",
            &[&late.id],
        )
        .await
        .expect("report row");
    assert_eq!(stored.get::<_, Option<String>>(0), Some(old_run.clone()));
    assert_eq!(stored.get::<_, String>(1), "expired");
    // The new lease is untouched by the old run's report.
    let current = stored_lease(&client, &new_run).await;
    assert_eq!(current.ended, None);

    // The sweeper closes what no grant replaced, once.
    let (swept_run, _, swept_expires) = granted(
        &pools,
        &GrantRequest {
            lease_secs: 1.0,
            ..request("db02.example.com", "ps1")
        },
    )
    .await;
    wait_db_clock_past(&pools, swept_expires).await;
    assert_eq!(pvc::expire_leases(&client).await.expect("expire"), 1);
    assert_eq!(pvc::expire_leases(&client).await.expect("expire"), 0);
    let swept = stored_lease(&client, &swept_run).await;
    assert_eq!(
        (swept.ended, swept.end_reason.as_deref()),
        (Some(swept_expires), Some("expired"))
    );
    assert_eq!(host_run(&sql, "db02.example.com").await, None);
    assert_eq!(stored_lease(&client, &new_run).await.ended, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_releases_its_lease_once() {
    let (db, pools) = migrated("pvc_report").await;
    let req = request("app01.example.com", "ps1");
    let (run_id, _, _) = granted(&pools, &req).await;
    let (other_run, _, _) = granted(&pools, &request("app02.example.com", "ps1")).await;

    let resources = serde_json::json!({"changed": 3, "failed": 0, "total": 412});
    let changed_files = vec!["/etc/sudoers".to_owned()];
    let full = NewReport {
        certname: "app01.example.com",
        run_id: Some(&run_id),
        trigger: Some("schedule"),
        mode: Some("full"),
        exit_code: Some(2),
        started: Some(Ts(1_700_000_000_123)),
        duration_secs: Some(29.5),
        resources: Some(&resources),
        cached_catalog_status: Some("not_used"),
        changed_files: &changed_files,
        log_tail: Some("Notice: Applied catalog in 29.50 seconds"),
        body: None,
        received: None,
    };
    let first = report(&pools, &full).await;
    assert_eq!(first.lease, LeaseState::Released);

    let client = pools.write().await.expect("primary");
    let lease = stored_lease(&client, &run_id).await;
    assert_eq!(lease.end_reason.as_deref(), Some("report"));
    assert_eq!(lease.exit_code, Some(2));
    assert!(lease.ended.is_some_and(|ended| ended >= lease.granted));
    let sql = db.connect_primary().await.expect("primary");
    let row = sql
        .query_one(
            "SELECT run_id::text, pvc.to_ms(started), duration_secs, resources::text, \
                    cached_catalog_status, changed_files, log_tail, lease_state, exit_code \
             FROM pvc.reports WHERE id = $1",
            &[&first.id],
        )
        .await
        .expect("report row");
    assert_eq!(row.get::<_, Option<String>>(0), Some(run_id.clone()));
    assert_eq!(row.get::<_, i64>(1), 1_700_000_000_123);
    assert_eq!(row.get::<_, f64>(2), 29.5);
    let stored: serde_json::Value =
        serde_json::from_str(row.get::<_, &str>(3)).expect("resources json");
    assert_eq!(stored, resources);
    assert_eq!(row.get::<_, &str>(4), "not_used");
    assert_eq!(row.get::<_, Vec<String>>(5), changed_files);
    assert_eq!(
        row.get::<_, &str>(6),
        "Notice: Applied catalog in 29.50 seconds"
    );
    assert_eq!(row.get::<_, &str>(7), "released");
    assert_eq!(row.get::<_, i32>(8), 2);
    assert_eq!(host_run(&sql, "app01.example.com").await, None);

    // The same run again.
    assert_eq!(report(&pools, &full).await.lease, LeaseState::AlreadyEnded);

    // Run ids that name no lease of this host: stored, lease state unknown.
    let unknown_ids = [
        "6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f",
        "not-a-run-id",
        other_run.as_str(),
    ];
    for unknown in unknown_ids {
        let stored = report(
            &pools,
            &NewReport {
                run_id: Some(unknown),
                ..full
            },
        )
        .await;
        assert_eq!(stored.lease, LeaseState::Unknown, "{unknown}");
        let row = sql
            .query_one(
                "SELECT run_id::text, lease_state, certname FROM pvc.reports WHERE id = $1",
                &[&stored.id],
            )
            .await
            .expect("report row");
        assert_eq!(row.get::<_, Option<String>>(0), None);
        assert_eq!(row.get::<_, &str>(1), "unknown");
        assert_eq!(row.get::<_, &str>(2), "app01.example.com");
    }
    let no_run = report(
        &pools,
        &NewReport {
            certname: "app01.example.com",
            ..NewReport::default()
        },
    )
    .await;
    assert_eq!(no_run.lease, LeaseState::Unknown);
    // Another host's report did not end app02's lease.
    assert_eq!(stored_lease(&client, &other_run).await.ended, None);
    assert_eq!(
        scalar_i64(
            &sql,
            "SELECT count(*) FROM pvc.reports WHERE certname = 'app01.example.com'"
        )
        .await,
        6
    );

    // Released: the host can run again.
    let (next_run, _, _) = granted(&pools, &req).await;
    assert_ne!(next_run, run_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_keep_their_minimum_gap() {
    let (db, pools) = migrated("pvc_min_gap").await;
    let scheduled = GrantRequest {
        min_gap_secs: 3600.0,
        ..request("cache01.example.com", "ps1")
    };
    let (run_id, first_at, _) = granted(&pools, &scheduled).await;
    let released = finish(&pools, "cache01.example.com", &run_id, 0).await;
    assert_eq!(released.lease, LeaseState::Released);

    let sql = db.connect_primary().await.expect("primary");
    let leases_before = scalar_i64(&sql, "SELECT count(*) FROM pvc.leases").await;
    assert_eq!(grant(&pools, &scheduled).await, GrantOutcome::TooSoon);
    assert_eq!(grant(&pools, &scheduled).await, GrantOutcome::TooSoon);
    assert_eq!(
        scalar_i64(&sql, "SELECT count(*) FROM pvc.leases").await,
        leases_before
    );

    // A forced run is not held to the gap, and does not move it.
    let forced = GrantRequest {
        trigger: "file_change",
        ..scheduled
    };
    let (forced_run, _, _) = granted(&pools, &forced).await;
    let released = finish(&pools, "cache01.example.com", &forced_run, 0).await;
    assert_eq!(released.lease, LeaseState::Released);
    let last_scheduled: i64 = sql
        .query_one(
            "SELECT pvc.to_ms(last_scheduled) FROM pvc.host_runs \
             WHERE certname = 'cache01.example.com'",
            &[],
        )
        .await
        .expect("host row")
        .get(0);
    assert_eq!(last_scheduled, first_at.0);
    assert_eq!(grant(&pools, &scheduled).await, GrantOutcome::TooSoon);

    // A gap already passed lets the schedule through.
    let short_gap = GrantRequest {
        min_gap_secs: 0.0,
        ..scheduled
    };
    granted(&pools, &short_gap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_catalog_runs_take_no_token_and_forced_runs_overdraw() {
    let (db, pools) = migrated("pvc_tokens").await;
    let sql = db.connect_primary().await.expect("primary");
    let tokens = || async {
        sql.query_one(
            "SELECT tokens FROM pvc.servers WHERE name = 'ps-small'",
            &[],
        )
        .await
        .expect("server row")
        .get::<_, f64>(0)
    };
    let small = |certname| GrantRequest {
        rate: 0.0,
        burst: 1.0,
        ..request(certname, "ps-small")
    };

    granted(&pools, &small("a.example.com")).await;
    assert_eq!(tokens().await, 0.0);
    assert_eq!(
        grant(&pools, &small("b.example.com")).await,
        GrantOutcome::NoBudget
    );

    let cached = GrantRequest {
        mode: "cached_catalog",
        ..small("b.example.com")
    };
    let (run_id, _, _) = granted(&pools, &cached).await;
    assert_eq!(tokens().await, 0.0);
    let client = pools.write().await.expect("primary");
    let lease = stored_lease(&client, &run_id).await;
    assert_eq!(lease.mode, "cached_catalog");

    // A forced run may go down to `min_tokens`, and no further.
    let forced = |certname| GrantRequest {
        trigger: "file_change",
        min_tokens: -1.0,
        ..small(certname)
    };
    granted(&pools, &forced("c.example.com")).await;
    assert_eq!(tokens().await, -1.0);
    granted(&pools, &forced("d.example.com")).await;
    assert_eq!(tokens().await, -2.0);
    assert_eq!(
        grant(&pools, &forced("e.example.com")).await,
        GrantOutcome::NoBudget
    );
    assert_eq!(tokens().await, -2.0);

    // Arguments the database would misread are refused before it.
    for bad in [
        GrantRequest {
            mode: "partial",
            ..small("f.example.com")
        },
        GrantRequest {
            rate: f64::NAN,
            ..small("f.example.com")
        },
        GrantRequest {
            lease_secs: 0.0,
            ..small("f.example.com")
        },
    ] {
        let error = pvc::grant(&client, &bad).await.expect_err("invalid");
        assert!(matches!(error, PvcError::Invalid(_)), "{error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converge_requests_count_runs_after_them() {
    let (db, pools) = migrated("pvc_converge").await;
    let hosts: Vec<String> = ["c1.example.com", "c2.example.com", "c3.example.com"]
        .map(str::to_owned)
        .to_vec();
    // A run before the request does not count.
    let (early, _, _) = granted(&pools, &request("c1.example.com", "ps1")).await;
    finish(&pools, "c1.example.com", &early, 0).await;

    let client = pools.write().await.expect("primary");
    let spec = serde_json::json!({"search": "hostgroup = web"});
    let mut named = hosts.clone();
    named.push("c2.example.com".to_owned());
    let converge = pvc::create_converge(&client, &named, 600.0, &spec)
        .await
        .expect("converge");
    assert_eq!(converge.deadline, converge.created.plus(600.0));
    assert_eq!(converge.hosts, named);
    let progress = |id| {
        let client = &client;
        async move {
            pvc::converge_progress(client, id)
                .await
                .expect("progress")
                .expect("known converge")
        }
    };
    assert_eq!(
        progress(converge.id).await,
        pvc::ConvergeProgress {
            hosts: 3,
            started: 0,
            finished: 0,
            failed: 0,
            done_at: None
        }
    );

    let converge_run = |certname| GrantRequest {
        trigger: "converge",
        ..request(certname, "ps1")
    };
    let (run1, _, _) = granted(&pools, &converge_run("c1.example.com")).await;
    let (run2, _, _) = granted(&pools, &converge_run("c2.example.com")).await;
    let (run3, _, _) = granted(&pools, &converge_run("c3.example.com")).await;
    finish(&pools, "c2.example.com", &run2, 0).await;
    finish(&pools, "c3.example.com", &run3, 4).await;
    assert_eq!(
        progress(converge.id).await,
        pvc::ConvergeProgress {
            hosts: 3,
            started: 3,
            finished: 2,
            failed: 1,
            done_at: None
        }
    );
    let last = finish(&pools, "c1.example.com", &run1, 2).await;
    let sql = db.connect_primary().await.expect("primary");
    let last_received: i64 = sql
        .query_one(
            "SELECT pvc.to_ms(received) FROM pvc.reports WHERE id = $1",
            &[&last.id],
        )
        .await
        .expect("report")
        .get(0);
    assert_eq!(
        progress(converge.id).await,
        pvc::ConvergeProgress {
            hosts: 3,
            started: 3,
            finished: 3,
            failed: 1,
            done_at: Some(Ts(last_received))
        }
    );
    assert_eq!(
        pvc::converge_progress(&client, converge.id + 1000)
            .await
            .expect("progress"),
        None
    );

    // Requests stay active until an hour past their deadline.
    sql.batch_execute(
        "INSERT INTO pvc.converges (created, deadline, hosts) VALUES \
           (now() - interval '3 hours', now() - interval '2 hours', '{old.example.com}'), \
           (now() - interval '2 hours', now() - interval '30 minutes', '{late.example.com}')",
    )
    .await
    .expect("older converges");
    let active: Vec<Vec<String>> = pvc::active_converges(&client)
        .await
        .expect("active")
        .into_iter()
        .map(|c| c.hosts)
        .collect();
    assert_eq!(active, vec![named, vec!["late.example.com".to_owned()]]);

    let error = pvc::create_converge(&client, &[], 600.0, &spec)
        .await
        .expect_err("no hosts");
    assert!(matches!(error, PvcError::Invalid(_)));
}
