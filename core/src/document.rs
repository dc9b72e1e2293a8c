//! One community's records as an Automerge document.
//!
//! # Schema (version 1, with the fields of product rule version 2)
//!
//! ```text
//! ROOT                                   written once, by the genesis change
//! ├── schema_version: int            1
//! ├── community_id:   str            e.g. "fangou"
//! └── tasks:          map            task id → task; never replaced, no key deleted
//!     └── <id>: map
//!         ├── star:       str        a star key of the community's kind      (standard / community*)
//!         ├── title:      str                                                 (standard / community*)
//!         ├── points:     int        1..=100                                  (standard / community*)
//!         ├── status:     str        todo | doing | done | blocked | failed   (community)
//!         ├── progress:   int        0..=100                                  (community)
//!         ├── owner:      str                                                 (community)
//!         ├── due:        str        YYYY-MM-DD, or "" for none               (community)
//!         ├── veto:       bool       false on the community's own tasks       (standard)
//!         ├── template:   str        template key, or "" for an own task      (standard)
//!         ├── notes:      list of map, append-only                            (community)
//!         │   └── {text: str, by: str, at: timestamp,                          written once
//!         │        withdrawn_by: str, withdrawn_at: timestamp}                 optional, written once
//!         └── review:     map        replaced whole by each review            (district)
//!             ├── verdict:  str      accepted | rejected | reopened
//!             ├── awarded:  int      optional, 0..=seen.points, accepted only
//!             ├── comment:  str      required for rejected and reopened
//!             ├── reviewer: str
//!             ├── at:       timestamp
//!             ├── override: bool     optional: accepted although not done
//!             └── seen:     map      what the reviewer judged (absent in version-1 reviews)
//!                 └── {star, title, owner, due: str; points, progress, notes, withdrawn: int;
//!                      status: str}
//! ```
//!
//! (*) the standard owns these fields of template tasks; the community owns them on
//! its own tasks. Who may write what is [`crate::policy`]; what a merged document
//! means (pinned scores, "changed since review") is decided when it is read.
//!
//! # Why the first changes are deterministic
//!
//! Two replicas that each create `tasks` (or the same template task) on their own
//! would make two different Automerge objects at one key; one wins and the edits
//! made inside the other disappear from view. So the genesis change (root fields
//! and the `tasks` map) and each template task's creation are made by an actor
//! derived from the community id (and the template key), at time 0, on top of a
//! fixed parent: every replica produces byte-identical changes with identical
//! hashes, and Automerge keeps one copy. Devices and the hub can therefore start
//! a community's document on their own, offline, and still merge cleanly.
//!
//! Every other change is made with the device's own actor id and carries a commit
//! message in JSON (`{"by": "...", "action": "..."}`) that `history` shows.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, Prop, ROOT, ReadDoc,
    ScalarValue, Value,
};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::standard::{KindStandard, STAR_POINTS, is_key};
use crate::{FileRef, Note, Review, Seen, Task, TaskStatus, Verdict, Withdrawal};

/// The id the district document (standard and registry) is stored and synced under.
pub const DISTRICT_DOC_ID: &str = "district";

/// The id a community's document is stored and synced under, e.g. `community/fangou`.
pub fn community_doc_id(community: &str) -> String {
    format!("community/{community}")
}

/// The community a document id names, if it names one.
pub fn community_of(doc_id: &str) -> Option<&str> {
    doc_id.strip_prefix("community/")
}

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// The longest text a field may hold (title, owner, note, comment), in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Who made a change and when; the clock is read at the edge and passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Shown in history, e.g. `device d1` or `reviewer 王敏`.
    pub by: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A problem found in a document, with the path it is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Slash-separated path from the root, e.g. `tasks/t-1a2b/progress`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why an edit was refused. Nothing is changed when an edit fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// No task has this id.
    #[error("there is no task {id:?} in community {community}")]
    UnknownTask {
        /// The community whose document was searched.
        community: String,
        /// The id asked for.
        id: String,
    },
    /// A task with this id exists already.
    #[error("a task with id {id:?} exists already")]
    DuplicateTask {
        /// The id.
        id: String,
    },
    /// The task id is not of the allowed form.
    #[error("task id {id:?} must be 1 to 40 characters of a-z, 0-9 and '-'")]
    BadTaskId {
        /// The id.
        id: String,
    },
    /// The star is not one of the community kind's stars.
    #[error("unknown star {star:?}: this community's stars are {known}")]
    UnknownStar {
        /// The key given.
        star: String,
        /// The kind's star keys, comma separated.
        known: String,
    },
    /// Progress outside 0..=100.
    #[error("progress {value} is not in 0..=100")]
    ProgressOutOfRange {
        /// The value given.
        value: i64,
    },
    /// Points outside 1..=100.
    #[error("points {value} is not in 1..=100")]
    PointsOutOfRange {
        /// The value given.
        value: i64,
    },
    /// Awarded points above the task's points.
    #[error("awarded points {awarded} are more than the task's {points} points")]
    AwardedTooHigh {
        /// Points awarded.
        awarded: u32,
        /// The task's points.
        points: u32,
    },
    /// A required text is empty, or a text is too long.
    #[error("{field} {problem}")]
    BadText {
        /// Which field.
        field: &'static str,
        /// "must not be empty" or "is longer than 2000 characters".
        problem: &'static str,
    },
    /// The task cannot be read (the document is damaged there).
    #[error("task {id:?} cannot be read: {problems}")]
    Unreadable {
        /// The id.
        id: String,
        /// The problems, joined.
        problems: String,
    },
    /// The field belongs to the standard on a template task.
    #[error("{field} of template task {id:?} is set by the standard; a community cannot change it")]
    StandardOwned {
        /// The task.
        id: String,
        /// The field.
        field: &'static str,
    },
    /// The task was accepted by the district: its score-affecting fields are locked.
    #[error(
        "task {id:?} was accepted by the district; its {field} is locked until the district reopens it"
    )]
    Locked {
        /// The task.
        id: String,
        /// The field.
        field: &'static str,
    },
    /// The id is a template key of the standard.
    #[error("task id {id:?} is reserved for the standard's template task")]
    ReservedId {
        /// The id.
        id: String,
    },
    /// Accepting a task that is not done needs an explicit override.
    #[error(
        "task {id:?} is {status} at {progress}%, not done: accepting it needs an explicit override"
    )]
    NotDone {
        /// The task.
        id: String,
        /// Its status.
        status: TaskStatus,
        /// Its progress.
        progress: u32,
    },
    /// A rejection or a reopening needs a comment.
    #[error("a {verdict} review needs a comment saying why")]
    CommentRequired {
        /// `rejected` or `reopened`.
        verdict: &'static str,
    },
    /// Reopening needs a verdict in force.
    #[error("task {id:?} has no verdict to reopen")]
    NothingToReopen {
        /// The task.
        id: String,
    },
    /// No note at this position.
    #[error("task {id:?} has no note {number}")]
    UnknownNote {
        /// The task.
        id: String,
        /// The note's number, from 1.
        number: usize,
    },
    /// The note was withdrawn already.
    #[error("note {number} of task {id:?} was withdrawn already")]
    AlreadyWithdrawn {
        /// The task.
        id: String,
        /// The note's number, from 1.
        number: usize,
    },
    /// A file reference a note may not carry.
    #[error("{problem}")]
    BadFile {
        /// What is wrong with it.
        problem: String,
    },
    /// The field has no concurrent values to choose between (or not that one).
    #[error("{field} of task {id:?} has no such concurrent value to choose")]
    NoConflict {
        /// The task.
        id: String,
        /// The field.
        field: String,
    },
    /// Automerge refused the operation (a bug or a damaged document).
    #[error("the document refused the change: {0}")]
    Automerge(String),
}

