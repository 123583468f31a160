//! The status page's rollouts and hostgroup panels end to end: Foreman's
//! rollout plugin tables (the real schema, `foreman_pvc_schema.sql`) on the
//! primary, read from the replica at a snapshot refresh, and the same
//! counts in `/stats` and `/metrics`; a Foreman without the plugin; the
//! hostgroups of the Foreman fixture's hosts.

use std::collections::BTreeMap;

use pvc_bridge::config::{self, Config};
use pvc_testkit::cluster::{self, TestDb};
use serde_json::Value;

use crate::support::{golden_dir, migrated_db, write_and_replicate, TestBridge, ADMIN_TOKEN};

/// The plugin's tables as `pg_dump` printed them from a real Foreman.
fn plugin_schema() -> String {
    std::fs::read_to_string(golden_dir().join("foreman_pvc_schema.sql")).expect("plugin schema")
}

/// Three waves of "kernel-6.1" (running, wave 2 active), "openssl" paused
/// by its failed canary, "old" completed two hours ago (not shown) and a
/// draft (not shown). Host ids are not checked by the plugin's tables.
const ROLLOUTS: &str = "
INSERT INTO foreman_pvc_rollouts
  (id, name, search, flag_name, flag_value, waves, state, current_wave, created_by,
   resolved_at, host_count, created_at, updated_at, status_reason)
