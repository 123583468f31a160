//! Uploads that reach the primary, or the local spool while it is
//! unreachable: storing, spooling, replaying the spool, and the upload
//! counters for `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::schedule::Ts;
use crate::spool::{Record, ReplayError, Spool, SpoolError, SpoolStats};
use crate::store::pvc::{self, ConfigReportStored, FactsStored, NewFacts, PvcError};
use crate::store::{Db, StoreError};

/// How often the replay loop looks at the spool.
const REPLAY_EVERY: Duration = Duration::from_secs(3);

/// A spooled upload: what the primary is given on replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpooledUpload {
    Facts {
        received_ms: i64,
        source: String,
        facts_json: String,
        stable_json: String,
        /// Absent in records spooled before forwarding existed: the
        /// certname, and the stable facts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enc_json: Option<String>,
    },
    Report {
        received_ms: i64,
        report_json: String,
    },
}

impl SpooledUpload {
    fn kind(&self) -> &'static str {
        match self {
            SpooledUpload::Facts { .. } => "facts",
            SpooledUpload::Report { .. } => "report",
        }
    }
}

/// Why an upload was neither stored nor spooled.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The database refused the upload itself (bad input, missing schema):
    /// spooling would not help.
    #[error("{0}")]
    Refused(PvcError),
    /// The primary is unreachable and there is no spool, or it is full.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a spooled record was not stored.
#[derive(Debug, thiserror::Error)]
enum ReplayFailure {
    /// Retried on the next tick, quietly.
    #[error("primary unavailable: {0}")]
    Down(String),
    #[error("{0}")]
    Refused(PvcError),
    #[error("record unreadable: {0}")]
    Unreadable(String),
}

/// What became of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<T> {
    Stored(T),
    /// On the local spool, for the primary when it returns.
    Spooled {
        received: Ts,
    },
}

/// Upload counters by kind and outcome.
#[derive(Debug, Default)]
pub struct UploadCounters(Mutex<BTreeMap<(&'static str, &'static str), u64>>);

impl UploadCounters {
    fn add(&self, kind: &'static str, outcome: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((kind, outcome)).or_default() += 1;
    }

    /// `(kind, outcome, count)`, sorted.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&(k, o), &n)| (k, o, n)).collect()
    }
}

/// The upload side of the bridge.
pub struct Uploads {
    db: Arc<Db>,
    spool: Option<Arc<Spool>>,
    pub counters: UploadCounters,
}

/// Whether a database error means the primary could not be reached (as
/// opposed to refusing the statement): only those are spooled.
fn unreachable(error: &PvcError) -> bool {
    match error {
        PvcError::Db { source, .. } => source.code().is_none(),
        PvcError::SchemaMissing { .. } | PvcError::Invalid(_) => false,
    }
}

fn now() -> Ts {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ts(ms)
}

/// A primary that cannot be reached: checkout failed or the connection broke.
enum Attempt<T> {
    Done(T),
    Down(String),
    Refused(PvcError),
}

impl Uploads {
    /// Opens the spool when `settings.spool` is set.
    pub fn new(db: Arc<Db>, settings: &super::WriteSettings) -> anyhow::Result<Uploads> {
        let spool = match &settings.spool {
            Some(config) => {
                let spool = Spool::open(config.clone()).map_err(|e| {
                    anyhow::anyhow!("opening the write spool {}: {e}", config.dir.display())
                })?;
                Some(Arc::new(spool))
            }
            None => None,
        };
        Ok(Uploads {
            db,
            spool,
            counters: UploadCounters::default(),
        })
    }

    /// What the spool holds; `None` without a spool.
    pub fn spool_stats(&self) -> Option<SpoolStats> {
        self.spool.as_ref().map(|s| s.pending())
    }

