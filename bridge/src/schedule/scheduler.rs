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

use super::capacity::Capacity;
use super::phase::{phase, phase_salted};
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

/// Why the shared budget (the database) refused a tentative grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server's shared bucket is empty (other bridges took the tokens).
    NoBudget,
    /// Another bridge process leased a run to this host, until then.
    InProgress { until: Ts },
    /// The host had a scheduled run very recently (granted elsewhere).
    TooSoon,
}

/// Share of the admissible rate the hand hands out: the rest absorbs
/// sampling noise so a due host rarely finds the buckets empty.
const HAND_SHARE: f64 = 0.97;
/// Smoothing of the forced-run rate set aside (seconds).
const FORCED_WINDOW: f64 = 300.0;

struct Server {
    name: Arc<str>,
    pool: usize,
    capacity: Capacity,
    rate: f64,
    tokens: f64,
    granted: u64,
}

struct Pool {
    name: Arc<str>,
    servers: Vec<usize>,
    hosts: usize,
    /// Cycles swept since the epoch anchor; only grows.
    hand: f64,
    /// Cycles per second.
    speed: f64,
    rate: f64,
    forced_rate: f64,
    forced_since_tick: u32,
    converge_rate: f64,
}

struct Host {
    certname: Arc<str>,
    pool: u32,
    phase: f64,
    fact_phase: f64,
    /// Cycle index of the last scheduled run.
    cycle: i64,
    /// Before the tentative grant, to undo a refusal or a failed run.
    prev_cycle: i64,
    prev_last_run: Option<Ts>,
    /// A failed run was already retried in this cycle.
    retried_cycle: i64,
    fact_cycle: i64,
    last_run: Option<Ts>,
    running_until: Option<Ts>,
    forced_tokens: f64,
    forced_at: Ts,
    /// (converge index, position in it)
    converge: Option<(u32, u32)>,
    /// Gone from Foreman: not counted in its pool.
    retired: bool,
}

struct Converge {
    id: ConvergeId,
    created: Ts,
    deadline: Ts,
    hosts: Vec<HostIx>,
    started: Vec<bool>,
    finished: Vec<bool>,
    started_count: usize,
    finished_count: usize,
    done_at: Option<Ts>,
    /// Per pool: seconds over which its hosts are spread.
    spread: HashMap<usize, f64>,
    /// Per pool: runs per second set aside while spreading.
    rate: HashMap<usize, f64>,
}

