//! The hub's gate (DOMAIN.md version 2), tried from outside as an attacker would: a
//! raw gRPC session over real mutual TLS carrying hand-encoded Automerge changes. Each
//! forged or gaming change is refused with the right code, and nothing is stored:
//! the hub's heads, standings and history stay as they were.

use std::time::Duration;

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::sync::{Message, MessageVersion};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, ROOT, ReadDoc, ScalarValue};
use fivestar_tests::raw::{RawSession, connect};
use fivestar_tests::{Hub, NodeDir, eventually};
use serde_json::Value;
use tonic::Code;

/// What the hub holds of a community: heads, its standings row, history length.
fn snapshot(hub: &Hub, community: &str) -> (Vec<ChangeHash>, String, usize) {
    let heads = hub.document(community).map(|d| d.get_heads()).unwrap_or_default();
    let standings: Value = serde_json::from_str(&hub.ok(&["standings", "--json"])).unwrap();
    let row = standings["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["community"] == community)
        .map(|r| {
            // Other communities' sessions may start a snapshot series: ranks move, not scores.
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("rank_change");
            r.to_string()
        })
        .unwrap();
    let history: Value = serde_json::from_str(&hub.ok(&["history", community, "--json"])).unwrap();
    (heads, row, history.as_array().unwrap().len())
}

/// A sync message that hands the hub exactly `changes`.
fn message_with(heads: Vec<ChangeHash>, changes: &[Change]) -> Vec<u8> {
    Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect::<Vec<_>>().into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

/// Sends `changes` for `doc_id` in a fresh session with the certificate in `certs`;
/// returns the status the session ended with (`Ok` when the hub accepted them).
async fn deliver(
    hub: &Hub,
    certs: &std::path::Path,
    doc_id: &str,
    changes: &[Change],
) -> Result<(), tonic::Status> {
    let mut client = connect(&hub.url(), certs).await.unwrap();
    let mut session = RawSession::open(&mut client).await?;
    session.welcome().await?;
    let heads = changes.iter().map(Change::hash).collect();
    session.sync(doc_id, message_with(heads, changes)).await;
    session.idle(1).await;
    session.until_idle(1).await.map(|_| ())
}

/// Re-encodes an honest change with extra operations.
fn forged(honest: &Change, extra: impl FnOnce(&mut Vec<Op>)) -> Change {
    let mut expanded = honest.decode();
    expanded.hash = None;
    extra(&mut expanded.operations);
    Change::from(expanded)
}

fn op_id(id: &ObjId) -> OpId {
    match id {
        ObjId::Id(counter, actor, _) => OpId(*counter, actor.clone()),
        ObjId::Root => panic!("root has no op id"),
    }
}

fn task_obj(doc: &impl ReadDoc, id: &str) -> ObjId {
    let tasks = doc.get(ROOT, "tasks").unwrap().unwrap().1;
    doc.get(&tasks, id).unwrap().unwrap().1
}

/// One change made on a copy of `doc` (forked at `heads`) by a new actor.
fn change_on(
    doc: &Automerge,
    heads: &[ChangeHash],
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
) -> Change {
    let mut copy = doc.fork_at(heads).unwrap().with_actor(ActorId::random());
    let before = copy.get_heads();
    let mut tx = copy.transaction();
    f(&mut tx);
    tx.commit();
    copy.get_changes(&before).pop().expect("one change")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_gaming_changes_are_refused_and_nothing_is_stored() {
    let mut hub = Hub::new(
        "[reviewers]\n\"王敏\" = \"office\"\n\"zhangli\" = \"branch\"\n\"ops\" = \"office\"\n",
    );
    hub.start();
    // A community at work: template, one done task of its own, a veto task, evidence.
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["template", "apply"]);
    let own =
        node.ok(&["task", "add", "--star", "safety", "--title", "夜间巡逻", "--points", "10"]);
    let own_id = own
        .split_whitespace()
        .find(|w| w.starts_with("t-"))
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    node.ok(&["task", "done", &own_id]);
    node.ok(&["task", "note", &own_id, "巡逻记录表"]);
    node.ok(&["task", "done", "u-safety-grid"]);
    node.ok(&["sync"]);
    let before_review = hub.document("fuhou").unwrap().get_heads();
    // The district rejects the grid task and accepts the own task.
    hub.ok(&[
        "review",
        "fuhou",
        "u-safety-grid",
        "reject",
        "--reviewer",
        "王敏",
        "--comment",
        "网格图缺失",
    ]);
    hub.ok(&["review", "fuhou", &own_id, "accept", "--reviewer", "王敏"]);
    let doc = hub.document("fuhou").unwrap();
    let heads = doc.get_heads();
    let grid = task_obj(&doc, "u-safety-grid");
    let own_task = task_obj(&doc, &own_id);
    let review_op = op_id(&doc.get(&grid, "review").unwrap().unwrap().1);
    let notes = doc.get(&own_task, "notes").unwrap().unwrap().1;
    let first_note = doc.get(&notes, 0).unwrap().unwrap().1;

    let device = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d2"], device.path());
    let office = tempfile::tempdir().unwrap();
    hub.issue_into(&["--reviewer", "ops"], office.path());
    let branch_force = tempfile::tempdir().unwrap();
    hub.issue_into(&["--reviewer", "zhangli"], branch_force.path());

    let state = snapshot(&hub, "fuhou");
    let grid_id = op_id(&grid);
    // Each case: who sends it, the change, the expected code and words of the status.
    let cases: Vec<(&std::path::Path, Change, Code, &str)> = vec![
        // A delete aimed at the rejection, outside the change's history (it was made
        // on the document as it stood before the review): its own diff shows nothing.
        (
            device.path(),
            forged(
                &change_on(&doc, &before_review, |tx| {
                    let notes =
                        tx.get(task_obj(&*tx, "u-safety-grid"), "notes").unwrap().unwrap().1;
                    let note = tx.insert_object(&notes, 0, automerge::ObjType::Map).unwrap();
                    tx.put(&note, "text", "补充").unwrap();
                    tx.put(&note, "by", "device d2").unwrap();
                    tx.put(&note, "at", ScalarValue::Timestamp(1)).unwrap();
                }),
                |ops| {
                    ops.push(Op {
                        action: OpType::Delete,
                        obj: ObjectId::Id(grid_id.clone()),
                        key: Key::Map("review".into()),
                        pred: SortedVec::from(vec![review_op.clone()]),
                        insert: false,
                    })
                },
            ),
            Code::InvalidArgument,
            "outside the change's history",
        ),
        // The same delete, honest about its history: a device never deletes a review.
        (
            device.path(),
            change_on(&doc, &heads, |tx| {
                let grid = task_obj(&*tx, "u-safety-grid");
                tx.delete(&grid, "review").unwrap();
            }),
            Code::PermissionDenied,
            "delete tasks/u-safety-grid/review",
        ),
        // Delete a template task.
        (
            device.path(),
            change_on(&doc, &heads, |tx| {
                let tasks = tx.get(ROOT, "tasks").unwrap().unwrap().1;
                tx.delete(&tasks, "u-safety-hazards").unwrap();
            }),
            Code::PermissionDenied,
            "nobody deletes a task",
        ),
        // Clear the veto flag of the veto task.
        (
            device.path(),
            change_on(&doc, &heads, |tx| {
                let veto = task_obj(&*tx, "u-safety-three-zeros");
                tx.put(&veto, "veto", false).unwrap();
            }),
            Code::PermissionDenied,
            "write tasks/u-safety-three-zeros/veto",
        ),
        // Delete the evidence of an accepted task.
        (
            device.path(),
            change_on(&doc, &heads, |tx| {
                let task = task_obj(&*tx, &own_id_for(&*tx));
                let notes = tx.get(&task, "notes").unwrap().unwrap().1;
                tx.delete(&notes, 0).unwrap();
            }),
            Code::PermissionDenied,
            "evidence notes are never deleted",
        ),
        // Rewrite it by a conflicting write that names nothing it overwrites.
        (
            device.path(),
            forged(
                &change_on(&doc, &heads, |tx| {
                    let task = task_obj(&*tx, "u-safety-grid");
                    tx.put(&task, "owner", "张三").unwrap();
                }),
                |ops| {
                    ops.push(Op {
                        action: OpType::Put("改过的证据".into()),
                        obj: ObjectId::Id(op_id(&first_note)),
                        key: Key::Map("text".into()),
                        pred: SortedVec::new(),
                        insert: false,
                    })
                },
            ),
            Code::InvalidArgument,
            "without naming exactly",
        ),
        // A note with keys and nesting outside the schema.
        (
            device.path(),
            change_on(&doc, &heads, |tx| {
                let task = task_obj(&*tx, "u-safety-grid");
                let notes = tx.get(&task, "notes").unwrap().unwrap().1;
                let note = tx.insert_object(&notes, 0, automerge::ObjType::Map).unwrap();
                tx.put(&note, "text", "x").unwrap();
                tx.put(&note, "by", "x").unwrap();
                tx.put(&note, "at", ScalarValue::Timestamp(1)).unwrap();
                tx.put_object(&note, "score", automerge::ObjType::Map).unwrap();
            }),
            Code::InvalidArgument,
            "notes/score: must be a plain value",
        ),
        // A reviewer deletes a task.
        (
            office.path(),
            change_on(&doc, &heads, |tx| {
                let tasks = tx.get(ROOT, "tasks").unwrap().unwrap().1;
                tx.delete(&tasks, "u-safety-grid").unwrap();
            }),
            Code::PermissionDenied,
            "reviewer ops may not delete tasks/u-safety-grid",
        ),
        // A reviewer writes a community's field.
        (
            office.path(),
            change_on(&doc, &heads, |tx| {
                let task = task_obj(&*tx, "u-safety-grid");
                tx.put(&task, "progress", 50).unwrap();
            }),
            Code::PermissionDenied,
            "write tasks/u-safety-grid/progress",
        ),
        // The branch task force reviews a safety task.
        (
            branch_force.path(),
            {
                let mut copy = fivestar_core::CommunityDoc::from_automerge(
                    "fuhou",
                    doc.clone(),
                    ActorId::random(),
                );
                let before = copy.heads();
                let review = fivestar_core::Review {
                    verdict: fivestar_core::Verdict::Accepted { awarded: None },
                    comment: String::new(),
                    reviewer: "zhangli".into(),
                    at_ms: 1,
                    overridden: false,
                    seen: None,
                };
                let stamp = fivestar_core::Stamp { by: "reviewer zhangli".into(), at_ms: 1 };
                copy.set_review("u-safety-grid", &review, &stamp).unwrap();
                copy.automerge().get_changes(&before).pop().unwrap()
            },
            Code::PermissionDenied,
            "reviews only its own star's tasks",
        ),
    ];
    for (certs, change, code, words) in cases {
        let status = deliver(&hub, certs, "community/fuhou", &[change]).await.expect_err("refused");
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(words), "{:?} lacks {words:?}", status.message());
        assert_eq!(snapshot(&hub, "fuhou"), state, "nothing was stored after {words:?}");
    }
}

/// Gaming that the rules make pointless rather than refuse: moving an accepted task of
/// the community's own to another star is the community's right, but the verdict
/// counts with the star and points it pinned, and the task is flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_accepted_task_moves_no_points_and_flags_it() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["template", "apply"]);
    let own =
        node.ok(&["task", "add", "--star", "safety", "--title", "夜间巡逻", "--points", "10"]);
    let own_id = own
        .split_whitespace()
        .find(|w| w.starts_with("t-"))
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    node.ok(&["task", "done", &own_id]);
    node.ok(&["sync"]);
    hub.ok(&["review", "fuhou", &own_id, "accept", "--reviewer", "王敏"]);
    let before: Value = serde_json::from_str(&hub.ok(&["community", "fuhou", "--json"])).unwrap();
    // The node refuses: the task is locked.
    node.ok(&["sync"]);
    let (_, stderr) = node.fail(&["task", "edit", &own_id, "--star", "harmony"]);
    assert!(stderr.contains("locked"), "{stderr}");
    // A raw device does it anyway.
    let device = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d2"], device.path());
    let doc = hub.document("fuhou").unwrap();
    let heads = doc.get_heads();
    let moved = change_on(&doc, &heads, |tx| {
        let task = task_obj(&*tx, &own_id_for(&*tx));
        tx.put(&task, "star", "harmony").unwrap();
        tx.put(&task, "points", 100).unwrap();
    });
    deliver(&hub, device.path(), "community/fuhou", &[moved]).await.expect("allowed: its own task");
    let after: Value = serde_json::from_str(&hub.ok(&["community", "fuhou", "--json"])).unwrap();
    assert_eq!(after["score"], before["score"], "no points moved");
    let task =
        after["tasks"].as_array().unwrap().iter().find(|t| t["id"] == own_id.as_str()).unwrap();
    assert_eq!(task["star"], "harmony");
    assert_eq!(task["earned_hundredths"], 1000);
    let text = hub.ok(&["community", "fuhou"]);
    assert!(text.contains("changed since review: star, points"), "{text}");
}

