//! Property tests: scores stay in bounds, and do not depend on task order or on
//! the order in which concurrent changes were merged.

use automerge::ActorId;
use proptest::prelude::*;

use super::task;
use crate::document::NewTask;
use crate::scoring::score;
use crate::{CommunityDoc, Kind, Review, Stamp, Standard, TaskEdit, TaskStatus, Verdict};

const STARS: [&str; 6] = ["branch", "cobuild", "safety", "harmony", "business", "not-a-star"];

fn any_status() -> impl Strategy<Value = TaskStatus> {
    prop::sample::select(TaskStatus::ALL.to_vec())
}

fn any_task() -> impl Strategy<Value = crate::Task> {
    (
        0..STARS.len(),
        1u32..=100,
        0u32..=100,
        any_status(),
        any::<bool>(),
        prop::option::of(prop_oneof![
            Just(Verdict::Rejected),
            prop::option::of(0u32..=100).prop_map(|awarded| Verdict::Accepted { awarded }),
        ]),
    )
        .prop_map(|(star, points, progress, status, veto, verdict)| {
            let mut t = task("t", STARS[star], points);
            t.progress = progress;
            t.status = status;
            t.veto = veto;
            t.review = verdict.map(|verdict| Review {
                verdict: match verdict {
                    Verdict::Accepted { awarded } => {
                        Verdict::Accepted { awarded: awarded.map(|a| a.min(points)) }
                    }
                    v => v,
                },
                comment: String::new(),
                reviewer: "r".into(),
                at_ms: 0,
            });
            t
        })
}

fn numbered(tasks: Vec<crate::Task>) -> Vec<crate::Task> {
    tasks
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            t.id = format!("t-{i}");
            t
        })
        .collect()
}

proptest! {
    #[test]
    fn scores_stay_in_bounds(tasks in prop::collection::vec(any_task(), 0..40)) {
        let standard = Standard::sample();
        let result = score(standard.kind(Kind::Urban), &numbered(tasks));
        prop_assert_eq!(result.stars.len(), 5);
        for star in &result.stars {
            prop_assert!(star.score <= 10_000);
            prop_assert_eq!(star.score, star.uncapped.min(10_000));
            prop_assert_eq!(star.earned, star.lacks.is_empty());
            if star.earned {
                prop_assert!(star.score >= star.pass_mark);
            }
        }
        prop_assert!(result.total <= 50_000);
        prop_assert_eq!(result.total, result.stars.iter().map(|s| s.score).sum::<u32>());
        prop_assert_eq!(result.stars_earned as usize, result.stars.iter().filter(|s| s.earned).count());
    }

    #[test]
    fn score_does_not_depend_on_task_order(
        (tasks, shuffled) in prop::collection::vec(any_task(), 0..30)
            .prop_map(numbered)
            .prop_flat_map(|t| (Just(t.clone()), Just(t).prop_shuffle()))
    ) {
        let standard = Standard::sample();
        let kind = standard.kind(Kind::Urban);
        prop_assert_eq!(score(kind, &tasks), score(kind, &shuffled));
    }
}

/// An edit one device makes while offline.
#[derive(Debug, Clone)]
enum Edit {
    Progress(usize, u32),
    Status(usize, TaskStatus),
    Points(usize, u32),
    Note(usize),
    Add(usize, u32),
}

fn any_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..25usize, 0u32..=100).prop_map(|(t, p)| Edit::Progress(t, p)),
        (0..25usize, any_status()).prop_map(|(t, s)| Edit::Status(t, s)),
        (0..25usize, 1u32..=100).prop_map(|(t, p)| Edit::Points(t, p)),
        (0..25usize).prop_map(Edit::Note),
        (0..5usize, 1u32..=100).prop_map(|(s, p)| Edit::Add(s, p)),
    ]
}

fn replay(doc: &mut CommunityDoc, device: usize, edits: &[Edit]) {
    let standard = Standard::sample();
    let kind = standard.kind(Kind::Urban);
    let ids = doc.task_ids();
    let stamp = Stamp { by: format!("device {device}"), at_ms: 1_780_000_000_000 };
    for (n, edit) in edits.iter().enumerate() {
        let id = |i: usize| ids[i % ids.len()].clone();
        let result = match edit {
            Edit::Progress(t, p) => doc.edit_task(
                kind,
                &id(*t),
                &TaskEdit { progress: Some(*p), ..TaskEdit::default() },
                &stamp,
            ),
            Edit::Status(t, s) => doc.edit_task(
                kind,
                &id(*t),
                &TaskEdit { status: Some(*s), ..TaskEdit::default() },
                &stamp,
            ),
            Edit::Points(t, p) => doc.edit_task(
                kind,
                &id(*t),
                &TaskEdit { points: Some(*p), ..TaskEdit::default() },
                &stamp,
            ),
            Edit::Note(t) => doc.add_note(&id(*t), &format!("evidence {device}-{n}"), &stamp),
            Edit::Add(s, p) => doc.add_task(
                kind,
                NewTask {
                    id: format!("t-{device}-{n}"),
                    star: STARS[*s].into(),
                    title: "own task".into(),
                    points: *p,
                    owner: String::new(),
                    due: None,
                    note: None,
                },
                &stamp,
            ),
        };
        assert!(result.is_ok(), "{edit:?}: {result:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn merge_order_does_not_change_the_document_or_its_score(
        edits in prop::collection::vec(prop::collection::vec(any_edit(), 0..8), 3),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
    ) {
        let standard = Standard::sample();
        let kind = standard.kind(Kind::Urban);
        let mut base = CommunityDoc::new("fuhou", ActorId::from(vec![9; 16]));
        base.apply_template(kind).unwrap();
        let replicas: Vec<CommunityDoc> = edits
            .iter()
            .enumerate()
            .map(|(device, list)| {
                let mut doc = CommunityDoc::from_automerge(
                    "fuhou",
                    base.automerge().clone(),
                    ActorId::from(vec![device as u8 + 1; 16]),
                );
                replay(&mut doc, device, list);
                doc
            })
            .collect();
        let merge_in = |order: &[usize]| {
            let mut doc = replicas[order[0]].clone();
            for &i in &order[1..] {
                doc.automerge_mut().merge(&mut replicas[i].automerge().clone()).unwrap();
            }
            doc
        };
        let forward = merge_in(&[0, 1, 2]);
        let other = merge_in(&order);
        prop_assert_eq!(forward.heads(), other.heads());
        let (a, b) = (forward.tasks().unwrap(), other.tasks().unwrap());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(score(kind, &a), score(kind, &b));
        // Every note every device wrote is there.
        let notes: usize = a.iter().map(|t| t.notes.len()).sum();
        let written = edits.iter().flatten().filter(|e| matches!(e, Edit::Note(_))).count();
        prop_assert_eq!(notes, written);
    }
}
