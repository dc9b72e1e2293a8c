//! Crash safety: a write that reported success survives SIGKILL at any moment,
//! and two processes writing at once lose nothing.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fivestar_tests::NodeDir;

/// A small deterministic generator, so a failing run can be repeated exactly.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn notes(node: &NodeDir, id: &str) -> BTreeSet<String> {
    node.task(id)["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_string())
        .collect()
}

fn integrity(node: &NodeDir) -> String {
    let conn = rusqlite::Connection::open(node.database()).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

#[test]
fn sigkill_during_a_burst_of_writes_loses_no_reported_write() {
    let node = NodeDir::with_template("fuhou");
    // How long one write takes here, so kills land before, during and after commits.
    let started = Instant::now();
    for i in 0..3 {
        node.ok(&["task", "note", "u-safety-grid", &format!("warm-up {i}")]);
    }
    let one_write = started.elapsed() / 3;
    let mut rng = Lcg(0x5eed_f1e5);
    let mut reported = BTreeSet::new();
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..60 {
        assert!(Instant::now() < deadline, "the burst is taking too long");
        let text = format!("burst {i}");
        let mut child = node
            .command(&["task", "note", "u-safety-grid", &text])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = one_write.mul_f64(rng.below(150) as f64 / 100.0);
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
                if status.success() && out.starts_with("Saved") {
                    reported.insert(text);
                }
            }
            None => {
                child.kill().unwrap(); // SIGKILL on Unix
                child.wait().unwrap();
                killed += 1;
            }
        }
    }
    assert!(killed > 0, "no process was killed: the test did not test a crash");
    assert!(!reported.is_empty(), "no write finished: the test did not test survival");
    let stored = notes(&node, "u-safety-grid");
    let lost: Vec<_> = reported.difference(&stored).collect();
    assert!(lost.is_empty(), "writes reported saved but lost: {lost:?}");
    assert_eq!(integrity(&node), "ok");
    // And the node still works after the crashes.
    node.ok(&["task", "note", "u-safety-grid", "after the storm"]);
    assert!(notes(&node, "u-safety-grid").contains("after the storm"));
}

#[test]
fn two_processes_writing_at_once_lose_nothing() {
    let node = NodeDir::with_template("fuhou");
    let writer = |prefix: &'static str| {
        let children: Vec<_> = (0..12)
            .map(|i| {
                node.command(&["task", "note", "u-safety-hazards", &format!("{prefix} {i}")])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
    };
    // 24 processes of one device, all racing for the same document.
    let mut children = writer("a");
    children.extend(writer("b"));
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let stored = notes(&node, "u-safety-hazards");
    assert_eq!(stored.len(), 24, "{stored:?}");
    assert_eq!(integrity(&node), "ok");
}
