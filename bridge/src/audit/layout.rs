//! What a host's tree and commit messages hold, pure: stable facts flattened
//! to one sorted line per leaf (`facts.yaml`), the last run that changed
//! resources (`last_run.yaml`), and the commit messages. Every byte is a
//! function of the stored event, so a rebuilt repository has the same trees
//! and the same commit ids.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The host's stable facts.
pub const FACTS_FILE: &str = "facts.yaml";
/// The last run that changed resources.
pub const RUN_FILE: &str = "last_run.yaml";
/// The trailer naming the stored event a commit was built from: a redone
/// round recognises what it already committed.
pub const EVENT_TRAILER: &str = "Audit-Event: ";
/// Keys or resources listed in a commit message at most (the diff has all).
const LISTED: usize = 50;

/// One step of a fact's path.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Flattened facts: `(key, value)` per leaf, in path order (keys sorted
/// bytewise at every level, array elements in order).
pub type FlatFacts = Vec<(String, String)>;

/// Flattens a fact set. A leaf's value is its JSON text, so `"1"` and `1`,
/// `"true"` and `true`, and strings with newlines or quotes stay apart on
/// one line.
///
/// Arrays whose elements are all scalars (mount options, name servers,
/// processor models) are one value on one line: they read as one value,
/// stay short, and a changed element shows as that one changed line.
/// Arrays holding objects or arrays (interface bindings, cloud metadata
/// lists) get a line per leaf under an index, `bindings[0].address`: one
/// line of JSON for them would be long and a change in it hard to spot, and
/// facter keeps their order stable, so indices do not shift between runs.
pub fn flatten_facts(facts: &Map<String, Value>) -> FlatFacts {
    let mut lines = Vec::new();
    let mut path = Vec::new();
    walk_object(facts, &mut path, &mut lines);
    lines
}

fn walk_object<'a>(map: &'a Map<String, Value>, path: &mut Vec<Step<'a>>, out: &mut FlatFacts) {
    // jsonb keeps its own key order (shorter keys first): sort here.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        path.push(Step::Key(key));
        walk(&map[key], path, out);
        path.pop();
    }
}

fn walk<'a>(value: &'a Value, path: &mut Vec<Step<'a>>, out: &mut FlatFacts) {
    match value {
        Value::Object(map) if !map.is_empty() => walk_object(map, path, out),
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                walk(item, path, out);
                path.pop();
            }
        }
        // Scalars, scalar arrays, `{}`: one line of JSON.
        leaf => out.push((render_key(path), leaf.to_string())),
    }
}

/// A path as a YAML key: `networking.interfaces.eth0.ip`. A key that is
/// not a plain word (a dot, a space, a colon, …) is written as a JSON
/// string, `"eth0.100"`, so the path stays unambiguous; the whole key is
/// single-quoted when YAML would misread it.
fn render_key(path: &[Step]) -> String {
    let mut key = String::new();
    for (i, step) in path.iter().enumerate() {
        match step {
            Step::Key(name) => {
                if i > 0 {
                    key.push('.');
                }
                if is_plain(name) {
                    key.push_str(name);
                } else {
                    key.push_str(&Value::from(*name).to_string());
                }
            }
            Step::Index(n) => {
                let _ = write!(key, "[{n}]");
            }
        }
    }
    let misread = key.starts_with('"')
        || key.contains(": ")
        || key.contains(" #")
        || key.ends_with(':')
        || key.contains('\t');
    if misread {
        format!("'{}'", key.replace('\'', "''"))
    } else {
        key
    }
}

fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/' | b'+'))
}

/// The text of `facts.yaml`.
pub fn render_facts(lines: &FlatFacts) -> String {
    let mut text = String::with_capacity(lines.iter().map(|(k, v)| k.len() + v.len() + 3).sum());
    for (key, value) in lines {
        text.push_str(key);
        text.push_str(": ");
        text.push_str(value);
        text.push('\n');
    }
    text
}

