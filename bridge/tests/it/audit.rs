//! The git audit trail against the real primary and a real bare repository:
//! events produced by the real upload functions, committed by the leader
//! with `git fast-import`, read back with the `git` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pvc_bridge::audit::{print_history, AuditWriter, History};
use pvc_bridge::leader::{Leadership, Role};
use pvc_bridge::schedule::Ts;
use pvc_bridge::store::pvc::{store_config_report, store_facts, FactsOutcome, NewFacts};
use pvc_bridge::store::{Db, PoolOptions};
use pvc_bridge::writes::{canonical_json, parse_facts_body, prepare_facts, WriteSettings};
use pvc_testkit::cluster::TestDb;
use serde_json::{json, Value};

use crate::support::{config_for, migrated_db, TestBridge};

/// 2026-11-18 11:06:40 UTC, in milliseconds: whole seconds, so commit times
/// (seconds) equal upload times exactly.
const T0: i64 = 1_795_000_000_000;

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(hint: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("pvc-audit-{hint}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    /// The repository's path (not created: the writer creates it).
    fn repo(&self) -> PathBuf {
        self.0.join("audit.git")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `git --git-dir <repo> <args>`, its stdout; fails the test on error.
fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn branch(certname: &str) -> String {
    format!("refs/heads/hosts/{certname}")
}

/// Commits of a host's branch, newest first: (commit time, parents,
/// subject, commit id).
fn log(repo: &Path, certname: &str) -> Vec<(i64, String, String, String)> {
    git(repo, &["log", "--format=%at|%P|%s|%H", &branch(certname)])
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.splitn(4, '|').collect();
            (
                parts[0].parse().expect("time"),
                parts[1].to_owned(),
                parts[2].to_owned(),
                parts[3].to_owned(),
            )
        })
        .collect()
}

/// The lines a diff adds or removes (headers left out).
fn changed_lines(diff: &str) -> Vec<String> {
    diff.lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(str::to_owned)
        .collect()
}

/// Every host branch and its commit id.
fn refs(repo: &Path) -> Vec<String> {
    git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname) %(tree)",
            "refs/heads/hosts/",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Pools on the test database's primary.
fn pools(db: &TestDb) -> Arc<Db> {
    Arc::new(
        Db::new(
            &db.primary_url,
            &[],
            &PoolOptions {
                max_size: 2,
                connect_timeout: Duration::from_secs(5),
            },
        )
        .expect("pools"),
    )
}

/// This process leading the audit trail on `db`: the election (kept alive
/// while the value lives) and its session's pid.
async fn lead(db: &TestDb) -> (Leadership, i32) {
    let mut leadership =
        Leadership::spawn(&db.primary_url, Role::Audit, Duration::from_secs(5)).expect("election");
    let pid = leadership.until_leader().await;
    (leadership, pid)
}

/// Rounds until the queue is empty; how many rounds committed something.
async fn drain(writer: &AuditWriter, pid: i32) -> usize {
    let mut rounds = 0;
    while writer.run_once(pid).await.expect("audit round") > 0 {
        rounds += 1;
        assert!(rounds < 1000, "the queue never empties");
    }
    rounds
}

fn facts(uptime: u64, kernelrelease: &str) -> Value {
    json!({
        "fqdn": "ignored.example.com",
        "kernel": "Linux",
        "kernelrelease": kernelrelease,
        "uptime_seconds": uptime,
        "system_uptime": {"seconds": uptime, "uptime": format!("{uptime} s")},
        "memoryfree_mb": uptime % 997,
        "memory": {"system": {"available_bytes": uptime * 7, "total_bytes": 8_000_000}},
        "networking": {"ip": "10.0.0.5", "interfaces": {"eth0": {"mtu": 1500, "ip": "10.0.0.5"}}},
        "mountpoints": {"/": {"options": ["rw", "relatime"]}}
    })
}

/// Stores `facts` for `certname` received at `at_ms`, as the upload
/// endpoints do (default volatile facts removed).
async fn upload_facts(db: &Db, certname: &str, facts: &Value, at_ms: i64) -> FactsOutcome {
    let upload = parse_facts_body(certname, facts.to_string().as_bytes()).expect("facts");
    let prepared = prepare_facts(&upload, &WriteSettings::default());
    let client = db.write().await.expect("primary");
    store_facts(
        &client,
        &NewFacts {
            certname,
            name: &prepared.name,
            facts_json: &prepared.facts_json,
            stable_json: &prepared.stable_json,
            enc_json: &prepared.enc_json,
            source: "facts",
            received: Some(Ts(at_ms)),
        },
    )
    .await
    .expect("store facts")
    .outcome
}

fn report(certname: &str, reported_at: &str, applied: u64, motd: &str) -> Value {
    json!({
        "host": certname,
        "reported_at": reported_at,
        "status": {"applied": applied, "restarted": 0, "failed": 0, "failed_restarts": 0,
                   "skipped": 0, "pending": 0},
        "metrics": {"time": {"total": 4.2}},
        "logs": if applied > 0 { json!([
            {"log": {"level": "notice",
                     "sources": {"source": "/Stage[main]/Motd/File[/etc/motd]/content"},
                     "messages": {"message": format!("content changed '{{md5}}old' to '{{md5}}{motd}'")}}},
            {"log": {"level": "notice", "sources": {"source": "Puppet"},
                     "messages": {"message": "Applied catalog in 1.02 seconds"}}}
        ]) } else { json!([
            {"log": {"level": "notice", "sources": {"source": "Puppet"},
                     "messages": {"message": "Applied catalog in 0.98 seconds"}}}
        ]) }
    })
}

/// Stores a Foreman config report as `/api/config_reports` does.
async fn upload_report(db: &Db, certname: &str, report: &Value, at_ms: i64) {
    let client = db.write().await.expect("primary");
    let stored = store_config_report(&client, certname, &canonical_json(report), Some(Ts(at_ms)))
        .await
        .expect("store report");
    assert!(!stored.replay);
}

async fn queued(db: &Db) -> i64 {
    let client = db.write().await.expect("primary");
    client
        .query_one("SELECT count(*) FROM pvc.audit_queue", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_per_real_change_and_none_for_volatile_noise() {
    let db = migrated_db("audit_changes").await;
    let pools = pools(&db);
    let dir = TempDir::new("changes");
    let host = "web01.example.com";

    let t = |minutes: i64| T0 + minutes * 60_000;
    assert_eq!(
        upload_facts(&pools, host, &facts(100, "6.1.0-1"), t(0)).await,
        FactsOutcome::New
    );
    // Uptime and free memory only: stored, no event.
    assert_eq!(
        upload_facts(&pools, host, &facts(160, "6.1.0-1"), t(1)).await,
        FactsOutcome::Unchanged
    );
    assert_eq!(
        upload_facts(&pools, host, &facts(220, "6.1.0-2"), t(2)).await,
        FactsOutcome::Changed
    );
    assert_eq!(
        upload_facts(&pools, host, &facts(280, "6.1.0-2"), t(3)).await,
        FactsOutcome::Unchanged
    );
    assert_eq!(queued(&pools).await, 2);

    let (_leadership, pid) = lead(&db).await;
    let writer = AuditWriter::new(dir.repo(), Arc::clone(&pools), 1000);
    assert_eq!(writer.run_once(pid).await.expect("round"), 2);
    assert_eq!(writer.run_once(pid).await.expect("idle round"), 0);
    assert_eq!(queued(&pools).await, 0);

    let commits = log(&dir.repo(), host);
    assert_eq!(commits.len(), 2, "{commits:?}");
    let (newest, first) = (&commits[0], &commits[1]);
    // Commit times are the upload times, not the wall clock.
    assert_eq!(first.0, t(0) / 1000);
    assert_eq!(newest.0, t(2) / 1000);
    // The branch starts parentless; the next commit continues it.
    assert_eq!(first.1, "");
    assert_eq!(newest.1, first.3);
    assert_eq!(newest.2, "facts: 1 changed, 0 added, 0 removed");
    assert!(first.2.starts_with("facts: 0 changed, "), "{}", first.2);

    let diff = git(
        &dir.repo(),
        &["diff", &first.3, &newest.3, "--", "facts.yaml"],
    );
    assert_eq!(
        changed_lines(&diff),
        vec!["-kernelrelease: \"6.1.0-1\"", "+kernelrelease: \"6.1.0-2\""]
    );
    // Volatile facts are not in the tree at all; the rest is flattened.
    let text = git(
        &dir.repo(),
        &["show", &format!("{}:facts.yaml", branch(host))],
    );
    assert!(!text.contains("uptime"), "{text}");
    assert!(
        text.contains("networking.interfaces.eth0.mtu: 1500\n"),
        "{text}"
    );
    assert!(
        text.contains("mountpoints./.options: [\"rw\",\"relatime\"]\n"),
        "{text}"
    );

    let metrics = writer.metrics().snapshot();
    assert_eq!(metrics.commits, 2);
    assert_eq!(metrics.events_committed, 2);
    assert_eq!(metrics.queue_depth, 0);
    assert_eq!(
        metrics.rebuilds, 1,
        "a new repository is built from the database once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_changed_resources_is_a_commit_and_one_that_did_not_is_none() {
    let db = migrated_db("audit_runs").await;
    let pools = pools(&db);
    let dir = TempDir::new("runs");
    let host = "db01.example.com";

    upload_facts(&pools, host, &facts(100, "6.1.0-1"), T0).await;
    let changed = report(host, "2026-11-27 06:00:00 UTC", 2, "new");
    upload_report(&pools, host, &changed, T0 + 3_600_000).await;
    let nothing = report(host, "2026-11-27 06:30:00 UTC", 0, "");
    upload_report(&pools, host, &nothing, T0 + 5_400_000).await;
    assert_eq!(
        queued(&pools).await,
        2,
        "a run that applied nothing is no event"
    );

    let (_leadership, pid) = lead(&db).await;
    let writer = AuditWriter::new(dir.repo(), Arc::clone(&pools), 1000);
    drain(&writer, pid).await;

    let commits = log(&dir.repo(), host);
    assert_eq!(commits.len(), 2, "{commits:?}");
    let run = &commits[0];
    assert_eq!(run.2, "run: applied 2, restarted 0, failed 0");
    // 2026-11-27 06:00:00 UTC, the report's own time.
    assert_eq!(run.0, 1_795_759_200);
    let message = git(&dir.repo(), &["log", "-1", "--format=%B", &branch(host)]);
    assert!(
        message.contains(
            "/Stage[main]/Motd/File[/etc/motd]/content: content changed '{md5}old' to '{md5}new'"
        ),
        "{message}"
    );
    let last_run = git(
        &dir.repo(),
        &["show", &format!("{}:last_run.yaml", branch(host))],
    );
    assert!(
        last_run.starts_with("reported_at: \"2026-11-27 06:00:00 UTC\"\n"),
        "{last_run}"
    );
    assert!(last_run.contains("status.applied: 2\n"), "{last_run}");
    assert!(
        last_run.contains("  - \"/Stage[main]/Motd/File[/etc/motd]/content\": "),
        "{last_run}"
    );
    assert!(!last_run.contains("Applied catalog"), "{last_run}");
    // The run commit kept the facts of the commit before it.
    let facts_then = git(
        &dir.repo(),
        &["rev-parse", &format!("{}:facts.yaml", commits[1].3)],
    );
    let facts_now = git(
        &dir.repo(),
        &["rev-parse", &format!("{}:facts.yaml", run.3)],
    );
    assert_eq!(facts_then, facts_now);
    // The facts commit has no last run yet.
    let tree = git(&dir.repo(), &["ls-tree", "--name-only", &commits[1].3]);
    assert_eq!(tree, "facts.yaml\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_repository_is_rebuilt_from_the_database_with_the_same_commits() {
    let db = migrated_db("audit_rebuild").await;
    let pools = pools(&db);
    let dir = TempDir::new("rebuild");
    let hosts = ["a.example.com", "b.example.com", "c.example.com"];
    for (i, host) in hosts.iter().enumerate() {
        let i = i as i64;
        upload_facts(&pools, host, &facts(1, "6.1.0-1"), T0 + i * 1000).await;
        upload_facts(&pools, host, &facts(2, "6.1.0-2"), T0 + 60_000 + i * 1000).await;
        let run = report(host, &format!("2026-11-27 06:0{i}:00 UTC"), 1, "x");
        upload_report(&pools, host, &run, T0 + 120_000).await;
        upload_facts(&pools, host, &facts(3, "6.1.0-3"), T0 + 180_000 + i * 1000).await;
    }
    let (_leadership, pid) = lead(&db).await;
    // Rounds of 2: branches continue across rounds (from their tip).
    let writer = AuditWriter::new(dir.repo(), Arc::clone(&pools), 2);
    assert!(drain(&writer, pid).await >= 6);
    let before = refs(&dir.repo());
    assert_eq!(before.len(), 3, "{before:?}");
    for host in hosts {
        assert_eq!(log(&dir.repo(), host).len(), 4, "{host}");
    }

    // The volume is lost: the next round rebuilds everything.
    std::fs::remove_dir_all(dir.repo()).expect("remove the repository");
    drain(&writer, pid).await;
    assert_eq!(
        refs(&dir.repo()),
        before,
        "same branches, commits and trees"
    );
    assert_eq!(writer.metrics().snapshot().rebuilds, 2);

    // Another process with a volume of its own takes over: it rebuilds too,
    // and the process that had led rebuilds again when it leads again.
    let other_dir = TempDir::new("rebuild-other");
    let other = AuditWriter::new(other_dir.repo(), Arc::clone(&pools), 1000);
    drain(&other, pid).await;
    assert_eq!(refs(&other_dir.repo()), before);
    upload_facts(&pools, hosts[0], &facts(4, "6.1.0-4"), T0 + 600_000).await;
    drain(&writer, pid).await;
    assert_eq!(writer.metrics().snapshot().rebuilds, 3);
    assert_eq!(log(&dir.repo(), hosts[0]).len(), 5);
    assert_eq!(log(&dir.repo(), hosts[1]).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redone_round_commits_nothing_twice_and_only_the_leader_writes() {
    let db = migrated_db("audit_redo").await;
    let pools = pools(&db);
    let dir = TempDir::new("redo");
    let host = "app01.example.com";
    upload_facts(&pools, host, &facts(1, "6.1.0-1"), T0).await;
    upload_facts(&pools, host, &facts(2, "6.1.0-2"), T0 + 60_000).await;

    let writer = AuditWriter::new(dir.repo(), Arc::clone(&pools), 1000);
    // A process that does not lead writes nothing, not even the repository.
    let error = writer.run_once(0).await.expect_err("not the leader");
    assert!(
        format!("{error:#}").contains("no longer leads"),
        "{error:#}"
    );
    assert!(!dir.repo().exists());
    assert_eq!(queued(&pools).await, 2);

    let (_leadership, pid) = lead(&db).await;
    drain(&writer, pid).await;
    let before = refs(&dir.repo());
    assert_eq!(log(&dir.repo(), host).len(), 2);

    // A round that wrote to git but could not drop its events (the
    // primary lost in between) is redone: nothing is committed twice.
    let client = pools.write().await.expect("primary");
    client
        .execute(
            "INSERT INTO pvc.audit_queue SELECT id FROM pvc.audit_events",
            &[],
        )
        .await
        .expect("queue again");
    drop(client);
    assert_eq!(writer.run_once(pid).await.expect("redo"), 2);
    assert_eq!(refs(&dir.repo()), before);
    assert_eq!(queued(&pools).await, 0);
    let metrics = writer.metrics().snapshot();
    assert_eq!(metrics.commits, 2);
    assert_eq!(metrics.events_committed, 4);
    assert_eq!(metrics.events_unchanged, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_command_prints_a_hosts_history_newest_first() {
    let db = migrated_db("audit_history").await;
    let pools = pools(&db);
    let dir = TempDir::new("history");
    let host = "web02.example.com";
    upload_facts(&pools, host, &facts(1, "6.1.0-1"), T0).await;
    let run = report(host, "2026-11-27 06:00:00 UTC", 1, "abc");
    upload_report(&pools, host, &run, T0 + 60_000).await;
    let mut changed = facts(2, "6.1.0-2");
    changed["networking"]["interfaces"]["eth1"] = json!({"mtu": 9000});
    upload_facts(&pools, host, &changed, T0 + 120_000).await;

    let (_leadership, pid) = lead(&db).await;
    let writer = AuditWriter::new(dir.repo(), Arc::clone(&pools), 1000);
    drain(&writer, pid).await;

    let certname = host.parse().expect("certname");
    let mut out = Vec::new();
    let found = print_history(&dir.repo(), &certname, None, &mut out).expect("history");
    assert_eq!(found, History::Printed);
    let text = String::from_utf8(out).expect("utf-8");
    let subjects = [
        "facts: 1 changed, 1 added, 0 removed",
        "run: applied 1, restarted 0, failed 0",
        "facts: 0 changed, ",
    ];
    let positions: Vec<usize> = subjects
        .iter()
        .map(|s| {
            text.find(s)
                .unwrap_or_else(|| panic!("{s:?} missing from:\n{text}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "newest first:\n{text}"
    );
    assert!(
        text.contains("2026-11-18 11:08:40 +0000  facts: 1 changed"),
        "{text}"
    );
    assert!(
        text.contains("+networking.interfaces.eth1.mtu: 9000\n"),
        "{text}"
    );
    assert!(text.contains("-kernelrelease: \"6.1.0-1\"\n"), "{text}");

    // --since: only what changed since then.
    let mut out = Vec::new();
    print_history(
        &dir.repo(),
        &certname,
        Some("2026-11-18 11:07:00 +0000"),
        &mut out,
    )
    .expect("history since");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("facts: 1 changed, 1 added"), "{text}");
    assert!(!text.contains("facts: 0 changed"), "{text}");

    let mut out = Vec::new();
    let found =
        print_history(&dir.repo(), &certname, Some("2099-01-01"), &mut out).expect("history since");
    assert_eq!(found, History::NothingSince);

    let stranger = "nobody.example.com".parse().expect("certname");
    let mut out = Vec::new();
    assert_eq!(
        print_history(&dir.repo(), &stranger, None, &mut out).expect("no branch"),
        History::NoBranch
    );
    assert!(out.is_empty());
    let missing = dir.0.join("missing.git");
    let error = print_history(&missing, &certname, None, &mut Vec::new()).expect_err("no repo");
    assert!(
        format!("{error}").contains("no audit repository"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_the_bridge_make_commits_only_for_real_changes() {
    let db = migrated_db("audit_http").await;
    let dir = TempDir::new("http");
    let repo = dir.repo();
    let repo_text = repo.to_str().expect("utf-8 path");
    let config = config_for(&db, &[("PVC_AUDIT__REPO", repo_text)]);
    let bridge = TestBridge::start(config.clone()).await;
    let host = "http01.example.com";
    for (uptime, release) in [(10, "1"), (20, "1"), (30, "2"), (40, "2"), (50, "2")] {
        let (status, _, body) = bridge
            .post(
                &format!("/facts/{host}"),
                "application/json",
                facts(uptime, release).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_leadership, pid) = lead(&db).await;
    let writer = AuditWriter::new(
        config.audit.repo.clone().expect("audit.repo"),
        Arc::clone(&bridge.bridge.db),
        config.audit.batch,
    );
    drain(&writer, pid).await;
    let commits = log(&repo, host);
    assert_eq!(commits.len(), 2, "{commits:?}");
    // Commit times are when the primary stored the change.
    let client = db.connect_primary().await.expect("primary");
    let times: Vec<i64> = client
        .query(
            "SELECT pvc.to_ms(at) FROM pvc.audit_events WHERE certname = $1 ORDER BY id DESC",
            &[&host],
        )
        .await
        .expect("events")
        .iter()
        .map(|row| row.get::<_, i64>(0).div_euclid(1000))
        .collect();
    assert_eq!(commits.iter().map(|c| c.0).collect::<Vec<_>>(), times);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_rounds_keep_the_pack_count_down_and_the_repository_sound() {
    let db = migrated_db("audit_packs").await;
    let pools = pools(&db);
    let dir = TempDir::new("packs");
    let host = "busy.example.com";
    let changes = 24;
    for i in 0..changes {
        let release = format!("6.1.0-{i}");
        upload_facts(&pools, host, &facts(i, &release), T0 + i as i64 * 60_000).await;
    }
    let (_leadership, pid) = lead(&db).await;
    // One event per round: one pack per round until they are merged.
    let writer = AuditWriter::new(dir.repo(), Arc::clone(&pools), 1);
    assert_eq!(drain(&writer, pid).await, changes as usize);
    assert_eq!(log(&dir.repo(), host).len(), changes as usize);
    let packs = std::fs::read_dir(dir.repo().join("objects/pack"))
        .expect("packs")
        .filter(|e| {
            let name = e.as_ref().expect("entry").file_name();
            name.to_string_lossy().ends_with(".pack")
        })
        .count();
    assert!(
        (1..=16).contains(&packs),
        "{packs} packs after {changes} rounds"
    );
    // Nothing loose, nothing broken.
    let loose = git(&dir.repo(), &["count-objects"]);
    assert!(loose.starts_with("0 objects"), "{loose}");
    git(&dir.repo(), &["fsck", "--strict", "--no-dangling"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_writer_leads_and_commits_in_the_background() {
    let db = migrated_db("audit_start").await;
    let dir = TempDir::new("start");
    let repo = dir.repo();
    let config = config_for(
        &db,
        &[
            ("PVC_AUDIT__REPO", repo.to_str().expect("utf-8 path")),
            ("PVC_AUDIT__EVERY_SECS", "0.1"),
        ],
    );
    let pools = pools(&db);
    let host = "bg01.example.com";
    upload_facts(&pools, host, &facts(1, "6.1.0-1"), T0).await;
    upload_facts(&pools, host, &facts(2, "6.1.0-2"), T0 + 60_000).await;

    pvc_bridge::audit::start(&config, Arc::clone(&pools)).expect("start");
    let metrics = pvc_bridge::audit::metrics().expect("a writer was started");
    // Bounded wait for the background rounds (the election polls every 2 s).
    let mut waited = 0;
    while queued(&pools).await > 0 {
        assert!(waited < 300, "the queue was not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(log(&repo, host).len(), 2);
    assert!(metrics.snapshot().commits >= 2);

    // Without audit.repo, start does nothing and succeeds.
    let config = config_for(&db, &[]);
    assert!(config.audit.repo.is_none());
    pvc_bridge::audit::start(&config, Arc::clone(&pools)).expect("no-op");
}
