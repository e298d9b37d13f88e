//! `migrate verify`: replay the applied migrations into a scratch database and compare its
//! catalog with the live one.
//!
//! The scratch database is created by the admin connection from `template0` (with the live
//! database's encoding and locale), owned by the role that runs the migrations, and dropped
//! afterwards, also on error and Ctrl-C; a verify killed outright leaves it behind, and the next
//! verify drops it (each verify holds an advisory lock named after its scratch database for as
//! long as it lives). Nothing live is locked, written or left behind: the live database is only
//! read. Each migration replays in its own transaction exactly as `up` ran it
//! ([`runner::replay`]), so `CREATE SCHEMA`, schema-qualified SQL, extensions, catalog lookups by
//! name and enum values added by one migration and used by the next behave as they did.

use anyhow::Context as _;
use tokio_postgres::Client;

use super::ledger;
use super::runner;
use super::source::Migration;
use crate::db::sql::Sql as _;
use crate::db::{self, Target};
use crate::error;
use crate::schema::catalog::{self, ReadOptions};
use crate::schema::diff::{Drift, DriftKind};

/// The migration engine's own tables; no migration creates them.
pub(super) const ENGINE_TABLES: [&str; 3] = [
    "aidock_schema_history",
    "alembic_version",
    "aidock_seed_runs",
];

