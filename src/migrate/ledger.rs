//! All bookkeeping SQL: the `aidock_provision.schema_history` ledger, the `alembic_version`
//! stamp, the migration timer, and reading them back. `migrate plan` prints exactly these
//! statements.
//!
//! The ledger (and `seed --dev`'s run records) live in a schema of their own, [`SCHEMA`]: out of
//! reach of the backend's `alembic revision --autogenerate` (which compares schema public only, so
//! it never proposes dropping them) and of every schema comparison of ours. `alembic_version`
//! stays in public, where Alembic reads it. Databases from before keep the ledger in
//! `public.aidock_schema_history` until their next run that writes, which moves it over in its
//! own transaction ([`CREATE`]); reads find it in either place.
//!
//! Reads use the simple query protocol, so they work behind PgBouncer in transaction pooling mode
//! (no named prepared statements that outlive a transaction).

use anyhow::Context as _;
use tokio_postgres::{GenericClient, SimpleQueryMessage};

use super::plan::Applied;
use super::source::Migration;
use crate::db::quote_literal;

/// The schema of our bookkeeping (the ledger and `seed --dev`'s run records).
pub const SCHEMA: &str = "aidock_provision";

/// The ledger table's name, schema-qualified: a script may empty `search_path` (pg_dump does),
/// and the bookkeeping must still find it.
pub const HISTORY: &str = "aidock_provision.schema_history";

/// Where releases before the bookkeeping schema kept the ledger.
pub const OLD_HISTORY: &str = "public.aidock_schema_history";

/// Both ledgers, made if missing (one definition for [`CREATE`] and [`CREATE_IN_PLACE`]).
macro_rules! ledger_tables {
    () => {
        "CREATE TABLE IF NOT EXISTS aidock_provision.schema_history (
    version      bigint PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms bigint NOT NULL,
    applied_by   text NOT NULL DEFAULT current_user
);
CREATE TABLE IF NOT EXISTS public.alembic_version (
    version_num varchar(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
)"
    };
}

/// Creates the bookkeeping schema and both ledgers if missing, moving a ledger from its old place
/// (`public.aidock_schema_history`) first, with every row (run only under the migration lock, and
/// only when there is something to apply: a no-op run only reads). Plain statements, no dynamic
/// SQL: each `IF EXISTS` does nothing once moved.
pub const CREATE: &str = concat!(
    "CREATE SCHEMA IF NOT EXISTS aidock_provision;
ALTER TABLE IF EXISTS public.aidock_schema_history SET SCHEMA aidock_provision;
ALTER TABLE IF EXISTS aidock_provision.aidock_schema_history RENAME TO schema_history;
ALTER INDEX IF EXISTS aidock_provision.aidock_schema_history_pkey RENAME TO schema_history_pkey;
",
    ledger_tables!()
);

/// [`CREATE`] for a database whose ledger is already in its place (or has none yet): without
/// the moves, which would do nothing.
pub const CREATE_IN_PLACE: &str = concat!(
    "CREATE SCHEMA IF NOT EXISTS aidock_provision;\n",
    ledger_tables!()
);

/// The statements that make the ledger: with the move from the old place only when the ledger
/// is there (`legacy`: `None` when not known, as for `migrate plan --offline`).
#[must_use]
pub fn create(legacy: Option<bool>) -> &'static str {
    if legacy == Some(false) {
        CREATE_IN_PLACE
    } else {
        CREATE
    }
}

/// Whether the ledger is still in its place from before the bookkeeping schema.
///
/// # Errors
/// A failing catalog read.
pub async fn is_legacy(client: &impl GenericClient) -> anyhow::Result<bool> {
    Ok(location(client).await? == Some(OLD_HISTORY))
}

/// Undoes whatever session state a script changed (`search_path`, `SET ROLE`, timeouts ...), so
/// the bookkeeping after it runs as the run started; the runner then sets its timeouts again.
pub const RESET_SESSION: &str = "RESET ALL; RESET ROLE";

