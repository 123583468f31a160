//! Small, quiet worlds for the simulation's unit tests, and an event loop
//! reduced to the runs themselves.

use std::sync::Arc;

use super::config::Config;
use super::scenario::Scenario;
use super::world::{Ev, World};

/// The default configuration for `hosts` hosts without the day's
/// disturbances (outage, converge request, restarts, file changes), so a
/// test sees only what it sets up.
pub fn quiet(hosts: u32) -> Config {
    Config {
        hosts,
        outage: None,
        converge: None,
        restart: None,
        file_changes_per_hour: 0.0,
        ..Config::default()
    }
}

/// A world at its start, with the scenario `config` draws.
pub fn world(config: Config) -> World {
    let scenario = Scenario::new(&config);
    World::new(Arc::new(config), Arc::new(scenario))
}

/// What `play` passes on: what a strategy hears of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A host's current timer fired.
    Wake(u32),
    /// A host's run ended.
    Ended(u32),
}

/// Plays the queued events to the end: a run's phases through the world,
/// a current timer and the end of a run to `on`; every other event is
/// dropped.
pub fn play(world: &mut World, mut on: impl FnMut(&mut World, Step)) {
    while let Some((_, ev)) = world.pop() {
        match ev {
            Ev::Wake { host, gen } if world.is_current(host, gen) => on(world, Step::Wake(host)),
            Ev::Release { host, run } => world.on_release(host, run),
            Ev::ApplyDone { host, run } => world.on_apply_done(host, run),
            // The world ends the run in the guard; a stale end is dropped.
            Ev::RunEnd { host, run } if world.on_run_end(host, run) => on(world, Step::Ended(host)),
            _ => {}
        }
    }
}
