//! The fleet and the outside events of one simulation, drawn once from the
//! seed and shared by every strategy, so that all of them face the same
//! file changes, restarts and converge set.

use super::config::Config;
use super::rng::Rng;

/// RNG streams: one per purpose, so adding draws to one changes no other.
pub mod stream {
    pub const FILE_CHANGES: u64 = 1;
    pub const RESTARTS: u64 = 2;
    pub const CONVERGE: u64 = 3;
    pub const RUN_TIMES: u64 = 4;
    pub const AGENT_START: u64 = 5;
}

pub struct Scenario {
    pub certnames: Vec<String>,
    /// Pool of each host.
    pub host_pool: Vec<u32>,
    pub pool_names: Vec<String>,
    /// (pool, name) of each server, pool by pool.
    pub servers: Vec<(usize, String)>,
    /// (seconds from start, host), in time order.
    pub file_changes: Vec<(f64, u32)>,
    /// (seconds from start, host), in time order.
    pub restarts: Vec<(f64, u32)>,
    /// The hosts of the converge request, distinct.
    pub converge_hosts: Vec<u32>,
}

impl Scenario {
    pub fn new(config: &Config) -> Scenario {
        let n = config.hosts;
        let certnames = (0..n).map(|i| format!("node{i:06}.example.com")).collect();
        // Hosts are spread over the pools round robin (a pool per data centre).
        let host_pool = (0..n).map(|i| i % config.pools).collect();
        let pool_names = (1..=config.pools).map(|p| format!("dc{p}")).collect();
        let mut servers = Vec::new();
        for pool in 0..config.pools as usize {
            for s in 1..=config.servers_per_pool {
                servers.push((pool, format!("puppet{s}.dc{}", pool + 1)));
            }
        }

        let duration = config.duration_s();
        let mut file_changes = Vec::new();
        if config.file_changes_per_hour > 0.0 {
            let mut rng = Rng::new(config.seed, stream::FILE_CHANGES);
            let mean_gap = 3600.0 / config.file_changes_per_hour;
            let mut t = rng.exponential(mean_gap);
            while t < duration {
                file_changes.push((t, rng.below(n as u64) as u32));
                t += rng.exponential(mean_gap);
            }
        }

        let mut restarts = Vec::new();
        if let Some(restart) = config.restart {
            let mut rng = Rng::new(config.seed, stream::RESTARTS);
            for host in 0..n {
                if rng.uniform() < restart.fraction {
                    restarts.push((restart.start_s + rng.uniform() * restart.over_s, host));
                }
            }
            restarts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }

        let mut converge_hosts = Vec::new();
        if let Some(converge) = config.converge {
            // Partial Fisher–Yates: `hosts` distinct hosts.
            let mut rng = Rng::new(config.seed, stream::CONVERGE);
            let mut all: Vec<u32> = (0..n).collect();
            let k = converge.hosts.min(n) as usize;
            for i in 0..k {
                let j = i + rng.below((n as usize - i) as u64) as usize;
                all.swap(i, j);
            }
            all.truncate(k);
            converge_hosts = all;
        }

        Scenario {
            certnames,
            host_pool,
            pool_names,
            servers,
            file_changes,
            restarts,
            converge_hosts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_configuration() {
        let config = Config {
            hosts: 2_000,
            pools: 2,
            ..Config::default()
        };
        let scenario = Scenario::new(&config);
        assert_eq!(scenario.certnames.len(), 2_000);
        assert_eq!(scenario.servers.len(), 8);
        assert_eq!(scenario.servers[4], (1, "puppet1.dc2".to_owned()));
        // 300 per hour for 24 h: 7,200 expected (Poisson, sd ≈ 85).
        let changes = scenario.file_changes.len();
        assert!((6_800..7_600).contains(&changes), "{changes}");
        assert!(scenario.file_changes.windows(2).all(|w| w[0].0 <= w[1].0));
        // 30% restarted, within the five minutes from 09:00.
        let restarts = scenario.restarts.len();
        assert!((500..700).contains(&restarts), "{restarts}");
        assert!(scenario
            .restarts
            .iter()
            .all(|&(t, _)| (32_400.0..32_700.0).contains(&t)));
        let mut set = scenario.converge_hosts.clone();
        set.sort();
        set.dedup();
        // 10,000 asked of 2,000 hosts: all of them.
        assert_eq!(set.len(), 2_000);
    }

    #[test]
    fn converge_hosts_are_distinct_and_seeded() {
        let config = Config {
            hosts: 5_000,
            converge: Some(super::super::config::ConvergeSpec {
                hosts: 1_000,
                start_s: 0.0,
                within_s: 600.0,
            }),
            ..Config::default()
        };
        let a = Scenario::new(&config);
        let b = Scenario::new(&config);
        assert_eq!(a.converge_hosts, b.converge_hosts);
        let mut set = a.converge_hosts.clone();
        set.sort();
        set.dedup();
        assert_eq!(set.len(), 1_000);
        let other = Scenario::new(&Config { seed: 2, ..config });
        assert_ne!(a.converge_hosts, other.converge_hosts);
    }
}
