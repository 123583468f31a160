//! Upload bodies → validated uploads. Three fact formats: facter JSON (an
//! object), the original pvc agent's base64 of it (`facter -pj | base64`
//! posted with `curl -d @file`: form content type, newlines stripped), and
//! Foreman's `POST /api/hosts/facts` payload as the stock ENC script sends it
//! (`{"facts": …, "name": …, "certname": …}`). Reports: Foreman's
//! `{"config_report": {…}}` as its puppetserver report processor sends it.

use base64::Engine;
use serde_json::{Map, Value};

use crate::certname::Certname;

/// A fact set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FactUpload {
    pub certname: Certname,
    /// The name Foreman is to know the host by: the payload's `name` for
    /// Foreman's API; the `fqdn` fact (else the certname) for the pvc
    /// agent's, as the stock ENC script does.
    pub name: String,
    pub facts: Map<String, Value>,
}

/// `fqdn` (legacy fact), else `networking.fqdn`, else the certname. A
/// value that is no valid host name (control characters, blanks, …) is
/// passed over: it would become the host's name in Foreman.
fn host_name(facts: &Map<String, Value>, certname: &Certname) -> String {
    facts
        .get("fqdn")
        .or_else(|| facts.get("networking").and_then(|n| n.get("fqdn")))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .filter(|s| s.parse::<Certname>().is_ok())
        .unwrap_or_else(|| certname.as_str().to_owned())
}

/// A config report as received, with the host it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportUpload {
    pub certname: Certname,
    /// `reported_at`, as sent (Foreman's `YYYY-MM-DD HH:MM:SS UTC`).
    pub reported_at: Option<String>,
    /// The whole `config_report` object.
    pub report: Map<String, Value>,
}

/// Why an upload is refused (the HTTP layer answers 400 with this text).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UploadError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body is neither JSON nor base64 of JSON")]
    Unrecognised,
    #[error("{0}")]
    Invalid(String),
    #[error("bad certname: {0}")]
    Certname(String),
}

fn certname(name: &str) -> Result<Certname, UploadError> {
    // Foreman's `import_host` downcases `name` and `certname`.
    name.to_ascii_lowercase()
        .parse()
        .map_err(|e: crate::certname::CertnameError| UploadError::Certname(e.to_string()))
}

