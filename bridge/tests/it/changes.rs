//! The change feed end to end: random changes written on the primary (as
//! Foreman writes them) reach a bridge's ENC through `pvc.changes`, with
//! caches that never expire on their own in these tests, so only the feed
//! can make an answer change. Measures the delay from a change being
//! visible on the (fastest) replica to the ENC answering it, and checks the
//! old answer never comes back.

use std::time::{Duration, Instant};

use pvc_bridge::config::Config;
use pvc_testkit::cluster::{self, TestDb};

use crate::support::{config_for, migrated_db, TestBridge};

/// The host whose ENC the changes are made to (hostgroup base/linux/debian,
/// chain 1/2/3) and one outside that chain.
const HOST: &str = "app03.lab.globex.test";
const OTHER: &str = "mon45.lab.globex.test";
/// Its smart class parameter `apache::port` (lookup key 6).
const PORT_KEY: i32 = 6;

fn feed_config(db: &TestDb, replicas: &[String]) -> Config {
    let replicas = replicas.join(",");
    config_for(
        db,
        &[
            ("PVC_DATABASE__REPLICAS", replicas.as_str()),
            ("PVC_DATABASE__HEALTH_CHECK_MS", "100"),
            // Nothing expires by itself: only the feed changes answers.
            ("PVC_CACHE__TTL_SECS", "86400"),
            ("PVC_CACHE__LAYER_TTL_SECS", "86400"),
            ("PVC_CACHE__NOT_FOUND_TTL_SECS", "86400"),
            ("PVC_CHANGES__POLL_MS", "100"),
        ],
    )
}

/// Starts a bridge with its replica monitor and change feed running.
async fn start(config: Config) -> TestBridge {
    let bridge = TestBridge::start(config.clone()).await;
    bridge
        .bridge
        .db
        .start_monitor(config.replica_health.clone());
    bridge.bridge.feed.spawn();
    bridge
}

/// What the ENC of `HOST` must show after each change.
#[derive(Debug, Clone, Default)]
struct Expected {
    comment: String,
    host_param: String,
    group_param: String,
    global_param: String,
    port: i64,
    /// Setting `enc_environment`: the `environment` key is in the ENC.
    environment: bool,
}

