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
        .args([
            "-c",
            "import pytest, psycopg, setuptools, wheel, xdist, fastapi, httpx, sqlalchemy, asyncpg, bcrypt, greenlet",
        ])
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
        f.write(aidock_database.name + " " + aidock_database.owner + "\n")
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
            "a venv with pytest, pytest-xdist, psycopg, setuptools, wheel and the FastAPI recipe's packages at /opt/aidock-pytest",
            "python3 -m venv /opt/aidock-pytest && /opt/aidock-pytest/bin/pip install pytest pytest-xdist 'psycopg[binary]' 'setuptools>=61' wheel fastapi httpx 'sqlalchemy[asyncio]>=2' asyncpg bcrypt (.ci/run does), or set AIDOCK_TEST_PYTEST_VENV",
        );
        return;
    };
    install_plugin(&venv);
    let t = TestDb::new("pytest");

    // This project as another repository's tests see it: its sql/ (only 0001: what the test
    // asserts must not change when sql/ grows); settings and seeds the binary's own. The
    // backend's repository: its own pyproject.toml and tests/, nothing of ours.
    let (project, backend) = (project_folder(), backend_folder());

    let template = format!("{}_tpl", t.name);
    let (ok, said) = pytest(&venv, &backend, &t, &project, &template, &[]);
    assert!(ok, "pytest failed:\n{said}");
    assert!(said.contains("20 passed"), "{said}");

    // Twenty clones, all different, none left; the template stays (the next session's no-op).
    let admin = connect(&t.admin_url).await;
    let (names, owners) = clones(&backend);
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!((names.len(), distinct.len()), (20, 20), "{names:?}");
    assert_eq!(
        owners.len(),
        1,
        "one login role for the session: {owners:?}"
    );
    assert_eq!(
        still_there(&admin, &names, &owners).await,
        Vec::<String>::new(),
        "clones or the session's role left behind"
    );

    // Two xdist workers: a pool each, the same guarantees.
    std::fs::remove_file(backend.join("clones.txt")).expect("rm");
    let out = pytest(&venv, &backend, &t, &project, &template, &["-n", "2"]);
    assert!(out.0, "pytest -n 2 failed:\n{}", out.1);
    assert!(out.1.contains("20 passed"), "{}", out.1);
    let (names, owners) = clones(&backend);
    assert_eq!((names.len(), owners.len()), (20, 2), "{names:?} {owners:?}");
    assert_eq!(
        still_there(&admin, &names, &owners).await,
        Vec::<String>::new()
    );

    // A pool killed outright leaves its clone and role; the next session's pool drops them.
    let bin = env!("CARGO_BIN_EXE_aidock-provision");
    let pool_env = |c: &mut Command| {
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AIDOCK_ADMIN_URL", &t.admin_url)
            .env("AIDOCK_PROJECT_DIR", &project)
            .env("AIDOCK_PROFILE", "test");
    };
    let mut first = Command::new(bin);
    pool_env(&mut first);
    let mut first = first
        .args(["pool", "--template", &template])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pool");
    let mut input = first.stdin.take().expect("stdin");
    let mut output = std::io::BufReader::new(first.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut output, &mut line).expect("ready");
    assert!(line.contains("\"ready\":true"), "{line}");
    std::io::Write::write_all(&mut input, b"clone\n").expect("clone");
    line.clear();
    std::io::BufRead::read_line(&mut output, &mut line).expect("clone");
    let clone: serde_json::Value = serde_json::from_str(&line).expect("json");
    let name = clone["name"].as_str().expect("name").to_string();
    let role = clone["owner"].as_str().expect("owner").to_string();
    first.kill().expect("SIGKILL");
    first.wait().expect("wait");
    assert_eq!(
        still_there(
            &admin,
            std::slice::from_ref(&name),
            std::slice::from_ref(&role)
        )
        .await,
        {
            let mut both = vec![name.clone(), role.clone()];
            both.sort();
            both
        },
        "a killed pool cannot clean up"
    );
    let mut second = Command::new(bin);
    pool_env(&mut second);
    let done = second
        .args(["pool", "--template", &template])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("pool");
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        said.contains(&name) && said.contains(&role),
        "swept: {said}"
    );
    assert_eq!(
        still_there(&admin, &[name], &[role]).await,
        Vec::<String>::new()
    );

    // A setup that cannot work is said in full once, not once per test.
    let (ok, said) = pytest(
        &venv,
        &backend,
        &t,
        &project,
        &format!("{template}_bad"),
        &[],
    );
    assert!(!ok, "{said}");
    assert!(said.contains("20 errors"), "{said}");
    assert_eq!(
        said.matches("` failed (exit ").count(),
        1,
        "said once in full: {said}"
    );
    assert_eq!(said.matches("said in full for").count(), 19, "{said}");
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

/// The backend's pytest session (`extra` flags); whether it passed, and what it said. A template
/// name ending in `_bad` gets template flags that cannot work.
fn pytest(
    venv: &Path,
    backend: &Path,
    t: &TestDb,
    project: &Path,
    template: &str,
    extra: &[&str],
) -> (bool, String) {
    pytest_with(
        venv,
        backend,
        t,
        project,
        template,
        extra,
        Some(env!("CARGO_BIN_EXE_aidock-provision")),
    )
}

