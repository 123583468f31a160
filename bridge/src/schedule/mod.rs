//! Run scheduling, pure: which host runs Puppet now, on which puppetserver,
//! at what rate. No I/O and no clock of its own: every call takes `now` (the
//! database clock) so the HTTP service and `pvc-bridge simulate` drive the
//! very same code, the latter in virtual time.
//!
//! - `phase`: a certname's deterministic place in the cycle.
//! - `status`: puppetserver status (status API, `/ppm` push) → `ServerSample`.
//! - `capacity`: per server, the admissible run rate from its samples.
//! - `scheduler`: hosts, pools, the sweeping hand, forced runs, converges.

pub mod capacity;
pub mod phase;
pub mod scheduler;
pub mod status;

pub use scheduler::{
    ConvergeId, ConvergeStatus, Decision, Explanation, Grant, HostIx, Poll, PoolStats, Reason,
    Refusal, RunMode, Scheduler, SchedulerConfig, SchedulerStats, ServerSpec, ServerStats, Trigger,
};
pub use status::ServerSample;

/// A point in time: milliseconds since the Unix epoch on the database clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Ts(pub i64);

impl Ts {
    pub fn from_secs_f64(secs: f64) -> Ts {
        Ts((secs * 1000.0).round() as i64)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
    /// `self + secs` (seconds may be fractional or negative).
    pub fn plus(self, secs: f64) -> Ts {
        Ts(self.0 + (secs * 1000.0).round() as i64)
    }
    /// Seconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Ts) -> f64 {
        (self.0 - earlier.0) as f64 / 1000.0
    }
}
