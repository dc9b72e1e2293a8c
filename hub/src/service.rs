//! The gRPC edge of the hub: the only module that sees prost types. It reads the
//! caller's identity from its verified client certificate, converts wire frames to
//! session frames and back, and turns session errors into gRPC statuses.

use std::pin::Pin;
use std::sync::Arc;

use fivestar_core::{Freshness, Kind, Standing, Tiers, Writer};
use fivestar_proto::v1::{
    self, DocumentAccess, DocumentGrant, HubFrame, NodeFrame, hub_frame, node_frame,
    query_server::Query as QueryApi, sync_server::Sync as SyncApi,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pki::writer_from_certificate;
use crate::report::{self, StandingsView, ViewError};
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
        let addr = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let inbound = request.into_inner().map(|frame| match frame {
            Ok(frame) => from_wire(frame),
            Err(status) => Err(inbound_error(&status)),
        });
        let (out, frames) = mpsc::channel(64);
        tokio::spawn(session::run(self.shared.clone(), writer, addr, Box::pin(inbound), out));
        let stream = ReceiverStream::new(frames).map(|item| item.map(to_wire).map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn file_status(
        &self,
        request: Request<v1::FileStatusRequest>,
    ) -> Result<Response<v1::FileStatusReply>, Status> {
        let community = device_community(&request)?;
        let sha256 = request.into_inner().sha256;
        let file = self.referenced(&community, &sha256).await?;
        let limits = self.shared.limits.clone();
        let progress = self
            .shared
            .store
            .call(move |s| s.file_progress(&community, &file.hash, file.size))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(file_reply(&progress, &limits)))
    }

    async fn upload_file(
        &self,
        request: Request<Streaming<v1::FileChunk>>,
    ) -> Result<Response<v1::FileStatusReply>, Status> {
        let community = device_community(&request)?;
        let limits = self.shared.limits.clone();
        let mut chunks = request.into_inner();
        let mut file: Option<fivestar_core::FileRef> = None;
        let mut progress = None;
        while let Some(chunk) = chunks.message().await? {
            if chunk.data.len() as u64 > limits.max_file_chunk_bytes {
                return Err(Status::resource_exhausted(format!(
                    "a chunk of {} bytes; chunks are at most {} (max_file_chunk_bytes)",
                    chunk.data.len(),
                    limits.max_file_chunk_bytes
                )));
            }
            let current = match &file {
                Some(f) if f.hash == chunk.sha256 => f.clone(),
                Some(_) => {
                    return Err(Status::invalid_argument(
                        "every chunk of an upload names the same file",
                    ));
                }
                None => {
                    let f = self.referenced(&community, &chunk.sha256).await?;
                    file = Some(f.clone());
                    f
                }
            };
            let (c, quota) = (community.clone(), limits.file_quota_bytes_per_community);
            let chunk_len = chunk.data.len() as u64;
            let stored = self
                .shared
                .store
                .call(move |s| {
                    let stored = s.store_chunk(
                        &c,
                        &current,
                        chunk.offset,
                        &chunk.data,
                        &chunk.chunk_sha256,
                        quota,
                        chrono::Utc::now().timestamp_millis(),
                    );
                    // Counted with the write, on the store thread: a link cut while
                    // the reply is on its way drops this future, not the count.
                    if let Ok(p) = &stored {
                        metrics::counter!(crate::observe::FILE_BYTES).increment(chunk_len);
                        if p.complete {
                            metrics::counter!(crate::observe::FILES_COMPLETE).increment(1);
                        }
                    }
                    stored
                })
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            match stored {
                Ok(p) => {
                    if p.complete {
                        tracing::info!(%community, sha256 = %chunk.sha256, bytes = p.size, "evidence file complete");
                        crate::thumbs::spawn_make(
                            self.shared.store.clone(),
                            community.clone(),
                            chunk.sha256.clone(),
                        );
                    }
                    progress = Some(p);
                }
                Err(err) => return Err(file_status(&err)),
            }
        }
        let progress =
            progress.ok_or_else(|| Status::invalid_argument("an upload of no chunks"))?;
        Ok(Response::new(file_reply(&progress, &limits)))
    }
}

impl SyncService {
    /// The file a device's community names by `sha256`, within this hub's limits.
    async fn referenced(
        &self,
        community: &str,
        sha256: &str,
    ) -> Result<fivestar_core::FileRef, Status> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument("a file is named by its SHA-256: 64 hex digits"));
        }
        let (c, h) = (community.to_string(), sha256.to_string());
        let file = self
            .shared
            .store
            .call(move |s| s.referenced_file(&c, &h))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| {
                file_status(&crate::store::files::FileError::NotReferenced(sha256.to_string()))
            })?;
        if file.size > self.shared.limits.max_file_bytes {
            return Err(Status::resource_exhausted(format!(
                "a file of {} bytes; the hub takes files of at most {} (max_file_bytes)",
                file.size, self.shared.limits.max_file_bytes
            )));
        }
        Ok(file)
    }
}

