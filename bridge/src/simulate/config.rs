//! What one simulation runs: the fleet, the servers, the run-time model,
//! the events and the strategies. Built from the command line
//! (`super::Args`) or directly by tests; validated once.

use serde::Serialize;

/// A strategy to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// pvc-bridge's scheduler (`schedule::Scheduler`), agents polling `/host`.
    Pvc,
    /// Puppet's agent daemon: `runinterval` with splay, behind a load balancer.
    Daemon,
    /// cron: `m,m+30 * * * *` with m = hash(certname) mod 30, behind a load balancer.
    Cron,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Pvc => "pvc",
            StrategyKind::Daemon => "daemon",
            StrategyKind::Cron => "cron",
        }
    }
}

/// A lognormal duration: its mean and its log-space standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lognormal {
    pub mean_s: f64,
    pub sigma: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Outage {
    /// Index into the server list (pool by pool).
    pub server: usize,
    pub start_s: f64,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConvergeSpec {
    pub hosts: u32,
    pub start_s: f64,
    pub within_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RestartSpec {
    pub start_s: f64,
    /// Share of the agents restarted.
    pub fraction: f64,
    /// The restarts are spread uniformly over this long.
    pub over_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub hosts: u32,
    pub pools: u32,
    pub servers_per_pool: u32,
    pub jrubies: u32,
    /// Target period of the scheduler, `runinterval` of the daemon, cron's period.
    pub period_s: f64,
    /// The agents' poll interval (`PVC_CHECK_INTERVAL` default).
    pub poll_s: f64,
    /// The scheduler's bounds on a host's interval.
    pub min_interval_s: f64,
    pub max_interval_s: f64,
    pub target_utilization: f64,
    pub hours: f64,
    pub warmup_s: f64,
    pub seed: u64,
    /// JRuby held for node + catalog + file metadata.
    pub compile: Lognormal,
    /// JRuby held for the report.
    pub report: Lognormal,
    /// The agent applying the catalog (no JRuby held).
    pub apply: Lognormal,
    /// How often each server's status is read, seconds.
    pub sample_interval_s: f64,
    pub outage: Option<Outage>,
    pub converge: Option<ConvergeSpec>,
    pub restart: Option<RestartSpec>,
    pub file_changes_per_hour: f64,
    /// The daemon baseline uses `splay = true` (else all agents start at once).
    pub daemon_splay: bool,
    pub strategies: Vec<StrategyKind>,
}

impl Default for Config {
    /// The issue's fleet: 100K hosts, one pool of 4 servers × 24 JRubies,
    /// 30-min period, 60 s polls, one simulated day, with an outage, a
    /// converge request, file changes and a mass agent restart.
    fn default() -> Self {
        Config {
            hosts: 100_000,
            pools: 1,
            servers_per_pool: 4,
            jrubies: 24,
            period_s: 1800.0,
            poll_s: 60.0,
            min_interval_s: 900.0,
            max_interval_s: 3600.0,
            target_utilization: 0.8,
            hours: 24.0,
            warmup_s: 2.0 * 3600.0,
            seed: 1,
            compile: Lognormal {
                mean_s: 1.2,
                sigma: 0.6,
            },
            report: Lognormal {
                mean_s: 0.1,
                sigma: 0.5,
            },
            apply: Lognormal {
                mean_s: 12.0,
                sigma: 0.8,
            },
            sample_interval_s: 2.0,
            outage: Some(Outage {
                server: 1,
                start_s: 12.0 * 3600.0,
                duration_s: 3600.0,
            }),
            converge: Some(ConvergeSpec {
                hosts: 10_000,
                start_s: 15.0 * 3600.0,
                within_s: 1800.0,
            }),
            restart: Some(RestartSpec {
                start_s: 9.0 * 3600.0,
                fraction: 0.3,
                over_s: 300.0,
            }),
            file_changes_per_hour: 300.0,
            daemon_splay: true,
            strategies: vec![StrategyKind::Pvc, StrategyKind::Daemon, StrategyKind::Cron],
        }
    }
}

impl Config {
    pub fn servers(&self) -> usize {
        (self.pools * self.servers_per_pool) as usize
    }

    pub fn duration_s(&self) -> f64 {
        self.hours * 3600.0
    }

    pub fn minutes(&self) -> usize {
        (self.duration_s() / 60.0).ceil() as usize
    }

    /// Mean JRuby-seconds of one full run (compile + report).
    pub fn run_cost_s(&self) -> f64 {
        self.compile.mean_s + self.report.mean_s
    }

    /// Every reason the configuration cannot be simulated, at once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems: Vec<String> = Vec::new();
        fn check(problems: &mut Vec<String>, ok: bool, problem: &str) {
            if !ok {
                problems.push(problem.to_owned());
            }
        }
        check(&mut problems, self.hosts > 0, "hosts must be > 0");
        check(&mut problems, self.pools > 0, "pools must be > 0");
        check(&mut problems, self.pools <= 1000, "pools must be ≤ 1000");
        check(
            &mut problems,
            self.servers_per_pool > 0,
            "servers per pool must be > 0",
        );
        check(&mut problems, self.jrubies > 0, "jrubies must be > 0");
        check(
            &mut problems,
            self.period_s >= 60.0,
            "period must be ≥ 1 minute",
        );
        check(
            &mut problems,
            self.poll_s >= 1.0,
            "poll interval must be ≥ 1 s",
        );
        check(
            &mut problems,
            self.min_interval_s > 0.0 && self.min_interval_s <= self.period_s,
            "min interval must be in (0, period]",
        );
        check(
            &mut problems,
            self.max_interval_s >= self.period_s,
            "max interval must be ≥ period",
        );
        check(
            &mut problems,
            self.target_utilization > 0.0 && self.target_utilization <= 1.0,
            "target utilisation must be in (0, 1]",
        );
        check(
            &mut problems,
            self.hours > 0.0 && self.hours <= 24.0 * 14.0,
            "hours must be in (0, 336]",
        );
        check(
            &mut problems,
            self.warmup_s >= 0.0 && self.warmup_s < self.duration_s(),
            "warm-up must be shorter than the simulation",
        );
        for (name, d) in [
            ("compile", self.compile),
            ("report", self.report),
            ("apply", self.apply),
        ] {
            if !(d.mean_s > 0.0 && d.sigma >= 0.0 && d.sigma <= 3.0) {
                problems.push(format!("{name}: mean must be > 0 and sigma in [0, 3]"));
            }
        }
        check(
            &mut problems,
            self.sample_interval_s > 0.0,
            "sample interval must be > 0",
        );
        if let Some(outage) = self.outage {
            if outage.server >= self.servers() {
                problems.push(format!(
                    "outage server {} does not exist ({} servers)",
                    outage.server + 1,
                    self.servers()
                ));
            }
            check(
                &mut problems,
                outage.duration_s > 0.0,
                "outage duration must be > 0",
            );
            check(
                &mut problems,
                outage.start_s >= 0.0,
                "outage start must be ≥ 0",
            );
        }
        if let Some(converge) = self.converge {
            check(
                &mut problems,
                converge.hosts > 0 && converge.hosts <= self.hosts,
                "converge size must be in [1, hosts]",
            );
            check(
                &mut problems,
                converge.within_s > 0.0,
                "converge deadline must be > 0",
            );
        }
        if let Some(restart) = self.restart {
            check(
                &mut problems,
                restart.fraction > 0.0 && restart.fraction <= 1.0,
                "restart fraction must be in (0, 1]",
            );
            check(
                &mut problems,
                restart.over_s >= 0.0,
                "restart spread must be ≥ 0",
            );
        }
        check(
            &mut problems,
            self.file_changes_per_hour >= 0.0,
            "file-change rate must be ≥ 0",
        );
        check(
            &mut problems,
            !self.strategies.is_empty(),
            "no strategy to simulate",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid simulation: {}", problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_sized_as_the_issue_says() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.servers() * config.jrubies as usize, 96);
        // 100K runs per 30 min at the mean cost: ≈75% of 96 JRubies.
        let busy = config.hosts as f64 / config.period_s * config.run_cost_s() / 96.0;
        assert!((0.70..=0.80).contains(&busy), "{busy}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let config = Config {
            hosts: 0,
            jrubies: 0,
            outage: Some(Outage {
                server: 9,
                start_s: 0.0,
                duration_s: 60.0,
            }),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("hosts must be > 0"), "{error}");
        assert!(error.contains("jrubies must be > 0"), "{error}");
        assert!(error.contains("outage server 10 does not exist"), "{error}");
    }
}
