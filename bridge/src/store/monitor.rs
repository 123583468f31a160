//! The health monitor: one task per [`Db`] that checks every replica each
//! `check_every` with one cheap query on a connection of its own (never a
//! pooled one: a busy pool must not look like a dead replica), and feeds
//! the results to the router (`store::health`).
//!
//! Lag is measured in bytes of WAL (the primary's `pg_current_wal_lsn()`
//! minus the replica's `pg_last_wal_replay_lsn()`), never by replay
//! timestamp, which keeps growing on an idle primary.

use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::{Client, NoTls};

use super::health::{parse_lsn, HealthSettings, Probe};
use super::Db;

const REPLICA_PROBE: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END";
const PRIMARY_PROBE: &str = "SELECT pg_current_wal_lsn()::text";

/// A connection of the monitor's own, opened again after any failure.
struct Link {
    config: tokio_postgres::Config,
    client: Option<Client>,
}

impl Link {
    fn new(config: &tokio_postgres::Config, settings: &HealthSettings) -> Link {
        let mut config = config.clone();
        config.connect_timeout(settings.timeout);
        config.application_name("pvc-bridge health");
        Link {
            config,
            client: None,
        }
    }

    /// Runs `sql` (one row) within the timeout; drops the connection on
    /// any failure so the next round connects afresh.
    async fn query(
        &mut self,
        sql: &str,
        settings: &HealthSettings,
    ) -> Result<tokio_postgres::Row, String> {
        let attempt = async {
            if self.client.as_ref().is_none_or(Client::is_closed) {
                let (client, connection) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                tokio::spawn(async move {
                    // Its errors surface as query errors on the client.
                    let _ = connection.await;
                });
                self.client = Some(client);
            }
            let client = self.client.as_ref().expect("connected above");
            client.query_one(sql, &[]).await.map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(settings.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", settings.timeout)),
        };
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

/// Starts the monitor of `db`: from now on only a check re-admits a
/// replica. Runs until the runtime stops.
pub fn spawn(db: &Arc<Db>, settings: HealthSettings) -> tokio::task::JoinHandle<()> {
    db.router_mut().set_monitored(settings.clone());
    let db = Arc::clone(db);
    tokio::spawn(async move {
        let mut primary = Link::new(&db.primary_config, &settings);
        let mut replicas: Vec<Link> = db
            .replica_configs
            .iter()
            .map(|c| Link::new(c, &settings))
            .collect();
        let mut every = tokio::time::interval(settings.check_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut primary_down_logged = false;
        loop {
            every.tick().await;
            let (primary_lsn, probes) = futures::join!(
                primary.query(PRIMARY_PROBE, &settings),
                futures::future::join_all(
                    replicas
                        .iter_mut()
                        .map(|link| async { probe(link, &settings).await })
                )
            );
            let primary_lsn = match primary_lsn {
                Ok(row) => {
                    primary_down_logged = false;
                    row.get::<_, Option<String>>(0)
                        .as_deref()
                        .and_then(parse_lsn)
                }
                Err(error) => {
                    if !primary_down_logged {
                        tracing::warn!(%error, "primary does not answer the health check; replica lag cannot be measured");
                        primary_down_logged = true;
                    }
                    None
                }
            };
            let now = Instant::now();
            for (i, probe) in probes.into_iter().enumerate() {
                let transition = db.router_mut().check(i, now, probe, primary_lsn);
                db.log_transition(i, transition);
            }
        }
    })
}

async fn probe(link: &mut Link, settings: &HealthSettings) -> Probe {
    match link.query(REPLICA_PROBE, settings).await {
        Ok(row) => Probe::Answered {
            in_recovery: row.get(0),
            replay_lsn: row
                .get::<_, Option<String>>(1)
                .as_deref()
                .and_then(parse_lsn),
            paused: row.get(2),
        },
        Err(error) => Probe::Failed(error),
    }
}
