//! `migrate up | down | status | history | plan | verify | new | alembic-export`.

use crate::app::output::emit;
use crate::app::output::{errln, out, outln};
use crate::app::settings::Settings;
use crate::app::{policy, targets};
use crate::cli::MigrateCommand;
use crate::db::{self, Target};
use crate::error;
use crate::migrate::plan::Target as PlanTarget;
use crate::migrate::{self, runner};
use std::fmt::Write as _;

/// Run one `migrate` subcommand.
///
/// # Errors
/// A guard, a planning problem, a connection or script failure; drift (verify) or problems
/// (status) are exit 1 after the report.
pub fn run(settings: &Settings, cmd: MigrateCommand) -> anyhow::Result<()> {
    let migrations = targets::migrations(settings)?;
    let action = match &cmd {
        MigrateCommand::New { .. } | MigrateCommand::AlembicExport { .. } => {
            policy::Action::Offline
        }
        MigrateCommand::Plan(args) if args.offline => policy::Action::Offline,
        MigrateCommand::Lint(args) if !args.pending => policy::Action::Offline,
        MigrateCommand::Down(args) => policy::Action::MigrateDown { force: args.force },
        _ => policy::Action::Migrate,
    };
    policy::check(settings, action)?;
    let out = settings.output;
    match cmd {
        MigrateCommand::New { name } => {
            let source = targets::migration_source(settings);
            let (up, down) = migrate::new_migration(source.dir(), &name)?;
            if !out.quiet {
                outln!("created {}\ncreated {}", up.display(), down.display());
            }
            Ok(())
        }
        MigrateCommand::AlembicExport {
            dir,
            force,
            down_revision,
        } => {
            let written =
                migrate::alembic::export(&dir, &migrations, force, down_revision.as_deref())?;
            for (path, written) in written {
                let what = match written {
                    migrate::alembic::Written::Created => "wrote",
                    migrate::alembic::Written::Unchanged => "unchanged",
                    migrate::alembic::Written::Replaced => "replaced",
                };
                if !out.quiet {
                    outln!("{what} {}", path.display());
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
            let up = matches!(to, PlanTarget::Up(_));
            let (sql, applied) = db::block_on(async {
                let (applied, legacy) = if args.offline {
                    (Vec::new(), None)
                } else {
                    let (applied, legacy) =
                        migrate::applied_and_legacy(&targets::app(settings)?).await?;
                    (applied, Some(legacy))
                };
                let sql = migrate::plan_sql(
                    &applied,
                    &migrations,
                    to,
                    &targets::runner_options(settings),
                    legacy,
                )?;
                anyhow::Ok((sql, applied))
            })?;
            let findings = if up {
                pending_findings(&migrations, &applied, None)
            } else {
                Vec::new()
            };
            if out.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "sql": sql,
                        "findings": findings,
                    }))?
                );
                return Ok(());
            }
            out!("{sql}");
            // The same findings `migrate lint --pending` reports, as SQL comments.
            for f in findings {
                outln!("-- lint: {}", f.to_string().replace('\n', "\n-- "));
            }
            Ok(())
        }
        MigrateCommand::Lint(args) => lint(settings, &migrations, &args),
        MigrateCommand::Baseline(args) => baseline(settings, &migrations, &args),
        MigrateCommand::Up { to } => apply(settings, &migrations, PlanTarget::Up(to), None),
        MigrateCommand::Down(args) => {
            let to = down_target(args.to, args.steps, args.base)?;
            apply(
                settings,
                &migrations,
                to,
                Some("`migrate down` reverts migrations in"),
            )
        }
        MigrateCommand::Status(args) => {
            let target = targets::app(settings)?;
            let mut status = db::block_on(migrate::status(&target, &migrations))
                .map_err(|e| targets::explain_app_error(settings, e))?;
            status.source = targets::migration_source(settings).to_string();
            if !status.foreign_revisions.is_empty() || status.stamp_stale {
                // alembic_version disagrees with the ledger: what it means depends on whether
                // the schema is still the migrations' (compared when an admin can).
                match targets::compare_with_migrations(settings) {
                    Ok(drift) => {
                        if drift.is_empty() {
                            let restamp = migrate::alembic::restamp_sql(status.current);
                            status.problems.push(if status.foreign_revisions.is_empty() {
                                format!("the schema is what the migrations make, so our stamp can go back: {restamp}")
                            } else {
                                format!("the schema is what the migrations make: if the revision changed no schema (a data migration), `migrate capture NAME --alembic-dir DIR` records it; if alembic_version was set by hand and the backend has no such revision file, put our stamp back instead: {restamp}")
                            });
                        }
                        status.schema_drift = Some(drift);
                    }
                    Err(e) => status.problems.push(format!(
                        "the schema was not compared with the migrations ({}); `aidock-provision migrate verify` with an admin connection does",
                        format!("{e:#}").lines().next().unwrap_or_default()
                    )),
                }
            }
            emit(out, &status, || status.to_string())?;
            if !status.problems.is_empty() {
                Err(anyhow::anyhow!(
                    "{} problem(s) with the applied migrations (listed above)",
                    status.problems.len()
                ))
            } else if args.exit_code && !status.pending.is_empty() {
                Err(anyhow::anyhow!(
                    "{} migration(s) pending (--exit-code); run `aidock-provision migrate up`",
                    status.pending.len()
                ))
            } else {
                Ok(())
            }
        }
        MigrateCommand::Verify {
            models: Some(spec),
            python,
            ..
        } => super::migrate_files::verify_models(settings, &migrations, &spec, python.as_deref()),
        MigrateCommand::Verify { fix, .. } => {
            let target = targets::app(settings)?;
            let admin = targets::verify_admin(settings)?;
            let report = db::block_on(crate::reconcile::verify::verify(
                &admin,
                &target,
                &migrations,
                &targets::runner_options(settings),
                fix,
            ))?;
            let drift = report.drift;
            let fix_sql = fix.then(|| {
                crate::reconcile::diff::fix_sql(&report.expected, &report.live, target.user())
            });
            let mut json = serde_json::json!({"clean": drift.is_empty(), "drift": drift});
            if let Some(fix) = &fix_sql {
                json["fix_sql"] = serde_json::Value::String(fix.text.clone());
                json["fix_admin_sql"] = fix
                    .admin
                    .clone()
                    .map_or(serde_json::Value::Null, serde_json::Value::String);
                json["fix_role_sql"] = serde_json::Value::String(fix.role.clone());
            }
            if drift.is_empty() {
                emit(out, &json, || {
                    format!(
                        "schema matches the applied migrations ({})",
                        target.describe()
                    )
                })?;
                Ok(())
            } else {
                // Drift is printed even with --quiet: it is the answer.
                let lines = drift
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                if let Some(fix) = fix_sql.as_ref().filter(|_| !out.json) {
                    // stdout is only SQL (`verify --fix | psql` runs it, as the role when there
                    // is no admin part); the drift goes to stderr.
                    errln!("{lines}");
                    out!(
                        "-- SQL that brings the live schema back to what the migrations make (review it; it was not run):\n{}",
                        fix.text
                    );
                    return Err(anyhow::anyhow!(
                        "{} difference(s) between the live schema and the migrations (listed above; the repair SQL is on stdout)",
                        drift.len()
                    ));
                }
                let text = || lines.clone();
                if out.quiet && !out.json {
                    out!("{}", text());
                } else {
                    emit(out, &json, text)?;
                }
                Err(anyhow::anyhow!(
                    "{} difference(s) between the live schema and the migrations",
                    drift.len()
                ))
            }
        }
        MigrateCommand::Diff(args) => super::migrate_files::diff(settings, &migrations, &args),
        MigrateCommand::Capture(args) => {
            super::migrate_files::capture(settings, &migrations, &args)
        }
        MigrateCommand::History => {
            let target = targets::app(settings)?;
            let rows = db::block_on(migrate::history(&target))
                .map_err(|e| targets::explain_app_error(settings, e))?;
            emit(out, &rows, || {
                if rows.is_empty() {
                    return format!("no migration applied to {}", target.describe());
                }
                rows.iter()
                    .map(|r| {
                        format!(
                            "{:04} {:<32} applied {} in {} ms by {}",
                            r.version, r.name, r.applied_at, r.execution_ms, r.applied_by
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

/// `migrate baseline`.
fn baseline(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    args: &crate::cli::BaselineArgs,
) -> anyhow::Result<()> {
    use crate::reconcile::baseline::{Mode, Outcome};
    if args.allow_data_loss && settings.production && !args.force {
        return Err(error::refused(
            "production: `migrate baseline --allow-data-loss` may drop columns or tables; add --force if that is intended",
        ));
    }
    let mode = match (args.reconcile, args.dry_run) {
        (true, _) => Mode::Reconcile,
        (false, true) => Mode::DryRun,
        (false, false) => Mode::Report,
    };
    let app = targets::app(settings)?;
    let admin = targets::verify_admin(settings)?;
    if mode == Mode::Reconcile {
        policy::confirm(
            settings,
            &format!(
                "`migrate baseline --reconcile` changes the schema of {} (in one transaction)",
                app.describe()
            ),
        )?;
    }
    let roles = crate::reconcile::baseline::Roles {
        admin: &admin,
        app: &app,
    };
    let report = db::block_on(crate::reconcile::baseline::baseline(
        &roles,
        migrations,
        &targets::runner_options(settings),
        crate::reconcile::baseline::Options {
            to: args.to,
            mode,
            allow_data_loss: args.allow_data_loss,
        },
    ))
    .map_err(|e| targets::explain_app_error(settings, e))?;
    let text = || {
        let mut t = format!(
            "database: {}
compared with the schema migrations 0001..{:04} make (built in a scratch database)
",
            report.database, report.version
        );
        if let Some(stamp) = report
            .alembic_version_before
            .as_ref()
            .filter(|s| !s.is_empty())
        {
            let _ = writeln!(t, "alembic_version held: {}", stamp.join(", "));
        }
        let mut group = |title: &str, items: &[String]| {
            if !items.is_empty() {
                let _ = writeln!(t, "{title} ({}):", items.len());
                for i in items {
                    let _ = writeln!(t, "  {i}");
                }
            }
        };
        group("safe to reconcile (every row and value kept)", &report.safe);
        group(
            "dropped, no row lost (only the live database has them)",
            &report.dropped,
        );
        group(
            "not checked against the data (the reconcile's transaction still stops on rows that fail them)",
            &report.not_checked,
        );
        group("lossy (only with --allow-data-loss)", &report.lossy);
        group(
            "locks and rewrites (the reconcile is one transaction: each table below stays locked until it commits; on a busy or large table, run it in a quiet window)",
            &report.locks,
        );
        group("notes", &report.notes);
        if !report.blocked.is_empty() {
            let _ = writeln!(
                t,
                "blocked by data ({}):\n{}",
                report.blocked.len(),
                crate::reconcile::baseline::describe_blocked(&report.blocked)
            );
        }
        match report.outcome {
            Outcome::AlreadyAdopted => t.push_str("nothing to do: the ledger already records this version\n"),
            Outcome::Recorded => {
                let _ = writeln!(
                    t,
                    "identical: recorded 0001..{:04} as baselined (see `migrate history`) and stamped alembic_version",
                    report.version
                );
            }
            Outcome::Differs => t.push_str("differences found; nothing changed. Next: `aidock-provision migrate baseline --dry-run` shows the exact transaction, `--reconcile` runs it\n"),
            Outcome::Planned => {
                let _ = write!(t, "-- the transaction --reconcile would run (nothing was changed):\n{}", report.sql.clone().unwrap_or_default());
            }
            Outcome::Reconciled => {
                let _ = writeln!(
                    t,
                    "reconciled in one transaction: the schema now is what 0001..{:04} make, recorded as baselined, alembic_version stamped",
                    report.version
                );
            }
        }
        t.trim_end().to_string()
    };
    emit(settings.output, &report, text)?;
    if report.outcome == Outcome::Differs {
        Err(anyhow::anyhow!(
            "the schema differs from the migrations' (listed above)"
        ))
    } else {
        Ok(())
    }
}

/// Lint findings in the up scripts of migrations not in `applied` (up to `to`).
#[must_use]
pub fn pending_findings(
    migrations: &[migrate::source::Migration],
    applied: &[migrate::plan::Applied],
    to: Option<i64>,
) -> Vec<migrate::lint::Finding> {
    migrations
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .filter(|m| to.is_none_or(|t| m.version <= t))
        .flat_map(|m| migrate::lint::lint(&m.up))
        .collect()
}

/// In production, a pending migration with lint findings is refused (exit 3) before anything
/// runs, unless each risky statement carries `-- squawk-ignore RULE`.
///
/// # Errors
/// The refusal, naming every finding.
pub fn refuse_findings_in_production(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    applied: &[migrate::plan::Applied],
    to: Option<i64>,
) -> anyhow::Result<()> {
    if !settings.production {
        return Ok(());
    }
    let findings = pending_findings(migrations, applied, to);
    if findings.is_empty() {
        return Ok(());
    }
    Err(error::refused(format!(
        "production: {} pending migration statement(s) lock or rewrite tables (nothing was applied):\n{}\nrewrite them in the safer form, or, where the table is small or new, put `-- squawk-ignore RULE -- why` on the line before the statement",
        findings.len(),
        findings
            .iter()
            .map(|f| format!("  {}", f.to_string().replace('\n', "\n  ")))
            .collect::<Vec<_>>()
            .join("\n")
    )))
}

/// `migrate lint`.
fn lint(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    args: &crate::cli::LintArgs,
) -> anyhow::Result<()> {
    let findings: Vec<migrate::lint::Finding> = if !args.files.is_empty() {
        let mut all = Vec::new();
        for path in &args.files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| error::usage(format!("cannot read `{}`: {e}", path.display())))?;
            all.extend(migrate::lint::lint(&migrate::source::Script::new(
                path.display().to_string(),
                &text,
            )));
        }
        all
    } else if args.pending {
        let applied = db::block_on(migrate::applied(&targets::app(settings)?))
            .map_err(|e| targets::explain_app_error(settings, e))?;
        pending_findings(migrations, &applied, None)
    } else {
        pending_findings(migrations, &[], None)
    };
    let out = settings.output;
    emit(out, &findings, || {
        if findings.is_empty() {
            "no findings".to_string()
        } else {
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }
    })?;
    if findings.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} finding(s); rewrite in the safer form, or add `-- squawk-ignore RULE -- why` before a statement that is safe here",
            findings.len()
        ))
    }
}

