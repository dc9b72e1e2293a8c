//! The hub's pages, rendered on the server with maud (every value escaped). Chinese
//! by default, English one click away; no script; usable at phone width.

use chrono::Utc;
use fivestar_core::scoring::format_points;
use fivestar_core::{Registry, Task, TaskStatus, Verdict};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{QueueQuery, REFRESH_SECONDS, TaskView, Visit};
use crate::desk::{Progress, QueueItem, Waiting};
use crate::report::{self, StandingRow, StandingsView, local_time};
use crate::status::{Health, StatusRow, Summary};
use crate::store::ReviewError;
use crate::store::accounts::{Account, AccountRole};

/// The stylesheet, compiled in.
pub const STYLESHEET: &str = include_str!("app.css");

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Chinese.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// One of two texts.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

fn t<'a>(v: &Visit, zh: &'a str, en: &'a str) -> &'a str {
    v.lang.pick(zh, en)
}

fn role_text(lang: Lang, role: &AccountRole, star_name: Option<&str>) -> String {
    match (role, lang) {
        (AccountRole::Reviewer(fivestar_core::Role::Office), Lang::Zh) => "区创建办".into(),
        (AccountRole::Reviewer(fivestar_core::Role::Office), Lang::En) => "district office".into(),
        (AccountRole::Reviewer(fivestar_core::Role::TaskForce(star)), Lang::Zh) => {
            format!("{}专班", star_name.unwrap_or(star))
        }
        (AccountRole::Reviewer(fivestar_core::Role::TaskForce(star)), Lang::En) => {
            format!("task force of {}", star_name.unwrap_or(star))
        }
        (AccountRole::Operator, Lang::Zh) => "运维".into(),
        (AccountRole::Operator, Lang::En) => "operator".into(),
    }
}

fn layout(v: &Visit, title: &str, here: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(v.lang.pick("zh-CN", "en")) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content=(REFRESH_SECONDS); }
                title { (title) " · " (t(v, "魏都区“五星支部”创建", "Weidu Five-Star campaign")) }
                link rel="stylesheet" href="/app.css";
            }
            body {
                header.top {
                    a.brand href="/" { (t(v, "魏都区“五星支部”创建", "Weidu Five-Star campaign")) }
                    nav {
                        a href="/" aria-current=[(here == "dashboard").then_some("page")] { (t(v, "看板", "Dashboard")) }
                        a href="/review" aria-current=[(here == "review").then_some("page")] { (t(v, "审核", "Review")) }
                        a href="/progress" aria-current=[(here == "progress").then_some("page")] { (t(v, "进度", "Progress")) }
                    }
                    div.who {
                        @if let Some(a) = &v.account {
                            span { (a.display) " · " (role_text(v.lang, &a.role, v.star_name.as_deref())) }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.link type="submit" { (t(v, "退出", "Sign out")) }
                            }
                        }
                        form method="post" action="/lang" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            input type="hidden" name="back" value=(match here { "review" => "/review", "progress" => "/progress", _ => "/" });
                            @if v.lang == Lang::Zh {
                                button.link type="submit" name="lang" value="en" lang="en" { "English" }
                            } @else {
                                button.link type="submit" name="lang" value="zh" lang="zh-CN" { "中文" }
                            }
                        }
                    }
                }
                main {
                    @if let Some(flash) = &v.flash { p.flash role="status" { "✓ " (flash) } }
                    (body)
                }
            }
        }
    }
}

/// The sign-in page.
pub fn login(v: &Visit, error: Option<&str>, name: &str) -> Markup {
    let body = html! {
        h1 { (t(v, "登录", "Sign in")) }
        form.stack.panel method="post" action="/login" {
            input type="hidden" name="csrf" value=(v.csrf);
            @if let Some(error) = error { p.error role="alert" { (error) } }
            label { (t(v, "账号", "Account")) input type="text" name="name" required autocomplete="username" value=(name); }
            label { (t(v, "密码", "Password")) input type="password" name="password" required autocomplete="current-password"; }
            button.primary type="submit" { (t(v, "登录", "Sign in")) }
        }
        p.muted { (t(v, "账号由区里的运维人员用 fivestar-hub user add 创建。", "Accounts are created by the district's operators with fivestar-hub user add.")) }
    };
    layout(v, t(v, "登录", "Sign in"), "login", false, body)
}