/// [`pytest`], naming the binary (`None`: the plugin finds it itself, in its environment).
fn pytest_with(
    venv: &Path,
    backend: &Path,
    t: &TestDb,
    project: &Path,
    template: &str,
    extra: &[&str],
    binary: Option<&str>,
) -> (bool, String) {
    let args = if template.ends_with("_bad") {
        "--dev --users 3 --usage-logs forty"
    } else {
        "--dev --users 3 --usage-logs 40"
    };
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(extra)
        .current_dir(backend)
        .env_clear()
        // No cargo, and no aidock-provision, on PATH.
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", backend);
    if let Some(binary) = binary {
        cmd.env("AIDOCK_PROVISION_BIN", binary);
    }
    let out = cmd
        .env("AIDOCK_ADMIN_URL", &t.admin_url)
        .env("AIDOCK_PROJECT_DIR", project)
        .env("AIDOCK_PROFILE", "test")
        .env("AIDOCK_TEMPLATE", template)
        .env("AIDOCK_TEMPLATE_ARGS", args)
        .output()
        .expect("pytest");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The clones a session's tests wrote down (`name owner` lines), and the distinct owners.
fn clones(backend: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(backend.join("clones.txt")).expect("clones.txt");
    let mut names = Vec::new();
    let mut owners = std::collections::BTreeSet::new();
    for line in text.lines() {
        let (name, owner) = line.split_once(' ').expect("name owner");
        names.push(name.to_string());
        owners.insert(owner.to_string());
    }
    (names, owners.into_iter().collect())
}

/// Which of these databases and roles still exist.
async fn still_there(
    admin: &tokio_postgres::Client,
    databases: &[String],
    roles: &[String],
) -> Vec<String> {
    admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datname = ANY($1) \
             UNION ALL SELECT rolname::text FROM pg_roles WHERE rolname = ANY($2) ORDER BY 1",
            &[&databases, &roles],
        )
        .await
        .expect("still there")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A backend-shaped folder (its own pyproject.toml; `tests/` with the one-line conftest and the
/// twenty tests).
fn backend_folder() -> PathBuf {
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
    backend
}

/// This project as another repository's tests see it: its sql/ (only 0001).
fn project_folder() -> PathBuf {
    let project = scratch_dir("pyproject");
    std::fs::create_dir_all(&project).expect("project");
    let status = Command::new("cp")
        .arg("-r")
        .arg(migrations_dir(&[]))
        .arg(project.join("sql"))
        .status()
        .expect("cp");
    assert!(status.success());
    project
}

/// Issue #45: `pip install` of the wheel (built by `.ci/run` with maturin) gives a venv without
/// Rust the binary and the plugin; the plugin finds the binary in its own environment.
#[tokio::test]
async fn the_wheel_brings_the_binary_and_the_plugin() {
    let venv = std::env::var_os("AIDOCK_TEST_WHEEL_VENV")
        .map_or_else(|| PathBuf::from("/opt/aidock-wheel"), PathBuf::from);
    if !venv.join("bin/aidock-provision").is_file() {
        crate::support::missing(
            "the wheel installed in a venv at /opt/aidock-wheel",
            "maturin build --locked -o target/wheels && python3 -m venv /opt/aidock-wheel && /opt/aidock-wheel/bin/pip install target/wheels/*.whl pytest 'psycopg[binary]' (.ci/run does), or set AIDOCK_TEST_WHEEL_VENV",
        );
        return;
    }
    let version = Command::new(venv.join("bin/aidock-provision"))
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("--version");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("aidock-provision {}", env!("CARGO_PKG_VERSION"))
    );
    let t = TestDb::new("pywheel");
    let (backend, project) = (backend_folder(), project_folder());
    let template = format!("{}_tpl", t.name);
    let (ok, said) = pytest_with(&venv, &backend, &t, &project, &template, &[], None);
    assert!(ok, "pytest with the wheel failed:\n{said}");
    assert!(said.contains("20 passed"), "{said}");
    let admin = connect(&t.admin_url).await;
    let (names, owners) = clones(&backend);
    assert_eq!(names.len(), 20);
    assert_eq!(
        still_there(&admin, &names, &owners).await,
        Vec::<String>::new()
    );
}

/// Issue #45: the FastAPI recipe (python/examples/fastapi, python/README.md): an app whose async
/// engine is built at import, its `get_db` overridden per test with `aidock_async_url`, bcrypt
/// hashes for its login (the `aidock_password_scheme` ini setting); reading the seeded data,
/// writing, each test on its own database.
#[tokio::test]
async fn the_fastapi_recipe_gives_each_test_its_own_database() {
    let Some(venv) = venv() else {
        crate::support::missing(
            "a venv with pytest and the FastAPI recipe's packages at /opt/aidock-pytest",
            "python3 -m venv /opt/aidock-pytest && /opt/aidock-pytest/bin/pip install pytest pytest-xdist 'psycopg[binary]' 'setuptools>=61' wheel fastapi httpx 'sqlalchemy[asyncio]>=2' asyncpg bcrypt (.ci/run does), or set AIDOCK_TEST_PYTEST_VENV",
        );
        return;
    };
    install_plugin(&venv);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/examples/fastapi");
    // README's recipe is the example's conftest, word for word.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/README.md"))
            .expect("python/README.md");
    let conftest = std::fs::read_to_string(example.join("tests/conftest.py")).expect("conftest");
    assert!(
        readme.contains(&format!("```python\n{conftest}```")),
        "python/README.md must show python/examples/fastapi/tests/conftest.py as it is"
    );
    let backend = scratch_dir("fastapi");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&example)
        .arg(&backend)
        .status()
        .expect("cp");
    assert!(status.success());
    let t = TestDb::new("pyfastapi");
    let project = project_folder();
    let (ok, said) = pytest(
        &venv,
        &backend,
        &t,
        &project,
        &format!("{}_tpl", t.name),
        &[],
    );
    assert!(ok, "the FastAPI recipe failed:\n{said}");
    assert!(said.contains("7 passed"), "{said}");
}