/// The scheduler. Single-threaded: the service wraps it in a mutex.
pub struct Scheduler {
    config: SchedulerConfig,
    servers: Vec<Server>,
    pools: Vec<Pool>,
    pool_index: HashMap<Arc<str>, usize>,
    server_index: HashMap<Arc<str>, usize>,
    hosts: Vec<Host>,
    host_index: HashMap<Arc<str>, HostIx>,
    converges: Vec<Converge>,
    next_converge: ConvergeId,
    last_tick: Ts,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, servers: Vec<ServerSpec>, now: Ts) -> Scheduler {
        let mut scheduler = Scheduler {
            config,
            servers: Vec::new(),
            pools: Vec::new(),
            pool_index: HashMap::new(),
            server_index: HashMap::new(),
            hosts: Vec::new(),
            host_index: HashMap::new(),
            converges: Vec::new(),
            next_converge: 1,
            last_tick: now,
        };
        for spec in servers {
            let pool = scheduler.pool_ix(&spec.pool, now);
            let name: Arc<str> = Arc::from(spec.name.as_str());
            let ix = scheduler.servers.len();
            scheduler.servers.push(Server {
                name: Arc::clone(&name),
                pool,
                capacity: Capacity::new(
                    spec.jrubies,
                    spec.monitored,
                    scheduler.config.target_utilization,
                    scheduler.config.run_cost,
                    scheduler.config.server_down_after,
                ),
                rate: 0.0,
                tokens: 0.0,
                granted: 0,
            });
            scheduler.pools[pool].servers.push(ix);
            scheduler.server_index.insert(name, ix);
        }
        scheduler.tick(now);
        scheduler
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn pool_ix(&mut self, name: &str, now: Ts) -> usize {
        if let Some(&ix) = self.pool_index.get(name) {
            return ix;
        }
        let name: Arc<str> = Arc::from(name);
        let ix = self.pools.len();
        self.pools.push(Pool {
            name: Arc::clone(&name),
            servers: Vec::new(),
            hosts: 0,
            // Anchored to the clock, so bridge processes that start at
            // different times still agree roughly on where the hand is.
            hand: now.as_secs_f64() / self.config.target_period.max(1.0),
            speed: 1.0 / self.config.target_period.max(1.0),
            rate: 0.0,
            forced_rate: 0.0,
            forced_since_tick: 0,
            converge_rate: 0.0,
        });
        self.pool_index.insert(name, ix);
        ix
    }

    /// Adds a host or moves it to `pool`; returns its stable index.
    pub fn upsert_host(&mut self, certname: &str, pool: &str) -> HostIx {
        let pool = self.pool_ix(pool, self.last_tick) as u32;
        if let Some(&ix) = self.host_index.get(certname) {
            let host = &mut self.hosts[ix as usize];
            if host.retired {
                host.retired = false;
                host.pool = pool;
                self.pools[pool as usize].hosts += 1;
            } else if host.pool != pool {
                self.pools[host.pool as usize].hosts -= 1;
                self.pools[pool as usize].hosts += 1;
                host.pool = pool;
            }
            return ix;
        }
        let certname: Arc<str> = Arc::from(certname);
        let phase = phase(&certname);
        let hand = self.pools[pool as usize].hand;
        // A new host counts as served in the current cycle: hosts become due
        // as the hand reaches them, never all at once after a restart.
        let cycle = (hand - phase).floor() as i64;
        let ix = self.hosts.len() as HostIx;
        self.hosts.push(Host {
            certname: Arc::clone(&certname),
            pool,
            phase,
            fact_phase: phase_salted(&certname, 1),
            cycle,
            prev_cycle: cycle,
            prev_last_run: None,
            retried_cycle: i64::MIN,
            fact_cycle: self.fact_cycle_at(self.last_tick, phase_salted(&certname, 1)),
            last_run: None,
            running_until: None,
            forced_tokens: self.config.forced_burst,
            forced_at: self.last_tick,
            converge: None,
            retired: false,
        });
        self.pools[pool as usize].hosts += 1;
        self.host_index.insert(certname, ix);
        ix
    }

    /// A host no longer in Foreman stops counting in its pool (its index
    /// stays; `upsert_host` brings it back). `false` if it already had.
    pub fn retire(&mut self, ix: HostIx) -> bool {
        let host = &mut self.hosts[ix as usize];
        if host.retired {
            return false;
        }
        host.retired = true;
        self.pools[host.pool as usize].hosts -= 1;
        true
    }

    pub fn host_ix(&self, certname: &str) -> Option<HostIx> {
        self.host_index.get(certname).copied()
    }

    pub fn certname(&self, host: HostIx) -> &str {
        &self.hosts[host as usize].certname
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// A good sample from a server's capacity source.
    pub fn observe(&mut self, server: &str, sample: &ServerSample, now: Ts) {
        if let Some(&ix) = self.server_index.get(server) {
            self.servers[ix].capacity.observe(sample, now);
        }
    }

    /// A failed attempt to read a server's status.
    pub fn observe_failure(&mut self, server: &str, now: Ts) {
        if let Some(&ix) = self.server_index.get(server) {
            let server = &mut self.servers[ix];
            server.capacity.observe_failure(now);
            // Out at once, not at the next tick.
            server.rate = server.capacity.rate(now);
            if server.rate == 0.0 {
                server.tokens = server.tokens.min(0.0);
            }
        }
    }

    pub fn has_server(&self, server: &str) -> bool {
        self.server_index.contains_key(server)
    }

    /// Advances hands and buckets; call about once a second.
    pub fn tick(&mut self, now: Ts) {
        let dt = now.since(self.last_tick).max(0.0);
        self.last_tick = now;
        for server in &mut self.servers {
            server.rate = server.capacity.rate(now);
            let burst = (server.rate * self.config.burst_secs).max(1.0);
            server.tokens = (server.tokens + server.rate * dt).min(burst);
            if server.rate == 0.0 {
                server.tokens = server.tokens.min(0.0);
            }
        }
        for (p, pool) in self.pools.iter_mut().enumerate() {
            pool.rate = pool.servers.iter().map(|&s| self.servers[s].rate).sum();
            if dt > 0.0 {
                let alpha = 1.0 - (-dt / FORCED_WINDOW).exp();
                let observed = f64::from(pool.forced_since_tick) / dt;
                pool.forced_rate += alpha * (observed - pool.forced_rate);
                pool.forced_since_tick = 0;
            }
            pool.converge_rate = self
                .converges
                .iter()
                .filter(|c| c.done_at.is_none())
                .filter(|c| now < c.created.plus(c.spread.get(&p).copied().unwrap_or(0.0)))
                .map(|c| c.rate.get(&p).copied().unwrap_or(0.0))
                .sum();
            let usable = (pool.rate - pool.forced_rate - pool.converge_rate).max(0.0);
            pool.speed = if pool.hosts == 0 {
                0.0
            } else {
                (HAND_SHARE * usable / pool.hosts as f64).min(1.0 / self.config.min_interval)
            };
            pool.hand += pool.speed * dt;
        }
    }

    fn cycle_secs(&self, pool: usize) -> f64 {
        let speed = self.pools[pool].speed;
        if speed > 0.0 {
            1.0 / speed
        } else {
            f64::INFINITY
        }
    }

    fn shortage(&self, pool: usize) -> bool {
        self.pools[pool].hosts > 0 && self.cycle_secs(pool) > self.config.max_interval
    }

    fn fact_cycle_at(&self, now: Ts, fact_phase: f64) -> i64 {
        if self.config.fact_interval <= 0.0 {
            return 0;
        }
        (now.as_secs_f64() / self.config.fact_interval - fact_phase).floor() as i64
    }

    /// The server in `pool` with the most headroom (tokens relative to its
    /// bucket), if any is up and not flushing.
    fn best_server(&self, pool: usize) -> Option<usize> {
        self.pools[pool]
            .servers
            .iter()
            .copied()
            .filter(|&s| self.servers[s].rate > 0.0)
            .max_by(|&a, &b| {
                let ha = self.headroom(a);
                let hb = self.headroom(b);
                ha.total_cmp(&hb)
            })
    }

    fn headroom(&self, server: usize) -> f64 {
        let s = &self.servers[server];
        s.tokens / (s.rate * self.config.burst_secs).max(1.0)
    }

    fn burst(&self, server: usize) -> f64 {
        (self.servers[server].rate * self.config.burst_secs).max(1.0)
    }

    fn clamp_check(&self, secs: f64) -> u32 {
        secs.clamp(
            self.config.min_check_interval,
            self.config.max_check_interval,
        )
        .round() as u32
    }

    /// Seconds until the hand reaches the host's next slot (0 if due).
    fn due_in(&self, host: &Host) -> f64 {
        let pool = &self.pools[host.pool as usize];
        let next = (host.cycle + 1) as f64 + host.phase;
        let ahead = next - pool.hand;
        if ahead <= 0.0 {
            0.0
        } else if pool.speed > 0.0 {
            ahead / pool.speed
        } else {
            f64::INFINITY
        }
    }

    fn is_due(&self, host: &Host, now: Ts) -> bool {
        if self.due_in(host) <= 0.0 {
            return true;
        }
        // Safety net while capacity exists: a host whose slot was lost (a
        // bridge restart, a long outage of its own) never waits past
        // max_interval.
        let margin = 2.0 * self.config.check_interval;
        !self.shortage(host.pool as usize)
            && host
                .last_run
                .is_some_and(|at| now.since(at) >= self.config.max_interval - margin)
    }

    fn converge_due(&self, host: &Host, now: Ts) -> Option<usize> {
        let (c, pos) = host.converge?;
        let converge = &self.converges[c as usize];
        if converge.started[pos as usize] {
            return None;
        }
        let spread = converge
            .spread
            .get(&(host.pool as usize))
            .copied()
            .unwrap_or(0.0);
        // Spread over the window by the host's phase, rotated per request so
        // a converge does not always start with the same hosts.
        let offset = (host.phase + converge.id as f64 * 0.618_033_988_7).fract();
        (now >= converge.created.plus(offset * spread)).then_some(c as usize)
    }

    /// Decides one poll. A grant is tentative: the caller commits it, or
    /// hands it back with `refused`.
    pub fn poll(&mut self, now: Ts, host: HostIx, poll: Poll) -> Decision {
        let decision = self.decide(now, host, poll);
        self.apply(now, host, poll, &decision);
        decision
    }

    /// The decision, without changing anything (`explain` uses it as is).
    fn decide(&self, now: Ts, ix: HostIx, poll: Poll) -> Decision {
        let host = &self.hosts[ix as usize];
        let pool = host.pool as usize;
        let fact_run = self.config.fact_interval > 0.0
            && self.fact_cycle_at(now, host.fact_phase) > host.fact_cycle;
        let default_check = self.clamp_check(self.config.check_interval);
        let mut decision = Decision {
            run: None,
            fact_run,
            check_interval: default_check,
            reason: Reason::NotDue { in_secs: 0.0 },
            over_forced_budget: false,
        };
        if host.running_until.is_some_and(|until| until > now) {
            decision.reason = Reason::RunInProgress;
            return decision;
        }
        if poll == Poll::FileChange {
            if self.forced_tokens_at(host, now) >= 1.0 {
                let (server, mode) = match self.best_server(pool) {
                    // Forced runs go first: they may overdraw one bucket.
                    Some(s) if self.servers[s].tokens >= 1.0 - self.burst(s) => {
                        (Some(s), RunMode::Full)
                    }
                    other => (other, RunMode::CachedCatalog),
                };
                let server = server.or_else(|| self.pools[pool].servers.first().copied());
                decision.run = server.map(|s| self.grant(s, mode, Trigger::FileChange, true));
                decision.reason = Reason::ForcedRun;
                if decision.run.is_some() {
                    return decision;
                }
            } else {
                decision.over_forced_budget = true;
            }
        }
        if let Some(c) = self.converge_due(host, now) {
            match self.best_server(pool) {
                Some(s) if self.servers[s].tokens >= 1.0 => {
                    decision.run = Some(self.grant(s, RunMode::Full, Trigger::Converge, false));
                    decision.reason = Reason::Converge {
                        id: self.converges[c].id,
                    };
                }
                Some(_) => {
                    decision.reason = Reason::NoCapacity;
                    decision.check_interval = self.clamp_check(self.config.check_interval / 4.0);
                }
                None => decision.reason = Reason::NoServer,
            }
            return decision;
        }
        if self.is_due(host, now) {
            match self.best_server(pool) {
                Some(s) if self.servers[s].tokens >= 1.0 => {
                    decision.run = Some(self.grant(s, RunMode::Full, Trigger::Schedule, false));
                    decision.reason = Reason::Due;
                }
                Some(_) => {
                    decision.reason = Reason::NoCapacity;
                    decision.check_interval = self.clamp_check(self.config.check_interval / 4.0);
                }
                None => decision.reason = Reason::NoServer,
            }
            return decision;
        }
        if self.pools[pool].rate <= 0.0 {
            decision.reason = Reason::NoServer;
            return decision;
        }
        let in_secs = self.due_in(host);
        decision.reason = Reason::NotDue { in_secs };
        // Come back when the slot arrives, so run starts follow the hand
        // closely instead of the poll grid.
        decision.check_interval = self.clamp_check(in_secs.min(self.config.check_interval));
        decision
    }

    fn grant(&self, server: usize, mode: RunMode, trigger: Trigger, overdraft: bool) -> Grant {
        let s = &self.servers[server];
        Grant {
            server: Arc::clone(&s.name),
            mode,
            trigger,
            rate: s.rate,
            burst: self.burst(server),
            overdraft,
        }
    }

    fn forced_tokens_at(&self, host: &Host, now: Ts) -> f64 {
        let refill = now.since(host.forced_at).max(0.0) * self.config.forced_per_hour / 3600.0;
        (host.forced_tokens + refill).min(self.config.forced_burst)
    }

    fn apply(&mut self, now: Ts, ix: HostIx, poll: Poll, decision: &Decision) {
        let fact_cycle = {
            let host = &self.hosts[ix as usize];
            self.fact_cycle_at(now, host.fact_phase)
        };
        if decision.fact_run || decision.run.is_some() {
            // A run uploads facts too.
            self.hosts[ix as usize].fact_cycle = fact_cycle;
        }
        if poll == Poll::FileChange && decision.reason == Reason::ForcedRun {
            let tokens = self.forced_tokens_at(&self.hosts[ix as usize], now);
            let host = &mut self.hosts[ix as usize];
            host.forced_tokens = tokens - 1.0;
            host.forced_at = now;
        }
        let Some(grant) = &decision.run else {
            return;
        };
        let server = self.server_index[&grant.server];
        if grant.mode == RunMode::Full {
            self.servers[server].tokens -= 1.0;
            self.servers[server].capacity.note_run(now);
        }
        self.servers[server].granted += 1;
        let pool = self.hosts[ix as usize].pool as usize;
        if grant.trigger == Trigger::FileChange {
            self.pools[pool].forced_since_tick += 1;
        }
        let hand = self.pools[pool].hand;
        let lease = self.config.lease_secs;
        let host = &mut self.hosts[ix as usize];
        host.prev_cycle = host.cycle;
        host.prev_last_run = host.last_run;
        if grant.trigger == Trigger::Schedule {
            host.cycle = (hand - host.phase).floor() as i64;
        }
        if grant.mode == RunMode::Full {
            host.last_run = Some(now);
        }
        host.running_until = Some(now.plus(lease));
        let converge = host.converge;
        if grant.mode == RunMode::Full {
            self.mark_converge_started(converge);
        }
    }

    fn mark_converge_started(&mut self, converge: Option<(u32, u32)>) {
        if let Some((c, pos)) = converge {
            let converge = &mut self.converges[c as usize];
            if !converge.started[pos as usize] {
                converge.started[pos as usize] = true;
                converge.started_count += 1;
            }
        }
    }

    /// The shared budget refused a tentative grant.
    pub fn refused(&mut self, ix: HostIx, grant: &Grant, refusal: Refusal) {
        if let Some(&server) = self.server_index.get(&grant.server) {
            if grant.mode == RunMode::Full {
                // The token was not really taken here…
                self.servers[server].tokens += 1.0;
            }
            if refusal == Refusal::NoBudget {
                // …but other processes emptied the shared bucket.
                self.servers[server].tokens = self.servers[server].tokens.min(0.0);
            }
        }
        let host = &mut self.hosts[ix as usize];
        match refusal {
            Refusal::NoBudget => {
                host.cycle = host.prev_cycle;
                host.running_until = None;
            }
            Refusal::InProgress { until } => {
                host.cycle = host.prev_cycle;
                host.running_until = Some(until);
            }
            Refusal::TooSoon => host.running_until = None,
        }
    }

    /// A run granted elsewhere (another bridge process), seen in the
    /// database: keeps this process's view of the host and server current.
    pub fn granted_elsewhere(
        &mut self,
        at: Ts,
        ix: HostIx,
        server: &str,
        trigger: Trigger,
        full: bool,
    ) {
        if let Some(&s) = self.server_index.get(server) {
            if full {
                let burst = self.burst(s);
                let server = &mut self.servers[s];
                server.tokens = (server.tokens - 1.0).max(-burst);
                server.capacity.note_run(at);
            }
        }
        let pool = self.hosts[ix as usize].pool as usize;
        let hand = self.pools[pool].hand;
        let lease = self.config.lease_secs;
        let host = &mut self.hosts[ix as usize];
        if trigger == Trigger::Schedule {
            host.cycle = host.cycle.max((hand - host.phase).floor() as i64);
        }
        if full && host.last_run.is_none_or(|last| last < at) {
            host.last_run = Some(at);
        }
        let until = at.plus(lease);
        if host.running_until.is_none_or(|u| u < until) {
            host.running_until = Some(until);
        }
        let converge = host.converge;
        if full {
            self.mark_converge_started(converge);
        }
    }

    /// A run that is already over, seen in the database (another process's
    /// grant, or history read at start): the host's last run and cycle only.
    pub fn ran_at(&mut self, at: Ts, ix: HostIx, trigger: Trigger, full: bool) {
        let pool = self.hosts[ix as usize].pool as usize;
        let hand = self.pools[pool].hand;
        let speed = self.pools[pool].speed;
        let host = &mut self.hosts[ix as usize];
        if full && host.last_run.is_none_or(|last| last < at) {
            host.last_run = Some(at);
        }
        if trigger == Trigger::Schedule && speed > 0.0 {
            // Where the hand was then, so a run in the current cycle counts
            // for it and an older one does not.
            let then = hand - speed * self.last_tick.since(at).max(0.0);
            host.cycle = host.cycle.max((then - host.phase).floor() as i64);
        }
    }

    /// The host's run ended (its report arrived).
    pub fn finished(&mut self, now: Ts, ix: HostIx) {
        let host = &mut self.hosts[ix as usize];
        host.running_until = None;
        if let Some((c, pos)) = host.converge {
            let converge = &mut self.converges[c as usize];
            if converge.started[pos as usize] && !converge.finished[pos as usize] {
                converge.finished[pos as usize] = true;
                converge.finished_count += 1;
                if converge.finished_count == converge.hosts.len() {
                    converge.done_at = Some(now);
                }
            }
        }
    }

    /// The host's run could not happen (its server failed it, the agent
    /// reported exit code 1): a scheduled run is due again at once, once per
    /// cycle, so a broken run does not cost the host a whole cycle.
    pub fn failed(&mut self, now: Ts, ix: HostIx) {
        let host = &mut self.hosts[ix as usize];
        host.running_until = None;
        if host.retried_cycle != host.cycle && host.cycle != host.prev_cycle {
            host.retried_cycle = host.cycle;
            host.cycle = host.prev_cycle;
            host.last_run = host.prev_last_run;
        }
        let _ = now;
    }

    /// "These hosts must all run within `within_secs`": spread over
    /// `converge_spread` of the deadline, or longer when capacity cannot do
    /// that (then `estimated_finish` says when).
    pub fn converge(&mut self, now: Ts, hosts: &[HostIx], within_secs: f64) -> ConvergeId {
        let id = self.next_converge;
        self.add_converge(id, now, within_secs, hosts);
        id
    }

    /// A converge request with a known id and start (from the database).
    pub fn add_converge(
        &mut self,
        id: ConvergeId,
        created: Ts,
        within_secs: f64,
        hosts: &[HostIx],
    ) {
        if self.converges.iter().any(|c| c.id == id) {
            return;
        }
        self.next_converge = self.next_converge.max(id + 1);
        let mut hosts: Vec<HostIx> = hosts.to_vec();
        hosts.sort_unstable();
        hosts.dedup();
        let mut per_pool: HashMap<usize, usize> = HashMap::new();
        for &h in &hosts {
            *per_pool
                .entry(self.hosts[h as usize].pool as usize)
                .or_default() += 1;
        }
        let wanted = within_secs * self.config.converge_spread;
        let mut spread = HashMap::new();
        let mut rate = HashMap::new();
        for (&pool, &count) in &per_pool {
            // At most half the pool's runs go to the converge, so scheduled
            // runs keep going; beyond that the request takes longer.
            let available = 0.5 * self.pools[pool].rate;
            let needed = if available > 0.0 {
                count as f64 / available
            } else {
                f64::INFINITY
            };
            let secs = wanted.max(needed).min(30.0 * 86400.0);
            spread.insert(pool, secs);
            rate.insert(pool, count as f64 / secs.max(1.0));
        }
        let index = self.converges.len() as u32;
        for (pos, &h) in hosts.iter().enumerate() {
            self.hosts[h as usize].converge = Some((index, pos as u32));
        }
        let n = hosts.len();
        self.converges.push(Converge {
            id,
            created,
            deadline: created.plus(within_secs),
            hosts,
            started: vec![false; n],
            finished: vec![false; n],
            started_count: 0,
            finished_count: 0,
            done_at: if n == 0 { Some(created) } else { None },
            spread,
            rate,
        });
    }

    pub fn converge_status(&self, id: ConvergeId) -> Option<ConvergeStatus> {
        let c = self.converges.iter().find(|c| c.id == id)?;
        let longest = c.spread.values().copied().fold(0.0, f64::max);
        Some(ConvergeStatus {
            id,
            hosts: c.hosts.len(),
            started: c.started_count,
            finished: c.finished_count,
            created: c.created,
            deadline: c.deadline,
            done_at: c.done_at,
            // The spread, plus one poll interval for the last hosts to ask.
            estimated_finish: c.created.plus(longest + self.config.check_interval),
        })
    }

    fn server_stats(&self, s: usize) -> ServerStats {
        let server = &self.servers[s];
        ServerStats {
            name: Arc::clone(&server.name),
            pool: Arc::clone(&self.pools[server.pool].name),
            up: server.capacity.is_up(self.last_tick),
            pool_locked: server.capacity.pool_locked(),
            jrubies: server.capacity.jrubies(),
            rate: server.rate,
            utilization: server.capacity.utilization(),
            run_cost: server.capacity.cost(),
            tokens: server.tokens,
            granted: server.granted,
        }
    }

    fn pool_stats(&self, p: usize) -> PoolStats {
        let pool = &self.pools[p];
        PoolStats {
            name: Arc::clone(&pool.name),
            hosts: pool.hosts,
            rate: pool.rate,
            cycle_secs: self.cycle_secs(p),
            shortage: self.shortage(p),
            reserved_rate: pool.forced_rate + pool.converge_rate,
        }
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            servers: (0..self.servers.len())
                .map(|s| self.server_stats(s))
                .collect(),
            pools: (0..self.pools.len()).map(|p| self.pool_stats(p)).collect(),
        }
    }

    /// Every host still in the fleet: certname, pool, last full run (for
    /// the status page's fairness).
    pub fn host_runs(&self) -> Vec<(Arc<str>, Arc<str>, Option<Ts>)> {
        self.hosts
            .iter()
            .filter(|h| !h.retired)
            .map(|h| {
                let pool = Arc::clone(&self.pools[h.pool as usize].name);
                (Arc::clone(&h.certname), pool, h.last_run)
            })
            .collect()
    }

    /// Converge requests not yet done.
    pub fn open_converges(&self) -> Vec<ConvergeStatus> {
        self.converges
            .iter()
            .filter(|c| c.done_at.is_none())
            .filter_map(|c| self.converge_status(c.id))
            .collect()
    }

    pub fn explain(&self, now: Ts, ix: HostIx) -> Explanation {
        let host = &self.hosts[ix as usize];
        let pool = host.pool as usize;
        Explanation {
            certname: host.certname.to_string(),
            pool: Arc::clone(&self.pools[pool].name),
            phase: host.phase,
            cycle_secs: self.cycle_secs(pool),
            next_due_in_secs: self.due_in(host),
            last_run: host.last_run,
            run_in_progress: host.running_until.is_some_and(|u| u > now),
            forced_budget: self.forced_tokens_at(host, now),
            converge: host.converge.map(|(c, _)| self.converges[c as usize].id),
            decision_now: self.decide(now, ix, Poll::Regular),
            pool_stats: self.pool_stats(pool),
            servers: self.pools[pool]
                .servers
                .iter()
                .map(|&s| self.server_stats(s))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            target_period: 600.0,
            min_interval: 300.0,
            max_interval: 1200.0,
            run_cost: 1.0,
            ..SchedulerConfig::default()
        }
    }

    fn static_server(name: &str, jrubies: u32) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            pool: "dc1".into(),
            jrubies,
            monitored: false,
        }
    }

    /// Ticks every second and polls each host every `step` seconds (hosts
    /// spread over the step, as real polls are); reports each grant back as
    /// finished at once. Returns grant times per host.
    fn drive(s: &mut Scheduler, hosts: &[HostIx], start: Ts, secs: u32, step: u32) -> Vec<Vec<Ts>> {
        let mut grants = vec![Vec::new(); hosts.len()];
        for t in 0..secs {
            let now = start.plus(f64::from(t));
            s.tick(now);
            for (i, &h) in hosts.iter().enumerate() {
                if (t + i as u32) % step != 0 {
                    continue;
                }
                if s.poll(now, h, Poll::Regular).run.is_some() {
                    grants[i].push(now);
                    s.finished(now, h);
                }
            }
        }
        grants
    }

    #[test]
    fn every_host_runs_once_per_cycle_at_its_phase() {
        // 1 server × 10 JRubies at 80% and 1 JRuby-second per run: 8 runs/s,
        // far more than 200 hosts need, so the cycle shrinks to min_interval.
        let start = Ts(1_000_000_000);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 10)], start);
        let hosts: Vec<_> = (0..200)
            .map(|i| s.upsert_host(&format!("h{i}.example.com"), "dc1"))
            .collect();
        s.tick(start);
        assert_eq!(s.stats().pools[0].cycle_secs, 300.0);
        let grants = drive(&mut s, &hosts, start, 1500, 1);
        for (i, g) in grants.iter().enumerate() {
            // No burst at start: a host first runs when the hand reaches it.
            assert!(g.len() >= 4 && g.len() <= 5, "host {i}: {} runs", g.len());
            for pair in g.windows(2) {
                let gap = pair[1].since(pair[0]);
                assert!((gap - 300.0).abs() <= 2.0, "host {i}: gap {gap}");
            }
        }
    }

    #[test]
    fn shortage_stretches_every_host_evenly_and_says_so() {
        // 0.8 runs/s for 1000 hosts: a cycle of ~1290 s > max_interval.
        let start = Ts(2_000_000_000);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 1)], start);
        let hosts: Vec<_> = (0..1000)
            .map(|i| s.upsert_host(&format!("h{i}.example.com"), "dc1"))
            .collect();
        s.tick(start.plus(1.0));
        let pool = &s.stats().pools[0];
        assert!(pool.shortage);
        assert!((pool.cycle_secs - 1000.0 / (0.97 * 0.8)).abs() < 1.0);
        let grants = drive(&mut s, &hosts, start, 4000, 5);
        let total: usize = grants.iter().map(Vec::len).sum();
        // Never more than the servers can take.
        assert!(total as f64 <= 0.8 * 4000.0 + 2.0, "{total} runs");
        let mut gaps: Vec<f64> = grants
            .iter()
            .flat_map(|g| g.windows(2).map(|p| p[1].since(p[0])))
            .collect();
        assert!(!gaps.is_empty());
        // Every host waits about one (stretched) cycle; polls every 5 s and
        // clustered phases add some queueing noise, nothing more.
        let cycle = 1000.0 / (0.97 * 0.8);
        gaps.sort_by(f64::total_cmp);
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize];
        assert!(
            (at(0.5) - cycle).abs() < 0.02 * cycle,
            "median gap {}",
            at(0.5)
        );
        assert!(at(0.1) > 0.9 * cycle && at(0.9) < 1.1 * cycle);
        assert!(at(1.0) < 1.35 * cycle, "max gap {}", at(1.0));
    }

    #[test]
    fn no_server_up_means_no_run() {
        let start = Ts(0);
        let spec = ServerSpec {
            monitored: true,
            ..static_server("p1", 4)
        };
        let mut s = Scheduler::new(config(), vec![spec], start);
        let h = s.upsert_host("a.example.com", "dc1");
        let later = start.plus(5000.0);
        s.tick(later);
        let d = s.poll(later, h, Poll::Regular);
        assert_eq!(d.run, None);
        assert_eq!(d.reason, Reason::NoServer);
        // A forced run still happens, from the cached catalog.
        let d = s.poll(later, h, Poll::FileChange);
        assert_eq!(d.run.as_ref().map(|g| g.mode), Some(RunMode::CachedCatalog));
    }

    #[test]
    fn capacity_drop_stops_grants_to_that_server() {
        let start = Ts(0);
        let specs = vec![
            ServerSpec {
                monitored: true,
                ..static_server("p1", 4)
            },
            ServerSpec {
                monitored: true,
                ..static_server("p2", 4)
            },
        ];
        let mut s = Scheduler::new(config(), specs, start);
        let hosts: Vec<_> = (0..100)
            .map(|i| s.upsert_host(&format!("h{i}.example.com"), "dc1"))
            .collect();
        let idle = ServerSample {
            jrubies: 4,
            free: 4,
            ..ServerSample::default()
        };
        let mut by_server: HashMap<Arc<str>, u32> = HashMap::new();
        for t in 0..2000u32 {
            let now = start.plus(f64::from(t));
            s.observe("p1", &idle, now);
            if t < 1000 {
                s.observe("p2", &idle, now);
            } else {
                s.observe_failure("p2", now);
            }
            s.tick(now);
            for &h in &hosts {
                if let Some(g) = s.poll(now, h, Poll::Regular).run {
                    if t >= 1000 {
                        *by_server.entry(g.server).or_default() += 1;
                    }
                    s.finished(now, h);
                }
            }
        }
        assert!(by_server.get("p1").copied().unwrap_or(0) > 50);
        assert_eq!(by_server.get("p2"), None, "{by_server:?}");
    }

    #[test]
    fn forced_runs_go_first_within_a_budget() {
        let start = Ts(0);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 1)], start);
        let h = s.upsert_host("a.example.com", "dc1");
        // Burst is 3: three forced runs at once, the fourth is queued like
        // any poll (and not due now).
        for i in 0..3 {
            let d = s.poll(start, h, Poll::FileChange);
            let grant = d.run.expect("forced run granted");
            assert_eq!(grant.trigger, Trigger::FileChange, "run {i}");
            s.finished(start, h);
        }
        let d = s.poll(start, h, Poll::FileChange);
        assert!(d.over_forced_budget);
        assert_eq!(d.run, None);
        // Refills at 6 per hour.
        let later = start.plus(601.0);
        s.tick(later);
        let d = s.poll(later, h, Poll::FileChange);
        assert!(d.run.is_some() && !d.over_forced_budget);
    }

    #[test]
    fn forced_run_uses_the_cached_catalog_when_no_server_has_room() {
        let start = Ts(0);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 1)], start);
        let hosts: Vec<_> = (0..5)
            .map(|i| s.upsert_host(&format!("h{i}.example.com"), "dc1"))
            .collect();
        let modes: Vec<RunMode> = hosts
            .iter()
            .map(|&h| s.poll(start, h, Poll::FileChange).run.unwrap().mode)
            .collect();
        assert_eq!(modes[0], RunMode::Full);
        assert_eq!(modes[4], RunMode::CachedCatalog, "{modes:?}");
    }

    #[test]
    fn run_in_progress_until_finished_or_lease_end() {
        let start = Ts(0);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 4)], start);
        let h = s.upsert_host("a.example.com", "dc1");
        assert!(s.poll(start, h, Poll::FileChange).run.is_some());
        assert_eq!(
            s.poll(start, h, Poll::FileChange).reason,
            Reason::RunInProgress
        );
        s.finished(start, h);
        assert_ne!(
            s.poll(start, h, Poll::Regular).reason,
            Reason::RunInProgress
        );
        assert!(s.poll(start, h, Poll::FileChange).run.is_some());
        let after_lease = start.plus(s.config().lease_secs + 1.0);
        assert_ne!(
            s.poll(after_lease, h, Poll::Regular).reason,
            Reason::RunInProgress
        );
    }

    #[test]
    fn refused_grant_leaves_the_host_due() {
        let start = Ts(3_000_000_000);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 10)], start);
        let h = s.upsert_host("a.example.com", "dc1");
        s.tick(start);
        let due_at = start.plus(s.explain(start, h).next_due_in_secs + 1.0);
        s.tick(due_at);
        let grant = s.poll(due_at, h, Poll::Regular).run.expect("due");
        s.refused(h, &grant, Refusal::NoBudget);
        assert_eq!(s.stats().servers[0].tokens, 0.0);
        let next = due_at.plus(1.0);
        s.tick(next);
        assert_eq!(s.poll(next, h, Poll::Regular).reason, Reason::Due);
    }

    #[test]
    fn converge_runs_every_host_within_the_deadline() {
        let start = Ts(4_000_000_000);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 10)], start);
        let hosts: Vec<_> = (0..300)
            .map(|i| s.upsert_host(&format!("h{i}.example.com"), "dc1"))
            .collect();
        s.tick(start.plus(1.0));
        let id = s.converge(start.plus(1.0), &hosts[..100], 120.0);
        drive(&mut s, &hosts, start.plus(1.0), 130, 1);
        let status = s.converge_status(id).unwrap();
        assert_eq!(status.finished, 100);
        let done = status.done_at.expect("done");
        assert!(done <= status.deadline, "{status:?}");
        // Spread, not all at once: about 96 s of spreading.
        assert!(done.since(status.created) > 60.0, "{status:?}");
    }

    #[test]
    fn a_failed_scheduled_run_is_due_again_once() {
        let start = Ts(5_000_000_000);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 10)], start);
        let h = s.upsert_host("a.example.com", "dc1");
        s.tick(start);
        let due_at = start.plus(s.explain(start, h).next_due_in_secs + 1.0);
        s.tick(due_at);
        assert!(s.poll(due_at, h, Poll::Regular).run.is_some());
        s.failed(due_at.plus(2.0), h);
        let retry = due_at.plus(3.0);
        s.tick(retry);
        assert!(s.poll(retry, h, Poll::Regular).run.is_some(), "due again");
        s.failed(retry.plus(2.0), h);
        let later = retry.plus(5.0);
        s.tick(later);
        let d = s.poll(later, h, Poll::Regular);
        assert!(d.run.is_none(), "only one retry per cycle: {d:?}");
    }

    #[test]
    fn a_failed_status_read_takes_the_server_out_at_once() {
        let start = Ts(0);
        let spec = ServerSpec {
            monitored: true,
            ..static_server("p1", 4)
        };
        let mut s = Scheduler::new(config(), vec![spec], start);
        let h = s.upsert_host("a.example.com", "dc1");
        let idle = ServerSample {
            jrubies: 4,
            free: 4,
            ..ServerSample::default()
        };
        s.observe("p1", &idle, start);
        s.tick(start.plus(1.0));
        s.observe_failure("p1", start.plus(1.5));
        // No tick in between.
        let d = s.poll(start.plus(1.6), h, Poll::FileChange);
        assert_eq!(d.run.map(|g| g.mode), Some(RunMode::CachedCatalog));
    }

    #[test]
    fn history_from_the_database_sets_last_runs() {
        // A bridge (re)started: the host ran 50 minutes ago elsewhere; it
        // must not wait a whole new cycle (max_interval 1200 s here).
        let start = Ts(6_000_000_000);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 10)], start);
        let h = s.upsert_host("a.example.com", "dc1");
        let k = s.upsert_host("b.example.com", "dc1");
        s.tick(start);
        s.ran_at(start.plus(-1150.0), h, Trigger::Schedule, true);
        s.ran_at(start.plus(-10.0), k, Trigger::Schedule, true);
        let now = start.plus(60.0);
        s.tick(now);
        assert_eq!(s.poll(now, h, Poll::Regular).reason, Reason::Due);
        assert!(matches!(
            s.poll(now, k, Poll::Regular).reason,
            Reason::NotDue { .. }
        ));
        assert_eq!(s.explain(now, k).last_run, Some(start.plus(-10.0)));
    }

    #[test]
    fn retired_hosts_leave_their_pool() {
        let start = Ts(0);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 4)], start);
        for i in 0..10 {
            s.upsert_host(&format!("h{i}.example.com"), "dc1");
        }
        for name in ["h3.example.com", "h4.example.com"] {
            assert!(s.retire(s.host_ix(name).unwrap()));
        }
        assert!(!s.retire(s.host_ix("h3.example.com").unwrap()), "once");
        s.tick(start);
        assert_eq!(s.stats().pools[0].hosts, 8);
        s.upsert_host("h3.example.com", "dc1");
        s.tick(start);
        assert_eq!(s.stats().pools[0].hosts, 9);
    }

    #[test]
    fn explain_says_why() {
        let start = Ts(0);
        let mut s = Scheduler::new(config(), vec![static_server("p1", 4)], start);
        let h = s.upsert_host("a.example.com", "dc1");
        s.tick(start);
        let e = s.explain(start, h);
        assert_eq!(e.certname, "a.example.com");
        assert!(matches!(e.decision_now.reason, Reason::NotDue { .. }));
        assert!(e.next_due_in_secs > 0.0 && e.next_due_in_secs <= 300.0);
        assert_eq!(e.servers.len(), 1);
    }
}
