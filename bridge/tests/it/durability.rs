//! Nothing lost: uploads of every kind (`/facts`, Foreman's facts and
//! config report APIs, the agents' `/report`) accepted while the primary
//! stops and starts again are all on the primary afterwards, each exactly
//! once; records the database refuses go to the dead-letter file and the
//! spool moves on.
//!
//! The stop/start test runs on a cluster of its own: the shared one must
//! never stop under the other tests.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{config_for, golden_hosts, migrated_db, private_cluster, TestBridge};

/// Bound on every wait; far above what any step takes.
const PATIENCE: Duration = Duration::from_secs(120);
/// Accepted writes in each phase before the test moves on.
const PER_PHASE: usize = 100;
const WRITERS: usize = 4;
/// Fact hosts per writer: a host's facts come from one writer, in order.
const FACT_HOSTS: usize = 4;

/// A fresh spool directory, removed when dropped.
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn new(tag: &str) -> SpoolDir {
        let path = std::env::temp_dir().join(format!(
            "pvc-bridge-it-durability-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        SpoolDir(path)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Where the primary is while a write is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Up,
    Stopping,
    Down,
    Starting,
    Again,
}

impl Phase {
    fn from_u8(n: u8) -> Phase {
        [
            Phase::Up,
            Phase::Stopping,
            Phase::Down,
            Phase::Starting,
            Phase::Again,
        ][n as usize]
    }
}

/// What one write was about, to find it on the primary.
#[derive(Debug, Clone)]
enum Sent {
    /// The facts of a host (either facts endpoint).
    Facts { certname: String, facts: Value },
    /// A Foreman config report, told apart by its `reported_at`.
    ConfigReport { reported_at: String },
    /// An agent report, told apart by its log.
    AgentReport { log_tail: String },
}

#[derive(Debug)]
struct Answered {
    writer: usize,
    seq: usize,
    phase: Phase,
    sent: Sent,
    status: u16,
    /// `Some(true)` stored, `Some(false)` spooled (from the answer's JSON).
    stored: Option<bool>,
    body: String,
}

impl Answered {
    fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Write `seq` of writer `w`: every fourth of each kind, each with content
/// no other write has.
fn write_of(w: usize, seq: usize, agent_hosts: &[String]) -> (String, String, Sent) {
    let n = w * 100_000 + seq;
    // Consecutive fact uploads of one writer rotate over its hosts.
    let certname = format!("w{w}-h{}.durability.example.com", (seq / 4) % FACT_HOSTS);
    let facts = json!({
        "kernel": "Linux",
        "writer": w,
        "seq": seq,
        "uptime_seconds": n,
        "networking": {"fqdn": certname, "ip": format!("10.{w}.{}.{}", seq / 250, seq % 250)}
    });
    match seq % 4 {
        0 => (
            format!("/facts/{certname}"),
            facts.to_string(),
            Sent::Facts { certname, facts },
        ),
        1 => {
            let certname = format!(
                "w{w}-h{}.durability.example.com",
                (seq / 4 + 2) % FACT_HOSTS
            );
            let facts = json!({"kernel": "Linux", "writer": w, "seq": seq, "via": "foreman"});
            (
                "/api/v2/hosts/facts".into(),
                json!({"facts": facts, "name": certname}).to_string(),
                Sent::Facts { certname, facts },
            )
        }
        2 => {
            let reported_at = format!(
                "2026-11-2{w} {:02}:{:02}:{:02} UTC",
                seq / 3600,
                (seq / 60) % 60,
                seq % 60
            );
            let report = json!({
                "host": format!("w{w}-r.durability.example.com"),
                "reported_at": reported_at,
                "status": {"applied": seq % 3, "restarted": 0, "failed": 0, "failed_restarts": 0, "skipped": 0, "pending": 0},
                "metrics": {"time": {"total": 1.5}},
                "logs": []
            });
            (
                "/api/v2/config_reports".into(),
                json!({"config_report": report}).to_string(),
                Sent::ConfigReport { reported_at },
            )
        }
        _ => {
            let log_tail = format!("durability writer {w} write {seq}\n");
            let host = &agent_hosts[(w + seq) % agent_hosts.len()];
            let report = json!({
                "trigger": "schedule",
                "mode": "full",
                "exit_code": 0,
                "started": 1_795_700_000.0 + n as f64,
                "duration_secs": 2.5,
                "log_tail": log_tail,
            });
            (
                format!("/report/{host}"),
                report.to_string(),
                Sent::AgentReport { log_tail },
            )
        }
    }
}

/// Waits, bounded by `PATIENCE`, until `done` says so.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up after {PATIENCE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(bridge: &TestBridge, path: &str, body: String) -> (u16, String) {
    let request = bridge
        .http
        .post(format!("{}{path}", bridge.base))
        .header("content-type", "application/json")
        .header("accept", "application/json,version=2")
        .body(body)
        .send();
    let response = tokio::time::timeout(PATIENCE, request)
        .await
        .unwrap_or_else(|_| panic!("POST {path}: no answer within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("POST {path}: the bridge did not answer: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("answer body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_stopped_in_a_load_of_writes_keeps_every_accepted_write_exactly_once() {
    let (cluster, db) = private_cluster("durability", true).await;
    let spool = SpoolDir::new("stop");
    let config = config_for(
        &db,
        &[
            ("PVC_WRITES__SPOOL_DIR", spool.as_str()),
            ("PVC_DATABASE__CONNECT_TIMEOUT_SECS", "1"),
        ],
    );
    let bridge = Arc::new(TestBridge::start(config).await);
    bridge.bridge.uploads.start();
    let agent_hosts: Arc<Vec<String>> = Arc::new(golden_hosts().into_iter().take(8).collect());

    let phase = Arc::new(AtomicU8::new(Phase::Up as u8));
    let accepted = Arc::new(AtomicUsize::new(0));
    let finish = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answered>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (bridge, agent_hosts) = (Arc::clone(&bridge), Arc::clone(&agent_hosts));
            let (phase, accepted) = (Arc::clone(&phase), Arc::clone(&accepted));
            let (finish, answers) = (Arc::clone(&finish), Arc::clone(&answers));
            tokio::spawn(async move {
                let mut seq = 0;
                // Bounded even if the controller never says stop.
                while !finish.load(Ordering::SeqCst) && seq < 20_000 {
                    let sent_in = Phase::from_u8(phase.load(Ordering::SeqCst));
                    let (path, body, sent) = write_of(w, seq, &agent_hosts);
                    let (status, text) = send(&bridge, &path, body).await;
                    let stored = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["stored"].as_bool());
                    let answered = Answered {
                        writer: w,
                        seq,
                        phase: sent_in.max(Phase::from_u8(phase.load(Ordering::SeqCst))),
                        sent,
                        status,
                        stored,
                        body: text,
                    };
                    if answered.accepted() {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    answers.lock().unwrap().push(answered);
                    seq += 1;
                }
            })
        })
        .collect();

    // Stop the primary a third of the way in, keep writing while it stops
    // and while it is down, start it, and keep writing while it starts and
    // after. The steps wait on counts of accepted writes, never on time.
    let mark = |n: usize| {
        let accepted = Arc::clone(&accepted);
        move || accepted.load(Ordering::SeqCst) >= n
    };
    wait_until("the first writes were accepted", mark(PER_PHASE)).await;
    phase.store(Phase::Stopping as u8, Ordering::SeqCst);
    cluster.stop_primary().await.expect("stopping the primary");
    phase.store(Phase::Down as u8, Ordering::SeqCst);
    let down_from = accepted.load(Ordering::SeqCst);
    wait_until(
        "writes were accepted while the primary was down",
        mark(down_from + PER_PHASE),
    )
    .await;
    phase.store(Phase::Starting as u8, Ordering::SeqCst);
    cluster.start_primary().await.expect("starting the primary");
    phase.store(Phase::Again as u8, Ordering::SeqCst);
    let again_from = accepted.load(Ordering::SeqCst);
    wait_until(
        "writes were accepted after the primary returned",
        mark(again_from + PER_PHASE),
    )
    .await;
    finish.store(true, Ordering::SeqCst);
    for writer in writers {
        tokio::time::timeout(PATIENCE, writer)
            .await
            .expect("writers finish their last write")
            .expect("writer task");
    }
    let uploads = &bridge.bridge.uploads;
    wait_until("the spool was replayed to the end", || {
        uploads.spool_stats().expect("a spool").records == 0
    })
    .await;

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let mut summary: BTreeMap<(Phase, u16, Option<bool>), usize> = BTreeMap::new();
    for a in &answers {
        *summary.entry((a.phase, a.status, a.stored)).or_default() += 1;
    }
    eprintln!("writes by (phase, status, stored): {summary:?}");
    for a in answers.iter().filter(|a| a.accepted()) {
        assert!(
            a.stored.is_some(),
            "writer {} write {}: answer says neither stored nor spooled: {}",
            a.writer,
            a.seq,
            a.body
        );
    }
    let spooled = |p: Phase| {
        answers
            .iter()
            .filter(|a| a.phase == p && a.stored == Some(false))
            .count()
    };
    let stored = |p: Phase| {
        answers
            .iter()
            .filter(|a| a.phase == p && a.stored == Some(true))
            .count()
    };
    assert!(spooled(Phase::Down) > 0, "nothing was spooled while down");
    assert_eq!(stored(Phase::Down), 0, "stored while the primary was down");
    assert!(stored(Phase::Up) > 0 && stored(Phase::Again) > 0);
    assert_eq!(spooled(Phase::Up), 0, "spooled while the primary was up");

    // What was accepted, kind by kind: the primary must hold exactly that.
    // A write answered with an error is not expected, so a report of one
    // that was stored anyway shows up as a row too many.
    let mut last_facts: BTreeMap<String, Value> = BTreeMap::new();
    let mut config_reports: BTreeMap<String, i64> = BTreeMap::new();
    let mut agent_reports: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_writer: Vec<&Answered> = answers.iter().filter(|a| a.accepted()).collect();
    by_writer.sort_by_key(|a| (a.writer, a.seq));
    for a in by_writer {
        match &a.sent {
            // A host's facts come from one writer, in order: its last
            // accepted upload is what must be stored.
            Sent::Facts { certname, facts } => {
                last_facts.insert(certname.clone(), facts.clone());
            }
            Sent::ConfigReport { reported_at } => {
                *config_reports.entry(reported_at.clone()).or_default() += 1
            }
            Sent::AgentReport { log_tail } => {
                *agent_reports.entry(log_tail.clone()).or_default() += 1
            }
        }
    }

    let client = db.connect_primary().await.expect("primary");
    let stored_facts: BTreeMap<String, Value> = client
        .query("SELECT certname, facts::text FROM pvc.facts", &[])
        .await
        .expect("facts")
        .iter()
        .map(|row| {
            let text: String = row.get(1);
            (row.get(0), serde_json::from_str(&text).expect("facts JSON"))
        })
        .collect();
    assert_eq!(
        stored_facts.keys().collect::<Vec<_>>(),
        last_facts.keys().collect::<Vec<_>>(),
        "hosts with facts"
    );
    for (certname, facts) in &last_facts {
        assert_eq!(
            &stored_facts[certname], facts,
            "{certname}: the last accepted facts are stored"
        );
    }
    let counted = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query(sql, &[])
                .await
                .expect(sql)
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                .collect::<BTreeMap<String, i64>>()
        }
    };
    assert_eq!(
        counted("SELECT report->>'reported_at', count(*) FROM pvc.config_reports GROUP BY 1").await,
        config_reports,
        "every accepted config report once, and nothing else"
    );
    assert_eq!(
        counted("SELECT log_tail, count(*) FROM pvc.reports GROUP BY 1").await,
        agent_reports,
        "every accepted agent report once, and nothing else"
    );
    assert!(
        config_reports
            .values()
            .chain(agent_reports.values())
            .all(|&n| n == 1),
        "every write carries content of its own"
    );
    let stats = uploads.spool_stats().expect("a spool");
    assert_eq!(
        stats.dead_letters_total, 0,
        "nothing was refused: {stats:?}"
    );
    assert!(stats.replayed_total > 0, "{stats:?}");
    // And every write was accepted: with a spool and the replica up, the
    // errors of a primary going away (a fast shutdown ends the statements
    // in flight with SQLSTATE 57P01) are spooled like a refused connection.
    let failed: Vec<_> = answers.iter().filter(|a| !a.accepted()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} writes not accepted, first: {:?}",
        failed.len(),
        answers.len(),
        failed.first()
    );

    Arc::into_inner(bridge)
        .expect("the writers are done with the bridge")
        .stop()
        .await;
    drop(db);
    drop(cluster);
}

