//! `init`: guards, then provision (role, database, schema public), then `migrate up`; or, with
//! `--dry-run`, every statement that would run.

use anyhow::Context as _;

use crate::app::output::{errln, outln};
use crate::app::settings::Settings;
use crate::app::{policy, targets};
use crate::cli::InitArgs;
use crate::migrate::plan::Target as PlanTarget;
use crate::{db, migrate, provision};

/// Run `init`.
///
/// # Errors
/// A guard, a refusal of the pre-flight, a connection or statement failure.
pub fn run(settings: &Settings, args: &InitArgs) -> anyhow::Result<()> {
    policy::check(settings, policy::Action::Init)?;
    let migrations = targets::migrations(settings)?;
    let mut database = targets::database(settings);
    if args.reset_password {
        database.password_reset = provision::role::PasswordReset::Asked;
    }
    database.take_over = args.take_over_database;
    if let Some(template) = &args.from_template {
        let admin = targets::admin(settings, targets::Local::Start)?;
        let report = db::block_on(provision::from_template(
            &database,
            &admin,
            template,
            &migrations,
            &targets::provision_options(settings),
        ))?;
        if settings.output.json {
            // init's document (docs/JSON.md): the clone applies no migrations (it is at head).
            let json = serde_json::json!({ "provision": report, "migrations": [] });
            outln!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print(&report, settings.output.quiet);
        }
        return Ok(());
    }
    if args.dry_run && settings.server.admin_url.is_none() {
        // A dry run changes nothing, and starting (or creating) the local cluster is a change.
        let pg = targets::local_cluster(settings)?;
        if pg.state()? != crate::local_pg::State::Running {
            outln!(
                "-- dry run: the project-local cluster in {} is not running; `init` would start it (creating it if absent), then create role `{}` and database `{}` and apply {} migration(s). Start it (`aidock-provision local start`) to see every statement.",
                pg.root().display(),
                settings.database.owner,
                settings.database.name,
                migrations.len()
            );
            return Ok(());
        }
    }
    let admin = targets::admin(settings, targets::Local::Start)?;
    let out = settings.output;
    let d = &settings.database;
    // The ledger is the app's relation: read on the app role's own login, never the admin's
    // (db::trust).
    let app = admin.as_role(&d.owner, &d.password, &d.name);
    db::block_on(async {
        let refuse_findings = |applied: &[migrate::plan::Applied]| {
            super::migrate::refuse_findings_in_production(settings, &migrations, applied, None)
        };
        // In production, before any change: a pending migration that locks or rewrites is
        // refused here when the ledger can be read already (else after provisioning, before
        // migrating).
        let mut findings_checked = false;
        if settings.production
            && !args.no_migrate
            && let Some(applied) = app_ledger(&app, &admin).await?
        {
            refuse_findings(&applied)?;
            findings_checked = true;
        }
        let mut report = provision::provision(
            &database,
            &admin,
            args.dry_run,
            &targets::provision_options(settings),
        )
        .await?;
        let mut done = Vec::new();
        if args.dry_run {
            if !args.no_migrate {
                let sql = plan(settings, &app, &admin, &report, &migrations).await?;
                report.statements.push(sql);
            }
            if !out.json {
                print(&report, false);
            }
        } else {
            // Provisioning lines first, then migrate's own lines as it applies each script.
            print(&report, out.quiet || out.json);
            if !args.no_migrate {
                if settings.production && !findings_checked {
                    refuse_findings(&migrate::applied(&app).await?)?;
                }
                // Provisioning is done and stays done; say so, since the migration error alone
                // (no free slot, server gone, a failing script) reads as if nothing happened.
                done = migrate::migrate(
                    &app,
                    &migrations,
                    PlanTarget::Up(None),
                    &targets::runner_options(settings),
                    &targets::confirm(settings),
                )
                .await
                .with_context(|| {
                    format!(
                        "role `{}` and database `{}` are ready, but the schema was not migrated; run `aidock-provision init` again to finish",
                        d.owner, d.name
                    )
                })?;
                if !out.json {
                    super::migrate::print_done(settings, &app, &done);
                }
            }
        }
        if out.json {
            let json = serde_json::json!({ "provision": report, "migrations": done });
            outln!("{}", serde_json::to_string_pretty(&json)?);
        }
        Ok(())
    })
    // An Alembic revision of the backend's own on top of ours is refused by the runner before
    // it changes anything, and said with what it changed.
    .map_err(|e| targets::explain_app_error(settings, e))
}

