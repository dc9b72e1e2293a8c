//! District standings end to end: edits on real nodes, synced to a real hub, the
//! standings read back from the hub, checked against hand-computed values.

use std::collections::BTreeMap;
use std::time::Duration;

use fivestar_proto::v1::query_client::QueryClient;
use fivestar_proto::v1::{self, StandingsRequest};
use fivestar_tests::{Hub, NodeDir, eventually};
use serde_json::Value;

fn done(node: &NodeDir, tasks: &[&str]) {
    for task in tasks {
        node.ok(&["task", "done", task]);
    }
}

const URBAN_FOUR_STARS: &[&str] = &[
    "u-cobuild-red-property",
    "u-cobuild-trilateral",
    "u-cobuild-stewards",
    "u-cobuild-deliberation",
    "u-safety-three-zeros",
    "u-safety-grid",
    "u-safety-hazards",
    "u-safety-anti-fraud",
    "u-harmony-service-centre",
    "u-harmony-elderly",
    "u-harmony-culture",
    "u-harmony-civilisation",
    "u-harmony-families",
    "u-business-collective",
    "u-business-environment",
    "u-business-jobs",
];
const INDUSTRY: &[&str] = &[
    "a-industry-collective",
    "a-industry-leading",
    "a-industry-company",
    "a-industry-assets",
    "a-industry-jobs",
];
const ECOLOGY: &[&str] = &[
    "a-ecology-sanitation",
    "a-ecology-waste",
    "a-ecology-greening",
    "a-ecology-toilets",
    "a-ecology-roads",
    "a-ecology-farmland",
];

