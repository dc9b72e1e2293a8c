//! The write rules (DOMAIN.md version 2), one case per rule, and the forged changes
//! a hostile device or reviewer could hand-encode.

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ObjId, ROOT, ReadDoc, ScalarValue};

use crate::document::NewTask;
use crate::policy::{Policy, Refusal, Role, Writer, check_district};
use crate::{CommunityDoc, Kind, Review, Stamp, Standard, TaskEdit, TaskStatus, Verdict};

const COMMUNITY: &str = "fuhou";

fn device() -> Writer {
    Writer::Device { community: COMMUNITY.into(), device: "d1".into() }
}

fn office() -> Writer {
    Writer::Reviewer { name: "王敏".into(), role: Role::Office }
}

fn task_force(star: &str) -> Writer {
    Writer::Reviewer { name: "李强".into(), role: Role::TaskForce(star.into()) }
}

fn stamp() -> Stamp {
    Stamp { by: "x".into(), at_ms: 1 }
}

fn policy() -> Policy {
    Policy::new(COMMUNITY, Standard::sample().kind(Kind::Urban)).unwrap()
}

/// The community's document with the template applied and one own task, done.
fn base() -> CommunityDoc {
    let standard = Standard::sample();
    let kind = standard.kind(Kind::Urban);
    let mut doc = CommunityDoc::new(COMMUNITY, ActorId::from(vec![1; 16]));
    doc.apply_template(kind).unwrap();
    let task = NewTask {
        id: "t-0001".into(),
        star: "safety".into(),
        title: "巡逻".into(),
        points: 10,
        owner: String::new(),
        due: None,
        note: Some("巡逻记录".into()),
    };
    doc.add_task(kind, task, &stamp()).unwrap();
    let done = TaskEdit { status: Some(TaskStatus::Done), ..TaskEdit::default() };
    doc.edit_task(kind, "t-0001", &done, &stamp()).unwrap();
    doc
}

/// A replica of `doc` with another actor.
fn replica(doc: &CommunityDoc, actor: u8) -> CommunityDoc {
    CommunityDoc::from_automerge(COMMUNITY, doc.automerge().clone(), ActorId::from(vec![actor; 16]))
}

/// Applies `edit` on a replica of `doc` and checks what it added, as the hub would.
fn check(
    writer: &Writer,
    doc: &CommunityDoc,
    edit: impl FnOnce(&mut CommunityDoc),
) -> Result<(), Refusal> {
    let mut edited = replica(doc, 7);
    let before = edited.heads();
    edit(&mut edited);
    let new = edited.automerge().get_changes(&before);
    assert!(!new.is_empty(), "the edit must make a change");
    policy().check(writer, edited.automerge(), &new)
}

/// Merges forged changes into `doc` and checks them.
fn check_merged(writer: &Writer, doc: &CommunityDoc, changes: Vec<Change>) -> Result<(), Refusal> {
    let mut merged = doc.automerge().clone();
    let before = merged.get_heads();
    merged.apply_changes(changes).unwrap();
    let new = merged.get_changes(&before);
    assert!(!new.is_empty(), "the forged changes must be new");
    policy().check(writer, &merged, &new)
}

fn accept(doc: &mut CommunityDoc, id: &str) {
    let review = Review {
        verdict: Verdict::Accepted { awarded: None },
        comment: String::new(),
        reviewer: "王敏".into(),
        at_ms: 1,
        overridden: true,
        seen: None,
    };
    doc.set_review(id, &review, &stamp()).unwrap();
}

fn raw(
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>, &ObjId),
) -> impl FnOnce(&mut CommunityDoc) {
    move |doc| {
        let raw = doc.automerge_mut();
        let tasks = raw.get(ROOT, "tasks").unwrap().unwrap().1;
        let mut tx = raw.transaction();
        f(&mut tx, &tasks);
        tx.commit();
    }
}

fn task_obj(doc: &Automerge, id: &str) -> ObjId {
    let tasks = doc.get(ROOT, "tasks").unwrap().unwrap().1;
    doc.get(&tasks, id).unwrap().unwrap().1
}

