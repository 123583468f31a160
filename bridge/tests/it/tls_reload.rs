//! TLS material changed under a running bridge: CRL files rewritten, CRLs
//! fetched from the CA's endpoint, the server certificate replaced (or
//! broken) on disk. New connections see the change; nothing restarts.

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use pvc_testkit::certs::{Issued, PuppetCa};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::{https_client as client, HttpsBridge};

/// How long a change may take to show before the test fails; the bridges
/// here check every second.
const PATIENCE: Duration = Duration::from_secs(60);

/// [`HttpsBridge::start`] re-reading its files and the CA's CRL every
/// second.
async fn start_reloading(hint: &str, tls: &[(&str, String)]) -> HttpsBridge {
    let mut env = tls.to_vec();
    env.push(("PVC_TLS__RELOAD_SECS", "1".to_owned()));
    env.push(("PVC_TLS__CRL_REFRESH_SECS", "1".to_owned()));
    HttpsBridge::start(hint, &env).await
}

/// What a test asks a running HTTPS bridge.
trait Probe {
    async fn admits(&self, ca: &PuppetCa, identity: &Issued) -> bool;
    async fn peer_certificate(&self, ca: &PuppetCa, identity: &Issued) -> Vec<u8>;
}

impl Probe for HttpsBridge {
    /// Whether a new connection with `identity` is served `/healthz`.
    async fn admits(&self, ca: &PuppetCa, identity: &Issued) -> bool {
        let answer = client(ca, Some(identity))
            .get(format!("{}/healthz", self.base))
            .send()
            .await;
        answer.map(|r| r.status().is_success()).unwrap_or(false)
    }

    /// The certificate the bridge presents to a new connection.
    async fn peer_certificate(&self, ca: &PuppetCa, identity: &Issued) -> Vec<u8> {
        let response = client(ca, Some(identity))
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .expect("HTTPS request");
        assert!(response.status().is_success(), "{}", response.status());
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .expect("peer certificate")
            .to_vec()
    }
}

