//! Who decides when a host runs: pvc-bridge's scheduler, or one of
//! Puppet's own ways (the agent daemon, cron). The world calls a strategy
//! on the events it may react to; the strategy starts runs through the
//! world (`World::start_run`) and sets host timers (`World::wake_at`).

pub mod cron;
pub mod daemon;
pub mod pvc;

use super::config::StrategyKind;
use super::world::World;

pub trait Strategy {
    fn kind(&self) -> StrategyKind;

    /// At the start: set every host's first timer.
    fn init(&mut self, world: &mut World);

    /// A host's timer fired.
    fn wake(&mut self, world: &mut World, host: u32);

    /// A host's run ended (reported, or failed).
    fn run_ended(&mut self, world: &mut World, host: u32);

    /// A monitored file changed on a host between runs.
    fn file_changed(&mut self, world: &mut World, host: u32) {
        let _ = (world, host);
    }

    /// The agent on `host` was restarted (package upgrade).
    fn restarted(&mut self, world: &mut World, host: u32) {
        let _ = (world, host);
    }

    /// "These hosts must all run within the deadline"; `false` when the
    /// strategy has no such thing.
    fn converge(&mut self, world: &mut World, hosts: &[u32], within_s: f64) -> bool {
        let _ = (world, hosts, within_s);
        false
    }

    /// Whether the strategy reads the servers' status (then `sample` is
    /// called for each server every `sample_interval_s`).
    fn reads_status(&self) -> bool {
        false
    }

    fn sample(&mut self, world: &mut World, server: usize) {
        let _ = (world, server);
    }

    /// Whether `tick` is wanted once a virtual second.
    fn ticks(&self) -> bool {
        false
    }

    fn tick(&mut self, world: &mut World) {
        let _ = world;
    }

    /// Once a minute, to record the strategy's own view.
    fn minute(&mut self, world: &mut World, minute: usize) {
        let _ = (world, minute);
    }

    /// At the end: what the strategy reports of itself.
    fn finish(&mut self, world: &mut World) {
        let _ = world;
    }
}
