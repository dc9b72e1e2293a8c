//! One sync session with one device, in domain terms (the wire is `service`'s).
//!
//! # Protocol (fivestar.v1)
//!
//! 1. The node sends `Hello`; the hub answers `Welcome` with the documents this
//!    writer may sync: its community's document (read-write) and the district
//!    document (read only); a reviewer gets every community's document.
//! 2. The sides take **turns**. A turn is zero or more sync messages followed by
//!    `Idle`. On the node's `Idle`, the hub (having stored and acknowledged
//!    everything the node sent) takes its turn: a message for each document that has
//!    something to say, an `Ack` with the heads it has durably stored, then `Idle`.
//! 3. The node takes another turn while it has something to say after the hub's
//!    answer. The hub records a successful sync when, after its turn, the node has
//!    told it exactly the heads the hub holds for every document (they agree), and
//!    acknowledges a document only when its stored heads changed since the session's
//!    last Ack of it (revision 1; see [`REVISION`]). A node of revision 0 ends its
//!    round with an empty turn that the hub answers; that still works.
//! 4. While the node stays connected, a change stored by anyone else (a review, another
//!    device of the community) makes the hub take a turn unasked: pushes.
//!
//! Every message is checked before anything is applied (see `store::HubStore::receive`);
//! a refusal ends the session with a status naming the rule, and the device's status
//! records it. Sync states are persisted per peer and document when the session ends,
//! so a reconnect sends only what is missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use automerge::ChangeHash;
use automerge::sync::{Message, State};
use fivestar_core::Writer;
use fivestar_store::{StoreError, StoreThread};
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use crate::config::Limits;
use crate::store::{
    AtOnce, DISTRICT_DOC, HubStore, PeerHello, Refusal, Traffic, community_doc_id, peer_name,
};

/// The protocol revision this hub speaks, told to the node in `Welcome`: 1 records
/// agreement on heads and skips Acks of unchanged heads, so a node need not end its
/// round with an empty turn (see the module's protocol).
pub const REVISION: u32 = 1;

/// Messages up to this size are screened on the store thread (a parse of at most
/// this many bytes), and merged there too when they carry at most
/// [`INLINE_MAX_OPS`] operations; larger ones are merged on a blocking thread.
const INLINE_MAX_BYTES: usize = 16 << 10;

/// See [`INLINE_MAX_BYTES`]: a clerk's edit is a few operations, a whole template a
/// few hundred.
const INLINE_MAX_OPS: usize = 256;

/// A frame from the node, decoded from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The first frame.
    Hello(PeerHello),
    /// An Automerge sync message for a document.
    Sync {
        /// The document.
        doc_id: String,
        /// The encoded message.
        message: Vec<u8>,
    },
    /// The end of the node's turn, with its number.
    Idle(u64),
}

/// A frame to the node, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// The answer to `Hello`.
    Welcome {
        /// The hub's clock, Unix milliseconds.
        hub_time_ms: i64,
        /// The protocol revision the hub speaks ([`REVISION`]).
        revision: u32,
        /// What the writer may sync.
        grants: Vec<Grant>,
    },
    /// An Automerge sync message for a document.
    Sync {
        /// The document.
        doc_id: String,
        /// The encoded message.
        message: Vec<u8>,
    },
    /// The hub has durably stored a document at these heads.
    Ack {
        /// The document.
        doc_id: String,
        /// Its heads.
        heads: Vec<ChangeHash>,
    },
    /// The end of the hub's turn: the node turn it answers, or 0 for a push.
    Idle(u64),
}

/// A document a writer may sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The document.
    pub doc_id: String,
    /// Whether the writer may write it at all (the policy decides which fields).
    pub write: bool,
}

