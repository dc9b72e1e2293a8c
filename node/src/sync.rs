//! Sync with the hub: the node's gRPC client (the only node module that sees prost
//! types), one round at a time (`fivestar-node sync`) or for as long as the node runs
//! (`fivestar-node run`).
//!
//! A round: the node says Hello, the hub answers with the documents this device may
//! sync, then the two take turns (see the hub's `session` module) until, after the
//! hub's answer, the node has nothing to send (with a hub of protocol revision 0: until
//! a hub turn carries no message and the node has nothing to send). Every change from the hub is
//! stored durably before the next frame is read; every `Ack` is recorded, so `status`
//! knows exactly which local changes are safe at the hub. Sync states are persisted at
//! the end of a session, so the next one sends only what is missing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use automerge::sync::{Message, State, SyncDoc};
use automerge::{ChangeHash, ReadDoc};
use fivestar_proto::v1::{
    self, HubFrame, NodeFrame, hub_frame, node_frame, sync_client::SyncClient,
};
use fivestar_store::StoreThread;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Streaming};

use crate::config::{NodeConfig, SyncSettings};
use crate::store::{HUB_PEER, Pending, Store, StoreError};

/// Why a sync failed, in words for the clerk and the operator.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A certificate file is missing or unreadable.
    #[error("cannot read {what} {path}: {source}")]
    Certificate {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The hub address is not a URL.
    #[error("the hub address {0:?} is not a valid https:// URL")]
    BadAddress(String),
    /// The hub refused this device's certificate at the TLS handshake.
    #[error("the hub refused this device's certificate: {0}")]
    CertificateRefused(String),
    /// The hub cannot be reached.
    #[error("cannot reach the hub at {hub}: {detail}")]
    Unreachable {
        /// The address.
        hub: String,
        /// What went wrong.
        detail: String,
    },
    /// The hub refused the session or a change, with a status naming the rule.
    #[error("the hub refused the sync ({code:?}): {message}")]
    Refused {
        /// The gRPC status code.
        code: Code,
        /// The hub's message.
        message: String,
    },
    /// The hub broke the protocol, or the session did not settle.
    #[error("sync protocol error: {0}")]
    Protocol(String),
    /// The node's own store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<fivestar_store::StoreError> for SyncError {
    fn from(err: fivestar_store::StoreError) -> Self {
        SyncError::Store(StoreError::from(err))
    }
}

/// What one round moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundReport {
    /// Sync messages sent to the hub.
    pub messages_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// Sync messages received from the hub.
    pub messages_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// New changes received and stored.
    pub changes_received: u64,
    /// Local changes still not acknowledged after the round.
    pub unacknowledged: usize,
}

impl std::fmt::Display for RoundReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} message(s) ({} bytes), received {} ({} bytes), {} new change(s) from the hub; {}",
            self.messages_sent,
            self.bytes_sent,
            self.messages_received,
            self.bytes_received,
            self.changes_received,
            if self.unacknowledged == 0 {
                "every local change is at the hub".to_string()
            } else {
                format!("{} local change(s) not yet acknowledged", self.unacknowledged)
            }
        )
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Connects to the hub with the device's certificate.
pub async fn connect(
    config: &NodeConfig,
    data_dir: &Path,
) -> Result<SyncClient<Channel>, SyncError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |what: &'static str, path: &Path| {
        let path = NodeConfig::resolve(data_dir, path);
        std::fs::read(&path).map_err(|source| SyncError::Certificate { what, path, source })
    };
    let ca = read("the district CA certificate", &config.tls.ca)?;
    let cert = read("the device certificate", &config.tls.cert)?;
    let key = read("the device key", &config.tls.key)?;
    let endpoint = Endpoint::from_shared(config.hub.clone())
        .map_err(|_| SyncError::BadAddress(config.hub.clone()))?;
    let host = endpoint.uri().host().unwrap_or("localhost").trim_matches(['[', ']']).to_string();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(host);
    let settings = &config.sync;
    let endpoint = endpoint
        .tls_config(tls)
        .map_err(|e| SyncError::Unreachable { hub: config.hub.clone(), detail: error_chain(&e) })?
        .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
        .http2_keep_alive_interval(Duration::from_secs(settings.keepalive_seconds))
        .keep_alive_timeout(Duration::from_secs(settings.keepalive_seconds.max(2) / 2))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| {
        let text = error_chain(&e);
        if never_connected(&text) && text.contains("deadline has elapsed") {
            let limit = Duration::from_secs(settings.connect_timeout_seconds);
            did_not_answer(&config.hub, limit, "opening the TCP connection")
        } else {
            transport_error(&config.hub, &e)
        }
    })?;
    let limit = settings.max_message_bytes.saturating_mul(2);
    Ok(SyncClient::new(channel).max_decoding_message_size(limit).max_encoding_message_size(limit))
}

/// When a connection breaks at the start, finds out whether the hub refused this
/// device's certificate. The hub's TLS alert races with the client's first write, so
/// the first error may only say "broken pipe"; this probe completes a handshake and
/// only reads: an accepting hub sends its HTTP/2 settings at once, a refusing one its
/// alert, which names the reason.
async fn diagnose(config: &NodeConfig, data_dir: &Path) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::AsyncReadExt;

    let path = |p: &Path| NodeConfig::resolve(data_dir, p);
    let roots: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(path(&config.tls.ca)).ok()?.collect::<Result<_, _>>().ok()?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path(&config.tls.cert))
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(path(&config.tls.key)).ok()?;
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(roots);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(store)
        .with_client_auth_cert(chain, key)
        .ok()?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    let uri: tonic::transport::Uri = config.hub.parse().ok()?;
    let host = uri.host()?.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let limit = Duration::from_secs(config.sync.connect_timeout_seconds.max(1));
    let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .ok()?
        .ok()?;
    let name = ServerName::try_from(host).ok()?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let mut tls = match tokio::time::timeout(limit, connector.connect(name, tcp)).await.ok()? {
        Ok(tls) => tls,
        Err(err) => return certificate_refusal(&error_chain(&err)),
    };
    let mut byte = [0_u8; 1];
    match tokio::time::timeout(limit, tls.read(&mut byte)).await {
        Ok(Err(err)) => certificate_refusal(&error_chain(&err)),
        _ => None,
    }
}

