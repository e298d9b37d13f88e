//! `doctor`: one test per failure class; each asserts the exit code and that the printed fix names
//! the setting or command to change.

use std::process::Command;

use crate::support::{TestDb, bin, expect_exit, free_port, run_ok, scratch_dir, write_files};

#[track_caller]
fn doctor_fails(cmd: &mut Command, fail_line: &str, fix_mentions: &str) -> String {
    let out = expect_exit(cmd.arg("doctor"), 1);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("FAIL {fail_line}")),
        "no `FAIL {fail_line}` in:\n{text}"
    );
    let fix = text
        .lines()
        .skip_while(|l| !l.starts_with(&format!("FAIL {fail_line}")))
        .find(|l| l.trim_start().starts_with("fix:"))
        .unwrap_or_default();
    assert!(
        fix.contains(fix_mentions),
        "fix `{fix}` does not mention `{fix_mentions}`:\n{text}"
    );
    text
}

#[test]
fn all_checks_pass_on_a_provisioned_database() {
    let t = TestDb::new("docok");
    run_ok(t.cmd().args(["init", "-q"]));
    let out = run_ok(t.cmd().arg("doctor"));
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("ok   schema"), "{out}");
    // The server version and what depends on it.
    assert!(
        out.contains("ok   server version and admin rights: PostgreSQL 1"),
        "{out}"
    );
    assert!(out.contains("schema public belongs to"), "{out}");
    assert!(out.contains("client_connection_check_interval"), "{out}");
    let json = run_ok(t.cmd().args(["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(
        v.as_array()
            .is_some_and(|c| c.iter().all(|c| c["ok"] == true))
    );
}

#[test]
fn bad_settings() {
    doctor_fails(
        bin().env("AIDOCK__LOCAL__PORT", "high"),
        "settings",
        "config/default.toml",
    );
}

#[test]
fn wrong_directory_and_duplicate_migration_numbers() {
    let dir = scratch_dir("docsql");
    write_files(&dir, &[("0001_a.up.sql", ""), ("0001_b.up.sql", "")]);
    let text = doctor_fails(
        bin()
            .current_dir("/")
            .env(
                "AIDOCK_ADMIN_URL",
                format!("postgres://x@127.0.0.1:{}/x", free_port()),
            )
            .arg("--migrations-dir")
            .arg(&dir),
        "migration files",
        "migrate new",
    );
    assert!(
        text.contains("built-in settings"),
        "running outside the project is noticed: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn local_cluster_not_running() {
    doctor_fails(
        bin().env("AIDOCK__LOCAL__DATA_DIR", scratch_dir("docnolocal")),
        "local cluster",
        "aidock-provision local start",
    );
}

#[test]
fn server_unreachable() {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    doctor_fails(
        bin().env("AIDOCK_ADMIN_URL", url),
        "server reachable",
        "AIDOCK_ADMIN_URL",
    );
}

#[test]
fn admin_without_rights() {
    let t = TestDb::new("docweak");
    let cluster = crate::support::cluster();
    if cluster.port == 0 {
        return;
    }
    let weak = format!("{}_weak", t.name);
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        t.admin_postgres()
            .await
            .batch_execute(&format!("CREATE ROLE \"{weak}\" LOGIN PASSWORD 'pw'"))
            .await
            .expect("role");
    });
    let url = format!("postgresql://{weak}:pw@127.0.0.1:{}/postgres", cluster.port);
    doctor_fails(
        t.cmd().env("AIDOCK_ADMIN_URL", url),
        "server version and admin rights",
        "CREATEDB CREATEROLE",
    );
}

#[test]
fn role_missing() {
    let t = TestDb::new("docnorole");
    doctor_fails(&mut t.cmd(), "app role", "aidock-provision init");
}

#[test]
fn wrong_app_password() {
    let t = TestDb::new("docpw");
    run_ok(t.cmd().args(["init", "-q"]));
    doctor_fails(
        t.cmd()
            .env("AIDOCK__DATABASE__PASSWORD", "not-the-password"),
        "app login",
        "database.password",
    );
}

#[tokio::test]
async fn permission_denied_for_schema_public() {
    let t = TestDb::new("docschema");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    t.admin()
        .await
        .batch_execute("ALTER SCHEMA public OWNER TO CURRENT_USER")
        .await
        .expect("alter");
    doctor_fails(&mut t.cmd(), "app login", "aidock-provision init");
}

#[test]
fn pending_migrations() {
    let t = TestDb::new("docpending");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    doctor_fails(&mut t.cmd(), "migrations", "aidock-provision migrate up");
}

#[tokio::test]
async fn tables_made_outside_the_tool_migration_already_exists() {
    let t = TestDb::new("docexists");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    let app = crate::support::connect(&t.app_url()).await;
    app.batch_execute("CREATE TABLE roles (id int)")
        .await
        .expect("table");
    // Issue #15: adopt it (baseline keeps the data), never `reset`, which would destroy it.
    doctor_fails(
        &mut t.cmd(),
        "migrations",
        "aidock-provision migrate baseline",
    );
    // And `migrate up` refuses before applying anything, saying the same thing.
    let out = expect_exit(t.cmd().args(["migrate", "up"]), 3);
    assert!(crate::support::stderr(&out).contains("migrate baseline"));
}

#[tokio::test]
async fn edited_migration_and_schema_drift() {
    let t = TestDb::new("docdrift");
    run_ok(t.cmd().args(["init", "-q"]));
    t.admin()
        .await
        .batch_execute("DROP INDEX ix_users_email")
        .await
        .expect("drop");
    doctor_fails(&mut t.cmd(), "schema", "migrate verify");

    let dir = crate::support::migrations_dir(&[]);
    let up = dir.join("0001_initial_tables.up.sql");
    let text = std::fs::read_to_string(&up).expect("read") + "\n-- edited\n";
    std::fs::write(&up, text).expect("write");
    doctor_fails(
        t.cmd().arg("--migrations-dir").arg(&dir),
        "migrations",
        "migrate status",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
