//! aidock-provision: take a PostgreSQL server from nothing to a ready AI Dock database.
//!
//! Two layers. The engine (`db`, `provision`, `migrate`, `schema`, `seed`, `local_pg`) takes its
//! own small option structs and returns data; it never reads settings or prints. The application
//! layer ([`app`]) resolves settings, applies the guards, calls the engine and prints. [`run`] is
//! the whole program behind `main`: one match over commands.

pub mod app;
pub mod cli;
pub mod db;
mod embedded;
pub mod error;
pub mod local_pg;
pub mod migrate;
pub mod provision;
pub mod reconcile;
pub mod schema;
pub mod seed;

/// The settings, where scripts and tests expect them.
pub use app::settings;

use crate::app::output::errln;
use app::commands;
use cli::{Cli, Command};

/// Run one parsed command line to completion.
///
/// # Errors
/// Any failure, classified for the exit code by [`error::exit_code`].
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Doctor reports bad settings as a failed check instead of stopping at them.
        Command::Doctor => return commands::doctor::run(&cli.global),
        // Generated from the command-line definition alone: no settings needed.
        Command::Completions { shell } => {
            commands::shell::completions(shell);
            return Ok(());
        }
        Command::Man { dir } => return commands::shell::man(dir.as_deref()),
        // Writes files only: no settings, no server.
        Command::Project(cli::ProjectCommand::Init { dir }) => {
            return commands::project::init(dir.as_deref(), &cli.global);
        }
        _ => {}
    }
    let mut settings = settings::Settings::load(&cli.global)?;
    // A server lost in the middle of a run (a failover, a restart) rolled back what was in
    // flight. Under --wait the command runs again from the start through the same URL (every
    // command is idempotent: ledger, run records and catalog are read again), within the wait;
    // without it, exit 4 says so.
    let started = settings.started;
    let mut attempt = 1;
    loop {
        let result = dispatch(&settings, cli.command.clone());
        match result {
            Err(e) if error::server_lost(&e) => {
                let wait = settings.server.wait;
                let left = wait.saturating_sub(started.elapsed());
                if !left.is_zero() {
                    attempt += 1;
                    // What the re-run reads (the ledger saying "applied", a seed record) may be
                    // on a node the cluster has left: it is confirmed like a commit (db::ha).
                    settings.confirm_reads = true;
                    if error::is_unconfirmed(&e) {
                        errln!(
                            "a commit could not be confirmed on the cluster's primary ({}); running the command again through the same URL, which applies what the primary lacks (attempt {attempt}, --wait has {} s left)",
                            first_line(&e),
                            left.as_secs()
                        );
                    } else {
                        errln!(
                            "the server was lost in the middle of the run ({}): what was in flight was rolled back; running the command again through the same URL (attempt {attempt}, --wait has {} s left)",
                            first_line(&e),
                            left.as_secs()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1).min(left));
                    continue;
                }
                if error::is_unconfirmed(&e) {
                    return Err(e.context(if wait.is_zero() {
                        "the commit was made but could not be confirmed on the cluster's primary: run the same command again (it applies what the primary lacks), or add --wait 60s to do so by itself".to_string()
                    } else {
                        format!(
                            "the commit was made but could not be confirmed on the cluster's primary, and --wait ({} s) ran out over {attempt} attempt(s); run the same command again",
                            wait.as_secs()
                        )
                    }));
                }
                return Err(e.context(if wait.is_zero() {
                    "the server went away in the middle of the run (a failover, a restart or a crash): the server rolled back what was in flight; run the same command again (it picks up where the database is), or add --wait 60s to wait for the new primary and re-run by itself".to_string()
                } else {
                    format!(
                        "the server went away in the middle of the run and --wait ({} s) ran out over {attempt} attempt(s): the server rolled back what was in flight; run the same command again once the server is back",
                        wait.as_secs()
                    )
                }));
            }
            other => return other,
        }
    }
}

/// The first line of an error's message (the cause, for a one-line notice).
fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn dispatch(settings: &settings::Settings, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init(args) => commands::init::run(settings, &args),
        Command::Seed(args) => commands::seed::run(settings, &args),
        Command::Migrate(cmd) => commands::migrate::run(settings, cmd),
        Command::Reset(args) => commands::reset::run(settings, &args),
        Command::Local(cmd) => commands::local::run(settings, &cmd),
        Command::Template(args) => commands::template::run(settings, &args),
        Command::Pool(args) => commands::pool::run(settings, &args),
        Command::Doctor
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Project(_) => {
            unreachable!("handled above")
        }
    }
}
