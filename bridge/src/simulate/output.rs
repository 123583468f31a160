//! The files a simulation writes: `minutes.csv` (one row per strategy ×
//! server × minute), `summary.md` (the tables) and `summary.json`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::config::Config;
use super::stats::Dist;
use super::summary::{acceptance, clock, duration, Check, Outcome, StrategySummary};

pub const CSV_HEADER: &str = "strategy,minute,time,server,pool,up_s,runs_started,full_started,cached_started,failed,busy_jruby_s,utilization,borrows,queue_wait_mean_ms,queue_wait_max_ms,queued_max,sched_rate,sched_utilization,sched_run_cost,sched_tokens,pool_rate,pool_cycle_s,pool_shortage";

pub fn write_csv(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "{CSV_HEADER}")?;
    for o in outcomes {
        let series = &o.series;
        for (si, s) in series.servers.iter().enumerate() {
            for (minute, m) in s.minutes.iter().enumerate() {
                let wait_mean = if m.borrows > 0 {
                    m.wait_sum_ms as f64 / m.borrows as f64
                } else {
                    0.0
                };
                write!(
                    out,
                    "{},{},{},{},{},{:.3},{},{},{},{},{:.3},{:.4},{},{:.1},{},{}",
                    o.kind.as_str(),
                    minute,
                    clock(minute as f64 * 60.0),
                    s.name,
                    series.pool_names[s.pool],
                    m.up_ms as f64 / 1000.0,
                    m.runs_started,
                    m.full_started,
                    m.cached_started,
                    m.failed,
                    m.busy_ms as f64 / 1000.0,
                    s.utilization(minute),
                    m.borrows,
                    wait_mean,
                    m.wait_max_ms,
                    m.queued_max,
                )?;
                match (
                    series.sched_servers.get(si).and_then(|v| v.get(minute)),
                    series.sched_pools.get(s.pool).and_then(|v| v.get(minute)),
                ) {
                    (Some(ss), Some(ps)) => writeln!(
                        out,
                        ",{:.3},{:.4},{:.3},{:.2},{:.3},{:.1},{}",
                        ss.rate,
                        ss.utilization,
                        ss.run_cost,
                        ss.tokens,
                        ps.rate,
                        ps.cycle_secs,
                        ps.shortage
                    )?,
                    _ => writeln!(out, ",,,,,,,")?,
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    config: &'a Config,
    strategies: Vec<JsonStrategy<'a>>,
}

#[derive(Serialize)]
struct JsonStrategy<'a> {
    #[serde(flatten)]
    summary: &'a StrategySummary,
    acceptance: Vec<Check>,
}

pub fn summary_json(config: &Config, outcomes: &[Outcome]) -> anyhow::Result<String> {
    let doc = JsonSummary {
        config,
        strategies: outcomes
            .iter()
            .map(|o| JsonStrategy {
                summary: &o.summary,
                acceptance: acceptance(&o.summary, config.poll_s),
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&doc)?)
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn dist3(d: Option<Dist>) -> String {
    match d {
        Some(d) => format!(
            "{} / {} / {}",
            duration(d.p50),
            duration(d.p99),
            duration(d.max)
        ),
        None => "–".into(),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary tables in Markdown.
pub fn summary_markdown(config: &Config, outcomes: &[Outcome]) -> String {
    let mut md = String::new();
    let servers = config.servers();
    let _ = writeln!(
        md,
        "Fleet: {} hosts, {} pool(s) × {} servers × {} JRubies ({} JRubies), period {}, polls every {}, {} h simulated, seed {}.",
        thousands(config.hosts as u64),
        config.pools,
        config.servers_per_pool,
        config.jrubies,
        servers as u32 * config.jrubies,
        duration(config.period_s),
        duration(config.poll_s),
        config.hours,
        config.seed
    );
    let _ = writeln!(
        md,
        "Runs: compile {:.2} s mean (σ {}), report {:.2} s (σ {}), apply {:.1} s (σ {}); offered load at the period {}.",
        config.compile.mean_s,
        config.compile.sigma,
        config.report.mean_s,
        config.report.sigma,
        config.apply.mean_s,
        config.apply.sigma,
        pct(config.hosts as f64 / config.period_s * config.run_cost_s() / (servers as f64 * config.jrubies as f64))
    );
    let mut events = Vec::new();
    if let Some(o) = config.outage {
        events.push(format!(
            "server {} down {}–{}",
            outcomes
                .first()
                .map_or(String::new(), |x| x.series.servers[o.server].name.clone()),
            clock(o.start_s),
            clock(o.start_s + o.duration_s)
        ));
    }
    if let Some(c) = config.converge {
        events.push(format!(
            "converge request over {} hosts at {} within {}",
            thousands(c.hosts as u64),
            clock(c.start_s),
            duration(c.within_s)
        ));
    }
    if let Some(r) = config.restart {
        events.push(format!(
            "{} of the agents restarted from {} over {} (daemon and pvc)",
            pct(r.fraction),
            clock(r.start_s),
            duration(r.over_s)
        ));
    }
    if config.file_changes_per_hour > 0.0 {
        events.push(format!(
            "{} file changes per hour fleet-wide",
            config.file_changes_per_hour
        ));
    }
    if !events.is_empty() {
        let _ = writeln!(md, "Events: {}.", events.join("; "));
    }
    let _ = writeln!(
        md,
        "Figures after a {} warm-up (outage and converge figures over their own windows).\n",
        duration(config.warmup_s)
    );

    // The table: one column per strategy.
    let header: Vec<&str> = outcomes.iter().map(|o| o.kind.as_str()).collect();
    let _ = writeln!(md, "| figure | {} |", header.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(outcomes.len()));
    let row = |md: &mut String, name: &str, f: &dyn Fn(&StrategySummary) -> String| {
        let cells: Vec<String> = outcomes.iter().map(|o| f(&o.summary)).collect();
        let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
    };
    row(
        &mut md,
        "JRuby utilisation per server-minute: mean / peak",
        &|s| format!("{} / {}", pct(s.utilization_mean), pct(s.utilization_peak)),
    );
    row(&mut md, "server-minutes above target + 5%", &|s| {
        s.minutes_above_target.to_string()
    });
    row(
        &mut md,
        "borrow queue wait: mean / p99 / max",
        &|s| match s.queue_wait {
            Some(w) => format!("{:.3} s / {:.2} s / {:.1} s", w.mean, w.p99, w.max),
            None => "–".into(),
        },
    );
    row(&mut md, "run starts per minute: mean", &|s| {
        format!("{:.0}", s.starts_per_min_mean)
    });
    row(
        &mut md,
        "run starts per minute: CV (outage hour excluded / all)",
        &|s| {
            format!(
                "{} / {}",
                pct(s.starts_per_min_cv),
                pct(s.starts_per_min_cv_all)
            )
        },
    );
    row(&mut md, "run starts per second: max / CV", &|s| {
        format!("{} / {}", s.starts_per_sec_max, pct(s.starts_per_sec_cv))
    });
    row(&mut md, "time between full runs: p50 / p99 / max", &|s| {
        dist3(s.full_run_gap)
    });
    row(
        &mut md,
        &format!(
            "hosts beyond max_interval ({})",
            duration(config.max_interval_s)
        ),
        &|s| thousands(s.hosts_beyond_max_interval),
    );
    row(
        &mut md,
        "file change → run start: p50 / p99 / max",
        &|s| dist3(s.file_changes.delay),
    );
    row(
        &mut md,
        "file changes, whole day: between runs / during a run (ignored)",
        &|s| {
            format!(
                "{} / {}",
                s.file_changes.between_runs, s.file_changes.during_runs
            )
        },
    );
    if config.converge.is_some() {
        row(
            &mut md,
            "converge: all hosts of the set done after",
            &|s| match &s.converge {
                Some(c) if c.supported => match c.finished_s {
                    Some(f) => format!(
                        "{}{}",
                        duration(f),
                        if c.within_deadline { " ✓" } else { " ✗" }
                    ),
                    None => format!("{} hosts left ✗", c.hosts_left),
                },
                Some(c) => match c.finished_s {
                    Some(f) => format!("n/a (own runs covered the set after {})", duration(f)),
                    None => "n/a".into(),
                },
                None => "–".into(),
            },
        );
        row(&mut md, "converge: peak utilisation meanwhile", &|s| {
            s.converge
                .as_ref()
                .map_or("–".into(), |c| pct(c.utilization_peak))
        });
    }
    if config.outage.is_some() {
        row(
            &mut md,
            "outage: grants to the down server (after its first failed status read)",
            &|s| {
                s.outage.as_ref().map_or("–".into(), |o| {
                    format!("{} ({})", o.grants_while_down, o.grants_after_detection)
                })
            },
        );
        row(&mut md, "outage: runs failed in flight", &|s| {
            s.outage
                .as_ref()
                .map_or("–".into(), |o| o.runs_failed_in_flight.to_string())
        });
        row(
            &mut md,
            "outage: the pool's other servers, mean / peak",
            &|s| {
                s.outage.as_ref().map_or("–".into(), |o| {
                    format!(
                        "{} / {}",
                        pct(o.others_utilization_mean),
                        pct(o.others_utilization_peak)
                    )
                })
            },
        );
    }
    row(&mut md, "runs started (full / cached catalog)", &|s| {
        format!(
            "{} ({} / {})",
            thousands(s.runs.started),
            thousands(s.runs.full),
            thousands(s.runs.cached_catalog)
        )
    });
    row(
        &mut md,
        "runs failed (server down / in flight) / reports lost",
        &|s| {
            format!(
                "{} / {} / {}",
                s.runs.failed_server_down, s.runs.failed_in_flight, s.runs.reports_lost
            )
        },
    );
    row(
        &mut md,
        "cron entries skipped (previous run still going)",
        &|s| s.runs.skipped_busy.to_string(),
    );
    row(&mut md, "wall time", &|s| format!("{:.0} s", s.wall_secs));

    // The criteria, per strategy.
    let checks: Vec<Vec<Check>> = outcomes
        .iter()
        .map(|o| acceptance(&o.summary, config.poll_s))
        .collect();
    if let Some(first) = checks.first() {
        let _ = writeln!(md, "\nThe issue's simulation criteria:\n");
        let _ = writeln!(md, "| criterion | {} |", header.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(outcomes.len()));
        for (i, check) in first.iter().enumerate() {
            let cells: Vec<String> = checks
                .iter()
                .map(|c| {
                    let c = &c[i];
                    format!("{} {}", if c.ok { "✓" } else { "✗" }, c.observed)
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", check.criterion, cells.join(" | "));
        }
    }

    // The scheduler's own counters (pvc).
    for o in outcomes.iter().filter(|o| !o.summary.counters.is_empty()) {
        let _ = writeln!(md, "\n{} counters: {}.", o.kind.as_str(), {
            let parts: Vec<String> = o
                .summary
                .counters
                .iter()
                .map(|(k, v)| format!("{k} {}", thousands(*v)))
                .collect();
            parts.join(", ")
        });
        if let Some(c) = &o.summary.converge {
            if c.scheduler_done_s.is_some() || c.scheduler_estimated_s.is_some() {
                let _ = writeln!(
                    md,
                    "{} converge_status: done after {}, estimated finish {}.",
                    o.kind.as_str(),
                    c.scheduler_done_s.map_or("–".into(), duration),
                    c.scheduler_estimated_s.map_or("–".into(), duration)
                );
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(4_800_123), "4,800,123");
    }
}
