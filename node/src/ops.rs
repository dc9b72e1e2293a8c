//! The node's operations, shared by its two faces: the command line ([`crate::cli`])
//! and the clerks' web pages ([`crate::web`]).
//!
//! Each operation takes the node's [`Context`] (configuration and standard), its
//! [`Store`] and who is at work, does one thing in one durable transaction, and
//! returns data; the faces parse their input, call it, and render the result or
//! the [`Fault`] in the clerk's language. A rule or a message lives here once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use fivestar_core::document::{Conflict, HistoryEntry, NewTask};
use fivestar_core::media;
use fivestar_core::{
    CommunityDoc, CommunityScore, EditError, KindStandard, Policy, Problem, Stamp, Standard, Task,
    TaskEdit, TaskStatus, score,
};
use serde::Serialize;

use crate::config::{ConfigError, DATABASE_FILE, NodeConfig};
use crate::i18n::{self, Lang};
use crate::store::{DocStoreError, Pending, Store, StoreError, SyncAttempt};

/// Why an operation did nothing: what is wrong and how to fix it, in either language.
#[derive(Debug)]
pub enum Fault {
    /// The edit breaks a rule of the document.
    Edit(EditError),
    /// The database failed or refused.
    Store(StoreError),
    /// The configuration cannot be used.
    Config(ConfigError),
    /// Anything else, said in both languages.
    Said {
        /// The field it is about, for a form.
        field: Option<&'static str>,
        /// Chinese.
        zh: String,
        /// English.
        en: String,
        /// How to fix it: Chinese and English.
        hint: Option<(String, String)>,
    },
}

impl Fault {
    /// A fault said in both languages.
    pub fn said(zh: impl Into<String>, en: impl Into<String>) -> Fault {
        Fault::Said { field: None, zh: zh.into(), en: en.into(), hint: None }
    }

    /// The same fault, about one field of a form.
    pub fn on(mut self, name: &'static str) -> Fault {
        if let Fault::Said { field, .. } = &mut self {
            *field = Some(name);
        }
        self
    }

    /// The same fault, with a hint in both languages.
    pub fn hint(mut self, zh: impl Into<String>, en: impl Into<String>) -> Fault {
        if let Fault::Said { hint, .. } = &mut self {
            *hint = Some((zh.into(), en.into()));
        }
        self
    }

