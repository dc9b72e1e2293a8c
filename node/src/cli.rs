//! `fivestar-node`: the command line community staff use every day.
//!
//! Every command reads the configuration of the data directory, opens the store,
//! does one thing and says what it did. Commands that change something print
//! `Saved` only after the change is committed to disk. Every mistake comes back as
//! a [`CliError`]: what is wrong, and a hint of how to fix it.

/// Prints a line to standard output; when the reader has gone away (a closed pipe,
/// as with `| head`), stops quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(err) = writeln!(stdout, $($arg)*) {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use fivestar_core::scoring::format_points;
use fivestar_core::standard::{SAMPLE_STANDARD_TOML, is_key};
use fivestar_core::{
    KindStandard, Registry, Standard, Task, TaskEdit, TaskStatus, earned_hundredths,
};
use serde_json::json;

use crate::config::{DATABASE_FILE, NodeConfig, STANDARD_FILE, TlsPaths};
use crate::i18n::{self, Lang};
use crate::ops::{self, Context, Fault, Who};
use crate::store::Store;
use fivestar_store::StoreThread;

/// The command line of `fivestar-node`.
#[derive(Debug, Parser)]
#[command(
    name = "fivestar-node",
    version,
    about = "A community's node for the Five-Star Party Branch campaign: record tasks, \
             progress and evidence, offline or online.",
    after_help = "Start with `fivestar-node init --community <id>`, then \
                  `fivestar-node template apply` and `fivestar-node task list`."
)]
pub struct Cli {
    /// The node's data directory (configuration, database, standard).
    /// Default: the FIVESTAR_NODE_DIR variable, else fivestar-node in your data folder.
    #[arg(long, global = true, env = "FIVESTAR_NODE_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write `run`'s logs as JSON lines instead of readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Language of messages: zh (中文) or en. Default: `lang` in node.toml, else the
    /// system's (Chinese on a Chinese locale).
    #[arg(long, global = true, env = "FIVESTAR_LANG", value_name = "zh|en")]
    pub lang: Option<String>,
    /// The clerk at work, from the staff list (`staff list`): recorded with every
    /// change. Without it, changes are the device's.
    #[arg(long, global = true, env = "FIVESTAR_CLERK", value_name = "NAME")]
    pub clerk: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up this node for a community (run once).
    Init(InitArgs),
    /// Record and change the community's tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Create the standard's template tasks for this community.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// The community's own scores: per star, stars earned, and what each star lacks.
    Score(JsonArg),
    /// Who changed what, when, from which device.
    History {
        /// Only the changes of this task.
        task: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// This node's state: unsynced changes, last sync attempt, last error.
    Status(JsonArg),
    /// Sync with the hub once and say what moved.
    Sync(JsonArg),
    /// The community's staff, picked by name at the start of work (`--clerk`, and the
    /// workbench's sign-in).
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Serve the clerks' workbench (web pages, in Chinese) without syncing, until
    /// Ctrl-C. `run` serves it too, beside syncing.
    Ui(UiArgs),
    /// Keep syncing with the hub until Ctrl-C: after every edit, on pushes from the
    /// hub, and on a heartbeat; reconnects with backoff when the link is down. Serves
    /// the clerks' workbench as well (`[ui] listen` in node.toml).
    Run,
}

#[derive(Debug, Args)]
struct UiArgs {
    /// Where to serve the pages (default: `[ui] listen` in node.toml, 127.0.0.1:8690).
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<String>,
    /// Open the pages in the desktop's browser.
    #[arg(long)]
    open: bool,
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Add a member of staff.
    Add {
        /// Their name as colleagues know it, e.g. 李红.
        name: String,
        /// A PIN of at least 4 digits asked at the workbench's sign-in (optional).
        #[arg(long)]
        pin: Option<String>,
    },
    /// Take someone off the list (what they recorded stays theirs).
    Remove {
        /// Their name.
        name: String,
    },
    /// Show the list.
    List,
}

#[derive(Debug, Args)]
struct JsonArg {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The community's id in the district registry, e.g. fangou.
    #[arg(long, value_name = "ID")]
    community: String,
    /// This device's name, as on its certificate (a-z, 0-9, '-').
    #[arg(long, default_value = "d1", value_name = "NAME")]
    device: String,
    /// The district hub's address.
    #[arg(long, default_value = "https://127.0.0.1:7443", value_name = "URL")]
    hub: String,
    /// The standard to use until the hub sends one (default: the shipped sample).
    #[arg(long, value_name = "FILE")]
    standard: Option<PathBuf>,
    /// The district registry to look the community up in (default: the shipped sample).
    #[arg(long, value_name = "FILE")]
    registry: Option<PathBuf>,
    /// The district CA certificate (default: certs/ca.pem in the data directory).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// This device's certificate (default: certs/device.pem in the data directory).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// This device's private key (default: certs/device.key in the data directory).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Add a task of the community's own.
    Add {
        /// The star it counts for: its key or its Chinese name (see `fivestar-node score`).
        #[arg(long)]
        star: String,
        /// What must be done.
        #[arg(long)]
        title: String,
        /// Points it is worth, 1 to 100.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        points: u32,
        /// Who is responsible.
        #[arg(long, default_value = "")]
        owner: String,
        /// Deadline: 2026-12-31 or 2026年12月31日.
        #[arg(long, value_parser = parse_date, value_name = "YYYY-MM-DD")]
        due: Option<NaiveDate>,
        /// A first evidence note.
        #[arg(long)]
        note: Option<String>,
    },
    /// List tasks.
    List {
        /// Only this star.
        #[arg(long)]
        star: Option<String>,
        /// Only this status: todo, doing, done, blocked, failed (or 未开始, 进行中, 已完成, 受阻, 未达成).
        #[arg(long, value_parser = parse_status)]
        status: Option<TaskStatus>,
        /// Only tasks of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Only tasks past their deadline and not done.
        #[arg(long)]
        overdue: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one task with its notes and review.
    Show {
        /// The task's id (a unique beginning is enough).
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Change a task's title, star, points, owner, deadline or status.
    Edit {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New star.
        #[arg(long)]
        star: Option<String>,
        /// New points, 1 to 100.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        points: Option<u32>,
        /// New owner.
        #[arg(long)]
        owner: Option<String>,
        /// New deadline: 2026-12-31 or 2026年12月31日.
        #[arg(long, value_parser = parse_date, value_name = "YYYY-MM-DD", conflicts_with = "no_due")]
        due: Option<NaiveDate>,
        /// Remove the deadline.
        #[arg(long)]
        no_due: bool,
        /// New status: todo, doing, done, blocked, failed (or 未开始, 进行中, 已完成, 受阻, 未达成).
        #[arg(long, value_parser = parse_status)]
        status: Option<TaskStatus>,
    },
    /// Record progress, 0 to 100 percent.
    Progress {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// Percent complete, 0 to 100.
        #[arg(value_parser = clap::value_parser!(u32).range(0..=100))]
        percent: u32,
    },
    /// Mark a task done (100 %).
    Done {
        /// The task's id (a unique beginning is enough).
        id: String,
    },
    /// Mark a task failed (for a veto task: the condition was broken).
    Fail {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// What happened, recorded as an evidence note.
        #[arg(long)]
        note: Option<String>,
    },
    /// Add an evidence note.
    Note {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// The evidence, in your words.
        text: String,
    },
    /// Attach a photo or document (JPEG, PNG, HEIC, PDF, Office; up to 20 MiB) as an
    /// evidence note; it goes to the district at the next sync.
    Attach {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// The file.
        file: PathBuf,
        /// A caption for the note.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Withdraw an evidence note (it stays in the record, marked withdrawn; notes are
    /// never deleted).
    Withdraw {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// The note's number, as `task show` lists it (1, 2, ...).
        number: usize,
    },
    /// Give a task to someone.
    Assign {
        /// The task's id (a unique beginning is enough).
        id: String,
        /// Who is responsible now.
        owner: String,
    },
}

#[derive(Debug, Subcommand)]
enum TemplateCommand {
    /// Create the template tasks of this community's kind (running it again creates nothing).
    Apply,
}

/// A mistake explained, in the clerk's language: what is wrong, and how to fix it.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// The language it is said in.
    pub lang: Lang,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub hint: Option<String>,
}

impl CliError {
    fn fault(lang: Lang, fault: Fault) -> CliError {
        CliError { lang, message: fault.message(lang), hint: fault.hint_text(lang) }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.lang {
            Lang::Zh => write!(f, "错误：{}", self.message)?,
            Lang::En => write!(f, "error: {}", self.message)?,
        }
        if let Some(hint) = &self.hint {
            match self.lang {
                Lang::Zh => write!(f, "\n  提示：{hint}")?,
                Lang::En => write!(f, "\n  hint: {hint}")?,
            }
        }
        Ok(())
    }
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    i18n::parse_date_in(Lang::from_env(), text)
}

fn parse_status(text: &str) -> Result<TaskStatus, String> {
    i18n::parse_status_in(Lang::from_env(), text)
}

/// Runs one command. Output goes to standard output; errors come back.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let flag = cli.lang.as_deref().and_then(Lang::parse);
    let locale = Lang::locale_from_env();
    let lang = Lang::detect(flag, locale.as_deref());
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => dirs::data_dir().map(|d| d.join("fivestar-node")).ok_or_else(|| {
            CliError::fault(
                lang,
                Fault::said(
                    "没有指定数据文件夹，本系统也没有默认的数据文件夹",
                    "no data directory given and this system has no default data folder",
                )
                .hint(
                    "请用 --data-dir 指定，或设置 FIVESTAR_NODE_DIR",
                    "pass --data-dir DIR or set FIVESTAR_NODE_DIR",
                ),
            )
        })?,
    };
    if let Command::Init(args) = cli.command {
        return init(&data_dir, args, lang).map_err(|f| CliError::fault(lang, f));
    }
    let (ctx, store) = ops::open(&data_dir).map_err(|f| CliError::fault(lang, f))?;
    // node.toml's language counts when no flag or variable gave one.
    let lang = Lang::detect(flag.or(ctx.configured_lang()), locale.as_deref());
    let mut node = Node { ctx, store, lang, who: Who::default() };
    node.who = node.clerk(cli.clerk.as_deref()).map_err(|f| CliError::fault(lang, f))?;
    let result = match cli.command {
        Command::Init(_) => unreachable!("handled above"),
        Command::Task(task) => node.task(task),
        Command::Template(TemplateCommand::Apply) => node.template_apply(),
        Command::Score(JsonArg { json }) => node.score(json),
        Command::History { task, json } => node.history(task.as_deref(), json.json),
        Command::Status(JsonArg { json }) => node.status(json),
        Command::Staff(staff) => node.staff(staff),
        Command::Sync(JsonArg { json }) => node.sync(json),
        Command::Ui(args) => node.ui(args),
        Command::Run => node.run_daemon(cli.log_json),
    };
    result.map_err(|f| CliError::fault(lang, f))
}

fn init(data_dir: &Path, args: InitArgs, lang: Lang) -> Result<(), Fault> {
    let config_path = data_dir.join(crate::config::CONFIG_FILE);
    if let Ok(existing) = NodeConfig::load(data_dir) {
        return Err(Fault::said(
            format!(
                "{} 已经设置过了：社区 {}，设备 {}",
                data_dir.display(),
                existing.community,
                existing.device
            ),
            format!(
                "{} is set up already, for community {} as device {}",
                data_dir.display(),
                existing.community,
                existing.device
            ),
        )
        .hint(
            "要重新开始，请先把该文件夹移走；什么都没有改动",
            "to start over, move that folder away first; nothing was changed",
        ));
    }
    let db_path = data_dir.join(DATABASE_FILE);
    if db_path.exists() {
        return Err(Fault::said(
            format!(
                "{} 存在，但 {} 不存在（上次设置被中断？）",
                db_path.display(),
                config_path.display()
            ),
            format!(
                "{} exists but {} does not (an interrupted init?)",
                db_path.display(),
                config_path.display()
            ),
        )
        .hint(
            "如果这个文件夹里没有需要的记录，删除 node.db 后重新运行 init",
            "if this folder holds no records you need, remove node.db and run init again",
        ));
    }
    if !is_key(&args.device) {
        return Err(Fault::said(
            format!("设备名 {:?} 须为 1 至 40 个小写字母、数字或“-”", args.device),
            format!("device name {:?} must be 1 to 40 characters of a-z, 0-9 and '-'", args.device),
        ));
    }
    let registry = match &args.registry {
        None => Registry::sample(),
        Some(path) => {
            Registry::from_toml(&ops::read_file(path, "名册", "registry")?).map_err(|err| {
                Fault::said(
                    format!("{}：{err}", path.display()),
                    format!("{}: {err}", path.display()),
                )
                .hint("请修正名册文件后重新运行 init", "fix the registry file and run init again")
            })?
        }
    };
    let community = registry.community(&args.community).ok_or_else(|| {
        let sample = if registry.sample { "sample " } else { "" };
        Fault::said(
            format!(
                "社区 {:?} 不在{}名册中（共 {} 个社区）",
                args.community,
                if registry.sample { "示例" } else { "" },
                registry.communities.len()
            ),
            format!(
                "community {:?} is not in the {sample}registry ({} communities)",
                args.community,
                registry.communities.len()
            ),
        )
        .hint(
            "社区编号是小写拼音或 p002-01 之类的编号；请向区里要本社区的编号",
            "ids are lower-case pinyin or placeholders such as p002-01; ask the district office for yours",
        )
    })?;
    let standard_text = match &args.standard {
        None => SAMPLE_STANDARD_TOML.to_string(),
        Some(path) => ops::read_file(path, "标准", "standard")?,
    };
    Standard::from_toml(&standard_text).map_err(|err| {
        Fault::said(format!("标准文件有误：{err}"), err.to_string())
            .hint("请修正标准文件后重新运行 init", "fix the standard file and run init again")
    })?;
    std::fs::create_dir_all(data_dir).map_err(|err| {
        Fault::said(
            format!("无法创建 {}：{err}", data_dir.display()),
            format!("cannot create {}: {err}", data_dir.display()),
        )
    })?;
    let now = Utc::now().timestamp_millis();
    let store = Store::create(&db_path, &community.id, &args.device, now)?;
    drop(store);
    // Clerks in the node's group write the same database as the daemon: the file (and
    // SQLite's -wal and -shm files, which copy its mode) is group-writable.
    group_writable(&db_path)?;
    write_file(&data_dir.join(STANDARD_FILE), &standard_text)?;
    let config = NodeConfig {
        community: community.id.clone(),
        community_name: community.name.clone(),
        kind: community.kind,
        device: args.device.clone(),
        hub: args.hub,
        standard: PathBuf::from(STANDARD_FILE),
        tls: TlsPaths {
            ca: args.ca.unwrap_or_else(|| PathBuf::from("certs/ca.pem")),
            cert: args.cert.unwrap_or_else(|| PathBuf::from("certs/device.pem")),
            key: args.key.unwrap_or_else(|| PathBuf::from("certs/device.key")),
        },
        sync: crate::config::SyncSettings::default(),
        ui: crate::config::UiSettings::default(),
        files: crate::config::FileSettings::default(),
    };
    // The configuration is written last: its presence means "set up".
    write_file(&config_path, &config.to_toml())?;
    match lang {
        Lang::Zh => {
            out!(
                "已设置 {}（{}，{}），设备 {}，数据在 {}。",
                community.name,
                community.id,
                community.kind.zh(),
                args.device,
                data_dir.display()
            );
            out!(
                "下一步：`fivestar-node ui` 打开网页工作台（或 `fivestar-node template apply` 创建标准任务）。"
            );
        }
        Lang::En => {
            out!(
                "Set up {} ({}, {}) as device {} in {}.",
                community.name,
                community.id,
                community.kind.zh(),
                args.device,
                data_dir.display()
            );
            out!(
                "Next: `fivestar-node ui` opens the workbench in the browser (or `fivestar-node \
                 template apply` creates the standard's tasks for your community)."
            );
        }
    }
    Ok(())
}

/// Writes a file whole or not at all (temporary file, fsync, rename).
fn write_file(path: &Path, text: &str) -> Result<(), Fault> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|err| {
        Fault::said(
            format!("无法写入 {}：{err}", path.display()),
            format!("cannot write {}: {err}", path.display()),
        )
    })
}

