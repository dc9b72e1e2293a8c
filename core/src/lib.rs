//! The pure domain of fivestar, shared by the community node and the district hub.
//!
//! Flow: a [`Standard`] (TOML) says which five stars a community [`Kind`] has and
//! which template tasks they start from; a [`Registry`] (TOML) lists the
//! subdistricts and communities. Each community's records live in one
//! [`CommunityDoc`], an Automerge document that every device and the hub merge.
//! [`scoring::score`] turns a standard and a community's tasks into per-star
//! scores; [`ranking::rank`] turns many scores into district and subdistrict ranks.
//!
//! Nothing in this crate opens a socket or a file or reads the clock: times come in
//! as arguments. That is what lets the node and the hub compute exactly the same
//! numbers, and what lets the tests check every rule directly.

pub mod district;
pub mod document;
pub mod media;
pub mod policy;
pub mod ranking;
pub mod registry;
pub mod scoring;
pub mod standard;
pub mod standings;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use document::{
    CommunityDoc, Conflict, EditError, HistoryEntry, NewTask, Problem, Stamp, TaskEdit,
};
pub use policy::{Policy, Refusal, Role, Touched, Writer};
pub use ranking::{Freshness, RankEntry, Ranked, rank};
pub use registry::{Community, Registry, RegistryError, Subdistrict};
pub use scoring::{CommunityScore, Lack, StarScore, earned_hundredths, score, score_many};
pub use standard::{KindStandard, Standard, StandardError, Star, TemplateTask};
pub use standings::{
    Standing, TierSummary, Tiers, by_registry, rank_changes, same_table, standings, tiers,
};

/// Which set of stars a community is rated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// 城市社区
    Urban,
    /// 涉农社区
    Agricultural,
}

impl Kind {
    /// Both kinds, in the order reports list them.
    pub const ALL: [Kind; 2] = [Kind::Urban, Kind::Agricultural];

    /// The word used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Urban => "urban",
            Kind::Agricultural => "agricultural",
        }
    }

    /// The Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            Kind::Urban => "城市社区",
            Kind::Agricultural => "涉农社区",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "urban" => Ok(Kind::Urban),
            "agricultural" => Ok(Kind::Agricultural),
            other => Err(format!("unknown community kind {other:?}: use urban or agricultural")),
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Not started.
    Todo,
    /// Under way.
    Doing,
    /// Finished; counts as 100 % progress.
    Done,
    /// Stuck on something outside the community's hands.
    Blocked,
    /// Could not be achieved. On a veto task this keeps the star from being earned.
    Failed,
}

impl TaskStatus {
    /// Every status, for help texts.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Todo,
        TaskStatus::Doing,
        TaskStatus::Done,
        TaskStatus::Blocked,
        TaskStatus::Failed,
    ];

    /// The word stored in the document and used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::Doing => "doing",
            TaskStatus::Done => "done",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            format!("unknown status {s:?}: use one of todo, doing, done, blocked, failed")
        })
    }
}

/// One creation task of a community, as read from its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Stable id: the template key for template tasks, `t-` and hex for the
    /// community's own.
    pub id: String,
    /// Key of the star the task counts for.
    pub star: String,
    /// What must be done.
    pub title: String,
    /// Integer points the task is worth (1..=100).
    pub points: u32,
    /// Where the task stands.
    pub status: TaskStatus,
    /// Percent complete, 0..=100. A `done` task counts as 100 whatever this says.
    pub progress: u32,
    /// Who is responsible (a person's name).
    pub owner: String,
    /// The deadline, if one was set.
    pub due: Option<chrono::NaiveDate>,
    /// A failed or rejected veto task keeps its star from being earned.
    pub veto: bool,
    /// The template task it came from, if any.
    pub template: Option<String>,
    /// Evidence notes, oldest first.
    pub notes: Vec<Note>,
    /// The district's latest verdict, if it has reviewed the task (a reopened
    /// review is kept here too: see [`Task::verdict`]).
    pub review: Option<Review>,
}

impl Task {
    /// Progress as the scoring model counts it: `done` means 100.
    pub fn effective_progress(&self) -> u32 {
        if self.status == TaskStatus::Done { 100 } else { self.progress.min(100) }
    }

    /// True when the due date has passed and the task is neither done nor failed.
    pub fn is_overdue(&self, today: chrono::NaiveDate) -> bool {
        matches!(self.due, Some(due) if due < today)
            && !matches!(self.status, TaskStatus::Done | TaskStatus::Failed)
    }

    /// The verdict in force: accepted or rejected. A reopened review is no verdict.
    pub fn verdict(&self) -> Option<&Review> {
        self.review.as_ref().filter(|r| !matches!(r.verdict, Verdict::Reopened))
    }

    /// True when the district accepted the task and has not reopened it: its
    /// score-affecting fields are locked on the node.
    pub fn is_accepted(&self) -> bool {
        matches!(self.verdict(), Some(Review { verdict: Verdict::Accepted { .. }, .. }))
    }

