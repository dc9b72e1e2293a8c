//! Standings benchmark: `cargo bench -p fivestar-hub --bench standings`.
//!
//! - 88 communities, the real hub path: documents in a real SQLite file (template
//!   applied, seeded edits), `HubStore::current_standings` from a cold cache (every
//!   document loaded and scored, then ranked), and `refresh_standings` after one
//!   community's document changes (that one rescored, all ranked, a snapshot written).
//! - 50,000 communities, the pure core: scoring every community's 29 tasks and ranking
//!   them all (`score` + `standings`), and ranking alone with scores already known
//!   (what one change costs at that size).
//!
//! Each figure is the median of several runs; seeded, so runs are comparable.

use std::time::{Duration, Instant};

use automerge::ActorId;
use chrono::{TimeDelta, Utc};
use fivestar_core::registry::{Community, Subdistrict};
use fivestar_core::{
    CommunityDoc, CommunityScore, Kind, KindStandard, Registry, Stamp, Standard, Task, TaskEdit,
    TaskStatus, Writer, score_many, standings,
};
use fivestar_hub::store::{HubStore, PeerHello, Traffic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let standard = Standard::sample();
    let registry = Registry::sample();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("hub.db");
    let standard_toml = fivestar_core::standard::SAMPLE_STANDARD_TOML;
    let registry_toml = fivestar_core::registry::SAMPLE_REGISTRY_TOML;
    let now = Utc::now().timestamp_millis();
    let mut store = HubStore::open(&db, standard_toml, registry_toml, now).expect("hub store");
    let stamp = Stamp { by: "device d1".into(), at_ms: now };

    // 88 documents with the template and 20 seeded edits each, synced "now".
    for community in &registry.communities {
        let kind = standard.kind(community.kind);
        let mut doc = CommunityDoc::new(&community.id, ActorId::random());
        doc.apply_template(kind).expect("template");
        let ids = doc.task_ids();
        for _ in 0..20 {
            let id = &ids[rng.random_range(0..ids.len())];
            let edit =
                TaskEdit { progress: Some(rng.random_range(0..=100)), ..TaskEdit::default() };
            doc.edit_task(kind, id, &edit, &stamp).expect("edit");
        }
        let doc_id = fivestar_core::document::community_doc_id(&community.id);
        store
            .docs()
            .write(|t| t.save(&doc_id, &[], doc.automerge(), now))
            .expect("write")
            .expect("save");
        let writer = Writer::Device { community: community.id.clone(), device: "d1".into() };
        store.peer_connected(&writer, &PeerHello::default(), now).expect("peer");
        let traffic = Traffic { success_ms: Some(now), ..Traffic::default() };
        store.peer_traffic(&writer, traffic, now).expect("traffic");
    }
    drop(store);

    let stale_after = TimeDelta::hours(24);
    let cold: Vec<Duration> = (0..7)
        .map(|_| {
            let mut store =
                HubStore::open(&db, standard_toml, registry_toml, now).expect("hub store");
            let started = Instant::now();
            let (rows, _) = store.current_standings(now, stale_after).expect("standings");
            let took = started.elapsed();
            assert_eq!(rows.len(), 88);
            took
        })
        .collect();

    let mut store = HubStore::open(&db, standard_toml, registry_toml, now).expect("hub store");
    store.refresh_standings(now, stale_after).expect("first refresh");
    let mut after_one = Vec::new();
    for i in 0..30 {
        let community = &registry.communities[i % registry.communities.len()];
        let kind = standard.kind(community.kind);
        let doc_id = fivestar_core::document::community_doc_id(&community.id);
        let current = store.docs().read(&doc_id).expect("read").expect("stored");
        let mut doc = CommunityDoc::from_automerge(&community.id, current, ActorId::random());
        let before = doc.heads();
        let id = doc.task_ids()[0].clone();
        let edit = TaskEdit {
            progress: Some(((i * 37) % 101) as u32),
            status: Some(TaskStatus::Doing),
            ..TaskEdit::default()
        };
        doc.edit_task(kind, &id, &edit, &stamp).expect("edit");
        store
            .docs()
            .write(|t| t.save(&doc_id, &before, doc.automerge(), now))
            .expect("write")
            .expect("save");
        let started = Instant::now();
        store.refresh_standings(now + i as i64, stale_after).expect("refresh");
        after_one.push(started.elapsed());
    }

    // 50,000 communities in 13 subdistricts, 29 tasks each, pure core.
    let big = Registry {
        version: "bench".into(),
        sample: true,
        subdistricts: (0..13)
            .map(|i| Subdistrict { code: format!("{i:03}"), name: format!("S{i}") })
            .collect(),
        communities: (0..50_000)
            .map(|i| Community {
                id: format!("c{i}"),
                name: format!("C{i}"),
                subdistrict: format!("{:03}", i % 13),
                kind: Kind::Agricultural,
                placeholder: true,
            })
            .collect(),
    };
    let kind = standard.kind(Kind::Agricultural);
    let task_lists: Vec<Vec<Task>> = (0..50_000)
        .map(|_| {
            kind.template_tasks()
                .map(|(star, t)| Task {
                    id: t.key.clone(),
                    star: star.key.clone(),
                    title: t.title.clone(),
                    points: t.points,
                    status: TaskStatus::Doing,
                    progress: rng.random_range(0..=100),
                    owner: String::new(),
                    due: None,
                    veto: t.veto,
                    template: Some(t.key.clone()),
                    notes: Vec::new(),
                    review: None,
                })
                .collect()
        })
        .collect();
    let last: Vec<Option<&i64>> = vec![Some(&now); big.communities.len()];
    let now_t = chrono::DateTime::from_timestamp_millis(now).expect("now");
    let work: Vec<(&KindStandard, &[Task])> =
        task_lists.iter().map(|tasks| (kind, tasks.as_slice())).collect();
    let mut scored: Vec<CommunityScore> = Vec::new();
    let full: Vec<Duration> = (0..5)
        .map(|_| {
            // The last run's scores are freed before the clock starts: what is timed
            // is computing the table, not returning the memory of the one before.
            drop(std::mem::take(&mut scored));
            let started = Instant::now();
            scored = score_many(&work);
            let refs: Vec<Option<&CommunityScore>> = scored.iter().map(Some).collect();
            let rows = standings(&big, &refs, &last, now_t, stale_after);
            let took = started.elapsed();
            assert_eq!(rows.len(), 50_000);
            took
        })
        .collect();
    let refs: Vec<Option<&CommunityScore>> = scored.iter().map(Some).collect();
    let rank_only: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let rows = standings(&big, &refs, &last, now_t, stale_after);
            let took = started.elapsed();
            assert_eq!(rows.len(), 50_000);
            took
        })
        .collect();

    println!("| measurement | median |");
    println!("|---|---|");
    println!(
        "| 88 communities, full standings from a cold cache (load + score + rank, SQLite) | {} |",
        ms(median(cold))
    );
    println!(
        "| 88 communities, one community changed: refresh (rescore 1 + rank + snapshot) | {} |",
        ms(median(after_one))
    );
    println!(
        "| 50,000 communities, full standings (score 29 tasks each + rank), pure | {} |",
        ms(median(full))
    );
    println!(
        "| 50,000 communities, rank all with scores known, pure | {} |",
        ms(median(rank_only))
    );
}
