//! pvc-bridge: the real `schedule::Scheduler`, driven as the service
//! drives it. This adapter only translates: agents poll at the interval
//! their last answer gave (the first poll spread over one interval) and at
//! once when a monitored file changes between runs; a grant starts the run
//! on the granted server; the end of the run is `finished`; every server's
//! status is read every `sample_interval_s` (`observe`, or
//! `observe_failure` while it is down); `tick` once a virtual second.
//!
//! The scheduler gets `SchedulerConfig::default()` apart from the fleet's
//! period, poll interval, interval bounds and target: in particular its
//! guessed run cost stays the default, it has to measure the real one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::schedule::{
    ConvergeId, Decision, HostIx, Poll, Reason, Scheduler, SchedulerConfig, ServerSpec, Ts,
};

use super::super::config::StrategyKind;
use super::super::rng::Rng;
use super::super::scenario::stream;
use super::super::world::{SchedPoolMinute, SchedServerMinute, World};
use super::Strategy;

pub struct Pvc {
    scheduler: Scheduler,
    ix: Vec<HostIx>,
    /// The check interval of the decision that granted the host's current
    /// run: the agent waits that long after the run.
    after_run_ms: Vec<i64>,
    server_ix: HashMap<Arc<str>, usize>,
    converge: Option<ConvergeId>,
    rng: Rng,
    reasons: [u64; 7],
    fact_runs: u64,
    over_forced_budget: u64,
    polls: u64,
    forced_polls: u64,
}

const REASONS: [&str; 7] = [
    "decisions: due",
    "decisions: forced_run",
    "decisions: converge",
    "decisions: not_due",
    "decisions: no_capacity",
    "decisions: run_in_progress",
    "decisions: no_server",
];

fn reason_ix(reason: &Reason) -> usize {
    match reason {
        Reason::Due => 0,
        Reason::ForcedRun => 1,
        Reason::Converge { .. } => 2,
        Reason::NotDue { .. } => 3,
        Reason::NoCapacity => 4,
        Reason::RunInProgress => 5,
        Reason::NoServer => 6,
    }
}

/// Sets `minute`'s entry of a per-minute series; minutes the scheduler did
/// not report (not yet known to it) get the default.
fn record<T: Clone + Default>(series: &mut Vec<T>, minute: usize, value: T) {
    series.resize(minute, T::default());
    series.push(value);
}

/// The scheduler's configuration for a simulated fleet.
pub fn scheduler_config(config: &super::super::config::Config) -> SchedulerConfig {
    SchedulerConfig {
        target_period: config.period_s,
        min_interval: config.min_interval_s,
        max_interval: config.max_interval_s,
        target_utilization: config.target_utilization,
        check_interval: config.poll_s,
        ..SchedulerConfig::default()
    }
}

impl Pvc {
    pub fn new(world: &World) -> Pvc {
        let config = &world.config;
        let scenario = &world.scenario;
        let specs: Vec<ServerSpec> = scenario
            .servers
            .iter()
            .map(|(pool, name)| ServerSpec {
                name: name.clone(),
                pool: scenario.pool_names[*pool].clone(),
                jrubies: config.jrubies,
                monitored: true,
            })
            .collect();
        let mut scheduler = Scheduler::new(scheduler_config(config), specs, Ts(world.now));
        let ix = scenario
            .certnames
            .iter()
            .zip(&scenario.host_pool)
            .map(|(certname, &pool)| {
                scheduler.upsert_host(certname, &scenario.pool_names[pool as usize])
            })
            .collect();
        let server_ix = world
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Pvc {
            scheduler,
            ix,
            after_run_ms: vec![0; config.hosts as usize],
            server_ix,
            converge: None,
            rng: Rng::new(config.seed, stream::AGENT_START),
            reasons: [0; 7],
            fact_runs: 0,
            over_forced_budget: 0,
            polls: 0,
            forced_polls: 0,
        }
    }

    fn poll(&mut self, world: &mut World, host: u32, poll: Poll) {
        let now = world.now;
        let decision = self.scheduler.poll(Ts(now), self.ix[host as usize], poll);
        self.polls += 1;
        self.handle(world, host, decision);
    }

