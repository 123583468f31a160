//! The scheduler: hosts in pools, a sweeping hand per pool, servers with
//! token buckets, forced runs and converge requests.
//!
//! Each pool has a *hand* that sweeps phase space [0, 1) once per cycle; a
//! host is due when the hand has passed its phase since its last scheduled
//! run. The hand's speed is the pool's admissible run rate divided by its
//! host count (clamped to `min_interval`), so due times arrive at exactly the
//! rate the servers can take: free capacity shortens the cycle, shortage
//! stretches it, evenly for every host.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{ServerSample, Ts};

/// A host's index in the scheduler: stable for the scheduler's life.
pub type HostIx = u32;

/// A converge request's id.
pub type ConvergeId = u64;

#[derive(Debug, Clone, Serialize)]
pub struct SchedulerConfig {
    /// Wanted time between runs of a host, seconds.
    pub target_period: f64,
    /// Free capacity never runs a host more often than this.
    pub min_interval: f64,
    /// While capacity exists, no host waits longer than this.
    pub max_interval: f64,
    /// JRuby utilisation to aim for, 0..1.
    pub target_utilization: f64,
    /// JRuby-seconds one run costs, until measured.
    pub run_cost: f64,
    /// A lease not ended by a report expires after this, seconds.
    pub lease_secs: f64,
    /// Default `PVC_CHECK_INTERVAL`, and its clamp.
    pub check_interval: f64,
    pub min_check_interval: f64,
    pub max_check_interval: f64,
    /// Time between facts-only uploads of a host, seconds (0 = never).
    pub fact_interval: f64,
    /// Forced runs a host may claim: refill per hour and burst.
    pub forced_per_hour: f64,
    pub forced_burst: f64,
    /// A server's bucket holds at most this many seconds of its rate.
    pub burst_secs: f64,
    /// A server with no good sample for this long gets no runs.
    pub server_down_after: f64,
    /// A converge request is spread over this fraction of its deadline.
    pub converge_spread: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            target_period: 1800.0,
            min_interval: 900.0,
            max_interval: 3600.0,
            target_utilization: 0.8,
            run_cost: 2.0,
            lease_secs: 1800.0,
            check_interval: 60.0,
            min_check_interval: 5.0,
            max_check_interval: 300.0,
            fact_interval: 1800.0,
            forced_per_hour: 6.0,
            forced_burst: 3.0,
            burst_secs: 2.0,
            server_down_after: 10.0,
            converge_spread: 0.8,
        }
    }
}

/// A puppetserver as configured.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSpec {
    pub name: String,
    pub pool: String,
    /// JRubies assumed until a sample says otherwise (static capacity).
    pub jrubies: u32,
    /// `true` when a live source (status API or push) feeds this server:
    /// then a missing sample means "down".
    pub monitored: bool,
}

/// Why a poll happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Poll {
    /// The regular poll.
    Regular,
    /// A monitored file changed outside a Puppet run.
    FileChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    FileChange,
    Converge,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::FileChange => "file_change",
            Trigger::Converge => "converge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    Full,
    CachedCatalog,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Full => "full",
            RunMode::CachedCatalog => "cached_catalog",
        }
    }
}

/// A run the scheduler admits (tentatively: the caller commits it as a
/// lease, or hands it back with `Scheduler::refused`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub server: Arc<str>,
    pub mode: RunMode,
    pub trigger: Trigger,
    /// The server's rate when granted (runs/s), for the shared budget.
    pub rate: f64,
    /// The server's bucket size (runs), for the shared budget.
    pub burst: f64,
    /// May overdraw the shared budget (forced runs go first).
    pub overdraft: bool,
}

/// Why the decision is what it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    Due,
    ForcedRun,
    Converge {
        id: ConvergeId,
    },
    /// Not due yet: the hand reaches this host in about `in_secs`.
    NotDue {
        in_secs: f64,
    },
    /// Due, but no server in the pool has room now.
    NoCapacity,
    /// A run is already leased to this host.
    RunInProgress,
    /// The pool has no server that is up.
    NoServer,
}

/// What one poll gets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub run: Option<Grant>,
    pub fact_run: bool,
    /// Seconds until the next poll.
    pub check_interval: u32,
    pub reason: Reason,
    /// A file-change poll over its budget (queued like any run; logged).
    pub over_forced_budget: bool,
}

