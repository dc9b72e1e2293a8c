//! Renders standings for people and programs: aligned tables, CSV, JSON, and one
//! self-contained HTML page (no network needed to open it: inline CSS, inline SVG).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Local, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use fivestar_core::scoring::format_points;
use fivestar_core::{Freshness, Kind, Standard, Standing, TierSummary, Tiers};
use serde::Serialize;

use crate::store::HubStore;

/// A standings table ready to show: rows, their rank changes, and when.
#[derive(Debug, Clone, Serialize)]
pub struct StandingsView {
    /// When the table was computed, Unix milliseconds.
    pub computed_ms: i64,
    /// The snapshot shown, if it is a recorded one.
    pub snapshot: Option<i64>,
    /// The snapshot rank changes are measured against, if any.
    pub compared_with: Option<i64>,
    /// The standard's version, and whether it is the shipped sample.
    pub standard_version: String,
    /// True while the shipped sample standard is in force.
    pub sample_standard: bool,
    /// The rows, best first.
    pub rows: Vec<StandingRow>,
    /// Tier counts of the rows shown.
    pub tiers: TierSummary,
}

/// One row with its rank change.
#[derive(Debug, Clone, Serialize)]
pub struct StandingRow {
    /// The row.
    #[serde(flatten)]
    pub standing: Standing,
    /// Places moved up (positive) or down since the compared snapshot.
    pub rank_change: Option<i64>,
}

impl StandingsView {
    /// Builds a view from rows and the rank changes against a baseline.
    pub fn new(
        standard: &Standard,
        computed_ms: i64,
        snapshot: Option<i64>,
        compared_with: Option<i64>,
        rows: Vec<Standing>,
        changes: &HashMap<String, i64>,
        tiers: TierSummary,
    ) -> StandingsView {
        StandingsView {
            computed_ms,
            snapshot,
            compared_with,
            standard_version: standard.version.clone(),
            sample_standard: standard.sample,
            rows: rows
                .into_iter()
                .map(|s| StandingRow {
                    rank_change: changes.get(&s.community).copied(),
                    standing: s,
                })
                .collect(),
            tiers,
        }
    }
}

/// Why a standings view could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// No snapshot was recorded by the time asked for.
    #[error("no standings were recorded at or before {}", local_time(*at))]
    NoSnapshot {
        /// The time asked for, Unix milliseconds.
        at: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fivestar_store::StoreError),
}

/// The standings now (or the snapshot recorded at `at`), with rank changes against
/// the snapshot at `since`, or else the previous snapshot.
pub fn standings_view(
    store: &mut HubStore,
    stale_after: chrono::TimeDelta,
    at: Option<i64>,
    since: Option<i64>,
) -> Result<StandingsView, ViewError> {
    let (rows, computed_ms, snapshot) = match at {
        Some(at) => {
            let snap = store.snapshot_at(Some(at))?.ok_or(ViewError::NoSnapshot { at })?;
            (snap.rows.clone(), snap.computed_ms, Some(snap))
        }
        None => {
            let now = Utc::now().timestamp_millis();
            let (rows, _) = store.current_standings(now, stale_after)?;
            (rows, now, None)
        }
    };
    let baseline = match (since, &snapshot) {
        (Some(since), _) => store.snapshot_at(Some(since))?,
        (None, Some(snap)) => store.snapshot_before(snap.id)?,
        // Now: against the newest snapshot, unless it shows this very table (the hub
        // is running and recorded it), then against the one before.
        (None, None) => match store.snapshot_at(None)? {
            Some(latest) if fivestar_core::same_table(&latest.rows, &rows) => {
                store.snapshot_before(latest.id)?
            }
            other => other,
        },
    };
    let changes =
        baseline.as_ref().map(|b| fivestar_core::rank_changes(&b.rows, &rows)).unwrap_or_default();
    let tiers = fivestar_core::tiers(store.registry(), &rows);
    Ok(StandingsView::new(
        store.standard(),
        computed_ms,
        snapshot.map(|s| s.id),
        baseline.map(|b| b.id),
        rows,
        &changes,
        tiers,
    ))
}

/// An empty table in the house style (condensed borders, wrapped to the terminal).
pub fn grid(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(header.to_vec());
    table
}

/// Local time for a Unix-millisecond timestamp, `YYYY-MM-DD HH:MM`.
pub fn local_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into())
}

fn stars(n: u32) -> String {
    (0..5).map(|i| if i < n { '★' } else { '☆' }).collect()
}

