//! HTTPS with client certificates from a Puppet-like CA (root +
//! intermediate, node certificates with CN = certname), as pvc-agent
//! connects with the node's Puppet certificate.

use std::net::TcpListener;

use pvc_bridge::config;
use pvc_bridge::tls::PeerCertname;
use pvc_testkit::certs::{Issued, PuppetCa};

use crate::support::{https_client as client, HttpsBridge};

/// `[tls]` for a server certificate of `ca`, with client certificates
/// from `ca` (and `crl` when given).
fn tls_env(
    ca: &PuppetCa,
    server: &Issued,
    crl: Option<&std::path::Path>,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PVC_TLS__CERT_FILE", path(&server.cert)),
        ("PVC_TLS__KEY_FILE", path(&server.key)),
        ("PVC_TLS__CLIENT_CA_FILE", path(&ca.ca_file())),
    ];
    if let Some(crl) = crl {
        env.push(("PVC_TLS__CLIENT_CRL_FILES", path(crl)));
    }
    env
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

async fn healthz(client: &reqwest::Client, base: &str) -> Result<(u16, String), reqwest::Error> {
    let response = client.get(format!("{base}/healthz")).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

fn server_cert(ca: &PuppetCa) -> Issued {
    ca.issue_server(&["localhost", "127.0.0.1"])
        .expect("server certificate")
}

#[tokio::test]
async fn a_node_certificate_from_the_puppet_ca_is_served() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = server_cert(&ca);
    let node = ca.issue_node("web01.example.com").unwrap();
    let bridge = HttpsBridge::start("tls_ok", &tls_env(&ca, &server, None)).await;

    let answer = healthz(&client(&ca, Some(&node)), &bridge.base).await;
    assert_eq!(answer.expect("HTTPS request"), (200, "ok\n".to_owned()));
    // The same listener does not speak plain HTTP.
    let plain = reqwest::Client::new()
        .get(bridge.base.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().is_success()).ok() != Some(true),
        "plain HTTP answered on the HTTPS port"
    );
    bridge.stop().await;
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_fails_when_required() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = server_cert(&ca);
    let bridge = HttpsBridge::start("tls_anon_refused", &tls_env(&ca, &server, None)).await;

    let answer = healthz(&client(&ca, None), &bridge.base).await;
    assert!(answer.is_err(), "anonymous client was served: {answer:?}");
    bridge.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let other = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = server_cert(&ca);
    // Same certname, same CA name, another key: only the signature differs.
    let impostor = other.issue_node("web01.example.com").unwrap();
    let bridge = HttpsBridge::start("tls_other_ca", &tls_env(&ca, &server, None)).await;

    let answer = healthz(&client(&ca, Some(&impostor)), &bridge.base).await;
    assert!(
        answer.is_err(),
        "foreign certificate was served: {answer:?}"
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_when_the_crl_lists_it() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = server_cert(&ca);
    let revoked = ca.issue_node("old.example.com").unwrap();
    let good = ca.issue_node("web01.example.com").unwrap();
    let crl = ca.crl(&[&revoked]).unwrap();
    let bridge = HttpsBridge::start("tls_crl", &tls_env(&ca, &server, Some(&crl))).await;

    let answer = healthz(&client(&ca, Some(&revoked)), &bridge.base).await;
    assert!(
        answer.is_err(),
        "revoked certificate was served: {answer:?}"
    );
    let answer = healthz(&client(&ca, Some(&good)), &bridge.base).await;
    assert_eq!(
        answer.expect("unrevoked certificate"),
        (200, "ok\n".to_owned())
    );
    bridge.stop().await;
}

#[tokio::test]
async fn optional_client_certificates_admit_anonymous_clients_but_still_verify() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let other = PuppetCa::new("Puppet CA: elsewhere.test").unwrap();
    let server = server_cert(&ca);
    let node = ca.issue_node("web01.example.com").unwrap();
    let impostor = other.issue_node("web01.example.com").unwrap();
    let mut env = tls_env(&ca, &server, None);
    env.push(("PVC_TLS__REQUIRE_CLIENT_CERT", "false".to_owned()));
    let bridge = HttpsBridge::start("tls_optional", &env).await;

    let anonymous = healthz(&client(&ca, None), &bridge.base).await;
    assert_eq!(anonymous.expect("anonymous"), (200, "ok\n".to_owned()));
    let node = healthz(&client(&ca, Some(&node)), &bridge.base).await;
    assert_eq!(node.expect("node certificate"), (200, "ok\n".to_owned()));
    let impostor = healthz(&client(&ca, Some(&impostor)), &bridge.base).await;
    assert!(
        impostor.is_err(),
        "foreign certificate was served: {impostor:?}"
    );
    bridge.stop().await;
}

