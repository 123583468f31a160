//! One strategy through the whole simulated time: the event loop.

use std::sync::Arc;
use std::time::Instant;

use super::config::{Config, StrategyKind};
use super::scenario::Scenario;
use super::strategy::{cron::Cron, daemon::Daemon, pvc::Pvc, Strategy};
use super::summary::{self, Outcome};
use super::world::{Ev, World};

/// Progress reports: (strategy, simulated hours done, wall seconds).
pub type Progress<'a> = &'a (dyn Fn(StrategyKind, f64, f64) + Sync);

/// Simulates one strategy; deterministic for a given configuration.
pub fn simulate(
    config: Arc<Config>,
    scenario: Arc<Scenario>,
    kind: StrategyKind,
    progress: Option<Progress<'_>>,
) -> Outcome {
    let started = Instant::now();
    let mut world = World::new(config.clone(), scenario.clone());
    let mut strategy: Box<dyn Strategy> = match kind {
        StrategyKind::Pvc => Box::new(Pvc::new(&world)),
        StrategyKind::Daemon => Box::new(Daemon::new(&world)),
        StrategyKind::Cron => Box::new(Cron::new(&world)),
    };
    let t0 = world.t0;
    let at = |secs: f64| t0 + (secs * 1000.0).round() as i64;

    for &(t, host) in &scenario.file_changes {
        world.push(at(t), Ev::FileChange { host });
    }
    if kind != StrategyKind::Cron {
        // A package upgrade restarts agent daemons; cron has none.
        for &(t, host) in &scenario.restarts {
            world.push(at(t), Ev::Restart { host });
        }
    }
    if let Some(outage) = config.outage {
        world.push(at(outage.start_s), Ev::OutageStart);
        world.push(at(outage.start_s + outage.duration_s), Ev::OutageEnd);
    }
    if let Some(converge) = config.converge {
        world.push(at(converge.start_s), Ev::Converge);
    }
    // The end of each minute (1 ms before the next one starts).
    for minute in 0..config.minutes() {
        world.push(
            t0 + (minute as i64 + 1) * 60_000 - 1,
            Ev::Minute {
                minute: minute as u32,
            },
        );
    }
    let sample_ms = (config.sample_interval_s * 1000.0).round() as i64;
    if strategy.reads_status() {
        let n = world.servers.len() as i64;
        for server in 0..world.servers.len() {
            let offset = sample_ms * server as i64 / n;
            world.push(
                t0 + offset,
                Ev::Sample {
                    server: server as u32,
                },
            );
        }
    }
    if strategy.ticks() {
        world.push(t0, Ev::Tick);
    }
    strategy.init(&mut world);

    let outage_server = config.outage.map(|o| o.server);
    while let Some((now, ev)) = world.pop() {
        match ev {
            Ev::Wake { host, gen } => {
                if world.is_current(host, gen) {
                    strategy.wake(&mut world, host);
                }
            }
            Ev::Release { host, run } => world.on_release(host, run),
            Ev::ApplyDone { host, run } => world.on_apply_done(host, run),
            Ev::RunEnd { host, run } => {
                if world.on_run_end(host, run) {
                    strategy.run_ended(&mut world, host);
                }
            }
            Ev::Sample { server } => {
                let server = server as usize;
                world.on_sample(server);
                strategy.sample(&mut world, server);
                world.push(
                    now + sample_ms,
                    Ev::Sample {
                        server: server as u32,
                    },
                );
            }
            Ev::Tick => {
                strategy.tick(&mut world);
                world.push(now + 1000, Ev::Tick);
            }
            Ev::Minute { minute } => {
                strategy.minute(&mut world, minute as usize);
                if let Some(progress) = progress {
                    if (minute + 1) % 60 == 0 {
                        let hours = (minute + 1) as f64 / 60.0;
                        progress(kind, hours, started.elapsed().as_secs_f64());
                    }
                }
            }
            Ev::FileChange { host } => {
                if world.on_file_change(host) {
                    strategy.file_changed(&mut world, host);
                }
            }
            Ev::Restart { host } => strategy.restarted(&mut world, host),
            Ev::OutageStart => world.on_outage_start(outage_server.expect("outage configured")),
            Ev::OutageEnd => world.on_outage_end(outage_server.expect("outage configured")),
            Ev::Converge => {
                let hosts = &scenario.converge_hosts;
                world.on_converge(hosts);
                let within = config.converge.expect("converge configured").within_s;
                // Without a converge API the set is still timed: how long
                // the strategy's own runs take to cover it.
                world.m.converge_supported = strategy.converge(&mut world, hosts, within);
            }
        }
    }
    strategy.finish(&mut world);
    world.finish();
    summary::outcome(kind, &world, started.elapsed().as_secs_f64())
}
