//! The ENC service around the computation: single-flight, replica reads,
//! invalidation, and the Foreman fallback for hosts the bridge cannot
//! compute (against a stand-in that follows Foreman's documented API).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use pvc_testkit::cluster;

use crate::support::{self, TestBridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_load_the_host_once() {
    let db = support::foreman_db("single_flight").await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    let url = format!("{}/node/db62.lab.globex.test?format=yml", bridge.base);
    let requests = (0..24).map(|_| {
        let http = bridge.http.clone();
        let url = url.clone();
        async move { http.get(&url).send().await.unwrap().text().await.unwrap() }
    });
    let bodies = futures::future::join_all(requests).await;
    let golden = support::golden_enc("db62.lab.globex.test");
    assert!(bodies.iter().all(|b| *b == golden));
    let stats = &bridge.bridge.enc.stats;
    assert_eq!(
        stats.loads.load(Ordering::Relaxed),
        1,
        "one database load for 24 requests"
    );
    assert_eq!(
        bridge
            .bridge
            .db
            .stats
            .replica_checkouts
            .load(Ordering::Relaxed),
        1,
        "one replica connection for 24 requests"
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_and_never_to_the_primary() {
    let db = support::foreman_db("replica_reads").await;
    // A primary nobody listens on: any read sent there would fail.
    let config = support::config_for(
        &db,
        &[(
            "PVC_DATABASE__PRIMARY",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )],
    );
    let bridge = TestBridge::start(config).await;
    for host in support::golden_hosts() {
        let (status, _, body) = bridge.get(&format!("/node/{host}?format=yml")).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert_eq!(body, support::golden_enc(&host), "{host}");
    }
    let stats = &bridge.bridge.db.stats;
    assert_eq!(stats.primary_checkouts.load(Ordering::Relaxed), 0);
    assert!(stats.replica_checkouts.load(Ordering::Relaxed) >= 40);
    // Shared layers are loaded once, not per host.
    let layer_loads = bridge.bridge.enc.layer_loads();
    assert!(layer_loads < 80, "{layer_loads} layer loads for 40 hosts");
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_with_a_reason() {
    let db = support::foreman_db("outage").await;
    let config = support::config_without_database(&db);
    let bridge = TestBridge::start(config).await;
    let (status, _, body) = bridge.get("/node/db62.lab.globex.test?format=yml").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("primary"), "{body}");
    let (status, _, _) = bridge.get("/readyz").await;
    assert_eq!(status, 503);
    let (status, _, _) = bridge.get("/healthz").await;
    assert_eq!(status, 200);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_makes_a_foreman_change_visible() {
    let db = support::foreman_db("invalidate").await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    let host = "kafka10.example.com";
    let (_, _, before) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert_eq!(before, support::golden_enc(host));
    support::write_and_replicate(
        &db,
        &format!("UPDATE hosts SET comment = 'moved to rack 7' WHERE name = '{host}'"),
    )
    .await;
    let (_, _, cached) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert_eq!(cached, before, "served from the cache until invalidated");
    let response = bridge
        .http
        .post(format!(
            "{}/admin/cache/invalidate?certname={host}",
            bridge.base
        ))
        .bearer_auth(support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (_, _, after) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert!(after.contains("comment: moved to rack 7\n"), "{after}");
    let response = bridge
        .http
        .post(format!("{}/admin/cache/invalidate", bridge.base))
        .bearer_auth(support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    bridge.stop().await;
}

/// `cache.documents = false` (the benchmark's uncached baseline): every
/// request is built from the database, so a change shows without any
/// invalidation, and the answers are still Foreman's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_document_cache_off_every_request_is_built_from_the_database() {
    let db = support::foreman_db("documents_off").await;
    let config = support::config_for(&db, &[("PVC_CACHE__DOCUMENTS", "false")]);
    let bridge = TestBridge::start(config).await;
    let host = "kafka10.example.com";
    for _ in 0..3 {
        let (status, _, body) = bridge.get(&format!("/node/{host}?format=yml")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, support::golden_enc(host));
    }
    let stats = &bridge.bridge.enc.stats;
    assert_eq!(
        stats.loads.load(Ordering::Relaxed),
        3,
        "one load per request"
    );
    assert_eq!(stats.hits.load(Ordering::Relaxed), 0);
    support::write_and_replicate(
        &db,
        &format!("UPDATE hosts SET comment = 'moved to rack 7' WHERE name = '{host}'"),
    )
    .await;
    let (_, _, after) = bridge.get(&format!("/node/{host}?format=yml")).await;
    assert!(after.contains("comment: moved to rack 7\n"), "{after}");
    bridge.stop().await;
}

/// Puts an ERB construct the bridge does not render into a global
/// parameter, so every host needs Foreman.
async fn make_every_host_need_foreman(db: &cluster::TestDb) {
    support::write_and_replicate(
        db,
        "UPDATE parameters SET value = '--- \"<%= @host.ip %>\"' || chr(10) \
         WHERE type = 'CommonParameter' AND name = 'global_erb'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_erb_without_foreman_is_503_with_the_reason() {
    let db = support::foreman_db("no_foreman").await;
    make_every_host_need_foreman(&db).await;
    let bridge = TestBridge::start(support::config_for(&db, &[])).await;
    let (status, _, body) = bridge.get("/node/web45.corp.acme.test?format=yml").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("foreman.url"), "{body}");
    assert!(body.contains("ERB"), "{body}");
    let (_, _, metrics) = bridge.get("/metrics").await;
    assert!(
        metrics.contains("pvc_bridge_enc_unsupported_total{construct=\"expression\"} 1"),
        "{metrics}"
    );
    bridge.stop().await;
}

/// A stand-in for Foreman's API (`GET /api/v2/hosts/:id/enc` answering
/// `{"data": …}`, `GET /api/v2/current_user`), counting concurrency.
struct FakeForeman {
    base: String,
    version: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeForeman {
    fn start() -> FakeForeman {
        let version = Arc::new(AtomicUsize::new(1));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = (
            Arc::clone(&version),
            Arc::clone(&in_flight),
            Arc::clone(&max_in_flight),
            Arc::clone(&requests),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            let (version, in_flight, max_in_flight, requests) = state.clone();
            App::new()
                .route(
                    "/api/v2/current_user",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(serde_json::json!({"login": "admin", "admin": true}))
                    }),
                )
                .route(
                    "/api/v2/hosts/{name}/enc",
                    web::get().to(move |name: web::Path<String>| {
                        let (version, in_flight, max_in_flight, requests) = (
                            Arc::clone(&version),
                            Arc::clone(&in_flight),
                            Arc::clone(&max_in_flight),
                            Arc::clone(&requests),
                        );
                        async move {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            max_in_flight.fetch_max(now, Ordering::SeqCst);
                            requests.lock().unwrap().push(name.clone());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            if name.starts_with("ghost") {
                                return HttpResponse::NotFound().json(serde_json::json!({
                                    "error": {"message": format!("Resource host not found by id '{name}'")}
                                }));
                            }
                            let v = version.load(Ordering::SeqCst);
                            HttpResponse::Ok().json(serde_json::json!({"data": {
                                "parameters": {"global_erb": format!("10.0.0.{v}"), "rendered_by": "foreman", "version": v},
                                "classes": {"ntp": null},
                                "environment": "production"
                            }}))
                        }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeForeman {
            base,
            version,
            in_flight,
            max_in_flight,
            requests,
            handle,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_erb_is_fetched_from_foreman_bounded_and_served_stale_while_revalidating() {
    let db = support::foreman_db("foreman_fallback").await;
    make_every_host_need_foreman(&db).await;
    let foreman = FakeForeman::start();
    let config = support::config_for(
        &db,
        &[
            ("PVC_FOREMAN__URL", foreman.base.as_str()),
            ("PVC_FOREMAN__MAX_CONCURRENCY", "2"),
            ("PVC_CACHE__FOREMAN_REFRESH_SECS", "1"),
        ],
    );
    let bridge = TestBridge::start(config.clone()).await;
    bridge
        .bridge
        .check(&config)
        .await
        .expect("the stand-in's account is admin");

    // Every host at once: Foreman never sees more than 2 requests at a time.
    let hosts = support::golden_hosts();
    let requests = hosts.iter().map(|host| {
        let http = bridge.http.clone();
        let url = format!("{}/node/{host}?format=yml", bridge.base);
        async move {
            let response = http.get(&url).send().await.unwrap();
            let source = response.headers().get("x-pvc-enc-source").cloned();
            (
                response.status().as_u16(),
                source,
                response.text().await.unwrap(),
            )
        }
    });
    let answers = futures::future::join_all(requests).await;
    let expected_v1 = "---\nparameters:\n  global_erb: 10.0.0.1\n  rendered_by: foreman\n  version: 1\nclasses:\n  ntp:\nenvironment: production\n";
    for (status, source, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(source.as_ref().unwrap(), "foreman");
        assert_eq!(body, expected_v1);
    }
    assert!(foreman.max_in_flight.load(Ordering::SeqCst) <= 2);
    assert_eq!(foreman.requests.lock().unwrap().len(), hosts.len());
    assert_eq!(foreman.in_flight.load(Ordering::SeqCst), 0);

    // Stale-while-revalidate: after the refresh age the old document is
    // served at once while a background fetch brings the new one.
    foreman.version.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, _, stale) = bridge.get("/node/web45.corp.acme.test?format=yml").await;
    assert_eq!(stale, expected_v1);
    let mut fresh = String::new();
    for _ in 0..100 {
        fresh = bridge.get("/node/web45.corp.acme.test?format=yml").await.2;
        if fresh.contains("version: 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fresh.contains("global_erb: 10.0.0.2"), "{fresh}");
    foreman.handle.stop(true).await;
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_layers_are_served_while_they_refresh_in_the_background() {
    let db = support::foreman_db("layer_refresh").await;
    let config = support::config_for(&db, &[("PVC_CACHE__LAYER_TTL_SECS", "1")]);
    let bridge = TestBridge::start(config).await;
    let host = "app03.lab.globex.test";
    let path = format!("/node/{host}?format=yml");
    let (_, _, before) = bridge.get(&path).await;
    assert!(before.contains("global_string: 'OFF'\n"), "{before}");
    support::write_and_replicate(
        &db,
        "UPDATE parameters SET value = '--- refreshed' || chr(10) \
         WHERE type = 'CommonParameter' AND name = 'global_string'",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The document is recomputed at once from the layer it has (old), and
    // that use starts the layer's refresh.
    bridge.bridge.enc.invalidate(host).await.unwrap();
    let (_, _, stale) = bridge.get(&path).await;
    assert!(stale.contains("global_string: 'OFF'\n"), "{stale}");
    let mut fresh = String::new();
    for _ in 0..100 {
        bridge.bridge.enc.invalidate(host).await.unwrap();
        fresh = bridge.get(&path).await.2;
        if fresh.contains("global_string: refreshed\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fresh.contains("global_string: refreshed\n"), "{fresh}");
    bridge.stop().await;
}
