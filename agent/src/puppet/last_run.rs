//! What a Puppet run leaves behind:
//!
//! - `last_run_summary.yaml` (`lastrunfile`): plain YAML,
//!   `Puppet::Transaction::Report#raw_summary` — `version`, `application`,
//!   `resources`, `time` (with `last_run`), `changes`, `events`.
//! - `last_run_report.yaml` (`lastrunreport`): the whole report, a
//!   `--- !ruby/object:Puppet::Transaction::Report` mapping (Puppet ≥ 4
//!   writes `to_data_hash` through `Puppet::Util::PsychSupport#encode_with`:
//!   only the root is tagged, times are ISO 8601 strings with nanoseconds;
//!   older agents dumped Ruby objects with tags throughout and times as
//!   `2010-09-23 15:44:06.244173 -07:00`). Both are read; tags are ignored.
//!
//! Neither file is ours: anything missing or odd is skipped, never fatal.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_yaml::Value as Yaml;

/// The summary is a few KB.
const SUMMARY_MAX: u64 = 1024 * 1024;
/// A report lists every resource (Puppet < 8) with its logs: MBs on big
/// catalogs; beyond this it is not read.
const REPORT_MAX: u64 = 64 * 1024 * 1024;
/// File times come from a coarser clock than `SystemTime::now()`: a file
/// written just after the run started may look a little older.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// A file's identity before a run, to tell whether the run replaced it
/// (Puppet writes both files to a temporary file and renames it over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot(Option<Identity>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    ino: u64,
    modified: Option<SystemTime>,
    len: u64,
}

fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some(Identity {
        ino: meta.ino(),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

impl Snapshot {
    pub(super) fn take(path: &Path) -> Snapshot {
        Snapshot(identity(path))
    }

    /// Written since the snapshot, by a run that started at `started`: a
    /// run that never got that far (disabled, locked, failed to start)
    /// leaves the previous run's file, which says nothing about this one.
    pub(super) fn rewritten(&self, path: &Path, started: SystemTime) -> bool {
        let Some(now) = identity(path) else {
            return false;
        };
        let recent = now.modified.is_some_and(|m| m + CLOCK_SLACK >= started);
        recent && self.0.as_ref() != Some(&now)
    }
}

/// `last_run_summary.yaml` as JSON.
pub(super) fn read_summary(path: &Path) -> Option<serde_json::Value> {
    let yaml = read_yaml(path, SUMMARY_MAX)?;
    Some(to_json(&yaml))
}

/// `cached_catalog_status` of `last_run_report.yaml`.
pub(super) fn cached_catalog_status(path: &Path) -> Option<String> {
    let report = read_yaml(path, REPORT_MAX)?;
    field(&report, "cached_catalog_status")?
        .as_str()
        .map(str::to_owned)
}

/// For each file the last run changed (`File[...]` statuses with
/// `changed: true`), when Puppet was last done writing it.
///
/// An event's `time` is taken when Puppet *creates* the event, before it
/// syncs the property (`ResourceHarness#sync_if_needed`), so the file is
/// written a little after its last event. The status's `time` plus its
/// `evaluation_time` is when Puppet finished with the resource, after every
/// write to it: the later of the two is used. A changed file without any
/// usable time gets the report's own modification time (written after the
/// whole run).
pub(super) fn written_files(path: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let Some(report) = read_yaml(path, REPORT_MAX) else {
        return BTreeMap::new();
    };
    let report_written = fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut written = BTreeMap::new();
    let Some(Yaml::Mapping(statuses)) = field(&report, "resource_statuses") else {
        return written;
    };
    for (key, status) in statuses {
        let Some((path, when)) = file_written(key, untag(status)) else {
            continue;
        };
        let Some(when) = when.or(report_written) else {
            continue;
        };
        let entry = written.entry(path).or_insert(when);
        *entry = (*entry).max(when);
    }
    written
}

/// A changed `File` status: its path and, when known, when it was last
/// written.
fn file_written(key: &Yaml, status: &Yaml) -> Option<(PathBuf, Option<SystemTime>)> {
    let key = untag(key).as_str()?;
    let is_file = match field(status, "resource_type").and_then(Yaml::as_str) {
        Some(kind) => kind == "File",
        None => key.starts_with("File["),
    };
    if !is_file || field(status, "changed").and_then(Yaml::as_bool) != Some(true) {
        return None;
    }
    // The title is the path unless the resource was declared with a
    // `path` parameter (then neither the title nor the key is one).
    let title = field(status, "title")
        .and_then(Yaml::as_str)
        .or_else(|| key.strip_prefix("File[")?.strip_suffix(']'))?;
    if !title.starts_with('/') {
        return None;
    }
    let path = match title.trim_end_matches('/') {
        "" => PathBuf::from("/"),
        trimmed => PathBuf::from(trimmed),
    };

    let events = match field(status, "events") {
        Some(Yaml::Sequence(events)) => events.as_slice(),
        _ => &[],
    };
    let last_event = events
        .iter()
        .map(untag)
        .filter(|e| {
            // Only what was applied wrote anything (not noop/audit/failure).
            field(e, "status")
                .and_then(Yaml::as_str)
                .is_none_or(|s| s == "success")
        })
        .filter_map(|e| parse_time(scalar_text(field(e, "time")?)?.as_str()))
        .max();
    let finished = field(status, "time")
        .and_then(scalar_text)
        .and_then(|t| parse_time(&t))
        .and_then(|t| {
            let secs = field(status, "evaluation_time")?.as_f64()?;
            (secs.is_finite() && secs >= 0.0).then(|| t + Duration::from_secs_f64(secs))
        });
    Some((path, last_event.max(finished)))
}

fn read_yaml(path: &Path, max: u64) -> Option<Yaml> {
    let text = match read_bounded(path, max) {
        Ok(text) => text,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("{}: {e}", path.display());
            }
            return None;
        }
    };
    match serde_yaml::from_str::<Yaml>(&text) {
        Ok(yaml) => Some(untag(&yaml).clone()),
        Err(e) => {
            tracing::warn!("{}: not YAML: {e}", path.display());
            None
        }
    }
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    let file = fs::File::open(path)?;
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(text)
}

