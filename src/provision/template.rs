//! Template databases: a database at head (and seeded) that `CREATE DATABASE ... TEMPLATE` copies
//! in one statement, so a test suite gets a fresh, seeded database per test in milliseconds.
//!
//! A template this tool built carries a comment `aidock-provision template <fingerprint>`: the
//! migrations' checksums and the seed inputs it was built from. Building takes an exclusive
//! advisory lock on its name; cloning takes the same lock shared, so a clone never copies a
//! template that is being rebuilt.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::Client;

use super::{Database, Item, Outcome};
use crate::db::{self, Target};
use crate::error;
use crate::migrate::source::{Migration, checksum};

/// How our templates' comments begin.
const MARKER: &str = "aidock-provision template";

/// What a template was built from: the migrations (by version and checksum) and, for a seeded
/// one, the seed inputs (files and `--dev` flags).
#[must_use]
pub fn fingerprint(migrations: &[Migration], seed_inputs: &str) -> String {
    let listed: String = migrations
        .iter()
        .map(|m| format!("{}:{}\n", m.version, m.up.checksum))
        .collect::<Vec<_>>()
        .concat();
    let migrations_part = checksum(&listed);
    let seed_part = checksum(seed_inputs);
    format!(
        "migrations={} seed={}",
        &migrations_part[..16],
        &seed_part[..16]
    )
}

/// The migrations half of a fingerprint (a clone needs the migrations to match, not the seeds).
fn migrations_part(fingerprint: &str) -> Option<&str> {
    fingerprint
        .split_whitespace()
        .find(|p| p.starts_with("migrations="))
}

/// A database as a template candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub is_template: bool,
    pub owner: String,
    /// The fingerprint in our comment; `None` when the comment is not ours.
    pub fingerprint: Option<String>,
}

