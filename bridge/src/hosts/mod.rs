//! Per-host scheduling facts from Foreman (pool, rollout flags, monitored
//! files, check interval), held in memory for every host so a poll needs no
//! database.
//!
//! - `rows`: the Foreman rows they come from (`store::host_params` reads
//!   them from a replica: four queries, one round trip, for the whole fleet).
//! - `resolve`: Foreman's parameter precedence over those rows, pure.
//! - `flags`: what each parameter becomes in the answer, pure.
//!
//! A host's certname is `hosts.certname` when set, else `hosts.name`; the
//! directory finds a host by either, certname first (as the ENC's
//! `find_host` does). Its pool is the `pvc_server_pool` parameter, else the
//! **full title** of its Foreman location (`Europe/Berlin/DC1`: titles are
//! unique, while two locations under different parents may share a name),
//! else `FlagConfig::default_pool`.

pub mod flags;
pub mod resolve;
pub mod rows;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::answer::AnswerKey;
use crate::certname::Certname;
use crate::store::host_params;

pub use flags::FlagConfig;
use resolve::{ProblemKind, Problems, Resolved};
use rows::ParamFilter;

/// What the scheduler and the answer need to know about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Foreman's `hosts.id`.
    pub id: i64,
    pub certname: Certname,
    pub pool: Arc<str>,
    /// The full title of its Foreman hostgroup (`base/web`), if it has one
    /// (for the status page's fairness by hostgroup).
    pub hostgroup: Option<Arc<str>>,
    /// `FACTER_*` keys with their values, ordered by key; false booleans are
    /// already left out.
    pub flags: Vec<(AnswerKey, String)>,
    /// Absolute paths, each at most once.
    pub files_monitored: Vec<String>,
    /// Seconds, as set (the clamp to the configured range is the caller's).
    pub check_interval: Option<u32>,
}

/// Every host by certname, also found by host name.
#[derive(Debug, Default)]
pub struct HostDirectory {
    /// Ordered by Foreman id.
    hosts: Vec<Arc<HostInfo>>,
    by_certname: HashMap<String, Arc<HostInfo>>,
    by_name: HashMap<String, Arc<HostInfo>>,
}

impl HostDirectory {
    /// The host whose certname is `certname`, else whose name is.
    pub fn get(&self, certname: &str) -> Option<Arc<HostInfo>> {
        self.by_certname
            .get(certname)
            .or_else(|| self.by_name.get(certname))
            .cloned()
    }

    /// The host with Foreman id `id`.
    pub fn by_id(&self, id: i64) -> Option<Arc<HostInfo>> {
        self.hosts
            .binary_search_by_key(&id, |info| info.id)
            .ok()
            .map(|ix| Arc::clone(&self.hosts[ix]))
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Hosts in Foreman id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<HostInfo>> {
        self.hosts.iter()
    }

    /// Adds `info` (found by `name` too, unless another host has that
    /// name); `None` when its certname is already taken, the earlier host
    /// keeping it.
    pub fn insert(&mut self, info: HostInfo, name: &str) -> Option<Arc<HostInfo>> {
        let key = info.certname.as_str().to_owned();
        if self.by_certname.contains_key(&key) {
            return None;
        }
        let info = Arc::new(info);
        self.by_certname.insert(key, Arc::clone(&info));
        self.by_name
            .entry(name.to_owned())
            .or_insert_with(|| Arc::clone(&info));
        self.hosts.push(Arc::clone(&info));
        Some(info)
    }

    /// The directory of resolved hosts (ordered by id); a certname seen
    /// twice keeps its lowest id and the other host is tallied.
    fn build(resolved: Vec<(HostInfo, String)>, problems: &mut Problems) -> HostDirectory {
        let mut directory = HostDirectory {
            hosts: Vec::with_capacity(resolved.len()),
            by_certname: HashMap::with_capacity(resolved.len()),
            by_name: HashMap::with_capacity(resolved.len()),
        };
        for (info, name) in resolved {
            let (certname, id) = (info.certname.clone(), info.id);
            if directory.insert(info, &name).is_none() {
                problems.add(ProblemKind::BadHost, certname.as_str(), || {
                    format!("certname also used by a host with a lower id than {id}")
                });
            }
        }
        directory
    }
}

/// What one load found and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Hosts in the directory.
    pub hosts: usize,
    /// Hosts left out: a name that is not a certname, or a duplicate.
    pub skipped_hosts: usize,
    /// Distinct parameter names that make no valid key.
    pub skipped_keys: usize,
    /// Keys left out on a host because two of its names give them.
    pub conflicts: usize,
    /// Parameters left out on a host because their value holds ERB.
    pub erb: usize,
    /// Parameters left out on a host because their value is unusable (or
    /// partly: monitored files with refused entries).
    pub bad_values: usize,
    /// Time spent, queries and resolution.
    pub elapsed: Duration,
}