fn denied(result: Result<(), Refusal>) -> String {
    match result {
        Err(Refusal::Denied { what, .. }) => what,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn malformed(result: Result<(), Refusal>) -> String {
    match result {
        Err(Refusal::Malformed { problem, .. }) => problem,
        other => panic!("expected a malformed change, got {other:?}"),
    }
}

fn invalid(result: Result<(), Refusal>) -> String {
    match result {
        Err(refusal @ Refusal::Invalid { .. }) => refusal.to_string(),
        other => panic!("expected an invalid value, got {other:?}"),
    }
}

// ------------------------------------------------------------------ what is allowed

type Edit<'a> = Box<dyn FnOnce(&mut CommunityDoc) + 'a>;

#[test]
fn a_device_may_do_everything_its_command_line_does() {
    let standard = Standard::sample();
    let kind = standard.kind(Kind::Urban);
    let doc = base();
    let edits: Vec<Edit> = vec![
        Box::new(|d| {
            let edit =
                TaskEdit {
                    progress: Some(40), owner: Some("张三".into()), ..TaskEdit::default()
                };
            d.edit_task(kind, "u-safety-grid", &edit, &stamp()).unwrap();
        }),
        Box::new(|d| {
            let edit = TaskEdit {
                star: Some("harmony".into()),
                points: Some(20),
                title: Some("夜间巡逻".into()),
                due: Some(Some(chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap())),
                ..TaskEdit::default()
            };
            d.edit_task(kind, "t-0001", &edit, &stamp()).unwrap();
        }),
        Box::new(|d| d.add_note("u-safety-grid", "网格图已上墙", &stamp()).unwrap()),
        Box::new(|d| d.withdraw_note("t-0001", 1, &stamp()).unwrap()),
        Box::new(|d| {
            let task = NewTask {
                id: "t-0002".into(),
                star: "branch".into(),
                title: "党员活动".into(),
                points: 5,
                owner: "李四".into(),
                due: None,
                note: Some("照片".into()),
            };
            d.add_task(kind, task, &stamp()).unwrap();
        }),
    ];
    for edit in edits {
        assert_eq!(check(&device(), &doc, edit), Ok(()));
    }
}

#[test]
fn template_changes_are_recognised_by_their_bytes() {
    let standard = Standard::sample();
    let mut fresh = CommunityDoc::new(COMMUNITY, ActorId::from(vec![3; 16]));
    let before = fresh.heads();
    fresh.apply_template(standard.kind(Kind::Urban)).unwrap();
    let new = fresh.automerge().get_changes(&before);
    assert_eq!(new.len(), standard.kind(Kind::Urban).template_tasks().count());
    assert_eq!(policy().check(&device(), fresh.automerge(), &new), Ok(()));
    // An earlier edition of the standard is accepted once the policy knows it.
    let mut older = standard.kind(Kind::Urban).clone();
    older.stars[0].tasks[0].points += 1;
    older.stars[0].tasks[1].points -= 1;
    let mut old_doc = CommunityDoc::new(COMMUNITY, ActorId::from(vec![3; 16]));
    let before = old_doc.heads();
    old_doc.apply_template(&older).unwrap();
    let new = old_doc.automerge().get_changes(&before);
    assert!(policy().check(&device(), old_doc.automerge(), &new).is_err());
    let mut both = policy();
    both.add_edition(&older).unwrap();
    assert_eq!(both.check(&device(), old_doc.automerge(), &new), Ok(()));
}

#[test]
fn reviewers_review_as_their_role_allows() {
    let doc = base();
    assert_eq!(check(&office(), &doc, |d| accept(d, "t-0001")), Ok(()));
    assert_eq!(check(&task_force("safety"), &doc, |d| accept(d, "t-0001")), Ok(()));
    assert_eq!(
        denied(check(&task_force("branch"), &doc, |d| accept(d, "t-0001"))),
        "review tasks/t-0001/review"
    );
    let mut reviewed = replica(&doc, 5);
    accept(&mut reviewed, "t-0001");
    let reopen = |d: &mut CommunityDoc| {
        let review = Review {
            verdict: Verdict::Reopened,
            comment: "材料不全".into(),
            reviewer: "王敏".into(),
            at_ms: 2,
            overridden: false,
            seen: None,
        };
        d.set_review("t-0001", &review, &stamp()).unwrap();
    };
    assert_eq!(check(&office(), &reviewed, reopen), Ok(()));
}

// ------------------------------------------------------------------ what is denied

#[test]
fn a_device_may_not_write_reviews_standard_fields_or_delete() {
    let doc = base();
    let mut reviewed = replica(&doc, 5);
    accept(&mut reviewed, "t-0001");
    assert_eq!(
        denied(check(&device(), &doc, |d| accept(d, "t-0001"))),
        "write tasks/t-0001/review"
    );
    assert_eq!(
        denied(check(
            &device(),
            &reviewed,
            raw(|tx, tasks| {
                let task = tx.get(tasks, "t-0001").unwrap().unwrap().1;
                tx.delete(&task, "review").unwrap();
            })
        )),
        "delete tasks/t-0001/review"
    );
    assert_eq!(
        denied(check(&device(), &doc, raw(|tx, tasks| tx.delete(tasks, "u-safety-grid").unwrap()))),
        "delete tasks/u-safety-grid"
    );
    // The veto flag of a template veto task, and its star and points, are the standard's.
    for (field, value) in [
        ("veto", ScalarValue::Boolean(false)),
        ("star", ScalarValue::Str("harmony".into())),
        ("points", ScalarValue::Int(100)),
    ] {
        let what = denied(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let task = tx.get(tasks, "u-safety-three-zeros").unwrap().unwrap().1;
                tx.put(&task, field, value).unwrap();
            }),
        ));
        assert_eq!(what, format!("write tasks/u-safety-three-zeros/{field}"));
    }
    assert_eq!(
        denied(check(
            &device(),
            &doc,
            raw(|tx, _| tx.put(ROOT, "community_id", "yuyuan").unwrap())
        )),
        "write community_id"
    );
    // Replacing a whole task (and so its review) is not creating one.
    assert_eq!(
        denied(check(
            &device(),
            &reviewed,
            raw(|tx, tasks| {
                tx.put_object(tasks, "t-0001", automerge::ObjType::Map).unwrap();
            })
        )),
        "replace tasks/t-0001"
    );
}

