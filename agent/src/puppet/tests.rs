//! `run`, `facts` and `written_files` against a stand-in `puppet`: a small
//! shell script that records its arguments and `FACTER_*` environment,
//! writes Puppet's files when told to, and exits with a given code.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::decision::RunMode;

/// A directory of its own for each test, removed afterwards.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(hint: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "pvc-agent-{hint}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A summary as Puppet writes it (shortened), and a report with only the
/// field the outcome takes from it.
const SUMMARY: &str = "---\nversion:\n  config: 1795759917\n  puppet: 7.23.0\nresources:\n  \
    changed: 1\n  failed: 0\n  total: 3\ntime:\n  total: 0.5\n  last_run: 1795759921\n\
    changes:\n  total: 1\n";
const REPORT: &str = "--- !ruby/object:Puppet::Transaction::Report\nhost: agent1.test\n\
    resource_statuses: {}\ncached_catalog_status: explicitly_requested\n";

struct StandIn {
    dir: TempDir,
    settings: PuppetSettings,
}

impl StandIn {
    /// `body` runs after the recording; `$d` is the directory.
    fn new(body: &str) -> StandIn {
        let dir = TempDir::new("puppet");
        let d = dir.path().to_str().unwrap().to_owned();
        let script = format!(
            "#!/bin/sh\n\
             d='{d}'\n\
             printf '%s\\n' \"$@\" > \"$d/args\"\n\
             env | grep '^FACTER_' | sort > \"$d/env\"\n\
             printf '%s\\n' \"$PATH\" > \"$d/path\"\n\
             {body}\n"
        );
        let script_path = dir.path().join("puppet");
        fs::write(&script_path, script).unwrap();
        let settings = PuppetSettings {
            // Through sh: a script just written can be `ETXTBSY` to exec
            // while another test thread forks.
            puppet: vec!["/bin/sh".into(), script_path.to_str().unwrap().into()],
            facter: vec!["/bin/sh".into(), script_path.to_str().unwrap().into()],
            run_timeout: Duration::from_secs(120),
            run_lockfile: dir.path().join("agent_catalog_run.lock"),
            disabled_lockfile: dir.path().join("agent_disabled.lock"),
            last_run_summary: dir.path().join("last_run_summary.yaml"),
            last_run_report: dir.path().join("last_run_report.yaml"),
            ca_server: Some("puppetca.example.com".into()),
            report_server: None,
        };
        StandIn { dir, settings }
    }

    /// Writes Puppet's files the way Puppet does (a new file renamed
    /// over), prints to both streams, exits `code`.
    fn puppet_run(code: i32) -> StandIn {
        StandIn::new(&format!(
            "printf '%s' '{SUMMARY}' > \"$d/s.tmp\" && mv \"$d/s.tmp\" \"$d/last_run_summary.yaml\"\n\
             printf '%s' '{REPORT}' > \"$d/r.tmp\" && mv \"$d/r.tmp\" \"$d/last_run_report.yaml\"\n\
             echo 'Notice: Applied catalog in 0.02 seconds'\n\
             echo 'Warning: a warning on stderr' >&2\n\
             exit {code}"
        ))
    }

    fn started(&self) -> bool {
        self.dir.path().join("args").exists()
    }

    fn args(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("args"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(name)).unwrap()
    }
}

fn request(mode: RunMode, server: Option<&str>) -> RunRequest {
    RunRequest {
        run_id: Some("0b9f7c1e-8a4e-4a57-9d7b-2a3f7e0c9d11".into()),
        mode,
        trigger: "schedule".into(),
        server: server.map(str::to_owned),
        facter_env: Vec::new(),
        changed_files: Vec::new(),
    }
}

const BASE_ARGS: [&str; 6] = [
    "agent",
    "--onetime",
    "--no-daemonize",
    "--detailed-exitcodes",
    "--no-splay",
    "--no-usecacheonfailure",
];

#[tokio::test]
async fn the_command_line_for_each_mode_with_and_without_a_server() {
    for (mode, server, extra) in [
        // The CA server stays what puppet.conf says (it would follow
        // --server otherwise); an unknown report server is not invented.
        (
            RunMode::Full,
            Some("ps1.example.com"),
            &[
                "--server",
                "ps1.example.com",
                "--ca_server",
                "puppetca.example.com",
            ][..],
        ),
        (RunMode::Full, None, &[][..]),
        (
            RunMode::CachedCatalog,
            Some("ps2.example.com"),
            &[
                "--server",
                "ps2.example.com",
                "--ca_server",
                "puppetca.example.com",
                "--use_cached_catalog",
            ][..],
        ),
        (RunMode::CachedCatalog, None, &["--use_cached_catalog"][..]),
    ] {
        let stand_in = StandIn::puppet_run(0);
        let outcome = run(&stand_in.settings, &request(mode, server)).await;
        let expected: Vec<String> = BASE_ARGS
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(stand_in.args(), expected, "{mode:?} {server:?}");
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.skipped, None);
    }
}