/// Replaces an "unreachable" error by the certificate refusal behind it, if any.
/// The probe as a whole stays within `handshake_timeout_seconds`, and is skipped when
/// no TCP connection opened (there was no handshake to be refused in).
async fn explain(err: SyncError, config: &NodeConfig, data_dir: &Path) -> SyncError {
    let limit = Duration::from_secs(config.sync.handshake_timeout_seconds.max(1));
    match err {
        SyncError::Unreachable { ref detail, .. }
            if !never_connected(detail) && !detail.starts_with(DID_NOT_ANSWER) =>
        {
            match tokio::time::timeout(limit, diagnose(config, data_dir)).await {
                Ok(Some(reason)) => SyncError::CertificateRefused(reason),
                _ => err,
            }
        }
        other => other,
    }
}

/// One session that runs one round and ends: `fivestar-node sync`.
pub async fn sync_once(
    store: &StoreThread<Store>,
    config: &NodeConfig,
    data_dir: &Path,
) -> Result<RoundReport, SyncError> {
    let attempt = store.call(|s| s.sync_started(now_ms())).await??;
    let result = async {
        let mut session = open_session(store, config, data_dir).await?;
        let result = session.round().await;
        session.close(CLOSE_WAIT).await;
        result
    }
    .await;
    finish(store, attempt, result.as_ref()).await;
    result
}

/// One session that runs one round, then uploads the evidence files the hub lacks
/// over the same connection, and ends: `fivestar-node sync`.
pub async fn sync_and_upload(
    store: &StoreThread<Store>,
    config: &NodeConfig,
    data_dir: &Path,
) -> Result<(RoundReport, FilesReport), SyncError> {
    let attempt = store.call(|s| s.sync_started(now_ms())).await??;
    let mut files = None;
    let result = async {
        let mut session = open_session(store, config, data_dir).await?;
        let result = session.round().await;
        if result.is_ok() {
            let client = session.client.clone();
            let upload = config.sync.upload_bytes_per_second;
            files = Some(upload_files(store, client, &config.hub, upload).await);
        }
        session.close(CLOSE_WAIT).await;
        result
    }
    .await;
    finish(store, attempt, result.as_ref()).await;
    let report = result?;
    Ok((report, files.unwrap_or_else(|| Ok(FilesReport::default()))?))
}

/// Evidence files sent by an upload pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FilesReport {
    /// Files the hub now holds whole.
    pub completed: usize,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Files still waiting (refused, or the link broke).
    pub waiting: usize,
}

/// Uploads every evidence file the hub does not hold whole yet, each from where the
/// hub's copy ends (so a cut link costs only the chunk in flight), on its own stream
/// beside the documents' session. A file the hub refuses stays waiting and is named
/// in the log; the others go on.
pub async fn upload_files(
    store: &StoreThread<Store>,
    mut client: SyncClient<Channel>,
    hub: &str,
    bytes_per_second: u64,
) -> Result<FilesReport, SyncError> {
    use fivestar_proto::v1::{FileChunk, FileStatusRequest};
    let waiting = call(store, |s| s.files_waiting()).await?;
    let mut report = FilesReport { waiting: waiting.len(), ..FilesReport::default() };
    for (hash, size) in waiting {
        let status = match client.file_status(FileStatusRequest { sha256: hash.clone() }).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                // The note naming it has not reached the hub yet: the next pass.
                continue;
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                // A hub older than evidence files: they wait, nothing fails.
                tracing::warn!("the hub does not take evidence files yet (upgrade it); files wait");
                return Ok(report);
            }
            Err(status) => return Err(status_error(hub, status)),
        };
        if !status.complete {
            let step = status.max_chunk_bytes.clamp(1024, 1 << 20);
            let (tx, rx) = mpsc::channel::<FileChunk>(2);
            let (reader, name) = (store.clone(), hash.clone());
            let start = status.received;
            let h = hash.clone();
            call(store, move |s| s.file_sent(&h, start, now_ms())).await?;
            let feeder = tokio::spawn(async move {
                let mut offset = start;
                let mut sent = 0u64;
                while offset < size {
                    let h = name.clone();
                    let Ok(Ok(Some(data))) =
                        reader.call(move |s| s.file_slice(&h, offset, step)).await
                    else {
                        break;
                    };
                    if data.is_empty() {
                        break;
                    }
                    use sha2::Digest as _;
                    let chunk = FileChunk {
                        sha256: name.clone(),
                        offset,
                        chunk_sha256: hex::encode(sha2::Sha256::digest(&data)),
                        data,
                    };
                    let len = chunk.data.len() as u64;
                    offset += len;
                    sent += len;
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                    // How far it went, for the clerk's page (the hub's own count
                    // decides where the next pass resumes).
                    let h = name.clone();
                    let _ = reader.call(move |s| s.file_sent(&h, offset, now_ms())).await;
                    if bytes_per_second > 0 {
                        tokio::time::sleep(Duration::from_secs_f64(
                            len as f64 / bytes_per_second as f64,
                        ))
                        .await;
                    }
                }
                sent
            });
            let outcome = client.upload_file(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
            report.bytes_sent += feeder.await.unwrap_or(0);
            match outcome {
                Ok(reply) if reply.get_ref().complete => {}
                Ok(_) => continue,
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                    ) =>
                {
                    return Err(status_error(hub, status));
                }
                Err(status) => {
                    tracing::warn!(file = %hash, error = %status.message(), "the hub refused an evidence file");
                    continue;
                }
            }
        }
        call(store, move |s| s.file_at_hub(&hash, now_ms())).await?;
        report.completed += 1;
        report.waiting -= 1;
    }
    Ok(report)
}

