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
use fivestar_core::document::NewTask;
use fivestar_core::scoring::format_points;
use fivestar_core::standard::{SAMPLE_STANDARD_TOML, is_key};
use fivestar_core::{
    CommunityDoc, EditError, KindStandard, Policy, Registry, Stamp, Standard, Task, TaskEdit,
    TaskStatus, Verdict, earned_hundredths, score,
};
use serde_json::json;

use crate::config::{ConfigError, DATABASE_FILE, NodeConfig, STANDARD_FILE, TlsPaths};
use crate::store::{DocStoreError, Store, StoreError};
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
    /// Keep syncing with the hub until Ctrl-C: after every edit, on pushes from the
    /// hub, and on a heartbeat; reconnects with backoff when the link is down.
    Run,
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
        /// The star it counts for (see `fivestar-node score` for the keys).
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
        /// Deadline, YYYY-MM-DD.
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
        /// Only this status: todo, doing, done, blocked, failed.
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
        /// New deadline, YYYY-MM-DD.
        #[arg(long, value_parser = parse_date, value_name = "YYYY-MM-DD", conflicts_with = "no_due")]
        due: Option<NaiveDate>,
        /// Remove the deadline.
        #[arg(long)]
        no_due: bool,
        /// New status: todo, doing, done, blocked, failed.
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

/// A mistake explained: what is wrong, and how to fix it.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub hint: Option<String>,
}

impl CliError {
    fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), hint: None }
    }

    fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> CliError {
        let hint = match &err {
            StoreError::Store(
                DocStoreError::NotADatabase { .. } | DocStoreError::CorruptDocument { .. },
            ) => {
                "restore node.db from a backup; if there is none, move the file away and run \
                 `fivestar-node init` again (the hub has every change it acknowledged)"
            }
            StoreError::Store(DocStoreError::Foreign { .. })
            | StoreError::WrongCommunity { .. } => {
                "check --data-dir (or FIVESTAR_NODE_DIR): it points at the wrong folder"
            }
            StoreError::Store(DocStoreError::TooNew { .. }) => {
                "install the newer fivestar-node that wrote this file"
            }
            StoreError::Store(DocStoreError::Sqlite { source, .. })
                if source.to_string().contains("readonly") =>
            {
                "this user may not write the node's database: run as the node's user, or ask \
                 the administrator to add you to its group (see deploy/systemd/fivestar-node.service)"
            }
            StoreError::Store(DocStoreError::Sqlite { .. } | DocStoreError::Stopped) => {
                "check that the disk is not full and the folder is writable"
            }
            StoreError::Refused(_) | StoreError::Store(DocStoreError::Panicked) => {
                "nothing was saved; please tell the district's operators what you tried, with \
                 this message"
            }
        };
        CliError::new(err.to_string()).hint(hint)
    }
}

impl From<ConfigError> for CliError {
    fn from(err: ConfigError) -> CliError {
        let hint = match &err {
            ConfigError::NotInitialized { .. } => {
                "run `fivestar-node init --community <id>` first, or point --data-dir \
                 (or FIVESTAR_NODE_DIR) at the folder of an existing node"
            }
            ConfigError::Read { .. } => "check the file's permissions",
            ConfigError::Invalid { .. } => {
                "fix the file by hand; deploy/node.example.toml explains every field"
            }
        };
        CliError::new(err.to_string()).hint(hint)
    }
}

impl From<EditError> for CliError {
    fn from(err: EditError) -> CliError {
        let hint = match &err {
            EditError::UnknownTask { .. } => {
                Some("`fivestar-node task list` shows every task and its id")
            }
            EditError::UnknownStar { .. } => Some("use one of the star keys listed above"),
            EditError::Locked { .. } => Some(
                "ask the district to reopen the task; evidence notes, owner and due date can \
                 still be changed",
            ),
            EditError::StandardOwned { .. } => Some(
                "the district's standard sets it; add a task of your own (`task add`) for other work",
            ),
            EditError::UnknownNote { .. } => Some("`fivestar-node task show ID` numbers the notes"),
            _ => None,
        };
        let error = CliError::new(err.to_string());
        match hint {
            Some(hint) => error.hint(hint),
            None => error,
        }
    }
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date: write it as YYYY-MM-DD, e.g. 2026-12-31"))
}

