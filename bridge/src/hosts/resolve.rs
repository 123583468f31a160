//! From Foreman rows to each host's scheduling facts, in pure code.
//!
//! Precedence is the ENC's (`enc::build::host_params`): global →
//! organization ancestry → location ancestry (root first) → domain, subnet
//! and IPv6 subnet of the primary interface → operating system → hostgroup
//! ancestry (root first) → host; a later level replaces an earlier value of
//! the same name. Only the winning value counts: when it cannot be used
//! (ERB only Foreman renders, an undecodable or unusable value) the
//! parameter is left out for that host, never replaced by a value it
//! overrides, and the problem is tallied for the load's log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::flags::{self, FlagConfig, NameKind};
use super::rows::{FleetRows, HostRow, Level, ParamRow, TreeRow};
use super::HostInfo;
use crate::answer::AnswerKey;
use crate::certname::Certname;
use crate::enc::erb;

/// Why a parameter (or host) was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// The name makes no valid answer key.
    BadKey,
    /// Two names give the same key on one host.
    Conflict,
    /// The value holds ERB, which only Foreman renders.
    Erb,
    /// The value does not decode or does not fit its use.
    BadValue,
    /// The host's name is not a certname, or its certname is taken.
    BadHost,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::BadKey => "name is not a valid answer key",
            ProblemKind::Conflict => "names map to the same answer key",
            ProblemKind::Erb => "value needs ERB, which only Foreman renders",
            ProblemKind::BadValue => "value unusable",
            ProblemKind::BadHost => "host skipped",
        }
    }
}

/// One kind of problem with one parameter (or host): how often, and a
/// sample reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub count: usize,
    pub reason: String,
}

/// Problems of one resolution, grouped so a load logs each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// (kind, parameter name or host name) → tally.
    pub entries: BTreeMap<(ProblemKind, String), Tally>,
}

impl Problems {
    pub(crate) fn add(
        &mut self,
        kind: ProblemKind,
        subject: &str,
        reason: impl FnOnce() -> String,
    ) {
        let key = (kind, subject.to_owned());
        match self.entries.get_mut(&key) {
            Some(tally) => tally.count += 1,
            None => {
                self.entries.insert(
                    key,
                    Tally {
                        count: 1,
                        reason: reason(),
                    },
                );
            }
        }
    }

    /// Occurrences of `kind` (hosts × parameters; distinct names for
    /// `BadKey`, which does not depend on the host).
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.entries
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, tally)| tally.count)
            .sum()
    }
}

/// The resolved hosts (ordered by id) and what was left out.
#[derive(Debug, Default)]
pub struct Resolved {
    pub hosts: Vec<(HostInfo, String)>,
    pub problems: Problems,
}

/// Parameters by level and owner, and each distinct name's kind.
struct ParamIndex<'a> {
    by_owner: HashMap<(Level, Option<i64>), Vec<&'a ParamRow>>,
    kinds: HashMap<&'a str, Option<NameKind>>,
}

impl<'a> ParamIndex<'a> {
    fn new(params: &'a [ParamRow], prefix: &str, problems: &mut Problems) -> Self {
        let mut by_owner: HashMap<(Level, Option<i64>), Vec<&ParamRow>> = HashMap::new();
        let mut kinds: HashMap<&str, Option<NameKind>> = HashMap::new();
        for param in params {
            let reference = match param.level {
                Level::Global => None,
                _ => param.reference_id,
            };
            by_owner
                .entry((param.level, reference))
                .or_default()
                .push(param);
            kinds.entry(&param.name).or_insert_with(|| {
                let kind = flags::classify_name(&param.name, prefix);
                if let Some(NameKind::BadKey(reason)) = &kind {
                    problems.add(ProblemKind::BadKey, &param.name, || reason.clone());
                }
                kind
            });
        }
        ParamIndex { by_owner, kinds }
    }

    fn at(&self, level: Level, owner: Option<i64>) -> &[&'a ParamRow] {
        self.by_owner
            .get(&(level, owner))
            .map_or(&[], Vec::as_slice)
    }
}

/// Each node's path: existing ancestors root first, then itself.
struct Tree<'a> {
    nodes: HashMap<i64, &'a TreeRow>,
}

