//! `reset` and `scripts/reset.sh`.

use std::process::Command;

use crate::support::{TestDb, bin, expect_exit, free_port, run_ok, scratch_dir, stderr};

async fn exists(t: &TestDb) -> (bool, bool) {
    let admin = t.admin_postgres().await;
    let row = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&t.name],
        )
        .await
        .expect("exists");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn reset_drops_a_database_with_a_session_still_connected_then_is_a_no_op() {
    let t = TestDb::new("reset");
    run_ok(t.cmd().args(["init", "-q"]));
    let app = crate::support::connect(&t.app_url()).await;
    app.batch_execute("SELECT 1").await.expect("connected");

    let out = run_ok(t.cmd().args(["reset", "--yes"]));
    assert!(
        out.contains(&format!("database {}: dropped", t.name)),
        "{out}"
    );
    assert!(out.contains(&format!("role {}: dropped", t.name)), "{out}");
    assert_eq!(exists(&t).await, (false, false));
    assert!(
        app.batch_execute("SELECT 1").await.is_err(),
        "the session was terminated"
    );

    let again = run_ok(t.cmd().args(["reset", "--yes"]));
    assert!(again.contains("already gone"), "{again}");
}

#[tokio::test]
async fn reset_needs_confirmation_and_production_needs_force() {
    let t = TestDb::new("resetguard");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    let out = expect_exit(t.cmd().arg("reset"), 3);
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = expect_exit(
        t.cmd().args(["--profile", "production", "reset", "--yes"]),
        3,
    );
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(exists(&t).await, (true, true), "nothing was dropped");
}

#[test]
fn reset_script_with_all_destroys_the_local_cluster() {
    let dir = scratch_dir("resetsh");
    let port = free_port().to_string();
    let local = |cmd: &mut Command| {
        cmd.env("AIDOCK__LOCAL__DATA_DIR", &dir)
            .env("AIDOCK__LOCAL__PORT", &port);
    };
    let mut init = bin();
    local(&mut init);
    let out = run_ok(init.args(["init", "-q"]));
    assert!(out.is_empty(), "{out}");
    assert!(dir.join("pgdata").is_dir());

    let mut script = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reset.sh"));
    script
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "AIDOCK_PROVISION_BIN",
            env!("CARGO_BIN_EXE_aidock-provision"),
        )
        .env("AIDOCK_PROFILE", "test");
    local(&mut script);
    let out = run_ok(script.args(["--all", "--yes"]));
    assert!(out.contains("database aidock: dropped"), "{out}");
    assert!(out.contains("role aidock: dropped"), "{out}");
    assert!(out.contains("destroyed"), "{out}");
    assert!(!dir.exists(), "the data directory is gone");
}

#[test]
fn after_reset_commands_say_the_role_is_gone_not_that_the_password_is_wrong() {
    let t = TestDb::new("gone");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(t.cmd().args(["reset", "--yes", "-q"]));
    for args in [&["seed"][..], &["migrate", "up"], &["migrate", "status"]] {
        let out = crate::support::expect_exit(t.cmd().args(args), 1);
        let err = crate::support::stderr(&out);
        assert!(
            err.contains(&format!("role `{}` does not exist", t.name))
                && err.contains("run `aidock-provision init`"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("password authentication failed"),
            "{args:?}: {err}"
        );
    }
}
