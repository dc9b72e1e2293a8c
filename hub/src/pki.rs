//! The district's certificates: a CA, the hub's server certificate, one client
//! certificate per community device (and per reviewer), and a revocation list the hub
//! enforces at the TLS handshake.
//!
//! A device's identity is a URI in its certificate's subject alternative names:
//! `urn:fivestar:community:<community>:device:<device>`, or
//! `urn:fivestar:reviewer:<name>` for a district reviewer. The hub reads identity from
//! there and nowhere else (not from the free-text common name).
//!
//! Files in the PKI folder: `ca.pem`, `ca.key`, `hub.pem`, `hub.key`, `crl.pem`, and
//! `issued.json` (what was issued and revoked, so `revoke` can find serial numbers).
//! Private keys are written with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use fivestar_core::standard::is_key;
use fivestar_core::{Role, Writer};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `init` would overwrite an existing CA.
    #[error("{path} exists already: the district CA is set up; refusing to replace it")]
    AlreadyInitialised {
        /// The CA certificate's path.
        path: PathBuf,
    },
    /// The CA is missing.
    #[error("no district CA in {dir}: run `fivestar-hub pki init` first")]
    NoCa {
        /// The PKI folder.
        dir: PathBuf,
    },
    /// A name is not usable in a certificate identity.
    #[error("{what} {name:?} must be 1 to 40 characters of a-z, 0-9 and '-'")]
    BadName {
        /// Which name.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// Nothing was issued to this identity.
    #[error("no certificate was issued to {identity}")]
    NotIssued {
        /// The identity URI.
        identity: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// `issued.json` is damaged.
    #[error("{path} is damaged: {message}")]
    Index {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// The identity URI of a writer.
pub fn identity_uri(writer: &Writer) -> String {
    match writer {
        Writer::Device { community, device } => {
            format!("urn:fivestar:community:{community}:device:{device}")
        }
        Writer::Reviewer { name, .. } => format!("urn:fivestar:reviewer:{name}"),
    }
}

/// Reads the writer from an identity URI; `None` when it is not one of ours. A
/// reviewer's role is not in the certificate: the hub gives it from `hub.toml`
/// (`HubStore::authoritative`) before anything is written; until then it reads
/// as the office.
pub fn parse_identity_uri(uri: &str) -> Option<Writer> {
    let rest = uri.strip_prefix("urn:fivestar:")?;
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        ["community", community, "device", device] if is_key(community) && is_key(device) => {
            Some(Writer::Device { community: community.to_string(), device: device.to_string() })
        }
        ["reviewer", name] if is_key(name) => {
            Some(Writer::Reviewer { name: name.to_string(), role: Role::Office })
        }
        _ => None,
    }
}

/// Reads the writer from a DER certificate's URI subject alternative names.
pub fn writer_from_certificate(der: &[u8]) -> Option<Writer> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => parse_identity_uri(uri),
        _ => None,
    })
}

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// Serial number, hex.
    pub serial: String,
    /// The identity URI in the certificate.
    pub identity: String,
    /// When it was issued, RFC 3339.
    pub issued_at: String,
    /// When it was revoked, RFC 3339, if it was.
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    crl_number: u64,
    issued: Vec<Issued>,
}

