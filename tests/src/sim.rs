//! The simulated district: a real hub and one real node per community, each node
//! with its own SQLite file and device certificate, syncing over real gRPC with mutual
//! TLS on loopback, through a scripted campaign.
//!
//! Each simulated week every community makes progress on some tasks and records
//! evidence; the communities chosen to be offline for a stretch reach the hub only
//! through a fault-injecting proxy that is cut for those weeks; reviewers at the hub
//! accept and reject finished tasks. At the end every link is restored and every node
//! catches up. The campaign is seeded: the same seed makes the same edits.
//!
//! [`verify`] checks the outcome against the edit log alone: the log is replayed on
//! fresh documents (no sync involved), scored and ranked, and must give the hub's
//! standings exactly; every replica must hold identical heads and every note.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use automerge::ActorId;
use chrono::{TimeDelta, Utc};
use fivestar_core::document::NewTask;
use fivestar_core::{
    Community, CommunityDoc, Registry, Review, Stamp, Standard, Standing, TaskEdit, TaskStatus,
    Verdict, Writer,
};
use fivestar_hub::config::HubConfig;
use fivestar_hub::pki::Pki;
use fivestar_hub::server::{self, HubHandle};
use fivestar_node::config::{NodeConfig, SyncSettings, TlsPaths};
use fivestar_node::store::Store;
use fivestar_store::StoreThread;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How the campaign runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// Simulated weeks.
    pub weeks: u32,
    /// Task edits per community per week (at most).
    pub edits_per_week: u32,
    /// Share of communities offline for a stretch of weeks (0.0..=1.0).
    pub offline_share: f64,
    /// Reviews the district records per week (at most).
    pub reviews_per_week: u32,
    /// Node syncs running at once.
    pub concurrency: usize,
    /// Where the dashboard listens.
    pub dashboard: SocketAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 2022,
            weeks: 8,
            edits_per_week: 6,
            offline_share: 0.25,
            reviews_per_week: 20,
            concurrency: 8,
            dashboard: SocketAddr::from(([127, 0, 0, 1], 7080)),
        }
    }
}

/// One edit the campaign made, in order, for replay.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Template applied on a community's node.
    Template { community: String },
    /// Progress on a task.
    Progress { community: String, task: String, percent: u32, at_ms: i64 },
    /// A task marked done.
    Done { community: String, task: String, at_ms: i64 },
    /// Evidence recorded.
    Note { community: String, task: String, text: String, at_ms: i64 },
    /// A task of the community's own.
    Own { community: String, task: NewTask, at_ms: i64 },
    /// A district review.
    Review { community: String, task: String, review: Review },
}

/// What a campaign left behind.
#[derive(Debug)]
pub struct Outcome {
    /// The running hub (keep it to serve the dashboard; shut it down when done).
    pub hub: HubHandle,
    /// Every edit, in the order made.
    pub edits: Vec<Edit>,
    /// The nodes' stores, by community.
    pub nodes: BTreeMap<String, StoreThread<Store>>,
    /// Node data directories, by community.
    pub node_dirs: BTreeMap<String, PathBuf>,
    /// Sync rounds that failed because a link was cut.
    pub failed_syncs: u64,
    /// Sync rounds that succeeded.
    pub good_syncs: u64,
    /// Sync failures that no cut link explains (there should be none).
    pub unexpected_failures: Vec<String>,
}

fn tally(results: &BTreeMap<String, Result<(), String>>) -> (u64, u64) {
    let good = results.values().filter(|r| r.is_ok()).count() as u64;
    (good, results.len() as u64 - good)
}