/// One upload pass at a time in the daemon.
static UPLOADING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts an upload pass beside the session when files wait and none runs, on the
/// session's own connection (HTTP/2 streams of their own): the documents' rounds
/// never wait for a file.
fn spawn_upload(store: &StoreThread<Store>, config: &NodeConfig, client: SyncClient<Channel>) {
    use std::sync::atomic::Ordering;
    if UPLOADING.swap(true, Ordering::SeqCst) {
        return;
    }
    let (store, hub, rate) =
        (store.clone(), config.hub.clone(), config.sync.upload_bytes_per_second);
    tokio::spawn(async move {
        let pass = async {
            if call(&store, |s| s.files_waiting()).await?.is_empty() {
                return Ok(FilesReport::default());
            }
            upload_files(&store, client, &hub, rate).await
        };
        match pass.await {
            Ok(report) if report.completed > 0 || report.waiting > 0 => {
                tracing::info!(
                    completed = report.completed,
                    bytes = report.bytes_sent,
                    waiting = report.waiting,
                    "evidence files uploaded"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "evidence files wait for the next pass"),
        }
        UPLOADING.store(false, Ordering::SeqCst);
    });
}

/// How long a node that ends a session waits for the hub to end its side.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The same when the daemon is told to stop: the whole stop must take under 2 s.
const STOP_CLOSE_WAIT: Duration = Duration::from_millis(800);

/// Connects and opens a session, all within `handshake_timeout_seconds`: the TCP
/// connection, the TLS handshake, HTTP/2 set-up and the hub's Welcome. tonic's own
/// connect timeout bounds only the TCP connection, so a link that opens and then
/// stalls would otherwise hold the node until the operating system gives up. An error
/// at the start is explained by the TLS probe; a stall is not (the probe would stall
/// as well).
async fn open_session(
    store: &StoreThread<Store>,
    config: &NodeConfig,
    data_dir: &Path,
) -> Result<Session, SyncError> {
    let limit = Duration::from_secs(config.sync.handshake_timeout_seconds.max(1));
    let opened = tokio::time::timeout(limit, async {
        let client = connect(config, data_dir).await?;
        Session::open(client, store.clone(), config).await
    })
    .await;
    match opened {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(err)) => Err(explain(err, config, data_dir).await),
        Err(_) => Err(did_not_answer(&config.hub, limit, "setting up the connection")),
    }
}

/// How a passed deadline is told (see [`did_not_answer`]).
const DID_NOT_ANSWER: &str = "the district did not answer within";

/// A deadline that passed: a link failure, in the words `status` shows.
fn did_not_answer(hub: &str, limit: Duration, during: &str) -> SyncError {
    SyncError::Unreachable {
        hub: hub.to_string(),
        detail: format!("{DID_NOT_ANSWER} {} s ({during})", limit.as_secs()),
    }
}

/// Whether a connection error says no TCP connection opened at all (the name did not
/// resolve, the connection was refused or timed out), in the words of hyper's
/// connector.
fn never_connected(text: &str) -> bool {
    text.contains("tcp connect error") || text.contains("dns error")
}

/// A link that broke during a session (its streams closed under the node).
fn link_broke(hub: &str, detail: &str) -> SyncError {
    SyncError::Unreachable {
        hub: hub.to_string(),
        detail: format!("the link broke during the session: {detail}"),
    }
}

/// Resolves when the operator asks the daemon to stop: SIGINT (Ctrl-C) or SIGTERM
/// (`systemctl stop`, `docker stop`, `kill`). A signal that cannot be watched is
/// logged and ignored rather than taken as a request to stop.
pub async fn stop_requested() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot watch for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

/// Keeps syncing until `shutdown` turns true: `fivestar-node run`.
///
/// Reconnects with exponential backoff and jitter after a failure (capped low while the
/// link is down, so nodes are back within seconds of a hub restart); while connected,
/// runs a round soon after each local edit (it watches the database, so edits made by
/// `fivestar-node task ...` in another process count, and an edit saved during a round
/// starts the next round as soon as that one ends), on every push from the hub, and on
/// a heartbeat that keeps the hub's idle timer and the link's keepalive fed.
///
/// Every wait on the network has a deadline and races `shutdown`, so a stop ends the
/// daemon within about a second in any phase (connecting, handshake, mid-round),
/// closing the session cleanly where the link allows. Work on the local store is not
/// interrupted: it is short, and each write is one transaction, so nothing saved is
/// lost either way.
pub async fn run_daemon(
    store: StoreThread<Store>,
    config: NodeConfig,
    data_dir: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let settings = config.sync.clone();
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let connected = run_connected(&store, &config, &data_dir, &mut shutdown).await;
        metrics::gauge!(names::CONNECTED).set(0.0);
        match connected {
            Ok(()) => {
                tracing::info!("sync stopped");
                return;
            }
            Err((err, settled)) => {
                failures = if settled { 1 } else { failures.saturating_add(1) };
                let delay = backoff(&settings, &err, failures, rand::random::<f64>());
                tracing::warn!(
                    error = %err,
                    class = err.class(),
                    retry_in_ms = delay.as_millis() as u64,
                    "sync failed"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut shutdown) => return,
                }
            }
        }
    }
}

