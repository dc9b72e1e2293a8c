//! The hub's HTTP side, on its own port (localhost unless configured otherwise):
//! a read-only dashboard for the district office and operators, Prometheus metrics,
//! and the same data as JSON. Nothing here writes; nothing is loaded from outside.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::TimeDelta;
use fivestar_store::StoreThread;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::report::{self, STYLE, escape, local_time};
use crate::status::{Health, StatusRow, Summary, status};
use crate::store::HubStore;

/// How often the dashboard reloads itself, seconds.
pub const REFRESH_SECONDS: u32 = 15;

#[derive(Debug, Clone)]
struct Web {
    store: StoreThread<HubStore>,
    metrics: Option<PrometheusHandle>,
    stale_after: TimeDelta,
}

/// Serves the dashboard on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: StoreThread<HubStore>,
    metrics: Option<PrometheusHandle>,
    stale_after: TimeDelta,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let state = Arc::new(Web { store, metrics, stale_after });
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics_text))
        .route("/api/standings", get(api_standings))
        .route("/api/status", get(api_status))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// The address the dashboard listens on, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

fn failure(err: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("the hub cannot answer: {err}")).into_response()
}

async fn metrics_text(State(web): State<Arc<Web>>) -> Response {
    match &web.metrics {
        Some(handle) => {
            crate::observe::collect_process();
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
                .into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are not recorded in this process")
            .into_response(),
    }
}

async fn sync_status(web: &Web) -> Result<(Vec<StatusRow>, Summary), String> {
    let stale_after = web.stale_after.num_milliseconds();
    web.store
        .call(move |store| {
            let peers = store.peers()?;
            let now = chrono::Utc::now().timestamp_millis();
            Ok::<_, fivestar_store::StoreError>(status(store.registry(), &peers, now, stale_after))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn api_status(State(web): State<Arc<Web>>) -> Response {
    match sync_status(&web).await {
        Ok((rows, summary)) => {
            Json(serde_json::json!({ "summary": summary, "summary_text": summary.to_string(), "rows": rows }))
                .into_response()
        }
        Err(err) => failure(err),
    }
}

async fn standings_view(
    web: &Web,
) -> Result<(report::StandingsView, fivestar_core::Standard), String> {
    let stale_after = web.stale_after;
    web.store
        .call(move |store| {
            report::standings_view(store, stale_after, None, None)
                .map(|v| (v, store.standard().clone()))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn api_standings(State(web): State<Arc<Web>>) -> Response {
    match standings_view(&web).await {
        Ok((view, _)) => Json(view).into_response(),
        Err(err) => failure(err),
    }
}

async fn dashboard(State(web): State<Arc<Web>>) -> Response {
    let standings = standings_view(&web).await;
    let status = sync_status(&web).await;
    let ((view, standard), (rows, summary)) = match (standings, status) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(err), _) | (_, Err(err)) => return failure(err),
    };
    Html(page(&view, &standard, &rows, &summary)).into_response()
}

fn page(
    view: &report::StandingsView,
    standard: &fivestar_core::Standard,
    rows: &[StatusRow],
    summary: &Summary,
) -> String {
    let mut sync_rows = String::new();
    // Communities never seen are listed once, folded, so real rows stay in view.
    let unseen: Vec<String> = rows
        .iter()
        .filter(|r| r.health == Health::NeverSeen)
        .map(|r| escape(&r.community_name))
        .collect();
    for row in rows.iter().filter(|r| r.health != Health::NeverSeen) {
        let peer = row.peer.as_ref();
        let class = match row.health {
            Health::Failing | Health::Revoked => " class=\"failing\"",
            Health::Stale => " class=\"stale\"",
            Health::NeverSeen | Health::NeverSynced => " class=\"nodata\"",
            Health::Ok => "",
        };
        let error = peer
            .and_then(|p| {
                p.last_error_message
                    .as_ref()
                    .map(|m| format!("{}: {m}", p.last_error_class.clone().unwrap_or_default()))
            })
            .unwrap_or_default();
        let _ = writeln!(
            sync_rows,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            row.health.zh(),
            escape(&row.community_name),
            escape(row.device.as_deref().unwrap_or("—")),
            peer.and_then(|p| p.last_success_ms).map(local_time).unwrap_or_else(|| "—".into()),
            peer.map(|p| local_time(p.last_seen_ms)).unwrap_or_else(|| "—".into()),
            peer.map(|p| p.sessions.to_string()).unwrap_or_default(),
            peer.and_then(|p| p.unacked_changes).map(|n| n.to_string()).unwrap_or_default(),
            escape(&error),
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>魏都区“五星支部” 同步与排名看板</title>
<style>
{STYLE}
</style>
</head>
<body>
<h1>魏都区“五星支部” 同步与排名看板</h1>
<p class="meta">更新于 {time}，每 {REFRESH_SECONDS} 秒自动刷新 · Updated {time}, refreshes every {REFRESH_SECONDS} s</p>
{warning}
<h2>同步状态 Sync health</h2>
<p id="summary"><strong>{summary_zh}</strong><br><span class="meta">{summary}</span></p>
<div class="scroll"><table id="sync">
<thead><tr><th>状态</th><th>社区</th><th>设备</th><th>最近成功同步</th><th>最近连接</th><th>会话</th><th>待确认</th><th>最近错误</th></tr></thead>
<tbody>
{sync_rows}</tbody>
</table></div>
{unseen}
<h2>各街道星级分布 Stars per subdistrict</h2>
{chart}
<h2>排名 Standings</h2>
{standings}
</body>
</html>
"#,
        time = local_time(view.computed_ms),
        warning = report::sample_warning(view),
        summary_zh = escape(&summary_zh(summary)),
        summary = escape(&summary.to_string()),
        unseen = if unseen.is_empty() {
            String::new()
        } else {
            format!(
                "<details id=\"unseen\"><summary>从未连接的社区 {} 个 · never seen</summary><p>{}</p></details>",
                unseen.len(),
                unseen.join("、")
            )
        },
        chart = report::tier_chart(&view.tiers),
        standings = report::standings_table_html(view, standard),
    )
}

fn summary_zh(s: &Summary) -> String {
    let mut parts = vec![format!("共 {} 个社区", s.communities)];
    for (n, what) in [
        (s.synced_last_hour, "最近一小时已同步"),
        (s.synced_earlier, "更早同步"),
        (s.stale, "数据过期"),
        (s.never_synced, "从未成功同步"),
        (s.never_seen, "从未连接"),
    ] {
        if n > 0 {
            parts.push(format!("{what} {n} 个"));
        }
    }
    if s.failing_devices > 0 {
        parts.push(format!("{} 台设备同步失败", s.failing_devices));
    }
    parts.join("，")
}
