//! `doctor`: run the checks a person would run by hand, in order, and print a fix for each failure.
//! Later checks that depend on a failed one are skipped.

use serde::Serialize;

use crate::app::output::outln;
use crate::app::settings::Settings;
use crate::app::targets;
use crate::cli::Global;
use crate::db;
use crate::db::sql::Sql as _;
use crate::local_pg::{self, LocalPg, State};
use crate::migrate;
use tokio_postgres::types::Type;

/// One check's result.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        });
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
}

/// Run `doctor`: every check, printed (or as JSON); exit 0 only when all pass.
///
/// # Errors
/// When any check failed (each FAIL line says how to fix it).
pub fn run(global: &Global) -> anyhow::Result<()> {
    let checks = checks(global);
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        // -q: only what failed.
        print(checks.iter().filter(|c| !global.quiet || !c.ok));
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

/// Run every check, in order; later checks that depend on a failed one are skipped.
#[must_use]
pub fn checks(global: &Global) -> Vec<Check> {
    let mut checks = Checks(Vec::new());
    let settings = match Settings::load(global) {
        Ok(s) => {
            let config = global.config_dir.clone().or_else(|| {
                s.project
                    .as_ref()
                    .map(|p| p.join("config"))
                    .filter(|c| c.is_dir())
            });
            let here = match (&config, &s.project) {
                (Some(dir), _) => format!("settings from {}", dir.display()),
                (None, Some(p)) => format!(
                    "project {} has no config/: built-in settings",
                    p.display()
                ),
                (None, None) => "not in a project (no .aidock/, config/ or sql/ here or above): built-in settings; --project DIR names one".to_string(),
            };
            checks.pass("settings", format!("profile {}; {here}", s.profile));
            s
        }
        Err(e) => {
            checks.fail(
                "settings",
                format!("{e:#}"),
                "correct the setting named above; every key is documented in config/default.toml",
            );
            return checks.0;
        }
    };
    let migrations = match targets::migrations(&settings) {
        Ok(m) => {
            checks.pass("migration files", format!("{} migration(s)", m.len()));
            Some(m)
        }
        Err(e) => {
            checks.fail(
                "migration files",
                format!("{e:#}"),
                "rename or remove the file named above; `aidock-provision migrate new NAME` picks the next free number",
            );
            None
        }
    };
    if settings.server.admin_url.is_none()
        && !settings.production
        && !local_checks(&settings, &mut checks)
    {
        return checks.0;
    }
    let result = db::block_on(async {
        server_checks(&settings, migrations.as_deref(), &mut checks).await;
        Ok(())
    });
    if let Err(e) = result {
        checks.fail("doctor", format!("{e:#}"), "report this as a bug");
    }
    checks.0
}

/// The project-local cluster: binaries, data directory, running. Returns whether it runs.
fn local_checks(settings: &Settings, checks: &mut Checks) -> bool {
    match local_pg::find_bindir() {
        Ok(dir) => checks.pass("postgresql binaries", dir.display().to_string()),
        Err(e) => {
            checks.fail(
                "postgresql binaries",
                format!("{e:#}"),
                "install the PostgreSQL server package (apt-get install postgresql), or set server.admin_url (AIDOCK_ADMIN_URL) to an existing server",
            );
            return false;
        }
    }
    let pg = match LocalPg::new(
        &settings.local.data_dir,
        settings.local.port,
        local_pg::Options::default(),
    ) {
        Ok(pg) => pg,
        Err(e) => {
            checks.fail("local cluster", format!("{e:#}"), "see the message above");
            return false;
        }
    };
    if let Err(e) = pg.check_reachable() {
        checks.fail(
            "local data directory",
            format!("{e:#}"),
            "set local.data_dir (AIDOCK__LOCAL__DATA_DIR) to a directory the postgres user can reach",
        );
        return false;
    }
    match pg.state() {
        Ok(State::Running) => {
            checks.pass(
                "local cluster",
                format!("running in {} on port {}", pg.root().display(), pg.port()),
            );
            true
        }
        Ok(state) => {
            checks.fail(
                "local cluster",
                format!(
                    "{} in {}",
                    if state == State::Absent { "not created" } else { "stopped" },
                    pg.root().display()
                ),
                "run `aidock-provision local start` (init starts it too), or set server.admin_url (AIDOCK_ADMIN_URL) to use another server",
            );
            false
        }
        Err(e) => {
            checks.fail(
                "local cluster",
                format!("{e:#}"),
                "run `aidock-provision local start` and read its error",
            );
            false
        }
    }
}

async fn server_checks(
    settings: &Settings,
    migrations: Option<&[migrate::source::Migration]>,
    checks: &mut Checks,
) {
    let admin = match targets::admin(settings, targets::Local::Existing) {
        Ok(t) => t,
        Err(e) => {
            let text = format!("{e:#}");
            // A password file libpq would refuse: its own fix is in the message.
            let fix = if text.contains("password file") {
                "fix the password file as said above (`chmod 0600` it, or point PGPASSFILE at the file itself)"
            } else {
                "set server.admin_url (AIDOCK_ADMIN_URL or --admin-url)"
            };
            checks.fail("server", text, fix);
            return;
        }
    };
    let client = match admin.connect().await {
        Ok(c) => {
            checks.pass(
                "server reachable",
                format!("{} (tls {})", admin.describe(), settings.tls.mode.as_str()),
            );
            c
        }
        Err(e) => {
            let text = format!("{e:#}");
            let reason = db::connect_reason(&e);
            let fix = if reason == Some(db::Reason::WrongPassword) && text.contains("password file")
            {
                "correct the admin role's line in the password file named above, or put the password in server.admin_url (AIDOCK_ADMIN_URL) or PGPASSWORD"
            } else if reason == Some(db::Reason::WrongPassword) {
                "put the admin role's password in server.admin_url (AIDOCK_ADMIN_URL), or in PGPASSWORD"
            } else if reason == Some(db::Reason::Tls) {
                "check tls.mode (AIDOCK__TLS__MODE) and tls.root_cert against the server's TLS setup"
            } else {
                "check that the server is running and that server.admin_url (AIDOCK_ADMIN_URL) has the right host and port; a firewall or pg_hba.conf may refuse this client"
            };
            checks.fail("server reachable", text, fix);
            return;
        }
    };
    match crate::provision::admin_rights(&client, &admin).await {
        Ok(r) => {
            checks.pass(
                "server version and admin rights",
                format!(
                    "PostgreSQL {}.{}; `{}` is {}; {}",
                    r.server_version / 10000,
                    r.server_version % 10000,
                    admin.user(),
                    if r.superuser {
                        "a superuser"
                    } else {
                        "allowed CREATEDB and CREATEROLE"
                    },
                    crate::provision::version_notes(r).join("; ")
                ),
            );
        }
        Err(e) => {
            let text = format!("{e:#}");
            let too_old = matches!(
                e.downcast_ref::<crate::provision::RightsError>(),
                Some(crate::provision::RightsError::TooOld { .. })
            );
            let fix = if too_old {
                "upgrade the server to PostgreSQL 13 or newer".to_string()
            } else {
                format!(
                    "as a superuser run `ALTER ROLE {} CREATEDB CREATEROLE`, or set server.admin_url to a role that has them",
                    db::quote_ident(admin.user())
                )
            };
            checks.fail("server version and admin rights", text, fix);
            return;
        }
    }
    // A standby can be read, but init, migrations, seeds and verify's scratch database need the
    // primary: said here, instead of each later check failing with a raw read-only error.
    if let Ok(db::Writable::Standby) = db::writable(&client).await {
        checks.fail(
            "primary",
            format!(
                "{} is a read-only standby (pg_is_in_recovery() is true)",
                admin.describe()
            ),
            "point server.admin_url at the primary, or list every host with target_session_attrs=read-write (postgresql://h1:5432,h2:5432/postgres?target_session_attrs=read-write)",
        );
        return;
    }
    if admin.host_count() > 1 {
        replication_check(&client, checks).await;
    }
    let d = &settings.database;
    // A database built by other tools (no ledger of ours, but tables): `init` refuses it, and
    // `migrate baseline` adopts it (owner and schema public included), so that is the advice.
    // Read on the admin's catalog session there (db::trust: catalogs only, path pinned).
    let foreign = match crate::db::trust::CatalogSession::connect(&admin, &d.name).await {
        Ok(mut session) => match session.snapshot().await {
            Ok(snapshot) => crate::migrate::ledger::foreign_objects(&snapshot)
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let init_or_baseline = |what: &str| match &foreign {
        Some(f) => format!(
            "run `aidock-provision migrate baseline`: the database holds {} object(s) no migration of ours made ({}), which `init` refuses to touch; baseline compares them with the migrations and adopts them, {what} included, keeping every row",
            f.count,
            f.listed()
        ),
        None => format!("run `aidock-provision init` ({what})"),
    };
    let role = client
        .opt(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[(&d.owner, Type::TEXT)],
        )
        .await;
    match role {
        Ok(Some(row)) if row.get::<_, bool>(0) => {
            checks.pass("app role", format!("`{}` exists and may log in", d.owner));
        }
        Ok(Some(_)) => {
            checks.fail(
                "app role",
                format!("`{}` exists but has no LOGIN", d.owner),
                init_or_baseline("it grants LOGIN"),
            );
            return;
        }
        Ok(None) => {
            checks.fail(
                "app role",
                format!("role `{}` does not exist", d.owner),
                if foreign.is_some() {
                    format!(
                        "the database holds a schema other tools made, which `init` refuses to touch: create the role as an admin (`CREATE ROLE {} LOGIN`), then run `aidock-provision migrate baseline` to adopt the schema (it sets the role's owner rights; `init` then sets its password)",
                        db::quote_ident(&d.owner)
                    )
                } else {
                    "run `aidock-provision init` (it creates the role)".to_string()
                },
            );
            return;
        }
        Err(e) => {
            checks.fail(
                "app role",
                db::describe_error(&e),
                "check the admin's rights",
            );
            return;
        }
    }
    let owners = client
        .opt(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[(&d.name, Type::TEXT)],
        )
        .await;
    match owners {
        Ok(Some(row)) if row.get::<_, String>(0) == d.owner => {}
        Ok(Some(row)) => {
            checks.fail(
                "database",
                format!(
                    "`{}` is owned by `{}`, not `{}`",
                    d.name,
                    row.get::<_, String>(0),
                    d.owner
                ),
                init_or_baseline("the database's owner"),
            );
            return;
        }
        Ok(None) => {
            checks.fail(
                "database",
                format!("database `{}` does not exist", d.name),
                "run `aidock-provision init`",
            );
            return;
        }
        Err(e) => {
            checks.fail(
                "database",
                db::describe_error(&e),
                "check the admin's rights",
            );
            return;
        }
    }
    let app = admin.as_role(&d.owner, &d.password, &d.name);
    let app_client = match app.connect().await {
        Ok(c) => c,
        Err(e) => {
            checks.fail(
                "app login",
                format!("{e:#}"),
                format!(
                    "the password in database.password ({}) does not match role `{}`: run `aidock-provision init` to set it, or correct database.password / AIDOCK__DATABASE__PASSWORD",
                    d.password_source, d.owner
                ),
            );
            return;
        }
    };
    match app_client
        .one(
            "SELECT CASE WHEN pg_has_role(current_user, nspowner, 'USAGE') \
                           OR has_schema_privilege(current_user, 'public', 'CREATE') \
                    THEN current_user::text ELSE pg_get_userbyid(nspowner)::text END \
             FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
    {
        Ok(row) if row.get::<_, String>(0) == d.owner => {
            checks.pass(
                "app login",
                format!(
                    "`{}` logs in to `{}` and owns it and schema public",
                    d.owner, d.name
                ),
            );
        }
        Ok(row) => {
            checks.fail(
                "app login",
                format!(
                    "schema public is owned by `{}`, not `{}`",
                    row.get::<_, String>(0),
                    d.owner
                ),
                init_or_baseline("schema public's owner"),
            );
            return;
        }
        Err(e) => {
            checks.fail(
                "app login",
                db::describe_error(&e),
                "run `aidock-provision init`",
            );
            return;
        }
    }
    let Some(migrations) = migrations else { return };
    match migrate::status(&app, migrations).await {
        // An Alembic revision of the backend's own on top of ours: said, and the schema is
        // compared below (what the revision changed is the point).
        Ok(status) if !status.foreign_revisions.is_empty() => {
            checks.fail(
                "migrations",
                status.problems.join("\n"),
                "make the revision a migration of ours: `aidock-provision migrate capture NAME --alembic-dir <the backend's alembic/versions>` (the schema check below says what it changed)",
            );
        }
        Ok(status) if !status.problems.is_empty() => {
            checks.fail(
                "migrations",
                status.problems.join("\n"),
                "follow the advice above (for a schema other tools made: `aidock-provision migrate baseline`, which keeps the data); `aidock-provision migrate status` shows the details",
            );
            return;
        }
        Ok(status) if status.applied.is_empty() && untracked_tables(&app_client).await > 0 => {
            checks.fail(
                "migrations",
                "tables exist in schema public but no migration is recorded: the schema was made outside aidock-provision (e.g. by the backend's create_all), so `migrate up` would fail with `relation already exists`",
                "run `aidock-provision migrate baseline`: it compares that schema with the migrations and adopts it, keeping every row (`reset` would destroy the data)",
            );
            return;
        }
        Ok(status) if !status.pending.is_empty() => {
            checks.fail(
                "migrations",
                format!(
                    "{} pending: {}",
                    status.pending.len(),
                    status
                        .pending
                        .iter()
                        .map(|p| p.file.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "run `aidock-provision migrate up`",
            );
            return;
        }
        Ok(status) => checks.pass(
            "migrations",
            format!("at {:04}, up to date", status.current.unwrap_or(0)),
        ),
        Err(e) => {
            checks.fail(
                "migrations",
                format!("{e:#}"),
                "run `aidock-provision migrate status` and read its error",
            );
            return;
        }
    }
    match crate::reconcile::verify::verify(&admin, &app, migrations, &targets::runner_options(settings), false)
        .await
        .map(|r| r.drift)
    {
        Ok(drift) if drift.is_empty() => checks.pass("schema", "matches the applied migrations"),
        Ok(drift) => checks.fail(
            "schema",
            drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
            "each line names an object changed outside the migrations (by hand, or by an Alembic revision of the backend's); undo the changes (`aidock-provision migrate verify --fix` prints the SQL that does, for psql), or keep them: `aidock-provision migrate capture NAME` writes the migration that makes them, tests it and records it as applied (one written by hand already: `aidock-provision migrate baseline` records it once the schema is what it makes)",
        ),
        Err(e) => checks.fail("schema", format!("{e:#}"), "run `aidock-provision migrate verify` and read its error"),
    }
}

/// Under a URL listing several hosts (a failover setup): whether a commit the primary
/// acknowledges is on a standby too, or can be lost when another node is promoted.
async fn replication_check(client: &tokio_postgres::Client, checks: &mut Checks) {
    let Ok(row) = client
        .one(
            "SELECT (SELECT count(*) FROM pg_stat_replication),
                    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')),
                    current_setting('synchronous_commit')",
            &[],
        )
        .await
    else {
        return;
    };
    let (standbys, synchronous, commit): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
    if standbys > 0 && (synchronous == 0 || matches!(commit.as_str(), "off" | "local")) {
        checks.fail(
            "replication",
            format!(
                "{standbys} standby(s), all asynchronous (synchronous_commit = {commit}): a commit acknowledged here (a migration, a seed) can be lost if another node is promoted before it arrives"
            ),
            "make commits wait for a standby: set synchronous_standby_names (e.g. 'ANY 1 (*)') with synchronous_commit = on or remote_apply; under Patroni, `synchronous_mode: true` in the cluster's dynamic configuration (patronictl edit-config). What it buys: a primary that froze while another was elected, and came back, cannot commit at all (no synchronous standby acknowledges it), so no acknowledged commit is lost in a failover. Without it aidock-provision still confirms each commit on a standby before it reports success (server.confirm_timeout), and says when it cannot",
        );
    } else if standbys == 0 {
        checks.fail(
            "replication",
            "the URL lists several hosts, and no standby follows this primary: a commit here is on one node only, and aidock-provision cannot confirm it against a failover (it exits 4 when another listed node is up but not following this one)".to_string(),
            "bring the standbys back (or rebuild them), or list only the primary in the URL while they are away",
        );
    } else if standbys > 0 {
        checks.pass(
            "replication",
            format!(
                "{standbys} standby(s), {synchronous} synchronous (synchronous_commit = {commit})"
            ),
        );
    }
}

async fn untracked_tables(client: &tokio_postgres::Client) -> i64 {
    client
        .one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' \
             AND tablename NOT IN ('aidock_schema_history', 'alembic_version')",
            &[],
        )
        .await
        .map_or(0, |r| r.get(0))
}

/// Print the checks for people.
fn print<'a>(checks: impl Iterator<Item = &'a Check>) {
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        let mut lines = c.detail.lines();
        outln!("{mark} {}: {}", c.name, lines.next().unwrap_or_default());
        for line in lines {
            outln!("       {line}");
        }
        if let Some(fix) = &c.fix {
            outln!("     fix: {fix}");
        }
    }
}
