//! Replica faults under load, on a cluster of its own (the shared one must
//! never lose its replica under the other tests): ENC and `/host` requests
//! from a few concurrent clients, the ENC cache emptied every few
//! milliseconds so requests really read the database, while
//! (a) the replica is stopped and started again, and
//! (b) its WAL replay is paused while the primary writes, then resumed.
//! The monitor must take the replica out and bring it back; every request
//! is answered 200 from a database (an ENC load whose connection is lost
//! mid-load is loaded again from the primary). Requests, errors and latency per phase are printed
//! (`--nocapture`) for `docs/reliability.md`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvc_bridge::config::{self, Config};
use pvc_testkit::cluster::TestDb;

use crate::support::{golden_hosts, private_cluster, TestBridge};

/// Bound on every wait; far above what any step takes.
const PATIENCE: Duration = Duration::from_secs(60);
const CLIENTS: usize = 4;
/// Lag bound for the test: a few hundred kilobytes of writes exceed it.
const MAX_LAG: u64 = 64 * 1024;

const PHASES: [&str; 7] = [
    "before",
    "replica stopped",
    "replica starting",
    "replica back",
    "replay paused",
    "replay resumed",
    "after",
];

#[derive(Debug, Clone)]
struct Answered {
    phase: u8,
    path: String,
    status: u16,
    /// Served from the copy kept for when no database answers.
    stale: bool,
    body: String,
    latency: Duration,
}

impl Answered {
    /// Answered 200 from a database.
    fn ok(&self) -> bool {
        self.status == 200 && !self.stale
    }
}

