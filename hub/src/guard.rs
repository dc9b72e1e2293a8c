//! What one sync message may cost the hub, checked before Automerge does the costly
//! part (DEVELOPERS.md: "every cost is bounded before it is paid").
//!
//! [`screen`] looks at a decoded message and refuses it when:
//! - a Bloom filter's sizes are out of range (zero bits per entry divides by zero in
//!   Automerge; a huge probe count loops for seconds), or it lists more entries than
//!   any honest peer could;
//! - it names too many heads, needs or summaries;
//! - a change chunk is corrupt (a bad checksum is refused, not silently dropped) or a
//!   chunk is neither a change nor a whole document;
//! - it carries more changes, or more operations (per change or in all), than the
//!   configured bounds;
//! - it nests objects deeper than the schema ever does (the schema's deepest object is
//!   `tasks/<id>/review/seen`, four levels down).
//!
//! A message that passes comes back normalised: one chunk per change, so what the
//! store applies is exactly what was checked. Pure: no I/O, no clock.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::legacy::{ObjectId, OpId, OpType};
use automerge::sync::Message;
use automerge::{ActorId, Automerge, Change, ObjId, ReadDoc};

/// The deepest object the schema has (`tasks/<id>/review/seen` is 4); one level of
/// slack for schema growth.
pub const MAX_DEPTH: usize = 5;

/// Heads, needs or sync summaries a message may name.
pub const MAX_HASHES: usize = 10_000;

/// Bounds on one message, from `[limits]` of hub.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Changes in one message.
    pub max_changes: usize,
    /// Operations in one change.
    pub max_ops_per_change: usize,
    /// Operations in one message.
    pub max_ops: usize,
}

/// Why a message was refused before it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Screened {
    /// Over a configured bound (RESOURCE_EXHAUSTED).
    #[error("the sync message has {count} {what}; the hub accepts at most {limit} ({setting})")]
    OverBound {
        /// What was counted.
        what: &'static str,
        /// How many.
        count: usize,
        /// The bound.
        limit: usize,
        /// The setting that holds it.
        setting: &'static str,
    },
    /// Not something an honest peer sends (INVALID_ARGUMENT).
    #[error("the sync message is malformed: {0}")]
    Malformed(String),
}

/// Checks a decoded message against `bounds` and the stored document it is for;
/// returns it normalised (one chunk per change), the operations it carries, and its
/// changes, parsed, in its order.
pub fn screen(
    message: Message,
    doc: &Automerge,
    bounds: Bounds,
) -> Result<(Message, usize, Vec<Change>), Screened> {
    let over = |what, count: usize, limit: usize, setting| {
        if count > limit {
            Err(Screened::OverBound { what, count, limit, setting })
        } else {
            Ok(())
        }
    };
    over("heads", message.heads.len(), MAX_HASHES, "fixed")?;
    over("needed changes", message.need.len(), MAX_HASHES, "fixed")?;
    over("sync summaries", message.have.len(), 64, "fixed")?;
    for have in &message.have {
        over("hashes in a sync summary", have.last_sync.len(), MAX_HASHES, "fixed")?;
        check_bloom(&have.bloom.to_bytes(), bounds.max_changes.max(MAX_HASHES))?;
    }
    let mut changes = Vec::new();
    for (index, chunk) in message.changes.iter().enumerate() {
        changes.extend(split_chunk(index, chunk)?);
        over("changes", changes.len(), bounds.max_changes, "limits.max_changes_per_message")?;
    }
    let mut total = 0;
    for change in &changes {
        over(
            "operations in one change",
            change.len(),
            bounds.max_ops_per_change,
            "limits.max_ops_per_change",
        )?;
        total += change.len();
        over("operations", total, bounds.max_ops, "limits.max_ops_per_message")?;
    }
    check_depth(&changes, doc)?;
    let chunks: Vec<Vec<u8>> = changes.iter().map(|c| c.raw_bytes().to_vec()).collect();
    Ok((Message { changes: chunks.into(), ..message }, total, changes))
}

