//! `init` never takes over what it did not make, and production guards cannot be switched off
//! (issue #10): every refusal is checked against the catalog, not only the exit code.

use crate::support::{TestDb, cluster, connect, expect_exit, run_ok, scratch_dir, stderr, with_db};

/// Everything about a role and a database that a refused `init` must leave exactly as it was.
async fn snapshot(admin: &tokio_postgres::Client, role: &str, db: &str) -> String {
    let row = admin
        .query_one(
            "SELECT (SELECT format('%s super=%s createdb=%s createrole=%s login=%s repl=%s bypassrls=%s limit=%s until=%s pw=%s', \
                            rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls, \
                            rolconnlimit, rolvaliduntil, md5(coalesce(rolpassword, ''))) \
                     FROM pg_authid WHERE rolname = $1), \
                    (SELECT format('%s owner=%s acl=%s template=%s allowconn=%s', datname, pg_get_userbyid(datdba), \
                            datacl, datistemplate, datallowconn) FROM pg_database WHERE datname = $2)",
            &[&role, &db],
        )
        .await
        .expect("snapshot");
    let role: Option<String> = row.get(0);
    let db: Option<String> = row.get(1);
    format!("{role:?}\n{db:?}")
}

/// Tables, schemas and the owner and ACL of schema public inside `db` (as the superuser).
async fn contents(db: &str) -> String {
    let client = connect(&with_db(&cluster().admin_url, db)).await;
    let row = client
        .query_one(
            "SELECT coalesce(string_agg(format('%I.%I', n.nspname, c.relname), ',' ORDER BY 1, 2), ''), \
                    (SELECT format('%s %s', pg_get_userbyid(nspowner), nspacl) FROM pg_namespace WHERE nspname = 'public') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'",
            &[],
        )
        .await
        .expect("contents");
    format!("{} | {}", row.get::<_, String>(0), row.get::<_, String>(1))
}

/// Run statements one by one (CREATE DATABASE cannot share a multi-statement batch).
async fn each(client: &tokio_postgres::Client, statements: &[String]) {
    for sql in statements {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn skip_external() -> bool {
    cluster().port == 0
}

#[tokio::test]
async fn system_databases_and_the_bootstrap_superuser_are_never_touched() {
    let t = TestDb::new("sysdb");
    let admin = t.admin_postgres().await;
    let before = snapshot(&admin, "postgres", "postgres").await;
    let content_before = contents("postgres").await;
    for (name, dry) in [
        ("postgres", false),
        ("postgres", true),
        ("template1", false),
        ("template1", true),
        ("template0", false),
    ] {
        let mut cmd = t.cmd();
        cmd.env("AIDOCK__DATABASE__NAME", name)
            .env("AIDOCK__DATABASE__OWNER", "postgres")
            .arg("init");
        if dry {
            cmd.arg("--dry-run");
        }
        let out = expect_exit(&mut cmd, 3);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("database `{name}` is a system database")),
            "{err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "nothing planned"
        );
    }
    // A role of its own on a system database is refused just the same, and reset too.
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK__DATABASE__NAME", "postgres")
            .arg("init"),
        3,
    );
    assert!(stderr(&out).contains("system database"), "{}", stderr(&out));
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK__DATABASE__NAME", "template1")
            .args(["reset", "--yes", "--force"]),
        3,
    );
    assert!(
        stderr(&out).contains("not even with --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&admin, "postgres", "postgres").await, before);
    assert!(before.contains("super=t "), "{before}");
    assert_eq!(contents("postgres").await, content_before);
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&t.name],
        )
        .await
        .expect("roles")
        .get(0);
    assert_eq!(roles, 0, "not even the role was created");
}

