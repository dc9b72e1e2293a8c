//! The workbench's pages, rendered on the server (maud escapes every value).
//!
//! Pages only render: what they show comes from the operations, in the clerk's
//! language. No script; forms post and the server redirects.

use std::collections::HashMap;

use chrono::{DateTime, Local, Utc};
use fivestar_core::scoring::format_points;
use fivestar_core::{Task, TaskStatus, Verdict, earned_hundredths};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::{Snapshot, TaskView, Visit, today};
use crate::i18n::{self, Lang};
use crate::ops::{self, Context, Fault};
use crate::store::FileState;

/// The stylesheet, inside the binary.
pub const STYLESHEET: &str = include_str!("app.css");

/// The task list's filters (all optional, from the query string).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Only this star (key).
    #[serde(default)]
    pub star: String,
    /// `mine`, `overdue`, `awaiting`, `rejected`, `changed` or empty for all.
    #[serde(default)]
    pub show: String,
    /// Words to find in title, owner, id or notes.
    #[serde(default)]
    pub q: String,
}

/// A refused form: which form, the field at fault, the message, what was typed.
#[derive(Debug, Clone)]
pub struct Refused {
    form: &'static str,
    field: Option<&'static str>,
    message: String,
    hint: Option<String>,
    values: HashMap<&'static str, String>,
}

impl Refused {
    /// The refusal of `form` for `fault`, said in `lang`, keeping `values`.
    pub fn new(
        form: &'static str,
        fault: &Fault,
        lang: Lang,
        values: HashMap<&'static str, String>,
    ) -> Refused {
        Refused {
            form,
            field: fault.field(),
            message: fault.message(lang),
            hint: fault.hint_text(lang),
            values,
        }
    }

    fn value(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form).then(|| self.values.get(field).map(String::as_str)).flatten()
    }

    /// The message when it belongs beside `field` of `form`.
    fn at(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form && self.field == Some(field)).then_some(self.message.as_str())
    }

    /// The message when it belongs to `form` but to none of its fields shown.
    fn general(&self, form: &str, fields: &[&str]) -> Option<&str> {
        (self.form == form && self.field.is_none_or(|f| !fields.contains(&f)))
            .then_some(self.message.as_str())
    }
}

fn local_time(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string(),
        None => "?".into(),
    }
}

fn t<'a>(v: &Visit, zh: &'a str, en: &'a str) -> &'a str {
    v.lang.pick(zh, en)
}

/// The frame of every page: header, navigation, the once-shown message.
fn layout(ctx: &Context, v: &Visit, title: &str, here: &str, body: Markup) -> Markup {
    let community = &ctx.config.community_name;
    html! {
        (DOCTYPE)
        html lang=(v.lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (community) }
                link rel="stylesheet" href="/app.css";
            }
            body {
                header.top {
                    div.brand {
                        a href="/" { (community) }
                        span.sub { (t(v, "五星支部创建 · 社区工作台", "Five-Star campaign · workbench")) }
                    }
                    nav aria-label=(t(v, "主导航", "Main")) {
                        a href="/" aria-current=[(here == "home").then_some("page")] { (t(v, "总览", "Overview")) }
                        a href="/tasks" aria-current=[(here == "tasks").then_some("page")] { (t(v, "任务", "Tasks")) }
                        a href="/tasks/new" aria-current=[(here == "new").then_some("page")] { (t(v, "新增任务", "New task")) }
                        a href="/print" aria-current=[(here == "print").then_some("page")] { (t(v, "打印任务单", "Print")) }
                    }
                    div.who {
                        @if let Some(clerk) = &v.clerk {
                            span { (t(v, "当前：", "Signed in: ")) strong { (clerk) } }
                            form method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.link type="submit" { (t(v, "换人", "Sign out")) }
                            }
                        }
                        form method="post" action="/lang" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            input type="hidden" name="back" value=(here_path(here));
                            @if v.lang == Lang::Zh {
                                button.link type="submit" name="lang" value="en" lang="en" { "English" }
                            } @else {
                                button.link type="submit" name="lang" value="zh" lang="zh-CN" { "中文" }
                            }
                        }
                    }
                }
                main {
                    @if let Some(flash) = &v.flash {
                        p.flash role="status" { "✓ " (flash) }
                    }
                    (body)
                }
            }
        }
    }
}

fn here_path(here: &str) -> &'static str {
    match here {
        "tasks" => "/tasks",
        "new" => "/tasks/new",
        "print" => "/print",
        _ => "/",
    }
}