    /// The form field this fault is about, when it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Fault::Said { field, .. } => *field,
            Fault::Edit(err) => match err {
                EditError::UnknownStar { .. } => Some("star"),
                EditError::ProgressOutOfRange { .. } => Some("progress"),
                EditError::PointsOutOfRange { .. } => Some("points"),
                EditError::BadText { field, .. } => Some(field),
                EditError::StandardOwned { field, .. } | EditError::Locked { field, .. } => {
                    Some(field)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// What is wrong.
    pub fn message(&self, lang: Lang) -> String {
        match self {
            Fault::Edit(err) => i18n::edit_error(lang, err),
            Fault::Said { zh, en, .. } => lang.pick(zh, en).to_string(),
            Fault::Store(err) => match (lang, err) {
                (Lang::Zh, StoreError::Refused(refusal)) => {
                    format!("区里的规则不允许这次修改，所以没有保存：{refusal}")
                }
                (Lang::Zh, StoreError::Store(DocStoreError::Sqlite { source, .. }))
                    if source.to_string().contains("readonly") =>
                {
                    format!("没有写入本机数据库的权限（{}）", source)
                }
                (Lang::Zh, StoreError::Store(DocStoreError::Sqlite { source, .. }))
                    if source.to_string().contains("locked")
                        || source.to_string().contains("busy") =>
                {
                    "数据库正忙，请稍后再试".to_string()
                }
                (Lang::Zh, other) => format!("本机数据库出错：{other}"),
                (Lang::En, other) => other.to_string(),
            },
            Fault::Config(err) => match (lang, err) {
                (Lang::Zh, ConfigError::NotInitialized { data_dir }) => {
                    format!("{} 中还没有设置社区节点", data_dir.display())
                }
                (Lang::Zh, other) => format!("配置文件无法使用：{other}"),
                (Lang::En, other) => other.to_string(),
            },
        }
    }

    /// How to fix it, when there is something to say.
    pub fn hint_text(&self, lang: Lang) -> Option<String> {
        let pair: (&str, &str) = match self {
            Fault::Said { hint, .. } => {
                return hint.as_ref().map(|(zh, en)| lang.pick(zh, en).to_string());
            }
            Fault::Edit(err) => match err {
                EditError::UnknownTask { .. } => (
                    "任务列表里有每项任务的编号（fivestar-node task list）",
                    "`fivestar-node task list` shows every task and its id",
                ),
                EditError::Locked { .. } => (
                    "请联系区里重新打开这项任务；佐证记录、负责人和截止日期仍可修改",
                    "ask the district to reopen the task; evidence notes, owner and due date can still be changed",
                ),
                EditError::StandardOwned { .. } => (
                    "这项由区里的标准确定；其他工作可以新增本社区自己的任务",
                    "the district's standard sets it; add a task of your own (`task add`) for other work",
                ),
                EditError::UnknownNote { .. } => {
                    ("任务详情里为佐证记录编了号", "`fivestar-node task show ID` numbers the notes")
                }
                _ => return None,
            },
            Fault::Store(err) => match err {
                StoreError::Store(
                    DocStoreError::NotADatabase { .. } | DocStoreError::CorruptDocument { .. },
                ) => (
                    "请用备份恢复 node.db；没有备份时，把该文件移走后重新运行 fivestar-node init（区里已确认收到的修改都在）",
                    "restore node.db from a backup; if there is none, move the file away and run \
                     `fivestar-node init` again (the hub has every change it acknowledged)",
                ),
                StoreError::Store(DocStoreError::Foreign { .. })
                | StoreError::WrongCommunity { .. } => (
                    "请检查 --data-dir（或 FIVESTAR_NODE_DIR）：它指向了别的文件夹",
                    "check --data-dir (or FIVESTAR_NODE_DIR): it points at the wrong folder",
                ),
                StoreError::Store(DocStoreError::TooNew { .. }) => (
                    "请安装写入该文件的新版 fivestar-node",
                    "install the newer fivestar-node that wrote this file",
                ),
                StoreError::Store(DocStoreError::Sqlite { source, .. })
                    if source.to_string().contains("readonly") =>
                {
                    (
                        "请以节点的用户运行，或请管理员把您加入节点的用户组（见 deploy/systemd/fivestar-node.service）",
                        "this user may not write the node's database: run as the node's user, or ask \
                         the administrator to add you to its group (see deploy/systemd/fivestar-node.service)",
                    )
                }
                StoreError::Store(DocStoreError::Sqlite { .. } | DocStoreError::Stopped) => (
                    "请检查磁盘是否已满、文件夹是否可写",
                    "check that the disk is not full and the folder is writable",
                ),
                StoreError::Refused(_) | StoreError::Store(DocStoreError::Panicked) => (
                    "什么都没有保存；请把您的操作和这条消息告诉区里的运维人员",
                    "nothing was saved; please tell the district's operators what you tried, with \
                     this message",
                ),
            },
            Fault::Config(err) => match err {
                ConfigError::NotInitialized { .. } => (
                    "请先运行 fivestar-node init --community <社区编号>，或用 --data-dir（或 FIVESTAR_NODE_DIR）指向已有节点的文件夹",
                    "run `fivestar-node init --community <id>` first, or point --data-dir \
                     (or FIVESTAR_NODE_DIR) at the folder of an existing node",
                ),
                ConfigError::Read { .. } => ("请检查文件的权限", "check the file's permissions"),
                ConfigError::Invalid { .. } => (
                    "请手工修正该文件；deploy/node.example.toml 解释了每一项",
                    "fix the file by hand; deploy/node.example.toml explains every field",
                ),
            },
        };
        Some(lang.pick(pair.0, pair.1).to_string())
    }
}

impl From<EditError> for Fault {
    fn from(err: EditError) -> Fault {
        Fault::Edit(err)
    }
}

impl From<StoreError> for Fault {
    fn from(err: StoreError) -> Fault {
        Fault::Store(err)
    }
}

impl From<DocStoreError> for Fault {
    fn from(err: DocStoreError) -> Fault {
        Fault::Store(StoreError::Store(err))
    }
}

impl From<ConfigError> for Fault {
    fn from(err: ConfigError) -> Fault {
        Fault::Config(err)
    }
}

/// What an operation needs besides the store: the configuration and the standard in
/// force (the district's once synced, else the local one).
#[derive(Debug, Clone)]
pub struct Context {
    /// The node's configuration (kind and name as the district's registry says).
    pub config: NodeConfig,
    /// The standard in force.
    pub standard: Standard,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl Context {
    /// The stars and template of this community's kind.
    pub fn kind(&self) -> &KindStandard {
        self.standard.kind(self.config.kind)
    }

    /// The language configured in node.toml, if one is.
    pub fn configured_lang(&self) -> Option<Lang> {
        Lang::parse(&self.config.ui.lang)
    }
}

/// Who is at work: a named clerk, or the device alone (a script, the daemon).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// The clerk's name, from the node's staff list.
    pub clerk: Option<String>,
}

impl Who {
    /// The stamp of a change made now: the clerk and the device (`李红 · d1`), or
    /// the device alone (`device d1`).
    pub fn stamp(&self, ctx: &Context) -> Stamp {
        let by = match &self.clerk {
            Some(name) => format!("{name} · {}", ctx.config.device),
            None => format!("device {}", ctx.config.device),
        };
        Stamp { by, at_ms: Utc::now().timestamp_millis() }
    }
}

/// Reads a file the node needs.
pub fn read_file(path: &Path, zh: &str, en: &str) -> Result<String, Fault> {
    std::fs::read_to_string(path).map_err(|err| {
        Fault::said(
            format!("无法读取{zh}文件 {}：{err}", path.display()),
            format!("cannot read the {en} file {}: {err}", path.display()),
        )
    })
}

/// Opens the node in `data_dir`: its configuration, the standard in force, and its
/// store with the district's write rules set.
pub fn open(data_dir: &Path) -> Result<(Context, Store), Fault> {
    let config = NodeConfig::load(data_dir)?;
    let standard_path = NodeConfig::resolve(data_dir, &config.standard);
    let standard =
        Standard::from_toml(&read_file(&standard_path, "标准", "standard")?).map_err(|err| {
            Fault::said(
                format!("{}：{err}", standard_path.display()),
                format!("{}: {err}", standard_path.display()),
            )
            .hint(
                "请修正该文件，或用有效的标准文件覆盖它",
                "fix the file, or copy a valid standard over it",
            )
        })?;
    let db_path = data_dir.join(DATABASE_FILE);
    if !db_path.exists() {
        return Err(Fault::said(
            format!("{} 不存在", db_path.display()),
            format!("{} is missing", db_path.display()),
        )
        .hint(
            "请从备份恢复它，或把文件夹移走后重新运行 init",
            "restore it from a backup, or move the folder away and run init again",
        ));
    }
    let mut store = Store::open(&db_path, &config.community)?;
    let mut config = config;
    let local_standard = standard.clone();
    let mut standard = standard;
    // Once synced, the district's own standard and registry entry win: they are the
    // newest the node has, and they stay in force offline.
    if let Some(district) = store.read_district()? {
        if let Some(Ok(published)) = fivestar_core::district::standard(&district) {
            standard = published;
        }
        if let Some(Ok(registry)) = fivestar_core::district::registry(&district)
            && let Some(entry) = registry.community(&config.community)
        {
            config.kind = entry.kind;
            config.community_name = entry.name.clone();
        }
    }
    // The district's write rules, checked before every edit is saved: the hub checks
    // the same, so nothing this node saves is refused there.
    let mut policy = Policy::new(&config.community, standard.kind(config.kind)).map_err(|e| {
        Fault::said(format!("标准无法使用：{e}"), format!("the standard cannot be used: {e}"))
    })?;
    policy.add_edition(local_standard.kind(config.kind)).map_err(|e| {
        Fault::said(format!("标准无法使用：{e}"), format!("the standard cannot be used: {e}"))
    })?;
    store.set_policy(policy);
    Ok((Context { config, standard, data_dir: data_dir.to_path_buf() }, store))
}

/// Runs an edit in one durable transaction; `Err` means nothing was written.
pub fn write<T>(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    edit: impl FnOnce(&mut CommunityDoc, &KindStandard, &Stamp) -> Result<T, Fault>,
) -> Result<T, Fault> {
    let stamp = who.stamp(ctx);
    let kind = ctx.kind();
    store.write(stamp.at_ms, |doc| edit(doc, kind, &stamp))?
}

/// Finds a task by exact id or by a unique beginning of one.
pub fn resolve_id(doc: &CommunityDoc, given: &str) -> Result<String, Fault> {
    let ids = doc.task_ids();
    if ids.iter().any(|id| id == given) {
        return Ok(given.to_string());
    }
    let matches: Vec<&String> = ids.iter().filter(|id| id.starts_with(given)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(EditError::UnknownTask {
            community: doc.community_id().to_string(),
            id: given.to_string(),
        }
        .into()),
        many => {
            let list = many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            Err(Fault::said(
                format!("“{given}”是 {} 个任务编号的开头：{list}", many.len()),
                format!("{given:?} is the beginning of {} task ids: {list}", many.len()),
            )
            .hint("请多输入几个字符", "type more of the id"))
        }
    }
}

/// A new task as a face collected it.
#[derive(Debug, Clone, Default)]
pub struct TaskForm {
    /// The star: key or Chinese name.
    pub star: String,
    /// What must be done.
    pub title: String,
    /// Points, 1..=100.
    pub points: u32,
    /// Who is responsible.
    pub owner: String,
    /// Deadline.
    pub due: Option<NaiveDate>,
    /// A first evidence note.
    pub note: Option<String>,
}

/// Adds a task of the community's own; returns it.
pub fn add_task(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    form: TaskForm,
) -> Result<Task, Fault> {
    let star = star_key(ctx, &form.star)?;
    let id = format!("t-{:08x}", rand::random::<u32>());
    let new = NewTask {
        id: id.clone(),
        star,
        title: form.title.trim().to_string(),
        points: form.points,
        owner: form.owner.trim().to_string(),
        due: form.due,
        note: form.note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
    };
    write(ctx, store, who, |doc, kind, stamp| {
        doc.add_task(kind, new, stamp)?;
        Ok(doc.task(&id)?)
    })
}

/// The key of a star named by key or Chinese name.
pub fn star_key(ctx: &Context, given: &str) -> Result<String, Fault> {
    i18n::resolve_star(ctx.kind(), given).ok_or_else(|| {
        let stars = &ctx.kind().stars;
        let zh = stars.iter().map(|s| format!("{}（{}）", s.zh, s.key)).collect::<Vec<_>>();
        let en = stars.iter().map(|s| format!("{} ({})", s.key, s.zh)).collect::<Vec<_>>();
        Fault::said(
            format!("没有“{given}”这颗星；本社区的星为：{}", zh.join("、")),
            format!("unknown star {given:?}: this community's stars are {}", en.join(", ")),
        )
        .on("star")
    })
}

/// Changes fields of a task; returns it as it now stands.
pub fn edit(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    id: &str,
    edit: TaskEdit,
) -> Result<Task, Fault> {
    let mut edit = edit;
    if let Some(star) = &edit.star {
        edit.star = Some(star_key(ctx, star)?);
    }
    write(ctx, store, who, |doc, kind, stamp| {
        let id = resolve_id(doc, id)?;
        doc.edit_task(kind, &id, &edit, stamp)?;
        Ok(doc.task(&id)?)
    })
}

/// Marks a task failed, with an optional note saying what happened.
pub fn fail(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    id: &str,
    note: Option<&str>,
) -> Result<Task, Fault> {
    write(ctx, store, who, |doc, kind, stamp| {
        let id = resolve_id(doc, id)?;
        let failed = TaskEdit { status: Some(TaskStatus::Failed), ..TaskEdit::default() };
        doc.edit_task(kind, &id, &failed, stamp)?;
        if let Some(note) = note.map(str::trim).filter(|n| !n.is_empty()) {
            doc.add_note(&id, note, stamp)?;
        }
        Ok(doc.task(&id)?)
    })
}

/// Adds an evidence note.
pub fn note(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    id: &str,
    text: &str,
) -> Result<Task, Fault> {
    write(ctx, store, who, |doc, _, stamp| {
        let id = resolve_id(doc, id)?;
        doc.add_note(&id, text.trim(), stamp)?;
        Ok(doc.task(&id)?)
    })
}

/// A size in MB with one decimal under 10 (`4.5 MB`, `20 MB`).
pub fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb < 10.0 { format!("{mb:.1} MB") } else { format!("{mb:.0} MB") }
}

/// What a file is, from its first bytes and its name: one of the types evidence may
/// be, or `None`.
pub fn file_type(bytes: &[u8], name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() > 12
        && &bytes[4..8] == b"ftyp"
        && matches!(&bytes[8..12], b"heic" | b"heix" | b"mif1" | b"msf1")
    {
        Some("image/heic")
    } else if bytes.starts_with(b"%PDF") {
        Some("application/pdf")
    } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        match ext.as_str() {
            "doc" => Some("application/msword"),
            "xls" => Some("application/vnd.ms-excel"),
            "ppt" => Some("application/vnd.ms-powerpoint"),
            _ => None,
        }
    } else if bytes.starts_with(b"PK\x03\x04") {
        match ext.as_str() {
            "docx" => {
                Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
            }
            "xlsx" => Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            "pptx" => {
                Some("application/vnd.openxmlformats-officedocument.presentationml.presentation")
            }
            _ => None,
        }
    } else {
        None
    }
}

