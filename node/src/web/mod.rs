//! The clerks' workbench: server-rendered web pages over the node's operations.
//!
//! A thin face like the command line: each handler parses a form, calls one
//! operation of [`crate::ops`] on the store thread, and renders a page from
//! [`pages`]. Nothing is loaded from outside (the stylesheet is inside the binary,
//! there is no script), so the pages work with no network at all.
//!
//! Safety: requests naming a host other than the node's own are refused (DNS
//! rebinding); every form carries the session's CSRF token; the session cookie is
//! HttpOnly and SameSite=Strict; a write is committed before the page says 已保存
//! (the handler awaits the store's durable transaction, then redirects).

#![allow(clippy::result_large_err)] // A refused request is answered at once: its response is the error.

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Local;
use fivestar_core::{TaskEdit, TaskStatus};
use fivestar_store::StoreThread;
use serde::Deserialize;

use crate::i18n::{self, Lang};
use crate::ops::{self, Context, Fault, Who};
use crate::store::{FileState, Store};

pub use pages::Filter;

/// The session cookie's name.
const COOKIE: &str = "fivestar_session";
/// Sessions kept at most (the oldest is dropped beyond it).
const MAX_SESSIONS: usize = 256;
/// Failed PIN attempts per name before a pause.
const MAX_PIN_FAILURES: u32 = 5;
/// The pause after too many failed PIN attempts.
const PIN_PAUSE: Duration = Duration::from_secs(60);

/// One browser's session: who signed in, its CSRF token, its language and the
/// message to show once on the next page.
#[derive(Debug, Clone)]
struct Session {
    clerk: Option<String>,
    csrf: String,
    lang: Lang,
    flash: Option<String>,
    used: Instant,
}

