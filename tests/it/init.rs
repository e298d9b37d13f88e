//! `init`: role and database, least privilege, idempotent, race-safe, secrets kept out of logs.

use std::time::{Duration, Instant};

use crate::support::{TestDb, bin, expect_exit, free_port, run_ok, stderr};

#[tokio::test]
async fn init_creates_a_least_privilege_role_and_its_database() {
    let t = TestDb::new("init");
    let out = run_ok(t.cmd().args(["init", "--no-migrate"]));
    assert!(out.contains(&format!("role {}: created", t.name)), "{out}");
    assert!(
        out.contains(&format!("database {}: created", t.name)),
        "{out}"
    );
    assert!(
        out.contains(":***@"),
        "URL is printed with the password masked: {out}"
    );
    assert!(!out.contains(&t.password), "{out}");

    let admin = t.admin_postgres().await;
    let role = admin
        .query_one(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit \
             FROM pg_roles WHERE rolname = $1",
            &[&t.name],
        )
        .await
        .expect("role exists");
    let attrs: Vec<bool> = (0..6).map(|i| role.get(i)).collect();
    assert_eq!(
        attrs,
        [true, false, false, false, false, false],
        "exactly LOGIN"
    );

    let db = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), \
                    EXISTS (SELECT 1 FROM aclexplode(datacl) a WHERE a.grantee = 0), datacl IS NULL \
             FROM pg_database WHERE datname = $1",
            &[&t.name],
        )
        .await
        .expect("database exists");
    assert_eq!(db.get::<_, String>(0), t.name, "owned by the role");
    assert_eq!(db.get::<_, String>(1), "UTF8");
    assert!(
        !db.get::<_, bool>(2),
        "PUBLIC has no rights on the database"
    );
    assert!(
        !db.get::<_, bool>(3),
        "the ACL is explicit, not the default"
    );

    // The stored password is a SCRAM verifier.
    let verifier: Option<String> = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&t.name],
        )
        .await
        .expect("pg_authid")
        .get(0);
    assert!(verifier.unwrap_or_default().starts_with("SCRAM-SHA-256$"));

    // The role logs in over TCP (scram-sha-256 in pg_hba) and can create tables in public.
    let app = crate::support::connect(&t.app_url()).await;
    app.batch_execute("CREATE TABLE probe (id int); DROP TABLE probe")
        .await
        .expect("the role can create tables");
    let schema_owner: String = app
        .query_one(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .expect("schema")
        .get(0);
    assert_eq!(schema_owner, t.name);
}

#[test]
fn the_password_never_reaches_the_server_log_and_a_second_init_writes_nothing() {
    let mut t = TestDb::new("secret");
    // A quote and a backslash: the classic ways to break out of a literal.
    t.password = format!("it's\\{}", t.name);
    run_ok(t.cmd().args(["init", "--no-migrate"]));
    let lines_after_first = t.log_lines().len();
    assert!(
        lines_after_first > 0,
        "log_statement=all shows this test's statements"
    );

    let out = run_ok(t.cmd().args(["init", "--no-migrate"]));
    assert!(out.contains("nothing to change"), "{out}");
    let second: Vec<String> = t.log_lines().split_off(lines_after_first);
    let writes: Vec<&String> = second
        .iter()
        .filter(|l| {
            let upper = l.to_uppercase();
            ["CREATE ", "ALTER ", "GRANT ", "REVOKE ", "DROP "]
                .iter()
                .any(|w| upper.contains(&format!("STATEMENT: {w}")))
        })
        .collect();
    assert!(writes.is_empty(), "a repeated init wrote: {writes:#?}");

    if let Some(path) = &crate::support::cluster().log_file {
        let log = std::fs::read_to_string(path).expect("server log");
        assert!(
            !log.contains(&t.password),
            "the clear-text password is in the server log"
        );
        assert!(
            log.contains(&format!("CREATE ROLE \"{}\"", t.name)),
            "the log does show the statement"
        );
    }
}

#[test]
fn dry_run_prints_statements_and_changes_nothing() {
    let t = TestDb::new("dryrun");
    let out = run_ok(t.cmd().args(["init", "--dry-run"]));
    assert!(
        out.contains(&format!("CREATE ROLE \"{}\" LOGIN", t.name)),
        "{out}"
    );
    assert!(out.contains("PASSWORD '***'"), "{out}");
    assert!(
        out.contains(&format!("CREATE DATABASE \"{}\" OWNER", t.name)),
        "{out}"
    );
    assert!(!out.contains(&t.password), "{out}");
    assert!(
        !out.contains("SCRAM-SHA-256$"),
        "not even the verifier is printed: {out}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let admin = t.admin_postgres().await;
        let n: i64 = admin
            .query_one(
                "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1) + (SELECT count(*) FROM pg_database WHERE datname = $1)",
                &[&t.name],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "dry run created nothing");
    });
}

