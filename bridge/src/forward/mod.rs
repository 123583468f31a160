//! Forwarding uploads to Foreman's API: facts only when their digest moved
//! (coalesced per host: only the newest facts of a host are sent) and
//! config reports, from the outbox on the primary.
//!
//! - `policy` (pure): Foreman's answers, backoff, the token bucket.
//! - `service` (I/O): the [`Forwarder`] — the leader's rate-limited
//!   background sender, and the synchronous forward of a new host's facts
//!   or of a change the ENC depends on.

mod policy;
mod service;

pub use policy::{backoff, Attempt, Bucket};
pub use service::{ForwardCounters, ForwardStatus, Forwarder, SyncOutcome};