impl Expected {
    /// Every difference between `body` and what is expected.
    fn mismatches(&self, body: &str) -> Vec<String> {
        let mut wrong = Vec::new();
        let lines = [
            format!("  comment: {}\n", self.comment),
            format!("  pvc_fresh_host: {}\n", self.host_param),
            format!("  pvc_fresh_group: {}\n", self.group_param),
            format!("  pvc_fresh_global: {}\n", self.global_param),
            format!("    port: {}\n", self.port),
        ];
        for line in lines {
            if !body.contains(&line) {
                wrong.push(line.trim().to_owned());
            }
        }
        if body.contains("\nenvironment: ") != self.environment {
            wrong.push(format!("environment shown: {}", self.environment));
        }
        wrong
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Host,
    HostParam,
    GroupParam,
    GlobalParam,
    SmartClassValue,
    Setting,
}

const KINDS: [Kind; 6] = [
    Kind::Host,
    Kind::HostParam,
    Kind::GroupParam,
    Kind::GlobalParam,
    Kind::SmartClassValue,
    Kind::Setting,
];

/// Writes change `n` of `kind` on the primary; returns a query (and its
/// text argument) that finds the change on a replica.
async fn write(
    primary: &tokio_postgres::Client,
    kind: Kind,
    n: usize,
    expected: &mut Expected,
) -> (String, String) {
    let token = format!("fresh{n:04}");
    match kind {
        Kind::Host => {
            expected.comment = token.clone();
            primary
                .execute(
                    "UPDATE hosts SET comment = $1, updated_at = now() WHERE name = $2",
                    &[&token, &HOST],
                )
                .await
                .expect("host update");
            ("SELECT 1 FROM hosts WHERE comment = $1".into(), token)
        }
        Kind::HostParam | Kind::GroupParam | Kind::GlobalParam => {
            let name = match kind {
                Kind::HostParam => {
                    expected.host_param = token.clone();
                    "pvc_fresh_host"
                }
                Kind::GroupParam => {
                    expected.group_param = token.clone();
                    "pvc_fresh_group"
                }
                _ => {
                    expected.global_param = token.clone();
                    "pvc_fresh_global"
                }
            };
            primary
                .execute(
                    "UPDATE parameters SET value = $1, updated_at = now() WHERE name = $2",
                    &[&token, &name],
                )
                .await
                .expect("parameter update");
            ("SELECT 1 FROM parameters WHERE value = $1".into(), token)
        }
        Kind::SmartClassValue => {
            expected.port = 10_000 + n as i64;
            let value = format!("--- {}\n", expected.port);
            primary
                .execute(
                    "UPDATE lookup_values SET value = $1, updated_at = now() \
                     WHERE lookup_key_id = $2 AND match = $3",
                    &[&value, &PORT_KEY, &format!("fqdn={HOST}")],
                )
                .await
                .expect("smart class value update");
            ("SELECT 1 FROM lookup_values WHERE value = $1".into(), value)
        }
        Kind::Setting => {
            expected.environment = !expected.environment;
            let value = format!("--- {}\n", expected.environment);
            primary
                .execute(
                    "UPDATE settings SET value = $1, updated_at = now() \
                     WHERE name = 'enc_environment'",
                    &[&value],
                )
                .await
                .expect("setting update");
            (
                "SELECT 1 FROM settings WHERE name = 'enc_environment' AND value = $1".into(),
                value,
            )
        }
    }
}

/// The rows the changes update, written before the bridge starts.
async fn prepare(primary: &tokio_postgres::Client) -> Expected {
    let host_id: i32 = primary
        .query_one("SELECT id FROM hosts WHERE name = $1", &[&HOST])
        .await
        .expect("host")
        .get(0);
    let hostgroup_root: i32 = primary
        .query_one("SELECT id FROM hostgroups WHERE title = 'base'", &[])
        .await
        .expect("hostgroup base")
        .get(0);
    for (kind, reference, name) in [
        ("HostParameter", Some(host_id), "pvc_fresh_host"),
        ("GroupParameter", Some(hostgroup_root), "pvc_fresh_group"),
        ("CommonParameter", None, "pvc_fresh_global"),
    ] {
        primary
            .execute(
                "INSERT INTO parameters (type, reference_id, name, value, key_type, \
                                         created_at, updated_at) \
                 VALUES ($1, $2, $3, 'start', 'string', now(), now())",
                &[&kind, &reference, &name],
            )
            .await
            .expect("parameter");
    }
    primary
        .execute(
            "INSERT INTO lookup_values (lookup_key_id, match, value, omit, created_at, updated_at) \
             VALUES ($1, $2, '--- 9999\n', false, now(), now())",
            &[&PORT_KEY, &format!("fqdn={HOST}")],
        )
        .await
        .expect("smart class value");
    primary
        .execute(
            "INSERT INTO settings (name, value, created_at, updated_at) \
             VALUES ('enc_environment', '--- true\n', now(), now())",
            &[],
        )
        .await
        .expect("setting");
    primary
        .execute(
            "UPDATE hosts SET comment = 'start' WHERE id = $1",
            &[&host_id],
        )
        .await
        .expect("comment");
    Expected {
        comment: "start".into(),
        host_param: "start".into(),
        group_param: "start".into(),
        global_param: "start".into(),
        port: 9999,
        environment: true,
    }
}

async fn enc(bridge: &TestBridge, host: &str) -> String {
    let (status, _, body) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert_eq!(status, 200, "ENC of {host}: {body}");
    body
}

async fn loads(bridge: &TestBridge) -> u64 {
    bridge
        .bridge
        .enc
        .stats
        .loads
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the feed and the cache counted over a run.
struct Outcome {
    /// Feed rows acted on.
    rows: u64,
    /// Flushes for a gap or reset.
    resets: u64,
    /// Loads refused for rows older than a change, and done again.
    superseded: u64,
}

/// Makes `changes` random changes and checks each one in the ENC. The
/// first URL of `replicas` is the replica "reaching the replica" is timed
/// on (the fastest one).
async fn random_changes(db: &TestDb, replicas: &[String], changes: usize, seed: u64) -> Outcome {
    let primary = cluster::connect(&db.primary_url).await.expect("primary");
    let mut expected = prepare(&primary).await;
    // Every replica has the setup (its last row) before the bridge starts
    // following the feed: those rows are from before the start, not changes
    // (a late one would flush everything in the middle of the checks).
    for url in replicas {
        let replica = cluster::connect(url).await.expect("replica");
        let deadline = Instant::now() + Duration::from_secs(30);
        while replica
            .query_opt("SELECT 1 FROM settings WHERE name = 'enc_environment'", &[])
            .await
            .expect("replica")
            .is_none()
        {
            assert!(Instant::now() < deadline, "the setup never reached {url}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let bridge = start(feed_config(db, replicas)).await;
    let replica = cluster::connect(&replicas[0]).await.expect("replica");

    // Wait until the start's rows have reached the bridge's replicas and
    // the ENC shows them (the feed is followed from its start).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = enc(&bridge, HOST).await;
        if expected.mismatches(&body).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "initial state: {:?}",
            expected.mismatches(&body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    enc(&bridge, OTHER).await;

    // A fixed seed: the same sequence of changes every run (xorshift64).
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut delays = Vec::with_capacity(changes);
    let mut by_kind: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for n in 0..changes {
        let kind = KINDS[(next() % KINDS.len() as u64) as usize];
        let other_loads = loads(&bridge).await;
        let (probe, arg) = write(&primary, kind, n, &mut expected).await;
        // On the replica.
        let deadline = Instant::now() + Duration::from_secs(30);
        let visible = loop {
            if replica
                .query_opt(probe.as_str(), &[&arg])
                .await
                .expect("replica probe")
                .is_some()
            {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "change {n} never reached the replica"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // In the ENC.
        let deadline = visible + Duration::from_secs(30);
        let answered = loop {
            let body = enc(&bridge, HOST).await;
            let wrong = expected.mismatches(&body);
            if wrong.is_empty() {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "change {n} ({kind:?}) not in the ENC after 30 s: {wrong:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let delay = answered.saturating_duration_since(visible);
        delays.push(delay);
        by_kind.entry(format!("{kind:?}")).or_default().push(delay);
        // Never the old answer again, whoever loads it from which replica:
        // the document is dropped and loaded again each time (a replica that
        // has not replayed the change may be picked, and must not be used).
        for _ in 0..3 {
            let (status, _, answer) = bridge
                .admin_post(&format!("/admin/cache/invalidate?certname={HOST}"))
                .await;
            assert_eq!(status, 204, "invalidate: {answer}");
            let body = enc(&bridge, HOST).await;
            assert_eq!(
                expected.mismatches(&body),
                Vec::<String>::new(),
                "change {n} ({kind:?}): an older answer came back"
            );
        }
        // Exactly the affected entries: a host outside the changed host's
        // hostgroup chain stays cached unless the change was global.
        let before = loads(&bridge).await;
        enc(&bridge, OTHER).await;
        let reloaded = loads(&bridge).await > before;
        let global = matches!(kind, Kind::GlobalParam | Kind::Setting);
        assert_eq!(
            reloaded, global,
            "change {n} ({kind:?}): {OTHER} reloaded = {reloaded} (loads before the change {other_loads})"
        );
    }
    delays.sort();
    let stats = &bridge.bridge.enc.stats;
    println!(
        "freshness over {} changes, {} replica(s): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; loads superseded {}",
        delays.len(),
        replicas.len(),
        percentile(&delays, 50.0).as_secs_f64() * 1000.0,
        percentile(&delays, 99.0).as_secs_f64() * 1000.0,
        delays.last().expect("changes").as_secs_f64() * 1000.0,
        stats.superseded_loads.load(std::sync::atomic::Ordering::Relaxed),
    );
    for (kind, mut list) in by_kind {
        list.sort();
        println!(
            "  {kind:>15}: {:>3} changes, p50 {:.0} ms, max {:.0} ms",
            list.len(),
            percentile(&list, 50.0).as_secs_f64() * 1000.0,
            list.last().expect("one").as_secs_f64() * 1000.0
        );
    }
    let relaxed = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    let feed = &bridge.bridge.feed.stats;
    let outcome = Outcome {
        rows: relaxed(&feed.rows),
        resets: relaxed(&feed.flushes_reset),
        superseded: relaxed(&stats.superseded_loads),
    };
    bridge.stop().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_reach_the_enc_through_the_feed() {
    let db = migrated_db("changes_fresh").await;
    let replicas = vec![db.replica_url.clone()];
    let outcome = random_changes(&db, &replicas, 100, 7).await;
    assert!(
        outcome.rows >= 100,
        "every change came through the feed: {} rows",
        outcome.rows
    );
    assert_eq!(outcome.resets, 0, "no gap or reset in a healthy feed");
}

/// Two replicas, the second applying every commit 300 ms late (in rotation:
/// its lag in bytes is small). The feed follows the fresher one; a document
/// dropped after a change must not be loaded again from the late one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_at_different_lag_the_late_one_never_serves_an_old_answer() {
    let cluster = tokio::task::spawn_blocking(|| cluster::Cluster::start_with_replicas(2))
        .await
        .expect("cluster task")
        .expect("a cluster with two replicas");
    let db = cluster.foreman_db("changes_two").await.expect("database");
    crate::support::migrate(&cluster, &db).await;
    cluster
        .set_apply_delay(1, Duration::from_millis(300))
        .await
        .expect("apply delay");
    // The fast one first: "reaching the replica" is timed on it.
    let replicas = db.replica_urls.clone();
    assert_eq!(replicas.len(), 2);
    let outcome = random_changes(&db, &replicas, 100, 11).await;
    // Reloads right after a change that picked the late replica were
    // refused and done again past the change.
    println!("loads done again past a change: {}", outcome.superseded);
    assert_eq!(outcome.resets, 0, "no gap or reset in a healthy feed");
    assert!(
        outcome.superseded > 0,
        "the late replica was never picked right after a change: the test did not test the gate"
    );
}

/// `/host` answers follow the feed too: a host's own parameter reloads that
/// host alone; a hostgroup parameter rebuilds the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_decisions_follow_the_feed() {
    let db = migrated_db("changes_host").await;
    let primary = cluster::connect(&db.primary_url).await.expect("primary");
    let host_id: i32 = primary
        .query_one("SELECT id FROM hosts WHERE name = $1", &[&HOST])
        .await
        .expect("host")
        .get(0);
    primary
        .batch_execute(&format!(
            "INSERT INTO parameters (type, reference_id, name, value, key_type, created_at, updated_at) \
             VALUES ('HostParameter', {host_id}, 'pvc_facter_rollout', 'one', 'string', now(), now()), \
                    ('GroupParameter', (SELECT id FROM hostgroups WHERE title = 'base'), \
                     'pvc_facter_wave', 'w1', 'string', now(), now())"
        ))
        .await
        .expect("parameters");
    // The setup is on the replica before the bridge starts following the
    // feed (its rows are then from before the start, not changes).
    cluster::shared()
        .wait_replica_caught_up()
        .await
        .expect("replica");
    let dir = std::env::temp_dir().join(format!("pvc-it-changes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bridge.toml");
    std::fs::write(
        &file,
        "[scheduler]\nfact_interval_secs = 0\n[[scheduler.servers]]\nname = \"puppet1.example.com\"\njrubies = 8\n",
    )
    .expect("config file");
    let env = [
        ("PVC_LISTEN", "127.0.0.1:0"),
        ("PVC_DATABASE__PRIMARY", db.primary_url.as_str()),
        ("PVC_DATABASE__REPLICAS", db.replica_url.as_str()),
        ("PVC_DATABASE__POOL_SIZE", "4"),
        ("PVC_DATABASE__HEALTH_CHECK_MS", "100"),
        ("PVC_CHANGES__POLL_MS", "100"),
        ("PVC_CHANGES__DIRECTORY_MIN_INTERVAL_MS", "100"),
        // Only the feed may change the directory in this test.
        ("PVC_SCHEDULER__HOSTS_REFRESH_SECS", "3600"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = pvc_bridge::config::load_from(Some(&file), env.to_vec()).expect("configuration");
    let bridge = start(config).await;
    // The directory first, then the loops: their first refresh finds it
    // unchanged (a rebuild that read after the change below would show the
    // new value without the targeted reload this test is about).
    bridge
        .bridge
        .runs
        .refresh_directory()
        .await
        .expect("host directory");
    bridge.bridge.runs.start().expect("run service");

    let answer = |bridge: &TestBridge| {
        let bridge = bridge.base.clone();
        async move {
            let body = reqwest::get(format!("{bridge}/host?fqdn={HOST}"))
                .await
                .expect("request")
                .text()
                .await
                .expect("body");
            body
        }
    };
    let wait_for = |wanted: &'static str| {
        let answer = &answer;
        let bridge = &bridge;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let body = answer(bridge).await;
                if body.contains(wanted) {
                    return;
                }
                assert!(Instant::now() < deadline, "{wanted} never in /host: {body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for("FACTER_ROLLOUT='one'").await;
    wait_for("FACTER_WAVE='w1'").await;
    let reloaded = || {
        bridge
            .bridge
            .runs
            .stats
            .hosts_reloaded
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = reloaded();

    primary
        .execute(
            "UPDATE parameters SET value = 'two' WHERE name = 'pvc_facter_rollout'",
            &[],
        )
        .await
        .expect("host parameter");
    wait_for("FACTER_ROLLOUT='two'").await;
    // The feed reads that host again on its own (a rebuild may have shown
    // the new value first on a loaded machine; the reload must come all the
    // same).
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloaded() <= before {
        assert!(
            Instant::now() < deadline,
            "the host was never read again on its own"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    primary
        .execute(
            "UPDATE parameters SET value = 'w2' WHERE name = 'pvc_facter_wave'",
            &[],
        )
        .await
        .expect("group parameter");
    wait_for("FACTER_WAVE='w2'").await;
    // The host's own change survived the rebuild.
    wait_for("FACTER_ROLLOUT='two'").await;
    bridge.stop().await;
}
