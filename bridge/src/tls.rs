//! HTTPS: the rustls server configuration built from `[tls]` (the bridge's
//! certificate and key; client certificates verified against the Puppet CA
//! and its CRLs), kept current while the bridge runs, and the verified
//! client's certname handed to handlers.
//!
//! TLS 1.2 and 1.3 with ring, the provider reqwest uses too. Client
//! certificates are checked by rustls' `WebPkiClientVerifier`: chain to a
//! root of `client_ca_file` (Puppet's `ca.pem` holds the intermediate and the
//! root; both are trust anchors), extended key usage client auth, validity,
//! and with CRLs given, not revoked: a certificate whose issuer has no CRL
//! among them is refused rather than assumed good.
//!
//! The files are read again when they change and `tls.client_crl_url` is
//! fetched periodically, without a restart (see [`reload`]).
//!
//! The certname of a verified peer certificate is its subject's common name
//! (Puppet puts the certname there); [`on_connect`] stores it in the
//! connection's data as [`PeerCertname`], read with
//! `HttpRequest::conn_data::<PeerCertname>()`.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use anyhow::{anyhow, bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, StoresServerSessions, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::certname::Certname;
use crate::config::TlsSettings;

pub mod reload;

pub use reload::{reload_counts, ReloadCounts};

/// The certname of the connection's verified client certificate (its
/// subject CN). Absent on plain HTTP, for anonymous clients, and when the
/// CN is not a valid certname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertname(pub Certname);

/// Reads and parses every file of `settings` (what `check-config` and
/// start-up validate); fetches nothing and starts nothing. Errors name the
/// key and the file.
pub fn check(settings: &TlsSettings) -> anyhow::Result<()> {
    let provider = provider();
    load_server_cert(settings, &provider)?;
    if let Some(ca_file) = &settings.client_ca_file {
        let files = ClientFiles::load(ca_file, &settings.client_crl_files)?;
        build_verifier(settings, &provider, &files.roots, files.crls.clone())
            .map_err(|e| files.error(e))?;
    }
    Ok(())
}

/// The server configuration for `settings`: every file read and parsed
/// (errors name the key and the file), the CRLs of `tls.client_crl_url`
/// fetched once (a failure is logged; client certificates are then refused
/// until a fetch succeeds), and the reloading thread started. The thread
/// ends after the configuration (and every server holding it) is dropped.
pub fn server_config(settings: &TlsSettings) -> anyhow::Result<ServerConfig> {
    let provider = provider();
    let live = reload::Live::load(settings, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::clone(&live.verifier))
        .with_cert_resolver(Arc::clone(&live.cert) as Arc<dyn ResolvesServerCert>);
    config.session_storage = Arc::clone(&live.sessions) as Arc<dyn StoresServerSessions>;
    live.start()?;
    Ok(config)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `tls.client_ca_file` and `tls.client_crl_files`, parsed.
struct ClientFiles {
    ca_file: std::path::PathBuf,
    ca_certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

impl ClientFiles {
    fn load(ca_file: &Path, crl_files: &[std::path::PathBuf]) -> anyhow::Result<ClientFiles> {
        let ca_certs = read_certs("tls.client_ca_file", ca_file)?;
        let mut roots = RootCertStore::empty();
        for cert in &ca_certs {
            roots.add(cert.clone()).with_context(|| {
                format!(
                    "tls.client_ca_file: {}: not a CA certificate",
                    ca_file.display()
                )
            })?;
        }
        let mut crls = Vec::new();
        for file in crl_files {
            let pem = read_file("tls.client_crl_files", file)?;
            crls.extend(
                parse_crls(&pem)
                    .map_err(|e| anyhow!("tls.client_crl_files: {}: {e}", file.display()))?,
            );
        }
        Ok(ClientFiles {
            ca_file: ca_file.to_owned(),
            ca_certs,
            roots: Arc::new(roots),
            crls,
        })
    }

    fn error(&self, error: rustls::server::VerifierBuilderError) -> anyhow::Error {
        anyhow!(
            "tls.client_ca_file / tls.client_crl_files: {}: {error}",
            self.ca_file.display()
        )
    }
}

fn build_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::server::VerifierBuilderError> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), Arc::clone(provider))
            .with_crls(crls);
    if !settings.require_client_cert {
        builder = builder.allow_unauthenticated();
    }
    builder.build()
}

fn load_server_cert(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = read_certs("tls.cert_file", &settings.cert_file)?;
    let key = read_key("tls.key_file", &settings.key_file)?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "tls.key_file: {} does not match tls.cert_file {}",
            settings.key_file.display(),
            settings.cert_file.display()
        )
    })
}

/// PEM CRLs (what Puppet serves and writes), or one DER CRL.
fn parse_crls(bytes: &[u8]) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("not PEM CRLs ({e})"))?;
    if !crls.is_empty() {
        return Ok(crls);
    }
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())]);
    }
    bail!("no CRL in it (PEM expected)")
}

/// `HttpServer::on_connect` hook: stores the verified client's certname as
/// [`PeerCertname`]. rustls has verified the chain before this runs.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    let (_, session) = stream.get_ref();
    let Some(leaf) = session.peer_certificates().and_then(|chain| chain.first()) else {
        return;
    };
    match subject_common_name(leaf).map(|cn| cn.parse::<Certname>()) {
        Some(Ok(certname)) => {
            data.insert(PeerCertname(certname));
        }
        Some(Err(error)) => {
            tracing::warn!(%error, "client certificate's CN is not a certname")
        }
        None => tracing::warn!("client certificate has no common name"),
    }
}

