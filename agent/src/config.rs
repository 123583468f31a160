//! `/etc/pvc.conf`: `key=value` lines, the original agent's keys
//! (`host_endpoint`, `report_endpoint`, `facts_endpoint`, `info`,
//! `warnings`) and the new ones; Puppet's own settings as defaults.
//!
//! The original agent `source`d the file as shell, so quotes around values,
//! `export ` prefixes and spaces around `=` are tolerated. Lines are scanned
//! here first (every mistake is reported with its line, all at once); the
//! `config` crate then layers the file under `PVC_AGENT_<KEY>` environment
//! overrides, and each key is validated from the merged view.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

/// Where the configuration is read from unless `--config`/`PVC_CONF` say
/// otherwise (the original agent's path).
pub const DEFAULT_PATH: &str = "/etc/pvc.conf";

/// Environment variables `PVC_AGENT_<KEY>` override the file's `<key>`.
pub const ENV_PREFIX: &str = "PVC_AGENT";

/// TLS material: the node's Puppet certificate by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate (`hostcert`), presented to the bridge.
    pub cert: PathBuf,
    /// Its private key (`hostprivkey`).
    pub key: PathBuf,
    /// The Puppet CA (`localcacert`): the only root the bridge is checked
    /// against.
    pub ca: PathBuf,
    /// The CA's revocation list (`hostcrl`), when present.
    pub crl: Option<PathBuf>,
}

/// How Puppet and facter are run, and where Puppet keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuppetSettings {
    /// `puppet` and any leading arguments (`puppet_command`).
    pub puppet: Vec<String>,
    /// `facter` and any leading arguments (`facter_command`), e.g.
    /// `puppet facts show --render-as json`.
    pub facter: Vec<String>,
    /// A run still going after this is killed (`run_timeout`).
    pub run_timeout: Duration,
    /// `agent_catalog_run_lockfile`: a run in progress.
    pub run_lockfile: PathBuf,
    /// `agent_disabled_lockfile`: `puppet agent --disable`.
    pub disabled_lockfile: PathBuf,
    /// `lastrunfile`: `last_run_summary.yaml`.
    pub last_run_summary: PathBuf,
    /// `lastrunreport`: `last_run_report.yaml` (what the run changed, and
    /// when).
    pub last_run_report: PathBuf,
    /// `ca_server` and `report_server` as puppet.conf resolves them: pinned
    /// on the command line whenever `--server` names the granted compile
    /// server, because both default to `$server` in Puppet and would
    /// otherwise follow it. `None`: nothing to pin (Puppet gave nothing).
    pub ca_server: Option<String>,
    pub report_server: Option<String>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `GET <host_endpoint>?fqdn=<certname>` (the original agent called
    /// `<host_endpoint>/<fqdn>`; the bridge serves both).
    pub host_endpoint: String,
    pub report_endpoint: String,
    pub facts_endpoint: String,
    pub certname: String,
    /// `None` only when every endpoint is a plain `http://` URL.
    pub tls: Option<TlsFiles>,
    pub puppet: PuppetSettings,
    /// Without a decision for this long, Puppet runs on its own
    /// (`fallback_interval`), at a time spread by the certname.
    pub fallback_interval: Duration,
    /// File-change runs per hour at most, and at once (`forced_runs_per_hour`,
    /// `forced_runs_burst`): a loop stops here.
    pub forced_runs_per_hour: u32,
    pub forced_runs_burst: u32,
    /// Undelivered reports and facts (`spool_dir`, `spool_max_bytes`).
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// The original agent's log switches: `info=1` logs each step,
    /// `warnings=1` the warnings.
    pub info: bool,
    pub warnings: bool,
}

impl AgentConfig {
    /// The endpoints that are plain `http://` (no TLS, no client
    /// certificate): worth a warning at start.
    pub fn plain_http_endpoints(&self) -> Vec<&str> {
        [
            &self.host_endpoint,
            &self.report_endpoint,
            &self.facts_endpoint,
        ]
        .into_iter()
        .filter(|e| !is_https(e))
        .map(String::as_str)
        .collect()
    }
}

/// Puppet's own settings, asked for once (`puppet config print … --section
/// agent`), only for what the file leaves out.
pub trait PuppetDefaults {
    fn settings(&self, names: &[&str]) -> anyhow::Result<BTreeMap<String, String>>;

    /// The same, when the file names the Puppet command (`puppet_command`):
    /// the real implementation must ask that Puppet, not the one on `PATH`.
    /// Fakes need not care.
    fn settings_with(
        &self,
        _puppet_command: &[String],
        names: &[&str],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        self.settings(names)
    }
}

/// Runs `<puppet…> config print <names…> --section agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuppetPrint {
    /// `puppet` and any leading arguments; replaced by the configured
    /// `puppet_command` when `load` asks.
    pub puppet: Vec<String>,
}

impl Default for PuppetPrint {
    fn default() -> Self {
        PuppetPrint {
            puppet: vec!["puppet".into()],
        }
    }
}

impl PuppetDefaults for PuppetPrint {
    fn settings(&self, names: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
        print_settings(&self.puppet, names)
    }

    fn settings_with(
        &self,
        puppet_command: &[String],
        names: &[&str],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        print_settings(puppet_command, names)
    }
}

fn print_settings(puppet: &[String], names: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let (program, leading) = puppet.split_first().context("empty puppet command")?;
    let output = Command::new(program)
        .args(leading)
        .args(["config", "print"])
        .args(names)
        .args(["--section", "agent"])
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!(
            "{} config print exited with {}: {}",
            puppet.join(" "),
            output.status,
            stderr.trim()
        );
    }
    Ok(parse_print(&String::from_utf8_lossy(&output.stdout), names))
}

