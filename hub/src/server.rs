//! Starting and stopping the hub: `spawn(config) -> HubHandle`, `handle.shutdown()`.
//!
//! TLS is accepted here, not by tonic, so the hub can enforce the district's
//! revocation list at the handshake (tonic has no CRL support): a rustls
//! `WebPkiClientVerifier` with the CA and the CRL, rebuilt when `crl.pem` changes, so a
//! revocation takes effect for the next connection without a restart. The verified
//! streams go to tonic's `serve_with_incoming`, which still exposes the peer's
//! certificates to the service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fivestar_core::registry::SAMPLE_REGISTRY_TOML;
use fivestar_core::standard::SAMPLE_STANDARD_TOML;
use fivestar_proto::v1::query_server::QueryServer;
use fivestar_proto::v1::sync_server::SyncServer;
use fivestar_store::{StoreError, StoreThread};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::HubConfig;
use crate::observe;
use crate::pki::Pki;
use crate::service::{QueryService, SyncService};
use crate::session::Shared;
use crate::store::{HubOpenError, HubStore};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "hub.db";

/// Why the hub could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store thread stopped while the hub ran (a bug); the hub stopped so its
    /// supervisor restarts it.
    #[error("the hub's store stopped; the hub stopped so it can be restarted")]
    StoreStopped,
    /// `[reviewers]` of hub.toml names a role that does not exist.
    #[error("hub.toml: {0}")]
    Reviewers(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The PKI files are missing.
    #[error("no certificates in {dir}: run `fivestar-hub pki init` first")]
    NoPki {
        /// The PKI folder.
        dir: PathBuf,
    },
    /// A certificate, key or CRL file is unusable.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] HubOpenError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    /// A thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Thread(std::io::Error),
}

/// A running hub.
#[derive(Debug)]
pub struct HubHandle {
    /// The address it listens on (useful when the configuration said port 0).
    pub addr: SocketAddr,
    /// The dashboard's address.
    pub dashboard_addr: SocketAddr,
    /// The hub's store, for in-process callers (tests, the simulation).
    pub store: StoreThread<HubStore>,
    shutdown: Arc<watch::Sender<bool>>,
    server: JoinHandle<Result<(), ServeError>>,
}

impl HubHandle {
    /// Stops accepting, ends every session, and waits for the server to stop.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        match self.server.await {
            Ok(result) => result,
            Err(err) => Err(ServeError::Tls(format!("the server task failed: {err}"))),
        }
    }

    /// Waits until the server stops on its own (it only does on an error).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        match (&mut self.server).await {
            Ok(result) => result,
            Err(err) => Err(ServeError::Tls(format!("the server task failed: {err}"))),
        }
    }
}

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the standard and registry texts the configuration names (or the samples).
pub fn standard_and_registry(
    config: &HubConfig,
    data_dir: &Path,
) -> Result<(String, String), ServeError> {
    let read = |path: &Path, sample: &str| -> Result<String, ServeError> {
        if path.as_os_str().is_empty() {
            return Ok(sample.to_string());
        }
        let path = HubConfig::resolve(data_dir, path);
        std::fs::read_to_string(&path).map_err(|source| ServeError::Read { path, source })
    };
    Ok((
        read(&config.standard, SAMPLE_STANDARD_TOML)?,
        read(&config.registry, SAMPLE_REGISTRY_TOML)?,
    ))
}