/// Attaches a file to a task as an evidence note: the note and the file's bytes are
/// saved in one transaction; the file goes to the district at the next sync. A photo
/// longer than `[files] photo_max_side` is made that size first, and gets a preview
/// for lists. A photo that cannot be decoded is kept as it is, without a preview
/// (it is still evidence; the reviewer opens it).
pub fn attach(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    id: &str,
    name: &str,
    bytes: &[u8],
    caption: &str,
) -> Result<Task, Fault> {
    use sha2::Digest as _;
    let name = name.rsplit(['/', '\\']).next().unwrap_or(name).trim().to_string();
    if bytes.is_empty() {
        return Err(Fault::said(
            format!("文件“{name}”是空的"),
            format!("the file {name:?} is empty"),
        )
        .on("file"));
    }
    let limit = ctx.config.files.max_bytes;
    if bytes.len() as u64 > limit {
        return Err(Fault::said(
            format!(
                "文件“{name}”有 {}，超过了 {} 的上限",
                megabytes(bytes.len() as u64),
                megabytes(limit)
            ),
            format!(
                "the file {name:?} is {}, over the limit of {}",
                megabytes(bytes.len() as u64),
                megabytes(limit)
            ),
        )
        .on("file"));
    }
    let mime = file_type(bytes, &name).ok_or_else(|| {
        Fault::said(
            format!("“{name}”不是可以附加的文件：只能附加照片（JPEG、PNG、HEIC）、PDF 和 Office 文档"),
            format!("{name:?} cannot be attached: only photos (JPEG, PNG, HEIC), PDF and Office documents"),
        )
        .on("file")
    })?;
    let shrunk = match media::shrink(bytes, mime, ctx.config.files.photo_max_side) {
        Ok(shrunk) => shrunk,
        Err(err) => {
            tracing::warn!(file = %name, error = %err, "photo kept as it is");
            None
        }
    };
    let bytes = shrunk.as_deref().unwrap_or(bytes);
    let thumb = if media::decodable(mime) {
        media::thumbnail(bytes, mime)
            .map_err(|err| tracing::warn!(file = %name, error = %err, "no preview"))
            .ok()
    } else {
        None
    };
    let file = fivestar_core::FileRef {
        hash: hex::encode(sha2::Sha256::digest(bytes)),
        name: name.clone(),
        mime: mime.to_string(),
        size: bytes.len() as u64,
    };
    let stamp = who.stamp(ctx);
    let caption = caption.trim().to_string();
    let task = store.write_with_file(
        stamp.at_ms,
        &file,
        bytes,
        thumb.as_deref(),
        |doc| -> Result<Task, Fault> {
            let id = resolve_id(doc, id)?;
            doc.add_file_note(&id, &caption, &file, &stamp)?;
            Ok(doc.task(&id)?)
        },
    )??;
    Ok(task)
}

