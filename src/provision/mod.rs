//! `init`'s server-level work: ensure the login role and the database exist with exactly the
//! attributes we own, reporting `created` / `exists` / `changed: ...` per object.

pub mod database;
pub mod pool;
pub mod preflight;
pub mod role;
pub mod template;

use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio_postgres::Client;

use crate::db::advisory::Holder;
use crate::db::sql::Sql as _;
use crate::db::trust::{AdminDdl, CatalogSession};
use crate::db::{self, Target};
use tokio_postgres::types::Type;

/// What happened to one object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "status", content = "changes")]
pub enum Outcome {
    Created,
    Exists,
    Changed(Vec<String>),
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub object: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What could not be made as tight as we want, and how to do it by hand (not a change).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Item {
    /// An item without notes.
    #[must_use]
    pub fn new(object: String, outcome: Outcome) -> Item {
        Item {
            object,
            outcome,
            notes: Vec::new(),
        }
    }
}

/// The database `init` makes (or reconciles) and the login role that owns it.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub owner: String,
    pub password: crate::db::Secret,
    /// Where the password came from, for messages.
    pub password_source: String,
    pub connection_limit: i32,
    pub encoding: String,
    pub locale: Option<String>,
    /// How a password that no longer logs in is treated (`init --reset-password`, production).
    pub password_reset: role::PasswordReset,
    /// `init --take-over-database`: an existing empty database another login role owns may be
    /// handed to the app's role (refused without it).
    pub take_over: bool,
}

/// How to run: how long to wait for another `init`, and where verbose lines go.
#[derive(Clone, Copy)]
pub struct Options {
    pub wait_timeout: Duration,
    /// What a connection pooler in between keeps: clones through a transaction pooler take no
    /// locks (each would hold a pooled server connection), and check the template afterwards.
    pub pool_mode: crate::db::pooler::PoolMode,
    /// Each statement as it runs (secrets redacted), or `None`.
    pub log: Option<fn(&str)>,
}

/// Runs statements, or only records them for `--dry-run`.
pub struct Executor<'a> {
    client: &'a Client,
    dry_run: bool,
    log: Option<fn(&str)>,
    /// Every statement run (or that would run), as printed: secrets redacted.
    pub statements: Vec<String>,
}

impl<'a> Executor<'a> {
    /// An executor on a connection.
    #[must_use]
    pub fn new(client: &'a Client, dry_run: bool, log: Option<fn(&str)>) -> Self {
        Executor {
            client,
            dry_run,
            log,
            statements: Vec::new(),
        }
    }

    /// The connection, for read-only inspection (which runs in dry-run mode too).
    #[must_use]
    pub fn client(&self) -> &'a Client {
        self.client
    }

    /// Whether nothing is changed.
    #[must_use]
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Run `sql` (printed as `shown`), turning a failure into a message about `what`.
    ///
    /// # Errors
    /// The server's error, described, in the context of `what`.
    pub async fn apply(&mut self, sql: &str, shown: &str, what: &str) -> anyhow::Result<()> {
        self.run(sql, shown)
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .with_context(|| what.to_string())
    }

    /// Run `sql` (printed as `shown`, which must not contain secrets).
    ///
    /// # Errors
    /// The server's error, unchanged, so callers can match on its SQLSTATE.
    pub async fn run(&mut self, sql: &str, shown: &str) -> Result<(), tokio_postgres::Error> {
        self.statements.push(format!("{shown};"));
        if let (Some(log), false) = (self.log, self.dry_run) {
            log(&format!("  {shown};"));
        }
        if self.dry_run {
            return Ok(());
        }
        self.client.batch_execute(sql).await
    }
}

/// What the admin role may do.
#[derive(Debug, Clone, Copy)]
pub struct AdminRights {
    pub superuser: bool,
    pub server_version: i32,
}

/// What this tool does differently on this server, for `doctor` (PostgreSQL 13 is the oldest
/// we accept; see docs/VERSIONS.md).
#[must_use]
pub fn version_notes(rights: AdminRights) -> Vec<String> {
    let v = rights.server_version;
    let mut notes = vec![if v >= 150_000 {
        "schema public belongs to the database owner (15+): init gives it to the app role"
            .to_string()
    } else if rights.superuser {
        "schema public belongs to the bootstrap superuser and PUBLIC may create there (before 15): init, as a superuser, gives it to the app role and revokes PUBLIC's CREATE".to_string()
    } else {
        "schema public belongs to the bootstrap superuser and PUBLIC may create there (before 15): a non-superuser admin cannot change that, so init leaves it and says how to tighten it".to_string()
    }];
    notes.push("reset uses DROP DATABASE ... WITH (FORCE) (13+)".into());
    notes.push(if v >= 140_000 {
        "client_connection_check_interval (14+) rolls back a killed migrator's transaction within a second".into()
    } else {
        "no client_connection_check_interval (14+): a killed migrator's transaction ends when the server next writes to it".into()
    });
    notes.push(if v >= 150_000 {
        "CREATE DATABASE ... STRATEGY available (15+)".into()
    } else {
        "no CREATE DATABASE ... STRATEGY (15+)".into()
    });
    if !rights.superuser {
        notes.push(if v >= 160_000 {
            "CREATEROLE admins manage only roles they were granted ADMIN on (16+): init grants the app role to the admin with SET".into()
        } else {
            "CREATEROLE admins may manage any non-superuser role (before 16)".into()
        });
    }
    notes
}

