//! `template` and `init --from-template` (issue #18): a seeded database per test in one statement.

use std::process::Command;

use crate::support::{
    TestDb, connect, expect_exit, migrations_dir, run_concurrently, run_ok, stderr,
};

/// A test database (own name and role) cloned from `template`.
fn clone_cmd(tag: &str, template: &str, dir: &std::path::Path) -> (TestDb, Command) {
    let t = TestDb::new(tag);
    let mut cmd = t.cmd();
    cmd.arg("--migrations-dir")
        .arg(dir)
        .args(["init", "--from-template", template]);
    (t, cmd)
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn clones_hold_the_data_belong_to_their_role_and_refuse_a_stale_template() {
    let owner = TestDb::new("tmplsrc");
    let template = format!("{}_template", owner.name);
    let dir = migrations_dir(&[]);
    let build = || {
        let mut cmd = owner.cmd();
        cmd.arg("--migrations-dir").arg(&dir).args([
            "template",
            "--dev",
            "--users",
            "5",
            "--usage-logs",
            "200",
        ]);
        cmd
    };
    let out = run_ok(&mut build());
    assert!(out.contains(&format!("template {template} built")), "{out}");
    let again = run_ok(&mut build());
    assert!(
        again.contains("is current"),
        "a second call is a no-op: {again}"
    );

    let admin = owner.admin_postgres().await;
    let row = admin
        .query_one(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1",
            &[&template],
        )
        .await
        .expect("template");
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1)),
        (true, false)
    );

    // A clone for another role: the data is there, everything is that role's, it can write.
    let (t, mut cmd) = clone_cmd("tmplclone", &template, &dir);
    let out = run_ok(&mut cmd);
    assert!(
        out.contains(&format!("created from template {template}")),
        "{out}"
    );
    let app = connect(&t.app_url()).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM users").await,
        8,
        "3 accounts + 5 fake users"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM usage_logs").await, 200);
    let foreign: i64 = count(
        &app,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)",
    )
    .await;
    assert_eq!(foreign, 0, "every relation belongs to the clone's role");
    app.batch_execute(
        "INSERT INTO departments (name) VALUES ('Clone dept'); UPDATE users SET is_active = false",
    )
    .await
    .expect("the role can write");
    let public_connect: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM aclexplode((SELECT datacl FROM pg_database WHERE datname = $1)) a WHERE a.grantee = 0)",
            &[&t.name],
        )
        .await
        .expect("acl")
        .get(0);
    assert!(!public_connect, "closed to PUBLIC as init leaves it");
    drop(app);
    let migrate = |args: &[&str]| {
        let mut cmd = t.cmd();
        cmd.arg("--migrations-dir")
            .arg(&dir)
            .arg("migrate")
            .args(args);
        cmd
    };
    assert!(run_ok(&mut migrate(&["status"])).contains("up to date"));
    assert!(run_ok(&mut migrate(&["verify"])).contains("schema matches"));

    // A migration added after `template`: clones refuse until it is rebuilt.
    crate::support::write_files(
        &dir,
        &[("0002_later.up.sql", "CREATE TABLE later (id int);\n")],
    );
    let (_, mut cmd) = clone_cmd("tmplstale", &template, &dir);
    let out = expect_exit(&mut cmd, 1);
    assert!(
        stderr(&out).contains("is stale") && stderr(&out).contains("aidock-provision template"),
        "{}",
        stderr(&out)
    );
    let out = run_ok(&mut build());
    assert!(out.contains("built"), "rebuilt: {out}");
    let (fresh, mut cmd) = clone_cmd("tmplfresh", &template, &dir);
    run_ok(&mut cmd);
    let app = connect(&fresh.app_url()).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM later").await,
        0,
        "the new table is there"
    );

    // A missing template.
    let (_, mut cmd) = clone_cmd("tmplnone", "no_such_template", &dir);
    let out = expect_exit(&mut cmd, 1);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[tokio::test]
