//! The `migrate` subcommands that stand on the reconcile floor and write migration files or
//! compare against the backend's models: `diff` (SQL or models), `verify --models`, `capture`.

use crate::app::output::emit;
use crate::app::output::{errln, outln};
use crate::app::settings::Settings;
use crate::app::{policy, targets};
use crate::reconcile::models;
use crate::schema::diff::printable;
use crate::{db, error, migrate};

/// The backend's models as named on the command line, imported by the Python `--python`
/// names (else the active venv's), from the current directory.
fn models_of(
    settings: &Settings,
    spec: &str,
    python: Option<&std::path::Path>,
) -> anyhow::Result<models::Models> {
    Ok(models::Models {
        spec: spec.to_string(),
        python: models::python(python, settings.virtual_env.as_deref()),
        dir: std::env::current_dir().map_err(|e| anyhow::anyhow!("the current directory: {e}"))?,
    })
}

/// What a command that builds scratch databases connects with: verify's admin, the app role,
/// and the run's options ([`PadParts::pad`] lends them as a `Scratchpad`).
struct PadParts {
    admin: db::Target,
    app: db::Target,
    opts: migrate::runner::Options,
}

impl PadParts {
    fn of(settings: &Settings) -> anyhow::Result<PadParts> {
        Ok(PadParts {
            admin: targets::verify_admin(settings)?,
            app: targets::app(settings)?,
            opts: targets::runner_options(settings),
        })
    }

    fn pad(&self) -> crate::reconcile::diff::Scratchpad<'_> {
        crate::reconcile::diff::Scratchpad {
            admin: &self.admin,
            app: &self.app,
            opts: &self.opts,
        }
    }
}

