//! `pvc-bridge` binary: thin CLI over the library. Bad configuration exits
//! 64 (EX_USAGE) with every bad key listed; a runtime failure exits 1.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pvc_bridge::config::{self, Config};
use pvc_bridge::Bridge;

#[derive(Parser)]
#[command(
    name = "pvc-bridge",
    version,
    about = "Foreman-compatible ENC served from PostgreSQL read replicas"
)]
struct Cli {
    /// TOML configuration file; PVC_* environment variables override it.
    #[arg(long, short, global = true, env = "PVC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP: /node/<certname>, /healthz, /readyz, /metrics.
    Serve,
    /// Print the ENC document of one host, as /node/<certname>?format=yml.
    Node { certname: String },
    /// Validate the configuration and exit.
    CheckConfig,
    /// Install or upgrade the bridge's own schema (`pvc`) and the change
    /// feed's triggers on Foreman's tables, on the primary.
    Migrate {
        /// Remove everything the bridge installed instead: the triggers,
        /// the `pvc` schema (leases, stored facts, the outbox, the feed)
        /// and the feed's owner role.
        #[arg(long)]
        uninstall: bool,
        /// With --uninstall: even when the outbox still holds items Foreman
        /// has not been sent.
        #[arg(long, requires = "uninstall")]
        force: bool,
    },
    /// Why a host gets the decision it gets now, from a running bridge
    /// (sends the token of access.admin_token_file, or an admin
    /// certificate).
    Explain {
        certname: String,
        #[command(flatten)]
        client: AdminClient,
    },
    /// Print a host's audit trail (`audit.repo`), newest first: date,
    /// subject, then the diff of its facts and last run.
    Audit {
        certname: String,
        /// Only changes since then: `2026-11-01`, `2026-11-01 06:00` (UTC)
        /// or `2 weeks ago`.
        #[arg(long)]
        since: Option<String>,
    },
    /// Drive the scheduler in virtual time against modelled puppetservers,
    /// beside Puppet's own strategies; writes CSV, a PNG chart and a summary.
    Simulate(pvc_bridge::simulate::Args),
}

/// How a command reaches a running bridge's admin API.
#[derive(clap::Args)]
struct AdminClient {
    /// The running bridge (default: http://<listen>, or
    /// https://localhost:<port> with [tls]).
    #[arg(long)]
    url: Option<String>,
    /// CA bundle (PEM) the bridge's certificate must chain to (default:
    /// tls.client_ca_file, the Puppet CA, when set; else the system's).
    #[arg(long, env = "PVC_ADMIN_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// An admin certificate (PEM; its certname in access.admin_certnames),
    /// for a bridge that requires client certificates.
    #[arg(long, env = "PVC_ADMIN_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "PVC_ADMIN_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
}

