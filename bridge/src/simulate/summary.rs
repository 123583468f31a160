//! The figures of one strategy's run, computed from the world at the end:
//! what `summary.md`/`summary.json` show and what the acceptance test
//! checks. Everything except the outage and converge figures is measured
//! after the warm-up.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::StrategyKind;
use super::server::ServerMinute;
use super::stats::{mean_cv, Dist};
use super::world::{SchedPoolMinute, SchedServerMinute, World};

/// One strategy's result: the summary and the per-minute series.
pub struct Outcome {
    pub kind: StrategyKind,
    pub summary: StrategySummary,
    pub series: Series,
}

/// Per-minute data for the CSV and the chart.
pub struct Series {
    pub t0: i64,
    pub servers: Vec<ServerSeries>,
    pub pool_names: Vec<String>,
    /// The scheduler's view (pvc only; empty otherwise).
    pub sched_servers: Vec<Vec<SchedServerMinute>>,
    pub sched_pools: Vec<Vec<SchedPoolMinute>>,
}

pub struct ServerSeries {
    pub name: String,
    pub pool: usize,
    pub jrubies: u32,
    pub minutes: Vec<ServerMinute>,
}

impl ServerSeries {
    pub fn utilization(&self, minute: usize) -> f64 {
        self.minutes[minute].busy_ms as f64 / (self.jrubies as f64 * 60_000.0)
    }

