//! Who may ask what, end to end: over HTTPS with certificates from a
//! Puppet-like CA (a node may only act for itself, puppetservers read any
//! `/node`, the admin API needs the admin credential), and over plain HTTP
//! with the server token.

use std::net::TcpListener;
use std::path::Path;

use pvc_bridge::config::Config;
use pvc_bridge::Bridge;
use pvc_testkit::certs::PuppetCa;
use pvc_testkit::cluster::TestDb;

use crate::support::{self, golden_hosts, https_client as client};

const ADMIN_TOKEN: &str = "admin-4a7c0e93b1d25f68";
const SERVER_TOKEN: &str = "server-9b2e6d14c07a3f85";
const SERVER: &str = "puppet01.example.com";
const ADMIN: &str = "ops.example.com";

/// A bridge serving `config` exactly as configured (no test token added),
/// over TLS when `tls` is given.
struct Served {
    base: String,
    _bridge: Bridge,
    server: actix_web::dev::ServerHandle,
}

impl Served {
    async fn start(config: &Config) -> Served {
        let bridge = Bridge::new(config).expect("bridge");
        bridge.runs.start().expect("run service");
        bridge
            .runs
            .refresh_directory()
            .await
            .expect("host directory");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (server, base) = match &config.tls {
            Some(settings) => {
                let tls = pvc_bridge::tls::server_config(settings).expect("TLS configuration");
                (
                    pvc_bridge::serve_tls(&bridge, listener, 1, tls).expect("serve"),
                    format!("https://localhost:{port}"),
                )
            }
            None => (
                pvc_bridge::serve(&bridge, listener, 1).expect("serve"),
                format!("http://127.0.0.1:{port}"),
            ),
        };
        let handle = server.handle();
        tokio::spawn(server);
        Served {
            base,
            _bridge: bridge,
            server: handle,
        }
    }

    async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Status, `WWW-Authenticate` and body of an answer.
async fn send(request: reqwest::RequestBuilder) -> (u16, String, String) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    (status, challenge, response.text().await.expect("body"))
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

fn token_file(dir: &Path, name: &str, token: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    path(&file)
}

/// HTTPS with optional client certificates from `ca`, `SERVER` and `ADMIN`
/// allowlisted, the admin token set; the database lives as long as the
/// returned `TestDb`.
async fn https_bridge(hint: &str, ca: &PuppetCa) -> (TestDb, Served) {
    let db = support::migrated_db(hint).await;
    let server = ca
        .issue_server(&["localhost", "127.0.0.1"])
        .expect("server certificate");
    let admin_token = token_file(ca.dir(), "admin.token", ADMIN_TOKEN);
    let config = support::config_for(
        &db,
        &[
            ("PVC_TLS__CERT_FILE", &path(&server.cert)),
            ("PVC_TLS__KEY_FILE", &path(&server.key)),
            ("PVC_TLS__CLIENT_CA_FILE", &path(&ca.ca_file())),
            ("PVC_TLS__REQUIRE_CLIENT_CERT", "false"),
            ("PVC_ACCESS__SERVER_CERTNAMES", SERVER),
            ("PVC_ACCESS__ADMIN_CERTNAMES", ADMIN),
            ("PVC_ACCESS__ADMIN_TOKEN_FILE", &admin_token),
        ],
    );
    let served = Served::start(&config).await;
    (db, served)
}

/// The value of `key` in a shell-shaped `/host` answer.
fn value_of(answer: &str, key: &str) -> String {
    let prefix = format!("{key}='");
    answer
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{key} missing from {answer}"))
        .to_owned()
}

#[tokio::test]
async fn a_node_certificate_may_only_act_for_its_own_certname() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let (_db, bridge) = https_bridge("access_node", &ca).await;
    let hosts = golden_hosts();
    let (own, other) = (&hosts[0], &hosts[1]);
    let node = client(&ca, Some(&ca.issue_node(own).unwrap()));
    let base = &bridge.base;

