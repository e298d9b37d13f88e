//! Shared test fixtures: one throwaway cluster per test process, one database and role per test,
//! and helpers that run the real binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use aidock_provision::local_pg::{self, LocalPg};

/// The cluster every test in this process shares.
pub struct Cluster {
    /// Superuser URL over TCP.
    pub admin_url: String,
    pub port: u16,
    /// The server log (None for an external server).
    pub log_file: Option<PathBuf>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The shared cluster: `AIDOCK_TEST_ADMIN_URL` if set, else a throwaway local cluster that a
/// watchdog process stops and deletes when this test process exits (also after a panic).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("AIDOCK_TEST_ADMIN_URL") {
            return Cluster {
                admin_url: url,
                port: 0,
                log_file: None,
            };
        }
        let dir = scratch_dir("cluster");
        let port = free_port();
        let options = local_pg::Options {
            tcp: true,
            fsync: false,
            extra_conf: vec![
                "log_statement = 'all'".into(),
                "log_line_prefix = '%m [%p] app=%a user=%u db=%d: '".into(),
                "max_connections = 300".into(),
                "shared_buffers = '64MB'".into(),
            ],
            // The version matrix (.ci/run): the same suite against another major version.
            bindir: std::env::var_os("AIDOCK_TEST_PG_BINDIR").map(PathBuf::from),
        };
        let pg = LocalPg::new(&dir, port, options).expect("postgres binaries for the test cluster");
        pg.start().expect("starting the test cluster");
        Cluster {
            admin_url: pg.admin_url().expect("admin url"),
            port,
            log_file: Some(pg.log_file()),
        }
    })
}

/// The superuser's password of the shared test cluster (tests that log in without the URL).
pub fn cluster_password() -> String {
    cluster()
        .admin_url
        .split_once("postgres:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(pw, _)| pw.to_string())
        .expect("password in the test cluster URL")
}

/// A second, dedicated cluster for tests that need special server settings (TLS); cleaned up
/// like the shared one when this process exits.
pub fn dedicated_cluster(tag: &str, extra_conf: Vec<String>) -> LocalPg {
    let options = local_pg::Options {
        tcp: true,
        fsync: false,
        extra_conf,
        bindir: None,
    };
    let pg = LocalPg::new(&scratch_dir(tag), free_port(), options).expect("postgres binaries");
    pg.start().expect("starting a dedicated cluster");
    pg
}

/// uid and gid of the `postgres` system user when running as root (files the server reads must
/// be its own).
pub fn server_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

/// This process's scratch area, `/tmp/aidock-it-<pid>`. A watchdog process waits for this test
/// process to exit (however it ends: success, panic, SIGKILL), then kills every process whose pid
/// a test wrote to a `*.child-pid` file (Patroni, etcd), stops every cluster started inside
/// (immediate shutdown via its pid file) and deletes the whole directory.
fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::process::CommandExt as _;
        let dir = PathBuf::from(format!("/tmp/aidock-it-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             for f in $(find '{dir}' -name '*.child-pid' 2>/dev/null); do \
               kill -KILL \"$(cat \"$f\")\" 2>/dev/null; done; \
             for f in $(find '{dir}' -name postmaster.pid 2>/dev/null); do \
               kill -CONT \"$(head -n 1 \"$f\")\" 2>/dev/null; \
               kill -QUIT \"$(head -n 1 \"$f\")\" 2>/dev/null; done; \
             sleep 1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = dir.display(),
        );
        // Never waited on: it must outlive this process to clean up after it.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning the cleanup watchdog");
        dir
    })
}

/// A fresh directory in this process's scratch area (reachable by the postgres user when tests
/// run as root); the watchdog removes it at the latest when the process exits.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = process_dir().join(format!("{tag}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local addr").port()
}

/// A unique lower-case name for this test's database and role.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}_{tag}_{n}", std::process::id())
}

/// One test's database and owner role names on the shared cluster (created by the test, usually
/// through `init`).
pub struct TestDb {
    pub name: String,
    pub password: String,
    /// Superuser URL tagged with this test's application_name, so log lines can be told apart.
    pub admin_url: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let name = unique_name(tag);
        let base = &cluster().admin_url;
        let sep = if base.contains('?') { '&' } else { '?' };
        TestDb {
            admin_url: format!("{base}{sep}application_name={name}"),
            password: format!("pw-{name}"),
            name,
        }
    }

    /// The binary, pointed at this test's names with the test profile.
    pub fn cmd(&self) -> Command {
        let mut cmd = bin();
        cmd.env("AIDOCK_ADMIN_URL", &self.admin_url)
            .env("AIDOCK__DATABASE__NAME", &self.name)
            .env("AIDOCK__DATABASE__OWNER", &self.name)
            .env("AIDOCK__DATABASE__PASSWORD", &self.password);
        cmd
    }

    /// A superuser connection to this test's database.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&with_db(&self.admin_url, &self.name)).await
    }

    /// A superuser connection to the `postgres` database.
    pub async fn admin_postgres(&self) -> tokio_postgres::Client {
        connect(&self.admin_url).await
    }

    /// The app role's URL over TCP.
    pub fn app_url(&self) -> String {
        format!(
            "postgresql://{n}:{p}@127.0.0.1:{port}/{n}",
            n = self.name,
            p = self.password,
            port = cluster().port
        )
    }

    /// Server log lines written by this test's admin connections.
    pub fn log_lines(&self) -> Vec<String> {
        let Some(path) = &cluster().log_file else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let tag = format!("app={} ", self.name);
        text.lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect()
    }
}

