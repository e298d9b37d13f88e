//! High availability (issue #17): a multi-host URL reaches the primary of a real
//! streaming-replication pair (the standby made with `pg_basebackup -R`); pointed only at the
//! standby, commands that write exit 4 and name it.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use aidock_provision::local_pg::{self, LocalPg};

use crate::support::{
    TestDb, dedicated_cluster, expect_exit, free_port, migrations_dir, run_ok, scratch_dir,
    server_owner, stderr,
};

/// A hot standby of `primary`, started on its own port.
fn standby_of(primary: &LocalPg) -> LocalPg {
    // The layout LocalPg keeps: the root the tool user's, pgdata/ the server user's.
    let root = scratch_dir("standby");
    std::fs::create_dir_all(root.join("pgdata")).expect("mkdir");
    std::fs::set_permissions(
        root.join("pgdata"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let owner = server_owner();
    if let Some((uid, gid)) = owner {
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        std::os::unix::fs::chown(root.join("pgdata"), Some(uid), Some(gid)).expect("chown");
    }
    let bindir = local_pg::find_bindir().expect("server binaries");
    let mut cmd = Command::new(bindir.join("pg_basebackup"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &primary.port().to_string(),
        "-U",
        "postgres",
    ])
    .arg("-D")
    .arg(root.join("pgdata"))
    .args(["-R", "-X", "stream", "--no-sync"])
    .env("PGPASSWORD", primary.admin_password().expect("password"));
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().expect("pg_basebackup");
    assert!(out.status.success(), "pg_basebackup: {}", stderr(&out));
    std::fs::copy(
        primary.root().join("admin.password"),
        root.join("admin.password"),
    )
    .expect("password file");
    let options = local_pg::Options {
        tcp: true,
        fsync: false,
        extra_conf: vec!["hot_standby = on".into()],
        bindir: None,
    };
    let standby = LocalPg::new(&root, free_port(), options).expect("standby");
    standby.start().expect("starting the standby");
    standby
}

/// The app's database on `standby`, as the app's role, once replication has brought it there
/// (waiting up to 30 s); its URL.
/// A primary and its streaming standby, and the admin URL listing both (`standby_first`: the
/// standby listed first, as a URL that does not know which is which might).
struct HaPair {
    primary: LocalPg,
    standby: LocalPg,
    password: String,
    url: String,
}

impl HaPair {
    fn new(tag: &str, standby_first: bool) -> HaPair {
        let primary = dedicated_cluster(tag, Vec::new());
        let standby = standby_of(&primary);
        let password = primary.admin_password().expect("password");
        let (a, b) = if standby_first {
            (standby.port(), primary.port())
        } else {
            (primary.port(), standby.port())
        };
        let url = format!(
            "postgresql://postgres:{password}@127.0.0.1:{a},127.0.0.1:{b}/postgres?target_session_attrs=read-write"
        );
        HaPair {
            primary,
            standby,
            password,
            url,
        }
    }

    /// The superuser's URL of one of the two, on database `db`.
    fn node_url(&self, node: &LocalPg, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@127.0.0.1:{}/{db}",
            self.password,
            node.port()
        )
    }
}

async fn app_db_on(t: &TestDb, standby: &LocalPg) -> String {
    let url = format!(
        "postgresql://{n}:{p}@127.0.0.1:{port}/{n}",
        n = t.name,
        p = t.password,
        port = standby.port()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    url
}

#[tokio::test]
async fn a_multi_host_url_reaches_the_primary_and_the_standby_alone_is_exit_4() {
    let pair = HaPair::new("primary", true);
    let (primary, standby, both) = (&pair.primary, &pair.standby, &pair.url);
    let t = TestDb::new("ha");
    // The standby first: target_session_attrs=read-write skips it.
    let out = run_ok(t.cmd().env("AIDOCK_ADMIN_URL", both).arg("init"));
    assert!(out.contains("applied 0001"), "{out}");
    // The printed app URL keeps every host and target_session_attrs (issue #34).
    assert!(
        out.contains(&format!(
            "@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
            standby.port(),
            primary.port(),
            t.name
        )),
        "{out}"
    );
    // doctor under the HA URL: asynchronous replication is reported, with the setting.
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", both).arg("doctor"), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("asynchronous") && text.contains("synchronous_standby_names"),
        "{text}"
    );

    // Only the standby: init (as admin) and migrate up (as the app) refuse with exit 4.
    let only = pair.node_url(standby, "postgres");
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &only).arg("init"), 4);
    assert!(
        stderr(&out).contains("read-only standby")
            && stderr(&out).contains(&standby.port().to_string()),
        "{}",
        stderr(&out)
    );
    // Wait for the app database to reach the standby, then try to migrate it there.
    let app_on_standby = app_db_on(&t, standby).await;
    // verify and doctor on the standby alone: the standby message, not a raw read-only error.
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &only)
            .args(["migrate", "verify"]),
        4,
    );
    assert!(
        stderr(&out).contains("read-only standby")
            && stderr(&out).contains("target_session_attrs=read-write"),
        "{}",
        stderr(&out)
    );
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &only).arg("doctor"), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("read-only standby") && text.contains("target_session_attrs=read-write"),
        "{text}"
    );
    assert!(!text.contains("read-only transaction"), "{text}");
    let dir = migrations_dir(&[("0002_more.up.sql", "CREATE TABLE more (id int);\n")]);
    let out = expect_exit(
        t.cmd()
            .env("DATABASE_URL", &app_on_standby)
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
        4,
    );
    let err = stderr(&out);
    assert!(
        err.contains("read-only standby") && err.contains("target_session_attrs=read-write"),
        "{err}"
    );
    assert!(
        err.contains(&standby.port().to_string()),
        "names the standby: {err}"
    );
    let _ = standby.stop();
    let _ = primary.stop();
}

