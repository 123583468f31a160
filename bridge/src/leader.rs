//! One leader per job among all the bridge processes of a database, elected
//! through a PostgreSQL session advisory lock on a connection of its own:
//! the lock is held exactly as long as that connection lives, so a leader
//! that dies or loses the primary is replaced within a few seconds, with no
//! clock or lease to trust.
//!
//! Between the primary dropping a leader's session and the leader noticing,
//! two processes may both believe they lead; work that must never be done
//! twice checks [`still_leader`] in the transaction that records it (a
//! fencing check: the lock's holder is visible in `pg_locks`).

use std::str::FromStr;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::NoTls;

/// `classid` of every pvc advisory lock ("pvc\0").
const LOCK_CLASS: i32 = 0x7076_6300;

/// How often a leader checks that its session is alive, and a follower
/// tries to take the lock.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The jobs that have a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the outbox to Foreman at the configured rate.
    Forwarder,
    /// Writes the git audit trail.
    Audit,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Forwarder => "forwarder",
            Role::Audit => "audit",
        }
    }

    /// The lock's `objid`.
    fn key(self) -> i32 {
        match self {
            Role::Forwarder => 1,
            Role::Audit => 2,
        }
    }
}

/// Whether this process leads, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// Holding the lock on the primary session with this backend pid.
    Yes {
        pid: i32,
    },
    No,
}

/// A running election for one role.
#[derive(Clone)]
pub struct Leadership {
    role: Role,
    state: watch::Receiver<Leader>,
}

impl Leadership {
    /// Starts competing for `role` on the primary at `url`; runs for the
    /// life of the runtime.
    pub fn spawn(url: &str, role: Role, connect_timeout: Duration) -> anyhow::Result<Leadership> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            anyhow::anyhow!(
                "leader election: bad primary URL {}: {e}",
                crate::store::redact_url(url)
            )
        })?;
        config.connect_timeout(connect_timeout);
        config.application_name(format!("pvc-bridge {} election", role.as_str()));
        let (tx, rx) = watch::channel(Leader::No);
        tokio::spawn(campaign(config, role, tx));
        Ok(Leadership { role, state: rx })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// As last seen (at most a few seconds old).
    pub fn current(&self) -> Leader {
        *self.state.borrow()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.current(), Leader::Yes { .. })
    }

    /// Waits until this process leads; returns the session's pid.
    pub async fn until_leader(&mut self) -> i32 {
        loop {
            if let Leader::Yes { pid } = *self.state.borrow_and_update() {
                return pid;
            }
            if self.state.changed().await.is_err() {
                // The campaign ended (runtime shutting down): never leads.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves when the state changes.
    pub async fn changed(&mut self) {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn campaign(config: tokio_postgres::Config, role: Role, tx: watch::Sender<Leader>) {
    loop {
        match hold(&config, role, &tx).await {
            Ok(()) => {}
            Err(error) => {
                if matches!(*tx.borrow(), Leader::Yes { .. }) {
                    tracing::warn!(role = role.as_str(), %error, "leadership lost");
                } else {
                    tracing::debug!(role = role.as_str(), %error, "leader election: primary unavailable");
                }
            }
        }
        tx.send_replace(Leader::No);
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// Connects, then tries for the lock until it holds it, then holds it
/// while the session lives. Returns (Err) when the session is lost.
async fn hold(
    config: &tokio_postgres::Config,
    role: Role,
    tx: &watch::Sender<Leader>,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(connection);
    let result = async {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        loop {
            let held: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LOCK_CLASS, &role.key()],
                )
                .await?
                .get(0);
            if held {
                tracing::info!(role = role.as_str(), pid, "this bridge now leads");
                tx.send_replace(Leader::Yes { pid });
                loop {
                    tokio::time::sleep(CHECK_EVERY).await;
                    client.simple_query("SELECT 1").await?;
                    if tx.is_closed() {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(CHECK_EVERY).await;
            if tx.is_closed() {
                return Ok(());
            }
        }
    }
    .await;
    connection.abort();
    result
}

/// Whether the session `pid` still holds `role`'s lock: the fencing check
/// for a transaction that records leader-only work.
pub const STILL_LEADER_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks \
     WHERE locktype = 'advisory' AND classid::int = $1 AND objid::int = $2 \
     AND objsubid = 2 AND pid = $3 AND granted)";

/// [`STILL_LEADER_SQL`] on `client` (any connection to the primary).
pub async fn still_leader(
    client: &tokio_postgres::Client,
    role: Role,
    pid: i32,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(STILL_LEADER_SQL, &[&LOCK_CLASS, &role.key(), &pid])
        .await?;
    Ok(row.get(0))
}

/// The arguments of [`STILL_LEADER_SQL`], for a caller that embeds it.
pub fn lock_args(role: Role) -> (i32, i32) {
    (LOCK_CLASS, role.key())
}
