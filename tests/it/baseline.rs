//! `migrate baseline` (issue #15): databases the backend's SQLAlchemy / Alembic built, with rows
//! in every table, are adopted without losing or changing a row; data that blocks a step stops
//! it with the rows named; lossy steps need --allow-data-loss; a refused `init` changes nothing.

use crate::support::{
    TestDb, builtin_head, cluster, connect, expect_exit, run_ok, schema_dump, stderr, with_db,
};

/// What `create_all` (and `alembic revision --autogenerate`) emits for the backend's models in
/// `Back/app/models/`: no database-side defaults but `server_default=now()`, `JSON`, `Integer`,
/// `DECIMAL(10, 4)`, nullable booleans, uniqueness as `ix_<table>_<column>` unique indexes,
/// foreign keys without ON DELETE (except the quotas'), no checks, no trigger, no generated column.
const SQLALCHEMY: &str = r"
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
CREATE TABLE roles (
    id UUID NOT NULL, name VARCHAR(50) NOT NULL, description TEXT, permissions JSON,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(), updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_roles_name ON roles (name);
CREATE TABLE departments (
    id UUID NOT NULL, name VARCHAR(100) NOT NULL, description TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(), updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_departments_name ON departments (name);
CREATE TABLE llm_configurations (
    id UUID NOT NULL, model_name VARCHAR(100) NOT NULL, provider VARCHAR(50) NOT NULL,
    api_key_encrypted TEXT, base_url TEXT, enabled BOOLEAN, config_json JSON,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(), updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    PRIMARY KEY (id)
);
CREATE TABLE users (
    id UUID NOT NULL, username VARCHAR(50) NOT NULL, email VARCHAR(255) NOT NULL,
    hashed_password VARCHAR(255) NOT NULL, is_active BOOLEAN, is_superuser BOOLEAN,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(), updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    role_id UUID, department_id UUID,
    PRIMARY KEY (id),
    FOREIGN KEY(role_id) REFERENCES roles (id),
    FOREIGN KEY(department_id) REFERENCES departments (id)
);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_role_id ON users (role_id);
CREATE TABLE department_quotas (
    id UUID NOT NULL, department_id UUID NOT NULL, llm_config_id UUID NOT NULL,
    monthly_limit_tokens INTEGER NOT NULL, current_usage_tokens INTEGER NOT NULL,
    last_reset TIMESTAMP WITH TIME ZONE DEFAULT now(),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(), updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    PRIMARY KEY (id),
    CONSTRAINT uq_department_llm_quota UNIQUE (department_id, llm_config_id),
    FOREIGN KEY(department_id) REFERENCES departments (id) ON DELETE CASCADE,
    FOREIGN KEY(llm_config_id) REFERENCES llm_configurations (id) ON DELETE CASCADE
);
CREATE INDEX ix_department_quotas_department_id ON department_quotas (department_id);
CREATE INDEX ix_department_quotas_llm_config_id ON department_quotas (llm_config_id);
CREATE TABLE refresh_tokens (
    id UUID NOT NULL, token_hash VARCHAR(255) NOT NULL, user_id UUID NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL, is_revoked BOOLEAN,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    PRIMARY KEY (id),
    FOREIGN KEY(user_id) REFERENCES users (id)
);
CREATE UNIQUE INDEX ix_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX ix_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE TABLE usage_logs (
    id UUID NOT NULL, user_id UUID NOT NULL, department_id UUID NOT NULL, llm_config_id UUID NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE DEFAULT now(),
    tokens_prompt INTEGER NOT NULL, tokens_completion INTEGER NOT NULL,
    cost_estimated NUMERIC(10, 4), request_details JSON, response_details JSON,
    PRIMARY KEY (id),
    FOREIGN KEY(user_id) REFERENCES users (id),
    FOREIGN KEY(department_id) REFERENCES departments (id),
    FOREIGN KEY(llm_config_id) REFERENCES llm_configurations (id)
);
CREATE INDEX ix_usage_logs_user_id ON usage_logs (user_id);
CREATE INDEX ix_usage_logs_department_id ON usage_logs (department_id);
CREATE INDEX ix_usage_logs_llm_config_id ON usage_logs (llm_config_id);
CREATE INDEX ix_usage_logs_timestamp ON usage_logs (timestamp);
";

/// Rows in every table, as the backend writes them (bcrypt hashes, JSON with spacing and key
/// order jsonb does not keep, four-decimal costs).
const ROWS: &str = r#"
INSERT INTO alembic_version VALUES ('3f2a1b9c8d7e');
INSERT INTO roles VALUES ('00000000-0000-0000-0000-000000000001', 'admin', 'All rights', '["read",  "write", "admin"]', '2025-01-02 03:04:05+00', '2025-01-02 03:04:05+00'),
                         ('00000000-0000-0000-0000-000000000002', 'user', NULL, '[]', '2025-01-02 03:04:05+00', '2025-01-03 03:04:05+00');
INSERT INTO departments VALUES ('00000000-0000-0000-0000-0000000000d1', 'Engineering', 'Builds things', '2025-01-02 03:04:05+00', '2025-01-02 03:04:05+00');
INSERT INTO llm_configurations VALUES ('00000000-0000-0000-0000-0000000000c1', 'gpt-4o', 'openai', 'enc:abc', NULL, true, '{"temperature": 0.2,  "max_tokens": 512}', '2025-01-02 03:04:05+00', '2025-01-02 03:04:05+00');
INSERT INTO users VALUES ('00000000-0000-0000-0000-0000000000a1', 'alice', 'alice@example.com', '$2b$12$KIXQJ1l6b0uW5Yv1n3m5eOq8vQ2k8y4vYb3c7dQe9fG1hJ2kL3mN4', true, true, '2025-01-02 03:04:05+00', '2025-01-02 03:04:05+00', '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000d1'),
                         ('00000000-0000-0000-0000-0000000000a2', 'bob', 'bob@example.com', '$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234', false, false, '2025-01-02 03:04:05+00', '2025-02-02 03:04:05+00', NULL, NULL);
INSERT INTO department_quotas VALUES ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000c1', 100000, 2500, '2025-01-01 00:00:00+00', '2025-01-02 03:04:05+00', '2025-01-02 03:04:05+00');
INSERT INTO refresh_tokens VALUES ('00000000-0000-0000-0000-0000000000f1', 'sha256:deadbeef', '00000000-0000-0000-0000-0000000000a1', '2030-01-01 00:00:00+00', false, '2025-01-02 03:04:05+00');
INSERT INTO usage_logs VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000c1', '2025-03-04 05:06:07+00', 120, 80, 0.0125, '{"model": "gpt-4o", "messages": 3}', '{"finish":"stop"}'),
                              ('00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000c1', '2025-03-05 05:06:07+00', 0, 0, 0.0000, '{}', '{}');
"#;

/// Every original value of every table, as one hash per table (json compared as jsonb, numerics
/// without trailing zeros: the type changes keep the value, not its spelling).
async fn fingerprint(client: &tokio_postgres::Client) -> Vec<(String, String)> {
    let tables = [
        (
            "roles",
            "id, name, description, permissions::jsonb, created_at, updated_at",
        ),
        (
            "departments",
            "id, name, description, created_at, updated_at",
        ),
        (
            "llm_configurations",
            "id, model_name, provider, api_key_encrypted, base_url, enabled, config_json::jsonb, created_at, updated_at",
        ),
        (
            "users",
            "id, username, email, hashed_password, is_active, is_superuser, created_at, updated_at, role_id, department_id",
        ),
        (
            "department_quotas",
            "id, department_id, llm_config_id, monthly_limit_tokens::bigint, current_usage_tokens::bigint, last_reset, created_at, updated_at",
        ),
        (
            "refresh_tokens",
            "id, token_hash, user_id, expires_at, is_revoked, created_at",
        ),
        (
            "usage_logs",
            "id, user_id, department_id, llm_config_id, timestamp, tokens_prompt::bigint, tokens_completion::bigint, trim_scale(cost_estimated), request_details::jsonb, response_details::jsonb",
        ),
    ];
    let mut out = Vec::new();
    for (table, cols) in tables {
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') FROM (SELECT ({cols}) AS r FROM {table}) x"
        );
        let v: String = client.query_one(&sql, &[]).await.expect(&sql).get(0);
        out.push((table.to_string(), v));
    }
    out
}

/// The database as the seed guide left it: `createuser` + `createdb` by hand, then the backend's
/// tables (as the app's own role) and its rows.
async fn legacy(t: &TestDb, schema: &str, rows: &str) -> tokio_postgres::Client {
    let admin = connect(&cluster().admin_url).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {n} LOGIN PASSWORD '{p}'",
            n = t.name,
            p = t.password
        ))
        .await
        .expect("createuser");
    admin
        .batch_execute(&format!("CREATE DATABASE {n} OWNER {n}", n = t.name))
        .await
        .expect("createdb");
    let app = connect(&t.app_url()).await;
    app.batch_execute(schema)
        .await
        .expect("the backend's schema");
    app.batch_execute(rows).await.expect("rows");
    app
}