/// The ledger as the app role reads it on its own login. When it cannot log in yet (no role or
/// database, or a password `init` is about to set), the admin's catalogs still tell when nothing
/// can have been applied (no database, or no ledger table in it): empty. `None` only when there
/// is a ledger the app role cannot read yet.
async fn app_ledger(
    app: &db::Target,
    admin: &db::Target,
) -> anyhow::Result<Option<Vec<migrate::plan::Applied>>> {
    match migrate::applied(app).await {
        Ok(applied) => Ok(Some(applied)),
        Err(e)
            if matches!(
                db::connect_reason(&e),
                Some(db::Reason::WrongPassword | db::Reason::Refused | db::Reason::NoDatabase)
            ) =>
        {
            let client = admin.connect().await?;
            let exists = db::sql::Sql::opt(
                &client,
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[(&app.dbname(), tokio_postgres::types::Type::TEXT)],
            )
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))?
            .is_some();
            if !exists {
                return Ok(Some(Vec::new()));
            }
            let mut session = db::trust::CatalogSession::connect(admin, app.dbname()).await?;
            let snapshot = session.snapshot().await?;
            if migrate::ledger::exists(&snapshot).await? {
                Ok(None)
            } else {
                Ok(Some(Vec::new()))
            }
        }
        Err(e) => Err(e),
    }
}

/// For `init --dry-run`: the SQL `migrate up` would run next, reading the ledger as the app role
/// when the database already exists (never as the admin: it is the app's relation).
async fn plan(
    settings: &Settings,
    app: &db::Target,
    admin: &db::Target,
    report: &provision::Report,
    migrations: &[migrate::source::Migration],
) -> anyhow::Result<String> {
    let d = &settings.database;
    let (applied, note) = if report.fresh_database {
        (Vec::new(), String::new())
    } else {
        match app_ledger(app, admin).await? {
            Some(applied) => (applied, String::new()),
            None => (
                Vec::new(),
                format!(
                    "-- note: role {} cannot log in to {} yet (init sets its password first), so its ledger was not read: these are every migration, and `migrate up` skips those already applied\n",
                    d.owner, d.name
                ),
            ),
        }
    };
    let sql = migrate::plan_sql(
        &applied,
        migrations,
        PlanTarget::Up(None),
        &targets::runner_options(settings),
        // A fresh database has no ledger to move.
        report.fresh_database.then_some(false),
    )?;
    Ok(format!("-- then, as role {}:\n{note}{sql}", d.owner))
}

/// The report for people: one line per object, then the URL; a dry run prints its statements.
/// What could not be tightened is a warning, shown even with --quiet or --json.
fn print(report: &provision::Report, quiet: bool) {
    let notes = report.objects.iter().flat_map(|i| &i.notes);
    if report.dry_run {
        outln!("-- dry run: these statements would run (nothing was changed)");
        for s in &report.statements {
            outln!("{s}");
        }
        for note in notes {
            outln!("-- note: {note}");
        }
        if report.statements.is_empty() {
            outln!("-- nothing to change");
        }
        return;
    }
    for note in notes {
        errln!("warning: {note}");
    }
    if quiet {
        return;
    }
    for item in &report.objects {
        match &item.outcome {
            provision::Outcome::Created => outln!("{}: created", item.object),
            provision::Outcome::Exists => outln!("{}: exists", item.object),
            provision::Outcome::Changed(changes) => {
                outln!("{}: changed: {}", item.object, changes.join("; "));
            }
        }
    }
    if report
        .objects
        .iter()
        .all(|i| i.outcome == provision::Outcome::Exists)
    {
        outln!("nothing to change");
    }
    outln!("app URL: {}", report.url);
}
