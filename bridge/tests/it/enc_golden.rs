//! The golden test: for every host of the real Foreman fixture, the bridge's
//! `/node/<host>?format=yml` is byte-identical to what real Foreman served.

use crate::support::{self, TestBridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_host_matches_real_foreman_byte_for_byte() {
    let db = support::foreman_db("golden").await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    let hosts = support::golden_hosts();
    assert_eq!(hosts.len(), 40, "the fixture has 40 hosts");
    let mut mismatches = Vec::new();
    for host in &hosts {
        let (status, content_type, body) = bridge.get(&format!("/node/{host}?format=yml")).await;
        let expected = support::golden_enc(host);
        if status != 200 || body != expected {
            mismatches.push(format!(
                "=== {host}: status {status}\n{}",
                first_difference(&expected, &body)
            ));
            continue;
        }
        assert_eq!(content_type, "text/plain; charset=utf-8", "{host}");
        // Parsed YAML must agree too (this is what puppetserver consumes).
        let ours: serde_yaml::Value = serde_yaml::from_str(&body).expect("our YAML parses");
        let theirs: serde_yaml::Value = serde_yaml::from_str(&expected).expect("golden parses");
        assert_eq!(ours, theirs, "{host}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} hosts differ from real Foreman:\n{}",
        mismatches.len(),
        hosts.len(),
        mismatches.join("\n")
    );
    // The replica served every read.
    let stats = &bridge.bridge.db.stats;
    assert_eq!(
        stats
            .read_fallbacks
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_names_answer_like_foreman() {
    let db = support::foreman_db("unknown").await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    // The names real Foreman answered 404 (empty body) on this database.
    let unknown = std::fs::read_to_string(support::golden_dir().join("unknown.txt")).unwrap();
    for name in unknown.lines().filter(|l| !l.is_empty()) {
        let (status, _, body) = bridge.get(&format!("/node/{name}?format=yml")).await;
        assert_eq!((status, body.as_str()), (404, ""), "{name}");
    }
    // Foreman falls back to the numeric id: /node/10 is app03.
    let (status, _, body) = bridge.get("/node/10?format=yml").await;
    assert_eq!(status, 200);
    assert_eq!(body, support::golden_enc("app03.lab.globex.test"));
    for bad in [
        "bad%20name",
        "-x.example.com",
        "a..b",
        "%2e%2e%2fetc",
        "x%00y",
    ] {
        let (status, _, body) = bridge.get(&format!("/node/{bad}?format=yml")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("certname"), "{bad}: reason missing: {body}");
    }
    let long = "a".repeat(300);
    let (status, _, _) = bridge.get(&format!("/node/{long}?format=yml")).await;
    assert_eq!(status, 400);
    let (status, _, body) = bridge.get("/node/app03.lab.globex.test?format=json").await;
    assert_eq!(status, 400, "{body}");
    bridge.stop().await;
}

/// The first differing line with context, for a readable failure.
fn first_difference(expected: &str, actual: &str) -> String {
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let at = expected_lines
        .iter()
        .zip(&actual_lines)
        .position(|(e, a)| e != a)
        .unwrap_or(expected_lines.len().min(actual_lines.len()));
    let from = at.saturating_sub(3);
    let show = |lines: &[&str]| {
        lines
            .iter()
            .enumerate()
            .skip(from)
            .take(8)
            .map(|(i, l)| format!("{:4} {l}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "first difference at line {}\n--- real Foreman\n{}\n--- bridge\n{}",
        at + 1,
        show(&expected_lines),
        show(&actual_lines)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_prewarmed_hostgroup_chains_give_the_same_documents() {
    let db = support::foreman_db("prewarm").await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    bridge.bridge.enc.prewarm().await.expect("prewarm");
    let after_prewarm = bridge.bridge.enc.layer_loads();
    for host in support::golden_hosts() {
        let (status, _, body) = bridge.get(&format!("/node/{host}?format=yml")).await;
        assert_eq!(status, 200, "{host}");
        assert_eq!(body, support::golden_enc(&host), "{host}");
    }
    // 13 hostgroups in the fixture: none of their chains loaded one by one.
    let per_host_layers = bridge.bridge.enc.layer_loads() - after_prewarm;
    let unprewarmed = {
        let db = support::foreman_db("prewarm_baseline").await;
        let cold = TestBridge::start(support::config_for(&db, &[])).await;
        for host in support::golden_hosts() {
            cold.get(&format!("/node/{host}?format=yml")).await;
        }
        let n = cold.bridge.enc.layer_loads();
        cold.stop().await;
        n
    };
    assert!(
        per_host_layers + 10 <= unprewarmed,
        "prewarmed: {per_host_layers} layer loads, without: {unprewarmed}"
    );
    bridge.stop().await;
}
