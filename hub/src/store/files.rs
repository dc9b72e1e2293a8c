//! Evidence files at the hub: received in chunks from the devices of the community
//! whose document names them, verified chunk by chunk and whole, within a quota.
//!
//! A file is stored per community and SHA-256 as rows of chunks, so a cut upload
//! resumes where the hub's copy ends and memory never holds a whole file. It counts
//! as at the district only once every byte arrived and the whole matched its hash.

use fivestar_core::FileRef;
use fivestar_store::CachedSql;
use fivestar_store::StoreError;
use fivestar_store::rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::HubStore;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileProgress {
    /// Bytes held, from the start.
    pub received: u64,
    /// The file's size as the document records it.
    pub size: u64,
    /// Every byte arrived and the whole matched.
    pub complete: bool,
}

/// What a collection of unreferenced files removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// Files (whole or partial) no document names, as (community, SHA-256, bytes).
    pub files: Vec<(String, String, u64)>,
    /// Their bytes in all.
    pub bytes: u64,
}

/// A community's evidence files at the hub.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// The community.
    pub community: String,
    /// Files held whole.
    pub complete: u64,
    /// Files still arriving.
    pub partial: u64,
    /// Bytes they take (partial files count at their full size, as the quota does).
    pub bytes: u64,
}

