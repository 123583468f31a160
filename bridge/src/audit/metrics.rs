//! Counters of the audit writer, for `/metrics` and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the writer of this process did; gauges as last seen by it.
#[derive(Debug, Default)]
pub struct AuditMetrics {
    /// Events taken off the queue: committed, or found to need no commit.
    pub events_committed: AtomicU64,
    /// Of those, events whose file would not change (no commit).
    pub events_unchanged: AtomicU64,
    /// Of those, events that could not be committed (logged).
    pub events_invalid: AtomicU64,
    /// Commits written.
    pub commits: AtomicU64,
    /// Rebuilds: the repository was not the one the queue was kept for.
    pub rebuilds: AtomicU64,
    /// Rounds that failed (logged; retried next round).
    pub errors: AtomicU64,
    /// Gauge: events queued after the last round.
    pub queue_depth: AtomicU64,
    /// Gauge: age of the oldest queued event after the last round, in
    /// milliseconds (0 with an empty queue).
    pub lag_millis: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AuditSnapshot {
    pub events_committed: u64,
    pub events_unchanged: u64,
    pub events_invalid: u64,
    pub commits: u64,
    pub rebuilds: u64,
    pub errors: u64,
    pub queue_depth: u64,
    pub lag_seconds: f64,
}

impl AuditMetrics {
    pub fn snapshot(&self) -> AuditSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuditSnapshot {
            events_committed: get(&self.events_committed),
            events_unchanged: get(&self.events_unchanged),
            events_invalid: get(&self.events_invalid),
            commits: get(&self.commits),
            rebuilds: get(&self.rebuilds),
            errors: get(&self.errors),
            queue_depth: get(&self.queue_depth),
            lag_seconds: get(&self.lag_millis) as f64 / 1000.0,
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}