/// `puppet config print a b` prints `a = …` lines; with one name it prints
/// the bare value.
fn parse_print(stdout: &str, names: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        if let Some((name, value)) = line.split_once(" = ") {
            if names.contains(&name.trim()) {
                out.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }
    if let [name] = names {
        let value = stdout.trim();
        if !out.contains_key(*name) && !value.is_empty() && !value.contains('\n') {
            out.insert((*name).to_owned(), value.to_owned());
        }
    }
    out
}

/// One problem in the configuration: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `/etc/pvc.conf:7`, `/etc/pvc.conf` (not tied to a line) or
    /// `environment PVC_AGENT_RUN_TIMEOUT`.
    pub origin: String,
    pub message: String,
}

/// Everything wrong with a configuration, one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", p.origin, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every key the file may set.
const KEYS: &[&str] = &[
    // The original agent's.
    "host_endpoint",
    "report_endpoint",
    "facts_endpoint",
    "info",
    "warnings",
    // New.
    "bridge_url",
    "certname",
    "ssl_cert",
    "ssl_key",
    "ssl_ca",
    "ssl_crl",
    "puppet_command",
    "facter_command",
    "run_timeout",
    "fallback_interval",
    "forced_runs_per_hour",
    "forced_runs_burst",
    "spool_dir",
    "spool_max_bytes",
    // Puppet's state files, named as Puppet names them.
    "agent_catalog_run_lockfile",
    "agent_disabled_lockfile",
    "lastrunfile",
    "lastrunreport",
    // The servers a run's `--server` must not move.
    "ca_server",
    "report_server",
];

pub const DEFAULT_PUPPET_COMMAND: &str = "puppet";
pub const DEFAULT_FACTER_COMMAND: &str = "facter -p --json";
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(1800);
pub const DEFAULT_FALLBACK_INTERVAL: Duration = Duration::from_secs(3600);
pub const DEFAULT_FORCED_RUNS_PER_HOUR: u32 = 6;
pub const DEFAULT_FORCED_RUNS_BURST: u32 = 3;
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/pvc-agent/spool";
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and validates the configuration at `path`, with `PVC_AGENT_*`
/// environment overrides; asks Puppet (once) for what the file leaves out.
pub fn load(path: &Path, puppet: &dyn PuppetDefaults) -> Result<AgentConfig, ConfigError> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
        .collect();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            origin: path.display().to_string(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    load_text(path, &text, &env, puppet)
}

/// A `key=value` line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// One line: `Ok(None)` for blank lines and comments.
fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let Some((key, value)) = line.split_once('=') else {
        return Err(format!("expected key=value, found {line:?}"));
    };
    let key = key.trim();
    let valid_key = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key {
        return Err(format!("{key:?} is not a key name"));
    }
    Ok(Some((key.to_owned(), unquote(value.trim())?)))
}

/// Shell-style quoting, as far as `source` of the original file went:
/// `'…'` is literal, `"…"` knows `\"`, `\\`, `\$` and `` \` ``; an unquoted
/// value ends at ` #`.
fn unquote(value: &str) -> Result<String, String> {
    let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        let end = value
            .find(" #")
            .into_iter()
            .chain(value.find("\t#"))
            .min()
            .unwrap_or(value.len());
        return Ok(value[..end].trim_end().to_owned());
    };
    let mut out = String::new();
    let mut chars = value[1..].char_indices();
    let mut closed_at = None;
    while let Some((i, c)) = chars.next() {
        if c == quote {
            closed_at = Some(1 + i + c.len_utf8());
            break;
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, n @ ('"' | '\\' | '$' | '`'))) => out.push(n),
                Some((_, n)) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
            continue;
        }
        out.push(c);
    }
    let Some(end) = closed_at else {
        return Err(format!("unterminated {quote} quote"));
    };
    let rest = value[end..].trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!("unexpected text after the closing quote: {rest:?}"));
    }
    Ok(out)
}

/// The known key closest to a misspelt one, if any is close.
fn suggestion(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key(key: &str) -> String {
    match suggestion(key) {
        Some(k) => format!("unknown key {key:?} (did you mean {k}?)"),
        None => format!("unknown key {key:?}"),
    }
}

/// Scans the file: its entries, and a problem for every bad line.
fn scan(path: &Path, text: &str) -> (Vec<Entry>, Vec<Problem>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |message: String| Problem {
            origin: format!("{}:{line}", path.display()),
            message,
        };
        match parse_line(raw) {
            Ok(None) => {}
            Err(message) => problems.push(at(message)),
            Ok(Some((key, _))) if !KEYS.contains(&key.as_str()) => {
                problems.push(at(unknown_key(&key)))
            }
            Ok(Some((key, value))) => {
                if let Some(first) = entries.iter().find(|e| e.key == key) {
                    problems.push(at(format!("{key} is already set on line {}", first.line)));
                } else {
                    entries.push(Entry { key, value, line });
                }
            }
        }
    }
    (entries, problems)
}

/// The file's entries as a `config` source; each value's origin is its
/// `path:line`, so later problems point at the line.
#[derive(Debug, Clone)]
struct FileSource {
    path: String,
    entries: Vec<Entry>,
}

impl config::Source for FileSource {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self
            .entries
            .iter()
            .map(|e| {
                let origin = format!("{}:{}", self.path, e.line);
                (
                    e.key.clone(),
                    config::Value::new(Some(&origin), config::ValueKind::String(e.value.clone())),
                )
            })
            .collect())
    }
}