fn rank(r: Option<u32>) -> String {
    r.map(|r| r.to_string()).unwrap_or_else(|| "—".into())
}

fn change(c: Option<i64>) -> String {
    match c {
        None => String::new(),
        Some(0) => "=".into(),
        Some(c) if c > 0 => format!("↑{c}"),
        Some(c) => format!("↓{}", -c),
    }
}

fn flag(f: Freshness) -> &'static str {
    match f {
        Freshness::Current => "",
        Freshness::Stale => "stale",
        Freshness::NoData => "no data",
    }
}

fn star_cell(s: &Standing, i: usize) -> String {
    s.star_scores
        .get(i)
        .map(|c| format!("{}{}", format_points(c.score), if c.earned { "★" } else { "" }))
        .unwrap_or_default()
}

/// The standings as an aligned table, with the legend and tier line below it.
pub fn table(view: &StandingsView, standard: &Standard) -> String {
    let mut table = grid(&[
        "Rank",
        "Sub",
        "Community",
        "Subdistrict",
        "Kind",
        "Stars",
        "S1",
        "S2",
        "S3",
        "S4",
        "S5",
        "Total",
        "±",
        "Last sync",
        "Flag",
    ]);
    for row in &view.rows {
        let s = &row.standing;
        table.add_row(vec![
            rank(s.district_rank),
            rank(s.subdistrict_rank),
            format!("{} ({})", s.name, s.community),
            format!("{} {}", s.subdistrict, s.subdistrict_name),
            s.kind.zh().to_string(),
            stars(s.stars),
            star_cell(s, 0),
            star_cell(s, 1),
            star_cell(s, 2),
            star_cell(s, 3),
            star_cell(s, 4),
            format_points(s.total),
            change(row.rank_change),
            s.last_sync_ms.map(local_time).unwrap_or_else(|| "never".into()),
            flag(s.freshness).to_string(),
        ]);
    }
    let mut out = format!("{table}\n");
    for kind in Kind::ALL {
        let keys: Vec<String> =
            standard.kind(kind).stars.iter().map(|s| format!("{} {}", s.key, s.zh)).collect();
        let _ = writeln!(out, "S1-S5, {}: {}", kind.zh(), keys.join(", "));
    }
    let _ = writeln!(out, "{}", tier_line("District", &view.tiers.district));
    let _ = write!(
        out,
        "Standings as of {}{}{}; standard {}{}.",
        local_time(view.computed_ms),
        view.snapshot.map(|s| format!(" (snapshot {s})")).unwrap_or_default(),
        view.compared_with.map(|s| format!(", ± against snapshot {s}")).unwrap_or_default(),
        view.standard_version,
        if view.sample_standard { " (SAMPLE, not the district's own)" } else { "" }
    );
    out
}

fn tier_line(label: &str, t: &Tiers) -> String {
    format!(
        "{label}: 5★ {}, 4★ {}, 3★ {}, 2★ {}, 1★ {}, 0★ {}; no data {}, stale {}",
        t.by_stars[5],
        t.by_stars[4],
        t.by_stars[3],
        t.by_stars[2],
        t.by_stars[1],
        t.by_stars[0],
        t.no_data,
        t.stale
    )
}

/// The tier summary as a table: one row per subdistrict and one for the district.
pub fn tiers_table(summary: &TierSummary) -> String {
    let mut table = grid(&["Subdistrict", "5★", "4★", "3★", "2★", "1★", "0★", "No data", "Stale"]);
    let mut add = |label: String, t: &Tiers| {
        let mut row = vec![label];
        row.extend((0..6).rev().map(|n| t.by_stars[n].to_string()));
        row.push(t.no_data.to_string());
        row.push(t.stale.to_string());
        table.add_row(row);
    };
    for (code, name, t) in &summary.subdistricts {
        add(format!("{code} {name}"), t);
    }
    add("District 魏都区".into(), &summary.district);
    table.to_string()
}

