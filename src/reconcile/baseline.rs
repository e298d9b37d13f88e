//! `migrate baseline`: adopt a database whose schema other tools made (the backend's Alembic or
//! `create_all`, or the seed guide's manual steps), with proof and without losing a row.
//!
//! The schema migrations 1..V make is built in a scratch database (as `verify` does) and
//! compared with the live one. Identical: the ledger records 1..V as baselined and
//! `alembic_version` is stamped. Different: every difference is listed, grouped as safe to
//! reconcile, blocked by data (with the offending rows, found by read-only queries) and lossy;
//! `--dry-run` prints the exact transaction `--reconcile` would run. `--reconcile` runs, in one
//! transaction under the migration lock and with `up`'s timeouts, the DDL from the schema-diff
//! engine (no rename guesses, nothing split out of the transaction), then the ledger rows and the
//! stamp; before it commits it reads the catalog back and compares it with the migrations'
//! again, so a reconcile that would not leave exactly their schema changes nothing.

use anyhow::Context as _;
use serde::Serialize;

use super::verify;

use crate::db::sql::Sql as _;
use crate::db::trust::{AdminDdl, CatalogSession};
use crate::db::{self, Target, quote_literal};
use crate::error;
use crate::migrate::source::Migration;
use crate::migrate::{ledger, runner};
use crate::schema::catalog::{self, Catalog, ReadOptions};
use crate::schema::ddl::{self, Direction, Place};
use tokio_postgres::types::Type;

/// What `baseline` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compare; record when identical; change no schema.
    Report,
    /// Print the transaction `Reconcile` would run; change nothing.
    DryRun,
    /// Run it.
    Reconcile,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Adopt as version V (default: the newest migration).
    pub to: Option<i64>,
    pub mode: Mode,
    pub allow_data_loss: bool,
}

/// How it ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The ledger already records V or later: nothing to do.
    AlreadyAdopted,
    /// The schema was identical; 1..V recorded as baselined.
    Recorded,
    /// Differences found; nothing changed (exit 1).
    Differs,
    /// `--dry-run`: the SQL is in `sql`; nothing changed.
    Planned,
    /// `--reconcile` ran and committed.
    Reconciled,
}

/// A step that existing rows would make fail, and those rows.
#[derive(Debug, Clone, Serialize)]
pub struct Blocked {
    pub step: String,
    pub problem: String,
    pub rows: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub database: String,
    pub version: i64,
    pub outcome: Outcome,
    /// Steps that keep every row and value: `object: first line of its SQL`.
    pub safe: Vec<String>,
    /// Objects only the live database has (indexes, constraints, triggers, functions ...),
    /// dropped without losing a row.
    pub dropped: Vec<String>,
    pub blocked: Vec<Blocked>,
    /// Steps whose data check could not run (why); the reconcile's own transaction still stops
    /// on rows that fail them.
    pub not_checked: Vec<String>,
    pub lossy: Vec<String>,
    /// Steps that rewrite or lock a table (the lint rules' findings on the reconcile's own SQL),
    /// with the table's size: the reconcile is one transaction, so each lock is held until it
    /// commits.
    pub locks: Vec<String>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// What `alembic_version` held before (the backend's own revision, usually).
    pub alembic_version_before: Option<Vec<String>>,
}

/// Who runs the reconcile: `admin` (changes owners first, then acts as `app`'s role) and the
/// role that owns the database and runs migrations.
pub struct Roles<'a> {
    pub admin: &'a Target,
    pub app: &'a Target,
}

