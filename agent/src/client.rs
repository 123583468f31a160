//! HTTP(S) to the bridge: `GET /host`, `POST /report`, `POST /facts`.
//!
//! TLS uses the node's Puppet certificate as client certificate and the
//! Puppet CA as the only trust root (hostnames verified). Puppet renews its
//! certificate in place, so the files' modification times are checked
//! before each request and the HTTP client is rebuilt when one changed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Url;

use crate::config::{AgentConfig, TlsFiles};
use crate::decision::{self, Decision, DecisionError};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error answer's body is kept for the logs.
const ERROR_BODY_LIMIT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: connection refused or reset, DNS, TLS handshake, timeout.
    #[error("bridge unreachable: {0}")]
    Unreachable(String),
    /// The bridge answered with an error status.
    #[error("bridge answered {status}: {body}")]
    Status { status: u16, body: String },
    /// A `/host` answer that is not a decision.
    #[error("bridge answer not understood: {0}")]
    Answer(DecisionError),
    /// The certificate, key, CA or CRL cannot be read or used.
    #[error("TLS files: {0}")]
    Tls(String),
}

impl ClientError {
    /// Worth trying again later (with backoff): the bridge may come back.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Unreachable(_) => true,
            ClientError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            ClientError::Answer(_) | ClientError::Tls(_) => false,
        }
    }
}

/// The bridge's endpoints, for this node.
pub struct BridgeClient {
    host_endpoint: String,
    report_endpoint: String,
    facts_endpoint: String,
    certname: String,
    tls: Option<TlsFiles>,
    http: Mutex<Reloading<reqwest::Client>>,
}

impl BridgeClient {
    pub fn new(config: &AgentConfig) -> Result<BridgeClient, ClientError> {
        // Validated by the configuration already; checked again so a bad
        // endpoint is an error here, not a panic in a request.
        for endpoint in [
            &config.host_endpoint,
            &config.report_endpoint,
            &config.facts_endpoint,
        ] {
            Url::parse(endpoint)
                .map_err(|e| ClientError::Unreachable(format!("{endpoint:?}: {e}")))?;
        }
        let tls = config.tls.clone();
        let stamp = tls.as_ref().map(Stamp::of).unwrap_or_default();
        let http = build(tls.as_ref())?;
        Ok(BridgeClient {
            host_endpoint: config.host_endpoint.clone(),
            report_endpoint: config.report_endpoint.clone(),
            facts_endpoint: config.facts_endpoint.clone(),
            certname: config.certname.clone(),
            tls,
            http: Mutex::new(Reloading { value: http, stamp }),
        })
    }

    /// GET host_endpoint?fqdn=<certname> (Accept: application/json); with
    /// files: &trigger=file_change&files=<space-separated paths>
    pub async fn poll(&self, changed: &[PathBuf]) -> Result<Decision, ClientError> {
        let url = host_url(&self.host_endpoint, &self.certname, changed)?;
        let response = self
            .http()
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?;
        let decision = host_answer(status, &body)?;
        warn_if_newer(decision.protocol);
        Ok(decision)
    }

    /// POST report_endpoint?fqdn=<certname>, Content-Type: application/json
    pub async fn post_report(&self, body: &[u8]) -> Result<(), ClientError> {
        self.post(&self.report_endpoint, body).await
    }

    /// POST facts_endpoint?fqdn=<certname>, Content-Type: application/json
    /// (facter JSON)
    pub async fn post_facts(&self, body: &[u8]) -> Result<(), ClientError> {
        self.post(&self.facts_endpoint, body).await
    }

    async fn post(&self, endpoint: &str, body: &[u8]) -> Result<(), ClientError> {
        let url = node_url(endpoint, &self.certname)?;
        let response = self
            .http()
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.bytes().await.map_err(unreachable)?;
        Err(status_error(status, &body))
    }

    /// The HTTP client, rebuilt first if Puppet replaced a TLS file.
    fn http(&self) -> reqwest::Client {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tls) = &self.tls {
            let rebuilt = http.refresh(Stamp::of(tls), || build(Some(tls)));
            match rebuilt {
                Ok(false) => {}
                Ok(true) => tracing::info!(
                    cert = %tls.cert.display(),
                    "TLS files changed: certificate, key, CA and CRL re-read"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "TLS files changed but cannot be used yet; keeping the previous ones"
                ),
            }
        }
        http.value.clone()
    }
}

