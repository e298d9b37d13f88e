//! Who runs what: the trust boundary between the admin and the app role (SPEC.md, "Who runs
//! what"; issue #40).
//!
//! The app role owns its database and everything in it, so anything there may be hostile: a
//! schema named after the admin holding a view `users`, a more specific overload of a function
//! or operator our SQL uses (CVE-2018-1058), a view in place of a bookkeeping table, a trigger
//! or a row-level security policy on a table we touch. The rule, held by construction here:
//! **code the app role controls never runs with the admin's rights.**
//!
//! - Every admin session pins `search_path = pg_catalog, pg_temp` from its first statement on
//!   ([`super::Target::pinned`]): no name in the admin's SQL can resolve to an object another
//!   role made.
//! - Inside a database the app role can write, the admin holds a [`CatalogSession`] and nothing
//!   else: reads are read-only snapshots over the system catalogs (the path set again in each
//!   one, so a transaction pooler cannot have lost it), and its only writes are the
//!   [`AdminDdl`] statements, none of which evaluates an expression: ownership and privileges.
//! - Reading or writing the app's relations (data checks, the ledger, the seed record,
//!   `alembic_version`) happens on the app role's own login, never through `SET ROLE` from an
//!   admin session: a function the app controls could `RESET ROLE` and be the admin again.
//!
//! `tests/it/trust.rs` holds it: it plants all of the above as the app role and runs every
//! command that connects as the admin, and it reads `src/` so that no admin connection into
//! another database is opened except through [`CatalogSession::connect`].

use anyhow::Context as _;
use tokio_postgres::{Client, Transaction};

use super::{Target, describe_error, quote_ident};

/// The startup option that pins an admin session's `search_path`.
pub const PIN_OPTION: &str = "-c search_path=pg_catalog,pg_temp";

/// The same, as a statement (where a pooler refuses startup options).
pub const PIN_STATEMENT: &str = "SET search_path = pg_catalog, pg_temp";

/// Whether a connection failed because a pooler does not pass startup options (PgBouncer:
/// "unsupported startup parameter: options").
#[must_use]
pub fn startup_option_refused(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.message().contains("unsupported startup parameter"))
}

/// The admin inside a database the app role can write: catalog reads and [`AdminDdl`] only.
pub struct CatalogSession {
    client: Client,
    dbname: String,
}

impl CatalogSession {
    /// Connect as the admin (pinned, whatever `admin` says) to `dbname`.
    ///
    /// # Errors
    /// The connection failing.
    pub async fn connect(admin: &Target, dbname: &str) -> anyhow::Result<CatalogSession> {
        let client = admin
            .clone()
            .pinned()
            .with_dbname(dbname)
            .connect()
            .await
            .with_context(|| format!("connecting to database `{dbname}` as the admin"))?;
        Ok(CatalogSession {
            client,
            dbname: dbname.to_string(),
        })
    }

    /// The database this session is in.
    #[must_use]
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// A read-only transaction whose `search_path` is `pg_catalog, pg_temp`: for queries over
    /// the system catalogs only (never a relation of the app's).
    ///
    /// # Errors
    /// The transaction failing to start.
    pub async fn snapshot(&mut self) -> anyhow::Result<Transaction<'_>> {
        let tx = self
            .client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| anyhow::anyhow!(describe_error(&e)))
            .context("starting a catalog read")?;
        tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
            .await
            .map_err(|e| anyhow::anyhow!(describe_error(&e)))
            .context("pinning search_path for a catalog read")?;
        Ok(tx)
    }

    /// Run `statements` in one transaction (nothing when empty).
    ///
    /// # Errors
    /// A statement failing (rolled back), naming it.
    pub async fn run(&mut self, statements: &[AdminDdl]) -> anyhow::Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| anyhow::anyhow!(describe_error(&e)))
            .context("starting the admin's transaction")?;
        tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
            .await
            .map_err(|e| anyhow::anyhow!(describe_error(&e)))
            .context("pinning search_path")?;
        for statement in statements {
            let sql = match statement {
                // The diff engine writes names in schema public bare, as the catalog keys them:
                // found through `pg_catalog, public` (pg_catalog first, so a type name in a
                // routine's signature is never the app's). Resolving a name runs nothing.
                AdminDdl::ObjectOwner { .. } => format!(
                    "SET LOCAL search_path = pg_catalog, public; {}; SET LOCAL search_path = pg_catalog, pg_temp",
                    statement.sql()
                ),
                _ => statement.sql(),
            };
            tx.batch_execute(&sql)
                .await
                .map_err(|e| anyhow::anyhow!(describe_error(&e)))
                .with_context(|| format!("running `{sql}` as the admin in `{}`", self.dbname))?;
        }
        tx.commit()
            .await
            .map_err(|e| anyhow::anyhow!(describe_error(&e)))
            .context("committing the admin's transaction")
    }
}

