//! The node's SQLite store: one file per node, one owner of the connection.
//!
//! # Layout
//!
//! Each Automerge document is kept as a compact snapshot plus the incremental change
//! chunks written since; when the chunks together outgrow the snapshot, they are folded
//! into a new snapshot in the same transaction. Every blob carries a `format` marker
//! (1 = Automerge binary) so later versions can still read old bytes.
//!
//! # Durability
//!
//! WAL journal with `synchronous = FULL`: when [`Store::write`] returns `Ok`, the
//! change is committed and fsynced; it survives a crash of the program and a power
//! cut (as far as the disk honours fsync). A failed edit rolls back and writes nothing.
//!
//! # Concurrency
//!
//! A write takes SQLite's write lock (`BEGIN IMMEDIATE`) *before* it reads the
//! document, then reads it afresh. Two processes of one device (a clerk's command and
//! the sync daemon) therefore never build on a stale copy, and the device's Automerge
//! actor never writes two different changes with one sequence number.

use std::path::{Path, PathBuf};
use std::time::Duration;

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use fivestar_core::CommunityDoc;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

/// What the `meta` table's `kind` says in a node database.
const MAGIC: &str = "fivestar-node";

/// Blob format: Automerge's own binary encoding.
const FORMAT_AUTOMERGE: i64 = 1;

/// Numbered migrations; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: documents, chunks, acknowledgements and the sync log.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE snapshots (
         doc_id TEXT PRIMARY KEY,
         format INTEGER NOT NULL,
         bytes BLOB NOT NULL,
         saved_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE chunks (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         doc_id TEXT NOT NULL,
         format INTEGER NOT NULL,
         bytes BLOB NOT NULL,
         saved_ms INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX chunks_by_doc ON chunks (doc_id, id);
     CREATE TABLE acked_heads (
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
];

/// Why the store could not do what was asked. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not an SQLite database at all.
    #[error(
        "{path} is not a fivestar node database: the file is damaged or belongs to another program"
    )]
    NotADatabase {
        /// The database file.
        path: PathBuf,
    },
    /// An SQLite database, but not a node's.
    #[error("{path} is a database of another program, not of a fivestar node")]
    Foreign {
        /// The database file.
        path: PathBuf,
    },
    /// Written by a newer version of this program.
    #[error(
        "{path} was written by a newer fivestar-node (database version {found}, this program knows {known}): install the newer version"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this program knows.
        known: i64,
    },
    /// The database belongs to another community.
    #[error("{path} holds community {found:?}, but the configuration says {expected:?}")]
    WrongCommunity {
        /// The database file.
        path: PathBuf,
        /// What the database holds.
        found: String,
        /// What the configuration says.
        expected: String,
    },
    /// A stored document cannot be decoded.
    #[error(
        "{path}: the stored document {doc_id} cannot be read ({detail}); restore the file from a backup"
    )]
    CorruptDocument {
        /// The database file.
        path: PathBuf,
        /// The document.
        doc_id: String,
        /// What the decoder said.
        detail: String,
    },
    /// Any other SQLite failure.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
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

/// The last sync attempt, for `status`.
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
    conn: Connection,
    path: PathBuf,
    identity: Identity,
}

