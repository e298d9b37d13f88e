//! Pre-flight for `init` and `reset`: read everything they would touch, then decide, before any
//! change, whether they may touch it at all. [`observe`] only reads; [`check`] is pure.
//!
//! The rule (SPEC section 4, "Ownership"): never take over what we did not make. A privileged
//! role, a system or template database, or a database full of someone else's tables is refused
//! with exit 3, and nothing has been changed when the refusal is printed (issue #10).

use anyhow::Context as _;
use tokio_postgres::Client;

use super::AdminRights;
use crate::db::sql::Sql as _;
use crate::db::{self, Target};
use crate::error;
use tokio_postgres::types::Type;

/// Databases this tool never provisions into or drops, whatever the flags.
pub const SYSTEM_DATABASES: [&str; 3] = ["postgres", "template0", "template1"];

/// What the pre-flight found about the app role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleState {
    /// Attributes an app role must not have, by name (`SUPERUSER`, `CREATEDB` ...).
    pub privileges: Vec<&'static str>,
    /// Privileged roles it is a member of.
    pub privileged_memberships: Vec<String>,
    /// What it owns outside the app database ("database x", "3 objects in database y").
    pub owns_elsewhere: Vec<String>,
}

/// What the pre-flight found about the app database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseState {
    pub owner: String,
    pub is_template: bool,
    pub allows_connections: bool,
    /// Whether the admin may hand the database to another owner (superuser, or member of the
    /// current owner).
    pub admin_may_change_owner: bool,
    /// Objects in it that no migration of ours made (empty when our ledger is there).
    pub foreign_objects: Vec<String>,
    /// How many such objects there are in all (`foreign_objects` holds the first few).
    pub foreign_count: i64,
    /// The owner is a login role other than the admin's, and not a superuser: someone's (a
    /// person's, another app's) database, not one an admin made for the app.
    pub owner_is_another_login: bool,
}

/// Everything the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub role: Option<RoleState>,
    pub database: Option<DatabaseState>,
}

/// Which command asks: `reset` drops what `init` would reconcile, so it skips the content check
/// (dropping the data is what it was asked, and confirmed, to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Init,
    Reset,
}

/// Decide whether `init` (or `reset`) may touch database `name` and role `owner`.
///
/// # Errors
/// A refusal (exit 3) naming the object, the reason and what to do instead.
pub fn check(
    name: &str,
    owner: &str,
    observed: &Observed,
    purpose: Purpose,
    take_over: bool,
) -> anyhow::Result<()> {
    if SYSTEM_DATABASES.contains(&name) {
        return Err(error::refused(format!(
            "database `{name}` is a system database; aidock-provision never provisions, reconciles or drops postgres, template0 or template1 (not even with --force); set database.name (AIDOCK__DATABASE__NAME) to the app's own database, e.g. `aidock`"
        )));
    }
    if let Some(role) = &observed.role {
        if !role.privileges.is_empty() {
            let list = role.privileges.join(", ");
            return Err(error::refused(format!(
                "role `{owner}` has {list}: it is not a login-only app role, and aidock-provision will not demote it{}; set database.owner (AIDOCK__DATABASE__OWNER) to the app's own role (a new name is created with LOGIN only), or, if this really is the app's role, remove them yourself: ALTER ROLE {} NO{}",
                if purpose == Purpose::Reset {
                    " or drop it"
                } else {
                    ""
                },
                db::quote_ident(owner),
                role.privileges.join(" NO")
            )));
        }
        if !role.privileged_memberships.is_empty() {
            return Err(error::refused(format!(
                "role `{owner}` is a member of {}: it is not a login-only app role, and aidock-provision will not take it over; set database.owner to the app's own role, or revoke the membership yourself (REVOKE ... FROM {})",
                role.privileged_memberships
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                db::quote_ident(owner)
            )));
        }
        if !role.owns_elsewhere.is_empty() {
            return Err(error::refused(format!(
                "role `{owner}` owns objects outside database `{name}` ({}): it belongs to something else, and aidock-provision will not take it over; set database.owner to the app's own role",
                role.owns_elsewhere.join(", ")
            )));
        }
    }
    let Some(database) = &observed.database else {
        return Ok(());
    };
    if database.is_template {
        return Err(error::refused(format!(
            "database `{name}` is marked as a template (datistemplate): other databases are cloned from it, and aidock-provision will not take it over; set database.name to the app's own database"
        )));
    }
    if !database.allows_connections {
        return Err(error::refused(format!(
            "database `{name}` does not allow connections (datallowconn = false); aidock-provision will not take it over; set database.name to the app's own database"
        )));
    }
    if purpose == Purpose::Init && database.foreign_count > 0 {
        let more = database.foreign_count
            - i64::try_from(database.foreign_objects.len()).unwrap_or(i64::MAX);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(error::refused(format!(
            "database `{name}` holds objects that no aidock-provision migration made ({}{tail}) and has no migration ledger: it was built by other tools (the backend's alembic or create_all, or by hand), and init changes nothing in it. To adopt it with its data, run `aidock-provision migrate baseline` (it compares, and with --reconcile brings the schema to ours in one transaction without losing a row); or set database.name to a new database",
            database.foreign_objects.join(", ")
        )));
    }
    if purpose == Purpose::Init
        && database.owner != owner
        && database.owner_is_another_login
        && !take_over
    {
        return Err(error::refused(format!(
            "database `{name}` exists and is owned by login role `{}`, not by `{owner}` (database.owner): it may be someone's own database, and init would hand it to `{owner}` and close it to everyone else. If it is the app's database, run `aidock-provision init --take-over-database`; otherwise set database.name to the app's own database (nothing was changed)",
            database.owner
        )));
    }
    if database.owner != owner && !database.admin_may_change_owner {
        return Err(error::refused(format!(
            "database `{name}` is owned by `{}`, and the admin role is neither a superuser nor a member of `{}`, so it cannot hand the database to `{owner}`; ask a superuser to run ALTER DATABASE {} OWNER TO {}, then run init again",
            database.owner,
            database.owner,
            db::quote_ident(name),
            db::quote_ident(owner)
        )));
    }
    Ok(())
}