/// The merged view, and the problems found while reading it.
struct Reader {
    merged: config::Config,
    /// Each key's `path:line`, or its environment variable.
    origins: BTreeMap<String, String>,
    path: String,
    problems: Vec<Problem>,
}

impl Reader {
    /// A key's value and where it came from.
    fn raw(&self, key: &str) -> Option<(String, String)> {
        let value: String = self.merged.get_string(key).ok()?;
        let origin = self
            .origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.path.clone());
        Some((value, origin))
    }

    /// `Ok(None)` when absent; `Err(())` when invalid (and recorded).
    fn parse<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        let Some((value, origin)) = self.raw(key) else {
            return Ok(None);
        };
        f(&value).map(Some).map_err(|message| {
            self.problems.push(Problem {
                origin,
                message: format!("{key}: {message}"),
            });
        })
    }

    fn problem(&mut self, message: String) {
        self.problems.push(Problem {
            origin: self.path.clone(),
            message,
        });
    }
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

fn url(value: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{value:?}: use an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{value:?} has no host"));
    }
    if parsed.fragment().is_some() {
        return Err(format!("{value:?} has a #fragment"));
    }
    Ok(value.to_owned())
}

fn flag(value: &str) -> Result<bool, String> {
    // The original tested `[ $info -gt 0 ]`.
    match value.parse::<i64>() {
        Ok(n) => Ok(n > 0),
        Err(_) => match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" | "" => Ok(false),
            _ => Err(format!("{value:?} is not 0 or 1")),
        },
    }
}

fn seconds(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".into()),
        Ok(n) => Ok(Duration::from_secs(n)),
        Err(_) => Err(format!("{value:?} is not a whole number of seconds")),
    }
}

fn count(min: u32) -> impl FnOnce(&str) -> Result<u32, String> {
    move |value| match value.parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{value:?} is not a whole number ≥ {min}")),
    }
}

/// Bytes, with an optional binary suffix: `67108864`, `64M`, `64MiB`.
fn bytes(value: &str) -> Result<u64, String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match value[digits.len()..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{value:?}: use bytes, or a K, M or G (KiB, MiB, GiB) suffix"
            ))
        }
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{value:?} is not a positive number of bytes"))
}

fn absolute_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{value:?} is not an absolute path"))
    }
}

/// Empty means "no CRL".
fn optional_path(value: &str) -> Result<Option<PathBuf>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        absolute_path(value).map(Some)
    }
}

/// A command and its leading arguments, split on whitespace (no shell).
fn command(value: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        Err("empty command".into())
    } else {
        Ok(words)
    }
}

/// A server name as Puppet takes it (`ca_server`, `report_server`): a host
/// name or address, nothing that could become another argument.
fn server_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a server name"))
    }
}

/// Puppet certnames: lowercase letters, digits, `.`, `-` and `_`.
fn certname(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a certname (lowercase letters, digits, '.', '-', '_')"
        ))
    }
}

/// Which Puppet setting gives each key's default.
const PUPPET_DEFAULTS: &[(&str, &str)] = &[
    ("certname", "certname"),
    ("ssl_cert", "hostcert"),
    ("ssl_key", "hostprivkey"),
    ("ssl_ca", "localcacert"),
    ("ssl_crl", "hostcrl"),
    ("agent_catalog_run_lockfile", "agent_catalog_run_lockfile"),
    ("agent_disabled_lockfile", "agent_disabled_lockfile"),
    ("lastrunfile", "lastrunfile"),
    ("lastrunreport", "lastrunreport"),
    ("ca_server", "ca_server"),
    ("report_server", "report_server"),
];

fn puppet_setting(key: &str) -> &'static str {
    PUPPET_DEFAULTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, s)| *s)
        .expect("every defaulted key has a Puppet setting")
}

