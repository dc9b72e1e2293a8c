//! The hub's web side, on its own port: the dashboard for the district office and
//! operators, the review desk for the office and the five task forces, the
//! campaign's progress for the leading group, exports, Prometheus metrics and JSON.
//!
//! A thin face: handlers read through the same operations as the command line and
//! the Query service ([`crate::desk`], [`crate::report`], [`crate::status`]) on the
//! store thread, and render [`pages`]. Once any account exists (`fivestar-hub user
//! add`), every page but `/metrics` and `/healthz` needs a sign-in; forms carry the
//! session's CSRF token; sign-in attempts are rate limited and logged. Beyond
//! localhost the side is served over HTTPS with the hub's certificate.

#![allow(clippy::result_large_err)] // A refused request is answered at once: its response is the error.

mod pages;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::TimeDelta;
use fivestar_core::Verdict;
use fivestar_store::StoreThread;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::sync::watch;

use crate::desk::{self, Decision, QueueFilter, TouchCache, Waiting};
use crate::status::{StatusRow, Summary, status};
use crate::store::HubStore;
use crate::store::accounts::{Account, password_matches};

pub use pages::Lang;
pub use tls::{PeerAddr, TlsListener};

/// How often the dashboard reloads itself, seconds.
pub const REFRESH_SECONDS: u32 = 15;
/// The session cookie.
const COOKIE: &str = "fivestar_hub_session";
/// Sessions kept at most.
const MAX_SESSIONS: usize = 1024;
/// A session unused for this long ends.
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failed sign-ins per account name before a pause.
const MAX_FAILURES: u32 = 5;
/// Failed sign-ins per client address before a pause (higher: an office's PCs may
/// share one address).
const MAX_FAILURES_PER_ADDRESS: u32 = 30;
/// The pause.
const PAUSE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Session {
    account: Option<String>,
    csrf: String,
    lang: Lang,
    flash: Option<String>,
    used: Instant,
}

#[derive(Debug)]
struct Web {
    store: StoreThread<HubStore>,
    metrics: Option<PrometheusHandle>,
    stale_after: TimeDelta,
    https: bool,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    touched: Arc<Mutex<TouchCache>>,
    /// A hash checked when the account does not exist, so a wrong name costs the
    /// same time as a wrong password.
    dummy_hash: String,
}

type App = Arc<Web>;

/// Serves the web side on `listener` until `shutdown` turns true; over HTTPS when
/// `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    store: StoreThread<HubStore>,
    metrics: Option<PrometheusHandle>,
    stale_after: TimeDelta,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Arc::new(Web {
        store,
        metrics,
        stale_after,
        https: tls.is_some(),
        sessions: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        touched: Arc::new(Mutex::new(TouchCache::default())),
        dummy_hash: crate::store::accounts::hash_password(&random_token()).unwrap_or_default(),
    });
    let router = router(app).into_make_service_with_connect_info::<PeerAddr>();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    match tls {
        Some(config) => {
            axum::serve(TlsListener::new(listener, config), router)
                .with_graceful_shutdown(stop)
                .await
        }
        None => axum::serve(listener, router).with_graceful_shutdown(stop).await,
    }
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/app.css", get(stylesheet))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/lang", axum::routing::post(set_lang))
        .route("/review", get(queue))
        .route("/review/{community}/{task}", get(task_page).post(decide))
        .route("/community/{id}", get(community_page))
        .route("/files/{community}/{hash}", get(evidence_file))
        .route("/files/{community}/{hash}/thumb", get(evidence_thumb))
        .route("/progress", get(progress_page))
        .route("/standings.csv", get(standings_csv))
        .route("/standings.xlsx", get(standings_xlsx))
        .route("/metrics", get(metrics_text))
        .route("/api/standings", get(api_standings))
        .route("/api/status", get(api_status))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::map_response(headers))
        .with_state(app)
}

/// The describe line for logs.
pub fn describe(addr: SocketAddr, https: bool) -> String {
    format!("{}://{addr}/", if https { "https" } else { "http" })
}

async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn failure(err: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("the hub cannot answer: {err}")).into_response()
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// What a page knows of its visitor.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The language.
    pub lang: Lang,
    /// The signed-in account, if any.
    pub account: Option<Account>,
    /// The Chinese name of the account's star, for a task force.
    pub star_name: Option<String>,
    /// The form token.
    pub csrf: String,
    /// A message shown once.
    pub flash: Option<String>,
}

