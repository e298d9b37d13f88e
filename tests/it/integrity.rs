//! Migration-engine integrity (issue #11): scripts cannot escape the run's transaction, nothing is
//! half-read, bookkeeping survives what a script does to the session, a no-op run only reads,
//! and a closed stdout never aborts the work.

use std::process::{Command, Stdio};

use crate::support::{TestDb, expect_exit, run_ok, scratch_dir, stderr, write_files};

/// A migrations directory holding exactly `files` (never what `sql/` holds).
fn dir_with(files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = scratch_dir("own-sql");
    write_files(&dir, files);
    dir
}

/// A provisioned, empty database (no migration applied) and a `migrate` command on `dir`.
fn provisioned(tag: &str) -> TestDb {
    let t = TestDb::new(tag);
    run_ok(t.cmd().args(["init", "--no-migrate", "-q"]));
    t
}

fn migrate(t: &TestDb, dir: &std::path::Path) -> Command {
    let mut cmd = t.cmd();
    cmd.arg("--migrations-dir").arg(dir).arg("migrate");
    cmd
}

/// Tables in schema public and the ledger's versions.
async fn state(t: &TestDb) -> (Vec<String>, Vec<i64>) {
    let db = t.admin().await;
    let tables = crate::support::public_tables(&db).await;
    let versions = crate::support::ledger_versions(&db).await;
    (tables, versions)
}

#[tokio::test]
async fn transaction_control_in_a_script_is_refused_before_anything_runs() {
    let t = provisioned("txctl");
    let dir = dir_with(&[
        (
            "0001_own_tx.up.sql",
            "-- sourcegraph style\nBEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
        ),
        (
            "0002_fails.up.sql",
            "CREATE TABLE b (id int);\nSELECT 1/0;\n",
        ),
    ]);
    // A file's own BEGIN ... COMMIT around all of it (issue #30) is left out: it is part of the
    // run's one transaction, which 0002's failure rolls back whole.
    let out = expect_exit(migrate(&t, &dir).arg("up"), 1);
    let err = stderr(&out);
    assert!(err.contains("0002_fails.up.sql"), "{err}");
    assert_eq!(state(&t).await, (vec![], vec![]), "nothing stays: {err}");
    // A COMMIT in the middle is still refused, before anything runs.
    let dir = dir_with(&[(
        "0001_own_tx.up.sql",
        "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);\nCOMMIT;\n",
    )]);
    let out = expect_exit(migrate(&t, &dir).arg("up"), 1);
    let err = stderr(&out);
    assert!(err.contains("0001_own_tx.up.sql:3:1: `COMMIT`"), "{err}");
    assert!(err.contains("remove the transaction statements"), "{err}");
    assert_eq!(state(&t).await, (vec![], vec![]), "nothing ran: {err}");

    for (file, text, found) in [
        (
            "0001_rb.up.sql",
            "CREATE TABLE a (id int);\nROLLBACK;\n",
            "`ROLLBACK`",
        ),
        (
            "0001_end.up.sql",
            "create table a (id int);\n  end;\n",
            "`END`",
        ),
        (
            "0001_prep.up.sql",
            "CREATE TABLE a (id int);\nPREPARE TRANSACTION 'x';\n",
            "`PREPARE TRANSACTION`",
        ),
        (
            "0001_notx.up.sql",
            "-- aidock:no-transaction\nCREATE TABLE a (id int);\nCOMMIT AND CHAIN;\n",
            "`COMMIT AND CHAIN`",
        ),
    ] {
        let dir = dir_with(&[(file, text)]);
        let out = expect_exit(migrate(&t, &dir).arg("up"), 1);
        assert!(stderr(&out).contains(found), "{file}: {}", stderr(&out));
        let plan = expect_exit(migrate(&t, &dir).arg("plan"), 1);
        assert!(stderr(&plan).contains(found), "plan says the same");
        assert_eq!(state(&t).await, (vec![], vec![]), "{file}");
    }
    // Savepoints stay inside the run's transaction and are fine.
    let dir = dir_with(&[(
        "0001_savepoint.up.sql",
        "CREATE TABLE a (id int);\nSAVEPOINT s;\nCREATE TABLE b (id int);\nROLLBACK TO SAVEPOINT s;\nRELEASE s;\n",
    )]);
    run_ok(migrate(&t, &dir).arg("up"));
    assert_eq!(
        state(&t).await,
        (vec!["a".to_string(), "alembic_version".into()], vec![1])
    );
    // A wrapped file (golang-migrate style, lower case, a comment after BEGIN) applies, said.
    let dir = dir_with(&[
        (
            "0001_savepoint.up.sql",
            "CREATE TABLE a (id int);\nSAVEPOINT s;\nCREATE TABLE b (id int);\nROLLBACK TO SAVEPOINT s;\nRELEASE s;\n",
        ),
        (
            "0002_wrapped.up.sql",
            "begin; -- golang-migrate, by hand\nCREATE TABLE c (id int);\nINSERT INTO c VALUES (1);\ncommit;\n",
        ),
    ]);
    let out = run_ok_err(migrate(&t, &dir).arg("up"));
    assert!(
        out.contains("0002_wrapped.up.sql:1: the file's own BEGIN ... COMMIT"),
        "{out}"
    );
    assert_eq!(
        state(&t).await,
        (
            vec!["a".to_string(), "alembic_version".into(), "c".into()],
            vec![1, 2]
        )
    );
}