/// The subject's common name (OID 2.5.4.3) of a DER certificate. `None`
/// when absent, not a string, or given twice (readers disagree on which
/// one counts, and a Puppet CA never signs such a subject).
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (_, certificate, _) = der::read(cert)?;
    let (_, mut tbs, _) = der::read(certificate)?;
    // version [0] (optional), serial, signature, issuer, validity, subject
    let (tag, _, rest) = der::read(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = der::read(tbs)?.2;
    }
    let (tag, mut subject, _) = der::read(tbs)?;
    if tag != der::SEQUENCE {
        return None;
    }
    let mut found = None;
    while !subject.is_empty() {
        let (_, mut set, rest) = der::read(subject)?;
        subject = rest;
        while !set.is_empty() {
            let (_, attribute, rest) = der::read(set)?;
            set = rest;
            let (tag, oid, value) = der::read(attribute)?;
            if tag != der::OID || oid != CN {
                continue;
            }
            if found.is_some() {
                return None;
            }
            let (tag, text, _) = der::read(value)?;
            found = match tag {
                der::UTF8_STRING | der::PRINTABLE_STRING | der::IA5_STRING => {
                    Some(std::str::from_utf8(text).ok()?.to_owned())
                }
                _ => return None,
            };
        }
    }
    found
}

/// Just enough DER to walk to a certificate's subject.
mod der {
    pub const SEQUENCE: u8 = 0x30;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;

    /// One element: (tag, contents, what follows). Single-byte tags only.
    pub fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let octets = usize::from(first & 0x7f);
            if octets == 0 || octets > 4 || rest.len() < octets {
                return None;
            }
            let (bytes, after) = rest.split_at(octets);
            rest = after;
            bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
}

fn read_file(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
}

fn read_certs(key: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{key}: {}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{key}: {}: no certificate in it (PEM expected)",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(key: &str, path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_file(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| anyhow!("{key}: {}: no private key in it ({e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["x.example.com".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in names {
            params.distinguished_name.push(ty.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_common_name_is_read_from_the_subject() {
        let der = cert_with(&[
            (rcgen::DnType::OrganizationName, "Example"),
            (rcgen::DnType::CommonName, "web01.example.com"),
        ]);
        assert_eq!(
            subject_common_name(&der).as_deref(),
            Some("web01.example.com")
        );
    }

    #[test]
    fn a_subject_without_common_name_has_none() {
        let der = cert_with(&[(rcgen::DnType::OrganizationName, "web01.example.com")]);
        assert_eq!(subject_common_name(&der), None);
    }

    #[test]
    fn two_common_names_are_ambiguous() {
        let mut der = cert_with(&[
            (rcgen::DnType::OrganizationName, "db01.example.com"),
            (rcgen::DnType::CommonName, "web01.example.com"),
        ]);
        // Turn the subject's organization (2.5.4.10; the last one, after
        // the issuer's) into a second CN; the signature does not matter here.
        let organization = [0x06, 0x03, 0x55, 0x04, 0x0a];
        let at = der
            .windows(organization.len())
            .rposition(|w| w == organization)
            .expect("organization attribute");
        der[at + 4] = 0x03;
        assert_eq!(subject_common_name(&der), None);
    }

    #[test]
    fn truncated_certificates_have_none() {
        let der = cert_with(&[(rcgen::DnType::CommonName, "web01.example.com")]);
        for len in [0, 1, 2, 10, der.len() / 2] {
            assert_eq!(subject_common_name(&der[..len]), None, "{len} bytes");
        }
    }

    #[test]
    fn crls_are_read_from_pem_or_der() {
        let ca = pvc_testkit::certs::PuppetCa::new("Puppet CA: crl.test").unwrap();
        let pem = ca.crl_pem(&[]).unwrap();
        let crls = parse_crls(pem.as_bytes()).expect("PEM CRLs");
        assert_eq!(crls.len(), 2, "the intermediate's and the root's");
        let der = parse_crls(crls[0].as_ref()).expect("one DER CRL");
        assert_eq!(der, vec![crls[0].clone()]);
        for bad in [&b""[..], b"not a CRL\n", b"-----BEGIN X509 CRL-----\n!!\n"] {
            assert!(parse_crls(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_reads_the_files_but_fetches_nothing() {
        let ca = pvc_testkit::certs::PuppetCa::new("Puppet CA: check.test").unwrap();
        let server = ca.issue_server(&["localhost"]).unwrap();
        let settings = TlsSettings {
            cert_file: server.cert.clone(),
            key_file: server.key.clone(),
            client_ca_file: Some(ca.ca_file()),
            client_crl_files: vec![ca.crl_file()],
            // Nothing listens there; check must not care.
            client_crl_url: Some("https://127.0.0.1:9/crl".parse().unwrap()),
            require_client_cert: true,
            reload_interval: TlsSettings::DEFAULT_RELOAD,
            crl_refresh_interval: TlsSettings::DEFAULT_CRL_REFRESH,
        };
        check(&settings).expect("valid files");
        let garbage = ca.dir().join("garbage.pem");
        std::fs::write(&garbage, "not a CRL\n").unwrap();
        let broken = TlsSettings {
            client_crl_files: vec![garbage.clone()],
            ..settings
        };
        let error = format!("{:#}", check(&broken).expect_err("broken CRL file"));
        assert!(
            error.contains("tls.client_crl_files") && error.contains(&*garbage.to_string_lossy()),
            "{error}"
        );
    }
}
