//! The clerk's language: Chinese by default, English on request.
//!
//! Every text a clerk reads is written here or beside its use as a pair
//! (`lang.pick("中文", "English")`), so the two stay side by side and neither is
//! forgotten. Parsing is forgiving the way a clerk types: star names in Chinese or
//! their keys, statuses in Chinese or English, dates as `2026-12-31` or `2026年12月31日`.

use chrono::NaiveDate;
use fivestar_core::scoring::format_points;
use fivestar_core::{EditError, KindStandard, Lack, TaskStatus, Verdict};

/// The language a face speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Simplified Chinese (zh-CN): the default.
    #[default]
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

    /// The language tag for HTML (`zh-CN`, `en`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// Reads `zh`, `zh-CN`, `cn`, `en`, `en-US`, ... (case-insensitive).
    pub fn parse(text: &str) -> Option<Lang> {
        let t = text.trim().to_ascii_lowercase();
        if t.starts_with("zh") || t == "cn" || t == "中文" {
            Some(Lang::Zh)
        } else if t.starts_with("en") || t == "english" {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The command line's language: `explicit` (the `--lang` flag, the FIVESTAR_LANG
    /// variable or `lang` in node.toml) when given, else Chinese on a Chinese system
    /// locale (`zh_CN.UTF-8`, as on the community office's PC) and English otherwise
    /// (a `C` locale is a server's or a script's).
    pub fn detect(explicit: Option<Lang>, locale: Option<&str>) -> Lang {
        if let Some(lang) = explicit {
            return lang;
        }
        match locale {
            Some(l) if l.trim().to_ascii_lowercase().starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        }
    }

    /// The language the environment asks for (FIVESTAR_LANG, else the locale), for
    /// messages given before the configuration is read.
    pub fn from_env() -> Lang {
        let explicit = std::env::var("FIVESTAR_LANG").ok().and_then(|l| Lang::parse(&l));
        Lang::detect(explicit, Lang::locale_from_env().as_deref())
    }

    /// The locale from the environment, as the C library reads it.
    pub fn locale_from_env() -> Option<String> {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.trim().is_empty())
    }
}

/// A task status in the clerk's words.
pub fn status(lang: Lang, status: TaskStatus) -> &'static str {
    match (lang, status) {
        (Lang::Zh, TaskStatus::Todo) => "未开始",
        (Lang::Zh, TaskStatus::Doing) => "进行中",
        (Lang::Zh, TaskStatus::Done) => "已完成",
        (Lang::Zh, TaskStatus::Blocked) => "受阻",
        (Lang::Zh, TaskStatus::Failed) => "未达成",
        (Lang::En, s) => s.as_str(),
    }
}

/// Reads a status as a clerk may type it: `done`, `完成`, `已完成`, `进行中`, ...;
/// the refusal is in Chinese.
pub fn parse_status(text: &str) -> Result<TaskStatus, String> {
    parse_status_in(Lang::Zh, text)
}

/// [`parse_status`], refusing in `lang`.
pub fn parse_status_in(lang: Lang, text: &str) -> Result<TaskStatus, String> {
    let t = text.trim();
    if let Ok(status) = t.to_ascii_lowercase().parse::<TaskStatus>() {
        return Ok(status);
    }
    let found = match t {
        "未开始" | "待办" | "待开始" => Some(TaskStatus::Todo),
        "进行中" | "进行" | "在办" => Some(TaskStatus::Doing),
        "已完成" | "完成" => Some(TaskStatus::Done),
        "受阻" | "阻塞" | "暂停" => Some(TaskStatus::Blocked),
        "未达成" | "失败" | "未完成" => Some(TaskStatus::Failed),
        _ => None,
    };
    found.ok_or_else(|| match lang {
        Lang::Zh => format!("状态“{t}”无法识别：请用 未开始、进行中、已完成、受阻、未达成"),
        Lang::En => format!(
            "unknown status {t:?}: use todo, doing, done, blocked or failed \
             (or 未开始, 进行中, 已完成, 受阻, 未达成)"
        ),
    })
}

/// Reads a date as `2026-12-31`, `2026/12/31`, `2026.12.31` or `2026年12月31日`;
/// the refusal is in Chinese.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    parse_date_in(Lang::Zh, text)
}

/// [`parse_date`], refusing in `lang`.
pub fn parse_date_in(lang: Lang, text: &str) -> Result<NaiveDate, String> {
    let t = text.trim();
    let normalized: String = t
        .trim_end_matches('日')
        .trim_end_matches('号')
        .chars()
        .map(|c| match c {
            '年' | '月' | '/' | '.' => '-',
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            c => c,
        })
        .collect();
    NaiveDate::parse_from_str(&normalized, "%Y-%m-%d").map_err(|_| match lang {
        Lang::Zh => format!("“{t}”不是日期：请写成 2026-12-31 或 2026年12月31日"),
        Lang::En => format!(
            "{t:?} is not a date: write it as YYYY-MM-DD, e.g. 2026-12-31 (or 2026年12月31日)"
        ),
    })
}

