//! What operators rely on: the sync status table, Prometheus metrics that pass
//! promtool, gRPC health and reflection, and the dashboard in a real browser.

use std::time::Duration;

use fivestar_tests::{Hub, NodeDir, eventually, http_get, promtool_check_metrics};
use serde_json::Value;

#[test]
fn status_shows_the_right_rows_after_a_scripted_sequence() {
    let hub = Hub::started();
    // One device syncs.
    let good = NodeDir::for_hub(&hub, "fuhou", "d1");
    good.ok(&["sync"]);
    // One is refused by authorization on its first sync (it wrote a review).
    let bad = NodeDir::for_hub(&hub, "yuyuan", "d1");
    {
        let mut store = fivestar_node::store::Store::open(&bad.database(), "yuyuan").unwrap();
        let review = fivestar_core::Review {
            verdict: fivestar_core::Verdict::Rejected,
            comment: "self-rejected".into(),
            reviewer: "d1".into(),
            at_ms: 1,
            overridden: true,
            seen: None,
        };
        let stamp = fivestar_core::Stamp { by: "device d1".into(), at_ms: 1 };
        store.write(1, |doc| doc.set_review("u-safety-grid", &review, &stamp)).unwrap().unwrap();
    }
    bad.fail(&["sync"]);
    // One has its certificate but never connects.
    let _silent = NodeDir::for_hub(&hub, "fangou", "d1");

    let status: Value = serde_json::from_str(&hub.ok(&["status", "--json"])).unwrap();
    assert_eq!(
        status["summary_text"],
        "1 synced in the last hour, 1 never synced, 86 never seen; 1 device(s) failing"
    );
    let rows = status["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 88);
    assert_eq!(
        (rows[0]["health"].as_str(), rows[0]["community"].as_str()),
        (Some("failing"), Some("yuyuan"))
    );
    assert_eq!(rows[0]["peer"]["last_error_class"], "denied");
    assert!(
        rows[0]["peer"]["last_error_message"]
            .as_str()
            .unwrap()
            .contains("may not write tasks/u-safety-grid/review")
    );
    let fangou = rows.iter().find(|r| r["community"] == "fangou").unwrap();
    assert_eq!(fangou["health"], "never_seen");
    let last = &rows[87];
    assert_eq!((last["health"].as_str(), last["community"].as_str()), (Some("ok"), Some("fuhou")));
    assert!(last["peer"]["bytes_in"].as_i64().unwrap() > 0);
    assert_eq!(last["peer"]["node_version"], env!("CARGO_PKG_VERSION"));
    let table = hub.ok(&["status"]);
    assert!(table.lines().nth(3).unwrap().contains("FAILING"), "problems first:\n{table}");
    assert!(table.contains(
        "1 synced in the last hour, 1 never synced, 86 never seen; 1 device(s) failing."
    ));
}

#[test]
fn hub_and_node_metrics_pass_promtool() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    let metrics_port = fivestar_tests::free_port();
    node.set_config("metrics_listen", &format!("\"127.0.0.1:{metrics_port}\""));
    node.ok(&["task", "done", "a-industry-jobs"]);
    let mut daemon = node.command(&["run"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let node_addr = format!("127.0.0.1:{metrics_port}");
    let synced = eventually(Duration::from_secs(20), || {
        http_get(&node_addr, "/metrics")
            .map(|(_, body)| body.contains("fivestar_node_sync_rounds_total{result=\"ok\"}"))
            .unwrap_or(false)
    });
    let node_metrics = http_get(&node_addr, "/metrics");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(synced, "the daemon did not sync");
    // Hub metrics after the sync (the standings refresh within 5 s).
    assert!(eventually(Duration::from_secs(10), || {
        http_get(&hub.dashboard(), "/metrics")
            .map(|(_, body)| {
                body.contains(
                    "fivestar_hub_community_last_sync_timestamp_seconds{community=\"fangou\"}",
                )
            })
            .unwrap_or(false)
    }));
    let (code, hub_metrics) = http_get(&hub.dashboard(), "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in [
        "fivestar_hub_sync_sessions_total",
        "fivestar_hub_sync_bytes_total{direction=\"in\"}",
        "fivestar_hub_changes_applied_total",
        "fivestar_hub_merge_duration_seconds_bucket",
        "fivestar_hub_rescore_duration_seconds_bucket",
        "fivestar_hub_connected_devices",
        "fivestar_hub_communities{freshness=\"no_data\"} 87",
        "fivestar_hub_community_never_synced{community=\"yuyuan\"} 1",
        "fivestar_hub_community_never_synced{community=\"fangou\"} 0",
        "fivestar_hub_build_info{version=",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(hub_metrics.contains(name), "hub metrics lack {name}:\n{hub_metrics}");
    }
    let (ok, said) = promtool_check_metrics(&hub_metrics);
    assert!(ok && said.trim().is_empty(), "promtool on the hub's metrics: {said}");

    let (code, node_metrics) = node_metrics.unwrap();
    assert_eq!(code, 200);
    for name in [
        "fivestar_node_sync_rounds_total{result=\"ok\"}",
        "fivestar_node_unacknowledged_changes 0",
        "fivestar_node_last_sync_timestamp_seconds",
        "fivestar_node_build_info{version=",
        "process_resident_memory_bytes",
    ] {
        assert!(node_metrics.contains(name), "node metrics lack {name}:\n{node_metrics}");
    }
    let (ok, said) = promtool_check_metrics(&node_metrics);
    assert!(ok && said.trim().is_empty(), "promtool on the node's metrics: {said}");

    // Every metric the Grafana dashboard queries exists: defined by the hub or the
    // node, or exported (process_*) by the running processes.
    let dashboard: Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/fivestar.json")).unwrap();
    let defined =
        [include_str!("../../../hub/src/observe.rs"), include_str!("../../../node/src/sync.rs")]
            .concat();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !(name.starts_with("fivestar_") || name.starts_with("process_")) {
                    continue;
                }
                queried += 1;
                let base = name.trim_end_matches("_bucket");
                let exists = defined.contains(&format!("\"{base}\""))
                    || hub_metrics.contains(name)
                    || node_metrics.contains(name);
                assert!(
                    exists,
                    "the dashboard's panel {:?} queries {name}, which nothing exports",
                    panel["title"]
                );
            }
        }
    }
    assert!(queried > 10, "the dashboard queries the project's metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_answers_grpc_health_checks_and_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let hub = Hub::started();
    let certs = tempfile::tempdir().unwrap();
    hub.issue_into(&["--reviewer", "ops"], certs.path());
    let channel = fivestar_tests::raw::channel(&hub.url(), certs.path()).await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "fivestar.v1.Sync", "fivestar.v1.Query"] {
        let reply = health
            .check(HealthCheckRequest { service: service.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
    }
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"fivestar.v1.Sync".to_string()), "{names:?}");
    assert!(names.contains(&"fivestar.v1.Query".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
    // The older v1alpha protocol, which Python's grpcio-reflection speaks, too.
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaMessage;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMessage::ListServices(String::new())),
    };
    let mut replies = AlphaClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"fivestar.v1.Sync".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
}