VALUES
  (1, 'kernel-6.1', 'hostgroup = web', 'update_flag', true, '1,10%,100%', 'running', 1,
   'admin', now() AT TIME ZONE 'UTC', 15, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', NULL),
  (2, 'openssl', 'hostgroup = db', 'openssl_flag', true, '2,100%', 'paused', 0,
   'admin', now() AT TIME ZONE 'UTC', 3, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
   'wave 1: 2 of 2 hosts failed'),
  (3, 'old', 'all', 'update_flag', true, '100%', 'completed', 0,
   'admin', now() AT TIME ZONE 'UTC' - interval '3 hours', 1,
   now() AT TIME ZONE 'UTC' - interval '3 hours', now() AT TIME ZONE 'UTC' - interval '2 hours', NULL),
  (4, 'later', 'all', 'update_flag', true, '100%', 'draft', NULL,
   'admin', NULL, 0, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', NULL);
INSERT INTO foreman_pvc_waves (id, rollout_id, position, state, deadline_at, gate_reason, created_at, updated_at)
VALUES
  (10, 1, 0, 'passed', NULL, NULL, now(), now()),
  (11, 1, 1, 'active', now() AT TIME ZONE 'UTC' + interval '1 hour', NULL, now(), now()),
  (12, 1, 2, 'pending', NULL, NULL, now(), now()),
  (20, 2, 0, 'failed', NULL, '2 of 2 hosts failed', now(), now()),
  (21, 2, 1, 'pending', NULL, NULL, now(), now()),
  (30, 3, 0, 'passed', NULL, NULL, now(), now());
-- kernel-6.1: wave 1 one host ok; wave 2 two ok, one failed, one
-- unreachable, three pending; wave 3 seven pending.
INSERT INTO foreman_pvc_wave_hosts (wave_id, rollout_id, host_id, hostname, position, outcome)
SELECT w, 1, n, 'h' || n || '.example.com', n,
       CASE WHEN n = 1 THEN 'ok' WHEN n IN (2, 3) THEN 'ok' WHEN n = 4 THEN 'failed'
            WHEN n = 5 THEN 'unreachable' ELSE 'pending' END
FROM (SELECT n, CASE WHEN n = 1 THEN 10 WHEN n <= 8 THEN 11 ELSE 12 END AS w
      FROM generate_series(1, 15) n) s;
INSERT INTO foreman_pvc_wave_hosts (wave_id, rollout_id, host_id, hostname, position, outcome)
VALUES (20, 2, 1, 'a.example.com', 1, 'failed'), (20, 2, 2, 'b.example.com', 2, 'failed'),
       (21, 2, 3, 'c.example.com', 3, 'pending'),
       (30, 3, 1, 'a.example.com', 1, 'ok');
";

/// A bridge with one static server, its host directory loaded.
async fn start(db: &TestDb, tag: &str) -> TestBridge {
    let dir = std::env::temp_dir().join(format!("pvc-it-panels-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bridge.toml");
    std::fs::write(
        &file,
        "[scheduler]\nfact_interval_secs = 0\ntarget_utilization = 0.7\n\
         [[scheduler.servers]]\nname = \"puppet1.example.com\"\njrubies = 4\n",
    )
    .expect("config file");
    let env = vec![
        ("PVC_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("PVC_DATABASE__PRIMARY".to_owned(), db.primary_url.clone()),
        ("PVC_DATABASE__REPLICAS".to_owned(), db.replica_url.clone()),
        ("PVC_DATABASE__POOL_SIZE".to_owned(), "4".to_owned()),
        (
            "PVC_DATABASE__MAX_LAG_BYTES".to_owned(),
            "7340032".to_owned(),
        ),
    ];
    let config: Config = config::load_from(Some(&file), env).expect("test configuration");
    let health = config.replica_health.clone();
    let bridge = TestBridge::start(config).await;
    // As `serve` does: the monitor applies `database.max_lag_bytes`.
    bridge.bridge.db.start_monitor(health);
    bridge.start_runs().await;
    bridge
}

async fn stats(bridge: &TestBridge) -> Value {
    let (status, _, body) = bridge.get("/stats").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

async fn metrics(bridge: &TestBridge) -> String {
    let (status, _, body) = bridge.get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the one sample `series` (name with labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[actix_web::test]
async fn rollouts_with_their_waves_in_stats_and_metrics() {
    let db = migrated_db("panels_rollouts").await;
    write_and_replicate(&db, &format!("{}\n{ROLLOUTS}", plugin_schema())).await;
    let bridge = start(&db, "rollouts").await;

    let doc = stats(&bridge).await;
    let panel = &doc["rollouts"];
    assert_eq!(panel["source"], "read", "{panel}");
    let names: Vec<&str> = panel["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // Open ones only: "old" finished two hours ago, "later" is a draft.
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"kernel-6.1") && names.contains(&"openssl"));
    let by_name = |name: &str| {
        panel["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let kernel = by_name("kernel-6.1");
    assert_eq!(kernel["state"], "running");
    assert_eq!(kernel["waves"], 3);
    assert_eq!(kernel["current"]["number"], 2);
    assert_eq!(kernel["current"]["state"], "active");
    let wave = &kernel["current"]["hosts"];
    assert_eq!(
        [
            &wave["ok"],
            &wave["failed"],
            &wave["unreachable"],
            &wave["pending"]
        ],
        [2, 1, 1, 3]
    );
    assert!(
        kernel["current"]["deadline_ms"].as_i64().unwrap() > doc["generated_ms"].as_i64().unwrap()
    );
    let all = &kernel["hosts"];
    assert_eq!([&all["ok"], &all["pending"], &all["total"]], [3, 10, 15]);
    let openssl = by_name("openssl");
    assert_eq!(openssl["paused_by_failures"], true);
    assert_eq!(openssl["current"]["gate_reason"], "2 of 2 hosts failed");
    assert_eq!(panel["paused_by_failures"], 1);

    let text = metrics(&bridge).await;
    let want = [
        ("pvc_bridge_rollout_plugin_installed", 1.0),
        ("pvc_bridge_rollouts{state=\"running\"}", 1.0),
        ("pvc_bridge_rollouts{state=\"paused\"}", 1.0),
        ("pvc_bridge_rollouts{state=\"completed\"}", 0.0),
        ("pvc_bridge_rollouts_paused_by_failures", 1.0),
        (
            "pvc_bridge_rollout_hosts{rollout=\"kernel-6.1\",outcome=\"ok\"}",
            3.0,
        ),
        (
            "pvc_bridge_rollout_hosts{rollout=\"kernel-6.1\",outcome=\"failed\"}",
            1.0,
        ),
        (
            "pvc_bridge_rollout_hosts{rollout=\"kernel-6.1\",outcome=\"unreachable\"}",
            1.0,
        ),
        (
            "pvc_bridge_rollout_hosts{rollout=\"kernel-6.1\",outcome=\"pending\"}",
            10.0,
        ),
        (
            "pvc_bridge_rollout_hosts{rollout=\"openssl\",outcome=\"failed\"}",
            2.0,
        ),
        (
            "pvc_bridge_rollout_current_wave_hosts{rollout=\"kernel-6.1\",outcome=\"pending\"}",
            3.0,
        ),
        (
            "pvc_bridge_rollout_current_wave{rollout=\"kernel-6.1\",state=\"running\"}",
            2.0,
        ),
        (
            "pvc_bridge_rollout_waves{rollout=\"kernel-6.1\",state=\"running\"}",
            3.0,
        ),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, series), Some(value), "{series}");
    }
    assert!(!text.contains("rollout=\"old\""));
    bridge.stop().await;
}

#[actix_web::test]
async fn without_the_plugin_the_panel_says_not_installed() {
    let db = migrated_db("panels_no_plugin").await;
    let bridge = start(&db, "no-plugin").await;
    let doc = stats(&bridge).await;
    assert_eq!(doc["rollouts"]["source"], "not_installed");
    assert_eq!(doc["rollouts"]["error"], Value::Null);
    let text = metrics(&bridge).await;
    assert_eq!(
        sample(&text, "pvc_bridge_rollout_plugin_installed"),
        Some(0.0)
    );
    assert!(!text.contains("pvc_bridge_rollouts{"));
    bridge.stop().await;
}

/// Hostgroups from the directory (no query per request), the lag bound,
/// the utilisation target and converge requests, in `/stats` and
/// `/metrics` alike.
#[actix_web::test]
async fn hostgroups_and_the_gauges_the_page_names() {
    let db = migrated_db("panels_hostgroups").await;
    let bridge = start(&db, "hostgroups").await;
    // What Foreman says: managed hosts per hostgroup title.
    let client = cluster::connect(&db.primary_url).await.expect("primary");
    let rows = client
        .query(
            "SELECT coalesce(g.title, '(none)') AS title, count(*)::int8 AS n FROM hosts h \
             LEFT JOIN hostgroups g ON g.id = h.hostgroup_id \
             WHERE h.type = 'Host::Managed' GROUP BY 1",
            &[],
        )
        .await
        .expect("hostgroups");
    let foreman: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(foreman.len() > 1, "the fixture has hostgroups: {foreman:?}");

    // A converge request in progress.
    let host = crate::support::golden_hosts()[0].clone();
    let response = bridge
        .http
        .post(format!("{}/admin/converge", bridge.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"certnames": [host], "within_secs": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);

    let doc = stats(&bridge).await;
    let groups = &doc["fairness"]["hostgroups"];
    let worst = groups["worst"].as_array().unwrap();
    assert_eq!(groups["total"], foreman.len());
    assert_eq!(groups["more"], foreman.len() - worst.len());
    for row in worst {
        let title = row["hostgroup"].as_str().unwrap();
        assert_eq!(
            row["hosts"].as_i64(),
            foreman.get(title).copied(),
            "{title}"
        );
    }
    assert_eq!(doc["replica_max_lag_bytes"], 7_340_032);

    let text = metrics(&bridge).await;
    assert_eq!(
        sample(&text, "pvc_bridge_replica_max_lag_bytes"),
        Some(7_340_032.0)
    );
    assert_eq!(
        sample(&text, "pvc_bridge_converge_requests_in_progress"),
        Some(doc["converges"].as_array().unwrap().len() as f64)
    );
    assert_eq!(doc["converges"].as_array().unwrap().len(), 1);
    assert_eq!(
        sample(
            &text,
            "pvc_bridge_pool_utilization_target{pool=\"default\"}"
        ),
        Some(0.7)
    );
    // No host has run yet: none is beyond max_interval, in either.
    let behind = doc["fairness"]["hostgroups"]["with_hosts_beyond"].as_f64();
    assert_eq!(
        sample(&text, "pvc_bridge_hostgroups_beyond_max_interval"),
        behind
    );
    assert!(!text.contains("pvc_bridge_hosts_beyond_max_interval_by_hostgroup{"));
    bridge.stop().await;
}