/// The CSV header and one record per row; star scores in points with two decimals.
pub fn csv(view: &StandingsView) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "district_rank",
        "subdistrict_rank",
        "community",
        "name",
        "subdistrict",
        "subdistrict_name",
        "kind",
        "stars",
        "star1_key",
        "star1",
        "star2_key",
        "star2",
        "star3_key",
        "star3",
        "star4_key",
        "star4",
        "star5_key",
        "star5",
        "total",
        "rank_change",
        "freshness",
        "last_sync",
    ])?;
    for row in &view.rows {
        let s = &row.standing;
        let mut record = vec![
            s.district_rank.map(|r| r.to_string()).unwrap_or_default(),
            s.subdistrict_rank.map(|r| r.to_string()).unwrap_or_default(),
            s.community.clone(),
            s.name.clone(),
            s.subdistrict.clone(),
            s.subdistrict_name.clone(),
            s.kind.as_str().to_string(),
            s.stars.to_string(),
        ];
        for i in 0..5 {
            let cell = s.star_scores.get(i);
            record.push(cell.map(|c| c.key.to_string()).unwrap_or_default());
            record.push(cell.map(|c| format_points(c.score)).unwrap_or_default());
        }
        record.push(format_points(s.total));
        record.push(row.rank_change.map(|c| c.to_string()).unwrap_or_default());
        record.push(
            serde_json::to_value(s.freshness)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        );
        record.push(
            s.last_sync_ms
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        );
        writer.write_record(&record)?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The standings as an HTML table (rows in the view's order). Each star score is
/// named after its star (urban and agricultural communities have different stars);
/// with `link`, community names lead to their page on the hub.
pub(crate) fn standings_table_html(
    view: &StandingsView,
    standard: &Standard,
    link: bool,
) -> String {
    let mut rows = String::new();
    for row in &view.rows {
        let s = &row.standing;
        let class = match s.freshness {
            Freshness::Current => "",
            Freshness::Stale => " class=\"stale\"",
            Freshness::NoData => " class=\"nodata\"",
        };
        let kind = standard.kind(s.kind);
        let cells: Vec<String> = s
            .star_scores
            .iter()
            .map(|c| {
                let name =
                    kind.star(&c.key).map(|st| st.zh.clone()).unwrap_or_else(|| c.key.to_string());
                format!(
                    "<span class=\"cell\">{} {}{}</span>",
                    escape(&name),
                    format_points(c.score),
                    if c.earned { "★" } else { "" }
                )
            })
            .collect();
        let name = if link {
            format!("<a href=\"/community/{}\">{}</a>", escape(&s.community), escape(&s.name))
        } else {
            escape(&s.name)
        };
        let _ = writeln!(
            rows,
            "<tr{class}><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{name}</td><td>{}</td><td>{}</td><td class=\"stars\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"starcells\">{}</td></tr>",
            rank(s.district_rank),
            rank(s.subdistrict_rank),
            escape(&s.subdistrict_name),
            s.kind.zh(),
            stars(s.stars),
            format_points(s.total),
            change(row.rank_change),
            s.last_sync_ms.map(local_time).unwrap_or_else(|| "从未同步".into()),
            match s.freshness {
                Freshness::Current => "",
                Freshness::Stale => "数据过期",
                Freshness::NoData => "无数据",
            },
            cells.join(""),
        );
    }
    format!(
        r#"<div class="scroll"><table id="standings">
<thead><tr><th>区排名</th><th>街道排名</th><th>社区</th><th>街道</th><th>类型</th><th>星级</th><th>总分</th><th>变化</th><th>最近同步</th><th>状态</th><th>五星得分（按社区类型的五星）</th></tr></thead>
<tbody>
{rows}</tbody>
</table></div>"#
    )
}

/// The page's shared style: readable in Chinese, usable on a small screen.
pub(crate) const STYLE: &str = r#"body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
.meta { color: #555; } .warn { color: #a33; font-weight: bold; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; white-space: nowrap; }
th { background: #f3e6e6; } td.num { text-align: right; } td.stars { color: #c00; }
td.starcells .cell { display: inline-block; margin-right: .6rem; }
tr.stale td { background: #fff6e0; } tr.nodata td { color: #888; } tr.failing td { background: #fde0e0; }
svg { max-width: 100%; height: auto; } svg text { font-size: 11px; }
@media (max-width: 600px) { body { margin: 0.5rem; } table { font-size: 0.8rem; } }"#;

/// One self-contained HTML page: the standings table, the tier counts per subdistrict
/// as an SVG chart, and when the data is from. Opens with no network.
pub fn html(view: &StandingsView, standard: &Standard) -> String {
    let fresh = view.rows.iter().filter(|r| r.standing.freshness == Freshness::Current).count();
    let stale = view.rows.iter().filter(|r| r.standing.freshness == Freshness::Stale).count();
    let none = view.rows.iter().filter(|r| r.standing.freshness == Freshness::NoData).count();
    format!(
        r#"<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>魏都区“五星支部”创建排名 — Weidu District Five-Star standings</title>
<style>
{STYLE}
</style>
</head>
<body>
<h1>魏都区“五星支部”创建排名</h1>
<p class="meta">数据时间 As of {time}{snapshot} · 标准 Standard {version} · {fresh} 个社区数据最新，{stale} 个数据过期，{none} 个无数据</p>
{warning}
<h2>各街道星级分布 Stars per subdistrict</h2>
{chart}
<h2>排名 Standings</h2>
{table}
</body>
</html>
"#,
        time = local_time(view.computed_ms),
        snapshot = view.snapshot.map(|s| format!("（快照 {s}）")).unwrap_or_default(),
        version = escape(&view.standard_version),
        warning = sample_warning(view),
        chart = tier_chart(&view.tiers),
        table = standings_table_html(view, standard, false),
    )
}

/// The warning shown while the sample standard is in force.
pub(crate) fn sample_warning(view: &StandingsView) -> &'static str {
    if view.sample_standard {
        "<p class=\"warn\">注意：使用的是示例标准，不是区里的正式标准。 SAMPLE standard, not the district's own.</p>"
    } else {
        ""
    }
}

/// Stacked horizontal bars: one per subdistrict, segments for 5★ down to 0★ and no data.
pub(crate) fn tier_chart(summary: &TierSummary) -> String {
    const COLORS: [&str; 7] =
        ["#7f0000", "#b30000", "#e34a33", "#fc8d59", "#fdbb84", "#fdd49e", "#d9d9d9"];
    const LABELS: [&str; 7] = ["5★", "4★", "3★", "2★", "1★", "0★", "无数据"];
    let max = summary
        .subdistricts
        .iter()
        .map(|(_, _, t)| t.by_stars.iter().sum::<u32>() + t.no_data)
        .max()
        .unwrap_or(1)
        .max(1);
    let (left, width, bar, gap) = (110.0, 420.0, 16.0, 6.0);
    let height = 30.0 + summary.subdistricts.len() as f64 * (bar + gap);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {height}" width="{w}" height="{height}" preserveAspectRatio="xMinYMin meet" role="img" aria-label="各街道星级分布">"#,
        w = left + width + 40.0
    );
    for (i, label) in LABELS.iter().enumerate() {
        let x = left + i as f64 * 60.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="2" width="10" height="10" fill="{}"/><text x="{}" y="11">{label}</text>"#,
            COLORS[i],
            x + 14.0
        );
    }
    for (row, (code, name, t)) in summary.subdistricts.iter().enumerate() {
        let y = 24.0 + row as f64 * (bar + gap);
        let _ = write!(svg, r#"<text x="0" y="{}">{code} {}</text>"#, y + bar - 4.0, escape(name));
        let counts = [
            t.by_stars[5],
            t.by_stars[4],
            t.by_stars[3],
            t.by_stars[2],
            t.by_stars[1],
            t.by_stars[0],
            t.no_data,
        ];
        let mut x = left;
        for (i, count) in counts.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let w = width * f64::from(*count) / f64::from(max);
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="{bar}" fill="{}"><title>{} {}: {count}</title></rect>"#,
                COLORS[i],
                escape(name),
                LABELS[i]
            );
            x += w;
        }
        let total: u32 = counts.iter().sum();
        let _ = write!(svg, r#"<text x="{:.1}" y="{}">{total}</text>"#, x + 4.0, y + bar - 4.0);
    }
    svg.push_str("</svg>");
    svg
}

/// One community for the district office: its standing, per-star scores with what
/// each still lacks, and every task with earned points and review.
pub fn community_text(
    entry: &fivestar_core::Community,
    standing: Option<&StandingRow>,
    standard: &fivestar_core::KindStandard,
    score: &fivestar_core::CommunityScore,
    tasks: &[fivestar_core::Task],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}), {}, subdistrict {}",
        entry.name,
        entry.id,
        entry.kind.zh(),
        entry.subdistrict
    );
    if let Some(row) = standing {
        let s = &row.standing;
        let _ = writeln!(
            out,
            "District rank {}, subdistrict rank {}; {} {} star(s), total {}{}",
            rank(s.district_rank),
            rank(s.subdistrict_rank),
            stars(s.stars),
            s.stars,
            format_points(s.total),
            match s.freshness {
                Freshness::Current => String::new(),
                Freshness::Stale => " (stale: ranked on its last data)".into(),
                Freshness::NoData => " (no data: never synced)".into(),
            }
        );
    }
    let mut stars_table = grid(&["Star", "星", "Score", "Pass", "Earned", "Still lacks"]);
    for (star, s) in standard.stars.iter().zip(&score.stars) {
        let lacks: Vec<String> = s.lacks.iter().map(|l| l.to_string()).collect();
        stars_table.add_row(vec![
            star.key.clone(),
            star.zh.clone(),
            format_points(s.score),
            format_points(s.pass_mark),
            if s.earned { "★ yes".into() } else { "☆ no".into() },
            if lacks.is_empty() { "—".into() } else { lacks.join("; ") },
        ]);
    }
    let _ = writeln!(out, "{stars_table}");
    let mut task_table =
        grid(&["ID", "Star", "Task", "Pts", "Status", "%", "Earned", "Review", "Comment"]);
    for t in tasks {
        let (verdict, comment) = match &t.review {
            None => (String::new(), String::new()),
            Some(r) => (
                {
                    let word = match r.verdict {
                        fivestar_core::Verdict::Accepted { awarded: None } => {
                            "accepted".to_string()
                        }
                        fivestar_core::Verdict::Accepted { awarded: Some(a) } => {
                            format!("accepted, {a}")
                        }
                        fivestar_core::Verdict::Rejected => "rejected".to_string(),
                        fivestar_core::Verdict::Reopened => "reopened".to_string(),
                    };
                    let changed = t.changed_fields();
                    if changed.is_empty() {
                        word
                    } else {
                        format!("{word}; changed since review: {}", changed.join(", "))
                    }
                },
                format!("{} ({})", r.comment, r.reviewer),
            ),
        };
        task_table.add_row(vec![
            t.id.clone(),
            t.star.clone(),
            t.title.clone(),
            t.points.to_string(),
            t.status.to_string(),
            t.effective_progress().to_string(),
            format_points(fivestar_core::earned_hundredths(t)),
            verdict,
            comment,
        ]);
    }
    let _ = writeln!(out, "{task_table}");
    let _ = writeln!(out, "{} task(s).", tasks.len());
    out
}

