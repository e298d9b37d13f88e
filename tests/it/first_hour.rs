//! The first hour, as a new user crosses it (issue #26): each seam between commands that broke,
//! numbered as in the issue.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{
    TestDb, bin, cluster, connect, expect_exit, free_port, migrations_dir, run_ok, scratch_dir,
    stderr, with_db, write_files,
};

/// A project of its own: config/ naming `db`, sql/ with the AI Dock schema, a src/ to stand in.
fn project(db: &TestDb) -> PathBuf {
    let root = scratch_dir("project");
    let sql = migrations_dir(&[]);
    std::fs::create_dir_all(root.join("sql")).expect("mkdir");
    for entry in std::fs::read_dir(&sql).expect("sql") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            root.join("sql").join(path.file_name().expect("name")),
        )
        .expect("copy");
    }
    write_files(
        &root.join("config"),
        &[(
            "test.toml",
            &format!(
                "[database]\nname = \"{n}\"\nowner = \"{n}\"\npassword = \"{p}\"\n",
                n = db.name,
                p = db.password
            ),
        )],
    );
    std::fs::create_dir_all(root.join("src/deep")).expect("mkdir");
    root
}

/// The binary in `dir`, with only the admin URL from outside (names come from config/).
fn in_dir(dir: &Path, admin_url: &str) -> Command {
    let mut cmd = bin();
    cmd.env("AIDOCK_ADMIN_URL", admin_url).current_dir(dir);
    cmd
}

/// 1, 2: from a subdirectory, and from inside sql/, every command finds the project's config/,
/// sql/ (and cluster); --project and AIDOCK_PROJECT_DIR name it from anywhere.
#[test]
fn a_subdirectory_and_sql_itself_find_the_whole_project() {
    let t = TestDb::new("fh_sub");
    let root = project(&t);
    let out = run_ok(in_dir(&root.join("src/deep"), &t.admin_url).args(["init"]));
    assert!(
        out.contains(&format!("/{}", t.name)),
        "config/ was read: {out}"
    );
    let out = run_ok(in_dir(&root.join("sql"), &t.admin_url).args(["migrate", "status"]));
    assert!(out.contains("up to date") && out.contains(&t.name), "{out}");
    assert!(out.contains(". (the project's sql/)"), "{out}");
    let elsewhere = scratch_dir("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let out = run_ok(
        in_dir(&elsewhere, &t.admin_url)
            .arg("--project")
            .arg(&root)
            .args(["migrate", "status"]),
    );
    assert!(
        out.contains(&t.name) && out.contains("project's sql/"),
        "{out}"
    );
    let out = run_ok(
        in_dir(&elsewhere, &t.admin_url)
            .env("AIDOCK_PROJECT_DIR", &root)
            .args(["migrate", "status"]),
    );
    assert!(out.contains(&t.name), "{out}");
    let out = expect_exit(
        in_dir(&elsewhere, &t.admin_url).args([
            "--project",
            "/nonexistent/project",
            "migrate",
            "status",
        ]),
        2,
    );
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// 4: bash completes past the first word (clap_complete's hyphenated-name bug worked around).
#[test]
fn bash_completes_subcommands_and_options() {
    let script = run_ok(bin().args(["completions", "bash"]));
    let file = scratch_dir("completion").with_extension("bash");
    std::fs::write(&file, script).expect("write");
    let complete = |words: &[&str]| -> String {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; _aidock__provision aidock-provision '{}' '{}'; echo \"${{COMPREPLY[@]}}\"",
                file.display(),
                quoted.join(" "),
                words[cword],
                words[cword - 1]
            ))
            .output()
            .expect("bash");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let migrate = complete(&["aidock-provision", "migrate", ""]);
    assert!(
        migrate.contains("verify") && migrate.contains("baseline"),
        "{migrate}"
    );
    assert_eq!(
        complete(&["aidock-provision", "init", "--dr"]).trim(),
        "--dry-run"
    );
}

