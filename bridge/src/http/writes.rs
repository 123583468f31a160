//! Fact and report uploads: the pvc agent's `POST /facts`, and Foreman's own
//! `POST /api/hosts/facts` and `POST /api/config_reports` (also under
//! `/api/v2/`), answered the way Foreman answers them so that the stock ENC
//! script and report processor work with only their URL changed.
//!
//! Everything is stored on the primary (`pvc.facts`, `pvc.config_reports`,
//! `pvc.checkins`); the bridge does not create Foreman hosts itself. While
//! the primary is unreachable, uploads go to the write spool (when one is
//! configured) and the answer says `"stored": false, "spooled": true`.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::forward::SyncOutcome;
use crate::schedule::Ts;
use crate::store::pvc::{self, PvcError};
use crate::writes::{self, FactUpload, StoreFailure, Stored, UploadError, Uploads, WriteSettings};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/facts", web::post().to(facts_query))
        .route("/facts/{certname}", web::post().to(facts_path))
        .route("/api/hosts/facts", web::post().to(foreman_facts))
        .route("/api/v2/hosts/facts", web::post().to(foreman_facts))
        .route("/api/config_reports", web::post().to(foreman_report))
        .route("/api/v2/config_reports", web::post().to(foreman_report));
}

/// How an error is rendered: plain text for the pvc endpoints, Foreman's
/// JSON for Foreman's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Pvc,
    Foreman,
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("body larger than writes.max_body_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    Upload(UploadError),
    #[error("{0}")]
    Unavailable(String),
}

/// An error together with how to render it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
struct Failure {
    dialect: Dialect,
    error: WriteError,
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        match (&self.error, self.dialect) {
            (WriteError::TooLarge(_), _) => StatusCode::PAYLOAD_TOO_LARGE,
            (WriteError::Unavailable(_), _) => StatusCode::SERVICE_UNAVAILABLE,
            (WriteError::Upload(_), Dialect::Pvc) => StatusCode::BAD_REQUEST,
            // Foreman: malformed JSON is 400 (below); a payload it cannot
            // import is 422 (`render_exception … :unprocessable_entity`).
            (WriteError::Upload(UploadError::Json(_)), Dialect::Foreman) => StatusCode::BAD_REQUEST,
            (WriteError::Upload(_), Dialect::Foreman) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        match self.dialect {
            Dialect::Pvc => response
                .content_type(ContentType::plaintext())
                .body(format!("{}\n", self.error)),
            // Api::BaseController: a JSON parse error renders
            // `{status: 400, error: "There was a problem in the JSON you
            // submitted: …"}`; render_exception renders `{message: …}`.
            Dialect::Foreman => match &self.error {
                WriteError::Upload(UploadError::Json(reason)) => response.json(json!({
                    "status": 400,
                    "error": format!("There was a problem in the JSON you submitted: {reason}"),
                })),
                WriteError::TooLarge(_) => response.json(json!({
                    "status": status.as_u16(),
                    "error": self.error.to_string(),
                })),
                _ => response.json(json!({ "message": self.error.to_string() })),
            },
        }
    }
}

fn fail(dialect: Dialect) -> impl Fn(WriteError) -> Failure {
    move |error| Failure { dialect, error }
}

/// The body, refused above `writes.max_body_bytes`.
async fn body(
    settings: &WriteSettings,
    payload: web::Payload,
    dialect: Dialect,
) -> Result<web::Bytes, Failure> {
    let limit = settings.max_body_bytes;
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(fail(dialect)(WriteError::Upload(UploadError::Invalid(
            format!("reading the body: {error}"),
        )))),
        Err(_) => Err(fail(dialect)(WriteError::TooLarge(limit))),
    }
}

fn store_failure(error: StoreFailure) -> WriteError {
    match error {
        StoreFailure::Refused(PvcError::Invalid(m)) => WriteError::Upload(UploadError::Invalid(m)),
        StoreFailure::Refused(other) => WriteError::Unavailable(other.to_string()),
        StoreFailure::Unavailable(reason) => WriteError::Unavailable(reason),
    }
}

async fn store(
    uploads: &Uploads,
    settings: &WriteSettings,
    upload: &FactUpload,
    source: &str,
) -> Result<Stored<pvc::FactsStored>, WriteError> {
    let prepared = writes::prepare_facts(upload, settings);
    let stored = uploads
        .store_facts(upload.certname.as_str(), &prepared, source)
        .await
        .map_err(|error| {
            tracing::error!(host.certname = %upload.certname, %error, "facts not stored");
            store_failure(error)
        })?;
    if let Stored::Stored(stored) = &stored {
        tracing::debug!(
            host.certname = %upload.certname,
            outcome = stored.outcome.as_str(),
            source,
            "facts stored"
        );
    }
    Ok(stored)
}

