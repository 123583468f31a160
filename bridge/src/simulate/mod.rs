//! `pvc-bridge simulate`: the scheduler in virtual time against modelled
//! puppetservers, beside Puppet's own scheduling strategies.
//!
//! - `config`: what to simulate (`Args` on the command line builds it).
//! - `scenario`: the fleet and the outside events, drawn from the seed.
//! - `world`: hosts, servers (`server`), the event queue (`queue`), runs
//!   through their phases, measurements.
//! - `strategy`: pvc (the real `schedule::Scheduler`), daemon, cron.
//! - `run`: the event loop of one strategy; `summary`: its figures and the
//!   issue's criteria; `output` and `chart`: the files.
//!
//! No sockets, no sleeping, no wall clock in the model: a run is a pure
//! function of its configuration and seed.

pub mod chart;
pub mod config;
pub mod output;
pub mod queue;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod server;
pub mod stats;
pub mod strategy;
pub mod summary;
#[cfg(test)]
mod testing;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

pub use config::{Config, StrategyKind};
pub use summary::{acceptance, Check, Outcome, StrategySummary};

/// Options of `pvc-bridge simulate` (boxed: the command enum stays small).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub options: Box<Options>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Hosts in the fleet.
    #[arg(long, default_value_t = 100_000)]
    pub hosts: u32,
    /// Pools of servers (hosts are spread over them evenly).
    #[arg(long, default_value_t = 1)]
    pub pools: u32,
    /// Puppetservers per pool.
    #[arg(long, default_value_t = 4)]
    pub servers: u32,
    /// JRubies per puppetserver (max-active-instances).
    #[arg(long, default_value_t = 24)]
    pub jrubies: u32,
    /// Target period (scheduler), runinterval (daemon), cron period; minutes.
    #[arg(long, default_value_t = 30.0)]
    pub period_mins: f64,
    /// The agents' poll interval, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub poll_secs: f64,
    /// The scheduler's shortest interval between runs of a host, minutes.
    #[arg(long, default_value_t = 15.0)]
    pub min_interval_mins: f64,
    /// The scheduler's longest interval between runs of a host, minutes.
    #[arg(long, default_value_t = 60.0)]
    pub max_interval_mins: f64,
    /// Target JRuby utilisation of the scheduler, 0..1.
    #[arg(long, default_value_t = 0.8)]
    pub target: f64,
    /// Simulated hours.
    #[arg(long, default_value_t = 24.0)]
    pub hours: f64,
    /// Hours left out of the figures at the start.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_hours: f64,
    /// Seed of every random draw: the same seed gives the same results.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Server that goes down (1-based, pool by pool); 0: no outage.
    #[arg(long, default_value_t = 2)]
    pub outage_server: usize,
    /// When the outage starts (HH:MM of the simulated day).
    #[arg(long, default_value = "12:00", value_parser = parse_clock)]
    pub outage_at: f64,
    /// How long the server stays down, minutes.
    #[arg(long, default_value_t = 60.0)]
    pub outage_mins: f64,
    /// Hosts in the converge request; 0: none.
    #[arg(long, default_value_t = 10_000)]
    pub converge_hosts: u32,
    /// When the converge request is made (HH:MM).
    #[arg(long, default_value = "15:00", value_parser = parse_clock)]
    pub converge_at: f64,
    /// The converge request's deadline, minutes.
    #[arg(long, default_value_t = 30.0)]
    pub converge_within_mins: f64,
    /// Share of the agents restarted at once (package upgrade); 0: none.
    #[arg(long, default_value_t = 0.3)]
    pub restart_fraction: f64,
    /// When the restarts begin (HH:MM).
    #[arg(long, default_value = "09:00", value_parser = parse_clock)]
    pub restart_at: f64,
    /// The restarts are spread over this many minutes.
    #[arg(long, default_value_t = 5.0)]
    pub restart_over_mins: f64,
    /// Changes of monitored files per hour, fleet-wide (Poisson).
    #[arg(long, default_value_t = 300.0)]
    pub file_changes_per_hour: f64,
    /// Strategies to simulate.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "pvc,daemon,cron"
    )]
    pub strategies: Vec<StrategyKind>,
    /// The daemon baseline without splay (Puppet's default).
    #[arg(long)]
    pub no_splay: bool,
    /// Mean JRuby-seconds of a run's compile borrow (node + catalog + metadata).
    #[arg(long, default_value_t = 1.2)]
    pub compile_mean_secs: f64,
    /// Log-space standard deviation of the compile borrow.
    #[arg(long, default_value_t = 0.6)]
    pub compile_sigma: f64,
    /// Mean JRuby-seconds of the report borrow.
    #[arg(long, default_value_t = 0.1)]
    pub report_mean_secs: f64,
    /// Mean seconds of the local apply.
    #[arg(long, default_value_t = 12.0)]
    pub apply_mean_secs: f64,
    /// Log-space standard deviation of the apply.
    #[arg(long, default_value_t = 0.8)]
    pub apply_sigma: f64,
    /// TrueType font for the chart's text.
    #[arg(long, default_value = chart::DEFAULT_FONT)]
    pub font: PathBuf,
    /// Write no chart.
    #[arg(long)]
    pub no_chart: bool,
}