/// Record an applied migration; `execution_ms` is measured by the runner (`None` prints a
/// placeholder for `migrate plan`).
#[must_use]
pub fn insert(m: &Migration, execution_ms: Option<u128>) -> String {
    let ms = execution_ms.map_or_else(
        || "0 /* execution_ms: measured by the runner */".to_string(),
        |ms| ms.to_string(),
    );
    format!(
        "INSERT INTO {HISTORY} (version, name, checksum, execution_ms) VALUES ({}, {}, {}, {ms})",
        m.version,
        quote_literal(&m.name),
        quote_literal(&m.up.checksum)
    )
}

/// Forget a reverted migration.
#[must_use]
pub fn delete(version: i64) -> String {
    format!("DELETE FROM {HISTORY} WHERE version = {version}")
}

/// Stamp `alembic_version` with the head of the ledger (empty when nothing is applied). The id
/// is [`super::alembic::revision_id`]'s: four digits at least (`lpad` alone would cut 10000 to
/// `1000`).
pub const STAMP_ALEMBIC: &str = "DELETE FROM public.alembic_version;
INSERT INTO public.alembic_version (version_num)
    SELECT lpad(max(version)::text, greatest(4, length(max(version)::text)), '0') FROM aidock_provision.schema_history HAVING max(version) IS NOT NULL";

/// In the app database: whether our ledger is there, and the objects outside the system schemas
/// that are not parts of an extension (how many, and the first few by name).
const FOREIGN_OBJECTS: &str = "
WITH objects AS (
    SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                          WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                          WHEN 'c' THEN 'type' ELSE 'table' END
           || ' ' || format('%I.%I', n.nspname, c.relname) AS what
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
      AND n.nspname NOT IN ('information_schema', 'aidock_provision') AND n.nspname NOT LIKE 'pg\\_%'
      AND /*SCOPE*/
      -- Other migration tools' bookkeeping alone is no schema (the backend's Alembic with no
      -- revision of its own leaves an empty alembic_version; golang-migrate, Flyway, goose,
      -- sqlx and diesel leave theirs): our migrations may run beside it.
      AND NOT (n.nspname = 'public' AND c.relname IN ('alembic_version', 'schema_migrations',
               'flyway_schema_history', 'goose_db_version', 'goose_db_version_id_seq',
               '_sqlx_migrations', '__diesel_schema_migrations'))
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' AND /*SCOPE*/
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'type ' || format_type(t.oid, NULL)
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND /*SCOPE*/
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'schema ' || quote_ident(n.nspname)
    FROM pg_namespace n
    WHERE n.nspname NOT IN ('public', 'information_schema', 'aidock_provision') AND n.nspname NOT LIKE 'pg\\_%'
      AND /*SCOPE*/
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
)
-- The ledger is looked for in pg_class, as the objects are: one snapshot for both (to_regclass
-- reads the relation cache, which may not yet know a table another run just committed).
SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE (n.nspname, c.relname) IN (('aidock_provision', 'schema_history'),
                                                ('public', 'aidock_schema_history'))),
       (SELECT count(*) FROM objects),
       array_to_string(ARRAY(SELECT what FROM objects ORDER BY what LIMIT 6), chr(31))";

/// Objects no migration of ours made, in a database without our ledger.
#[derive(Debug, Clone)]
pub struct Foreign {
    pub count: i64,
    /// The first few, by name (`table public.roles` ...).
    pub first: Vec<String>,
}

impl Foreign {
    /// The first few, and how many more (`table public.roles, ..., and 3 more`).
    #[must_use]
    pub fn listed(&self) -> String {
        let more = self.count - i64::try_from(self.first.len()).unwrap_or(i64::MAX);
        if more > 0 {
            format!("{}, and {more} more", self.first.join(", "))
        } else {
            self.first.join(", ")
        }
    }
}

