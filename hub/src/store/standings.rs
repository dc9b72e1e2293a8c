//! Standings at the hub: always current, kept as snapshots that can be recomputed.
//!
//! The hub keeps every community's score with the heads it was computed at, and
//! rescores only the documents written since the last refresh (the store's write
//! counter says which). Ranking all communities is cheap; it runs on every refresh.
//! When the table differs from the newest snapshot (anything but last-sync times), a
//! new snapshot is recorded with its time, the heads of every community document it
//! used, each community's last successful sync, `stale_after`, and the hashes of the
//! standard and registry texts (kept in `texts`). [`HubStore::recompute`] rebuilds a
//! snapshot's table from exactly those inputs.

use std::collections::{BTreeMap, HashMap};

use automerge::ChangeHash;
use chrono::{DateTime, TimeDelta, Utc};
use fivestar_core::document::read_named_tasks;
use fivestar_core::{
    CommunityDoc, CommunityScore, Kind, KindStandard, Registry, Standard, Standing, Task, Touched,
    by_registry, same_table, score, score_many, standings,
};
use fivestar_store::CachedSql;
use fivestar_store::rusqlite::{OptionalExtension, params};
use fivestar_store::{DocStore, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{HubStore, community_doc_id};

/// Scores by community: the write counter they were read at, and for each
/// community the heads, the tasks as read there and the score.
#[derive(Debug, Default)]
pub struct ScoreCache {
    seq: i64,
    by_community: HashMap<String, Scored>,
    /// What the sessions' writes since the last rescore touched, by community.
    hints: HashMap<String, Hint>,
}

/// One community's score and what it was computed from.
#[derive(Debug)]
struct Scored {
    heads: Vec<ChangeHash>,
    /// The tasks as read at `heads`, without their notes (scoring reads no notes;
    /// a community's evidence would otherwise be held twice).
    tasks: Vec<Task>,
    score: CommunityScore,
}

/// A run of writes to one document, each on top of the last, from `from` to `to`,
/// and the tasks they touched (from the policy check that accepted them).
#[derive(Debug)]
struct Hint {
    from: Vec<ChangeHash>,
    to: Vec<ChangeHash>,
    touched: Touched,
}

impl ScoreCache {
    /// Remembers that a write moved `community`'s document from `before` to `after`
    /// touching only `touched`. Rescoring then rereads only those tasks, if the
    /// writes it knows of lead exactly from the scored heads to the current ones;
    /// any other write (a review, another process) breaks the run and the whole
    /// document is reread.
    pub(super) fn note_write(
        &mut self,
        community: &str,
        before: &[ChangeHash],
        after: &[ChangeHash],
        touched: Touched,
    ) {
        match self.hints.get_mut(community) {
            Some(hint) if hint.to == before => {
                hint.to = after.to_vec();
                hint.touched.extend(touched);
            }
            _ => {
                let hint = Hint { from: before.to_vec(), to: after.to_vec(), touched };
                self.hints.insert(community.to_string(), hint);
            }
        }
    }
}

/// The heads each community's score was computed at.
pub type HeadsByCommunity = BTreeMap<String, Vec<ChangeHash>>;

/// A recorded standings table and everything needed to recompute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its number.
    pub id: i64,
    /// When it was computed, Unix milliseconds.
    pub computed_ms: i64,
    /// The `stale_after` in force, milliseconds.
    pub stale_after_ms: i64,
    /// SHA-256 of the standard text used.
    pub standard_sha256: String,
    /// SHA-256 of the registry text used.
    pub registry_sha256: String,
    /// The heads of every community document used (hex).
    pub heads: BTreeMap<String, Vec<String>>,
    /// Each community's last successful sync, Unix milliseconds.
    pub last_sync: BTreeMap<String, i64>,
    /// The table.
    pub rows: Vec<Standing>,
}

