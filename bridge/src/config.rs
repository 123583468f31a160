//! Configuration: a TOML file plus `PVC_*` environment variables that
//! override any key (`PVC_DATABASE__PRIMARY` → `database.primary`).
//!
//! Loading is two steps: `config` reads the sources into `RawConfig` (serde,
//! no I/O besides reading them), then `validate` checks every key and reports
//! all problems at once, each naming its key. Every key is documented in
//! `docs/configuration.md`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A secret: never printed by `Debug` or `Display`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serialized (for `RawConfig::keys`) without its value.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration, as read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serve plain HTTP without `[tls]`: an explicit choice, for a bridge
    /// behind a TLS-terminating proxy or on a trusted network only.
    #[serde(default)]
    pub plain_http: bool,
    /// HTTP worker threads; 0 = one per core.
    #[serde(default)]
    pub workers: usize,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub foreman: ForemanConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub enc: EncConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub scheduler: SchedulerRaw,
    #[serde(default)]
    pub writes: WritesRaw,
    #[serde(default)]
    pub forward: ForwardRaw,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub changes: ChangesConfig,
    #[serde(default)]
    pub tls: TlsRaw,
    #[serde(default)]
    pub access: AccessRaw,
    #[serde(default)]
    pub http: HttpLimits,
}

/// Connection limits against slow or stuck clients (`[http]`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// A client must have sent a request's head (request line and headers)
    /// within this long of connecting or of its previous request, else it
    /// gets 408 and is disconnected (a slow-loris client holds nothing).
    pub request_head_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this long.
    pub keep_alive_secs: u64,
    /// After the answer, how long a client that does not close gets.
    pub disconnect_timeout_ms: u64,
    /// Largest request head (header names and values), else 431. actix
    /// bounds only heads that arrive in pieces.
    pub max_header_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_head_timeout_ms: 5000,
            keep_alive_secs: 5,
            disconnect_timeout_ms: 1000,
            max_header_bytes: 16 * 1024,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8081".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL URL of Foreman's primary (writes).
    pub primary: Option<String>,
    /// URLs of read replicas (reads); empty means read from the primary.
    #[serde(default, deserialize_with = "string_or_list")]
    pub replicas: Vec<String>,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Time between two health checks of every replica.
    #[serde(default = "default_health_check_ms")]
    pub health_check_ms: u64,
    /// A health check slower than this has failed.
    #[serde(default = "default_health_timeout_ms")]
    pub health_timeout_ms: u64,
    /// A replica further behind the primary (bytes of WAL) is taken out.
    #[serde(default = "default_max_lag_bytes")]
    pub max_lag_bytes: u64,
    /// First back-off of a replica taken out; doubles on each further
    /// failure up to `blacklist_max_secs`.
    #[serde(default = "default_blacklist_secs")]
    pub blacklist_secs: u64,
    #[serde(default = "default_blacklist_max_secs")]
    pub blacklist_max_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            primary: None,
            replicas: Vec::new(),
            pool_size: default_pool_size(),
            connect_timeout_secs: default_connect_timeout(),
            health_check_ms: default_health_check_ms(),
            health_timeout_ms: default_health_timeout_ms(),
            max_lag_bytes: default_max_lag_bytes(),
            blacklist_secs: default_blacklist_secs(),
            blacklist_max_secs: default_blacklist_max_secs(),
        }
    }
}

fn default_health_check_ms() -> u64 {
    500
}
fn default_health_timeout_ms() -> u64 {
    2000
}
fn default_max_lag_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_blacklist_secs() -> u64 {
    30
}
fn default_blacklist_max_secs() -> u64 {
    300
}

fn default_pool_size() -> usize {
    16
}
fn default_connect_timeout() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForemanConfig {
    /// Base URL of Foreman, e.g. `https://foreman.example.com`.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// File holding the password (first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_foreman_timeout")]
    pub timeout_secs: u64,
    /// Concurrent ENC requests to Foreman at most.
    #[serde(default = "default_foreman_concurrency")]
    pub max_concurrency: usize,
    /// Refuse to start when the account check fails (otherwise: warn).
    #[serde(default)]
    pub require_admin: bool,
    /// Client certificate and key (PEM) to present to Foreman, as the ENC
    /// script does with `:ssl_cert`/`:ssl_key` (Foreman then takes the
    /// bridge for a trusted smart proxy); instead of, or with, Basic auth.
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    /// CA bundle (PEM) that signed Foreman's certificate, e.g. the Puppet CA.
    pub ssl_ca: Option<PathBuf>,
}

impl Default for ForemanConfig {
    fn default() -> Self {
        ForemanConfig {
            url: None,
            username: None,
            password: None,
            password_file: None,
            timeout_secs: default_foreman_timeout(),
            max_concurrency: default_foreman_concurrency(),
            require_admin: false,
            ssl_cert: None,
            ssl_key: None,
            ssl_ca: None,
        }
    }
}

fn default_foreman_timeout() -> u64 {
    30
}
fn default_foreman_concurrency() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Backstop lifetime of a cached ENC document.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Lifetime of shared layers (hostgroups, taxonomies, settings, …).
    #[serde(default = "default_layer_ttl")]
    pub layer_ttl_secs: u64,
    /// Lifetime of a cached "no such host".
    #[serde(default = "default_not_found_ttl")]
    pub not_found_ttl_secs: u64,
    /// Age after which a document fetched from Foreman is refreshed in the
    /// background while the old one is still served.
    #[serde(default = "default_foreman_ttl")]
    pub foreman_refresh_secs: u64,
    /// Byte budget of cached documents (bodies + keys).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// How long past `ttl_secs` a host's last good document is still served
    /// (marked stale) when no database answers; 0 disables.
    #[serde(default = "default_stale_grace")]
    pub stale_grace_secs: u64,
    /// `false`: no document is cached, every ENC request is built from the
    /// database (shared layers are still kept). For diagnosis, and the
    /// benchmark's uncached baseline; never for production.
    #[serde(default = "default_documents")]
    pub documents: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_secs: default_ttl(),
            layer_ttl_secs: default_layer_ttl(),
            not_found_ttl_secs: default_not_found_ttl(),
            foreman_refresh_secs: default_foreman_ttl(),
            max_bytes: default_max_bytes(),
            stale_grace_secs: default_stale_grace(),
            documents: default_documents(),
        }
    }
}

fn default_ttl() -> u64 {
    300
}
fn default_layer_ttl() -> u64 {
    60
}
fn default_not_found_ttl() -> u64 {
    5
}
fn default_foreman_ttl() -> u64 {
    60
}
fn default_max_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_stale_grace() -> u64 {
    3600
}
fn default_documents() -> bool {
    true
}