fn parse_status(text: &str) -> Result<TaskStatus, String> {
    text.parse()
}

/// Runs one command. Output goes to standard output; errors come back.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => dirs::data_dir().map(|d| d.join("fivestar-node")).ok_or_else(|| {
            CliError::new("no data directory given and this system has no default data folder")
                .hint("pass --data-dir DIR or set FIVESTAR_NODE_DIR")
        })?,
    };
    match cli.command {
        Command::Init(args) => init(&data_dir, args),
        command => {
            let mut node = Node::open(&data_dir)?;
            match command {
                Command::Init(_) => unreachable!("handled above"),
                Command::Task(task) => node.task(task),
                Command::Template(TemplateCommand::Apply) => node.template_apply(),
                Command::Score(JsonArg { json }) => node.score(json),
                Command::History { task, json } => node.history(task.as_deref(), json.json),
                Command::Status(JsonArg { json }) => node.status(json),
                Command::Sync(JsonArg { json }) => node.sync(&data_dir, json),
                Command::Run => node.run_daemon(&data_dir, cli.log_json),
            }
        }
    }
}

fn init(data_dir: &Path, args: InitArgs) -> Result<(), CliError> {
    let config_path = data_dir.join(crate::config::CONFIG_FILE);
    if let Ok(existing) = NodeConfig::load(data_dir) {
        return Err(CliError::new(format!(
            "{} is set up already, for community {} as device {}",
            data_dir.display(),
            existing.community,
            existing.device
        ))
        .hint("to start over, move that folder away first; nothing was changed"));
    }
    let db_path = data_dir.join(DATABASE_FILE);
    if db_path.exists() {
        return Err(CliError::new(format!(
            "{} exists but {} does not (an interrupted init?)",
            db_path.display(),
            config_path.display()
        ))
        .hint("if this folder holds no records you need, remove node.db and run init again"));
    }
    if !is_key(&args.device) {
        return Err(CliError::new(format!(
            "device name {:?} must be 1 to 40 characters of a-z, 0-9 and '-'",
            args.device
        )));
    }
    let registry = match &args.registry {
        None => Registry::sample(),
        Some(path) => Registry::from_toml(&read_file(path, "registry")?).map_err(|err| {
            CliError::new(format!("{}: {err}", path.display()))
                .hint("fix the registry file and run init again")
        })?,
    };
    let community = registry.community(&args.community).ok_or_else(|| {
        CliError::new(format!(
            "community {:?} is not in the {}registry ({} communities)",
            args.community,
            if registry.sample { "sample " } else { "" },
            registry.communities.len()
        ))
        .hint("ids are lower-case pinyin or placeholders such as p002-01; ask the district office for yours")
    })?;
    let standard_text = match &args.standard {
        None => SAMPLE_STANDARD_TOML.to_string(),
        Some(path) => read_file(path, "standard")?,
    };
    Standard::from_toml(&standard_text).map_err(|err| {
        CliError::new(err.to_string()).hint("fix the standard file and run init again")
    })?;
    std::fs::create_dir_all(data_dir)
        .map_err(|err| CliError::new(format!("cannot create {}: {err}", data_dir.display())))?;
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
    };
    // The configuration is written last: its presence means "set up".
    write_file(&config_path, &config.to_toml())?;
    out!(
        "Set up {} ({}, {}) as device {} in {}.",
        community.name,
        community.id,
        community.kind.zh(),
        args.device,
        data_dir.display()
    );
    out!("Next: `fivestar-node template apply` creates the standard's tasks for your community.");
    Ok(())
}

fn read_file(path: &Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|err| {
        CliError::new(format!("cannot read the {what} file {}: {err}", path.display()))
    })
}

/// Writes a file whole or not at all (temporary file, fsync, rename).
fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|err| CliError::new(format!("cannot write {}: {err}", path.display())))
}

/// Makes a file readable and writable by its owner and group (0660).
fn group_writable(path: &Path) -> Result<(), CliError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|err| {
            CliError::new(format!("cannot set the permissions of {}: {err}", path.display()))
        })?;
    }
    let _ = path;
    Ok(())
}

