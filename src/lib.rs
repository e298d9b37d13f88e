//! aidock-provision: take a PostgreSQL server from nothing to a ready AI Dock database.
//!
//! [`run`] is the whole program behind `main`: resolve settings, then one match over commands.

pub mod cli;
pub mod db;
pub mod doctor;
mod embedded;
pub mod error;
pub mod local_pg;
pub mod migrate;
pub mod output;
pub mod provision;
pub mod schema;
pub mod seed;
pub mod settings;

use std::io::IsTerminal as _;

use anyhow::Context as _;

use cli::{Cli, Command, LocalCommand, MigrateCommand};
use local_pg::{LocalPg, Started, State};
use migrate::plan::Target as PlanTarget;
use settings::Settings;

/// Run one parsed command line to completion.
///
/// # Errors
/// Any failure, classified for the exit code by [`error::exit_code`].
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Doctor = cli.command {
        // Doctor reports bad settings as a failed check instead of stopping at them.
        return doctor_command(&cli.global);
    }
    let settings = Settings::load(&cli.global)?;
    match cli.command {
        Command::Init(args) => init(&settings, &args),
        Command::Seed(args) => seed_command(&settings, &args),
        Command::Migrate(cmd) => migrate_command(&settings, cmd),
        Command::Reset(args) => reset(&settings, &args),
        Command::Local(cmd) => local(&settings, &cmd),
        Command::Doctor => unreachable!("handled above"),
    }
}

fn init(settings: &Settings, args: &cli::InitArgs) -> anyhow::Result<()> {
    settings.check_production()?;
    settings.check_password()?;
    // The names alone can be refused before connecting anywhere (system databases).
    let d = &settings.database;
    provision::preflight::check(
        &d.name,
        &d.owner,
        &provision::preflight::Observed::default(),
        provision::preflight::Purpose::Init,
    )?;
    let migrations = migrate::load(settings)?;
    let admin = provision::admin_target(settings)?;
    let out = settings.output;
    db::block_on(async {
        let mut report = provision::provision(settings, &admin, args.dry_run).await?;
        let mut done = Vec::new();
        if args.dry_run {
            if !args.no_migrate {
                let sql = init_plan(settings, &admin, &report, &migrations).await?;
                report.statements.push(sql);
            }
            if !out.json {
                report.print(false);
            }
        } else {
            // Provisioning lines first, then migrate's own lines as it applies each script.
            report.print(out.quiet || out.json);
            if !args.no_migrate {
                let d = &settings.database;
                let app = admin.as_role(&d.owner, &d.password, &d.name);
                // Provisioning is done and stays done; say so, since the migration error alone
                // (no free slot, server gone, a failing script) reads as if nothing happened.
                done = migrate::migrate(settings, &app, &migrations, PlanTarget::Up(None))
                    .await
                    .with_context(|| {
                        format!(
                            "role `{}` and database `{}` are ready, but the schema was not migrated; run `aidock-provision init` again to finish",
                            d.owner, d.name
                        )
                    })?;
            }
        }
        if out.json {
            let json = serde_json::json!({ "provision": report, "migrations": done });
            crate::outln!("{}", serde_json::to_string_pretty(&json)?);
        }
        Ok(())
    })
}

/// For `init --dry-run`: the SQL `migrate up` would run next, reading the ledger (as the admin)
/// when the database already exists.
async fn init_plan(
    settings: &Settings,
    admin: &db::Target,
    report: &provision::Report,
    migrations: &[migrate::source::Migration],
) -> anyhow::Result<String> {
    let d = &settings.database;
    let fresh = report
        .objects
        .iter()
        .any(|i| i.object.starts_with("database") && i.outcome == provision::Outcome::Created);
    let applied = if fresh {
        Vec::new()
    } else {
        migrate::applied(&admin.with_dbname(&d.name)).await?
    };
    let sql = migrate::plan_sql(
        &applied,
        migrations,
        PlanTarget::Up(None),
        &migrate::options(settings),
    )?;
    Ok(format!("-- then, as role {}:\n{sql}", d.owner))
}

/// Ask before destroying something: `--yes`, or "yes" typed on a terminal; refuse otherwise.
fn confirm(settings: &Settings, what: &str) -> anyhow::Result<()> {
    if settings.output.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(error::refused(format!(
            "{what}: refusing without confirmation; there is no terminal to ask, so pass --yes"
        )));
    }
    output::stderr(format_args!("{what}. Type `yes` to continue: "));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(error::refused(format!(
            "{what}: not confirmed, nothing done"
        )))
    }
}

