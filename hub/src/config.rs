//! The hub's configuration: one TOML file (`hub.toml` in the data directory, or
//! `--config FILE`); every field has a development default, so the hub runs with no
//! file at all. A documented example is `deploy/hub.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the hub needs; relative paths are relative to the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Address the gRPC sync service listens on.
    pub listen: SocketAddr,
    /// Address of the web side: the dashboard, the review desk, `/metrics` and the
    /// JSON API. Beyond localhost it is served over HTTPS (see `dashboard_tls`).
    pub dashboard_listen: SocketAddr,
    /// HTTPS for the web side with the hub's own certificate: `auto` (when
    /// `dashboard_listen` is not a loopback address), `on` or `off`. Reviewers'
    /// browsers trust it once the district CA (`pki/ca.pem`) is installed.
    pub dashboard_tls: String,
    /// Names the hub's certificate is valid for (`pki init`): DNS names and IP
    /// addresses nodes use to reach the hub.
    pub hub_names: Vec<String>,
    /// The district registry file; empty means the shipped sample.
    pub registry: PathBuf,
    /// The standard file; empty means the shipped sample.
    pub standard: PathBuf,
    /// The PKI folder the running hub reads: the CA certificate, the hub's
    /// certificate and key, the revocation list.
    pub pki_dir: PathBuf,
    /// The CA folder: the CA's private key and the index of issued certificates, used
    /// only by `pki` commands (never by `serve`). Empty: a folder beside the data
    /// directory, `<data directory>-ca`, so the key is not in the hub's data (nor in
    /// its backups). Move it to an offline machine and give `--ca-dir` when issuing.
    pub ca_dir: PathBuf,
    /// A community whose last successful sync is older than this many seconds is
    /// marked stale (still ranked on its last data). Default 86400: 24 hours.
    pub stale_after_seconds: u64,
    /// Whether a community device may read other communities' tasks through the
    /// Query service (it always reads the standings and its own community). Off by
    /// default: a community's records are its own and the district's.
    pub devices_read_all_communities: bool,
    /// Limits that protect the hub.
    pub limits: Limits,
    /// Who may review, and what: reviewer name → `"office"` (any task) or a star key
    /// (that star's task force reviews only tasks of that star). Names are those on
    /// reviewer certificates and given to `review --reviewer`. Empty: every reviewer
    /// is the district office (a district with no task forces configured); once any
    /// reviewer is listed, unlisted ones may not review.
    pub reviewers: std::collections::BTreeMap<String, String>,
}

