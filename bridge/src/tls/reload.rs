//! The TLS material kept current while the bridge runs: a thread that
//! every `tls.reload_secs` reads the files again and, when their content
//! changed, swaps in the new certificate and key ([`ServerCert`], a
//! `ResolvesServerCert`) or a new client verifier ([`ClientVerifier`],
//! delegating to the current `WebPkiClientVerifier`), and with
//! `tls.client_crl_url` fetches the CA's CRLs every `tls.crl_refresh_secs`.
//! Whatever fails to read, parse or match keeps the previous material in
//! service and is logged naming the file (or URL). The thread ends once the
//! server configuration holding the material is dropped.

use std::hash::{DefaultHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{build_verifier, load_server_cert, parse_crls, ClientFiles};
use crate::config::TlsSettings;

/// Reload activity since the process started, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// A changed certificate and key pair taken into service.
    pub server_cert_reloads: u64,
    /// A changed pair that did not read, parse or match (the old one stays).
    pub server_cert_failures: u64,
    /// Client verifier rebuilt (CA or CRL file changed, or a new CRL fetched).
    pub client_verifier_reloads: u64,
    /// Changed CA or CRL files that did not read or parse (the old stay).
    pub client_verifier_failures: u64,
    /// CRL fetches from `tls.client_crl_url` that succeeded (changed or not).
    pub crl_fetches: u64,
    /// CRL fetches that failed (network, HTTP status, unparsable body).
    pub crl_fetch_failures: u64,
    /// Unix time of the last successful CRL fetch; 0: none yet.
    pub crl_last_fetch_unix_secs: u64,
}

static SERVER_CERT_RELOADS: AtomicU64 = AtomicU64::new(0);
static SERVER_CERT_FAILURES: AtomicU64 = AtomicU64::new(0);
static CLIENT_VERIFIER_RELOADS: AtomicU64 = AtomicU64::new(0);
static CLIENT_VERIFIER_FAILURES: AtomicU64 = AtomicU64::new(0);
static CRL_FETCHES: AtomicU64 = AtomicU64::new(0);
static CRL_FETCH_FAILURES: AtomicU64 = AtomicU64::new(0);
static CRL_LAST_FETCH: AtomicU64 = AtomicU64::new(0);

