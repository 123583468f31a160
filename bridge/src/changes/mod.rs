//! The change feed: triggers on Foreman's tables log every change of a
//! column the bridge reads into `pvc.changes` (installed by `pvc-bridge
//! migrate`); each bridge follows that log on a replica and drops exactly
//! the cached entries a change affects.
//!
//! - `tables`: what is watched and what a change affects (pure).
//! - `cursor`: reading the log without missing rows committed out of id
//!   order (pure).
//! - `feed`: the follower and the pruning (I/O).

pub mod cursor;
pub mod feed;
pub mod tables;