    /// Up for the whole minute.
    pub fn up_all_minute(&self, minute: usize) -> bool {
        self.minutes[minute].up_ms >= 60_000
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategySummary {
    pub strategy: StrategyKind,
    pub wall_secs: f64,
    pub warmup_s: f64,
    pub target_utilization: f64,
    /// JRuby utilisation per server and minute (servers up the whole
    /// minute, after the warm-up): mean and peak.
    pub utilization_mean: f64,
    pub utilization_peak: f64,
    pub utilization_peak_at: String,
    /// Server-minutes above target + 5 points.
    pub minutes_above_target: u64,
    /// Borrow queue wait (compile and report borrows).
    pub queue_wait: Option<Dist>,
    /// Run starts per minute, fleet-wide: mean and coefficient of
    /// variation, outside the outage, and over every minute.
    pub starts_per_min_mean: f64,
    pub starts_per_min_cv: f64,
    pub starts_per_min_cv_all: f64,
    pub starts_per_sec_max: u32,
    pub starts_per_sec_cv: f64,
    /// Time between consecutive full runs of a host.
    pub full_run_gap: Option<Dist>,
    pub max_interval_s: f64,
    pub hosts_beyond_max_interval: u64,
    pub max_gap_s: f64,
    pub file_changes: FileChanges,
    pub converge: Option<ConvergeSummary>,
    pub outage: Option<OutageSummary>,
    pub runs: RunCounts,
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileChanges {
    pub between_runs: u64,
    /// Ignored by the agent (a run was in progress).
    pub during_runs: u64,
    /// From a change between runs to the next run's start.
    pub delay: Option<Dist>,
    pub unserved_at_end: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvergeSummary {
    pub hosts: u32,
    pub deadline_s: f64,
    /// The strategy has a converge request at all.
    pub supported: bool,
    /// Until every host of the set finished a full run started after the
    /// request.
    pub finished_s: Option<f64>,
    pub within_deadline: bool,
    pub hosts_left: u32,
    /// Peak utilisation (server-minutes) from the request to its end.
    pub utilization_peak: f64,
    /// The scheduler's own account (`converge_status`).
    pub scheduler_done_s: Option<f64>,
    pub scheduler_estimated_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutageSummary {
    pub server: String,
    pub start_s: f64,
    pub duration_s: f64,
    /// From the outage to the first failed status read (pvc only).
    pub detected_after_s: Option<f64>,
    pub grants_while_down: u64,
    pub grants_after_detection: u64,
    /// The last of them, from the outage's start.
    pub last_grant_after_s: Option<f64>,
    pub runs_failed_in_flight: u64,
    /// The pool's other servers during the outage (whole minutes).
    pub others_utilization_mean: f64,
    pub others_utilization_peak: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunCounts {
    pub started: u64,
    pub full: u64,
    pub cached_catalog: u64,
    pub forced: u64,
    pub converge: u64,
    pub failed_server_down: u64,
    pub failed_in_flight: u64,
    pub reports_lost: u64,
    pub no_server: u64,
    pub skipped_busy: u64,
}

pub fn outcome(kind: StrategyKind, world: &World, wall_secs: f64) -> Outcome {
    let series = Series {
        t0: world.t0,
        servers: world
            .servers
            .iter()
            .map(|s| ServerSeries {
                name: s.name.to_string(),
                pool: s.pool,
                jrubies: s.jrubies,
                minutes: s.minutes.clone(),
            })
            .collect(),
        pool_names: world.scenario.pool_names.clone(),
        sched_servers: world.m.sched_servers.clone(),
        sched_pools: world.m.sched_pools.clone(),
    };
    let summary = summarize(kind, world, &series, wall_secs);
    Outcome {
        kind,
        summary,
        series,
    }
}

fn minute_of(world: &World, at: i64) -> usize {
    ((at - world.t0).max(0) / 60_000) as usize
}

fn summarize(
    kind: StrategyKind,
    world: &World,
    series: &Series,
    wall_secs: f64,
) -> StrategySummary {
    let config = &world.config;
    let m = &world.m;
    let n_minutes = config.minutes();
    // Whole minutes after the warm-up.
    let first = (minute_of(world, world.warmup_end)
        + usize::from((world.warmup_end - world.t0) % 60_000 != 0))
    .min(n_minutes);
    let last = ((world.end - world.t0) / 60_000) as usize; // exclusive: whole minutes only
    let outage_minutes = config.outage.map(|o| {
        let start = (o.start_s / 60.0).floor() as usize;
        let end = ((o.start_s + o.duration_s) / 60.0).ceil() as usize;
        (start, end)
    });
    let in_outage = |minute: usize| outage_minutes.is_some_and(|(s, e)| minute >= s && minute < e);

    // Utilisation.
    let limit = config.target_utilization + 0.05;
    let (mut sum, mut count, mut peak, mut peak_at, mut above) =
        (0.0, 0u64, 0.0f64, String::new(), 0u64);
    for s in &series.servers {
        for minute in first..last {
            if !s.up_all_minute(minute) {
                continue;
            }
            let u = s.utilization(minute);
            sum += u;
            count += 1;
            if u > limit {
                above += 1;
            }
            if u > peak {
                peak = u;
                peak_at = format!("{} {}", s.name, clock(minute as f64 * 60.0));
            }
        }
    }

    // Run starts.
    let per_minute: Vec<f64> = (first..last)
        .map(|minute| {
            series
                .servers
                .iter()
                .map(|s| s.minutes[minute].runs_started as f64)
                .sum()
        })
        .collect();
    let outside: Vec<f64> = (first..last)
        .zip(&per_minute)
        .filter(|(minute, _)| !in_outage(*minute))
        .map(|(_, &v)| v)
        .collect();
    let (starts_mean, cv) = mean_cv(&outside).unwrap_or((0.0, 0.0));
    let (_, cv_all) = mean_cv(&per_minute).unwrap_or((0.0, 0.0));
    let first_sec = first * 60;
    let last_sec = (last * 60).min(m.starts_per_sec.len());
    let per_sec: Vec<f64> = m.starts_per_sec[first_sec.min(last_sec)..last_sec]
        .iter()
        .map(|&v| v as f64)
        .collect();
    let (_, sec_cv) = mean_cv(&per_sec).unwrap_or((0.0, 0.0));
    let sec_max = m.starts_per_sec[first_sec.min(last_sec)..last_sec]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);

    let converge = config.converge.map(|c| {
        let started = m.converge_started.unwrap_or(world.t0);
        let finished_s = m.converge_done_at.map(|t| (t - started) as f64 / 1000.0);
        let window_end = m
            .converge_done_at
            .unwrap_or(started + (c.within_s * 1000.0) as i64)
            .max(started + (c.within_s * 1000.0) as i64);
        let (from, to) = (
            minute_of(world, started),
            (minute_of(world, window_end) + 1).min(last),
        );
        let util_peak = series
            .servers
            .iter()
            .flat_map(|s| {
                (from..to)
                    .filter(|&mi| s.up_all_minute(mi))
                    .map(move |mi| s.utilization(mi))
            })
            .fold(0.0, f64::max);
        ConvergeSummary {
            hosts: m.converge_size,
            deadline_s: c.within_s,
            supported: m.converge_supported,
            finished_s,
            within_deadline: m.converge_supported && finished_s.is_some_and(|f| f <= c.within_s),
            hosts_left: m.converge_left,
            utilization_peak: util_peak,
            scheduler_done_s: m
                .sched_converge_done_at
                .map(|t| (t - started) as f64 / 1000.0),
            scheduler_estimated_s: m
                .sched_converge_estimated_finish
                .map(|t| (t - started) as f64 / 1000.0),
        }
    });

    let outage = config.outage.map(|o| {
        let down = &series.servers[o.server];
        let (from, to) = outage_minutes.expect("outage");
        let others: Vec<f64> = series
            .servers
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != o.server && s.pool == down.pool)
            .flat_map(|(_, s)| {
                (from..to.min(last))
                    .filter(|&mi| s.up_all_minute(mi))
                    .map(move |mi| s.utilization(mi))
            })
            .collect();
        let start = world.t0 + (o.start_s * 1000.0).round() as i64;
        OutageSummary {
            server: down.name.clone(),
            start_s: o.start_s,
            duration_s: o.duration_s,
            detected_after_s: m.outage_detected_at.map(|t| (t - start) as f64 / 1000.0),
            grants_while_down: m.grants_to_down,
            grants_after_detection: m.grants_to_down_after_detection,
            last_grant_after_s: m.last_grant_to_down_at.map(|t| (t - start) as f64 / 1000.0),
            runs_failed_in_flight: m.failed_in_flight,
            others_utilization_mean: if others.is_empty() {
                0.0
            } else {
                others.iter().sum::<f64>() / others.len() as f64
            },
            others_utilization_peak: others.iter().copied().fold(0.0, f64::max),
        }
    });

    StrategySummary {
        strategy: kind,
        wall_secs,
        warmup_s: config.warmup_s,
        target_utilization: config.target_utilization,
        utilization_mean: if count > 0 { sum / count as f64 } else { 0.0 },
        utilization_peak: peak,
        utilization_peak_at: peak_at,
        minutes_above_target: above,
        queue_wait: m.waits.clone().dist(),
        starts_per_min_mean: starts_mean,
        starts_per_min_cv: cv,
        starts_per_min_cv_all: cv_all,
        starts_per_sec_max: sec_max,
        starts_per_sec_cv: sec_cv,
        full_run_gap: m.gaps.clone().dist(),
        max_interval_s: config.max_interval_s,
        hosts_beyond_max_interval: m.hosts_beyond_max_interval,
        max_gap_s: m.max_gap_ms as f64 / 1000.0,
        file_changes: FileChanges {
            between_runs: m.changes_between_runs,
            during_runs: m.changes_during_runs,
            delay: m.change_delays.clone().dist(),
            unserved_at_end: m.changes_unserved,
        },
        converge,
        outage,
        runs: RunCounts {
            started: m.runs,
            full: m.full_runs,
            cached_catalog: m.cached_runs,
            forced: m.forced_runs,
            converge: m.converge_runs,
            failed_server_down: m.failed_server_down,
            failed_in_flight: m.failed_in_flight,
            reports_lost: m.reports_lost,
            no_server: m.no_server,
            skipped_busy: m.skipped_busy,
        },
        counters: m
            .counters
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    }
}

/// `HH:MM` of a time in seconds from the start (past 24 h: `d+1 HH:MM`).
pub fn clock(secs: f64) -> String {
    let total = secs.max(0.0).round() as u64 / 60;
    let (days, hours, minutes) = (total / 1440, total / 60 % 24, total % 60);
    if days > 0 {
        format!("d+{days} {hours:02}:{minutes:02}")
    } else {
        format!("{hours:02}:{minutes:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_times_of_day() {
        assert_eq!(clock(0.0), "00:00");
        assert_eq!(clock(12.0 * 3600.0 + 59.0 * 60.0), "12:59");
        assert_eq!(clock(25.0 * 3600.0), "d+1 01:00");
    }
}

/// One acceptance criterion of the issue, checked on a summary.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub criterion: String,
    pub observed: String,
    pub ok: bool,
}

/// "Queue wait near zero": mean at most this, seconds …
pub const NEAR_ZERO_WAIT_MEAN_S: f64 = 0.1;
/// … and p99 at most this.
pub const NEAR_ZERO_WAIT_P99_S: f64 = 1.0;
/// Run starts per minute: coefficient of variation at most this.
pub const MAX_CV: f64 = 0.05;
/// Utilisation may exceed its target by this much.
pub const TARGET_SLACK: f64 = 0.05;

/// The simulation criteria, as this summary meets them or not.
pub fn acceptance(s: &StrategySummary, poll_s: f64) -> Vec<Check> {
    let target = s.target_utilization;
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut checks = vec![
        Check {
            criterion: format!("JRuby utilisation never above target + 5% ({}) after warm-up", pct(target + TARGET_SLACK)),
            observed: format!("peak {} ({}), {} server-minutes above", pct(s.utilization_peak), s.utilization_peak_at, s.minutes_above_target),
            ok: s.utilization_peak <= target + TARGET_SLACK,
        },
        match s.queue_wait {
            Some(w) => Check {
                criterion: format!("queue wait near zero (mean ≤ {NEAR_ZERO_WAIT_MEAN_S} s, p99 ≤ {NEAR_ZERO_WAIT_P99_S} s)"),
                observed: format!("mean {:.3} s, p99 {:.3} s, max {:.1} s", w.mean, w.p99, w.max),
                ok: w.mean <= NEAR_ZERO_WAIT_MEAN_S && w.p99 <= NEAR_ZERO_WAIT_P99_S,
            },
            None => Check {
                criterion: "queue wait near zero".into(),
                observed: "no borrow after the warm-up".into(),
                ok: false,
            },
        },
        Check {
            criterion: "run starts per minute: coefficient of variation ≤ 5% (outage hour excluded)".into(),
            observed: format!("{} (every minute: {})", pct(s.starts_per_min_cv), pct(s.starts_per_min_cv_all)),
            ok: s.starts_per_min_mean > 0.0 && s.starts_per_min_cv <= MAX_CV,
        },
        Check {
            criterion: format!("no host beyond max_interval ({})", duration(s.max_interval_s)),
            observed: format!("{} hosts; longest gap {}", s.hosts_beyond_max_interval, duration(s.max_gap_s)),
            ok: s.hosts_beyond_max_interval == 0,
        },
        match s.file_changes.delay {
            Some(d) => Check {
                criterion: format!("forced runs wait ≤ one poll ({})", duration(poll_s)),
                observed: format!("p50 {}, p99 {}, max {} over {} changes", duration(d.p50), duration(d.p99), duration(d.max), d.count),
                ok: d.max <= poll_s,
            },
            None => Check {
                criterion: "forced runs wait ≤ one poll".into(),
                observed: "no file change between runs after the warm-up".into(),
                ok: s.file_changes.between_runs == 0,
            },
        },
    ];
    if let Some(o) = &s.outage {
        checks.push(Check {
            criterion: format!("{} down for {}: no grant to it once its status read fails", o.server, duration(o.duration_s)),
            observed: match o.detected_after_s {
                Some(after) => format!(
                    "{} grants after the first failed read ({after:.1} s into the outage), {} before it; the last {}",
                    o.grants_after_detection,
                    o.grants_while_down - o.grants_after_detection,
                    o.last_grant_after_s.map_or("–".into(), |t| format!("{t:.1} s into the outage"))
                ),
                // No status reads: a load balancer's health check.
                None => format!("{} runs sent to it (load balancer)", o.grants_while_down),
            },
            ok: match o.detected_after_s {
                Some(_) => o.grants_after_detection == 0,
                None => o.grants_while_down == 0,
            },
        });
        checks.push(Check {
            criterion:
                "meanwhile its pool's others at target (mean within ±5 points, peak ≤ target + 5%)"
                    .into(),
            observed: format!(
                "mean {}, peak {}",
                pct(o.others_utilization_mean),
                pct(o.others_utilization_peak)
            ),
            ok: (o.others_utilization_mean - target).abs() <= TARGET_SLACK
                && o.others_utilization_peak <= target + TARGET_SLACK,
        });
    }
    if let Some(c) = &s.converge {
        checks.push(Check {
            criterion: format!(
                "a converge request over {} hosts finishes within {}",
                c.hosts,
                duration(c.deadline_s)
            ),
            observed: match c.finished_s {
                Some(f) => format!("finished after {}", duration(f)),
                None => format!("{} hosts not done at the end", c.hosts_left),
            },
            ok: c.within_deadline,
        });
        checks.push(Check {
            criterion: "… without exceeding the target + 5%".into(),
            observed: format!("peak {}", pct(c.utilization_peak)),
            ok: c.utilization_peak <= target + TARGET_SLACK,
        });
    }
    checks
}

/// `42 s`, `12.5 min`, `1.5 h`.
pub fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 2.0 * 3600.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}
