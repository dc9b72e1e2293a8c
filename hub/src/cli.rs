//! `fivestar-hub`: the district office's and operators' command line.

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use fivestar_core::{Review, Stamp, Verdict, Writer};

use crate::config::HubConfig;
use crate::pki::Pki;
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
    /// Certificates: the district CA, device and reviewer certificates, revocation.
    #[command(subcommand)]
    Pki(PkiCommand),
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
    /// Who reviews (a name; shown in the community's history).
    #[arg(long, global = true)]
    pub reviewer: Option<String>,
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
    /// Reject the task: it earns nothing.
    Reject,
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
            (_, _, Some(name)) => Writer::Reviewer { name: name.clone() },
            // clap's group rules make this unreachable; say so plainly if not.
            _ => Writer::Reviewer { name: String::new() },
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
    fn hint(mut self, hint: &str) -> CliError {
        self.hint = Some(hint.to_string());
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
    let pki = Pki::new(&HubConfig::resolve(data_dir, &config.pki_dir));
    match command {
        Command::Serve => Err(CliError::new("serve runs in the async runtime")),
        Command::Pki(PkiCommand::Init) => {
            pki.init(&config.hub_names).map_err(CliError::new)?;
            println!(
                "Created the district CA and the hub's certificate in {}.",
                pki.ca_cert().parent().unwrap_or(data_dir).display()
            );
            println!("Hub certificate names: {}", config.hub_names.join(", "));
            println!(
                "Next: `fivestar-hub pki issue --community <id> --device <name>` for each device."
            );
            Ok(())
        }
        Command::Pki(PkiCommand::Issue { who, out }) => {
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
                    Writer::Reviewer { name } => {
                        dir.join("issued").join(format!("reviewer-{name}"))
                    }
                }
            });
            let issued = pki.issue(&writer, &out).map_err(CliError::new)?;
            println!(
                "Issued {} (serial {}) into {}:",
                issued.identity,
                issued.serial,
                out.display()
            );
            println!("  device.pem, device.key (private, mode 0600), ca.pem");
            println!("Copy them into the node's certs/ folder (see deploy/node.example.toml).");
            Ok(())
        }
        Command::Pki(PkiCommand::Revoke { who }) => {
            let writer = who.writer();
            let count = pki.revoke(&writer).map_err(CliError::new)?;
            println!(
                "Revoked {count} certificate(s) of {writer}. A running hub refuses them from the next connection on."
            );
            Ok(())
        }
        Command::Review(args) => review(args, data_dir, config),
    }
}

fn review(args: &ReviewArgs, data_dir: &Path, config: &HubConfig) -> Result<(), CliError> {
    let reviewer = args.reviewer.clone().filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        CliError::new("who is reviewing? --reviewer NAME is required").hint("e.g. --reviewer 王敏")
    })?;
    let db = data_dir.join(DATABASE_FILE);
    if !db.exists() {
        return Err(CliError::new(format!("no hub database at {}", db.display()))
            .hint("start the hub once (`fivestar-hub serve`) or check --data-dir"));
    }
    let (standard, registry) = standard_and_registry(config, data_dir).map_err(CliError::new)?;
    let now = Utc::now().timestamp_millis();
    let mut store = HubStore::open(&db, &standard, &registry, now).map_err(CliError::new)?;
    let verdict = match args.verdict {
        VerdictArg::Accept { awarded } => Verdict::Accepted { awarded },
        VerdictArg::Reject => Verdict::Rejected,
    };
    let review =
        Review { verdict, comment: args.comment.clone(), reviewer: reviewer.clone(), at_ms: now };
    let stamp = Stamp { by: format!("reviewer {reviewer}"), at_ms: now };
    let writer = Writer::Reviewer { name: reviewer.clone() };
    store.review(&args.community, &args.task, &review, &stamp, &writer).map_err(|err| {
        let hint = match &err {
            crate::store::ReviewError::Edit(fivestar_core::EditError::UnknownTask { .. }) => {
                "the task must have reached the hub: check the id, or wait for the community's next sync"
            }
            crate::store::ReviewError::UnknownCommunity(_) => "check the community id in the registry",
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
    };
    println!(
        "Recorded: {} of {name} ({}) {word}. Connected devices get it within a second; others at their next sync.",
        args.task, args.community
    );
    Ok(())
}
