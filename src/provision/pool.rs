//! `pool` (issue #45): databases per test, made ahead of the tests that need them, for the
//! pytest plugin. One process per test session (per xdist worker) holds the template's shared
//! lock and a lock that says the session is alive, checks the template once (current; and its
//! contents as recorded, on the first clone), makes one login role for the session, and keeps a few clones ready:
//! each a file copy of the checked template, the admin's until its objects are handed to the
//! session's role. A clone is handed out on request and dropped when the test is done, off the
//! test's path. When the plugin goes (stdin closes, even after a SIGKILL of pytest), the
//! session's clones and role are dropped; when the pool itself is killed, the next session's
//! pool sweeps what it left (its alive-lock is free).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use tokio_postgres::Client;

use super::{AdminRights, Database, Executor, database, role, template};
use crate::db::advisory::{self, Holder};
use crate::db::sql::Sql as _;
use crate::db::trust::CatalogSession;
use crate::db::{self, Secret, Target};
use crate::error;
use crate::migrate::Migration;

/// Clone databases are named `aidock_t_<session>_<n>`, the session's role `aidock_s_<session>`.
pub const CLONE_PREFIX: &str = "aidock_t_";
const ROLE_PREFIX: &str = "aidock_s_";

/// One ready clone, as handed to a test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ready {
    pub name: String,
    pub owner: String,
    /// The session role's password (the plugin's only; never printed elsewhere).
    pub password: String,
    /// The clone's URL, password masked (`***`).
    pub url: String,
}

/// A session's pool: what every clone needs, checked once.
pub struct Pool {
    admin: Target,
    template: String,
    found: template::Found,
    rights: AdminRights,
    session: String,
    role: String,
    password: Secret,
    /// A clone's contents were checked against what the template recorded: the template is
    /// locked for the session, so every later clone is a copy of the same (checked on a clone,
    /// never by opening the template, which other sessions read at the same time).
    verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _template_lock: Holder,
    _alive: Holder,
    next: u64,
    /// Clones made and not yet dropped (to drop them all at the end).
    pub live: BTreeSet<String>,
}

fn alive_key(session: &str) -> i64 {
    advisory::key("pool", session)
}

impl Pool {
    /// Take the template's shared lock for the session, check it once, sweep what killed
    /// sessions left, and make the session's role.
    ///
    /// # Errors
    /// A template that is missing, stale (built from other migrations) or changed since it was
    /// built (each with the command that rebuilds it); connections; statements.
    pub async fn open(
        admin: &Target,
        template_name: &str,
        migrations: &[Migration],
        wait: Duration,
    ) -> anyhow::Result<(Pool, Vec<String>)> {
        let client = admin.connect().await?;
        let rights = super::admin_rights(&client, admin).await?;
        let template_lock = template::lock(admin, template_name, true, wait).await?;
        let found = template::find(&client, template_name).await?;
        template::check_current(template_name, found.as_ref(), migrations)?;
        let found = found.expect("checked above");
        if found.contents().is_none() {
            return Err(error::refused(format!(
                "template `{template_name}` records no contents (built by an older release); rebuild it with `aidock-provision template`"
            )));
        }
        let swept = sweep(&client).await?;
        let session = hex_token(8);
        let alive = Holder::acquire(
            admin,
            alive_key(&session),
            false,
            wait,
            "lock that keeps the pool's session alive",
        )
        .await?;
        let role = format!("{ROLE_PREFIX}{session}");
        let password = Secret::new(hex_token(16));
        let mut exec = Executor::new(&client, false, None);
        let spec = role::Spec {
            name: &role,
            password: &password,
            password_source: "the pool (random, per session)",
            reset: role::PasswordReset::Asked,
            connection_limit: -1,
            database: "postgres",
        };
        role::ensure(&mut exec, &spec, admin).await?;
        let membership = database::Spec {
            name: "",
            owner: &role,
            encoding: "",
            locale: None,
        };
        database::ensure_membership(&mut exec, &membership, rights).await?;
        Ok((
            Pool {
                admin: admin.clone(),
                template: template_name.to_string(),
                found,
                rights,
                session,
                role,
                password,
                verified: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
                _template_lock: template_lock,
                _alive: alive,
                next: 0,
                live: BTreeSet::new(),
            },
            swept,
        ))
    }

    /// The next clone's name (reserved; [`Pool::make`] makes it).
    pub fn reserve(&mut self) -> String {
        self.next += 1;
        let name = format!("{CLONE_PREFIX}{}_{}", self.session, self.next);
        self.live.insert(name.clone());
        name
    }

    /// What [`make`] needs, to run beside the pool's own work.
    #[must_use]
    pub fn maker(&self) -> Maker {
        Maker {
            admin: self.admin.clone(),
            template: self.template.clone(),
            found: self.found.clone(),
            rights: self.rights,
            role: self.role.clone(),
            password: self.password.clone(),
            verified: self.verified.clone(),
        }
    }

    /// Drop every clone still there and the session's role; the locks go with the pool.
    ///
    /// # Errors
    /// Connections; statements (what could not be dropped is said; the next session sweeps it).
    pub async fn close(self) -> anyhow::Result<()> {
        let client = self.admin.connect().await?;
        let mut failed = Vec::new();
        for name in &self.live {
            if let Err(e) = drop_clone(&client, name).await {
                failed.push(format!("{name}: {e:#}"));
            }
        }
        if let Err(e) = drop_role(&client, &self.role).await {
            failed.push(format!("role {}: {e:#}", self.role));
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "could not drop (the next session's pool drops them): {}",
                failed.join("; ")
            )
        }
    }
}

