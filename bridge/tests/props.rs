//! Property tests of the `/host` answer: any Foreman parameter name and
//! value (typed by `key_type`, stored as Foreman stores it) is either
//! emitted under a valid key or skipped; every emitted answer, `eval`ed by a
//! real dash and bash, gives back exactly its values and runs nothing; its
//! JSON form, and the agent's strict parser reading it, give the same pairs.
//! The shell form leaves out values with glob characters, so even the
//! original agent's unquoted `eval $r` runs nothing; the JSON form carries
//! every pair.
//!
//! The path is the product's own: stored text → `decode_yaml_column` (as
//! `store::host_params` reads a row) → `hosts::resolve::resolve` (Foreman's
//! precedence, naming, values) → `runs::render` / `runs::refusal` → the
//! answer's shell and JSON renderings. Each case is a small fleet, so one
//! shell process evaluates many answers.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRunner};

use pvc_agent::decision as agent;
use pvc_bridge::answer::{Answer, AnswerKey, MAX_KEY_LEN};
use pvc_bridge::enc::model::KeyType;
use pvc_bridge::enc::{Map, Value};
use pvc_bridge::hosts::resolve;
use pvc_bridge::hosts::rows::{FleetRows, HostRow, Level, ParamRow};
use pvc_bridge::hosts::{FlagConfig, HostInfo};
use pvc_bridge::runs::{self, PollAnswer};
use pvc_bridge::schedule::{Decision, Grant, Reason, RunMode, Trigger};
use pvc_bridge::store::foreman::decode_yaml_column;

/// The flag prefix of these tests (the default).
const PREFIX: &str = "pvc_facter_";

/// What a value tries to create when a shell runs any part of it: relative,
/// so it would land in the shell's working directory, which is checked.
const CANARY: &str = "pwned";

/// Fixed case counts (not the environment's), failures not persisted: a
/// failure prints its shrunk input.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        // Randomness for test inputs, not cryptography: the cheap generator.
        rng_algorithm: RngAlgorithm::XorShift,
        ..RunnerConfig::default()
    })
}

// ---- strategies -------------------------------------------------------

/// Pieces that mean something to a shell, to YAML, to Foreman or to a
/// terminal, and text that only looks like broken UTF-8.
const FRAGMENTS: &[&str] = &[
    "'",
    "''",
    "'\\''",
    "\"",
    "\\",
    "\\'",
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    "'$(touch pwned)'",
    "\"; touch pwned; \"",
    "\ntouch pwned\n",
    "'\ntouch pwned\n'",
    "> pwned",
    "$HOME",
    "${X}",
    "${X:-$(touch pwned)}",
    "$((1+1))",
    "$'\\n'",
    "$$",
    "$1",
    "$@",
    "\0",
    "\n",
    "\r\n",
    "\t",
    " ",
    "*",
    "?",
    "[a]",
    "~",
    "!",
    "#",
    "=",
    ";",
    "&",
    "|",
    "<<EOF\n",
    "-n",
    "-e",
    "%s",
    "%n",
    "ü",
    "☃",
    "中文",
    "🦀",
    "\u{feff}",
    "\u{202e}",
    "\u{fffd}",
    "\u{85}",
    "\u{2028}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{10ffff}",
    "\u{ffff}",
    "\\xff\\xfe",
    "\\u0000",
    "\\ud800",
    "Ã©",
    "true",
    "TRUE",
    "false",
    "yes",
    "on",
    "1",
    "0",
    "---",
    "--- ",
    "--- x\n",
    "--- !ruby/object:Foo {}\n",
    "--- [1, 2\n",
    "{a: 1}",
    "[1, 2]",
    "<%= @host.name %>",
    "<%",
    "null",
    ":sym",
    "&anchor",
    "*alias",
    "/etc/sudoers",
    "/etc/a b",
    ",",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        4 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
        1 => "[a-z /]{0,8}",
    ]
}

