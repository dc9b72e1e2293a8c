//! Sync between real nodes and a real hub: gRPC with mutual TLS on loopback, real
//! SQLite files, real processes (killed with SIGKILL where the test says so).

use std::time::Duration;

use automerge::ReadDoc;
use automerge::sync::{State, SyncDoc};
use fivestar_core::{Kind, Stamp, Standard};
use fivestar_proto::v1::{self, hub_frame};
use fivestar_tests::raw::{RawSession, connect};
use fivestar_tests::{Hub, NodeDir, eventually};
use tonic::Code;

#[test]
fn edits_made_while_the_hub_is_down_reach_it_after_it_starts() {
    let mut hub = Hub::new("");
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["task", "progress", "u-safety-grid", "40"]);
    node.ok(&["task", "note", "u-safety-grid", "网格图已上墙"]);
    // The hub is not running: the sync fails clearly, and nothing is lost.
    let (code, stderr) = node.fail(&["sync"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the hub at"), "{stderr}");
    let status = node.json(&["status"]);
    assert_eq!(status["unacknowledged_changes"], 2);
    assert!(status["last_error"]["error"].as_str().unwrap().contains("cannot reach the hub"));

    hub.start();
    let report: serde_json::Value = serde_json::from_str(&node.ok(&["sync", "--json"])).unwrap();
    assert_eq!(report["unacknowledged"], 0);
    let grid = hub.tasks("fuhou").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
    assert_eq!(grid.progress, 40);
    assert_eq!(grid.notes[0].text, "网格图已上墙");
    assert_eq!(node.json(&["status"])["unacknowledged_changes"], 0);
}

#[test]
fn two_devices_and_a_reviewer_edit_concurrently_and_every_replica_converges() {
    let hub = Hub::started();
    let d1 = NodeDir::for_hub(&hub, "fuhou", "d1");
    let d2 = NodeDir::for_hub(&hub, "fuhou", "d2");
    d1.ok(&["sync"]);
    d2.ok(&["sync"]);
    // Offline, concurrently: both devices touch the same task and others.
    d1.ok(&["task", "progress", "u-safety-grid", "60"]);
    d1.ok(&["task", "note", "u-safety-grid", "d1 的证据"]);
    d2.ok(&["task", "assign", "u-safety-grid", "赵敏"]);
    d2.ok(&["task", "note", "u-safety-grid", "d2 的证据"]);
    d2.ok(&["task", "done", "u-branch-team"]);
    // Meanwhile the district reviews a task at the hub.
    hub.ok(&[
        "review",
        "fuhou",
        "u-cobuild-stewards",
        "reject",
        "--reviewer",
        "王敏",
        "--comment",
        "缺少名单",
    ]);
    for node in [&d1, &d2, &d1] {
        node.ok(&["sync"]);
    }
    let heads = d1.heads();
    assert_eq!(d2.heads(), heads, "the devices agree");
    let hub_heads: Vec<String> =
        hub.document("fuhou").unwrap().get_heads().iter().map(|h| h.to_string()).collect();
    assert_eq!(hub_heads, heads, "the hub agrees");
    for node in [&d1, &d2] {
        let grid = node.task("u-safety-grid");
        assert_eq!(grid["progress"], 60);
        assert_eq!(grid["owner"], "赵敏");
        assert_eq!(node.notes("u-safety-grid").len(), 2);
        assert_eq!(node.task("u-branch-team")["status"], "done");
        assert_eq!(node.task("u-cobuild-stewards")["review"]["verdict"], "rejected");
    }
}

#[test]
fn a_reconnect_after_a_completed_sync_sends_far_fewer_bytes() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    for (task, percent) in
        [("a-industry-jobs", "50"), ("a-ecology-waste", "80"), ("a-branch-team", "100")]
    {
        node.ok(&["task", "progress", task, percent]);
    }
    let first: serde_json::Value = serde_json::from_str(&node.ok(&["sync", "--json"])).unwrap();
    let second: serde_json::Value = serde_json::from_str(&node.ok(&["sync", "--json"])).unwrap();
    let bytes = |r: &serde_json::Value| {
        r["bytes_sent"].as_u64().unwrap() + r["bytes_received"].as_u64().unwrap()
    };
    assert!(bytes(&first) > 5_000, "the first sync carries the documents: {first}");
    assert!(
        bytes(&second) * 10 < bytes(&first),
        "a reconnect should send a small fraction: first {first}, second {second}"
    );
    assert_eq!(second["changes_received"], 0);
}