/// The sync state in one glance.
fn sync_banner(v: &Visit, sync: &ops::SyncView) -> Markup {
    let now = Utc::now().timestamp();
    let last = sync.last_success_ms.map(local_time);
    html! {
        section.sync.ok[sync.all_saved_at_district()] aria-label=(t(v, "同步状态", "Sync")) {
            @if sync.all_saved_at_district() {
                strong { "✓ " (t(v, "全部已保存到区里", "All saved at the district")) }
                " "
                span { (t(v, "本机的每项修改区里都已确认收到。", "The district has acknowledged every change made here.")) }
            } @else {
                strong {
                    @match v.lang {
                        Lang::Zh => { "有 " (sync.pending.changes) " 项修改" @if sync.files_waiting.0 > 0 { "、" (sync.files_waiting.0) " 个佐证文件（" (sync.files_waiting.1 / 1024) " KB）" } "等待送到区里" }
                        Lang::En => { (sync.pending.changes) " change(s)" @if sync.files_waiting.0 > 0 { " and " (sync.files_waiting.0) " evidence file(s) (" (sync.files_waiting.1 / 1024) " KB)" } " waiting to reach the district" }
                    }
                }
                @if let Some(oldest) = sync.pending.oldest_seconds {
                    " "
                    span {
                        @match v.lang {
                            Lang::Zh => { "（最早的在 " (local_time(oldest * 1000)) "，" (i18n::age(v.lang, now - oldest)) "前）。都已保存在本机，联网后自动送出。" }
                            Lang::En => { "(the oldest from " (local_time(oldest * 1000)) ", " (i18n::age(v.lang, now - oldest)) " ago). All are saved here and go out when the link is up." }
                        }
                    }
                }
            }
            br;
            small {
                (t(v, "上次成功同步：", "Last successful sync: "))
                (last.unwrap_or_else(|| t(v, "从未", "never").to_string()))
                @if let Some((at, error)) = &sync.last_error {
                    @if sync.last_success_ms.is_none_or(|ok| ok < *at) {
                        " · " span.bad { (t(v, "上次同步失败：", "Last sync failed: ")) (ops::sync_error_words(v.lang, error)) " (" (local_time(*at)) ")" }
                    }
                }
            }
        }
    }
}

/// A progress bar with its number (the bar is decoration; the number is the fact).
fn progress_bar(task: &Task) -> Markup {
    let p = task.effective_progress();
    html! {
        span.progress {
            meter min="0" max="100" value=(p) aria-hidden="true" {}
            span.pct { (p) "%" }
        }
    }
}

fn status_badge(v: &Visit, status: TaskStatus) -> Markup {
    html! { span class={"status s-" (status.as_str())} { (i18n::status(v.lang, status)) } }
}

fn review_badge(v: &Visit, task: &Task) -> Markup {
    html! {
        @if let Some(review) = &task.review {
            @let class = match review.verdict {
                Verdict::Accepted { .. } => "verdict accepted",
                Verdict::Rejected => "verdict rejected",
                Verdict::Reopened => "verdict reopened",
            };
            span class=(class) { (i18n::verdict(v.lang, &review.verdict)) }
            @if task.changed_since_review() {
                " " span.verdict.changed { (t(v, "审核后有改动", "changed since review")) }
            }
        } @else if task.status == TaskStatus::Done {
            span.verdict.waiting { (t(v, "待审核", "awaiting review")) }
        }
    }
}