#[test]
fn evidence_notes_are_append_only() {
    let doc = base();
    let notes = |tx: &mut automerge::transaction::Transaction<'_>, tasks: &ObjId| {
        let task = tx.get(tasks, "t-0001").unwrap().unwrap().1;
        tx.get(&task, "notes").unwrap().unwrap().1
    };
    assert_eq!(
        denied(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let list = notes(tx, tasks);
                tx.delete(&list, 0).unwrap();
            })
        )),
        "delete a note of tasks/t-0001"
    );
    assert_eq!(
        denied(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let list = notes(tx, tasks);
                let note = tx.get(&list, 0).unwrap().unwrap().1;
                tx.put(&note, "text", "改过的证据").unwrap();
            })
        )),
        "rewrite tasks/t-0001/notes/text"
    );
    // Arbitrary keys and nesting outside the schema.
    assert!(
        invalid(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let list = notes(tx, tasks);
                let note = tx.insert_object(&list, 1, automerge::ObjType::Map).unwrap();
                tx.put(&note, "text", "x").unwrap();
                tx.put(&note, "by", "x").unwrap();
                tx.put(&note, "at", ScalarValue::Timestamp(1)).unwrap();
                tx.put(&note, "score", 100).unwrap();
            })
        ))
        .contains("is not a field of a new note")
    );
    assert!(
        invalid(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let list = notes(tx, tasks);
                let note = tx.insert_object(&list, 1, automerge::ObjType::Map).unwrap();
                tx.put_object(&note, "text", automerge::ObjType::Map).unwrap();
            })
        ))
        .contains("must be a plain value")
    );
    assert!(
        invalid(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let list = notes(tx, tasks);
                tx.insert(&list, 1, "a bare string").unwrap();
            })
        ))
        .contains("a note must be a map")
    );
}