/// Stores a text (standard or registry) by its hash; returns the hash.
pub(super) fn remember_text(docs: &DocStore, text: &str) -> Result<String, StoreError> {
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    docs.conn()
        .execute("INSERT OR IGNORE INTO texts (sha256, text) VALUES (?1, ?2)", params![sha, text])
        .map_err(|e| docs.err(e))?;
    Ok(sha)
}

impl HubStore {
    /// The standings as of `now`, rescoring only the communities written since the
    /// last call. Also returns the heads each score was computed at.
    pub fn current_standings(
        &mut self,
        now_ms: i64,
        stale_after: TimeDelta,
    ) -> Result<(Vec<Standing>, HeadsByCommunity), StoreError> {
        self.rescore_changed()?;
        let last_sync = self.last_successes()?;
        // Looked up in registry order, borrowed: no score is copied.
        let communities = &self.registry.communities;
        let scores: Vec<Option<&CommunityScore>> = communities
            .iter()
            .map(|c| self.scores.by_community.get(&c.id).map(|s| &s.score))
            .collect();
        let last_sync = by_registry(&self.registry, &last_sync);
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
        let rows = standings(&self.registry, &scores, &last_sync, now, stale_after);
        let heads =
            self.scores.by_community.iter().map(|(id, s)| (id.clone(), s.heads.clone())).collect();
        Ok((rows, heads))
    }

