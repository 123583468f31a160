//! Which replicas may serve reads: pure decisions over check results and
//! connection errors, with an explicit clock (the monitor task in
//! `store::monitor` and `Db` feed it; tests drive it directly).
//!
//! The rules follow makara's blacklist: a replica that fails a check, lags
//! beyond `max_lag_bytes`, has its replay paused or refuses a connection is
//! taken out for a back-off (`blacklist`, doubled on each further failure up
//! to `blacklist_max`). With a monitor it comes back only after a successful
//! check once the back-off is over; without one (tests, the `node` command)
//! it is simply tried again once the back-off is over.

use std::time::{Duration, Instant};

/// Settings of the health checks and of routing (`[database]` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between two rounds of checks.
    pub check_every: Duration,
    /// A check (connect and query) that takes longer has failed.
    pub timeout: Duration,
    /// A replica further behind the primary's WAL position is taken out.
    pub max_lag_bytes: u64,
    /// First back-off of a replica taken out.
    pub blacklist: Duration,
    /// The back-off doubles on each further failure up to this.
    pub blacklist_max: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            check_every: Duration::from_millis(500),
            timeout: Duration::from_millis(2000),
            max_lag_bytes: 16 * 1024 * 1024,
            blacklist: Duration::from_secs(30),
            blacklist_max: Duration::from_secs(300),
        }
    }
}

/// What one check of a replica found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The query answered.
    Answered {
        /// `pg_is_in_recovery()`: false once a replica has been promoted.
        in_recovery: bool,
        /// `pg_last_wal_replay_lsn()` as a byte position.
        replay_lsn: Option<u64>,
        /// `pg_is_wal_replay_paused()`.
        paused: bool,
    },
    /// Connecting or querying failed or timed out.
    Failed(String),
}

/// Why a replica was taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    CheckFailed(String),
    ReplayPaused,
    Lagging {
        lag_bytes: u64,
        max_bytes: u64,
    },
    /// A read could not get a connection from its pool.
    ConnectionError(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::CheckFailed(e) => write!(f, "health check failed: {e}"),
            Reason::ReplayPaused => f.write_str("WAL replay is paused"),
            Reason::Lagging {
                lag_bytes,
                max_bytes,
            } => write!(f, "{lag_bytes} bytes behind the primary (max {max_bytes})"),
            Reason::ConnectionError(e) => write!(f, "connection error: {e}"),
        }
    }
}

/// A change of a replica's state, to be logged (once, not per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    TakenOut { reason: Reason, backoff: Duration },
    Readmitted,
}

/// One replica as routing sees it.
#[derive(Debug, Clone)]
struct Replica {
    usable: bool,
    /// Not before this may it come back.
    out_until: Option<Instant>,
    /// Consecutive times taken out without a stable period in between.
    strikes: u32,
    admitted_at: Option<Instant>,
    /// The last check answered.
    up: bool,
    replay_lsn: Option<u64>,
    lag_bytes: Option<u64>,
    checks: u64,
    check_failures: u64,
    taken_out: u64,
}

impl Replica {
    fn new() -> Replica {
        Replica {
            usable: true,
            out_until: None,
            strikes: 0,
            admitted_at: None,
            up: true,
            replay_lsn: None,
            lag_bytes: None,
            checks: 0,
            check_failures: 0,
            taken_out: 0,
        }
    }
}

/// What `/metrics` shows of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub up: bool,
    pub usable: bool,
    pub lag_bytes: Option<u64>,
    pub checks: u64,
    pub check_failures: u64,
    pub taken_out: u64,
}

/// The routing state of every replica.
#[derive(Debug)]
pub struct Router {
    settings: HealthSettings,
    /// A monitor checks the replicas: only a check re-admits one.
    monitored: bool,
    replicas: Vec<Replica>,
}

impl Router {
    /// `n` replicas, all usable, no monitor (yet).
    pub fn new(n: usize, settings: HealthSettings) -> Router {
        Router {
            settings,
            monitored: false,
            replicas: vec![Replica::new(); n],
        }
    }

