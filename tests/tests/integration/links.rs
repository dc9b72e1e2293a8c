//! Sync on bad links (issue 17): real `fivestar-node run` daemons and a real hub on
//! loopback, some behind a fault-injecting TCP proxy (a delay on every byte, or a
//! blackhole that accepts bytes and answers nothing), or pointed at a listener that
//! never answers. No edit waits for the heartbeat, no stalled link holds the node,
//! Ctrl-C and SIGTERM stop it promptly in every phase, and a hub restart is followed
//! by a quick, spread-out return of every node. Every loop is bounded in count and
//! time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use fivestar_tests::{Hub, NodeDir, eventually};

/// A loopback TCP proxy in front of the hub, on plain threads: every byte is delayed
/// by `delay` each way (latency, not a rate limit), and [`LinkProxy::blackhole`] makes
/// every connection swallow what it is sent and answer nothing, as a dead radio link
/// does (not even a closed connection gets through).
struct LinkProxy {
    addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// Bytes forwarded from the node to the hub.
    upstream: Arc<AtomicU64>,
}

impl LinkProxy {
    fn start(target: SocketAddr, delay: Duration) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = LinkProxy {
            addr: listener.local_addr().unwrap(),
            blackhole: Arc::new(AtomicBool::new(false)),
            closing: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
            upstream: Arc::new(AtomicU64::new(0)),
        };
        let (blackhole, closing, open) =
            (proxy.blackhole.clone(), proxy.closing.clone(), proxy.open.clone());
        let upstream = proxy.upstream.clone();
        thread::spawn(move || {
            while !closing.load(Ordering::SeqCst) {
                let inbound = match listener.accept() {
                    Ok((inbound, _)) => inbound,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => return,
                };
                let Ok(outbound) = TcpStream::connect(target) else { continue };
                for stream in [&inbound, &outbound] {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_nodelay(true);
                    open.lock().unwrap().push(stream.try_clone().unwrap());
                }
                let link = (delay, blackhole.clone(), closing.clone());
                pump(
                    inbound.try_clone().unwrap(),
                    outbound.try_clone().unwrap(),
                    link.clone(),
                    Some(upstream.clone()),
                );
                pump(outbound, inbound, link, None);
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Cuts every open connection at once, as a link that drops does; new
    /// connections go through again.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Swallows every byte from now on (`true`), or forwards again (`false`).
    fn blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; drops what is read
/// while the link is blackholed. The reader ends when `from` does (or the proxy
/// closes); the writer then ends `to`'s write side, unless the link is a blackhole.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    link: (Duration, Arc<AtomicBool>, Arc<AtomicBool>),
    count: Option<Arc<AtomicU64>>,
) {
    let (delay, blackhole, closing) = link;
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0_u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if blackhole.load(Ordering::SeqCst) {
                continue;
            }
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
        // A blackhole does not pass on a closed connection either.
        while blackhole.load(Ordering::SeqCst) && !closing.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        drop(tx);
    });
    thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                return;
            }
            if let Some(count) = &count {
                count.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A running `fivestar-node run`, killed if the test ends without stopping it.
struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts the daemon; its log goes to `daemon.log` in the data directory.
    fn start(node: &NodeDir) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.path().join("daemon.log"))
            .unwrap();
        let child = node
            .command(&["run"])
            .env("RUST_LOG", "info,fivestar_node=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child }
    }