/// Promote `standby` (it becomes the primary the multi-host URL reaches).
async fn promote(standby: &LocalPg) {
    let url = standby.admin_url().expect("url");
    let client = crate::support::connect(&url).await;
    client
        .query_one("SELECT pg_promote(true, 60)", &[])
        .await
        .expect("pg_promote");
}

/// Issue #34: a run that loses its primary in the middle (stopped, the standby promoted) runs
/// again under `--wait` on the new primary and succeeds once; without `--wait` it exits 4 saying
/// the run was rolled back and how to re-run.
#[tokio::test]
async fn a_run_that_loses_its_primary_runs_again_under_wait_and_exits_4_without() {
    let pair = HaPair::new("lostprimary", false);
    let (primary, standby, both) = (&pair.primary, &pair.standby, &pair.url);
    let t = TestDb::new("halost");
    run_ok(t.cmd().env("AIDOCK_ADMIN_URL", both).args(["init", "-q"]));
    let dir = migrations_dir(&[
        (
            "0002_slow.up.sql",
            "SELECT pg_sleep(4);\nCREATE TABLE slow (id int);\n",
        ),
        (
            "0003_slower.up.sql",
            "SELECT pg_sleep(4);\nCREATE TABLE slower (id int);\n",
        ),
    ]);
    // Wait for the standby to have the app's database and role.
    app_db_on(&t, standby).await;

    // Under --wait: the primary stops 1.5 s into 0002; the standby is promoted; the run goes
    // again on it and applies 0002 (and then 0003, 8 s of sleeping in all) once.
    let mut cmd = t.cmd();
    cmd.env("AIDOCK_ADMIN_URL", both)
        .arg("--migrations-dir")
        .arg(&dir)
        .args(["--wait", "90s", "migrate", "up", "--to", "2"]);
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("run"));
    // Stopped while 0002 runs (its sleep under way on the primary), not after a fixed time.
    let on_primary = crate::support::connect(&pair.node_url(primary, "postgres")).await;
    crate::support::wait_for_statement(&on_primary, "SELECT pg_sleep(4)").await;
    drop(on_primary);
    primary.stop().expect("stopping the primary");
    promote(standby).await;
    let out = run.await.expect("join");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the server was lost in the middle of the run")
            && err.contains("running the command again"),
        "{err}"
    );
    let new_primary = crate::support::connect(&pair.node_url(standby, &t.name)).await;
    let versions = crate::support::ledger_versions(&new_primary).await;
    assert_eq!(versions, [1, 2], "0002 applied once, on the new primary");

    // Without --wait: the (new) primary stops mid-run: exit 4, rolled back, how to re-run.
    let mut cmd = t.cmd();
    cmd.env("AIDOCK_ADMIN_URL", both)
        .arg("--migrations-dir")
        .arg(&dir)
        .args(["migrate", "up"]);
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("run"));
    crate::support::wait_for_statement(&new_primary, "SELECT pg_sleep(4)").await;
    drop(new_primary);
    standby.stop().expect("stopping");
    let out = run.await.expect("join");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("went away in the middle of the run") && err.contains("--wait"),
        "{err}"
    );
    standby.start().expect("restart");
    let client = crate::support::connect(&pair.node_url(standby, &t.name)).await;
    let versions: i64 = client
        .query_one("SELECT count(*) FROM aidock_provision.schema_history", &[])
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(versions, 2, "0003 was rolled back");
    let _ = standby.stop();
}

