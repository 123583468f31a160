//! pvc-testkit: real PostgreSQL primary + streaming replica for tests, the
//! demo and benchmarks (`cluster`); the Foreman fleet generator (`fleet`); a
//! Puppet-like certificate authority (`certs`).

pub mod certs;
pub mod cluster;
pub mod fleet;
