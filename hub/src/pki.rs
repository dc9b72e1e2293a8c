//! The district's certificates: a CA, the hub's server certificate, one client
//! certificate per community device (and per reviewer), and a revocation list the hub
//! enforces at the TLS handshake.
//!
//! A device's identity is a URI in its certificate's subject alternative names:
//! `urn:fivestar:community:<community>:device:<device>`, or
//! `urn:fivestar:reviewer:<name>` for a district reviewer. The hub reads identity from
//! there and nowhere else (not from the free-text common name).
//!
//! Files in the PKI folder (what the running hub needs): `ca.pem`, `hub.pem`,
//! `hub.key`, `crl.pem`. Files in the CA folder (what only `pki` commands need, and
//! what must never sit beside the hub's data): `ca.key` and `issued.json` (what was
//! issued and revoked, so `revoke` can find serial numbers). The CA folder can live on
//! an offline machine or removable disk; `pki init/issue/revoke` take it with
//! `--ca-dir`. Private keys are written with mode 0600. Commands that change the CA
//! folder hold an exclusive lock on it, so concurrent `pki issue` runs never lose an
//! entry of `issued.json`.

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
    /// The CA's private key is not where the command looked.
    #[error(
        "the district CA's key is not at {path}: give the CA folder with --ca-dir (or FIVESTAR_CA_DIR), e.g. the offline disk it is kept on"
    )]
    NoCaKey {
        /// Where it was looked for.
        path: PathBuf,
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
    ca_dir: PathBuf,
}

impl Pki {
    /// The PKI in `dir`, with the CA's key in the same folder (nothing is read until
    /// asked). For tests and tools; a real district keeps the key apart
    /// ([`Pki::with_ca_dir`]).
    pub fn new(dir: &Path) -> Pki {
        Pki { dir: dir.to_path_buf(), ca_dir: dir.to_path_buf() }
    }

    /// The PKI in `dir`, with the CA's private key and its index in `ca_dir`.
    pub fn with_ca_dir(dir: &Path, ca_dir: &Path) -> Pki {
        Pki { dir: dir.to_path_buf(), ca_dir: ca_dir.to_path_buf() }
    }

    /// The folder that holds the CA's private key.
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// True when the CA key is still in the hub's PKI folder (installed before the key
    /// was moved out); it is used from there until an operator moves it.
    pub fn key_beside_hub(&self) -> bool {
        self.ca_dir != self.dir
            && !self.ca_dir.join("ca.key").exists()
            && self.dir.join("ca.key").exists()
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
        if self.key_beside_hub() { self.dir.join("ca.key") } else { self.ca_dir.join("ca.key") }
    }
    fn index_path(&self) -> PathBuf {
        if self.key_beside_hub() {
            self.dir.join("issued.json")
        } else {
            self.ca_dir.join("issued.json")
        }
    }

    /// An exclusive lock on the CA folder, held while a command changes it.
    fn lock(&self) -> Result<std::fs::File, PkiError> {
        let dir = self.ca_key().parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir)
            .map_err(|source| PkiError::Io { path: dir.clone(), source })?;
        let path = dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| PkiError::Io { path: path.clone(), source })?;
        file.lock().map_err(|source| PkiError::Io { path, source })?;
        Ok(file)
    }

    /// Creates the CA, the hub's certificate (valid for `hub_names`: DNS names and IP
    /// addresses) and an empty revocation list. Refuses to replace an existing CA.
    pub fn init(&self, hub_names: &[String]) -> Result<(), PkiError> {
        if self.ca_cert().exists() {
            return Err(PkiError::AlreadyInitialised { path: self.ca_cert() });
        }
        for dir in [&self.dir, &self.ca_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|source| PkiError::Io { path: dir.clone(), source })?;
        }
        let _lock = self.lock()?;
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
        let _lock = self.lock()?;
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
        let _lock = self.lock()?;
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
        if !self.ca_key().exists() {
            return Err(PkiError::NoCaKey { path: self.ca_key() });
        }
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
    // A name of its own per writer, so concurrent commands never share a temporary.
    let tmp =
        path.with_extension(format!("tmp.{}.{:016x}", std::process::id(), rand::random::<u64>()));
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
    fn the_ca_key_lives_apart_and_concurrent_issues_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::with_ca_dir(&dir.path().join("pki"), &dir.path().join("ca"));
        pki.init(&["localhost".to_string()]).unwrap();
        assert!(!dir.path().join("pki/ca.key").exists(), "the hub's folder holds no CA key");
        assert!(dir.path().join("ca/ca.key").exists());
        // Eight `pki issue` at once: every one is in the index, so each can be revoked.
        std::thread::scope(|scope| {
            for i in 0..8 {
                let pki = pki.clone();
                let out = dir.path().join(format!("out{i}"));
                scope.spawn(move || {
                    let writer =
                        Writer::Device { community: "fuhou".into(), device: format!("d{i}") };
                    pki.issue(&writer, &out).unwrap();
                });
            }
        });
        assert_eq!(pki.issued().unwrap().len(), 8);
        let writer = Writer::Device { community: "fuhou".into(), device: "d5".into() };
        assert_eq!(pki.revoke(&writer).unwrap(), 1);
        // Without the CA folder, issuing says where the key should be.
        let elsewhere = Pki::with_ca_dir(&dir.path().join("pki"), &dir.path().join("nowhere"));
        let err = elsewhere.issue(&writer, &dir.path().join("x")).unwrap_err().to_string();
        assert!(err.contains("--ca-dir"), "{err}");
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