/// Makes a file readable and writable by its owner and group (0660).
fn group_writable(path: &Path) -> Result<(), Fault> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|err| {
            Fault::said(
                format!("无法设置 {} 的权限：{err}", path.display()),
                format!("cannot set the permissions of {}: {err}", path.display()),
            )
        })?;
    }
    let _ = path;
    Ok(())
}

/// Holds the data directory's daemon lock while `run` runs: a second `run` on the
/// same folder would sync the same device twice.
fn daemon_lock(data_dir: &Path) -> Result<std::fs::File, Fault> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join("run.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| {
            Fault::said(
                format!("无法打开 {}：{err}", path.display()),
                format!("cannot open {}: {err}", path.display()),
            )
        })?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
        return Err(Fault::said(
            format!("fivestar-node run 已在 {} 上运行{who}", data_dir.display()),
            format!("fivestar-node run is already running on {}{who}", data_dir.display()),
        )
        .hint(
            "每个数据文件夹只能运行一个守护进程：请先停止另一个（例如 `systemctl stop fivestar-node`）",
            "one daemon per data directory: stop the other one first (e.g. `systemctl stop fivestar-node`)",
        ));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// An opened node, as the command line sees it.
struct Node {
    ctx: Context,
    store: Store,
    lang: Lang,
    who: Who,
}

