//! Fairness over the fleet: how long ago each host last ran (and last ran
//! successfully), as a histogram in fractions of `max_interval`, with
//! percentiles and the hosts past the bound; by pool, and by Foreman
//! hostgroup (worst first, capped: a fleet may have thousands). Pure: ages
//! in, summary out.

use std::collections::BTreeMap;

use serde::Serialize;

/// Bucket upper bounds as fractions of `max_interval`; the last bucket is
/// open-ended.
const BUCKETS: [f64; 6] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0];

/// The hostgroup of hosts without one.
pub const NO_HOSTGROUP: &str = "(none)";
/// Hostgroups listed by name, worst first; the others are only counted.
pub const HOSTGROUP_ROWS: usize = 20;

/// One host's ages in seconds (`None`: no run known).
#[derive(Debug, Clone)]
pub struct HostAges<'a> {
    pub pool: &'a str,
    /// Its hostgroup's title, [`NO_HOSTGROUP`] without one.
    pub hostgroup: &'a str,
    pub since_run: Option<f64>,
    pub since_success: Option<f64>,
    /// `since_success` is the scheduler's last run, not a report's exit
    /// code (no report with one reached this process since it started).
    pub success_estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound in seconds; `None` for the open-ended last bucket.
    pub le_secs: Option<f64>,
    pub hosts: usize,
}

/// A distribution of ages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    /// Hosts with a known age.
    pub hosts: usize,
    /// Hosts without one (never ran, as far as this process knows).
    pub never: usize,
    pub buckets: Vec<Bucket>,
    pub p50_secs: Option<f64>,
    pub p90_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    pub max_secs: Option<f64>,
    /// Hosts whose age exceeds `max_interval`.
    pub beyond_max_interval: usize,
}