fn config(db: &TestDb, tag: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("pvc-it-replicas-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bridge.toml");
    std::fs::write(
        &file,
        "[scheduler]\nfact_interval_secs = 0\n[[scheduler.servers]]\nname = \"puppet1.example.com\"\njrubies = 8\n",
    )
    .expect("config file");
    let env: Vec<(String, String)> = [
        ("PVC_LISTEN", "127.0.0.1:0".to_owned()),
        ("PVC_DATABASE__PRIMARY", db.primary_url.clone()),
        ("PVC_DATABASE__REPLICAS", db.replica_url.clone()),
        ("PVC_DATABASE__POOL_SIZE", "4".to_owned()),
        ("PVC_DATABASE__CONNECT_TIMEOUT_SECS", "1".to_owned()),
        ("PVC_DATABASE__HEALTH_CHECK_MS", "100".to_owned()),
        ("PVC_DATABASE__HEALTH_TIMEOUT_MS", "500".to_owned()),
        ("PVC_DATABASE__MAX_LAG_BYTES", MAX_LAG.to_string()),
        ("PVC_DATABASE__BLACKLIST_SECS", "1".to_owned()),
        ("PVC_DATABASE__BLACKLIST_MAX_SECS", "2".to_owned()),
        (
            "PVC_ENC__FOREMAN_URL",
            "https://localhost.localdomain.net".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    config::load_from(Some(&file), env).expect("test configuration")
}

/// The value of `name{replica="…"}` in the bridge's `/metrics`.
async fn metric(bridge: &TestBridge, name: &str) -> Option<f64> {
    let (status, _, body) = bridge.get("/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{replica=")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (bounded) until `done` holds for the metrics.
async fn wait_for(bridge: &TestBridge, what: &str, mut done: impl FnMut(&[Option<f64>]) -> bool) {
    let names = [
        "pvc_bridge_replica_usable",
        "pvc_bridge_replica_reads_total",
        "pvc_bridge_replica_lag_bytes",
    ];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut values = Vec::new();
        for name in names {
            values.push(metric(bridge, name).await);
        }
        if done(&values) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; last usable, reads, lag: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let ix = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[ix].as_secs_f64() * 1000.0
}

/// Lets the load run until `n` more requests have been answered.
async fn more_answers(answers: &Mutex<Vec<Answered>>, n: usize) {
    let target = answers.lock().unwrap().len() + n;
    let deadline = Instant::now() + PATIENCE;
    while answers.lock().unwrap().len() < target {
        assert!(Instant::now() < deadline, "the load stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stopped_or_paused_under_load_fail_no_request_and_come_back() {
    let (cluster, db) = private_cluster("replicas", true).await;
    let primary = pvc_testkit::cluster::connect(&db.primary_url)
        .await
        .expect("primary");

    let config = config(&db, "faults");
    let bridge = Arc::new(TestBridge::start(config.clone()).await);
    let _monitor = bridge
        .bridge
        .db
        .start_monitor(config.replica_health.clone());
    bridge.bridge.runs.start().expect("run service");
    bridge
        .bridge
        .runs
        .refresh_directory()
        .await
        .expect("host directory");
    wait_for(&bridge, "the replica usable at start", |v| {
        v[0] == Some(1.0)
    })
    .await;

    let hosts: Arc<Vec<String>> = Arc::new(golden_hosts());
    let phase = Arc::new(AtomicU8::new(0));
    let finish = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answered>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (bridge, hosts, phase) =
                (Arc::clone(&bridge), Arc::clone(&hosts), Arc::clone(&phase));
            let (finish, answers) = (Arc::clone(&finish), Arc::clone(&answers));
            tokio::spawn(async move {
                let mut seq = c;
                // Bounded even if the controller never says stop.
                while !finish.load(Ordering::SeqCst) && seq < 1_000_000 {
                    let host = &hosts[seq % hosts.len()];
                    let path = if seq % 4 == 3 {
                        format!("/host/{host}")
                    } else {
                        format!("/node/{host}?format=yml")
                    };
                    let sent_in = phase.load(Ordering::SeqCst);
                    let started = Instant::now();
                    let request = bridge.http.get(format!("{}{path}", bridge.base)).send();
                    let (status, stale, body) = match tokio::time::timeout(PATIENCE, request).await
                    {
                        Ok(Ok(response)) => {
                            let status = response.status().as_u16();
                            let stale = response.headers().contains_key("warning");
                            (status, stale, response.text().await.unwrap_or_default())
                        }
                        Ok(Err(e)) => (0, false, format!("no answer: {e}")),
                        Err(_) => (0, false, format!("no answer within {PATIENCE:?}")),
                    };
                    answers.lock().unwrap().push(Answered {
                        phase: sent_in,
                        path,
                        status,
                        stale,
                        body,
                        latency: started.elapsed(),
                    });
                    seq += CLIENTS;
                }
            })
        })
        .collect();
    // Empties the document cache all the time: requests read the database.
    let invalidator = {
        let (bridge, finish) = (Arc::clone(&bridge), Arc::clone(&finish));
        tokio::spawn(async move {
            while !finish.load(Ordering::SeqCst) {
                bridge.bridge.enc.invalidate_documents();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let set_phase = |name: &str| {
        let ix = PHASES.iter().position(|p| *p == name).expect("phase") as u8;
        phase.store(ix, Ordering::SeqCst);
    };
    more_answers(&answers, 200).await;

    // (a) The replica stops: out of rotation, reads go to the primary.
    set_phase("replica stopped");
    cluster.stop_replica().await.expect("stop the replica");
    wait_for(&bridge, "the stopped replica taken out", |v| {
        v[0] == Some(0.0)
    })
    .await;
    more_answers(&answers, 200).await;
    set_phase("replica starting");
    cluster.start_replica().await.expect("start the replica");
    let reads_before = metric(&bridge, "pvc_bridge_replica_reads_total")
        .await
        .expect("replica reads");
    wait_for(&bridge, "the restarted replica taking reads again", |v| {
        v[0] == Some(1.0) && v[1].is_some_and(|r| r > reads_before + 50.0)
    })
    .await;
    set_phase("replica back");
    cluster
        .wait_replica_caught_up()
        .await
        .expect("replica streams again");
    more_answers(&answers, 200).await;

    // (b) Replay paused while the primary writes: out on the paused flag,
    // and the lag in bytes is seen to grow past the bound.
    let replica = pvc_testkit::cluster::connect(&db.replica_url)
        .await
        .expect("replica");
    set_phase("replay paused");
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    primary
        .batch_execute("CREATE TABLE pvc_it_filler (id int, pad text)")
        .await
        .expect("filler table");
    let deadline = Instant::now() + PATIENCE;
    loop {
        // About 400 kB of WAL per round.
        primary
            .batch_execute(
                "INSERT INTO pvc_it_filler SELECT g, repeat('x', 200) FROM generate_series(1, 1500) g",
            )
            .await
            .expect("write on the primary");
        if metric(&bridge, "pvc_bridge_replica_lag_bytes")
            .await
            .is_some_and(|lag| lag > MAX_LAG as f64)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lag never exceeded {MAX_LAG} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(&bridge, "the paused replica taken out", |v| {
        v[0] == Some(0.0)
    })
    .await;
    let reads_paused = metric(&bridge, "pvc_bridge_replica_reads_total")
        .await
        .expect("replica reads");
    more_answers(&answers, 200).await;
    let reads_still_paused = metric(&bridge, "pvc_bridge_replica_reads_total")
        .await
        .expect("replica reads");
    assert_eq!(
        reads_paused, reads_still_paused,
        "a paused replica must take no reads"
    );
    set_phase("replay resumed");
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    wait_for(&bridge, "the resumed replica taking reads again", |v| {
        v[0] == Some(1.0)
            && v[2].is_some_and(|lag| lag <= MAX_LAG as f64)
            && v[1].is_some_and(|r| r > reads_still_paused + 50.0)
    })
    .await;
    set_phase("after");
    more_answers(&answers, 200).await;

    finish.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("client task");
    }
    invalidator.await.expect("invalidator task");

    let answers = answers.lock().unwrap().clone();
    let mut failed = Vec::new();
    println!("| phase | requests | not 200 | 200 stale | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (ix, name) in PHASES.iter().enumerate() {
        let mine: Vec<&Answered> = answers.iter().filter(|a| a.phase as usize == ix).collect();
        let errors = mine.iter().filter(|a| a.status != 200).count();
        let stale = mine.iter().filter(|a| a.status == 200 && a.stale).count();
        let mut latencies: Vec<Duration> = mine.iter().map(|a| a.latency).collect();
        latencies.sort();
        println!(
            "| {name} | {} | {errors} | {stale} | {:.1} | {:.1} | {:.1} |",
            mine.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );
        failed.extend(mine.into_iter().filter(|a| !a.ok()));
    }
    let short = |a: &Answered| {
        let body: String = a.body.chars().take(120).collect();
        (
            PHASES[a.phase as usize],
            a.path.clone(),
            a.status,
            a.stale,
            body,
        )
    };
    assert!(
        failed.is_empty(),
        "{} of {} requests not answered from a database, first: {:?}",
        failed.len(),
        answers.len(),
        failed.iter().take(3).map(|a| short(a)).collect::<Vec<_>>()
    );
    let fallbacks = bridge
        .bridge
        .db
        .stats
        .read_fallbacks
        .load(Ordering::Relaxed);
    assert!(fallbacks > 0, "reads must have gone to the primary");
    println!(
        "read fallbacks to the primary: {fallbacks}; replica taken out {} times",
        metric(&bridge, "pvc_bridge_replica_taken_out_total")
            .await
            .unwrap_or(0.0)
    );
    drop(replica);
    drop(primary);
    drop(db);
}

/// `Db::read_after`: with the monitor running, a read after a write goes to
/// the replica once the monitor has seen it replay that far, and to the
/// primary while the replica's replay is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_a_write_go_to_a_replica_that_replayed_it_else_the_primary() {
    use pvc_bridge::store::health::HealthSettings;
    use pvc_bridge::store::{Db, PoolOptions, PoolRole};

    let (_cluster, db) = private_cluster("replicas_fence", false).await;
    let pools = Arc::new(
        Db::new(
            &db.primary_url,
            std::slice::from_ref(&db.replica_url),
            &PoolOptions {
                max_size: 2,
                connect_timeout: Duration::from_secs(1),
            },
        )
        .expect("pools"),
    );
    let _monitor = pools.start_monitor(HealthSettings {
        check_every: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        max_lag_bytes: 1 << 40,
        blacklist: Duration::from_secs(1),
        blacklist_max: Duration::from_secs(2),
    });
    let primary = pvc_testkit::cluster::connect(&db.primary_url)
        .await
        .expect("primary");
    let write = |n: i32| {
        let primary = &primary;
        async move {
            primary
                .batch_execute(&format!("CREATE TABLE pvc_it_fence_{n} (id int)"))
                .await
                .expect("write");
            primary
                // The insert position: with synchronous_commit = off the
                // write position may still be before the commit record.
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await
                .expect("LSN")
                .get::<_, String>(0)
        }
    };
    let lsn = write(1).await;
    // Once the replica has replayed the write, reads after it go there.
    let deadline = Instant::now() + PATIENCE;
    let client = loop {
        let (client, role) = pools.read_after(&lsn).await.expect("a read");
        if role == PoolRole::Replica {
            break client;
        }
        assert!(Instant::now() < deadline, "never read from the replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // It really has the write.
    client
        .query_one("SELECT count(*) FROM pvc_it_fence_1", &[])
        .await
        .expect("the table written before");
    drop(client);
    assert_eq!(pools.stats.fenced_replica_reads.load(Ordering::Relaxed), 1);
    let primary_reads = pools.stats.fenced_primary_reads.load(Ordering::Relaxed);

    let replica = pvc_testkit::cluster::connect(&db.replica_url)
        .await
        .expect("replica");
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let lsn = write(2).await;
    let (client, role) = pools.read_after(&lsn).await.expect("a read");
    assert_eq!(
        role,
        PoolRole::Primary,
        "the replica cannot have replayed it"
    );
    client
        .query_one("SELECT count(*) FROM pvc_it_fence_2", &[])
        .await
        .expect("the table just written");
    drop(client);
    assert_eq!(
        pools.stats.fenced_primary_reads.load(Ordering::Relaxed),
        primary_reads + 1
    );
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    drop(replica);
    drop(primary);
    drop(db);
}