impl Node {
    fn zh(&self) -> bool {
        self.lang == Lang::Zh
    }

    /// The clerk named by `--clerk` (or FIVESTAR_CLERK), who must be on the staff list.
    fn clerk(&mut self, name: Option<&str>) -> Result<Who, Fault> {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(Who::default());
        };
        if self.store.staff_pin(name)?.is_none() {
            return Err(Fault::said(
                format!("“{name}”不在本社区的工作人员名单中"),
                format!("{name:?} is not on the community's staff list"),
            )
            .hint(
                "`fivestar-node staff list` 列出名单，`fivestar-node staff add 姓名` 添加",
                "`fivestar-node staff list` shows the list; `fivestar-node staff add NAME` adds to it",
            ));
        }
        Ok(Who { clerk: Some(name.to_string()) })
    }

    fn runtime() -> Result<tokio::runtime::Runtime, Fault> {
        tokio::runtime::Runtime::new().map_err(|err| {
            Fault::said(
                format!("无法启动异步运行时：{err}"),
                format!("cannot start the async runtime: {err}"),
            )
        })
    }

    fn store_thread(store: Store) -> Result<StoreThread<Store>, Fault> {
        StoreThread::spawn("node-store", store).map_err(|e| {
            Fault::said(
                format!("无法启动存储线程：{e}"),
                format!("cannot start the store thread: {e}"),
            )
        })
    }

    fn sync(self, json: bool) -> Result<(), Fault> {
        let Node { ctx, store, lang, .. } = self;
        let runtime = Node::runtime()?;
        let (report, files) = runtime.block_on(async {
            let store = Node::store_thread(store)?;
            crate::sync::sync_and_upload(&store, &ctx.config, &ctx.data_dir)
                .await
                .map_err(sync_error)
        })?;
        if json {
            // The round's figures at the top (as before files existed), the files beside.
            let mut value = serde_json::to_value(&report).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("files".into(), json!(files));
            }
            print_json(&value);
        } else if lang == Lang::Zh {
            out!("已与 {} 同步：{report}。", ctx.config.hub);
            if files.completed + files.waiting > 0 {
                out!(
                    "佐证文件：{} 个已送到区里（本次发送 {} KB），{} 个仍在等待。",
                    files.completed,
                    files.bytes_sent / 1024,
                    files.waiting
                );
            }
        } else {
            out!("Synced with {}: {report}.", ctx.config.hub);
            if files.completed + files.waiting > 0 {
                out!(
                    "Evidence files: {} now at the district ({} KB sent), {} still waiting.",
                    files.completed,
                    files.bytes_sent / 1024,
                    files.waiting
                );
            }
        }
        Ok(())
    }

    fn run_daemon(self, json: bool) -> Result<(), Fault> {
        let _lock = daemon_lock(&self.ctx.data_dir)?;
        let Node { ctx, store, .. } = self;
        init_logging(json);
        let runtime = Node::runtime()?;
        runtime.block_on(async {
            let store = Node::store_thread(store)?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            serve_metrics(&ctx.config.sync.metrics_listen, stopped.clone()).await;
            if !ctx.config.ui.listen.trim().is_empty() {
                match crate::web::bind(&ctx.config.ui.listen).await {
                    Ok(listener) => {
                        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                        tracing::info!(address = %address, "the clerks' workbench at http://{address}/");
                        let web = crate::web::App::new(ctx.clone(), store.clone(), &address);
                        tokio::spawn(crate::web::serve(listener, web, stopped.clone()));
                    }
                    Err(err) => {
                        tracing::warn!(listen = %ctx.config.ui.listen, error = %err, "cannot serve the workbench; syncing without it");
                    }
                }
            }
            tracing::info!(hub = %ctx.config.hub, community = %ctx.config.community, device = %ctx.config.device, "node running; Ctrl-C stops it");
            let daemon = tokio::spawn(crate::sync::run_daemon(
                store,
                ctx.config.clone(),
                ctx.data_dir.clone(),
                stopped,
            ));
            crate::sync::stop_requested().await;
            let _ = stop.send(true);
            let _ = daemon.await;
            Ok(())
        })
    }

    /// Serves the clerks' workbench without syncing, until Ctrl-C.
    fn ui(self, args: UiArgs) -> Result<(), Fault> {
        let Node { ctx, store, lang, .. } = self;
        let listen = args.listen.unwrap_or_else(|| ctx.config.ui.listen.clone());
        let listen = if listen.trim().is_empty() { "127.0.0.1:8690".to_string() } else { listen };
        let runtime = Node::runtime()?;
        runtime.block_on(async {
            let store = Node::store_thread(store)?;
            let listener = crate::web::bind(&listen).await.map_err(|err| {
                Fault::said(
                    format!("无法在 {listen} 上提供网页：{err}"),
                    format!("cannot serve the pages on {listen}: {err}"),
                )
                .hint(
                    "端口可能被占用（`fivestar-node run` 已在提供网页？）；用 --listen 127.0.0.1:端口 换一个",
                    "the port may be taken (is `fivestar-node run` serving the pages already?); pick another with --listen 127.0.0.1:PORT",
                )
            })?;
            let address = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen.clone());
            let url = format!("http://{address}/");
            match lang {
                Lang::Zh => out!("社区工作台：{url}\n在浏览器中打开这个地址；按 Ctrl-C 停止。此模式不与区里同步。"),
                Lang::En => out!("The community's workbench: {url}\nOpen it in the browser; Ctrl-C stops. This mode does not sync with the district."),
            }
            if args.open {
                open_browser(&url);
            }
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let web = crate::web::App::new(ctx, store, &address);
            let server = tokio::spawn(crate::web::serve(listener, web, stopped));
            crate::sync::stop_requested().await;
            let _ = stop.send(true);
            let _ = server.await;
            Ok(())
        })
    }

    fn staff(&mut self, command: StaffCommand) -> Result<(), Fault> {
        match command {
            StaffCommand::Add { name, pin } => {
                ops::add_staff(&mut self.store, &name, pin.as_deref())?;
                if self.zh() {
                    out!("已保存：{name} 已加入工作人员名单。");
                } else {
                    out!("Saved: {name} is on the staff list.");
                }
            }
            StaffCommand::Remove { name } => {
                if !self.store.remove_staff(&name)? {
                    return Err(Fault::said(
                        format!("“{name}”不在名单中"),
                        format!("{name:?} is not on the staff list"),
                    ));
                }
                if self.zh() {
                    out!("已保存：{name} 已从名单中移除（其记录保留）。");
                } else {
                    out!("Saved: {name} is off the staff list (what they recorded stays).");
                }
            }
            StaffCommand::List => {
                let staff = self.store.staff()?;
                if staff.is_empty() {
                    out!(
                        "{}",
                        self.lang.pick(
                            "名单是空的：`fivestar-node staff add 姓名` 添加。",
                            "The list is empty: `fivestar-node staff add NAME` adds to it."
                        )
                    );
                }
                for (name, pin) in staff {
                    let pin = if pin { self.lang.pick("（有 PIN）", " (PIN)") } else { "" };
                    out!("{name}{pin}");
                }
            }
        }
        Ok(())
    }

    fn kind(&self) -> &KindStandard {
        self.ctx.kind()
    }

    fn edit(&mut self, id: &str, edit: TaskEdit) -> Result<Task, Fault> {
        ops::edit(&self.ctx, &mut self.store, &self.who, id, edit)
    }

    fn status_text(&self, status: TaskStatus) -> &'static str {
        i18n::status(self.lang, status)
    }

    fn task(&mut self, command: TaskCommand) -> Result<(), Fault> {
        let zh = self.zh();
        match command {
            TaskCommand::Add { star, title, points, owner, due, note } => {
                let form = ops::TaskForm { star, title, points, owner, due, note };
                let task = ops::add_task(&self.ctx, &mut self.store, &self.who, form)?;
                if zh {
                    out!("已保存：新任务 {} “{}”", task.id, task.title);
                } else {
                    out!("Saved: new task {}: {}", task.id, task.title);
                }
            }
            TaskCommand::List { star, status, owner, overdue, json } => {
                let star = match &star {
                    Some(star) => Some(ops::star_key(&self.ctx, star)?),
                    None => None,
                };
                let today = Local::now().date_naive();
                let tasks: Vec<Task> = self
                    .read_tasks()?
                    .into_iter()
                    .filter(|t| star.as_ref().is_none_or(|s| t.star == *s))
                    .filter(|t| status.is_none_or(|s| t.status == s))
                    .filter(|t| owner.as_ref().is_none_or(|o| t.owner == *o))
                    .filter(|t| !overdue || t.is_overdue(today))
                    .collect();
                if json.json {
                    let rows: Vec<_> = tasks.iter().map(|t| task_json(t, today)).collect();
                    print_json(&rows);
                } else {
                    self.print_task_table(&tasks, today);
                }
            }
            TaskCommand::Show { id, json } => {
                let (task, conflicts) = ops::task(&mut self.store, &id)?;
                let today = Local::now().date_naive();
                if json.json {
                    let mut value = task_json(&task, today);
                    if let Some(map) = value.as_object_mut() {
                        map.insert("conflicts".into(), json!(conflicts));
                    }
                    print_json(&value);
                } else {
                    self.print_task(&task, today);
                    for c in &conflicts {
                        if zh {
                            out!(
                                "注意：{}在不同设备上被改成了不同的值：{}（当前显示第一个；可在网页工作台里选定）",
                                i18n::field(self.lang, c.field),
                                c.values.join(" / ")
                            );
                        } else {
                            out!(
                                "Note: {} was set differently on two devices: {} (the first is shown; choose in the workbench)",
                                c.field,
                                c.values.join(" / ")
                            );
                        }
                    }
                }
            }
            TaskCommand::Edit { id, title, star, points, owner, due, no_due, status } => {
                let edit = TaskEdit {
                    title,
                    star,
                    points,
                    owner,
                    due: if no_due { Some(None) } else { due.map(Some) },
                    status,
                    progress: None,
                };
                if edit.is_empty() {
                    return Err(Fault::said("没有要修改的内容", "nothing to change").hint(
                        "至少给出 --title、--star、--points、--owner、--due、--no-due、--status 之一",
                        "give at least one of --title, --star, --points, --owner, --due, --no-due, --status",
                    ));
                }
                let asked = edit.clone();
                let task = self.edit(&id, edit)?;
                // Confirm every field that was asked for, as it now stands.
                let mut now = Vec::new();
                if asked.title.is_some() {
                    now.push(if zh {
                        format!("名称“{}”", task.title)
                    } else {
                        format!("title {:?}", task.title)
                    });
                }
                if asked.star.is_some() {
                    now.push(if zh {
                        format!("属于{}", i18n::star_name(self.lang, self.kind(), &task.star))
                    } else {
                        format!("star {}", task.star)
                    });
                }
                if asked.points.is_some() {
                    now.push(if zh {
                        format!("{} 分", task.points)
                    } else {
                        format!("{} points", task.points)
                    });
                }
                if asked.owner.is_some() {
                    now.push(if zh {
                        format!("负责人 {}", task.owner)
                    } else {
                        format!("owner {}", task.owner)
                    });
                }
                if asked.due.is_some() {
                    now.push(match (task.due, zh) {
                        (Some(d), true) => format!("截止 {d}"),
                        (Some(d), false) => format!("due {d}"),
                        (None, true) => "无截止日期".into(),
                        (None, false) => "no deadline".into(),
                    });
                }
                if zh {
                    now.push(format!("{}，进度 {}%", self.status_text(task.status), task.progress));
                    out!("已保存：{} 现在是 {}。", task.id, now.join("，"));
                } else {
                    now.push(format!("{} at {}%", task.status, task.progress));
                    out!("Saved: {} now has {}.", task.id, now.join(", "));
                }
            }
            TaskCommand::Progress { id, percent } => {
                let task =
                    self.edit(&id, TaskEdit { progress: Some(percent), ..TaskEdit::default() })?;
                if zh {
                    out!(
                        "已保存：{} 现在{}，进度 {}%。",
                        task.id,
                        self.status_text(task.status),
                        task.progress
                    );
                } else {
                    out!("Saved: {} is now {} at {}%.", task.id, task.status, task.progress);
                }
            }
            TaskCommand::Done { id } => {
                let task = self.edit(
                    &id,
                    TaskEdit { status: Some(TaskStatus::Done), ..TaskEdit::default() },
                )?;
                if zh {
                    out!("已保存：{} 已完成。", task.id);
                } else {
                    out!("Saved: {} is done.", task.id);
                }
            }
            TaskCommand::Fail { id, note } => {
                let task = ops::fail(&self.ctx, &mut self.store, &self.who, &id, note.as_deref())?;
                let star = i18n::star_name(self.lang, self.kind(), &task.star);
                match (task.veto, zh) {
                    (true, true) => out!(
                        "已保存：{} 未达成。这是一票否决任务：在它恢复之前，{star}无法评上。",
                        task.id
                    ),
                    (true, false) => out!(
                        "Saved: {} is failed. It is a veto task: star {} cannot be earned while it stays failed.",
                        task.id,
                        task.star
                    ),
                    (false, true) => out!("已保存：{} 未达成。", task.id),
                    (false, false) => out!("Saved: {} is failed.", task.id),
                }
            }
            TaskCommand::Note { id, text } => {
                let task = ops::note(&self.ctx, &mut self.store, &self.who, &id, &text)?;
                if zh {
                    out!("已保存：{} 的第 {} 条佐证记录。", task.id, task.notes.len());
                } else {
                    out!("Saved: note {} on {}.", task.notes.len(), task.id);
                }
            }
            TaskCommand::Attach { id, file, note } => {
                let bytes = std::fs::read(&file).map_err(|err| {
                    Fault::said(
                        format!("无法读取 {}：{err}", file.display()),
                        format!("cannot read {}: {err}", file.display()),
                    )
                })?;
                let name =
                    file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let task =
                    ops::attach(&self.ctx, &mut self.store, &self.who, &id, &name, &bytes, &note)?;
                if zh {
                    out!(
                        "已保存：{} 的第 {} 条佐证附上了“{name}”（{} KB），下次同步时送到区里。",
                        task.id,
                        task.notes.len(),
                        bytes.len() / 1024
                    );
                } else {
                    out!(
                        "Saved: note {} on {} carries {name:?} ({} KB); it goes to the district at the next sync.",
                        task.notes.len(),
                        task.id,
                        bytes.len() / 1024
                    );
                }
            }
            TaskCommand::Withdraw { id, number } => {
                let task = ops::withdraw(&self.ctx, &mut self.store, &self.who, &id, number)?;
                if zh {
                    out!("已保存：{} 的第 {number} 条佐证记录已撤回（记录仍保留）。", task.id);
                } else {
                    out!(
                        "Saved: note {number} of {} is withdrawn (it stays in the record).",
                        task.id
                    );
                }
            }
            TaskCommand::Assign { id, owner } => {
                let task =
                    self.edit(&id, TaskEdit { owner: Some(owner), ..TaskEdit::default() })?;
                if zh {
                    out!("已保存：{} 现在由 {} 负责。", task.id, task.owner);
                } else {
                    out!("Saved: {} is now {}'s.", task.id, task.owner);
                }
            }
        }
        Ok(())
    }

    /// Every task that can be read. A task that cannot is left out with a warning
    /// naming what is wrong and the way out; everything else works.
    fn read_tasks(&mut self) -> Result<Vec<Task>, Fault> {
        let (tasks, problems) = ops::tasks(&mut self.store)?;
        if !problems.is_empty() {
            if self.zh() {
                eprintln!(
                    "警告：本社区的记录中有 {} 处问题；必填项有问题的任务不列出、不计分：",
                    problems.len()
                );
            } else {
                eprintln!(
                    "warning: {} problem(s) in the community's records; a task with a problem in a \
                     required field is left out of lists and scores:",
                    problems.len()
                );
            }
            for problem in &problems {
                eprintln!("  {problem}");
            }
            eprintln!(
                "  {}",
                self.lang.pick(
                    "办法：`fivestar-node history 编号` 显示谁改过这项任务；区里的运维人员可以修复（请把这条消息发给他们）",
                    "way out: `fivestar-node history ID` shows who changed the task; the \
                     district's operators can repair it (send them this message)"
                )
            );
        }
        Ok(tasks)
    }

    fn template_apply(&mut self) -> Result<(), Fault> {
        let created = ops::template_apply(&self.ctx, &mut self.store, &self.who)?;
        let name = &self.ctx.config.community_name;
        let kind = self.ctx.config.kind.zh();
        match (created.is_empty(), self.zh()) {
            (true, true) => out!("模板已经创建过了：没有新任务要创建。"),
            (true, false) => out!("The template is applied already: nothing new to create."),
            (false, true) => out!(
                "已保存：为{name}（{kind}）创建了 {} 项标准任务。`fivestar-node task list` 列出它们。",
                created.len()
            ),
            (false, false) => out!(
                "Saved: created {} template tasks for {name} ({kind}). `fivestar-node task list` shows them.",
                created.len()
            ),
        }
        Ok(())
    }

    fn score(&mut self, json: bool) -> Result<(), Fault> {
        let tasks = self.read_tasks()?;
        let result = ops::community_score(&self.ctx, &tasks);
        if json {
            print_json(&json!({
                "community": self.ctx.config.community,
                "kind": self.ctx.config.kind,
                "standard": {"version": self.ctx.standard.version, "sample": self.ctx.standard.sample},
                "score": result,
            }));
            return Ok(());
        }
        self.print_standard_banner();
        let zh = self.zh();
        let mut table = if zh {
            table(&["星", "得分", "及格线", "评上", "还差"])
        } else {
            table(&["Star", "星", "Score", "Pass", "Earned", "Still lacks"])
        };
        let title_of = |id: &str| {
            tasks
                .iter()
                .find(|t| t.id == id)
                .map(|t| t.title.clone())
                .unwrap_or_else(|| id.to_string())
        };
        for (star, s) in self.kind().stars.iter().zip(&result.stars) {
            let lacks: Vec<String> = if zh {
                s.lacks.iter().map(|l| i18n::lack(self.lang, self.kind(), l, title_of)).collect()
            } else {
                s.lacks.iter().map(|l| l.to_string()).collect()
            };
            let lacks = if lacks.is_empty() { "—".into() } else { lacks.join("; ") };
            if zh {
                table.add_row(vec![
                    format!("{}{}", star.zh, if star.capstone { "（统领星）" } else { "" }),
                    format_points(s.score),
                    format_points(s.pass_mark),
                    if s.earned { "★ 是".into() } else { "☆ 否".into() },
                    lacks,
                ]);
            } else {
                table.add_row(vec![
                    format!("{}{}", star.key, if star.capstone { " (capstone)" } else { "" }),
                    star.zh.clone(),
                    format_points(s.score),
                    format_points(s.pass_mark),
                    if s.earned { "★ yes".into() } else { "☆ no".into() },
                    lacks,
                ]);
            }
        }
        out!("{table}");
        let name = &self.ctx.config.community_name;
        let id = &self.ctx.config.community;
        if zh {
            out!(
                "{name}（{id}）：{} 评上 {} 颗星，总分 {} / 500.00",
                stars_text(result.stars_earned),
                result.stars_earned,
                format_points(result.total)
            );
        } else {
            out!(
                "{name} ({id}): {} {} star(s), total {} of 500.00",
                stars_text(result.stars_earned),
                result.stars_earned,
                format_points(result.total)
            );
        }
        if !result.ignored_tasks.is_empty() {
            out!(
                "{}{}",
                self.lang.pick(
                    "不计分（所属星不是本类社区的星）：",
                    "Not counted (their star is not one of this kind's): "
                ),
                result.ignored_tasks.join(", ")
            );
        }
        Ok(())
    }

    fn history(&mut self, task: Option<&str>, json: bool) -> Result<(), Fault> {
        let changes = ops::history(&mut self.store, task)?;
        if json {
            print_json(&changes);
            return Ok(());
        }
        let zh = self.zh();
        let mut table = if zh {
            table(&["时间", "谁", "来自", "做了什么", "字段"])
        } else {
            table(&["When", "Who", "From", "What", "Fields"])
        };
        for change in &changes {
            let entry = &change.entry;
            let when = if entry.at_seconds == 0 {
                self.lang.pick("（模板）", "(template)").to_string()
            } else {
                local_time(entry.at_seconds * 1000)
            };
            let origin = match (change.received_ms, zh) {
                (Some(ms), true) => format!("经区里转来，{}", local_time(ms)),
                (Some(ms), false) => format!("via the district, {}", local_time(ms)),
                (None, true) => "本机".to_string(),
                (None, false) => "this device".to_string(),
            };
            table.add_row(vec![
                when,
                entry.by.clone(),
                origin,
                entry.action.clone(),
                entry.paths.join("\n"),
            ]);
        }
        out!("{table}");
        if zh {
            out!("共 {} 次修改。", changes.len());
        } else {
            out!("{} change(s).", changes.len());
        }
        Ok(())
    }

    fn status(&mut self, json: bool) -> Result<(), Fault> {
        let doc = self.store.read()?;
        let heads: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
        let view = ops::sync_view(&mut self.store)?;
        let tasks = doc.task_ids().len();
        let now = Utc::now().timestamp();
        let config = &self.ctx.config;
        let standard = &self.ctx.standard;
        if json {
            print_json(&json!({
                "community": config.community,
                "device": config.device,
                "hub": config.hub,
                "database": self.store.path(),
                "tasks": tasks,
                "heads": heads,
                "unacknowledged_changes": view.pending.changes,
                "oldest_unacknowledged_age_seconds": view.pending.oldest_seconds.map(|t| now - t),
                "all_saved_at_district": view.all_saved_at_district(),
                "files_waiting": view.files_waiting.0,
                "files_waiting_bytes": view.files_waiting.1,
                "last_sync_attempt": view.last_attempt,
                "last_successful_sync_ms": view.last_success_ms,
                "last_error": view.last_error.map(|(at, e)| json!({"at_ms": at, "error": e})),
                "standard": {"version": standard.version, "sample": standard.sample},
            }));
            return Ok(());
        }
        let zh = self.zh();
        let lang = self.lang;
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        let mut row = |zh_key: &str, en_key: &str, v: String| {
            table.add_row(vec![lang.pick(zh_key, en_key).to_string(), v]);
        };
        row("社区", "Community", format!("{} ({})", config.community_name, config.community));
        row("设备", "Device", config.device.clone());
        row("区里", "Hub", config.hub.clone());
        row("数据库", "Database", self.store.path().display().to_string());
        row("任务", "Tasks", tasks.to_string());
        row(
            "本地版本",
            "Local heads",
            heads.iter().map(|h| &h[..12]).collect::<Vec<_>>().join(", "),
        );
        row(
            "尚未送达区里",
            "Not yet at the hub",
            match (view.pending.oldest_seconds, zh) {
                (None, true) => "没有：所有修改都已送达区里".to_string(),
                (None, false) => "nothing: every change is acknowledged".to_string(),
                (Some(oldest), true) => format!(
                    "{} 次修改，最早的在 {}（{}前）",
                    view.pending.changes,
                    local_time(oldest * 1000),
                    i18n::age(lang, now - oldest)
                ),
                (Some(oldest), false) => format!(
                    "{} change(s), the oldest from {} ({} ago)",
                    view.pending.changes,
                    local_time(oldest * 1000),
                    age_text(now - oldest)
                ),
            },
        );
        row(
            "佐证文件",
            "Evidence files",
            match (view.files_waiting, zh) {
                ((0, _), true) => "全部已送到区里".to_string(),
                ((0, _), false) => "all at the district".to_string(),
                ((n, bytes), true) => format!("{n} 个（{} KB）等待送到区里", bytes / 1024),
                ((n, bytes), false) => {
                    format!("{n} ({} KB) waiting to reach the district", bytes / 1024)
                }
            },
        );
        row(
            "上次同步",
            "Last sync attempt",
            match &view.last_attempt {
                None => lang.pick("从未", "never").to_string(),
                Some(a) => format!(
                    "{}: {}",
                    local_time(a.started_ms),
                    if a.ok {
                        format!(
                            "{}, {}",
                            lang.pick("成功", "ok"),
                            a.summary.clone().unwrap_or_default()
                        )
                    } else if a.finished_ms.is_none() {
                        lang.pick("未完成", "did not finish").to_string()
                    } else {
                        lang.pick("失败", "failed").to_string()
                    }
                ),
            },
        );
        row(
            "上次错误",
            "Last error",
            match &view.last_error {
                None => lang.pick("无", "none").to_string(),
                Some((at, error)) if zh => {
                    format!(
                        "{}: {}（{error}）",
                        local_time(*at),
                        ops::sync_error_words(lang, error)
                    )
                }
                Some((at, error)) => format!("{}: {error}", local_time(*at)),
            },
        );
        row(
            "标准",
            "Standard",
            format!(
                "{}{}",
                standard.version,
                if standard.sample {
                    lang.pick("（示例，不是区里的正式标准）", " (SAMPLE, not the district's own)")
                } else {
                    ""
                }
            ),
        );
        out!("{table}");
        Ok(())
    }

    fn print_standard_banner(&self) {
        if self.ctx.standard.sample {
            if self.zh() {
                out!("按示例标准 {} 计分（不是区里的正式细则）。", self.ctx.standard.version);
            } else {
                out!(
                    "Scored against the SAMPLE standard {} (not the district's own rulebook).",
                    self.ctx.standard.version
                );
            }
        }
    }

    fn star_label(&self, key: &str) -> String {
        match self.kind().star(key) {
            Some(star) => star.zh.clone(),
            None => format!("{key} (?)"),
        }
    }

    fn review_text(&self, t: &Task) -> String {
        let Some(review) = &t.review else { return String::new() };
        let verdict = i18n::verdict(self.lang, &review.verdict);
        if t.changed_since_review() {
            format!("{verdict}{}", self.lang.pick("；审核后有改动", "; changed since review"))
        } else {
            verdict
        }
    }

    fn print_task_table(&self, tasks: &[Task], today: NaiveDate) {
        let zh = self.zh();
        let mut table = if zh {
            table(&["编号", "星", "任务", "分值", "状态", "%", "负责人", "截止", "审核"])
        } else {
            table(&["ID", "星", "Task", "Pts", "Status", "%", "Owner", "Due", "Review"])
        };
        for t in tasks {
            table.add_row(vec![
                t.id.clone(),
                self.star_label(&t.star),
                t.title.clone(),
                t.points.to_string(),
                self.status_text(t.status).to_string(),
                t.effective_progress().to_string(),
                t.owner.clone(),
                match t.due {
                    None => String::new(),
                    Some(d) if t.is_overdue(today) => {
                        format!("{d} {}", self.lang.pick("已逾期", "overdue"))
                    }
                    Some(d) => d.to_string(),
                },
                self.review_text(t),
            ]);
        }
        out!("{table}");
        if zh {
            out!("共 {} 项任务。", tasks.len());
        } else {
            out!("{} task(s).", tasks.len());
        }
    }

    fn print_task(&self, t: &Task, today: NaiveDate) {
        let lang = self.lang;
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        let mut row = |zh: &str, en: &str, v: String| {
            table.add_row(vec![lang.pick(zh, en).to_string(), v]);
        };
        row("编号", "ID", t.id.clone());
        row("任务", "Task", t.title.clone());
        row("所属星", "Star", format!("{} ({})", self.star_label(&t.star), t.star));
        row(
            "分值",
            "Points",
            format!(
                "{}{}",
                t.points,
                if t.veto { lang.pick("（一票否决任务）", " (veto task)") } else { "" }
            ),
        );
        row(
            "状态",
            "Status",
            format!("{}, {}%", self.status_text(t.status), t.effective_progress()),
        );
        row(
            "负责人",
            "Owner",
            if t.owner.is_empty() {
                lang.pick("（尚未指定）", "(nobody yet)").into()
            } else {
                t.owner.clone()
            },
        );
        row(
            "截止",
            "Due",
            match t.due {
                None => lang.pick("（无截止日期）", "(no deadline)").into(),
                Some(d) if t.is_overdue(today) => {
                    format!("{d} ({})", lang.pick("已逾期", "overdue"))
                }
                Some(d) => d.to_string(),
            },
        );
        row(
            "得分",
            "Earned",
            format!("{} {}", format_points(earned_hundredths(t)), lang.pick("分", "points")),
        );
        row("审核", "Review", self.review_text(t));
        if let Some(review) = &t.review {
            row(
                "审核人",
                "Reviewed",
                format!("{} by {}: {}", local_time(review.at_ms), review.reviewer, review.comment),
            );
            if review.overridden {
                row(
                    "说明",
                    "Note",
                    lang.pick(
                        "未完成即通过（审核人特批）",
                        "accepted before it was done (the reviewer overrode)",
                    )
                    .into(),
                );
            }
            let (star, points) = t.counted_star_and_points();
            if t.verdict().is_some() && (star != t.star || points != t.points) {
                row(
                    "按审核计",
                    "Counts as",
                    match lang {
                        Lang::Zh => format!("{}的 {points} 分（按审核时）", self.star_label(star)),
                        Lang::En => {
                            format!("{points} points of {} (as reviewed)", self.star_label(star))
                        }
                    },
                );
            }
            let changed = t.changed_fields();
            if !changed.is_empty() {
                let fields: Vec<String> = changed.iter().map(|f| i18n::field(lang, f)).collect();
                row(
                    "审核后改动",
                    "Changed since review",
                    match lang {
                        Lang::Zh => format!("{}：审核结论不变；区里会再看", fields.join("、")),
                        Lang::En => format!(
                            "{}: the verdict stands; the district will look again",
                            fields.join(", ")
                        ),
                    },
                );
            }
            if t.is_accepted() {
                row(
                    "已锁定",
                    "Locked",
                    lang.pick(
                        "状态、进度、所属星和分值（需区里重新打开）",
                        "status, progress, star and points (ask the district to reopen)",
                    )
                    .into(),
                );
            }
        }
        row(
            "来源",
            "From",
            match (&t.template, lang) {
                (Some(k), Lang::Zh) => format!("标准模板 {k}"),
                (Some(k), Lang::En) => format!("template {k}"),
                (None, _) => lang.pick("本社区自定任务", "own task").into(),
            },
        );
        out!("{table}");
        if t.notes.is_empty() {
            out!("{}", lang.pick("还没有佐证记录。", "No evidence notes yet."));
        } else {
            out!("{}", lang.pick("佐证记录：", "Evidence notes:"));
            for (i, note) in t.notes.iter().enumerate() {
                let withdrawn = match &note.withdrawn {
                    Some(w) => match lang {
                        Lang::Zh => format!(" [已由 {} 于 {} 撤回]", w.by, local_time(w.at_ms)),
                        Lang::En => format!(" [withdrawn by {} at {}]", w.by, local_time(w.at_ms)),
                    },
                    None => String::new(),
                };
                let file = match &note.file {
                    Some(f) => format!(" [📎 {} {} KB]", f.name, f.size / 1024),
                    None => String::new(),
                };
                out!(
                    "  {}. {}{file} ({}, {}){withdrawn}",
                    i + 1,
                    note.text,
                    note.by,
                    local_time(note.at_ms)
                );
            }
        }
    }
}

