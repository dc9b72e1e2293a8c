//! Connection hygiene: every connection is bounded in time and number before a
//! session exists, so no device can exhaust the hub's file descriptors or spin it.
//!
//! - A cap on open connections in all (`max_connections`); over it, a new TCP
//!   connection is closed at once.
//! - The TLS handshake has a deadline (`handshake_timeout_seconds`).
//! - A cap per identity (`max_connections_per_identity`): the device certificate's
//!   identity holds a slot for as long as its connection is open.
//! - The client must start HTTP/2 (its 24-byte preface) within
//!   `preface_timeout_seconds` of the handshake, or the connection is closed.
//! - Accept errors (out of descriptors) back off instead of spinning, and their log
//!   lines are rate limited.
//!
//! Every refusal is counted in `fivestar_hub_connections_refused_total{reason}`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::config::Limits;
use crate::observe;

/// What HTTP/2 clients send first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Something that gives the TLS acceptor in force (it changes when the revocation
/// list does).
pub trait Acceptors: Send + Sync + 'static {
    /// The acceptor for a new connection, or why there is none.
    fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String>;
}

/// A connection that passed every check: TLS with a fivestar identity, within the
/// caps, HTTP/2 started. It gives back the preface it consumed and holds its slots
/// until it closes.
#[derive(Debug)]
pub struct Guarded {
    inner: TlsStream<TcpStream>,
    preface: usize,
    _slot: OwnedSemaphorePermit,
    _identity: IdentitySlot,
}

/// A connection's place among its identity's, and in the open-connections gauge.
#[derive(Debug)]
struct IdentitySlot {
    _slot: crate::slots::Slot,
}

impl IdentitySlot {
    fn new(slot: crate::slots::Slot) -> IdentitySlot {
        metrics::gauge!(observe::CONNECTIONS).increment(1.0);
        IdentitySlot { _slot: slot }
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        metrics::gauge!(observe::CONNECTIONS).decrement(1.0);
    }
}

impl Connected for Guarded {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.preface < PREFACE.len() {
            let rest = &PREFACE[self.preface..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.preface += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn refused(reason: &'static str) {
    metrics::counter!(observe::CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// Logs at most one line per `every` for a recurring event, with how many happened.
#[derive(Debug)]
struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new(every: Duration) -> RateLimited {
        RateLimited { every, last: None, suppressed: 0 }
    }

    /// `Some(suppressed)` when a line may be written now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Accepts connections until shutdown and hands the ones that pass every check to
/// the gRPC server.
pub async fn accept(
    listener: TcpListener,
    acceptors: impl Acceptors,
    limits: Limits,
    conns: mpsc::Sender<Result<Guarded, io::Error>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptors = Arc::new(acceptors);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let identities = crate::slots::Slots::default();
    let mut accept_log = RateLimited::new(Duration::from_secs(10));
    let tls_log = Arc::new(Mutex::new(RateLimited::new(Duration::from_secs(10))));
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(err) => {
                // Typically out of file descriptors: wait for some to close rather
                // than spin, and say so once in a while.
                if let Some(suppressed) = accept_log.allow() {
                    tracing::warn!(error = %err, suppressed, "accepting connections failed; backing off");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused("max_connections");
            drop(tcp);
            continue;
        };
        let acceptors = acceptors.clone();
        let identities = identities.clone();
        let conns = conns.clone();
        let tls_log = tls_log.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let acceptor = match acceptors.acceptor() {
                Ok(acceptor) => acceptor,
                Err(err) => {
                    tracing::error!(error = %err, "TLS configuration unusable; refusing connection");
                    return;
                }
            };
            let handshake = Duration::from_secs(limits.handshake_timeout_seconds);
            let mut stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    refused("tls");
                    if let Some(suppressed) = tls_log.lock().ok().and_then(|mut l| l.allow()) {
                        tracing::warn!(%peer, error = %err, suppressed, "TLS handshake refused");
                    }
                    return;
                }
                Err(_) => {
                    refused("tls_timeout");
                    if let Some(suppressed) = tls_log.lock().ok().and_then(|mut l| l.allow()) {
                        tracing::warn!(%peer, suppressed, "TLS handshake timed out");
                    }
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| crate::pki::writer_from_certificate(cert.as_ref()))
                .map(|writer| crate::pki::identity_uri(&writer));
            let Some(identity) = identity else {
                refused("no_identity");
                return;
            };
            let for_identity = identities.take(&identity, limits.max_connections_per_identity);
            let Some(identity_slot) = for_identity.map(IdentitySlot::new) else {
                refused("max_connections_per_identity");
                tracing::debug!(%peer, %identity, "too many connections of one identity; closed");
                return;
            };
            let preface = Duration::from_secs(limits.preface_timeout_seconds.max(1));
            let mut first = [0_u8; 24];
            match tokio::time::timeout(preface, stream.read_exact(&mut first)).await {
                Ok(Ok(_)) if &first == PREFACE => {}
                Ok(_) => {
                    refused("not_http2");
                    return;
                }
                Err(_) => {
                    refused("preface_timeout");
                    return;
                }
            }
            let guarded =
                Guarded { inner: stream, preface: 0, _slot: slot, _identity: identity_slot };
            let _ = conns.send(Ok(guarded)).await;
        });
    }
}