/// The modification times of the TLS files (`None`: missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stamp(Vec<Option<SystemTime>>);

impl Stamp {
    fn of(tls: &TlsFiles) -> Stamp {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut times = vec![mtime(&tls.cert), mtime(&tls.key), mtime(&tls.ca)];
        times.push(tls.crl.as_deref().and_then(mtime));
        Stamp(times)
    }
}

/// A value built from files, rebuilt when their stamp changes.
#[derive(Debug)]
struct Reloading<T> {
    value: T,
    stamp: Stamp,
}

impl<T> Reloading<T> {
    /// Rebuilds when `now` differs from the stamp the value was built
    /// with; `Ok(true)` when it did. A failed build keeps the old value and
    /// the old stamp, so the next call tries again (a file may be half
    /// written).
    fn refresh<E>(&mut self, now: Stamp, build: impl FnOnce() -> Result<T, E>) -> Result<bool, E> {
        if now == self.stamp {
            return Ok(false);
        }
        self.value = build()?;
        self.stamp = now;
        Ok(true)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::Tls(format!("{what} {}: {e}", path.display())))
}

/// The reqwest client: plain, or with the node's identity and the Puppet CA
/// as the only root.
fn build(tls: Option<&TlsFiles>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("pvc-agent/", env!("CARGO_PKG_VERSION")))
        .default_headers(
            [(
                reqwest::header::HeaderName::from_static(decision::PROTOCOL_HEADER),
                reqwest::header::HeaderValue::from(decision::PROTOCOL),
            )]
            .into_iter()
            .collect(),
        )
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        // A redirect would move a report or the node's facts elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(tls) = tls {
        let mut identity = read(&tls.cert, "certificate")?;
        identity.push(b'\n');
        identity.extend(read(&tls.key, "private key")?);
        let identity = reqwest::Identity::from_pem(&identity).map_err(|e| {
            ClientError::Tls(format!(
                "{} / {}: {e}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
        let cas = reqwest::Certificate::from_pem_bundle(&read(&tls.ca, "CA")?)
            .map_err(|e| ClientError::Tls(format!("CA {}: {e}", tls.ca.display())))?;
        if cas.is_empty() {
            return Err(ClientError::Tls(format!(
                "CA {}: no certificate in it",
                tls.ca.display()
            )));
        }
        builder = builder
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .identity(identity);
        for ca in cas {
            builder = builder.add_root_certificate(ca);
        }
        if let Some(crl) = &tls.crl {
            match std::fs::read(crl) {
                Ok(pem) => {
                    let crls = reqwest::tls::CertificateRevocationList::from_pem_bundle(&pem)
                        .map_err(|e| ClientError::Tls(format!("CRL {}: {e}", crl.display())))?;
                    builder = builder.add_crls(crls);
                }
                // Puppet writes the CRL with the certificate; until then (or
                // with certificate_revocation off) there is none to check.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(crl = %crl.display(), "no CRL yet: revocation not checked");
                }
                Err(e) => {
                    return Err(ClientError::Tls(format!("CRL {}: {e}", crl.display())));
                }
            }
        }
    }
    builder
        .build()
        .map_err(|e| ClientError::Tls(error_chain(&e)))
}

/// `<endpoint>?fqdn=<certname>`.
fn node_url(endpoint: &str, certname: &str) -> Result<Url, ClientError> {
    let mut url =
        Url::parse(endpoint).map_err(|e| ClientError::Unreachable(format!("{endpoint:?}: {e}")))?;
    url.query_pairs_mut().append_pair("fqdn", certname);
    Ok(url)
}

/// The `/host` URL; a file-change poll names the changed files.
fn host_url(endpoint: &str, certname: &str, changed: &[PathBuf]) -> Result<Url, ClientError> {
    let mut url = node_url(endpoint, certname)?;
    if !changed.is_empty() {
        let files = changed
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        url.query_pairs_mut()
            .append_pair("trigger", "file_change")
            .append_pair("files", &files);
    }
    Ok(url)
}

/// A bridge speaking a newer protocol may mean something this agent does
/// not read: said once per process, as every poll would repeat it.
fn warn_if_newer(protocol: Option<u32>) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Some(v) = protocol.filter(|v| *v > decision::PROTOCOL) {
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                bridge = v,
                agent = decision::PROTOCOL,
                "the bridge speaks a newer agent protocol: upgrade pvc-agent (docs/upgrading.md)"
            );
        }
    }
}

