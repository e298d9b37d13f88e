//! The app's login role: LOGIN and nothing more, its password sent only as a SCRAM verifier.

use anyhow::Context as _;
use tokio_postgres::error::SqlState;

use super::{Executor, Item, Outcome};
use crate::db::Secret;
use crate::db::sql::Sql as _;
use crate::db::{self, Target};
use tokio_postgres::types::Type;

/// What we require of the role.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    pub name: &'a str,
    pub password: &'a Secret,
    /// Where the password came from (a settings file, a variable), for messages.
    pub password_source: &'a str,
    pub reset: PasswordReset,
    pub connection_limit: i32,
    /// The app database: where the password is probed first (pg_hba must let the app in there).
    pub database: &'a str,
}

/// What `init` does when the role exists and the configured password does not log in (a typo in
/// it, or a password changed elsewhere): setting it breaks every client using the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordReset {
    /// Set it, and say loudly what that does (development).
    #[default]
    SetAndWarn,
    /// Asked for (`init --reset-password`): set it, said as an ordinary change.
    Asked,
    /// Refuse (exit 3) before anything changes: production without `--reset-password`.
    Refuse,
}

/// What we reconcile on an existing role. Privileged attributes are not here: the pre-flight
/// refuses such a role before anything changes ([`super::preflight`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attributes {
    login: bool,
    connection_limit: i32,
    /// `VALID UNTIL` when it lies in the past: every login fails as if the password were wrong.
    expired_at: Option<String>,
}

async fn read(client: &tokio_postgres::Client, name: &str) -> anyhow::Result<Option<Attributes>> {
    let row = client
        .opt(
            "SELECT rolcanlogin, rolconnlimit, \
                    CASE WHEN rolvaliduntil < now() THEN rolvaliduntil::text END \
             FROM pg_roles WHERE rolname = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .with_context(|| format!("reading role `{name}`"))?;
    Ok(row.map(|r| Attributes {
        login: r.get(0),
        connection_limit: r.get(1),
        expired_at: r.get(2),
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
            Ok(()) => Ok(Item::new(object, Outcome::Created)),
            // Another init created it a moment ago: reconcile what it made.
            Err(e) if db::is_concurrent_create(&e) => Box::pin(ensure(exec, spec, admin)).await,
            Err(e) => Err(anyhow::anyhow!(db::describe_error(&e)))
                .with_context(|| format!("creating role `{}`", spec.name)),
        };
    };

    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let mut fixes = Vec::new();
    if !current.login {
        fixes.push("LOGIN".to_string());
        changes.push("granted LOGIN".to_string());
    }
    if current.connection_limit != spec.connection_limit {
        fixes.push(format!("CONNECTION LIMIT {}", spec.connection_limit));
        changes.push(format!(
            "connection limit {} -> {}",
            current.connection_limit, spec.connection_limit
        ));
    }
    if let Some(at) = &current.expired_at {
        // Fixed here rather than by a new password: an expired role rejects every password, so
        // "the password does not work, set it" would repeat on every run.
        fixes.push("VALID UNTIL 'infinity'".to_string());
        changes.push(format!("password had expired ({at}); VALID UNTIL cleared"));
    }
    if !fixes.is_empty() {
        let sql = format!("ALTER ROLE {ident} {}", fixes.join(" "));
        exec.apply(&sql, &sql, &format!("reconciling role `{}`", spec.name))
            .await?;
    }

    // Change the password only when it no longer authenticates, so a repeated init writes
    // nothing. In a dry run a role that cannot log in yet (NOLOGIN, expired) cannot be probed.
    let probe = !exec.dry_run() || (current.login && current.expired_at.is_none());
    if probe {
        match password_works(admin, spec).await? {
            Probe::Works => {}
            Probe::Rejected if spec.reset == PasswordReset::Refuse => {
                return Err(crate::error::refused(format!(
                    "the password in database.password (from {}) does not log in as role `{}`: a typo in it, or the role's password was changed elsewhere. Setting it would make every client that uses the current password fail, so in production init does that only when asked: fix database.password, or run `aidock-provision init --reset-password` (nothing was changed)",
                    spec.password_source, spec.name
                )));
            }
            Probe::Rejected => {
                if spec.reset == PasswordReset::SetAndWarn {
                    notes.push(format!(
                        "the password of role `{}` did not match database.password (from {}), so it was set to it: every client still using the old password now fails to log in. If database.password has a typo, correct it and run init again",
                        spec.name, spec.password_source
                    ));
                }
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
            Probe::Unknown(why) => changes.push(format!("password not checked: {why}")),
        }
    } else {
        changes.push("password: checked once LOGIN and VALID UNTIL are fixed".to_string());
    }
    Ok(Item {
        notes,
        object,
        outcome: if changes.is_empty() {
            Outcome::Exists
        } else {
            Outcome::Changed(changes)
        },
    })
}

/// What a test login as the role said about its password.
enum Probe {
    Works,
    Rejected,
    /// The server refused the login before checking the password (pg_hba, connection limit).
    Unknown(String),
}

/// Try to log in as the role: first on the app database (pg_hba must let the app in there), then
/// on `postgres` and `template1`, which is where pg_hba usually lets every role in.
async fn password_works(admin: &Target, spec: &Spec<'_>) -> anyhow::Result<Probe> {
    let mut refused = Vec::new();
    for dbname in [spec.database, "postgres", "template1"] {
        let target = admin.as_role(spec.name, spec.password, dbname);
        let code = match target.connect_raw().await {
            Ok(_) => return Ok(Probe::Works),
            Err(e) => db::sqlstate(&e).cloned(),
        };
        match code {
            Some(c) if c == SqlState::INVALID_PASSWORD => return Ok(Probe::Rejected),
            // Authentication comes first: a missing database or a revoked CONNECT proves the
            // password.
            Some(c)
                if c == SqlState::INVALID_CATALOG_NAME || c == SqlState::INSUFFICIENT_PRIVILEGE =>
            {
                return Ok(Probe::Works);
            }
            // pg_hba.conf has no entry for this database: try the next one.
            Some(c) if c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                refused.push(dbname);
            }
            other => {
                return Ok(Probe::Unknown(format!(
                    "a test login was refused for another reason ({})",
                    other.map_or_else(|| "no server error".to_string(), |c| c.code().to_string())
                )));
            }
        }
    }
    Ok(Probe::Unknown(format!(
        "pg_hba.conf refused test logins on databases {}",
        refused.join(", ")
    )))
}
