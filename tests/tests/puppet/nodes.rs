//! The simulated nodes: the real `pvc-agent` binary (built on demand), one
//! `pvc-agent run` per node with its own configuration, each in a process
//! group of its own so that stopping it also stops the Puppet run it may
//! have started; and the guard that tears the whole environment down on
//! every way out of the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::env::EnvFile;

/// Builds `pvc-agent` into the target directory this test binary runs
/// from, and returns its path.
pub async fn build_agent() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/puppet-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary is not in <target>/<profile>/deps")?
        .to_owned();
    let target_dir = profile_dir
        .parent()
        .context("no target directory above the profile directory")?
        .to_owned();
    let mut command = tokio::process::Command::new(env!("CARGO"));
    command
        .args(["build", "--quiet", "-p", "pvc-agent", "--bin", "pvc-agent"])
        .arg("--manifest-path")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .stdin(Stdio::null());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let status = command.status().await.context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p pvc-agent failed ({status})");
    }
    let binary = profile_dir.join("pvc-agent");
    if !binary.is_file() {
        bail!("{} missing after the build", binary.display());
    }
    Ok(binary)
}

/// One node: what `env.sh agent` made for it.
pub struct Node {
    pub certname: String,
    pub dir: PathBuf,
    /// Where the Puppet code writes for this node (`OUT`).
    pub out: PathBuf,
    pub content_file: PathBuf,
    pub source_file: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Node {
    /// Reads `agent.env` of `certname` and writes its `pvc.conf` for the
    /// bridge at `bridge_url`.
    pub fn configure(dir: &Path, certname: &str, bridge_url: &str) -> anyhow::Result<Node> {
        let node_dir = dir.join("agents").join(certname);
        let env = EnvFile::read(&node_dir.join("agent.env"))?;
        let config = node_dir.join("pvc.conf");
        let spool = node_dir.join("pvc-spool");
        let text = format!(
            "# pvc-agent for {certname}, written by the end-to-end suite
bridge_url={bridge_url}
certname={certname}
puppet_command=\"{puppet}\"
facter_command=\"{facter}\"
ssl_cert={cert}
ssl_key={key}
ssl_ca={ca}
ssl_crl={crl}
spool_dir={spool}
run_timeout=300
forced_runs_burst=20
forced_runs_per_hour=3600
info=1
warnings=1
",
            puppet = env.get("PUPPET_COMMAND")?,
            facter = env.get("FACTER_COMMAND")?,
            cert = env.get("SSL_CERT")?,
            key = env.get("SSL_KEY")?,
            ca = env.get("SSL_CA")?,
            crl = env.get("SSL_CRL")?,
            spool = spool.display(),
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        Ok(Node {
            certname: certname.to_owned(),
            out: env.path("OUT")?,
            content_file: env.path("CONTENT_FILE")?,
            source_file: env.path("SOURCE_FILE")?,
            log: node_dir.join("pvc-agent.log"),
            config,
            dir: node_dir,
        })
    }

    /// The end of its `pvc-agent` log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A running `pvc-agent run`.
pub struct AgentProcess {
    pub certname: String,
    child: Child,
}

impl AgentProcess {
    pub fn spawn(binary: &Path, node: &Node) -> anyhow::Result<AgentProcess> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::File::create(&node.log)?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&node.config)
            .arg("run")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group: a stop reaches the Puppet run it started, too.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(AgentProcess {
            certname: node.certname.clone(),
            child,
        })
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to its group (twice: the second aborts a Puppet run in
    /// progress), then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        if !self.running() {
            signal("-KILL");
            return;
        }
        signal("-TERM");
        std::thread::sleep(Duration::from_millis(200));
        signal("-TERM");
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if !self.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left in the group (a Puppet run), and the agent.
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tears everything down when dropped: the agents, then puppetserver.
pub struct Teardown {
    pub dir: PathBuf,
    pub agents: Vec<AgentProcess>,
    pub server_started: bool,
    /// Keep the directory even when the test passed.
    pub keep: bool,
}

impl Teardown {
    pub fn new(dir: &Path) -> Teardown {
        Teardown {
            dir: dir.to_owned(),
            agents: Vec::new(),
            server_started: false,
            keep: false,
        }
    }
}

impl Teardown {
    /// Stops every agent (and the Puppet run it may have going).
    pub fn stop_agents(&mut self) {
        for mut agent in self.agents.drain(..) {
            agent.stop(Duration::from_secs(10));
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.stop_agents();
        if self.server_started {
            let status = Command::new("bash")
                .arg(crate::env::script())
                .arg("server-down")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!(
                    "env.sh server-down {} failed: {status:?}",
                    self.dir.display()
                );
            }
        }
        if std::thread::panicking() || self.keep {
            eprintln!(
                "puppet e2e: kept {} for a look (server log, agent logs under agents/*/pvc-agent.log)",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
