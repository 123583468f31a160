//! Per-endpoint latency histograms in `/metrics`: requests to a few
//! endpoints move `_count`, `_bucket` and `_sum` of their own route and
//! status class and of no other; buckets are cumulative; invented paths
//! add no series.

use std::collections::BTreeMap;

use crate::support::{self, TestBridge};

const NAME: &str = "pvc_bridge_http_request_duration_seconds";

/// The samples of the histogram in a scrape: series (`name{labels}`) to
/// value.
type Samples = BTreeMap<String, f64>;

async fn scrape(bridge: &TestBridge) -> Samples {
    let (status, _, body) = bridge.get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("# TYPE {NAME} histogram\n")),
        "no TYPE line:\n{body}"
    );
    body.lines()
        .filter(|l| l.starts_with(NAME))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series and value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// `label="value"` pairs of a series, in order.
fn labels(series: &str) -> Vec<(String, String)> {
    let inner = series
        .split_once('{')
        .and_then(|(_, rest)| rest.strip_suffix('}'))
        .unwrap_or("");
    inner
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("label pair");
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

fn value(samples: &Samples, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

fn count(samples: &Samples, route: &str, status: &str) -> f64 {
    value(
        samples,
        &format!("{NAME}_count{{route=\"{route}\",status=\"{status}\"}}"),
    )
}

fn sum(samples: &Samples, route: &str, status: &str) -> f64 {
    value(
        samples,
        &format!("{NAME}_sum{{route=\"{route}\",status=\"{status}\"}}"),
    )
}

/// Every series' buckets rise with `le` and end in `+Inf` = `_count`;
/// every label is from the bounded sets.
fn check_shape(samples: &Samples) {
    const ROUTES: [&str; 11] = [
        "node",
        "host",
        "facts",
        "report",
        "foreman_facts",
        "foreman_reports",
        "ppm",
        "admin",
        "health",
        "metrics",
        "other",
    ];
    let mut buckets: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for (series, v) in samples {
        let labels = labels(series);
        let get = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{series}: no {key} label"))
        };
        let (route, status) = (get("route"), get("status"));
        assert!(ROUTES.contains(&route.as_str()), "{series}");
        assert!(["2xx", "4xx", "5xx"].contains(&status.as_str()), "{series}");
        if series.starts_with(&format!("{NAME}_bucket")) {
            let le = get("le");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            buckets
                .entry((route, status))
                .or_default()
                .push((bound, *v));
        }
    }
    assert!(!buckets.is_empty());
    for ((route, status), mut rows) in buckets {
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            rows.windows(2).all(|w| w[0].1 <= w[1].1),
            "{route} {status}: buckets not cumulative: {rows:?}"
        );
        let last = rows.last().expect("buckets");
        assert_eq!(last.0, f64::INFINITY, "{route} {status}: no +Inf bucket");
        assert_eq!(
            last.1,
            count(samples, &route, &status),
            "{route} {status}: +Inf is not the count"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_moves_its_own_route_and_status_only() {
    let db = support::foreman_db("metrics_hist").await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    let before = scrape(&bridge).await;
    // Nothing was answered before this first scrape.
    assert!(before.is_empty(), "{before:?}");

    let host = support::golden_hosts().remove(0);
    for _ in 0..3 {
        let (status, _, _) = bridge.get(&format!("/node/{host}?format=yml")).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = bridge.get("/node/nosuch.example.com?format=yml").await;
    assert_eq!(status, 404);
    let (status, _, _) = bridge.get(&format!("/node/{host}?format=json")).await;
    assert_eq!(status, 400);
    let (status, _, _) = bridge.get("/healthz").await;
    assert_eq!(status, 200);
    // Refused by access control (no admin token): timed too.
    let (status, _, _) = bridge.get("/admin/explain/x.example.com").await;
    assert_eq!(status, 401);
    // Invented paths share one class.
    for i in 0..5 {
        let (status, _, _) = bridge.get(&format!("/nowhere/{i}")).await;
        assert!((400..500).contains(&status), "{status}");
    }

    let after = scrape(&bridge).await;
    check_shape(&after);
    let expected: BTreeMap<(&str, &str), f64> = [
        (("node", "2xx"), 3.0),
        (("node", "4xx"), 2.0),
        (("health", "2xx"), 1.0),
        (("admin", "4xx"), 1.0),
        (("other", "4xx"), 5.0),
        // The first scrape, counted once it had answered.
        (("metrics", "2xx"), 1.0),
    ]
    .into_iter()
    .collect();
    let mut seen = BTreeMap::new();
    for series in after
        .keys()
        .filter(|s| s.starts_with(&format!("{NAME}_count")))
    {
        let labels = labels(series);
        seen.insert((labels[0].1.clone(), labels[1].1.clone()), after[series]);
    }
    for ((route, status), n) in &seen {
        let want = expected
            .get(&(route.as_str(), status.as_str()))
            .copied()
            .unwrap_or(0.0);
        assert_eq!(*n, want, "{route} {status}");
    }
    for (route, status) in expected.keys() {
        assert!(
            seen.contains_key(&(route.to_string(), status.to_string())),
            "no series for {route} {status}: {seen:?}"
        );
        assert!(sum(&after, route, status) > 0.0, "{route} {status}: _sum");
    }
    // A route that was requested shows its 5xx series at zero; one that
    // was not has no series at all.
    assert!(after.contains_key(&format!("{NAME}_count{{route=\"node\",status=\"5xx\"}}")));
    assert!(!after.keys().any(|s| s.contains("route=\"host\"")));
    // Bucket counts moved in the node 2xx series only by its 3 requests.
    let node_inf = format!("{NAME}_bucket{{route=\"node\",status=\"2xx\",le=\"+Inf\"}}");
    assert_eq!(value(&after, &node_inf), 3.0);

    // A second round moves node 2xx, and metrics 2xx by the second scrape,
    // and nothing else.
    let (status, _, _) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert_eq!(status, 200);
    let again = scrape(&bridge).await;
    check_shape(&again);
    for (series, v) in &again {
        let old = value(&after, series);
        let moved = series.contains("route=\"node\",status=\"2xx\"")
            || series.contains("route=\"metrics\",status=\"2xx\"");
        if !moved {
            assert_eq!(*v, old, "{series} moved");
        } else {
            assert!(*v >= old, "{series} went down");
        }
    }
    assert_eq!(count(&again, "node", "2xx"), 4.0);
    assert_eq!(count(&again, "metrics", "2xx"), 2.0);
    assert!(sum(&again, "node", "2xx") > sum(&after, "node", "2xx"));
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_counts_as_5xx_of_its_route() {
    let db = support::foreman_db("metrics_hist_5xx").await;
    let config = support::config_without_database(&db);
    let bridge = TestBridge::start(config).await;
    let (status, _, _) = bridge.get("/node/db62.lab.globex.test?format=yml").await;
    assert_eq!(status, 503);
    let (status, _, _) = bridge.get("/readyz").await;
    assert_eq!(status, 503);
    let samples = scrape(&bridge).await;
    check_shape(&samples);
    assert_eq!(count(&samples, "node", "5xx"), 1.0);
    assert_eq!(count(&samples, "node", "2xx"), 0.0);
    assert_eq!(count(&samples, "health", "5xx"), 1.0);
    assert_eq!(count(&samples, "health", "2xx"), 0.0);
    bridge.stop().await;
}