/// Starts the hub: opens its store, binds its address, and serves until shut down.
pub async fn spawn(config: HubConfig, data_dir: &Path) -> Result<HubHandle, ServeError> {
    install_crypto_provider();
    std::fs::create_dir_all(data_dir)
        .map_err(|source| ServeError::Read { path: data_dir.to_path_buf(), source })?;
    let pki = Pki::new(&HubConfig::resolve(data_dir, &config.pki_dir));
    let https = config.dashboard_https().map_err(ServeError::Tls)?;
    let web_tls = if https { Some(web_tls_config(&pki)?) } else { None };
    let (revoked_tx, revoked_rx) = mpsc::unbounded_channel();
    let tls = TlsReloader::new(pki, revoked_tx)?;
    let (standard, registry) = standard_and_registry(&config, data_dir)?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut store = HubStore::open(&data_dir.join(DATABASE_FILE), &standard, &registry, now)?;
    store.set_reviewers(config.reviewer_roles(store.standard()).map_err(ServeError::Reviewers)?);
    store.set_max_document_bytes(config.limits.max_document_bytes);
    let store = StoreThread::spawn("hub-store", store).map_err(ServeError::Thread)?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shutdown = Arc::new(shutdown);
    let store_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (changes, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        store: store.clone(),
        changes: changes.clone(),
        limits: config.limits.clone(),
        bounds: config.message_bounds(),
        devices_read_all_communities: config.devices_read_all_communities,
        stale_after: config.stale_after(),
        sessions: Arc::new(Semaphore::new(config.limits.max_sessions)),
        sessions_by_peer: crate::slots::Slots::default(),
        shutdown: shutdown_rx.clone(),
    });

    tokio::spawn(record_revoked(store.clone(), revoked_rx));
    let (conns, incoming) = mpsc::channel(64);
    tokio::spawn(crate::conn::accept(
        listener,
        tls,
        config.limits.clone(),
        conns,
        shutdown_rx.clone(),
    ));

    let limit = config.limits.max_message_bytes.saturating_mul(2).max(1024 * 1024);
    let query = QueryServer::new(QueryService::new(shared.clone()));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SyncServer<SyncService>>().await;
    health.set_serving::<QueryServer<QueryService>>().await;
    // If the store ever stops, the hub must not claim health while it serves errors:
    // health says NOT_SERVING and the process stops with an error for its supervisor
    // (systemd, Kubernetes) to restart it.
    let on_store_stopped = {
        let health = health.clone();
        let shutdown = shutdown.clone();
        let failed = store_failed.clone();
        move || {
            tracing::error!("the hub's store has stopped; reporting NOT_SERVING and stopping");
            failed.store(true, std::sync::atomic::Ordering::SeqCst);
            let health = health.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                health.set_not_serving::<SyncServer<SyncService>>().await;
                health.set_not_serving::<QueryServer<QueryService>>().await;
                let _ = shutdown.send(true);
            });
        }
    };
    tokio::spawn(watch_store(
        store.clone(),
        changes,
        config.stale_after(),
        shutdown_rx.clone(),
        on_store_stopped,
    ));
    // Reflection in both versions (Python's grpcio-reflection speaks v1alpha only),
    // listing the health service too.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fivestar_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|e| ServeError::Tls(format!("gRPC reflection: {e}")))?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|e| ServeError::Tls(format!("gRPC reflection: {e}")))?;
    let service = SyncServer::new(SyncService::new(shared))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // A node needs one stream at a time (plus a query or two); the cap keeps
            // one connection from opening hundreds of sessions.
            .max_concurrent_streams(Some(16))
            // What a connection may have in flight towards the hub: bounds the hub's
            // memory per connection (an upload's chunks wait in these windows, not in
            // memory that grows with the file), still ample for a sync message's
            // frames on a slow link.
            .initial_stream_window_size(Some(512 * 1024))
            .initial_connection_window_size(Some(1024 * 1024))
            .add_service(service)
            .add_service(query)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await
            .map_err(ServeError::from)?;
        if store_failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServeError::StoreStopped);
        }
        Ok(())
    });
    let web_listener = TcpListener::bind(config.dashboard_listen)
        .await
        .map_err(|source| ServeError::Bind { addr: config.dashboard_listen, source })?;
    let dashboard_addr = web_listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr: config.dashboard_listen, source })?;
    let metrics = observe::install();
    let web_store = store.clone();
    let web_stop = shutdown_rx.clone();
    let stale_after = config.stale_after();
    tokio::spawn(async move {
        if let Err(err) =
            crate::web::serve(web_listener, web_tls, web_store, metrics, stale_after, web_stop)
                .await
        {
            tracing::error!(error = %err, "the dashboard stopped");
        }
    });
    tracing::info!(%addr, dashboard = %crate::web::describe(dashboard_addr, https), data_dir = %data_dir.display(), "hub listening");
    Ok(HubHandle { addr, dashboard_addr, store, shutdown, server })
}

/// Records every refused revoked certificate as its device's error (class
/// `revoked`), so status, dashboard and metrics show it rather than the last success.
async fn record_revoked(
    store: StoreThread<HubStore>,
    mut revoked: mpsc::UnboundedReceiver<(fivestar_core::Writer, String)>,
) {
    while let Some((writer, message)) = revoked.recv().await {
        metrics::counter!(observe::ERRORS, "class" => "revoked").increment(1);
        tracing::warn!(writer = %writer, "refused a revoked certificate");
        let (community, name) = match &writer {
            fivestar_core::Writer::Device { community, device } => {
                (Some(community.clone()), device.clone())
            }
            fivestar_core::Writer::Reviewer { name, .. } => (None, name.clone()),
        };
        let peer = crate::store::peer_name(&writer);
        let now = chrono::Utc::now().timestamp_millis();
        let _ = store
            .call(move |s| {
                s.peer_error(&peer, community.as_deref(), &name, "revoked", &message, now)
            })
            .await;
    }
}