/// Holds the data directory's daemon lock while `run` runs: a second `run` on the
/// same folder would sync the same device twice.
fn daemon_lock(data_dir: &Path) -> Result<std::fs::File, CliError> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join("run.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| CliError::new(format!("cannot open {}: {err}", path.display())))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
        return Err(CliError::new(format!(
            "fivestar-node run is already running on {}{who}",
            data_dir.display()
        ))
        .hint("one daemon per data directory: stop the other one first (e.g. `systemctl stop fivestar-node`)"));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// An opened node: its configuration, standard and store.
struct Node {
    config: NodeConfig,
    standard: Standard,
    store: Store,
}

impl Node {
    fn open(data_dir: &Path) -> Result<Node, CliError> {
        let config = NodeConfig::load(data_dir)?;
        let standard_path = NodeConfig::resolve(data_dir, &config.standard);
        let standard =
            Standard::from_toml(&read_file(&standard_path, "standard")?).map_err(|err| {
                CliError::new(format!("{}: {err}", standard_path.display()))
                    .hint("fix the file, or copy a valid standard over it")
            })?;
        let db_path = data_dir.join(DATABASE_FILE);
        if !db_path.exists() {
            return Err(CliError::new(format!("{} is missing", db_path.display()))
                .hint("restore it from a backup, or move the folder away and run init again"));
        }
        let mut store = Store::open(&db_path, &config.community)?;
        let mut config = config;
        let local_standard = standard.clone();
        let mut standard = standard;
        // Once synced, the district's own standard and registry entry win: they are
        // the newest the node has, and they stay in force offline.
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
        // The district's write rules, checked before every edit is saved: the hub
        // checks the same, so nothing this node saves is refused there.
        let mut policy = Policy::new(&config.community, standard.kind(config.kind))?;
        policy.add_edition(local_standard.kind(config.kind))?;
        store.set_policy(policy);
        Ok(Node { config, standard, store })
    }

    fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
        tokio::runtime::Runtime::new()
            .map_err(|err| CliError::new(format!("cannot start the async runtime: {err}")))
    }

    fn sync(self, data_dir: &Path, json: bool) -> Result<(), CliError> {
        let Node { config, store, .. } = self;
        let runtime = Node::runtime()?;
        let report = runtime.block_on(async {
            let store = StoreThread::spawn("node-store", store)
                .map_err(|e| CliError::new(format!("cannot start the store thread: {e}")))?;
            crate::sync::sync_once(&store, &config, data_dir).await.map_err(sync_error)
        })?;
        if json {
            print_json(&report);
        } else {
            out!("Synced with {}: {report}.", config.hub);
        }
        Ok(())
    }

    fn run_daemon(self, data_dir: &Path, json: bool) -> Result<(), CliError> {
        let _lock = daemon_lock(data_dir)?;
        let Node { config, store, .. } = self;
        init_logging(json);
        let runtime = Node::runtime()?;
        runtime.block_on(async {
            let store = StoreThread::spawn("node-store", store)
                .map_err(|e| CliError::new(format!("cannot start the store thread: {e}")))?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            serve_metrics(&config.sync.metrics_listen, stopped.clone()).await;
            tracing::info!(hub = %config.hub, community = %config.community, device = %config.device, "node running; Ctrl-C stops it");
            let daemon = tokio::spawn(crate::sync::run_daemon(store, config, data_dir.to_path_buf(), stopped));
            crate::sync::stop_requested().await;
            let _ = stop.send(true);
            let _ = daemon.await;
            Ok(())
        })
    }

    fn kind(&self) -> &KindStandard {
        self.standard.kind(self.config.kind)
    }

    fn stamp(&self) -> Stamp {
        Stamp { by: format!("device {}", self.config.device), at_ms: Utc::now().timestamp_millis() }
    }

    /// Runs an edit in one durable transaction; `Err` means nothing was written.
    fn write<T>(
        &mut self,
        edit: impl FnOnce(&mut CommunityDoc, &KindStandard, &Stamp) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        let stamp = self.stamp();
        let kind = self.standard.kind(self.config.kind).clone();
        self.store.write(stamp.at_ms, |doc| edit(doc, &kind, &stamp))?
    }

    fn task(&mut self, command: TaskCommand) -> Result<(), CliError> {
        match command {
            TaskCommand::Add { star, title, points, owner, due, note } => {
                let id = format!("t-{:08x}", rand::random::<u32>());
                let new = NewTask { id: id.clone(), star, title, points, owner, due, note };
                let title = new.title.clone();
                self.write(|doc, kind, stamp| Ok(doc.add_task(kind, new, stamp)?))?;
                out!("Saved: new task {id}: {title}");
            }
            TaskCommand::List { star, status, owner, overdue, json } => {
                if let Some(star) = &star
                    && self.kind().star(star).is_none()
                {
                    return Err(EditError::UnknownStar {
                        star: star.clone(),
                        known: self.kind().star_keys().join(", "),
                    }
                    .into());
                }
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
                let doc = self.store.read()?;
                let id = resolve_id(&doc, &id)?;
                let task = doc.task(&id)?;
                let today = Local::now().date_naive();
                if json.json {
                    print_json(&task_json(&task, today));
                } else {
                    self.print_task(&task, today);
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
                    return Err(CliError::new("nothing to change").hint(
                        "give at least one of --title, --star, --points, --owner, --due, --no-due, --status",
                    ));
                }
                let asked = edit.clone();
                let task = self.edit(&id, edit)?;
                // Confirm every field that was asked for, as it now stands.
                let mut now = Vec::new();
                if asked.title.is_some() {
                    now.push(format!("title {:?}", task.title));
                }
                if asked.star.is_some() {
                    now.push(format!("star {}", task.star));
                }
                if asked.points.is_some() {
                    now.push(format!("{} points", task.points));
                }
                if asked.owner.is_some() {
                    now.push(format!("owner {}", task.owner));
                }
                if asked.due.is_some() {
                    now.push(match task.due {
                        Some(d) => format!("due {d}"),
                        None => "no deadline".into(),
                    });
                }
                now.push(format!("{} at {}%", task.status, task.progress));
                out!("Saved: {} now has {}.", task.id, now.join(", "));
            }
            TaskCommand::Progress { id, percent } => {
                let task =
                    self.edit(&id, TaskEdit { progress: Some(percent), ..TaskEdit::default() })?;
                out!("Saved: {} is now {} at {}%.", task.id, task.status, task.progress);
            }
            TaskCommand::Done { id } => {
                let task = self.edit(
                    &id,
                    TaskEdit { status: Some(TaskStatus::Done), ..TaskEdit::default() },
                )?;
                out!("Saved: {} is done.", task.id);
            }
            TaskCommand::Fail { id, note } => {
                let task = self.write(|doc, kind, stamp| {
                    let id = resolve_id(doc, &id)?;
                    doc.edit_task(
                        kind,
                        &id,
                        &TaskEdit { status: Some(TaskStatus::Failed), ..TaskEdit::default() },
                        stamp,
                    )?;
                    if let Some(note) = &note {
                        doc.add_note(&id, note, stamp)?;
                    }
                    Ok(doc.task(&id)?)
                })?;
                if task.veto {
                    out!(
                        "Saved: {} is failed. It is a veto task: star {} cannot be earned while it stays failed.",
                        task.id,
                        task.star
                    );
                } else {
                    out!("Saved: {} is failed.", task.id);
                }
            }
            TaskCommand::Note { id, text } => {
                let task = self.write(|doc, _, stamp| {
                    let id = resolve_id(doc, &id)?;
                    doc.add_note(&id, &text, stamp)?;
                    Ok(doc.task(&id)?)
                })?;
                out!("Saved: note {} on {}.", task.notes.len(), task.id);
            }
            TaskCommand::Withdraw { id, number } => {
                let task = self.write(|doc, _, stamp| {
                    let id = resolve_id(doc, &id)?;
                    doc.withdraw_note(&id, number, stamp)?;
                    Ok(doc.task(&id)?)
                })?;
                out!("Saved: note {number} of {} is withdrawn (it stays in the record).", task.id);
            }
            TaskCommand::Assign { id, owner } => {
                let task =
                    self.edit(&id, TaskEdit { owner: Some(owner), ..TaskEdit::default() })?;
                out!("Saved: {} is now {}'s.", task.id, task.owner);
            }
        }
        Ok(())
    }

    fn edit(&mut self, id: &str, edit: TaskEdit) -> Result<Task, CliError> {
        self.write(|doc, kind, stamp| {
            let id = resolve_id(doc, id)?;
            doc.edit_task(kind, &id, &edit, stamp)?;
            Ok(doc.task(&id)?)
        })
    }

    /// Every task that can be read. A task that cannot (a damaged record: only
    /// changes this program would refuse to make can do that) is left out with a
    /// warning naming what is wrong and the way out; everything else works.
    fn read_tasks(&mut self) -> Result<Vec<Task>, CliError> {
        let doc = self.store.read()?;
        let (tasks, problems) = doc.read();
        if !problems.is_empty() {
            eprintln!(
                "warning: {} problem(s) in the community's records; a task with a problem in a \
                 required field is left out of lists and scores:",
                problems.len()
            );
            for problem in &problems {
                eprintln!("  {problem}");
            }
            eprintln!(
                "  way out: `fivestar-node history ID` shows who changed the task; the \
                 district's operators can repair it (send them this message)"
            );
        }
        Ok(tasks)
    }

    fn template_apply(&mut self) -> Result<(), CliError> {
        let created = self.write(|doc, kind, _| Ok(doc.apply_template(kind)?))?;
        if created.is_empty() {
            out!("The template is applied already: nothing new to create.");
        } else {
            out!(
                "Saved: created {} template tasks for {} ({}). `fivestar-node task list` shows them.",
                created.len(),
                self.config.community_name,
                self.config.kind.zh()
            );
        }
        Ok(())
    }

    fn score(&mut self, json: bool) -> Result<(), CliError> {
        let tasks = self.read_tasks()?;
        let result = score(self.kind(), &tasks);
        if json {
            print_json(&json!({
                "community": self.config.community,
                "kind": self.config.kind,
                "standard": {"version": self.standard.version, "sample": self.standard.sample},
                "score": result,
            }));
            return Ok(());
        }
        self.print_standard_banner();
        let mut table = table(&["Star", "星", "Score", "Pass", "Earned", "Still lacks"]);
        for (star, s) in self.kind().stars.iter().zip(&result.stars) {
            let lacks: Vec<String> = s.lacks.iter().map(|l| l.to_string()).collect();
            table.add_row(vec![
                format!("{}{}", star.key, if star.capstone { " (capstone)" } else { "" }),
                star.zh.clone(),
                format_points(s.score),
                format_points(s.pass_mark),
                if s.earned { "★ yes".into() } else { "☆ no".into() },
                if lacks.is_empty() { "—".into() } else { lacks.join("; ") },
            ]);
        }
        out!("{table}");
        out!(
            "{} ({}): {} {} star(s), total {} of 500.00",
            self.config.community_name,
            self.config.community,
            stars_text(result.stars_earned),
            result.stars_earned,
            format_points(result.total)
        );
        if !result.ignored_tasks.is_empty() {
            out!(
                "Not counted (their star is not one of this kind's): {}",
                result.ignored_tasks.join(", ")
            );
        }
        Ok(())
    }

    fn history(&mut self, task: Option<&str>, json: bool) -> Result<(), CliError> {
        let doc = self.store.read()?;
        let task = match task {
            Some(id) => Some(resolve_id(&doc, id)?),
            None => None,
        };
        let entries = doc.history(task.as_deref());
        let received = self.store.received(&self.store.identity().doc_id())?;
        let origin = |hash: &str| match received.get(hash) {
            Some(ms) => format!("via the district, {}", local_time(*ms)),
            None => "this device".to_string(),
        };
        if json {
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    if let Some(map) = v.as_object_mut() {
                        map.insert("received_ms".into(), json!(received.get(&e.hash)));
                    }
                    v
                })
                .collect();
            print_json(&rows);
            return Ok(());
        }
        let mut table = table(&["When", "Who", "From", "What", "Fields"]);
        for entry in &entries {
            let when = if entry.at_seconds == 0 {
                "(template)".to_string()
            } else {
                local_time(entry.at_seconds * 1000)
            };
            table.add_row(vec![
                when,
                entry.by.clone(),
                origin(&entry.hash),
                entry.action.clone(),
                entry.paths.join("\n"),
            ]);
        }
        out!("{table}");
        out!("{} change(s).", entries.len());
        Ok(())
    }

    fn status(&mut self, json: bool) -> Result<(), CliError> {
        let doc = self.store.read()?;
        let heads: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
        let pending = self.store.pending()?;
        let attempt = self.store.last_sync_attempt()?;
        let last_error = self.store.last_sync_error()?;
        let tasks = doc.task_ids().len();
        let now = Utc::now().timestamp();
        if json {
            print_json(&json!({
                "community": self.config.community,
                "device": self.config.device,
                "hub": self.config.hub,
                "database": self.store.path(),
                "tasks": tasks,
                "heads": heads,
                "unacknowledged_changes": pending.changes,
                "oldest_unacknowledged_age_seconds": pending.oldest_seconds.map(|t| now - t),
                "last_sync_attempt": attempt,
                "last_successful_sync_ms": self.store.last_successful_sync()?,
                "last_error": last_error.map(|(at, e)| json!({"at_ms": at, "error": e})),
                "standard": {"version": self.standard.version, "sample": self.standard.sample},
            }));
            return Ok(());
        }
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        let mut row = |k: &str, v: String| {
            table.add_row(vec![k.to_string(), v]);
        };
        row("Community", format!("{} ({})", self.config.community_name, self.config.community));
        row("Device", self.config.device.clone());
        row("Hub", self.config.hub.clone());
        row("Database", self.store.path().display().to_string());
        row("Tasks", tasks.to_string());
        row("Local heads", heads.iter().map(|h| &h[..12]).collect::<Vec<_>>().join(", "));
        row(
            "Not yet at the hub",
            match pending.oldest_seconds {
                None => "nothing: every change is acknowledged".to_string(),
                Some(oldest) => format!(
                    "{} change(s), the oldest from {} ({} ago)",
                    pending.changes,
                    local_time(oldest * 1000),
                    age_text(now - oldest)
                ),
            },
        );
        row(
            "Last sync attempt",
            match &attempt {
                None => "never".to_string(),
                Some(a) => format!(
                    "{}: {}",
                    local_time(a.started_ms),
                    if a.ok {
                        format!("ok, {}", a.summary.clone().unwrap_or_default())
                    } else if a.finished_ms.is_none() {
                        "did not finish".to_string()
                    } else {
                        "failed".to_string()
                    }
                ),
            },
        );
        row(
            "Last error",
            match last_error {
                None => "none".to_string(),
                Some((at, error)) => format!("{}: {error}", local_time(at)),
            },
        );
        row(
            "Standard",
            format!(
                "{}{}",
                self.standard.version,
                if self.standard.sample { " (SAMPLE, not the district's own)" } else { "" }
            ),
        );
        out!("{table}");
        Ok(())
    }

    fn print_standard_banner(&self) {
        if self.standard.sample {
            out!(
                "Scored against the SAMPLE standard {} (not the district's own rulebook).",
                self.standard.version
            );
        }
    }

    fn star_label(&self, key: &str) -> String {
        match self.kind().star(key) {
            Some(star) => star.zh.clone(),
            None => format!("{key} (?)"),
        }
    }

    fn print_task_table(&self, tasks: &[Task], today: NaiveDate) {
        let mut table =
            table(&["ID", "星", "Task", "Pts", "Status", "%", "Owner", "Due", "Review"]);
        for t in tasks {
            table.add_row(vec![
                t.id.clone(),
                self.star_label(&t.star),
                t.title.clone(),
                t.points.to_string(),
                t.status.to_string(),
                t.effective_progress().to_string(),
                t.owner.clone(),
                match t.due {
                    None => String::new(),
                    Some(d) if t.is_overdue(today) => format!("{d} overdue"),
                    Some(d) => d.to_string(),
                },
                review_text(t),
            ]);
        }
        out!("{table}");
        out!("{} task(s).", tasks.len());
    }

    fn print_task(&self, t: &Task, today: NaiveDate) {
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        let mut row = |k: &str, v: String| {
            table.add_row(vec![k.to_string(), v]);
        };
        row("ID", t.id.clone());
        row("Task", t.title.clone());
        row("Star", format!("{} ({})", self.star_label(&t.star), t.star));
        row("Points", format!("{}{}", t.points, if t.veto { " (veto task)" } else { "" }));
        row("Status", format!("{}, {}%", t.status, t.effective_progress()));
        row("Owner", if t.owner.is_empty() { "(nobody yet)".into() } else { t.owner.clone() });
        row(
            "Due",
            match t.due {
                None => "(no deadline)".into(),
                Some(d) if t.is_overdue(today) => format!("{d} (overdue)"),
                Some(d) => d.to_string(),
            },
        );
        row("Earned", format!("{} points", format_points(earned_hundredths(t))));
        row("Review", review_text(t));
        if let Some(review) = &t.review {
            row(
                "Reviewed",
                format!("{} by {}: {}", local_time(review.at_ms), review.reviewer, review.comment),
            );
            if review.overridden {
                row("Note", "accepted before it was done (the reviewer overrode)".into());
            }
            let (star, points) = t.counted_star_and_points();
            if t.verdict().is_some() && (star != t.star || points != t.points) {
                row(
                    "Counts as",
                    format!("{points} points of {} (as reviewed)", self.star_label(star)),
                );
            }
            let changed = t.changed_fields();
            if !changed.is_empty() {
                row(
                    "Changed since review",
                    format!(
                        "{}: the verdict stands; the district will look again",
                        changed.join(", ")
                    ),
                );
            }
            if t.is_accepted() {
                row(
                    "Locked",
                    "status, progress, star and points (ask the district to reopen)".into(),
                );
            }
        }
        row(
            "From",
            t.template.clone().map(|k| format!("template {k}")).unwrap_or("own task".into()),
        );
        out!("{table}");
        if t.notes.is_empty() {
            out!("No evidence notes yet.");
        } else {
            out!("Evidence notes:");
            for (i, note) in t.notes.iter().enumerate() {
                let withdrawn = match &note.withdrawn {
                    Some(w) => format!(" [withdrawn by {} at {}]", w.by, local_time(w.at_ms)),
                    None => String::new(),
                };
                out!(
                    "  {}. {} ({}, {}){withdrawn}",
                    i + 1,
                    note.text,
                    note.by,
                    local_time(note.at_ms)
                );
            }
        }
    }
}

