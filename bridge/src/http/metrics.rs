//! `GET /metrics` in Prometheus text format. Names follow
//! `pvc_bridge_<thing>_<unit>`; labels come from bounded sets.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    // moka updates its counts lazily; settle them so the gauges are exact.
    state.enc.sync().await;
    let enc = &state.enc.stats;
    let db = &state.db.stats;
    let (entries, bytes) = state.enc.cache_size();
    let mut out = String::with_capacity(2048);
    let relaxed = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    // One row per plain counter: name, help, value.
    let counters = [
        (
            "pvc_bridge_enc_cache_hits_total",
            "ENC requests answered from the cache.",
            relaxed(&enc.hits),
        ),
        (
            "pvc_bridge_enc_cache_misses_total",
            "ENC requests that found no cached document.",
            relaxed(&enc.misses),
        ),
        (
            "pvc_bridge_enc_loads_total",
            "Host documents loaded from the database (one per cold name).",
            relaxed(&enc.loads),
        ),
        (
            "pvc_bridge_enc_layer_loads_total",
            "Shared layers (hostgroups, taxonomies, settings, ...) loaded.",
            state.enc.layer_loads(),
        ),
        (
            "pvc_bridge_enc_foreman_fallbacks_total",
            "Documents fetched from Foreman's API.",
            relaxed(&enc.foreman_fallbacks),
        ),
        (
            "pvc_bridge_database_read_fallbacks_total",
            "Reads that wanted a replica and used the primary.",
            relaxed(&db.read_fallbacks),
        ),
        (
            "pvc_bridge_database_replica_errors_total",
            "Failed attempts to get a replica connection.",
            relaxed(&db.replica_errors),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_database_checkouts_total Connections taken from a pool.\n\
         # TYPE pvc_bridge_database_checkouts_total counter\n\
         pvc_bridge_database_checkouts_total{{pool=\"replica\"}} {}\n\
         pvc_bridge_database_checkouts_total{{pool=\"primary\"}} {}",
        db.replica_checkouts.load(Ordering::Relaxed),
        db.primary_checkouts.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_enc_unsupported_total Hosts the bridge could not compute, by construct.\n\
         # TYPE pvc_bridge_enc_unsupported_total counter"
    );
    for (construct, n) in enc.unsupported.lock().expect("stats lock").iter() {
        let _ = writeln!(
            out,
            "pvc_bridge_enc_unsupported_total{{construct=\"{construct}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_enc_cache_entries Cached ENC documents.\n\
         # TYPE pvc_bridge_enc_cache_entries gauge\npvc_bridge_enc_cache_entries {entries}\n\
         # HELP pvc_bridge_enc_cache_bytes Weight of cached ENC documents.\n\
         # TYPE pvc_bridge_enc_cache_bytes gauge\npvc_bridge_enc_cache_bytes {bytes}"
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