/// Compare, and record / plan / reconcile as `options.mode` says.
///
/// # Errors
/// Lossy steps without `allow_data_loss` (exit 3, each named); data that blocks a step (exit 1,
/// the rows named, nothing changed); a reconcile that fails or would not reach the migrations'
/// schema (rolled back); connections; a ledger that exists below V (use `migrate up`).
pub async fn baseline(
    roles: &Roles<'_>,
    migrations: &[Migration],
    opts: &runner::Options,
    options: Options,
) -> anyhow::Result<Report> {
    let app = roles.app;
    let live = app.connect().await?;
    let head = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let version = options.to.unwrap_or(head);
    if !migrations.iter().any(|m| m.version == version) {
        return Err(error::usage(format!(
            "there is no migration {version:04} to baseline to (the newest is {head:04})"
        )));
    }
    let alembic_before = ledger::alembic_stamp(&live).await?;
    let applied = ledger::read(&live).await?;
    let mut report = Report {
        database: app.describe(),
        version,
        outcome: Outcome::AlreadyAdopted,
        safe: Vec::new(),
        dropped: Vec::new(),
        blocked: Vec::new(),
        not_checked: Vec::new(),
        lossy: Vec::new(),
        locks: Vec::new(),
        notes: Vec::new(),
        sql: None,
        alembic_version_before: alembic_before,
    };
    let top = applied.iter().map(|r| r.version).max();
    // Adopted already, and the backend's Alembic went on from there: the schema is compared by
    // `migrate capture`, which makes the revision ours (baseline only adopts a database).
    let foreign = ledger::foreign_revisions(&live).await?;
    if !foreign.is_empty() {
        return Err(crate::migrate::ForeignRevision { revisions: foreign }.into());
    }
    if top.is_some_and(|top| top >= version) {
        return Ok(report);
    }
    if let Some(top) = top {
        // A hotfix made by hand and then written as migrations top+1..V: recorded (never
        // applied) only when the live schema is exactly what 1..V make.
        return record_hotfix(roles, &live, migrations, opts, options, top, report).await;
    }
    // Everything below acts as the app's role through the admin (scratch database, reconcile).
    may_act_for(roles, &[]).await?;
    let versions: Vec<i64> = migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| *v <= version)
        .collect();
    let (expected, found) =
        verify::expected_and_live(roles.admin, app, &live, migrations, &versions, opts, true)
            .await?;
    let plan = ddl::plan_with(
        &found,
        &expected,
        app.user(),
        ddl::Options {
            direction: Direction::Up,
            one_transaction: true,
            guess_renames: false,
            public_privileges: false,
        },
    );
    report.notes.clone_from(&plan.notes);
    report.notes.extend(
        plan.unsupported
            .iter()
            .map(|u| format!("not written (do it by hand): {u}")),
    );
    let ledger_sql = ledger_statements(
        migrations,
        &versions,
        true,
        report.alembic_version_before.as_deref(),
    );
    // What `init` would do to the database and schema public next: done here, so that `init`
    // after an adoption is a no-op.
    let prepare = init_preparation(roles, &mut report.notes).await?;
    if plan.is_empty() {
        match options.mode {
            Mode::DryRun => {
                report.sql = Some(transaction_text(&prepare, &[], &ledger_sql, app.user()));
                report.outcome = Outcome::Planned;
            }
            Mode::Report | Mode::Reconcile => {
                report.outcome = if run_transaction(
                    roles,
                    &prepare,
                    &[],
                    &ledger_sql,
                    opts,
                    None,
                    None,
                )
                .await?
                {
                    Outcome::Recorded
                } else {
                    Outcome::AlreadyAdopted
                };
            }
        }
        return Ok(report);
    }
    super::checks::classify(roles, &plan, &found, &mut report).await?;
    super::checks::locks(roles, &plan, &mut report).await?;
    // Owner changes of objects that exist now are the admin's (db::trust: ownership only) and
    // run first; an owner change of an object the reconcile makes follows its creation, on the
    // app's login.
    let (owners, ddl_steps): (Vec<&ddl::Step>, Vec<&ddl::Step>) =
        plan.steps.iter().partition(|s| {
            s.place == Place::Main
                && s.object.strip_prefix("owner ").is_some_and(|name| {
                    found
                        .objects
                        .contains_key(&("owner".to_string(), name.to_string()))
                })
        });
    let mut admin_steps: Vec<AdminStep> = prepare;
    for step in &owners {
        let old = step
            .object
            .strip_prefix("owner ")
            .and_then(|k| found.objects.get(&("owner".to_string(), k.to_string())));
        let (Some(done), Some(old)) = (AdminDdl::from_owner_statement(&step.sql), old) else {
            anyhow::bail!(
                "the owner change `{}` is not one the admin may run for the app (db::trust); please report it",
                step.sql
            );
        };
        let undo = match &done {
            AdminDdl::ObjectOwner { object, .. } => AdminDdl::ObjectOwner {
                object: object.clone(),
                role: old.clone(),
            },
            other => other.clone(),
        };
        admin_steps.push(AdminStep { done, undo });
    }
    let ddl_sql: Vec<String> = ddl_steps.iter().map(|s| s.sql.clone()).collect();
    match options.mode {
        Mode::Report => {
            report.outcome = Outcome::Differs;
            Ok(report)
        }
        Mode::DryRun => {
            report.sql = Some(transaction_text(
                &admin_steps,
                &ddl_sql,
                &ledger_sql,
                app.user(),
            ));
            report.outcome = Outcome::Planned;
            Ok(report)
        }
        Mode::Reconcile => {
            if !report.lossy.is_empty() && !options.allow_data_loss {
                return Err(error::refused(format!(
                    "reconciling would lose data, so nothing was changed:\n  {}\nmake the schema keep them by hand first, or pass --allow-data-loss",
                    report.lossy.join("\n  ")
                )));
            }
            let old_owners: Vec<String> = owners
                .iter()
                .filter_map(|s| s.object.strip_prefix("owner "))
                .filter_map(|k| found.objects.get(&("owner".to_string(), k.to_string())))
                .cloned()
                .collect();
            may_act_for(roles, &old_owners).await?;
            if !report.blocked.is_empty() {
                anyhow::bail!(
                    "existing rows block {} step(s), so nothing was changed:\n{}\nfix those rows (or the schema), then run `migrate baseline --reconcile` again",
                    report.blocked.len(),
                    describe_blocked(&report.blocked)
                );
            }
            report.outcome = if run_transaction(
                roles,
                &admin_steps,
                &ddl_sql,
                &ledger_sql,
                opts,
                Some(&expected),
                None,
            )
            .await?
            {
                Outcome::Reconciled
            } else {
                Outcome::AlreadyAdopted
            };
            Ok(report)
        }
    }
}