/// A request's session: found, or made (then the answer sets the cookie).
struct Visitor {
    id: String,
    new: bool,
    visit: Visit,
}

impl Visitor {
    fn page(&self, status: StatusCode, body: maud::Markup, https: bool) -> Response {
        self.finish((status, Html(body.into_string())).into_response(), https)
    }

    fn redirect(&self, to: &str, https: bool) -> Response {
        self.finish(Redirect::to(to).into_response(), https)
    }

    fn finish(&self, mut response: Response, https: bool) -> Response {
        if self.new {
            let secure = if https { "; Secure" } else { "" };
            let value = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}", self.id);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }
}

async fn visitor(app: &App, headers: &HeaderMap) -> Visitor {
    let (id, session, new) = {
        let mut sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.used.elapsed() < SESSION_IDLE);
        match cookie(headers).and_then(|id| sessions.get_mut(&id).map(|s| (id, s))) {
            Some((id, session)) => {
                session.used = Instant::now();
                let flash = session.flash.take();
                let mut copy = session.clone();
                copy.flash = flash;
                (id, copy, false)
            }
            None => {
                if sessions.len() >= MAX_SESSIONS
                    && let Some(oldest) =
                        sessions.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone())
                {
                    sessions.remove(&oldest);
                }
                let id = random_token();
                let session = Session {
                    account: None,
                    csrf: random_token(),
                    lang: Lang::Zh,
                    flash: None,
                    used: Instant::now(),
                };
                sessions.insert(id.clone(), session.clone());
                (id, session, true)
            }
        }
    };
    let (account, star_name) = match session.account.clone() {
        Some(name) => app
            .store
            .call(move |s| {
                let account = s.account(&name)?.filter(|a| !a.disabled);
                let star = account.as_ref().and_then(|a| a.role.star()).map(|key| {
                    let mut names: Vec<String> = fivestar_core::Kind::ALL
                        .iter()
                        .filter_map(|k| s.standard().kind(*k).star(key).map(|st| st.zh.clone()))
                        .collect();
                    names.dedup();
                    names.join("/")
                });
                Ok::<_, fivestar_store::StoreError>((account, star))
            })
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or((None, None)),
        None => (None, None),
    };
    Visitor {
        visit: Visit {
            lang: session.lang,
            account,
            star_name,
            csrf: session.csrf,
            flash: session.flash,
        },
        id,
        new,
    }
}

fn update(app: &App, id: &str, f: impl FnOnce(&mut Session)) {
    let mut sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(session) = sessions.get_mut(id) {
        f(session);
    }
}

async fn accounts_exist(app: &App) -> bool {
    // A store that cannot answer is treated as "accounts exist": closed, not open.
    app.store.call(|s| s.has_accounts()).await.ok().and_then(Result::ok).unwrap_or(true)
}

/// A page that needs a signed-in account once accounts exist: the visitor, or the
/// redirect to sign in.
async fn signed_in(app: &App, headers: &HeaderMap) -> Result<Visitor, Response> {
    let v = visitor(app, headers).await;
    if v.visit.account.is_some() || !accounts_exist(app).await {
        Ok(v)
    } else {
        Err(v.redirect("/login", app.https))
    }
}

/// A form's check: the session exists and the token is its own.
fn checked(app: &App, headers: &HeaderMap, token: &str) -> Result<(String, Session), Response> {
    let refuse = |lang: Lang| {
        (StatusCode::FORBIDDEN, Html(pages::refusal(lang).into_string())).into_response()
    };
    let Some(id) = cookie(headers) else { return Err(refuse(Lang::Zh)) };
    let sessions = app.sessions.lock().unwrap_or_else(|e| e.into_inner());
    match sessions.get(&id) {
        Some(s)
            if s.csrf.len() == token.len()
                && s.csrf
                    .as_bytes()
                    .iter()
                    .zip(token.as_bytes())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0 =>
        {
            Ok((id.clone(), s.clone()))
        }
        Some(s) => Err(refuse(s.lang)),
        None => Err(refuse(Lang::Zh)),
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        pages::STYLESHEET,
    )
        .into_response()
}

