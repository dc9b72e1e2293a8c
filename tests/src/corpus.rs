//! The corpus of hostile inputs (`tests/corpus/`): request bodies a device could send
//! to `Sync/Session` over a valid mutual-TLS connection, each with the status the hub
//! must answer. [`cases`] makes them, deterministically; the files in the repository
//! are what it writes (`FIVESTAR_WRITE_CORPUS=1 cargo test -p fivestar-tests --test
//! integration hostile::the_corpus_is_what_the_generator_writes` rewrites them), and
//! the integration test replays the files.

use automerge::sync::{Message, MessageVersion};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjType, ROOT};
use fivestar_proto::v1::{self, NodeFrame, node_frame};
use prost::Message as _;
use rand::{RngCore, SeedableRng};

use crate::raw::grpc_frame;

/// One hostile input: its file name (without `.bin`), the body, the status code the
/// hub answers with, and words its message must contain.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file name, without `.bin`.
    pub name: &'static str,
    /// The request body: gRPC frames, well formed or not.
    pub body: Vec<u8>,
    /// The expected status.
    pub code: tonic::Code,
    /// Words the status message must contain.
    pub words: &'static str,
}

fn frame(frame: node_frame::Frame) -> Vec<u8> {
    grpc_frame(false, &NodeFrame { frame: Some(frame) }.encode_to_vec())
}

/// A Hello frame.
pub fn hello(version: &str, clock_ms: i64) -> Vec<u8> {
    frame(node_frame::Frame::Hello(v1::Hello {
        node_version: version.into(),
        unacked_changes: 0,
        oldest_unacked_age_seconds: 0,
        node_time_unix_ms: clock_ms,
    }))
}

/// A sync frame for `doc_id`.
pub fn sync(doc_id: &str, message: Vec<u8>) -> Vec<u8> {
    frame(node_frame::Frame::Sync(v1::SyncMessage { document_id: doc_id.into(), message }))
}

/// An Idle frame.
pub fn idle(turn: u64) -> Vec<u8> {
    frame(node_frame::Frame::Idle(v1::Idle { turn }))
}

fn session(middle: Vec<u8>) -> Vec<u8> {
    let mut body = hello("corpus", 1_780_000_000_000);
    body.extend(middle);
    body.extend(idle(1));
    body
}

/// A V1 sync message with one sync summary whose Bloom filter is `bloom` (raw bytes).
fn with_bloom(bloom: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x42, 0, 0, 1, 0];
    bytes.push(bloom.len() as u8);
    bytes.extend(bloom);
    bytes.push(0);
    bytes
}

fn message_with(changes: Vec<Vec<u8>>) -> Vec<u8> {
    Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: changes.into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

/// A change on top of the community's genesis, by a fixed actor at time 0.
fn change_on_genesis(
    community: &str,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
) -> Vec<u8> {
    let genesis = fivestar_core::CommunityDoc::new(community, ActorId::from(vec![7; 16]));
    let mut doc: Automerge = genesis.automerge().clone();
    let before = doc.get_heads();
    let _ = doc.transact_with(
        |_| CommitOptions::default().with_time(0),
        |tx| -> Result<(), automerge::AutomergeError> {
            f(tx);
            Ok(())
        },
    );
    doc.get_changes(&before).pop().map(|c| c.raw_bytes().to_vec()).unwrap_or_default()
}

/// Every case, for a device of community `fuhou`.
pub fn cases() -> Vec<Case> {
    let doc = "community/fuhou";
    let mut rng = rand::rngs::StdRng::seed_from_u64(2022);
    let mut random = vec![0_u8; 64];
    rng.fill_bytes(&mut random);
    let nest = |levels: usize| {
        change_on_genesis("fuhou", |tx| {
            let mut obj = ROOT;
            for _ in 0..levels {
                if let Ok(next) = tx.put_object(&obj, "m", ObjType::Map) {
                    obj = next;
                }
            }
        })
    };
    let mut corrupted = change_on_genesis("fuhou", |tx| {
        let _ = tx.put(ROOT, "x", 1);
    });
    if let Some(last) = corrupted.last_mut() {
        *last ^= 0xff;
    }
    // Sync frame, field 1 (document_id) holding invalid UTF-8.
    let bad_utf8 = grpc_frame(false, &[0x12, 0x06, 0x0a, 0x02, 0xff, 0xfe, 0x12, 0x00]);
    // NodeFrame field 2 (sync, a message) sent as a varint.
    let wrong_wire_type = grpc_frame(false, &[0x10, 0x05]);
    let mut truncated = hello("corpus", 0);
    truncated.extend([0, 0, 0, 0, 100, 1, 2, 3, 4, 5]);
    let mut compressed = grpc_frame(true, &NodeFrame::default().encode_to_vec());
    compressed.extend(idle(1));
    vec![
        Case {
            name: "no_hello",
            body: [sync(doc, message_with(Vec::new())), idle(1)].concat(),
            code: tonic::Code::InvalidArgument,
            words: "must start with Hello",
        },
        Case {
            name: "invalid_utf8_document_id",
            body: session(bad_utf8),
            code: tonic::Code::InvalidArgument,
            words: "not a valid fivestar.v1 message",
        },
        Case {
            name: "wrong_wire_type",
            body: session(wrong_wire_type),
            code: tonic::Code::InvalidArgument,
            words: "not a valid fivestar.v1 message",
        },
        Case {
            name: "random_protobuf",
            body: session(grpc_frame(false, &random)),
            code: tonic::Code::InvalidArgument,
            words: "",
        },
        Case {
            name: "compressed_flag_without_encoding",
            body: compressed,
            code: tonic::Code::InvalidArgument,
            words: "",
        },
        Case {
            name: "truncated_frame",
            body: truncated,
            code: tonic::Code::InvalidArgument,
            words: "not a valid fivestar.v1 message",
        },
        Case {
            name: "not_automerge",
            body: session(sync(doc, b"hello, hub".to_vec())),
            code: tonic::Code::InvalidArgument,
            words: "not an Automerge sync message",
        },
        Case {
            name: "bloom_zero_bits",
            body: session(sync(doc, with_bloom(&[1, 0, 7]))),
            code: tonic::Code::InvalidArgument,
            words: "bits per entry",
        },
        Case {
            name: "bloom_huge_probes",
            body: session(sync(doc, with_bloom(&[1, 10, 0x80, 0x80, 0x80, 0x10, 0xff, 0xff]))),
            code: tonic::Code::InvalidArgument,
            words: "probes",
        },
        Case {
            name: "nested_maps_8000",
            body: session(sync(doc, message_with(vec![nest(8000)]))),
            code: tonic::Code::ResourceExhausted,
            words: "limits.max_ops_per_change",
        },
        Case {
            name: "nested_maps_1000",
            body: session(sync(doc, message_with(vec![nest(1000)]))),
            code: tonic::Code::InvalidArgument,
            words: "levels deep",
        },
        Case {
            name: "corrupted_checksum",
            body: session(sync(doc, message_with(vec![corrupted]))),
            code: tonic::Code::InvalidArgument,
            words: "does not verify",
        },
        Case {
            name: "document_id_64k",
            body: session(sync(&"x".repeat(64 * 1024), message_with(Vec::new()))),
            code: tonic::Code::InvalidArgument,
            words: "ids are at most 64",
        },
        Case {
            name: "another_communitys_document",
            body: session(sync("community/yuyuan", message_with(Vec::new()))),
            code: tonic::Code::PermissionDenied,
            words: "may not sync community/yuyuan",
        },
    ]
}
