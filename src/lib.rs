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
pub mod schema;
pub mod seed;

/// The settings, where scripts and tests expect them.
pub use app::settings;

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
        _ => {}
    }
    let settings = settings::Settings::load(&cli.global)?;
    match cli.command {
        Command::Init(args) => commands::init::run(&settings, &args),
        Command::Seed(args) => commands::seed::run(&settings, &args),
        Command::Migrate(cmd) => commands::migrate::run(&settings, cmd),
        Command::Reset(args) => commands::reset::run(&settings, &args),
        Command::Local(cmd) => commands::local::run(&settings, &cmd),
        Command::Template(args) => commands::template::run(&settings, &args),
        Command::Doctor | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled above")
        }
    }
}
