//! Puppet's agent daemon: `runinterval` with `splay`.
//!
//! As `Puppet::Scheduler::SplayJob` and `Job` do (puppetlabs/puppet,
//! lib/puppet/scheduler/): the first run waits `rand(splaylimit + 1)`
//! seconds from the daemon's start (splaylimit = runinterval), once; after
//! that the job is ready when `last_run + run_interval <= now`, and
//! `last_run` is set when a run *starts*. The daemon's loop runs the job in
//! its own thread, so a run longer than the interval delays the next one
//! to its end. A restart draws a new splay. Without splay every agent's
//! first run is at its daemon's start. Servers sit behind a load balancer.

use crate::schedule::{RunMode, Trigger};

use super::super::config::StrategyKind;
use super::super::rng::Rng;
use super::super::scenario::stream;
use super::super::world::World;
use super::Strategy;

pub struct Daemon {
    runinterval_ms: i64,
    splay: bool,
    /// When each host's job is next ready.
    next_due: Vec<i64>,
    rng: Rng,
}

impl Daemon {
    pub fn new(world: &World) -> Daemon {
        let config = &world.config;
        Daemon {
            runinterval_ms: (config.period_s * 1000.0).round() as i64,
            splay: config.daemon_splay,
            next_due: vec![0; config.hosts as usize],
            rng: Rng::new(config.seed, stream::AGENT_START),
        }
    }

    /// `rand(splaylimit + 1)` whole seconds, or none without splay.
    fn splay_ms(&mut self) -> i64 {
        if self.splay {
            let limit_s = self.runinterval_ms / 1000;
            self.rng.below(limit_s as u64 + 1) as i64 * 1000
        } else {
            0
        }
    }
}

impl Strategy for Daemon {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Daemon
    }

    fn init(&mut self, world: &mut World) {
        for host in 0..world.hosts.len() as u32 {
            let due = world.now + self.splay_ms();
            self.next_due[host as usize] = due;
            world.wake_at(host, due);
        }
    }

    fn wake(&mut self, world: &mut World, host: u32) {
        if !world.is_idle(host) {
            return; // run_ended picks the job up
        }
        let now = world.now;
        self.next_due[host as usize] = now + self.runinterval_ms;
        let pool = world.hosts[host as usize].pool as usize;
        match world.lb_pick(pool) {
            Some(server) => world.start_run(host, server, RunMode::Full, Trigger::Schedule),
            None => {
                world.no_server();
                world.wake_at(host, now + self.runinterval_ms);
            }
        }
    }

    fn run_ended(&mut self, world: &mut World, host: u32) {
        let due = self.next_due[host as usize].max(world.now);
        world.wake_at(host, due);
    }

    fn restarted(&mut self, world: &mut World, host: u32) {
        // A new daemon: a new start time and a new splay; the job has not
        // run yet in this process.
        let due = world.now + self.splay_ms();
        self.next_due[host as usize] = due;
        if world.is_idle(host) {
            world.wake_at(host, due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::config::Config;
    use crate::simulate::testing::{self, play, Step};

    fn world(hosts: u32, splay: bool) -> World {
        testing::world(Config {
            daemon_splay: splay,
            ..testing::quiet(hosts)
        })
    }

    /// The hosts' first timers, in seconds from the start.
    fn first_wakes(world: &mut World) -> Vec<i64> {
        let mut wakes = Vec::new();
        while let Some((at, ev)) = world.pop() {
            if let crate::simulate::world::Ev::Wake { .. } = ev {
                wakes.push((at - world.t0) / 1000);
            }
        }
        wakes
    }

    #[test]
    fn splay_spreads_first_runs_over_the_runinterval() {
        let mut w = world(30_000, true);
        let mut daemon = Daemon::new(&w);
        daemon.init(&mut w);
        let wakes = first_wakes(&mut w);
        assert_eq!(wakes.len(), 30_000);
        assert!(wakes.iter().all(|&s| (0..=1800).contains(&s)));
        // Uniform: each 5-minute sixth holds ~5,000 (sd ≈ 65).
        for sixth in 0..6 {
            let n = wakes.iter().filter(|&&s| s / 300 == sixth).count();
            assert!((4_700..5_300).contains(&n), "sixth {sixth}: {n}");
        }
    }

    #[test]
    fn without_splay_every_agent_runs_at_its_start() {
        let mut w = world(100, false);
        let mut daemon = Daemon::new(&w);
        daemon.init(&mut w);
        assert!(first_wakes(&mut w).iter().all(|&s| s == 0));
    }

    #[test]
    fn splay_is_drawn_once_then_runs_follow_the_interval() {
        let mut w = world(1, true);
        let mut daemon = Daemon::new(&w);
        daemon.init(&mut w);
        let mut starts = Vec::new();
        play(&mut w, |w, step| match step {
            Step::Wake(host) => {
                starts.push(w.now - w.t0);
                daemon.wake(w, host);
            }
            Step::Ended(host) => daemon.run_ended(w, host),
        });
        assert_eq!(starts.len(), 48);
        assert!(starts.windows(2).all(|p| p[1] - p[0] == 1_800_000));
        // A restart draws a new splay from the restart.
        let mut w2 = world(1, true);
        let mut d2 = Daemon::new(&w2);
        d2.init(&mut w2);
        w2.now += 100_000;
        d2.restarted(&mut w2, 0);
        let due = d2.next_due[0] - w2.now;
        assert!((0..=1_800_000).contains(&due));
    }
}