/// Any text, weighted towards hostile pieces; sometimes long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(fragment(), 0..6).prop_map(|parts| parts.concat()),
        1 => (1usize..2000, fragment()).prop_map(|(n, part)| part.repeat(n.min(4096 / (part.len() + 1)))),
    ]
}

/// Names that are settings, near misses, or collide after upper-casing.
const SPECIAL_NAMES: &[&str] = &[
    "update_flag",
    "pvc_facter_update_flag",
    "pvc_files_monitored",
    "pvc_check_interval",
    "pvc_server_pool",
    "pvc_facter_",
    "PVC_FACTER_X",
    "Update_Flag",
    "pvc_facter",
];

const FLOATS: &[f64] = &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 60.0, 0.5, -0.0];

/// Parameter names: the settings, flag names (valid, case variants that
/// collide, hostile, too long), and anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(SPECIAL_NAMES).prop_map(str::to_owned),
        4 => "[a-zA-Z0-9_]{1,10}".prop_map(|rest| format!("{PREFIX}{rest}")),
        2 => "[aAbB_]{1,2}".prop_map(|rest| format!("{PREFIX}{rest}")),
        3 => fragment().prop_map(|rest| format!("{PREFIX}{rest}")),
        1 => (115usize..125).prop_map(|n| format!("{PREFIX}{}", "x".repeat(n))),
        2 => any::<String>(),
        1 => text(),
    ]
}

/// Values as Psych holds them: scalars of every kind, non-finite floats,
/// nested arrays and hashes of hostile strings.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        prop::sample::select(FLOATS).prop_map(Value::Float),
        text().prop_map(Value::Str),
        "[a-z_]{1,6}".prop_map(Value::Sym),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Seq),
            prop::collection::vec((text(), inner), 0..5).prop_map(|pairs| {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k, v);
                }
                Value::Map(map)
            }),
        ]
    })
}

const KEY_TYPES: &[&str] = &[
    "string", "boolean", "integer", "real", "array", "hash", "yaml", "json", "bogus",
];

/// One `parameters` row as stored: the `value` column's text (NULL, plain
/// text as older Foremen wrote it, or Psych's YAML) and `key_type`.
#[derive(Debug, Clone)]
struct StoredParam {
    name: String,
    key_type: Option<String>,
    text: Option<String>,
    /// The value dumped into `text`, when it was dumped.
    typed: Option<Value>,
}

fn key_type_for(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "real",
        Value::Seq(_) => "array",
        Value::Map(_) => "hash",
        _ => "string",
    }
}

fn stored_param() -> impl Strategy<Value = StoredParam> {
    let key_type = prop::option::of(prop::sample::select(KEY_TYPES).prop_map(str::to_owned));
    prop_oneof![
        // Plain text, `key_type` string or NULL: the common case.
        4 => (name(), prop::option::of(Just("string".to_owned())), text()).prop_map(
            |(name, key_type, text)| StoredParam { name, key_type, text: Some(text), typed: None }
        ),
        // Psych's YAML with the key_type Foreman gives the value's class.
        3 => (name(), value()).prop_map(|(name, value)| StoredParam {
            name,
            key_type: Some(key_type_for(&value).to_owned()),
            text: Some(pvc_psych::dump(&value)),
            typed: Some(value),
        }),
        // Any text or value under any key_type (or none), and NULL.
        2 => (name(), key_type.clone(), prop::option::of(text())).prop_map(
            |(name, key_type, text)| StoredParam { name, key_type, text, typed: None }
        ),
        1 => (name(), key_type, value()).prop_map(|(name, key_type, value)| StoredParam {
            name,
            key_type,
            text: Some(pvc_psych::dump(&value)),
            typed: Some(value),
        }),
    ]
}

/// What the scheduler decided for one poll (everything an answer shows).
#[derive(Debug, Clone)]
struct PollSpec {
    /// Server, cached catalog, trigger (0..3).
    run: Option<(String, bool, u8)>,
    run_id: Option<String>,
    fact_run: bool,
    check_interval: u32,
    reason: (u8, f64, u64),
}