/// The delay before reconnect attempt `failures` (1-based) after `err`: exponential
/// from `backoff_initial_seconds`, capped at `link_backoff_max_seconds` when the link
/// failed (the hub may be back at any moment: a restart, a link that came back) and at
/// `backoff_max_seconds` otherwise (a refusal or a broken certificate does not mend
/// soon), with "equal jitter" (between half and all of it) so many nodes that lost the
/// hub together do not return together. `unit` is a random number in [0, 1).
pub fn backoff(settings: &SyncSettings, err: &SyncError, failures: u32, unit: f64) -> Duration {
    let initial = settings.backoff_initial_seconds.max(0.01);
    let cap = if err.is_link_failure() || err.is_hub_busy() {
        settings.link_backoff_max_seconds
    } else {
        settings.backoff_max_seconds
    };
    let cap = cap.max(initial);
    let exp = initial * 2f64.powi(failures.saturating_sub(1).min(30) as i32);
    let full = exp.min(cap);
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * unit.clamp(0.0, 1.0))
}

/// One connection's life in the daemon: `Ok` once told to stop; otherwise the error
/// and whether the session had reached agreement at least once (which resets the
/// backoff). An attempt cut short by a stop stays in the sync log as one that did not
/// finish.
async fn run_connected(
    store: &StoreThread<Store>,
    config: &NodeConfig,
    data_dir: &Path,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), (SyncError, bool)> {
    let mut attempt = call(store, |s| s.sync_started(now_ms())).await.map_err(|e| (e, false))?;
    let opened = tokio::select! {
        biased;
        _ = stopped(shutdown) => return Ok(()),
        opened = open_session(store, config, data_dir) => opened,
    };
    let mut session = match opened {
        Ok(session) => session,
        Err(err) => {
            finish(store, attempt, Err(&err)).await;
            return Err((err, false));
        }
    };
    metrics::gauge!(names::CONNECTED).set(1.0);
    let settings = &config.sync;
    let mut heartbeat =
        tokio::time::interval(Duration::from_secs(settings.heartbeat_seconds.max(1)));
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(Duration::from_millis(settings.local_poll_millis.max(50)));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let saved =
        call(store, |s| Ok::<_, SyncError>(s.saved_signal())).await.map_err(|e| (e, false))?;
    let mut settled = false;
    let mut reason = "connected";
    loop {
        tracing::debug!(reason, "sync round");
        let result = tokio::select! {
            biased;
            _ = stopped(shutdown) => {
                session.close(STOP_CLOSE_WAIT).await;
                return Ok(());
            }
            result = session.round() => result,
        };
        finish(store, attempt, result.as_ref()).await;
        if let Err(err) = result {
            return Err((err, settled));
        }
        settled = true;
        spawn_upload(store, config, session.client.clone());
        // The heartbeat counts from the last round. The database is checked at once:
        // an edit saved after the round's last turn read the documents (while the hub
        // was answering it) starts the next round now, not at the heartbeat.
        heartbeat.reset();
        poll.reset_immediately();
        reason = loop {
            tokio::select! {
                biased;
                _ = stopped(shutdown) => {
                    session.close(STOP_CLOSE_WAIT).await;
                    return Ok(());
                }
                frame = session.inbound.message() => {
                    match session.handle(frame).await {
                        Ok(Event::Idle { turn: 0, messages }) if messages > 0 => {
                            break "push from the hub";
                        }
                        Ok(_) => {}
                        Err(err) => return Err((err, true)),
                    }
                }
                _ = heartbeat.tick() => break "heartbeat",
                // An edit saved in this process: at once. (Edits of other processes,
                // such as `fivestar-node task ...`, are found by the poll below.)
                _ = saved.notified() => {
                    let latest =
                        call(store, |s| s.docs().latest_seq()).await.map_err(|e| (e, true))?;
                    if latest != session.seen_seq {
                        break "local edit";
                    }
                }
                _ = poll.tick() => {
                    let latest =
                        call(store, |s| s.docs().latest_seq()).await.map_err(|e| (e, true))?;
                    if latest != session.seen_seq {
                        break "local edit";
                    }
                }
            }
        };
        attempt = call(store, |s| s.sync_started(now_ms())).await.map_err(|e| (e, true))?;
    }
}

/// Runs `f` on the store thread; both the thread's and the store's errors become
/// [`SyncError`]s.
async fn call<T, E>(
    store: &StoreThread<Store>,
    f: impl FnOnce(&mut Store) -> Result<T, E> + Send + 'static,
) -> Result<T, SyncError>
where
    T: Send + 'static,
    E: Into<SyncError> + Send + 'static,
{
    store.call(f).await?.map_err(Into::into)
}

/// Resolves when `shutdown` turns true (holding no borrow across later awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Metric names of the node (Prometheus conventions).
pub mod names {
    /// Sync rounds, by `result` (ok, error).
    pub const ROUNDS: &str = "fivestar_node_sync_rounds_total";
    /// Failed rounds by `class` (unreachable, certificate, refused, protocol, store).
    pub const ERRORS: &str = "fivestar_node_sync_errors_total";
    /// Sync payload bytes, by `direction` (in, out).
    pub const BYTES: &str = "fivestar_node_sync_bytes_total";
    /// Changes received from the hub and stored.
    pub const CHANGES: &str = "fivestar_node_changes_received_total";
    /// This device's changes the hub has not acknowledged.
    pub const UNACKED: &str = "fivestar_node_unacknowledged_changes";
    /// Last successful round, Unix seconds.
    pub const LAST_SYNC: &str = "fivestar_node_last_sync_timestamp_seconds";
    /// 1 while connected to the hub.
    pub const CONNECTED: &str = "fivestar_node_connected";
}

