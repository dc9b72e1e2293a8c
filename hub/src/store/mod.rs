//! The hub's store: every community's document, the district document, and what the
//! hub knows of each device. Same design as the node's (`fivestar-store`): snapshot +
//! chunks, WAL with `synchronous = FULL`, writes under SQLite's write lock.
//!
//! Every incoming change passes two gates before it is stored, both on a copy of the
//! document: the message must decode and merge, and every new change must pass
//! [`fivestar_core::Policy::check`] for the identity that delivered it, judged against
//! the stored document it merges into (ownership, honest content, values). If a gate
//! refuses, nothing is stored. Rules that span fields written by different people are
//! not gates (DOMAIN.md's first law): they are decided when a document is read.
//!
//! Every change stored is recorded in `deliveries` with the identity that delivered
//! it and when, so `history` can show who really sent a change whatever its actor id
//! or commit message claims.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use automerge::sync::{Message, State, SyncDoc};
use automerge::{ActorId, ChangeHash, ReadDoc};
use fivestar_core::document::community_of;
use fivestar_core::policy::check_district;
use fivestar_core::{
    CommunityDoc, EditError, Kind, Policy, Registry, Review, Role, Stamp, Standard, Touched,
    Writer, district,
};
use fivestar_store::CachedSql;
use fivestar_store::rusqlite::params;
use fivestar_store::{DocStore, Schema, StoreError};

pub mod accounts;
pub mod files;
mod receive;
pub mod standings;

/// The hub's own tables, after the store's.
const HUB_MIGRATIONS: &[&str] = &[
    // 1: what the hub knows of each device (or reviewer) that connects.
    "CREATE TABLE peers (
         peer TEXT PRIMARY KEY,
         community TEXT,
         name TEXT NOT NULL,
         first_seen_ms INTEGER NOT NULL,
         last_seen_ms INTEGER NOT NULL,
         last_success_ms INTEGER,
         last_error_ms INTEGER,
         last_error_class TEXT,
         last_error_message TEXT,
         sessions INTEGER NOT NULL DEFAULT 0,
         bytes_in INTEGER NOT NULL DEFAULT 0,
         bytes_out INTEGER NOT NULL DEFAULT 0,
         changes_received INTEGER NOT NULL DEFAULT 0,
         node_version TEXT,
         unacked_changes INTEGER,
         oldest_unacked_age_seconds INTEGER,
         clock_skew_ms INTEGER
     ) STRICT;",
    // 2: standings snapshots, and the standard and registry texts they were made with.
    "CREATE TABLE texts (sha256 TEXT PRIMARY KEY, text TEXT NOT NULL) STRICT;
     CREATE TABLE standings_snapshots (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         computed_ms INTEGER NOT NULL,
         stale_after_ms INTEGER NOT NULL,
         standard_sha256 TEXT NOT NULL REFERENCES texts (sha256),
         registry_sha256 TEXT NOT NULL REFERENCES texts (sha256),
         heads TEXT NOT NULL,
         last_sync TEXT NOT NULL,
         rows TEXT NOT NULL
     ) STRICT;
     CREATE INDEX snapshots_by_time ON standings_snapshots (computed_ms);",
    // 3: who delivered every change the hub stored, and when (the audit).
    "CREATE TABLE deliveries (
         doc_id TEXT NOT NULL,
         hash TEXT NOT NULL,
         peer TEXT NOT NULL,
         delivered_ms INTEGER NOT NULL,
         PRIMARY KEY (doc_id, hash)
     ) STRICT;",
    // 4: the district's accounts for the review desk and dashboard (argon2id hashes).
    "CREATE TABLE accounts (
         name TEXT PRIMARY KEY,
         display TEXT NOT NULL,
         role TEXT NOT NULL,
         password_hash TEXT NOT NULL,
         disabled INTEGER NOT NULL DEFAULT 0,
         created_ms INTEGER NOT NULL,
         changed_ms INTEGER NOT NULL
     ) STRICT;",
    // 5: evidence files, per community and SHA-256, received in chunks (resumable).
    "CREATE TABLE files (
         community TEXT NOT NULL,
         sha256 TEXT NOT NULL,
         size INTEGER NOT NULL,
         received INTEGER NOT NULL DEFAULT 0,
         complete INTEGER NOT NULL DEFAULT 0,
         started_ms INTEGER NOT NULL,
         completed_ms INTEGER,
         PRIMARY KEY (community, sha256)
     ) STRICT;
     CREATE TABLE file_chunks (
         community TEXT NOT NULL,
         sha256 TEXT NOT NULL,
         offset INTEGER NOT NULL,
         data BLOB NOT NULL,
         PRIMARY KEY (community, sha256, offset)
     ) STRICT;",
    // 6: previews of evidence photos (NULL: the photo could not be decoded).
    "CREATE TABLE file_thumbs (
         community TEXT NOT NULL,
         sha256 TEXT NOT NULL,
         thumb BLOB,
         PRIMARY KEY (community, sha256)
     ) STRICT;",
    // 7: deliveries kept in their key's own B-tree (WITHOUT ROWID): a rowid table
    // with a separate index on the key wrote two pages for every change stored.
    "CREATE TABLE deliveries_next (
         doc_id TEXT NOT NULL,
         hash TEXT NOT NULL,
         peer TEXT NOT NULL,
         delivered_ms INTEGER NOT NULL,
         PRIMARY KEY (doc_id, hash)
     ) STRICT, WITHOUT ROWID;
     INSERT INTO deliveries_next (doc_id, hash, peer, delivered_ms)
         SELECT doc_id, hash, peer, delivered_ms FROM deliveries;
     DROP TABLE deliveries;
     ALTER TABLE deliveries_next RENAME TO deliveries;",
];

/// The hub's database schema.
pub const SCHEMA: Schema =
    Schema { kind: "fivestar hub", component: "hub", migrations: HUB_MIGRATIONS };

pub use fivestar_core::document::{DISTRICT_DOC_ID as DISTRICT_DOC, community_doc_id};

/// The name the hub keeps a writer's sync states and status under.
pub fn peer_name(writer: &Writer) -> String {
    match writer {
        Writer::Device { community, device } => format!("{community}/{device}"),
        Writer::Reviewer { name, .. } => format!("reviewer/{name}"),
    }
}

/// Why an incoming sync message was refused. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The writer may not make this change (a field its role does not own).
    #[error("{detail}")]
    Denied {
        /// The document.
        doc_id: String,
        /// The rule broken, in words.
        detail: String,
    },
    /// A value does not fit the schema.
    #[error("the change to {doc_id} does not fit the schema: {detail}")]
    Invalid {
        /// The document.
        doc_id: String,
        /// What is wrong, with its path.
        detail: String,
    },
    /// The message does not fit the document (Automerge refused it), or a change is
    /// forged (its operations name operations outside its own history).
    #[error("the sync message for {doc_id} cannot be applied: {detail}")]
    Malformed {
        /// The document.
        doc_id: String,
        /// Automerge's message.
        detail: String,
    },
    /// The hub could not store it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub could not build the community's write rules.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The message costs more than the bounds allow, or is malformed; checked before
    /// Automerge applies it.
    #[error(transparent)]
    Screened(#[from] crate::guard::Screened),
}