#[tokio::test]
async fn init_reconciles_drift_it_owns() {
    let t = TestDb::new("drift");
    run_ok(t.cmd().args(["init", "--no-migrate"]));
    let admin = t.admin_postgres().await;
    let q = |s: &str| s.replace("NAME", &format!("\"{}\"", t.name));
    admin
        .batch_execute(&q(
            "ALTER ROLE NAME NOLOGIN CONNECTION LIMIT 3 PASSWORD 'changed-elsewhere'; \
             ALTER DATABASE NAME OWNER TO CURRENT_USER; GRANT CONNECT ON DATABASE NAME TO PUBLIC",
        ))
        .await
        .expect("drift");
    let out = run_ok(t.cmd().args(["init", "--no-migrate"]));
    assert!(out.contains("granted LOGIN"), "{out}");
    assert!(out.contains("connection limit 3 -> -1"), "{out}");
    assert!(out.contains("password updated"), "{out}");
    assert!(
        out.contains(&format!("-> {}", t.name)),
        "owner restored: {out}"
    );
    assert!(out.contains("revoked CONNECT"), "{out}");
    // The password works again.
    crate::support::connect(&t.app_url()).await;
    let again = run_ok(t.cmd().args(["init", "--no-migrate"]));
    assert!(again.contains("nothing to change"), "{again}");
}

#[test]
fn concurrent_inits_all_succeed_and_create_each_object_once() {
    let t = TestDb::new("race");
    let outputs = crate::support::run_concurrently((0..8).map(|_| {
        let mut cmd = t.cmd();
        cmd.args(["init", "--no-migrate"]);
        cmd
    }));
    assert_eq!(
        outputs
            .matches(&format!("role {}: created", t.name))
            .count(),
        1,
        "{outputs}"
    );
    assert_eq!(
        outputs
            .matches(&format!("database {}: created", t.name))
            .count(),
        1,
        "{outputs}"
    );
}

#[tokio::test]
async fn a_non_superuser_admin_with_createdb_and_createrole_succeeds() {
    let t = TestDb::new("managed");
    let admin_role = format!("{}_admin", t.name);
    let admin = t.admin_postgres().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{admin_role}\" LOGIN CREATEDB CREATEROLE PASSWORD 'managed-pw'"
        ))
        .await
        .expect("admin role");
    let url = format!(
        "postgresql://{admin_role}:managed-pw@127.0.0.1:{}/postgres?application_name={}",
        crate::support::cluster().port,
        t.name
    );
    if crate::support::cluster().port == 0 {
        return; // external server: the URL shape above does not apply
    }
    let output = crate::support::expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &url).arg("init"), 0);
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        out.contains(&format!("database {}: created", t.name)),
        "{out}"
    );
    assert!(
        out.contains("applied 0001"),
        "the app role created its tables: {out}"
    );
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("version")
        .get(0);
    let public: (String, bool) = {
        let db = t.admin().await;
        let row = db
            .query_one(
                "SELECT pg_get_userbyid(nspowner), EXISTS (SELECT 1 FROM aclexplode(nspacl) a \
                 WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') FROM pg_namespace WHERE nspname = 'public'",
                &[],
            )
            .await
            .expect("public");
        (row.get(0), row.get(1))
    };
    if version < 150_000 {
        // The server lets a non-superuser admin change nothing on `public`: left as it is,
        // and said so with the fix.
        let err = stderr(&output);
        assert!(
            err.contains("warning: schema public stays owned by"),
            "{err}"
        );
        assert!(err.contains("ALTER SCHEMA public OWNER TO"), "{err}");
        assert_ne!(public.0, t.name);
    } else {
        assert_eq!(
            public,
            (t.name.clone(), false),
            "public is the role's, closed to PUBLIC"
        );
    }
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[&t.name],
        )
        .await
        .expect("db")
        .get(0);
    assert_eq!(owner, t.name);
    crate::support::connect(&t.app_url()).await;
    let again = run_ok(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &url)
            .args(["init", "--no-migrate"]),
    );
    assert!(again.contains("nothing to change"), "{again}");
}

