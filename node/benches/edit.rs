//! A clerk's edit on the node: `cargo bench -p fivestar-node --bench edit`.
//!
//! A real node database (SQLite, WAL, `synchronous = FULL`) holding an agricultural
//! community (29 template tasks) with a year of history: 3,000 edits, the template
//! and a few own tasks, about ten edits a working day. Then, each the median of 200:
//! - one edit saved: read the document, change one field, the district's policy
//!   check, commit and fsync (what `fivestar-node task progress` does after start-up);
//! - loading the document from the store, and reading its tasks and scoring them
//!   (what `score` does);
//! - the policy check alone for one new change on that document.
//!
//! Seeded, so runs are comparable.

use std::time::{Duration, Instant};

use fivestar_core::{Kind, NewTask, Policy, Stamp, Standard, TaskEdit, TaskStatus, Writer, score};
use fivestar_node::store::Store;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// A tiny deterministic generator (xorshift), so the bench needs no extra crate.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn main() {
    let standard = Standard::sample();
    let kind = standard.kind(Kind::Agricultural).clone();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut store =
        Store::create(&dir.path().join("node.db"), "fangou", "d1", 1).expect("a node database");
    store.set_policy(Policy::new("fangou", &kind).expect("the policy"));
    let stamp = |n: i64| Stamp { by: "device d1".into(), at_ms: 1_780_000_000_000 + n * 60_000 };
    store.write(1, |doc| doc.apply_template(&kind).map(|_| ())).expect("store").expect("template");
    for i in 0..5 {
        let task = NewTask {
            id: format!("t-bench{i}"),
            star: "industry".into(),
            title: format!("自定任务 {i}"),
            points: 5,
            owner: "张伟".into(),
            due: None,
            note: None,
        };
        store.write(2, |doc| doc.add_task(&kind, task, &stamp(i))).expect("store").expect("add");
    }
    let ids: Vec<String> = store.read().expect("read").task_ids();
    let mut rng = Seeded(0x5eed);
    let year = 3_000;
    let started = Instant::now();
    for n in 0..year {
        let id = ids[rng.below(ids.len() as u64) as usize].clone();
        let roll = rng.below(100);
        store
            .write(3, |doc| {
                if roll < 70 {
                    let edit =
                        TaskEdit { progress: Some(rng.below(100) as u32), ..TaskEdit::default() };
                    doc.edit_task(&kind, &id, &edit, &stamp(n))
                } else if roll < 85 {
                    let edit = TaskEdit { status: Some(TaskStatus::Doing), ..TaskEdit::default() };
                    doc.edit_task(&kind, &id, &edit, &stamp(n))
                } else {
                    doc.add_note(&id, &format!("第 {n} 次检查：台账已更新"), &stamp(n))
                }
            })
            .expect("store")
            .expect("edit");
    }
    println!("a year of history: {year} edits saved in {:?}", started.elapsed());

    let mut saves = Vec::new();
    let mut loads = Vec::new();
    let mut scores = Vec::new();
    let mut checks = Vec::new();
    let writer = Writer::Device { community: "fangou".into(), device: "d1".into() };
    let policy = Policy::new("fangou", &kind).expect("the policy");
    for n in 0..200 {
        let id = ids[rng.below(ids.len() as u64) as usize].clone();
        let edit = TaskEdit { progress: Some((n % 99) as u32 + 1), ..TaskEdit::default() };
        let t = Instant::now();
        store
            .write(4, |doc| doc.edit_task(&kind, &id, &edit, &stamp(year + n)))
            .expect("store")
            .expect("edit");
        saves.push(t.elapsed());

        let t = Instant::now();
        let doc = store.read().expect("read");
        loads.push(t.elapsed());
        let t = Instant::now();
        let (tasks, _) = doc.read();
        let result = score(&kind, &tasks);
        scores.push(t.elapsed());
        assert_eq!(result.stars.len(), 5);

        let mut copy = doc.clone();
        let before = copy.heads();
        copy.edit_task(
            &kind,
            &id,
            &TaskEdit { owner: Some(format!("李{n}")), ..TaskEdit::default() },
            &stamp(year + n),
        )
        .expect("edit");
        let new = copy.automerge().get_changes(&before);
        let t = Instant::now();
        policy.check(&writer, copy.automerge(), &new).expect("allowed");
        checks.push(t.elapsed());
    }
    println!("one edit saved (read, edit, policy check, commit, fsync): {}", ms(median(saves)));
    println!("loading the document from the store: {}", ms(median(loads)));
    println!("reading its tasks and scoring them: {}", ms(median(scores)));
    println!("the policy check of one new change: {}", ms(median(checks)));
}
