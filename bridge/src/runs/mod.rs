//! The run-decision service: the pure scheduler behind a mutex, the host
//! directory in memory, leases on the primary, and the background loops
//! that keep them current. A poll that is not granted touches no database;
//! a grant is one round trip to the primary (`pvc.grant`). Reports go
//! through the uploads (`writes::Uploads`): stored, or spooled while the
//! primary is unreachable, and the scheduler learns the run ended either way.

mod answer;
mod report;

pub use answer::{refusal, render, PROTOCOL, PROTOCOL_HEADER};
pub use report::{parse_report, ReportInput, ReportParseError};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::certname::Certname;
use crate::config::SchedulerSettings;
use crate::hosts::{self, FlagConfig, HostDirectory, HostInfo};
use crate::schedule::{
    Decision, Grant, HostIx, Poll, Refusal, RunMode, Scheduler, ServerSample, ServerSpec, Trigger,
    Ts,
};
use crate::store::{pvc, runs as feed, Db};
use crate::writes::{StoreFailure, Stored, Uploads};

/// Errors of the run service that a client sees.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no host named {0} in Foreman")]
    UnknownHost(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    BadRequest(String),
}

/// What a poll answers, before rendering.
#[derive(Debug, Clone)]
pub struct PollAnswer {
    pub decision: Decision,
    pub run_id: Option<String>,
    pub info: Arc<HostInfo>,
    pub check_interval: u32,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Hosts read again one by one for the change feed.
    pub hosts_reloaded: AtomicU64,
    pub polls: AtomicU64,
    pub polls_file_change: AtomicU64,
    /// Polls by the agent protocol they declared: none (the original
    /// agent), this bridge's, an older or a newer one.
    pub polls_protocol: [AtomicU64; 4],
    pub unknown_hosts: AtomicU64,
    pub granted_schedule: AtomicU64,
    pub granted_file_change: AtomicU64,
    pub granted_converge: AtomicU64,
    pub granted_cached_catalog: AtomicU64,
    pub refused_no_budget: AtomicU64,
    pub refused_in_progress: AtomicU64,
    pub refused_too_soon: AtomicU64,
    pub grant_errors: AtomicU64,
    pub forced_over_budget: AtomicU64,
    pub reports: AtomicU64,
    pub reports_stale: AtomicU64,
    pub status_failures: AtomicU64,
    pub ppm_pushes: AtomicU64,
    pub directory_loads: AtomicU64,
    /// Runs started per minute and report outcomes, for the status page.
    pub recorder: crate::stats::Recorder,
}

/// The database clock, as an offset from this machine's.
#[derive(Debug, Default)]
struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    fn now(&self) -> Ts {
        let local = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ts(local + self.offset_ms.load(Ordering::Relaxed))
    }
    fn set(&self, db_now: Ts, sent: Ts, received: Ts) {
        let local_mid = (sent.0 + received.0) / 2;
        self.offset_ms
            .store(db_now.0 - local_mid, Ordering::Relaxed);
    }
    fn local(&self) -> Ts {
        Ts(self.now().0 - self.offset_ms.load(Ordering::Relaxed))
    }
}

/// A converge request as the management API takes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConvergeRequest {
    #[serde(default)]
    pub certnames: Vec<String>,
    pub hostgroup: Option<String>,
    pub environment: Option<String>,
    /// All hosts must have run within this many seconds.
    pub within_secs: f64,
}