/// `migrate baseline --to V` on a database whose ledger stops at `top` < V: the schema must be
/// exactly what 1..V make (the hand-made change is what top+1..V say), and then top+1..V are
/// recorded as baselined; otherwise the differences are listed and nothing is recorded.
async fn record_hotfix(
    roles: &Roles<'_>,
    live: &tokio_postgres::Client,
    migrations: &[Migration],
    opts: &runner::Options,
    options: Options,
    top: i64,
    mut report: Report,
) -> anyhow::Result<Report> {
    let app = roles.app;
    may_act_for(roles, &[]).await?;
    let all: Vec<i64> = migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| *v <= options.to.unwrap_or(report.version))
        .collect();
    let (expected, found) =
        verify::expected_and_live(roles.admin, app, live, migrations, &all, opts, true).await?;
    let mut drift = crate::schema::diff::diff(&expected, &found);
    drift.retain(|d| !ddl::init_owned(&(d.kind.clone(), d.object.clone())));
    let new: Vec<i64> = all.iter().copied().filter(|v| *v > top).collect();
    if !drift.is_empty() {
        report.notes.push(format!(
            "the ledger records up to {top:04}, and the live schema is not what 0001..{:04} make, so {} cannot be recorded as applied; `aidock-provision migrate up` applies them, or make the schema match (the differences are below) and run `migrate baseline` again",
            report.version,
            new.iter().map(|v| format!("{v:04}")).collect::<Vec<_>>().join(", ")
        ));
        report
            .notes
            .extend(drift.iter().map(|d| format!("differs: {d}")));
        report.outcome = Outcome::Differs;
        return Ok(report);
    }
    let ledger_sql = ledger_statements(
        migrations,
        &new,
        false,
        report.alembic_version_before.as_deref(),
    );
    match options.mode {
        Mode::DryRun => {
            report.sql = Some(transaction_text(&[], &[], &ledger_sql, app.user()));
            report.outcome = Outcome::Planned;
        }
        Mode::Report | Mode::Reconcile => {
            report.outcome =
                if run_transaction(roles, &[], &[], &ledger_sql, opts, None, Some(top)).await? {
                    Outcome::Recorded
                } else {
                    Outcome::AlreadyAdopted
                };
        }
    }
    Ok(report)
}

