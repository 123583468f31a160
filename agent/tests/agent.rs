//! The real `pvc-agent` binary against the real bridge (in process, on the
//! real primary + replica), with stand-in `puppet` and `facter` scripts that
//! record how they were run.

mod support;

use std::path::Path;
use std::time::Duration;

use pvc_agent::backoff;
use support::{
    bridge_config, closed_port, golden_hosts, migrated_db, reports, scheduler_toml,
    set_host_parameter, wait_reports, Node, TestBridge, SERVER,
};

const AGENT_FLAGS: [&str; 6] = [
    "agent",
    "--onetime",
    "--no-daemonize",
    "--detailed-exitcodes",
    "--no-splay",
    "--no-usecacheonfailure",
];

fn args(extra: &[&str]) -> Vec<String> {
    AGENT_FLAGS
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `path` replaced as editors and package managers do: a new file renamed
/// over it.
fn rename_replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_run_has_the_flags_server_and_facter_env_and_its_report_the_run_id() {
    let db = migrated_db("agent_grant").await;
    let host = golden_hosts()[0].clone();
    set_host_parameter(&db, &host, "pvc_facter_update_flag", "boolean", "true").await;
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    // puppet.conf's CA server: pinned, so --server does not move it.
    let node = Node::new("grant", &host, &bridge.base, "ca_server=puppetca.pvc.test");
    // Nothing granted yet: `once` polls and runs nothing.
    let idle = node.command(&["once"]).await;
    assert_eq!(idle.status.code(), Some(0), "{}", stderr(&idle));
    assert!(node.calls().is_empty(), "{:?}", node.calls());

    bridge.converge(&[&host], 1).await;
    // The converge's slot for this host is within its second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let output = node.command(&["once"]).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let calls = node.calls();
    assert_eq!(calls.len(), 1, "{calls:?}\n{log}");
    assert_eq!(
        calls[0].args,
        args(&["--server", SERVER, "--ca_server", "puppetca.pvc.test"])
    );
    assert!(
        calls[0]
            .facter_env
            .contains(&("FACTER_UPDATE_FLAG".into(), "true".into())),
        "{:?}",
        calls[0].facter_env
    );
    let stored = reports(&db, &host).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let report = &stored[0];
    let run_id = report.run_id.clone().expect("the report names its run");
    assert!(
        log.contains(&format!("run granted: {run_id}")),
        "the granted run id is the reported one: {log}"
    );
    assert_eq!(report.trigger.as_deref(), Some("converge"));
    assert_eq!(report.mode.as_deref(), Some("full"));
    assert_eq!(report.exit_code, Some(2));
    assert_eq!(report.cached_catalog_status.as_deref(), Some("not_used"));
    assert_eq!(
        report.resources.as_ref().map(|r| r["changed"].clone()),
        Some(serde_json::json!(1)),
        "the summary's resources"
    );
    // Both polls declared the agent's protocol version.
    let declared = &bridge.bridge.runs.stats.polls_protocol;
    let current = declared[1].load(std::sync::atomic::Ordering::Relaxed);
    let others: u64 = [0, 2, 3]
        .iter()
        .map(|&i| declared[i].load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!((current, others), (2, 0), "polls by declared protocol");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_forces_a_run_from_the_cached_catalog_when_no_server_is_up() {
    let db = migrated_db("agent_cached").await;
    let host = golden_hosts()[1].clone();
    let (_files, paths) = support::monitored_files(
        &db,
        &host,
        "cached-files",
        &[("sudoers", "root ALL=(ALL) ALL\n")],
    )
    .await;
    let [watched] = <[_; 1]>::try_from(paths).unwrap();
    // A server whose capacity is pushed, never pushed: down.
    let toml = scheduler_toml("server_down_after_secs = 1")
        .replace("jrubies = 8\n", "jrubies = 8\npushed = true\n");
    let bridge = TestBridge::start(&bridge_config(&db, &toml, &[])).await;
    let node = Node::new("cached", &host, &bridge.base, "");
    let agent = node.spawn_run();
    agent.wait_log("monitoring 1 path(s)").await;
    std::fs::write(&watched, "root ALL=(ALL) NOPASSWD: ALL\n").unwrap();
    let stored = wait_reports(&db, &host, 1, &agent).await;
    let calls = node.calls();
    assert_eq!(
        calls[0].args,
        args(&["--server", SERVER, "--use_cached_catalog"]),
        "{calls:?}"
    );
    let report = &stored[0];
    assert_eq!(report.trigger.as_deref(), Some("file_change"));
    assert_eq!(report.mode.as_deref(), Some("cached_catalog"));
    assert_eq!(
        report.cached_catalog_status.as_deref(),
        Some("explicitly_requested")
    );
    assert_eq!(report.changed_files, vec![watched.display().to_string()]);
    assert!(report.run_id.is_some());
    let status = agent.terminate().await;
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppets_own_restore_does_not_retrigger_but_a_mid_run_tamper_does() {
    let db = migrated_db("agent_tamper").await;
    let host = golden_hosts()[2].clone();
    let (_files, paths) = support::monitored_files(
        &db,
        &host,
        "tamper-files",
        &[
            ("motd", "welcome\n"),
            ("sshd_config", "PermitRootLogin no\n"),
        ],
    )
    .await;
    let [restored, tampered] = <[_; 2]>::try_from(paths).unwrap();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("tamper", &host, &bridge.base, "");
    // Each run rewrites `restored` and says so in last_run_report.yaml; the
    // first one takes a while, long enough for someone else to step in.
    node.control("restore", &restored.display().to_string());
    node.control("sleep", "2");
    let agent = node.spawn_run();
    agent.wait_log("monitoring 2 path(s)").await;
    std::fs::write(&restored, "hacked\n").unwrap();
    node.wait_for("started.1", &agent).await;
    std::fs::remove_file(node.dir.join("sleep")).unwrap();
    std::fs::write(&tampered, "PermitRootLogin yes\n").unwrap();
    let stored = wait_reports(&db, &host, 2, &agent).await;
    let triggers: Vec<_> = stored.iter().map(|r| r.trigger.clone()).collect();
    assert_eq!(
        triggers,
        vec![
            Some("file_change".to_owned()),
            Some("file_change".to_owned())
        ],
        "{stored:?}"
    );
    assert_eq!(
        stored[0].changed_files,
        vec![restored.display().to_string()]
    );
    assert_eq!(
        stored[1].changed_files,
        vec![tampered.display().to_string()],
        "only the file changed by someone else during the run forces the next one, not Puppet's restore"
    );
    assert_eq!(
        std::fs::read_to_string(&restored).unwrap(),
        "restored by puppet 2\n"
    );
    // The second run restored the file again and nobody touched anything:
    // a change now is the third run, with only that change.
    std::fs::write(&tampered, "PermitRootLogin prohibit-password\n").unwrap();
    let stored = wait_reports(&db, &host, 3, &agent).await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(
        stored[2].changed_files,
        vec![tampered.display().to_string()]
    );
    assert!(agent.terminate().await.success());
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_by_rename_is_still_detected_each_time() {
    let db = migrated_db("agent_rename").await;
    let host = golden_hosts()[3].clone();
    let (_files, paths) = support::monitored_files(
        &db,
        &host,
        "rename-files",
        &[("resolv.conf", "nameserver 192.0.2.1\n")],
    )
    .await;
    let [watched] = <[_; 1]>::try_from(paths).unwrap();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("rename", &host, &bridge.base, "");
    let agent = node.spawn_run();
    agent.wait_log("monitoring 1 path(s)").await;
    for (i, server) in ["192.0.2.2", "192.0.2.3"].into_iter().enumerate() {
        rename_replace(&watched, &format!("nameserver {server}\n"));
        let stored = wait_reports(&db, &host, i + 1, &agent).await;
        assert_eq!(stored.len(), i + 1, "{stored:?}");
        assert_eq!(stored[i].trigger.as_deref(), Some("file_change"));
        assert_eq!(stored[i].changed_files, vec![watched.display().to_string()]);
    }
    assert_eq!(node.calls().len(), 2);
    assert!(agent.terminate().await.success());
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bridge_nodes_back_off_then_fall_back_spread_by_certname() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let interval = Duration::from_secs(2);
    let names = ["web01.example.com", "db07.example.com"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|name| Node::new("fallback", name, &url, "fallback_interval=2"))
        .collect();
    let agents: Vec<_> = nodes.iter().map(Node::spawn_run).collect();
    let mut offsets = Vec::new();
    for ((node, agent), name) in nodes.iter().zip(&agents).zip(names) {
        let line = agent.wait_log("fallback_delay_ms=").await;
        let logged: u128 = line
            .split("fallback_delay_ms=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no delay in {line:?}"));
        // The delay the agent scheduled its fallback with: the interval
        // plus its certname's offset within half an interval.
        let offset = backoff::fallback_offset(name, interval / 2);
        assert_eq!(logged, (interval + offset).as_millis(), "{line}");
        offsets.push(offset);
        agent.wait_log("retrying in").await;
        node.wait_for("finished.1", agent).await;
        let calls = node.calls();
        assert_eq!(
            calls[0].args,
            args(&[]),
            "no --server: puppet.conf's servers"
        );
        // The report waits in the outbox.
        let mut waited = 0;
        while node.outbox_reports().is_empty() && waited < 300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        let kept = node.outbox_reports();
        assert!(!kept.is_empty(), "no report kept:\n{}", agent.log());
        assert_eq!(kept[0]["trigger"], "fallback");
        assert_eq!(kept[0]["mode"], "full");
        assert_eq!(kept[0]["exit_code"], 2);
        assert!(kept[0]["run_id"].is_null());
    }
    assert_ne!(offsets[0], offsets[1], "two certnames, two moments");
    for agent in agents {
        assert!(agent.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_without_the_bridge_runs_at_once_and_the_reports_arrive_later_once() {
    let db = migrated_db("agent_offline").await;
    let host = golden_hosts()[4].clone();
    let (_files, paths) = support::monitored_files(
        &db,
        &host,
        "offline-files",
        &[("hosts", "127.0.0.1 localhost\n")],
    )
    .await;
    let [watched] = <[_; 1]>::try_from(paths).unwrap();
    let config = bridge_config(&db, &scheduler_toml(""), &[]);
    let bridge = TestBridge::start(&config).await;
    let addr = bridge.addr;
    let node = Node::new("offline", &host, &bridge.base, "");
    let agent = node.spawn_run();
    agent.wait_log("monitoring 1 path(s)").await;
    bridge.stop().await;
    // The configured servers cannot compile either: the first run exits 1,
    // the retry applies the cached catalog.
    node.control("exit.1", "1");
    std::fs::write(&watched, "127.0.0.1 localhost evil\n").unwrap();
    node.wait_for("finished.2", &agent).await;
    let calls = node.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].args, args(&[]));
    assert_eq!(calls[1].args, args(&["--use_cached_catalog"]));
    let mut waited = 0;
    while node.outbox_reports().len() < 2 && waited < 300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let kept = node.outbox_reports();
    assert_eq!(kept.len(), 2, "{kept:?}\n{}", agent.log());
    assert!(reports(&db, &host).await.is_empty());

    // The bridge is back on the same address: the outbox drains, in order.
    let bridge = TestBridge::start_at(&config, addr).await;
    let stored = wait_reports(&db, &host, 2, &agent).await;
    let mut waited = 0;
    while !node.outbox_reports().is_empty() && waited < 300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(node.outbox_reports().is_empty(), "{}", agent.log());
    let modes: Vec<_> = stored.iter().map(|r| r.mode.clone()).collect();
    assert_eq!(
        modes,
        vec![Some("full".to_owned()), Some("cached_catalog".to_owned())]
    );
    let codes: Vec<_> = stored.iter().map(|r| r.exit_code).collect();
    assert_eq!(codes, vec![Some(1), Some(2)]);
    for report in &stored {
        assert_eq!(report.trigger.as_deref(), Some("file_change"));
        assert_eq!(report.changed_files, vec![watched.display().to_string()]);
        assert_eq!(report.run_id, None);
    }
    // Delivered once: the outbox is empty and nothing more arrives with
    // the next polls.
    agent.wait_log("delivered").await;
    assert_eq!(reports(&db, &host).await.len(), 2);
    assert!(agent.terminate().await.success());
    assert_eq!(reports(&db, &host).await.len(), 2);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_lets_it_finish_reports_it_and_exits_0() {
    let db = migrated_db("agent_sigterm").await;
    let host = golden_hosts()[5].clone();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("sigterm", &host, &bridge.base, "");
    node.control("sleep", "2");
    bridge.converge(&[&host], 1).await;
    let agent = node.spawn_run();
    node.wait_for("started.1", &agent).await;
    let status = agent.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(node.dir.join("finished.1").exists(), "the run finished");
    let stored = reports(&db, &host).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].exit_code, Some(2));
    assert_eq!(node.calls().len(), 1);
    bridge.stop().await;
}

#[tokio::test]
async fn configuration_errors_are_reported_with_their_line() {
    let node = Node::new("badconf", "web1.example.com", "http://127.0.0.1:1", "");
    let mut text = std::fs::read_to_string(&node.config).unwrap();
    text.push_str("colour=blue\nfallback_interval=soon\n");
    std::fs::write(&node.config, &text).unwrap();
    let lines = text.lines().count();
    let output = node.command(&["check"]).await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG: {err}");
    let path = node.config.display().to_string();
    assert!(
        err.contains(&format!("{path}:{}:", lines - 1)),
        "the unknown key's line: {err}"
    );
    assert!(
        err.contains(&format!("{path}:{}:", lines)),
        "the malformed value's line: {err}"
    );
    assert!(node.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_pvc_conf_works_unchanged() {
    let db = migrated_db("agent_original").await;
    let host = golden_hosts()[6].clone();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("original", &host, &bridge.base, "");
    // The pvc module's sample, with this bridge's address; what a node's
    // Puppet would say comes from PVC_AGENT_* here (no Puppet installed).
    let original = node.dir.join("pvc.conf.original");
    std::fs::write(
        &original,
        format!(
            "host_endpoint={b}/host\nreport_endpoint={b}/report\nfacts_endpoint={b}/facts\ninfo=1\nwarnings=1\n",
            b = bridge.base
        ),
    )
    .unwrap();
    let d = node.dir.display();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pvc-agent"))
        .arg("--config")
        .arg(&original)
        .arg("check")
        .env("PVC_AGENT_CERTNAME", &host)
        .env("PVC_AGENT_PUPPET_COMMAND", format!("{d}/puppet"))
        .env(
            "PVC_AGENT_AGENT_CATALOG_RUN_LOCKFILE",
            format!("{d}/state/run.lock"),
        )
        .env(
            "PVC_AGENT_AGENT_DISABLED_LOCKFILE",
            format!("{d}/state/disabled.lock"),
        )
        .env(
            "PVC_AGENT_LASTRUNFILE",
            format!("{d}/state/last_run_summary.yaml"),
        )
        .env(
            "PVC_AGENT_LASTRUNREPORT",
            format!("{d}/state/last_run_report.yaml"),
        )
        .env("PVC_AGENT_SPOOL_DIR", format!("{d}/spool"))
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    assert!(out.contains(&format!("certname          {host}")), "{out}");
    assert!(out.contains("PVC_RETURN        0"), "{out}");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_nodes_puppet_certificate() {
    use pvc_testkit::certs::PuppetCa;

    let db = migrated_db("agent_tls").await;
    let host = golden_hosts()[7].clone();
    let ca = PuppetCa::new("Puppet CA: pvc.test").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let crl = ca.crl(&[]).unwrap();
    let config = bridge_config(
        &db,
        &scheduler_toml(""),
        &[
            ("PVC_TLS__CERT_FILE", server.cert.display().to_string()),
            ("PVC_TLS__KEY_FILE", server.key.display().to_string()),
            (
                "PVC_TLS__CLIENT_CA_FILE",
                ca.ca_file().display().to_string(),
            ),
            ("PVC_TLS__CLIENT_CRL_FILES", crl.display().to_string()),
        ],
    );
    let admin = ca.issue_node("admin.pvc.test").unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem_bundle(&std::fs::read(ca.ca_file()).unwrap())
                .unwrap()
                .remove(0),
        )
        .identity(reqwest::Identity::from_pem(&admin.identity_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    let bridge = TestBridge::start(&config).await.with_client(http);
    assert!(bridge.base.starts_with("https://"));
    let issued = ca.issue_node(&host).unwrap();
    let tls_lines = |cert: &Path, key: &Path| {
        format!(
            "ssl_cert={}\nssl_key={}\nssl_ca={}\nssl_crl={}",
            cert.display(),
            key.display(),
            ca.ca_file().display(),
            crl.display()
        )
    };
    let node = Node::new(
        "tls",
        &host,
        &bridge.base,
        &tls_lines(&issued.cert, &issued.key),
    );
    let output = node.command(&["check"]).await;
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    assert!(out.contains("PVC_RETURN        0"), "{out}");
    // A granted run over TLS: poll and report.
    bridge.converge(&[&host], 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let output = node.command(&["once"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stored = reports(&db, &host).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].run_id.is_some());

    // A node without its certificate yet gets one the Puppet way first
    // (`puppet ssl bootstrap`), then talks TLS with it; while the CA has not
    // signed, `check` fails saying so.
    let fresh = Node::new("tls-bootstrap", &host, &bridge.base, "");
    let d = fresh.dir.display().to_string();
    let lines = format!(
        "ssl_cert={d}/ssl/cert.pem\nssl_key={d}/ssl/key.pem\nssl_ca={}\nssl_crl={}\n",
        ca.ca_file().display(),
        crl.display()
    );
    let mut text = std::fs::read_to_string(&fresh.config).unwrap();
    text.push_str(&lines);
    std::fs::write(&fresh.config, text).unwrap();
    let output = fresh.command(&["check"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("ssl bootstrap"),
        "{}",
        stderr(&output)
    );
    std::fs::create_dir_all(fresh.dir.join("pending")).unwrap();
    std::fs::copy(&issued.cert, fresh.dir.join("pending/cert.pem")).unwrap();
    std::fs::copy(&issued.key, fresh.dir.join("pending/key.pem")).unwrap();
    let output = fresh.command(&["check"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(fresh.dir.join("ssl/cert.pem").is_file());
    let bootstraps = std::fs::read_to_string(fresh.dir.join("bootstrap.log")).unwrap();
    assert_eq!(bootstraps.lines().count(), 2, "{bootstraps}");
    // With the certificate in place, no bootstrap.
    let output = fresh.command(&["check"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let bootstraps = std::fs::read_to_string(fresh.dir.join("bootstrap.log")).unwrap();
    assert_eq!(bootstraps.lines().count(), 2, "{bootstraps}");

    // A certificate from another CA is refused.
    let other = PuppetCa::new("Puppet CA: elsewhere.test").unwrap();
    let stranger = other.issue_node(&host).unwrap();
    let node = Node::new(
        "tls-stranger",
        &host,
        &bridge.base,
        &tls_lines(&stranger.cert, &stranger.key),
    );
    let output = node.command(&["check"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("PVC_RETURN"));
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_run_uploads_facters_json() {
    let db = migrated_db("agent_facts").await;
    let host = golden_hosts()[8].clone();
    let toml = scheduler_toml("").replace("fact_interval_secs = 0", "fact_interval_secs = 1");
    let bridge = TestBridge::start(&bridge_config(&db, &toml, &[])).await;
    let node = Node::new("facts", &host, &bridge.base, "");
    let primary = pvc_testkit::cluster::connect(&db.primary_url)
        .await
        .unwrap();
    let mut stored = None;
    // The host's fact cycle comes within the second.
    for _ in 0..20 {
        let output = node.command(&["once"]).await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        stored = primary
            .query_opt(
                "SELECT facts::text FROM pvc.facts WHERE certname = $1",
                &[&host],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, String>(0));
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let facts: serde_json::Value = serde_json::from_str(&stored.expect("facts uploaded")).unwrap();
    assert_eq!(
        facts["networking"]["fqdn"], "standin.example.com",
        "{facts}"
    );
    assert!(node.calls().is_empty(), "a fact run runs no Puppet");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_runs_nothing_and_gives_a_granted_run_back() {
    let db = migrated_db("agent_check").await;
    let host = golden_hosts()[9].clone();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("check", &host, &bridge.base, "");
    bridge.converge(&[&host], 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let output = node.command(&["check"]).await;
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    assert!(out.contains("given back"), "{out}");
    assert!(node.calls().is_empty(), "check runs no Puppet");
    let stored = reports(&db, &host).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].run_id.is_some());
    assert_eq!(stored[0].exit_code, None, "not run");
    assert!(out.contains(stored[0].run_id.as_deref().unwrap()), "{out}");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_items_the_bridge_refuses_are_moved_aside_the_rest_delivered() {
    let db = migrated_db("agent_rejected").await;
    let host = golden_hosts()[10].clone();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("rejected", &host, &bridge.base, "");
    // What an earlier outage left: a report the bridge refuses (exit code
    // out of range), then a good one.
    let spool = node.dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(
        spool.join("00000000000000000001.report.json"),
        r#"{"exit_code":999}"#,
    )
    .unwrap();
    std::fs::write(
        spool.join("00000000000000000002.report.json"),
        r#"{"trigger":"fallback","mode":"full","exit_code":0}"#,
    )
    .unwrap();
    let output = node.command(&["once"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(node.outbox_reports().is_empty(), "{}", stderr(&output));
    let rejected: Vec<String> = std::fs::read_dir(spool.join("rejected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(rejected, vec!["00000000000000000001.report.json"]);
    let stored = reports(&db, &host).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].trigger.as_deref(), Some("fallback"));
    assert_eq!(stored[0].exit_code, Some(0));
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_aborts_the_run_and_exits_0() {
    let db = migrated_db("agent_abort").await;
    let host = golden_hosts()[11].clone();
    let bridge = TestBridge::start(&bridge_config(&db, &scheduler_toml(""), &[])).await;
    let node = Node::new("abort", &host, &bridge.base, "");
    // Far longer than the test waits for the agent to stop.
    node.control("sleep", "300");
    bridge.converge(&[&host], 1).await;
    let agent = node.spawn_run();
    node.wait_for("started.1", &agent).await;
    agent.sigterm();
    agent.wait_log("letting the Puppet run finish").await;
    agent.sigterm();
    let status = agent.wait().await;
    assert!(status.success(), "{status:?}");
    assert!(!node.dir.join("finished.1").exists());
    let stored = reports(&db, &host).await;
    assert_eq!(stored.len(), 1, "the aborted run is reported: {stored:?}");
    assert_eq!(stored[0].exit_code, None);
    assert!(stored[0].run_id.is_some());
    bridge.stop().await;
}