impl Store {
    /// Creates a new node database with a fresh document for `community`. Fails if
    /// the file exists.
    pub fn create(
        path: &Path,
        community: &str,
        device: &str,
        now_ms: i64,
    ) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|source| StoreError::Sqlite { path: path.to_path_buf(), source })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            identity: Identity {
                community: community.to_string(),
                device: device.to_string(),
                actor: ActorId::random(),
            },
        };
        store.configure()?;
        store.migrate()?;
        let doc = CommunityDoc::new(community, store.identity.actor.clone());
        let doc_id = community_doc_id(community);
        let actor_hex = store.identity.actor.to_hex_string();
        let path = store.path.clone();
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        let sql = |source| StoreError::Sqlite { path: path.clone(), source };
        for (key, value) in [
            ("kind", MAGIC),
            ("community", community),
            ("device", device),
            ("actor", actor_hex.as_str()),
        ] {
            tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                .map_err(sql)?;
        }
        tx.execute(
            "INSERT INTO snapshots (doc_id, format, bytes, saved_ms) VALUES (?1, ?2, ?3, ?4)",
            params![doc_id, FORMAT_AUTOMERGE, doc.automerge().save(), now_ms],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(store)
    }

    /// Opens an existing node database (it is never created here).
    pub fn open(path: &Path, expected_community: &str) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| classify(path, source))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            identity: Identity {
                community: String::new(),
                device: String::new(),
                actor: ActorId::random(),
            },
        };
        store.configure()?;
        store.check_kind()?;
        store.migrate()?;
        let meta = |key: &str| -> Result<String, StoreError> {
            store
                .conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
                .optional()
                .map_err(|source| classify(path, source))?
                .ok_or_else(|| StoreError::Foreign { path: path.to_path_buf() })
        };
        let community = meta("community")?;
        let device = meta("device")?;
        let actor_hex = meta("actor")?;
        let actor = hex::decode(&actor_hex)
            .map(ActorId::from)
            .map_err(|_| StoreError::Foreign { path: path.to_path_buf() })?;
        if community != expected_community {
            return Err(StoreError::WrongCommunity {
                path: path.to_path_buf(),
                found: community,
                expected: expected_community.to_string(),
            });
        }
        store.identity = Identity { community, device, actor };
        Ok(store)
    }

    /// Who this node is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The community's document as stored now.
    pub fn read(&mut self) -> Result<CommunityDoc, StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|source| classify(&path, source))?;
        let doc = load_doc(&tx, &path, &self.identity)?;
        tx.finish().map_err(|source| classify(&path, source))?;
        Ok(doc)
    }

    /// Applies `edit` to the community's document and commits the resulting change.
    /// When `edit` fails, nothing is written. When this returns `Ok`, the change is
    /// durable. `now_ms` is recorded with the chunk.
    pub fn write<T, E>(
        &mut self,
        now_ms: i64,
        edit: impl FnOnce(&mut CommunityDoc) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        let path = self.path.clone();
        let sql = |source| classify(&path, source);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let mut doc = load_doc(&tx, &path, &self.identity)?;
        let before = doc.heads();
        let out = match edit(&mut doc) {
            Ok(out) => out,
            // Dropping the transaction rolls it back: nothing was written.
            Err(err) => return Ok(Err(err)),
        };
        if doc.heads() != before {
            let doc_id = community_doc_id(&self.identity.community);
            let chunk = doc.automerge().save_after(&before);
            tx.execute(
                "INSERT INTO chunks (doc_id, format, bytes, saved_ms) VALUES (?1, ?2, ?3, ?4)",
                params![doc_id, FORMAT_AUTOMERGE, chunk, now_ms],
            )
            .map_err(sql)?;
            let (snapshot_bytes, chunk_bytes): (i64, i64) = tx
                .query_row(
                    "SELECT (SELECT length(bytes) FROM snapshots WHERE doc_id = ?1),
                            (SELECT coalesce(sum(length(bytes)), 0) FROM chunks WHERE doc_id = ?1)",
                    [&doc_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(sql)?;
            if chunk_bytes > snapshot_bytes {
                compact_in(&tx, &doc_id, doc.automerge(), now_ms).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(Ok(out))
    }

    /// Folds every chunk into a fresh snapshot now.
    pub fn compact(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| classify(&path, source);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let doc = load_doc(&tx, &path, &self.identity)?;
        compact_in(&tx, &community_doc_id(&self.identity.community), doc.automerge(), now_ms)
            .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// How many chunks are stored beside the snapshot (for tests and `status`).
    pub fn chunk_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM chunks", [], |row| row.get(0))
            .map_err(|source| classify(&self.path, source))
    }

    /// The heads the hub last acknowledged for the community's document.
    pub fn acked_heads(&self) -> Result<Vec<ChangeHash>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT heads FROM acked_heads WHERE doc_id = ?1",
                [community_doc_id(&self.identity.community)],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| classify(&self.path, source))?;
        Ok(text.map(|t| parse_heads(&t)).unwrap_or_default())
    }

    /// This device's changes that the hub has not acknowledged yet.
    pub fn pending(&mut self) -> Result<Pending, StoreError> {
        let acked = self.acked_heads()?;
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

    /// The newest sync attempt, if any.
    pub fn last_sync_attempt(&self) -> Result<Option<SyncAttempt>, StoreError> {
        self.conn
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
            .map_err(|source| classify(&self.path, source))
    }

    /// The newest failed sync attempt's error, if any.
    pub fn last_sync_error(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT started_ms, error FROM sync_attempts WHERE ok = 0 AND error IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|source| classify(&self.path, source))
    }

    /// Runs SQLite's own consistency check; `Ok(vec!["ok"])` when sound.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|source| classify(&self.path, source))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|source| classify(&self.path, source))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|source| classify(&self.path, source))
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|source| classify(&path, source))?;
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|source| classify(&path, source))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path,
                source: rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode stayed {mode}, WAL is required"
                )),
            });
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .and_then(|_| self.conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|source| classify(&path, source))
    }

    /// A database with tables but no node `meta` is another program's.
    fn check_kind(&self) -> Result<(), StoreError> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
                [],
                |row| row.get::<_, i64>(0).map(|n| n > 0),
            )
            .map_err(|source| classify(&self.path, source))?;
        let kind: Option<String> = if has_meta {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'kind'", [], |row| row.get(0))
                .optional()
                .map_err(|source| classify(&self.path, source))?
        } else {
            None
        };
        if kind.as_deref() == Some(MAGIC) {
            Ok(())
        } else {
            Err(StoreError::Foreign { path: self.path.clone() })
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| classify(&path, source);
        let version: i64 =
            self.conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew { path: path.clone(), found: version, known });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx =
                self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            tx.execute_batch(migration).map_err(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1).map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(())
    }
}