#[test]
fn an_admin_without_rights_is_told_what_to_grant() {
    let t = TestDb::new("weak");
    if crate::support::cluster().port == 0 {
        return;
    }
    let weak = format!("{}_weak", t.name);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        t.admin_postgres()
            .await
            .batch_execute(&format!("CREATE ROLE \"{weak}\" LOGIN PASSWORD 'weak-pw'"))
            .await
            .expect("weak role");
    });
    let url = format!(
        "postgresql://{weak}:weak-pw@127.0.0.1:{}/postgres",
        crate::support::cluster().port
    );
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &url).arg("init"), 1);
    let err = stderr(&out);
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        err.contains("CREATEROLE") && err.contains("CREATEDB"),
        "{err}"
    );

    let wrong = format!(
        "postgresql://{weak}:not-it@127.0.0.1:{}/postgres",
        crate::support::cluster().port
    );
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &wrong).arg("init"), 1);
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_names_are_usage_errors() {
    for name in ["x;drop", "Robert\"", "1abc", &"a".repeat(70)] {
        let out = expect_exit(
            bin()
                .env("AIDOCK_ADMIN_URL", "postgres://nobody@127.0.0.1:1/postgres")
                .env("AIDOCK__DATABASE__NAME", name)
                .arg("init"),
            2,
        );
        let err = stderr(&out);
        assert!(err.contains("database.name"), "{name}: {err}");
        assert!(err.contains("^[a-z_][a-z0-9_]{0,62}$"), "{name}: {err}");
    }
    let out = expect_exit(
        bin()
            .env("AIDOCK_ADMIN_URL", "postgres://nobody@127.0.0.1:1/postgres")
            .env("AIDOCK__DATABASE__OWNER", "Robert\"; DROP TABLE students")
            .arg("init"),
        2,
    );
    assert!(stderr(&out).contains("database.owner"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_server_exits_4_quickly() {
    // Nobody listens on this port.
    let refused = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let out = expect_exit(bin().env("AIDOCK_ADMIN_URL", &refused).arg("init"), 4);
    let err = stderr(&out);
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("running"), "says what to check: {err}");

    // A server that accepts the TCP connection but never answers: the connect timeout applies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        listener.local_addr().expect("addr").port()
    );
    let started = Instant::now();
    let out = expect_exit(
        bin()
            .env("AIDOCK_ADMIN_URL", &silent)
            .env("AIDOCK__SERVER__CONNECT_TIMEOUT", "2s")
            .arg("init"),
        4,
    );
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    // The bound the issue sets for users, not a benchmark: a hang would take forever.
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[test]
fn libpq_environment_fills_what_the_url_leaves_out() {
    let t = TestDb::new("pgenv");
    let cluster = crate::support::cluster();
    if cluster.port == 0 {
        return;
    }
    let password = crate::support::cluster_password();
    let out = run_ok(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", "postgresql:///postgres?host=127.0.0.1")
            .env("PGPORT", cluster.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &password)
            .args(["init", "--no-migrate"]),
    );
    assert!(
        out.contains(&format!("database {}: created", t.name)),
        "{out}"
    );
}

#[test]
fn init_json_reports_objects_and_migrations() {
    let t = TestDb::new("json");
    let dry = run_ok(t.cmd().args(["init", "--dry-run", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&dry).expect("dry-run JSON");
    assert_eq!(v["provision"]["dry_run"], true);
    assert!(!dry.contains(&t.password), "{dry}");
    let out = run_ok(t.cmd().args(["init", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["provision"]["objects"][0]["status"], "created");
    assert_eq!(v["migrations"][0]["migration"], "0001_initial_tables");
    assert!(
        v["provision"]["url"]
            .as_str()
            .is_some_and(|u| u.contains(":***@"))
    );
    let again = run_ok(t.cmd().args(["init", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(v["provision"]["objects"][1]["status"], "exists");
    assert_eq!(v["migrations"], serde_json::json!([]));
}

#[test]
fn the_password_file_supplies_what_the_url_leaves_out() {
    let t = TestDb::new("pgpass");
    let cluster = crate::support::cluster();
    if cluster.port == 0 {
        return;
    }
    let password = crate::support::cluster_password();
    let dir = crate::support::scratch_dir("pgpass");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("pgpass");
    std::fs::write(
        &file,
        format!("127.0.0.1:{}:*:postgres:{password}\n", cluster.port),
    )
    .expect("write");
    let chmod = |mode: u32| {
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
    };
    chmod(0o600);
    let url = format!("postgresql://postgres@127.0.0.1:{}/postgres", cluster.port);
    let out = run_ok(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &url)
            .env("PGPASSFILE", &file)
            .args(["init", "--no-migrate"]),
    );
    assert!(
        out.contains(&format!("database {}: created", t.name)),
        "{out}"
    );
    // Readable by others: refused, as libpq does, with the fix.
    chmod(0o644);
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &url)
            .env("PGPASSFILE", &file)
            .args(["init", "--no-migrate"]),
        2,
    );
    assert!(stderr(&out).contains("chmod 0600"), "{}", stderr(&out));
}

#[test]
fn with_no_url_libpq_environment_names_the_server() {
    let t = TestDb::new("pghost");
    let cluster = crate::support::cluster();
    if cluster.port == 0 {
        return;
    }
    let password = crate::support::cluster_password();
    // No URL at all: only libpq's environment names the server.
    let via_env = || {
        let mut cmd = t.cmd();
        cmd.env_remove("AIDOCK_ADMIN_URL")
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", cluster.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &password);
        cmd
    };
    let out = run_ok(via_env().args(["init", "--no-migrate"]));
    assert!(
        out.contains(&format!("database {}: created", t.name)),
        "{out}"
    );
    // ... and migrate, with the app role on that server, finds it the same way.
    let out = run_ok(via_env().args(["migrate", "up"]));
    assert!(out.contains("applied 0001"), "{out}");
}
