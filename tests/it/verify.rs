//! `migrate verify`: clean after init, and every kind of manual change reported by name.

use std::process::Stdio;

use crate::support::{TestDb, expect_exit, migrations_dir, run_ok, write_files};

async fn scratch_schemas(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'aidock_verify%'",
        &[],
    )
    .await
    .expect("schemas")
    .get(0)
}

#[tokio::test]
async fn verify_is_clean_after_init_and_after_down_up() {
    let t = TestDb::new("verify");
    run_ok(t.cmd().args(["init", "-q"]));
    let out = run_ok(t.cmd().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");
    run_ok(t.cmd().args(["migrate", "down", "--base", "--yes"]));
    run_ok(t.cmd().args(["migrate", "verify"]));
    run_ok(t.cmd().args(["migrate", "up"]));
    let json = run_ok(t.cmd().args(["migrate", "verify", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["clean"], true);
    assert_eq!(scratch_schemas(&t.admin().await).await, 0);
}

/// Changes made by hand to a verified AI Dock database, one of several kinds.
const MANUAL_CHANGES: &str = "DROP INDEX ix_users_is_active;
ALTER TABLE roles ALTER COLUMN permissions DROP DEFAULT;
ALTER TABLE users ADD COLUMN nickname text;
ALTER TABLE departments ALTER COLUMN description TYPE varchar(20);
ALTER TABLE usage_logs DROP CONSTRAINT usage_logs_llm_config_id_fkey;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_user_id_fkey,
    ADD CONSTRAINT refresh_tokens_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE llm_configurations OWNER TO CURRENT_USER;
";

#[tokio::test]
async fn verify_reports_each_manual_change_by_name() {
    let t = TestDb::new("drifted");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    db.batch_execute(
        &format!("{MANUAL_CHANGES}INSERT INTO departments (name, description) VALUES ('a', 'same'), ('b', 'same');"),
    )
    .await
    .expect("drift");
    // A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind.
    assert!(
        db.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY ix_departments_description ON departments (description)")
            .await
            .is_err()
    );
    let out = expect_exit(t.cmd().args(["migrate", "verify"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "index ix_users_is_active: missing",
        "column roles.permissions: differs (expected jsonb NOT NULL DEFAULT '[]'::jsonb; found jsonb NOT NULL)",
        "column users.nickname: not made by any migration",
        "column departments.description: differs (expected text NULL; found character varying(20) NULL)",
        "constraint usage_logs.usage_logs_llm_config_id_fkey: missing",
        "constraint refresh_tokens.refresh_tokens_user_id_fkey: differs (expected FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE; found FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE SET NULL)",
        "index ix_departments_description: INVALID",
        "owner llm_configurations: owned by another role",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let json = expect_exit(t.cmd().args(["migrate", "verify", "--json"]), 1);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["clean"], false);
    assert!(v["drift"].as_array().is_some_and(|d| d.len() >= 8));
    assert_eq!(scratch_schemas(&db).await, 0, "nothing is left behind");
}

/// The database in which a session of this test (tagged by application_name) runs `query`.
async fn database_running(db: &tokio_postgres::Client, app: &str, query: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let row = db
            .query_opt(
                "SELECT datname::text FROM pg_stat_activity WHERE application_name = $1 AND query = $2",
                &[&app, &query],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "`{query}` never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn database_exists(db: &tokio_postgres::Client, name: &str) -> bool {
    db.query_one(
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &[&name],
    )
    .await
    .expect("pg_database")
    .get::<_, i64>(0)
        == 1
}

#[tokio::test]
async fn an_interrupted_or_killed_verify_leaves_no_scratch_database() {
    let t = TestDb::new("verifykill");
    let dir = migrations_dir(&[("0002_slow.up.sql", "CREATE TABLE slow (id int);\n")]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["init", "-q"]),
    );
    // Edited after it was applied: verify reports that, and replays today's (slow) file.
    write_files(
        &dir,
        &[(
            "0002_slow.up.sql",
            "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\n",
        )],
    );
    let spawn = || {
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "verify"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let admin = t.admin_postgres().await;

    // Ctrl-C: the scratch database is dropped before the process ends.
    let child = spawn();
    let scratch = database_running(&admin, &t.name, "SELECT pg_sleep(30)").await;
    assert!(scratch.starts_with("aidock_verify_"), "{scratch}");
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill has no memory-safety preconditions; pid is our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "as a shell reports SIGINT");
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(
        !database_exists(&admin, &scratch).await,
        "dropped on Ctrl-C"
    );

    // SIGKILL: nothing can run in the process; the next verify drops what it left behind.
    let mut child = spawn();
    let scratch = database_running(&admin, &t.name, "SELECT pg_sleep(30)").await;
    child.kill().expect("kill");
    child.wait().expect("reaped");
    assert!(
        database_exists(&admin, &scratch).await,
        "left behind by SIGKILL"
    );
    write_files(
        &dir,
        &[("0002_slow.up.sql", "CREATE TABLE slow (id int);\n")],
    );
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "verify"]),
    );
    assert!(
        !database_exists(&admin, &scratch).await,
        "cleaned up by the next verify"
    );
    let live = t.admin().await;
    assert_eq!(scratch_schemas(&live).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `migrate verify --fix --json` on a drifted database (exit 1), parsed.
fn verify_fix_json(t: &TestDb) -> serde_json::Value {
    let out = expect_exit(t.cmd().args(["migrate", "verify", "--fix", "--json"]), 1);
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Run the fix `v` prints as a user would (support::apply_fix), then verify is clean.
#[track_caller]
fn apply_fix_and_verify_clean(t: &TestDb, v: &serde_json::Value) {
    crate::support::apply_fix(
        v,
        &crate::support::with_db(&crate::support::cluster().admin_url, &t.name),
        &t.app_url(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run_ok(t.cmd().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");
}

/// `verify --fix` prints (never runs) SQL that, run by the admin with psql, makes verify clean.
#[tokio::test]
async fn verify_fix_prints_sql_that_repairs_the_drift() {
    let t = TestDb::new("fixable");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    db.batch_execute(&format!(
        "{MANUAL_CHANGES}CREATE TABLE scratchpad (id int);"
    ))
    .await
    .expect("drift");
    let v = verify_fix_json(&t);
    let sql = v["fix_sql"].as_str().expect("fix_sql").to_string();
    for expected in [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_users_is_active",
        "ALTER TABLE roles ALTER COLUMN permissions SET DEFAULT '[]'::jsonb;",
        "ALTER TABLE users DROP COLUMN nickname;",
        "DROP TABLE scratchpad;",
        "ALTER TABLE llm_configurations OWNER TO",
        "-- loses data: column users.nickname is dropped with its values",
    ] {
        assert!(sql.contains(expected), "missing `{expected}` in:\n{sql}");
    }
    // Printed, not run: the drift is still there.
    expect_exit(t.cmd().args(["migrate", "verify"]), 1);
    apply_fix_and_verify_clean(&t, &v);
}

/// An extension the app role may not create (amcheck: not trusted), made by the admin in the
/// live database: the migration's `CREATE EXTENSION IF NOT EXISTS` is a no-op there, and verify
/// and diff make it (as the admin) in their scratch databases before the migrations replay.
#[tokio::test]
async fn an_extension_the_admin_made_is_in_the_scratch_databases_too() {
    let t = TestDb::new("admext");
    let dir = migrations_dir(&[]);
    let in_dir = || {
        let mut c = t.cmd();
        c.arg("--migrations-dir").arg(&dir);
        c
    };
    run_ok(in_dir().args(["init", "-q"]));
    t.admin()
        .await
        .batch_execute("CREATE EXTENSION amcheck")
        .await
        .expect("the admin's extension");
    write_files(
        &dir,
        &[
            (
                "0002_checks.up.sql",
                "CREATE EXTENSION IF NOT EXISTS amcheck;\nCREATE TABLE checked (id int);\n",
            ),
            ("0002_checks.down.sql", "DROP TABLE checked;\n"),
        ],
    );
    run_ok(in_dir().args(["migrate", "up"]));
    let out = run_ok(in_dir().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");
    let desired = crate::support::scratch_dir("admext-desired").with_extension("sql");
    let text = format!(
        "{}\n{}\nCREATE TABLE more_checked (id int);\n",
        std::fs::read_to_string(dir.join("0001_initial_tables.up.sql")).expect("0001"),
        std::fs::read_to_string(dir.join("0002_checks.up.sql")).expect("0002")
    );
    std::fs::write(&desired, text).expect("desired");
    let out = run_ok(
        in_dir()
            .args(["migrate", "diff", "more", "--to"])
            .arg(&desired),
    );
    assert!(out.contains("wrote"), "{out}");
}

/// A migration that creates an extension only a superuser may (here pageinspect) fails under
/// `migrate up` as the app role; `migrate diff` replaying it says so and what to do instead.
#[tokio::test]
async fn a_superuser_only_statement_in_a_migration_is_named_by_diff() {
    let t = TestDb::new("suext");
    let dir = migrations_dir(&[]);
    let in_dir = || {
        let mut c = t.cmd();
        c.arg("--migrations-dir").arg(&dir);
        c
    };
    run_ok(in_dir().args(["init", "-q"]));
    write_files(
        &dir,
        &[
            ("0002_inspect.up.sql", "CREATE EXTENSION pageinspect;\n"),
            ("0002_inspect.down.sql", "DROP EXTENSION pageinspect;\n"),
        ],
    );
    let desired = crate::support::scratch_dir("suext-desired").with_extension("sql");
    std::fs::write(&desired, "CREATE TABLE t (id int);\n").expect("desired");
    let out = in_dir()
        .args(["migrate", "diff", "more", "--to"])
        .arg(&desired)
        .output()
        .expect("diff");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("0002_inspect.up.sql")
            && err.contains("pageinspect")
            && err.contains("CREATE EXTENSION IF NOT EXISTS")
            && err.contains("as the admin"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        4,
        "nothing written"
    );
}

/// Issue #40 (low): default privileges the app role set outside the migrations (a grant of
/// every future table to PUBLIC, global and in a schema, and a built-in default revoked) are
/// drift, named; `verify --fix` puts them back, run on the app's login, and verify is clean.
/// Other roles' default privileges are not the migrations' and stay out of it.
#[tokio::test]
async fn default_privileges_set_outside_the_migrations_are_drift_and_fixed() {
    let t = TestDb::new("defacl");
    run_ok(t.cmd().args(["init", "-q"]));
    let app = crate::support::connect(&t.app_url()).await;
    app.batch_execute(
        "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC;
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO pg_monitor WITH GRANT OPTION;
         ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;",
    )
    .await
    .expect("default privileges");
    let admin = t.admin().await;
    admin
        .batch_execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
        .await
        .expect("the admin's own");
    let out = expect_exit(t.cmd().args(["migrate", "verify"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    for named in [
        "default privileges on tables",
        "default privileges on sequences in schema public",
        "default privileges on functions",
    ] {
        assert!(text.contains(named), "missing `{named}` in:\n{text}");
    }
    let v = verify_fix_json(&t);
    let sql = v["fix_sql"].as_str().expect("fix_sql");
    assert!(sql.contains("ALTER DEFAULT PRIVILEGES FOR ROLE"), "{sql}");
    apply_fix_and_verify_clean(&t, &v);
    let left: Vec<String> = admin
        .query(
            "SELECT pg_get_userbyid(defaclrole)::text FROM pg_default_acl ORDER BY 1",
            &[],
        )
        .await
        .expect("pg_default_acl")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let me: String = admin
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("current_user")
        .get(0);
    assert_eq!(left, vec![me], "only the admin's own stays");
}

/// Issue #40 (low): a grant on schema public made outside the migrations (CREATE to another
/// role, USAGE taken from PUBLIC) is drift that `verify --fix` now undoes instead of only
/// noting it; schema public's owner and PUBLIC's CREATE stay `init`'s.
#[tokio::test]
async fn schema_public_privileges_drift_is_fixed() {
    let t = TestDb::new("pubacl");
    run_ok(t.cmd().args(["init", "-q"]));
    let app = crate::support::connect(&t.app_url()).await;
    app.batch_execute(
        "GRANT CREATE, USAGE ON SCHEMA public TO pg_monitor; REVOKE USAGE ON SCHEMA public FROM PUBLIC",
    )
    .await
    .expect("grants on schema public");
    let acl = async || -> String {
        app.query_one(
            "SELECT coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .expect("nspacl")
        .get(0)
    };
    let drifted = acl().await;
    let out = expect_exit(t.cmd().args(["migrate", "verify"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("privileges schema public"), "{text}");
    let v = verify_fix_json(&t);
    let sql = v["fix_sql"].as_str().expect("fix_sql");
    assert!(
        sql.contains("REVOKE ALL ON SCHEMA public FROM pg_monitor;"),
        "{sql}"
    );
    apply_fix_and_verify_clean(&t, &v);
    let fixed = acl().await;
    assert!(!fixed.contains("pg_monitor"), "{drifted} -> {fixed}");
    assert!(fixed.contains("=U/"), "PUBLIC's USAGE is back: {fixed}");
    // And a run of init agrees: nothing of schema public to change.
    let out = run_ok(t.cmd().args(["init", "--json"]));
    assert!(!out.contains("\"changed\""), "{out}");
}