/// Run ids this process granted recently, so the lease feed does not count
/// them twice.
#[derive(Default)]
struct OwnRuns {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl OwnRuns {
    const KEEP: usize = 100_000;
    fn insert(&mut self, run_id: String) {
        if self.set.insert(run_id.clone()) {
            self.order.push_back(run_id);
        }
        while self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// A host read again for the change feed: the WAL position it was read at,
/// and what was found (`None`: no such host any more).
type Reloaded = (u64, Option<Arc<HostInfo>>);

pub struct RunService {
    db: Arc<Db>,
    /// Stores reports, or spools them while the primary is unreachable.
    uploads: Arc<Uploads>,
    settings: SchedulerSettings,
    flags: FlagConfig,
    scheduler: Mutex<Scheduler>,
    directory: RwLock<Arc<HostDirectory>>,
    /// Hosts found one by one since the last directory load.
    extra: RwLock<HashMap<String, Arc<HostInfo>>>,
    /// Hosts the change feed showed changed since the directory was built,
    /// by certname and by name: read again (`None`: gone), with the WAL
    /// position they were read at. Looked up before the directory.
    changed_hosts: RwLock<HashMap<String, Reloaded>>,
    own_runs: Mutex<OwnRuns>,
    /// Foreman's tables when the directory was built, and refreshes since.
    fingerprint: Mutex<(String, u32)>,
    /// Other processes' run ids already applied (the feed overlaps).
    foreign_runs: Mutex<OwnRuns>,
    clock: Clock,
    loaded: AtomicBool,
    /// The change feed saw a change of the directory's tables at this WAL
    /// position (0: none pending): rebuild from a server past it.
    directory_gate: std::sync::atomic::AtomicU64,
    directory_wake: tokio::sync::Notify,
    pub stats: RunStats,
}

impl RunService {
    pub fn new(
        db: Arc<Db>,
        settings: &SchedulerSettings,
        uploads: Arc<Uploads>,
    ) -> Arc<RunService> {
        let clock = Clock::default();
        let servers = settings
            .servers
            .iter()
            .map(|s| ServerSpec {
                name: s.name.clone(),
                pool: s.pool.clone(),
                jrubies: s.jrubies,
                monitored: s.status_url.is_some() || s.pushed,
            })
            .collect();
        let scheduler = Scheduler::new(settings.config.clone(), servers, clock.now());
        Arc::new(RunService {
            db,
            uploads,
            settings: settings.clone(),
            flags: FlagConfig {
                prefix: settings.flag_prefix.clone(),
                default_pool: settings.default_pool.clone(),
            },
            scheduler: Mutex::new(scheduler),
            directory: RwLock::new(Arc::new(HostDirectory::default())),
            directory_gate: std::sync::atomic::AtomicU64::new(0),
            directory_wake: tokio::sync::Notify::new(),
            extra: RwLock::new(HashMap::new()),
            changed_hosts: RwLock::new(HashMap::new()),
            own_runs: Mutex::new(OwnRuns::default()),
            fingerprint: Mutex::new((String::new(), 0)),
            foreign_runs: Mutex::new(OwnRuns::default()),
            clock,
            loaded: AtomicBool::new(false),
            stats: RunStats::default(),
        })
    }

    /// The pool a host runs in: its own (`pvc_server_pool` or location)
    /// when a server serves it, else the default pool — a location without
    /// servers of its own must not leave its hosts without runs.
    fn pool_of<'a>(&'a self, info: &'a HostInfo) -> &'a str {
        if self.settings.servers.iter().any(|s| s.pool == *info.pool) {
            &info.pool
        } else {
            &self.settings.default_pool
        }
    }

    fn scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        // A panic elsewhere must not take every poll down with it.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest request body accepted (`scheduler.max_report_bytes`).
    pub fn max_report_bytes(&self) -> usize {
        self.settings.max_report_bytes
    }

    pub fn now(&self) -> Ts {
        self.clock.now()
    }

    /// The host directory has been loaded once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }

    pub fn scheduler_stats(&self) -> crate::schedule::SchedulerStats {
        self.scheduler().stats()
    }

    /// Every host's certname, pool and last full run.
    pub fn host_runs(&self) -> Vec<(Arc<str>, Arc<str>, Option<Ts>)> {
        self.scheduler().host_runs()
    }

    /// The hostgroup title of each of `certnames`, from the hosts held in
    /// memory (as `/host` finds them, without its query for hosts it does
    /// not hold): for the status page.
    pub fn hostgroups_of<'a>(
        &self,
        certnames: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Option<Arc<str>>> {
        certnames
            .into_iter()
            .map(|certname| {
                self.held(certname)
                    .flatten()
                    .and_then(|info| info.hostgroup.clone())
            })
            .collect()
    }

    /// Converge requests not yet done, as this process tracks them.
    pub fn open_converges(&self) -> Vec<crate::schedule::ConvergeStatus> {
        self.scheduler().open_converges()
    }

    /// The scheduler's settings (`[scheduler]`).
    pub fn scheduler_config(&self) -> &crate::schedule::SchedulerConfig {
        &self.settings.config
    }

    pub fn host_count(&self) -> usize {
        self.directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Starts the background loops (tick, directory, lease feed, converges,
    /// expiry, clock, status polling). Call once, inside a tokio runtime.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut short: HashSet<String> = HashSet::new();
            loop {
                every.tick().await;
                let now = this.now();
                let pools = {
                    let mut scheduler = this.scheduler();
                    scheduler.tick(now);
                    scheduler.stats().pools
                };
                // Say so when the fleet needs more than the servers give
                // (and when that ends), once per change.
                for pool in pools {
                    let name = pool.name.to_string();
                    if pool.shortage && pool.hosts > 0 && short.insert(name.clone()) {
                        tracing::warn!(pool = %name, hosts = pool.hosts, cycle_secs = pool.cycle_secs.round(), max_interval_secs = this.settings.config.max_interval, rate = pool.rate, "capacity shortage: every host of the pool runs less often than max_interval");
                    } else if !pool.shortage && short.remove(&name) {
                        tracing::info!(pool = %name, cycle_secs = pool.cycle_secs.round(), "capacity shortage over");
                    }
                }
            }
        });
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(error) = this.sync_clock().await {
                    tracing::warn!(error = %format!("{error:#}"), "cannot read the database clock");
                }
                let gate = this.directory_gate.swap(0, Ordering::AcqRel);
                let refreshed = if gate > 0 {
                    this.refresh_directory_after(gate).await
                } else {
                    this.refresh_if_changed().await
                };
                if let Err(error) = refreshed {
                    if gate > 0 {
                        // Keep the change for the next round.
                        this.directory_gate.fetch_max(gate, Ordering::AcqRel);
                    }
                    tracing::warn!(error = %format!("{error:#}"), "host directory refresh failed; keeping the previous one");
                }
                // A change wakes the loop early, but rebuilds are spaced by
                // `changes.directory_min_interval_ms` (a 100K-host rebuild
                // costs about a second of CPU).
                let min_gap = this.settings.directory_min_interval;
                tokio::select! {
                    _ = tokio::time::sleep(this.settings.hosts_refresh) => {}
                    _ = this.directory_wake.notified() => {
                        tokio::time::sleep(min_gap).await;
                    }
                }
            }
        });
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // From max_interval back: after a restart every host that ran
            // recently is known, so none waits a whole extra cycle.
            let mut seen_granted = this.now().plus(-this.settings.config.max_interval);
            let mut seen_ended = this.now();
            let mut last_expiry = this.now();
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                // Leases name certnames: follow them once hosts are known.
                if !this.is_loaded() {
                    continue;
                }
                match this.follow_leases(seen_granted, seen_ended).await {
                    Ok((g, e)) => {
                        seen_granted = g;
                        seen_ended = e;
                    }
                    Err(error) => {
                        tracing::debug!(error = %format!("{error:#}"), "lease feed unavailable")
                    }
                }
                if this.now().since(last_expiry) >= 30.0 {
                    last_expiry = this.now();
                    if let Err(error) = this.expire().await {
                        tracing::debug!(error = %format!("{error:#}"), "lease expiry failed");
                    }
                }
            }
        });
        let targets: Vec<crate::servers::StatusTarget> = self
            .settings
            .servers
            .iter()
            .filter_map(|s| {
                s.status_url
                    .as_ref()
                    .map(|url| crate::servers::StatusTarget {
                        name: s.name.clone(),
                        base_url: url.clone(),
                    })
            })
            .collect();
        if !targets.is_empty() {
            let tls = self
                .settings
                .status_ca_file
                .as_ref()
                .map(|ca| crate::servers::TlsFiles {
                    ca_file: ca.clone(),
                    cert_file: self.settings.status_cert_file.clone(),
                    key_file: self.settings.status_key_file.clone(),
                });
            let this = Arc::clone(self);
            let sink = Arc::new(move |name: &str, result: crate::servers::PollResult| {
                let now = this.now();
                match result {
                    crate::servers::PollResult::Ok(sample) => {
                        this.scheduler().observe(name, &sample, now)
                    }
                    crate::servers::PollResult::Failed(_) => {
                        this.stats.status_failures.fetch_add(1, Ordering::Relaxed);
                        this.scheduler().observe_failure(name, now)
                    }
                }
            });
            crate::servers::spawn(
                targets,
                tls,
                self.settings.status_poll,
                self.settings.status_timeout,
                sink,
            )?;
        }
        Ok(())
    }

    async fn sync_clock(&self) -> anyhow::Result<()> {
        let client = self.db.write().await?;
        let sent = self.clock.local();
        let db_now = pvc::db_now(&client).await?;
        let received = self.clock.local();
        self.clock.set(db_now, sent, received);
        Ok(())
    }

    /// The change feed saw a change of a table the directory is built from
    /// at WAL position `position`: the directory is rebuilt soon, from a
    /// server that has replayed it.
    pub fn directory_changed(&self, position: u64) {
        self.directory_gate.fetch_max(position, Ordering::AcqRel);
        self.directory_wake.notify_one();
    }

    /// The change feed saw rows of these hosts change (by Foreman id and by
    /// name) at WAL position `position`: each is read again from a server
    /// that has replayed it, in the background, instead of the whole
    /// directory.
    pub fn hosts_changed(self: &Arc<Self>, ids: Vec<i64>, names: Vec<String>, position: u64) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = this.reload_hosts(&ids, names, position).await {
                tracing::warn!(error = %format!("{error:#}"), "reading changed hosts failed; the directory is rebuilt instead");
                this.directory_changed(position);
            }
        });
    }

    async fn reload_hosts(
        &self,
        ids: &[i64],
        mut names: Vec<String>,
        position: u64,
    ) -> anyhow::Result<()> {
        {
            let directory = Arc::clone(&self.directory.read().unwrap_or_else(|e| e.into_inner()));
            names.extend(
                ids.iter()
                    .filter_map(|id| directory.by_id(*id))
                    .map(|info| info.certname.to_string()),
            );
            let known = |info: &Arc<HostInfo>| ids.contains(&info.id);
            let extra = self.extra.read().unwrap_or_else(|e| e.into_inner());
            names.extend(
                extra
                    .values()
                    .filter(|i| known(i))
                    .map(|i| i.certname.to_string()),
            );
            let changed = self.changed_hosts.read().unwrap_or_else(|e| e.into_inner());
            names.extend(
                changed
                    .values()
                    .filter_map(|(_, info)| info.as_ref().filter(|i| known(i)))
                    .map(|i| i.certname.to_string()),
            );
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(());
        }
        let lsn = crate::store::health::format_lsn(position);
        let (client, _) = self.db.read_after(&lsn).await?;
        let read_at = crate::store::foreman::read_position(&client).await?;
        for name in names {
            let info = hosts::load_host(&client, &self.flags, &name)
                .await?
                .map(Arc::new);
            {
                let mut scheduler = self.scheduler();
                match &info {
                    Some(info) => {
                        scheduler.upsert_host(info.certname.as_str(), self.pool_of(info));
                    }
                    None => {
                        if let Some(ix) = scheduler.host_ix(&name) {
                            scheduler.retire(ix);
                        }
                    }
                }
            }
            // Counted before it is visible, so whoever sees the new answer
            // also sees the count.
            self.stats.hosts_reloaded.fetch_add(1, Ordering::Relaxed);
            let mut changed = self
                .changed_hosts
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let certname = info.as_ref().map(|i| i.certname.to_string());
            for key in std::iter::once(name).chain(certname) {
                let entry = changed.entry(key).or_insert((0, None));
                // Two reloads may finish out of order: the newer read wins.
                if entry.0 <= read_at {
                    *entry = (read_at, info.clone());
                }
            }
        }
        Ok(())
    }

    async fn refresh_directory_after(&self, position: u64) -> anyhow::Result<()> {
        let lsn = crate::store::health::format_lsn(position);
        let (client, _) = self.db.read_after(&lsn).await?;
        let fingerprint = crate::store::host_params::fingerprint(&client).await?;
        self.load_directory(&client, fingerprint).await?;
        self.refresh_converges().await
    }

    /// Re-reads every host's scheduling facts from a replica.
    pub async fn refresh_directory(&self) -> anyhow::Result<()> {
        let (client, _) = self.db.read().await?;
        let fingerprint = crate::store::host_params::fingerprint(&client).await?;
        self.load_directory(&client, fingerprint).await?;
        self.refresh_converges().await
    }

    /// Rebuilds the directory unless Foreman's tables are unchanged since
    /// the last build (a 100K-host build costs about a second of CPU); every
    /// `FULL_RELOAD_EVERY` refreshes it is rebuilt anyway.
    async fn refresh_if_changed(&self) -> anyhow::Result<()> {
        const FULL_RELOAD_EVERY: u32 = 10;
        let (client, _) = self.db.read().await?;
        let fingerprint = crate::store::host_params::fingerprint(&client).await?;
        let unchanged = {
            let mut last = self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
            last.1 += 1;
            last.0 == fingerprint && last.1 < FULL_RELOAD_EVERY
        };
        if !unchanged {
            self.load_directory(&client, fingerprint).await?;
        }
        self.refresh_converges().await
    }

    async fn load_directory(
        &self,
        client: &deadpool_postgres::Object,
        fingerprint: String,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let read_at = crate::store::foreman::read_position(client).await?;
        let (directory, report) = hosts::load_directory(client, &self.flags).await?;
        // Polls wait on the scheduler's lock: update it in slices, never
        // 100K hosts at once.
        const SLICE: usize = 2_000;
        let infos: Vec<&Arc<HostInfo>> = directory.iter().collect();
        for slice in infos.chunks(SLICE) {
            let mut scheduler = self.scheduler();
            for info in slice {
                scheduler.upsert_host(info.certname.as_str(), self.pool_of(info));
            }
        }
        let mut retired = 0;
        let known = self.scheduler().host_count();
        for start in (0..known).step_by(SLICE) {
            let mut scheduler = self.scheduler();
            for ix in start..(start + SLICE).min(known) {
                let ix = ix as HostIx;
                if directory.get(scheduler.certname(ix)).is_none() && scheduler.retire(ix) {
                    retired += 1;
                }
            }
        }
        // Hand speeds follow the new host counts at once.
        self.scheduler().tick(self.clock.now());
        if retired > 0 {
            tracing::info!(retired, "hosts gone from Foreman no longer scheduled");
        }
        tracing::debug!(
            hosts = directory.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            ?report,
            "host directory loaded"
        );
        let old = std::mem::replace(
            &mut *self.directory.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(directory),
        );
        // Freeing 100K entries takes tens of milliseconds: not under the
        // lock every poll reads.
        drop(old);
        let old_extra = std::mem::take(&mut *self.extra.write().unwrap_or_else(|e| e.into_inner()));
        drop(old_extra);
        // Hosts read again after this build's data stay; older ones are in it.
        self.changed_hosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (at, _)| *at > read_at);
        self.loaded.store(true, Ordering::Relaxed);
        *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = (fingerprint, 0);
        self.stats.directory_loads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn refresh_converges(&self) -> anyhow::Result<()> {
        let (client, _) = self.db.read().await?;
        let rows = pvc::active_converges(&client).await?;
        let mut scheduler = self.scheduler();
        for row in rows {
            let hosts: Vec<HostIx> = row
                .hosts
                .iter()
                .filter_map(|c| scheduler.host_ix(c))
                .collect();
            let within = row.deadline.since(row.created);
            scheduler.add_converge(row.id as u64, row.created, within, &hosts);
        }
        Ok(())
    }

    /// Grants and ends other bridge processes recorded since last time.
    async fn follow_leases(&self, granted_after: Ts, ended_after: Ts) -> anyhow::Result<(Ts, Ts)> {
        let (client, _) = self.db.read().await?;
        // Overlap a little: a transaction may commit after a later one.
        let granted = pvc::leases_since(&client, granted_after.plus(-5.0), 10_000).await?;
        let ended = feed::leases_ended_since(&client, ended_after.plus(-5.0), 10_000).await?;
        let mut last_granted = granted_after;
        let mut last_ended = ended_after;
        let own = self.own_runs.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        let mut scheduler = self.scheduler();
        let mut foreign = self.foreign_runs.lock().unwrap_or_else(|e| e.into_inner());
        for lease in &granted {
            last_granted = last_granted.max(lease.granted);
            if own.set.contains(&lease.run_id) || foreign.set.contains(&lease.run_id) {
                continue;
            }
            foreign.insert(lease.run_id.clone());
            self.stats.recorder.run_started(
                &lease.server,
                trigger_of(&lease.trigger),
                lease.granted,
            );
            let Some(ix) = scheduler.host_ix(&lease.certname) else {
                continue;
            };
            let trigger = trigger_of(&lease.trigger);
            let full = lease.mode == "full";
            if lease.ended.is_none() && lease.expires > now {
                scheduler.granted_elsewhere(lease.granted, ix, &lease.server, trigger, full);
            } else {
                scheduler.ran_at(lease.granted, ix, trigger, full);
            }
        }
        for lease in &ended {
            last_ended = last_ended.max(lease.ended);
            if let Some(ix) = scheduler.host_ix(&lease.certname) {
                scheduler.finished(lease.ended, ix);
            }
        }
        Ok((last_granted, last_ended))
    }

    async fn expire(&self) -> anyhow::Result<()> {
        let client = self.db.write().await?;
        let n = pvc::expire_leases(&client).await?;
        if n > 0 {
            tracing::info!(expired = n, "leases expired without a report");
        }
        Ok(())
    }

    /// A host as held in memory: read again since the directory was built
    /// (`Some(None)`: it was deleted), in the directory, or found one by one
    /// since. `None`: not held. Takes one lock at a time (every `/host`
    /// poll comes through here).
    fn held(&self, certname: &str) -> Option<Option<Arc<HostInfo>>> {
        if let Some((_, info)) = self
            .changed_hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(certname)
        {
            return Some(info.clone());
        }
        if let Some(info) = self
            .directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(certname)
        {
            return Some(Some(info));
        }
        self.extra
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(certname)
            .map(|info| Some(Arc::clone(info)))
    }

    /// Finds a host: in memory, then (for hosts added since the last
    /// load) one query on a replica.
    async fn host(&self, certname: &Certname) -> Result<Arc<HostInfo>, RunError> {
        if let Some(held) = self.held(certname.as_str()) {
            return held.ok_or_else(|| RunError::UnknownHost(certname.to_string()));
        }
        let (client, _) = self
            .db
            .read()
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let info = hosts::load_host(&client, &self.flags, certname.as_str())
            .await
            .map_err(|e| RunError::Unavailable(format!("{e:#}")))?
            .ok_or_else(|| RunError::UnknownHost(certname.to_string()))?;
        let info = Arc::new(info);
        self.scheduler()
            .upsert_host(info.certname.as_str(), self.pool_of(&info));
        self.extra
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(certname.to_string(), Arc::clone(&info));
        Ok(info)
    }

    /// Decides one poll; a grant becomes a lease on the primary.
    pub async fn poll(&self, certname: &Certname, poll: Poll) -> Result<PollAnswer, RunError> {
        self.stats.polls.fetch_add(1, Ordering::Relaxed);
        if poll == Poll::FileChange {
            self.stats.polls_file_change.fetch_add(1, Ordering::Relaxed);
        }
        let info = match self.host(certname).await {
            Ok(info) => info,
            Err(e) => {
                if matches!(e, RunError::UnknownHost(_)) {
                    self.stats.unknown_hosts.fetch_add(1, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        let now = self.now();
        let (ix, mut decision) = {
            let mut scheduler = self.scheduler();
            let ix = match scheduler.host_ix(info.certname.as_str()) {
                Some(ix) => ix,
                None => scheduler.upsert_host(info.certname.as_str(), self.pool_of(&info)),
            };
            (ix, scheduler.poll(now, ix, poll))
        };
        if decision.over_forced_budget {
            self.stats
                .forced_over_budget
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(certname = %certname, "file-change run over the host's forced-run budget: queued like any run");
        }
        let mut run_id = None;
        if let Some(grant) = decision.run.clone() {
            match self.lease(&info, &grant).await {
                Ok(pvc::GrantOutcome::Granted { run_id: id, .. }) => {
                    self.count_grant(&grant);
                    self.own_runs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone());
                    run_id = Some(id);
                }
                Ok(outcome) => {
                    let refusal = match outcome {
                        pvc::GrantOutcome::NoBudget => {
                            self.stats.refused_no_budget.fetch_add(1, Ordering::Relaxed);
                            Refusal::NoBudget
                        }
                        pvc::GrantOutcome::InProgress { expires, .. } => {
                            self.stats
                                .refused_in_progress
                                .fetch_add(1, Ordering::Relaxed);
                            Refusal::InProgress { until: expires }
                        }
                        _ => {
                            self.stats.refused_too_soon.fetch_add(1, Ordering::Relaxed);
                            Refusal::TooSoon
                        }
                    };
                    self.scheduler().refused(ix, &grant, refusal);
                    decision.run = None;
                    decision.reason = match refusal {
                        Refusal::NoBudget => crate::schedule::Reason::NoCapacity,
                        _ => crate::schedule::Reason::RunInProgress,
                    };
                }
                Err(error) if grant.trigger == Trigger::FileChange => {
                    // A tampered file is fixed even while the primary is
                    // down: the run goes ahead without a lease.
                    self.stats.grant_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(certname = %certname, %error, "primary unavailable: forced run granted without a lease");
                    self.count_grant(&grant);
                }
                Err(error) => {
                    self.stats.grant_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(certname = %certname, %error, "primary unavailable: run not granted");
                    self.scheduler().refused(ix, &grant, Refusal::NoBudget);
                    decision.run = None;
                    decision.reason = crate::schedule::Reason::NoCapacity;
                }
            }
        }
        let config = &self.settings.config;
        let wanted =
            info.check_interval
                .map(f64::from)
                .unwrap_or(config.check_interval)
                .clamp(config.min_check_interval, config.max_check_interval) as u32;
        let check_interval = decision.check_interval.min(wanted);
        Ok(PollAnswer {
            decision,
            run_id,
            info,
            check_interval,
        })
    }

    fn count_grant(&self, grant: &Grant) {
        let counter = match grant.trigger {
            Trigger::Schedule => &self.stats.granted_schedule,
            Trigger::FileChange => &self.stats.granted_file_change,
            Trigger::Converge => &self.stats.granted_converge,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats
            .recorder
            .run_started(&grant.server, grant.trigger, self.now());
        if grant.mode == RunMode::CachedCatalog {
            self.stats
                .granted_cached_catalog
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn lease(&self, info: &HostInfo, grant: &Grant) -> anyhow::Result<pvc::GrantOutcome> {
        let client = self.db.write().await?;
        let config = &self.settings.config;
        let request = pvc::GrantRequest {
            certname: info.certname.as_str(),
            server: &grant.server,
            trigger: grant.trigger.as_str(),
            mode: grant.mode.as_str(),
            rate: grant.rate,
            burst: grant.burst,
            min_tokens: if grant.overdraft {
                1.0 - grant.burst
            } else {
                1.0
            },
            lease_secs: config.lease_secs,
            min_gap_secs: config.min_interval / 2.0,
        };
        Ok(pvc::grant(&client, &request).await?)
    }

    /// Stores a report and ends its lease; while the primary is
    /// unreachable, spools it (the lease ends when it is replayed, as of
    /// now). Either way the host's run is over for the scheduler.
    pub async fn report(
        &self,
        certname: &Certname,
        input: &ReportInput,
    ) -> Result<Stored<pvc::ReportStored>, RunError> {
        let info = self.host(certname).await?;
        let stored = self
            .uploads
            .store_agent_report(info.certname.as_str(), input, self.now())
            .await
            .map_err(|e| match e {
                StoreFailure::Refused(pvc::PvcError::Invalid(m)) => RunError::BadRequest(m),
                other => RunError::Unavailable(other.to_string()),
            })?;
        self.stats.reports.fetch_add(1, Ordering::Relaxed);
        self.stats
            .recorder
            .reported(info.certname.as_str(), self.now(), input.exit_code);
        if let Stored::Stored(stored) = &stored {
            if stored.lease != pvc::LeaseState::Released {
                self.stats.reports_stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = self.now();
        let mut scheduler = self.scheduler();
        if let Some(ix) = scheduler.host_ix(info.certname.as_str()) {
            // Exit code 1: the run could not happen (agent disabled, lock
            // held, catalog failed): the host is due again, once.
            if input.exit_code == Some(1) {
                scheduler.failed(now, ix);
            } else {
                scheduler.finished(now, ix);
            }
        }
        Ok(stored)
    }

    /// The original pvc capacity push.
    pub fn push_status(&self, server: &str, sample: &ServerSample) -> Result<(), RunError> {
        let now = self.now();
        let mut scheduler = self.scheduler();
        if !scheduler.has_server(server) {
            return Err(RunError::BadRequest(format!(
                "{server} is not a configured puppetserver (scheduler.servers)"
            )));
        }
        scheduler.observe(server, sample, now);
        self.stats.ppm_pushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Records and starts a converge request.
    pub async fn converge(&self, request: &ConvergeRequest) -> Result<serde_json::Value, RunError> {
        if !(request.within_secs.is_finite() && request.within_secs > 0.0) {
            return Err(RunError::BadRequest(
                "within_secs: must be a positive number".into(),
            ));
        }
        let unavailable = |e: anyhow::Error| RunError::Unavailable(format!("{e:#}"));
        let mut wanted: Vec<String> = Vec::new();
        for name in &request.certnames {
            let certname: Certname = name
                .parse()
                .map_err(|e| RunError::BadRequest(format!("certnames: {name:?}: {e}")))?;
            wanted.push(certname.to_string());
        }
        {
            let (client, _) = self.db.read().await.map_err(|e| unavailable(e.into()))?;
            if let Some(title) = &request.hostgroup {
                wanted.extend(
                    feed::hosts_in_hostgroup(&client, title)
                        .await
                        .map_err(unavailable)?,
                );
            }
            if let Some(name) = &request.environment {
                wanted.extend(
                    feed::hosts_in_environment(&client, name)
                        .await
                        .map_err(unavailable)?,
                );
            }
        }
        if request.certnames.is_empty()
            && request.hostgroup.is_none()
            && request.environment.is_none()
        {
            return Err(RunError::BadRequest(
                "name hosts with certnames, hostgroup or environment".into(),
            ));
        }
        wanted.sort();
        wanted.dedup();
        let (known, unknown): (Vec<String>, Vec<String>) = {
            let scheduler = self.scheduler();
            wanted
                .into_iter()
                .partition(|c| scheduler.host_ix(c).is_some())
        };
        let spec = serde_json::to_value(request).unwrap_or_default();
        let client = self.db.write().await.map_err(|e| unavailable(e.into()))?;
        let row = pvc::create_converge(&client, &known, request.within_secs, &spec)
            .await
            .map_err(|e| unavailable(e.into()))?;
        let status = {
            let mut scheduler = self.scheduler();
            let hosts: Vec<HostIx> = known.iter().filter_map(|c| scheduler.host_ix(c)).collect();
            scheduler.add_converge(row.id as u64, row.created, request.within_secs, &hosts);
            scheduler.converge_status(row.id as u64)
        };
        Ok(serde_json::json!({
            "id": row.id,
            "hosts": known.len(),
            "unknown_hosts": unknown,
            "created_ms": row.created.0,
            "deadline_ms": row.deadline.0,
            "estimated_finish_ms": status.map(|s| s.estimated_finish.0),
        }))
    }

    /// Progress of a converge request, from the database (every bridge
    /// process's grants and reports).
    pub async fn converge_progress(&self, id: i64) -> Result<Option<serde_json::Value>, RunError> {
        let client = self
            .db
            .write()
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let progress = pvc::converge_progress(&client, id)
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let local = self.scheduler().converge_status(id as u64);
        Ok(progress.map(|p| {
            serde_json::json!({
                "id": id,
                "hosts": p.hosts,
                "started": p.started,
                "finished": p.finished,
                "failed": p.failed,
                "done": p.done_at.is_some(),
                "done_at_ms": p.done_at.map(|t| t.0),
                "deadline_ms": local.as_ref().map(|s| s.deadline.0),
                "estimated_finish_ms": local.as_ref().map(|s| s.estimated_finish.0),
            })
        }))
    }

    /// Why this host gets this decision now.
    pub async fn explain(&self, certname: &Certname) -> Result<serde_json::Value, RunError> {
        let info = self.host(certname).await?;
        let now = self.now();
        let scheduler = self.scheduler();
        let ix = scheduler
            .host_ix(info.certname.as_str())
            .ok_or_else(|| RunError::UnknownHost(certname.to_string()))?;
        let explanation = scheduler.explain(now, ix);
        let config = scheduler.config().clone();
        drop(scheduler);
        Ok(serde_json::json!({
            "now_ms": now.0,
            "host": {
                "certname": info.certname.as_str(),
                "foreman_id": info.id,
                "pool": &*info.pool,
                "runs_in_pool": self.pool_of(&info),
                "flags": info.flags.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect::<HashMap<_, _>>(),
                "files_monitored": info.files_monitored,
                "check_interval": info.check_interval,
            },
            "schedule": explanation,
            "config": config,
        }))
    }
}

/// A lease's trigger as stored.
fn trigger_of(stored: &str) -> Trigger {
    match stored {
        "schedule" => Trigger::Schedule,
        "converge" => Trigger::Converge,
        _ => Trigger::FileChange,
    }
}
