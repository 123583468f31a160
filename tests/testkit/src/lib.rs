//! pvc-testkit: real PostgreSQL primary + streaming replica for tests, the
//! demo and benchmarks; the Foreman fixture loader; the fleet generator.
