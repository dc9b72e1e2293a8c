//! The gRPC edge of the hub: the only module that sees prost types. It reads the
//! caller's identity from its verified client certificate, converts wire frames to
//! session frames and back, and turns session errors into gRPC statuses.

use std::pin::Pin;
use std::sync::Arc;

use fivestar_proto::v1::{
    self, DocumentAccess, DocumentGrant, HubFrame, NodeFrame, hub_frame, node_frame,
    sync_server::Sync as SyncApi,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pki::writer_from_certificate;
use crate::session::{self, Inbound, Outbound, SessionError, Shared};
use crate::store::{PeerHello, Refusal};

/// The `fivestar.v1.Sync` service.
#[derive(Debug, Clone)]
pub struct SyncService {
    shared: Arc<Shared>,
}

impl SyncService {
    /// A service over the shared hub state.
    pub fn new(shared: Arc<Shared>) -> SyncService {
        SyncService { shared }
    }
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<HubFrame, Status>> + Send>>;

#[tonic::async_trait]
impl SyncApi for SyncService {
    type SessionStream = FrameStream;

    async fn session(
        &self,
        request: Request<Streaming<NodeFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate was presented"))?;
        let writer = certs
            .first()
            .and_then(|cert| writer_from_certificate(cert.as_ref()))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the client certificate carries no fivestar identity (urn:fivestar:...)",
                )
            })?;
        let inbound = request.into_inner().map(|frame| match frame {
            Ok(frame) => from_wire(frame),
            Err(status) if status.code() == Code::OutOfRange => {
                Err(SessionError::Protocol(format!("a frame is too large: {}", status.message())))
            }
            Err(status) => Err(SessionError::Protocol(status.message().to_string())),
        });
        let (out, frames) = mpsc::channel(64);
        tokio::spawn(session::run(self.shared.clone(), writer, Box::pin(inbound), out));
        let stream = ReceiverStream::new(frames).map(|item| item.map(to_wire).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }
}

fn from_wire(frame: NodeFrame) -> Result<Inbound, SessionError> {
    match frame.frame {
        Some(node_frame::Frame::Hello(hello)) => Ok(Inbound::Hello(PeerHello {
            version: hello.node_version,
            unacked_changes: hello.unacked_changes,
            oldest_unacked_age_seconds: hello.oldest_unacked_age_seconds,
            clock_ms: hello.node_time_unix_ms,
        })),
        Some(node_frame::Frame::Sync(sync)) => {
            Ok(Inbound::Sync { doc_id: sync.document_id, message: sync.message })
        }
        Some(node_frame::Frame::Idle(idle)) => Ok(Inbound::Idle(idle.turn)),
        None => Err(SessionError::Protocol("an empty frame".into())),
    }
}

fn to_wire(frame: Outbound) -> HubFrame {
    let frame = match frame {
        Outbound::Welcome { hub_time_ms, grants } => hub_frame::Frame::Welcome(v1::Welcome {
            hub_version: env!("CARGO_PKG_VERSION").to_string(),
            hub_time_unix_ms: hub_time_ms,
            documents: grants
                .into_iter()
                .map(|g| DocumentGrant {
                    document_id: g.doc_id,
                    access: if g.write {
                        DocumentAccess::ReadWrite as i32
                    } else {
                        DocumentAccess::Read as i32
                    },
                })
                .collect(),
        }),
        Outbound::Sync { doc_id, message } => {
            hub_frame::Frame::Sync(v1::SyncMessage { document_id: doc_id, message })
        }
        Outbound::Ack { doc_id, heads } => hub_frame::Frame::Ack(v1::Ack {
            document_id: doc_id,
            heads: heads.iter().map(|h| h.as_ref().to_vec()).collect(),
        }),
        Outbound::Idle(turn) => hub_frame::Frame::Idle(v1::Idle { turn }),
    };
    HubFrame { frame: Some(frame) }
}

/// The one place session errors become gRPC statuses.
pub fn to_status(err: SessionError) -> Status {
    let code = match &err {
        SessionError::NoHello | SessionError::Protocol(_) => Code::InvalidArgument,
        SessionError::NotInRegistry(_)
        | SessionError::Ungranted { .. }
        | SessionError::Refused(Refusal::Denied(_)) => Code::PermissionDenied,
        SessionError::Refused(Refusal::Invalid { .. } | Refusal::Malformed { .. })
        | SessionError::Undecodable { .. } => Code::InvalidArgument,
        SessionError::TooLarge { .. } | SessionError::Busy(_) => Code::ResourceExhausted,
        SessionError::IdleTimeout(_) => Code::DeadlineExceeded,
        SessionError::ShuttingDown => Code::Unavailable,
        SessionError::Store(_) | SessionError::Refused(Refusal::Store(_)) => Code::Internal,
    };
    Status::new(code, err.to_string())
}
