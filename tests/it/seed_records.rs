//! Issue #33 (and #26's seed seams): what `seed --dev` keeps, adds or removes follows the data in
//! the table, not only its own record; staging tables go on every way out; a role's timeouts do
//! not stop a load.

use crate::seed::{count, logs_digest, quotas_match_logs, staging_tables};
use crate::support::{TestDb, expect_exit, run_ok, stderr};

fn seed_dev(t: &TestDb, users: &str, logs: &str) -> std::process::Command {
    let mut cmd = t.cmd();
    cmd.args(["seed", "--dev", "--users", users, "--usage-logs", logs]);
    cmd
}

/// After `migrate down --base` and `up`, the record says rows exist that do not: the table wins.
#[tokio::test]
async fn down_to_base_and_up_then_seed_loads_every_row_again() {
    let t = TestDb::new("srdown");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(&mut seed_dev(&t, "10", "1000"));
    let db = t.admin().await;
    let first = rows_but_time(&db).await;
    run_ok(t.cmd().args(["migrate", "down", "--base", "--yes", "-q"]));
    run_ok(t.cmd().args(["migrate", "up", "-q"]));
    let out = run_ok(&mut seed_dev(&t, "10", "1000"));
    assert!(out.contains("usage_logs           1000 inserted"), "{out}");
    assert_eq!(count(&db, "usage_logs").await, 1000);
    quotas_match_logs(&db).await;
    // The same flags, the same rows (ids and columns) as before, once the anchor is the same.
    let ids: i64 = db
        .query_one(
            "SELECT count(*) FROM usage_logs WHERE id::text LIKE 'ad0c5eed-%'",
            &[],
        )
        .await
        .expect("ids")
        .get(0);
    assert_eq!(ids, 1000, "every row carries the seed's mark");
    assert_eq!(
        rows_but_time(&db).await,
        first,
        "the same rows (timestamps count from now)"
    );
}

/// The rows' ids and columns, all but the timestamp.
async fn rows_but_time(db: &tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT md5(string_agg(concat_ws(',', id, tokens_total, cost_estimated, request_details), '|' ORDER BY id)) FROM usage_logs",
        &[],
    )
    .await
    .expect("digest")
    .get(0)
}

/// #26 item 3: `seed --dev`, then `seed --dev --users 30` (same rng seed): no duplicate key; the
/// logs are the new flags' set, exactly N of them.
#[tokio::test]
async fn more_users_with_the_same_seed_replaces_the_logs() {
    let t = TestDb::new("srusers");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(&mut seed_dev(&t, "25", "3000"));
    let db = t.admin().await;
    let before = logs_digest(&db).await;
    let out = run_ok(&mut seed_dev(&t, "30", "3000"));
    assert!(out.contains("3000 inserted, 3000 removed, 0 kept"), "{out}");
    assert_eq!(count(&db, "usage_logs").await, 3000);
    assert_ne!(logs_digest(&db).await, before);
    quotas_match_logs(&db).await;
    // And back: the first flags' rows exactly.
    run_ok(&mut seed_dev(&t, "25", "3000"));
    assert_eq!(count(&db, "usage_logs").await, 3000);
    let again = logs_digest(&db).await;
    assert_eq!(
        again.split(':').next(),
        before.split(':').next(),
        "same count"
    );
}

