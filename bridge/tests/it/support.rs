//! A bridge started on a free port against a fresh copy of the Foreman
//! fixture: reads go to the replica, writes to the primary.

use std::net::TcpListener;
use std::path::PathBuf;

use pvc_bridge::config::{self, Config};
use pvc_bridge::Bridge;
use pvc_testkit::cluster::{self, TestDb};

/// The golden corpus: the ENC real Foreman served for each fixture host.
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/foreman")
}

pub fn golden_hosts() -> Vec<String> {
    std::fs::read_to_string(golden_dir().join("hosts.txt"))
        .expect("hosts.txt")
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn golden_enc(host: &str) -> String {
    std::fs::read_to_string(golden_dir().join("enc").join(format!("{host}.yml")))
        .expect("golden file")
}

/// Configuration for a bridge on `db`, plus extra `PVC_*` variables.
pub fn config_for(db: &TestDb, extra: &[(&str, &str)]) -> Config {
    let mut env = vec![
        ("PVC_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("PVC_DATABASE__PRIMARY".to_owned(), db.primary_url.clone()),
        ("PVC_DATABASE__REPLICAS".to_owned(), db.replica_url.clone()),
        ("PVC_DATABASE__POOL_SIZE".to_owned(), "4".to_owned()),
        // The golden Foreman ran with SETTINGS[:fqdn] = localhost.localdomain.net.
        (
            "PVC_ENC__FOREMAN_URL".to_owned(),
            "https://localhost.localdomain.net".to_owned(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    config::load_from(None, env).expect("test configuration")
}

/// The admin token [`TestBridge::start`] gives a bridge that has no admin
/// credential configured; the `admin_*` requests send it.
pub const ADMIN_TOKEN: &str = "test-admin-token-5f0c9a1e7b3d4c2a";

/// A running bridge.
/// [`config_for`] with every database unreachable (a dead port, 1 s
/// connect timeout): the outage case.
pub fn config_without_database(db: &TestDb) -> Config {
    config_for(
        db,
        &[
            (
                "PVC_DATABASE__PRIMARY",
                "postgres://postgres@127.0.0.1:1/nowhere",
            ),
            (
                "PVC_DATABASE__REPLICAS",
                "postgres://postgres@127.0.0.1:1/nowhere",
            ),
            ("PVC_DATABASE__CONNECT_TIMEOUT_SECS", "1"),
        ],
    )
}

pub struct TestBridge {
    pub base: String,
    pub bridge: Bridge,
    pub http: reqwest::Client,
    server: actix_web::dev::ServerHandle,
}

impl TestBridge {
    /// Serves `config`; without any admin credential in it, the admin API
    /// takes [`ADMIN_TOKEN`].
    pub async fn start(mut config: Config) -> TestBridge {
        if !config.access.admin_configured() {
            config.access.admin_token = Some(pvc_bridge::access::Token::new(ADMIN_TOKEN));
        }
        let bridge = Bridge::new(&config).expect("bridge");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = pvc_bridge::serve(&bridge, listener, 1).expect("serve");
        let handle = server.handle();
        tokio::spawn(server);
        TestBridge {
            base,
            bridge,
            http: reqwest::Client::new(),
            server: handle,
        }
    }

    /// Starts the run service's loops and loads the host directory, as
    /// `serve` does before answering `/host`.
    pub async fn start_runs(&self) {
        self.bridge.runs.start().expect("run service");
        self.bridge
            .runs
            .refresh_directory()
            .await
            .expect("host directory");
    }

    pub async fn get(&self, path: &str) -> (u16, String, String) {
        let request = self.http.get(format!("{}{path}", self.base));
        unpack(request.send().await.expect("request")).await
    }

    /// `GET path` of the admin API, with [`ADMIN_TOKEN`].
    pub async fn admin_get(&self, path: &str) -> (u16, String, String) {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        unpack(request.send().await.expect("request")).await
    }

    /// `POST path` of the admin API (empty body), with [`ADMIN_TOKEN`].
    pub async fn admin_post(&self, path: &str) -> (u16, String, String) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        unpack(request.send().await.expect("request")).await
    }

    /// `POST path` with `body` and `content_type` (as Foreman's API clients
    /// send, `Accept: application/json,version=2`).
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String, String) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .header("accept", "application/json,version=2")
            .body(body);
        unpack(request.send().await.expect("request")).await
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Status, content type and body of an answer.
async fn unpack(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

/// A fresh Foreman database with the bridge's own schema migrated, replayed
/// by the replica.
pub async fn migrated_db(hint: &str) -> TestDb {
    let db = foreman_db(hint).await;
    migrate(cluster::shared(), &db).await;
    db
}

/// A cluster of the test's own (its servers may be stopped and started)
/// with a fresh Foreman database, migrated when `migrated`.
pub async fn private_cluster(hint: &str, migrated: bool) -> (cluster::Cluster, TestDb) {
    private_cluster_with_replicas(hint, migrated, 1).await
}

/// [`private_cluster`] with `replicas` streaming replicas (at least 1);
/// `TestDb::replica_urls` lists the database on each.
pub async fn private_cluster_with_replicas(
    hint: &str,
    migrated: bool,
    replicas: usize,
) -> (cluster::Cluster, TestDb) {
    let cluster =
        tokio::task::spawn_blocking(move || cluster::Cluster::start_with_replicas(replicas))
            .await
            .expect("cluster task")
            .expect("a private PostgreSQL cluster");
    let db = cluster.foreman_db(hint).await.expect("foreman database");
    if migrated {
        migrate(&cluster, &db).await;
    }
    (cluster, db)
}

/// Migrates the pvc schema on `db` (of `cluster`), replayed by its replica.
/// The migration needs no pool: one connection to the primary.
pub async fn migrate(cluster: &cluster::Cluster, db: &TestDb) {
    let client = pvc_testkit::cluster::connect(&db.primary_url)
        .await
        .expect("primary");
    pvc_bridge::store::pvc::migrate(&client)
        .await
        .expect("migrate");
    cluster.wait_replica_caught_up().await.expect("replica");
}

/// A fresh Foreman database for one test.
pub async fn foreman_db(hint: &str) -> TestDb {
    cluster::shared()
        .foreman_db(hint)
        .await
        .expect("foreman test database")
}

/// Runs `sql` on the primary (as Foreman would write) and waits until the
/// replica has replayed it.
pub async fn write_and_replicate(db: &TestDb, sql: &str) {
    let primary = cluster::connect(&db.primary_url).await.expect("primary");
    primary
        .batch_execute(sql)
        .await
        .expect("write on the primary");
    cluster::shared()
        .wait_replica_caught_up()
        .await
        .expect("replica caught up");
}

/// `eval`s `script` in a real `shell` (sh, dash, bash, …), then reads back
/// each variable in `keys`: its value byte for byte (printf %s passes every
/// byte but NUL through), in order. The shell must succeed and say nothing
/// on stderr.
pub fn eval_in(shell: &str, script: &str, keys: &[impl AsRef<str>]) -> Vec<Vec<u8>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let mut printer = String::from("eval \"$(cat)\" || exit 99; ");
    for key in keys {
        printer.push_str(&format!("printf '%s\\000' \"${}\"; ", key.as_ref()));
    }
    let mut child = Command::new(shell)
        .arg("-c")
        .arg(printer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shell}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{shell} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{shell} complained: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut values: Vec<Vec<u8>> = output
        .stdout
        .split(|b| *b == 0)
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(values.pop(), Some(Vec::new()), "output ends with a NUL");
    values
}

/// A bridge serving HTTPS on a fresh copy of the Foreman fixture, with the
/// `[tls]` (and any other) settings in `env`.
pub struct HttpsBridge {
    pub base: String,
    _bridge: Bridge,
    server: actix_web::dev::ServerHandle,
}

impl HttpsBridge {
    pub async fn start(hint: &str, env: &[(&str, String)]) -> HttpsBridge {
        let db = foreman_db(hint).await;
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = config_for(&db, &extra);
        let settings = config.tls.as_ref().expect("[tls] configured");
        let bridge = Bridge::new(&config).expect("bridge");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let tls = pvc_bridge::tls::server_config(settings).expect("TLS configuration");
        let server = pvc_bridge::serve_tls(&bridge, listener, 1, tls).expect("serve");
        let handle = server.handle();
        tokio::spawn(server);
        HttpsBridge {
            base: format!("https://localhost:{port}"),
            _bridge: bridge,
            server: handle,
        }
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// A new client (no session to resume) trusting only `ca`, presenting
/// `identity` when given; answers carry the peer's certificate (`TlsInfo`).
pub fn https_client(
    ca: &pvc_testkit::certs::PuppetCa,
    identity: Option<&pvc_testkit::certs::Issued>,
) -> reqwest::Client {
    let bundle = std::fs::read(ca.ca_file()).expect("ca.pem");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true);
    for root in reqwest::Certificate::from_pem_bundle(&bundle).expect("CA bundle") {
        builder = builder.add_root_certificate(root);
    }
    if let Some(issued) = identity {
        let pem = issued.identity_pem().expect("certificate and key");
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

/// Runs the built `pvc-bridge` with `args` and only `env` as its
/// configuration (the test process's `PVC_*` variables removed): (exit
/// code, stdout, stderr).
pub async fn run_bridge_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pvc-bridge"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PVC_") {
            command.env_remove(key);
        }
    }
    command.args(args).envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("running pvc-bridge");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