    /// From now on a monitor checks the replicas with `settings`.
    pub fn set_monitored(&mut self, settings: HealthSettings) {
        self.settings = settings;
        self.monitored = true;
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// May replica `i` serve a read now?
    pub fn usable(&self, i: usize, now: Instant) -> bool {
        let r = &self.replicas[i];
        r.usable || (!self.monitored && r.out_until.is_some_and(|t| now >= t))
    }

    /// Usable replicas in round-robin order from `start`.
    pub fn candidates(&self, start: usize, now: Instant) -> Vec<usize> {
        let n = self.replicas.len();
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.usable(i, now))
            .collect()
    }

    /// The last replay position a check saw on replica `i`.
    pub fn replay_lsn(&self, i: usize) -> Option<u64> {
        self.replicas[i].replay_lsn
    }

    /// A read on replica `i` saw it at replay position `lsn` (positions only
    /// move forward: an older one is ignored).
    pub fn observe_replay(&mut self, i: usize, lsn: u64) {
        let r = &mut self.replicas[i];
        if r.replay_lsn.is_none_or(|known| known < lsn) {
            r.replay_lsn = Some(lsn);
        }
    }

    /// The usable replica with the newest known replay position.
    pub fn freshest(&self, now: Instant) -> Option<usize> {
        self.candidates(0, now)
            .into_iter()
            .max_by_key(|&i| self.replicas[i].replay_lsn.unwrap_or(0))
    }

    /// A read got a connection from replica `i`: without a monitor, this
    /// re-admits a replica whose back-off is over.
    pub fn checkout_ok(&mut self, i: usize, now: Instant) -> Option<Transition> {
        if self.monitored || self.replicas[i].usable {
            return None;
        }
        Some(self.readmit(i, now))
    }

    /// A read could not get a connection from replica `i`: out at once.
    pub fn connection_failed(&mut self, i: usize, now: Instant, error: &str) -> Option<Transition> {
        let r = &mut self.replicas[i];
        if !r.usable && r.out_until.is_some_and(|t| now < t) {
            return None;
        }
        Some(self.take_out(i, now, Reason::ConnectionError(error.to_owned())))
    }

    /// The result of one check of replica `i`; `primary_lsn` is the
    /// primary's WAL position from the same round (`None` when the primary
    /// did not answer: lag cannot be measured and does not count).
    pub fn check(
        &mut self,
        i: usize,
        now: Instant,
        probe: Probe,
        primary_lsn: Option<u64>,
    ) -> Option<Transition> {
        let max = self.settings.max_lag_bytes;
        let r = &mut self.replicas[i];
        r.checks += 1;
        let bad = match probe {
            Probe::Failed(error) => {
                r.up = false;
                r.check_failures += 1;
                Some(Reason::CheckFailed(error))
            }
            Probe::Answered {
                in_recovery,
                replay_lsn,
                paused,
            } => {
                r.up = true;
                r.replay_lsn = replay_lsn;
                // A promoted server replays nothing; it is as new as it gets.
                r.lag_bytes = match (in_recovery, primary_lsn, replay_lsn) {
                    (false, _, _) => Some(0),
                    (true, Some(p), Some(l)) => Some(p.saturating_sub(l)),
                    _ => None,
                };
                if paused {
                    Some(Reason::ReplayPaused)
                } else if in_recovery && primary_lsn.is_some() && replay_lsn.is_none() {
                    Some(Reason::CheckFailed("no WAL replayed yet".into()))
                } else {
                    match r.lag_bytes {
                        Some(lag) if lag > max => Some(Reason::Lagging {
                            lag_bytes: lag,
                            max_bytes: max,
                        }),
                        _ => None,
                    }
                }
            }
        };
        match bad {
            Some(reason) => {
                let r = &self.replicas[i];
                // Still in its back-off: nothing changes.
                if !r.usable && r.out_until.is_some_and(|t| now < t) {
                    return None;
                }
                let was_usable = r.usable;
                let transition = self.take_out(i, now, reason);
                // Still bad after its back-off: a longer one, not a new event.
                was_usable.then_some(transition)
            }
            None => {
                let r = &mut self.replicas[i];
                if r.usable {
                    // Stable for a whole first back-off: forget past strikes.
                    if r.admitted_at
                        .is_some_and(|t| now.duration_since(t) >= self.settings.blacklist)
                    {
                        r.strikes = 0;
                    }
                    return None;
                }
                if r.out_until.is_some_and(|t| now < t) {
                    return None;
                }
                Some(self.readmit(i, now))
            }
        }
    }