/// The write rules of a community could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The standard's template changes could not be made.
    #[error("the standard's template cannot be built: {0}")]
    Template(#[from] EditError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache lost an entry it had just inserted.
    #[error("the write rules were lost from the cache")]
    Lost,
}

/// A sync message about to be merged: the stored document as it was read, and who
/// delivered the message. [`Merge::run`] does the costly part and touches nothing
/// shared, so it runs on any thread.
#[derive(Debug)]
pub struct Merge {
    doc_id: String,
    writer: Writer,
    /// Shared with the store's own: a policy holds the template's changes and keys,
    /// and copying it per message cost more than checking the message against it.
    policy: Option<Arc<Policy>>,
    /// The stored document's write number when it was taken (`None`: not stored).
    seq: Option<i64>,
    current: automerge::Automerge,
}

/// What a merge accepted, ready for [`HubStore::commit`].
#[derive(Debug)]
pub struct Merged {
    doc_id: String,
    seq: Option<i64>,
    before: Vec<ChangeHash>,
    candidate: automerge::Automerge,
    new: Vec<automerge::Change>,
    /// The tasks the new changes wrote into (a community's document only).
    touched: Option<Touched>,
    next_state: State,
    waiting: bool,
    chunks: Vec<Vec<u8>>,
    ops: usize,
    peer: String,
}

/// A sync message that passed [`crate::guard::screen`]: within every bound, its
/// changes parsed, ready for [`Merge::apply`].
#[derive(Debug)]
pub struct ScreenedMessage {
    message: Message,
    ops: usize,
    received: Vec<automerge::Change>,
}

impl ScreenedMessage {
    /// The operations its changes carry: what applying it will cost.
    pub fn ops(&self) -> usize {
        self.ops
    }
}

impl Merge {
    /// Screens the message, merges it into a copy of the document and checks every new
    /// change against the rules: [`Merge::screen`], then [`Merge::apply`].
    pub fn run(
        self,
        state: &State,
        pending: &[Vec<u8>],
        message: Message,
        bounds: crate::guard::Bounds,
    ) -> Result<Merged, Refusal> {
        let screened = self.screen(message, bounds)?;
        self.apply(state, pending, screened)
    }

    /// Bounds the message before Automerge pays for it: its cost is the parse of
    /// its bytes (bounded by the frame size), and nothing is applied.
    pub fn screen(
        &self,
        message: Message,
        bounds: crate::guard::Bounds,
    ) -> Result<ScreenedMessage, Refusal> {
        let (message, ops, received) = crate::guard::screen(message, &self.current, bounds)?;
        Ok(ScreenedMessage { message, ops, received })
    }

    /// Merges a screened message into the document and checks every new change
    /// against the rules. Every call into Automerge is isolated: a panic refuses the
    /// message.
    pub fn apply(
        self,
        state: &State,
        pending: &[Vec<u8>],
        screened: ScreenedMessage,
    ) -> Result<Merged, Refusal> {
        let Merge { doc_id, writer, policy, seq, current } = self;
        let ScreenedMessage { message, ops, received } = screened;
        let before = current.get_heads();
        let presumed =
            if pending.is_empty() { new_in_causal_order(&current, received) } else { None };
        let mut candidate = current;
        let chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
        let mut next_state = state.clone();
        let merged = catch_unwind(AssertUnwindSafe(|| -> Result<_, Refusal> {
            for chunk in pending {
                let _ = candidate.load_incremental(chunk);
            }
            receive::receive(&mut candidate, &mut next_state, message).map_err(|_| {
                Refusal::Malformed {
                    doc_id: doc_id.clone(),
                    detail: "its changes do not fit this document (a duplicate or out-of-order \
                             change of one actor)"
                        .into(),
                }
            })?;
            let waiting = !candidate.get_missing_deps(&[]).is_empty();
            // All of them applied: they are what the merge added. Otherwise Automerge
            // finds (and encodes again) what it added.
            let new = match presumed {
                Some(received) if !waiting => received,
                _ => candidate.get_changes(&before),
            };
            debug_assert_eq!(
                new.iter().map(|c| c.hash()).collect::<std::collections::BTreeSet<_>>(),
                candidate.get_changes(&before).iter().map(|c| c.hash()).collect(),
                "the changes a merge added"
            );
            let touched = match &policy {
                Some(policy) => policy.check_touched(&writer, &candidate, &new).map(Some),
                None => check_district(&writer, &new).map(|()| None),
            }
            .map_err(|refused| refusal(&doc_id, refused))?;
            Ok((waiting, new, touched))
        }));
        let (waiting, new, touched) = match merged {
            Ok(result) => result?,
            Err(_) => {
                metrics::counter!(crate::observe::PANICS).increment(1);
                tracing::error!(%doc_id, writer = %writer, "a sync message made the document library fail; refused");
                return Err(Refusal::Malformed {
                    doc_id,
                    detail: "the message made the hub's document library fail; it was refused \
                             and nothing was stored"
                        .into(),
                });
            }
        };
        let peer = peer_name(&writer);
        Ok(Merged {
            doc_id,
            seq,
            before,
            candidate,
            new,
            touched,
            next_state,
            waiting,
            chunks,
            ops,
            peer,
        })
    }
}

/// `received` when every change in it is new to `doc` and comes after its parents
/// (in `doc`, or earlier in the list), and `doc` holds no change waiting for its
/// parents: then, once all are applied, they are exactly what the merge added, in
/// causal order. `None` otherwise (a change the hub has, one out of order, or a
/// document with changes still waiting).
fn new_in_causal_order(
    doc: &automerge::Automerge,
    received: Vec<automerge::Change>,
) -> Option<Vec<automerge::Change>> {
    let has = |hash: &ChangeHash| receive::has_change(doc, hash);
    if received.is_empty() || !doc.get_missing_deps(&[]).is_empty() {
        return None;
    }
    let mut earlier = std::collections::HashSet::with_capacity(received.len());
    for change in &received {
        let hash = change.hash();
        let after_parents = change.deps().iter().all(|dep| earlier.contains(dep) || has(dep));
        if !after_parents || has(&hash) || !earlier.insert(hash) {
            return None;
        }
    }
    Some(received)
}

/// What a received message brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// How many new changes were stored.
    pub changes: usize,
    /// The document's heads, durably stored.
    pub heads: Vec<ChangeHash>,
    /// Operations the message carried (for the session's budget).
    pub ops: usize,
    /// The session's traffic given to [`HubStore::commit`] was written with the
    /// changes (only a commit that stores changes writes it).
    pub traffic_written: bool,
}

