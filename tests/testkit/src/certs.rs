//! A Puppet-like certificate authority for tests: a root ("Puppet Root CA:
//! …") and the intermediate that signs ("Puppet CA: <host>"), as
//! `puppetserver ca setup` creates them, laid out like a Puppet ssldir
//! (`certs/ca.pem` = intermediate + root, `crl.pem` = both CRLs,
//! `certs/<certname>.pem`, `private_keys/<certname>.pem`).
//!
//! Node and server certificates are shaped like Puppet's: CN = certname,
//! SAN DNS:certname (plus any alt names), not a CA, key usage digital
//! signature + key encipherment, extended key usage server and client auth.
//! Keys are ECDSA P-256, not Puppet's RSA 4096: ring cannot generate RSA
//! keys, and the TLS code paths are the same.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};

/// One certificate authority; its files live in [`PuppetCa::dir`].
pub struct PuppetCa {
    dir: PathBuf,
    /// Removed on drop (only for the directories `new` created).
    owned: bool,
    root: Certificate,
    root_key: KeyPair,
    ca: Certificate,
    ca_key: KeyPair,
    next_serial: AtomicU64,
    crl_number: AtomicU64,
}

/// A certificate the CA issued, with its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certname: String,
    pub serial: u64,
    /// `certs/<certname>.pem`.
    pub cert: PathBuf,
    /// `private_keys/<certname>.pem` (PKCS#8).
    pub key: PathBuf,
}

impl Issued {
    /// Certificate and key in one PEM buffer (what `reqwest::Identity::from_pem` takes).
    pub fn identity_pem(&self) -> anyhow::Result<Vec<u8>> {
        let mut pem = read(&self.cert)?;
        pem.extend(read(&self.key)?);
        Ok(pem)
    }
}

impl PuppetCa {
    /// A new CA whose intermediate is named `name` (e.g. "Puppet CA:
    /// puppet.test"), in a fresh temporary directory removed on drop.
    pub fn new(name: &str) -> anyhow::Result<PuppetCa> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pvc-ca-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ca = PuppetCa::in_dir(name, &dir)?;
        ca.owned = true;
        Ok(ca)
    }

    /// Like `new`, in `dir` (created if missing, kept on drop).
    pub fn in_dir(name: &str, dir: &Path) -> anyhow::Result<PuppetCa> {
        for sub in ["certs", "private_keys"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let root_key = KeyPair::generate()?;
        let root_name = format!("Puppet Root CA: {:012x}", random_u64() & 0xffff_ffff_ffff);
        let root = ca_params(&root_name, 1).self_signed(&root_key)?;
        let ca_key = KeyPair::generate()?;
        let ca = ca_params(name, 2).signed_by(&ca_key, &root, &root_key)?;
        let this = PuppetCa {
            dir: dir.to_owned(),
            owned: false,
            root,
            root_key,
            ca,
            ca_key,
            next_serial: AtomicU64::new(3),
            crl_number: AtomicU64::new(1),
        };
        // Puppet's ca.pem: the signing CA first, then the root.
        write(
            &this.ca_file(),
            &format!("{}{}", this.ca.pem(), this.root.pem()),
        )?;
        write(&dir.join("ca_key.pem"), &this.ca_key.serialize_pem())?;
        this.crl(&[])?;
        Ok(this)
    }

    /// The directory holding every file (a Puppet ssldir layout).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `certs/ca.pem`: the intermediate and the root, PEM.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/ca.pem")
    }

    /// `crl.pem`: the CRLs of the intermediate and the root, as last
    /// written by [`PuppetCa::crl`] (none revoked until then).
    pub fn crl_file(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// A server certificate whose certname is the first of `names` and
    /// whose SANs are all of them (IP addresses become IP SANs).
    pub fn issue_server(&self, names: &[&str]) -> anyhow::Result<Issued> {
        let certname = names.first().context("a server needs a name")?;
        self.issue(certname, names)
    }

    /// A node certificate: CN and SAN DNS = `certname`.
    pub fn issue_node(&self, certname: &str) -> anyhow::Result<Issued> {
        self.issue(certname, &[certname])
    }

    /// Writes `crl.pem` revoking `revoked` (issued by this CA) and returns
    /// its path.
    pub fn crl(&self, revoked: &[&Issued]) -> anyhow::Result<PathBuf> {
        let path = self.crl_file();
        write(&path, &self.crl_pem(revoked)?)?;
        Ok(path)
    }

    /// The CRLs of the intermediate (revoking `revoked`) and the root, PEM,
    /// as the CA's `certificate_revocation_list/ca` endpoint serves them;
    /// each call has the next CRL number.
    pub fn crl_pem(&self, revoked: &[&Issued]) -> anyhow::Result<String> {
        let number = self.crl_number.fetch_add(1, Ordering::Relaxed);
        let ca_crl = crl_params(number, revoked).signed_by(&self.ca, &self.ca_key)?;
        let root_crl = crl_params(number, &[]).signed_by(&self.root, &self.root_key)?;
        Ok(format!("{}{}", ca_crl.pem()?, root_crl.pem()?))
    }

    fn issue(&self, certname: &str, alt_names: &[&str]) -> anyhow::Result<Issued> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut names: Vec<String> = vec![certname.to_owned()];
        names.extend(
            alt_names
                .iter()
                .filter(|n| **n != certname)
                .map(|n| n.to_string()),
        );
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, certname);
        params.serial_number = Some(SerialNumber::from(serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        let issued = Issued {
            certname: certname.to_owned(),
            serial,
            cert: self.dir.join(format!("certs/{certname}.pem")),
            key: self.dir.join(format!("private_keys/{certname}.pem")),
        };
        write(&issued.cert, &cert.pem())?;
        write(&issued.key, &key.serialize_pem())?;
        Ok(issued)
    }
}

impl Drop for PuppetCa {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn ca_params(name: &str, serial: u64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.serial_number = Some(SerialNumber::from(serial));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    params
}

fn crl_params(number: u64, revoked: &[&Issued]) -> CertificateRevocationListParams {
    CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|cert| RevokedCertParams {
                serial_number: SerialNumber::from(cert.serial),
                revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
}

/// Enough to tell two test CAs apart by name; not for secrets.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// Replaces `path` at once (a new file renamed over it), as certificate
/// tooling should, so a reader never sees half a file.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