/// The community of the device that calls (reviewers upload nothing).
fn device_community<T>(request: &Request<T>) -> Result<String, Status> {
    let writer = request
        .peer_certs()
        .and_then(|certs| certs.first().and_then(|cert| writer_from_certificate(cert.as_ref())))
        .ok_or_else(|| Status::unauthenticated("no fivestar client certificate was presented"))?;
    match writer {
        Writer::Device { community, .. } => Ok(community),
        Writer::Reviewer { .. } => {
            Err(Status::permission_denied("only a community's devices upload its evidence files"))
        }
    }
}

fn file_reply(
    p: &crate::store::files::FileProgress,
    limits: &crate::config::Limits,
) -> v1::FileStatusReply {
    v1::FileStatusReply {
        received: p.received,
        size: p.size,
        complete: p.complete,
        max_chunk_bytes: limits.max_file_chunk_bytes,
    }
}

fn file_status(err: &crate::store::files::FileError) -> Status {
    use crate::store::files::FileError;
    match err {
        FileError::NotReferenced(_) => Status::not_found(err.to_string()),
        FileError::WrongOffset { .. } => Status::failed_precondition(err.to_string()),
        FileError::ChunkMismatch | FileError::FileMismatch => Status::data_loss(err.to_string()),
        FileError::TooLarge(_) | FileError::Quota { .. } => {
            Status::resource_exhausted(err.to_string())
        }
        FileError::Store(_) => Status::unavailable("the hub could not store the file; try again"),
    }
}

/// What a broken inbound stream means. A frame the decoder cannot read (invalid
/// UTF-8, wrong wire types, random bytes, a compressed flag with no encoding, a frame
/// cut short before the stream ended) is the node's protocol violation; a frame over
/// the size limit is too large; anything else is a link that broke, which is not the
/// device's fault. Nothing of the client's bytes is echoed.
fn inbound_error(status: &Status) -> SessionError {
    let message = status.message().to_ascii_lowercase();
    match status.code() {
        Code::OutOfRange | Code::ResourceExhausted => SessionError::FrameTooLarge,
        Code::Internal | Code::Unimplemented | Code::InvalidArgument
            if message.contains("decode")
                || message.contains("compress")
                || message.contains("unexpected eof")
                || message.contains("encoding") =>
        {
            SessionError::Protocol("a frame is not a valid fivestar.v1 message".into())
        }
        _ => SessionError::Disconnected(bounded(status.message(), 200)),
    }
}

