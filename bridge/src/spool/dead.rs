//! The dead-letter file: records the consumer can never store (the database
//! refuses them as invalid, or they cannot be decoded) are set aside here,
//! one JSON line each, so that one bad record does not hold back every
//! record behind it, and nothing is dropped. An operator inspects and
//! re-submits them (docs/operations.md, "The write spool").

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::{Record, SpoolError};

/// Name of the file in the spool directory.
pub const DEAD_LETTERS: &str = "dead-letters.jsonl";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(DEAD_LETTERS)
}

/// The line (without its newline) that records `record`, refused for
/// `error` at `at_ms` (ms since the epoch). A body that is JSON is embedded
/// as JSON, so `jq` reads it directly; any other body as base64.
pub fn line(record: &Record, error: &str, at_ms: i64) -> String {
    let mut line = serde_json::json!({
        "seq": record.seq,
        "kind": record.kind,
        "key": record.key,
        "error": error,
        "dead_lettered_ms": at_ms,
    });
    match serde_json::from_slice::<serde_json::Value>(&record.body) {
        Ok(body) => line["body"] = body,
        Err(_) => {
            line["body_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&record.body)
                .into()
        }
    }
    line.to_string()
}

/// Appends `line` and a newline to the dead-letter file of `dir` and
/// fsyncs it (and, when the file is new, the directory) before returning:
/// the record is acknowledged in the spool only after this.
pub fn append(dir: &Path, line: &str) -> Result<PathBuf, SpoolError> {
    let path = path(dir);
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| SpoolError::Io { what, path, source }
    };
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io("opening the dead-letter file"))?;
    let mut data = Vec::with_capacity(line.len() + 1);
    data.extend_from_slice(line.as_bytes());
    data.push(b'\n');
    file.write_all(&data)
        .and_then(|()| file.sync_data())
        .map_err(io("writing the dead-letter file"))?;
    if !existed {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the directory"))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8]) -> Record {
        Record {
            seq: 9,
            kind: "facts".into(),
            key: "web01.example.com".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_json_body_is_embedded_as_json() {
        let text = line(&record(br#"{"kind":"facts","n":1}"#), "bad input", 1_700);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "seq": 9, "kind": "facts", "key": "web01.example.com",
                "error": "bad input", "dead_lettered_ms": 1_700,
                "body": {"kind": "facts", "n": 1}
            })
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn any_other_body_is_kept_byte_for_byte_as_base64() {
        let body = b"\xff\x00not json\n";
        let value: serde_json::Value =
            serde_json::from_str(&line(&record(body), "unreadable", 1)).unwrap();
        assert!(value.get("body").is_none());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value["body_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, body);
    }
}
