//! `pvc-pg`: a PostgreSQL primary + streaming replica for the demo and the
//! benchmarks, left running in a directory until `pvc-pg down`.
//!
//! ```text
//! pvc-pg up     --dir DIR [--foreman-db NAME]   start (or reuse), write DIR/env
//! pvc-pg status --dir DIR                       ports, recovery state, replica lag
//! pvc-pg load   --dir DIR --db NAME --sql FILE  run FILE (.sql, .sql.gz, - for stdin) on the primary
//! pvc-pg down   --dir DIR                       stop both servers, remove DIR
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pvc_testkit::cluster::{self, Cluster, Server};

#[derive(Parser)]
#[command(about = "A PostgreSQL 15 primary + streaming hot-standby replica on 127.0.0.1")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start primary + replica in DIR (detached), or reuse the running ones; write DIR/env.
    Up {
        #[arg(long)]
        dir: PathBuf,
        /// Also create this database from the Foreman fixture (kept if it exists).
        #[arg(long)]
        foreman_db: Option<String>,
    },
    /// Stop both servers and remove DIR.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show both servers; exit status 1 if one is not answering.
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run a SQL file on database DB of the primary, then wait for the replica.
    Load {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        db: String,
        /// .sql, .sql.gz, or - for stdin
        #[arg(long)]
        sql: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up { dir, foreman_db } => up(&dir, foreman_db.as_deref()),
        Cmd::Down { dir } => down(&dir),
        Cmd::Status { dir } => status(&dir),
        Cmd::Load { dir, db, sql } => load(&dir, &db, &sql),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pvc-pg: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(dir: &Path, foreman_db: Option<&str>) -> Result<ExitCode> {
    let started = Instant::now();
    let running = Cluster::open(dir)
        .ok()
        .filter(|c| c.psql(Server::Primary, "postgres", "SELECT 1").is_ok());
    let cluster = match running {
        Some(cluster) => {
            eprintln!(
                "pvc-pg: reusing the cluster running in {}",
                cluster.dir().display()
            );
            cluster
        }
        None => {
            if dir.exists() && cluster::down_dir(dir).is_ok() {
                eprintln!("pvc-pg: removed a stopped cluster from {}", dir.display());
            }
            let cluster = Cluster::start_detached(dir)?;
            eprintln!(
                "pvc-pg: primary 127.0.0.1:{} + streaming replica 127.0.0.1:{} up in {:.1?} ({})",
                cluster.primary_port(),
                cluster.replica_port(),
                started.elapsed(),
                cluster.dir().display()
            );
            cluster
        }
    };
    let db = foreman_db.unwrap_or("postgres");
    if let Some(name) = foreman_db {
        let exists = format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{}'",
            name.replace('\'', "''")
        );
        if cluster.psql(Server::Primary, "postgres", &exists)? == "0" {
            let t = Instant::now();
            cluster.create_foreman_db_blocking(name)?;
            eprintln!(
                "pvc-pg: database {name} created from the Foreman fixture in {:.1?}",
                t.elapsed()
            );
        } else {
            eprintln!("pvc-pg: database {name} already exists; kept");
        }
    }
    let mut env = String::new();
    writeln!(env, "PVC_DATABASE__PRIMARY={}", cluster.primary_url(db))?;
    writeln!(env, "PVC_DATABASE__REPLICAS={}", cluster.replica_url(db))?;
    let path = cluster.dir().join("env");
    std::fs::write(&path, &env).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("pvc-pg: wrote {}", path.display());
    print!("{env}");
    Ok(ExitCode::SUCCESS)
}

fn down(dir: &Path) -> Result<ExitCode> {
    if !dir.exists() {
        eprintln!("pvc-pg: nothing in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    cluster::down_dir(dir)?;
    eprintln!("pvc-pg: stopped the servers and removed {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn status(dir: &Path) -> Result<ExitCode> {
    let cluster = Cluster::open(dir)?;
    println!("dir      {}", cluster.dir().display());
    let primary = cluster.psql(
        Server::Primary,
        "postgres",
        "SELECT pg_is_in_recovery(), pg_current_wal_lsn()",
    );
    let replica = cluster.psql(
        Server::Replica,
        "postgres",
        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), \
         coalesce((SELECT status FROM pg_stat_wal_receiver), 'not streaming')",
    );
    let describe = |answer: &Result<String>, lsn_label: &str| match answer {
        Ok(row) => {
            let cols: Vec<&str> = row.split('|').collect();
            let role = if cols[0] == "t" {
                "in recovery"
            } else {
                "read-write"
            };
            format!(
                "up    {role}  {lsn_label} {}  {}",
                cols.get(1).unwrap_or(&""),
                cols.get(2).unwrap_or(&"")
            )
        }
        Err(e) => format!(
            "DOWN  {}",
            e.root_cause()
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
        ),
    };
    println!(
        "primary  127.0.0.1:{}  {}",
        cluster.primary_port(),
        describe(&primary, "wal lsn").trim_end()
    );
    println!(
        "replica  127.0.0.1:{}  {}",
        cluster.replica_port(),
        describe(&replica, "replay lsn").trim_end()
    );
    if let Ok(env) = std::fs::read_to_string(dir.join("env")) {
        print!("{env}");
    }
    Ok(if primary.is_ok() && replica.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load(dir: &Path, db: &str, sql: &Path) -> Result<ExitCode> {
    let cluster = Cluster::open(dir)?;
    let t = Instant::now();
    cluster.run_sql_file_blocking(db, sql)?;
    eprintln!(
        "pvc-pg: loaded {} into {db} and replicated in {:.1?}",
        sql.display(),
        t.elapsed()
    );
    Ok(ExitCode::SUCCESS)
}
