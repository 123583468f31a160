//! Run decisions end to end: `/host`, `/report`, `/ppm` on real bridges
//! sharing one primary (leases) and reading one replica (hosts).

use std::collections::HashMap;
use std::time::Duration;

use pvc_bridge::config::{self, Config};
use pvc_testkit::cluster::{self, TestDb};

use crate::support::{eval_in, golden_hosts, migrated_db, write_and_replicate, TestBridge};

/// A bridge configuration with a `[scheduler]` section (servers are a list
/// of tables, which only a file can hold).
fn config_with(db: &TestDb, scheduler_toml: &str, tag: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("pvc-it-runs-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bridge.toml");
    std::fs::write(&file, scheduler_toml).expect("config file");
    let env = vec![
        ("PVC_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("PVC_DATABASE__PRIMARY".to_owned(), db.primary_url.clone()),
        ("PVC_DATABASE__REPLICAS".to_owned(), db.replica_url.clone()),
        ("PVC_DATABASE__POOL_SIZE".to_owned(), "4".to_owned()),
    ];
    config::load_from(Some(&file), env).expect("test configuration")
}

/// A fresh migrated database and a bridge on it with the static server and
/// `extra` lines in `[scheduler]`.
async fn start_static(hint: &str, extra: &str) -> (TestDb, TestBridge) {
    let db = migrated_db(hint).await;
    let toml = STATIC_SERVER.replace(
        "fact_interval_secs = 0",
        &format!("fact_interval_secs = 0\n{extra}"),
    );
    let bridge = start(config_with(&db, &toml, hint)).await;
    (db, bridge)
}

async fn start(config: Config) -> TestBridge {
    let bridge = TestBridge::start(config).await;
    bridge.start_runs().await;
    bridge
}

/// The values of `keys` after evaluating `answer` in a real `sh`.
fn eval_in_sh(answer: &str, keys: &[&str]) -> Vec<String> {
    eval_in("sh", answer, keys)
        .into_iter()
        .map(|v| String::from_utf8(v).expect("UTF-8 values"))
        .collect()
}

fn value_of(answer: &str, key: &str) -> String {
    eval_in_sh(answer, &[key]).remove(0)
}

const STATIC_SERVER: &str = "
[scheduler]
fact_interval_secs = 0
[[scheduler.servers]]
name = \"puppet1.example.com\"
jrubies = 8
";

#[actix_web::test]
async fn host_answer_evaluates_to_exactly_foremans_values_in_sh() {
    let db = migrated_db("runs_shell").await;
    let host = golden_hosts()[0].clone();
    let marker = std::env::temp_dir().join(format!("pvc-pwned-{}", std::process::id()));
    let hostile = format!(
        "a'b\"c $(touch {m}) `touch {m}`; touch {m}\nline2 \\ %s $HOME",
        m = marker.display()
    );
    write_and_replicate(
        &db,
        &format!(
            "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at) VALUES \
             ('CommonParameter', NULL, 'pvc_facter_motd', 'string', {v}, now(), now()), \
             ('CommonParameter', NULL, 'pvc_facter_bad name$(x)', 'string', 'x', now(), now()), \
             ('CommonParameter', NULL, 'update_flag', 'boolean', 'true', now(), now()), \
             ('CommonParameter', NULL, 'pvc_facter_canary', 'boolean', 'false', now(), now()), \
             ('CommonParameter', NULL, 'pvc_files_monitored', 'string', '/etc/sudoers /etc/passwd', now(), now());",
            v = sql_literal(&hostile)
        ),
    )
    .await;
    let bridge = start(config_with(&db, STATIC_SERVER, "shell")).await;
    let (status, content_type, body) = bridge.get(&format!("/host/{host}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/plain"));
    let values = eval_in_sh(
        &body,
        &[
            "PVC_RETURN",
            "FACTER_MOTD",
            "FACTER_UPDATE_FLAG",
            "FACTER_CANARY",
            "PVC_FILES_MONITORED",
        ],
    );
    assert_eq!(values[0], "0");
    assert_eq!(values[1], hostile, "the value arrives byte for byte");
    assert_eq!(values[2], "true");
    assert_eq!(values[3], "", "a false flag is omitted, not 'false'");
    assert!(!body.contains("FACTER_CANARY"));
    assert_eq!(values[4], "/etc/sudoers /etc/passwd");
    assert!(
        !body.contains("BAD"),
        "an unsafe name is never emitted: {body}"
    );
    assert!(!marker.exists(), "evaluating the answer ran a command");
    // The query form and JSON carry the same keys.
    let json: serde_json::Value = bridge
        .http
        .get(format!("{}/host?fqdn={host}", bridge.base))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["FACTER_MOTD"], hostile.as_str());
    assert_eq!(json["PVC_RETURN"], "0");
    // Every answer names the protocol; polls are counted by the one the
    // agent declares (none from the original agent, as above).
    assert_eq!(json["PVC_PROTOCOL"], pvc_bridge::runs::PROTOCOL.to_string());
    assert_eq!(value_of(&body, "PVC_PROTOCOL"), "1");
    for declared in ["1", "0", "99"] {
        let status = bridge
            .http
            .get(format!("{}/host?fqdn={host}", bridge.base))
            .header(pvc_bridge::runs::PROTOCOL_HEADER, declared)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let (_, _, metrics) = bridge.get("/metrics").await;
    for (protocol, polls) in [("none", 2), ("current", 1), ("older", 1), ("newer", 1)] {
        let series =
            format!("pvc_bridge_polls_by_protocol_total{{protocol=\"{protocol}\"}} {polls}");
        assert!(metrics.contains(&series), "{series} missing from {metrics}");
    }
    bridge.stop().await;
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[actix_web::test]
async fn unknown_and_malformed_hosts_get_no_run_and_a_reason() {
    let (_db, bridge) = start_static("runs_unknown", "").await;
    let (status, _, body) = bridge.get("/host/nosuch.example.com").await;
    assert_eq!(status, 404);
    assert_eq!(value_of(&body, "PVC_RETURN"), "1");
    assert_eq!(value_of(&body, "PVC_RUN"), "0");
    assert!(value_of(&body, "PVC_ERROR").contains("unknown host"));
    for path in ["/host?fqdn=bad..name", "/host", "/host/x?trigger=now"] {
        let (status, _, body) = bridge.get(path).await;
        assert_eq!(status, 400, "{path}");
        assert_ne!(value_of(&body, "PVC_RETURN"), "0", "{path}");
        assert_eq!(value_of(&body, "PVC_RUN"), "0", "{path}");
    }
    bridge.stop().await;
}

async fn poll(bridge: &TestBridge, host: &str, forced: bool) -> String {
    let trigger = if forced { "&trigger=file_change" } else { "" };
    let (status, _, body) = bridge.get(&format!("/host?fqdn={host}{trigger}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn report(
    bridge: &TestBridge,
    host: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = bridge
        .http
        .post(format!("{}/report/{host}", bridge.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[actix_web::test]
async fn a_report_releases_the_lease_and_an_unreported_lease_expires() {
    let (db, bridge) = start_static("runs_lease", "lease_secs = 2").await;
    let host = golden_hosts()[1].clone();
    let first = poll(&bridge, &host, true).await;
    assert_eq!(value_of(&first, "PVC_RUN"), "1", "{first}");
    assert_eq!(value_of(&first, "PVC_RUN_MODE"), "full");
    assert_eq!(value_of(&first, "PVC_PUPPET_MASTER"), "puppet1.example.com");
    let run_id = value_of(&first, "PVC_RUN_ID");
    assert_eq!(run_id.len(), 36, "a UUID: {run_id}");
    // While it runs, no second run.
    let again = poll(&bridge, &host, true).await;
    assert_eq!(value_of(&again, "PVC_RUN"), "0");
    assert_eq!(value_of(&again, "PVC_REASON"), "run_in_progress");
    let (status, answer) = report(
        &bridge,
        &host,
        serde_json::json!({"run_id": run_id, "trigger": "file_change", "mode": "full", "exit_code": 2,
                           "duration_secs": 3.1, "changed_files": ["/etc/sudoers"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["lease"], "released");
    let (_, answer) = report(
        &bridge,
        &host,
        serde_json::json!({"run_id": run_id, "exit_code": 0}),
    )
    .await;
    assert_eq!(
        answer["lease"], "already_ended",
        "a second report of one run"
    );
    let (_, answer) = report(
        &bridge,
        &host,
        serde_json::json!({"run_id": "00000000-0000-4000-8000-000000000000", "exit_code": 0}),
    )
    .await;
    assert_eq!(answer["lease"], "unknown");
    // Released: the host may run again; this lease is never reported.
    let second = poll(&bridge, &host, true).await;
    assert_eq!(value_of(&second, "PVC_RUN"), "1", "{second}");
    let stale = value_of(&second, "PVC_RUN_ID");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let third = poll(&bridge, &host, true).await;
    assert_eq!(
        value_of(&third, "PVC_RUN"),
        "1",
        "the expired lease no longer blocks: {third}"
    );
    let (_, answer) = report(
        &bridge,
        &host,
        serde_json::json!({"run_id": stale, "exit_code": 0}),
    )
    .await;
    assert_eq!(answer["lease"], "expired");
    // Every report was stored, stale or not.
    let primary = cluster::connect(&db.primary_url).await.unwrap();
    let n: i64 = primary
        .query_one(
            "SELECT count(*) FROM pvc.reports WHERE certname = $1",
            &[&host],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    bridge.stop().await;
}

#[actix_web::test]
async fn bad_reports_get_a_reason_and_change_nothing() {
    let (db, bridge) = start_static("runs_badreport", "").await;
    let host = golden_hosts()[2].clone();
    let (status, body) = report(&bridge, &host, serde_json::json!({"exit_code": 999})).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("exit_code"), "{body}");
    let (status, _) = report(
        &bridge,
        "nosuch.example.com",
        serde_json::json!({"exit_code": 0}),
    )
    .await;
    assert_eq!(status, 404);
    let big = "x".repeat(2 * 1024 * 1024);
    let response = bridge
        .http
        .post(format!("{}/report/{host}", bridge.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    // The original agent's body: base64 of `puppet agent -t` output.
    let response = bridge
        .http
        .post(format!("{}/report/{host}", bridge.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Tm90aWNlOiBBcHBsaWVkIGNhdGFsb2cgaW4gMC4wMiBzZWNvbmRz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let primary = cluster::connect(&db.primary_url).await.unwrap();
    let log: String = primary
        .query_one(
            "SELECT log_tail FROM pvc.reports WHERE certname = $1",
            &[&host],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(log, "Notice: Applied catalog in 0.02 seconds");
    bridge.stop().await;
}

#[actix_web::test]
async fn forced_run_budget_holds() {
    let (_db, bridge) = start_static(
        "runs_budget",
        "forced_runs_burst = 2\nforced_runs_per_hour = 0.001",
    )
    .await;
    let host = golden_hosts()[3].clone();
    for i in 0..2 {
        let answer = poll(&bridge, &host, true).await;
        assert_eq!(
            value_of(&answer, "PVC_RUN"),
            "1",
            "forced run {i}: {answer}"
        );
        let run_id = value_of(&answer, "PVC_RUN_ID");
        report(
            &bridge,
            &host,
            serde_json::json!({"run_id": run_id, "exit_code": 0}),
        )
        .await;
    }
    let answer = poll(&bridge, &host, true).await;
    assert_eq!(
        value_of(&answer, "PVC_RUN"),
        "0",
        "over budget: queued like any poll"
    );
    assert_eq!(
        bridge
            .bridge
            .runs
            .stats
            .forced_over_budget
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let (_, _, metrics) = bridge.get("/metrics").await;
    for line in [
        "pvc_bridge_forced_over_budget_total 1",
        "pvc_bridge_runs_granted_total{trigger=\"file_change\"} 2",
        "pvc_bridge_polls_total{trigger=\"file_change\"} 3",
        "pvc_bridge_server_up{server=\"puppet1.example.com\",pool=\"default\"} 1",
        "pvc_bridge_pool_shortage{pool=\"default\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from\n{metrics}"
        );
    }
    bridge.stop().await;
}

/// A forced run for each host (always granted), reported at once; counts
/// the runs per server.
async fn forced_round(bridge: &TestBridge, hosts: &[String], servers: &mut HashMap<String, u32>) {
    for host in hosts {
        let answer = poll(bridge, host, true).await;
        assert_eq!(value_of(&answer, "PVC_RUN"), "1", "{answer}");
        *servers
            .entry(value_of(&answer, "PVC_PUPPET_MASTER"))
            .or_default() += 1;
        let run_id = value_of(&answer, "PVC_RUN_ID");
        report(
            bridge,
            host,
            serde_json::json!({"run_id": run_id, "exit_code": 0}),
        )
        .await;
    }
}

/// Two capacity-pushed servers; when one stops pushing it gets no runs.
#[actix_web::test]
async fn a_server_that_goes_silent_gets_no_new_runs() {
    let db = migrated_db("runs_capacity").await;
    let toml = "
[scheduler]
fact_interval_secs = 0
forced_runs_burst = 1000
server_down_after_secs = 1
[[scheduler.servers]]
name = \"puppet1.example.com\"
jrubies = 24
pushed = true
[[scheduler.servers]]
name = \"puppet2.example.com\"
jrubies = 24
pushed = true
";
    let bridge = start(config_with(&db, toml, "capacity")).await;
    let push = |server: &'static str| {
        let http = bridge.http.clone();
        let url = format!("{}/ppm", bridge.base);
        async move {
            let body = serde_json::json!({
                "fqdn": server, "global_process_count": 24, "global_get_wait_list_size": 0,
                "application_active_processes": 2, "application_enabled_process_count": 24,
                "application_get_wait_list_size": 0, "application_processed": 100,
                "application_real_memory": 1000, "application_vmsize": 2000,
                "system_load": 0.5, "cpus": 8
            });
            let status = http.post(url).json(&body).send().await.unwrap().status();
            assert!(status.is_success(), "{status}");
        }
    };
    let hosts = golden_hosts();
    // Both alive: runs go to both.
    let mut servers = HashMap::new();
    for round in 0..3 {
        push("puppet1.example.com").await;
        push("puppet2.example.com").await;
        forced_round(&bridge, &hosts[round * 10..round * 10 + 10], &mut servers).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(servers.len() == 2, "both servers used: {servers:?}");
    // puppet2 goes silent; after server_down_after no run goes to it.
    servers.clear();
    push("puppet1.example.com").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for round in 0..3 {
        push("puppet1.example.com").await;
        forced_round(&bridge, &hosts[round * 10..round * 10 + 10], &mut servers).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(servers.get("puppet2.example.com"), None, "{servers:?}");
    assert!(servers.get("puppet1.example.com").copied().unwrap_or(0) > 0);
    // A push for a server that is not configured is refused.
    let status = bridge
        .http
        .post(format!("{}/ppm", bridge.base))
        .json(&serde_json::json!({"fqdn": "rogue.example.com", "application_enabled_process_count": 4}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 400);
    bridge.stop().await;
}

/// Two bridge processes on one database, every host polling both as fast
/// as it can: together they never lease more full runs than the server's
/// budget (its burst plus its rate over the time).
#[actix_web::test]
async fn two_bridges_never_over_admit() {
    let db = migrated_db("runs_two").await;
    // 1 JRuby at 50%, 1 JRuby-second per run: 0.5 runs/s, a burst of 1;
    // cycles as short as allowed so every host is due all the time.
    let toml = "
[scheduler]
fact_interval_secs = 0
target_period_secs = 1
min_interval_secs = 1
max_interval_secs = 2
target_utilization = 0.5
run_cost_secs = 1
burst_secs = 2
[[scheduler.servers]]
name = \"puppet1.example.com\"
jrubies = 1
";
    let a = start(config_with(&db, toml, "two-a")).await;
    let b = start(config_with(&db, toml, "two-b")).await;
    let hosts = golden_hosts();
    // Poll for at least 8 s and until the shared budget has refused once
    // (on a loaded machine the two local budgets may take longer to
    // overlap), at most 60 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let bridge_base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let other_base = if i % 2 == 0 {
            b.base.clone()
        } else {
            a.base.clone()
        };
        let host = host.clone();
        let http = a.http.clone();
        let stop = std::sync::Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut granted = 0u32;
            let mut turn = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let base = if turn % 2 == 0 {
                    &bridge_base
                } else {
                    &other_base
                };
                turn += 1;
                let body = http
                    .get(format!("{base}/host?fqdn={host}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if body.contains("PVC_RUN='1'") {
                    granted += 1;
                    let run_id = body
                        .lines()
                        .find_map(|l| l.strip_prefix("PVC_RUN_ID='"))
                        .map(|v| v.trim_end_matches('\'').to_owned())
                        .unwrap();
                    http.post(format!("{base}/report/{host}"))
                        .json(&serde_json::json!({"run_id": run_id, "exit_code": 0}))
                        .send()
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            granted
        }));
    }
    let shared_refusals = || {
        a.bridge
            .runs
            .stats
            .refused_no_budget
            .load(std::sync::atomic::Ordering::Relaxed)
            + b.bridge
                .runs
                .stats
                .refused_no_budget
                .load(std::sync::atomic::Ordering::Relaxed)
    };
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8)
        || (shared_refusals() == 0 && started.elapsed() < Duration::from_secs(60))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for task in tasks {
        answered += task.await.unwrap();
    }
    let primary = cluster::connect(&db.primary_url).await.unwrap();
    let row = primary
        .query_one(
            "SELECT count(*), extract(epoch FROM max(granted) - min(granted))::float8 \
             FROM pvc.leases WHERE mode = 'full'",
            &[],
        )
        .await
        .unwrap();
    let (leases, span): (i64, Option<f64>) = (row.get(0), row.get(1));
    let span = span.unwrap_or(0.0);
    assert_eq!(leases, i64::from(answered), "every PVC_RUN=1 is a lease");
    assert!(leases >= 2, "the test exercised grants: {leases}");
    let budget = 1.0 + 0.5 * span;
    assert!(
        leases as f64 <= budget + 1e-9,
        "{leases} leases in {span:.1} s exceed the budget {budget:.1}"
    );
    // Both processes granted (each alone would admit as much).
    let per_process = a
        .bridge
        .runs
        .stats
        .granted_schedule
        .load(std::sync::atomic::Ordering::Relaxed)
        + b.bridge
            .runs
            .stats
            .granted_schedule
            .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(per_process, leases as u64);
    assert!(
        shared_refusals() > 0,
        "the shared budget refused no grant in 60 s"
    );
    a.stop().await;
    b.stop().await;
}

/// A converge request: every named host runs within the deadline, paced
/// (not all at once), and its progress counts the reports.
#[actix_web::test]
async fn a_converge_request_runs_every_host_within_its_deadline() {
    let (_db, bridge) = start_static("runs_converge", "").await;
    let hosts: Vec<String> = golden_hosts().into_iter().take(12).collect();
    let response = bridge
        .http
        .post(format!("{}/admin/converge", bridge.base))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .json(&serde_json::json!({"certnames": hosts.iter().chain(["nosuch.example.com".to_owned()].iter()).collect::<Vec<_>>(), "within_secs": 6}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["hosts"], 12);
    assert_eq!(created["unknown_hosts"][0], "nosuch.example.com");
    let id = created["id"].as_i64().unwrap();
    let started = tokio::time::Instant::now();
    let mut first_grant = None;
    let mut last_grant = None;
    let mut pending: Vec<String> = hosts.clone();
    while !pending.is_empty() && started.elapsed() < Duration::from_secs(10) {
        let mut still = Vec::new();
        for host in pending {
            let answer = poll(&bridge, &host, false).await;
            if value_of(&answer, "PVC_RUN") == "1" {
                // A host whose own scheduled slot comes first runs for that
                // reason; the run counts for the converge all the same.
                let reason = value_of(&answer, "PVC_REASON");
                assert!(
                    reason.starts_with("converge") || reason == "due",
                    "{answer}"
                );
                first_grant.get_or_insert(started.elapsed());
                last_grant = Some(started.elapsed());
                let run_id = value_of(&answer, "PVC_RUN_ID");
                report(
                    &bridge,
                    &host,
                    serde_json::json!({"run_id": run_id, "exit_code": 0}),
                )
                .await;
            } else {
                still.push(host);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        pending.is_empty(),
        "not run within the deadline: {pending:?}"
    );
    let (first, last) = (first_grant.unwrap(), last_grant.unwrap());
    assert!(
        last - first > Duration::from_secs(2),
        "paced over the window: {first:?}..{last:?}"
    );
    let progress: serde_json::Value = bridge
        .http
        .get(format!("{}/admin/converge/{id}", bridge.base))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress["finished"], 12, "{progress}");
    assert_eq!(progress["done"], true);
    let (status, _, _) = bridge.admin_get("/admin/converge/999999").await;
    assert_eq!(status, 404);
    let bad = bridge
        .http
        .post(format!("{}/admin/converge", bridge.base))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .json(&serde_json::json!({"within_secs": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    bridge.stop().await;
}

#[actix_web::test]
async fn explain_tells_why() {
    let (_db, bridge) = start_static("runs_explain", "").await;
    let host = golden_hosts()[5].clone();
    let (status, _, body) = bridge.admin_get(&format!("/admin/explain/{host}")).await;
    assert_eq!(status, 200, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["host"]["certname"], host.as_str());
    assert_eq!(e["host"]["runs_in_pool"], "default");
    assert_eq!(e["schedule"]["servers"][0]["name"], "puppet1.example.com");
    assert!(e["schedule"]["next_due_in_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(e["schedule"]["decision_now"]["reason"]["kind"], "not_due");
    let (status, _, _) = bridge.admin_get("/admin/explain/nosuch.example.com").await;
    assert_eq!(status, 404);
    bridge.stop().await;
}

/// A flag set in Foreman reaches the answer at the next directory refresh
/// (the tables' fingerprint changed); nothing changes when nothing did.
#[actix_web::test]
async fn a_flag_set_in_foreman_reaches_the_answer_at_the_next_refresh() {
    let (db, bridge) = start_static("runs_refresh", "hosts_refresh_secs = 1").await;
    let host = golden_hosts()[7].clone();
    let before = poll(&bridge, &host, false).await;
    assert!(!before.contains("FACTER_UPDATE_FLAG"), "{before}");
    let loads = || {
        bridge
            .bridge
            .runs
            .stats
            .directory_loads
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // The explicit load of `start` and the loop's first check may both
    // build at start; count from after that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_from = loads();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(loads(), idle_from, "rebuilt though nothing changed");
    write_and_replicate(
        &db,
        &format!(
            "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at) \
             SELECT 'HostParameter', id, 'update_flag', 'boolean', 'true', now(), now() \
             FROM hosts WHERE name = {};",
            sql_literal(&host)
        ),
    )
    .await;
    let mut seen = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = poll(&bridge, &host, false).await;
        if answer.contains("FACTER_UPDATE_FLAG='true'") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the new flag never reached the answer");
    assert!(loads() > idle_from);
    bridge.stop().await;
}