/// Limits on what one node may cost the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest sync message accepted, in bytes. One Automerge sync message can
    /// carry a whole compressed document (on a first sync), so this is also the
    /// largest document the hub accepts. Larger is refused with RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// A session with no frame from the node for this long is closed. Connected nodes
    /// send a heartbeat well within it.
    pub idle_timeout_seconds: u64,
    /// How many sync sessions may run at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_sessions: usize,
    /// How long a TLS handshake may take.
    pub handshake_timeout_seconds: u64,
    /// How long after the TLS handshake the client has to start HTTP/2 (send its
    /// preface); a connection that says nothing is closed so it cannot hold a file
    /// descriptor.
    pub preface_timeout_seconds: u64,
    /// How long a new session has to say Hello before it is closed.
    pub hello_timeout_seconds: u64,
    /// Open connections at once, in all. Keep it under the process's file descriptor
    /// limit (systemd units set LimitNOFILE=65536).
    pub max_connections: usize,
    /// Open connections and sessions at once of one identity (one device certificate
    /// or reviewer): a node needs one; a few allow quick reconnects.
    pub max_connections_per_identity: usize,
    /// Changes in one sync message (a first sync carries a community's whole
    /// history: a year of clerks' edits is a few thousand).
    pub max_changes_per_message: usize,
    /// Operations in one change (applying the template is the largest honest change:
    /// about a dozen operations per task).
    pub max_ops_per_change: usize,
    /// Operations in one sync message.
    pub max_ops_per_message: usize,
    /// Operations one session may bring in all before it is closed; the node
    /// reconnects and goes on, so this only stops a session that never ends.
    pub max_ops_per_session: usize,
    /// The largest a community's stored document may grow, bytes (snapshot and
    /// chunks). A real community's year is well under 1 MiB; the bound stops a device
    /// from filling the hub's disk.
    pub max_document_bytes: usize,
    /// The largest evidence file the hub accepts, bytes.
    pub max_file_bytes: u64,
    /// The largest chunk of a file upload, bytes.
    pub max_file_chunk_bytes: u64,
    /// The most a community's evidence files may take at the hub, bytes.
    pub file_quota_bytes_per_community: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            dashboard_listen: SocketAddr::from(([127, 0, 0, 1], 7080)),
            dashboard_tls: "auto".into(),
            hub_names: vec!["localhost".into(), "127.0.0.1".into()],
            registry: PathBuf::new(),
            standard: PathBuf::new(),
            pki_dir: PathBuf::from("pki"),
            ca_dir: PathBuf::new(),
            stale_after_seconds: 86_400,
            devices_read_all_communities: false,
            limits: Limits::default(),
            reviewers: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024 * 1024,
            idle_timeout_seconds: 300,
            max_sessions: 512,
            handshake_timeout_seconds: 10,
            preface_timeout_seconds: 10,
            hello_timeout_seconds: 10,
            max_connections: 4096,
            max_connections_per_identity: 4,
            max_changes_per_message: 50_000,
            max_ops_per_change: 5_000,
            max_ops_per_message: 500_000,
            max_ops_per_session: 2_000_000,
            max_document_bytes: 64 * 1024 * 1024,
            max_file_bytes: 20 * 1024 * 1024,
            max_file_chunk_bytes: 256 * 1024,
            file_quota_bytes_per_community: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not readable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid configuration.
    #[error("{path} is not a valid hub configuration: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl HubConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|err| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: err.to_string().trim_end().to_string(),
        })
    }

    /// The CA folder: `explicit` (the `--ca-dir` flag or FIVESTAR_CA_DIR), else
    /// `ca_dir`, else `<data_dir>-ca` beside the data directory.
    pub fn resolve_ca_dir(&self, data_dir: &Path, explicit: Option<&Path>) -> PathBuf {
        if let Some(dir) = explicit {
            return dir.to_path_buf();
        }
        if !self.ca_dir.as_os_str().is_empty() {
            return HubConfig::resolve(data_dir, &self.ca_dir);
        }
        let mut name = data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push("-ca");
        data_dir.with_file_name(name)
    }

    /// The bounds one sync message is screened against.
    pub fn message_bounds(&self) -> crate::guard::Bounds {
        crate::guard::Bounds {
            max_changes: self.limits.max_changes_per_message,
            max_ops_per_change: self.limits.max_ops_per_change,
            max_ops: self.limits.max_ops_per_message,
        }
    }

    /// `stale_after_seconds` as a duration.
    pub fn stale_after(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(
            i64::try_from(self.stale_after_seconds).unwrap_or(i64::MAX / 1000),
        )
    }

    /// Whether the web side speaks HTTPS (`dashboard_tls`).
    pub fn dashboard_https(&self) -> Result<bool, String> {
        match self.dashboard_tls.as_str() {
            "on" => Ok(true),
            "off" => Ok(false),
            "auto" | "" => Ok(!self.dashboard_listen.ip().is_loopback()),
            other => Err(format!("dashboard_tls {other:?}: use auto, on or off")),
        }
    }

    /// The reviewers' roles, checked against the standard's stars.
    pub fn reviewer_roles(
        &self,
        standard: &fivestar_core::Standard,
    ) -> Result<std::collections::BTreeMap<String, fivestar_core::Role>, String> {
        let stars: Vec<String> = fivestar_core::Kind::ALL
            .iter()
            .flat_map(|k| standard.kind(*k).star_keys())
            .map(str::to_string)
            .collect();
        let mut roles = std::collections::BTreeMap::new();
        for (name, role) in &self.reviewers {
            let parsed: fivestar_core::Role =
                role.parse().map_err(|e| format!("[reviewers] {name:?}: {e}"))?;
            if let fivestar_core::Role::TaskForce(star) = &parsed
                && !stars.contains(star)
            {
                return Err(format!(
                    "[reviewers] {name:?}: {star:?} is not a star of the standard (use office or one of {})",
                    stars.join(", ")
                ));
            }
            roles.insert(name.clone(), parsed);
        }
        Ok(roles)
    }

    /// A path from the configuration, resolved against the data directory.
    pub fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { data_dir.join(path) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_the_default_configuration() {
        let example = include_str!("../../deploy/hub.example.toml");
        let config: HubConfig = toml::from_str(example).unwrap();
        assert_eq!(config, HubConfig::default());
    }
}
