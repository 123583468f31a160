//! `GET /metrics` in Prometheus text format. Names follow
//! `pvc_bridge_<thing>_<unit>`; labels come from bounded sets.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::timing::RequestTimings;
use super::AppState;
use crate::writes::Uploads;

pub async fn render(
    state: web::Data<AppState>,
    uploads: Option<web::Data<Uploads>>,
    timings: Option<web::Data<RequestTimings>>,
) -> HttpResponse {
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
            "pvc_bridge_enc_stale_served_total",
            "ENC answers served stale (last good document) because no database answered.",
            relaxed(&enc.stale_served),
        ),
        (
            "pvc_bridge_enc_superseded_loads_total",
            "Loads repeated because the change feed showed a change newer than the rows read.",
            relaxed(&enc.superseded_loads),
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
    write_counters(&mut out, &counters);
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_enc_invalidations_total Invalidations by the change feed, by scope \
         (targeted: the entries a change affects; everything: a global change or a reset).\n\
         # TYPE pvc_bridge_enc_invalidations_total counter\n\
         pvc_bridge_enc_invalidations_total{{scope=\"targeted\"}} {}\n\
         pvc_bridge_enc_invalidations_total{{scope=\"everything\"}} {}",
        relaxed(&enc.changes_targeted),
        relaxed(&enc.changes_everything)
    );
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
        "# HELP pvc_bridge_database_fenced_reads_total ENC loads after a host's own write \
         (facts forwarded to Foreman), by the server that had replayed it.\n\
         # TYPE pvc_bridge_database_fenced_reads_total counter\n\
         pvc_bridge_database_fenced_reads_total{{pool=\"replica\"}} {}\n\
         pvc_bridge_database_fenced_reads_total{{pool=\"primary\"}} {}",
        db.fenced_replica_reads.load(Ordering::Relaxed),
        db.fenced_primary_reads.load(Ordering::Relaxed)
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
    // The status page's snapshot (built at most every few seconds, shared).
    let published = super::status::published(
        &state,
        uploads.as_ref().map(|u| u.get_ref()),
        timings.as_ref().map(|t| t.get_ref()),
    )
    .await;
    render_beyond_max_interval(&published.beyond_max_interval, &mut out);
    render_snapshot_gauges(&published, state.db.max_lag_bytes(), &mut out);
    render_replicas(&state.db.replica_states(), &mut out);
    render_runs(&state, &mut out);
    if let Some(uploads) = uploads {
        render_uploads(&uploads, &mut out);
    }
    if let Some(forwarder) = &state.forward {
        render_forward(forwarder, &mut out);
    }
    render_feed(&state.feed.stats, &mut out);
    render_tls(&crate::tls::reload_counts(), &mut out);
    render_refusals(&state.refusals, &mut out);
    if let Some(audit) = crate::audit::metrics() {
        render_audit(&audit.snapshot(), &mut out);
    }
    if let Some(timings) = timings {
        render_request_durations(&timings, &mut out);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// Per-endpoint latency (`http::timing`): time to the response head, by
/// route class and status class. This scrape is not in it yet: it is
/// counted when its own answer is ready.
fn render_request_durations(timings: &RequestTimings, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_http_request_duration_seconds Time from a request's arrival to its \
         response head, by route class and status class (2xx, 4xx, 5xx).\n\
         # TYPE pvc_bridge_http_request_duration_seconds histogram"
    );
    for (route, status, snapshot) in timings.snapshot() {
        crate::stats::histogram::write_series(
            out,
            "pvc_bridge_http_request_duration_seconds",
            &format!("route=\"{route}\",status=\"{status}\""),
            &snapshot,
        );
    }
}

/// Each replica as routing sees it (`store::health`), labelled `host:port`.
/// TLS material reloaded on change and CRLs fetched from the CA (process
/// wide; zero without `[tls]`).
fn render_beyond_max_interval(pools: &[(String, usize)], out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_hosts_beyond_max_interval Hosts whose last run is older than scheduler.max_interval_secs, by pool (hosts that never ran are not counted).\n\
         # TYPE pvc_bridge_hosts_beyond_max_interval gauge"
    );
    for (pool, hosts) in pools {
        let _ = writeln!(
            out,
            "pvc_bridge_hosts_beyond_max_interval{{pool=\"{}\"}} {hosts}",
            escape_label(pool)
        );
    }
}

/// Gauges from the shared snapshot besides the per-pool count: hosts behind
/// by hostgroup, converge requests, rollouts; and the replica lag bound.
///
/// By hostgroup only the fairness table's rows with hosts beyond
/// `max_interval` are exported (at most `fairness::HOSTGROUP_ROWS`, worst
/// first): a fleet may have thousands of hostgroups, and a series for each
/// would cost the TSDB far more than the question is worth. The number of
/// hostgroups behind is exported whole, so a truncated list shows.
fn render_snapshot_gauges(
    published: &crate::stats::snapshot::Published,
    max_lag_bytes: u64,
    out: &mut String,
) {
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_hosts_beyond_max_interval_by_hostgroup Hosts whose last run is older than scheduler.max_interval_secs, by Foreman hostgroup title ((none): no hostgroup); only the worst hostgroups with such hosts, at most {}.\n\
         # TYPE pvc_bridge_hosts_beyond_max_interval_by_hostgroup gauge",
        crate::stats::fairness::HOSTGROUP_ROWS
    );
    for (hostgroup, hosts) in &published.beyond_max_interval_by_hostgroup {
        let _ = writeln!(
            out,
            "pvc_bridge_hosts_beyond_max_interval_by_hostgroup{{hostgroup=\"{}\"}} {hosts}",
            escape_label(hostgroup)
        );
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_hostgroups_beyond_max_interval Hostgroups with at least one host whose last run is older than scheduler.max_interval_secs.\n\
         # TYPE pvc_bridge_hostgroups_beyond_max_interval gauge\n\
         pvc_bridge_hostgroups_beyond_max_interval {}\n\
         # HELP pvc_bridge_converge_requests_in_progress Converge requests not yet done, as this process tracks them.\n\
         # TYPE pvc_bridge_converge_requests_in_progress gauge\n\
         pvc_bridge_converge_requests_in_progress {}\n\
         # HELP pvc_bridge_replica_max_lag_bytes A replica further behind the primary than this (database.max_lag_bytes) is taken out of rotation.\n\
         # TYPE pvc_bridge_replica_max_lag_bytes gauge\n\
         pvc_bridge_replica_max_lag_bytes {max_lag_bytes}",
        published.hostgroups_beyond, published.converges_in_progress
    );
    render_rollouts(&published.rollouts, out);
}

