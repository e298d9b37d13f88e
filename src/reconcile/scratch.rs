//! The one scratch database verify, diff and baseline build (issue #41): made from template0
//! as the admin's own and closed to PUBLIC ([`Scratch::create`]), furnished while it is still the
//! admin's with what the live database has that the migrations do not make ([`Source`]: schema
//! public as `init` left it, the platform's schemas, the admin's extensions), checked untouched,
//! handed to the role the migrations run as ([`Scratch::hand_over`]), and dropped on every way
//! out; one a killed run left is dropped by the next ([`drop_stale_scratch_databases`]). From the
//! hand-over on the admin only drops it (`db::trust`).

use anyhow::Context as _;
use tokio_postgres::Client;

use crate::db::sql::Sql as _;
use crate::db::trust::CatalogSession;
use crate::db::{self, Target};
use crate::error;
use crate::schema::catalog;

/// Scratch databases are named `aidock_verify_<12 hex>`.
const SCRATCH_PREFIX: &str = "aidock_verify_";

/// What a scratch database copies from a live one before the migrations replay there: its
/// encoding and locale, schema public's owner and PUBLIC's CREATE, the platform's schemas and the
/// extensions a role other than the app's made. Read on the admin's catalog session.
pub(crate) struct Source {
    pub(crate) locale: [String; 3],
    pub(crate) public: Option<(String, bool)>,
    pub(crate) platform: Option<catalog::Catalog>,
    /// (name, schema, version) of each extension another role made.
    pub(crate) extensions: Vec<(String, String, String)>,
}

impl Source {
    /// Read from the live database `session` is in; `app_role` is the role the migrations run as.
    pub(crate) async fn read(
        session: &mut CatalogSession,
        app_role: &str,
    ) -> anyhow::Result<Source> {
        let tx = session.snapshot().await?;
        let schemas: Vec<String> = tx
            .rows("SELECT nspname::text FROM pg_namespace", &[])
            .await
            .context("reading the live database's schemas")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        crate::schema::scope::check_names(&schemas)?;
        let (locale, public) = live_settings(&tx).await?;
        let platform = if crate::schema::scope::owned().is_empty() {
            None
        } else {
            Some(
                catalog::read_platform(&tx, app_role)
                    .await
                    .context("reading the platform's schemas (outside migrate.schemas)")?,
            )
        };
        let extensions = tx
            .rows(
                "SELECT e.extname::text, n.nspname::text, e.extversion
                 FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                 JOIN pg_roles r ON r.oid = e.extowner
                 WHERE r.rolname <> $1 AND e.extname <> 'plpgsql'
                 ORDER BY e.oid",
                &[(&app_role, tokio_postgres::types::Type::TEXT)],
            )
            .await
            .context("reading the extensions the admin made")?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(Source {
            locale,
            public,
            platform,
            extensions,
        })
    }

    /// A source for databases that start from nothing (`migrate diff` without an app database):
    /// schema public as `init` leaves it, owned by `app_role`.
    pub(crate) fn empty(locale: [String; 3], app_role: &str) -> Source {
        Source {
            locale,
            public: Some((app_role.to_string(), false)),
            platform: None,
            extensions: Vec::new(),
        }
    }
}

/// One scratch database (verify's, diff's), dropped by [`Scratch::drop`], or by the next verify
/// or diff if this process dies first. While it lives, a connection named after it
/// (`application_name`) is open, and beats: it keeps the database's comment at the server's
/// current time every [`HEARTBEAT`], saying whether that connection is a server session of its
/// own. A scratch database whose own session is gone, or that has had no heartbeat for
/// [`STALE_AFTER`] seconds (behind a pooler, where a server connection's name is whichever
/// client last used it), was left by a run that died. No session state, no held-open transaction.
pub(crate) struct Scratch {
    pub(crate) name: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// How often a live scratch database says so.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// After how long without a heartbeat a scratch database is taken for abandoned.
const STALE_AFTER: i64 = 60;

/// The heartbeat's words for "my named connection is a server session of its own".
const OWN_SESSION: &str = ", named session";

impl Scratch {
    /// Create the database from template0 with `locale`, as the admin's own and closed to PUBLIC
    /// (the app's role gets it only from [`Scratch::hand_over`], once the admin is done there:
    /// db::trust), named with the server's clock, and start its heartbeat.
    pub(crate) async fn create(
        admin: &Client,
        admin_target: &Target,
        locale: &[String; 3],
        pool_mode: crate::db::pooler::PoolMode,
    ) -> anyhow::Result<Self> {
        Self::make(admin, admin_target, From::Template0(locale), pool_mode).await
    }