/// Withdraws evidence note `number` (1-based).
pub fn withdraw(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    id: &str,
    number: usize,
) -> Result<Task, Fault> {
    write(ctx, store, who, |doc, _, stamp| {
        let id = resolve_id(doc, id)?;
        doc.withdraw_note(&id, number, stamp)?;
        Ok(doc.task(&id)?)
    })
}

/// Settles a field that devices set differently while apart with the clerk's choice.
pub fn settle(
    ctx: &Context,
    store: &mut Store,
    who: &Who,
    id: &str,
    field: &str,
    value: &str,
) -> Result<Task, Fault> {
    write(ctx, store, who, |doc, kind, stamp| {
        let id = resolve_id(doc, id)?;
        doc.settle(kind, &id, field, value, stamp)?;
        Ok(doc.task(&id)?)
    })
}

/// Creates the template tasks of the community's kind; returns the ids created.
pub fn template_apply(ctx: &Context, store: &mut Store, who: &Who) -> Result<Vec<String>, Fault> {
    write(ctx, store, who, |doc, kind, _| Ok(doc.apply_template(kind)?))
}

/// Every task that can be read, and the problems of those that cannot (a damaged
/// record: only changes this program would refuse to make can do that).
pub fn tasks(store: &mut Store) -> Result<(Vec<Task>, Vec<Problem>), Fault> {
    Ok(store.read()?.read())
}

