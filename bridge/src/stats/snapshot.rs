//! The `/stats` document: built once per refresh from plain inputs the
//! HTTP layer gathers (scheduler, counters, replicas, outbox, spool), and
//! kept as serialised JSON so every request shares it.

use serde::Serialize;

use super::fairness::Fairness;
use super::history::{MinuteCount, RunHistory};
use super::rollouts::Rollouts;
use crate::schedule::{ConvergeStatus, SchedulerStats, Ts};

/// Counters of this process's run service (as `/metrics` shows them).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RunCounts {
    pub polls: u64,
    pub granted_schedule: u64,
    pub granted_file_change: u64,
    pub granted_converge: u64,
    pub cached_catalog: u64,
    pub forced_over_budget: u64,
    pub reports: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct EncCounts {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub stale_served: u64,
}

/// A latency histogram as exported: cumulative counts per bound of
/// [`histogram::BOUNDS`](super::histogram::BOUNDS) then `+Inf`, and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cumulative {
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

/// ENC answer latency over the last interval (since start in the first
/// document). Percentiles are bucket upper bounds: "at most".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub requests: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The latency between two cumulative histograms (`previous` `None`: since
/// zero). A percentile beyond the last finite bound is `None`.
pub fn latency(now: &Cumulative, previous: Option<&Cumulative>) -> Latency {
    let bounds: Vec<f64> = super::histogram::BOUNDS
        .iter()
        .map(|b| b.parse().unwrap_or(f64::INFINITY))
        .collect();
    let delta: Vec<u64> = now
        .counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let before = previous.and_then(|p| p.counts.get(i)).copied().unwrap_or(0);
            n.saturating_sub(before)
        })
        .collect();
    let requests = delta.last().copied().unwrap_or(0);
    let sum = now.sum_seconds - previous.map_or(0.0, |p| p.sum_seconds);
    let quantile = |q: f64| {
        if requests == 0 {
            return None;
        }
        let rank = (q * requests as f64).ceil().max(1.0) as u64;
        let ix = delta.iter().position(|&c| c >= rank)?;
        bounds.get(ix).map(|b| b * 1000.0)
    };
    Latency {
        requests,
        mean_ms: (requests > 0).then(|| sum.max(0.0) / requests as f64 * 1000.0),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Replica {
    pub label: String,
    pub up: bool,
    pub usable: bool,
    pub lag_bytes: Option<u64>,
    pub reads: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Outbox {
    pub pending: i64,
    pub dead: i64,
    pub oldest_secs: f64,
    pub leader: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spool {
    pub records: u64,
    pub bytes: u64,
    pub disk_bytes: u64,
}

/// Everything a snapshot is made of.
pub struct Inputs<'a> {
    pub now: Ts,
    pub refresh_secs: f64,
    /// Minutes of run history in the document.
    pub minutes: usize,
    pub target_utilization: f64,
    pub scheduler: &'a SchedulerStats,
    pub history: &'a RunHistory,
    pub runs: RunCounts,
    pub converges: Vec<ConvergeStatus>,
    pub enc: EncCounts,
    /// Successful `/node` answers (the request timings), if timed.
    pub enc_latency: Option<Cumulative>,
    pub replicas: Vec<Replica>,
    /// Replicas further behind are taken out of rotation.
    pub replica_max_lag_bytes: u64,
    pub outbox: Option<Outbox>,
    pub spool: Option<Spool>,
    pub fairness: Fairness,
    pub rollouts: Rollouts,
}

/// A snapshot as served, with what the next one needs for rates.
#[derive(Debug, Clone)]
pub struct Published {
    pub at: Ts,
    pub enc_requests: u64,
    pub enc_latency: Option<Cumulative>,
    /// Hosts per pool whose last run is older than `max_interval` (also
    /// exported in `/metrics`).
    pub beyond_max_interval: Vec<(String, usize)>,
    /// The same by hostgroup: only hostgroups with such hosts, at most
    /// the fairness table's rows, worst first.
    pub beyond_max_interval_by_hostgroup: Vec<(String, usize)>,
    /// Hostgroups with hosts beyond `max_interval` (listed or not).
    pub hostgroups_beyond: usize,
    /// Converge requests not yet done.
    pub converges_in_progress: usize,
    pub rollouts: Rollouts,
    pub json: String,
}

/// Runs started per minute, oldest first, one array per trigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    pub scheduled: Vec<u32>,
    pub forced: Vec<u32>,
    pub converge: Vec<u32>,
}

impl Series {
    fn of(minutes: &[MinuteCount]) -> Series {
        Series {
            scheduled: minutes.iter().map(|m| m.scheduled).collect(),
            forced: minutes.iter().map(|m| m.forced).collect(),
            converge: minutes.iter().map(|m| m.converge).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ServerView {
    pub name: String,
    pub pool: String,
    /// Takes runs (answering, or static, and its pool not locked).
    pub up: bool,
    pub jrubies: u32,
    pub utilization: f64,
    pub target_utilization: f64,
    pub run_rate: f64,
    pub run_cost: f64,
    pub runs_per_minute: Series,
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub hosts: usize,
    pub servers: Vec<String>,
    pub run_rate: f64,
    /// `None` while the pool has no capacity (an endless cycle).
    pub cycle_secs: Option<f64>,
    pub shortage: bool,
    pub reserved_rate: f64,
    pub runs_per_minute: Series,
}

#[derive(Debug, Serialize)]
pub struct RunsView {
    #[serde(flatten)]
    pub counts: RunCounts,
    pub granted_total: u64,
    /// Runs started over the history (every process's, from the lease
    /// feed), and how many of them were forced.
    pub history_started: u64,
    pub history_forced: u64,
    pub forced_share: Option<f64>,
    pub forced_share_last_hour: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ConvergeView {
    pub id: u64,
    pub hosts: usize,
    pub started: usize,
    pub finished: usize,
    pub created_ms: i64,
    pub deadline_ms: i64,
    pub estimated_finish_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct EncView {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub stale_served: u64,
    pub hit_ratio: Option<f64>,
    /// ENC requests per second since the previous snapshot.
    pub requests_per_sec: Option<f64>,
    /// Answer latency since the previous snapshot (`null`: not timed).
    pub latency: Option<Latency>,
}

/// The `/stats` document.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub generated_ms: i64,
    pub refresh_secs: f64,
    pub history_minutes: usize,
    pub servers: Vec<ServerView>,
    pub pools: Vec<PoolView>,
    pub runs: RunsView,
    pub converges: Vec<ConvergeView>,
    pub enc: EncView,
    pub replicas: Vec<Replica>,
    pub replica_max_lag_bytes: u64,
    pub outbox: Option<Outbox>,
    pub spool: Option<Spool>,
    pub fairness: Fairness,
    pub rollouts: Rollouts,
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn totals(series: &[MinuteCount]) -> (u64, u64) {
    series.iter().fold((0, 0), |(all, forced), m| {
        (all + u64::from(m.total()), forced + u64::from(m.forced))
    })
}

/// Builds the document; `previous` gives the ENC request rate.
pub fn build(inputs: Inputs<'_>, previous: Option<&Published>) -> (Stats, u64) {
    let Inputs {
        now,
        refresh_secs,
        minutes,
        target_utilization,
        scheduler,
        history,
        runs,
        converges,
        enc,
        enc_latency,
        replicas,
        replica_max_lag_bytes,
        outbox,
        spool,
        fairness,
        rollouts,
    } = inputs;
    let servers = scheduler
        .servers
        .iter()
        .map(|s| ServerView {
            name: s.name.to_string(),
            pool: s.pool.to_string(),
            up: s.up && !s.pool_locked,
            jrubies: s.jrubies,
            utilization: s.utilization,
            target_utilization,
            run_rate: s.rate,
            run_cost: s.run_cost,
            runs_per_minute: Series::of(&history.series(&s.name, now, minutes)),
        })
        .collect::<Vec<_>>();
    let pools = scheduler
        .pools
        .iter()
        .map(|p| {
            let members: Vec<String> = scheduler
                .servers
                .iter()
                .filter(|s| s.pool == p.name)
                .map(|s| s.name.to_string())
                .collect();
            let series = history.sum(members.iter().map(String::as_str), now, minutes);
            PoolView {
                name: p.name.to_string(),
                hosts: p.hosts,
                servers: members,
                run_rate: p.rate,
                cycle_secs: p.cycle_secs.is_finite().then_some(p.cycle_secs),
                shortage: p.shortage,
                reserved_rate: p.reserved_rate,
                runs_per_minute: Series::of(&series),
            }
        })
        .collect();
    let all_servers: Vec<&str> = scheduler.servers.iter().map(|s| &*s.name).collect();
    let fleet = history.sum(all_servers.iter().copied(), now, minutes);
    let (started, forced) = totals(&fleet);
    let hour = &fleet[fleet.len().saturating_sub(60)..];
    let (hour_started, hour_forced) = totals(hour);
    let enc_requests = enc.hits + enc.misses;
    let requests_per_sec = previous.and_then(|p| {
        let secs = now.since(p.at);
        (secs > 0.0).then(|| enc_requests.saturating_sub(p.enc_requests) as f64 / secs)
    });
    let stats = Stats {
        generated_ms: now.0,
        refresh_secs,
        history_minutes: minutes,
        servers,
        pools,
        runs: RunsView {
            counts: runs,
            granted_total: runs.granted_schedule + runs.granted_file_change + runs.granted_converge,
            history_started: started,
            history_forced: forced,
            forced_share: share(forced, started),
            forced_share_last_hour: share(hour_forced, hour_started),
        },
        converges: converges
            .into_iter()
            .filter(|c| c.done_at.is_none())
            .map(|c| ConvergeView {
                id: c.id,
                hosts: c.hosts,
                started: c.started,
                finished: c.finished,
                created_ms: c.created.0,
                deadline_ms: c.deadline.0,
                estimated_finish_ms: c.estimated_finish.0,
            })
            .collect(),
        enc: EncView {
            hits: enc.hits,
            misses: enc.misses,
            loads: enc.loads,
            stale_served: enc.stale_served,
            hit_ratio: share(enc.hits, enc_requests),
            requests_per_sec,
            latency: enc_latency
                .as_ref()
                .map(|now| latency(now, previous.and_then(|p| p.enc_latency.as_ref()))),
        },
        replicas,
        replica_max_lag_bytes,
        outbox,
        spool,
        fairness,
        rollouts,
    };
    (stats, enc_requests)
}

/// Builds and serialises the document.
pub fn publish(inputs: Inputs<'_>, previous: Option<&Published>) -> Published {
    let at = inputs.now;
    let enc_latency = inputs.enc_latency.clone();
    let beyond_max_interval = inputs
        .fairness
        .pools
        .iter()
        .map(|p| (p.pool.clone(), p.beyond_max_interval))
        .collect();
    let hostgroups = &inputs.fairness.hostgroups;
    let beyond_max_interval_by_hostgroup = hostgroups
        .worst
        .iter()
        .filter(|g| g.beyond_max_interval > 0)
        .map(|g| (g.hostgroup.clone(), g.beyond_max_interval))
        .collect();
    let hostgroups_beyond = hostgroups.with_hosts_beyond;
    let rollouts = inputs.rollouts.clone();
    let (stats, enc_requests) = build(inputs, previous);
    let converges_in_progress = stats.converges.len();
    let json = serde_json::to_string(&stats).unwrap_or_else(|e| {
        // Only non-string map keys fail; none here, but never panic a request.
        format!("{{\"error\":{:?}}}", e.to_string())
    });
    Published {
        at,
        enc_requests,
        enc_latency,
        beyond_max_interval,
        beyond_max_interval_by_hostgroup,
        hostgroups_beyond,
        converges_in_progress,
        rollouts,
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{PoolStats, ServerStats, Trigger};
    use crate::stats::fairness::HostAges;
    use std::sync::Arc;

    fn server(name: &str, pool: &str) -> ServerStats {
        ServerStats {
            name: Arc::from(name),
            pool: Arc::from(pool),
            up: true,
            pool_locked: false,
            jrubies: 4,
            rate: 2.0,
            utilization: 0.5,
            run_cost: 1.5,
            tokens: 1.0,
            granted: 0,
        }
    }

    fn inputs<'a>(
        scheduler: &'a SchedulerStats,
        history: &'a RunHistory,
        now: Ts,
        enc: EncCounts,
    ) -> Inputs<'a> {
        Inputs {
            now,
            refresh_secs: 5.0,
            minutes: 120,
            target_utilization: 0.8,
            scheduler,
            history,
            runs: RunCounts {
                granted_schedule: 3,
                granted_file_change: 1,
                ..RunCounts::default()
            },
            converges: vec![ConvergeStatus {
                id: 7,
                hosts: 3,
                started: 1,
                finished: 0,
                created: Ts(0),
                deadline: Ts(60_000),
                done_at: None,
                estimated_finish: Ts(50_000),
            }],
            enc,
            enc_latency: None,
            replicas: Vec::new(),
            replica_max_lag_bytes: 1024,
            outbox: None,
            spool: None,
            fairness: Fairness::of(
                [HostAges {
                    pool: "dc1",
                    hostgroup: "base/web",
                    since_run: Some(1.0),
                    since_success: None,
                    success_estimated: false,
                }],
                600.0,
            ),
            rollouts: Rollouts::of(Ok(None)),
        }
    }

    #[test]
    fn pools_sum_their_servers_and_shares_come_from_the_history() {
        let scheduler = SchedulerStats {
            servers: vec![
                server("p1", "dc1"),
                server("p2", "dc1"),
                server("p3", "dc2"),
            ],
            pools: vec![
                PoolStats {
                    name: Arc::from("dc1"),
                    hosts: 10,
                    rate: 4.0,
                    cycle_secs: f64::INFINITY,
                    shortage: true,
                    reserved_rate: 0.0,
                },
                PoolStats {
                    name: Arc::from("dc2"),
                    hosts: 5,
                    rate: 2.0,
                    cycle_secs: 300.0,
                    shortage: false,
                    reserved_rate: 0.1,
                },
            ],
        };
        let now = Ts(1_000 * 60_000);
        let mut history = RunHistory::default();
        history.record("p1", Trigger::Schedule, now);
        history.record("p2", Trigger::Schedule, now);
        history.record("p2", Trigger::FileChange, now);
        history.record("p3", Trigger::Schedule, Ts(now.0 - 90 * 60_000));
        let enc = EncCounts {
            hits: 30,
            misses: 10,
            ..EncCounts::default()
        };
        let (stats, requests) = build(inputs(&scheduler, &history, now, enc), None);
        assert_eq!(requests, 40);
        let dc1 = &stats.pools[0];
        assert_eq!(dc1.servers, vec!["p1", "p2"]);
        assert_eq!(dc1.runs_per_minute.scheduled.len(), 120);
        assert_eq!(dc1.runs_per_minute.scheduled[119], 2);
        assert_eq!(dc1.runs_per_minute.forced[119], 1);
        assert_eq!(dc1.cycle_secs, None);
        assert_eq!(stats.pools[1].cycle_secs, Some(300.0));
        assert_eq!(stats.pools[1].runs_per_minute.scheduled[119 - 90], 1);
        assert_eq!(stats.runs.history_started, 4);
        assert_eq!(stats.runs.forced_share, Some(0.25));
        // The dc2 run was 90 minutes ago: outside the last hour.
        assert_eq!(stats.runs.forced_share_last_hour, Some(1.0 / 3.0));
        assert_eq!(stats.runs.granted_total, 4);
        assert_eq!(stats.enc.hit_ratio, Some(0.75));
        assert_eq!(stats.enc.requests_per_sec, None);
        assert_eq!(stats.converges.len(), 1);
        assert_eq!(stats.servers[0].target_utilization, 0.8);

        // Ten seconds and 20 requests later: 2 requests per second.
        let previous = Published {
            at: now,
            enc_requests: 40,
            enc_latency: None,
            beyond_max_interval: Vec::new(),
            beyond_max_interval_by_hostgroup: Vec::new(),
            hostgroups_beyond: 0,
            converges_in_progress: 0,
            rollouts: Rollouts::of(Ok(None)),
            json: String::new(),
        };
        let later = EncCounts {
            hits: 50,
            misses: 10,
            ..EncCounts::default()
        };
        let published = publish(
            inputs(&scheduler, &history, now.plus(10.0), later),
            Some(&previous),
        );
        let doc: serde_json::Value = serde_json::from_str(&published.json).unwrap();
        assert_eq!(doc["enc"]["requests_per_sec"], 2.0);
        assert_eq!(doc["runs"]["granted_schedule"], 3);
        assert_eq!(doc["pools"][0]["cycle_secs"], serde_json::Value::Null);
        assert_eq!(doc["fairness"]["since_run"]["hosts"], 1);
        assert_eq!(
            doc["fairness"]["hostgroups"]["worst"][0]["hostgroup"],
            "base/web"
        );
        assert_eq!(doc["replica_max_lag_bytes"], 1024);
        assert_eq!(doc["rollouts"]["source"], "not_installed");
        assert_eq!(published.converges_in_progress, 1);
        // The one host ran a second ago: no hostgroup is behind.
        assert!(published.beyond_max_interval_by_hostgroup.is_empty());
        assert_eq!(published.enc_requests, 60);
        // What /metrics exports: the fairness panel's per-pool count.
        assert_eq!(
            published.beyond_max_interval,
            vec![(
                "dc1".to_owned(),
                doc["fairness"]["pools"][0]["beyond_max_interval"]
                    .as_u64()
                    .unwrap() as usize
            )]
        );
    }

    #[test]
    fn latency_over_the_interval_from_cumulative_buckets() {
        let n = crate::stats::histogram::BOUNDS.len() + 1;
        // Bounds: 0.1 ms, 0.25 ms, 0.5 ms, 1 ms, ...
        let mut before = Cumulative {
            counts: vec![0; n],
            sum_seconds: 0.0,
        };
        before.counts[0] = 10;
        for c in before.counts.iter_mut().skip(1) {
            *c = 10;
        }
        before.sum_seconds = 0.001;
        // Then 100 more: 98 at or below 0.25 ms, 2 at or below 1 ms.
        let mut after = before.clone();
        after.counts[1] += 98;
        for c in after.counts.iter_mut().skip(2) {
            *c += 98;
        }
        for c in after.counts.iter_mut().skip(3) {
            *c += 2;
        }
        after.sum_seconds += 0.02;
        let l = latency(&after, Some(&before));
        assert_eq!(l.requests, 100);
        assert_eq!(l.p50_ms, Some(0.25));
        assert_eq!(l.p99_ms, Some(1.0));
        assert!((l.mean_ms.unwrap() - 0.2).abs() < 1e-9);
        // Since zero: the first 10 count too, all at or below 0.1 ms.
        assert_eq!(latency(&before, None).p99_ms, Some(0.1));
        let idle = latency(&after, Some(&after));
        assert_eq!((idle.requests, idle.p50_ms, idle.mean_ms), (0, None, None));
    }
}
