//! The node's configuration: one TOML file in the data directory, written by
//! `fivestar-node init` and edited by the operator afterwards. A documented example
//! is `deploy/node.example.toml`.

use std::path::{Path, PathBuf};

use fivestar_core::Kind;
use serde::{Deserialize, Serialize};

/// The name of the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "node.toml";
/// The name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "node.db";
/// The name of the standard file `init` writes into the data directory.
pub const STANDARD_FILE: &str = "standard.toml";

/// Everything a node needs to know to start; relative paths are relative to the
/// data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The community this node keeps, as in the district registry (e.g. `fangou`).
    pub community: String,
    /// The community's Chinese name, for screens.
    pub community_name: String,
    /// The community kind, which decides its five stars. The hub's registry entry
    /// replaces it once the node has synced.
    pub kind: Kind,
    /// This device's name, as on its certificate (e.g. `d1`). Shown in history.
    pub device: String,
    /// The district hub's gRPC address.
    pub hub: String,
    /// The standard used until the hub sends a newer one.
    pub standard: PathBuf,
    /// Certificates for mutual TLS with the hub.
    pub tls: TlsPaths,
    /// How the node syncs (all optional).
    #[serde(default)]
    pub sync: SyncSettings,
    /// The clerks' web interface.
    #[serde(default)]
    pub ui: UiSettings,
    /// Evidence files attached to tasks.
    #[serde(default)]
    pub files: FileSettings,
}

/// Evidence files attached to tasks (all optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSettings {
    /// The largest file a clerk may attach, bytes (20 MiB; keep it at or under the
    /// hub's `max_file_bytes`).
    pub max_bytes: u64,
    /// Photos (JPEG, PNG) whose longest side is over this many pixels are made that
    /// size when attached, before they are saved and sent: a 12-megapixel phone photo
    /// of 4 MB becomes about 0.5 MB at 2048. The original's camera data (EXIF) is not
    /// kept. 0 keeps photos as they are (the default: the district decides).
    pub photo_max_side: u32,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings { max_bytes: 20 * 1024 * 1024, photo_max_side: 0 }
    }
}

/// The clerks' web interface (`fivestar-node ui`, and `run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSettings {
    /// Where the web interface listens; `127.0.0.1` keeps it on this PC. Empty turns
    /// it off in `run`.
    pub listen: String,
    /// The language of the web pages and the command line: `zh` or `en`; empty
    /// follows the system (Chinese on a Chinese locale; the pages default to Chinese).
    pub lang: String,
    /// Other host names the pages may be reached by (besides `localhost` and the
    /// listen address), for a node served to the office's other PCs.
    pub hosts: Vec<String>,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings { listen: "127.0.0.1:8690".into(), lang: String::new(), hosts: Vec::new() }
    }
}

