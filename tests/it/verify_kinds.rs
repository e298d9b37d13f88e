//! `migrate verify` on real-world patterns (issue #13): migrations that the old in-database replay
//! got wrong verify clean, the live database is not touched, no scratch database is left, and a
//! single change to any kind of object is found and named.

use std::process::Command;

use crate::support::{
    TestDb, cluster, connect, expect_exit, run_ok, schema_dump, scratch_dir, stderr, with_db,
    write_files,
};

async fn scratch_databases_of(admin: &tokio_postgres::Client, owner: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'aidock\\_verify\\_%' AND datdba = \
             (SELECT oid FROM pg_roles WHERE rolname = $1)",
            &[&owner],
        )
        .await
        .expect("pg_database")
        .get(0)
}

fn migrate(t: &TestDb, dir: &std::path::Path) -> Command {
    let mut cmd = t.cmd();
    cmd.arg("--migrations-dir").arg(dir).arg("migrate");
    cmd
}

#[tokio::test]
async fn patterns_the_old_replay_got_wrong_verify_clean_and_leave_the_live_database_alone() {
    let t = TestDb::new("vpatterns");
    run_ok(t.cmd().args(["init", "--no-migrate", "-q"]));
    let admin = t.admin_postgres().await;
    // A role the app may hand objects to (a migration that changes an owner).
    let group = format!("{}_grp", t.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{group}\" NOLOGIN; GRANT \"{group}\" TO \"{}\"",
            t.name
        ))
        .await
        .expect("group role");
    let dir = scratch_dir("vpatterns-sql");
    write_files(
        &dir,
        &[
            (
                "0001_schemas.up.sql",
                "CREATE SCHEMA utils;\n\
                 CREATE TABLE public.person (id int PRIMARY KEY, name text);\n\
                 CREATE FUNCTION utils.slug(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(t) $$;\n\
                 CREATE EXTENSION IF NOT EXISTS pg_trgm;\n\
                 CREATE INDEX person_name_trgm ON public.person USING gin (name gin_trgm_ops);\n\
                 CREATE TYPE public.mood AS ENUM ('sad', 'ok');\n",
            ),
            (
                "0002_enum_value.up.sql",
                "ALTER TYPE mood ADD VALUE 'happy';\n",
            ),
            (
                "0003_use_it.up.sql",
                "CREATE TABLE feeling (m mood DEFAULT 'happy');\n\
                 DO $$ BEGIN\n\
                   IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'person' AND column_name = 'nick') THEN\n\
                     ALTER TABLE person ADD COLUMN nick text;\n\
                   END IF;\n\
                   IF (SELECT count(*) FROM pg_class WHERE relname = 'person') = 1 THEN\n\
                     ALTER TABLE person ADD COLUMN seen_once boolean;\n\
                   END IF;\n\
                 END $$;\n",
            ),
            (
                "0004_owner.up.sql",
                &format!(
                    "GRANT USAGE, CREATE ON SCHEMA public TO \"{group}\";\nCREATE TABLE shared (id int);\nALTER TABLE shared OWNER TO \"{group}\";\n"
                ),
            ),
            (
                "0005_concurrently.up.sql",
                "-- aidock:no-transaction\nCREATE INDEX\nCONCURRENTLY IF NOT EXISTS person_nick ON person (nick);\n",
            ),
        ],
    );
    // As the app would have: the enum value in one run, its first use in the next.
    run_ok(migrate(&t, &dir).args(["up", "--to", "2"]));
    run_ok(migrate(&t, &dir).arg("up"));
    let live_url = with_db(&t.admin_url, &t.name);
    let before = schema_dump(&live_url);
    let out = run_ok(migrate(&t, &dir).arg("verify"));
    assert!(out.contains("schema matches"), "{out}");
    assert_eq!(
        schema_dump(&live_url),
        before,
        "the live database is untouched"
    );
    assert_eq!(
        scratch_databases_of(&admin, &t.name).await,
        0,
        "no scratch database left"
    );
    let live = t.admin().await;
    let leftovers: i64 = live
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'aidock_verify%'",
            &[],
        )
        .await
        .expect("schemas")
        .get(0);
    assert_eq!(leftovers, 0);

    // Without an admin connection that may create databases: exit 2 and what to pass.
    let out = expect_exit(
        t.cmd()
            .env_remove("AIDOCK_ADMIN_URL")
            .env("DATABASE_URL", t.app_url())
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "verify"]),
        2,
    );
    assert!(stderr(&out).contains("--admin-url"), "{}", stderr(&out));
}