impl SyncError {
    /// Whether the link failed (the hub could not be reached, did not answer in time,
    /// or the connection broke), rather than the hub or the node refusing something.
    pub fn is_link_failure(&self) -> bool {
        matches!(self, SyncError::Unreachable { .. })
    }

    /// Whether the hub turned the session away only for now (at its session cap, or a
    /// document busy with other sessions): worth trying again soon, like a link.
    pub fn is_hub_busy(&self) -> bool {
        matches!(self, SyncError::Refused { code: Code::ResourceExhausted, message }
            if message.contains("try again shortly") || message.contains("sessions open"))
    }

    /// A short class name for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::Certificate { .. } | SyncError::CertificateRefused(_) => "certificate",
            SyncError::BadAddress(_) | SyncError::Unreachable { .. } => "unreachable",
            SyncError::Refused { .. } => "refused",
            SyncError::Protocol(_) => "protocol",
            SyncError::Store(_) => "store",
        }
    }
}

/// Records how a sync attempt ended, in the node's log of attempts and its metrics.
async fn finish(
    store: &StoreThread<Store>,
    attempt: i64,
    result: Result<&RoundReport, &SyncError>,
) {
    match result {
        Ok(report) => {
            metrics::counter!(names::ROUNDS, "result" => "ok").increment(1);
            metrics::counter!(names::BYTES, "direction" => "out").increment(report.bytes_sent);
            metrics::counter!(names::BYTES, "direction" => "in").increment(report.bytes_received);
            metrics::counter!(names::CHANGES).increment(report.changes_received);
            metrics::gauge!(names::UNACKED).set(report.unacknowledged as f64);
            metrics::gauge!(names::LAST_SYNC).set(now_ms() as f64 / 1000.0);
        }
        Err(err) => {
            metrics::counter!(names::ROUNDS, "result" => "error").increment(1);
            metrics::counter!(names::ERRORS, "class" => err.class()).increment(1);
        }
    }
    let outcome: Result<String, String> =
        result.map(ToString::to_string).map_err(ToString::to_string);
    let _ = store
        .call(move |s| {
            s.sync_finished(attempt, now_ms(), outcome.as_deref().map_err(String::as_str))
        })
        .await;
}

/// What handling one hub frame amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A sync message was applied.
    Message,
    /// An acknowledgement was recorded.
    Ack,
    /// A hub turn ended: the node turn it answers (0 for a push) and how many
    /// messages the hub sent since its previous turn ended.
    Idle { turn: u64, messages: u64 },
}

struct Session {
    /// The connection's client: evidence files go up on it beside the session.
    client: SyncClient<Channel>,
    store: StoreThread<Store>,
    out: mpsc::Sender<NodeFrame>,
    inbound: Streaming<HubFrame>,
    docs: Vec<String>,
    states: BTreeMap<String, State>,
    /// Per document, change chunks from the hub still waiting for their parents.
    pending: BTreeMap<String, Vec<Vec<u8>>>,
    turn: u64,
    messages_this_hub_turn: u64,
    report: RoundReport,
    max_message_bytes: usize,
    /// The hub's address, for messages.
    hub: String,
    /// How long the node waits for the hub's answer to one turn.
    turn_timeout: Duration,
    /// The database's write counter as the node's latest turn read the documents: a
    /// higher one means an edit (or a change from the hub) that turn did not carry.
    seen_seq: i64,
    /// The protocol revision the hub speaks (its `Welcome`): from 1, a round ends
    /// without an empty last turn (see [`Session::round`]).
    hub_revision: u32,
}

impl Session {
    async fn open(
        client: SyncClient<Channel>,
        store: StoreThread<Store>,
        config: &NodeConfig,
    ) -> Result<Session, SyncError> {
        let pending: Pending = store.call(|s| s.pending()).await??;
        let (out, frames) = mpsc::channel(64);
        let hello = v1::Hello {
            node_version: env!("CARGO_PKG_VERSION").to_string(),
            unacked_changes: pending.changes as u64,
            oldest_unacked_age_seconds: pending
                .oldest_seconds
                .map(|t| (now_ms() / 1000 - t).max(0) as u64)
                .unwrap_or(0),
            node_time_unix_ms: now_ms(),
        };
        out.send(NodeFrame { frame: Some(node_frame::Frame::Hello(hello)) })
            .await
            .map_err(|_| SyncError::Protocol("cannot queue Hello".into()))?;
        let response = client
            .clone()
            .session(ReceiverStream::new(frames))
            .await
            .map_err(|status| status_error(&config.hub, status))?;
        let mut inbound = response.into_inner();
        let welcome = match inbound.message().await.map_err(|s| status_error(&config.hub, s))? {
            Some(HubFrame { frame: Some(hub_frame::Frame::Welcome(welcome)) }) => welcome,
            Some(_) => {
                return Err(SyncError::Protocol("the hub did not start with Welcome".into()));
            }
            None => return Err(link_broke(&config.hub, "the hub closed it before its Welcome")),
        };
        let hub_revision = welcome.revision;
        let docs: Vec<String> = welcome.documents.into_iter().map(|d| d.document_id).collect();
        let mine = crate::store::community_doc_id(&config.community);
        if !docs.contains(&mine) {
            return Err(SyncError::CertificateRefused(format!(
                "the hub does not let this certificate sync {mine}: it was issued for another \
                 community; check tls.cert in node.toml"
            )));
        }
        let ids = docs.clone();
        let states = store
            .call(move |s| -> Result<BTreeMap<String, State>, fivestar_store::StoreError> {
                ids.into_iter()
                    .map(|id| {
                        let state = s
                            .docs()
                            .sync_state(HUB_PEER, &id)?
                            .and_then(|bytes| State::decode(&bytes).ok())
                            .unwrap_or_default();
                        Ok((id, state))
                    })
                    .collect()
            })
            .await??;
        tracing::info!(documents = docs.len(), "connected to the hub");
        Ok(Session {
            client,
            store,
            out,
            inbound,
            docs,
            states,
            pending: BTreeMap::new(),
            turn: 0,
            messages_this_hub_turn: 0,
            report: RoundReport::default(),
            max_message_bytes: config.sync.max_message_bytes,
            hub: config.hub.clone(),
            turn_timeout: Duration::from_secs(config.sync.turn_timeout_seconds.max(1)),
            seen_seq: 0,
            hub_revision,
        })
    }

