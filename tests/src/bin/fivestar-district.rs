//! `fivestar-district`: the whole district in one command. A real hub and 88 real
//! nodes (own SQLite file, own device certificate, gRPC with mutual TLS on loopback)
//! run a seeded campaign of several weeks, with some communities cut off by a
//! fault-injecting proxy for a while. Then it checks the result against its own edit
//! log, prints the standings and the sync status, and keeps the hub and its dashboard
//! running until Ctrl-C (or `--duration`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fivestar_hub::report;
use fivestar_tests::sim::{self, SimConfig};

#[derive(Debug, Parser)]
#[command(
    name = "fivestar-district",
    version,
    about = "Run a simulated Weidu District: a hub and 88 community nodes."
)]
struct Args {
    /// Seed of every random choice (same seed, same campaign).
    #[arg(long, default_value_t = 2022)]
    seed: u64,
    /// Simulated weeks.
    #[arg(long, default_value_t = 8)]
    weeks: u32,
    /// A short run for CI: 3 weeks, fewer edits and reviews.
    #[arg(long)]
    short: bool,
    /// Share of communities offline for a stretch (0 to 1).
    #[arg(long, default_value_t = 0.25)]
    offline_share: f64,
    /// Keep the hub and dashboard up this many seconds after the campaign, then stop
    /// (default: until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Where to keep the hub's and the nodes' files (default: a temporary folder,
    /// removed at the end).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where the dashboard listens.
    #[arg(long, default_value = "127.0.0.1:7080")]
    dashboard: SocketAddr,
    /// Node syncs at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let mut config = SimConfig {
        seed: args.seed,
        weeks: args.weeks,
        offline_share: args.offline_share,
        concurrency: args.concurrency,
        dashboard: args.dashboard,
        ..SimConfig::default()
    };
    if args.short {
        config.weeks = 3;
        config.edits_per_week = 2;
        config.reviews_per_week = 8;
    }
    let temp = match &args.data_dir {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(dir) => Some(dir),
            Err(err) => {
                eprintln!("error: cannot create a temporary folder: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let dir = args
        .data_dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .unwrap_or_default();
    println!(
        "Simulating Weidu District: seed {}, {} weeks, data in {}",
        config.seed,
        config.weeks,
        dir.display()
    );
    let started = std::time::Instant::now();
    // Ctrl-C during the campaign stops it cleanly too: the temporary folder is removed.
    let run = sim::run(&config, &dir, &|line| println!("  {line}"));
    let outcome = tokio::select! {
        result = run => match result {
            Ok(outcome) => outcome,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopped by Ctrl-C before the campaign ended; nothing was verified");
            drop(temp);
            return ExitCode::FAILURE;
        }
    };
    let stale_after = chrono::TimeDelta::hours(24);
    let verification = match sim::verify(&outcome, stale_after).await {
        Ok(v) => v,
        Err(err) => {
            eprintln!("error: cannot verify: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Campaign done in {:.1} s: {} edits and reviews, {} syncs, {} refused by cut links.",
        started.elapsed().as_secs_f64(),
        outcome.edits.len(),
        outcome.good_syncs,
        outcome.failed_syncs
    );
    let view = outcome
        .hub
        .store
        .call(move |s| {
            report::standings_view(s, stale_after, None, None).map(|v| (v, s.standard().clone()))
        })
        .await;
    if let Ok(Ok((view, standard))) = view {
        println!("{}", report::table(&view, &standard));
    }
    let status = outcome
        .hub
        .store
        .call(move |s| {
            let peers = s.peers()?;
            let (_, summary) = fivestar_hub::status::status(
                s.registry(),
                &peers,
                chrono::Utc::now().timestamp_millis(),
                stale_after.num_milliseconds(),
            );
            Ok::<_, fivestar_store::StoreError>(summary)
        })
        .await;
    if let Ok(Ok(summary)) = status {
        println!("Sync status: {summary}.");
    }
    let ok = verification.ok();
    if ok {
        println!(
            "Verified: the hub's standings equal the standings computed from the edit log alone; every node and the hub hold identical heads; no note is lost; every sync on an open link worked."
        );
    } else {
        eprintln!(
            "VERIFICATION FAILED: {} diverged replicas ({:?}), {} lost notes ({:?}), {} unexpected sync failures ({:?}), standings {}",
            verification.diverged.len(),
            verification.diverged,
            verification.lost_notes.len(),
            verification.lost_notes.iter().take(5).collect::<Vec<_>>(),
            verification.unexpected_failures.len(),
            verification.unexpected_failures.iter().take(5).collect::<Vec<_>>(),
            if verification.hub == verification.expected { "agree" } else { "differ" }
        );
    }
    println!(
        "Dashboard: http://{}/   Nodes: {}",
        outcome.hub.dashboard_addr,
        outcome.node_dirs.len()
    );
    if args.data_dir.is_some() {
        // Only a folder that outlives the run is worth pointing at.
        println!(
            "The nodes stay in {}: e.g. `cargo build --release -p fivestar-node` then \
             `target/release/fivestar-node --data-dir {}/nodes/fangou status`",
            dir.display(),
            dir.display()
        );
    } else {
        println!(
            "The data is in a temporary folder, removed at the end (keep it with --data-dir DIR)."
        );
    }
    // Ctrl-C ends the wait in both cases, so the temporary folder is always removed.
    match args.duration {
        Some(seconds) => {
            println!("Stopping in {seconds} s (or at Ctrl-C).");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            println!("The hub keeps running; Ctrl-C stops it.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    let _ = outcome.hub.shutdown().await;
    drop(temp);
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
