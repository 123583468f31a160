//! What each parameter that matters becomes in the `/host` answer: rollout
//! flags (`update_flag` → `FACTER_UPDATE_FLAG`, `<prefix><rest>` →
//! `FACTER_<REST>`), monitored files, check interval, pool. Pure.
//!
//! Puppet truthiness: every string, `"false"` and `""` included, is true in a
//! manifest, and Facter turns `FACTER_X=false` into the string fact
//! `"false"`. So a boolean flag is emitted only when true (as `true`) and
//! omitted when false; a manifest tests it with `$facts['x'] == 'true'` or
//! plain `if $facts['x']`. The ENC parameter of the same name (which beats a
//! same-named fact in Puppet's top scope) stays the authority: the flag only
//! mirrors it for code that runs outside a catalog or before it compiles.

use crate::answer::{AnswerKey, AnswerKeyError};
use crate::enc::model::KeyType;
use crate::enc::{cast, Value};

/// The parameter that sets the monitored files.
pub const FILES_MONITORED: &str = "pvc_files_monitored";
/// The parameter that sets the poll interval, in seconds.
pub const CHECK_INTERVAL: &str = "pvc_check_interval";
/// The parameter that sets the host's pool of puppetservers.
pub const SERVER_POOL: &str = "pvc_server_pool";
/// The rollout flag Foreman's rollout plugin sets by default.
pub const UPDATE_FLAG: &str = "update_flag";

/// The names read besides those with the flag prefix.
pub const NAMES: [&str; 4] = [UPDATE_FLAG, FILES_MONITORED, CHECK_INTERVAL, SERVER_POOL];

/// How flags are named and where a host without a pool goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagConfig {
    /// Parameters named `<prefix><rest>` become `FACTER_<REST>`.
    pub prefix: String,
    /// The pool of a host with neither `pvc_server_pool` nor a location.
    pub default_pool: String,
}

impl Default for FlagConfig {
    fn default() -> Self {
        FlagConfig {
            prefix: "pvc_facter_".to_owned(),
            default_pool: "default".to_owned(),
        }
    }
}

/// What a parameter name is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameKind {
    Flag(AnswerKey),
    FilesMonitored,
    CheckInterval,
    Pool,
    /// A flag name that makes no valid key: never emitted.
    BadKey(String),
}

/// The kind of a parameter name, `None` for a name that does not matter.
/// The three `pvc_*` settings are never flags, whatever the prefix.
pub fn classify_name(name: &str, prefix: &str) -> Option<NameKind> {
    match name {
        FILES_MONITORED => return Some(NameKind::FilesMonitored),
        CHECK_INTERVAL => return Some(NameKind::CheckInterval),
        SERVER_POOL => return Some(NameKind::Pool),
        UPDATE_FLAG => return Some(flag_key("UPDATE_FLAG")),
        _ => {}
    }
    let rest = name.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(NameKind::BadKey("nothing after the flag prefix".to_owned()));
    }
    // ASCII only: a non-ASCII letter stays itself and is refused below.
    Some(flag_key(&rest.to_ascii_uppercase()))
}

fn flag_key(rest: &str) -> NameKind {
    match AnswerKey::try_from(format!("FACTER_{rest}")) {
        Ok(key) => NameKind::Flag(key),
        Err(AnswerKeyError::BadChar(c)) => NameKind::BadKey(format!("contains {c:?}")),
        Err(error) => NameKind::BadKey(error.to_string()),
    }
}

/// A value that cannot go into the answer; the reason is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

fn bad(reason: impl Into<String>) -> BadValue {
    BadValue(reason.into())
}

/// A flag's value: `Some(text)` to emit, `None` to omit (false or nil).
pub fn flag_value(key_type: KeyType, value: &Value) -> Result<Option<String>, BadValue> {
    if key_type == KeyType::Boolean {
        // Foreman's own boolean cast (`yes`, `on`, `1` are true, too).
        return match cast::cast(KeyType::Boolean, value.clone()) {
            Ok(Value::Bool(true)) => Ok(Some("true".to_owned())),
            Ok(_) => Ok(None),
            Err(_) => Err(bad("not a boolean")),
        };
    }
    let text = match value {
        Value::Null | Value::Bool(false) => return Ok(None),
        Value::Bool(true) => "true".to_owned(),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => "true".to_owned(),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => return Ok(None),
        Value::Seq(_) | Value::Map(_) => compact_json(value)?,
        scalar => scalar.to_ruby_s().unwrap_or_default(),
    };
    if text.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    Ok(Some(text))
}

/// Arrays and hashes as compact JSON (key order kept).
fn compact_json(value: &Value) -> Result<String, BadValue> {
    serde_json::to_string(&to_json(value)?).map_err(|e| bad(e.to_string()))
}

