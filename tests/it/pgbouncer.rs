//! Migrations through PgBouncer in transaction pooling mode.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestDb, connect, free_port, run_ok, scratch_dir, server_owner, write_files};

fn pgbouncer_binary() -> Option<&'static str> {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// A pgbouncer in front of the shared cluster, transaction pooling, killed on drop.
struct Bouncer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_bouncer(t: &TestDb) -> Bouncer {
    start_pool(&[(t.name.clone(), t.password.clone())], 2)
}

/// PgBouncer 1.18 as Debian ships it, transaction pooling, `pool` server connections per
/// database and role, every database of the shared cluster reachable (a wildcard entry), the
/// given roles (and the superuser) logging in to the server with their passwords.
fn start_pool(roles: &[(String, String)], pool: u32) -> Bouncer {
    let program = pgbouncer_binary().expect("pgbouncer is installed (.ci/run installs it)");
    let cluster = crate::support::cluster();
    let dir = scratch_dir("pgbouncer");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let port = free_port();
    // Clients are trusted on loopback; pgbouncer logs in to the server with the role's password.
    let mut users: Vec<String> = roles
        .iter()
        .map(|(n, p)| format!("\"{n}\" \"{p}\""))
        .collect();
    users.push(format!(
        "\"postgres\" \"{}\"",
        crate::support::cluster_password()
    ));
    std::fs::write(dir.join("userlist.txt"), users.join("\n") + "\n").expect("userlist");
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n* = host=127.0.0.1 port={server}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             max_client_conn = 500\ndefault_pool_size = {pool}\nlogfile = {dir}/pgbouncer.log\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            server = cluster.port,
            dir = dir.display(),
        ),
    )
    .expect("ini");
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = server_owner() {
        // pgbouncer refuses to run as root.
        for entry in std::fs::read_dir(&dir).expect("dir") {
            std::os::unix::fs::chown(entry.expect("entry").path(), Some(uid), Some(gid))
                .expect("chown");
        }
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
    }
    let child = cmd
        .arg(dir.join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting pgbouncer");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pgbouncer did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Bouncer { child, port, dir }
}

#[tokio::test]
async fn migrations_through_pgbouncer_transaction_pooling_apply_once() {
    if pgbouncer_binary().is_none() {
        crate::support::missing("pgbouncer", "apt-get install pgbouncer (.ci/run does)");
        return;
    }
    let t = TestDb::new("bouncer");
    if crate::support::cluster().port == 0 {
        return;
    }
    // Only the AI Dock schema, whatever sql/ holds by now.
    let dir = crate::support::migrations_dir(&[]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["init", "-q"]),
    );
    let bouncer = start_bouncer(&t);
    let url = format!(
        "postgresql://{n}@127.0.0.1:{p}/{n}",
        n = t.name,
        p = bouncer.port
    );
    let through = |args: &[&str]| {
        let mut cmd = t.cmd();
        cmd.env("DATABASE_URL", &url)
            .env("AIDOCK__TLS__MODE", "disable")
            .arg("--migrations-dir")
            .arg(&dir)
            .args(args);
        cmd
    };
    let out = run_ok(&mut through(&["migrate", "down", "--base", "--yes"]));
    assert!(out.contains("reverted 0001_initial_tables"), "{out}");

    let all = crate::support::run_concurrently((0..4).map(|_| through(&["migrate", "up"])));
    assert_eq!(
        all.matches("applied 0001_initial_tables").count(),
        1,
        "{all}"
    );
    let status = run_ok(&mut through(&["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");

    let db = t.admin().await;
    let versions: Vec<i64> = db
        .query("SELECT version FROM aidock_provision.schema_history", &[])
        .await
        .expect("ledger")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1]);
    let locks = crate::support::advisory_locks(&db).await;
    assert_eq!(locks, 0, "no advisory lock is left behind");
    drop(bouncer);
}

