//! The status API client: rustls, the Puppet CA as the only root and the
//! bridge's Puppet certificate as client identity, all read from PEM files
//! once, at start, so a bad file stops the start with its name.

use std::path::Path;

use anyhow::{bail, Context};

use super::TlsFiles;

/// One client for every server: connections are pooled per host. No
/// timeouts here: the poller bounds each whole poll itself.
pub(super) fn client(tls: Option<&TlsFiles>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        // The status API does not redirect; following one could leak the
        // client certificate's use to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pvc-bridge/", env!("CARGO_PKG_VERSION")));
    let Some(tls) = tls else {
        return builder.build().context("building the status API client");
    };

    let ca_pem = read(&tls.ca_file)?;
    let roots = reqwest::Certificate::from_pem_bundle(&ca_pem)
        .with_context(|| format!("{}: not PEM certificates", tls.ca_file.display()))?;
    if roots.is_empty() {
        bail!("{}: no certificate in the file", tls.ca_file.display());
    }
    // Only the Puppet CA: a public CA must not vouch for a puppetserver.
    builder = builder.tls_built_in_root_certs(false);
    for root in roots {
        builder = builder.add_root_certificate(root);
    }

    let mut files = tls.ca_file.display().to_string();
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let cert_pem = read(cert_file)?;
            let certs = reqwest::Certificate::from_pem_bundle(&cert_pem)
                .with_context(|| format!("{}: not PEM certificates", cert_file.display()))?;
            if certs.is_empty() {
                bail!("{}: no certificate in the file", cert_file.display());
            }
            let key_pem = read(key_file)?;
            if !has_private_key(&key_pem) {
                bail!(
                    "{}: no PEM private key (RSA, EC or PKCS#8) in the file",
                    key_file.display()
                );
            }
            let mut identity_pem = cert_pem;
            identity_pem.push(b'\n');
            identity_pem.extend_from_slice(&key_pem);
            let identity = reqwest::Identity::from_pem(&identity_pem).with_context(|| {
                format!(
                    "client identity from {} and {}",
                    cert_file.display(),
                    key_file.display()
                )
            })?;
            builder = builder.identity(identity);
            files = format!("{files}, {}, {}", cert_file.display(), key_file.display());
        }
        (None, None) => {}
        (Some(file), None) | (None, Some(file)) => bail!(
            "a client certificate needs both cert_file and key_file; only {} is given",
            file.display()
        ),
    }
    // rustls checks the certificates and the key here.
    builder
        .build()
        .with_context(|| format!("building the status API client from {files}"))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The PEM labels `reqwest::Identity::from_pem` takes as a key.
fn has_private_key(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    [
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
    ]
    .iter()
    .any(|label| text.contains(label))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/servers/testdata")
            .join(name)
    }

    fn files(ca: &str, cert: Option<&str>, key: Option<&str>) -> TlsFiles {
        TlsFiles {
            ca_file: testdata(ca),
            cert_file: cert.map(testdata),
            key_file: key.map(testdata),
        }
    }

    fn error_text(tls: &TlsFiles) -> String {
        match client(Some(tls)) {
            Ok(_) => panic!("expected an error for {tls:?}"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn builds_without_tls_files() {
        client(None).unwrap();
    }

    #[test]
    fn builds_with_the_ca_alone_and_with_a_client_identity() {
        client(Some(&files("ca.pem", None, None))).unwrap();
        let identity = files("ca.pem", Some("bridge.pem"), Some("bridge.key"));
        client(Some(&identity)).unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let text = error_text(&files("nowhere.pem", None, None));
        assert!(text.starts_with("reading "), "{text}");
        assert!(text.contains("testdata/nowhere.pem"), "{text}");
        let text = error_text(&files("ca.pem", Some("bridge.pem"), Some("nowhere.key")));
        assert!(text.contains("testdata/nowhere.key"), "{text}");
    }

    #[test]
    fn a_file_without_what_it_should_hold_is_named() {
        // The README is no certificate.
        let text = error_text(&files("README.md", None, None));
        assert!(
            text.ends_with("testdata/README.md: no certificate in the file"),
            "{text}"
        );
        // A certificate where the key should be.
        let text = error_text(&files("ca.pem", Some("bridge.pem"), Some("ca.pem")));
        assert!(
            text.ends_with("testdata/ca.pem: no PEM private key (RSA, EC or PKCS#8) in the file"),
            "{text}"
        );
        // A key where the certificate should be.
        let text = error_text(&files("ca.pem", Some("bridge.key"), Some("bridge.key")));
        assert!(
            text.ends_with("testdata/bridge.key: no certificate in the file"),
            "{text}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let text = error_text(&files("ca.pem", Some("ca.pem"), Some("bridge.key")));
        assert!(
            text.starts_with("building the status API client from "),
            "{text}"
        );
        assert!(text.contains("testdata/bridge.key: "), "{text}");
        assert!(text.contains("KeyMismatch"), "{text}");
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let text = error_text(&files("ca.pem", Some("bridge.pem"), None));
        assert!(
            text.starts_with("a client certificate needs both cert_file and key_file; only "),
            "{text}"
        );
        assert!(text.ends_with("testdata/bridge.pem is given"), "{text}");
    }
}