/// Finds a task by exact id or by a unique beginning of one.
fn resolve_id(doc: &CommunityDoc, given: &str) -> Result<String, CliError> {
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
        many => Err(CliError::new(format!(
            "{given:?} is the beginning of {} task ids: {}",
            many.len(),
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .hint("type more of the id")),
    }
}

fn sync_error(err: crate::sync::SyncError) -> CliError {
    use crate::sync::SyncError;
    let hint = match &err {
        SyncError::Certificate { .. } => {
            "issue the device's certificate with `fivestar-hub pki issue` and copy it to the paths in node.toml"
        }
        SyncError::CertificateRefused(_) => {
            "ask the district office for a valid device certificate"
        }
        SyncError::Unreachable { .. } | SyncError::BadAddress(_) => {
            "check the link and the hub address in node.toml; every edit stays saved here meanwhile"
        }
        SyncError::Refused { .. } => {
            "the hub names the rule above; `fivestar-node status` keeps this error"
        }
        SyncError::Protocol(_) | SyncError::Store(_) => {
            "try again; if it persists, send node.db to the district's operators"
        }
    };
    CliError::new(err.to_string()).hint(hint)
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

fn review_text(t: &Task) -> String {
    let verdict = match t.review.as_ref().map(|r| r.verdict) {
        None => return String::new(),
        Some(Verdict::Accepted { awarded: None }) => "accepted".to_string(),
        Some(Verdict::Accepted { awarded: Some(a) }) => format!("accepted, {a} pts"),
        Some(Verdict::Rejected) => "rejected".into(),
        Some(Verdict::Reopened) => "reopened".into(),
    };
    if t.changed_since_review() { format!("{verdict}; changed since review") } else { verdict }
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