/// Finds a star by its key (`industry`), its Chinese name (`产业兴旺星`) or the
/// name without its last character (`产业兴旺`).
pub fn resolve_star(kind: &KindStandard, text: &str) -> Option<String> {
    let t = text.trim();
    kind.stars
        .iter()
        .find(|s| {
            s.key == t
                || s.zh == t
                || s.zh.strip_suffix('星') == Some(t)
                || s.key.eq_ignore_ascii_case(t)
        })
        .map(|s| s.key.clone())
}

/// A star's name for the clerk: its Chinese name, with the key in English.
pub fn star_name(lang: Lang, kind: &KindStandard, key: &str) -> String {
    match (kind.star(key), lang) {
        (Some(star), Lang::Zh) => star.zh.clone(),
        (Some(star), Lang::En) => format!("{} ({})", star.zh, star.key),
        (None, _) => format!("{key} (?)"),
    }
}

/// A review's verdict in words.
pub fn verdict(lang: Lang, verdict: &Verdict) -> String {
    match (lang, verdict) {
        (Lang::Zh, Verdict::Accepted { awarded: None }) => "已通过".into(),
        (Lang::Zh, Verdict::Accepted { awarded: Some(a) }) => format!("已通过，核定 {a} 分"),
        (Lang::Zh, Verdict::Rejected) => "已退回".into(),
        (Lang::Zh, Verdict::Reopened) => "已重新打开".into(),
        (Lang::En, Verdict::Accepted { awarded: None }) => "accepted".into(),
        (Lang::En, Verdict::Accepted { awarded: Some(a) }) => format!("accepted, {a} pts"),
        (Lang::En, Verdict::Rejected) => "rejected".into(),
        (Lang::En, Verdict::Reopened) => "reopened".into(),
    }
}