fn tls_env(ca: &PuppetCa, server: &Issued) -> Vec<(&'static str, String)> {
    vec![
        ("PVC_TLS__CERT_FILE", path(&server.cert)),
        ("PVC_TLS__KEY_FILE", path(&server.key)),
        ("PVC_TLS__CLIENT_CA_FILE", path(&ca.ca_file())),
    ]
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

fn leaf_der(cert_file: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(cert_file)
        .expect("certificate file")
        .to_vec()
}

/// Polls `check` until it holds; fails after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "still not the case: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_certificate_revoked_in_the_crl_file_is_refused_without_restart() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let web01 = ca.issue_node("web01.example.com").unwrap();
    let web02 = ca.issue_node("web02.example.com").unwrap();
    let crl = ca.crl(&[]).unwrap();
    let mut env = tls_env(&ca, &server);
    env.push(("PVC_TLS__CLIENT_CRL_FILES", path(&crl)));
    let bridge = start_reloading("tls_reload_crl_file", &env).await;
    assert!(bridge.admits(&ca, &web01).await, "web01 before revocation");
    assert!(bridge.admits(&ca, &web02).await, "web02 before revocation");
    // A client that keeps its TLS session (but not its connections).
    let resuming = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(0);
    let resuming = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca.ca_file()).unwrap())
        .unwrap()
        .into_iter()
        .fold(resuming, |b, root| b.add_root_certificate(root))
        .identity(reqwest::Identity::from_pem(&web01.identity_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    let healthz = format!("{}/healthz", bridge.base);
    assert!(resuming.get(&healthz).send().await.is_ok(), "web01 session");
    let reloads = pvc_bridge::tls::reload_counts().client_verifier_reloads;

    ca.crl(&[&web01]).unwrap();
    wait_for("web01 refused after its revocation", || async {
        !bridge.admits(&ca, &web01).await
    })
    .await;
    assert!(bridge.admits(&ca, &web02).await, "web02 is not revoked");
    // Resuming the session from before would skip verification.
    let resumed = resuming.get(&healthz).send().await;
    assert!(resumed.is_err(), "web01 resumed its session: {resumed:?}");
    assert!(pvc_bridge::tls::reload_counts().client_verifier_reloads > reloads);

    // A broken CRL file keeps the last good CRLs in force.
    let failures = pvc_bridge::tls::reload_counts().client_verifier_failures;
    std::fs::write(&crl, "not a CRL\n").unwrap();
    wait_for("the broken CRL file noticed", || async {
        pvc_bridge::tls::reload_counts().client_verifier_failures > failures
    })
    .await;
    assert!(!bridge.admits(&ca, &web01).await, "web01 admitted again");
    assert!(bridge.admits(&ca, &web02).await, "web02 refused");
    bridge.stop().await;
}

#[tokio::test]
async fn a_server_certificate_replaced_on_disk_is_presented_and_a_broken_one_is_not() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let first = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let node = ca.issue_node("web01.example.com").unwrap();
    let bridge = start_reloading("tls_reload_server_cert", &tls_env(&ca, &first)).await;
    let first_der = leaf_der(&first.cert);
    assert_eq!(bridge.peer_certificate(&ca, &node).await, first_der);

    // Renewed: same files, new key and certificate.
    let renewed = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    assert_eq!(renewed.cert, first.cert, "renewal writes the same file");
    let renewed_der = leaf_der(&renewed.cert);
    assert_ne!(renewed_der, first_der);
    wait_for("the renewed certificate presented", || async {
        bridge.peer_certificate(&ca, &node).await == renewed_der
    })
    .await;

    // Broken: the renewed pair stays in service, the failure is counted.
    let failures = pvc_bridge::tls::reload_counts().server_cert_failures;
    std::fs::write(&renewed.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    wait_for("the broken certificate file noticed", || async {
        pvc_bridge::tls::reload_counts().server_cert_failures > failures
    })
    .await;
    assert_eq!(bridge.peer_certificate(&ca, &node).await, renewed_der);

    // A certificate with another certificate's key: refused too.
    let failures = pvc_bridge::tls::reload_counts().server_cert_failures;
    let stranger = ca.issue_node("stranger.example.com").unwrap();
    std::fs::copy(&stranger.cert, &renewed.cert).unwrap();
    wait_for("the mismatched pair noticed", || async {
        pvc_bridge::tls::reload_counts().server_cert_failures > failures
    })
    .await;
    assert_eq!(bridge.peer_certificate(&ca, &node).await, renewed_der);
    bridge.stop().await;
}

/// The CA's CRL endpoint over HTTPS; answers 503 while it has no CRL.
struct CrlServer {
    url: String,
    crl: Arc<Mutex<Option<String>>>,
    /// 503 answers so far.
    unavailable: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl CrlServer {
    /// Serves with `identity` (a certificate of the CA, as puppetserver's).
    fn start(identity: &Issued, crl: Option<String>) -> CrlServer {
        let chain = CertificateDer::pem_file_iter(&identity.cert)
            .expect("certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(&identity.key).expect("key");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "https://localhost:{}/puppet-ca/v1/certificate_revocation_list/ca",
            listener.local_addr().unwrap().port()
        );
        let crl = Arc::new(Mutex::new(crl));
        let unavailable = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new((Arc::clone(&crl), Arc::clone(&unavailable)));
        // Its own thread and runtime: the bridge's first fetch blocks the
        // test's runtime while it waits.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new().app_data(state.clone()).route(
                        "/puppet-ca/v1/certificate_revocation_list/ca",
                        web::get().to(serve_crl),
                    )
                })
                .workers(1)
                .listen_rustls_0_23(listener, tls)
                .expect("listen")
                .run();
                sender.send(server.handle()).expect("handle");
                server.await
            })
        });
        CrlServer {
            url,
            crl,
            unavailable,
            handle: receiver.recv().expect("CRL server started"),
        }
    }

    fn serve(&self, crl: Option<String>) {
        *self.crl.lock().unwrap() = crl;
    }
}

type CrlState = (Arc<Mutex<Option<String>>>, Arc<AtomicUsize>);

