//! `migrate verify`: replay the applied migrations into a scratch database and compare its
//! catalog with the live one.
//!
//! The scratch database is [`super::scratch`]'s (made by the admin from `template0` with the live
//! database's encoding and locale, furnished, handed to the role that runs the migrations, and
//! dropped afterwards, also on error and Ctrl-C; one a killed verify left is dropped by the
//! next). Nothing live is locked, written or left behind: the live database is only read. Each
//! migration replays in its own transaction exactly as `up` ran it ([`runner::replay`]), so
//! `CREATE SCHEMA`, schema-qualified SQL, extensions, catalog lookups by name and enum values
//! added by one migration and used by the next behave as they did.

use anyhow::Context as _;

use super::scratch::{Scratch, Source, drop_stale_scratch_databases, require_createdb};
use crate::db::trust::CatalogSession;
use crate::db::{self, Target};
use crate::error;
use crate::migrate::source::Migration;
use crate::migrate::{ledger, runner};
use crate::schema::catalog::{self, ReadOptions};
use crate::schema::diff::{Drift, DriftKind};

/// The migration engine's own tables; no migration creates them.
pub(crate) const ENGINE_TABLES: [&str; 3] = [
    "aidock_schema_history",
    "alembic_version",
    "aidock_seed_runs",
];

/// Compare the live database (reached through `app`, the role that applied the migrations) with
/// what its applied migrations make, replayed through `admin`'s scratch database.
///
/// # Errors
/// Without admin rights to create a database (exit 2, saying what to pass); connection
/// failures; an applied migration the binary does not know; a script failing on replay.
pub async fn verify(
    admin: &Target,
    app: &Target,
    migrations: &[Migration],
    opts: &runner::Options,
    fix: bool,
) -> anyhow::Result<Report> {
    let live = app.connect().await?;
    let applied = ledger::read(&live).await?;
    let mut drift = Vec::new();
    let mut versions = Vec::new();
    for row in &applied {
        let Some(m) = migrations.iter().find(|m| m.version == row.version) else {
            anyhow::bail!(
                "the database has migration {:04} `{}` applied, which this binary does not know; verify needs its script (use the right --migrations-dir)",
                row.version,
                row.name
            );
        };
        if m.up.checksum != row.checksum {
            drift.push(Drift {
                kind: "migration".into(),
                object: m.up.file.clone(),
                drift: DriftKind::Edited,
                problem: "edited after it was applied; the expected schema uses today's file"
                    .into(),
                expected: None,
                found: None,
            });
        }
        versions.push(m.version);
    }

    let (expected, live_catalog) =
        expected_and_live(admin, app, &live, migrations, &versions, opts, fix).await?;
    drift.extend(crate::schema::diff::diff(&expected, &live_catalog));
    Ok(Report {
        drift,
        expected,
        live: live_catalog,
    })
}

/// The catalog that migrations `versions` make (replayed into a scratch database made by
/// `admin` from template0 with `live`'s encoding, locale and schema public, owned by `app`'s
/// role, dropped afterwards whatever happens), and `live`'s own catalog, read meanwhile.
/// `meta` also reads the parts DDL is written from.
///
/// # Errors
/// Without rights to create a database (exit 2); a script failing on replay; connections.
pub async fn expected_and_live(
    admin: &Target,
    app: &Target,
    live: &tokio_postgres::Client,
    migrations: &[Migration],
    versions: &[i64],
    opts: &runner::Options,
    meta: bool,
) -> anyhow::Result<(catalog::Catalog, catalog::Catalog)> {
    let admin_client = admin.connect().await?;
    // The scratch database needs the primary; a standby is said as such (exit 4), not as a
    // failed CREATE DATABASE in a read-only transaction.
    if let db::Writable::Standby = db::writable(&admin_client).await? {
        return Err(db::standby_error(admin));
    }
    require_createdb(&admin_client, admin).await?;
    drop_stale_scratch_databases(&admin_client).await;
    let options = ReadOptions {
        exclude: &ENGINE_TABLES,
        meta,
        platform: false,
    };
    // What the scratch database copies from the live one is read on the admin's catalog session
    // there (db::trust), never taken from the app's answers.
    let mut session = CatalogSession::connect(admin, app.dbname()).await?;
    let source = Source::read(&mut session, app.user()).await?;
    drop(session);
    // The live catalog is read while the server creates the scratch database.
    let (found, scratch) = tokio::join!(
        catalog::read(live, options),
        Scratch::create(&admin_client, admin, &source.locale, opts.pool_mode)
    );
    let scratch = scratch?;
    let work = async {
        let found = found?;
        scratch.furnish(admin, &source).await?;
        scratch.hand_over(&admin_client, app).await?;
        let mut replay = app.with_dbname(&scratch.name).connect().await?;
        runner::replay(&mut replay, migrations, versions, opts)
            .await
            .map_err(|e| explain_replay_error(e, app.user()))
            .context("replaying the migrations in a scratch database")?;
        let expected = catalog::read(&replay, options).await?;
        anyhow::Ok((expected, found))
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(error::interrupted("interrupted (Ctrl-C); the scratch database was dropped")),
    };
    // Dropped whatever happened above; WITH (FORCE) ends the replay connection if still open.
    let dropped = scratch.drop(&admin_client).await;
    let pair = result?;
    dropped?;
    Ok(pair)
}

/// What verify found: every difference, and both catalogs (with parts, for `--fix`).
pub struct Report {
    pub drift: Vec<Drift>,
    pub expected: catalog::Catalog,
    pub live: catalog::Catalog,
}

/// A replay failure whose cause the user can act on, named first: a schema the migrations use
/// but do not make (a platform's, such as Supabase's auth), or a statement the app role may not
/// run (it needs a superuser: `migrate up` fails on it the same way).
pub(crate) fn explain_replay_error(e: anyhow::Error, role: &str) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("(SQLSTATE 3F000)") && crate::schema::scope::owned().is_empty() {
        e.context("the migrations use a schema they do not make; if a platform made it (Supabase's auth, pg_cron's cron ...), name the migrations' own schemas in migrate.schemas (AIDOCK__MIGRATE__SCHEMAS=public) and verify copies the others into its scratch database")
    } else if text.contains("(SQLSTATE 42501)") {
        e.context(format!(
            "a migration runs a statement `{role}` may not run (the migrations run as that role, here as under `migrate up`, which fails on it the same way); what needs a superuser, such as an untrusted extension (amcheck, postgis), is the admin's: create it once in the app's database as the admin, write `CREATE EXTENSION IF NOT EXISTS ...` in the migration, and verify, diff and baseline create it in their scratch databases too"
        ))
    } else {
        e
    }
}
