//! Evidence-file upload at the district's scale: every community's node uploads a
//! photo at once to a real `fivestar-hub serve` over mutual TLS on loopback.
//! Reports throughput, the hub's CPU time and its peak memory for two file sizes,
//! to show memory does not grow with the size of a file; then the same with real
//! 12-megapixel photos, whose previews the hub makes as they arrive (one decode at a
//! time), timed until every preview is made.
//!
//! Build the binaries first (release), then run:
//!
//! ```sh
//! cargo build --release -p fivestar-hub -p fivestar-node
//! cargo bench -p fivestar-tests --bench files            # 88 nodes, 1 and 8 MiB
//! FIVESTAR_BENCH_NODES=20 cargo bench -p fivestar-tests --bench files
//! ```

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use fivestar_core::Registry;
use fivestar_tests::{Hub, NodeDir};

use fivestar_tests::{cpu_seconds, proc_status_kib as proc_status};

fn photo(mib: usize, seed: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend(
        (0..mib * 1024 * 1024 - 4).map(|i| ((i ^ seed).wrapping_mul(2_654_435_761) >> 11) as u8),
    );
    bytes
}

/// What each node uploads.
enum Upload {
    /// `n` MiB that start like a JPEG (no preview can be made): the transfer alone.
    Bytes(usize),
    /// One real photo of this many pixels, the same for every community (files are
    /// kept per community, so each is uploaded and previewed on its own).
    Photo(u32, u32),
}

/// How many previews (made or known impossible) the hub has recorded.
fn previews(hub: &Hub) -> usize {
    let db = rusqlite::Connection::open_with_flags(
        hub.path().join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT COUNT(*) FROM file_thumbs WHERE thumb IS NOT NULL", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap_or(0) as usize
}

fn run(nodes: usize, upload: Upload) {
    let hub = Hub::started();
    let pid = hub.pid().unwrap();
    let registry = Registry::sample();
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    let shared = match upload {
        Upload::Photo(w, h) => Some(fivestar_tests::photo(w, h)),
        Upload::Bytes(_) => None,
    };
    let mut total = 0usize;
    for (i, community) in registry.communities.iter().take(nodes).enumerate() {
        let node = NodeDir::for_hub(&hub, &community.id, "d1");
        let file = dir.path().join(format!("{i}.jpg"));
        let bytes = match (&upload, &shared) {
            (_, Some(photo)) => photo.clone(),
            (Upload::Bytes(mib), _) => photo(*mib, i),
            (Upload::Photo(..), None) => unreachable!(),
        };
        total += bytes.len();
        std::fs::write(&file, bytes).unwrap();
        node.ok(&["task", "attach", &community_task(community.kind), file.to_str().unwrap()]);
        all.push(node);
    }
    let rss_before = proc_status(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let children: Vec<_> = all
        .iter()
        .map(|node| node.command(&["sync"]).stdout(std::process::Stdio::null()).spawn().unwrap())
        .collect();
    let mut peak = 0;
    let mut children = children;
    while started.elapsed() < Duration::from_secs(600) {
        peak = peak.max(proc_status(pid, "VmRSS:"));
        if children.iter_mut().all(|c| c.try_wait().ok().flatten().is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let waiting: u64 =
        all.iter().map(|n| n.json(&["status"])["files_waiting"].as_u64().unwrap_or(1)).sum();
    let bytes = total as f64;
    let what = match upload {
        Upload::Bytes(mib) => format!("{mib:>2} MiB"),
        Upload::Photo(w, h) => {
            format!("{w}x{h} photo of {:.1} MiB", bytes / nodes as f64 / 1048576.0)
        }
    };
    println!(
        "{nodes:>4} nodes x {what}: {:>6.1} MiB in {wall:>5.1} s = {:>6.1} MiB/s; hub CPU {cpu:>5.1} s \
         ({:.1} ms per MiB); hub RSS {} MiB before, peak {} MiB; files still waiting: {waiting}",
        bytes / 1048576.0,
        bytes / 1048576.0 / wall,
        cpu * 1000.0 / (bytes / 1048576.0),
        rss_before / 1024,
        peak / 1024,
    );
    if let Upload::Photo(..) = upload {
        // The previews, made one at a time after each photo arrived whole.
        while previews(&hub) < nodes && started.elapsed() < Duration::from_secs(900) {
            peak = peak.max(proc_status(pid, "VmRSS:"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let made = previews(&hub);
        let all_wall = started.elapsed().as_secs_f64();
        let all_cpu = cpu_seconds(pid) - cpu_before;
        println!(
            "     previews: {made} of {nodes} made {all_wall:.1} s after the start; hub CPU {all_cpu:.1} s \
             in all, {:.0} ms per photo (upload and preview); hub RSS peak {} MiB",
            all_cpu * 1000.0 / nodes as f64,
            peak / 1024,
        );
    }
}

fn community_task(kind: fivestar_core::Kind) -> String {
    match kind {
        fivestar_core::Kind::Urban => "u-safety-grid".into(),
        fivestar_core::Kind::Agricultural => "a-industry-jobs".into(),
    }
}

fn main() {
    let nodes =
        std::env::var("FIVESTAR_BENCH_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(88);
    run(nodes, Upload::Bytes(1));
    run(nodes, Upload::Bytes(8));
    run(nodes, Upload::Photo(4000, 3000));
}
