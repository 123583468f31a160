//! Fairness over the fleet: how long ago each host last ran (and last ran
//! successfully), as a histogram in fractions of `max_interval`, with
//! percentiles and the hosts past the bound. Pure: ages in, summary out.

use std::collections::BTreeMap;

use serde::Serialize;

/// Bucket upper bounds as fractions of `max_interval`; the last bucket is
/// open-ended.
const BUCKETS: [f64; 6] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0];

/// One host's ages in seconds (`None`: no run known).
#[derive(Debug, Clone)]
pub struct HostAges<'a> {
    pub pool: &'a str,
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
}

impl Fairness {
    pub fn of<'a>(hosts: impl IntoIterator<Item = HostAges<'a>>, max_interval: f64) -> Fairness {
        let mut run_ages = Vec::new();
        let mut success_ages = Vec::new();
        let (mut run_never, mut success_never) = (0, 0);
        let (mut from_reports, mut estimated) = (0, 0);
        let mut pools: BTreeMap<&str, PoolFairness> = BTreeMap::new();
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
            match host.since_run {
                Some(age) => {
                    run_ages.push(age);
                    if age > max_interval {
                        pool.beyond_max_interval += 1;
                    }
                }
                None => {
                    run_never += 1;
                    pool.never_ran += 1;
                }
            }
            match host.since_success {
                Some(age) => success_ages.push(age),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(pool: &str, run: Option<f64>, success: Option<f64>, estimated: bool) -> HostAges<'_> {
        HostAges {
            pool,
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
}