/// Foreman's staged rollouts (rollout plugin), as the status page shows
/// them; nothing but `installed 0` without the plugin, nothing at all when
/// the read failed (the status page says why).
fn render_rollouts(rollouts: &crate::stats::rollouts::Rollouts, out: &mut String) {
    use crate::stats::rollouts::Source;
    let installed = match rollouts.source {
        Source::Read => 1,
        Source::NotInstalled => 0,
        Source::Unavailable => return,
    };
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_rollout_plugin_installed 1 when Foreman's database has the rollout plugin's tables.\n\
         # TYPE pvc_bridge_rollout_plugin_installed gauge\npvc_bridge_rollout_plugin_installed {installed}"
    );
    if installed == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_rollouts Staged rollouts by state (completed and aborted: in the last hour).\n\
         # TYPE pvc_bridge_rollouts gauge"
    );
    for (state, n) in &rollouts.by_state {
        let _ = writeln!(out, "pvc_bridge_rollouts{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_rollouts_paused_by_failures Rollouts the gate paused because their current wave failed (resume or abort in Foreman).\n\
         # TYPE pvc_bridge_rollouts_paused_by_failures gauge\npvc_bridge_rollouts_paused_by_failures {}",
        rollouts.paused_by_failures
    );
    type RolloutGauge = (
        &'static str,
        &'static str,
        fn(&crate::stats::rollouts::RolloutView) -> Option<u64>,
    );
    let gauges: [RolloutGauge; 2] = [
        ("pvc_bridge_rollout_waves", "Waves of the rollout.", |r| {
            Some(r.waves as u64)
        }),
        (
            "pvc_bridge_rollout_current_wave",
            "The rollout's current wave, 1 for the first (none before one starts).",
            |r| r.current.as_ref().map(|w| w.number as u64),
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for rollout in &rollouts.rollouts {
            if let Some(v) = get(rollout) {
                let _ = writeln!(
                    out,
                    "{name}{{rollout=\"{}\",state=\"{}\"}} {v}",
                    escape_label(&rollout.name),
                    escape_label(&rollout.state)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_rollout_hosts Hosts of a rollout (every wave) by outcome.\n\
         # TYPE pvc_bridge_rollout_hosts gauge"
    );
    for rollout in &rollouts.rollouts {
        for (outcome, n) in rollout.hosts.labelled() {
            let _ = writeln!(
                out,
                "pvc_bridge_rollout_hosts{{rollout=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape_label(&rollout.name)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_rollout_current_wave_hosts Hosts of the rollout's current wave by outcome.\n\
         # TYPE pvc_bridge_rollout_current_wave_hosts gauge"
    );
    for rollout in &rollouts.rollouts {
        let Some(wave) = &rollout.current else {
            continue;
        };
        for (outcome, n) in wave.hosts.labelled() {
            let _ = writeln!(
                out,
                "pvc_bridge_rollout_current_wave_hosts{{rollout=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape_label(&rollout.name)
            );
        }
    }
}

fn render_refusals(refusals: &super::access::Refusals, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_access_refused_total Requests refused by access control, by route class and status.\n\
         # TYPE pvc_bridge_access_refused_total counter"
    );
    for (route, status, n) in refusals.snapshot() {
        let _ = writeln!(
            out,
            "pvc_bridge_access_refused_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
}

fn render_tls(counts: &crate::tls::ReloadCounts, out: &mut String) {
    for (material, reloads, failures) in [
        (
            "server_cert",
            counts.server_cert_reloads,
            counts.server_cert_failures,
        ),
        (
            "client_verifier",
            counts.client_verifier_reloads,
            counts.client_verifier_failures,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP pvc_bridge_tls_reloads_total TLS material taken into service after its files changed.\n\
             # TYPE pvc_bridge_tls_reloads_total counter\n\
             pvc_bridge_tls_reloads_total{{material=\"{material}\"}} {reloads}\n\
             # HELP pvc_bridge_tls_reload_failures_total Changed TLS files that did not read or parse (the previous material stays).\n\
             # TYPE pvc_bridge_tls_reload_failures_total counter\n\
             pvc_bridge_tls_reload_failures_total{{material=\"{material}\"}} {failures}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_tls_crl_fetches_total CRL fetches from tls.client_crl_url that succeeded.\n\
         # TYPE pvc_bridge_tls_crl_fetches_total counter\npvc_bridge_tls_crl_fetches_total {}\n\
         # HELP pvc_bridge_tls_crl_fetch_failures_total CRL fetches that failed (the last good CRL stays).\n\
         # TYPE pvc_bridge_tls_crl_fetch_failures_total counter\npvc_bridge_tls_crl_fetch_failures_total {}",
        counts.crl_fetches, counts.crl_fetch_failures
    );
    if counts.crl_last_fetch_unix_secs > 0 {
        let _ = writeln!(
            out,
            "# HELP pvc_bridge_tls_crl_last_fetch_timestamp_seconds When the last CRL fetch succeeded.\n\
             # TYPE pvc_bridge_tls_crl_last_fetch_timestamp_seconds gauge\n\
             pvc_bridge_tls_crl_last_fetch_timestamp_seconds {}",
            counts.crl_last_fetch_unix_secs
        );
    }
}

fn render_replicas(replicas: &[crate::store::ReplicaState], out: &mut String) {
    if replicas.is_empty() {
        return;
    }
    type Value = fn(&crate::store::ReplicaState) -> Option<u64>;
    let rows: [(&str, &str, &str, Value); 7] = [
        (
            "pvc_bridge_replica_up",
            "gauge",
            "1 when the last health check of the replica answered.",
            |r| Some(u64::from(r.view.up)),
        ),
        (
            "pvc_bridge_replica_usable",
            "gauge",
            "1 when reads may go to the replica.",
            |r| Some(u64::from(r.view.usable)),
        ),
        (
            "pvc_bridge_replica_lag_bytes",
            "gauge",
            "Bytes of WAL the replica had not replayed at the last check.",
            |r| r.view.lag_bytes,
        ),
        (
            "pvc_bridge_replica_checks_total",
            "counter",
            "Health checks of the replica.",
            |r| Some(r.view.checks),
        ),
        (
            "pvc_bridge_replica_check_failures_total",
            "counter",
            "Health checks that failed or timed out.",
            |r| Some(r.view.check_failures),
        ),
        (
            "pvc_bridge_replica_taken_out_total",
            "counter",
            "Times the replica was taken out of rotation.",
            |r| Some(r.view.taken_out),
        ),
        (
            "pvc_bridge_replica_reads_total",
            "counter",
            "Connections taken from the replica's pool for reads.",
            |r| Some(r.reads),
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for replica in replicas {
            if let Some(v) = value(replica) {
                let _ = writeln!(out, "{name}{{replica=\"{}\"}} {v}", replica.label);
            }
        }
    }
}

/// The run-decision service: counters, then the scheduler's view of each
/// server and pool (label values are configured names: a bounded set).
fn render_runs(state: &AppState, out: &mut String) {
    let runs = &state.runs.stats;
    let relaxed = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    // name, help, label, (label value, count)…
    type Labelled = (
        &'static str,
        &'static str,
        &'static str,
        Vec<(&'static str, u64)>,
    );
    let labelled: [Labelled; 5] = [
        (
            "pvc_bridge_polls_total",
            "Agent polls of /host, by trigger.",
            "trigger",
            vec![
                (
                    "poll",
                    relaxed(&runs.polls) - relaxed(&runs.polls_file_change),
                ),
                ("file_change", relaxed(&runs.polls_file_change)),
            ],
        ),
        (
            "pvc_bridge_polls_by_protocol_total",
            "Agent polls by the protocol version the agent declared (none: the original agent).",
            "protocol",
            vec![
                ("none", relaxed(&runs.polls_protocol[0])),
                ("current", relaxed(&runs.polls_protocol[1])),
                ("older", relaxed(&runs.polls_protocol[2])),
                ("newer", relaxed(&runs.polls_protocol[3])),
            ],
        ),
        (
            "pvc_bridge_runs_granted_total",
            "Runs granted (leases), by trigger.",
            "trigger",
            vec![
                ("schedule", relaxed(&runs.granted_schedule)),
                ("file_change", relaxed(&runs.granted_file_change)),
                ("converge", relaxed(&runs.granted_converge)),
            ],
        ),
        (
            "pvc_bridge_grants_refused_total",
            "Grants the shared budget in the database refused, by reason.",
            "reason",
            vec![
                ("no_budget", relaxed(&runs.refused_no_budget)),
                ("in_progress", relaxed(&runs.refused_in_progress)),
                ("too_soon", relaxed(&runs.refused_too_soon)),
                ("database_error", relaxed(&runs.grant_errors)),
            ],
        ),
        (
            "pvc_bridge_reports_total",
            "Reports stored, by what became of their lease.",
            "lease",
            vec![
                (
                    "released",
                    relaxed(&runs.reports) - relaxed(&runs.reports_stale),
                ),
                ("stale", relaxed(&runs.reports_stale)),
            ],
        ),
    ];
    for (name, help, label, values) in labelled {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (value, n) in values {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
        }
    }
    let counters = [
        (
            "pvc_bridge_runs_cached_catalog_total",
            "Granted runs told to use the cached catalog (no server had room).",
            relaxed(&runs.granted_cached_catalog),
        ),
        (
            "pvc_bridge_unknown_host_polls_total",
            "Polls from certnames Foreman does not know.",
            relaxed(&runs.unknown_hosts),
        ),
        (
            "pvc_bridge_forced_over_budget_total",
            "File-change polls beyond the host's forced-run budget.",
            relaxed(&runs.forced_over_budget),
        ),
        (
            "pvc_bridge_hosts_reloaded_total",
            "Hosts read again one by one because the change feed showed a change of their rows.",
            relaxed(&runs.hosts_reloaded),
        ),
        (
            "pvc_bridge_status_failures_total",
            "Failed reads of a puppetserver's status API.",
            relaxed(&runs.status_failures),
        ),
        (
            "pvc_bridge_ppm_pushes_total",
            "Capacity pushes received on /ppm.",
            relaxed(&runs.ppm_pushes),
        ),
        (
            "pvc_bridge_host_directory_loads_total",
            "Builds of the host directory (skipped while Foreman's tables are unchanged).",
            relaxed(&runs.directory_loads),
        ),
    ];
    write_counters(out, &counters);
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_hosts Hosts in the directory.\n# TYPE pvc_bridge_hosts gauge\npvc_bridge_hosts {}",
        state.runs.host_count()
    );
    let stats = state.runs.scheduler_stats();
    type ServerGauge = (
        &'static str,
        &'static str,
        fn(&crate::schedule::ServerStats) -> f64,
    );
    let server_gauges: [ServerGauge; 5] = [
        (
            "pvc_bridge_server_up",
            "1 when the server takes runs (live source answering, or static).",
            |s| f64::from(u8::from(s.up && !s.pool_locked)),
        ),
        (
            "pvc_bridge_server_run_rate",
            "Admissible new runs per second.",
            |s| s.rate,
        ),
        (
            "pvc_bridge_server_jruby_utilization",
            "Smoothed measured JRuby utilisation (0..1).",
            |s| s.utilization,
        ),
        (
            "pvc_bridge_server_run_cost_seconds",
            "Estimated JRuby-seconds per run.",
            |s| s.run_cost,
        ),
        ("pvc_bridge_server_jrubies", "JRuby pool size.", |s| {
            f64::from(s.jrubies)
        }),
    ];
    for (name, help, get) in server_gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for server in &stats.servers {
            let _ = writeln!(
                out,
                "{name}{{server=\"{}\",pool=\"{}\"}} {}",
                escape_label(&server.name),
                escape_label(&server.pool),
                get(server)
            );
        }
    }
    type PoolGauge = (
        &'static str,
        &'static str,
        fn(&crate::schedule::PoolStats) -> f64,
    );
    let pool_gauges: [PoolGauge; 4] = [
        (
            "pvc_bridge_pool_hosts",
            "Hosts scheduled in the pool.",
            |p| p.hosts as f64,
        ),
        (
            "pvc_bridge_pool_cycle_seconds",
            "Current time between two scheduled runs of a host.",
            |p| {
                if p.cycle_secs.is_finite() {
                    p.cycle_secs
                } else {
                    -1.0
                }
            },
        ),
        (
            "pvc_bridge_pool_shortage",
            "1 when the pool's servers cannot run every host within max_interval.",
            |p| f64::from(u8::from(p.shortage)),
        ),
        (
            "pvc_bridge_pool_run_rate",
            "Admissible runs per second over the pool's servers.",
            |p| p.rate,
        ),
    ];
    for (name, help, get) in pool_gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for pool in &stats.pools {
            let _ = writeln!(
                out,
                "{name}{{pool=\"{}\"}} {}",
                escape_label(&pool.name),
                get(pool)
            );
        }
    }
    // One setting for every pool today; by pool so a panel can draw it
    // beside the pool's servers.
    let target = state.runs.scheduler_config().target_utilization;
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_pool_utilization_target JRuby utilisation the scheduler aims for on the pool's servers (scheduler.target_utilization).\n\
         # TYPE pvc_bridge_pool_utilization_target gauge"
    );
    for pool in &stats.pools {
        let _ = writeln!(
            out,
            "pvc_bridge_pool_utilization_target{{pool=\"{}\"}} {target}",
            escape_label(&pool.name)
        );
    }
}

/// Prometheus label value escaping (pool names come from configuration).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Plain counters: name, help, value.
/// Forwards to Foreman, and the outbox as last read.
fn render_forward(forwarder: &crate::forward::Forwarder, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_forward_total Items sent to Foreman, by kind, mode (background: \
         the rate-limited leader; sync: during the upload) and outcome (taken; retry: Foreman \
         busy or failing; unreachable; refused: a 4xx about the item; busy, claimed_elsewhere, \
         db_error: not sent).\n\
         # TYPE pvc_bridge_forward_total counter"
    );
    for (kind, mode, outcome, n) in forwarder.counters.snapshot() {
        let _ = writeln!(
            out,
            "pvc_bridge_forward_total{{kind=\"{kind}\",mode=\"{mode}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let status = forwarder.status();
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_forward_leader 1 if this process sends the outbox to Foreman.\n\
         # TYPE pvc_bridge_forward_leader gauge\npvc_bridge_forward_leader {}\n\
         # HELP pvc_bridge_forward_rate_limit Items per second the leader sends at most.\n\
         # TYPE pvc_bridge_forward_rate_limit gauge\npvc_bridge_forward_rate_limit {}",
        u8::from(status.leader),
        forwarder.settings().rate_per_sec
    );
    if let Some(outbox) = status.outbox {
        let _ = writeln!(
            out,
            "# HELP pvc_bridge_outbox_items Items waiting to be sent to Foreman.\n\
             # TYPE pvc_bridge_outbox_items gauge\npvc_bridge_outbox_items {}\n\
             # HELP pvc_bridge_outbox_dead_items Items Foreman refused forward.max_attempts \
             times, set aside until the host's next upload.\n\
             # TYPE pvc_bridge_outbox_dead_items gauge\npvc_bridge_outbox_dead_items {}\n\
             # HELP pvc_bridge_outbox_oldest_seconds Age of the oldest item waiting for \
             Foreman (alert when it grows: Foreman is down or refusing).\n\
             # TYPE pvc_bridge_outbox_oldest_seconds gauge\npvc_bridge_outbox_oldest_seconds {:.3}",
            outbox.pending, outbox.dead, outbox.oldest_secs
        );
    }
}

/// The change feed this process follows (`changes::feed`).
fn render_feed(feed: &crate::changes::feed::FeedStats, out: &mut String) {
    let relaxed = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    write_counters(
        out,
        &[
            (
                "pvc_bridge_changes_rows_total",
                "Change feed rows acted on.",
                relaxed(&feed.rows),
            ),
            (
                "pvc_bridge_changes_drift_rows_total",
                "Change feed rows logged because a column the bridge reads is missing from \
                 a Foreman table (renamed by an upgrade: upgrade the bridge, run migrate).",
                relaxed(&feed.drift_rows),
            ),
            (
                "pvc_bridge_changes_read_errors_total",
                "Reads of the change feed that failed (cached entries only expire meanwhile).",
                relaxed(&feed.read_errors),
            ),
            (
                "pvc_bridge_changes_pruned_rows_total",
                "Change feed rows this process pruned on the primary.",
                relaxed(&feed.pruned_rows),
            ),
        ],
    );
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_changes_flushes_total Whole-cache flushes by the change feed, by \
         cause (global: a setting or global change; reset: the feed was reinstalled, pruned \
         past this process, or lost track).\n\
         # TYPE pvc_bridge_changes_flushes_total counter\n\
         pvc_bridge_changes_flushes_total{{cause=\"global\"}} {}\n\
         pvc_bridge_changes_flushes_total{{cause=\"reset\"}} {}",
        relaxed(&feed.flushes_global),
        relaxed(&feed.flushes_reset)
    );
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_changes_position Last change feed id acted on or passed.\n\
         # TYPE pvc_bridge_changes_position gauge\npvc_bridge_changes_position {}\n\
         # HELP pvc_bridge_changes_open_gaps Ids below the position not yet seen (transactions \
         still running, or rolled back).\n\
         # TYPE pvc_bridge_changes_open_gaps gauge\npvc_bridge_changes_open_gaps {}",
        feed.position.load(Ordering::Relaxed),
        relaxed(&feed.open_gaps)
    );
    // No sample before the first good read: an age would be meaningless.
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_changes_last_read_age_seconds Time since the last good read of \
         the change feed (alert when it grows: cached entries are no longer invalidated).\n\
         # TYPE pvc_bridge_changes_last_read_age_seconds gauge"
    );
    let last = relaxed(&feed.last_read_ms);
    if last > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let _ = writeln!(
            out,
            "pvc_bridge_changes_last_read_age_seconds {:.3}",
            now.saturating_sub(last) as f64 / 1000.0
        );
    }
}

/// The audit trail writer of this process (counts only while it leads).
fn render_audit(audit: &crate::audit::AuditSnapshot, out: &mut String) {
    write_counters(
        out,
        &[
            (
                "pvc_bridge_audit_events_total",
                "Audit events taken off the queue (committed, or needing no commit).",
                audit.events_committed,
            ),
            (
                "pvc_bridge_audit_events_unchanged_total",
                "Audit events whose files would not change (no commit).",
                audit.events_unchanged,
            ),
            (
                "pvc_bridge_audit_events_invalid_total",
                "Audit events that could not be committed (logged).",
                audit.events_invalid,
            ),
            (
                "pvc_bridge_audit_commits_total",
                "Commits written to the audit repository.",
                audit.commits,
            ),
            (
                "pvc_bridge_audit_rebuilds_total",
                "Rebuilds of the audit repository from the database.",
                audit.rebuilds,
            ),
            (
                "pvc_bridge_audit_errors_total",
                "Audit rounds that failed (retried).",
                audit.errors,
            ),
        ],
    );
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_audit_queue_events Audit events waiting to be committed, as last seen \
         by the leader.\n\
         # TYPE pvc_bridge_audit_queue_events gauge\npvc_bridge_audit_queue_events {}\n\
         # HELP pvc_bridge_audit_lag_seconds Age of the oldest queued audit event, as last seen \
         by the leader.\n\
         # TYPE pvc_bridge_audit_lag_seconds gauge\npvc_bridge_audit_lag_seconds {:.3}",
        audit.queue_depth, audit.lag_seconds
    );
}

/// Uploads by kind and outcome, and what the write spool holds.
fn render_uploads(uploads: &Uploads, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP pvc_bridge_uploads_total Fact and report uploads, by kind and outcome \
         (stored: new, changed, unchanged, replay, stale; spooled; refused: 503; error: \
         the database refused it). Replays from the spool count again under their stored outcome.\n\
         # TYPE pvc_bridge_uploads_total counter"
    );
    for (kind, outcome, n) in uploads.counters.snapshot() {
        let _ = writeln!(
            out,
            "pvc_bridge_uploads_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    if let Some(spool) = uploads.spool_stats() {
        let _ = writeln!(
            out,
            "# HELP pvc_bridge_spool_records Uploads in the write spool awaiting replay.\n\
             # TYPE pvc_bridge_spool_records gauge\npvc_bridge_spool_records {}\n\
             # HELP pvc_bridge_spool_bytes Size of the records awaiting replay.\n\
             # TYPE pvc_bridge_spool_bytes gauge\npvc_bridge_spool_bytes {}\n\
             # HELP pvc_bridge_spool_disk_bytes Size of the spool's segment files.\n\
             # TYPE pvc_bridge_spool_disk_bytes gauge\npvc_bridge_spool_disk_bytes {}",
            spool.records, spool.bytes, spool.disk_bytes
        );
        write_counters(
            out,
            &[
                (
                    "pvc_bridge_spool_full_total",
                    "Uploads refused because the write spool was full.",
                    spool.full_total,
                ),
                (
                    "pvc_bridge_spool_replayed_total",
                    "Spooled uploads stored on the primary by a replay.",
                    spool.replayed_total,
                ),
                (
                    "pvc_bridge_spool_dead_letters_total",
                    "Spooled uploads the database refused as invalid, or unreadable, \
                     moved to dead-letters.jsonl in the spool directory.",
                    spool.dead_letters_total,
                ),
            ],
        );
    }
}

fn write_counters(out: &mut String, counters: &[(&str, &str, u64)]) {
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}