/// A loopback TCP proxy that forwards to the hub until it is cut.
#[derive(Debug, Clone)]
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    drop(inbound); // the link is down: the connection dies at once
                    continue;
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = async {
                            while !flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        } => {}
                    }
                });
            }
        });
        Ok(Proxy { addr, cut })
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Runs the campaign in `dir`. `progress` receives one line per step.
pub async fn run(
    config: &SimConfig,
    dir: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, String> {
    let err = |what: &'static str| move |e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut rng = StdRng::seed_from_u64(config.seed);
    let standard = Standard::sample();
    let registry = Registry::sample();
    let hub_dir = dir.join("hub");
    std::fs::create_dir_all(&hub_dir).map_err(|e| err("hub directory")(&e))?;
    let hub_config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        dashboard_listen: config.dashboard,
        ..HubConfig::default()
    };
    let pki = Pki::new(&hub_dir.join("pki"));
    if !pki.ca_cert().exists() {
        pki.init(&hub_config.hub_names).map_err(|e| err("PKI")(&e))?;
    }
    let hub = server::spawn(hub_config, &hub_dir).await.map_err(|e| err("hub")(&e))?;
    progress(&format!(
        "hub listening on {}; dashboard at http://{}/",
        hub.addr, hub.dashboard_addr
    ));

    // Which communities go offline, and for which weeks.
    let mut offline: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for community in &registry.communities {
        if rng.random_bool(config.offline_share.clamp(0.0, 1.0)) && config.weeks >= 2 {
            let start = rng.random_range(1..config.weeks);
            let end = rng.random_range(start + 1..=config.weeks + 1);
            offline.insert(community.id.clone(), (start, end));
        }
    }
    let mut proxies = BTreeMap::new();
    for id in offline.keys() {
        proxies.insert(id.clone(), Proxy::start(hub.addr).await.map_err(|e| err("proxy")(&e))?);
    }

    // One node per community: its own directory, certificate, database.
    let mut nodes = BTreeMap::new();
    let mut node_dirs = BTreeMap::new();
    let mut configs = BTreeMap::new();
    let mut edits = Vec::new();
    for community in &registry.communities {
        let node_dir = dir.join("nodes").join(&community.id);
        let hub_addr = proxies.get(&community.id).map_or(hub.addr, |p| p.addr);
        let node_config = create_node(&pki, &standard, community, &node_dir, hub_addr)?;
        let mut store =
            Store::open(&node_dir.join("node.db"), &community.id).map_err(|e| err("node")(&e))?;
        // The node checks every edit against the district's rules, as the CLI does.
        let policy = fivestar_core::Policy::new(&community.id, standard.kind(community.kind))
            .map_err(|e| err("policy")(&e))?;
        store.set_policy(policy);
        let store = StoreThread::spawn("node-store", store).map_err(|e| err("node thread")(&e))?;
        let kind = standard.kind(community.kind).clone();
        store
            .call(move |s| s.write(now_ms(), |doc| doc.apply_template(&kind)))
            .await
            .map_err(|e| err("template")(&e))?
            .map_err(|e| err("template")(&e))?
            .map_err(|e| err("template")(&e))?;
        edits.push(Edit::Template { community: community.id.clone() });
        nodes.insert(community.id.clone(), store);
        node_dirs.insert(community.id.clone(), node_dir);
        configs.insert(community.id.clone(), node_config);
    }
    progress(&format!(
        "{} communities set up, each with its own node, database and certificate; {} will be offline for a while",
        nodes.len(),
        offline.len()
    ));

    let mut outcome_good = 0;
    let mut outcome_failed = 0;
    let mut unexpected = Vec::new();
    let reviewer = Writer::Reviewer { name: "district".into(), role: fivestar_core::Role::Office };
    for week in 1..=config.weeks {
        // Links: cut for communities in their offline weeks.
        for (id, (start, end)) in &offline {
            let down = week >= *start && week < *end;
            proxies[id].cut.store(down, Ordering::SeqCst);
        }
        // Staff make progress.
        let mut week_edits = 0;
        for community in &registry.communities {
            let store = &nodes[&community.id];
            let count = rng.random_range(1..=config.edits_per_week.max(1));
            for n in 0..count {
                let edit = plan_edit(&mut rng, store, community, &standard, week, n).await?;
                apply_on_node(store, &standard, community, &edit).await?;
                edits.push(edit);
                week_edits += 1;
            }
        }
        // Every node tries to sync; only those behind a cut link may fail.
        let results = sync_all(&nodes, &configs, &node_dirs, config.concurrency).await;
        let (good, failed) = tally(&results);
        outcome_good += good;
        outcome_failed += failed;
        for (id, result) in &results {
            let cut = offline.get(id).is_some_and(|(s, e)| week >= *s && week < *e);
            if let (Err(err), false) = (result, cut) {
                unexpected.push(format!("week {week}, {id}: {err}"));
            }
        }
        // Reviewers look at finished tasks at the hub.
        let reviews =
            review_some(&hub, &mut rng, &registry, config.reviews_per_week, &reviewer, week)
                .await?;
        let week_reviews = reviews.len();
        edits.extend(reviews);
        let down = offline.values().filter(|(s, e)| week >= *s && week < *e).count();
        progress(&format!(
            "week {week}/{}: {week_edits} edits, {good} nodes synced, {failed} could not ({down} links cut), {week_reviews} reviews",
            config.weeks
        ));
    }
    // Every link comes back; everyone catches up (twice: the second round brings the
    // reviews of the last week to every node).
    for proxy in proxies.values() {
        proxy.cut.store(false, Ordering::SeqCst);
    }
    for round in 1..=2 {
        let results = sync_all(&nodes, &configs, &node_dirs, config.concurrency).await;
        let (good, failed) = tally(&results);
        outcome_good += good;
        outcome_failed += failed;
        for (id, result) in results {
            if let Err(err) = result {
                unexpected.push(format!("catch-up {round}, {id}: {err}"));
            }
        }
    }
    progress("every link restored; every node caught up");
    Ok(Outcome {
        hub,
        edits,
        nodes,
        node_dirs,
        failed_syncs: outcome_failed,
        good_syncs: outcome_good,
        unexpected_failures: unexpected,
    })
}