/// Reads `facts.yaml` back (as written by [`render_facts`]) into key →
/// value text, to count what the next facts change.
pub fn parse_facts(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(split_line)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn split_line(line: &str) -> Option<(&str, &str)> {
    let end = if let Some(quoted) = line.strip_prefix('\'') {
        // The closing quote is the first one not doubled.
        let bytes = quoted.as_bytes();
        let mut i = 0;
        loop {
            match bytes.get(i) {
                Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                Some(b'\'') => break i + 2,
                Some(_) => i += 1,
                None => return None,
            }
        }
    } else {
        line.find(": ")?
    };
    let (key, rest) = line.split_at(end);
    Some((key, rest.strip_prefix(": ")?))
}

/// What new facts change against the previous ones: keys, in path order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactsDiff {
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

pub fn diff_facts(old: &HashMap<String, String>, new: &FlatFacts) -> FactsDiff {
    let mut diff = FactsDiff::default();
    let mut seen = std::collections::HashSet::with_capacity(new.len());
    for (key, value) in new {
        seen.insert(key.as_str());
        match old.get(key) {
            None => diff.added.push(key.clone()),
            Some(before) if before != value => diff.changed.push(key.clone()),
            Some(_) => {}
        }
    }
    let mut removed: Vec<&String> = old.keys().filter(|k| !seen.contains(k.as_str())).collect();
    removed.sort();
    diff.removed = removed.into_iter().cloned().collect();
    diff
}

/// `facts: 3 changed, 1 added, 0 removed`, the keys, the event trailer.
pub fn facts_message(diff: &FactsDiff, event_id: i64) -> String {
    let mut message = format!(
        "facts: {} changed, {} added, {} removed\n\n",
        diff.changed.len(),
        diff.added.len(),
        diff.removed.len()
    );
    let listed = [
        ("changed", &diff.changed),
        ("added", &diff.added),
        ("removed", &diff.removed),
    ];
    let total: usize = listed.iter().map(|(_, keys)| keys.len()).sum();
    let mut n = 0;
    for (what, keys) in listed {
        for key in keys {
            if n == LISTED {
                break;
            }
            let _ = writeln!(message, "{what} {key}");
            n += 1;
        }
    }
    if total > LISTED {
        let _ = writeln!(message, "… and {} more", total - LISTED);
    }
    if total > 0 {
        message.push('\n');
    }
    let _ = writeln!(message, "{EVENT_TRAILER}{event_id}");
    message
}

/// A run that changed resources, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFile {
    /// The text of `last_run.yaml`.
    pub text: String,
    pub applied: i64,
    pub restarted: i64,
    pub failed: i64,
    /// `source: message` per resource log, in the report's order.
    pub resources: Vec<String>,
}

/// `last_run.yaml` from a 'run' event's body (`reported_at`, `status`,
/// Foreman's `logs`). Resource logs are those whose source is a resource
/// path (`/Stage[main]/…`); Puppet's own lines ("Applied catalog in …")
/// change nothing and are left out. Levels other than `notice` (the level
/// of a change) prefix the message.
pub fn run_file(body: &Value) -> RunFile {
    let mut text = String::new();
    let reported_at = body.get("reported_at").unwrap_or(&Value::Null);
    let _ = writeln!(text, "reported_at: {reported_at}");
    let status = body.get("status").unwrap_or(&Value::Null);
    match status {
        Value::Object(map) if !map.is_empty() => {
            let mut lines = Vec::new();
            let mut path = vec![Step::Key("status")];
            walk_object(map, &mut path, &mut lines);
            text.push_str(&render_facts(&lines));
        }
        other => {
            let _ = writeln!(text, "status: {other}");
        }
    }
    let mut resources = Vec::new();
    let mut yaml = Vec::new();
    for entry in body
        .get("logs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let log = entry.get("log").unwrap_or(entry);
        let source = log
            .pointer("/sources/source")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !source.starts_with('/') {
            continue;
        }
        let message = log
            .pointer("/messages/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        let message = match log.get("level").and_then(Value::as_str) {
            Some("notice") | None => message.to_owned(),
            Some(level) => format!("{level}: {message}"),
        };
        yaml.push(format!(
            "  - {}: {}",
            Value::from(source),
            Value::from(message.as_str())
        ));
        // One line per resource in the commit message, whatever it holds.
        resources.push(format!("{source}: {message}").replace('\n', "\\n"));
    }
    if yaml.is_empty() {
        text.push_str("resources: []\n");
    } else {
        text.push_str("resources:\n");
        for line in yaml {
            text.push_str(&line);
            text.push('\n');
        }
    }
    RunFile {
        text,
        applied: count(status, "applied"),
        restarted: count(status, "restarted"),
        failed: count(status, "failed"),
        resources,
    }
}

/// A status count as `pvc.report_count` reads it: a number, else 0.
fn count(status: &Value, key: &str) -> i64 {
    match status.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        _ => 0,
    }
}

