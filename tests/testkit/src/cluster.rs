//! A real PostgreSQL primary + streaming replica in a throwaway directory.
//!
//! pvc-bridge reads from PostgreSQL read replicas, so its tests, the demo and
//! the benchmarks run against the same topology: a primary made by `initdb`
//! and a hot standby made by `pg_basebackup -R -X stream` that streams from it
//! over TCP on 127.0.0.1. No mocks. [`Cluster::start_with_replicas`] makes
//! more standbys the same way (data directories `replica`, `replica1`, …,
//! each with a replication slot of its own); the API without an index
//! (`replica_port`, `stop_replica`, …) is about replica 0.
//!
//! Design:
//! - **tmpfs**: the cluster lives in `/dev/shm` when present (else the temp
//!   dir), with `fsync`, `synchronous_commit` and `full_page_writes` off.
//!   Nothing needs to survive a crash, so starting, base backups and database
//!   clones are memory copies.
//! - **Watchdog**: a test binary never drops its statics and can be killed at
//!   any moment. [`Cluster::start`] therefore spawns a small `sh` that blocks
//!   reading a pipe whose only write end this process holds. When the process
//!   ends, however it ends, the kernel closes the pipe and the shell stops both
//!   servers and removes the directory. Directories of dead runs
//!   (`pvc-pg-<pid>-<n>` whose pid is gone) are swept at start as well.
//! - **Template + `FILE_COPY`**: loading the Foreman dump takes seconds, so it
//!   is loaded once per cluster into `foreman_template`; every test gets its
//!   own copy with `CREATE DATABASE .. TEMPLATE foreman_template STRATEGY =
//!   FILE_COPY`, a directory copy on the primary that the replica replays as a
//!   directory copy too (instead of WAL-logging every page).
//! - **Replica sync by LSN, never by sleeping**: [`Cluster::wait_replica_caught_up`]
//!   takes the primary's WAL insert position (after forcing a flush, because
//!   with `synchronous_commit = off` recent commits may sit in WAL buffers) and
//!   polls `pg_last_wal_replay_lsn()` on each replica until it has passed it.
//!   A replica given an apply delay ([`Cluster::set_apply_delay`]) is skipped
//!   there, so tests can see it lag; [`Cluster::wait_replica_caught_up_at`]
//!   waits for one replica, delayed or not.
//! - **Blocking core**: servers are driven with `std::process` (`pg_ctl`,
//!   `psql`), so [`shared`] works inside and outside a tokio runtime; the async
//!   functions run that code on tokio's blocking pool.
//!
//! Server commands run as user `postgres` (`runuser -u postgres --`) when this
//! process is root, because postgres refuses to run as root. Clients connect
//! over TCP as database user `postgres` with `trust` authentication.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Name prefix of throwaway cluster directories: `pvc-pg-<pid>-<n>`.
const PREFIX: &str = "pvc-pg-";
/// The template database every [`Cluster::foreman_db`] is cloned from.
pub const FOREMAN_TEMPLATE: &str = "foreman_template";
/// A zero-column table in database `postgres` on the primary; inserting into it
/// with `synchronous_commit = on` flushes all WAL written before.
const FLUSH_TABLE: &str = "pvc_testkit_flush";
const STATE_FILE: &str = "cluster.json";
const REPLICA_TIMEOUT: Duration = Duration::from_secs(60);

/// The Foreman 3.13 dump (see `tests/fixtures/foreman/README.md`).
pub fn foreman_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/foreman/foreman.sql.gz")
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster of this test binary, started on first use and torn down by its
/// watchdog when the process exits. Panics if PostgreSQL cannot be started.
pub fn shared() -> &'static Cluster {
    match SHARED.get_or_init(|| Cluster::start().map_err(|e| format!("{e:#}"))) {
        Ok(cluster) => cluster,
        Err(e) => panic!("pvc-testkit: cannot start the PostgreSQL cluster: {e}"),
    }
}

/// Which server of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Primary,
    /// Replica 0.
    Replica,
    /// Replica `i` (0-based) of a cluster from [`Cluster::start_with_replicas`].
    ReplicaAt(usize),
}

/// A primary + streaming hot-standby replicas on 127.0.0.1.
#[derive(Debug)]
pub struct Cluster {
    pg: Arc<Pg>,
    /// `Some` for throwaway clusters: dropping it tears the cluster down.
    watchdog: Option<Watchdog>,
}

/// A database on the cluster, on the primary and (replicated) on the replica.
/// Dropped when the test passed; kept, with its URLs printed, when it panicked.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:<port>/<name>` of the primary.
    pub primary_url: String,
    /// The same database on replica 0 (read-only).
    pub replica_url: String,
    /// The same database on every replica, in replica order (the first is
    /// `replica_url`).
    pub replica_urls: Vec<String>,
    pg: Arc<Pg>,
}