/// The verified certname reaches handlers through the connection data
/// (`tls::on_connect`), for a certificate and for none.
#[tokio::test]
async fn the_peer_certname_reaches_handlers() {
    use actix_web::{web, App, HttpRequest, HttpServer};

    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = server_cert(&ca);
    let node = ca.issue_node("web01.example.com").unwrap();
    let settings = config::TlsSettings {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: Some(ca.ca_file()),
        client_crl_files: vec![],
        client_crl_url: None,
        require_client_cert: false,
        reload_interval: config::TlsSettings::DEFAULT_RELOAD,
        crl_refresh_interval: config::TlsSettings::DEFAULT_CRL_REFRESH,
    };
    let tls = pvc_bridge::tls::server_config(&settings).expect("TLS configuration");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let whoami = |req: HttpRequest| async move {
        match req.conn_data::<PeerCertname>() {
            Some(PeerCertname(certname)) => certname.to_string(),
            None => "-".to_owned(),
        }
    };
    let server = HttpServer::new(move || App::new().route("/whoami", web::get().to(whoami)))
        .on_connect(pvc_bridge::tls::on_connect)
        .workers(1)
        .listen_rustls_0_23(listener, tls)
        .expect("listen")
        .run();
    let handle = server.handle();
    tokio::spawn(server);

    let ask = |client: reqwest::Client| {
        let url = format!("{base}/whoami");
        async move {
            let response = client.get(url).send().await.expect("request");
            response.text().await.expect("body")
        }
    };
    assert_eq!(ask(client(&ca, Some(&node))).await, "web01.example.com");
    assert_eq!(ask(client(&ca, None)).await, "-");
    handle.stop(true).await;
}

#[test]
fn unreadable_or_broken_files_are_configuration_errors_naming_them() {
    let ca = PuppetCa::new("Puppet CA: puppet.test").unwrap();
    let server = server_cert(&ca);
    let garbage = ca.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = ca.dir().join("missing.pem");
    let other_key = ca.issue_node("x.example.com").unwrap().key;
    let load = |tls: &[(&str, &std::path::Path)]| {
        let mut env = vec![(
            "PVC_DATABASE__PRIMARY".to_owned(),
            "postgres://foreman@localhost/foreman".to_owned(),
        )];
        env.extend(tls.iter().map(|(k, v)| (k.to_string(), path(v))));
        config::load_from(None, env)
    };
    let (cert, key) = (server.cert.as_path(), server.key.as_path());

    let settings = load(&[("PVC_TLS__CERT_FILE", cert), ("PVC_TLS__KEY_FILE", key)])
        .expect("valid [tls]")
        .tls
        .expect("[tls] set");
    assert!(!settings.require_client_cert, "no CA: nothing to require");

    let (garbage_path, missing_path) = (garbage.as_path(), missing.as_path());
    // (key named, its bad file, cert_file, key_file)
    for (named, bad, cert, key) in [
        ("tls.cert_file", garbage_path, garbage_path, key),
        ("tls.cert_file", missing_path, missing_path, key),
        ("tls.key_file", garbage_path, cert, garbage_path),
        // Another certificate's key.
        (
            "tls.key_file",
            other_key.as_path(),
            cert,
            other_key.as_path(),
        ),
    ] {
        let error = load(&[("PVC_TLS__CERT_FILE", cert), ("PVC_TLS__KEY_FILE", key)])
            .expect_err("bad [tls]")
            .to_string();
        assert!(
            error.contains(named) && error.contains(&path(bad)),
            "{error}"
        );
    }

    let error = load(&[
        ("PVC_TLS__CERT_FILE", cert),
        ("PVC_TLS__KEY_FILE", key),
        ("PVC_TLS__CLIENT_CA_FILE", &ca.ca_file()),
        ("PVC_TLS__CLIENT_CRL_FILES", &garbage),
    ])
    .expect_err("bad CRL file")
    .to_string();
    assert!(
        error.contains("tls.client_crl_files") && error.contains(&path(&garbage)),
        "{error}"
    );

    let error = load(&[("PVC_TLS__CLIENT_CA_FILE", &ca.ca_file())])
        .expect_err("no certificate")
        .to_string();
    assert!(
        error.contains("tls.cert_file: required") && error.contains("tls.key_file: required"),
        "{error}"
    );
}