#[test]
fn values_must_fit_the_schema_and_new_things_must_be_whole() {
    let doc = base();
    let put = |field: &'static str, value: ScalarValue| {
        raw(move |tx, tasks| {
            let task = tx.get(tasks, "t-0001").unwrap().unwrap().1;
            tx.put(&task, field, value).unwrap();
        })
    };
    assert_eq!(
        invalid(check(&device(), &doc, put("progress", 150.into()))),
        "tasks/t-0001/progress: 150 is not in 0..=100"
    );
    assert!(
        invalid(check(&device(), &doc, put("status", "finished".into())))
            .contains("must be one of")
    );
    assert!(
        invalid(check(&device(), &doc, put("star", "industry".into())))
            .contains("must be a star of this kind")
    );
    assert!(invalid(check(&device(), &doc, put("due", "明天".into()))).contains("must be a date"));
    assert!(
        invalid(check(&device(), &doc, put("bonus", 5.into())))
            .contains("is not a field of the schema")
    );
    assert!(
        invalid(check(
            &device(),
            &doc,
            raw(|tx, tasks| {
                let task = tx.put_object(tasks, "t-half", automerge::ObjType::Map).unwrap();
                tx.put(&task, "title", "半个任务").unwrap();
            })
        ))
        .contains("a new task needs every field")
    );
}

#[test]
fn a_reviewer_writes_only_whole_honest_reviews() {
    let doc = base();
    let kind = Standard::sample().kind(Kind::Urban).clone();
    assert_eq!(
        denied(check(&office(), &doc, move |d| {
            d.edit_task(
                &kind,
                "t-0001",
                &TaskEdit { progress: Some(10), ..TaskEdit::default() },
                &stamp(),
            )
            .unwrap();
        })),
        "write tasks/t-0001/progress"
    );
    assert_eq!(
        denied(check(&office(), &doc, raw(|tx, tasks| tx.delete(tasks, "t-0001").unwrap()))),
        "delete tasks/t-0001"
    );
    // A review whose pins are not what the task held.
    let forged_pin = raw(|tx, tasks| {
        let task = tx.get(tasks, "t-0001").unwrap().unwrap().1;
        let review = tx.put_object(&task, "review", automerge::ObjType::Map).unwrap();
        tx.put(&review, "verdict", "accepted").unwrap();
        tx.put(&review, "awarded", 50).unwrap();
        tx.put(&review, "comment", "").unwrap();
        tx.put(&review, "reviewer", "王敏").unwrap();
        tx.put(&review, "at", ScalarValue::Timestamp(1)).unwrap();
        let seen = tx.put_object(&review, "seen", automerge::ObjType::Map).unwrap();
        for (k, v) in [
            ("star", ScalarValue::Str("safety".into())),
            ("points", ScalarValue::Int(50)),
            ("status", ScalarValue::Str("done".into())),
            ("progress", ScalarValue::Int(100)),
            ("title", ScalarValue::Str("巡逻".into())),
            ("owner", ScalarValue::Str("".into())),
            ("due", ScalarValue::Str("".into())),
            ("notes", ScalarValue::Int(1)),
            ("withdrawn", ScalarValue::Int(0)),
        ] {
            tx.put(&seen, k, v).unwrap();
        }
    });
    assert_eq!(
        invalid(check(&office(), &doc, forged_pin)),
        "tasks/t-0001/review/seen/points: is not what the task held when it was reviewed"
    );
    // A rejection without a comment, and an acceptance of an unfinished task without
    // the override, written by hand (the command line refuses both before this).
    let mut unfinished = replica(&doc, 4);
    let kind = Standard::sample().kind(Kind::Urban).clone();
    unfinished
        .edit_task(
            &kind,
            "u-safety-grid",
            &TaskEdit { progress: Some(30), ..TaskEdit::default() },
            &stamp(),
        )
        .unwrap();
    let review = |verdict: &'static str| {
        raw(move |tx, tasks| {
            let task = tx.get(tasks, "u-safety-grid").unwrap().unwrap().1;
            let review = tx.put_object(&task, "review", automerge::ObjType::Map).unwrap();
            tx.put(&review, "verdict", verdict).unwrap();
            tx.put(&review, "comment", "").unwrap();
            tx.put(&review, "reviewer", "王敏").unwrap();
            tx.put(&review, "at", ScalarValue::Timestamp(1)).unwrap();
            let seen = tx.put_object(&review, "seen", automerge::ObjType::Map).unwrap();
            let title = tx.get(&task, "title").unwrap().unwrap().0.into_string().unwrap();
            for (k, v) in [
                ("star", ScalarValue::Str("safety".into())),
                ("points", ScalarValue::Int(25)),
                ("status", ScalarValue::Str("doing".into())),
                ("progress", ScalarValue::Int(30)),
                ("title", ScalarValue::Str(title.into())),
                ("owner", ScalarValue::Str("".into())),
                ("due", ScalarValue::Str("".into())),
                ("notes", ScalarValue::Int(0)),
                ("withdrawn", ScalarValue::Int(0)),
            ] {
                tx.put(&seen, k, v).unwrap();
            }
        })
    };
    let points = unfinished.task("u-safety-grid").unwrap().points;
    assert_eq!(points, 25, "the sample's grid task is worth 25 points");
    assert_eq!(
        invalid(check(&office(), &unfinished, review("rejected"))),
        "tasks/u-safety-grid/review: a rejected review needs a comment saying why"
    );
    assert_eq!(
        invalid(check(&office(), &unfinished, review("accepted"))),
        "tasks/u-safety-grid/review: accepting a task that is not done needs an explicit override"
    );
}