/// What one clone needs, owned (made in a task of its own, on connections of its own).
#[derive(Clone)]
pub struct Maker {
    admin: Target,
    template: String,
    found: template::Found,
    rights: AdminRights,
    role: String,
    password: Secret,
    verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Maker {
    /// Make clone `name`: a file copy of the template, the admin's until its objects and schema
    /// public are the session role's, closed to PUBLIC, then the role's.
    ///
    /// # Errors
    /// Connections and statements; what was made is dropped.
    pub async fn make(&self, name: &str) -> anyhow::Result<Ready> {
        let client = self.admin.connect().await?;
        let d = Database {
            name: name.to_string(),
            owner: self.role.clone(),
            password: self.password.clone(),
            password_source: String::new(),
            connection_limit: -1,
            encoding: String::new(),
            locale: None,
            password_reset: role::PasswordReset::Asked,
            take_over: false,
        };
        let made = async {
            template::create_clone(&client, &self.template, &d).await?;
            template::close_clone(&client, &d).await?;
            // Read after the copy: the template's row as the session found it means nobody
            // altered (opened) it before the copy was made.
            let untouched = template::find(&client, &self.template)
                .await?
                .is_some_and(|f| {
                    f.fingerprint == self.found.fingerprint
                        && f.row_version == self.found.row_version
                });
            let mut session = CatalogSession::connect(&self.admin, name).await?;
            if untouched
                && (self.found.sealed() || self.verified.load(std::sync::atomic::Ordering::Acquire))
            {
                template::hand_over(&mut session, &self.found, &d).await?;
            } else {
                // Altered since the session began (or never sealed): this copy is read and
                // compared with what the template recorded.
                let mut recorded = self.found.clone();
                if !untouched {
                    recorded.row_version.clear();
                }
                let changed = template::check_and_hand_over(&mut session, &recorded, &d).await?;
                if !changed.is_empty() {
                    return Err(error::refused(format!(
                        "template `{}` changed since it was built, so no clone is made from it:\n  {}\nrebuild it with `aidock-provision template` (same --dev flags)",
                        self.template,
                        changed.join("\n  ")
                    )));
                }
                if untouched {
                    self.verified
                        .store(true, std::sync::atomic::Ordering::Release);
                }
            }
            let public = database::read_public_schema(&mut session).await?;
            let (_, ddl) = database::plan_schema(&public, &self.role, self.rights);
            session.run(&ddl).await?;
            drop(session);
            client
                .batch_execute(&format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    db::quote_ident(name),
                    db::quote_ident(&self.role)
                ))
                .await
                .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
                .with_context(|| format!("giving `{name}` to `{}`", self.role))?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = made {
            let _ = drop_clone(&client, name).await;
            return Err(e.context(format!("making clone `{name}`")));
        }
        Ok(Ready {
            name: name.to_string(),
            owner: self.role.clone(),
            password: self.password.expose().to_string(),
            url: self
                .admin
                .as_role(&self.role, &self.password, name)
                .describe(),
        })
    }

    /// Drop clone `name` (already gone is fine).
    ///
    /// # Errors
    /// Connections; the statement.
    pub async fn drop(&self, name: &str) -> anyhow::Result<()> {
        let client = self.admin.connect().await?;
        drop_clone(&client, name).await
    }
}

async fn drop_clone(client: &Client, name: &str) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db::quote_ident(name)
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("dropping clone `{name}`"))
}

async fn drop_role(client: &Client, role: &str) -> anyhow::Result<()> {
    client
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", db::quote_ident(role)))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("dropping role `{role}`"))
}

/// Drop the clones and roles of pool sessions that are gone (their alive-lock is free: the
/// process was killed); returns what was dropped.
///
/// # Errors
/// Reading the catalogs; a drop failing.
async fn sweep(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .rows(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'aidock\\_t\\_%' \
             UNION ALL SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'aidock\\_s\\_%'",
            &[],
        )
        .await
        .context("looking for what killed pool sessions left")?;
    let mut dropped = Vec::new();
    let mut dead: Vec<(String, bool)> = Vec::new();
    for row in &rows {
        let name: String = row.get(0);
        let (is_role, rest) = match (
            name.strip_prefix(ROLE_PREFIX),
            name.strip_prefix(CLONE_PREFIX),
        ) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => continue,
        };
        // `<16 hex>` (a role) or `<16 hex>_<n>` (a clone); other names are not the pool's.
        let session = rest.split('_').next().unwrap_or_default();
        if session.len() != 16 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if !is_role && !rest[16..].starts_with('_') {
            continue;
        }
        if advisory::is_free(client, alive_key(session)).await? {
            dead.push((name, is_role));
        }
    }
    // Databases first: a role that owns one cannot go.
    dead.sort_by_key(|(_, is_role)| *is_role);
    for (name, is_role) in dead {
        if is_role {
            drop_role(client, &name).await?;
        } else {
            drop_clone(client, &name).await?;
        }
        dropped.push(name);
    }
    Ok(dropped)
}

fn hex_token(bytes: usize) -> String {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{:02x}", rng.random::<u8>()));
    }
    out
}

/// Whether `name` is one of the pool's clone names (for messages and the plugin's checks).
#[must_use]
pub fn is_clone_name(name: &str) -> bool {
    name.starts_with(CLONE_PREFIX)
}