/// Why a review was not recorded. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The community is not in the registry.
    #[error("community {0:?} is not in the district registry")]
    UnknownCommunity(String),
    /// The community has never synced: the hub has no such task.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The reviewer may not review this task, or is not a reviewer of this hub.
    #[error("{0}")]
    Denied(String),
    /// The hub could not store it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub could not build the community's write rules.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// What a node said about itself at the start of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerHello {
    /// Its software version.
    pub version: String,
    /// How many local changes the hub has not acknowledged.
    pub unacked_changes: u64,
    /// The age of the oldest, seconds.
    pub oldest_unacked_age_seconds: u64,
    /// Its clock, Unix milliseconds.
    pub clock_ms: i64,
}

/// What the hub knows of one device or reviewer that connected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// `community/device` or `reviewer/name`.
    pub peer: String,
    /// The device's community (none for reviewers).
    pub community: Option<String>,
    /// The device's or reviewer's name.
    pub name: String,
    /// First connection, Unix milliseconds.
    pub first_seen_ms: i64,
    /// Latest connection or frame, Unix milliseconds.
    pub last_seen_ms: i64,
    /// Latest completed exchange, Unix milliseconds.
    pub last_success_ms: Option<i64>,
    /// Latest failure, Unix milliseconds.
    pub last_error_ms: Option<i64>,
    /// Its class (`denied`, `invalid`, `too_large`, ...).
    pub last_error_class: Option<String>,
    /// Its message.
    pub last_error_message: Option<String>,
    /// Sessions opened.
    pub sessions: i64,
    /// Sync payload bytes received.
    pub bytes_in: i64,
    /// Sync payload bytes sent.
    pub bytes_out: i64,
    /// Changes received and stored.
    pub changes_received: i64,
    /// The node's software version.
    pub node_version: Option<String>,
    /// Changes the node reported as not yet acknowledged.
    pub unacked_changes: Option<i64>,
    /// Age of the oldest of them, seconds.
    pub oldest_unacked_age_seconds: Option<i64>,
    /// Node clock minus hub clock at connection, milliseconds.
    pub clock_skew_ms: Option<i64>,
}

/// The one owner of the hub's database.
#[derive(Debug)]
pub struct HubStore {
    docs: DocStore,
    actor: ActorId,
    registry: Registry,
    standard: Standard,
    /// SHA-256 of the standard and registry texts in force (kept in `texts`).
    standard_sha: String,
    registry_sha: String,
    /// Scores by community, with the heads they were computed at.
    scores: standings::ScoreCache,
    /// The table of the latest standings snapshot (with the standard's and the
    /// registry's hashes), once read: a refresh compares against it in memory.
    latest_table: Option<(Vec<fivestar_core::Standing>, String, String)>,
    /// Reviewers' roles from `hub.toml` (`[reviewers]`); empty: every reviewer is the
    /// office (a district with one review office and no task forces configured).
    reviewers: BTreeMap<String, Role>,
    /// The write rules of each community, built on first use.
    policies: HashMap<String, Arc<Policy>>,
    /// The largest a community's stored document may grow (`limits.max_document_bytes`).
    max_document_bytes: usize,
}

/// What a merge's transaction stored (or found it had to store nothing), for what
/// follows its commit.
#[derive(Debug)]
struct Written {
    doc_id: String,
    before: Vec<ChangeHash>,
    heads: Vec<ChangeHash>,
    new: Vec<automerge::Change>,
    touched: Option<Touched>,
    /// The session's next sync state, until [`Written::session_after`] takes it.
    next_state: State,
    waiting: bool,
    chunks: Vec<Vec<u8>>,
    ops: usize,
}

impl Written {
    /// The session's sync state and waiting chunks once this is committed (moved
    /// out: asked once).
    fn session_after(&mut self, pending: &[Vec<u8>]) -> (State, Vec<Vec<u8>>) {
        let pending = if self.waiting {
            pending.iter().chain(&self.chunks).cloned().collect()
        } else {
            Vec::new()
        };
        (std::mem::replace(&mut self.next_state, State::new()), pending)
    }
}

/// Stores what [`Merge::run`] accepted, in `txn`, if the document has not moved since
/// it was taken. `None` means it has (another session wrote it meanwhile): nothing
/// was stored. A commit that stores changes writes `traffic` too.
fn write_merged(
    txn: &mut fivestar_store::Txn<'_>,
    merged: Merged,
    max_document_bytes: usize,
    now_ms: i64,
    traffic: Option<Traffic>,
) -> Result<Option<Written>, Refusal> {
    let Merged {
        doc_id,
        seq,
        before,
        candidate,
        new,
        touched,
        next_state,
        waiting,
        chunks,
        ops,
        peer,
    } = merged;
    // Written since it was taken? (Its write number, not its heads: the cache no
    // longer holds it.)
    let stored = txn.stored(&doc_id)?;
    if stored.map(|(seq, _)| seq) != seq {
        return Ok(None);
    }
    let heads = candidate.get_heads();
    if !new.is_empty() {
        // The document may not grow past its bound (`max_document_bytes`).
        let stored = stored.map_or(0, |(_, bytes)| bytes);
        let adding: usize = new.iter().map(|c| c.raw_bytes().len()).sum();
        let total = usize::try_from(stored).unwrap_or(usize::MAX).saturating_add(adding);
        if total > max_document_bytes {
            return Err(Refusal::Screened(crate::guard::Screened::OverBound {
                what: "bytes of stored document after it",
                count: total,
                limit: max_document_bytes,
                setting: "limits.max_document_bytes",
            }));
        }
        // The merged document becomes the cached one: moved, not copied. Its new
        // changes are stored as they arrived, not encoded again.
        txn.save_changes_owned(&doc_id, &before, candidate, &new, now_ms)?;
        record_deliveries(txn, &doc_id, &new, &peer, now_ms)?;
        if let Some(traffic) = traffic {
            write_traffic(txn.sql(), &peer, traffic, now_ms).map_err(|e| txn.err(e))?;
        }
    } else if let Some(seq) = seq
        && !waiting
    {
        // Nothing new: the taken document goes back into the cache as it was,
        // unless it holds changes still waiting for their parents.
        txn.keep(&doc_id, seq, candidate);
    }
    Ok(Some(Written { doc_id, before, heads, new, touched, next_state, waiting, chunks, ops }))
}

/// What [`HubStore::receive_at_once`] did with a message.
#[derive(Debug)]
pub enum AtOnce<A> {
    /// Stored (durably), and answered.
    Stored(Received, A),
    /// Over the operations allowed on the store thread: merge it elsewhere.
    Costly(Box<(Merge, ScreenedMessage)>),
}

