//! `fivestar-hub`: the district office's and operators' command line.

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

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use fivestar_core::{Kind, Verdict, Writer};

use crate::config::HubConfig;
use crate::pki::Pki;
use crate::report::{self, StandingsView};
use crate::server::{DATABASE_FILE, standard_and_registry};
use crate::store::HubStore;

/// The command line of `fivestar-hub`.
#[derive(Debug, Parser)]
#[command(
    name = "fivestar-hub",
    version,
    about = "The district hub of the Five-Star Party Branch campaign: sync with every \
             community, record reviews, manage certificates.",
    after_help = "First time: `fivestar-hub pki init`, then `fivestar-hub serve`."
)]
pub struct Cli {
    /// The hub's data directory (database, PKI, hub.toml).
    /// Default: the FIVESTAR_HUB_DIR variable, else fivestar-hub in your data folder.
    #[arg(long, global = true, env = "FIVESTAR_HUB_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The configuration file (default: hub.toml in the data directory, if present;
    /// otherwise the built-in defaults).
    #[arg(long, global = true, env = "FIVESTAR_HUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write logs as JSON lines instead of readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The hub's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub until Ctrl-C.
    Serve,
    /// Record the district's verdict on a community's task.
    Review(ReviewArgs),
    /// The district's accounts for the review desk and dashboard (web pages).
    #[command(subcommand)]
    User(UserCommand),
    /// Certificates: the district CA, device and reviewer certificates, revocation.
    Pki(PkiArgs),
    /// The district's standings: ranks, stars, scores and freshness of every community.
    Standings(StandingsArgs),
    /// One community: its tasks with earned points and reviews, and what each star lacks.
    Community {
        /// The community's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every change of a community's document (or of one task): what it claims (who,
    /// when, what) beside what the hub recorded (which identity delivered it, when).
    History {
        /// The community's id.
        community: String,
        /// Only changes touching this task.
        #[arg(long)]
        task: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How many communities hold five, four, three... stars, per subdistrict and in total.
    Tiers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sync health: one row per community and device, problems first, and a summary.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evidence files at the hub: what each community holds, and removing files no
    /// document names any more.
    #[command(subcommand)]
    Files(FilesCommand),
    /// Write a consistent copy of the hub's database (safe while the hub runs).
    Backup {
        /// The file to write; it must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write the standings as one self-contained HTML page.
    Report {
        /// The file to write.
        #[arg(long, value_name = "FILE.html")]
        out: PathBuf,
        /// A past snapshot instead of now (see `standings --at`).
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        at: Option<i64>,
    },
}

/// `files` subcommands (safe while the hub runs).
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Each community's evidence files: whole, still arriving, bytes, and its quota.
    Usage {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the files (whole or partial) that no community document names. A file
    /// any note names, withdrawn or not, is kept: notes are withdrawn, never deleted.
    Gc {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `user` subcommands. Passwords are read from standard input (asked for, without
/// echo, on a terminal), never from the command line.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account.
    Add {
        /// The sign-in name: a-z, 0-9 and '-', e.g. wangmin.
        name: String,
        /// The name shown to reviewers and communities, e.g. 王敏.
        #[arg(long)]
        display: String,
        /// office (every star), star:<key> (one star's task force, e.g. star:industry)
        /// or operator (dashboard and status; does not review).
        #[arg(long)]
        role: String,
    },
    /// List the accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: it can no longer sign in or review (its reviews stay).
    Disable {
        /// The sign-in name.
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The sign-in name.
        name: String,
    },
    /// Set a new password.
    Passwd {
        /// The sign-in name.
        name: String,
    },
}

/// `standings`' arguments.
#[derive(Debug, Args)]
pub struct StandingsArgs {
    /// Only this subdistrict (its code, e.g. 006, or its name, e.g. 五一路).
    #[arg(long)]
    pub subdistrict: Option<String>,
    /// Only this kind: urban or agricultural.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// The standings recorded at this time (the newest snapshot at or before it):
    /// 2026-11-26, "2026-11-26 14:30" (local time) or RFC 3339.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub at: Option<i64>,
    /// Measure rank changes against the standings at this time (default: the
    /// previous snapshot).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<i64>,
    /// Recompute the snapshot shown (or the newest) from its recorded heads and say
    /// whether it comes out identical.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    text.parse()
}

/// Parses a time given on the command line into Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let local = |naive: NaiveDateTime| {
        Local.from_local_datetime(&naive).earliest().map(|t| t.timestamp_millis())
    };
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive).ok_or_else(|| format!("{text:?} does not exist in local time"));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let end = date.and_hms_opt(23, 59, 59).unwrap_or_default();
        return local(end).ok_or_else(|| format!("{text:?} does not exist in local time"));
    }
    Err(format!(
        "{text:?} is not a time: write 2026-11-26, \"2026-11-26 14:30\" or 2026-11-26T14:30:00+08:00"
    ))
}

/// `review`'s arguments.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The community's id, e.g. fangou.
    pub community: String,
    /// The task's id, as the community's node shows it.
    pub task: String,
    /// The verdict.
    #[command(subcommand)]
    pub verdict: VerdictArg,
    /// The reviewer's comment.
    #[arg(long, default_value = "", global = true)]
    pub comment: String,
    /// Who reviews (a name; shown in the community's history; listed in [reviewers]
    /// of hub.toml when any reviewer is).
    #[arg(long, global = true)]
    pub reviewer: Option<String>,
    /// Accept a task that is not done (at less than 100 %): the review says so.
    #[arg(long = "override", global = true)]
    pub override_not_done: bool,
}