/// The admin builds the scratch database for the app's role and hands it over, and changes the
/// owners of objects other roles own: it must be a superuser, or a member of the app's role and
/// of every role whose objects change hands. Said before anything runs, naming the roles.
async fn may_act_for(roles: &Roles<'_>, old_owners: &[String]) -> anyhow::Result<()> {
    let client = roles.admin.connect().await?;
    let mut needed: Vec<String> = old_owners.to_vec();
    needed.push(roles.app.user().to_string());
    needed.sort();
    needed.dedup();
    let row = client
        .one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    ARRAY(SELECT r FROM unnest($1::text[]) r
                          WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
                             OR NOT pg_has_role(current_user, r::name, 'MEMBER'))",
            &[(&needed, Type::TEXT_ARRAY)],
        )
        .await
        .context("reading the admin's memberships")?;
    let (superuser, missing): (bool, Vec<String>) = (row.get(0), row.get(1));
    if superuser || missing.is_empty() {
        return Ok(());
    }
    Err(error::refused(format!(
        "baseline builds a scratch database for `{app}` and gives `{app}` the objects other roles own before it reconciles on `{app}`'s own login, and the admin `{admin}` is neither a superuser nor a member of {}; nothing was changed. Run it with a superuser admin (--admin-url), or GRANT {} TO {admin} first",
        missing
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", "),
        missing.join(", "),
        app = roles.app.user(),
        admin = roles.admin.user()
    )))
}

/// One statement of the admin's part of a reconcile, and what puts it back when the app's part
/// fails (so that a failed reconcile leaves nothing changed).
#[derive(Debug, Clone)]
struct AdminStep {
    done: AdminDdl,
    undo: AdminDdl,
}

