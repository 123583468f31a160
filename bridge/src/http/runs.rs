//! Run-decision endpoints: `/host`, `/report`, `/ppm`, and the management
//! API (`/admin/converge`, `/admin/explain`). Who may call which is decided
//! before these handlers run (`http::access`).

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::answer::Answer;
use crate::certname::Certname;
use crate::runs::{self, ConvergeRequest, RunError};
use crate::schedule::Poll;
use crate::writes::Stored;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/host", web::get().to(host_query))
        .route("/host/{certname}", web::get().to(host_path))
        .route("/report", web::post().to(report_query))
        .route("/report/{certname}", web::post().to(report_path))
        .route("/ppm", web::post().to(ppm))
        .route("/admin/converge", web::post().to(converge))
        .route("/admin/converge/{id}", web::get().to(converge_progress))
        .route("/admin/explain/{certname}", web::get().to(explain));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostQuery {
    fqdn: Option<String>,
    /// `file_change` asks for a forced run.
    trigger: Option<String>,
    /// The files that changed (logged; the report carries them too).
    files: Option<String>,
}

fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn answer_response(
    req: &HttpRequest,
    status: actix_web::http::StatusCode,
    answer: &Answer,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if wants_json(req) {
        response.json(answer.to_json())
    } else {
        // Each poll repeats it, so debug, not warn; docs/security.md says
        // why the shell form leaves these out.
        for key in answer.shell_omitted() {
            tracing::debug!(%key, "left out of the shell answer: its value holds a glob character (*, ?, [); the JSON answer carries it");
        }
        response
            .content_type(ContentType::plaintext())
            .body(answer.to_shell())
    }
}

async fn host_query(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HostQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    let Some(fqdn) = query.fqdn.clone() else {
        return refuse(&req, 400, 64, "fqdn=<certname> is required");
    };
    host(state, req, fqdn, query).await
}

async fn host_path(
    state: web::Data<AppState>,
    req: HttpRequest,
    certname: web::Path<String>,
    query: web::Query<HostQuery>,
) -> HttpResponse {
    host(state, req, certname.into_inner(), query.into_inner()).await
}

/// Errors keep the answer's shape: agents `eval` the body whatever the
/// status, and must see `PVC_RETURN` non-zero and no run.
fn refuse(req: &HttpRequest, status: u16, code: u8, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    refusal_response(req, status, code, message)
}

/// A refusal in the answer's shape (also for access refusals of `/host`).
pub(super) fn refusal_response(
    req: &HttpRequest,
    status: actix_web::http::StatusCode,
    code: u8,
    message: &str,
) -> HttpResponse {
    answer_response(req, status, &runs::refusal(code, message, 60))
}

