//! Template databases: a database at head (and seeded) that `CREATE DATABASE ... TEMPLATE` copies
//! in one statement, so a test suite gets a fresh, seeded database per test in milliseconds.
//!
//! A template belongs to the admin that built it (the app's role, whose password every developer
//! has, can neither connect to it nor alter it), is closed to connections and to PUBLIC, and
//! carries a comment `aidock-provision template <fingerprint>`: the migrations' checksums and the
//! seed inputs it was built from, and a fingerprint of its contents (every table's row count and
//! a digest of its schema). A clone is checked against that contents fingerprint before it is
//! handed over, so a template changed since it was built is refused, naming what changed.
//! Building takes an exclusive advisory lock on its name; cloning takes the same lock shared
//! (not through a transaction pooler: see `provision::from_template`), so a clone never copies a
//! template that is being rebuilt.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use tokio_postgres::Client;

use super::{Database, Item, Outcome};
use crate::db::sql::Sql as _;
use crate::db::trust::{AdminDdl, CatalogSession};
use crate::db::{self, Target};
use crate::error;
use crate::migrate::{Migration, checksum};
use tokio_postgres::types::Type;

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
    /// Whether anyone may connect to it (a template of ours never allows it).
    pub allows_connections: bool,
    pub owner: String,
    /// The fingerprint in our comment; `None` when the comment is not ours.
    pub fingerprint: Option<String>,
    /// The `xmin` of its `pg_database` row: every `ALTER DATABASE` (opening it to connections
    /// first of all) writes a new row version, so one equal to the seal recorded when its
    /// contents were read means nobody has been inside since ([`Found::sealed`]).
    pub row_version: String,
}

impl Found {
    /// The contents fingerprint recorded at build time, if any.
    #[must_use]
    pub fn contents(&self) -> Option<Contents> {
        let (_, json) = self.fingerprint.as_deref()?.split_once(" contents=")?;
        serde_json::from_str(json).ok()
    }

    /// What was built from (migrations and seed inputs), without the seal and the contents.
    #[must_use]
    pub fn inputs(&self) -> Option<&str> {
        let f = self.fingerprint.as_deref()?;
        let f = f.split_once(" contents=").map_or(f, |(inputs, _)| inputs);
        Some(f.split_once(" seal=").map_or(f, |(inputs, _)| inputs))
    }

    /// The row version recorded when the contents were read, closed (see [`Found::sealed`]).
    #[must_use]
    pub fn seal(&self) -> Option<&str> {
        let f = self.fingerprint.as_deref()?;
        let (_, rest) = f.split_once(" seal=")?;
        Some(rest.split_once(' ').map_or(rest, |(seal, _)| seal))
    }

    /// Whether the template is exactly what its recorded contents describe without reading it:
    /// closed to connections (nobody, superusers included, can enter it, and nothing changes a
    /// database's contents from outside it) and its `pg_database` row the version it had when
    /// the contents were read from a copy of it. Opening it to change it, and closing it again,
    /// are two `ALTER DATABASE`s, two new row versions; `CREATE DATABASE ... TEMPLATE`,
    /// `COMMENT`, and VACUUM (even FULL or FREEZE) keep the `xmin`. A clone of a sealed template
    /// needs no check of its own: it is a file copy of what was read.
    #[must_use]
    pub fn sealed(&self) -> bool {
        self.is_template && !self.allows_connections && self.seal() == Some(&self.row_version)
    }
}

/// What a template holds: each table's row count and a digest of its rows, and a digest per kind
/// of everything `migrate verify`'s catalog reads (tables, columns, constraints, indexes,
/// routines, triggers, views, types, schemas, privileges, owners, comments, row-level security
/// ...), plus default privileges and large objects. A clone is a file copy of the template, so
/// any change made to the template since it was built shows here, named by what changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contents {
    /// `schema.table` -> `<rows>:<md5 of the rows in physical order>`.
    pub data: std::collections::BTreeMap<String, String>,
    /// Kind of object -> digest of every object of that kind (`all default privileges`, every
    /// role's, and `large objects` included).
    pub kinds: std::collections::BTreeMap<String, String>,
}

