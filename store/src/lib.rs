//! SQLite storage of Automerge documents, shared by the node and the hub.
//!
//! # Layout
//!
//! Each document (`doc_id`, e.g. `community/fangou` or `district`) is a compact
//! snapshot (`snapshots`) plus the incremental change chunks written since (`chunks`);
//! `documents` holds one narrow row per document, its write number and last save, so
//! a save rewrites no snapshot it does not fold. When a document's chunks
//! together outgrow its snapshot they are folded into a new snapshot in the same
//! transaction. Every blob has a `format` marker (1 = Automerge binary) so later
//! versions still read old bytes. Every write bumps the document's `changed_seq` from
//! one database-wide counter, which lets a long-running process notice writes made by
//! another process ([`DocStore::changed_since`]).
//!
//! # Durability and concurrency
//!
//! WAL journal, `synchronous = FULL`. [`DocStore::write`] takes SQLite's write lock
//! (`BEGIN IMMEDIATE`) before it reads anything, so two processes (a clerk's command and
//! the daemon, or the hub and its `review` command) never build on a stale copy. When it
//! returns `Ok`, the transaction is committed and fsynced.
//!
//! # Schema versions
//!
//! Migrations are numbered per component (`store`, and the application's own, e.g.
//! `node` or `hub`) and recorded in `schema_versions`, so each part can grow its tables
//! independently; a database written by a newer program is refused by name.
//!
//! # Threads
//!
//! A [`DocStore`] is owned by one thread. Async code uses [`StoreThread`]: the store
//! lives on a dedicated thread and callers send it closures, awaiting the reply. This
//! keeps CPU-bound Automerge work off the async reactor.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use automerge::{Automerge, ChangeHash};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

pub mod thread;

pub use rusqlite;
pub use thread::StoreThread;

/// `query_row` and `execute` through the connection's statement cache. Parsing the
/// SQL of a small statement costs more than running it: on the hub's sync path,
/// where each message runs about a dozen, parsing was an eighth of the CPU.
pub trait CachedSql {
    /// [`Connection::query_row`], with the statement kept parsed.
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;

    /// [`Connection::execute`], with the statement kept parsed.
    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl CachedSql for Connection {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// Blob format: Automerge's own binary encoding.
pub const FORMAT_AUTOMERGE: i64 = 1;

/// The store's own tables.
const STORE_MIGRATIONS: &[&str] = &[
    // 1: documents (snapshot + chunks), sync states, application metadata.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE documents (
         doc_id TEXT PRIMARY KEY,
         format INTEGER NOT NULL,
         snapshot BLOB NOT NULL,
         changed_seq INTEGER NOT NULL,
         saved_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE chunks (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         doc_id TEXT NOT NULL REFERENCES documents (doc_id),
         format INTEGER NOT NULL,
         bytes BLOB NOT NULL,
         saved_ms INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX chunks_by_doc ON chunks (doc_id, id);
     CREATE TABLE sync_states (
         peer TEXT NOT NULL,
         doc_id TEXT NOT NULL,
         state BLOB NOT NULL,
         PRIMARY KEY (peer, doc_id)
     ) STRICT;",
    // 2: the write counter indexed: every save asks for the highest, and whoever
    // watches for writes asks what is above a number, without reading every row.
    "CREATE INDEX documents_by_seq ON documents (changed_seq);",
    // 3: the snapshot blob in a table of its own. SQLite rewrites a whole row to
    // change one column, so moving the write number of a document with a 60 KB
    // snapshot wrote 31 pages; now `documents` is a narrow row and a save writes
    // the snapshot only when it folds.
    "CREATE TABLE snapshots (
         doc_id TEXT PRIMARY KEY REFERENCES documents (doc_id),
         format INTEGER NOT NULL,
         bytes BLOB NOT NULL
     ) STRICT;
     INSERT INTO snapshots (doc_id, format, bytes)
         SELECT doc_id, format, snapshot FROM documents;
     ALTER TABLE documents DROP COLUMN snapshot;
     ALTER TABLE documents DROP COLUMN format;",
    // 4: chunk numbers without AUTOINCREMENT, whose counter row in `sqlite_sequence`
    // was one more page written by every save. A new chunk still gets a number above
    // every chunk stored, so a document's chunks keep their order.
    "CREATE TABLE chunks_next (
         id INTEGER PRIMARY KEY,
         doc_id TEXT NOT NULL REFERENCES documents (doc_id),
         format INTEGER NOT NULL,
         bytes BLOB NOT NULL,
         saved_ms INTEGER NOT NULL
     ) STRICT;
     INSERT INTO chunks_next (id, doc_id, format, bytes, saved_ms)
         SELECT id, doc_id, format, bytes, saved_ms FROM chunks;
     DROP TABLE chunks;
     ALTER TABLE chunks_next RENAME TO chunks;
     CREATE INDEX chunks_by_doc ON chunks (doc_id, id);",
    // 5: each document's stored bytes (its snapshot's, its chunks' together) kept in
    // its row, which every save writes anyway: a save asked SQLite to sum the
    // document's chunks to decide whether to fold them, and the hub asked again to
    // bound the document's size, each a walk over every chunk, twice per message.
    "ALTER TABLE documents ADD COLUMN snapshot_bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE documents ADD COLUMN chunk_bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE documents SET
         snapshot_bytes = coalesce(
             (SELECT length(bytes) FROM snapshots s WHERE s.doc_id = documents.doc_id), 0),
         chunk_bytes = coalesce(
             (SELECT sum(length(bytes)) FROM chunks c WHERE c.doc_id = documents.doc_id), 0);",
];

/// Which program a database belongs to, and that program's own migrations.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Written into `meta.kind` at creation and checked at every open, e.g. `fivestar-node`.
    pub kind: &'static str,
    /// The component name its migrations are recorded under, e.g. `node`.
    pub component: &'static str,
    /// Numbered migrations of the application's own tables.
    pub migrations: &'static [&'static str],
}