/// Per server, for `/metrics`, `explain` and the simulation.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    pub name: Arc<str>,
    pub pool: Arc<str>,
    pub up: bool,
    pub pool_locked: bool,
    pub jrubies: u32,
    /// Admissible runs per second.
    pub rate: f64,
    /// Smoothed measured utilisation, 0..1.
    pub utilization: f64,
    /// Estimated JRuby-seconds per run.
    pub run_cost: f64,
    pub tokens: f64,
    pub granted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    pub name: Arc<str>,
    pub hosts: usize,
    /// Admissible runs per second over the pool's servers that are up.
    pub rate: f64,
    /// Current cycle length, seconds.
    pub cycle_secs: f64,
    /// The fleet needs more than the servers give: cycle > max_interval.
    pub shortage: bool,
    /// Runs per second set aside for forced runs and converges.
    pub reserved_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulerStats {
    pub servers: Vec<ServerStats>,
    pub pools: Vec<PoolStats>,
}

/// Progress of a converge request.
#[derive(Debug, Clone, Serialize)]
pub struct ConvergeStatus {
    pub id: ConvergeId,
    pub hosts: usize,
    pub started: usize,
    pub finished: usize,
    pub created: Ts,
    pub deadline: Ts,
    /// When the last host finished, if all have.
    pub done_at: Option<Ts>,
    /// Capacity cannot meet the deadline: estimated finish.
    pub estimated_finish: Ts,
}

/// Everything that decides a host's next answer, for `explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub certname: String,
    pub pool: Arc<str>,
    pub phase: f64,
    pub cycle_secs: f64,
    pub next_due_in_secs: f64,
    pub last_run: Option<Ts>,
    pub run_in_progress: bool,
    pub forced_budget: f64,
    pub converge: Option<ConvergeId>,
    pub decision_now: Decision,
    pub pool_stats: PoolStats,
    pub servers: Vec<ServerStats>,
}

/// The scheduler. Single-threaded: the service wraps it in a mutex.
pub struct Scheduler {
    _todo: HashMap<(), ()>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, servers: Vec<ServerSpec>, now: Ts) -> Scheduler {
        let _ = (config, servers, now);
        todo!()
    }

    pub fn config(&self) -> &SchedulerConfig {
        todo!()
    }

    /// Adds a host or moves it to `pool`; returns its stable index.
    pub fn upsert_host(&mut self, certname: &str, pool: &str) -> HostIx {
        let _ = (certname, pool);
        todo!()
    }

    pub fn host_ix(&self, certname: &str) -> Option<HostIx> {
        let _ = certname;
        todo!()
    }

    /// A good sample from a server's capacity source.
    pub fn observe(&mut self, server: &str, sample: &ServerSample, now: Ts) {
        let _ = (server, sample, now);
        todo!()
    }

    /// A failed attempt to read a server's status.
    pub fn observe_failure(&mut self, server: &str, now: Ts) {
        let _ = (server, now);
        todo!()
    }

    /// Advances hands and buckets; call about once a second.
    pub fn tick(&mut self, now: Ts) {
        let _ = now;
        todo!()
    }

    /// Decides one poll. A grant is tentative: commit it (`committed`) or
    /// hand it back (`refused`).
    pub fn poll(&mut self, now: Ts, host: HostIx, poll: Poll) -> Decision {
        let _ = (now, host, poll);
        todo!()
    }

    /// The shared budget refused a grant: the host stays due.
    pub fn refused(&mut self, now: Ts, host: HostIx, grant: &Grant, no_budget: bool) {
        let _ = (now, host, grant, no_budget);
        todo!()
    }

    /// A run granted elsewhere (another bridge process), seen in the
    /// database: keeps this process's view of the host current.
    pub fn granted_elsewhere(&mut self, at: Ts, host: HostIx, server: &str, trigger: Trigger) {
        let _ = (at, host, server, trigger);
        todo!()
    }

    /// The host's run ended (its report arrived).
    pub fn finished(&mut self, now: Ts, host: HostIx) {
        let _ = (now, host);
        todo!()
    }

    /// "These hosts must all run within `within_secs`".
    pub fn converge(&mut self, now: Ts, hosts: &[HostIx], within_secs: f64) -> ConvergeId {
        let _ = (now, hosts, within_secs);
        todo!()
    }

    pub fn converge_status(&self, id: ConvergeId) -> Option<ConvergeStatus> {
        let _ = id;
        todo!()
    }

    pub fn stats(&self) -> SchedulerStats {
        todo!()
    }

    pub fn explain(&self, now: Ts, host: HostIx) -> Explanation {
        let _ = (now, host);
        todo!()
    }
}
