//! Property tests: scores stay in bounds, and do not depend on task order or on
//! the order in which concurrent changes were merged.

use std::collections::BTreeMap;

use automerge::ActorId;
use proptest::prelude::*;

use super::task;
use crate::document::{NewTask, read_named_tasks};
use crate::policy::{Policy, Role, Writer};
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
                overridden: false,
                seen: None,
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

/// One step of a campaign: an edit on one replica (devices 0..=2, the reviewer 3),
/// or a sync of one replica with the hub.
#[derive(Debug, Clone)]
enum Step {
    Progress(usize, usize, u32),
    Status(usize, usize, TaskStatus),
    Points(usize, usize, u32),
    Star(usize, usize, usize),
    Owner(usize, usize),
    Note(usize, usize),
    Withdraw(usize, usize),
    Add(usize, usize, u32),
    Accept(usize, Option<u32>, bool),
    Reject(usize),
    Reopen(usize),
    Sync(usize),
}

fn any_step() -> impl Strategy<Value = Step> {
    let device = 0..3usize;
    let task = 0..40usize;
    prop_oneof![
        (device.clone(), task.clone(), 0u32..=100).prop_map(|(d, t, p)| Step::Progress(d, t, p)),
        (device.clone(), task.clone(), any_status()).prop_map(|(d, t, s)| Step::Status(d, t, s)),
        (device.clone(), task.clone(), 1u32..=100).prop_map(|(d, t, p)| Step::Points(d, t, p)),
        (device.clone(), task.clone(), 0..5usize).prop_map(|(d, t, s)| Step::Star(d, t, s)),
        (device.clone(), task.clone()).prop_map(|(d, t)| Step::Owner(d, t)),
        (device.clone(), task.clone()).prop_map(|(d, t)| Step::Note(d, t)),
        (device.clone(), task.clone()).prop_map(|(d, t)| Step::Withdraw(d, t)),
        (device, 0..5usize, 1u32..=100).prop_map(|(d, s, p)| Step::Add(d, s, p)),
        (task.clone(), prop::option::of(0u32..=100), any::<bool>())
            .prop_map(|(t, a, o)| Step::Accept(t, a, o)),
        task.clone().prop_map(Step::Reject),
        task.prop_map(Step::Reopen),
        (0..4usize).prop_map(Step::Sync),
        (0..4usize).prop_map(Step::Sync),
    ]
}

fn writer(who: usize) -> Writer {
    if who == 3 {
        Writer::Reviewer { name: "王敏".into(), role: Role::Office }
    } else {
        Writer::Device { community: "fuhou".into(), device: format!("d{who}") }
    }
}

