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