/// Read what is there under `name`.
///
/// # Errors
/// Catalog reads failing.
pub async fn find(client: &Client, name: &str) -> anyhow::Result<Option<Found>> {
    let row = client
        .query_opt(
            "SELECT datistemplate, pg_get_userbyid(datdba)::text, \
                    shobj_description(oid, 'pg_database') \
             FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .with_context(|| format!("reading database `{name}`"))?;
    Ok(row.map(|r| {
        let comment: Option<String> = r.get(2);
        Found {
            is_template: r.get(0),
            owner: r.get(1),
            fingerprint: comment
                .as_deref()
                .and_then(|c| c.strip_prefix(MARKER))
                .map(|f| f.trim().to_string()),
        }
    }))
}

/// Take the template's advisory lock (exclusive to build, shared to clone), polling.
///
/// # Errors
/// When another build holds it longer than `wait`.
pub async fn lock(client: &Client, name: &str, shared: bool, wait: Duration) -> anyhow::Result<()> {
    let key = db::advisory::key("template", name);
    let function = if shared {
        "pg_try_advisory_lock_shared"
    } else {
        "pg_try_advisory_lock"
    };
    let deadline = Instant::now() + wait;
    loop {
        let got: bool = client
            .query_one(&format!("SELECT {function}({key})"), &[])
            .await
            .context("taking the template lock")?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "template `{name}` was being built or cloned by another process for more than {wait:?}; let it finish, or raise migrate.wait_timeout"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Mark a database as ours while it is being built (a crashed build is then recognised as ours
/// and rebuilt), or drop a template of ours before a rebuild.
///
/// # Errors
/// A database under that name that this tool did not build (refused, exit 3); statement failures.
pub async fn drop_ours(client: &Client, name: &str) -> anyhow::Result<()> {
    let Some(found) = find(client, name).await? else {
        return Ok(());
    };
    if found.fingerprint.is_none() {
        return Err(error::refused(format!(
            "database `{name}` exists and is not a template aidock-provision built; choose another template name (--name) or remove it yourself"
        )));
    }
    let ident = db::quote_ident(name);
    // Two statements: DROP DATABASE cannot share a (multi-statement, hence transactional) batch.
    for sql in [
        format!("ALTER DATABASE {ident} IS_TEMPLATE false"),
        format!("DROP DATABASE {ident} WITH (FORCE)"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .with_context(|| format!("dropping the old template `{name}`"))?;
    }
    Ok(())
}

/// Record what the database is being built from (`fingerprint: None` while building).
///
/// # Errors
/// Statement failures.
pub async fn mark(client: &Client, name: &str, fingerprint: Option<&str>) -> anyhow::Result<()> {
    let ident = db::quote_ident(name);
    let comment = format!("{MARKER} {}", fingerprint.unwrap_or("building"));
    let mut sql = format!(
        "COMMENT ON DATABASE {ident} IS {}",
        db::quote_literal(&comment)
    );
    if fingerprint.is_some() {
        // Closed to connections: CREATE DATABASE ... TEMPLATE needs nobody connected to it.
        let _ = write!(
            sql,
            "; ALTER DATABASE {ident} IS_TEMPLATE true; ALTER DATABASE {ident} ALLOW_CONNECTIONS false"
        );
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("marking `{name}` as a template"))
}

/// Whether a found template can be cloned for these migrations; the refusal says what to run.
///
/// # Errors
/// Missing, not finished, or built from other migrations.
pub fn check_current(
    name: &str,
    found: Option<&Found>,
    migrations: &[Migration],
) -> anyhow::Result<()> {
    let rebuild = "run `aidock-provision template` (with the same --dev flags) to build it";
    let Some(found) = found else {
        anyhow::bail!("template `{name}` does not exist; {rebuild}");
    };
    let Some(fingerprint) = found.fingerprint.as_deref().filter(|_| found.is_template) else {
        anyhow::bail!(
            "database `{name}` is not a finished template aidock-provision built; {rebuild}"
        );
    };
    if migrations_part(fingerprint) != migrations_part(&self::fingerprint(migrations, "")) {
        anyhow::bail!(
            "template `{name}` is stale: it was built from other migrations than these; {rebuild} again"
        );
    }
    Ok(())
}

/// `CREATE DATABASE ... TEMPLATE` for `d`, then give every object in it to `d.owner` (the
/// template may belong to another role) and close it to PUBLIC as `init` does.
///
/// # Errors
/// A database of that name that exists already; statement failures.
pub async fn clone(
    client: &Client,
    admin: &Target,
    template: &Found,
    template_name: &str,
    d: &Database,
) -> anyhow::Result<Item> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&d.name])
        .await
        .context("reading pg_database")?
        .is_some();
    if exists {
        anyhow::bail!(
            "database `{}` exists already; `init --from-template` only creates databases: drop it (`aidock-provision reset`) or run `init` without --from-template",
            d.name
        );
    }
    let ident = db::quote_ident(&d.name);
    client
        .batch_execute(&format!(
            "CREATE DATABASE {ident} OWNER {} TEMPLATE {}",
            db::quote_ident(&d.owner),
            db::quote_ident(template_name)
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("cloning `{template_name}` into `{}`", d.name))?;
    // The clone must not inherit the template's marks (nor its comment).
    client
        .batch_execute(&format!("COMMENT ON DATABASE {ident} IS NULL"))
        .await
        .context("clearing the clone's comment")?;
    if template.owner != d.owner {
        let app_db = admin.with_dbname(&d.name).connect().await?;
        let rows = app_db
            .query(REASSIGN, &[&template.owner, &d.owner])
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .context("listing the objects to hand over")?;
        let statements: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if !statements.is_empty() {
            app_db
                .batch_execute(&statements.join(";\n"))
                .await
                .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
                .with_context(|| format!("handing the clone's objects to `{}`", d.owner))?;
        }
    }
    Ok(Item::new(
        format!("database {}", d.name),
        Outcome::Changed(vec![format!("created from template {template_name}")]),
    ))
}

/// In the clone: one `ALTER ... OWNER TO` per object the template's owner ($1) owns, for the new
/// owner ($2). Not `REASSIGN OWNED`, which would also hand over every *database* $1 owns (the
/// template itself among them). Extension members and sequences owned by a column (they follow
/// their table) are left out.
const REASSIGN: &str = "
WITH old AS (SELECT oid FROM pg_roles WHERE rolname = $1),
     ns AS (SELECT oid, nspname FROM pg_namespace
            WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema')
SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, $2::text)
FROM ns n JOIN pg_namespace p ON p.oid = n.oid WHERE p.nspowner = (SELECT oid FROM old)
UNION ALL
SELECT format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              c.oid::regclass, $2::text)
FROM pg_class c
WHERE c.relowner = (SELECT oid FROM old) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND c.relnamespace IN (SELECT oid FROM ns)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
UNION ALL
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $2::text)
FROM pg_proc p
WHERE p.proowner = (SELECT oid FROM old) AND p.pronamespace IN (SELECT oid FROM ns)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT format('ALTER %s %s OWNER TO %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
              t.oid::regtype, $2::text)
FROM pg_type t
WHERE t.typowner = (SELECT oid FROM old) AND t.typnamespace IN (SELECT oid FROM ns)
  AND t.typtype IN ('e', 'd', 'r', 'c')
  AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')";

#[cfg(test)]
mod tests {
    use super::*;

    fn migrations(text: &str) -> Vec<Migration> {
        crate::migrate::source::from_files([("0001_a.up.sql", text.to_string())], "test")
            .expect("migrations")
    }

    #[test]
    fn fingerprints_follow_migrations_and_seed_inputs() {
        let a = fingerprint(&migrations("SELECT 1;"), "seed");
        assert_eq!(a, fingerprint(&migrations("SELECT 1;"), "seed"));
        assert_ne!(a, fingerprint(&migrations("SELECT 2;"), "seed"));
        assert_ne!(a, fingerprint(&migrations("SELECT 1;"), "seed --dev"));
        assert_eq!(
            migrations_part(&a),
            migrations_part(&fingerprint(&migrations("SELECT 1;"), "other"))
        );
    }

    #[test]
    fn only_a_finished_current_template_is_cloned() {
        let ms = migrations("SELECT 1;");
        let found = |is_template: bool, fp: Option<String>| Found {
            is_template,
            owner: "app".into(),
            fingerprint: fp,
        };
        let current = fingerprint(&ms, "x");
        check_current("t", Some(&found(true, Some(current.clone()))), &ms).expect("current");
        for (what, f) in [
            ("does not exist", None),
            ("not a finished", Some(found(false, Some(current.clone())))),
            ("not a finished", Some(found(true, None))),
            (
                "stale",
                Some(found(
                    true,
                    Some(fingerprint(&migrations("SELECT 2;"), "x")),
                )),
            ),
        ] {
            let err = check_current("t", f.as_ref(), &ms).expect_err(what);
            assert!(err.to_string().contains(what), "{err}");
            assert!(
                err.to_string().contains("aidock-provision template"),
                "{err}"
            );
        }
    }
}