/// Why the store could not do what was asked. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not an SQLite database at all.
    #[error("{path} is not a {kind} database: the file is damaged or belongs to another program")]
    NotADatabase {
        /// The database file.
        path: PathBuf,
        /// What it should have been.
        kind: &'static str,
    },
    /// An SQLite database, but not one of this program's.
    #[error("{path} is a database of another program, not of a {kind}")]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What it should have been.
        kind: &'static str,
    },
    /// Written by a newer version of this program.
    #[error(
        "{path} was written by a newer version ({component} schema {found}, this program knows {known}): install the newer version"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Which component's schema.
        component: String,
        /// Its schema version.
        found: i64,
        /// The newest this program knows.
        known: i64,
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
    /// The store thread has stopped.
    #[error("the store thread has stopped")]
    Stopped,
    /// A job on the store thread failed unexpectedly (a bug); it was abandoned and
    /// nothing it was writing was stored.
    #[error("the store's work failed unexpectedly and was abandoned; nothing was stored")]
    Panicked,
}

/// One database file of Automerge documents, and the one connection to it.
#[derive(Debug)]
pub struct DocStore {
    conn: Connection,
    path: PathBuf,
    kind: &'static str,
    /// Documents as last committed, with the `changed_seq` they were read at.
    cache: HashMap<String, (i64, Automerge)>,
}

