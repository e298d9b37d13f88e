//! `seed` and `seed --dev` against a real schema.

use argon2::PasswordVerifier as _;

use crate::support::{
    TestDb, bin, expect_exit, free_port, run_ok, scratch_dir, stderr, write_files,
};

pub(crate) async fn count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn seed_is_idempotent_keeps_edits_and_overwrite_restores_them() {
    let t = TestDb::new("seed");
    run_ok(t.cmd().args(["init", "-q"]));
    let first = run_ok(t.cmd().arg("seed"));
    assert!(first.contains("roles                4 inserted"), "{first}");
    let db = t.admin().await;
    let counts = [
        count(&db, "roles").await,
        count(&db, "departments").await,
        count(&db, "llm_configurations").await,
        count(&db, "department_quotas").await,
    ];
    assert_eq!(counts, [4, 6, 8, 48]);

    let second = run_ok(t.cmd().arg("seed"));
    assert_eq!(
        second.matches(" 0 inserted, 0 updated").count(),
        4,
        "{second}"
    );
    assert_eq!(
        [
            count(&db, "roles").await,
            count(&db, "departments").await,
            count(&db, "llm_configurations").await,
            count(&db, "department_quotas").await,
        ],
        counts
    );

    // No raw keys: only $ENV references.
    let raw: i64 = db
        .query_one(
            "SELECT count(*) FROM llm_configurations WHERE api_key_encrypted IS NOT NULL AND api_key_encrypted !~ '^\\$[A-Z][A-Z0-9_]*$'",
            &[],
        )
        .await
        .expect("keys")
        .get(0);
    assert_eq!(raw, 0);

    db.batch_execute("UPDATE roles SET permissions = '[\"chat\"]' WHERE name = 'analyst'")
        .await
        .expect("edit");
    let kept = run_ok(t.cmd().arg("seed"));
    assert!(
        kept.contains("roles                0 inserted, 0 updated, 4 kept"),
        "{kept}"
    );
    let restored = run_ok(t.cmd().args(["seed", "--overwrite"]));
    assert!(
        restored.contains("roles                0 inserted, 1 updated, 3 kept"),
        "{restored}"
    );
    let permissions: serde_json::Value = db
        .query_one("SELECT permissions FROM roles WHERE name = 'analyst'", &[])
        .await
        .expect("role")
        .get(0);
    assert_eq!(
        permissions,
        serde_json::json!(["chat", "view_profile", "view_usage", "view_reports"])
    );
}

async fn seeded_dev(tag: &str) -> (TestDb, tokio_postgres::Client) {
    let t = TestDb::new(tag);
    run_ok(t.cmd().args(["init", "-q"]));
    let out = run_ok(t.cmd().args([
        "seed",
        "--dev",
        "--users",
        "40",
        "--usage-logs",
        "2000",
        "--rng-seed",
        "7",
    ]));
    assert!(out.contains("fake users           40 inserted"), "{out}");
    assert!(
        out.contains("AdminPassword123"),
        "credentials are printed once: {out}"
    );
    let db = t.admin().await;
    (t, db)
}

