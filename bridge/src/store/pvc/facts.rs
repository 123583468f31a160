//! Fact and config report uploads on the primary: `pvc.store_facts` and
//! `pvc.store_config_report`, each one call (one round trip, atomic), both
//! idempotent on replays. The check-in of the host is recorded in the same
//! call.

use deadpool_postgres::ClientWrapper as Client;

use super::{query_one, PvcError};
use crate::schedule::Ts;

/// One facts upload, ready for the database.
#[derive(Debug, Clone, Copy)]
pub struct NewFacts<'a> {
    pub certname: &'a str,
    /// The name Foreman is to know the host by (`fqdn`, else the certname).
    pub name: &'a str,
    /// The facts as received (a JSON object's text).
    pub facts_json: &'a str,
    /// The canonical form minus volatile facts: what the digest is over.
    pub stable_json: &'a str,
    /// The canonical form of the facts the ENC depends on.
    pub enc_json: &'a str,
    /// Which endpoint they came in by (`facts`, `foreman`).
    pub source: &'a str,
    /// When the bridge accepted them; `None` is the database's now.
    pub received: Option<Ts>,
}

/// What storing facts did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsOutcome {
    /// The host's first facts.
    New,
    /// The digest moved: the facts really changed.
    Changed,
    /// Only volatile facts differ: stored, the digest kept.
    Unchanged,
    /// Exactly the stored facts: nothing written.
    Replay,
    /// Older than the stored facts (a late replay): nothing written.
    Stale,
}

impl FactsOutcome {
    fn parse(s: &str) -> Option<FactsOutcome> {
        Some(match s {
            "new" => FactsOutcome::New,
            "changed" => FactsOutcome::Changed,
            "unchanged" => FactsOutcome::Unchanged,
            "replay" => FactsOutcome::Replay,
            "stale" => FactsOutcome::Stale,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FactsOutcome::New => "new",
            FactsOutcome::Changed => "changed",
            FactsOutcome::Unchanged => "unchanged",
            FactsOutcome::Replay => "replay",
            FactsOutcome::Stale => "stale",
        }
    }

    /// Whether the stable facts differ from what was stored before.
    pub fn digest_changed(self) -> bool {
        matches!(self, FactsOutcome::New | FactsOutcome::Changed)
    }
}

/// The stored state after a facts upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsStored {
    pub outcome: FactsOutcome,
    /// SHA-256 of the stable canonical facts, hex.
    pub digest: String,
    pub received: Ts,
    pub digest_changed: Ts,
    /// The facts the ENC depends on changed (or the host is new): Foreman
    /// must have them before the host's next ENC answer.
    pub enc_changed: bool,
}

/// Stores `facts` as the host's latest facts.
pub async fn store_facts(client: &Client, facts: &NewFacts<'_>) -> Result<FactsStored, PvcError> {
    let received = facts.received.map(|ts| ts.0);
    let row = query_one(
        client,
        "storing facts",
        "SELECT outcome, digest, received, digest_changed, enc_changed \
         FROM pvc.store_facts($1, $2, $3, $4, $5, $6, pvc.from_ms($7))",
        &[
            &facts.certname,
            &facts.name,
            &facts.facts_json,
            &facts.stable_json,
            &facts.enc_json,
            &facts.source,
            &received,
        ],
    )
    .await?;
    let outcome: &str = row.get("outcome");
    Ok(FactsStored {
        outcome: FactsOutcome::parse(outcome).ok_or_else(|| {
            PvcError::Invalid(format!("pvc.store_facts answered outcome {outcome:?}"))
        })?,
        digest: row.get("digest"),
        received: Ts(row.get("received")),
        digest_changed: Ts(row.get("digest_changed")),
        enc_changed: row.get("enc_changed"),
    })
}

/// A stored config report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigReportStored {
    pub id: i64,
    /// The same report was stored before: nothing written.
    pub replay: bool,
}

/// Stores a Foreman config report; `report_json` is its canonical JSON (the
/// replay check is a digest over it).
pub async fn store_config_report(
    client: &Client,
    certname: &str,
    report_json: &str,
    received: Option<Ts>,
) -> Result<ConfigReportStored, PvcError> {
    let received = received.map(|ts| ts.0);
    let row = query_one(
        client,
        "storing a config report",
        "SELECT report_id, replay FROM pvc.store_config_report($1, $2, pvc.from_ms($3))",
        &[&certname, &report_json, &received],
    )
    .await?;
    Ok(ConfigReportStored {
        id: row.get("report_id"),
        replay: row.get("replay"),
    })
}
