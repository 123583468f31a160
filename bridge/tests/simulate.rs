//! `pvc-bridge simulate` end to end: the scheduler against the issue's
//! simulation criteria, and the files the command writes.
//!
//! The acceptance run keeps the issue's fleet and servers (100K hosts,
//! 4 × 24 JRubies, 30-min period, 60 s polls) and shortens the day instead:
//! the per-minute figures (utilisation, run starts) are averages over the
//! runs of one server-minute, so their noise grows as the fleet and the
//! pools shrink together; a smaller fleet would test the noise, not the
//! scheduler. 2.5 simulated hours cost ~30 s in a debug build.

use std::path::Path;

use pvc_bridge::simulate::config::{ConvergeSpec, Outage, RestartSpec};
use pvc_bridge::simulate::{acceptance, simulate_all, write_outputs, Config, StrategyKind};

/// The issue's fleet over 2.5 h: warm-up 45 min, 30% of the agents
/// restarted at 00:50, puppet2 down 01:00–01:30, a converge request over
/// 10,000 hosts at 01:45 due by 02:15, file changes all along (3,000/h so
/// that the short window still has hundreds of them).
fn acceptance_config() -> Config {
    Config {
        hours: 2.5,
        warmup_s: 45.0 * 60.0,
        restart: Some(RestartSpec {
            start_s: 50.0 * 60.0,
            fraction: 0.3,
            over_s: 300.0,
        }),
        outage: Some(Outage {
            server: 1,
            start_s: 3600.0,
            duration_s: 1800.0,
        }),
        converge: Some(ConvergeSpec {
            hosts: 10_000,
            start_s: 105.0 * 60.0,
            within_s: 1800.0,
        }),
        file_changes_per_hour: 3000.0,
        strategies: vec![StrategyKind::Pvc],
        ..Config::default()
    }
}

#[test]
fn the_scheduler_meets_the_issue_simulation_criteria() {
    let config = acceptance_config();
    let outcomes = simulate_all(&config, None).expect("simulation runs");
    let pvc = &outcomes[0];
    assert_eq!(pvc.kind, StrategyKind::Pvc);
    let summary = &pvc.summary;
    // The events happened: the figures below are about something.
    assert!(
        summary.file_changes.between_runs > 100,
        "{:?}",
        summary.file_changes
    );
    assert!(summary.runs.full > 400_000, "{:?}", summary.runs);
    let checks = acceptance(summary, config.poll_s);
    assert_eq!(checks.len(), 9, "every criterion is checked: {checks:#?}");
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("- {}: {}", c.criterion, c.observed))
        .collect();
    assert!(
        failed.is_empty(),
        "criteria not met:\n{}\n(runs: {:?}; counters: {:?})",
        failed.join("\n"),
        summary.runs,
        summary.counters
    );
}

/// A small fleet with every strategy: the files and their shapes.
#[test]
fn writes_the_csv_the_summaries_and_the_chart() {
    let config = Config {
        hosts: 3_000,
        servers_per_pool: 2,
        jrubies: 2,
        hours: 2.0,
        warmup_s: 1800.0,
        outage: Some(Outage {
            server: 1,
            start_s: 3600.0,
            duration_s: 600.0,
        }),
        converge: Some(ConvergeSpec {
            hosts: 300,
            start_s: 4500.0,
            within_s: 1200.0,
        }),
        restart: Some(RestartSpec {
            start_s: 2400.0,
            fraction: 0.3,
            over_s: 300.0,
        }),
        ..Config::default()
    };
    let outcomes = simulate_all(&config, None).expect("simulation runs");
    let kinds: Vec<_> = outcomes.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        vec![StrategyKind::Pvc, StrategyKind::Daemon, StrategyKind::Cron]
    );

    let dir = std::env::temp_dir().join(format!("pvc-simulate-{}", std::process::id()));
    let font = Path::new(pvc_bridge::simulate::chart::DEFAULT_FONT);
    let written = write_outputs(&dir, &config, &outcomes, Some(font)).expect("outputs written");
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["minutes.csv", "summary.md", "summary.json", "chart.png"]
    );

    let csv = std::fs::read_to_string(dir.join("minutes.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(pvc_bridge::simulate::output::CSV_HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // strategies × servers × minutes
    assert_eq!(rows.len(), 3 * 2 * 120);
    let columns = pvc_bridge::simulate::output::CSV_HEADER.split(',').count();
    assert!(rows.iter().all(|r| r.len() == columns));
    // The down server: no time up, no runs, during the outage (minutes 60–69).
    let down: Vec<_> = rows
        .iter()
        .filter(|r| {
            r[0] == "daemon"
                && r[3] == "puppet2.dc1"
                && (60..70).contains(&r[1].parse::<usize>().unwrap())
        })
        .collect();
    assert_eq!(down.len(), 10);
    assert!(
        down.iter().all(|r| r[5] == "0.000" && r[6] == "0"),
        "{down:?}"
    );
    // The scheduler's own view is only in pvc's rows.
    assert!(rows
        .iter()
        .filter(|r| r[0] == "pvc")
        .all(|r| !r[16].is_empty()));
    assert!(rows
        .iter()
        .filter(|r| r[0] != "pvc")
        .all(|r| r[16].is_empty()));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let strategies = json["strategies"].as_array().unwrap();
    assert_eq!(strategies.len(), 3);
    assert_eq!(strategies[1]["strategy"], "daemon");
    assert!(strategies[1]["converge"]["supported"] == false);
    assert!(strategies[0]["acceptance"].as_array().unwrap().len() == 9);
    assert_eq!(json["config"]["hosts"], 3_000);

    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("| figure | pvc | daemon | cron |"), "{md}");
    assert!(md.contains("The issue's simulation criteria"), "{md}");

    let png = std::fs::read(dir.join("chart.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Width and height from the IHDR chunk: three panels, a row per strategy.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (2400, 3 * 430));
    std::fs::remove_dir_all(&dir).unwrap();
}