/// Sync messages generated inside a message's transaction (for
/// [`HubStore::receive_at_once`]'s answer), from the documents as it stored them.
#[derive(Debug)]
pub struct Generator<'t, 'c> {
    txn: &'t mut fivestar_store::Txn<'c>,
}

impl Generator<'_, '_> {
    /// [`HubStore::generate`], in the message's transaction.
    pub fn generate(
        &mut self,
        doc_id: &str,
        state: &mut State,
        pending: &[Vec<u8>],
    ) -> Result<(Option<Message>, Vec<ChangeHash>), StoreError> {
        let generated = self.txn.peek(doc_id, |doc| generate_on(doc_id, doc, state, pending))?;
        Ok(generated
            .unwrap_or_else(|| generate_on(doc_id, &automerge::Automerge::new(), state, pending)))
    }
}

/// The next sync message for a peer from `doc`, if there is anything to say, and
/// `doc`'s heads. `pending` (chunks waiting for their parents) are loaded into a
/// copy first, so the message asks for those parents. A generator that fails
/// resets the peer's sync state: what it said about itself broke it.
fn generate_on(
    doc_id: &str,
    doc: &automerge::Automerge,
    state: &mut State,
    pending: &[Vec<u8>],
) -> (Option<Message>, Vec<ChangeHash>) {
    let heads = doc.get_heads();
    let generated = catch_unwind(AssertUnwindSafe(|| {
        if pending.is_empty() {
            return doc.generate_sync_message(state);
        }
        let mut doc = doc.clone();
        for chunk in pending {
            let _ = doc.load_incremental(chunk);
        }
        doc.generate_sync_message(state)
    }));
    match generated {
        Ok(message) => (message, heads),
        Err(_) => {
            metrics::counter!(crate::observe::PANICS).increment(1);
            tracing::error!(%doc_id, "generating a sync message failed; the peer's sync state was reset");
            *state = State::new();
            (None, heads)
        }
    }
}

/// How a refused change becomes a [`Refusal`].
fn refusal(doc_id: &str, refused: fivestar_core::Refusal) -> Refusal {
    let doc_id = doc_id.to_string();
    match refused {
        fivestar_core::Refusal::Denied { .. } => {
            Refusal::Denied { doc_id, detail: refused.to_string() }
        }
        fivestar_core::Refusal::Invalid { .. } => {
            Refusal::Invalid { doc_id, detail: refused.to_string() }
        }
        fivestar_core::Refusal::Malformed { .. } => {
            Refusal::Malformed { doc_id, detail: refused.to_string() }
        }
    }
}

impl HubStore {
    /// Opens (or creates) the hub's database and publishes the standard and registry
    /// in the district document if they changed.
    pub fn open(
        path: &Path,
        standard_toml: &str,
        registry_toml: &str,
        now_ms: i64,
    ) -> Result<HubStore, HubOpenError> {
        let standard = Standard::from_toml(standard_toml)?;
        let registry = Registry::from_toml(registry_toml)?;
        let mut docs = if path.exists() {
            DocStore::open(path, &SCHEMA)?
        } else {
            DocStore::create(path, &SCHEMA)?
        };
        let actor = match docs.meta("actor")?.and_then(|hex| hex.parse::<ActorId>().ok()) {
            Some(actor) => actor,
            None => {
                let actor = ActorId::random();
                docs.set_meta("actor", &actor.to_hex_string())?;
                actor
            }
        };
        let mut district = docs.read(DISTRICT_DOC)?.unwrap_or_default();
        district.set_actor(actor.clone());
        let before = district.get_heads();
        if district::publish(&mut district, standard_toml, registry_toml, now_ms / 1000)
            .map_err(|e| HubOpenError::District(e.to_string()))?
        {
            docs.write(|t| t.save(DISTRICT_DOC, &before, &district, now_ms))??;
        }
        let standard_sha = standings::remember_text(&docs, standard_toml)?;
        let registry_sha = standings::remember_text(&docs, registry_toml)?;
        Ok(HubStore {
            docs,
            actor,
            registry,
            standard,
            standard_sha,
            registry_sha,
            scores: standings::ScoreCache::default(),
            latest_table: None,
            reviewers: BTreeMap::new(),
            policies: HashMap::new(),
            max_document_bytes: crate::config::Limits::default().max_document_bytes,
        })
    }

    /// Sets the largest a stored document may grow, bytes.
    pub fn set_max_document_bytes(&mut self, bytes: usize) {
        self.max_document_bytes = bytes;
    }

    /// Sets the reviewers' roles (`[reviewers]` of `hub.toml`).
    pub fn set_reviewers(&mut self, reviewers: BTreeMap<String, Role>) {
        self.reviewers = reviewers;
    }

    /// The writer as this hub authorizes it: a reviewer gets the role `hub.toml` gives
    /// them, whatever the caller said. A reviewer not listed there (when any is) may
    /// not write.
    pub fn authoritative(&self, writer: &Writer) -> Result<Writer, String> {
        // An account of the review desk decides first: its role, or no review at all.
        if let Writer::Reviewer { name, .. } = writer
            && let Ok(Some(account)) = self.account(name)
        {
            return match (&account.role, account.disabled) {
                (_, true) => Err(format!("account {name} is disabled, so may not review")),
                (accounts::AccountRole::Reviewer(role), false) => {
                    Ok(Writer::Reviewer { name: name.clone(), role: role.clone() })
                }
                (accounts::AccountRole::Operator, false) => {
                    Err(format!("account {name} is an operator's: operators do not review"))
                }
            };
        }
        match writer {
            Writer::Device { .. } => Ok(writer.clone()),
            Writer::Reviewer { name, .. } if self.reviewers.is_empty() => {
                Ok(Writer::Reviewer { name: name.clone(), role: Role::Office })
            }
            Writer::Reviewer { name, .. } => match self.reviewers.get(name) {
                Some(role) => Ok(Writer::Reviewer { name: name.clone(), role: role.clone() }),
                None => Err(format!(
                    "reviewer {name} is not listed in [reviewers] of hub.toml, so may not review"
                )),
            },
        }
    }

    /// The write rules of a community: its kind's standard now, and the template
    /// tasks of every earlier edition the hub has published (so a node that applied
    /// an earlier edition offline is not stranded).
    fn policy(&mut self, community: &str) -> Result<&Arc<Policy>, PolicyError> {
        if !self.policies.contains_key(community) {
            let kind = self.registry.community(community).map(|c| c.kind).unwrap_or(Kind::Urban);
            let current = self.standard.kind(kind);
            let mut policy = Policy::new(community, current)?;
            let mut stmt =
                self.docs.conn().prepare("SELECT text FROM texts").map_err(|e| self.docs.err(e))?;
            let texts: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .map_err(|e| self.docs.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.docs.err(e))?;
            drop(stmt);
            for text in texts {
                if let Ok(edition) = Standard::from_toml(&text)
                    && edition.kind(kind) != current
                {
                    let _ = policy.add_edition(edition.kind(kind));
                }
            }
            self.policies.insert(community.to_string(), Arc::new(policy));
        }
        self.policies.get(community).ok_or(PolicyError::Lost)
    }