/// Sets up a node's directory as `fivestar-node init` would, so the command line
/// works on it too.
pub fn create_node(
    pki: &Pki,
    standard: &Standard,
    community: &Community,
    node_dir: &Path,
    hub: SocketAddr,
) -> Result<NodeConfig, String> {
    let fail = |e: &dyn std::fmt::Display| format!("node {}: {e}", community.id);
    std::fs::create_dir_all(node_dir).map_err(|e| fail(&e))?;
    let writer = Writer::Device { community: community.id.clone(), device: "d1".into() };
    pki.issue(&writer, &node_dir.join("certs")).map_err(|e| fail(&e))?;
    let config = NodeConfig {
        community: community.id.clone(),
        community_name: community.name.clone(),
        kind: community.kind,
        device: "d1".into(),
        hub: format!("https://{hub}"),
        standard: PathBuf::from("standard.toml"),
        tls: TlsPaths {
            ca: "certs/ca.pem".into(),
            cert: "certs/device.pem".into(),
            key: "certs/device.key".into(),
        },
        sync: SyncSettings {
            connect_timeout_seconds: 3,
            metrics_listen: String::new(),
            ..SyncSettings::default()
        },
        ui: fivestar_node::config::UiSettings { listen: String::new(), ..Default::default() },
        files: fivestar_node::config::FileSettings::default(),
    };
    Store::create(&node_dir.join("node.db"), &community.id, "d1", now_ms())
        .map_err(|e| fail(&e))?;
    std::fs::write(node_dir.join("standard.toml"), standard.to_toml()).map_err(|e| fail(&e))?;
    std::fs::write(node_dir.join("node.toml"), config.to_toml()).map_err(|e| fail(&e))?;
    Ok(config)
}