/// The standings as an Excel workbook (.xlsx) with Chinese headers, for the
/// district's own reports: one row per community in rank order, each star named.
pub fn xlsx(
    view: &StandingsView,
    standard: &Standard,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("排名")?;
    let bold = Format::new().set_bold();
    let mut header: Vec<String> =
        ["区排名", "街道排名", "社区编号", "社区", "街道", "类型", "星级", "总分"]
            .iter()
            .map(|h| h.to_string())
            .collect();
    for i in 1..=5 {
        header.push(format!("第{i}星"));
        header.push(format!("第{i}星得分"));
    }
    header.extend(["排名变化", "数据状态", "最近同步"].iter().map(|h| h.to_string()));
    for (col, title) in header.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, title, &bold)?;
    }
    for (i, row) in view.rows.iter().enumerate() {
        let r = (i + 1) as u32;
        let s = &row.standing;
        let mut col: u16 = 0;
        let mut next = || {
            col += 1;
            col - 1
        };
        match s.district_rank {
            Some(rank) => sheet.write_number(r, next(), f64::from(rank))?,
            None => sheet.write_string(r, next(), "—")?,
        };
        match s.subdistrict_rank {
            Some(rank) => sheet.write_number(r, next(), f64::from(rank))?,
            None => sheet.write_string(r, next(), "—")?,
        };
        sheet.write_string(r, next(), &s.community)?;
        sheet.write_string(r, next(), &s.name)?;
        sheet.write_string(r, next(), &s.subdistrict_name)?;
        sheet.write_string(r, next(), s.kind.zh())?;
        sheet.write_number(r, next(), f64::from(s.stars))?;
        sheet.write_number(r, next(), f64::from(s.total) / 100.0)?;
        let kind = standard.kind(s.kind);
        for i in 0..5 {
            match s.star_scores.get(i) {
                Some(cell) => {
                    let name = kind.star(&cell.key).map(|st| st.zh.as_str()).unwrap_or(&cell.key);
                    sheet.write_string(r, next(), name)?;
                    sheet.write_number(r, next(), f64::from(cell.score) / 100.0)?;
                }
                None => {
                    next();
                    next();
                }
            }
        }
        match row.rank_change {
            Some(change) => sheet.write_number(r, next(), change as f64)?,
            None => sheet.write_string(r, next(), "")?,
        };
        sheet.write_string(
            r,
            next(),
            match s.freshness {
                Freshness::Current => "最新",
                Freshness::Stale => "数据过期",
                Freshness::NoData => "无数据",
            },
        )?;
        sheet.write_string(r, next(), s.last_sync_ms.map(local_time).unwrap_or_default())?;
    }
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofit();
    workbook.save_to_buffer()
}
