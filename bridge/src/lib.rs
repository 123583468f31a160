//! pvc-bridge: a Foreman-compatible ENC (and, later, the agents' run
//! decisions) served from a moka cache filled from PostgreSQL read replicas.
//!
//! Layout (see `docs/architecture.md`):
//! - `enc`: pure: Foreman rows → the document Foreman would answer.
//! - `store`: all SQL; pools for the primary and the replicas.
//! - `cache`: the ENC service, moka caches with single-flight.
//! - `foreman`: Foreman's API, for hosts the bridge cannot compute.
//! - `http`: actix handlers; `config`: configuration; `certname`: validation.
//! - `access`: who may ask what (pure); `tls`: HTTPS and client certificates.
#![forbid(unsafe_code)]

pub mod access;
pub mod answer;
pub mod audit;
pub mod cache;
pub mod certname;
pub mod changes;
pub mod config;
pub mod enc;
pub mod foreman;
pub mod forward;
pub mod hosts;
pub mod http;
pub mod leader;
pub mod runs;
pub mod schedule;
pub mod servers;
pub mod simulate;
pub mod spool;
pub mod stats;
pub mod store;
pub mod tls;
pub mod writes;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;

use crate::cache::EncService;
use crate::config::Config;
use crate::foreman::ForemanClient;
use crate::store::foreman::SettingsOverrides;
use crate::store::{Db, PoolOptions};

/// The running parts, built from a configuration.
pub struct Bridge {
    pub db: Arc<Db>,
    pub enc: Arc<EncService>,
    pub foreman: Option<Arc<ForemanClient>>,
    pub runs: Arc<runs::RunService>,
    pub writes: Arc<writes::WriteSettings>,
    pub uploads: Arc<writes::Uploads>,
    /// `None` without `foreman.url` (or with `forward.enabled` off).
    pub forwarder: Option<Arc<forward::Forwarder>>,
    /// The change feed's follower and pruner (it follows only with
    /// `changes.enabled`; it always prunes).
    pub feed: Arc<changes::feed::ChangeFeed>,
    /// Who may ask what (`[access]`, client certificates).
    pub access: Arc<access::Policy>,
    /// Connection limits against slow clients (`[http]`).
    pub http: config::HttpLimits,
    /// Requests access control refused (`/metrics`).
    pub refusals: Arc<http::access::Refusals>,
}

impl Bridge {
    /// Builds pools, clients and caches; touches no network yet.
    pub fn new(config: &Config) -> anyhow::Result<Bridge> {
        let db = Arc::new(Db::new(
            &config.database_primary,
            &config.database_replicas,
            &PoolOptions {
                max_size: config.pool_size,
                connect_timeout: config.connect_timeout,
            },
        )?);
        let foreman = match &config.foreman_url {
            Some(url) => Some(Arc::new(ForemanClient::new(&config.foreman, url)?)),
            None => None,
        };
        let overrides = settings_overrides(config)?;
        let enc = EncService::new(Arc::clone(&db), foreman.clone(), overrides, &config.cache);
        let uploads = Arc::new(writes::Uploads::new(Arc::clone(&db), &config.writes)?);
        let runs = runs::RunService::new(Arc::clone(&db), &config.scheduler, Arc::clone(&uploads));
        let forwarder = match (&foreman, &config.forward) {
            (Some(foreman), Some(settings)) => Some(Arc::new(forward::Forwarder::new(
                Arc::clone(&db),
                Arc::clone(foreman),
                settings.clone(),
            ))),
            _ => None,
        };
        let feed = changes::feed::ChangeFeed::new(
            Arc::clone(&db),
            Arc::clone(&enc),
            Some(Arc::clone(&runs)),
            config.changes.clone(),
        );
        Ok(Bridge {
            db,
            enc,
            foreman,
            runs,
            writes: Arc::new(config.writes.clone()),
            uploads,
            forwarder,
            feed,
            access: Arc::new(config.access.clone()),
            http: config.http,
            refusals: Arc::default(),
        })
    }

    /// Starts the background work: scheduling loops, spool replay,
    /// forwarding to Foreman and the audit trail (the last two compete for
    /// their leadership with the other bridge processes).
    pub fn start_background(&self, config: &Config) -> anyhow::Result<()> {
        self.db.start_monitor(config.replica_health.clone());
        self.runs.start()?;
        self.uploads.start();
        self.feed.spawn();
        if let Some(forwarder) = &self.forwarder {
            let leadership = leader::Leadership::spawn(
                &config.database_primary,
                leader::Role::Forwarder,
                config.connect_timeout,
            )?;
            forwarder.start(leadership);
        }
        audit::start(config, Arc::clone(&self.db))?;
        Ok(())
    }