/// 5: `verify --fix | psql` runs: stdout holds only SQL, sections numbered from 1.
#[tokio::test]
async fn verify_fix_pipes_into_psql() {
    let t = TestDb::new("fh_fix");
    run_ok(t.cmd().args(["init", "-q"]));
    t.admin()
        .await
        .batch_execute("ALTER TABLE users ADD COLUMN nickname text")
        .await
        .expect("drift");
    let verify = t
        .cmd()
        .args(["migrate", "verify", "--fix"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("verify");
    let out = verify.wait_with_output().expect("verify");
    assert_eq!(out.status.code(), Some(1), "drift is still exit 1");
    let sql = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr(&out).contains("column users.nickname"),
        "{}",
        stderr(&out)
    );
    assert!(
        !sql.contains("column users.nickname:"),
        "no drift lines: {sql}"
    );
    assert!(
        sql.contains(&format!(
            "-- 1. as role {} on its own login (psql as that role, not as the admin), in one transaction:",
            t.name
        )),
        "{sql}"
    );
    // Piped into psql as the role itself (issue #40: never as the admin through SET ROLE).
    let mut psql = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(t.app_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    std::io::Write::write_all(psql.stdin.as_mut().expect("stdin"), sql.as_bytes()).expect("pipe");
    let done = psql.wait_with_output().expect("psql");
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(run_ok(t.cmd().args(["migrate", "verify"])).contains("schema matches"));
}

/// 6: doctor's advice is what init / baseline then do, for each kind of database.
#[tokio::test]
async fn doctor_advises_what_the_next_command_does() {
    let admin = connect(&cluster().admin_url).await;
    let advice = |t: &TestDb| -> String {
        let out = t.cmd().arg("doctor").output().expect("doctor");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Nothing yet: init.
    let empty = TestDb::new("fh_doc_empty");
    let text = advice(&empty);
    assert!(text.contains("run `aidock-provision init`"), "{text}");
    run_ok(empty.cmd().args(["init", "-q"]));
    // Ours: all checks pass.
    let out = run_ok(empty.cmd().arg("doctor"));
    assert!(!out.contains("FAIL"), "{out}");
    // Built by other tools, with and without alembic_version, owned by the admin (createdb by
    // hand): baseline, never init (which refuses).
    for (tag, alembic) in [("fh_doc_alembic", true), ("fh_doc_createall", false)] {
        let t = TestDb::new(tag);
        for sql in [
            format!(
                "CREATE ROLE {n} LOGIN PASSWORD '{p}'",
                n = t.name,
                p = t.password
            ),
            format!("CREATE DATABASE {n}", n = t.name),
        ] {
            admin.batch_execute(&sql).await.expect("by hand");
        }
        let db = connect(&with_db(&cluster().admin_url, &t.name)).await;
        db.batch_execute(&format!(
            "CREATE TABLE roles (id uuid PRIMARY KEY, name text); ALTER TABLE roles OWNER TO {n};{}",
            if alembic {
                "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('9c3e5a1b7d20');"
            } else {
                ""
            },
            n = t.name
        ))
        .await
        .expect("schema by hand");
        let text = advice(&t);
        assert!(text.contains("migrate baseline"), "{tag}: {text}");
        assert!(
            !text.contains("run `aidock-provision init`"),
            "{tag}: init would refuse: {text}"
        );
        let out = expect_exit(t.cmd().arg("init"), 3);
        assert!(
            stderr(&out).contains("migrate baseline"),
            "{}",
            stderr(&out)
        );
    }
}

/// 7: a hole in the numbering is refused before anything runs.
#[tokio::test]
async fn a_version_gap_is_refused_before_anything_runs() {
    let t = TestDb::new("fh_gap");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    let dir = migrations_dir(&[("0003_later.up.sql", "CREATE TABLE later (id int);\n")]);
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
        1,
    );
    assert!(
        stderr(&out).contains("no migration 0002 between 0001 and 0003"),
        "{}",
        stderr(&out)
    );
    let tables: i64 = t
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(tables, 0, "nothing was applied");
}

/// 9: a hotfix made by hand, then written as a migration, is recorded with proof.
#[tokio::test]
async fn a_hotfix_is_captured_with_proof() {
    let t = TestDb::new("fh_hotfix");
    run_ok(t.cmd().args(["init", "-q"]));
    t.admin()
        .await
        .batch_execute("CREATE INDEX ix_users_created_at ON users (created_at)")
        .await
        .expect("hotfix by hand");
    let out = expect_exit(t.cmd().arg("doctor"), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("migrate baseline"), "{text}");
    let dir = migrations_dir(&[(
        "0002_created_at.up.sql",
        "CREATE INDEX ix_users_created_at ON users (created_at);\n",
    )]);
    let migrate = |args: &[&str]| {
        let mut cmd = t.cmd();
        cmd.arg("--migrations-dir")
            .arg(&dir)
            .arg("migrate")
            .args(args);
        cmd
    };
    let out = expect_exit(&mut migrate(&["up"]), 1);
    assert!(
        stderr(&out).contains("migrate baseline --to"),
        "{}",
        stderr(&out)
    );
    let out = run_ok(&mut migrate(&["baseline"]));
    assert!(out.contains("identical: recorded"), "{out}");
    assert!(run_ok(&mut migrate(&["status"])).contains("up to date"));
    assert!(run_ok(&mut migrate(&["verify"])).contains("schema matches"));
    let history = run_ok(&mut migrate(&["history"]));
    assert!(history.contains("migrate baseline"), "{history}");
    // A schema that is not what the migrations make is never recorded.
    let dir3 = migrations_dir(&[
        (
            "0002_created_at.up.sql",
            "CREATE INDEX ix_users_created_at ON users (created_at);\n",
        ),
        ("0003_more.up.sql", "CREATE TABLE more (id int);\n"),
    ]);
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir3)
            .args(["migrate", "baseline"]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cannot be recorded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// 10: `man --dir` writes every page the top page refers to.
#[test]
fn man_pages_for_every_command() {
    let dir = scratch_dir("man");
    run_ok(bin().arg("man").arg("--dir").arg(&dir));
    let top = std::fs::read_to_string(dir.join("aidock-provision.1")).expect("top page");
    for page in ["aidock-provision-init.1", "aidock-provision-migrate-up.1"] {
        assert!(dir.join(page).is_file(), "{page}");
    }
    for reference in top.split("aidock\\-provision\\-").skip(1) {
        let name: String = reference
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '\\' || *c == '-')
            .collect::<String>()
            .replace("\\-", "-");
        if let Some(cmd) = name.strip_suffix("(1)").or(Some(&name)) {
            let cmd = cmd.trim_end_matches('(');
            if !cmd.is_empty() && cmd != "help" {
                assert!(
                    dir.join(format!("aidock-provision-{cmd}.1")).is_file(),
                    "the top page refers to aidock-provision-{cmd}(1)"
                );
            }
        }
    }
}

/// 12: `--wait` says that it waits; `-q` quiets doctor and `migrate new`.
#[test]
fn wait_says_it_waits_and_quiet_is_quiet() {
    let port = free_port();
    let out = bin()
        .env(
            "AIDOCK_ADMIN_URL",
            format!("postgresql://postgres:x@127.0.0.1:{port}/postgres"),
        )
        .args(["init", "--wait", "2s"])
        .output()
        .expect("init");
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("waiting for"), "{}", stderr(&out));
    let out = bin()
        .env(
            "AIDOCK_ADMIN_URL",
            format!("postgresql://postgres:x@127.0.0.1:{port}/postgres"),
        )
        .args(["init", "--wait", "2s", "-q"])
        .output()
        .expect("init");
    assert!(!stderr(&out).contains("waiting for"), "{}", stderr(&out));
    let dir = scratch_dir("fh-new");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = run_ok(
        bin()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "new", "thing", "-q"]),
    );
    assert!(out.is_empty(), "{out}");
    let t = TestDb::new("fh_quiet");
    run_ok(t.cmd().args(["init", "-q"]));
    let out = run_ok(t.cmd().args(["doctor", "-q"]));
    assert!(out.trim().is_empty(), "only failures with -q: {out}");
}

