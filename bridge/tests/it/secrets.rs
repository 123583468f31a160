//! Secrets never reach the logs, `/metrics` or an answer: the real
//! `pvc-bridge` binary runs with every secret it takes set to a distinctive
//! canary (the admin and server tokens from their files, the database
//! password in the primary's and replicas' URLs, the Foreman password),
//! logging at debug level, while requests make it log refusals, errors and
//! a failing forward to Foreman; then no canary may appear in its stderr,
//! in `/metrics` or in any response body. A configuration error that
//! prints a database URL must print it without its password.

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use crate::foreman_standin::{Mode, StandIn};
use crate::support;

const ADMIN_TOKEN: &str = "canary-admin-token-7d1f0c8e2b";
const SERVER_TOKEN: &str = "canary-server-token-4a9e2f61c3";
const DB_PASSWORD: &str = "canary-db-password-51c7e0";
const FOREMAN_USER: &str = "pvc-forwarder";
const FOREMAN_PASSWORD: &str = "canary-foreman-password-9b3d";

/// Every form a secret could leak in: as configured, and as an HTTP Basic
/// credential.
fn canaries() -> Vec<String> {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{FOREMAN_USER}:{FOREMAN_PASSWORD}"));
    vec![
        ADMIN_TOKEN.into(),
        SERVER_TOKEN.into(),
        DB_PASSWORD.into(),
        FOREMAN_PASSWORD.into(),
        basic,
        // The common stem catches a secret cut or reformatted.
        "canary-".into(),
    ]
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in canaries() {
        assert!(
            !text.contains(&canary),
            "{what} holds the secret {canary:?}:\n{text}"
        );
    }
}

/// `url` with `DB_PASSWORD` as its password (the test cluster trusts local
/// connections, so the password is carried, not checked).
fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (user, host) = rest.split_once('@').expect("a user in the URL");
    assert!(!user.contains(':'), "the test URL has no password yet");
    format!("{scheme}://{user}:{DB_PASSWORD}@{host}")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The running binary; its stderr collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    fn start(env: &[(&str, String)], args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pvc-bridge"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("RUST_LOG", "debug")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pvc-bridge runs");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("log buffer")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Running { child, stderr }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("log buffer")).into_owned()
    }

    /// Stops the process (this test's own child) and returns its stderr
    /// and stdout.
    fn stop(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        // The reader thread ends at EOF; give it the last bytes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.stderr) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        (self.log(), stdout)
    }
}