    /// Computes the standings and records a snapshot if the table changed. Returns
    /// the new snapshot's id (if one was recorded) and the table.
    pub fn refresh_standings(
        &mut self,
        now_ms: i64,
        stale_after: TimeDelta,
    ) -> Result<(Option<i64>, Vec<Standing>), StoreError> {
        let (rows, heads) = self.current_standings(now_ms, stale_after)?;
        // The latest snapshot's table, kept in memory after the first look (reading
        // and parsing it back on every refresh cost more than scoring a change).
        if self.latest_table.is_none() {
            self.latest_table = self
                .snapshot_at(None)?
                .map(|latest| (latest.rows, latest.standard_sha256, latest.registry_sha256));
        }
        if let Some((latest, standard_sha, registry_sha)) = &self.latest_table {
            let same = same_table(latest, &rows)
                && *standard_sha == self.standard_sha
                && *registry_sha == self.registry_sha;
            if same {
                return Ok((None, rows));
            }
        }
        let heads: BTreeMap<String, Vec<String>> = heads
            .into_iter()
            .map(|(id, hs)| (id, hs.iter().map(|h| h.to_string()).collect()))
            .collect();
        let last_sync: BTreeMap<String, i64> =
            rows.iter().filter_map(|r| Some((r.community.clone(), r.last_sync_ms?))).collect();
        self.docs
            .conn()
            .cached_execute(
                "INSERT INTO standings_snapshots (computed_ms, stale_after_ms, standard_sha256,
                     registry_sha256, heads, last_sync, rows)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now_ms,
                    stale_after.num_milliseconds(),
                    self.standard_sha,
                    self.registry_sha,
                    to_json(&heads),
                    to_json(&last_sync),
                    to_json(&rows),
                ],
            )
            .map_err(|e| self.docs.err(e))?;
        let id = self.docs.conn().last_insert_rowid();
        self.latest_table =
            Some((rows.clone(), self.standard_sha.clone(), self.registry_sha.clone()));
        tracing::info!(snapshot = id, "standings changed; snapshot recorded");
        Ok((Some(id), rows))
    }

    /// The newest snapshot at or before `at_ms` (the newest of all when `None`).
    pub fn snapshot_at(&self, at_ms: Option<i64>) -> Result<Option<Snapshot>, StoreError> {
        self.snapshot_where("computed_ms <= ?1", at_ms.unwrap_or(i64::MAX))
    }

    /// Snapshot number `id`.
    pub fn snapshot(&self, id: i64) -> Result<Option<Snapshot>, StoreError> {
        self.snapshot_where("id = ?1", id)
    }

    /// The snapshot recorded just before snapshot `id`.
    pub fn snapshot_before(&self, id: i64) -> Result<Option<Snapshot>, StoreError> {
        self.snapshot_where("id < ?1", id)
    }

    fn snapshot_where(&self, condition: &str, value: i64) -> Result<Option<Snapshot>, StoreError> {
        let sql = format!(
            "SELECT id, computed_ms, stale_after_ms, standard_sha256, registry_sha256, heads,
                    last_sync, rows
             FROM standings_snapshots WHERE {condition} ORDER BY id DESC LIMIT 1"
        );
        let row = self
            .docs
            .conn()
            .query_row(&sql, [value], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })
            .optional()
            .map_err(|e| self.docs.err(e))?;
        let Some((
            id,
            computed_ms,
            stale_after_ms,
            standard_sha256,
            registry_sha256,
            heads,
            last_sync,
            rows,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt = |what: &str, err: serde_json::Error| StoreError::CorruptDocument {
            path: self.docs.path().to_path_buf(),
            doc_id: format!("standings snapshot {id}"),
            detail: format!("{what}: {err}"),
        };
        Ok(Some(Snapshot {
            id,
            computed_ms,
            stale_after_ms,
            standard_sha256,
            registry_sha256,
            heads: serde_json::from_str(&heads).map_err(|e| corrupt("heads", e))?,
            last_sync: serde_json::from_str(&last_sync).map_err(|e| corrupt("last_sync", e))?,
            rows: serde_json::from_str(&rows).map_err(|e| corrupt("rows", e))?,
        }))
    }

    /// Rebuilds a snapshot's table from its recorded inputs alone: the documents at
    /// the recorded heads, the recorded standard, registry, sync times and clock.
    pub fn recompute(&mut self, snapshot: &Snapshot) -> Result<Vec<Standing>, RecomputeError> {
        let text = |sha: &str| -> Result<String, RecomputeError> {
            self.docs
                .conn()
                .query_row("SELECT text FROM texts WHERE sha256 = ?1", [sha], |r| r.get(0))
                .optional()
                .map_err(|e| RecomputeError::Store(self.docs.err(e)))?
                .ok_or_else(|| RecomputeError::Missing(format!("the text with SHA-256 {sha}")))
        };
        let standard = Standard::from_toml(&text(&snapshot.standard_sha256)?)
            .map_err(|e| RecomputeError::Missing(e.to_string()))?;
        let registry = Registry::from_toml(&text(&snapshot.registry_sha256)?)
            .map_err(|e| RecomputeError::Missing(e.to_string()))?;
        let mut scores = HashMap::new();
        for (community, heads) in &snapshot.heads {
            let heads: Vec<ChangeHash> = heads
                .iter()
                .map(|h| h.parse().map_err(|_| RecomputeError::Missing(format!("head {h}"))))
                .collect::<Result<_, _>>()?;
            let doc = self
                .docs
                .read(&community_doc_id(community))?
                .ok_or_else(|| RecomputeError::Missing(format!("the document of {community}")))?;
            let past = doc.fork_at(&heads).map_err(|e| {
                RecomputeError::Missing(format!("{community} at the recorded heads: {e}"))
            })?;
            let Some(entry) = registry.community(community) else { continue };
            let tasks = CommunityDoc::from_automerge(community, past, self.actor.clone()).read().0;
            scores.insert(community.clone(), score(standard.kind(entry.kind), &tasks));
        }
        let last_sync: HashMap<String, i64> = snapshot.last_sync.clone().into_iter().collect();
        let now = DateTime::<Utc>::from_timestamp_millis(snapshot.computed_ms).unwrap_or_default();
        Ok(standings(
            &registry,
            &by_registry(&registry, &scores),
            &by_registry(&registry, &last_sync),
            now,
            TimeDelta::milliseconds(snapshot.stale_after_ms),
        ))
    }

    /// Rescores the communities whose documents were written since the last call:
    /// from the tasks the writes touched when the hints say exactly which, else from
    /// the whole document.
    fn rescore_changed(&mut self) -> Result<(), StoreError> {
        let (changed, newest) = self.docs.changed_since(self.scores.seq)?;
        // First the documents are read (on this thread, from the store), then every
        // community whose tasks moved is scored (spread over the cores when there
        // are thousands, as after a start).
        let mut unscored: Vec<(String, Kind, Vec<ChangeHash>, Vec<Task>)> = Vec::new();
        for doc_id in changed {
            let Some(community) = fivestar_core::document::community_of(&doc_id) else { continue };
            let hint = self.scores.hints.remove(community);
            let Some(kind) = self.registry.community(community).map(|c| c.kind) else { continue };
            let cached = self.scores.by_community.remove(community);
            // Read from the cached document, not a copy of it.
            let read = self.docs.peek(&doc_id, |doc| {
                let heads = doc.get_heads();
                match (cached, hint) {
                    (Some(mut scored), Some(hint))
                        if !hint.touched.everything
                            && hint.from == scored.heads
                            && hint.to == heads =>
                    {
                        let ids = hint.touched.tasks.iter().map(String::as_str);
                        for (id, task) in read_named_tasks(doc, ids) {
                            let at = scored.tasks.iter().position(|t| t.id == id);
                            match (task, at) {
                                (Some(task), Some(at)) => scored.tasks[at] = without_notes(task),
                                (Some(task), None) => scored.tasks.push(without_notes(task)),
                                (None, Some(at)) => {
                                    scored.tasks.swap_remove(at);
                                }
                                (None, None) => {}
                            }
                        }
                        metrics::counter!(crate::observe::RESCORES, "read" => "touched_tasks")
                            .increment(1);
                        Reread::Tasks(heads, scored.tasks)
                    }
                    (Some(scored), _) if scored.heads == heads => Reread::Unchanged(scored),
                    _ => {
                        let tasks: Vec<Task> =
                            fivestar_core::document::read_document(doc, community)
                                .0
                                .into_iter()
                                .map(without_notes)
                                .collect();
                        metrics::counter!(crate::observe::RESCORES, "read" => "whole_document")
                            .increment(1);
                        Reread::Tasks(heads, tasks)
                    }
                }
            })?;
            match read {
                Some(Reread::Unchanged(scored)) => {
                    self.scores.by_community.insert(community.to_string(), scored);
                }
                Some(Reread::Tasks(heads, tasks)) => {
                    unscored.push((community.to_string(), kind, heads, tasks));
                }
                None => {}
            }
        }
        let work: Vec<(&KindStandard, &[Task])> = unscored
            .iter()
            .map(|(_, kind, _, tasks)| (self.standard.kind(*kind), tasks.as_slice()))
            .collect();
        let scores = score_many(&work);
        for ((community, _, heads, tasks), score) in unscored.into_iter().zip(scores) {
            self.scores.by_community.insert(community, Scored { heads, tasks, score });
        }
        self.scores.seq = newest;
        Ok(())
    }

    /// Each community's last successful sync (any device), Unix milliseconds.
    fn last_successes(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self
            .docs
            .conn()
            .prepare_cached(
                "SELECT community, max(last_success_ms) FROM peers
                 WHERE community IS NOT NULL AND last_success_ms IS NOT NULL GROUP BY community",
            )
            .map_err(|e| self.docs.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.docs.err(e))?;
        rows.collect::<Result<HashMap<_, _>, _>>().map_err(|e| self.docs.err(e))
    }
}

/// Why a snapshot could not be recomputed.
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    /// An input the snapshot names is gone or unreadable.
    #[error("cannot recompute: {0} is missing")]
    Missing(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What rescoring found in a written document: the score as it was (the write left
/// the heads where they were scored), or the tasks to score at new heads.
enum Reread {
    Unchanged(Scored),
    Tasks(Vec<ChangeHash>, Vec<Task>),
}

/// A task as the score cache keeps it.
fn without_notes(task: Task) -> Task {
    Task { notes: Vec::new(), ..task }
}

/// A snapshot column as JSON (these types always serialize).
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
