//! The status page: `GET /` (one HTML document with its stylesheet and
//! script, compiled into the binary; nothing is fetched from elsewhere)
//! and `GET /stats`, the JSON it polls. The document is computed at most
//! once per [`REFRESH`] from the services' state and shared by every
//! request (`stats::Recorder::snapshots`), so a wall screen per team costs
//! nothing. Besides the services' memory, a refresh reads one thing from a
//! replica: the rollout plugin's rollouts (`store::rollouts`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::timing::{RequestTimings, RouteClass};
use super::AppState;
use crate::stats::fairness::{Fairness, HostAges, NO_HOSTGROUP};
use crate::stats::rollouts::Rollouts;
use crate::stats::snapshot::{
    self, Cumulative, EncCounts, Inputs, Outbox, Published, Replica, RunCounts, Spool,
};
use crate::store::{rollouts as rollout_rows, Db};
use crate::writes::Uploads;

/// How often the document is computed at most (the page polls as often).
pub const REFRESH: Duration = Duration::from_secs(5);
/// Minutes of run history in the document.
pub const MINUTES: usize = crate::stats::history::MINUTES;
/// The rollouts read gives up after this: the page shows the rest.
const ROLLOUTS_TIMEOUT: Duration = Duration::from_secs(2);

const HTML: &str = include_str!("../../assets/status/index.html");
const CSS: &str = include_str!("../../assets/status/status.css");
const JS: &str = include_str!("../../assets/status/status.js");

/// The page, its stylesheet and script inlined (one request, no other
/// path to classify in access control).
static PAGE: LazyLock<String> = LazyLock::new(|| {
    HTML.replace("/*STATUS_CSS*/", CSS)
        .replace("/*STATUS_JS*/", JS)
});

/// Inline style and script only, data only from this origin.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the status page.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE.as_str())
}

/// `GET /stats`: the shared snapshot, at most [`REFRESH`] old.
pub async fn stats(
    state: web::Data<AppState>,
    uploads: Option<web::Data<Uploads>>,
    timings: Option<web::Data<RequestTimings>>,
) -> HttpResponse {
    let published = published(
        &state,
        uploads.as_ref().map(|u| u.get_ref()),
        timings.as_ref().map(|t| t.get_ref()),
    )
    .await;
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(published.json.clone())
}

/// The shared snapshot, built at most once per [`REFRESH`] (`/stats` and
/// `/metrics` read the same one). One request refreshes it; the others
/// wait for that one, then share its result.
pub(super) async fn published(
    state: &AppState,
    uploads: Option<&Uploads>,
    timings: Option<&RequestTimings>,
) -> Arc<Published> {
    let recorder = &state.runs.stats.recorder;
    if let Some(fresh) = recorder.snapshots.fresh(Instant::now(), REFRESH) {
        return fresh;
    }
    let _refreshing = recorder.refreshing.lock().await;
    if let Some(fresh) = recorder.snapshots.fresh(Instant::now(), REFRESH) {
        return fresh;
    }
    let rollouts = read_rollouts(&state.db).await;
    recorder.snapshots.get(Instant::now(), REFRESH, |previous| {
        let enc_latency = timings.and_then(node_latency);
        gather(state, uploads, enc_latency, rollouts, previous)
    })
}

/// A failed rollouts read was logged (logged again once it recovers).
static ROLLOUTS_FAILING: AtomicBool = AtomicBool::new(false);

/// The rollout plugin's rollouts from a replica; a missing plugin is a
/// state of the panel, not an error.
async fn read_rollouts(db: &Db) -> Rollouts {
    let read = async {
        let (client, _) = db.read().await?;
        rollout_rows::load(&client)
            .await
            .map_err(anyhow::Error::from)
    };
    let result = match tokio::time::timeout(ROLLOUTS_TIMEOUT, read).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(error)) => Err(format!("{error:#}")),
        Err(_) => Err(format!("no answer within {} s", ROLLOUTS_TIMEOUT.as_secs())),
    };
    match &result {
        Ok(_) => {
            if ROLLOUTS_FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!("reading rollouts for the status page works again");
            }
        }
        Err(error) => {
            if !ROLLOUTS_FAILING.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "reading rollouts for the status page failed; the panel says so until it works");
            }
        }
    }
    Rollouts::of(result)
}