/// A Bloom filter's header: entries, bits per entry, probes (LEB128, as Automerge
/// writes them); empty when it has no entries.
fn check_bloom(bytes: &[u8], max_entries: usize) -> Result<(), Screened> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut rest = bytes;
    let mut next = || leb128(&mut rest);
    let (Some(entries), Some(bits), Some(probes)) = (next(), next(), next()) else {
        return Err(Screened::Malformed("a sync summary's Bloom filter is truncated".into()));
    };
    if entries > max_entries as u64 {
        return Err(Screened::Malformed(format!(
            "a sync summary's Bloom filter lists {entries} changes, more than the {max_entries} any peer could have"
        )));
    }
    if !(1..=64).contains(&bits) {
        return Err(Screened::Malformed(format!(
            "a sync summary's Bloom filter has {bits} bits per entry; 1 to 64 are accepted"
        )));
    }
    if !(1..=32).contains(&probes) {
        return Err(Screened::Malformed(format!(
            "a sync summary's Bloom filter asks for {probes} probes per entry; 1 to 32 are accepted"
        )));
    }
    Ok(())
}

fn leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

/// The magic bytes that start every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The changes in one entry of a message: one or more Automerge chunks back to back,
/// each a change (its checksum verified) or a whole document.
fn split_chunk(index: usize, entry: &[u8]) -> Result<Vec<Change>, Screened> {
    let malformed = |what: &str| Screened::Malformed(format!("chunk {} {what}", index + 1));
    let mut changes = Vec::new();
    let mut rest = entry;
    while !rest.is_empty() {
        // magic (4), checksum (4), type (1), length (LEB128), data.
        if rest.len() < 9 || rest[..4] != MAGIC {
            return Err(malformed("is not Automerge data"));
        }
        let mut after_type = &rest[9..];
        let length = leb128(&mut after_type).ok_or_else(|| malformed("has a truncated header"))?;
        let header = rest.len() - after_type.len();
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| header.checked_add(l))
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| malformed("is cut short"))?;
        let (bytes, tail) = rest.split_at(end);
        match bytes[8] {
            // A document: self-contained, its checksum is its heads.
            0 => {
                let loaded = catch_unwind(AssertUnwindSafe(|| Automerge::load(bytes)))
                    .map_err(|_| malformed("holds a document that cannot be read"))?;
                match loaded {
                    Ok(doc) if doc.get_missing_deps(&[]).is_empty() => {
                        changes.extend(doc.get_changes(&[]));
                    }
                    _ => return Err(malformed("holds a damaged document")),
                }
            }
            // A change, plain or compressed.
            1 | 2 => {
                let change = Change::from_bytes(bytes.to_vec()).map_err(|_| {
                    malformed("holds a change that does not verify (a corrupted checksum?)")
                })?;
                changes.push(change);
            }
            other => return Err(malformed(&format!("holds a chunk of unknown type {other}"))),
        }
        rest = tail;
    }
    Ok(changes)
}