async fn eight_clones_at_once_all_succeed() {
    let owner = TestDb::new("tmplpar");
    let template = format!("{}_template", owner.name);
    let dir = migrations_dir(&[]);
    run_ok(
        owner
            .cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["template", "-q"]),
    );
    let clones: Vec<(TestDb, Command)> = (0..8)
        .map(|i| clone_cmd(&format!("par{i}"), &template, &dir))
        .collect();
    let mut tests = Vec::new();
    let mut commands = Vec::new();
    for (t, cmd) in clones {
        tests.push(t);
        commands.push(cmd);
    }
    run_concurrently(commands);
    for t in &tests {
        let app = connect(&t.app_url()).await;
        assert!(
            count(&app, "SELECT count(*) FROM roles").await >= 4,
            "reference data in {}",
            t.name
        );
    }
    // Refused: building over a database that is not a template of ours.
    let out = expect_exit(
        owner
            .cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["template", "--name", &tests[0].name]),
        3,
    );
    assert!(
        stderr(&out).contains("is not a template aidock-provision built"),
        "{}",
        stderr(&out)
    );
}

/// Issue #27: README's order with the settings a project has by default (the app's own role is
/// `database.owner` for `init` and for `template` alike); the app role can neither enter nor
/// reopen nor alter the template; a template the admin changed since it was built is refused by
/// clones, naming the change, and `template` rebuilds it instead of calling it current.
#[tokio::test]
async fn readme_order_and_a_template_only_the_admin_holds() {
    let t = TestDb::new("tmplorder");
    let template = format!("{}_template", t.name);
    run_ok(t.cmd().args(["init", "-q"]));
    let build = || {
        let mut cmd = t.cmd();
        cmd.args(["template", "--dev", "--users", "10", "--usage-logs", "500"]);
        cmd
    };
    let out = run_ok(&mut build());
    assert!(out.contains(&format!("template {template} built")), "{out}");

    // The app role: no way in, no way to reopen or change it.
    let app = connect(&t.app_url()).await;
    for sql in [
        format!("ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS true"),
        format!("ALTER DATABASE \"{template}\" IS_TEMPLATE false"),
        format!("COMMENT ON DATABASE \"{template}\" IS 'mine'"),
        format!("ALTER DATABASE \"{template}\" OWNER TO \"{}\"", t.name),
        format!("DROP DATABASE \"{template}\""),
    ] {
        let err = app.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err:?}"
        );
    }
    let into_template = crate::support::with_db(&t.app_url(), &template);
    let refused = tokio_postgres::connect(&into_template, tokio_postgres::NoTls).await;
    assert!(
        refused.is_err(),
        "the app role cannot connect to the template"
    );

    // A clone, as README's pytest fixture makes one.
    let clone = TestDb::new("tmplorderc");
    let out = run_ok(
        clone
            .cmd()
            .args(["init", "-q", "--from-template", &template]),
    );
    assert!(out.is_empty(), "{out}");
    let c = connect(&clone.app_url()).await;
    assert_eq!(count(&c, "SELECT count(*) FROM usage_logs").await, 500);
    drop(c);

    // The admin changes it (opens it, adds an admin user, closes it again).
    let admin = t.admin_postgres().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS true"
        ))
        .await
        .expect("open");
    {
        let inside = connect(&crate::support::with_db(&t.admin_url, &template)).await;
        inside
            .batch_execute(
                "INSERT INTO users (username, email, hashed_password, is_superuser)
                 VALUES ('intruder', 'intruder@example.org', 'x', true)",
            )
            .await
            .expect("a change");
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'"
        ))
        .await
        .expect("close");
    let refused = TestDb::new("tmplorderx");
    let out = expect_exit(
        refused
            .cmd()
            .args(["init", "-q", "--from-template", &template]),
        3,
    );
    let err = stderr(&out);
    assert!(
        err.contains("changed since it was built")
            && err.contains("table public.users: 14 rows, built with 13"),
        "{err}"
    );
    let gone: i64 = count(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{}'",
            refused.name
        ),
    )
    .await;
    assert_eq!(gone, 0, "no clone is left of a refused copy");
    // `template` sees the change too, and builds it again.
    let out = run_ok(&mut build());
    assert!(
        out.contains("changed since it was built") && out.contains("built"),
        "{out}"
    );
    run_ok(
        refused
            .cmd()
            .args(["init", "-q", "--from-template", &template]),
    );
    let again = run_ok(&mut build());
    assert!(again.contains("is current"), "{again}");
}

