//! Request latency by endpoint (a middleware): each request's time to its
//! response head, in a histogram per route class and status class. The
//! classes are fixed sets, never the raw path, so a client cannot create
//! series by inventing URLs. Cost per request: one `Instant::now`, the
//! elapsed time, and two relaxed atomic adds.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::stats::histogram::{Histogram, Snapshot};

/// Route classes, as labelled (`route=`) in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// `/node/<name>`: Foreman's ENC.
    Node,
    /// `/host`: agent polls.
    Host,
    /// `/facts`: agent fact uploads.
    Facts,
    /// `/report`: agent reports.
    Report,
    /// `/api[/v2]/hosts/facts`: facts in Foreman's API format.
    ForemanFacts,
    /// `/api[/v2]/config_reports`: reports in Foreman's API format.
    ForemanReports,
    /// `/ppm`: capacity pushes.
    Ppm,
    /// `/admin/…`: the management API.
    Admin,
    /// `/healthz`, `/readyz`.
    Health,
    Metrics,
    /// Anything else (unknown paths among them).
    Other,
}

impl RouteClass {
    pub const ALL: [RouteClass; 11] = [
        RouteClass::Node,
        RouteClass::Host,
        RouteClass::Facts,
        RouteClass::Report,
        RouteClass::ForemanFacts,
        RouteClass::ForemanReports,
        RouteClass::Ppm,
        RouteClass::Admin,
        RouteClass::Health,
        RouteClass::Metrics,
        RouteClass::Other,
    ];

    /// The class of a request path; `/x` and `/x/<anything>` are `x`.
    pub fn of(path: &str) -> RouteClass {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        match path {
            "/healthz" | "/readyz" => RouteClass::Health,
            "/metrics" => RouteClass::Metrics,
            "/ppm" => RouteClass::Ppm,
            "/api/hosts/facts" | "/api/v2/hosts/facts" => RouteClass::ForemanFacts,
            "/api/config_reports" | "/api/v2/config_reports" => RouteClass::ForemanReports,
            _ if under("/node") => RouteClass::Node,
            _ if under("/host") => RouteClass::Host,
            _ if under("/facts") => RouteClass::Facts,
            _ if under("/report") => RouteClass::Report,
            _ if under("/admin") => RouteClass::Admin,
            _ => RouteClass::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RouteClass::Node => "node",
            RouteClass::Host => "host",
            RouteClass::Facts => "facts",
            RouteClass::Report => "report",
            RouteClass::ForemanFacts => "foreman_facts",
            RouteClass::ForemanReports => "foreman_reports",
            RouteClass::Ppm => "ppm",
            RouteClass::Admin => "admin",
            RouteClass::Health => "health",
            RouteClass::Metrics => "metrics",
            RouteClass::Other => "other",
        }
    }
}

/// Status classes, as labelled (`status=`). The bridge answers no 1xx or
/// 3xx; were one added, it would count with the successes.
pub const STATUS_CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`] of a status code.
pub fn status_class(code: u16) -> usize {
    match code {
        500.. => 2,
        400..=499 => 1,
        _ => 0,
    }
}

/// One histogram per route class and status class.
#[derive(Debug, Default)]
pub struct RequestTimings {
    by_class: [[Histogram; 3]; 11],
}

impl RequestTimings {
    pub fn observe(&self, route: RouteClass, status: u16, elapsed: std::time::Duration) {
        // Declaration order is the order of `ALL` (tested).
        self.by_class[route as usize][status_class(status)].observe(elapsed);
    }

    /// `(route label, status label, snapshot)` for every status class of
    /// each route class that has been requested: absent routes add no
    /// series, and a route's `5xx` series exists (at zero) before its first
    /// error, so a rate over it starts from the first one.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, Snapshot)> {
        let mut out = Vec::new();
        for (route, histograms) in RouteClass::ALL.iter().zip(&self.by_class) {
            if !histograms.iter().any(Histogram::is_used) {
                continue;
            }
            for (status, histogram) in STATUS_CLASSES.iter().zip(histograms) {
                out.push((route.label(), *status, histogram.snapshot()));
            }
        }
        out
    }
}

/// The middleware: times the rest of the chain. Without [`RequestTimings`]
/// in the app data it only passes the request on.
pub async fn time_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(timings) = req.app_data::<web::Data<RequestTimings>>().cloned() else {
        return next.call(req).await;
    };
    let route = RouteClass::of(req.path());
    let started = Instant::now();
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        // Rendered from the error later, with this status.
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    timings.observe(route, status, started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn classifies_every_route() {
        for (path, class) in [
            ("/node/web1.example.com", "node"),
            ("/host", "host"),
            ("/host/web1.example.com", "host"),
            ("/facts", "facts"),
            ("/facts/web1.example.com", "facts"),
            ("/report", "report"),
            ("/report/web1.example.com", "report"),
            ("/api/hosts/facts", "foreman_facts"),
            ("/api/v2/hosts/facts", "foreman_facts"),
            ("/api/config_reports", "foreman_reports"),
            ("/api/v2/config_reports", "foreman_reports"),
            ("/ppm", "ppm"),
            ("/admin/converge", "admin"),
            ("/admin/converge/7", "admin"),
            ("/admin/cache/invalidate", "admin"),
            ("/healthz", "health"),
            ("/readyz", "health"),
            ("/metrics", "metrics"),
            ("/", "other"),
            ("/hostile", "other"),
            ("/nodes/x", "other"),
            ("/metrics/x", "other"),
            ("/api/v2/hosts", "other"),
        ] {
            assert_eq!(RouteClass::of(path).label(), class, "{path}");
        }
    }

    #[test]
    fn all_lists_the_classes_in_declaration_order() {
        for (i, route) in RouteClass::ALL.iter().enumerate() {
            assert_eq!(*route as usize, i, "{route:?}");
        }
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<_> = RouteClass::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RouteClass::ALL.len());
    }

    #[test]
    fn status_classes() {
        assert_eq!(STATUS_CLASSES[status_class(200)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(204)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(399)], "2xx");
        assert_eq!(STATUS_CLASSES[status_class(400)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(431)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(499)], "4xx");
        assert_eq!(STATUS_CLASSES[status_class(500)], "5xx");
        assert_eq!(STATUS_CLASSES[status_class(503)], "5xx");
    }

    #[test]
    fn snapshot_lists_only_requested_routes_with_all_statuses() {
        let timings = RequestTimings::default();
        assert!(timings.snapshot().is_empty());
        timings.observe(RouteClass::Node, 200, Duration::from_millis(1));
        timings.observe(RouteClass::Node, 503, Duration::from_millis(2));
        timings.observe(RouteClass::Host, 404, Duration::from_millis(3));
        let snapshot = timings.snapshot();
        let series: Vec<(&str, &str, u64)> = snapshot
            .iter()
            .map(|(r, s, snap)| (*r, *s, snap.count()))
            .collect();
        assert_eq!(
            series,
            vec![
                ("node", "2xx", 1),
                ("node", "4xx", 0),
                ("node", "5xx", 1),
                ("host", "2xx", 0),
                ("host", "4xx", 1),
                ("host", "5xx", 0),
            ]
        );
    }
}