/// How often the store watcher looks for written documents to push.
const PUSH_EVERY: Duration = Duration::from_millis(200);

/// The standings are refreshed at most this often while documents are written: each
/// refresh rescores the changed communities, ranks all and may record a snapshot, so
/// at full speed a refresh per push tick cost a tenth of the hub's CPU.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Publishes the ids of documents written by anyone (sessions, `review`, other
/// processes) so sessions can push them, and keeps the standings current: within
/// `REFRESH_EVERY` of any write, and every 5 s so freshness and first syncs show
/// without a write.
async fn watch_store(
    store: StoreThread<HubStore>,
    changes: broadcast::Sender<Arc<crate::session::Written>>,
    stale_after: chrono::TimeDelta,
    mut shutdown: watch::Receiver<bool>,
    on_stopped: impl Fn(),
) {
    let stopped = |err: &StoreError| matches!(err, StoreError::Stopped);
    let mut seq = match store.call(|s| s.docs().latest_seq()).await {
        Ok(Ok(seq)) => seq,
        Err(err) if stopped(&err) => return on_stopped(),
        _ => return,
    };
    let refresh = move |s: &mut HubStore| {
        let started = std::time::Instant::now();
        let result = s.refresh_standings(chrono::Utc::now().timestamp_millis(), stale_after);
        metrics::histogram!(observe::RESCORE_SECONDS).record(started.elapsed().as_secs_f64());
        result.map(|(_, rows)| rows)
    };
    match store.call(refresh).await {
        Ok(Ok(rows)) => record_standings(&rows),
        Ok(Err(err)) => tracing::warn!(error = %err, "cannot compute the standings"),
        Err(err) if stopped(&err) => return on_stopped(),
        Err(err) => tracing::warn!(error = %err, "cannot compute the standings"),
    }
    // Pushes go out within a tick of a write; the standings (their snapshot, the
    // per-community gauges) follow within REFRESH_EVERY, and every 5 s regardless so
    // staleness shows without writes. Readers compute the table themselves
    // (`current_standings`), so the refresh's pace never makes what they see older.
    let mut tick = tokio::time::interval(PUSH_EVERY);
    let mut ticks: u64 = 0;
    let mut unrefreshed = false;
    let mut refreshed_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        ticks += 1;
        let since = seq;
        let written = match store.call(move |s| s.docs().written_since(since)).await {
            Ok(Ok((docs, newest))) => {
                seq = newest;
                let written = !docs.is_empty();
                for (doc_id, heads) in docs {
                    let _ = changes.send(Arc::new(crate::session::Written { doc_id, heads }));
                }
                written
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot watch the store");
                false
            }
            Err(err) if stopped(&err) => return on_stopped(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the store");
                false
            }
        };
        unrefreshed |= written;
        let due = unrefreshed && refreshed_at.elapsed() >= REFRESH_EVERY;
        if due || ticks.is_multiple_of(25) {
            unrefreshed = false;
            refreshed_at = tokio::time::Instant::now();
            match store.call(refresh).await {
                Ok(Ok(rows)) => record_standings(&rows),
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot compute the standings"),
                Err(err) if stopped(&err) => return on_stopped(),
                Err(err) => tracing::warn!(error = %err, "cannot compute the standings"),
            }
        }
    }
}

/// Sets the per-community gauges from a standings table.
fn record_standings(rows: &[fivestar_core::Standing]) {
    let mut counts = [0_u32; 3];
    for row in rows {
        if let Some(ms) = row.last_sync_ms {
            metrics::gauge!(observe::LAST_SYNC, "community" => row.community.clone())
                .set(ms as f64 / 1000.0);
        }
        metrics::gauge!(observe::NEVER_SYNCED, "community" => row.community.clone())
            .set(if row.last_sync_ms.is_none() { 1.0 } else { 0.0 });
        counts[match row.freshness {
            fivestar_core::Freshness::Current => 0,
            fivestar_core::Freshness::Stale => 1,
            fivestar_core::Freshness::NoData => 2,
        }] += 1;
    }
    for (label, count) in ["current", "stale", "no_data"].into_iter().zip(counts) {
        metrics::gauge!(observe::COMMUNITIES, "freshness" => label).set(f64::from(count));
    }
}

