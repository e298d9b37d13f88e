//! Generated SQL cannot be hijacked (issue #24). The app role owns its database, so it may name
//! objects as it likes; `migrate diff`, `verify --fix` and `migrate baseline --reconcile` (run by
//! the admin) must write those names as names. Every kind of object the catalog reads is made
//! with names holding quotes, `;`, `--`, comment markers, `$$`, newlines, `=`, `,`, `.`, upper
//! case, unicode and 63 bytes, and goes through all three; afterwards no role has changed and
//! each object carries its comment, grant and owner.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::support::{
    TestDb, cluster, connect, expect_exit, migrations_dir, run_ok, schema_dump, scratch_dir,
    stderr, with_db, write_files,
};

/// Always-quoted identifier (valid for any name).
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// At most 63 bytes (PostgreSQL's limit), cut at a character boundary.
fn clip(name: &str) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The hostile parts of names, one family of objects each.
const VARIANTS: &[&str] = &[
    "qu\"ote",
    "semi;colon",
    "da--sh",
    "c/*om*/m",
    "dol$$lar",
    "new\nline",
    "eq=al",
    "com,ma",
    "do.t",
    "MiXeD Case",
    "ünïcødé ✓",
    "sixty-three bytes of name, the longest PostgreSQL keeps, padded",
    "k ON t IS NULL;RESET ROLE;ALTER ROLE x SUPERUSER;--",
];

/// Roles of one variant: a grantee and an owner, named after the test and the variant.
fn roles(t: &TestDb, i: usize) -> (String, String) {
    (
        clip(&format!("{}g{i}{}", t.name, VARIANTS[i])),
        clip(&format!("{}o{i}{}", t.name, VARIANTS[i])),
    )
}