/// `!ruby/object:…`, `!ruby/sym`, …: only the value matters.
fn untag(mut value: &Yaml) -> &Yaml {
    while let Yaml::Tagged(tagged) = value {
        value = &tagged.value;
    }
    value
}

fn field<'a>(map: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    match untag(map) {
        Yaml::Mapping(m) => m.get(name).map(untag),
        _ => None,
    }
}

/// A time is written as a string (quoted ISO 8601, or a bare Psych time,
/// which YAML 1.2 reads as a string too).
fn scalar_text(value: &Yaml) -> Option<String> {
    match untag(value) {
        Yaml::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// YAML (tags dropped, keys as strings) → JSON; numbers JSON cannot hold
/// become null.
pub(super) fn to_json(value: &Yaml) -> serde_json::Value {
    use serde_json::Value as Json;
    match untag(value) {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(map) => Json::Object(
            map.iter()
                .filter_map(|(k, v)| {
                    let key = match untag(k) {
                        Yaml::String(s) => s.clone(),
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((key, to_json(v)))
                })
                .collect(),
        ),
        Yaml::Tagged(_) => unreachable!("untagged above"),
    }
}

/// `2026-11-27T06:12:01.123456789+00:00` (Ruby `Time#iso8601(9)`, what
/// Puppet ≥ 4 writes) or `2026-11-27 06:12:01.123456789 +00:00` (Psych's
/// own dump of a `Time`); `Z` or no offset means UTC.
pub(super) fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: u32 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Nanoseconds: the first nine digits, padded.
        let kept = &fraction[..digits.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_secs = match rest.trim_start() {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|&c| c != ':').collect();
            if digits.len() != 2 && digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let hours: i64 = digits[..2].parse().ok()?;
            let minutes: i64 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/puppet")
            .join(name)
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// Equal but for the float rounding of `evaluation_time`.
    fn assert_close(actual: SystemTime, expected: SystemTime) {
        let diff = actual
            .duration_since(expected)
            .or_else(|_| expected.duration_since(actual))
            .unwrap();
        assert!(
            diff < Duration::from_micros(1),
            "{actual:?} vs {expected:?}"
        );
    }

    #[test]
    fn times_as_puppet_writes_them() {
        // 2026-11-27T06:12:01Z = 1795759921.
        let expected = at(1_795_759_921, 123_456_789);
        for text in [
            "2026-11-27T06:12:01.123456789+00:00",
            "2026-11-27 06:12:01.123456789 +00:00",
            "2026-11-27T07:12:01.123456789+01:00",
            "2026-11-26T22:12:01.123456789-08:00",
            "2026-11-27T06:12:01.1234567891Z",
            "2026-11-27 07:12:01.123456789 +0100",
        ] {
            assert_eq!(parse_time(text), Some(expected), "{text}");
        }
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_time("2000-02-29 00:00:00.5"),
            Some(at(951_782_400, 500_000_000))
        );
        assert_eq!(
            parse_time("2010-09-23 15:44:06.244173 -07:00"),
            Some(at(1_285_281_846, 244_173_000))
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-27T06:12:01.+00:00",
            "2026-11-27T06:12:01 UTC",
            "2026-11-27T06:12:01+1",
            "1969-12-31T23:59:59Z",
            "2026-11-27T24:00:00Z",
            "２０２６-11-27T06:12:01Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn written_files_from_a_puppet_7_report() {
        let written = written_files(&fixture("last_run_report.yaml"));
        let files: Vec<&str> = written.keys().map(|p| p.to_str().unwrap()).collect();
        // Changed files only: not the unchanged /etc/hosts, the noop
        // /etc/issue, the failed /etc/ssh/sshd_config, the Exec, nor the
        // File declared with a `path` (its title is not a path).
        assert_eq!(files, ["/etc/motd", "/etc/sudoers.d/pvc"]);
        // /etc/motd: one content event at 06:12:01.118342151; the status
        // started at .117409866 and took 0.004182 s: done at .121591866.
        assert_close(
            written[Path::new("/etc/motd")],
            at(1_795_759_921, 121_591_866),
        );
        // /etc/sudoers.d/pvc: events at .131204117 (created) and .135720448
        // (mode); the status started at .130005212 and took 0.006618 s.
        assert_close(
            written[Path::new("/etc/sudoers.d/pvc")],
            at(1_795_759_921, 136_623_212),
        );
    }

    #[test]
    fn odd_reports_are_tolerated() {
        let dir = crate::puppet::tests::TempDir::new("last-run");
        let path = dir.path().join("r.yaml");
        for (text, expected) in [
            ("", 0),
            ("--- just a string\n", 0),
            ("resource_statuses: [1, 2]\n", 0),
            ("resource_statuses:\n  File[/etc/a]:\n", 0),
            ("resource_statuses:\n  File[/etc/a]: {changed: yes}\n", 0),
            ("{not yaml", 0),
            // Old agents: tags throughout, times as Psych dumps a Time,
            // no resource_type: the key says File.
            (
                "--- !ruby/object:Puppet::Transaction::Report\n  resource_statuses:\n    \
                 File[/etc/old]: !ruby/object:Puppet::Resource::Status\n      changed: true\n      \
                 events:\n        - !ruby/object:Puppet::Transaction::Event\n          \
                 status: success\n          time: 2010-09-23 15:44:06.244173 -07:00\n",
                1,
            ),
            // Changed, but no time at all: the report's own mtime.
            (
                "resource_statuses:\n  File[/etc/b]: {changed: true, resource_type: File}\n",
                1,
            ),
        ] {
            fs::write(&path, text).unwrap();
            let written = written_files(&path);
            assert_eq!(written.len(), expected, "{text}");
        }
        let old = "--- !ruby/object:Puppet::Transaction::Report\n  resource_statuses:\n    \
            File[/etc/old/]: !ruby/object:Puppet::Resource::Status\n      changed: true\n      \
            events:\n        - !ruby/object:Puppet::Transaction::Event\n          \
            status: !ruby/sym success\n          time: 2010-09-23 15:44:06.244173 -07:00\n";
        fs::write(&path, old).unwrap();
        assert_eq!(
            written_files(&path).get(Path::new("/etc/old")),
            Some(&at(1_285_281_846, 244_173_000))
        );
        assert!(written_files(&dir.path().join("missing.yaml")).is_empty());
    }

    #[test]
    fn the_summary_as_json() {
        let summary = read_summary(&fixture("last_run_summary.yaml")).unwrap();
        assert_eq!(summary["resources"]["changed"], 4);
        assert_eq!(summary["resources"]["total"], 9);
        assert_eq!(summary["time"]["last_run"], 1_795_759_921);
        assert_eq!(summary["time"]["total"], 2.611838331);
        assert_eq!(summary["version"]["puppet"], "7.23.0");
        assert_eq!(
            cached_catalog_status(&fixture("last_run_report.yaml")).as_deref(),
            Some("not_used")
        );
        let yaml: Yaml = serde_yaml::from_str("!ruby/sym a: {1: .nan, true: [~]}").unwrap();
        assert_eq!(
            to_json(&yaml),
            serde_json::json!({"a": {"1": null, "true": [null]}})
        );
    }

    #[test]
    fn a_file_counts_as_rewritten_only_when_replaced_after_the_start() {
        let dir = crate::puppet::tests::TempDir::new("snapshot");
        let path = dir.path().join("last_run_summary.yaml");
        let missing = Snapshot::take(&path);
        assert!(
            !missing.rewritten(&path, SystemTime::now()),
            "still missing"
        );
        fs::write(&path, "a").unwrap();
        let started = SystemTime::now();
        let before = Snapshot::take(&path);
        assert!(missing.rewritten(&path, started), "created during the run");
        assert!(!before.rewritten(&path, started), "untouched");
        // Replaced the way Puppet does it: a new file renamed over.
        let tmp = dir.path().join("tmp");
        fs::write(&tmp, "bb").unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert!(before.rewritten(&path, started));
        // But a run that started long after it was written did not write it.
        assert!(!before.rewritten(&path, SystemTime::now() + Duration::from_secs(60)));
    }
}
