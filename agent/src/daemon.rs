//! The agent's loop: ask the bridge (`/host`), run Puppet when it grants a
//! run, upload facts when it asks for them, force a run when a monitored
//! file changes, and keep enforcing when the bridge is gone.
//!
//! The loop is sequential on purpose: one poll, its action, then the wait.
//! Two Puppet runs can never overlap, and a file change during a run is
//! queued by the watcher and judged after it (Puppet's own writes do not
//! count; someone else's do).
//!
//! Without the bridge: polls back off exponentially with jitter; a file
//! change still runs Puppet at once (its configured servers, then the
//! cached catalog if that compile fails); and after `fallback_interval`
//! without a decision, plus the certname's offset
//! ([`backoff::fallback_delay`]), Puppet runs on its own every
//! `fallback_interval`. Reports and facts that cannot be delivered wait in
//! the outbox, drained after every successful poll.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::time::Instant;

use crate::backoff::{self, Backoff, ForcedRunLimit, Jitter};
use crate::client::{BridgeClient, ClientError};
use crate::config::AgentConfig;
use crate::decision::{Decision, RunMode};
use crate::outbox::{Outbox, OutboxKind};
use crate::puppet::{self, RunOutcome, RunRequest};
use crate::watch::FileWatch;

/// First delay after a failed poll; doubles up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Spread of the check interval, so nodes started together drift apart.
const CHECK_SPREAD: f64 = 0.10;
/// Puppet's `--detailed-exitcodes` for "the run could not happen"
/// (compile failed, server unreachable, locked, disabled).
const EXIT_NOT_RUN: i32 = 1;

/// What `pvc-agent once` did.
#[derive(Debug, Clone)]
pub struct OnceOutcome {
    /// The bridge's answer.
    pub decision: Decision,
    /// The granted run, when there was one.
    pub run: Option<RunSummary>,
    /// Facts were asked for: whether the bridge took them (`false`: kept in
    /// the outbox, or facter failed).
    pub facts_delivered: Option<bool>,
    /// Items still waiting in the outbox.
    pub undelivered: usize,
}

impl OnceOutcome {
    /// The process exit code for `once`: 0 when the bridge answered and a
    /// granted run applied (Puppet's 0 or 2); 1 when the bridge answered
    /// with an error or the run failed or did not happen.
    pub fn exit_code(&self) -> i32 {
        let run_ok = self
            .run
            .as_ref()
            .is_none_or(|r| matches!(r.exit_code, Some(0) | Some(2)));
        if self.decision.code == 0 && run_ok {
            0
        } else {
            1
        }
    }
}

/// One Puppet run, as far as the caller cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub trigger: String,
    pub mode: RunMode,
    pub exit_code: Option<i32>,
    /// Locked by another run, or disabled (`puppet agent --disable`).
    pub skipped: bool,
    pub timed_out: bool,
    /// The bridge took its report (`false`: kept in the outbox).
    pub report_delivered: bool,
    /// Watched files someone else changed during the run.
    pub tampered: Vec<PathBuf>,
}

/// `pvc-agent check`: the configuration is valid (the caller loaded it),
/// the bridge answers, and this is its decision. A run granted to `check`
/// is not started; its lease is given back at once with a report saying so.
pub async fn check(config: &AgentConfig) -> anyhow::Result<Decision> {
    ensure_certificate(config, false).await?;
    let client = BridgeClient::new(config).context("cannot set up the bridge client")?;
    let decision = client
        .poll(&[])
        .await
        .with_context(|| format!("cannot poll {}", config.host_endpoint))?;
    if let Some(grant) = &decision.run {
        let body = serde_json::json!({
            "run_id": grant.run_id,
            "trigger": grant.trigger,
            "mode": grant.mode.as_str(),
            "log_tail": "not run: pvc-agent check only asks",
        });
        if let Err(e) = client.post_report(body.to_string().as_bytes()).await {
            tracing::warn!("could not give back the run granted to check: {e}");
        }
    }
    Ok(decision)
}