/// What `cluster.json` in the cluster directory records, for `pvc-pg`.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    bindir: PathBuf,
    primary_port: u16,
    /// Replica 0, as before there could be more.
    replica_port: u16,
    /// Every replica; absent in files written by older versions.
    #[serde(default)]
    replica_ports: Vec<u16>,
}

#[derive(Debug)]
struct Pg {
    bindir: PathBuf,
    dir: PathBuf,
    primary_port: u16,
    /// One per replica; replica i lives in [`replica_dir_name`]`(i)`.
    replica_ports: Vec<u16>,
    /// `recovery_min_apply_delay` set by [`Cluster::set_apply_delay`], per replica.
    apply_delays: Mutex<Vec<Duration>>,
    /// This process is root: server commands run through `runuser -u postgres`.
    as_postgres: bool,
    template: OnceLock<Result<(), String>>,
    next_db: AtomicU32,
}

impl Cluster {
    /// Starts a throwaway cluster in tmpfs, removed when it is dropped or this
    /// process exits. With `PVC_TESTKIT_KEEP=1` it is left running instead
    /// (directory `pvc-pg-kept-*`, stop it with `pvc-pg down --dir DIR`).
    pub fn start() -> Result<Cluster> {
        Cluster::start_with_replicas(1)
    }

    /// [`Cluster::start`] with `replicas` (at least 1) streaming hot
    /// standbys, each base-backed-up from the primary with a replication
    /// slot of its own.
    pub fn start_with_replicas(replicas: usize) -> Result<Cluster> {
        if replicas == 0 {
            bail!("a cluster needs at least one replica");
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let bindir = find_bindir()?;
        let as_postgres = is_root()?;
        let root = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        sweep(&root, &bindir, as_postgres);
        let keep = std::env::var_os("PVC_TESTKIT_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        let name = format!(
            "{PREFIX}{}{}-{}",
            if keep { "kept-" } else { "" },
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join(name);
        let _ = fs::remove_dir_all(&dir);
        make_dir(&dir, as_postgres)?;
        // Armed before the servers exist, so a failed start is cleaned up too.
        let watchdog = if keep {
            None
        } else {
            Some(Watchdog::spawn(&bindir, &dir, as_postgres)?)
        };
        let pg = Pg::create(bindir, dir.clone(), as_postgres, replicas)
            .with_context(|| format!("starting PostgreSQL in {}", dir.display()))?;
        if keep {
            eprintln!(
                "pvc-testkit: PVC_TESTKIT_KEEP set: cluster in {} is left running",
                pg.dir.display()
            );
        }
        Ok(Cluster {
            pg: Arc::new(pg),
            watchdog,
        })
    }

    /// Starts a cluster in `dir` that outlives this process (no watchdog, not
    /// stopped on drop): for `pvc-pg up`. `dir` must not exist or be empty.
    pub fn start_detached(dir: &Path) -> Result<Cluster> {
        let bindir = find_bindir()?;
        let as_postgres = is_root()?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        if fs::read_dir(&dir)?.next().is_some() {
            bail!(
                "{} is not empty; run `pvc-pg down --dir {0}` first",
                dir.display()
            );
        }
        make_dir(&dir, as_postgres)?;
        match Pg::create(bindir, dir.clone(), as_postgres, 1) {
            Ok(pg) => Ok(Cluster {
                pg: Arc::new(pg),
                watchdog: None,
            }),
            Err(e) => {
                let _ = down_dir(&dir);
                Err(e.context(format!("starting PostgreSQL in {}", dir.display())))
            }
        }
    }

    /// Attaches to a cluster started by [`Cluster::start_detached`] (or kept
    /// with `PVC_TESTKIT_KEEP`). Dropping the handle leaves it running.
    pub fn open(dir: &Path) -> Result<Cluster> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "no cluster in {}: cannot read {}",
                dir.display(),
                path.display()
            )
        })?;
        let state: State =
            serde_json::from_str(&text).with_context(|| format!("bad {}", path.display()))?;
        let replica_ports = if state.replica_ports.is_empty() {
            vec![state.replica_port]
        } else {
            state.replica_ports
        };
        let pg = Pg {
            primary_port: state.primary_port,
            apply_delays: Mutex::new(vec![Duration::ZERO; replica_ports.len()]),
            replica_ports,
            ..Pg::stub(state.bindir, dir.canonicalize()?, is_root()?)
        };
        Ok(Cluster {
            pg: Arc::new(pg),
            watchdog: None,
        })
    }

    /// Stops both servers (`pg_ctl stop -m immediate`) and removes the directory.
    pub fn down(mut self) -> Result<()> {
        match self.watchdog.take() {
            Some(watchdog) => {
                drop(watchdog);
                Ok(())
            }
            None => down_dir(&self.pg.dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.pg.dir
    }
    pub fn primary_port(&self) -> u16 {
        self.pg.primary_port
    }
    /// The port of replica 0.
    pub fn replica_port(&self) -> u16 {
        self.pg.replica_ports[0]
    }
    /// How many replicas stream from the primary.
    pub fn replica_count(&self) -> usize {
        self.pg.replica_ports.len()
    }
    /// The port of replica `i`. Panics if `i >= replica_count()`.
    pub fn replica_port_at(&self, i: usize) -> u16 {
        self.pg.port(Server::ReplicaAt(i))
    }
    /// `postgres://postgres@127.0.0.1:<primary port>/<db>`.
    pub fn primary_url(&self, db: &str) -> String {
        self.pg.url(Server::Primary, db)
    }
    /// `postgres://postgres@127.0.0.1:<replica port>/<db>` of replica 0.
    pub fn replica_url(&self, db: &str) -> String {
        self.pg.url(Server::Replica, db)
    }
    /// `postgres://postgres@127.0.0.1:<port of replica i>/<db>`. Panics if
    /// `i >= replica_count()`.
    pub fn replica_url_at(&self, i: usize, db: &str) -> String {
        self.pg.url(Server::ReplicaAt(i), db)
    }

    /// A fresh copy of the Foreman fixture named `t_<hint>_<n>`, already
    /// replayed on (and connectable through) the replica. The first call also
    /// loads `foreman_template` (well under a second on tmpfs).
    pub async fn foreman_db(&self, name_hint: &str) -> Result<TestDb> {
        self.new_db(name_hint, true).await
    }

    /// An empty UTF-8, C-collation database `t_<hint>_<n>`, replayed on the replica.
    pub async fn empty_db(&self, name_hint: &str) -> Result<TestDb> {
        self.new_db(name_hint, false).await
    }

    async fn new_db(&self, name_hint: &str, foreman: bool) -> Result<TestDb> {
        let hint = sanitize(name_hint);
        let name = blocking(&self.pg, move |pg| pg.create_test_db(&hint, foreman)).await?;
        Ok(TestDb {
            primary_url: self.primary_url(&name),
            replica_url: self.replica_url(&name),
            replica_urls: (0..self.replica_count())
                .map(|i| self.replica_url_at(i, &name))
                .collect(),
            name,
            pg: self.pg.clone(),
        })
    }

    /// Waits until every replica has replayed everything committed on the
    /// primary before this call (60 s timeout, then an error with the LSNs).
    /// Replicas with an apply delay ([`Cluster::set_apply_delay`]) are
    /// skipped: they are meant to lag; wait for one of them with
    /// [`Cluster::wait_replica_caught_up_at`]. Every replica without a delay
    /// must be running.
    pub async fn wait_replica_caught_up(&self) -> Result<()> {
        blocking(&self.pg, |pg| pg.wait_caught_up(false, Delayed::Skip)).await
    }

    /// [`Cluster::wait_replica_caught_up`] for code without a runtime.
    pub fn wait_replica_caught_up_blocking(&self) -> Result<()> {
        self.pg.wait_caught_up(false, Delayed::Skip)
    }

    /// Waits until replica `i` has replayed everything committed on the
    /// primary before this call, its apply delay included (timeout 60 s plus
    /// the delay).
    pub async fn wait_replica_caught_up_at(&self, i: usize) -> Result<()> {
        self.check_replica(i)?;
        blocking(&self.pg, move |pg| {
            pg.wait_caught_up(false, Delayed::Only(i))
        })
        .await
    }

    /// Sets `recovery_min_apply_delay` on replica `i` (`ALTER SYSTEM`, then
    /// `pg_reload_conf()`): it receives WAL at once but applies each commit
    /// only `delay` after the primary made it, so it lags behind the others
    /// by about `delay`. `Duration::ZERO` removes the setting. Returns once
    /// new sessions on the replica show the value (the startup process is
    /// signalled in the same reload). The setting survives restarts.
    pub async fn set_apply_delay(&self, i: usize, delay: Duration) -> Result<()> {
        self.check_replica(i)?;
        blocking(&self.pg, move |pg| pg.set_apply_delay(i, delay)).await
    }

    /// The apply delay last set on replica `i` with [`Cluster::set_apply_delay`].
    pub fn apply_delay(&self, i: usize) -> Duration {
        self.pg.apply_delay(i)
    }

    /// Creates database `name` as a copy of the Foreman fixture (loading the
    /// template first if needed) and waits for the replica. For `pvc-pg up`.
    pub fn create_foreman_db_blocking(&self, name: &str) -> Result<()> {
        self.pg.ensure_template()?;
        self.pg
            .psql(Server::Primary, "postgres", &create_db_sql(name, true))?;
        self.pg.wait_caught_up(false, Delayed::Wait)
    }

    /// Runs a SQL file (`.gz` is decompressed, `-` is stdin) with
    /// `psql -v ON_ERROR_STOP=1` on database `db` of the primary, then waits
    /// for the replica.
    pub fn run_sql_file_blocking(&self, db: &str, sql: &Path) -> Result<()> {
        self.pg.psql_file(db, sql)?;
        self.pg.wait_caught_up(false, Delayed::Skip)
    }

    /// Runs `sql` with `psql` on `db` and returns the unaligned, tuples-only
    /// output (`|` between columns), trimmed.
    pub fn psql(&self, server: Server, db: &str, sql: &str) -> Result<String> {
        self.pg.psql(server, db, sql)
    }

    /// Stops the primary as an operator does (`pg_ctl stop -m fast`:
    /// sessions are ended, statements in flight rolled back); the replica
    /// keeps serving reads and waits for it. Refused on [`shared`], which
    /// other tests use: start a cluster of your own.
    pub async fn stop_primary(&self) -> Result<()> {
        self.refuse_shared("stop the primary")?;
        blocking(&self.pg, |pg| {
            run(pg
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(pg.dir.join("primary"))
                .args(["stop", "-m", "fast", "-w", "-t", "60"]))
            .map(drop)
        })
        .await
    }

    /// Starts the primary stopped by [`Cluster::stop_primary`] again, on
    /// the same port, and waits until the replicas (those without an apply
    /// delay) stream from it and have replayed everything it has.
    pub async fn start_primary(&self) -> Result<()> {
        self.refuse_shared("start the primary")?;
        blocking(&self.pg, |pg| {
            let log = pg.dir.join("primary.log");
            run(pg
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(pg.dir.join("primary"))
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]))
            .with_context(|| {
                format!(
                    "restarting the primary; {}:\n{}",
                    log.display(),
                    tail(&fs::read_to_string(&log).unwrap_or_default(), 40)
                )
            })?;
            pg.wait_caught_up(true, Delayed::Skip)
        })
        .await
    }

    /// Stops replica 0 (`pg_ctl stop -m fast`); the primary keeps
    /// running. Refused on [`shared`]: start a cluster of your own.
    pub async fn stop_replica(&self) -> Result<()> {
        self.stop_replica_at(0).await
    }

    /// Starts replica 0 stopped by [`Cluster::stop_replica`] again, on the
    /// same port, and waits until it accepts connections (it resumes
    /// streaming once the primary is up; with the primary up, call
    /// [`Cluster::wait_replica_caught_up`] to wait for that).
    pub async fn start_replica(&self) -> Result<()> {
        self.start_replica_at(0).await
    }

    /// [`Cluster::stop_replica`] for replica `i`; the other servers keep running.
    pub async fn stop_replica_at(&self, i: usize) -> Result<()> {
        self.refuse_shared("stop a replica")?;
        self.check_replica(i)?;
        blocking(&self.pg, move |pg| {
            run(pg
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(pg.dir.join(replica_dir_name(i)))
                .args(["stop", "-m", "fast", "-w", "-t", "60"]))
            .map(drop)
        })
        .await
    }

    /// [`Cluster::start_replica`] for replica `i`.
    pub async fn start_replica_at(&self, i: usize) -> Result<()> {
        self.refuse_shared("start a replica")?;
        self.check_replica(i)?;
        blocking(&self.pg, move |pg| {
            let name = replica_dir_name(i);
            let log = pg.dir.join(format!("{name}.log"));
            run(pg
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(pg.dir.join(&name))
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]))
            .with_context(|| {
                format!(
                    "restarting {name}; {}:\n{}",
                    log.display(),
                    tail(&fs::read_to_string(&log).unwrap_or_default(), 40)
                )
            })
            .map(drop)
        })
        .await
    }

    fn check_replica(&self, i: usize) -> Result<()> {
        if i >= self.replica_count() {
            bail!(
                "no replica {i}: the cluster has {} (Cluster::start_with_replicas)",
                self.replica_count()
            );
        }
        Ok(())
    }

    fn refuse_shared(&self, what: &str) -> Result<()> {
        if let Some(Ok(shared)) = SHARED.get() {
            if std::ptr::eq(shared, self) {
                bail!(
                    "cannot {what} of the shared cluster: other tests use it; use Cluster::start()"
                );
            }
        }
        Ok(())
    }
}