/// What Foreman takes from its own host rather than its database.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EncConfig {
    /// Foreman's `foreman_url` when the settings table has no row for it
    /// (Foreman derives it from its own FQDN); its host part ends every ssh
    /// key comment.
    pub foreman_url: Option<String>,
    /// Files whose contents are `server_ca` / `ssl_ca`.
    pub server_ca_file: Option<PathBuf>,
    pub ssl_ca_file: Option<PathBuf>,
    /// Crypted fallback root password (the `root_pass` setting).
    pub root_pass: Option<Secret>,
    /// Overrides like Foreman's `settings.yaml`: name → YAML value.
    #[serde(default)]
    pub settings: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter, e.g. `info` or `pvc_bridge=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "info".into()
}

/// Fact and report uploads (`[writes]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritesRaw {
    /// Larger fact or report bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Facts left out of the facts digest (dotted paths, `*` within a
    /// segment), so uptime and free memory do not count as a change.
    #[serde(deserialize_with = "string_or_list")]
    pub volatile_facts: Vec<String>,
    /// Directory of the durable spool that keeps uploads while the primary
    /// is unreachable; unset: no spool, such uploads get 503.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Bound on the spool's size on disk.
    pub spool_max_bytes: u64,
    /// Facts the ENC depends on (Foreman derives the host's OS, domain,
    /// interfaces, environment and taxonomy from them): a change of these is
    /// forwarded to Foreman at once, before the host's next ENC answer.
    #[serde(deserialize_with = "string_or_list")]
    pub enc_facts: Vec<String>,
}

impl Default for WritesRaw {
    fn default() -> Self {
        WritesRaw {
            max_body_bytes: default_writes_max_body_bytes(),
            volatile_facts: default_volatile_facts(),
            spool_dir: None,
            spool_max_bytes: 1024 * 1024 * 1024,
            enc_facts: default_enc_facts(),
        }
    }
}

/// 8 MiB: a large facter JSON is a few hundred KiB; base64 adds a third.
pub fn default_writes_max_body_bytes() -> usize {
    8 * 1024 * 1024
}

/// Facts that change on every run without anything about the host changing.
pub fn default_volatile_facts() -> Vec<String> {
    [
        "_timestamp",
        "uptime*",
        "system_uptime",
        "load_averages",
        "memoryfree*",
        "swapfree*",
        "memory.*.available*",
        "memory.*.used*",
        "memory.*.capacity",
        "mountpoints.*.available*",
        "mountpoints.*.used*",
        "mountpoints.*.capacity",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Forwarding uploads to Foreman (`[forward]`), when `foreman.url` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardRaw {
    /// Forward at all (with `foreman.url` set).
    pub enabled: bool,
    /// Items sent to Foreman per second at most, by the forwarding leader.
    pub rate_per_sec: f64,
    /// Requests to Foreman in flight at most, by the forwarding leader.
    pub concurrency: usize,
    /// Forward a new host's facts, and facts the ENC depends on, during the
    /// upload itself (Foreman must know them before the host's next ENC
    /// answer).
    pub sync: bool,
    /// Synchronous forwards in flight at most per bridge process; an upload
    /// that finds none free leaves its facts to the background forwarder.
    pub sync_concurrency: usize,
    /// Foreman refused an item (4xx) this many times: it is set aside
    /// (`dead`, kept and counted) until the host's next upload.
    pub max_attempts: u32,
    /// Longest wait between two attempts of one item.
    pub max_backoff_secs: f64,
}

impl Default for ForwardRaw {
    fn default() -> Self {
        ForwardRaw {
            enabled: true,
            rate_per_sec: 20.0,
            concurrency: 4,
            sync: true,
            sync_concurrency: 4,
            max_attempts: 10,
            max_backoff_secs: 300.0,
        }
    }
}

/// The git audit trail (`[audit]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The bare repository (created when missing); unset: no audit trail.
    pub repo: Option<PathBuf>,
    /// Events committed per round at most.
    pub batch: usize,
    /// How often the leader looks for new events.
    pub every_secs: f64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            repo: None,
            batch: 1000,
            every_secs: 1.0,
        }
    }
}

/// The change feed (`[changes]`): following `pvc.changes` to drop exactly
/// the cached entries a change in Foreman affects.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChangesConfig {
    /// Follow the feed. Off: caches only expire (`cache.ttl_secs`).
    pub enabled: bool,
    /// How often the feed is read.
    pub poll_ms: u64,
    /// Rows read at most per read.
    pub batch: i64,
    /// Rows read again at start, to catch transactions still running then.
    pub start_window: i64,
    /// Rows are kept this long (a bridge away longer flushes its caches).
    pub keep_secs: u64,
    /// How often a bridge prunes older rows.
    pub prune_every_secs: u64,
    /// The role `migrate` makes owner of the trigger function (it may only
    /// insert into `pvc.changes`); created when missing.
    pub owner_role: String,
    /// The `/host` directory is rebuilt at most this often for changes.
    pub directory_min_interval_ms: u64,
}

impl Default for ChangesConfig {
    fn default() -> Self {
        ChangesConfig {
            enabled: true,
            poll_ms: 200,
            batch: 5000,
            start_window: 10_000,
            keep_secs: 3600,
            prune_every_secs: 60,
            owner_role: "pvc_changes".into(),
            directory_min_interval_ms: 2000,
        }
    }
}

/// HTTPS (`[tls]`); without it the bridge serves plain HTTP.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsRaw {
    /// The bridge's certificate (PEM; leaf first, then any chain).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 RSA as Puppet writes, or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM) trusted for client certificates: the Puppet CA root
    /// and intermediates (Puppet's `certs/ca.pem`).
    pub client_ca_file: Option<PathBuf>,
    /// CRLs (PEM) checked for client certificates (Puppet's `crl.pem`).
    #[serde(deserialize_with = "string_or_list")]
    pub client_crl_files: Vec<String>,
    /// The CA's CRL endpoint (https), fetched every `crl_refresh_secs`:
    /// `https://puppet:8140/puppet-ca/v1/certificate_revocation_list/ca`.
    pub client_crl_url: Option<String>,
    /// Default: true when `client_ca_file` is set.
    pub require_client_cert: Option<bool>,
    /// How often the files are checked for a change. Default 10.
    pub reload_secs: Option<u64>,
    /// How often `client_crl_url` is fetched. Default 300.
    pub crl_refresh_secs: Option<u64>,
}

/// Who may ask what (`[access]`; see `docs/security.md`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessRaw {
    /// Puppetserver certnames: `/node`, Foreman's uploads, `/ppm`.
    #[serde(deserialize_with = "string_or_list")]
    pub server_certnames: Vec<String>,
    /// Certnames whose certificates may use the admin API.
    #[serde(deserialize_with = "string_or_list")]
    pub admin_certnames: Vec<String>,
    /// File holding the admin bearer token (read at start).
    pub admin_token_file: Option<PathBuf>,
    /// File holding the puppetservers' bearer token (read at start).
    pub server_token_file: Option<PathBuf>,
}