impl<'a> Tree<'a> {
    fn new(rows: &'a [TreeRow]) -> Self {
        Tree {
            nodes: rows.iter().map(|row| (row.id, row)).collect(),
        }
    }

    /// Empty when the leaf does not exist; missing ancestors are skipped,
    /// as the ENC skips them.
    fn path(&self, leaf: Option<i64>) -> impl Iterator<Item = i64> + '_ {
        let leaf = leaf.and_then(|id| self.nodes.get(&id));
        let ancestors = leaf
            .and_then(|row| row.ancestry.as_deref())
            .unwrap_or("")
            .split('/')
            .filter_map(|id| id.parse::<i64>().ok())
            .filter(|id| self.nodes.contains_key(id));
        ancestors.chain(leaf.map(|row| row.id))
    }

    fn title(&self, id: Option<i64>) -> Option<&'a str> {
        id.and_then(|id| self.nodes.get(&id))
            .map(|row| row.title.as_str())
    }
}

/// The levels of one host in precedence order (lowest first).
fn levels(host: &HostRow, taxonomies: &Tree, hostgroups: &Tree) -> Vec<(Level, Option<i64>)> {
    let mut levels = vec![(Level::Global, None)];
    levels.extend(
        taxonomies
            .path(host.organization_id)
            .map(|id| (Level::Organization, Some(id))),
    );
    levels.extend(
        taxonomies
            .path(host.location_id)
            .map(|id| (Level::Location, Some(id))),
    );
    levels.extend(host.domain_id.map(|id| (Level::Domain, Some(id))));
    levels.extend(host.subnet_id.map(|id| (Level::Subnet, Some(id))));
    levels.extend(host.subnet6_id.map(|id| (Level::Subnet, Some(id))));
    levels.extend(host.os_id.map(|id| (Level::Os, Some(id))));
    levels.extend(
        hostgroups
            .path(host.hostgroup_id)
            .map(|id| (Level::Hostgroup, Some(id))),
    );
    levels.push((Level::Host, Some(host.id)));
    levels
}

/// The winning row of every parameter name of one host, in the order each
/// name first appears in the levels (rows of one level in the order given).
fn winners<'a>(
    host: &HostRow,
    index: &ParamIndex<'a>,
    taxonomies: &Tree,
    hostgroups: &Tree,
) -> Vec<&'a ParamRow> {
    let mut out: Vec<&ParamRow> = Vec::new();
    for (level, owner) in levels(host, taxonomies, hostgroups) {
        for param in index.at(level, owner) {
            match out.iter_mut().find(|p| p.name == param.name) {
                Some(slot) => *slot = param,
                None => out.push(param),
            }
        }
    }
    out
}

/// Every parameter of every host with its winning value (ERB and all), by
/// Foreman's precedence: what the ENC's `parameters` hold before rendering.
pub fn parameters(rows: &FleetRows) -> Vec<(i64, Vec<&ParamRow>)> {
    let mut problems = Problems::default();
    let index = ParamIndex::new(&rows.params, "", &mut problems);
    let taxonomies = Tree::new(&rows.taxonomies);
    let hostgroups = Tree::new(&rows.hostgroups);
    rows.hosts
        .iter()
        .map(|host| (host.id, winners(host, &index, &taxonomies, &hostgroups)))
        .collect()
}

