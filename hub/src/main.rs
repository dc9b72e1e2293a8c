//! `fivestar-hub`: parses the command line, runs the command; for `serve`, starts
//! the hub and stops it cleanly on Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use fivestar_hub::cli::{Cli, Command, resolve, run_offline};
use fivestar_hub::server;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let (data_dir, config) = match resolve(&cli) {
        Ok(resolved) => resolved,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    if !matches!(cli.command, Command::Serve) {
        return match run_offline(&cli.command, &data_dir, &config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut hub = match server::spawn(config, &data_dir).await {
            Ok(hub) => hub,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "fivestar hub listening on {} (data in {}); dashboard and metrics at http://{}/",
            hub.addr,
            data_dir.display(),
            hub.dashboard_addr
        );
        let stopped = tokio::select! {
            _ = shutdown_signal() => None,
            result = hub.wait() => Some(result),
        };
        let result = match stopped {
            Some(result) => result,
            None => {
                tracing::info!("stopping");
                hub.shutdown().await
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