/// `init`'s database-level steps still to do (the admin's, db::trust): the database's owner,
/// PUBLIC's rights on it, schema public's owner and PUBLIC's CREATE there, so that `init` after
/// an adoption changes nothing. Skipped, with a note, when the admin may not. Read from the
/// catalogs only, on the admin's catalog session.
async fn init_preparation(
    roles: &Roles<'_>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<AdminStep>> {
    let app = roles.app;
    let mut session = CatalogSession::connect(roles.admin, app.dbname()).await?;
    let tx = session.snapshot().await?;
    let row = tx
        .one(
            "SELECT d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = 0),
                    pg_get_userbyid(n.nspowner)::text,
                    EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE'),
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                      OR pg_has_role(current_user, n.nspowner, 'MEMBER'),
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                      OR pg_has_role(current_user, d.datdba, 'MEMBER'),
                    pg_get_userbyid(d.datdba)::text
             FROM pg_database d, pg_namespace n
             WHERE d.datname = current_database() AND n.nspname = 'public'",
            &[],
        )
        .await
        .context("reading the database's and schema public's privileges")?;
    drop(tx);
    let (public_connect, schema_owner, public_create, may_schema, may_db, db_owner): (
        bool,
        String,
        bool,
        bool,
        bool,
        String,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    let mut steps = Vec::new();
    let database = app.dbname().to_string();
    let role = app.user().to_string();
    if db_owner != app.user() {
        if may_db {
            steps.push(AdminStep {
                done: AdminDdl::DatabaseOwner {
                    database: database.clone(),
                    role: role.clone(),
                },
                undo: AdminDdl::DatabaseOwner {
                    database: database.clone(),
                    role: db_owner.clone(),
                },
            });
        } else {
            notes.push(format!(
                "database {} stays owned by `{db_owner}` (the admin may not change it); `init` will hand it to `{}`",
                app.dbname(),
                app.user()
            ));
        }
    }
    if public_connect {
        if may_db {
            steps.push(AdminStep {
                done: AdminDdl::RevokeDatabase {
                    database: database.clone(),
                },
                undo: AdminDdl::GrantDatabase {
                    database: database.clone(),
                },
            });
        } else {
            notes.push(format!("PUBLIC may still connect to {}: the admin may not revoke that; as its owner run REVOKE ALL ON DATABASE ... FROM PUBLIC", app.dbname()));
        }
    }
    if schema_owner != app.user() {
        if may_schema {
            steps.push(AdminStep {
                done: AdminDdl::SchemaOwner {
                    schema: "public".into(),
                    role: role.clone(),
                },
                undo: AdminDdl::SchemaOwner {
                    schema: "public".into(),
                    role: schema_owner.clone(),
                },
            });
        } else {
            notes.push(format!(
                "schema public stays owned by `{schema_owner}` (the admin may not change it)"
            ));
        }
    }
    if public_create && (may_schema || schema_owner == app.user()) {
        steps.push(AdminStep {
            done: AdminDdl::RevokeSchemaCreate {
                schema: "public".into(),
            },
            undo: AdminDdl::GrantSchemaCreate {
                schema: "public".into(),
            },
        });
    }
    Ok(steps)
}

/// The blocked steps, one paragraph each.
#[must_use]
pub fn describe_blocked(blocked: &[Blocked]) -> String {
    blocked
        .iter()
        .map(|b| {
            format!(
                "  {}: {}\n{}",
                b.step,
                b.problem,
                b.rows
                    .iter()
                    .map(|r| format!("    {r}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ledger rows for `versions`, marked as baselined (after creating the ledger when `create`)
/// with the Alembic revision the stamp replaces (`alembic_before`, what `alembic_version` held),
/// and the Alembic stamp.
fn ledger_statements(
    migrations: &[Migration],
    versions: &[i64],
    create: bool,
    alembic_before: Option<&[String]>,
) -> String {
    let mut sql = if create {
        vec![ledger::CREATE.to_string()]
    } else {
        Vec::new()
    };
    // "migrate baseline (<role>)", or "migrate baseline (<role>; replaced alembic revision R)":
    // `migrate history` shows it, and it says which revision of the backend's our first follows.
    let theirs: Vec<&str> = alembic_before
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .filter(|r| {
            !migrations
                .iter()
                .any(|m| crate::migrate::alembic::revision_id(m.version) == *r)
        })
        .collect();
    let replaced = if theirs.is_empty() {
        "''".to_string()
    } else {
        quote_literal(&format!(
            "; replaced alembic revision {}",
            theirs.join(", ")
        ))
    };
    for m in migrations.iter().filter(|m| versions.contains(&m.version)) {
        sql.push(format!(
            "INSERT INTO {} (version, name, checksum, execution_ms, applied_by) VALUES ({}, {}, {}, 0, 'migrate baseline (' || current_user || {replaced} || ')')",
            ledger::HISTORY,
            m.version,
            quote_literal(&m.name),
            quote_literal(&m.up.checksum)
        ));
    }
    sql.push(ledger::STAMP_ALEMBIC.to_string());
    sql.join(";\n") + ";"
}

/// What `--dry-run` prints: the admin's transaction (ownership and privileges only), then the
/// app role's, on its own login.
fn transaction_text(admin: &[AdminStep], ddl: &[String], ledger_sql: &str, role: &str) -> String {
    let mut parts = Vec::new();
    if !admin.is_empty() {
        parts.push(
            "-- as the admin (ownership and privileges only; put back if the next part fails):"
                .to_string(),
        );
        parts.push("BEGIN;".to_string());
        parts.extend(admin.iter().map(|s| format!("{};", s.done.sql())));
        parts.push("COMMIT;".to_string());
    }
    parts.push(format!(
        "-- as role {}, on its own login:",
        db::quote_ident(role)
    ));
    parts.push("BEGIN;".to_string());
    parts.extend(ddl.iter().cloned());
    parts.push(ledger_sql.to_string());
    parts.push("COMMIT;".to_string());
    parts.join("\n") + "\n"
}

/// The reconcile. On the app role's own login, one transaction takes the migration lock and
/// reads the ledger again: a concurrent baseline or migrator that recorded meanwhile makes this
/// run do nothing (`false`), before the admin's part is touched. Then the admin's part
/// (`admin`: ownership and privileges, db::trust) in one transaction of its own, while the app's
/// transaction holds the lock (so no other reconcile's admin part runs beside it: catalog rows
/// such as the database's ACL are never updated twice at once); then, in the app's transaction:
/// timeouts, the DDL, the ledger; with `expected`, the catalog is read back and must match
/// before the commit. When the app's part does not commit, the admin's part is put back.
async fn run_transaction(
    roles: &Roles<'_>,
    admin: &[AdminStep],
    ddl: &[String],
    ledger_sql: &str,
    opts: &runner::Options,
    expected: Option<&Catalog>,
    ledger_top: Option<i64>,
) -> anyhow::Result<bool> {
    let app = roles.app;
    let mut client = app.connect().await?;
    let Some(tx) = locked(&mut client, app, opts, ledger_top).await? else {
        return Ok(false);
    };
    let mut session = if admin.is_empty() {
        None
    } else {
        let done: Vec<AdminDdl> = admin.iter().map(|s| s.done.clone()).collect();
        let ran = async {
            let mut session = CatalogSession::connect(roles.admin, app.dbname()).await?;
            session.run(&done).await?;
            anyhow::Ok(session)
        }
        .await
        .context("the admin's part of the reconcile (ownership and privileges); nothing changed");
        match ran {
            Ok(session) => Some(session),
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    };
    let result = app_transaction(tx, ddl, ledger_sql, opts, expected).await;
    if !matches!(result, Ok(true))
        && let Some(session) = session.as_mut()
    {
        let undo: Vec<AdminDdl> = admin.iter().rev().map(|s| s.undo.clone()).collect();
        if let Err(e) = session.run(&undo).await {
            let listed: Vec<String> = admin.iter().map(|s| s.done.sql()).collect();
            let failed = result
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("nothing to record"));
            return Err(failed.context(format!(
                "and putting back the admin's part failed ({e:#}); these stay changed: {}",
                listed.join("; ")
            )));
        }
    }
    result
}

/// The app's transaction holding the migration lock (waited for up to migrate.wait_timeout: a
/// concurrent baseline or migrator finishes first), the ledger read again under it; `None` when
/// it no longer ends at `ledger_top` (another run recorded or migrated).
async fn locked<'c>(
    client: &'c mut tokio_postgres::Client,
    app: &Target,
    opts: &runner::Options,
    ledger_top: Option<i64>,
) -> anyhow::Result<Option<tokio_postgres::Transaction<'c>>> {
    let tx = client
        .transaction()
        .await
        .context("starting the baseline transaction")?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        opts.wait_timeout.as_millis().max(1)
    ))
    .await
    .context("setting the wait for the migration lock")?;
    if let Err(e) = tx
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({})",
            runner::lock_key()
        ))
        .await
    {
        if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            anyhow::bail!(
                "another aidock-provision run held the migration lock on {} for more than {:?}; try again when it is done, or raise migrate.wait_timeout",
                app.describe(),
                opts.wait_timeout
            );
        }
        return Err(anyhow::anyhow!(db::describe_error(&e))).context("taking the migration lock");
    }
    if ledger::read(&tx).await?.iter().map(|r| r.version).max() != ledger_top {
        // Another run recorded (or migrated) meanwhile: nothing of this run is needed.
        tx.rollback()
            .await
            .context("ending the baseline transaction")?;
        return Ok(None);
    }
    Ok(Some(tx))
}