    /// Turns until both sides have nothing to say. Each turn, from the node's
    /// messages to the hub's `Idle` that answers them, has `turn_timeout_seconds`.
    ///
    /// The first turn is always sent (its answer brings the hub's news and Acks). After
    /// that, a hub of revision 1 or later needs no empty turn: when the node has no
    /// message left after the hub's answer, the round is over. Automerge's generator is
    /// silent only when this side last told the peer its current heads and knows the
    /// peer holds exactly them, or while its last message is unanswered; the hub
    /// answers every message in its turn, speaking unless it holds the node's heads.
    /// Either way both sides hold the same heads, and a later write at the hub comes
    /// as a push.
    async fn round(&mut self) -> Result<RoundReport, SyncError> {
        self.report = RoundReport::default();
        for turn_of_round in 0..64 {
            let deadline = tokio::time::Instant::now() + self.turn_timeout;
            let late = |turn: u64, hub: &str, limit: Duration| {
                did_not_answer(hub, limit, &format!("waiting for its answer to turn {turn}"))
            };
            let may_end = turn_of_round > 0 && self.hub_revision >= 1;
            let sent = match tokio::time::timeout_at(deadline, self.node_turn(may_end)).await {
                Ok(Ok(Some(sent))) => sent,
                Ok(Ok(None)) => return self.settled().await,
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(late(self.turn + 1, &self.hub, self.turn_timeout)),
            };
            let answered = self.turn;
            let hub_messages = loop {
                let frame = match tokio::time::timeout_at(deadline, self.inbound.message()).await {
                    Ok(frame) => frame,
                    Err(_) => return Err(late(answered, &self.hub, self.turn_timeout)),
                };
                match self.handle(frame).await? {
                    Event::Idle { turn, messages } if turn == answered => break messages,
                    _ => {}
                }
            };
            if sent == 0 && hub_messages == 0 {
                return self.settled().await;
            }
        }
        Err(SyncError::Protocol("the sync did not settle within 64 turns".into()))
    }

    /// The report of a round that settled.
    async fn settled(&mut self) -> Result<RoundReport, SyncError> {
        self.report.unacknowledged = self.store.call(|s| s.pending()).await??.changes;
        Ok(self.report.clone())
    }

    /// Sends what the node has to say about each document, then Idle, and returns how
    /// many messages it sent. With `may_end`, a turn without messages is not sent at
    /// all: `None`, the round is over.
    async fn node_turn(&mut self, may_end: bool) -> Result<Option<u64>, SyncError> {
        let mut states: Vec<(String, State, Vec<Vec<u8>>)> = self
            .docs
            .iter()
            .map(|d| {
                let pending = self.pending.get(d).cloned().unwrap_or_default();
                (d.clone(), self.states.remove(d).unwrap_or_default(), pending)
            })
            .collect();
        let (states, messages, seq) = self
            .store
            .call(move |s| -> Result<_, fivestar_store::StoreError> {
                // Read before the documents: an edit committed in between is both sent
                // now and (harmlessly) seen as new after the round.
                let seq = s.docs().latest_seq()?;
                let mut messages = Vec::new();
                for (doc_id, state, pending) in states.iter_mut() {
                    let mut doc = s.docs().read(doc_id)?.unwrap_or_default();
                    for chunk in pending.iter() {
                        let _ = doc.load_incremental(chunk);
                    }
                    if let Some(message) = doc.generate_sync_message(state) {
                        messages.push((doc_id.clone(), message.encode()));
                    }
                }
                Ok((states, messages, seq))
            })
            .await??;
        self.seen_seq = seq;
        self.states.extend(states.into_iter().map(|(doc_id, state, _)| (doc_id, state)));
        let sent = messages.len() as u64;
        if may_end && sent == 0 {
            return Ok(None);
        }
        for (doc_id, message) in messages {
            if message.len() > self.max_message_bytes {
                return Err(SyncError::Protocol(format!(
                    "a sync message for {doc_id} is {} bytes, more than the {} the hub accepts",
                    message.len(),
                    self.max_message_bytes
                )));
            }
            self.report.messages_sent += 1;
            self.report.bytes_sent += message.len() as u64;
            self.send(node_frame::Frame::Sync(v1::SyncMessage { document_id: doc_id, message }))
                .await?;
        }
        self.turn += 1;
        self.send(node_frame::Frame::Idle(v1::Idle { turn: self.turn })).await?;
        Ok(Some(sent))
    }

