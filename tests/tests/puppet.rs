//! End to end with real Puppet: a real puppetserver (Debian's packages,
//! started by `tests/e2e/puppet/env.sh`) compiles with the bridge as its
//! ENC and sends its reports to it; real `puppet agent` runs, driven by the
//! real `pvc-agent` binary over mutual TLS with each node's certificate from
//! the Puppet CA; the bridge reads Foreman's data from the replica, follows
//! the change feed, and takes the server's capacity from its status API.
//!
//! One puppetserver start costs 40–90 s, so the phases run in order in one
//! test, each announced on stderr:
//!
//! 1. environment: packages, database, puppetserver, the bridge's certificate;
//! 2. the bridge over TLS, polling the status API through a link the test can cut;
//! 3. three fixture hosts in three Puppet environments, each under `pvc-agent run`;
//! 4. each host's ENC classes and parameters are in its applied catalog;
//! 5. `update_flag` set in Foreman reaches one host's run, and only that host's;
//! 6. both monitored files tampered with → restored by a forced full run;
//! 7. the same without capacity (status link cut) → a cached-catalog run;
//! 8. compile load sampled from the status API against the bridge's figures;
//! 9. Foreman reports and facts of the runs reached the bridge; the audit
//!    trail has the restores.
//!
//! Measurements (times, load) are printed, never asserted.

#[path = "puppet/env.rs"]
mod env;
#[path = "puppet/link.rs"]
mod link;
#[path = "puppet/load.rs"]
mod load;
#[path = "puppet/nodes.rs"]
mod nodes;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use pvc_bridge::Bridge;
use pvc_testkit::cluster::{self, TestDb};
use serde_json::Value;

use crate::env::EnvFile;
use crate::link::StatusLink;
use crate::load::Sampler;
use crate::nodes::{AgentProcess, Node, Teardown};

/// Fixture hosts with classes, one per Puppet environment: the first gets
/// the rollout flag, the second has its files tampered with.
const HOSTS: [&str; 3] = [
    "db47.example.com",       // production, 6 classes
    "kafka53.corp.acme.test", // staging, 4 classes
    "db28.example.com",       // development, 2 classes
];
/// The bridge's name for the puppetserver: what agents reach (`--server`).
const SERVER: &str = "localhost";
/// JRubies the environment gives puppetserver.
const JRUBIES: u32 = 2;
/// The bridge's static guess for the server, replaced by what the status
/// API says: a different number, so that the source is visible.
const STATIC_JRUBIES: u32 = 6;
const TARGET_UTILIZATION: f64 = 0.8;
/// The tampered host's poll interval during the tamper phases.
const POLL_SECS: u64 = 60;
/// The whole test, phases and teardown aside.
const OVERALL: Duration = Duration::from_secs(540);

fn phase(n: u32, what: &str, started: Instant) {
    eprintln!(
        "[puppet e2e {:>5.1} s] phase {n}: {what}",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_puppet_under_pvc_agent_end_to_end() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("pvc-puppet-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test directory");
    let mut teardown = Teardown::new(&dir);
    // PVC_E2E_KEEP=1 keeps the directory (logs, audit repository) on success.
    teardown.keep = std::env::var_os("PVC_E2E_KEEP").is_some_and(|v| v == "1");
    let outcome = tokio::time::timeout(OVERALL, run(&dir, &mut teardown, started)).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("{error:#}"),
        Err(_) => panic!("the suite did not finish within {OVERALL:?}"),
    }
    drop(teardown);
    eprintln!(
        "[puppet e2e] passed in {:.1} s (teardown included)",
        started.elapsed().as_secs_f64()
    );
}

/// Everything a phase needs.
struct World {
    dir: PathBuf,
    /// Held for the test's length: dropping it drops the database.
    _db: TestDb,
    primary: tokio_postgres::Client,
    /// The bridge as puppetserver sees it: server certificate, admin token.
    http: reqwest::Client,
    base: String,
    admin_token: String,
    nodes: Vec<Node>,
    server: EnvFile,
}