impl From<AutomergeError> for EditError {
    fn from(err: AutomergeError) -> Self {
        EditError::Automerge(err.to_string())
    }
}

/// The task fields a clerk may settle when devices set them differently while apart.
pub const CHOOSABLE_FIELDS: &[&str] =
    &["title", "star", "points", "owner", "due", "status", "progress"];

/// A field of a task with more than one concurrent value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The field, one of [`CHOOSABLE_FIELDS`].
    pub field: &'static str,
    /// Its values as text (`2026-12-31`, `60`, `done`, ...), the one shown now first.
    pub values: Vec<String>,
}

/// A new task of the community's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The id to give it (the node draws a random one).
    pub id: String,
    /// The star key.
    pub star: String,
    /// What must be done.
    pub title: String,
    /// Points, 1..=100.
    pub points: u32,
    /// The responsible person.
    pub owner: String,
    /// The deadline.
    pub due: Option<NaiveDate>,
    /// A first evidence note, if any.
    pub note: Option<String>,
}

/// Changes to a task's fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskEdit {
    /// New title.
    pub title: Option<String>,
    /// New star key.
    pub star: Option<String>,
    /// New points.
    pub points: Option<u32>,
    /// New owner.
    pub owner: Option<String>,
    /// New due date; `Some(None)` clears it.
    pub due: Option<Option<NaiveDate>>,
    /// New status. `done` also sets progress to 100.
    pub status: Option<TaskStatus>,
    /// New progress. 100 also marks the task `done` (from any status); more than 0
    /// on a `todo` task marks it `doing`.
    pub progress: Option<u32>,
}

impl TaskEdit {
    /// True when the edit would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == TaskEdit::default()
    }
}

/// One change in a document's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The change hash, hex.
    pub hash: String,
    /// The Automerge actor that made it, hex.
    pub actor: String,
    /// Who made it, from the commit message (`template` for deterministic changes).
    pub by: String,
    /// What kind of edit, from the commit message.
    pub action: String,
    /// When, Unix seconds (0 for template and genesis changes).
    pub at_seconds: i64,
    /// The fields it wrote, as paths.
    pub paths: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CommitNote {
    by: String,
    action: String,
}

/// One community's document.
#[derive(Debug, Clone)]
pub struct CommunityDoc {
    community_id: String,
    doc: Automerge,
}

impl CommunityDoc {
    /// A new document for `community_id`, whose later edits are made by `actor`.
    pub fn new(community_id: &str, actor: ActorId) -> CommunityDoc {
        let mut doc = genesis(community_id);
        doc.set_actor(actor);
        CommunityDoc { community_id: community_id.to_string(), doc }
    }

    /// Wraps a loaded Automerge document; it must be this community's.
    pub fn from_automerge(community_id: &str, mut doc: Automerge, actor: ActorId) -> CommunityDoc {
        doc.set_actor(actor);
        CommunityDoc { community_id: community_id.to_string(), doc }
    }

    /// The community this document belongs to.
    pub fn community_id(&self) -> &str {
        &self.community_id
    }

    /// The underlying Automerge document (for storage and sync).
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// The underlying Automerge document, mutable (for storage and sync).
    pub fn automerge_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    /// The current heads.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The heads of the genesis change every replica of this community shares.
    pub fn genesis_heads(community_id: &str) -> Vec<ChangeHash> {
        genesis(community_id).get_heads()
    }

    /// Every task that can be read, by id, and every problem met on the way.
    pub fn read(&self) -> (Vec<Task>, Vec<Problem>) {
        read_document(&self.doc, &self.community_id)
    }

    /// Every task, or the problems that keep the document from being read cleanly.
    pub fn tasks(&self) -> Result<Vec<Task>, Vec<Problem>> {
        let (tasks, problems) = self.read();
        if problems.is_empty() { Ok(tasks) } else { Err(problems) }
    }

    /// One task by its exact id.
    pub fn task(&self, id: &str) -> Result<Task, EditError> {
        let tasks_obj = self.tasks_obj()?;
        let Some(obj) = child_obj(&self.doc, &tasks_obj, id) else {
            return Err(self.unknown(id));
        };
        let mut problems = Vec::new();
        read_task(&self.doc, &obj, id, &mut problems).ok_or_else(|| EditError::Unreadable {
            id: id.to_string(),
            problems: problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "),
        })
    }

