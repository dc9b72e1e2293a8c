//! The write rules, one case per rule.

use automerge::transaction::Transactable;
use automerge::{ActorId, Change, ROOT, ReadDoc};

use crate::document::NewTask;
use crate::policy::{Writer, authorize};
use crate::{CommunityDoc, Kind, Review, Stamp, Standard, TaskEdit, Verdict};

fn device(community: &str) -> Writer {
    Writer::Device { community: community.into(), device: "d1".into() }
}

fn reviewer() -> Writer {
    Writer::Reviewer { name: "王敏".into() }
}

fn stamp() -> Stamp {
    Stamp { by: "x".into(), at_ms: 1 }
}

/// A document with one task, and the changes an edit adds on top of it.
fn edited(edit: impl FnOnce(&mut CommunityDoc)) -> (CommunityDoc, Vec<Change>) {
    let standard = Standard::sample();
    let mut doc = CommunityDoc::new("fuhou", ActorId::from(vec![1; 16]));
    let task = NewTask {
        id: "t-0001".into(),
        star: "safety".into(),
        title: "巡逻".into(),
        points: 10,
        owner: String::new(),
        due: None,
        note: None,
    };
    doc.add_task(standard.kind(Kind::Urban), task, &stamp()).unwrap();
    let before = doc.heads();
    edit(&mut doc);
    let changes = doc.automerge().get_changes(&before);
    (doc, changes)
}

fn check(
    writer: &Writer,
    doc_id: &str,
    edit: impl FnOnce(&mut CommunityDoc),
) -> Result<(), String> {
    let (doc, changes) = edited(edit);
    assert!(!changes.is_empty(), "the edit must make a change");
    authorize(writer, doc_id, doc.automerge(), &changes).map_err(|d| d.to_string())
}

fn progress(doc: &mut CommunityDoc) {
    let standard = Standard::sample();
    let edit = TaskEdit { progress: Some(50), ..TaskEdit::default() };
    doc.edit_task(standard.kind(Kind::Urban), "t-0001", &edit, &stamp()).unwrap();
}

fn review(doc: &mut CommunityDoc) {
    let review = Review {
        verdict: Verdict::Accepted { awarded: None },
        comment: String::new(),
        reviewer: "王敏".into(),
        at_ms: 1,
    };
    doc.set_review("t-0001", &review, &stamp()).unwrap();
}

fn raw(
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>, &automerge::ObjId),
) -> impl FnOnce(&mut CommunityDoc) {
    move |doc| {
        let raw = doc.automerge_mut();
        let tasks = raw.get(ROOT, "tasks").unwrap().unwrap().1;
        let mut tx = raw.transaction();
        f(&mut tx, &tasks);
        tx.commit();
    }
}

#[test]
fn a_device_may_edit_and_create_its_own_communitys_tasks() {
    assert_eq!(check(&device("fuhou"), "community/fuhou", progress), Ok(()));
    assert_eq!(
        check(&device("fuhou"), "community/fuhou", |doc| {
            doc.add_note("t-0001", "证据", &stamp()).unwrap();
            doc.apply_template(Standard::sample().kind(Kind::Urban)).unwrap();
        }),
        Ok(())
    );
}

#[test]
fn a_device_may_not_write_a_review() {
    assert_eq!(
        check(&device("fuhou"), "community/fuhou", review),
        Err("device d1 of community fuhou may not write tasks/t-0001/review".into())
    );
}

#[test]
fn a_device_may_not_write_another_communitys_document() {
    assert_eq!(
        check(&device("yuyuan"), "community/fuhou", progress),
        Err("device d1 of community yuyuan may not write community/fuhou".into())
    );
}

#[test]
fn a_reviewer_may_write_reviews_and_nothing_else() {
    assert_eq!(check(&reviewer(), "community/fuhou", review), Ok(()));
    assert_eq!(
        check(&reviewer(), "community/fuhou", progress),
        Err("reviewer 王敏 may not write tasks/t-0001/progress".into())
    );
}

#[test]
fn nobody_writes_the_district_document_through_sync() {
    assert_eq!(
        check(&reviewer(), "district", review),
        Err("reviewer 王敏 may not write the district document".into())
    );
    assert_eq!(
        check(&device("fuhou"), "district", progress),
        Err("device d1 of community fuhou may not write the district document".into())
    );
}

#[test]
fn a_device_may_not_delete_tasks_or_touch_root_fields() {
    assert_eq!(
        check(
            &device("fuhou"),
            "community/fuhou",
            raw(|tx, tasks| tx.delete(tasks, "t-0001").unwrap())
        ),
        Err("device d1 of community fuhou may not delete tasks/t-0001".into())
    );
    assert_eq!(
        check(
            &device("fuhou"),
            "community/fuhou",
            raw(|tx, _| tx.put(ROOT, "community_id", "yuyuan").unwrap())
        ),
        Err("device d1 of community fuhou may not write community_id".into())
    );
}

#[test]
fn one_forbidden_change_refuses_the_whole_batch() {
    assert_eq!(
        check(&device("fuhou"), "community/fuhou", |doc| {
            progress(doc);
            review(doc);
            doc.add_note("t-0001", "later", &stamp()).unwrap();
        }),
        Err("device d1 of community fuhou may not write tasks/t-0001/review".into())
    );
}
