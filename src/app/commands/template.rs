//! `template [--dev ...] [--name T]`: build or refresh a template database at head, seeded, closed
//! to connections, and marked with what it was built from (a no-op when that has not changed).

use crate::app::output::outln;
use crate::app::settings::{Settings, is_valid_identifier};
use crate::app::{policy, targets};
use crate::cli::TemplateArgs;
use crate::db::trust::CatalogSession;
use crate::migrate::plan::Target as PlanTarget;
use crate::provision::template;
use crate::reconcile::scratch::Scratch;
use crate::{db, error, migrate, provision, seed};
use anyhow::Context as _;

/// What `template` did, for `--json` (docs/JSON.md).
fn json_report(
    settings: &Settings,
    name: &str,
    outcome: &str,
    fingerprint: Option<&str>,
    changed: &[String],
) -> anyhow::Result<()> {
    if settings.output.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "template": name,
                "outcome": outcome,
                "fingerprint": fingerprint,
                "changed": changed,
            }))?
        );
    }
    Ok(())
}

/// Run `template`.
///
/// # Errors
/// A guard (`--dev` in production), a bad name, a database of that name we did not build,
/// connection, migration or seed failures.
pub fn run(settings: &Settings, args: &TemplateArgs) -> anyhow::Result<()> {
    policy::check(settings, policy::Action::Seed { dev: args.dev.dev })?;
    settings.check_password()?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}_template", settings.database.name));
    if !is_valid_identifier(&name) {
        return Err(error::usage(format!(
            "template name `{name}` must match ^[a-z_][a-z0-9_]{{0,62}}$"
        )));
    }
    if args.drop {
        return drop_template(settings, &name);
    }
    let migrations = targets::migrations(settings)?;
    let seeds = seed::load(settings.seed.dir.as_deref())?;
    let dev = super::seed::dev_options(settings, &args.dev);
    // What shapes the data: the seed files, the --dev flags, and how passwords are hashed (a
    // template of argon2id hashes is no template for a backend that verifies bcrypt).
    let shape = targets::seed_options(settings);
    let fingerprint = template::fingerprint(
        &migrations,
        &format!(
            "{seeds:?} {dev:?} scheme={:?} argon={:?} production={}",
            shape.scheme, shape.argon, shape.production
        ),
    );
    let admin = targets::admin(settings, targets::Local::Start)?;
    let quiet = settings.output.quiet || settings.output.json;
    let pool_mode = settings.server.pool_mode;
    db::block_on(async {
        let client = admin.connect().await?;
        provision::admin_rights(&client, &admin).await?;
        // Exclusive: concurrent `template` runs build once; clones wait for the build.
        let _lock = template::lock(&admin, &name, false, settings.migrate.wait_timeout).await?;
        let mut rebuilt: Vec<String> = Vec::new();
        if let Some(found) = template::find(&client, &name).await?
            && found.is_template
            && !found.allows_connections
            && found.owner == admin.user()
            && found.inputs() == Some(fingerprint.as_str())
            && let Some(built) = found.contents()
        {
            // Built from these inputs; current if nobody has been inside it since (sealed), or
            // if a copy of it still holds what was recorded (then sealed again).
            let changed = if found.sealed() {
                Vec::new()
            } else {
                let (now, seal) = read_copy(&client, &admin, &name, pool_mode).await?;
                let changed = template::changes(&built, &now);
                if changed.is_empty() {
                    let record = template::Record {
                        fingerprint: &fingerprint,
                        seal: &seal,
                        contents: &built,
                    };
                    template::record(&client, &name, Some(record)).await?;
                }
                changed
            };
            if changed.is_empty() {
                if !quiet {
                    outln!("template {name} is current ({fingerprint}); nothing to do");
                }
                return json_report(settings, &name, "current", Some(&fingerprint), &[]);
            }
            if !quiet {
                outln!(
                    "template {name} changed since it was built ({}); building it again",
                    changed.join("; ")
                );
            }
            rebuilt = changed;
        }
        template::drop_ours(&client, &name).await?;
        // The admin's own database, built as the admin: the app's role (whose password every
        // developer has) never owns or enters it; clones are handed to their own roles.
        template::create(&client, &name, &targets::database(settings)).await?;
        // Unpinned: the migrations and seeds need the usual search_path, and nobody but the
        // admin can write here (its own database, closed to PUBLIC, checked by `create`).
        let build = admin.with_dbname(&name).unpinned();
        migrate::migrate(
            &build,
            &migrations,
            PlanTarget::Up(None),
            &targets::runner_options(settings),
            &crate::db::ha::Confirm::default(),
        )
        .await?;
        let report = seed::seed(
            &targets::seed_options(settings),
            &build,
            &seeds,
            false,
            dev.clone(),
            &super::seed::progress_bar(quiet),
            &crate::db::ha::Confirm::default(),
        )
        .await?;
        // Closed (nobody inside, nobody can enter), then read from a copy, so that what is
        // recorded is what every clone copies; the seal is the row version at the read.
        template::close(&client, &name).await?;
        let (contents, seal) = read_copy(&client, &admin, &name, pool_mode).await?;
        let record = template::Record {
            fingerprint: &fingerprint,
            seal: &seal,
            contents: &contents,
        };
        template::record(&client, &name, Some(record)).await?;
        if !quiet {
            outln!(
                "template {name} built: {} migration(s), reference data{} ({fingerprint}); owned by `{}`, closed to connections\nclone it with: aidock-provision init --from-template {name}",
                migrations.len(),
                match (&report.fake_users, &report.usage_logs) {
                    (Some(users), logs) => format!(
                        ", dev data ({} fake users, {} usage logs)",
                        users.inserted + users.updated + users.kept,
                        logs.as_ref().map_or(0, |l| l.rows)
                    ),
                    _ => String::new(),
                },
                admin.user()
            );
        }
        json_report(settings, &name, "built", Some(&fingerprint), &rebuilt)
    })
}

