//! What a puppetserver says about its JRuby pool, whatever the source:
//! the status API (`/status/v1/services/jruby-metrics?level=debug`), the
//! original pvc push (`POST /ppm`), or static configuration.

/// One reading of a server's JRuby pool. Counts are instantaneous; the
/// averages are the server's own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerSample {
    /// Pool size (`num-jrubies`).
    pub jrubies: u32,
    /// Idle instances right now (`num-free-jrubies`).
    pub free: u32,
    /// Requests waiting for an instance (`requested-instances`).
    pub queued: u32,
    /// Mean time a request holds an instance, ms (`average-borrow-time`).
    pub avg_borrow_ms: f64,
    /// Mean wait to borrow, ms (`average-wait-time`).
    pub avg_wait_ms: f64,
    /// Cumulative borrows (`borrow-count`).
    pub borrow_count: u64,
    /// The pool is locked for a flush/reload (code deploy): not an outage.
    pub pool_locked: bool,
}