/// A primary URL nothing listens on: a port just bound and released.
fn closed_primary_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=2")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_agent_reports_and_dead_letters_replay_without_blocking_the_spool() {
    let db = migrated_db("durability_dead").await;
    let spool = SpoolDir::new("dead");
    let env = [("PVC_WRITES__SPOOL_DIR", spool.as_str())];
    let host = golden_hosts()[3].clone();

    let mut config = config_for(&db, &env);
    config.database_primary = closed_primary_url();
    let down = TestBridge::start(config).await;
    let good = json!({"kernel": "Linux", "seq": 1});
    let (status, text) = send(&down, "/facts/good.example.com", good.to_string()).await;
    assert_eq!(
        (status, parse(&text)["spooled"].clone()),
        (200, json!(true))
    );
    // PostgreSQL's jsonb has no \u0000: the database refuses these facts.
    let (status, text) = send(
        &down,
        "/facts/bad.example.com",
        json!({"kernel": "Linux\u{0}"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, parse(&text)["spooled"].clone()),
        (200, json!(true))
    );
    let report = json!({"trigger": "schedule", "exit_code": 2, "started": 1_795_738_741.5,
                        "duration_secs": 3.25, "log_tail": "Notice: spooled run\n"});
    let (status, text) = send(&down, &format!("/report/{host}"), report.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let answer = parse(&text);
    assert_eq!(
        (
            &answer["stored"],
            &answer["spooled"],
            &answer["report_id"],
            &answer["lease"]
        ),
        (&json!(false), &json!(true), &Value::Null, &Value::Null),
        "{text}"
    );
    let received_ms = answer["received_ms"].as_i64().expect("received_ms");
    down.stop().await;

    // A record no replay can read, as a damaged or foreign writer leaves it.
    {
        let spool = pvc_bridge::spool::Spool::open(pvc_bridge::spool::SpoolConfig {
            dir: spool.0.clone(),
            max_bytes: 1 << 20,
            segment_bytes: 1 << 20,
        })
        .expect("the spool");
        spool
            .append("facts", "garbled.example.com", b"{\"kind\":\"nonsense\"}")
            .expect("append");
    }
    let after = json!({"kernel": "Linux", "seq": 2});
    let mut config = config_for(&db, &env);
    config.database_primary = closed_primary_url();
    let down = TestBridge::start(config).await;
    let (status, _) = send(&down, "/facts/after.example.com", after.to_string()).await;
    assert_eq!(status, 200);
    down.stop().await;

    let up = TestBridge::start(config_for(&db, &env)).await;
    let replayed = up
        .bridge
        .uploads
        .replay()
        .await
        .expect("a replay to the end");
    assert_eq!(replayed, 5, "every record stored or set aside");
    let stats = up.bridge.uploads.spool_stats().expect("a spool");
    assert_eq!(
        (stats.records, stats.dead_letters_total),
        (0, 2),
        "{stats:?}"
    );

    let client = db.connect_primary().await.expect("primary");
    let hosts: HashMap<String, String> = client
        .query("SELECT certname, facts::text FROM pvc.facts", &[])
        .await
        .expect("facts")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(parse(&hosts["good.example.com"]), good);
    assert_eq!(
        parse(&hosts["after.example.com"]),
        after,
        "records behind the refused ones are stored"
    );
    let row = client
        .query_one(
            "SELECT id, exit_code, duration_secs, log_tail, lease_state, \
             (extract(epoch FROM received) * 1000)::bigint FROM pvc.reports WHERE certname = $1",
            &[&host],
        )
        .await
        .expect("the spooled agent report, once");
    assert_eq!(row.get::<_, Option<i32>>(1), Some(2));
    assert_eq!(row.get::<_, Option<f64>>(2), Some(3.25));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("Notice: spooled run\n")
    );
    assert_eq!(row.get::<_, String>(4), "unknown");
    assert_eq!(
        row.get::<_, i64>(5),
        received_ms,
        "stored as of when it was accepted"
    );
    // The agent sends it again (it never saw an answer): the same row.
    let report_id: i64 = row.get(0);
    let (status, text) = send(&up, &format!("/report/{host}"), report.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let answer = parse(&text);
    assert_eq!(answer["report_id"], report_id, "{text}");
    assert_eq!(answer["replay"], true, "{text}");
    assert_eq!(answer["stored"], true, "{text}");

    // Both refused records are in the dead-letter file, one JSON line
    // each, with what is needed to re-submit them.
    let path = up.bridge.uploads.dead_letter_path().expect("a spool");
    assert_eq!(path, spool.0.join("dead-letters.jsonl"));
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .expect("the dead-letter file")
        .lines()
        .map(parse)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["key"], "bad.example.com");
    assert_eq!(lines[0]["kind"], "facts");
    let error = lines[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("storing facts: ERROR 22P05: "),
        "what the server said: {error}"
    );
    assert_eq!(
        parse(lines[0]["body"]["facts_json"].as_str().unwrap()),
        json!({"kernel": "Linux\u{0}"})
    );
    assert_eq!(lines[1]["key"], "garbled.example.com");
    assert!(
        lines[1]["error"].as_str().unwrap().contains("unreadable"),
        "{}",
        lines[1]
    );
    let (_, _, metrics) = up.get("/metrics").await;
    for line in [
        "pvc_bridge_spool_dead_letters_total 2",
        "pvc_bridge_uploads_total{kind=\"agent_report\",outcome=\"replay\"} 1",
        "pvc_bridge_uploads_total{kind=\"agent_report\",outcome=\"new\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    up.stop().await;
}
