//! What the agent's integration tests share: a real bridge started in
//! process on the real primary + replica (as the bridge's own tests start
//! it), a node directory with stand-in `puppet` and `facter` scripts and the
//! agent's configuration, and the real `pvc-agent` binary run against them.

#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvc_bridge::config::{self, Config};
use pvc_bridge::Bridge;
use pvc_testkit::cluster::{self, TestDb};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The fixture's hosts (a fresh Foreman copy per test holds all of them).
pub fn golden_hosts() -> Vec<String> {
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/foreman/hosts.txt");
    std::fs::read_to_string(file)
        .expect("hosts.txt")
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// A fresh Foreman database with the pvc schema migrated, replayed by the
/// replica.
pub async fn migrated_db(hint: &str) -> TestDb {
    let db = cluster::shared()
        .foreman_db(hint)
        .await
        .expect("foreman test database");
    // The migration needs no pool: one connection to the primary.
    let client = pvc_testkit::cluster::connect(&db.primary_url)
        .await
        .expect("primary");
    pvc_bridge::store::pvc::migrate(&client)
        .await
        .expect("migrate");
    cluster::shared()
        .wait_replica_caught_up()
        .await
        .expect("replica");
    db
}

/// Runs `sql` on the primary (as Foreman would write) and waits until the
/// replica has replayed it.
pub async fn write_and_replicate(db: &TestDb, sql: &str) {
    let primary = cluster::connect(&db.primary_url).await.expect("primary");
    primary
        .batch_execute(sql)
        .await
        .expect("write on the primary");
    cluster::shared()
        .wait_replica_caught_up()
        .await
        .expect("replica caught up");
}

pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A Foreman host parameter on `host`.
/// Files with these names and contents in a fresh directory (`hint`,
/// removed when the returned guard drops), monitored for `host` through its
/// `pvc_files_monitored` parameter.
pub async fn monitored_files(
    db: &TestDb,
    host: &str,
    hint: &str,
    files: &[(&str, &str)],
) -> (Scratch, Vec<std::path::PathBuf>) {
    let dir = temp_dir(hint);
    let paths: Vec<std::path::PathBuf> = files
        .iter()
        .map(|(name, content)| {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("monitored file");
            path
        })
        .collect();
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    set_host_parameter(db, host, "pvc_files_monitored", "string", &list.join(" ")).await;
    (dir, paths)
}

pub async fn set_host_parameter(db: &TestDb, host: &str, name: &str, key_type: &str, value: &str) {
    write_and_replicate(
        db,
        &format!(
            "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at) \
             SELECT 'HostParameter', id, {}, {}, {}, now(), now() FROM hosts WHERE name = {};",
            sql_literal(name),
            sql_literal(key_type),
            sql_literal(value),
            sql_literal(host)
        ),
    )
    .await;
}

/// A scheduler that grants forced runs at once, polls every second and
/// schedules nothing on its own within a test (a day-long period), with
/// one static puppetserver; `extra` lines go into `[scheduler]`.
pub fn scheduler_toml(extra: &str) -> String {
    format!(
        "[scheduler]
fact_interval_secs = 0
check_interval_secs = 1
min_check_interval_secs = 1
target_period_secs = 86400
min_interval_secs = 86400
max_interval_secs = 86400
forced_runs_burst = 100
forced_runs_per_hour = 3600
lease_secs = 120
{extra}
[[scheduler.servers]]
name = \"puppet1.example.com\"
jrubies = 8
"
    )
}

/// Where the static server of [`scheduler_toml`] is.
pub const SERVER: &str = "puppet1.example.com";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh directory for one test; removed when dropped, unless the test
/// failed (then it is kept for a look).
pub fn temp_dir(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "pvc-agent-it-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    Scratch(dir)
}

pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The bridge's configuration: `toml` as its file, plus `PVC_*` variables.
pub fn bridge_config(db: &TestDb, toml: &str, extra_env: &[(&str, String)]) -> Config {
    let dir = temp_dir("bridge");
    let file = dir.join("bridge.toml");
    std::fs::write(&file, toml).expect("config file");
    let mut env = vec![
        ("PVC_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("PVC_DATABASE__PRIMARY".to_owned(), db.primary_url.clone()),
        ("PVC_DATABASE__REPLICAS".to_owned(), db.replica_url.clone()),
        ("PVC_DATABASE__POOL_SIZE".to_owned(), "4".to_owned()),
    ];
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    config::load_from(Some(&file), env).expect("bridge configuration")
}

/// The admin token of a bridge [`TestBridge::start`] starts without an
/// admin credential of its own.
pub const ADMIN_TOKEN: &str = "test-admin-token-5f0c9a1e7b3d4c2a";

type StopFn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A running bridge.
pub struct TestBridge {
    /// `http://127.0.0.1:<port>` (or `https://localhost:<port>`).
    pub base: String,
    pub addr: SocketAddr,
    pub bridge: Bridge,
    /// For admin requests; over TLS it must be given a client certificate
    /// ([`TestBridge::with_client`]).
    pub http: reqwest::Client,
    stop: StopFn,
}

impl TestBridge {
    /// On a free port.
    pub async fn start(config: &Config) -> TestBridge {
        TestBridge::start_at(config, "127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr` (a restart on the port the agent knows). Without any admin
    /// credential in `config`, the admin API takes [`ADMIN_TOKEN`].
    pub async fn start_at(config: &Config, addr: SocketAddr) -> TestBridge {
        let mut config = config.clone();
        if !config.access.admin_configured() {
            config.access.admin_token = Some(pvc_bridge::access::Token::new(ADMIN_TOKEN));
        }
        let config = &config;
        let bridge = Bridge::new(config).expect("bridge");
        let listener = TcpListener::bind(addr).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (server, base) = match &config.tls {
            None => (
                pvc_bridge::serve(&bridge, listener, 1).expect("serve"),
                format!("http://{addr}"),
            ),
            Some(tls) => (
                pvc_bridge::serve_tls(
                    &bridge,
                    listener,
                    1,
                    pvc_bridge::tls::server_config(tls).expect("TLS configuration"),
                )
                .expect("serve"),
                format!("https://localhost:{}", addr.port()),
            ),
        };
        let handle = server.handle();
        tokio::spawn(server);
        bridge.runs.start().expect("run service");
        bridge
            .runs
            .refresh_directory()
            .await
            .expect("host directory");
        TestBridge {
            base,
            addr,
            bridge,
            http: reqwest::Client::new(),
            stop: Box::new(move || Box::pin(async move { handle.stop(true).await })),
        }
    }

    pub fn with_client(mut self, http: reqwest::Client) -> TestBridge {
        self.http = http;
        self
    }

    pub async fn stop(self) {
        (self.stop)().await;
    }

    /// Asks for runs of `hosts` within `within_secs` (`POST /admin/converge`):
    /// their next poll after their slot is granted, with trigger `converge`.
    pub async fn converge(&self, hosts: &[&str], within_secs: u64) {
        let response = self
            .http
            .post(format!("{}/admin/converge", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"certnames": hosts, "within_secs": within_secs}))
            .send()
            .await
            .expect("converge request");
        assert_eq!(response.status().as_u16(), 201, "converge refused");
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A report as stored on the primary.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    pub run_id: Option<String>,
    pub trigger: Option<String>,
    pub mode: Option<String>,
    pub exit_code: Option<i32>,
    pub changed_files: Vec<String>,
    pub cached_catalog_status: Option<String>,
    pub resources: Option<serde_json::Value>,
}

/// `host`'s reports on the primary, oldest first.
pub async fn reports(db: &TestDb, host: &str) -> Vec<StoredReport> {
    let primary = cluster::connect(&db.primary_url).await.expect("primary");
    primary
        .query(
            "SELECT run_id::text, trigger, mode, exit_code, changed_files, cached_catalog_status, resources::text \
             FROM pvc.reports WHERE certname = $1 ORDER BY id",
            &[&host],
        )
        .await
        .expect("reports")
        .into_iter()
        .map(|row| StoredReport {
            run_id: row.get(0),
            trigger: row.get(1),
            mode: row.get(2),
            exit_code: row.get(3),
            changed_files: row.get(4),
            cached_catalog_status: row.get(5),
            resources: row
                .get::<_, Option<String>>(6)
                .map(|t| serde_json::from_str(&t).expect("resources JSON")),
        })
        .collect()
}

/// Waits (bounded) until `host` has at least `n` reports; panics with what
/// is there otherwise.
pub async fn wait_reports(db: &TestDb, host: &str, n: usize, agent: &Agent) -> Vec<StoredReport> {
    let mut last = Vec::new();
    for _ in 0..600 {
        last = reports(db, host).await;
        if last.len() >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{n} report(s) from {host} never arrived; got {last:?}\nagent log:\n{}",
        agent.log()
    );
}

/// One invocation of the stand-in `puppet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    pub args: Vec<String>,
    /// `FACTER_*` variables of its environment, sorted.
    pub facter_env: Vec<(String, String)>,
}

/// A node: its directory, the stand-in `puppet`/`facter`, the agent's
/// configuration file.
pub struct Node {
    pub dir: Scratch,
    pub certname: String,
    pub config: PathBuf,
}

/// The stand-in `puppet`. `puppet ssl bootstrap` copies `pending/cert.pem`
/// and `pending/key.pem` to `ssl/` (fails while they are missing) and logs
/// to `bootstrap.log`. Agent runs are controlled by files in its directory: `sleep`
/// (seconds, after it started), `restore` (a path it rewrites, as Puppet
/// restoring a file, and names in last_run_report.yaml), `exit.<n>` or
/// `exit` (its exit code; 2, "changes", by default). Records its arguments
/// and `FACTER_*` environment in `calls.log`, touches `started.<n>` and
/// `finished.<n>`, writes last_run_summary.yaml and last_run_report.yaml.
const PUPPET_SCRIPT: &str = r#"#!/bin/sh
D="$(dirname "$0")"
# `puppet ssl bootstrap`: the CA "signs" when pending/cert.pem exists.
if [ "$1" = ssl ] && [ "$2" = bootstrap ]; then
  echo "ssl bootstrap" >> "$D/bootstrap.log"
  [ -f "$D/pending/cert.pem" ] || { echo "Error: certificate not signed yet"; exit 1; }
  mkdir -p "$D/ssl"
  cp "$D/pending/cert.pem" "$D/ssl/cert.pem"
  cp "$D/pending/key.pem" "$D/ssl/key.pem"
  exit 0
fi
n=$(( $(cat "$D/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$D/count"
{
  echo "run $n"
  for a in "$@"; do echo "arg $a"; done
  env | grep '^FACTER_' | sort | sed 's/^/env /'
  echo "end"
} >> "$D/calls.log"
touch "$D/started.$n"
[ -f "$D/sleep" ] && sleep "$(cat "$D/sleep")"
cached=not_used
for a in "$@"; do [ "$a" = "--use_cached_catalog" ] && cached=explicitly_requested; done
statuses="resource_statuses: {}"
if [ -f "$D/restore" ]; then
  p="$(cat "$D/restore")"
  echo "restored by puppet $n" > "$p"
  t="$(date -u +%Y-%m-%dT%H:%M:%S.%N+00:00)"
  statuses="resource_statuses:
  File[$p]:
    title: $p
    resource_type: File
    changed: true
    time: '$t'
    evaluation_time: 0.001
    events:
    - status: success
      time: '$t'"
fi
cat > "$D/state/last_run_report.yaml" <<EOF
--- !ruby/object:Puppet::Transaction::Report
host: standin
status: changed
$statuses
cached_catalog_status: $cached
EOF
cat > "$D/state/last_run_summary.yaml" <<EOF
---
version:
  config: 1
  puppet: 7.23.0
resources:
  changed: 1
  failed: 0
  total: 7
time:
  total: 0.25
  last_run: $(date +%s)
changes:
  total: 1
events:
  failure: 0
  success: 1
  total: 1
EOF
echo "Notice: stand-in run $n"
code=2
[ -f "$D/exit" ] && code="$(cat "$D/exit")"
[ -f "$D/exit.$n" ] && code="$(cat "$D/exit.$n")"
touch "$D/finished.$n"
exit "$code"
"#;

const FACTER_SCRIPT: &str = r#"#!/bin/sh
echo '{"networking":{"fqdn":"standin.example.com"},"os":{"family":"Debian"}}'
"#;

impl Node {
    /// A node named `certname` talking to `bridge_url`; `extra` lines are
    /// appended to its configuration.
    pub fn new(tag: &str, certname: &str, bridge_url: &str, extra: &str) -> Node {
        let dir = temp_dir(tag);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        write_script(&dir.join("puppet"), PUPPET_SCRIPT);
        write_script(&dir.join("facter"), FACTER_SCRIPT);
        let d = dir.display();
        let config = dir.join("pvc.conf");
        std::fs::write(
            &config,
            format!(
                "bridge_url={bridge_url}
certname={certname}
puppet_command={d}/puppet
facter_command={d}/facter
agent_catalog_run_lockfile={d}/state/agent_catalog_run.lock
agent_disabled_lockfile={d}/state/agent_disabled.lock
lastrunfile={d}/state/last_run_summary.yaml
lastrunreport={d}/state/last_run_report.yaml
spool_dir={d}/spool
run_timeout=60
forced_runs_burst=50
forced_runs_per_hour=3600
info=1
warnings=1
{extra}
"
            ),
        )
        .unwrap();
        Node {
            dir,
            certname: certname.to_owned(),
            config,
        }
    }

    /// Sets a control file of the stand-in `puppet`.
    pub fn control(&self, name: &str, value: &str) {
        std::fs::write(self.dir.join(name), value).unwrap();
    }

    /// Every invocation of the stand-in `puppet` so far.
    pub fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default();
        let mut calls = Vec::new();
        let mut current: Option<Call> = None;
        for line in text.lines() {
            if line.starts_with("run ") {
                current = Some(Call::default());
            } else if line == "end" {
                calls.extend(current.take());
            } else if let (Some(call), Some(arg)) = (current.as_mut(), line.strip_prefix("arg ")) {
                call.args.push(arg.to_owned());
            } else if let (Some(call), Some(env)) = (current.as_mut(), line.strip_prefix("env ")) {
                let (k, v) = env.split_once('=').unwrap_or((env, ""));
                call.facter_env.push((k.to_owned(), v.to_owned()));
            }
        }
        calls
    }

    /// Waits (bounded) until the stand-in `puppet` has `marker` (`started.2`,
    /// `finished.1`).
    pub async fn wait_for(&self, marker: &str, agent: &Agent) {
        for _ in 0..600 {
            if self.dir.join(marker).exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the stand-in puppet never reached {marker}; calls: {:?}\nagent log:\n{}",
            self.calls(),
            agent.log()
        );
    }

    /// The reports waiting in the agent's outbox, as JSON, oldest first.
    pub fn outbox_reports(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.join("spool"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.retain(|p| p.to_string_lossy().ends_with(".report.json"));
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).expect("report JSON"))
            .collect()
    }

    /// `pvc-agent <args> --config <ours>`, to completion.
    pub async fn command(&self, args: &[&str]) -> std::process::Output {
        let output = Command::new(env!("CARGO_BIN_EXE_pvc-agent"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .expect("pvc-agent finished within 2 minutes")
            .expect("pvc-agent runs")
    }

    /// `pvc-agent run` in the background.
    pub fn spawn_run(&self) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pvc-agent"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("pvc-agent starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Agent { child, log }
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A running `pvc-agent run`, killed when dropped.
pub struct Agent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Agent {
    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until its log has a line containing `text`; returns
    /// that line.
    pub async fn wait_log(&self, text: &str) -> String {
        for _ in 0..600 {
            if let Some(line) = self.log().lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{text:?} never logged; log:\n{}", self.log());
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM, then its exit status (bounded).
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.sigterm();
        self.wait().await
    }

    /// Its exit status (bounded).
    pub async fn wait(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("pvc-agent did not stop on SIGTERM; log:\n{}", self.log()))
            .expect("wait")
    }
}