impl AdminClient {
    /// The base URL and an HTTP client for it.
    fn connect(&self, config: &Config) -> anyhow::Result<(String, reqwest::Client)> {
        let base = match &self.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => default_base(config),
        };
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        let ca_file = self.ca_file.clone().or_else(|| {
            config
                .tls
                .as_ref()
                .and_then(|tls| tls.client_ca_file.clone())
        });
        if let Some(ca_file) = ca_file {
            let bundle = std::fs::read(&ca_file)
                .with_context(|| format!("reading {}", ca_file.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&bundle)
                .with_context(|| format!("{}: not a PEM CA bundle", ca_file.display()))?;
            // Only the Puppet CA vouches for the bridge, not the public roots.
            builder = builder.tls_built_in_root_certs(false);
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let mut pem =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "{} and {}: not a PEM certificate and key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        Ok((base, builder.build().context("building the HTTP client")?))
    }
}

/// Where this configuration's bridge listens, as a URL a local client can
/// use: loopback for an unspecified address, `localhost` with TLS (a name
/// the certificate may carry; an address rarely is).
fn default_base(config: &Config) -> String {
    let port = config.listen.port();
    if config.tls.is_some() {
        return format!("https://localhost:{port}");
    }
    let ip = config.listen.ip();
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_owned()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("http://{host}:{port}")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulation needs no configuration (no database, no servers).
    if let Command::Simulate(args) = cli.command {
        return match pvc_bridge::simulate::main(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("pvc-bridge: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pvc-bridge: {error}");
            return ExitCode::from(64);
        }
    };
    if matches!(cli.command, Command::Serve | Command::CheckConfig) {
        if let Err(error) = config.check_serving() {
            eprintln!("pvc-bridge: {error}");
            return ExitCode::from(64);
        }
    }
    init_tracing(&config);
    match run(cli.command, config) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pvc-bridge: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig => {
            println!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => actix_web::rt::System::new().block_on(serve(config)),
        Command::Simulate(_) => unreachable!("handled before the configuration is read"),
        Command::Migrate { uninstall, force } => {
            let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
            if uninstall {
                runtime.block_on(uninstall_all(config, force))
            } else {
                runtime.block_on(migrate(config))
            }
        }
        Command::Explain { certname, client } => {
            let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
            runtime.block_on(explain(config, certname, client))
        }
        Command::Node { certname } => {
            let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
            runtime.block_on(print_node(config, certname))
        }
        Command::Audit { certname, since } => print_audit(&config, &certname, since.as_deref()),
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // Validation parsed the files already; they may have changed since.
    let tls = match config.tls.as_ref().map(pvc_bridge::tls::server_config) {
        None => None,
        Some(Ok(tls)) => Some(tls),
        Some(Err(error)) => {
            eprintln!("pvc-bridge: {error:#}");
            return Ok(ExitCode::from(64));
        }
    };
    let bridge = Bridge::new(&config)?;
    bridge.check(&config).await?;
    bridge.start_background(&config)?;
    let listener =
        TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        listen = %config.listen,
        replicas = config.database_replicas.len(),
        foreman = config.foreman_url.is_some(),
        "pvc-bridge listening on {scheme}://{}",
        config.listen
    );
    match &config.tls {
        Some(settings) => tracing::info!(
            cert = %settings.cert_file.display(),
            client_ca = ?settings.client_ca_file,
            crls = settings.client_crl_files.len(),
            require_client_cert = settings.require_client_cert,
            "TLS 1.2/1.3"
        ),
        None => tracing::warn!(
            "PLAIN HTTP (plain_http = true): run decisions, facts and reports travel unencrypted and no client certificate authenticates anyone"
        ),
    }
    log_access(&config.access);
    if config.database_replicas.is_empty() {
        tracing::warn!("no database.replicas configured: every read goes to the primary");
    }
    let server = match tls {
        Some(tls) => pvc_bridge::serve_tls(&bridge, listener, config.workers, tls)?,
        None => pvc_bridge::serve(&bridge, listener, config.workers)?,
    };
    server.await.context("HTTP server")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Who may ask what, once at start (never a token, only whether one is set).
fn log_access(access: &pvc_bridge::access::Policy) {
    tracing::info!(
        client_certificates = access.client_certs,
        server_certnames = access.server_certnames.len(),
        admin_certnames = access.admin_certnames.len(),
        server_token = access.server_token.is_some(),
        admin_token = access.admin_token.is_some(),
        "access control"
    );
    if !access.servers_authenticated() {
        tracing::warn!(
            "OPEN: /node, Foreman's uploads and /ppm answer anyone (no client certificates, no access.server_token_file)"
        );
    } else if access.client_certs
        && access.server_certnames.is_empty()
        && access.server_token.is_none()
    {
        tracing::warn!(
            "no puppetserver can read /node or upload: access.server_certnames is empty and access.server_token_file is not set"
        );
    }
    if !access.client_certs {
        tracing::warn!(
            "OPEN: /host, /facts and /report answer anyone for any certname (no client certificates to bind them to a node)"
        );
    }
    if !access.admin_configured() {
        tracing::warn!(
            "the admin API refuses every request: set access.admin_token_file or access.admin_certnames"
        );
    }
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let bridge = Bridge::new(&config)?;
    let client = bridge
        .db
        .write()
        .await
        .context("connecting to the primary")?;
    let migrated = pvc_bridge::store::pvc::migrate_with(&client, &config.changes.owner_role)
        .await
        .context("migrating the pvc schema")?;
    if migrated.applied.is_empty() {
        println!("pvc schema is current (version {})", migrated.current);
    } else {
        println!(
            "pvc schema migrated to version {} (applied {:?})",
            migrated.current, migrated.applied
        );
    }
    let changes = &migrated.changes;
    println!(
        "change feed: triggers on {} tables, function owned by role {}",
        changes.tables.len(),
        config.changes.owner_role
    );
    if !changes.removed.is_empty() {
        println!(
            "change feed: triggers removed from {}",
            changes.removed.join(", ")
        );
    }
    if !changes.missing_tables.is_empty() {
        println!(
            "change feed: not in this database (not watched): {}",
            changes.missing_tables.join(", ")
        );
    }
    if !changes.missing_columns.is_empty() {
        // Foreman's writes are safe (the trigger is generic), but the
        // bridge reads these columns: a Foreman newer than this bridge.
        println!(
            "WARNING: columns the bridge reads are missing (a Foreman upgrade renamed them?): {}",
            changes.missing_columns.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn uninstall_all(config: Config, force: bool) -> anyhow::Result<ExitCode> {
    use pvc_bridge::store::pvc::changes;
    let bridge = Bridge::new(&config)?;
    let client = bridge
        .db
        .write()
        .await
        .context("connecting to the primary")?;
    let pending = changes::pending_outbox(&client)
        .await
        .context("counting the outbox")?;
    if pending > 0 && !force {
        eprintln!(
            "pvc-bridge: the outbox holds {pending} items Foreman has not been sent; \
             wait for it to empty (pvc_bridge_outbox_items) or pass --force to drop them"
        );
        return Ok(ExitCode::from(1));
    }
    let removed = changes::uninstall(&client, &config.changes.owner_role)
        .await
        .context("uninstalling")?;
    println!("change feed triggers removed: {}", removed.triggers.len());
    println!(
        "schema pvc: {}",
        if removed.schema {
            "dropped"
        } else {
            "was not there"
        }
    );
    match &removed.role {
        None => println!("role {}: was not there", config.changes.owner_role),
        Some(Ok(())) => println!("role {}: dropped", config.changes.owner_role),
        Some(Err(reason)) => println!(
            "role {}: kept ({reason}); drop it once no database uses it",
            config.changes.owner_role
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(config: Config, name: String, client: AdminClient) -> anyhow::Result<ExitCode> {
    let certname: pvc_bridge::certname::Certname = name.parse().context("certname")?;
    let (base, http) = client.connect(&config)?;
    let url = format!("{base}/admin/explain/{certname}");
    let mut request = http.get(&url);
    // The admin API needs the admin credential: the token of
    // access.admin_token_file, or an admin certificate.
    match &config.access.admin_token {
        Some(token) => request = request.bearer_auth(token.expose()),
        None if client.cert_file.is_some() => {}
        None => eprintln!(
            "pvc-bridge: neither access.admin_token_file nor --cert-file is set: the bridge will refuse"
        ),
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("asking the bridge at {base}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    if !status.is_success() {
        eprintln!("pvc-bridge: {status}: {}", text.trim());
        return Ok(ExitCode::from(2));
    }
    let value: serde_json::Value = serde_json::from_str(&text).context("the answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

async fn print_node(config: Config, name: String) -> anyhow::Result<ExitCode> {
    let certname: pvc_bridge::certname::Certname = name.parse().context("certname")?;
    let bridge = Bridge::new(&config)?;
    let doc = bridge
        .enc
        .document(certname.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match doc.body() {
        Some(body) => {
            print!("{}", String::from_utf8_lossy(body));
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("pvc-bridge: no host named {certname}");
            Ok(ExitCode::from(2))
        }
    }
}

fn print_audit(config: &Config, name: &str, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let certname: pvc_bridge::certname::Certname = name.parse().context("certname")?;
    let repo = config
        .audit
        .repo
        .as_deref()
        .context("audit.repo (PVC_AUDIT__REPO) is not set: there is no audit trail to read")?;
    let mut out = std::io::stdout().lock();
    match pvc_bridge::audit::print_history(repo, &certname, since, &mut out)? {
        pvc_bridge::audit::History::Printed => Ok(ExitCode::SUCCESS),
        pvc_bridge::audit::History::NothingSince => {
            eprintln!(
                "pvc-bridge: no change of {certname} since {}",
                since.unwrap_or("")
            );
            Ok(ExitCode::SUCCESS)
        }
        pvc_bridge::audit::History::NoBranch => {
            eprintln!(
                "pvc-bridge: no audit trail for {certname} in {} (no change of it recorded yet)",
                repo.display()
            );
            Ok(ExitCode::from(2))
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