/// Facts Foreman's fact import turns into what the ENC shows: operating
/// system, architecture, domain and interfaces (`foreman_interfaces`,
/// `foreman_subnets`), Puppet environment, location, organization and
/// hostgroup (`foreman_*`).
pub fn default_enc_facts() -> Vec<String> {
    [
        "os",
        "operatingsystem*",
        "osfamily",
        "lsbdist*",
        "architecture",
        "hardwaremodel",
        "domain",
        "fqdn",
        "hostname",
        "networking",
        "interfaces",
        "ipaddress*",
        "macaddress*",
        "netmask*",
        "network*",
        "mtu_*",
        "environment",
        "agent_specified_environment",
        "foreman_*",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Run scheduling: periods, capacity, puppetservers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerRaw {
    pub target_period_secs: f64,
    pub min_interval_secs: f64,
    pub max_interval_secs: f64,
    pub target_utilization: f64,
    pub run_cost_secs: f64,
    pub lease_secs: f64,
    pub check_interval_secs: f64,
    pub min_check_interval_secs: f64,
    pub max_check_interval_secs: f64,
    pub fact_interval_secs: f64,
    pub forced_runs_per_hour: f64,
    pub forced_runs_burst: f64,
    pub burst_secs: f64,
    pub server_down_after_secs: f64,
    pub converge_spread: f64,
    /// Host parameters named `<prefix><name>` become `FACTER_<NAME>`.
    pub flag_prefix: String,
    /// Pool of hosts with neither `pvc_server_pool` nor a location.
    pub default_pool: String,
    /// How often the host directory is re-read from a replica.
    pub hosts_refresh_secs: u64,
    pub status_poll_secs: f64,
    pub status_timeout_secs: f64,
    /// Puppet CA and the bridge's own certificate for the status API.
    pub status_ca_file: Option<PathBuf>,
    pub status_cert_file: Option<PathBuf>,
    pub status_key_file: Option<PathBuf>,
    /// Largest `/report` body accepted.
    pub max_report_bytes: usize,
    pub servers: Vec<ServerRaw>,
}

impl Default for SchedulerRaw {
    fn default() -> Self {
        let d = crate::schedule::SchedulerConfig::default();
        SchedulerRaw {
            target_period_secs: d.target_period,
            min_interval_secs: d.min_interval,
            max_interval_secs: d.max_interval,
            target_utilization: d.target_utilization,
            run_cost_secs: d.run_cost,
            lease_secs: d.lease_secs,
            check_interval_secs: d.check_interval,
            min_check_interval_secs: d.min_check_interval,
            max_check_interval_secs: d.max_check_interval,
            fact_interval_secs: d.fact_interval,
            forced_runs_per_hour: d.forced_per_hour,
            forced_runs_burst: d.forced_burst,
            burst_secs: d.burst_secs,
            server_down_after_secs: d.server_down_after,
            converge_spread: d.converge_spread,
            flag_prefix: "pvc_facter_".into(),
            default_pool: "default".into(),
            hosts_refresh_secs: 30,
            status_poll_secs: 2.0,
            status_timeout_secs: 5.0,
            status_ca_file: None,
            status_cert_file: None,
            status_key_file: None,
            max_report_bytes: 1024 * 1024,
            servers: Vec::new(),
        }
    }
}

/// One puppetserver (`[[scheduler.servers]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRaw {
    /// As agents reach it (`PVC_PUPPET_MASTER`).
    pub name: String,
    #[serde(default = "default_pool_name")]
    pub pool: String,
    /// JRubies until the status API or a push says otherwise.
    #[serde(default = "default_jrubies")]
    pub jrubies: u32,
    /// `https://host:8140`: poll its status API.
    pub status_url: Option<String>,
    /// Capacity arrives by `POST /ppm` (the original pvc push).
    #[serde(default)]
    pub pushed: bool,
}

fn default_pool_name() -> String {
    "default".into()
}
fn default_jrubies() -> u32 {
    4
}

/// Accepts `["a", "b"]` or `"a,b"` (environment variables are strings).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Either::Many(v) => v,
    })
}

impl RawConfig {
    /// Every configuration key as a dotted path (`database.primary`), for
    /// the check that `docs/configuration.md` documents them all.
    pub fn keys() -> Vec<String> {
        let defaults: RawConfig = config::Config::builder()
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("every key has a default");
        let mut keys = Vec::new();
        collect_keys(
            "",
            &serde_json::to_value(defaults).expect("configuration serializes"),
            &mut keys,
        );
        keys
    }
}

fn collect_keys(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
    match value.as_object() {
        // `enc.settings` is a free-form map: its own key is the documented one.
        Some(object) if prefix != "enc.settings" => {
            for (name, child) in object {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                collect_keys(&path, child, keys);
            }
        }
        _ => keys.push(prefix.to_owned()),
    }
}

/// A configuration that passed validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `plain_http = true`: serving without `[tls]` was asked for.
    pub plain_http: bool,
    pub workers: usize,
    pub database_primary: String,
    pub database_replicas: Vec<String>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Replica health checks and routing (`database.health_*`,
    /// `max_lag_bytes`, `blacklist_*`).
    pub replica_health: crate::store::health::HealthSettings,
    pub foreman: ForemanConfig,
    pub foreman_url: Option<String>,
    pub cache: CacheConfig,
    pub enc: EncConfig,
    pub log: LogConfig,
    pub scheduler: SchedulerSettings,
    pub writes: crate::writes::WriteSettings,
    /// `None`: no forwarding (no `foreman.url`, or `forward.enabled` off).
    pub forward: Option<ForwardSettings>,
    pub audit: AuditConfig,
    pub changes: ChangesConfig,
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Who may ask what; tokens already read.
    pub access: crate::access::Policy,
    pub http: HttpLimits,
}

/// HTTPS, validated (see [`TlsRaw`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `None`: client certificates are neither asked for nor accepted.
    pub client_ca_file: Option<PathBuf>,
    pub client_crl_files: Vec<PathBuf>,
    /// Fetched CRLs (https only); needs `client_ca_file`, which the CRL
    /// server's certificate must chain to.
    pub client_crl_url: Option<reqwest::Url>,
    /// `false`: anonymous clients are served too (a presented certificate
    /// is still verified).
    pub require_client_cert: bool,
    /// How often the files are read again to see whether they changed.
    pub reload_interval: Duration,
    /// How often `client_crl_url` is fetched.
    pub crl_refresh_interval: Duration,
}

impl TlsSettings {
    /// Default of `tls.reload_secs`.
    pub const DEFAULT_RELOAD: Duration = Duration::from_secs(10);
    /// Default of `tls.crl_refresh_secs`.
    pub const DEFAULT_CRL_REFRESH: Duration = Duration::from_secs(300);
}

/// Forwarding, validated (see [`ForwardRaw`]).
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub rate_per_sec: f64,
    pub concurrency: usize,
    pub sync: bool,
    pub sync_concurrency: usize,
    pub max_attempts: u32,
    pub max_backoff: Duration,
    /// How long a claimed item is held: a request's timeout and a margin.
    pub claim: Duration,
    pub timeout: Duration,
}