/// The district's PKI folder.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// The PKI in `dir` (nothing is read until asked).
    pub fn new(dir: &Path) -> Pki {
        Pki { dir: dir.to_path_buf() }
    }

    /// The CA certificate file.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The hub's certificate file.
    pub fn hub_cert(&self) -> PathBuf {
        self.dir.join("hub.pem")
    }
    /// The hub's private key file.
    pub fn hub_key(&self) -> PathBuf {
        self.dir.join("hub.key")
    }
    /// The revocation list file.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    fn index_path(&self) -> PathBuf {
        self.dir.join("issued.json")
    }

    /// Creates the CA, the hub's certificate (valid for `hub_names`: DNS names and IP
    /// addresses) and an empty revocation list. Refuses to replace an existing CA.
    pub fn init(&self, hub_names: &[String]) -> Result<(), PkiError> {
        if self.ca_cert().exists() {
            return Err(PkiError::AlreadyInitialised { path: self.ca_cert() });
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| PkiError::Io { path: self.dir.clone(), source })?;
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = name("Weidu District fivestar CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = now - Duration::hours(1);
        ca.not_after = now + Duration::days(3650);
        ca.serial_number = Some(random_serial());
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let hub_key = KeyPair::generate()?;
        let mut hub = CertificateParams::new(hub_names.to_vec())?;
        hub.distinguished_name = name("fivestar hub");
        hub.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        hub.not_before = now - Duration::hours(1);
        hub.not_after = now + Duration::days(730);
        hub.serial_number = Some(random_serial());
        let hub_cert = hub.signed_by(&hub_key, &issuer)?;

        write_private(&self.ca_key(), &issuer_key_pem(&issuer))?;
        write_public(&self.ca_cert(), &ca_cert.pem())?;
        write_private(&self.hub_key(), &hub_key.serialize_pem())?;
        write_public(&self.hub_cert(), &hub_cert.pem())?;
        self.save_index(&Index::default())?;
        self.write_crl(&issuer, &Index::default())?;
        Ok(())
    }

    /// Issues a client certificate for `writer` into `out`: `device.pem`, `device.key`
    /// (0600) and a copy of `ca.pem`, ready for a node's `certs/` folder.
    pub fn issue(&self, writer: &Writer, out: &Path) -> Result<Issued, PkiError> {
        check_names(writer)?;
        let issuer = self.issuer()?;
        let now = OffsetDateTime::now_utc();
        let uri = identity_uri(writer);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&writer.to_string());
        params.subject_alt_names = vec![SanType::URI(uri.clone().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(730);
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let cert = params.signed_by(&key, &issuer)?;
        std::fs::create_dir_all(out)
            .map_err(|source| PkiError::Io { path: out.to_path_buf(), source })?;
        write_private(&out.join("device.key"), &key.serialize_pem())?;
        write_public(&out.join("device.pem"), &cert.pem())?;
        let ca = std::fs::read_to_string(self.ca_cert())
            .map_err(|source| PkiError::Io { path: self.ca_cert(), source })?;
        write_public(&out.join("ca.pem"), &ca)?;
        let issued = Issued {
            serial: hex_serial(&serial),
            identity: uri,
            issued_at: rfc3339(now),
            revoked_at: None,
        };
        let mut index = self.load_index()?;
        index.issued.push(issued.clone());
        self.save_index(&index)?;
        Ok(issued)
    }

    /// Revokes every certificate issued to `writer` and rewrites the revocation list.
    /// Returns how many were newly revoked.
    pub fn revoke(&self, writer: &Writer) -> Result<usize, PkiError> {
        let issuer = self.issuer()?;
        let uri = identity_uri(writer);
        let mut index = self.load_index()?;
        if !index.issued.iter().any(|i| i.identity == uri) {
            return Err(PkiError::NotIssued { identity: uri });
        }
        let now = rfc3339(OffsetDateTime::now_utc());
        let mut count = 0;
        for issued in
            index.issued.iter_mut().filter(|i| i.identity == uri && i.revoked_at.is_none())
        {
            issued.revoked_at = Some(now.clone());
            count += 1;
        }
        index.crl_number += 1;
        self.write_crl(&issuer, &index)?;
        self.save_index(&index)?;
        Ok(count)
    }

    /// Every certificate issued, oldest first.
    pub fn issued(&self) -> Result<Vec<Issued>, PkiError> {
        Ok(self.load_index()?.issued)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        if !self.ca_cert().exists() {
            return Err(PkiError::NoCa { dir: self.dir.clone() });
        }
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        let key = KeyPair::from_pem(&read(self.ca_key())?)?;
        Ok(Issuer::from_ca_cert_pem(&read(self.ca_cert())?, key)?)
    }

    fn write_crl(&self, issuer: &Issuer<'_, KeyPair>, index: &Index) -> Result<(), PkiError> {
        let now = OffsetDateTime::now_utc();
        let revoked = index
            .issued
            .iter()
            .filter(|i| i.revoked_at.is_some())
            .filter_map(|i| hex::decode(&i.serial).ok())
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(365),
            crl_number: SerialNumber::from(index.crl_number + 1),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(issuer)?;
        write_public(&self.crl(), &crl.pem()?)
    }

    fn load_index(&self) -> Result<Index, PkiError> {
        let path = self.index_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|err| PkiError::Index { path, message: err.to_string() }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(source) => Err(PkiError::Io { path, source }),
        }
    }

    fn save_index(&self, index: &Index) -> Result<(), PkiError> {
        let text = serde_json::to_string_pretty(index).unwrap_or_default();
        write_public(&self.index_path(), &text)
    }
}