/// Why a session ended early. Each maps to one gRPC status code in `service`.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The first frame was not `Hello`.
    #[error("the session must start with Hello")]
    NoHello,
    /// The device's community is not in the registry.
    #[error("community {0:?} is not in the district registry")]
    NotInRegistry(String),
    /// A document outside the writer's grants.
    #[error("{writer} may not sync {doc_id}")]
    Ungranted {
        /// Who.
        writer: String,
        /// Which document.
        doc_id: String,
    },
    /// A change was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The bytes are not an Automerge sync message.
    #[error("the sync message for {doc_id} cannot be decoded: {detail}")]
    Undecodable {
        /// The document.
        doc_id: String,
        /// The decoder's message.
        detail: String,
    },
    /// A gRPC frame over the decoder's limit.
    #[error("a frame is larger than the hub accepts (limits.max_message_bytes)")]
    FrameTooLarge,
    /// The session brought more than its budget.
    #[error(
        "this session brought {ops} operations, more than limits.max_ops_per_session ({limit}); reconnect to go on"
    )]
    OverBudget {
        /// Operations so far.
        ops: usize,
        /// The budget.
        limit: usize,
    },
    /// A message over the size limit.
    #[error(
        "the sync message for {doc_id} is {size} bytes; the hub accepts at most {limit} (raise limits.max_message_bytes if documents really are this large)"
    )]
    TooLarge {
        /// The document.
        doc_id: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No frame for too long.
    #[error("no frame from the node for {0} s; closing the idle session")]
    IdleTimeout(u64),
    /// Too many sessions at once.
    #[error("the hub is serving its maximum of {0} sessions; try again shortly")]
    Busy(usize),
    /// Other sessions kept writing the document while this one merged.
    #[error("{0} kept changing while this message was merged; send it again")]
    Contended(String),
    /// Too many sessions of one identity at once.
    #[error(
        "this device already has {0} sessions open; close one (limits.max_connections_per_identity)"
    )]
    TooManyOfOne(usize),
    /// The hub is stopping.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The hub's store failed.
    #[error("the hub could not store the data: {0}")]
    Store(#[from] StoreError),
    /// A frame that makes no sense here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The node's connection broke (links come and go; not the device's fault).
    #[error("the node's connection ended: {0}")]
    Disconnected(String),
}

impl SessionError {
    /// A short class name for status tables and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            SessionError::NoHello | SessionError::Protocol(_) => "protocol",
            SessionError::NotInRegistry(_) => "unknown_community",
            SessionError::Ungranted { .. } | SessionError::Refused(Refusal::Denied { .. }) => {
                "denied"
            }
            SessionError::Refused(Refusal::Invalid { .. }) => "invalid",
            SessionError::Refused(Refusal::Malformed { .. }) | SessionError::Undecodable { .. } => {
                "malformed"
            }
            SessionError::TooLarge { .. }
            | SessionError::FrameTooLarge
            | SessionError::OverBudget { .. }
            | SessionError::Refused(Refusal::Screened(crate::guard::Screened::OverBound {
                ..
            })) => "too_large",
            SessionError::Refused(Refusal::Screened(crate::guard::Screened::Malformed(_))) => {
                "malformed"
            }
            SessionError::IdleTimeout(_) => "idle",
            SessionError::Busy(_) | SessionError::TooManyOfOne(_) | SessionError::Contended(_) => {
                "busy"
            }
            SessionError::ShuttingDown => "shutdown",
            SessionError::Store(_)
            | SessionError::Refused(Refusal::Store(_) | Refusal::Policy(_)) => "store",
            SessionError::Disconnected(_) => "disconnected",
        }
    }
}

/// A document written (by a session, a review, another process) and its heads
/// right after: what the store watcher tells every session.
#[derive(Debug)]
pub struct Written {
    /// The document.
    pub doc_id: String,
    /// Its heads when the watcher saw the write.
    pub heads: Vec<ChangeHash>,
}

/// True when a sync message for a document at `heads` could say nothing: the hub
/// last sent the node exactly these heads and the node answered that it has them and
/// needs nothing (Automerge's generator returns nothing then too). A push to the node
/// that made the write is skipped so, without a trip to the store.
fn nothing_to_say(state: &State, heads: &[ChangeHash]) -> bool {
    state.have_responded
        && state.last_sent_heads == heads
        && state.their_heads.as_deref() == Some(heads)
        && state.their_need.as_ref().is_none_or(Vec::is_empty)
}

/// What every session shares.
#[derive(Debug)]
pub struct Shared {
    /// The hub's store, on its thread.
    pub store: StoreThread<HubStore>,
    /// Documents written (by a session or by another process such as `review`),
    /// published by the store watcher with their heads; sessions push them to their
    /// nodes.
    pub changes: broadcast::Sender<Arc<Written>>,
    /// The limits in force.
    pub limits: Limits,
    /// What one sync message may carry.
    pub bounds: crate::guard::Bounds,
    /// Whether a community device may read other communities' detail (Query).
    pub devices_read_all_communities: bool,
    /// Communities last synced longer ago than this are stale in the standings.
    pub stale_after: chrono::TimeDelta,
    /// One permit per running session.
    pub sessions: Arc<Semaphore>,
    /// Running sessions per identity (`peer_name`), capped by
    /// `max_connections_per_identity`: one connection can carry many streams.
    pub sessions_by_peer: crate::slots::Slots,
    /// Becomes true when the hub stops.
    pub shutdown: watch::Receiver<bool>,
}