impl TestDb {
    /// A tokio-postgres client on the primary.
    pub async fn connect_primary(&self) -> Result<tokio_postgres::Client> {
        connect(&self.primary_url).await
    }
    /// A tokio-postgres client on replica 0 (read-only).
    pub async fn connect_replica(&self) -> Result<tokio_postgres::Client> {
        connect(&self.replica_url).await
    }
    /// A tokio-postgres client on replica `i` (read-only).
    pub async fn connect_replica_at(&self, i: usize) -> Result<tokio_postgres::Client> {
        let url = self.replica_urls.get(i).with_context(|| {
            format!(
                "no replica {i}: the cluster has {}",
                self.replica_urls.len()
            )
        })?;
        connect(url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "pvc-testkit: test failed; kept database {} (primary {}, replicas {}); \
                 the cluster goes when the test binary exits unless PVC_TESTKIT_KEEP=1",
                self.name,
                self.primary_url,
                self.replica_urls.join(" ")
            );
            return;
        }
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.name));
        if let Err(e) = self.pg.psql(Server::Primary, "postgres", &sql) {
            eprintln!("pvc-testkit: cannot drop database {}: {e:#}", self.name);
        }
    }
}

/// Connects with tokio-postgres and drives the connection on a spawned task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Pg {
    /// Paths only; ports are filled in once the servers run.
    fn stub(bindir: PathBuf, dir: PathBuf, as_postgres: bool) -> Pg {
        Pg {
            bindir,
            dir,
            primary_port: 0,
            replica_ports: Vec::new(),
            apply_delays: Mutex::new(Vec::new()),
            as_postgres,
            template: OnceLock::new(),
            next_db: AtomicU32::new(1),
        }
    }

    /// initdb, configure and start the primary, base-backup and start the
    /// replicas, wait until they stream; writes `cluster.json`. `dir` exists.
    fn create(bindir: PathBuf, dir: PathBuf, as_postgres: bool, replicas: usize) -> Result<Pg> {
        let mut pg = Pg::stub(bindir, dir, as_postgres);
        let primary = pg.dir.join("primary");
        run(pg.server_cmd("initdb").arg("-D").arg(&primary).args([
            "--locale=C.UTF-8",
            "-E",
            "UTF8",
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))?;
        // dynamic_shared_memory_type = mmap keeps those segments in the data
        // dir: `stop -m immediate` would leave posix ones behind in /dev/shm.
        let conf = format!(
            "\n# pvc-testkit: a throwaway test cluster\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
             hot_standby = on\nhot_standby_feedback = on\nmax_connections = 200\n\
             dynamic_shared_memory_type = mmap\n\
             include_if_exists = 'port.conf'\n",
            pg.dir.display()
        );
        append(&primary.join("postgresql.conf"), &conf)?;
        pg.primary_port = pg.start_server(&primary)?;
        pg.psql(
            Server::Primary,
            "postgres",
            &format!("CREATE TABLE {FLUSH_TABLE} ()"),
        )?;
        for i in 0..replicas {
            let replica = pg.dir.join(replica_dir_name(i));
            // A slot each: the primary keeps the WAL a stopped replica still needs.
            let slot = match i {
                0 => "pvc_replica".to_owned(),
                i => format!("pvc_replica_{i}"),
            };
            run(pg
                .server_cmd("pg_basebackup")
                .arg("-D")
                .arg(&replica)
                .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(pg.primary_port.to_string())
                .args(["-R", "-X", "stream", "-C", "-S"])
                .arg(&slot)
                .args(["-c", "fast", "--no-sync"]))?;
            let port = pg.start_server(&replica)?;
            pg.replica_ports.push(port);
            pg.apply_delays.lock().expect("delays").push(Duration::ZERO);
        }
        pg.wait_caught_up(true, Delayed::Skip)?;
        let state = State {
            bindir: pg.bindir.clone(),
            primary_port: pg.primary_port,
            replica_port: pg.replica_ports[0],
            replica_ports: pg.replica_ports.clone(),
        };
        fs::write(
            pg.dir.join(STATE_FILE),
            serde_json::to_string_pretty(&state)?,
        )?;
        Ok(pg)
    }

    /// `pg_ctl start` on a free port; retries with another port if it was
    /// taken between picking and binding. Returns the port.
    fn start_server(&self, data: &Path) -> Result<u16> {
        let name = data
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let log = self.dir.join(format!("{name}.log"));
        for attempt in 1.. {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            fs::write(data.join("port.conf"), format!("port = {port}\n"))?;
            let _ = fs::remove_file(&log);
            let started = run(self
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]));
            let Err(e) = started else { return Ok(port) };
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            if attempt < 5 && log_text.contains("could not bind") {
                continue;
            }
            return Err(e.context(format!(
                "the {name} server did not start; {}:\n{log_text}",
                log.display()
            )));
        }
        unreachable!()
    }

    fn stop_server(&self, data: &Path) -> Result<()> {
        if data.join("postmaster.pid").exists() {
            run(self.server_cmd("pg_ctl").arg("-D").arg(data).args([
                "stop",
                "-m",
                "immediate",
                "-w",
            ]))?;
        }
        Ok(())
    }

    /// A server program (initdb, pg_ctl, pg_basebackup) run as user postgres.
    fn server_cmd(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Panics for a replica the cluster does not have.
    fn port(&self, server: Server) -> u16 {
        match server {
            Server::Primary => self.primary_port,
            Server::Replica => self.replica_ports[0],
            Server::ReplicaAt(i) => *self.replica_ports.get(i).unwrap_or_else(|| {
                panic!(
                    "no replica {i}: the cluster has {} (Cluster::start_with_replicas)",
                    self.replica_ports.len()
                )
            }),
        }
    }

    fn apply_delay(&self, i: usize) -> Duration {
        self.apply_delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
            .copied()
            .unwrap_or_default()
    }

    fn set_apply_delay(&self, i: usize, delay: Duration) -> Result<()> {
        let server = Server::ReplicaAt(i);
        let millis = delay.as_millis();
        // Separate statements: ALTER SYSTEM refuses to run in a transaction
        // block, which several statements in one `psql -c` are.
        let (alter, shown) = if millis == 0 {
            (
                "ALTER SYSTEM RESET recovery_min_apply_delay".to_owned(),
                "0".to_owned(),
            )
        } else {
            (
                format!("ALTER SYSTEM SET recovery_min_apply_delay = '{millis}ms'"),
                millis.to_string(),
            )
        };
        self.psql(server, "postgres", &alter)?;
        self.psql(server, "postgres", "SELECT pg_reload_conf()")?;
        // The postmaster reloads asynchronously; a new session sees the
        // value once it has, by which time it has signalled the startup
        // process (which applies the delay) too.
        let show = "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'";
        let deadline = Instant::now() + REPLICA_TIMEOUT;
        loop {
            let now = self.psql(server, "postgres", show)?;
            if now == shown {
                break;
            }
            if Instant::now() > deadline {
                bail!("replica {i} still has recovery_min_apply_delay = {now} ms, not {shown}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.apply_delays.lock().unwrap_or_else(|e| e.into_inner())[i] = delay;
        Ok(())
    }

    fn url(&self, server: Server, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port(server))
    }

    fn psql_cmd(&self, server: Server, db: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args([
            "-X",
            "-w",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
        ])
        .arg(self.port(server).to_string())
        .arg("-d")
        .arg(db);
        cmd
    }

    fn psql(&self, server: Server, db: &str, sql: &str) -> Result<String> {
        run(self.psql_cmd(server, db).args(["-A", "-t", "-c", sql]))
    }

    fn psql_file(&self, db: &str, sql: &Path) -> Result<()> {
        let mut psql = self.psql_cmd(Server::Primary, db);
        psql.args(["-f", "-"]).stdout(Stdio::null());
        let mut gzip = None;
        if sql == Path::new("-") {
            psql.stdin(Stdio::inherit());
        } else if sql.extension().is_some_and(|e| e == "gz") {
            let mut child = Command::new("gzip")
                .arg("-dc")
                .arg(sql)
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot run gzip -dc {}", sql.display()))?;
            psql.stdin(child.stdout.take().expect("piped"));
            gzip = Some(child);
        } else {
            psql.stdin(
                fs::File::open(sql).with_context(|| format!("cannot open {}", sql.display()))?,
            );
        }
        let loaded =
            run(&mut psql).with_context(|| format!("loading {} into database {db}", sql.display()));
        if let Some(mut gzip) = gzip {
            let status = gzip.wait()?;
            if !status.success() {
                bail!("gzip -dc {} failed ({status})", sql.display());
            }
        }
        loaded.map(drop)
    }

    /// Loads the Foreman dump into `foreman_template` once per cluster.
    fn ensure_template(&self) -> Result<()> {
        let loaded = self
            .template
            .get_or_init(|| self.load_template().map_err(|e| format!("{e:#}")));
        loaded.clone().map_err(|e| anyhow!(e))
    }

    fn load_template(&self) -> Result<()> {
        let ready =
            format!("SELECT datistemplate FROM pg_database WHERE datname = '{FOREMAN_TEMPLATE}'");
        match self.psql(Server::Primary, "postgres", &ready)?.as_str() {
            "t" => return Ok(()), // a detached cluster that already has it
            "f" => {
                // left half-loaded by an interrupted run
                let drop_sql = format!("DROP DATABASE {FOREMAN_TEMPLATE} WITH (FORCE)");
                self.psql(Server::Primary, "postgres", &drop_sql)?;
            }
            _ => {}
        }
        self.psql(
            Server::Primary,
            "postgres",
            &create_db_sql(FOREMAN_TEMPLATE, false),
        )?;
        self.psql_file(FOREMAN_TEMPLATE, &foreman_fixture())?;
        // Frozen and analysed once here; every clone inherits hint bits and statistics.
        self.psql(
            Server::Primary,
            FOREMAN_TEMPLATE,
            "VACUUM (FREEZE, ANALYZE)",
        )?;
        // No connections: a stray session would make CREATE DATABASE .. TEMPLATE fail.
        let seal = format!(
            "ALTER DATABASE {FOREMAN_TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        );
        self.psql(Server::Primary, "postgres", &seal)?;
        Ok(())
    }

    /// Creates `t_<hint>_<n>` (the next free n) and waits until the replica
    /// has replayed it and accepts connections to it.
    fn create_test_db(&self, hint: &str, foreman: bool) -> Result<String> {
        if foreman {
            self.ensure_template()?;
        }
        let name = loop {
            let name = format!("t_{hint}_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
            match self.psql(Server::Primary, "postgres", &create_db_sql(&name, foreman)) {
                Ok(_) => break name,
                // a detached cluster shared by several processes
                Err(e) if format!("{e:#}").contains("already exists") => continue,
                Err(e) => return Err(e),
            }
        };
        // Delayed replicas too: the database must exist on every replica.
        self.wait_caught_up(false, Delayed::Wait)?;
        for i in 0..self.replica_ports.len() {
            self.psql(Server::ReplicaAt(i), &name, "SELECT 1")
                .with_context(|| format!("database {name} is not usable on replica {i}"))?;
        }
        Ok(name)
    }

    /// Waits until the replicas chosen by `delayed` have replayed all WAL the
    /// primary had at call time.
    fn wait_caught_up(&self, require_streaming: bool, delayed: Delayed) -> Result<()> {
        // With synchronous_commit = off, recent commits may still sit in the
        // primary's WAL buffers, which the walsender does not send. A write
        // committed with synchronous_commit = on flushes everything before it,
        // and its commit record lies after the insert position read here.
        let flush = format!("SET synchronous_commit = on; INSERT INTO {FLUSH_TABLE} DEFAULT VALUES; SELECT pg_current_wal_insert_lsn()");
        let answer = self.psql(Server::Primary, "postgres", &flush)?;
        let target =
            parse_lsn(&answer).with_context(|| format!("bad LSN {answer:?} from the primary"))?;
        let probe = "SELECT pg_last_wal_replay_lsn(), coalesce((SELECT status FROM pg_stat_wal_receiver), 'no wal receiver')";
        let start = Instant::now();
        for i in 0..self.replica_ports.len() {
            let delay = self.apply_delay(i);
            let wanted = match delayed {
                Delayed::Skip => delay.is_zero(),
                Delayed::Wait => true,
                Delayed::Only(only) => i == only,
            };
            if !wanted {
                continue;
            }
            let timeout = REPLICA_TIMEOUT + delay;
            loop {
                let last = self.psql(Server::ReplicaAt(i), "postgres", probe);
                if let Ok(row) = &last {
                    let (lsn, status) = row.split_once('|').unwrap_or((row, ""));
                    if parse_lsn(lsn).is_some_and(|lsn| lsn >= target)
                        && (!require_streaming || status == "streaming")
                    {
                        break;
                    }
                }
                if start.elapsed() > timeout {
                    let log = self.dir.join(format!("{}.log", replica_dir_name(i)));
                    bail!(
                        "replica {i} (port {}) did not replay up to the primary's LSN {answer} within {timeout:?}; \
                         last probe (replay LSN|receiver status): {last:?}\n{}:\n{}",
                        self.replica_ports[i],
                        log.display(),
                        tail(&fs::read_to_string(&log).unwrap_or_default(), 40)
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

/// Which replicas a wait for the primary's WAL position covers.
#[derive(Debug, Clone, Copy)]
enum Delayed {
    /// Every replica without an apply delay.
    Skip,
    /// Every replica, waiting out the apply delays.
    Wait,
    /// Replica i only.
    Only(usize),
}

/// The data directory of replica `i` in the cluster directory: `replica`
/// (as before there could be more), then `replica1`, `replica2`, …
fn replica_dir_name(i: usize) -> String {
    match i {
        0 => "replica".to_owned(),
        i => format!("replica{i}"),
    }
}

/// The data directories in `dir`, replicas first (stopped before the primary).
fn data_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut replicas: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("replica") && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    replicas.sort();
    replicas.push(dir.join("primary"));
    replicas
}

/// The `sh` that tears the cluster down once the pipe on its stdin closes.
#[derive(Debug)]
struct Watchdog(Child);

impl Watchdog {
    fn spawn(bindir: &Path, dir: &Path, as_postgres: bool) -> Result<Watchdog> {
        const SCRIPT: &str = r#"pg_ctl=$1; dir=$2; shift 2
trap '' INT HUP
read _ || true
for d in "$dir"/replica* "$dir/primary"; do
  if [ -f "$d/postmaster.pid" ]; then "$@" "$pg_ctl" -D "$d" stop -m immediate -w >/dev/null 2>&1; fi
done
rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", SCRIPT, "pvc-pg-watchdog"])
            .arg(bindir.join("pg_ctl"))
            .arg(dir);
        if as_postgres {
            cmd.args(["runuser", "-u", "postgres", "--"]);
        }
        // Own process group: a Ctrl-C aimed at `cargo test` must not kill it.
        let child = cmd
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot spawn the cluster watchdog (sh)")?;
        Ok(Watchdog(child))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // EOF: the watchdog stops the servers
        let _ = self.0.wait();
    }
}

/// Stops the servers in `dir` (`pg_ctl stop -m immediate`) and removes it;
/// works without `cluster.json`, e.g. after a failed `pvc-pg up`. Refuses a
/// directory that does not look like a cluster directory.
pub fn down_dir(dir: &Path) -> Result<()> {
    if !dir.join(STATE_FILE).exists() && !dir.join("primary").exists() {
        bail!(
            "{} holds no pvc-pg cluster (no {STATE_FILE}, no primary/)",
            dir.display()
        );
    }
    let pg = Pg::stub(find_bindir()?, dir.to_owned(), is_root()?);
    for data in data_dirs(dir) {
        pg.stop_server(&data)?;
    }
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Stops the servers of earlier runs whose process is gone and removes their directories.
fn sweep(root: &Path, bindir: &Path, as_postgres: bool) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        else {
            continue; // not ours, or kept on purpose (pvc-pg-kept-*)
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let pg = Pg::stub(bindir.to_owned(), entry.path(), as_postgres);
        for data in data_dirs(&pg.dir) {
            let _ = pg.stop_server(&data);
        }
        let _ = fs::remove_dir_all(&pg.dir);
    }
}

/// PostgreSQL's bin directory: `$PVC_PG_BINDIR`, `/usr/lib/postgresql/15/bin`,
/// `pg_config --bindir`, then `PATH`.
fn find_bindir() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PVC_PG_BINDIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push("/usr/lib/postgresql/15/bin".into());
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    candidates.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    candidates
        .into_iter()
        .find(|d| {
            ["initdb", "pg_ctl", "pg_basebackup", "psql"]
                .iter()
                .all(|p| d.join(p).is_file())
        })
        .ok_or_else(|| {
            anyhow!(
                "PostgreSQL 15 server binaries (initdb, pg_ctl, pg_basebackup, psql) not found in \
                 /usr/lib/postgresql/15/bin, `pg_config --bindir` or PATH: install them with \
                 `apt-get install postgresql-15` (or set PVC_PG_BINDIR)"
            )
        })
}

fn is_root() -> Result<bool> {
    Ok(fs::metadata("/proc/self")
        .context("cannot stat /proc/self")?
        .uid()
        == 0)
}

/// Creates `dir`; as root, hands it to user postgres and checks that postgres can reach it.
fn make_dir(dir: &Path, as_postgres: bool) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !as_postgres {
        return Ok(());
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == "postgres")
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    });
    let Some((uid, gid)) = ids else {
        bail!("no user postgres; install PostgreSQL with `apt-get install postgresql-15`, which creates it");
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .with_context(|| format!("cannot chown {} to postgres", dir.display()))?;
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(dir)
        .status();
    if !reachable.is_ok_and(|s| s.success()) {
        bail!(
            "user postgres cannot write to {} (is a parent directory closed to it?); use a directory under /tmp or /dev/shm",
            dir.display()
        );
    }
    Ok(())
}

/// Runs `cmd` to completion; stdout (trimmed) on success, an error naming the
/// command with its output otherwise.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let output = [tail(&stdout, 20), tail(stderr.trim(), 40)].join("\n");
        bail!("{cmd:?} failed ({}):\n{}", out.status, output.trim());
    }
    Ok(stdout)
}

async fn blocking<T: Send + 'static>(
    pg: &Arc<Pg>,
    f: impl FnOnce(&Pg) -> Result<T> + Send + 'static,
) -> Result<T> {
    let pg = pg.clone();
    tokio::task::spawn_blocking(move || f(&pg))
        .await
        .context("pvc-testkit blocking task failed")?
}

fn create_db_sql(name: &str, foreman: bool) -> String {
    if foreman {
        format!(
            "CREATE DATABASE {} TEMPLATE {FOREMAN_TEMPLATE} STRATEGY = FILE_COPY",
            ident(name)
        )
    } else {
        format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
            ident(name)
        )
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Lower-case ASCII letters, digits and `_`, at most 40 characters.
fn sanitize(hint: &str) -> String {
    let s: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "db".into()
    } else {
        s
    }
}

/// `16/B374D848` → 0x16_B374D848.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lsns() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x3000148));
        assert_eq!(parse_lsn("16/B374D848\n"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn(""), None);
    }

    #[test]
    fn finds_every_replica_dir_before_the_primary() {
        assert_eq!(replica_dir_name(0), "replica");
        assert_eq!(replica_dir_name(2), "replica2");
        let dir = std::env::temp_dir().join(format!("pvc-testkit-dirs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for name in ["replica", "replica1", "primary"] {
            fs::create_dir_all(dir.join(name)).unwrap();
        }
        fs::write(dir.join("replica.log"), "").unwrap();
        let names: Vec<String> = data_dirs(&dir)
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["replica", "replica1", "primary"]);
    }

    #[test]
    fn reads_state_files_from_before_several_replicas() {
        let state: State =
            serde_json::from_str(r#"{"bindir": "/b", "primary_port": 5, "replica_port": 6}"#)
                .unwrap();
        assert_eq!(state.replica_port, 6);
        assert!(state.replica_ports.is_empty());
    }

    #[test]
    fn sanitizes_hints() {
        assert_eq!(sanitize("bridge::enc::Works-OK"), "bridge__enc__works_ok");
        assert_eq!(sanitize(""), "db");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 40);
    }
}