/// Opens `url` in the desktop's browser, if there is one; says so when not.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "windows") {
        "explorer"
    } else if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if std::process::Command::new(opener).arg(url).spawn().is_err() {
        eprintln!("({opener} is missing: open {url} by hand)");
    }
}

fn sync_error(err: crate::sync::SyncError) -> Fault {
    use crate::sync::SyncError;
    let (zh, en) = match &err {
        SyncError::Certificate { .. } => (
            "请用 `fivestar-hub pki issue` 签发本设备的证书，并复制到 node.toml 中的路径",
            "issue the device's certificate with `fivestar-hub pki issue` and copy it to the paths in node.toml",
        ),
        SyncError::CertificateRefused(_) => (
            "请向区里要一个有效的设备证书",
            "ask the district office for a valid device certificate",
        ),
        SyncError::Unreachable { .. } | SyncError::BadAddress(_) => (
            "请检查网络和 node.toml 中区里的地址；修改都已保存在本机",
            "check the link and the hub address in node.toml; every edit stays saved here meanwhile",
        ),
        SyncError::Refused { .. } => (
            "上面写明了区里依据的规则；`fivestar-node status` 会保留这个错误",
            "the hub names the rule above; `fivestar-node status` keeps this error",
        ),
        SyncError::Protocol(_) | SyncError::Store(_) => (
            "请重试；如果一直出现，请把 node.db 发给区里的运维人员",
            "try again; if it persists, send node.db to the district's operators",
        ),
    };
    let text = err.to_string();
    Fault::said(format!("同步失败：{}（{text}）", ops::sync_error_words(Lang::Zh, &text)), text)
        .hint(zh, en)
}