/// `migrate verify --models`: the models against what the migrations make, both built in
/// scratch databases; each difference with the model declaration that would agree.
pub(super) fn verify_models(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    spec: &str,
    python: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let out = settings.output;
    let desired = models::desired(&models_of(settings, spec, python)?)?;
    let parts = PadParts::of(settings)?;
    let pad = parts.pad();
    let drift = db::block_on(crate::reconcile::diff::compare(&pad, migrations, &desired))?;
    let hints: Vec<String> = drift.iter().map(models::hint).collect();
    let json = serde_json::json!({
        "clean": drift.is_empty(),
        "models": spec,
        "drift": drift.iter().zip(&hints).map(|(d, h)| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["model"] = serde_json::Value::String(h.clone());
            v
        }).collect::<Vec<_>>(),
    });
    if drift.is_empty() {
        emit(out, &json, || {
            format!(
                "the models {spec} match what the {} migration(s) make",
                migrations.len()
            )
        })?;
        return Ok(());
    }
    let text = || {
        drift
            .iter()
            .zip(&hints)
            .map(|(d, h)| format!("{}\n  model: {}", models::line(d), printable(h)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The differences are printed even with --quiet: they are the answer.
    if out.quiet && !out.json {
        outln!("{}", text());
    } else {
        emit(out, &json, text)?;
    }
    Err(anyhow::anyhow!(
        "{} difference(s) between the models {spec} and what the migrations make: change the models as each `model:` line says, or write the migration (`migrate diff NAME --to-models {spec}`)",
        drift.len()
    ))
}

/// `migrate capture`: make and test the pair from the migrations to the live schema, confirm,
/// record and write it; then the backend's Alembic folder.
pub(super) fn capture(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    args: &crate::cli::CaptureArgs,
) -> anyhow::Result<()> {
    let out = settings.output;
    let source = targets::migration_source(settings);
    let Some(dir) = source.dir().map(std::path::Path::to_path_buf) else {
        return Err(error::usage(
            "migrate capture writes the new migration into the project's migrations directory, and there is none here (the migrations are the ones built into the binary): start a project from them with `aidock-provision project init` (config/, sql/, seeds/), then run this from there (or pass --migrations-dir)",
        ));
    };
    if let Some(alembic) = &args.alembic_dir
        && !alembic.is_dir()
    {
        return Err(error::usage(format!(
            "`{}` is not a directory; pass the backend's Alembic versions directory (e.g. Back/alembic/versions)",
            alembic.display()
        )));
    }
    let parts = PadParts::of(settings)?;
    let pad = parts.pad();
    let Some(capture) = db::block_on(crate::reconcile::capture::prepare(
        &pad,
        migrations,
        &args.name,
        args.allow_data_loss,
    ))
    .map_err(|e| targets::explain_app_error(settings, e))?
    else {
        if out.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"captured": false, "files": []}))?
            );
        } else {
            outln!(
                "nothing to capture: the schema of {} is what its migrations make, and alembic_version holds no revision of the backend's",
                parts.app.describe()
            );
        }
        return Ok(());
    };
    // The backend's revision files it replaces, found before anything changes.
    let ours: Vec<String> = migrations
        .iter()
        .map(|m| migrate::alembic::revision_id(m.version))
        .collect();
    let replaced = match &args.alembic_dir {
        Some(alembic) => {
            crate::reconcile::capture::replaced_files(alembic, &capture.foreign, &ours)?
        }
        None => Vec::new(),
    };
    for note in &capture.generated.notes {
        errln!("note: {note}");
    }
    for l in &capture.generated.lossy {
        errln!("loses data (allowed by --allow-data-loss): {l}");
    }
    let labels: Vec<String> = capture
        .migrations
        .iter()
        .map(migrate::source::Migration::label)
        .collect();
    let head = capture.migrations.iter().map(|m| m.version).max();
    policy::confirm(
        settings,
        &format!(
            "record {} as applied to {} (the live schema already has {}) and stamp alembic_version {}",
            labels.join(", "),
            parts.app.describe(),
            if capture.data_only() {
                "everything: it records the backend's data migration"
            } else {
                "what it makes"
            },
            head.map(migrate::alembic::revision_id).unwrap_or_default()
        ),
    )?;
    db::block_on(crate::reconcile::capture::record(
        &parts.app,
        &capture,
        &dir,
        &targets::confirm(settings),
    ))
    .map_err(|e| targets::explain_app_error(settings, e))?;
    // The backend's Alembic: its revisions replaced by ours, our files exported.
    let mut removed = Vec::new();
    let mut exported = Vec::new();
    if let Some(alembic) = &args.alembic_dir {
        for path in &replaced {
            std::fs::remove_file(path).map_err(|e| {
                anyhow::anyhow!(
                    "the capture is recorded, but `{}` could not be removed ({e}): remove it by hand, then run `aidock-provision migrate alembic-export {}`",
                    path.display(),
                    alembic.display()
                )
            })?;
            removed.push(path.display().to_string());
        }
        let all = migrate::source::load(Some(&dir))?;
        for (path, written) in migrate::alembic::export(alembic, &all, false, None).map_err(|e| {
            e.context(format!(
                "the capture is recorded, but the revision files could not be exported to `{}`; fix the above, then run `aidock-provision migrate alembic-export {}`",
                alembic.display(),
                alembic.display()
            ))
        })? {
            if written != migrate::alembic::Written::Unchanged {
                exported.push(path.display().to_string());
            }
        }
    }
    if out.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "captured": true,
                "files": capture.generated.files,
                "recorded": labels,
                "alembic_version": head.map(migrate::alembic::revision_id),
                "replaced_revisions": capture.foreign,
                "removed": removed,
                "exported": exported,
                "data_only": capture.data_only(),
            }))?
        );
        return Ok(());
    }
    for f in &capture.generated.files {
        outln!("wrote {}", dir.join(&f.name).display());
    }
    outln!(
        "recorded {} as applied (tested on a scratch database: the migrations and then it make the live schema; down comes back); alembic_version is {}",
        labels.join(", "),
        head.map(migrate::alembic::revision_id).unwrap_or_default()
    );
    for r in &removed {
        outln!("removed {r} (the capture replaces it)");
    }
    for e in &exported {
        outln!("exported {e}");
    }
    if args.alembic_dir.is_none() && !capture.foreign.is_empty() {
        outln!(
            "next: in the backend's Alembic folder, delete the file(s) of revision {} (the capture replaces them) and run `aidock-provision migrate alembic-export <that folder>`; until then its `alembic upgrade head` cannot find revision {}",
            capture.foreign.join(", "),
            head.map(migrate::alembic::revision_id).unwrap_or_default()
        );
    } else if !out.quiet {
        outln!(
            "next: commit the new migration files (and the backend's alembic folder); `aidock-provision migrate verify` is clean"
        );
    }
    Ok(())
}