    /// A file copy of the closed template `template` (`CREATE DATABASE ... TEMPLATE`), the
    /// admin's own and closed to PUBLIC like any scratch database: what the template holds is
    /// read there, so the template itself is never opened and its seal holds
    /// (`provision::template`).
    pub async fn copy_of(
        admin: &Client,
        admin_target: &Target,
        template: &str,
        pool_mode: crate::db::pooler::PoolMode,
    ) -> anyhow::Result<Self> {
        Self::make(admin, admin_target, From::Copy(template), pool_mode).await
    }

    async fn make(
        admin: &Client,
        admin_target: &Target,
        from: From<'_>,
        pool_mode: crate::db::pooler::PoolMode,
    ) -> anyhow::Result<Self> {
        let now: i64 = admin
            .one("SELECT extract(epoch FROM now())::bigint", &[])
            .await
            .context("reading the server's clock")?
            .get(0);
        let name = format!("{SCRATCH_PREFIX}{now}_{}", db::random_tag());
        // The heartbeat's connection, opened first and named after the database: while it is
        // connected, the scratch database is alive (a killed run's connection goes with it).
        let beating = admin_target.named(&name).connect().await?;
        let own_session = pool_mode.sessions_hold(&beating).await;
        create_scratch(admin, &name, from).await?;
        let beat = format!(
            "DO $$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', {}, 'aidock-provision scratch database, alive at ' || extract(epoch FROM now())::bigint || {}); END $$",
            db::quote_literal(&name),
            db::quote_literal(if own_session { OWN_SESSION } else { "" })
        );
        let heartbeat = tokio::spawn(async move {
            loop {
                let _ = beating.batch_execute(&beat).await;
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        Ok(Scratch { name, heartbeat })
    }

    /// The admin's session inside the scratch database while it is still the admin's: refused
    /// once it is not, or when another role has made anything in it (db::trust: the admin never
    /// works where the app could have been first).
    pub(crate) async fn admin_session(&self, admin: &Target) -> anyhow::Result<Client> {
        let client = admin
            .clone()
            .pinned()
            .with_dbname(&self.name)
            .connect()
            .await?;
        let row = client
            .one(
                "SELECT d.datdba = r.oid,
                        NOT EXISTS (SELECT 1 FROM pg_shdepend s WHERE s.dbid = d.oid AND s.deptype = 'o'
                                    AND s.refobjid <> r.oid)
                 FROM pg_database d, pg_roles r
                 WHERE d.datname = current_database() AND r.rolname = current_user",
                &[],
            )
            .await
            .context("checking the scratch database is still the admin's")?;
        let (admins, untouched): (bool, bool) = (row.get(0), row.get(1));
        if !admins || !untouched {
            anyhow::bail!(
                "the scratch database `{}` was entered by another role before it was prepared, so it was not used; run the command again (and find out who connects to new databases)",
                self.name
            );
        }
        Ok(client)
    }

    /// Copy into the scratch database, as the admin, what the live database has that the
    /// migrations do not make: schema public's owner and PUBLIC's CREATE as `init` left them, the
    /// platform's schemas (`source.platform`, without what is the app's), and the extensions
    /// another role made.
    pub(crate) async fn furnish(&self, admin: &Target, source: &Source) -> anyhow::Result<()> {
        let client = self.admin_session(admin).await?;
        mirror_public_schema(&client, source.public.as_ref()).await?;
        if let Some(platform) = &source.platform {
            mirror_platform(&client, platform, admin.user(), &self.name).await?;
        }
        mirror_admin_extensions(&client, &source.extensions, &self.name).await
    }

    /// Give the database to the role the migrations run as: from here on the admin only drops it.
    pub(crate) async fn hand_over(&self, admin: &Client, app: &Target) -> anyhow::Result<()> {
        let sql = format!(
            "ALTER DATABASE {} OWNER TO {}",
            db::quote_ident(&self.name),
            db::quote_ident(app.user())
        );
        admin.batch_execute(&sql).await.map_err(|e| {
            if db::sqlstate(&e) == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) {
                role_missing(app.user())
            } else if db::sqlstate(&e) == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                error::usage(format!(
                    "the admin connection may create databases, but not give one to `{app}` (the role the migrations run as): {}. Use an admin that is a superuser or a member of `{app}` (GRANT {app} TO <admin>)",
                    db::describe_error(&e),
                    app = app.user()
                ))
            } else {
                anyhow::anyhow!(db::describe_error(&e))
                    .context(format!("giving the scratch database `{}` to `{}`", self.name, app.user()))
            }
        })
    }

    /// `DROP DATABASE ... WITH (FORCE)`, and stop the heartbeat.
    pub(crate) async fn drop(self, admin: &Client) -> anyhow::Result<()> {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db::quote_ident(&self.name)
            ))
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .with_context(|| format!("dropping the scratch database `{}`", self.name))
    }
}

