//! The connections and engine options a command uses, made from [`Settings`]: the admin and app
//! endpoints, the project-local cluster (started only where a command says so), and each engine
//! module's own option struct (as ripgrep's `HiArgs` produces its libraries' builders).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::settings::Settings;
use crate::app::output::errln;
use crate::db::Target;
use crate::db::sql::Sql as _;
use crate::local_pg::{self, LocalPg, State};
use crate::{error, migrate, provision, seed};
use tokio_postgres::types::Type;

/// Whether to start the project-local cluster when no admin URL is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Start it (creating it if absent): `init`, `reset`.
    Start,
    /// Use it only if it exists; say to run `init` otherwise: `migrate`, `seed`.
    Existing,
}

/// The project-local cluster at `local.data_dir` (nothing is started or looked up yet).
///
/// # Errors
/// A data directory that cannot be resolved.
pub fn local_cluster(settings: &Settings) -> anyhow::Result<LocalPg> {
    if settings.local.outside_project {
        let here = std::env::current_dir().unwrap_or_default();
        return Err(error::usage(format!(
            "not inside an aidock-provision project: no `.aidock/`, `config/` or `sql/` in `{}` or above it, so there is no project-local cluster here (and none is made in an arbitrary directory). Run from the project's directory, or name it: --project DIR or AIDOCK_PROJECT_DIR=DIR (needed from another repository, e.g. the backend's for the pytest plugin); or use another server: AIDOCK_ADMIN_URL (with DATABASE_URL)",
            here.display()
        )));
    }
    if let Some(file) = &settings.local.data_dir_file {
        local_pg::check_settings_file(file, "local.data_dir")?;
    }
    LocalPg::new(
        &settings.local.data_dir,
        settings.local.port,
        local_pg::Options::default(),
    )
}

/// The admin connection: `server.admin_url`, or the project-local cluster.
///
/// # Errors
/// Production without an admin URL; the local cluster failing to start, or absent with
/// [`Local::Existing`].
pub fn admin(settings: &Settings, local: Local) -> anyhow::Result<Target> {
    if let Some(url) = &settings.server.admin_url {
        return Ok(Target::parse(url, "server.admin_url", &settings.connect_options())?.pinned());
    }
    // As psql: with no URL, libpq's environment names the server (PGHOST, PGPORT, ...).
    if settings
        .libpq_env
        .iter()
        .any(|(k, _)| k == "PGHOST" || k == "PGPORT")
    {
        return Ok(Target::parse(
            "postgresql://",
            "libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD)",
            &settings.connect_options(),
        )?
        .pinned());
    }
    if settings.production {
        return Err(error::usage(format!(
            "the {} profile never uses the project-local cluster: set server.admin_url (AIDOCK_ADMIN_URL or --admin-url) to the server to provision",
            settings.profile
        )));
    }
    let pg = local_cluster(settings)?;
    match local {
        Local::Start => {
            let started = pg.start().context("starting the project-local cluster")?;
            say_started(&pg, started, settings);
        }
        Local::Existing => {
            // A cluster that does not exist yet has no role or database to work on: creating
            // one here would be a side effect with nothing to show for it.
            if pg.state()? == State::Absent {
                anyhow::bail!(
                    "there is no project-local cluster in `{}` yet; run `aidock-provision init` first, or set database.url (DATABASE_URL) or server.admin_url (AIDOCK_ADMIN_URL) to use another server",
                    pg.root().display()
                );
            }
            let started = pg.start().context("starting the project-local cluster")?;
            say_started(&pg, started, settings);
        }
    }
    Ok(Target::parse(
        &pg.admin_url()?,
        "the project-local cluster",
        &settings.connect_options(),
    )?
    .pinned())
}

/// A server started in the background is said, with how to stop it (on stderr: stdout is the
/// command's report).
fn say_started(pg: &LocalPg, started: local_pg::Started, settings: &Settings) {
    let what = match started {
        local_pg::Started::Created => "created and started",
        local_pg::Started::Started => "started",
        local_pg::Started::AlreadyRunning => return,
    };
    if !settings.output.quiet {
        let moved = pg
            .moved_from()
            .map(|p| format!("; port {p} (local.port) is taken by another server, so it took the next free one: `aidock-provision local url` prints its URL"))
            .unwrap_or_default();
        errln!(
            "note: {what} the project-local PostgreSQL cluster in {} (127.0.0.1:{}{moved}); it keeps running: stop it with `aidock-provision local stop`",
            pg.root().display(),
            pg.port()
        );
    }
}