/// The counters of every server configuration of this process.
pub fn reload_counts() -> ReloadCounts {
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    ReloadCounts {
        server_cert_reloads: get(&SERVER_CERT_RELOADS),
        server_cert_failures: get(&SERVER_CERT_FAILURES),
        client_verifier_reloads: get(&CLIENT_VERIFIER_RELOADS),
        client_verifier_failures: get(&CLIENT_VERIFIER_FAILURES),
        crl_fetches: get(&CRL_FETCHES),
        crl_fetch_failures: get(&CRL_FETCH_FAILURES),
        crl_last_fetch_unix_secs: get(&CRL_LAST_FETCH),
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The material of one server configuration and the watch that keeps it
/// current, not started yet.
pub(super) struct Live {
    pub cert: Arc<ServerCert>,
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub sessions: Arc<Sessions>,
    watch: Watch,
}

impl Live {
    /// Reads every file (errors name the key and the file) and fetches
    /// `tls.client_crl_url` once (a failure is logged; client certificates
    /// are refused until a fetch succeeds).
    pub fn load(settings: &TlsSettings, provider: &Arc<CryptoProvider>) -> anyhow::Result<Live> {
        let provider = Arc::clone(provider);
        let cert = Arc::new(ServerCert {
            current: RwLock::new(Arc::new(load_server_cert(settings, &provider)?)),
        });
        let sessions = Arc::new(Sessions::new());
        let mut watch = Watch {
            settings: settings.clone(),
            provider: Arc::clone(&provider),
            cert: Arc::downgrade(&cert),
            cert_seen: fingerprint(&[&settings.cert_file, &settings.key_file]),
            client: None,
        };
        let verifier: Arc<dyn ClientCertVerifier> = match &settings.client_ca_file {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(ca_file) => {
                let files = ClientFiles::load(ca_file, &settings.client_crl_files)?;
                // The files alone must make a verifier, whatever the URL gives.
                let from_files =
                    build_verifier(settings, &provider, &files.roots, files.crls.clone())
                        .map_err(|e| files.error(e))?;
                let mut seen = vec![ca_file.as_path()];
                seen.extend(settings.client_crl_files.iter().map(|p| p.as_path()));
                let mut client = ClientWatch {
                    verifier: Weak::new(),
                    sessions: Arc::downgrade(&sessions),
                    files_seen: fingerprint(&seen),
                    files,
                    url_crls: None,
                    next_fetch: Instant::now() + settings.crl_refresh_interval,
                };
                if let Some(url) = &settings.client_crl_url {
                    let roots = client.files.ca_certs.clone();
                    let fetched = std::thread::scope(|scope| {
                        scope
                            .spawn(|| fetch_blocking(url, &roots))
                            .join()
                            .unwrap_or_else(|_| Err(anyhow!("the CRL fetch panicked")))
                    });
                    client.took_fetch(settings, &provider, fetched);
                }
                let current = match &settings.client_crl_url {
                    Some(_) => client.build(settings, &provider),
                    None => Some(from_files),
                };
                let verifier = Arc::new(ClientVerifier {
                    require: settings.require_client_cert,
                    algorithms: provider.signature_verification_algorithms,
                    current: RwLock::new(current),
                });
                client.verifier = Arc::downgrade(&verifier);
                watch.client = Some(client);
                verifier
            }
        };
        Ok(Live {
            cert,
            verifier,
            sessions,
            watch,
        })
    }

    /// Starts the reloading thread.
    pub fn start(self) -> anyhow::Result<()> {
        let watch = self.watch;
        std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || watch.run())
            .context("starting the TLS reload thread")?;
        Ok(())
    }
}

/// The bridge's current certificate and key.
#[derive(Debug)]
pub(super) struct ServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Client certificates checked by the current `WebPkiClientVerifier`.
/// `None` while `tls.client_crl_url` has not delivered a CRL yet: every
/// certificate is refused then, since a revoked one could not be told.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    require: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    current: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.require
    }

    /// No hints: they would have to outlive a reload (rustls borrows them),
    /// and with none a client sends the certificate it has; a Puppet node
    /// has one.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownRevocationStatus,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The session cache, emptied when the client verifier changes: a resumed
/// session skips certificate verification, so a certificate revoked since
/// must not resume one.
#[derive(Debug)]
pub(super) struct Sessions {
    current: RwLock<Arc<ServerSessionMemoryCache>>,
}

impl Sessions {
    /// rustls' default size.
    const SIZE: usize = 256;

    fn new() -> Sessions {
        Sessions {
            current: RwLock::new(ServerSessionMemoryCache::new(Self::SIZE)),
        }
    }

    fn get(&self) -> Arc<ServerSessionMemoryCache> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn clear(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            ServerSessionMemoryCache::new(Self::SIZE);
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.get().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Sessions::get(self).get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        Sessions::get(self).take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// What the reloading thread compares and rebuilds.
struct Watch {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    cert: Weak<ServerCert>,
    cert_seen: u64,
    client: Option<ClientWatch>,
}

/// The client side of [`Watch`]: the last good files and fetched CRLs.
struct ClientWatch {
    verifier: Weak<ClientVerifier>,
    sessions: Weak<Sessions>,
    files_seen: u64,
    files: ClientFiles,
    /// The last good CRLs from `tls.client_crl_url`.
    url_crls: Option<Vec<CertificateRevocationListDer<'static>>>,
    next_fetch: Instant,
}

impl Watch {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "TLS files will not be reloaded: cannot start a runtime");
                return;
            }
        };
        loop {
            let mut pause = self.settings.reload_interval;
            if let Some(client) = &self.client {
                if self.settings.client_crl_url.is_some() {
                    let until_fetch = client.next_fetch.saturating_duration_since(Instant::now());
                    pause = pause.min(until_fetch.max(Duration::from_millis(100)));
                }
            }
            std::thread::sleep(pause);
            let Some(cert) = self.cert.upgrade() else {
                return;
            };
            self.reload_cert(&cert);
            drop(cert);
            if let Some(client) = &mut self.client {
                client.tick(&self.settings, &self.provider, &runtime);
            }
        }
    }

    fn reload_cert(&mut self, cert: &ServerCert) {
        let seen = fingerprint(&[&self.settings.cert_file, &self.settings.key_file]);
        if seen == self.cert_seen {
            return;
        }
        self.cert_seen = seen;
        match load_server_cert(&self.settings, &self.provider) {
            Ok(key) => {
                *cert.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                count(&SERVER_CERT_RELOADS);
                tracing::info!(
                    cert = %self.settings.cert_file.display(),
                    "TLS: server certificate reloaded"
                );
            }
            Err(error) => {
                count(&SERVER_CERT_FAILURES);
                tracing::error!("TLS: keeping the previous server certificate: {error:#}");
            }
        }
    }
}