/// A form refused for its token.
pub fn refusal(lang: Lang) -> Markup {
    html! {
        (DOCTYPE)
        html { head { meta charset="utf-8"; link rel="stylesheet" href="/app.css"; title { (lang.pick("未保存", "Not saved")) } }
        body { main {
            p.error role="alert" { (lang.pick("这个表单已过期或不是从本系统提交的，没有保存任何内容。请返回、刷新后再试。", "This form has expired or did not come from this site; nothing was saved. Go back, reload and try again.")) }
            p { a href="/" { (lang.pick("回到看板", "Back to the dashboard")) } }
        } } }
    }
}

/// Nothing here.
pub fn not_found(v: &Visit) -> Markup {
    layout(
        v,
        t(v, "没有找到", "Not found"),
        "",
        false,
        html! {
            p.error { (t(v, "没有这个社区或任务（任务要在社区同步后才会出现在区里）。", "No such community or task (a task appears here once its community has synced).")) }
        },
    )
}

/// A signed-in page for a visitor with no account (a hub with no accounts yet).
pub fn no_account(v: &Visit) -> Markup {
    layout(
        v,
        t(v, "审核", "Review"),
        "review",
        false,
        html! {
            p.error { (t(v, "审核需要账号：请运维人员用 fivestar-hub user add 创建审核账号后登录。", "Reviewing needs an account: ask the operators to create one with fivestar-hub user add, then sign in.")) }
        },
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

/// The dashboard: problems first, a one-line summary, the chart, the standings.
pub fn dashboard(
    v: &Visit,
    view: &StandingsView,
    standard: &fivestar_core::Standard,
    rows: &[StatusRow],
    summary: &Summary,
) -> Markup {
    let problems: Vec<&StatusRow> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.health,
                Health::Revoked | Health::Failing | Health::Stale | Health::NeverSynced
            )
        })
        .collect();
    let unseen: Vec<&StatusRow> = rows.iter().filter(|r| r.health == Health::NeverSeen).collect();
    let fine = rows.iter().filter(|r| r.health == Health::Ok).count();
    let body = html! {
        h1 { (t(v, "同步与排名看板", "Sync and standings")) }
        p.meta { (t(v, "更新于 ", "Updated ")) (local_time(view.computed_ms)) (t(v, "，每 15 秒自动刷新", ", refreshes every 15 s")) }
        (PreEscaped(report::sample_warning(view)))
        section {
            h2 { (t(v, "同步状态", "Sync health")) }
            p id="summary" { strong { (summary_zh(summary)) } br; span.meta { (summary.to_string()) } }
            @if problems.is_empty() {
                p.good { "✓ " (t(v, "没有需要处理的问题", "No problems to deal with")) }
            } @else {
                div.scroll { table id="sync" {
                    thead { tr {
                        th { (t(v, "问题", "Problem")) } th { (t(v, "社区", "Community")) } th { (t(v, "设备", "Device")) }
                        th { (t(v, "最近成功同步", "Last success")) } th { (t(v, "最近连接", "Last seen")) } th { (t(v, "待确认", "Unacked")) } th { (t(v, "最近错误", "Last error")) }
                    } }
                    tbody {
                        @for row in &problems {
                            @let peer = row.peer.as_ref();
                            tr class=(match row.health { Health::Failing | Health::Revoked => "failing", Health::Stale => "stale", _ => "nodata" }) {
                                td { (row.health.zh()) }
                                td { a href={"/community/" (row.community)} { (row.community_name) } }
                                td { (row.device.as_deref().unwrap_or("—")) }
                                td { (peer.and_then(|p| p.last_success_ms).map(local_time).unwrap_or_else(|| "—".into())) }
                                td { (peer.map(|p| local_time(p.last_seen_ms)).unwrap_or_else(|| "—".into())) }
                                td.num { (peer.and_then(|p| p.unacked_changes).map(|n| n.to_string()).unwrap_or_default()) }
                                td { (peer.and_then(|p| p.last_error_message.clone().map(|m| format!("{}: {m}", p.last_error_class.clone().unwrap_or_default()))).unwrap_or_default()) }
                            }
                        }
                    }
                } }
            }
            p.meta {
                @match v.lang {
                    Lang::Zh => { "另有 " (fine) " 台设备同步正常。" }
                    Lang::En => { (fine) " more device(s) sync normally." }
                }
            }
            @if !unseen.is_empty() {
                details id="unseen" {
                    summary { (t(v, "从未连接的社区 ", "Never seen: ")) (unseen.len()) (t(v, " 个", "")) }
                    p { (unseen.iter().map(|r| r.community_name.as_str()).collect::<Vec<_>>().join("、")) }
                }
            }
        }
        section {
            h2 { (t(v, "各街道星级分布", "Stars per subdistrict")) }
            div.chart { (PreEscaped(report::tier_chart(&view.tiers))) }
        }
        section {
            h2 { (t(v, "排名", "Standings")) }
            p {
                a href="/standings.xlsx" { (t(v, "导出 Excel", "Export Excel")) } " · "
                a href="/standings.csv" { (t(v, "导出 CSV", "Export CSV")) }
            }
            (PreEscaped(report::standings_table_html(view, standard, true)))
        }
    };
    layout(v, t(v, "看板", "Dashboard"), "dashboard", true, body)
}

