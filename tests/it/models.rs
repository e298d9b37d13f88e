//! The backend's SQLAlchemy models as input (issue #42): `migrate diff --to-models` writes the
//! migration from the models, judged by SQLAlchemy's own `create_all` on a real server (pg_dump
//! -s of both); `migrate verify --models` reports each of README's model rows undone. Real
//! SQLAlchemy, from the venv `.ci/run` makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::diff::{assert_same_dump, columns_unordered, psql_reference};
use crate::support::{
    TestDb, expect_exit, migrations_dir, run_ok, schema_dump, scratch_dir, stderr, with_db,
    write_files,
};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The models written to agree with sql/0001 as README's table says.
const MODELS: &str = include_str!("../../examples/backend/app/models.py");

/// The backend's Python (with SQLAlchemy and psycopg): `AIDOCK_TEST_ALEMBIC`'s venv, else the
/// venv `.ci/run` makes; `None` (said, a failure in CI) when missing.
fn python() -> Option<PathBuf> {
    let alembic = std::env::var_os("AIDOCK_TEST_ALEMBIC").map_or_else(
        || PathBuf::from("/opt/aidock-alembic/bin/alembic"),
        PathBuf::from,
    );
    let python = alembic.with_file_name("python");
    if python.is_file() {
        return Some(python);
    }
    crate::support::missing(
        "SQLAlchemy (a venv at /opt/aidock-alembic)",
        "python3 -m venv /opt/aidock-alembic && /opt/aidock-alembic/bin/pip install alembic sqlalchemy 'psycopg[binary]' (.ci/run does), or set AIDOCK_TEST_ALEMBIC",
    );
    None
}

/// A project whose `sql/` holds `sql` and whose package `app` holds `models` (app/models.py).
fn project(sql: &Path, models: &str) -> PathBuf {
    let root = scratch_dir("models-project");
    std::fs::create_dir_all(root.join("app")).expect("mkdir");
    std::fs::rename(sql, root.join("sql")).expect("move sql/");
    write_files(&root, &[("app/__init__.py", ""), ("app/models.py", models)]);
    root
}

fn in_project(t: &TestDb, root: &Path, python: &Path, args: &[&str]) -> Command {
    let mut c = t.cmd();
    c.current_dir(root)
        .env(
            "VIRTUAL_ENV",
            python.parent().and_then(Path::parent).expect("venv"),
        )
        .args(args);
    c
}

/// `MODELS` with each `from` (which must occur exactly once) replaced by its `to`.
#[track_caller]
fn undone(changes: &[(&str, &str)]) -> String {
    let mut models = MODELS.to_string();
    for (from, to) in changes {
        assert_eq!(
            models.matches(from).count(),
            1,
            "`{from}` once in the models"
        );
        models = models.replacen(from, to, 1);
    }
    models
}

/// A fresh database as `init` leaves one (schema public the role's), `create_all` of the
/// project's models run in it by SQLAlchemy itself, as the role: its URL (the oracle).
fn create_all(t: &TestDb, root: &Path, python: &Path, tag: &str) -> String {
    let empty = root.join("empty.sql");
    std::fs::write(&empty, "").expect("write");
    let url = psql_reference(t, tag, &empty);
    let out = Command::new(python)
        .current_dir(root)
        .arg("-c")
        .arg(
            "import sys\nfrom sqlalchemy import create_engine\nfrom app.models import Base\n\
             Base.metadata.create_all(create_engine(sys.argv[1]))",
        )
        .arg(url.replacen("postgresql://", "postgresql+psycopg://", 1))
        .output()
        .expect("python");
    assert!(out.status.success(), "create_all: {}", stderr(&out));
    url
}