impl ClientWatch {
    fn tick(
        &mut self,
        settings: &TlsSettings,
        provider: &Arc<CryptoProvider>,
        runtime: &tokio::runtime::Runtime,
    ) {
        let Some(verifier) = self.verifier.upgrade() else {
            return;
        };
        let mut changed = false;
        let ca_file = settings
            .client_ca_file
            .as_deref()
            .expect("a client watch has a CA file");
        let mut paths = vec![ca_file];
        paths.extend(settings.client_crl_files.iter().map(|p| p.as_path()));
        let seen = fingerprint(&paths);
        if seen != self.files_seen {
            self.files_seen = seen;
            let loaded = ClientFiles::load(ca_file, &settings.client_crl_files).and_then(|files| {
                let crls = self.crls_with(&files.crls);
                build_verifier(settings, provider, &files.roots, crls)
                    .map_err(|e| files.error(e))?;
                Ok(files)
            });
            match loaded {
                Ok(files) => {
                    self.files = files;
                    changed = true;
                }
                Err(error) => {
                    count(&CLIENT_VERIFIER_FAILURES);
                    tracing::error!("TLS: keeping the previous client CA and CRLs: {error:#}");
                }
            }
        }
        if let Some(url) = &settings.client_crl_url {
            if Instant::now() >= self.next_fetch {
                let fetched = runtime.block_on(fetch_crls(url, &self.files.ca_certs));
                changed |= self.took_fetch(settings, provider, fetched);
            }
        }
        if changed {
            if let Some(new) = self.build(settings, provider) {
                *verifier
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(new);
                if let Some(sessions) = self.sessions.upgrade() {
                    sessions.clear();
                }
                count(&CLIENT_VERIFIER_RELOADS);
                tracing::info!("TLS: client certificate verification reloaded");
            }
        }
    }

    /// Takes the result of a fetch; true when the CRLs changed. A failure
    /// keeps the last good CRLs and retries sooner while there are none.
    fn took_fetch(
        &mut self,
        settings: &TlsSettings,
        provider: &Arc<CryptoProvider>,
        fetched: anyhow::Result<Vec<CertificateRevocationListDer<'static>>>,
    ) -> bool {
        let url = settings
            .client_crl_url
            .as_ref()
            .map(|u| u.as_str())
            .unwrap_or_default();
        // Parse-checked here, so that a bad body is blamed on the URL.
        let fetched = fetched.and_then(|crls| {
            build_verifier(settings, provider, &self.files.roots, crls.clone())
                .map_err(|e| anyhow!("not a usable CRL: {e}"))?;
            Ok(crls)
        });
        let changed = match fetched {
            Ok(crls) => {
                count(&CRL_FETCHES);
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                CRL_LAST_FETCH.store(now, Ordering::Relaxed);
                let changed = self.url_crls.as_ref() != Some(&crls);
                if changed {
                    tracing::info!(url, crls = crls.len(), "TLS: CRLs fetched");
                }
                self.url_crls = Some(crls);
                changed
            }
            Err(error) => {
                count(&CRL_FETCH_FAILURES);
                if self.url_crls.is_some() {
                    tracing::warn!(
                        url,
                        "TLS: CRL fetch failed, keeping the last one: {error:#}"
                    );
                } else {
                    tracing::error!(
                        url,
                        "TLS: CRL fetch failed; client certificates are refused until one succeeds: {error:#}"
                    );
                }
                false
            }
        };
        let wait = if self.url_crls.is_some() {
            settings.crl_refresh_interval
        } else {
            settings.reload_interval
        };
        self.next_fetch = Instant::now() + wait;
        changed
    }