fn check_names(writer: &Writer) -> Result<(), PkiError> {
    let bad = |what, name: &str| PkiError::BadName { what, name: name.to_string() };
    match writer {
        Writer::Device { community, device } => {
            if !is_key(community) {
                return Err(bad("community id", community));
            }
            if !is_key(device) {
                return Err(bad("device name", device));
            }
        }
        Writer::Reviewer { name, .. } => {
            if !is_key(name) {
                return Err(bad("reviewer id", name));
            }
        }
    }
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Weidu District Five-Star campaign");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> SerialNumber {
    // Positive 16-byte serial: clear the top bit.
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn hex_serial(serial: &SerialNumber) -> String {
    hex::encode(serial.to_bytes())
}

fn issuer_key_pem(issuer: &Issuer<'_, KeyPair>) -> String {
    issuer.key().serialize_pem()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn write_public(path: &Path, text: &str) -> Result<(), PkiError> {
    write_with_mode(path, text, 0o644)
}

fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    write_with_mode(path, text, 0o600)
}

/// Writes a whole file through a temporary one; the mode is set before any byte of a
/// private key is written.
fn write_with_mode(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_round_trip_and_foreign_ones_are_refused() {
        let device = Writer::Device { community: "fangou".into(), device: "d1".into() };
        assert_eq!(identity_uri(&device), "urn:fivestar:community:fangou:device:d1");
        assert_eq!(parse_identity_uri(&identity_uri(&device)), Some(device));
        let reviewer = Writer::Reviewer { name: "wangmin".into(), role: Role::Office };
        assert_eq!(parse_identity_uri(&identity_uri(&reviewer)), Some(reviewer));
        for bad in [
            "urn:other:community:a:device:b",
            "urn:fivestar:community:A B:device:d1",
            "urn:fivestar:community:a:device:d1:extra",
            "urn:fivestar:reviewer:",
        ] {
            assert_eq!(parse_identity_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn issued_certificates_carry_the_identity_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        pki.init(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(matches!(pki.init(&[]), Err(PkiError::AlreadyInitialised { .. })));
        let device = Writer::Device { community: "fangou".into(), device: "d1".into() };
        let out = dir.path().join("out");
        let issued = pki.issue(&device, &out).unwrap();
        let pem = std::fs::read(out.join("device.pem")).unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(writer_from_certificate(&der), Some(device.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [out.join("device.key"), pki.hub_key(), pki.ca_key()] {
                let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        assert_eq!(pki.revoke(&device).unwrap(), 1);
        assert_eq!(pki.issued().unwrap()[0].serial, issued.serial);
        assert!(pki.issued().unwrap()[0].revoked_at.is_some());
        let stranger = Writer::Device { community: "fangou".into(), device: "d9".into() };
        assert!(matches!(pki.revoke(&stranger), Err(PkiError::NotIssued { .. })));
        let bad = Writer::Device { community: "fangou".into(), device: "D 1".into() };
        assert!(matches!(pki.issue(&bad, &out), Err(PkiError::BadName { .. })));
    }
}