/// What a star still lacks, in plain words.
pub fn lack(
    lang: Lang,
    kind: &KindStandard,
    lack: &Lack,
    title_of: impl Fn(&str) -> String,
) -> String {
    match (lang, lack) {
        (Lang::Zh, Lack::Points { missing }) => {
            format!("距及格线还差 {} 分", format_points(*missing))
        }
        (Lang::En, Lack::Points { missing }) => {
            format!("{} more points to the pass mark", format_points(*missing))
        }
        (Lang::Zh, Lack::Veto { task, reason }) => format!(
            "一票否决任务“{}”{}",
            title_of(task),
            if reason == "rejected" { "被退回" } else { "未达成" }
        ),
        (Lang::En, Lack::Veto { task, reason }) => {
            format!("veto task \"{}\" is {reason}", title_of(task))
        }
        (Lang::Zh, Lack::Capstone { waiting_for }) => format!(
            "须先评上其他各星：{}",
            waiting_for.iter().map(|k| star_name(lang, kind, k)).collect::<Vec<_>>().join("、")
        ),
        (Lang::En, Lack::Capstone { waiting_for }) => format!(
            "needs every other star first: {}",
            waiting_for.iter().map(|k| star_name(lang, kind, k)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A field's name, as [`EditError`] and `changed_fields` name it.
pub fn field(lang: Lang, field: &str) -> String {
    let zh = match field {
        "title" => "名称",
        "star" => "所属星",
        "points" => "分值",
        "status" => "状态",
        "progress" => "进度",
        "owner" => "负责人",
        "due" => "截止日期",
        "notes" => "佐证记录",
        "note" => "佐证记录",
        "comment" => "意见",
        "veto" => "一票否决",
        other => other,
    };
    lang.pick(zh, field).to_string()
}

/// Why an edit was refused, in the clerk's words.
pub fn edit_error(lang: Lang, err: &EditError) -> String {
    if lang == Lang::En {
        return err.to_string();
    }
    match err {
        EditError::UnknownTask { id, .. } => format!("没有编号为 {id} 的任务"),
        EditError::DuplicateTask { id } => format!("编号 {id} 的任务已存在"),
        EditError::BadTaskId { id } => {
            format!("任务编号 {id:?} 须为 1 至 40 个小写字母、数字或“-”")
        }
        EditError::UnknownStar { star, known } => {
            format!("没有“{star}”这颗星；本社区的星为：{known}")
        }
        EditError::ProgressOutOfRange { value } => format!("进度 {value} 须在 0 至 100 之间"),
        EditError::PointsOutOfRange { value } => format!("分值 {value} 须在 1 至 100 之间"),
        EditError::AwardedTooHigh { awarded, points } => {
            format!("核定分 {awarded} 超过任务分值 {points}")
        }
        EditError::BadText { field: f, problem } => {
            let what =
                if problem.contains("empty") { "不能为空" } else { "不能超过 2000 字" };
            format!("{}{what}", field(lang, f))
        }
        EditError::Unreadable { id, problems } => {
            format!("任务 {id} 的记录有损坏，无法读取：{problems}")
        }
        EditError::StandardOwned { field: f, .. } => {
            format!("这是区里标准规定的任务，{}由标准确定，社区不能修改", field(lang, f))
        }
        EditError::Locked { field: f, .. } => format!(
            "这项任务已由区里审核通过，{}已锁定；如需修改，请联系区里重新打开",
            field(lang, f)
        ),
        EditError::ReservedId { id } => format!("编号 {id} 为标准模板任务保留"),
        EditError::NotDone { status: s, progress, .. } => format!(
            "任务为“{}”，进度 {progress}%，尚未完成：通过它需要明确的特批",
            status(lang, *s)
        ),
        EditError::CommentRequired { .. } => "退回或重新打开须写明理由".into(),
        EditError::NothingToReopen { .. } => "这项任务没有可重新打开的审核结论".into(),
        EditError::UnknownNote { number, .. } => format!("没有第 {number} 条佐证记录"),
        EditError::AlreadyWithdrawn { number, .. } => format!("第 {number} 条佐证记录已撤回"),
        EditError::BadFile { problem } => format!("附件不合要求：{problem}"),
        EditError::NoConflict { field: f, .. } => {
            format!("{}没有可选择的不同取值（可能已由他人选定）", field(lang, f))
        }
        EditError::Automerge(detail) => format!("记录拒绝了这次修改：{detail}"),
    }
}

/// "3 天前"-style age of `seconds`.
pub fn age(lang: Lang, seconds: i64) -> String {
    let s = seconds.max(0);
    match lang {
        Lang::Zh => match s {
            s if s < 120 => format!("{s} 秒"),
            s if s < 7200 => format!("{} 分钟", s / 60),
            s if s < 172_800 => format!("{} 小时", s / 3600),
            s => format!("{} 天", s / 86_400),
        },
        Lang::En => match s {
            s if s < 120 => format!("{s} s"),
            s if s < 7200 => format!("{} min", s / 60),
            s if s < 172_800 => format!("{} h", s / 3600),
            s => format!("{} days", s / 86_400),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fivestar_core::{Kind, Standard};

    #[test]
    fn dates_are_read_in_the_forms_clerks_write_them() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        for text in ["2026-12-31", "2026年12月31日", "2026/12/31", "2026.12.31", " 2026年12月31号 "]
        {
            assert_eq!(parse_date(text), Ok(day), "{text}");
        }
        assert!(parse_date("2026年13月1日").unwrap_err().contains("不是日期"));
        assert!(parse_date("明天").is_err());
    }

    #[test]
    fn statuses_are_read_in_chinese_and_english() {
        assert_eq!(parse_status("完成"), Ok(TaskStatus::Done));
        assert_eq!(parse_status("已完成"), Ok(TaskStatus::Done));
        assert_eq!(parse_status("DONE"), Ok(TaskStatus::Done));
        assert_eq!(parse_status("进行中"), Ok(TaskStatus::Doing));
        assert_eq!(parse_status("未达成"), Ok(TaskStatus::Failed));
        assert!(parse_status("差不多").unwrap_err().contains("无法识别"));
        for s in TaskStatus::ALL {
            assert_eq!(parse_status(status(Lang::Zh, s)), Ok(s), "the label reads back");
        }
    }

    #[test]
    fn stars_are_found_by_key_or_chinese_name() {
        let standard = Standard::sample();
        let kind = standard.kind(Kind::Agricultural);
        let star = &kind.stars[0];
        assert_eq!(resolve_star(kind, &star.key), Some(star.key.clone()));
        assert_eq!(resolve_star(kind, &star.zh), Some(star.key.clone()));
        assert_eq!(resolve_star(kind, star.zh.trim_end_matches('星')), Some(star.key.clone()));
        assert_eq!(resolve_star(kind, "不存在星"), None);
    }

    #[test]
    fn the_locale_picks_the_language_and_a_flag_overrides_it() {
        assert_eq!(Lang::detect(None, Some("zh_CN.UTF-8")), Lang::Zh);
        assert_eq!(Lang::detect(None, Some("en_US.UTF-8")), Lang::En);
        assert_eq!(Lang::detect(None, None), Lang::En);
        assert_eq!(Lang::detect(None, Some("C.UTF-8")), Lang::En);
        assert_eq!(Lang::detect(Some(Lang::En), Some("zh_CN.UTF-8")), Lang::En);
        assert_eq!(Lang::parse("zh-CN"), Some(Lang::Zh));
        assert_eq!(Lang::parse("fr"), None);
    }
}
