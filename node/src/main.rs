//! `fivestar-node`: parses the command line, runs one command, exits with 0 on
//! success, 1 on a mistake it explains, 2 on a command line it cannot parse.

use std::process::ExitCode;

use clap::Parser;
use fivestar_node::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