async fn metrics_text(State(web): State<App>) -> Response {
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

async fn standings_view(
    web: &Web,
) -> Result<(crate::report::StandingsView, fivestar_core::Standard), String> {
    let stale_after = web.stale_after;
    web.store
        .call(move |store| {
            crate::report::standings_view(store, stale_after, None, None)
                .map(|v| (v, store.standard().clone()))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn api_status(State(web): State<App>, headers: HeaderMap) -> Response {
    if let Err(to) = signed_in(&web, &headers).await {
        return to;
    }
    match sync_status(&web).await {
        Ok((rows, summary)) => Json(serde_json::json!({
            "summary": summary, "summary_text": summary.to_string(), "rows": rows
        }))
        .into_response(),
        Err(err) => failure(err),
    }
}

async fn api_standings(State(web): State<App>, headers: HeaderMap) -> Response {
    if let Err(to) = signed_in(&web, &headers).await {
        return to;
    }
    match standings_view(&web).await {
        Ok((view, _)) => Json(view).into_response(),
        Err(err) => failure(err),
    }
}

async fn dashboard(State(web): State<App>, headers: HeaderMap) -> Response {
    let v = match signed_in(&web, &headers).await {
        Ok(v) => v,
        Err(to) => return to,
    };
    let standings = standings_view(&web).await;
    let status = sync_status(&web).await;
    match (standings, status) {
        (Ok((view, standard)), Ok((rows, summary))) => v.page(
            StatusCode::OK,
            pages::dashboard(&v.visit, &view, &standard, &rows, &summary),
            web.https,
        ),
        (Err(err), _) | (_, Err(err)) => failure(err),
    }
}

async fn standings_csv(State(web): State<App>, headers: HeaderMap) -> Response {
    if let Err(to) = signed_in(&web, &headers).await {
        return to;
    }
    match standings_view(&web)
        .await
        .and_then(|(view, _)| crate::report::csv(&view).map_err(|e| e.to_string()))
    {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"standings.csv\""),
            ],
            text,
        )
            .into_response(),
        Err(err) => failure(err),
    }
}

async fn standings_xlsx(State(web): State<App>, headers: HeaderMap) -> Response {
    if let Err(to) = signed_in(&web, &headers).await {
        return to;
    }
    match standings_view(&web).await.and_then(|(view, standard)| {
        crate::report::xlsx(&view, &standard).map_err(|e| e.to_string())
    }) {
        Ok(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"standings.xlsx\""),
            ],
            bytes,
        )
            .into_response(),
        Err(err) => failure(err),
    }
}

async fn login_page(State(web): State<App>, headers: HeaderMap) -> Response {
    let v = visitor(&web, &headers).await;
    v.page(StatusCode::OK, pages::login(&v.visit, None, ""), web.https)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    csrf: String,
    name: String,
    password: String,
}

fn paused(web: &Web, key: &str) -> bool {
    let limit = if key.starts_with("addr:") { MAX_FAILURES_PER_ADDRESS } else { MAX_FAILURES };
    let failures = web.failures.lock().unwrap_or_else(|e| e.into_inner());
    failures.get(key).is_some_and(|(n, at)| *n >= limit && at.elapsed() < PAUSE)
}

fn failed(web: &Web, key: &str) {
    let mut failures = web.failures.lock().unwrap_or_else(|e| e.into_inner());
    let entry = failures.entry(key.to_string()).or_insert((0, Instant::now()));
    if entry.1.elapsed() >= PAUSE {
        *entry = (0, Instant::now());
    }
    entry.0 += 1;
    entry.1 = Instant::now();
}

async fn login(
    State(web): State<App>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let (id, session) = match checked(&web, &headers, &form.csrf) {
        Ok(s) => s,
        Err(to) => return to,
    };
    let lang = session.lang;
    let name = form.name.trim().to_string();
    let (by_name, by_addr) = (format!("name:{name}"), format!("addr:{}", peer.ip()));
    let v = visitor(&web, &headers).await;
    if paused(&web, &by_name) || paused(&web, &by_addr) {
        tracing::warn!(account = %name, peer = %peer, "sign-in refused: too many failures");
        let message = lang.pick(
            "登录失败次数太多，请 5 分钟后再试",
            "Too many failed sign-ins; try again in 5 minutes",
        );
        return v.page(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(&v.visit, Some(message), &name),
            web.https,
        );
    }
    let lookup = name.clone();
    let account =
        web.store.call(move |s| s.account(&lookup)).await.ok().and_then(Result::ok).flatten();
    let ok = match &account {
        Some(a) => !a.disabled && password_matches(&form.password, &a.password_hash),
        None => {
            // The same work as a real check, so timing does not tell names apart.
            let _ = password_matches(&form.password, &web.dummy_hash);
            false
        }
    };
    if !ok {
        failed(&web, &by_name);
        failed(&web, &by_addr);
        tracing::warn!(account = %name, peer = %peer, "sign-in failed");
        let message = lang.pick("账号或密码不对", "Wrong account or password");
        return v.page(
            StatusCode::UNAUTHORIZED,
            pages::login(&v.visit, Some(message), &name),
            web.https,
        );
    }
    web.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&by_name);
    tracing::info!(account = %name, peer = %peer, "signed in to the web side");
    update(&web, &id, |s| {
        s.account = Some(name.clone());
        s.csrf = random_token();
    });
    let to = match account.map(|a| a.role) {
        Some(role) if role.reviews() => "/review",
        _ => "/",
    };
    Redirect::to(to).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    csrf: String,
}

