//! The node's store: its community's document, the district document it reads,
//! and its sync bookkeeping, in one SQLite file.
//!
//! The document storage (snapshot + chunks, durability, write locking) is
//! `fivestar-store`'s, shared with the hub; this module adds the node's identity and
//! tables. When [`Store::write`] returns `Ok`, the change is committed and fsynced
//! (WAL, `synchronous = FULL`): it survives a crash of the program and a power cut.

use std::collections::HashMap;
use std::path::Path;

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use fivestar_core::{CommunityDoc, Policy, Refusal, Writer};
use fivestar_store::rusqlite::{OptionalExtension, params};
use fivestar_store::{DocStore, Schema, Txn};

pub use fivestar_store::StoreError as DocStoreError;

/// The node's own tables, after the store's.
const NODE_MIGRATIONS: &[&str] = &[
    // 1: what the hub acknowledged, and the log of sync attempts.
    "CREATE TABLE acked_heads (
         doc_id TEXT PRIMARY KEY,
         heads TEXT NOT NULL,
         acked_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE sync_attempts (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         started_ms INTEGER NOT NULL,
         finished_ms INTEGER,
         ok INTEGER NOT NULL DEFAULT 0,
         error TEXT,
         summary TEXT
     ) STRICT;",
    // 2: changes that came from the hub, and when (history shows them apart from
    // this device's own).
    "CREATE TABLE received (
         doc_id TEXT NOT NULL,
         hash TEXT NOT NULL,
         received_ms INTEGER NOT NULL,
         PRIMARY KEY (doc_id, hash)
     ) STRICT;",
    // 3: the community's staff who work on this node (the clerk recorded with each
    // change), with an optional PIN, and the reviews each has seen.
    "CREATE TABLE staff (
         name TEXT PRIMARY KEY,
         pin_hash TEXT,
         added_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE reviews_seen (
         clerk TEXT NOT NULL,
         task TEXT NOT NULL,
         review_at_ms INTEGER NOT NULL,
         PRIMARY KEY (clerk, task, review_at_ms)
     ) STRICT;",
    // 4: evidence files, content-addressed, and when the hub confirmed each whole.
    "CREATE TABLE files (
         sha256 TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         mime TEXT NOT NULL,
         size INTEGER NOT NULL,
         data BLOB NOT NULL,
         added_ms INTEGER NOT NULL,
         at_hub_ms INTEGER
     ) STRICT;",
    // 5: a photo's preview for lists, and how far its upload went (bytes the hub
    // holds, as of when).
    "ALTER TABLE files ADD COLUMN thumb BLOB;
     ALTER TABLE files ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE files ADD COLUMN sent_ms INTEGER;",
];

/// The node's database schema.
pub const SCHEMA: Schema =
    Schema { kind: "fivestar node", component: "node", migrations: NODE_MIGRATIONS };

pub use fivestar_core::document::{DISTRICT_DOC_ID as DISTRICT_DOC, community_doc_id};

/// Where a stored file stands on its way to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    /// Its size.
    pub size: u64,
    /// Bytes the latest upload pass had sent (the hub holds them, or they were in
    /// flight).
    pub sent: u64,
    /// When `sent` was last recorded.
    pub sent_ms: Option<i64>,
    /// When the hub confirmed it whole.
    pub at_hub_ms: Option<i64>,
    /// Whether it has a preview.
    pub has_thumb: bool,
}

impl FileState {
    /// Whether an upload is under way: bytes recorded within the last 30 seconds.
    pub fn uploading(&self, now_ms: i64) -> bool {
        self.at_hub_ms.is_none() && self.sent_ms.is_some_and(|t| now_ms - t < 30_000)
    }

    /// How far the upload went, in whole percent (100 once the hub holds it).
    pub fn percent(&self) -> u64 {
        if self.at_hub_ms.is_some() {
            100
        } else {
            (self.sent * 100).checked_div(self.size).unwrap_or(0).min(99)
        }
    }
}