fn migrate_command(settings: &Settings, cmd: MigrateCommand) -> anyhow::Result<()> {
    let migrations = migrate::load(settings)?;
    let offline = matches!(
        &cmd,
        MigrateCommand::New { .. } | MigrateCommand::AlembicExport { .. }
    ) || matches!(&cmd, MigrateCommand::Plan(args) if args.offline);
    if !offline && !matches!(&cmd, MigrateCommand::Down(args) if !args.force) {
        settings.check_production()?;
    }
    match cmd {
        MigrateCommand::New { name } => {
            let (up, down) = migrate::new_migration(settings.migrate.dir.as_deref(), &name)?;
            crate::outln!("created {}\ncreated {}", up.display(), down.display());
            Ok(())
        }
        MigrateCommand::AlembicExport { dir, force } => {
            for (path, written) in migrate::alembic::export(&dir, &migrations, force)? {
                let what = match written {
                    migrate::alembic::Written::Created => "wrote",
                    migrate::alembic::Written::Unchanged => "unchanged",
                    migrate::alembic::Written::Replaced => "replaced",
                };
                if !settings.output.quiet {
                    crate::outln!("{what} {}", path.display());
                }
            }
            Ok(())
        }
        MigrateCommand::Plan(args) => {
            let to = if args.down {
                down_target(args.to, args.steps, args.base)?
            } else {
                PlanTarget::Up(args.to)
            };
            let sql = db::block_on(async {
                let applied = if args.offline {
                    Vec::new()
                } else {
                    migrate::applied(&migrate::app_target(settings)?).await?
                };
                migrate::plan_sql(&applied, &migrations, to, &migrate::options(settings))
            })?;
            crate::out!("{sql}");
            Ok(())
        }
        MigrateCommand::Up { to } => {
            let target = migrate::app_target(settings)?;
            let done = db::block_on(migrate::migrate(
                settings,
                &target,
                &migrations,
                PlanTarget::Up(to),
            ))?;
            if settings.output.json {
                crate::outln!("{}", serde_json::to_string_pretty(&done)?);
            }
            Ok(())
        }
        MigrateCommand::Down(args) => {
            let to = down_target(args.to, args.steps, args.base)?;
            if settings.production && !args.force {
                return Err(error::refused(format!(
                    "`migrate down` is refused in the {} profile; pass --force if you really mean to revert production",
                    settings.profile
                )));
            }
            let target = migrate::app_target(settings)?;
            confirm(
                settings,
                &format!(
                    "`migrate down` reverts migrations in {} and may drop data",
                    target.describe()
                ),
            )?;
            let done = db::block_on(migrate::migrate(settings, &target, &migrations, to))?;
            if settings.output.json {
                crate::outln!("{}", serde_json::to_string_pretty(&done)?);
            }
            Ok(())
        }
        MigrateCommand::Status => {
            let target = migrate::app_target(settings)?;
            let status = db::block_on(migrate::status(&target, &migrations))?;
            if settings.output.json {
                crate::outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                status.print();
            }
            if status.problems.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{} problem(s) with the applied migrations (listed above)",
                    status.problems.len()
                ))
            }
        }
        MigrateCommand::Verify => {
            let target = migrate::app_target(settings)?;
            let admin = verify_admin(settings)?;
            let drift = db::block_on(migrate::verify::verify(
                &admin,
                &target,
                &migrations,
                &migrate::options(settings),
            ))?;
            if settings.output.json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"clean": drift.is_empty(), "drift": drift})
                    )?
                );
            } else if drift.is_empty() {
                if !settings.output.quiet {
                    crate::outln!(
                        "schema matches the applied migrations ({})",
                        target.describe()
                    );
                }
            } else {
                for d in &drift {
                    crate::outln!("{d}");
                }
            }
            if drift.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{} difference(s) between the live schema and the migrations",
                    drift.len()
                ))
            }
        }
        MigrateCommand::History => {
            let target = migrate::app_target(settings)?;
            db::block_on(migrate::history(&target, settings.output.json))
        }
    }
}

/// `migrate verify` creates a scratch database: it needs the admin connection even when the app
/// connection is given on its own.
fn verify_admin(settings: &Settings) -> anyhow::Result<db::Target> {
    if settings.server.admin_url.is_none() && settings.database.url.is_some() {
        return Err(error::usage(
            "migrate verify replays the migrations into a scratch database, which needs an admin connection that may create databases; pass --admin-url (or AIDOCK_ADMIN_URL) as well as the database URL",
        ));
    }
    provision::admin_target(settings)
}

