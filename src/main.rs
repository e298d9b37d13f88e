//! The binary: parse, run, print the error chain, map it to an exit code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = aidock_provision::cli::Cli::parse();
    match aidock_provision::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(aidock_provision::error::exit_code(&err))
        }
    }
}