/// The only statements the admin runs inside a database the app role can write. Each changes
/// ownership or privileges and evaluates no expression, so nothing the app controls runs: no
/// function, operator, default, constraint, index expression, trigger or policy is involved.
/// Names are quoted here (raw names in, SQL out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminDdl {
    /// `ALTER SCHEMA s OWNER TO r` (init's schema public; a template clone's schemas).
    SchemaOwner { schema: String, role: String },
    /// `REVOKE CREATE ON SCHEMA s FROM PUBLIC`.
    RevokeSchemaCreate { schema: String },
    /// `GRANT CREATE ON SCHEMA s TO PUBLIC` (undoing the revoke of a reconcile that failed).
    GrantSchemaCreate { schema: String },
    /// `ALTER DATABASE d OWNER TO r`.
    DatabaseOwner { database: String, role: String },
    /// `REVOKE ALL ON DATABASE d FROM PUBLIC`.
    RevokeDatabase { database: String },
    /// `GRANT CONNECT, TEMPORARY ON DATABASE d TO PUBLIC` (PostgreSQL's default; undoing the
    /// revoke of a reconcile that failed).
    GrantDatabase { database: String },
    /// `ALTER <object> OWNER TO r`, with `object` as the diff engine's owner generator (schema::ddl) or a
    /// template's hand-over list writes it from catalog parts (`TABLE public.users`,
    /// `ROUTINE public.f(integer)`): names quoted, no expression.
    ObjectOwner { object: String, role: String },
}

impl AdminDdl {
    /// An owner statement as the diff engine writes it (`ALTER <object> OWNER TO <role>;`),
    /// `None` for anything else.
    #[must_use]
    pub fn from_owner_statement(sql: &str) -> Option<AdminDdl> {
        let sql = sql.trim().strip_suffix(';').unwrap_or(sql.trim());
        let rest = sql.strip_prefix("ALTER ")?;
        let (object, role) = rest.rsplit_once(" OWNER TO ")?;
        let role = super::ident::Ident::parse(role)?;
        Some(AdminDdl::ObjectOwner {
            object: object.to_string(),
            role: role.raw().to_string(),
        })
    }

    /// The statement's text.
    #[must_use]
    pub fn sql(&self) -> String {
        match self {
            AdminDdl::SchemaOwner { schema, role } => format!(
                "ALTER SCHEMA {} OWNER TO {}",
                quote_ident(schema),
                quote_ident(role)
            ),
            AdminDdl::RevokeSchemaCreate { schema } => {
                format!(
                    "REVOKE CREATE ON SCHEMA {} FROM PUBLIC",
                    quote_ident(schema)
                )
            }
            AdminDdl::GrantSchemaCreate { schema } => {
                format!("GRANT CREATE ON SCHEMA {} TO PUBLIC", quote_ident(schema))
            }
            AdminDdl::DatabaseOwner { database, role } => format!(
                "ALTER DATABASE {} OWNER TO {}",
                quote_ident(database),
                quote_ident(role)
            ),
            AdminDdl::RevokeDatabase { database } => {
                format!(
                    "REVOKE ALL ON DATABASE {} FROM PUBLIC",
                    quote_ident(database)
                )
            }
            AdminDdl::GrantDatabase { database } => format!(
                "GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC",
                quote_ident(database)
            ),
            AdminDdl::ObjectOwner { object, role } => {
                format!("ALTER {object} OWNER TO {}", quote_ident(role))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_statements_parse_and_nothing_else_does() {
        let owner =
            AdminDdl::from_owner_statement("ALTER TABLE public.\"a\"\"b\" OWNER TO \"x y\";")
                .expect("an owner statement");
        assert_eq!(
            owner,
            AdminDdl::ObjectOwner {
                object: "TABLE public.\"a\"\"b\"".into(),
                role: "x y".into()
            }
        );
        assert_eq!(
            owner.sql(),
            "ALTER TABLE public.\"a\"\"b\" OWNER TO \"x y\""
        );
        for other in [
            "ALTER TABLE t ADD COLUMN c int",
            "CREATE TABLE t (c int)",
            "ALTER TABLE t OWNER TO x; DROP TABLE t",
        ] {
            assert_eq!(AdminDdl::from_owner_statement(other), None, "{other}");
        }
    }
}
