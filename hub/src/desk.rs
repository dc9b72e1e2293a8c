//! The district's review desk: the operations the command line, the web pages and
//! the Query service share — the review queue, a review, the campaign's progress.
//!
//! Each operation takes the [`HubStore`] and returns data; the faces render it.

use std::collections::{BTreeMap, HashMap};

use automerge::ChangeHash;
use fivestar_core::{Review, Stamp, Task, TaskStatus, Verdict, Writer};
use fivestar_store::StoreError;
use serde::Serialize;

use crate::store::accounts::{Account, AccountRole};
use crate::store::{HubStore, ReviewError};

/// Why a task waits for the district.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// Done and not reviewed (or reopened).
    Done,
    /// Reviewed, then changed by the community.
    Changed,
}

/// One task waiting for review.
#[derive(Debug, Clone, Serialize)]
pub struct QueueItem {
    /// The community's id.
    pub community: String,
    /// Its name.
    pub community_name: String,
    /// Its subdistrict's code.
    pub subdistrict: String,
    /// Its subdistrict's name.
    pub subdistrict_name: String,
    /// The task.
    pub task: Task,
    /// The star's Chinese name.
    pub star_name: String,
    /// Why it waits.
    pub waiting: Waiting,
    /// The community's last change to the task, Unix seconds (0 when unknown).
    pub since_seconds: i64,
}

/// What the queue shows.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// Only this subdistrict (code).
    pub subdistrict: Option<String>,
    /// Only this community (id).
    pub community: Option<String>,
    /// Only done-and-unreviewed (`done`) or changed-since-review (`changed`).
    pub waiting: Option<Waiting>,
}

/// The last time the community touched each task, per document, kept while the
/// document's heads stay the same (reading a document's history is the costly part).
#[derive(Debug, Default)]
pub struct TouchCache {
    docs: HashMap<String, (Vec<ChangeHash>, HashMap<String, i64>)>,
}

impl TouchCache {
    fn touched(
        &mut self,
        community: &str,
        doc: &fivestar_core::CommunityDoc,
    ) -> &HashMap<String, i64> {
        let heads = doc.heads();
        let fresh = self.docs.get(community).is_some_and(|(h, _)| *h == heads);
        if !fresh {
            let mut times: HashMap<String, i64> = HashMap::new();
            for entry in doc.history(None) {
                if entry.by.starts_with("reviewer ") || entry.by == "template" {
                    continue;
                }
                for path in &entry.paths {
                    if let Some(id) =
                        path.strip_prefix("tasks/").map(|p| p.split('/').next().unwrap_or(p))
                    {
                        let at = times.entry(id.to_string()).or_insert(0);
                        *at = (*at).max(entry.at_seconds);
                    }
                }
            }
            self.docs.insert(community.to_string(), (heads, times));
        }
        &self.docs[community].1
    }
}

/// Why a task waits, if it does: done and without a verdict, or changed since its
/// verdict.
pub fn waiting(task: &Task) -> Option<Waiting> {
    if task.changed_since_review() {
        Some(Waiting::Changed)
    } else if task.status == TaskStatus::Done && task.verdict().is_none() {
        Some(Waiting::Done)
    } else {
        None
    }
}

/// Whether `role` reviews `task` (the office every task; a task force its star's).
pub fn reviews_task(role: &AccountRole, task: &Task) -> bool {
    match role {
        AccountRole::Reviewer(fivestar_core::Role::Office) => true,
        AccountRole::Reviewer(fivestar_core::Role::TaskForce(star)) => task.star == *star,
        AccountRole::Operator => false,
    }
}

/// Every task of every community, with its community, in registry order.
fn every_task(
    store: &mut HubStore,
) -> Result<Vec<(fivestar_core::Community, fivestar_core::CommunityDoc, Vec<Task>)>, StoreError> {
    let communities = store.registry().communities.clone();
    let mut out = Vec::new();
    for community in communities {
        if let Some(doc) = store.community(&community.id)? {
            let tasks = doc.read().0;
            out.push((community, doc, tasks));
        }
    }
    Ok(out)
}

