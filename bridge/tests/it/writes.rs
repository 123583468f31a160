//! Fact and report uploads end to end: `/facts`, Foreman's
//! `/api/hosts/facts` and `/api/config_reports`, stored on a real primary
//! and read back from it and from its streaming replica.

use std::time::Duration;

use base64::Engine;
use pvc_testkit::cluster::{self, TestDb};
use serde_json::{json, Value};

use crate::support::{config_for, migrated_db, TestBridge};

async fn bridge(db: &TestDb, extra: &[(&str, &str)]) -> TestBridge {
    TestBridge::start(config_for(db, extra)).await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn facts(uptime: u64, kernel: &str) -> Value {
    json!({
        "fqdn": "ignored.example.com",
        "kernel": kernel,
        "uptime_seconds": uptime,
        "system_uptime": {"seconds": uptime, "uptime": format!("{uptime} s")},
        "memory": {"system": {"available_bytes": uptime * 7, "total_bytes": 8_000_000}},
        "networking": {"ip": "10.0.0.1", "interfaces": {"eth0": {"mtu": 1500}}}
    })
}

/// (facts, digest hex, source) of `certname` as stored on `url`.
async fn stored_facts(url: &str, certname: &str) -> Option<(Value, String, String)> {
    let client = cluster::connect(url).await.expect("connect");
    client
        .query_opt(
            "SELECT facts::text, encode(digest, 'hex'), source FROM pvc.facts WHERE certname = $1",
            &[&certname],
        )
        .await
        .expect("query")
        .map(|row| {
            let text: String = row.get(0);
            (parse(&text), row.get(1), row.get(2))
        })
}

async fn count(db: &TestDb, table: &str) -> i64 {
    let client = db.connect_primary().await.expect("primary");
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_in_all_three_formats_are_stored_alike() {
    let db = migrated_db("writes_formats").await;
    let bridge = bridge(&db, &[]).await;
    let sent = facts(100, "Linux");

    let (status, _, body) = bridge
        .post(
            "/facts?fqdn=json.example.com",
            "application/json",
            sent.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = parse(&body);
    assert_eq!(answer["outcome"], "new");
    assert_eq!(answer["digest_changed"], true);

    // The original agent: `facter -pj | base64`, `curl -X POST -d @file`.
    let b64 = base64::engine::general_purpose::STANDARD.encode(sent.to_string());
    let (status, _, body) = bridge
        .post(
            "/facts/B64.example.com",
            "application/x-www-form-urlencoded",
            b64,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The stock ENC script (node.rb).
    let payload = json!({"facts": sent, "name": "enc.example.com", "certname": "enc.example.com"});
    let (status, content_type, body) = bridge
        .post("/api/hosts/facts", "application/json", payload.to_string())
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let answer = parse(&body);
    assert_eq!(answer["name"], "enc.example.com");
    assert_eq!(answer["outcome"], "new");
    let (status, _, body) = bridge
        .post(
            "/api/v2/hosts/facts",
            "application/json",
            json!({"facts": sent, "name": "v2.example.com"}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    cluster::shared()
        .wait_replica_caught_up()
        .await
        .expect("replica");
    let mut digests = Vec::new();
    for (certname, source) in [
        ("json.example.com", "facts"),
        ("b64.example.com", "facts"),
        ("enc.example.com", "foreman"),
        ("v2.example.com", "foreman"),
    ] {
        let primary = stored_facts(&db.primary_url, certname).await;
        let replica = stored_facts(&db.replica_url, certname).await;
        assert_eq!(primary, replica, "{certname}");
        let (stored, digest, stored_source) = primary.expect(certname);
        assert_eq!(stored, sent, "{certname}");
        assert_eq!(stored_source, source, "{certname}");
        digests.push(digest);
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(count(&db, "pvc.checkins").await, 4);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_real_changes_move_the_digest_and_replays_change_nothing() {
    let db = migrated_db("writes_digest").await;
    let bridge = bridge(&db, &[]).await;
    let path = "/facts/web01.example.com";
    let upload = |value: Value| {
        let bridge = &bridge;
        async move {
            let (status, _, body) = bridge
                .post(path, "application/json", value.to_string())
                .await;
            assert_eq!(status, 200, "{body}");
            parse(&body)
        }
    };

    let first = upload(facts(100, "Linux")).await;
    assert_eq!(first["outcome"], "new");

    // Uptime and free memory moved, nothing else.
    let volatile = upload(facts(160, "Linux")).await;
    assert_eq!(volatile["outcome"], "unchanged");
    assert_eq!(volatile["digest_changed"], false);
    assert_eq!(volatile["digest"], first["digest"]);
    assert_eq!(volatile["digest_changed_ms"], first["digest_changed_ms"]);
    let (stored, _, _) = stored_facts(&db.primary_url, "web01.example.com")
        .await
        .expect("stored");
    assert_eq!(stored, facts(160, "Linux"), "the facts are stored whole");

    // The same body again (a retried upload): nothing new.
    let replay = upload(facts(160, "Linux")).await;
    assert_eq!(replay["outcome"], "replay");
    assert_eq!(replay["received_ms"], volatile["received_ms"]);

    let changed = upload(facts(220, "FreeBSD")).await;
    assert_eq!(changed["outcome"], "changed");
    assert_eq!(changed["digest_changed"], true);
    assert_ne!(changed["digest"], first["digest"]);
    let (stored, digest, _) = stored_facts(&db.primary_url, "web01.example.com")
        .await
        .expect("stored");
    assert_eq!(stored, facts(220, "FreeBSD"));
    assert_eq!(Value::String(digest), changed["digest"]);
    assert_eq!(count(&db, "pvc.facts").await, 1);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_4xx_with_the_reason_and_store_nothing() {
    let db = migrated_db("writes_bad").await;
    let bridge = bridge(&db, &[("PVC_WRITES__MAX_BODY_BYTES", "4096")]).await;
    let big = json!({"blob": "x".repeat(2 * 1024 * 1024)}).to_string();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/facts/a.example.com",
            "{\"kernel\": ".into(),
            400,
            "not valid JSON",
        ),
        (
            "/facts/a.example.com",
            "%%% not base64".into(),
            400,
            "neither JSON nor base64",
        ),
        (
            "/facts/a.example.com",
            "[1, 2]".into(),
            400,
            "neither JSON nor base64",
        ),
        ("/facts/bad_host!", "{}".into(), 400, "bad certname"),
        ("/facts", "{}".into(), 400, "fqdn=<certname> is required"),
        (
            "/facts/a.example.com",
            big.clone(),
            413,
            "writes.max_body_bytes",
        ),
        // Foreman's answer to malformed JSON (Api::BaseController).
        (
            "/api/hosts/facts",
            "{\"facts\": ".into(),
            400,
            "There was a problem in the JSON you submitted",
        ),
        (
            "/api/hosts/facts",
            json!({"name": "a.example.com"}).to_string(),
            422,
            "facts is required",
        ),
        (
            "/api/hosts/facts",
            json!({"facts": {}, "name": "bad host"}).to_string(),
            422,
            "bad certname",
        ),
        (
            "/api/v2/hosts/facts",
            big.clone(),
            413,
            "writes.max_body_bytes",
        ),
        (
            "/api/config_reports",
            json!({"config_report": {"status": {}}}).to_string(),
            422,
            "config_report.host is required",
        ),
        (
            "/api/v2/config_reports",
            "nope".into(),
            400,
            "There was a problem in the JSON you submitted",
        ),
    ];
    for (path, body, status, reason) in cases {
        let (got, _, text) = bridge.post(path, "application/json", body).await;
        assert_eq!(got, status, "{path}: {text}");
        assert!(text.contains(reason), "{path}: {text:?} lacks {reason:?}");
        if path.starts_with("/api/") && status == 422 {
            assert!(parse(&text)["message"].is_string(), "{path}: {text}");
        }
        if path.starts_with("/api/") && status == 400 {
            assert_eq!(parse(&text)["status"], 400, "{path}: {text}");
        }
    }
    for table in ["pvc.facts", "pvc.config_reports", "pvc.checkins"] {
        assert_eq!(count(&db, table).await, 0, "{table}");
    }
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reports_are_stored_as_received_once() {
    let db = migrated_db("writes_reports").await;
    let bridge = bridge(&db, &[]).await;
    // As Foreman's report processor (report.rb) sends it.
    let report = json!({
        "host": "web01.example.com",
        "reported_at": "2026-11-27 05:00:00 UTC",
        "status": {"applied": 2, "restarted": 0, "failed": 0, "failed_restarts": 0, "skipped": 0, "pending": 0},
        "metrics": {"time": {"total": 12.5}},
        "logs": [{"log": {"level": "notice", "sources": {"source": "Puppet"}, "messages": {"message": "Applied catalog"}}}]
    });
    let body = json!({"config_report": report}).to_string();
    let (status, content_type, text) = bridge
        .post("/api/config_reports", "application/json", body.clone())
        .await;
    assert_eq!(status, 201, "{text}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let answer = parse(&text);
    assert_eq!(answer["host_name"], "web01.example.com");
    assert_eq!(answer["status"], report["status"]);
    assert_eq!(answer["replay"], false);
    let id = answer["id"].as_i64().expect("id");

    // The processor retries on a timeout: the same report is not stored twice.
    let (status, _, text) = bridge
        .post("/api/v2/config_reports", "application/json", body)
        .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(parse(&text)["id"], id);
    assert_eq!(parse(&text)["replay"], true);

    let client = db.connect_primary().await.expect("primary");
    let row = client
        .query_one(
            "SELECT certname, report::text, reported_at = '2026-11-27 05:00:00+00'::timestamptz \
             FROM pvc.config_reports WHERE id = $1",
            &[&id],
        )
        .await
        .expect("stored report");
    assert_eq!(row.get::<_, String>(0), "web01.example.com");
    assert_eq!(parse(&row.get::<_, String>(1)), report);
    assert!(row.get::<_, bool>(2));
    assert_eq!(count(&db, "pvc.config_reports").await, 1);
    let checkin = client
        .query_one(
            "SELECT report_at IS NOT NULL, facts_at IS NULL FROM pvc.checkins WHERE certname = $1",
            &[&"web01.example.com"],
        )
        .await
        .expect("checkin");
    assert!(checkin.get::<_, bool>(0) && checkin.get::<_, bool>(1));
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replay_never_overwrites_newer_facts() {
    use pvc_bridge::schedule::Ts;
    use pvc_bridge::store::pvc::{self, FactsOutcome, NewFacts};

    let db = migrated_db("writes_stale").await;
    let pools = pvc_bridge::store::Db::new(
        &db.primary_url,
        &[],
        &pvc_bridge::store::PoolOptions {
            max_size: 1,
            connect_timeout: Duration::from_secs(5),
        },
    )
    .expect("pool");
    let client = pools.write().await.expect("primary");
    let upload = |facts: &'static str, stable: &'static str, at: i64| NewFacts {
        certname: "late.example.com",
        name: "late.example.com",
        facts_json: facts,
        stable_json: stable,
        enc_json: "{}",
        source: "facts",
        received: Some(Ts(at)),
    };
    let newer = pvc::store_facts(&client, &upload(r#"{"k":2}"#, r#"{"k":2}"#, 2_000_000))
        .await
        .expect("newer");
    assert_eq!(newer.outcome, FactsOutcome::New);
    assert_eq!(newer.received, Ts(2_000_000));
    // An upload accepted earlier (spooled while the primary was away)
    // arrives after the newer one: it is not stored.
    let older = pvc::store_facts(&client, &upload(r#"{"k":1}"#, r#"{"k":1}"#, 1_000_000))
        .await
        .expect("older");
    assert_eq!(older.outcome, FactsOutcome::Stale);
    assert_eq!(older.digest, newer.digest);
    assert_eq!(older.received, Ts(2_000_000));
    let (stored, _, _) = stored_facts(&db.primary_url, "late.example.com")
        .await
        .expect("stored");
    assert_eq!(stored, json!({"k": 2}));
    let checkin: i64 = db
        .connect_primary()
        .await
        .expect("primary")
        .query_one(
            "SELECT pvc.to_ms(facts_at) FROM pvc.checkins WHERE certname = 'late.example.com'",
            &[],
        )
        .await
        .expect("checkin")
        .get(0);
    assert_eq!(checkin, 2_000_000);
}

/// The facts limit is `writes.max_body_bytes`, not the smaller limit of the
/// run endpoints (`scheduler.max_report_bytes`, 1 MiB by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_larger_than_the_report_limit_are_taken() {
    let db = migrated_db("writes_large").await;
    let bridge = bridge(&db, &[]).await;
    let sent = json!({"blob": "x".repeat(2 * 1024 * 1024), "kernel": "Linux"});
    let (status, _, body) = bridge
        .post(
            "/facts/large.example.com",
            "application/json",
            sent.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (stored, _, _) = stored_facts(&db.primary_url, "large.example.com")
        .await
        .expect("stored");
    assert_eq!(stored, sent);
    bridge.stop().await;
}

/// A primary URL nothing listens on: a port just bound and released.
fn closed_primary_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_spooled_while_the_primary_is_down_and_replayed_once_it_answers() {
    let db = migrated_db("writes_spool").await;
    let spool_dir = std::env::temp_dir().join(format!(
        "pvc-bridge-it-spool-{}-{}",
        std::process::id(),
        db.primary_url.len()
    ));
    let _ = std::fs::remove_dir_all(&spool_dir);
    let dir = spool_dir.to_str().expect("utf-8 temp dir");
    let spool = [("PVC_WRITES__SPOOL_DIR", dir)];

    // Without a spool, a primary that cannot be reached is a 503.
    let mut config = crate::support::config_for(&db, &[]);
    config.database_primary = closed_primary_url();
    let unspooled = TestBridge::start(config).await;
    let (status, _, text) = unspooled
        .post(
            "/facts/down.example.com",
            "application/json",
            facts(1, "Linux").to_string(),
        )
        .await;
    assert_eq!(status, 503, "{text}");
    unspooled.stop().await;

    // With a spool: every upload is answered as spooled.
    let mut config = crate::support::config_for(&db, &spool);
    config.database_primary = closed_primary_url();
    let down = TestBridge::start(config).await;
    let older = facts(100, "Linux");
    let newer = facts(200, "Linux 6.1");
    let mut received = Vec::new();
    for sent in [&older, &newer] {
        let (status, _, text) = down
            .post(
                "/facts/web01.example.com",
                "application/json",
                sent.to_string(),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        let answer = parse(&text);
        assert_eq!(answer["stored"], false, "{text}");
        assert_eq!(answer["spooled"], true, "{text}");
        received.push(answer["received_ms"].as_i64().expect("received_ms"));
    }
    let (status, _, text) = down
        .post(
            "/api/hosts/facts",
            "application/json",
            json!({"facts": older, "name": "db01.example.com"}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(parse(&text)["spooled"], true, "{text}");
    let report = json!({
        "host": "web01.example.com",
        "reported_at": "2026-11-27 05:00:00 UTC",
        "status": {"applied": 1, "restarted": 0, "failed": 0, "failed_restarts": 0, "skipped": 0, "pending": 0},
        "metrics": {"time": {"total": 3.5}},
        "logs": []
    });
    let body = json!({"config_report": report}).to_string();
    // The report processor retries: the same report is spooled twice.
    for _ in 0..2 {
        let (status, _, text) = down
            .post("/api/config_reports", "application/json", body.clone())
            .await;
        assert_eq!(status, 201, "{text}");
        let answer = parse(&text);
        assert_eq!(answer["stored"], false, "{text}");
        assert_eq!(answer["spooled"], true, "{text}");
        assert_eq!(answer["host_name"], "web01.example.com");
    }
    let (status, _, metrics) = down.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "pvc_bridge_uploads_total{kind=\"facts\",outcome=\"spooled\"} 3",
        "pvc_bridge_uploads_total{kind=\"report\",outcome=\"spooled\"} 2",
        "pvc_bridge_spool_records 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert_eq!(count(&db, "pvc.facts").await, 0);
    // A replay while the primary is still down stops at the first record
    // and keeps them all.
    assert!(down.bridge.uploads.replay().await.is_err());
    assert_eq!(down.bridge.uploads.spool_stats().expect("spool").records, 5);
    down.stop().await;

    // The same spool on a bridge whose primary answers: replayed once.
    let up = bridge(&db, &spool).await;
    assert_eq!(
        up.bridge.uploads.spool_stats().expect("spool").records,
        5,
        "the spool survives the restart"
    );
    let replayed = up.bridge.uploads.replay().await.expect("replay");
    assert_eq!(replayed, 5);
    assert_eq!(up.bridge.uploads.spool_stats().expect("spool").records, 0);
    assert_eq!(up.bridge.uploads.replay().await.expect("replay"), 0);

    let (stored, _, source) = stored_facts(&db.primary_url, "web01.example.com")
        .await
        .expect("web01 facts");
    assert_eq!(stored, newer, "the newest facts win");
    assert_eq!(source, "facts");
    let (stored, _, source) = stored_facts(&db.primary_url, "db01.example.com")
        .await
        .expect("db01 facts");
    assert_eq!(stored, older);
    assert_eq!(source, "foreman");
    assert_eq!(count(&db, "pvc.facts").await, 2);
    assert_eq!(count(&db, "pvc.config_reports").await, 1);

    // Stored with the time the bridge accepted them, not the replay's.
    let client = db.connect_primary().await.expect("primary");
    let row = client
        .query_one(
            "SELECT (extract(epoch FROM received) * 1000)::bigint FROM pvc.facts WHERE certname = $1",
            &[&"web01.example.com"],
        )
        .await
        .expect("received");
    assert_eq!(row.get::<_, i64>(0), received[1]);

    let (_, _, metrics) = up.get("/metrics").await;
    for line in [
        "pvc_bridge_uploads_total{kind=\"report\",outcome=\"new\"} 1",
        "pvc_bridge_uploads_total{kind=\"report\",outcome=\"replay\"} 1",
        "pvc_bridge_spool_records 0",
        "pvc_bridge_spool_replayed_total 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    up.stop().await;
    let _ = std::fs::remove_dir_all(&spool_dir);
}

/// The replay loop, on the server's own runtime (actix: current-thread),
/// drains the spool by itself once the primary answers.
#[actix_web::test]
async fn the_replay_loop_drains_the_spool_once_the_primary_answers() {
    let db = migrated_db("writes_spool_loop").await;
    let spool_dir = std::env::temp_dir().join(format!(
        "pvc-bridge-it-spool-loop-{}-{}",
        std::process::id(),
        db.primary_url.len()
    ));
    let _ = std::fs::remove_dir_all(&spool_dir);
    let dir = spool_dir.to_str().expect("utf-8 temp dir");
    let spool = [("PVC_WRITES__SPOOL_DIR", dir)];

    let mut config = crate::support::config_for(&db, &spool);
    config.database_primary = closed_primary_url();
    let down = TestBridge::start(config).await;
    let sent = facts(100, "Linux");
    let (status, _, text) = down
        .post(
            "/facts/loop.example.com",
            "application/json",
            sent.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(parse(&text)["spooled"], true, "{text}");
    down.stop().await;

    let up = bridge(&db, &spool).await;
    up.bridge.uploads.start();
    // Wait for the loop (every few seconds); a broken loop fails here.
    for _ in 0..300 {
        if up.bridge.uploads.spool_stats().expect("spool").records == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.bridge.uploads.spool_stats().expect("spool").records, 0);
    let (stored, _, _) = stored_facts(&db.primary_url, "loop.example.com")
        .await
        .expect("replayed facts");
    assert_eq!(stored, sent);
    up.stop().await;
    let _ = std::fs::remove_dir_all(&spool_dir);
}

/// A bridge of the previous release calls the schema's older signatures
/// during a rolling upgrade: they still store (and queue for Foreman).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_calls_still_store_after_migrating() {
    let db = migrated_db("writes_old_signatures").await;
    let client = db.connect_primary().await.expect("primary");
    let row = client
        .query_one(
            "SELECT outcome, digest FROM pvc.store_facts('old.example.com', '{\"a\":1}', \
             '{\"a\":1}', 'facts', NULL)",
            &[],
        )
        .await
        .expect("the 0002 signature");
    assert_eq!(row.get::<_, String>("outcome"), "new");
    let queued: i64 = client
        .query_one(
            "SELECT count(*) FROM pvc.outbox WHERE certname = 'old.example.com'",
            &[],
        )
        .await
        .expect("outbox")
        .get(0);
    assert_eq!(queued, 1);
    let row = client
        .query_one(
            "SELECT report_id, lease_state FROM pvc.store_report('old.example.com', NULL, \
             'schedule', 'full', 0, NULL, 1.5, NULL, NULL, NULL, NULL)",
            &[],
        )
        .await
        .expect("the 0001 signature");
    assert_eq!(row.get::<_, String>("lease_state"), "unknown");
    assert_eq!(count(&db, "pvc.reports").await, 1);
}

/// A bridge with `http.request_head_timeout_ms = timeout_ms` and a
/// connection to it that has sent only part of a request head.
async fn half_sent_request(db: &TestDb, timeout_ms: &str) -> (TestBridge, tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let bridge = TestBridge::start(config_for(
        db,
        &[("PVC_HTTP__REQUEST_HEAD_TIMEOUT_MS", timeout_ms)],
    ))
    .await;
    let addr = bridge.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    (bridge, slow)
}

/// Everything the bridge sends on `conn` until it closes it (30 s at most:
/// a deadline, not a timing assertion).
async fn read_until_closed(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .expect("the bridge closed the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that sends its request head slowly (slow-loris) is answered 408
/// and disconnected after `http.request_head_timeout_ms`, and holds nothing:
/// a normal request on another connection is served meanwhile.
#[actix_web::test]
async fn a_slow_client_is_cut_off_and_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let db = crate::support::foreman_db("writes_slow").await;
    let (bridge, mut slow) = half_sent_request(&db, "300").await;
    // Another client meanwhile.
    let (status, _, body) = bridge.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // The slow one never finishes its head: the bridge ends the connection.
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    bridge.stop().await;

    // The limit is the configured one, not a built-in: with a long one, a
    // head finished after 6 s (past actix's default of 5) is still served.
    let (patient, mut slow) = half_sent_request(&db, "60000").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    slow.write_all(b"Connection: close\r\n\r\n")
        .await
        .expect("rest of the head");
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    patient.stop().await;
}

/// A request head larger than actix's limits (32 KiB in all, 96 headers) is
/// refused with 431 (or the connection closed) before any handler runs, and
/// the bridge goes on serving.
#[actix_web::test]
async fn an_oversized_request_head_is_refused() {
    use tokio::io::AsyncWriteExt;
    let db = crate::support::foreman_db("writes_head").await;
    let bridge = TestBridge::start(config_for(&db, &[])).await;
    let addr = bridge.base.trim_start_matches("http://").to_owned();
    let long_header = format!("X-Filler: {}\r\n", "a".repeat(64 * 1024));
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (what, headers) in [
        ("64 KiB header", long_header),
        ("200 headers", many_headers),
    ] {
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!("GET /host?fqdn=web01.example.com HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        // The bridge may close before the whole head is written.
        let _ = conn.write_all(head.as_bytes()).await;
        let answer = read_until_closed(&mut conn).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{what}: {}",
            answer.lines().next().unwrap_or_default()
        );
    }
    let (status, _, body) = bridge.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    bridge.stop().await;
}

#[test]
fn http_limits_must_be_positive() {
    let errors = pvc_bridge::config::load_from(
        None,
        vec![
            (
                "PVC_DATABASE__PRIMARY".to_owned(),
                "postgres://x@db/foreman".to_owned(),
            ),
            ("PVC_HTTP__KEEP_ALIVE_SECS".to_owned(), "0".to_owned()),
        ],
    )
    .expect_err("rejected")
    .to_string();
    assert!(
        errors.contains("http.keep_alive_secs: must be at least 1"),
        "{errors}"
    );
}
