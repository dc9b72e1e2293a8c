//! The community document: deterministic start, typed edits, refusals that change
//! nothing, history, and the validator on broken documents.

use automerge::transaction::Transactable;
use automerge::{ActorId, ObjType, ROOT, ReadDoc, ScalarValue};
use chrono::NaiveDate;

use crate::document::{NewTask, validate};
use crate::{
    CommunityDoc, EditError, Kind, Review, Stamp, Standard, TaskEdit, TaskStatus, Verdict,
};

fn stamp(by: &str) -> Stamp {
    Stamp { by: by.to_string(), at_ms: 1_780_000_000_000 }
}

fn device(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

fn urban() -> crate::KindStandard {
    Standard::sample().kind(Kind::Urban).clone()
}

fn new_task(id: &str) -> NewTask {
    NewTask {
        id: id.to_string(),
        star: "safety".into(),
        title: "消防通道清理".into(),
        points: 10,
        owner: "李红".into(),
        due: NaiveDate::from_ymd_opt(2026, 12, 31),
        note: Some("已联系物业".into()),
    }
}

#[test]
fn every_replica_starts_from_the_same_genesis() {
    let a = CommunityDoc::new("fuhou", device(1));
    let b = CommunityDoc::new("fuhou", device(2));
    assert_eq!(a.heads(), b.heads());
    assert_ne!(a.heads(), CommunityDoc::new("yuyuan", device(1)).heads());
    assert_eq!(a.tasks().unwrap(), vec![]);
}

#[test]
fn template_applied_on_two_devices_offline_merges_into_one_set_of_tasks() {
    let standard = urban();
    let mut a = CommunityDoc::new("fuhou", device(1));
    let mut b = CommunityDoc::new("fuhou", device(2));
    let created = a.apply_template(&standard).unwrap();
    assert_eq!(created.len(), standard.template_tasks().count());
    b.apply_template(&standard).unwrap();
    assert_eq!(a.heads(), b.heads(), "identical template changes have identical hashes");
    a.automerge_mut().merge(b.automerge_mut()).unwrap();
    assert_eq!(a.tasks().unwrap().len(), standard.template_tasks().count());
    // Applying again creates nothing and changes nothing.
    let heads = a.heads();
    assert_eq!(a.apply_template(&standard).unwrap(), Vec::<String>::new());
    assert_eq!(a.heads(), heads);
}

#[test]
fn edits_made_inside_template_tasks_on_two_devices_all_survive_the_merge() {
    let standard = urban();
    let mut a = CommunityDoc::new("fuhou", device(1));
    let mut b = CommunityDoc::new("fuhou", device(2));
    a.apply_template(&standard).unwrap();
    b.apply_template(&standard).unwrap();
    let edit = |p| TaskEdit { progress: Some(p), ..TaskEdit::default() };
    a.edit_task(&standard, "u-safety-grid", &edit(60), &stamp("device a")).unwrap();
    b.add_note("u-safety-grid", "网格员名单已公示", &stamp("device b")).unwrap();
    b.edit_task(&standard, "u-branch-team", &edit(100), &stamp("device b")).unwrap();
    let mut merged = a.clone();
    merged.automerge_mut().merge(b.automerge_mut()).unwrap();
    let grid = merged.task("u-safety-grid").unwrap();
    assert_eq!(grid.progress, 60);
    assert_eq!(grid.status, TaskStatus::Doing);
    assert_eq!(grid.notes.len(), 1);
    assert_eq!(grid.notes[0].by, "device b");
    assert_eq!(merged.task("u-branch-team").unwrap().status, TaskStatus::Done);
}

#[test]
fn add_edit_note_and_review_round_trip() {
    let standard = urban();
    let mut doc = CommunityDoc::new("fuhou", device(1));
    doc.add_task(&standard, new_task("t-0001"), &stamp("device d1")).unwrap();
    let t = doc.task("t-0001").unwrap();
    assert_eq!((t.points, t.progress, t.status), (10, 0, TaskStatus::Todo));
    assert_eq!(t.due, NaiveDate::from_ymd_opt(2026, 12, 31));
    assert_eq!(t.notes[0].text, "已联系物业");
    doc.edit_task(
        &standard,
        "t-0001",
        &TaskEdit { status: Some(TaskStatus::Done), due: Some(None), ..TaskEdit::default() },
        &stamp("device d1"),
    )
    .unwrap();
    let t = doc.task("t-0001").unwrap();
    assert_eq!((t.status, t.progress, t.due), (TaskStatus::Done, 100, None));
    let review = Review {
        verdict: Verdict::Accepted { awarded: Some(8) },
        comment: "材料齐全".into(),
        reviewer: "王敏".into(),
        at_ms: 1,
        overridden: false,
        seen: None,
    };
    doc.set_review("t-0001", &review, &stamp("reviewer 王敏")).unwrap();
    let task = doc.task("t-0001").unwrap();
    let pinned = Review { seen: Some(task.seen()), ..review };
    assert_eq!(task.review, Some(pinned));
    assert!(!task.changed_since_review());
    assert!(validate(doc.automerge(), "fuhou", &standard).is_empty());
}

#[test]
fn refused_edits_change_nothing_and_say_why() {
    let standard = urban();
    let mut doc = CommunityDoc::new("fuhou", device(1));
    doc.add_task(&standard, new_task("t-0001"), &stamp("d1")).unwrap();
    let heads = doc.heads();
    let cases: Vec<(Result<(), EditError>, &str)> = vec![
        (
            doc.clone().edit_task(
                &standard,
                "t-9999",
                &TaskEdit { progress: Some(5), ..TaskEdit::default() },
                &stamp("d1"),
            ),
            "there is no task \"t-9999\" in community fuhou",
        ),
        (
            doc.clone().edit_task(
                &standard,
                "t-0001",
                &TaskEdit { progress: Some(150), ..TaskEdit::default() },
                &stamp("d1"),
            ),
            "progress 150 is not in 0..=100",
        ),
        (
            doc.clone().edit_task(
                &standard,
                "t-0001",
                &TaskEdit { star: Some("industry".into()), ..TaskEdit::default() },
                &stamp("d1"),
            ),
            "unknown star \"industry\": this community's stars are branch, cobuild, safety, harmony, business",
        ),
        (
            doc.clone().add_task(
                &standard,
                NewTask { points: 0, ..new_task("t-0002") },
                &stamp("d1"),
            ),
            "points 0 is not in 1..=100",
        ),
        (
            doc.clone().add_task(&standard, new_task("t-0001"), &stamp("d1")),
            "a task with id \"t-0001\" exists already",
        ),
        (
            doc.clone().add_task(
                &standard,
                NewTask { title: "  ".into(), ..new_task("t-0003") },
                &stamp("d1"),
            ),
            "title must not be empty",
        ),
        (
            doc.clone().set_review(
                "t-0001",
                &Review {
                    verdict: Verdict::Accepted { awarded: Some(11) },
                    comment: String::new(),
                    reviewer: "王".into(),
                    at_ms: 0,
                    overridden: true,
                    seen: None,
                },
                &stamp("r"),
            ),
            "awarded points 11 are more than the task's 10 points",
        ),
    ];
    for (result, message) in cases {
        assert_eq!(result.unwrap_err().to_string(), message);
    }
    // Each case ran on a clone; the real thing is where it was, and a failed edit on
    // the real document leaves its heads alone too.
    assert!(doc.add_note("t-0001", "", &stamp("d1")).is_err());
    assert_eq!(doc.heads(), heads);
}

#[test]
fn an_edit_that_changes_nothing_commits_nothing() {
    let standard = urban();
    let mut doc = CommunityDoc::new("fuhou", device(1));
    doc.add_task(&standard, new_task("t-0001"), &stamp("d1")).unwrap();
    let heads = doc.heads();
    doc.edit_task(
        &standard,
        "t-0001",
        &TaskEdit { owner: Some("李红".into()), ..TaskEdit::default() },
        &stamp("d1"),
    )
    .unwrap();
    assert_eq!(doc.heads(), heads);
}

#[test]
fn history_names_who_changed_what() {
    let standard = urban();
    let mut doc = CommunityDoc::new("fuhou", device(1));
    doc.add_task(&standard, new_task("t-0001"), &stamp("device d1")).unwrap();
    doc.add_task(&standard, new_task("t-0002"), &stamp("device d1")).unwrap();
    doc.edit_task(
        &standard,
        "t-0001",
        &TaskEdit { progress: Some(30), ..TaskEdit::default() },
        &stamp("device d2"),
    )
    .unwrap();
    let all = doc.history(None);
    assert_eq!(all.len(), 4, "genesis and three edits: {all:#?}");
    let mine = doc.history(Some("t-0001"));
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[1].by, "device d2");
    assert_eq!(mine[1].action, "edit status,progress");
    assert_eq!(mine[1].paths, vec!["tasks/t-0001/progress", "tasks/t-0001/status"]);
    assert_eq!(mine[1].at_seconds, 1_780_000_000);
}