/// The overview: sync, new reviews, the five stars.
pub fn home(ctx: &Context, v: &Visit, snap: &Snapshot) -> Markup {
    let kind = ctx.kind();
    let score = ops::community_score(ctx, &snap.tasks);
    let title_of = |id: &str| {
        snap.tasks
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.title.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let unseen: Vec<&Task> = snap
        .tasks
        .iter()
        .filter(|t| {
            t.review.as_ref().is_some_and(|r| !snap.seen.contains(&(t.id.clone(), r.at_ms)))
        })
        .collect();
    let body = html! {
        (sync_banner(v, &snap.sync))
        @if !snap.problems.is_empty() {
            section.problems role="alert" {
                h2 { (t(v, "有记录无法读取", "Some records cannot be read")) }
                p { (t(v, "下面这些任务的记录有问题，暂不列出、不计分；其他一切照常。请把这段文字发给区里的运维人员。", "These tasks' records have a problem and are left out of lists and scores; everything else works. Send this text to the district's operators.")) }
                ul { @for p in &snap.problems { li { code { (p.path) } " " (p.message) } } }
            }
        }
        @if !unseen.is_empty() {
            section.news aria-label=(t(v, "新的审核结果", "New reviews")) {
                h2 { (t(v, "区里新的审核结果", "New reviews from the district")) }
                ul {
                    @for task in &unseen {
                        li {
                            a href={"/tasks/" (task.id)} { (task.title) }
                            " " (review_badge(v, task))
                            @if let Some(r) = &task.review { @if !r.comment.is_empty() { " — " span.comment { (r.comment) } } }
                        }
                    }
                }
            }
        }
        h1 {
            (ctx.config.community_name) " "
            span.stars aria-label={(score.stars_earned) " / 5"} { (stars_text(score.stars_earned)) }
        }
        p.lead {
            @match v.lang {
                Lang::Zh => { "已评上 " strong { (score.stars_earned) } " 颗星，总分 " strong { (format_points(score.total)) } " / 500 分（" (ctx.config.kind.zh()) "）" }
                Lang::En => { strong { (score.stars_earned) } " star(s) earned, total " strong { (format_points(score.total)) } " of 500 (" (ctx.config.kind.zh()) ")" }
            }
            @if ctx.standard.sample {
                br; small.bad { (t(v, "按示例标准计分，不是区里的正式细则。", "Scored against the SAMPLE standard, not the district's own.")) }
            }
        }
        div.cards {
            @for (star, s) in kind.stars.iter().zip(&score.stars) {
                @let count = snap.tasks.iter().filter(|t| t.star == star.key).count();
                @let done = snap.tasks.iter().filter(|t| t.star == star.key && t.status == TaskStatus::Done).count();
                article.card.earned[s.earned] {
                    h2 {
                        span.mark { @if s.earned { "★" } @else { "☆" } }
                        " " (star.zh)
                        @if star.capstone { small { (t(v, "（统领星）", " (capstone)")) } }
                    }
                    p.score {
                        strong { (format_points(s.score)) } " / 100 "
                        small { (t(v, "及格线 ", "pass mark ")) (format_points(s.pass_mark)) }
                    }
                    meter min="0" max="10000" low=(s.pass_mark.saturating_sub(1)) optimum="10000" value=(s.score) aria-hidden="true" {}
                    @if s.earned {
                        p.good { (t(v, "已评上", "Earned")) }
                    } @else {
                        ul.lacks {
                            @for lack in &s.lacks { li { (i18n::lack(v.lang, kind, lack, title_of)) } }
                        }
                    }
                    p {
                        a href={"/tasks?star=" (star.key)} {
                            @match v.lang {
                                Lang::Zh => { "查看 " (count) " 项任务（已完成 " (done) "）" }
                                Lang::En => { "See " (count) " tasks (" (done) " done)" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, v, t(v, "总览", "Overview"), "home", body)
}

fn stars_text(earned: u32) -> String {
    (0..5).map(|i| if i < earned { '★' } else { '☆' }).collect()
}

fn matches(filter: &Filter, v: &Visit, task: &Task) -> bool {
    if !filter.star.is_empty() && task.star != filter.star {
        return false;
    }
    let shown = match filter.show.as_str() {
        "mine" => v.clerk.as_deref().is_some_and(|c| task.owner == c),
        "overdue" => task.is_overdue(today()),
        "awaiting" => {
            task.status == TaskStatus::Done
                && (task.verdict().is_none() || task.changed_since_review())
        }
        "rejected" => matches!(task.verdict().map(|r| r.verdict), Some(Verdict::Rejected)),
        "changed" => task.changed_since_review(),
        _ => true,
    };
    if !shown {
        return false;
    }
    let q = filter.q.trim();
    q.is_empty()
        || task.title.contains(q)
        || task.owner.contains(q)
        || task.id.contains(q)
        || task.notes.iter().any(|n| n.text.contains(q))
}

const SHOWS: &[(&str, &str, &str)] = &[
    ("", "全部", "All"),
    ("mine", "我负责的", "Mine"),
    ("overdue", "已逾期", "Overdue"),
    ("awaiting", "待审核", "Awaiting review"),
    ("rejected", "被退回", "Rejected"),
    ("changed", "审核后有改动", "Changed since review"),
];

/// Tasks by star, with filters and search.
pub fn task_list(ctx: &Context, v: &Visit, snap: &Snapshot, filter: &Filter) -> Markup {
    let kind = ctx.kind();
    let today = today();
    let shown: Vec<&Task> = snap.tasks.iter().filter(|task| matches(filter, v, task)).collect();
    let body = html! {
        (sync_banner(v, &snap.sync))
        h1 { (t(v, "任务", "Tasks")) }
        form.filters method="get" action="/tasks" role="search" {
            label {
                (t(v, "星", "Star"))
                select name="star" {
                    option value="" { (t(v, "全部五星", "All stars")) }
                    @for star in &kind.stars {
                        option value=(star.key) selected[filter.star == star.key] { (star.zh) }
                    }
                }
            }
            label {
                (t(v, "显示", "Show"))
                select name="show" {
                    @for (key, zh, en) in SHOWS {
                        option value=(key) selected[filter.show == *key] { (v.lang.pick(zh, en)) }
                    }
                }
            }
            label {
                (t(v, "查找", "Search"))
                input type="search" name="q" value=(filter.q) placeholder=(t(v, "任务名称、负责人、佐证", "title, owner, notes"));
            }
            button type="submit" { (t(v, "筛选", "Filter")) }
        }
        p.count {
            @match v.lang {
                Lang::Zh => { "共 " (shown.len()) " 项" }
                Lang::En => { (shown.len()) " task(s)" }
            }
        }
        @for star in &kind.stars {
            @let tasks: Vec<&&Task> = shown.iter().filter(|t| t.star == star.key).collect();
            @if !tasks.is_empty() {
                section.star-group {
                    h2 { (star.zh) }
                    table.tasks {
                        thead { tr {
                            th scope="col" { (t(v, "任务", "Task")) }
                            th scope="col" { (t(v, "负责人", "Owner")) }
                            th scope="col" { (t(v, "截止", "Due")) }
                            th scope="col" { (t(v, "进度", "Progress")) }
                            th scope="col" { (t(v, "状态", "Status")) }
                            th scope="col" { (t(v, "审核", "Review")) }
                        } }
                        tbody {
                            @for task in tasks {
                                tr {
                                    td {
                                        a href={"/tasks/" (task.id)} { (task.title) }
                                        @if task.veto { " " span.veto { (t(v, "一票否决", "veto")) } }
                                        br; small.muted { (task.points) (t(v, " 分", " pts")) }
                                        (task_files(v, task, &snap.files))
                                    }
                                    td { (task.owner) }
                                    td {
                                        @if let Some(d) = task.due {
                                            span.overdue[task.is_overdue(today)] { (d) }
                                            @if task.is_overdue(today) { br; small.bad { (t(v, "已逾期", "overdue")) } }
                                        }
                                    }
                                    td { (progress_bar(task)) }
                                    td { (status_badge(v, task.status)) }
                                    td { (review_badge(v, task)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @let others: Vec<&&Task> = shown.iter().filter(|t| kind.star(&t.star).is_none()).collect();
        @if !others.is_empty() {
            section.star-group {
                h2 { (t(v, "不属于本类社区五星的任务（不计分）", "Tasks of no star of this kind (not counted)")) }
                ul { @for task in others { li { a href={"/tasks/" (task.id)} { (task.title) } } } }
            }
        }
    };
    layout(ctx, v, t(v, "任务", "Tasks"), "tasks", body)
}

/// Where a file stands on its way to the district, in a few words.
fn file_state(v: &Visit, state: Option<&FileState>) -> Markup {
    let now = chrono::Utc::now().timestamp_millis();
    html! {
        @match state {
            Some(s) if s.at_hub_ms.is_some() => {
                small.good { "✓ " (t(v, "已送到区里", "at the district")) }
            }
            Some(s) if s.uploading(now) => {
                small.busy {
                    (t(v, "正在上传", "uploading")) " " (s.percent()) "%"
                    " " progress max="100" value=(s.percent()) { (s.percent()) "%" }
                }
            }
            Some(s) if s.sent > 0 => {
                small.bad {
                    (t(v, "等待送到区里（已传 ", "waiting to reach the district ("))
                    (s.percent()) (t(v, "%，联网后接着传）", "% sent; it goes on when the link is back)"))
                }
            }
            _ => { small.bad { (t(v, "等待送到区里", "waiting to reach the district")) } }
        }
    }
}

/// Small previews of a task's photos for lists (at most three), and how many
/// files it has in all.
fn task_files(v: &Visit, task: &Task, files: &HashMap<String, FileState>) -> Markup {
    let attached: Vec<&fivestar_core::FileRef> = task
        .notes
        .iter()
        .filter(|n| n.withdrawn.is_none())
        .filter_map(|n| n.file.as_ref())
        .collect();
    let previews: Vec<&&fivestar_core::FileRef> = attached
        .iter()
        .filter(|f| files.get(&f.hash).is_some_and(|s| s.has_thumb))
        .take(3)
        .collect();
    html! {
        @if !attached.is_empty() {
            span.previews {
                @for f in &previews {
                    a href={"/files/" (f.hash)} {
                        img src={"/files/" (f.hash) "/thumb"} alt=(f.name) loading="lazy";
                    }
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

fn field_error(refused: Option<&Refused>, form: &str, field: &str) -> Markup {
    html! {
        @if let Some(message) = refused.and_then(|r| r.at(form, field)) {
            span.error id={"err-" (form) "-" (field)} role="alert" { (message) }
        }
    }
}

fn general_error(refused: Option<&Refused>, form: &str, fields: &[&str]) -> Markup {
    html! {
        @if let Some(refused) = refused {
            @if let Some(message) = refused.general(form, fields) {
                p.error role="alert" {
                    (message)
                    @if let Some(hint) = &refused.hint { br; small { (hint) } }
                }
            }
        }
    }
}

fn csrf(v: &Visit) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

/// One task: its fields, what to change, its notes, review and history.
pub fn task_page(ctx: &Context, v: &Visit, view: &TaskView, refused: Option<&Refused>) -> Markup {
    let task = &view.task;
    let kind = ctx.kind();
    let today = today();
    let id = &task.id;
    let locked = task.is_accepted();
    let own = task.template.is_none();
    let value = |form: &str, field: &str, current: String| -> String {
        refused.and_then(|r| r.value(form, field)).map(str::to_string).unwrap_or(current)
    };
    let edit_fields = ["progress", "status", "owner", "due", "title", "points", "star"];
    let body = html! {
        p.crumbs { a href={"/tasks?star=" (task.star)} { "← " (i18n::star_name(v.lang, kind, &task.star)) } }
        h1 { (task.title) }
        p.facts {
            (status_badge(v, task.status)) " " (progress_bar(task)) " "
            (review_badge(v, task))
            @if task.veto { " " span.veto { (t(v, "一票否决任务", "veto task")) } }
        }
        @if !view.conflicts.is_empty() {
            section.conflicts role="alert" {
                h2 { (t(v, "两台设备分开时改成了不同的值", "Set differently on two devices while apart")) }
                p { (t(v, "请选定正确的值；选定后所有设备都会显示它。", "Choose the right value; every device will show it once synced.")) }
                (general_error(refused, "settle", &[]))
                @for c in &view.conflicts {
                    div.conflict {
                        strong { (i18n::field(v.lang, c.field)) "：" }
                        @for (i, value) in c.values.iter().enumerate() {
                            form.inline method="post" action={"/tasks/" (id) "/settle"} {
                                (csrf(v))
                                input type="hidden" name="field" value=(c.field);
                                input type="hidden" name="value" value=(value);
                                button type="submit" {
                                    (t(v, "选定 ", "Choose "))
                                    "“" (conflict_text(v, c.field, value)) "”"
                                    @if i == 0 { small { (t(v, "（当前显示）", " (shown now)")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.columns {
            section.panel {
                h2 { (t(v, "情况", "Facts")) }
                dl {
                    dt { (t(v, "所属星", "Star")) } dd { (i18n::star_name(v.lang, kind, &task.star)) }
                    dt { (t(v, "分值", "Points")) } dd { (task.points) }
                    dt { (t(v, "得分", "Earned")) } dd { (format_points(earned_hundredths(task))) }
                    dt { (t(v, "负责人", "Owner")) } dd { @if task.owner.is_empty() { span.muted { (t(v, "尚未指定", "nobody yet")) } } @else { (task.owner) } }
                    dt { (t(v, "截止日期", "Due")) } dd {
                        @if let Some(d) = task.due {
                            (d) @if task.is_overdue(today) { " " span.bad { (t(v, "已逾期", "overdue")) } }
                        } @else { span.muted { (t(v, "无", "none")) } }
                    }
                    dt { (t(v, "来源", "From")) } dd {
                        @if own { (t(v, "本社区自定任务", "the community's own task")) } @else { (t(v, "区里标准模板", "the district's template")) }
                    }
                }
                @if let Some(review) = &task.review {
                    div.review {
                        h3 { (t(v, "审核", "Review")) }
                        p { (review_badge(v, task)) }
                        p { (review.reviewer) " · " (local_time(review.at_ms)) }
                        @if !review.comment.is_empty() { blockquote { (review.comment) } }
                        @if review.overridden { p.bad { (t(v, "未完成即通过（审核人特批）", "Accepted before it was done (the reviewer overrode)")) } }
                        @let changed = task.changed_fields();
                        @if !changed.is_empty() {
                            p.bad {
                                (t(v, "审核后改动了：", "Changed since review: "))
                                (changed.iter().map(|f| i18n::field(v.lang, f)).collect::<Vec<_>>().join(v.lang.pick("、", ", ")))
                                (t(v, "。审核结论不变，区里会再看。", ". The verdict stands; the district will look again."))
                            }
                        }
                        @if locked {
                            p.muted { (t(v, "已通过：状态、进度、所属星和分值已锁定；如需修改，请联系区里重新打开。", "Accepted: status, progress, star and points are locked; ask the district to reopen it.")) }
                        }
                    }
                }
            }
            section.panel {
                h2 { (t(v, "更新", "Update")) }
                form.stack method="post" action={"/tasks/" (id) "/edit"} {
                    (csrf(v))
                    input type="hidden" name="was_progress" value=(task.progress);
                    input type="hidden" name="was_status" value=(task.status.as_str());
                    (general_error(refused, "edit", &edit_fields))
                    label {
                        (t(v, "进度（%）", "Progress (%)"))
                        input type="number" name="progress" min="0" max="100" step="1" inputmode="numeric"
                            value=(value("edit", "progress", task.progress.to_string())) disabled[locked]
                            aria-describedby="err-edit-progress";
                        (field_error(refused, "edit", "progress"))
                    }
                    label {
                        (t(v, "状态", "Status"))
                        select name="status" disabled[locked] {
                            @for s in TaskStatus::ALL {
                                option value=(s.as_str()) selected[s == task.status] { (i18n::status(v.lang, s)) }
                            }
                        }
                        (field_error(refused, "edit", "status"))
                    }
                    label {
                        (t(v, "负责人", "Owner"))
                        input type="text" name="owner" maxlength="2000" value=(value("edit", "owner", task.owner.clone()));
                        (field_error(refused, "edit", "owner"))
                    }
                    label {
                        (t(v, "截止日期", "Due date"))
                        input type="date" name="due" value=(value("edit", "due", task.due.map(|d| d.to_string()).unwrap_or_default()));
                        (field_error(refused, "edit", "due"))
                    }
                    @if own {
                        label {
                            (t(v, "任务名称", "Title"))
                            input type="text" name="title" maxlength="2000" required value=(value("edit", "title", task.title.clone()));
                            (field_error(refused, "edit", "title"))
                        }
                        label {
                            (t(v, "分值", "Points"))
                            input type="number" name="points" min="1" max="100" value=(value("edit", "points", task.points.to_string())) disabled[locked];
                            (field_error(refused, "edit", "points"))
                        }
                        label {
                            (t(v, "所属星", "Star"))
                            select name="star" disabled[locked] {
                                @for star in &kind.stars { option value=(star.key) selected[star.key == task.star] { (star.zh) } }
                            }
                            (field_error(refused, "edit", "star"))
                        }
                    }
                    button type="submit" { (t(v, "保存修改", "Save changes")) }
                }
                @if !locked && task.status != TaskStatus::Done {
                    form.inline method="post" action={"/tasks/" (id) "/done"} {
                        (csrf(v))
                        button.primary type="submit" { "✓ " (t(v, "标记为已完成", "Mark done")) }
                    }
                }
                @if !locked && task.status != TaskStatus::Failed {
                    details.fail {
                        summary { (t(v, "标记为未达成……", "Mark failed…")) }
                        @if task.veto {
                            p.bad {
                                @match v.lang {
                                    Lang::Zh => { "这是一票否决任务：标记为未达成后，" (i18n::star_name(v.lang, kind, &task.star)) "在它恢复之前无法评上。" }
                                    Lang::En => { "This is a veto task: once failed, " (i18n::star_name(v.lang, kind, &task.star)) " cannot be earned until it recovers." }
                                }
                            }
                        }
                        form.stack method="post" action={"/tasks/" (id) "/fail"} {
                            (csrf(v))
                            label {
                                (t(v, "发生了什么（记为佐证）", "What happened (kept as evidence)"))
                                textarea name="text" rows="2" maxlength="2000" { (value("fail", "text", String::new())) }
                            }
                            (general_error(refused, "fail", &[]))
                            button.danger type="submit" { (t(v, "确认未达成", "Confirm failed")) }
                        }
                    }
                }
            }
        }
        section.panel id="notes" {
            h2 { (t(v, "佐证记录", "Evidence notes")) }
            @if task.notes.is_empty() {
                p.muted { (t(v, "还没有佐证记录。", "No evidence notes yet.")) }
            }
            ol.notes {
                @for (i, note) in task.notes.iter().enumerate() {
                    li.withdrawn[note.withdrawn.is_some()] {
                        p { (note.text) }
                        @if let Some(f) = &note.file {
                            @let state = view.files.get(&f.hash);
                            p.file {
                                @if state.is_some_and(|s| s.has_thumb) {
                                    a.thumb href={"/files/" (f.hash)} title=(t(v, "查看原图", "Open the full picture")) {
                                        img src={"/files/" (f.hash) "/thumb"} alt=(f.name) loading="lazy";
                                    }
                                    br;
                                } @else if fivestar_core::media::decodable(&f.mime) {
                                    // No preview could be made here; the browser may
                                    // still show the photo itself.
                                    a href={"/files/" (f.hash)} { img src={"/files/" (f.hash)} alt=(f.name) loading="lazy"; }
                                    br;
                                }
                                (t(v, "附件：", "File: ")) a href={"/files/" (f.hash)} { (f.name) } " " small.muted { (size_text(f.size)) }
                                " "
                                (file_state(v, state))
                            }
                        }
                        small.muted { (note.by) " · " (local_time(note.at_ms)) }
                        @if let Some(w) = &note.withdrawn {
                            " " small.bad { (t(v, "已撤回：", "withdrawn: ")) (w.by) " · " (local_time(w.at_ms)) }
                        } @else {
                            form.inline method="post" action={"/tasks/" (id) "/withdraw"} {
                                (csrf(v))
                                input type="hidden" name="number" value=(i + 1);
                                button.link type="submit" { (t(v, "撤回", "Withdraw")) }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action={"/tasks/" (id) "/attach"} enctype="multipart/form-data" {
                (csrf(v))
                label {
                    @let limit = ops::megabytes(ctx.config.files.max_bytes);
                    @match v.lang {
                        Lang::Zh => { "附上照片或文件（JPEG、PNG、HEIC、PDF、Office，" (limit) " 以内）" }
                        Lang::En => { "Attach a photo or document (JPEG, PNG, HEIC, PDF, Office; up to " (limit) ")" }
                    }
                    input type="file" name="file" accept="image/jpeg,image/png,image/heic,.heic,application/pdf,.doc,.docx,.xls,.xlsx,.ppt,.pptx" required;
                    (field_error(refused, "attach", "file"))
                }
                label {
                    (t(v, "说明（可不填）", "Caption (optional)"))
                    input type="text" name="text" maxlength="2000" value=(value("attach", "text", String::new()));
                }
                (general_error(refused, "attach", &["file"]))
                button type="submit" { (t(v, "上传附件", "Attach")) }
            }
            form.stack method="post" action={"/tasks/" (id) "/note"} {
                (csrf(v))
                label {
                    (t(v, "新增佐证（做了什么、在哪里、有谁参加）", "New note (what was done, where, who took part)"))
                    textarea name="text" rows="3" maxlength="2000" required aria-describedby="err-note-note" { (value("note", "text", String::new())) }
                    (field_error(refused, "note", "note"))
                }
                (general_error(refused, "note", &["note"]))
                button type="submit" { (t(v, "添加佐证", "Add note")) }
            }
        }
        section.panel {
            h2 { (t(v, "修改记录", "History")) }
            table.history {
                thead { tr {
                    th scope="col" { (t(v, "时间", "When")) }
                    th scope="col" { (t(v, "谁", "Who")) }
                    th scope="col" { (t(v, "来自", "From")) }
                    th scope="col" { (t(v, "做了什么", "What")) }
                } }
                tbody {
                    @for change in view.history.iter().rev() {
                        tr {
                            td { @if change.entry.at_seconds == 0 { (t(v, "（模板）", "(template)")) } @else { (local_time(change.entry.at_seconds * 1000)) } }
                            td { (who_text(v, &change.entry.by)) }
                            td {
                                @match change.received_ms {
                                    Some(ms) => { (t(v, "经区里转来 ", "via the district ")) small { (local_time(ms)) } }
                                    None => { (t(v, "本机", "this device")) }
                                }
                            }
                            td { (action_text(v, &change.entry.action)) }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, v, &task.title, "task", body)
}

/// A file size for people: bytes, KB or MB.
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{} KB", b / 1024),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

fn conflict_text(v: &Visit, field: &str, value: &str) -> String {
    match field {
        "status" => value
            .parse::<TaskStatus>()
            .map(|s| i18n::status(v.lang, s).to_string())
            .unwrap_or(value.into()),
        "due" if value.is_empty() => t(v, "无截止日期", "no deadline").into(),
        "progress" => format!("{value}%"),
        _ => value.to_string(),
    }
}

fn who_text(v: &Visit, by: &str) -> String {
    if by == "template" {
        return t(v, "区里标准", "the district's standard").into();
    }
    match by.strip_prefix("device ") {
        Some(device) => match v.lang {
            Lang::Zh => format!("设备 {device}"),
            Lang::En => by.to_string(),
        },
        None => by.to_string(),
    }
}

fn action_text(v: &Visit, action: &str) -> String {
    if v.lang == Lang::En {
        return action.to_string();
    }
    let fields =
        |list: &str| list.split(',').map(|f| i18n::field(v.lang, f)).collect::<Vec<_>>().join("、");
    match action {
        "add" => "新增任务".into(),
        "note" => "添加佐证".into(),
        "withdraw note" => "撤回佐证".into(),
        "accepted" => "审核通过".into(),
        "rejected" => "审核退回".into(),
        "reopened" => "重新打开".into(),
        "genesis" => "建立记录".into(),
        a if a.starts_with("edit ") => format!("修改{}", fields(&a[5..])),
        a if a.starts_with("settle ") => format!("选定{}", fields(&a[7..])),
        a if a.starts_with("template ") => "创建标准任务".into(),
        a => a.to_string(),
    }
}

/// The form for a task of the community's own.
pub fn new_task(
    ctx: &Context,
    v: &Visit,
    values: &HashMap<&'static str, String>,
    refused: Option<&Refused>,
) -> Markup {
    let value = |field: &str| values.get(field).cloned().unwrap_or_default();
    let fields = ["star", "title", "points", "owner", "due", "note"];
    let body = html! {
        h1 { (t(v, "新增本社区的任务", "A task of the community's own")) }
        p.lead { (t(v, "区里标准之外、本社区自己安排的工作。标准任务已经在任务列表里。", "Work the community sets itself, beyond the district's standard. The standard's tasks are in the list already.")) }
        form.stack.panel method="post" action="/tasks/new" {
            (csrf(v))
            (general_error(refused, "new", &fields))
            label {
                (t(v, "所属星", "Star"))
                select name="star" required {
                    option value="" { (t(v, "请选择", "Choose")) }
                    @for star in &ctx.kind().stars { option value=(star.key) selected[value("star") == star.key] { (star.zh) } }
                }
                (field_error(refused, "new", "star"))
            }
            label {
                (t(v, "任务名称", "Title"))
                input type="text" name="title" required maxlength="2000" value=(value("title"));
                (field_error(refused, "new", "title"))
            }
            label {
                (t(v, "分值（1–100）", "Points (1–100)"))
                input type="number" name="points" min="1" max="100" required value=(value("points"));
                (field_error(refused, "new", "points"))
            }
            label {
                (t(v, "负责人", "Owner"))
                input type="text" name="owner" maxlength="2000" value=(value("owner"));
                (field_error(refused, "new", "owner"))
            }
            label {
                (t(v, "截止日期", "Due date"))
                input type="date" name="due" value=(value("due"));
                (field_error(refused, "new", "due"))
            }
            label {
                (t(v, "第一条佐证（可不填）", "A first note (optional)"))
                textarea name="note" rows="2" maxlength="2000" { (value("note")) }
                (field_error(refused, "new", "note"))
            }
            button.primary type="submit" { (t(v, "保存任务", "Save task")) }
        }
    };
    layout(ctx, v, t(v, "新增任务", "New task"), "new", body)
}

/// The first-run page: who works here, and the standard's tasks.
pub fn welcome(
    ctx: &Context,
    v: &Visit,
    staff: &[(String, bool)],
    tasks: usize,
    refused: Option<&Refused>,
) -> Markup {
    let signed_in = v.clerk.is_some();
    let body = html! {
        h1 { (t(v, "欢迎使用社区工作台", "Welcome to the community's workbench")) }
        p.lead {
            @match v.lang {
                Lang::Zh => { "这台电脑记录" strong { (ctx.config.community_name) } "（" (ctx.config.kind.zh()) "）的五星支部创建任务。不联网也能用，联网后自动与区里同步。" }
                Lang::En => { "This PC keeps the Five-Star tasks of " strong { (ctx.config.community_name) } " (" (ctx.config.kind.zh()) "). It works offline and syncs with the district when the link is up." }
            }
        }
        section.panel {
            h2 { "1. " (t(v, "谁在这里工作", "Who works here")) }
            p { (t(v, "每次修改都会记下是谁做的。先写下您的名字，再添加同事。", "Every change records who made it. Add your name first, then your colleagues.")) }
            @if !staff.is_empty() {
                ul { @for (name, pin) in staff { li { (name) @if *pin { " " small.muted { (t(v, "（有 PIN）", "(PIN)")) } } } } }
            }
            @if signed_in || staff.is_empty() {
                form.stack method="post" action="/staff" {
                    (csrf(v))
                    (general_error(refused, "staff", &["name", "pin"]))
                    label {
                        @if staff.is_empty() { (t(v, "您的姓名", "Your name")) } @else { (t(v, "同事的姓名", "A colleague's name")) }
                        input type="text" name="name" required maxlength="40" autocomplete="name" value=(refused.and_then(|r| r.value("staff", "name")).unwrap_or(""));
                        (field_error(refused, "staff", "name"))
                    }
                    label {
                        (t(v, "PIN（至少 4 位数字，可不设）", "PIN (4 digits or more, optional)"))
                        input type="password" name="pin" inputmode="numeric" autocomplete="new-password" pattern="[0-9]{4,}";
                        (field_error(refused, "staff", "pin"))
                    }
                    button type="submit" { (t(v, "加入名单", "Add to the list")) }
                }
            } @else {
                p { a href="/signin" { (t(v, "请先登录", "Sign in first")) } }
            }
        }
        section.panel {
            h2 { "2. " (t(v, "创建区里标准的任务", "Create the district's standard tasks")) }
            @if tasks > 0 {
                p.good { "✓ " (t(v, "任务已经创建。", "The tasks are created.")) " " a href="/" { (t(v, "去总览", "Go to the overview")) } }
            } @else if signed_in {
                p {
                    @match v.lang {
                        Lang::Zh => { "按" (ctx.config.kind.zh()) "的标准，为本社区创建 " (ctx.kind().template_tasks().count()) " 项任务。只需做一次；在多台电脑上各做一次也不会重复。" }
                        Lang::En => { "Creates the " (ctx.kind().template_tasks().count()) " tasks of the " (ctx.config.kind.zh()) " standard. Once is enough; doing it on two PCs creates nothing twice." }
                    }
                }
                form method="post" action="/template" {
                    (csrf(v))
                    button.primary type="submit" { (t(v, "创建标准任务", "Create the standard tasks")) }
                }
            } @else {
                p.muted { (t(v, "先完成第 1 步。", "Do step 1 first.")) }
            }
        }
    };
    layout(ctx, v, t(v, "欢迎", "Welcome"), "welcome", body)
}

/// Picking who is at work.
pub fn signin(
    ctx: &Context,
    v: &Visit,
    staff: &[(String, bool)],
    refused: Option<&Refused>,
) -> Markup {
    let chosen = refused.and_then(|r| r.value("signin", "name")).unwrap_or("");
    let body = html! {
        h1 { (t(v, "谁在工作？", "Who is working?")) }
        form.stack.panel method="post" action="/signin" {
            (csrf(v))
            fieldset {
                legend { (t(v, "请选择您的名字", "Pick your name")) }
                @for (i, (name, _)) in staff.iter().enumerate() {
                    label.choice {
                        input type="radio" name="name" value=(name) required checked[name == chosen || (chosen.is_empty() && i == 0)];
                        " " (name)
                    }
                }
                (field_error(refused, "signin", "name"))
            }
            @if staff.iter().any(|(_, pin)| *pin) {
                label {
                    (t(v, "PIN（设了才需要填）", "PIN (only if you have one)"))
                    input type="password" name="pin" inputmode="numeric" autocomplete="current-password";
                    (field_error(refused, "signin", "pin"))
                }
            }
            (general_error(refused, "signin", &["name", "pin"]))
            button.primary type="submit" { (t(v, "开始工作", "Start")) }
        }
    };
    layout(ctx, v, t(v, "登录", "Sign in"), "signin", body)
}

/// A task sheet per star for the office wall (the browser prints it).
pub fn print_sheet(ctx: &Context, v: &Visit, snap: &Snapshot, star: &str) -> Markup {
    let kind = ctx.kind();
    let stars: Vec<_> = kind.stars.iter().filter(|s| star.is_empty() || s.key == star).collect();
    let body = html! {
        div.noprint {
            h1 { (t(v, "打印任务单", "Print task sheets")) }
            p { (t(v, "每颗星一页，用浏览器的“打印”（Ctrl+P）打印。只打印一颗星：", "One page per star; print with the browser (Ctrl+P). One star only: "))
                @for s in &kind.stars { a href={"/print?star=" (s.key)} { (s.zh) } " " }
            }
        }
        @for s in stars {
            section.sheet {
                h2 { (ctx.config.community_name) " · " (s.zh) }
                p.muted { (t(v, "打印于 ", "Printed ")) (Local::now().format("%Y-%m-%d %H:%M")) }
                table.tasks {
                    thead { tr {
                        th { (t(v, "任务", "Task")) } th { (t(v, "负责人", "Owner")) } th { (t(v, "截止", "Due")) }
                        th { (t(v, "进度", "Progress")) } th { (t(v, "状态", "Status")) } th { (t(v, "审核", "Review")) }
                    } }
                    tbody {
                        @for task in snap.tasks.iter().filter(|t| t.star == s.key) {
                            tr {
                                td { (task.title) @if task.veto { " " span.veto { (t(v, "一票否决", "veto")) } } }
                                td { (task.owner) }
                                td { @if let Some(d) = task.due { (d) } }
                                td { (task.effective_progress()) "%" }
                                td { (i18n::status(v.lang, task.status)) }
                                td { (review_badge(v, task)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, v, t(v, "打印任务单", "Print"), "print", body)
}

/// A refused request with nothing else to show (CSRF).
pub fn refusal(lang: Lang, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width, initial-scale=1"; link rel="stylesheet" href="/app.css"; title { (lang.pick("未保存", "Not saved")) } }
            body { main { p.error role="alert" { (message) } p { a href="/" { (lang.pick("回到总览", "Back to the overview")) } } } }
        }
    }
}

/// A fault with nothing else to show.
pub fn fault(v: &Visit, fault: &Fault) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(v.lang.tag()) {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width, initial-scale=1"; link rel="stylesheet" href="/app.css"; title { (t(v, "出错了", "Error")) } }
            body { main {
                p.error role="alert" {
                    (fault.message(v.lang))
                    @if let Some(hint) = fault.hint_text(v.lang) { br; small { (hint) } }
                }
                p { a href="/" { (t(v, "回到总览", "Back to the overview")) } }
            } }
        }
    }
}