    fn take_out(&mut self, i: usize, now: Instant, reason: Reason) -> Transition {
        let s = &self.settings;
        let r = &mut self.replicas[i];
        let doublings = r.strikes.min(16);
        let backoff = s
            .blacklist
            .saturating_mul(1u32 << doublings)
            .min(s.blacklist_max.max(s.blacklist));
        r.strikes = r.strikes.saturating_add(1);
        if r.usable {
            r.taken_out += 1;
        }
        r.usable = false;
        r.admitted_at = None;
        r.out_until = Some(now + backoff);
        Transition::TakenOut { reason, backoff }
    }

    fn readmit(&mut self, i: usize, now: Instant) -> Transition {
        let r = &mut self.replicas[i];
        r.usable = true;
        r.out_until = None;
        r.admitted_at = Some(now);
        Transition::Readmitted
    }

    /// What `/metrics` shows of replica `i`.
    pub fn view(&self, i: usize, now: Instant) -> ReplicaView {
        let r = &self.replicas[i];
        ReplicaView {
            up: r.up,
            usable: self.usable(i, now),
            lag_bytes: r.lag_bytes,
            checks: r.checks,
            check_failures: r.check_failures,
            taken_out: r.taken_out,
        }
    }
}

/// `X/Y` (PostgreSQL's `pg_lsn` text form) as a byte position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
        return None;
    }
    Some(hi << 32 | lo)
}