/// Read what [`check`] needs: the role's attributes, memberships and ownerships, the database's
/// flags, and (connecting to it as the admin) whether it holds objects we did not make.
///
/// # Errors
/// Catalog reads failing, or the database refusing the admin's connection.
pub async fn observe(
    client: &Client,
    admin: &Target,
    name: &str,
    owner: &str,
    rights: AdminRights,
    purpose: Purpose,
) -> anyhow::Result<Observed> {
    let role = observe_role(client, name, owner).await?;
    let Some(row) = client
        .opt(
            "SELECT pg_get_userbyid(datdba), datistemplate, datallowconn, \
                    pg_has_role(current_user, datdba, 'MEMBER'), \
                    EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = datdba AND r.rolcanlogin \
                            AND NOT r.rolsuper AND r.rolname <> current_user) \
             FROM pg_database WHERE datname = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .with_context(|| format!("reading database `{name}`"))?
    else {
        return Ok(Observed {
            role,
            database: None,
        });
    };
    let mut database = DatabaseState {
        owner: row.get(0),
        is_template: row.get(1),
        allows_connections: row.get(2),
        admin_may_change_owner: rights.superuser || row.get::<_, bool>(3),
        foreign_objects: Vec::new(),
        foreign_count: 0,
        owner_is_another_login: row.get(4),
    };
    let inspect = purpose == Purpose::Init
        && database.allows_connections
        && !database.is_template
        && !SYSTEM_DATABASES.contains(&name);
    if inspect {
        let mut session = crate::db::trust::CatalogSession::connect(admin, name).await?;
        let snapshot = session.snapshot().await?;
        if let Some(foreign) = crate::migrate::foreign_objects(&snapshot)
            .await
            .with_context(|| format!("listing the objects in database `{name}`"))?
        {
            database.foreign_count = foreign.count;
            database.foreign_objects = foreign.first;
        }
    }
    Ok(Observed {
        role,
        database: Some(database),
    })
}

async fn observe_role(
    client: &Client,
    name: &str,
    owner: &str,
) -> anyhow::Result<Option<RoleState>> {
    let Some(row) = client
        .opt(
            "SELECT oid, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
            &[(&owner, Type::TEXT)],
        )
        .await
        .with_context(|| format!("reading role `{owner}`"))?
    else {
        return Ok(None);
    };
    let oid: u32 = row.get(0);
    let privileges = [
        (1, "SUPERUSER"),
        (2, "CREATEDB"),
        (3, "CREATEROLE"),
        (4, "REPLICATION"),
        (5, "BYPASSRLS"),
    ]
    .into_iter()
    .filter(|(i, _)| row.get::<_, bool>(*i))
    .map(|(_, what)| what)
    .collect();
    let privileged_memberships = client
        .rows(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             WHERE m.member = $1 AND (r.rolsuper OR r.rolcreatedb OR r.rolcreaterole \
                   OR r.rolreplication OR r.rolbypassrls OR r.rolname LIKE 'pg\\_%') \
             ORDER BY 1",
            &[(&oid, Type::OID)],
        )
        .await
        .with_context(|| format!("reading the memberships of role `{owner}`"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Ownership is recorded in pg_shdepend (deptype 'o') for every database's objects and for
    // shared ones (dbid 0: databases, tablespaces). The app database itself, and everything in
    // it, may be the role's.
    let owns_elsewhere = client
        .rows(
            "SELECT CASE WHEN s.dbid = 0 AND s.classid = 'pg_database'::regclass \
                           THEN format('database %s', (SELECT datname FROM pg_database WHERE oid = s.objid)) \
                         WHEN s.dbid = 0 AND s.classid = 'pg_tablespace'::regclass \
                           THEN format('tablespace %s', (SELECT spcname FROM pg_tablespace WHERE oid = s.objid)) \
                         ELSE format('%s object(s) in database %s', count(*) OVER (PARTITION BY s.dbid), d.datname) END \
             FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid \
             WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1 AND s.deptype = 'o' \
               AND s.dbid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = $2) \
               AND NOT (s.dbid = 0 AND s.classid = 'pg_database'::regclass \
                        AND s.objid IS NOT DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = $2))",
            &[(&oid, Type::OID), (&name, Type::TEXT)],
        )
        .await
        .with_context(|| format!("reading what role `{owner}` owns"))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Some(RoleState {
        privileges,
        privileged_memberships,
        owns_elsewhere,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, observed: &Observed) -> String {
        let err = check(name, "aidock", observed, Purpose::Init, false).expect_err("refused");
        assert_eq!(crate::error::exit_code(&err), 3, "{err}");
        err.to_string()
    }

    fn plain_db() -> DatabaseState {
        DatabaseState {
            owner: "aidock".into(),
            allows_connections: true,
            admin_may_change_owner: true,
            ..DatabaseState::default()
        }
    }

    #[test]
    fn nothing_there_yet_is_fine() {
        check(
            "aidock",
            "aidock",
            &Observed::default(),
            Purpose::Init,
            false,
        )
        .expect("fresh");
    }

    #[test]
    fn system_databases_are_refused_even_when_absent() {
        for name in SYSTEM_DATABASES {
            let msg = refused(name, &Observed::default());
            assert!(msg.contains(&format!("`{name}`")), "{msg}");
            assert!(msg.contains("not even with --force"), "{msg}");
        }
    }

    #[test]
    fn privileged_roles_are_refused_with_the_fix() {
        let observed = Observed {
            role: Some(RoleState {
                privileges: vec!["SUPERUSER", "CREATEDB"],
                ..RoleState::default()
            }),
            database: None,
        };
        let msg = refused("aidock", &observed);
        assert!(msg.contains("SUPERUSER, CREATEDB"), "{msg}");
        assert!(msg.contains("NOSUPERUSER NOCREATEDB"), "{msg}");
        let observed = Observed {
            role: Some(RoleState {
                owns_elsewhere: vec!["database other".into()],
                ..RoleState::default()
            }),
            database: None,
        };
        assert!(refused("aidock", &observed).contains("database other"));
        let observed = Observed {
            role: Some(RoleState {
                privileged_memberships: vec!["pg_write_server_files".into()],
                ..RoleState::default()
            }),
            database: None,
        };
        assert!(refused("aidock", &observed).contains("pg_write_server_files"));
    }

    #[test]
    fn templates_closed_and_foreign_databases_are_refused() {
        let template = Observed {
            database: Some(DatabaseState {
                is_template: true,
                ..plain_db()
            }),
            ..Observed::default()
        };
        assert!(refused("aidock", &template).contains("template"));
        let closed = Observed {
            database: Some(DatabaseState {
                allows_connections: false,
                ..plain_db()
            }),
            ..Observed::default()
        };
        assert!(refused("aidock", &closed).contains("datallowconn"));
        let foreign = Observed {
            database: Some(DatabaseState {
                foreign_objects: vec!["table public.roles".into()],
                foreign_count: 9,
                ..plain_db()
            }),
            ..Observed::default()
        };
        let msg = refused("aidock", &foreign);
        assert!(msg.contains("table public.roles and 8 more"), "{msg}");
        assert!(msg.contains("migrate baseline"), "{msg}");
        // reset drops the data it was asked to: the content is no reason to refuse.
        check("aidock", "aidock", &foreign, Purpose::Reset, false).expect("reset may drop it");
    }

    #[test]
    fn the_seed_guides_manual_setup_is_adopted() {
        // createuser aidock; createdb aidock (owned by the admin); GRANT ALL: empty, ours to fix.
        let observed = Observed {
            role: Some(RoleState::default()),
            database: Some(DatabaseState {
                owner: "postgres".into(),
                ..plain_db()
            }),
        };
        check("aidock", "aidock", &observed, Purpose::Init, false).expect("adopted");
        let managed = Observed {
            database: Some(DatabaseState {
                owner: "postgres".into(),
                admin_may_change_owner: false,
                ..plain_db()
            }),
            ..observed
        };
        assert!(refused("aidock", &managed).contains("ALTER DATABASE"));
    }

    #[test]
    fn another_login_roles_database_is_taken_over_only_when_asked() {
        let observed = Observed {
            role: Some(RoleState::default()),
            database: Some(DatabaseState {
                owner: "bob".into(),
                owner_is_another_login: true,
                ..plain_db()
            }),
        };
        let msg = refused("aidock", &observed);
        assert!(
            msg.contains("`bob`") && msg.contains("--take-over-database"),
            "{msg}"
        );
        check("aidock", "aidock", &observed, Purpose::Init, true).expect("asked");
        check("aidock", "aidock", &observed, Purpose::Reset, false).expect("reset drops it");
    }
}