/// A verdict on the command line.
#[derive(Debug, Clone, Subcommand)]
pub enum VerdictArg {
    /// Accept the task (full points, or --awarded).
    Accept {
        /// Points awarded, at most the task's points (default: full points).
        #[arg(long)]
        awarded: Option<u32>,
    },
    /// Reject the task: it earns nothing (a comment saying why is required).
    Reject,
    /// Clear the verdict in force (a comment saying why is required): the task counts
    /// as not reviewed and waits in the queue again.
    Reopen,
}

/// `pki`: the CA folder and the subcommand.
#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    /// The CA folder (the CA's private key and the index of issued certificates),
    /// e.g. on the offline disk it is kept on. Default: `ca_dir` of hub.toml, else
    /// `<data directory>-ca` beside the data directory.
    #[arg(long, global = true, env = "FIVESTAR_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: PkiCommand,
}

/// `pki` subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the district CA, the hub's certificate and an empty revocation list.
    Init,
    /// Issue a certificate for a community device or a reviewer.
    Issue {
        #[command(flatten)]
        who: WhoArgs,
        /// Where to write device.pem, device.key and ca.pem
        /// (default: <pki>/issued/<community>-<device> or reviewer-<name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Revoke every certificate of a device or reviewer; the hub refuses it from the
    /// next connection on.
    Revoke {
        #[command(flatten)]
        who: WhoArgs,
    },
}

/// A device (community + device) or a reviewer.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct WhoArgs {
    /// The device's community id.
    #[arg(long, requires = "device", conflicts_with = "reviewer")]
    pub community: Option<String>,
    /// The device's name, e.g. d1.
    #[arg(long, requires = "community")]
    pub device: Option<String>,
    /// A district reviewer's id (a-z, 0-9, '-').
    #[arg(long)]
    pub reviewer: Option<String>,
}

impl WhoArgs {
    fn writer(&self) -> Writer {
        match (&self.community, &self.device, &self.reviewer) {
            (Some(community), Some(device), _) => {
                Writer::Device { community: community.clone(), device: device.clone() }
            }
            (_, _, Some(name)) => {
                Writer::Reviewer { name: name.clone(), role: fivestar_core::Role::Office }
            }
            // clap's group rules make this unreachable; say so plainly if not.
            _ => Writer::Reviewer { name: String::new(), role: fivestar_core::Role::Office },
        }
    }
}

