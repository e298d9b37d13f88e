//! `migrate`: the 0001 schema against SCHEMA.md, transactions, checksums, locking, no-transaction
//! scripts, and the commands around them.

use std::process::{Command, Stdio};

use crate::support::{
    TestDb, expect_exit, ledger_versions, migrations_dir, public_tables, run_concurrently, run_ok,
    scratch_dir, stderr, wait_for_query, write_files,
};

/// A canonical text of everything in schema `public`: columns, constraints, indexes, triggers,
/// functions, owners. Two equal snapshots mean two equal schemas.
pub async fn catalog(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
               SELECT format('col %s.%s %s nullable=%s default=%s generated=%s', c.table_name, c.column_name,
                             format_type(a.atttypid, a.atttypmod), c.is_nullable, c.column_default, c.generation_expression)
               FROM information_schema.columns c
               JOIN pg_attribute a ON a.attrelid = format('public.%I', c.table_name)::regclass AND a.attname = c.column_name
               WHERE c.table_schema = 'public'
               UNION ALL
               SELECT format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace
               UNION ALL
               SELECT format('idx %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
               UNION ALL
               SELECT format('trg %s', pg_get_triggerdef(oid)) FROM pg_trigger WHERE NOT tgisinternal
               UNION ALL
               SELECT format('fn %s', oid::regprocedure) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
               UNION ALL
               SELECT format('owner %s %s', relname, pg_get_userbyid(relowner)) FROM pg_class
               WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i')
             ) s(x)",
            &[],
        )
        .await
        .expect("catalog snapshot")
        .get(0)
}

const SEVEN: [&str; 7] = [
    "department_quotas",
    "departments",
    "llm_configurations",
    "refresh_tokens",
    "roles",
    "usage_logs",
    "users",
];