/// `run: applied 2, restarted 0, failed 0`, the resources, the trailer.
pub fn run_message(run: &RunFile, event_id: i64) -> String {
    let mut message = format!(
        "run: applied {}, restarted {}, failed {}\n\n",
        run.applied, run.restarted, run.failed
    );
    for line in run.resources.iter().take(LISTED) {
        message.push_str(line);
        message.push('\n');
    }
    if run.resources.len() > LISTED {
        let _ = writeln!(message, "… and {} more", run.resources.len() - LISTED);
    }
    if !run.resources.is_empty() {
        message.push('\n');
    }
    let _ = writeln!(message, "{EVENT_TRAILER}{event_id}");
    message
}

/// The event id a commit message names (its last trailer line).
pub fn event_of_message(message: &str) -> Option<i64> {
    message
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(EVENT_TRAILER))
        .and_then(|id| id.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flat(value: Value) -> String {
        render_facts(&flatten_facts(value.as_object().expect("object")))
    }

    #[test]
    fn facts_are_one_sorted_line_per_leaf_with_json_values() {
        let text = flat(json!({
            "os": {"release": {"full": "12.5", "major": "12"}, "family": "Debian"},
            "is_virtual": true,
            "networking": {"interfaces": {"eth0": {"ip": "10.0.0.5", "mtu": 1500}}},
            "answer": "42",
            "empty": {},
            "nothing": null
        }));
        assert_eq!(
            text,
            "answer: \"42\"\n\
             empty: {}\n\
             is_virtual: true\n\
             networking.interfaces.eth0.ip: \"10.0.0.5\"\n\
             networking.interfaces.eth0.mtu: 1500\n\
             nothing: null\n\
             os.family: \"Debian\"\n\
             os.release.full: \"12.5\"\n\
             os.release.major: \"12\"\n"
        );
    }

    #[test]
    fn scalar_arrays_are_one_line_and_object_arrays_are_indexed() {
        let text = flat(json!({
            "dns": {"nameservers": ["10.0.0.1", "10.0.0.2"]},
            "bindings": [{"address": "10.0.0.5", "netmask": "255.0.0.0"}, {"address": "10.0.0.6"}],
            "nested": [[1, 2], "x"],
            "none": []
        }));
        assert_eq!(
            text,
            "bindings[0].address: \"10.0.0.5\"\n\
             bindings[0].netmask: \"255.0.0.0\"\n\
             bindings[1].address: \"10.0.0.6\"\n\
             dns.nameservers: [\"10.0.0.1\",\"10.0.0.2\"]\n\
             nested[0]: [1,2]\n\
             nested[1]: \"x\"\n\
             none: []\n"
        );
    }

    #[test]
    fn odd_keys_are_quoted_so_paths_stay_unambiguous_and_yaml_reads_them() {
        let text = flat(json!({
            "interfaces": {"eth0.100": {"mtu": 1}, "eth0": {"100": {"mtu": 2}}},
            "mountpoints": {"/boot/efi": {"size": "1 GiB"}},
            "a: b": {"it's": 3},
            "": 4
        }));
        assert_eq!(
            text,
            "'\"\"': 4\n\
             '\"a: b\".\"it''s\"': 3\n\
             interfaces.eth0.100.mtu: 2\n\
             interfaces.\"eth0.100\".mtu: 1\n\
             mountpoints./boot/efi.size: \"1 GiB\"\n"
        );
        // Every line reads back as YAML to the key and value written.
        let parsed: serde_yaml::Mapping = serde_yaml::from_str(&text).expect("valid YAML");
        assert_eq!(parsed.len(), 5);
        assert_eq!(
            parsed.get("\"a: b\".\"it's\""),
            Some(&serde_yaml::Value::from(3))
        );
        assert_eq!(
            parsed.get("interfaces.\"eth0.100\".mtu"),
            Some(&serde_yaml::Value::from(1))
        );
        // And back through our own reader.
        let back = parse_facts(&text);
        assert_eq!(back.len(), 5);
        assert_eq!(back["'\"a: b\".\"it''s\"'"], "3");
    }

    #[test]
    fn strings_that_look_like_other_types_or_hold_newlines_stay_one_json_line() {
        let text = flat(json!({"a": "true", "b": "line1\nline2: x", "c": 1.5}));
        assert_eq!(text, "a: \"true\"\nb: \"line1\\nline2: x\"\nc: 1.5\n");
        let back = parse_facts(&text);
        assert_eq!(back["b"], "\"line1\\nline2: x\"");
    }

    #[test]
    fn the_diff_counts_changed_added_and_removed_keys() {
        let old = parse_facts(&flat(json!({"a": 1, "b": 2, "c": 3})));
        let new = flatten_facts(json!({"a": 1, "b": 20, "d": 4}).as_object().unwrap());
        let diff = diff_facts(&old, &new);
        assert_eq!(diff.changed, vec!["b"]);
        assert_eq!(diff.added, vec!["d"]);
        assert_eq!(diff.removed, vec!["c"]);
        let message = facts_message(&diff, 17);
        assert_eq!(
            message,
            "facts: 1 changed, 1 added, 1 removed\n\nchanged b\nadded d\nremoved c\n\nAudit-Event: 17\n"
        );
        assert_eq!(event_of_message(&message), Some(17));
    }

    #[test]
    fn a_long_list_of_keys_is_cut_in_the_message() {
        let keys: Vec<String> = (0..60).map(|i| format!("k{i:02}")).collect();
        let diff = FactsDiff {
            added: keys,
            ..FactsDiff::default()
        };
        let message = facts_message(&diff, 1);
        assert!(message.contains("added k49\n"));
        assert!(!message.contains("k50"));
        assert!(message.contains("… and 10 more\n"));
    }

    #[test]
    fn a_run_lists_its_status_and_resource_logs() {
        let body = json!({
            "reported_at": "2026-11-27 06:00:00 UTC",
            "status": {"applied": 2, "restarted": 1, "failed": 0, "skipped": 0},
            "logs": [
                {"log": {"level": "notice", "sources": {"source": "/Stage[main]/Motd/File[/etc/motd]/content"},
                         "messages": {"message": "content changed '{md5}a' to '{md5}b'"}}},
                {"log": {"level": "notice", "sources": {"source": "Puppet"},
                         "messages": {"message": "Applied catalog in 1.20 seconds"}}},
                {"log": {"level": "err", "sources": {"source": "/Stage[main]/Ntp/Service[ntp]"},
                         "messages": {"message": "Could not restart"}}}
            ]
        });
        let run = run_file(&body);
        assert_eq!(
            run.text,
            "reported_at: \"2026-11-27 06:00:00 UTC\"\n\
             status.applied: 2\n\
             status.failed: 0\n\
             status.restarted: 1\n\
             status.skipped: 0\n\
             resources:\n  \
             - \"/Stage[main]/Motd/File[/etc/motd]/content\": \"content changed '{md5}a' to '{md5}b'\"\n  \
             - \"/Stage[main]/Ntp/Service[ntp]\": \"err: Could not restart\"\n"
        );
        let parsed: serde_yaml::Mapping = serde_yaml::from_str(&run.text).expect("valid YAML");
        assert_eq!(parsed.len(), 6);
        assert_eq!((run.applied, run.restarted, run.failed), (2, 1, 0));
        assert_eq!(
            run_message(&run, 9),
            "run: applied 2, restarted 1, failed 0\n\n\
             /Stage[main]/Motd/File[/etc/motd]/content: content changed '{md5}a' to '{md5}b'\n\
             /Stage[main]/Ntp/Service[ntp]: err: Could not restart\n\nAudit-Event: 9\n"
        );
    }

    #[test]
    fn a_multi_line_log_message_is_one_line_in_the_commit_message() {
        let body = json!({"status": {"applied": 1}, "logs": [{"log": {"level": "notice",
            "sources": {"source": "/Stage[main]/X/Exec[y]/returns"},
            "messages": {"message": "line one\nAudit-Event: 99"}}}]});
        let run = run_file(&body);
        assert_eq!(
            run.resources,
            vec!["/Stage[main]/X/Exec[y]/returns: line one\\nAudit-Event: 99"]
        );
        assert!(
            run.text.contains("\"line one\\nAudit-Event: 99\"\n"),
            "{}",
            run.text
        );
        assert_eq!(event_of_message(&run_message(&run, 5)), Some(5));
    }

    #[test]
    fn a_run_without_logs_or_counts_still_renders() {
        let run = run_file(&json!({"reported_at": null, "status": {"applied": "x"}}));
        assert_eq!(
            run.text,
            "reported_at: null\nstatus.applied: \"x\"\nresources: []\n"
        );
        assert_eq!(run.applied, 0);
        assert_eq!(
            run_message(&run, 3),
            "run: applied 0, restarted 0, failed 0\n\nAudit-Event: 3\n"
        );
    }
}
