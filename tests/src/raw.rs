//! A hand-driven sync session: what a misbehaving or malicious node could send,
//! frame by frame, over the same mutual TLS as a real node.

use std::path::Path;

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
}

impl RawSession {
    /// Opens a session and sends `Hello`.
    pub async fn open(client: &mut SyncClient<Channel>) -> Result<RawSession, Status> {
        let (out, frames) = mpsc::channel(16);
        let hello = v1::Hello { node_version: "raw".into(), ..v1::Hello::default() };
        out.send(NodeFrame { frame: Some(node_frame::Frame::Hello(hello)) }).await.expect("queued");
        let inbound = client.session(ReceiverStream::new(frames)).await?.into_inner();
        Ok(RawSession { out, inbound })
    }

    /// Sends a sync message for a document.
    pub async fn sync(&self, doc_id: &str, message: Vec<u8>) {
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
        Ok(self.inbound.message().await?.and_then(|f| f.frame))
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