impl Distribution {
    pub fn of(mut ages: Vec<f64>, never: usize, max_interval: f64) -> Distribution {
        ages.retain(|a| a.is_finite());
        ages.sort_by(f64::total_cmp);
        let mut buckets: Vec<Bucket> = BUCKETS
            .iter()
            .map(|f| Bucket {
                le_secs: Some(f * max_interval),
                hosts: 0,
            })
            .collect();
        buckets.push(Bucket {
            le_secs: None,
            hosts: 0,
        });
        for &age in &ages {
            let ix = buckets
                .iter()
                .position(|b| b.le_secs.is_none_or(|le| age <= le))
                .unwrap_or(buckets.len() - 1);
            buckets[ix].hosts += 1;
        }
        Distribution {
            hosts: ages.len(),
            never,
            buckets,
            p50_secs: percentile(&ages, 0.50),
            p90_secs: percentile(&ages, 0.90),
            p99_secs: percentile(&ages, 0.99),
            max_secs: ages.last().copied(),
            beyond_max_interval: ages.iter().filter(|&&a| a > max_interval).count(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolFairness {
    pub pool: String,
    pub hosts: usize,
    pub beyond_max_interval: usize,
    pub never_ran: usize,
}

/// One hostgroup's ages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostgroupFairness {
    pub hostgroup: String,
    pub hosts: usize,
    pub since_run_p50_secs: Option<f64>,
    pub since_run_p90_secs: Option<f64>,
    pub since_run_max_secs: Option<f64>,
    pub since_success_p50_secs: Option<f64>,
    pub since_success_p90_secs: Option<f64>,
    /// Hosts whose last run is older than `max_interval`.
    pub beyond_max_interval: usize,
    /// Hosts with no run known.
    pub never_ran: usize,
}

/// Fairness by hostgroup: the worst ones by name, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hostgroups {
    /// Hostgroups in the fleet ([`NO_HOSTGROUP`] counts as one).
    pub total: usize,
    /// Hostgroups with at least one host beyond `max_interval`.
    pub with_hosts_beyond: usize,
    /// At most [`HOSTGROUP_ROWS`], worst first: most hosts beyond
    /// `max_interval`, then the oldest p90 (no run known is oldest).
    pub worst: Vec<HostgroupFairness>,
    /// Hostgroups not in `worst`.
    pub more: usize,
}

/// Ages of one hostgroup's hosts while counting.
#[derive(Default)]
struct GroupAges {
    hosts: usize,
    run: Vec<f64>,
    success: Vec<f64>,
    beyond: usize,
    never: usize,
}

impl Hostgroups {
    fn of(groups: BTreeMap<&str, GroupAges>) -> Hostgroups {
        let total = groups.len();
        let mut rows: Vec<HostgroupFairness> = groups
            .into_iter()
            .map(|(name, mut g)| {
                g.run.sort_by(f64::total_cmp);
                g.success.sort_by(f64::total_cmp);
                HostgroupFairness {
                    hostgroup: name.to_owned(),
                    hosts: g.hosts,
                    since_run_p50_secs: percentile(&g.run, 0.50),
                    since_run_p90_secs: percentile(&g.run, 0.90),
                    since_run_max_secs: g.run.last().copied(),
                    since_success_p50_secs: percentile(&g.success, 0.50),
                    since_success_p90_secs: percentile(&g.success, 0.90),
                    beyond_max_interval: g.beyond,
                    never_ran: g.never,
                }
            })
            .collect();
        let with_hosts_beyond = rows.iter().filter(|r| r.beyond_max_interval > 0).count();
        // Worst first; the name keeps the order stable between refreshes.
        rows.sort_by(|a, b| {
            let p90 = |r: &HostgroupFairness| r.since_run_p90_secs.unwrap_or(f64::INFINITY);
            b.beyond_max_interval
                .cmp(&a.beyond_max_interval)
                .then(p90(b).total_cmp(&p90(a)))
                .then_with(|| a.hostgroup.cmp(&b.hostgroup))
        });
        rows.truncate(HOSTGROUP_ROWS);
        Hostgroups {
            total,
            with_hosts_beyond,
            more: total - rows.len(),
            worst: rows,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    pub max_interval_secs: f64,
    pub hosts: usize,
    pub since_run: Distribution,
    pub since_success: Distribution,
    /// Hosts whose last success comes from a report's exit code.
    pub success_from_reports: usize,
    /// Hosts whose last success is estimated from their last run.
    pub success_estimated: usize,
    pub pools: Vec<PoolFairness>,
    pub hostgroups: Hostgroups,
}

impl Fairness {
    pub fn of<'a>(hosts: impl IntoIterator<Item = HostAges<'a>>, max_interval: f64) -> Fairness {
        let mut run_ages = Vec::new();
        let mut success_ages = Vec::new();
        let (mut run_never, mut success_never) = (0, 0);
        let (mut from_reports, mut estimated) = (0, 0);
        let mut pools: BTreeMap<&str, PoolFairness> = BTreeMap::new();
        let mut groups: BTreeMap<&str, GroupAges> = BTreeMap::new();
        let mut count = 0;
        for host in hosts {
            count += 1;
            let pool = pools.entry(host.pool).or_insert_with(|| PoolFairness {
                pool: host.pool.to_owned(),
                hosts: 0,
                beyond_max_interval: 0,
                never_ran: 0,
            });
            pool.hosts += 1;
            let group = groups.entry(host.hostgroup).or_default();
            group.hosts += 1;
            match host.since_run {
                Some(age) => {
                    run_ages.push(age);
                    if age.is_finite() {
                        group.run.push(age);
                    }
                    if age > max_interval {
                        pool.beyond_max_interval += 1;
                        group.beyond += 1;
                    }
                }
                None => {
                    run_never += 1;
                    pool.never_ran += 1;
                    group.never += 1;
                }
            }
            match host.since_success {
                Some(age) => {
                    success_ages.push(age);
                    if age.is_finite() {
                        group.success.push(age);
                    }
                }
                None => success_never += 1,
            }
            if host.success_estimated {
                estimated += 1;
            } else {
                from_reports += 1;
            }
        }
        Fairness {
            max_interval_secs: max_interval,
            hosts: count,
            since_run: Distribution::of(run_ages, run_never, max_interval),
            since_success: Distribution::of(success_ages, success_never, max_interval),
            success_from_reports: from_reports,
            success_estimated: estimated,
            pools: pools.into_values().collect(),
            hostgroups: Hostgroups::of(groups),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(pool: &str, run: Option<f64>, success: Option<f64>, estimated: bool) -> HostAges<'_> {
        HostAges {
            pool,
            hostgroup: NO_HOSTGROUP,
            since_run: run,
            since_success: success,
            success_estimated: estimated,
        }
    }

    #[test]
    fn ages_fall_in_buckets_of_max_interval() {
        // max_interval 100: bounds 25, 50, 75, 100, 150, 200, +inf.
        let d = Distribution::of(vec![10.0, 25.0, 26.0, 99.0, 101.0, 500.0], 2, 100.0);
        let counts: Vec<usize> = d.buckets.iter().map(|b| b.hosts).collect();
        assert_eq!(counts, vec![2, 1, 0, 1, 1, 0, 1]);
        assert_eq!(d.buckets[3].le_secs, Some(100.0));
        assert_eq!(d.buckets[6].le_secs, None);
        assert_eq!(d.hosts, 6);
        assert_eq!(d.never, 2);
        assert_eq!(d.beyond_max_interval, 2);
        assert_eq!(d.max_secs, Some(500.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let ages: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        let d = Distribution::of(ages, 0, 1000.0);
        assert_eq!(d.p50_secs, Some(50.0));
        assert_eq!(d.p90_secs, Some(90.0));
        assert_eq!(d.p99_secs, Some(99.0));
        let empty = Distribution::of(Vec::new(), 3, 1000.0);
        assert_eq!(empty.p50_secs, None);
        assert_eq!(empty.buckets.iter().map(|b| b.hosts).sum::<usize>(), 0);
        assert_eq!(Distribution::of(vec![7.0], 0, 10.0).p99_secs, Some(7.0));
    }

    #[test]
    fn fleet_and_pools() {
        let f = Fairness::of(
            [
                host("dc1", Some(10.0), Some(10.0), false),
                host("dc1", Some(700.0), Some(900.0), false),
                host("dc2", None, None, true),
                host("dc2", Some(50.0), Some(50.0), true),
            ],
            600.0,
        );
        assert_eq!(f.hosts, 4);
        assert_eq!(f.since_run.hosts, 3);
        assert_eq!(f.since_run.never, 1);
        assert_eq!(f.since_run.beyond_max_interval, 1);
        assert_eq!(f.since_success.max_secs, Some(900.0));
        assert_eq!((f.success_from_reports, f.success_estimated), (2, 2));
        assert_eq!(
            f.pools,
            vec![
                PoolFairness {
                    pool: "dc1".into(),
                    hosts: 2,
                    beyond_max_interval: 1,
                    never_ran: 0
                },
                PoolFairness {
                    pool: "dc2".into(),
                    hosts: 2,
                    beyond_max_interval: 0,
                    never_ran: 1
                },
            ]
        );
    }

    fn in_group<'a>(group: &'a str, run: Option<f64>, success: Option<f64>) -> HostAges<'a> {
        HostAges {
            pool: "dc1",
            hostgroup: group,
            since_run: run,
            since_success: success,
            success_estimated: false,
        }
    }

    #[test]
    fn hostgroups_worst_first() {
        let f = Fairness::of(
            [
                // web: 2 of 3 beyond 600 s.
                in_group("base/web", Some(700.0), Some(700.0)),
                in_group("base/web", Some(900.0), Some(2000.0)),
                in_group("base/web", Some(100.0), Some(100.0)),
                // db: none beyond, but older than cache.
                in_group("base/db", Some(500.0), Some(500.0)),
                in_group("base/db", None, None),
                // cache: none beyond, young.
                in_group("base/cache", Some(10.0), Some(10.0)),
                // Never ran at all: oldest p90 among those with none beyond.
                in_group(NO_HOSTGROUP, None, None),
            ],
            600.0,
        );
        let g = &f.hostgroups;
        assert_eq!((g.total, g.with_hosts_beyond, g.more), (4, 1, 0));
        let order: Vec<&str> = g.worst.iter().map(|r| r.hostgroup.as_str()).collect();
        assert_eq!(order, ["base/web", NO_HOSTGROUP, "base/db", "base/cache"]);
        let web = &g.worst[0];
        assert_eq!(
            (web.hosts, web.beyond_max_interval, web.never_ran),
            (3, 2, 0)
        );
        assert_eq!(web.since_run_p50_secs, Some(700.0));
        assert_eq!(web.since_run_p90_secs, Some(900.0));
        assert_eq!(web.since_run_max_secs, Some(900.0));
        assert_eq!(web.since_success_p90_secs, Some(2000.0));
        let db = &g.worst[2];
        assert_eq!((db.hosts, db.never_ran), (2, 1));
        assert_eq!(db.since_run_p90_secs, Some(500.0));
        assert_eq!(db.since_success_p50_secs, Some(500.0));
        assert_eq!(g.worst[1].since_run_p50_secs, None);
    }

    #[test]
    fn hostgroups_are_capped_and_the_rest_counted() {
        let names: Vec<String> = (0..HOSTGROUP_ROWS + 5)
            .map(|i| format!("g{i:03}"))
            .collect();
        // Group i has i hosts beyond the bound: the last ones are worst.
        let hosts = names.iter().enumerate().flat_map(|(i, name)| {
            (0..=i).map(move |k| in_group(name, Some(if k < i { 700.0 } else { 1.0 }), None))
        });
        let g = Fairness::of(hosts, 600.0).hostgroups;
        assert_eq!(g.total, HOSTGROUP_ROWS + 5);
        assert_eq!(g.worst.len(), HOSTGROUP_ROWS);
        assert_eq!(g.more, 5);
        assert_eq!(g.with_hosts_beyond, HOSTGROUP_ROWS + 4);
        assert_eq!(g.worst[0].hostgroup, names[HOSTGROUP_ROWS + 4]);
        assert_eq!(g.worst[0].beyond_max_interval, HOSTGROUP_ROWS + 4);
        assert!(g
            .worst
            .windows(2)
            .all(|w| w[0].beyond_max_interval >= w[1].beyond_max_interval));
    }
}
