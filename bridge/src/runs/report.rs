//! `/report` bodies: the JSON pvc-agent sends, or the original agent's
//! base64 of `puppet agent -t` output (`curl -d @file`, so newlines are
//! already stripped); and a report's canonical body, what it is stored,
//! spooled and recognised by.

use base64::Engine;
use serde::{Deserialize, Serialize};

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

    /// The report as canonical JSON (fixed fields, object keys sorted at
    /// every level): stored with the report (its digest recognises the
    /// same report stored again: an agent's retry, a replay from the
    /// spool) and spooled in its place ([`ReportInput::from_canonical_body`]
    /// reads it back). A report with neither a run id nor a start time
    /// (the original agent's log) says nothing that tells two runs apart,
    /// so `received` (when the bridge accepted it) is part of its body:
    /// two identical logs are two reports.
    pub fn canonical_body(&self, received: Ts) -> String {
        let anonymous = self.run_id.is_none() && self.started.is_none();
        let canonical = Canonical {
            run_id: self.run_id.clone(),
            trigger: self.trigger.clone(),
            mode: self.mode.clone(),
            exit_code: self.exit_code,
            started_ms: self.started.map(|t| t.0),
            duration_secs: self.duration_secs,
            resources: self.resources.clone(),
            cached_catalog_status: self.cached_catalog_status.clone(),
            changed_files: self.changed_files.clone(),
            log_tail: self.log_tail.clone(),
            received_ms: anonymous.then_some(received.0),
        };
        let value = serde_json::to_value(&canonical).expect("a report serialises");
        crate::writes::canonical_json(&value)
    }

    /// The report a [`ReportInput::canonical_body`] describes.
    pub fn from_canonical_body(body: &str) -> Result<ReportInput, ReportParseError> {
        let c: Canonical =
            serde_json::from_str(body).map_err(|e| ReportParseError::Json(e.to_string()))?;
        Ok(ReportInput {
            run_id: c.run_id,
            trigger: c.trigger,
            mode: c.mode,
            exit_code: c.exit_code,
            started: c.started_ms.map(Ts),
            duration_secs: c.duration_secs,
            resources: c.resources,
            cached_catalog_status: c.cached_catalog_status,
            changed_files: c.changed_files,
            log_tail: c.log_tail,
        })
    }
}

/// The fields of a canonical body; validated when the report came in.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Canonical {
    run_id: Option<String>,
    trigger: Option<String>,
    mode: Option<String>,
    exit_code: Option<i32>,
    started_ms: Option<i64>,
    duration_secs: Option<f64>,
    resources: Option<serde_json::Value>,
    cached_catalog_status: Option<String>,
    changed_files: Vec<String>,
    log_tail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    received_ms: Option<i64>,
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
    fn a_canonical_body_reads_back_as_the_same_report() {
        let body = br#"{"run_id":"0b9f7c1e-8a4e-4a57-9d7b-2a3f7e0c9d11","trigger":"schedule",
            "mode":"cached_catalog","exit_code":0,"started":1795738741.25,"duration_secs":0.1,
            "resources":{"total":9,"changed":0,"nested":{"b":1,"a":[2,1]}},
            "cached_catalog_status":"explicitly_requested","changed_files":["/etc/b","/etc/a"],
            "log_tail":"Notice: \"quoted\" \u00e9\n"}"#;
        let input = parse_report(body, true).unwrap();
        let canonical = input.canonical_body(Ts(5));
        assert_eq!(
            ReportInput::from_canonical_body(&canonical),
            Ok(input.clone())
        );
        // Canonical: the same report however its keys were ordered.
        let reordered =
            br#"{"log_tail":"Notice: \"quoted\" \u00e9\n","changed_files":["/etc/b","/etc/a"],
            "cached_catalog_status":"explicitly_requested",
            "resources":{"nested":{"a":[2,1],"b":1},"changed":0,"total":9},
            "duration_secs":0.1,"started":1795738741.25,"exit_code":0,"mode":"cached_catalog",
            "trigger":"schedule","run_id":"0b9f7c1e-8a4e-4a57-9d7b-2a3f7e0c9d11"}"#;
        let again = parse_report(reordered, true).unwrap();
        assert_eq!(
            again.canonical_body(Ts(99)),
            canonical,
            "received is not part of it"
        );
        // Any difference in what the run says is a different body.
        let other = ReportInput {
            exit_code: Some(2),
            ..input.clone()
        };
        assert_ne!(other.canonical_body(Ts(5)), canonical);
        assert!(ReportInput::from_canonical_body("{\"surprise\":1}").is_err());
    }

    #[test]
    fn reports_without_a_run_id_or_start_are_told_apart_by_their_receive_time() {
        let log = base64::engine::general_purpose::STANDARD.encode("Notice: Applied catalog\n");
        let input = parse_report(log.as_bytes(), false).unwrap();
        let first = input.canonical_body(Ts(1_000));
        assert_ne!(first, input.canonical_body(Ts(2_000)));
        assert_eq!(
            first,
            input.canonical_body(Ts(1_000)),
            "a replay: the same body"
        );
        assert_eq!(ReportInput::from_canonical_body(&first), Ok(input));
    }

    #[test]
    fn long_logs_keep_their_tail() {
        let log = "é".repeat(LOG_TAIL_MAX);
        let t = tail(&log);
        assert!(t.len() <= LOG_TAIL_MAX && t.chars().all(|c| c == 'é'));
    }
}
