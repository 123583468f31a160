//! Forwarding to Foreman against a recording stand-in that answers as
//! Foreman does: the exact requests Foreman documents, only real changes
//! sent, coalescing, the configured rate, nothing lost while Foreman is down
//! or the bridge restarts, and a new host known to Foreman before its first
//! ENC answer.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use pvc_bridge::leader::{Leadership, Role};
use pvc_testkit::cluster::TestDb;
use serde_json::{json, Value};

use crate::foreman_standin::{Mode, Recorded, StandIn};
use crate::support::{config_for, golden_hosts, migrated_db, TestBridge};

const USER: &str = "pvc-forwarder";
const PASSWORD: &str = "s3cret-for-foreman";

/// A bridge forwarding to `standin`; its forwarder started when `start`.
async fn bridge(db: &TestDb, standin: &StandIn, extra: &[(&str, &str)], start: bool) -> TestBridge {
    let mut env = vec![
        ("PVC_FOREMAN__URL", standin.url.as_str()),
        ("PVC_FOREMAN__USERNAME", USER),
        ("PVC_FOREMAN__PASSWORD", PASSWORD),
    ];
    env.extend_from_slice(extra);
    let bridge = TestBridge::start(config_for(db, &env)).await;
    if start {
        start_forwarder(&bridge, db);
    }
    bridge
}