    /// The ids of every task, in key order.
    pub fn task_ids(&self) -> Vec<String> {
        match self.tasks_obj() {
            Ok(obj) => self.doc.keys(&obj).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Adds a task of the community's own.
    pub fn add_task(
        &mut self,
        standard: &KindStandard,
        task: NewTask,
        stamp: &Stamp,
    ) -> Result<(), EditError> {
        if !is_key(&task.id) {
            return Err(EditError::BadTaskId { id: task.id });
        }
        if standard.template_tasks().any(|(_, t)| t.key == task.id) {
            return Err(EditError::ReservedId { id: task.id });
        }
        check_star(standard, &task.star)?;
        check_points(task.points)?;
        check_text("title", &task.title, true)?;
        check_text("owner", &task.owner, false)?;
        if let Some(note) = &task.note {
            check_text("note", note, true)?;
        }
        let tasks_obj = self.tasks_obj()?;
        if child_obj(&self.doc, &tasks_obj, &task.id).is_some() {
            return Err(EditError::DuplicateTask { id: task.id });
        }
        self.commit(stamp, "add", |tx| {
            let obj = tx.put_object(&tasks_obj, task.id.as_str(), ObjType::Map)?;
            write_task_fields(tx, &obj, &task.star, &task.title, task.points, false, "")?;
            tx.put(&obj, "owner", task.owner.as_str())?;
            tx.put(&obj, "due", due_text(task.due))?;
            let notes = tx.put_object(&obj, "notes", ObjType::List)?;
            if let Some(note) = &task.note {
                insert_note(tx, &notes, note, stamp)?;
            }
            Ok(())
        })
    }

    /// Changes some fields of a task. An edit that changes nothing commits nothing.
    pub fn edit_task(
        &mut self,
        standard: &KindStandard,
        id: &str,
        edit: &TaskEdit,
        stamp: &Stamp,
    ) -> Result<(), EditError> {
        let current = self.task(id)?;
        // The standard owns these fields of a template task (DOMAIN.md version 2).
        if current.template.is_some() {
            let owned = [
                ("title", edit.title.as_ref().is_some_and(|t| *t != current.title)),
                ("star", edit.star.as_ref().is_some_and(|s| *s != current.star)),
                ("points", edit.points.is_some_and(|p| p != current.points)),
            ];
            if let Some((field, _)) = owned.into_iter().find(|(_, changes)| *changes) {
                return Err(EditError::StandardOwned { id: id.to_string(), field });
            }
        }
        if let Some(star) = &edit.star {
            check_star(standard, star)?;
        }
        if let Some(points) = edit.points {
            check_points(points)?;
        }
        if let Some(progress) = edit.progress
            && progress > 100
        {
            return Err(EditError::ProgressOutOfRange { value: i64::from(progress) });
        }
        if let Some(title) = &edit.title {
            check_text("title", title, true)?;
        }
        if let Some(owner) = &edit.owner {
            check_text("owner", owner, false)?;
        }
        let mut status = edit.status;
        let mut progress = edit.progress;
        if status == Some(TaskStatus::Done) {
            progress = Some(100);
        }
        if status.is_none()
            && let Some(p) = progress
        {
            let base = current.status;
            // 100 % means done, whatever the task was (the README's promise): a
            // blocked or failed task brought to 100 % is finished after all.
            if p == 100 && base != TaskStatus::Done {
                status = Some(TaskStatus::Done);
            } else if p > 0 && base == TaskStatus::Todo {
                status = Some(TaskStatus::Doing);
            }
        }
        // On the node an accepted task's score-affecting fields are locked until the
        // district reopens it; owner, due date, title and evidence stay open.
        if current.is_accepted() {
            let locked = [
                ("status", status.is_some_and(|s| s != current.status)),
                ("progress", progress.is_some_and(|p| p != current.progress)),
                ("star", edit.star.as_ref().is_some_and(|s| *s != current.star)),
                ("points", edit.points.is_some_and(|p| p != current.points)),
            ];
            if let Some((field, _)) = locked.into_iter().find(|(_, changes)| *changes) {
                return Err(EditError::Locked { id: id.to_string(), field });
            }
        }
        // Only fields whose value really changes are written, so history stays honest.
        let mut puts: Vec<(&str, ScalarValue)> = Vec::new();
        if let Some(title) = &edit.title
            && *title != current.title
        {
            puts.push(("title", title.as_str().into()));
        }
        if let Some(star) = &edit.star
            && *star != current.star
        {
            puts.push(("star", star.as_str().into()));
        }
        if let Some(points) = edit.points
            && points != current.points
        {
            puts.push(("points", i64::from(points).into()));
        }
        if let Some(owner) = &edit.owner
            && *owner != current.owner
        {
            puts.push(("owner", owner.as_str().into()));
        }
        if let Some(due) = edit.due
            && due != current.due
        {
            puts.push(("due", due_text(due).into()));
        }
        if let Some(s) = status
            && s != current.status
        {
            puts.push(("status", s.as_str().into()));
        }
        if let Some(p) = progress
            && p != current.progress
        {
            puts.push(("progress", i64::from(p).into()));
        }
        if puts.is_empty() {
            return Ok(());
        }
        let action = puts.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(",");
        let obj = self.task_obj(id)?;
        self.commit(stamp, &format!("edit {action}"), |tx| {
            for (key, value) in puts {
                tx.put(&obj, key, value)?;
            }
            Ok(())
        })
    }

    /// The fields of a task that devices set differently while apart. Automerge keeps
    /// every concurrent value and one wins by a fixed rule; a clerk should see the
    /// others and choose. Each conflict lists the winning value first.
    pub fn conflicts(&self, id: &str) -> Result<Vec<Conflict>, EditError> {
        let obj = self.task_obj(id)?;
        let mut found = Vec::new();
        for field in CHOOSABLE_FIELDS {
            let all = self.doc.get_all(&obj, *field)?;
            if all.len() < 2 {
                continue;
            }
            let winner = self.doc.get(&obj, *field)?.map(|(_, id)| id);
            let mut values: Vec<(bool, String)> = all
                .iter()
                .map(|(value, op)| (Some(op) == winner.as_ref(), scalar_text(value)))
                .collect();
            // The winner first, the others in a fixed order; equal values once.
            values.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let mut texts: Vec<String> = Vec::new();
            for (_, text) in values {
                if !texts.contains(&text) {
                    texts.push(text);
                }
            }
            if texts.len() > 1 {
                found.push(Conflict { field, values: texts });
            }
        }
        Ok(found)
    }

    /// Settles a conflict on `field` with `value`, one of the values [`Self::conflicts`]
    /// lists: the value is written again over every concurrent one, with the same
    /// checks as any edit, so every replica shows the clerk's choice once merged.
    pub fn settle(
        &mut self,
        standard: &KindStandard,
        id: &str,
        field: &str,
        value: &str,
        stamp: &Stamp,
    ) -> Result<(), EditError> {
        let conflict =
            self.conflicts(id)?.into_iter().find(|c| c.field == field).ok_or_else(|| {
                EditError::NoConflict { id: id.to_string(), field: field.to_string() }
            })?;
        if !conflict.values.iter().any(|v| v == value) {
            return Err(EditError::NoConflict { id: id.to_string(), field: field.to_string() });
        }
        let bad = || EditError::Automerge(format!("{field} value {value:?} cannot be read"));
        let mut edit = TaskEdit::default();
        let scalar: ScalarValue = match conflict.field {
            "title" => {
                edit.title = Some(value.to_string());
                value.into()
            }
            "star" => {
                edit.star = Some(value.to_string());
                value.into()
            }
            "owner" => {
                edit.owner = Some(value.to_string());
                value.into()
            }
            "due" => {
                let due = if value.is_empty() {
                    None
                } else {
                    Some(NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?)
                };
                edit.due = Some(due);
                value.into()
            }
            "status" => {
                edit.status = Some(value.parse().map_err(|_| bad())?);
                value.into()
            }
            "points" => {
                let points: u32 = value.parse().map_err(|_| bad())?;
                edit.points = Some(points);
                i64::from(points).into()
            }
            _ => {
                let progress: u32 = value.parse().map_err(|_| bad())?;
                edit.progress = Some(progress);
                i64::from(progress).into()
            }
        };
        // The same checks as an edit (locks, the standard's fields, ranges); when the
        // chosen value is not the winner, the edit itself overwrites every value.
        let before = self.doc.get_heads();
        self.edit_task(standard, id, &edit, stamp)?;
        if self.doc.get_heads() != before && self.conflicts(id)?.iter().all(|c| c.field != field) {
            return Ok(());
        }
        let obj = self.task_obj(id)?;
        let key = conflict.field;
        self.commit(stamp, &format!("settle {key}"), |tx| tx.put(&obj, key, scalar))
    }

    /// Appends an evidence note carrying a file (its bytes are stored apart).
    pub fn add_file_note(
        &mut self,
        id: &str,
        text: &str,
        file: &FileRef,
        stamp: &Stamp,
    ) -> Result<(), EditError> {
        check_text("note", text, false)?;
        if let Some(problem) = file.problem() {
            return Err(EditError::BadFile { problem });
        }
        let notes = self.notes_obj(id)?;
        self.commit(stamp, "attach", |tx| insert_note_with(tx, &notes, text, Some(file), stamp))
    }

    /// The notes list of a task.
    fn notes_obj(&self, id: &str) -> Result<ObjId, EditError> {
        let obj = self.task_obj(id)?;
        match self.doc.get(&obj, "notes")? {
            Some((Value::Object(ObjType::List), notes)) => Ok(notes),
            _ => Err(EditError::Unreadable {
                id: id.to_string(),
                problems: format!("tasks/{id}/notes: is not a list"),
            }),
        }
    }

    /// Appends an evidence note to a task.
    pub fn add_note(&mut self, id: &str, text: &str, stamp: &Stamp) -> Result<(), EditError> {
        check_text("note", text, true)?;
        let notes = self.notes_obj(id)?;
        self.commit(stamp, "note", |tx| insert_note(tx, &notes, text, stamp))
    }

    /// Marks an evidence note withdrawn (`number` counts from 1). Notes are never
    /// deleted or rewritten.
    pub fn withdraw_note(
        &mut self,
        id: &str,
        number: usize,
        stamp: &Stamp,
    ) -> Result<(), EditError> {
        let task = self.task(id)?;
        let note = number
            .checked_sub(1)
            .and_then(|i| task.notes.get(i))
            .ok_or_else(|| EditError::UnknownNote { id: id.to_string(), number })?;
        if note.withdrawn.is_some() {
            return Err(EditError::AlreadyWithdrawn { id: id.to_string(), number });
        }
        let obj = self.task_obj(id)?;
        let Some((_, notes)) = self.doc.get(&obj, "notes")? else {
            return Err(EditError::UnknownNote { id: id.to_string(), number });
        };
        let Some((_, note_obj)) = self.doc.get(&notes, number - 1)? else {
            return Err(EditError::UnknownNote { id: id.to_string(), number });
        };
        self.commit(stamp, "withdraw note", |tx| {
            tx.put(&note_obj, "withdrawn_by", stamp.by.as_str())?;
            tx.put(&note_obj, "withdrawn_at", ScalarValue::Timestamp(stamp.at_ms))?;
            Ok(())
        })
    }

    /// Records the district's verdict on a task (only the hub and reviewers call this).
    /// The review pins what the reviewer saw (`review.seen` is filled in here from the
    /// task as it stands). Accepting a task that is not done needs `review.overridden`;
    /// a rejection needs a comment.
    pub fn set_review(
        &mut self,
        id: &str,
        review: &Review,
        stamp: &Stamp,
    ) -> Result<(), EditError> {
        let task = self.task(id)?;
        let seen = task.seen();
        match review.verdict {
            Verdict::Accepted { awarded } => {
                if let Some(awarded) = awarded
                    && awarded > task.points
                {
                    return Err(EditError::AwardedTooHigh { awarded, points: task.points });
                }
                let done = task.status == TaskStatus::Done || task.progress >= 100;
                if !done && !review.overridden {
                    return Err(EditError::NotDone {
                        id: id.to_string(),
                        status: task.status,
                        progress: task.progress,
                    });
                }
            }
            Verdict::Rejected => {
                if review.comment.trim().is_empty() {
                    return Err(EditError::CommentRequired { verdict: "rejected" });
                }
            }
            Verdict::Reopened => {
                if review.comment.trim().is_empty() {
                    return Err(EditError::CommentRequired { verdict: "reopened" });
                }
                if task.verdict().is_none() {
                    return Err(EditError::NothingToReopen { id: id.to_string() });
                }
            }
        }
        check_text("comment", &review.comment, false)?;
        check_text("reviewer", &review.reviewer, true)?;
        let overridden = review.overridden
            && matches!(review.verdict, Verdict::Accepted { .. })
            && !(task.status == TaskStatus::Done || task.progress >= 100);
        let obj = self.task_obj(id)?;
        self.commit(stamp, review.verdict.as_str(), |tx| {
            let r = tx.put_object(&obj, "review", ObjType::Map)?;
            tx.put(&r, "verdict", review.verdict.as_str())?;
            if let Verdict::Accepted { awarded: Some(awarded) } = review.verdict {
                tx.put(&r, "awarded", i64::from(awarded))?;
            }
            tx.put(&r, "comment", review.comment.as_str())?;
            tx.put(&r, "reviewer", review.reviewer.as_str())?;
            tx.put(&r, "at", ScalarValue::Timestamp(review.at_ms))?;
            if overridden {
                tx.put(&r, "override", true)?;
            }
            if !matches!(review.verdict, Verdict::Reopened) {
                let s = tx.put_object(&r, "seen", ObjType::Map)?;
                tx.put(&s, "star", seen.star.as_str())?;
                tx.put(&s, "points", i64::from(seen.points))?;
                tx.put(&s, "status", seen.status.as_str())?;
                tx.put(&s, "progress", i64::from(seen.progress))?;
                tx.put(&s, "title", seen.title.as_str())?;
                tx.put(&s, "owner", seen.owner.as_str())?;
                tx.put(&s, "due", due_text(seen.due))?;
                tx.put(&s, "notes", i64::from(seen.notes))?;
                tx.put(&s, "withdrawn", i64::from(seen.withdrawn))?;
            }
            Ok(())
        })
    }

    /// Creates the template tasks of `standard` that the document lacks. Returns the
    /// ids created (none when the template was applied before, on any replica that
    /// has since been merged).
    pub fn apply_template(&mut self, standard: &KindStandard) -> Result<Vec<String>, EditError> {
        let tasks_obj = self.tasks_obj()?;
        let mut created = Vec::new();
        for (key, change) in template_changes(&self.community_id, standard)? {
            if child_obj(&self.doc, &tasks_obj, &key).is_some() {
                continue;
            }
            self.doc.apply_changes([change])?;
            created.push(key);
        }
        Ok(created)
    }

    /// The document's changes in causal order; only those touching `task` when given.
    pub fn history(&self, task: Option<&str>) -> Vec<HistoryEntry> {
        let mut entries = Vec::new();
        for change in self.doc.get_changes(&[]) {
            let hash = change.hash();
            let patches = self.doc.diff(change.deps(), &[hash]);
            let mut paths: Vec<String> = patches.iter().map(patch_path).collect();
            paths.sort();
            paths.dedup();
            // A task (or note) created by this change stands for all the fields in it.
            let created = paths.clone();
            paths.retain(|p| {
                !created.iter().any(|c| p.len() > c.len() && p.starts_with(&format!("{c}/")))
            });
            if let Some(task) = task {
                let prefix = format!("tasks/{task}");
                if !paths.iter().any(|p| *p == prefix || p.starts_with(&format!("{prefix}/"))) {
                    continue;
                }
            }
            let note = change
                .message()
                .and_then(|m| serde_json::from_str::<CommitNote>(m).ok())
                .unwrap_or(CommitNote {
                    by: format!("actor {}", short_hex(&change.actor_id().to_hex_string())),
                    action: change.message().unwrap_or("").to_string(),
                });
            entries.push(HistoryEntry {
                hash: hash.to_string(),
                actor: change.actor_id().to_hex_string(),
                by: note.by,
                action: note.action,
                at_seconds: change.timestamp(),
                paths,
            });
        }
        // `get_changes` lists changes in causal order (every change after the ones it
        // depends on), which is the truthful order; clocks of devices may disagree.
        entries
    }

    fn tasks_obj(&self) -> Result<ObjId, EditError> {
        match self.doc.get(ROOT, "tasks")? {
            Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
            _ => Err(EditError::Unreadable {
                id: String::new(),
                problems: "tasks: is missing or not a map".into(),
            }),
        }
    }

    fn task_obj(&self, id: &str) -> Result<ObjId, EditError> {
        let tasks = self.tasks_obj()?;
        child_obj(&self.doc, &tasks, id).ok_or_else(|| self.unknown(id))
    }

    fn unknown(&self, id: &str) -> EditError {
        EditError::UnknownTask { community: self.community_id.clone(), id: id.to_string() }
    }

    fn commit<F>(&mut self, stamp: &Stamp, action: &str, f: F) -> Result<(), EditError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        let options = CommitOptions::default()
            .with_time(stamp.at_ms.div_euclid(1000))
            .with_message(commit_message(&stamp.by, action));
        self.doc
            .transact_with(|_| options, f)
            .map(|_| ())
            .map_err(|failure| EditError::from(failure.error))
    }
}

/// The template changes of a kind's standard for one community, by template key.
///
/// Each is made on top of genesis by an actor of its own, at time 0: the same bytes on
/// every replica, so concurrent applications merge into one task, and the hub can
/// recognise a template change by its hash alone.
pub fn template_changes(
    community_id: &str,
    standard: &KindStandard,
) -> Result<Vec<(String, automerge::Change)>, EditError> {
    let genesis_doc = genesis(community_id);
    let genesis_heads = genesis_doc.get_heads();
    let tasks_in_genesis = match genesis_doc.get(ROOT, "tasks")? {
        Some((_, obj)) => obj,
        None => return Err(EditError::Automerge("genesis has no tasks map".into())),
    };
    let mut changes = Vec::new();
    for (star, template) in standard.template_tasks() {
        let mut fork = genesis_doc.clone();
        fork.set_actor(derived_actor(&["template", community_id, &template.key]));
        let options = CommitOptions::default()
            .with_time(0)
            .with_message(commit_message("template", &format!("template {}", template.key)));
        fork.transact_with(
            |_| options,
            |tx| -> Result<(), AutomergeError> {
                let obj = tx.put_object(&tasks_in_genesis, template.key.as_str(), ObjType::Map)?;
                write_task_fields(
                    tx,
                    &obj,
                    &star.key,
                    &template.title,
                    template.points,
                    template.veto,
                    &template.key,
                )?;
                tx.put(&obj, "owner", "")?;
                tx.put(&obj, "due", "")?;
                tx.put_object(&obj, "notes", ObjType::List)?;
                Ok(())
            },
        )
        .map_err(|failure| EditError::from(failure.error))?;
        for change in fork.get_changes(&genesis_heads) {
            changes.push((template.key.clone(), change));
        }
    }
    Ok(changes)
}

/// The hash of the deterministic first change of a community's document.
pub fn genesis_hash(community_id: &str) -> Vec<ChangeHash> {
    genesis(community_id).get_heads()
}

/// The deterministic first change of a community's document.
fn genesis(community_id: &str) -> Automerge {
    let mut doc = Automerge::new().with_actor(derived_actor(&["genesis", community_id]));
    let options =
        CommitOptions::default().with_time(0).with_message(commit_message("template", "genesis"));
    let result = doc.transact_with(
        |_| options,
        |tx| -> Result<(), AutomergeError> {
            tx.put(ROOT, "schema_version", SCHEMA_VERSION)?;
            tx.put(ROOT, "community_id", community_id)?;
            tx.put_object(ROOT, "tasks", ObjType::Map)?;
            Ok(())
        },
    );
    // Writing three fields into a fresh document cannot fail.
    debug_assert!(result.is_ok());
    doc
}

/// A 16-byte actor id derived from names, the same on every machine.
fn derived_actor(parts: &[&str]) -> ActorId {
    let mut hasher = Sha256::new();
    hasher.update(b"fivestar-actor-v1");
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    ActorId::from(&hasher.finalize()[..16])
}

fn commit_message(by: &str, action: &str) -> String {
    serde_json::to_string(&CommitNote { by: by.to_string(), action: action.to_string() })
        .unwrap_or_default()
}

fn write_task_fields(
    tx: &mut impl Transactable,
    obj: &ObjId,
    star: &str,
    title: &str,
    points: u32,
    veto: bool,
    template: &str,
) -> Result<(), AutomergeError> {
    tx.put(obj, "star", star)?;
    tx.put(obj, "title", title)?;
    tx.put(obj, "points", i64::from(points))?;
    tx.put(obj, "status", TaskStatus::Todo.as_str())?;
    tx.put(obj, "progress", 0_i64)?;
    tx.put(obj, "veto", veto)?;
    tx.put(obj, "template", template)?;
    Ok(())
}

fn insert_note(
    tx: &mut impl Transactable,
    notes: &ObjId,
    text: &str,
    stamp: &Stamp,
) -> Result<(), AutomergeError> {
    insert_note_with(tx, notes, text, None, stamp)
}

fn insert_note_with(
    tx: &mut impl Transactable,
    notes: &ObjId,
    text: &str,
    file: Option<&FileRef>,
    stamp: &Stamp,
) -> Result<(), AutomergeError> {
    let at = tx.length(notes);
    let note = tx.insert_object(notes, at, ObjType::Map)?;
    tx.put(&note, "text", text)?;
    tx.put(&note, "by", stamp.by.as_str())?;
    tx.put(&note, "at", ScalarValue::Timestamp(stamp.at_ms))?;
    if let Some(file) = file {
        tx.put(&note, "file_hash", file.hash.as_str())?;
        tx.put(&note, "file_name", file.name.as_str())?;
        tx.put(&note, "file_type", file.mime.as_str())?;
        tx.put(&note, "file_size", i64::try_from(file.size).unwrap_or(i64::MAX))?;
    }
    Ok(())
}

/// A scalar field's value as text, for showing concurrent values side by side.
fn scalar_text(value: &Value<'_>) -> String {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(text) => text.to_string(),
            ScalarValue::Int(n) => n.to_string(),
            ScalarValue::Uint(n) => n.to_string(),
            other => other.to_string(),
        },
        Value::Object(kind) => format!("({kind})"),
    }
}