/// Migrations that make one object of every kind verify compares.
const EVERY_KIND: &str = "
CREATE SCHEMA app;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TYPE app.mood AS ENUM ('sad', 'ok');
CREATE DOMAIN app.email AS text CONSTRAINT email_has_at CHECK (VALUE LIKE '%@%');
CREATE TYPE app.pair AS (a int, b text);
CREATE TYPE app.unused AS ENUM ('x');
CREATE TABLE app.person (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE \"C\" NOT NULL,
    nick text COLLATE \"C\",
    email app.email,
    mood app.mood DEFAULT 'ok',
    score int GENERATED ALWAYS AS (length(name)) STORED
) WITH (fillfactor = 90);
CREATE INDEX person_name_trgm ON app.person USING gin (name gin_trgm_ops);
CREATE TABLE app.event (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE app.event_2025 PARTITION OF app.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.event_2026 PARTITION OF app.event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE SEQUENCE app.ticket START 100 INCREMENT 5;
CREATE VIEW app.happy AS SELECT id, name FROM app.person WHERE mood = 'ok';
CREATE MATERIALIZED VIEW app.counts AS SELECT mood, count(*) AS n FROM app.person GROUP BY mood;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := trim(NEW.name); RETURN NEW; END $$;
CREATE TRIGGER person_touch BEFORE INSERT ON app.person FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE AGGREGATE app.total(int) (SFUNC = app.add, STYPE = int, INITCOND = '0');
CREATE PROCEDURE app.noop() LANGUAGE sql AS 'SELECT 1';
ALTER TABLE app.person ENABLE ROW LEVEL SECURITY;
CREATE POLICY person_self ON app.person FOR SELECT USING (name = current_user);
CREATE PUBLICATION pub_people FOR TABLE app.person;
COMMENT ON TABLE app.person IS 'people';
GRANT SELECT ON app.happy TO PUBLIC;
";

#[tokio::test]
async fn one_change_to_any_kind_of_object_is_found_and_named() {
    let t = TestDb::new("vkinds");
    let dir = scratch_dir("vkinds-sql");
    write_files(&dir, &[("0001_every_kind.up.sql", EVERY_KIND)]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["init", "-q"]),
    );
    let out = run_ok(migrate(&t, &dir).arg("verify"));
    assert!(
        out.contains("schema matches"),
        "a clean database stays clean: {out}"
    );

    let admin = t.admin_postgres().await;
    let other = format!("{}_other", t.name);
    admin
        .batch_execute(&format!("CREATE ROLE \"{other}\" NOLOGIN"))
        .await
        .expect("other role");
    let cases: &[(&str, &str)] = &[
        (
            "CREATE OR REPLACE VIEW app.happy AS SELECT id, name FROM app.person WHERE mood = 'sad'",
            "view app.happy: definition differs",
        ),
        (
            "DROP MATERIALIZED VIEW app.counts; CREATE MATERIALIZED VIEW app.counts AS SELECT mood FROM app.person",
            "materialized view app.counts: definition differs",
        ),
        (
            "ALTER TABLE app.event DETACH PARTITION app.event_2026",
            "table app.event_2026: differs",
        ),
        (
            "ALTER TYPE app.mood ADD VALUE 'happy'",
            "type app.mood: differs",
        ),
        (
            "ALTER TYPE app.mood RENAME VALUE 'sad' TO 'blue'",
            "type app.mood: differs",
        ),
        (
            "ALTER DOMAIN app.email DROP CONSTRAINT email_has_at",
            "constraint domain app.email.email_has_at: missing",
        ),
        ("DROP TYPE app.unused", "type app.unused: missing"),
        (
            "ALTER TYPE app.pair ADD ATTRIBUTE c int",
            "type app.pair: differs",
        ),
        (
            "DROP AGGREGATE app.total(int); CREATE AGGREGATE app.total(int) (SFUNC = app.add, STYPE = int, INITCOND = '1')",
            "aggregate app.total(integer): differs",
        ),
        (
            "DROP POLICY person_self ON app.person",
            "policy app.person.person_self: missing",
        ),
        (
            "ALTER POLICY person_self ON app.person USING (true)",
            "policy app.person.person_self: differs",
        ),
        (
            "CREATE POLICY person_all ON app.person USING (true)",
            "policy app.person.person_all: not made by any migration",
        ),
        (
            "ALTER TABLE app.person DISABLE ROW LEVEL SECURITY",
            "table app.person: differs",
        ),
        (
            "ALTER TABLE app.person FORCE ROW LEVEL SECURITY",
            "table app.person: differs",
        ),
        (
            "ALTER TABLE app.person DISABLE TRIGGER person_touch",
            "trigger app.person.person_touch: differs",
        ),
        (
            "ALTER TABLE app.person ALTER COLUMN nick TYPE text COLLATE \"POSIX\"",
            "column app.person.nick: differs",
        ),
        (
            "ALTER TABLE app.person ALTER COLUMN id SET GENERATED BY DEFAULT",
            "column app.person.id: differs",
        ),
        (
            "ALTER SEQUENCE app.ticket INCREMENT 10",
            "sequence app.ticket: differs",
        ),
        (
            "ALTER TABLE app.person SET (fillfactor = 70)",
            "table app.person: differs",
        ),
        (
            "DROP PUBLICATION pub_people",
            "publication pub_people: missing",
        ),
        (
            "COMMENT ON TABLE app.person IS 'humans'",
            "comment table app.person: differs",
        ),
        (
            "REVOKE SELECT ON app.happy FROM PUBLIC",
            "privileges app.happy: missing",
        ),
        (
            "CREATE TABLE app.extra (id int)",
            "table app.extra: not made by any migration",
        ),
        (
            "CREATE SCHEMA more",
            "schema more: not made by any migration",
        ),
        (
            "CREATE OR REPLACE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            "function app.touch(): body or attributes differ",
        ),
        (
            "ALTER FUNCTION app.add(int, int) VOLATILE",
            "function app.add(a integer, b integer): body or attributes differ",
        ),
        (
            "DROP INDEX app.person_name_trgm; DROP EXTENSION pg_trgm",
            "extension pg_trgm: missing",
        ),
        (
            "ALTER TABLE app.person OWNER TO OTHER",
            "owner app.person: owned by another role",
        ),
        (
            "CREATE INDEX person_mood ON app.person (mood)",
            "index app.person_mood: not made by any migration",
        ),
        (
            "ALTER TABLE app.person ALTER COLUMN mood SET NOT NULL",
            "column app.person.mood: differs",
        ),
        (
            "ALTER TABLE app.person ALTER COLUMN mood SET DEFAULT 'sad'",
            "column app.person.mood: differs",
        ),
        (
            "ALTER TABLE app.person ALTER COLUMN score DROP EXPRESSION",
            "column app.person.score: differs",
        ),
        (
            "CREATE OR REPLACE PROCEDURE app.noop() LANGUAGE sql AS 'SELECT 2'",
            "procedure app.noop(): body or attributes differ",
        ),
        (
            "DROP TRIGGER person_touch ON app.person; CREATE TRIGGER person_touch BEFORE UPDATE ON app.person FOR EACH ROW EXECUTE FUNCTION app.touch()",
            "trigger app.person.person_touch: differs",
        ),
        (
            "ALTER TABLE app.event_2025 ADD CONSTRAINT event_id_positive CHECK (id > 0)",
            "constraint app.event_2025.event_id_positive: not made by any migration",
        ),
    ];
    // Each change on its own clone of the verified database; the verifies then run side by side.
    let mut clones = Vec::new();
    for (i, (change, _)) in cases.iter().enumerate() {
        let clone = format!("{}_c{i}", t.name);
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{clone}\" TEMPLATE \"{}\" OWNER \"{}\"",
                t.name, t.name
            ))
            .await
            .expect("clone");
        let db = connect(&with_db(&cluster().admin_url, &clone)).await;
        db.batch_execute(&change.replace("OTHER", &format!("\"{other}\"")))
            .await
            .unwrap_or_else(|e| panic!("{change}: {e:?}"));
        clones.push(clone);
    }
    for batch in cases.iter().zip(&clones).collect::<Vec<_>>().chunks(6) {
        let children: Vec<_> = batch
            .iter()
            .map(|(_, clone)| {
                migrate(&t, &dir)
                    .env("AIDOCK__DATABASE__NAME", clone)
                    .arg("verify")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn verify")
            })
            .collect();
        for (((change, expected), _), child) in batch.iter().zip(children) {
            let out = child.wait_with_output().expect("verify");
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(1),
                "after `{change}`: {text}\n{}",
                stderr(&out)
            );
            assert!(
                text.contains(expected),
                "after `{change}` expected `{expected}` in:\n{text}"
            );
        }
    }
    // Issue #14: `verify --fix` prints SQL that, run by the admin with psql, makes each of them
    // clean again (publications are the one kind it leaves to a person, and says so).
    let repair = |change: &str, clone: &str| -> Option<String> {
        let out = migrate(&t, &dir)
            .env("AIDOCK__DATABASE__NAME", clone)
            .args(["verify", "--fix", "--json"])
            .output()
            .expect("verify --fix");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let sql = v["fix_sql"].as_str().unwrap_or_default().to_string();
        if change.contains("PUBLICATION") {
            return (!sql.contains("publication pub_people is not written"))
                .then(|| format!("after `{change}`: no note about the publication:\n{sql}"));
        }
        let applied = crate::support::apply_fix(
            &v,
            &with_db(&cluster().admin_url, clone),
            &with_db(&t.app_url(), clone),
        );
        let again = migrate(&t, &dir)
            .env("AIDOCK__DATABASE__NAME", clone)
            .arg("verify")
            .output()
            .expect("verify");
        (applied.is_err() || again.status.code() != Some(0)).then(|| {
            format!(
                "after `{change}`:\n{sql}\npsql: {}\nverify: {}",
                applied.as_ref().err().cloned().unwrap_or_default(),
                String::from_utf8_lossy(&again.stdout)
            )
        })
    };
    let mut failures = Vec::new();
    for batch in cases.iter().zip(&clones).collect::<Vec<_>>().chunks(6) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|((change, _), clone)| scope.spawn(|| repair(change, clone)))
                .collect();
            for h in handles {
                failures.extend(h.join().expect("repair thread"));
            }
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n----\n"));
}