/// Rows as an earlier release wrote them: random ids in the generator's form, with no record
/// (5ad2ffc) or with a record of another format (3e6d51a). The same flags leave exactly N, and a
/// row the application wrote (another form) is kept untouched.
#[tokio::test]
async fn a_database_seeded_by_an_earlier_release_converges_to_n() {
    let t = TestDb::new("srold");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(&mut seed_dev(&t, "10", "0"));
    let db = t.admin().await;
    // What 5ad2ffc's `seed --dev --usage-logs 3000` left: 3000 rows, random ids, no record.
    db.batch_execute(
        "INSERT INTO usage_logs (id, user_id, department_id, llm_config_id, \"timestamp\", tokens_prompt,
                                 tokens_completion, cost_estimated, request_details, response_details)
         SELECT gen_random_uuid(), u.id, u.department_id, c.id, now() - (g % 90) * interval '1 day',
                20 + g % 3000, 10 + g % 2000, 0.01,
                jsonb_build_object('endpoint', '/api/v1/chat', 'messages', 1 + g % 11,
                                   'temperature', (g % 11) / 10.0, 'stream', g % 2 = 0),
                jsonb_build_object('finish_reason', 'stop', 'latency_ms', 200 + g % 7800)
         FROM generate_series(1, 3000) g
         CROSS JOIN LATERAL (SELECT id, department_id FROM users WHERE department_id IS NOT NULL
                             ORDER BY username OFFSET g % 5 LIMIT 1) u
         CROSS JOIN LATERAL (SELECT id FROM llm_configurations WHERE enabled ORDER BY model_name LIMIT 1) c;
         -- 3e6d51a's record: another identity format, where releases then kept it.
         ALTER TABLE aidock_provision.seed_runs SET SCHEMA public;
         ALTER TABLE public.seed_runs RENAME TO aidock_seed_runs;
         ALTER INDEX public.seed_runs_pkey RENAME TO aidock_seed_runs_pkey;
         DELETE FROM public.aidock_seed_runs;
         INSERT INTO public.aidock_seed_runs (identity, usage_logs, anchor)
         VALUES ('usage_logs rng_seed=42 days=90 users=10', 3000, now());
         -- A row the application wrote.
         INSERT INTO usage_logs (user_id, department_id, llm_config_id, tokens_prompt, request_details)
         SELECT id, department_id, (SELECT id FROM llm_configurations ORDER BY model_name LIMIT 1), 7,
                '{\"endpoint\": \"/api/v1/chat\", \"model\": \"x\"}'
         FROM users WHERE username = 'admin';
         UPDATE department_quotas SET current_usage_tokens = current_usage_tokens + 12345;"
    )
    .await
    .expect("an earlier release's rows");
    let app_row: String = db
        .query_one(
            "SELECT l::text FROM usage_logs l WHERE tokens_prompt = 7",
            &[],
        )
        .await
        .expect("app row")
        .get(0);
    let out = run_ok(&mut seed_dev(&t, "10", "3000"));
    assert!(
        out.contains("(3000 made by an earlier release's seed)"),
        "{out}"
    );
    assert_eq!(
        count(&db, "usage_logs").await,
        3001,
        "3000 and the app's row"
    );
    quotas_match_logs(&db).await;
    run_ok(&mut seed_dev(&t, "10", "1000"));
    assert_eq!(count(&db, "usage_logs").await, 1001);
    let kept: String = db
        .query_one(
            "SELECT l::text FROM usage_logs l WHERE tokens_prompt = 7",
            &[],
        )
        .await
        .expect("app row")
        .get(0);
    assert_eq!(kept, app_row, "the application's row is untouched");
    let records: i64 = db
        .query_one("SELECT count(*) FROM aidock_provision.seed_runs", &[])
        .await
        .expect("records")
        .get(0);
    assert_eq!(records, 1, "one record, of the rows that are there");
    let old_place: bool = db
        .query_one(
            "SELECT to_regclass('public.aidock_seed_runs') IS NOT NULL",
            &[],
        )
        .await
        .expect("old place")
        .get(0);
    assert!(!old_place, "the record moved to aidock_provision.seed_runs");
    quotas_match_logs(&db).await;
}

/// Rows of the flags with a hole (some deleted by hand): the set is made again, whole.
#[tokio::test]
async fn a_set_with_holes_is_made_whole() {
    let t = TestDb::new("srholes");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(&mut seed_dev(&t, "10", "2000"));
    let db = t.admin().await;
    let whole = logs_digest(&db).await;
    db.batch_execute(
        "DELETE FROM usage_logs WHERE id IN (SELECT id FROM usage_logs ORDER BY id OFFSET 100 LIMIT 5)",
    )
    .await
    .expect("holes");
    run_ok(&mut seed_dev(&t, "10", "2000"));
    assert_eq!(logs_digest(&db).await, whole, "the same 2000 rows again");
    quotas_match_logs(&db).await;
}

