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

pub use document::{CommunityDoc, EditError, HistoryEntry, NewTask, Problem, Stamp, TaskEdit};
pub use policy::{Denied, Writer, authorize};
pub use ranking::{Freshness, RankEntry, Ranked, rank};
pub use registry::{Community, Registry, RegistryError, Subdistrict};
pub use scoring::{CommunityScore, Lack, StarScore, earned_hundredths, score};
pub use standard::{KindStandard, Standard, StandardError, Star, TemplateTask};
pub use standings::{Standing, TierSummary, Tiers, rank_changes, same_table, standings, tiers};

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
    /// The district's verdict, if it has reviewed the task.
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
}
