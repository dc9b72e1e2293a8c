//! The store side of one sync message: `cargo bench -p fivestar-hub --bench message`.
//!
//! What the hub does for one clerk's edit once the bytes have crossed TLS and HTTP/2,
//! step by step, on a real SQLite file (WAL, `synchronous = FULL`: the commit waits
//! for the disk, as an Ack promises): `prepare` (take the document, the community's
//! rules), `Merge::run` (screen, Automerge applies the message, the policy checks
//! the change), `commit` (the transaction and its fsync) and `generate` (the hub's
//! answer). A node replica makes each edit (a progress change on a 29-task document
//! with 200 edits of history, then with 2,000: a busy community's year) and takes the
//! answer, so every message is the real one.
//!
//! Then the same edits the way a session takes an edit that fits its store thread:
//! `receive_at_once`, all of it in one SQLite transaction and the answer generated
//! inside it.
//!
//! Set beside `fivestar-load`'s hub CPU per edit at one message per edit, the sum
//! says how much of that is the store side and how much is the network side (TLS,
//! HTTP/2, tonic, the session task, thread hand-offs) and the standings refresh.

use std::time::{Duration, Instant};

use automerge::ActorId;
use automerge::sync::{State, SyncDoc};
use chrono::Utc;
use fivestar_core::{CommunityDoc, Registry, Stamp, Standard, TaskEdit, Writer};
use fivestar_hub::config::HubConfig;
use fivestar_hub::store::{AtOnce, HubStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Edits before the timed ones (the document's history: a young one, and a busy
/// community's year), and timed edits.
const HISTORY: [usize; 2] = [200, 2000];
const TIMED: usize = 400;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// The CPU time this thread has used: a commit's wall time is mostly waiting for
/// the disk, which costs the hub no CPU.
fn cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("the thread's CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// A moment on both clocks.
#[derive(Clone, Copy)]
struct Mark {
    wall: Instant,
    cpu: Duration,
}

impl Mark {
    fn now() -> Mark {
        Mark { wall: Instant::now(), cpu: cpu() }
    }

    /// (wall, CPU) since `earlier`.
    fn since(self, earlier: Mark) -> (Duration, Duration) {
        (self.wall - earlier.wall, self.cpu.saturating_sub(earlier.cpu))
    }
}

/// One message from the node, through the hub's store: each step's (wall, CPU) time
/// (taken at once: all of it under `generate`, the others zero).
#[derive(Default)]
struct Steps {
    prepare: (Duration, Duration),
    run: (Duration, Duration),
    commit: (Duration, Duration),
    generate: (Duration, Duration),
}

struct Bench {
    store: HubStore,
    node: CommunityDoc,
    writer: Writer,
    doc_id: String,
    node_state: State,
    hub_state: State,
    pending: Vec<Vec<u8>>,
    bounds: fivestar_hub::guard::Bounds,
}

impl Bench {
    /// Syncs until neither side has anything to say; the steps of the first message
    /// the hub received.
    fn sync(&mut self, at_once: bool) -> Option<Steps> {
        let mut first = None;
        for _ in 0..20 {
            let from_node = self.node.automerge_mut().generate_sync_message(&mut self.node_state);
            let now = Utc::now().timestamp_millis();
            let started = Mark::now();
            let (answer, steps) = match from_node {
                Some(message) if at_once => {
                    let doc_id = self.doc_id.clone();
                    let stored = self
                        .store
                        .receive_at_once(
                            &self.writer,
                            &self.doc_id,
                            (&mut self.hub_state, &mut self.pending),
                            message,
                            (self.bounds, usize::MAX),
                            now,
                            None,
                            |state, pending, generator| {
                                // As a session does: the answer moves a copy of the
                                // next state, which the session keeps.
                                let mut state = state.clone();
                                let (answer, _heads) =
                                    generator.generate(&doc_id, &mut state, pending)?;
                                Ok((answer, state))
                            },
                        )
                        .expect("an honest node's message is accepted");
                    let AtOnce::Stored(_, (answer, state)) = stored else {
                        unreachable!("no message is over usize::MAX operations")
                    };
                    self.hub_state = state;
                    let steps = Steps { generate: Mark::now().since(started), ..Steps::default() };
                    (answer, Some(steps))
                }
                Some(message) => {
                    let merge = self.store.prepare(&self.writer, &self.doc_id).expect("prepare");
                    let prepared = Mark::now();
                    let merged = merge
                        .run(&self.hub_state, &self.pending, message, self.bounds)
                        .expect("an honest node's message is accepted");
                    let ran = Mark::now();
                    self.store
                        .commit(merged, &mut self.hub_state, &mut self.pending, now, None)
                        .expect("commit")
                        .expect("nobody else wrote");
                    let committed = Mark::now();
                    let (answer, _heads) = self
                        .store
                        .generate(&self.doc_id, &mut self.hub_state, &self.pending)
                        .expect("generate");
                    let steps = Steps {
                        prepare: prepared.since(started),
                        run: ran.since(prepared),
                        commit: committed.since(ran),
                        generate: Mark::now().since(committed),
                    };
                    (answer, Some(steps))
                }
                None => {
                    let (answer, _heads) = self
                        .store
                        .generate(&self.doc_id, &mut self.hub_state, &self.pending)
                        .expect("generate");
                    (answer, None)
                }
            };
            let received = steps.is_some();
            if first.is_none() {
                first = steps;
            }
            match answer {
                Some(answer) => self
                    .node
                    .automerge_mut()
                    .receive_sync_message(&mut self.node_state, answer)
                    .expect("the node takes the hub's answer"),
                None if !received => return first,
                None => {}
            }
        }
        panic!("the node and the hub did not agree within 20 rounds");
    }
}

/// `timed` edits' steps on a document with `history` edits before them.
fn measure(history: usize, timed: usize, at_once: bool) -> (usize, Vec<Steps>) {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let standard = Standard::sample();
    let registry = Registry::sample();
    // The community whose template has the most tasks.
    let community = registry
        .communities
        .iter()
        .max_by_key(|c| {
            let mut doc = CommunityDoc::new(&c.id, ActorId::random());
            doc.apply_template(standard.kind(c.kind)).map(|ids| ids.len()).unwrap_or(0)
        })
        .expect("a community");
    let kind = standard.kind(community.kind);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now = Utc::now().timestamp_millis();
    let mut store = HubStore::open(
        &dir.path().join("hub.db"),
        fivestar_core::standard::SAMPLE_STANDARD_TOML,
        fivestar_core::registry::SAMPLE_REGISTRY_TOML,
        now,
    )
    .expect("hub store");
    store.ensure_community(&community.id, now).expect("community document");
    let mut node = CommunityDoc::new(&community.id, ActorId::random());
    node.apply_template(kind).expect("template");
    let mut bench = Bench {
        store,
        node,
        writer: Writer::Device { community: community.id.clone(), device: "d1".into() },
        doc_id: fivestar_core::document::community_doc_id(&community.id),
        node_state: State::new(),
        hub_state: State::new(),
        pending: Vec::new(),
        bounds: HubConfig::default().message_bounds(),
    };
    bench.sync(at_once);
    let ids = bench.node.task_ids();
    let stamp = Stamp { by: "device d1".into(), at_ms: now };
    let edit = |bench: &mut Bench, rng: &mut StdRng| {
        let id = &ids[rng.random_range(0..ids.len())];
        let before = bench.node.automerge().get_heads();
        loop {
            let progress = Some(rng.random_range(0..=100));
            let change = TaskEdit { progress, ..TaskEdit::default() };
            bench.node.edit_task(kind, id, &change, &stamp).expect("edit");
            // The same progress again is no change: draw another.
            if bench.node.automerge().get_heads() != before {
                break;
            }
        }
        bench.sync(at_once).expect("the edit reached the hub")
    };
    for _ in 0..history {
        edit(&mut bench, &mut rng);
    }
    let steps = (0..timed).map(|_| edit(&mut bench, &mut rng)).collect();
    (ids.len(), steps)
}

fn main() {
    for history in HISTORY {
        let (tasks, steps) = measure(history, TIMED, false);
        let both = |step: fn(&Steps) -> (Duration, Duration)| {
            let wall = median(steps.iter().map(|s| step(s).0).collect());
            let cpu = median(steps.iter().map(|s| step(s).1).collect());
            format!("{:>7} {:>7}", us(wall), us(cpu))
        };
        println!(
            "one edit's message through the hub's store ({tasks} tasks, {history} edits of \
             history; medians of {TIMED}):"
        );
        println!("  step                                            wall     CPU");
        println!("  prepare (take the document, the rules)      {}", both(|s| s.prepare));
        println!("  merge (screen, Automerge applies, policy)   {}", both(|s| s.run));
        println!("  commit (SQLite transaction, WAL fsync)      {}", both(|s| s.commit));
        println!("  generate (the hub's answer)                 {}", both(|s| s.generate));
        println!(
            "  all four                                    {}",
            both(|s| {
                let sum = |f: fn(&(Duration, Duration)) -> Duration| {
                    f(&s.prepare) + f(&s.run) + f(&s.commit) + f(&s.generate)
                };
                (sum(|d| d.0), sum(|d| d.1))
            })
        );
        let (_, at_once) = measure(history, TIMED, true);
        let wall = median(at_once.iter().map(|s| s.generate.0).collect());
        let cpu = median(at_once.iter().map(|s| s.generate.1).collect());
        println!("  at once (one transaction, answered in it)   {:>7} {:>7}", us(wall), us(cpu));
    }
}
