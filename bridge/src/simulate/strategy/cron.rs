//! cron with a hash-based minute, as `fqdn_rand` recipes and
//! voxpupuli/puppet_run_scheduler set it up: `m,m+30 * * * *` with
//! m = hash(certname) mod 30 (for a period of P minutes, every P minutes
//! from midnight at minute m). `puppet agent --onetime` runs at second 0.
//! An entry that fires while the previous run still holds the agent's
//! lock exits 1 at once (counted as skipped). Servers sit behind a load
//! balancer.

use crate::schedule::{RunMode, Trigger};

use super::super::config::StrategyKind;
use super::super::world::World;
use super::Strategy;

pub struct Cron {
    period_ms: i64,
    period_min: u64,
}

impl Cron {
    pub fn new(world: &World) -> Cron {
        let period_ms = ((world.config.period_s / 60.0).round() as i64).max(1) * 60_000;
        Cron {
            period_ms,
            period_min: (period_ms / 60_000) as u64,
        }
    }

    /// The host's cron minute within the period.
    pub fn minute_of(&self, certname: &str) -> u64 {
        fnv1a(certname.as_bytes()) % self.period_min
    }

    /// First firing at or after `now` (ms since the start, midnight).
    fn first_fire(&self, minute: u64, from: i64) -> i64 {
        let offset = minute as i64 * 60_000;
        if from <= offset {
            return offset;
        }
        let periods = (from - offset + self.period_ms - 1) / self.period_ms;
        offset + periods * self.period_ms
    }
}

/// FNV-1a, 64 bits: a stable hash of the certname.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

impl Strategy for Cron {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Cron
    }

    fn init(&mut self, world: &mut World) {
        let scenario = world.scenario.clone();
        for (host, certname) in scenario.certnames.iter().enumerate() {
            let at = world.t0 + self.first_fire(self.minute_of(certname), world.now - world.t0);
            world.wake_at(host as u32, at);
        }
    }

    fn wake(&mut self, world: &mut World, host: u32) {
        let now = world.now;
        world.wake_at(host, now + self.period_ms);
        if !world.is_idle(host) {
            world.m.skipped_busy += 1;
            return;
        }
        let pool = world.hosts[host as usize].pool as usize;
        match world.lb_pick(pool) {
            Some(server) => world.start_run(host, server, RunMode::Full, Trigger::Schedule),
            None => world.no_server(),
        }
    }

    fn run_ended(&mut self, world: &mut World, host: u32) {
        let _ = (world, host); // the next entry is already set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::testing::{self, play, Step};

    fn world(hosts: u32) -> World {
        testing::world(testing::quiet(hosts))
    }

    #[test]
    fn hashed_minutes_spread_over_the_half_hour() {
        let w = world(30_000);
        let cron = Cron::new(&w);
        let mut per_minute = [0u32; 30];
        for certname in &w.scenario.certnames {
            per_minute[cron.minute_of(certname) as usize] += 1;
        }
        // 1,000 per minute expected; sd ≈ 31.
        assert!(
            per_minute.iter().all(|&n| (850..1_150).contains(&n)),
            "{per_minute:?}"
        );
    }

    #[test]
    fn entries_fire_at_second_zero_of_m_and_m_plus_30() {
        let w = world(1);
        let cron = Cron::new(&w);
        assert_eq!(cron.first_fire(7, 0), 7 * 60_000);
        assert_eq!(cron.first_fire(7, 7 * 60_000), 7 * 60_000);
        assert_eq!(cron.first_fire(7, 7 * 60_000 + 1), 37 * 60_000);
        assert_eq!(cron.first_fire(7, 40 * 60_000), 67 * 60_000);
    }

    #[test]
    fn every_host_runs_twice_an_hour_and_a_busy_host_skips() {
        let mut w = world(200);
        let mut cron = Cron::new(&w);
        cron.init(&mut w);
        let mut starts = vec![Vec::new(); 200];
        play(&mut w, |w, step| match step {
            Step::Wake(host) => {
                if w.is_idle(host) {
                    starts[host as usize].push(w.now - w.t0);
                }
                cron.wake(w, host);
            }
            Step::Ended(host) => cron.run_ended(w, host),
        });
        for (host, s) in starts.iter().enumerate() {
            assert_eq!(s.len(), 48, "host {host}");
            assert!(s.iter().all(|t| t % 60_000 == 0));
            assert!(s.windows(2).all(|p| p[1] - p[0] == 1_800_000));
        }
        assert_eq!(w.m.skipped_busy, 0);
    }
}