    /// The fetched CRLs first: for an issuer with several CRLs, webpki
    /// uses the first, and the CA's endpoint is the freshest source.
    fn crls_with(
        &self,
        file_crls: &[CertificateRevocationListDer<'static>],
    ) -> Vec<CertificateRevocationListDer<'static>> {
        let mut crls = self.url_crls.clone().unwrap_or_default();
        crls.extend(file_crls.iter().cloned());
        crls
    }

    /// The verifier of the current material; `None` while a configured
    /// URL has delivered nothing (or, never expected, the build fails).
    fn build(
        &self,
        settings: &TlsSettings,
        provider: &Arc<CryptoProvider>,
    ) -> Option<Arc<dyn ClientCertVerifier>> {
        if settings.client_crl_url.is_some() && self.url_crls.is_none() {
            return None;
        }
        let crls = self.crls_with(&self.files.crls);
        match build_verifier(settings, provider, &self.files.roots, crls) {
            Ok(verifier) => Some(verifier),
            Err(error) => {
                count(&CLIENT_VERIFIER_FAILURES);
                tracing::error!("TLS: client verifier: {error}");
                None
            }
        }
    }
}

/// A digest of the files' contents (an unreadable file counts as its own
/// content), to tell a change whatever the mtime says.
fn fingerprint(paths: &[&Path]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => {
                hasher.write_u8(1);
                hasher.write_usize(bytes.len());
                hasher.write(&bytes);
            }
            Err(_) => hasher.write_u8(0),
        }
    }
    hasher.finish()
}

/// A CRL body larger than this is refused (Puppet's lists a few hundred
/// bytes per revoked certificate).
const MAX_CRL_BYTES: usize = 64 << 20;

/// [`fetch_crls`] on a runtime of its own: callable from inside another.
fn fetch_blocking(
    url: &reqwest::Url,
    roots: &[CertificateDer<'static>],
) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the CRL fetch")?
        .block_on(fetch_crls(url, roots))
}

/// GETs the CRLs at `url` over HTTPS, trusting only `roots` (the Puppet CA
/// serves its CRL endpoint with a certificate it issued).
async fn fetch_crls(
    url: &reqwest::Url,
    roots: &[CertificateDer<'static>],
) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        // A fetch every few minutes: nothing to keep alive, and a pooled
        // connection would outlive the runtime of the first fetch.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("pvc-bridge/", env!("CARGO_PKG_VERSION")));
    for root in roots {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_der(root).context("tls.client_ca_file certificate")?,
        );
    }
    let client = builder.build().context("building the CRL client")?;
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "text/plain")
        .send()
        .await
        .context("request")?
        .error_for_status()?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.context("reading the body")? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_CRL_BYTES {
            bail!("body larger than {MAX_CRL_BYTES} bytes");
        }
    }
    parse_crls(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_changes_the_fingerprint_an_unchanged_one_does_not() {
        let ca = pvc_testkit::certs::PuppetCa::new("Puppet CA: fp.test").unwrap();
        let file = ca.dir().join("watched.pem");
        let missing = ca.dir().join("missing.pem");
        std::fs::write(&file, "one").unwrap();
        let before = fingerprint(&[&file, &missing]);
        assert_eq!(fingerprint(&[&file, &missing]), before);
        std::fs::write(&file, "two").unwrap();
        assert_ne!(fingerprint(&[&file, &missing]), before);
        // The same bytes split differently between files are another state.
        std::fs::write(&file, "").unwrap();
        std::fs::write(&missing, "one").unwrap();
        assert_ne!(fingerprint(&[&file, &missing]), before);
    }
}
