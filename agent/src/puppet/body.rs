//! The `/report` JSON body, as the bridge parses it
//! (`pvc_bridge::runs::parse_report`, unknown fields refused).

use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::{RunOutcome, RunRequest};

/// The bridge refuses longer paths (and relative ones).
const PATH_MAX: usize = 4096;

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<&'a str>,
    mode: &'static str,
    /// As `puppet agent --detailed-exitcodes` exited; absent when killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// Seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<f64>,
    duration_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_catalog_status: Option<&'a str>,
    changed_files: Vec<String>,
    log_tail: &'a str,
}

/// The `/report` body for `outcome` of `request`.
pub fn report_body(request: &RunRequest, outcome: &RunOutcome) -> Vec<u8> {
    let changed_files = request
        .changed_files
        .iter()
        .filter_map(|path| {
            let text = path.to_string_lossy();
            if path.is_absolute() && text.len() <= PATH_MAX {
                Some(text.into_owned())
            } else {
                tracing::warn!("not reported as changed: {path:?} is not an absolute path");
                None
            }
        })
        .collect();
    let body = Body {
        run_id: request.run_id.as_deref(),
        trigger: Some(request.trigger.as_str()).filter(|t| !t.is_empty()),
        mode: request.mode.as_str(),
        exit_code: outcome.exit_code.filter(|c| (0..=255).contains(c)),
        started: outcome
            .started
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64())
            .filter(|s| *s > 0.0),
        duration_secs: outcome.duration.as_secs_f64(),
        summary: outcome.summary.as_ref(),
        resources: outcome.summary.as_ref().and_then(|s| s.get("resources")),
        cached_catalog_status: outcome.cached_catalog_status.as_deref(),
        changed_files,
        log_tail: &outcome.log_tail,
    };
    serde_json::to_vec(&body).expect("a report body serialises")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use pvc_bridge::runs::parse_report;

    use super::*;
    use crate::decision::RunMode;
    use crate::puppet::Skipped;

    fn request() -> RunRequest {
        RunRequest {
            run_id: Some("0b9f7c1e-8a4e-4a57-9d7b-2a3f7e0c9d11".into()),
            mode: RunMode::CachedCatalog,
            trigger: "file_change".into(),
            server: Some("ps1.example.com".into()),
            facter_env: vec![("FACTER_role".into(), "web".into())],
            changed_files: vec![
                PathBuf::from("/etc/sudoers"),
                PathBuf::from("relative/file"),
                PathBuf::from("/etc/motd"),
            ],
        }
    }

    #[test]
    fn a_finished_run_as_the_bridge_reads_it() {
        let summary = serde_json::json!({
            "version": {"config": 1795759920, "puppet": "7.23.0"},
            "resources": {"changed": 2, "failed": 0, "total": 9},
            "time": {"total": 2.611838331, "last_run": 1795759921}
        });
        let outcome = RunOutcome {
            exit_code: Some(2),
            started: UNIX_EPOCH + Duration::from_millis(1_795_759_918_250),
            duration: Duration::from_millis(3_125),
            timed_out: false,
            skipped: None,
            summary: Some(summary.clone()),
            cached_catalog_status: Some("explicitly_requested".into()),
            log_tail: "Notice: Applied catalog in 0.05 seconds\n".into(),
        };
        let body = report_body(&request(), &outcome);
        let report = parse_report(&body, true).unwrap();
        assert_eq!(
            report.run_id.as_deref(),
            Some("0b9f7c1e-8a4e-4a57-9d7b-2a3f7e0c9d11")
        );
        assert_eq!(report.trigger.as_deref(), Some("file_change"));
        assert_eq!(report.mode.as_deref(), Some("cached_catalog"));
        assert_eq!(report.exit_code, Some(2));
        // Our own start and duration, not the summary's.
        assert_eq!(report.started.map(|t| t.0), Some(1_795_759_918_250));
        assert_eq!(report.duration_secs, Some(3.125));
        assert_eq!(report.resources, Some(summary["resources"].clone()));
        assert_eq!(
            report.cached_catalog_status.as_deref(),
            Some("explicitly_requested")
        );
        assert_eq!(report.changed_files, ["/etc/sudoers", "/etc/motd"]);
        assert_eq!(
            report.log_tail.as_deref(),
            Some("Notice: Applied catalog in 0.05 seconds\n")
        );
    }

    #[test]
    fn skipped_and_killed_runs_are_accepted_too() {
        let skipped = RunOutcome {
            exit_code: Some(1),
            started: SystemTime::now(),
            duration: Duration::ZERO,
            timed_out: false,
            skipped: Some(Skipped::Disabled { message: Some("window".into()) }),
            summary: None,
            cached_catalog_status: None,
            log_tail: "Notice: Skipping run of Puppet configuration client; administratively disabled (Reason: 'window'); Use 'puppet agent --enable' to re-enable.".into(),
        };
        let request = RunRequest {
            run_id: None,
            trigger: String::new(),
            mode: RunMode::Full,
            changed_files: Vec::new(),
            ..request()
        };
        let report = parse_report(&report_body(&request, &skipped), true).unwrap();
        assert_eq!(report.exit_code, Some(1));
        assert_eq!(report.run_id, None);
        assert_eq!(report.trigger, None);
        assert_eq!(report.mode.as_deref(), Some("full"));
        assert_eq!(report.resources, None);
        assert!(report
            .log_tail
            .unwrap()
            .contains("administratively disabled"));

        let killed = RunOutcome {
            exit_code: None,
            timed_out: true,
            skipped: None,
            log_tail: "é".repeat(40_000),
            ..skipped
        };
        let report = parse_report(&report_body(&request, &killed), true).unwrap();
        assert_eq!(report.exit_code, None);
        assert!(report.started.is_some());
    }
}
