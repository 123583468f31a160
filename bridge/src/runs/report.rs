//! `/report` bodies: the JSON pvc-agent sends, or the original agent's
//! base64 of `puppet agent -t` output (`curl -d @file`, so newlines are
//! already stripped).

use base64::Engine;
use serde::Deserialize;

use crate::schedule::Ts;
use crate::store::pvc::NewReport;

/// The most of the log kept with a report.
const LOG_TAIL_MAX: usize = 64 * 1024;

/// A report as received, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportInput {
    pub run_id: Option<String>,
    pub trigger: Option<String>,
    pub mode: Option<String>,
    pub exit_code: Option<i32>,
    pub started: Option<Ts>,
    pub duration_secs: Option<f64>,
    pub resources: Option<serde_json::Value>,
    pub cached_catalog_status: Option<String>,
    pub changed_files: Vec<String>,
    pub log_tail: Option<String>,
}

impl ReportInput {
    pub fn as_new_report<'a>(&'a self, certname: &'a str) -> NewReport<'a> {
        NewReport {
            certname,
            run_id: self.run_id.as_deref(),
            trigger: self.trigger.as_deref(),
            mode: self.mode.as_deref(),
            exit_code: self.exit_code,
            started: self.started,
            duration_secs: self.duration_secs,
            resources: self.resources.as_ref(),
            cached_catalog_status: self.cached_catalog_status.as_deref(),
            changed_files: &self.changed_files,
            log_tail: self.log_tail.as_deref(),
            body: None,
            received: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportParseError {
    #[error("report is not valid JSON: {0}")]
    Json(String),
    #[error("report: {0}")]
    Invalid(String),
    #[error("report body is neither JSON nor base64 text")]
    Unrecognised,
}

/// The JSON pvc-agent sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    run_id: Option<String>,
    trigger: Option<String>,
    mode: Option<String>,
    /// As `puppet agent --detailed-exitcodes` exits.
    exit_code: Option<i32>,
    /// Seconds since the epoch.
    started: Option<f64>,
    duration_secs: Option<f64>,
    resources: Option<serde_json::Value>,
    /// `last_run_summary.yaml` as JSON: fills what is missing above.
    summary: Option<serde_json::Value>,
    cached_catalog_status: Option<String>,
    #[serde(default)]
    changed_files: Vec<String>,
    log_tail: Option<String>,
}

const TRIGGERS: [&str; 4] = ["schedule", "file_change", "converge", "fallback"];
const MODES: [&str; 2] = ["full", "cached_catalog"];

/// Parses a `/report` body.
pub fn parse_report(body: &[u8], json: bool) -> Result<ReportInput, ReportParseError> {
    let trimmed = body.trim_ascii();
    if json || trimmed.first() == Some(&b'{') {
        return parse_json(trimmed);
    }
    parse_base64(trimmed)
}

fn parse_json(body: &[u8]) -> Result<ReportInput, ReportParseError> {
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| ReportParseError::Json(e.to_string()))?;
    let invalid = |m: String| ReportParseError::Invalid(m);
    if let Some(t) = &wire.trigger {
        if !TRIGGERS.contains(&t.as_str()) {
            return Err(invalid(format!("trigger {t:?}: one of {TRIGGERS:?}")));
        }
    }
    if let Some(m) = &wire.mode {
        if !MODES.contains(&m.as_str()) {
            return Err(invalid(format!("mode {m:?}: one of {MODES:?}")));
        }
    }
    if let Some(code) = wire.exit_code {
        if !(0..=255).contains(&code) {
            return Err(invalid(format!("exit_code {code}: 0..=255")));
        }
    }
    let summary = wire.summary.as_ref();
    let started = wire
        .started
        .or_else(|| summary?.pointer("/time/last_run")?.as_f64());
    if let Some(s) = started {
        if !(s.is_finite() && s > 0.0) {
            return Err(invalid(format!("started {s}: seconds since the epoch")));
        }
    }
    let duration = wire
        .duration_secs
        .or_else(|| summary?.pointer("/time/total")?.as_f64());
    if let Some(d) = duration {
        if !(d.is_finite() && d >= 0.0) {
            return Err(invalid(format!("duration_secs {d}: not negative")));
        }
    }
    for file in &wire.changed_files {
        if !file.starts_with('/') || file.len() > 4096 {
            return Err(invalid(format!(
                "changed_files: {file:?} is not an absolute path"
            )));
        }
    }
    Ok(ReportInput {
        run_id: wire.run_id,
        trigger: wire.trigger,
        mode: wire.mode,
        exit_code: wire.exit_code,
        started: started.map(Ts::from_secs_f64),
        duration_secs: duration,
        resources: wire
            .resources
            .or_else(|| summary?.get("resources").cloned()),
        cached_catalog_status: wire.cached_catalog_status,
        changed_files: wire.changed_files,
        log_tail: wire.log_tail.map(|t| tail(&t)),
    })
}

fn parse_base64(body: &[u8]) -> Result<ReportInput, ReportParseError> {
    // `base64` wraps lines; `curl -d` strips the newlines, wget does not.
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| ReportParseError::Unrecognised)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(ReportInput {
        trigger: None,
        log_tail: Some(tail(&text)),
        ..ReportInput::default()
    })
}

/// The last `LOG_TAIL_MAX` bytes, cut at a character boundary.
fn tail(text: &str) -> String {
    if text.len() <= LOG_TAIL_MAX {
        return text.to_owned();
    }
    let mut start = text.len() - LOG_TAIL_MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_json_with_summary() {
        let body = br#"{"run_id":"0b9f7c1e-8a4e-4a57-9d7b-2a3f7e0c9d11","trigger":"file_change","mode":"full",
            "exit_code":2,"changed_files":["/etc/sudoers"],
            "summary":{"time":{"total":2.6,"last_run":1795738741},"resources":{"changed":1,"total":9}}}"#;
        let r = parse_report(body, true).unwrap();
        assert_eq!(r.exit_code, Some(2));
        assert_eq!(r.duration_secs, Some(2.6));
        assert_eq!(r.started, Some(Ts(1_795_738_741_000)));
        assert_eq!(r.resources.unwrap()["changed"], 1);
        assert_eq!(r.changed_files, vec!["/etc/sudoers".to_owned()]);
    }

    #[test]
    fn bad_json_is_refused_with_a_reason() {
        for (body, needle) in [
            (&br#"{"exit_code":300}"#[..], "exit_code"),
            (br#"{"mode":"sometimes"}"#, "mode"),
            (br#"{"changed_files":["etc/x"]}"#, "absolute"),
            (br#"{"exit_code":"two"}"#, "JSON"),
            (br#"{"surprise":1}"#, "unknown field"),
        ] {
            let err = parse_report(body, true).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn original_agent_base64_output() {
        let output =
            "Info: Applying configuration version '1'\nNotice: Applied catalog in 0.02 seconds\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(output);
        // As `base64` wraps it and wget posts it.
        let wrapped: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let r = parse_report(wrapped.as_bytes(), false).unwrap();
        assert_eq!(r.log_tail.as_deref(), Some(output));
        assert_eq!(r.run_id, None);
        assert_eq!(
            parse_report(b"not base64 at all!", false),
            Err(ReportParseError::Unrecognised)
        );
    }

    #[test]
    fn long_logs_keep_their_tail() {
        let log = "é".repeat(LOG_TAIL_MAX);
        let t = tail(&log);
        assert!(t.len() <= LOG_TAIL_MAX && t.chars().all(|c| c == 'é'));
    }
}