#[track_caller]
fn same_as_create_all(t: &TestDb, root: &Path, python: &Path, tag: &str, what: &str) {
    let reference = create_all(t, root, python, tag);
    assert_same_dump(
        &columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name))),
        &columns_unordered(&schema_dump(&reference)),
        what,
    );
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_initial_migration_and_the_next_come_from_the_models() {
    let Some(python) = python() else { return };
    let t = TestDb::new("models_diff");
    let empty = scratch_dir("sql");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let root = project(&empty, MODELS);
    // The guide's first step, from an empty migrations folder.
    run_ok(&mut in_project(&t, &root, &python, &["init", "-q"]));
    run_ok(&mut in_project(
        &t,
        &root,
        &python,
        &[
            "migrate",
            "diff",
            "initial_tables",
            "--to-models",
            "app.models:Base",
        ],
    ));
    assert_eq!(
        files_in(&root.join("sql")),
        ["0001_initial_tables.down.sql", "0001_initial_tables.up.sql"]
    );
    run_ok(&mut in_project(&t, &root, &python, &["migrate", "up"]));
    same_as_create_all(
        &t,
        &root,
        &python,
        "v1",
        "migrate up must reach create_all's schema",
    );
    let first = columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name)));
    run_ok(&mut in_project(
        &t,
        &root,
        &python,
        &["migrate", "verify", "--models", "app.models:Base"],
    ));

    // No model change: nothing written, exit 0, and --json says so.
    let out = in_project(
        &t,
        &root,
        &python,
        &[
            "--json",
            "migrate",
            "diff",
            "again",
            "--to-models",
            "app.models:Base",
        ],
    )
    .output()
    .expect("diff");
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(doc["files"], serde_json::json!([]), "{doc}");
    assert_eq!(files_in(&root.join("sql")).len(), 2);

    // A model edit: a column with an index.
    let edited = MODELS.replacen(
        "    is_superuser = Column(",
        "    avatar_url = Column(Text, index=True)\n    is_superuser = Column(",
        1,
    );
    write_files(&root, &[("app/models.py", &edited)]);
    let out = expect_exit(
        &mut in_project(
            &t,
            &root,
            &python,
            &["migrate", "verify", "--models", "app.models:Base"],
        ),
        1,
    );
    assert!(
        stdout(&out).contains("column users.avatar_url"),
        "{}",
        stdout(&out)
    );
    run_ok(&mut in_project(
        &t,
        &root,
        &python,
        &[
            "migrate",
            "diff",
            "add_avatar",
            "--to-models",
            "app.models:Base",
        ],
    ));
    // The index on the new column has a no-transaction pair of its own (CONCURRENTLY).
    let up: String = files_in(&root.join("sql"))
        .iter()
        .filter(|f| f.ends_with(".up.sql") && !f.starts_with("0001"))
        .map(|f| std::fs::read_to_string(root.join("sql").join(f)).expect("up"))
        .collect();
    assert!(
        up.contains("avatar_url") && up.contains("ix_users_avatar_url"),
        "{up}"
    );
    run_ok(&mut in_project(&t, &root, &python, &["migrate", "up"]));
    same_as_create_all(
        &t,
        &root,
        &python,
        "v2",
        "the model edit's migration must reach create_all's schema",
    );
    run_ok(&mut in_project(
        &t,
        &root,
        &python,
        &["migrate", "down", "--to", "1", "--yes"],
    ));
    assert_same_dump(
        &columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name))),
        &first,
        "migrate down must return to the schema before the model edit",
    );
}

/// README's table ("model change that matches"), each row undone in the models: what the row
/// undoes, the object verify must name, a word of the model declaration it must suggest.
/// One row undone: the replacements, the object verify must name, a word of the declaration.
type Row = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

const ROWS: &[Row] = &[
    (
        &[(
            "is_active = Column(Boolean, nullable=False,",
            "is_active = Column(Boolean,",
        )],
        "column users.is_active",
        "nullable=False",
    ),
    (
        &[(
            "role_id = Column(UUID, ForeignKey(\"roles.id\", ondelete=\"RESTRICT\")",
            "role_id = Column(UUID, ForeignKey(\"roles.id\")",
        )],
        "users_role_id_fkey",
        "ondelete=\"RESTRICT\"",
    ),
    (
        &[(
            "ForeignKey(\"users.id\", ondelete=\"CASCADE\")",
            "ForeignKey(\"users.id\")",
        )],
        "refresh_tokens_user_id_fkey",
        "ondelete=\"CASCADE\"",
    ),
    (
        &[
            (
                "permissions = Column(JSONB,",
                "permissions = Column(postgresql.JSON,",
            ),
            (
                "\"jsonb_typeof(permissions) = 'array'\"",
                "\"json_typeof(permissions) = 'array'\"",
            ),
        ],
        "column roles.permissions",
        "postgresql.JSONB",
    ),
    (
        &[("Column(Numeric(14, 6),", "Column(Numeric,")],
        "column usage_logs.cost_estimated",
        "Numeric(14, 6)",
    ),
    (
        &[(
            "Column(Integer, Computed(\"tokens_prompt + tokens_completion\", persisted=True))",
            "Column(Integer)",
        )],
        "column usage_logs.tokens_total",
        "Computed(",
    ),
    (
        &[(
            "monthly_limit_tokens = Column(BigInteger,",
            "monthly_limit_tokens = Column(Integer,",
        )],
        "column department_quotas.monthly_limit_tokens",
        "BigInteger",
    ),
    (
        &[(
            "UniqueConstraint(\"provider\", \"model_name\", name=\"uq_llm_configurations_provider_model\"),",
            "",
        )],
        "uq_llm_configurations_provider_model",
        "UniqueConstraint(",
    ),
    (
        &[(
            "return Column(UUID, primary_key=True, server_default=text(\"gen_random_uuid()\"))",
            "return Column(UUID, primary_key=True)",
        )],
        "column roles.id",
        "server_default=text(\"gen_random_uuid()\")",
    ),
    (
        &[(
            "CheckConstraint(\"jsonb_typeof(permissions) = 'array'\", name=\"ck_roles_permissions_array\"),",
            "",
        )],
        "ck_roles_permissions_array",
        "CheckConstraint(",
    ),
    (
        &[("\n@touched\nclass Role(Base):", "\nclass Role(Base):")],
        "trg_roles_updated_at",
        "after_create",
    ),
];

