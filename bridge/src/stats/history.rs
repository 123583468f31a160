//! Runs started per minute, per puppetserver and trigger: a ring of the
//! last [`MINUTES`] minutes for each server, so the status page can draw
//! the run-start curve the scheduler is meant to keep flat. Pure: the
//! caller passes the time of each run and of each read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

use crate::schedule::{Trigger, Ts};

/// How much history is kept: three hours of minutes.
pub const MINUTES: usize = 180;

/// Runs started in one minute, by what triggered them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    pub scheduled: u32,
    pub forced: u32,
    pub converge: u32,
}

impl MinuteCount {
    pub fn total(&self) -> u32 {
        self.scheduled + self.forced + self.converge
    }

    fn add(&mut self, trigger: Trigger) {
        let slot = match trigger {
            Trigger::Schedule => &mut self.scheduled,
            Trigger::FileChange => &mut self.forced,
            Trigger::Converge => &mut self.converge,
        };
        *slot = slot.saturating_add(1);
    }

    fn merge(&mut self, other: &MinuteCount) {
        self.scheduled = self.scheduled.saturating_add(other.scheduled);
        self.forced = self.forced.saturating_add(other.forced);
        self.converge = self.converge.saturating_add(other.converge);
    }
}

/// The minute a time falls in (minutes since the epoch).
pub fn minute_of(at: Ts) -> i64 {
    at.0.div_euclid(60_000)
}

/// One server's ring: `counts.back()` is minute `newest`.
#[derive(Debug)]
struct Ring {
    newest: i64,
    counts: VecDeque<MinuteCount>,
}

impl Ring {
    /// Every kept minute up to `minute` exists from the start, so a run
    /// reported late still finds its minute.
    fn new(minute: i64, keep: usize) -> Ring {
        Ring {
            newest: minute,
            counts: VecDeque::from(vec![MinuteCount::default(); keep]),
        }
    }

    /// Moves the ring forward to `minute`, dropping what falls out.
    fn advance(&mut self, minute: i64, keep: usize) {
        if minute <= self.newest {
            return;
        }
        let gap = (minute - self.newest) as usize;
        for _ in 0..gap.min(keep) {
            self.counts.push_back(MinuteCount::default());
        }
        while self.counts.len() > keep {
            self.counts.pop_front();
        }
        self.newest = minute;
    }

    fn get(&self, minute: i64) -> MinuteCount {
        let back = self.newest - minute;
        if back < 0 || back as usize >= self.counts.len() {
            return MinuteCount::default();
        }
        self.counts[self.counts.len() - 1 - back as usize]
    }
}

/// Per-minute run starts of every server that granted one.
#[derive(Debug)]
pub struct RunHistory {
    keep: usize,
    servers: BTreeMap<Arc<str>, Ring>,
}

impl Default for RunHistory {
    fn default() -> Self {
        RunHistory::new(MINUTES)
    }
}

impl RunHistory {
    /// Keeps `minutes` minutes (at least one).
    pub fn new(minutes: usize) -> RunHistory {
        RunHistory {
            keep: minutes.max(1),
            servers: BTreeMap::new(),
        }
    }

    /// A run started on `server` at `at`. A time older than the ring is
    /// dropped; a clock step back lands in the minute it names.
    pub fn record(&mut self, server: &str, trigger: Trigger, at: Ts) {
        let minute = minute_of(at);
        let keep = self.keep;
        let ring = match self.servers.get_mut(server) {
            Some(ring) => ring,
            None => self
                .servers
                .entry(Arc::from(server))
                .or_insert_with(|| Ring::new(minute, keep)),
        };
        ring.advance(minute, keep);
        let back = ring.newest - minute;
        if back < 0 || back as usize >= ring.counts.len() {
            return;
        }
        let ix = ring.counts.len() - 1 - back as usize;
        ring.counts[ix].add(trigger);
    }

    /// The last `minutes` minutes up to and including `now`'s, oldest
    /// first, for one server (zeros for a server without runs).
    pub fn series(&self, server: &str, now: Ts, minutes: usize) -> Vec<MinuteCount> {
        let last = minute_of(now);
        let first = last - minutes as i64 + 1;
        match self.servers.get(server) {
            Some(ring) => (first..=last).map(|m| ring.get(m)).collect(),
            None => vec![MinuteCount::default(); minutes],
        }
    }