/// A valid document with one task, whose raw fields the test then breaks.
fn raw_doc() -> (automerge::Automerge, automerge::ObjId) {
    let mut doc = CommunityDoc::new("fuhou", device(1));
    doc.add_task(&urban(), new_task("t-0001"), &stamp("d1")).unwrap();
    let mut raw = doc.automerge().clone();
    let tasks = raw.get(ROOT, "tasks").unwrap().unwrap().1;
    let task = raw.get(&tasks, "t-0001").unwrap().unwrap().1;
    let _ = &mut raw;
    (raw, task)
}

fn problems_after(
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>, &automerge::ObjId),
) -> Vec<String> {
    let (mut raw, task) = raw_doc();
    let mut tx = raw.transaction();
    f(&mut tx, &task);
    tx.commit();
    validate(&raw, "fuhou", &urban()).iter().map(|p| p.to_string()).collect()
}

/// A way to break a raw document: gets the transaction and the task's object.
type Breakage = Box<dyn FnOnce(&mut automerge::transaction::Transaction<'_>, &automerge::ObjId)>;

#[test]
fn validator_reports_each_problem_with_its_path() {
    let cases: Vec<(Breakage, &str)> = vec![
        (
            Box::new(|tx, t| {
                tx.put(t, "progress", 150_i64).unwrap();
            }),
            "tasks/t-0001/progress: 150 is not in 0..=100",
        ),
        (
            Box::new(|tx, t| {
                tx.put(t, "points", 0_i64).unwrap();
            }),
            "tasks/t-0001/points: 0 is not in 1..=100",
        ),
        (
            Box::new(|tx, t| {
                tx.put(t, "progress", "half").unwrap();
            }),
            "tasks/t-0001/progress: \"half\" is not an integer",
        ),
        (
            Box::new(|tx, t| {
                tx.put(t, "status", "finished").unwrap();
            }),
            "tasks/t-0001/status: \"finished\" is not one of todo, doing, done, blocked, failed",
        ),
        (
            Box::new(|tx, t| {
                tx.put(t, "star", "industry").unwrap();
            }),
            "tasks/t-0001/star: \"industry\" is not a star of this kind (branch, cobuild, safety, harmony, business)",
        ),
        (
            Box::new(|tx, t| {
                tx.put(t, "due", "31/12/2026").unwrap();
            }),
            "tasks/t-0001/due: \"31/12/2026\" is not a date (YYYY-MM-DD)",
        ),
        (
            Box::new(|tx, t| {
                tx.delete(t, "owner").unwrap();
            }),
            "tasks/t-0001/owner: is missing; expected a string",
        ),
        (
            Box::new(|tx, t| {
                tx.put(t, "colour", "red").unwrap();
            }),
            "tasks/t-0001/colour: is not a field of the schema; ignored",
        ),
        (
            Box::new(|tx, t| {
                tx.put_object(t, "title", ObjType::Map).unwrap();
            }),
            "tasks/t-0001/title: is an object; expected a string",
        ),
        (
            Box::new(|tx, t| {
                let r = tx.put_object(t, "review", ObjType::Map).unwrap();
                tx.put(&r, "verdict", "maybe").unwrap();
                tx.put(&r, "comment", "").unwrap();
                tx.put(&r, "reviewer", "x").unwrap();
                tx.put(&r, "at", ScalarValue::Timestamp(0)).unwrap();
            }),
            "tasks/t-0001/review/verdict: \"maybe\" is not accepted, rejected or reopened",
        ),
        (
            Box::new(|tx, _| {
                tx.put(ROOT, "schema_version", 2_i64).unwrap();
            }),
            "schema_version: 2 is not supported; this program reads version 1",
        ),
        (
            Box::new(|tx, _| {
                tx.put(ROOT, "community_id", "yuyuan").unwrap();
            }),
            "community_id: \"yuyuan\" is not this community (\"fuhou\")",
        ),
        (
            Box::new(|tx, _| {
                tx.put(ROOT, "tasks", 3_i64).unwrap();
            }),
            "tasks: is missing or not a map",
        ),
    ];
    for (break_it, expected) in cases {
        let problems = problems_after(break_it);
        assert!(problems.iter().any(|p| p == expected), "expected {expected:?} in {problems:#?}");
    }
}

/// Awarded points above the task's own points is a rule across two writers (the
/// district awarded, the community changed its points): decided when scoring,
/// never a problem that makes the task unreadable.
#[test]
fn awarded_above_the_tasks_points_is_read_and_capped_not_refused() {
    let (mut raw, task) = raw_doc();
    let mut tx = raw.transaction();
    let r = tx.put_object(&task, "review", ObjType::Map).unwrap();
    tx.put(&r, "verdict", "accepted").unwrap();
    tx.put(&r, "awarded", 40_i64).unwrap();
    tx.put(&r, "comment", "").unwrap();
    tx.put(&r, "reviewer", "x").unwrap();
    tx.put(&r, "at", ScalarValue::Timestamp(0)).unwrap();
    tx.commit();
    assert_eq!(validate(&raw, "fuhou", &urban()), vec![]);
    let doc = CommunityDoc::from_automerge("fuhou", raw, device(1));
    let read = doc.task("t-0001").unwrap();
    assert_eq!(read.points, 10);
    assert_eq!(crate::earned_hundredths(&read), 1000, "capped at the task's 10 points");
}

#[test]
fn validator_reports_every_problem_not_just_the_first() {
    let problems = problems_after(|tx, t| {
        tx.put(t, "progress", -1_i64).unwrap();
        tx.put(t, "points", 101_i64).unwrap();
    });
    assert_eq!(
        problems,
        vec![
            "tasks/t-0001/points: 101 is not in 1..=100",
            "tasks/t-0001/progress: -1 is not in 0..=100"
        ]
    );
}

/// Migration: a review written before version 2 (no pins, no override) reads, scores
/// as before with the task's own star and points, and is never "changed since review".
#[test]
fn a_version_one_review_scores_as_before() {
    let (mut raw, task) = raw_doc();
    let mut tx = raw.transaction();
    tx.put(&task, "status", "done").unwrap();
    tx.put(&task, "progress", 100_i64).unwrap();
    let r = tx.put_object(&task, "review", ObjType::Map).unwrap();
    tx.put(&r, "verdict", "accepted").unwrap();
    tx.put(&r, "awarded", 8_i64).unwrap();
    tx.put(&r, "comment", "").unwrap();
    tx.put(&r, "reviewer", "王敏").unwrap();
    tx.put(&r, "at", ScalarValue::Timestamp(0)).unwrap();
    tx.commit();
    let mut doc = CommunityDoc::from_automerge("fuhou", raw, device(1));
    let read = doc.task("t-0001").unwrap();
    assert_eq!(read.review.as_ref().unwrap().seen, None);
    assert_eq!(crate::earned_hundredths(&read), 800);
    assert!(!read.changed_since_review());
    // A later edit by the community does not flag it either (nothing was pinned), and
    // the points it earns still follow the task's own (version 1 rule).
    let owner = TaskEdit { owner: Some("李".into()), ..TaskEdit::default() };
    doc.edit_task(&urban(), "t-0001", &owner, &stamp("d1")).unwrap();
    let read = doc.task("t-0001").unwrap();
    assert!(!read.changed_since_review());
    assert_eq!(crate::earned_hundredths(&read), 800);
}

#[test]
fn values_set_apart_are_shown_side_by_side_and_the_clerks_choice_wins_everywhere() {
    let standard = urban();
    let mut a = CommunityDoc::new("fuhou", device(1));
    a.apply_template(&standard).unwrap();
    let mut b = a.clone();
    b.automerge_mut().set_actor(device(2));
    let id = "u-safety-grid";
    let owner = |o: &str| TaskEdit { owner: Some(o.into()), ..TaskEdit::default() };
    a.edit_task(&standard, id, &owner("李红"), &stamp("device d1")).unwrap();
    b.edit_task(&standard, id, &owner("王强"), &stamp("device d2")).unwrap();
    let mut merged = a.clone();
    merged.automerge_mut().merge(b.automerge_mut()).unwrap();
    let conflicts = merged.conflicts(id).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].field, "owner");
    let shown = merged.task(id).unwrap().owner;
    assert_eq!(conflicts[0].values[0], shown, "the value shown now comes first");
    let mut values = conflicts[0].values.clone();
    values.sort();
    assert_eq!(values, vec!["李红".to_string(), "王强".to_string()]);
    // Choosing a value that is not among them is refused and changes nothing.
    let heads = merged.heads();
    assert!(matches!(
        merged.settle(&standard, id, "owner", "赵六", &stamp("李红")),
        Err(EditError::NoConflict { .. })
    ));
    assert_eq!(merged.heads(), heads);
    // Both choices settle it: the value shown now (written again) and the other one.
    for choice in ["李红", "王强"] {
        let mut settled = merged.clone();
        settled.settle(&standard, id, "owner", choice, &stamp("李红")).unwrap();
        assert_eq!(settled.conflicts(id).unwrap(), vec![]);
        assert_eq!(settled.task(id).unwrap().owner, choice);
        // The other replica, merging the choice, agrees.
        let mut other = b.clone();
        other.automerge_mut().merge(settled.automerge_mut()).unwrap();
        assert_eq!(other.task(id).unwrap().owner, choice);
        assert_eq!(other.conflicts(id).unwrap(), vec![]);
    }
}