/// One task, by id or a unique beginning of one, with the fields that devices set
/// differently while apart.
pub fn task(store: &mut Store, id: &str) -> Result<(Task, Vec<Conflict>), Fault> {
    let doc = store.read()?;
    let id = resolve_id(&doc, id)?;
    Ok((doc.task(&id)?, doc.conflicts(&id)?))
}

/// The community's score.
pub fn community_score(ctx: &Context, tasks: &[Task]) -> CommunityScore {
    score(ctx.kind(), tasks)
}

/// One change of the history, with when it came from the district if it did.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The change.
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// When it was received from the hub; `None` for this device's own.
    pub received_ms: Option<i64>,
}

/// The history of the community, or of one task.
pub fn history(store: &mut Store, task: Option<&str>) -> Result<Vec<Change>, Fault> {
    let doc = store.read()?;
    let task = match task {
        Some(id) => Some(resolve_id(&doc, id)?),
        None => None,
    };
    let received: HashMap<String, i64> = store.received(&store.identity().doc_id())?;
    Ok(doc
        .history(task.as_deref())
        .into_iter()
        .map(|entry| {
            let received_ms = received.get(&entry.hash).copied();
            Change { entry, received_ms }
        })
        .collect())
}

/// The node's sync state, for `status` and the pages' banner.
#[derive(Debug, Clone, Serialize)]
pub struct SyncView {
    /// This device's changes not yet acknowledged by the hub.
    pub pending: Pending,
    /// The newest sync attempt.
    pub last_attempt: Option<SyncAttempt>,
    /// The newest successful sync, Unix ms.
    pub last_success_ms: Option<i64>,
    /// The newest error, Unix ms and text.
    pub last_error: Option<(i64, String)>,
    /// Evidence files not yet whole at the hub: how many, and their bytes.
    pub files_waiting: (usize, u64),
}