/// Issue #34: a commit the primary acknowledged, then lost in a failover (the standby, cut off
/// from replication, is promoted before it receives it), is not reported as success: a
/// migration (its ledger row) and a reference-only seed (its rows).
#[tokio::test]
async fn a_commit_lost_in_a_failover_is_not_reported_as_success() {
    let pair = HaPair::new("lostcommit", false);
    let (primary, standby, both) = (&pair.primary, &pair.standby, &pair.url);
    let t = TestDb::new("halostc");
    run_ok(t.cmd().env("AIDOCK_ADMIN_URL", both).args(["init", "-q"]));
    // The standby has the app's database; then it stops receiving.
    let on_standby = pair.node_url(standby, "postgres");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = crate::support::connect(&on_standby).await;
        let there: bool = s
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&t.name],
            )
            .await
            .expect("db")
            .get(0);
        if there {
            s.simple_query("ALTER SYSTEM SET primary_conninfo = ''")
                .await
                .expect("cut replication");
            s.simple_query("SELECT pg_reload_conf()")
                .await
                .expect("reload");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its walreceiver gone: nothing the primary commits from here on reaches it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let p = crate::support::connect(&pair.node_url(primary, "postgres")).await;
    loop {
        let followers: i64 = p
            .query_one("SELECT count(*) FROM pg_stat_replication", &[])
            .await
            .expect("pg_stat_replication")
            .get(0);
        if followers == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never stopped streaming"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A commit no standby receives is not confirmed, whatever the committing node says (issue
    // #46: that node may be a primary the cluster has left): exit 4, saying what is known.
    let dir = migrations_dir(&[("0002_more.up.sql", "CREATE TABLE more (id int);\n")]);
    let out = t
        .cmd()
        .env("AIDOCK_ADMIN_URL", both)
        .env("AIDOCK__SERVER__CONFIRM_TIMEOUT", "2s")
        .arg("--migrations-dir")
        .arg(&dir)
        .args(["migrate", "up"])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "not a success: {err}");
    assert!(
        err.contains(&format!(
            "0002_more was committed on 127.0.0.1:{}, but no standby is following it and 127.0.0.1:{} is a standby that does not follow it",
            primary.port(),
            standby.port()
        )) && err.contains("run the command again"),
        "{err}"
    );
    let out = t
        .cmd()
        .env("AIDOCK_ADMIN_URL", both)
        .env("AIDOCK__SERVER__CONFIRM_TIMEOUT", "2s")
        .arg("seed")
        .output()
        .expect("seed");
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the seed is not a success: {err}"
    );
    assert!(
        err.contains("the seed was committed on") && err.contains("run the command again"),
        "{err}"
    );
    // The same with the check switched off: a success, as it was.
    run_ok(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", both)
            .env("AIDOCK__SERVER__CONFIRM_TIMEOUT", "0s")
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
    );
    let _ = standby.stop();
}