/// The workbench's shared state.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctx: Context,
    store: StoreThread<Store>,
    hosts: Vec<String>,
    lang: Lang,
    sessions: Mutex<HashMap<String, Session>>,
    pin_failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl App {
    /// The workbench of the node `ctx` over `store`, served at `address`
    /// (`127.0.0.1:8690`): requests must name that host, `localhost` with its port,
    /// or one of `[ui] hosts`.
    pub fn new(ctx: Context, store: StoreThread<Store>, address: &str) -> App {
        let port = address.rsplit_once(':').map(|(_, p)| p.to_string()).unwrap_or_default();
        let mut hosts = vec![address.to_string(), format!("localhost:{port}")];
        if let Some(ip) = address.strip_prefix("0.0.0.0:").or(address.strip_prefix("[::]:")) {
            let _ = ip;
            hosts.push(format!("127.0.0.1:{port}"));
        }
        for host in &ctx.config.ui.hosts {
            hosts.push(host.clone());
            hosts.push(format!("{host}:{port}"));
        }
        let lang = Lang::parse(&ctx.config.ui.lang).unwrap_or(Lang::Zh);
        App {
            inner: Arc::new(Inner {
                ctx,
                store,
                hosts,
                lang,
                sessions: Mutex::new(HashMap::new()),
                pin_failures: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn ctx(&self) -> &Context {
        &self.inner.ctx
    }

    /// Runs `f` on the store thread with the node's context.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Context, &mut Store) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, Fault> {
        let app = self.clone();
        match self.inner.store.call(move |store| f(&app.inner.ctx, store)).await {
            Ok(result) => result,
            Err(err) => Err(Fault::from(err)),
        }
    }
}

/// Binds the workbench's address.
pub async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

/// Serves the workbench until `stopped` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let router = router(app);
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await;
}

/// The workbench's routes.
pub fn router(app: App) -> Router {
    // An upload may be the largest file allowed plus the form around it.
    let upload_limit = usize::try_from(app.ctx().config.files.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    Router::new()
        .route("/", get(home))
        .route("/app.css", get(stylesheet))
        .route("/tasks", get(task_list))
        .route("/tasks/new", get(new_task_page).post(new_task))
        .route("/tasks/{id}", get(task_page))
        .route("/tasks/{id}/edit", post(edit_task))
        .route("/tasks/{id}/done", post(done_task))
        .route("/tasks/{id}/fail", post(fail_task))
        .route("/tasks/{id}/note", post(add_note))
        .route("/tasks/{id}/withdraw", post(withdraw_note))
        .route("/tasks/{id}/settle", post(settle))
        .route(
            "/tasks/{id}/attach",
            post(attach).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/files/{hash}", get(file))
        .route("/files/{hash}/thumb", get(thumb))
        .route("/print", get(print_sheet))
        .route("/welcome", get(welcome))
        .route("/template", post(apply_template))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/staff", post(add_staff))
        .route("/lang", post(set_lang))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Refuses requests for another host name (DNS rebinding) and adds the pages'
/// security headers to every answer.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !app.inner.hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host)) {
        tracing::warn!(host, "workbench request for a foreign host refused");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "此地址（{host}）不是本社区工作台的地址，请求被拒绝。\n\
                 This host name ({host}) is not the workbench's; the request was refused.\n"
            ),
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The session a request belongs to, made on first sight; its id is returned when
/// the browser must be given the cookie.
fn session(app: &App, headers: &HeaderMap) -> (String, Session, bool) {
    let id = cookie(headers, COOKIE);
    let mut sessions = app.inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = id
        && let Some(session) = sessions.get_mut(&id)
    {
        session.used = Instant::now();
        return (id, session.clone(), false);
    }
    if sessions.len() >= MAX_SESSIONS
        && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone())
    {
        sessions.remove(&oldest);
    }
    let id = random_token();
    let session = Session {
        clerk: None,
        csrf: random_token(),
        lang: app.inner.lang,
        flash: None,
        used: Instant::now(),
    };
    sessions.insert(id.clone(), session.clone());
    (id, session, true)
}

fn update_session(app: &App, id: &str, f: impl FnOnce(&mut Session)) {
    let mut sessions = app.inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(session) = sessions.get_mut(id) {
        f(session);
    }
}

fn take_flash(app: &App, id: &str) -> Option<String> {
    let mut sessions = app.inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
    sessions.get_mut(id).and_then(|s| s.flash.take())
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(response: &mut Response, id: &str) {
    let value = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// What every page needs to know about the request.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The session's language.
    pub lang: Lang,
    /// The clerk signed in.
    pub clerk: Option<String>,
    /// The CSRF token for forms.
    pub csrf: String,
    /// A message to show once (e.g. 已保存).
    pub flash: Option<String>,
}

/// A page request: the session, created when new, and whether a clerk must sign in
/// first (when the staff list is empty the welcome page comes first).
struct Page {
    id: String,
    new: bool,
    visit: Visit,
}

impl Page {
    fn open(app: &App, headers: &HeaderMap) -> Page {
        let (id, session, new) = session(app, headers);
        let flash = take_flash(app, &id);
        Page {
            visit: Visit { lang: session.lang, clerk: session.clerk, csrf: session.csrf, flash },
            id,
            new,
        }
    }

    fn html(&self, status: StatusCode, body: maud::Markup) -> Response {
        let mut response = (status, Html(body.into_string())).into_response();
        if self.new {
            set_cookie(&mut response, &self.id);
        }
        response
    }

    fn redirect(&self, to: &str) -> Response {
        let mut response = Redirect::to(to).into_response();
        if self.new {
            set_cookie(&mut response, &self.id);
        }
        response
    }
}

/// A form's CSRF check: the session must exist and the token must be its own.
fn checked(app: &App, headers: &HeaderMap, token: &str) -> Result<(String, Session), Response> {
    let refuse = |lang: Lang| {
        (
            StatusCode::FORBIDDEN,
            Html(
                pages::refusal(
                    lang,
                    lang.pick(
                        "这个表单已过期或不是从本工作台提交的，没有保存任何内容。请返回、刷新页面后再试。",
                        "This form has expired or did not come from this workbench; nothing was saved. Go back, reload the page and try again.",
                    ),
                )
                .into_string(),
            ),
        )
            .into_response()
    };
    let Some(id) = cookie(headers, COOKIE) else { return Err(refuse(app.inner.lang)) };
    let sessions = app.inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
    match sessions.get(&id) {
        Some(session) if constant_time_eq(session.csrf.as_bytes(), token.as_bytes()) => {
            Ok((id.clone(), session.clone()))
        }
        Some(session) => Err(refuse(session.lang)),
        None => Err(refuse(app.inner.lang)),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A write's context: a checked form from a signed-in clerk.
struct Writing {
    id: String,
    lang: Lang,
    who: Who,
}

async fn writing(app: &App, headers: &HeaderMap, token: &str) -> Result<Writing, Response> {
    let (id, session) = checked(app, headers, token)?;
    match session.clerk {
        Some(clerk) => Ok(Writing { id, lang: session.lang, who: Who { clerk: Some(clerk) } }),
        None => Err(Redirect::to("/signin").into_response()),
    }
}

fn saved(app: &App, writing: &Writing, to: &str) -> Response {
    let message = writing.lang.pick("已保存", "Saved").to_string();
    update_session(app, &writing.id, |s| s.flash = Some(message));
    Redirect::to(to).into_response()
}

/// The clerk must sign in (or the node be set up) before the workbench's pages.
async fn gate(app: &App, page: &Page) -> Option<Response> {
    if page.visit.clerk.is_some() {
        return None;
    }
    let staff = app.call(|_, store| Ok(store.staff()?)).await.unwrap_or_default();
    Some(if staff.is_empty() { page.redirect("/welcome") } else { page.redirect("/signin") })
}

fn fault_page(app: &App, visit: &Visit, fault: &Fault) -> Response {
    let status = match fault {
        Fault::Edit(fivestar_core::EditError::UnknownTask { .. }) => StatusCode::NOT_FOUND,
        Fault::Edit(_) | Fault::Said { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let _ = app;
    (status, Html(pages::fault(visit, fault).into_string())).into_response()
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

/// Everything the overview and the lists show, read in one store call.
#[derive(Debug)]
pub struct Snapshot {
    /// Readable tasks.
    pub tasks: Vec<fivestar_core::Task>,
    /// Problems of unreadable ones.
    pub problems: Vec<fivestar_core::Problem>,
    /// The sync state.
    pub sync: ops::SyncView,
    /// Reviews this clerk has seen, (task, review time).
    pub seen: std::collections::HashSet<(String, i64)>,
    /// Where each stored file stands, by hash (which have previews).
    pub files: HashMap<String, FileState>,
}

async fn snapshot(app: &App, clerk: Option<String>) -> Result<Snapshot, Fault> {
    app.call(move |_, store| {
        let (tasks, problems) = ops::tasks(store)?;
        let sync = ops::sync_view(store)?;
        let seen = match &clerk {
            Some(c) => store.reviews_seen(c)?,
            None => Default::default(),
        };
        let files = store.file_states()?;
        Ok(Snapshot { tasks, problems, sync, seen, files })
    })
    .await
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    match snapshot(&app, page.visit.clerk.clone()).await {
        Ok(snap) if snap.tasks.is_empty() && snap.problems.is_empty() => page.redirect("/welcome"),
        Ok(snap) => page.html(StatusCode::OK, pages::home(app.ctx(), &page.visit, &snap)),
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

async fn task_list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    match snapshot(&app, page.visit.clerk.clone()).await {
        Ok(snap) => {
            page.html(StatusCode::OK, pages::task_list(app.ctx(), &page.visit, &snap, &filter))
        }
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

#[derive(Debug, Deserialize)]
struct StarQuery {
    #[serde(default)]
    star: String,
}

async fn print_sheet(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<StarQuery>,
) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    match snapshot(&app, page.visit.clerk.clone()).await {
        Ok(snap) => page
            .html(StatusCode::OK, pages::print_sheet(app.ctx(), &page.visit, &snap, &query.star)),
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

/// The task page with what it shows beside the task.
#[derive(Debug)]
pub struct TaskView {
    /// The task.
    pub task: fivestar_core::Task,
    /// Fields set differently on two devices.
    pub conflicts: Vec<fivestar_core::Conflict>,
    /// Its history.
    pub history: Vec<ops::Change>,
    /// Where each stored file stands on its way to the hub, by hash.
    pub files: HashMap<String, FileState>,
}

async fn load_task(app: &App, id: String, clerk: Option<String>) -> Result<TaskView, Fault> {
    app.call(move |_, store| {
        let (task, conflicts) = ops::task(store, &id)?;
        let history = ops::history(store, Some(&task.id))?;
        // The clerk has now seen the task's review.
        if let (Some(clerk), Some(review)) = (&clerk, &task.review) {
            store.mark_review_seen(clerk, &task.id, review.at_ms)?;
        }
        let files = store.file_states()?;
        Ok(TaskView { task, conflicts, history, files })
    })
    .await
}

async fn task_page(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    match load_task(&app, id, page.visit.clerk.clone()).await {
        Ok(view) => {
            page.html(StatusCode::OK, pages::task_page(app.ctx(), &page.visit, &view, None))
        }
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

/// Shows the task page again with the refused form's fault beside its field.
async fn refused(app: &App, headers: &HeaderMap, id: &str, form: pages::Refused) -> Response {
    let page = Page::open(app, headers);
    match load_task(app, id.to_string(), None).await {
        Ok(view) => page.html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::task_page(app.ctx(), &page.visit, &view, Some(&form)),
        ),
        Err(fault) => fault_page(app, &page.visit, &fault),
    }
}

#[derive(Debug, Deserialize)]
struct EditForm {
    csrf: String,
    #[serde(default)]
    progress: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    due: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    points: Option<String>,
    #[serde(default)]
    star: Option<String>,
    /// The progress and status the page showed: a field the clerk left as it was is
    /// not sent as a choice (so 60 % on a task not started makes it 进行中).
    #[serde(default)]
    was_progress: Option<String>,
    #[serde(default)]
    was_status: Option<String>,
}

fn parse_percent(text: &str, field: &'static str) -> Result<u32, Fault> {
    let t = text.trim().trim_end_matches(['%', '％']);
    let (low, zh, en) = match field {
        "points" => (1, "分值须为 1 到 100 的整数", "points must be a whole number from 1 to 100"),
        _ => (0, "进度须为 0 到 100 的整数", "progress must be a whole number from 0 to 100"),
    };
    t.parse::<u32>()
        .ok()
        .filter(|v| (low..=100).contains(v))
        .ok_or_else(|| Fault::said(zh, en).on(field))
}

impl EditForm {
    fn edit(&self, lang: Lang) -> Result<TaskEdit, Fault> {
        let mut edit = TaskEdit::default();
        let unchanged = |now: &Option<String>, was: &Option<String>| {
            was.is_some() && now.as_deref().map(str::trim) == was.as_deref().map(str::trim)
        };
        if let Some(p) = self.progress.as_deref().filter(|p| !p.trim().is_empty())
            && !unchanged(&self.progress, &self.was_progress)
        {
            edit.progress = Some(parse_percent(p, "progress")?);
        }
        if let Some(s) = self.status.as_deref().filter(|s| !s.trim().is_empty())
            && !unchanged(&self.status, &self.was_status)
        {
            edit.status = Some(
                i18n::parse_status_in(lang, s)
                    .map_err(|e| Fault::said(e.clone(), e).on("status"))?,
            );
        }
        if let Some(o) = &self.owner {
            edit.owner = Some(o.trim().to_string());
        }
        if let Some(d) = &self.due {
            edit.due = Some(if d.trim().is_empty() {
                None
            } else {
                Some(
                    i18n::parse_date_in(lang, d)
                        .map_err(|e| Fault::said(e.clone(), e).on("due"))?,
                )
            });
        }
        if let Some(t) = &self.title {
            edit.title = Some(t.trim().to_string());
        }
        if let Some(p) = self.points.as_deref().filter(|p| !p.trim().is_empty()) {
            edit.points = Some(parse_percent(p, "points")?);
        }
        if let Some(s) = self.star.as_deref().filter(|s| !s.trim().is_empty()) {
            edit.star = Some(s.to_string());
        }
        // Done means 100 %, whatever progress was typed beside it.
        if edit.status == Some(TaskStatus::Done) {
            edit.progress = None;
        }
        Ok(edit)
    }

    fn values(&self) -> HashMap<&'static str, String> {
        let mut values = HashMap::new();
        for (k, v) in [
            ("progress", &self.progress),
            ("status", &self.status),
            ("owner", &self.owner),
            ("due", &self.due),
            ("title", &self.title),
            ("points", &self.points),
            ("star", &self.star),
        ] {
            if let Some(v) = v {
                values.insert(k, v.clone());
            }
        }
        values
    }
}

async fn edit_task(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let w = match writing(&app, &headers, &form.csrf).await {
        Ok(w) => w,
        Err(response) => return response,
    };
    let result = match form.edit(w.lang) {
        Ok(edit) => {
            let (who, task) = (w.who.clone(), id.clone());
            app.call(move |ctx, store| ops::edit(ctx, store, &who, &task, edit)).await
        }
        Err(fault) => Err(fault),
    };
    match result {
        Ok(task) => saved(&app, &w, &format!("/tasks/{}", task.id)),
        Err(fault) => {
            refused(&app, &headers, &id, pages::Refused::new("edit", &fault, w.lang, form.values()))
                .await
        }
    }
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    csrf: String,
}

/// One write from the task page: the form's token and a signed-in clerk checked,
/// `op` run on the store thread, then 已保存 and the task page (at `anchor`), or the
/// page again with the fault beside the form's field and what was typed kept.
#[allow(clippy::too_many_arguments)]
async fn task_write(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    csrf: &str,
    form: &'static str,
    values: HashMap<&'static str, String>,
    anchor: &str,
    op: impl FnOnce(&Context, &mut Store, &Who, &str) -> Result<fivestar_core::Task, Fault>
    + Send
    + 'static,
) -> Response {
    let w = match writing(app, headers, csrf).await {
        Ok(w) => w,
        Err(response) => return response,
    };
    let (who, task) = (w.who.clone(), id.to_string());
    match app.call(move |ctx, store| op(ctx, store, &who, &task)).await {
        Ok(task) => saved(app, &w, &format!("/tasks/{}{anchor}", task.id)),
        Err(fault) => {
            refused(app, headers, id, pages::Refused::new(form, &fault, w.lang, values)).await
        }
    }
}

async fn done_task(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let done = TaskEdit { status: Some(TaskStatus::Done), ..TaskEdit::default() };
    task_write(&app, &headers, &id, &form.csrf, "edit", HashMap::new(), "", move |c, s, w, t| {
        ops::edit(c, s, w, t, done)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct TextForm {
    csrf: String,
    #[serde(default)]
    text: String,
}

async fn fail_task(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TextForm>,
) -> Response {
    let (text, values) = (form.text.clone(), HashMap::from([("text", form.text)]));
    task_write(&app, &headers, &id, &form.csrf, "fail", values, "", move |c, s, w, t| {
        ops::fail(c, s, w, t, Some(&text))
    })
    .await
}

async fn add_note(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TextForm>,
) -> Response {
    let (text, values) = (form.text.clone(), HashMap::from([("text", form.text)]));
    task_write(&app, &headers, &id, &form.csrf, "note", values, "#notes", move |c, s, w, t| {
        ops::note(c, s, w, t, &text)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct WithdrawForm {
    csrf: String,
    number: usize,
}

async fn withdraw_note(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<WithdrawForm>,
) -> Response {
    let number = form.number;
    task_write(
        &app,
        &headers,
        &id,
        &form.csrf,
        "note",
        HashMap::new(),
        "#notes",
        move |c, s, w, t| ops::withdraw(c, s, w, t, number),
    )
    .await
}

#[derive(Debug, Deserialize)]
struct SettleForm {
    csrf: String,
    field: String,
    value: String,
}

async fn settle(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<SettleForm>,
) -> Response {
    let (field, value) = (form.field, form.value);
    task_write(&app, &headers, &id, &form.csrf, "settle", HashMap::new(), "", move |c, s, w, t| {
        ops::settle(c, s, w, t, &field, &value)
    })
    .await
}

/// Attaches a photo or document from the task page (a multipart form).
async fn attach(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    mut form: axum::extract::Multipart,
) -> Response {
    let (mut csrf, mut text, mut file) = (String::new(), String::new(), None);
    let mut too_large = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let filename = field.file_name().map(str::to_string);
                match (name.as_str(), field.bytes().await) {
                    ("csrf", Ok(b)) => csrf = String::from_utf8_lossy(&b).to_string(),
                    ("text", Ok(b)) => text = String::from_utf8_lossy(&b).to_string(),
                    ("file", Ok(b)) => file = Some((filename.unwrap_or_default(), b.to_vec())),
                    (_, Ok(_)) => {}
                    (_, Err(err)) => {
                        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                            too_large = Some(filename.unwrap_or_default());
                        }
                        break;
                    }
                }
            }
            Ok(None) => break,
            Err(err) => {
                if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large = Some(String::new());
                }
                break;
            }
        }
    }
    // The CSRF field comes first in the form, so a file too large still names its
    // session; one cut before the token is refused as any form without it.
    let w = match writing(&app, &headers, &csrf).await {
        Ok(w) => w,
        Err(response) => return response,
    };
    let limit = ops::megabytes(app.ctx().config.files.max_bytes);
    let result = match (file, too_large) {
        (_, Some(name)) => Err(Fault::said(
            format!("文件“{name}”超过了 {limit} 的上限，没有保存；请缩小后再附加"),
            format!("the file {name:?} is over the limit of {limit} and was not saved; make it smaller and attach it again"),
        )
        .on("file")),
        (file, None) => match file {
        Some((name, bytes)) if !bytes.is_empty() => {
            let (who, task) = (w.who.clone(), id.clone());
            let caption = text.clone();
            app.call(move |ctx, store| {
                ops::attach(ctx, store, &who, &task, &name, &bytes, &caption)
            })
            .await
        }
        _ => Err(Fault::said("请选择要附加的文件", "choose a file to attach").on("file")),
        },
    };
    match result {
        Ok(task) => saved(&app, &w, &format!("/tasks/{}#notes", task.id)),
        Err(fault) => {
            let values = HashMap::from([("text", text)]);
            refused(&app, &headers, &id, pages::Refused::new("attach", &fault, w.lang, values))
                .await
        }
    }
}

/// A stored evidence file: images shown in the page, other files downloaded.
async fn file(State(app): State<App>, headers: HeaderMap, Path(hash): Path<String>) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    match app.call(move |_, store| Ok(store.file(&hash)?)).await {
        Ok(Some((name, mime, bytes))) => {
            let disposition = if mime.starts_with("image/") { "inline" } else { "attachment" };
            let ascii: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
                .collect();
            let disposition = format!("{disposition}; filename=\"{ascii}\"");
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&mime) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such file").into_response(),
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

/// A photo's preview, made when it was attached.
async fn thumb(State(app): State<App>, headers: HeaderMap, Path(hash): Path<String>) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    match app.call(move |_, store| Ok(store.file_thumb(&hash)?)).await {
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
        Ok(None) => (StatusCode::NOT_FOUND, "no preview").into_response(),
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

async fn new_task_page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<StarQuery>,
) -> Response {
    let page = Page::open(&app, &headers);
    if let Some(to) = gate(&app, &page).await {
        return to;
    }
    let values = HashMap::from([("star", q.star)]);
    page.html(StatusCode::OK, pages::new_task(app.ctx(), &page.visit, &values, None))
}

#[derive(Debug, Deserialize)]
struct NewTaskForm {
    csrf: String,
    #[serde(default)]
    star: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    points: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    due: String,
    #[serde(default)]
    note: String,
}

impl NewTaskForm {
    fn task(&self, lang: Lang) -> Result<ops::TaskForm, Fault> {
        if self.star.trim().is_empty() {
            return Err(Fault::said("请选择所属星", "choose the star").on("star"));
        }
        let points = parse_percent(&self.points, "points")?;
        let due = if self.due.trim().is_empty() {
            None
        } else {
            Some(
                i18n::parse_date_in(lang, &self.due)
                    .map_err(|e| Fault::said(e.clone(), e).on("due"))?,
            )
        };
        Ok(ops::TaskForm {
            star: self.star.clone(),
            title: self.title.clone(),
            points,
            owner: self.owner.clone(),
            due,
            note: Some(self.note.clone()),
        })
    }
}

async fn new_task(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<NewTaskForm>,
) -> Response {
    let w = match writing(&app, &headers, &form.csrf).await {
        Ok(w) => w,
        Err(response) => return response,
    };
    let result = match form.task(w.lang) {
        Ok(task) => {
            let who = w.who.clone();
            app.call(move |ctx, store| ops::add_task(ctx, store, &who, task)).await
        }
        Err(fault) => Err(fault),
    };
    match result {
        Ok(task) => saved(&app, &w, &format!("/tasks/{}", task.id)),
        Err(fault) => {
            let page = Page::open(&app, &headers);
            let values = HashMap::from([
                ("star", form.star),
                ("title", form.title),
                ("points", form.points),
                ("owner", form.owner),
                ("due", form.due),
                ("note", form.note),
            ]);
            let refused = pages::Refused::new("new", &fault, w.lang, HashMap::new());
            page.html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::new_task(app.ctx(), &page.visit, &values, Some(&refused)),
            )
        }
    }
}

async fn welcome(State(app): State<App>, headers: HeaderMap) -> Response {
    let page = Page::open(&app, &headers);
    let state = app
        .call(|_, store| {
            let staff = store.staff()?;
            let tasks = store.read()?.task_ids().len();
            Ok((staff, tasks))
        })
        .await;
    match state {
        Ok((staff, tasks)) => {
            page.html(StatusCode::OK, pages::welcome(app.ctx(), &page.visit, &staff, tasks, None))
        }
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

async fn apply_template(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let w = match writing(&app, &headers, &form.csrf).await {
        Ok(w) => w,
        Err(response) => return response,
    };
    let who = w.who.clone();
    match app.call(move |ctx, store| ops::template_apply(ctx, store, &who)).await {
        Ok(created) => {
            let message = match w.lang {
                Lang::Zh => format!("已保存：创建了 {} 项标准任务", created.len()),
                Lang::En => format!("Saved: created {} template tasks", created.len()),
            };
            update_session(&app, &w.id, |s| s.flash = Some(message));
            Redirect::to("/").into_response()
        }
        Err(fault) => {
            let page = Page::open(&app, &headers);
            fault_page(&app, &page.visit, &fault)
        }
    }
}

async fn signin_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let page = Page::open(&app, &headers);
    match app.call(|_, store| Ok(store.staff()?)).await {
        Ok(staff) if staff.is_empty() => page.redirect("/welcome"),
        Ok(staff) => page.html(StatusCode::OK, pages::signin(app.ctx(), &page.visit, &staff, None)),
        Err(fault) => fault_page(&app, &page.visit, &fault),
    }
}

#[derive(Debug, Deserialize)]
struct SigninForm {
    csrf: String,
    name: String,
    #[serde(default)]
    pin: String,
}

async fn signin(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let (id, session) = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let name = form.name.trim().to_string();
    let paused = {
        let failures = app.inner.pin_failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&name)
            .is_some_and(|(count, at)| *count >= MAX_PIN_FAILURES && at.elapsed() < PIN_PAUSE)
    };
    let result = if paused {
        Err(Fault::said(
            "PIN 错误次数太多，请一分钟后再试",
            "too many wrong PINs; try again in a minute",
        )
        .on("pin"))
    } else {
        let (n, pin) = (name.clone(), form.pin.clone());
        app.call(move |_, store| ops::check_clerk(store, &n, &pin)).await
    };
    match result {
        Ok(who) => {
            app.inner.pin_failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            tracing::info!(clerk = %name, "clerk signed in to the workbench");
            update_session(&app, &id, |s| {
                s.clerk = who.clerk;
                // A new token at sign-in: a form from before does not carry over.
                s.csrf = random_token();
            });
            Redirect::to("/").into_response()
        }
        Err(fault) => {
            if fault.field() == Some("pin") && !paused {
                let mut failures = app.inner.pin_failures.lock().unwrap_or_else(|e| e.into_inner());
                let entry = failures.entry(name.clone()).or_insert((0, Instant::now()));
                entry.0 += 1;
                entry.1 = Instant::now();
                tracing::warn!(clerk = %name, failures = entry.0, "wrong PIN at the workbench");
            }
            let page = Page::open(&app, &headers);
            let staff = app.call(|_, store| Ok(store.staff()?)).await.unwrap_or_default();
            let refused = pages::Refused::new(
                "signin",
                &fault,
                session.lang,
                HashMap::from([("name", name)]),
            );
            page.html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::signin(app.ctx(), &page.visit, &staff, Some(&refused)),
            )
        }
    }
}

async fn signout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let (id, _) = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(response) => return response,
    };
    update_session(&app, &id, |s| {
        s.clerk = None;
        s.csrf = random_token();
    });
    Redirect::to("/signin").into_response()
}

#[derive(Debug, Deserialize)]
struct StaffForm {
    csrf: String,
    name: String,
    #[serde(default)]
    pin: String,
}

/// Adds a member of staff. On a node with no staff yet (the first run), the first
/// name added signs in; afterwards only a signed-in clerk adds colleagues.
async fn add_staff(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<StaffForm>,
) -> Response {
    let (id, session) = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let first = session.clerk.is_none();
    let (name, pin) = (form.name.trim().to_string(), form.pin.clone());
    let n = name.clone();
    let result = app
        .call(move |_, store| {
            if first && !store.staff()?.is_empty() {
                return Err(Fault::said("请先登录", "sign in first"));
            }
            ops::add_staff(store, &n, Some(&pin))
        })
        .await;
    match result {
        Ok(()) => {
            let lang = session.lang;
            update_session(&app, &id, |s| {
                if first {
                    s.clerk = Some(name.clone());
                    s.csrf = random_token();
                }
                s.flash = Some(match lang {
                    Lang::Zh => format!("已保存：{name} 已加入工作人员名单"),
                    Lang::En => format!("Saved: {name} is on the staff list"),
                });
            });
            Redirect::to("/welcome").into_response()
        }
        Err(fault) => {
            let page = Page::open(&app, &headers);
            let state = app
                .call(|_, store| Ok((store.staff()?, store.read()?.task_ids().len())))
                .await
                .unwrap_or_default();
            let refused = pages::Refused::new(
                "staff",
                &fault,
                session.lang,
                HashMap::from([("name", form.name)]),
            );
            page.html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::welcome(app.ctx(), &page.visit, &state.0, state.1, Some(&refused)),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct LangForm {
    csrf: String,
    lang: String,
    #[serde(default)]
    back: String,
}

async fn set_lang(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LangForm>,
) -> Response {
    let (id, _) = match checked(&app, &headers, &form.csrf) {
        Ok(s) => s,
        Err(response) => return response,
    };
    if let Some(lang) = Lang::parse(&form.lang) {
        update_session(&app, &id, |s| s.lang = lang);
    }
    // Back to a page of this workbench only.
    let back = if form.back.starts_with('/') && !form.back.starts_with("//") {
        form.back
    } else {
        "/".into()
    };
    Redirect::to(&back).into_response()
}

/// Today, on this PC's clock.
fn today() -> chrono::NaiveDate {
    Local::now().date_naive()
}