/// `load` without the process environment and the file system: `env`
/// holds `PVC_AGENT_*` variables.
fn load_text(
    path: &Path,
    text: &str,
    env: &BTreeMap<String, String>,
    puppet: &dyn PuppetDefaults,
) -> Result<AgentConfig, ConfigError> {
    let path_text = path.display().to_string();
    let (entries, mut problems) = scan(path, text);
    let prefix = format!("{ENV_PREFIX}_");
    let env: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for name in env.keys() {
        let key = name[prefix.len()..].to_ascii_lowercase();
        if !KEYS.contains(&key.as_str()) {
            problems.push(Problem {
                origin: format!("environment {name}"),
                message: unknown_key(&key),
            });
        }
    }
    let mut origins: BTreeMap<String, String> = entries
        .iter()
        .map(|e| (e.key.clone(), format!("{path_text}:{}", e.line)))
        .collect();
    for name in env.keys() {
        origins.insert(
            name[prefix.len()..].to_ascii_lowercase(),
            format!("environment {name}"),
        );
    }
    let merged = config::Config::builder()
        .add_source(FileSource {
            path: path_text.clone(),
            entries,
        })
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .source(Some(env.into_iter().collect())),
        )
        .build()
        .map_err(|e| ConfigError {
            problems: vec![Problem {
                origin: path_text.clone(),
                message: e.to_string(),
            }],
        })?;
    let mut r = Reader {
        merged,
        origins,
        path: path_text,
        problems,
    };

    let info = r.parse("info", flag).unwrap_or(None).unwrap_or(false);
    let warnings = r.parse("warnings", flag).unwrap_or(None).unwrap_or(true);

    // Endpoints: explicit, or derived from bridge_url.
    let bridge_url = r.parse("bridge_url", |v| {
        if v.contains('?') {
            return Err(format!("{v:?}: a base URL has no ?query"));
        }
        url(v).map(|u| u.trim_end_matches('/').to_owned())
    });
    let mut endpoints = Vec::new();
    let mut missing = Vec::new();
    for (key, suffix) in [
        ("host_endpoint", "/host"),
        ("report_endpoint", "/report"),
        ("facts_endpoint", "/facts"),
    ] {
        match (r.parse(key, url), &bridge_url) {
            (Ok(Some(u)), _) => endpoints.push(Some(u)),
            (Ok(None), Ok(Some(base))) => endpoints.push(Some(format!("{base}{suffix}"))),
            (Ok(None), Ok(None)) => {
                missing.push(key);
                endpoints.push(None);
            }
            // Already reported.
            (Err(()), _) | (Ok(None), Err(())) => endpoints.push(None),
        }
    }
    if !missing.is_empty() {
        r.problem(format!(
            "no bridge_url, and {} not set: set bridge_url (https://<bridge>:<port>) or all three *_endpoint keys",
            missing.join(", ")
        ));
    }
    let tls_needed = endpoints.iter().flatten().any(|e| is_https(e));

    let puppet_command = r
        .parse("puppet_command", command)
        .unwrap_or(None)
        .unwrap_or_else(|| vec![DEFAULT_PUPPET_COMMAND.to_owned()]);
    let facter = r
        .parse("facter_command", command)
        .unwrap_or(None)
        .unwrap_or_else(|| command(DEFAULT_FACTER_COMMAND).expect("valid default"));
    let run_timeout = r
        .parse("run_timeout", seconds)
        .unwrap_or(None)
        .unwrap_or(DEFAULT_RUN_TIMEOUT);
    let fallback_interval = r
        .parse("fallback_interval", seconds)
        .unwrap_or(None)
        .unwrap_or(DEFAULT_FALLBACK_INTERVAL);
    let forced_runs_per_hour = r
        .parse("forced_runs_per_hour", count(1))
        .unwrap_or(None)
        .unwrap_or(DEFAULT_FORCED_RUNS_PER_HOUR);
    let forced_runs_burst = r
        .parse("forced_runs_burst", count(1))
        .unwrap_or(None)
        .unwrap_or(DEFAULT_FORCED_RUNS_BURST);
    let spool_dir = r
        .parse("spool_dir", absolute_path)
        .unwrap_or(None)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR));
    let spool_max_bytes = r
        .parse("spool_max_bytes", bytes)
        .unwrap_or(None)
        .unwrap_or(DEFAULT_SPOOL_MAX_BYTES);

    // What the file sets of Puppet's settings; the rest is asked for.
    let set_certname = r.parse("certname", certname);
    let mut set_paths: Vec<(&str, Result<Option<PathBuf>, ()>)> = Vec::new();
    for key in [
        "ssl_cert",
        "ssl_key",
        "ssl_ca",
        "agent_catalog_run_lockfile",
        "agent_disabled_lockfile",
        "lastrunfile",
        "lastrunreport",
    ] {
        set_paths.push((key, r.parse(key, absolute_path)));
    }
    let set_crl = r.parse("ssl_crl", optional_path);
    let set_servers: Vec<(&str, Result<Option<String>, ()>)> = ["ca_server", "report_server"]
        .into_iter()
        .map(|key| (key, r.parse(key, server_name)))
        .collect();

    let mut wanted: Vec<&str> = Vec::new();
    if matches!(set_certname, Ok(None)) {
        wanted.push("certname");
    }
    // In Puppet's order: the certificate files, then the state files.
    for (key, value) in &set_paths {
        let tls_key = key.starts_with("ssl_");
        if matches!(value, Ok(None)) && (tls_needed || !tls_key) {
            wanted.push(key);
        }
        if *key == "ssl_ca" && tls_needed && matches!(set_crl, Ok(None)) {
            wanted.push("ssl_crl");
        }
    }
    // Asked for along with anything else Puppet is asked for; a file that
    // sets all of Puppet's paths (and so asks Puppet nothing) pins only the
    // servers it names itself.
    if !wanted.is_empty() {
        for (key, value) in &set_servers {
            if matches!(value, Ok(None)) {
                wanted.push(key);
            }
        }
    }
    if !r.problems.is_empty() {
        // Running Puppet for a file that is wrong anyway would only slow the
        // answer down.
        return Err(ConfigError {
            problems: r.problems,
        });
    }

    let settings: Vec<&str> = wanted.iter().map(|k| puppet_setting(k)).collect();
    let from_puppet = if settings.is_empty() {
        BTreeMap::new()
    } else {
        match puppet.settings_with(&puppet_command, &settings) {
            Ok(map) => map,
            Err(e) => {
                r.problem(format!(
                    "{} config print {} --section agent failed ({e:#}); set {} in the file",
                    puppet_command.join(" "),
                    settings.join(" "),
                    wanted.join(", ")
                ));
                return Err(ConfigError {
                    problems: r.problems,
                });
            }
        }
    };
    let default = |r: &mut Reader, key: &str| -> Option<String> {
        let setting = puppet_setting(key);
        match from_puppet.get(setting).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.clone()),
            None => {
                r.problem(format!(
                    "{key}: puppet config print gave no {setting}; set {key} in the file"
                ));
                None
            }
        }
    };

    let certname = match set_certname {
        Ok(Some(c)) => Some(c),
        _ => default(&mut r, "certname").and_then(|v| match certname(&v) {
            Ok(c) => Some(c),
            Err(e) => {
                r.problem(format!("certname from Puppet: {e}"));
                None
            }
        }),
    };
    let path_of = |r: &mut Reader, key: &str| -> Option<PathBuf> {
        match set_paths.iter().find(|(k, _)| *k == key) {
            Some((_, Ok(Some(p)))) => Some(p.clone()),
            _ => default(r, key).map(PathBuf::from),
        }
    };
    let tls = if tls_needed {
        let cert = path_of(&mut r, "ssl_cert");
        let key = path_of(&mut r, "ssl_key");
        let ca = path_of(&mut r, "ssl_ca");
        let crl = match set_crl {
            Ok(Some(explicit)) => explicit,
            _ => from_puppet
                .get(puppet_setting("ssl_crl"))
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca, crl }),
            _ => None,
        }
    } else {
        None
    };
    // Puppet may resolve these to nothing (no server configured at all):
    // then there is nothing to pin, and that is not a mistake.
    let server_of = |key: &str| -> Option<String> {
        match set_servers.iter().find(|(k, _)| *k == key) {
            Some((_, Ok(Some(v)))) => Some(v.clone()),
            _ => from_puppet
                .get(puppet_setting(key))
                .filter(|v| server_name(v).is_ok())
                .cloned(),
        }
    };
    let ca_server = server_of("ca_server");
    let report_server = server_of("report_server");
    let run_lockfile = path_of(&mut r, "agent_catalog_run_lockfile");
    let disabled_lockfile = path_of(&mut r, "agent_disabled_lockfile");
    let last_run_summary = path_of(&mut r, "lastrunfile");
    let last_run_report = path_of(&mut r, "lastrunreport");

    let (
        Some(certname),
        Some(run_lockfile),
        Some(disabled_lockfile),
        Some(last_run_summary),
        Some(last_run_report),
        [Some(host_endpoint), Some(report_endpoint), Some(facts_endpoint)],
        true,
    ) = (
        certname,
        run_lockfile,
        disabled_lockfile,
        last_run_summary,
        last_run_report,
        <[Option<String>; 3]>::try_from(endpoints).expect("three endpoints"),
        r.problems.is_empty() && (tls.is_some() || !tls_needed),
    )
    else {
        return Err(ConfigError {
            problems: r.problems,
        });
    };
    Ok(AgentConfig {
        host_endpoint,
        report_endpoint,
        facts_endpoint,
        certname,
        tls,
        puppet: PuppetSettings {
            puppet: puppet_command,
            facter,
            run_timeout,
            run_lockfile,
            disabled_lockfile,
            last_run_summary,
            last_run_report,
            ca_server,
            report_server,
        },
        fallback_interval,
        forced_runs_per_hour,
        forced_runs_burst,
        spool_dir,
        spool_max_bytes,
        info,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Puppet's answers from a map; records what it was asked.
    struct FakePuppet {
        values: BTreeMap<String, String>,
        asked: RefCell<Vec<Vec<String>>>,
        commands: RefCell<Vec<Vec<String>>>,
    }

    impl FakePuppet {
        fn new() -> Self {
            let ssl = "/etc/puppetlabs/puppet/ssl";
            let state = "/opt/puppetlabs/puppet/cache/state";
            let values = [
                ("certname", "web1.example.com".to_owned()),
                ("hostcert", format!("{ssl}/certs/web1.example.com.pem")),
                (
                    "hostprivkey",
                    format!("{ssl}/private_keys/web1.example.com.pem"),
                ),
                ("localcacert", format!("{ssl}/certs/ca.pem")),
                ("hostcrl", format!("{ssl}/crl.pem")),
                (
                    "agent_catalog_run_lockfile",
                    format!("{state}/agent_catalog_run.lock"),
                ),
                (
                    "agent_disabled_lockfile",
                    format!("{state}/agent_disabled.lock"),
                ),
                (
                    "lastrunfile",
                    "/opt/puppetlabs/puppet/public/last_run_summary.yaml".into(),
                ),
                ("lastrunreport", format!("{state}/last_run_report.yaml")),
                ("ca_server", "puppetca.example.com".into()),
                ("report_server", "puppet.example.com".into()),
            ];
            FakePuppet {
                values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                asked: RefCell::new(Vec::new()),
                commands: RefCell::new(Vec::new()),
            }
        }
    }

    impl PuppetDefaults for FakePuppet {
        fn settings(&self, names: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
            self.asked
                .borrow_mut()
                .push(names.iter().map(|n| n.to_string()).collect());
            Ok(names
                .iter()
                .filter_map(|n| self.values.get(*n).map(|v| (n.to_string(), v.clone())))
                .collect())
        }

        fn settings_with(
            &self,
            puppet_command: &[String],
            names: &[&str],
        ) -> anyhow::Result<BTreeMap<String, String>> {
            self.commands.borrow_mut().push(puppet_command.to_vec());
            self.settings(names)
        }
    }

    struct NoPuppet;

    impl PuppetDefaults for NoPuppet {
        fn settings(&self, names: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
            anyhow::bail!("puppet must not be asked (asked for {names:?})")
        }
    }

    fn load_str(text: &str, puppet: &dyn PuppetDefaults) -> Result<AgentConfig, ConfigError> {
        load_text(Path::new("/etc/pvc.conf"), text, &BTreeMap::new(), puppet)
    }

    fn errors(text: &str) -> String {
        load_str(text, &FakePuppet::new())
            .expect_err("invalid")
            .to_string()
    }

    /// johnj/pvc `pvc.conf.sample`, byte for byte.
    const ORIGINAL_SAMPLE: &str = "host_endpoint=http://jj.e.com./host\nreport_endpoint=http://jj.e.com./report\nfacts_endpoint=http://jj.e.com./facts\ninfo=1\nwarnings=1\n";

    #[test]
    fn the_original_sample_loads_unchanged() {
        let puppet = FakePuppet::new();
        let c = load_str(ORIGINAL_SAMPLE, &puppet).expect("valid");
        assert_eq!(c.host_endpoint, "http://jj.e.com./host");
        assert_eq!(c.report_endpoint, "http://jj.e.com./report");
        assert_eq!(c.facts_endpoint, "http://jj.e.com./facts");
        assert!(c.info && c.warnings);
        // Plain HTTP: no TLS, and Puppet is not asked for its certificate.
        assert_eq!(c.tls, None);
        assert_eq!(c.plain_http_endpoints().len(), 3);
        assert_eq!(
            *puppet.asked.borrow(),
            vec![vec![
                "certname",
                "agent_catalog_run_lockfile",
                "agent_disabled_lockfile",
                "lastrunfile",
                "lastrunreport",
                "ca_server",
                "report_server"
            ]]
        );
        assert_eq!(*puppet.commands.borrow(), vec![vec!["puppet".to_owned()]]);
        assert_eq!(c.certname, "web1.example.com");
        assert_eq!(
            c.puppet.run_lockfile,
            PathBuf::from("/opt/puppetlabs/puppet/cache/state/agent_catalog_run.lock")
        );
        assert_eq!(
            c.puppet.last_run_summary,
            PathBuf::from("/opt/puppetlabs/puppet/public/last_run_summary.yaml")
        );
        // Defaults.
        assert_eq!(c.puppet.puppet, vec!["puppet"]);
        assert_eq!(c.puppet.facter, vec!["facter", "-p", "--json"]);
        assert_eq!(c.puppet.run_timeout, Duration::from_secs(1800));
        assert_eq!(c.fallback_interval, Duration::from_secs(3600));
        assert_eq!((c.forced_runs_per_hour, c.forced_runs_burst), (6, 3));
        assert_eq!(c.spool_dir, PathBuf::from("/var/lib/pvc-agent/spool"));
        assert_eq!(c.spool_max_bytes, 64 * 1024 * 1024);
    }

    /// johnj/pvc `modules/pvc/templates/pvc.conf.erb` as Puppet renders it
    /// with `pvc_url => 'https://pvc.example.com:8443'`.
    const ORIGINAL_TEMPLATE: &str = "host_endpoint=https://pvc.example.com:8443/host\nreport_endpoint=https://pvc.example.com:8443/report\nfacts_endpoint=https://pvc.example.com:8443/facts\nwarnings=1\n";

    #[test]
    fn the_module_template_loads_with_tls_from_puppet() {
        let puppet = FakePuppet::new();
        let c = load_str(ORIGINAL_TEMPLATE, &puppet).expect("valid");
        assert_eq!(c.host_endpoint, "https://pvc.example.com:8443/host");
        assert!(c.plain_http_endpoints().is_empty());
        assert!(!c.info && c.warnings);
        let ssl = Path::new("/etc/puppetlabs/puppet/ssl");
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: ssl.join("certs/web1.example.com.pem"),
                key: ssl.join("private_keys/web1.example.com.pem"),
                ca: ssl.join("certs/ca.pem"),
                crl: Some(ssl.join("crl.pem")),
            })
        );
        // The servers --server must not move, as Puppet resolves them.
        assert_eq!(c.puppet.ca_server.as_deref(), Some("puppetca.example.com"));
        assert_eq!(
            c.puppet.report_server.as_deref(),
            Some("puppet.example.com")
        );
        // One call for everything.
        assert_eq!(
            *puppet.asked.borrow(),
            vec![vec![
                "certname",
                "hostcert",
                "hostprivkey",
                "localcacert",
                "hostcrl",
                "agent_catalog_run_lockfile",
                "agent_disabled_lockfile",
                "lastrunfile",
                "lastrunreport",
                "ca_server",
                "report_server",
            ]]
        );
    }

    #[test]
    fn bridge_url_derives_the_endpoints_and_keys_override_defaults() {
        let text = r#"
# pvc-agent
bridge_url = "https://bridge.example.com:8443/"
export report_endpoint='https://reports.example.com/report'
certname=db1.example.com
ssl_cert=/srv/ssl/cert.pem
ssl_key=/srv/ssl/key.pem
ssl_ca=/srv/ssl/ca.pem
ssl_crl=
puppet_command=/opt/puppetlabs/bin/puppet --confdir /srv/puppet   # comment
facter_command="/opt/puppetlabs/bin/puppet facts show --render-as json"
run_timeout=600
fallback_interval=7200
forced_runs_per_hour=12
forced_runs_burst=1
spool_dir=/srv/spool
spool_max_bytes=8M
agent_catalog_run_lockfile=/srv/state/run.lock
agent_disabled_lockfile=/srv/state/disabled.lock
lastrunfile=/srv/state/summary.yaml
lastrunreport=/srv/state/report.yaml
info=0
warnings=0
"#;
        let c = load_str(text, &NoPuppet).expect("valid without asking Puppet");
        assert_eq!(c.host_endpoint, "https://bridge.example.com:8443/host");
        assert_eq!(c.report_endpoint, "https://reports.example.com/report");
        assert_eq!(c.facts_endpoint, "https://bridge.example.com:8443/facts");
        assert_eq!(c.certname, "db1.example.com");
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/srv/ssl/cert.pem".into(),
                key: "/srv/ssl/key.pem".into(),
                ca: "/srv/ssl/ca.pem".into(),
                crl: None,
            })
        );
        assert_eq!(
            c.puppet.puppet,
            vec!["/opt/puppetlabs/bin/puppet", "--confdir", "/srv/puppet"]
        );
        assert_eq!(
            c.puppet.facter,
            vec![
                "/opt/puppetlabs/bin/puppet",
                "facts",
                "show",
                "--render-as",
                "json"
            ]
        );
        assert_eq!(c.puppet.run_timeout, Duration::from_secs(600));
        assert_eq!(c.fallback_interval, Duration::from_secs(7200));
        assert_eq!((c.forced_runs_per_hour, c.forced_runs_burst), (12, 1));
        assert_eq!(c.spool_dir, PathBuf::from("/srv/spool"));
        assert_eq!(c.spool_max_bytes, 8 << 20);
        assert_eq!(
            c.puppet.disabled_lockfile,
            PathBuf::from("/srv/state/disabled.lock")
        );
        assert_eq!(
            c.puppet.last_run_report,
            PathBuf::from("/srv/state/report.yaml")
        );
        assert!(!c.info && !c.warnings);
    }

    #[test]
    fn puppet_is_asked_only_for_what_is_missing_with_the_configured_command() {
        let puppet = FakePuppet::new();
        let text = "bridge_url=https://b.example.com\nssl_key=/k.pem\npuppet_command=/usr/local/bin/fake-puppet\n";
        let c = load_str(text, &puppet).expect("valid");
        assert_eq!(
            *puppet.asked.borrow(),
            vec![vec![
                "certname",
                "hostcert",
                "localcacert",
                "hostcrl",
                "agent_catalog_run_lockfile",
                "agent_disabled_lockfile",
                "lastrunfile",
                "lastrunreport",
                "ca_server",
                "report_server",
            ]]
        );
        assert_eq!(
            *puppet.commands.borrow(),
            vec![vec!["/usr/local/bin/fake-puppet".to_owned()]]
        );
        assert_eq!(c.tls.expect("tls").key, PathBuf::from("/k.pem"));
    }

    #[test]
    fn every_mistake_is_reported_with_its_line() {
        let text = "\
host_endpoint=http://jj.e.com./host
hots_endpoint=http://jj.e.com./host
report_endpoint=jj.e.com/report
this line has no equals sign

info=maybe
run_timeout=30m
certname=Web1.Example.com
spool_dir=\"/var/spool
host_endpoint=http://other/host
9lives=1
forced_runs_burst=0
spool_max_bytes=64 parsecs
ssl_ca=relative/ca.pem
";
        assert_eq!(
            errors(text),
            "\
/etc/pvc.conf:2: unknown key \"hots_endpoint\" (did you mean host_endpoint?)
/etc/pvc.conf:4: expected key=value, found \"this line has no equals sign\"
/etc/pvc.conf:9: unterminated \" quote
/etc/pvc.conf:10: host_endpoint is already set on line 1
/etc/pvc.conf:11: \"9lives\" is not a key name
/etc/pvc.conf:6: info: \"maybe\" is not 0 or 1
/etc/pvc.conf:3: report_endpoint: \"jj.e.com/report\" is not a URL: relative URL without a base
/etc/pvc.conf: no bridge_url, and facts_endpoint not set: set bridge_url (https://<bridge>:<port>) or all three *_endpoint keys
/etc/pvc.conf:7: run_timeout: \"30m\" is not a whole number of seconds
/etc/pvc.conf:12: forced_runs_burst: \"0\" is not a whole number ≥ 1
/etc/pvc.conf:13: spool_max_bytes: \"64 parsecs\": use bytes, or a K, M or G (KiB, MiB, GiB) suffix
/etc/pvc.conf:8: certname: \"Web1.Example.com\" is not a certname (lowercase letters, digits, '.', '-', '_')
/etc/pvc.conf:14: ssl_ca: \"relative/ca.pem\" is not an absolute path"
        );
    }

    #[test]
    fn no_endpoint_at_all_is_an_error() {
        assert_eq!(
            errors("# nothing\ninfo=1\n"),
            "/etc/pvc.conf: no bridge_url, and host_endpoint, report_endpoint, facts_endpoint not set: set bridge_url (https://<bridge>:<port>) or all three *_endpoint keys"
        );
        assert_eq!(
            errors("bridge_url=https://b.example.com/?x=1\n"),
            "/etc/pvc.conf:1: bridge_url: \"https://b.example.com/?x=1\": a base URL has no ?query"
        );
        assert_eq!(
            errors("bridge_url=ftp://b.example.com\n"),
            "/etc/pvc.conf:1: bridge_url: \"ftp://b.example.com\": use an http:// or https:// URL"
        );
    }

    #[test]
    fn puppet_failures_name_the_keys_to_set() {
        let e = load_str("bridge_url=http://b\n", &NoPuppet)
            .expect_err("no certname")
            .to_string();
        assert!(
            e.starts_with("/etc/pvc.conf: puppet config print certname agent_catalog_run_lockfile"),
            "{e}"
        );
        assert!(e.ends_with("set certname, agent_catalog_run_lockfile, agent_disabled_lockfile, lastrunfile, lastrunreport, ca_server, report_server in the file"), "{e}");

        let mut puppet = FakePuppet::new();
        puppet.values.remove("hostcert");
        puppet.values.insert("certname".into(), "UPPER".into());
        let e = load_str("bridge_url=https://b\n", &puppet)
            .expect_err("missing hostcert")
            .to_string();
        assert_eq!(
            e,
            "/etc/pvc.conf: certname from Puppet: \"UPPER\" is not a certname (lowercase letters, digits, '.', '-', '_')\n\
             /etc/pvc.conf: ssl_cert: puppet config print gave no hostcert; set ssl_cert in the file"
        );
    }

    #[test]
    fn shell_quoting_as_the_original_sourced_it() {
        assert_eq!(parse_line("  # comment"), Ok(None));
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("a=b"), Ok(Some(("a".into(), "b".into()))));
        assert_eq!(
            parse_line("export a = 'x # y' # c"),
            Ok(Some(("a".into(), "x # y".into())))
        );
        assert_eq!(
            parse_line(r#"a="q\"uo\\te \n""#),
            Ok(Some(("a".into(), r#"q"uo\te \n"#.into())))
        );
        assert_eq!(parse_line("a=b#c"), Ok(Some(("a".into(), "b#c".into()))));
        assert_eq!(
            parse_line("exporter=1"),
            Ok(Some(("exporter".into(), "1".into())))
        );
        assert_eq!(parse_line("a=''"), Ok(Some(("a".into(), "".into()))));
        assert!(parse_line("a='b' c").is_err());
        assert!(parse_line("a='b").is_err());
        assert!(parse_line("=b").is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let env: BTreeMap<String, String> = [
            ("PVC_AGENT_RUN_TIMEOUT", "60"),
            ("PVC_AGENT_HOST_ENDPOINT", "http://override/host"),
            ("PVC_AGENT_FALLBACK_INTERVAL", "soon"),
            ("PVC_AGENT_HOTS_ENDPOINT", "x"),
            ("PATH", "/usr/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let text = "bridge_url=http://b\nrun_timeout=10\n";
        let e = load_text(Path::new("/etc/pvc.conf"), text, &env, &FakePuppet::new())
            .expect_err("bad environment")
            .to_string();
        assert_eq!(
            e,
            "environment PVC_AGENT_HOTS_ENDPOINT: unknown key \"hots_endpoint\" (did you mean host_endpoint?)\n\
             environment PVC_AGENT_FALLBACK_INTERVAL: fallback_interval: \"soon\" is not a whole number of seconds"
        );
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.ends_with("RUN_TIMEOUT") || k.ends_with("HOST_ENDPOINT"))
            .collect();
        let c =
            load_text(Path::new("/etc/pvc.conf"), text, &env, &FakePuppet::new()).expect("valid");
        assert_eq!(c.puppet.run_timeout, Duration::from_secs(60));
        assert_eq!(c.host_endpoint, "http://override/host");
        assert_eq!(c.report_endpoint, "http://b/report");
    }

    #[test]
    fn puppet_config_print_output() {
        let out = "certname = web1.example.com\nhostcert = /ssl/certs/web1.pem\nnoise\n";
        let map = parse_print(out, &["certname", "hostcert"]);
        assert_eq!(
            map.get("certname").map(String::as_str),
            Some("web1.example.com")
        );
        assert_eq!(
            map.get("hostcert").map(String::as_str),
            Some("/ssl/certs/web1.pem")
        );
        assert_eq!(map.len(), 2);
        // One name: the bare value.
        let map = parse_print("web1.example.com\n", &["certname"]);
        assert_eq!(
            map.get("certname").map(String::as_str),
            Some("web1.example.com")
        );
    }

    #[test]
    fn puppet_print_runs_the_command() {
        // `echo` stands in for Puppet: it prints its arguments back.
        let print = PuppetPrint {
            puppet: vec!["echo".into(), "certname".into(), "=".into()],
        };
        let map = print.settings(&["certname"]).expect("echo runs");
        assert_eq!(
            map.get("certname").map(String::as_str),
            Some("config print certname --section agent")
        );
        let missing = PuppetPrint {
            puppet: vec!["/nonexistent/puppet".into()],
        };
        assert!(missing.settings(&["certname"]).is_err());
        assert!(missing
            .settings_with(&["false".into()], &["certname"])
            .is_err());
    }

    const EXAMPLE: &str = include_str!("../pvc.conf.example");

    #[test]
    fn the_packaged_example_shows_the_defaults() {
        // As shipped: nothing set, so the bridge is missing.
        assert_eq!(
            errors(EXAMPLE),
            "/etc/pvc.conf: no bridge_url, and host_endpoint, report_endpoint, facts_endpoint not set: set bridge_url (https://<bridge>:<port>) or all three *_endpoint keys"
        );
        // Every commented default, uncommented, is what the code defaults to.
        let uncommented: String = EXAMPLE
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| {
                l.split_once('=')
                    .is_some_and(|(k, v)| KEYS.contains(&k) && !v.is_empty() && !v.contains('<'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.contains("bridge_url="), "{uncommented}");
        let puppet = FakePuppet::new();
        let from_example = load_str(&uncommented, &puppet).expect("valid");
        let bridge_only = format!(
            "bridge_url={}\n",
            from_example.host_endpoint.trim_end_matches("/host")
        );
        assert_eq!(
            from_example,
            load_str(&bridge_only, &puppet).expect("valid")
        );
    }

    #[test]
    fn misspellings_get_a_suggestion() {
        assert_eq!(suggestion("hots_endpoint"), Some("host_endpoint"));
        assert_eq!(suggestion("warning"), Some("warnings"));
        assert_eq!(suggestion("something_else"), None);
    }
}