fn poll_spec() -> impl Strategy<Value = PollSpec> {
    (
        prop::option::of((text(), any::<bool>(), 0u8..3)),
        prop::option::of(text()),
        any::<bool>(),
        any::<u32>(),
        (0u8..7, any::<f64>(), any::<u64>()),
    )
        .prop_map(|(run, run_id, fact_run, check_interval, reason)| PollSpec {
            run,
            run_id,
            fact_run,
            check_interval,
            reason,
        })
}

#[derive(Debug, Clone)]
struct HostCase {
    params: Vec<StoredParam>,
    poll: PollSpec,
}

/// A small fleet: global parameters, hosts with their own, one refusal.
#[derive(Debug, Clone)]
struct Fleet {
    global: Vec<StoredParam>,
    hosts: Vec<HostCase>,
    refusal: (u8, String, u32),
}

fn fleet() -> impl Strategy<Value = Fleet> {
    let host = (prop::collection::vec(stored_param(), 0..10), poll_spec())
        .prop_map(|(params, poll)| HostCase { params, poll });
    (
        prop::collection::vec(stored_param(), 0..4),
        prop::collection::vec(host, 1..5),
        (any::<u8>(), text(), any::<u32>()),
    )
        .prop_map(|(global, hosts, refusal)| Fleet {
            global,
            hosts,
            refusal,
        })
}

// ---- the product's path -------------------------------------------------

/// A row as `store::host_params` makes it from the columns.
fn row(level: Level, owner: Option<i64>, param: &StoredParam) -> ParamRow {
    ParamRow {
        level,
        reference_id: owner,
        name: param.name.clone(),
        key_type: KeyType::parse(param.key_type.as_deref()),
        value: decode_yaml_column(param.text.as_deref(), &param.name).map_err(|e| e.to_string()),
    }
}

fn host_id(ix: usize) -> i64 {
    ix as i64 + 1
}

fn rows(fleet: &Fleet) -> FleetRows {
    let mut params: Vec<ParamRow> = fleet
        .global
        .iter()
        .map(|p| row(Level::Global, None, p))
        .collect();
    let mut hosts = Vec::new();
    for (ix, host) in fleet.hosts.iter().enumerate() {
        let id = host_id(ix);
        hosts.push(HostRow {
            id,
            name: format!("host{id}.example.com"),
            ..HostRow::default()
        });
        params.extend(host.params.iter().map(|p| row(Level::Host, Some(id), p)));
    }
    FleetRows {
        hosts,
        params,
        taxonomies: Vec::new(),
        hostgroups: Vec::new(),
    }
}

fn decision(spec: &PollSpec) -> Decision {
    let (reason_kind, in_secs, id) = spec.reason;
    let reason = match reason_kind {
        0 => Reason::Due,
        1 => Reason::ForcedRun,
        2 => Reason::Converge { id },
        3 => Reason::NotDue { in_secs },
        4 => Reason::NoCapacity,
        5 => Reason::RunInProgress,
        _ => Reason::NoServer,
    };
    Decision {
        run: spec.run.as_ref().map(|(server, cached, trigger)| Grant {
            server: Arc::from(server.as_str()),
            mode: if *cached {
                RunMode::CachedCatalog
            } else {
                RunMode::Full
            },
            trigger: match trigger {
                0 => Trigger::Schedule,
                1 => Trigger::FileChange,
                _ => Trigger::Converge,
            },
            rate: 1.0,
            burst: 1.0,
            overdraft: false,
        }),
        fact_run: spec.fact_run,
        check_interval: spec.check_interval,
        reason,
        over_forced_budget: false,
    }
}

// ---- the oracle -------------------------------------------------------