    for url in [
        format!("{base}/host?fqdn={other}"),
        format!("{base}/host/{other}"),
    ] {
        let (status, _, body) = send(node.get(&url)).await;
        assert_eq!(status, 403, "{url}: {body}");
        // Agents evaluate the body: still the answer's shape, and no run.
        assert_eq!(value_of(&body, "PVC_RUN"), "0", "{body}");
        assert_ne!(value_of(&body, "PVC_RETURN"), "0", "{body}");
        assert!(
            body.contains(own.as_str()) && body.contains(other.as_str()),
            "{body}"
        );
    }
    // Asking for two hosts at once does not slip another one through.
    let (status, _, body) = send(node.get(format!("{base}/host?fqdn={own}&fqdn={other}"))).await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = send(node.get(format!("{base}/host?fqdn={own}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(value_of(&body, "PVC_RETURN"), "0", "{body}");
    let (status, _, body) = send(node.get(format!("{base}/host/{own}"))).await;
    assert_eq!(status, 200, "{body}");

    let facts = r#"{"os": {"family": "Debian"}}"#;
    let post_facts = |url: String| {
        node.post(url)
            .header("content-type", "application/json")
            .body(facts)
    };
    let (status, _, body) = send(post_facts(format!("{base}/facts/{other}"))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = send(post_facts(format!("{base}/facts?fqdn={other}"))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = send(post_facts(format!("{base}/facts/{own}"))).await;
    assert_eq!(status, 200, "{body}");

    let report = |name: &str| {
        node.post(format!("{base}/report/{name}"))
            .json(&serde_json::json!({"exit_code": 0}))
    };
    let (status, _, body) = send(report(other)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = send(report(own)).await;
    assert_eq!(status, 200, "{body}");

    // Without a certificate (allowed by the handshake here) nobody is a node.
    let anonymous = client(&ca, None);
    let (status, challenge, body) = send(anonymous.get(format!("{base}/host?fqdn={own}"))).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    assert_eq!(value_of(&body, "PVC_RUN"), "0", "{body}");

    // Every refusal above is counted, by route class and status.
    let metrics = metrics_of(&anonymous, base).await;
    for (status, expected) in [(403, 5), (400, 1), (401, 1)] {
        assert_eq!(
            refused(&metrics, "node", status),
            expected,
            "node refusals with {status}"
        );
    }
    assert_eq!(refused(&metrics, "admin", 401), 0);
    bridge.stop().await;
}

async fn metrics_of(http: &reqwest::Client, base: &str) -> String {
    let (status, _, body) = send(http.get(format!("{base}/metrics"))).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `pvc_bridge_access_refused_total` for one route class and status.
fn refused(metrics: &str, route: &str, status: u16) -> u64 {
    let series =
        format!("pvc_bridge_access_refused_total{{route=\"{route}\",status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
        .parse()
        .expect("a count")
}

#[tokio::test]
async fn only_puppetserver_certificates_read_node_and_upload() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let (_db, bridge) = https_bridge("access_server", &ca).await;
    let hosts = golden_hosts();
    let base = &bridge.base;
    let server = client(&ca, Some(&ca.issue_node(SERVER).unwrap()));
    let node = client(&ca, Some(&ca.issue_node(&hosts[0]).unwrap()));
    let anonymous = client(&ca, None);

    for host in &hosts[..3] {
        let (status, _, body) = send(server.get(format!("{base}/node/{host}?format=yml"))).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert_eq!(body, support::golden_enc(host));
    }
    // Not even its own ENC: that is the puppetserver's to ask.
    let (status, _, body) = send(node.get(format!("{base}/node/{}?format=yml", hosts[0]))).await;
    assert_eq!(status, 403, "{body}");
    let (status, challenge, body) =
        send(anonymous.get(format!("{base}/node/{}?format=yml", hosts[0]))).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");

    let upload =
        serde_json::json!({"facts": {"_type": "puppet", "os": "Debian"}, "name": hosts[0]});
    let (status, _, body) = send(
        node.post(format!("{base}/api/v2/hosts/facts"))
            .json(&upload),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = send(node.post(format!("{base}/ppm")).body("{}")).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = send(
        server
            .post(format!("{base}/api/v2/hosts/facts"))
            .json(&upload),
    )
    .await;
    assert_ne!(status, 403, "{body}");
    assert_ne!(status, 401, "{body}");
    bridge.stop().await;
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token_or_an_admin_certificate() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let (_db, bridge) = https_bridge("access_admin", &ca).await;
    let host = &golden_hosts()[0];
    let base = &bridge.base;
    let anonymous = client(&ca, None);
    let node = client(&ca, Some(&ca.issue_node(host).unwrap()));
    let server = client(&ca, Some(&ca.issue_node(SERVER).unwrap()));
    let admin = client(&ca, Some(&ca.issue_node(ADMIN).unwrap()));
    let invalidate = format!("{base}/admin/cache/invalidate?documents=true");
    let explain = format!("{base}/admin/explain/{host}");

    for (who, http) in [
        ("anonymous", &anonymous),
        ("node", &node),
        ("server", &server),
    ] {
        let (status, challenge, body) = send(http.post(&invalidate)).await;
        assert_eq!(status, 401, "{who}: {body}");
        assert!(challenge.starts_with("Bearer"), "{who}: {challenge:?}");
        let (status, _, body) = send(http.get(&explain)).await;
        assert_eq!(status, 401, "{who}: {body}");
    }
    let (status, _, body) = send(
        anonymous
            .post(&invalidate)
            .bearer_auth("not-the-token-at-all"),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    let (status, _, body) = send(anonymous.post(&invalidate).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = send(node.get(&explain).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(admin.post(&invalidate)).await;
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = send(admin.get(&explain)).await;
    assert_eq!(status, 200, "{body}");
    // Unknown paths are management paths: closed, not merely missing.
    let (status, _, body) = send(node.get(format!("{base}/nothing-here"))).await;
    assert_eq!(status, 401, "{body}");
    // Health and metrics stay open.
    for open in ["/healthz", "/metrics"] {
        let (status, _, body) = send(anonymous.get(format!("{base}{open}"))).await;
        assert_eq!(status, 200, "{open}: {body}");
    }
    // Three callers twice, a wrong token, an unknown path.
    let metrics = metrics_of(&anonymous, base).await;
    assert_eq!(refused(&metrics, "admin", 401), 8);
    assert_eq!(refused(&metrics, "node", 403), 0);
    bridge.stop().await;
}

#[tokio::test]
async fn plain_http_with_the_server_token_guards_node() {
    let db = support::migrated_db("access_plain_token").await;
    let dir = std::env::temp_dir().join(format!("pvc-access-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_token = token_file(&dir, "server.token", SERVER_TOKEN);
    let admin_token = token_file(&dir, "admin.token", ADMIN_TOKEN);
    let config = support::config_for(
        &db,
        &[
            ("PVC_ACCESS__SERVER_TOKEN_FILE", &server_token),
            ("PVC_ACCESS__ADMIN_TOKEN_FILE", &admin_token),
        ],
    );
    let bridge = Served::start(&config).await;
    let http = reqwest::Client::new();
    let host = &golden_hosts()[0];
    let node = format!("{}/node/{host}?format=yml", bridge.base);

    let (status, challenge, body) = send(http.get(&node)).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    let (status, _, body) = send(http.get(&node).bearer_auth("server-0000000000000000")).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = send(http.get(&node).bearer_auth(SERVER_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, support::golden_enc(host));
    // The server token is not the admin token, nor the other way round.
    let invalidate = format!("{}/admin/cache/invalidate?documents=true", bridge.base);
    let (status, _, body) = send(http.post(&invalidate).bearer_auth(SERVER_TOKEN)).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = send(http.get(&node).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = send(http.post(&invalidate).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(status, 204, "{body}");
    bridge.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn plain_http_without_tokens_serves_node_but_never_the_admin_api() {
    let db = support::migrated_db("access_plain_open").await;
    let config = support::config_for(&db, &[]);
    let bridge = Served::start(&config).await;
    let http = reqwest::Client::new();
    let host = &golden_hosts()[0];

    let (status, _, body) = send(http.get(format!("{}/node/{host}?format=yml", bridge.base))).await;
    assert_eq!(status, 200, "{body}");
    let (status, challenge, body) = send(http.post(format!(
        "{}/admin/cache/invalidate?documents=true",
        bridge.base
    )))
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    assert!(body.contains("access.admin_token_file"), "{body}");
    bridge.stop().await;
}

#[tokio::test]
async fn explain_reaches_an_https_bridge_with_an_admin_certificate() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let (db, bridge) = https_bridge("access_explain_cli", &ca).await;
    let host = &golden_hosts()[0];
    let admin = ca.issue_node(ADMIN).unwrap();
    let node = ca.issue_node(host).unwrap();
    let ca_file = path(&ca.ca_file());
    let env = [("PVC_DATABASE__PRIMARY", db.primary_url.as_str())];
    let explain = |who: &Option<&pvc_testkit::certs::Issued>| {
        let mut args = vec![
            "explain".to_owned(),
            host.clone(),
            "--url".to_owned(),
            bridge.base.clone(),
            "--ca-file".to_owned(),
            ca_file.clone(),
        ];
        if let Some(issued) = who {
            args.extend([
                "--cert-file".to_owned(),
                path(&issued.cert),
                "--key-file".to_owned(),
                path(&issued.key),
            ]);
        }
        args
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::run_bridge_cli(&args, &env).await
    };

    let (code, out, err) = run(explain(&Some(&admin))).await;
    assert_eq!(code, 0, "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["host"]["certname"], host.as_str(), "{out}");
    // A node's certificate is no admin credential, and neither is none.
    for who in [Some(&node), None] {
        let (code, out, err) = run(explain(&who)).await;
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("401"), "{err}");
    }
    // The bridge's certificate is checked against the CA given.
    let other = PuppetCa::new("Puppet CA: elsewhere.test").unwrap();
    let mut args = explain(&Some(&admin));
    let at = args.iter().position(|a| a == "--ca-file").unwrap() + 1;
    args[at] = path(&other.ca_file());
    let (code, out, err) = run(args).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("asking the bridge"), "{err}");
    bridge.stop().await;
}

#[tokio::test]
async fn serve_refuses_plain_http_unless_asked_for() {
    let env = [(
        "PVC_DATABASE__PRIMARY",
        "postgres://pvc@127.0.0.1:1/foreman",
    )];
    let (code, out, err) = support::run_bridge_cli(&["check-config"], &env).await;
    assert_eq!(code, 64, "{out}{err}");
    assert!(err.contains("plain_http = true"), "{err}");
    let (code, _, err) = support::run_bridge_cli(&["serve"], &env).await;
    assert_eq!(code, 64, "{err}");
    let asked = [env[0], ("PVC_PLAIN_HTTP", "true")];
    let (code, out, err) = support::run_bridge_cli(&["check-config"], &asked).await;
    assert_eq!(code, 0, "{out}{err}");
}