fn status_zh(lang: Lang, status: TaskStatus) -> &'static str {
    match (lang, status) {
        (Lang::Zh, TaskStatus::Todo) => "未开始",
        (Lang::Zh, TaskStatus::Doing) => "进行中",
        (Lang::Zh, TaskStatus::Done) => "已完成",
        (Lang::Zh, TaskStatus::Blocked) => "受阻",
        (Lang::Zh, TaskStatus::Failed) => "未达成",
        (Lang::En, s) => s.as_str(),
    }
}

fn verdict_text(lang: Lang, verdict: &Verdict) -> String {
    match (lang, verdict) {
        (Lang::Zh, Verdict::Accepted { awarded: None }) => "已通过".into(),
        (Lang::Zh, Verdict::Accepted { awarded: Some(a) }) => format!("已通过，核定 {a} 分"),
        (Lang::Zh, Verdict::Rejected) => "已退回".into(),
        (Lang::Zh, Verdict::Reopened) => "已重新打开".into(),
        (Lang::En, v) => v.as_str().into(),
    }
}

fn since_text(v: &Visit, seconds: i64) -> String {
    if seconds <= 0 {
        return "—".into();
    }
    let days = (Utc::now().timestamp() - seconds) / 86_400;
    let when = local_time(seconds * 1000);
    match (v.lang, days) {
        (Lang::Zh, d) if d >= 1 => format!("{when}（{d} 天）"),
        (Lang::En, d) if d >= 1 => format!("{when} ({d} days)"),
        _ => when,
    }
}