/// A mistake explained: what is wrong, and how to fix it.
#[derive(Debug)]
pub struct CliError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl CliError {
    fn new(message: impl std::fmt::Display) -> CliError {
        CliError { message: message.to_string(), hint: None }
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

/// The data directory and configuration the command line points at.
pub fn resolve(cli: &Cli) -> Result<(PathBuf, HubConfig), CliError> {
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None => dirs::data_dir().map(|d| d.join("fivestar-hub")).ok_or_else(|| {
            CliError::new("no data directory given and this system has no default data folder")
                .hint("pass --data-dir DIR or set FIVESTAR_HUB_DIR")
        })?,
    };
    let config = match &cli.config {
        Some(path) => HubConfig::load(path).map_err(CliError::new)?,
        None if data_dir.join("hub.toml").exists() => {
            HubConfig::load(&data_dir.join("hub.toml")).map_err(CliError::new)?
        }
        None => HubConfig::default(),
    };
    Ok((data_dir, config))
}

/// Runs the commands that are not `serve`.
pub fn run_offline(command: &Command, data_dir: &Path, config: &HubConfig) -> Result<(), CliError> {
    match command {
        Command::Pki(args) => {
            let pki = Pki::with_ca_dir(
                &HubConfig::resolve(data_dir, &config.pki_dir),
                &config.resolve_ca_dir(data_dir, args.ca_dir.as_deref()),
            );
            if pki.key_beside_hub() {
                eprintln!(
                    "warning: the CA's key is still beside the hub's data in {}; move ca.key and \
                     issued.json to {} (or to an offline disk given with --ca-dir)",
                    HubConfig::resolve(data_dir, &config.pki_dir).display(),
                    pki.ca_dir().display()
                );
            }
            run_pki(&args.command, &pki, data_dir, config)
        }
        Command::Serve => Err(CliError::new("serve runs in the async runtime")),
        other => run_other(other, data_dir, config),
    }
}

fn run_pki(
    command: &PkiCommand,
    pki: &Pki,
    data_dir: &Path,
    config: &HubConfig,
) -> Result<(), CliError> {
    match command {
        PkiCommand::Init => {
            pki.init(&config.hub_names).map_err(CliError::new)?;
            out!(
                "Created the district CA and the hub's certificate in {}.",
                pki.ca_cert().parent().unwrap_or(data_dir).display()
            );
            out!(
                "The CA's private key is in {}: the hub never needs it. Keep that folder on an \
                 offline machine or disk and give it with --ca-dir when issuing or revoking.",
                pki.ca_dir().display()
            );
            out!("Hub certificate names: {}", config.hub_names.join(", "));
            out!(
                "Next: `fivestar-hub pki issue --community <id> --device <name>` for each device."
            );
            Ok(())
        }
        PkiCommand::Issue { who, out } => {
            let writer = who.writer();
            if let Writer::Device { community, .. } = &writer {
                let (_, registry) =
                    standard_and_registry(config, data_dir).map_err(CliError::new)?;
                let registry =
                    fivestar_core::Registry::from_toml(&registry).map_err(CliError::new)?;
                if registry.community(community).is_none() {
                    return Err(CliError::new(format!(
                        "community {community:?} is not in the district registry"
                    ))
                    .hint("check the id; the registry lists every community the hub accepts"));
                }
            }
            let out = out.clone().unwrap_or_else(|| {
                let dir = pki.ca_cert().parent().map(Path::to_path_buf).unwrap_or_default();
                match &writer {
                    Writer::Device { community, device } => {
                        dir.join("issued").join(format!("{community}-{device}"))
                    }
                    Writer::Reviewer { name, .. } => {
                        dir.join("issued").join(format!("reviewer-{name}"))
                    }
                }
            });
            let issued = pki.issue(&writer, &out).map_err(CliError::new)?;
            out!("Issued {} (serial {}) into {}:", issued.identity, issued.serial, out.display());
            out!("  device.pem, device.key (private, mode 0600), ca.pem");
            match &writer {
                Writer::Device { .. } => {
                    out!("Copy them into the node's certs/ folder (see deploy/node.example.toml).")
                }
                Writer::Reviewer { .. } => out!(
                    "Give them to the reviewer's workstation: they identify the reviewer to the \
                     hub's gRPC services (Query, and sync for a reviewer's own node)."
                ),
            }
            Ok(())
        }
        PkiCommand::Revoke { who } => {
            let writer = who.writer();
            let count = pki.revoke(&writer).map_err(CliError::new)?;
            out!(
                "Revoked {count} certificate(s) of {writer}. A running hub refuses them from the next connection on."
            );
            Ok(())
        }
    }
}

fn run_other(command: &Command, data_dir: &Path, config: &HubConfig) -> Result<(), CliError> {
    match command {
        Command::Serve | Command::Pki(_) => Err(CliError::new("not an offline command")),
        Command::Review(args) => review(args, data_dir, config),
        Command::User(command) => user(command, data_dir, config),
        Command::Files(command) => files(command, data_dir, config),
        Command::Standings(args) => {
            let mut store = open_store(data_dir, config)?;
            let view = standings_view(&mut store, config, args.at, args.since)?;
            if args.verify {
                verify(&mut store, view.snapshot)?;
            }
            let view = filter(view, &store, args.subdistrict.as_deref(), args.kind)?;
            if args.json {
                out!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
            } else if args.csv {
                let csv = report::csv(&view).map_err(CliError::new)?;
                out!("{}", csv.trim_end());
            } else {
                out!("{}", report::table(&view, store.standard()));
            }
            Ok(())
        }
        Command::Tiers { json } => {
            let mut store = open_store(data_dir, config)?;
            let view = standings_view(&mut store, config, None, None)?;
            if *json {
                out!("{}", serde_json::to_string_pretty(&view.tiers).unwrap_or_default());
            } else {
                out!("{}", report::tiers_table(&view.tiers));
                out!("As of {}.", report::local_time(view.computed_ms));
            }
            Ok(())
        }
        Command::Report { out, at } => {
            let mut store = open_store(data_dir, config)?;
            let view = standings_view(&mut store, config, *at, None)?;
            let html = report::html(&view, store.standard());
            std::fs::write(out, html)
                .map_err(|e| CliError::new(format!("cannot write {}: {e}", out.display())))?;
            out!(
                "Wrote {} ({} communities, as of {}).",
                out.display(),
                view.rows.len(),
                report::local_time(view.computed_ms)
            );
            Ok(())
        }
        Command::Community { id, json } => community(data_dir, config, id, *json),
        Command::History { community, task, json } => {
            history(data_dir, config, community, task.as_deref(), *json)
        }
        Command::Backup { out } => {
            if out.exists() {
                return Err(CliError::new(format!("{} exists already", out.display()))
                    .hint("choose a new file name; nothing was written"));
            }
            let mut store = open_store(data_dir, config)?;
            store.docs().backup_to(out).map_err(CliError::new)?;
            let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
            out!(
                "Backed up {} to {} ({size} bytes). To restore: stop the hub, copy it over hub.db \
                 (removing hub.db-wal and hub.db-shm), start the hub. Keep pki/ backed up too.",
                data_dir.join(DATABASE_FILE).display(),
                out.display()
            );
            Ok(())
        }
        Command::Status { json } => {
            let store = open_store(data_dir, config)?;
            let peers = store.peers().map_err(CliError::new)?;
            let now = Utc::now().timestamp_millis();
            let (rows, summary) = crate::status::status(
                store.registry(),
                &peers,
                now,
                config.stale_after().num_milliseconds(),
            );
            if *json {
                let out = serde_json::json!({ "summary": summary, "summary_text": summary.to_string(), "rows": rows });
                out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                out!("{}", status_table(&rows));
                out!("{summary}.");
            }
            Ok(())
        }
    }
}

fn open_store(data_dir: &Path, config: &HubConfig) -> Result<HubStore, CliError> {
    let db = data_dir.join(DATABASE_FILE);
    if !db.exists() {
        return Err(CliError::new(format!("no hub database at {}", db.display()))
            .hint("start the hub once (`fivestar-hub serve`) or check --data-dir"));
    }
    let (standard, registry) = standard_and_registry(config, data_dir).map_err(CliError::new)?;
    let mut store = HubStore::open(&db, &standard, &registry, Utc::now().timestamp_millis())
        .map_err(CliError::new)?;
    let roles = config
        .reviewer_roles(store.standard())
        .map_err(|e| CliError::new(format!("hub.toml: {e}")).hint("fix [reviewers] in hub.toml"))?;
    store.set_reviewers(roles);
    Ok(store)
}

/// The standings view for the command line, errors explained.
fn standings_view(
    store: &mut HubStore,
    config: &HubConfig,
    at: Option<i64>,
    since: Option<i64>,
) -> Result<StandingsView, CliError> {
    report::standings_view(store, config.stale_after(), at, since).map_err(|err| {
        let hint = match &err {
            report::ViewError::NoSnapshot { .. } => {
                "the hub records standings while it runs; try a later time"
            }
            report::ViewError::Store(_) => "check the hub's data directory",
        };
        CliError::new(err).hint(hint)
    })
}

fn filter(
    mut view: StandingsView,
    store: &HubStore,
    subdistrict: Option<&str>,
    kind: Option<Kind>,
) -> Result<StandingsView, CliError> {
    if let Some(wanted) = subdistrict {
        let code = store
            .registry()
            .subdistricts
            .iter()
            .find(|s| s.code == wanted || s.name == wanted || format!("{}街道", s.name) == wanted)
            .map(|s| s.code.clone())
            .ok_or_else(|| {
                let known: Vec<String> = store
                    .registry()
                    .subdistricts
                    .iter()
                    .map(|s| format!("{} {}", s.code, s.name))
                    .collect();
                CliError::new(format!("no subdistrict {wanted:?}"))
                    .hint(format!("use one of: {}", known.join(", ")))
            })?;
        view.rows.retain(|r| r.standing.subdistrict == code);
    }
    if let Some(kind) = kind {
        view.rows.retain(|r| r.standing.kind == kind);
    }
    let rows: Vec<fivestar_core::Standing> = view.rows.iter().map(|r| r.standing.clone()).collect();
    view.tiers = fivestar_core::tiers(store.registry(), &rows);
    if subdistrict.is_some() {
        let code = rows.first().map(|r| r.subdistrict.clone());
        view.tiers.subdistricts.retain(|(c, _, _)| Some(c) == code.as_ref());
    }
    Ok(view)
}

fn verify(store: &mut HubStore, snapshot: Option<i64>) -> Result<(), CliError> {
    let snap = match snapshot {
        Some(id) => store.snapshot(id),
        None => store.snapshot_at(None),
    }
    .map_err(CliError::new)?
    .ok_or_else(|| {
        CliError::new("no standings snapshot is recorded yet")
            .hint("start the hub: it records standings as nodes sync")
    })?;
    let recomputed = store.recompute(&snap).map_err(CliError::new)?;
    if recomputed == snap.rows {
        eprintln!(
            "Verified: snapshot {} ({}) recomputed from its recorded heads is identical ({} communities).",
            snap.id,
            report::local_time(snap.computed_ms),
            snap.rows.len()
        );
        Ok(())
    } else {
        let differing: Vec<String> = snap
            .rows
            .iter()
            .zip(&recomputed)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.community.clone())
            .collect();
        Err(CliError::new(format!(
            "snapshot {} does not recompute identically; differing rows: {}",
            snap.id,
            differing.join(", ")
        ))
        .hint("send hub.db to the maintainers: this is a bug"))
    }
}