/// The scheduler's part of a validated configuration.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub config: crate::schedule::SchedulerConfig,
    pub servers: Vec<ServerRaw>,
    pub flag_prefix: String,
    pub default_pool: String,
    pub hosts_refresh: Duration,
    /// Directory rebuilds for changes seen in the feed are at least this
    /// far apart (`changes.directory_min_interval_ms`).
    pub directory_min_interval: Duration,
    pub status_poll: Duration,
    pub status_timeout: Duration,
    pub status_ca_file: Option<PathBuf>,
    pub status_cert_file: Option<PathBuf>,
    pub status_key_file: Option<PathBuf>,
    pub max_report_bytes: usize,
}

/// Everything wrong with a configuration, one line per key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// Reads `file` (if any) and the `PVC_*` environment.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    load_from(file, std::env::vars())
}

/// Like `load`, with the environment given (tests pass a map).
pub fn load_from(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError(vec![format!(
                "--config: file {} does not exist",
                file.display()
            )]));
        }
        builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
    }
    let env: HashMap<String, String> = env
        .into_iter()
        // PVC_CONFIG names the file itself (the CLI reads it), not a key.
        .filter(|(k, _)| k.starts_with("PVC_") && k != "PVC_CONFIG")
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("PVC")
            .prefix_separator("_")
            .separator("__")
            .source(Some(env)),
    );
    let raw: RawConfig = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError(vec![e.to_string()]))?;
    validate(raw)
}

/// Checks every key; collects all errors before failing.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();
    let listen = raw
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| {
            errors.push(format!(
                "listen: {:?} is not an address:port ({e})",
                raw.listen
            ))
        })
        .ok();
    let primary = match raw.database.primary.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            check_pg_url("database.primary", url, &mut errors);
            url.to_owned()
        }
        _ => {
            errors.push("database.primary: required (PostgreSQL URL of Foreman's primary, or PVC_DATABASE__PRIMARY)".into());
            String::new()
        }
    };
    for (i, url) in raw.database.replicas.iter().enumerate() {
        check_pg_url(&format!("database.replicas[{i}]"), url, &mut errors);
    }
    if raw.database.pool_size == 0 {
        errors.push("database.pool_size: must be at least 1".into());
    }
    if raw.database.connect_timeout_secs == 0 {
        errors.push("database.connect_timeout_secs: must be at least 1".into());
    }
    if raw.database.health_check_ms < 10 {
        errors.push("database.health_check_ms: must be at least 10".into());
    }
    if raw.database.health_timeout_ms < 10 {
        errors.push("database.health_timeout_ms: must be at least 10".into());
    }
    if raw.database.blacklist_secs == 0 {
        errors.push("database.blacklist_secs: must be at least 1".into());
    }
    if raw.database.blacklist_max_secs < raw.database.blacklist_secs {
        errors.push("database.blacklist_max_secs: must be at least database.blacklist_secs".into());
    }
    let foreman_url = raw
        .foreman
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if let Some(url) = foreman_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(format!(
                "foreman.url: {url:?} must start with http:// or https://"
            ));
        }
    }
    let mut foreman = raw.foreman.clone();
    if let Some(path) = &raw.foreman.password_file {
        match std::fs::read_to_string(path) {
            Ok(text) => foreman.password = Some(Secret::new(text.lines().next().unwrap_or(""))),
            Err(e) => errors.push(format!(
                "foreman.password_file: cannot read {}: {e}",
                path.display()
            )),
        }
    }
    if foreman.max_concurrency == 0 {
        errors.push("foreman.max_concurrency: must be at least 1".into());
    }
    if raw.cache.ttl_secs == 0 {
        errors.push("cache.ttl_secs: must be at least 1".into());
    }
    if raw.cache.layer_ttl_secs == 0 {
        errors.push("cache.layer_ttl_secs: must be at least 1".into());
    }
    if raw.cache.max_bytes < 1024 * 1024 {
        errors.push("cache.max_bytes: must be at least 1048576 (1 MiB)".into());
    }
    for (key, path) in [
        ("enc.server_ca_file", &raw.enc.server_ca_file),
        ("enc.ssl_ca_file", &raw.enc.ssl_ca_file),
    ] {
        if let Some(path) = path {
            if let Err(e) = std::fs::metadata(path) {
                errors.push(format!("{key}: cannot read {}: {e}", path.display()));
            }
        }
    }
    if let Some(pass) = &raw.enc.root_pass {
        if !pass.expose().starts_with('$') {
            errors.push("enc.root_pass: must be a crypted password ($6$salt$hash); Foreman would crypt a plain one with a random salt".into());
        }
    }
    for (name, value) in &raw.enc.settings {
        if let Err(e) = pvc_psych::load(value) {
            errors.push(format!("enc.settings.{name}: not a YAML value ({e})"));
        }
    }
    if !matches!(raw.log.format.as_str(), "text" | "json") {
        errors.push(format!(
            "log.format: {:?} must be \"text\" or \"json\"",
            raw.log.format
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        errors.push(format!(
            "log.level: {:?} is not a valid filter ({e})",
            raw.log.level
        ));
    }
    let mut scheduler = validate_scheduler(&raw.scheduler, &mut errors);
    scheduler.directory_min_interval = Duration::from_millis(raw.changes.directory_min_interval_ms);
    let writes = validate_writes(&raw.writes, &mut errors);
    let forward = validate_forward(&raw.forward, &foreman, foreman_url.is_some(), &mut errors);
    if raw.audit.batch == 0 {
        errors.push("audit.batch: must be at least 1".into());
    }
    if !(raw.audit.every_secs.is_finite() && raw.audit.every_secs > 0.0) {
        errors.push("audit.every_secs: must be a positive number of seconds".into());
    }
    validate_changes(&raw.changes, &mut errors);
    for (key, value) in [
        (
            "http.request_head_timeout_ms",
            raw.http.request_head_timeout_ms,
        ),
        ("http.keep_alive_secs", raw.http.keep_alive_secs),
        ("http.disconnect_timeout_ms", raw.http.disconnect_timeout_ms),
    ] {
        if value == 0 {
            errors.push(format!("{key}: must be at least 1"));
        }
    }
    if raw.http.max_header_bytes < 1024 {
        errors.push("http.max_header_bytes: must be at least 1024".into());
    }
    for (key, path) in [
        ("foreman.ssl_cert", &foreman.ssl_cert),
        ("foreman.ssl_key", &foreman.ssl_key),
        ("foreman.ssl_ca", &foreman.ssl_ca),
    ] {
        if let Some(path) = path {
            if !path.is_file() {
                errors.push(format!("{key}: {} is not a readable file", path.display()));
            }
        }
    }
    if foreman.ssl_cert.is_some() != foreman.ssl_key.is_some() {
        errors.push("foreman.ssl_cert and foreman.ssl_key: give both or neither".into());
    }
    let tls = validate_tls(&raw.tls, &mut errors);
    if raw.plain_http && tls.is_some() {
        errors.push("plain_http: true contradicts [tls]; remove one of them".into());
    }
    let access = validate_access(&raw.access, &raw.tls, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigError(errors));
    }
    Ok(Config {
        listen: listen.expect("checked above"),
        plain_http: raw.plain_http,
        workers: raw.workers,
        database_primary: primary,
        database_replicas: raw.database.replicas,
        pool_size: raw.database.pool_size,
        connect_timeout: Duration::from_secs(raw.database.connect_timeout_secs),
        replica_health: crate::store::health::HealthSettings {
            check_every: Duration::from_millis(raw.database.health_check_ms),
            timeout: Duration::from_millis(raw.database.health_timeout_ms),
            max_lag_bytes: raw.database.max_lag_bytes,
            blacklist: Duration::from_secs(raw.database.blacklist_secs),
            blacklist_max: Duration::from_secs(raw.database.blacklist_max_secs),
        },
        foreman_url: foreman_url.map(str::to_owned),
        foreman,
        cache: raw.cache,
        enc: raw.enc,
        log: raw.log,
        scheduler,
        writes,
        forward,
        audit: AuditConfig {
            // An empty PVC_AUDIT__REPO= means unset, not the current directory.
            repo: raw.audit.repo.filter(|p| !p.as_os_str().is_empty()),
            ..raw.audit
        },
        changes: raw.changes,
        tls,
        access,
        http: raw.http,
    })
}

