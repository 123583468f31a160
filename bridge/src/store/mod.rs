//! The only module with SQL: connection pools for the primary and the read
//! replicas; Foreman's schema for the ENC (`foreman`) and for scheduling
//! (`host_params`, `runs`); the bridge's own schema (`pvc`).
//!
//! Reads go to a replica, round robin; a replica that cannot hand out a
//! connection is skipped and, with none left, reads fall back to the primary
//! (logged and counted). Writes always go to the primary.

pub mod foreman;
pub mod host_params;
pub mod pvc;
pub mod runs;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
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
        Ok(Db {
            primary: build_pool(primary, options)?,
            replicas: replicas
                .iter()
                .map(|url| build_pool(url, options))
                .collect::<Result<_, _>>()?,
            next_replica: AtomicUsize::new(0),
            stats: DbStats::default(),
        })
    }

    /// A connection for reads: a replica if any can serve, else the primary.
    pub async fn read(&self) -> Result<(Object, PoolRole), StoreError> {
        let n = self.replicas.len();
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        for offset in 0..n {
            let pool = &self.replicas[(start + offset) % n];
            match pool.get().await {
                Ok(client) => {
                    self.stats.replica_checkouts.fetch_add(1, Ordering::Relaxed);
                    return Ok((client, PoolRole::Replica));
                }
                Err(error) => {
                    self.stats.replica_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "replica unavailable, trying the next one");
                }
            }
        }
        if n > 0 {
            self.stats.read_fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("no replica available, reading from the primary");
        }
        Ok((self.write().await?, PoolRole::Primary))
    }

    /// A connection for reads that must see everything up to the primary's
    /// WAL position `lsn` (a write this bridge knows of, such as Foreman's
    /// import of a host's facts): a replica that has replayed that far,
    /// else the primary. One extra round trip per replica asked.
    pub async fn read_after(&self, lsn: &str) -> Result<(Object, PoolRole), StoreError> {
        let n = self.replicas.len();
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        for offset in 0..n {
            let pool = &self.replicas[(start + offset) % n];
            let Ok(client) = pool.get().await else {
                self.stats.replica_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let caught_up = client
                .query_one(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                    &[&lsn],
                )
                .await;
            match caught_up {
                Ok(row) if row.get::<_, bool>(0) => {
                    self.stats.replica_checkouts.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .fenced_replica_reads
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok((client, PoolRole::Replica));
                }
                Ok(_) => {}
                Err(error) => {
                    self.stats.replica_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "replica cannot report its replay position");
                }
            }
        }
        self.stats
            .fenced_primary_reads
            .fetch_add(1, Ordering::Relaxed);
        Ok((self.write().await?, PoolRole::Primary))
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
}

fn build_pool(url: &str, options: &PoolOptions) -> Result<Pool, StoreError> {
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
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// A URL with its password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value form: drop any password=… pair.
        return url
            .split_whitespace()
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
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
}