#[tokio::test]
async fn an_existing_superuser_and_its_database_are_refused_untouched() {
    if skip_external() {
        return;
    }
    let t = TestDb::new("dba");
    let admin = t.admin_postgres().await;
    let dba = format!("{}_dba", t.name);
    each(
        &admin,
        &[
            format!("CREATE ROLE \"{dba}\" LOGIN SUPERUSER CREATEDB PASSWORD 'dba-secret'"),
            format!("CREATE DATABASE \"{}\" OWNER \"{dba}\"", t.name),
        ],
    )
    .await;
    let victim = connect(&with_db(&t.admin_url, &t.name)).await;
    victim
        .batch_execute("CREATE TABLE payroll (id int PRIMARY KEY, amount numeric); INSERT INTO payroll VALUES (1, 100)")
        .await
        .expect("the dba's own table");
    drop(victim);
    let before = snapshot(&admin, &dba, &t.name).await;
    let content_before = contents(&t.name).await;
    for args in [
        &["init"][..],
        &["init", "--dry-run"],
        &["init", "--no-migrate"],
    ] {
        let out = expect_exit(
            t.cmd()
                .env("AIDOCK__DATABASE__OWNER", &dba)
                .env("AIDOCK__DATABASE__PASSWORD", "replaced-by-init")
                .args(args),
            3,
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!("role `{dba}` has SUPERUSER, CREATEDB")),
            "{err}"
        );
        assert!(err.contains("database.owner"), "says what to do: {err}");
    }
    assert_eq!(
        snapshot(&admin, &dba, &t.name).await,
        before,
        "role and database unchanged"
    );
    assert_eq!(
        contents(&t.name).await,
        content_before,
        "no tables added, public untouched"
    );
    // The old password still logs in.
    connect(&format!(
        "postgresql://{dba}:dba-secret@127.0.0.1:{}/{}",
        cluster().port,
        t.name
    ))
    .await;

    // A plain role that owns a database elsewhere, or has CREATEDB, is not ours either.
    let other = format!("{}_other", t.name);
    let plain = format!("{}_plain", t.name);
    each(
        &admin,
        &[
            format!("CREATE ROLE \"{plain}\" LOGIN PASSWORD 'p'"),
            format!("CREATE DATABASE \"{other}\" OWNER \"{plain}\""),
        ],
    )
    .await;
    let fresh_db = format!("{}_new", t.name);
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK__DATABASE__NAME", &fresh_db)
            .env("AIDOCK__DATABASE__OWNER", &plain)
            .arg("init"),
        3,
    );
    assert!(
        stderr(&out).contains(&format!(
            "owns objects outside database `{fresh_db}` (database {other})"
        )),
        "{}",
        stderr(&out)
    );
    admin
        .batch_execute(&format!("ALTER ROLE \"{plain}\" CREATEDB"))
        .await
        .expect("createdb");
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK__DATABASE__NAME", &fresh_db)
            .env("AIDOCK__DATABASE__OWNER", &plain)
            .arg("init"),
        3,
    );
    assert!(stderr(&out).contains("has CREATEDB"), "{}", stderr(&out));
    let created: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&fresh_db],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(created, 0, "a refused init created no database");
}

#[tokio::test]
async fn templates_closed_and_foreign_databases_are_refused_untouched() {
    let t = TestDb::new("foreign");
    let admin = t.admin_postgres().await;
    // A database made by other tools (the backend's create_all), owned by the app role.
    each(
        &admin,
        &[
            format!("CREATE ROLE \"{}\" LOGIN PASSWORD '{}'", t.name, t.password),
            format!("CREATE DATABASE \"{n}\" OWNER \"{n}\"", n = t.name),
        ],
    )
    .await;
    let app = connect(&t.app_url()).await;
    app.batch_execute(
        "CREATE TABLE roles (id serial PRIMARY KEY, name varchar(50)); \
         CREATE TABLE users (id serial PRIMARY KEY, email varchar(255)); \
         INSERT INTO roles (name) VALUES ('admin'); \
         CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); \
         INSERT INTO alembic_version VALUES ('1a2b3c4d5e6f')",
    )
    .await
    .expect("foreign schema");
    drop(app);
    let before = snapshot(&admin, &t.name, &t.name).await;
    let content_before = contents(&t.name).await;
    for args in [&["init"][..], &["init", "--dry-run"]] {
        let out = expect_exit(t.cmd().args(args), 3);
        let err = stderr(&out);
        assert!(err.contains("table public.roles"), "{err}");
        assert!(err.contains("migrate baseline"), "{err}");
    }
    assert_eq!(snapshot(&admin, &t.name, &t.name).await, before);
    assert_eq!(contents(&t.name).await, content_before);
    assert!(
        before.contains(" acl= "),
        "PUBLIC still connects (default ACL): {before}"
    );

    // A template, and a database closed to connections.
    admin
        .batch_execute(&format!("ALTER DATABASE \"{}\" IS_TEMPLATE true", t.name))
        .await
        .expect("template");
    let out = expect_exit(t.cmd().arg("init"), 3);
    assert!(
        stderr(&out).contains("marked as a template"),
        "{}",
        stderr(&out)
    );
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{n}\" IS_TEMPLATE false; ALTER DATABASE \"{n}\" ALLOW_CONNECTIONS false",
            n = t.name
        ))
        .await
        .expect("closed");
    let before = snapshot(&admin, &t.name, &t.name).await;
    let out = expect_exit(t.cmd().args(["init", "--dry-run"]), 3);
    assert!(stderr(&out).contains("datallowconn"), "{}", stderr(&out));
    assert_eq!(snapshot(&admin, &t.name, &t.name).await, before);
}