fn history(
    data_dir: &Path,
    config: &HubConfig,
    id: &str,
    task: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let mut store = open_store(data_dir, config)?;
    if store.registry().community(id).is_none() {
        return Err(CliError::new(format!("community {id:?} is not in the district registry"))
            .hint("`fivestar-hub standings` lists every community with its id"));
    }
    let doc = store.community(id).map_err(CliError::new)?.ok_or_else(|| {
        CliError::new(format!("community {id:?} has never synced: the hub holds nothing of it"))
    })?;
    if let Some(task) = task
        && !doc.task_ids().iter().any(|t| t == task)
    {
        return Err(CliError::new(format!("there is no task {task:?} in community {id}"))
            .hint(format!("`fivestar-hub community {id}` lists its tasks")));
    }
    let deliveries =
        store.deliveries(&crate::store::community_doc_id(id)).map_err(CliError::new)?;
    let entries = doc.history(task);
    if json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let delivered = deliveries.get(&e.hash);
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert("delivered_by".into(), delivered.map(|d| d.0.clone()).into());
                    map.insert("delivered_ms".into(), delivered.map(|d| d.1).into());
                }
                v
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        return Ok(());
    }
    let mut table = report::grid(&[
        "When (claimed)",
        "Who (claimed)",
        "Delivered by",
        "Received",
        "What",
        "Fields",
    ]);
    for e in &entries {
        let (by, at) = match deliveries.get(&e.hash) {
            Some((peer, ms)) => (peer.clone(), report::local_time(*ms)),
            None if e.at_seconds == 0 => ("(template)".into(), "—".into()),
            None => ("(before the audit)".into(), "—".into()),
        };
        table.add_row(vec![
            if e.at_seconds == 0 {
                "(template)".into()
            } else {
                report::local_time(e.at_seconds * 1000)
            },
            e.by.clone(),
            by,
            at,
            e.action.clone(),
            e.paths.join("\n"),
        ]);
    }
    out!("{table}");
    out!(
        "{} change(s). \"Delivered by\" is the certificate or account the hub recorded; \"Who\" is what the change itself says.",
        entries.len()
    );
    Ok(())
}