#[test]
fn the_dashboard_loads_in_headless_chromium_with_its_tables() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    for task in [
        "a-industry-collective",
        "a-industry-leading",
        "a-industry-company",
        "a-industry-assets",
        "a-industry-jobs",
    ] {
        node.ok(&["task", "done", task]);
    }
    node.ok(&["sync"]);
    let url = format!("http://{}/", hub.dashboard());
    // The standings refresh within 5 s of the sync; wait until the page shows it.
    assert!(eventually(Duration::from_secs(15), || {
        http_get(&hub.dashboard(), "/").map(|(_, body)| body.contains("100.00")).unwrap_or(false)
    }));
    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[&str]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=414,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium is installed (Debian package chromium; .ci/run installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8(dom.stdout).unwrap();
    for text in [
        "同步状态",
        "排名",
        "樊沟社区",
        "最近一小时已同步 1 个",
        "从未连接 87 个",
        "100.00★",
        "<svg",
        "从未连接的社区 87 个",
    ] {
        assert!(dom.contains(text), "the rendered page lacks {text:?}");
    }
    assert!(
        !dom.contains("http://") || !dom.contains("src=\"http"),
        "the page loads nothing from outside"
    );
    // A small-screen screenshot, kept beside the test binaries for people to look at.
    let shot = fivestar_tests::binary("fivestar-hub").with_file_name("dashboard.png");
    let out = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a real screenshot at {}",
        shot.display()
    );
}

#[test]
fn a_backup_taken_while_the_hub_runs_restores_the_same_district() {
    let hub = Hub::started();
    let node = NodeDir::for_hub(&hub, "fangou", "d1");
    node.ok(&["task", "done", "a-industry-jobs"]);
    node.ok(&["sync"]);
    hub.ok(&["review", "fangou", "a-industry-jobs", "accept", "--reviewer", "王敏"]);
    let backup = tempfile::tempdir().unwrap();
    let file = backup.path().join("hub-backup.db");
    let out = hub.ok(&["backup", "--out", file.to_str().unwrap()]);
    assert!(out.contains("Backed up"), "{out}");
    let err = hub.fail(&["backup", "--out", file.to_str().unwrap()]);
    assert!(err.contains("exists already"), "{err}");
    // Restore into a fresh hub: its database and the PKI the running hub needs (the
    // CA's key is not among them: it lives in the CA folder, apart).
    let mut restored = Hub::new("");
    std::fs::copy(&file, restored.path().join("hub.db")).unwrap();
    for name in ["ca.pem", "hub.pem", "hub.key", "crl.pem"] {
        std::fs::copy(hub.path().join("pki").join(name), restored.path().join("pki").join(name))
            .unwrap();
    }
    assert!(!hub.path().join("pki").join("ca.key").exists(), "no CA key beside the hub");
    restored.start();
    let before: Value = serde_json::from_str(&hub.ok(&["community", "fangou", "--json"])).unwrap();
    let after: Value =
        serde_json::from_str(&restored.ok(&["community", "fangou", "--json"])).unwrap();
    assert_eq!(before["tasks"], after["tasks"]);
    assert_eq!(after["score"]["total"], before["score"]["total"]);
    let review =
        after["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "a-industry-jobs").unwrap();
    assert_eq!(review["review"]["verdict"], "accepted");
}