/// Why the admin role cannot provision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RightsError {
    #[error(
        "the server runs PostgreSQL {major}.{minor}; AI Dock needs 13 or newer (gen_random_uuid is built in from 13)"
    )]
    TooOld { major: i32, minor: i32 },
    #[error(
        "permission denied: admin role `{role}` lacks {missing}; run `ALTER ROLE {quoted} {attributes}` as a superuser, or set server.admin_url to a role that has them"
    )]
    Missing {
        role: String,
        missing: String,
        quoted: String,
        attributes: String,
    },
}

/// Check that the admin can create roles and databases.
///
/// # Errors
/// [`RightsError`] naming the admin role and the rights it lacks, or a too old server.
pub async fn admin_rights(client: &Client, target: &Target) -> anyhow::Result<AdminRights> {
    let row = client
        .one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, current_setting('server_version_num')::int \
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .context("reading the admin role's attributes")?;
    let (superuser, createrole, createdb, version): (bool, bool, bool, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if version < 130_000 {
        return Err(RightsError::TooOld {
            major: version / 10000,
            minor: version % 10000,
        }
        .into());
    }
    if !(superuser || createrole && createdb) {
        let mut missing = Vec::new();
        if !createrole {
            missing.push("CREATEROLE");
        }
        if !createdb {
            missing.push("CREATEDB");
        }
        return Err(RightsError::Missing {
            role: target.user().to_string(),
            missing: missing.join(" and "),
            quoted: db::quote_ident(target.user()),
            attributes: missing.join(" "),
        }
        .into());
    }
    Ok(AdminRights {
        superuser,
        server_version: version,
    })
}

/// Everything `init` did (or would do, with `--dry-run`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub objects: Vec<Item>,
    /// The app's connection URL with the password masked.
    pub url: String,
    pub dry_run: bool,
    /// Whether the database was created by this run (or would be, in a dry run).
    #[serde(skip)]
    pub fresh_database: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
}

/// What `init`, `init --from-template` and `reset` do first: connect as the admin, check its
/// rights, take the per-database init lock (held while the returned [`Holder`] lives), and run
/// the pre-flight, so that everything is read and decided before the first change.
async fn prepare(
    d: &Database,
    admin: &Target,
    opts: &Options,
    purpose: preflight::Purpose,
    lock: bool,
) -> anyhow::Result<(Client, AdminRights, Option<Holder>)> {
    let (client, locks) = if lock {
        // Both connections at once: one round of connecting, not two.
        let (client, held) = tokio::try_join!(admin.connect(), admin.connect())?;
        let keys = vec![(crate::db::advisory::key("init", &d.name), false)];
        (client, Some((held, keys)))
    } else {
        (admin.connect().await?, None)
    };
    prepare_on(client, d, admin, opts, purpose, locks, "provisioning lock").await
}

/// [`prepare`] on connections already open: `client` for the work, and (when locks are to be
/// held) a connection of their own for a [`Holder`] taking `locks` together.
async fn prepare_on(
    client: Client,
    d: &Database,
    admin: &Target,
    opts: &Options,
    purpose: preflight::Purpose,
    locks: Option<(Client, Vec<(i64, bool)>)>,
    what: &str,
) -> anyhow::Result<(Client, AdminRights, Option<Holder>)> {
    crate::db::require_primary(&client, admin).await?;
    let rights = admin_rights(&client, admin).await?;
    let lock = match locks {
        Some((held, keys)) => Some(Holder::take_all(held, &keys, opts.wait_timeout, what).await?),
        None => None,
    };
    let observed = preflight::observe(&client, admin, &d.name, &d.owner, rights, purpose).await?;
    preflight::check(&d.name, &d.owner, &observed, purpose, d.take_over)?;
    Ok((client, rights, lock))
}

