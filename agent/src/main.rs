//! `pvc-agent [--config PATH] <run|once|check>`: the node daemon's command
//! line. Loads the configuration (errors: exit 78, EX_CONFIG), sets up
//! logging to stderr (journald under systemd) at the original agent's
//! `info`/`warnings` levels, and hands over to `pvc_agent::daemon`.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pvc_agent::config::{self, AgentConfig, PuppetPrint};
use pvc_agent::daemon;
use pvc_agent::decision::Decision;
use tracing_subscriber::EnvFilter;

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "pvc-agent",
    version,
    about = "Asks the pvc bridge before every Puppet run; forces a run when a monitored file changes"
)]
struct Cli {
    /// The configuration file (`key=value` lines).
    #[arg(long, env = "PVC_CONF", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Command {
    /// Run as a daemon: poll, run Puppet when granted, watch files.
    Run,
    /// One poll and its action (a run, facts), then exit.
    Once,
    /// Validate the configuration, ask the bridge, print its decision
    /// (nothing is run).
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli.config, &PuppetPrint::default()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "pvc-agent: {} is not valid; nothing done",
                cli.config.display()
            );
            return ExitCode::from(EX_CONFIG);
        }
    };
    init_logging(&config);
    for endpoint in config.plain_http_endpoints() {
        tracing::warn!(
            endpoint,
            "plain HTTP to the bridge: no TLS, no client certificate; use an https:// URL"
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pvc-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run => daemon::run(config).await.map(|()| ExitCode::SUCCESS),
            Command::Once => daemon::once(config).await.map(|outcome| {
                tracing::info!(?outcome, "done");
                exit_code(outcome.exit_code())
            }),
            Command::Check => daemon::check(&config).await.map(|decision| {
                print!("{}", describe(&cli.config, &config, &decision));
                if decision.code == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }),
        }
    });
    result.unwrap_or_else(|e| {
        // stderr is the log (journald under systemd).
        eprintln!("pvc-agent: {e:#}");
        ExitCode::FAILURE
    })
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The original agent's switches: `info=1` each step, `warnings=1` the
/// warnings, otherwise errors only.
fn default_level(config: &AgentConfig) -> &'static str {
    if config.info {
        "info"
    } else if config.warnings {
        "warn"
    } else {
        "error"
    }
}