fn due_text(due: Option<NaiveDate>) -> String {
    due.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn check_star(standard: &KindStandard, star: &str) -> Result<(), EditError> {
    if standard.star(star).is_some() {
        Ok(())
    } else {
        Err(EditError::UnknownStar {
            star: star.to_string(),
            known: standard.star_keys().join(", "),
        })
    }
}

fn check_points(points: u32) -> Result<(), EditError> {
    if (1..=STAR_POINTS).contains(&points) {
        Ok(())
    } else {
        Err(EditError::PointsOutOfRange { value: i64::from(points) })
    }
}

fn check_text(field: &'static str, text: &str, required: bool) -> Result<(), EditError> {
    if required && text.trim().is_empty() {
        return Err(EditError::BadText { field, problem: "must not be empty" });
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(EditError::BadText { field, problem: "is longer than 2000 characters" });
    }
    Ok(())
}

fn child_obj(doc: &Automerge, parent: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(parent, key) {
        Ok(Some((Value::Object(ObjType::Map), obj))) => Some(obj),
        _ => None,
    }
}

fn short_hex(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}

/// The slash-separated path a patch wrote, e.g. `tasks/t-1/progress`.
pub(crate) fn patch_path(patch: &automerge::Patch) -> String {
    let mut parts: Vec<String> = patch.path.iter().map(|(_, prop)| prop_text(prop)).collect();
    match &patch.action {
        automerge::PatchAction::PutMap { key, .. } => parts.push(key.clone()),
        automerge::PatchAction::DeleteMap { key } => parts.push(key.clone()),
        _ => {}
    }
    parts.join("/")
}

fn prop_text(prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => key.clone(),
        Prop::Seq(index) => index.to_string(),
    }
}