    /// Sends `signal` (`INT` or `TERM`) and waits at most 10 s for the daemon to end:
    /// how long it took and how it ended.
    fn stop_with(&mut self, signal: &str) -> (Duration, ExitStatus) {
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (start.elapsed(), status);
            }
            thread::sleep(Duration::from_millis(5));
        }
        panic!("SIG{signal} did not stop the daemon within 10 s");
    }

    /// Stops the daemon with `signal` and requires it to end, cleanly, within 2 s.
    fn stop_promptly(&mut self, signal: &str, phase: &str) -> Duration {
        let (took, status) = self.stop_with(signal);
        assert!(status.success(), "SIG{signal} {phase}: the daemon ended with {status}");
        assert!(took < Duration::from_secs(2), "SIG{signal} {phase}: the daemon took {took:?}");
        took
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of a node's sync log.
#[derive(Debug, Clone)]
struct Attempt {
    started_ms: i64,
    finished_ms: Option<i64>,
    ok: bool,
    error: Option<String>,
}

/// The node's sync log, oldest first, read straight from its database.
fn attempts(node: &NodeDir) -> Vec<Attempt> {
    let conn = rusqlite::Connection::open(node.database()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut query = conn
        .prepare("SELECT started_ms, finished_ms, ok, error FROM sync_attempts ORDER BY id")
        .unwrap();
    query
        .query_map([], |row| {
            Ok(Attempt {
                started_ms: row.get(0)?,
                finished_ms: row.get(1)?,
                ok: row.get::<_, i64>(2)? != 0,
                error: row.get(3)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The hub's address, for a proxy in front of it.
fn hub_addr(hub: &Hub) -> SocketAddr {
    hub.url().trim_start_matches("https://").parse().unwrap()
}

/// A node of `community` that syncs through `url` (the hub, a proxy, or a stall).
fn node_via(hub: &Hub, community: &str, url: &str) -> NodeDir {
    let node = NodeDir::for_hub(hub, community, "d1");
    node.set_config("hub", &format!("{url:?}"));
    node.set_config("metrics_listen", "\"\"");
    node
}

/// Waits (at most `limit`) until the node's daemon has finished a round.
fn wait_for_a_round(node: &NodeDir, since_ms: i64, limit: Duration) {
    let synced =
        eventually(limit, || attempts(node).iter().any(|a| a.ok && a.started_ms >= since_ms));
    assert!(synced, "no round finished within {limit:?}: {:?}", attempts(node));
}

/// The p-th percentile (nearest rank) of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[test]
fn edits_saved_between_and_during_rounds_reach_the_hub_within_a_second_over_a_slow_link() {
    let hub = Hub::started();
    let proxy = LinkProxy::start(hub_addr(&hub), Duration::from_millis(100));
    let node = node_via(&hub, "fangou", &proxy.url());
    let task = "a-industry-jobs";
    let start = now_ms();
    let mut daemon = Daemon::start(&node);
    wait_for_a_round(&node, start, Duration::from_secs(20));

    // A watcher notes when each saved change is first acknowledged, while edits go on.
    let (saved_tx, saved_rx) = mpsc::channel::<(ChangeHash, Instant)>();
    let database = node.database();
    let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = acknowledged.clone();
    let watcher = thread::spawn(move || {
        let mut store = fivestar_node::store::Store::open(&database, "fangou").unwrap();
        let doc_id = fivestar_core::document::community_doc_id("fangou");
        let mut in_flight: BTreeMap<ChangeHash, Instant> = BTreeMap::new();
        let mut latencies = Vec::new();
        let mut all_saved = false;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && !(all_saved && in_flight.is_empty()) {
            loop {
                match saved_rx.try_recv() {
                    Ok((hash, saved)) => {
                        in_flight.insert(hash, saved);
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        all_saved = true;
                        break;
                    }
                }
            }
            if !in_flight.is_empty() {
                let acked = store.acked_heads(&doc_id).unwrap();
                let doc = store.read().unwrap();
                let unacked: Vec<ChangeHash> =
                    doc.automerge().get_changes(&acked).iter().map(|c| c.hash()).collect();
                let now = Instant::now();
                in_flight.retain(|hash, saved| {
                    let still = unacked.contains(hash);
                    if !still {
                        latencies.push(now - *saved);
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    still
                });
            }
            thread::sleep(Duration::from_millis(2));
        }
        (latencies, in_flight.len())
    });
    // Bursts of three notes; the second and third follow the first after gaps that land
    // them before, during and just after the round the first one starts (a round over
    // this link takes two round trips, about 400 ms here). Each burst must be
    // acknowledged before the next starts, so a missed last edit cannot ride along
    // with the next burst: it would wait for the heartbeat.
    let mut store = fivestar_node::store::Store::open(&node.database(), "fangou").unwrap();
    let (bursts, per_burst) = (10_u64, 3_u64);
    let edits = bursts * per_burst;
    for burst in 0..bursts {
        for edit in 0..per_burst {
            if edit > 0 {
                thread::sleep(Duration::from_millis((burst * 97 + edit * 173) % 700));
            }
            node.ok(&["task", "note", task, &format!("burst {burst} note {edit}")]);
            let saved = Instant::now();
            let head = store.read().unwrap().automerge().get_heads()[0];
            saved_tx.send((head, saved)).unwrap();
        }
        let done = (burst + 1) * per_burst;
        let acked =
            eventually(Duration::from_secs(5), || acknowledged.load(Ordering::SeqCst) == done);
        assert!(acked, "burst {burst} was not acknowledged within 5 s");
    }
    drop(saved_tx);
    let (mut latencies, unacknowledged) = watcher.join().unwrap();
    daemon.stop_promptly("INT", "while connected");
    assert_eq!(unacknowledged, 0, "edits not acknowledged within the bound");
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies[latencies.len() - 1],
    );
    println!(
        "save-to-ack over a 100 ms link, {} edits: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    assert_eq!(latencies.len() as u64, edits);
    // Within a second on a quiet machine; the bound leaves room for a busy test run,
    // and is far below the 30 s heartbeat an unnoticed edit used to wait for.
    assert!(max < Duration::from_secs(2), "an edit waited {max:?} for its acknowledgement");
    assert_eq!(hub.notes("fangou", task).len() as u64, edits, "every note is at the hub");
}

#[test]
fn a_stalled_handshake_ends_within_the_deadline_with_a_clear_status_and_backs_off() {
    let hub = Hub::new("");
    // Completes TCP connections (the kernel does, from its backlog) and never answers.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let node = node_via(&hub, "fuhou", &format!("https://{}", stall.local_addr().unwrap()));
    node.set_config("handshake_timeout_seconds", "2");
    node.set_config("backoff_initial_seconds", "1.0");
    let said = "the district did not answer within 2 s (setting up the connection)";

    // One-shot sync: fails at the deadline, says why, and `status` keeps it.
    let start = Instant::now();
    let (code, stderr) = node.fail(&["sync"]);
    let took = start.elapsed();
    assert_eq!(code, 1);
    assert!(stderr.contains(said), "{stderr}");
    assert!(took < Duration::from_secs(5), "the stalled sync took {took:?}");
    let status = node.json(&["status"]);
    assert!(status["last_error"]["error"].as_str().unwrap().contains(said), "{status}");

    // The daemon: each attempt ends at the deadline, the next follows the backoff
    // (between half and all of 1 s, then of 2 s, with this configuration).
    let before = attempts(&node).len();
    let mut daemon = Daemon::start(&node);
    let three = eventually(Duration::from_secs(15), || {
        attempts(&node)[before..].iter().filter(|a| a.finished_ms.is_some()).count() >= 3
    });
    assert!(three, "three attempts did not finish: {:?}", attempts(&node));
    let log = attempts(&node)[before..].to_vec();
    for attempt in log.iter().filter(|a| a.finished_ms.is_some()) {
        let lasted = attempt.finished_ms.unwrap() - attempt.started_ms;
        assert!(!attempt.ok);
        assert!(attempt.error.as_deref().unwrap().contains(said), "{attempt:?}");
        assert!((1_900..3_500).contains(&lasted), "an attempt lasted {lasted} ms: {attempt:?}");
    }
    let gap = |i: usize| log[i + 1].started_ms - log[i].finished_ms.unwrap();
    assert!((450..1_500).contains(&gap(0)), "first backoff {} ms: {log:?}", gap(0));
    assert!((950..2_500).contains(&gap(1)), "second backoff {} ms: {log:?}", gap(1));
    let status = node.ok(&["status"]);
    assert!(status.contains(said), "{status}");

    // Ctrl-C and SIGTERM in the middle of a stalled handshake.
    let mut started = now_ms();
    for signal in ["INT", "TERM"] {
        // An attempt of this daemon (a stopped one leaves its own unfinished).
        let in_handshake = eventually(Duration::from_secs(10), || {
            attempts(&node).last().is_some_and(|a| {
                a.started_ms >= started && a.finished_ms.is_none() && now_ms() - a.started_ms > 500
            })
        });
        assert!(in_handshake, "no attempt in its handshake: {:?}", attempts(&node));
        let took = daemon.stop_promptly(signal, "during a stalled handshake");
        println!("SIG{signal} during a stalled handshake: stopped in {took:?}");
        if signal == "INT" {
            started = now_ms();
            daemon = Daemon::start(&node);
        }
    }
    drop(stall);
}

/// A loopback listener whose accept queue is full, and the connections that fill it:
/// the kernel drops every further SYN, so a TCP connection to it never opens, as on a
/// link that is down below TCP.
fn full_listener() -> (std::net::TcpListener, Vec<TcpStream>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let listener = {
        let _inside = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(0).unwrap().into_std().unwrap()
    };
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(_) => return (listener, held),
        }
    }
    panic!("the accept queue did not fill after {} connections", held.len());
}

#[test]
fn a_tcp_connection_that_never_opens_ends_at_the_connect_deadline() {
    let hub = Hub::new("");
    let (listener, _held) = full_listener();
    let node = node_via(&hub, "fuhou", &format!("https://{}", listener.local_addr().unwrap()));
    node.set_config("connect_timeout_seconds", "1");
    let start = Instant::now();
    let (_, stderr) = node.fail(&["sync"]);
    let took = start.elapsed();
    assert!(
        stderr.contains("the district did not answer within 1 s (opening the TCP connection)"),
        "{stderr}"
    );
    // No second wait: without a TCP connection there is no handshake to probe.
    assert!(took < Duration::from_secs(3), "the sync took {took:?}");
}

#[test]
fn ctrl_c_and_sigterm_stop_the_daemon_within_two_seconds_mid_round_and_nothing_is_lost() {
    let hub = Hub::started();
    let proxy = LinkProxy::start(hub_addr(&hub), Duration::ZERO);
    let node = node_via(&hub, "yuyuan", &proxy.url());
    let task = "u-safety-grid";
    let mut saved = std::collections::BTreeSet::new();
    for signal in ["INT", "TERM"] {
        proxy.blackhole(false);
        let start = now_ms();
        let mut daemon = Daemon::start(&node);
        wait_for_a_round(&node, start, Duration::from_secs(20));
        // The link goes dead under a connected daemon; an edit starts a round that
        // can never finish (its turn deadline is a minute away).
        proxy.blackhole(true);
        let text = format!("saved before SIG{signal}");
        let edited = now_ms();
        node.ok(&["task", "note", task, &text]);
        saved.insert(text);
        let mid_round = eventually(Duration::from_secs(5), || {
            attempts(&node).last().is_some_and(|a| {
                a.started_ms >= edited && a.finished_ms.is_none() && now_ms() - a.started_ms > 300
            })
        });
        assert!(mid_round, "no round in progress: {:?}", attempts(&node));
        let took = daemon.stop_promptly(signal, "during a blackholed round");
        println!("SIG{signal} during a blackholed round: stopped in {took:?}");
        assert_eq!(node.notes(task), saved, "what was saved is still on the node");
    }
    // The link heals: everything saved reaches the hub; a stop while connected and
    // idle is prompt too, and closes the session cleanly.
    proxy.blackhole(false);
    let mut daemon = Daemon::start(&node);
    let reached = eventually(Duration::from_secs(30), || hub.notes("yuyuan", task) == saved);
    assert!(reached, "the saved notes did not reach the hub: {:?}", hub.notes("yuyuan", task));
    let took = daemon.stop_promptly("TERM", "while connected");
    println!("SIGTERM while connected: stopped in {took:?}");
    assert_eq!(node.json(&["status"])["unacknowledged_changes"], 0);
}

/// How many daemons the hub-restart test runs (`FIVESTAR_LINKS_DAEMONS`, at most the
/// district's 88; 10 by default to keep the run short) and how long the hub stays down
/// (`FIVESTAR_LINKS_OUTAGE_SECONDS`, 25 by default: long enough for every node's
/// backoff to reach its cap).
fn restart_scale() -> (usize, u64) {
    let read = |name: &str, default: u64, max: u64| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default).clamp(1, max)
    };
    (
        read("FIVESTAR_LINKS_DAEMONS", 10, 88) as usize,
        read("FIVESTAR_LINKS_OUTAGE_SECONDS", 25, 600),
    )
}

#[test]
fn after_a_hub_restart_every_daemon_is_back_within_30_s_and_their_returns_are_spread() {
    let (count, outage) = restart_scale();
    let mut hub = Hub::started();
    let registry = fivestar_core::Registry::sample();
    let nodes: Vec<(String, NodeDir)> = registry
        .communities
        .iter()
        .take(count)
        .map(|c| (c.id.clone(), node_via(&hub, &c.id, &hub.url())))
        .collect();
    let start = now_ms();
    let mut daemons: Vec<Daemon> = nodes.iter().map(|(_, node)| Daemon::start(node)).collect();
    for (_, node) in &nodes {
        wait_for_a_round(node, start, Duration::from_secs(60));
    }

    // The hub dies; every community saves an edit meanwhile.
    hub.kill();
    let mut notes = BTreeMap::new();
    for (id, node) in &nodes {
        let tasks = node.json(&["task", "list"]);
        let task = tasks[0]["id"].as_str().unwrap().to_string();
        node.ok(&["task", "note", &task, "saved while the hub was down"]);
        notes.insert(id.clone(), task);
    }
    thread::sleep(Duration::from_secs(outage));
    let restart = now_ms();
    hub.start();
    let listening = now_ms() - restart;

    // Every node's first successful round after the restart: when it started, when
    // it ended.
    let back =
        |node: &NodeDir| attempts(node).into_iter().find(|a| a.ok && a.started_ms >= restart);
    let all_back =
        eventually(Duration::from_secs(45), || nodes.iter().all(|(_, node)| back(node).is_some()));
    let mut starts = Vec::new();
    let mut synced = Vec::new();
    let mut refused_early = 0;
    for (id, node) in &nodes {
        let log = attempts(node);
        refused_early += log.iter().filter(|a| !a.ok && a.started_ms >= restart).count();
        let Some(first) = back(node) else {
            panic!("{id} did not sync after the restart: {log:?}")
        };
        starts.push(Duration::from_millis((first.started_ms - restart) as u64));
        synced.push(Duration::from_millis((first.finished_ms.unwrap() - restart) as u64));
    }
    assert!(all_back);
    for daemon in &mut daemons {
        daemon.stop_promptly("TERM", "while connected");
    }
    starts.sort();
    synced.sort();
    // The most session starts within any one second.
    let busiest = starts
        .iter()
        .map(|s| starts.iter().filter(|t| **t >= *s && **t < *s + Duration::from_secs(1)).count())
        .max()
        .unwrap();
    println!(
        "hub restart with {count} daemons after {outage} s down (listening after {listening} ms): \
         synced p50 {:?}, p90 {:?}, max {:?}; session starts from {:?} to {:?}, at most {busiest} \
         in one second; {refused_early} attempt(s) failed after the restart",
        percentile(&synced, 50.0),
        percentile(&synced, 90.0),
        synced[synced.len() - 1],
        starts[0],
        starts[starts.len() - 1],
    );
    assert!(
        synced[synced.len() - 1] < Duration::from_secs(30),
        "not every node was back within 30 s: {synced:?}"
    );
    // Spread: the nodes do not come back in one herd.
    assert!(busiest <= count.div_ceil(2).max(3), "{busiest} of {count} started in one second");
    for (id, task) in &notes {
        assert!(
            hub.notes(id, task).contains("saved while the hub was down"),
            "{id}'s edit did not reach the hub"
        );
    }
}

/// The hub's counter of evidence-file bytes stored, from its `/metrics`.
fn file_bytes_received(hub: &Hub) -> u64 {
    let (_, text) = fivestar_tests::http_get(&hub.dashboard(), "/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with("fivestar_hub_file_bytes_received_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[test]
fn a_10_mib_photo_arrives_whole_over_a_link_cut_three_times_without_starting_over() {
    let hub = Hub::started();
    let proxy =
        LinkProxy::start(hub.url().trim_start_matches("https://").parse().unwrap(), Duration::ZERO);
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.set_config("hub", &format!("\"{}\"", proxy.url()));
    node.set_config("metrics_listen", "\"\"");
    node.set_config("listen", "\"\"");
    // 2 MiB/s: the upload takes about five seconds, long enough to cut it.
    node.set_config("upload_bytes_per_second", "2097152");
    node.set_config("backoff_initial_seconds", "0.2");
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("新建充电桩.jpg");
    let mut bytes = vec![0xFF_u8, 0xD8, 0xFF, 0xE0];
    bytes.extend(
        (0..10 * 1024 * 1024 - 4).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8),
    );
    std::fs::write(&photo, &bytes).unwrap();
    node.ok(&["task", "attach", "a-industry-jobs", photo.to_str().unwrap()]);
    let mut daemon = node.command(&["run"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    // The upload starts; cut the link three times while it runs.
    let mut cuts = 0;
    let mut noted = false;
    while cuts < 3 && started.elapsed() < Duration::from_secs(60) {
        if file_bytes_received(&hub) > (cuts as u64 + 1) * 1_500_000 {
            proxy.cut();
            cuts += 1;
            if !noted {
                // A note written during the upload reaches the hub before it ends.
                node.ok(&["task", "note", "a-industry-jobs", "上传期间写的佐证"]);
                noted = true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cuts, 3, "the upload was cut three times");
    assert!(
        eventually(Duration::from_secs(30), || hub
            .notes("fangou", "a-industry-jobs")
            .contains("上传期间写的佐证")),
        "the note made during the upload reached the hub"
    );
    assert!(
        eventually(Duration::from_secs(90), || node.json(&["status"])["files_waiting"] == 0),
        "the file arrived whole"
    );
    let received = file_bytes_received(&hub);
    let sent = proxy.upstream.load(Ordering::SeqCst);
    eprintln!(
        "10 MiB over three cuts: {sent} bytes sent by the node ({:.2}x, TLS and documents included), {received} stored",
        sent as f64 / bytes.len() as f64
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(received >= bytes.len() as u64, "every byte was stored: {received}");
    assert!(
        sent as f64 <= 1.5 * bytes.len() as f64,
        "resumed, not restarted: {sent} bytes sent for a file of {}",
        bytes.len()
    );
    // It is the same file: the hub serves it byte for byte.
    let served = fivestar_tests::http_get_bytes(
        &hub.dashboard(),
        "/files/fangou/".to_string()
            + &node.task("a-industry-jobs")["notes"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|n| n["file"]["hash"].as_str().map(str::to_string))
                .unwrap(),
    );
    assert_eq!(served.len(), bytes.len());
    assert!(served == bytes, "the hub holds the same bytes");
}

#[test]
fn an_upload_killed_on_both_sides_resumes_and_completes() {
    let mut hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.set_config("metrics_listen", "\"\"");
    node.set_config("listen", "\"\"");
    node.set_config("upload_bytes_per_second", "2097152");
    node.set_config("backoff_initial_seconds", "0.2");
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("台账.jpg");
    let mut bytes = vec![0xFF_u8, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..6 * 1024 * 1024 - 4).map(|i: usize| (i.wrapping_mul(40_503) >> 7) as u8));
    std::fs::write(&photo, &bytes).unwrap();
    node.ok(&["task", "attach", "a-industry-jobs", photo.to_str().unwrap()]);
    let run = || node.command(&["run"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut daemon = run();
    // The node dies without a word a second into the upload; then the hub does.
    assert!(eventually(Duration::from_secs(30), || file_bytes_received(&hub) > 1_000_000));
    let _ = daemon.kill();
    let _ = daemon.wait();
    let mut daemon = run();
    assert!(eventually(Duration::from_secs(30), || file_bytes_received(&hub) > 1_000_000));
    hub.kill();
    hub.start();
    assert!(
        eventually(Duration::from_secs(90), || node.json(&["status"])["files_waiting"] == 0),
        "the file arrived whole after both sides were killed"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    let hash = node.task("a-industry-jobs")["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|n| n["file"]["hash"].as_str().map(str::to_string))
        .unwrap();
    let served = fivestar_tests::http_get_bytes(&hub.dashboard(), format!("/files/fangou/{hash}"));
    assert!(served == bytes, "the hub holds the same bytes");
}