/// Ensure role, database and schema. The caller runs migrations afterwards.
///
/// # Errors
/// Connection failures (exit 4), missing admin rights, failing statements.
pub async fn provision(
    d: &Database,
    admin: &Target,
    dry_run: bool,
    opts: &Options,
) -> anyhow::Result<Report> {
    let (client, rights, _lock) = prepare(d, admin, opts, preflight::Purpose::Init, true).await?;

    let mut exec = Executor::new(&client, dry_run, opts.log);
    let role_spec = role::Spec {
        name: &d.owner,
        password: &d.password,
        password_source: &d.password_source,
        reset: d.password_reset,
        connection_limit: d.connection_limit,
        database: &d.name,
    };
    let role_item = role::ensure(&mut exec, &role_spec, admin).await?;
    let db_spec = database::Spec {
        name: &d.name,
        owner: &d.owner,
        encoding: &d.encoding,
        locale: d.locale.as_deref(),
    };
    let db_item = database::ensure(&mut exec, &db_spec, rights).await?;
    let mut statements = std::mem::take(&mut exec.statements);

    let fresh = db_item.outcome == Outcome::Created;
    let schema_item = if dry_run && fresh {
        // Nothing to connect to yet: show what would run on the new database.
        let found = database::fresh_public_schema(&client, rights).await?;
        let (item, ddl) = database::plan_schema(&found, &d.owner, rights);
        statements.extend(ddl.iter().map(AdminDdl::sql));
        item
    } else {
        // The app role may write in its database: the admin reads catalogs there and runs only
        // ownership and privilege statements (db::trust).
        let mut session = CatalogSession::connect(admin, &d.name).await?;
        let found = database::read_public_schema(&mut session).await?;
        let (item, ddl) = database::plan_schema(&found, &d.owner, rights);
        statements.extend(ddl.iter().map(AdminDdl::sql));
        if !dry_run {
            if let Some(log) = opts.log {
                for statement in &ddl {
                    log(&statement.sql());
                }
            }
            session
                .run(&ddl)
                .await
                .context("preparing schema `public` of the app database")?;
        }
        item
    };
    let app = admin.as_role(&d.owner, &d.password, &d.name);
    Ok(Report {
        objects: vec![role_item, db_item, schema_item],
        url: app.describe(),
        dry_run,
        fresh_database: fresh,
        statements,
    })
}