    /// The registry in force.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The standard in force.
    pub fn standard(&self) -> &Standard {
        &self.standard
    }

    /// The underlying document store.
    pub fn docs(&mut self) -> &mut DocStore {
        &mut self.docs
    }

    /// Creates a community's document (its deterministic genesis) if the hub has none.
    pub fn ensure_community(&mut self, community: &str, now_ms: i64) -> Result<(), StoreError> {
        let doc_id = community_doc_id(community);
        if self.docs.read(&doc_id)?.is_none() {
            let doc = CommunityDoc::new(community, self.actor.clone());
            self.docs.write(|t| t.save(&doc_id, &[], doc.automerge(), now_ms))??;
        }
        Ok(())
    }

    /// A community's document, if the hub has it.
    pub fn community(&mut self, community: &str) -> Result<Option<CommunityDoc>, StoreError> {
        Ok(self
            .docs
            .read(&community_doc_id(community))?
            .map(|doc| CommunityDoc::from_automerge(community, doc, self.actor.clone())))
    }

    /// The current heads of a document (empty when absent).
    pub fn heads(&mut self, doc_id: &str) -> Result<Vec<ChangeHash>, StoreError> {
        Ok(self.docs.peek(doc_id, |d| d.get_heads())?.unwrap_or_default())
    }

    /// The next sync message for a peer, if there is anything to say, and the
    /// document's stored heads (what an Ack confirms), read together. `pending` are
    /// change chunks received in this session that still wait for their parents; they
    /// are loaded so the message asks for those parents (`need`).
    pub fn generate(
        &mut self,
        doc_id: &str,
        state: &mut State,
        pending: &[Vec<u8>],
    ) -> Result<(Option<Message>, Vec<ChangeHash>), StoreError> {
        // The usual case: generated from the cached document, not a copy of it.
        let generated = self.docs.peek(doc_id, |doc| generate_on(doc_id, doc, state, pending))?;
        Ok(generated
            .unwrap_or_else(|| generate_on(doc_id, &automerge::Automerge::new(), state, pending)))
    }

    /// Applies a sync message from `writer` after checking it; stores it durably.
    /// On refusal, neither the document nor `state` changes.
    ///
    /// `pending` carries, across the messages of one session, the change chunks that
    /// arrived before their parents (Automerge queues them; the sync protocol then asks
    /// for the parents). Without it a queued change would be dropped with the copy of
    /// the document, the parents never asked for, and the session would never settle.
    ///
    /// This is [`HubStore::prepare`], [`Merge::run`] and [`HubStore::commit`] on one
    /// thread; sessions run the middle step off the store thread.
    #[allow(clippy::too_many_arguments)]
    pub fn receive(
        &mut self,
        writer: &Writer,
        doc_id: &str,
        state: &mut State,
        pending: &mut Vec<Vec<u8>>,
        message: Message,
        bounds: crate::guard::Bounds,
        now_ms: i64,
    ) -> Result<Received, Refusal> {
        let at_once = self.receive_at_once(
            writer,
            doc_id,
            (state, pending),
            message,
            (bounds, usize::MAX),
            now_ms,
            None,
            |_, _, _| Ok(()),
        )?;
        match at_once {
            AtOnce::Stored(received, ()) => Ok(received),
            AtOnce::Costly(_) => unreachable!("no message has more than usize::MAX operations"),
        }
    }

    /// Receives a sync message in one SQLite transaction: the stored document taken,
    /// the message screened, merged and checked, its changes stored, and then
    /// `answer` run on the stored documents as they now are (with `state` and
    /// `pending` as they will be), before the transaction commits. One transaction,
    /// not one per step: each cost about as much as a small message's merge.
    ///
    /// A message of more than `max_ops` operations (after screening) is handed back
    /// ([`AtOnce::Costly`]) for [`Merge::apply`] off this thread; nothing was written.
    /// On [`AtOnce::Stored`], everything is durable and `state` and `pending` are the
    /// session's next; on an error neither they nor the store changed. The answer
    /// speaks for what is stored: it reaches the peer only once the commit returned.
    #[allow(clippy::too_many_arguments)]
    pub fn receive_at_once<A>(
        &mut self,
        writer: &Writer,
        doc_id: &str,
        (state, pending): (&mut State, &mut Vec<Vec<u8>>),
        message: Message,
        (bounds, max_ops): (crate::guard::Bounds, usize),
        now_ms: i64,
        traffic: Option<Traffic>,
        answer: impl FnOnce(&State, &[Vec<u8>], &mut Generator<'_, '_>) -> Result<A, StoreError>,
    ) -> Result<AtOnce<A>, Refusal> {
        let (writer, policy) = self.rules(writer, doc_id)?;
        let max_document_bytes = self.max_document_bytes;
        let (state_in, pending_in) = (&*state, &*pending);
        let outcome = self.docs.write(|txn| -> Result<_, Refusal> {
            let (seq, current) = match txn.take(doc_id)? {
                Some((seq, doc)) => (Some(seq), doc),
                None => (None, automerge::Automerge::default()),
            };
            let merge = Merge { doc_id: doc_id.to_string(), writer, policy, seq, current };
            let screened = merge.screen(message, bounds)?;
            if screened.ops() > max_ops {
                // Nothing written: the commit of this transaction writes nothing.
                return Ok(Err(Box::new((merge, screened))));
            }
            let merged = merge.apply(state_in, pending_in, screened)?;
            let mut written = write_merged(txn, merged, max_document_bytes, now_ms, traffic)?
                .ok_or_else(|| Refusal::Malformed {
                    doc_id: doc_id.to_string(),
                    detail: "the document changed while the message was merged".into(),
                })?;
            let (next_state, next_pending) = written.session_after(pending_in);
            let mut generator = Generator { txn };
            let answered = answer(&next_state, &next_pending, &mut generator)?;
            Ok(Ok((written, next_state, next_pending, answered)))
        })??;
        match outcome {
            Ok((written, next_state, next_pending, answered)) => {
                (*state, *pending) = (next_state, next_pending);
                Ok(AtOnce::Stored(self.settle(written, traffic), answered))
            }
            Err(costly) => Ok(AtOnce::Costly(costly)),
        }
    }

    /// Who writes, as this hub authorizes them, and the rules of the document (a
    /// community's policy; `None` for the district's document).
    fn rules(
        &mut self,
        writer: &Writer,
        doc_id: &str,
    ) -> Result<(Writer, Option<Arc<Policy>>), Refusal> {
        let writer = self
            .authoritative(writer)
            .map_err(|detail| Refusal::Denied { doc_id: doc_id.to_string(), detail })?;
        let policy = match community_of(doc_id) {
            Some(community) => Some(self.policy(community)?.clone()),
            None => None,
        };
        Ok((writer, policy))
    }

