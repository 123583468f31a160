//! The only module with SQL: connection pools for the primary and the read
//! replicas; Foreman's schema for the ENC (`foreman`) and for scheduling
//! (`host_params`, `runs`); the rollout plugin's tables, when installed
//! (`rollouts`); the bridge's own schema (`pvc`).
//!
//! Reads go round robin to the replicas routing finds usable (`health`:
//! checked by the monitor task, `monitor`, for replay lag and failures); a
//! replica that cannot hand out a connection is taken out at once and the
//! read tries the next one; with none left, reads fall back to the primary
//! (counted, logged once per change). Writes always go to the primary.

pub mod foreman;
pub mod health;
pub mod host_params;
pub mod monitor;
pub mod pvc;
pub mod rollouts;
pub mod runs;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use tokio_postgres::NoTls;

/// Which server a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolRole {
    Primary,
    Replica,
}

impl PoolRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolRole::Primary => "primary",
            PoolRole::Replica => "replica",
        }
    }
}

/// A backend failure: answered 503, never 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database available: {0}")]
    Unavailable(String),
    #[error("invalid database URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Counters of what the pools did, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct DbStats {
    pub replica_checkouts: AtomicU64,
    pub primary_checkouts: AtomicU64,
    /// Reads that wanted a replica but got the primary.
    pub read_fallbacks: AtomicU64,
    pub replica_errors: AtomicU64,
    /// Reads after a host's own write (see [`Db::read_after`]) served by a
    /// replica that had replayed it, and by the primary.
    pub fenced_replica_reads: AtomicU64,
    pub fenced_primary_reads: AtomicU64,
}

/// The primary and the replicas.
pub struct Db {
    primary: Pool,
    replicas: Vec<Pool>,
    next_replica: AtomicUsize,
    pub stats: DbStats,
    router: Mutex<health::Router>,
    /// `host:port` of each replica, for logs and metric labels.
    replica_labels: Vec<String>,
    /// Connections taken from each replica's pool.
    replica_reads: Vec<AtomicU64>,
    /// No replica was usable at the last read (logged once per change).
    all_out: AtomicBool,
    primary_config: tokio_postgres::Config,
    replica_configs: Vec<tokio_postgres::Config>,
}

/// Pool settings shared by all servers.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: usize,
    pub connect_timeout: Duration,
}

impl Db {
    /// Builds the pools; connections are opened lazily on first use, so the
    /// bridge starts (and answers 503) while a database is down.
    pub fn new(
        primary: &str,
        replicas: &[String],
        options: &PoolOptions,
    ) -> Result<Db, StoreError> {
        let (primary_config, primary) = build_pool(primary, options)?;
        let (replica_configs, replicas): (Vec<_>, Vec<_>) = replicas
            .iter()
            .map(|url| build_pool(url, options))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        Ok(Db {
            primary,
            router: Mutex::new(health::Router::new(
                replicas.len(),
                health::HealthSettings::default(),
            )),
            replica_labels: replica_configs.iter().map(server_label).collect(),
            replica_reads: replicas.iter().map(|_| AtomicU64::new(0)).collect(),
            replicas,
            next_replica: AtomicUsize::new(0),
            stats: DbStats::default(),
            all_out: AtomicBool::new(false),
            primary_config,
            replica_configs,
        })
    }

    /// Starts the health monitor (`store::monitor`) on the current tokio
    /// runtime. Without it every replica counts as healthy until a read
    /// fails to connect to it.
    pub fn start_monitor(
        self: &Arc<Self>,
        settings: health::HealthSettings,
    ) -> tokio::task::JoinHandle<()> {
        monitor::spawn(self, settings)
    }

    /// A connection for reads: a usable replica, round robin, else the
    /// primary. A replica whose pool cannot hand out a connection is taken
    /// out at once and the next one is tried, so a replica that dies fails
    /// no read that had not yet got its connection.
    pub async fn read(&self) -> Result<(Object, PoolRole), StoreError> {
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let candidates = self.router_mut().candidates(start, Instant::now());
        for i in candidates {
            if let Some(client) = self.checkout_replica(i).await {
                return Ok((client, PoolRole::Replica));
            }
        }
        self.fall_back();
        Ok((self.write().await?, PoolRole::Primary))
    }