impl DocStore {
    /// Creates a new database. Fails if the file exists and is not empty.
    pub fn create(path: &Path, schema: &Schema) -> Result<DocStore, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|source| classify(path, schema.kind, source))?;
        let mut store =
            DocStore { conn, path: path.to_path_buf(), kind: schema.kind, cache: HashMap::new() };
        store.configure()?;
        store.migrate("store", STORE_MIGRATIONS)?;
        store.migrate(schema.component, schema.migrations)?;
        store.set_meta("kind", schema.kind)?;
        Ok(store)
    }

    /// Opens an existing database (it is never created here) and brings its schema up
    /// to date.
    pub fn open(path: &Path, schema: &Schema) -> Result<DocStore, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|source| classify(path, schema.kind, source))?;
        let mut store =
            DocStore { conn, path: path.to_path_buf(), kind: schema.kind, cache: HashMap::new() };
        store.configure()?;
        store.check_kind()?;
        store.migrate("store", STORE_MIGRATIONS)?;
        store.migrate(schema.component, schema.migrations)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for the application's own tables (outside document writes).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Maps an SQLite error to a [`StoreError`] naming this file.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        classify(&self.path, self.kind, source)
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .cached_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a value in the `meta` table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .cached_execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Reads a document as committed now; `None` when it is not stored.
    pub fn read(&mut self, doc_id: &str) -> Result<Option<Automerge>, StoreError> {
        let mut txn = Txn::begin(self, TransactionBehavior::Deferred)?;
        let doc = txn.load(doc_id)?;
        txn.finish()?;
        Ok(doc)
    }

    /// The stored document and its write number, taken out of the cache rather than
    /// copied (loaded when the cache does not hold it at its current number), for a
    /// writer that changes it off this thread and hands it back with
    /// [`Txn::save_owned`] or [`Txn::keep`]. Until then whoever reads it loads it
    /// again; if it never comes back (a refused message), the next read loads it.
    /// `None` when it is not stored.
    pub fn take(&mut self, doc_id: &str) -> Result<Option<(i64, Automerge)>, StoreError> {
        if let Some(seq) = self.cached_at_seq(doc_id)?
            && let Some((_, doc)) = self.cache.remove(doc_id)
        {
            return Ok(Some((seq, doc)));
        }
        let mut txn = Txn::begin(self, TransactionBehavior::Deferred)?;
        let taken = txn.take(doc_id)?;
        txn.finish()?;
        Ok(taken)
    }

    /// The document's write number when the cache holds it at that number (`None`
    /// otherwise, or when it is not stored), from one statement outside any
    /// transaction: a read that finds the cache current needs nothing else, and a
    /// transaction's begin and end cost more than the read itself.
    fn cached_at_seq(&self, doc_id: &str) -> Result<Option<i64>, StoreError> {
        let Some((cached, _)) = self.cache.get(doc_id) else { return Ok(None) };
        let seq: Option<i64> = self
            .conn
            .cached_row("SELECT changed_seq FROM documents WHERE doc_id = ?1", [doc_id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(seq.filter(|seq| seq == cached))
    }

    /// Runs `f` on the stored document as it is now, borrowed from the cache (loaded
    /// into it first if it is not there or is stale): no copy of the document, for
    /// what only reads it (its heads, a sync message to generate). `None` when it is
    /// not stored.
    pub fn peek<R>(
        &mut self,
        doc_id: &str,
        f: impl FnOnce(&Automerge) -> R,
    ) -> Result<Option<R>, StoreError> {
        if self.cached_at_seq(doc_id)?.is_some() {
            return Ok(self.cache.get(doc_id).map(|(_, doc)| f(doc)));
        }
        let mut txn = Txn::begin(self, TransactionBehavior::Deferred)?;
        let peeked = txn.peek(doc_id, f)?;
        txn.finish()?;
        Ok(peeked)
    }

    /// Runs `f` in one write transaction. `f` reads documents with [`Txn::load`] and
    /// saves them with [`Txn::save`]; if `f` returns `Err`, nothing is written. When this
    /// returns `Ok(Ok(_))`, everything `f` saved is durable.
    pub fn write<T, E>(
        &mut self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        let mut txn = Txn::begin(self, TransactionBehavior::Immediate)?;
        match f(&mut txn) {
            Ok(out) => {
                txn.commit()?;
                Ok(Ok(out))
            }
            Err(err) => Ok(Err(err)),
        }
    }

    /// The document ids written since `seq` (by any process), with the newest sequence
    /// number; poll it to notice changes.
    pub fn changed_since(&self, seq: i64) -> Result<(Vec<String>, i64), StoreError> {
        let (written, newest) = self.written_numbers(seq)?;
        Ok((written.into_iter().map(|(id, _)| id).collect(), newest))
    }

    /// Like [`DocStore::changed_since`], with each written document's heads (read
    /// from the cache when it holds the document at that write number, else loaded;
    /// a later write may show already, and is published again at the next poll).
    #[allow(clippy::type_complexity)]
    pub fn written_since(
        &mut self,
        seq: i64,
    ) -> Result<(Vec<(String, Vec<ChangeHash>)>, i64), StoreError> {
        let (written, newest) = self.written_numbers(seq)?;
        let mut out = Vec::with_capacity(written.len());
        for (id, s) in written {
            let heads = match self.cache.get(&id) {
                Some((at, doc)) if *at == s => Some(doc.get_heads()),
                _ => self.peek(&id, Automerge::get_heads)?,
            };
            if let Some(heads) = heads {
                out.push((id, heads));
            }
        }
        Ok((out, newest))
    }

    /// Each document written since `seq`, with its write number, oldest first; and
    /// the newest write number (`seq` when nothing was written).
    #[allow(clippy::type_complexity)]
    fn written_numbers(&self, seq: i64) -> Result<(Vec<(String, i64)>, i64), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT doc_id, changed_seq FROM documents WHERE changed_seq > ?1 ORDER BY changed_seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([seq], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let written: Vec<(String, i64)> =
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        let newest = written.last().map_or(seq, |(_, s)| *s);
        Ok((written, newest))
    }

    /// The newest write's sequence number (0 when nothing was written).
    pub fn latest_seq(&self) -> Result<i64, StoreError> {
        self.conn
            .cached_row("SELECT coalesce(max(changed_seq), 0) FROM documents", [], |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    /// The ids of every stored document.
    pub fn doc_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT doc_id FROM documents ORDER BY doc_id")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |row| row.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<String>, _>>().map_err(|e| self.err(e))
    }

    /// Folds every chunk of a document into a fresh snapshot now.
    pub fn compact(&mut self, doc_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut txn = Txn::begin(self, TransactionBehavior::Immediate)?;
        if let Some(doc) = txn.load(doc_id)? {
            txn.fold(doc_id, &doc, now_ms)?;
        }
        txn.commit()
    }

    /// How many chunks are stored beside the snapshots.
    pub fn chunk_count(&self) -> Result<i64, StoreError> {
        self.conn
            .cached_row("SELECT count(*) FROM chunks", [], |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    /// The persisted sync state with `peer` for `doc_id` (`automerge::sync::State::encode`).
    pub fn sync_state(&self, peer: &str, doc_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .cached_row(
                "SELECT state FROM sync_states WHERE peer = ?1 AND doc_id = ?2",
                params![peer, doc_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Persists a sync state (at the end of a session).
    pub fn set_sync_state(&self, peer: &str, doc_id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.conn
            .cached_execute(
                "INSERT INTO sync_states (peer, doc_id, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (peer, doc_id) DO UPDATE SET state = excluded.state",
                params![peer, doc_id, state],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Writes a consistent copy of the whole database to `path` (which must not exist)
    /// while others keep reading and writing: SQLite's `VACUUM INTO`.
    pub fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        let target = path.to_str().ok_or_else(|| StoreError::Sqlite {
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidPath(path.to_path_buf()),
        })?;
        self.conn.execute("VACUUM INTO ?1", [target]).map(|_| ()).map_err(|e| self.err(e))
    }

    /// SQLite's own consistency check; `["ok"]` when sound.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn.busy_timeout(Duration::from_secs(10)).map_err(|e| self.err(e))?;
        // Every statement of the sync path stays parsed (see `CachedSql`).
        self.conn.set_prepared_statement_cache_capacity(64);
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path: self.path.clone(),
                source: rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode stayed {mode}; WAL is required"
                )),
            });
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .and_then(|_| self.conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| self.err(e))
    }

    /// A database with tables but no `meta.kind` of ours is another program's.
    fn check_kind(&self) -> Result<(), StoreError> {
        let has_meta: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))?;
        let kind = if has_meta > 0 { self.meta("kind")? } else { None };
        if kind.as_deref() == Some(self.kind) {
            Ok(())
        } else {
            Err(StoreError::Foreign { path: self.path.clone(), kind: self.kind })
        }
    }

    fn migrate(&mut self, component: &str, migrations: &[&str]) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_versions (
                     component TEXT PRIMARY KEY, version INTEGER NOT NULL) STRICT",
            )
            .map_err(|e| self.err(e))?;
        let version: i64 = self
            .conn
            .query_row(
                "SELECT version FROM schema_versions WHERE component = ?1",
                [component],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or(0);
        let known = migrations.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                component: component.to_string(),
                found: version,
                known,
            });
        }
        for (index, migration) in migrations.iter().enumerate().skip(version as usize) {
            let path = self.path.clone();
            let kind = self.kind;
            let sql = |source| classify(&path, kind, source);
            let tx =
                self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            tx.execute_batch(migration).map_err(sql)?;
            tx.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?1, ?2)
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                params![component, index as i64 + 1],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(())
    }
}