/// One query, with `search_path` pinned (this runs as the admin): every user table's exact row
/// count and a digest of its rows (read in physical order: no parallel workers, no
/// synchronised scans; a clone is a file copy, so the order is the template's), default
/// privileges and large objects.
const CONTENTS: &str = "
SET LOCAL search_path = pg_catalog, pg_temp;
SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL synchronize_seqscans = off;
WITH rels AS (
    SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT 'table', r.name,
       (xpath('/row/n/text()', q))[1]::text || ':' || coalesce((xpath('/row/h/text()', q))[1]::text, '')
FROM rels r,
     LATERAL query_to_xml(format('SELECT count(*) AS n, md5(coalesce(string_agg(t::text, chr(10)), %L)) AS h FROM ONLY %s t', '', r.name), false, true, '') q
UNION ALL
SELECT 'kind', 'all default privileges',
       md5(coalesce(string_agg(pg_get_userbyid(a.defaclrole) || ' ' || coalesce(n.nspname, '') || ' '
                               || a.defaclobjtype::text || ' ' || grants.list, chr(10) ORDER BY 1), ''))
FROM pg_default_acl a LEFT JOIN pg_namespace n ON n.oid = a.defaclnamespace,
     LATERAL (SELECT string_agg(x.grantor::text || '>' || x.grantee::text || ':' || x.privilege_type || ':' || x.is_grantable::text,
                                ',' ORDER BY x.grantee, x.privilege_type) AS list
              FROM aclexplode(a.defaclacl) x) grants
UNION ALL
SELECT 'kind', 'large objects',
       md5(coalesce(string_agg(m.oid::text || ' ' || pg_get_userbyid(m.lomowner) || ' '
                               || coalesce((SELECT string_agg(x.grantee::text || ':' || x.privilege_type, ',' ORDER BY x.grantee, x.privilege_type)
                                            FROM aclexplode(m.lomacl) x), '')
                               || ' ' || CASE WHEN pg_has_role(current_user, m.lomowner, 'USAGE')
                                                   OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                                              THEN md5(lo_get(m.oid)) ELSE '' END,
                               chr(10) ORDER BY m.oid), ''))
FROM pg_largeobject_metadata m
";

/// The contents fingerprint of the database `client` is in: [`CONTENTS`], and the catalog read
/// with `search_path` pinned, digested per kind.
///
/// # Errors
/// The queries failing.
pub async fn contents(client: &impl tokio_postgres::GenericClient) -> anyhow::Result<Contents> {
    let messages = client
        .simple_query(CONTENTS)
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .context("reading the template's contents")?;
    let mut found = Contents {
        data: std::collections::BTreeMap::new(),
        kinds: std::collections::BTreeMap::new(),
    };
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let name = r.get(1).unwrap_or_default().to_string();
            let value = r.get(2).unwrap_or_default().to_string();
            match r.get(0) {
                Some("table") => found.data.insert(name, value),
                _ => found.kinds.insert(name, value),
            };
        }
    }
    let catalog = crate::schema::catalog::read_pinned(
        client,
        crate::schema::catalog::ReadOptions {
            exclude: &[],
            meta: false,
            platform: false,
        },
    )
    .await
    .context("reading the template's catalog")?;
    let mut kinds: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for ((kind, name), definition) in &catalog.objects {
        let text = kinds.entry(kind.as_str()).or_default();
        let _ = writeln!(text, "{name}\u{1f}{definition}");
    }
    for invalid in &catalog.invalid_indexes {
        let _ = writeln!(kinds.entry("invalid index").or_default(), "{invalid}");
    }
    for (kind, text) in kinds {
        found.kinds.insert(kind.to_string(), checksum(&text));
    }
    Ok(found)
}