    fn handle(&mut self, world: &mut World, host: u32, decision: Decision) {
        self.reasons[reason_ix(&decision.reason)] += 1;
        self.fact_runs += decision.fact_run as u64;
        self.over_forced_budget += decision.over_forced_budget as u64;
        // An agent never polls faster than once a second.
        let interval_ms = (decision.check_interval as i64 * 1000).max(1000);
        match decision.run {
            Some(grant) => {
                let server = *self
                    .server_ix
                    .get(&grant.server)
                    .unwrap_or_else(|| panic!("grant to an unknown server {}", grant.server));
                self.after_run_ms[host as usize] = interval_ms;
                world.cancel_wake(host);
                world.start_run(host, server, grant.mode, grant.trigger);
            }
            None => world.wake_at(host, world.now + interval_ms),
        }
    }
}

impl Strategy for Pvc {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Pvc
    }

    fn init(&mut self, world: &mut World) {
        let poll_ms = (world.config.poll_s * 1000.0).round() as u64;
        for host in 0..world.hosts.len() as u32 {
            let at = world.now + self.rng.below(poll_ms) as i64;
            world.wake_at(host, at);
        }
    }

    fn wake(&mut self, world: &mut World, host: u32) {
        if world.is_idle(host) {
            self.poll(world, host, Poll::Regular);
        }
    }

    fn run_ended(&mut self, world: &mut World, host: u32) {
        let h = &world.hosts[host as usize];
        // A full run whose compile never happened (its server went down)
        // reports as an agent does: exit code 1, due again.
        if h.mode == crate::schedule::RunMode::Full && !h.compile_ok {
            self.scheduler.failed(Ts(world.now), self.ix[host as usize]);
        } else {
            self.scheduler
                .finished(Ts(world.now), self.ix[host as usize]);
        }
        let at = world.now + self.after_run_ms[host as usize];
        world.wake_at(host, at);
    }

    fn file_changed(&mut self, world: &mut World, host: u32) {
        self.forced_polls += 1;
        self.poll(world, host, Poll::FileChange);
    }

    fn restarted(&mut self, world: &mut World, host: u32) {
        // A restarted agent polls at once.
        if world.is_idle(host) {
            world.wake_at(host, world.now);
        }
    }

    fn converge(&mut self, world: &mut World, hosts: &[u32], within_s: f64) -> bool {
        let ixs: Vec<HostIx> = hosts.iter().map(|&h| self.ix[h as usize]).collect();
        self.converge = Some(self.scheduler.converge(Ts(world.now), &ixs, within_s));
        true
    }

    fn reads_status(&self) -> bool {
        true
    }

    fn sample(&mut self, world: &mut World, server: usize) {
        let now = world.now;
        let s = &mut world.servers[server];
        if s.up {
            let sample = s.sample(now);
            self.scheduler.observe(&s.name, &sample, Ts(now));
        } else {
            self.scheduler.observe_failure(&s.name, Ts(world.now));
        }
    }

    fn ticks(&self) -> bool {
        true
    }

    fn tick(&mut self, world: &mut World) {
        self.scheduler.tick(Ts(world.now));
    }

    fn minute(&mut self, world: &mut World, minute: usize) {
        let stats = self.scheduler.stats();
        let m = &mut world.m;
        if m.sched_servers.is_empty() {
            m.sched_servers = vec![Vec::new(); world.servers.len()];
            m.sched_pools = vec![Vec::new(); world.pools.len()];
        }
        for s in &stats.servers {
            if let Some(&i) = self.server_ix.get(&s.name) {
                record(
                    &mut m.sched_servers[i],
                    minute,
                    SchedServerMinute {
                        rate: s.rate,
                        utilization: s.utilization,
                        run_cost: s.run_cost,
                        tokens: s.tokens,
                        up: s.up,
                    },
                );
            }
        }
        for p in &stats.pools {
            if let Some(i) = world
                .scenario
                .pool_names
                .iter()
                .position(|n| **n == *p.name)
            {
                record(
                    &mut m.sched_pools[i],
                    minute,
                    SchedPoolMinute {
                        rate: p.rate,
                        cycle_secs: p.cycle_secs,
                        shortage: p.shortage,
                        reserved_rate: p.reserved_rate,
                    },
                );
            }
        }
    }

    fn finish(&mut self, world: &mut World) {
        for (name, count) in REASONS.iter().zip(self.reasons) {
            world.m.count(name, count);
        }
        world.m.count("polls", self.polls);
        world.m.count("file-change polls", self.forced_polls);
        world
            .m
            .count("file-change polls over budget", self.over_forced_budget);
        world.m.count("fact runs", self.fact_runs);
        if let Some(status) = self
            .converge
            .and_then(|id| self.scheduler.converge_status(id))
        {
            world.m.sched_converge_done_at = status.done_at.map(|t| t.0);
            world.m.sched_converge_estimated_finish = Some(status.estimated_finish.0);
        }
    }
}