/// 13: README says what is true.
#[test]
fn readme_claims_match_the_package() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(manifest.join("README.md")).expect("README");
    let cargo = std::fs::read_to_string(manifest.join("Cargo.toml")).expect("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version");
    assert!(
        readme.contains(&format!("Rust (stable, {version} or newer)")),
        "README names rust-version {version}"
    );
    assert!(!readme.contains("not in this version yet"));
    assert!(
        !readme.contains("ADOPTION.md"),
        "no file of that name ships"
    );
}

/// 14: scripts/reset.sh uses a binary that is there (no silent rebuild).
#[test]
fn reset_script_uses_the_binary_at_hand() {
    let t = TestDb::new("fh_reset");
    run_ok(t.cmd().args(["init", "-q"]));
    let fake = scratch_dir("fakebin");
    std::fs::create_dir_all(&fake).expect("mkdir");
    write_files(
        &fake,
        &[("cargo", "#!/bin/sh\necho cargo must not run >&2\nexit 1\n")],
    );
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_aidock-provision"),
        fake.join("aidock-provision"),
    )
    .expect("symlink");
    std::fs::set_permissions(
        fake.join("cargo"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let out = Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reset.sh"))
        .arg("--yes")
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", fake.display()))
        .env("AIDOCK_PROFILE", "test")
        .env("AIDOCK_ADMIN_URL", &t.admin_url)
        .env("AIDOCK__DATABASE__NAME", &t.name)
        .env("AIDOCK__DATABASE__OWNER", &t.name)
        .env("AIDOCK__DATABASE__PASSWORD", &t.password)
        .output()
        .expect("reset.sh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("cargo must not run"));
}

/// 15: a raw `@` in a URL's password: exit 2, no part of the password shown, how to write it.
#[test]
fn a_raw_at_in_a_password_is_refused_without_showing_it() {
    let out = expect_exit(
        bin()
            .env(
                "AIDOCK_ADMIN_URL",
                "postgresql://postgres:Bad@Mk3@127.0.0.1:5432/postgres",
            )
            .arg("init"),
        2,
    );
    let err = stderr(&out);
    assert!(err.contains("%40"), "{err}");
    assert!(!err.contains("Bad") && !err.contains("Mk3"), "{err}");
}

/// 16: migrate diff failures lead with the error, name files as they are, and a missing role is
/// answered with init.
#[tokio::test]
async fn diff_failures_say_what_failed_first() {
    let t = TestDb::new("fh_diff");
    let project = scratch_dir("fh-diff");
    write_files(
        &project.join("sql"),
        &[("0001_a.up.sql", "CREATE TABLE a (id int);\n")],
    );
    write_files(
        &project,
        &[(
            "desired.sql",
            "CREATE TABLE a (id int);\nCREATE TABLE b (x nope_type);\n",
        )],
    );
    // Before init: the role is missing.
    let out = expect_exit(
        t.cmd().current_dir(&project).args([
            "migrate",
            "diff",
            "b",
            "--to",
            "desired.sql",
            "--print",
        ]),
        2,
    );
    assert!(
        stderr(&out).contains("run `aidock-provision init`"),
        "{}",
        stderr(&out)
    );
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    let out = expect_exit(
        t.cmd().current_dir(&project).args([
            "migrate",
            "diff",
            "b",
            "--to",
            "desired.sql",
            "--print",
        ]),
        1,
    );
    let err = stderr(&out);
    assert!(
        err.starts_with("error: the desired schema failed at desired.sql: line 2"),
        "{err}"
    );
    assert!(err.contains("SQLSTATE 42704"), "{err}");
}