/// Serves `/metrics` for Prometheus while the daemon runs; a taken port or an empty
/// address leaves the node syncing without metrics.
async fn serve_metrics(listen: &str, mut stopped: tokio::sync::watch::Receiver<bool>) {
    if listen.trim().is_empty() {
        return;
    }
    let handle = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(err) => {
            tracing::warn!(error = %err, "metrics are off");
            return;
        }
    };
    for (name, help) in [
        (crate::sync::names::ROUNDS, "Sync rounds, by result."),
        (crate::sync::names::ERRORS, "Failed sync rounds, by class."),
        (crate::sync::names::BYTES, "Sync payload bytes, by direction."),
        (crate::sync::names::CHANGES, "Changes received from the hub and stored."),
    ] {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_gauge!(
        crate::sync::names::UNACKED,
        "Local changes not yet acknowledged by the hub."
    );
    metrics::describe_gauge!(crate::sync::names::LAST_SYNC, "Last successful sync, Unix time.");
    metrics::describe_gauge!(crate::sync::names::CONNECTED, "1 while connected to the hub.");
    metrics::describe_gauge!("fivestar_node_build_info", "1, labelled with the node's version.");
    metrics::gauge!("fivestar_node_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let process = metrics_process::Collector::default();
    process.describe();
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%listen, error = %err, "cannot serve metrics; syncing without them");
            return;
        }
    };
    tracing::info!(address = %listen, "metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            // The standard process_* metrics, fresh at each scrape.
            process.collect();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await;
    });
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.with_ansi(ansi).try_init() };
}

fn task_json(t: &Task, today: NaiveDate) -> serde_json::Value {
    let mut value = serde_json::to_value(t).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("earned_hundredths".into(), json!(earned_hundredths(t)));
        map.insert("overdue".into(), json!(t.is_overdue(today)));
    }
    value
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(header.to_vec());
    table
}

fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(err) => eprintln!("error: cannot render JSON: {err}"),
    }
}

fn stars_text(earned: u32) -> String {
    (0..5).map(|i| if i < earned { '★' } else { '☆' }).collect()
}

fn local_time(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string(),
        None => "?".into(),
    }
}

fn age_text(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}