#[test]
fn nobody_writes_the_district_document_through_sync() {
    let doc = base();
    let changes = doc.automerge().get_changes(&[]);
    assert!(matches!(check_district(&office(), &changes), Err(Refusal::Denied { .. })));
    assert!(matches!(check_district(&device(), &changes), Err(Refusal::Denied { .. })));
    assert_eq!(check_district(&device(), &[]), Ok(()));
}

#[test]
fn a_device_may_not_write_another_communitys_document() {
    let doc = base();
    let other = Writer::Device { community: "yuyuan".into(), device: "d1".into() };
    let kind = Standard::sample().kind(Kind::Urban).clone();
    assert_eq!(
        denied(check(&other, &doc, move |d| {
            d.edit_task(
                &kind,
                "t-0001",
                &TaskEdit { owner: Some("x".into()), ..TaskEdit::default() },
                &stamp(),
            )
            .unwrap();
        })),
        "write community/fuhou"
    );
}

// ------------------------------------------------------------------ forged changes

/// Re-encodes an honest change with its operations rewritten by `forge`.
fn forged(honest: &Change, forge: impl FnOnce(&mut Vec<Op>, u64, &ActorId)) -> Change {
    let mut expanded = honest.decode();
    expanded.hash = None;
    let start = expanded.start_op.get();
    let actor = expanded.actor_id.clone();
    forge(&mut expanded.operations, start, &actor);
    Change::from(expanded)
}

fn op_id(id: &ObjId) -> OpId {
    match id {
        ObjId::Id(counter, actor, _) => OpId(*counter, actor.clone()),
        ObjId::Root => panic!("root has no op id"),
    }
}

/// The hub holds a review the device never saw; the device's change carries a
/// delete aimed at that review. Its own diff shows nothing; merged, it would
/// remove the rejection.
#[test]
fn a_delete_aimed_outside_the_changes_history_is_refused() {
    let doc = base();
    let mut hub = replica(&doc, 9);
    let review = Review {
        verdict: Verdict::Rejected,
        comment: "无照片".into(),
        reviewer: "王敏".into(),
        at_ms: 1,
        overridden: false,
        seen: None,
    };
    hub.set_review("t-0001", &review, &stamp()).unwrap();
    let task = task_obj(hub.automerge(), "t-0001");
    let review_op = op_id(&hub.automerge().get(&task, "review").unwrap().unwrap().1);

    let mut device_copy = replica(&doc, 8);
    let before = device_copy.heads();
    device_copy.add_note("t-0001", "补充照片", &stamp()).unwrap();
    let honest = device_copy.automerge().get_changes(&before).pop().unwrap();
    let task_id = op_id(&task);
    let forgery = forged(&honest, |ops, _, _| {
        ops.push(Op {
            action: OpType::Delete,
            obj: ObjectId::Id(task_id),
            key: Key::Map("review".into()),
            pred: SortedVec::from(vec![review_op]),
            insert: false,
        });
    });
    let problem = malformed(check_merged(&device(), &hub, vec![forgery.clone()]));
    assert!(problem.contains("outside the change's history"), "{problem}");
    // Merged anyway, it would have taken effect: the review would be gone.
    let mut merged = hub.automerge().clone();
    merged.apply_changes([forgery]).unwrap();
    assert!(merged.get(&task, "review").unwrap().is_none());
}

