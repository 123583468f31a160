//! The original pvc agent's base64 bodies (`facter -pj | base64` to
//! `/facts`, `puppet agent -t | base64` to `/report`): the input is what
//! was encoded; its first byte says whether the encoding is wrapped at 76
//! columns as `base64` writes it. Facts: the base64 of a JSON body is the
//! same upload as the body itself. Reports: the log kept is the tail of the
//! decoded text, at most 64 KiB, and its canonical body reads back.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use pvc_bridge::runs::{parse_report, ReportInput};
use pvc_bridge::schedule::Ts;
use pvc_bridge::writes::{parse_facts_body, UploadError};

const CERTNAME: &str = "web01.example.com";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, decoded)) = data.split_first() else {
        return;
    };
    let mut encoded = base64::engine::general_purpose::STANDARD.encode(decoded);
    if mode & 1 == 1 {
        encoded = encoded
            .as_bytes()
            .chunks(76)
            .map(|line| format!("{}\n", std::str::from_utf8(line).expect("base64 is ASCII")))
            .collect();
    }

    let legacy = parse_facts_body(CERTNAME, encoded.as_bytes());
    assert_ne!(legacy, Err(UploadError::Unrecognised), "valid base64");
    if decoded.trim_ascii().first() == Some(&b'{') {
        assert_eq!(legacy, parse_facts_body(CERTNAME, decoded));
    }
    if let Ok(upload) = &legacy {
        let plain: serde_json::Value =
            serde_json::from_slice(decoded.trim_ascii()).expect("accepted facts are JSON");
        assert_eq!(serde_json::Value::Object(upload.facts.clone()), plain);
        pvc_fuzz::check_prepared(upload);
    }

    let report = parse_report(encoded.as_bytes(), false).expect("valid base64 is a report");
    let text = String::from_utf8_lossy(decoded);
    let log = report.log_tail.as_deref().expect("a log report has a log");
    assert!(text.ends_with(log) && log.len() <= 64 * 1024);
    if text.len() <= 64 * 1024 {
        assert_eq!(log, text);
    }
    assert_eq!(
        report,
        ReportInput {
            log_tail: report.log_tail.clone(),
            ..ReportInput::default()
        }
    );
    let body = report.canonical_body(Ts(1_795_738_741_000));
    assert_eq!(ReportInput::from_canonical_body(&body), Ok(report));
});
