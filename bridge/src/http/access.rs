//! Access control on every request (a middleware): the credentials read off
//! the request (the verified client certificate's certname from the
//! connection, an `Authorization: Bearer` token), the target from the path
//! the router matches, the decision from `crate::access`, and the refusal
//! rendered: `/host` keeps the answer's shell shape (agents evaluate the
//! body), 401 carries `WWW-Authenticate: Bearer`. Refusals are counted by
//! route class and status for `/metrics` ([`Refusals`]).

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::access::{Credentials, Decision, Policy, Refusal, Route, Status, Target};
use crate::certname::Certname;
use crate::tls::PeerCertname;

/// The middleware: refuses what the policy refuses, passes the rest on.
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let fallback;
    let policy = match req.app_data::<web::Data<Policy>>() {
        Some(policy) => policy.get_ref(),
        None => {
            // Not configured: the defaults (admin API closed).
            fallback = Policy::default();
            &fallback
        }
    };
    let path = req.match_info().as_str().to_owned();
    let route = Route::of(&path);
    let target = target(route, req.query_string());
    let peer = req.conn_data::<PeerCertname>().map(|p| p.0.clone());
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Credentials::bearer_of)
        .map(str::to_owned);
    let credentials = Credentials {
        certname: peer.as_ref(),
        bearer: bearer.as_deref(),
    };
    match policy.decide(&credentials, &target) {
        Decision::Allow => Ok(next.call(req).await?.map_into_left_body()),
        Decision::Refuse(refusal) => {
            log(&refusal, &path, bearer.is_some());
            if let Some(state) = req.app_data::<web::Data<super::AppState>>() {
                state.refusals.count(route, refusal.status);
            }
            let response = render(req.request(), route, &refusal);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Requests refused by access control, by route class and status: a rise
/// in 403s is a node reaching for another's answers, in 401s a client
/// without its credential (an expired token file, a missing certificate).
#[derive(Debug, Default)]
pub struct Refusals {
    /// `[route class][status]`, in the orders of [`Refusals::ROUTES`] and
    /// [`Refusals::STATUSES`].
    counts: [[AtomicU64; 3]; 3],
}

impl Refusals {
    /// Route classes as labelled in `/metrics`.
    pub const ROUTES: [&'static str; 3] = ["node", "server", "admin"];
    /// Statuses as labelled in `/metrics`.
    pub const STATUSES: [Status; 3] = [Status::BadRequest, Status::Unauthorized, Status::Forbidden];

    pub fn count(&self, route: Route<'_>, status: Status) {
        let route = match route {
            // Open routes are never refused.
            Route::Open => return,
            Route::Own { .. } => 0,
            Route::Server => 1,
            Route::Admin => 2,
        };
        let status = match status {
            Status::BadRequest => 0,
            Status::Unauthorized => 1,
            Status::Forbidden => 2,
        };
        self.counts[route][status].fetch_add(1, Ordering::Relaxed);
    }

    /// `(route class, status code, count)` for every pair.
    pub fn snapshot(&self) -> Vec<(&'static str, u16, u64)> {
        let mut out = Vec::with_capacity(9);
        for (r, route) in Self::ROUTES.iter().enumerate() {
            for (s, status) in Self::STATUSES.iter().enumerate() {
                out.push((
                    *route,
                    status.code(),
                    self.counts[r][s].load(Ordering::Relaxed),
                ));
            }
        }
        out
    }
}

/// The certname a node endpoint is for: the path's last segment, or the
/// one `fqdn=` of the query.
fn target(route: Route<'_>, query: &str) -> Target {
    match route {
        Route::Open => Target::Open,
        Route::Server => Target::Server,
        Route::Admin => Target::Admin,
        Route::Own {
            name_in_path: Some(name),
        } => Target::Own(
            name.parse::<Certname>()
                .map_err(|e| format!("certname: {e}")),
        ),
        Route::Own { name_in_path: None } => {
            let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
                .map(web::Query::into_inner)
                .unwrap_or_default();
            let mut names = pairs.iter().filter(|(k, _)| k == "fqdn").map(|(_, v)| v);
            Target::Own(match (names.next(), names.next()) {
                (None, _) => Err("fqdn=<certname> is required".into()),
                (Some(_), Some(_)) => Err("fqdn: given more than once".into()),
                (Some(name), None) => name.parse::<Certname>().map_err(|e| format!("fqdn: {e}")),
            })
        }
    }
}

/// 403 is a known caller reaching for what is not its own: a warning with
/// both names. 401 is a caller without a credential: informational.
fn log(refusal: &Refusal, path: &str, bearer: bool) {
    let caller = refusal.caller.as_ref().map(Certname::as_str).unwrap_or("-");
    let requested = refusal
        .requested
        .as_ref()
        .map(Certname::as_str)
        .unwrap_or("-");
    match refusal.status {
        Status::Forbidden => tracing::warn!(
            caller,
            requested,
            path,
            bearer,
            reason = %refusal.reason,
            "request refused (403)"
        ),
        Status::Unauthorized => tracing::info!(
            caller,
            path,
            bearer,
            reason = %refusal.reason,
            "request refused (401)"
        ),
        Status::BadRequest => {
            tracing::debug!(caller, path, reason = %refusal.reason, "request refused (400)")
        }
    }
}

fn render(req: &actix_web::HttpRequest, route: Route<'_>, refusal: &Refusal) -> HttpResponse {
    let status = StatusCode::from_u16(refusal.status.code()).unwrap_or(StatusCode::FORBIDDEN);
    let is_host =
        matches!(route, Route::Own { .. }) && req.match_info().as_str().starts_with("/host");
    let mut response = if is_host {
        // PVC_RETURN 77 (EX_NOPERM): refused, no run.
        super::runs::refusal_response(req, status, 77, &refusal.reason)
    } else {
        HttpResponse::build(status)
            .content_type(header::ContentType::plaintext())
            .body(format!("{}\n", refusal.reason))
    };
    if refusal.status == Status::Unauthorized {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"pvc-bridge\""),
        );
    }
    response
}