    /// A connection for reads that must see everything up to the primary's
    /// WAL position `lsn` (a write this bridge knows of, such as Foreman's
    /// import of a host's facts): a replica that has replayed that far,
    /// else the primary. A replica the monitor last saw past `lsn` is taken
    /// without a round trip; otherwise the usable replicas are asked.
    pub async fn read_after(&self, lsn: &str) -> Result<(Object, PoolRole), StoreError> {
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let (known, candidates) = {
            let router = self.router_mut();
            let candidates = router.candidates(start, Instant::now());
            let wanted = health::parse_lsn(lsn);
            let known: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| wanted.is_some_and(|w| router.replay_lsn(i).is_some_and(|r| r >= w)))
                .collect();
            (known, candidates)
        };
        for i in known {
            if let Some(client) = self.checkout_replica(i).await {
                self.stats
                    .fenced_replica_reads
                    .fetch_add(1, Ordering::Relaxed);
                return Ok((client, PoolRole::Replica));
            }
        }
        for i in candidates {
            if !self.router_mut().usable(i, Instant::now()) {
                continue;
            }
            let Some(client) = self.checkout_replica(i).await else {
                continue;
            };
            let position = client
                .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
                .await;
            match position {
                Ok(row) => {
                    let replay = row.get::<_, Option<String>>(0);
                    let replay = replay.as_deref().and_then(health::parse_lsn);
                    if let Some(replay) = replay {
                        // Later reads after this position need not ask.
                        self.router_mut().observe_replay(i, replay);
                    }
                    if replay
                        .zip(health::parse_lsn(lsn))
                        .is_some_and(|(r, w)| r >= w)
                    {
                        self.stats
                            .fenced_replica_reads
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok((client, PoolRole::Replica));
                    }
                }
                Err(error) => {
                    self.stats.replica_errors.fetch_add(1, Ordering::Relaxed);
                    self.replica_failed(i, &error.to_string());
                }
            }
        }
        self.stats
            .fenced_primary_reads
            .fetch_add(1, Ordering::Relaxed);
        Ok((self.write().await?, PoolRole::Primary))
    }

    /// A connection to the usable replica with the newest known replay
    /// position, else the primary: for following the change feed, so a
    /// lagging replica does not delay every bridge's invalidations. The
    /// index is the replica's, for [`Db::observe_replay`].
    pub async fn read_freshest(&self) -> Result<(Object, Option<usize>), StoreError> {
        let freshest = self.router_mut().freshest(Instant::now());
        if let Some(i) = freshest {
            if let Some(client) = self.checkout_replica(i).await {
                return Ok((client, Some(i)));
            }
        }
        Ok((self.write().await?, None))
    }

    /// Replica `i` was seen at replay position `lsn` by a read of its own.
    pub fn observe_replay(&self, i: usize, lsn: u64) {
        self.router_mut().observe_replay(i, lsn);
    }

    /// A connection to the primary.
    pub async fn write(&self) -> Result<Object, StoreError> {
        let client = self
            .primary
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("primary: {e}")))?;
        self.stats.primary_checkouts.fetch_add(1, Ordering::Relaxed);
        Ok(client)
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// A replica further behind the primary than this many bytes of WAL is
    /// taken out of rotation (`database.max_lag_bytes`, applied by the
    /// health monitor; the default until it starts).
    pub fn max_lag_bytes(&self) -> u64 {
        self.router_mut().settings().max_lag_bytes
    }

    /// Each replica's label (`host:port`, no credentials) and state, for
    /// `/metrics` and tests.
    pub fn replica_states(&self) -> Vec<ReplicaState> {
        let router = self.router_mut();
        let now = Instant::now();
        (0..self.replicas.len())
            .map(|i| ReplicaState {
                label: self.replica_labels[i].clone(),
                view: router.view(i, now),
                reads: self.replica_reads[i].load(Ordering::Relaxed),
            })
            .collect()
    }

    /// A connection from replica `i`'s pool; a failure takes it out.
    async fn checkout_replica(&self, i: usize) -> Option<Object> {
        match self.replicas[i].get().await {
            Ok(client) => {
                self.stats.replica_checkouts.fetch_add(1, Ordering::Relaxed);
                self.replica_reads[i].fetch_add(1, Ordering::Relaxed);
                let transition = self.router_mut().checkout_ok(i, Instant::now());
                self.log_transition(i, transition);
                if self.all_out.swap(false, Ordering::Relaxed) {
                    tracing::info!("reads go to the replicas again");
                }
                Some(client)
            }
            // Every connection busy: the replica is fine, this read just
            // goes elsewhere.
            Err(PoolError::Timeout(TimeoutType::Wait)) => {
                self.stats.replica_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(error) => {
                self.stats.replica_errors.fetch_add(1, Ordering::Relaxed);
                self.replica_failed(i, &error.to_string());
                None
            }
        }
    }

    fn replica_failed(&self, i: usize, error: &str) {
        let transition = self
            .router_mut()
            .connection_failed(i, Instant::now(), error);
        self.log_transition(i, transition);
    }

    /// A read that wanted a replica goes to the primary.
    fn fall_back(&self) {
        if self.replicas.is_empty() {
            return;
        }
        self.stats.read_fallbacks.fetch_add(1, Ordering::Relaxed);
        if !self.all_out.swap(true, Ordering::Relaxed) {
            tracing::warn!("no usable replica: reads go to the primary");
        }
    }

    fn log_transition(&self, i: usize, transition: Option<health::Transition>) {
        let replica = &self.replica_labels[i];
        match transition {
            None => {}
            Some(health::Transition::TakenOut { reason, backoff }) => {
                tracing::warn!(replica, %reason, backoff_secs = backoff.as_secs_f64(), "replica taken out of rotation");
            }
            Some(health::Transition::Readmitted) => {
                tracing::info!(replica, "replica back in rotation");
            }
        }
    }

    fn router_mut(&self) -> MutexGuard<'_, health::Router> {
        // The router's state stays consistent across a panic elsewhere.
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One replica as `/metrics` shows it.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    /// `host:port`.
    pub label: String,
    pub view: health::ReplicaView,
    /// Connections taken from its pool.
    pub reads: u64,
}