/// (district rank, subdistrict rank, stars, total in hundredths, freshness)
type Expected = (Option<u64>, Option<u64>, u64, u64, &'static str);

fn expected() -> BTreeMap<&'static str, Expected> {
    BTreeMap::from([
        ("fuhou", (Some(1), Some(1), 4, 40_000, "current")),
        ("yuyuan", (Some(1), Some(1), 4, 40_000, "current")),
        ("fangou", (Some(3), Some(1), 2, 18_000, "current")),
        ("sanli", (Some(4), Some(1), 1, 10_000, "stale")),
        ("cuidaizhang", (Some(5), Some(1), 0, 7_000, "current")),
        ("donglizhuang", (Some(6), Some(1), 0, 0, "current")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standings_of_88_communities_match_the_hand_computed_table() {
    let mut hub = Hub::new("stale_after_seconds = 6");
    hub.start();
    let sanli = NodeDir::for_hub(&hub, "sanli", "d1");
    done(&sanli, INDUSTRY);
    sanli.ok(&["sync"]);
    let started = std::time::Instant::now();
    // Everything else is edited now and synced after sanli has gone stale.
    let fuhou = NodeDir::for_hub(&hub, "fuhou", "d1");
    let yuyuan = NodeDir::for_hub(&hub, "yuyuan", "d1");
    let fangou = NodeDir::for_hub(&hub, "fangou", "d1");
    let cuidaizhang = NodeDir::for_hub(&hub, "cuidaizhang", "d1");
    let donglizhuang = NodeDir::for_hub(&hub, "donglizhuang", "d1");
    done(&fuhou, URBAN_FOUR_STARS);
    done(&yuyuan, URBAN_FOUR_STARS);
    done(&fangou, INDUSTRY);
    done(&fangou, ECOLOGY);
    done(&cuidaizhang, &["u-business-collective", "u-business-environment"]);
    std::thread::sleep(Duration::from_secs(7).saturating_sub(started.elapsed()));
    for node in [&fuhou, &yuyuan, &fangou, &cuidaizhang, &donglizhuang] {
        node.ok(&["sync"]);
    }
    // The district rejects one ecology task of fangou: 100 - 20 = 80, still earned.
    hub.ok(&[
        "review",
        "fangou",
        "a-ecology-sanitation",
        "reject",
        "--reviewer",
        "王敏",
        "--comment",
        "台账不全",
    ]);

    let json: Value = serde_json::from_str(&hub.ok(&["standings", "--json"])).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 88);
    let by_id: BTreeMap<&str, &Value> =
        rows.iter().map(|r| (r["community"].as_str().unwrap(), r)).collect();
    for (id, (district, sub, stars, total, freshness)) in expected() {
        let row = by_id[id];
        let got = (
            row["district_rank"].as_u64(),
            row["subdistrict_rank"].as_u64(),
            row["stars"].as_u64().unwrap(),
            row["total"].as_u64().unwrap(),
            row["freshness"].as_str().unwrap(),
        );
        assert_eq!(got, (district, sub, stars, total, freshness), "{id}");
    }
    let no_data: Vec<&Value> = rows.iter().filter(|r| r["freshness"] == "no_data").collect();
    assert_eq!(no_data.len(), 82);
    assert!(no_data.iter().all(|r| r["district_rank"].is_null()));
    // Ranked first, best first; no-data communities last.
    let order: Vec<&str> = rows[..6].iter().map(|r| r["community"].as_str().unwrap()).collect();
    assert_eq!(order, ["fuhou", "yuyuan", "fangou", "sanli", "cuidaizhang", "donglizhuang"]);
    let tiers = &json["tiers"]["district"];
    assert_eq!(tiers["by_stars"], serde_json::json!([2, 1, 1, 0, 2, 0]));
    assert_eq!((tiers["no_data"].as_u64(), tiers["stale"].as_u64()), (Some(82), Some(1)));
    let fangou_ecology = &by_id["fangou"]["star_scores"][2];
    assert_eq!(
        (fangou_ecology["score"].as_u64(), fangou_ecology["earned"].as_bool()),
        (Some(8_000), Some(true))
    );

    // The CSV says the same.
    let csv = hub.ok(&["standings", "--csv"]);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let csv_rows: Vec<Vec<String>> =
        lines.map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(csv_rows.len(), 88);
    for (row, json_row) in csv_rows.iter().zip(rows) {
        assert_eq!(row[column("community")], json_row["community"].as_str().unwrap());
        assert_eq!(
            row[column("district_rank")],
            json_row["district_rank"].as_u64().map(|r| r.to_string()).unwrap_or_default()
        );
        let total = json_row["total"].as_u64().unwrap();
        assert_eq!(row[column("total")], format!("{}.{:02}", total / 100, total % 100));
        assert_eq!(row[column("freshness")], json_row["freshness"].as_str().unwrap());
    }

    // And so does the gRPC query service.
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--reviewer", "analyst"], certs.path());
    let channel = fivestar_tests::raw::channel(&hub.url(), certs.path()).await.unwrap();
    let reply = QueryClient::new(channel.clone())
        .standings(StandingsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.standings.len(), 88);
    for (wire, json_row) in reply.standings.iter().zip(rows) {
        assert_eq!(wire.community_id, json_row["community"].as_str().unwrap());
        assert_eq!(u64::from(wire.district_rank), json_row["district_rank"].as_u64().unwrap_or(0));
        assert_eq!(u64::from(wire.total_hundredths), json_row["total"].as_u64().unwrap());
        assert_eq!(u64::from(wire.stars), json_row["stars"].as_u64().unwrap());
    }
    let filtered = QueryClient::new(channel.clone())
        .standings(StandingsRequest { subdistrict: "001".into(), ..StandingsRequest::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.standings.len(), 7);
    let tiers = QueryClient::new(channel).tiers(v1::TiersRequest {}).await.unwrap().into_inner();
    assert_eq!(tiers.district.unwrap().by_stars, vec![2, 1, 1, 0, 2, 0]);
    hub.kill();
}

#[test]
fn a_recorded_snapshot_recomputes_identically_from_its_heads() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fuhou", "d1");
    done(&node, &["u-business-collective"]);
    node.ok(&["sync"]);
    // Wait for the hub to record the standings with fuhou at 40.00.
    let first = {
        let mut found = None;
        assert!(eventually(Duration::from_secs(15), || {
            let now = chrono_now();
            let out = hub.command(&["standings", "--json", "--at", &now]).output().unwrap();
            let view: Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(_) => return false,
            };
            let ok = view["rows"][0]["community"] == "fuhou" && view["rows"][0]["total"] == 4_000;
            if ok {
                found = Some(view);
            }
            ok
        }));
        found.unwrap()
    };
    let snapshot_time = first["computed_ms"].as_i64().unwrap();
    // Later edits move the standings on ...
    done(&node, &["u-business-jobs"]);
    node.ok(&["sync"]);
    assert!(eventually(Duration::from_secs(15), || {
        let view: Value = serde_json::from_str(&hub.ok(&["standings", "--json"])).unwrap();
        view["rows"][0]["total"] == 7_000
    }));
    // ... and the first snapshot still recomputes exactly from its recorded heads.
    let at = rfc3339(snapshot_time);
    let out = hub.command(&["standings", "--verify", "--json", "--at", &at]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("recomputed from its recorded heads is identical")
    );
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["rows"][0]["total"], 4_000, "the past, not the present");
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339()
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// The serving hub rescores a community from the tasks a sync's changes touched, not
/// from its whole document. Its standings (the gRPC query reads them from that cache)
/// must equal what a fresh `fivestar-hub standings` reads from the whole documents,
/// after syncs of every kind of edit and a review written by another process (which
/// the serving hub has no hint of, so it rereads that document whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standings_rescored_from_touched_tasks_equal_a_whole_reread() {
    let hub = Hub::started();
    let fuhou = NodeDir::for_hub(&hub, "fuhou", "d1");
    let fangou = NodeDir::for_hub(&hub, "fangou", "d1");
    fuhou.ok(&["sync"]);
    fangou.ok(&["sync"]);
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--reviewer", "analyst"], certs.path());
    let channel = fivestar_tests::raw::channel(&hub.url(), certs.path()).await.unwrap();
    let served = || async {
        let reply = QueryClient::new(channel.clone())
            .standings(StandingsRequest::default())
            .await
            .unwrap()
            .into_inner();
        reply
            .standings
            .iter()
            .map(|s| (s.community_id.clone(), (s.district_rank, s.stars, s.total_hundredths)))
            .collect::<BTreeMap<_, _>>()
    };
    let reread = || {
        let json: Value = serde_json::from_str(&hub.ok(&["standings", "--json"])).unwrap();
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap_or(0) as u32;
                (
                    r["community"].as_str().unwrap().to_string(),
                    (n("district_rank"), n("stars"), n("total")),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let steps: &[(&NodeDir, &[&str])] = &[
        (&fuhou, &["task", "done", "u-business-collective"]),
        (&fuhou, &["task", "progress", "u-business-jobs", "40"]),
        (&fangou, &["task", "done", "a-industry-collective"]),
        (&fuhou, &["task", "note", "u-business-jobs", "招聘会两场"]),
        (&fuhou, &["task", "fail", "u-safety-three-zeros", "--note", "发生一起事故"]),
        (&fangou, &["task", "progress", "a-industry-leading", "75"]),
        (&fuhou, &["task", "add", "--star", "safety", "--title", "夜间巡逻", "--points", "5"]),
        (&fuhou, &["task", "done", "u-business-jobs"]),
    ];
    for (i, (node, args)) in steps.iter().enumerate() {
        node.ok(args);
        node.ok(&["sync"]);
        if i == 4 {
            // A review by another process: no hint reaches the serving hub.
            hub.ok(&[
                "review",
                "fuhou",
                "u-business-collective",
                "reject",
                "--reviewer",
                "王敏",
                "--comment",
                "材料不全",
            ]);
        }
        let expected = reread();
        // The serving hub refreshes within 200 ms of a write; ten seconds at most.
        let mut last = served().await;
        for _ in 0..50 {
            if last == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            last = served().await;
        }
        assert_eq!(last, expected, "after step {i}: served standings against a whole reread");
    }
    // The served standings really came from touched tasks, not only whole rereads.
    let (_, metrics) = fivestar_tests::http_get(&hub.dashboard(), "/metrics").unwrap();
    let touched: f64 = metrics
        .lines()
        .find(|l| l.starts_with("fivestar_hub_community_rescores_total{read=\"touched_tasks\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(touched >= 6.0, "rescored from touched tasks {touched} times:\n{metrics}");
}
