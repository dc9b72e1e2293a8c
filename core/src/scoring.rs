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
    counted(task).earned
}

/// What one task counts for: the star and its earned points (from the verdict in
/// force, read once), and whether it breaches its veto.
struct Counted<'a> {
    star: &'a str,
    earned: u32,
    veto_breach: Option<&'static str>,
}

/// Star keys are a few bytes long: compared eight bytes at a time inline, not by
/// a call to `memcmp` per task.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
    a8.by_ref().zip(b8.by_ref()).all(|(x, y)| word(x) == word(y))
        && a8.remainder().iter().zip(b8.remainder()).all(|(x, y)| x == y)
}

fn counted(task: &Task) -> Counted<'_> {
    let verdict = task.verdict();
    let (star, points) = match verdict.and_then(|r| r.seen.as_ref()) {
        Some(seen) => (seen.star.as_str(), seen.points),
        None => (task.star.as_str(), task.points),
    };
    let (earned, rejected) = match verdict.map(|r| r.verdict) {
        Some(Verdict::Accepted { awarded }) => {
            (awarded.unwrap_or(points).min(points) * HUNDREDTHS, false)
        }
        Some(Verdict::Rejected) => (0, true),
        Some(Verdict::Reopened) | None => (task.points * task.effective_progress(), false),
    };
    let veto_breach = match (task.veto, rejected, task.status) {
        (false, _, _) => None,
        (true, true, _) => Some("rejected"),
        (true, false, TaskStatus::Failed) => Some("failed"),
        (true, false, _) => None,
    };
    Counted { star, earned, veto_breach }
}

/// Scores many communities: `score(standard, tasks)` of each, in the given order.
/// With thousands of them the work is spread over the cores this process may use
/// (a community per task list, nothing shared but the standard); the result is the
/// same on any number of cores. A thread that cannot be started leaves its part to
/// the caller's thread.
pub fn score_many(work: &[(&KindStandard, &[Task])]) -> Vec<CommunityScore> {
    /// Below this many communities per thread, starting a thread costs more than
    /// it saves.
    const AT_LEAST_PER_THREAD: usize = 2048;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = cores.min(work.len() / AT_LEAST_PER_THREAD).max(1);
    let run = |part: &[(&KindStandard, &[Task])]| -> Vec<CommunityScore> {
        part.iter().map(|(standard, tasks)| score(standard, tasks)).collect()
    };
    if threads == 1 {
        return run(work);
    }
    let mut parts = work.chunks(work.len().div_ceil(threads));
    let first = parts.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = parts
            .map(|part| {
                std::thread::Builder::new()
                    .name("score".into())
                    .spawn_scoped(scope, move || run(part))
                    .map_err(|_| part)
            })
            .collect();
        let mut scores = run(first);
        for other in others {
            match other {
                Ok(thread) => match thread.join() {
                    Ok(part) => scores.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(part) => scores.extend(run(part)),
            }
        }
        scores
    })
}

/// Scores a community's tasks against the stars of its kind.
pub fn score(standard: &KindStandard, tasks: &[Task]) -> CommunityScore {
    let mut stars: Vec<StarScore> = standard
        .stars
        .iter()
        .zip(standard.shared_keys())
        .map(|(star, key)| StarScore {
            key: key.clone(),
            score: 0,
            uncapped: 0,
            pass_mark: star.pass_mark * HUNDREDTHS,
            earned: false,
            lacks: Vec::new(),
        })
        .collect();
    // One pass over the tasks: each is counted under the star it counts for. A
    // breached veto goes straight into its star's lacks (rare, sorted below).
    let mut ignored_tasks = Vec::new();
    // Tasks mostly come star by star: the last star found is tried first.
    let mut last = 0;
    for task in tasks {
        let counted = counted(task);
        let found = if standard.stars.get(last).is_some_and(|s| same_key(&s.key, counted.star)) {
            Some(last)
        } else {
            standard.stars.iter().position(|s| same_key(&s.key, counted.star))
        };
        let Some(i) = found else {
            ignored_tasks.push(task.id.clone());
            continue;
        };
        last = i;
        let star = &mut stars[i];
        star.uncapped += counted.earned;
        if let Some(reason) = counted.veto_breach {
            star.lacks.push(Lack::Veto { task: task.id.clone(), reason: reason.to_string() });
        }
    }
    for star in &mut stars {
        star.score = star.uncapped.min(STAR_POINTS * HUNDREDTHS);
        // Sorted so the result does not depend on task order; the points come first.
        star.lacks.sort_unstable_by(|a, b| match (a, b) {
            (Lack::Veto { task: t1, reason: r1 }, Lack::Veto { task: t2, reason: r2 }) => {
                (t1, r1).cmp(&(t2, r2))
            }
            _ => std::cmp::Ordering::Equal,
        });
        if star.score < star.pass_mark {
            let points = Lack::Points { missing: star.pass_mark - star.score };
            if star.lacks.is_empty() {
                // Sized for the usual case, one lack.
                star.lacks = vec![points];
            } else {
                star.lacks.insert(0, points);
            }
        }
        star.earned = star.lacks.is_empty();
    }
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
