//! A hub that no device can crash, stall or starve: the corpus of hostile inputs
//! replayed over real mutual TLS and HTTP/2, oversized and odd frames, silent and
//! surplus connections. After each, the hub is up, healthy, unchanged, and a real
//! node still syncs.

use std::path::Path;
use std::time::{Duration, Instant};

use fivestar_tests::corpus::{self, Case};
use fivestar_tests::raw::{grpc_frame, raw_call};
use fivestar_tests::{Hub, NodeDir};
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const LIMIT: Duration = Duration::from_secs(20);

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn addr(hub: &Hub) -> std::net::SocketAddr {
    hub.url().trim_start_matches("https://").parse().unwrap()
}

async fn serving(hub: &Hub, certs: &Path) -> bool {
    let channel = fivestar_tests::raw::channel(&hub.url(), certs).await.unwrap();
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: "fivestar.v1.Sync".into() })
        .await
        .unwrap()
        .into_inner();
    reply.status == ServingStatus::Serving as i32
}

/// The checked-in corpus is exactly what the generator makes (set
/// FIVESTAR_WRITE_CORPUS=1 to rewrite it after changing the generator).
#[test]
fn the_corpus_is_what_the_generator_writes() {
    let dir = corpus_dir();
    let write = std::env::var_os("FIVESTAR_WRITE_CORPUS").is_some();
    for Case { name, body, .. } in corpus::cases() {
        let path = dir.join(format!("{name}.bin"));
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &body).unwrap();
        }
        let stored = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; run with FIVESTAR_WRITE_CORPUS=1", path.display())
        });
        assert!(stored == body, "{} differs from the generator's", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_of_the_corpus_is_refused_and_the_hub_carries_on() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["template", "apply"]);
    node.ok(&["sync"]);
    let heads = hub.document("fuhou").unwrap().get_heads();
    let attacker = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d9"], attacker.path());
    let expected: Vec<Case> = corpus::cases();
    for case in &expected {
        let body = std::fs::read(corpus_dir().join(format!("{}.bin", case.name))).unwrap();
        let started = Instant::now();
        let reply = raw_call(addr(&hub), attacker.path(), body, LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(reply.code, case.code, "{}: {}", case.name, reply.message);
        assert!(reply.message.contains(case.words), "{}: {:?}", case.name, reply.message);
        assert!(reply.message.len() < 400, "{}: the answer echoes too much", case.name);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            case.name,
            started.elapsed()
        );
        assert!(serving(&hub, attacker.path()).await, "{}: health", case.name);
        assert_eq!(
            hub.document("fuhou").unwrap().get_heads(),
            heads,
            "{}: state changed",
            case.name
        );
    }
    // The device's errors were recorded, bounded.
    let status: serde_json::Value = serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
    let d9 = status["rows"].as_array().unwrap().iter().find(|r| r["device"] == "d9").unwrap();
    assert!(d9["peer"]["last_error_message"].as_str().unwrap().len() < 400);
    // And a real node goes on syncing.
    node.ok(&["task", "progress", "u-safety-grid", "30"]);
    node.ok(&["sync"]);
    let grid = hub.tasks("fuhou").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
    assert_eq!(grid.progress, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_long_versions_and_wild_clocks_get_right_answers() {
    let hub = Hub::started();
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d9"], certs.path());
    // A 33 MiB frame: too large, as the README promises.
    let mut body = corpus::hello("big", 0);
    body.extend(grpc_frame(false, &vec![0_u8; 33 << 20]));
    let reply = raw_call(addr(&hub), certs.path(), body, LIMIT).await.unwrap();
    assert_eq!(reply.code, Code::ResourceExhausted, "{}", reply.message);
    // A 1 MiB version string and the smallest clock: accepted, stored bounded.
    let body = [corpus::hello(&"v".repeat(1 << 20), i64::MIN), corpus::idle(1)].concat();
    let reply = raw_call(addr(&hub), certs.path(), body, LIMIT).await.unwrap();
    assert_eq!(reply.code, Code::Ok, "{}", reply.message);
    let status: serde_json::Value = serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
    let d9 = status["rows"].as_array().unwrap().iter().find(|r| r["device"] == "d9").unwrap();
    assert!(d9["peer"]["node_version"].as_str().unwrap().len() <= 68);
    assert!(d9["peer"]["clock_skew_ms"].as_i64().unwrap() < 0, "saturated, not wrapped");
    assert!(serving(&hub, certs.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_surplus_connections_are_closed_and_counted() {
    let mut hub = Hub::new(
        "[limits]\nhandshake_timeout_seconds = 1\npreface_timeout_seconds = 1\nhello_timeout_seconds = 1\nmax_connections_per_identity = 2\n",
    );
    hub.start();
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d9"], certs.path());
    // TCP connections that never start TLS: closed after the handshake deadline.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(addr(&hub)).await.unwrap());
    }
    let started = Instant::now();
    for mut tcp in silent {
        let mut buf = [0_u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent connection stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    // TLS done but no HTTP/2: closed after the preface deadline; and only two
    // connections of one identity are kept at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tls_only(&hub, certs.path()).await);
    }
    let mut closed = 0;
    for mut tls in held {
        let mut buf = [0_u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 4, "every silent TLS connection was closed");
    // A session that never says Hello gets little time.
    let reply = raw_call(addr(&hub), certs.path(), Vec::new(), LIMIT).await.unwrap();
    assert!(matches!(reply.code, Code::DeadlineExceeded | Code::Ok), "{reply:?}");
    // A real node syncs meanwhile.
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["template", "apply"]);
    node.ok(&["sync"]);
    let metrics = fivestar_tests::http_get(&hub.dashboard(), "/metrics").unwrap().1;
    assert!(metrics.contains("fivestar_hub_connections_refused_total"), "{metrics}");
    assert!(metrics.contains("reason=\"tls_timeout\""), "{metrics}");
    assert!(metrics.contains("reason=\"preface_timeout\""), "{metrics}");
}

/// A TLS connection with a device certificate that then says nothing.
async fn tls_only(
    hub: &Hub,
    certs: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("device.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("device.key")).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr(hub)).await.unwrap();
    connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
}

/// The fuzz harness (stable toolchain): honest sync messages, mutated at random
/// (bytes flipped, cut short, chunks dropped or repeated), fed straight to the hub's
/// receive path on a real SQLite file. Nothing panics out of it; a refusal leaves the
/// document as it was; whatever is accepted still reads cleanly. A short run in CI;
/// `FIVESTAR_FUZZ_CASES=100000 cargo test -p fivestar-tests --test integration
/// hostile::fuzz -- --nocapture` runs a long one.
#[test]
fn fuzz_the_hubs_receive_path() {
    use automerge::sync::{Message, MessageVersion, State};
    use fivestar_core::{Kind, Role, Standard, Writer};
    use fivestar_hub::store::HubStore;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let cases: u32 =
        std::env::var("FIVESTAR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    let dir = tempfile::tempdir().unwrap();
    let standard = fivestar_core::standard::SAMPLE_STANDARD_TOML;
    let registry = fivestar_core::registry::SAMPLE_REGISTRY_TOML;
    let store = std::cell::RefCell::new(
        HubStore::open(&dir.path().join("hub.db"), standard, registry, 1).unwrap(),
    );
    store.borrow_mut().ensure_community("fuhou", 1).unwrap();
    let doc_id = "community/fuhou";
    // Honest material: the template, edits, a note, a review.
    let kind = Standard::sample().kind(Kind::Urban).clone();
    let mut node = fivestar_core::CommunityDoc::new("fuhou", automerge::ActorId::from(vec![3; 16]));
    let genesis = node.heads();
    node.apply_template(&kind).unwrap();
    let stamp = fivestar_core::Stamp { by: "device d1".into(), at_ms: 1 };
    let edit = fivestar_core::TaskEdit { progress: Some(40), ..Default::default() };
    node.edit_task(&kind, "u-safety-grid", &edit, &stamp).unwrap();
    node.add_note("u-safety-grid", "网格图已上墙", &stamp).unwrap();
    let changes: Vec<Vec<u8>> =
        node.automerge().get_changes(&genesis).iter().map(|c| c.raw_bytes().to_vec()).collect();
    let whole = node.automerge().save();
    let honest = |chunks: Vec<Vec<u8>>| {
        Message {
            heads: node.heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: chunks.into(),
            flags: None,
            version: MessageVersion::V1,
        }
        .encode()
    };
    let seeds = [honest(changes.clone()), honest(vec![whole]), honest(changes[..3].to_vec())];
    let devices = [
        Writer::Device { community: "fuhou".into(), device: "d1".into() },
        Writer::Reviewer { name: "ops".into(), role: Role::Office },
    ];
    let strategy = (
        0..seeds.len(),
        0..devices.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        prop::option::of(any::<prop::sample::Index>()),
    );
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let refused = std::cell::Cell::new(0_u32);
    let accepted = std::cell::Cell::new(0_u32);
    runner
        .run(&strategy, |(seed, who, flips, cut)| {
            let mut bytes = seeds[seed].clone();
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            // The session refuses what does not decode before the store sees it.
            let Ok(message) = Message::decode(&bytes) else { return Ok(()) };
            let mut store = store.borrow_mut();
            let before = store.heads(doc_id).unwrap();
            let mut state = State::new();
            let mut pending = Vec::new();
            let bounds = fivestar_hub::config::HubConfig::default().message_bounds();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.receive(&devices[who], doc_id, &mut state, &mut pending, message, bounds, 2)
            }));
            prop_assert!(outcome.is_ok(), "the receive path panicked");
            match outcome.unwrap() {
                Err(_) => {
                    refused.set(refused.get() + 1);
                    prop_assert_eq!(
                        store.heads(doc_id).unwrap(),
                        before,
                        "a refusal changed the document"
                    );
                }
                Ok(_) => {
                    accepted.set(accepted.get() + 1);
                    let doc = store.community("fuhou").unwrap().unwrap();
                    let (_, problems) = doc.read();
                    prop_assert!(
                        problems.is_empty(),
                        "accepted input left problems: {:?}",
                        problems
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("fuzz: {cases} cases, {} accepted, {} refused", accepted.get(), refused.get());
}

/// One costly message (100,000 evidence notes in one go, within the bounds, several
/// seconds of merging: a margin over a small sync even on a busy CI machine) holds up
/// its own session and document, not the district: another
/// community's node syncs meanwhile, and finishes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_message_does_not_hold_up_other_communities() {
    use automerge::ReadDoc;
    use automerge::sync::{Message, MessageVersion};
    use automerge::transaction::Transactable;
    let hub = Hub::started();
    let other = NodeDir::for_hub(&hub, "yuyuan", "d1");
    other.ok(&["template", "apply"]);
    other.ok(&["sync"]);
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--community", "fuhou", "--device", "d9"], certs.path());
    // A big honest message: the template and 100,000 evidence notes, 1,000 per change.
    let kind = fivestar_core::Standard::sample().kind(fivestar_core::Kind::Urban).clone();
    let mut doc = fivestar_core::CommunityDoc::new("fuhou", automerge::ActorId::random());
    let genesis = doc.heads();
    doc.apply_template(&kind).unwrap();
    let notes = {
        let tasks = doc.automerge().get(automerge::ROOT, "tasks").unwrap().unwrap().1;
        let task = doc.automerge().get(&tasks, "u-safety-grid").unwrap().unwrap().1;
        doc.automerge().get(&task, "notes").unwrap().unwrap().1
    };
    for batch in 0..100 {
        doc.automerge_mut()
            .transact(|tx| -> Result<(), automerge::AutomergeError> {
                for i in 0..1000 {
                    // At the head: appending by index costs a walk of the list each time.
                    let note = tx.insert_object(&notes, 0, automerge::ObjType::Map)?;
                    tx.put(&note, "text", format!("巡查记录 {batch}-{i}"))?;
                    tx.put(&note, "by", "device d9")?;
                    tx.put(&note, "at", automerge::ScalarValue::Timestamp(1))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let changes: Vec<Vec<u8>> =
        doc.automerge().get_changes(&genesis).iter().map(|c| c.raw_bytes().to_vec()).collect();
    let message = Message {
        heads: doc.heads(),
        need: Vec::new(),
        have: Vec::new(),
        changes: changes.into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode();
    let body = [corpus::hello("big", 0), corpus::sync("community/fuhou", message), corpus::idle(1)]
        .concat();
    let started = Instant::now();
    let big = tokio::spawn({
        let addr = addr(&hub);
        let certs = certs.path().to_path_buf();
        async move {
            let reply = raw_call(addr, &certs, body, Duration::from_secs(300)).await;
            (reply, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let small = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        other.ok(&["task", "progress", "u-safety-grid", "10"]);
        other.ok(&["sync"]);
        (t.elapsed(), started.elapsed())
    })
    .await
    .unwrap();
    let (reply, big_took) = big.await.unwrap();
    let reply = reply.unwrap();
    eprintln!("costly message: {big_took:?}; the other community's sync: {:?}", small.0);
    assert_eq!(reply.code, Code::Ok, "{}", reply.message);
    assert!(
        small.1 < big_took,
        "the other community finished at {:?}, after the costly message ({big_took:?})",
        small.1
    );
    let grid = hub.tasks("yuyuan").into_iter().find(|t| t.id == "u-safety-grid").unwrap();
    assert_eq!(grid.progress, 10);
    assert_eq!(
        hub.tasks("fuhou").iter().find(|t| t.id == "u-safety-grid").unwrap().notes.len(),
        100_000
    );
}

/// A community's document cannot grow past `max_document_bytes`: the sync that would
/// pass it is refused with RESOURCE_EXHAUSTED naming the setting, and nothing of it is
/// stored.
#[test]
fn a_document_cannot_grow_past_its_bound() {
    let mut hub = Hub::new("[limits]\nmax_document_bytes = 40000\n");
    hub.start();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    node.ok(&["template", "apply"]);
    node.ok(&["sync"]);
    let heads = hub.document("fuhou").unwrap().get_heads();
    let long = "证".repeat(1900);
    for _ in 0..12 {
        node.ok(&["task", "note", "u-safety-grid", &long]);
    }
    let (_, stderr) = node.fail(&["sync"]);
    assert!(stderr.contains("ResourceExhausted"), "{stderr}");
    assert!(stderr.contains("limits.max_document_bytes"), "{stderr}");
    assert_eq!(hub.document("fuhou").unwrap().get_heads(), heads, "nothing was stored");
}