    /// What the task looks like to a reviewer now, to pin in a review.
    pub fn seen(&self) -> Seen {
        Seen {
            star: self.star.clone(),
            points: self.points,
            status: self.status,
            progress: self.progress,
            title: self.title.clone(),
            owner: self.owner.clone(),
            due: self.due,
            notes: u32::try_from(self.notes.len()).unwrap_or(u32::MAX),
            withdrawn: u32::try_from(self.notes.iter().filter(|n| n.withdrawn.is_some()).count())
                .unwrap_or(u32::MAX),
        }
    }

    /// Changed since review (DOMAIN.md, version 2): the community changed one of its
    /// fields or the notes after the verdict in force was given, so the task is back in
    /// its task force's queue. The verdict still stands. Decided from the values the
    /// review pinned, so every replica and every merge order agree. A review written
    /// before pins existed (version 1) cannot tell, and says no.
    pub fn changed_since_review(&self) -> bool {
        match self.verdict().and_then(|r| r.seen.as_ref()) {
            Some(seen) => *seen != self.seen(),
            None => false,
        }
    }

    /// The fields that differ from what the verdict in force saw, by name.
    pub fn changed_fields(&self) -> Vec<&'static str> {
        let Some(seen) = self.verdict().and_then(|r| r.seen.as_ref()) else {
            return Vec::new();
        };
        let now = self.seen();
        [
            ("star", seen.star != now.star),
            ("points", seen.points != now.points),
            ("status", seen.status != now.status),
            ("progress", seen.progress != now.progress),
            ("title", seen.title != now.title),
            ("owner", seen.owner != now.owner),
            ("due", seen.due != now.due),
            ("notes", seen.notes != now.notes || seen.withdrawn != now.withdrawn),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(field, _)| field)
        .collect()
    }

    /// The star and points the task counts with: the ones a verdict pinned, else its own.
    pub fn counted_star_and_points(&self) -> (&str, u32) {
        match self.verdict().and_then(|r| r.seen.as_ref()) {
            Some(seen) => (seen.star.as_str(), seen.points),
            None => (self.star.as_str(), self.points),
        }
    }
}

/// An evidence note on a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The evidence, in the clerk's words.
    pub text: String,
    /// Who wrote it (the device or reviewer that recorded it).
    pub by: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Set when the note was withdrawn: notes are never deleted or rewritten.
    pub withdrawn: Option<Withdrawal>,
    /// The file the note carries (a photo, a scan), kept outside the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// Who withdrew a note, and when.
/// A file attached to an evidence note: the document records what it is; the bytes
/// live beside the document, content-addressed by their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub hash: String,
    /// The file's name as attached (no folders).
    pub name: String,
    /// Its type, one of [`FILE_TYPES`].
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The file types evidence may be: photos, scans and office documents.
pub const FILE_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/heic",
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];

/// The largest file any writer may attach, bytes (a node's and the hub's own limits
/// may be lower).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

impl FileRef {
    /// Why this reference is not one a writer may record, if it is not.
    pub fn problem(&self) -> Option<String> {
        if self.hash.len() != 64
            || !self.hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Some("file_hash must be 64 lower-case hex digits (SHA-256)".into());
        }
        if self.name.trim().is_empty()
            || self.name.chars().count() > 200
            || self.name.contains(['/', '\\', '\0'])
        {
            return Some("file_name must be 1 to 200 characters, with no folder".into());
        }
        if !FILE_TYPES.contains(&self.mime.as_str()) {
            return Some(format!("file_type {:?} is not a type evidence may be", self.mime));
        }
        if self.size == 0 || self.size > MAX_FILE_BYTES {
            return Some(format!("file_size must be 1 to {MAX_FILE_BYTES} bytes"));
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// Who withdrew it.
    pub by: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// What a reviewer saw of a task when giving a verdict (DOMAIN.md version 2: a review
/// pins what it judged). Scoring uses the pinned star and points; any difference in
/// the rest marks the task "changed since review".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The task's star.
    pub star: String,
    /// Its points.
    pub points: u32,
    /// Its status.
    pub status: TaskStatus,
    /// Its progress.
    pub progress: u32,
    /// Its title.
    pub title: String,
    /// Its owner.
    pub owner: String,
    /// Its due date.
    pub due: Option<chrono::NaiveDate>,
    /// How many evidence notes it had.
    pub notes: u32,
    /// How many of them were withdrawn.
    pub withdrawn: u32,
}

/// The district's verdict on a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Accepted (with optional awarded points) or rejected.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The reviewer's comment.
    pub comment: String,
    /// Who reviewed it.
    pub reviewer: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// True when the reviewer accepted a task that was not done, on purpose.
    pub overridden: bool,
    /// What the reviewer saw; `None` for reviews written before version 2.
    pub seen: Option<Seen>,
}

/// A review verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Accepted. `awarded` (at most the task's points) replaces the full points.
    Accepted {
        /// Points awarded; `None` means the task's full points.
        awarded: Option<u32>,
    },
    /// Rejected: the task earns nothing, and a rejected veto task blocks its star.
    Rejected,
    /// An earlier verdict was cleared: the task counts as not reviewed and waits in
    /// its task force's queue again.
    Reopened,
}

impl Verdict {
    /// The word stored in the document.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Accepted { .. } => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::Reopened => "reopened",
        }
    }
}
