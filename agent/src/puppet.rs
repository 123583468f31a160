//! Running `puppet agent` and `facter`: Puppet's own locks first (a
//! disabled agent or a run in progress is reported, not fought), then one
//! run in its own process group, killed as a whole on timeout, its output
//! kept as a bounded tail; afterwards what the run left behind
//! (`last_run_summary.yaml`, `last_run_report.yaml`), read only when this
//! run wrote it.
//!
//! - `args` (pure): the command line and the `FACTER_*` environment.
//! - `locks`: `agent_disabled.lock` and `agent_catalog_run.lock`.
//! - `child`: a child in its own process group, output streamed, timeout.
//! - `tail` (pure): the bounded output tail.
//! - `last_run`: Puppet's summary and report files (YAML with Ruby tags).
//! - `body` (pure): the `/report` JSON.

mod args;
mod body;
mod child;
mod last_run;
mod locks;
mod tail;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use tokio::process::Command;
use tokio::time::Instant;

use crate::config::PuppetSettings;
use crate::decision::RunMode;

pub use body::report_body;

/// The most of a run's output kept (the bridge keeps as much).
pub const LOG_TAIL_MAX: usize = 64 * 1024;
/// facter's JSON is a few KB to a few hundred; anything near this is not
/// facts.
const FACTS_MAX: usize = 32 * 1024 * 1024;
/// facter's stderr kept for the log when it fails.
const FACTS_STDERR_MAX: usize = 8 * 1024;

/// A run to do: what the bridge granted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The lease's id, sent back with the report.
    pub run_id: Option<String>,
    pub mode: RunMode,
    /// `schedule`, `file_change`, `converge`, `fallback`.
    pub trigger: String,
    /// `--server`; `None` keeps puppet.conf's.
    pub server: Option<String>,
    /// `FACTER_*` variables for the run; other names are dropped.
    pub facter_env: Vec<(String, String)>,
    /// The monitored files whose change forced this run.
    pub changed_files: Vec<PathBuf>,
}

/// Why a run did not happen: Puppet itself would have refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Another run holds `agent_catalog_run.lock` (its PID when known).
    Locked { pid: Option<u32> },
    /// `puppet agent --disable [message]`.
    Disabled { message: Option<String> },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// As `puppet agent --detailed-exitcodes` exited; `None` when it was
    /// killed (timeout, signal) or could not start. A skipped run has 1,
    /// as Puppet itself exits then.
    pub exit_code: Option<i32>,
    pub started: SystemTime,
    pub duration: Duration,
    /// Killed after `run_timeout`.
    pub timed_out: bool,
    pub skipped: Option<Skipped>,
    /// `last_run_summary.yaml` as JSON, when this run wrote it.
    pub summary: Option<serde_json::Value>,
    /// `cached_catalog_status` of `last_run_report.yaml` (`not_used`,
    /// `explicitly_requested`, `on_failure`), when this run wrote it: the
    /// summary does not carry it.
    pub cached_catalog_status: Option<String>,
    /// The last [`LOG_TAIL_MAX`] bytes of stdout and stderr, interleaved;
    /// for a skipped run, the reason.
    pub log_tail: String,
}

/// Runs `puppet agent` once as `request` asks, unless Puppet's own locks
/// say it would not run. Never fails: whatever happened is in the outcome.
pub async fn run(settings: &PuppetSettings, request: &RunRequest) -> RunOutcome {
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut outcome = RunOutcome {
        exit_code: None,
        started,
        duration: Duration::ZERO,
        timed_out: false,
        skipped: None,
        summary: None,
        cached_catalog_status: None,
        log_tail: String::new(),
    };

    if let Some(skipped) = locks::check(&settings.disabled_lockfile, &settings.run_lockfile) {
        outcome.log_tail = locks::describe(&skipped, &settings.run_lockfile);
        tracing::warn!("puppet run not started: {}", outcome.log_tail);
        outcome.exit_code = Some(1);
        outcome.skipped = Some(skipped);
        outcome.duration = clock.elapsed();
        return outcome;
    }

    let Some((program, leading)) = settings.puppet.split_first() else {
        outcome.log_tail = "pvc-agent: no puppet command configured".into();
        tracing::error!("{}", outcome.log_tail);
        outcome.duration = clock.elapsed();
        return outcome;
    };
    let summary_before = last_run::Snapshot::take(&settings.last_run_summary);
    let report_before = last_run::Snapshot::take(&settings.last_run_report);

    let mut command = Command::new(program);
    command.args(leading).args(args::agent_args(
        request,
        settings.ca_server.as_deref(),
        settings.report_server.as_deref(),
    ));
    let (env, dropped) = args::facter_env(&request.facter_env);
    for name in dropped {
        tracing::warn!("not passed to puppet: {name:?} is not a FACTER_ variable name");
    }
    command.envs(env);
    tracing::info!(
        mode = request.mode.as_str(),
        trigger = %request.trigger,
        server = request.server.as_deref().unwrap_or("(puppet.conf)"),
        "starting puppet agent"
    );

    let mut tail = tail::Tail::new(LOG_TAIL_MAX);
    let mut lines = tail::Lines::default();
    let ended = child::run_in_group(
        &mut command,
        settings.run_timeout,
        child::Stderr::Merged,
        |_, bytes| {
            tail.push(bytes);
            lines.push(bytes, |line| tracing::debug!(target: "puppet", "{line}"));
        },
    )
    .await;
    outcome.duration = clock.elapsed();

    match ended {
        Err(e) => {
            let note = format!("pvc-agent: could not start {program}: {e}");
            tracing::error!("{note}");
            tail.push_line(&note);
        }
        Ok(ended) if ended.timed_out => {
            outcome.timed_out = true;
            let note = format!(
                "pvc-agent: puppet agent killed after run_timeout ({} s)",
                settings.run_timeout.as_secs()
            );
            tracing::error!("{note}");
            tail.push_line(&note);
        }
        Ok(ended) => outcome.exit_code = ended.status.and_then(|s| s.code()),
    }
    outcome.log_tail = tail.into_string();
    if outcome.exit_code == Some(1) {
        // Puppet saw a lock we did not (taken after our check, or one we
        // could not judge): it said so.
        outcome.skipped = locks::skipped_from_output(&outcome.log_tail);
    }

    if summary_before.rewritten(&settings.last_run_summary, started) {
        outcome.summary = last_run::read_summary(&settings.last_run_summary);
    }
    if report_before.rewritten(&settings.last_run_report, started) {
        outcome.cached_catalog_status = last_run::cached_catalog_status(&settings.last_run_report);
    }
    tracing::info!(
        exit_code = ?outcome.exit_code,
        timed_out = outcome.timed_out,
        duration_secs = outcome.duration.as_secs_f64(),
        summary = outcome.summary.is_some(),
        "puppet agent finished"
    );
    outcome
}

