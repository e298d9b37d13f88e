//! Issue #31: `seed --dev` loads many rows into few in `pg_restore`'s order (secondary indexes and
//! foreign keys dropped in the seed's transaction, built again before it commits): the schema
//! afterwards is the migrations' exactly, and a kill at any point changes nothing.

use crate::seed::{count, kill_landed, quotas_match_logs, staging_tables, wait_for_copy};
use crate::support::{TestDb, run_ok};

/// Every index and constraint of the two bulk-loaded tables, with its definition.
async fn shape(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes
          WHERE schemaname = 'public' AND tablename IN ('users', 'usage_logs')
         UNION ALL
         SELECT 'constraint ' || conrelid::regclass || '.' || conname || ': ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE conrelid IN ('users'::regclass, 'usage_logs'::regclass)
         ORDER BY 1",
        &[],
    )
    .await
    .expect("shape")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Index scans only: the rebuilt indexes hold every row.
async fn indexed_rows(db: &tokio_postgres::Client) -> (i64, i64) {
    db.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .await
        .expect("planner settings");
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM usage_logs WHERE department_id IS NOT NULL),
                    (SELECT count(*) FROM users WHERE email IS NOT NULL)",
            &[],
        )
        .await
        .expect("indexed counts");
    db.batch_execute("RESET enable_seqscan; RESET enable_bitmapscan")
        .await
        .expect("reset");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_bulk_load_leaves_the_migrations_schema_exactly() {
    let t = TestDb::new("bulkshape");
    run_ok(t.cmd().args(["init", "-q"]));
    let db = t.admin().await;
    let before = shape(&db).await;
    run_ok(t.cmd().args([
        "seed",
        "--dev",
        "--users",
        "3000",
        "--usage-logs",
        "30000",
        "-q",
    ]));
    assert_eq!(shape(&db).await, before, "same names and definitions");
    assert_eq!(count(&db, "usage_logs").await, 30000);
    let (logs, users) = indexed_rows(&db).await;
    assert_eq!((logs, users), (30000, count(&db, "users").await));
    quotas_match_logs(&db).await;
    let out = run_ok(t.cmd().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");
    // A top-up onto many rows keeps the indexes (and is the same schema again).
    run_ok(t.cmd().args([
        "seed",
        "--dev",
        "--users",
        "3000",
        "--usage-logs",
        "31000",
        "-q",
    ]));
    assert_eq!(shape(&db).await, before);
    assert_eq!(indexed_rows(&db).await.0, 31000);
}

/// SIGKILL while the rows load, and again while an index is being built: nothing of the schema
/// or the data changed either time, and the next run completes.
#[tokio::test]
async fn a_kill_mid_load_or_mid_index_build_changes_nothing() {
    let t = TestDb::new("bulkkill");
    run_ok(t.cmd().args(["init", "-q"]));
    run_ok(
        t.cmd()
            .args(["seed", "--dev", "--users", "20", "--usage-logs", "0", "-q"]),
    );
    let db = t.admin().await;
    // An index slow to build (a function that sleeps per row, declared immutable for the
    // purpose): the kill lands while the seed's transaction builds it again.
    db.batch_execute(&format!(
        "CREATE FUNCTION slow_id(uuid) RETURNS uuid IMMUTABLE LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.001); RETURN $1; END $$;
         CREATE INDEX ix_slow ON usage_logs (slow_id(id));
         ALTER INDEX ix_slow OWNER TO \"{0}\";",
        t.name
    ))
    .await
    .expect("a slow index");
    let before = shape(&db).await;
    let users = count(&db, "users").await;
    let spawn = |n: &str| {
        t.cmd()
            .env("AIDOCK__SEED__COPY_CONNECTIONS", "2")
            .args(["seed", "--dev", "--users", "20", "--usage-logs", n, "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // Mid-load.
    let mut child = spawn("150000");
    wait_for_copy(&db, &mut child).await;
    kill_landed(&mut child);
    assert_eq!(shape(&db).await, before, "killed mid-load");
    assert_eq!(count(&db, "usage_logs").await, 0);
    quotas_match_logs(&db).await;
    // Mid-index-build.
    let mut child = spawn("20000");
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let building: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND query LIKE 'CREATE INDEX ix_slow%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the seed ended before building ix_slow"
        );
        if building > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no index build seen");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    kill_landed(&mut child);
    assert_eq!(shape(&db).await, before, "killed mid-index-build");
    assert_eq!(count(&db, "usage_logs").await, 0);
    assert_eq!(count(&db, "users").await, users);
    quotas_match_logs(&db).await;
    // The next run completes, with every index.
    db.batch_execute("DROP INDEX ix_slow; DROP FUNCTION slow_id(uuid)")
        .await
        .expect("drop the slow index");
    run_ok(t.cmd().args([
        "seed",
        "--dev",
        "--users",
        "20",
        "--usage-logs",
        "20000",
        "-q",
    ]));
    assert_eq!(indexed_rows(&db).await.0, 20000);
    assert_eq!(staging_tables(&db).await, 0);
    assert!(run_ok(t.cmd().args(["migrate", "verify"])).contains("schema matches"));
}

/// Four `seed --dev` at once into an empty database: the first bulk-loads (locking `users`), the
/// others wait their turn instead of deadlocking on the accounts, and find everything there.
#[tokio::test]
async fn concurrent_dev_seeds_take_turns() {
    let t = TestDb::new("bulkrace");
    run_ok(t.cmd().args(["init", "-q"]));
    crate::support::run_concurrently((0..4).map(|_| {
        let mut cmd = t.cmd();
        cmd.args([
            "seed",
            "--dev",
            "--users",
            "200",
            "--usage-logs",
            "3000",
            "-q",
        ]);
        cmd
    }));
    let db = t.admin().await;
    assert_eq!(count(&db, "usage_logs").await, 3000);
    assert_eq!(
        count(&db, "users").await,
        203,
        "3 accounts and 200 fake users, once"
    );
    quotas_match_logs(&db).await;
}