/// Run, expect success, return stderr.
fn run_ok_err(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

#[tokio::test]
async fn unterminated_tokens_and_meta_commands_are_errors_with_positions() {
    let t = provisioned("unterm");
    for (text, expect) in [
        (
            "CREATE TABLE a (id int);\n/* forgot to close\nCREATE TABLE b (id int);\n",
            "0001_x.up.sql:2:1: unterminated /* comment",
        ),
        (
            "CREATE TABLE a (id int);\nINSERT INTO a VALUES ('1);\n",
            "0001_x.up.sql:2:23: unterminated string literal",
        ),
        (
            "CREATE TABLE a (id int);\nDO $body$ BEGIN NULL; END $bdy$;\n",
            "0001_x.up.sql:2:4: unterminated dollar-quoted string",
        ),
        (
            "CREATE TABLE a (id int);\n\\connect other\n",
            "0001_x.up.sql:2:1: psql meta-command `\\connect`",
        ),
    ] {
        let dir = dir_with(&[("0001_x.up.sql", text)]);
        let out = expect_exit(migrate(&t, &dir).arg("up"), 1);
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
        assert_eq!(
            state(&t).await,
            (vec![], vec![]),
            "nothing ran for {expect}"
        );
    }
}

#[tokio::test]
async fn rule_actions_in_parentheses_apply_as_one_statement() {
    let t = provisioned("rule");
    let rule = "CREATE TABLE a (x int);\nCREATE TABLE b (x int);\nCREATE TABLE c (x int);\n\
                CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (new.x); INSERT INTO c VALUES (new.x + 1));\n";
    let dir = dir_with(&[
        ("0001_rule.up.sql", rule),
        (
            "0002_rule_notx.up.sql",
            "-- aidock:no-transaction\nCREATE TABLE d (x int);\n\
             CREATE RULE r2 AS ON INSERT TO d DO ALSO (INSERT INTO b VALUES (new.x); INSERT INTO c VALUES (new.x));\n",
        ),
    ]);
    run_ok(migrate(&t, &dir).arg("up"));
    let db = t.admin().await;
    db.batch_execute("INSERT INTO a VALUES (1); INSERT INTO d VALUES (5)")
        .await
        .expect("insert");
    let n: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM b) * 10 + (SELECT count(*) FROM c)",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 22, "both rules ran both actions");
}

