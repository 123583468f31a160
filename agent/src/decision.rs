//! The bridge's `/host` answer (`Accept: application/json`: an object of
//! string values, the same keys as the shell form) → a typed decision.
//! Parsed strictly: nothing in it is ever evaluated.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

/// How a granted run compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A fresh catalog from the granted server.
    Full,
    /// The cached catalog (`--use_cached_catalog`): no server had room, or
    /// none is reachable.
    CachedCatalog,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Full => "full",
            RunMode::CachedCatalog => "cached_catalog",
        }
    }
}

/// A granted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunGrant {
    /// The lease's id, sent back with the report.
    pub run_id: Option<String>,
    pub mode: RunMode,
    /// `schedule`, `file_change`, `converge`, …: sent back with the report.
    pub trigger: String,
    /// `PVC_PUPPET_MASTER`: the server to compile on (`--server`).
    pub server: Option<String>,
}

/// The agent protocol this agent speaks: sent with every request
/// ([`PROTOCOL_HEADER`]); the bridge answers with its own in
/// `PVC_PROTOCOL` (docs/upgrading.md).
pub const PROTOCOL: u32 = 1;

/// The request header carrying [`PROTOCOL`].
pub const PROTOCOL_HEADER: &str = "x-pvc-protocol";

/// What the bridge decided for this poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `PVC_RETURN`: 0, or the bridge's error code (then `error` says why
    /// and nothing is granted).
    pub code: u32,
    /// `PVC_PROTOCOL`: the bridge's protocol version; `None` from a bridge
    /// that predates it.
    pub protocol: Option<u32>,
    pub run: Option<RunGrant>,
    /// `PVC_FACT_RUN`: upload facts now.
    pub fact_run: bool,
    /// `PVC_CHECK_INTERVAL`: when to ask again.
    pub check_interval: Duration,
    /// `PVC_FILES_MONITORED`, split on whitespace.
    pub files_monitored: Vec<PathBuf>,
    /// `FACTER_*` keys (rollout flags), in the answer's order, for the
    /// Puppet run's environment.
    pub facter_env: Vec<(String, String)>,
    /// `PVC_REASON`.
    pub reason: Option<String>,
    /// `PVC_ERROR`.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionError {
    #[error("the answer is not a JSON object of strings: {0}")]
    Json(String),
    #[error("{key} is missing")]
    Missing { key: &'static str },
    #[error("{key}={value:?} is not {expected}")]
    Bad {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Longest check interval taken from an answer: a bridge bug must not put
/// a node to sleep for days.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Parses the JSON form of a `/host` answer.
pub fn parse(body: &[u8]) -> Result<Decision, DecisionError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DecisionError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(DecisionError::Json("not an object".into()));
    };
    from_map(&map)
}

fn text<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, DecisionError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(DecisionError::Bad {
            key,
            value: other.to_string(),
            expected: "a string",
        }),
    }
}

fn flag(map: &Map<String, Value>, key: &'static str) -> Result<bool, DecisionError> {
    match text(map, key)? {
        None | Some("0") | Some("") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(DecisionError::Bad {
            key,
            value: other.into(),
            expected: "0 or 1",
        }),
    }
}