// ---------------------------------------------------------------- reading and validation

/// Reads every task; collects a [`Problem`] for each field that breaks the schema.
/// Tasks with a problem in a required field are left out of the returned list.
pub fn read_document(doc: &Automerge, community_id: &str) -> (Vec<Task>, Vec<Problem>) {
    let mut problems = Vec::new();
    let root = Fields::of(doc, &ROOT);
    match scalar(&root, "schema_version") {
        Some(ScalarValue::Int(SCHEMA_VERSION)) => {}
        Some(ScalarValue::Int(v)) => problems.push(problem(
            "schema_version",
            format!("{v} is not supported; this program reads version {SCHEMA_VERSION}"),
        )),
        other => problems.push(problem("schema_version", expected("an integer", other.as_ref()))),
    }
    match scalar(&root, "community_id") {
        Some(ScalarValue::Str(id)) if id.as_str() == community_id => {}
        Some(ScalarValue::Str(id)) => problems.push(problem(
            "community_id",
            format!("{:?} is not this community ({community_id:?})", id.as_str()),
        )),
        other => problems.push(problem("community_id", expected("a string", other.as_ref()))),
    }
    let mut tasks = Vec::new();
    match doc.get(ROOT, "tasks") {
        Ok(Some((Value::Object(ObjType::Map), tasks_obj))) => {
            for id in doc.keys(&tasks_obj).collect::<Vec<_>>() {
                if !is_key(&id) {
                    problems.push(problem(
                        &format!("tasks/{id}"),
                        "the id must be 1 to 40 characters of a-z, 0-9 and '-'".into(),
                    ));
                    continue;
                }
                match doc.get(&tasks_obj, id.as_str()) {
                    Ok(Some((Value::Object(ObjType::Map), obj))) => {
                        if let Some(task) = read_task(doc, &obj, &id, &mut problems) {
                            tasks.push(task);
                        }
                    }
                    _ => problems.push(problem(&format!("tasks/{id}"), "is not a map".into())),
                }
            }
        }
        _ => problems.push(problem("tasks", "is missing or not a map".into())),
    }
    for key in doc.keys(ROOT) {
        if !matches!(key.as_str(), "schema_version" | "community_id" | "tasks") {
            problems.push(problem(&key, "is not a field of the schema".into()));
        }
    }
    (tasks, problems)
}