    /// Step one of receiving (on the store thread, cheap): the stored document and
    /// the rules the message will be checked against.
    pub fn prepare(&mut self, writer: &Writer, doc_id: &str) -> Result<Merge, Refusal> {
        let (writer, policy) = self.rules(writer, doc_id)?;
        // Taken from the cache, not copied: `commit` gives it back, merged or not.
        let (seq, current) = match self.docs.take(doc_id)? {
            Some((seq, doc)) => (Some(seq), doc),
            None => (None, automerge::Automerge::default()),
        };
        Ok(Merge { doc_id: doc_id.to_string(), writer, policy, seq, current })
    }

    /// Step three (on the store thread): stores what [`Merge::run`] accepted, if the
    /// document has not moved since [`HubStore::prepare`] read it. `None` means it has
    /// (another session wrote it meanwhile): nothing was stored, run the merge again.
    /// On `Some`, `state` and `pending` are updated for the session. A commit that
    /// stores changes writes `traffic` (the session's counters, when due) in the same
    /// transaction ([`Received::traffic_written`]): a commit of their own cost as much
    /// as the message's.
    pub fn commit(
        &mut self,
        merged: Merged,
        state: &mut State,
        pending: &mut Vec<Vec<u8>>,
        now_ms: i64,
        traffic: Option<Traffic>,
    ) -> Result<Option<Received>, Refusal> {
        let max_document_bytes = self.max_document_bytes;
        let Some(mut written) = self
            .docs
            .write(|txn| write_merged(txn, merged, max_document_bytes, now_ms, traffic))??
        else {
            return Ok(None);
        };
        (*state, *pending) = written.session_after(pending);
        Ok(Some(self.settle(written, traffic)))
    }

    /// After a merge's transaction committed: the community's scores learn what it
    /// wrote, and what it stored is counted.
    fn settle(&mut self, written: Written, traffic: Option<Traffic>) -> Received {
        let Written { doc_id, before, heads, new, touched, ops, .. } = written;
        if let (Some(community), Some(touched)) = (community_of(&doc_id), touched)
            && !new.is_empty()
        {
            self.scores.note_write(community, &before, &heads, touched);
        }
        let traffic_written = traffic.is_some() && !new.is_empty();
        Received { changes: new.len(), heads, ops, traffic_written }
    }

    /// Records a district review of a task, checked by the same policy as sync and
    /// attributed to the reviewer in the audit.
    pub fn review(
        &mut self,
        community: &str,
        task: &str,
        review: &Review,
        stamp: &Stamp,
        reviewer: &Writer,
    ) -> Result<(), ReviewError> {
        if self.registry.community(community).is_none() {
            return Err(ReviewError::UnknownCommunity(community.to_string()));
        }
        let reviewer = self.authoritative(reviewer).map_err(ReviewError::Denied)?;
        let doc_id = community_doc_id(community);
        let actor = self.actor.clone();
        let policy = self.policy(community)?.clone();
        let peer = peer_name(&reviewer);
        let written = self.docs.write(|txn| -> Result<_, ReviewError> {
            let current = txn
                .load(&doc_id)?
                .unwrap_or_else(|| CommunityDoc::new(community, actor.clone()).automerge().clone());
            let before = current.get_heads();
            let mut doc = CommunityDoc::from_automerge(community, current, actor.clone());
            doc.set_review(task, review, stamp)?;
            let new = doc.automerge().get_changes(&before);
            let touched = policy
                .check_touched(&reviewer, doc.automerge(), &new)
                .map_err(|refused| ReviewError::Denied(refused.to_string()))?;
            txn.save(&doc_id, &before, doc.automerge(), stamp.at_ms)?;
            record_deliveries(txn, &doc_id, &new, &peer, stamp.at_ms)?;
            Ok((before, doc.heads(), touched))
        })??;
        let (before, after, touched) = written;
        self.scores.note_write(community, &before, &after, touched);
        Ok(())
    }

    /// Who delivered each change of a document, by change hash (changes stored
    /// before the audit existed have none).
    pub fn deliveries(&self, doc_id: &str) -> Result<HashMap<String, (String, i64)>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare("SELECT hash, peer, delivered_ms FROM deliveries WHERE doc_id = ?1")
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([doc_id], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))
            .map_err(|e| self.docs.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))
    }

    /// The persisted sync state with a peer for a document.
    pub fn sync_state(&self, peer: &str, doc_id: &str) -> Result<State, StoreError> {
        Ok(self
            .docs
            .sync_state(peer, doc_id)?
            .and_then(|bytes| State::decode(&bytes).ok())
            .unwrap_or_default())
    }

    /// Persists a sync state at the end of a session.
    pub fn set_sync_state(
        &self,
        peer: &str,
        doc_id: &str,
        state: &State,
    ) -> Result<(), StoreError> {
        self.docs.set_sync_state(peer, doc_id, &state.encode())
    }

    /// Records the start of a session.
    pub fn peer_connected(
        &self,
        writer: &Writer,
        hello: &PeerHello,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (community, name) = match writer {
            Writer::Device { community, device } => (Some(community.as_str()), device.as_str()),
            Writer::Reviewer { name, .. } => (None, name.as_str()),
        };
        self.docs
            .conn()
            .cached_execute(
                "INSERT INTO peers (peer, community, name, first_seen_ms, last_seen_ms, sessions,
                                    node_version, unacked_changes, oldest_unacked_age_seconds, clock_skew_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5, ?6, ?7, ?8)
                 ON CONFLICT (peer) DO UPDATE SET
                     last_seen_ms = excluded.last_seen_ms,
                     sessions = sessions + 1,
                     node_version = excluded.node_version,
                     unacked_changes = excluded.unacked_changes,
                     oldest_unacked_age_seconds = excluded.oldest_unacked_age_seconds,
                     clock_skew_ms = excluded.clock_skew_ms",
                params![
                    peer_name(writer),
                    community,
                    name,
                    now_ms,
                    hello.version,
                    i64::try_from(hello.unacked_changes).unwrap_or(i64::MAX),
                    i64::try_from(hello.oldest_unacked_age_seconds).unwrap_or(i64::MAX),
                    hello.clock_ms.saturating_sub(now_ms),
                ],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(())
    }

    /// Adds traffic of a session to a peer's counters and marks it seen.
    pub fn peer_traffic(
        &self,
        writer: &Writer,
        traffic: Traffic,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_traffic(self.docs.conn(), &peer_name(writer), traffic, now_ms)
            .map_err(|e| self.docs.err(e))
    }

    /// Records why a peer's session failed.
    pub fn peer_error(
        &self,
        peer: &str,
        community: Option<&str>,
        name: &str,
        class: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.docs
            .conn()
            .cached_execute(
                "INSERT INTO peers (peer, community, name, first_seen_ms, last_seen_ms,
                                    last_error_ms, last_error_class, last_error_message)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6)
                 ON CONFLICT (peer) DO UPDATE SET
                     last_seen_ms = excluded.last_seen_ms,
                     last_error_ms = excluded.last_error_ms,
                     last_error_class = excluded.last_error_class,
                     last_error_message = excluded.last_error_message",
                params![peer, community, name, now_ms, class, message],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(())
    }

    /// Every peer's status row, problems first is the caller's business: by peer name.
    pub fn peers(&self) -> Result<Vec<PeerStatus>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare(
                "SELECT peer, community, name, first_seen_ms, last_seen_ms, last_success_ms,
                        last_error_ms, last_error_class, last_error_message, sessions, bytes_in,
                        bytes_out, changes_received, node_version, unacked_changes,
                        oldest_unacked_age_seconds, clock_skew_ms
                 FROM peers ORDER BY peer",
            )
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PeerStatus {
                    peer: r.get(0)?,
                    community: r.get(1)?,
                    name: r.get(2)?,
                    first_seen_ms: r.get(3)?,
                    last_seen_ms: r.get(4)?,
                    last_success_ms: r.get(5)?,
                    last_error_ms: r.get(6)?,
                    last_error_class: r.get(7)?,
                    last_error_message: r.get(8)?,
                    sessions: r.get(9)?,
                    bytes_in: r.get(10)?,
                    bytes_out: r.get(11)?,
                    changes_received: r.get(12)?,
                    node_version: r.get(13)?,
                    unacked_changes: r.get(14)?,
                    oldest_unacked_age_seconds: r.get(15)?,
                    clock_skew_ms: r.get(16)?,
                })
            })
            .map_err(|e| self.docs.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.docs.err(e))
    }
}

