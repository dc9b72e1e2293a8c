//! Receiving a sync message at a cost that follows the message, not the history.
//!
//! Automerge 0.12's `receive_sync_message` trims the hashes this side sent
//! (`State::sent_hashes`) to those the peer's heads do not yet cover, by walking every
//! ancestor of those heads: the whole history, on every message, even when it sent
//! nothing. A hub rarely sends a device changes (its node made them), so that walk
//! trims an empty set. [`receive`] takes the same steps without the walk when there is
//! nothing to trim, and hands the message to Automerge otherwise. A test checks it
//! against Automerge's own over random exchanges, so an upgrade that changes what
//! receiving does fails that test instead of drifting.

use std::collections::HashSet;

use automerge::sync::{Capability, Message, MessageFlags, State, SyncDoc};
use automerge::{Automerge, AutomergeError, ChangeHash};

/// Applies `message` to `doc` and `state` exactly as
/// `Automerge::receive_sync_message` does.
pub(crate) fn receive(
    doc: &mut Automerge,
    state: &mut State,
    message: Message,
) -> Result<(), AutomergeError> {
    let resets = message.flags.is_some_and(|f| f.contains(MessageFlags::SYNC_RESET));
    if !state.sent_hashes.is_empty() && !resets {
        return doc.receive_sync_message(state, message);
    }
    state.in_flight = false;
    let before = doc.get_heads();
    let Message { heads, changes, need, have, flags, .. } = message;
    if let Some(flags) = flags {
        let mut capabilities = vec![Capability::MessageV2];
        if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
            capabilities.push(Capability::SyncReset);
        }
        state.their_capabilities = Some(capabilities);
        if flags.contains(MessageFlags::SYNC_RESET) {
            state.sent_hashes.clear();
        }
        state.peer_read_only = flags.contains(MessageFlags::READ_ONLY);
    }
    let no_changes = changes.is_empty();
    if !no_changes && !state.read_only {
        let mut joined = Vec::with_capacity(changes.iter().map(<[u8]>::len).sum());
        for chunk in changes.iter() {
            joined.extend_from_slice(chunk);
        }
        doc.load_incremental(&joined)?;
        state.shared_heads = advance_heads(&before, &doc.get_heads(), &state.shared_heads);
    }
    // Here Automerge trims `sent_hashes` by walking the peer's history; it is empty.
    if no_changes && heads == before {
        state.last_sent_heads.clone_from(&heads);
    }
    let known: Vec<ChangeHash> = heads.iter().filter(|h| has_change(doc, h)).copied().collect();
    if known.len() == heads.len() {
        state.shared_heads.clone_from(&heads);
        if heads.is_empty() {
            state.last_sent_heads = Vec::new();
            state.sent_hashes = Default::default();
        }
    } else {
        let mut shared: Vec<ChangeHash> =
            state.shared_heads.iter().chain(&known).copied().collect();
        shared.sort();
        shared.dedup();
        state.shared_heads = shared;
    }
    state.their_have = Some(have);
    state.their_heads = Some(heads);
    state.their_need = Some(need);
    Ok(())
}

/// Whether `doc` has applied the change `hash` (one waiting for its parents does not
/// count), as Automerge's own `has_change`, which it does not export.
pub(super) fn has_change(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_change_meta_by_hash(hash).is_some()
}

/// The heads both sides share after applying changes: this side's new heads that
/// were not heads before, and the shared heads still among the new heads; sorted.
fn advance_heads(
    before: &[ChangeHash],
    after: &[ChangeHash],
    shared: &[ChangeHash],
) -> Vec<ChangeHash> {
    let before: HashSet<&ChangeHash> = before.iter().collect();
    let after_set: HashSet<&ChangeHash> = after.iter().collect();
    let mut advanced: Vec<ChangeHash> = after
        .iter()
        .filter(|h| !before.contains(h))
        .chain(shared.iter().filter(|h| after_set.contains(h)))
        .copied()
        .collect();
    advanced.sort();
    advanced.dedup();
    advanced
}

#[cfg(test)]
mod tests {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn edit(doc: &mut Automerge, rng: &mut StdRng) {
        let mut tx = doc.transaction();
        let key = format!("k{}", rng.random_range(0..6));
        tx.put(ROOT, key, rng.random_range(0..1000_i64)).expect("put");
        tx.commit();
    }

    /// Three replicas (a hub and two devices) edit and sync in random order; every
    /// message the hub receives goes through `receive` and, on a copy, through
    /// Automerge's own. Documents and sync states must come out the same.
    #[test]
    fn receiving_matches_automerge_over_random_exchanges() {
        let (mut fast_path, mut automerges) = (0, 0);
        for seed in 0..12_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut hub = Automerge::new();
            edit(&mut hub, &mut rng);
            let mut devices = [hub.fork(), hub.fork()];
            // Per device: its state for the hub, the hub's state for it.
            let mut states = [(State::new(), State::new()), (State::new(), State::new())];
            for _ in 0..150 {
                let d = rng.random_range(0..2);
                match rng.random_range(0..5) {
                    0 => edit(&mut devices[d], &mut rng),
                    1 => edit(&mut hub, &mut rng),
                    2 => {
                        // The hub speaks to device d (and it answers nothing yet).
                        if let Some(m) = hub.generate_sync_message(&mut states[d].1) {
                            devices[d].receive_sync_message(&mut states[d].0, m).expect("device");
                        }
                    }
                    3 if rng.random_bool(0.1) => {
                        // A reconnect: both sides start their session state afresh.
                        states[d] = (State::new(), State::new());
                    }
                    _ => {
                        let Some(m) = devices[d].generate_sync_message(&mut states[d].0) else {
                            continue;
                        };
                        let (mut theirs, mut their_state) = (hub.clone(), states[d].1.clone());
                        if states[d].1.sent_hashes.is_empty() {
                            fast_path += 1;
                        } else {
                            automerges += 1;
                        }
                        receive(&mut hub, &mut states[d].1, m.clone()).expect("ours");
                        theirs.receive_sync_message(&mut their_state, m).expect("Automerge's");
                        assert_eq!(hub.get_heads(), theirs.get_heads(), "seed {seed}");
                        assert_eq!(states[d].1, their_state, "seed {seed}");
                    }
                }
            }
        }
        // Both ways were taken, often.
        assert!(fast_path > 100, "the walk-free way ran {fast_path} times");
        assert!(automerges > 20, "Automerge's own ran {automerges} times");
    }
}