#[tokio::test]
async fn the_0001_schema_matches_schema_md() {
    let t = TestDb::new("schema");
    let only_0001 = migrations_dir(&[]);
    let out = run_ok(t.cmd().arg("--migrations-dir").arg(&only_0001).arg("init"));
    assert!(out.contains("applied 0001_initial_tables"), "{out}");
    let db = t.admin().await;
    let mut expected: Vec<String> = SEVEN.iter().map(ToString::to_string).collect();
    expected.push("alembic_version".into());
    expected.sort();
    assert_eq!(public_tables(&db).await, expected);
    let cat = catalog(&db).await;
    let must = [
        // roles
        "col roles.id uuid nullable=NO default=gen_random_uuid() generated=",
        "col roles.name character varying(50) nullable=NO",
        "col roles.permissions jsonb nullable=NO default='[]'::jsonb",
        "con roles ck_roles_permissions_array CHECK ((jsonb_typeof(permissions) = 'array'::text))",
        "idx CREATE UNIQUE INDEX ix_roles_name ON public.roles USING btree (name)",
        "col roles.created_at timestamp with time zone nullable=NO default=now()",
        "col roles.updated_at timestamp with time zone nullable=NO default=now()",
        "trg CREATE TRIGGER trg_roles_updated_at BEFORE UPDATE ON public.roles FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
        "fn set_updated_at()",
        // departments
        "col departments.name character varying(100) nullable=NO",
        "idx CREATE UNIQUE INDEX ix_departments_name ON public.departments USING btree (name)",
        // llm_configurations
        "col llm_configurations.provider character varying(50) nullable=NO",
        "col llm_configurations.model_name character varying(100) nullable=NO",
        "col llm_configurations.api_key_encrypted text nullable=YES",
        "col llm_configurations.enabled boolean nullable=NO default=true",
        "col llm_configurations.config_json jsonb nullable=NO default='{}'::jsonb",
        "con llm_configurations uq_llm_configurations_provider_model UNIQUE (provider, model_name)",
        "con llm_configurations ck_llm_configurations_config_json_object CHECK ((jsonb_typeof(config_json) = 'object'::text))",
        // users
        "col users.hashed_password character varying(255) nullable=NO",
        "col users.is_active boolean nullable=NO default=true",
        "col users.is_superuser boolean nullable=NO default=false",
        "con users users_role_id_fkey FOREIGN KEY (role_id) REFERENCES roles(id) ON DELETE RESTRICT",
        "con users users_department_id_fkey FOREIGN KEY (department_id) REFERENCES departments(id) ON DELETE RESTRICT",
        "con users ck_users_hashed_password_not_empty CHECK (((hashed_password)::text <> ''::text))",
        "idx CREATE UNIQUE INDEX ix_users_username ON public.users USING btree (username)",
        "idx CREATE UNIQUE INDEX ix_users_email ON public.users USING btree (email)",
        "idx CREATE INDEX ix_users_role_id ON public.users USING btree (role_id)",
        "idx CREATE INDEX ix_users_department_id ON public.users USING btree (department_id)",
        "idx CREATE INDEX ix_users_is_active ON public.users USING btree (is_active)",
        // department_quotas
        "col department_quotas.monthly_limit_tokens bigint nullable=NO default=0",
        "col department_quotas.current_usage_tokens bigint nullable=NO default=0",
        "col department_quotas.last_reset timestamp with time zone nullable=NO default=now()",
        "con department_quotas department_quotas_department_id_fkey FOREIGN KEY (department_id) REFERENCES departments(id) ON DELETE CASCADE",
        "con department_quotas department_quotas_llm_config_id_fkey FOREIGN KEY (llm_config_id) REFERENCES llm_configurations(id) ON DELETE CASCADE",
        "con department_quotas uq_department_llm_quota UNIQUE (department_id, llm_config_id)",
        "con department_quotas ck_department_quotas_current_usage_tokens CHECK ((current_usage_tokens >= 0))",
        "idx CREATE INDEX ix_department_quotas_llm_config_id ON public.department_quotas USING btree (llm_config_id)",
        // refresh_tokens
        "col refresh_tokens.ip_address inet nullable=YES",
        "col refresh_tokens.revoked_at timestamp with time zone nullable=YES",
        "col refresh_tokens.remember_me boolean nullable=NO default=false",
        "con refresh_tokens refresh_tokens_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE",
        "idx CREATE UNIQUE INDEX ix_refresh_tokens_token_hash ON public.refresh_tokens USING btree (token_hash)",
        "idx CREATE INDEX ix_refresh_tokens_expires_at ON public.refresh_tokens USING btree (expires_at)",
        "idx CREATE INDEX ix_refresh_tokens_is_revoked ON public.refresh_tokens USING btree (is_revoked)",
        // usage_logs
        "col usage_logs.timestamp timestamp with time zone nullable=NO default=now()",
        "col usage_logs.tokens_total integer nullable=YES default= generated=(tokens_prompt + tokens_completion)",
        "col usage_logs.cost_estimated numeric(14,6) nullable=NO default=0",
        "col usage_logs.request_details jsonb nullable=NO default='{}'::jsonb",
        "con usage_logs usage_logs_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE RESTRICT",
        "con usage_logs usage_logs_llm_config_id_fkey FOREIGN KEY (llm_config_id) REFERENCES llm_configurations(id) ON DELETE RESTRICT",
        "idx CREATE INDEX ix_usage_logs_timestamp ON public.usage_logs USING btree (\"timestamp\")",
        "idx CREATE INDEX ix_usage_logs_llm_config_id ON public.usage_logs USING btree (llm_config_id)",
        // the alembic stamp
        "con alembic_version alembic_version_pkc PRIMARY KEY (version_num)",
        // every table is owned by the app role
        &format!("owner usage_logs {}", t.name),
    ];
    let missing: Vec<&&str> = must.iter().filter(|m| !cat.contains(**m)).collect();
    assert!(
        missing.is_empty(),
        "missing from the catalog: {missing:#?}\n\ncatalog:\n{cat}"
    );
    // No duplicate plain index next to a unique one, no index on department_quotas.department_id alone.
    assert!(
        !cat.contains("ON public.department_quotas USING btree (department_id)"),
        "{cat}"
    );
    assert_eq!(cat.matches("(username)").count(), 1, "{cat}");
    // Five tables carry the updated_at trigger.
    assert_eq!(
        cat.matches("EXECUTE FUNCTION set_updated_at()").count(),
        5,
        "{cat}"
    );

    let stamp: String = db
        .query_one("SELECT version_num FROM alembic_version", &[])
        .await
        .expect("stamped")
        .get(0);
    assert_eq!(stamp, "0001");
    // The trigger works.
    db.batch_execute(
        "INSERT INTO departments (name) VALUES ('X'); \
         UPDATE departments SET updated_at = '2000-01-01', description = 'd' WHERE name = 'X'",
    )
    .await
    .expect("insert");
    let fresh: bool = db
        .query_one(
            "SELECT updated_at > now() - interval '1 minute' FROM departments",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert!(fresh, "set_updated_at() keeps updated_at current");
}

#[tokio::test]
async fn up_down_up_leaves_an_identical_catalog() {
    let t = TestDb::new("updown");
    run_ok(t.cmd().arg("init"));
    let db = t.admin().await;
    let first = catalog(&db).await;
    let out = run_ok(t.cmd().args(["migrate", "down", "--base", "--yes"]));
    assert!(out.contains("reverted 0001_initial_tables"), "{out}");
    assert_eq!(public_tables(&db).await, ["alembic_version"]);
    assert_eq!(
        db.query("SELECT * FROM alembic_version", &[])
            .await
            .expect("q")
            .len(),
        0
    );
    assert!(
        !catalog(&db).await.contains("set_updated_at"),
        "the function is dropped too"
    );
    run_ok(t.cmd().args(["migrate", "up"]));
    assert_eq!(catalog(&db).await, first);
    let history = run_ok(t.cmd().args(["migrate", "history"]));
    assert!(history.contains("0001 initial_tables"), "{history}");
    assert!(history.contains(&format!("by {}", t.name)), "{history}");
}

#[tokio::test]
async fn a_failing_script_leaves_no_trace_and_says_where() {
    let t = TestDb::new("broken");
    run_ok(t.cmd().args(["init", "--no-migrate"]));
    let broken = "-- 0002 broken\nCREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT no_such_column FROM half_done;\n";
    let dir = migrations_dir(&[
        ("0002_broken.up.sql", broken),
        ("0002_broken.down.sql", "DROP TABLE half_done;"),
    ]);
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
        1,
    );
    let err = stderr(&out);
    assert!(err.contains("0002_broken.up.sql"), "{err}");
    assert!(err.contains("line 4, column 8"), "{err}");
    assert!(err.contains("42703"), "SQLSTATE: {err}");
    assert!(err.contains("rolled back"), "{err}");
    let db = t.admin().await;
    // One transaction per run: the database is exactly as before the run (it was empty): 0001
    // from the same run is gone too, and so is half_done, and the ledger never came to be.
    assert!(
        public_tables(&db).await.is_empty(),
        "{:?}",
        public_tables(&db).await
    );

    write_files(
        &dir,
        &[("0002_broken.up.sql", "CREATE TABLE half_done (id int);\n")],
    );
    let out = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
    );
    assert!(out.contains("applied 0002_broken"), "{out}");
    assert_eq!(ledger_versions(&db).await, [1, 2]);
    let stamp: String = db
        .query_one("SELECT version_num FROM alembic_version", &[])
        .await
        .expect("stamp")
        .get(0);
    assert_eq!(stamp, "0002");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn edited_and_unknown_migrations_are_refused_but_crlf_is_not_an_edit() {
    let t = TestDb::new("edited");
    let dir = migrations_dir(&[(
        "0002_extra.up.sql",
        "CREATE TABLE extra (id int);\nCREATE TABLE extra2 (id int);\n",
    )]);
    let with_dir = |t: &TestDb| {
        let mut c = t.cmd();
        c.arg("--migrations-dir").arg(&dir);
        c
    };
    run_ok(with_dir(&t).arg("init"));

    // CRLF line endings only: same checksum.
    write_files(
        &dir,
        &[(
            "0002_extra.up.sql",
            "CREATE TABLE extra (id int);\r\nCREATE TABLE extra2 (id int);\r\n",
        )],
    );
    let status = run_ok(with_dir(&t).args(["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");

    write_files(
        &dir,
        &[(
            "0002_extra.up.sql",
            "CREATE TABLE extra (id bigint);\nCREATE TABLE extra2 (id int);\n",
        )],
    );
    let out = expect_exit(with_dir(&t).args(["migrate", "up"]), 1);
    let err = stderr(&out);
    assert!(
        err.contains("0002_extra.up.sql") && err.contains("edited"),
        "{err}"
    );
    let out = expect_exit(with_dir(&t).args(["migrate", "status"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checksum edited"), "{text}");
    assert!(text.contains("0002_extra.up.sql"), "{text}");
    // Its down script is refused too: it would undo something else than what was applied.
    write_files(
        &dir,
        &[(
            "0002_extra.down.sql",
            "DROP TABLE extra2; DROP TABLE extra;",
        )],
    );
    let out = expect_exit(
        with_dir(&t).args(["migrate", "down", "--steps", "1", "--yes"]),
        1,
    );
    assert!(stderr(&out).contains("edited"), "{}", stderr(&out));

    // A version in the database that the binary does not know.
    let db = t.admin().await;
    db.batch_execute(
        "INSERT INTO aidock_provision.schema_history (version, name, checksum, execution_ms) VALUES (99, 'from_the_future', 'x', 1)",
    )
    .await
    .expect("insert");
    let out = expect_exit(with_dir(&t).args(["migrate", "up"]), 1);
    let err = stderr(&out);
    assert!(
        err.contains("0099") && err.contains("from_the_future"),
        "{err}"
    );
    assert!(
        err.contains("0002_extra.up.sql"),
        "every problem is listed: {err}"
    );
    assert!(err.contains("newer"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn concurrent_ups_apply_each_migration_once() {
    let t = TestDb::new("concurrent");
    run_ok(t.cmd().args(["init", "--no-migrate"]));
    let dir = migrations_dir(&[(
        "0002_slowish.up.sql",
        "SELECT pg_sleep(0.3);\nCREATE TABLE slowish (id int);\n",
    )]);
    let all = run_concurrently((0..8).map(|_| {
        let mut cmd = t.cmd();
        cmd.arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]);
        cmd
    }));
    assert_eq!(
        all.matches("applied 0001_initial_tables").count(),
        1,
        "{all}"
    );
    assert_eq!(all.matches("applied 0002_slowish").count(), 1, "{all}");
    let db = t.admin().await;
    assert_eq!(ledger_versions(&db).await, [1, 2]);
    let locks = crate::support::advisory_locks(&db).await;
    assert_eq!(locks, 0, "no advisory lock is left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_migrator_killed_mid_script_leaves_the_previous_version() {
    let t = TestDb::new("killed");
    let dir = migrations_dir(&[(
        "0002_slow.up.sql",
        "CREATE TABLE slow_marker (id int);\nSELECT pg_sleep(60);\n",
    )]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["init", "--no-migrate"]),
    );
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up", "--to", "1"]),
    );
    let mut child = t
        .cmd()
        .arg("--migrations-dir")
        .arg(&dir)
        .args(["migrate", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let db = t.admin().await;
    wait_for_query(&db, "SELECT pg_sleep(60)").await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    assert_eq!(
        ledger_versions(&db).await,
        [1],
        "still at the previous version"
    );
    assert!(
        !public_tables(&db)
            .await
            .contains(&"slow_marker".to_string())
    );
    // The server notices the dead client within about a second, and the next run completes.
    write_files(
        &dir,
        &[("0002_slow.up.sql", "CREATE TABLE slow_marker (id int);\n")],
    );
    let out = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
    );
    assert!(out.contains("applied 0002_slow"), "{out}");
    assert_eq!(ledger_versions(&db).await, [1, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn no_transaction_scripts_run_statement_by_statement_without_deadlock() {
    let t = TestDb::new("notx");
    let script = "-- aidock:no-transaction\n\
        SELECT pg_sleep(0.5);\n\
        CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_users_created_at ON users (created_at);\n\
        CREATE OR REPLACE FUNCTION semi() RETURNS text LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 'a;b';\nEND;\n$$;\n\
        CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_users_updated_at ON users (updated_at);\n";
    let dir = migrations_dir(&[("0002_indexes.up.sql", script)]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .arg("init")
            .arg("--no-migrate"),
    );
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up", "--to", "1"]),
    );
    // Three migrators at once: one runs the concurrent index builds while the others poll.
    let all = run_concurrently((0..3).map(|_| {
        let mut cmd = t.cmd();
        cmd.arg("--migrations-dir")
            .arg(&dir)
            .env("AIDOCK__MIGRATE__WAIT_TIMEOUT", "30s")
            .args(["migrate", "up"]);
        cmd
    }));
    assert_eq!(all.matches("applied 0002_indexes").count(), 1, "{all}");
    let db = t.admin().await;
    let valid: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname IN ('ix_users_created_at', 'ix_users_updated_at') AND i.indisvalid",
            &[],
        )
        .await
        .expect("indexes")
        .get(0);
    assert_eq!(valid, 2);
    let semi: String = db.query_one("SELECT semi()", &[]).await.expect("fn").get(0);
    assert_eq!(semi, "a;b");
    assert_eq!(ledger_versions(&db).await, [1, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn status_json_plan_and_history_are_read_only() {
    let t = TestDb::new("status");
    run_ok(t.cmd().args(["init", "--no-migrate"]));
    // Only the AI Dock schema, whatever sql/ holds by now.
    let dir = migrations_dir(&[]);
    let m = || {
        let mut cmd = t.cmd();
        cmd.arg("--migrations-dir").arg(&dir);
        cmd
    };
    let db = t.admin().await;

    let json = run_ok(m().args(["migrate", "status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["current"], serde_json::Value::Null);
    assert_eq!(v["head"], 1);
    assert_eq!(v["up_to_date"], false);
    assert_eq!(v["pending"][0]["version"], 1);
    assert_eq!(v["pending"][0]["name"], "initial_tables");
    assert!(
        public_tables(&db).await.is_empty(),
        "status created nothing"
    );

    let plan = run_ok(m().args(["migrate", "plan"]));
    assert!(plan.contains("CREATE TABLE roles"), "{plan}");
    assert!(
        plan.contains("INSERT INTO aidock_provision.schema_history"),
        "{plan}"
    );
    assert!(
        plan.contains("INSERT INTO public.alembic_version"),
        "{plan}"
    );
    assert!(plan.trim_end().ends_with("COMMIT;"), "{plan}");
    assert!(public_tables(&db).await.is_empty(), "plan created nothing");

    run_ok(m().args(["migrate", "up"]));
    let json = run_ok(m().args(["migrate", "status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["current"], 1);
    assert_eq!(v["up_to_date"], true);
    assert_eq!(v["applied"][0]["checksum"], "ok");
    assert!(
        v["applied"][0]["applied_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );

    let down = run_ok(m().args(["migrate", "plan", "--down", "--base"]));
    assert!(down.contains("DROP TABLE usage_logs"), "{down}");
    assert!(
        down.contains("DELETE FROM aidock_provision.schema_history WHERE version = 1"),
        "{down}"
    );
    let history = run_ok(m().args(["migrate", "history", "--json"]));
    let h: serde_json::Value = serde_json::from_str(&history).expect("json");
    assert_eq!(h[0]["applied_by"], t.name.as_str());
    assert!(h[0]["execution_ms"].as_i64().is_some());
}

#[test]
fn down_needs_confirmation_and_production_needs_force() {
    let t = TestDb::new("guard");
    let out = expect_exit(t.cmd().args(["migrate", "down", "--base"]), 3);
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = expect_exit(
        t.cmd().args([
            "--profile",
            "production",
            "migrate",
            "down",
            "--base",
            "--yes",
        ]),
        3,
    );
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = expect_exit(t.cmd().args(["migrate", "down"]), 2);
    assert!(stderr(&out).contains("--base"), "{}", stderr(&out));
    // --force goes with a target and passes the guard; then production's own requirements
    // apply: TLS, which this test server does not offer.
    let args = [
        "--profile",
        "production",
        "migrate",
        "down",
        "--base",
        "--force",
        "--yes",
    ];
    let out = expect_exit(t.cmd().args(args), 1);
    assert!(
        stderr(&out).contains("does not offer TLS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn new_scaffolds_the_next_pair_and_refuses_duplicates() {
    let dir = scratch_dir("new");
    write_files(
        &dir,
        &[
            ("0001_first.up.sql", "SELECT 1;"),
            ("0001_first.down.sql", ""),
        ],
    );
    let run = |name: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aidock-provision"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "new", name]);
        c
    };
    let out = run_ok(&mut run("add_avatar"));
    assert!(out.contains("0002_add_avatar.up.sql"), "{out}");
    assert!(dir.join("0002_add_avatar.down.sql").is_file());
    let err = stderr(&expect_exit(&mut run("add_avatar"), 2));
    assert!(err.contains("already exists"), "{err}");
    let err = stderr(&expect_exit(&mut run("Bad-Name"), 2));
    assert!(err.contains("lower-case"), "{err}");
    // A stray file in the directory is an error, not silently skipped.
    write_files(&dir, &[("notes.txt", "x")]);
    let err = stderr(&expect_exit(&mut run("third"), 2));
    assert!(err.contains("notes.txt"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `migrate up` of `0002_add_nickname` behind an application transaction that holds a lock on
/// `users` (a report: `application_name` weekly-report), with short lock waits (issue #29).
async fn behind_a_report(tag: &str) -> (TestDb, std::path::PathBuf, tokio_postgres::Client, i32) {
    let t = TestDb::new(tag);
    let dir = migrations_dir(&[(
        "0002_add_nickname.up.sql",
        "ALTER TABLE users ADD COLUMN nickname text;\n",
    )]);
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up", "--to", "1"]),
    );
    let app =
        crate::support::connect(&format!("{}?application_name=weekly-report", t.app_url())).await;
    let pid: i32 = app
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    app.batch_execute("BEGIN; SELECT count(*) FROM users /* the weekly report */")
        .await
        .expect("lock");
    (t, dir, app, pid)
}

async fn nickname_applied(t: &TestDb) -> (bool, Vec<i64>) {
    let db = t.admin().await;
    let column: bool = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname')",
            &[],
        )
        .await
        .expect("column")
        .get(0);
    (column, ledger_versions(&db).await)
}

#[tokio::test]
async fn a_lock_wait_is_rolled_back_and_retried_until_the_holder_is_gone() {
    let (t, dir, app, pid) = behind_a_report("lockretry").await;
    let mut cmd = t.cmd();
    cmd.arg("--migrations-dir")
        .arg(&dir)
        .env("AIDOCK__MIGRATE__LOCK_TIMEOUT", "200ms")
        .env("AIDOCK__MIGRATE__LOCK_RETRY_FOR", "60s")
        .args(["migrate", "up"]);
    let mut run = crate::support::Watched::spawn(&mut cmd);
    // Two attempts rolled back while the report holds on; meanwhile nothing of it is there.
    run.wait_for("attempt 2 rolled back");
    assert_eq!(
        nickname_applied(&t).await,
        (false, vec![1]),
        "nothing applied while it waits"
    );
    app.batch_execute("COMMIT").await.expect("report done");
    let (status, _, err) = run.finish();
    assert!(status.success(), "{err}");
    assert!(err.contains("trying again"), "{err}");
    assert!(
        err.contains(&format!("pid {pid} (application_name 'weekly-report'"))
            && err.contains("the weekly report"),
        "the holder named: {err}"
    );
    assert!(err.contains("attempt 1 rolled back"), "{err}");
    assert_eq!(nickname_applied(&t).await, (true, vec![1, 2]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_lock_held_past_the_retry_budget_fails_naming_the_holder_with_nothing_applied() {
    let (t, dir, app, pid) = behind_a_report("lockbudget").await;
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .env("AIDOCK__MIGRATE__LOCK_TIMEOUT", "200ms")
            .env("AIDOCK__MIGRATE__LOCK_RETRY_FOR", "1s")
            .args(["migrate", "up"]),
        1,
    );
    let err = stderr(&out);
    assert!(err.contains("0002_add_nickname.up.sql: line 1"), "{err}");
    assert!(err.contains("55P03"), "lock_not_available: {err}");
    assert!(err.contains("migrate.lock_retry_for"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(
        err.contains(&format!("pid {pid} (application_name 'weekly-report'"))
            && err.contains("the weekly report")
            && err.contains("pg_terminate_backend"),
        "{err}"
    );
    assert_eq!(nickname_applied(&t).await, (false, vec![1]));
    // -q: the retries are not printed, the failure is.
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .env("AIDOCK__MIGRATE__LOCK_TIMEOUT", "200ms")
            .env("AIDOCK__MIGRATE__LOCK_RETRY_FOR", "1s")
            .args(["-q", "migrate", "up"]),
        1,
    );
    let err = stderr(&out);
    assert!(
        !err.contains("trying again") && err.contains("gave up"),
        "{err}"
    );
    app.batch_execute("ROLLBACK").await.expect("release");
    let out = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
    );
    assert!(out.contains("applied 0002_add_nickname"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sql_standard_function_bodies_apply() {
    let t = TestDb::new("atomic");
    if crate::support::server_version(&t.admin_postgres().await).await < 140_000 {
        return; // BEGIN ATOMIC bodies are PostgreSQL 14+
    }
    let dir = migrations_dir(&[(
        "0002_total.up.sql",
        "CREATE FUNCTION total_tokens(p int, c int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN p < 0 THEN 0 ELSE p END + c;\nEND;\nCREATE TABLE after_body (id int);\n",
    )]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["init", "-q"]),
    );
    let db = t.admin().await;
    let n: i32 = db
        .query_one("SELECT total_tokens(2, 3)", &[])
        .await
        .expect("function")
        .get(0);
    assert_eq!(n, 5);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "verify"]),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #14, the loop: inside a project, `sql/` (found from the project root, even from a
/// subdirectory) is the source for `migrate new`, `plan`, `up`, `status` and `init` alike.
#[tokio::test]
async fn the_project_sql_directory_is_the_source_for_every_command() {
    let db = TestDb::new("project_loop");
    let project = scratch_dir("project");
    let sql = project.join("sql");
    std::fs::create_dir_all(project.join("src")).expect("mkdir");
    std::fs::rename(migrations_dir(&[]), &sql).expect("move sql/");
    let in_src = |args: &[&str]| {
        let mut c = db.cmd();
        c.current_dir(project.join("src")).args(args);
        c
    };
    let out = run_ok(&mut in_src(&["migrate", "new", "add_avatar"]));
    assert!(out.contains("0002_add_avatar.up.sql"), "{out}");
    write_files(
        &sql,
        &[
            (
                "0002_add_avatar.up.sql",
                "ALTER TABLE users ADD COLUMN avatar text;",
            ),
            (
                "0002_add_avatar.down.sql",
                "ALTER TABLE users DROP COLUMN avatar;",
            ),
        ],
    );
    run_ok(&mut in_src(&["init"]));
    let status = run_ok(&mut in_src(&["migrate", "status"]));
    assert!(status.contains("the project's sql/"), "{status}");
    assert!(status.contains("0002 add_avatar"), "{status}");
    assert!(status.contains("up to date"), "{status}");
    let plan = run_ok(&mut in_src(&["migrate", "plan"]));
    assert!(plan.contains("nothing to do"), "{plan}");
    let again = run_ok(&mut in_src(&["init"]));
    assert!(!again.contains("applied"), "{again}");
    let client = db.admin().await;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'avatar'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(n, 1);
    // Outside any project, the binary's own copy is the source and says so.
    let elsewhere = scratch_dir("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let mut c = db.cmd();
    c.current_dir(&elsewhere).args(["migrate", "status"]);
    let out = expect_exit(&mut c, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("built into this binary"), "{text}");
    let _ = std::fs::remove_dir_all(&project);
}

/// A database from before the bookkeeping schema (issue #28): the ledger in
/// `public.aidock_schema_history`. Reads find it there; the next run that writes moves it to
/// `aidock_provision.schema_history` in its own transaction, every row kept.
#[tokio::test]
async fn a_ledger_in_the_old_place_moves_over_with_its_next_run_and_nothing_is_lost() {
    let t = TestDb::new("ledgermove");
    let only_0001 = migrations_dir(&[]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&only_0001)
            .args(["init", "-q"]),
    );
    let db = t.admin().await;
    // Where releases before kept it (the schema they did not have goes).
    db.batch_execute(
        "ALTER TABLE aidock_provision.schema_history SET SCHEMA public;
         ALTER TABLE public.schema_history RENAME TO aidock_schema_history;
         ALTER INDEX public.schema_history_pkey RENAME TO aidock_schema_history_pkey;
         UPDATE public.aidock_schema_history SET applied_by = 'an earlier release', execution_ms = 4242;
         DROP SCHEMA aidock_provision;",
    )
    .await
    .expect("the old place");
    let before: String = db
        .query_one(
            "SELECT string_agg(format('%s %s %s %s %s %s', version, name, checksum, applied_at, execution_ms, applied_by), ';') FROM public.aidock_schema_history",
            &[],
        )
        .await
        .expect("ledger")
        .get(0);

    // Read where it is: status, verify, a no-op up (which only reads, and moves nothing).
    let with = |dir: &std::path::Path| {
        let mut c = t.cmd();
        c.arg("--migrations-dir").arg(dir);
        c
    };
    let status = run_ok(with(&only_0001).args(["migrate", "status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["current"], 1, "{status}");
    assert_eq!(v["up_to_date"], true, "{status}");
    run_ok(with(&only_0001).args(["migrate", "verify"]));
    run_ok(with(&only_0001).args(["migrate", "up"]));
    let still_old: bool = db
        .query_one(
            "SELECT to_regclass('public.aidock_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .expect("regclass")
        .get(0);
    assert!(still_old, "a no-op run only reads");

    // The next run that writes moves it, in the same transaction as its migration.
    let with_0002 = migrations_dir(&[
        ("0002_note.up.sql", "CREATE TABLE note (id int);\n"),
        ("0002_note.down.sql", "DROP TABLE note;\n"),
    ]);
    run_ok(with(&with_0002).args(["migrate", "up"]));
    let (old, new): (bool, bool) = {
        let r = db
            .query_one(
                "SELECT to_regclass('public.aidock_schema_history') IS NOT NULL,
                        to_regclass('aidock_provision.schema_history') IS NOT NULL",
                &[],
            )
            .await
            .expect("regclass");
        (r.get(0), r.get(1))
    };
    assert_eq!((old, new), (false, true), "moved");
    let after: String = db
        .query_one(
            "SELECT string_agg(format('%s %s %s %s %s %s', version, name, checksum, applied_at, execution_ms, applied_by), ';') FROM aidock_provision.schema_history WHERE version = 1",
            &[],
        )
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(after, before, "row 0001 kept as it was");
    assert_eq!(ledger_versions(&db).await, [1, 2]);
    assert_eq!(
        db.query("SELECT version_num::text FROM alembic_version", &[])
            .await
            .expect("stamp")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>(),
        ["0002"]
    );
    run_ok(with(&with_0002).args(["migrate", "verify"]));
    // And back down, and up again: the ledger stays in its schema.
    run_ok(with(&with_0002).args(["migrate", "down", "--steps", "1", "--yes"]));
    assert_eq!(ledger_versions(&db).await, [1]);
}

/// Issue #40: a run that includes a no-transaction migration retries its transactional ones'
/// lock waits too (they were tried once), and a CREATE INDEX CONCURRENTLY whose earlier run was
/// interrupted (an INVALID index of its name left behind) is built again instead of refused.
#[tokio::test]
async fn runs_with_a_no_transaction_migration_retry_lock_waits_too() {
    let (t, dir, app, _pid) = behind_a_report("lockretry_nt").await;
    std::fs::write(
        dir.join("0003_index_nickname.up.sql"),
        "-- aidock:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_users_nickname ON users (nickname);\n",
    )
    .expect("write");
    let mut child = t
        .cmd()
        .arg("--migrations-dir")
        .arg(&dir)
        .env("AIDOCK__MIGRATE__LOCK_TIMEOUT", "200ms")
        .env("AIDOCK__MIGRATE__LOCK_RETRY_FOR", "60s")
        .args(["migrate", "up"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the first retry (read from its own report), not for a fixed time.
    let stderr_pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr_pipe)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_mins(1))
            .unwrap_or_else(|_| panic!("no retry within 60 s: {seen:?}"));
        let retried = line.contains("trying again");
        seen.push(line);
        if retried {
            break;
        }
    }
    assert_eq!(nickname_applied(&t).await, (false, vec![1]), "nothing yet");
    app.batch_execute("COMMIT").await.expect("report done");
    let status = child.wait().expect("wait");
    seen.extend(rx.try_iter());
    assert!(status.success(), "{seen:?}");
    assert_eq!(nickname_applied(&t).await, (true, vec![1, 2, 3]));

    // An interrupted CREATE INDEX CONCURRENTLY left its INVALID index (a unique one over
    // duplicates fails the same way a killed build does); the data fixed, `up` builds it again.
    let dup = migrations_dir(&[(
        "0002_unique_email.up.sql",
        "-- aidock:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_users_email_lower ON users (lower(email));\n",
    )]);
    let u = TestDb::new("cic_leftover");
    run_ok(u.cmd().args(["init", "-q", "--no-migrate"]));
    run_ok(
        u.cmd()
            .arg("--migrations-dir")
            .arg(&dup)
            .args(["migrate", "up", "--to", "1"]),
    );
    let db = u.admin().await;
    db.batch_execute(
        "INSERT INTO users (username, email, hashed_password) VALUES ('a', 'A@x.org', 'x'), ('b', 'a@x.org', 'x')",
    )
    .await
    .expect("duplicates");
    let out = expect_exit(
        u.cmd()
            .arg("--migrations-dir")
            .arg(&dup)
            .args(["migrate", "up"]),
        1,
    );
    assert!(stderr(&out).contains("23505"), "{}", stderr(&out));
    let invalid: i64 = db
        .query_one("SELECT count(*) FROM pg_index WHERE NOT indisvalid", &[])
        .await
        .expect("invalid")
        .get(0);
    assert_eq!(invalid, 1, "the failed build left its INVALID index");
    db.batch_execute("DELETE FROM users WHERE username = 'b'")
        .await
        .expect("fix the data");
    let out = u
        .cmd()
        .arg("--migrations-dir")
        .arg(&dup)
        .args(["migrate", "up"])
        .output()
        .expect("up");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dropped the INVALID index public.ix_users_email_lower"),
        "{}",
        stderr(&out)
    );
    let valid: bool = db
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_users_email_lower'::regclass",
            &[],
        )
        .await
        .expect("index")
        .get(0);
    assert!(valid);
}