/// Run `n` copies of a command at once; each must succeed, or be refused (exit 2) naming the
/// pooler; no run may meet a protocol error. Returns every run's stdout.
#[track_caller]
fn six_at_once(what: &str, make: impl Fn(usize) -> Command) -> Vec<String> {
    let children: Vec<_> = (0..6)
        .map(|i| {
            make(i)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut outs = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !err.contains("prepared statement") && !err.contains("unexpected message"),
            "{what}: a protocol error through the pooler:\n{err}"
        );
        let refused = out.status.code() == Some(2) && err.contains("pool");
        assert!(
            out.status.success() || refused,
            "{what}: exit {:?}\n{err}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
        outs.push(String::from_utf8_lossy(&out.stdout).to_string());
    }
    outs
}

/// Several deploys at once through PgBouncer's transaction pooling, admin and app URLs both
/// through it, a pool smaller than the clients (issue #25): every command, six copies at a time.
#[tokio::test]
async fn six_runs_of_every_command_at_once_through_transaction_pooling() {
    if pgbouncer_binary().is_none() {
        crate::support::missing("pgbouncer", "apt-get install pgbouncer (.ci/run does)");
        return;
    }
    if crate::support::cluster().port == 0 {
        return;
    }
    let t = TestDb::new("bounce6");
    let clones: Vec<TestDb> = (0..6).map(|_| TestDb::new("bounce6c")).collect();
    let adopted = TestDb::new("bounce6a");
    let mut roles: Vec<(String, String)> = vec![
        (t.name.clone(), t.password.clone()),
        (adopted.name.clone(), adopted.password.clone()),
    ];
    roles.extend(clones.iter().map(|c| (c.name.clone(), c.password.clone())));
    let bouncer = start_pool(&roles, 4);
    let admin = format!("postgresql://postgres@127.0.0.1:{}/postgres", bouncer.port);
    let project = scratch_dir("bounce6-project");
    let dir = project.join("sql");
    let ours = crate::support::migrations_dir(&[]);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(&ours).expect("sql") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    let through = |db: &TestDb| {
        let mut cmd = db.cmd();
        cmd.env("AIDOCK_ADMIN_URL", &admin)
            .env("AIDOCK__TLS__MODE", "disable")
            .current_dir(&project);
        cmd
    };

    six_at_once("init", |_| {
        let mut c = through(&t);
        c.args(["init", "-q"]);
        c
    });
    six_at_once("seed", |_| {
        let mut c = through(&t);
        c.arg("seed");
        c
    });
    six_at_once("seed --dev", |_| {
        let mut c = through(&t);
        c.args(["seed", "--dev", "--users", "3", "--usage-logs", "60"]);
        c
    });
    write_files(
        &dir,
        &[("0002_extra.up.sql", "CREATE TABLE extra (id int);\n")],
    );
    let ups = six_at_once("migrate up", |_| {
        let mut c = through(&t);
        c.args(["migrate", "up"]);
        c
    });
    assert_eq!(
        ups.iter().filter(|o| o.contains("applied 0002")).count(),
        1,
        "{ups:?}"
    );
    for out in six_at_once("migrate status", |_| {
        let mut c = through(&t);
        c.args(["migrate", "status"]);
        c
    }) {
        assert!(out.contains("up to date"), "{out}");
    }
    for out in six_at_once("migrate verify", |_| {
        let mut c = through(&t);
        c.args(["migrate", "verify"]);
        c
    }) {
        assert!(out.contains("schema matches"), "{out}");
    }
    write_files(
        &project,
        &[(
            "desired.sql",
            &(std::fs::read_to_string(dir.join("0001_initial_tables.up.sql")).expect("0001")
                + "CREATE TABLE extra (id int);\nCREATE TABLE more (id int);\n"),
        )],
    );
    for out in six_at_once("migrate diff --print", |_| {
        let mut c = through(&t);
        c.args(["migrate", "diff", "more", "--to", "desired.sql", "--print"]);
        c
    }) {
        assert!(out.contains("CREATE TABLE more"), "{out}");
    }
    // An identical database built by hand, adopted six times at once: recorded once.
    let hand_admin = connect(&crate::support::cluster().admin_url).await;
    for sql in [
        format!(
            "CREATE ROLE {n} LOGIN PASSWORD '{p}'",
            n = adopted.name,
            p = adopted.password
        ),
        format!("CREATE DATABASE {n} OWNER {n}", n = adopted.name),
    ] {
        hand_admin.batch_execute(&sql).await.expect("manual setup");
    }
    let by_hand = connect(&adopted.app_url()).await;
    by_hand
        .batch_execute(&format!(
            "{}\nCREATE TABLE extra (id int);",
            std::fs::read_to_string(dir.join("0001_initial_tables.up.sql")).expect("0001")
        ))
        .await
        .expect("built by hand");
    six_at_once("migrate baseline", |_| {
        let mut c = through(&adopted);
        c.args(["migrate", "baseline"]);
        c
    });
    let versions = crate::support::ledger_versions(&by_hand).await;
    assert_eq!(versions, [1, 2], "recorded once");
    six_at_once("doctor", |_| {
        let mut c = through(&t);
        c.arg("doctor");
        c
    });
    let template = format!("{}_template", t.name);
    six_at_once("template", |_| {
        let mut c = through(&t);
        c.args(["template", "--dev", "--users", "2", "--usage-logs", "20"]);
        c
    });
    six_at_once("init --from-template", |i| {
        let mut c = through(&clones[i]);
        c.args(["init", "-q", "--from-template", &template]);
        c
    });

    // Exactly what one run of each makes.
    let db = t.admin().await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM aidock_provision.schema_history").await,
        2,
        "each migration recorded once"
    );
    assert_eq!(count("SELECT count(*) FROM usage_logs").await, 60);
    assert_eq!(count("SELECT count(*) FROM roles").await, {
        count("SELECT count(DISTINCT name) FROM roles").await
    });
    for c in &clones {
        let clone = connect(&crate::support::with_db(
            &crate::support::cluster().admin_url,
            &c.name,
        ))
        .await;
        let logs: i64 = clone
            .query_one("SELECT count(*) FROM usage_logs", &[])
            .await
            .expect("clone")
            .get(0);
        assert_eq!(logs, 20, "each clone holds the template's data");
    }
    drop(bouncer);
}

/// No named prepared statement anywhere: only `db::sql` calls the driver's statement methods.
#[test]
fn only_db_sql_prepares_statements() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut violations = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("db/sql.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            for (n, line) in text.lines().enumerate() {
                for call in [
                    ".query(",
                    ".query_one(",
                    ".query_opt(",
                    ".query_raw(",
                    ".query_scalar(",
                    ".query_typed",
                    ".execute(",
                    ".execute_raw(",
                    ".execute_typed",
                    ".prepare(",
                    ".prepare_typed(",
                    ".copy_in(",
                    ".copy_out(",
                ] {
                    // The Python of the Alembic revision files is text, not a driver call.
                    if line.contains(call) && !line.contains("bind.execute(") {
                        violations.push(format!(
                            "{}:{}: {}",
                            path.strip_prefix(&src).expect("under src/").display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "use db::sql (unnamed statements) instead:\n{}",
        violations.join("\n")
    );
}