/// Replace the database in a URL.
pub fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (head, _) = base.rsplit_once('/').expect("url has a path");
    match query {
        Some(q) => format!("{head}/{db}?{q}"),
        None => format!("{head}/{db}"),
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The binary under test with a clean environment: nothing leaks in from the developer's shell,
/// and no command can touch the default project-local cluster.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aidock-provision"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AIDOCK_PROFILE", "test")
        .env("AIDOCK__LOCAL__DATA_DIR", scratch_dir("never-used"))
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Run and return the output, asserting the exit code.
#[track_caller]
pub fn expect_exit(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().expect("running aidock-provision");
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code} from {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run, asserting success, and return stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let out = expect_exit(cmd, 0);
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// stderr as a string.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Write files into a directory (creating it).
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("creating dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("writing file");
    }
}

/// An environment map for `Settings::load_with`.
pub fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A migrations directory holding the AI Dock schema (`sql/0001_initial_tables`) plus `extra`
/// files. Only 0001 is copied, so a test's own `0002_...` never collides with a migration added to
/// `sql/` later, and what a test asserts does not change when `sql/` grows.
pub fn migrations_dir(extra: &[(&str, &str)]) -> PathBuf {
    let dir = scratch_dir("sql");
    let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["0001_initial_tables.up.sql", "0001_initial_tables.down.sql"] {
        std::fs::copy(sql.join(file), dir.join(file)).expect("copy");
    }
    write_files(&dir, extra);
    dir
}

/// The highest version among the built-in migrations (`sql/`), as `alembic_version` stamps it.
pub fn builtin_head() -> String {
    let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let head = std::fs::read_dir(sql)
        .expect("sql/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
        .expect("at least one migration");
    format!("{head:04}")
}

/// Run the commands at the same time; assert that every one succeeds; return their stdout.
#[track_caller]
pub fn run_concurrently(commands: impl IntoIterator<Item = Command>) -> String {
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut cmd| {
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut all = String::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a concurrent run failed: {}",
            stderr(&out)
        );
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// Wait (up to a minute) until another session of this database runs exactly `query`.
pub async fn wait_for_query(db: &tokio_postgres::Client, query: &str) {
    wait_for_activity(db, "query = $1 AND datname = current_database()", query).await;
}

/// Advisory locks held in the connected database (by anyone).
/// The versions in the migrations ledger (`aidock_provision.schema_history`), in order; empty
/// when there is no ledger.
pub async fn ledger_versions(db: &tokio_postgres::Client) -> Vec<i64> {
    let there: bool = db
        .query_one(
            "SELECT to_regclass('aidock_provision.schema_history') IS NOT NULL",
            &[],
        )
        .await
        .expect("regclass")
        .get(0);
    if !there {
        return Vec::new();
    }
    db.query(
        "SELECT version FROM aidock_provision.schema_history ORDER BY 1",
        &[],
    )
    .await
    .expect("ledger")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The tables in schema public, by name.
pub async fn public_tables(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        &[],
    )
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

pub async fn advisory_locks(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    )
    .await
    .expect("pg_locks")
    .get(0)
}

/// The server's `server_version_num` (the version matrix runs some checks only where they apply).
pub async fn server_version(db: &tokio_postgres::Client) -> i32 {
    db.query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("server_version_num")
        .get(0)
}

/// The pg_dump the schema comparisons use: `AIDOCK_TEST_PG_DUMP` (the version matrix sets one
/// that reads every server it runs against), else `pg_dump` on PATH.
pub fn pg_dump() -> String {
    std::env::var("AIDOCK_TEST_PG_DUMP").unwrap_or_else(|_| "pg_dump".to_string())
}

/// `pg_dump -s` of a database (our bookkeeping and pg_dump's per-run `\restrict` key left out).
/// A dump that fails or says nothing fails the test: a "schema unchanged" check must never
/// compare nothing with nothing.
#[track_caller]
pub fn schema_dump(url: &str) -> String {
    dump_with(
        url,
        &[
            "-s",
            "--exclude-schema=aidock_provision",
            "--exclude-table=alembic_version",
        ],
    )
}

/// `pg_dump ARGS URL`, checked as [`schema_dump`] is.
#[track_caller]
pub fn dump_with(url: &str, args: &[&str]) -> String {
    let out = Command::new(pg_dump())
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", pg_dump()));
    assert!(
        out.status.success(),
        "{} could not dump the database (set AIDOCK_TEST_PG_DUMP to one that reads this server): {}",
        pg_dump(),
        stderr(&out)
    );
    let text: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("PostgreSQL database dump"),
        "{} said nothing about the database: {text:?}",
        pg_dump()
    );
    text
}

/// Run `verify --fix --json`'s repair as a user would: its admin part (ownership) with psql as
/// the admin on `admin_db_url`, the rest with psql as the app role on `app_db_url` (its own
/// login: issue #40). Err holds psql's complaint and the SQL.
pub fn apply_fix(
    v: &serde_json::Value,
    admin_db_url: &str,
    app_db_url: &str,
) -> Result<(), String> {
    let psql = |sql: &str, url: &str| -> Result<(), String> {
        let file = scratch_dir("fix").with_extension("sql");
        std::fs::write(&file, sql).expect("write");
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&file)
            .arg(url)
            .output()
            .expect("psql");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{}\n{sql}", stderr(&out)))
        }
    };
    if let Some(admin) = v["fix_admin_sql"].as_str() {
        psql(admin, admin_db_url)?;
    }
    psql(v["fix_role_sql"].as_str().unwrap_or_default(), app_db_url)
}

