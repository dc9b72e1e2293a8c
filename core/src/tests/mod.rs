//! Unit tests of the pure core. Shared builders live here.

mod document;
mod policy;
mod properties;
mod ranking;
mod registry;
mod scoring;
mod standard;

use crate::{Review, Task, TaskStatus, Verdict};

/// A task of `star` worth `points`, not started, not reviewed.
pub(crate) fn task(id: &str, star: &str, points: u32) -> Task {
    Task {
        id: id.to_string(),
        star: star.to_string(),
        title: format!("task {id}"),
        points,
        status: TaskStatus::Todo,
        progress: 0,
        owner: String::new(),
        due: None,
        veto: false,
        template: None,
        notes: Vec::new(),
        review: None,
    }
}

pub(crate) fn with_progress(mut t: Task, progress: u32) -> Task {
    t.progress = progress;
    t.status = if progress == 100 { TaskStatus::Done } else { TaskStatus::Doing };
    t
}

pub(crate) fn reviewed(mut t: Task, verdict: Verdict) -> Task {
    t.review = Some(Review {
        verdict,
        comment: String::new(),
        reviewer: "district".to_string(),
        at_ms: 0,
        overridden: false,
        seen: None,
    });
    t
}
