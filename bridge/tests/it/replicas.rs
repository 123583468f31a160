//! Database faults under load, on clusters of their own (the shared one must
//! never lose a server under the other tests): ENC and `/host` requests
//! from a few concurrent clients, the ENC cache emptied every few
//! milliseconds so requests really read the database, while
//! (a) the replica is stopped and started again,
//! (b) its WAL replay is paused while the primary writes, then resumed, and
//! (c) the primary is stopped and started again while a writer uploads
//! facts: reads go on from the replica, uploads are spooled and replayed
//! into `pvc.facts` once the primary is back.
//! The monitor must take the replica out and bring it back; every request
//! is answered 200 from a database (an ENC load whose connection is lost
//! mid-load is loaded again from the primary). Requests, errors and latency
//! per phase are printed (`--nocapture`) for `docs/reliability.md`.
//! A last test checks the test kit's second replica, which runs at a lag of
//! its own when given an apply delay.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvc_bridge::config::{self, Config};
use pvc_testkit::cluster::TestDb;
use serde_json::{json, Value};

use crate::support::{golden_hosts, private_cluster, private_cluster_with_replicas, TestBridge};

/// Bound on every wait; far above what any step takes.
const PATIENCE: Duration = Duration::from_secs(60);
const CLIENTS: usize = 4;
/// Lag bound for the test: a few hundred kilobytes of writes exceed it.
const MAX_LAG: u64 = 64 * 1024;

const REPLICA_PHASES: [&str; 7] = [
    "before",
    "replica stopped",
    "replica starting",
    "replica back",
    "replay paused",
    "replay resumed",
    "after",
];

const PRIMARY_PHASES: [&str; 5] = [
    "before",
    "primary stopping",
    "primary down",
    "primary starting",
    "primary back",
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

    /// The value of `key` in a `/host` answer (`KEY='value'` lines).
    fn value(&self, key: &str) -> Option<&str> {
        answer_value(&self.body, key)
    }
}

/// The value of `key` in a `/host` answer's `KEY='value'` lines (values
/// without quotes in them).
fn answer_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('\''))
}