impl SyncView {
    /// True when every change saved here is acknowledged by the district.
    pub fn all_saved_at_district(&self) -> bool {
        self.pending.changes == 0 && self.files_waiting.0 == 0
    }
}

/// The node's sync state.
pub fn sync_view(store: &mut Store) -> Result<SyncView, Fault> {
    Ok(SyncView {
        pending: store.pending()?,
        last_attempt: store.last_sync_attempt()?,
        last_success_ms: store.last_successful_sync()?,
        last_error: store.last_sync_error()?,
        files_waiting: {
            let files = store.files_waiting()?;
            (files.len(), files.iter().map(|(_, size)| size).sum())
        },
    })
}

/// A sync error in plain words for a clerk (the stored text is the operator's).
pub fn sync_error_words(lang: Lang, error: &str) -> String {
    let e = error.to_ascii_lowercase();
    let zh = if e.contains("revoked") {
        "本机的证书已被区里吊销，无法同步；请联系区里的运维人员"
    } else if e.contains("certificate") || e.contains("tls") {
        "本机证书有问题，区里无法确认本机身份；请联系区里的运维人员"
    } else if e.contains("refused") && !e.contains("connection refused") {
        "区里拒绝了本机的修改；请把这条消息告诉区里的运维人员"
    } else if e.contains("busy") {
        "区里的服务器正忙，稍后会自动重试"
    } else {
        "连不上区里（网络断开或区里的服务器未运行）；修改都已保存在本机，联网后会自动同步"
    };
    match lang {
        Lang::Zh => zh.to_string(),
        Lang::En => error.to_string(),
    }
}