/// Scratch databases are named `aidock_verify_<12 hex>`.
const SCRATCH_PREFIX: &str = "aidock_verify_";

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
    let (locale, public) = live_settings(live).await?;
    // The live catalog is read while the server creates the scratch database.
    let (found, scratch) = tokio::join!(
        catalog::read(live, options),
        Scratch::create(&admin_client, admin, app, &locale, opts.pool_mode)
    );
    let scratch = scratch?;
    let work = async {
        let found = found?;
        mirror_public_schema(admin, public, &scratch.name).await?;
        mirror_platform(live, admin, &scratch.name).await?;
        mirror_admin_extensions(live, admin, app.user(), &scratch.name).await?;
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

/// One scratch database (verify's, diff's), dropped by [`Scratch::drop`], or by the next verify
/// or diff if this process dies first. While it lives, a connection named after it
/// (`application_name`) is open, and beats: it keeps the database's comment at the server's
/// current time every [`HEARTBEAT`], saying whether that connection is a server session of its
/// own. A scratch database whose own session is gone, or that has had no heartbeat for
/// [`STALE_AFTER`] seconds (behind a pooler, where a server connection's name is whichever
/// client last used it), was left by a run that died. No session state, no held-open transaction.
pub(super) struct Scratch {
    pub(super) name: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// How often a live scratch database says so.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// After how long without a heartbeat a scratch database is taken for abandoned.
const STALE_AFTER: i64 = 60;
/// The heartbeat's words for "my named connection is a server session of its own".
const OWN_SESSION: &str = ", named session";

impl Scratch {
    /// Create the database from template0 with `locale`, owned by `app`'s role, named with the
    /// server's clock, and start its heartbeat.
    pub(super) async fn create(
        admin: &Client,
        admin_target: &Target,
        app: &Target,
        locale: &[String; 3],
        pool_mode: crate::db::pooler::PoolMode,
    ) -> anyhow::Result<Self> {
        let now: i64 = admin
            .one("SELECT extract(epoch FROM now())::bigint", &[])
            .await
            .context("reading the server's clock")?
            .get(0);
        let name = format!("{SCRATCH_PREFIX}{now}_{}", db::random_tag());
        // The heartbeat's connection, opened first and named after the database: while it is
        // connected, the scratch database is alive (a killed run's connection goes with it).
        let beating = admin_target.named(&name).connect().await?;
        let own_session = pool_mode.sessions_hold(&beating).await;
        create_scratch(admin, app, &name, locale).await?;
        let beat = format!(
            "DO $$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', {}, 'aidock-provision scratch database, alive at ' || extract(epoch FROM now())::bigint || {}); END $$",
            db::quote_literal(&name),
            db::quote_literal(if own_session { OWN_SESSION } else { "" })
        );
        let heartbeat = tokio::spawn(async move {
            loop {
                let _ = beating.batch_execute(&beat).await;
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        Ok(Scratch { name, heartbeat })
    }

    /// `DROP DATABASE ... WITH (FORCE)`, and stop the heartbeat.
    pub(super) async fn drop(self, admin: &Client) -> anyhow::Result<()> {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db::quote_ident(&self.name)
            ))
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .with_context(|| format!("dropping the scratch database `{}`", self.name))
    }
}

/// What verify found: every difference, and both catalogs (with parts, for `--fix`).
pub struct Report {
    pub drift: Vec<Drift>,
    pub expected: catalog::Catalog,
    pub live: catalog::Catalog,
}

/// Verify creates a database: the admin needs CREATEDB (or to be a superuser).
pub(super) async fn require_createdb(client: &Client, admin: &Target) -> anyhow::Result<()> {
    let may: bool = client
        .one(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .context("reading the admin role's attributes")?
        .get(0);
    if may {
        Ok(())
    } else {
        Err(error::usage(format!(
            "migrate verify replays the migrations into a scratch database, and `{}` may not create databases; pass an admin connection that may (--admin-url or AIDOCK_ADMIN_URL, a role with CREATEDB)",
            admin.user()
        )))
    }
}

/// Drop the scratch databases of runs that died without cleaning up: one whose run said its
/// named connection is a session of its own (not through a transaction pooler) and that has no
/// such connection now, or one with no heartbeat (nor, before the first, creation) within
/// [`STALE_AFTER`] seconds, by the server's clock. What this run's own connection goes through
/// does not matter: `pg_stat_activity` shows the server's sessions either way.
pub(super) async fn drop_stale_scratch_databases(client: &Client) {
    let Ok(rows) = client
        .rows(
            "SELECT d.datname::text, \
                    coalesce(substring(c.comment FROM 'alive at ([0-9]+)'), \
                             substring(d.datname FROM '^aidock_verify_([0-9]+)_'))::bigint, \
                    extract(epoch FROM now())::bigint, \
                    coalesce(c.comment LIKE '%' || $1, false), \
                    EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = d.datname) \
             FROM pg_database d, LATERAL (SELECT shobj_description(d.oid, 'pg_database') AS comment) c \
             WHERE d.datname LIKE 'aidock\\_verify\\_%'",
            &[(&OWN_SESSION, tokio_postgres::types::Type::TEXT)],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let (name, alive, now, own_session, connected): (String, Option<i64>, i64, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // Scratch databases of earlier versions had no timestamp: stale as well.
        if (own_session && !connected) || alive.is_none_or(|at| now - at > STALE_AFTER) {
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    db::quote_ident(&name)
                ))
                .await;
        }
    }
}

/// The live database's encoding and locale, and its schema `public`'s owner and whether PUBLIC
/// may create there (`None` when it has no schema public).
pub(super) async fn live_settings(
    live: &Client,
) -> anyhow::Result<([String; 3], Option<(String, bool)>)> {
    let row = live
        .one(
            "SELECT pg_encoding_to_char(encoding), datcollate::text, datctype::text FROM pg_database \
             WHERE datname = current_database()",
            &[],
        )
        .await
        .context("reading the live database's encoding and locale")?;
    let locale = [row.get(0), row.get(1), row.get(2)];
    let public = live
        .opt(
            "SELECT pg_get_userbyid(nspowner), \
                    EXISTS (SELECT 1 FROM aclexplode(nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') \
             FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .context("reading the live schema public")?
        .map(|r| (r.get(0), r.get(1)));
    Ok((locale, public))
}

/// `CREATE DATABASE ... TEMPLATE template0` with the live database's encoding and locale, owned
/// by the role that replays the migrations.
async fn create_scratch(
    admin: &Client,
    app: &Target,
    scratch: &str,
    [encoding, collate, ctype]: &[String; 3],
) -> anyhow::Result<()> {
    let sql = format!(
        "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        db::quote_ident(scratch),
        db::quote_ident(app.user()),
        db::quote_literal(encoding),
        db::quote_literal(collate),
        db::quote_literal(ctype)
    );
    admin.batch_execute(&sql).await.map_err(|e| {
        if db::sqlstate(&e) == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) {
            error::usage(format!(
                "role `{app}` (database.owner) does not exist, and the scratch databases migrate verify, diff and baseline build belong to it: run `aidock-provision init` first",
                app = app.user()
            ))
        } else if db::sqlstate(&e) == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            error::usage(format!(
                "the admin connection may create databases, but not one owned by `{app}` (the role the migrations run as): {}. Use an admin that is a superuser or a member of `{app}` (GRANT {app} TO <admin>)",
                db::describe_error(&e),
                app = app.user()
            ))
        } else {
            anyhow::anyhow!(db::describe_error(&e))
                .context(format!("creating the scratch database `{scratch}`"))
        }
    })
}

/// Copy the platform's schemas (those outside `migrate.schemas`: Supabase's `auth`, pg_cron's
/// `cron` ...) from `source` into a scratch database, as the admin, before the migrations run
/// there: they may reference those objects, which no migration makes. Nothing when every schema
/// is the migrations'.
pub(super) async fn mirror_platform(
    source: &Client,
    admin: &Target,
    scratch: &str,
) -> anyhow::Result<()> {
    if crate::schema::scope::owned().is_empty() {
        return Ok(());
    }
    let platform = catalog::read(
        source,
        ReadOptions {
            exclude: &[],
            meta: true,
            platform: true,
        },
    )
    .await
    .context("reading the platform's schemas (outside migrate.schemas)")?;
    let plan = crate::schema::ddl::plan_with(
        &catalog::Catalog::default(),
        &platform,
        admin.user(),
        crate::schema::ddl::Options {
            direction: crate::schema::ddl::Direction::Up,
            one_transaction: true,
            guess_renames: false,
        },
    );
    if plan.is_empty() {
        return Ok(());
    }
    let sql: Vec<String> = [
        crate::schema::ddl::Place::Pre,
        crate::schema::ddl::Place::Main,
        crate::schema::ddl::Place::Post,
    ]
    .into_iter()
    .filter_map(|p| plan.script(p))
    .collect();
    let client = admin.with_dbname(scratch).connect().await?;
    client
        .batch_execute(&format!("BEGIN;\n{}\nCOMMIT;", sql.join("\n")))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| {
            format!("copying the platform's schemas (outside migrate.schemas) into the scratch database `{scratch}`")
        })
}

/// Create in a scratch database, as the admin, the extensions of `source` that a role other than
/// the app's made (the admin before `init`, a platform): the migrations' own
/// `CREATE EXTENSION IF NOT EXISTS` of them is then a no-op there as it was in the live database,
/// where the app role could not have made them (PostGIS, amcheck: not trusted). Only into
/// schemas the scratch database has (public, a copied platform schema).
/// A replay failure whose cause the user can act on, named first: a schema the migrations use
/// but do not make (a platform's, such as Supabase's auth), or a statement the app role may not
/// run (it needs a superuser: `migrate up` fails on it the same way).
pub(super) fn explain_replay_error(e: anyhow::Error, role: &str) -> anyhow::Error {
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

pub(super) async fn mirror_admin_extensions(
    source: &Client,
    admin: &Target,
    app_role: &str,
    scratch: &str,
) -> anyhow::Result<()> {
    let rows = source
        .rows(
            "SELECT e.extname::text, n.nspname::text, e.extversion
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             JOIN pg_roles r ON r.oid = e.extowner
             WHERE r.rolname <> $1 AND e.extname <> 'plpgsql'
             ORDER BY e.oid",
            &[(&app_role, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .context("reading the extensions the admin made")?;
    if rows.is_empty() {
        return Ok(());
    }
    let client = admin.with_dbname(scratch).connect().await?;
    let schemas: Vec<String> = client
        .rows("SELECT nspname::text FROM pg_namespace", &[])
        .await
        .context("reading the scratch database's schemas")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for row in rows {
        let (name, schema, version): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        if !schemas.contains(&schema) {
            continue;
        }
        client
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}",
                db::quote_ident(&name),
                db::quote_ident(&schema),
                db::quote_literal(&version)
            ))
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .with_context(|| {
                format!("creating extension `{name}` (made by the admin in the live database) in the scratch database `{scratch}`")
            })?;
    }
    Ok(())
}

/// Give the scratch database's schema `public` the owner and PUBLIC CREATE right the live one
/// has: `init` (not a migration) set those, and the migrations ran on top of them.
pub(super) async fn mirror_public_schema(
    admin: &Target,
    public: Option<(String, bool)>,
    scratch: &str,
) -> anyhow::Result<()> {
    // No schema public in the live database: the migrations dropped it, and will on replay.
    let Some((owner, public_create)) = public else {
        return Ok(());
    };
    let client = admin.with_dbname(scratch).connect().await?;
    let grant = if public_create {
        "GRANT CREATE ON SCHEMA public TO PUBLIC"
    } else {
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC"
    };
    client
        .batch_execute(&format!(
            "ALTER SCHEMA public OWNER TO {}; {grant}",
            db::quote_ident(&owner)
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .context("preparing schema public in the scratch database as init prepared the live one")
}