async fn plan_edit(
    rng: &mut StdRng,
    store: &StoreThread<Store>,
    community: &Community,
    standard: &Standard,
    week: u32,
    n: u32,
) -> Result<Edit, String> {
    let tasks = store
        .call(|s| s.read().map(|d| d.tasks().unwrap_or_default()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let id = community.id.clone();
    let at_ms = now_ms();
    let roll = rng.random_range(0..100);
    // Communities work a star at a time, in an order of their own: most edits go to
    // an unfinished task of the first star in that order that still has one.
    let stars = &standard.kind(community.kind).stars;
    let offset = community.id.bytes().map(usize::from).sum::<usize>() % stars.len();
    let open: Vec<&fivestar_core::Task> = (0..stars.len())
        .map(|i| &stars[(i + offset) % stars.len()].key)
        .find_map(|key| {
            let open: Vec<_> =
                tasks.iter().filter(|t| &t.star == key && t.status != TaskStatus::Done).collect();
            (!open.is_empty()).then_some(open)
        })
        .unwrap_or_default();
    let task = if !open.is_empty() && rng.random_range(0..4) > 0 {
        open[rng.random_range(0..open.len())]
    } else {
        &tasks[rng.random_range(0..tasks.len())]
    };
    Ok(if roll < 55 {
        let percent = (task.progress + rng.random_range(10..=40)).min(100);
        Edit::Progress { community: id, task: task.id.clone(), percent, at_ms }
    } else if roll < 70 {
        Edit::Done { community: id, task: task.id.clone(), at_ms }
    } else if roll < 95 {
        Edit::Note {
            community: id,
            task: task.id.clone(),
            text: format!("第{week}周证据 {n}"),
            at_ms,
        }
    } else {
        let stars = &standard.kind(community.kind).stars;
        let star = stars[rng.random_range(0..stars.len())].key.clone();
        Edit::Own {
            community: id,
            task: NewTask {
                id: format!("t-w{week}n{n}"),
                star,
                title: format!("第{week}周自定任务"),
                points: rng.random_range(1..=10),
                owner: "社区干部".into(),
                due: None,
                note: None,
            },
            at_ms,
        }
    })
}

/// Applies an edit to a document with the same calls a clerk's command makes.
fn apply(
    doc: &mut CommunityDoc,
    standard: &Standard,
    community: &Community,
    edit: &Edit,
) -> Result<(), String> {
    let kind = standard.kind(community.kind);
    let stamp = |at_ms: i64| Stamp { by: "device d1".into(), at_ms };
    let result = match edit {
        Edit::Template { .. } => doc.apply_template(kind).map(|_| ()),
        Edit::Progress { task, percent, at_ms, .. } => doc.edit_task(
            kind,
            task,
            &TaskEdit { progress: Some(*percent), ..TaskEdit::default() },
            &stamp(*at_ms),
        ),
        Edit::Done { task, at_ms, .. } => doc.edit_task(
            kind,
            task,
            &TaskEdit { status: Some(TaskStatus::Done), ..TaskEdit::default() },
            &stamp(*at_ms),
        ),
        Edit::Note { task, text, at_ms, .. } => doc.add_note(task, text, &stamp(*at_ms)),
        Edit::Own { task, at_ms, .. } => doc.add_task(kind, task.clone(), &stamp(*at_ms)),
        Edit::Review { task, review, .. } => doc.set_review(
            task,
            review,
            &Stamp { by: format!("reviewer {}", review.reviewer), at_ms: review.at_ms },
        ),
    };
    result.map_err(|e| format!("{}: {e}", community.id))
}

async fn apply_on_node(
    store: &StoreThread<Store>,
    standard: &Standard,
    community: &Community,
    edit: &Edit,
) -> Result<(), String> {
    let (standard, community, edit) = (standard.clone(), community.clone(), edit.clone());
    store
        .call(move |s| s.write(now_ms(), |doc| apply(doc, &standard, &community, &edit)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
}

/// Syncs every node once; the result of each, by community.
async fn sync_all(
    nodes: &BTreeMap<String, StoreThread<Store>>,
    configs: &BTreeMap<String, NodeConfig>,
    dirs: &BTreeMap<String, PathBuf>,
    concurrency: usize,
) -> BTreeMap<String, Result<(), String>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for (id, store) in nodes {
        let (store, config, dir) = (store.clone(), configs[id].clone(), dirs[id].clone());
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            Some(
                fivestar_node::sync::sync_once(&store, &config, &dir)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }));
    }
    let mut results = BTreeMap::new();
    for (id, task) in nodes.keys().zip(tasks) {
        let result = match task.await {
            Ok(Some(result)) => result.map(|_| ()),
            _ => Err("the sync task stopped".to_string()),
        };
        results.insert(id.clone(), result);
    }
    results
}

async fn review_some(
    hub: &HubHandle,
    rng: &mut StdRng,
    registry: &Registry,
    count: u32,
    reviewer: &Writer,
    week: u32,
) -> Result<Vec<Edit>, String> {
    let mut done_tasks = Vec::new();
    for community in &registry.communities {
        let id = community.id.clone();
        let tasks = hub
            .store
            .call(move |s| s.community(&id).map(|d| d.map(|d| d.read().0).unwrap_or_default()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for task in tasks.into_iter().filter(|t| t.status == TaskStatus::Done && t.review.is_none())
        {
            done_tasks.push((community.id.clone(), task));
        }
    }
    let mut edits = Vec::new();
    for _ in 0..count.min(done_tasks.len() as u32) {
        let (community, task) = done_tasks.swap_remove(rng.random_range(0..done_tasks.len()));
        let verdict = match rng.random_range(0..10) {
            0..=5 => Verdict::Accepted { awarded: None },
            6..=7 => Verdict::Accepted {
                awarded: Some(task.points.saturating_sub(rng.random_range(1..=3)).max(1)),
            },
            _ => Verdict::Rejected,
        };
        let review = Review {
            verdict,
            comment: format!("第{week}周审核"),
            reviewer: "区考核组".into(),
            at_ms: now_ms(),
            overridden: false,
            seen: None,
        };
        let stamp = Stamp { by: "reviewer 区考核组".into(), at_ms: review.at_ms };
        let (c, t, r, w) = (community.clone(), task.id.clone(), review.clone(), reviewer.clone());
        hub.store
            .call(move |s| s.review(&c, &t, &r, &stamp, &w))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        edits.push(Edit::Review { community, task: task.id, review });
    }
    Ok(edits)
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Verification {
    /// The hub's standings.
    pub hub: Vec<Standing>,
    /// The standings computed from the edit log alone.
    pub expected: Vec<Standing>,
    /// Communities whose replicas (node and hub) do not hold identical heads.
    pub diverged: Vec<String>,
    /// Notes written but missing at the hub or on the node.
    pub lost_notes: Vec<String>,
    /// Sync failures that no cut link explains.
    pub unexpected_failures: Vec<String>,
}

impl Verification {
    /// True when nothing was lost, every sync on an open link worked, and the
    /// standings agree.
    pub fn ok(&self) -> bool {
        self.diverged.is_empty()
            && self.lost_notes.is_empty()
            && self.unexpected_failures.is_empty()
            && self.hub == self.expected
    }
}

/// Checks the outcome against the edit log alone.
pub async fn verify(outcome: &Outcome, stale_after: TimeDelta) -> Result<Verification, String> {
    let standard = Standard::sample();
    let registry = Registry::sample();
    let now = now_ms();
    let (hub_rows, _) = outcome
        .hub
        .store
        .call(move |s| s.current_standings(now, stale_after))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // Replay: every community's edits on a fresh document, in the order made.
    let mut replayed: BTreeMap<String, CommunityDoc> = BTreeMap::new();
    let mut notes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for edit in &outcome.edits {
        let id = match edit {
            Edit::Template { community }
            | Edit::Progress { community, .. }
            | Edit::Done { community, .. }
            | Edit::Note { community, .. }
            | Edit::Own { community, .. }
            | Edit::Review { community, .. } => community,
        };
        let community = registry.community(id).ok_or_else(|| format!("unknown community {id}"))?;
        let doc =
            replayed.entry(id.clone()).or_insert_with(|| CommunityDoc::new(id, ActorId::random()));
        apply(doc, &standard, community, edit)?;
        if let Edit::Note { text, .. } = edit {
            notes.entry(id.clone()).or_default().insert(text.clone());
        }
    }
    let scores: std::collections::HashMap<String, fivestar_core::CommunityScore> = replayed
        .iter()
        .map(|(id, doc)| {
            let kind = registry.community(id).map(|c| c.kind).unwrap_or(fivestar_core::Kind::Urban);
            (
                id.clone(),
                fivestar_core::score(standard.kind(kind), &doc.tasks().unwrap_or_default()),
            )
        })
        .collect();
    let last_sync: std::collections::HashMap<String, i64> = hub_rows
        .iter()
        .filter_map(|r| r.last_sync_ms.map(|ms| (r.community.clone(), ms)))
        .collect();
    let now_t = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
    let last_sync = fivestar_core::by_registry(&registry, &last_sync);
    let scores = fivestar_core::by_registry(&registry, &scores);
    let expected = fivestar_core::standings(&registry, &scores, &last_sync, now_t, stale_after);

    let mut diverged = Vec::new();
    let mut lost_notes = Vec::new();
    for (id, store) in &outcome.nodes {
        let lookup = id.clone();
        let at_hub = outcome
            .hub
            .store
            .call(move |s| s.community(&lookup))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let on_node = store
            .call(|s| s.read())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some(at_hub) = at_hub else {
            diverged.push(id.clone());
            continue;
        };
        if at_hub.heads() != on_node.heads() {
            diverged.push(id.clone());
        }
        for (place, doc) in [("hub", &at_hub), ("node", &on_node)] {
            let held: BTreeSet<String> = doc
                .tasks()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|t| t.notes.into_iter().map(|n| n.text))
                .collect();
            for text in notes.get(id).into_iter().flatten() {
                if !held.contains(text) {
                    lost_notes.push(format!("{id} ({place}): {text}"));
                }
            }
        }
    }
    Ok(Verification {
        hub: hub_rows,
        expected,
        diverged,
        lost_notes,
        unexpected_failures: outcome.unexpected_failures.clone(),
    })
}