async fn usernames(db: &tokio_postgres::Client) -> Vec<String> {
    db.query("SELECT username::text FROM users ORDER BY username", &[])
        .await
        .expect("users")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn seed_dev_is_deterministic_hashed_and_consistent() {
    let ((t, a), (_u, b)) = tokio::join!(seeded_dev("deva"), seeded_dev("devb"));
    let names = usernames(&a).await;
    assert_eq!(names.len(), 43);
    assert_eq!(names, usernames(&b).await, "same --rng-seed, same users");

    let hasher = argon2::Argon2::default();
    let fixed = [
        ("admin", "AdminPassword123"),
        ("user1", "UserPassword123"),
        ("analyst", "AnalystPassword789"),
    ];
    for row in a
        .query(
            "SELECT username::text, hashed_password::text FROM users",
            &[],
        )
        .await
        .expect("users")
    {
        let (user, hash): (String, String) = (row.get(0), row.get(1));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{user}: {hash}"
        );
        let password = fixed
            .iter()
            .find(|(u, _)| *u == user)
            .map_or("DevUser2024", |(_, p)| p);
        assert!(
            hasher
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok(),
            "{user}'s hash does not verify"
        );
    }
    let admin: (bool, String, String) = a
        .query_one(
            "SELECT u.is_superuser, r.name::text, d.name::text FROM users u JOIN roles r ON r.id = u.role_id \
             JOIN departments d ON d.id = u.department_id WHERE u.username = 'admin'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .expect("admin");
    assert_eq!(admin, (true, "admin".into(), "IT".into()));

    assert_eq!(count(&a, "usage_logs").await, 2000);
    let bad: i64 = a
        .query_one(
            "SELECT count(*) FROM usage_logs l \
             LEFT JOIN users u ON u.id = l.user_id LEFT JOIN departments d ON d.id = l.department_id \
             LEFT JOIN llm_configurations c ON c.id = l.llm_config_id \
             WHERE u.id IS NULL OR d.id IS NULL OR c.id IS NULL OR u.department_id <> l.department_id \
                OR l.\"timestamp\" < now() - interval '90 days' OR l.\"timestamp\" > now() \
                OR abs(l.cost_estimated - round((l.tokens_prompt * (c.config_json->>'price_per_1k_prompt')::numeric \
                       + l.tokens_completion * (c.config_json->>'price_per_1k_completion')::numeric) / 1000, 6)) > 0.000001 \
                OR l.tokens_total <> l.tokens_prompt + l.tokens_completion OR l.tokens_prompt <= 0",
            &[],
        )
        .await
        .expect("consistency")
        .get(0);
    assert_eq!(
        bad, 0,
        "every usage log is consistent with its user, department and prices"
    );

    // Quotas count this month's fake usage.
    let (usage, quota): (i64, i64) = a
        .query_one(
            "SELECT (SELECT coalesce(sum(l.tokens_total), 0)::bigint FROM usage_logs l \
                      JOIN department_quotas q ON q.department_id = l.department_id AND q.llm_config_id = l.llm_config_id \
                      WHERE l.\"timestamp\" >= date_trunc('month', now())), \
                    (SELECT sum(current_usage_tokens)::bigint FROM department_quotas)",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("quotas");
    assert_eq!(usage, quota);

    // A second run keeps the users and says so.
    let again = run_ok(t.cmd().args([
        "seed",
        "--dev",
        "--users",
        "40",
        "--usage-logs",
        "10",
        "--rng-seed",
        "7",
    ]));
    assert!(
        again.contains("test accounts        0 inserted, 0 updated, 3 kept"),
        "{again}"
    );
    assert!(
        again.contains("fake users           0 inserted, 0 updated, 40 kept"),
        "{again}"
    );
    assert_eq!(count(&a, "users").await, 43);
}

#[test]
fn seed_dev_is_refused_in_production_before_connecting() {
    // Nothing listens here: connecting would exit 4, not 3.
    let url = format!("postgres://nobody@127.0.0.1:{}/postgres", free_port());
    let out = expect_exit(
        bin()
            .env("AIDOCK_ADMIN_URL", &url)
            .args(["--profile", "production", "seed", "--dev"]),
        3,
    );
    assert!(stderr(&out).contains("production"), "{}", stderr(&out));
}

#[test]
fn seed_before_migrate_and_bad_seed_files_are_explained() {
    let t = TestDb::new("unseeded");
    run_ok(t.cmd().args(["init", "--no-migrate", "-q"]));
    let out = expect_exit(t.cmd().arg("seed"), 1);
    assert!(stderr(&out).contains("init"), "{}", stderr(&out));

    let dir = scratch_dir("seeds");
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(builtin).expect("seeds/") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    write_files(
        &dir,
        &[(
            "quotas.toml",
            "[templates]\nsmall = 1\n[departments]\nLegal = \"small\"\n",
        )],
    );
    let out = expect_exit(t.cmd().arg("--seeds-dir").arg(&dir).arg("seed"), 2);
    let err = stderr(&out);
    assert!(
        err.contains("quotas.toml") && err.contains("Legal"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failed_usage_log_load_leaves_no_logs_on_any_connection() {
    let t = TestDb::new("copyfail");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(
        t.cmd()
            .args(["seed", "--dev", "--users", "5", "--usage-logs", "0", "-q"]),
    );
    let db = t.admin().await;
    // The 2500th row, on whichever connection writes it, fails.
    crate::support::Fault::AtRow(2500, "injected failure")
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
    assert_eq!(count(&db, "usage_logs").await, 0, "no connection committed");
    assert_eq!(
        staging_tables(&db).await,
        0,
        "the failed run dropped its staging tables"
    );
    let used: i64 = db
        .query_one(
            "SELECT coalesce(sum(current_usage_tokens), 0)::bigint FROM department_quotas",
            &[],
        )
        .await
        .expect("quotas")
        .get(0);
    assert_eq!(used, 0);
}

#[tokio::test]
async fn concurrent_seeds_all_succeed_and_insert_each_row_once() {
    let t = TestDb::new("seedrace");
    run_ok(t.cmd().args(["init", "-q"]));
    crate::support::run_concurrently((0..4).map(|_| {
        let mut cmd = t.cmd();
        cmd.arg("seed");
        cmd
    }));
    let db = t.admin().await;
    assert_eq!(
        [
            count(&db, "roles").await,
            count(&db, "departments").await,
            count(&db, "llm_configurations").await,
            count(&db, "department_quotas").await,
        ],
        [4, 6, 8, 48]
    );
}

async fn hash_of(db: &tokio_postgres::Client, username: &str) -> String {
    db.query_one(
        "SELECT hashed_password FROM users WHERE username = $1",
        &[&username],
    )
    .await
    .expect("user")
    .get(0)
}

#[tokio::test]
async fn bcrypt_for_the_backend_argon2id_by_default_and_an_adopted_scheme_followed() {
    // bcrypt: what the AI Dock backend's passlib context verifies.
    let t = TestDb::new("bcrypt");
    run_ok(t.cmd().args(["init", "-q"]));
    let out = run_ok(
        t.cmd()
            .env("AIDOCK__SEED__PASSWORD_SCHEME", "bcrypt")
            .args(["seed", "--dev", "--users", "3", "--usage-logs", "0"]),
    );
    assert!(out.contains("passwords") && out.contains("bcrypt"), "{out}");
    let db = t.admin().await;
    let admin_hash = hash_of(&db, "admin").await;
    assert!(admin_hash.starts_with("$2b$12$"), "{admin_hash}");
    assert!(bcrypt::verify("AdminPassword123", &admin_hash).expect("verify"));
    assert!(!bcrypt::verify("AdminPassword124", &admin_hash).expect("verify"));
    assert!(bcrypt::verify("UserPassword123", &hash_of(&db, "user1").await).expect("verify"));
    // The fake users share one password, hence one hash.
    let distinct: i64 = db
        .query_one(
            "SELECT count(DISTINCT hashed_password) FROM users WHERE username NOT IN ('admin', 'user1', 'analyst')",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(distinct, 1);

    // The default stays argon2id.
    let a = TestDb::new("argon");
    run_ok(a.cmd().args(["init", "-q"]));
    run_ok(
        a.cmd()
            .args(["seed", "--dev", "--users", "1", "--usage-logs", "0"]),
    );
    assert!(
        hash_of(&a.admin().await, "admin")
            .await
            .starts_with("$argon2id$")
    );

    // A database whose users already carry bcrypt hashes (adopted): new users follow it.
    let u = TestDb::new("adopted");
    run_ok(u.cmd().args(["init", "-q"]));
    run_ok(u.cmd().args(["seed", "-q"]));
    let db = u.admin().await;
    let existing = bcrypt::hash("Existing123", 4).expect("hash");
    db.execute(
        "INSERT INTO users (username, email, hashed_password) VALUES ('existing', 'existing@example.com', $1)",
        &[&existing],
    )
    .await
    .expect("an existing user");
    let out = run_ok(
        u.cmd()
            .args(["seed", "--dev", "--users", "1", "--usage-logs", "0"]),
    );
    assert!(
        out.contains("the scheme of the users already in the database"),
        "{out}"
    );
    assert!(hash_of(&db, "admin").await.starts_with("$2b$12$"));
    assert_eq!(
        hash_of(&db, "existing").await,
        existing,
        "existing hashes stay untouched"
    );
    // A bad value names the key.
    let out = crate::support::expect_exit(
        u.cmd()
            .env("AIDOCK__SEED__PASSWORD_SCHEME", "md5")
            .args(["seed"]),
        2,
    );
    assert!(crate::support::stderr(&out).contains("seed.password_scheme"));
}

/// Staging tables of seed --dev in the database.
pub(crate) async fn staging_tables(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'aidock\\_seed\\_stage\\_%'",
        &[],
    )
    .await
    .expect("staging")
    .get(0)
}

/// Until a COPY runs in this database. The child ending first, or a minute passing, fails the
/// test: what a test does next (a kill, a failover) must land in the middle of the load, or the
/// test would pass without testing it.
pub(crate) async fn wait_for_copy(db: &tokio_postgres::Client, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let copying: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if copying > 0 {
            return;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the run ended ({status}) before any COPY was seen: give it more rows to load");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no COPY within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Kill the child (SIGKILL) and check that the kill is what ended it (not an exit of its own
/// just before).
#[track_caller]
pub(crate) fn kill_landed(child: &mut std::process::Child) {
    use std::os::unix::process::ExitStatusExt as _;
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the kill landed mid-run (the run had ended by itself: {status})"
    );
}

/// Every quota counter equals this month's tokens of the stored logs.
pub(crate) async fn quotas_match_logs(db: &tokio_postgres::Client) {
    let off: i64 = db
        .query_one(
            "SELECT count(*) FROM department_quotas q WHERE q.current_usage_tokens <> coalesce((
                SELECT sum(l.tokens_total) FROM usage_logs l
                WHERE l.department_id = q.department_id AND l.llm_config_id = q.llm_config_id
                  AND l.\"timestamp\" >= date_trunc('month', now())), 0)",
            &[],
        )
        .await
        .expect("quotas")
        .get(0);
    assert_eq!(
        off, 0,
        "quota counters equal this month's tokens of the stored logs"
    );
}

pub(crate) async fn logs_digest(db: &tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT count(*)::text || ':' || coalesce(md5(string_agg(l::text, '|' ORDER BY l.id)), '') FROM usage_logs l",
        &[],
    )
    .await
    .expect("digest")
    .get(0)
}

async fn log_ids_digest(db: &tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT md5(string_agg(id::text || tokens_total::text, ',' ORDER BY id)) FROM usage_logs",
        &[],
    )
    .await
    .expect("ids")
    .get(0)
}

/// Issue #16: a failure at the commit itself (a deferred constraint trigger), with the logs
/// loaded over two connections, leaves no log, no user and no quota change of the run.
#[tokio::test]
async fn a_failure_at_commit_keeps_nothing_of_the_run() {
    let t = TestDb::new("commitfail");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(t.cmd().arg("seed"));
    let db = t.admin().await;
    crate::support::Fault::AtCommit("injected failure at commit")
        .inject(&db, "usage_logs", &t.name)
        .await;
    let users = count(&db, "users").await;
    let out = expect_exit(
        t.cmd().env("AIDOCK__SEED__COPY_CONNECTIONS", "2").args([
            "seed",
            "--dev",
            "--users",
            "20",
            "--usage-logs",
            "20000",
        ]),
        1,
    );
    assert!(
        stderr(&out).contains("injected failure at commit"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&db, "usage_logs").await, 0);
    assert_eq!(
        count(&db, "users").await,
        users,
        "the run's users went with it"
    );
    assert_eq!(
        staging_tables(&db).await,
        0,
        "a failure at commit still drops the staging tables"
    );
    quotas_match_logs(&db).await;
    db.batch_execute("DROP TRIGGER aidock_fault ON usage_logs")
        .await
        .expect("drop");
    // Whatever a failed run left, the next one clears, and loads everything.
    run_ok(t.cmd().env("AIDOCK__SEED__COPY_CONNECTIONS", "2").args([
        "seed",
        "--dev",
        "--users",
        "20",
        "--usage-logs",
        "20000",
    ]));
    assert_eq!(count(&db, "usage_logs").await, 20000);
    quotas_match_logs(&db).await;
    let left = staging_tables(&db).await;
    assert_eq!(left, 0, "no staging table is left behind");
}

/// Issue #16: SIGKILL while the logs load: nothing of the run is visible; the next run clears
/// what the killed one left and loads all of them.
#[tokio::test]
async fn a_killed_seed_leaves_nothing_and_the_next_run_completes() {
    let t = TestDb::new("seedkill");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    let mut child = t
        .cmd()
        .env("AIDOCK__SEED__COPY_CONNECTIONS", "2")
        .args([
            "seed",
            "--dev",
            "--users",
            "20",
            "--usage-logs",
            "150000",
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Killed while COPY runs on a staging table.
    wait_for_copy(&db, &mut child).await;
    kill_landed(&mut child);
    let n = count(&db, "usage_logs").await;
    assert_eq!(n, 0, "nothing of the killed run is visible");
    quotas_match_logs(&db).await;
    run_ok(t.cmd().env("AIDOCK__SEED__COPY_CONNECTIONS", "2").args([
        "seed",
        "--dev",
        "--users",
        "20",
        "--usage-logs",
        "150000",
        "-q",
    ]));
    assert_eq!(count(&db, "usage_logs").await, 150_000);
    quotas_match_logs(&db).await;
    let left = staging_tables(&db).await;
    assert_eq!(left, 0);
}

/// Issue #16: the same `seed --dev` twice leaves the same rows; a larger N tops up (the first
/// rows unchanged), a smaller one trims back, and the quotas follow.
#[tokio::test]
async fn seed_dev_twice_is_a_no_op_and_n_tops_up_or_trims() {
    let t = TestDb::new("seedagain");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    let run = |n: &str| {
        let mut c = t.cmd();
        c.args(["seed", "--dev", "--users", "30", "--usage-logs", n, "-q"]);
        c
    };
    run_ok(&mut run("5000"));
    let first = logs_digest(&db).await;
    let users = count(&db, "users").await;
    quotas_match_logs(&db).await;
    run_ok(&mut run("5000"));
    assert_eq!(logs_digest(&db).await, first, "a re-run changes nothing");
    assert_eq!(count(&db, "users").await, users);
    run_ok(&mut run("12000"));
    assert_eq!(count(&db, "usage_logs").await, 12000);
    quotas_match_logs(&db).await;
    run_ok(&mut run("5000"));
    assert_eq!(
        logs_digest(&db).await,
        first,
        "trimmed back to the same 5000 rows"
    );
    quotas_match_logs(&db).await;
    // Over several connections, the same rows as over one.
    let t2 = TestDb::new("seedagain2");
    run_ok(t2.cmd().args(["init", "-q"]));
    run_ok(t2.cmd().env("AIDOCK__SEED__COPY_CONNECTIONS", "3").args([
        "seed",
        "--dev",
        "--users",
        "30",
        "--usage-logs",
        "5000",
        "-q",
    ]));
    let db2 = t2.admin().await;
    assert_eq!(log_ids_digest(&db).await, log_ids_digest(&db2).await);
}

#[test]
fn duplicate_accounts_and_absurd_counts_are_usage_errors() {
    let t = TestDb::new("seeddup");
    let dir = scratch_dir("dupseeds");
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(builtin).expect("seeds/") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    let dev = std::fs::read_to_string(dir.join("dev.toml")).expect("dev.toml");
    let first_email = dev
        .lines()
        .find_map(|l| l.trim().strip_prefix("email = "))
        .expect("an account email")
        .to_string();
    let twin = format!(
        "{dev}\n[[account]]\nusername = \"twin\"\nemail = {first_email}\npassword = \"twin-password-1\"\nrole = \"user\"\ndepartment = \"Engineering\"\n"
    );
    write_files(&dir, &[("dev.toml", &twin)]);
    let out = expect_exit(
        t.cmd().arg("--seeds-dir").arg(&dir).args(["seed", "--dev"]),
        2,
    );
    let err = stderr(&out);
    assert!(err.contains("twin") && err.contains("same email"), "{err}");
    let out = expect_exit(t.cmd().args(["seed", "--dev", "--users", "4000000000"]), 2);
    assert!(stderr(&out).contains("--users"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #16: Ctrl-C (SIGINT) while the logs load rolls back everything of the run and says so.
#[tokio::test]
async fn ctrl_c_rolls_the_whole_run_back_and_says_so() {
    let t = TestDb::new("seedint");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    let mut child = t
        .cmd()
        .env("AIDOCK__SEED__COPY_CONNECTIONS", "2")
        .args(["seed", "--dev", "--users", "20", "--usage-logs", "150000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for_copy(&db, &mut child).await;
    // SAFETY: kill(2) with a pid we spawned and a standard signal.
    unsafe {
        libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGINT);
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "interrupted: 130, as shells report SIGINT; {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(staging_tables(&db).await, 0, "no staging table is left");
    assert_eq!(count(&db, "usage_logs").await, 0);
    assert_eq!(count(&db, "users").await, 0, "the run's users went too");
    assert_eq!(count(&db, "roles").await, 0, "and its reference data");
}

/// Issue #44 (3, 4): the dataset converges to the flags: `--users 30` then `--users 10` leaves
/// the 10 (with their logs), and a scheme chosen by setting holds for the accounts kept from an
/// earlier run too (their hashes were another scheme's).
#[tokio::test]
async fn seed_dev_follows_its_flags_for_users_and_the_chosen_scheme() {
    let t = TestDb::new("seedflags");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    let seed = |users: &str| {
        let mut c = t.cmd();
        c.args(["seed", "--dev", "--users", users, "--usage-logs", "300"]);
        c
    };
    run_ok(&mut seed("30"));
    assert_eq!(fake_users(&db).await, 30);
    let out = run_ok(&mut seed("10"));
    assert!(out.contains("20 removed"), "{out}");
    assert_eq!(fake_users(&db).await, 10);
    assert_eq!(count(&db, "usage_logs").await, 300);
    // The 10 are the first 10 of the 30 (same seed, same users), kept as they were; the
    // passwords were printed when the accounts were made, not again.
    let out = run_ok(&mut seed("10"));
    assert_eq!(fake_users(&db).await, 10);
    assert!(
        !out.contains("AdminPassword123") && out.contains("were there already"),
        "{out}"
    );

    // argon2id so far; bcrypt chosen: every account kept is hashed again in it.
    assert!(hash_of(&db, "admin").await.starts_with("$argon2id$"));
    let out = run_ok(
        t.cmd()
            .env("AIDOCK__SEED__PASSWORD_SCHEME", "bcrypt")
            .args(["seed", "--dev", "--users", "10", "--usage-logs", "300"]),
    );
    assert!(out.contains("hashed again"), "{out}");
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM users WHERE hashed_password NOT LIKE '$2b$%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "no account keeps another scheme's hash");
    assert!(bcrypt::verify("AdminPassword123", &hash_of(&db, "admin").await).expect("verify"));
}

/// Fake users (the generated form: `username@example.com`).
async fn fake_users(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM users WHERE email = username || '@example.com'",
        &[],
    )
    .await
    .expect("count")
    .get(0)
}
