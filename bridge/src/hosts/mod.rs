//! Per-host scheduling facts from Foreman (pool, rollout flags, monitored
//! files, check interval), held in memory for every host.