/// How the node syncs with the hub. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// First delay before reconnecting after a failure, seconds.
    pub backoff_initial_seconds: f64,
    /// The longest delay between reconnect attempts after the hub refused or the
    /// session failed otherwise (a certificate, a rule, the node's own store), seconds.
    /// Such failures rarely mend by themselves within minutes, so retries slow down.
    pub backoff_max_seconds: f64,
    /// The longest delay between reconnect attempts while the link is down (the hub
    /// cannot be reached, did not answer in time, or the connection broke), seconds.
    /// Short, so every node is back within seconds of a hub restart or a link coming
    /// back; the random jitter keeps the district's nodes from returning together. A
    /// failed attempt costs one TCP connection attempt and one row in the sync log.
    pub link_backoff_max_seconds: f64,
    /// While connected, a round at least this often (keeps the hub's idle timer fed).
    pub heartbeat_seconds: u64,
    /// How often the daemon checks the database for edits made by other commands, ms:
    /// an edit starts a round within this time (one saved during a round starts the
    /// next round as soon as that one ends). Keep it at or under 500.
    pub local_poll_millis: u64,
    /// How long to wait for the TCP connection to the hub, seconds.
    pub connect_timeout_seconds: u64,
    /// How long the whole connection set-up may take, seconds: TCP connection, TLS
    /// handshake, HTTP/2 set-up and the hub's Welcome together. Without it a link that
    /// opens the TCP connection and then stalls would hold the node for as long as the
    /// operating system keeps the connection. Each step is a round trip or two, so 20 s
    /// leaves room for a slow rural link with seconds of latency.
    pub handshake_timeout_seconds: u64,
    /// How long the node waits for the hub's answer to one of its turns, seconds. The
    /// answer includes uploading the node's messages and downloading the hub's, so keep
    /// it generous for first syncs over slow links (a 200 KiB document takes about 25 s
    /// at 64 kbit/s); a dead link is usually noticed sooner by the keepalive.
    pub turn_timeout_seconds: u64,
    /// HTTP/2 keepalive ping interval, seconds; a dead link is noticed within about
    /// one and a half intervals.
    pub keepalive_seconds: u64,
    /// The largest sync message the node sends or accepts, bytes (match the hub's).
    pub max_message_bytes: usize,
    /// The most evidence file bytes sent per second (0: as fast as the link goes),
    /// so a photo upload leaves room on a thin link.
    pub upload_bytes_per_second: u64,
    /// Where `fivestar-node run` serves Prometheus metrics (`/metrics`); empty to turn
    /// them off. If the port is taken, the node logs a warning and syncs anyway.
    pub metrics_listen: String,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            backoff_initial_seconds: 1.0,
            backoff_max_seconds: 300.0,
            link_backoff_max_seconds: 15.0,
            heartbeat_seconds: 30,
            local_poll_millis: 500,
            connect_timeout_seconds: 10,
            handshake_timeout_seconds: 20,
            turn_timeout_seconds: 60,
            keepalive_seconds: 30,
            max_message_bytes: 16 * 1024 * 1024,
            upload_bytes_per_second: 0,
            metrics_listen: "127.0.0.1:9465".into(),
        }
    }
}

/// Where the device's certificate files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The district CA certificate (PEM) that signed the hub's certificate.
    pub ca: PathBuf,
    /// This device's certificate (PEM), issued by `fivestar-hub pki issue`.
    pub cert: PathBuf,
    /// This device's private key (PEM). Keep it mode 0600.
    pub key: PathBuf,
}

impl NodeConfig {
    /// Reads the configuration file of a data directory.
    pub fn load(data_dir: &Path) -> Result<NodeConfig, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotInitialized { data_dir: data_dir.to_path_buf() });
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        toml::from_str(&text).map_err(|err| ConfigError::Invalid {
            path,
            message: err.to_string().trim_end().to_string(),
        })
    }

    /// The file text, with a header that says what it is.
    pub fn to_toml(&self) -> String {
        format!(
            "# fivestar node configuration, written by `fivestar-node init`.\n\
             # Relative paths are relative to this file's directory.\n\
             # Every field is explained in deploy/node.example.toml.\n\n{}",
            toml::to_string_pretty(self).unwrap_or_default()
        )
    }

    /// A path from the configuration, resolved against the data directory.
    pub fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { data_dir.join(path) }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No configuration file: `init` has not run here.
    #[error("no fivestar node is set up in {data_dir}")]
    NotInitialized {
        /// The data directory looked in.
        data_dir: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path} is not a valid node configuration: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_a_valid_configuration_with_the_defaults() {
        let example = include_str!("../../deploy/node.example.toml");
        let config: NodeConfig = toml::from_str(example).unwrap();
        assert_eq!(config.community, "fangou");
        assert_eq!(config.kind, Kind::Agricultural);
        assert_eq!(config.sync, SyncSettings::default(), "the example shows the defaults");
        assert_eq!(config.ui, UiSettings::default(), "the example shows the defaults");
    }
}