/// One transaction on a [`DocStore`]. Documents it saves reach the store's cache only
/// when it commits.
#[derive(Debug)]
pub struct Txn<'a> {
    tx: Open<'a>,
    cache: &'a mut HashMap<String, (i64, Automerge)>,
    path: &'a Path,
    kind: &'static str,
    saved: HashMap<String, (i64, Automerge)>,
}

impl<'a> Txn<'a> {
    fn begin(
        store: &'a mut DocStore,
        behavior: TransactionBehavior,
    ) -> Result<Txn<'a>, StoreError> {
        let path = &store.path;
        let kind = store.kind;
        let tx =
            Open::begin(&store.conn, behavior).map_err(|source| classify(path, kind, source))?;
        Ok(Txn { tx, cache: &mut store.cache, path, kind, saved: HashMap::new() })
    }

    /// The transaction, for the application's own tables.
    pub fn sql(&self) -> &'a Connection {
        self.tx.conn
    }

    /// Maps an SQLite error to a [`StoreError`] naming this file.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        classify(self.path, self.kind, source)
    }

    /// A document as stored (including what this transaction saved); `None` when absent.
    pub fn load(&mut self, doc_id: &str) -> Result<Option<Automerge>, StoreError> {
        if let Some((_, doc)) = self.saved.get(doc_id) {
            return Ok(Some(doc.clone()));
        }
        let Some(seq) = self.changed_seq(doc_id)? else {
            return Ok(None);
        };
        if let Some((cached_seq, doc)) = self.cache.get(doc_id)
            && *cached_seq == seq
        {
            return Ok(Some(doc.clone()));
        }
        let doc = self.decode(doc_id)?;
        self.cache.insert(doc_id.to_string(), (seq, doc.clone()));
        Ok(Some(doc))
    }

    /// [`DocStore::take`] inside this transaction: the stored document and its write
    /// number, moved out of the cache (loaded when the cache does not hold it at that
    /// number), for a caller that hands it back with [`Txn::save_changes_owned`] or
    /// [`Txn::keep`] before this transaction commits. Not for a document this
    /// transaction saved. `None` when it is not stored.
    pub fn take(&mut self, doc_id: &str) -> Result<Option<(i64, Automerge)>, StoreError> {
        debug_assert!(!self.saved.contains_key(doc_id), "took a document this transaction saved");
        let Some(seq) = self.changed_seq(doc_id)? else { return Ok(None) };
        let doc = match self.cache.remove(doc_id) {
            Some((cached, doc)) if cached == seq => doc,
            _ => self.decode(doc_id)?,
        };
        Ok(Some((seq, doc)))
    }

    /// [`DocStore::peek`] inside this transaction: `f` runs on the document as this
    /// transaction sees it (what it saved, else the stored one, borrowed from the
    /// cache and loaded into it when stale). `None` when it is not stored.
    pub fn peek<R>(
        &mut self,
        doc_id: &str,
        f: impl FnOnce(&Automerge) -> R,
    ) -> Result<Option<R>, StoreError> {
        if let Some((_, doc)) = self.saved.get(doc_id) {
            return Ok(Some(f(doc)));
        }
        let Some(seq) = self.changed_seq(doc_id)? else { return Ok(None) };
        if !matches!(self.cache.get(doc_id), Some((cached, _)) if *cached == seq) {
            // What is stored, whatever this transaction does next: it saved nothing
            // of this document.
            let doc = self.decode(doc_id)?;
            self.cache.insert(doc_id.to_string(), (seq, doc));
        }
        Ok(self.cache.get(doc_id).map(|(_, doc)| f(doc)))
    }

    /// Builds a stored document from its rows (snapshot and chunks), bypassing the
    /// cache.
    fn decode(&mut self, doc_id: &str) -> Result<Automerge, StoreError> {
        let corrupt = |detail: String| StoreError::CorruptDocument {
            path: self.path.to_path_buf(),
            doc_id: doc_id.to_string(),
            detail,
        };
        let (format, snapshot): (i64, Vec<u8>) = self
            .tx
            .cached_row("SELECT format, bytes FROM snapshots WHERE doc_id = ?1", [doc_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(|e| self.err(e))?;
        if format != FORMAT_AUTOMERGE {
            return Err(corrupt(format!("unknown blob format {format}")));
        }
        let mut doc = Automerge::load(&snapshot).map_err(|e| corrupt(e.to_string()))?;
        let mut stmt = self
            .tx
            .prepare_cached("SELECT format, bytes FROM chunks WHERE doc_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let chunks = stmt
            .query_map([doc_id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
            .map_err(|e| self.err(e))?;
        for chunk in chunks {
            let (format, bytes) = chunk.map_err(|e| self.err(e))?;
            if format != FORMAT_AUTOMERGE {
                return Err(corrupt(format!("unknown blob format {format}")));
            }
            doc.load_incremental(&bytes).map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(doc)
    }

    /// A document's write number (`None` when it is not stored): it moves with every
    /// save that changes the document, so an unchanged number means an unchanged
    /// document.
    pub fn changed_seq(&mut self, doc_id: &str) -> Result<Option<i64>, StoreError> {
        self.tx
            .cached_row("SELECT changed_seq FROM documents WHERE doc_id = ?1", [doc_id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A document's write number and the bytes it takes in the store (its snapshot
    /// and its chunks), from its own row; `None` when it is not stored.
    pub fn stored(&mut self, doc_id: &str) -> Result<Option<(i64, u64)>, StoreError> {
        self.tx
            .cached_row(
                "SELECT changed_seq, snapshot_bytes + chunk_bytes FROM documents WHERE doc_id = ?1",
                [doc_id],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|row| row.map(|(seq, bytes)| (seq, u64::try_from(bytes).unwrap_or(0))))
            .map_err(|e| self.err(e))
    }

    /// Hands back a document taken with [`DocStore::take`] at write number `seq` and
    /// not changed: it is cached again when this transaction commits. The caller has
    /// checked, in this transaction, that `seq` is still the stored number.
    pub fn keep(&mut self, doc_id: &str, seq: i64, doc: Automerge) {
        self.saved.insert(doc_id.to_string(), (seq, doc));
    }

    /// The heads of a stored document (`None` when it is not stored), without a copy
    /// of the document.
    pub fn heads(&mut self, doc_id: &str) -> Result<Option<Vec<ChangeHash>>, StoreError> {
        self.peek(doc_id, Automerge::get_heads)
    }

    /// Saves what changed in `doc` since `before` (the heads it was loaded at); creates
    /// the document when it is not stored yet. Saving an unchanged document writes nothing.
    pub fn save(
        &mut self,
        doc_id: &str,
        before: &[ChangeHash],
        doc: &Automerge,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if let Some(seq) = self.write_changes(doc_id, before, doc, None, now_ms)? {
            self.saved.insert(doc_id.to_string(), (seq, doc.clone()));
        }
        Ok(())
    }

    /// [`Txn::save`] of a document the caller is done with: it moves into the cache
    /// rather than being copied there.
    pub fn save_owned(
        &mut self,
        doc_id: &str,
        before: &[ChangeHash],
        doc: Automerge,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if let Some(seq) = self.write_changes(doc_id, before, &doc, None, now_ms)? {
            self.saved.insert(doc_id.to_string(), (seq, doc));
        }
        Ok(())
    }

    /// [`Txn::save_owned`] by a caller that holds the changes `doc` added since
    /// `before`, exactly those (what `doc.get_changes(before)` lists): they are
    /// stored as they arrived instead of being found and encoded again.
    pub fn save_changes_owned(
        &mut self,
        doc_id: &str,
        before: &[ChangeHash],
        doc: Automerge,
        added: &[automerge::Change],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if let Some(seq) = self.write_changes(doc_id, before, &doc, Some(added), now_ms)? {
            self.saved.insert(doc_id.to_string(), (seq, doc));
        }
        Ok(())
    }

    /// Writes the rows of a save; the document's new sequence number, or `None` when
    /// there was nothing to write. `added`: the changes since `before`, when the
    /// caller has them (else Automerge finds them).
    fn write_changes(
        &mut self,
        doc_id: &str,
        before: &[ChangeHash],
        doc: &Automerge,
        added: Option<&[automerge::Change]>,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let sizes: Option<(i64, i64)> = self
            .tx
            .cached_row(
                "SELECT snapshot_bytes, chunk_bytes FROM documents WHERE doc_id = ?1",
                [doc_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let seq = self.next_seq()?;
        let Some((snapshot_bytes, chunk_bytes)) = sizes else {
            let snapshot = doc.save();
            self.tx
                .cached_execute(
                    "INSERT INTO documents (doc_id, changed_seq, saved_ms, snapshot_bytes)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![doc_id, seq, now_ms, byte_count(&snapshot)],
                )
                .map_err(|e| self.err(e))?;
            self.tx
                .cached_execute(
                    "INSERT INTO snapshots (doc_id, format, bytes) VALUES (?1, ?2, ?3)",
                    params![doc_id, FORMAT_AUTOMERGE, snapshot],
                )
                .map_err(|e| self.err(e))?;
            return Ok(Some(seq));
        };
        if doc.get_heads() == before {
            return Ok(None);
        }
        let chunk = match added {
            // Each change's bytes are a chunk of its own; one after another they
            // load as the chunk `save_after` would have made.
            Some(added) => {
                added.iter().map(automerge::Change::raw_bytes).collect::<Vec<_>>().concat()
            }
            None => doc.save_after(before),
        };
        let chunk_bytes = chunk_bytes.saturating_add(byte_count(&chunk));
        self.tx
            .cached_execute(
                "INSERT INTO chunks (doc_id, format, bytes, saved_ms) VALUES (?1, ?2, ?3, ?4)",
                params![doc_id, FORMAT_AUTOMERGE, chunk, now_ms],
            )
            .map_err(|e| self.err(e))?;
        self.tx
            .cached_execute(
                "UPDATE documents SET changed_seq = ?2, chunk_bytes = ?3 WHERE doc_id = ?1",
                params![doc_id, seq, chunk_bytes],
            )
            .map_err(|e| self.err(e))?;
        if chunk_bytes > snapshot_bytes {
            self.fold(doc_id, doc, now_ms)?;
        }
        Ok(Some(seq))
    }

    /// Replaces a document's snapshot and chunks by one fresh snapshot.
    fn fold(&mut self, doc_id: &str, doc: &Automerge, now_ms: i64) -> Result<(), StoreError> {
        let snapshot = doc.save();
        let snapshot_bytes = byte_count(&snapshot);
        self.tx
            .cached_execute(
                "UPDATE snapshots SET format = ?2, bytes = ?3 WHERE doc_id = ?1",
                params![doc_id, FORMAT_AUTOMERGE, snapshot],
            )
            .map_err(|e| self.err(e))?;
        self.tx
            .cached_execute(
                "UPDATE documents SET saved_ms = ?2, snapshot_bytes = ?3, chunk_bytes = 0
                 WHERE doc_id = ?1",
                params![doc_id, now_ms, snapshot_bytes],
            )
            .map_err(|e| self.err(e))?;
        self.tx
            .cached_execute("DELETE FROM chunks WHERE doc_id = ?1", [doc_id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn next_seq(&self) -> Result<i64, StoreError> {
        let current: i64 = self
            .tx
            .cached_row("SELECT coalesce(max(changed_seq), 0) FROM documents", [], |row| row.get(0))
            .map_err(|e| self.err(e))?;
        Ok(current + 1)
    }

    fn commit(self) -> Result<(), StoreError> {
        let path = self.path;
        let kind = self.kind;
        self.tx.commit().map_err(|source| classify(path, kind, source))?;
        self.cache.extend(self.saved);
        Ok(())
    }

    fn finish(self) -> Result<(), StoreError> {
        let path = self.path;
        let kind = self.kind;
        // A read's end: committing it and rolling it back are the same.
        self.tx.commit().map_err(|source| classify(path, kind, source))
    }
}

/// An open SQLite transaction, rolled back when dropped unless it was ended. Unlike
/// `rusqlite::Transaction`, which parses `BEGIN` and `COMMIT` afresh each time, it keeps
/// them in the connection's statement cache: the hub opens a transaction per sync
/// message, and parsing the two statements was 1 % of its CPU.
#[derive(Debug)]
struct Open<'a> {
    conn: &'a Connection,
    open: bool,
}

impl<'a> Open<'a> {
    fn begin(conn: &'a Connection, behavior: TransactionBehavior) -> rusqlite::Result<Open<'a>> {
        let sql = match behavior {
            TransactionBehavior::Deferred => "BEGIN DEFERRED",
            TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
            _ => "BEGIN EXCLUSIVE",
        };
        conn.cached_execute(sql, [])?;
        Ok(Open { conn, open: true })
    }

    /// Commits. When SQLite refuses (a busy `COMMIT`), the transaction is still open
    /// and is rolled back on drop.
    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.cached_execute("COMMIT", [])?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Open<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            // A failed rollback leaves nothing to do here: SQLite rolls back an
            // unfinished transaction when its connection closes.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A blob's length as SQLite stores integers.
fn byte_count(bytes: &[u8]) -> i64 {
    i64::try_from(bytes.len()).unwrap_or(i64::MAX)
}

/// Turns SQLite's "not a database" into the message a person can act on.
fn classify(path: &Path, kind: &'static str, source: rusqlite::Error) -> StoreError {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        StoreError::NotADatabase { path: path.to_path_buf(), kind }
    } else {
        StoreError::Sqlite { path: path.to_path_buf(), source }
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    use super::*;

    const SCHEMA: Schema = Schema { kind: "fivestar-test", component: "test", migrations: &[] };

    fn put(doc: &mut Automerge, key: &str, value: i64) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
    }

    /// A new store at `path` holding document "d" with `a = 1`, and that document.
    fn store_with_d(path: &Path) -> (DocStore, Automerge) {
        let mut store = DocStore::create(path, &SCHEMA).unwrap();
        let mut doc = Automerge::new();
        put(&mut doc, "a", 1);
        store.write(|t| t.save("d", &[], &doc, 0)).unwrap().unwrap();
        (store, doc)
    }

    #[test]
    fn save_reopen_compact_reopen_gives_the_same_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut store, mut doc) = store_with_d(&path);
        for i in 0..5 {
            let before = doc.get_heads();
            put(&mut doc, "a", i);
            store.write(|t| t.save("d", &before, &doc, 0)).unwrap().unwrap();
        }
        drop(store);
        let mut store = DocStore::open(&path, &SCHEMA).unwrap();
        assert_eq!(store.read("d").unwrap().unwrap().get_heads(), doc.get_heads());
        store.compact("d", 1).unwrap();
        assert_eq!(store.chunk_count().unwrap(), 0);
        drop(store);
        let mut store = DocStore::open(&path, &SCHEMA).unwrap();
        let back = store.read("d").unwrap().unwrap();
        assert_eq!(back.get_heads(), doc.get_heads());
        assert_eq!(back.get_changes(&[]).len(), doc.get_changes(&[]).len());
        assert_eq!(store.integrity_check().unwrap(), vec!["ok"]);
    }

    #[test]
    fn a_taken_document_is_read_again_meanwhile_and_kept_or_saved_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, doc) = store_with_d(&dir.path().join("t.db"));
        assert!(store.take("absent").unwrap().is_none());
        // Taken: whoever reads meanwhile gets the stored document all the same.
        let (seq, taken) = store.take("d").unwrap().unwrap();
        assert_eq!(taken.get_heads(), doc.get_heads());
        assert_eq!(store.peek("d", |d| d.get_heads()).unwrap().unwrap(), doc.get_heads());
        // Handed back unchanged, at a number that is still current.
        store
            .write(|t| {
                assert_eq!(t.changed_seq("d")?, Some(seq));
                t.keep("d", seq, taken);
                Ok::<_, StoreError>(())
            })
            .unwrap()
            .unwrap();
        // Taken and changed: saved back, and the number moves on.
        let (seq, mut taken) = store.take("d").unwrap().unwrap();
        let before = taken.get_heads();
        put(&mut taken, "a", 2);
        let after = taken.get_heads();
        store.write(|t| t.save_owned("d", &before, taken, 0)).unwrap().unwrap();
        let (now, again) = store.take("d").unwrap().unwrap();
        assert!(now > seq);
        assert_eq!(again.get_heads(), after);
        assert_eq!(again.get(ROOT, "a").unwrap().unwrap().0.as_i64(), Some(2));
    }

    #[test]
    fn another_connections_write_is_seen_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut a, _) = store_with_d(&path);
        let (_, seq) = a.changed_since(0).unwrap();
        let mut b = DocStore::open(&path, &SCHEMA).unwrap();
        let mut other = b.read("d").unwrap().unwrap();
        let before = other.get_heads();
        put(&mut other, "a", 2);
        b.write(|t| t.save("d", &before, &other, 0)).unwrap().unwrap();
        // a's cache is stale; its next read sees b's write, whichever way it reads:
        // a peek or a take that finds the cache current reads one number only.
        let (changed, _) = a.changed_since(seq).unwrap();
        assert_eq!(changed, vec!["d".to_string()]);
        let (written, newest) = a.written_since(seq).unwrap();
        assert_eq!(written, vec![("d".to_string(), other.get_heads())]);
        assert!(newest > seq);
        assert_eq!(a.peek("d", |d| d.get_heads()).unwrap().unwrap(), other.get_heads());
        assert_eq!(a.read("d").unwrap().unwrap().get_heads(), other.get_heads());
        // Again, with a's cache current, then stale once more under a take.
        assert_eq!(a.peek("d", |d| d.get_heads()).unwrap().unwrap(), other.get_heads());
        let before = other.get_heads();
        put(&mut other, "a", 3);
        b.write(|t| t.save("d", &before, &other, 0)).unwrap().unwrap();
        let (_, taken) = a.take("d").unwrap().unwrap();
        assert_eq!(taken.get_heads(), other.get_heads());
        assert_eq!(a.peek("absent", |d| d.get_heads()).unwrap(), None);
    }

    #[test]
    fn a_database_of_store_version_2_opens_with_its_documents_whole() {
        // Written as version 2 wrote it: the snapshot in the `documents` row.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut doc = Automerge::new();
        put(&mut doc, "a", 1);
        let snapshot = doc.save();
        let before = doc.get_heads();
        put(&mut doc, "a", 2);
        let chunk = doc.save_after(&before);
        let middle = doc.get_heads();
        put(&mut doc, "b", 1);
        let later = doc.save_after(&middle);
        {
            let conn = Connection::open(&path).unwrap();
            for migration in &STORE_MIGRATIONS[..2] {
                conn.execute_batch(migration).unwrap();
            }
            conn.execute_batch(
                "CREATE TABLE schema_versions (
                     component TEXT PRIMARY KEY, version INTEGER NOT NULL) STRICT;
                 INSERT INTO schema_versions VALUES ('store', 2);
                 INSERT INTO meta VALUES ('kind', 'fivestar-test');",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO documents (doc_id, format, snapshot, changed_seq, saved_ms)
                 VALUES ('d', 1, ?1, 1, 0)",
                [&snapshot],
            )
            .unwrap();
            for bytes in [&chunk, &later] {
                conn.execute(
                    "INSERT INTO chunks (doc_id, format, bytes, saved_ms) VALUES ('d', 1, ?1, 0)",
                    [bytes],
                )
                .unwrap();
            }
        }
        let mut store = DocStore::open(&path, &SCHEMA).unwrap();
        let read = store.read("d").unwrap().unwrap();
        assert_eq!(read.get_heads(), doc.get_heads());
        assert_eq!(read.get(ROOT, "a").unwrap().unwrap().0.as_i64(), Some(2));
        // Version 4: the chunks kept their numbers (their order), and no save counts
        // them in `sqlite_sequence` any more.
        let ids: Vec<i64> = store
            .conn()
            .prepare("SELECT id FROM chunks WHERE doc_id = 'd' ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, vec![1, 2]);
        // Version 5: the document's row counts its stored bytes.
        assert_eq!(
            recorded_and_actual_bytes(&store, "d"),
            (
                (byte_count(&snapshot), byte_count(&chunk) + byte_count(&later)),
                (byte_count(&snapshot), byte_count(&chunk) + byte_count(&later))
            )
        );
        let counted: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM sqlite_sequence WHERE name = 'chunks'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(counted, 0);
        // And it goes on: saved, folded, reopened.
        let before = doc.get_heads();
        put(&mut doc, "a", 3);
        store.write(|t| t.save("d", &before, &doc, 0)).unwrap().unwrap();
        store.compact("d", 1).unwrap();
        drop(store);
        let mut store = DocStore::open(&path, &SCHEMA).unwrap();
        assert_eq!(store.read("d").unwrap().unwrap().get_heads(), doc.get_heads());
        assert_eq!(store.integrity_check().unwrap(), vec!["ok".to_string()]);
    }

    /// A document's (snapshot, chunk) bytes as its row records them, and as its rows are.
    fn recorded_and_actual_bytes(store: &DocStore, doc_id: &str) -> ((i64, i64), (i64, i64)) {
        let recorded = store
            .conn()
            .query_row(
                "SELECT snapshot_bytes, chunk_bytes FROM documents WHERE doc_id = ?1",
                [doc_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        let actual = store
            .conn()
            .query_row(
                "SELECT (SELECT length(bytes) FROM snapshots WHERE doc_id = ?1),
                        (SELECT coalesce(sum(length(bytes)), 0) FROM chunks WHERE doc_id = ?1)",
                [doc_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        (recorded, actual)
    }

    #[test]
    fn saved_bytes_are_counted_in_the_row_and_changes_saved_as_they_arrived_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut store, mut doc) = store_with_d(&path);
        let mut folds = 0;
        for i in 0..120 {
            let before = doc.get_heads();
            // One change, or two at once (as a message may carry).
            put(&mut doc, "a", i);
            if i % 3 == 0 {
                put(&mut doc, &format!("k{i}"), i);
            }
            let chunks_before = store.chunk_count().unwrap();
            if i % 2 == 0 {
                let added = doc.get_changes(&before);
                let taken = doc.clone();
                store
                    .write(|t| t.save_changes_owned("d", &before, taken, &added, 0))
                    .unwrap()
                    .unwrap();
            } else {
                store.write(|t| t.save("d", &before, &doc, 0)).unwrap().unwrap();
            }
            if store.chunk_count().unwrap() <= chunks_before {
                folds += 1;
            }
            let (recorded, actual) = recorded_and_actual_bytes(&store, "d");
            assert_eq!(recorded, actual, "after save {i}");
            // Folded exactly when the chunks outgrew the snapshot.
            assert!(recorded.1 <= recorded.0, "after save {i}: {recorded:?}");
            let (_, total) = store.write(|t| t.stored("d")).unwrap().unwrap().unwrap();
            assert_eq!(i64::try_from(total).unwrap(), actual.0 + actual.1);
        }
        assert!(folds > 0, "120 saves never folded");
        drop(store);
        let mut store = DocStore::open(&path, &SCHEMA).unwrap();
        let back = store.read("d").unwrap().unwrap();
        assert_eq!(back.get_heads(), doc.get_heads());
        assert_eq!(back.get_changes(&[]).len(), doc.get_changes(&[]).len());
        assert_eq!(store.write(|t| t.stored("absent")).unwrap().unwrap(), None);
    }

    #[test]
    fn a_write_whose_closure_fails_leaves_store_and_cache_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, doc) = store_with_d(&dir.path().join("t.db"));
        let heads = doc.get_heads();
        let failed: Result<(), String> = store
            .write(|t| {
                let mut d = t.load("d").map_err(|e| e.to_string())?.unwrap();
                put(&mut d, "a", 10);
                t.save("d", &heads, &d, 0).map_err(|e| e.to_string())?;
                Err("refused after saving".to_string())
            })
            .unwrap();
        assert!(failed.is_err());
        assert_eq!(store.chunk_count().unwrap(), 0);
        let back = store.read("d").unwrap().unwrap();
        assert_eq!(back.get_heads(), heads);
        assert_eq!(back.get(ROOT, "a").unwrap().unwrap().0.as_i64(), Some(1));
    }

    #[test]
    fn a_write_that_panics_is_rolled_back_and_the_next_write_goes_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, doc) = store_with_d(&dir.path().join("t.db"));
        let heads = doc.get_heads();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.write(|t| -> Result<(), StoreError> {
                let mut d = t.load("d")?.unwrap();
                put(&mut d, "a", 10);
                t.save("d", &heads, &d, 0)?;
                panic!("a bug after saving")
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(store.chunk_count().unwrap(), 0);
        let written = store
            .write(|t| {
                let mut d = t.load("d")?.unwrap();
                put(&mut d, "a", 11);
                t.save("d", &heads, &d, 0)
            })
            .unwrap();
        assert!(written.is_ok(), "{written:?}");
        drop(store);
        let mut store = DocStore::open(&dir.path().join("t.db"), &SCHEMA).unwrap();
        let back = store.read("d").unwrap().unwrap();
        assert_eq!(back.get(ROOT, "a").unwrap().unwrap().0.as_i64(), Some(11));
    }
}
