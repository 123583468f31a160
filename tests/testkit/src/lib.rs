//! pvc-testkit: real PostgreSQL primary + streaming replica for tests, the
//! demo and benchmarks (`cluster`); the Foreman fleet generator (`fleet`).

pub mod cluster;
pub mod fleet;