#[test]
fn an_overwrite_that_hides_what_it_overwrites_is_refused() {
    // A put with no pred on a note's text would win the conflict by its higher
    // counter: a rewrite dressed as a concurrent write.
    let doc = base();
    let task = task_obj(doc.automerge(), "t-0001");
    let notes = doc.automerge().get(&task, "notes").unwrap().unwrap().1;
    let note = doc.automerge().get(&notes, 0).unwrap().unwrap().1;
    let mut device_copy = replica(&doc, 8);
    let before = device_copy.heads();
    device_copy.add_note("t-0001", "新证据", &stamp()).unwrap();
    let honest = device_copy.automerge().get_changes(&before).pop().unwrap();
    let note_id = op_id(&note);
    let forgery = forged(&honest, |ops, _, _| {
        ops.push(Op {
            action: OpType::Put("改写".into()),
            obj: ObjectId::Id(note_id),
            key: Key::Map("text".into()),
            pred: SortedVec::new(),
            insert: false,
        });
    });
    let problem = malformed(check_merged(&device(), &doc, vec![forgery]));
    assert!(problem.contains("without naming exactly"), "{problem}");
}

#[test]
fn a_change_that_skips_its_actors_history_is_refused() {
    let doc = base();
    let kind = Standard::sample().kind(Kind::Urban).clone();
    let mut device_copy = replica(&doc, 8);
    let before = device_copy.heads();
    device_copy.add_note("t-0001", "一", &stamp()).unwrap();
    let middle = device_copy.heads();
    device_copy
        .edit_task(
            &kind,
            "t-0001",
            &TaskEdit { owner: Some("王".into()), ..TaskEdit::default() },
            &stamp(),
        )
        .unwrap();
    let changes = device_copy.automerge().get_changes(&before);
    let second = changes.last().unwrap();
    // The second change, re-parented onto the document before the first.
    let mut expanded = second.decode();
    expanded.hash = None;
    expanded.deps = before.clone();
    let reparented = Change::from(expanded);
    assert_ne!(middle, before);
    let mut merged = doc.automerge().clone();
    let old = merged.get_heads();
    merged.apply_changes(changes[..1].to_vec()).unwrap();
    let after_first = merged.get_heads();
    merged.apply_changes([reparented]).unwrap();
    let new = merged.get_changes(&after_first);
    let _ = old;
    let problem = malformed(policy().check(&device(), &merged, &new));
    assert!(problem.contains("does not build on its actor's previous change"), "{problem}");
}

#[test]
fn a_forged_template_change_is_judged_like_any_other() {
    // A change by a template actor that is not byte for byte the template's.
    let standard = Standard::sample();
    let kind = standard.kind(Kind::Urban);
    let mut forged_std = kind.clone();
    let veto =
        forged_std.stars.iter_mut().flat_map(|s| s.tasks.iter_mut()).find(|t| t.veto).unwrap();
    veto.veto = false;
    let mut fresh = CommunityDoc::new(COMMUNITY, ActorId::from(vec![3; 16]));
    let before = fresh.heads();
    fresh.apply_template(&forged_std).unwrap();
    let new = fresh.automerge().get_changes(&before);
    let what = denied(policy().check(&device(), fresh.automerge(), &new));
    assert!(what.starts_with("create tasks/u-"), "{what}");
}