fn json_object(body: &[u8], what: &str) -> Result<Map<String, Value>, UploadError> {
    match serde_json::from_slice::<Value>(body).map_err(|e| UploadError::Json(e.to_string()))? {
        Value::Object(object) => Ok(object),
        other => Err(UploadError::Invalid(format!(
            "{what} must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `POST /facts/<certname>` (or `?fqdn=`): facter JSON, or base64 of it.
pub fn parse_facts_body(name: &str, body: &[u8]) -> Result<FactUpload, UploadError> {
    let certname = certname(name)?;
    let trimmed = body.trim_ascii();
    let facts = if trimmed.first() == Some(&b'{') {
        json_object(trimmed, "facts")?
    } else {
        // `base64` wraps at 76 columns; curl -d strips the newlines, other
        // clients may not.
        let text: Vec<u8> = trimmed
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| UploadError::Unrecognised)?;
        json_object(decoded.trim_ascii(), "facts")?
    };
    let name = host_name(&facts, &certname);
    Ok(FactUpload {
        certname,
        name,
        facts,
    })
}

/// `POST /api/hosts/facts`: `certname` if given, else `name` (Foreman finds
/// the host by certname, then by name).
pub fn parse_foreman_facts(body: &[u8]) -> Result<FactUpload, UploadError> {
    let mut payload = json_object(body.trim_ascii(), "the payload")?;
    let name = ["certname", "name"]
        .iter()
        .find_map(|key| {
            payload
                .get(*key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| UploadError::Invalid("name (or certname) is required".into()))?;
    let certname = certname(name)?;
    let facts = match payload.remove("facts") {
        Some(Value::Object(facts)) => facts,
        Some(other) => {
            return Err(UploadError::Invalid(format!(
                "facts must be an object, not {}",
                kind(&other)
            )))
        }
        None => return Err(UploadError::Invalid("facts is required".into())),
    };
    // Foreman downcases `name` too; a name it could not store is refused
    // here rather than by Foreman later.
    let name = match payload.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => self::certname(name)?.as_str().to_owned(),
        _ => certname.as_str().to_owned(),
    };
    Ok(FactUpload {
        certname,
        name,
        facts,
    })
}

/// `POST /api/config_reports`: `{"config_report": {"host": …, …}}`.
pub fn parse_config_report(body: &[u8]) -> Result<ReportUpload, UploadError> {
    let mut payload = json_object(body.trim_ascii(), "the payload")?;
    let report = match payload.remove("config_report") {
        Some(Value::Object(report)) => report,
        Some(other) => {
            return Err(UploadError::Invalid(format!(
                "config_report must be an object, not {}",
                kind(&other)
            )))
        }
        None => return Err(UploadError::Invalid("config_report is required".into())),
    };
    let host = report
        .get("host")
        .and_then(Value::as_str)
        .ok_or_else(|| UploadError::Invalid("config_report.host is required".into()))?;
    let certname = certname(host)?;
    let reported_at = match report.get("reported_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(UploadError::Invalid(format!(
                "config_report.reported_at must be a string, not {}",
                kind(other)
            )))
        }
    };
    Ok(ReportUpload {
        certname,
        reported_at,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FACTS: &str = r#"{"fqdn": "web01.example.com", "uptime": "1 day"}"#;

    #[test]
    fn facter_json_and_its_base64_give_the_same_facts() {
        let plain = parse_facts_body("WEB01.example.com", FACTS.as_bytes()).expect("json");
        assert_eq!(plain.certname.as_str(), "web01.example.com");
        let b64 = base64::engine::general_purpose::STANDARD.encode(FACTS);
        // `base64` output wrapped, as a client that keeps newlines sends it.
        let wrapped = format!("{}\n{}\n", &b64[..10], &b64[10..]);
        let decoded = parse_facts_body("web01.example.com", wrapped.as_bytes()).expect("b64");
        assert_eq!(plain, decoded);
    }

    #[test]
    fn the_enc_scripts_payload_prefers_certname_over_name() {
        let body =
            json!({"facts": {"a": 1}, "name": "host.example.com", "certname": "cert.example.com"});
        let upload = parse_foreman_facts(body.to_string().as_bytes()).expect("payload");
        assert_eq!(upload.certname.as_str(), "cert.example.com");
        assert_eq!(upload.name, "host.example.com");
        assert_eq!(Value::Object(upload.facts), json!({"a": 1}));
        let body = json!({"facts": {}, "name": "Host.Example.com"});
        let upload = parse_foreman_facts(body.to_string().as_bytes()).expect("name only");
        assert_eq!(upload.certname.as_str(), "host.example.com");
        assert_eq!(upload.name, "host.example.com");
    }

    #[test]
    fn the_agents_facts_name_the_host_by_fqdn() {
        let upload = parse_facts_body("cert.example.com", FACTS.as_bytes()).expect("json");
        assert_eq!(upload.name, "web01.example.com");
        let facter4 = br#"{"networking": {"fqdn": "Web02.Example.com"}}"#;
        let upload = parse_facts_body("cert.example.com", facter4).expect("json");
        assert_eq!(upload.name, "web02.example.com");
        let upload = parse_facts_body("cert.example.com", b"{}").expect("json");
        assert_eq!(upload.name, "cert.example.com");
        // No valid host name: the certname names the host instead.
        for bad in [
            r#""web\u001b[31m.example.com""#,
            r#""a b.example.com""#,
            "\"\"",
        ] {
            let body = format!(r#"{{"fqdn": {bad}}}"#);
            let upload = parse_facts_body("cert.example.com", body.as_bytes()).expect("json");
            assert_eq!(upload.name, "cert.example.com", "{bad}");
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        assert!(matches!(
            parse_facts_body("a.example.com", b"{\"a\": "),
            Err(UploadError::Json(_))
        ));
        assert_eq!(
            parse_facts_body("a.example.com", b"not base64!"),
            Err(UploadError::Unrecognised)
        );
        assert_eq!(
            parse_facts_body("a.example.com", b"[1]"),
            Err(UploadError::Unrecognised)
        );
        assert!(matches!(
            parse_facts_body("bad host!", FACTS.as_bytes()),
            Err(UploadError::Certname(_))
        ));
        assert_eq!(
            parse_foreman_facts(br#"{"name": "a.example.com"}"#),
            Err(UploadError::Invalid("facts is required".into()))
        );
        assert_eq!(
            parse_foreman_facts(br#"{"facts": [], "name": "a.example.com"}"#),
            Err(UploadError::Invalid(
                "facts must be an object, not an array".into()
            ))
        );
        assert_eq!(
            parse_config_report(br#"{"config_report": {"status": {}}}"#),
            Err(UploadError::Invalid(
                "config_report.host is required".into()
            ))
        );
    }

    #[test]
    fn a_config_report_keeps_everything_sent() {
        let body = json!({"config_report": {
            "host": "web01.example.com", "reported_at": "2026-11-27 05:00:00 UTC",
            "status": {"applied": 1}, "logs": []
        }});
        let report = parse_config_report(body.to_string().as_bytes()).expect("report");
        assert_eq!(report.certname.as_str(), "web01.example.com");
        assert_eq!(
            report.reported_at.as_deref(),
            Some("2026-11-27 05:00:00 UTC")
        );
        assert_eq!(Value::Object(report.report), body["config_report"]);
    }
}