/// `None` when our ledger is there or the database holds nothing but system and extension
/// objects; else what is there (a schema made by other tools: Alembic, `create_all`, by hand).
pub async fn foreign_objects(client: &impl GenericClient) -> anyhow::Result<Option<Foreign>> {
    // Simple protocol, as every ledger read (PgBouncer in transaction mode).
    // migrate.schemas: objects in the platform's schemas are not foreign.
    if !crate::schema::scope::owned().is_empty() {
        let schemas: Vec<String> =
            simple_rows(client, "SELECT nspname FROM pg_catalog.pg_namespace")
                .await?
                .into_iter()
                .filter_map(|mut r| r.pop())
                .collect();
        crate::schema::scope::check_names(&schemas)?;
    }
    let query = FOREIGN_OBJECTS.replace("/*SCOPE*/", &crate::schema::scope::condition("n.nspname"));
    let rows = simple_rows(client, &query).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let count: i64 = row[1].parse().unwrap_or(0);
    if row[0] == "t" || count == 0 {
        return Ok(None);
    }
    Ok(Some(Foreign {
        count,
        first: row[2].split('\u{1f}').map(str::to_string).collect(),
    }))
}

/// One ledger row with everything `history` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
    pub execution_ms: i64,
    pub applied_by: String,
}

impl Row {
    /// What planning needs.
    #[must_use]
    pub fn applied(&self) -> Applied {
        Applied {
            version: self.version,
            name: self.name.clone(),
            checksum: self.checksum.clone(),
        }
    }
}

/// Where the ledger is ([`HISTORY`], or [`OLD_HISTORY`] until a run moves it); `None` when it does
/// not exist (reading never creates it).
pub async fn location(client: &impl GenericClient) -> anyhow::Result<Option<&'static str>> {
    // A plain query on pg_class, not to_regclass(): that resolves the name without a lock, from
    // a catalog snapshot that can predate another migrator's commit when this transaction began
    // before it; the runner would then see no ledger and apply everything again.
    let rows = simple_rows(
        client,
        "SELECT n.nspname, c.relkind, pg_catalog.pg_get_userbyid(c.relowner), \
                pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') \
                OR c.relowner = (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE (n.nspname, c.relname) IN (('aidock_provision', 'schema_history'), ('public', 'aidock_schema_history')) \
         ORDER BY n.nspname = 'public'",
    )
    .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let table = if row[0] == "public" {
        OLD_HISTORY
    } else {
        HISTORY
    };
    check_bookkeeping(table, &row[1], &row[2], &row[3])?;
    Ok(Some(table))
}

/// A bookkeeping relation (the ledger, `alembic_version`, the seed record) must be the plain
/// table the tool made, owned by the role reading it, one it belongs to, or the database's
/// owner: a view or anything else in its place is tampering, refused before it is read.
///
/// # Errors
/// Another kind of relation, or another owner, named with the fix.
pub fn check_bookkeeping(
    table: &str,
    relkind: &str,
    owner: &str,
    readers_own: &str,
) -> anyhow::Result<()> {
    if relkind != "r" {
        let kind = match relkind {
            "v" => "a view",
            "m" => "a materialized view",
            "p" => "a partitioned table",
            "f" => "a foreign table",
            _ => "not a plain table",
        };
        return Err(crate::error::refused(format!(
            "{table} is {kind}, not the table aidock-provision made, so it was not read; someone replaced it: restore the table (its rows are what `migrate history` shows), or drop it and record the applied migrations again with `aidock-provision migrate baseline`"
        )));
    }
    if readers_own != "t" {
        return Err(crate::error::refused(format!(
            "{table} belongs to role `{owner}`, neither the role reading it nor the database's owner, so it was not read; it is the tool's bookkeeping and belongs to the database's owner: ALTER TABLE {table} OWNER TO <database.owner>"
        )));
    }
    Ok(())
}

/// Whether the ledger exists, in either place (reading never creates it).
pub async fn exists(client: &impl GenericClient) -> anyhow::Result<bool> {
    Ok(location(client).await?.is_some())
}