/// Refuses objects nested deeper than the schema: a chain of maps inside maps costs
/// more than its size to merge and to check.
fn check_depth(changes: &[Change], doc: &Automerge) -> Result<(), Screened> {
    let mut made: HashMap<(u64, ActorId), usize> = HashMap::new();
    let mut existing: HashMap<(u64, ActorId), usize> = HashMap::new();
    for change in changes {
        let expanded = catch_unwind(AssertUnwindSafe(|| change.decode()))
            .map_err(|_| Screened::Malformed("a change's operations cannot be decoded".into()))?;
        let start = expanded.start_op.get();
        for (i, op) in expanded.operations.iter().enumerate() {
            let OpType::Make(_) = op.action else { continue };
            let parent = match &op.obj {
                ObjectId::Root => 0,
                ObjectId::Id(OpId(counter, actor)) => {
                    let key = (*counter, actor.clone());
                    match made.get(&key) {
                        Some(depth) => *depth,
                        None => *existing.entry(key).or_insert_with(|| {
                            let id = ObjId::Id(*counter, actor.clone(), 0);
                            doc.parents(&id).map(|p| p.path().len()).unwrap_or(0)
                        }),
                    }
                }
            };
            let depth = parent + 1;
            if depth > MAX_DEPTH {
                return Err(Screened::Malformed(format!(
                    "it nests objects {depth} levels deep; the schema never goes deeper than {MAX_DEPTH}"
                )));
            }
            made.insert((start + i as u64, expanded.actor_id.clone()), depth);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use automerge::sync::{MessageVersion, SyncDoc};
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT};

    use super::*;

    const BOUNDS: Bounds = Bounds { max_changes: 100, max_ops_per_change: 50, max_ops: 200 };

    fn message(changes: Vec<Vec<u8>>) -> Message {
        Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: Vec::new(),
            changes: changes.into(),
            flags: None,
            version: MessageVersion::V1,
        }
    }

    fn doc_with(f: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        f(&mut tx);
        tx.commit();
        doc
    }

    #[test]
    fn an_honest_first_sync_passes_and_is_split_into_changes() {
        let doc = fivestar_core::CommunityDoc::new("fuhou", ActorId::random());
        let mut full = doc.automerge().clone();
        full.transact(|tx| tx.put(ROOT, "x", 1)).unwrap();
        let whole = message(vec![full.save()]);
        let (screened, ops, _) = screen(whole, &Automerge::new(), BOUNDS).unwrap();
        assert_eq!(screened.changes.iter().count(), 2);
        assert_eq!(ops, 4);
    }

    #[test]
    fn a_corrupted_change_is_refused_not_dropped() {
        let doc = doc_with(|tx| {
            tx.put(ROOT, "a", 1).unwrap();
        });
        let mut bytes = doc.get_changes(&[])[0].raw_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let refused = screen(message(vec![bytes]), &Automerge::new(), BOUNDS).unwrap_err();
        assert!(
            matches!(&refused, Screened::Malformed(m) if m.contains("does not verify")),
            "{refused:?}"
        );
    }

    #[test]
    fn changes_back_to_back_in_one_chunk_are_split() {
        let mut doc = doc_with(|tx| {
            tx.put(ROOT, "a", 1).unwrap();
        });
        let heads = doc.get_heads();
        doc.transact(|tx| tx.put(ROOT, "b", 2)).unwrap();
        doc.transact(|tx| tx.put(ROOT, "c", 3)).unwrap();
        let base = doc.fork_at(&heads).unwrap();
        let entry = doc.save_after(&heads);
        let (screened, ops, _) = screen(message(vec![entry]), &base, BOUNDS).unwrap();
        assert_eq!((screened.changes.iter().count(), ops), (2, 2));
        let junk = message(vec![b"not automerge".to_vec()]);
        assert!(screen(junk, &base, BOUNDS).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_before_it_is_merged() {
        let doc = doc_with(|tx| {
            let mut obj = ROOT;
            for _ in 0..8 {
                obj = tx.put_object(&obj, "m", ObjType::Map).unwrap();
            }
        });
        let bytes = doc.get_changes(&[])[0].raw_bytes().to_vec();
        let refused = screen(message(vec![bytes]), &Automerge::new(), BOUNDS).unwrap_err();
        assert_eq!(
            refused,
            Screened::Malformed(
                "it nests objects 6 levels deep; the schema never goes deeper than 5".into()
            )
        );
    }

    #[test]
    fn bounds_on_operations_and_changes_name_their_setting() {
        let doc = doc_with(|tx| {
            for i in 0..60 {
                tx.put(ROOT, format!("k{i}"), i).unwrap();
            }
        });
        let bytes = doc.get_changes(&[])[0].raw_bytes().to_vec();
        let refused = screen(message(vec![bytes]), &Automerge::new(), BOUNDS).unwrap_err();
        assert_eq!(
            refused,
            Screened::OverBound {
                what: "operations in one change",
                count: 60,
                limit: 50,
                setting: "limits.max_ops_per_change"
            }
        );
    }

    #[test]
    fn bloom_filters_with_impossible_sizes_are_refused() {
        // Entries but zero bits per entry: Automerge would divide by zero.
        assert!(check_bloom(&[3, 0, 7], 100).is_err());
        assert!(check_bloom(&[3, 10, 0], 100).is_err());
        // 2^25 probes.
        assert!(check_bloom(&[3, 10, 0x80, 0x80, 0x80, 0x10], 100).is_err());
        assert!(check_bloom(&[0xff, 0xff, 0x03, 10, 7], 100).is_err());
        assert!(check_bloom(&[3], 100).is_err());
        assert_eq!(check_bloom(&[3, 10, 7, 0, 0, 0, 0], 100), Ok(()));
        assert_eq!(check_bloom(&[], 100), Ok(()));
        // What Automerge itself writes passes.
        let mut a = Automerge::new();
        a.transact(|tx| tx.put(ROOT, "x", 1)).unwrap();
        let mut state = automerge::sync::State::new();
        let first = a.generate_sync_message(&mut state).unwrap();
        for have in &first.have {
            assert_eq!(check_bloom(&have.bloom.to_bytes(), 100), Ok(()));
        }
    }
}