/// `[A-Z_][A-Z0-9_]*`, 1..=128 bytes: a plain shell variable name.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_KEY_LEN
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        && ["PVC_", "FACTER_"]
            .iter()
            .any(|p| key.len() > p.len() && key.starts_with(p))
}

/// A value the shell form carries: no glob character.
fn shell_safe(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// The pairs the shell form must carry: every pair but those whose value
/// holds a glob character.
fn shell_only(pairs: Pairs) -> Pairs {
    pairs.into_iter().filter(|(_, v)| shell_safe(v)).collect()
}

/// The flag key a name must give, from the documented rule: `update_flag`,
/// or the prefix followed by something whose ASCII upper case makes a valid
/// `FACTER_` key. `None`: never a flag (not one, or a refused one).
fn expected_key(name: &str) -> Option<String> {
    if name == "update_flag" {
        return Some("FACTER_UPDATE_FLAG".to_owned());
    }
    if [
        "pvc_files_monitored",
        "pvc_check_interval",
        "pvc_server_pool",
    ]
    .contains(&name)
    {
        return None;
    }
    let rest = name.strip_prefix(PREFIX).filter(|rest| !rest.is_empty())?;
    let key = format!("FACTER_{}", rest.to_ascii_uppercase());
    is_valid_key(&key).then_some(key)
}

/// The winning row of each name on one host (the host's own beats a global
/// one; the last row of a level wins), in first-seen order.
fn winners<'a>(fleet: &'a Fleet, host: &'a HostCase) -> Vec<&'a StoredParam> {
    let mut out: Vec<&StoredParam> = Vec::new();
    for param in fleet.global.iter().chain(&host.params) {
        match out.iter_mut().find(|p| p.name == param.name) {
            Some(slot) => *slot = param,
            None => out.push(param),
        }
    }
    out
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(message()))
    }
}

/// Property 1 on one resolved host: every flag has a valid key a winning
/// name gives (no other winning name giving it), no NUL, and a plain string
/// comes through exactly (or as the boolean rule says).
fn check_flags(fleet: &Fleet, case: &HostCase, info: &HostInfo) -> Result<(), TestCaseError> {
    let winners = winners(fleet, case);
    let keyed: Vec<(String, &StoredParam)> = winners
        .iter()
        .filter_map(|p| expected_key(&p.name).map(|k| (k, *p)))
        .collect();
    let unique = |key: &str| keyed.iter().filter(|(k, _)| k == key).count() == 1;
    let mut seen = BTreeSet::new();
    for (key, value) in &info.flags {
        let key = key.as_str();
        check(is_valid_key(key) && key.starts_with("FACTER_"), || {
            format!("invalid flag key {key:?}")
        })?;
        check(seen.insert(key.to_owned()), || format!("{key} twice"))?;
        check(unique(key), || {
            format!("{key} emitted, but no single winning name gives it")
        })?;
        check(!value.contains('\0'), || format!("{key}: NUL in {value:?}"))?;
        let (_, param) = keyed.iter().find(|(k, _)| k == key).expect("unique");
        if let Some(Value::Seq(_) | Value::Map(_)) = &param.typed {
            if matches!(param.key_type.as_deref(), Some("array" | "hash")) {
                check(
                    serde_json::from_str::<serde_json::Value>(value).is_ok(),
                    || format!("{key}: a collection emitted as {value:?}, not JSON"),
                )?;
            }
        }
    }
    for (key, param) in &keyed {
        let emitted = info
            .flags
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str());
        let plain = match (&param.text, param.key_type.as_deref()) {
            (None, _) => {
                check(emitted.is_none(), || format!("{key}: NULL emitted"))?;
                continue;
            }
            (Some(text), None | Some("string" | "bogus")) if !text.starts_with("---") => text,
            _ => continue, // typed: emitted or skipped, checked above
        };
        if !unique(key) || plain.contains('\0') || plain.contains("<%") {
            continue; // a conflict, a NUL, ERB: skipped (checked above when not)
        }
        let expected = if plain.eq_ignore_ascii_case("false") {
            None
        } else if plain.eq_ignore_ascii_case("true") {
            Some("true")
        } else {
            Some(plain.as_str())
        };
        check(emitted == expected, || {
            format!(
                "{key} from {:?}: {emitted:?}, expected {expected:?}",
                param.name
            )
        })?;
    }
    // Monitored files: absolute, one word each, at most once.
    let mut files = BTreeSet::new();
    for path in &info.files_monitored {
        check(
            path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()),
            || format!("monitored file {path:?}"),
        )?;
        check(files.insert(path), || format!("{path:?} twice"))?;
    }
    Ok(())
}