#[tokio::test]
async fn verify_models_reports_each_of_readmes_rows_undone() {
    let Some(python) = python() else { return };
    let t = TestDb::new("models_verify");
    let root = project(&migrations_dir(&[]), MODELS);
    run_ok(&mut in_project(&t, &root, &python, &["init", "-q"]));
    let verify = |code: i32| {
        expect_exit(
            &mut in_project(
                &t,
                &root,
                &python,
                &["migrate", "verify", "--models", "app.models:Base"],
            ),
            code,
        )
    };
    let out = verify(0);
    assert!(stdout(&out).contains("match"), "{}", stdout(&out));
    for (changes, object, declaration) in ROWS {
        let from = changes[0].0;
        write_files(&root, &[("app/models.py", &undone(changes))]);
        let out = verify(1);
        let report = stdout(&out);
        let line = report
            .lines()
            .position(|l| l.contains(object))
            .unwrap_or_else(|| panic!("`{from}` undone: {object} not reported:\n{report}"));
        let hint = report.lines().nth(line + 1).unwrap_or_default();
        assert!(
            hint.trim_start().starts_with("model:") && hint.contains(declaration),
            "`{from}` undone: the model line for {object} must say {declaration}:\n{report}"
        );
    }
    // JSON: the same, each difference with its model declaration.
    write_files(&root, &[("app/models.py", &undone(ROWS[0].0))]);
    let out = expect_exit(
        &mut in_project(
            &t,
            &root,
            &python,
            &["--json", "migrate", "verify", "--models", "app.models:Base"],
        ),
        1,
    );
    crate::json::check("migrate verify --models", &stdout(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(doc["clean"], false);
    assert!(
        doc["drift"]
            .as_array()
            .expect("drift")
            .iter()
            .any(|d| d["object"] == "users.is_active"
                && d["model"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("nullable=False")),
        "{doc}"
    );
}

/// Each way the models cannot be read is an error saying what to do (exit 2), nothing written.
#[tokio::test]
async fn models_that_cannot_be_read_say_why() {
    let Some(python) = python() else { return };
    let t = TestDb::new("models_errors");
    let root = project(&migrations_dir(&[]), MODELS);
    run_ok(&mut in_project(&t, &root, &python, &["init", "-q"]));
    let run = |spec: &str, py: &Path| -> Command {
        let mut c = in_project(
            &t,
            &root,
            &python,
            &["migrate", "diff", "x", "--to-models", spec],
        );
        c.arg("--python").arg(py);
        c
    };
    let said = |mut cmd: Command, words: &[&str]| {
        let out = expect_exit(&mut cmd, 2);
        let text = stderr(&out);
        for w in words {
            assert!(text.contains(w), "expected `{w}` in:\n{text}");
        }
    };
    said(
        run("app.models:Base", Path::new("/nonexistent/bin/python")),
        &["cannot run the backend's Python", "--python"],
    );
    // A Python without SQLAlchemy (site-packages off).
    let bare = root.join("bare-python");
    std::fs::write(&bare, "#!/bin/sh\nexec python3 -S \"$@\"\n").expect("write");
    std::fs::set_permissions(&bare, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    said(
        run("app.models:Base", &bare),
        &["SQLAlchemy is not installed", "pip install sqlalchemy"],
    );
    said(
        run("app.missing:Base", &python),
        &["importing `app.missing` failed", "ModuleNotFoundError"],
    );
    write_files(
        &root,
        &[(
            "app/broken.py",
            "import sqlalchemy\nraise RuntimeError('settings not loaded: DATABASE_URL')\n",
        )],
    );
    said(
        run("app.broken:Base", &python),
        &["RuntimeError: settings not loaded: DATABASE_URL"],
    );
    said(run("app.models:Bsae", &python), &["has no `Bsae`"]);
    said(
        run("app.models:key", &python),
        &["neither a declarative base nor a MetaData"],
    );
    said(run("app.models", &python), &["MODULE:ATTR"]);
    // A type an extension makes, which the live database does not have.
    write_files(
        &root,
        &[(
            "app/tagged.py",
            "from sqlalchemy import Column, Integer, MetaData, Table\n\
             from sqlalchemy.dialects.postgresql import CITEXT\n\
             metadata = MetaData()\n\
             Table('tags', metadata, Column('id', Integer, primary_key=True), Column('name', CITEXT))\n",
        )],
    );
    let out = run("app.tagged:metadata", &python).output().expect("diff");
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("needs the extension `citext`") && text.contains("CREATE EXTENSION"),
        "{text}"
    );
    assert_eq!(files_in(&root.join("sql")).len(), 2, "nothing written");
}