/// Issue #40: every kind of change to a template since it was built is refused by its clones,
/// naming what changed (the fingerprint covers what `migrate verify`'s catalog reads, each
/// table's rows, default privileges and large objects), and `template` rebuilds it; a
/// different `seed.password_scheme` rebuilds it too (its hashes are what the scheme makes).
#[tokio::test]
async fn every_kind_of_tampering_is_refused_naming_it() {
    let t = TestDb::new("tmpltamper");
    let template = format!("{}_template", t.name);
    run_ok(t.cmd().args(["init", "-q"]));
    let build = |scheme: &str| {
        let mut cmd = t.cmd();
        cmd.env("AIDOCK__SEED__PASSWORD_SCHEME", scheme).args([
            "template",
            "--dev",
            "--users",
            "3",
            "--usage-logs",
            "20",
        ]);
        run_ok(&mut cmd)
    };
    build("argon2id");
    let admin = t.admin_postgres().await;
    let inside_url = crate::support::with_db(&t.admin_url, &template);
    let tamper = |sql: &'static str| {
        let admin = &admin;
        let template = template.clone();
        let inside_url = inside_url.clone();
        async move {
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS true"
                ))
                .await
                .expect("open");
            {
                let inside = connect(&inside_url).await;
                inside.batch_execute(sql).await.expect(sql);
            }
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS false;
                     SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'"
                ))
                .await
                .expect("close");
        }
    };
    for (sql, named) in [
        (
            "UPDATE users SET email = 'changed@example.org' WHERE username = (SELECT min(username) FROM users)",
            "table public.users: its rows changed since it was built (still",
        ),
        (
            "GRANT SELECT ON users TO PUBLIC",
            "privileges: changed since it was built",
        ),
        (
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
            "default privileges: changed since it was built",
        ),
        ("CREATE SCHEMA extra", "schema: changed since it was built"),
        (
            "SELECT lo_from_bytea(0, 'x')",
            "large objects: changed since it was built",
        ),
        (
            "COMMENT ON TABLE users IS 'mine'",
            "comment: changed since it was built",
        ),
        (
            "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
            "table: changed since it was built",
        ),
        (
            "CREATE POLICY everyone ON users USING (true)",
            "policy: there are some now",
        ),
        (
            "CREATE FUNCTION public.extra() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "function: changed since it was built",
        ),
    ] {
        tamper(sql).await;
        let clone = TestDb::new("tmpltamperc");
        let out = expect_exit(
            clone
                .cmd()
                .args(["init", "-q", "--from-template", &template]),
            3,
        );
        let err = stderr(&out);
        assert!(
            err.contains("changed since it was built, so no clone was made") && err.contains(named),
            "after `{sql}`: {err}"
        );
        let rebuilt = build("argon2id");
        assert!(
            rebuilt.contains("changed since it was built") && rebuilt.contains("building it again"),
            "after `{sql}`: {rebuilt}"
        );
    }
    // Another password scheme: not current any more, rebuilt (with bcrypt hashes).
    let out = build("bcrypt");
    assert!(out.contains(&format!("template {template} built")), "{out}");
    let clone = TestDb::new("tmpltampers");
    run_ok(
        clone
            .cmd()
            .args(["init", "-q", "--from-template", &template]),
    );
    let c = connect(&clone.app_url()).await;
    let hashes = count(
        &c,
        "SELECT count(*) FROM users WHERE hashed_password NOT LIKE '$2b$%'",
    )
    .await;
    assert_eq!(hashes, 0, "every dev password is a bcrypt hash now");
    drop(c);

    // `template --drop` removes it (once; then says there is nothing to do), and refuses a
    // database it did not build.
    let out = run_ok(t.cmd().args(["template", "--drop"]));
    assert!(
        out.contains(&format!("template {template} dropped")),
        "{out}"
    );
    let out = run_ok(t.cmd().args(["template", "--drop"]));
    assert!(out.contains("nothing to do"), "{out}");
    let out = expect_exit(t.cmd().args(["template", "--drop", "--name", &t.name]), 3);
    assert!(
        stderr(&out).contains("is not a template aidock-provision built"),
        "{}",
        stderr(&out)
    );
}