/// Who delivered a change is the certificate, whatever the change says of itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_who_delivered_each_change_whatever_it_claims() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["template", "apply"]);
    node.ok(&["task", "progress", "u-safety-grid", "30"]);
    node.ok(&["sync"]);
    let device = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d2"], device.path());
    let doc = hub.document("fuhou").unwrap();
    // A change made with device d1's actor id, whose message claims it is the district's.
    let d1_actor = doc.get_changes(&[]).iter().map(|c| c.actor_id().clone()).next_back().unwrap();
    let mut copy = doc.fork().with_actor(d1_actor);
    let before = copy.get_heads();
    copy.transact_with(
        |_| {
            automerge::transaction::CommitOptions::default()
                .with_message(r#"{"by":"reviewer 王敏","action":"review"}"#.to_string())
        },
        |tx| {
            let task = task_obj(&*tx, "u-safety-grid");
            tx.put(&task, "owner", "王敏")
        },
    )
    .unwrap();
    let change = copy.get_changes(&before).pop().unwrap();
    let hash = change.hash().to_string();
    deliver(&hub, device.path(), "community/fuhou", &[change])
        .await
        .expect("an owner is the community's to set");
    let history: Value =
        serde_json::from_str(&hub.ok(&["history", "fuhou", "--task", "u-safety-grid", "--json"]))
            .unwrap();
    let entry = history.as_array().unwrap().iter().find(|e| e["hash"] == hash.as_str()).unwrap();
    assert_eq!(entry["by"], "reviewer 王敏", "what the change claims");
    assert_eq!(entry["delivered_by"], "fuhou/d2", "who really sent it");
    let d1 =
        history.as_array().unwrap().iter().find(|e| e["action"] == "edit status,progress").unwrap();
    assert_eq!(d1["delivered_by"], "fuhou/d1");
    // The node shows which changes came through the district.
    assert!(eventually(Duration::from_secs(10), || {
        node.ok(&["sync"]);
        node.ok(&["history", "u-safety-grid"]).contains("via the district")
    }));
}