/// What differs between the contents a template was built with and a clone's, in words.
#[must_use]
pub fn changes(built: &Contents, now: &Contents) -> Vec<String> {
    let mut out = Vec::new();
    let kinds: std::collections::BTreeSet<&String> =
        built.kinds.keys().chain(now.kinds.keys()).collect();
    for kind in kinds {
        match (built.kinds.get(kind), now.kinds.get(kind)) {
            (Some(a), Some(b)) if a == b => {}
            (None, Some(_)) => out.push(format!(
                "{kind}: there are some now, none when it was built"
            )),
            (Some(_), None) => out.push(format!("{kind}: none now, some when it was built")),
            _ => out.push(format!("{kind}: changed since it was built")),
        }
    }
    let rows = |v: &str| {
        v.split_once(':')
            .map_or(v.to_string(), |(n, _)| n.to_string())
    };
    for (table, now_data) in &now.data {
        match built.data.get(table) {
            Some(was) if was == now_data => {}
            Some(was) if rows(was) != rows(now_data) => out.push(format!(
                "table {table}: {} rows, built with {}",
                rows(now_data),
                rows(was)
            )),
            Some(was) => out.push(format!(
                "table {table}: its rows changed since it was built (still {})",
                rows(was)
            )),
            None => out.push(format!("table {table}: not there when it was built")),
        }
    }
    for table in built.data.keys().filter(|t| !now.data.contains_key(*t)) {
        out.push(format!("table {table}: gone since it was built"));
    }
    out
}

/// Read what is there under `name`.
///
/// # Errors
/// Catalog reads failing.
pub async fn find(client: &Client, name: &str) -> anyhow::Result<Option<Found>> {
    let row = client
        .opt(
            "SELECT datistemplate, pg_get_userbyid(datdba)::text, \
                    shobj_description(oid, 'pg_database'), datallowconn, xmin::text \
             FROM pg_database WHERE datname = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .with_context(|| format!("reading database `{name}`"))?;
    Ok(row.map(|r| {
        let comment: Option<String> = r.get(2);
        Found {
            is_template: r.get(0),
            allows_connections: r.get(3),
            owner: r.get(1),
            row_version: r.get(4),
            fingerprint: comment
                .as_deref()
                .and_then(|c| c.strip_prefix(MARKER))
                .map(|f| f.trim().to_string()),
        }
    }))
}

/// The advisory lock key of template `name` (builds take it exclusive, clones shared).
#[must_use]
pub fn lock_key(name: &str) -> i64 {
    db::advisory::key("template", name)
}

/// Take the template's advisory lock (exclusive to build, shared to clone), polling; held while
/// the returned [`Holder`] lives.
///
/// # Errors
/// When another build holds it longer than `wait`.
pub async fn lock(
    admin: &Target,
    name: &str,
    shared: bool,
    wait: Duration,
) -> anyhow::Result<db::advisory::Holder> {
    db::advisory::Holder::acquire(
        admin,
        lock_key(name),
        shared,
        wait,
        &format!("lock of template `{name}` (it is being built or cloned)"),
    )
    .await
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

/// Create the template database as the admin's own (encoding and locale as the app database
/// would have them), closed to PUBLIC, marked as being built (a crashed build is then recognised
/// as ours and rebuilt).
///
/// # Errors
/// Statement failures.
pub async fn create(client: &Client, name: &str, d: &Database) -> anyhow::Result<()> {
    let ident = db::quote_ident(name);
    let mut sql = format!(
        "CREATE DATABASE {ident} TEMPLATE template0 ENCODING {}",
        db::quote_literal(&d.encoding)
    );
    if let Some(locale) = &d.locale {
        let _ = write!(sql, " LOCALE {}", db::quote_literal(locale));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("creating the template database `{name}`"))?;
    record(client, name, None).await?;
    client
        .batch_execute(&format!("REVOKE ALL ON DATABASE {ident} FROM PUBLIC"))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("closing `{name}` to PUBLIC"))
}

/// What a built template records in its comment: what it was built from, the seal (its row
/// version when `contents` were read, closed) and the contents.
pub struct Record<'a> {
    pub fingerprint: &'a str,
    pub seal: &'a str,
    pub contents: &'a Contents,
}