/// Database ACL and schema public's owner (what init would change).
async fn db_facts(t: &TestDb) -> (String, String) {
    let admin = connect(&cluster().admin_url).await;
    let acl: String = admin
        .query_one(
            "SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = $1",
            &[&t.name],
        )
        .await
        .expect("acl")
        .get(0);
    let app = connect(&with_db(&cluster().admin_url, &t.name)).await;
    let owner: String = app
        .query_one(
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    (acl, owner)
}

#[track_caller]
fn dump(t: &TestDb) -> String {
    schema_dump(&with_db(&t.app_url(), &t.name))
}

#[tokio::test]
async fn an_alembic_built_database_is_adopted_with_every_row_intact() {
    let t = TestDb::new("adopt");
    let app = legacy(&t, SQLALCHEMY, ROWS).await;
    let before = fingerprint(&app).await;
    let facts = db_facts(&t).await;
    let schema = dump(&t);

    // init refuses before changing anything, pointing at baseline.
    let out = expect_exit(t.cmd().arg("init"), 3);
    assert!(
        stderr(&out).contains("migrate baseline"),
        "{}",
        stderr(&out)
    );
    assert_eq!(db_facts(&t).await, facts, "a refused init changed nothing");
    assert_eq!(dump(&t), schema);
    // status says what this is; up refuses.
    let out = expect_exit(t.cmd().args(["migrate", "status"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("migrate baseline") && text.contains("3f2a1b9c8d7e"),
        "{text}"
    );
    let out = expect_exit(t.cmd().args(["migrate", "up"]), 3);
    assert!(
        stderr(&out).contains("migrate baseline"),
        "{}",
        stderr(&out)
    );
    // doctor advises baseline, not reset.
    let out = t.cmd().arg("doctor").output().expect("doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("migrate baseline") && !text.contains("run `aidock-provision reset`"),
        "{text}"
    );

    // Compare: grouped, exit 1, nothing changed.
    let out = expect_exit(t.cmd().args(["migrate", "baseline"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("safe to reconcile"), "{text}");
    assert!(!text.contains("lossy"), "{text}");
    // Issue #44 (10): what rewrites or locks which table is said, with its size.
    let locks = text
        .split("locks and rewrites")
        .nth(1)
        .unwrap_or_else(|| panic!("no locks group: {text}"));
    assert!(
        locks.contains("usage_logs (")
            && locks.contains("rows")
            && locks.contains("changing-column-type"),
        "{text}"
    );
    // Dry run: the exact transaction, nothing changed.
    let out = run_ok(t.cmd().args(["migrate", "baseline", "--dry-run"]));
    assert!(out.contains("BEGIN;") && out.contains("COMMIT;"), "{out}");
    assert!(out.contains("USING permissions::jsonb"), "{out}");
    assert_eq!(dump(&t), schema, "dry run changed nothing");
    assert_eq!(fingerprint(&app).await, before);

    run_ok(
        t.cmd()
            .args(["migrate", "baseline", "--reconcile", "--yes"]),
    );
    assert_eq!(
        fingerprint(&app).await,
        before,
        "every row survives with every value"
    );
    let out = run_ok(t.cmd().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");
    let status = run_ok(t.cmd().args(["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");
    let stamp: String = app
        .query_one("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("stamp")
        .get(0);
    assert_eq!(
        stamp,
        builtin_head(),
        "alembic_version as a fresh init stamps it"
    );
    let history = run_ok(t.cmd().args(["migrate", "history"]));
    assert!(history.contains("migrate baseline"), "{history}");
    // The bcrypt hashes the backend wrote are untouched (part of the fingerprint too).
    let hash: String = app
        .query_one(
            "SELECT hashed_password::text FROM users WHERE username = 'alice'",
            &[],
        )
        .await
        .expect("hash")
        .get(0);
    assert!(hash.starts_with("$2b$12$"));
    run_ok(t.cmd().arg("seed"));
    // Again: nothing to do; and init finds nothing to migrate.
    let again = run_ok(t.cmd().args(["migrate", "baseline"]));
    assert!(again.contains("nothing to do"), "{again}");
    let facts = db_facts(&t).await;
    let schema = dump(&t);
    let init = run_ok(t.cmd().arg("init"));
    assert!(!init.contains("applied"), "{init}");
    assert_eq!(
        db_facts(&t).await,
        facts,
        "init after adoption is a no-op: {init}"
    );
    assert_eq!(dump(&t), schema);
    assert_eq!(fingerprint(&app).await.len(), before.len());
}

#[tokio::test]
async fn an_identical_schema_is_only_recorded() {
    let t = TestDb::new("adopt_same");
    // What our own 0001 makes, built by hand (the seed guide's psql route), plus a row.
    let sql = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/0001_initial_tables.up.sql"),
    )
    .expect("0001");
    let dir = crate::support::migrations_dir(&[]);
    let app = legacy(&t, &sql, "INSERT INTO departments (name) VALUES ('Sales');").await;
    let out = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "baseline"]),
    );
    assert!(out.contains("identical: recorded 0001"), "{out}");
    let n: i64 = app
        .query_one("SELECT count(*) FROM departments", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    let status = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "status"]),
    );
    assert!(status.contains("up to date"), "{status}");
}

#[tokio::test]
async fn rows_that_block_a_step_are_named_and_nothing_changes() {
    let t = TestDb::new("adopt_blocked");
    // Uniqueness of email missing, with duplicates; a NULL where we require NOT NULL; a provider
    // our CHECK (lower case) rejects.
    let schema = SQLALCHEMY.replace(
        "CREATE UNIQUE INDEX ix_users_email ON users (email);",
        "CREATE INDEX ix_users_email ON users (email);",
    );
    let rows = ROWS
        .replace("'bob@example.com'", "'alice@example.com'")
        .replace("'enc:abc', NULL, true,", "'enc:abc', NULL, NULL,")
        .replace("'gpt-4o', 'openai'", "'gpt-4o', 'OpenAI'");
    let app = legacy(&t, &schema, &rows).await;
    let before = fingerprint(&app).await;
    let schema_before = dump(&t);
    let out = expect_exit(
        t.cmd()
            .args(["migrate", "baseline", "--reconcile", "--yes"]),
        1,
    );
    let err = stderr(&out);
    assert!(
        err.contains("alice@example.com (2 rows)"),
        "duplicates named: {err}"
    );
    assert!(
        err.contains("id=00000000-0000-0000-0000-0000000000c1"),
        "NULL / CHECK rows named: {err}"
    );
    assert!(err.contains("llm_configurations.enabled"), "{err}");
    assert!(
        err.contains("ck_llm_configurations_provider_lower"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(fingerprint(&app).await, before);
    assert_eq!(dump(&t), schema_before);
    // The report without --reconcile lists them too, grouped.
    let out = expect_exit(t.cmd().args(["migrate", "baseline"]), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("blocked by data"));
}

#[tokio::test]
async fn a_lossy_difference_needs_allow_data_loss() {
    let t = TestDb::new("adopt_lossy");
    // A team's own extra column, and the email uniqueness as a constraint under PostgreSQL's
    // default name instead of our index.
    let schema = SQLALCHEMY
        .replace(
            "role_id UUID, department_id UUID,\n    PRIMARY KEY (id),",
            "role_id UUID, department_id UUID, nickname TEXT,\n    PRIMARY KEY (id), UNIQUE (email),",
        )
        .replace("CREATE UNIQUE INDEX ix_users_email ON users (email);", "")
        // No composite unique on the quotas; a trigger of the team's own.
        .replace(
            "    CONSTRAINT uq_department_llm_quota UNIQUE (department_id, llm_config_id),\n",
            "",
        )
        + "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$;\n\
           CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();\n";
    let rows = ROWS
        .replace(
            "'00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000d1')",
            "'00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000d1', 'ally')",
        )
        .replace("NULL, NULL);", "NULL, NULL, NULL);");
    let app = legacy(&t, &schema, &rows).await;
    let before = fingerprint(&app).await;
    let schema_before = dump(&t);
    let out = expect_exit(
        t.cmd()
            .args(["migrate", "baseline", "--reconcile", "--yes"]),
        3,
    );
    let err = stderr(&out);
    assert!(err.contains("column users.nickname is dropped"), "{err}");
    assert!(err.contains("--allow-data-loss"), "{err}");
    assert_eq!(dump(&t), schema_before, "nothing changed");
    let out = run_ok(t.cmd().args([
        "migrate",
        "baseline",
        "--reconcile",
        "--allow-data-loss",
        "--yes",
    ]));
    assert!(
        out.contains("column users.nickname is dropped"),
        "reported: {out}"
    );
    assert!(out.contains("reconciled"), "{out}");
    run_ok(t.cmd().args(["migrate", "verify"]));
    assert_eq!(fingerprint(&app).await, before, "every kept value survives");
    let status = run_ok(t.cmd().args(["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");
    let n: i64 = app
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2);
}

/// The backend's Alembic with no revision of its own (`alembic upgrade head` on an empty
/// `versions/`) leaves only an empty `alembic_version`: that is no schema, and `init` migrates it.
#[tokio::test]
async fn an_empty_alembic_version_alone_is_not_a_foreign_schema() {
    let t = TestDb::new("adopt_empty");
    let app = legacy(
        &t,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));",
        "",
    )
    .await;
    run_ok(t.cmd().args(["init", "-q"]));
    let status = run_ok(t.cmd().args(["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");
    let stamp: String = app
        .query_one("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("stamp")
        .get(0);
    assert_eq!(stamp, builtin_head());
}

/// An admin that may not act for the app's role (not a superuser, not a member) is told so
/// before anything changes.
#[tokio::test]
async fn an_admin_that_may_not_act_for_the_role_is_refused_up_front() {
    let t = TestDb::new("adopt_weak");
    let _app = legacy(&t, SQLALCHEMY, ROWS).await;
    let admin = connect(&cluster().admin_url).await;
    let weak = format!("{}_adm", t.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {weak} LOGIN CREATEDB CREATEROLE PASSWORD 'weak-pw'"
        ))
        .await
        .expect("weak admin");
    let url = format!(
        "postgresql://{weak}:weak-pw@127.0.0.1:{}/postgres",
        crate::support::cluster().port
    );
    let before = dump(&t);
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &url)
            .args(["migrate", "baseline", "--reconcile", "--yes"]),
        3,
    );
    let err = stderr(&out);
    assert!(err.contains("neither a superuser nor a member"), "{err}");
    assert!(err.contains(&t.name), "{err}");
    assert_eq!(dump(&t), before, "nothing changed");
}

/// The database as the seed guide's manual steps left it when the admin ran `createdb` without
/// OWNER: the admin owns it, the app's role has `GRANT ALL`, and its tables are the role's.
async fn legacy_owned_by_admin(t: &TestDb, schema: &str, rows: &str) -> tokio_postgres::Client {
    let admin = connect(&cluster().admin_url).await;
    for sql in [
        format!(
            "CREATE ROLE {n} LOGIN PASSWORD '{p}'",
            n = t.name,
            p = t.password
        ),
        format!("CREATE DATABASE {n}", n = t.name),
        format!("GRANT ALL ON DATABASE {n} TO {n}", n = t.name),
    ] {
        admin.batch_execute(&sql).await.expect("manual setup");
    }
    connect(&with_db(&cluster().admin_url, &t.name))
        .await
        .batch_execute(&format!("GRANT ALL ON SCHEMA public TO {}", t.name))
        .await
        .expect("grant on public");
    let app = connect(&t.app_url()).await;
    app.batch_execute(schema)
        .await
        .expect("the backend's schema");
    app.batch_execute(rows).await.expect("rows");
    app
}

/// Blockers are found on the app's login (a table it cannot read is "not checked", and the
/// reconcile stops on its rows with nothing changed); the report's groups say what the reconcile does (no DROP under "safe", a plain `tokens_total`
/// that already holds the sums is re-made as generated without loss); `init` after the
/// adoption changes nothing, even where the admin owned the database.
#[tokio::test]
async fn the_report_says_what_the_reconcile_does() {
    let t = TestDb::new("adopt_groups");
    // A team's variant: tokens_total stored by the ORM, holding the sums.
    let schema = SQLALCHEMY.replace(
        "tokens_completion INTEGER NOT NULL,",
        "tokens_completion INTEGER NOT NULL, tokens_total INTEGER,",
    );
    let rows = ROWS
        .replace(", 120, 80, 0.0125,", ", 120, 80, 200, 0.0125,")
        .replace(", 0, 0, 0.0000,", ", 0, 0, 0, 0.0000,");
    let app = legacy_owned_by_admin(&t, &schema, &rows).await;
    let out = expect_exit(t.cmd().args(["migrate", "baseline", "--json"]), 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = |field: &str| -> Vec<String> {
        report[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} in {report}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let safe = list("safe");
    assert!(
        safe.iter()
            .all(|s| !s.contains(" DROP ") && !s.contains(": DROP")),
        "nothing under safe drops: {safe:#?}"
    );
    assert!(
        safe.iter()
            .any(|s| s.starts_with("column usage_logs.tokens_total: made again as GENERATED")),
        "{safe:#?}"
    );
    assert!(list("lossy").is_empty(), "{report}");
    assert!(
        list("dropped")
            .iter()
            .any(|s| s.starts_with("index ix_department_quotas_department_id")),
        "{report}"
    );
    // A stored total that differs from the sum blocks the re-make instead.
    app.batch_execute("UPDATE usage_logs SET tokens_total = 1 WHERE tokens_prompt = 0")
        .await
        .expect("update");
    let out = expect_exit(t.cmd().args(["migrate", "baseline"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("column usage_logs.tokens_total: these rows store a tokens_total")
            && text.contains("id=00000000-0000-0000-0000-0000000000b2, tokens_total=1"),
        "{text}"
    );
    app.batch_execute("UPDATE usage_logs SET tokens_total = 0 WHERE tokens_prompt = 0")
        .await
        .expect("update");

    // A NULL the app's role cannot see (the table is another role's, and closed to it). The data
    // checks run on the app's own login (issue #40: never as the admin, whose reading of the
    // app's database could run the app's code), so this one is "not checked", saying why; the
    // reconcile itself then stops on the row (the server checks SET NOT NULL), and the table's
    // owner, which the admin changed first, is put back: nothing changed.
    let admin = t.admin().await;
    let other = format!("{}_other", t.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {other} NOLOGIN;
             UPDATE users SET is_active = NULL WHERE username = 'bob';
             ALTER TABLE users OWNER TO {other};
             REVOKE ALL ON users FROM {app};",
            app = t.name
        ))
        .await
        .expect("hide users");
    let out = expect_exit(t.cmd().args(["migrate", "baseline"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    let unchecked = text
        .split_once("not checked against the data")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        unchecked.contains("column users.is_active")
            && unchecked.contains("permission denied for table users"),
        "{text}"
    );
    let out = expect_exit(
        t.cmd()
            .args(["migrate", "baseline", "--reconcile", "--yes"]),
        1,
    );
    let err = stderr(&out);
    assert!(
        err.contains("column \"is_active\"") && err.contains("contains null values"),
        "{err}"
    );
    let users_owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.users'::regclass",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(users_owner, other, "the admin's owner change was put back");
    admin
        .batch_execute(&format!(
            "UPDATE users SET is_active = false WHERE username = 'bob';
             ALTER TABLE users OWNER TO {app};",
            app = t.name
        ))
        .await
        .expect("give users back");

    run_ok(
        t.cmd()
            .args(["migrate", "baseline", "--reconcile", "--yes"]),
    );
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(
        owner, t.name,
        "the database is the role's, as init makes it"
    );
    let facts = db_facts(&t).await;
    let schema = dump(&t);
    let init = run_ok(t.cmd().arg("init"));
    assert!(init.contains("nothing to change"), "{init}");
    assert_eq!(db_facts(&t).await, facts, "init after adoption is a no-op");
    assert_eq!(dump(&t), schema);
}