#[test]
fn a_foreign_certificate_fails_the_handshake_and_a_revoked_device_is_refused() {
    let hub = Hub::started();
    // A node whose certificate comes from another district's CA.
    let other_ca = Hub::new("");
    let stranger = NodeDir::new();
    stranger.ok(&["init", "--community", "fuhou", "--hub", &hub.url()]);
    other_ca
        .issue_into(&["--community", "fuhou", "--device", "d1"], &stranger.path().join("certs"));
    // Trust the real hub (its CA), but present the foreign device certificate.
    std::fs::copy(hub.path().join("pki/ca.pem"), stranger.path().join("certs/ca.pem")).unwrap();
    stranger.ok(&["template", "apply"]);
    let (_, stderr) = stranger.fail(&["sync"]);
    assert!(stderr.contains("the hub refused this device's certificate"), "{stderr}");
    assert!(stderr.contains("not issued by the district's CA"), "{stderr}");
    assert!(hub.document("fuhou").is_none(), "nothing reached the hub");

    // A device that synced, then was revoked.
    let node = NodeDir::for_hub(&hub, "yuyuan", "d1");
    node.ok(&["sync"]);
    let out = hub.ok(&["pki", "revoke", "--community", "yuyuan", "--device", "d1"]);
    assert!(out.contains("Revoked 1 certificate(s)"), "{out}");
    node.ok(&["task", "progress", "u-safety-grid", "90"]);
    let (_, stderr) = node.fail(&["sync"]);
    assert!(stderr.contains("has been revoked"), "{stderr}");
    let grid = hub.tasks("yuyuan").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
    assert_eq!(grid.progress, 0, "the revoked device's edit did not reach the hub");
    let status = node.json(&["status"]);
    assert!(status["last_error"]["error"].as_str().unwrap().contains("revoked"));
    // The operators see it: the device is revoked in the hub's status, not "ok"; the
    // foreign certificate (whose identity cannot be trusted) is not pinned on fuhou.
    let shown =
        fivestar_tests::eventually(std::time::Duration::from_secs(5), || {
            let hub_status: serde_json::Value =
                serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
            hub_status["rows"].as_array().unwrap().iter().any(|r| {
                r["community"] == "yuyuan" && r["device"] == "d1" && r["health"] == "revoked"
            })
        });
    assert!(shown, "{}", hub.ok(&["status"]));
    let hub_status: serde_json::Value =
        serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
    assert!(
        !hub_status["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["community"] == "fuhou" && r["health"] == "revoked"),
        "a foreign certificate's claimed identity is not trusted"
    );
}

/// Device d1 of fuhou on `hub`, by a raw session over mutual TLS: the client (its
/// connection), the session and the hub's `Welcome`.
async fn fuhou_d1(
    hub: &Hub,
) -> (fivestar_proto::v1::sync_client::SyncClient<tonic::transport::Channel>, RawSession, v1::Welcome)
{
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d1"], certs.path());
    let mut client = connect(&hub.url(), certs.path()).await.unwrap();
    let mut session = RawSession::open(&mut client).await.unwrap();
    let welcome = session.welcome().await.unwrap();
    (client, session, welcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_sync_another_communitys_document() {
    let hub = Hub::started();
    let (_client, mut session, welcome) = fuhou_d1(&hub).await;
    let ids: Vec<_> = welcome.documents.iter().map(|d| d.document_id.as_str()).collect();
    assert_eq!(ids, ["community/fuhou", "district"]);
    // A change to community B's document, as well-formed as any.
    let mut theirs = fivestar_core::CommunityDoc::new("yuyuan", automerge::ActorId::random());
    theirs.apply_template(Standard::sample().kind(Kind::Urban)).unwrap();
    let message = theirs.automerge().generate_sync_message(&mut State::new()).unwrap();
    session.sync("community/yuyuan", message.encode()).await;
    session.idle(1).await;
    let status = session.until_end().await.expect("the hub ends the session");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "device d1 of community fuhou may not sync community/yuyuan");
    assert!(hub.document("yuyuan").is_none());
}

#[test]
fn a_node_cannot_write_a_review_and_other_communities_are_not_affected() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    let neighbour = NodeDir::for_hub(&hub, "yuyuan", "d1");
    node.ok(&["sync"]);
    // Tamper with the node's own database: write a review, as only the district may.
    {
        let mut store = fivestar_node::store::Store::open(&node.database(), "fuhou").unwrap();
        let review = fivestar_core::Review {
            verdict: fivestar_core::Verdict::Accepted { awarded: None },
            comment: "self-approved".into(),
            reviewer: "d1".into(),
            at_ms: 1,
            overridden: true,
            seen: None,
        };
        let stamp = Stamp { by: "device d1".into(), at_ms: 1 };
        store.write(1, |doc| doc.set_review("u-safety-grid", &review, &stamp)).unwrap().unwrap();
    }
    let (_, stderr) = node.fail(&["sync"]);
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    assert!(
        stderr.contains("device d1 of community fuhou may not write tasks/u-safety-grid/review"),
        "{stderr}"
    );
    let status = node.json(&["status"]);
    assert!(
        status["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("may not write tasks/u-safety-grid/review")
    );
    let grid = hub.tasks("fuhou").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
    assert_eq!(grid.review, None, "the forbidden review was not stored");
    // Another community syncs as usual.
    neighbour.ok(&["task", "progress", "u-safety-grid", "70"]);
    neighbour.ok(&["sync"]);
    let grid = hub.tasks("yuyuan").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
    assert_eq!(grid.progress, 70);
}

#[test]
fn a_reviewer_cannot_write_task_fields() {
    let hub = Hub::started();
    // A reviewer's workstation running a node with a reviewer certificate.
    let desk = NodeDir::new();
    desk.ok(&["init", "--community", "fuhou", "--device", "desk", "--hub", &hub.url()]);
    hub.issue_into(&["--reviewer", "wangmin"], &desk.path().join("certs"));
    desk.ok(&["template", "apply"]);
    desk.ok(&["task", "progress", "u-safety-grid", "100"]);
    let (_, stderr) = desk.fail(&["sync"]);
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    assert!(stderr.contains("reviewer wangmin may not write tasks/"), "{stderr}");
    let tasks = hub.document("fuhou").map(|doc| {
        fivestar_core::CommunityDoc::from_automerge("fuhou", doc, automerge::ActorId::random())
            .task_ids()
    });
    assert_eq!(tasks, Some(vec![]), "nothing the reviewer wrote was stored");
}

#[test]
fn a_review_reaches_a_connected_node_without_it_asking() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    // No heartbeat during the test: only the hub can start this exchange.
    node.set_config("heartbeat_seconds", "3600");
    node.ok(&["task", "done", "a-industry-jobs"]);
    let mut daemon = node.command(&["run"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || node.json(&["status"])["unacknowledged_changes"]
            == 0),
        "the daemon's first round did not finish"
    );
    hub.ok(&[
        "review",
        "fangou",
        "a-industry-jobs",
        "accept",
        "--awarded",
        "15",
        "--reviewer",
        "李华",
    ]);
    let arrived = eventually(Duration::from_secs(10), || {
        node.task("a-industry-jobs")["review"]["verdict"] == "accepted"
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(arrived, "the review did not reach the connected node");
    assert_eq!(node.task("a-industry-jobs")["review"]["awarded"], 15);
    assert_eq!(node.json(&["task", "show", "a-industry-jobs"])["earned_hundredths"], 1500);
}

#[test]
fn killing_the_hub_then_the_node_mid_session_loses_nothing_acknowledged_or_saved() {
    let mut hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.set_config("backoff_initial_seconds", "0.1");
    node.set_config("backoff_max_seconds", "0.5");
    node.set_config("local_poll_millis", "50");
    let spawn_daemon =
        || node.command(&["run"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut daemon = spawn_daemon();
    assert!(
        eventually(Duration::from_secs(20), || node.json(&["status"])["unacknowledged_changes"]
            == 0),
        "the daemon's first round did not finish"
    );
    let mut saved = std::collections::BTreeSet::new();
    let mut write = |text: String| {
        if node.run(&["task", "note", "u-safety-grid", &text]).status.success() {
            saved.insert(text);
        }
    };
    // Burst 1 while connected; the hub dies in the middle of it.
    for i in 0..20 {
        write(format!("burst-1 {i}"));
        if i == 10 {
            hub.kill();
        }
    }
    // Burst 2 while the hub is down.
    for i in 0..5 {
        write(format!("burst-2 {i}"));
    }
    // The hub comes back; the daemon reconnects and catches up; then the node dies
    // in the middle of the sessions that carry burst 3.
    hub.start();
    assert!(
        eventually(Duration::from_secs(20), || node.json(&["status"])["unacknowledged_changes"]
            == 0),
        "the daemon did not catch up after the hub came back"
    );
    for i in 0..15 {
        write(format!("burst-3 {i}"));
        if i == 8 {
            daemon.kill().unwrap();
            daemon.wait().unwrap();
        }
    }
    assert_eq!(saved.len(), 40, "every write reported saved");
    // Everything the hub acknowledged is durably at the hub, even across its crash.
    let acked = {
        let store = fivestar_node::store::Store::open(&node.database(), "fuhou").unwrap();
        store.acked_heads("community/fuhou").unwrap()
    };
    assert!(!acked.is_empty(), "the hub acknowledged something before the crashes");
    hub.kill();
    hub.start();
    let at_hub = hub.document("fuhou").unwrap();
    for head in &acked {
        assert!(
            at_hub.get_change_by_hash(head).is_some(),
            "acknowledged change {head} lost at the hub"
        );
    }
    // Everything reported saved is on the node, and reaches the hub.
    assert_eq!(node.notes("u-safety-grid"), saved);
    daemon = spawn_daemon();
    let reached =
        eventually(Duration::from_secs(20), || hub.notes("fuhou", "u-safety-grid") == saved);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(reached, "not every saved note reached the hub");
    assert_eq!(node.json(&["status"])["unacknowledged_changes"], 0);
}

#[test]
fn certificates_are_issued_only_to_communities_in_the_registry() {
    let hub = Hub::new("");
    let err = hub.fail(&["pki", "issue", "--community", "p999-01", "--device", "d1"]);
    assert!(err.contains("community \"p999-01\" is not in the district registry"), "{err}");
    let err = hub.fail(&["pki", "issue", "--community", "fuhou", "--device", "Front Desk"]);
    assert!(err.contains("device name \"Front Desk\" must be 1 to 40 characters"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_an_unlisted_community_is_refused_by_name() {
    // The hub's own CA issues the certificate, then the registry drops the community.
    let registry = fivestar_core::registry::SAMPLE_REGISTRY_TOML.replacen(
        "id = \"p015-01\"",
        "id = \"p999-01\"",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let with_it = dir.path().join("with.toml");
    std::fs::write(&with_it, &registry).unwrap();
    let mut hub = Hub::new(&format!("registry = {:?}", with_it.to_str().unwrap()));
    let certs = dir.path().join("certs");
    hub.issue_into(&["--community", "p999-01", "--device", "d1"], &certs);
    std::fs::write(&with_it, fivestar_core::registry::SAMPLE_REGISTRY_TOML).unwrap();
    hub.start();
    let mut client = connect(&hub.url(), &certs).await.unwrap();
    let mut session = RawSession::open(&mut client).await.unwrap();
    let status = session.until_end().await.expect("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "community \"p999-01\" is not in the district registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_are_refused_with_clear_statuses() {
    let hub = Hub::started();
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d1"], certs.path());
    let mut client = connect(&hub.url(), certs.path()).await.unwrap();

    let mut session = RawSession::open(&mut client).await.unwrap();
    session.sync("community/fuhou", b"not an automerge message".to_vec()).await;
    let status = session.until_end().await.expect("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("the sync message for community/fuhou cannot be decoded"),
        "{status:?}"
    );

    let mut session = RawSession::open(&mut client).await.unwrap();
    session.sync("community/fuhou", vec![0x42; 17 * 1024 * 1024]).await;
    let status = session.until_end().await.expect("refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("the hub accepts at most 16777216"), "{status:?}");
    // Neither reached the document.
    let doc = hub.document("fuhou").unwrap();
    assert_eq!(doc.get_changes(&[]).len(), 1, "only the genesis change");
}

#[test]
fn a_document_made_invalid_by_a_change_is_refused_as_a_whole() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["task", "note", "u-safety-grid", "fine"]);
    // Tamper: progress 150 via the raw document, as no command would allow.
    {
        let mut store = fivestar_node::store::Store::open(&node.database(), "fuhou").unwrap();
        store
            .write(1, |doc| -> Result<(), automerge::AutomergeError> {
                use automerge::transaction::Transactable;
                let raw = doc.automerge_mut();
                let tasks = raw.get(automerge::ROOT, "tasks")?.unwrap().1;
                let grid = raw.get(&tasks, "u-safety-grid")?.unwrap().1;
                let mut tx = raw.transaction();
                tx.put(&grid, "progress", 150_i64)?;
                tx.commit();
                Ok(())
            })
            .unwrap()
            .unwrap();
    }
    let (_, stderr) = node.fail(&["sync"]);
    assert!(stderr.contains("InvalidArgument"), "{stderr}");
    assert!(stderr.contains("tasks/u-safety-grid/progress: 150 is not in 0..=100"), "{stderr}");
    // The whole batch was refused, including the valid note before it.
    assert!(hub.notes("fuhou", "u-safety-grid").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_and_idle_ones_are_closed() {
    let mut hub = Hub::new("[limits]\nmax_sessions = 1\nidle_timeout_seconds = 1");
    hub.start();
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d1"], certs.path());
    let mut client = connect(&hub.url(), certs.path()).await.unwrap();
    let mut first = RawSession::open(&mut client).await.unwrap();
    first.welcome().await.unwrap();
    let mut second = RawSession::open(&mut client).await.unwrap();
    let status = second.until_end().await.expect("refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "the hub is serving its maximum of 1 sessions; try again shortly");
    // The first says nothing more: the hub closes it after the idle timeout.
    let status = tokio::time::timeout(Duration::from_secs(10), first.until_end())
        .await
        .expect("closed within the bound")
        .expect("with a status");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "no frame from the node for 1 s; closing the idle session");
}

#[test]
fn a_node_scores_with_the_standard_the_hub_publishes_and_keeps_it_offline() {
    // The district's own standard: a different edition with a lower pass mark for business.
    let district_standard = fivestar_core::standard::SAMPLE_STANDARD_TOML
        .replacen("version = \"sample-2026.1\"", "version = \"weidu-2027.1\"", 1)
        .replacen("\nsample = true\n", "\nsample = false\n", 1)
        .replacen(
            "en = \"Thriving Business\"\npass_mark = 80",
            "en = \"Thriving Business\"\npass_mark = 60",
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("standard.toml");
    std::fs::write(&file, district_standard).unwrap();
    let mut hub = Hub::new(&format!("standard = {:?}", file.to_str().unwrap()));
    hub.start();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["task", "done", "u-business-collective"]);
    node.ok(&["task", "done", "u-business-jobs"]);
    let before = node.json(&["score"]);
    assert_eq!(before["standard"]["version"], "sample-2026.1");
    assert_eq!(before["score"]["stars"][4]["earned"], false, "70 points < 80 under the sample");
    node.ok(&["sync"]);
    hub.kill();
    // Offline now: the published standard stays in force.
    let after = node.json(&["score"]);
    assert_eq!(after["standard"]["version"], "weidu-2027.1");
    assert_eq!(after["standard"]["sample"], false);
    assert_eq!(
        after["score"]["stars"][4]["earned"], true,
        "70 points ≥ 60 under the district's standard"
    );
}

/// The Acks of each hub turn: (document, heads) in the order sent.
type Acks = Vec<Vec<(String, Vec<Vec<u8>>)>>;

/// A hand-driven replica of device fuhou/d1 (its community document with the
/// template applied, the district's, its sync states with the hub and its turn
/// counter), for tests that play the node's side frame by frame.
struct Replica {
    kind: fivestar_core::KindStandard,
    mine: fivestar_core::CommunityDoc,
    district: automerge::Automerge,
    states: std::collections::BTreeMap<String, State>,
    turn: u64,
}

impl Replica {
    fn new() -> Replica {
        let kind = Standard::sample().kind(Kind::Urban).clone();
        let mut mine = fivestar_core::CommunityDoc::new("fuhou", automerge::ActorId::random());
        mine.apply_template(&kind).unwrap();
        let (district, states) = (automerge::Automerge::new(), Default::default());
        Replica { kind, mine, district, states, turn: 0 }
    }

    /// A node's side of protocol revision 1 over a raw session: turns until, after
    /// the hub's answer, the node has nothing to say (a turn after the first is sent
    /// only with a message). Returns the Acks of each of the hub's answers. Bounded:
    /// a sync settles in a few turns.
    async fn sync_turns(&mut self, session: &mut RawSession) -> Acks {
        let mut acked = Vec::new();
        for first in [true, false, false, false, false, false] {
            let mut sent = 0;
            for (doc, replica) in
                [("community/fuhou", self.mine.automerge()), ("district", &self.district)]
            {
                let state = self.states.entry(doc.to_string()).or_default();
                if let Some(message) = replica.generate_sync_message(state) {
                    session.sync(doc, message.encode()).await;
                    sent += 1;
                }
            }
            if sent == 0 && !first {
                return acked;
            }
            self.turn += 1;
            session.idle(self.turn).await;
            let mut acks = Vec::new();
            for frame in session.until_idle(self.turn).await.unwrap() {
                match frame {
                    hub_frame::Frame::Sync(sync) => {
                        let message = automerge::sync::Message::decode(&sync.message).unwrap();
                        let state = self.states.get_mut(&sync.document_id).unwrap();
                        let replica = match sync.document_id.as_str() {
                            "community/fuhou" => self.mine.automerge_mut(),
                            _ => &mut self.district,
                        };
                        replica.receive_sync_message(state, message).unwrap();
                    }
                    hub_frame::Frame::Ack(ack) => acks.push((ack.document_id, ack.heads)),
                    other => panic!("unexpected {other:?}"),
                }
            }
            acked.push(acks);
        }
        panic!("the sync did not settle within 6 turns");
    }
}

fn raw_heads(heads: &[automerge::ChangeHash]) -> Vec<Vec<u8>> {
    heads.iter().map(|h| h.as_ref().to_vec()).collect()
}

/// Protocol revision 1, frame by frame: the hub says its revision, acknowledges a
/// document only when its stored heads moved since the session's last Ack of it, and
/// records a successful sync as soon as the node has announced the hub's heads of
/// every document, so the node's round needs no empty last turn. A node that still
/// sends one (revision 0) gets an empty answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_agrees_on_heads_without_an_empty_turn_and_acks_only_moved_heads() {
    let hub = Hub::started();
    let (_client, mut session, welcome) = fuhou_d1(&hub).await;
    assert_eq!(welcome.revision, 1, "the hub speaks revision 1");
    let mut node = Replica::new();
    let acked = node.sync_turns(&mut session).await;
    // The first answer acknowledges every document; later ones only heads that moved
    // (the node's template, once the hub asked for it and stored it).
    assert!(acked.len() > 1, "the template took more than one turn");
    let first: Vec<&str> = acked[0].iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(first, ["community/fuhou", "district"]);
    let mut last: std::collections::BTreeMap<&str, &Vec<Vec<u8>>> = Default::default();
    for (doc, heads) in acked.iter().flatten() {
        assert_ne!(last.insert(doc, heads), Some(heads), "{doc} acknowledged twice at {heads:?}");
    }
    assert_eq!(last["community/fuhou"], &raw_heads(&node.mine.heads()), "the template is stored");
    // Agreement was reached without an empty turn: the hub recorded the success.
    let succeeded = || {
        let status: serde_json::Value =
            serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
        status["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["device"] == "d1" && r["peer"]["last_success_ms"].as_i64().is_some())
    };
    assert!(eventually(Duration::from_secs(10), succeeded), "the sync counts as a success");
    // A revision-0 node's empty last turn: answered with nothing but its Idle.
    node.turn += 1;
    session.idle(node.turn).await;
    assert_eq!(session.until_idle(node.turn).await.unwrap(), []);
    // An edit moves the community's heads: its answer acknowledges them, once, and
    // not the district's, which stayed.
    let stamp = Stamp { by: "device d1".into(), at_ms: 1 };
    let edit = fivestar_core::TaskEdit { progress: Some(40), ..Default::default() };
    node.mine.edit_task(&node.kind, "u-safety-grid", &edit, &stamp).unwrap();
    let acked = node.sync_turns(&mut session).await;
    assert_eq!(acked.len(), 1, "one turn carries the edit, and the round is over");
    assert_eq!(acked[0], [("community/fuhou".to_string(), raw_heads(&node.mine.heads()))]);
    // The hub answers a turn alike whether its Idle comes right behind the message
    // (read ahead and answered in the same store call), after a pause, or behind a
    // second message (the first is then stored on its own).
    let state = node.states.get_mut("community/fuhou").unwrap();
    for (case, messages, pause) in [("a pause", 1, 300), ("two messages", 2, 0)] {
        for m in 0..messages {
            let edit = fivestar_core::TaskEdit {
                owner: Some(format!("{case} {m}")),
                ..Default::default()
            };
            node.mine.edit_task(&node.kind, "u-safety-grid", &edit, &stamp).unwrap();
            let message = node.mine.automerge().generate_sync_message(state).unwrap();
            session.sync("community/fuhou", message.encode()).await;
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
        node.turn += 1;
        session.idle(node.turn).await;
        let acks: Vec<_> = (session.until_idle(node.turn).await.unwrap().into_iter())
            .filter_map(|f| match f {
                hub_frame::Frame::Ack(ack) => Some((ack.document_id, ack.heads)),
                // A push of the stored heads may come first, in the pause.
                hub_frame::Frame::Sync(_) | hub_frame::Frame::Idle(v1::Idle { turn: 0 }) => None,
                other => panic!("{case}: unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            acks,
            [("community/fuhou".to_string(), raw_heads(&node.mine.heads()))],
            "{case}"
        );
        let task = hub.tasks("fuhou").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
        assert_eq!(task.owner, format!("{case} {}", messages - 1), "{case}: stored");
    }
}

/// A peer's counters add up to exactly what its session carried, however they were
/// written: at the session's first success, in the commit of a message that found
/// them due (five seconds after they were last written), and at the session's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_counters_add_up_to_what_its_session_carried() {
    let hub = Hub::started();
    let (_client, mut session, _) = fuhou_d1(&hub).await;
    let mut node = Replica::new();
    node.sync_turns(&mut session).await;
    let peer = || -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
        let rows = status["rows"].as_array().unwrap();
        rows.iter().find(|r| r["device"] == "d1").unwrap()["peer"].clone()
    };
    assert!(
        eventually(Duration::from_secs(10), || peer()["last_success_ms"].as_i64().is_some()),
        "the first success is recorded at once"
    );
    // The edit after the pause finds the counters due: its commit writes them.
    let stamp = Stamp { by: "device d1".into(), at_ms: 1 };
    for (progress, pause) in [(10, 0), (20, 5_200), (30, 0)] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let edit = fivestar_core::TaskEdit { progress: Some(progress), ..Default::default() };
        node.mine.edit_task(&node.kind, "u-safety-grid", &edit, &stamp).unwrap();
        let acked = node.sync_turns(&mut session).await;
        assert_eq!(acked.len(), 1, "one turn carries the edit");
    }
    let (sent, received) = session.sync_bytes();
    // The changes the hub received: all but those of a new community document,
    // which it made itself.
    let changes = {
        let fresh = fivestar_core::CommunityDoc::new("fuhou", automerge::ActorId::random());
        let had: Vec<_> = fresh.automerge().get_changes(&[]).iter().map(|c| c.hash()).collect();
        let all = node.mine.automerge().get_changes(&[]);
        all.iter().filter(|c| !had.contains(&c.hash())).count()
    };
    // The session ends: it writes what is left.
    drop(session);
    let mut last = serde_json::Value::Null;
    let adds_up = eventually(Duration::from_secs(10), || {
        last = peer();
        last["bytes_in"] == sent
            && last["bytes_out"] == received
            && last["changes_received"] == changes
    });
    assert!(adds_up, "sent {sent}, received {received}, {changes} changes; the hub counted {last}");
}