fn community(data_dir: &Path, config: &HubConfig, id: &str, json: bool) -> Result<(), CliError> {
    let mut store = open_store(data_dir, config)?;
    let entry = store.registry().community(id).cloned().ok_or_else(|| {
        CliError::new(format!("community {id:?} is not in the district registry"))
            .hint("`fivestar-hub standings` lists every community with its id")
    })?;
    let view = standings_view(&mut store, config, None, None)?;
    let standing = view.rows.iter().find(|r| r.standing.community == id).cloned();
    let doc = store.community(id).map_err(CliError::new)?;
    let tasks = doc.map(|d| d.read().0).unwrap_or_default();
    let kind = store.standard().kind(entry.kind).clone();
    let score = fivestar_core::score(&kind, &tasks);
    if json {
        let tasks: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert(
                        "earned_hundredths".into(),
                        fivestar_core::earned_hundredths(t).into(),
                    );
                }
                v
            })
            .collect();
        let out = serde_json::json!({ "standing": standing, "score": score, "tasks": tasks });
        out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    out!("{}", report::community_text(&entry, standing.as_ref(), &kind, &score, &tasks).trim_end());
    Ok(())
}

fn review(args: &ReviewArgs, data_dir: &Path, config: &HubConfig) -> Result<(), CliError> {
    let reviewer = args.reviewer.clone().filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        CliError::new("who is reviewing? --reviewer NAME is required")
            .hint("the reviewer's account name (`fivestar-hub user list`), e.g. --reviewer wangmin")
    })?;
    let mut store = open_store(data_dir, config)?;
    let now = Utc::now().timestamp_millis();
    let verdict = match args.verdict {
        VerdictArg::Accept { awarded } => Verdict::Accepted { awarded },
        VerdictArg::Reject => Verdict::Rejected,
        VerdictArg::Reopen => Verdict::Reopened,
    };
    // Who ran the command is recorded beside the reviewer it names: the shell on the
    // hub's machine is trusted, the account decides what may be reviewed.
    let os_user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    let via = if os_user.is_empty() {
        "command line".to_string()
    } else {
        format!("command line as {os_user}")
    };
    let has_accounts = store.has_accounts().map_err(CliError::new)?;
    let desk_reviewer = match store.account(&reviewer).map_err(CliError::new)? {
        Some(account) => crate::desk::Reviewer::account(&account, &via),
        None if has_accounts => {
            return Err(CliError::new(format!("{reviewer:?} is not an account of this hub")).hint(
                "name a reviewer's account (`fivestar-hub user list`); nothing was recorded",
            ));
        }
        None => crate::desk::Reviewer { name: reviewer.clone(), display: reviewer.clone(), via },
    };
    let decision = crate::desk::Decision {
        verdict,
        comment: args.comment.clone(),
        override_not_done: args.override_not_done,
    };
    crate::desk::review(&mut store, &desk_reviewer, &args.community, &args.task, &decision, now)
        .map_err(|err| {
            let hint = match &err {
                crate::store::ReviewError::Edit(fivestar_core::EditError::UnknownTask { .. }) => {
                    "the task must have reached the hub: check the id, or wait for the community's next sync"
                }
                crate::store::ReviewError::UnknownCommunity(_) => {
                    "check the community id in the registry"
                }
                crate::store::ReviewError::Edit(fivestar_core::EditError::NotDone { .. }) => {
                    "add --override to accept it anyway (the review will say so), or wait until it is done"
                }
                crate::store::ReviewError::Edit(
                    fivestar_core::EditError::CommentRequired { .. },
                ) => "add --comment \"...\" saying why",
                crate::store::ReviewError::Denied(_) => {
                    "nothing was recorded; see the account's role (`fivestar-hub user list`) or [reviewers] in hub.toml"
                }
                _ => "nothing was recorded",
            };
            CliError::new(err).hint(hint)
        })?;
    let name =
        store.registry().community(&args.community).map(|c| c.name.clone()).unwrap_or_default();
    let word = match verdict {
        Verdict::Accepted { awarded: Some(a) } => format!("accepted with {a} points"),
        Verdict::Accepted { awarded: None } => "accepted with full points".to_string(),
        Verdict::Rejected => "rejected".to_string(),
        Verdict::Reopened => "reopened".to_string(),
    };
    let note = if args.override_not_done && matches!(verdict, Verdict::Accepted { .. }) {
        " The review records that it was accepted before it was done."
    } else {
        ""
    };
    let delivery = if hub_is_running(config) {
        "The hub is running: connected devices get it within a second, the others at their next sync."
    } else {
        "The hub is not running here: devices get it once `fivestar-hub serve` runs and they sync."
    };
    out!(
        "Recorded: {} of {name} ({}) {word} by {}.{note} {delivery}",
        args.task,
        args.community,
        desk_reviewer.display
    );
    if !has_accounts {
        eprintln!(
            "note: this hub has no accounts yet, so --reviewer is taken at its word; \
             `fivestar-hub user add` creates reviewers' accounts"
        );
    }
    Ok(())
}