/// What the closed template `name` holds, read from a file copy of it (a scratch database,
/// dropped on every way out), so the template is never opened; and its row version before the
/// copy, the seal to record (`provision::template::Found::sealed`). A row that changed while
/// the copy was made and read is refused: the copy may not be what the template holds.
async fn read_copy(
    client: &tokio_postgres::Client,
    admin: &db::Target,
    name: &str,
    pool_mode: db::pooler::PoolMode,
) -> anyhow::Result<(template::Contents, String)> {
    let version = |found: Option<template::Found>| found.map(|f| f.row_version);
    crate::reconcile::scratch::drop_stale_scratch_databases(client).await;
    let before = version(template::find(client, name).await?);
    let copy = Scratch::copy_of(client, admin, name, pool_mode).await?;
    // The admin's catalog session (db::trust), as in a clone: the copy holds whatever the
    // template's build made, owners included.
    let read = async {
        let mut session = CatalogSession::connect(admin, &copy.name).await?;
        let tx = session.snapshot().await?;
        template::contents(&tx).await
    }
    .await;
    let dropped = copy.drop(client).await;
    let contents = read.with_context(|| format!("reading what template `{name}` holds"))?;
    dropped?;
    let after = version(template::find(client, name).await?);
    match (before, after) {
        (Some(before), Some(after)) if before == after => Ok((contents, before)),
        _ => Err(anyhow::anyhow!(
            "template `{name}` was altered (ALTER DATABASE) while a copy of it was being read; run `aidock-provision template` again"
        )),
    }
}

/// `template --drop`: remove a template this tool built (under its exclusive lock, so no clone
/// is copying it); one it did not build is refused, one that is not there is said.
fn drop_template(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let admin = targets::admin(settings, targets::Local::Existing)?;
    let quiet = settings.output.quiet || settings.output.json;
    db::block_on(async {
        let client = admin.connect().await?;
        let _lock = template::lock(&admin, name, false, settings.migrate.wait_timeout).await?;
        let there = template::find(&client, name).await?.is_some();
        template::drop_ours(&client, name).await?;
        if !quiet {
            if there {
                outln!("template {name} dropped");
            } else {
                outln!("template {name} is not there; nothing to do");
            }
        }
        json_report(
            settings,
            name,
            if there { "dropped" } else { "absent" },
            None,
            &[],
        )
    })
}
