//! Statistics the bridge keeps about itself, for `/metrics` and the status
//! page (`GET /` and `GET /stats`): pure summaries here, gathered from the
//! services by `http::metrics` and `http::status`.
//!
//! - `history`: runs started per minute, per server and trigger.
//! - `outcomes`: each host's last report and last successful one.
//! - `fairness`: the fleet's time since last run, as a distribution, by
//!   pool and by hostgroup.
//! - `rollouts`: staged rollouts and their waves' progress.
//! - `snapshot`: the `/stats` document, built from plain inputs.
//! - `histogram`: latency histograms (for `/metrics`).
//! - `Recorder` (here): what the run service feeds as runs start and
//!   reports arrive, and the snapshot shared by every request.

pub mod fairness;
pub mod histogram;
pub mod history;
pub mod outcomes;
pub mod rollouts;
pub mod snapshot;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::schedule::{Trigger, Ts};

pub use history::{MinuteCount, RunHistory};
pub use outcomes::Outcomes;

/// Kept by the run service (`RunStats`): fed on every run start and
/// report, read once per snapshot.
#[derive(Debug, Default)]
pub struct Recorder {
    runs: Mutex<RunHistory>,
    outcomes: Mutex<Outcomes>,
    /// The last `/stats` document, shared by every request.
    pub snapshots: Cache<snapshot::Published>,
    /// Held while a new document is read from the database (the rollouts),
    /// so concurrent requests wait for it instead of each reading.
    pub refreshing: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop the counting.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    /// A run started on `server` at `at` (granted here or seen in the
    /// lease feed from another process).
    pub fn run_started(&self, server: &str, trigger: Trigger, at: Ts) {
        lock(&self.runs).record(server, trigger, at);
    }

    /// A report of `certname` was stored or spooled at `at`.
    pub fn reported(&self, certname: &str, at: Ts, exit_code: Option<i32>) {
        lock(&self.outcomes).record(certname, at, exit_code);
    }

    pub fn runs(&self) -> MutexGuard<'_, RunHistory> {
        lock(&self.runs)
    }

    pub fn outcomes(&self) -> MutexGuard<'_, Outcomes> {
        lock(&self.outcomes)
    }
}

/// A value computed at most once per `max_age` and shared: the first
/// request after it expires computes the next one (others wait for it),
/// given the previous one (for rates).
pub struct Cache<T> {
    slot: Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            slot: Mutex::new(None),
        }
    }
}

impl<T> fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cache")
    }
}

impl<T> Cache<T> {
    /// The cached value if younger than `max_age` at `now`.
    pub fn fresh(&self, now: Instant, max_age: Duration) -> Option<Arc<T>> {
        let slot = lock(&self.slot);
        slot.as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < max_age)
            .map(|(_, value)| Arc::clone(value))
    }

    /// The cached value if younger than `max_age` at `now`, else a new one
    /// from `refresh(previous)`.
    pub fn get(
        &self,
        now: Instant,
        max_age: Duration,
        refresh: impl FnOnce(Option<&T>) -> T,
    ) -> Arc<T> {
        let mut slot = lock(&self.slot);
        if let Some((at, value)) = slot.as_ref() {
            if now.saturating_duration_since(*at) < max_age {
                return Arc::clone(value);
            }
        }
        let value = Arc::new(refresh(slot.as_ref().map(|(_, v)| &**v)));
        *slot = Some((now, Arc::clone(&value)));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_computes_once_per_interval_and_passes_the_previous_value() {
        let cache: Cache<u32> = Cache::default();
        let start = Instant::now();
        let max = Duration::from_secs(5);
        let mut calls = 0;
        let first = cache.get(start, max, |prev| {
            calls += 1;
            assert!(prev.is_none());
            1
        });
        let again = cache.get(start + Duration::from_secs(4), max, |_| {
            calls += 1;
            99
        });
        assert_eq!((*first, *again, calls), (1, 1, 1));
        let next = cache.get(start + Duration::from_secs(5), max, |prev| {
            calls += 1;
            prev.copied().unwrap_or(0) + 1
        });
        assert_eq!((*next, calls), (2, 2));
        assert_eq!(
            cache.fresh(start + Duration::from_secs(9), max).as_deref(),
            Some(&2)
        );
        assert!(cache.fresh(start + Duration::from_secs(10), max).is_none());
    }

    #[test]
    fn the_recorder_feeds_history_and_outcomes() {
        let r = Recorder::default();
        r.run_started("puppet1", Trigger::Schedule, Ts(120_000));
        r.run_started("puppet1", Trigger::FileChange, Ts(121_000));
        r.reported("a.example.com", Ts(130_000), Some(4));
        let minute = r.runs().series("puppet1", Ts(125_000), 1)[0];
        assert_eq!((minute.scheduled, minute.forced), (1, 1));
        let outcome = r.outcomes().get("a.example.com").unwrap();
        assert_eq!(outcome.last_report, Some(Ts(130_000)));
        assert_eq!(outcome.last_success, None);
    }
}