/// The ledger, oldest first; empty when it does not exist.
pub async fn read(client: &impl GenericClient) -> anyhow::Result<Vec<Row>> {
    let Some(table) = location(client).await? else {
        return Ok(Vec::new());
    };
    let rows = simple_rows(
        client,
        &format!(
            "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), execution_ms, applied_by \
             FROM {table} ORDER BY version"
        ),
    )
    .await?;
    rows.into_iter()
        .map(|r| {
            let num = |i: usize| -> anyhow::Result<i64> {
                r[i].parse()
                    .with_context(|| format!("reading the ledger: `{}` is not a number", r[i]))
            };
            Ok(Row {
                version: num(0)?,
                name: r[1].clone(),
                checksum: r[2].clone(),
                applied_at: r[3].clone(),
                execution_ms: num(4)?,
                applied_by: r[5].clone(),
            })
        })
        .collect()
}

/// The rows of `public.alembic_version` that are none of the ledger's revision ids: Alembic
/// revisions of the backend's own, applied on top of ours (`alembic upgrade head` after
/// adoption). Empty when the ledger or `alembic_version` is absent or the ledger empty (a
/// database not yet ours is `foreign_objects`' business). One statement, so the stamp and the
/// ledger are read in one snapshot (a concurrent `migrate up` commits both together).
///
/// # Errors
/// A relation in `alembic_version`'s place that is not the table we know; connections.
pub async fn foreign_revisions(client: &impl GenericClient) -> anyhow::Result<Vec<String>> {
    let Some(table) = location(client).await? else {
        return Ok(Vec::new());
    };
    // A role that neither owns the database nor the stamp (a read-only login running a no-op
    // `migrate up`) is not the one to judge it: nothing it could do changes the schema.
    let found = simple_rows(
        client,
        "SELECT c.relkind, pg_catalog.pg_get_userbyid(c.relowner), \
                pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') \
                OR c.relowner = (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()), \
                pg_catalog.has_table_privilege(c.oid, 'SELECT') \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = 'alembic_version'",
    )
    .await?;
    match found.first() {
        None => return Ok(Vec::new()),
        Some(row) if row[2] != "t" || row[3] != "t" => return Ok(Vec::new()),
        Some(row) => check_bookkeeping("public.alembic_version", &row[0], &row[1], &row[2])?,
    }
    let rows = simple_rows(
        client,
        &format!(
            "SELECT a.version_num FROM public.alembic_version a \
             WHERE EXISTS (SELECT 1 FROM {table}) \
               AND NOT EXISTS (SELECT 1 FROM {table} h \
                               WHERE lpad(h.version::text, greatest(4, length(h.version::text)), '0') = a.version_num) \
             ORDER BY 1"
        ),
    )
    .await?;
    Ok(rows.into_iter().map(|mut r| r.remove(0)).collect())
}

/// Whether `public.alembic_version` exists, checked as the table we know (a view or another
/// role's relation in its place is refused, [`check_bookkeeping`]).
async fn alembic_table(client: &impl GenericClient) -> anyhow::Result<bool> {
    let found = simple_rows(
        client,
        "SELECT c.relkind, pg_catalog.pg_get_userbyid(c.relowner), \
                pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') \
                OR c.relowner = (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = 'alembic_version'",
    )
    .await?;
    let Some(row) = found.first() else {
        return Ok(false);
    };
    check_bookkeeping("public.alembic_version", &row[0], &row[1], &row[2])?;
    Ok(true)
}

/// The rows of `public.alembic_version`; `None` when the table does not exist.
pub async fn alembic_stamp(client: &impl GenericClient) -> anyhow::Result<Option<Vec<String>>> {
    if !alembic_table(client).await? {
        return Ok(None);
    }
    let rows = simple_rows(
        client,
        "SELECT version_num FROM public.alembic_version ORDER BY 1",
    )
    .await?;
    Ok(Some(rows.into_iter().map(|mut r| r.remove(0)).collect()))
}

/// Rows of a simple query as strings (NULL as empty).
pub async fn simple_rows(
    client: &impl GenericClient,
    sql: &str,
) -> anyhow::Result<Vec<Vec<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .with_context(|| format!("reading the migration ledger ({HISTORY})"))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}