impl LoadReport {
    fn new(hosts: usize, problems: &Problems, elapsed: Duration) -> Self {
        LoadReport {
            hosts,
            skipped_hosts: problems.count(ProblemKind::BadHost),
            skipped_keys: problems.count(ProblemKind::BadKey),
            conflicts: problems.count(ProblemKind::Conflict),
            erb: problems.count(ProblemKind::Erb),
            bad_values: problems.count(ProblemKind::BadValue),
            elapsed,
        }
    }
}

/// At most this many problem lines per load; the rest are counted.
const MAX_PROBLEM_LOGS: usize = 20;

/// Logs each (kind, parameter) once, with how many hosts it touched.
/// Names and values come from Foreman and may hold anything: they are
/// logged escaped (`{:?}`).
fn log_problems(problems: &Problems, host: Option<&str>) {
    for ((kind, subject), tally) in problems.entries.iter().take(MAX_PROBLEM_LOGS) {
        tracing::warn!(
            host,
            subject = ?subject,
            count = tally.count,
            reason = ?tally.reason,
            "host directory: {}",
            kind.as_str()
        );
    }
    let more = problems.entries.len().saturating_sub(MAX_PROBLEM_LOGS);
    if more > 0 {
        tracing::warn!(more, "host directory: more problems not logged");
    }
}

fn filter(config: &FlagConfig) -> ParamFilter {
    ParamFilter {
        names: flags::NAMES.iter().map(|n| (*n).to_owned()).collect(),
        prefix: config.prefix.clone(),
    }
}

/// Every host, from a replica: four queries in one round trip, then pure
/// resolution. Problems are logged once per load.
pub async fn load_directory(
    client: &tokio_postgres::Client,
    config: &FlagConfig,
) -> anyhow::Result<(HostDirectory, LoadReport)> {
    let started = tokio::time::Instant::now();
    let rows = host_params::load_fleet(client, &filter(config))
        .await
        .context("reading hosts and parameters")?;
    let queried = started.elapsed();
    let Resolved {
        hosts,
        mut problems,
    } = resolve::resolve(&rows, config);
    drop(rows);
    let directory = HostDirectory::build(hosts, &mut problems);
    let report = LoadReport::new(directory.len(), &problems, started.elapsed());
    log_problems(&problems, None);
    tracing::info!(
        hosts = report.hosts,
        skipped_hosts = report.skipped_hosts,
        skipped_keys = report.skipped_keys,
        conflicts = report.conflicts,
        erb = report.erb,
        bad_values = report.bad_values,
        query_ms = queried.as_millis() as u64,
        total_ms = report.elapsed.as_millis() as u64,
        "host directory loaded"
    );
    Ok((directory, report))
}

/// One host (by certname, else by name) with only the rows it needs: for a
/// host that appeared since the directory was loaded. `None` when Foreman
/// has no such managed host, or its name is not a certname.
pub async fn load_host(
    client: &tokio_postgres::Client,
    config: &FlagConfig,
    certname: &str,
) -> anyhow::Result<Option<HostInfo>> {
    let Some(rows) = host_params::load_one(client, &filter(config), certname)
        .await
        .with_context(|| format!("reading host {certname}"))?
    else {
        return Ok(None);
    };
    let Resolved { hosts, problems } = resolve::resolve(&rows, config);
    log_problems(&problems, Some(certname));
    Ok(hosts.into_iter().next().map(|(info, _)| info))
}

#[cfg(test)]
mod tests;