/// The tasks waiting for `role`'s review, oldest first.
pub fn queue(
    store: &mut HubStore,
    cache: &mut TouchCache,
    role: &AccountRole,
    filter: &QueueFilter,
) -> Result<Vec<QueueItem>, StoreError> {
    let subdistricts: HashMap<String, String> =
        store.registry().subdistricts.iter().map(|s| (s.code.clone(), s.name.clone())).collect();
    let standard = store.standard().clone();
    let mut items = Vec::new();
    for (community, doc, tasks) in every_task(store)? {
        if filter.subdistrict.as_ref().is_some_and(|s| *s != community.subdistrict)
            || filter.community.as_ref().is_some_and(|c| *c != community.id)
        {
            continue;
        }
        let kind = standard.kind(community.kind);
        let touched = cache.touched(&community.id, &doc);
        for task in tasks {
            let Some(why) = waiting(&task) else { continue };
            if !reviews_task(role, &task) || filter.waiting.is_some_and(|w| w != why) {
                continue;
            }
            items.push(QueueItem {
                community: community.id.clone(),
                community_name: community.name.clone(),
                subdistrict: community.subdistrict.clone(),
                subdistrict_name: subdistricts
                    .get(&community.subdistrict)
                    .cloned()
                    .unwrap_or_default(),
                star_name: kind
                    .star(&task.star)
                    .map(|s| s.zh.clone())
                    .unwrap_or_else(|| task.star.clone()),
                since_seconds: touched.get(&task.id).copied().unwrap_or(0),
                waiting: why,
                task,
            });
        }
    }
    items.sort_by(|a, b| {
        a.since_seconds
            .cmp(&b.since_seconds)
            .then_with(|| a.community.cmp(&b.community))
            .then_with(|| a.task.id.cmp(&b.task.id))
    });
    Ok(items)
}

/// A verdict as a face collected it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Accept (with awarded points or full), reject, reopen.
    pub verdict: Verdict,
    /// Why (required to reject or reopen).
    pub comment: String,
    /// Accept a task that is not done: the review says so.
    pub override_not_done: bool,
}

/// Who reviews: the account, and how the review reached the hub.
#[derive(Debug, Clone)]
pub struct Reviewer {
    /// The sign-in name (the audit's identity).
    pub name: String,
    /// The name shown to the community.
    pub display: String,
    /// How it came: `web` or `command line as <user>`.
    pub via: String,
}

impl Reviewer {
    /// The reviewer an account is.
    pub fn account(account: &Account, via: &str) -> Reviewer {
        Reviewer {
            name: account.name.clone(),
            display: account.display.clone(),
            via: via.to_string(),
        }
    }
}

/// Records a verdict through the district's write rules (the role is the hub's to
/// decide: the account's, or hub.toml's), attributed to the reviewer in the audit.
pub fn review(
    store: &mut HubStore,
    reviewer: &Reviewer,
    community: &str,
    task: &str,
    decision: &Decision,
    now_ms: i64,
) -> Result<(), ReviewError> {
    let review = Review {
        verdict: decision.verdict,
        comment: decision.comment.trim().to_string(),
        reviewer: reviewer.display.clone(),
        at_ms: now_ms,
        overridden: decision.override_not_done,
        seen: None,
    };
    let by = if reviewer.display == reviewer.name {
        format!("reviewer {} ({})", reviewer.name, reviewer.via)
    } else {
        format!("reviewer {} [{}] ({})", reviewer.display, reviewer.name, reviewer.via)
    };
    let stamp = Stamp { by, at_ms: now_ms };
    let writer =
        Writer::Reviewer { name: reviewer.name.clone(), role: fivestar_core::Role::Office };
    store.review(community, task, &review, &stamp, &writer)
}