/// A staging table a killed run left, then a run that fails: the clean-up was committed before
/// the failing transaction began, so the table is gone anyway.
#[tokio::test]
async fn a_failing_run_still_drops_what_a_killed_run_left() {
    let t = TestDb::new("srstale");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(&mut seed_dev(&t, "5", "0"));
    let db = t.admin().await;
    db.batch_execute(&format!(
        "CREATE UNLOGGED TABLE public.aidock_seed_stage_deadrun0000_0 (id uuid);
         ALTER TABLE public.aidock_seed_stage_deadrun0000_0 OWNER TO \"{}\";",
        t.name
    ))
    .await
    .expect("a killed run's table");
    crate::support::Fault::Always("injected failure")
        .inject(&db, "usage_logs", &t.name)
        .await;
    let out = expect_exit(
        t.cmd().env("AIDOCK__SEED__COPY_CONNECTIONS", "2").args([
            "seed",
            "--dev",
            "--users",
            "5",
            "--usage-logs",
            "20000",
        ]),
        1,
    );
    assert!(
        stderr(&out).contains("injected failure"),
        "{}",
        stderr(&out)
    );
    assert_eq!(staging_tables(&db).await, 0);
}

/// A role with a 50 ms statement_timeout and a 200 ms idle_in_transaction_session_timeout: the
/// seed's sessions set their own, and the load over several connections completes.
#[tokio::test]
async fn a_roles_timeouts_do_not_stop_the_load() {
    let t = TestDb::new("srtimeout");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    db.batch_execute(&format!(
        "ALTER ROLE \"{0}\" SET statement_timeout = '50ms';
         ALTER ROLE \"{0}\" SET idle_in_transaction_session_timeout = '200ms';",
        t.name
    ))
    .await
    .expect("role settings");
    run_ok(seed_dev(&t, "20", "200000").env("AIDOCK__SEED__COPY_CONNECTIONS", "2"));
    assert_eq!(count(&db, "usage_logs").await, 200_000);
    quotas_match_logs(&db).await;
    run_ok(&mut seed_dev(&t, "20", "250000"));
    assert_eq!(count(&db, "usage_logs").await, 250_000);
    assert_eq!(staging_tables(&db).await, 0);
}

/// When the staging tables cannot be dropped (an event trigger refuses here), the error says so
/// and gives the statement that drops them; that statement works once the obstacle is gone.
#[tokio::test]
async fn a_failed_clean_up_gives_the_drop_to_run() {
    let t = TestDb::new("srnodrop");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(&mut seed_dev(&t, "5", "0"));
    let db = t.admin().await;
    crate::support::Fault::Always("injected failure")
        .inject(&db, "usage_logs", &t.name)
        .await;
    db.batch_execute(
        "CREATE FUNCTION keep_stages() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects()
                      WHERE object_identity LIKE '%aidock_seed_stage%') THEN
             RAISE EXCEPTION 'injected: staging tables may not be dropped';
           END IF;
         END $$;
         CREATE EVENT TRIGGER keep_stages ON sql_drop EXECUTE FUNCTION keep_stages();",
    )
    .await
    .expect("obstacles");
    let out = expect_exit(
        t.cmd().env("AIDOCK__SEED__COPY_CONNECTIONS", "2").args([
            "seed",
            "--dev",
            "--users",
            "5",
            "--usage-logs",
            "20000",
        ]),
        1,
    );
    let err = stderr(&out);
    assert!(err.contains("injected failure"), "the cause first: {err}");
    let drop = err
        .split('`')
        .find(|s| s.starts_with("DROP TABLE IF EXISTS "))
        .unwrap_or_else(|| panic!("the statement to run: {err}"))
        .to_string();
    assert_eq!(staging_tables(&db).await, 2, "{err}");
    db.batch_execute("DROP EVENT TRIGGER keep_stages")
        .await
        .expect("obstacle gone");
    db.batch_execute(&drop).await.expect("the given statement");
    assert_eq!(staging_tables(&db).await, 0);
}