/// Record what the database is being built from (`None` while building: a crashed build is
/// then recognised as ours and rebuilt), or, once built and closed ([`close`]), its
/// [`Record`]. A comment lives in `pg_shdescription`: writing it keeps the seal.
///
/// # Errors
/// Statement failures.
pub async fn record(client: &Client, name: &str, built: Option<Record<'_>>) -> anyhow::Result<()> {
    let comment = match built {
        None => format!("{MARKER} building"),
        Some(r) => format!(
            "{MARKER} {} seal={} contents={}",
            r.fingerprint,
            r.seal,
            serde_json::to_string(r.contents).unwrap_or_default()
        ),
    };
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            db::quote_ident(name),
            db::quote_literal(&comment)
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("marking `{name}` as a template"))
}

/// Mark a built database as a template and close it to connections, end the sessions still in
/// it (`CREATE DATABASE ... TEMPLATE` needs nobody connected; a pooler keeps server connections
/// open after its clients let go) and wait until they are gone: from here nobody is inside it
/// and nobody can enter it without an `ALTER DATABASE` that breaks the seal.
///
/// # Errors
/// Statement failures; sessions that do not end within 10 s.
pub async fn close(client: &Client, name: &str) -> anyhow::Result<()> {
    let ident = db::quote_ident(name);
    client
        .batch_execute(&format!(
            "ALTER DATABASE {ident} IS_TEMPLATE true; ALTER DATABASE {ident} ALLOW_CONNECTIONS false"
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("closing `{name}` to connections"))?;
    for _ in 0..200 {
        let left: i64 = client
            .one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[(&name, Type::TEXT)],
            )
            .await
            .with_context(|| format!("ending the sessions in `{name}`"))?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow::anyhow!(
        "sessions in `{name}` did not end within 10 s of being terminated; run `aidock-provision template` again"
    ))
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
    let Some(fingerprint) = found.inputs().filter(|_| found.is_template) else {
        anyhow::bail!(
            "database `{name}` is not a finished template aidock-provision built; {rebuild}"
        );
    };
    if found.allows_connections || found.contents().is_none() {
        return Err(error::refused(format!(
            "template `{name}` is open to connections or was built by an earlier version, so what it holds is not what was built; {rebuild} again"
        )));
    }
    if migrations_part(fingerprint) != migrations_part(&self::fingerprint(migrations, "")) {
        anyhow::bail!(
            "template `{name}` is stale: it was built from other migrations than these; {rebuild} again"
        );
    }
    Ok(())
}

/// `CREATE DATABASE ... TEMPLATE` for `d` (the clone is then checked and handed over by
/// [`check_and_hand_over`], and its comment cleared by [`clear_comment`]).
///
/// # Errors
/// A database of that name that exists already; statement failures.
pub async fn create_clone(
    client: &Client,
    template_name: &str,
    d: &Database,
) -> anyhow::Result<Item> {
    let exists = client
        .opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&d.name, Type::TEXT)],
        )
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
    // The admin's until it has been checked and handed over (db::trust): the role gets it last.
    let create = format!(
        "CREATE DATABASE {ident} TEMPLATE {}",
        db::quote_ident(template_name)
    );
    db::create_from_template(client, &create)
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("cloning `{template_name}` into `{}`", d.name))?;
    Ok(Item::new(
        format!("database {}", d.name),
        Outcome::Changed(vec![format!("created from template {template_name}")]),
    ))
}

/// The clone must not inherit the template's marks (its comment), and is closed to PUBLIC at
/// once, as `init` leaves a database.
///
/// # Errors
/// The statement failing.
pub async fn close_clone(client: &Client, d: &Database) -> anyhow::Result<()> {
    let ident = db::quote_ident(&d.name);
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {ident} IS NULL; REVOKE ALL ON DATABASE {ident} FROM PUBLIC"
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .context("clearing the clone's comment and closing it to PUBLIC")
}