fn start_forwarder(bridge: &TestBridge, db: &TestDb) {
    let forwarder = bridge
        .bridge
        .forwarder
        .as_ref()
        .expect("forwarding configured");
    let leadership = Leadership::spawn(&db.primary_url, Role::Forwarder, Duration::from_secs(5))
        .expect("election");
    forwarder.start(leadership);
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn facts(certname: &str, uptime: u64, processors: u64, os_release: &str) -> Value {
    json!({
        "fqdn": certname,
        "hostname": certname.split('.').next().unwrap(),
        "os": {"family": "Debian", "name": "Debian", "release": {"full": os_release}},
        "processors": {"count": processors, "models": ["Intel(R) Xeon(R)"]},
        "system_uptime": {"seconds": uptime},
        "uptime_seconds": uptime,
        "networking": {"ip": "10.0.0.5", "fqdn": certname},
        "_timestamp": format!("2026-11-27 06:{:02}:00 +0000", uptime % 60)
    })
}

/// Uploads facts as the stock ENC script does; the bridge's answer.
async fn upload(bridge: &TestBridge, certname: &str, facts: &Value) -> Value {
    let body = json!({"facts": facts, "name": certname, "certname": certname});
    let (status, _, text) = bridge
        .post("/api/v2/hosts/facts", "application/json", body.to_string())
        .await;
    assert_eq!(status, 201, "{text}");
    parse(&text)
}

fn report(certname: &str, minute: u32, applied: u64) -> Value {
    json!({
        "host": certname,
        "reported_at": format!("2026-11-27 06:{minute:02}:00 UTC"),
        "status": {"applied": applied, "restarted": 0, "failed": 0, "failed_restarts": 0,
                   "skipped": 0, "pending": 0},
        "metrics": {"time": {"total": 4.2}, "resources": {"total": 12}},
        "logs": [{"log": {"level": "notice",
                          "sources": {"source": "/Stage[main]/Motd/File[/etc/motd]/content"},
                          "messages": {"message": "content changed '{md5}a' to '{md5}b'"}}}]
    })
}

async fn upload_report(bridge: &TestBridge, report: &Value) -> Value {
    let body = json!({"config_report": report});
    let (status, _, text) = bridge
        .post(
            "/api/v2/config_reports",
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    parse(&text)
}

async fn outbox_rows(db: &TestDb) -> i64 {
    let client = db.connect_primary().await.expect("primary");
    client
        .query_one("SELECT count(*) FROM pvc.outbox", &[])
        .await
        .expect("count")
        .get(0)
}

/// Waits until the outbox is empty (everything taken or set aside).
async fn drained(db: &TestDb, limit: Duration) {
    let start = std::time::Instant::now();
    while outbox_rows(db).await > 0 {
        assert!(
            start.elapsed() < limit,
            "outbox not drained after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The headers Foreman's API clients send (node.rb, report.rb), with Basic
/// auth for the configured account.
fn assert_foreman_request(request: &Recorded, path: &str) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, path);
    assert_eq!(
        request.headers.get("accept").map(String::as_str),
        Some("application/json,version=2")
    );
    assert_eq!(
        request.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(
        request.headers.get("authorization"),
        Some(&format!("Basic {basic}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_real_changes_reach_foreman_as_foreman_documents_them() {
    let db = migrated_db("forward_exact").await;
    let standin = StandIn::start().await;
    let bridge = bridge(&db, &standin, &[], true).await;
    // A host Foreman knows: the fixture's first.
    let host = golden_hosts().remove(0);

    // First facts the bridge sees of it: Foreman has had its facts before,
    // so they go through the outbox.
    let first = facts(&host, 100, 2, "12.5");
    let answer = upload(&bridge, &host, &first).await;
    assert_eq!(answer["foreman"], "queued", "{answer}");
    let taken = standin.wait_taken(1, Duration::from_secs(20)).await;
    assert_foreman_request(&taken[0], "/api/v2/hosts/facts");
    assert_eq!(
        taken[0].body,
        json!({"facts": first, "name": host, "certname": host})
    );

    // Only volatile facts moved: nothing for Foreman.
    let noise = facts(&host, 160, 2, "12.5");
    assert_eq!(
        upload(&bridge, &host, &noise).await["foreman"],
        "not_needed"
    );
    assert_eq!(outbox_rows(&db).await, 0);

    // A real change the ENC does not depend on: queued, then sent by the
    // background forwarder, with the newest facts.
    let more_cpus = facts(&host, 220, 4, "12.5");
    assert_eq!(
        upload(&bridge, &host, &more_cpus).await["foreman"],
        "queued"
    );
    let taken = standin.wait_taken(2, Duration::from_secs(20)).await;
    assert_foreman_request(&taken[1], "/api/v2/hosts/facts");
    assert_eq!(taken[1].body["facts"], more_cpus);

    // A change the ENC depends on (the OS): sent during the upload.
    let upgraded = facts(&host, 280, 4, "12.6");
    assert_eq!(
        upload(&bridge, &host, &upgraded).await["foreman"],
        "forwarded"
    );
    let taken = standin.wait_taken(3, Duration::from_secs(20)).await;
    assert_eq!(taken[2].body["facts"], upgraded);

    // Config reports: each one, as the report processor sends it.
    let run = report(&host, 7, 1);
    assert_eq!(upload_report(&bridge, &run).await["foreman"], "queued");
    let taken = standin.wait_taken(4, Duration::from_secs(20)).await;
    assert_foreman_request(&taken[3], "/api/v2/config_reports");
    assert_eq!(taken[3].body, json!({"config_report": run}));
    // The same report again (a retry of the processor): stored once, sent once.
    assert_eq!(upload_report(&bridge, &run).await["foreman"], "not_needed");

    drained(&db, Duration::from_secs(20)).await;
    assert_eq!(standin.requests().len(), 4, "{:?}", standin.requests());
    let (_, _, metrics) = bridge.get("/metrics").await;
    // Which sender took a host's facts may vary (the background leader can
    // claim a re-armed row before the upload's own forward does); every one
    // was taken once.
    let taken = |kind: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("pvc_bridge_forward_total{{kind=\"{kind}\"")))
            .filter(|l| l.contains("outcome=\"taken\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(taken("facts"), 3, "{metrics}");
    assert_eq!(taken("report"), 1, "{metrics}");
    assert!(metrics.contains("pvc_bridge_forward_leader 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_host_is_in_foreman_before_its_first_enc_answer() {
    let db = migrated_db("forward_new_host").await;
    let standin = StandIn::start().await;
    standin.create_hosts_in(&db.primary_url);
    let bridge = bridge(&db, &standin, &[], true).await;
    let host = "brand-new.example.com";

    // Unknown to Foreman, and the bridge caches that answer.
    let (status, _, _) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert_eq!(status, 404);

    // What node.rb does: upload the facts, then ask for the ENC at once.
    let answer = upload(&bridge, host, &facts(host, 1, 2, "12.5")).await;
    assert_eq!(answer["foreman"], "forwarded", "{answer}");
    let (status, _, yaml) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert_eq!(status, 200, "{yaml}");
    assert!(
        yaml.contains(&format!("foreman_hostname: {}", "brand-new")) || yaml.contains(host),
        "{yaml}"
    );
    assert_eq!(standin.taken().len(), 1);

    // That load read data at least as new as Foreman's import.
    let (_, _, metrics) = bridge.get("/metrics").await;
    let fenced: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("pvc_bridge_database_fenced_reads_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(fenced >= 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_foreman_is_down_the_outbox_grows_and_only_the_newest_facts_are_sent() {
    let db = migrated_db("forward_down").await;
    let standin = StandIn::start().await;
    standin.set_mode(Mode::Fail(503));
    let bridge = bridge(&db, &standin, &[("PVC_FORWARD__SYNC", "false")], true).await;
    let host = golden_hosts().remove(1);

    let mut newest = Value::Null;
    for cpus in 1..=5 {
        newest = facts(&host, cpus * 10, cpus, "12.5");
        assert_eq!(upload(&bridge, &host, &newest).await["foreman"], "queued");
    }
    let reports: Vec<Value> = (1..=3).map(|m| report(&host, m, m as u64)).collect();
    for run in &reports {
        upload_report(&bridge, run).await;
    }
    // Foreman was tried and failed; nothing is lost: one facts row (the
    // newest facts coalesce) and every report.
    let start = std::time::Instant::now();
    while standin.requests().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Foreman never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outbox_rows(&db).await, 4);
    let forwarder = bridge.bridge.forwarder.as_ref().unwrap();
    forwarder.refresh_stats().await;
    let (_, _, metrics) = bridge.get("/metrics").await;
    assert!(metrics.contains("pvc_bridge_outbox_items 4"), "{metrics}");
    assert!(
        metrics.contains(
            "pvc_bridge_forward_total{kind=\"facts\",mode=\"background\",outcome=\"retry\"}"
        ) || metrics.contains(
            "pvc_bridge_forward_total{kind=\"report\",mode=\"background\",outcome=\"retry\"}"
        ),
        "{metrics}"
    );

    // Foreman is back: everything arrives once, the facts as last uploaded.
    standin.set_mode(Mode::Accept);
    let taken = standin.wait_taken(4, Duration::from_secs(60)).await;
    drained(&db, Duration::from_secs(20)).await;
    let taken_now = standin.taken();
    assert_eq!(taken_now.len(), 4, "{taken_now:?}");
    let facts_sent: Vec<&Recorded> = taken
        .iter()
        .filter(|r| r.path.ends_with("/facts"))
        .collect();
    assert_eq!(facts_sent.len(), 1);
    assert_eq!(facts_sent[0].body["facts"], newest);
    let mut reports_sent: Vec<Value> = taken
        .iter()
        .filter(|r| r.path.ends_with("/config_reports"))
        .map(|r| r.body["config_report"].clone())
        .collect();
    reports_sent.sort_by_key(|r| r["reported_at"].as_str().unwrap().to_owned());
    assert_eq!(reports_sent, reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_uploads_reaches_foreman_at_the_configured_rate() {
    const HOSTS: usize = 10_000;
    const RATE: usize = 1_000;
    let db = migrated_db("forward_burst").await;
    let standin = StandIn::start().await;
    let rate = RATE.to_string();
    let bridge = bridge(
        &db,
        &standin,
        &[
            ("PVC_FORWARD__SYNC", "false"),
            ("PVC_FORWARD__RATE_PER_SEC", &rate),
            ("PVC_FORWARD__CONCURRENCY", "8"),
            ("PVC_DATABASE__POOL_SIZE", "16"),
        ],
        false,
    )
    .await;

    // The burst: every host at once (32 uploads in flight).
    let names: Vec<String> = (0..HOSTS)
        .map(|i| format!("burst{i:05}.example.com"))
        .collect();
    let bridge = std::sync::Arc::new(bridge);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in names.chunks(HOSTS / 32) {
        let chunk = chunk.to_vec();
        let bridge = std::sync::Arc::clone(&bridge);
        tasks.spawn(async move {
            for name in chunk {
                let answer = upload(&bridge, &name, &facts(&name, 1, 2, "12.5")).await;
                assert_eq!(answer["foreman"], "queued", "{answer}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("uploads");
    }
    assert_eq!(outbox_rows(&db).await, HOSTS as i64);

    // Then the forwarder: Foreman sees no more than the configured rate.
    start_forwarder(&bridge, &db);
    let taken = standin.wait_taken(HOSTS, Duration::from_secs(300)).await;
    drained(&db, Duration::from_secs(30)).await;
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for request in &taken {
        *per_host
            .entry(request.body["certname"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_host.len(), HOSTS);
    assert!(per_host.values().all(|&n| n == 1), "a host was sent twice");
    assert_eq!(standin.requests().len(), HOSTS);

    // In every one-second window: at most the rate plus the bucket's tenth
    // of a second, and 1% for requests that left together and arrived in a
    // bunch.
    let times: Vec<std::time::Instant> = taken.iter().map(|r| r.at).collect();
    let allowed = RATE + RATE / 10 + RATE / 100;
    let mut end = 0;
    let mut busiest = 0;
    for start in 0..times.len() {
        while end < times.len() && times[end] < times[start] + Duration::from_secs(1) {
            end += 1;
        }
        busiest = busiest.max(end - start);
    }
    assert!(
        busiest <= allowed,
        "{busiest} requests within one second; limit {RATE}/s"
    );
    let span = times[times.len() - 1] - times[0];
    assert!(
        span.as_secs_f64() >= (HOSTS - RATE / 10) as f64 / RATE as f64 * 0.99,
        "{HOSTS} requests in {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bridge_sends_what_the_outbox_held_once() {
    let db = migrated_db("forward_restart").await;
    let standin = StandIn::start().await;
    let hosts = &golden_hosts()[..20];

    // The first bridge stores and queues, and stops before sending.
    let first = bridge(&db, &standin, &[("PVC_FORWARD__SYNC", "false")], false).await;
    for (i, host) in hosts.iter().enumerate() {
        upload(&first, host, &facts(host, 1, 2, "12.5")).await;
        upload_report(&first, &report(host, (i % 60) as u32, 1)).await;
    }
    first.stop().await;
    assert_eq!(outbox_rows(&db).await, 2 * hosts.len() as i64);
    assert!(standin.requests().is_empty());

    // Two bridges come up; one leads and sends everything, once.
    let second = bridge(&db, &standin, &[("PVC_FORWARD__SYNC", "false")], true).await;
    let third = bridge(&db, &standin, &[("PVC_FORWARD__SYNC", "false")], true).await;
    standin
        .wait_taken(2 * hosts.len(), Duration::from_secs(60))
        .await;
    drained(&db, Duration::from_secs(20)).await;
    let requests = standin.requests();
    assert_eq!(requests.len(), 2 * hosts.len(), "{requests:?}");
    let mut seen = std::collections::BTreeSet::new();
    for request in &requests {
        let key = format!("{}{}", request.path, request.body);
        assert!(seen.insert(key), "sent twice: {request:?}");
    }
    let leaders = [&second, &third]
        .iter()
        .filter(|b| b.bridge.forwarder.as_ref().unwrap().status().leader)
        .count();
    assert_eq!(leaders, 1);
}