/// `up` and `down`: the one runner, then one line per script.
fn apply(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    to: PlanTarget,
    confirm: Option<&str>,
) -> anyhow::Result<()> {
    let target = targets::app(settings)?;
    if let PlanTarget::Up(to) = to
        && settings.production
    {
        let applied = db::block_on(migrate::applied(&target))
            .map_err(|e| targets::explain_app_error(settings, e))?;
        refuse_findings_in_production(settings, migrations, &applied, to)?;
    }
    if let Some(what) = confirm {
        // Name what would be reverted (read now; the run reads the ledger again under its lock).
        let listed = db::block_on(migrate::applied(&target))
            .ok()
            .and_then(|applied| migrate::plan::plan(&applied, migrations, to).ok())
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|s| migrations.iter().find(|m| m.version == s.version))
                    .map(migrate::source::Migration::label)
                    .collect::<Vec<_>>()
            });
        let which = match listed {
            Some(l) if l.is_empty() => " (nothing to revert)".to_string(),
            Some(l) => format!(", reverting {}", l.join(", ")),
            None => String::new(),
        };
        policy::confirm(
            settings,
            &format!("{what} {}{which} and may drop data", target.describe()),
        )?;
    }
    let done = db::block_on(migrate::migrate(
        &target,
        migrations,
        to,
        &targets::runner_options(settings),
        &targets::confirm(settings),
    ))
    .map_err(|e| targets::explain_app_error(settings, e))?;
    if settings.output.json {
        outln!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        print_done(settings, &target, &done);
    }
    Ok(())
}

/// One line per script a run applied or reverted (nothing with --quiet or --json).
pub fn print_done(settings: &Settings, target: &Target, done: &[runner::Done]) {
    if settings.output.quiet || settings.output.json {
        return;
    }
    for d in done {
        let verb = match d.direction {
            migrate::plan::Direction::Up => "applied",
            migrate::plan::Direction::Down => "reverted",
        };
        outln!("{verb} {} ({} ms)", d.migration, d.ms);
    }
    if done.is_empty() {
        outln!("migrations: nothing to do (database {})", target.dbname());
    }
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