/// `HH:MM` → seconds (hours may pass 23 for a second day).
fn parse_clock(text: &str) -> Result<f64, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected HH:MM"))?;
    let h: u32 = h.parse().map_err(|_| format!("{text:?}: bad hour"))?;
    let m: u32 = m.parse().map_err(|_| format!("{text:?}: bad minute"))?;
    if m >= 60 {
        return Err(format!("{text:?}: minute ≥ 60"));
    }
    Ok((h * 3600 + m * 60) as f64)
}

impl Options {
    pub fn config(&self) -> Config {
        let defaults = Config::default();
        Config {
            hosts: self.hosts,
            pools: self.pools,
            servers_per_pool: self.servers,
            jrubies: self.jrubies,
            period_s: self.period_mins * 60.0,
            poll_s: self.poll_secs,
            min_interval_s: self.min_interval_mins * 60.0,
            max_interval_s: self.max_interval_mins * 60.0,
            target_utilization: self.target,
            hours: self.hours,
            warmup_s: self.warmup_hours * 3600.0,
            seed: self.seed,
            compile: config::Lognormal {
                mean_s: self.compile_mean_secs,
                sigma: self.compile_sigma,
            },
            report: config::Lognormal {
                mean_s: self.report_mean_secs,
                ..defaults.report
            },
            apply: config::Lognormal {
                mean_s: self.apply_mean_secs,
                sigma: self.apply_sigma,
            },
            sample_interval_s: defaults.sample_interval_s,
            outage: (self.outage_server > 0).then(|| config::Outage {
                server: self.outage_server - 1,
                start_s: self.outage_at,
                duration_s: self.outage_mins * 60.0,
            }),
            converge: (self.converge_hosts > 0).then_some(config::ConvergeSpec {
                hosts: self.converge_hosts,
                start_s: self.converge_at,
                within_s: self.converge_within_mins * 60.0,
            }),
            restart: (self.restart_fraction > 0.0).then_some(config::RestartSpec {
                start_s: self.restart_at,
                fraction: self.restart_fraction,
                over_s: self.restart_over_mins * 60.0,
            }),
            file_changes_per_hour: self.file_changes_per_hour,
            daemon_splay: !self.no_splay,
            strategies: self.strategies.clone(),
        }
    }
}

