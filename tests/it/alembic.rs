//! Coexistence with the backend's own Alembic (issue #19): real Alembic, with an `env.py` like the
//! backend's (it reads DATABASE_URL; no models), on a database aidock-provision migrated.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{
    TestDb, expect_exit, migrations_dir, run_ok, scratch_dir, stderr, write_files,
};

/// The `alembic` executable: `AIDOCK_TEST_ALEMBIC`, else the venv `.ci/run` makes.
fn alembic_bin() -> Option<PathBuf> {
    let path = std::env::var_os("AIDOCK_TEST_ALEMBIC").map_or_else(
        || PathBuf::from("/opt/aidock-alembic/bin/alembic"),
        PathBuf::from,
    );
    path.is_file().then_some(path)
}

const ENV_PY: &str = r#""""Like the AI Dock backend's alembic/env.py, without its models."""
import os
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def url():
    return os.getenv("DATABASE_URL") or config.get_main_option("sqlalchemy.url")


if context.is_offline_mode():
    context.configure(url=url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    config.set_main_option("sqlalchemy.url", url())
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
"#;

/// An Alembic project like the backend's `Back/`: alembic.ini and alembic/env.py, empty versions/.
fn alembic_project() -> PathBuf {
    let dir = scratch_dir("alembic");
    write_files(
        &dir,
        &[(
            "alembic.ini",
            "[alembic]\nscript_location = alembic\nsqlalchemy.url = postgresql://aidock:aidock@localhost/aidock\n",
        )],
    );
    write_files(&dir.join("alembic"), &[("env.py", ENV_PY)]);
    std::fs::create_dir_all(dir.join("alembic/versions")).expect("versions/");
    dir
}

fn alembic(bin: &Path, project: &Path, t: &TestDb, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(project)
        .env("DATABASE_URL", t.app_url())
        .output()
        .expect("running alembic")
}

fn schema(t: &TestDb) -> Option<String> {
    let out = Command::new(crate::support::pg_dump())
        .arg("-s")
        .arg(crate::support::with_db(&t.admin_url, &t.name))
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

async fn stamp(t: &TestDb) -> Vec<String> {
    t.admin()
        .await
        .query("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("alembic_version")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_backends_alembic_sees_our_migrations_and_changes_nothing() {
    let Some(bin) = alembic_bin() else {
        crate::support::missing(
            "alembic (a venv at /opt/aidock-alembic)",
            "python3 -m venv /opt/aidock-alembic && /opt/aidock-alembic/bin/pip install alembic sqlalchemy 'psycopg[binary]' (.ci/run does), or set AIDOCK_TEST_ALEMBIC",
        );
        return;
    };
    let t = TestDb::new("alembic");
    let sql = migrations_dir(&[
        ("0002_notes.up.sql", "CREATE TABLE notes (id int);\n"),
        ("0002_notes.down.sql", "DROP TABLE notes;\n"),
    ]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["init", "-q"]),
    );
    let project = alembic_project();
    let versions = project.join("alembic/versions");
    let export = || {
        let mut cmd = t.cmd();
        cmd.arg("--migrations-dir")
            .arg(&sql)
            .args(["migrate", "alembic-export"])
            .arg(&versions);
        cmd
    };
    let out = run_ok(&mut export());
    assert_eq!(out.matches("wrote ").count(), 2, "{out}");
    let first = std::fs::read(versions.join("0002_notes.py")).expect("0002 file");
    let again = run_ok(&mut export());
    assert_eq!(
        again.matches("unchanged ").count(),
        2,
        "idempotent: {again}"
    );
    assert_eq!(
        std::fs::read(versions.join("0002_notes.py")).expect("0002"),
        first
    );

    let current = alembic(&bin, &project, &t, &["current"]);
    assert!(current.status.success(), "{}", stderr(&current));
    assert!(
        String::from_utf8_lossy(&current.stdout).contains("0002 (head)"),
        "{current:?}"
    );
    let history = alembic(&bin, &project, &t, &["history"]);
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(
        text.contains("<base> -> 0001") && text.contains("0001 -> 0002 (head)"),
        "{text}"
    );

    let before = schema(&t);
    let upgrade = alembic(&bin, &project, &t, &["upgrade", "head"]);
    assert!(upgrade.status.success(), "{}", stderr(&upgrade));
    assert_eq!(schema(&t), before, "upgrade head changed the schema");
    assert_eq!(stamp(&t).await, ["0002"]);

    let downgrade = alembic(&bin, &project, &t, &["downgrade", "base"]);
    assert!(!downgrade.status.success());
    assert!(
        stderr(&downgrade).contains("aidock-provision migrate down"),
        "{}",
        stderr(&downgrade)
    );
    assert_eq!(schema(&t), before, "downgrade changed the schema");
    assert_eq!(stamp(&t).await, ["0002"], "alembic_version unchanged");

    // Alembic asked to apply one of ours that our ledger lacks: it refuses, naming migrate up.
    let db = t.admin().await;
    db.batch_execute(
        "DELETE FROM alembic_version; DELETE FROM aidock_provision.schema_history WHERE version = 2",
    )
    .await
    .expect("rewind");
    db.batch_execute("INSERT INTO alembic_version VALUES ('0001')")
        .await
        .expect("stamp");
    let upgrade = alembic(&bin, &project, &t, &["upgrade", "head"]);
    assert!(!upgrade.status.success());
    assert!(
        stderr(&upgrade).contains("aidock-provision migrate up"),
        "{}",
        stderr(&upgrade)
    );
    assert_eq!(stamp(&t).await, ["0001"]);

    // A hand-made file claiming one of our ids is reported, not overwritten.
    write_files(
        &versions,
        &[(
            "0001_mine.py",
            "revision = \"0001\"\ndown_revision = None\n",
        )],
    );
    let out = expect_exit(&mut export(), 1);
    assert!(
        stderr(&out).contains("0001_mine.py") && stderr(&out).contains("nothing written"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn status_reports_an_alembic_version_changed_behind_our_back() {
    let t = TestDb::new("alembicstamp");
    run_ok(t.cmd().args(["init", "-q"]));
    let ok = run_ok(t.cmd().args(["migrate", "status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&ok).expect("json");
    assert_eq!(
        v["alembic_version"],
        serde_json::json!([crate::support::builtin_head()])
    );
    t.admin()
        .await
        .batch_execute("UPDATE alembic_version SET version_num = '1a2b3c4d5e6f'")
        .await
        .expect("alembic stamp behind our back");
    let out = expect_exit(t.cmd().args(["migrate", "status"]), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alembic_version holds `1a2b3c4d5e6f`"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "INSERT INTO alembic_version VALUES ('{}')",
            crate::support::builtin_head()
        )),
        "{text}"
    );
}

/// The backend's own first revision, as its Alembic wrote it (annotated, newer template): it makes
/// the AI Dock schema from the SQL in `SCHEMA_SQL` (the file next to it).
const BACKEND_REVISION: &str = r#""""initial tables

Revision ID: 9c3e5a1b7d20
Revises:
Create Date: 2026-01-12 10:00:00
"""
import os
from typing import Sequence, Union

from alembic import op

revision: str = "9c3e5a1b7d20"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with open(os.environ["SCHEMA_SQL"]) as f:
        op.get_bind().exec_driver_sql(f.read())


def downgrade() -> None:
    raise NotImplementedError
"#;

#[tokio::test]
async fn after_adoption_the_backends_history_is_one_line_and_upgrade_head_a_no_op() {
    let Some(bin) = alembic_bin() else {
        crate::support::missing(
            "alembic (a venv at /opt/aidock-alembic)",
            "python3 -m venv /opt/aidock-alembic && /opt/aidock-alembic/bin/pip install alembic sqlalchemy 'psycopg[binary]' (.ci/run does), or set AIDOCK_TEST_ALEMBIC",
        );
        return;
    };
    let t = TestDb::new("alembicadopt");
    let sql = migrations_dir(&[]);
    // A database the backend's Alembic built: role and database by us, tables by its revision.
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["init", "-q", "--no-migrate"]),
    );
    let project = alembic_project();
    let versions = project.join("alembic/versions");
    write_files(
        &versions,
        &[("9c3e5a1b7d20_initial_tables.py", BACKEND_REVISION)],
    );
    let alembic_env = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .current_dir(&project)
            .env("DATABASE_URL", t.app_url())
            .env("SCHEMA_SQL", sql.join("0001_initial_tables.up.sql"))
            .output()
            .expect("running alembic")
    };
    let built = alembic_env(&["upgrade", "head"]);
    assert!(built.status.success(), "{}", stderr(&built));
    assert_eq!(stamp(&t).await, ["9c3e5a1b7d20"]);

    // Adopted: recorded, stamped, and the ledger says which revision it replaced.
    let out = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["migrate", "baseline"]),
    );
    assert!(out.contains("9c3e5a1b7d20"), "{out}");
    assert_eq!(stamp(&t).await, ["0001"]);
    let history = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["migrate", "history"]),
    );
    assert!(
        history.contains("replaced alembic revision 9c3e5a1b7d20"),
        "{history}"
    );

    // Our first revision follows the backend's: one head, one line.
    let out = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["migrate", "alembic-export"])
            .arg(&versions),
    );
    assert!(out.contains("wrote "), "{out}");
    let ours = std::fs::read_to_string(versions.join("0001_initial_tables.py")).expect("0001");
    assert!(ours.contains("down_revision = \"9c3e5a1b7d20\""), "{ours}");
    let heads = alembic_env(&["heads"]);
    assert!(heads.status.success(), "{}", stderr(&heads));
    let heads = String::from_utf8_lossy(&heads.stdout).into_owned();
    assert_eq!(heads.lines().count(), 1, "{heads}");
    assert!(heads.contains("0001 (head)"), "{heads}");
    let history = alembic_env(&["history"]);
    let text = String::from_utf8_lossy(&history.stdout).into_owned();
    assert!(
        text.contains("<base> -> 9c3e5a1b7d20") && text.contains("9c3e5a1b7d20 -> 0001 (head)"),
        "{text}"
    );

    // The backend's deploy command: a no-op.
    let before = schema(&t);
    let upgrade = alembic_env(&["upgrade", "head"]);
    assert!(upgrade.status.success(), "{}", stderr(&upgrade));
    assert_eq!(schema(&t), before, "upgrade head changed the schema");
    assert_eq!(stamp(&t).await, ["0001"]);
    // Below our first revision: refused, nothing changed.
    let down = alembic_env(&["downgrade", "9c3e5a1b7d20"]);
    assert!(!down.status.success());
    assert!(
        stderr(&down).contains("aidock-provision migrate down"),
        "{}",
        stderr(&down)
    );
    assert_eq!(schema(&t), before);
    assert_eq!(stamp(&t).await, ["0001"]);

    // A folder holding two heads of the backend's own: reported with the fix, nothing written.
    std::fs::remove_file(versions.join("0001_initial_tables.py")).expect("rm");
    write_files(
        &versions,
        &[(
            "5d1f0a2b3c4e_other_branch.py",
            "revision = '5d1f0a2b3c4e'\ndown_revision = None\n",
        )],
    );
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["migrate", "alembic-export"])
            .arg(&versions),
        3,
    );
    let said = stderr(&out);
    assert!(
        said.contains("2 heads")
            && said.contains("9c3e5a1b7d20")
            && said.contains("5d1f0a2b3c4e")
            && said.contains("alembic merge"),
        "{said}"
    );
    assert!(!versions.join("0001_initial_tables.py").exists());
}

/// The backend's env.py as it is (its models' MetaData as target_metadata, schema public only);
/// the models are left out, so autogenerate proposes dropping every table it compares.
const ENV_PY_AUTOGENERATE: &str = r#"import os
from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool

config = context.config
target_metadata = MetaData()

config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"])
engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                            prefix="sqlalchemy.", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
"#;

#[tokio::test]
async fn alembic_autogenerate_after_init_proposes_nothing_about_our_bookkeeping() {
    let Some(bin) = alembic_bin() else {
        crate::support::missing(
            "alembic (a venv at /opt/aidock-alembic)",
            "python3 -m venv /opt/aidock-alembic && /opt/aidock-alembic/bin/pip install alembic sqlalchemy 'psycopg[binary]' (.ci/run does), or set AIDOCK_TEST_ALEMBIC",
        );
        return;
    };
    let t = TestDb::new("alembicauto");
    let sql = migrations_dir(&[]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["init", "-q"]),
    );
    run_ok(t.cmd().arg("--migrations-dir").arg(&sql).args([
        "seed",
        "-q",
        "--dev",
        "--users",
        "2",
        "--usage-logs",
        "10",
    ]));
    let project = alembic_project();
    write_files(&project.join("alembic"), &[("env.py", ENV_PY_AUTOGENERATE)]);
    write_files(
        &project.join("alembic"),
        &[(
            "script.py.mako",
            "revision = ${repr(up_revision)}\ndown_revision = ${repr(down_revision)}\n\ndef upgrade():\n    ${upgrades if upgrades else \"pass\"}\n\n\ndef downgrade():\n    ${downgrades if downgrades else \"pass\"}\n",
        )],
    );
    // The stamp names a revision Alembic must find: ours, exported.
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&sql)
            .args(["migrate", "alembic-export"])
            .arg(project.join("alembic/versions")),
    );
    let out = alembic(
        &bin,
        &project,
        &t,
        &["revision", "--autogenerate", "-m", "probe"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = std::fs::read_dir(project.join("alembic/versions"))
        .expect("versions")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("probe"))
        .expect("the generated revision");
    let text = std::fs::read_to_string(&generated).expect("read");
    // It did compare (the models are empty, so the app's tables would go) ...
    assert!(text.contains("drop_table('users')"), "{text}");
    // ... and nothing about ours.
    for ours in [
        "schema_history",
        "seed_runs",
        "aidock_provision",
        "alembic_version",
    ] {
        assert!(
            !text.contains(ours),
            "autogenerate proposed {ours}:\n{text}"
        );
    }
}

/// The backend's next revision after adoption, hand-written as its team would: a column with an
/// index, on top of our exported 0001.
const PHONE_REVISION: &str = r#""""add phone number

Revision ID: b7e4c2d9a1f3
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "b7e4c2d9a1f3"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("phone_number", sa.String(20), nullable=True))
    op.create_index("ix_users_phone_number", "users", ["phone_number"])


def downgrade():
    op.drop_index("ix_users_phone_number", table_name="users")
    op.drop_column("users", "phone_number")
"#;

/// A data migration of theirs (no schema change), after the capture's head.
fn data_revision(down: &str) -> String {
    format!(
        "revision = \"d4t4d4t4d4t4\"\ndown_revision = \"{down}\"\n\nfrom alembic import op\n\n\ndef upgrade():\n    op.execute(\"UPDATE roles SET description = 'reviewed' WHERE description IS NULL\")\n\n\ndef downgrade():\n    pass\n"
    )
}

/// Issue #43: after adoption the backend's team writes an Alembic revision of its own and runs
/// `alembic upgrade head`. Every command sees it; `migrate capture` makes it ours; the backend's
/// Alembic stays one line and a no-op; a fresh database from the migrations has the change.
#[tokio::test]
async fn a_revision_of_the_backends_after_adoption_is_refused_then_captured() {
    let Some(bin) = alembic_bin() else {
        crate::support::missing(
            "alembic (a venv at /opt/aidock-alembic)",
            "python3 -m venv /opt/aidock-alembic && /opt/aidock-alembic/bin/pip install alembic sqlalchemy 'psycopg[binary]' (.ci/run does), or set AIDOCK_TEST_ALEMBIC",
        );
        return;
    };
    let t = TestDb::new("alembiccapture");
    let sql = migrations_dir(&[]);
    let ours = |args: &[&str]| {
        let mut c = t.cmd();
        c.arg("--migrations-dir").arg(&sql).args(args);
        c
    };
    // Adopted as README says: Alembic built it, baseline adopted it, our revisions exported.
    run_ok(&mut ours(&["init", "-q", "--no-migrate"]));
    let project = alembic_project();
    let versions = project.join("alembic/versions");
    write_files(
        &versions,
        &[("9c3e5a1b7d20_initial_tables.py", BACKEND_REVISION)],
    );
    let alembic_env = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .current_dir(&project)
            .env("DATABASE_URL", t.app_url())
            .env("SCHEMA_SQL", sql.join("0001_initial_tables.up.sql"))
            .output()
            .expect("running alembic")
    };
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(alembic_env(&["upgrade", "head"]));
    run_ok(&mut ours(&["migrate", "baseline"]));
    let mut export = ours(&["migrate", "alembic-export"]);
    export.arg(&versions);
    run_ok(&mut export);
    run_ok(&mut ours(&["seed"]));

    // Their revision, applied their way.
    write_files(
        &versions,
        &[("b7e4c2d9a1f3_add_phone_number.py", PHONE_REVISION)],
    );
    ok(alembic_env(&["upgrade", "head"]));
    assert_eq!(stamp(&t).await, ["b7e4c2d9a1f3"]);
    let drifted = schema(&t);

    // Every command that changes the database refuses before changing anything, naming the
    // revision and the column; a deploy cannot stay green.
    for args in [
        &["migrate", "up"][..],
        &["init"],
        &["seed"],
        &["migrate", "down", "--base", "--yes"],
    ] {
        let out = expect_exit(&mut ours(args), 1);
        let said = stderr(&out);
        assert!(
            said.contains("b7e4c2d9a1f3")
                && said.contains("users.phone_number")
                && said.contains("migrate capture"),
            "{args:?}: {said}"
        );
    }
    assert_eq!(schema(&t), drifted, "a refused command changed the schema");
    assert_eq!(stamp(&t).await, ["b7e4c2d9a1f3"]);
    // status and doctor report it with the drift; no advice to put the stamp back.
    let out = expect_exit(&mut ours(&["migrate", "status"]), 1);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("b7e4c2d9a1f3") && said.contains("users.phone_number"),
        "{said}"
    );
    assert!(!said.contains("INSERT INTO alembic_version"), "{said}");
    let out = ours(&["doctor"]).output().expect("doctor");
    assert!(!out.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        said.contains("users.phone_number") && said.contains("migrate capture"),
        "{said}"
    );
    // baseline no longer says "nothing to do".
    let out = expect_exit(&mut ours(&["migrate", "baseline"]), 1);
    assert!(stderr(&out).contains("migrate capture"), "{}", stderr(&out));

    // Captured: the pair written and recorded, the revision file replaced by ours.
    let mut capture = ours(&[
        "migrate",
        "capture",
        "add_phone_number",
        "--yes",
        "--alembic-dir",
    ]);
    capture.arg(&versions);
    let said = run_ok(&mut capture);
    assert!(said.contains("recorded 0002_add_phone_number"), "{said}");
    let up: String = std::fs::read_dir(&sql)
        .expect("sql")
        .filter_map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name()?.to_string_lossy().into_owned();
            (name.ends_with(".up.sql") && !name.starts_with("0001"))
                .then(|| std::fs::read_to_string(&p).expect("up"))
        })
        .collect();
    assert!(
        up.contains("phone_number") && up.contains("ix_users_phone_number"),
        "{up}"
    );
    assert!(!versions.join("b7e4c2d9a1f3_add_phone_number.py").exists());
    assert!(versions.join("0002_add_phone_number.py").exists());
    let history = run_ok(&mut ours(&["migrate", "history"]));
    assert!(
        history.contains("migrate capture") && history.contains("b7e4c2d9a1f3"),
        "{history}"
    );
    assert_eq!(schema(&t), drifted, "capture changed the schema");
    let head = stamp(&t).await;
    assert!(head[0].as_str() >= "0002", "{head:?}");
    // The backend's Alembic: one head (ours), upgrade head a no-op.
    let heads = ok(alembic_env(&["heads"]));
    assert_eq!(heads.lines().count(), 1, "{heads}");
    assert!(heads.contains(&format!("{} (head)", head[0])), "{heads}");
    ok(alembic_env(&["upgrade", "head"]));
    assert_eq!(schema(&t), drifted, "upgrade head changed the schema");
    assert_eq!(stamp(&t).await, head);
    // Ours: clean.
    run_ok(&mut ours(&["migrate", "verify"]));
    run_ok(&mut ours(&["migrate", "status"]));
    assert!(run_ok(&mut ours(&["migrate", "up"])).contains("nothing to do"));
    run_ok(&mut ours(&["seed"]));
    // Again: nothing to capture.
    let said = run_ok(&mut ours(&["migrate", "capture", "again", "--yes"]));
    assert!(said.contains("nothing to capture"), "{said}");

    // A fresh database from the project's migrations has the column and its index.
    let fresh = TestDb::new("alembiccapfresh");
    let mut init = fresh.cmd();
    init.arg("--migrations-dir").arg(&sql).args(["init", "-q"]);
    run_ok(&mut init);
    let found = fresh
        .admin()
        .await
        .query(
            "SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'phone_number'), \
                    (SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_users_phone_number')",
            &[],
        )
        .await
        .expect("catalog");
    assert_eq!(
        (found[0].get::<_, i64>(0), found[0].get::<_, i64>(1)),
        (1, 1)
    );

    // A data migration of theirs: the schema is ours, and capture records it (one line again).
    write_files(
        &versions,
        &[("d4t4d4t4d4t4_review_roles.py", &data_revision(&head[0]))],
    );
    ok(alembic_env(&["upgrade", "head"]));
    let out = expect_exit(&mut ours(&["migrate", "up"]), 1);
    assert!(
        stderr(&out).contains("changed no schema"),
        "{}",
        stderr(&out)
    );
    let mut capture = ours(&[
        "migrate",
        "capture",
        "review_roles",
        "--yes",
        "--alembic-dir",
    ]);
    capture.arg(&versions);
    run_ok(&mut capture);
    let heads = ok(alembic_env(&["heads"]));
    assert_eq!(heads.lines().count(), 1, "{heads}");
    assert!(!versions.join("d4t4d4t4d4t4_review_roles.py").exists());
    ok(alembic_env(&["upgrade", "head"]));
    run_ok(&mut ours(&["migrate", "status"]));
    run_ok(&mut ours(&["migrate", "verify"]));
}

/// Issue #43: a team with the binary alone starts a project of its own from what is built in.
#[test]
fn project_init_writes_the_built_in_project_once() {
    let dir = scratch_dir("project-init");
    let run = |dir: &Path| {
        let mut c = crate::support::bin();
        c.args(["project", "init"]).arg(dir);
        c
    };
    let said = run_ok(&mut run(&dir));
    assert!(said.contains("file(s) written"), "{said}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["config", "sql", "seeds"] {
        for entry in std::fs::read_dir(root.join(sub)).expect("dir") {
            let p = entry.expect("entry").path();
            let name = p.file_name().expect("name");
            assert_eq!(
                std::fs::read(dir.join(sub).join(name)).expect("written"),
                std::fs::read(&p).expect("built in"),
                "{sub}/{name:?}"
            );
        }
    }
    // Again: nothing to do. Another file in the way: refused, nothing written.
    let said = run_ok(&mut run(&dir));
    assert!(said.contains("0 file(s) written"), "{said}");
    std::fs::write(dir.join("seeds/roles.toml"), "# ours\n").expect("edit");
    std::fs::remove_file(dir.join("seeds/departments.toml")).expect("rm");
    let out = expect_exit(&mut run(&dir), 3);
    assert!(stderr(&out).contains("roles.toml"), "{}", stderr(&out));
    assert!(
        !dir.join("seeds/departments.toml").exists(),
        "nothing written"
    );
}