    /// Stores facts, or spools them while the primary is unreachable.
    pub async fn store_facts(
        &self,
        certname: &str,
        prepared: &super::PreparedFacts,
        source: &str,
    ) -> Result<Stored<FactsStored>, StoreFailure> {
        let received = now();
        let facts = NewFacts {
            certname,
            name: &prepared.name,
            facts_json: &prepared.facts_json,
            stable_json: &prepared.stable_json,
            enc_json: &prepared.enc_json,
            source,
            received: None,
        };
        let attempt = self.facts_attempt(&facts).await;
        let spooled = SpooledUpload::Facts {
            received_ms: received.0,
            source: source.to_owned(),
            facts_json: prepared.facts_json.clone(),
            stable_json: prepared.stable_json.clone(),
            name: Some(prepared.name.clone()),
            enc_json: Some(prepared.enc_json.clone()),
        };
        match attempt {
            Attempt::Done(stored) => {
                self.counters.add("facts", stored.outcome.as_str());
                Ok(Stored::Stored(stored))
            }
            Attempt::Down(why) => self.spool(certname, &spooled, received, why).await,
            Attempt::Refused(error) => {
                self.counters.add("facts", "error");
                Err(StoreFailure::Refused(error))
            }
        }
    }

    /// Stores a config report (canonical JSON), or spools it while the
    /// primary is unreachable.
    pub async fn store_report(
        &self,
        certname: &str,
        report_json: &str,
    ) -> Result<Stored<ConfigReportStored>, StoreFailure> {
        let received = now();
        let attempt = self.report_attempt(certname, report_json, None).await;
        match attempt {
            Attempt::Done(stored) => {
                let outcome = if stored.replay { "replay" } else { "new" };
                self.counters.add("report", outcome);
                Ok(Stored::Stored(stored))
            }
            Attempt::Down(why) => {
                let spooled = SpooledUpload::Report {
                    received_ms: received.0,
                    report_json: report_json.to_owned(),
                };
                self.spool(certname, &spooled, received, why).await
            }
            Attempt::Refused(error) => {
                self.counters.add("report", "error");
                Err(StoreFailure::Refused(error))
            }
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, String> {
        self.db.write().await.map_err(|e: StoreError| e.to_string())
    }

    async fn facts_attempt(&self, facts: &NewFacts<'_>) -> Attempt<FactsStored> {
        let client = match self.client().await {
            Ok(client) => client,
            Err(why) => return Attempt::Down(why),
        };
        match pvc::store_facts(&client, facts).await {
            Ok(stored) => Attempt::Done(stored),
            Err(error) if unreachable(&error) => Attempt::Down(error.to_string()),
            Err(error) => Attempt::Refused(error),
        }
    }

    async fn report_attempt(
        &self,
        certname: &str,
        report_json: &str,
        received: Option<Ts>,
    ) -> Attempt<ConfigReportStored> {
        let client = match self.client().await {
            Ok(client) => client,
            Err(why) => return Attempt::Down(why),
        };
        match pvc::store_config_report(&client, certname, report_json, received).await {
            Ok(stored) => Attempt::Done(stored),
            Err(error) if unreachable(&error) => Attempt::Down(error.to_string()),
            Err(error) => Attempt::Refused(error),
        }
    }

    async fn spool<T>(
        &self,
        certname: &str,
        upload: &SpooledUpload,
        received: Ts,
        why: String,
    ) -> Result<Stored<T>, StoreFailure> {
        let kind = upload.kind();
        let Some(spool) = self.spool.clone() else {
            self.counters.add(kind, "refused");
            return Err(StoreFailure::Unavailable(why));
        };
        let body = serde_json::to_vec(upload).expect("a spooled upload serialises");
        let key = certname.to_owned();
        let appended = tokio::task::spawn_blocking(move || spool.append(kind, &key, &body))
            .await
            .map_err(|e| SpoolError::Config(format!("spool task: {e}")));
        match appended.and_then(|r| r) {
            Ok(seq) => {
                self.counters.add(kind, "spooled");
                tracing::debug!(host.certname = certname, kind, seq, reason = %why, "upload spooled");
                Ok(Stored::Spooled { received })
            }
            Err(error) => {
                self.counters.add(kind, "refused");
                tracing::error!(host.certname = certname, kind, %error, "upload neither stored nor spooled");
                Err(StoreFailure::Unavailable(format!(
                    "primary unavailable ({why}) and {error}"
                )))
            }
        }
    }

    /// Replays the spool into the primary, in order, stopping at the first
    /// record it does not take. Returns how many records were stored.
    pub async fn replay(self: &Arc<Self>) -> anyhow::Result<usize> {
        let Some(spool) = self.spool.clone() else {
            return Ok(0);
        };
        if spool.pending().records == 0 {
            return Ok(0);
        }
        // The spool's replay is blocking and takes a plain closure: it runs
        // on a blocking thread and hands each record to this task, which
        // stores it and sends back the result. This needs nothing of the
        // runtime's flavour (the server runs on a current-thread one).
        type Reply = std::sync::mpsc::SyncSender<Result<(), ReplayFailure>>;
        let (to_store, mut records) = tokio::sync::mpsc::channel::<(Record, Reply)>(1);
        let blocking = tokio::task::spawn_blocking(move || {
            spool.replay(|record| {
                let (reply, result) = std::sync::mpsc::sync_channel(1);
                to_store
                    .blocking_send((record.clone(), reply))
                    .map_err(|_| ReplayFailure::Down("replay stopped".into()))?;
                result
                    .recv()
                    .unwrap_or_else(|_| Err(ReplayFailure::Down("replay stopped".into())))
            })
        });
        while let Some((record, reply)) = records.recv().await {
            let _ = reply.send(self.replay_one(&record).await);
        }
        match blocking.await? {
            Ok(n) => Ok(n),
            Err(ReplayError::Consumer {
                seq,
                error: ReplayFailure::Down(why),
            }) => {
                tracing::debug!(seq, reason = %why, "spool replay waits for the primary");
                Err(anyhow::anyhow!(
                    "spooled record {seq}: primary unavailable: {why}"
                ))
            }
            Err(ReplayError::Consumer { seq, error }) => {
                tracing::warn!(seq, %error, "spool replay stopped");
                Err(anyhow::anyhow!("spooled record {seq}: {error}"))
            }
            Err(ReplayError::Spool(error)) => Err(error.into()),
        }
    }

    async fn replay_one(&self, record: &Record) -> Result<(), ReplayFailure> {
        let upload: SpooledUpload = serde_json::from_slice(&record.body)
            .map_err(|e| ReplayFailure::Unreadable(e.to_string()))?;
        let attempt = match &upload {
            SpooledUpload::Facts {
                received_ms,
                source,
                facts_json,
                stable_json,
                name,
                enc_json,
            } => {
                let facts = NewFacts {
                    certname: &record.key,
                    name: name.as_deref().unwrap_or(&record.key),
                    facts_json,
                    stable_json,
                    enc_json: enc_json.as_deref().unwrap_or(stable_json),
                    source,
                    received: Some(Ts(*received_ms)),
                };
                match self.facts_attempt(&facts).await {
                    Attempt::Done(stored) => Attempt::Done(stored.outcome.as_str()),
                    Attempt::Down(why) => Attempt::Down(why),
                    Attempt::Refused(e) => Attempt::Refused(e),
                }
            }
            SpooledUpload::Report {
                received_ms,
                report_json,
            } => {
                match self
                    .report_attempt(&record.key, report_json, Some(Ts(*received_ms)))
                    .await
                {
                    Attempt::Done(stored) if stored.replay => Attempt::Done("replay"),
                    Attempt::Done(_) => Attempt::Done("new"),
                    Attempt::Down(why) => Attempt::Down(why),
                    Attempt::Refused(e) => Attempt::Refused(e),
                }
            }
        };
        match attempt {
            Attempt::Done(outcome) => {
                self.counters.add(upload.kind(), outcome);
                Ok(())
            }
            Attempt::Down(why) => Err(ReplayFailure::Down(why)),
            Attempt::Refused(error) => Err(ReplayFailure::Refused(error)),
        }
    }

    /// Starts the replay loop: every few seconds, while the spool holds
    /// records, replays them into the primary.
    pub fn start(self: &Arc<Self>) {
        if self.spool.is_none() {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REPLAY_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                // The spool and `replay` log what a replay did; a failure
                // is retried on the next tick.
                let _ = this.replay().await;
            }
        });
    }
}