/// On the admin's session in a fresh clone (still the admin's): unless the template is sealed
/// ([`Found::sealed`]: nobody has been inside it since its contents were read, so the copy is
/// what was read), compare what was copied with what the template recorded (it may have been
/// changed since); when they agree give every object to `d.owner` (the template may belong to
/// another role). Returns the changes, in words; when there are any nothing was handed over and
/// the caller drops the clone. The caller checks the template's row again after the copy
/// (an `ALTER DATABASE` in between breaks the seal).
///
/// # Errors
/// Statement failures.
pub async fn check_and_hand_over(
    session: &mut CatalogSession,
    template: &Found,
    d: &Database,
) -> anyhow::Result<Vec<String>> {
    if !template.sealed() {
        let tx = session.snapshot().await?;
        let now = contents(&tx).await?;
        let changed = template.contents().map_or_else(
            || vec!["it records no contents".to_string()],
            |built| changes(&built, &now),
        );
        drop(tx);
        if !changed.is_empty() {
            return Ok(changed);
        }
    }
    hand_over(session, template, d).await?;
    Ok(Vec::new())
}

/// On the admin's session in a fresh clone: give every object the template's owner owns to
/// `d.owner` (a clone of a template checked for the whole session, `pool`, needs no check of
/// its own: it is a file copy of what was checked, made under the template's lock).
///
/// # Errors
/// Statement failures.
pub async fn hand_over(
    session: &mut CatalogSession,
    template: &Found,
    d: &Database,
) -> anyhow::Result<()> {
    if template.owner == d.owner {
        return Ok(());
    }
    let tx = session.snapshot().await?;
    let rows = tx
        .rows(
            REASSIGN,
            &[(&template.owner, Type::TEXT), (&d.owner, Type::TEXT)],
        )
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .context("listing the objects to hand over")?;
    drop(tx);
    let statements = rows
        .iter()
        .map(|r| {
            let sql: String = r.get(0);
            AdminDdl::from_owner_statement(&sql)
                .with_context(|| format!("not an ownership change: {sql}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    session
        .run(&statements)
        .await
        .with_context(|| format!("handing the clone's objects to `{}`", d.owner))?;
    Ok(())
}

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
        crate::migrate::from_files([("0001_a.up.sql", text.to_string())], "test")
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
            allows_connections: false,
            owner: "app".into(),
            fingerprint: fp,
            row_version: "812".into(),
        };
        let contents = Contents {
            data: [("public.users".to_string(), "25:abc".to_string())]
                .into_iter()
                .collect(),
            kinds: [("table".to_string(), "def".to_string())]
                .into_iter()
                .collect(),
        };
        let with_contents = |f: String| {
            format!(
                "{f} seal=812 contents={}",
                serde_json::to_string(&contents).expect("json")
            )
        };
        let current = with_contents(fingerprint(&ms, "x"));
        let ok = found(true, Some(current.clone()));
        check_current("t", Some(&ok), &ms).expect("current");
        assert_eq!(ok.contents(), Some(contents.clone()));
        assert_eq!(ok.inputs(), Some(fingerprint(&ms, "x").as_str()));
        assert_eq!(ok.seal(), Some("812"));
        assert!(ok.sealed());
        for unsealed in [
            Found {
                row_version: "813".into(),
                ..ok.clone()
            },
            Found {
                allows_connections: true,
                ..ok.clone()
            },
            Found {
                is_template: false,
                ..ok.clone()
            },
            found(
                true,
                Some(format!("{} contents={{}}", fingerprint(&ms, "x"))),
            ),
        ] {
            assert!(!unsealed.sealed(), "{unsealed:?}");
        }
        let reopened = Found {
            allows_connections: true,
            ..ok.clone()
        };
        for (what, f) in [
            ("does not exist", None),
            ("not a finished", Some(found(false, Some(current.clone())))),
            ("not a finished", Some(found(true, None))),
            ("open to connections", Some(reopened)),
            (
                "stale",
                Some(found(
                    true,
                    Some(with_contents(fingerprint(&migrations("SELECT 2;"), "x"))),
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
        let mut more = contents.clone();
        more.data.insert("public.users".into(), "26:abd".into());
        assert_eq!(
            changes(&contents, &more),
            ["table public.users: 26 rows, built with 25"]
        );
        more.data.insert("public.users".into(), "25:abd".into());
        more.kinds.insert("privileges".into(), "x".into());
        assert_eq!(
            changes(&contents, &more),
            [
                "privileges: there are some now, none when it was built",
                "table public.users: its rows changed since it was built (still 25)"
            ]
        );
    }
}