/// What a session exchanged with its peer since it last wrote it down, for the
/// peer's row (see [`HubStore::peer_traffic`]; a message's commit may carry it too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes of sync messages received.
    pub bytes_in: u64,
    /// Bytes of sync messages sent.
    pub bytes_out: u64,
    /// Changes received and stored.
    pub changes: u64,
    /// When the peer last agreed with the hub on every document (a successful
    /// sync), if it did since.
    pub success_ms: Option<i64>,
}

/// Adds `traffic` to `peer`'s counters and marks it seen at `now_ms`, on `conn` or
/// inside the transaction it is.
fn write_traffic(
    conn: &rusqlite::Connection,
    peer: &str,
    traffic: Traffic,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    conn.cached_execute(
        "UPDATE peers SET last_seen_ms = ?2, bytes_in = bytes_in + ?3,
             bytes_out = bytes_out + ?4, changes_received = changes_received + ?5,
             last_success_ms = coalesce(?6, last_success_ms)
         WHERE peer = ?1",
        params![
            peer,
            now_ms,
            count(traffic.bytes_in),
            count(traffic.bytes_out),
            count(traffic.changes),
            traffic.success_ms,
        ],
    )?;
    Ok(())
}

fn record_deliveries(
    txn: &mut fivestar_store::Txn<'_>,
    doc_id: &str,
    changes: &[automerge::Change],
    peer: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    for change in changes {
        txn.sql()
            .cached_execute(
                "INSERT OR IGNORE INTO deliveries (doc_id, hash, peer, delivered_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![doc_id, change.hash().to_string(), peer, now_ms],
            )
            .map_err(|e| txn.err(e))?;
    }
    Ok(())
}