/// At most `max` bytes of a string from the network (cut at a character boundary).
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The longest document id a session may name (ids are `community/<key>` or
/// `district`; a key is at most 40 characters).
const MAX_DOC_ID: usize = 64;

fn from_wire(frame: NodeFrame) -> Result<Inbound, SessionError> {
    match frame.frame {
        Some(node_frame::Frame::Hello(hello)) => Ok(Inbound::Hello(PeerHello {
            // Stored and served back: bounded.
            version: bounded(&hello.node_version, 64),
            unacked_changes: hello.unacked_changes,
            oldest_unacked_age_seconds: hello.oldest_unacked_age_seconds,
            clock_ms: hello.node_time_unix_ms,
        })),
        Some(node_frame::Frame::Sync(sync)) if sync.document_id.len() > MAX_DOC_ID => {
            Err(SessionError::Protocol(format!(
                "a document id of {} bytes; ids are at most {MAX_DOC_ID}",
                sync.document_id.len()
            )))
        }
        Some(node_frame::Frame::Sync(sync)) => {
            Ok(Inbound::Sync { doc_id: sync.document_id, message: sync.message })
        }
        Some(node_frame::Frame::Idle(idle)) => Ok(Inbound::Idle(idle.turn)),
        None => Err(SessionError::Protocol("an empty frame".into())),
    }
}

fn to_wire(frame: Outbound) -> HubFrame {
    let frame = match frame {
        Outbound::Welcome { hub_time_ms, revision, grants } => {
            hub_frame::Frame::Welcome(v1::Welcome {
                hub_version: env!("CARGO_PKG_VERSION").to_string(),
                hub_time_unix_ms: hub_time_ms,
                revision,
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
            })
        }
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
        | SessionError::Refused(Refusal::Denied { .. }) => Code::PermissionDenied,
        SessionError::Refused(Refusal::Invalid { .. } | Refusal::Malformed { .. })
        | SessionError::Undecodable { .. } => Code::InvalidArgument,
        SessionError::TooLarge { .. }
        | SessionError::FrameTooLarge
        | SessionError::Busy(_)
        | SessionError::TooManyOfOne(_)
        | SessionError::OverBudget { .. }
        | SessionError::Refused(Refusal::Screened(crate::guard::Screened::OverBound { .. })) => {
            Code::ResourceExhausted
        }
        SessionError::Refused(Refusal::Screened(crate::guard::Screened::Malformed(_))) => {
            Code::InvalidArgument
        }
        SessionError::IdleTimeout(_) => Code::DeadlineExceeded,
        SessionError::ShuttingDown | SessionError::Disconnected(_) | SessionError::Contended(_) => {
            Code::Unavailable
        }
        SessionError::Store(_) | SessionError::Refused(Refusal::Store(_) | Refusal::Policy(_)) => {
            Code::Internal
        }
    };
    Status::new(code, err.to_string())
}

/// The `fivestar.v1.Query` service: standings, one community, tiers, sync status.
///
/// Least privilege: an identity whose community is not in the registry gets nothing;
/// a community device reads the standings, the tiers, its own community's detail and
/// its own community's sync status (other communities' detail only when
/// `devices_read_all_communities` is set); reviewers read everything.
#[derive(Debug, Clone)]
pub struct QueryService {
    shared: Arc<Shared>,
}

impl QueryService {
    /// A service over the shared hub state.
    pub fn new(shared: Arc<Shared>) -> QueryService {
        QueryService { shared }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Writer, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate was presented"))?;
        let writer =
            certs.first().and_then(|cert| writer_from_certificate(cert.as_ref())).ok_or_else(
                || Status::unauthenticated("the client certificate carries no fivestar identity"),
            )?;
        if let Writer::Device { community, .. } = &writer {
            let id = community.clone();
            let known = self
                .shared
                .store
                .call(move |store| store.registry().community(&id).is_some())
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            if !known {
                return Err(Status::permission_denied(format!(
                    "community {community:?} is not in the district registry"
                )));
            }
        }
        Ok(writer)
    }

    /// Whether `caller` may read the detail of `community`.
    fn may_read(&self, caller: &Writer, community: &str) -> bool {
        match caller {
            Writer::Reviewer { .. } => true,
            Writer::Device { community: own, .. } => {
                own == community || self.shared.devices_read_all_communities
            }
        }
    }

    async fn view(&self, at_ms: i64) -> Result<StandingsView, Status> {
        let stale_after = self.shared.stale_after;
        let at = (at_ms > 0).then_some(at_ms);
        self.shared
            .store
            .call(move |store| report::standings_view(store, stale_after, at, None))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|err| match err {
                ViewError::NoSnapshot { .. } => Status::not_found(err.to_string()),
                ViewError::Store(e) => Status::internal(e.to_string()),
            })
    }
}

#[tonic::async_trait]
impl QueryApi for QueryService {
    async fn standings(
        &self,
        request: Request<v1::StandingsRequest>,
    ) -> Result<Response<v1::StandingsReply>, Status> {
        self.caller(&request).await?;
        let request = request.into_inner();
        let kind = match request.kind.as_str() {
            "" => None,
            other => Some(other.parse::<Kind>().map_err(Status::invalid_argument)?),
        };
        let view = self.view(request.at_unix_ms).await?;
        let standings = view
            .rows
            .iter()
            .filter(|r| {
                request.subdistrict.is_empty() || r.standing.subdistrict == request.subdistrict
            })
            .filter(|r| kind.is_none_or(|k| r.standing.kind == k))
            .map(|r| standing_to_wire(&r.standing, r.rank_change))
            .collect();
        Ok(Response::new(v1::StandingsReply {
            computed_at_unix_ms: view.computed_ms,
            standings,
            snapshot: view.snapshot.unwrap_or(0),
        }))
    }

