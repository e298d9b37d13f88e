//! Issue #30: a database a managed platform made schemas in first (Supabase-shaped: `auth` with
//! `auth.users` and `auth.uid()`, pg_cron's `cron`). With `migrate.schemas` naming the
//! migrations' own, `init`, `up`, `verify` and `diff` work, migrations reference the platform's
//! objects, and those objects are left alone.

use crate::support::{TestDb, expect_exit, migrations_dir, run_ok, scratch_dir, stderr};

const PLATFORM: &str = "
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
GRANT USAGE ON SCHEMA auth TO PUBLIC;
GRANT SELECT, REFERENCES ON auth.users TO PUBLIC;
CREATE SCHEMA cron;
CREATE TABLE cron.job (jobid bigserial PRIMARY KEY, command text NOT NULL);
INSERT INTO auth.users VALUES ('00000000-0000-4000-8000-000000000001', 'a@example.com');
";

const PROFILES: &str =
    "CREATE TABLE profiles (id uuid PRIMARY KEY REFERENCES auth.users (id), display_name text);
CREATE FUNCTION my_profile() RETURNS SETOF profiles LANGUAGE sql STABLE
    AS $$ SELECT * FROM profiles WHERE id = auth.uid() $$;
";

/// What the platform's objects look like: names, owners, rows.
async fn platform_state(db: &tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT string_agg(x, ', ' ORDER BY x) FROM (
           SELECT format('%s.%s %s', n.nspname, c.relname, pg_get_userbyid(c.relowner)) AS x
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname IN ('auth', 'cron')
           UNION ALL SELECT 'users ' || count(*) FROM auth.users
           UNION ALL SELECT 'uid() ' || pg_get_functiondef('auth.uid()'::regprocedure)) s",
        &[],
    )
    .await
    .expect("platform")
    .get(0)
}