    /// Start-up checks that need the network: the Foreman account must be
    /// an administrator (or Foreman's answers would miss parameters).
    pub async fn check(&self, config: &Config) -> anyhow::Result<()> {
        // Load what every host needs now, not in the first requests; a
        // database that is down is not fatal (the bridge answers 503).
        if let Err(error) = self.enc.prewarm().await {
            tracing::warn!(%error, "could not load the global layers at start");
        }
        match self.db.write().await {
            Ok(client) => match store::pvc::check_schema(&client).await {
                Ok(version) => tracing::info!(version, "pvc schema present"),
                Err(error) => {
                    tracing::error!(%error, "runs cannot be granted until `pvc-bridge migrate` has run")
                }
            },
            Err(error) => tracing::warn!(%error, "primary unavailable at start"),
        }
        if let Some(foreman) = &self.foreman {
            match foreman.check_account().await {
                Ok(()) => tracing::info!("Foreman account is an administrator"),
                Err(error) if config.foreman.require_admin => {
                    return Err(error).context("Foreman account check (foreman.require_admin)")
                }
                Err(error) => {
                    tracing::error!(%error, "Foreman account check failed; hosts that need Foreman may get incomplete answers")
                }
            }
        }
        Ok(())
    }
}

/// What Foreman takes from its own host, from the bridge's configuration.
fn settings_overrides(config: &Config) -> anyhow::Result<SettingsOverrides> {
    let read = |path: &Option<std::path::PathBuf>| -> anyhow::Result<Option<String>> {
        path.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    let mut values = std::collections::HashMap::new();
    for (name, text) in &config.enc.settings {
        let value = pvc_psych::load(text).with_context(|| format!("enc.settings.{name}"))?;
        values.insert(name.clone(), value);
    }
    Ok(SettingsOverrides {
        values,
        server_ca: read(&config.enc.server_ca_file)?,
        ssl_ca: read(&config.enc.ssl_ca_file)?,
        foreman_url: config
            .enc
            .foreman_url
            .clone()
            .or_else(|| config.foreman_url.clone()),
        root_pass: config.enc.root_pass.as_ref().map(|s| s.expose().to_owned()),
    })
}

/// Serves HTTP on `listener` until the server is stopped (the mini-redis
/// shape: the caller binds, tests pass port 0).
pub fn serve(
    bridge: &Bridge,
    listener: TcpListener,
    workers: usize,
) -> anyhow::Result<actix_web::dev::Server> {
    start(bridge, listener, workers, None)
}

/// Like [`serve`], over TLS (`tls::server_config`); handlers find the
/// client's certname as `tls::PeerCertname` in the connection data.
pub fn serve_tls(
    bridge: &Bridge,
    listener: TcpListener,
    workers: usize,
    tls: rustls::ServerConfig,
) -> anyhow::Result<actix_web::dev::Server> {
    start(bridge, listener, workers, Some(tls))
}

fn start(
    bridge: &Bridge,
    listener: TcpListener,
    workers: usize,
    tls: Option<rustls::ServerConfig>,
) -> anyhow::Result<actix_web::dev::Server> {
    let state = actix_web::web::Data::new(http::AppState {
        enc: Arc::clone(&bridge.enc),
        db: Arc::clone(&bridge.db),
        runs: Arc::clone(&bridge.runs),
        forward: bridge.forwarder.clone(),
        feed: Arc::clone(&bridge.feed),
        refusals: Arc::clone(&bridge.refusals),
    });
    let max_body = bridge.runs.max_report_bytes();
    let writes = actix_web::web::Data::from(Arc::clone(&bridge.writes));
    let uploads = actix_web::web::Data::from(Arc::clone(&bridge.uploads));
    let access = actix_web::web::Data::from(Arc::clone(&bridge.access));
    let max_header =
        actix_web::web::Data::new(http::limits::MaxHeaderBytes(bridge.http.max_header_bytes));
    let timings = actix_web::web::Data::new(http::timing::RequestTimings::default());
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(writes.clone())
            .app_data(uploads.clone())
            .app_data(access.clone())
            .app_data(max_header.clone())
            .app_data(timings.clone())
            .app_data(actix_web::web::PayloadConfig::new(max_body))
            .app_data(
                actix_web::web::PathConfig::default().error_handler(|err, _| {
                    let message = format!("bad path: {err}");
                    actix_web::error::InternalError::from_response(
                        err,
                        actix_web::HttpResponse::BadRequest().body(message),
                    )
                    .into()
                }),
            )
            .configure(http::configure)
            .wrap(actix_web::middleware::from_fn(http::access::authorize))
            .wrap(actix_web::middleware::from_fn(http::timing::time_request))
            // Outermost: an oversized head is refused before anything reads it.
            .wrap(actix_web::middleware::from_fn(http::limits::limit_head))
    })
    .on_connect(tls::on_connect);
    server = match tls {
        Some(tls) => server
            .listen_rustls_0_23(listener, tls)
            .context("starting the HTTPS server")?,
        None => server
            .listen(listener)
            .context("starting the HTTP server")?,
    }
    .shutdown_timeout(10)
    // A client that sends its request head too slowly, or idles, is cut
    // off instead of holding a connection (slow-loris).
    .client_request_timeout(std::time::Duration::from_millis(
        bridge.http.request_head_timeout_ms,
    ))
    .client_disconnect_timeout(std::time::Duration::from_millis(
        bridge.http.disconnect_timeout_ms,
    ))
    .keep_alive(std::time::Duration::from_secs(bridge.http.keep_alive_secs));
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