/// An answer's keys with their values' bytes, in order.
type Pairs = Vec<(String, Vec<u8>)>;

// ---- real shells --------------------------------------------------------

/// A shell and how it evaluates an answer.
#[derive(Debug, Clone, Copy)]
struct Shell {
    path: &'static str,
    locale: &'static str,
    /// The original agent's `r=`curl …`; eval $r`: unquoted, so the text is
    /// split on blanks and each field glob-expanded before `eval` joins them
    /// with single spaces. Otherwise `eval "$(cat file)"`.
    legacy: bool,
}

/// The shells an agent may `eval` with: the system's `/bin/sh` (dash on
/// Debian) in the C locale, and bash in a UTF-8 one.
const SHELLS: &[Shell] = &[
    Shell {
        path: "/bin/sh",
        locale: "C",
        legacy: false,
    },
    Shell {
        path: "bash",
        locale: "C.UTF-8",
        legacy: false,
    },
];

/// The original agent (a bash script).
const LEGACY: Shell = Shell {
    path: "bash",
    locale: "C.UTF-8",
    legacy: true,
};

/// Writes each answer's shell form to a file in `dir` and has `shell`
/// evaluate them all, each in its own subshell (`set -u; eval "$(cat
/// file)"`), printing every key's value NUL-terminated, then `end`. Returns
/// the pairs read back per answer. The exit status, stderr, the exact
/// stdout and the directory's contents are all checked: a value that runs
/// anything fails it.
fn eval_answers(sh: Shell, dir: &Path, answers: &[Answer]) -> Result<Vec<Pairs>, TestCaseError> {
    let shell = sh.path;
    let mut driver = String::new();
    for (ix, answer) in answers.iter().enumerate() {
        let file = format!("answer{ix}");
        std::fs::write(dir.join(&file), answer.to_shell()).expect("answer file");
        let eval = if sh.legacy {
            format!("r=$(cat {file}) || exit 96; eval $r")
        } else {
            // bash reads the file itself (`$(< file)`, its faster
            // equivalent of `$(cat file)`); dash runs cat.
            let read = if sh.path == "bash" { "<" } else { "cat " };
            format!("eval \"$({read}{file})\"")
        };
        // printf with no argument would still print its format once.
        let print = if answer.shell_pairs().next().is_some() {
            "printf '%s\\000'"
        } else {
            ":"
        };
        driver.push_str(&format!("( set -u; {eval} || exit 97; {print}"));
        for (key, _) in answer.shell_pairs() {
            // Keys are checked variable names: safe to splice.
            driver.push_str(&format!(" \"${key}\""));
        }
        driver.push_str(" ) || exit 98\nprintf 'end\\000'\n");
    }
    let listing = || -> BTreeSet<PathBuf> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .map(|entry| entry.expect("entry").path())
            .collect()
    };
    let files = listing();
    let mut child = Command::new(shell)
        .arg("-s")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", sh.locale)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shell}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(driver.as_bytes())
        .expect("driver");
    let output = child.wait_with_output().expect("shell output");
    check(output.status.success(), || {
        format!(
            "{shell}: {} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    check(output.stderr.is_empty(), || {
        format!("{shell} said: {}", String::from_utf8_lossy(&output.stderr))
    })?;
    let left = listing();
    check(left == files, || {
        format!(
            "{shell} created files: {:?}",
            left.difference(&files).collect::<Vec<_>>()
        )
    })?;
    check(!dir.join(CANARY).exists(), || {
        format!("{shell} ran a command")
    })?;

    // stdout is exactly the values, NUL-terminated, `end` after each answer.
    let mut fields = output.stdout.split(|b| *b == 0);
    let mut read = Vec::new();
    for answer in answers {
        let mut pairs = Vec::new();
        for (key, _) in answer.shell_pairs() {
            let value = fields
                .next()
                .ok_or_else(|| TestCaseError::fail(format!("{shell}: output ends before {key}")))?;
            pairs.push((key.as_str().to_owned(), value.to_vec()));
        }
        check(fields.next() == Some(b"end"), || {
            format!("{shell}: more output than the values")
        })?;
        read.push(pairs);
    }
    check(fields.next() == Some(b""), || {
        format!("{shell}: trailing output")
    })?;
    check(fields.next().is_none(), || {
        format!("{shell}: trailing output")
    })?;
    Ok(read)
}