#[tokio::test]
async fn a_supabase_shaped_database_with_migrate_schemas_set() {
    let t = TestDb::new("supa");
    let admin = crate::support::connect(&t.admin_url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{}\"", t.name))
        .await
        .expect("create");
    let db = t.admin().await;
    db.batch_execute(PLATFORM).await.expect("the platform");
    let before = platform_state(&db).await;
    let dir = migrations_dir(&[
        ("0002_profiles.up.sql", PROFILES),
        (
            "0002_profiles.down.sql",
            "DROP FUNCTION my_profile();\nDROP TABLE profiles;\n",
        ),
    ]);
    let cmd = |schemas: Option<&str>| {
        let mut c = t.cmd();
        if let Some(s) = schemas {
            c.env("AIDOCK__MIGRATE__SCHEMAS", s);
        }
        c.arg("--migrations-dir").arg(&dir);
        c
    };
    // Without the setting, the platform's schemas are objects no migration made: refused.
    let out = expect_exit(cmd(None).arg("init"), 3);
    assert!(stderr(&out).contains("schema auth"), "{}", stderr(&out));

    // With it: init and up, the migration referencing auth.users and auth.uid().
    let out = run_ok(cmd(Some("public")).arg("init"));
    assert!(out.contains("applied 0002_profiles"), "{out}");
    run_ok(cmd(Some("public")).args(["migrate", "verify"]));
    let status = run_ok(cmd(Some("public")).args(["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");

    // diff: a desired schema referencing the platform is built on a copy of it.
    let desired = scratch_dir("supa-desired");
    std::fs::create_dir_all(&desired).expect("dir");
    let schema = format!(
        "{}\n{}",
        std::fs::read_to_string(dir.join("0001_initial_tables.up.sql")).expect("0001"),
        PROFILES.replace("display_name text)", "display_name text, bio text)")
    );
    std::fs::write(desired.join("schema.sql"), schema).expect("write");
    let out = run_ok(
        cmd(Some("public"))
            .args(["migrate", "diff", "add_bio", "--to"])
            .arg(desired.join("schema.sql")),
    );
    assert!(out.contains("wrote"), "{out}");
    let up = std::fs::read_to_string(dir.join("0003_add_bio.up.sql")).expect("0003");
    assert!(
        up.contains("ALTER TABLE profiles ADD COLUMN bio text"),
        "{up}"
    );
    assert!(
        !up.contains("auth") && !up.contains("cron"),
        "nothing about the platform: {up}"
    );
    run_ok(cmd(Some("public")).args(["migrate", "up"]));
    run_ok(cmd(Some("public")).args(["migrate", "verify"]));

    // The platform's objects: as they were.
    assert_eq!(platform_state(&db).await, before);
    // lint: a statement on the platform's objects is not ours to lint; one on ours is.
    let lint = desired.join("lint.sql");
    std::fs::write(
        &lint,
        "CREATE INDEX users_email ON auth.users (email);\nCREATE INDEX profiles_name ON profiles (display_name);\n",
    )
    .expect("write");
    let linted = |schemas| {
        let out = cmd(schemas)
            .args(["migrate", "lint"])
            .arg(&lint)
            .output()
            .expect("lint");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = linted(Some("public"));
    assert!(ours.contains("lint.sql:2:"), "{ours}");
    assert!(!ours.contains("lint.sql:1:"), "{ours}");
    assert!(
        linted(None).contains("lint.sql:1:"),
        "without the setting, both are linted"
    );

    // Without the setting, verify cannot replay (the scratch database has no auth) and says why.
    let out = expect_exit(cmd(None).args(["migrate", "verify"]), 1);
    assert!(stderr(&out).contains("migrate.schemas"), "{}", stderr(&out));

    // Issue #40: a typo in the setting is said as one, not as "schema public already exists".
    for args in [
        vec!["migrate", "verify"],
        vec!["migrate", "status"],
        vec!["init"],
    ] {
        let out = expect_exit(cmd(Some("pubilc")).args(&args), 2);
        assert!(
            stderr(&out).contains("migrate.schemas names `pubilc`")
                && stderr(&out).contains("did you mean `public`"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// Issue #41: Supabase's most common pattern, a trigger on the platform's `auth.users` calling
/// the app's own `public.handle_new_user()`, both made by a migration: `migrate verify` is clean
/// (the platform's objects that use the migrations' own are not copied into the scratch database
/// before the replay, where they could not be made; the replay makes them).
#[tokio::test]
async fn a_platform_trigger_calling_the_apps_function_verifies_clean() {
    let t = TestDb::new("supatrig");
    let admin = crate::support::connect(&t.admin_url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{}\"", t.name))
        .await
        .expect("create");
    let db = t.admin().await;
    db.batch_execute(PLATFORM).await.expect("the platform");
    let dir = migrations_dir(&[
        ("0002_profiles.up.sql", PROFILES),
        (
            "0003_new_user_trigger.up.sql",
            "CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.profiles (id, display_name) VALUES (NEW.id, NEW.email);
  RETURN NEW;
END $$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
",
        ),
    ]);
    let cmd = || {
        let mut c = t.cmd();
        c.env("AIDOCK__MIGRATE__SCHEMAS", "public")
            .arg("--migrations-dir")
            .arg(&dir);
        c
    };
    run_ok(cmd().args(["init", "-q", "--no-migrate"]));
    // The platform lets the app's role put triggers on its users table (Supabase's postgres
    // role may).
    db.batch_execute(&format!("GRANT TRIGGER ON auth.users TO \"{}\"", t.name))
        .await
        .expect("grant");
    run_ok(cmd().args(["migrate", "up"]));
    let out = run_ok(cmd().args(["migrate", "verify"]));
    assert!(out.contains("schema matches"), "{out}");
    // And it works: a platform user gets a profile.
    db.batch_execute(
        "INSERT INTO auth.users VALUES ('00000000-0000-4000-8000-000000000002', 'b@example.com')",
    )
    .await
    .expect("a new user");
    let profiles: i64 = db
        .query_one("SELECT count(*) FROM public.profiles", &[])
        .await
        .expect("profiles")
        .get(0);
    assert_eq!(profiles, 1);
}
