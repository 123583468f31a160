//! `POST /api/config_reports`: Foreman's `{"config_report": {…}}` as its
//! puppetserver report processor sends it. An accepted report names a
//! valid certname (its `host`, lower-cased), and its canonical JSON (what
//! is stored) re-reads as the same report (floats within a few units in the
//! last place: `pvc_fuzz::same_json`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvc_bridge::writes::{canonical_json, parse_config_report};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(upload) = parse_config_report(data) else {
        return;
    };
    let host = upload.report["host"].as_str().expect("host is a string");
    assert_eq!(upload.certname.as_str(), host.to_ascii_lowercase());
    match &upload.report.get("reported_at") {
        None | Some(Value::Null) => assert_eq!(upload.reported_at, None),
        Some(at) => assert_eq!(upload.reported_at.as_deref(), at.as_str()),
    }
    let report = Value::Object(upload.report);
    let canonical = canonical_json(&report);
    let again: Value = serde_json::from_str(&canonical).expect("canonical JSON");
    pvc_fuzz::assert_same_json(&again, &report);
});