/// Hashes a clerk's PIN (argon2id, salted).
pub fn hash_pin(pin: &str) -> Result<String, Fault> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| {
        Fault::said(format!("无法保存密码：{e}"), format!("cannot store the PIN: {e}"))
    })?;
    argon2::Argon2::default().hash_password(pin.as_bytes(), &salt).map(|h| h.to_string()).map_err(
        |e| Fault::said(format!("无法保存密码：{e}"), format!("cannot store the PIN: {e}")),
    )
}

/// Checks a PIN against its stored hash.
pub fn pin_matches(pin: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|parsed| argon2::Argon2::default().verify_password(pin.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// Adds a member of staff (a name the clerks pick at the start of work).
pub fn add_staff(store: &mut Store, name: &str, pin: Option<&str>) -> Result<(), Fault> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(
            Fault::said("姓名须为 1 至 40 个字", "a name must be 1 to 40 characters").on("name")
        );
    }
    if name.contains('·') {
        return Err(Fault::said("姓名中不能有“·”", "a name may not contain '·'").on("name"));
    }
    let pin_hash = match pin.map(str::trim).filter(|p| !p.is_empty()) {
        Some(pin) if pin.len() < 4 || !pin.chars().all(|c| c.is_ascii_digit()) => {
            return Err(
                Fault::said("PIN 须为至少 4 位数字", "a PIN must be at least 4 digits").on("pin")
            );
        }
        Some(pin) => Some(hash_pin(pin)?),
        None => None,
    };
    if !store.add_staff(name, pin_hash.as_deref(), Utc::now().timestamp_millis())? {
        return Err(Fault::said(
            format!("“{name}”已在名单中"),
            format!("{name:?} is on the list already"),
        )
        .on("name"));
    }
    Ok(())
}

/// Checks that `name` is on the staff list and `pin` is theirs (when they have one).
pub fn check_clerk(store: &mut Store, name: &str, pin: &str) -> Result<Who, Fault> {
    match store.staff_pin(name)? {
        None => Err(Fault::said(
            format!("“{name}”不在本社区的名单中"),
            format!("{name:?} is not on the staff list"),
        )
        .on("name")),
        Some(Some(hash)) if !pin_matches(pin, &hash) => {
            Err(Fault::said("PIN 不对，请重新输入", "wrong PIN, please try again").on("pin"))
        }
        Some(_) => Ok(Who { clerk: Some(name.to_string()) }),
    }
}