/// Text to stderr; `RUST_LOG` overrides the level. Under systemd journald
/// stamps each line, so no timestamp of our own.
fn init_logging(config: &AgentConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level(config)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// What `check` prints: the configuration in effect, then the decision.
fn describe(path: &std::path::Path, config: &AgentConfig, d: &Decision) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<17} {value}");
    };
    row("configuration", &path.display().to_string());
    row("certname", &config.certname);
    row("host_endpoint", &config.host_endpoint);
    row("report_endpoint", &config.report_endpoint);
    row("facts_endpoint", &config.facts_endpoint);
    match &config.tls {
        Some(tls) => {
            row("tls cert", &tls.cert.display().to_string());
            row("tls key", &tls.key.display().to_string());
            row("tls ca", &tls.ca.display().to_string());
            let crl = tls
                .crl
                .as_ref()
                .map_or("none".into(), |c| c.display().to_string());
            row("tls crl", &crl);
        }
        None => row("tls", "none (plain HTTP)"),
    }
    row("PVC_RETURN", &d.code.to_string());
    match &d.run {
        Some(g) => {
            let mut run = format!("granted: {} run, trigger {}", g.mode.as_str(), g.trigger);
            if let Some(server) = &g.server {
                let _ = write!(run, ", server {server}");
            }
            if let Some(id) = &g.run_id {
                let _ = write!(run, ", run id {id} (given back: check runs nothing)");
            }
            row("run", &run);
        }
        None => row("run", "not now"),
    }
    row("fact run", if d.fact_run { "yes" } else { "no" });
    row(
        "check interval",
        &format!("{} s", d.check_interval.as_secs()),
    );
    let files: Vec<String> = d
        .files_monitored
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    row(
        "files monitored",
        &if files.is_empty() {
            "none".into()
        } else {
            files.join(" ")
        },
    );
    for (name, value) in &d.facter_env {
        row(name, value);
    }
    if let Some(reason) = &d.reason {
        row("reason", reason);
    }
    if let Some(error) = &d.error {
        row("error", error);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use pvc_agent::config::{PuppetSettings, TlsFiles};
    use pvc_agent::decision;
    use std::time::Duration;

    fn config(info: bool, warnings: bool) -> AgentConfig {
        AgentConfig {
            host_endpoint: "https://bridge:8443/host".into(),
            report_endpoint: "https://bridge:8443/report".into(),
            facts_endpoint: "https://bridge:8443/facts".into(),
            certname: "web1.example.com".into(),
            tls: Some(TlsFiles {
                cert: "/ssl/certs/web1.pem".into(),
                key: "/ssl/private_keys/web1.pem".into(),
                ca: "/ssl/certs/ca.pem".into(),
                crl: None,
            }),
            puppet: PuppetSettings {
                puppet: vec!["puppet".into()],
                facter: vec!["facter".into()],
                run_timeout: Duration::from_secs(1800),
                run_lockfile: "/state/agent_catalog_run.lock".into(),
                disabled_lockfile: "/state/agent_disabled.lock".into(),
                last_run_summary: "/public/last_run_summary.yaml".into(),
                last_run_report: "/state/last_run_report.yaml".into(),
                ca_server: None,
                report_server: None,
            },
            fallback_interval: Duration::from_secs(3600),
            forced_runs_per_hour: 6,
            forced_runs_burst: 3,
            spool_dir: "/var/lib/pvc-agent/spool".into(),
            spool_max_bytes: 1 << 26,
            info,
            warnings,
        }
    }

    #[test]
    fn the_command_line() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["pvc-agent", "--config", "/tmp/p.conf", "check"]).expect("valid");
        assert_eq!(cli.config, PathBuf::from("/tmp/p.conf"));
        assert_eq!(cli.command, Command::Check);
        let cli = Cli::try_parse_from(["pvc-agent", "once"]).expect("valid");
        assert_eq!(cli.command, Command::Once);
        assert!(Cli::try_parse_from(["pvc-agent"]).is_err());
        assert!(Cli::try_parse_from(["pvc-agent", "start"]).is_err());
    }

    #[test]
    fn log_levels_follow_the_original_switches() {
        assert_eq!(default_level(&config(true, true)), "info");
        assert_eq!(default_level(&config(true, false)), "info");
        assert_eq!(default_level(&config(false, true)), "warn");
        assert_eq!(default_level(&config(false, false)), "error");
    }

    #[test]
    fn check_prints_the_decision() {
        let d = decision::parse(
            br#"{"PVC_RETURN":"0","PVC_RUN":"1","PVC_RUN_ID":"r-1","PVC_PUPPET_MASTER":"ps1",
                "PVC_CHECK_INTERVAL":"30","PVC_FILES_MONITORED":"/etc/sudoers","FACTER_UPDATE_FLAG":"true",
                "PVC_REASON":"due"}"#,
        )
        .expect("valid");
        let text = describe(
            std::path::Path::new("/etc/pvc.conf"),
            &config(false, true),
            &d,
        );
        for line in [
            "  configuration     /etc/pvc.conf\n",
            "  certname          web1.example.com\n",
            "  tls crl           none\n",
            "  PVC_RETURN        0\n",
            "  run               granted: full run, trigger schedule, server ps1, run id r-1 (given back: check runs nothing)\n",
            "  fact run          no\n",
            "  check interval    30 s\n",
            "  files monitored   /etc/sudoers\n",
            "  FACTER_UPDATE_FLAG true\n",
            "  reason            due\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        let refused = decision::parse(
            br#"{"PVC_RETURN":"1","PVC_CHECK_INTERVAL":"60","PVC_ERROR":"unknown host"}"#,
        )
        .expect("valid");
        let text = describe(std::path::Path::new("/p"), &config(false, true), &refused);
        assert!(text.contains("  run               not now\n"), "{text}");
        assert!(
            text.contains("  error             unknown host\n"),
            "{text}"
        );
    }
}
