//! The pytest plugin in `python/` (issue #27): a real pytest session, run from a backend-shaped
//! folder outside this project, with the plugin installed (`pip install`) in a venv. Twenty tests,
//! each on a clone of its own that sees only its own writes; afterwards no clone is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestDb, connect, migrations_dir, scratch_dir, write_files};

/// The venv `.ci/run` makes (pytest, psycopg, setuptools, wheel): `AIDOCK_TEST_PYTEST_VENV`, else
/// `/opt/aidock-pytest`. `None` (the test says it skipped) when it is not there.
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("AIDOCK_TEST_PYTEST_VENV")
        .map_or_else(|| PathBuf::from("/opt/aidock-pytest"), PathBuf::from);
    let ok = Command::new(dir.join("bin/python"))
        .args(["-c", "import pytest, psycopg, setuptools, wheel"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(dir)
}

/// `pip install` of this checkout's `python/` (from a copy: pip builds in the source tree).
fn install_plugin(venv: &Path) {
    let copy = scratch_dir("pyplugin");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success(), "copying python/");
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
        ])
        .arg(&copy)
        .output()
        .expect("pip");
    assert!(
        out.status.success(),
        "pip install python/:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const CONFTEST: &str =
    "# The backend's conftest.py: one line.\npytest_plugins = [\"pytest_aidock\"]\n";

/// Twenty tests: each on its own database as its own role, seeing the template's rows and none of
/// the other tests' writes; each writes one user and names its database in `clones.txt`.
const TESTS: &str = r#"import os
import pytest


@pytest.mark.parametrize("i", range(20))
def test_a_database_of_its_own(aidock_conn, aidock_database, aidock_url, i):
    assert aidock_database.url == aidock_url
    with open(os.path.join(os.path.dirname(__file__), "..", "clones.txt"), "a") as f:
        f.write(aidock_database.name + "\n")
    with aidock_conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_user")
        assert cur.fetchone() == (aidock_database.name, aidock_database.owner)
        cur.execute("SELECT count(*) FROM users WHERE username LIKE 'pytest-%'")
        assert cur.fetchone()[0] == 0, "another test's write is visible"
        cur.execute("SELECT count(*) FROM usage_logs")
        assert cur.fetchone()[0] == 40
        cur.execute(
            "INSERT INTO users (username, email, hashed_password, role_id, department_id) "
            "SELECT %s, %s, 'x', role_id, department_id FROM users ORDER BY username LIMIT 1",
            (f"pytest-{i}", f"pytest-{i}@example.com"),
        )
        cur.execute("SELECT count(*) FROM users WHERE username LIKE 'pytest-%'")
        assert cur.fetchone()[0] == 1
    aidock_conn.commit()
"#;

#[tokio::test]
async fn a_pytest_session_in_another_repository_gets_a_clone_per_test() {
    let Some(venv) = venv() else {
        crate::support::missing(
            "a venv with pytest, psycopg, setuptools and wheel at /opt/aidock-pytest",
            "python3 -m venv /opt/aidock-pytest && /opt/aidock-pytest/bin/pip install pytest 'psycopg[binary]' 'setuptools>=61' wheel (.ci/run does), or set AIDOCK_TEST_PYTEST_VENV",
        );
        return;
    };
    install_plugin(&venv);
    let t = TestDb::new("pytest");

    // This project as another repository's tests see it: its sql/ (only 0001: what the test
    // asserts must not change when sql/ grows); settings and seeds the binary's own.
    let project = scratch_dir("pyproject");
    let sql = migrations_dir(&[]);
    std::fs::create_dir_all(&project).expect("project");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&sql)
        .arg(project.join("sql"))
        .status()
        .expect("cp");
    assert!(status.success());

    // The backend's repository: its own pyproject.toml and tests/, nothing of ours.
    let backend = scratch_dir("Back");
    write_files(
        &backend,
        &[(
            "pyproject.toml",
            "[project]\nname = \"aidock-backend\"\nversion = \"0\"\n\n[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n",
        )],
    );
    write_files(
        &backend.join("tests"),
        &[("conftest.py", CONFTEST), ("test_isolation.py", TESTS)],
    );

    let template = format!("{}_tpl", t.name);
    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(&backend)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &backend)
        .env(
            "AIDOCK_PROVISION_BIN",
            env!("CARGO_BIN_EXE_aidock-provision"),
        )
        .env("AIDOCK_ADMIN_URL", &t.admin_url)
        .env("AIDOCK_PROJECT_DIR", &project)
        .env("AIDOCK_PROFILE", "test")
        .env("AIDOCK_TEMPLATE", &template)
        .env("AIDOCK_TEMPLATE_ARGS", "--dev --users 3 --usage-logs 40")
        .output()
        .expect("pytest");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest failed:\n{said}");
    assert!(said.contains("20 passed"), "{said}");

    // Twenty clones, all different, none left; the template stays (the next session's no-op).
    let names: Vec<String> = std::fs::read_to_string(backend.join("clones.txt"))
        .expect("clones.txt")
        .lines()
        .map(str::to_string)
        .collect();
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!((names.len(), distinct.len()), (20, 20), "{names:?}");
    let admin = connect(&t.admin_url).await;
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = ANY($1))
                  + (SELECT count(*) FROM pg_roles WHERE rolname = ANY($1))",
            &[&names],
        )
        .await
        .expect("left")
        .get(0);
    assert_eq!(left, 0, "clones or their roles left behind");
    let template_there: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)",
            &[&template],
        )
        .await
        .expect("template")
        .get(0);
    assert!(template_there);
}