/// Why a file or a chunk was refused. Nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The community's document names no file with this hash.
    #[error("the community's records name no file {0}; attach it to a note first")]
    NotReferenced(String),
    /// A chunk starts elsewhere than where the hub's copy ends.
    #[error(
        "this chunk starts at byte {got}, but the hub holds {expected} bytes of the file: resume there"
    )]
    WrongOffset {
        /// Where the hub's copy ends.
        expected: u64,
        /// Where the chunk starts.
        got: u64,
    },
    /// A chunk does not match its own hash.
    #[error("a chunk does not match its SHA-256; it was not stored")]
    ChunkMismatch,
    /// A chunk is larger than allowed, or runs past the file's size.
    #[error("{0}")]
    TooLarge(String),
    /// The whole file does not match its name; its bytes were discarded.
    #[error("the file's bytes do not match its SHA-256; they were discarded, upload it again")]
    FileMismatch,
    /// The community's quota would be exceeded.
    #[error(
        "the community's files would take {needed} bytes at the hub, over its quota of {quota}"
    )]
    Quota {
        /// What it would take.
        needed: u64,
        /// The quota.
        quota: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubStore {
    /// The file a community's document names by `sha256`, if it names one.
    pub fn referenced_file(
        &mut self,
        community: &str,
        sha256: &str,
    ) -> Result<Option<FileRef>, StoreError> {
        let Some(doc) = self.community(community)? else { return Ok(None) };
        let (tasks, _) = doc.read();
        Ok(tasks
            .into_iter()
            .flat_map(|t| t.notes)
            .filter_map(|n| n.file)
            .find(|f| f.hash == sha256))
    }

    /// Where the upload of a file stands (nothing yet: 0 received).
    pub fn file_progress(
        &self,
        community: &str,
        sha256: &str,
        size: u64,
    ) -> Result<FileProgress, StoreError> {
        let row: Option<(i64, i64)> = self
            .docs
            .conn()
            .cached_row(
                "SELECT received, complete FROM files WHERE community = ?1 AND sha256 = ?2",
                params![community, sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.docs.err(e))?;
        Ok(match row {
            Some((received, complete)) => FileProgress {
                received: u64::try_from(received).unwrap_or(0),
                size,
                complete: complete != 0,
            },
            None => FileProgress { received: 0, size, complete: false },
        })
    }

    /// Bytes a community's files take at the hub (complete and partial).
    pub fn file_bytes(&self, community: &str) -> Result<u64, StoreError> {
        let used: i64 = self
            .docs
            .conn()
            .cached_row(
                "SELECT COALESCE(SUM(size), 0) FROM files WHERE community = ?1",
                [community],
                |r| r.get(0),
            )
            .map_err(|e| self.docs.err(e))?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    /// Stores one chunk of `file` at `offset`, in one transaction; when it is the
    /// last, checks the whole file against its hash (and discards it if it does not
    /// match). Returns where the upload stands.
    #[allow(clippy::too_many_arguments)]
    pub fn store_chunk(
        &mut self,
        community: &str,
        file: &FileRef,
        offset: u64,
        data: &[u8],
        chunk_sha256: &str,
        quota: u64,
        now_ms: i64,
    ) -> Result<FileProgress, FileError> {
        if hex::encode(Sha256::digest(data)) != chunk_sha256 {
            return Err(FileError::ChunkMismatch);
        }
        let progress = self.file_progress(community, &file.hash, file.size)?;
        if progress.complete {
            return Ok(progress);
        }
        if offset != progress.received {
            return Err(FileError::WrongOffset { expected: progress.received, got: offset });
        }
        let end = offset + data.len() as u64;
        if end > file.size {
            return Err(FileError::TooLarge(format!(
                "the chunk runs to byte {end}, past the file's {} bytes",
                file.size
            )));
        }
        if progress.received == 0 {
            let needed = self.file_bytes(community)? + file.size;
            if needed > quota {
                return Err(FileError::Quota { needed, quota });
            }
        }
        let key = (community.to_string(), file.hash.clone());
        let size = i64::try_from(file.size).unwrap_or(i64::MAX);
        let complete = end == file.size;
        let outcome = self.docs.write(|txn| -> Result<bool, FileError> {
            let sql = txn.sql();
            sql.cached_execute(
                "INSERT OR IGNORE INTO files (community, sha256, size, started_ms) VALUES (?1, ?2, ?3, ?4)",
                params![key.0, key.1, size, now_ms],
            )
            .map_err(|e| txn.err(e))?;
            sql.cached_execute(
                "INSERT INTO file_chunks (community, sha256, offset, data) VALUES (?1, ?2, ?3, ?4)",
                params![key.0, key.1, i64::try_from(offset).unwrap_or(i64::MAX), data],
            )
            .map_err(|e| txn.err(e))?;
            sql.cached_execute(
                "UPDATE files SET received = ?3 WHERE community = ?1 AND sha256 = ?2",
                params![key.0, key.1, i64::try_from(end).unwrap_or(i64::MAX)],
            )
            .map_err(|e| txn.err(e))?;
            if !complete {
                return Ok(true);
            }
            // The whole file, chunk by chunk, against its name.
            let mut hasher = Sha256::new();
            {
                let mut stmt = sql
                    .prepare("SELECT data FROM file_chunks WHERE community = ?1 AND sha256 = ?2 ORDER BY offset")
                    .map_err(|e| txn.err(e))?;
                let mut rows = stmt.query(params![key.0, key.1]).map_err(|e| txn.err(e))?;
                while let Some(row) = rows.next().map_err(|e| txn.err(e))? {
                    let bytes: Vec<u8> = row.get(0).map_err(|e| txn.err(e))?;
                    hasher.update(&bytes);
                }
            }
            if hex::encode(hasher.finalize()) != key.1 {
                sql.cached_execute("DELETE FROM file_chunks WHERE community = ?1 AND sha256 = ?2", params![key.0, key.1])
                    .map_err(|e| txn.err(e))?;
                sql.cached_execute("DELETE FROM files WHERE community = ?1 AND sha256 = ?2", params![key.0, key.1])
                    .map_err(|e| txn.err(e))?;
                return Ok(false);
            }
            sql.cached_execute(
                "UPDATE files SET complete = 1, completed_ms = ?3 WHERE community = ?1 AND sha256 = ?2",
                params![key.0, key.1, now_ms],
            )
            .map_err(|e| txn.err(e))?;
            Ok(true)
        })?;
        match outcome? {
            true => Ok(FileProgress { received: end, size: file.size, complete }),
            false => Err(FileError::FileMismatch),
        }
    }

    /// A photo's preview: `None` when none was made yet, `Some(None)` when the photo
    /// could not be decoded.
    pub fn file_thumb(
        &self,
        community: &str,
        sha256: &str,
    ) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        self.docs
            .conn()
            .cached_row(
                "SELECT thumb FROM file_thumbs WHERE community = ?1 AND sha256 = ?2",
                params![community, sha256],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map_err(|e| self.docs.err(e))
    }

    /// Whether the hub tried to preview this photo and could not (without reading
    /// a preview's bytes).
    pub fn preview_impossible(&self, community: &str, sha256: &str) -> Result<bool, StoreError> {
        Ok(self
            .docs
            .conn()
            .cached_row(
                "SELECT thumb IS NULL FROM file_thumbs WHERE community = ?1 AND sha256 = ?2",
                params![community, sha256],
                |r| r.get::<_, bool>(0),
            )
            .optional()
            .map_err(|e| self.docs.err(e))?
            .unwrap_or(false))
    }

    /// Keeps a photo's preview (`None`: it could not be decoded).
    pub fn save_file_thumb(
        &mut self,
        community: &str,
        sha256: &str,
        thumb: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let key = (community.to_string(), sha256.to_string());
        self.docs.write(|txn| -> Result<(), StoreError> {
            txn.sql()
                .cached_execute(
                    "INSERT OR REPLACE INTO file_thumbs (community, sha256, thumb) VALUES (?1, ?2, ?3)",
                    params![key.0, key.1, thumb],
                )
                .map_err(|e| txn.err(e))?;
            Ok(())
        })?
    }

    /// Every community's evidence files at the hub, by community.
    pub fn file_usage(&self) -> Result<Vec<Usage>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare(
                "SELECT community, SUM(complete), SUM(1 - complete), SUM(size)
                 FROM files GROUP BY community ORDER BY community",
            )
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Usage {
                    community: r.get(0)?,
                    complete: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    partial: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    bytes: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                })
            })
            .map_err(|e| self.docs.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))
    }

    /// Finds the files (whole or partial) that no document names any more, and
    /// unless `dry_run`, deletes them with their chunks and previews: one
    /// transaction per community, each deciding from that community's document as
    /// it stands inside the transaction's turn on the store thread, so a note naming
    /// a file that arrives meanwhile keeps it. A file any note names, withdrawn or
    /// not, is never collected: notes are withdrawn, never deleted.
    pub fn collect_files(&mut self, dry_run: bool) -> Result<Collected, StoreError> {
        let communities: Vec<String> = {
            let mut stmt = self
                .docs
                .conn()
                .prepare("SELECT DISTINCT community FROM files ORDER BY community")
                .map_err(|e| self.docs.err(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.docs.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))?
        };
        let mut out = Collected::default();
        for community in communities {
            let named: std::collections::HashSet<String> = match self.community(&community)? {
                Some(doc) => doc
                    .read()
                    .0
                    .into_iter()
                    .flat_map(|t| t.notes)
                    .filter_map(|n| n.file.map(|f| f.hash))
                    .collect(),
                None => Default::default(),
            };
            let held: Vec<(String, u64)> = {
                let mut stmt = self
                    .docs
                    .conn()
                    .prepare("SELECT sha256, size FROM files WHERE community = ?1")
                    .map_err(|e| self.docs.err(e))?;
                let rows = stmt
                    .query_map([&community], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        ))
                    })
                    .map_err(|e| self.docs.err(e))?;
                rows.collect::<Result<_, _>>().map_err(|e| self.docs.err(e))?
            };
            let orphans: Vec<(String, u64)> =
                held.into_iter().filter(|(hash, _)| !named.contains(hash)).collect();
            if orphans.is_empty() {
                continue;
            }
            if !dry_run {
                self.docs.write(|txn| -> Result<(), StoreError> {
                    let sql = txn.sql();
                    for (hash, _) in &orphans {
                        for table in ["file_chunks", "file_thumbs", "files"] {
                            sql.execute(
                                &format!(
                                    "DELETE FROM {table} WHERE community = ?1 AND sha256 = ?2"
                                ),
                                params![community, hash],
                            )
                            .map_err(|e| txn.err(e))?;
                        }
                    }
                    Ok(())
                })??;
            }
            for (hash, size) in orphans {
                out.bytes += size;
                out.files.push((community.clone(), hash, size));
            }
        }
        Ok(out)
    }

    /// The bytes of a complete file, for the review desk.
    pub fn file_bytes_of(
        &self,
        community: &str,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let complete: Option<i64> = self
            .docs
            .conn()
            .cached_row(
                "SELECT complete FROM files WHERE community = ?1 AND sha256 = ?2",
                params![community, sha256],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.docs.err(e))?;
        if complete != Some(1) {
            return Ok(None);
        }
        let mut stmt = self
            .docs
            .conn()
            .prepare(
                "SELECT data FROM file_chunks WHERE community = ?1 AND sha256 = ?2 ORDER BY offset",
            )
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map(params![community, sha256], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.docs.err(e))?;
        let mut out = Vec::new();
        for chunk in rows {
            out.extend(chunk.map_err(|e| self.docs.err(e))?);
        }
        Ok(Some(out))
    }
}