#[tokio::test]
async fn the_seed_guides_manual_setup_is_adopted_and_reconciled() {
    let t = TestDb::new("guide");
    let admin = t.admin_postgres().await;
    // createuser aidock; createdb aidock; ALTER USER aidock WITH PASSWORD ...; GRANT ALL ...
    let n = &t.name;
    each(
        &admin,
        &[
            format!("CREATE ROLE \"{n}\" LOGIN PASSWORD 'old-guide-password'"),
            format!("CREATE DATABASE \"{n}\""),
            format!("GRANT ALL PRIVILEGES ON DATABASE \"{n}\" TO \"{n}\""),
        ],
    )
    .await;
    let out = run_ok(t.cmd().arg("init"));
    assert!(out.contains("owner postgres ->"), "{out}");
    assert!(out.contains("password updated"), "{out}");
    assert!(out.contains("applied 0001"), "{out}");
    let row = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba), EXISTS (SELECT 1 FROM aclexplode(datacl) a WHERE a.grantee = 0) \
             FROM pg_database WHERE datname = $1",
            &[&t.name],
        )
        .await
        .expect("db");
    assert_eq!(row.get::<_, String>(0), t.name);
    assert!(!row.get::<_, bool>(1), "PUBLIC's CONNECT revoked");
    connect(&t.app_url()).await;
    let again = run_ok(t.cmd().arg("init"));
    assert!(again.contains("nothing to change"), "{again}");
}

#[tokio::test]
async fn passwords_expiry_probes_and_empty_passwords() {
    if skip_external() {
        return;
    }
    let t = TestDb::new("pw");
    run_ok(t.cmd().args(["init", "--no-migrate"]));
    let admin = t.admin_postgres().await;

    // VALID UNTIL in the past: reported and fixed once, not "password updated" on every run.
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{}\" VALID UNTIL '2001-01-01'",
            t.name
        ))
        .await
        .expect("expire");
    let out = run_ok(t.cmd().args(["init", "--no-migrate"]));
    assert!(out.contains("password had expired"), "{out}");
    assert!(!out.contains("password updated"), "{out}");
    connect(&t.app_url()).await;
    assert!(run_ok(t.cmd().args(["init", "--no-migrate"])).contains("nothing to change"));

    // pg_hba refuses the role on `postgres` and `template1`: the app database proves the
    // password, so a changed password is applied (and the old one stops working).
    let hba: String = admin
        .query_one("SHOW hba_file", &[])
        .await
        .expect("hba_file")
        .get(0);
    let original = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
    let lines = format!(
        "host postgres \"{n}\" 127.0.0.1/32 reject\nhost template1 \"{n}\" 127.0.0.1/32 reject\n",
        n = t.name
    );
    std::fs::write(&hba, format!("{lines}{original}")).expect("writing pg_hba.conf");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    let new_password = format!("{}-rotated", t.password);
    let out = run_ok(
        t.cmd()
            .env("AIDOCK__DATABASE__PASSWORD", &new_password)
            .args(["init", "--no-migrate"]),
    );
    // Put pg_hba back before asserting, so a failure cannot leak into other tests.
    let current = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
    std::fs::write(&hba, current.replacen(&lines, "", 1)).expect("restoring pg_hba.conf");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    assert!(out.contains("password updated"), "{out}");
    connect(&t.app_url().replace(&t.password, &new_password)).await;
    let old = tokio_postgres::connect(&t.app_url(), tokio_postgres::NoTls).await;
    assert!(old.is_err(), "the old password no longer logs in");

    // An empty password is a configuration error before connecting: nothing is created.
    let e = TestDb::new("emptypw");
    let out = expect_exit(e.cmd().env("AIDOCK__DATABASE__PASSWORD", "").arg("init"), 2);
    assert!(stderr(&out).contains("is empty"), "{}", stderr(&out));
    let n: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1) + (SELECT count(*) FROM pg_database WHERE datname = $1)",
            &[&e.name],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "nothing half-made");
}

