//! Scoring model v1 with the review rules of product rule version 2 (DOMAIN.md): one
//! pure function, in integer hundredths of a point.
//!
//! - earned points of a task: accepted → `min(awarded, points) × 100` (full points when
//!   no `awarded`); rejected → 0; not reviewed (or reopened) → `points × progress`
//!   (`done` counts as 100 % progress). A verdict counts with the star and points it
//!   pinned, whatever the community changed since; a version-1 review (no pins) with
//!   the task's own;
//! - star score: sum of its tasks' earned points, capped at 100 points;
//! - a star is earned when its score reaches its pass mark, none of its veto tasks
//!   is failed or rejected, and, for the capstone, every other star is earned;
//! - stars: how many are earned; total: sum of the five star scores.
//!
//! Laws the callers rely on: the result depends only on the *set* of tasks (sums
//! and `all`/`any` are order-free), so the order tasks are read in, and the order
//! replicas merged their changes in, cannot change a score. Integer arithmetic makes
//! every machine compute the same number.

use serde::Serialize;

use crate::standard::{KindStandard, STAR_POINTS};
use crate::{Task, TaskStatus, Verdict};

/// One hundred hundredths: a point.
pub const HUNDREDTHS: u32 = 100;

/// A community's scores against the stars of its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommunityScore {
    /// One entry per star of the kind, in the standard's order.
    pub stars: Vec<StarScore>,
    /// How many stars are earned (0..=5).
    pub stars_earned: u32,
    /// Sum of the star scores, hundredths of a point (0..=50000).
    pub total: u32,
    /// Tasks whose star is not one of the kind's: they count for nothing.
    pub ignored_tasks: Vec<String>,
}

/// The score of one star.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StarScore {
    /// The star's key.
    pub key: std::sync::Arc<str>,
    /// Score, hundredths of a point, capped at 10000.
    pub score: u32,
    /// The sum before the cap, to show what lies beyond 100.
    pub uncapped: u32,
    /// Pass mark, hundredths of a point.
    pub pass_mark: u32,
    /// Whether the star is earned.
    pub earned: bool,
    /// Why it is not earned yet; empty when earned.
    pub lacks: Vec<Lack>,
}

/// One reason a star is not earned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "lack", rename_all = "snake_case")]
pub enum Lack {
    /// The score is below the pass mark by this many hundredths of a point.
    Points {
        /// Hundredths of a point still missing.
        missing: u32,
    },
    /// A veto task failed or was rejected.
    Veto {
        /// The task's id.
        task: String,
        /// `failed` or `rejected`.
        reason: String,
    },
    /// The capstone star waits for these stars.
    Capstone {
        /// Keys of the other stars not yet earned.
        waiting_for: Vec<std::sync::Arc<str>>,
    },
}

impl std::fmt::Display for Lack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lack::Points { missing } => {
                write!(f, "{} more points to the pass mark", format_points(*missing))
            }
            Lack::Veto { task, reason } => write!(f, "veto task {task} is {reason}"),
            Lack::Capstone { waiting_for } => {
                write!(f, "needs every other star first: {}", waiting_for.join(", "))
            }
        }
    }
}

/// Formats hundredths of a point as points with two decimals, e.g. `72.50`.
pub fn format_points(hundredths: u32) -> String {
    format!("{}.{:02}", hundredths / HUNDREDTHS, hundredths % HUNDREDTHS)
}

/// Earned points of one task, in hundredths of a point.
pub fn earned_hundredths(task: &Task) -> u32 {
    let (_, points) = task.counted_star_and_points();
    match task.verdict().map(|r| r.verdict) {
        Some(Verdict::Accepted { awarded }) => awarded.unwrap_or(points).min(points) * HUNDREDTHS,
        Some(Verdict::Rejected) => 0,
        Some(Verdict::Reopened) | None => task.points * task.effective_progress(),
    }
}

fn veto_breach(task: &Task) -> Option<&'static str> {
    if !task.veto {
        return None;
    }
    if matches!(task.verdict().map(|r| r.verdict), Some(Verdict::Rejected)) {
        Some("rejected")
    } else if task.status == TaskStatus::Failed {
        Some("failed")
    } else {
        None
    }
}

/// Scores a community's tasks against the stars of its kind.
pub fn score(standard: &KindStandard, tasks: &[Task]) -> CommunityScore {
    // One pass over the tasks: each is counted under the star it counts for.
    let mut uncapped = vec![0u32; standard.stars.len()];
    let mut vetoes: Vec<Vec<(&str, &'static str)>> = vec![Vec::new(); standard.stars.len()];
    let mut ignored_tasks = Vec::new();
    for task in tasks {
        let star_key = task.counted_star_and_points().0;
        let Some(i) = standard.stars.iter().position(|s| s.key == star_key) else {
            ignored_tasks.push(task.id.clone());
            continue;
        };
        uncapped[i] += earned_hundredths(task);
        if let Some(reason) = veto_breach(task) {
            vetoes[i].push((task.id.as_str(), reason));
        }
    }
    let mut stars: Vec<StarScore> = standard
        .stars
        .iter()
        .zip(standard.shared_keys())
        .zip(uncapped)
        .zip(vetoes)
        .map(|(((star, key), uncapped), mut vetoes)| {
            let score = uncapped.min(STAR_POINTS * HUNDREDTHS);
            let pass_mark = star.pass_mark * HUNDREDTHS;
            let mut lacks = Vec::new();
            if score < pass_mark {
                lacks.push(Lack::Points { missing: pass_mark - score });
            }
            // Sorted so the result does not depend on task order.
            vetoes.sort_unstable();
            lacks.extend(vetoes.into_iter().map(|(task, reason)| Lack::Veto {
                task: task.to_string(),
                reason: reason.to_string(),
            }));
            StarScore {
                key: key.clone(),
                score,
                uncapped,
                pass_mark,
                earned: lacks.is_empty(),
                lacks,
            }
        })
        .collect();
    // The capstone is decided last, from the other stars' own verdicts.
    for (i, star) in standard.stars.iter().enumerate() {
        if !star.capstone {
            continue;
        }
        let waiting_for: Vec<std::sync::Arc<str>> = stars
            .iter()
            .enumerate()
            .filter(|(j, other)| *j != i && !other.earned)
            .map(|(_, other)| other.key.clone())
            .collect();
        if !waiting_for.is_empty() {
            stars[i].lacks.push(Lack::Capstone { waiting_for });
            stars[i].earned = false;
        }
    }
    ignored_tasks.sort();
    CommunityScore {
        stars_earned: stars.iter().filter(|s| s.earned).count() as u32,
        total: stars.iter().map(|s| s.score).sum(),
        stars,
        ignored_tasks,
    }
}