    async fn handle(
        &mut self,
        frame: Result<Option<HubFrame>, tonic::Status>,
    ) -> Result<Event, SyncError> {
        let frame = match frame {
            Ok(Some(HubFrame { frame: Some(frame) })) => frame,
            Ok(Some(HubFrame { frame: None })) => {
                return Err(SyncError::Protocol("an empty frame".into()));
            }
            Ok(None) => return Err(link_broke(&self.hub, "the hub's side of it ended")),
            Err(status) => return Err(status_error(&self.hub, status)),
        };
        match frame {
            hub_frame::Frame::Sync(sync) => {
                if !self.docs.contains(&sync.document_id) {
                    return Err(SyncError::Protocol(format!(
                        "a message for {} was not granted",
                        sync.document_id
                    )));
                }
                self.report.messages_received += 1;
                self.report.bytes_received += sync.message.len() as u64;
                self.messages_this_hub_turn += 1;
                let message = Message::decode(&sync.message).map_err(|e| {
                    SyncError::Protocol(format!("an undecodable message from the hub: {e}"))
                })?;
                let doc_id = sync.document_id;
                let mut state = self.states.remove(&doc_id).unwrap_or_default();
                let mut pending = self.pending.remove(&doc_id).unwrap_or_default();
                let id = doc_id.clone();
                let (state, pending, applied) = self
                    .store
                    .call(move |s| {
                        let applied = apply(s, &id, &mut state, &mut pending, message);
                        (state, pending, applied)
                    })
                    .await?;
                self.states.insert(doc_id.clone(), state);
                self.pending.insert(doc_id, pending);
                self.report.changes_received += applied? as u64;
                Ok(Event::Message)
            }
            hub_frame::Frame::Ack(ack) => {
                let heads: Vec<ChangeHash> = ack
                    .heads
                    .iter()
                    .filter_map(|h| ChangeHash::try_from(h.as_slice()).ok())
                    .collect();
                let doc_id = ack.document_id;
                self.store.call(move |s| s.set_acked_heads(&doc_id, &heads, now_ms())).await??;
                Ok(Event::Ack)
            }
            hub_frame::Frame::Idle(idle) => {
                let messages = std::mem::take(&mut self.messages_this_hub_turn);
                Ok(Event::Idle { turn: idle.turn, messages })
            }
            hub_frame::Frame::Welcome(_) => Err(SyncError::Protocol("a second Welcome".into())),
        }
    }

    async fn send(&mut self, frame: node_frame::Frame) -> Result<(), SyncError> {
        self.out
            .send(NodeFrame { frame: Some(frame) })
            .await
            .map_err(|_| link_broke(&self.hub, "the session's stream is closed"))
    }

    /// Persists the sync states and ends the stream cleanly: the request stream ends,
    /// then the node waits (at most `wait`) for the hub to end its side, so the hub sees
    /// a finished session rather than a dropped connection.
    async fn close(self, wait: Duration) {
        let Session { out, mut inbound, states, store, .. } = self;
        drop(out);
        let _ = tokio::time::timeout(wait, async {
            while let Ok(Some(_)) = inbound.message().await {}
        })
        .await;
        let session_store = store;
        let _ = session_store
            .call(move |s| -> Result<(), fivestar_store::StoreError> {
                for (doc_id, state) in &states {
                    s.docs().set_sync_state(HUB_PEER, doc_id, &state.encode())?;
                }
                Ok(())
            })
            .await;
    }
}

/// Applies a message from the hub to a stored document, durably. Returns how many new
/// changes it brought. `pending` keeps, across the session, change chunks that arrived
/// before their parents, so they are not lost with the copy of the document and the
/// next message asks for the parents.
fn apply(
    store: &mut Store,
    doc_id: &str,
    state: &mut State,
    pending: &mut Vec<Vec<u8>>,
    message: Message,
) -> Result<usize, SyncError> {
    store.docs().write(|txn| -> Result<usize, SyncError> {
        let mut doc = txn.load(doc_id)?.unwrap_or_default();
        let before = doc.get_heads();
        for chunk in pending.iter() {
            let _ = doc.load_incremental(chunk);
        }
        let chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
        doc.receive_sync_message(state, message).map_err(|e| {
            SyncError::Protocol(format!("the hub's message for {doc_id} does not apply: {e}"))
        })?;
        if doc.get_missing_deps(&[]).is_empty() {
            pending.clear();
        } else {
            pending.extend(chunks);
        }
        let new = doc.get_changes(&before);
        if !new.is_empty() {
            let now = now_ms();
            txn.save(doc_id, &before, &doc, now)?;
            crate::store::record_received(txn, doc_id, &new, now)?;
        }
        Ok(new.len())
    })?
}

fn status_error(hub: &str, status: tonic::Status) -> SyncError {
    let text = error_chain(&status);
    if let Some(reason) = certificate_refusal(&text) {
        return SyncError::CertificateRefused(reason);
    }
    // A status with a source was made here from a transport error (a reset, a torn
    // HTTP/2 frame, a keepalive that expired): whatever its code, the link failed. The
    // hub's own statuses arrive as trailers and carry none.
    let from_the_link = std::error::Error::source(&status).is_some();
    match status.code() {
        // The hub never answers with these: they wrap a link that broke (or a hub that
        // is stopping), not a verdict.
        Code::Unavailable | Code::Unknown | Code::Cancelled => {
            SyncError::Unreachable { hub: hub.to_string(), detail: describe_tls(&text) }
        }
        _ if from_the_link => {
            SyncError::Unreachable { hub: hub.to_string(), detail: describe_tls(&text) }
        }
        code => SyncError::Refused { code, message: status.message().to_string() },
    }
}