fn to_json(value: &Value) -> Result<serde_json::Value, BadValue> {
    Ok(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| bad("a non-finite number has no JSON form"))?,
        Value::Str(s) | Value::Sym(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Map(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.to_owned(), to_json(v)?)))
                .collect::<Result<_, BadValue>>()?,
        ),
    })
}

/// Monitored files: an array of paths, or a string of paths separated by
/// spaces or commas. Returns the absolute paths (first occurrence of each)
/// and the entries refused: not absolute, or holding whitespace or a control
/// character (the agent gets them space-separated, so a path with a space
/// cannot be told apart from two paths).
pub fn files_monitored(value: &Value) -> Result<(Vec<String>, Vec<String>), BadValue> {
    let entries: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::Str(s) => s
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Seq(items) => items
            .iter()
            .map(|item| match item {
                Value::Str(s) => s.trim().to_owned(),
                other => other
                    .to_ruby_s()
                    .unwrap_or_else(|| "(a collection)".to_owned()),
            })
            .collect(),
        _ => return Err(bad("not a list of paths")),
    };
    let mut paths: Vec<String> = Vec::with_capacity(entries.len());
    let mut refused = Vec::new();
    for entry in entries {
        let usable =
            entry.starts_with('/') && !entry.chars().any(|c| c.is_whitespace() || c.is_control());
        if !usable {
            refused.push(entry);
        } else if !paths.contains(&entry) {
            paths.push(entry);
        }
    }
    Ok((paths, refused))
}

/// A poll interval: a positive whole number of seconds. `None` for nil.
pub fn check_interval(value: &Value) -> Result<Option<u32>, BadValue> {
    let refuse = || bad("not a positive whole number of seconds");
    let seconds = match value {
        Value::Null => return Ok(None),
        Value::Int(i) => u32::try_from(*i).map_err(|_| refuse())?,
        Value::Float(f) if f.fract() == 0.0 && *f >= 1.0 && *f <= f64::from(u32::MAX) => *f as u32,
        Value::Str(s) => s.trim().parse::<u32>().map_err(|_| refuse())?,
        _ => return Err(refuse()),
    };
    if seconds == 0 {
        return Err(refuse());
    }
    Ok(Some(seconds))
}