/// The app connection for `migrate` and `seed`: `database.url`, else the owner role on the admin
/// server (or the local cluster).
///
/// # Errors
/// A bad URL, an empty password, or production without any configured server.
pub fn app(settings: &Settings) -> anyhow::Result<Target> {
    if let Some(url) = &settings.database.url {
        return Target::parse(url, "database.url", &settings.connect_options());
    }
    if settings.production && settings.server.admin_url.is_none() {
        return Err(error::usage(format!(
            "the {} profile never uses the project-local cluster: set database.url (DATABASE_URL or --database-url) or server.admin_url",
            settings.profile
        )));
    }
    settings.check_password()?;
    let admin = admin(settings, Local::Existing)?;
    let d = &settings.database;
    Ok(admin.as_role(&d.owner, &d.password, &d.name))
}

/// How a commit under a URL listing several hosts is confirmed (`server.confirm_timeout`), with
/// the admin's endpoint when one is configured (its session sees the standbys' positions).
#[must_use]
pub fn confirm(settings: &Settings) -> crate::db::ha::Confirm {
    let admin = settings.server.admin_url.as_ref().and_then(|url| {
        Target::parse(url, "server.admin_url", &settings.connect_options())
            .ok()
            .map(Target::pinned)
    });
    crate::db::ha::Confirm {
        within: settings.server.confirm_timeout,
        admin,
        reads: settings.confirm_reads,
    }
}

/// `migrate verify` creates a scratch database: it needs the admin connection even when the app
/// connection is given on its own.
///
/// # Errors
/// Only a database URL and no admin URL (exit 2, saying what to pass).
pub fn verify_admin(settings: &Settings) -> anyhow::Result<Target> {
    if settings.server.admin_url.is_none() && settings.database.url.is_some() {
        return Err(error::usage(
            "migrate verify replays the migrations into a scratch database, which needs an admin connection that may create databases; pass --admin-url (or AIDOCK_ADMIN_URL) as well as the database URL",
        ));
    }
    admin(settings, Local::Existing)
}

/// Verbose lines from the engine go to stderr.
fn log_line(line: &str) {
    errln!("{line}");
}

/// `-q`: the engine's notes (retries, skipped meta-commands) are not printed.
fn log_nothing(_: &str) {}

/// The migration runner's options.
#[must_use]
pub fn runner_options(settings: &Settings) -> migrate::runner::Options {
    migrate::runner::Options {
        lock_timeout: settings.migrate.lock_timeout,
        lock_retry_for: settings.migrate.lock_retry_for,
        statement_timeout: settings.migrate.statement_timeout,
        wait_timeout: settings.migrate.wait_timeout,
        verbose: settings.output.verbose,
        log: if settings.output.quiet {
            log_nothing
        } else {
            log_line
        },
        pool_mode: settings.server.pool_mode,
    }
}

/// Where the migration files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationSource {
    /// `migrate.dir` / `--migrations-dir`.
    Configured(PathBuf),
    /// The `sql/` directory of the project the command runs in.
    Project(PathBuf),
    /// The copy built into the binary (an installed binary run outside a project).
    BuiltIn,
}

impl MigrationSource {
    /// The directory, unless built in.
    #[must_use]
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Configured(d) | Self::Project(d) => Some(d),
            Self::BuiltIn => None,
        }
    }
}