/// Every kind of object the catalog reads, named with variant `i`: odd variants in a schema of
/// their own (also hostile), even ones in `public`.
fn objects(t: &TestDb, i: usize) -> String {
    let variant = VARIANTS[i];
    let n = |kind: &str| q(&clip(&format!("{kind}{i}{variant}")));
    let (grantee, owner) = roles(t, i);
    let (grantee, owner) = (q(&grantee), q(&owner));
    let schema = if i % 2 == 1 {
        format!("{}.", n("s"))
    } else {
        String::new()
    };
    let qualified = |kind: &str| format!("{schema}{}", n(kind));
    let (tab, col, ref_col, d_col, e_col) = (qualified("t"), n("c"), n("r"), n("d"), n("e"));
    let comment = lit(&format!("about {variant}: it's -- not; /* code */ $$"));
    let mut sql = String::new();
    if i % 2 == 1 {
        let _ = write!(
            sql,
            "CREATE SCHEMA {s};\nGRANT USAGE, CREATE ON SCHEMA {s} TO {owner};\nGRANT USAGE ON SCHEMA {s} TO {grantee};\nCOMMENT ON SCHEMA {s} IS {comment};\n",
            s = n("s")
        );
    }
    let _ = write!(
        sql,
        "CREATE TYPE {enm} AS ENUM ('a', 'b''c', {vl});
CREATE DOMAIN {dom} AS integer CONSTRAINT {dcon} CHECK (VALUE >= 0);
CREATE TYPE {comp} AS ({attr} integer, x text);
CREATE SEQUENCE {seq};
CREATE TABLE {tab} (
    {col} integer PRIMARY KEY,
    {e_col} {enm} DEFAULT 'a',
    {d_col} {dom},
    {ref_col} integer,
    n integer DEFAULT nextval({seqlit}::regclass),
    g integer GENERATED ALWAYS AS ({col} * 2) STORED,
    CONSTRAINT {chk} CHECK ({col} > 0),
    CONSTRAINT {uq} UNIQUE ({e_col}, {d_col})
);
ALTER SEQUENCE {seq} OWNED BY {tab}.n;
ALTER TABLE {tab} ADD CONSTRAINT {fk} FOREIGN KEY ({ref_col}) REFERENCES {tab}({col});
CREATE INDEX {idx} ON {tab} ({d_col});
CREATE VIEW {view} AS SELECT {col}, {e_col} FROM {tab};
CREATE MATERIALIZED VIEW {mv} AS SELECT {col} FROM {tab};
CREATE FUNCTION {func}({arg} integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $f$ SELECT {arg} + 1 $f$;
CREATE PROCEDURE {proc}() LANGUAGE sql AS $p$ SELECT 1 $p$;
CREATE AGGREGATE {agg}(integer) (SFUNC = int4pl, STYPE = integer);
CREATE FUNCTION {tfn}() RETURNS trigger LANGUAGE plpgsql AS $t$ BEGIN RETURN NEW; END $t$;
CREATE TRIGGER {trg} BEFORE INSERT ON {tab} FOR EACH ROW EXECUTE FUNCTION {tfn}();
CREATE TRIGGER {trg2} BEFORE UPDATE ON {tab} FOR EACH ROW EXECUTE FUNCTION {tfn}();
ALTER TABLE {tab} DISABLE TRIGGER {trg2};
ALTER TABLE {tab} ENABLE ROW LEVEL SECURITY;
CREATE POLICY {pol} ON {tab} FOR SELECT TO {grantee}, PUBLIC USING ({col} > 0);
COMMENT ON TABLE {tab} IS {comment};
COMMENT ON COLUMN {tab}.{col} IS {comment};
COMMENT ON CONSTRAINT {chk} ON {tab} IS {comment};
COMMENT ON CONSTRAINT {fk} ON {tab} IS {comment};
COMMENT ON INDEX {schema}{idx} IS {comment};
COMMENT ON VIEW {view} IS {comment};
COMMENT ON COLUMN {view}.{col} IS {comment};
COMMENT ON MATERIALIZED VIEW {mv} IS {comment};
COMMENT ON SEQUENCE {seq} IS {comment};
COMMENT ON FUNCTION {func}(integer) IS {comment};
COMMENT ON PROCEDURE {proc}() IS {comment};
COMMENT ON AGGREGATE {agg}(integer) IS {comment};
COMMENT ON TRIGGER {trg} ON {tab} IS {comment};
COMMENT ON POLICY {pol} ON {tab} IS {comment};
COMMENT ON TYPE {enm} IS {comment};
COMMENT ON DOMAIN {dom} IS {comment};
COMMENT ON CONSTRAINT {dcon} ON DOMAIN {dom} IS {comment};
COMMENT ON TYPE {comp} IS {comment};
COMMENT ON COLUMN {comp}.{attr} IS {comment};
GRANT SELECT, UPDATE ON {tab} TO {grantee};
GRANT INSERT ({col}) ON {tab} TO {grantee};
GRANT SELECT ON {view} TO {grantee} WITH GRANT OPTION;
GRANT USAGE ON SEQUENCE {seq} TO {grantee};
REVOKE EXECUTE ON FUNCTION {func}(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {func}(integer) TO {grantee};
GRANT USAGE ON TYPE {enm} TO {grantee};
",
        enm = qualified("en"),
        vl = lit(variant),
        dom = qualified("do"),
        dcon = n("dc"),
        comp = qualified("co"),
        attr = n("a"),
        seq = qualified("sq"),
        seqlit = lit(&qualified("sq")),
        chk = n("ck"),
        uq = n("uq"),
        fk = n("fk"),
        idx = n("ix"),
        view = qualified("v"),
        mv = qualified("mv"),
        func = qualified("f"),
        arg = n("x"),
        proc = qualified("p"),
        agg = qualified("ag"),
        tfn = qualified("tf"),
        trg = n("tg"),
        trg2 = n("tu"),
        pol = n("po"),
    );
    if i % 2 == 1 {
        // Owned by another role (the app's role is a member of it).
        let _ = write!(
            sql,
            "ALTER VIEW {view} OWNER TO {owner};\nALTER FUNCTION {func}(integer) OWNER TO {owner};\nALTER TYPE {enm} OWNER TO {owner};\n",
            view = qualified("v"),
            func = qualified("f"),
            enm = qualified("en")
        );
    }
    sql
}

/// Role attributes and memberships of this test's roles (the app's role and the hostile ones).
async fn role_facts(t: &TestDb) -> Vec<String> {
    let admin = connect(&cluster().admin_url).await;
    admin
        .query(
            "SELECT r.rolname || ':' || r.rolsuper || r.rolcreaterole || r.rolcreatedb || r.rolreplication
                    || r.rolbypassrls || r.rolinherit || r.rolcanlogin || ':'
                    || coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m
                                 JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '')
             FROM pg_roles r WHERE r.rolname LIKE $1 || '%' ORDER BY 1",
            &[&t.name],
        )
        .await
        .expect("roles")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The roles every variant needs, the app's role a member of each owner role.
async fn make_roles(t: &TestDb) {
    let admin = connect(&cluster().admin_url).await;
    for i in 0..VARIANTS.len() {
        let (grantee, owner) = roles(t, i);
        admin
            .batch_execute(&format!(
                "CREATE ROLE {g} NOLOGIN; CREATE ROLE {o} NOLOGIN; GRANT {o} TO {app};",
                g = q(&grantee),
                o = q(&owner),
                app = q(&t.name)
            ))
            .await
            .unwrap_or_else(|e| panic!("roles for variant {i}: {e:?}"));
    }
}

/// Run a file with psql as the admin on this test's database (stop on the first error).
#[track_caller]
fn psql_file(t: &TestDb, sql: &str) {
    let file = scratch_dir("psql").with_extension("sql");
    std::fs::write(&file, sql).expect("write");
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .arg(with_db(&cluster().admin_url, &t.name))
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}\n{sql}", stderr(&out));
}

/// Another database of the test's role, prepared as `init` prepares one (schema public the
/// role's, no CREATE for PUBLIC); its name.
async fn sibling_db(t: &TestDb, tag: &str) -> String {
    let name = format!("{}_{tag}", t.name);
    let admin = connect(&cluster().admin_url).await;
    for sql in [
        format!("CREATE DATABASE {} OWNER {}", q(&name), q(&t.name)),
        format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", q(&name)),
    ] {
        admin.batch_execute(&sql).await.expect("createdb");
    }
    connect(&with_db(&cluster().admin_url, &name))
        .await
        .batch_execute(&format!(
            "ALTER SCHEMA public OWNER TO {}; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            q(&t.name)
        ))
        .await
        .expect("schema public");
    name
}

fn migrate(t: &TestDb, dir: &Path) -> Command {
    let mut cmd = t.cmd();
    cmd.arg("--migrations-dir").arg(dir).arg("migrate");
    cmd
}

fn all_objects(t: &TestDb) -> String {
    (0..VARIANTS.len()).map(|i| objects(t, i)).collect()
}

/// `migrate diff` writes a pair whose up reaches exactly what psql makes of the same file, and
/// whose down comes back; `verify --fix` repairs drift on every object; `baseline --reconcile`
/// adopts a database built by hand: with every hostile name, and no role changed.
#[tokio::test]
async fn hostile_names_round_trip_through_diff_fix_and_baseline() {
    let t = TestDb::new("hostile");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    make_roles(&t).await;
    let roles_before = role_facts(&t).await;
    let schema = all_objects(&t);

    // 1. migrate diff from nothing: the pair is tested by the tool, then applied here.
    let project = scratch_dir("hostile-project");
    let dir = project.join("sql");
    write_files(
        &dir,
        &[("0001_base.up.sql", "CREATE TABLE base (id int);\n")],
    );
    write_files(
        &project,
        &[(
            "desired.sql",
            &format!("CREATE TABLE base (id int);\n{schema}"),
        )],
    );
    let out = t
        .cmd()
        .current_dir(&project)
        .args(["migrate", "diff", "hostile", "--to", "desired.sql"])
        .output()
        .expect("diff");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    run_ok(migrate(&t, &dir).arg("up"));
    let verify = run_ok(migrate(&t, &dir).arg("verify"));
    assert!(verify.contains("schema matches"), "{verify}");
    // What psql makes of the desired file, in a database of its own.
    let reference = sibling_db(&t, "ref").await;
    let ref_app = connect(&with_db(&t.app_url(), &reference)).await;
    ref_app
        .batch_execute(&format!("CREATE TABLE base (id int);\n{schema}"))
        .await
        .expect("psql's reference");
    {
        let ours = schema_dump(&with_db(&t.app_url(), &t.name));
        let theirs = schema_dump(&with_db(&t.app_url(), &reference));
        let only = |a: &str, b: &str| -> Vec<String> {
            let other: std::collections::BTreeSet<&str> = b.lines().collect();
            a.lines()
                .filter(|l| !other.contains(l))
                .map(str::to_string)
                .collect()
        };
        let first = ours
            .lines()
            .zip(theirs.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let around = |text: &str| {
            text.lines()
                .skip(first.saturating_sub(5))
                .take(12)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            ours == theirs,
            "up reaches what psql makes of the same file; only ours:\n{}\nonly psql's:\n{}\nfirst difference, ours:\n{}\npsql's:\n{}",
            only(&ours, &theirs).join("\n"),
            only(&theirs, &ours).join("\n"),
            around(&ours),
            around(&theirs)
        );
    }
    run_ok(migrate(&t, &dir).args(["down", "--to", "1", "--yes"]));
    let verify = run_ok(migrate(&t, &dir).arg("verify"));
    assert!(
        verify.contains("schema matches"),
        "down comes back: {verify}"
    );
    assert_eq!(role_facts(&t).await, roles_before, "no role changed (diff)");

    // 2. verify --fix: drift on every variant's objects, repaired by the printed SQL.
    run_ok(migrate(&t, &dir).arg("up"));
    let mut drift = String::new();
    for (i, variant) in VARIANTS.iter().enumerate() {
        let n = |kind: &str| q(&clip(&format!("{kind}{i}{variant}")));
        let s = if i % 2 == 1 {
            format!("{}.", n("s"))
        } else {
            String::new()
        };
        let (grantee, _) = roles(&t, i);
        let _ = write!(
            drift,
            "COMMENT ON TABLE {s}{t} IS NULL;
COMMENT ON COLUMN {s}{t}.{c} IS 'changed';
COMMENT ON CONSTRAINT {dc} ON DOMAIN {s}{dom} IS NULL;
REVOKE SELECT ON {s}{t} FROM {g};
REVOKE INSERT ({c}) ON {s}{t} FROM {g};
ALTER TABLE {s}{t} DROP CONSTRAINT {ck};
DROP INDEX {s}{ix};
DROP TRIGGER {tg} ON {s}{t};
ALTER TABLE {s}{t} ENABLE TRIGGER {tu};
DROP POLICY {po} ON {s}{t};
DROP VIEW {s}{v};
GRANT EXECUTE ON FUNCTION {s}{f}(integer) TO PUBLIC;
ALTER TABLE {s}{t} ADD CONSTRAINT {evil} CHECK (true);
COMMENT ON CONSTRAINT {evil} ON {s}{t} IS 'x';
",
            t = n("t"),
            c = n("c"),
            dc = n("dc"),
            dom = n("do"),
            g = q(&grantee),
            ck = n("ck"),
            ix = n("ix"),
            tg = n("tg"),
            tu = n("tu"),
            po = n("po"),
            v = n("v"),
            f = n("f"),
            evil = q(&format!(
                "k ON t IS NULL;RESET ROLE;ALTER ROLE {} SUPERUSER;--",
                t.name
            )),
        );
    }
    psql_file(&t, &drift);
    let out = expect_exit(migrate(&t, &dir).args(["verify", "--fix", "--json"]), 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sql = v["fix_sql"].as_str().expect("fix_sql").to_string();
    crate::support::apply_fix(&v, &with_db(&cluster().admin_url, &t.name), &t.app_url())
        .unwrap_or_else(|e| panic!("{e}"));
    let verify = run_ok(migrate(&t, &dir).arg("verify"));
    assert!(verify.contains("schema matches"), "{verify}\n{sql}");
    assert_eq!(role_facts(&t).await, roles_before, "no role changed (fix)");

    // 3. baseline --reconcile: the same schema built by hand without a ledger, with drift.
    let adopt = sibling_db(&t, "adopt").await;
    let hand = connect(&with_db(&t.app_url(), &adopt)).await;
    hand.batch_execute(&format!("{schema}{drift}"))
        .await
        .expect("built by hand");
    let adopt_dir = scratch_dir("hostile-adopt-sql");
    write_files(&adopt_dir, &[("0001_hostile.up.sql", &schema)]);
    let mut baseline = t.cmd();
    baseline
        .env("AIDOCK__DATABASE__NAME", &adopt)
        .arg("--migrations-dir")
        .arg(&adopt_dir)
        .args(["migrate", "baseline", "--reconcile", "--yes"]);
    let out = run_ok(&mut baseline);
    assert!(out.contains("reconciled"), "{out}");
    let mut verify = t.cmd();
    verify
        .env("AIDOCK__DATABASE__NAME", &adopt)
        .arg("--migrations-dir")
        .arg(&adopt_dir)
        .args(["migrate", "verify"]);
    let out = run_ok(&mut verify);
    assert!(out.contains("schema matches"), "{out}");
    assert_eq!(
        role_facts(&t).await,
        roles_before,
        "no role changed (baseline)"
    );
}

/// The three escalations from the issue, each as the admin would meet it; and a grant to a role
/// named `app=ro` is revoked from that role, not from `app`.
#[tokio::test]
async fn names_built_to_escalate_stay_names() {
    let t = TestDb::new("escalate");
    run_ok(t.cmd().args(["init", "-q"]));
    let admin = connect(&cluster().admin_url).await;
    let ro = format!("{}=ro", t.name);
    admin
        .batch_execute(&format!("CREATE ROLE {} NOLOGIN", q(&ro)))
        .await
        .expect("app=ro");
    let roles_before = role_facts(&t).await;
    let evil = clip(&format!(
        "k ON users IS NULL;RESET ROLE;ALTER ROLE {} SUPERUSER;--",
        t.name
    ));
    let app = connect(&t.app_url()).await;
    app.batch_execute(&format!(
        "ALTER TABLE users ADD CONSTRAINT {e} CHECK (true);
         COMMENT ON CONSTRAINT {e} ON users IS 'x';
         GRANT SELECT ON users TO {ro};",
        e = q(&evil),
        ro = q(&ro)
    ))
    .await
    .expect("as the app role");

    // verify --fix: the printed SQL names the constraint and `app=ro`; run by the admin, it
    // makes verify clean and changes no role.
    let out = expect_exit(t.cmd().args(["migrate", "verify", "--fix", "--json"]), 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sql = v["fix_sql"].as_str().expect("fix_sql").to_string();
    assert!(
        sql.contains(&format!("ALTER TABLE users DROP CONSTRAINT {};", q(&evil))),
        "{sql}"
    );
    assert!(
        sql.contains(&format!("REVOKE ALL ON TABLE users FROM {};", q(&ro))),
        "{sql}"
    );
    crate::support::apply_fix(&v, &with_db(&cluster().admin_url, &t.name), &t.app_url())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(role_facts(&t).await, roles_before, "verify --fix");
    let db = t.admin().await;
    let (ro_reads, app_reads): (bool, bool) = {
        let row = db
            .query_one(
                "SELECT has_table_privilege($1, 'users', 'SELECT'), has_table_privilege($2, 'users', 'SELECT')",
                &[&ro, &t.name],
            )
            .await
            .expect("privileges");
        (row.get(0), row.get(1))
    };
    assert!(!ro_reads, "the grant to `app=ro` is revoked from `app=ro`");
    assert!(app_reads, "`app` keeps its own rights");
    let out = run_ok(t.cmd().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");

    // baseline --reconcile on a database built by hand with the same constraint and comment.
    let adopt = TestDb::new("escalate_adopt");
    for sql in [
        format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            q(&adopt.name),
            lit(&adopt.password)
        ),
        format!("CREATE DATABASE {n} OWNER {n}", n = q(&adopt.name)),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .expect("createuser, createdb");
    }
    let hand = connect(&adopt.app_url()).await;
    let ours = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/0001_initial_tables.up.sql"),
    )
    .expect("0001");
    let evil = clip(&format!(
        "k ON users IS NULL;RESET ROLE;ALTER ROLE {} SUPERUSER;--",
        adopt.name
    ));
    hand.batch_execute(&format!(
        "{ours}\nALTER TABLE users ADD CONSTRAINT {e} CHECK (true);\nCOMMENT ON CONSTRAINT {e} ON users IS 'x';",
        e = q(&evil)
    ))
    .await
    .expect("built by hand");
    let adopt_roles = || async {
        admin
            .query_one(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&adopt.name],
            )
            .await
            .map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1), r.get::<_, bool>(2), r.get::<_, bool>(3)))
            .expect("role")
    };
    let dir = migrations_dir(&[]);
    let out = run_ok(adopt.cmd().arg("--migrations-dir").arg(&dir).args([
        "migrate",
        "baseline",
        "--dry-run",
    ]));
    assert!(
        out.contains(&format!("ALTER TABLE users DROP CONSTRAINT {};", q(&evil))),
        "{out}"
    );
    run_ok(adopt.cmd().arg("--migrations-dir").arg(&dir).args([
        "migrate",
        "baseline",
        "--reconcile",
        "--yes",
    ]));
    assert_eq!(adopt_roles().await, (false, false, false, false));
    let out = run_ok(
        adopt
            .cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "verify"]),
    );
    assert!(out.contains("schema matches"), "{out}");

    // migrate diff: a constraint named `c; --` and a mixed-case column, both commented.
    let project = scratch_dir("escalate-project");
    write_files(
        &project.join("sql"),
        &[(
            "0001_base.up.sql",
            "CREATE TABLE users (id int PRIMARY KEY);\n",
        )],
    );
    write_files(
        &project,
        &[(
            "desired.sql",
            "CREATE TABLE users (id int PRIMARY KEY);
ALTER TABLE users ADD CONSTRAINT \"c; --\" CHECK (id > 0);
COMMENT ON CONSTRAINT \"c; --\" ON users IS 'x';
CREATE TABLE \"Users\" (\"Email\" text);
COMMENT ON COLUMN \"Users\".\"Email\" IS 'mixed';
",
        )],
    );
    let out = run_ok(t.cmd().current_dir(&project).args([
        "migrate",
        "diff",
        "names",
        "--to",
        "desired.sql",
        "--print",
    ]));
    assert!(
        out.contains("COMMENT ON CONSTRAINT \"c; --\" ON users IS 'x';"),
        "{out}"
    );
    assert!(
        out.contains("COMMENT ON COLUMN \"Users\".\"Email\" IS 'mixed';"),
        "{out}"
    );
    assert_eq!(
        role_facts(&t).await,
        roles_before,
        "nothing changed any role"
    );
}

/// Names reach generated SQL only through `db::ident`: no catalog query reads description
/// text, and no generator quotes names by itself.
#[test]
fn generators_take_names_only_through_the_quoting_type() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .expect("under src/")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("readable");
        // Description text: only ever for people, and today not even read.
        for word in [
            "pg_describe_object",
            "pg_identify_object",
            "::aclitem",
            "acl::text",
        ] {
            if text.contains(word) {
                violations.push(format!("src/{relative} reads description text: `{word}`"));
            }
        }
        // The generators build SQL with db::ident's types; quoting by hand is db's alone.
        if relative.starts_with("schema/ddl/") {
            for word in [
                "quote_ident",
                "replace('\"'",
                "replace(\"\\\"\"",
                "\\\"{}\\\"",
            ] {
                if text.contains(word) {
                    violations.push(format!("src/{relative} quotes names by hand: `{word}`"));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "names must enter generated SQL only through db::ident:\n{}",
        violations.join("\n")
    );
}