/// `puppet ssl bootstrap`: a node without a certificate asks the Puppet CA
/// for one the way Puppet itself does (key, CSR, waiting for the signature
/// as `waitforcert` in puppet.conf says), so the agent never invents its own.
/// Ok when Puppet exited 0.
pub async fn ssl_bootstrap(settings: &PuppetSettings, timeout: Duration) -> anyhow::Result<()> {
    let Some((program, leading)) = settings.puppet.split_first() else {
        bail!("no puppet command configured");
    };
    let mut command = Command::new(program);
    command.args(leading).args(["ssl", "bootstrap"]);
    let mut output = tail::Tail::new(FACTS_STDERR_MAX);
    let ended = child::run_in_group(&mut command, timeout, child::Stderr::Merged, |_, bytes| {
        output.push(bytes)
    })
    .await
    .with_context(|| format!("could not start {program}"))?;
    let output = output.into_string();
    if ended.timed_out {
        bail!(
            "{program} ssl bootstrap killed after {} s: {}",
            timeout.as_secs(),
            output.trim_end()
        );
    }
    match ended.status {
        Some(status) if status.success() => Ok(()),
        status => bail!(
            "{program} ssl bootstrap failed ({}): {}",
            status.map(|s| s.to_string()).unwrap_or_default(),
            output.trim_end()
        ),
    }
}

/// Runs facter (`settings.facter`, e.g. `facter -p --json`) and returns its
/// JSON object. facter exits 1 when some resolvers fail but still prints
/// the facts it has: those count (logged); anything but a JSON object on
/// stdout does not.
pub async fn facts(settings: &PuppetSettings, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let Some((program, leading)) = settings.facter.split_first() else {
        bail!("no facter command configured");
    };
    let mut command = Command::new(program);
    command.args(leading);
    let mut stdout = Vec::new();
    let mut too_large = false;
    let mut stderr = tail::Tail::new(FACTS_STDERR_MAX);
    let ended = child::run_in_group(
        &mut command,
        timeout,
        child::Stderr::Separate,
        |stream, bytes| match stream {
            child::Stream::Out if stdout.len() + bytes.len() <= FACTS_MAX => {
                stdout.extend_from_slice(bytes)
            }
            child::Stream::Out => too_large = true,
            child::Stream::Err => stderr.push(bytes),
        },
    )
    .await
    .with_context(|| format!("could not start {program}"))?;
    let stderr = stderr.into_string();
    if ended.timed_out {
        bail!("{program} killed after {} s: {stderr}", timeout.as_secs());
    }
    if too_large {
        bail!("{program} printed more than {FACTS_MAX} bytes");
    }
    let status = ended.status.map(|s| s.to_string()).unwrap_or_default();
    let success = ended.status.is_some_and(|s| s.success());
    // An object is all that is checked; its values are the bridge's business.
    if let Err(e) = serde_json::from_slice::<BTreeMap<String, serde::de::IgnoredAny>>(&stdout) {
        bail!("{program} ({status}) did not print a JSON object ({e}): {stderr}");
    }
    if !success {
        tracing::warn!(
            "{program} {status}, its facts are used: {}",
            stderr.trim_end()
        );
    }
    Ok(stdout)
}

/// When Puppet last wrote each file it changed in its last run, from
/// `last_run_report.yaml`: a watched file changed later than this was
/// changed by someone else. Empty when the report is missing or unreadable.
pub fn written_files(settings: &PuppetSettings) -> BTreeMap<PathBuf, SystemTime> {
    last_run::written_files(&settings.last_run_report)
}