/// What became of stored facts on the way to Foreman.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Forwarding {
    /// No forwarding configured.
    Off,
    /// Nothing new for Foreman (only volatile facts changed, or a replay).
    NotNeeded,
    /// Queued for the background forwarder.
    Queued,
    /// Foreman has them: a new host, or a change the ENC depends on.
    Forwarded,
    /// Should have been sent at once but could not be; queued.
    Deferred(String),
}

impl Forwarding {
    fn json(&self) -> serde_json::Value {
        match self {
            Forwarding::Off => json!("off"),
            Forwarding::NotNeeded => json!("not_needed"),
            Forwarding::Queued => json!("queued"),
            Forwarding::Forwarded => json!("forwarded"),
            Forwarding::Deferred(_) => json!("queued"),
        }
    }

    /// Adds what the answer says of forwarding to `answer`.
    fn annotate(&self, answer: &mut serde_json::Value) {
        answer["foreman"] = self.json();
        if let Forwarding::Deferred(reason) = self {
            answer["foreman_deferred"] = json!(reason);
        }
    }
}

/// Queues stored facts for Foreman, or sends them now when Foreman must
/// have them before the host's next ENC answer; then that answer is
/// computed from data at least as new as Foreman's import.
async fn forward(
    state: &AppState,
    upload: &FactUpload,
    stored: &Stored<pvc::FactsStored>,
) -> Forwarding {
    let Some(forwarder) = &state.forward else {
        return Forwarding::Off;
    };
    let Stored::Stored(stored) = stored else {
        // Spooled: queued when the spool is replayed.
        return Forwarding::Queued;
    };
    if !stored.outcome.digest_changed() {
        return Forwarding::NotNeeded;
    }
    let certname = upload.certname.as_str();
    let now = match forwarder
        .must_forward_now(
            certname,
            &upload.name,
            stored.outcome == pvc::FactsOutcome::New,
            stored.enc_changed,
        )
        .await
    {
        Ok(now) => now,
        Err(error) => {
            tracing::warn!(host.certname = certname, %error, "cannot tell whether Foreman knows the host; forwarding later");
            false
        }
    };
    if !now {
        forwarder.notify();
        return Forwarding::Queued;
    }
    match forwarder.forward_now(certname).await {
        SyncOutcome::Forwarded { lsn } => {
            state.enc.fence(&[certname, &upload.name], &lsn).await;
            tracing::debug!(host.certname = certname, %lsn, "facts forwarded to Foreman before the next ENC answer");
            Forwarding::Forwarded
        }
        SyncOutcome::Deferred { reason } => {
            tracing::warn!(host.certname = certname, %reason, "facts the ENC depends on could not be forwarded at once; queued");
            forwarder.notify();
            Forwarding::Deferred(reason)
        }
    }
}

fn spooled_json(certname: &str, received: Ts) -> serde_json::Value {
    json!({
        "stored": false,
        "spooled": true,
        "certname": certname,
        "received_ms": received.0,
    })
}