/// Verify creates a database: the admin needs CREATEDB (or to be a superuser).
pub(crate) async fn require_createdb(client: &Client, admin: &Target) -> anyhow::Result<()> {
    let may: bool = client
        .one(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .context("reading the admin role's attributes")?
        .get(0);
    if may {
        Ok(())
    } else {
        Err(error::usage(format!(
            "migrate verify replays the migrations into a scratch database, and `{}` may not create databases; pass an admin connection that may (--admin-url or AIDOCK_ADMIN_URL, a role with CREATEDB)",
            admin.user()
        )))
    }
}

/// Drop the scratch databases of runs that died without cleaning up: one whose run said its
/// named connection is a session of its own (not through a transaction pooler) and that has no
/// such connection now, or one with no heartbeat (nor, before the first, creation) within
/// [`STALE_AFTER`] seconds, by the server's clock. What this run's own connection goes through
/// does not matter: `pg_stat_activity` shows the server's sessions either way.
pub(crate) async fn drop_stale_scratch_databases(client: &Client) {
    let Ok(rows) = client
        .rows(
            "SELECT d.datname::text, \
                    coalesce(substring(c.comment FROM 'alive at ([0-9]+)'), \
                             substring(d.datname FROM '^aidock_verify_([0-9]+)_'))::bigint, \
                    extract(epoch FROM now())::bigint, \
                    coalesce(c.comment LIKE '%' || $1, false), \
                    EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = d.datname) \
             FROM pg_database d, LATERAL (SELECT shobj_description(d.oid, 'pg_database') AS comment) c \
             WHERE d.datname LIKE 'aidock\\_verify\\_%'",
            &[(&OWN_SESSION, tokio_postgres::types::Type::TEXT)],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let (name, alive, now, own_session, connected): (String, Option<i64>, i64, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // Scratch databases of earlier versions had no timestamp: stale as well.
        if (own_session && !connected) || alive.is_none_or(|at| now - at > STALE_AFTER) {
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    db::quote_ident(&name)
                ))
                .await;
        }
    }
}

/// The live database's encoding and locale, and its schema `public`'s owner and whether PUBLIC
/// may create there (`None` when it has no schema public).
pub(crate) async fn live_settings(
    live: &(impl tokio_postgres::GenericClient + Sync),
) -> anyhow::Result<([String; 3], Option<(String, bool)>)> {
    let row = live
        .one(
            "SELECT pg_encoding_to_char(encoding), datcollate::text, datctype::text FROM pg_database \
             WHERE datname = current_database()",
            &[],
        )
        .await
        .context("reading the live database's encoding and locale")?;
    let locale = [row.get(0), row.get(1), row.get(2)];
    let public = live
        .opt(
            "SELECT pg_get_userbyid(nspowner), \
                    EXISTS (SELECT 1 FROM aclexplode(nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') \
             FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .context("reading the live schema public")?
        .map(|r| (r.get(0), r.get(1)));
    Ok((locale, public))
}

/// `CREATE DATABASE ... TEMPLATE template0` with the live database's encoding and locale, the
/// admin's own; closed to PUBLIC at once, and any session that came in meanwhile ended (the
/// admin's check in [`Scratch::admin_session`] then finds whether it made anything).
/// What a scratch database is made from.
#[derive(Clone, Copy)]
enum From<'a> {
    /// template0, with the live database's encoding and locale.
    Template0(&'a [String; 3]),
    /// A file copy of this (closed) template.
    Copy(&'a str),
}

async fn create_scratch(admin: &Client, scratch: &str, from: From<'_>) -> anyhow::Result<()> {
    let ident = db::quote_ident(scratch);
    let sql = match from {
        From::Template0([encoding, collate, ctype]) => format!(
            "CREATE DATABASE {ident} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            db::quote_literal(encoding),
            db::quote_literal(collate),
            db::quote_literal(ctype)
        ),
        From::Copy(template) => {
            format!(
                "CREATE DATABASE {ident} TEMPLATE {}",
                db::quote_ident(template)
            )
        }
    };
    let created = match from {
        From::Template0(_) => admin.batch_execute(&sql).await,
        From::Copy(_) => db::create_from_template(admin, &sql).await,
    };
    created
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("creating the scratch database `{scratch}`"))?;
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {ident} FROM PUBLIC; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
            db::quote_literal(scratch)
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("closing the scratch database `{scratch}` to PUBLIC"))
}