#[tokio::test]
async fn a_run_passes_facter_variables_and_reads_what_puppet_wrote() {
    let stand_in = StandIn::puppet_run(2);
    let mut req = request(RunMode::Full, Some("ps1.example.com"));
    req.facter_env = vec![
        ("FACTER_role".into(), "web".into()),
        ("FACTER_rack_9".into(), "a b 'c'".into()),
        ("PATH".into(), "/nowhere".into()),
        ("FACTER_bad-name".into(), "x".into()),
        ("LD_PRELOAD".into(), "/tmp/evil.so".into()),
    ];
    let outcome = run(&stand_in.settings, &req).await;
    assert_eq!(
        stand_in.read("env"),
        "FACTER_rack_9=a b 'c'\nFACTER_role=web\n"
    );
    assert_ne!(stand_in.read("path").trim(), "/nowhere");
    assert_eq!(outcome.exit_code, Some(2));
    assert!(!outcome.timed_out);
    let summary = outcome
        .summary
        .as_ref()
        .expect("the summary this run wrote");
    assert_eq!(summary["resources"]["total"], 3);
    assert_eq!(summary["time"]["last_run"], 1_795_759_921);
    assert_eq!(
        outcome.cached_catalog_status.as_deref(),
        Some("explicitly_requested")
    );
    // Both streams.
    assert!(outcome
        .log_tail
        .contains("Notice: Applied catalog in 0.02 seconds\n"));
    assert!(outcome.log_tail.contains("Warning: a warning on stderr\n"));

    // And the report the bridge gets from it.
    let report = pvc_bridge::runs::parse_report(&report_body(&req, &outcome), true).unwrap();
    assert_eq!(report.exit_code, Some(2));
    assert_eq!(report.resources, Some(summary["resources"].clone()));
    assert_eq!(
        report.cached_catalog_status.as_deref(),
        Some("explicitly_requested")
    );
}

#[tokio::test]
async fn an_old_summary_is_not_this_runs() {
    // Puppet refused (or failed) and left last run's files alone.
    let stand_in = StandIn::new("echo 'Error: Could not run: boom'; exit 1");
    fs::write(&stand_in.settings.last_run_summary, SUMMARY).unwrap();
    fs::write(&stand_in.settings.last_run_report, REPORT).unwrap();
    let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
    assert!(stand_in.started());
    assert_eq!(outcome.exit_code, Some(1));
    assert_eq!(outcome.summary, None);
    assert_eq!(outcome.cached_catalog_status, None);
    assert_eq!(outcome.skipped, None, "an error is not a skip");

    // The same old files, but this time the run rewrites them.
    let rewriting = StandIn::puppet_run(0);
    fs::write(&rewriting.settings.last_run_summary, "old: true\n").unwrap();
    let outcome = run(&rewriting.settings, &request(RunMode::Full, None)).await;
    assert_eq!(outcome.summary.unwrap()["resources"]["changed"], 1);
}

/// A process whose name is `puppet` (a symlink to `sleep`: the kernel
/// names a process after the file it was started as), killed when dropped.
struct FakePuppetRun(std::process::Child);

impl FakePuppetRun {
    fn start(dir: &Path) -> FakePuppetRun {
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sleep");
        let link = dir.join("bin").join("puppet");
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(sleep, &link).unwrap();
        let child = std::process::Command::new(&link).arg("60").spawn().unwrap();
        FakePuppetRun(child)
    }
}