#[tokio::test]
async fn no_free_slot_is_exit_4_and_says_what_exists() {
    let t = TestDb::new("slots");
    // The role may hold no connection at all: provisioning works (as the admin), the migration
    // connection gets SQLSTATE 53300.
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK__DATABASE__CONNECTION_LIMIT", "0")
            .arg("init"),
        4,
    );
    let err = stderr(&out);
    assert!(err.contains("no free connection slot"), "{err}");
    assert!(
        err.contains("are ready, but the schema was not migrated") && err.contains("init"),
        "{err}"
    );
    // Re-running (with a slot) finishes the job.
    let out = run_ok(t.cmd().arg("init"));
    assert!(out.contains("applied 0001"), "{out}");
}

/// A config directory holding a production.toml without `production = true`.
fn config_dir_without_production_flag() -> std::path::PathBuf {
    let dir = scratch_dir("prodcfg");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("production.toml"), "[tls]\nmode = \"require\"\n").expect("write");
    dir
}

#[tokio::test]
async fn production_guards_cannot_be_switched_off() {
    let t = TestDb::new("prodguard");
    run_ok(t.cmd().arg("init"));
    let admin = t.admin().await;
    let tables = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .expect("tables")
            .get::<_, i64>(0)
    };
    let before = tables().await;
    assert!(before > 5);
    let config_dir = config_dir_without_production_flag();
    // The production profile with the guard "switched off" one way or another.
    let prod = |disarm: Option<&str>| {
        let mut cmd = t.cmd();
        cmd.env("AIDOCK__DATABASE__PASSWORD", "a-real-secret")
            .env("AIDOCK__TLS__MODE", "require")
            .args(["--profile", "production"]);
        match disarm {
            Some("env") => {
                cmd.env("AIDOCK__PRODUCTION", "false");
            }
            Some(_) => {
                cmd.arg("--config-dir").arg(&config_dir);
            }
            None => {}
        }
        cmd
    };
    for how in ["env", "config dir"] {
        let out = expect_exit(prod(Some(how)).args(["seed", "--dev"]), 3);
        assert!(
            stderr(&out).contains("seed --dev"),
            "{how}: {}",
            stderr(&out)
        );
        let out = expect_exit(
            prod(Some(how)).args(["migrate", "down", "--base", "--yes"]),
            3,
        );
        assert!(stderr(&out).contains("--force"), "{how}: {}", stderr(&out));
        let out = expect_exit(prod(Some(how)).args(["reset", "--yes"]), 3);
        assert!(stderr(&out).contains("--force"), "{how}: {}", stderr(&out));
    }
    assert_eq!(tables().await, before, "no table dropped");
    let users: i64 = admin
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("users")
        .get(0);
    assert_eq!(users, 0, "no dev data");

    // TLS is required on every connection, including an sslmode in a URL.
    for mode in ["disable", "allow", "prefer"] {
        let url = format!("{}&sslmode={mode}", t.admin_url);
        let out = expect_exit(prod(None).env("AIDOCK_ADMIN_URL", &url).arg("init"), 2);
        assert!(
            stderr(&out).contains(&format!("sslmode={mode}")),
            "{}",
            stderr(&out)
        );
        let out = expect_exit(
            prod(None)
                .env("DATABASE_URL", t.app_url() + "?sslmode=" + mode)
                .args(["migrate", "status"]),
            2,
        );
        assert!(stderr(&out).contains("database.url"), "{}", stderr(&out));
    }
}