/// The review queue: what waits for this account, oldest first.
pub fn queue(
    v: &Visit,
    account: &Account,
    items: &[QueueItem],
    registry: &Registry,
    q: &QueueQuery,
    files_here: &std::collections::HashSet<(String, String)>,
) -> Markup {
    let body = html! {
        h1 {
            (t(v, "待审核", "Review queue")) " "
            small.muted { (role_text(v.lang, &account.role, v.star_name.as_deref())) }
        }
        @if !account.role.reviews() {
            p.error { (t(v, "运维账号不审核；这里只供查看。", "An operator's account does not review; this is for looking only.")) }
        }
        form.filters method="get" action="/review" {
            label { (t(v, "街道", "Subdistrict"))
                select name="subdistrict" {
                    option value="" { (t(v, "全部", "All")) }
                    @for s in &registry.subdistricts { option value=(s.code) selected[q.subdistrict == s.code] { (s.name) } }
                }
            }
            label { (t(v, "社区", "Community"))
                select name="community" {
                    option value="" { (t(v, "全部", "All")) }
                    @for c in &registry.communities { option value=(c.id) selected[q.community == c.id] { (c.name) } }
                }
            }
            label { (t(v, "状态", "Status"))
                select name="waiting" {
                    option value="" { (t(v, "全部待审", "All waiting")) }
                    option value="done" selected[q.waiting == "done"] { (t(v, "已完成待审", "Done, not reviewed")) }
                    option value="changed" selected[q.waiting == "changed"] { (t(v, "审核后有改动", "Changed since review")) }
                }
            }
            button type="submit" { (t(v, "筛选", "Filter")) }
        }
        p.count { @match v.lang { Lang::Zh => { "共 " (items.len()) " 项，最早的在前" } Lang::En => { (items.len()) " task(s), oldest first" } } }
        @if items.is_empty() {
            p.good { "✓ " (t(v, "没有待审核的任务", "Nothing waits for review")) }
        } @else {
            div.scroll { table.queue {
                thead { tr {
                    th { (t(v, "等待自", "Waiting since")) } th { (t(v, "社区", "Community")) } th { (t(v, "星", "Star")) }
                    th { (t(v, "任务", "Task")) } th { (t(v, "进度", "Progress")) } th { (t(v, "原因", "Why")) }
                } }
                tbody {
                    @for item in items {
                        tr {
                            td { (since_text(v, item.since_seconds)) }
                            td { (item.community_name) br; small.muted { (item.subdistrict_name) } }
                            td { (item.star_name) }
                            td {
                                a href={"/review/" (item.community) "/" (item.task.id)} { (item.task.title) }
                                (previews(v, &item.community, &item.task, files_here))
                            }
                            td { (status_zh(v.lang, item.task.status)) " " (item.task.effective_progress()) "%" }
                            td { @match item.waiting {
                                Waiting::Done => { (t(v, "已完成待审", "done")) }
                                Waiting::Changed => { span.warn { (t(v, "审核后有改动", "changed since review")) } }
                            } }
                        }
                    }
                }
            } }
        }
    };
    layout(v, t(v, "待审核", "Review queue"), "review", false, body)
}

/// Small previews of a task's photos that are at the hub (at most three), and how
/// many files its notes carry in all.
fn previews(
    v: &Visit,
    community: &str,
    task: &fivestar_core::Task,
    files_here: &std::collections::HashSet<(String, String)>,
) -> Markup {
    let attached: Vec<&fivestar_core::FileRef> = task
        .notes
        .iter()
        .filter(|n| n.withdrawn.is_none())
        .filter_map(|n| n.file.as_ref())
        .collect();
    let shown: Vec<&&fivestar_core::FileRef> = attached
        .iter()
        .filter(|f| fivestar_core::media::decodable(&f.mime))
        .filter(|f| files_here.contains(&(community.to_string(), f.hash.clone())))
        .take(3)
        .collect();
    html! {
        @if !attached.is_empty() {
            span.previews {
                @for f in &shown {
                    img src={"/files/" (community) "/" (f.hash) "/thumb"} alt=(f.name) loading="lazy";
                }
                small.muted {
                    @match v.lang {
                        Lang::Zh => { (attached.len()) " 个附件" }
                        Lang::En => { (attached.len()) " file(s)" }
                    }
                }
            }
        }
    }
}