fn stored_json(upload: &FactUpload, stored: &Stored<pvc::FactsStored>) -> serde_json::Value {
    let stored = match stored {
        Stored::Stored(stored) => stored,
        Stored::Spooled { received } => return spooled_json(upload.certname.as_str(), *received),
    };
    json!({
        "stored": true,
        "spooled": false,
        "certname": upload.certname.as_str(),
        "outcome": stored.outcome.as_str(),
        "digest": stored.digest,
        "digest_changed": stored.outcome.digest_changed(),
        "received_ms": stored.received.0,
        "digest_changed_ms": stored.digest_changed.0,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FactsQuery {
    fqdn: Option<String>,
}

async fn facts_query(
    state: web::Data<AppState>,
    uploads: web::Data<Uploads>,
    settings: web::Data<WriteSettings>,
    query: web::Query<FactsQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    let name = query.into_inner().fqdn.ok_or_else(|| {
        fail(Dialect::Pvc)(WriteError::Upload(UploadError::Invalid(
            "fqdn=<certname> is required".into(),
        )))
    })?;
    facts(&state, &uploads, &settings, &name, payload).await
}

async fn facts_path(
    state: web::Data<AppState>,
    uploads: web::Data<Uploads>,
    settings: web::Data<WriteSettings>,
    certname: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    facts(&state, &uploads, &settings, &certname, payload).await
}

/// `POST /facts/<certname>`: facter JSON or the original agent's base64.
async fn facts(
    state: &AppState,
    uploads: &Uploads,
    settings: &WriteSettings,
    name: &str,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    let bytes = body(settings, payload, Dialect::Pvc).await?;
    let upload = writes::parse_facts_body(name, &bytes)
        .map_err(|e| fail(Dialect::Pvc)(WriteError::Upload(e)))?;
    let answer = accept_facts(state, uploads, settings, &upload, "facts", Dialect::Pvc).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// Stores parsed facts and passes them on to Foreman: the answer both fact
/// endpoints start from.
async fn accept_facts(
    state: &AppState,
    uploads: &Uploads,
    settings: &WriteSettings,
    upload: &FactUpload,
    source: &str,
    dialect: Dialect,
) -> Result<serde_json::Value, Failure> {
    let stored = store(uploads, settings, upload, source)
        .await
        .map_err(fail(dialect))?;
    let forwarding = forward(state, upload, &stored).await;
    let mut answer = stored_json(upload, &stored);
    forwarding.annotate(&mut answer);
    Ok(answer)
}

/// `POST /api/hosts/facts`. Foreman answers 201 with the host (`name`,
/// `id`, `display_name`, …) after importing; the bridge stores the facts and
/// answers 201 with the host's name and what was stored: it has no Foreman
/// host id to give (the host may not exist in Foreman yet).
async fn foreman_facts(
    state: web::Data<AppState>,
    uploads: web::Data<Uploads>,
    settings: web::Data<WriteSettings>,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    let bytes = body(&settings, payload, Dialect::Foreman).await?;
    let upload = writes::parse_foreman_facts(&bytes)
        .map_err(|e| fail(Dialect::Foreman)(WriteError::Upload(e)))?;
    let mut answer = accept_facts(
        &state,
        &uploads,
        &settings,
        &upload,
        "foreman",
        Dialect::Foreman,
    )
    .await?;
    answer["name"] = json!(upload.name);
    answer["certname"] = json!(upload.certname.as_str());
    answer["display_name"] = json!(upload.name);
    Ok(HttpResponse::Created().json(answer))
}

/// `POST /api/config_reports`: Foreman answers 201 with the report
/// (`Api::V2::ConfigReportsController#create` → `process_response`); the
/// bridge answers 201 with the stored report's id and what was sent.
async fn foreman_report(
    state: web::Data<AppState>,
    uploads: web::Data<Uploads>,
    settings: web::Data<WriteSettings>,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    let fail = fail(Dialect::Foreman);
    let bytes = body(&settings, payload, Dialect::Foreman).await?;
    let upload = writes::parse_config_report(&bytes).map_err(|e| fail(WriteError::Upload(e)))?;
    let report = serde_json::Value::Object(upload.report);
    let canonical = writes::canonical_json(&report);
    let stored = uploads
        .store_report(upload.certname.as_str(), &canonical)
        .await
        .map_err(|error| {
            tracing::error!(host.certname = %upload.certname, %error, "config report not stored");
            fail(store_failure(error))
        })?;
    let mut answer = json!({
        "host_name": upload.certname.as_str(),
        "reported_at": upload.reported_at,
        "status": report.get("status"),
        "metrics": report.get("metrics"),
    });
    match stored {
        Stored::Stored(stored) => {
            tracing::debug!(host.certname = %upload.certname, report_id = stored.id, replay = stored.replay, "config report stored");
            answer["id"] = json!(stored.id);
            answer["stored"] = json!(true);
            answer["spooled"] = json!(false);
            answer["replay"] = json!(stored.replay);
            answer["foreman"] = match (&state.forward, stored.replay) {
                (None, _) => json!("off"),
                (Some(_), true) => json!("not_needed"),
                (Some(forwarder), false) => {
                    forwarder.notify();
                    json!("queued")
                }
            };
        }
        Stored::Spooled { received } => {
            // No id yet: the report gets one when the spool is replayed.
            answer["id"] = serde_json::Value::Null;
            answer["stored"] = json!(false);
            answer["spooled"] = json!(true);
            answer["received_ms"] = json!(received.0);
        }
    }
    Ok(HttpResponse::Created().json(answer))
}