/// A WAL position as PostgreSQL writes it (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        for lsn in [0, 1, 0x16_B374_D848, u64::from(u32::MAX) << 32] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    }

    const MIB: u64 = 1024 * 1024;

    fn settings() -> HealthSettings {
        HealthSettings {
            check_every: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            max_lag_bytes: MIB,
            blacklist: Duration::from_secs(30),
            blacklist_max: Duration::from_secs(300),
        }
    }

    fn monitored(n: usize) -> Router {
        let mut router = Router::new(n, settings());
        router.set_monitored(settings());
        router
    }

    fn at(lsn: u64) -> Probe {
        Probe::Answered {
            in_recovery: true,
            replay_lsn: Some(lsn),
            paused: false,
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn backoff_of(t: Option<Transition>) -> Duration {
        match t {
            Some(Transition::TakenOut { backoff, .. }) => backoff,
            other => panic!("expected taken out, got {other:?}"),
        }
    }

    #[test]
    fn lsns_parse_as_byte_positions() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("1/A"), Some((1 << 32) + 10));
        assert_eq!(parse_lsn(" 16/B374D848 "), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/100000000"), None);
    }

    #[test]
    fn an_idle_caught_up_replica_stays_usable() {
        let t0 = Instant::now();
        let mut router = monitored(1);
        for s in 0..100 {
            assert_eq!(router.check(0, secs(t0, s), at(5000), Some(5000)), None);
        }
        assert!(router.usable(0, secs(t0, 100)));
        assert_eq!(router.view(0, t0).lag_bytes, Some(0));
        assert_eq!(router.view(0, t0).checks, 100);
    }

    #[test]
    fn lag_beyond_the_bound_takes_a_replica_out_and_a_later_good_check_brings_it_back() {
        let t0 = Instant::now();
        let mut router = monitored(2);
        assert_eq!(router.check(0, t0, at(0), Some(MIB)), None, "at the bound");
        let t = router.check(0, t0, at(0), Some(MIB + 1));
        assert_eq!(
            t,
            Some(Transition::TakenOut {
                reason: Reason::Lagging {
                    lag_bytes: MIB + 1,
                    max_bytes: MIB
                },
                backoff: Duration::from_secs(30)
            })
        );
        assert!(!router.usable(0, t0));
        assert_eq!(router.candidates(0, t0), vec![1]);
        // Caught up, but the back-off is not over.
        assert_eq!(router.check(0, secs(t0, 29), at(MIB), Some(MIB)), None);
        assert!(!router.usable(0, secs(t0, 29)));
        // The back-off being over is not enough: a check must pass.
        assert!(!router.usable(0, secs(t0, 31)));
        assert_eq!(
            router.check(0, secs(t0, 31), at(MIB), Some(MIB)),
            Some(Transition::Readmitted)
        );
        assert_eq!(router.candidates(0, secs(t0, 31)), vec![0, 1]);
        assert_eq!(router.view(0, t0).taken_out, 1);
    }

    #[test]
    fn paused_replay_takes_a_replica_out_even_when_caught_up() {
        let t0 = Instant::now();
        let mut router = monitored(1);
        let paused = Probe::Answered {
            in_recovery: true,
            replay_lsn: Some(10),
            paused: true,
        };
        assert!(matches!(
            router.check(0, t0, paused, Some(10)),
            Some(Transition::TakenOut {
                reason: Reason::ReplayPaused,
                ..
            })
        ));
        assert!(router.candidates(0, t0).is_empty());
    }

    #[test]
    fn failures_double_the_back_off_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut router = monitored(1);
        let failed = || Probe::Failed("connection refused".into());
        assert_eq!(
            backoff_of(router.check(0, t0, failed(), None)),
            Duration::from_secs(30)
        );
        // Failing within the back-off changes nothing.
        assert_eq!(router.check(0, secs(t0, 10), failed(), None), None);
        // Failing after it: out again for twice as long (no new event).
        let mut now = secs(t0, 30);
        let mut expected = 60;
        for _ in 0..6 {
            assert_eq!(router.check(0, now, failed(), None), None);
            assert!(!router.usable(0, now));
            assert!(router
                .check(0, now + Duration::from_secs(expected - 1), at(0), None)
                .is_none());
            now += Duration::from_secs(expected);
            expected = (expected * 2).min(300);
        }
        assert_eq!(
            router.check(0, now, at(0), None),
            Some(Transition::Readmitted)
        );
        assert_eq!(router.view(0, now).check_failures, 8);
        assert_eq!(router.view(0, now).taken_out, 1);
    }

    #[test]
    fn strikes_are_forgotten_after_a_stable_period_but_not_before() {
        let t0 = Instant::now();
        let mut router = monitored(1);
        let failed = || Probe::Failed("timeout".into());
        router.check(0, t0, failed(), None);
        router.check(0, secs(t0, 30), at(0), None);
        // Fails again soon after coming back: the back-off doubles.
        assert_eq!(
            backoff_of(router.check(0, secs(t0, 35), failed(), None)),
            Duration::from_secs(60)
        );
        router.check(0, secs(t0, 95), at(0), None);
        // Stable for 30 s: the next failure starts over.
        router.check(0, secs(t0, 125), at(0), None);
        assert_eq!(
            backoff_of(router.check(0, secs(t0, 126), failed(), None)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_connection_error_takes_a_replica_out_at_once() {
        let t0 = Instant::now();
        let mut router = monitored(3);
        assert!(router.connection_failed(1, t0, "refused").is_some());
        assert_eq!(router.connection_failed(1, t0, "refused"), None, "once");
        assert_eq!(router.candidates(1, t0), vec![2, 0]);
        // Monitored: a successful checkout elsewhere does not re-admit it.
        assert_eq!(router.checkout_ok(1, secs(t0, 60)), None);
        assert!(!router.usable(1, secs(t0, 60)));
    }

    #[test]
    fn without_a_monitor_a_replica_is_tried_again_after_its_back_off() {
        let t0 = Instant::now();
        let mut router = Router::new(2, settings());
        assert_eq!(router.candidates(1, t0), vec![1, 0]);
        assert!(router.connection_failed(0, t0, "refused").is_some());
        assert_eq!(router.candidates(0, secs(t0, 29)), vec![1]);
        assert_eq!(router.candidates(0, secs(t0, 30)), vec![0, 1]);
        // Failing again on that try: twice as long.
        assert_eq!(
            backoff_of(router.connection_failed(0, secs(t0, 30), "refused")),
            Duration::from_secs(60)
        );
        assert_eq!(
            router.checkout_ok(0, secs(t0, 90)),
            Some(Transition::Readmitted)
        );
        assert_eq!(router.checkout_ok(0, secs(t0, 91)), None);
    }

    #[test]
    fn unknown_primary_position_does_not_count_as_lag() {
        let t0 = Instant::now();
        let mut router = monitored(1);
        assert_eq!(router.check(0, t0, at(0), None), None);
        assert_eq!(router.view(0, t0).lag_bytes, None);
        let promoted = Probe::Answered {
            in_recovery: false,
            replay_lsn: None,
            paused: false,
        };
        assert_eq!(router.check(0, t0, promoted, Some(10 * MIB)), None);
        assert_eq!(router.view(0, t0).lag_bytes, Some(0));
    }
}
