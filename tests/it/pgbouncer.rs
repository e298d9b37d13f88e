//! Migrations through PgBouncer in transaction pooling mode.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TestDb, free_port, run_ok, scratch_dir, server_owner};

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
    let program = pgbouncer_binary().expect("pgbouncer is installed (.ci/run installs it)");
    let cluster = crate::support::cluster();
    let dir = scratch_dir("pgbouncer");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let port = free_port();
    // Clients are trusted on loopback; pgbouncer logs in to the server with the role's password.
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"{}\" \"{}\"\n", t.name, t.password),
    )
    .expect("userlist");
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n{name} = host=127.0.0.1 port={server} dbname={name}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             max_client_conn = 50\ndefault_pool_size = 2\nlogfile = {dir}/pgbouncer.log\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            name = t.name,
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
    if pgbouncer_binary().is_none() && std::env::var_os("CI").is_none() {
        eprintln!("pgbouncer is not installed; skipping (CI installs it)");
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
        .query("SELECT version FROM aidock_schema_history", &[])
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