/// Copy the platform's schemas (those outside `migrate.schemas`: Supabase's `auth`, pg_cron's
/// `cron` ...), as [`catalog::read_platform`] read them on the admin's catalog session, into the
/// scratch database while it is still the admin's, before the migrations run there: they may
/// reference those objects, which no migration makes.
async fn mirror_platform(
    client: &Client,
    platform: &catalog::Catalog,
    admin_role: &str,
    scratch: &str,
) -> anyhow::Result<()> {
    let plan = crate::schema::ddl::plan_with(
        &catalog::Catalog::default(),
        platform,
        admin_role,
        crate::schema::ddl::Options {
            direction: crate::schema::ddl::Direction::Up,
            one_transaction: true,
            guess_renames: false,
            public_privileges: false,
        },
    );
    if plan.is_empty() {
        return Ok(());
    }
    let sql: Vec<String> = [
        crate::schema::ddl::Place::Pre,
        crate::schema::ddl::Place::Main,
        crate::schema::ddl::Place::Post,
    ]
    .into_iter()
    .filter_map(|p| plan.script(p))
    .collect();
    client
        .batch_execute(&format!(
            "BEGIN;\nSET LOCAL search_path = pg_catalog, pg_temp;\n{}\nCOMMIT;",
            sql.join("\n")
        ))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| {
            format!("copying the platform's schemas (outside migrate.schemas) into the scratch database `{scratch}`")
        })
}

/// Create in a scratch database (still the admin's), as the admin, the extensions of the live
/// database that a role other than the app's made (the admin before `init`, a platform): the
/// migrations' own `CREATE EXTENSION IF NOT EXISTS` of them is then a no-op there as it was in
/// the live database, where the app role could not have made them (PostGIS, amcheck: not
/// trusted). Only into schemas the scratch database has (public, a copied platform schema).
async fn mirror_admin_extensions(
    client: &Client,
    extensions: &[(String, String, String)],
    scratch: &str,
) -> anyhow::Result<()> {
    if extensions.is_empty() {
        return Ok(());
    }
    let schemas: Vec<String> = client
        .rows("SELECT nspname::text FROM pg_namespace", &[])
        .await
        .context("reading the scratch database's schemas")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (name, schema, version) in extensions {
        if !schemas.contains(schema) {
            continue;
        }
        client
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}",
                db::quote_ident(name),
                db::quote_ident(schema),
                db::quote_literal(version)
            ))
            .await
            .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
            .with_context(|| {
                format!("creating extension `{name}` (made by the admin in the live database) in the scratch database `{scratch}`")
            })?;
    }
    Ok(())
}

/// Give the scratch database's schema `public` the owner and PUBLIC CREATE right the live one
/// has: `init` (not a migration) set those, and the migrations ran on top of them.
async fn mirror_public_schema(
    client: &Client,
    public: Option<&(String, bool)>,
) -> anyhow::Result<()> {
    // No schema public in the live database: the migrations dropped it, and will on replay.
    let Some((owner, public_create)) = public else {
        return Ok(());
    };
    let grant = if *public_create {
        "GRANT CREATE ON SCHEMA public TO PUBLIC"
    } else {
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC"
    };
    client
        .batch_execute(&format!(
            "ALTER SCHEMA public OWNER TO {}; {grant}",
            db::quote_ident(owner)
        ))
        .await
        .map_err(|e| {
            if db::sqlstate(&e) == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) {
                role_missing(owner)
            } else {
                anyhow::anyhow!(db::describe_error(&e)).context(
                    "preparing schema public in the scratch database as init prepared the live one",
                )
            }
        })
}

/// The role the scratch databases belong to does not exist (exit 2, saying to run `init`).
fn role_missing(role: &str) -> anyhow::Error {
    error::usage(format!(
        "role `{role}` (database.owner) does not exist, and the scratch databases migrate verify, diff and baseline build belong to it: run `aidock-provision init` first"
    ))
}
