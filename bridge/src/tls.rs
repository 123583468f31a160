//! HTTPS: the rustls server configuration built from `[tls]` (the bridge's
//! certificate and key; client certificates verified against the Puppet CA
//! and its CRLs), and the verified client's certname handed to handlers.
//!
//! TLS 1.2 and 1.3 with ring, the provider reqwest uses too. Client
//! certificates are checked by rustls' `WebPkiClientVerifier`: chain to a
//! root of `client_ca_file` (Puppet's `ca.pem` holds the intermediate and the
//! root; both are trust anchors), extended key usage client auth, validity,
//! and with CRLs given, not revoked: a certificate whose issuer has no CRL
//! among them is refused rather than assumed good.
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
use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::certname::Certname;
use crate::config::TlsSettings;

/// The certname of the connection's verified client certificate (its
/// subject CN). Absent on plain HTTP, for anonymous clients, and when the
/// CN is not a valid certname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertname(pub Certname);

/// Reads and parses every file of `settings` into a server configuration.
/// Errors name the key and the file.
pub fn server_config(settings: &TlsSettings) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("tls.cert_file", &settings.cert_file)?;
    let key = read_key("tls.key_file", &settings.key_file)?;
    let verifier = match &settings.client_ca_file {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls.client_ca_file", ca_file)? {
                roots.add(cert).with_context(|| {
                    format!(
                        "tls.client_ca_file: {}: not a CA certificate",
                        ca_file.display()
                    )
                })?;
            }
            let mut crls = Vec::new();
            for file in &settings.client_crl_files {
                crls.extend(read_crls(file)?);
            }
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .with_crls(crls);
            if !settings.require_client_cert {
                builder = builder.allow_unauthenticated();
            }
            builder.build().with_context(|| {
                format!(
                    "tls.client_ca_file / tls.client_crl_files: {}",
                    ca_file.display()
                )
            })?
        }
    };
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "tls.key_file: {} does not match tls.cert_file {}",
                settings.key_file.display(),
                settings.cert_file.display()
            )
        })
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

fn read_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    const KEY: &str = "tls.client_crl_files";
    let pem = read_file(KEY, path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{KEY}: {}: not PEM CRLs ({e})", path.display()))?;
    if crls.is_empty() {
        return Err(anyhow!(
            "{KEY}: {}: no CRL in it (PEM expected)",
            path.display()
        ));
    }
    Ok(crls)
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
}
