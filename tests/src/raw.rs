//! A hand-driven sync session: what a misbehaving or malicious node could send,
//! frame by frame, over the same mutual TLS as a real node.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use fivestar_proto::v1::{
    self, HubFrame, NodeFrame, hub_frame, node_frame, sync_client::SyncClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};

/// Connects with the certificate files in `certs` (`ca.pem`, `device.pem`, `device.key`).
pub async fn connect(
    url: &str,
    certs: &Path,
) -> Result<SyncClient<Channel>, tonic::transport::Error> {
    let channel = channel(url, certs).await?;
    Ok(SyncClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// A mutual-TLS channel to the hub, for any of its services.
pub async fn channel(url: &str, certs: &Path) -> Result<Channel, tonic::transport::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |name: &str| std::fs::read(certs.join(name)).expect("certificate file");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("device.pem"), read("device.key")))
        .domain_name("127.0.0.1");
    Endpoint::from_shared(url.to_string()).expect("a valid URL").tls_config(tls)?.connect().await
}

/// An open session after `Hello`.
#[derive(Debug)]
pub struct RawSession {
    out: mpsc::Sender<NodeFrame>,
    inbound: Streaming<HubFrame>,
    /// Bytes of the sync messages sent, and of those received (what the hub counts
    /// as the peer's traffic).
    sync_bytes: (AtomicU64, u64),
}

impl RawSession {
    /// Opens a session and sends `Hello`.
    pub async fn open(client: &mut SyncClient<Channel>) -> Result<RawSession, Status> {
        let (out, frames) = mpsc::channel(16);
        let hello = v1::Hello { node_version: "raw".into(), ..v1::Hello::default() };
        out.send(NodeFrame { frame: Some(node_frame::Frame::Hello(hello)) }).await.expect("queued");
        let inbound = client.session(ReceiverStream::new(frames)).await?.into_inner();
        Ok(RawSession { out, inbound, sync_bytes: (AtomicU64::new(0), 0) })
    }

    /// The hub's first frame, which must be its `Welcome` (panics on any other frame);
    /// `Err` is the status the hub ended the session with instead.
    pub async fn welcome(&mut self) -> Result<v1::Welcome, Status> {
        match self.next().await? {
            Some(hub_frame::Frame::Welcome(welcome)) => Ok(welcome),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends a sync message for a document.
    pub async fn sync(&self, doc_id: &str, message: Vec<u8>) {
        self.sync_bytes.0.fetch_add(message.len() as u64, Ordering::Relaxed);
        let frame =
            node_frame::Frame::Sync(v1::SyncMessage { document_id: doc_id.into(), message });
        let _ = self.out.send(NodeFrame { frame: Some(frame) }).await;
    }

    /// Ends a turn.
    pub async fn idle(&self, turn: u64) {
        let frame = node_frame::Frame::Idle(v1::Idle { turn });
        let _ = self.out.send(NodeFrame { frame: Some(frame) }).await;
    }

    /// The next frame from the hub; `Err` is the status the hub ended the session with.
    pub async fn next(&mut self) -> Result<Option<hub_frame::Frame>, Status> {
        let frame = self.inbound.message().await?.and_then(|f| f.frame);
        if let Some(hub_frame::Frame::Sync(sync)) = &frame {
            self.sync_bytes.1 += sync.message.len() as u64;
        }
        Ok(frame)
    }

    /// Bytes of the sync messages this session sent and received so far.
    pub fn sync_bytes(&self) -> (u64, u64) {
        (self.sync_bytes.0.load(Ordering::Relaxed), self.sync_bytes.1)
    }

    /// Reads frames until the hub ends its turn `turn`; returns them, or the status
    /// that ended the session.
    pub async fn until_idle(&mut self, turn: u64) -> Result<Vec<hub_frame::Frame>, Status> {
        let mut frames = Vec::new();
        loop {
            match self.next().await? {
                Some(hub_frame::Frame::Idle(idle)) if idle.turn == turn => return Ok(frames),
                Some(frame) => frames.push(frame),
                None => return Err(Status::cancelled("the hub closed the stream")),
            }
        }
    }

    /// Reads frames until the session ends; returns the status it ended with.
    pub async fn until_end(&mut self) -> Option<Status> {
        loop {
            match self.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    }
}

/// What a hand-written gRPC call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    /// The `grpc-status` code.
    pub code: tonic::Code,
    /// The `grpc-message`, decoded.
    pub message: String,
}

/// Sends `body` (gRPC length-prefixed frames, well formed or not) as the request body
/// of a `Sync/Session` call over a fresh mutual-TLS HTTP/2 connection, ends the
/// stream, and returns the status the hub answered with. Bounded by `limit`.
pub async fn raw_call(
    addr: std::net::SocketAddr,
    certs: &Path,
    body: Vec<u8>,
    limit: std::time::Duration,
) -> Result<RawReply, String> {
    tokio::time::timeout(limit, raw_call_inner(addr, certs, body))
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
}

async fn raw_call_inner(
    addr: std::net::SocketAddr,
    certs: &Path,
    body: Vec<u8>,
) -> Result<RawReply, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.join("ca.pem")).map_err(|e| e.to_string())? {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("device.pem"))
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(certs.join("device.key")).map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (client, connection) = h2::client::handshake(tls).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://127.0.0.1:{}/fivestar.v1.Sync/Session", addr.port()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    let (response, mut stream) = client.send_request(request, false).map_err(|e| e.to_string())?;
    stream.send_data(bytes::Bytes::from(body), true).map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    let (parts, mut body) = response.into_parts();
    let status_of = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(|code| RawReply {
                code: tonic::Code::from(code),
                message: percent_decode(
                    headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or(""),
                ),
            })
    };
    if let Some(reply) = status_of(&parts.headers) {
        return Ok(reply);
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(|e| e.to_string())?.unwrap_or_default();
    status_of(&trailers).ok_or_else(|| "the hub answered without a grpc-status".to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One gRPC length-prefixed frame: flag byte, big-endian length, payload.
pub fn grpc_frame(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend((payload.len() as u32).to_be_bytes());
    frame.extend(payload);
    frame
}