/// Whether a hub answers on this configuration's gRPC address (on this machine).
fn hub_is_running(config: &HubConfig) -> bool {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)).is_ok()
}

/// Reads a password: asked for without echo on a terminal (twice), else the first
/// line of standard input.
fn read_password(what: &str) -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("{what}: "))
            .map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Again: ")
            .map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(CliError::new("the two passwords differ; nothing was changed"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::new(format!("cannot read the password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < 10 {
        return Err(CliError::new("a password needs at least 10 characters; nothing was changed"));
    }
    Ok(password)
}

fn files(command: &FilesCommand, data_dir: &Path, config: &HubConfig) -> Result<(), CliError> {
    let mut store = open_store(data_dir, config)?;
    let quota = config.limits.file_quota_bytes_per_community;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    match command {
        FilesCommand::Usage { json } => {
            let usage = store.file_usage().map_err(CliError::new)?;
            if *json {
                let rows: Vec<serde_json::Value> = usage
                    .iter()
                    .map(|u| {
                        let mut v = serde_json::to_value(u).unwrap_or_default();
                        if let Some(m) = v.as_object_mut() {
                            m.insert("quota_bytes".into(), quota.into());
                        }
                        v
                    })
                    .collect();
                out!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
                return Ok(());
            }
            if usage.is_empty() {
                out!("No evidence files at the hub yet.");
                return Ok(());
            }
            let mut table = report::grid(&["Community", "Whole", "Arriving", "Size", "Of quota"]);
            for u in &usage {
                let share = (u.bytes * 100).checked_div(quota).unwrap_or(0);
                table.add_row(vec![
                    u.community.clone(),
                    u.complete.to_string(),
                    u.partial.to_string(),
                    mib(u.bytes),
                    format!("{share}% of {}", mib(quota)),
                ]);
            }
            out!("{table}");
        }
        FilesCommand::Gc { dry_run, json } => {
            let collected = store.collect_files(*dry_run).map_err(CliError::new)?;
            if *json {
                let value = serde_json::json!({
                    "dry_run": dry_run,
                    "files": collected.files.iter().map(|(c, h, b)| serde_json::json!({
                        "community": c, "sha256": h, "bytes": b
                    })).collect::<Vec<_>>(),
                    "bytes": collected.bytes,
                });
                out!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
                return Ok(());
            }
            for (community, hash, bytes) in &collected.files {
                out!("{community}  {hash}  {}", mib(*bytes));
            }
            let verb = if *dry_run { "Would delete" } else { "Deleted" };
            out!(
                "{verb} {} file(s) no document names, {}. Every file a note names is kept.",
                collected.files.len(),
                mib(collected.bytes)
            );
        }
    }
    Ok(())
}

fn user(command: &UserCommand, data_dir: &Path, config: &HubConfig) -> Result<(), CliError> {
    use crate::store::accounts::{Account, AccountRole, hash_password};
    let store = open_store(data_dir, config)?;
    let now = Utc::now().timestamp_millis();
    let missing = |name: &str| {
        CliError::new(format!("no account {name:?}")).hint("`fivestar-hub user list` shows them")
    };
    match command {
        UserCommand::Add { name, display, role } => {
            if !fivestar_core::standard::is_key(name) {
                return Err(CliError::new(format!(
                    "account name {name:?} must be 1 to 40 characters of a-z, 0-9 and '-'"
                ))
                .hint("e.g. wangmin; the Chinese name goes in --display"));
            }
            let display = display.trim();
            if display.is_empty() || display.chars().count() > 40 {
                return Err(CliError::new("--display must be 1 to 40 characters, e.g. 王敏"));
            }
            let role = AccountRole::parse(role).map_err(CliError::new)?;
            if let Some(star) = role.star()
                && fivestar_core::Kind::ALL
                    .iter()
                    .all(|k| store.standard().kind(*k).star(star).is_none())
            {
                let mut keys: Vec<&str> = fivestar_core::Kind::ALL
                    .iter()
                    .flat_map(|k| store.standard().kind(*k).star_keys())
                    .collect();
                keys.sort();
                keys.dedup();
                return Err(CliError::new(format!(
                    "{star:?} is not a star of the standard: use one of {}",
                    keys.join(", ")
                )));
            }
            let password = read_password("Password")?;
            let account = Account {
                name: name.clone(),
                display: display.to_string(),
                role,
                disabled: false,
                password_hash: hash_password(&password).map_err(CliError::new)?,
            };
            if !store.add_account(&account, now).map_err(CliError::new)? {
                return Err(CliError::new(format!("account {name:?} exists already"))
                    .hint("`fivestar-hub user passwd NAME` sets a new password"));
            }
            out!("Saved: account {name} ({}), {}.", account.display, account.role.as_text());
        }
        UserCommand::List { json } => {
            let accounts = store.accounts().map_err(CliError::new)?;
            if *json {
                out!("{}", serde_json::to_string_pretty(&accounts).unwrap_or_default());
                return Ok(());
            }
            let mut table = report::grid(&["Account", "Name", "Role", "State"]);
            for a in &accounts {
                table.add_row(vec![
                    a.name.clone(),
                    a.display.clone(),
                    a.role.as_text(),
                    if a.disabled { "disabled".into() } else { "active".into() },
                ]);
            }
            out!("{table}");
            out!("{} account(s).", accounts.len());
        }
        UserCommand::Disable { name } | UserCommand::Enable { name } => {
            let disable = matches!(command, UserCommand::Disable { .. });
            if !store.set_disabled(name, disable, now).map_err(CliError::new)? {
                return Err(missing(name));
            }
            out!("Saved: account {name} is {}.", if disable { "disabled" } else { "active" });
        }
        UserCommand::Passwd { name } => {
            if store.account(name).map_err(CliError::new)?.is_none() {
                return Err(missing(name));
            }
            let password = read_password("New password")?;
            let hash = hash_password(&password).map_err(CliError::new)?;
            store.set_password(name, &hash, now).map_err(CliError::new)?;
            out!("Saved: account {name} has a new password.");
        }
    }
    Ok(())
}

fn status_table(rows: &[crate::status::StatusRow]) -> String {
    let mut table = report::grid(&[
        "Health",
        "Community",
        "Device",
        "Last success",
        "Last seen",
        "Sessions",
        "In",
        "Out",
        "Changes",
        "Backlog",
        "Version",
        "Skew",
        "Last error",
    ]);
    for row in rows {
        let p = row.peer.as_ref();
        let time = |ms: Option<i64>| ms.map(report::local_time).unwrap_or_else(|| "—".into());
        table.add_row(vec![
            row.health.word().to_string(),
            if row.community.is_empty() {
                row.community_name.clone()
            } else {
                format!("{} ({})", row.community_name, row.community)
            },
            row.device.clone().unwrap_or_else(|| "—".into()),
            time(p.and_then(|p| p.last_success_ms)),
            time(p.map(|p| p.last_seen_ms)),
            p.map(|p| p.sessions.to_string()).unwrap_or_default(),
            p.map(|p| p.bytes_in.to_string()).unwrap_or_default(),
            p.map(|p| p.bytes_out.to_string()).unwrap_or_default(),
            p.map(|p| p.changes_received.to_string()).unwrap_or_default(),
            p.and_then(|p| {
                p.unacked_changes.map(|n| {
                    let age = p.oldest_unacked_age_seconds.unwrap_or(0);
                    if n > 0 { format!("{n} ({age} s)") } else { "0".into() }
                })
            })
            .unwrap_or_default(),
            p.and_then(|p| p.node_version.clone()).unwrap_or_default(),
            p.and_then(|p| p.clock_skew_ms)
                .map(|ms| format!("{:+.1} s", ms as f64 / 1000.0))
                .unwrap_or_default(),
            p.and_then(|p| {
                p.last_error_class
                    .as_ref()
                    .map(|c| format!("{c}: {}", p.last_error_message.clone().unwrap_or_default()))
            })
            .unwrap_or_default(),
        ]);
    }
    table.to_string()
}