async fn logout(
    State(web): State<App>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let (id, _) = match checked(&web, &headers, &form.csrf) {
        Ok(s) => s,
        Err(to) => return to,
    };
    update(&web, &id, |s| {
        s.account = None;
        s.csrf = random_token();
    });
    Redirect::to("/login").into_response()
}

#[derive(Debug, Deserialize)]
struct LangForm {
    csrf: String,
    lang: String,
    #[serde(default)]
    back: String,
}

async fn set_lang(
    State(web): State<App>,
    headers: HeaderMap,
    Form(form): Form<LangForm>,
) -> Response {
    let (id, _) = match checked(&web, &headers, &form.csrf) {
        Ok(s) => s,
        Err(to) => return to,
    };
    let lang = if form.lang == "en" { Lang::En } else { Lang::Zh };
    update(&web, &id, |s| s.lang = lang);
    let back = if form.back.starts_with('/') && !form.back.starts_with("//") {
        form.back
    } else {
        "/".into()
    };
    Redirect::to(&back).into_response()
}

/// The queue's filters, from the query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QueueQuery {
    /// Subdistrict code.
    #[serde(default)]
    pub subdistrict: String,
    /// Community id.
    #[serde(default)]
    pub community: String,
    /// `done` or `changed`.
    #[serde(default)]
    pub waiting: String,
}