/// `migrate diff`: generate, test, then write (or print) the pair(s).
pub(super) fn diff(
    settings: &Settings,
    migrations: &[migrate::source::Migration],
    args: &crate::cli::DiffArgs,
) -> anyhow::Result<()> {
    let source = targets::migration_source(settings);
    let dir = match (source.dir(), args.print) {
        (Some(d), _) => Some(d.to_path_buf()),
        (None, true) => None,
        (None, false) => {
            return Err(error::usage(
                "migrate diff writes into the project's migrations directory, and there is none here: run it from the project root (where sql/ is), pass --migrations-dir, or use --print",
            ));
        }
    };
    let (desired, from) = match (&args.to, &args.to_models) {
        (Some(to), _) => (
            crate::reconcile::diff::read_desired(to)?,
            format!("`{}`", to.display()),
        ),
        (None, Some(spec)) => (
            models::desired(&models_of(settings, spec, args.python.as_deref())?)?,
            format!("the models {spec}"),
        ),
        (None, None) => unreachable!("clap requires --to or --to-models"),
    };
    let parts = PadParts::of(settings)?;
    let pad = parts.pad();
    let generated = db::block_on(crate::reconcile::diff::generate(
        &pad,
        migrations,
        &desired,
        &args.name,
        args.allow_data_loss,
    ))?;
    for note in &generated.notes {
        errln!("note: {note}");
    }
    for l in &generated.lossy {
        errln!("loses data (allowed by --allow-data-loss): {l}");
    }
    if generated.files.is_empty() {
        if settings.output.json {
            outln!("{}", serde_json::to_string_pretty(&generated)?);
        } else {
            outln!(
                "no difference: the migrations already make the schema of {from}; nothing written"
            );
        }
        return Ok(());
    }
    if args.print || settings.output.json {
        if settings.output.json {
            outln!("{}", serde_json::to_string_pretty(&generated)?);
        } else {
            for f in &generated.files {
                outln!("-- ==== {} ====\n{}", f.name, f.text);
            }
        }
        if args.print {
            return Ok(());
        }
    }
    let dir = dir.expect("checked above");
    for f in &generated.files {
        if dir.join(&f.name).exists() {
            return Err(error::usage(format!(
                "`{}` already exists; nothing was written",
                dir.join(&f.name).display()
            )));
        }
    }
    for f in &generated.files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.text)
            .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", path.display()))?;
        if !settings.output.json {
            outln!("wrote {}", path.display());
        }
    }
    if generated.live_has_it {
        // Said even with --quiet: `migrate up` would fail.
        errln!(
            "note: the live database already has this schema (a change made by hand, then dumped?): `migrate up` would fail on it (already exists). Record the new files as applied instead: `aidock-provision migrate baseline` checks that the schema is what they make and records them (next time, `aidock-provision migrate capture NAME` writes and records in one step)"
        );
    } else if !settings.output.json && !settings.output.quiet {
        outln!(
            "tested on scratch databases: up reaches the desired schema, down returns to the current one. Next: review the files, `migrate lint`, `migrate plan`, `migrate up`, `migrate verify`"
        );
        outln!("{}", undo_line(migrations, &generated.files));
    }
    Ok(())
}

/// How to undo a change `migrate diff` or `capture` wrote, once applied: down to the version
/// before its first file (a change with enum values or a concurrent index is several
/// versions, and `--steps 1` would revert only the last).
fn undo_line(
    migrations: &[migrate::source::Migration],
    files: &[crate::reconcile::diff::File],
) -> String {
    let before = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let versions = files.iter().filter(|f| f.name.ends_with(".up.sql")).count();
    let target = if before == 0 {
        "--base".to_string()
    } else {
        format!("--to {before}")
    };
    format!(
        "undo, once applied: `aidock-provision migrate down {target}` ({} of this change{})",
        if versions == 1 {
            "the one version".to_string()
        } else {
            format!("all {versions} versions")
        },
        if versions > 1 {
            "; `--steps 1` would revert only the last"
        } else {
            ""
        }
    )
}