/// Reads the named tasks exactly as [`read_document`] reads them: `None` for a task
/// that is missing or that [`read_document`] would leave out. With
/// [`crate::policy::Touched`] this rereads only what new changes wrote.
pub fn read_named_tasks<'a>(
    doc: &Automerge,
    ids: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'a str, Option<Task>)> {
    let tasks_obj = match doc.get(ROOT, "tasks") {
        Ok(Some((Value::Object(ObjType::Map), obj))) => Some(obj),
        _ => None,
    };
    let mut problems = Vec::new();
    ids.into_iter()
        .map(|id| {
            let task = tasks_obj.as_ref().filter(|_| is_key(id)).and_then(|tasks_obj| {
                match doc.get(tasks_obj, id) {
                    Ok(Some((Value::Object(ObjType::Map), obj))) => {
                        read_task(doc, &obj, id, &mut problems)
                    }
                    _ => None,
                }
            });
            (id, task)
        })
        .collect()
}

/// Checks a whole document against the schema and the community kind's stars.
/// An empty list means the document is valid.
pub fn validate(doc: &Automerge, community_id: &str, standard: &KindStandard) -> Vec<Problem> {
    let (tasks, mut problems) = read_document(doc, community_id);
    for task in &tasks {
        if standard.star(&task.star).is_none() {
            problems.push(problem(
                &format!("tasks/{}/star", task.id),
                format!(
                    "{:?} is not a star of this kind ({})",
                    task.star,
                    standard.star_keys().join(", ")
                ),
            ));
        }
    }
    problems
}