/// The peer name a node keeps its sync states under.
pub const HUB_PEER: &str = "hub";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or SQLite failed.
    #[error(transparent)]
    Store(#[from] DocStoreError),
    /// The edit breaks a write rule the district enforces (a bug in this program if
    /// it happens: the edits themselves check first). Nothing was saved.
    #[error("the district would refuse this edit, so it was not saved: {0}")]
    Refused(#[from] Refusal),
    /// The database belongs to another community.
    #[error("{path} holds community {found:?}, but the configuration says {expected:?}")]
    WrongCommunity {
        /// The database file.
        path: std::path::PathBuf,
        /// What the database holds.
        found: String,
        /// What the configuration says.
        expected: String,
    },
}

/// What a node knows about itself, kept in its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The community this node keeps.
    pub community: String,
    /// The device's name (e.g. `d1`), as on its certificate.
    pub device: String,
    /// The device's Automerge actor id.
    pub actor: ActorId,
}

impl Identity {
    /// The id the community's document is stored and synced under.
    pub fn doc_id(&self) -> String {
        community_doc_id(&self.community)
    }
}

/// A sync attempt, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncAttempt {
    /// When it started, Unix milliseconds.
    pub started_ms: i64,
    /// When it finished; `None` if it never did (the process stopped).
    pub finished_ms: Option<i64>,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error, if it failed.
    pub error: Option<String>,
    /// What moved, if it succeeded.
    pub summary: Option<String>,
}

/// Unacknowledged local changes, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// How many of this device's changes the hub has not acknowledged.
    pub changes: usize,
    /// Commit time of the oldest of them, Unix seconds.
    pub oldest_seconds: Option<i64>,
}

/// The one owner of a node's database connection.
#[derive(Debug)]
pub struct Store {
    docs: DocStore,
    identity: Identity,
    /// The district's write rules, checked before every edit is saved (the same check
    /// the hub makes), once the caller has set them.
    policy: Option<Policy>,
    signals: Signals,
}

/// What the store tells the sync loop in the same process without it having to
/// look: an edit was saved; the hub acknowledged heads of the community's document.
#[derive(Debug)]
struct Signals {
    saved: std::sync::Arc<tokio::sync::Notify>,
    acked: tokio::sync::watch::Sender<Vec<ChangeHash>>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            saved: std::sync::Arc::default(),
            acked: tokio::sync::watch::Sender::new(Vec::new()),
        }
    }
}

impl Store {
    /// Creates a new node database with a fresh document for `community`.
    pub fn create(
        path: &Path,
        community: &str,
        device: &str,
        now_ms: i64,
    ) -> Result<Store, StoreError> {
        let mut docs = DocStore::create(path, &SCHEMA)?;
        let identity = Identity {
            community: community.to_string(),
            device: device.to_string(),
            actor: ActorId::random(),
        };
        docs.set_meta("community", community)?;
        docs.set_meta("device", device)?;
        docs.set_meta("actor", &identity.actor.to_hex_string())?;
        let doc = CommunityDoc::new(community, identity.actor.clone());
        docs.write(|t| t.save(&identity.doc_id(), &[], doc.automerge(), now_ms))??;
        Ok(Store { docs, identity, policy: None, signals: Signals::default() })
    }

    /// Opens an existing node database (it is never created here).
    pub fn open(path: &Path, expected_community: &str) -> Result<Store, StoreError> {
        let docs = DocStore::open(path, &SCHEMA)?;
        let foreign = || DocStoreError::Foreign { path: path.to_path_buf(), kind: SCHEMA.kind };
        let community = docs.meta("community")?.ok_or_else(foreign)?;
        let device = docs.meta("device")?.ok_or_else(foreign)?;
        let actor = docs
            .meta("actor")?
            .and_then(|hex| hex::decode(hex).ok())
            .map(ActorId::from)
            .ok_or_else(foreign)?;
        if community != expected_community {
            return Err(StoreError::WrongCommunity {
                path: path.to_path_buf(),
                found: community,
                expected: expected_community.to_string(),
            });
        }
        let identity = Identity { community, device, actor };
        let store = Store { docs, identity, policy: None, signals: Signals::default() };
        let acked = store.acked_heads(&store.identity.doc_id())?;
        store.signals.acked.send_replace(acked);
        Ok(store)
    }

