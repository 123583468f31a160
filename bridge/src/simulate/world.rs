//! The simulated world: hosts, servers, the event queue and the
//! measurements. A strategy (`super::strategy`) decides when a host runs and
//! on which server; the world carries each run through its phases and
//! measures what happens.
//!
//! A full run: the compile borrow (node + catalog + file metadata: one JRuby
//! held, FIFO wait when none is free), the local apply (no JRuby), the
//! report borrow. A cached-catalog run skips the compile. A run that meets
//! a server that is down fails at once; a run whose server goes down while
//! it waits for or holds a JRuby fails then.

use std::sync::Arc;

use crate::schedule::{RunMode, Trigger};

use super::config::Config;
use super::queue::Calendar;
use super::rng::Rng;
use super::scenario::{stream, Scenario};
use super::server::{Acquired, Borrow, Server, Waiting};
use super::stats::Samples;

/// Virtual start: Monday 2026-01-05 00:00:00 UTC, in ms (the scheduler's
/// `Ts` is the database clock; any epoch works, a real one reads better).
pub const T0_MS: i64 = 1_767_571_200_000;

const NONE: i64 = i64::MIN;

#[derive(Debug, Clone, Copy)]
pub enum Ev {
    /// A host's own timer (poll, daemon run, cron entry); stale when `gen`
    /// is not the host's current one.
    Wake {
        host: u32,
        gen: u32,
    },
    /// A borrow returns its JRuby.
    Release {
        host: u32,
        run: u32,
    },
    /// The agent finished applying.
    ApplyDone {
        host: u32,
        run: u32,
    },
    /// The run is over (reported, or failed).
    RunEnd {
        host: u32,
        run: u32,
    },
    /// The strategy reads a server's status.
    Sample {
        server: u32,
    },
    Tick,
    Minute {
        minute: u32,
    },
    FileChange {
        host: u32,
    },
    Restart {
        host: u32,
    },
    OutageStart,
    OutageEnd,
    Converge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Compile,
    Apply,
    Report,
    /// The end event is queued.
    Ending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvergeMark {
    No,
    Pending,
    Done,
}

#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub pool: u32,
    gen: u32,
    run: u32,
    pub phase: Phase,
    pub server: u32,
    pub mode: RunMode,
    pub trigger: Trigger,
    pub run_start: i64,
    hold_ms: i64,
    pub compile_ok: bool,
    /// Start of the last full run whose compile succeeded (the simulation's
    /// start until then).
    last_full: i64,
    /// Longest gap between full runs ending after the warm-up.
    max_gap: i64,
    /// Earliest change of a monitored file not yet followed by a run.
    pending_change: i64,
    converge: ConvergeMark,
}

pub struct PoolState {
    pub servers: Vec<usize>,
    rr: usize,
}

