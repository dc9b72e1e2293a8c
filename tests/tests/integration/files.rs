//! Evidence files at the hub: resumable, verified uploads over the device's mutual
//! TLS, and every bad input refused with nothing stored. (The node's uploader builds
//! on this; here the uploads are driven by hand, as a hostile device could.)

use fivestar_core::FileRef;
use fivestar_proto::v1::{FileChunk, FileStatusRequest};
use fivestar_tests::raw::connect;
use fivestar_tests::{Hub, NodeDir};
use sha2::{Digest, Sha256};
use tonic::Code;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Records a note carrying `file` on the node (through its own policy-checked
/// write), and syncs it to the hub.
fn attach(node: &NodeDir, task: &str, file: &FileRef) {
    let (ctx, mut store) = fivestar_node::ops::open(node.path()).unwrap();
    let who = fivestar_node::ops::Who::default();
    fivestar_node::ops::write(&ctx, &mut store, &who, |doc, _, stamp| {
        Ok(doc.add_file_note(task, "照片", file, stamp)?)
    })
    .unwrap();
    drop(store);
    node.ok(&["sync"]);
}

fn file_of(bytes: &[u8], name: &str) -> FileRef {
    FileRef {
        hash: hex::encode(Sha256::digest(bytes)),
        name: name.into(),
        mime: "image/jpeg".into(),
        size: bytes.len() as u64,
    }
}

fn chunk(file: &FileRef, offset: u64, data: &[u8]) -> FileChunk {
    FileChunk {
        sha256: file.hash.clone(),
        offset,
        data: data.to_vec(),
        chunk_sha256: hex::encode(Sha256::digest(data)),
    }
}

#[test]
fn an_upload_cut_short_resumes_where_the_hub_copy_ends_and_is_verified_whole() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = file_of(&bytes, "充电桩.jpg");
    attach(&node, "a-industry-jobs", &file);
    runtime().block_on(async {
        let mut client = connect(&hub.url(), &node.path().join("certs")).await.unwrap();
        let status = client
            .file_status(FileStatusRequest { sha256: file.hash.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((status.received, status.size, status.complete), (0, file.size, false));
        let step = status.max_chunk_bytes as usize;
        assert_eq!(step, 256 * 1024);
        // The first two chunks, then the link is cut (the stream ends).
        let first: Vec<FileChunk> = (0..2)
            .map(|i| chunk(&file, (i * step) as u64, &bytes[i * step..(i + 1) * step]))
            .collect();
        let reply = client.upload_file(tokio_stream::iter(first)).await.unwrap().into_inner();
        assert_eq!((reply.received, reply.complete), (2 * step as u64, false));
        // Resuming from elsewhere than where the hub's copy ends is refused.
        let wrong = client
            .upload_file(tokio_stream::iter(vec![chunk(&file, 0, &bytes[..step])]))
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::FailedPrecondition, "{wrong:?}");
        assert!(wrong.message().contains("resume there"), "{wrong:?}");
        // A chunk that does not match its own hash is refused and not stored.
        let mut bad = chunk(&file, 2 * step as u64, &bytes[2 * step..3 * step]);
        bad.data[0] ^= 1;
        let err = client.upload_file(tokio_stream::iter(vec![bad])).await.unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        // The rest, from where it stopped: complete and verified.
        let held = client
            .file_status(FileStatusRequest { sha256: file.hash.clone() })
            .await
            .unwrap()
            .into_inner()
            .received as usize;
        assert_eq!(held, 2 * step);
        let rest: Vec<FileChunk> = bytes[held..]
            .chunks(step)
            .enumerate()
            .map(|(i, c)| chunk(&file, (held + i * step) as u64, c))
            .collect();
        let done = client.upload_file(tokio_stream::iter(rest)).await.unwrap().into_inner();
        assert!(done.complete && done.received == file.size, "{done:?}");
    });
}

#[test]
fn files_the_records_do_not_name_or_do_not_match_are_refused() {
    let hub = Hub::new("[limits]\nfile_quota_bytes_per_community = 1500000\n");
    let mut hub = hub;
    hub.start();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    let honest: Vec<u8> = vec![42; 300_000];
    let file = file_of(&honest, "a.jpg");
    attach(&node, "a-industry-jobs", &file);
    // A reference whose bytes the device will not have: the upload cannot match.
    let claimed = file_of(&vec![1u8; 100_000], "b.jpg");
    attach(&node, "a-industry-jobs", &claimed);
    // Too large for the quota together with the first.
    let big: Vec<u8> = vec![7; 1_400_000];
    let big_file = file_of(&big, "c.jpg");
    attach(&node, "a-industry-assets", &big_file);
    runtime().block_on(async {
        let mut client = connect(&hub.url(), &node.path().join("certs")).await.unwrap();
        // A hash the records do not name.
        let unknown = hex::encode(Sha256::digest(b"not in the records"));
        let err = client.file_status(FileStatusRequest { sha256: unknown }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(err.message().contains("name no file"), "{err:?}");
        let err =
            client.file_status(FileStatusRequest { sha256: "../etc".into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        // A chunk over the limit.
        let huge = vec![0u8; 300 * 1024];
        let err =
            client.upload_file(tokio_stream::iter(vec![chunk(&file, 0, &huge)])).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        // Bytes that do not match the name: every chunk honest, the whole not.
        let wrong = vec![2u8; 100_000];
        let err = client
            .upload_file(tokio_stream::iter(vec![chunk(&claimed, 0, &wrong)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        let after = client
            .file_status(FileStatusRequest { sha256: claimed.hash.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((after.received, after.complete), (0, false), "a mismatch is never complete");
        // The honest one completes; then the quota stops the big one.
        let chunks: Vec<FileChunk> = honest
            .chunks(256 * 1024)
            .enumerate()
            .map(|(i, c)| chunk(&file, (i * 256 * 1024) as u64, c))
            .collect();
        assert!(
            client.upload_file(tokio_stream::iter(chunks)).await.unwrap().into_inner().complete
        );
        let err = client
            .upload_file(tokio_stream::iter(vec![chunk(&big_file, 0, &big[..256 * 1024])]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains("quota"), "{err:?}");
    });
    // Another community's device cannot upload this community's files.
    let other = NodeDir::for_hub(&hub, "yuyuan", "d1");
    runtime().block_on(async {
        let mut client = connect(&hub.url(), &other.path().join("certs")).await.unwrap();
        let err =
            client.file_status(FileStatusRequest { sha256: file.hash.clone() }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    });
}

/// A small file that looks like a JPEG to anyone who checks its first bytes.
fn jpeg(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..len - 4).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

#[test]
fn a_file_attached_on_the_node_reaches_the_district_and_resumes_where_it_stopped() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["sync"]);
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("充电桩.jpg");
    let bytes = jpeg(700_000, 3);
    std::fs::write(&photo, &bytes).unwrap();
    let out = node.ok(&[
        "task",
        "attach",
        "a-industry-jobs",
        photo.to_str().unwrap(),
        "--note",
        "新建的充电桩",
    ]);
    assert!(out.contains("carries \"充电桩.jpg\""), "{out}");
    let status = node.json(&["status"]);
    assert_eq!(status["files_waiting"], 1, "{status}");
    assert_eq!(
        status["all_saved_at_district"], false,
        "a file still on this PC is not saved at the district"
    );
    let task = node.task("a-industry-jobs");
    let note = task["notes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(note["file"]["name"], "充电桩.jpg");
    assert_eq!(note["file"]["mime"], "image/jpeg");
    let file = file_of(&bytes, "充电桩.jpg");
    assert_eq!(note["file"]["hash"], file.hash.as_str());
    // One sync: the note, then the file, whole.
    let sent = node.json(&["sync"]);
    let first = sent["files"]["bytes_sent"].as_u64().unwrap();
    assert_eq!(first, file.size, "{sent}");
    assert_eq!(node.json(&["status"])["all_saved_at_district"], true);
    // The review desk shows it with its note.
    let desk = hub.dashboard();
    let page =
        fivestar_tests::browser::request(&desk, "GET", "/review/fangou/a-industry-jobs", &[], "");
    let url = format!("/files/fangou/{}", file.hash);
    assert!(page.body.contains("充电桩.jpg") && page.body.contains(&url), "{}", page.body);
    let served = fivestar_tests::browser::request(&desk, "GET", &url, &[], "");
    assert_eq!((served.status, served.header("content-type")), (200, Some("image/jpeg")));
    assert_eq!(served.header("content-length"), Some(file.size.to_string().as_str()));
    // A second file: the hub gets half of it before the node's pass, which then
    // sends only the rest.
    let second_bytes = jpeg(600_000, 9);
    let second = dir.path().join("签到表.jpg");
    std::fs::write(&second, &second_bytes).unwrap();
    node.ok(&["task", "attach", "a-industry-jobs", second.to_str().unwrap()]);
    let second_file = file_of(&second_bytes, "签到表.jpg");
    let mut status_only = node.json(&["status"]);
    assert_eq!(status_only["files_waiting"], 1);
    // The documents alone, then half the file by hand: to the hub, a node whose
    // upload a broken link cut looks like this.
    runtime().block_on(async {
        let (ctx, store) = fivestar_node::ops::open(node.path()).unwrap();
        let store = fivestar_store::StoreThread::spawn("t", store).unwrap();
        fivestar_node::sync::sync_once(&store, &ctx.config, node.path()).await.unwrap();
        let mut client = connect(&hub.url(), &node.path().join("certs")).await.unwrap();
        let half = 256 * 1024;
        let reply = client
            .upload_file(tokio_stream::iter(vec![chunk(&second_file, 0, &second_bytes[..half])]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.received, half as u64);
    });
    let sent = node.json(&["sync"]);
    assert_eq!(sent["files"]["completed"], 1, "{sent}");
    assert_eq!(
        sent["files"]["bytes_sent"].as_u64().unwrap(),
        second_file.size - 256 * 1024,
        "only what the hub lacked was sent: {sent}"
    );
    status_only = node.json(&["status"]);
    assert_eq!(status_only["files_waiting"], 0);
    assert_eq!(status_only["all_saved_at_district"], true);
    // Not evidence: refused with nothing saved.
    let heads = node.heads();
    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let (code, err) = node.fail(&["task", "attach", "a-industry-jobs", script.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot be attached: only photos"), "{err}");
    let big = dir.path().join("big.jpg");
    std::fs::write(&big, jpeg(21 * 1024 * 1024, 1)).unwrap();
    let (_, err) = node.fail(&["task", "attach", "a-industry-jobs", big.to_str().unwrap()]);
    assert!(err.contains("over the limit of 20 MB"), "{err}");
    assert_eq!(node.heads(), heads);
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let picture = image::load_from_memory(bytes).unwrap();
    (picture.width(), picture.height())
}

#[test]
fn photos_are_made_smaller_when_configured_and_previewed_on_the_node_and_the_desk() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.set_config("photo_max_side", "1000");
    let dir = tempfile::tempdir().unwrap();
    let original = fivestar_tests::photo(3000, 2000);
    let photo = dir.path().join("充电桩.jpg");
    std::fs::write(&photo, &original).unwrap();
    node.ok(&["task", "attach", "a-industry-jobs", photo.to_str().unwrap()]);
    // What the node keeps and sends is the smaller photo, named by its own hash.
    let note = node.task("a-industry-jobs")["notes"].as_array().unwrap().last().unwrap().clone();
    let size = note["file"]["size"].as_u64().unwrap();
    assert!(size * 4 < original.len() as u64, "{size} of {}", original.len());
    let db = rusqlite::Connection::open(node.database()).unwrap();
    let (data, thumb): (Vec<u8>, Vec<u8>) =
        db.query_row("SELECT data, thumb FROM files", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    drop(db);
    assert_eq!(data.len() as u64, size);
    assert_eq!(hex::encode(Sha256::digest(&data)), note["file"]["hash"].as_str().unwrap());
    assert_eq!(dimensions(&data), (1000, 667), "the longest side is the configured one");
    assert_eq!(dimensions(&thumb), (320, 213), "the node's preview for lists");
    // A PDF is neither made smaller nor previewed.
    let pdf = dir.path().join("证书.pdf");
    std::fs::write(&pdf, b"%PDF-1.7\n% a scanned certificate\n").unwrap();
    node.ok(&["task", "attach", "a-industry-jobs", pdf.to_str().unwrap()]);
    let sent = node.json(&["sync"]);
    assert_eq!(sent["files"]["completed"], 2, "{sent}");
    assert_eq!(sent["files"]["bytes_sent"].as_u64().unwrap(), size + 33, "{sent}");
    // The desk: the queue and the task page show the preview; the preview is made
    // from the photo the hub holds.
    let hash = note["file"]["hash"].as_str().unwrap().to_string();
    let desk = hub.dashboard();
    let thumb_url = format!("/files/fangou/{hash}/thumb");
    let page =
        fivestar_tests::browser::request(&desk, "GET", "/review/fangou/a-industry-jobs", &[], "");
    assert!(page.body.contains(&thumb_url), "{}", page.body);
    let served = fivestar_tests::browser::request(&desk, "GET", &thumb_url, &[], "");
    assert_eq!((served.status, served.header("content-type")), (200, Some("image/jpeg")));
    let bytes = fivestar_tests::http_get_bytes(&desk, thumb_url.clone());
    assert_eq!(dimensions(&bytes), (320, 213));
    let pdf_hash = hex::encode(Sha256::digest(b"%PDF-1.7\n% a scanned certificate\n"));
    let none = fivestar_tests::browser::request(
        &desk,
        "GET",
        &format!("/files/fangou/{pdf_hash}/thumb"),
        &[],
        "",
    );
    assert_eq!(none.status, 404, "a PDF has no preview");
}

#[test]
fn garbage_collection_removes_only_files_no_document_names() {
    let mut hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    let dir = tempfile::tempdir().unwrap();
    let kept_bytes = jpeg(300_000, 5);
    let photo = dir.path().join("签到表.jpg");
    std::fs::write(&photo, &kept_bytes).unwrap();
    node.ok(&["task", "attach", "a-industry-jobs", photo.to_str().unwrap()]);
    node.ok(&["task", "withdraw", "a-industry-jobs", "1"]);
    node.ok(&["sync"]);
    let kept = hex::encode(Sha256::digest(&kept_bytes));
    // Nothing to collect: the withdrawn note still names its file.
    let dry = hub.ok(&["files", "gc", "--dry-run", "--json"]);
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["files"], serde_json::json!([]), "{dry}");
    // A file no document names (as an older backup restored over a newer one, or a
    // community's document replaced, would leave): whole and partial ones.
    hub.kill();
    let orphan = hex::encode(Sha256::digest(b"orphan"));
    let half = hex::encode(Sha256::digest(b"half"));
    let db = rusqlite::Connection::open(hub.path().join("hub.db")).unwrap();
    for (hash, complete) in [(&orphan, 1), (&half, 0)] {
        db.execute(
            "INSERT INTO files (community, sha256, size, received, complete, started_ms)
             VALUES ('fangou', ?1, 6, 6, ?2, 0)",
            rusqlite::params![hash, complete],
        )
        .unwrap();
        db.execute(
            "INSERT INTO file_chunks (community, sha256, offset, data) VALUES ('fangou', ?1, 0, x'6f727068616e')",
            [hash],
        )
        .unwrap();
    }
    drop(db);
    let usage = hub.ok(&["files", "usage", "--json"]);
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(usage[0]["complete"], 2, "{usage}");
    assert_eq!(usage[0]["partial"], 1, "{usage}");
    let dry = hub.ok(&["files", "gc", "--dry-run", "--json"]);
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    let listed: std::collections::BTreeSet<&str> =
        dry["files"].as_array().unwrap().iter().map(|f| f["sha256"].as_str().unwrap()).collect();
    assert_eq!(listed, [orphan.as_str(), half.as_str()].into_iter().collect(), "{dry}");
    // A dry run deletes nothing.
    let usage: serde_json::Value =
        serde_json::from_str(&hub.ok(&["files", "usage", "--json"])).unwrap();
    assert_eq!(usage[0]["complete"], 2, "{usage}");
    let out = hub.ok(&["files", "gc"]);
    assert!(out.contains("Deleted 2 file(s)"), "{out}");
    let db = rusqlite::Connection::open(hub.path().join("hub.db")).unwrap();
    let left: Vec<String> = db
        .prepare("SELECT DISTINCT sha256 FROM file_chunks")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, vec![kept.clone()], "only the named file's chunks are left");
    drop(db);
    // The named file is still served whole.
    hub.start();
    let served = fivestar_tests::http_get_bytes(&hub.dashboard(), format!("/files/fangou/{kept}"));
    assert_eq!(served, kept_bytes);
}
