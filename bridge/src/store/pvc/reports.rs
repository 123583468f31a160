//! Reports: what an agent sends after a run. Stored whatever its run id says
//! (nothing an agent sends is dropped) and, in the same transaction through
//! `pvc.store_report`, the end of the run's lease.

use deadpool_postgres::ClientWrapper as Client;

use super::{finite, parse_run_id, query_one, PvcError};
use crate::schedule::Ts;

/// What became of the lease a report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The report ended a live lease.
    Released,
    /// The lease had expired before the report came.
    Expired,
    /// An earlier report ended it.
    AlreadyEnded,
    /// No lease of this host has that run id (or none was given).
    Unknown,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
            LeaseState::AlreadyEnded => "already_ended",
            LeaseState::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> Option<LeaseState> {
        [
            LeaseState::Released,
            LeaseState::Expired,
            LeaseState::AlreadyEnded,
            LeaseState::Unknown,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A report as the HTTP layer decoded it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewReport<'a> {
    pub certname: &'a str,
    /// The lease's run id; anything but a UUID names no lease.
    pub run_id: Option<&'a str>,
    pub trigger: Option<&'a str>,
    pub mode: Option<&'a str>,
    /// As `puppet agent --detailed-exitcodes` exits.
    pub exit_code: Option<i32>,
    pub started: Option<Ts>,
    pub duration_secs: Option<f64>,
    /// The resource summary of `last_run_summary.yaml`.
    pub resources: Option<&'a serde_json::Value>,
    pub cached_catalog_status: Option<&'a str>,
    /// Monitored files that changed.
    pub changed_files: &'a [String],
    pub log_tail: Option<&'a str>,
    /// The report's body as received: a report with the same body stored
    /// before (a replay from the spool) is found, not added again.
    pub body: Option<&'a str>,
    /// When the bridge accepted it; `None` is now. The lease is decided as
    /// of then.
    pub received: Option<Ts>,
}

/// A stored report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportStored {
    pub id: i64,
    pub lease: LeaseState,
    /// The same report was stored before: nothing written.
    pub replay: bool,
}

/// Stores `report` and ends the lease it names, atomically; on the primary.
/// The lease must belong to `report.certname`; a run id that names none of
/// its leases is stored as NULL with lease state `unknown`.
pub async fn store_report(
    client: &Client,
    report: &NewReport<'_>,
) -> Result<ReportStored, PvcError> {
    if let Some(duration) = report.duration_secs {
        finite("duration_secs", duration)?;
    }
    let run_id = report.run_id.and_then(parse_run_id);
    let resources = report.resources.map(|value| value.to_string());
    let started = report.started.map(|ts| ts.0);
    let received = report.received.map(|ts| ts.0);
    let row = query_one(
        client,
        "storing a report",
        "SELECT report_id, lease_state, replay FROM pvc.store_report( \
             $1, $2::text::uuid, $3, $4, $5, pvc.from_ms($6), $7, $8::text::jsonb, $9, $10, $11, \
             sha256(convert_to($12::text, 'UTF8')), pvc.from_ms($13))",
        &[
            &report.certname,
            &run_id,
            &report.trigger,
            &report.mode,
            &report.exit_code,
            &started,
            &report.duration_secs,
            &resources,
            &report.cached_catalog_status,
            &report.changed_files,
            &report.log_tail,
            &report.body,
            &received,
        ],
    )
    .await?;
    let state: &str = row.get("lease_state");
    let lease = LeaseState::parse(state).ok_or_else(|| {
        PvcError::Invalid(format!("pvc.store_report answered lease state {state:?}"))
    })?;
    Ok(ReportStored {
        id: row.get("report_id"),
        lease,
        replay: row.get("replay"),
    })
}