/// `[access]`: certnames validated, tokens read from their files (never
/// logged). Certificate allowlists need verified client certificates.
fn validate_access(
    raw: &AccessRaw,
    tls: &TlsRaw,
    errors: &mut Vec<String>,
) -> crate::access::Policy {
    use crate::access::{Policy, Token};
    let client_certs = tls
        .client_ca_file
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty());
    let mut certnames = |key: &str, names: &[String]| {
        let mut set = std::collections::BTreeSet::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            match name.parse::<crate::certname::Certname>() {
                Ok(certname) => {
                    set.insert(certname);
                }
                Err(e) => errors.push(format!("{key}: {name:?}: {e}")),
            }
        }
        if !set.is_empty() && !client_certs {
            errors.push(format!(
                "{key}: needs tls.client_ca_file (without it no client certificate is verified)"
            ));
        }
        set
    };
    let server_certnames = certnames("access.server_certnames", &raw.server_certnames);
    let admin_certnames = certnames("access.admin_certnames", &raw.admin_certnames);
    let mut token = |key: &str, path: &Option<PathBuf>| {
        let path = path.as_ref().filter(|p| !p.as_os_str().is_empty())?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(format!("{key}: cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let token = text.trim();
        if token.len() < Token::MIN_LEN {
            errors.push(format!(
                "{key}: {}: the token must be at least {} characters (surrounding blanks removed)",
                path.display(),
                Token::MIN_LEN
            ));
            return None;
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(format!(
                "{key}: {}: the token must be one word (no blanks or line breaks inside)",
                path.display()
            ));
            return None;
        }
        Some(Token::new(token))
    };
    let admin_token = token("access.admin_token_file", &raw.admin_token_file);
    let server_token = token("access.server_token_file", &raw.server_token_file);
    if let (Some(admin), Some(server)) = (&admin_token, &server_token) {
        if admin == server {
            errors.push(
                "access.server_token_file: holds the same token as access.admin_token_file".into(),
            );
        }
    }
    Policy {
        client_certs,
        server_certnames,
        admin_certnames,
        admin_token,
        server_token,
    }
}

fn validate_changes(raw: &ChangesConfig, errors: &mut Vec<String>) {
    if raw.poll_ms == 0 {
        errors.push("changes.poll_ms: must be at least 1".into());
    }
    if raw.batch < 1 {
        errors.push("changes.batch: must be at least 1".into());
    }
    if raw.start_window < 0 {
        errors.push("changes.start_window: must not be negative".into());
    }
    if raw.keep_secs < 60 {
        errors.push("changes.keep_secs: must be at least 60".into());
    }
    if raw.prune_every_secs == 0 {
        errors.push("changes.prune_every_secs: must be at least 1".into());
    }
    if !crate::store::pvc::changes::valid_role(&raw.owner_role) {
        errors.push(format!(
            "changes.owner_role: {:?} is not a lowercase SQL identifier ([a-z_][a-z0-9_]*, at most 63 bytes)",
            raw.owner_role
        ));
    }
}

impl Config {
    /// Whether this configuration may serve: HTTPS, or plain HTTP asked
    /// for by `plain_http = true` (never by forgetting `[tls]`). `serve`
    /// and `check-config` refuse otherwise; other commands serve nothing.
    pub fn check_serving(&self) -> Result<(), ConfigError> {
        if self.tls.is_none() && !self.plain_http {
            return Err(ConfigError(vec![
                "tls: no [tls] configured; set tls.cert_file and tls.key_file (see docs/security.md), \
                 or plain_http = true (PVC_PLAIN_HTTP=true) to serve unencrypted HTTP behind a \
                 TLS-terminating proxy or on a trusted network"
                    .into(),
            ]));
        }
        Ok(())
    }
}

/// `None` when no `[tls]` key is set (plain HTTP). The files are read and
/// parsed here, so that `check-config` and start-up name a bad one.
fn validate_tls(raw: &TlsRaw, errors: &mut Vec<String>) -> Option<TlsSettings> {
    // An empty PVC_TLS__…= means unset.
    let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let cert_file = path(&raw.cert_file);
    let key_file = path(&raw.key_file);
    let client_ca_file = path(&raw.client_ca_file);
    let client_crl_files: Vec<PathBuf> = raw
        .client_crl_files
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    let crl_url = raw
        .client_crl_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if cert_file.is_none()
        && key_file.is_none()
        && client_ca_file.is_none()
        && client_crl_files.is_empty()
        && crl_url.is_none()
        && raw.require_client_cert.is_none()
        && raw.reload_secs.is_none()
        && raw.crl_refresh_secs.is_none()
    {
        return None;
    }
    let before = errors.len();
    if cert_file.is_none() {
        errors.push("tls.cert_file: required when any tls key is set".into());
    }
    if key_file.is_none() {
        errors.push("tls.key_file: required when any tls key is set".into());
    }
    if client_ca_file.is_none() {
        if raw.require_client_cert == Some(true) {
            errors.push("tls.require_client_cert: needs tls.client_ca_file".into());
        }
        if !client_crl_files.is_empty() {
            errors.push("tls.client_crl_files: need tls.client_ca_file".into());
        }
        if crl_url.is_some() {
            errors.push("tls.client_crl_url: needs tls.client_ca_file".into());
        }
    }
    let client_crl_url = crl_url.and_then(|text| match reqwest::Url::parse(text) {
        Ok(url) if url.scheme() == "https" && url.has_host() => Some(url),
        Ok(_) => {
            errors.push(format!(
                "tls.client_crl_url: {text:?}: an https:// URL is expected (the CA's CRL endpoint)"
            ));
            None
        }
        Err(e) => {
            errors.push(format!("tls.client_crl_url: {text:?}: {e}"));
            None
        }
    });
    let mut interval = |key: &str, secs: Option<u64>, default: Duration| match secs {
        None => default,
        Some(0) => {
            errors.push(format!("tls.{key}: must be at least 1"));
            default
        }
        Some(secs) => Duration::from_secs(secs),
    };
    let reload_interval = interval("reload_secs", raw.reload_secs, TlsSettings::DEFAULT_RELOAD);
    let crl_refresh_interval = interval(
        "crl_refresh_secs",
        raw.crl_refresh_secs,
        TlsSettings::DEFAULT_CRL_REFRESH,
    );
    let settings = TlsSettings {
        cert_file: cert_file?,
        key_file: key_file?,
        require_client_cert: raw.require_client_cert.unwrap_or(client_ca_file.is_some()),
        client_ca_file,
        client_crl_files,
        client_crl_url,
        reload_interval,
        crl_refresh_interval,
    };
    // The first unreadable or malformed file, beside the errors above. The
    // CRL URL is not fetched here: `check-config` needs no network.
    if let Err(e) = crate::tls::check(&settings) {
        errors.push(format!("{e:#}"));
    }
    (errors.len() == before).then_some(settings)
}

fn validate_forward(
    raw: &ForwardRaw,
    foreman: &ForemanConfig,
    has_url: bool,
    errors: &mut Vec<String>,
) -> Option<ForwardSettings> {
    if !(raw.rate_per_sec.is_finite() && raw.rate_per_sec > 0.0) {
        errors.push("forward.rate_per_sec: must be a positive number".into());
    }
    if raw.concurrency == 0 {
        errors.push("forward.concurrency: must be at least 1".into());
    }
    if raw.sync_concurrency == 0 {
        errors.push("forward.sync_concurrency: must be at least 1".into());
    }
    if raw.max_attempts == 0 {
        errors.push("forward.max_attempts: must be at least 1".into());
    }
    if !(raw.max_backoff_secs.is_finite() && raw.max_backoff_secs >= 1.0) {
        errors.push("forward.max_backoff_secs: must be at least 1".into());
    }
    if !(raw.enabled && has_url) {
        return None;
    }
    let timeout = Duration::from_secs(foreman.timeout_secs.max(1));
    Some(ForwardSettings {
        rate_per_sec: raw.rate_per_sec,
        concurrency: raw.concurrency.max(1),
        sync: raw.sync,
        sync_concurrency: raw.sync_concurrency.max(1),
        max_attempts: raw.max_attempts.max(1),
        max_backoff: Duration::from_secs_f64(raw.max_backoff_secs.clamp(1.0, 86_400.0)),
        claim: timeout + Duration::from_secs(30),
        timeout,
    })
}

fn validate_writes(raw: &WritesRaw, errors: &mut Vec<String>) -> crate::writes::WriteSettings {
    const MAX: usize = 256 * 1024 * 1024;
    if !(1024..=MAX).contains(&raw.max_body_bytes) {
        errors.push(format!(
            "writes.max_body_bytes: must be between 1024 and {MAX}"
        ));
    }
    let volatile = crate::writes::VolatileFacts::new(&raw.volatile_facts)
        .map_err(|e| errors.push(format!("writes.volatile_facts: {e}")))
        .unwrap_or_else(|()| {
            crate::writes::VolatileFacts::new(&[]).expect("no patterns are valid")
        });
    // A spool must hold at least one largest upload (plus framing).
    let min_spool = raw.max_body_bytes as u64 + 64 * 1024;
    if raw.spool_dir.is_some() && raw.spool_max_bytes < min_spool {
        errors.push(format!(
            "writes.spool_max_bytes: must be at least writes.max_body_bytes + 65536 ({min_spool})"
        ));
    }
    let enc_facts = crate::writes::VolatileFacts::new(&raw.enc_facts)
        .map_err(|e| errors.push(format!("writes.enc_facts: {e}")))
        .unwrap_or_else(|()| {
            crate::writes::VolatileFacts::new(&[]).expect("no patterns are valid")
        });
    let spool = raw.spool_dir.as_ref().map(|dir| crate::spool::SpoolConfig {
        dir: dir.clone(),
        max_bytes: raw.spool_max_bytes,
        // Segments small enough that replayed ones are deleted soon.
        segment_bytes: (64 * 1024 * 1024).min(raw.spool_max_bytes).max(min_spool),
    });
    crate::writes::WriteSettings {
        max_body_bytes: raw.max_body_bytes,
        volatile,
        enc_facts,
        spool,
    }
}

fn validate_scheduler(raw: &SchedulerRaw, errors: &mut Vec<String>) -> SchedulerSettings {
    let mut positive = |key: &str, value: f64| {
        if !(value.is_finite() && value > 0.0) {
            errors.push(format!(
                "scheduler.{key}: must be a positive number of seconds"
            ));
        }
    };
    positive("target_period_secs", raw.target_period_secs);
    positive("min_interval_secs", raw.min_interval_secs);
    positive("max_interval_secs", raw.max_interval_secs);
    positive("run_cost_secs", raw.run_cost_secs);
    positive("lease_secs", raw.lease_secs);
    positive("check_interval_secs", raw.check_interval_secs);
    positive("min_check_interval_secs", raw.min_check_interval_secs);
    positive("max_check_interval_secs", raw.max_check_interval_secs);
    positive("burst_secs", raw.burst_secs);
    positive("server_down_after_secs", raw.server_down_after_secs);
    positive("status_poll_secs", raw.status_poll_secs);
    positive("status_timeout_secs", raw.status_timeout_secs);
    if !(raw.min_interval_secs <= raw.target_period_secs
        && raw.target_period_secs <= raw.max_interval_secs)
    {
        errors.push(
            "scheduler: min_interval_secs <= target_period_secs <= max_interval_secs must hold"
                .into(),
        );
    }
    if raw.min_check_interval_secs > raw.max_check_interval_secs {
        errors
            .push("scheduler.min_check_interval_secs: larger than max_check_interval_secs".into());
    }
    if !(raw.target_utilization > 0.0 && raw.target_utilization <= 1.0) {
        errors.push("scheduler.target_utilization: must be in (0, 1]".into());
    }
    if !(raw.converge_spread > 0.0 && raw.converge_spread <= 1.0) {
        errors.push("scheduler.converge_spread: must be in (0, 1]".into());
    }
    if raw.fact_interval_secs < 0.0 || raw.forced_runs_per_hour < 0.0 || raw.forced_runs_burst < 0.0
    {
        errors.push("scheduler: fact_interval_secs, forced_runs_per_hour and forced_runs_burst must not be negative".into());
    }
    if raw.hosts_refresh_secs == 0 {
        errors.push("scheduler.hosts_refresh_secs: must be at least 1".into());
    }
    if raw.max_report_bytes < 1024 {
        errors.push("scheduler.max_report_bytes: must be at least 1024".into());
    }
    if raw.flag_prefix.is_empty() || raw.default_pool.trim().is_empty() {
        errors.push("scheduler.flag_prefix and scheduler.default_pool must not be empty".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, server) in raw.servers.iter().enumerate() {
        let key = format!("scheduler.servers[{i}]");
        if server.name.parse::<crate::certname::Certname>().is_err() {
            errors.push(format!("{key}.name: {:?} is not a host name", server.name));
        }
        if !seen.insert(server.name.clone()) {
            errors.push(format!("{key}.name: {:?} is listed twice", server.name));
        }
        if server.jrubies == 0 {
            errors.push(format!("{key}.jrubies: must be at least 1"));
        }
        if let Some(url) = &server.status_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                errors.push(format!(
                    "{key}.status_url: {url:?} must start with https:// or http://"
                ));
            }
        }
    }
    for (key, path) in [
        ("status_ca_file", &raw.status_ca_file),
        ("status_cert_file", &raw.status_cert_file),
        ("status_key_file", &raw.status_key_file),
    ] {
        if let Some(path) = path {
            if let Err(e) = std::fs::metadata(path) {
                errors.push(format!(
                    "scheduler.{key}: cannot read {}: {e}",
                    path.display()
                ));
            }
        }
    }
    if raw.status_cert_file.is_some() != raw.status_key_file.is_some() {
        errors.push("scheduler.status_cert_file and status_key_file go together".into());
    }
    let secs = |s: f64| Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 1.0 });
    SchedulerSettings {
        config: crate::schedule::SchedulerConfig {
            target_period: raw.target_period_secs,
            min_interval: raw.min_interval_secs,
            max_interval: raw.max_interval_secs,
            target_utilization: raw.target_utilization,
            run_cost: raw.run_cost_secs,
            lease_secs: raw.lease_secs,
            check_interval: raw.check_interval_secs,
            min_check_interval: raw.min_check_interval_secs,
            max_check_interval: raw.max_check_interval_secs,
            fact_interval: raw.fact_interval_secs,
            forced_per_hour: raw.forced_runs_per_hour,
            forced_burst: raw.forced_runs_burst,
            burst_secs: raw.burst_secs,
            server_down_after: raw.server_down_after_secs,
            converge_spread: raw.converge_spread,
        },
        servers: raw.servers.clone(),
        flag_prefix: raw.flag_prefix.clone(),
        default_pool: raw.default_pool.trim().to_owned(),
        hosts_refresh: Duration::from_secs(raw.hosts_refresh_secs.max(1)),
        directory_min_interval: Duration::from_millis(
            ChangesConfig::default().directory_min_interval_ms,
        ),
        status_poll: secs(raw.status_poll_secs),
        status_timeout: secs(raw.status_timeout_secs),
        status_ca_file: raw.status_ca_file.clone(),
        status_cert_file: raw.status_cert_file.clone(),
        status_key_file: raw.status_key_file.clone(),
        max_report_bytes: raw.max_report_bytes,
    }
}