/// The seal: a template is read (from a copy) once, closed, and its `pg_database` row version
/// recorded; clones of it are not read again and `template` finds it current without opening
/// it (its row keeps its version through clones, COMMENTs and VACUUM FULL). Any ALTER DATABASE
/// (opened and closed again, here with nothing changed inside) breaks the seal: the next clone
/// is read and compared (and made, the contents being the same), and `template` reads a copy,
/// finds it unchanged and seals it again (the copies are verify's scratch databases, dropped on
/// every way out).
#[tokio::test]
async fn a_sealed_template_is_cloned_unread_and_any_alter_database_breaks_the_seal() {
    let t = TestDb::new("tmplseal");
    let template = format!("{}_template", t.name);
    run_ok(t.cmd().args(["init", "-q"]));
    let build = || {
        let mut cmd = t.cmd();
        cmd.args(["template", "--dev", "--users", "3", "--usage-logs", "30"]);
        cmd
    };
    run_ok(&mut build());
    let admin = t.admin_postgres().await;
    let seal = async |admin: &tokio_postgres::Client| -> (String, String) {
        let row = admin
            .query_one(
                "SELECT xmin::text, substring(shobj_description(oid, 'pg_database') FROM ' seal=([0-9]+) ') \
                 FROM pg_database WHERE datname = $1",
                &[&template],
            )
            .await
            .expect("template row");
        (row.get(0), row.get::<_, Option<String>>(1).expect("a seal"))
    };
    let (version, recorded) = seal(&admin).await;
    assert_eq!(version, recorded, "sealed at its row version");

    for i in 0..2 {
        let c = TestDb::new(&format!("tmplseal{i}"));
        run_ok(c.cmd().args(["init", "-q", "--from-template", &template]));
        let app = connect(&c.app_url()).await;
        assert_eq!(count(&app, "SELECT count(*) FROM usage_logs").await, 30);
    }
    admin
        .batch_execute("VACUUM FULL pg_database")
        .await
        .expect("vacuum full");
    let again = run_ok(&mut build());
    assert!(again.contains("is current"), "{again}");
    assert_eq!(
        seal(&admin).await,
        (version.clone(), version.clone()),
        "neither clones nor `template` opened it"
    );

    // Opened and closed again, nothing changed inside: the seal is broken.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS true; ALTER DATABASE \"{template}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("open and close");
    let (reopened, recorded) = seal(&admin).await;
    assert_ne!(
        reopened, recorded,
        "every ALTER DATABASE is a new row version"
    );
    let c = TestDb::new("tmplsealr");
    run_ok(c.cmd().args(["init", "-q", "--from-template", &template]));
    let again = run_ok(&mut build());
    assert!(again.contains("is current"), "{again}");
    let (now, recorded) = seal(&admin).await;
    assert_eq!(
        (now.as_str(), recorded.as_str()),
        (reopened.as_str(), reopened.as_str()),
        "sealed again"
    );
}