impl Drop for FakePuppetRun {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_run_in_progress_is_not_joined() {
    let stand_in = StandIn::puppet_run(0);
    let holder = FakePuppetRun::start(stand_in.dir.path());
    let pid = holder.0.id();
    // Until the kernel has named it after its file.
    for _ in 0..500 {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "puppet" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fs::write(&stand_in.settings.run_lockfile, format!("{pid}")).unwrap();
    let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
    assert_eq!(outcome.skipped, Some(Skipped::Locked { pid: Some(pid) }));
    assert_eq!(outcome.exit_code, Some(1));
    assert!(!stand_in.started());
    assert!(
        outcome.log_tail.contains("already in progress"),
        "{}",
        outcome.log_tail
    );
    assert_eq!(outcome.summary, None);
}

#[tokio::test]
async fn stale_locks_do_not_block() {
    let dead = {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 0"])
            .spawn()
            .unwrap();
        child.wait().unwrap();
        child.id()
    };
    // A dead PID, a live process that is not Puppet (this test), garbage.
    for lock in [
        dead.to_string(),
        std::process::id().to_string(),
        "oops".into(),
    ] {
        let stand_in = StandIn::puppet_run(0);
        fs::write(&stand_in.settings.run_lockfile, &lock).unwrap();
        let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
        assert!(stand_in.started(), "lock {lock}");
        assert_eq!(outcome.skipped, None);
        assert_eq!(outcome.exit_code, Some(0));
    }
}

#[tokio::test]
async fn a_disabled_agent_is_not_run() {
    for (contents, message) in [
        (
            r#"{"disabled_message":"e2e maintenance window"}"#,
            Some("e2e maintenance window"),
        ),
        ("{}", None),
        ("", None),
    ] {
        let stand_in = StandIn::puppet_run(0);
        fs::write(&stand_in.settings.disabled_lockfile, contents).unwrap();
        let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
        assert_eq!(
            outcome.skipped,
            Some(Skipped::Disabled {
                message: message.map(str::to_owned)
            })
        );
        assert_eq!(outcome.exit_code, Some(1));
        assert!(!stand_in.started());
        assert!(outcome.log_tail.contains("administratively disabled"));
        if let Some(m) = message {
            assert!(outcome.log_tail.contains(m));
        }
    }
}

#[tokio::test]
async fn puppet_refusing_by_itself_is_a_skip_too() {
    let stand_in = StandIn::new(
        "echo \"Notice: Skipping run of Puppet configuration client; administratively disabled \
         (Reason: 'set after the check');\"\necho \"Use 'puppet agent --enable' to re-enable.\"\nexit 1",
    );
    let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
    assert!(stand_in.started());
    assert_eq!(
        outcome.skipped,
        Some(Skipped::Disabled {
            message: Some("set after the check".into())
        })
    );
}

fn dead(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn a_run_past_its_timeout_is_killed_with_everything_it_started() {
    let mut stand_in = StandIn::new(
        "echo 'Notice: Applying configuration version 1'\n\
         sleep 60 & echo $! > \"$d/child.pid\"\n\
         wait",
    );
    stand_in.settings.run_timeout = Duration::from_secs(1);
    let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_code, None);
    assert!(stand_in.started());
    let child = stand_in.read("child.pid");
    assert!(dead(&child), "the script's sleep {child} survived");
    assert!(outcome
        .log_tail
        .contains("Notice: Applying configuration version 1\n"));
    assert!(outcome.log_tail.contains("killed after run_timeout"));
    assert_eq!(outcome.summary, None);
}

#[tokio::test]
async fn the_output_tail_is_bounded() {
    let stand_in = StandIn::new(
        "i=0\nwhile [ $i -lt 3000 ]; do\n  \
         echo \"Info: line $i of a long run, padded to be a realistic log line of some length\"\n  \
         i=$((i+1))\ndone\necho 'Notice: the last line' >&2\nexit 0",
    );
    let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert!(outcome.log_tail.len() <= LOG_TAIL_MAX);
    assert!(
        outcome.log_tail.len() > LOG_TAIL_MAX - 200,
        "the tail is full"
    );
    assert!(outcome.log_tail.ends_with("Notice: the last line\n"));
    assert!(outcome.log_tail.contains("Info: line 2999 "));
    assert!(!outcome.log_tail.contains("Info: line 0 "));
}

#[tokio::test]
async fn a_puppet_that_cannot_start() {
    let mut stand_in = StandIn::puppet_run(0);
    fs::write(&stand_in.settings.last_run_summary, SUMMARY).unwrap();
    stand_in.settings.puppet = vec![stand_in.dir.path().join("missing").to_str().unwrap().into()];
    let outcome = run(&stand_in.settings, &request(RunMode::Full, None)).await;
    assert_eq!(outcome.exit_code, None);
    assert!(!outcome.timed_out);
    assert!(
        outcome.log_tail.contains("could not start"),
        "{}",
        outcome.log_tail
    );
    assert_eq!(outcome.summary, None);
}

#[tokio::test]
async fn facts_are_facters_json_object() {
    let facts = r#"{"os":{"family":"Debian"},"networking":{"fqdn":"agent1.test"}}"#;
    // facter exits 1 when some resolvers fail, with the facts it has.
    let stand_in = StandIn::new(&format!(
        "echo 'ERROR Facter::Resolvers::Containers - Permission denied' >&2\nprintf '%s\\n' '{facts}'\nexit 1"
    ));
    let body = super::facts(&stand_in.settings, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(body, format!("{facts}\n").as_bytes());

    for (script, needle) in [
        ("echo 'not json'", "JSON object"),
        ("echo '[1, 2]'", "JSON object"),
        ("echo '{\"os\": ' ; exit 3", "JSON object"),
        ("echo 'ERROR: everything' >&2; exit 1", "ERROR: everything"),
    ] {
        let stand_in = StandIn::new(script);
        let err = super::facts(&stand_in.settings, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{script}: {err:#}");
    }

    let stand_in = StandIn::new("sleep 60 & echo $! > \"$d/child.pid\"\nwait");
    let err = super::facts(&stand_in.settings, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("killed"), "{err:#}");
    assert!(dead(&stand_in.read("child.pid")));

    let mut none = stand_in.settings.clone();
    none.facter.clear();
    assert!(super::facts(&none, Duration::from_secs(1)).await.is_err());
}

#[test]
fn written_files_reads_the_configured_report() {
    let mut settings = StandIn::new("exit 0").settings;
    settings.last_run_report =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/puppet/last_run_report.yaml");
    let written = written_files(&settings);
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        [Path::new("/etc/motd"), Path::new("/etc/sudoers.d/pvc")]
    );
    settings.last_run_report = PathBuf::from("/nonexistent/last_run_report.yaml");
    assert!(written_files(&settings).is_empty());
}
