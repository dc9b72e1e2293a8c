//! `fivestar-load`: what one sync message costs the hub, measured.
//!
//! A separate `fivestar-hub serve` process (pinned to CPU 0 with `taskset` where it
//! exists) and, in this process (pinned to CPU 1), N real community nodes: each its
//! own SQLite file, device certificate and `fivestar-node run` sync loop over gRPC
//! with mutual TLS on loopback. Every node applies the template and syncs; then each
//! makes E seeded edits (70 % progress, 15 % status, 15 % Chinese notes, one
//! Automerge change each, through the same checked writes a clerk's command makes),
//! optionally paced. It reports edits per second, the hub's CPU per edit (from
//! `/proc`), its peak RSS, sync messages and bytes per edit (from the hub's own
//! metrics), and the p50/p99 time from an edit being saved on its node to the hub's
//! acknowledgement that it is on disk; then a separate reader session (a reviewer
//! certificate) pulls every document from the hub and checks it holds every node's
//! final heads.
//!
//! ```sh
//! cargo build --release -p fivestar-hub -p fivestar-tests
//! target/release/fivestar-load --communities 88 --edits 50 --pace-ms 1000
//! target/release/fivestar-load --communities 88 --edits 500
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use automerge::sync::{Message, State, SyncDoc};
use clap::Parser;
use fivestar_core::{Community, Registry, Role, TaskEdit, TaskStatus, Writer};
use fivestar_hub::pki::Pki;
use fivestar_node::ops::{self, Context, Who};
use fivestar_node::store::Store;
use fivestar_proto::v1::hub_frame;
use fivestar_store::StoreThread;
use fivestar_tests::raw::{RawSession, connect};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(name = "fivestar-load", version, about = "Measure the hub's cost per sync message.")]
struct Args {
    /// Communities, each with one editing node (more than 88 adds generated ones).
    #[arg(long, default_value_t = 88)]
    communities: usize,
    /// Edits per node after the template.
    #[arg(long, default_value_t = 50)]
    edits: usize,
    /// Milliseconds between one node's edits (0: as fast as it saves).
    #[arg(long, default_value_t = 0)]
    pace_ms: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The CPU the hub is pinned to (with taskset); the driver takes the others.
    #[arg(long, default_value_t = 0)]
    hub_cpu: usize,
    /// The `fivestar-hub` binary (default: beside this one).
    #[arg(long)]
    hub: Option<PathBuf>,
    /// Keep the hub's and nodes' files here (default: a temporary folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Devices beside the editing nodes that connect, open a session and stay
    /// idle (a second, third... device of the communities): the connection scale.
    #[arg(long, default_value_t = 0)]
    idle_devices: usize,
    /// Print the results as JSON too.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let pinned = pin_self(args.hub_cpu);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, pinned)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Pins this process to every CPU but the hub's, with `taskset`, before any thread
/// starts (threads inherit it). Returns whether pinning is in force.
fn pin_self(hub_cpu: usize) -> bool {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpus < 2 {
        return false;
    }
    let others: Vec<String> = (0..cpus).filter(|c| *c != hub_cpu).map(|c| c.to_string()).collect();
    Command::new("taskset")
        .args(["-a", "-p", "-c", &others.join(","), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The district's registry, with generated communities beyond the sample's 88.
fn registry(communities: usize) -> Registry {
    let mut registry = Registry::sample();
    let base = registry.communities.clone();
    let mut n = 0;
    while registry.communities.len() < communities {
        let model = &base[n % base.len()];
        n += 1;
        registry.communities.push(Community {
            id: format!("load-{n}"),
            name: format!("负载社区 {n}"),
            ..model.clone()
        });
    }
    registry.communities.truncate(communities);
    registry
}

/// The hub: `pki init`, then `serve`, pinned when `taskset` is there.
struct HubProcess {
    child: Child,
    dir: PathBuf,
    port: u16,
    metrics: String,
}

impl HubProcess {
    fn start(
        binary: &Path,
        dir: &Path,
        communities: usize,
        devices: usize,
        cpu: usize,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(fail)?;
        let registry = registry(communities);
        std::fs::write(dir.join("registry.toml"), toml::to_string(&registry).map_err(fail)?)
            .map_err(fail)?;
        let (port, web) = (free_port(), free_port());
        let sessions = devices * 2 + 64;
        std::fs::write(
            dir.join("hub.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\ndashboard_listen = \"127.0.0.1:{web}\"\n\
                 registry = \"registry.toml\"\n\n[limits]\nmax_sessions = {sessions}\n\
                 max_connections = {sessions}\n"
            ),
        )
        .map_err(fail)?;
        let pki = Command::new(binary)
            .args(["--data-dir", &dir.display().to_string(), "pki", "init"])
            .output()
            .map_err(fail)?;
        if !pki.status.success() {
            return Err(format!("pki init: {}", String::from_utf8_lossy(&pki.stderr)));
        }
        let mut command = if Command::new("taskset").arg("-V").output().is_ok() {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let child = command
            .args(["--data-dir", &dir.display().to_string(), "serve"])
            .env("RUST_LOG", "warn")
            // As the hub's systemd unit and container image run it.
            .env("MALLOC_ARENA_MAX", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(fail)?;
        let hub =
            HubProcess { child, dir: dir.to_path_buf(), port, metrics: format!("127.0.0.1:{web}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while fivestar_tests::http_get(&hub.metrics, "/healthz").is_err() {
            if Instant::now() > deadline {
                return Err("the hub did not start within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(hub)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User and system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        fivestar_tests::cpu_seconds(self.pid())
    }

    /// A line of `/proc/PID/status`, in KiB.
    fn status_kib(&self, key: &str) -> u64 {
        fivestar_tests::proc_status_kib(self.pid(), key)
    }

    /// The sum of a metric's samples whose line starts with `prefix`.
    fn metric(&self, prefix: &str) -> f64 {
        let Ok((_, text)) = fivestar_tests::http_get(&self.metrics, "/metrics") else { return 0.0 };
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One editing node.
struct Node {
    community: Community,
    ctx: Arc<Context>,
    store: StoreThread<Store>,
    acked: watch::Receiver<Vec<ChangeHash>>,
}

/// The edits one node made: when each was saved, and its heads after it.
type Saved = Arc<Mutex<VecDeque<(Instant, usize, Vec<ChangeHash>)>>>;

/// Edit-to-acknowledgement times, with the community and the edit's number.
type Latencies = Arc<Mutex<Vec<(Duration, String, usize)>>>;

async fn start_node(
    pki: &Pki,
    community: &Community,
    dir: &Path,
    hub_port: u16,
    stop: watch::Receiver<bool>,
) -> Result<Node, String> {
    fivestar_tests::sim::create_node(
        pki,
        &fivestar_core::Standard::sample(),
        community,
        dir,
        std::net::SocketAddr::from(([127, 0, 0, 1], hub_port)),
    )?;
    let (ctx, store) = ops::open(dir).map_err(|f| f.message(fivestar_node::i18n::Lang::En))?;
    let acked = store.watch_acked();
    let store = StoreThread::spawn("node", store).map_err(fail)?;
    let (config, data_dir) = (ctx.config.clone(), dir.to_path_buf());
    tokio::spawn(fivestar_node::sync::run_daemon(store.clone(), config, data_dir, stop));
    Ok(Node { community: community.clone(), ctx: Arc::new(ctx), store, acked })
}

/// Saves one edit through the clerk's checked write and records it in `saved` (on
/// the store thread, before the sync loop can send it, so no acknowledgement can
/// come before the record); returns the heads after it.
async fn edit(
    node: &Node,
    rng: &mut StdRng,
    n: usize,
    saved: &Saved,
) -> Result<Vec<ChangeHash>, String> {
    let at = Instant::now();
    let saved = saved.clone();
    let roll = rng.random_range(0..100);
    let keys: Vec<String> =
        node.ctx.kind().stars.iter().flat_map(|s| s.tasks.iter().map(|t| t.key.clone())).collect();
    let task = keys[rng.random_range(0..keys.len())].clone();
    let step = rng.random_range(1..=100u32);
    let ctx = node.ctx.clone();
    node.store
        .call(move |store| -> Result<Vec<ChangeHash>, String> {
            let who = Who::default();
            let heads = ops::write(&ctx, store, &who, |doc, kind, stamp| {
                // Every edit changes something (an edit to the value a field already
                // has saves no change, and would wait for an acknowledgement that
                // never names it).
                let current = doc.task(&task)?;
                if roll < 70 {
                    let progress = (current.progress + step) % 101;
                    let edit = TaskEdit { progress: Some(progress), ..TaskEdit::default() };
                    doc.edit_task(kind, &task, &edit, stamp)?;
                } else if roll < 85 {
                    let status = [TaskStatus::Doing, TaskStatus::Done, TaskStatus::Todo]
                        .into_iter()
                        .cycle()
                        .skip(n % 3)
                        .find(|s| *s != current.status)
                        .unwrap_or(TaskStatus::Doing);
                    let edit = TaskEdit { status: Some(status), ..TaskEdit::default() };
                    doc.edit_task(kind, &task, &edit, stamp)?;
                } else {
                    doc.add_note(&task, &format!("第{n}次入户走访，记录群众意见"), stamp)?;
                }
                Ok(doc.heads())
            })
            .map_err(|f| f.message(fivestar_node::i18n::Lang::En))?;
            saved.lock().unwrap_or_else(|e| e.into_inner()).push_back((at, n, heads.clone()));
            Ok(heads)
        })
        .await
        .map_err(fail)?
}

/// Waits until the hub has acknowledged `target` (the node's heads).
async fn until_acked(node: &mut Node, target: &[ChangeHash], limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if node.acked.borrow_and_update().as_slice() == target {
            return true;
        }
        match tokio::time::timeout_at(deadline, node.acked.changed()).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
}

/// Records when each saved edit was acknowledged: an acknowledgement of the heads
/// after edit k covers every edit up to k (one node's edits form a line).
async fn watch_acks(
    mut acked: watch::Receiver<Vec<ChangeHash>>,
    saved: Saved,
    latencies: Latencies,
    community: String,
    mut done: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = acked.changed() => if changed.is_err() { return },
            _ = done.wait_for(|d| *d) => return,
        }
        let heads = acked.borrow_and_update().clone();
        let now = Instant::now();
        let mut saved = saved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = saved.iter().position(|(_, _, h)| *h == heads) {
            let mut out = latencies.lock().unwrap_or_else(|e| e.into_inner());
            for (t, n, _) in saved.drain(..=at) {
                out.push((now - t, community.clone(), n));
            }
        }
    }
}

/// Connects `count` idle devices (devices d2, d3... of the communities in turn), each
/// with its own certificate, connection and session, and holds them until `stop`.
/// Returns how many hold an open session once all have tried.
async fn hold_idle_devices(
    pki: &Pki,
    registry: &Registry,
    count: usize,
    root: &Path,
    url: &str,
    stop: watch::Receiver<bool>,
) -> Result<usize, String> {
    if count == 0 {
        return Ok(0);
    }
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = registry.communities.len();
    for i in 0..count {
        let community = &registry.communities[i % n];
        let device = format!("d{}", 2 + i / n);
        let dir = root.join("idle").join(format!("{}-{device}", community.id));
        let writer = Writer::Device { community: community.id.clone(), device };
        pki.issue(&writer, &dir).map_err(fail)?;
        let (url, open, tried, mut stop) =
            (url.to_string(), open.clone(), tried.clone(), stop.clone());
        tokio::spawn(async move {
            let session = async {
                let mut client = connect(&url, &dir).await.map_err(fail)?;
                let mut session = RawSession::open(&mut client).await.map_err(fail)?;
                match session.next().await.map_err(fail)? {
                    Some(hub_frame::Frame::Welcome(_)) => Ok((client, session)),
                    other => Err(format!("expected Welcome, got {other:?}")),
                }
            };
            let held = session.await;
            tried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match held {
                Ok((client, mut session)) => {
                    open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Reads what the hub pushes (its documents' changes), as a device
                    // does, until told to stop.
                    loop {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => break,
                            frame = session.next() => if !matches!(frame, Ok(Some(_))) { break },
                        }
                    }
                    drop((client, session));
                }
                Err(err) => eprintln!("an idle device could not connect: {err}"),
            }
        });
        // A few hundred connections at a time, as a district's devices come online.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while tried.load(std::sync::atomic::Ordering::SeqCst) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(open.load(std::sync::atomic::Ordering::SeqCst))
}

/// Pulls every document from the hub in a reviewer's session; returns their heads.
async fn read_all(hub: &str, certs: &Path) -> Result<BTreeMap<String, Vec<ChangeHash>>, String> {
    let mut client = connect(hub, certs).await.map_err(fail)?;
    let mut session = RawSession::open(&mut client).await.map_err(fail)?;
    let docs: Vec<String> = match session.next().await.map_err(fail)? {
        Some(hub_frame::Frame::Welcome(w)) => {
            w.documents.into_iter().map(|d| d.document_id).collect()
        }
        other => return Err(format!("expected Welcome, got {other:?}")),
    };
    let mut local: BTreeMap<String, (automerge::Automerge, State)> =
        docs.iter().map(|d| (d.clone(), Default::default())).collect();
    for turn in 1..=50u64 {
        let mut said = 0;
        for (id, (doc, state)) in local.iter_mut() {
            if let Some(message) = doc.generate_sync_message(state) {
                session.sync(id, message.encode()).await;
                said += 1;
            }
        }
        session.idle(turn).await;
        let frames = session.until_idle(turn).await.map_err(fail)?;
        let mut heard = 0;
        for frame in frames {
            if let hub_frame::Frame::Sync(m) = frame {
                let (doc, state) = local.get_mut(&m.document_id).ok_or("an unknown document")?;
                let message = Message::decode(&m.message).map_err(fail)?;
                doc.receive_sync_message(state, message).map_err(fail)?;
                heard += 1;
            }
        }
        if said == 0 && heard == 0 {
            break;
        }
    }
    Ok(local.into_iter().map(|(id, (doc, _))| (id, doc.get_heads())).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(args: Args, pinned: bool) -> Result<bool, String> {
    let temp = tempfile::tempdir().map_err(fail)?;
    let root = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let binary = match &args.hub {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(fail)?.with_file_name("fivestar-hub"),
    };
    let devices = args.communities + args.idle_devices;
    let hub =
        HubProcess::start(&binary, &root.join("hub"), args.communities, devices, args.hub_cpu)?;
    let url = format!("https://127.0.0.1:{}", hub.port);
    let pki = Pki::with_ca_dir(&hub.dir.join("pki"), &root.join("hub-ca"));
    let reader = root.join("reader");
    pki.issue(&Writer::Reviewer { name: "load-reader".into(), role: Role::Office }, &reader)
        .map_err(fail)?;
    let (stop_tx, stop) = watch::channel(false);
    let registry = registry(args.communities);
    let setup = Instant::now();
    let mut nodes = Vec::new();
    for community in &registry.communities {
        let dir = root.join("nodes").join(&community.id);
        nodes.push(start_node(&pki, community, &dir, hub.port, stop.clone()).await?);
    }
    // The template, on every node, then everything acknowledged.
    for node in &mut nodes {
        let ctx = node.ctx.clone();
        let heads = node
            .store
            .call(move |store| {
                ops::template_apply(&ctx, store, &Who::default())
                    .map_err(|f| f.message(fivestar_node::i18n::Lang::En))?;
                store.read().map(|d| d.heads()).map_err(fail)
            })
            .await
            .map_err(fail)??;
        if !until_acked(node, &heads, Duration::from_secs(120)).await {
            return Err(format!(
                "{}: the template was not acknowledged in 120 s",
                node.community.id
            ));
        }
    }
    // The idle devices: each its own certificate and session, held open.
    let idle =
        hold_idle_devices(&pki, &registry, args.idle_devices, &root, &url, stop.clone()).await?;
    let setup_seconds = setup.elapsed().as_secs_f64();

    // The edits.
    let cpu_before = hub.cpu_seconds();
    let merges_before = hub.metric("fivestar_hub_merge_duration_seconds_count");
    let bytes_before = hub.metric("fivestar_hub_sync_bytes_total");
    let latencies: Latencies = Arc::default();
    let (done_tx, done) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let saved: Saved = Arc::default();
        tokio::spawn(watch_acks(
            node.acked.clone(),
            saved.clone(),
            latencies.clone(),
            node.community.id.clone(),
            done.clone(),
        ));
        let (edits, pace, seed) = (args.edits, args.pace_ms, args.seed ^ (i as u64) << 20);
        tasks.push(tokio::spawn(async move {
            let mut node = node;
            let mut rng = StdRng::seed_from_u64(seed);
            if pace > 0 {
                // Spread the nodes over one pace, as clerks are.
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..pace))).await;
            }
            let mut last = Vec::new();
            for n in 0..edits {
                last = edit(&node, &mut rng, n, &saved).await?;
                if pace > 0 {
                    tokio::time::sleep(Duration::from_millis(pace)).await;
                }
            }
            let acked = until_acked(&mut node, &last, Duration::from_secs(300)).await;
            Ok::<_, String>((node, acked))
        }));
    }
    let mut nodes = Vec::new();
    let mut unacked = 0;
    for task in tasks {
        let (node, acked) = task.await.map_err(fail)??;
        unacked += usize::from(!acked);
        nodes.push(node);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = hub.cpu_seconds() - cpu_before;
    let merges = hub.metric("fivestar_hub_merge_duration_seconds_count") - merges_before;
    let bytes = hub.metric("fivestar_hub_sync_bytes_total") - bytes_before;
    let peak_kib = hub.status_kib("VmHWM:");
    let connections = hub.metric("fivestar_hub_open_connections");
    let _ = done_tx.send(true);

    // The hub holds every node's final heads: a reviewer's session pulls them all.
    let held = read_all(&url, &reader).await?;
    let mut missing = Vec::new();
    for node in &nodes {
        let heads =
            node.store.call(|s| s.read().map(|d| d.heads())).await.map_err(fail)?.map_err(fail)?;
        let id = fivestar_core::document::community_doc_id(&node.community.id);
        let mut theirs = held.get(&id).cloned().unwrap_or_default();
        let mut mine = heads;
        theirs.sort();
        mine.sort();
        if theirs != mine {
            missing.push(node.community.id.clone());
        }
    }
    let _ = stop_tx.send(true);

    let edits = (args.communities * args.edits) as f64;
    let mut measured = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    measured.sort();
    let sorted: Vec<Duration> = measured.iter().map(|(d, _, _)| *d).collect();
    let slowest: Vec<serde_json::Value> = measured
        .iter()
        .rev()
        .take(5)
        .map(|(d, c, n)| serde_json::json!({"ms": d.as_secs_f64() * 1000.0, "community": c, "edit": n}))
        .collect();
    let report = serde_json::json!({
        "communities": args.communities,
        "edits_per_node": args.edits,
        "pace_ms": args.pace_ms,
        "pinned": pinned,
        "setup_seconds": setup_seconds,
        "idle_devices": args.idle_devices,
        "idle_devices_held": idle,
        "hub_open_connections": connections,
        "edits": edits,
        "seconds": wall,
        "edits_per_second": edits / wall,
        "hub_cpu_ms_per_edit": cpu * 1000.0 / edits,
        "hub_peak_rss_mib": peak_kib as f64 / 1024.0,
        "messages_per_edit": merges / edits,
        "bytes_per_edit": bytes / edits,
        "ack_p50_ms": percentile(&sorted, 0.50),
        "ack_p99_ms": percentile(&sorted, 0.99),
        "acks_measured": sorted.len(),
        "slowest_acks": slowest,
        "unacknowledged_nodes": unacked,
        "documents_not_matching": missing,
    });
    println!(
        "{} communities x {} edits{}{}{}: {:.0} edits/s; hub CPU {:.3} ms/edit; hub peak RSS {:.0} MiB; \
         {:.2} messages and {:.0} bytes per edit; edit-to-ack p50 {:.0} ms, p99 {:.0} ms; \
         setup {:.1} s; hub holds every final head: {}",
        args.communities,
        args.edits,
        if args.idle_devices > 0 {
            format!(
                ", {idle} of {} idle devices held ({connections} connections open)",
                args.idle_devices
            )
        } else {
            String::new()
        },
        if args.pace_ms > 0 { format!(" paced {} ms", args.pace_ms) } else { String::new() },
        if pinned { " (hub pinned)" } else { "" },
        edits / wall,
        cpu * 1000.0 / edits,
        peak_kib as f64 / 1024.0,
        merges / edits,
        bytes / edits,
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        setup_seconds,
        if missing.is_empty() && unacked == 0 {
            "yes".to_string()
        } else {
            format!("NO: {missing:?}")
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    Ok(missing.is_empty() && unacked == 0 && idle == args.idle_devices)
}