/// Runs one step; an edit the domain refuses (locked, the standard's field, not done)
/// is simply not made. Every edit made passes the writer's own check, as on a node.
fn run(
    step: &Step,
    replicas: &mut [CommunityDoc],
    hub: &mut CommunityDoc,
    policy: &Policy,
    n: usize,
) -> Result<(), TestCaseError> {
    let standard = Standard::sample();
    let kind = standard.kind(Kind::Urban);
    let who = match step {
        Step::Progress(d, ..) | Step::Status(d, ..) | Step::Points(d, ..) | Step::Star(d, ..) => *d,
        Step::Owner(d, _) | Step::Note(d, _) | Step::Withdraw(d, _) | Step::Add(d, ..) => *d,
        Step::Accept(..) | Step::Reject(_) | Step::Reopen(_) => 3,
        Step::Sync(who) => {
            // The hub judges what the replica brings by who delivers it.
            let mut merged = hub.clone();
            let before = merged.heads();
            merged
                .automerge_mut()
                .merge(&mut replicas[*who].automerge().clone())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let new = merged.automerge().get_changes(&before);
            let verdict = policy.check_touched(&writer(*who), merged.automerge(), &new);
            let touched = match verdict {
                Ok(touched) => touched,
                Err(refused) => {
                    return Err(TestCaseError::fail(format!(
                        "the hub refused what replica {who} saved: {refused}"
                    )));
                }
            };
            // What the check says was touched is all that reads differently: the old
            // tasks with only the touched ones reread are the merged document's tasks.
            if !touched.everything {
                let by_id = |tasks: Vec<crate::Task>| -> BTreeMap<String, crate::Task> {
                    tasks.into_iter().map(|t| (t.id.clone(), t)).collect()
                };
                let mut patched = by_id(hub.read().0);
                let reread =
                    read_named_tasks(merged.automerge(), touched.tasks.iter().map(String::as_str));
                for (id, task) in reread {
                    match task {
                        Some(task) => patched.insert(id.to_string(), task),
                        None => patched.remove(id),
                    };
                }
                prop_assert_eq!(patched, by_id(merged.read().0));
            }
            *hub = merged;
            replicas[*who]
                .automerge_mut()
                .merge(&mut hub.automerge().clone())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            return Ok(());
        }
    };
    let doc = &mut replicas[who];
    let ids = doc.task_ids();
    let id = |i: usize| ids[i % ids.len()].clone();
    let stamp = Stamp { by: format!("replica {who}"), at_ms: 1_780_000_000_000 + n as i64 };
    let before = doc.heads();
    let edit = |progress, status, points, star: Option<&str>, owner: Option<String>| TaskEdit {
        progress,
        status,
        points,
        star: star.map(str::to_string),
        owner,
        ..TaskEdit::default()
    };
    let _ = match step {
        Step::Progress(_, t, p) => {
            doc.edit_task(kind, &id(*t), &edit(Some(*p), None, None, None, None), &stamp)
        }
        Step::Status(_, t, s) => {
            doc.edit_task(kind, &id(*t), &edit(None, Some(*s), None, None, None), &stamp)
        }
        Step::Points(_, t, p) => {
            doc.edit_task(kind, &id(*t), &edit(None, None, Some(*p), None, None), &stamp)
        }
        Step::Star(_, t, s) => {
            doc.edit_task(kind, &id(*t), &edit(None, None, None, Some(STARS[*s]), None), &stamp)
        }
        Step::Owner(_, t) => doc.edit_task(
            kind,
            &id(*t),
            &edit(None, None, None, None, Some(format!("owner {n}"))),
            &stamp,
        ),
        Step::Note(_, t) => doc.add_note(&id(*t), &format!("evidence {who}-{n}"), &stamp),
        Step::Withdraw(_, t) => doc.withdraw_note(&id(*t), 1, &stamp),
        Step::Add(_, s, p) => doc.add_task(
            kind,
            NewTask {
                id: format!("t-{who}-{n}"),
                star: STARS[*s].into(),
                title: "own task".into(),
                points: *p,
                owner: String::new(),
                due: None,
                note: None,
            },
            &stamp,
        ),
        Step::Accept(t, awarded, overridden) => {
            let review = Review {
                verdict: Verdict::Accepted { awarded: *awarded },
                comment: String::new(),
                reviewer: "王敏".into(),
                at_ms: stamp.at_ms,
                overridden: *overridden,
                seen: None,
            };
            doc.set_review(&id(*t), &review, &stamp)
        }
        Step::Reject(t) => {
            let review = Review {
                verdict: Verdict::Rejected,
                comment: "材料不全".into(),
                reviewer: "王敏".into(),
                at_ms: stamp.at_ms,
                overridden: false,
                seen: None,
            };
            doc.set_review(&id(*t), &review, &stamp)
        }
        Step::Reopen(t) => {
            let review = Review {
                verdict: Verdict::Reopened,
                comment: "重新审核".into(),
                reviewer: "王敏".into(),
                at_ms: stamp.at_ms,
                overridden: false,
                seen: None,
            };
            doc.set_review(&id(*t), &review, &stamp)
        }
        Step::Sync(_) => unreachable!("handled above"),
    };
    let new = doc.automerge().get_changes(&before);
    prop_assert_eq!(
        policy.check(&writer(who), doc.automerge(), &new),
        Ok(()),
        "replica {} made a change its own check refuses: {:?}",
        who,
        step
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The first law: interleavings of allowed edits by three devices of a community
    /// and a reviewer, each on its own replica, synced through the hub in random
    /// orders, are never refused by the hub, always read and score cleanly, and every
    /// merge order gives the same document and the same score.
    #[test]
    fn allowed_edits_merged_in_any_order_are_accepted_and_scored_alike(
        steps in prop::collection::vec(any_step(), 0..60),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
    ) {
        let standard = Standard::sample();
        let kind = standard.kind(Kind::Urban);
        let policy = Policy::new("fuhou", kind).unwrap();
        let mut hub = CommunityDoc::new("fuhou", ActorId::from(vec![9; 16]));
        hub.apply_template(kind).unwrap();
        let mut replicas: Vec<CommunityDoc> = (0..4)
            .map(|i| CommunityDoc::from_automerge("fuhou", hub.automerge().clone(), ActorId::from(vec![i as u8 + 1; 16])))
            .collect();
        for (n, step) in steps.iter().enumerate() {
            run(step, &mut replicas, &mut hub, &policy, n)?;
        }
        // Merged directly in two orders: the same document and the same score.
        let merge_in = |order: &[usize]| {
            let mut doc = replicas[order[0]].clone();
            for &i in &order[1..] {
                doc.automerge_mut().merge(&mut replicas[i].automerge().clone()).unwrap();
            }
            doc
        };
        let forward = merge_in(&[0, 1, 2, 3]);
        let other = merge_in(&order);
        prop_assert_eq!(forward.heads(), other.heads());
        let (a, problems) = forward.read();
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(&a, &other.read().0);
        prop_assert_eq!(score(kind, &a), score(kind, &other.read().0));
        // Synced through the hub in a random order, twice: every replica converges and
        // the hub accepts everything.
        for _ in 0..2 {
            for &who in &order {
                run(&Step::Sync(who), &mut replicas, &mut hub, &policy, 0)?;
            }
        }
        prop_assert_eq!(hub.heads(), forward.heads());
        let (tasks, problems) = hub.read();
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(score(kind, &tasks), score(kind, &a));
        for replica in &replicas {
            prop_assert_eq!(replica.heads(), hub.heads());
        }
        // Every note every device wrote is there.
        let notes: usize = tasks.iter().map(|t| t.notes.len()).sum();
        let written = steps.iter().filter(|s| matches!(s, Step::Note(..))).count();
        prop_assert_eq!(notes, written);
    }
}
