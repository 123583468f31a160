//! Integration tests for the bridge against a real PostgreSQL primary +
//! streaming replica (one cluster for this binary, one database per test,
//! cloned from the real Foreman 3.13 dump).

mod access;
mod audit;
mod change_triggers;
mod changes;
mod degraded;
mod durability;
mod enc_golden;
mod enc_service;
mod foreman_standin;
mod forward;
mod hosts;
mod leases;
mod metrics_histograms;
mod replicas;
mod runs;
mod secrets;
mod status_panels;
mod status_poll;
mod support;
mod tls;
mod tls_reload;
mod writes;
