//! Versioned migrations, the engine: files ([`source`]), the pure decision of what to run
//! ([`plan`]), the bookkeeping SQL ([`ledger`]), the one runner ([`runner`]), [`lint`], the
//! Alembic export ([`alembic`]), and the data behind the `migrate` commands (their printing is
//! the application's). Comparing a schema with what the migrations make (verify, diff,
//! baseline) is the floor above (`reconcile`), which uses this one.

pub mod alembic;
pub mod ledger;
pub mod lexer;
pub mod lint;
pub mod plan;
pub mod runner;
pub mod source;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

// What the floors beside this one (provision, seed) use of the engine, by name here rather
// than by its files: the migrations themselves and their checksums (templates record them), the
// objects no migration made (init's pre-flight), and the check every bookkeeping table passes.
pub use alembic::ForeignRevision;
pub use ledger::{Foreign, check_bookkeeping, foreign_objects, foreign_revisions};
pub use source::{Migration, checksum, from_files};

use crate::db::Target;
use crate::error;
use plan::Target as PlanTarget;

/// Apply or revert migrations on `target` to reach `to`; under a URL listing several hosts, what
/// was committed (or, on a re-run after an unconfirmed commit, what was read) is confirmed on a
/// standby of the node that committed it ([`db::ha::confirm`]).
///
/// # Errors
/// Connection, planning and script errors; exit 4 when the commit cannot be confirmed.
pub async fn migrate(
    target: &Target,
    migrations: &[Migration],
    to: PlanTarget,
    opts: &runner::Options,
    confirm: &crate::db::ha::Confirm,
) -> anyhow::Result<Vec<runner::Done>> {
    let (mut client, host) = target.connect_to_host().await?;
    let done = crate::db::ha::watched(
        target,
        host,
        // Boxed: the runner's future is large, and callers' futures hold this one.
        Box::pin(runner::run(&mut client, target, migrations, to, opts)),
    )
    .await
    .map_err(|e| {
        if e.is::<runner::Standby>() {
            crate::db::standby_error(target)
        } else {
            e
        }
    })?;
    if !done.is_empty() || confirm.reads {
        let what = if done.is_empty() {
            "the ledger this run read (nothing to do)".to_string()
        } else {
            done.iter()
                .map(|d| d.migration.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        crate::db::ha::confirm(&client, target, host, &what, confirm).await?;
    }
    Ok(done)
}

/// `migrate status` as data.
#[derive(Debug, Serialize)]
pub struct Status {
    pub database: String,
    /// Where the migration files come from (set by the caller; see `migrate status`).
    pub source: String,
    /// The highest applied version, or null.
    pub current: Option<i64>,
    /// The highest available version, or null.
    pub head: Option<i64>,
    pub up_to_date: bool,
    pub applied: Vec<AppliedStatus>,
    pub pending: Vec<PendingStatus>,
    pub problems: Vec<String>,
    /// What `alembic_version` holds (the backend's Alembic reads it); null when it is absent.
    pub alembic_version: Option<Vec<String>>,
    /// The revisions in `alembic_version` that are not ours: the backend's own, applied on top
    /// of our migrations (empty when none).
    pub foreign_revisions: Vec<String>,
    /// Whether `alembic_version` holds revisions of ours, but not the ledger's head.
    #[serde(skip)]
    pub stamp_stale: bool,
    /// Where the live schema differs from what the migrations make, when `alembic_version`
    /// disagrees with the ledger and the schema could be compared (filled by `migrate status`
    /// and `doctor`, which may have an admin connection); null when not compared.
    pub schema_drift: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct AppliedStatus {
    pub version: i64,
    pub name: String,
    pub applied_at: String,
    /// `ok`, `edited` (file changed since), or `unknown` (no such file).
    pub checksum: &'static str,
}

#[derive(Debug, Serialize)]
pub struct PendingStatus {
    pub version: i64,
    pub name: String,
    pub file: String,
}

/// Read the ledger (never creating anything) and compare it with the files.
///
/// # Errors
/// Connection failures.
pub async fn status(target: &Target, migrations: &[Migration]) -> anyhow::Result<Status> {
    let client = target.connect().await?;
    let rows = ledger::read(&client).await?;
    let applied: Vec<plan::Applied> = rows.iter().map(ledger::Row::applied).collect();
    let mut problems: Vec<String> = plan::problems(&applied, migrations)
        .iter()
        .map(ToString::to_string)
        .collect();
    let alembic_version = ledger::alembic_stamp(&client).await?;
    let foreign_revisions = ledger::foreign_revisions(&client).await?;
    let current = applied.iter().map(|a| a.version).max();
    let mut stamp_stale = false;
    if let Some(foreign) = ledger::foreign_objects(&client).await? {
        // Not ours: the pending list below would be a lie if read as "up would apply these".
        problems.push(format!(
            "the database holds {} object(s) no aidock-provision migration made ({}){}; `migrate up` refuses to run on it: adopt it with `aidock-provision migrate baseline`",
            foreign.count,
            foreign.listed(),
            alembic_version
                .as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| format!(", and alembic_version holds the backend's own revision {}", v.join(", ")))
                .unwrap_or_default()
        ));
    } else if !foreign_revisions.is_empty() {
        problems.push(format!(
            "alembic_version holds {}, an Alembic revision of the backend's own applied on top of aidock-provision's migrations (`alembic upgrade head`): `migrate up`, `init` and `seed` refuse until it is a migration of ours: `aidock-provision migrate capture NAME --alembic-dir <the backend's alembic/versions>` (putting our stamp back instead would make the backend's next `alembic upgrade head` run the revision again)",
            alembic::ForeignRevision {
                revisions: foreign_revisions.clone()
            }
            .ids()
        ));
    } else if let Some(problem) = alembic::stamp_problem(current, alembic_version.as_deref()) {
        stamp_stale = true;
        problems.push(problem);
    }
    let applied_status = rows
        .iter()
        .map(|r| {
            let file = migrations.iter().find(|m| m.version == r.version);
            AppliedStatus {
                version: r.version,
                name: r.name.clone(),
                applied_at: r.applied_at.clone(),
                checksum: match file {
                    None => "unknown",
                    Some(m) if m.up.checksum != r.checksum => "edited",
                    Some(_) => "ok",
                },
            }
        })
        .collect();
    let pending: Vec<PendingStatus> = migrations
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| PendingStatus {
            version: m.version,
            name: m.name.clone(),
            file: m.up.file.clone(),
        })
        .collect();
    Ok(Status {
        database: target.describe(),
        source: String::new(),
        current,
        head: migrations.iter().map(|m| m.version).max(),
        up_to_date: pending.is_empty() && problems.is_empty(),
        applied: applied_status,
        pending,
        problems,
        alembic_version,
        foreign_revisions,
        stamp_stale,
        schema_drift: None,
    })
}

impl std::fmt::Display for Status {
    /// For people: the database, current version, each applied and pending migration, problems.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "database: {}", self.database)?;
        if !self.source.is_empty() {
            writeln!(f, "migrations: {}", self.source)?;
        }
        match self.current {
            Some(v) => writeln!(f, "current version: {v:04}")?,
            None => writeln!(f, "current version: none (no migration applied)")?,
        }
        for a in &self.applied {
            writeln!(
                f,
                "  applied  {:04} {:<32} {}  checksum {}",
                a.version, a.name, a.applied_at, a.checksum
            )?;
        }
        for p in &self.pending {
            writeln!(f, "  pending  {:04} {}", p.version, p.name)?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        if let Some(drift) = &self.schema_drift {
            if drift.is_empty() {
                writeln!(f, "schema: matches what the applied migrations make")?;
            } else {
                writeln!(
                    f,
                    "schema: {} difference(s) from what the applied migrations make:",
                    drift.len()
                )?;
                for d in drift {
                    writeln!(f, "  {d}")?;
                }
            }
        }
        if self.up_to_date {
            writeln!(f, "up to date")?;
        }
        Ok(())
    }
}

/// The ledger, oldest first.
///
/// # Errors
/// Connection failures.
pub async fn history(target: &Target) -> anyhow::Result<Vec<ledger::Row>> {
    let client = target.connect().await?;
    ledger::read(&client).await
}

/// The exact SQL a run would send, in order (`migrate plan`, `init --dry-run`).
///
/// # Errors
/// Planning problems.
pub fn plan_sql(
    applied: &[plan::Applied],
    migrations: &[Migration],
    to: PlanTarget,
    opts: &runner::Options,
    legacy_ledger: Option<bool>,
) -> anyhow::Result<String> {
    let steps = plan::plan(applied, migrations, to)?;
    let mut out = String::new();
    let key = runner::lock_key();
    if steps.is_empty() {
        out.push_str("-- nothing to do: the database is already at the target\n");
        return Ok(out);
    }
    let no_tx = steps.iter().any(|s| {
        let m = migrations
            .iter()
            .find(|m| m.version == s.version)
            .expect("planned");
        if s.direction == plan::Direction::Up {
            m.up.no_transaction
        } else {
            m.down.as_ref().is_some_and(|d| d.no_transaction)
        }
    });
    if no_tx {
        let _ = writeln!(
            out,
            "-- a script runs outside a transaction: a session lock is held for the run\nSELECT pg_try_advisory_lock({key}); -- polled until true\n{};",
            ledger::create(legacy_ledger)
        );
    } else {
        let _ = writeln!(
            out,
            "BEGIN;\nSELECT pg_try_advisory_xact_lock({key}); -- polled in short transactions until true\n{};\n{};",
            runner::session_settings(opts, true),
            ledger::create(legacy_ledger)
        );
    }
    for step in &steps {
        let m = migrations
            .iter()
            .find(|m| m.version == step.version)
            .expect("planned");
        let script = if step.direction == plan::Direction::Up {
            &m.up
        } else {
            m.down.as_ref().expect("plan checks down scripts")
        };
        if no_tx {
            if script.no_transaction {
                let _ = writeln!(out, "{};", runner::session_settings(opts, false));
            } else {
                let _ = writeln!(out, "BEGIN;\n{};", runner::session_settings(opts, true));
            }
        }
        let split = script
            .statements()
            .with_context(|| format!("migration {} cannot run as written", m.label()))?;
        let _ = writeln!(out, "\n-- {}", script.file);
        for statement in &split.statements {
            let _ = writeln!(out, "{};", statement.text(&script.sql).trim());
        }
        let restore = if no_tx && script.no_transaction {
            ledger::RESET_SESSION.to_string()
        } else {
            format!(
                "{}; {}",
                ledger::RESET_SESSION,
                runner::session_settings(opts, true)
            )
        };
        let bookkeeping = if step.direction == plan::Direction::Up {
            ledger::insert(m, None)
        } else {
            ledger::delete(m.version)
        };
        let _ = writeln!(out, "-- bookkeeping\n{restore};\n{bookkeeping};");
        if no_tx {
            let _ = writeln!(out, "{};", ledger::STAMP_ALEMBIC);
            if !script.no_transaction {
                out.push_str("COMMIT;\n");
            }
        }
    }
    if no_tx {
        let _ = writeln!(out, "SELECT pg_advisory_unlock({key});");
    } else {
        let _ = writeln!(out, "{};\nCOMMIT;", ledger::STAMP_ALEMBIC);
    }
    Ok(out)
}

/// The ledger as planning input, read-only.
///
/// # Errors
/// Connection failures.
pub async fn applied(target: &Target) -> anyhow::Result<Vec<plan::Applied>> {
    let client = target.connect().await?;
    Ok(ledger::read(&client)
        .await?
        .iter()
        .map(ledger::Row::applied)
        .collect())
}

/// The ledger, and whether it is still in its place from before the bookkeeping schema (what
/// `migrate plan` needs to print what `up` runs).
///
/// # Errors
/// Connection failures.
pub async fn applied_and_legacy(target: &Target) -> anyhow::Result<(Vec<plan::Applied>, bool)> {
    let client = target.connect().await?;
    let applied = ledger::read(&client)
        .await?
        .iter()
        .map(ledger::Row::applied)
        .collect();
    Ok((applied, ledger::is_legacy(&client).await?))
}

/// Scaffold the next `NNNN_name.up.sql` / `.down.sql` pair; returns the two paths.
///
/// # Errors
/// A bad name, a name or number that exists, or a missing directory.
pub fn new_migration(dir: Option<&Path>, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !source::is_valid_slug(name) {
        return Err(error::usage(format!(
            "migration name `{name}` must be lower-case letters, digits and underscores, e.g. add_user_avatar"
        )));
    }
    let dir = dir.map_or_else(|| PathBuf::from("sql"), Path::to_path_buf);
    if !dir.is_dir() {
        return Err(error::usage(format!(
            "no migrations directory `{}`: run from the project root (where sql/ is), pass --migrations-dir, or create it (`mkdir sql`) to start one",
            dir.display()
        )));
    }
    let existing = source::from_dir(&dir)?;
    if let Some(m) = existing.iter().find(|m| m.name == name) {
        return Err(error::usage(format!(
            "a migration named `{name}` already exists: {}; choose another name",
            m.up.file
        )));
    }
    let version = existing.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    let up = dir.join(format!("{version:04}_{name}.up.sql"));
    let down = dir.join(format!("{version:04}_{name}.down.sql"));
    for path in [&up, &down] {
        if path.exists() {
            return Err(error::usage(format!("`{}` already exists", path.display())));
        }
    }
    std::fs::write(
        &up,
        format!(
            "-- {version:04} {name}: describe the change here.\n-- Runs in one transaction with the other pending migrations. For CREATE INDEX CONCURRENTLY,\n-- make `{}` the first line (statements then run one by one; make them idempotent).\n",
            source::NO_TRANSACTION
        ),
    )
    .with_context(|| format!("writing `{}`", up.display()))?;
    std::fs::write(
        &down,
        format!("-- Reverts {version:04} {name}: undo exactly what the up script does.\n"),
    )
    .with_context(|| format!("writing `{}`", down.display()))?;
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> runner::Options {
        runner::Options {
            lock_timeout: std::time::Duration::from_secs(5),
            lock_retry_for: std::time::Duration::ZERO,
            statement_timeout: std::time::Duration::from_mins(1),
            wait_timeout: std::time::Duration::from_mins(1),
            verbose: false,
            log: |_| {},
            pool_mode: crate::db::pooler::PoolMode::Detect,
        }
    }

    fn migrations() -> Vec<Migration> {
        source::from_files(
            [
                ("0001_a.up.sql", "CREATE TABLE a (id int);".to_string()),
                ("0001_a.down.sql", "DROP TABLE a;".to_string()),
                (
                    "0002_b.up.sql",
                    "CREATE TABLE b (id int);\nCREATE TABLE c (id int);".to_string(),
                ),
                ("0002_b.down.sql", "DROP TABLE c; DROP TABLE b;".to_string()),
            ],
            "test",
        )
        .expect("migrations")
    }

    #[test]
    fn plan_sql_is_the_runs_exact_statements_in_order() {
        let ms = migrations();
        let sql = plan_sql(&[], &ms, PlanTarget::Up(None), &options(), None).expect("plan");
        let order = [
            "BEGIN;",
            "pg_try_advisory_xact_lock",
            "SET LOCAL lock_timeout = '5000ms'",
            "CREATE SCHEMA IF NOT EXISTS aidock_provision;",
            "ALTER TABLE IF EXISTS public.aidock_schema_history SET SCHEMA aidock_provision;",
            "CREATE TABLE IF NOT EXISTS aidock_provision.schema_history",
            "-- 0001_a.up.sql",
            "CREATE TABLE a (id int);",
            "RESET ALL; RESET ROLE",
            "INSERT INTO aidock_provision.schema_history (version, name, checksum, execution_ms) VALUES (1, 'a'",
            "-- 0002_b.up.sql",
            "CREATE TABLE b (id int);\nCREATE TABLE c (id int);",
            "VALUES (2, 'b'",
            "INSERT INTO public.alembic_version",
            "COMMIT;",
        ];
        let mut at = 0;
        for piece in order {
            let found = sql[at..]
                .find(piece)
                .unwrap_or_else(|| panic!("`{piece}` not after byte {at} in:\n{sql}"));
            at += found + piece.len();
        }
        let applied: Vec<plan::Applied> = ms
            .iter()
            .map(|m| plan::Applied {
                version: m.version,
                name: m.name.clone(),
                checksum: m.up.checksum.clone(),
            })
            .collect();
        let none = plan_sql(&applied, &ms, PlanTarget::Up(None), &options(), None).expect("plan");
        assert_eq!(
            none,
            "-- nothing to do: the database is already at the target\n"
        );
        let down =
            plan_sql(&applied, &ms, PlanTarget::DownSteps(1), &options(), None).expect("plan");
        assert!(down.contains("DROP TABLE c;\nDROP TABLE b;"), "{down}");
        assert!(down.contains("DELETE FROM aidock_provision.schema_history WHERE version = 2"));
        assert!(!down.contains("DROP TABLE a"), "{down}");
    }

    #[test]
    fn plan_sql_refuses_a_script_the_runner_would_refuse() {
        let ms = source::from_files(
            [(
                "0001_tx.up.sql",
                "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);".to_string(),
            )],
            "test",
        )
        .expect("migrations");
        let err = plan_sql(&[], &ms, PlanTarget::Up(None), &options(), None).expect_err("refused");
        assert!(
            format!("{err:#}").contains("0001_tx.up.sql:1:1: `BEGIN`"),
            "{err:#}"
        );
    }
}