async fn queue(
    State(web): State<App>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Response {
    let v = match signed_in(&web, &headers).await {
        Ok(v) => v,
        Err(to) => return to,
    };
    let Some(account) = v.visit.account.clone() else {
        return v.page(StatusCode::FORBIDDEN, pages::no_account(&v.visit), web.https);
    };
    let filter = QueueFilter {
        subdistrict: Some(q.subdistrict.clone()).filter(|s| !s.is_empty()),
        community: Some(q.community.clone()).filter(|s| !s.is_empty()),
        waiting: match q.waiting.as_str() {
            "done" => Some(Waiting::Done),
            "changed" => Some(Waiting::Changed),
            _ => None,
        },
    };
    let touched = web.touched.clone();
    let role = account.role.clone();
    let result = web
        .store
        .call(move |s| {
            let mut cache = touched.lock().unwrap_or_else(|e| e.into_inner());
            let items = desk::queue(s, &mut cache, &role, &filter)?;
            // Which of the listed tasks' files are at the hub, for their previews.
            let mut files_here = std::collections::HashSet::new();
            for item in &items {
                for f in item.task.notes.iter().filter_map(|n| n.file.as_ref()) {
                    // At the hub, and not a photo known to have no preview.
                    if s.file_progress(&item.community, &f.hash, f.size)?.complete
                        && !s.preview_impossible(&item.community, &f.hash)?
                    {
                        files_here.insert((item.community.clone(), f.hash.clone()));
                    }
                }
            }
            Ok::<_, fivestar_store::StoreError>((items, s.registry().clone(), files_here))
        })
        .await;
    match result {
        Ok(Ok((items, registry, files_here))) => v.page(
            StatusCode::OK,
            pages::queue(&v.visit, &account, &items, &registry, &q, &files_here),
            web.https,
        ),
        Ok(Err(err)) => failure(err),
        Err(err) => failure(err),
    }
}

/// A task as the review desk shows it.
#[derive(Debug)]
pub struct TaskView {
    /// The community.
    pub community: fivestar_core::Community,
    /// The task.
    pub task: fivestar_core::Task,
    /// The star's name.
    pub star_name: String,
    /// History: what each change claims, and who delivered it.
    pub history: Vec<(fivestar_core::HistoryEntry, Option<(String, i64)>)>,
    /// The evidence files the hub holds whole, by SHA-256.
    pub files_here: std::collections::HashSet<String>,
    /// Photos among them the hub could not decode for a preview.
    pub no_preview: std::collections::HashSet<String>,
}

async fn load_task(web: &Web, community: String, task: String) -> Result<Option<TaskView>, String> {
    web.store
        .call(move |s| -> Result<Option<TaskView>, fivestar_store::StoreError> {
            let Some(entry) = s.registry().community(&community).cloned() else { return Ok(None) };
            let Some(doc) = s.community(&community)? else { return Ok(None) };
            let Ok(task) = doc.task(&task) else { return Ok(None) };
            let deliveries =
                s.deliveries(&fivestar_core::document::community_doc_id(&community))?;
            let history = doc
                .history(Some(&task.id))
                .into_iter()
                .map(|e| {
                    let d = deliveries.get(&e.hash).cloned();
                    (e, d)
                })
                .collect();
            let star_name = s
                .standard()
                .kind(entry.kind)
                .star(&task.star)
                .map(|st| st.zh.clone())
                .unwrap_or_else(|| task.star.clone());
            let mut files_here = std::collections::HashSet::new();
            let mut no_preview = std::collections::HashSet::new();
            for f in task.notes.iter().filter_map(|n| n.file.as_ref()) {
                if s.file_progress(&community, &f.hash, f.size)?.complete {
                    files_here.insert(f.hash.clone());
                    if s.preview_impossible(&community, &f.hash)? {
                        no_preview.insert(f.hash.clone());
                    }
                }
            }
            Ok(Some(TaskView {
                community: entry,
                task,
                star_name,
                history,
                files_here,
                no_preview,
            }))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn task_page(
    State(web): State<App>,
    headers: HeaderMap,
    Path((community, task)): Path<(String, String)>,
) -> Response {
    let v = match signed_in(&web, &headers).await {
        Ok(v) => v,
        Err(to) => return to,
    };
    match load_task(&web, community, task).await {
        Ok(Some(view)) => v.page(StatusCode::OK, pages::task(&v.visit, &view, None), web.https),
        Ok(None) => v.page(StatusCode::NOT_FOUND, pages::not_found(&v.visit), web.https),
        Err(err) => failure(err),
    }
}

#[derive(Debug, Deserialize)]
struct DecideForm {
    csrf: String,
    action: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    awarded: String,
    #[serde(default)]
    r#override: Option<String>,
}

async fn decide(
    State(web): State<App>,
    headers: HeaderMap,
    Path((community, task)): Path<(String, String)>,
    Form(form): Form<DecideForm>,
) -> Response {
    let (id, session) = match checked(&web, &headers, &form.csrf) {
        Ok(s) => s,
        Err(to) => return to,
    };
    let v = visitor(&web, &headers).await;
    let lang = session.lang;
    let Some(account) = v.visit.account.clone() else {
        return Redirect::to("/login").into_response();
    };
    let refuse = |message: &str| refused(&web, &v, &community, &task, message.to_string());
    if !account.role.reviews() {
        return refuse(lang.pick("运维账号不能审核", "An operator's account does not review"))
            .await;
    }
    let verdict = match form.action.as_str() {
        "accept" => {
            let awarded = form.awarded.trim();
            if awarded.is_empty() {
                Verdict::Accepted { awarded: None }
            } else {
                match awarded.parse::<u32>() {
                    Ok(a) => Verdict::Accepted { awarded: Some(a) },
                    Err(_) => {
                        return refuse(
                            lang.pick("核定分须为整数", "Awarded points must be a whole number"),
                        )
                        .await;
                    }
                }
            }
        }
        "reject" => Verdict::Rejected,
        "reopen" => Verdict::Reopened,
        _ => return refuse(lang.pick("未知的操作", "Unknown action")).await,
    };
    let decision = Decision {
        verdict,
        comment: form.comment.clone(),
        override_not_done: form.r#override.is_some(),
    };
    let reviewer = desk::Reviewer::account(&account, "web");
    let (c, t) = (community.clone(), task.clone());
    let now = chrono::Utc::now().timestamp_millis();
    let result = web.store.call(move |s| desk::review(s, &reviewer, &c, &t, &decision, now)).await;
    match result {
        Ok(Ok(())) => {
            tracing::info!(account = %account.name, %community, %task, verdict = verdict.as_str(), "review recorded from the web");
            let message = match (lang, verdict) {
                (Lang::Zh, Verdict::Accepted { .. }) => "已保存：已通过",
                (Lang::Zh, Verdict::Rejected) => "已保存：已退回",
                (Lang::Zh, Verdict::Reopened) => "已保存：已重新打开",
                (Lang::En, _) => "Saved",
            };
            update(&web, &id, |s| s.flash = Some(message.to_string()));
            Redirect::to(&format!("/review/{community}/{task}")).into_response()
        }
        Ok(Err(err)) => refuse(&pages::review_error(lang, &err)).await,
        Err(err) => failure(err),
    }
}

/// The task page again, with why the review was not recorded.
async fn refused(web: &Web, v: &Visitor, community: &str, task: &str, message: String) -> Response {
    match load_task(web, community.to_string(), task.to_string()).await {
        Ok(Some(view)) => v.page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::task(&v.visit, &view, Some(&message)),
            web.https,
        ),
        _ => v.page(StatusCode::NOT_FOUND, pages::not_found(&v.visit), web.https),
    }
}

/// An evidence file the hub holds whole: images in the page, others downloaded.
async fn evidence_file(
    State(web): State<App>,
    headers: HeaderMap,
    Path((community, hash)): Path<(String, String)>,
) -> Response {
    if let Err(to) = signed_in(&web, &headers).await {
        return to;
    }
    let (c, h) = (community.clone(), hash.clone());
    let found = web
        .store
        .call(
            move |s| -> Result<
                Option<(fivestar_core::FileRef, Vec<u8>)>,
                fivestar_store::StoreError,
            > {
                let Some(file) = s.referenced_file(&c, &h)? else { return Ok(None) };
                Ok(s.file_bytes_of(&c, &h)?.map(|bytes| (file, bytes)))
            },
        )
        .await;
    match found {
        Ok(Ok(Some((file, bytes)))) => {
            let disposition = if file.mime.starts_with("image/") { "inline" } else { "attachment" };
            let ascii: String = file
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
                .collect();
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&file.mime) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{ascii}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Ok(Ok(None)) => {
            (StatusCode::NOT_FOUND, "the hub does not hold this file (yet)").into_response()
        }
        Ok(Err(err)) => failure(err),
        Err(err) => failure(err),
    }
}

/// A photo's preview, made on first request if it was not made on arrival.
async fn evidence_thumb(
    State(web): State<App>,
    headers: HeaderMap,
    Path((community, hash)): Path<(String, String)>,
) -> Response {
    if let Err(to) = signed_in(&web, &headers).await {
        return to;
    }
    match crate::thumbs::preview(&web.store, &community, &hash).await {
        Ok(Some(bytes)) => {
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            // Content-addressed: a hash's preview never changes.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=31536000, immutable"),
            );
            response
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no preview of this file").into_response(),
        Err(err) => failure(err),
    }
}

async fn community_page(
    State(web): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match signed_in(&web, &headers).await {
        Ok(v) => v,
        Err(to) => return to,
    };
    let stale_after = web.stale_after;
    let result = web
        .store
        .call(move |s| -> Result<Option<pages::CommunityView>, String> {
            let Some(entry) = s.registry().community(&id).cloned() else { return Ok(None) };
            let view = crate::report::standings_view(s, stale_after, None, None)
                .map_err(|e| e.to_string())?;
            let standing = view.rows.iter().find(|r| r.standing.community == id).cloned();
            let tasks = s
                .community(&id)
                .map_err(|e| e.to_string())?
                .map(|d| d.read().0)
                .unwrap_or_default();
            let kind = s.standard().kind(entry.kind).clone();
            let score = fivestar_core::score(&kind, &tasks);
            Ok(Some(pages::CommunityView { entry, standing, kind, score, tasks }))
        })
        .await;
    match result {
        Ok(Ok(Some(view))) => v.page(StatusCode::OK, pages::community(&v.visit, &view), web.https),
        Ok(Ok(None)) => v.page(StatusCode::NOT_FOUND, pages::not_found(&v.visit), web.https),
        Ok(Err(err)) => failure(err),
        Err(err) => failure(err),
    }
}

async fn progress_page(State(web): State<App>, headers: HeaderMap) -> Response {
    let v = match signed_in(&web, &headers).await {
        Ok(v) => v,
        Err(to) => return to,
    };
    let touched = web.touched.clone();
    let result = web
        .store
        .call(move |s| {
            let mut cache = touched.lock().unwrap_or_else(|e| e.into_inner());
            desk::progress(s, &mut cache)
        })
        .await;
    match result {
        Ok(Ok(progress)) => v.page(StatusCode::OK, pages::progress(&v.visit, &progress), web.https),
        Ok(Err(err)) => failure(err),
        Err(err) => failure(err),
    }
}
