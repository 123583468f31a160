//! Degraded modes of the ENC: with every database stopped, a host's last
//! good document is served marked stale within `cache.stale_grace_secs`
//! past its TTL, loaded once however many requests ask; nothing is served
//! for hosts never loaded, nor past the grace period, nor with the grace
//! period off; `/readyz` says why it is not ready; once the databases are
//! back, answers are fresh again.
//!
//! Runs on a cluster of its own: the shared one must never stop under the
//! other tests.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::{config_for, golden_enc, private_cluster, TestBridge};

/// Bound on every wait; far above what any step takes.
const PATIENCE: Duration = Duration::from_secs(60);
const HOST: &str = "db62.lab.globex.test";
const WARNING: &str = r#"110 pvc-bridge "Response is Stale""#;

/// Status, the `Warning` and `X-PVC-Stale-Seconds` headers, and the body.
struct Answer {
    status: u16,
    warning: Option<String>,
    stale_seconds: Option<u64>,
    body: String,
}

async fn get(bridge: &TestBridge, path: &str) -> Answer {
    let response = bridge
        .http
        .get(format!("{}{path}", bridge.base))
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    };
    let warning = header("warning");
    let stale_seconds = header("x-pvc-stale-seconds").map(|v| v.parse().expect("seconds"));
    Answer {
        status: response.status().as_u16(),
        warning,
        stale_seconds,
        body: response.text().await.expect("body"),
    }
}

fn node(host: &str) -> String {
    format!("/node/{host}?format=yml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_database_down_the_last_good_enc_is_served_stale_within_the_grace_period() {
    let (cluster, db) = private_cluster("degraded", false).await;
    let bridge_with = |grace: &'static str| {
        config_for(
            &db,
            &[
                ("PVC_CACHE__TTL_SECS", "1"),
                ("PVC_CACHE__STALE_GRACE_SECS", grace),
                ("PVC_DATABASE__CONNECT_TIMEOUT_SECS", "1"),
            ],
        )
    };
    let stale_ok = TestBridge::start(bridge_with("600")).await;
    let stale_off = TestBridge::start(bridge_with("0")).await;
    // A grace period the outage below outlasts.
    let stale_short = TestBridge::start(bridge_with("1")).await;
    let golden = golden_enc(HOST);

    for bridge in [&stale_ok, &stale_off, &stale_short] {
        let answer = get(bridge, &node(HOST)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, golden);
        assert_eq!(answer.warning, None);
        assert_eq!(answer.stale_seconds, None);
    }
    let ready = get(&stale_ok, "/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, "ready (replica)\n")
    );

    cluster.stop_replica().await.expect("stopping the replica");
    cluster.stop_primary().await.expect("stopping the primary");
    // Past the TTL (1 s) and past ttl + grace of `stale_short` (2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // A herd for the expired host: one load attempt, every answer the last
    // good document, marked stale.
    let loads_before = stale_ok.bridge.enc.stats.loads.load(Ordering::Relaxed);
    let path = node(HOST);
    let herd = (0..32).map(|_| get(&stale_ok, &path));
    let answers = futures::future::join_all(herd).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, golden);
        assert_eq!(answer.warning.as_deref(), Some(WARNING));
        let age = answer.stale_seconds.expect("X-PVC-Stale-Seconds");
        assert!(
            age >= 2,
            "the document was loaded before the outage: {age} s"
        );
    }
    let stats = &stale_ok.bridge.enc.stats;
    assert_eq!(
        stats.loads.load(Ordering::Relaxed) - loads_before,
        1,
        "one load attempt for 32 requests"
    );
    assert_eq!(stats.stale_served.load(Ordering::Relaxed), 32);
    let metrics = get(&stale_ok, "/metrics").await.body;
    assert!(
        metrics.contains("\npvc_bridge_enc_stale_served_total 32\n"),
        "{metrics}"
    );

    // Foreman's HTML form is marked too.
    let html = get(&stale_ok, &format!("/node/{HOST}")).await;
    assert_eq!(html.status, 200, "{}", html.body);
    assert_eq!(html.warning.as_deref(), Some(WARNING));
    assert!(html.body.starts_with("<pre>"), "{}", html.body);

    // Nothing cached: 503 as before, for an unknown host and for a real
    // host never asked for.
    for host in ["nosuch.example.com", "kafka10.example.com"] {
        let answer = get(&stale_ok, &node(host)).await;
        assert_eq!(answer.status, 503, "{host}: {}", answer.body);
        assert!(answer.body.contains("primary"), "{}", answer.body);
        assert_eq!(answer.warning, None);
    }

    // No stale answers past the grace period, nor with it off.
    for bridge in [&stale_short, &stale_off] {
        let answer = get(bridge, &node(HOST)).await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.warning, None);
        assert_eq!(
            bridge.bridge.enc.stats.stale_served.load(Ordering::Relaxed),
            0
        );
    }

    // /readyz says why, and what the ENC does meanwhile.
    let ready = get(&stale_ok, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    for part in [
        format!(
            "no database reachable: replicas: 127.0.0.1:{} ",
            cluster.replica_port()
        ),
        "; primary: ".to_owned(),
        "; serving cached ENC documents up to 601 s old, marked stale\n".to_owned(),
    ] {
        assert!(
            ready.body.contains(part.as_str()),
            "{part:?} missing from {}",
            ready.body
        );
    }
    let ready = get(&stale_off, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready
            .body
            .contains("no stale ENC documents are served (cache.stale_grace_secs = 0)"),
        "{}",
        ready.body
    );

    // The databases come back: fresh answers, without the marks.
    cluster.start_replica().await.expect("starting the replica");
    cluster.start_primary().await.expect("starting the primary");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = get(&stale_ok, &node(HOST)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, golden);
        if answer.warning.is_none() {
            assert_eq!(answer.stale_seconds, None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still stale {PATIENCE:?} after the databases came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for bridge in [&stale_off, &stale_short] {
        let answer = get(bridge, &node(HOST)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, golden);
        assert_eq!(answer.warning, None);
    }
    // Ready again (from the replica, or from the primary while routing
    // still keeps the replica out after its failures).
    let ready = get(&stale_ok, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(ready.body.starts_with("ready ("), "{}", ready.body);

    for bridge in [stale_ok, stale_off, stale_short] {
        bridge.stop().await;
    }
    drop(db);
}