fn transport_error(hub: &str, err: &tonic::transport::Error) -> SyncError {
    let text = error_chain(err);
    match certificate_refusal(&text) {
        Some(reason) => SyncError::CertificateRefused(reason),
        None => SyncError::Unreachable { hub: hub.to_string(), detail: describe_tls(&text) },
    }
}

/// Recognises the TLS alerts a hub sends when it refuses a client certificate.
fn certificate_refusal(text: &str) -> Option<String> {
    if text.contains("CertificateRevoked") {
        Some("it has been revoked; ask the district office for a new one".into())
    } else if text.contains("UnknownCA")
        || text.contains("BadCertificate")
        || text.contains("DecryptError")
    {
        Some(
            "it was not issued by the district's CA; check tls.cert and tls.key in node.toml"
                .into(),
        )
    } else if text.contains("CertificateRequired") {
        Some("no device certificate was sent; check tls.cert and tls.key in node.toml".into())
    } else {
        None
    }
}

fn describe_tls(text: &str) -> String {
    if text.contains("UnknownIssuer") {
        "the hub's certificate is not signed by the district CA in tls.ca".into()
    } else if text.contains("NotValidForName") {
        "the hub's certificate is not valid for this address; use a name from the hub's hub_names"
            .into()
    } else {
        text.to_string()
    }
}

/// An error and all its sources, joined.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let more = next.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_is_capped_and_jittered() {
        let settings = SyncSettings {
            backoff_initial_seconds: 1.0,
            backoff_max_seconds: 60.0,
            ..SyncSettings::default()
        };
        let refused = SyncError::Refused { code: Code::PermissionDenied, message: "no".into() };
        let full = |n| backoff(&settings, &refused, n, 1.0).as_secs_f64();
        assert_eq!([full(1), full(2), full(3), full(4)], [1.0, 2.0, 4.0, 8.0]);
        assert_eq!(full(7), 60.0, "capped");
        assert_eq!(full(1000), 60.0, "no overflow");
        // Jitter keeps between half and all of the delay.
        assert_eq!(backoff(&settings, &refused, 3, 0.0).as_secs_f64(), 2.0);
        assert_eq!(backoff(&settings, &refused, 3, 0.5).as_secs_f64(), 3.0);
    }

    #[test]
    fn a_link_failure_backs_off_to_the_short_cap() {
        let settings = SyncSettings::default();
        let down = did_not_answer("https://hub:7443", Duration::from_secs(20), "setting up");
        assert!(down.is_link_failure());
        assert_eq!(down.class(), "unreachable");
        let full = |err: &SyncError, n| backoff(&settings, err, n, 1.0).as_secs_f64();
        assert_eq!(full(&down, 1), 1.0);
        assert_eq!(full(&down, 50), settings.link_backoff_max_seconds);
        let refused = SyncError::Refused { code: Code::PermissionDenied, message: "no".into() };
        assert_eq!(full(&refused, 50), settings.backoff_max_seconds);
        // A hub at its session cap is busy for now, not refusing: the short cap too.
        let busy = SyncError::Refused {
            code: Code::ResourceExhausted,
            message: "the hub is serving its maximum of 512 sessions; try again shortly".into(),
        };
        assert_eq!(full(&busy, 50), settings.link_backoff_max_seconds);
        // After a long outage every node tries again within the short cap, at a time
        // of its own between half of it and all of it.
        assert_eq!(backoff(&settings, &down, 50, 0.0).as_secs_f64(), 7.5);
    }

    #[test]
    fn link_failures_are_never_protocol_errors() {
        let hub = "https://127.0.0.1:7443";
        let closed = link_broke(hub, "the session's stream is closed");
        assert_eq!(closed.class(), "unreachable");
        assert_eq!(
            closed.to_string(),
            "cannot reach the hub at https://127.0.0.1:7443: the link broke during the \
             session: the session's stream is closed"
        );
        let late = did_not_answer(hub, Duration::from_secs(20), "setting up the connection");
        assert_eq!(
            late.to_string(),
            "cannot reach the hub at https://127.0.0.1:7443: the district did not answer \
             within 20 s (setting up the connection)"
        );
        // A status made from a transport error (here an I/O error) is the link's, even
        // with a code the hub also uses; the hub's own statuses carry no source.
        let torn = tonic::Status::from_error(Box::new(std::io::Error::other("torn")));
        assert_eq!(status_error(hub, torn).class(), "unreachable");
        assert!(never_connected("transport error: tcp connect error: deadline has elapsed"));
        assert!(!never_connected("transport error: connection reset by peer"));
        let internal = tonic::Status::internal("the hub could not store the data");
        assert_eq!(status_error(hub, internal).class(), "refused");
        let busy = tonic::Status::resource_exhausted("the hub is serving its maximum");
        assert_eq!(status_error(hub, busy).class(), "refused");
        assert_eq!(
            status_error(hub, tonic::Status::unavailable("the hub is shutting down")).class(),
            "unreachable"
        );
    }

    #[test]
    fn certificate_refusals_are_told_apart() {
        assert!(
            certificate_refusal("received fatal alert: CertificateRevoked")
                .unwrap()
                .contains("revoked")
        );
        assert!(
            certificate_refusal("received fatal alert: UnknownCA")
                .unwrap()
                .contains("district's CA")
        );
        assert_eq!(certificate_refusal("connection refused"), None);
    }
}