fn from_map(map: &Map<String, Value>) -> Result<Decision, DecisionError> {
    let code_text = text(map, "PVC_RETURN")?.ok_or(DecisionError::Missing { key: "PVC_RETURN" })?;
    let code: u32 = code_text.parse().map_err(|_| DecisionError::Bad {
        key: "PVC_RETURN",
        value: code_text.into(),
        expected: "a number",
    })?;
    let protocol = match text(map, "PVC_PROTOCOL")? {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| DecisionError::Bad {
            key: "PVC_PROTOCOL",
            value: v.into(),
            expected: "a version number",
        })?),
    };
    let interval_text = text(map, "PVC_CHECK_INTERVAL")?.unwrap_or("60");
    let secs: u64 = interval_text.parse().map_err(|_| DecisionError::Bad {
        key: "PVC_CHECK_INTERVAL",
        value: interval_text.into(),
        expected: "a whole number of seconds",
    })?;
    let check_interval = Duration::from_secs(secs.max(1)).min(MAX_CHECK_INTERVAL);
    let run = if code == 0 && flag(map, "PVC_RUN")? {
        let mode = match text(map, "PVC_RUN_MODE")?.unwrap_or("full") {
            "full" => RunMode::Full,
            "cached_catalog" => RunMode::CachedCatalog,
            other => {
                return Err(DecisionError::Bad {
                    key: "PVC_RUN_MODE",
                    value: other.into(),
                    expected: "full or cached_catalog",
                })
            }
        };
        Some(RunGrant {
            run_id: text(map, "PVC_RUN_ID")?
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            mode,
            trigger: text(map, "PVC_RUN_TRIGGER")?
                .unwrap_or("schedule")
                .to_owned(),
            server: text(map, "PVC_PUPPET_MASTER")?
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        })
    } else {
        None
    };
    let files_monitored = text(map, "PVC_FILES_MONITORED")?
        .unwrap_or("")
        .split_whitespace()
        .map(PathBuf::from)
        .collect();
    let mut facter_env = Vec::new();
    for (key, value) in map {
        if let Some(name) = key.strip_prefix("FACTER_") {
            let Value::String(value) = value else {
                return Err(DecisionError::Json(format!("{key} is not a string")));
            };
            if !name.is_empty() {
                facter_env.push((key.clone(), value.clone()));
            }
        }
    }
    Ok(Decision {
        code,
        protocol,
        run,
        fact_run: code == 0 && flag(map, "PVC_FACT_RUN")?,
        check_interval,
        files_monitored,
        facter_env,
        reason: text(map, "PVC_REASON")?.map(str::to_owned),
        error: text(map, "PVC_ERROR")?.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_with_flags() {
        let body = br#"{"PVC_RETURN":"0","PVC_RUN":"1","PVC_RUN_ID":"0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f40",
            "PVC_RUN_MODE":"full","PVC_RUN_TRIGGER":"file_change","PVC_PUPPET_MASTER":"ps1.example.com",
            "PVC_FACT_RUN":"0","PVC_CHECK_INTERVAL":"30","PVC_FILES_MONITORED":"/etc/sudoers /etc/ssh/sshd_config",
            "PVC_REASON":"file_change","FACTER_UPDATE_FLAG":"true","FACTER_X":"a'b"}"#;
        let d = parse(body).expect("valid");
        assert_eq!(d.code, 0);
        assert_eq!(
            d.run,
            Some(RunGrant {
                run_id: Some("0e6b1a36-1c4c-4f2b-9a57-3f0c1d2e3f40".into()),
                mode: RunMode::Full,
                trigger: "file_change".into(),
                server: Some("ps1.example.com".into()),
            })
        );
        assert_eq!(d.check_interval, Duration::from_secs(30));
        assert_eq!(
            d.files_monitored,
            vec![
                PathBuf::from("/etc/sudoers"),
                PathBuf::from("/etc/ssh/sshd_config")
            ]
        );
        assert_eq!(
            d.facter_env,
            vec![
                ("FACTER_UPDATE_FLAG".into(), "true".into()),
                ("FACTER_X".into(), "a'b".into())
            ]
        );
    }

    #[test]
    fn the_bridges_protocol_version_is_read_when_given() {
        let version = |body: &[u8]| parse(body).map(|d| d.protocol);
        assert_eq!(version(br#"{"PVC_RETURN":"0"}"#), Ok(None));
        assert_eq!(
            version(br#"{"PVC_RETURN":"0","PVC_PROTOCOL":"1"}"#),
            Ok(Some(1))
        );
        assert_eq!(
            version(br#"{"PVC_RETURN":"0","PVC_PROTOCOL":"7"}"#),
            Ok(Some(7))
        );
        assert!(matches!(
            version(br#"{"PVC_RETURN":"0","PVC_PROTOCOL":"v1"}"#),
            Err(DecisionError::Bad {
                key: "PVC_PROTOCOL",
                ..
            })
        ));
    }

    #[test]
    fn an_error_grants_nothing_and_bad_values_are_refused() {
        let d = parse(br#"{"PVC_RETURN":"2","PVC_RUN":"1","PVC_CHECK_INTERVAL":"99999","PVC_ERROR":"unknown host"}"#)
            .expect("valid");
        assert_eq!(d.run, None);
        assert_eq!(d.check_interval, MAX_CHECK_INTERVAL);
        assert_eq!(d.error.as_deref(), Some("unknown host"));
        assert_eq!(
            parse(br#"{"PVC_RUN":"1"}"#),
            Err(DecisionError::Missing { key: "PVC_RETURN" })
        );
        assert!(matches!(
            parse(br#"{"PVC_RETURN":"0","PVC_RUN":"yes"}"#),
            Err(DecisionError::Bad { key: "PVC_RUN", .. })
        ));
        assert!(matches!(
            parse(br#"{"PVC_RETURN":"0","PVC_RUN":"1","PVC_RUN_MODE":"rm -rf"}"#),
            Err(DecisionError::Bad {
                key: "PVC_RUN_MODE",
                ..
            })
        ));
        assert!(matches!(
            parse(b"PVC_RETURN='0'"),
            Err(DecisionError::Json(_))
        ));
    }
}
