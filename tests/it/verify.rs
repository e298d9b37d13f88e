//! `migrate verify`: clean after init, and every kind of manual change reported by name.

use std::process::Stdio;

use crate::support::{TestDb, expect_exit, migrations_dir, run_ok, wait_for_query, write_files};

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

#[tokio::test]
async fn verify_reports_each_manual_change_by_name() {
    let t = TestDb::new("drifted");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    db.batch_execute(
        "DROP INDEX ix_users_is_active;
         ALTER TABLE roles ALTER COLUMN permissions DROP DEFAULT;
         ALTER TABLE users ADD COLUMN nickname text;
         ALTER TABLE departments ALTER COLUMN description TYPE varchar(20);
         ALTER TABLE usage_logs DROP CONSTRAINT usage_logs_llm_config_id_fkey;
         ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_user_id_fkey,
             ADD CONSTRAINT refresh_tokens_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;
         ALTER TABLE llm_configurations OWNER TO CURRENT_USER;
         INSERT INTO departments (name, description) VALUES ('a', 'same'), ('b', 'same');",
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

#[tokio::test]
async fn a_killed_verify_leaves_no_scratch_schema() {
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
    let mut child = t
        .cmd()
        .arg("--migrations-dir")
        .arg(&dir)
        .args(["migrate", "verify"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let db = t.admin().await;
    wait_for_query(&db, "SELECT pg_sleep(30)").await;
    child.kill().expect("kill");
    child.wait().expect("reaped");
    assert_eq!(scratch_schemas(&db).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