/// A `/host` answer → a decision or an error. The bridge refuses with a 4xx
/// that still carries a decision (`PVC_RETURN` ≠ 0, `PVC_CHECK_INTERVAL`):
/// that is an answer to honour, not a failure to back off from. A 5xx is
/// the bridge failing (backoff), whatever its body says.
fn host_answer(status: u16, body: &[u8]) -> Result<Decision, ClientError> {
    match status {
        200..=299 => decision::parse(body).map_err(ClientError::Answer),
        400..=499 => match decision::parse(body) {
            Ok(d) if d.code != 0 => Ok(d),
            _ => Err(status_error(status, body)),
        },
        _ => Err(status_error(status, body)),
    }
}

fn status_error(status: u16, body: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(body);
    let mut body: String = text.trim().chars().take(ERROR_BODY_LIMIT).collect();
    if text.trim().chars().count() > ERROR_BODY_LIMIT {
        body.push('…');
    }
    ClientError::Status { status, body }
}

/// The whole cause chain: reqwest's own message ("error sending request")
/// says little; the TLS or connect error below it is the news.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn unreachable(e: reqwest::Error) -> ClientError {
    ClientError::Unreachable(error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn poll_url_names_the_node_and_changed_files() {
        let url = host_url("http://jj.e.com./host", "web1.example.com", &[]).expect("url");
        assert_eq!(url.as_str(), "http://jj.e.com./host?fqdn=web1.example.com");

        let changed = [PathBuf::from("/etc/sudoers"), PathBuf::from("/etc/a b+c")];
        let url = host_url("https://bridge:8443/host", "web1.example.com", &changed).expect("url");
        assert_eq!(
            url.as_str(),
            "https://bridge:8443/host?fqdn=web1.example.com&trigger=file_change&files=%2Fetc%2Fsudoers+%2Fetc%2Fa+b%2Bc"
        );
        // What the bridge's query parser reads back.
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[2], ("files".into(), "/etc/sudoers /etc/a b+c".into()));

        // An endpoint with a query keeps it.
        let url = node_url("https://bridge/report?x=1", "n1").expect("url");
        assert_eq!(url.as_str(), "https://bridge/report?x=1&fqdn=n1");
    }

    #[test]
    fn host_answers_are_classified() {
        let granted = br#"{"PVC_RETURN":"0","PVC_RUN":"1","PVC_CHECK_INTERVAL":"30"}"#;
        let d = host_answer(200, granted).expect("decision");
        assert!(d.run.is_some());

        // The bridge's refusal of an unknown host: honoured, not retried.
        let refusal = br#"{"PVC_RETURN":"1","PVC_RUN":"0","PVC_FACT_RUN":"0","PVC_CHECK_INTERVAL":"60","PVC_ERROR":"unknown host x: not in Foreman"}"#;
        let d = host_answer(404, refusal).expect("a refusal is an answer");
        assert_eq!(d.code, 1);
        assert_eq!(d.check_interval, Duration::from_secs(60));
        assert!(d.run.is_none());

        // A 4xx without a decision (a proxy, a query the bridge rejects).
        let e = host_answer(400, b"Query deserialize error: unknown field `x`").unwrap_err();
        assert!(
            matches!(e, ClientError::Status { status: 400, .. }),
            "{e:?}"
        );
        assert!(!e.retryable());
        // A 4xx whose decision says 0 is not a refusal the agent can honour.
        let e = host_answer(403, br#"{"PVC_RETURN":"0"}"#).unwrap_err();
        assert!(matches!(e, ClientError::Status { status: 403, .. }));

        // 5xx: the bridge is failing, even with a decision-shaped body.
        let unavailable = br#"{"PVC_RETURN":"2","PVC_CHECK_INTERVAL":"60","PVC_ERROR":"database unavailable; try again"}"#;
        let e = host_answer(503, unavailable).unwrap_err();
        assert!(matches!(e, ClientError::Status { status: 503, .. }));
        assert!(e.retryable());

        // A 200 that is not a decision.
        let e = host_answer(200, b"<html>captive portal</html>").unwrap_err();
        assert!(matches!(e, ClientError::Answer(DecisionError::Json(_))));
        assert!(!e.retryable());
    }

    #[test]
    fn retryable_errors() {
        let status = |status| ClientError::Status {
            status,
            body: String::new(),
        };
        assert!(ClientError::Unreachable("refused".into()).retryable());
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(status(s).retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413] {
            assert!(!status(s).retryable(), "{s}");
        }
        assert!(!ClientError::Tls("no key".into()).retryable());
    }

    #[test]
    fn error_bodies_are_bounded() {
        let body = "x".repeat(5000);
        let ClientError::Status { body, .. } = status_error(500, body.as_bytes()) else {
            panic!("a status error");
        };
        assert_eq!(body.chars().count(), ERROR_BODY_LIMIT + 1);
    }

    /// A fresh directory under the system's temp dir.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pvc-agent-client-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn set_mtime(path: &Path, secs: u64) {
        let file = fs::File::options().write(true).open(path).expect("open");
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .expect("set mtime");
    }

    #[test]
    fn rebuilt_only_when_a_tls_file_changes() {
        let dir = scratch("stamp");
        let tls = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
            crl: Some(dir.join("crl.pem")),
        };
        for p in [&tls.cert, &tls.key, &tls.ca] {
            fs::write(p, "x").expect("write");
            set_mtime(p, 1_000);
        }
        let mut built = 0;
        let mut r = Reloading {
            value: 0,
            stamp: Stamp::of(&tls),
        };
        let mut refresh = |r: &mut Reloading<i32>, ok: bool| {
            r.refresh(Stamp::of(&tls), || {
                built += 1;
                if ok {
                    Ok(built)
                } else {
                    Err("half written")
                }
            })
        };
        assert_eq!(refresh(&mut r, true), Ok(false));
        assert_eq!(r.value, 0);

        // Puppet renews the certificate.
        set_mtime(&tls.cert, 2_000);
        assert_eq!(refresh(&mut r, true), Ok(true));
        assert_eq!(r.value, 1);
        assert_eq!(refresh(&mut r, true), Ok(false));

        // The CRL appears; the build fails once: the old value stays and
        // the next request tries again.
        fs::write(tls.crl.as_ref().expect("crl"), "x").expect("write");
        assert_eq!(refresh(&mut r, false), Err("half written"));
        assert_eq!(r.value, 1);
        assert_eq!(refresh(&mut r, true), Ok(true));
        assert_eq!(r.value, 3);
        assert_eq!(refresh(&mut r, true), Ok(false));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_files_are_checked_when_building() {
        let dir = scratch("build");
        let ca = rcgen::generate_simple_self_signed(vec!["puppet-ca".into()]).expect("ca");
        let node =
            rcgen::generate_simple_self_signed(vec!["web1.example.com".into()]).expect("node");
        let tls = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
            crl: Some(dir.join("missing-crl.pem")),
        };
        fs::write(&tls.cert, node.cert.pem()).expect("write");
        fs::write(&tls.key, node.key_pair.serialize_pem()).expect("write");
        fs::write(&tls.ca, ca.cert.pem()).expect("write");
        build(Some(&tls)).expect("a valid identity and CA, no CRL yet");

        fs::write(&tls.ca, "not a certificate").expect("write");
        assert!(matches!(build(Some(&tls)), Err(ClientError::Tls(_))));
        fs::write(&tls.ca, ca.cert.pem()).expect("write");

        fs::remove_file(&tls.key).expect("rm");
        let Err(ClientError::Tls(message)) = build(Some(&tls)) else {
            panic!("a missing key is a TLS error");
        };
        assert!(message.contains("key.pem"), "{message}");
        let _ = fs::remove_dir_all(&dir);
    }
}