/// `pg_dump -s` of a database, without the ledgers, owners and privileges.
#[track_caller]
fn schema_dump(t: &TestDb, db: &str) -> String {
    crate::support::dump_with(
        &crate::support::with_db(&t.admin_url, db),
        &[
            "-s",
            "--no-owner",
            "--no-privileges",
            "-N",
            "aidock_provision",
            "-T",
            "public.alembic_version",
        ],
    )
}

#[tokio::test]
async fn a_pg_dump_schema_file_applies_and_the_ledger_survives_its_search_path() {
    let t = provisioned("dump");
    // A source database with a bit of everything (provisioned the same way, so that schema
    // public looks alike), dumped by the real pg_dump.
    let s = provisioned("dumpsrc");
    let src = s.name.clone();
    let source = s.admin().await;
    source
        .batch_execute(&format!(
            "SET ROLE \"{}\";
             CREATE SCHEMA app;
             CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
             CREATE TABLE app.person (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 name text NOT NULL CHECK (name <> ''), mood app.mood DEFAULT 'ok');
             CREATE INDEX person_name ON app.person (lower(name));
             CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN NEW.name := trim(NEW.name); RETURN NEW; END; $$;
             CREATE TRIGGER person_touch BEFORE INSERT ON app.person FOR EACH ROW EXECUTE FUNCTION app.touch();
             CREATE VIEW app.happy AS SELECT id, name FROM app.person WHERE mood = 'happy';
             CREATE TABLE public.note (id serial PRIMARY KEY, person_id bigint REFERENCES app.person (id), body text);
             COMMENT ON TABLE app.person IS 'people; with a semicolon';",
            s.name
        ))
        .await
        .expect("source schema");
    drop(source);
    let dump = Command::new(crate::support::pg_dump())
        .args(["-s", "--no-owner", "--no-privileges"])
        .arg(crate::support::with_db(&t.admin_url, &src))
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", stderr(&dump));
    let dump = String::from_utf8(dump.stdout).expect("utf-8 dump");
    assert!(
        dump.contains("set_config('search_path', '', false)"),
        "a real pg_dump file"
    );

    // Transactional, then (on another database) outside a transaction.
    let dir = dir_with(&[("0001_dump.up.sql", &dump)]);
    let out = migrate(&t, &dir).arg("up").output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    if dump.contains("\\restrict") {
        assert!(
            stderr(&out).contains("skipped the psql meta-command `\\restrict`"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(
        state(&t).await.1,
        vec![1],
        "recorded despite search_path = ''"
    );
    assert_eq!(
        schema_dump(&t, &t.name),
        schema_dump(&t, &src),
        "same schema as the source"
    );

    let u = provisioned("dumpnotx");
    let dir = dir_with(&[(
        "0001_dump.up.sql",
        &format!("-- aidock:no-transaction\n{dump}"),
    )]);
    run_ok(migrate(&u, &dir).arg("up"));
    assert_eq!(state(&u).await.1, vec![1]);
    assert_eq!(schema_dump(&u, &u.name), schema_dump(&t, &src));
    // And the status is read from the qualified ledger, whatever search_path the role has.
    let status = run_ok(migrate(&u, &dir).args(["status", "--json"]));
    assert!(status.contains("\"up_to_date\": true"), "{status}");
}

/// A dump written by a newer pg_dump than the server (pg_dump 17+ writes `SET
/// transaction_timeout = 0;`, a setting older servers lack): psql goes past the failing line, so
/// the header's unknown session setting is skipped with a note; the same line in a file that is
/// not pg_dump's is the error it is. On a server that has the setting both apply.
#[tokio::test]
async fn a_newer_pg_dumps_session_settings_are_skipped_on_an_older_server() {
    let t = provisioned("newdump");
    let older = crate::support::server_version(&t.admin().await).await < 170_000;
    let header = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 13.23\n\
                  -- Dumped by pg_dump version 18.6\n\nSET statement_timeout = 0;\n\
                  SET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\n";
    let dir = dir_with(&[(
        "0001_dump.up.sql",
        &format!("{header}\nCREATE TABLE dumped (id int);\n"),
    )]);
    let out = migrate(&t, &dir).arg("up").output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&t).await.1, vec![1]);
    assert_eq!(
        stderr(&out).contains("0001_dump.up.sql:9: skipped `SET transaction_timeout = 0`"),
        older,
        "{}",
        stderr(&out)
    );

    let u = provisioned("newset");
    let dir = dir_with(&[(
        "0001_set.up.sql",
        "SET transaction_timeout = 0;\nCREATE TABLE kept_out (id int);\n",
    )]);
    let out = migrate(&u, &dir).arg("up").output().expect("run");
    if older {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("transaction_timeout"),
            "{}",
            stderr(&out)
        );
        assert!(state(&u).await.1.is_empty());
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

/// A partitioned index made `ON ONLY`, waiting for its partitions' indexes to be attached, is
/// invalid by design: a later no-transaction migration is recorded all the same.
#[tokio::test]
async fn a_partitioned_index_waiting_for_attachments_does_not_stop_the_recording() {
    let t = provisioned("onlyidx");
    let dir = dir_with(&[
        (
            "0001_t.up.sql",
            "CREATE TABLE p (id int, k text) PARTITION BY LIST (k);
CREATE TABLE p1 PARTITION OF p FOR VALUES IN ('a');
CREATE INDEX p_k ON ONLY p (k);
CREATE TABLE plain (id int);
",
        ),
        (
            "0002_idx.up.sql",
            "-- aidock:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS plain_id ON plain (id);
",
        ),
    ]);
    run_ok(migrate(&t, &dir).arg("up"));
    assert_eq!(state(&t).await.1, vec![1, 2]);
}

#[tokio::test]
async fn an_invalid_unique_index_is_never_recorded_as_applied() {
    let t = provisioned("invalid");
    let dir = dir_with(&[
        (
            "0001_t.up.sql",
            "CREATE TABLE t (email text); INSERT INTO t VALUES ('a'), ('a');",
        ),
        (
            "0002_unique.up.sql",
            "-- aidock:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_email ON t (email);\n",
        ),
    ]);
    let first = expect_exit(migrate(&t, &dir).arg("up"), 1);
    assert!(
        stderr(&first).contains("could not create unique index"),
        "{}",
        stderr(&first)
    );
    // Re-run: the INVALID index the failed build left is not skipped by IF NOT EXISTS (it would
    // count for nothing): it is dropped and built again, and the build fails on the data again,
    // saying so. Nothing is recorded.
    let again = expect_exit(migrate(&t, &dir).arg("up"), 1);
    let err = stderr(&again);
    assert!(
        err.contains("dropped the INVALID index public.t_email")
            && err.contains("Key (email)=(a) is duplicated"),
        "{err}"
    );
    assert_eq!(state(&t).await.1, vec![1]);
    let status = expect_exit(migrate(&t, &dir).args(["status", "--json"]), 0);
    assert!(String::from_utf8_lossy(&status.stdout).contains("\"up_to_date\": false"));

    // With the data fixed, an INVALID index the script does not name (one a failed REINDEX
    // CONCURRENTLY or a hand-made build left) still stops the recording, with the fix.
    let db = t.admin().await;
    db.batch_execute("DELETE FROM t WHERE ctid <> (SELECT min(ctid) FROM t)")
        .await
        .expect("dedupe");
    db.batch_execute(&format!(
        "CREATE TABLE u (x text); INSERT INTO u VALUES ('b'), ('b'); ALTER TABLE u OWNER TO {}",
        t.name
    ))
    .await
    .expect("u");
    db.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY u_x ON u (x)")
        .await
        .expect_err("fails on the duplicates, leaving an INVALID index");
    let again = expect_exit(migrate(&t, &dir).arg("up"), 1);
    let err = stderr(&again);
    assert!(
        err.contains("INVALID index(es) public.u_x")
            && err.contains("DROP INDEX CONCURRENTLY public.u_x")
            && err.contains("0002_unique is not recorded"),
        "{err}"
    );
    assert_eq!(state(&t).await.1, vec![1]);

    // The fix the message gives works.
    db.batch_execute("DROP INDEX CONCURRENTLY public.u_x")
        .await
        .expect("drop");
    run_ok(migrate(&t, &dir).arg("up"));
    assert_eq!(state(&t).await.1, vec![1, 2]);
    let valid: bool = db
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_email'::regclass",
            &[],
        )
        .await
        .expect("index")
        .get(0);
    assert!(valid);
}

#[tokio::test]
async fn a_no_op_run_only_reads() {
    let t = TestDb::new("noop");
    run_ok(t.cmd().arg("init"));
    let before = t.log_lines().len();
    let out = run_ok(t.cmd().arg("init"));
    assert!(out.contains("nothing to do"), "{out}");
    run_ok(t.cmd().args(["migrate", "up"]));
    let second: Vec<String> = t.log_lines().split_off(before);
    assert!(!second.is_empty(), "the no-op runs are in the log");
    let writes: Vec<&String> = second
        .iter()
        .filter(|l| {
            let upper = l.to_uppercase();
            [
                "CREATE ", "ALTER ", "GRANT ", "REVOKE ", "DROP ", "INSERT ", "DELETE ", "UPDATE ",
                "COMMENT ", "SET ",
            ]
            .iter()
            .any(|w| upper.contains(&format!("STATEMENT: {w}")))
                // The admin's catalog reads pin search_path in their read-only transaction
                // (db::trust): a setting, not a write.
                && !upper.contains("STATEMENT: SET LOCAL SEARCH_PATH = PG_CATALOG, PG_TEMP")
        })
        .collect();
    assert!(
        writes.is_empty(),
        "a no-op init / migrate up wrote: {writes:#?}"
    );

    // A role that may only read the ledger can run a no-op `migrate up`.
    let reader = format!("{}_ro", t.name);
    let db = t.admin().await;
    db.batch_execute(&format!(
        "CREATE ROLE \"{reader}\" LOGIN PASSWORD 'ro'; GRANT CONNECT ON DATABASE \"{n}\" TO \"{reader}\";
         GRANT USAGE ON SCHEMA public, aidock_provision TO \"{reader}\"; GRANT SELECT ON aidock_provision.schema_history TO \"{reader}\"",
        n = t.name
    ))
    .await
    .expect("read-only role");
    let url = format!(
        "postgresql://{reader}:ro@127.0.0.1:{}/{}",
        crate::support::cluster().port,
        t.name
    );
    if crate::support::cluster().port != 0 {
        let out = run_ok(t.cmd().env("DATABASE_URL", &url).args(["migrate", "up"]));
        assert!(out.contains("nothing to do"), "{out}");
    }
}

#[tokio::test]
async fn a_closed_or_full_stdout_never_panics_and_never_half_applies() {
    // init > /dev/full: the report cannot be written, the work is still complete.
    let t = TestDb::new("devfull");
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let only_0001 = crate::support::migrations_dir(&[]);
    let out = t
        .cmd()
        .arg("--migrations-dir")
        .arg(&only_0001)
        .arg("init")
        .stdout(Stdio::from(full))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(
        state(&t).await.1,
        vec![1],
        "the schema is applied all the same"
    );

    // migrate status | (a reader that is already gone)
    let mut child = t
        .cmd()
        .arg("--migrations-dir")
        .arg(&only_0001)
        .args(["migrate", "status"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // The same with a migration to apply: it is applied and recorded.
    let u = provisioned("devfull2");
    let dir = dir_with(&[("0001_a.up.sql", "CREATE TABLE a (id int);")]);
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let out = migrate(&u, &dir)
        .arg("up")
        .stdout(Stdio::from(full))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(state(&u).await.1, vec![1]);
}