/// Waits (at most `limit`) until the log holds `needle`.
async fn wait_for_log(running: &Running, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if running.log().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_metrics_or_answers() {
    let db = support::migrated_db("secrets").await;
    let standin = StandIn::start().await;
    standin.set_mode(Mode::Fail(500));
    let dir = std::env::temp_dir().join(format!("pvc-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let admin_file = dir.join("admin.token");
    let server_file = dir.join("server.token");
    std::fs::write(&admin_file, format!("{ADMIN_TOKEN}\n")).expect("admin token");
    std::fs::write(&server_file, format!("{SERVER_TOKEN}\n")).expect("server token");
    // A replica that is down: its failures are logged, naming it.
    let dead_port = free_port();
    let dead_replica = with_password(&format!("postgres://postgres@127.0.0.1:{dead_port}/x"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("PVC_LISTEN", format!("127.0.0.1:{port}")),
        ("PVC_PLAIN_HTTP", "true".into()),
        ("PVC_DATABASE__PRIMARY", with_password(&db.primary_url)),
        (
            "PVC_DATABASE__REPLICAS",
            format!("{},{dead_replica}", with_password(&db.replica_url)),
        ),
        ("PVC_DATABASE__POOL_SIZE", "4".into()),
        (
            "PVC_ACCESS__ADMIN_TOKEN_FILE",
            admin_file.display().to_string(),
        ),
        (
            "PVC_ACCESS__SERVER_TOKEN_FILE",
            server_file.display().to_string(),
        ),
        ("PVC_FOREMAN__URL", standin.url.clone()),
        ("PVC_FOREMAN__USERNAME", FOREMAN_USER.into()),
        ("PVC_FOREMAN__PASSWORD", FOREMAN_PASSWORD.into()),
        ("PVC_WORKERS", "1".into()),
    ];
    let running = Running::start(&env, &["serve"]);

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = http.get(format!("{base}/healthz")).send().await;
        if matches!(&up, Ok(r) if r.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not come up:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let host = support::golden_hosts().into_iter().next().expect("a host");
    let facts = json!({
        "name": host,
        "certname": host,
        "facts": {"fqdn": host, "hostname": "x", "_timestamp": "2026-11-27 06:00:00 +0000"},
    });
    // (method, path, bearer, body): refusals (none, wrong, the other
    // credential), errors, and requests that succeed with each credential.
    let wrong = "not-the-token-0000000000";
    let requests: Vec<(&str, String, Option<&str>, Option<String>)> = vec![
        ("GET", format!("/admin/explain/{host}"), None, None),
        ("GET", format!("/admin/explain/{host}"), Some(wrong), None),
        (
            "GET",
            format!("/admin/explain/{host}"),
            Some(SERVER_TOKEN),
            None,
        ),
        (
            "GET",
            format!("/admin/explain/{host}"),
            Some(ADMIN_TOKEN),
            None,
        ),
        (
            "GET",
            "/admin/explain/no..such".into(),
            Some(ADMIN_TOKEN),
            None,
        ),
        ("POST", "/admin/cache/invalidate".into(), Some(wrong), None),
        ("GET", format!("/node/{host}"), None, None),
        ("GET", format!("/node/{host}"), Some(ADMIN_TOKEN), None),
        ("GET", format!("/node/{host}"), Some(SERVER_TOKEN), None),
        (
            "GET",
            "/node/nosuchhost.example.com".into(),
            Some(SERVER_TOKEN),
            None,
        ),
        ("GET", "/node/bad%20name".into(), Some(SERVER_TOKEN), None),
        ("GET", format!("/host/{host}"), Some(ADMIN_TOKEN), None),
        ("GET", "/host/nosuchhost.example.com".into(), None, None),
        (
            "POST",
            "/api/v2/hosts/facts".into(),
            None,
            Some(facts.to_string()),
        ),
        (
            "POST",
            "/api/v2/hosts/facts".into(),
            Some(SERVER_TOKEN),
            Some(facts.to_string()),
        ),
        (
            "POST",
            "/api/v2/hosts/facts".into(),
            Some(SERVER_TOKEN),
            Some("{not json".into()),
        ),
        (
            "POST",
            format!("/facts/{host}"),
            None,
            Some("{not json".into()),
        ),
        (
            "POST",
            format!("/report/{host}"),
            None,
            Some("\u{1}garbage".into()),
        ),
        ("GET", "/metrics".into(), Some(ADMIN_TOKEN), None),
    ];
    let mut statuses = Vec::new();
    for (method, path, bearer, body) in &requests {
        let url = format!("{base}{path}");
        let mut request = match *method {
            "GET" => http.get(&url),
            _ => http.post(&url).header("content-type", "application/json"),
        };
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.clone());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = format!("{:?}", response.headers());
        let text = response.text().await.expect("body");
        assert_no_canary(&format!("{method} {path} ({status}) headers"), &headers);
        assert_no_canary(&format!("{method} {path} ({status}) body"), &text);
        statuses.push(status);
    }
    // The requests did what they are for: refusals, errors and successes.
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(statuses.contains(&403), "{statuses:?}");
    assert!(statuses.contains(&400), "{statuses:?}");
    assert!(
        statuses.iter().any(|s| (200..300).contains(s)),
        "{statuses:?}"
    );

    // Foreman was asked (and failed), the dead replica was tried, and the
    // refusals were logged.
    assert!(
        wait_for_log(&running, "forward failed", Duration::from_secs(60)).await,
        "no failed forward to Foreman logged:\n{}",
        running.log()
    );
    // The password was in use: Foreman got it, as Basic credentials.
    let basic = format!("Basic {}", canaries()[4]);
    assert!(
        standin
            .requests()
            .iter()
            .any(|r| r.path.contains("facts") && r.headers.get("authorization") == Some(&basic)),
        "the facts never reached Foreman with the credentials"
    );
    assert!(
        wait_for_log(
            &running,
            &format!("127.0.0.1:{dead_port}"),
            Duration::from_secs(30)
        )
        .await,
        "the dead replica never appears in the log:\n{}",
        running.log()
    );
    assert!(
        wait_for_log(&running, "/admin/explain/", Duration::from_secs(10)).await,
        "no refusal logged:\n{}",
        running.log()
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.expect("metrics body");
    assert!(metrics.contains("pvc_"), "{metrics}");
    assert_no_canary("/metrics", &metrics);

    let (log, stdout) = running.stop();
    assert!(log.contains("DEBUG"), "debug logging was on:\n{log}");
    assert_no_canary("the log", &log);
    assert_no_canary("stdout", &stdout);

    // Configuration errors name a database URL without its password.
    for bad in [
        format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:notaport/db"),
        format!("host=127.0.0.1 port=notaport user=postgres password={DB_PASSWORD}"),
    ] {
        let mut checked = Running::start(
            &[
                ("PVC_PLAIN_HTTP", "true".into()),
                ("PVC_DATABASE__PRIMARY", bad.clone()),
            ],
            &["check-config"],
        );
        let exit = checked.child.wait().expect("check-config exits");
        let (log, _) = checked.stop();
        assert_eq!(exit.code(), Some(64), "{log}");
        assert!(
            log.contains("database.primary") && log.contains("***"),
            "{log}"
        );
        assert_no_canary("check-config's error", &log);
    }
    std::fs::remove_dir_all(&dir).expect("remove dir");
}