/// The app's part of [`run_transaction`], in the transaction [`locked`] opened.
async fn app_transaction(
    tx: tokio_postgres::Transaction<'_>,
    ddl: &[String],
    ledger_sql: &str,
    opts: &runner::Options,
    expected: Option<&Catalog>,
) -> anyhow::Result<bool> {
    tx.batch_execute(&runner::session_settings(opts, true))
        .await
        .context("setting lock_timeout and statement_timeout")?;
    let run = |sql: &str| {
        let tx = &tx;
        let sql = sql.to_string();
        async move {
            tx.batch_execute(&sql).await.map_err(|e| {
                anyhow::anyhow!(
                    "{}\nwhile running:\n  {}\nthe transaction was rolled back: nothing changed",
                    db::describe_error(&e),
                    sql.replace('\n', "\n  ")
                )
            })
        }
    };
    for sql in ddl {
        run(sql).await?;
    }
    run(ledger_sql).await?;
    if let Some(expected) = expected {
        let options = ReadOptions {
            exclude: &verify::ENGINE_TABLES,
            meta: false,
            platform: false,
        };
        let reached = catalog::read(&tx, options).await?;
        let mut drift = crate::schema::diff::diff(expected, &reached);
        drift.retain(|d| !ddl::init_owned(&(d.kind.clone(), d.object.clone())));
        if !drift.is_empty() {
            anyhow::bail!(
                "the reconcile would not leave exactly the migrations' schema, so it was rolled back (nothing changed); this is a limit of the diff engine, please report it. Still different:\n  {}",
                drift
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        // Read with search_path changed; back to the role's own settings for the commit.
        run("RESET search_path").await?;
    }
    tx.commit().await.context("committing the baseline")?;
    Ok(true)
}
