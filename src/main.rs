//! The binary: parse, run, print the error chain, map it to an exit code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = aidock_provision::cli::Cli::parse();
    match aidock_provision::run(cli) {
        // The work is done (or rolled back); a closed or full stdout only lost the report.
        Ok(()) if aidock_provision::app::output::stdout_failed() => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            aidock_provision::app::output::stderr(format_args!("error: {err:#}\n"));
            ExitCode::from(aidock_provision::error::exit_code(&err))
        }
    }
}