/// Counts of tasks by where they stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every task.
    pub tasks: u32,
    /// Done (whatever the review says).
    pub done: u32,
    /// Waiting for review (done without a verdict, or changed since it).
    pub awaiting: u32,
    /// Accepted.
    pub accepted: u32,
    /// Rejected.
    pub rejected: u32,
}

impl Counts {
    fn add(&mut self, task: &Task) {
        self.tasks += 1;
        if task.status == TaskStatus::Done {
            self.done += 1;
        }
        if waiting(task).is_some() {
            self.awaiting += 1;
        }
        match task.verdict().map(|r| r.verdict) {
            Some(Verdict::Accepted { .. }) => self.accepted += 1,
            Some(Verdict::Rejected) => self.rejected += 1,
            _ => {}
        }
    }
}

/// The oldest waiting task of a backlog: community name, task title, since (Unix s).
pub type Oldest = (String, String, i64);

/// One task force's backlog.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    /// The star's key.
    pub star: String,
    /// Its Chinese name(s) across the kinds.
    pub star_name: String,
    /// Tasks waiting.
    pub waiting: u32,
    /// The oldest waiting one: community name, task title, since (Unix seconds).
    pub oldest: Option<Oldest>,
}

/// The campaign's progress for the leading group.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Per star key (with its Chinese name).
    pub by_star: Vec<(String, String, Counts)>,
    /// Per subdistrict (code, name).
    pub by_subdistrict: Vec<(String, String, Counts)>,
    /// The whole district.
    pub district: Counts,
    /// Per task force.
    pub backlog: Vec<Backlog>,
}

/// Counts per star and per subdistrict, and each task force's backlog.
pub fn progress(store: &mut HubStore, cache: &mut TouchCache) -> Result<Progress, StoreError> {
    let standard = store.standard().clone();
    let subdistricts = store.registry().subdistricts.clone();
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for kind in fivestar_core::Kind::ALL {
        for star in &standard.kind(kind).stars {
            let list = names.entry(star.key.clone()).or_default();
            if !list.contains(&star.zh) {
                list.push(star.zh.clone());
            }
        }
    }
    let mut by_star: BTreeMap<String, Counts> =
        names.keys().map(|k| (k.clone(), Counts::default())).collect();
    let mut by_sub: BTreeMap<String, Counts> = BTreeMap::new();
    let mut district = Counts::default();
    let mut oldest: BTreeMap<String, (u32, Option<Oldest>)> = BTreeMap::new();
    for (community, doc, tasks) in every_task(store)? {
        let touched = cache.touched(&community.id, &doc).clone();
        for task in &tasks {
            by_star.entry(task.star.clone()).or_default().add(task);
            by_sub.entry(community.subdistrict.clone()).or_default().add(task);
            district.add(task);
            if waiting(task).is_some() {
                let since = touched.get(&task.id).copied().unwrap_or(0);
                let entry = oldest.entry(task.star.clone()).or_insert((0, None));
                entry.0 += 1;
                if entry.1.as_ref().is_none_or(|(_, _, s)| since < *s) {
                    entry.1 = Some((community.name.clone(), task.title.clone(), since));
                }
            }
        }
    }
    let star_name =
        |key: &str| names.get(key).map(|n| n.join(" / ")).unwrap_or_else(|| key.to_string());
    Ok(Progress {
        by_star: by_star.into_iter().map(|(k, c)| (k.clone(), star_name(&k), c)).collect(),
        by_subdistrict: subdistricts
            .iter()
            .map(|s| (s.code.clone(), s.name.clone(), by_sub.remove(&s.code).unwrap_or_default()))
            .collect(),
        district,
        backlog: names
            .keys()
            .map(|k| {
                let (waiting, oldest) = oldest.remove(k).unwrap_or((0, None));
                Backlog { star: k.clone(), star_name: star_name(k), waiting, oldest }
            })
            .collect(),
    })
}