/// The test's bridge configuration, with `scheduler` lines added to its
/// `[scheduler]` section; with `spool`, uploads the primary cannot take are
/// spooled there.
fn config(db: &TestDb, tag: &str, scheduler: &str, spool: Option<&Path>) -> Config {
    let dir = std::env::temp_dir().join(format!("pvc-it-replicas-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bridge.toml");
    std::fs::write(
        &file,
        format!("[scheduler]\nfact_interval_secs = 0\n{scheduler}[[scheduler.servers]]\nname = \"puppet1.example.com\"\njrubies = 8\n"),
    )
    .expect("config file");
    let mut env: Vec<(String, String)> = [
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
    if let Some(spool) = spool {
        env.push((
            "PVC_WRITES__SPOOL_DIR".to_owned(),
            spool.to_str().expect("a UTF-8 temp dir").to_owned(),
        ));
    }
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

/// The value of the unlabelled `name` in the bridge's `/metrics`.
async fn plain_metric(bridge: &TestBridge, name: &str) -> Option<f64> {
    let (status, _, body) = bridge.get("/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
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

/// A bridge with the replica monitor, the run service (its host directory
/// loaded) and the upload service running; waits until the replica is usable.
async fn start_bridge(config: Config) -> Arc<TestBridge> {
    let bridge = Arc::new(TestBridge::start(config.clone()).await);
    // The monitor task ends with the test's runtime.
    drop(
        bridge
            .bridge
            .db
            .start_monitor(config.replica_health.clone()),
    );
    bridge.start_runs().await;
    bridge.bridge.uploads.start();
    wait_for(&bridge, "the replica usable at start", |v| {
        v[0] == Some(1.0)
    })
    .await;
    bridge
}

/// The read load: `CLIENTS` concurrent clients looping over the golden
/// hosts, three ENC requests for each `/host` poll, while the ENC document
/// cache is emptied every 5 ms. Each answer is recorded with the phase it
/// was sent in.
struct Load {
    phases: &'static [&'static str],
    phase: Arc<AtomicU8>,
    finish: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answered>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(bridge: &Arc<TestBridge>, phases: &'static [&'static str]) -> Load {
        let hosts: Arc<Vec<String>> = Arc::new(golden_hosts());
        let phase = Arc::new(AtomicU8::new(0));
        let finish = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::<Answered>::new()));
        let mut tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (bridge, hosts, phase) =
                    (Arc::clone(bridge), Arc::clone(&hosts), Arc::clone(&phase));
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
                        let (status, stale, body) =
                            match tokio::time::timeout(PATIENCE, request).await {
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
        tasks.push({
            let (bridge, finish) = (Arc::clone(bridge), Arc::clone(&finish));
            tokio::spawn(async move {
                while !finish.load(Ordering::SeqCst) {
                    bridge.bridge.enc.invalidate_documents();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        });
        Load {
            phases,
            phase,
            finish,
            answers,
            tasks,
        }
    }

    fn set_phase(&self, name: &str) {
        let ix = self.phases.iter().position(|p| *p == name).expect("phase") as u8;
        self.phase.store(ix, Ordering::SeqCst);
    }

    /// Lets the load run until `n` more requests have been answered.
    async fn more(&self, n: usize) {
        let target = self.answers.lock().unwrap().len() + n;
        let deadline = Instant::now() + PATIENCE;
        while self.answers.lock().unwrap().len() < target {
            assert!(Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients; every answer.
    async fn stop(self) -> Vec<Answered> {
        self.finish.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let answers = self.answers.lock().unwrap().clone();
        answers
    }
}

/// Prints requests, errors and latency per phase (a Markdown table) and
/// returns the answers not answered 200 from a database.
fn phase_table(phases: &[&str], answers: &[Answered]) -> Vec<Answered> {
    let mut failed = Vec::new();
    println!("| phase | requests | not 200 | 200 stale | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (ix, name) in phases.iter().enumerate() {
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
        failed.extend(mine.into_iter().filter(|a| !a.ok()).cloned());
    }
    failed
}

/// A failed answer, short enough for an assertion message.
fn short(phases: &[&str], a: &Answered) -> String {
    let body: String = a.body.chars().take(120).collect();
    format!(
        "{} {} {}{} {body:?}",
        phases[a.phase as usize],
        a.path,
        a.status,
        if a.stale { " stale" } else { "" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stopped_or_paused_under_load_fail_no_request_and_come_back() {
    let (cluster, db) = private_cluster("replicas", true).await;
    let primary = pvc_testkit::cluster::connect(&db.primary_url)
        .await
        .expect("primary");
    let bridge = start_bridge(config(&db, "faults", "", None)).await;
    let load = Load::start(&bridge, &REPLICA_PHASES);
    load.more(200).await;

    // (a) The replica stops: out of rotation, reads go to the primary.
    load.set_phase("replica stopped");
    cluster.stop_replica().await.expect("stop the replica");
    wait_for(&bridge, "the stopped replica taken out", |v| {
        v[0] == Some(0.0)
    })
    .await;
    load.more(200).await;
    load.set_phase("replica starting");
    cluster.start_replica().await.expect("start the replica");
    let reads_before = metric(&bridge, "pvc_bridge_replica_reads_total")
        .await
        .expect("replica reads");
    wait_for(&bridge, "the restarted replica taking reads again", |v| {
        v[0] == Some(1.0) && v[1].is_some_and(|r| r > reads_before + 50.0)
    })
    .await;
    load.set_phase("replica back");
    cluster
        .wait_replica_caught_up()
        .await
        .expect("replica streams again");
    load.more(200).await;

    // (b) Replay paused while the primary writes: out on the paused flag,
    // and the lag in bytes is seen to grow past the bound.
    let replica = pvc_testkit::cluster::connect(&db.replica_url)
        .await
        .expect("replica");
    load.set_phase("replay paused");
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
    load.more(200).await;
    let reads_still_paused = metric(&bridge, "pvc_bridge_replica_reads_total")
        .await
        .expect("replica reads");
    assert_eq!(
        reads_paused, reads_still_paused,
        "a paused replica must take no reads"
    );
    load.set_phase("replay resumed");
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
    load.set_phase("after");
    load.more(200).await;

    let answers = load.stop().await;
    let failed = phase_table(&REPLICA_PHASES, &answers);
    assert!(
        failed.is_empty(),
        "{} of {} requests not answered from a database, first: {:?}",
        failed.len(),
        answers.len(),
        failed
            .iter()
            .take(3)
            .map(|a| short(&REPLICA_PHASES, a))
            .collect::<Vec<_>>()
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

/// One `POST /facts?fqdn=…` of the writer.
#[derive(Debug, Clone)]
struct Upload {
    phase: u8,
    certname: String,
    facts: Value,
    status: u16,
    /// `stored` and `spooled` from the answer's JSON.
    stored: Option<bool>,
    spooled: Option<bool>,
    body: String,
}

/// Uploads facts, one host per upload (so each upload is a row of its own
/// in `pvc.facts`), every 10 ms until `finish`.
fn start_writer(
    bridge: &Arc<TestBridge>,
    phase: &Arc<AtomicU8>,
    finish: &Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Upload>>>) {
    let uploads = Arc::new(Mutex::new(Vec::new()));
    let (bridge, phase, finish) = (Arc::clone(bridge), Arc::clone(phase), Arc::clone(finish));
    let task = {
        let uploads = Arc::clone(&uploads);
        tokio::spawn(async move {
            let mut n = 0;
            while !finish.load(Ordering::SeqCst) && n < 100_000 {
                let certname = format!("outage-{n}.replicas.example.com");
                let facts = json!({
                    "kernel": "Linux",
                    "upload": n,
                    "networking": {"fqdn": certname, "ip": format!("10.9.{}.{}", n / 250, n % 250)}
                });
                let sent_in = phase.load(Ordering::SeqCst);
                let request = bridge
                    .http
                    .post(format!("{}/facts?fqdn={certname}", bridge.base))
                    .header("content-type", "application/json")
                    .body(facts.to_string())
                    .send();
                let (status, body) = match tokio::time::timeout(PATIENCE, request).await {
                    Ok(Ok(response)) => (
                        response.status().as_u16(),
                        response.text().await.unwrap_or_default(),
                    ),
                    Ok(Err(e)) => (0, format!("no answer: {e}")),
                    Err(_) => (0, format!("no answer within {PATIENCE:?}")),
                };
                let answer: Option<Value> = serde_json::from_str(&body).ok();
                let flag = |key: &str| answer.as_ref().and_then(|a| a[key].as_bool());
                uploads.lock().unwrap().push(Upload {
                    phase: sent_in,
                    certname,
                    facts,
                    status,
                    stored: flag("stored"),
                    spooled: flag("spooled"),
                    body,
                });
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    (task, uploads)
}

/// (c) The primary stops under the read load and a stream of fact uploads:
/// ENC and `/host` requests are all answered 200 from the replica (a
/// scheduled run is not granted, a file-change run is, without a lease),
/// `/readyz` stays ready, every upload is answered spooled; once the
/// primary is back the spool drains and every upload is in `pvc.facts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_stopped_under_load_reads_go_on_and_uploads_are_spooled_then_stored() {
    let (cluster, db) = private_cluster("replicas_primary", true).await;
    let spool: PathBuf =
        std::env::temp_dir().join(format!("pvc-it-replicas-{}-spool", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    // Cycles as short as allowed and short leases: polled hosts fall due
    // every few seconds, so polls during the outage ask for grants.
    let scheduler =
        "target_period_secs = 1\nmin_interval_secs = 1\nmax_interval_secs = 2\nlease_secs = 2\n";
    let bridge = start_bridge(config(&db, "primary", scheduler, Some(&spool))).await;
    let load = Load::start(&bridge, &PRIMARY_PHASES);
    let (writer, uploads) = start_writer(&bridge, &load.phase, &load.finish);
    let uploads_in = |phase: &str| {
        let ix = PRIMARY_PHASES
            .iter()
            .position(|p| *p == phase)
            .expect("phase") as u8;
        uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u.phase == ix)
            .count()
    };
    load.more(200).await;

    load.set_phase("primary stopping");
    cluster.stop_primary().await.expect("stop the primary");
    load.set_phase("primary down");
    let grant_errors = bridge.bridge.runs.stats.grant_errors.load(Ordering::SeqCst);
    load.more(200).await;
    let down = PRIMARY_PHASES
        .iter()
        .position(|p| *p == "primary down")
        .expect("phase") as u8;
    // Until a due host has been refused its run (it falls due again
    // every few seconds) and enough uploads were spooled.
    let refused = || {
        load.answers
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.phase == down && a.value("PVC_REASON") == Some("no_capacity"))
    };
    let deadline = Instant::now() + PATIENCE;
    while uploads_in("primary down") < 50 || !refused() {
        assert!(
            Instant::now() < deadline,
            "no upload or no due host while the primary was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The replica serves reads: ready.
    let (status, _, ready) = bridge.get("/readyz").await;
    assert_eq!((status, ready.as_str()), (200, "ready (replica)\n"));
    // A file-change run goes ahead without a lease. The host is one the
    // load never polls (it polls every fourth golden host from the fourth).
    let host = &golden_hosts()[0];
    let (status, _, forced) = bridge
        .get(&format!("/host/{host}?trigger=file_change"))
        .await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(answer_value(&forced, "PVC_RUN"), Some("1"), "{forced}");
    assert_eq!(
        answer_value(&forced, "PVC_RUN_TRIGGER"),
        Some("file_change"),
        "{forced}"
    );
    assert_eq!(
        answer_value(&forced, "PVC_RUN_ID"),
        Some(""),
        "no lease: {forced}"
    );
    assert!(
        bridge.bridge.runs.stats.grant_errors.load(Ordering::SeqCst) > grant_errors,
        "the lease was tried on the stopped primary"
    );

    load.set_phase("primary starting");
    let starting = Instant::now();
    cluster.start_primary().await.expect("start the primary");
    let started_in = starting.elapsed();
    load.set_phase("primary back");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let records = plain_metric(&bridge, "pvc_bridge_spool_records").await;
        if records == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the spool did not drain: {records:?} records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_in = starting.elapsed();
    load.more(200).await;
    let answers = load.stop().await;
    writer.await.expect("writer task");
    let uploads = uploads.lock().unwrap().clone();

    let failed = phase_table(&PRIMARY_PHASES, &answers);
    let polls_down: Vec<&Answered> = answers
        .iter()
        .filter(|a| a.phase == down && a.path.starts_with("/host/"))
        .collect();
    let no_capacity = polls_down
        .iter()
        .filter(|a| a.value("PVC_REASON") == Some("no_capacity"))
        .count();
    let by_phase = |stored: bool| {
        (0..PRIMARY_PHASES.len())
            .map(|ix| {
                uploads
                    .iter()
                    .filter(|u| u.phase as usize == ix && u.stored == Some(stored))
                    .count()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "/host polls while down: {} ({no_capacity} due and answered no_capacity); \
         facts uploads stored directly per phase: {}; spooled per phase: {}; \
         from pg_ctl start: streaming again after {:.1} s, spool empty after {:.1} s",
        polls_down.len(),
        by_phase(true),
        by_phase(false),
        started_in.as_secs_f64(),
        drained_in.as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests not answered from a database, first: {:?}",
        failed.len(),
        answers.len(),
        failed
            .iter()
            .take(3)
            .map(|a| short(&PRIMARY_PHASES, a))
            .collect::<Vec<_>>()
    );
    // With no primary there is no lease: no scheduled run is granted.
    let granted: Vec<&&Answered> = polls_down
        .iter()
        .filter(|a| a.value("PVC_RUN") != Some("0") || a.value("PVC_RETURN") != Some("0"))
        .collect();
    assert!(
        granted.is_empty(),
        "polls while the primary was down granted a run or failed: {:?}",
        granted
            .iter()
            .take(3)
            .map(|a| short(&PRIMARY_PHASES, a))
            .collect::<Vec<_>>()
    );

    // Every upload accepted: stored, or spooled while the primary was away.
    for u in &uploads {
        assert!(
            u.status == 200 && u.stored.is_some() && u.spooled == u.stored.map(|s| !s),
            "upload for {} ({}) not answered stored or spooled: {} {}",
            u.certname,
            PRIMARY_PHASES[u.phase as usize],
            u.status,
            u.body
        );
        if u.phase == down {
            assert_eq!(
                u.spooled,
                Some(true),
                "{}: sent while the primary was down",
                u.certname
            );
        }
    }
    let spooled = uploads.iter().filter(|u| u.spooled == Some(true)).count();
    assert!(spooled >= 50, "only {spooled} uploads spooled");
    let replayed = plain_metric(&bridge, "pvc_bridge_spool_replayed_total")
        .await
        .expect("spool metrics");
    assert!(
        replayed >= spooled as f64,
        "{replayed} replayed of {spooled} spooled"
    );
    assert_eq!(
        plain_metric(&bridge, "pvc_bridge_spool_dead_letters_total").await,
        Some(0.0)
    );
    let primary = db.connect_primary().await.expect("primary");
    let stored: std::collections::HashMap<String, Value> = primary
        .query(
            "SELECT certname, facts::text FROM pvc.facts WHERE certname LIKE 'outage-%'",
            &[],
        )
        .await
        .expect("facts")
        .iter()
        .map(|row| {
            let text: String = row.get(1);
            (row.get(0), serde_json::from_str(&text).expect("facts JSON"))
        })
        .collect();
    assert_eq!(stored.len(), uploads.len(), "one row per upload");
    for u in &uploads {
        assert_eq!(stored.get(&u.certname), Some(&u.facts), "{}", u.certname);
    }
    let _ = std::fs::remove_dir_all(&spool);
    drop(primary);
    drop(db);
    drop(cluster);
}

/// The test kit's second replica: both replicas replay a write; one given
/// a 1 s apply delay shows a new row only after the other does, then
/// catches up; without the delay both are in step again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_replays_writes_and_lags_with_an_apply_delay() {
    let (cluster, db) = private_cluster_with_replicas("two_replicas", false, 2).await;
    assert_eq!(cluster.replica_count(), 2);
    assert_eq!(cluster.replica_port_at(0), cluster.replica_port());
    assert_ne!(cluster.replica_port_at(0), cluster.replica_port_at(1));
    assert_eq!(db.replica_urls.len(), 2);
    assert_eq!(db.replica_urls[0], db.replica_url);
    assert_eq!(db.replica_urls[1], cluster.replica_url_at(1, &db.name));
    assert!(cluster.stop_replica_at(2).await.is_err(), "no replica 2");

    let primary = db.connect_primary().await.expect("primary");
    let replicas = [
        db.connect_replica_at(0).await.expect("replica 0"),
        db.connect_replica_at(1).await.expect("replica 1"),
    ];
    for replica in &replicas {
        let row = replica
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)",
                &[],
            )
            .await
            .expect("recovery state");
        assert!(row.get::<_, bool>(0));
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("streaming")
        );
    }
    let has = |i: usize, id: i32| {
        let replica = &replicas[i];
        async move {
            replica
                .query_one("SELECT count(*) FROM pvc_it_two WHERE id = $1", &[&id])
                .await
                .expect("count")
                .get::<_, i64>(0)
                == 1
        }
    };
    primary
        .batch_execute("CREATE TABLE pvc_it_two (id int PRIMARY KEY)")
        .await
        .expect("table");
    primary
        .execute("INSERT INTO pvc_it_two VALUES (1)", &[])
        .await
        .expect("row 1");
    cluster.wait_replica_caught_up().await.expect("both replay");
    assert!(
        has(0, 1).await && has(1, 1).await,
        "both replicas have row 1"
    );

    let delay = Duration::from_secs(1);
    cluster
        .set_apply_delay(1, delay)
        .await
        .expect("apply delay");
    assert_eq!(cluster.apply_delay(1), delay);
    // Row by row until one is seen on replica 0 but not (yet) on replica 1
    // within the delay of its commit; a machine too slow to look within the
    // delay tries again rather than failing.
    let mut id = 2;
    loop {
        let committed = Instant::now();
        primary
            .execute("INSERT INTO pvc_it_two VALUES ($1)", &[&id])
            .await
            .expect("row");
        // Skips the delayed replica.
        cluster.wait_replica_caught_up().await.expect("replica 0");
        assert!(has(0, id).await, "replica 0 has row {id}");
        let on_delayed = has(1, id).await;
        if committed.elapsed() < delay {
            assert!(!on_delayed, "replica 1 replayed row {id} before its delay");
            break;
        }
        assert!(id < 6, "never looked within {delay:?} of a commit");
        id += 1;
    }
    cluster
        .wait_replica_caught_up_at(1)
        .await
        .expect("replica 1 catches up");
    assert!(has(1, id).await, "replica 1 has row {id} after its delay");

    cluster
        .set_apply_delay(1, Duration::ZERO)
        .await
        .expect("no delay");
    primary
        .execute("INSERT INTO pvc_it_two VALUES (100)", &[])
        .await
        .expect("row 100");
    // Both waited for again.
    cluster.wait_replica_caught_up().await.expect("both replay");
    assert!(has(0, 100).await && has(1, 100).await);

    // Replica 1 stops and starts on its own; replica 0 is not touched.
    cluster.stop_replica_at(1).await.expect("stop replica 1");
    primary
        .execute("INSERT INTO pvc_it_two VALUES (101)", &[])
        .await
        .expect("row 101");
    cluster
        .wait_replica_caught_up_at(0)
        .await
        .expect("replica 0 replays");
    assert!(has(0, 101).await);
    cluster.start_replica_at(1).await.expect("start replica 1");
    cluster.wait_replica_caught_up().await.expect("both replay");
    let replica1 = db.connect_replica_at(1).await.expect("replica 1 again");
    let count = replica1
        .query_one("SELECT count(*) FROM pvc_it_two WHERE id = 101", &[])
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(count, 1);
    drop(replicas);
    drop(replica1);
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