/// A document's sync state with the peer and its chunks waiting for parents.
type DocState = (String, State, Vec<Vec<u8>>);

/// What the hub says in a turn: a message for each document that has something to
/// say, the stored heads (for the Acks of a reply), and whether the node agrees.
struct Answer {
    /// The sync states after generating (and the waiting chunks, unchanged).
    states: Vec<DocState>,
    /// Encoded sync messages.
    messages: Vec<(String, Vec<u8>)>,
    /// The stored heads of every document, when the turn acknowledges.
    heads: Vec<(String, Vec<ChangeHash>)>,
    /// Whether the node last announced exactly the stored heads of every document,
    /// with nothing waiting for parents: then neither side lacks anything.
    agreed: bool,
}

/// The store's side of a turn (on the store thread).
fn answer(store: &mut HubStore, states: Vec<DocState>, acks: bool) -> Result<Answer, StoreError> {
    answer_with(states, acks, |doc_id, state, pending| store.generate(doc_id, state, pending))
}

/// [`answer`] with the messages from `generate` (the store's, or one inside a
/// message's transaction).
fn answer_with(
    mut states: Vec<DocState>,
    acks: bool,
    mut generate: impl FnMut(
        &str,
        &mut State,
        &[Vec<u8>],
    ) -> Result<(Option<Message>, Vec<ChangeHash>), StoreError>,
) -> Result<Answer, StoreError> {
    let mut messages = Vec::new();
    let mut heads = Vec::new();
    let mut agreed = true;
    for (doc_id, state, pending) in states.iter_mut() {
        let (message, stored) = generate(doc_id, state, pending)?;
        if let Some(message) = message {
            messages.push((doc_id.clone(), message.encode()));
        }
        agreed &= pending.is_empty() && state.their_heads.as_ref() == Some(&stored);
        if acks {
            heads.push((doc_id.clone(), stored));
        }
    }
    Ok(Answer { states, messages, heads, agreed })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How often a session writes its peer's traffic counters and last success (see
/// `Session::recorded_at`).
const RECORD_EVERY: Duration = Duration::from_secs(5);

/// Runs one session until the node leaves, an error ends it, or the hub stops.
pub async fn run(
    shared: Arc<Shared>,
    writer: Writer,
    addr: String,
    mut inbound: impl Stream<Item = Result<Inbound, SessionError>> + Unpin,
    out: mpsc::Sender<Result<Outbound, SessionError>>,
) {
    let _permit = match shared.sessions.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let _ = out.send(Err(SessionError::Busy(shared.limits.max_sessions))).await;
            return;
        }
    };
    let peer_slot = shared
        .sessions_by_peer
        .take(&peer_name(&writer), shared.limits.max_connections_per_identity);
    let Some(_peer_slot) = peer_slot else {
        let cap = shared.limits.max_connections_per_identity;
        let _ = out.send(Err(SessionError::TooManyOfOne(cap))).await;
        return;
    };
    metrics::counter!(crate::observe::SESSIONS).increment(1);
    let mut session = Session {
        shared: shared.clone(),
        writer: writer.clone(),
        out,
        grants: Vec::new(),
        states: BTreeMap::new(),
        traffic: Traffic::default(),
        connected: false,
        recorded_at: None,
        succeeded: false,
        pending: BTreeMap::new(),
        ops_in: 0,
        acked: BTreeMap::new(),
    };
    let (community, device) = match &writer {
        Writer::Device { community, device } => (community.clone(), device.clone()),
        Writer::Reviewer { name, .. } => (String::new(), format!("reviewer {name}")),
    };
    let span = tracing::info_span!("sync_session", %community, %device, %addr);
    tracing::Instrument::instrument(
        async move {
            let result = session.run(&mut inbound).await;
            session.finish(result).await;
        },
        span,
    )
    .await;
}

