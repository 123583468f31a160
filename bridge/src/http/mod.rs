//! HTTP: the only module that knows actix. Handlers parse and validate,
//! call the service, and render; errors map to status codes in one place
//! (`ApiError`). Who may call what is checked first, for every path, by the
//! [`access::authorize`] middleware.

pub mod access;
pub mod limits;
mod metrics;
mod runs;
mod status;
pub mod timing;
mod writes;

use std::sync::Arc;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;

use crate::cache::EncService;
use crate::certname::{Certname, CertnameError};
use crate::store::{Db, StoreError};

/// What every handler can reach.
pub struct AppState {
    pub enc: Arc<EncService>,
    pub db: Arc<Db>,
    pub runs: Arc<crate::runs::RunService>,
    pub forward: Option<Arc<crate::forward::Forwarder>>,
    pub feed: Arc<crate::changes::feed::ChangeFeed>,
    /// Requests access control refused, for `/metrics`.
    pub refusals: Arc<access::Refusals>,
}

/// Registers every route on an actix `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/node/{name}", web::get().to(node))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics::render))
        .route("/", web::get().to(status::page))
        .route("/stats", web::get().to(status::stats))
        .route("/admin/cache/invalidate", web::post().to(invalidate))
        .configure(runs::configure)
        .configure(writes::configure);
}

/// Errors a request can end in; the only place that picks status codes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<CertnameError> for ApiError {
    fn from(e: CertnameError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response
            .content_type(ContentType::plaintext())
            .body(format!("{self}\n"))
    }
}

#[derive(Deserialize)]
struct NodeQuery {
    format: Option<String>,
}

/// `GET /node/<name>?format=yml`: Foreman's ENC endpoint, drop-in.
async fn node(
    state: web::Data<AppState>,
    name: web::Path<String>,
    query: web::Query<NodeQuery>,
) -> Result<HttpResponse, ApiError> {
    let certname: Certname = name.parse()?;
    let html = match query.format.as_deref() {
        Some("yml") | Some("yaml") => false,
        None => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not supported: use format=yml"
            )))
        }
    };
    let doc = state
        .enc
        .document(certname.as_str())
        .await
        .map_err(|error| {
            tracing::error!(host.certname = %certname, %error, "ENC unavailable");
            ApiError::Unavailable(error.to_string())
        })?;
    let Some(body) = doc.body() else {
        // Foreman answers an unknown host with 404 and an empty body.
        return Ok(HttpResponse::NotFound()
            .content_type(ContentType::plaintext())
            .finish());
    };
    let mut response = HttpResponse::Ok();
    // No database answered: the last good document, marked as RFC 7234
    // does for a stale answer, with its age.
    if let Some(age) = doc.stale_age() {
        response
            .insert_header((header::WARNING, r#"110 pvc-bridge "Response is Stale""#))
            .insert_header(("X-PVC-Stale-Seconds", age.as_secs().to_string()));
    }
    if html {
        return Ok(response.content_type(ContentType::html()).body(format!(
            "<pre>{}</pre>",
            escape_html(&String::from_utf8_lossy(body))
        )));
    }
    Ok(response
        .content_type(ContentType::plaintext())
        .insert_header(("X-Pvc-Enc-Source", doc.source()))
        .body(body.clone()))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("ok\n")
}

/// Ready when a read connection can run a query; otherwise 503 saying
/// which servers failed and what the ENC does meanwhile.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let unready = |why: String| {
        let enc = match state.enc.stale_limit() {
            Some(limit) => format!(
                "serving cached ENC documents up to {} s old, marked stale",
                limit.as_secs()
            ),
            None => "no stale ENC documents are served (cache.stale_grace_secs = 0)".into(),
        };
        ApiError::Unavailable(format!("{why}; {enc}"))
    };
    let (client, role) = state.db.read().await.map_err(|error| {
        // Each replica as routing sees it after this failed read.
        let replicas = state
            .db
            .replica_states()
            .iter()
            .map(|replica| {
                let routing = if replica.view.usable {
                    "gave no connection"
                } else {
                    "out of rotation"
                };
                format!("{} {routing}", replica.label)
            })
            .collect::<Vec<_>>();
        let replicas = if replicas.is_empty() {
            "none configured".to_owned()
        } else {
            replicas.join(", ")
        };
        let servers = match error {
            StoreError::Unavailable(reason) => reason,
            other => other.to_string(),
        };
        unready(format!(
            "no database reachable: replicas: {replicas}; {servers}"
        ))
    })?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| unready(format!("{} database: {e}", role.as_str())))?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(format!("ready ({})\n", role.as_str())))
}

#[derive(Deserialize)]
struct InvalidateQuery {
    certname: Option<String>,
    all: Option<bool>,
    documents: Option<bool>,
}

/// `POST /admin/cache/invalidate?certname=<name>`, `?documents=true` (every
/// document, layers kept) or `?all=true` (documents and layers).
async fn invalidate(
    state: web::Data<AppState>,
    query: web::Query<InvalidateQuery>,
) -> Result<HttpResponse, ApiError> {
    match (&query.certname, query.all, query.documents) {
        (Some(name), _, _) => {
            let certname: Certname = name.parse()?;
            state
                .enc
                .invalidate(certname.as_str())
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            tracing::info!(host.certname = %certname, "cache invalidated");
        }
        (None, Some(true), _) => {
            state
                .enc
                .invalidate_all()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            tracing::info!("whole cache invalidated");
        }
        (None, _, Some(true)) => {
            state.enc.invalidate_documents();
            tracing::info!("every cached document invalidated");
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give certname=<name>, documents=true or all=true".into(),
            ))
        }
    }
    Ok(HttpResponse::NoContent().finish())
}