/// The scheduler's own view, once a minute (pvc only).
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedServerMinute {
    pub rate: f64,
    pub utilization: f64,
    pub run_cost: f64,
    pub tokens: f64,
    pub up: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SchedPoolMinute {
    pub rate: f64,
    pub cycle_secs: f64,
    pub shortage: bool,
    pub reserved_rate: f64,
}

/// Everything measured during one strategy's run.
#[derive(Default)]
pub struct Measure {
    /// Run starts per second of the whole fleet.
    pub starts_per_sec: Vec<u32>,
    /// Borrow queue waits (compile and report borrows), after the warm-up.
    pub waits: Samples,
    /// Gaps between consecutive full runs of a host, ending after the warm-up.
    pub gaps: Samples,
    /// From a file change (made between runs, after the warm-up) to the
    /// start of the next run of that host.
    pub change_delays: Samples,
    pub changes_between_runs: u64,
    pub changes_during_runs: u64,
    pub runs: u64,
    pub full_runs: u64,
    pub cached_runs: u64,
    pub forced_runs: u64,
    pub converge_runs: u64,
    /// Started on a server that was down: failed at once.
    pub failed_server_down: u64,
    /// Lost when their server went down while they waited or compiled.
    pub failed_in_flight: u64,
    pub reports_lost: u64,
    /// A run that could not start because the pool had no server up.
    pub no_server: u64,
    /// The strategy wanted a run while one was in progress (cron: the
    /// agent's lock makes the second exit 1).
    pub skipped_busy: u64,
    pub grants_to_down: u64,
    /// … of which after the first failed status read of that server.
    pub grants_to_down_after_detection: u64,
    pub last_grant_to_down_at: Option<i64>,
    pub outage_detected_at: Option<i64>,
    pub converge_started: Option<i64>,
    pub converge_supported: bool,
    pub converge_size: u32,
    pub converge_left: u32,
    pub converge_done_at: Option<i64>,
    /// What the scheduler itself says of the converge request.
    pub sched_converge_done_at: Option<i64>,
    pub sched_converge_estimated_finish: Option<i64>,
    pub hosts_beyond_max_interval: u64,
    pub max_gap_ms: i64,
    /// File changes (after the warm-up) still waiting for a run at the end.
    pub changes_unserved: u64,
    /// Strategy-specific counters, for the summary.
    pub counters: Vec<(&'static str, u64)>,
    pub sched_servers: Vec<Vec<SchedServerMinute>>,
    pub sched_pools: Vec<Vec<SchedPoolMinute>>,
}

impl Measure {
    pub fn count(&mut self, name: &'static str, by: u64) {
        match self.counters.iter_mut().find(|(n, _)| *n == name) {
            Some((_, value)) => *value += by,
            None => self.counters.push((name, by)),
        }
    }
}

pub struct World {
    pub config: Arc<Config>,
    pub scenario: Arc<Scenario>,
    pub now: i64,
    pub t0: i64,
    pub end: i64,
    pub warmup_end: i64,
    queue: Calendar<Ev>,
    pub servers: Vec<Server>,
    pub pools: Vec<PoolState>,
    pub hosts: Vec<Host>,
    run_times: Rng,
    pub m: Measure,
}

impl World {
    pub fn new(config: Arc<Config>, scenario: Arc<Scenario>) -> World {
        let t0 = T0_MS;
        let end = t0 + (config.duration_s() * 1000.0).round() as i64;
        let minutes = config.minutes();
        let servers: Vec<Server> = scenario
            .servers
            .iter()
            .map(|(pool, name)| {
                Server::new(Arc::from(name.as_str()), *pool, config.jrubies, t0, minutes)
            })
            .collect();
        let pools = (0..config.pools as usize)
            .map(|p| PoolState {
                servers: (0..servers.len())
                    .filter(|&s| servers[s].pool == p)
                    .collect(),
                rr: 0,
            })
            .collect();
        let hosts = scenario
            .host_pool
            .iter()
            .map(|&pool| Host {
                pool,
                gen: 0,
                run: 0,
                phase: Phase::Idle,
                server: 0,
                mode: RunMode::Full,
                trigger: Trigger::Schedule,
                run_start: NONE,
                hold_ms: 0,
                compile_ok: false,
                last_full: t0,
                max_gap: 0,
                pending_change: NONE,
                converge: ConvergeMark::No,
            })
            .collect();
        let seconds = ((end - t0 + 999) / 1000) as usize;
        let m = Measure {
            starts_per_sec: vec![0; seconds],
            ..Measure::default()
        };
        World {
            run_times: Rng::new(config.seed, stream::RUN_TIMES),
            warmup_end: t0 + (config.warmup_s * 1000.0).round() as i64,
            queue: Calendar::new(t0),
            servers,
            pools,
            hosts,
            m,
            now: t0,
            t0,
            end,
            config,
            scenario,
        }
    }

    pub fn push(&mut self, at: i64, ev: Ev) {
        self.queue.push(at, ev);
    }

    pub fn pop(&mut self) -> Option<(i64, Ev)> {
        let (at, ev) = self.queue.pop()?;
        if at >= self.end {
            return None;
        }
        self.now = at;
        Some((at, ev))
    }

    /// The host's timer fires at `at`; any earlier timer is cancelled.
    pub fn wake_at(&mut self, host: u32, at: i64) {
        let h = &mut self.hosts[host as usize];
        h.gen = h.gen.wrapping_add(1);
        let gen = h.gen;
        self.queue.push(at.max(self.now), Ev::Wake { host, gen });
    }

    /// Cancels the host's timer.
    pub fn cancel_wake(&mut self, host: u32) {
        let h = &mut self.hosts[host as usize];
        h.gen = h.gen.wrapping_add(1);
    }

    pub fn is_current(&self, host: u32, gen: u32) -> bool {
        self.hosts[host as usize].gen == gen
    }

    pub fn is_idle(&self, host: u32) -> bool {
        self.hosts[host as usize].phase == Phase::Idle
    }

    /// A load balancer's choice: round robin over the pool's servers that
    /// are up (a health check takes a dead one out at once).
    pub fn lb_pick(&mut self, pool: usize) -> Option<usize> {
        let state = &mut self.pools[pool];
        let n = state.servers.len();
        for i in 0..n {
            let candidate = state.servers[(state.rr + i) % n];
            if self.servers[candidate].up {
                state.rr = (state.rr + i + 1) % n;
                return Some(candidate);
            }
        }
        None
    }

    fn sec_ix(&self) -> usize {
        (((self.now - self.t0) / 1000) as usize).min(self.m.starts_per_sec.len() - 1)
    }

    /// Starts a run of an idle host on `server`, now.
    pub fn start_run(&mut self, host: u32, server: usize, mode: RunMode, trigger: Trigger) {
        let now = self.now;
        let sec = self.sec_ix();
        let h = &mut self.hosts[host as usize];
        assert_eq!(h.phase, Phase::Idle, "run started on a busy host");
        h.run = h.run.wrapping_add(1);
        h.server = server as u32;
        h.mode = mode;
        h.trigger = trigger;
        h.run_start = now;
        h.compile_ok = false;
        if h.pending_change != NONE {
            if h.pending_change >= self.warmup_end {
                self.m.change_delays.push_ms(now - h.pending_change);
            }
            h.pending_change = NONE;
        }
        let run = h.run;
        self.m.starts_per_sec[sec] += 1;
        self.m.runs += 1;
        match mode {
            RunMode::Full => self.m.full_runs += 1,
            RunMode::CachedCatalog => self.m.cached_runs += 1,
        }
        match trigger {
            Trigger::FileChange => self.m.forced_runs += 1,
            Trigger::Converge => self.m.converge_runs += 1,
            Trigger::Schedule => {}
        }
        let srv = &mut self.servers[server];
        let minute = srv.minute_ix(now);
        let sm = &mut srv.minutes[minute];
        sm.runs_started += 1;
        match mode {
            RunMode::Full => sm.full_started += 1,
            RunMode::CachedCatalog => sm.cached_started += 1,
        }
        if !srv.up {
            sm.failed += 1;
            self.m.failed_server_down += 1;
            self.m.grants_to_down += 1;
            self.m.last_grant_to_down_at = Some(now);
            if self.m.outage_detected_at.is_some() {
                self.m.grants_to_down_after_detection += 1;
            }
            self.end_soon(host, run);
            return;
        }
        match mode {
            RunMode::Full => self.borrow(host, Borrow::Compile),
            RunMode::CachedCatalog => {
                self.hosts[host as usize].phase = Phase::Apply;
                let apply = self.draw(self.config.apply);
                self.queue.push(now + apply, Ev::ApplyDone { host, run });
            }
        }
    }

    /// A run that could not start for want of a server.
    pub fn no_server(&mut self) {
        self.m.no_server += 1;
    }

    fn draw(&mut self, d: super::config::Lognormal) -> i64 {
        ((self.run_times.lognormal(d.mean_s, d.sigma) * 1000.0).round() as i64).max(1)
    }

    fn end_soon(&mut self, host: u32, run: u32) {
        self.hosts[host as usize].phase = Phase::Ending;
        self.queue.push(self.now, Ev::RunEnd { host, run });
    }

    fn borrow(&mut self, host: u32, borrow: Borrow) {
        let d = match borrow {
            Borrow::Compile => self.config.compile,
            Borrow::Report => self.config.report,
        };
        let hold_ms = self.draw(d);
        let h = &mut self.hosts[host as usize];
        h.phase = match borrow {
            Borrow::Compile => Phase::Compile,
            Borrow::Report => Phase::Report,
        };
        h.hold_ms = hold_ms;
        let server = h.server as usize;
        let waiting = Waiting {
            host,
            borrow,
            arrived: self.now,
            hold_ms,
        };
        if let Some(acquired) = self.servers[server].request(self.now, waiting) {
            self.acquired(acquired);
        }
    }

    fn acquired(&mut self, acquired: Acquired) {
        if self.now >= self.warmup_end {
            self.m.waits.push_ms(acquired.waited_ms);
        }
        let run = self.hosts[acquired.host as usize].run;
        self.queue.push(
            acquired.release_at,
            Ev::Release {
                host: acquired.host,
                run,
            },
        );
    }

    /// A borrow returns its JRuby: the next waiting request takes it, and
    /// the run moves on (compile → apply, report → end).
    pub fn on_release(&mut self, host: u32, run: u32) {
        let h = self.hosts[host as usize];
        if h.run != run || !matches!(h.phase, Phase::Compile | Phase::Report) {
            return; // lost in an outage
        }
        let server = h.server as usize;
        if let Some(next) = self.servers[server].release(self.now, h.hold_ms) {
            self.acquired(next);
        }
        match h.phase {
            Phase::Compile => {
                let warm_start = h.run_start >= self.warmup_end;
                let h = &mut self.hosts[host as usize];
                h.compile_ok = true;
                let gap = h.run_start - h.last_full;
                if warm_start {
                    h.max_gap = h.max_gap.max(gap);
                    self.m.gaps.push_ms(gap);
                }
                h.last_full = h.run_start;
                h.phase = Phase::Apply;
                let apply = self.draw(self.config.apply);
                self.queue
                    .push(self.now + apply, Ev::ApplyDone { host, run });
            }
            _ => self.end_soon(host, run),
        }
    }

    pub fn on_apply_done(&mut self, host: u32, run: u32) {
        let h = self.hosts[host as usize];
        if h.run != run || h.phase != Phase::Apply {
            return;
        }
        if self.servers[h.server as usize].up {
            self.borrow(host, Borrow::Report);
        } else {
            self.m.reports_lost += 1;
            self.end_soon(host, run);
        }
    }

    /// `true` when the run really ended now (the strategy hears of it).
    pub fn on_run_end(&mut self, host: u32, run: u32) -> bool {
        let converge_started = self.m.converge_started.unwrap_or(i64::MAX);
        let h = &mut self.hosts[host as usize];
        if h.run != run || h.phase != Phase::Ending {
            return false;
        }
        h.phase = Phase::Idle;
        if h.converge == ConvergeMark::Pending
            && h.mode == RunMode::Full
            && h.compile_ok
            && h.run_start >= converge_started
        {
            h.converge = ConvergeMark::Done;
            self.m.converge_left -= 1;
            if self.m.converge_left == 0 {
                self.m.converge_done_at = Some(self.now);
            }
        }
        true
    }

    /// A monitored file changed; `true` when the host is between runs (the
    /// agent sees it; during a run the agent ignores events, as the
    /// original pvc agent armed inotify only between runs).
    pub fn on_file_change(&mut self, host: u32) -> bool {
        let now = self.now;
        let h = &mut self.hosts[host as usize];
        if h.phase != Phase::Idle {
            self.m.changes_during_runs += 1;
            return false;
        }
        self.m.changes_between_runs += 1;
        if h.pending_change == NONE {
            h.pending_change = now;
        }
        true
    }

    pub fn on_outage_start(&mut self, server: usize) {
        self.servers[server].go_down(self.now);
        for host in 0..self.hosts.len() as u32 {
            let h = self.hosts[host as usize];
            if h.server as usize != server {
                continue;
            }
            match h.phase {
                Phase::Compile => self.m.failed_in_flight += 1,
                Phase::Report => self.m.reports_lost += 1,
                _ => continue,
            }
            self.end_soon(host, h.run);
        }
    }

    pub fn on_outage_end(&mut self, server: usize) {
        self.servers[server].come_up(self.now);
    }

    /// A status read of `server`; notes the first failed read of an outage.
    pub fn on_sample(&mut self, server: usize) {
        if !self.servers[server].up && self.m.outage_detected_at.is_none() {
            self.m.outage_detected_at = Some(self.now);
        }
    }

    /// Marks the converge set; a run counts when it starts from now on and
    /// its compile succeeds.
    pub fn on_converge(&mut self, hosts: &[u32]) {
        self.m.converge_started = Some(self.now);
        self.m.converge_size = hosts.len() as u32;
        self.m.converge_left = hosts.len() as u32;
        for &host in hosts {
            self.hosts[host as usize].converge = ConvergeMark::Pending;
        }
        if hosts.is_empty() {
            self.m.converge_done_at = Some(self.now);
        }
    }

    /// Closes the books at the end of the simulated time.
    pub fn finish(&mut self) {
        let end = self.end;
        for server in &mut self.servers {
            server.account(end);
        }
        let max_interval = (self.config.max_interval_s * 1000.0).round() as i64;
        let mut beyond = 0;
        let mut worst = 0;
        let mut unserved = 0;
        for h in &mut self.hosts {
            if h.pending_change != NONE && h.pending_change >= self.warmup_end {
                unserved += 1;
            }
            // The open gap: from the last full run to the end.
            h.max_gap = h.max_gap.max(end - h.last_full);
            worst = worst.max(h.max_gap);
            if h.max_gap > max_interval {
                beyond += 1;
            }
        }
        self.m.hosts_beyond_max_interval = beyond;
        self.m.max_gap_ms = worst;
        self.m.changes_unserved = unserved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::config::Lognormal;
    use crate::simulate::testing::{self, play, Step};

    fn tiny(hosts: u32, jrubies: u32) -> World {
        testing::world(Config {
            servers_per_pool: 2,
            jrubies,
            hours: 1.0,
            warmup_s: 0.0,
            // Nearly fixed durations: compile 2 s, report 0.5 s, apply 10 s.
            compile: Lognormal {
                mean_s: 2.0,
                sigma: 0.0,
            },
            report: Lognormal {
                mean_s: 0.5,
                sigma: 0.0,
            },
            apply: Lognormal {
                mean_s: 10.0,
                sigma: 0.0,
            },
            ..testing::quiet(hosts)
        })
    }

    /// Drives world events only (no strategy); returns the run ends.
    fn drain(world: &mut World) -> Vec<(i64, u32)> {
        let mut ends = Vec::new();
        play(world, |world, step| {
            if let Step::Ended(host) = step {
                ends.push((world.now - world.t0, host));
            }
        });
        ends
    }

    #[test]
    fn a_full_run_is_compile_apply_report() {
        let mut world = tiny(1, 1);
        world.start_run(0, 0, RunMode::Full, Trigger::Schedule);
        assert_eq!(drain(&mut world), vec![(12_500, 0)]);
        world.finish();
        assert_eq!(world.servers[0].minutes[0].busy_ms, 2_500);
        assert_eq!(world.servers[0].minutes[0].runs_started, 1);
        assert_eq!(world.m.full_runs, 1);
    }

    #[test]
    fn a_cached_catalog_run_only_borrows_for_its_report() {
        let mut world = tiny(1, 1);
        world.start_run(0, 0, RunMode::CachedCatalog, Trigger::FileChange);
        assert_eq!(drain(&mut world), vec![(10_500, 0)]);
        world.finish();
        assert_eq!(world.servers[0].minutes[0].busy_ms, 500);
        assert_eq!((world.m.cached_runs, world.m.forced_runs), (1, 1));
    }

    #[test]
    fn with_one_jruby_the_second_run_waits_the_first_compile() {
        let mut world = tiny(2, 1);
        world.start_run(0, 0, RunMode::Full, Trigger::Schedule);
        world.start_run(1, 0, RunMode::Full, Trigger::Schedule);
        let ends = drain(&mut world);
        // Host 1 compiles from 2 s to 4 s; host 0's report (12 s) and host
        // 1's (14 s) do not overlap.
        assert_eq!(ends, vec![(12_500, 0), (14_500, 1)]);
        let waits = world.m.waits.dist().unwrap();
        assert_eq!(waits.count, 4);
        assert_eq!(waits.max, 2.0);
    }

    #[test]
    fn a_run_on_a_server_that_is_down_fails_at_once_and_is_not_a_full_run() {
        let mut world = tiny(1, 1);
        world.on_outage_start(1);
        world.start_run(0, 1, RunMode::Full, Trigger::Schedule);
        assert_eq!(drain(&mut world), vec![(0, 0)]);
        assert_eq!(world.m.failed_server_down, 1);
        assert_eq!(world.m.grants_to_down, 1);
        assert!(world.m.gaps.is_empty());
        world.finish();
        // Never a successful full run: the whole hour is one open gap.
        assert_eq!(world.m.max_gap_ms, 3_600_000);
    }

    #[test]
    fn an_outage_fails_the_runs_waiting_or_compiling_there() {
        let mut world = tiny(3, 1);
        world.start_run(0, 0, RunMode::Full, Trigger::Schedule);
        world.start_run(1, 0, RunMode::Full, Trigger::Schedule);
        world.start_run(2, 1, RunMode::Full, Trigger::Schedule);
        world.on_outage_start(0);
        let ends = drain(&mut world);
        assert_eq!(ends, vec![(0, 0), (0, 1), (12_500, 2)]);
        assert_eq!(world.m.failed_in_flight, 2);
        assert!(world.lb_pick(0) == Some(1) && world.lb_pick(0) == Some(1));
    }

    #[test]
    fn a_file_change_is_timed_to_the_next_run_start() {
        let mut world = tiny(1, 1);
        world.now = world.t0 + 5_000;
        assert!(world.on_file_change(0));
        world.now = world.t0 + 65_000;
        world.start_run(0, 0, RunMode::CachedCatalog, Trigger::FileChange);
        assert!(!world.on_file_change(0), "ignored during a run");
        let delays = world.m.change_delays.dist().unwrap();
        assert_eq!((delays.count, delays.max), (1, 60.0));
        assert_eq!(world.m.changes_during_runs, 1);
    }

    #[test]
    fn round_robin_skips_servers_that_are_down() {
        let mut world = tiny(1, 1);
        let picks: Vec<_> = (0..4).map(|_| world.lb_pick(0).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        world.on_outage_start(0);
        world.on_outage_start(1);
        assert_eq!(world.lb_pick(0), None);
    }
}