/// Resolves every host of `rows`. Each result carries the host's name (a
/// directory also finds hosts by name).
pub fn resolve(rows: &FleetRows, config: &FlagConfig) -> Resolved {
    let mut problems = Problems::default();
    let index = ParamIndex::new(&rows.params, &config.prefix, &mut problems);
    let taxonomies = Tree::new(&rows.taxonomies);
    let hostgroups = Tree::new(&rows.hostgroups);
    let mut pools = Pools::default();
    // Titles shared by the hosts of a hostgroup, like pool names.
    let mut groups = Pools::default();
    let mut hosts = Vec::with_capacity(rows.hosts.len());
    for host in &rows.hosts {
        let certname_text = host
            .certname
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or(&host.name);
        let certname: Certname = match certname_text.parse() {
            Ok(certname) => certname,
            Err(error) => {
                problems.add(ProblemKind::BadHost, certname_text, || error.to_string());
                continue;
            }
        };
        let mut info = HostInfo {
            id: host.id,
            certname,
            pool: Arc::from(""),
            hostgroup: hostgroups
                .title(host.hostgroup_id)
                .filter(|title| !title.trim().is_empty())
                .map(|title| groups.intern(title)),
            flags: Vec::new(),
            files_monitored: Vec::new(),
            check_interval: None,
        };
        let winners = winners(host, &index, &taxonomies, &hostgroups);
        let conflicts = conflicting_keys(&winners, &index, &mut problems);
        let mut pool = None;
        for param in winners {
            let Some(Some(kind)) = index.kinds.get(param.name.as_str()) else {
                continue;
            };
            match kind {
                NameKind::BadKey(_) => continue, // tallied once per name
                NameKind::Flag(key) if conflicts.contains(&key) => continue,
                _ => {}
            }
            let value = match &param.value {
                Ok(value) => value,
                Err(reason) => {
                    problems.add(ProblemKind::BadValue, &param.name, || reason.clone());
                    continue;
                }
            };
            if erb::value_contains_erb(value) {
                problems.add(ProblemKind::Erb, &param.name, || {
                    format!("winning value from {}", param.level.as_type())
                });
                continue;
            }
            let outcome = match kind {
                NameKind::Flag(key) => flags::flag_value(param.key_type, value)
                    .map(|text| info.flags.extend(text.map(|text| (key.clone(), text)))),
                NameKind::FilesMonitored => {
                    flags::files_monitored(value).map(|(paths, refused)| {
                        if !refused.is_empty() {
                            problems.add(ProblemKind::BadValue, &param.name, || {
                                format!("entries refused ({REFUSED_PATH}): {refused:?}")
                            });
                        }
                        info.files_monitored = paths;
                    })
                }
                NameKind::CheckInterval => {
                    flags::check_interval(value).map(|seconds| info.check_interval = seconds)
                }
                NameKind::Pool => flags::pool(value).map(|name| pool = name),
                NameKind::BadKey(_) => Ok(()),
            };
            if let Err(error) = outcome {
                problems.add(ProblemKind::BadValue, &param.name, || error.0);
            }
        }
        info.flags.sort_by(|a, b| a.0.cmp(&b.0));
        info.pool = match pool {
            Some(name) => pools.intern(&name),
            None => match taxonomies.title(host.location_id) {
                Some(title) if !title.trim().is_empty() => pools.intern(title),
                _ => pools.intern(&config.default_pool),
            },
        };
        hosts.push((info, host.name.clone()));
    }
    Resolved { hosts, problems }
}

const REFUSED_PATH: &str = "not absolute, or holding whitespace";

/// The flag key a parameter name gives, if it gives one.
fn flag_key<'a>(index: &'a ParamIndex, name: &str) -> Option<&'a AnswerKey> {
    match index.kinds.get(name) {
        Some(Some(NameKind::Flag(key))) => Some(key),
        _ => None,
    }
}

/// Keys that two of the host's parameter names give (`update_flag` and
/// `pvc_facter_update_flag`, or names differing only in case): which one
/// was meant cannot be known, so neither is emitted, whatever the values.
fn conflicting_keys<'a>(
    winners: &[&ParamRow],
    index: &'a ParamIndex,
    problems: &mut Problems,
) -> Vec<&'a AnswerKey> {
    let mut keys: Vec<&AnswerKey> = winners
        .iter()
        .filter_map(|param| flag_key(index, &param.name))
        .collect();
    keys.sort();
    let mut conflicts: Vec<&AnswerKey> = Vec::new();
    for pair in keys.windows(2) {
        if pair[0] == pair[1] && conflicts.last() != Some(&pair[0]) {
            conflicts.push(pair[0]);
            let names: Vec<&str> = winners
                .iter()
                .filter(|p| flag_key(index, &p.name) == Some(pair[0]))
                .map(|p| p.name.as_str())
                .collect();
            problems.add(ProblemKind::Conflict, pair[0].as_str(), || {
                format!("{names:?} all give {}; none is emitted", pair[0])
            });
        }
    }
    conflicts
}

/// One `Arc<str>` per distinct pool, shared by its hosts.
#[derive(Default)]
struct Pools(HashMap<String, Arc<str>>);

impl Pools {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(pool) = self.0.get(name) {
            return Arc::clone(pool);
        }
        let pool: Arc<str> = Arc::from(name);
        self.0.insert(name.to_owned(), Arc::clone(&pool));
        pool
    }
}