/// Successful `/node` answers as the timing middleware counted them.
fn node_latency(timings: &RequestTimings) -> Option<Cumulative> {
    let node = RouteClass::Node.label();
    timings
        .snapshot()
        .into_iter()
        .find(|(route, status, _)| *route == node && *status == "2xx")
        .map(|(_, _, histogram)| Cumulative {
            counts: histogram.cumulative.to_vec(),
            sum_seconds: histogram.sum_seconds,
        })
}

/// Reads every service once and builds the document.
fn gather(
    state: &AppState,
    uploads: Option<&Uploads>,
    enc_latency: Option<Cumulative>,
    rollouts: Rollouts,
    previous: Option<&Published>,
) -> Published {
    let runs = &state.runs;
    let relaxed = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let now = runs.now();
    let config = runs.scheduler_config();
    let scheduler = runs.scheduler_stats();
    let host_runs = runs.host_runs();
    let hostgroups = runs.hostgroups_of(host_runs.iter().map(|(c, _, _)| &**c));
    let fairness = {
        let mut outcomes = runs.stats.recorder.outcomes();
        // Hosts gone from Foreman leave the record.
        if outcomes.len() > host_runs.len() {
            let fleet: HashSet<&str> = host_runs.iter().map(|(c, _, _)| &**c).collect();
            outcomes.retain(|name| fleet.contains(name));
        }
        let ages = host_runs
            .iter()
            .zip(&hostgroups)
            .map(|((certname, pool, last_run), group)| {
                let since_run = last_run.map(|at| now.since(at).max(0.0));
                let hostgroup = group.as_deref().unwrap_or(NO_HOSTGROUP);
                // No report with an exit code since this process started:
                // the last run stands in (a run reported failed with exit
                // code 1 is already taken back from it by the scheduler).
                let (since_success, success_estimated) = match outcomes.get(certname) {
                    Some(outcome) => (outcome.last_success.map(|at| now.since(at).max(0.0)), false),
                    None => (since_run, true),
                };
                HostAges {
                    pool,
                    hostgroup,
                    since_run,
                    since_success,
                    success_estimated,
                }
            });
        Fairness::of(ages, config.max_interval)
    };
    let stats = &runs.stats;
    let run_counts = RunCounts {
        polls: relaxed(&stats.polls),
        granted_schedule: relaxed(&stats.granted_schedule),
        granted_file_change: relaxed(&stats.granted_file_change),
        granted_converge: relaxed(&stats.granted_converge),
        cached_catalog: relaxed(&stats.granted_cached_catalog),
        forced_over_budget: relaxed(&stats.forced_over_budget),
        reports: relaxed(&stats.reports),
    };
    let enc = &state.enc.stats;
    let enc = EncCounts {
        hits: relaxed(&enc.hits),
        misses: relaxed(&enc.misses),
        loads: relaxed(&enc.loads),
        stale_served: relaxed(&enc.stale_served),
    };
    let replicas = state
        .db
        .replica_states()
        .into_iter()
        .map(|r| Replica {
            label: r.label,
            up: r.view.up,
            usable: r.view.usable,
            lag_bytes: r.view.lag_bytes,
            reads: r.reads,
        })
        .collect();
    let outbox = state.forward.as_ref().and_then(|forwarder| {
        let status = forwarder.status();
        status.outbox.map(|o| Outbox {
            pending: o.pending,
            dead: o.dead,
            oldest_secs: o.oldest_secs,
            leader: status.leader,
        })
    });
    let spool = uploads.and_then(Uploads::spool_stats).map(|s| Spool {
        records: s.records,
        bytes: s.bytes,
        disk_bytes: s.disk_bytes,
    });
    let converges = runs.open_converges();
    // Taken last and alone: the lease feed takes it under the scheduler's lock.
    let history = runs.stats.recorder.runs();
    snapshot::publish(
        Inputs {
            now,
            refresh_secs: REFRESH.as_secs_f64(),
            minutes: MINUTES,
            target_utilization: config.target_utilization,
            scheduler: &scheduler,
            history: &history,
            runs: run_counts,
            converges,
            enc,
            enc_latency,
            replicas,
            replica_max_lag_bytes: state.db.max_lag_bytes(),
            outbox,
            spool,
            fairness,
            rollouts,
        },
        previous,
    )
}