/// Simulates every strategy of `config` (in parallel threads: they share
/// nothing but the scenario) and returns them in the configured order.
pub fn simulate_all(
    config: &Config,
    progress: Option<run::Progress<'_>>,
) -> anyhow::Result<Vec<Outcome>> {
    config.validate()?;
    let config = Arc::new(config.clone());
    let scenario = Arc::new(scenario::Scenario::new(&config));
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = config
            .strategies
            .iter()
            .map(|&kind| {
                let (config, scenario) = (config.clone(), scenario.clone());
                std::thread::Builder::new()
                    .name(format!("simulate-{}", kind.as_str()))
                    .spawn_scoped(scope, move || {
                        run::simulate(config, scenario, kind, progress)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .context("starting a simulation thread")?
                    .join()
                    .map_err(|panic| {
                        let text = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        anyhow::anyhow!("a strategy's simulation panicked: {text}")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(outcomes)
}

/// Writes `minutes.csv`, `summary.md`, `summary.json` and (with a font)
/// `chart.png` into `dir`; returns the paths written.
pub fn write_outputs(
    dir: &Path,
    config: &Config,
    outcomes: &[Outcome],
    font: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let csv = dir.join("minutes.csv");
    output::write_csv(&csv, outcomes)?;
    written.push(csv);
    let md = dir.join("summary.md");
    std::fs::write(&md, output::summary_markdown(config, outcomes))
        .with_context(|| format!("writing {}", md.display()))?;
    written.push(md);
    let json = dir.join("summary.json");
    std::fs::write(&json, output::summary_json(config, outcomes)?)
        .with_context(|| format!("writing {}", json.display()))?;
    written.push(json);
    if let Some(font) = font {
        let png = dir.join("chart.png");
        chart::draw(&png, font, config, outcomes)?;
        written.push(png);
    }
    Ok(written)
}

/// Runs the simulation and writes its outputs.
pub fn main(args: Args) -> anyhow::Result<()> {
    let args = args.options;
    let config = args.config();
    config.validate()?;
    let names: Vec<&str> = config.strategies.iter().map(|s| s.as_str()).collect();
    eprintln!(
        "simulate: {} hosts, {} pool(s) × {} servers × {} JRubies, {} h, seed {}; strategies {}",
        config.hosts,
        config.pools,
        config.servers_per_pool,
        config.jrubies,
        config.hours,
        config.seed,
        names.join(", ")
    );
    let hours = config.hours;
    let progress = move |kind: StrategyKind, done: f64, wall: f64| {
        eprintln!(
            "simulate: {:<6} {} simulated ({:>3.0}%), {:.1} s",
            kind.as_str(),
            summary::clock(done * 3600.0),
            done / hours * 100.0,
            wall
        );
    };
    let outcomes = simulate_all(&config, Some(&progress))?;
    let font = (!args.no_chart).then_some(args.font.as_path());
    let written = write_outputs(&args.out, &config, &outcomes, font)?;
    println!("{}", output::summary_markdown(&config, &outcomes));
    for path in written {
        eprintln!("simulate: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_arguments() {
        assert_eq!(parse_clock("12:00"), Ok(43_200.0));
        assert_eq!(parse_clock("09:30"), Ok(34_200.0));
        assert_eq!(parse_clock("30:00"), Ok(108_000.0));
        assert!(parse_clock("12").is_err());
        assert!(parse_clock("12:60").is_err());
    }

    /// A small fleet with every event, every strategy.
    fn small(seed: u64) -> Config {
        Config {
            hosts: 2_000,
            servers_per_pool: 2,
            jrubies: 2,
            hours: 1.5,
            warmup_s: 1800.0,
            seed,
            outage: Some(config::Outage {
                server: 0,
                start_s: 3000.0,
                duration_s: 600.0,
            }),
            converge: Some(config::ConvergeSpec {
                hosts: 200,
                start_s: 3600.0,
                within_s: 900.0,
            }),
            restart: Some(config::RestartSpec {
                start_s: 2000.0,
                fraction: 0.5,
                over_s: 60.0,
            }),
            ..Config::default()
        }
    }

    fn summary_text(config: &Config) -> String {
        let mut outcomes = simulate_all(config, None).unwrap();
        for outcome in &mut outcomes {
            outcome.summary.wall_secs = 0.0;
        }
        output::summary_json(config, &outcomes).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_summary() {
        let first = summary_text(&small(7));
        assert_eq!(first, summary_text(&small(7)));
        assert_ne!(first, summary_text(&small(8)));
    }

    #[test]
    fn the_default_arguments_are_the_default_configuration() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::parse_from(["simulate"]);
        assert_eq!(cli.args.options.config(), Config::default());
        let cli = Cli::parse_from([
            "simulate",
            "--outage-server",
            "0",
            "--strategies",
            "daemon,cron",
        ]);
        let config = cli.args.options.config();
        assert_eq!(config.outage, None);
        assert_eq!(
            config.strategies,
            vec![StrategyKind::Daemon, StrategyKind::Cron]
        );
    }
}