/// Why the hub's store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HubOpenError {
    /// The standard is invalid.
    #[error(transparent)]
    Standard(#[from] fivestar_core::StandardError),
    /// The registry is invalid.
    #[error(transparent)]
    Registry(#[from] fivestar_core::RegistryError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The district document could not be written.
    #[error("the district document could not be updated: {0}")]
    District(String),
}

#[cfg(test)]
mod tests {
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ROOT, ReadDoc};

    use super::{HUB_MIGRATIONS, SCHEMA, new_in_causal_order};

    fn put(doc: &mut Automerge, key: &str, value: i64) -> automerge::Change {
        let before = doc.get_heads();
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).expect("put");
        tx.commit();
        doc.get_changes(&before).pop().expect("one change")
    }

    #[test]
    fn received_changes_stand_for_the_merge_only_when_new_and_in_causal_order() {
        let mut hub = Automerge::new();
        put(&mut hub, "a", 1);
        let mut node = hub.fork();
        let first = put(&mut node, "b", 1);
        let second = put(&mut node, "b", 2);
        let hashes = |changes: Option<Vec<automerge::Change>>| {
            changes.map(|cs| cs.iter().map(|c| c.hash()).collect::<Vec<_>>())
        };
        // New, parents first: exactly what merging them adds.
        let both = vec![first.clone(), second.clone()];
        assert_eq!(
            hashes(new_in_causal_order(&hub, both)),
            Some(vec![first.hash(), second.hash()])
        );
        // A child before its parent, one the hub has, one twice, none at all: Automerge decides.
        assert!(new_in_causal_order(&hub, vec![second.clone(), first.clone()]).is_none());
        assert!(new_in_causal_order(&hub, vec![]).is_none());
        assert!(new_in_causal_order(&hub, vec![first.clone(), first.clone()]).is_none());
        let mut has_first = hub.clone();
        has_first.apply_changes([first.clone()]).expect("apply");
        assert!(new_in_causal_order(&has_first, vec![first.clone(), second.clone()]).is_none());
        assert_eq!(
            hashes(new_in_causal_order(&has_first, vec![second.clone()])),
            Some(vec![second.hash()])
        );
        // A document holding a change still waiting for its parent.
        let mut waiting = hub.clone();
        waiting.apply_changes([second.clone()]).expect("queued");
        assert!(!waiting.get_missing_deps(&[]).is_empty());
        assert!(new_in_causal_order(&waiting, vec![first]).is_none());
    }

    #[test]
    fn deliveries_recorded_before_hub_version_7_are_kept_in_their_new_table() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("hub.db");
        let version_6 = fivestar_store::Schema { migrations: &HUB_MIGRATIONS[..6], ..SCHEMA };
        let store = fivestar_store::DocStore::create(&path, &version_6).expect("version 6");
        store
            .conn()
            .execute_batch(
                "INSERT INTO deliveries VALUES ('community/a', 'aa', 'device a/d1', 1);
                 INSERT INTO deliveries VALUES ('community/a', 'bb', 'reviewer office', 2);",
            )
            .expect("deliveries");
        drop(store);
        let store = fivestar_store::DocStore::open(&path, &SCHEMA).expect("migrated");
        let table: String = store
            .conn()
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'deliveries'", [], |r| r.get(0))
            .expect("the table");
        assert!(table.contains("WITHOUT ROWID"), "{table}");
        let rows: Vec<(String, String, String, i64)> = store
            .conn()
            .prepare("SELECT doc_id, hash, peer, delivered_ms FROM deliveries ORDER BY hash")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        let row = |hash: &str, peer: &str, at| ("community/a".into(), hash.into(), peer.into(), at);
        assert_eq!(rows, vec![row("aa", "device a/d1", 1), row("bb", "reviewer office", 2)]);
        assert_eq!(store.integrity_check().expect("check"), vec!["ok".to_string()]);
    }

    /// A node's replica and the hub's store, for messages taken at once.
    struct AtOnceBench {
        store: super::HubStore,
        node: fivestar_core::CommunityDoc,
        kind: fivestar_core::Kind,
        writer: fivestar_core::Writer,
        doc_id: String,
        node_state: automerge::sync::State,
        hub_state: automerge::sync::State,
        pending: Vec<Vec<u8>>,
        _dir: tempfile::TempDir,
    }

    type Taken = super::AtOnce<(Option<automerge::sync::Message>, Vec<automerge::ChangeHash>)>;

    impl AtOnceBench {
        fn new() -> AtOnceBench {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let registry = fivestar_core::Registry::sample();
            let community = registry.communities[0].clone();
            let mut store = super::HubStore::open(
                &dir.path().join("hub.db"),
                fivestar_core::standard::SAMPLE_STANDARD_TOML,
                fivestar_core::registry::SAMPLE_REGISTRY_TOML,
                0,
            )
            .expect("hub store");
            store.ensure_community(&community.id, 0).expect("community document");
            let kind = fivestar_core::Standard::sample().kind(community.kind).clone();
            let mut node = fivestar_core::CommunityDoc::new(&community.id, ActorId::random());
            node.apply_template(&kind).expect("template");
            AtOnceBench {
                store,
                node,
                kind: community.kind,
                writer: fivestar_core::Writer::Device {
                    community: community.id.clone(),
                    device: "d1".into(),
                },
                doc_id: super::community_doc_id(&community.id),
                node_state: automerge::sync::State::new(),
                hub_state: automerge::sync::State::new(),
                pending: Vec::new(),
                _dir: dir,
            }
        }

        /// The node's next message, taken at once with `max_ops`; the answer's
        /// heads as generated inside the transaction.
        fn send(&mut self, max_ops: usize) -> Option<Result<Taken, super::Refusal>> {
            let message = self.node.automerge_mut().generate_sync_message(&mut self.node_state)?;
            let doc_id = self.doc_id.clone();
            let hub_state = &mut self.hub_state;
            Some(self.store.receive_at_once(
                &self.writer,
                &self.doc_id,
                (hub_state, &mut self.pending),
                message,
                (crate::config::HubConfig::default().message_bounds(), max_ops),
                1,
                None,
                |state, pending, generator| {
                    generator.generate(&doc_id, &mut state.clone(), pending)
                },
            ))
        }

        /// Syncs at once until the node has nothing to say.
        fn settle(&mut self) {
            for _ in 0..20 {
                let Some(taken) = self.send(usize::MAX) else { return };
                let Ok(super::AtOnce::Stored(_, (answer, heads))) = taken else {
                    panic!("an honest message is stored at once")
                };
                // Answered from the document as stored: its heads, and the message
                // about it.
                assert_eq!(heads, self.store.heads(&self.doc_id).expect("heads"));
                let answer = answer.or_else(|| {
                    self.store.generate(&self.doc_id, &mut self.hub_state, &[]).expect("generate").0
                });
                if let Some(answer) = answer {
                    self.node
                        .automerge_mut()
                        .receive_sync_message(&mut self.node_state, answer)
                        .expect("the node takes the answer");
                }
            }
            panic!("no agreement in 20 messages");
        }

        fn edit(&mut self) {
            let id = self.node.task_ids()[0].clone();
            // A progress the task does not have yet.
            let progress = Some(self.node.automerge().get_changes(&[]).len() as u32 % 97 + 1);
            let change = fivestar_core::TaskEdit { progress, ..Default::default() };
            let stamp = fivestar_core::Stamp { by: "device d1".into(), at_ms: 1 };
            let kind = fivestar_core::Standard::sample().kind(self.kind).clone();
            self.node.edit_task(&kind, &id, &change, &stamp).expect("edit");
        }
    }

    #[test]
    fn a_message_taken_at_once_is_answered_from_what_it_stored_or_leaves_all_alone() {
        let mut bench = AtOnceBench::new();
        bench.settle();
        assert_eq!(
            bench.store.heads(&bench.doc_id).expect("heads"),
            bench.node.automerge().get_heads()
        );
        let stored = bench.store.heads(&bench.doc_id).expect("heads");
        let state = bench.hub_state.clone().encode();

        // Refused inside the transaction (over the document's bound, found after
        // the merge): nothing stored, the session's state as it was.
        bench.edit();
        bench.store.set_max_document_bytes(1);
        let refused = bench.send(usize::MAX).expect("a message");
        assert!(
            matches!(
                refused,
                Err(super::Refusal::Screened(crate::guard::Screened::OverBound { .. }))
            ),
            "{refused:?}"
        );
        assert_eq!(bench.store.heads(&bench.doc_id).expect("heads"), stored);
        assert_eq!(bench.hub_state.clone().encode(), state);

        // Over the operations taken on the store thread: handed back, nothing stored;
        // merged elsewhere and committed, it is.
        bench.store.set_max_document_bytes(usize::MAX);
        bench.node_state = automerge::sync::State::new();
        let mut costly = None;
        for _ in 0..20 {
            match bench.send(0).expect("the node has the edit to send") {
                Ok(super::AtOnce::Costly(handed)) => {
                    costly = Some(handed);
                    break;
                }
                // What it says before the change (its heads): no operations.
                Ok(super::AtOnce::Stored(_, (Some(answer), _))) => bench
                    .node
                    .automerge_mut()
                    .receive_sync_message(&mut bench.node_state, answer)
                    .expect("the node takes the answer"),
                Ok(super::AtOnce::Stored(_, (None, _))) => {}
                Err(refused) => panic!("{refused:?}"),
            }
        }
        let costly = costly.expect("the edit was handed back");
        assert_eq!(bench.store.heads(&bench.doc_id).expect("heads"), stored);
        let (merge, screened) = *costly;
        let merged = merge.apply(&bench.hub_state, &bench.pending, screened).expect("merged");
        bench
            .store
            .commit(merged, &mut bench.hub_state, &mut bench.pending, 1, None)
            .expect("committed")
            .expect("nobody else wrote");
        assert_eq!(
            bench.store.heads(&bench.doc_id).expect("heads"),
            bench.node.automerge().get_heads()
        );
    }
}
