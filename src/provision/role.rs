//! The app's login role: LOGIN and nothing more, its password sent only as a SCRAM verifier.

use anyhow::Context as _;
use tokio_postgres::error::SqlState;

use super::{Executor, Item, Outcome};
use crate::db::{self, Target};
use crate::settings::Secret;

/// What we require of the role.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub name: &'a str,
    pub password: &'a Secret,
    pub connection_limit: i32,
}

/// The attributes we own; everything must be false except LOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attributes {
    superuser: bool,
    createdb: bool,
    createrole: bool,
    login: bool,
    replication: bool,
    bypassrls: bool,
    connection_limit: i32,
}

async fn read(client: &tokio_postgres::Client, name: &str) -> anyhow::Result<Option<Attributes>> {
    let row = client
        .query_opt(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit \
             FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .with_context(|| format!("reading role `{name}`"))?;
    Ok(row.map(|r| Attributes {
        superuser: r.get(0),
        createdb: r.get(1),
        createrole: r.get(2),
        login: r.get(3),
        replication: r.get(4),
        bypassrls: r.get(5),
        connection_limit: r.get(6),
    }))
}

/// `PASSWORD 'SCRAM-SHA-256$...'`: the verifier is computed here, so the clear text never reaches
/// the server (nor its logs or pg_stat_statements). Printed statements say `PASSWORD '***'`.
fn password_clause(password: &Secret) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    format!("PASSWORD {}", db::quote_literal(&verifier))
}

/// Create the role, or reconcile its attributes and password.
///
/// # Errors
/// When a statement fails for another reason than a concurrent creator.
pub async fn ensure(
    exec: &mut Executor<'_>,
    spec: &Spec<'_>,
    admin: &Target,
) -> anyhow::Result<Item> {
    let ident = db::quote_ident(spec.name);
    let object = format!("role {}", spec.name);
    let client = exec.client();
    let Some(current) = read(client, spec.name).await? else {
        let attrs = format!(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {}",
            spec.connection_limit
        );
        let sql = format!(
            "CREATE ROLE {ident} {attrs} {}",
            password_clause(spec.password)
        );
        let shown = format!("CREATE ROLE {ident} {attrs} PASSWORD '***'");
        return match exec.run(&sql, &shown).await {
            Ok(()) => Ok(Item {
                object,
                outcome: Outcome::Created,
            }),
            // Another init created it a moment ago: reconcile what it made.
            Err(e) if db::is_concurrent_create(&e) => Box::pin(ensure(exec, spec, admin)).await,
            Err(e) => Err(anyhow::anyhow!(db::describe_error(&e)))
                .with_context(|| format!("creating role `{}`", spec.name)),
        };
    };

    let mut changes = Vec::new();
    let mut fixes = Vec::new();
    for (wrong, fix, what) in [
        (!current.login, "LOGIN", "granted LOGIN"),
        (current.superuser, "NOSUPERUSER", "removed SUPERUSER"),
        (current.createdb, "NOCREATEDB", "removed CREATEDB"),
        (current.createrole, "NOCREATEROLE", "removed CREATEROLE"),
        (current.replication, "NOREPLICATION", "removed REPLICATION"),
        (current.bypassrls, "NOBYPASSRLS", "removed BYPASSRLS"),
    ] {
        if wrong {
            fixes.push(fix.to_string());
            changes.push(what.to_string());
        }
    }
    if current.connection_limit != spec.connection_limit {
        fixes.push(format!("CONNECTION LIMIT {}", spec.connection_limit));
        changes.push(format!(
            "connection limit {} -> {}",
            current.connection_limit, spec.connection_limit
        ));
    }
    if !fixes.is_empty() {
        let sql = format!("ALTER ROLE {ident} {}", fixes.join(" "));
        exec.apply(&sql, &sql, &format!("reconciling role `{}`", spec.name))
            .await?;
    }

    // Change the password only when it no longer authenticates, so a repeated init writes nothing.
    if !exec.dry_run() || current.login {
        match password_works(admin, spec).await? {
            Some(true) => {}
            Some(false) => {
                let sql = format!("ALTER ROLE {ident} {}", password_clause(spec.password));
                let shown = format!("ALTER ROLE {ident} PASSWORD '***'");
                exec.apply(
                    &sql,
                    &shown,
                    &format!("setting the password of role `{}`", spec.name),
                )
                .await?;
                changes.push("password updated".to_string());
            }
            None => changes.push(
                "password not checked (the server refused a test login for another reason)"
                    .to_string(),
            ),
        }
    }
    Ok(Item {
        object,
        outcome: if changes.is_empty() {
            Outcome::Exists
        } else {
            Outcome::Changed(changes)
        },
    })
}

/// Try to log in as the role: `Some(false)` when the password is rejected, `None` when the login
/// failed for an unrelated reason (pg_hba, connection limit).
async fn password_works(admin: &Target, spec: &Spec<'_>) -> anyhow::Result<Option<bool>> {
    // The `postgres` database is where every role may connect by default; its absence or a
    // revoked CONNECT still proves the password (authentication comes first).
    let target = admin.as_role(spec.name, spec.password, "postgres");
    match target.connect_raw().await {
        Ok(_) => Ok(Some(true)),
        Err(e) => match db::sqlstate(&e) {
            Some(c) if *c == SqlState::INVALID_PASSWORD => Ok(Some(false)),
            Some(c)
                if *c == SqlState::INVALID_CATALOG_NAME
                    || *c == SqlState::INSUFFICIENT_PRIVILEGE =>
            {
                Ok(Some(true))
            }
            _ => Ok(None),
        },
    }
}