#[test]
fn one_forbidden_change_refuses_the_whole_batch() {
    let doc = base();
    let kind = Standard::sample().kind(Kind::Urban).clone();
    let result = check(&device(), &doc, move |d| {
        d.edit_task(
            &kind,
            "t-0001",
            &TaskEdit { owner: Some("x".into()), ..TaskEdit::default() },
            &stamp(),
        )
        .unwrap();
        accept(d, "t-0001");
        d.add_note("t-0001", "later", &stamp()).unwrap();
    });
    assert_eq!(denied(result), "write tasks/t-0001/review");
}

#[test]
fn a_note_may_carry_a_whole_honest_file_reference() {
    let doc = base();
    let photo = crate::FileRef {
        hash: "ab".repeat(32),
        name: "充电桩.jpg".into(),
        mime: "image/jpeg".into(),
        size: 2_400_000,
    };
    let file = photo.clone();
    check(&device(), &doc, move |d| d.add_file_note("t-0001", "", &file, &stamp()).unwrap())
        .expect("a device attaches a photo to its own task");
    let mut with = replica(&doc, 9);
    with.add_file_note("t-0001", "新建的充电桩", &photo, &stamp()).unwrap();
    let notes = with.task("t-0001").unwrap().notes;
    assert_eq!(notes.last().unwrap().file.as_ref(), Some(&photo), "it reads back");
    let notes_of = |tx: &mut automerge::transaction::Transaction<'_>, tasks: &ObjId| {
        let task = tx.get(tasks, "t-0001").unwrap().unwrap().1;
        tx.get(&task, "notes").unwrap().unwrap().1
    };
    // Half a reference, a bad hash, a type evidence may not be, a size too large.
    let half = invalid(check(
        &device(),
        &doc,
        raw(move |tx, tasks| {
            let list = notes_of(tx, tasks);
            let note = tx.insert_object(&list, 1, automerge::ObjType::Map).unwrap();
            tx.put(&note, "text", "x").unwrap();
            tx.put(&note, "by", "x").unwrap();
            tx.put(&note, "at", ScalarValue::Timestamp(1)).unwrap();
            tx.put(&note, "file_hash", "ab".repeat(32)).unwrap();
        }),
    ));
    assert!(half.contains("together"), "{half}");
    for (field, value, words) in [
        ("file_hash", ScalarValue::Str("../../etc/passwd".into()), "64 lower-case hex"),
        ("file_type", ScalarValue::Str("application/x-sh".into()), "not a type evidence may be"),
        ("file_size", ScalarValue::Int(1 << 40), "file_size must be"),
        ("file_name", ScalarValue::Str("../x.jpg".into()), "no folder"),
    ] {
        let bad = invalid(check(
            &device(),
            &doc,
            raw(move |tx, tasks| {
                let list = notes_of(tx, tasks);
                let note = tx.insert_object(&list, 1, automerge::ObjType::Map).unwrap();
                tx.put(&note, "text", "x").unwrap();
                tx.put(&note, "by", "x").unwrap();
                tx.put(&note, "at", ScalarValue::Timestamp(1)).unwrap();
                for (k, v) in [
                    ("file_hash", ScalarValue::Str("ab".repeat(32).into())),
                    ("file_name", ScalarValue::Str("a.jpg".into())),
                    ("file_type", ScalarValue::Str("image/jpeg".into())),
                    ("file_size", ScalarValue::Int(10)),
                ] {
                    tx.put(&note, k, if k == field { value.clone() } else { v }).unwrap();
                }
            }),
        ));
        assert!(bad.contains(words), "{field}: {bad}");
    }
    // Written once: a reference is never rewritten.
    assert_eq!(
        denied(check(
            &device(),
            &with,
            raw(move |tx, tasks| {
                let list = notes_of(tx, tasks);
                let last = tx.length(&list) - 1;
                let note = tx.get(&list, last).unwrap().unwrap().1;
                tx.put(&note, "file_hash", "cd".repeat(32)).unwrap();
            })
        )),
        "rewrite tasks/t-0001/notes/file_hash"
    );
}