/// The TLS acceptor, rebuilt when the revocation list file changes.
#[derive(Debug, Clone)]
struct TlsReloader {
    pki: Pki,
    current: Arc<Mutex<(Option<SystemTime>, Arc<ServerConfig>)>>,
    revoked: mpsc::UnboundedSender<(fivestar_core::Writer, String)>,
}

impl TlsReloader {
    fn new(
        pki: Pki,
        revoked: mpsc::UnboundedSender<(fivestar_core::Writer, String)>,
    ) -> Result<TlsReloader, ServeError> {
        if !pki.ca_cert().exists() || !pki.hub_cert().exists() {
            return Err(ServeError::NoPki {
                dir: pki.crl().parent().map(Path::to_path_buf).unwrap_or_default(),
            });
        }
        let stamp = modified(&pki.crl());
        let acceptor = build_acceptor(&pki, &revoked)?;
        Ok(TlsReloader { pki, current: Arc::new(Mutex::new((stamp, acceptor))), revoked })
    }

    fn current(&self) -> Result<TlsAcceptor, ServeError> {
        let stamp = modified(&self.pki.crl());
        let mut current =
            self.current.lock().map_err(|_| ServeError::Tls("lock poisoned".into()))?;
        if stamp != current.0 {
            let acceptor = build_acceptor(&self.pki, &self.revoked)?;
            tracing::info!("revocation list changed; TLS configuration reloaded");
            *current = (stamp, acceptor);
        }
        Ok(TlsAcceptor::from(current.1.clone()))
    }
}

impl crate::conn::Acceptors for TlsReloader {
    fn acceptor(&self) -> Result<TlsAcceptor, String> {
        self.current().map_err(|e| e.to_string())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The client verifier, wrapped so a genuine but revoked device certificate is
/// reported (the identity it carries is only trusted once the chain verified, which a
/// "revoked" verdict implies).
#[derive(Debug)]
struct ReportingVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    revoked: mpsc::UnboundedSender<(fivestar_core::Writer, String)>,
}

impl rustls::server::danger::ClientCertVerifier for ReportingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verdict = self.inner.verify_client_cert(end_entity, intermediates, now);
        if let Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) = &verdict
            && let Some(writer) = crate::pki::writer_from_certificate(end_entity.as_ref())
        {
            let _ = self.revoked.send((writer, "its certificate has been revoked".into()));
        }
        verdict
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The web side's TLS: the hub's own certificate, no client certificate (people
/// sign in with their accounts), HTTP/1.1.
fn web_tls_config(pki: &Pki) -> Result<Arc<ServerConfig>, ServeError> {
    let tls = |what: &str, path: &Path, err: &dyn std::fmt::Display| {
        ServeError::Tls(format!("{what} {}: {err}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.hub_cert())
        .and_then(|certs| certs.collect())
        .map_err(|e| tls("cannot read the hub certificate", &pki.hub_cert(), &e))?;
    let key = PrivateKeyDer::from_pem_file(pki.hub_key())
        .map_err(|e| tls("cannot read the hub key", &pki.hub_key(), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(format!("hub certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn build_acceptor(
    pki: &Pki,
    revoked: &mpsc::UnboundedSender<(fivestar_core::Writer, String)>,
) -> Result<Arc<ServerConfig>, ServeError> {
    let tls = |what: &str, path: &Path, err: &dyn std::fmt::Display| {
        ServeError::Tls(format!("{what} {}: {err}", path.display()))
    };
    let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.ca_cert())
        .and_then(|certs| certs.collect())
        .map_err(|e| tls("cannot read the CA certificate", &pki.ca_cert(), &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.hub_cert())
        .and_then(|certs| certs.collect())
        .map_err(|e| tls("cannot read the hub certificate", &pki.hub_cert(), &e))?;
    let key = PrivateKeyDer::from_pem_file(pki.hub_key())
        .map_err(|e| tls("cannot read the hub key", &pki.hub_key(), &e))?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if pki.crl().exists() {
        CertificateRevocationListDer::pem_file_iter(pki.crl())
            .and_then(|crls| crls.collect())
            .map_err(|e| tls("cannot read the revocation list", &pki.crl(), &e))?
    } else {
        Vec::new()
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| tls("bad CA certificate", &pki.ca_cert(), &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| ServeError::Tls(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(ReportingVerifier {
            inner: verifier,
            revoked: revoked.clone(),
        }))
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(format!("hub certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