    /// The sum of several servers' series (a pool's).
    pub fn sum<'a>(
        &self,
        servers: impl IntoIterator<Item = &'a str>,
        now: Ts,
        minutes: usize,
    ) -> Vec<MinuteCount> {
        let mut total = vec![MinuteCount::default(); minutes];
        for server in servers {
            for (slot, count) in total.iter_mut().zip(self.series(server, now, minutes)) {
                slot.merge(&count);
            }
        }
        total
    }

    /// Servers that granted a run within the kept history.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_minute(m: i64, sec: i64) -> Ts {
        Ts(m * 60_000 + sec * 1000)
    }

    #[test]
    fn runs_land_in_their_minute_by_trigger() {
        let mut h = RunHistory::new(10);
        h.record("a", Trigger::Schedule, at_minute(100, 1));
        h.record("a", Trigger::Schedule, at_minute(100, 59));
        h.record("a", Trigger::FileChange, at_minute(102, 0));
        h.record("a", Trigger::Converge, at_minute(103, 30));
        let s = h.series("a", at_minute(103, 40), 5);
        let totals: Vec<u32> = s.iter().map(MinuteCount::total).collect();
        assert_eq!(totals, vec![0, 2, 0, 1, 1]);
        assert_eq!(s[1].scheduled, 2);
        assert_eq!(s[3].forced, 1);
        assert_eq!(s[4].converge, 1);
    }

    #[test]
    fn minutes_without_runs_read_zero_up_to_now() {
        let mut h = RunHistory::new(10);
        h.record("a", Trigger::Schedule, at_minute(50, 0));
        // Read three minutes later: the run is three slots back.
        let s = h.series("a", at_minute(53, 0), 4);
        assert_eq!(
            s.iter().map(MinuteCount::total).collect::<Vec<_>>(),
            vec![1, 0, 0, 0]
        );
    }

    #[test]
    fn history_older_than_the_ring_is_forgotten() {
        let mut h = RunHistory::new(3);
        h.record("a", Trigger::Schedule, at_minute(10, 0));
        h.record("a", Trigger::Schedule, at_minute(11, 0));
        h.record("a", Trigger::Schedule, at_minute(13, 0));
        // Minute 10 fell out when minute 13 arrived (3 kept: 11, 12, 13).
        let s = h.series("a", at_minute(13, 0), 4);
        assert_eq!(
            s.iter().map(MinuteCount::total).collect::<Vec<_>>(),
            vec![0, 1, 0, 1]
        );
        // A run from before the ring is dropped, not counted as now.
        h.record("a", Trigger::Schedule, at_minute(5, 0));
        assert_eq!(h.series("a", at_minute(13, 0), 1)[0].total(), 1);
        // A gap longer than the ring empties it.
        h.record("a", Trigger::Schedule, at_minute(100, 0));
        let s = h.series("a", at_minute(100, 0), 3);
        assert_eq!(
            s.iter().map(MinuteCount::total).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
    }

    #[test]
    fn a_late_run_counts_in_its_own_minute() {
        let mut h = RunHistory::new(10);
        h.record("a", Trigger::Schedule, at_minute(20, 0));
        h.record("a", Trigger::Schedule, at_minute(18, 30));
        let s = h.series("a", at_minute(20, 0), 3);
        assert_eq!(
            s.iter().map(MinuteCount::total).collect::<Vec<_>>(),
            vec![1, 0, 1]
        );
    }

    #[test]
    fn a_pool_sums_its_servers_and_unknown_servers_read_zero() {
        let mut h = RunHistory::new(10);
        h.record("a", Trigger::Schedule, at_minute(7, 0));
        h.record("b", Trigger::Schedule, at_minute(7, 5));
        h.record("b", Trigger::FileChange, at_minute(8, 0));
        let pool = h.sum(["a", "b", "nosuch"], at_minute(8, 0), 2);
        assert_eq!(pool[0].scheduled, 2);
        assert_eq!(pool[1].forced, 1);
        assert_eq!(
            h.series("nosuch", at_minute(8, 0), 2),
            vec![MinuteCount::default(); 2]
        );
        assert_eq!(h.servers().collect::<Vec<_>>(), vec!["a", "b"]);
    }
}