/// The document id a community's records are stored and synced under.
pub fn community_doc_id(community: &str) -> String {
    format!("community/{community}")
}

fn load_doc(
    conn: &Connection,
    path: &Path,
    identity: &Identity,
) -> Result<CommunityDoc, StoreError> {
    let doc_id = community_doc_id(&identity.community);
    let corrupt = |detail: String| StoreError::CorruptDocument {
        path: path.to_path_buf(),
        doc_id: doc_id.clone(),
        detail,
    };
    let (format, snapshot): (i64, Vec<u8>) = conn
        .query_row("SELECT format, bytes FROM snapshots WHERE doc_id = ?1", [&doc_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(|source| classify(path, source))?
        .ok_or_else(|| corrupt("no snapshot is stored".into()))?;
    if format != FORMAT_AUTOMERGE {
        return Err(corrupt(format!("unknown blob format {format}")));
    }
    let mut doc = Automerge::load(&snapshot).map_err(|e| corrupt(e.to_string()))?;
    let mut stmt = conn
        .prepare_cached("SELECT format, bytes FROM chunks WHERE doc_id = ?1 ORDER BY id")
        .map_err(|source| classify(path, source))?;
    let chunks = stmt
        .query_map([&doc_id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
        .map_err(|source| classify(path, source))?;
    for chunk in chunks {
        let (format, bytes) = chunk.map_err(|source| classify(path, source))?;
        if format != FORMAT_AUTOMERGE {
            return Err(corrupt(format!("unknown blob format {format}")));
        }
        doc.load_incremental(&bytes).map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(CommunityDoc::from_automerge(&identity.community, doc, identity.actor.clone()))
}

fn compact_in(
    conn: &Connection,
    doc_id: &str,
    doc: &Automerge,
    now_ms: i64,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "UPDATE snapshots SET format = ?2, bytes = ?3, saved_ms = ?4 WHERE doc_id = ?1",
        params![doc_id, FORMAT_AUTOMERGE, doc.save(), now_ms],
    )?;
    conn.execute("DELETE FROM chunks WHERE doc_id = ?1", [doc_id])?;
    Ok(())
}

fn parse_heads(text: &str) -> Vec<ChangeHash> {
    text.split(',').filter_map(|h| h.trim().parse().ok()).collect()
}

/// Turns SQLite's "not a database" into the message a clerk can act on.
fn classify(path: &Path, source: rusqlite::Error) -> StoreError {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        StoreError::NotADatabase { path: path.to_path_buf() }
    } else {
        StoreError::Sqlite { path: path.to_path_buf(), source }
    }
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
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");

        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE songs (t TEXT)").unwrap();
        let err = Store::open(&other, "fuhou").unwrap_err();
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");

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