const TASK_FIELDS: &[&str] = &[
    "star", "title", "points", "status", "progress", "owner", "due", "veto", "template", "notes",
    "review",
];

const NOTE_FIELDS: &[&str] = &[
    "text",
    "by",
    "at",
    "withdrawn_by",
    "withdrawn_at",
    "file_hash",
    "file_name",
    "file_type",
    "file_size",
];

const REVIEW_FIELDS: &[&str] =
    &["verdict", "awarded", "comment", "reviewer", "at", "override", "seen"];

const SEEN_FIELDS: &[&str] =
    &["star", "points", "status", "progress", "title", "owner", "due", "notes", "withdrawn"];

/// Reads one task. A field outside the schema is reported and ignored; a required
/// field that cannot be read leaves the task out (reported, never guessed).
/// Rules that span fields written by different people (awarded against points, edits
/// after a review) are not problems here: they are decided when the task is scored.
fn read_task(doc: &Automerge, obj: &ObjId, id: &str, problems: &mut Vec<Problem>) -> Option<Task> {
    let at = |field: &str| format!("tasks/{id}/{field}");
    let f = Fields::of(doc, obj);
    f.report_unknown(TASK_FIELDS, &at, problems);
    let before = problems.len();
    let star = read_str(&f, "star", &at("star"), problems);
    let title = read_str(&f, "title", &at("title"), problems);
    let points = read_int(&f, "points", &at("points"), 1..=100, problems);
    let status = read_status(&f, "status", &at("status"), problems);
    let progress = read_int(&f, "progress", &at("progress"), 0..=100, problems);
    let owner = read_str(&f, "owner", &at("owner"), problems);
    let due = read_due(&f, "due", &at("due"), problems);
    let veto = match scalar(&f, "veto") {
        Some(ScalarValue::Boolean(b)) => Some(b),
        other => {
            problems.push(problem(&at("veto"), expected("true or false", other.as_ref())));
            None
        }
    };
    let template = read_str(&f, "template", &at("template"), problems);
    let notes = read_notes(doc, &f, id, problems);
    let review = match f.object("review") {
        None if !f.has("review") => Some(None),
        Some((ObjType::Map, r)) => read_review(doc, &r, id, problems).map(Some),
        _ => {
            problems.push(problem(&at("review"), "is not a map".into()));
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(Task {
        id: id.to_string(),
        star: star?,
        title: title?,
        points: points?,
        status: status?,
        progress: progress?,
        owner: owner?,
        due: due?,
        veto: veto?,
        template: template.filter(|t| !t.is_empty()),
        notes: notes?,
        review: review?,
    })
}

fn read_status(
    f: &Fields,
    key: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<TaskStatus> {
    let text = read_str(f, key, path, problems)?;
    match text.parse::<TaskStatus>() {
        Ok(status) => Some(status),
        Err(_) => {
            problems.push(problem(
                path,
                format!("{text:?} is not one of todo, doing, done, blocked, failed"),
            ));
            None
        }
    }
}

fn read_due(
    f: &Fields,
    key: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<NaiveDate>> {
    let text = read_str(f, key, path, problems)?;
    if text.is_empty() {
        return Some(None);
    }
    match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        Ok(date) => Some(Some(date)),
        Err(_) => {
            problems.push(problem(path, format!("{text:?} is not a date (YYYY-MM-DD)")));
            None
        }
    }
}

fn read_notes(
    doc: &Automerge,
    f: &Fields,
    id: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<Note>> {
    let notes_obj = match f.object("notes") {
        Some((ObjType::List, notes)) => notes,
        _ => {
            problems.push(problem(&format!("tasks/{id}/notes"), "is missing or not a list".into()));
            return None;
        }
    };
    let mut notes = Vec::new();
    let mut ok = true;
    // One pass over the list: reading a long list by index is quadratic.
    for item in doc.list_range(&notes_obj, ..) {
        let index = item.index;
        let at = |field: &str| format!("tasks/{id}/notes/{index}/{field}");
        match item.value {
            automerge::ValueRef::Object(ObjType::Map) => {
                let nf = Fields::of(doc, &item.id());
                nf.report_unknown(NOTE_FIELDS, &at, problems);
                let before = problems.len();
                let text = read_str(&nf, "text", &at("text"), problems);
                let by = read_str(&nf, "by", &at("by"), problems);
                let at_ms = read_timestamp(&nf, "at", &at("at"), problems);
                let withdrawn = match (scalar(&nf, "withdrawn_by"), scalar(&nf, "withdrawn_at")) {
                    (None, None) => None,
                    (Some(ScalarValue::Str(by)), Some(ScalarValue::Timestamp(at_ms))) => {
                        Some(Withdrawal { by: by.to_string(), at_ms })
                    }
                    _ => {
                        // Half a withdrawal (never written by this program) still withdraws.
                        problems.push(problem(
                            &at("withdrawn_at"),
                            "is incomplete; the note counts as withdrawn".into(),
                        ));
                        Some(Withdrawal { by: String::new(), at_ms: 0 })
                    }
                };
                let before_file = problems.len();
                let file = match (
                    scalar(&nf, "file_hash"),
                    scalar(&nf, "file_name"),
                    scalar(&nf, "file_type"),
                    scalar(&nf, "file_size"),
                ) {
                    (None, None, None, None) => None,
                    (
                        Some(ScalarValue::Str(hash)),
                        Some(ScalarValue::Str(name)),
                        Some(ScalarValue::Str(mime)),
                        Some(ScalarValue::Int(size)),
                    ) if size > 0 => Some(FileRef {
                        hash: hash.to_string(),
                        name: name.to_string(),
                        mime: mime.to_string(),
                        size: size as u64,
                    }),
                    _ => {
                        // The note stands; the file it names cannot be shown.
                        problems.push(problem(
                            &at("file_hash"),
                            "is an incomplete file reference; the note is shown without it".into(),
                        ));
                        None
                    }
                };
                match (text, by, at_ms) {
                    (Some(text), Some(by), Some(at_ms))
                        if before_file == before || withdrawn.is_some() =>
                    {
                        notes.push(Note { text, by, at_ms, withdrawn, file })
                    }
                    _ => ok = false,
                }
            }
            _ => {
                problems.push(problem(&format!("tasks/{id}/notes/{index}"), "is not a map".into()));
                ok = false;
            }
        }
    }
    ok.then_some(notes)
}

fn read_review(
    doc: &Automerge,
    obj: &ObjId,
    id: &str,
    problems: &mut Vec<Problem>,
) -> Option<Review> {
    let at = |field: &str| format!("tasks/{id}/review/{field}");
    let f = Fields::of(doc, obj);
    f.report_unknown(REVIEW_FIELDS, &at, problems);
    let before = problems.len();
    let verdict_word = read_str(&f, "verdict", &at("verdict"), problems);
    let awarded = match scalar(&f, "awarded") {
        None => None,
        Some(_) => read_int(&f, "awarded", &at("awarded"), 0..=100, problems),
    };
    let verdict = match verdict_word.as_deref() {
        Some("accepted") => Some(Verdict::Accepted { awarded }),
        // Points awarded with a rejection or a reopening mean nothing: ignored.
        Some("rejected") => Some(Verdict::Rejected),
        Some("reopened") => Some(Verdict::Reopened),
        Some(other) => {
            problems.push(problem(
                &at("verdict"),
                format!("{other:?} is not accepted, rejected or reopened"),
            ));
            None
        }
        None => None,
    };
    let comment = read_str(&f, "comment", &at("comment"), problems);
    let reviewer = read_str(&f, "reviewer", &at("reviewer"), problems);
    let at_ms = read_timestamp(&f, "at", &at("at"), problems);
    let overridden = matches!(scalar(&f, "override"), Some(ScalarValue::Boolean(true)));
    let seen = match f.object("seen") {
        None if !f.has("seen") => Some(None),
        Some((ObjType::Map, seen)) => read_seen(doc, &seen, id, problems).map(Some),
        _ => {
            problems.push(problem(&at("seen"), "is not a map".into()));
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(Review {
        verdict: verdict?,
        comment: comment?,
        reviewer: reviewer?,
        at_ms: at_ms?,
        overridden,
        seen: seen?,
    })
}

fn read_seen(doc: &Automerge, obj: &ObjId, id: &str, problems: &mut Vec<Problem>) -> Option<Seen> {
    let at = |field: &str| format!("tasks/{id}/review/seen/{field}");
    let f = Fields::of(doc, obj);
    f.report_unknown(SEEN_FIELDS, &at, problems);
    let star = read_str(&f, "star", &at("star"), problems);
    let points = read_int(&f, "points", &at("points"), 1..=100, problems);
    let status = read_status(&f, "status", &at("status"), problems);
    let progress = read_int(&f, "progress", &at("progress"), 0..=100, problems);
    let title = read_str(&f, "title", &at("title"), problems);
    let owner = read_str(&f, "owner", &at("owner"), problems);
    let due = read_due(&f, "due", &at("due"), problems);
    let notes = read_int(&f, "notes", &at("notes"), 0..=i64::from(u32::MAX), problems);
    let withdrawn = read_int(&f, "withdrawn", &at("withdrawn"), 0..=i64::from(u32::MAX), problems);
    Some(Seen {
        star: star?,
        points: points?,
        status: status?,
        progress: progress?,
        title: title?,
        owner: owner?,
        due: due?,
        notes: notes?,
        withdrawn: withdrawn?,
    })
}

/// One map's fields, read in one pass: a lookup per field costs a seek through the
/// object's history each time, which dominated reading a document with a year of edits.
struct Fields {
    values: std::collections::HashMap<String, Field>,
}

enum Field {
    Scalar(ScalarValue),
    Object(ObjType, ObjId),
}

impl Fields {
    fn of(doc: &Automerge, obj: &ObjId) -> Fields {
        let values = doc
            .map_range(obj, ..)
            .map(|item| {
                let field = match item.value {
                    automerge::ValueRef::Scalar(value) => Field::Scalar(ScalarValue::from(value)),
                    automerge::ValueRef::Object(kind) => Field::Object(kind, item.id()),
                };
                (item.key.into_owned(), field)
            })
            .collect();
        Fields { values }
    }

    /// Reports each field outside `schema` (it is ignored, never guessed at).
    fn report_unknown(
        &self,
        schema: &[&str],
        at: &dyn Fn(&str) -> String,
        problems: &mut Vec<Problem>,
    ) {
        let mut unknown: Vec<&String> =
            self.values.keys().filter(|k| !schema.contains(&k.as_str())).collect();
        unknown.sort();
        for key in unknown {
            problems.push(problem(&at(key), "is not a field of the schema; ignored".into()));
        }
    }

    fn object(&self, key: &str) -> Option<(ObjType, ObjId)> {
        match self.values.get(key) {
            Some(Field::Object(kind, id)) => Some((*kind, id.clone())),
            _ => None,
        }
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }
}

fn scalar(f: &Fields, key: &str) -> Option<ScalarValue> {
    match f.values.get(key) {
        Some(Field::Scalar(value)) => Some(value.clone()),
        Some(Field::Object(..)) => Some(ScalarValue::Unknown { type_code: 255, bytes: vec![] }),
        None => None,
    }
}

fn read_str(f: &Fields, key: &str, path: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match scalar(f, key) {
        Some(ScalarValue::Str(s)) => {
            if s.chars().count() > MAX_TEXT_CHARS {
                problems.push(problem(path, format!("is longer than {MAX_TEXT_CHARS} characters")));
                None
            } else {
                Some(s.to_string())
            }
        }
        other => {
            problems.push(problem(path, expected("a string", other.as_ref())));
            None
        }
    }
}

fn read_int(
    f: &Fields,
    key: &str,
    path: &str,
    range: std::ops::RangeInclusive<i64>,
    problems: &mut Vec<Problem>,
) -> Option<u32> {
    let value = match scalar(f, key) {
        Some(ScalarValue::Int(v)) => v,
        Some(ScalarValue::Uint(v)) => i64::try_from(v).unwrap_or(i64::MAX),
        other => {
            problems.push(problem(path, expected("an integer", other.as_ref())));
            return None;
        }
    };
    if range.contains(&value) {
        u32::try_from(value).ok()
    } else {
        problems
            .push(problem(path, format!("{value} is not in {}..={}", range.start(), range.end())));
        None
    }
}

fn read_timestamp(f: &Fields, key: &str, path: &str, problems: &mut Vec<Problem>) -> Option<i64> {
    match scalar(f, key) {
        Some(ScalarValue::Timestamp(ms)) => Some(ms),
        other => {
            problems.push(problem(path, expected("a timestamp", other.as_ref())));
            None
        }
    }
}

fn problem(path: &str, message: String) -> Problem {
    Problem { path: path.to_string(), message }
}

fn expected(what: &str, found: Option<&ScalarValue>) -> String {
    match found {
        None => format!("is missing; expected {what}"),
        Some(ScalarValue::Unknown { type_code: 255, .. }) => {
            format!("is an object; expected {what}")
        }
        Some(value) => format!("{value} is not {what}"),
    }
}