/// Issue #34: `seed --dev --wait` whose primary is lost while it loads runs again on the new
/// primary and leaves exactly the requested logs there, in one invocation.
#[tokio::test]
async fn seed_dev_under_wait_rides_over_a_failover() {
    let pair = HaPair::new("seedfail", false);
    let (primary, standby, both) = (&pair.primary, &pair.standby, &pair.url);
    let t = TestDb::new("haseed");
    run_ok(t.cmd().env("AIDOCK_ADMIN_URL", both).args(["init", "-q"]));
    run_ok(t.cmd().env("AIDOCK_ADMIN_URL", both).args(["seed", "-q"]));
    app_db_on(&t, standby).await;
    let mut child = t
        .cmd()
        .env("AIDOCK_ADMIN_URL", both)
        .args([
            "--wait",
            "90s",
            "seed",
            "--dev",
            "--users",
            "5",
            "--usage-logs",
            "200000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("seed");
    let on_primary = crate::support::connect(&pair.node_url(primary, &t.name)).await;
    crate::seed::wait_for_copy(&on_primary, &mut child).await;
    drop(on_primary);
    primary.stop().expect("stopping the primary");
    promote(standby).await;
    let out = child.wait_with_output().expect("seed");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("running the command again"),
        "the failover hit the run: {err}"
    );
    let new_primary = crate::support::connect(&pair.node_url(standby, &t.name)).await;
    assert_eq!(
        crate::seed::count(&new_primary, "usage_logs").await,
        200_000
    );
    crate::seed::quotas_match_logs(&new_primary).await;
    let _ = standby.stop();
}

/// Issue #46: a frozen first host (its server stopped by SIGSTOP: the kernel still completes the
/// TCP handshake, and nothing answers after it) costs `connect_timeout`, not the whole URL: the
/// next host is tried, as libpq does, and a frozen server is named as such when none answers.
#[tokio::test]
async fn a_frozen_first_host_is_passed_over_for_the_next() {
    let frozen = dedicated_cluster("frozenfirst", Vec::new());
    let t = TestDb::new("hafrozen");
    run_ok(t.cmd().args(["init", "-q"]));
    let pid: i32 = std::fs::read_to_string(frozen.pgdata().join("postmaster.pid"))
        .expect("pid file")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    // SAFETY: kill has no memory preconditions; the pid is this test's own server's.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let password = crate::support::cluster_password();
    let both = format!(
        "postgresql://postgres:{password}@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        frozen.port(),
        crate::support::cluster().port
    );
    let out = t
        .cmd()
        .env("AIDOCK_ADMIN_URL", &both)
        .env("AIDOCK__SERVER__CONNECT_TIMEOUT", "2s")
        .args(["migrate", "status"])
        .output()
        .expect("status");
    let alone = format!(
        "postgresql://postgres:{password}@127.0.0.1:{}/postgres",
        frozen.port()
    );
    let only_frozen = t
        .cmd()
        .env("AIDOCK_ADMIN_URL", &alone)
        .env("AIDOCK__SERVER__CONNECT_TIMEOUT", "2s")
        .args(["migrate", "status"])
        .output()
        .expect("status");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        only_frozen.status.code(),
        Some(4),
        "{}",
        stderr(&only_frozen)
    );
    assert!(
        stderr(&only_frozen).contains("timed out after 2s"),
        "{}",
        stderr(&only_frozen)
    );
}