/// `host:port` of a server, without credentials.
fn server_label(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

fn build_pool(
    url: &str,
    options: &PoolOptions,
) -> Result<(tokio_postgres::Config, Pool), StoreError> {
    let bad = |reason: String| StoreError::BadUrl {
        url: redact_url(url),
        reason,
    };
    let mut pg = tokio_postgres::Config::from_str(url).map_err(|e| bad(e.to_string()))?;
    pg.connect_timeout(options.connect_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name("pvc-bridge");
    }
    let manager = Manager::from_config(
        pg.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(options.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok((pg, pool))
}

/// A URL with its password replaced, for logs and errors. It is called on
/// URLs that may not parse (that is when they are printed), so it errs on
/// the side of hiding: everything up to the last `@` of a URL is user
/// information, and a key=value string it cannot read is not shown at all.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => redact_uri(scheme, rest),
        None => redact_conninfo(url),
    }
}

/// Connection parameters that hold secrets.
fn is_secret_key(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "password" | "sslpassword"
    )
}

fn redact_uri(scheme: &str, rest: &str) -> String {
    // A raw '@' or '/' may sit inside the password: the host starts after
    // the last '@' (which over-hides when a query holds one: acceptable).
    let (userinfo, host) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, rest),
    };
    let (host, query) = match host.split_once('?') {
        Some((host, query)) => (host, Some(query)),
        None => (host, None),
    };
    let mut out = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{userinfo}@")),
        }
    }
    out.push_str(host);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// libpq's `key = value` form: values bare or single-quoted with
/// backslash escapes, blanks allowed around `=`.
fn redact_conninfo(text: &str) -> String {
    const UNREADABLE: &str = "<connection string not shown: it does not parse>";
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(key_start, _)) = chars.peek() else {
            break;
        };
        let mut key_end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                key_end = i;
                break;
            }
            chars.next();
        }
        let key = &text[key_start..key_end];
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next_if(|(_, c)| *c == '=').is_none() {
            return UNREADABLE.to_owned();
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let value_start = chars.peek().map_or(text.len(), |&(i, _)| i);
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value_end = text.len();
        let mut closed = !quoted;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if quoted => {
                    value_end = i + 1;
                    closed = true;
                    break;
                }
                c if !quoted && c.is_whitespace() => {
                    value_end = i;
                    break;
                }
                _ => {}
            }
        }
        if !closed {
            return UNREADABLE.to_owned();
        }
        if is_secret_key(key) {
            out.push(format!("{key}=***"));
        } else {
            out.push(format!("{key}={}", &text[value_start..value_end]));
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://pvc:s3cret@db:5432/foreman"),
            "postgres://pvc:***@db:5432/foreman"
        );
        assert_eq!(
            redact_url("postgres://pvc@db/foreman"),
            "postgres://pvc@db/foreman"
        );
        assert_eq!(
            redact_url("host=db user=pvc password=s3cret"),
            "host=db user=pvc password=***"
        );
    }

    #[test]
    fn passwords_in_malformed_urls_stay_hidden() {
        for (url, shown) in [
            (
                "host=127.0.0.1 port=x password='CAN ARY3'",
                "host=127.0.0.1 port=x password=***",
            ),
            (
                "host=127.0.0.1 port=x password = CANARY4",
                "host=127.0.0.1 port=x password=***",
            ),
            (
                r"host=db password='it\'s CANARY6' user=pvc",
                "host=db password=*** user=pvc",
            ),
            (
                "postgres://postgres:CAN@ARY5@127.0.0.1:x/db",
                "postgres://postgres:***@127.0.0.1:x/db",
            ),
            (
                "postgres://pvc:CAN/ARY7@db/foreman?sslmode=require&password=CANARY8",
                "postgres://pvc:***@db/foreman?sslmode=require&password=***",
            ),
            (
                "host=db password='CANARY9",
                "<connection string not shown: it does not parse>",
            ),
            (
                "host=db CANARY10",
                "<connection string not shown: it does not parse>",
            ),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            assert!(!redacted.contains("ARY"), "{redacted}");
        }
    }
}