fn reset(settings: &Settings, args: &cli::ResetArgs) -> anyhow::Result<()> {
    provision::preflight::check(
        &settings.database.name,
        &settings.database.owner,
        &provision::preflight::Observed::default(),
        provision::preflight::Purpose::Reset,
    )?;
    if settings.production && !args.force {
        return Err(error::refused(format!(
            "`reset` drops database `{}` and role `{}` and is refused in the {} profile; pass --force if you really mean it",
            settings.database.name, settings.database.owner, settings.profile
        )));
    }
    if settings.server.admin_url.is_none() && !settings.production {
        let pg = local_cluster(settings)?;
        if pg.state()? == State::Absent {
            if !settings.output.quiet {
                crate::outln!(
                    "nothing to reset: there is no local cluster at {}",
                    pg.root().display()
                );
            }
            return Ok(());
        }
    }
    settings.check_production()?;
    let admin = provision::admin_target(settings)?;
    confirm(
        settings,
        &format!(
            "`reset` drops database `{}` (disconnecting its sessions) and role `{}` on {}",
            settings.database.name,
            settings.database.owner,
            admin.describe()
        ),
    )?;
    let items = db::block_on(provision::reset(settings, &admin))?;
    if settings.output.json {
        crate::outln!("{}", serde_json::to_string_pretty(&items)?);
    } else if !settings.output.quiet {
        for item in &items {
            let what = match &item.outcome {
                provision::Outcome::Changed(c) => c.join("; "),
                _ => "already gone".to_string(),
            };
            crate::outln!("{}: {what}", item.object);
        }
    }
    Ok(())
}

fn doctor_command(global: &cli::Global) -> anyhow::Result<()> {
    let checks = doctor::run(global);
    if global.json {
        crate::outln!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        doctor::print(&checks);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{failed} check(s) failed; each FAIL line above says how to fix it"
        ))
    }
}

fn seed_command(settings: &Settings, args: &cli::SeedArgs) -> anyhow::Result<()> {
    // Refused before anything connects anywhere.
    if args.dev && settings.production {
        return Err(error::refused(format!(
            "`seed --dev` adds fake users with known passwords and is refused in the {} profile",
            settings.profile
        )));
    }
    settings.check_production()?;
    let seeds = seed::load(settings)?;
    let dev = args.dev.then(|| seed::DevOptions {
        users: args.users.unwrap_or(settings.seed.dev_users),
        usage_logs: args.usage_logs.unwrap_or(settings.seed.dev_usage_logs),
        rng_seed: args.rng_seed.unwrap_or(settings.seed.rng_seed),
    });
    let target = migrate::app_target(settings)?;
    let report = db::block_on(seed::seed(settings, &target, &seeds, args.overwrite, dev))?;
    if settings.output.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if !settings.output.quiet {
        report.print();
    }
    Ok(())
}

fn down_target(to: Option<i64>, steps: Option<u32>, base: bool) -> anyhow::Result<PlanTarget> {
    match (to, steps, base) {
        (Some(v), None, false) => Ok(PlanTarget::DownTo(v)),
        (None, Some(n), false) => Ok(PlanTarget::DownSteps(n)),
        (None, None, true) => Ok(PlanTarget::Base),
        _ => Err(error::usage(
            "say how far to go down: exactly one of --to VERSION, --steps N or --base",
        )),
    }
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
            crate::outln!("{msg}");
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
                crate::outln!(
                    "{}",
                    serde_json::json!({
                        "state": word,
                        "data_dir": pg.root(),
                        "port": pg.port(),
                        "socket_dir": pg.socket_dir(),
                    })
                );
            } else {
                crate::outln!(
                    "local cluster {word}: {} (127.0.0.1:{}, socket in {})",
                    pg.root().display(),
                    pg.port(),
                    pg.socket_dir().display()
                );
            }
        }
        LocalCommand::Url => {
            let pg = local_cluster(settings)?;
            crate::outln!("{}", pg.admin_url()?);
        }
        LocalCommand::Destroy => {
            let pg = local_cluster(settings)?;
            confirm(
                settings,
                &format!(
                    "`local destroy` deletes the local cluster in {} and all its data",
                    pg.root().display()
                ),
            )?;
            let what = if pg.destroy()? { "destroyed" } else { "absent" };
            say(format!("local cluster {what}: {}", pg.root().display()));
        }
    }
    Ok(())
}