#[test]
fn the_socket_directory_is_private_random_and_never_adopted() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    // A data directory too deep for a Unix socket path: the socket goes under /tmp.
    let deep = scratch_dir("sock")
        .join("d".repeat(60))
        .join("e".repeat(40));
    let port = crate::support::free_port().to_string();
    let local = || {
        let mut cmd = crate::support::bin();
        cmd.env("AIDOCK__LOCAL__DATA_DIR", &deep)
            .env("AIDOCK__LOCAL__PORT", &port)
            .arg("local");
        cmd
    };
    run_ok(local().arg("start"));
    let recorded = std::fs::read_to_string(deep.join("socket_dir")).expect("recorded socket dir");
    let sock = std::path::PathBuf::from(recorded.trim());
    let name = sock
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("aidock-") && name.len() == "aidock-".len() + 12,
        "{name}"
    );
    let meta = std::fs::symlink_metadata(&sock).expect("socket dir");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "private");
    let expected_uid = crate::support::server_owner().map_or_else(
        // SAFETY: geteuid has no preconditions.
        || unsafe { libc::geteuid() },
        |(uid, _)| uid,
    );
    assert_eq!(meta.uid(), expected_uid);
    assert!(
        sock.join(format!(".s.PGSQL.{port}")).exists(),
        "the server listens there"
    );
    run_ok(local().arg("stop"));

    // Someone opens it up while the server is down: refused, not adopted.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = expect_exit(local().arg("start"), 1);
    assert!(
        stderr(&out).contains("refusing socket directory"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("mode 777"), "{}", stderr(&out));
    // ... or plants a symlink in its place.
    std::fs::remove_dir_all(&sock).expect("rm");
    let elsewhere = scratch_dir("victim");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, &sock).expect("symlink");
    let out = expect_exit(local().arg("start"), 1);
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    let victim = std::fs::metadata(&elsewhere).expect("victim");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(victim.uid(), unsafe { libc::geteuid() }, "not chowned");
    std::fs::remove_file(&sock).expect("rm symlink");
    // Gone (e.g. /tmp cleaned): a new random name.
    std::fs::write(deep.join("socket_dir"), sock.to_str().expect("utf-8")).expect("record");
    run_ok(local().arg("start"));
    let again = std::fs::read_to_string(deep.join("socket_dir")).expect("record");
    assert_ne!(again.trim(), sock.to_str().expect("utf-8"), "a fresh name");
    run_ok(local().args(["destroy", "--yes"]));
    assert!(
        !std::path::Path::new(again.trim()).exists(),
        "destroy removes it"
    );
}

/// Issue #44 (9, 11): `init` does not take over an empty database another login role owns
/// unless asked, and a database.password that no longer logs in is set only with a warning
/// that says what it breaks.
#[tokio::test]
async fn init_asks_before_taking_over_and_warns_when_it_resets_a_password() {
    let t = TestDb::new("takeover");
    let admin = t.admin_postgres().await;
    let bob = format!("{}_bob", t.name);
    for sql in [
        format!("CREATE ROLE \"{bob}\" LOGIN PASSWORD 'bob'"),
        format!("CREATE DATABASE \"{}\" OWNER \"{bob}\"", t.name),
    ] {
        admin.batch_execute(&sql).await.expect("bob's database");
    }
    let owner = || {
        let admin = &admin;
        let name = t.name.clone();
        async move {
            admin
                .query_one(
                    "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
                    &[&name],
                )
                .await
                .expect("owner")
                .get::<_, String>(0)
        }
    };
    let out = expect_exit(t.cmd().arg("init"), 3);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("`{bob}`")) && err.contains("--take-over-database"),
        "{err}"
    );
    assert_eq!(owner().await, bob, "nothing changed");
    run_ok(t.cmd().args(["init", "-q", "--take-over-database"]));
    assert_eq!(owner().await, t.name);

    // A password set elsewhere (or a typo in database.password): set, said loudly.
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{}\" PASSWORD 'set-elsewhere'",
            t.name
        ))
        .await
        .expect("password elsewhere");
    let out = expect_exit(t.cmd().args(["init", "-q"]), 0);
    let err = stderr(&out);
    assert!(
        err.contains("warning:") && err.contains("every client still using the old password"),
        "{err}"
    );
    // Once it matches, nothing is said.
    let out = expect_exit(t.cmd().args(["init", "-q"]), 0);
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
}
