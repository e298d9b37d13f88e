//! The app's database: owned by the role, closed to PUBLIC, with schema `public` owned by the role.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::{AdminRights, Executor, Item, Outcome};
use crate::db;
use crate::db::sql::Sql as _;
use crate::db::trust::{AdminDdl, CatalogSession};
use tokio_postgres::types::Type;

/// What we require of the database.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub encoding: &'a str,
    pub locale: Option<&'a str>,
}

/// Let a non-superuser admin (managed servers) act as the owner: `CREATE DATABASE ... OWNER x`
/// and owner-only statements need membership in `x`.
///
/// # Errors
/// When the grant fails.
pub async fn ensure_membership(
    exec: &mut Executor<'_>,
    spec: &Spec<'_>,
    rights: AdminRights,
) -> anyhow::Result<()> {
    if rights.superuser {
        return Ok(());
    }
    // PostgreSQL 16 split membership into INHERIT and SET; SET is what OWNER needs.
    let privilege = if rights.server_version >= 160_000 {
        "SET"
    } else {
        "MEMBER"
    };
    let row = exec
        .client()
        .opt(
            "SELECT pg_has_role(current_user, r.oid, $2) FROM pg_roles r WHERE r.rolname = $1",
            &[(&spec.owner, Type::TEXT), (&privilege, Type::TEXT)],
        )
        .await
        .context("checking the admin's membership in the owner role")?;
    // No row: dry-run before the role exists; the grant would be needed.
    let member = row.is_some_and(|r| r.get::<_, bool>(0));
    if !member {
        let sql = format!("GRANT {} TO CURRENT_USER", db::quote_ident(spec.owner));
        exec.apply(
            &sql,
            &sql,
            &format!("granting role `{}` to the admin", spec.owner),
        )
        .await?;
    }
    Ok(())
}

/// Create the database, or reconcile its owner; then close it to PUBLIC.
///
/// # Errors
/// When a statement fails for another reason than a concurrent creator.
pub async fn ensure(
    exec: &mut Executor<'_>,
    spec: &Spec<'_>,
    rights: AdminRights,
) -> anyhow::Result<Item> {
    ensure_membership(exec, spec, rights).await?;
    let ident = db::quote_ident(spec.name);
    let owner = db::quote_ident(spec.owner);
    let object = format!("database {}", spec.name);

    let exists = exec
        .client()
        .opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&spec.name, Type::TEXT)],
        )
        .await
        .with_context(|| format!("reading database `{}`", spec.name))?
        .is_some();
    let created = if exists {
        false
    } else {
        let mut sql = format!(
            "CREATE DATABASE {ident} OWNER {owner} TEMPLATE template0 ENCODING {}",
            db::quote_literal(spec.encoding)
        );
        if let Some(locale) = spec.locale {
            let _ = write!(sql, " LOCALE {}", db::quote_literal(locale));
        }
        // CREATE DATABASE cannot run inside a transaction: it is sent alone.
        match exec.run(&sql, &sql).await {
            Ok(()) => true,
            // Another init created it a moment ago.
            Err(e) if db::is_concurrent_create(&e) => false,
            Err(e) => {
                return Err(anyhow::anyhow!(db::describe_error(&e)))
                    .with_context(|| format!("creating database `{}`", spec.name));
            }
        }
    };
    let mut changes = Vec::new();
    if !created {
        let row = exec
            .client()
            .one(
                "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = $1",
                &[(&spec.name, Type::TEXT)],
            )
            .await
            .with_context(|| format!("reading database `{}`", spec.name))?;
        let (current_owner, encoding): (String, String) = (row.get(0), row.get(1));
        if current_owner != spec.owner {
            let sql = format!("ALTER DATABASE {ident} OWNER TO {owner}");
            exec.apply(
                &sql,
                &sql,
                &format!("changing the owner of database `{}`", spec.name),
            )
            .await?;
            changes.push(format!("owner {current_owner} -> {}", spec.owner));
        }
        if !encoding.eq_ignore_ascii_case(spec.encoding) {
            changes.push(format!(
                "note: encoding is {encoding}, not {} (left as is: changing it needs a new database)",
                spec.encoding
            ));
        }
    }

    // PUBLIC gets CONNECT and TEMPORARY by default (a NULL datacl); take them away.
    let public_rights: bool = if created && exec.dry_run() {
        true
    } else {
        exec.client()
            .one(
                "SELECT datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(datacl) a WHERE a.grantee = 0) \
                 FROM pg_database WHERE datname = $1",
                &[(&spec.name, Type::TEXT)],
            )
            .await
            .with_context(|| format!("reading the privileges on database `{}`", spec.name))?
            .get(0)
    };
    if public_rights {
        let sql = format!("REVOKE ALL ON DATABASE {ident} FROM PUBLIC");
        exec.apply(
            &sql,
            &sql,
            &format!("revoking PUBLIC's rights on database `{}`", spec.name),
        )
        .await?;
        if !created {
            changes.push("revoked CONNECT and TEMPORARY from PUBLIC".into());
        }
    }
    Ok(Item {
        notes: Vec::new(),
        object,
        outcome: if created {
            Outcome::Created
        } else if changes.is_empty() {
            Outcome::Exists
        } else {
            Outcome::Changed(changes)
        },
    })
}