/// One task at the review desk.
pub fn task(v: &Visit, view: &TaskView, error: Option<&str>) -> Markup {
    let task = &view.task;
    let c = &view.community;
    let may_review = v.account.as_ref().is_some_and(|a| crate::desk::reviews_task(&a.role, task));
    let action = format!("/review/{}/{}", c.id, task.id);
    let not_done = task.status != TaskStatus::Done;
    let body = html! {
        p.crumbs { a href="/review" { "← " (t(v, "待审核", "Review queue")) } " · " a href={"/community/" (c.id)} { (c.name) } }
        h1 { (task.title) }
        p.facts {
            span.status { (status_zh(v.lang, task.status)) } " " (task.effective_progress()) "% · " (view.star_name) " · " (task.points) (t(v, " 分", " pts"))
            @if task.veto { " · " span.warn { (t(v, "一票否决", "veto")) } }
        }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        div.columns {
            section.panel {
                h2 { (t(v, "情况", "Facts")) }
                dl {
                    dt { (t(v, "社区", "Community")) } dd { (c.name) " (" (c.id) ")" }
                    dt { (t(v, "负责人", "Owner")) } dd { (task.owner) }
                    dt { (t(v, "截止", "Due")) } dd { (task.due.map(|d| d.to_string()).unwrap_or_else(|| "—".into())) }
                    dt { (t(v, "得分", "Earned")) } dd { (format_points(fivestar_core::earned_hundredths(task))) }
                }
                @if let Some(review) = &task.review {
                    h3 { (t(v, "当前审核", "Review in force")) }
                    p { strong { (verdict_text(v.lang, &review.verdict)) } " · " (review.reviewer) " · " (local_time(review.at_ms)) }
                    @if !review.comment.is_empty() { blockquote { (review.comment) } }
                    @if review.overridden { p.warn { (t(v, "未完成即通过（特批）", "accepted before it was done (override)")) } }
                    @let changed = task.changed_fields();
                    @if !changed.is_empty() { p.warn { (t(v, "审核后社区改动了：", "Changed since the review: ")) (changed.join(", ")) } }
                }
                h3 { (t(v, "佐证记录", "Evidence notes")) }
                @if task.notes.is_empty() { p.muted { (t(v, "没有佐证记录", "No notes")) } }
                ol.notes {
                    @for note in &task.notes {
                        li.withdrawn[note.withdrawn.is_some()] {
                            (note.text) br;
                            @if let Some(f) = &note.file {
                                @if view.files_here.contains(&f.hash) {
                                    @let url = format!("/files/{}/{}", c.id, f.hash);
                                    @if fivestar_core::media::decodable(&f.mime) {
                                        // The preview, or the photo itself where the hub
                                        // could not decode it (the browser may).
                                        @let src = if view.no_preview.contains(&f.hash) { url.clone() } else { format!("{url}/thumb") };
                                        a href=(url) title=(t(v, "查看原图", "Open the full picture")) {
                                            img.evidence src=(src) alt=(f.name) loading="lazy";
                                        }
                                        br;
                                    }
                                    (t(v, "附件：", "File: ")) a href=(url) { (f.name) } " " small.muted { (f.size / 1024) " KB" }
                                } @else {
                                    (t(v, "附件：", "File: ")) (f.name) " " small.warn { (t(v, "尚未送达区里", "not at the district yet")) }
                                }
                                br;
                            }
                            small.muted { (note.by) " · " (local_time(note.at_ms)) @if note.withdrawn.is_some() { " · " (t(v, "已撤回", "withdrawn")) } }
                        }
                    }
                }
            }
            section.panel {
                h2 { (t(v, "审核", "Review")) }
                @if !may_review {
                    p.muted { (t(v, "这项任务不归您审核（专班只审核本星的任务）。", "This task is not yours to review (a task force reviews its own star's tasks).")) }
                } @else {
                    form.stack method="post" action=(action) {
                        input type="hidden" name="csrf" value=(v.csrf);
                        input type="hidden" name="action" value="accept";
                        label { (t(v, "核定分（不填为满分）", "Awarded points (empty: full)")) input type="number" name="awarded" min="0" max=(task.points); }
                        @if not_done {
                            label.choice { input type="checkbox" name="override" value="1"; " " (t(v, "任务尚未完成，仍要通过（特批，审核记录会写明）", "Not done: accept anyway (override; the review says so)")) }
                        }
                        label { (t(v, "意见（可不填）", "Comment (optional)")) textarea name="comment" rows="2" {} }
                        button.primary type="submit" { (t(v, "通过", "Accept")) }
                    }
                    form.stack method="post" action=(action) {
                        input type="hidden" name="csrf" value=(v.csrf);
                        input type="hidden" name="action" value="reject";
                        label { (t(v, "退回理由（必填）", "Why rejected (required)")) textarea name="comment" rows="2" required {} }
                        button.danger type="submit" { (t(v, "退回", "Reject")) }
                    }
                    @if task.verdict().is_some() {
                        form.stack method="post" action=(action) {
                            input type="hidden" name="csrf" value=(v.csrf);
                            input type="hidden" name="action" value="reopen";
                            label { (t(v, "重新打开的理由（必填）", "Why reopened (required)")) textarea name="comment" rows="2" required {} }
                            button type="submit" { (t(v, "重新打开", "Reopen")) }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { (t(v, "修改记录（含历次审核）", "History (with earlier verdicts)")) }
            div.scroll { table {
                thead { tr { th { (t(v, "时间", "When")) } th { (t(v, "谁（修改自述）", "Who (as the change says)")) } th { (t(v, "送达者（区里记录）", "Delivered by (hub's record)")) } th { (t(v, "做了什么", "What")) } } }
                tbody {
                    @for (entry, delivered) in view.history.iter().rev() {
                        tr {
                            td { @if entry.at_seconds == 0 { (t(v, "（模板）", "(template)")) } @else { (local_time(entry.at_seconds * 1000)) } }
                            td { (entry.by) }
                            td { @if let Some((peer, at)) = delivered { (peer) br; small.muted { (local_time(*at)) } } @else { "—" } }
                            td { (entry.action) }
                        }
                    }
                }
            } }
        }
    };
    layout(v, &task.title, "review", false, body)
}

/// A review refused, in the reviewer's words.
pub fn review_error(lang: Lang, err: &ReviewError) -> String {
    use fivestar_core::EditError;
    if lang == Lang::En {
        return err.to_string();
    }
    match err {
        ReviewError::UnknownCommunity(c) => format!("社区 {c} 不在名册中"),
        ReviewError::Edit(EditError::NotDone { progress, .. }) => {
            format!("任务尚未完成（进度 {progress}%）：要通过，请勾选“仍要通过（特批）”")
        }
        ReviewError::Edit(EditError::CommentRequired { .. }) => "退回或重新打开须写明理由".into(),
        ReviewError::Edit(EditError::AwardedTooHigh { awarded, points }) => {
            format!("核定分 {awarded} 超过任务分值 {points}")
        }
        ReviewError::Edit(EditError::NothingToReopen { .. }) => {
            "这项任务没有可重新打开的审核结论".into()
        }
        ReviewError::Edit(EditError::UnknownTask { .. }) => {
            "区里还没有这项任务（社区同步后才有）".into()
        }
        ReviewError::Denied(reason) => format!("无权审核这项任务，没有保存：{reason}"),
        other => format!("没有保存：{other}"),
    }
}

/// A community page's data.
#[derive(Debug)]
pub struct CommunityView {
    /// The registry entry.
    pub entry: fivestar_core::Community,
    /// Its standing.
    pub standing: Option<StandingRow>,
    /// Its kind's stars.
    pub kind: fivestar_core::KindStandard,
    /// Its score.
    pub score: fivestar_core::CommunityScore,
    /// Its tasks.
    pub tasks: Vec<Task>,
}

/// One community: its five stars, what each lacks, its tasks and reviews.
pub fn community(v: &Visit, view: &CommunityView) -> Markup {
    let c = &view.entry;
    let body = html! {
        h1 { (c.name) " " small.muted { (c.kind.zh()) } }
        @if let Some(row) = &view.standing {
            p.lead {
                @let s = &row.standing;
                @match v.lang {
                    Lang::Zh => { "区排名 " (s.district_rank.map(|r| r.to_string()).unwrap_or("—".into())) "，街道排名 " (s.subdistrict_rank.map(|r| r.to_string()).unwrap_or("—".into())) "；评上 " (s.stars) " 颗星，总分 " (format_points(s.total)) }
                    Lang::En => { "District rank " (s.district_rank.map(|r| r.to_string()).unwrap_or("—".into())) ", subdistrict rank " (s.subdistrict_rank.map(|r| r.to_string()).unwrap_or("—".into())) "; " (s.stars) " star(s), total " (format_points(s.total)) }
                }
            }
        }
        div.cards {
            @for (star, s) in view.kind.stars.iter().zip(&view.score.stars) {
                article.card.earned[s.earned] {
                    h2 { @if s.earned { "★ " } @else { "☆ " } (star.zh) }
                    p { strong { (format_points(s.score)) } " / 100 · " (t(v, "及格线 ", "pass ")) (format_points(s.pass_mark)) }
                    @if !s.lacks.is_empty() {
                        ul.lacks { @for lack in &s.lacks { li { (lack_text(v.lang, lack, &view.tasks, &view.kind)) } } }
                    }
                }
            }
        }
        h2 { (t(v, "任务", "Tasks")) }
        div.scroll { table {
            thead { tr { th { (t(v, "星", "Star")) } th { (t(v, "任务", "Task")) } th { (t(v, "进度", "Progress")) } th { (t(v, "审核", "Review")) } } }
            tbody {
                @for star in &view.kind.stars {
                    @for task in view.tasks.iter().filter(|t| t.star == star.key) {
                        tr {
                            td { (star.zh) }
                            td { a href={"/review/" (c.id) "/" (task.id)} { (task.title) } }
                            td { (status_zh(v.lang, task.status)) " " (task.effective_progress()) "%" }
                            td { @if let Some(r) = &task.review { (verdict_text(v.lang, &r.verdict)) @if !r.comment.is_empty() { " — " (r.comment) } } }
                        }
                    }
                }
            }
        } }
    };
    layout(v, &c.name, "community", false, body)
}

fn lack_text(
    lang: Lang,
    lack: &fivestar_core::Lack,
    tasks: &[Task],
    kind: &fivestar_core::KindStandard,
) -> String {
    use fivestar_core::Lack;
    let title = |id: &str| {
        tasks.iter().find(|t| t.id == id).map(|t| t.title.clone()).unwrap_or(id.to_string())
    };
    match (lang, lack) {
        (Lang::Zh, Lack::Points { missing }) => {
            format!("距及格线还差 {} 分", format_points(*missing))
        }
        (Lang::Zh, Lack::Veto { task, reason }) => {
            format!(
                "一票否决任务“{}”{}",
                title(task),
                if reason == "rejected" { "被退回" } else { "未达成" }
            )
        }
        (Lang::Zh, Lack::Capstone { waiting_for }) => {
            let names: Vec<String> = waiting_for
                .iter()
                .map(|k| kind.star(k).map(|s| s.zh.clone()).unwrap_or_else(|| k.to_string()))
                .collect();
            format!("须先评上其他各星（{}）", names.join("、"))
        }
        (Lang::En, other) => other.to_string(),
    }
}

/// The campaign's progress for the leading group.
pub fn progress(v: &Visit, p: &Progress) -> Markup {
    let counts_head = html! {
        th { (t(v, "任务", "Tasks")) } th { (t(v, "已完成", "Done")) } th { (t(v, "待审核", "Awaiting")) }
        th { (t(v, "已通过", "Accepted")) } th { (t(v, "被退回", "Rejected")) }
    };
    let counts = |c: &crate::desk::Counts| {
        html! {
            td.num { (c.tasks) } td.num { (c.done) } td.num { (c.awaiting) } td.num { (c.accepted) } td.num { (c.rejected) }
        }
    };
    let body = html! {
        h1 { (t(v, "创建进度", "Progress of the campaign")) }
        p.lead {
            @match v.lang {
                Lang::Zh => { "全区 " (p.district.tasks) " 项任务：已完成 " (p.district.done) "，待审核 " (p.district.awaiting) "，已通过 " (p.district.accepted) "，被退回 " (p.district.rejected) "。" }
                Lang::En => { (p.district.tasks) " tasks in the district: " (p.district.done) " done, " (p.district.awaiting) " awaiting review, " (p.district.accepted) " accepted, " (p.district.rejected) " rejected." }
            }
        }
        h2 { (t(v, "各专班待审", "Review backlog per task force")) }
        div.scroll { table {
            thead { tr { th { (t(v, "专班", "Task force")) } th { (t(v, "待审", "Waiting")) } th { (t(v, "最早的一项", "Oldest")) } } }
            tbody { @for b in &p.backlog { tr {
                td { (b.star_name) }
                td.num { (b.waiting) }
                td { @if let Some((community, title, since)) = &b.oldest { (community) "：" (title) " · " (since_text(v, *since)) } @else { "—" } }
            } } }
        } }
        h2 { (t(v, "按星", "Per star")) }
        div.scroll { table { thead { tr { th { (t(v, "星", "Star")) } (counts_head) } } tbody {
            @for (_, name, c) in &p.by_star { tr { td { (name) } (counts(c)) } }
        } } }
        h2 { (t(v, "按街道", "Per subdistrict")) }
        div.scroll { table { thead { tr { th { (t(v, "街道", "Subdistrict")) } (counts_head) } } tbody {
            @for (_, name, c) in &p.by_subdistrict { tr { td { (name) } (counts(c)) } }
        } } }
    };
    layout(v, t(v, "进度", "Progress"), "progress", false, body)
}