async fn serve_crl(state: web::Data<CrlState>) -> HttpResponse {
    let crl = state.0.lock().unwrap().clone();
    match crl {
        Some(pem) => HttpResponse::Ok().content_type("text/plain").body(pem),
        None => {
            state.1.fetch_add(1, Ordering::SeqCst);
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

#[tokio::test]
async fn a_certificate_revoked_at_the_ca_url_is_refused_after_the_refresh() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let puppet = ca.issue_server(&["puppet.test", "localhost"]).unwrap();
    let web01 = ca.issue_node("web01.example.com").unwrap();
    let web02 = ca.issue_node("web02.example.com").unwrap();
    let crls = CrlServer::start(&puppet, Some(ca.crl_pem(&[]).unwrap()));
    let mut env = tls_env(&ca, &server);
    env.push(("PVC_TLS__CLIENT_CRL_URL", crls.url.clone()));
    let bridge = start_reloading("tls_reload_crl_url", &env).await;
    assert!(bridge.admits(&ca, &web01).await, "web01 before revocation");
    assert!(bridge.admits(&ca, &web02).await, "web02 before revocation");

    crls.serve(Some(ca.crl_pem(&[&web01]).unwrap()));
    wait_for("web01 refused after its revocation", || async {
        !bridge.admits(&ca, &web01).await
    })
    .await;
    assert!(bridge.admits(&ca, &web02).await, "web02 is not revoked");

    // The CA unreachable: the last good CRL stays in force.
    crls.serve(None);
    let seen = crls.unavailable.load(Ordering::SeqCst);
    wait_for("a failed fetch", || async {
        crls.unavailable.load(Ordering::SeqCst) > seen
    })
    .await;
    assert!(!bridge.admits(&ca, &web01).await, "web01 admitted again");
    assert!(bridge.admits(&ca, &web02).await, "web02 refused");
    bridge.stop().await;
    crls.handle.stop(true).await;
}

#[tokio::test]
async fn client_certificates_wait_for_the_first_crl_from_the_ca_url() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let puppet = ca.issue_server(&["puppet.test", "localhost"]).unwrap();
    let node = ca.issue_node("web01.example.com").unwrap();
    let crls = CrlServer::start(&puppet, None);
    let mut env = tls_env(&ca, &server);
    env.push(("PVC_TLS__CLIENT_CRL_URL", crls.url.clone()));
    let bridge = start_reloading("tls_reload_crl_first", &env).await;
    assert!(
        crls.unavailable.load(Ordering::SeqCst) > 0,
        "fetched at start"
    );
    assert!(!bridge.admits(&ca, &node).await, "admitted without any CRL");

    crls.serve(Some(ca.crl_pem(&[]).unwrap()));
    wait_for("the node admitted once a CRL arrived", || async {
        bridge.admits(&ca, &node).await
    })
    .await;
    bridge.stop().await;
    crls.handle.stop(true).await;
}

#[tokio::test]
async fn a_replaced_client_ca_file_decides_for_new_connections() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let next = PuppetCa::new("Puppet CA: next.test").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let old_node = ca.issue_node("web01.example.com").unwrap();
    let new_node = next.issue_node("web02.example.com").unwrap();
    let bundle = ca.dir().join("client-ca.pem");
    std::fs::copy(ca.ca_file(), &bundle).unwrap();
    let mut env = tls_env(&ca, &server);
    env.retain(|(key, _)| *key != "PVC_TLS__CLIENT_CA_FILE");
    env.push(("PVC_TLS__CLIENT_CA_FILE", path(&bundle)));
    let bridge = start_reloading("tls_reload_client_ca", &env).await;
    assert!(bridge.admits(&ca, &old_node).await, "a node of the CA");
    assert!(!bridge.admits(&ca, &new_node).await, "a node of another CA");

    // The bridge's own certificate stays the old CA's: `admits` trusts it.
    let partial = ca.dir().join("client-ca.pem.partial");
    std::fs::copy(next.ca_file(), &partial).unwrap();
    std::fs::rename(&partial, &bundle).unwrap();
    wait_for("the new CA's node admitted", || async {
        bridge.admits(&ca, &new_node).await
    })
    .await;
    assert!(
        !bridge.admits(&ca, &old_node).await,
        "the old CA is no longer trusted"
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_crl_server_without_a_certificate_of_the_client_ca_is_not_believed() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let elsewhere = PuppetCa::new("Puppet CA: elsewhere.test").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let node = ca.issue_node("web01.example.com").unwrap();
    // A valid CRL, served under a certificate the client CA did not issue.
    let impostor = elsewhere.issue_server(&["localhost"]).unwrap();
    let crls = CrlServer::start(&impostor, Some(ca.crl_pem(&[]).unwrap()));
    let mut env = tls_env(&ca, &server);
    env.push(("PVC_TLS__CLIENT_CRL_URL", crls.url.clone()));
    let failures = pvc_bridge::tls::reload_counts().crl_fetch_failures;
    // The first fetch happens while the configuration is built.
    let bridge = start_reloading("tls_reload_crl_untrusted", &env).await;
    assert!(pvc_bridge::tls::reload_counts().crl_fetch_failures > failures);
    assert!(
        !bridge.admits(&ca, &node).await,
        "admitted on a CRL from an untrusted server"
    );
    bridge.stop().await;
    crls.handle.stop(true).await;
}