/// `init --from-template`: the role as `init` makes it, then the database cloned from a template
/// that the caller checked is current, handed to the role and closed to PUBLIC as `init` does.
///
/// # Errors
/// Pre-flight refusals, a missing or stale template, a database that exists already, statement
/// failures.
pub async fn from_template(
    d: &Database,
    admin: &Target,
    template_name: &str,
    migrations: &[crate::migrate::Migration],
    opts: &Options,
) -> anyhow::Result<Report> {
    // Through a transaction pooler no lock is held (a held lock keeps a pooled server connection,
    // and a clone per test outnumbers any pool): concurrent clones have distinct names, and a
    // rebuild meanwhile is caught by reading the template's fingerprint again after the copy.
    // The lock's connection is opened with the main one (a clone per test: every round trip
    // counts), and closed unused when sessions do not hold locks.
    let (client, held) = tokio::try_join!(admin.connect(), admin.connect())?;
    let sessions_hold = opts.pool_mode.sessions_hold(&client).await;
    // Held until the end, together: no other init of this database, and no rebuild of the
    // template while it is being copied.
    let locks = sessions_hold.then(|| {
        (
            held,
            vec![
                (crate::db::advisory::key("init", &d.name), false),
                (template::lock_key(template_name), true),
            ],
        )
    });
    let (client, rights, _lock) = prepare_on(
        client,
        d,
        admin,
        opts,
        preflight::Purpose::Init,
        locks,
        &format!("provisioning lock and the lock of template `{template_name}` (it is being built or cloned)"),
    )
    .await?;
    let found = template::find(&client, template_name).await?;
    template::check_current(template_name, found.as_ref(), migrations)?;
    let found = found.expect("checked above");

    let mut exec = Executor::new(&client, false, opts.log);
    let role_item = role::ensure(
        &mut exec,
        &role::Spec {
            name: &d.owner,
            password: &d.password,
            password_source: &d.password_source,
            reset: d.password_reset,
            connection_limit: d.connection_limit,
            database: &d.name,
        },
        admin,
    )
    .await?;
    let spec = database::Spec {
        name: &d.name,
        owner: &d.owner,
        encoding: &d.encoding,
        locale: d.locale.as_deref(),
    };
    database::ensure_membership(&mut exec, &spec, rights).await?;
    let db_item = template::create_clone(&client, template_name, d).await?;
    // Two connections at once from here (a clone per test: the wait is what counts). The
    // admin's: the comment cleared and the database closed to PUBLIC, the template's fingerprint
    // read again. The clone's: what was copied checked against what the template recorded,
    // every object handed to the role, schema public the role's. The clone stays the admin's
    // until both are done (db::trust: the role gets no way in before the admin has finished
    // reading there); then it is handed over as `init` does.
    let admin_side = async {
        template::close_clone(&client, d).await?;
        // The same comment and the same row version: not rebuilt, and (for a sealed template,
        // whose clone is not read) not opened between the `find` above and the copy.
        let after = template::find(&client, template_name).await?;
        anyhow::Ok(
            after.map(|f| (f.fingerprint, f.row_version))
                == Some((found.fingerprint.clone(), found.row_version.clone())),
        )
    };
    let clone_side = async {
        let mut session = CatalogSession::connect(admin, &d.name).await?;
        let changed = template::check_and_hand_over(&mut session, &found, d).await?;
        if !changed.is_empty() {
            return anyhow::Ok((changed, None));
        }
        let public = database::read_public_schema(&mut session).await?;
        let (schema_item, ddl) = database::plan_schema(&public, &d.owner, rights);
        session.run(&ddl).await?;
        Ok((changed, Some(schema_item)))
    };
    let (same_template, clone_side) = tokio::join!(admin_side, clone_side);
    let refusal = match (same_template, clone_side) {
        (Ok(true), Ok((_, Some(schema_item)))) => {
            let reconciled = database::ensure(&mut exec, &spec, rights).await?;
            drop(reconciled);
            let app = admin.as_role(&d.owner, &d.password, &d.name);
            return Ok(Report {
                objects: vec![role_item, db_item, schema_item],
                url: app.describe(),
                dry_run: false,
                fresh_database: true,
                statements: Vec::new(),
            });
        }
        (Ok(false), _) => anyhow::anyhow!(
            "template `{template_name}` was rebuilt or altered while `{}` was being cloned from it, so the clone was dropped; run `init --from-template` again",
            d.name
        ),
        (Ok(true), Ok((changed, None))) => crate::error::refused(format!(
            "template `{template_name}` changed since it was built, so no clone was made:\n  {}\nrebuild it with `aidock-provision template` (same --dev flags)",
            changed.join("\n  ")
        )),
        (Err(e), _) | (_, Err(e)) => e,
    };
    // Nothing half-made: the clone goes (its connection ended with the future above).
    let _ = client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db::quote_ident(&d.name)
        ))
        .await;
    Err(refusal)
}

/// What `reset` did to one object.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Gone {
    Dropped,
    /// It was not there (already gone is success).
    Absent,
}

/// One line of `reset`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    pub object: String,
    pub status: Gone,
}

/// Drop the database (terminating its sessions) and then the role; already gone is success.
///
/// # Errors
/// Connection failures; a role that still owns objects elsewhere (the message says where to look).
pub async fn reset(d: &Database, admin: &Target, opts: &Options) -> anyhow::Result<Vec<Dropped>> {
    let (client, _, _lock) = prepare(d, admin, opts, preflight::Purpose::Reset, true).await?;
    let mut exec = Executor::new(&client, false, opts.log);
    let mut items = Vec::new();
    let db_exists = client
        .opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&d.name, Type::TEXT)],
        )
        .await
        .context("reading pg_database")?
        .is_some();
    if db_exists {
        // WITH (FORCE) terminates connected sessions instead of waiting for them (PostgreSQL 13+).
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db::quote_ident(&d.name)
        );
        exec.apply(&sql, &sql, &format!("dropping database `{}`", d.name))
            .await?;
    }
    items.push(Dropped {
        object: format!("database {}", d.name),
        status: if db_exists {
            Gone::Dropped
        } else {
            Gone::Absent
        },
    });
    let role_exists = client
        .opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &[(&d.owner, Type::TEXT)],
        )
        .await
        .context("reading pg_roles")?
        .is_some();
    if role_exists {
        let sql = format!("DROP ROLE IF EXISTS {}", db::quote_ident(&d.owner));
        exec.run(&sql, &sql).await.map_err(|e| {
            anyhow::anyhow!(
                "dropping role `{}`: {}\nhint: the role still owns objects or holds privileges in another database; run `REASSIGN OWNED BY {} TO postgres; DROP OWNED BY {}` there first",
                d.owner,
                db::describe_error(&e),
                db::quote_ident(&d.owner),
                db::quote_ident(&d.owner)
            )
        })?;
    }
    items.push(Dropped {
        object: format!("role {}", d.owner),
        status: if role_exists {
            Gone::Dropped
        } else {
            Gone::Absent
        },
    });
    Ok(items)
}
