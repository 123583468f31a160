//! `POST /report/<certname>`: pvc-agent's JSON, or (first byte of the input
//! even, and the body not starting with `{`) the original agent's base64
//! log. An accepted report holds only valid values, and its canonical body
//! (what is stored, spooled and deduplicated by) reads back as the same
//! report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvc_bridge::runs::{parse_report, ReportInput};
use pvc_bridge::schedule::Ts;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let Ok(report) = parse_report(body, mode & 1 == 1) else {
        return;
    };
    if let Some(code) = report.exit_code {
        assert!((0..=255).contains(&code));
    }
    if let Some(trigger) = &report.trigger {
        assert!(["schedule", "file_change", "converge", "fallback"].contains(&trigger.as_str()));
    }
    if let Some(mode) = &report.mode {
        assert!(["full", "cached_catalog"].contains(&mode.as_str()));
    }
    if let Some(duration) = report.duration_secs {
        assert!(duration.is_finite() && duration >= 0.0);
    }
    for file in &report.changed_files {
        assert!(file.starts_with('/') && file.len() <= 4096);
    }
    if let Some(log) = &report.log_tail {
        assert!(log.len() <= 64 * 1024);
    }
    // The canonical body reads back as the same report (floats within a
    // few units in the last place: `pvc_fuzz::same_json`).
    let canonical = report.canonical_body(Ts(1_795_738_741_000));
    let reread = ReportInput::from_canonical_body(&canonical).expect("a canonical body reads back");
    assert_eq!(
        ReportInput {
            duration_secs: report.duration_secs,
            resources: report.resources.clone(),
            ..reread.clone()
        },
        report,
        "{canonical}"
    );
    let number = |d: Option<f64>| serde_json::json!(d);
    pvc_fuzz::assert_same_json(&number(reread.duration_secs), &number(report.duration_secs));
    pvc_fuzz::assert_same_json(
        &serde_json::json!(reread.resources),
        &serde_json::json!(report.resources),
    );
});