/// Which agents poll, by the protocol version they declare, so an upgrade
/// shows when every agent speaks this bridge's protocol.
fn count_protocol(stats: &runs::RunStats, req: &HttpRequest) {
    let declared = req
        .headers()
        .get(runs::PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u32>());
    let slot = match declared {
        None => 0,
        Some(Ok(v)) if v == runs::PROTOCOL => 1,
        Some(Ok(v)) if v < runs::PROTOCOL => 2,
        // Newer, or not a number: an agent this bridge does not know.
        Some(_) => 3,
    };
    stats.polls_protocol[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

async fn host(
    state: web::Data<AppState>,
    req: HttpRequest,
    fqdn: String,
    query: HostQuery,
) -> HttpResponse {
    count_protocol(&state.runs.stats, &req);
    let certname: Certname = match fqdn.parse() {
        Ok(c) => c,
        Err(e) => return refuse(&req, 400, 64, &format!("fqdn: {e}")),
    };
    let poll = match query.trigger.as_deref() {
        None | Some("poll") | Some("schedule") => Poll::Regular,
        Some("file_change") => Poll::FileChange,
        Some(other) => {
            return refuse(
                &req,
                400,
                64,
                &format!("trigger {other:?}: use file_change or leave it out"),
            )
        }
    };
    if let Some(files) = &query.files {
        if files.len() > 64 * 1024 {
            return refuse(&req, 400, 64, "files: too long");
        }
        tracing::info!(host.certname = %certname, files = %files, "monitored files changed");
    }
    match state.runs.poll(&certname, poll).await {
        Ok(answer) => {
            // Forced runs are rare and worth a line; scheduled ones come at
            // the fleet's run rate (debug).
            let forced = answer
                .decision
                .run
                .as_ref()
                .filter(|g| g.trigger == crate::schedule::Trigger::FileChange);
            if let Some(grant) = forced {
                tracing::info!(
                    host.certname = %certname,
                    server = %grant.server,
                    mode = grant.mode.as_str(),
                    run_id = answer.run_id.as_deref().unwrap_or(""),
                    "forced run granted"
                );
            }
            if let Some(grant) = &answer.decision.run {
                tracing::debug!(
                    host.certname = %certname,
                    server = %grant.server,
                    trigger = grant.trigger.as_str(),
                    mode = grant.mode.as_str(),
                    run_id = answer.run_id.as_deref().unwrap_or(""),
                    "run granted"
                );
            }
            answer_response(
                &req,
                actix_web::http::StatusCode::OK,
                &runs::render(&answer),
            )
        }
        Err(RunError::UnknownHost(name)) => refuse(
            &req,
            404,
            1,
            &format!("unknown host {name}: not in Foreman"),
        ),
        Err(RunError::BadRequest(m)) => refuse(&req, 400, 64, &m),
        Err(RunError::Unavailable(m)) => {
            tracing::warn!(host.certname = %certname, error = %m, "poll failed");
            refuse(&req, 503, 2, "database unavailable; try again")
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    fqdn: Option<String>,
}

async fn report_query(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ReportQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let fqdn = query
        .into_inner()
        .fqdn
        .ok_or_else(|| ApiError::BadRequest("fqdn=<certname> is required".into()))?;
    report(state, req, fqdn, body).await
}

async fn report_path(
    state: web::Data<AppState>,
    req: HttpRequest,
    certname: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    report(state, req, certname.into_inner(), body).await
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::UnknownHost(name) => {
            ApiError::NotFound(format!("unknown host {name}: not in Foreman"))
        }
        RunError::BadRequest(m) => ApiError::BadRequest(m),
        RunError::Unavailable(m) => ApiError::Unavailable(m),
    }
}

async fn report(
    state: web::Data<AppState>,
    req: HttpRequest,
    fqdn: String,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let certname: Certname = fqdn.parse()?;
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let input = runs::parse_report(&body, json).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let stored = state
        .runs
        .report(&certname, &input)
        .await
        .map_err(run_error)?;
    let answer = match stored {
        Stored::Stored(stored) => {
            tracing::debug!(
                host.certname = %certname,
                run_id = input.run_id.as_deref().unwrap_or(""),
                exit_code = input.exit_code,
                lease = stored.lease.as_str(),
                replay = stored.replay,
                "report stored"
            );
            serde_json::json!({
                "stored": true,
                "spooled": false,
                "report_id": stored.id,
                "lease": stored.lease.as_str(),
                "replay": stored.replay,
            })
        }
        // No row and no lease decision yet: both come with the replay.
        Stored::Spooled { received } => serde_json::json!({
            "stored": false,
            "spooled": true,
            "report_id": null,
            "lease": null,
            "received_ms": received.0,
        }),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /ppm`: the original pvc capacity push from each puppetmaster.
async fn ppm(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let push = crate::schedule::status::parse_ppm(&body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .runs
        .push_status(&push.fqdn, &push.sample)
        .map_err(run_error)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn converge(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: ConvergeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("converge request: {e}")))?;
    let created = state.runs.converge(&request).await.map_err(run_error)?;
    tracing::info!(request = %created, "converge request recorded");
    Ok(HttpResponse::Created().json(created))
}

async fn converge_progress(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("converge id {id:?} is not a number")))?;
    match state.runs.converge_progress(id).await.map_err(run_error)? {
        Some(progress) => Ok(HttpResponse::Ok().json(progress)),
        None => Err(ApiError::NotFound(format!("no converge request {id}"))),
    }
}

async fn explain(
    state: web::Data<AppState>,
    certname: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let certname: Certname = certname.parse()?;
    let explanation = state.runs.explain(&certname).await.map_err(run_error)?;
    Ok(HttpResponse::Ok().json(explanation))
}