fn own_id_for(tx: &impl ReadDoc) -> String {
    let tasks = tx.get(ROOT, "tasks").unwrap().unwrap().1;
    tx.keys(&tasks).find(|k| k.starts_with("t-")).expect("an own task")
}

/// The stranded-community case of issue 10: the district accepts a task with 70
/// points while the community, offline, lowers the task's points to 60. Both edits
/// survive, the community keeps syncing, the task is flagged "changed since review"
/// on node and hub, and the verdict counts with the points it pinned.
#[test]
fn an_offline_edit_after_a_review_never_strands_the_community() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["template", "apply"]);
    let added =
        node.ok(&["task", "add", "--star", "industry", "--title", "紫麦加工", "--points", "80"]);
    let own = added
        .split_whitespace()
        .find(|w| w.starts_with("t-"))
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    node.ok(&["task", "done", &own]);
    node.ok(&["sync"]);
    hub.ok(&["review", "fangou", &own, "accept", "--awarded", "70", "--reviewer", "王敏"]);
    // Offline, the community has not seen the review yet: nothing stops these.
    node.ok(&["task", "edit", &own, "--points", "60"]);
    node.ok(&["task", "note", &own, "补充了加工合同"]);
    node.ok(&["sync"]);

    let at_hub = hub.tasks("fangou").into_iter().find(|t| t.id == own).unwrap();
    assert_eq!(at_hub.points, 60, "the community's edit survived");
    let review = at_hub.review.clone().unwrap();
    assert_eq!(review.verdict, fivestar_core::Verdict::Accepted { awarded: Some(70) });
    assert_eq!(review.seen.as_ref().unwrap().points, 80, "the review pinned what it judged");
    assert!(at_hub.notes.iter().any(|n| n.text == "补充了加工合同"));
    assert!(at_hub.changed_since_review());
    assert_eq!(fivestar_core::earned_hundredths(&at_hub), 7000, "min(awarded 70, pinned 80)");
    let community = hub.ok(&["community", "fangou"]);
    assert!(community.contains("changed since review: points, notes"), "{community}");

    // The node reads, scores and shows it; the accepted task is locked there now.
    let shown = node.ok(&["task", "show", &own]);
    assert!(shown.contains("Changed since review"), "{shown}");
    assert!(shown.contains("Locked"), "{shown}");
    node.ok(&["score"]);
    assert!(node.ok(&["task", "list"]).contains("changed since review"));
    assert_eq!(node.task(&own)["earned_hundredths"], 7000);
    let (_, stderr) = node.fail(&["task", "progress", &own, "50"]);
    assert!(stderr.contains("locked until the district reopens it"), "{stderr}");

    // Later edits keep reaching the district.
    node.ok(&["task", "progress", "a-industry-jobs", "50"]);
    node.ok(&["sync"]);
    let jobs = hub.tasks("fangou").into_iter().find(|t| t.id == "a-industry-jobs").unwrap();
    assert_eq!(jobs.progress, 50);

    // The district reopens it: the verdict is cleared and the lock lifted.
    hub.ok(&[
        "review",
        "fangou",
        &own,
        "reopen",
        "--reviewer",
        "王敏",
        "--comment",
        "重新核实分值",
    ]);
    node.ok(&["sync"]);
    node.ok(&["task", "progress", &own, "90"]);
    node.ok(&["sync"]);
    let reopened = hub.tasks("fangou").into_iter().find(|t| t.id == own).unwrap();
    assert_eq!(reopened.review.unwrap().verdict, fivestar_core::Verdict::Reopened);
    assert_eq!(reopened.progress, 90, "the lock is lifted");
}
