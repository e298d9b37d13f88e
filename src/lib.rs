//! aidock-provision: take a PostgreSQL server from nothing to a ready AI Dock database.
//!
//! [`run`] is the whole program behind `main`: resolve settings, then one match over commands.

pub mod cli;
pub mod db;
pub mod error;
pub mod local_pg;
pub mod provision;
pub mod settings;

use cli::{Cli, Command, LocalCommand};
use local_pg::{LocalPg, Started, State};
use settings::Settings;

/// Run one parsed command line to completion.
///
/// # Errors
/// Any failure, classified for the exit code by [`error::exit_code`].
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.global)?;
    match cli.command {
        Command::Init(args) => init(&settings, &args),
        Command::Local(cmd) => local(&settings, &cmd),
    }
}

fn init(settings: &Settings, args: &cli::InitArgs) -> anyhow::Result<()> {
    settings.check_production()?;
    let admin = provision::admin_target(settings)?;
    let report = db::block_on(provision::provision(settings, &admin, args.dry_run))?;
    if settings.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print(settings.output.quiet);
    }
    Ok(())
}

fn local_cluster(settings: &Settings) -> anyhow::Result<LocalPg> {
    LocalPg::new(
        &settings.local.data_dir,
        settings.local.port,
        local_pg::Options::default(),
    )
}

fn local(settings: &Settings, cmd: &LocalCommand) -> anyhow::Result<()> {
    let out = settings.output;
    let say = |msg: String| {
        if !out.quiet {
            println!("{msg}");
        }
    };
    match cmd {
        LocalCommand::Start => {
            let pg = local_cluster(settings)?;
            let what = match pg.start()? {
                Started::Created => "created and started",
                Started::Started => "started",
                Started::AlreadyRunning => "already running",
            };
            say(format!(
                "local cluster {what}: {} (127.0.0.1:{})",
                pg.root().display(),
                pg.port()
            ));
        }
        LocalCommand::Stop => {
            let pg = local_cluster(settings)?;
            let what = if pg.stop()? { "stopped" } else { "not running" };
            say(format!("local cluster {what}: {}", pg.root().display()));
        }
        LocalCommand::Status => {
            let pg = local_cluster(settings)?;
            let state = pg.state()?;
            let word = match state {
                State::Absent => "absent",
                State::Stopped => "stopped",
                State::Running => "running",
            };
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "state": word,
                        "data_dir": pg.root(),
                        "port": pg.port(),
                        "socket_dir": pg.socket_dir(),
                    })
                );
            } else {
                println!(
                    "local cluster {word}: {} (127.0.0.1:{}, socket in {})",
                    pg.root().display(),
                    pg.port(),
                    pg.socket_dir().display()
                );
            }
        }
        LocalCommand::Url => {
            let pg = local_cluster(settings)?;
            println!("{}", pg.admin_url()?);
        }
        LocalCommand::Destroy => {
            if !out.yes {
                return Err(error::refused(
                    "`local destroy` deletes the local cluster and all its data; run it again with --yes",
                ));
            }
            let pg = local_cluster(settings)?;
            let what = if pg.destroy()? { "destroyed" } else { "absent" };
            say(format!("local cluster {what}: {}", pg.root().display()));
        }
    }
    Ok(())
}