    async fn community(
        &self,
        request: Request<v1::CommunityRequest>,
    ) -> Result<Response<v1::CommunityReply>, Status> {
        let caller = self.caller(&request).await?;
        let id = request.into_inner().community_id;
        if !self.may_read(&caller, &id) {
            return Err(Status::permission_denied(format!(
                "{caller} may read only its own community's detail"
            )));
        }
        let view = self.view(0).await?;
        let row = view
            .rows
            .iter()
            .find(|r| r.standing.community == id)
            .ok_or_else(|| {
                Status::not_found(format!("community {id:?} is not in the district registry"))
            })?
            .clone();
        let kind = row.standing.kind;
        let lookup = id.clone();
        let (tasks, score) = self
            .shared
            .store
            .call(move |store| {
                let doc = store.community(&lookup)?;
                let tasks = doc.map(|d| d.read().0).unwrap_or_default();
                let score = fivestar_core::score(store.standard().kind(kind), &tasks);
                Ok::<_, fivestar_store::StoreError>((tasks, score))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::CommunityReply {
            standing: Some(standing_to_wire(&row.standing, row.rank_change)),
            tasks: tasks
                .iter()
                .map(|t| v1::TaskDetail {
                    task_id: t.id.clone(),
                    star_key: t.star.clone(),
                    title: t.title.clone(),
                    points: t.points,
                    status: t.status.to_string(),
                    progress: t.effective_progress(),
                    owner: t.owner.clone(),
                    due: t.due.map(|d| d.to_string()).unwrap_or_default(),
                    veto: t.veto,
                    earned_hundredths: fivestar_core::earned_hundredths(t),
                    review_verdict: t
                        .review
                        .as_ref()
                        .map(|r| r.verdict.as_str().to_string())
                        .unwrap_or_default(),
                    changed_since_review: t.changed_since_review(),
                    counted_star_key: t.counted_star_and_points().0.to_string(),
                    counted_points: t.counted_star_and_points().1,
                    review_comment: t
                        .review
                        .as_ref()
                        .map(|r| r.comment.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            lacks: score
                .stars
                .iter()
                .map(|s| v1::StarLack {
                    star_key: s.key.to_string(),
                    reasons: s.lacks.iter().map(|l| l.to_string()).collect(),
                })
                .collect(),
        }))
    }

    async fn sync_status(
        &self,
        request: Request<v1::SyncStatusRequest>,
    ) -> Result<Response<v1::SyncStatusReply>, Status> {
        let caller = self.caller(&request).await?;
        let mut peers = self
            .shared
            .store
            .call(|store| store.peers())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        // A device sees its own community's devices only: other devices' errors and
        // versions are the operators' business.
        if let Writer::Device { community, .. } = &caller {
            peers.retain(|p| p.community.as_deref() == Some(community.as_str()));
        }
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Response::new(v1::SyncStatusReply {
            devices: peers
                .into_iter()
                .map(|p| v1::DeviceStatus {
                    community_id: p.community.unwrap_or_default(),
                    device: p.name,
                    first_seen_unix_ms: p.first_seen_ms,
                    last_seen_unix_ms: p.last_seen_ms,
                    last_success_unix_ms: p.last_success_ms.unwrap_or(0),
                    last_error_class: p.last_error_class.unwrap_or_default(),
                    last_error_message: p.last_error_message.unwrap_or_default(),
                    sessions: unsigned(p.sessions),
                    bytes_in: unsigned(p.bytes_in),
                    bytes_out: unsigned(p.bytes_out),
                    changes_received: unsigned(p.changes_received),
                    node_version: p.node_version.unwrap_or_default(),
                    unacked_changes: p.unacked_changes.map(unsigned).unwrap_or(0),
                    oldest_unacked_age_seconds: p
                        .oldest_unacked_age_seconds
                        .map(unsigned)
                        .unwrap_or(0),
                    clock_skew_ms: p.clock_skew_ms.unwrap_or(0),
                })
                .collect(),
        }))
    }

    async fn tiers(
        &self,
        request: Request<v1::TiersRequest>,
    ) -> Result<Response<v1::TiersReply>, Status> {
        self.caller(&request).await?;
        let view = self.view(0).await?;
        Ok(Response::new(v1::TiersReply {
            computed_at_unix_ms: view.computed_ms,
            district: Some(tiers_to_wire(&view.tiers.district)),
            subdistricts: view
                .tiers
                .subdistricts
                .iter()
                .map(|(code, name, t)| v1::SubdistrictTiers {
                    code: code.clone(),
                    name: name.clone(),
                    counts: Some(tiers_to_wire(t)),
                })
                .collect(),
        }))
    }
}

fn tiers_to_wire(t: &Tiers) -> v1::TierCounts {
    v1::TierCounts { by_stars: t.by_stars.to_vec(), no_data: t.no_data, stale: t.stale }
}

fn standing_to_wire(s: &Standing, change: Option<i64>) -> v1::Standing {
    v1::Standing {
        community_id: s.community.clone(),
        community_name: s.name.clone(),
        subdistrict_code: s.subdistrict.clone(),
        subdistrict_name: s.subdistrict_name.clone(),
        kind: s.kind.as_str().to_string(),
        district_rank: s.district_rank.unwrap_or(0),
        subdistrict_rank: s.subdistrict_rank.unwrap_or(0),
        stars: s.stars,
        total_hundredths: s.total,
        star_scores: s
            .star_scores
            .iter()
            .map(|c| v1::StarScore {
                star_key: c.key.to_string(),
                score_hundredths: c.score,
                earned: c.earned,
            })
            .collect(),
        freshness: match s.freshness {
            Freshness::Current => v1::Freshness::Current,
            Freshness::Stale => v1::Freshness::Stale,
            Freshness::NoData => v1::Freshness::NoData,
        } as i32,
        last_sync_unix_ms: s.last_sync_ms.unwrap_or(0),
        rank_change: change.and_then(|c| i32::try_from(c).ok()),
    }
}