async fn run(dir: &Path, teardown: &mut Teardown, started: Instant) -> anyhow::Result<()> {
    // ---------------------------------------------------------------- 1
    phase(
        1,
        "environment: packages, database, puppetserver, certificates",
        started,
    );
    env::run(dir, &["install"], Duration::from_secs(600)).await?;
    let bridge_listener = TcpListener::bind("127.0.0.1:0")?;
    let bridge_port = bridge_listener.local_addr()?.port();
    let bridge_url = format!("https://localhost:{bridge_port}");
    let puppet_port = free_port()?;
    teardown.server_started = true;
    let dir_arg = dir.display().to_string();
    let server_up = async {
        let t = Instant::now();
        env::run(
            dir,
            &[
                "server-up",
                &dir_arg,
                &puppet_port.to_string(),
                &JRUBIES.to_string(),
                &bridge_url,
            ],
            Duration::from_secs(420),
        )
        .await?;
        anyhow::Ok(t.elapsed())
    };
    let (server_secs, db, agent_binary) =
        tokio::join!(server_up, migrated_db(), nodes::build_agent());
    let server_secs = server_secs?;
    let db = db?;
    let agent_binary = agent_binary?;
    eprintln!(
        "  puppetserver ready in {:.1} s on port {puppet_port}",
        server_secs.as_secs_f64()
    );
    let server = EnvFile::read(&dir.join("server.env"))?;
    let cert_out = env::run(
        dir,
        &["cert", &dir_arg, "pvc-bridge.test", "localhost"],
        Duration::from_secs(120),
    )
    .await?;
    let bridge_cert = EnvFile::from_text("env.sh cert output", &cert_out);

    // ---------------------------------------------------------------- 2
    phase(
        2,
        "the bridge over mutual TLS, capacity from the status API",
        started,
    );
    let link = StatusLink::start(puppet_port).await?;
    let admin_token = "e2e-admin-token-3c1f5a9d8b7e6f40".to_owned();
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{admin_token}\n"))?;
    let toml = bridge_toml(dir, &server, &bridge_cert, &token_file, link.port)?;
    let config_file = dir.join("bridge.toml");
    std::fs::write(&config_file, &toml)?;
    let config = pvc_bridge::config::load_from(
        Some(&config_file),
        [
            ("PVC_DATABASE__PRIMARY", db.primary_url.as_str()),
            ("PVC_DATABASE__REPLICAS", db.replica_url.as_str()),
            // The golden Foreman's SETTINGS[:fqdn] (ssh key comments).
            ("PVC_ENC__FOREMAN_URL", "https://localhost.localdomain.net"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .context("the bridge's configuration")?;
    let bridge = Bridge::new(&config)?;
    let tls = pvc_bridge::tls::server_config(config.tls.as_ref().context("[tls]")?)?;
    let server_task = pvc_bridge::serve_tls(&bridge, bridge_listener, 2, tls)?;
    let bridge_handle = server_task.handle();
    tokio::spawn(server_task);
    bridge.start_background(&config)?;
    bridge.runs.refresh_directory().await?;
    let http = https_client(
        &server.path("PUPPET_CA")?,
        &server.path("PUPPET_SERVER_CERT")?,
        &server.path("PUPPET_SERVER_KEY")?,
    )?;
    let primary = cluster::connect(&db.primary_url).await?;
    let mut world = World {
        dir: dir.to_owned(),
        _db: db,
        primary,
        http,
        base: bridge_url.clone(),
        admin_token,
        nodes: Vec::new(),
        server,
    };
    let bridge_jrubies = world
        .eventually(
            "the bridge reads the server's capacity from its status API",
            60,
            || async {
                let metrics = world.metrics().await?;
                let up = metric(&metrics, "pvc_bridge_server_up", SERVER);
                let jrubies = metric(&metrics, "pvc_bridge_server_jrubies", SERVER);
                Ok((up == Some(1.0) && jrubies == Some(f64::from(JRUBIES))).then_some(JRUBIES))
            },
        )
        .await?;
    eprintln!("  bridge on {bridge_url}: server {SERVER} up, {bridge_jrubies} JRubies (status API; configured guess {STATIC_JRUBIES})");
    let sampler = Sampler::start(
        world.http.clone(),
        format!("https://localhost:{puppet_port}/status/v1/services/jruby-metrics?level=debug"),
        Duration::from_millis(200),
    );

    // ---------------------------------------------------------------- 3
    phase(3, "three nodes under pvc-agent", started);
    // One after the other: each call rewrites the shared DIR/bin/nsrun,
    // which a concurrent bootstrap may be executing (ETXTBSY).
    for host in HOSTS {
        env::run(dir, &["agent", &dir_arg, host], Duration::from_secs(180)).await?;
    }
    for host in HOSTS {
        let node = Node::configure(dir, host, &bridge_url)?;
        let monitored = format!(
            "{},{}",
            node.content_file.display(),
            node.source_file.display()
        );
        world
            .set_host_parameter(
                host,
                &[
                    ("pvc_files_monitored", &monitored),
                    ("pvc_server_pool", "e2e"),
                ],
            )
            .await?;
        world.nodes.push(node);
    }
    for node in &world.nodes {
        teardown
            .agents
            .push(AgentProcess::spawn(&agent_binary, node)?);
    }
    // Runs now rather than at each host's slot of the cycle.
    world.converge(&HOSTS, 20).await?;

    // ---------------------------------------------------------------- 4
    phase(
        4,
        "ENC classes and parameters in the applied catalogs",
        started,
    );
    for node in &world.nodes {
        world
            .eventually(
                &format!("a completed Puppet run of {}", node.certname),
                240,
                || world.completed_run_after(&node.certname, 0, None, None),
            )
            .await?;
    }
    for node in &world.nodes {
        let checked = world.check_catalog(node).await?;
        eprintln!("  {}: {checked}", node.certname);
    }
    check_agents(teardown, &world)?;

    // ---------------------------------------------------------------- 5
    phase(
        5,
        "update_flag: Foreman → change feed → that host's next run only",
        started,
    );
    for node in &world.nodes {
        ensure!(
            !node.out.join("update_flag.txt").exists(),
            "{}: update_flag.txt before any flag was set",
            node.certname
        );
    }
    let flagged = &world.nodes[0];
    let marks = world.report_marks().await?;
    let set_at = Instant::now();
    world
        .set_host_parameter(&flagged.certname, &[("update_flag", "true")])
        .await?;
    world
        .eventually("update_flag in the bridge's ENC answer", 60, || async {
            let enc = world.enc(&flagged.certname).await?;
            let flag = enc.pointer("/parameters/update_flag").cloned();
            Ok(matches!(flag, Some(Value::String(ref s)) if s == "true").then_some(()))
        })
        .await?;
    // Runs that start from now on compile with the flag in the ENC.
    let flag_seen_unix = unix_now();
    eprintln!(
        "  update_flag reached the bridge's ENC {:.2} s after the write on the primary",
        set_at.elapsed().as_secs_f64()
    );
    world.converge(&HOSTS, 20).await?;
    for node in &world.nodes {
        let mark = marks.get(&node.certname).copied().unwrap_or(0);
        world
            .eventually(
                &format!("a run of {} started after the flag", node.certname),
                180,
                || world.completed_run_after(&node.certname, mark, None, Some(flag_seen_unix)),
            )
            .await?;
    }
    let flag_file = flagged.out.join("update_flag.txt");
    let flag = std::fs::read_to_string(&flag_file)
        .with_context(|| format!("{}: the guarded branch did not run", flag_file.display()))?;
    ensure!(flag.trim() == "on", "{}: {flag:?}", flag_file.display());
    let content = std::fs::read_to_string(&flagged.content_file)?;
    ensure!(
        content.contains("update_flag=on"),
        "{}: {content}",
        flagged.content_file.display()
    );
    for node in &world.nodes[1..] {
        ensure!(
            !node.out.join("update_flag.txt").exists(),
            "{}: the flag of {} turned the branch on here too",
            node.certname,
            flagged.certname
        );
    }
    eprintln!(
        "  update_flag on {}: guarded branch on {:.1} s after the write; off on the others",
        flagged.certname,
        set_at.elapsed().as_secs_f64()
    );

    // ---------------------------------------------------------------- 6
    phase(6, "tampered files restored by a forced full run", started);
    let tampered = &world.nodes[1];
    // The production poll interval from here on (the phases above needed a
    // short one for their runs): a restore must not wait for a poll.
    world
        .set_host_parameter(&tampered.certname, &[("pvc_check_interval", "60")])
        .await?;
    world
        .eventually(
            "the 60 s poll interval in the bridge's answer",
            60,
            || async {
                let explanation = world.explain(&tampered.certname).await?;
                let interval = explanation
                    .pointer("/host/check_interval")
                    .and_then(Value::as_u64);
                Ok((interval == Some(POLL_SECS)).then_some(()))
            },
        )
        .await?;
    // The agent's current wait still follows the short interval; its next
    // poll learns the long one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    eprintln!("  {}: polls every {POLL_SECS} s", tampered.certname);
    let full = world.tamper_and_restore(tampered, "full").await?;
    eprintln!(
        "tamper-to-restore: {:.1} s (full run, server capacity)",
        full.secs
    );
    check_agents(teardown, &world)?;

    // ---------------------------------------------------------------- 7
    phase(
        7,
        "tampered files restored without capacity (cached catalog)",
        started,
    );
    link.cut();
    world
        .eventually(
            "the bridge sees the server without capacity",
            60,
            || async {
                let metrics = world.metrics().await?;
                Ok((metric(&metrics, "pvc_bridge_server_up", SERVER) == Some(0.0)).then_some(()))
            },
        )
        .await?;
    let cached = world.tamper_and_restore(tampered, "cached_catalog").await?;
    eprintln!(
        "tamper-to-restore: {:.1} s (cached-catalog run, no capacity)",
        cached.secs
    );
    link.restore();
    check_agents(teardown, &world)?;

    // ---------------------------------------------------------------- 8
    phase(8, "compile load against the bridge's budget", started);
    let load = sampler.load();
    drop(sampler);
    let metrics = world.metrics().await?;
    let jrubies_now = metric(&metrics, "pvc_bridge_server_jrubies", SERVER).unwrap_or(f64::NAN);
    let rate = metric(&metrics, "pvc_bridge_server_run_rate", SERVER).unwrap_or(f64::NAN);
    let cost = metric(&metrics, "pvc_bridge_server_run_cost_seconds", SERVER).unwrap_or(f64::NAN);
    let utilization =
        metric(&metrics, "pvc_bridge_server_jruby_utilization", SERVER).unwrap_or(f64::NAN);
    eprintln!(
        "  status API: {} samples ({} failed), num-jrubies {:?}..{:?}, borrow-count {}",
        load.samples, load.failed_samples, load.jrubies_min, load.jrubies_max, load.borrow_count
    );
    eprintln!(
        "  compile load: at most {} catalog compiles holding a JRuby, {} holding or waiting, {} borrows of any kind; {} samples with a compile in flight; average wait for a JRuby at most {} ms",
        load.max_compiles,
        load.max_compile_demand,
        load.max_borrowed,
        load.samples_with_compile,
        load.max_average_wait_ms
    );
    eprintln!(
        "  bridge budget: {bridge_jrubies} JRubies (now {jrubies_now}), target {:.1} busy (utilisation {TARGET_UTILIZATION}), measured utilisation {utilization:.3}, run cost {cost:.2} JRuby-s, admissible rate {rate:.3} runs/s (0 while the status link is cut)",
        TARGET_UTILIZATION * f64::from(bridge_jrubies)
    );
    ensure!(load.samples > 0, "no status sample");
    ensure!(load.borrow_count > 0, "puppetserver never lent a JRuby");
    ensure!(
        load.jrubies_min == Some(u64::from(bridge_jrubies))
            && load.jrubies_max == Some(u64::from(bridge_jrubies)),
        "the bridge's budget ({bridge_jrubies} JRubies) is not what the status API said ({:?}..{:?})",
        load.jrubies_min,
        load.jrubies_max
    );
    ensure!(
        jrubies_now == f64::from(bridge_jrubies),
        "the bridge's JRubies moved to {jrubies_now}"
    );
    ensure!(
        load.max_compiles <= bridge_jrubies as usize,
        "{} catalog compiles at once, over the budget of {bridge_jrubies}",
        load.max_compiles
    );

    // ---------------------------------------------------------------- 9
    phase(9, "reports, facts and the audit trail", started);
    for node in &world.nodes {
        let (reports, facts) = world
            .eventually(
                &format!("Foreman reports and facts of {}", node.certname),
                90,
                || world.reports_and_facts(&node.certname),
            )
            .await?;
        eprintln!(
            "  {}: {reports} Foreman config reports, facts from pvc-agent ({facts} top-level facts)",
            node.certname
        );
    }
    for (restore, name) in [(&full, "full"), (&cached, "cached-catalog")] {
        let until = if name == "full" {
            Some(cached.tampered_unix)
        } else {
            None
        };
        let commits = world
            .eventually(
                &format!("the audit trail records the {name} restore"),
                90,
                || async { world.audit_restore(tampered, restore.tampered_unix, until) },
            )
            .await?;
        eprintln!("  audit trail: {name} restore in {commits}");
    }

    // ---------------------------------------------------------------- end
    check_agents(teardown, &world)?;
    // Before the database goes: an agent would find no primary.
    teardown.stop_agents();
    bridge_handle.stop(true).await;
    eprintln!(
        "[puppet e2e {:>5.1} s] all phases passed",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A port free now (bound, then released for puppetserver).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh Foreman database with the pvc schema (and its change feed)
/// migrated, replayed by the replica.
async fn migrated_db() -> anyhow::Result<TestDb> {
    let cluster = cluster::shared();
    let db = cluster.foreman_db("puppet_e2e").await?;
    let client = cluster::connect(&db.primary_url).await?;
    pvc_bridge::store::pvc::migrate(&client).await?;
    cluster.wait_replica_caught_up().await?;
    Ok(db)
}

/// A TOML basic string.
fn toml_str(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

fn bridge_toml(
    dir: &Path,
    server: &EnvFile,
    bridge_cert: &EnvFile,
    admin_token: &Path,
    status_port: u16,
) -> anyhow::Result<String> {
    Ok(format!(
        r#"
[tls]
cert_file = {cert}
key_file = {key}
client_ca_file = {ca}
client_crl_files = [{crl}]
require_client_cert = true

[access]
server_certnames = [{server_certname:?}]
admin_token_file = {admin_token}

[cache]
# Far longer than the test: a Foreman change can only come through the feed.
ttl_secs = 3600

[changes]
enabled = true
poll_ms = 100

[audit]
repo = {audit}
every_secs = 1

[scheduler]
# Scheduled runs now and then; the phases ask for the runs they need
# (converge) and force the others (file changes).
target_period_secs = 60
min_interval_secs = 45
max_interval_secs = 120
target_utilization = {TARGET_UTILIZATION}
check_interval_secs = 2
min_check_interval_secs = 1
fact_interval_secs = 60
forced_runs_burst = 20
forced_runs_per_hour = 3600
hosts_refresh_secs = 5
status_poll_secs = 1
status_timeout_secs = 3
server_down_after_secs = 3
status_ca_file = {ca}
status_cert_file = {cert}
status_key_file = {key}

[[scheduler.servers]]
name = "{SERVER}"
pool = "e2e"
jrubies = {STATIC_JRUBIES}
status_url = "https://localhost:{status_port}"
"#,
        cert = toml_str(&bridge_cert.path("CERT")?),
        key = toml_str(&bridge_cert.path("KEY")?),
        ca = toml_str(&server.path("PUPPET_CA")?),
        crl = toml_str(&server.path("PUPPET_CRL")?),
        server_certname = server.get("PUPPET_CERTNAME")?,
        admin_token = toml_str(admin_token),
        audit = toml_str(&dir.join("audit.git")),
    ))
}

/// A client trusting only the Puppet CA, presenting `cert`/`key`.
fn https_client(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<reqwest::Client> {
    let bundle = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let mut identity = std::fs::read(cert)?;
    identity.push(b'\n');
    identity.extend(std::fs::read(key)?);
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(20))
        .identity(reqwest::Identity::from_pem(&identity)?);
    for root in reqwest::Certificate::from_pem_bundle(&bundle)? {
        builder = builder.add_root_certificate(root);
    }
    Ok(builder.build()?)
}

/// The value of `name{server="<server>",…}` in a Prometheus text page.
fn metric(page: &str, name: &str, server: &str) -> Option<f64> {
    let label = format!("server=\"{server}\"");
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Fails when an agent has exited: it should run until the teardown.
fn check_agents(teardown: &mut Teardown, world: &World) -> anyhow::Result<()> {
    for agent in &mut teardown.agents {
        if !agent.running() {
            let node = world.nodes.iter().find(|n| n.certname == agent.certname);
            bail!(
                "pvc-agent of {} exited; its log:\n{}",
                agent.certname,
                node.map(|n| n.log_tail(60)).unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One tamper and its restore.
struct Restore {
    secs: f64,
    tampered_unix: f64,
}

/// A run as pvc-agent reported it (`pvc.reports`).
struct RunRow {
    trigger: String,
    mode: String,
    started_unix: Option<f64>,
    duration_secs: Option<f64>,
    changed_files: Vec<String>,
}

impl World {
    /// Polls `probe` every 250 ms until it gives a value, for at most
    /// `secs`; then fails with what the agents and the server logged.
    async fn eventually<T, F, Fut>(&self, what: &str, secs: u64, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last_error = None;
        loop {
            match probe().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(error) => last_error = Some(format!("{error:#}")),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not within {secs} s (last error: {})\n{}",
                    last_error.as_deref().unwrap_or("none"),
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The ends of the agents' and the server's logs.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!(
                "--- pvc-agent {} ({}):\n{}\n",
                node.certname,
                node.log.display(),
                node.log_tail(25)
            ));
        }
        for key in ["PUPPET_LOG", "PUPPET_ENC_LOG"] {
            if let Ok(path) = self.server.path(key) {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!(
                    "--- {key} ({}):\n{}\n",
                    path.display(),
                    lines[lines.len().saturating_sub(15)..].join("\n")
                ));
            }
        }
        out.push_str(&format!("(everything is under {})", self.dir.display()));
        out
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        Ok(response.error_for_status()?.text().await?)
    }

    /// `GET /node/<host>?format=yml` as puppetserver asks it, as JSON.
    async fn enc(&self, host: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/node/{host}?format=yml", self.base))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        ensure!(status.is_success(), "/node/{host}: {status}: {body}");
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&body).with_context(|| format!("/node/{host}: {body}"))?;
        Ok(serde_json::to_value(yaml)?)
    }

    /// `GET /admin/explain/<host>`: what decides the host's next answer.
    async fn explain(&self, host: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/admin/explain/{host}", self.base))
            .bearer_auth(&self.admin_token)
            .send()
            .await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// Whether the bridge has a run of `host` in progress (granted, not yet
    /// reported), would grant one now, or will within 10 s.
    async fn busy_soon(&self, host: &str) -> anyhow::Result<bool> {
        let explanation = self.explain(host).await?;
        let in_progress = explanation
            .pointer("/schedule/run_in_progress")
            .and_then(Value::as_bool)
            .with_context(|| format!("no run_in_progress in {explanation}"))?;
        let grant_now = explanation
            .pointer("/schedule/decision_now/run")
            .is_some_and(|run| !run.is_null());
        // null: never (no capacity, an infinite wait in JSON).
        let due_in = explanation
            .pointer("/schedule/next_due_in_secs")
            .map(|v| v.as_f64().unwrap_or(f64::INFINITY))
            .with_context(|| format!("no next_due_in_secs in {explanation}"))?;
        Ok(in_progress || grant_now || due_in < 10.0)
    }

    /// Asks for runs of `hosts` within `secs` (`POST /admin/converge`).
    async fn converge(&self, hosts: &[&str], secs: u64) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/admin/converge", self.base))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({"certnames": hosts, "within_secs": secs}))
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status.as_u16() == 201,
            "converge: {status}: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Foreman host parameters on the primary, as Foreman writes them;
    /// returns once the replica has them.
    async fn set_host_parameter(&self, host: &str, params: &[(&str, &str)]) -> anyhow::Result<()> {
        for (name, value) in params {
            let rows = self
                .primary
                .execute(
                    "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at) \
                     SELECT 'HostParameter', id, $1, 'string', $2, now(), now() FROM hosts WHERE name = $3",
                    &[name, value, &host],
                )
                .await?;
            ensure!(rows == 1, "no host {host} in Foreman");
        }
        cluster::shared().wait_replica_caught_up().await?;
        Ok(())
    }

    /// The newest `pvc.reports` id of each host (0 for none).
    async fn report_marks(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows = self
            .primary
            .query(
                "SELECT certname, max(id) FROM pvc.reports GROUP BY certname",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The first report of `host` newer than `mark` (of `mode`, of a run
    /// started at `since_unix` or later, when given) of a run that applied
    /// (Puppet's exit code 0 or 2).
    async fn completed_run_after(
        &self,
        host: &str,
        mark: i64,
        mode: Option<&str>,
        since_unix: Option<f64>,
    ) -> anyhow::Result<Option<RunRow>> {
        let row = self
            .primary
            .query_opt(
                "SELECT id, coalesce(trigger, ''), coalesce(mode, ''), \
                        extract(epoch FROM started)::float8, duration_secs, changed_files \
                 FROM pvc.reports \
                 WHERE certname = $1 AND id > $2 AND exit_code IN (0, 2) \
                   AND ($3::text IS NULL OR mode = $3) \
                   AND ($4::float8 IS NULL OR extract(epoch FROM started)::float8 >= $4) \
                 ORDER BY id LIMIT 1",
                &[&host, &mark, &mode, &since_unix],
            )
            .await?;
        Ok(row.map(|r| RunRow {
            trigger: r.get(1),
            mode: r.get(2),
            started_unix: r.get(3),
            duration_secs: r.get(4),
            changed_files: r.get(5),
        }))
    }

    /// Each class of the host's ENC (from the bridge) was applied with the
    /// ENC's parameters: the stub classes' records equal them, and there is
    /// no record of any other class.
    async fn check_catalog(&self, node: &Node) -> anyhow::Result<String> {
        let enc = self.enc(&node.certname).await?;
        let classes = enc
            .get("classes")
            .and_then(Value::as_object)
            .with_context(|| format!("{}: no classes in the ENC", node.certname))?;
        ensure!(
            !classes.is_empty(),
            "{}: the ENC has no class",
            node.certname
        );
        let records = node.out.join("classes");
        let mut expected_files = BTreeSet::new();
        for (class, params) in classes {
            let file = records.join(format!("{}.json", class.replace("::", "__")));
            expected_files.insert(file.file_name().unwrap().to_string_lossy().into_owned());
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "{}: class {class} not applied ({})",
                    node.certname,
                    file.display()
                )
            })?;
            let applied: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: {text}", file.display()))?;
            // Puppet drops undef parameters, so the record has no nulls.
            let wanted: serde_json::Map<String, Value> = params
                .as_object()
                .map(|p| {
                    p.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            ensure!(
                applied == Value::Object(wanted.clone()),
                "{}: class {class} applied with {applied}, the ENC says {}",
                node.certname,
                Value::Object(wanted)
            );
        }
        let present: BTreeSet<String> = std::fs::read_dir(&records)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ensure!(
            present == expected_files,
            "{}: class records {present:?}, the ENC's classes {expected_files:?}",
            node.certname
        );
        let environment = enc
            .get("environment")
            .and_then(Value::as_str)
            .unwrap_or("production");
        let content = std::fs::read_to_string(&node.content_file)?;
        ensure!(
            content.contains(&format!("environment={environment}\n")),
            "{}: the catalog was not compiled in {environment}: {content}",
            node.certname
        );
        Ok(format!(
            "{} classes with their parameters, environment {environment}",
            classes.len()
        ))
    }

    /// Writes garbage into both monitored files of `node` and waits until
    /// Puppet has put them back; then checks that the restore was a
    /// file-change run of `mode`.
    async fn tamper_and_restore(&self, node: &Node, mode: &str) -> anyhow::Result<Restore> {
        let lock = node.dir.join("var/state/agent_catalog_run.lock");
        // Between runs (none granted, no Puppet running, none due soon), so
        // that nothing but pvc-agent's forced run restores.
        let mut idle_since = None;
        self.eventually(&format!("{} between runs", node.certname), 150, || {
            let busy = lock.exists();
            let now = Instant::now();
            let granted = self.busy_soon(&node.certname);
            let idle = match (busy, idle_since) {
                (true, _) => {
                    idle_since = None;
                    false
                }
                (false, None) => {
                    idle_since = Some(now);
                    false
                }
                (false, Some(at)) => now.duration_since(at) >= Duration::from_millis(1500),
            };
            async move { Ok((idle && !granted.await?).then_some(())) }
        })
        .await?;
        let content = std::fs::read(&node.content_file)?;
        let source = std::fs::read(&node.source_file)?;
        let mark = self
            .report_marks()
            .await?
            .get(&node.certname)
            .copied()
            .unwrap_or(0);
        let tampered_unix = unix_now();
        let t = Instant::now();
        std::fs::write(&node.content_file, b"garbage: tampered by the test\n")?;
        std::fs::write(&node.source_file, b"garbage: tampered by the test\n")?;
        let restored = loop {
            let now_content = std::fs::read(&node.content_file).unwrap_or_default();
            let now_source = std::fs::read(&node.source_file).unwrap_or_default();
            if now_content == content && now_source == source {
                break t.elapsed().as_secs_f64();
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!(
                    "{}: the tampered files were not restored within 120 s ({mode})\n{}",
                    node.certname,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let run = self
            .eventually(&format!("the report of the {mode} restore run"), 60, || {
                self.completed_run_after(&node.certname, mark, Some(mode), None)
            })
            .await?;
        ensure!(
            run.trigger == "file_change",
            "{}: the {mode} run after the tamper was triggered by {}",
            node.certname,
            run.trigger
        );
        ensure!(run.mode == mode);
        eprintln!(
            "  {mode} run: started {:.1} s after the tamper, took {:.1} s, changed files {:?}",
            run.started_unix.map_or(f64::NAN, |s| s - tampered_unix),
            run.duration_secs.unwrap_or(f64::NAN),
            run.changed_files
        );
        Ok(Restore {
            secs: restored,
            tampered_unix,
        })
    }

    /// Config reports of `host` from puppetserver's report processor and
    /// facts from pvc-agent, once both are there: (reports, top-level facts).
    async fn reports_and_facts(&self, host: &str) -> anyhow::Result<Option<(i64, usize)>> {
        // Foreman's config_report shape, as puppetserver's report processor
        // posted it to /api/config_reports.
        let row = self
            .primary
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE report->>'host' = certname \
                   AND reported_at IS NOT NULL \
                   AND report->'status' ?& array['applied', 'restarted', 'failed', \
                                                 'failed_restarts', 'skipped', 'pending'] \
                   AND report ? 'metrics' AND jsonb_typeof(report->'logs') = 'array') \
                 FROM pvc.config_reports WHERE certname = $1",
                &[&host],
            )
            .await?;
        let (reports, well_formed): (i64, i64) = (row.get(0), row.get(1));
        ensure!(
            reports == well_formed,
            "{host}: {} of {reports} config reports are not in Foreman's format",
            reports - well_formed
        );
        let facts = self
            .primary
            .query_opt(
                "SELECT facts::text FROM pvc.facts WHERE certname = $1 AND source = 'facts'",
                &[&host],
            )
            .await?;
        let Some(facts) = facts else {
            return Ok(None);
        };
        if reports == 0 {
            return Ok(None);
        }
        let facts: Value = serde_json::from_str(&facts.get::<_, String>(0))?;
        let count = facts.as_object().map_or(0, |f| f.len());
        ensure!(
            facts.pointer("/os/family").is_some() || facts.get("os").is_some(),
            "{host}: facts without os: {facts}"
        );
        Ok(Some((reports, count)))
    }

    /// The audit trail's run commits of `node` dated from the tamper on
    /// (and before `until`), naming both managed files.
    fn audit_restore(
        &self,
        node: &Node,
        from_unix: f64,
        until_unix: Option<f64>,
    ) -> anyhow::Result<Option<String>> {
        let repo = self.dir.join("audit.git");
        let branch = format!("refs/heads/hosts/{}", node.certname);
        let log = git(&repo, &["log", "--format=%H %ct %s", &branch]);
        let Ok(log) = log else {
            return Ok(None);
        };
        let mut commits = Vec::new();
        let mut named = String::new();
        for line in log.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(id), Some(at), Some(subject)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let at: f64 = at.parse().unwrap_or(0.0);
            // Commit times are the reports' whole seconds.
            if !subject.starts_with("run:")
                || at < from_unix.floor() - 1.0
                || until_unix.is_some_and(|u| at >= u.floor() - 1.0)
            {
                continue;
            }
            named.push_str(&git(&repo, &["show", &format!("{id}:last_run.yaml")])?);
            commits.push(format!("{} ({subject})", &id[..10]));
        }
        let content = node.content_file.display().to_string();
        let source = node.source_file.display().to_string();
        if commits.is_empty() || !named.contains(&content) || !named.contains(&source) {
            return Ok(None);
        }
        Ok(Some(commits.join(", ")))
    }
}

/// `git --git-dir <repo> <args>`: its stdout.
fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()?;
    ensure!(
        output.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}