/// Schema `public` as found: its owner, whether PUBLIC may create there, and whether the admin
/// belongs to its owner.
#[derive(Debug, Clone)]
pub struct PublicSchema {
    pub owner: String,
    pub public_create: bool,
    pub member_of_owner: bool,
}

/// Read schema `public` of the database `session` is in (catalogs only, as the admin).
///
/// # Errors
/// The read failing.
pub async fn read_public_schema(session: &mut CatalogSession) -> anyhow::Result<PublicSchema> {
    let tx = session.snapshot().await?;
    let row = tx
        .one(
            "SELECT pg_get_userbyid(nspowner)::text, \
                    EXISTS (SELECT 1 FROM aclexplode(nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE'), \
                    pg_has_role(current_user, nspowner, 'MEMBER') \
             FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .context("reading schema `public`")?;
    Ok(PublicSchema {
        owner: row.get(0),
        public_create: row.get(1),
        member_of_owner: row.get(2),
    })
}

/// What `CREATE DATABASE ... TEMPLATE template0` will make of schema `public` (a dry run of a
/// database that does not exist yet), read on the admin's own connection.
///
/// # Errors
/// The read failing.
pub async fn fresh_public_schema(
    client: &tokio_postgres::Client,
    rights: AdminRights,
) -> anyhow::Result<PublicSchema> {
    if rights.server_version >= 150_000 {
        return Ok(PublicSchema {
            owner: "pg_database_owner".into(),
            public_create: false,
            member_of_owner: true,
        });
    }
    let row = client
        .one("SELECT rolname::text FROM pg_roles WHERE oid = 10", &[])
        .await
        .context("reading the bootstrap superuser's name")?;
    Ok(PublicSchema {
        owner: row.get(0),
        public_create: true,
        member_of_owner: rights.superuser,
    })
}

/// Make schema `public` owned by the role and closed to PUBLIC: the report's item and the admin
/// statements that do it (pure; the caller runs them through its `CatalogSession`, or prints
/// them for a dry run).
///
/// Before PostgreSQL 15 a new database's `public` belongs to the bootstrap superuser and PUBLIC
/// may create in it; only a superuser (or a member of that owner) can change either. A managed
/// admin (CREATEDB + CREATEROLE, as on RDS or Cloud SQL) then leaves it as the server allows:
/// the app role creates its tables through PUBLIC's CREATE, which only roles that may connect
/// can use (PUBLIC's CONNECT on the database is revoked), and a note says how to tighten it.
#[must_use]
pub fn plan_schema(
    found: &PublicSchema,
    owner: &str,
    rights: AdminRights,
) -> (Item, Vec<AdminDdl>) {
    let object = "schema public".to_string();
    let quoted = db::quote_ident(owner);
    let may_change = rights.superuser || found.member_of_owner;
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let mut ddl = Vec::new();
    if found.owner != owner {
        if may_change {
            ddl.push(AdminDdl::SchemaOwner {
                schema: "public".into(),
                role: owner.to_string(),
            });
            changes.push(format!("owner {} -> {owner}", found.owner));
        } else {
            notes.push(format!(
                "schema public stays owned by `{}`{}: PostgreSQL {} gives it to the bootstrap superuser, and an admin that is not a superuser cannot take it over. Tables are still created by `{owner}`, and only roles with CONNECT on the database (PUBLIC has none) can reach the schema. To tighten it, as a superuser: ALTER SCHEMA public OWNER TO {quoted}; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                found.owner,
                if found.public_create { " and open to CREATE by PUBLIC" } else { "" },
                rights.server_version / 10_000
            ));
        }
    }
    if found.public_create && (may_change || found.owner == owner) {
        ddl.push(AdminDdl::RevokeSchemaCreate {
            schema: "public".into(),
        });
        changes.push("revoked CREATE from PUBLIC".into());
    }
    let item = Item {
        notes,
        object,
        outcome: if changes.is_empty() {
            Outcome::Exists
        } else {
            Outcome::Changed(changes)
        },
    };
    (item, ddl)
}