    /// Sets the write rules every later [`Store::write`] is checked against before it
    /// is saved: the hub runs the same check, so what this node saves, the hub accepts.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = Some(policy);
    }

    /// Notified after every edit this store saves (a permit waits if nobody is
    /// waiting): the daemon in the same process starts a round at once instead of
    /// finding the edit at its next look at the database.
    pub fn saved_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.signals.saved.clone()
    }

    /// The heads of the community's document the hub has acknowledged as on its
    /// disk, as they change.
    pub fn watch_acked(&self) -> tokio::sync::watch::Receiver<Vec<ChangeHash>> {
        self.signals.acked.subscribe()
    }

    /// Who this node is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.docs.path()
    }

    /// The underlying document store (for sync).
    pub fn docs(&mut self) -> &mut DocStore {
        &mut self.docs
    }

    /// The community's document as stored now.
    pub fn read(&mut self) -> Result<CommunityDoc, StoreError> {
        let doc_id = self.identity.doc_id();
        let doc = self.docs.read(&doc_id)?.ok_or_else(|| DocStoreError::CorruptDocument {
            path: self.docs.path().to_path_buf(),
            doc_id,
            detail: "it is missing".into(),
        })?;
        Ok(CommunityDoc::from_automerge(&self.identity.community, doc, self.identity.actor.clone()))
    }

    /// The district document, once the hub has sent it.
    pub fn read_district(&mut self) -> Result<Option<Automerge>, StoreError> {
        Ok(self.docs.read(DISTRICT_DOC)?)
    }

    /// Applies `edit` to the community's document and commits the resulting change.
    /// When `edit` fails, nothing is written. When this returns `Ok(Ok(_))`, the change
    /// is durable.
    pub fn write<T, E>(
        &mut self,
        now_ms: i64,
        edit: impl FnOnce(&mut CommunityDoc) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        self.write_inner(now_ms, None, edit)
    }

    /// Applies `edit` like [`Store::write`], storing `file`'s bytes (and a photo's
    /// preview) in the same transaction: the note that names a file and the file are
    /// saved together or not at all.
    pub fn write_with_file<T, E>(
        &mut self,
        now_ms: i64,
        file: &fivestar_core::FileRef,
        bytes: &[u8],
        thumb: Option<&[u8]>,
        edit: impl FnOnce(&mut CommunityDoc) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        self.write_inner(now_ms, Some((file, bytes, thumb)), edit)
    }

    #[allow(clippy::type_complexity)]
    fn write_inner<T, E>(
        &mut self,
        now_ms: i64,
        file: Option<(&fivestar_core::FileRef, &[u8], Option<&[u8]>)>,
        edit: impl FnOnce(&mut CommunityDoc) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        let identity = self.identity.clone();
        let policy = self.policy.as_ref();
        let writer = Writer::Device {
            community: identity.community.clone(),
            device: identity.device.clone(),
        };
        // A failed edit saved nothing, so its (empty) transaction commits nothing.
        let outcome = self.docs.write(|txn| -> Result<Result<T, E>, StoreError> {
            let mut doc = load_community(txn, &identity)?;
            let before = doc.heads();
            match edit(&mut doc) {
                Ok(out) => {
                    if let Some(policy) = policy {
                        let new = doc.automerge().get_changes(&before);
                        policy.check(&writer, doc.automerge(), &new)?;
                    }
                    if let Some((file, bytes, thumb)) = file {
                        txn.sql()
                            .execute(
                                "INSERT OR IGNORE INTO files (sha256, name, mime, size, data, added_ms, thumb)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                params![
                                    file.hash,
                                    file.name,
                                    file.mime,
                                    i64::try_from(file.size).unwrap_or(i64::MAX),
                                    bytes,
                                    now_ms,
                                    thumb
                                ],
                            )
                            .map_err(|e| txn.err(e))?;
                    }
                    txn.save(&identity.doc_id(), &before, doc.automerge(), now_ms)?;
                    Ok(Ok(out))
                }
                Err(err) => Ok(Err(err)),
            }
        })??;
        if outcome.is_ok() {
            // Committed: the sync loop may send it now.
            self.signals.saved.notify_one();
        }
        Ok(outcome)
    }

    /// Files not yet confirmed whole at the hub: hash and size, oldest first.
    pub fn files_waiting(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare("SELECT sha256, size FROM files WHERE at_hub_ms IS NULL ORDER BY added_ms")
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.docs.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, size) = row.map_err(|e| self.docs.err(e))?;
            out.push((hash, u64::try_from(size).unwrap_or(0)));
        }
        Ok(out)
    }

    /// A file's bytes from `offset`, at most `len`.
    pub fn file_slice(
        &self,
        sha256: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.docs
            .conn()
            .query_row(
                "SELECT substr(data, ?2, ?3) FROM files WHERE sha256 = ?1",
                params![
                    sha256,
                    i64::try_from(offset + 1).unwrap_or(i64::MAX),
                    i64::try_from(len).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StoreError::from(self.docs.err(e)))
    }

    /// The whole of a stored file: its name, type and bytes.
    pub fn file(&self, sha256: &str) -> Result<Option<(String, String, Vec<u8>)>, StoreError> {
        self.docs
            .conn()
            .query_row("SELECT name, mime, data FROM files WHERE sha256 = ?1", [sha256], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| StoreError::from(self.docs.err(e)))
    }

    /// A photo's preview (JPEG), if it has one.
    pub fn file_thumb(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .docs
            .conn()
            .query_row("SELECT thumb FROM files WHERE sha256 = ?1", [sha256], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })
            .optional()
            .map_err(|e| self.docs.err(e))?
            .flatten())
    }

    /// Records how far a file's upload went: `bytes` are at the hub (or on their
    /// way there), as of `now_ms`.
    pub fn file_sent(&self, sha256: &str, bytes: u64, now_ms: i64) -> Result<(), StoreError> {
        self.docs
            .conn()
            .execute(
                "UPDATE files SET sent = ?2, sent_ms = ?3 WHERE sha256 = ?1",
                params![sha256, i64::try_from(bytes).unwrap_or(i64::MAX), now_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(())
    }

    /// Where every stored file stands on its way to the hub, by hash.
    pub fn file_states(&self) -> Result<HashMap<String, FileState>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare("SELECT sha256, size, sent, sent_ms, at_hub_ms, thumb IS NOT NULL FROM files")
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    FileState {
                        size: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        sent: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        sent_ms: r.get(3)?,
                        at_hub_ms: r.get(4)?,
                        has_thumb: r.get(5)?,
                    },
                ))
            })
            .map_err(|e| self.docs.err(e))?;
        Ok(rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))?)
    }

    /// Records that the hub holds a file whole.
    pub fn file_at_hub(&self, sha256: &str, now_ms: i64) -> Result<(), StoreError> {
        self.docs
            .conn()
            .execute(
                "UPDATE files SET at_hub_ms = ?2, sent = size, sent_ms = ?2 WHERE sha256 = ?1",
                params![sha256, now_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(())
    }

    /// When each change that came from the hub was received, by change hash.
    pub fn received(&self, doc_id: &str) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare("SELECT hash, received_ms FROM received WHERE doc_id = ?1")
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([doc_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.docs.err(e))?;
        Ok(rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))?)
    }

    /// Folds every chunk into a fresh snapshot now.
    pub fn compact(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let doc_id = self.identity.doc_id();
        Ok(self.docs.compact(&doc_id, now_ms)?)
    }

    /// How many chunks are stored beside the snapshots.
    pub fn chunk_count(&self) -> Result<i64, StoreError> {
        Ok(self.docs.chunk_count()?)
    }

    /// The heads the hub last acknowledged for a document.
    pub fn acked_heads(&self, doc_id: &str) -> Result<Vec<ChangeHash>, StoreError> {
        let text: Option<String> = self
            .docs
            .conn()
            .query_row("SELECT heads FROM acked_heads WHERE doc_id = ?1", [doc_id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.docs.err(e))?;
        Ok(text.map(|t| parse_heads(&t)).unwrap_or_default())
    }

    /// Records the heads the hub says it has durably stored.
    pub fn set_acked_heads(
        &self,
        doc_id: &str,
        heads: &[ChangeHash],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let text = heads.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",");
        self.docs
            .conn()
            .execute(
                "INSERT INTO acked_heads (doc_id, heads, acked_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (doc_id) DO UPDATE SET heads = excluded.heads, acked_ms = excluded.acked_ms",
                params![doc_id, text, now_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        if doc_id == self.identity.doc_id() {
            self.signals.acked.send_replace(heads.to_vec());
        }
        Ok(())
    }

    /// This device's changes that the hub has not acknowledged yet.
    pub fn pending(&mut self) -> Result<Pending, StoreError> {
        let acked = self.acked_heads(&self.identity.doc_id())?;
        let doc = self.read()?;
        let known: Vec<ChangeHash> =
            acked.into_iter().filter(|h| doc.automerge().get_change_by_hash(h).is_some()).collect();
        let mine: Vec<i64> = doc
            .automerge()
            .get_changes(&known)
            .iter()
            .filter(|c| *c.actor_id() == self.identity.actor)
            .map(|c| c.timestamp())
            .collect();
        Ok(Pending { changes: mine.len(), oldest_seconds: mine.iter().copied().min() })
    }

    /// Records the start of a sync attempt; returns its id.
    pub fn sync_started(&self, now_ms: i64) -> Result<i64, StoreError> {
        let conn = self.docs.conn();
        conn.execute("INSERT INTO sync_attempts (started_ms) VALUES (?1)", [now_ms])
            .map_err(|e| self.docs.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records how a sync attempt ended.
    pub fn sync_finished(
        &self,
        id: i64,
        now_ms: i64,
        outcome: Result<&str, &str>,
    ) -> Result<(), StoreError> {
        let (ok, summary, error) = match outcome {
            Ok(summary) => (1, Some(summary), None),
            Err(error) => (0, None, Some(error)),
        };
        self.docs
            .conn()
            .execute(
                "UPDATE sync_attempts SET finished_ms = ?2, ok = ?3, summary = ?4, error = ?5 WHERE id = ?1",
                params![id, now_ms, ok, summary, error],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(())
    }

    /// The newest sync attempt, if any.
    pub fn last_sync_attempt(&self) -> Result<Option<SyncAttempt>, StoreError> {
        self.docs
            .conn()
            .query_row(
                "SELECT started_ms, finished_ms, ok, error, summary FROM sync_attempts
                 ORDER BY id DESC LIMIT 1",
                [],
                |row| {
                    Ok(SyncAttempt {
                        started_ms: row.get(0)?,
                        finished_ms: row.get(1)?,
                        ok: row.get::<_, i64>(2)? != 0,
                        error: row.get(3)?,
                        summary: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| StoreError::from(self.docs.err(e)))
    }

    /// The newest failed sync attempt's time and error, if any.
    pub fn last_sync_error(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.docs
            .conn()
            .query_row(
                "SELECT started_ms, error FROM sync_attempts WHERE ok = 0 AND error IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| StoreError::from(self.docs.err(e)))
    }

    /// The newest successful sync's time, if any.
    pub fn last_successful_sync(&self) -> Result<Option<i64>, StoreError> {
        self.docs
            .conn()
            .query_row("SELECT max(finished_ms) FROM sync_attempts WHERE ok = 1", [], |row| {
                row.get(0)
            })
            .map_err(|e| StoreError::from(self.docs.err(e)))
    }

    /// The staff who may be picked as the clerk at work, by name, and whether each
    /// has a PIN.
    pub fn staff(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare("SELECT name, pin_hash IS NOT NULL FROM staff ORDER BY added_ms, name")
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
            .map_err(|e| self.docs.err(e))?;
        Ok(rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))?)
    }

    /// Adds a member of staff; `false` when the name is taken already.
    pub fn add_staff(
        &self,
        name: &str,
        pin_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let added = self
            .docs
            .conn()
            .execute(
                "INSERT OR IGNORE INTO staff (name, pin_hash, added_ms) VALUES (?1, ?2, ?3)",
                params![name, pin_hash, now_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(added == 1)
    }

    /// Removes a member of staff from the list (what they recorded stays theirs).
    pub fn remove_staff(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self
            .docs
            .conn()
            .execute("DELETE FROM staff WHERE name = ?1", [name])
            .map_err(|e| self.docs.err(e))?;
        Ok(removed == 1)
    }

    /// A member of staff's PIN hash: `None` for no such person, `Some(None)` for no PIN.
    pub fn staff_pin(&self, name: &str) -> Result<Option<Option<String>>, StoreError> {
        self.docs
            .conn()
            .query_row("SELECT pin_hash FROM staff WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| StoreError::from(self.docs.err(e)))
    }

    /// The reviews (task, review time) a clerk has looked at.
    pub fn reviews_seen(
        &self,
        clerk: &str,
    ) -> Result<std::collections::HashSet<(String, i64)>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare("SELECT task, review_at_ms FROM reviews_seen WHERE clerk = ?1")
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([clerk], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.docs.err(e))?;
        Ok(rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))?)
    }

    /// Records that a clerk has looked at a task's review.
    pub fn mark_review_seen(&self, clerk: &str, task: &str, at_ms: i64) -> Result<(), StoreError> {
        self.docs
            .conn()
            .execute(
                "INSERT OR IGNORE INTO reviews_seen (clerk, task, review_at_ms) VALUES (?1, ?2, ?3)",
                params![clerk, task, at_ms],
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(())
    }

    /// Runs SQLite's own consistency check; `["ok"]` when sound.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.docs.integrity_check()?)
    }
}

fn load_community(txn: &mut Txn<'_>, identity: &Identity) -> Result<CommunityDoc, DocStoreError> {
    let doc_id = identity.doc_id();
    let doc = txn.load(&doc_id)?.ok_or_else(|| DocStoreError::CorruptDocument {
        path: std::path::PathBuf::new(),
        doc_id,
        detail: "it is missing".into(),
    })?;
    Ok(CommunityDoc::from_automerge(&identity.community, doc, identity.actor.clone()))
}

/// Records, inside a write transaction, that `changes` came from the hub.
pub fn record_received(
    txn: &mut Txn<'_>,
    doc_id: &str,
    changes: &[automerge::Change],
    now_ms: i64,
) -> Result<(), DocStoreError> {
    for change in changes {
        txn.sql()
            .execute(
                "INSERT OR IGNORE INTO received (doc_id, hash, received_ms) VALUES (?1, ?2, ?3)",
                params![doc_id, change.hash().to_string(), now_ms],
            )
            .map_err(|e| txn.err(e))?;
    }
    Ok(())
}

fn parse_heads(text: &str) -> Vec<ChangeHash> {
    text.split(',').filter_map(|h| h.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use fivestar_core::document::NewTask;
    use fivestar_core::{Kind, Stamp, Standard, TaskEdit};

    use super::*;

    fn stamp() -> Stamp {
        Stamp { by: "device d1".into(), at_ms: 1_780_000_000_000 }
    }

    #[test]
    fn save_reopen_compact_reopen_gives_the_same_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let standard = Standard::sample();
        let kind = standard.kind(Kind::Agricultural);
        let mut store = Store::create(&path, "fangou", "d1", 0).unwrap();
        store.write(1, |doc| doc.apply_template(kind)).unwrap().unwrap();
        for p in [10, 20, 30] {
            store
                .write(2, |doc| {
                    doc.edit_task(
                        kind,
                        "a-industry-jobs",
                        &TaskEdit { progress: Some(p), ..TaskEdit::default() },
                        &stamp(),
                    )
                })
                .unwrap()
                .unwrap();
        }
        store
            .write(3, |doc| {
                doc.add_task(
                    kind,
                    NewTask {
                        id: "t-00000001".into(),
                        star: "industry".into(),
                        title: "紫麦深加工".into(),
                        points: 5,
                        owner: "张".into(),
                        due: None,
                        note: None,
                    },
                    &stamp(),
                )
            })
            .unwrap()
            .unwrap();
        let written = store.read().unwrap();
        drop(store);

        let mut store = Store::open(&path, "fangou").unwrap();
        let reopened = store.read().unwrap();
        assert_eq!(reopened.heads(), written.heads());
        assert_eq!(reopened.tasks().unwrap(), written.tasks().unwrap());
        store.compact(4).unwrap();
        assert_eq!(store.chunk_count().unwrap(), 0);
        drop(store);

        let mut store = Store::open(&path, "fangou").unwrap();
        let compacted = store.read().unwrap();
        assert_eq!(compacted.heads(), written.heads());
        assert_eq!(compacted.tasks().unwrap(), written.tasks().unwrap());
        assert_eq!(compacted.history(None), written.history(None));
        assert_eq!(store.integrity_check().unwrap(), vec!["ok"]);
    }

    #[test]
    fn chunks_are_folded_into_the_snapshot_when_they_outgrow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let standard = Standard::sample();
        let kind = standard.kind(Kind::Urban);
        let mut store = Store::create(&path, "fuhou", "d1", 0).unwrap();
        store.write(1, |doc| doc.apply_template(kind)).unwrap().unwrap();
        let mut counts = Vec::new();
        for i in 0..40 {
            store
                .write(2, |doc| doc.add_note("u-safety-grid", &format!("note {i}"), &stamp()))
                .unwrap()
                .unwrap();
            counts.push(store.chunk_count().unwrap());
        }
        // The chunk count grows, drops to zero at a compaction, and grows again.
        assert!(counts.windows(2).any(|w| w[1] < w[0]), "never compacted: {counts:?}");
        assert_eq!(store.read().unwrap().task("u-safety-grid").unwrap().notes.len(), 40);
    }

    #[test]
    fn a_failed_edit_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let mut store = Store::create(&path, "fuhou", "d1", 0).unwrap();
        let heads = store.read().unwrap().heads();
        let result = store.write(1, |doc| doc.add_note("no-such-task", "x", &stamp())).unwrap();
        assert!(result.is_err());
        assert_eq!(store.chunk_count().unwrap(), 0);
        assert_eq!(store.read().unwrap().heads(), heads);
    }

    #[test]
    fn foreign_and_damaged_files_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x42; 8192]).unwrap();
        let err = Store::open(&junk, "fuhou").unwrap_err();
        assert!(matches!(err, StoreError::Store(DocStoreError::NotADatabase { .. })), "{err}");

        let other = dir.path().join("other.db");
        fivestar_store::rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE songs (t TEXT)")
            .unwrap();
        let err = Store::open(&other, "fuhou").unwrap_err();
        assert!(matches!(err, StoreError::Store(DocStoreError::Foreign { .. })), "{err}");

        let mine = dir.path().join("node.db");
        drop(Store::create(&mine, "fuhou", "d1", 0).unwrap());
        let err = Store::open(&mine, "yuyuan").unwrap_err();
        assert!(matches!(err, StoreError::WrongCommunity { .. }), "{err}");
    }

    #[test]
    fn unacknowledged_changes_are_this_devices_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let standard = Standard::sample();
        let mut store = Store::create(&path, "fuhou", "d1", 0).unwrap();
        store.write(1, |doc| doc.apply_template(standard.kind(Kind::Urban))).unwrap().unwrap();
        // Template changes are the community's, not this device's.
        assert_eq!(store.pending().unwrap().changes, 0);
        store.write(2, |doc| doc.add_note("u-safety-grid", "a", &stamp())).unwrap().unwrap();
        store.write(3, |doc| doc.add_note("u-safety-grid", "b", &stamp())).unwrap().unwrap();
        let pending = store.pending().unwrap();
        assert_eq!(pending.changes, 2);
        assert_eq!(pending.oldest_seconds, Some(1_780_000_000));
    }
}