struct Session {
    shared: Arc<Shared>,
    writer: Writer,
    out: mpsc::Sender<Result<Outbound, SessionError>>,
    grants: Vec<Grant>,
    states: BTreeMap<String, State>,
    /// What the session exchanged since the peer's counters were last written.
    traffic: Traffic,
    connected: bool,
    /// The peer's counters were last written then; they are written at most every
    /// `RECORD_EVERY` (and at the session's first success and its end), not on
    /// every turn, and in the commit of the message that finds them due: one small
    /// write transaction per turn cost more than a merge.
    recorded_at: Option<tokio::time::Instant>,
    /// This session has recorded a success.
    succeeded: bool,
    /// Per document, change chunks still waiting for their parents (see `HubStore::receive`).
    pending: BTreeMap<String, Vec<Vec<u8>>>,
    /// Operations received in this session (bounded by `max_ops_per_session`).
    ops_in: usize,
    /// Per document, the heads of the session's last Ack of it: a turn acknowledges
    /// only the documents whose stored heads moved since.
    acked: BTreeMap<String, Vec<ChangeHash>>,
}

impl Session {
    async fn run(
        &mut self,
        inbound: &mut (impl Stream<Item = Result<Inbound, SessionError>> + Unpin),
    ) -> Result<(), SessionError> {
        let idle = Duration::from_secs(self.shared.limits.idle_timeout_seconds);
        // A stream that never says Hello would hold a session slot: it gets little time.
        let hello_wait = Duration::from_secs(self.shared.limits.hello_timeout_seconds.max(1));
        let hello = match tokio::time::timeout(hello_wait, inbound.next()).await {
            Ok(Some(Ok(Inbound::Hello(hello)))) => hello,
            Ok(Some(Err(err))) => return Err(err),
            Ok(None) => return Ok(()),
            Ok(Some(Ok(_))) => return Err(SessionError::NoHello),
            Err(_) => return Err(SessionError::IdleTimeout(hello_wait.as_secs())),
        };
        self.welcome(hello).await?;
        let mut changes = self.shared.changes.subscribe();
        let mut shutdown = self.shared.shutdown.clone();
        // Only frames from the node keep the session alive; pushes to it do not.
        let mut deadline = tokio::time::Instant::now() + idle;
        // A frame read ahead (see the Sync arm) and not handled yet.
        let mut read_ahead: Option<Option<Result<Inbound, SessionError>>> = None;
        loop {
            let frame = match read_ahead.take() {
                Some(frame) => frame,
                None => tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(SessionError::IdleTimeout(idle.as_secs()));
                    }
                    frame = inbound.next() => frame,
                    changed = changes.recv() => {
                        match changed {
                            Ok(written) => {
                                let doc_id = &written.doc_id;
                                let granted = self.grants.iter().any(|g| g.doc_id == *doc_id);
                                let has_it = self.pending.get(doc_id).is_none_or(Vec::is_empty)
                                    && self.states.get(doc_id).is_some_and(|s| nothing_to_say(s, &written.heads));
                                if granted && !has_it {
                                    self.turn(std::slice::from_ref(doc_id), None).await?;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                self.turn(&self.granted(), None).await?;
                            }
                            Err(broadcast::error::RecvError::Closed) => return Err(SessionError::ShuttingDown),
                        }
                        continue;
                    }
                    _ = shutdown.changed() => return Err(SessionError::ShuttingDown),
                },
            };
            match frame {
                None => return Ok(()),
                Some(Err(err)) => return Err(err),
                Some(Ok(Inbound::Hello(_))) => {
                    return Err(SessionError::Protocol("Hello sent twice".into()));
                }
                Some(Ok(Inbound::Sync { doc_id, message })) => {
                    deadline = tokio::time::Instant::now() + idle;
                    // A node sends its turn's Idle right behind its message, so it has
                    // usually arrived with it: then the store answers the turn in the
                    // same call that stores the message.
                    let answering = match inbound.next().now_or_never() {
                        Some(Some(Ok(Inbound::Idle(turn)))) => Some(turn),
                        Some(other) => {
                            read_ahead = Some(other);
                            None
                        }
                        None => None,
                    };
                    let answer = self.receive(doc_id, message, answering.is_some()).await?;
                    if let Some(turn) = answering {
                        let agreed = match answer {
                            Some(answer) => self.say(answer, Some(turn)).await?,
                            None => self.turn(&self.granted(), Some(turn)).await?,
                        };
                        self.answered(agreed).await?;
                    }
                }
                Some(Ok(Inbound::Idle(turn))) => {
                    deadline = tokio::time::Instant::now() + idle;
                    // Agreement (a successful sync): after the hub's answer, the
                    // node has said it holds exactly the hub's stored heads of every
                    // document, so neither side lacks anything the other has.
                    let agreed = self.turn(&self.granted(), Some(turn)).await?;
                    self.answered(agreed).await?;
                }
            }
        }
    }

    async fn welcome(&mut self, hello: PeerHello) -> Result<(), SessionError> {
        let writer = self.writer.clone();
        let now = now_ms();
        let grants = self
            .shared
            .store
            .call(move |store| -> Result<Vec<Grant>, SessionError> {
                let mut grants = Vec::new();
                match &writer {
                    Writer::Device { community, .. } => {
                        if store.registry().community(community).is_none() {
                            return Err(SessionError::NotInRegistry(community.clone()));
                        }
                        store.ensure_community(community, now)?;
                        grants.push(Grant { doc_id: community_doc_id(community), write: true });
                    }
                    Writer::Reviewer { .. } => {
                        let ids: Vec<String> =
                            store.registry().communities.iter().map(|c| c.id.clone()).collect();
                        for id in ids {
                            store.ensure_community(&id, now)?;
                            grants.push(Grant { doc_id: community_doc_id(&id), write: true });
                        }
                    }
                }
                grants.push(Grant { doc_id: DISTRICT_DOC.to_string(), write: false });
                store.peer_connected(&writer, &hello, now)?;
                Ok(grants)
            })
            .await??;
        let peer = peer_name(&self.writer);
        let ids: Vec<String> = grants.iter().map(|g| g.doc_id.clone()).collect();
        self.states = self
            .shared
            .store
            .call(move |store| -> Result<BTreeMap<String, State>, StoreError> {
                ids.into_iter().map(|id| Ok((id.clone(), store.sync_state(&peer, &id)?))).collect()
            })
            .await??;
        self.grants = grants.clone();
        tracing::info!(documents = grants.len(), "session started");
        metrics::gauge!(crate::observe::CONNECTED).increment(1.0);
        self.connected = true;
        self.send(Outbound::Welcome { hub_time_ms: now_ms(), revision: REVISION, grants }).await
    }

    /// Checks and stores one message. With `answer`, the node's turn ended right
    /// behind it: the store may answer the turn in the same call, and the answer is
    /// returned (`None`: answer it with [`Session::turn`]).
    async fn receive(
        &mut self,
        doc_id: String,
        message: Vec<u8>,
        answer: bool,
    ) -> Result<Option<Answer>, SessionError> {
        let limit = self.shared.limits.max_message_bytes;
        if message.len() > limit {
            return Err(SessionError::TooLarge { doc_id, size: message.len(), limit });
        }
        if !self.grants.iter().any(|g| g.doc_id == doc_id) {
            let doc_id = crate::service::bounded(&doc_id, 64);
            return Err(SessionError::Ungranted { writer: self.writer.to_string(), doc_id });
        }
        self.traffic.bytes_in += message.len() as u64;
        let decoded = Message::decode(&message).map_err(|_| SessionError::Undecodable {
            doc_id: doc_id.clone(),
            detail: "it is not an Automerge sync message".into(),
        })?;
        let answer_states = answer.then(|| self.answer_states(&self.granted()));
        let mut state = self.states.remove(&doc_id).unwrap_or_default();
        let mut pending = self.pending.remove(&doc_id).unwrap_or_default();
        let started = std::time::Instant::now();
        let size = message.len();
        let traffic = self.traffic_due();
        let received = self
            .merge(&doc_id, &mut state, &mut pending, decoded, size, answer_states, traffic)
            .await;
        if pending.iter().map(Vec::len).sum::<usize>() > self.shared.limits.max_message_bytes {
            return Err(SessionError::Protocol(format!(
                "too many changes for {doc_id} arrived without their parents"
            )));
        }
        self.pending.insert(doc_id.clone(), pending);
        metrics::histogram!(crate::observe::MERGE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::counter!(crate::observe::BYTES, "direction" => "in")
            .increment(message.len() as u64);
        self.states.insert(doc_id.clone(), state);
        let (received, answer) = received?;
        if let Some(written) = traffic.filter(|_| received.traffic_written) {
            self.traffic_written(written);
        }
        self.ops_in += received.ops;
        if self.ops_in > self.shared.limits.max_ops_per_session {
            return Err(SessionError::OverBudget {
                ops: self.ops_in,
                limit: self.shared.limits.max_ops_per_session,
            });
        }
        if received.changes > 0 {
            self.traffic.changes += received.changes as u64;
            metrics::counter!(crate::observe::CHANGES).increment(received.changes as u64);
            tracing::info!(doc = %doc_id, changes = received.changes, "stored changes");
            // Other sessions learn of it from the store watcher, like any other write.
        }
        // The node learns what is stored from the Ack of the hub's answer to its turn,
        // which its Idle asks for right after its messages: one Ack per message would
        // be a frame, a flush and a write on the node for nothing more.
        Ok(answer)
    }

    /// Merges one message. A small one (the usual edit: a few operations) is read,
    /// screened, merged, checked and stored in one call on the store thread: handing
    /// it between threads cost more than merging it. A larger one is screened there
    /// (a parse bounded by [`INLINE_MAX_BYTES`]) or not at all, merged and checked on
    /// a blocking thread, and stored by the store thread if the document has not
    /// moved meanwhile (else the merge runs again). So a costly message holds up its
    /// own session, not the other documents.
    ///
    /// With `answer_states` (the turn's end arrived with the message), a message
    /// stored in one call is answered in it too: one trip to the store thread per
    /// edit. Otherwise (no states, the longer way, or a merge run again) no answer.
    /// `traffic` (the session's counters, when due) goes with the message's commit,
    /// which writes it if it stores changes.
    #[allow(clippy::too_many_arguments)]
    async fn merge(
        &self,
        doc_id: &str,
        state: &mut State,
        pending: &mut Vec<Vec<u8>>,
        message: Message,
        size: usize,
        mut answer_states: Option<Vec<DocState>>,
        traffic: Option<Traffic>,
    ) -> Result<(crate::store::Received, Option<Answer>), SessionError> {
        type Committed = Option<(crate::store::Received, State, Vec<Vec<u8>>, Option<Answer>)>;
        // One per message, moved once: its size does not matter (the merge's document
        // is boxed, the sync state is not).
        #[allow(clippy::large_enum_variant)]
        enum Step {
            Stored(Committed),
            Costly(Box<(crate::store::Merge, Option<crate::store::ScreenedMessage>)>),
        }
        let bounds = self.shared.bounds;
        let library_failed = || {
            SessionError::Refused(Refusal::Malformed {
                doc_id: doc_id.to_string(),
                detail: "the message made the hub's document library fail; it was refused".into(),
            })
        };
        for _ in 0..5 {
            let (writer, id) = (self.writer.clone(), doc_id.to_string());
            let (state_in, pending_in, message_in) =
                (state.clone(), pending.clone(), message.clone());
            // Only a first attempt answers: a retried merge leaves it to the turn.
            let answer_states = answer_states.take();
            let step = self
                .shared
                .store
                .call(move |store| -> Result<Step, Refusal> {
                    if size > INLINE_MAX_BYTES {
                        let merge = store.prepare(&writer, &id)?;
                        return Ok(Step::Costly(Box::new((merge, None))));
                    }
                    // One SQLite transaction: taken, merged, stored and answered.
                    let (mut state, mut pending) = (state_in, pending_in);
                    let at_once = store.receive_at_once(
                        &writer,
                        &id,
                        (&mut state, &mut pending),
                        message_in,
                        (bounds, INLINE_MAX_OPS),
                        now_ms(),
                        traffic,
                        |state, pending, generator| match answer_states {
                            Some(mut states) => {
                                for (doc, doc_state, doc_pending) in states.iter_mut() {
                                    if *doc == id {
                                        (*doc_state, *doc_pending) =
                                            (state.clone(), pending.to_vec());
                                    }
                                }
                                answer_with(states, true, |d, s, p| generator.generate(d, s, p))
                                    .map(Some)
                            }
                            None => Ok(None),
                        },
                    )?;
                    match at_once {
                        AtOnce::Stored(received, answer) => {
                            Ok(Step::Stored(Some((received, state, pending, answer))))
                        }
                        AtOnce::Costly(costly) => {
                            let (merge, screened) = *costly;
                            Ok(Step::Costly(Box::new((merge, Some(screened)))))
                        }
                    }
                })
                .await??;
            let committed: Committed = match step {
                Step::Stored(committed) => committed,
                Step::Costly(costly) => {
                    let (merge, screened) = *costly;
                    let (state_now, pending_now, message) =
                        (state.clone(), pending.clone(), message.clone());
                    let merged = tokio::task::spawn_blocking(move || match screened {
                        Some(screened) => merge.apply(&state_now, &pending_now, screened),
                        None => merge.run(&state_now, &pending_now, message, bounds),
                    })
                    .await
                    .map_err(|_| library_failed())??;
                    let (state_in, pending_in) = (state.clone(), pending.clone());
                    self.shared
                        .store
                        .call(move |store| {
                            let (mut state, mut pending) = (state_in, pending_in);
                            store
                                .commit(merged, &mut state, &mut pending, now_ms(), traffic)
                                .map(|received| received.map(|r| (r, state, pending, None)))
                        })
                        .await??
                }
            };
            if let Some((received, next_state, next_pending, answer)) = committed {
                *state = next_state;
                *pending = next_pending;
                return Ok((received, answer));
            }
        }
        Err(SessionError::Contended(doc_id.to_string()))
    }

    /// The hub's turn: what it has to say about `docs`, then Idle. A reply to node
    /// turn `answering` also acknowledges the stored heads of every document whose
    /// heads moved since the session last acknowledged it. Returns whether the node
    /// agrees with the hub: for every document it last announced exactly the heads
    /// the hub stores, and nothing of it waits for parents.
    async fn turn(
        &mut self,
        docs: &[String],
        answering: Option<u64>,
    ) -> Result<bool, SessionError> {
        let states = self.answer_states(docs);
        let acks = answering.is_some();
        let answer = self.shared.store.call(move |store| answer(store, states, acks)).await??;
        self.say(answer, answering).await
    }

    /// The documents this session may sync.
    fn granted(&self) -> Vec<String> {
        self.grants.iter().map(|g| g.doc_id.clone()).collect()
    }

    /// The session's sync states and waiting chunks of `docs`, for [`answer`].
    fn answer_states(&self, docs: &[String]) -> Vec<DocState> {
        docs.iter()
            .map(|d| {
                let pending = self.pending.get(d).cloned().unwrap_or_default();
                (d.clone(), self.states.get(d).cloned().unwrap_or_default(), pending)
            })
            .collect()
    }

    /// Sends what [`answer`] found: its messages, the Acks of heads that moved since
    /// the session's last Ack of them, then Idle (unless a push has nothing to say).
    /// Returns whether the node agrees with the hub.
    async fn say(&mut self, answer: Answer, answering: Option<u64>) -> Result<bool, SessionError> {
        let Answer { states, messages, heads, agreed } = answer;
        self.states.extend(states.into_iter().map(|(doc_id, state, _)| (doc_id, state)));
        let said = messages.len();
        for (doc_id, message) in messages {
            self.traffic.bytes_out += message.len() as u64;
            metrics::counter!(crate::observe::BYTES, "direction" => "out")
                .increment(message.len() as u64);
            self.send(Outbound::Sync { doc_id, message }).await?;
        }
        for (doc_id, heads) in heads {
            // The node recorded these heads from this session's last Ack already.
            if self.acked.get(&doc_id) == Some(&heads) {
                continue;
            }
            self.acked.insert(doc_id.clone(), heads.clone());
            self.send(Outbound::Ack { doc_id, heads }).await?;
        }
        // A push that found nothing to say (the node already has the write, as the
        // node that made it does) sends nothing: its Idle would be a frame, a flush
        // and a wake-up of the node per edit, for nothing.
        if answering.is_some() || said > 0 {
            self.send(Outbound::Idle(answering.unwrap_or(0))).await?;
        }
        Ok(agreed)
    }

    /// After the hub answered a node turn: a sync the node agrees with is a success,
    /// recorded at once the first time in a session and with the traffic counters
    /// every [`RECORD_EVERY`] (by the next message's commit, or here when due).
    async fn answered(&mut self, agreed: bool) -> Result<(), SessionError> {
        if agreed {
            self.traffic.success_ms = Some(now_ms());
        }
        if self.traffic_due().is_some() || (agreed && !self.succeeded) {
            self.record().await?;
        }
        Ok(())
    }

    /// The session's counters when they are due to be written.
    fn traffic_due(&self) -> Option<Traffic> {
        self.recorded_at.is_none_or(|at| at.elapsed() >= RECORD_EVERY).then_some(self.traffic)
    }

    /// `written` reached the peer's row: what is left is what came after.
    fn traffic_written(&mut self, written: Traffic) {
        self.recorded_at = Some(tokio::time::Instant::now());
        self.succeeded |= written.success_ms.is_some();
        let left = &mut self.traffic;
        left.bytes_in = left.bytes_in.saturating_sub(written.bytes_in);
        left.bytes_out = left.bytes_out.saturating_sub(written.bytes_out);
        left.changes = left.changes.saturating_sub(written.changes);
        if left.success_ms == written.success_ms {
            left.success_ms = None;
        }
    }

    /// Writes the session's counters in a transaction of their own.
    async fn record(&mut self) -> Result<(), SessionError> {
        let (writer, traffic) = (self.writer.clone(), self.traffic);
        self.shared
            .store
            .call(move |store| store.peer_traffic(&writer, traffic, now_ms()))
            .await??;
        self.traffic_written(traffic);
        Ok(())
    }

    async fn send(&mut self, frame: Outbound) -> Result<(), SessionError> {
        self.out
            .send(Ok(frame))
            .await
            // The response stream is gone: the connection broke (a cut link, not a
            // protocol violation of the device).
            .map_err(|_| {
                SessionError::Disconnected("the connection closed while the hub answered".into())
            })
    }

    /// Persists sync states and counters, and records an error if the session failed.
    async fn finish(mut self, result: Result<(), SessionError>) {
        let peer = peer_name(&self.writer);
        let states = std::mem::take(&mut self.states);
        let saved = self
            .shared
            .store
            .call(move |store| -> Result<(), StoreError> {
                for (doc_id, state) in &states {
                    store.set_sync_state(&peer, doc_id, state)?;
                }
                Ok(())
            })
            .await;
        if let Err(err) | Ok(Err(err)) = saved {
            tracing::warn!(error = %err, "sync states not saved");
        }
        let _ = self.record().await;
        if self.connected {
            metrics::gauge!(crate::observe::CONNECTED).decrement(1.0);
        }
        match result {
            Ok(()) => tracing::info!("session ended"),
            // A dropped link is an everyday event here, not a failure of the device.
            Err(SessionError::Disconnected(why)) => {
                tracing::info!(%why, "session ended with the link")
            }
            Err(err) => {
                tracing::warn!(error = %err, class = err.class(), "session refused");
                metrics::counter!(crate::observe::ERRORS, "class" => err.class()).increment(1);
                let (community, name) = match &self.writer {
                    Writer::Device { community, device } => {
                        (Some(community.clone()), device.clone())
                    }
                    Writer::Reviewer { name, .. } => (None, name.clone()),
                };
                let peer = peer_name(&self.writer);
                let class = err.class().to_string();
                let message = err.to_string();
                let _ = self
                    .shared
                    .store
                    .call(move |store| {
                        store.peer_error(
                            &peer,
                            community.as_deref(),
                            &name,
                            &class,
                            &message,
                            now_ms(),
                        )
                    })
                    .await;
                let _ = self.out.send(Err(err)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Runs seeded edits on a hub and a node document, syncing turn by turn, and
    /// checks at every hub turn that `nothing_to_say` never claims silence where
    /// Automerge's generator would speak; and that it does find silence after a
    /// node's own edit reached the hub and was answered (the push it saves).
    #[test]
    fn nothing_to_say_holds_only_when_the_generator_says_nothing() {
        let mut rng = StdRng::seed_from_u64(12);
        let (mut hub, mut node) = (AutoCommit::new(), AutoCommit::new());
        let (mut at_hub, mut at_node) = (State::new(), State::new());
        let mut silent = 0;
        for step in 0..400 {
            match rng.random_range(0..4) {
                0 => {
                    let value: i64 = rng.random_range(0..1000);
                    node.put(ROOT, format!("k{}", value % 7), value).unwrap();
                }
                1 if step % 5 == 0 => {
                    hub.put(ROOT, "review", step).unwrap();
                }
                _ => {}
            }
            // A node turn, then the hub's answer (a session's stream loses nothing).
            if let Some(m) = node.sync().generate_sync_message(&mut at_node) {
                hub.sync().receive_sync_message(&mut at_hub, m).unwrap();
            }
            let heads = hub.get_heads();
            let claimed = nothing_to_say(&at_hub, &heads);
            let generated = hub.sync().generate_sync_message(&mut at_hub);
            if claimed {
                assert!(generated.is_none(), "step {step}: claimed silence, generator spoke");
                silent += 1;
            }
            if let Some(m) = generated {
                node.sync().receive_sync_message(&mut at_node, m).unwrap();
            }
            // The watcher's push after the hub stored what the node sent.
            let heads = hub.get_heads();
            if nothing_to_say(&at_hub, &heads) {
                assert!(hub.sync().generate_sync_message(&mut at_hub).is_none(), "step {step}");
                silent += 1;
            }
        }
        assert!(silent > 100, "the push after a node's own edit is skipped ({silent})");
    }
}