/// A pool name: a non-blank string (trimmed) or an integer. `None` for nil
/// or blank, which falls back to the location.
pub fn pool(value: &Value) -> Result<Option<String>, BadValue> {
    let name = match value {
        Value::Null => return Ok(None),
        Value::Str(s) => s.trim().to_owned(),
        Value::Int(i) => i.to_string(),
        _ => return Err(bad("not a pool name")),
    };
    if name.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok((!name.is_empty()).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enc::Map;

    fn key(s: &str) -> NameKind {
        NameKind::Flag(s.parse().unwrap())
    }

    #[test]
    fn names_become_facter_keys_or_are_refused() {
        let prefix = "pvc_facter_";
        assert_eq!(
            classify_name("update_flag", prefix),
            Some(key("FACTER_UPDATE_FLAG"))
        );
        assert_eq!(
            classify_name("pvc_facter_ok", prefix),
            Some(key("FACTER_OK"))
        );
        assert_eq!(
            classify_name("pvc_facter_Mixed_Case_9", prefix),
            Some(key("FACTER_MIXED_CASE_9"))
        );
        assert_eq!(
            classify_name("pvc_facter_9lives", prefix),
            Some(key("FACTER_9LIVES"))
        );
        for hostile in [
            "pvc_facter_a b",
            "pvc_facter_$(x)",
            "pvc_facter_a-b",
            "pvc_facter_a=b",
            "pvc_facter_ünï",
            "pvc_facter_a\nb",
            "pvc_facter_a'b",
            "pvc_facter_",
        ] {
            assert!(
                matches!(classify_name(hostile, prefix), Some(NameKind::BadKey(_))),
                "{hostile:?}"
            );
        }
        let long = format!("pvc_facter_{}", "x".repeat(122));
        assert!(matches!(
            classify_name(&long, prefix),
            Some(NameKind::BadKey(_))
        ));
        let longest = format!("pvc_facter_{}", "x".repeat(121));
        assert!(matches!(
            classify_name(&longest, prefix),
            Some(NameKind::Flag(_))
        ));
        // Not flags at all: other names, other spellings, case matters.
        for other in [
            "update-flag",
            "Update_Flag",
            "PVC_FACTER_x",
            "pvcXfacterYz",
            "motd",
        ] {
            assert_eq!(classify_name(other, prefix), None, "{other:?}");
        }
        assert_eq!(
            classify_name("pvc_files_monitored", "pvc_"),
            Some(NameKind::FilesMonitored),
            "the settings are never flags, even under a prefix that covers them"
        );
        assert_eq!(
            classify_name("pvc_check_interval", prefix),
            Some(NameKind::CheckInterval)
        );
        assert_eq!(
            classify_name("pvc_server_pool", prefix),
            Some(NameKind::Pool)
        );
        assert_eq!(
            classify_name("rollout_x", "rollout_"),
            Some(key("FACTER_X"))
        );
    }

    #[test]
    fn booleans_are_emitted_only_when_true() {
        let s = |v: &str| Value::str(v);
        let cases: Vec<(KeyType, Value, Option<&str>)> = vec![
            (KeyType::Boolean, Value::Bool(true), Some("true")),
            (KeyType::Boolean, Value::Bool(false), None),
            (KeyType::Boolean, s("yes"), Some("true")),
            (KeyType::Boolean, s("off"), None),
            (KeyType::Boolean, s(""), None),
            (KeyType::Boolean, Value::Null, None),
            (KeyType::String, s("true"), Some("true")),
            (KeyType::String, s("TRUE"), Some("true")),
            (KeyType::String, s("false"), None),
            (KeyType::String, s("False"), None),
            (KeyType::String, Value::Bool(false), None),
            (KeyType::String, Value::Bool(true), Some("true")),
            (KeyType::String, Value::Null, None),
            // Not booleans: emitted as they are.
            (KeyType::String, s("yes"), Some("yes")),
            (KeyType::String, s("0"), Some("0")),
            (KeyType::String, s(""), Some("")),
            (KeyType::String, s(" false"), Some(" false")),
            (KeyType::Integer, Value::Int(0), Some("0")),
            (KeyType::Real, Value::Float(2.5), Some("2.5")),
            (KeyType::Real, Value::Float(60.0), Some("60.0")),
        ];
        for (key_type, value, expected) in cases {
            assert_eq!(
                flag_value(key_type, &value),
                Ok(expected.map(str::to_owned)),
                "{key_type:?} {value:?}"
            );
        }
        assert!(flag_value(KeyType::Boolean, &s("maybe")).is_err());
        assert!(flag_value(KeyType::String, &s("a\0b")).is_err());
    }

    #[test]
    fn collections_are_compact_json() {
        let mut map = Map::new();
        map.insert("z", Value::Int(1));
        map.insert("a", Value::Seq(vec![Value::str("x'y"), Value::Null]));
        assert_eq!(
            flag_value(KeyType::Hash, &Value::Map(map)),
            Ok(Some(r#"{"z":1,"a":["x'y",null]}"#.to_owned()))
        );
        assert_eq!(
            flag_value(KeyType::Array, &Value::Seq(vec![Value::Bool(false)])),
            Ok(Some("[false]".to_owned()))
        );
        assert!(flag_value(KeyType::Array, &Value::Seq(vec![Value::Float(f64::NAN)])).is_err());
    }

    #[test]
    fn monitored_files_are_absolute_paths() {
        let (paths, refused) = files_monitored(&Value::str(
            " /etc/sudoers,/etc/passwd  /etc/sudoers\nrelative ,",
        ))
        .unwrap();
        assert_eq!(paths, ["/etc/sudoers", "/etc/passwd"]);
        assert_eq!(refused, ["relative"]);
        let (paths, refused) = files_monitored(&Value::Seq(vec![
            Value::str("/etc/a"),
            Value::str(" /etc/b "),
            Value::str("/etc/with space"),
            Value::Int(3),
            Value::str("/etc/tab\there"),
        ]))
        .unwrap();
        assert_eq!(paths, ["/etc/a", "/etc/b"]);
        assert_eq!(refused, ["/etc/with space", "3", "/etc/tab\there"]);
        assert_eq!(files_monitored(&Value::Null), Ok((vec![], vec![])));
        assert!(files_monitored(&Value::Int(1)).is_err());
    }

    #[test]
    fn check_interval_is_positive_seconds() {
        assert_eq!(check_interval(&Value::Int(60)), Ok(Some(60)));
        assert_eq!(check_interval(&Value::str(" 30 ")), Ok(Some(30)));
        assert_eq!(check_interval(&Value::Float(90.0)), Ok(Some(90)));
        assert_eq!(check_interval(&Value::Null), Ok(None));
        for bad in [
            Value::Int(0),
            Value::Int(-5),
            Value::Int(1 << 40),
            Value::str("1m"),
            Value::str("0"),
            Value::Float(1.5),
            Value::Bool(true),
        ] {
            assert!(check_interval(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pool_names_are_trimmed_and_blank_falls_back() {
        assert_eq!(pool(&Value::str(" dc1 ")), Ok(Some("dc1".to_owned())));
        assert_eq!(pool(&Value::Int(3)), Ok(Some("3".to_owned())));
        assert_eq!(pool(&Value::str("  ")), Ok(None));
        assert_eq!(pool(&Value::Null), Ok(None));
        assert!(pool(&Value::Seq(vec![])).is_err());
        assert!(pool(&Value::str("a\nb")).is_err());
    }
}