fn check_pg_url(key: &str, url: &str, errors: &mut Vec<String>) {
    if let Err(e) = url.parse::<tokio_postgres::Config>() {
        errors.push(format!(
            "{key}: {} is not a PostgreSQL URL ({e})",
            crate::store::redact_url(url)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_sets_every_documented_key() {
        let config = load_from(
            None,
            env(&[
                ("PVC_LISTEN", "0.0.0.0:9000"),
                ("PVC_DATABASE__PRIMARY", "postgres://pvc@db1/foreman"),
                (
                    "PVC_DATABASE__REPLICAS",
                    "postgres://pvc@db2/foreman, postgres://pvc@db3/foreman",
                ),
                ("PVC_FOREMAN__URL", "https://foreman.example.com"),
                ("PVC_CACHE__TTL_SECS", "30"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database_primary, "postgres://pvc@db1/foreman");
        assert_eq!(config.database_replicas.len(), 2);
        assert_eq!(
            config.foreman_url.as_deref(),
            Some("https://foreman.example.com")
        );
        assert_eq!(config.cache.ttl_secs, 30);
    }

    #[test]
    fn bad_configuration_names_every_bad_key() {
        let err = load_from(
            None,
            env(&[
                ("PVC_LISTEN", "nowhere"),
                ("PVC_FOREMAN__URL", "ftp://x"),
                ("PVC_CACHE__MAX_BYTES", "10"),
            ]),
        )
        .expect_err("invalid");
        let text = err.to_string();
        for key in [
            "listen:",
            "database.primary:",
            "foreman.url:",
            "cache.max_bytes:",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("pvc-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bridge.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\n[database]\nprimary = \"postgres://x@y/z\"\nprimray = 1\n",
        )
        .unwrap();
        let err = load_from(Some(&file), env(&[])).expect_err("unknown key");
        assert!(err.to_string().contains("primray"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pvc_config_names_the_file_not_a_key() {
        let config = load_from(
            None,
            env(&[
                ("PVC_CONFIG", "/etc/pvc-bridge/bridge.toml"),
                ("PVC_DATABASE__PRIMARY", "postgres://pvc@db1/foreman"),
            ]),
        );
        assert!(config.is_ok(), "{:?}", config.err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    /// `[tls]` from `keys` over a server certificate and the CA bundle of
    /// a fresh test CA.
    fn load_tls(keys: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let ca = pvc_testkit::certs::PuppetCa::new("Puppet CA: config.test").unwrap();
        let server = ca.issue_server(&["localhost"]).unwrap();
        let (cert, key, bundle) = (
            server.cert.to_string_lossy().into_owned(),
            server.key.to_string_lossy().into_owned(),
            ca.ca_file().to_string_lossy().into_owned(),
        );
        let mut pairs = vec![
            ("PVC_DATABASE__PRIMARY", "postgres://pvc@db1/foreman"),
            ("PVC_TLS__CERT_FILE", cert.as_str()),
            ("PVC_TLS__KEY_FILE", key.as_str()),
            ("PVC_TLS__CLIENT_CA_FILE", bundle.as_str()),
        ];
        pairs.extend_from_slice(keys);
        load_from(None, env(&pairs))
    }

    #[test]
    fn plain_http_must_be_asked_for_and_excludes_tls() {
        let primary = ("PVC_DATABASE__PRIMARY", "postgres://pvc@db1/foreman");
        let forgotten = load_from(None, env(&[primary])).expect("valid for migrate");
        let refusal = forgotten
            .check_serving()
            .expect_err("no [tls], no plain_http");
        assert!(
            refusal.to_string().contains("plain_http = true"),
            "{refusal}"
        );
        let asked = load_from(None, env(&[primary, ("PVC_PLAIN_HTTP", "true")])).expect("valid");
        assert!(asked.plain_http);
        asked.check_serving().expect("plain HTTP asked for");
        load_tls(&[])
            .expect("valid")
            .check_serving()
            .expect("HTTPS");
        let both = load_tls(&[("PVC_PLAIN_HTTP", "true")]).expect_err("contradiction");
        assert!(
            both.to_string()
                .contains("plain_http: true contradicts [tls]"),
            "{both}"
        );
    }

    #[test]
    fn tls_reload_and_crl_url_keys_have_defaults_and_are_read() {
        let tls = load_tls(&[]).expect("valid").tls.expect("[tls]");
        assert_eq!(tls.reload_interval, Duration::from_secs(10));
        assert_eq!(tls.crl_refresh_interval, Duration::from_secs(300));
        assert_eq!(tls.client_crl_url, None);

        let url = "https://puppet.example.com:8140/puppet-ca/v1/certificate_revocation_list/ca";
        let tls = load_tls(&[
            ("PVC_TLS__CLIENT_CRL_URL", url),
            ("PVC_TLS__RELOAD_SECS", "2"),
            ("PVC_TLS__CRL_REFRESH_SECS", "60"),
        ])
        .expect("valid")
        .tls
        .expect("[tls]");
        assert_eq!(tls.client_crl_url.map(String::from).as_deref(), Some(url));
        assert_eq!(tls.reload_interval, Duration::from_secs(2));
        assert_eq!(tls.crl_refresh_interval, Duration::from_secs(60));
    }

    #[test]
    fn bad_tls_reload_and_crl_url_keys_are_reported_by_name() {
        let text = load_tls(&[
            ("PVC_TLS__CLIENT_CRL_URL", "http://puppet:8140/crl"),
            ("PVC_TLS__RELOAD_SECS", "0"),
            ("PVC_TLS__CRL_REFRESH_SECS", "0"),
        ])
        .expect_err("invalid")
        .to_string();
        for key in [
            "tls.client_crl_url: \"http://puppet:8140/crl\": an https:// URL",
            "tls.reload_secs: must be at least 1",
            "tls.crl_refresh_secs: must be at least 1",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        let text = load_tls(&[("PVC_TLS__CLIENT_CRL_URL", "not a url")])
            .expect_err("invalid")
            .to_string();
        assert!(text.contains("tls.client_crl_url: \"not a url\""), "{text}");

        let text = load_from(
            None,
            env(&[
                ("PVC_DATABASE__PRIMARY", "postgres://pvc@db1/foreman"),
                ("PVC_TLS__CLIENT_CRL_URL", "https://puppet:8140/crl"),
            ]),
        )
        .expect_err("no CA")
        .to_string();
        assert!(
            text.contains("tls.client_crl_url: needs tls.client_ca_file"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod writes_tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env = vec![(
            "PVC_DATABASE__PRIMARY".to_owned(),
            "postgres://pvc@db1/foreman".to_owned(),
        )];
        env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        load_from(None, env)
    }

    #[test]
    fn writes_keys_come_from_the_environment() {
        let config = load(&[
            ("PVC_WRITES__MAX_BODY_BYTES", "4096"),
            ("PVC_WRITES__VOLATILE_FACTS", "uptime*, a.*.b"),
        ])
        .expect("valid");
        assert_eq!(config.writes.max_body_bytes, 4096);
        assert_eq!(
            config.writes.volatile,
            crate::writes::VolatileFacts::new(&["uptime*".into(), "a.*.b".into()]).expect("ok")
        );
        let defaults = load(&[]).expect("defaults");
        assert_eq!(defaults.writes.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(
            defaults.writes.volatile,
            crate::writes::WriteSettings::default().volatile
        );
    }

    #[test]
    fn the_spool_is_configured_only_with_a_directory() {
        assert!(load(&[]).expect("defaults").writes.spool.is_none());
        let config = load(&[
            ("PVC_WRITES__SPOOL_DIR", "/var/lib/pvc/spool"),
            ("PVC_WRITES__SPOOL_MAX_BYTES", "20000000"),
        ])
        .expect("valid");
        let spool = config.writes.spool.expect("spool");
        assert_eq!(spool.dir, std::path::PathBuf::from("/var/lib/pvc/spool"));
        assert_eq!(spool.max_bytes, 20_000_000);
        assert!(spool.segment_bytes <= spool.max_bytes);
        let errors = load(&[
            ("PVC_WRITES__SPOOL_DIR", "/var/lib/pvc/spool"),
            ("PVC_WRITES__SPOOL_MAX_BYTES", "4096"),
        ])
        .expect_err("smaller than one upload")
        .0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("writes.spool_max_bytes")),
            "{errors:?}"
        );
    }

    #[test]
    fn access_tokens_are_read_from_their_files() {
        let dir = std::env::temp_dir().join(format!("pvc-access-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = dir.join("admin");
        let server = dir.join("server");
        std::fs::write(&admin, "admin-0123456789abcdef\n").unwrap();
        std::fs::write(&server, "server-0123456789abcdef").unwrap();
        let config = load(&[
            ("PVC_ACCESS__ADMIN_TOKEN_FILE", admin.to_str().unwrap()),
            ("PVC_ACCESS__SERVER_TOKEN_FILE", server.to_str().unwrap()),
        ])
        .expect("valid [access]");
        let policy = &config.access;
        assert!(policy
            .admin_token
            .as_ref()
            .unwrap()
            .matches("admin-0123456789abcdef"));
        assert!(policy
            .server_token
            .as_ref()
            .unwrap()
            .matches("server-0123456789abcdef"));
        assert!(!policy.client_certs);
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_access_keys_are_reported_by_name() {
        let dir = std::env::temp_dir().join(format!("pvc-access-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let missing = dir.join("missing");
        let errors = load(&[
            ("PVC_ACCESS__ADMIN_TOKEN_FILE", short.to_str().unwrap()),
            ("PVC_ACCESS__SERVER_TOKEN_FILE", missing.to_str().unwrap()),
            (
                "PVC_ACCESS__SERVER_CERTNAMES",
                "puppet01.example.com,not a name",
            ),
            ("PVC_ACCESS__ADMIN_CERTNAMES", "ops.example.com"),
        ])
        .expect_err("invalid")
        .0;
        for (key, what) in [
            ("access.admin_token_file:", "at least 16"),
            ("access.server_token_file:", "cannot read"),
            ("access.server_certnames:", "\"not a name\""),
            ("access.server_certnames:", "needs tls.client_ca_file"),
            ("access.admin_certnames:", "needs tls.client_ca_file"),
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(key) && e.contains(what)),
                "{key} {what}: {errors:?}"
            );
        }
        let same = dir.join("same");
        std::fs::write(&same, "same-0123456789abcdef").unwrap();
        let errors = load(&[
            ("PVC_ACCESS__ADMIN_TOKEN_FILE", same.to_str().unwrap()),
            ("PVC_ACCESS__SERVER_TOKEN_FILE", same.to_str().unwrap()),
        ])
        .expect_err("one token for both")
        .0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("access.server_token_file: holds the same token")),
            "{errors:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_writes_keys_are_reported() {
        let errors = load(&[
            ("PVC_WRITES__MAX_BODY_BYTES", "10"),
            ("PVC_WRITES__VOLATILE_FACTS", "a..b"),
        ])
        .expect_err("invalid")
        .0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("writes.max_body_bytes")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("writes.volatile_facts")),
            "{errors:?}"
        );
    }
}