impl std::fmt::Display for MigrationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured(d) => write!(f, "{} (migrate.dir / --migrations-dir)", d.display()),
            Self::Project(d) => write!(f, "{} (the project's sql/)", d.display()),
            Self::BuiltIn => write!(
                f,
                "built into this binary ({} {}; no project sql/ here)",
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

/// `migrate.dir` when set; else `sql/` at the project root (the nearest directory upward that
/// holds `.aidock/`, `config/` or `sql/`), so `migrate new`, `plan`, `up`, `status` and `init`
/// all read the files being written; else the built-in copy.
#[must_use]
pub fn migration_source(settings: &Settings) -> MigrationSource {
    if let Some(dir) = &settings.migrate.dir {
        return MigrationSource::Configured(dir.clone());
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    settings
        .project
        .as_ref()
        .map(|root| root.join("sql"))
        .filter(|sql| sql.is_dir())
        .map_or(MigrationSource::BuiltIn, |sql| {
            MigrationSource::Project(relative_to_cwd(&sql, &cwd))
        })
}

/// `sql` rather than `/home/me/app/sql` when run from the root (`.` from inside it): shorter
/// messages.
fn relative_to_cwd(path: &Path, cwd: &Path) -> PathBuf {
    match path.strip_prefix(cwd) {
        Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rest) => rest.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

/// The migrations, from [`migration_source`].
///
/// # Errors
/// Unreadable or badly named files.
pub fn migrations(settings: &Settings) -> anyhow::Result<Vec<migrate::source::Migration>> {
    migrate::source::load(migration_source(settings).dir())
}

/// What `init` provisions.
#[must_use]
pub fn database(settings: &Settings) -> provision::Database {
    let d = &settings.database;
    provision::Database {
        name: d.name.clone(),
        owner: d.owner.clone(),
        password: d.password.clone(),
        password_source: d.password_source.to_string(),
        connection_limit: d.connection_limit,
        encoding: d.encoding.clone(),
        locale: d.locale.clone(),
        password_reset: if settings.production {
            provision::role::PasswordReset::Refuse
        } else {
            provision::role::PasswordReset::SetAndWarn
        },
        take_over: false,
    }
}

/// `init`'s and `reset`'s options.
#[must_use]
pub fn provision_options(settings: &Settings) -> provision::Options {
    provision::Options {
        wait_timeout: settings.migrate.wait_timeout,
        pool_mode: settings.server.pool_mode,
        log: settings.output.verbose.then_some(log_line as fn(&str)),
    }
}

/// `seed`'s options.
#[must_use]
pub fn seed_options(settings: &Settings) -> seed::Options {
    let s = &settings.seed;
    seed::Options {
        argon: seed::dev::ArgonParams {
            memory_kib: s.argon2_memory_kib,
            iterations: s.argon2_iterations,
            parallelism: s.argon2_parallelism,
        },
        scheme: s.password_scheme,
        hash_threads: s.hash_threads,
        copy_connections: s.copy_connections,
        production: settings.production,
        pool_mode: settings.server.pool_mode,
    }
}

/// A failed app login may hide the real cause: PostgreSQL answers "password authentication
/// failed" for a role that does not exist too (so as not to reveal which roles exist). When the
/// app connection is derived from the admin's, ask the admin and say the accurate thing.
#[must_use]
pub fn explain_app_error(settings: &Settings, err: anyhow::Error) -> anyhow::Error {
    if let Some(foreign) = err
        .chain()
        .find_map(|c| c.downcast_ref::<migrate::ForeignRevision>())
    {
        return explain_foreign_revision(settings, foreign);
    }
    let login_refused = matches!(
        crate::db::connect_reason(&err),
        Some(crate::db::Reason::WrongPassword | crate::db::Reason::Refused)
    );
    if !login_refused || settings.database.url.is_some() {
        return err;
    }
    let owner = &settings.database.owner;
    let exists = admin(settings, Local::Existing).and_then(|admin| {
        crate::db::block_on(async {
            let client = admin.connect().await?;
            let row = client
                .opt(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1",
                    &[(owner, Type::TEXT)],
                )
                .await?;
            Ok(row.is_some())
        })
    });
    match exists {
        Ok(false) => anyhow::anyhow!(
            "role `{owner}` does not exist on the server (it was never created, or `reset` dropped it); run `aidock-provision init`"
        ),
        _ => err,
    }
}

/// The live schema against what its applied migrations make (`migrate verify`'s comparison),
/// one line per difference.
///
/// # Errors
/// No admin connection that may build the scratch database; what verify meets.
pub fn compare_with_migrations(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let admin = verify_admin(settings)?;
    let app = app(settings)?;
    let migrations = migrations(settings)?;
    let report = crate::db::block_on(crate::reconcile::verify::verify(
        &admin,
        &app,
        &migrations,
        &runner_options(settings),
        false,
    ))?;
    Ok(report.drift.iter().map(ToString::to_string).collect())
}

/// What schema a command refused by an Alembic revision of the backend's own would have changed,
/// and what to do: the revision, how the schema differs from the migrations (compared when an
/// admin connection can), and `migrate capture`. Exit 1.
fn explain_foreign_revision(
    settings: &Settings,
    foreign: &migrate::ForeignRevision,
) -> anyhow::Error {
    let schema = match compare_with_migrations(settings) {
        Ok(drift) if drift.is_empty() => "the schema is what the migrations make: the revision changed no schema (a data migration), or alembic_version was set by hand; capture records it, so the backend's history and ours stay one line".to_string(),
        Ok(drift) => format!(
            "the schema differs from what the migrations make in {} place(s):\n  {}",
            drift.len(),
            drift.join("\n  ")
        ),
        Err(e) => format!(
            "the schema was not compared here ({}); `aidock-provision migrate verify` with an admin connection shows what the revision changed",
            format!("{e:#}").lines().next().unwrap_or_default()
        ),
    };
    anyhow::anyhow!("{foreign}\n{schema}")
}