/// The answer's pairs as bytes.
fn pairs(answer: &Answer) -> Pairs {
    answer
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Property 3: the JSON rendering parses back (order kept) to the pairs the
/// shells read.
fn json_pairs(answer: &Answer) -> Result<Pairs, TestCaseError> {
    let text = serde_json::to_string(&answer.to_json()).expect("JSON");
    let back: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("JSON: {e}")))?;
    back.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s.into_bytes())),
            other => Err(TestCaseError::fail(format!("{k}: {other} is not a string"))),
        })
        .collect()
}

/// What the agent must read from a granted or refused poll.
fn check_agent(
    answer: &Answer,
    poll: Option<(&PollSpec, &HostInfo)>,
    refusal: Option<&(u8, String, u32)>,
) -> Result<(), TestCaseError> {
    let body = serde_json::to_vec(&answer.to_json()).expect("JSON");
    let decision = agent::parse(&body)
        .map_err(|e| TestCaseError::fail(format!("the agent refused the answer: {e}")))?;
    let interval =
        |secs: u32| Duration::from_secs(u64::from(secs).max(1)).min(Duration::from_secs(3600));
    let facter: Vec<(String, String)> = answer
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("FACTER_"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_owned()))
        .collect();
    check(decision.facter_env == facter, || {
        format!(
            "agent FACTER_ pairs {:?} != {facter:?}",
            decision.facter_env
        )
    })?;
    if let Some((spec, info)) = poll {
        // Empty means "none"; a NUL drops the pair (the shell cannot hold it).
        let holdable = |s: &String| !s.is_empty() && !s.contains('\0');
        let expected_run = spec
            .run
            .as_ref()
            .map(|(server, cached, trigger)| agent::RunGrant {
                run_id: spec.run_id.clone().filter(holdable),
                mode: if *cached {
                    agent::RunMode::CachedCatalog
                } else {
                    agent::RunMode::Full
                },
                trigger: ["schedule", "file_change", "converge"][usize::from(*trigger).min(2)]
                    .to_owned(),
                server: Some(server.clone()).filter(holdable),
            });
        let files: Vec<PathBuf> = info.files_monitored.iter().map(PathBuf::from).collect();
        let flags: Vec<(String, String)> = info
            .flags
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        check(
            decision.code == 0
                && decision.run == expected_run
                && decision.fact_run == spec.fact_run
                && decision.check_interval == interval(spec.check_interval)
                && decision.files_monitored == files
                && decision.facter_env == flags
                && decision.reason.as_deref() == answer.get("PVC_REASON")
                && decision.error.is_none(),
            || format!("agent read {decision:?} from {spec:?}"),
        )?;
    }
    if let Some((code, message, secs)) = refusal {
        check(
            decision.code == u32::from(*code)
                && decision.run.is_none()
                && !decision.fact_run
                && decision.check_interval == interval(*secs)
                && decision.error.as_deref() == answer.get("PVC_ERROR"),
            || format!("agent read {decision:?} from refusal {code} {message:?}"),
        )?;
    }
    Ok(())
}