/// A test needs `what`, which this machine lacks. In CI (the `CI` variable set, as `.ci/run`
/// sets it) that fails the test, naming what to install: CI must not go green with a feature
/// untested. Elsewhere the test says it skipped (the caller then returns).
#[track_caller]
pub fn missing(what: &str, install: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing on this CI machine, so this test cannot run: {install}"
    );
    eprintln!("skipped: {what} is missing ({install})");
}

/// Whether this process runs as root; when not, [`missing`] says so (a failure in CI).
#[track_caller]
pub fn root_or_missing() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        missing("root", "run the suite as root, as CI does");
    }
    root
}

/// A spawned command whose stderr is read line by line as it comes (so a test waits for what the
/// command says, not for a fixed time).
pub struct Watched {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watched {
    /// Spawn `cmd` with stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> Watched {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (up to two minutes, a guard against a hang) until a line of stderr contains `needle`.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!(
                    "`{needle}` never came ({e}); stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the exit: its status, stdout, and all of stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut stdout);
        }
        let status = self.child.wait().expect("wait");
        // The reader thread ends with the pipe; take what it still has.
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status, stdout, self.seen.join("\n"))
    }
}

/// Wait (up to a minute) until another session of the database `db` is connected to runs a
/// statement starting with `start`.
pub async fn wait_for_statement(db: &tokio_postgres::Client, start: &str) {
    let pattern = format!("{}%", start.replace('%', "\\%").replace('_', "\\_"));
    wait_for_activity(db, "query LIKE $1", &pattern).await;
}

/// Wait (up to a minute) until `pg_stat_activity` shows another session matching `condition`
/// (with `$1` bound to `value`).
async fn wait_for_activity(db: &tokio_postgres::Client, condition: &str, value: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE {condition} AND pid <> pg_backend_pid()"
    );
    loop {
        let running: i64 = db
            .query_one(&sql, &[&value])
            .await
            .expect("pg_stat_activity")
            .get(0);
        if running > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session matched `{condition}` for `{value}`"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Where a test makes a table's inserts fail (one fault-injection helper for every test that
/// needs one): each raises `message`, from the first row, from row `n` on (counted over every
/// connection, for loads that split over several), or at commit (a deferred constraint trigger).
pub enum Fault<'a> {
    Always(&'a str),
    AtRow(i64, &'a str),
    AtCommit(&'a str),
}

impl Fault<'_> {
    /// Put the fault on `table` (as the admin, on `db`); `role` may then use what it needs.
    pub async fn inject(&self, db: &tokio_postgres::Client, table: &str, role: &str) {
        let (body, trigger) = match self {
            Fault::Always(message) => (
                format!("RAISE EXCEPTION '{message}';"),
                format!(
                    "CREATE TRIGGER aidock_fault BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION aidock_fault();"
                ),
            ),
            Fault::AtRow(n, message) => (
                format!(
                    "IF nextval('aidock_fault_rows') >= {n} THEN RAISE EXCEPTION '{message}'; END IF; RETURN NEW;"
                ),
                format!(
                    "CREATE TRIGGER aidock_fault BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION aidock_fault();"
                ),
            ),
            Fault::AtCommit(message) => (
                format!("RAISE EXCEPTION '{message}';"),
                format!(
                    "CREATE CONSTRAINT TRIGGER aidock_fault AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION aidock_fault();"
                ),
            ),
        };
        db.batch_execute(&format!(
            "CREATE SEQUENCE IF NOT EXISTS aidock_fault_rows;
             GRANT USAGE ON SEQUENCE aidock_fault_rows TO \"{role}\";
             CREATE FUNCTION aidock_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;
             {trigger}"
        ))
        .await
        .expect("injecting a fault");
    }
}
