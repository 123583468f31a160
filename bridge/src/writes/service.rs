//! Uploads that reach the primary, or the local spool while it is
//! unreachable: storing, spooling, replaying the spool (records the
//! database refuses as invalid go to the dead-letter file), and the upload
//! counters for `/metrics`. Uploads are facts, Foreman config reports and
//! the agents' run reports (`/report`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;

use crate::runs::ReportInput;
use crate::schedule::Ts;
use crate::spool::{Record, Rejection, ReplayError, Spool, SpoolError, SpoolStats};
use crate::store::pvc::{self, ConfigReportStored, FactsStored, NewFacts, PvcError, ReportStored};
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
    /// An agent's run report (`/report`): its canonical body
    /// ([`ReportInput::canonical_body`]), which is also what a replay is
    /// recognised by.
    AgentReport { received_ms: i64, body_json: String },
}

impl SpooledUpload {
    fn kind(&self) -> &'static str {
        match self {
            SpooledUpload::Facts { .. } => "facts",
            SpooledUpload::Report { .. } => "report",
            SpooledUpload::AgentReport { .. } => "agent_report",
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

impl ReplayFailure {
    /// What the spool does with the record: retry it (and hold back those
    /// after it) while the cause can pass — the primary returns, an
    /// operator runs `pvc-bridge migrate` — or set it aside in the
    /// dead-letter file when it can never be stored.
    fn rejection(self) -> Rejection<ReplayFailure> {
        let never = match &self {
            ReplayFailure::Down(_) => false,
            ReplayFailure::Refused(error) => invalid(error),
            ReplayFailure::Unreadable(_) => true,
        };
        if never {
            Rejection::DeadLetter(match &self {
                ReplayFailure::Refused(error) => describe(error),
                other => other.to_string(),
            })
        } else {
            Rejection::Retry(self)
        }
    }
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
        PvcError::Db { source, .. } => unreachable_code(source.code()),
        PvcError::SchemaMissing { .. } | PvcError::Invalid(_) => false,
    }
}

/// No SQLSTATE (the connection broke or never opened), or one that says
/// the server is going away or is not a primary: a connection exception
/// (class 08), shut down by an operator or a crash, starting up (57P01-3;
/// a fast shutdown answers the statements in flight with 57P01), or a
/// read-only server (25006: the address points at a standby during a
/// failover). The statement was not applied — or, when the answer was
/// lost after a commit, the replay finds it: replays are idempotent.
fn unreachable_code(code: Option<&SqlState>) -> bool {
    let Some(code) = code else {
        return true;
    };
    let code = code.code();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

/// Whether the database refused the upload itself, so that storing it
/// again can never succeed: bad input ([`PvcError::Invalid`]), or a data
/// exception (class 22: malformed JSON, a `\u0000` in a text, a number
/// out of range), an integrity violation other than a duplicate (class 23;
/// a duplicate is a concurrent store of the same upload, which a retry
/// finds) or an exception raised by the `pvc` functions (P0001). A missing
/// schema and every other error (permissions, resources, conflicts) are
/// the database's state, not the upload's: retried.
fn invalid(error: &PvcError) -> bool {
    match error {
        PvcError::Invalid(_) => true,
        PvcError::SchemaMissing { .. } => false,
        PvcError::Db { source, .. } => invalid_code(source.code()),
    }
}

/// The error with what the server said (a `tokio_postgres` error alone
/// reads "db error"): for the dead-letter file, where an operator needs it.
fn describe(error: &PvcError) -> String {
    match error {
        PvcError::Db { context, source } => match source.as_db_error() {
            Some(db) => {
                let mut text = format!(
                    "{context}: {} {}: {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                );
                if let Some(detail) = db.detail() {
                    text.push_str(&format!(" ({detail})"));
                }
                text
            }
            None => error.to_string(),
        },
        other => other.to_string(),
    }
}

fn invalid_code(code: Option<&SqlState>) -> bool {
    let Some(code) = code else {
        return false;
    };
    let code = code.code();
    code.starts_with("22") || (code.starts_with("23") && code != "23505") || code == "P0001"
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

    /// Stores an agent's run report (and ends the lease it names), or
    /// spools it while the primary is unreachable. `received` is when the
    /// bridge accepted it: a replay decides the lease as of then. The
    /// report is stored with its canonical body, so storing it again (an
    /// agent's retry, a replay) finds the first row.
    pub async fn store_agent_report(
        &self,
        certname: &str,
        input: &ReportInput,
        received: Ts,
    ) -> Result<Stored<ReportStored>, StoreFailure> {
        let body = input.canonical_body(received);
        let report = pvc::NewReport {
            body: Some(&body),
            ..input.as_new_report(certname)
        };
        match self.agent_report_attempt(&report).await {
            Attempt::Done(stored) => {
                let outcome = if stored.replay { "replay" } else { "new" };
                self.counters.add("agent_report", outcome);
                Ok(Stored::Stored(stored))
            }
            Attempt::Down(why) => {
                let spooled = SpooledUpload::AgentReport {
                    received_ms: received.0,
                    body_json: body,
                };
                self.spool(certname, &spooled, received, why).await
            }
            Attempt::Refused(error) => {
                self.counters.add("agent_report", "error");
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

    async fn agent_report_attempt(&self, report: &pvc::NewReport<'_>) -> Attempt<ReportStored> {
        let client = match self.client().await {
            Ok(client) => client,
            Err(why) => return Attempt::Down(why),
        };
        match pvc::store_report(&client, report).await {
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

    /// What the dead-letter file is called; `None` without a spool.
    pub fn dead_letter_path(&self) -> Option<std::path::PathBuf> {
        self.spool.as_ref().map(|s| s.dead_letter_path())
    }

    /// Replays the spool into the primary, in order, stopping at the first
    /// record it cannot take now (the primary is down, the schema missing);
    /// a record it can never take is moved to the dead-letter file and the
    /// replay goes on. Returns how many records were stored or set aside.
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
        type Reply = std::sync::mpsc::SyncSender<Result<(), Rejection<ReplayFailure>>>;
        let (to_store, mut records) = tokio::sync::mpsc::channel::<(Record, Reply)>(1);
        let blocking = tokio::task::spawn_blocking(move || {
            spool.replay(|record| {
                let (reply, result) = std::sync::mpsc::sync_channel(1);
                let stopped = || Rejection::Retry(ReplayFailure::Down("replay stopped".into()));
                to_store
                    .blocking_send((record.clone(), reply))
                    .map_err(|_| stopped())?;
                result.recv().unwrap_or_else(|_| Err(stopped()))
            })
        });
        while let Some((record, reply)) = records.recv().await {
            let result = self.replay_one(&record).await;
            let _ = reply.send(result.map_err(ReplayFailure::rejection));
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
            SpooledUpload::AgentReport {
                received_ms,
                body_json,
            } => {
                let input = ReportInput::from_canonical_body(body_json)
                    .map_err(|e| ReplayFailure::Unreadable(e.to_string()))?;
                let report = pvc::NewReport {
                    body: Some(body_json),
                    received: Some(Ts(*received_ms)),
                    ..input.as_new_report(&record.key)
                };
                match self.agent_report_attempt(&report).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_or_a_server_going_away_is_unreachable() {
        for code in [
            None,
            Some(&SqlState::CONNECTION_FAILURE),
            Some(&SqlState::CONNECTION_EXCEPTION),
            Some(&SqlState::ADMIN_SHUTDOWN),
            Some(&SqlState::CRASH_SHUTDOWN),
            Some(&SqlState::CANNOT_CONNECT_NOW),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        ] {
            assert!(unreachable_code(code), "{code:?}");
        }
        for code in [
            &SqlState::INVALID_TEXT_REPRESENTATION,
            &SqlState::UNIQUE_VIOLATION,
            &SqlState::T_R_SERIALIZATION_FAILURE,
            &SqlState::QUERY_CANCELED,
            &SqlState::INSUFFICIENT_PRIVILEGE,
        ] {
            assert!(!unreachable_code(Some(code)), "{code:?}");
        }
    }

    #[test]
    fn only_data_the_database_can_never_take_is_invalid() {
        for code in [
            &SqlState::INVALID_TEXT_REPRESENTATION,
            &SqlState::UNTRANSLATABLE_CHARACTER,
            &SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            &SqlState::CHECK_VIOLATION,
            &SqlState::NOT_NULL_VIOLATION,
            &SqlState::RAISE_EXCEPTION,
        ] {
            assert!(invalid_code(Some(code)), "{code:?}");
        }
        for code in [
            None,
            Some(&SqlState::UNIQUE_VIOLATION),
            Some(&SqlState::T_R_DEADLOCK_DETECTED),
            Some(&SqlState::DISK_FULL),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            Some(&SqlState::UNDEFINED_COLUMN),
            Some(&SqlState::ADMIN_SHUTDOWN),
        ] {
            assert!(!invalid_code(code), "{code:?}");
        }
    }

    #[test]
    fn invalid_and_unreadable_records_are_dead_letters_the_rest_is_retried() {
        let dead = |failure: ReplayFailure| match failure.rejection() {
            Rejection::DeadLetter(reason) => Some(reason),
            Rejection::Retry(_) => None,
        };
        assert_eq!(
            dead(ReplayFailure::Refused(PvcError::Invalid(
                "duration_secs: not finite".into()
            ))),
            Some("duration_secs: not finite".into())
        );
        assert_eq!(
            dead(ReplayFailure::Unreadable("expected value".into())),
            Some("record unreadable: expected value".into())
        );
        assert_eq!(dead(ReplayFailure::Down("refused".into())), None);
        assert_eq!(
            dead(ReplayFailure::Refused(PvcError::SchemaMissing {
                detail: "relation pvc.facts does not exist".into()
            })),
            None,
            "an operator runs `pvc-bridge migrate`: retried"
        );
    }

    #[test]
    fn agent_reports_round_trip_through_the_spool_format() {
        let upload = SpooledUpload::AgentReport {
            received_ms: 1_795_738_741_000,
            body_json: r#"{"exit_code":0}"#.into(),
        };
        let text = serde_json::to_string(&upload).unwrap();
        assert!(text.contains(r#""kind":"agent_report""#), "{text}");
        assert_eq!(
            serde_json::from_str::<SpooledUpload>(&text).unwrap(),
            upload
        );
        assert_eq!(upload.kind(), "agent_report");
    }
}