/// `pvc-agent once`: one poll and its action (run, facts), then the
/// outbox; no file watching, no fallback.
pub async fn once(config: AgentConfig) -> anyhow::Result<OnceOutcome> {
    ensure_certificate(&config, false).await?;
    let mut agent = Agent::new(config)?;
    let decision = agent
        .client
        .poll(&[])
        .await
        .with_context(|| format!("cannot poll {}", agent.config.host_endpoint))?;
    log_decision(&decision);
    let (run, facts_delivered) = if decision.code == 0 {
        agent.drain().await;
        agent.act(&decision, &[], None).await
    } else {
        (None, None)
    };
    Ok(OnceOutcome {
        decision,
        run,
        facts_delivered,
        undelivered: agent.outbox.pending(),
    })
}

/// `pvc-agent run`: the daemon, until SIGTERM or SIGINT (then exit 0; a
/// Puppet run in progress is allowed to finish, a second signal aborts it).
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    ensure_certificate(&config, true).await?;
    let mut agent = Agent::new(config)?;
    let mut watch = FileWatch::new().context("cannot start watching files")?;
    agent.stop = Some(Stop::new()?);
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    let mut limit = ForcedRunLimit::new(
        agent.config.forced_runs_per_hour,
        agent.config.forced_runs_burst,
        std::time::Instant::now(),
    );
    let fallback_interval = agent.config.fallback_interval;
    // The same for every outage of this node: its place in the fleet's
    // spread.
    let fallback_delay = backoff::fallback_delay(&agent.config.certname, fallback_interval);
    let mut fallback_due = Instant::now() + fallback_delay;
    // Files whose change forces the next poll (`trigger=file_change`).
    let mut forced: Vec<PathBuf> = Vec::new();
    tracing::info!(
        "pvc-agent {} started for {} (bridge {})",
        env!("CARGO_PKG_VERSION"),
        agent.config.certname,
        agent.config.host_endpoint
    );
    loop {
        let changed = std::mem::take(&mut forced);
        let polled = agent.client.poll(&changed).await;
        let wait = match polled {
            Ok(decision) if decision.code == 0 => {
                if backoff.failures() > 0 {
                    tracing::info!("the bridge answers again");
                }
                backoff.reset();
                fallback_due = Instant::now() + fallback_delay;
                log_decision(&decision);
                if !changed.is_empty() && decision.run.is_none() {
                    tracing::info!(
                        "changed: {}; the bridge granted no run now ({})",
                        show_paths(&changed),
                        decision.reason.as_deref().unwrap_or("no reason given")
                    );
                }
                watch.set_paths(&decision.files_monitored);
                agent.drain().await;
                let (run, _) = agent.act(&decision, &changed, Some(&mut watch)).await;
                if agent.stopping {
                    break;
                }
                if let Some(tampered) = run.map(|r| r.tampered).filter(|t| !t.is_empty()) {
                    if limit.try_take(std::time::Instant::now()) {
                        tracing::warn!(
                            "changed by someone else during the run: {}; asking for another run",
                            show_paths(&tampered)
                        );
                        forced = tampered;
                        continue;
                    }
                    tracing::warn!(
                        "changed by someone else during the run: {}; forced-run limit reached, waiting for the regular poll",
                        show_paths(&tampered)
                    );
                }
                backoff::spread(decision.check_interval, CHECK_SPREAD, agent.jitter.sample())
            }
            failed => {
                let delay = backoff.next(agent.jitter.sample());
                match &failed {
                    Ok(decision) => {
                        watch.set_paths(&decision.files_monitored);
                        tracing::warn!(
                            "the bridge answered error {}: {}; asking again in {}s",
                            decision.code,
                            decision.error.as_deref().unwrap_or("no reason given"),
                            delay.as_secs()
                        );
                    }
                    Err(e) => tracing::warn!(
                        "the bridge is unreachable or failing (attempt {}): {e}; retrying in {}s",
                        backoff.failures(),
                        delay.as_secs()
                    ),
                }
                if backoff.failures() == 1 {
                    tracing::info!(
                        "without a decision, Puppet runs on its own in {}s (fallback_delay_ms={}: fallback_interval {}s + {}ms for {})",
                        fallback_due.saturating_duration_since(Instant::now()).as_secs(),
                        fallback_delay.as_millis(),
                        fallback_interval.as_secs(),
                        (fallback_delay - fallback_interval).as_millis(),
                        agent.config.certname
                    );
                }
                if !changed.is_empty() {
                    tracing::warn!(
                        "changed: {}; running Puppet without the bridge",
                        show_paths(&changed)
                    );
                    let tampered = agent.run_alone("file_change", &changed, &mut watch).await;
                    if !tampered.is_empty() && limit.try_take(std::time::Instant::now()) {
                        forced = tampered;
                    }
                } else if Instant::now() >= fallback_due {
                    tracing::warn!(
                        "no decision from the bridge for over {}s: running Puppet on its own",
                        fallback_interval.as_secs()
                    );
                    fallback_due = Instant::now() + fallback_interval;
                    let tampered = agent.run_alone("fallback", &[], &mut watch).await;
                    if !tampered.is_empty() && limit.try_take(std::time::Instant::now()) {
                        forced = tampered;
                    }
                }
                if agent.stopping {
                    break;
                }
                if !forced.is_empty() {
                    continue;
                }
                delay.min(fallback_due.saturating_duration_since(Instant::now()))
            }
        };
        // The wait: the timer, a monitored file, or a signal; nothing else
        // wakes the agent.
        let deadline = Instant::now() + wait;
        let (per_hour, burst) = (
            agent.config.forced_runs_per_hour,
            agent.config.forced_runs_burst,
        );
        let stop = agent.stop.as_mut().expect("signals are handled in run");
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                paths = watch.changed() => {
                    if paths.is_empty() {
                        continue;
                    }
                    if limit.try_take(std::time::Instant::now()) {
                        tracing::info!("changed: {}; asking for a run now", show_paths(&paths));
                        forced = paths;
                        break;
                    }
                    tracing::warn!(
                        "changed: {}; forced-run limit ({} per hour, burst {}) reached, waiting for the regular poll",
                        show_paths(&paths),
                        per_hour,
                        burst
                    );
                }
                () = stop.signalled() => {
                    agent.stopping = true;
                    break;
                }
            }
        }
        if agent.stopping {
            break;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or SIGINT.
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn new() -> anyhow::Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Stop {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn signalled(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = self.int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}

/// A node without its Puppet certificate yet (a fresh install) gets one the
/// Puppet way, `puppet ssl bootstrap`, before it talks to the bridge over
/// TLS. `wait`: the daemon keeps trying (the CA may sign later); `once` and
/// `check` fail instead.
async fn ensure_certificate(config: &AgentConfig, wait: bool) -> anyhow::Result<()> {
    let Some(tls) = &config.tls else {
        return Ok(());
    };
    let present = || tls.cert.is_file() && tls.key.is_file();
    if present() {
        return Ok(());
    }
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    let mut jitter = Jitter::from_entropy();
    loop {
        tracing::info!(
            "no Puppet certificate at {} yet: running puppet ssl bootstrap",
            tls.cert.display()
        );
        let result = puppet::ssl_bootstrap(&config.puppet, config.puppet.run_timeout).await;
        match result {
            Ok(()) if present() => {
                tracing::info!("Puppet certificate in place: {}", tls.cert.display());
                return Ok(());
            }
            Ok(()) => {
                let why = format!(
                    "puppet ssl bootstrap succeeded but {} or {} is still missing \
                     (ssl_cert/ssl_key point elsewhere than Puppet's ssldir?)",
                    tls.cert.display(),
                    tls.key.display()
                );
                if !wait {
                    anyhow::bail!(why);
                }
                tracing::warn!("{why}");
            }
            Err(e) if !wait => return Err(e.context("no Puppet certificate for TLS")),
            Err(e) => tracing::warn!("{e:#}"),
        }
        tokio::time::sleep(backoff.next(jitter.sample())).await;
    }
}

/// What the loop and `once` share.
struct Agent {
    config: AgentConfig,
    client: BridgeClient,
    outbox: Outbox,
    jitter: Jitter,
    /// The last decision's `FACTER_*` flags, for runs without the bridge.
    facter_env: Vec<(String, String)>,
    /// Signals, in `run` only.
    stop: Option<Stop>,
    /// A signal arrived: finish what is under way and exit.
    stopping: bool,
}

impl Agent {
    fn new(config: AgentConfig) -> anyhow::Result<Agent> {
        let client = BridgeClient::new(&config).context("cannot set up the bridge client")?;
        let outbox = Outbox::open(&config.spool_dir, config.spool_max_bytes)?;
        Ok(Agent {
            config,
            client,
            outbox,
            jitter: Jitter::from_entropy(),
            facter_env: Vec::new(),
            stop: None,
            stopping: false,
        })
    }

    async fn drain(&mut self) {
        if self.outbox.pending() > 0 {
            self.outbox.drain(&self.client).await;
        }
    }

    /// Acts on a decision: the granted run, then facts.
    async fn act(
        &mut self,
        decision: &Decision,
        changed: &[PathBuf],
        watch: Option<&mut FileWatch>,
    ) -> (Option<RunSummary>, Option<bool>) {
        self.facter_env.clone_from(&decision.facter_env);
        let mut run = None;
        if let Some(grant) = &decision.run {
            tracing::info!(
                "run granted: {} ({}, trigger {}{})",
                grant.run_id.as_deref().unwrap_or("no run id"),
                grant.mode.as_str(),
                grant.trigger,
                grant
                    .server
                    .as_deref()
                    .map(|s| format!(", server {s}"))
                    .unwrap_or_default()
            );
            let request = RunRequest {
                run_id: grant.run_id.clone(),
                mode: grant.mode,
                trigger: grant.trigger.clone(),
                server: grant.server.clone(),
                facter_env: decision.facter_env.clone(),
                changed_files: if grant.trigger == "file_change" {
                    changed.to_vec()
                } else {
                    Vec::new()
                },
            };
            run = Some(self.run_and_report(&request, watch).await);
        }
        let facts = if decision.fact_run && !self.stopping {
            Some(self.upload_facts().await)
        } else {
            None
        };
        (run, facts)
    }

    /// A run without the bridge (`fallback`, or a file change while it is
    /// unreachable): the servers puppet.conf names, then the cached catalog
    /// if that run could not happen. Returns files tampered with mid-run.
    async fn run_alone(
        &mut self,
        trigger: &str,
        changed: &[PathBuf],
        watch: &mut FileWatch,
    ) -> Vec<PathBuf> {
        let mut request = RunRequest {
            run_id: None,
            mode: RunMode::Full,
            trigger: trigger.to_owned(),
            server: None,
            facter_env: self.facter_env.clone(),
            changed_files: changed.to_vec(),
        };
        let first = self.run_and_report(&request, Some(watch)).await;
        let mut tampered = first.tampered.clone();
        if first.exit_code == Some(EXIT_NOT_RUN) && !first.skipped && !self.stopping {
            tracing::warn!("the run could not compile a catalog: running the cached catalog");
            request.mode = RunMode::CachedCatalog;
            let second = self.run_and_report(&request, Some(watch)).await;
            tampered = second.tampered;
        }
        tampered
    }

    /// Runs Puppet, then reports the run (or keeps the report).
    async fn run_and_report(
        &mut self,
        request: &RunRequest,
        mut watch: Option<&mut FileWatch>,
    ) -> RunSummary {
        if let Some(w) = watch.as_deref_mut() {
            w.run_started();
        }
        let outcome = self.puppet_run(request).await;
        let tampered = match watch {
            Some(w) => w.run_finished(&puppet::written_files(&self.config.puppet)),
            None => Vec::new(),
        };
        log_outcome(request, &outcome);
        let body = puppet::report_body(request, &outcome);
        let report_delivered = self.deliver(OutboxKind::Report, &body).await;
        RunSummary {
            trigger: request.trigger.clone(),
            mode: request.mode,
            exit_code: outcome.exit_code,
            skipped: outcome.skipped.is_some(),
            timed_out: outcome.timed_out,
            report_delivered,
            tampered,
        }
    }

    /// `puppet::run`, letting a signal through: the first one lets the run
    /// finish (Puppet stopped halfway leaves a half-applied catalog), a
    /// second one abandons it.
    async fn puppet_run(&mut self, request: &RunRequest) -> RunOutcome {
        let settings = self.config.puppet.clone();
        let run = puppet::run(&settings, request);
        tokio::pin!(run);
        let Some(stop) = self.stop.as_mut() else {
            return run.await;
        };
        tokio::select! {
            outcome = &mut run => return outcome,
            () = stop.signalled() => {}
        }
        self.stopping = true;
        tracing::info!("letting the Puppet run finish (signal again to abort it)");
        tokio::select! {
            outcome = &mut run => outcome,
            () = stop.signalled() => {
                tracing::warn!("aborting the Puppet run");
                RunOutcome {
                    exit_code: None,
                    started: SystemTime::now(),
                    duration: Duration::ZERO,
                    timed_out: false,
                    skipped: None,
                    summary: None,
                    cached_catalog_status: None,
                    log_tail: "aborted: pvc-agent was stopped".into(),
                }
            }
        }
    }

    /// facter → `/facts`, or the outbox. Whether the bridge took them.
    async fn upload_facts(&mut self) -> bool {
        match puppet::facts(&self.config.puppet, self.config.puppet.run_timeout).await {
            Ok(body) => self.deliver(OutboxKind::Facts, &body).await,
            Err(e) => {
                tracing::warn!("facts not uploaded: {e:#}");
                false
            }
        }
    }

    /// Sends an item, or keeps it in the outbox when the bridge cannot take
    /// it now. Behind items already waiting, so the bridge sees them in
    /// order (older facts must never overwrite newer ones).
    async fn deliver(&mut self, kind: OutboxKind, body: &[u8]) -> bool {
        let what = match kind {
            OutboxKind::Report => "report",
            OutboxKind::Facts => "facts",
        };
        if self.outbox.pending() == 0 {
            let sent = match kind {
                OutboxKind::Report => self.client.post_report(body).await,
                OutboxKind::Facts => self.client.post_facts(body).await,
            };
            match sent {
                Ok(()) => {
                    tracing::info!("{what} uploaded");
                    return true;
                }
                Err(e) if refused(&e) => {
                    tracing::warn!("the bridge refused the {what}: {e}");
                    return false;
                }
                Err(e) => tracing::warn!("{what} not delivered, kept for later: {e}"),
            }
        }
        if let Err(e) = self.outbox.push(kind, body) {
            tracing::warn!("{what} lost: {e:#}");
            return false;
        }
        self.outbox.drain(&self.client).await;
        false
    }
}

/// The bridge refuses the item itself: keeping it would not help.
fn refused(e: &ClientError) -> bool {
    matches!(e, ClientError::Status { status, .. } if (400..500).contains(status)) && !e.retryable()
}

fn log_decision(decision: &Decision) {
    if decision.code != 0 {
        tracing::warn!(
            "the bridge answered error {}: {}",
            decision.code,
            decision.error.as_deref().unwrap_or("no reason given")
        );
    } else if decision.run.is_none() {
        tracing::debug!(
            "no run ({}); next poll in about {}s",
            decision.reason.as_deref().unwrap_or("no reason given"),
            decision.check_interval.as_secs()
        );
    }
}

fn log_outcome(request: &RunRequest, outcome: &RunOutcome) {
    let what = format!(
        "Puppet run ({}, trigger {})",
        request.mode.as_str(),
        request.trigger
    );
    if let Some(skipped) = &outcome.skipped {
        tracing::warn!("{what} did not happen: {skipped:?}");
    } else if outcome.timed_out {
        tracing::warn!(
            "{what} killed after {}s (run_timeout)",
            outcome.duration.as_secs()
        );
    } else {
        match outcome.exit_code {
            Some(code @ (0 | 2)) => tracing::info!(
                "{what} finished in {:.1}s, exit code {code}",
                outcome.duration.as_secs_f64()
            ),
            code => tracing::warn!(
                "{what} finished in {:.1}s, exit code {}",
                outcome.duration.as_secs_f64(),
                code.map_or("none".to_owned(), |c| c.to_string())
            ),
        }
    }
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