/// Empties `dir` but for [`DECOY`]: what a glob in a value would expand to.
fn refill(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("scratch") {
        std::fs::remove_file(entry.expect("entry").path()).expect("clean");
    }
    std::fs::write(dir.join(DECOY), "").expect("decoy");
}

/// A fresh directory for one test's shells.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvc-props-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

// ---- the properties -----------------------------------------------------

/// Property 1: an answer key is accepted exactly when it is a plain shell
/// variable name of at most 128 bytes.
#[test]
fn any_string_is_a_key_exactly_when_it_is_a_plain_variable_name() {
    let strategy = prop_oneof![any::<String>(), name(), "[A-Z_][A-Z0-9_]{0,130}", text()];
    runner(1024)
        .run(&strategy, |s| {
            let parsed = s.parse::<AnswerKey>();
            check(parsed.is_ok() == is_valid_key(&s), || {
                format!("{s:?}: {parsed:?}")
            })?;
            if let Ok(key) = parsed {
                check(key.as_str() == s, || format!("{s:?} became {key}"))?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Properties 1–3 on a fleet per case: parameters resolved by the product's
/// code are emitted under valid keys or skipped; every answer (one per host
/// and a refusal) evaluated by dash and bash gives back exactly its values
/// and runs nothing; the JSON form and the agent's parser agree with it.
#[test]
fn any_parameter_is_emitted_safely_or_skipped_and_reads_back_the_same_everywhere() {
    let dir = scratch("fleet");
    let config = FlagConfig::default();
    assert_eq!(config.prefix, PREFIX);
    runner(256)
        .run(&fleet(), |fleet| {
            refill(&dir);
            let resolved = resolve::resolve(&rows(&fleet), &config);
            check(resolved.hosts.len() == fleet.hosts.len(), || {
                format!("{} hosts resolved", resolved.hosts.len())
            })?;
            let mut answers = Vec::new();
            for ((info, _), case) in resolved.hosts.into_iter().zip(&fleet.hosts) {
                check_flags(&fleet, case, &info)?;
                let info = Arc::new(info);
                let answer = runs::render(&PollAnswer {
                    decision: decision(&case.poll),
                    run_id: case.poll.run_id.clone(),
                    info: Arc::clone(&info),
                    check_interval: case.poll.check_interval,
                });
                check_agent(&answer, Some((&case.poll, &info)), None)?;
                answers.push(answer);
            }
            let (code, message, secs) = &fleet.refusal;
            let refusal = runs::refusal(*code, message, *secs);
            check_agent(&refusal, None, Some(&fleet.refusal))?;
            answers.push(refusal);

            for answer in &answers {
                for (key, value) in answer.iter() {
                    check(is_valid_key(key.as_str()), || format!("key {key:?}"))?;
                    check(!value.contains('\0'), || format!("{key}: NUL emitted"))?;
                }
                check(json_pairs(answer)? == pairs(answer), || {
                    "JSON pairs differ from the answer's".to_owned()
                })?;
            }
            for &shell in SHELLS {
                let read = eval_answers(shell, &dir, &answers)?;
                for (answer, got) in answers.iter().zip(&read) {
                    let expected = shell_only(pairs(answer));
                    check(*got == expected, || {
                        format!("{}: values changed\n{got:?}\n{expected:?}", shell.path)
                    })?;
                    check(shell_only(json_pairs(answer)?) == *got, || {
                        format!("{}: JSON and shell disagree", shell.path)
                    })?;
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).expect("remove scratch");
}

/// Property 2 on values alone, any string under keys of the answer's two
/// namespaces (`PVC_*`, `FACTER_*`; a bare valid key may name a variable
/// the shell itself sets, as bash does `$_`): a value the shell can hold (no
/// NUL) is pushed and comes back byte for byte; one with a NUL is refused
/// and leaves the answer as it was.
#[test]
fn any_value_pushed_reads_back_byte_for_byte_or_is_refused() {
    let dir = scratch("values");
    let key = "(PVC|FACTER)_[A-Z0-9_]{1,20}".prop_map(|k| k.parse::<AnswerKey>().expect("valid"));
    let strategy = prop::collection::vec((key, prop_oneof![text(), any::<String>()]), 1..40);
    runner(256)
        .run(&strategy, |pushes| {
            refill(&dir);
            let mut answer = Answer::new();
            let mut expected: Pairs = Vec::new();
            for (key, value) in pushes {
                let before = answer.clone();
                match answer.try_push(key.clone(), value.clone()) {
                    Ok(()) => {
                        check(!value.contains('\0'), || format!("{key}: NUL accepted"))?;
                        let pair = (key.as_str().to_owned(), value.into_bytes());
                        match expected.iter_mut().find(|(k, _)| *k == pair.0) {
                            Some(slot) => *slot = pair,
                            None => expected.push(pair),
                        }
                    }
                    Err(_) => {
                        check(value.contains('\0'), || format!("{key}: {value:?} refused"))?;
                        check(answer == before, || {
                            "a refused value changed the answer".into()
                        })?;
                    }
                }
            }
            check(pairs(&answer) == expected, || {
                "pairs differ from the pushes".into()
            })?;
            check(json_pairs(&answer)? == expected, || "JSON differs".into())?;
            if answer.is_empty() {
                return Ok(());
            }
            let expected = shell_only(expected);
            for &shell in SHELLS {
                let read = eval_answers(shell, &dir, std::slice::from_ref(&answer))?;
                check(read[0] == expected, || {
                    format!("{}: values changed", shell.path)
                })?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).expect("remove scratch");
}

/// A file name that, substituted for a glob in the answer's text, ends the
/// quoted value and runs a command.
const DECOY: &str = "x'; touch pwned; echo 'y'";

/// The original agent's unquoted `eval $r`: blanks in the text split it into
/// fields and each field is glob-expanded before `eval` joins them with one
/// space. A value with a glob character (`*`, `?`, `[`) could expand to a
/// file's name (the decoy's), so the shell form leaves those pairs out; every
/// other value runs nothing and comes back with each run of blanks (space,
/// tab, newline) as one space.
#[test]
fn the_original_agents_unquoted_eval_runs_nothing() {
    let dir = scratch("legacy");
    let key = "(PVC|FACTER)_[A-Z0-9_]{1,20}".prop_map(|k| k.parse::<AnswerKey>().expect("valid"));
    let value = prop_oneof![text(), any::<String>()].prop_map(|v| v.replace('\0', "_"));
    let strategy = prop::collection::vec((key, value), 1..40);
    runner(256)
        .run(&strategy, |pushes| {
            refill(&dir);
            let mut answer = Answer::new();
            for (key, value) in pushes {
                answer.try_push(key, value).expect("no NUL");
            }
            let expected: Pairs = answer
                .iter()
                .filter(|(_, v)| shell_safe(v.as_bytes()))
                .map(|(k, v)| {
                    let mut collapsed = String::new();
                    for (i, part) in v.split([' ', '\t', '\n']).enumerate() {
                        if i > 0 && !collapsed.ends_with(' ') {
                            collapsed.push(' ');
                        }
                        collapsed.push_str(part);
                    }
                    (k.as_str().to_owned(), collapsed.into_bytes())
                })
                .collect();
            let read = eval_answers(LEGACY, &dir, std::slice::from_ref(&answer))?;
            check(read[0] == expected, || {
                format!("values changed\n{:?}\n{expected:?}", read[0])
            })?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).expect("remove scratch");
}
